//! The read model: balances, holds, positions, open orders, books, symbols and the ledger's
//! balances, maintained from events alone (by an output consumer of the node, or by a gateway
//! thread). Queries are answered here, never by touching the processor's memory and never by
//! journaling a query. It is not part of the engine's state and is never used by `Engine`.
//!
//! **Invariants**: after applying the events of commands 1..=n it equals the engine's live
//! state after command n (tested against the engine on random streams).
//!
//! **Performance**: orders in an id-indexed ring ([`OrderViews`]), accounts and positions in
//! hash maps, book levels in `BTreeMap`s, each account's open order ids in a sorted `Vec`:
//! O(1) per new order (ids grow, so it is a push), O(log n) per level change, and per
//! finished order a binary search and a shift of the account's younger open ids. The
//! `BTreeSet` this replaced missed the cache once per tree level on every new and finished
//! order (the fold ran 1.3-1.5x slower); the shift is at most the account's open orders, 80
//! KB at the 10,000 requests an account may make in a day (DAY orders expire at the close).
//! It runs on a consumer thread, off the processor's path, and allocates (bounded by live
//! state, plus the recent finished orders kept for status queries, see [`OrderViews`]).
//! Synthetic (SYSTEM_MARKET) orders are not kept: nobody can query them, and the book levels
//! come from `BookChanged`.
//!
//! **Known limitations**: history (fills, ledger) is not kept here: it is served by the
//! query store (kuku-persistence) or the journal.

pub use crate::order_views::OrderViews;
use crate::portfolio::Position;
use crate::*;
use rustc_hash::FxHashMap;
use std::collections::BTreeMap;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OrderState {
    New,
    PartiallyFilled,
    Filled,
    Cancelled(CancelReason),
    Expired,
}

/// One order's state. The quantities mean the same thing everywhere (docs/protocol.md,
/// "Quantities"): `filled + leaves + cancelled` is the order's size (`qty()`), which a modify
/// changes (it sets `leaves`); an order that left the book without filling (a cancel, an
/// IOC/FOK/MARKET remainder, self-trade prevention, an expiry) has `leaves` 0 and the
/// quantity that left in `cancelled`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OrderView {
    /// The order as accepted (`info.qty` is the size it was accepted with).
    pub info: OrderInfo,
    /// The current limit price (a modify changes it).
    pub price: Price,
    /// Open quantity: what may still fill (0 once the order is finished).
    pub leaves: Qty,
    pub filled: Qty,
    /// What left the book unfilled when the order was cancelled or expired (else 0).
    pub cancelled: Qty,
    pub state: OrderState,
    /// Seq of the command that last changed it.
    pub seq: u64,
}

impl OrderView {
    /// The order's size now: `filled + leaves + cancelled` (after a modify, the new total).
    pub fn qty(&self) -> Qty {
        Qty(self.filled.0 + self.leaves.0 + self.cancelled.0)
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AccountView {
    pub id: AccountId,
    pub owner: ExternalRef,
    pub cash: Amount,
    pub cash_hold: Amount,
    /// The last per-account event sequence seen.
    pub acct_seq: u64,
}

impl AccountView {
    pub fn available(&self) -> Amount {
        Amount(self.cash.0 - self.cash_hold.0)
    }
}

#[derive(Clone, Debug, Default)]
pub struct BookView {
    /// price -> (qty, orders)
    pub bids: BTreeMap<Price, (Qty, u32)>,
    pub asks: BTreeMap<Price, (Qty, u32)>,
}

impl BookView {
    pub fn best_bid(&self) -> Option<(Price, Qty)> {
        self.bids.iter().next_back().map(|(p, (q, _))| (*p, *q))
    }

    pub fn best_ask(&self) -> Option<(Price, Qty)> {
        self.asks.iter().next().map(|(p, (q, _))| (*p, *q))
    }
}

#[derive(Clone, Debug)]
pub struct SymbolView {
    pub symbol: Symbol,
    pub book: BookView,
}

#[derive(Default)]
pub struct ReadModel {
    pub last_seq: u64,
    pub phase: Option<MarketPhase>,
    pub trading_day: u32,
    pub fees: FeeSchedule,
    pub symbols: BTreeMap<SymbolId, SymbolView>,
    pub accounts: FxHashMap<AccountId, AccountView>,
    pub positions: FxHashMap<(AccountId, SymbolId), Position>,
    /// Per account, the symbols it has a position in (sorted), for `positions_of`.
    held: FxHashMap<AccountId, Vec<SymbolId>>,
    pub orders: OrderViews,
    /// Per account, its open orders' ids in ascending order (see [`ReadModel::on_accepted`]).
    pub open_by_account: FxHashMap<AccountId, Vec<OrderId>>,
    pub open_transactions: BTreeMap<TxId, (TxType, AccountId, Amount, TxStatus)>,
    /// The system ledger accounts' balances per asset (users' are in `accounts` and
    /// `positions`).
    pub system_balances: FxHashMap<(LedgerAccount, Asset), i64>,
}

impl ReadModel {
    /// The read model of a recovered engine, read before the processor thread starts (the
    /// only moment another thread may look at the engine).
    pub fn from_engine(engine: &Engine) -> ReadModel {
        let mut rm = ReadModel {
            last_seq: engine.last_seq(),
            phase: Some(engine.phase()),
            trading_day: engine.trading_day(),
            fees: *engine.fee_schedule(),
            ..ReadModel::default()
        };
        for symbol in engine.symbols() {
            let mut book = BookView::default();
            if let Some(b) = engine.book(symbol.id) {
                for (side, levels) in [(Side::Buy, &mut book.bids), (Side::Sell, &mut book.asks)] {
                    for l in b.side(side).iter() {
                        levels.insert(l.price, (l.qty, l.count));
                    }
                }
            }
            rm.symbols.insert(
                symbol.id,
                SymbolView {
                    symbol: *symbol,
                    book,
                },
            );
        }
        for a in engine.ledger().accounts() {
            rm.accounts.insert(
                a.id,
                AccountView {
                    id: a.id,
                    owner: a.owner,
                    cash: a.cash(),
                    cash_hold: a.cash_hold(),
                    acct_seq: a.acct_seq,
                },
            );
        }
        for p in engine.ledger().positions() {
            rm.put_position(*p);
        }
        for o in engine.live_orders() {
            let info = OrderInfo {
                order_id: o.id,
                account: o.account,
                client_order_id: o.client_order_id,
                symbol: o.symbol,
                side: o.side,
                order_type: o.order_type,
                tif: o.tif,
                price: o.price,
                qty: Qty(o.leaves.0 + o.filled.0),
            };
            rm.on_accepted(engine.last_seq(), info);
            if let Some(v) = rm.orders.get_mut(o.id) {
                v.leaves = o.leaves;
                v.filled = o.filled;
                if o.filled.0 > 0 {
                    v.state = OrderState::PartiallyFilled;
                }
            }
        }
        let l = engine.ledger();
        let mut put = |account, asset, amount: i64| {
            if amount != 0 {
                rm.system_balances.insert((account, asset), amount);
            }
        };
        put(LedgerAccount::SystemFee, Asset::Krw, l.system().fee().0);
        put(LedgerAccount::SystemTax, Asset::Krw, l.system().tax().0);
        put(
            LedgerAccount::SystemMarket,
            Asset::Krw,
            l.system().market_cash().0,
        );
        put(
            LedgerAccount::SystemExternal,
            Asset::Krw,
            l.system().external_cash().0,
        );
        for (i, sh) in l.system_shares().iter().enumerate() {
            let asset = Asset::Shares(SymbolId(i as u32 + 1));
            put(LedgerAccount::SystemMarket, asset, sh.market());
            put(LedgerAccount::SystemExternal, asset, sh.external());
        }
        for t in engine.ledger().external.open.values() {
            rm.open_transactions
                .insert(t.id, (t.tx_type, t.account, t.amount, t.status));
        }
        rm
    }

    pub fn symbol_by_code(&self, code: &str) -> Option<&SymbolView> {
        self.symbols
            .values()
            .find(|s| s.symbol.code.as_str() == code)
    }

    pub fn open_orders(&self, account: AccountId) -> impl Iterator<Item = &OrderView> + '_ {
        self.open_by_account
            .get(&account)
            .into_iter()
            .flatten()
            .filter_map(|id| self.orders.get(*id))
    }

    /// The account's positions, in symbol order.
    pub fn positions_of(&self, account: AccountId) -> impl Iterator<Item = &Position> + '_ {
        self.held
            .get(&account)
            .into_iter()
            .flatten()
            .filter_map(move |s| self.positions.get(&(account, *s)))
    }

    fn put_position(&mut self, position: Position) {
        let key = (position.account, position.symbol);
        if self.positions.insert(key, position).is_none() {
            let held = self.held.entry(position.account).or_default();
            if let Err(i) = held.binary_search(&position.symbol) {
                held.insert(i, position.symbol);
            }
        }
    }

    /// Applies one event of the command at `seq` (journaled at `ts`).
    pub fn apply(&mut self, seq: u64, _ts: u64, event: &Event) {
        self.last_seq = seq;
        self.post_system(event);
        self.apply_event(seq, event);
    }

    /// Moves the system accounts' balances by what `event` posts (users' balances arrive as
    /// `AccountUpdated` / `PositionUpdated`). The same lines `Event::transaction` lists,
    /// summed without building them.
    fn post_system(&mut self, event: &Event) {
        let mut add = |account, asset, amount: i64| {
            if amount != 0 {
                *self.system_balances.entry((account, asset)).or_default() += amount;
            }
        };
        match *event {
            Event::Trade {
                symbol,
                price,
                qty,
                taker_side,
                maker_account,
                taker_account,
                buyer_commission,
                seller_commission,
                seller_taxes,
                tx,
                ..
            } if tx.0 != 0 => {
                let (buyer, seller) = match taker_side {
                    Side::Buy => (taker_account, maker_account),
                    Side::Sell => (maker_account, taker_account),
                };
                let notional = price.0 * qty.0;
                let market = LedgerAccount::SystemMarket;
                if buyer.is_system_market() {
                    add(market, Asset::Krw, -notional);
                    add(market, Asset::Shares(symbol), qty.0);
                }
                if seller.is_system_market() {
                    add(market, Asset::Krw, notional);
                    add(market, Asset::Shares(symbol), -qty.0);
                }
                add(
                    LedgerAccount::SystemFee,
                    Asset::Krw,
                    buyer_commission.0 + seller_commission.0,
                );
                add(
                    LedgerAccount::SystemTax,
                    Asset::Krw,
                    seller_taxes[0].0 + seller_taxes[1].0,
                );
            }
            Event::LedgerPosted { posting } => {
                add(
                    LedgerAccount::SystemExternal,
                    posting.asset,
                    -posting.amount.0,
                );
            }
            _ => {}
        }
    }

    /// Sums per asset over every ledger account: all zero in a balanced ledger.
    pub fn trial_balance(&self) -> BTreeMap<Asset, i128> {
        let mut sums = BTreeMap::new();
        for ((_, asset), amount) in &self.system_balances {
            *sums.entry(*asset).or_insert(0i128) += *amount as i128;
        }
        for a in self.accounts.values() {
            *sums.entry(Asset::Krw).or_insert(0i128) += a.cash.0 as i128;
        }
        for p in self.positions.values() {
            *sums.entry(Asset::Shares(p.symbol)).or_insert(0i128) += p.qty().0 as i128;
        }
        sums
    }

    /// The balance of one ledger account in one asset.
    pub fn balance(&self, account: LedgerAccount, asset: Asset) -> i64 {
        match account {
            LedgerAccount::UserCash(a) if asset == Asset::Krw => {
                self.accounts.get(&a).map_or(0, |v| v.cash.0)
            }
            LedgerAccount::UserCash(_) => 0,
            LedgerAccount::UserSecurities(a, s) if asset == Asset::Shares(s) => {
                self.positions.get(&(a, s)).map_or(0, |p| p.qty().0)
            }
            LedgerAccount::UserSecurities(..) => 0,
            _ => self
                .system_balances
                .get(&(account, asset))
                .copied()
                .unwrap_or(0),
        }
    }

    pub fn apply_event(&mut self, seq: u64, event: &Event) {
        for (account, acct_seq) in event.recipients() {
            if acct_seq > 0
                && let Some(a) = self.accounts.get_mut(&account)
                && a.acct_seq < acct_seq
            {
                a.acct_seq = acct_seq;
            }
        }
        match *event {
            Event::EpochBegan { id_floor, .. } => {
                for a in self.accounts.values_mut() {
                    a.acct_seq = a.acct_seq.max(id_floor);
                }
            }
            Event::SymbolRegistered { symbol } => {
                self.symbols.insert(
                    symbol.id,
                    SymbolView {
                        symbol,
                        book: BookView::default(),
                    },
                );
            }
            Event::BandSet {
                symbol,
                base_price,
                lower,
                upper,
            } => {
                if let Some(s) = self.symbols.get_mut(&symbol) {
                    s.symbol.base_price = base_price;
                    s.symbol.band = Some(PriceBand { lower, upper });
                }
            }
            Event::FeeScheduleSet { schedule } => self.fees = schedule,
            Event::DayStarted { trading_day } => self.trading_day = trading_day,
            Event::PhaseChanged { phase } => self.phase = Some(phase),
            Event::AccountOpened {
                account,
                owner,
                acct_seq,
                ..
            } => {
                let a = self.accounts.entry(account).or_default();
                a.id = account;
                a.owner = owner;
                a.acct_seq = a.acct_seq.max(acct_seq);
            }
            Event::AccountUpdated {
                account,
                cash,
                cash_hold,
            } => {
                let a = self.accounts.entry(account).or_default();
                a.id = account;
                a.cash = cash;
                a.cash_hold = cash_hold;
            }
            Event::PositionUpdated { position } => self.put_position(position),
            Event::OrderAccepted {
                order,
                resent: false,
                ..
            } => self.on_accepted(seq, order),
            Event::Trade {
                symbol,
                price,
                qty,
                maker_order,
                maker_leaves,
                taker_order,
                taker_leaves,
                ..
            } => {
                if let Some(s) = self.symbols.get_mut(&symbol) {
                    s.symbol.last_trade_price = Some(price);
                }
                self.on_fill(seq, maker_order, qty, maker_leaves);
                self.on_fill(seq, taker_order, qty, taker_leaves);
            }
            Event::OrderCancelled {
                order_id,
                reason,
                qty_cancelled,
                ..
            } => self.close(seq, order_id, OrderState::Cancelled(reason), qty_cancelled),
            Event::OrderExpired {
                order_id,
                qty_expired,
                ..
            } => self.close(seq, order_id, OrderState::Expired, qty_expired),
            Event::OrderModified {
                order_id,
                price,
                leaves,
                ..
            } => {
                if let Some(o) = self.orders.get_mut(order_id) {
                    o.price = price;
                    o.leaves = leaves;
                    o.seq = seq;
                }
            }
            Event::BookChanged {
                symbol,
                side,
                price,
                level_qty,
                level_orders,
            } => {
                if let Some(s) = self.symbols.get_mut(&symbol) {
                    let levels = match side {
                        Side::Buy => &mut s.book.bids,
                        Side::Sell => &mut s.book.asks,
                    };
                    if level_orders == 0 {
                        levels.remove(&price);
                    } else {
                        levels.insert(price, (level_qty, level_orders));
                    }
                }
            }
            Event::TransactionStatusChanged {
                tx,
                tx_type,
                account,
                amount,
                to,
                ..
            } => match to {
                TxStatus::Pending | TxStatus::Unknown => {
                    self.open_transactions
                        .insert(tx, (tx_type, account, amount, to));
                }
                _ => {
                    self.open_transactions.remove(&tx);
                }
            },
            Event::DayEnded { .. } => {}
            _ => {}
        }
    }

    fn on_accepted(&mut self, seq: u64, order: OrderInfo) {
        if order.account.is_system_market() {
            return;
        }
        self.orders.insert(OrderView {
            info: order,
            price: order.price,
            leaves: order.qty,
            filled: Qty(0),
            cancelled: Qty(0),
            state: OrderState::New,
            seq,
        });
        let open = self.open_by_account.entry(order.account).or_default();
        // Ids grow, so a new order goes at the end; only a recovery may insert in between.
        if open.last().is_none_or(|last| *last < order.order_id) {
            open.push(order.order_id);
        } else if let Err(i) = open.binary_search(&order.order_id) {
            open.insert(i, order.order_id);
        }
    }

    fn on_fill(&mut self, seq: u64, order_id: OrderId, qty: Qty, leaves: Qty) {
        let Some(o) = self.orders.get_mut(order_id) else {
            return;
        };
        o.filled = Qty(o.filled.0 + qty.0);
        o.leaves = leaves;
        o.seq = seq;
        if leaves.0 == 0 {
            self.finish(seq, order_id, OrderState::Filled);
        } else {
            o.state = OrderState::PartiallyFilled;
        }
    }

    /// An order left the book unfilled: `qty` (its leaves) moves to `cancelled`.
    fn close(&mut self, seq: u64, order_id: OrderId, state: OrderState, qty: Qty) {
        if let Some(o) = self.orders.get_mut(order_id) {
            o.cancelled = Qty(o.cancelled.0 + qty.0);
            o.leaves = Qty(0);
        }
        self.finish(seq, order_id, state);
    }

    fn finish(&mut self, seq: u64, order_id: OrderId, state: OrderState) {
        let Some(o) = self.orders.get_mut(order_id) else {
            return;
        };
        o.state = state;
        o.seq = seq;
        if let Some(open) = self.open_by_account.get_mut(&o.info.account)
            && let Ok(i) = open.binary_search(&order_id)
        {
            open.remove(i);
        }
        self.orders.finished(order_id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accepted(id: u64) -> Event {
        Event::OrderAccepted {
            acct_seq: id,
            order: crate::testkit::order_info(id, 70_000),
            resent: false,
        }
    }

    fn open_ids(rm: &ReadModel) -> Vec<u64> {
        rm.open_orders(AccountId(1))
            .map(|o| o.info.order_id.0)
            .collect()
    }

    #[test]
    fn open_orders_stay_in_id_order_whatever_order_they_arrive_in() {
        let mut rm = ReadModel::default();
        // A recovery (`from_engine`) may add orders out of id order, and twice.
        for id in [5, 9, 3, 7, 3, 9] {
            rm.apply_event(1, &accepted(id));
        }
        assert_eq!(open_ids(&rm), [3, 5, 7, 9]);
        rm.apply_event(2, &accepted(11));
        rm.finish(3, OrderId(7), OrderState::Filled);
        rm.finish(
            3,
            OrderId(3),
            OrderState::Cancelled(CancelReason::Requested),
        );
        assert_eq!(open_ids(&rm), [5, 9, 11]);
        assert_eq!(
            rm.orders.get(OrderId(7)).map(|o| o.state),
            Some(OrderState::Filled),
            "a finished order stays queryable"
        );
    }
}
