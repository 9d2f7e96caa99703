//! From events to rows: folds the events of whole commands into a [`Batch`].
//!
//! | event | rows |
//! |---|---|
//! | `SymbolRegistered` | symbols |
//! | `AccountOpened` (not resent) | accounts, a zero balances row |
//! | `AccountUpdated` | balances (upsert, coalesced) |
//! | `PositionUpdated` | positions (upsert, coalesced) |
//! | `TransactionStatusChanged` (not resent) | ledger_transactions (upsert of the external transaction's latest status) |
//! | `LedgerPosted` | ledger_entries (the principal's two lines) |
//! | `Trade` | trades, ledger_transactions (TRADE), ledger_entries (up to 12 lines), orders (maker and taker) |
//! | `OrderAccepted` (not resent), `OrderCancelled`, `OrderExpired`, `OrderModified` | orders (upsert, coalesced) |
//!
//! Everything else (book deltas, rejects, phases, quotes) is not stored: rejects are in the
//! journal, books are live state.
//!
//! Orders are upserted as whole rows, so the builder keeps the rows of live orders
//! ([`BatchBuilder::live_orders`]): a fill or cancel of an order accepted in an earlier batch
//! needs its account, symbol and the rest. At start the writer loads them from the database
//! (the open orders at the checkpoint).
//!
//! **Invariants**
//! - A batch holds whole commands only; its rows are exactly those of `seq_first..=seq_last`.
//! - The live-order rows are those of the orders open after the last command added.
//!
//! **Performance**: O(1) per event (hash lookups); no allocation per event beyond the batch's
//! vectors and maps, which are reused across batches by the caller (`take` / `clear`).
//!
//! **Known limitations**: an event for an order the builder does not know (it would mean the
//! database lost an accepted order) is counted in [`BatchBuilder::unknown_orders`] and skipped;
//! `kuku reconcile` then reports the order.

use kuku_engine::{
    Asset, CancelReason, Event, LedgerAccount, LineKind, Market, OrderInfo, OrderType, Side,
    TimeInForce, Transaction, TxStatus, TxType,
};
use rustc_hash::FxHashMap;

use crate::rows::{
    AccountRow, BalanceRow, Batch, EntryRow, ExternalTransactionRow, OrderRow, PositionRow,
    SymbolRow, TradeRow, TradeTransactionRow, TransactionRow, int,
};

/// Folds events into batches.
#[derive(Debug, Default)]
pub struct BatchBuilder {
    batch: Batch,
    /// Rows of the orders open after the last command added, by order id.
    live_orders: FxHashMap<u64, OrderRow>,
    unknown_orders: u64,
}

impl BatchBuilder {
    /// A builder that knows the given open orders (loaded from the database).
    pub fn new(live_orders: impl IntoIterator<Item = OrderRow>) -> BatchBuilder {
        BatchBuilder {
            live_orders: live_orders
                .into_iter()
                .map(|o| (o.order_id as u64, o))
                .collect(),
            ..BatchBuilder::default()
        }
    }

    /// Adds one event of the command at `seq` (journaled at `ts_ns`).
    pub fn add_event(&mut self, seq: u64, ts_ns: u64, event: &Event) {
        let (s, ts) = (int(seq), int(ts_ns));
        match *event {
            Event::SymbolRegistered { symbol } => self.batch.symbols.push(SymbolRow {
                symbol_id: i64::from(symbol.id.0),
                code: symbol.code,
                name: symbol.name,
                market: market_code(symbol.market),
                lot_size: symbol.lot_size.0,
                registered_seq: s,
            }),
            Event::AccountOpened {
                account,
                owner,
                resent: false,
                ..
            } => {
                self.batch.accounts.push(AccountRow {
                    account_id: i64::from(account.0),
                    owner,
                    opened_seq: s,
                    opened_ts_ns: ts,
                });
                let zero = BalanceRow {
                    account_id: i64::from(account.0),
                    cash: 0,
                    cash_hold: 0,
                    updated_seq: s,
                };
                self.batch.balances.put(account.0, zero);
            }
            Event::AccountUpdated {
                account,
                cash,
                cash_hold,
            } => self.batch.balances.put(
                account.0,
                BalanceRow {
                    account_id: i64::from(account.0),
                    cash: cash.0,
                    cash_hold: cash_hold.0,
                    updated_seq: s,
                },
            ),
            Event::PositionUpdated { position: p } => self.batch.positions.put(
                (p.account.0, p.symbol.0),
                PositionRow {
                    account_id: i64::from(p.account.0),
                    symbol_id: i64::from(p.symbol.0),
                    qty: p.qty().0,
                    hold: p.hold().0,
                    cost_basis: p.cost_basis.0,
                    realized_pnl: p.realized_pnl.0,
                    updated_seq: s,
                },
            ),
            Event::TransactionStatusChanged { resent: false, .. } => {
                self.on_status_changed(s, ts, event)
            }
            Event::LedgerPosted { .. } => {
                if let Some(tx) = event.transaction(ts_ns) {
                    self.add_entries(s, &tx);
                }
            }
            Event::Trade { .. } => self.on_trade(s, ts, ts_ns, event),
            Event::OrderAccepted {
                order,
                resent: false,
                ..
            } => self.on_accepted(s, ts, &order),
            Event::OrderCancelled {
                order_id, reason, ..
            } => self.finish_order(order_id.0, s, "CANCELLED", Some(cancel_code(reason))),
            Event::OrderExpired { order_id, .. } => {
                self.finish_order(order_id.0, s, "EXPIRED", None)
            }
            Event::OrderModified {
                order_id,
                price,
                leaves,
                ..
            } => {
                self.update_order(order_id.0, |o| {
                    o.price = price.0;
                    o.leaves = leaves.0;
                    o.qty = o.filled + leaves.0;
                    o.updated_seq = s;
                });
            }
            _ => {}
        }
    }

    /// Ends the command at `seq`: the batch now holds it whole.
    pub fn end_command(&mut self, seq: u64, ts_ns: u64) {
        debug_assert!(seq > self.batch.seq_last, "commands arrive in seq order");
        if self.batch.commands == 0 {
            self.batch.seq_first = seq;
        }
        self.batch.seq_last = seq;
        self.batch.ts_last_ns = ts_ns;
        self.batch.commands += 1;
    }

    /// The batch so far (whole commands plus any events of a command not yet ended).
    pub fn batch(&self) -> &Batch {
        &self.batch
    }

    /// Takes the batch built so far, leaving an empty one.
    pub fn take(&mut self) -> Batch {
        std::mem::take(&mut self.batch)
    }

    /// The rows of the orders open now.
    pub fn live_orders(&self) -> impl Iterator<Item = &OrderRow> + '_ {
        self.live_orders.values()
    }

    /// Events that named an order the builder did not know.
    pub fn unknown_orders(&self) -> u64 {
        self.unknown_orders
    }

    fn on_status_changed(&mut self, s: i64, ts: i64, event: &Event) {
        let Event::TransactionStatusChanged {
            tx,
            tx_type,
            account,
            asset,
            amount,
            external_ref,
            from,
            to,
            linked,
            ..
        } = *event
        else {
            return;
        };
        if let Some(row) = self.batch.external_transactions.get_mut(&tx.0) {
            row.0.status = status_code(to);
            row.0.updated_seq = s;
            if to == TxStatus::Reversed {
                row.0.reversed_by_tx_id = linked.map(|l| int(l.0));
            }
            return;
        }
        let is_reversal = tx_type == TxType::Reversal;
        let row = TransactionRow {
            tx_id: int(tx.0),
            tx_type: tx_type_code(tx_type),
            status: status_code(to),
            account_id: i64::from(account.0),
            asset_symbol_id: asset_symbol(asset),
            amount: amount.0,
            external_ref: (!is_reversal).then_some(external_ref),
            trade_id: None,
            reverses_tx_id: if is_reversal {
                linked.map(|l| int(l.0))
            } else {
                None
            },
            reversed_by_tx_id: if to == TxStatus::Reversed {
                linked.map(|l| int(l.0))
            } else {
                None
            },
            // A transaction created in an earlier batch keeps its stored creation (the upsert
            // does not update these columns).
            created_seq: s,
            created_ts_ns: ts,
            updated_seq: s,
        };
        debug_assert!(from.is_some() || to != TxStatus::Reversed);
        self.batch
            .external_transactions
            .put(tx.0, ExternalTransactionRow(row));
    }

    fn on_trade(&mut self, s: i64, ts: i64, ts_ns: u64, event: &Event) {
        let Event::Trade {
            trade_id,
            symbol,
            price,
            qty,
            taker_side,
            maker_order,
            maker_account,
            maker_leaves,
            taker_order,
            taker_account,
            taker_leaves,
            buyer_commission,
            seller_commission,
            seller_taxes,
            tx,
            ..
        } = *event
        else {
            return;
        };
        self.batch.trades.push(TradeRow {
            trade_id: int(trade_id.0),
            seq: s,
            ts_ns: ts,
            symbol_id: i64::from(symbol.0),
            price: price.0,
            qty: qty.0,
            taker_side: side_code(taker_side),
            maker_order_id: int(maker_order.0),
            maker_account_id: i64::from(maker_account.0),
            taker_order_id: int(taker_order.0),
            taker_account_id: i64::from(taker_account.0),
            buyer_commission: buyer_commission.0,
            seller_commission: seller_commission.0,
            securities_tax: seller_taxes[0].0,
            rural_tax: seller_taxes[1].0,
            tx_id: int(tx.0),
        });
        if let Some(transaction) = event.transaction(ts_ns) {
            self.batch
                .trade_transactions
                .push(TradeTransactionRow(TransactionRow {
                    tx_id: int(transaction.id.0),
                    tx_type: tx_type_code(TxType::Trade),
                    status: status_code(TxStatus::Posted),
                    account_id: i64::from(taker_account.0),
                    asset_symbol_id: i64::from(symbol.0),
                    amount: price.0 * qty.0,
                    external_ref: None,
                    trade_id: Some(int(trade_id.0)),
                    reverses_tx_id: None,
                    reversed_by_tx_id: None,
                    created_seq: s,
                    created_ts_ns: ts,
                    updated_seq: s,
                }));
            self.add_entries(s, &transaction);
        }
        for (order, leaves) in [(maker_order, maker_leaves), (taker_order, taker_leaves)] {
            let known = self.update_order(order.0, |o| {
                o.filled += qty.0;
                o.leaves = leaves.0;
                o.qty = o.filled + leaves.0;
                o.status = "PARTIALLY_FILLED";
                o.updated_seq = s;
            });
            if known && leaves.0 == 0 {
                self.finish_order(order.0, s, "FILLED", None);
            }
        }
    }

    fn add_entries(&mut self, s: i64, tx: &Transaction) {
        debug_assert!(tx.is_balanced());
        for (line_no, e) in tx.entries().iter().enumerate() {
            let (ledger_account, account_id) = ledger_account_code(e.account);
            self.batch.entries.push(EntryRow {
                tx_id: int(tx.id.0),
                line_no: line_no as i64,
                ledger_account,
                account_id,
                asset_symbol_id: asset_symbol(e.asset),
                amount: e.amount.0,
                line_kind: line_code(e.line),
                seq: s,
            });
        }
    }

    fn on_accepted(&mut self, s: i64, ts: i64, order: &OrderInfo) {
        let row = OrderRow {
            order_id: int(order.order_id.0),
            account_id: i64::from(order.account.0),
            client_order_id: int(order.client_order_id.0),
            symbol_id: i64::from(order.symbol.0),
            side: side_code(order.side),
            order_type: match order.order_type {
                OrderType::Limit => "LIMIT",
                OrderType::Market => "MARKET",
            },
            tif: match order.tif {
                TimeInForce::Day => "DAY",
                TimeInForce::Ioc => "IOC",
                TimeInForce::Fok => "FOK",
            },
            price: order.price.0,
            qty: order.qty.0,
            leaves: order.qty.0,
            filled: 0,
            cancelled: 0,
            status: "NEW",
            is_open: true,
            cancel_reason: None,
            accepted_seq: s,
            accepted_ts_ns: ts,
            updated_seq: s,
        };
        self.live_orders.insert(order.order_id.0, row);
        self.batch.orders.put(order.order_id.0, row);
    }

    /// Applies `change` to a live order and records its new row in the batch; false if the
    /// order is not known.
    fn update_order(&mut self, order_id: u64, change: impl FnOnce(&mut OrderRow)) -> bool {
        let Some(row) = self.live_orders.get_mut(&order_id) else {
            self.unknown_orders += 1;
            return false;
        };
        change(row);
        self.batch.orders.put(order_id, *row);
        true
    }

    /// Closes a live order (filled, cancelled, expired): no leaves, not open, forgotten.
    fn finish_order(
        &mut self,
        order_id: u64,
        s: i64,
        status: &'static str,
        reason: Option<&'static str>,
    ) {
        let Some(mut row) = self.live_orders.remove(&order_id) else {
            self.unknown_orders += 1;
            return;
        };
        // `qty` stays the size the order had: what was asked, what filled, and (for a cancel
        // or an expiry) what left the book unfilled, in `cancelled` (a fill's leaves are 0).
        row.cancelled += row.leaves;
        row.leaves = 0;
        row.status = status;
        row.is_open = false;
        row.cancel_reason = reason;
        row.updated_seq = s;
        self.batch.orders.put(order_id, row);
    }
}

/// `asset_symbol_id`: 0 for KRW, else the symbol's id.
pub fn asset_symbol(asset: Asset) -> i64 {
    match asset {
        Asset::Krw => 0,
        Asset::Shares(s) => i64::from(s.0),
    }
}

/// `ledger_account` and `account_id` columns of a ledger account.
pub fn ledger_account_code(account: LedgerAccount) -> (&'static str, i64) {
    match account {
        LedgerAccount::UserCash(a) => ("USER_CASH", i64::from(a.0)),
        LedgerAccount::UserSecurities(a, _) => ("USER_SECURITIES", i64::from(a.0)),
        LedgerAccount::SystemFee => ("SYSTEM_FEE", 0),
        LedgerAccount::SystemTax => ("SYSTEM_TAX", 0),
        LedgerAccount::SystemMarket => ("SYSTEM_MARKET", 0),
        LedgerAccount::SystemExternal => ("SYSTEM_EXTERNAL", 0),
    }
}

pub fn tx_type_code(t: TxType) -> &'static str {
    match t {
        TxType::Deposit => "DEPOSIT",
        TxType::Withdrawal => "WITHDRAWAL",
        TxType::Trade => "TRADE",
        TxType::Reversal => "REVERSAL",
        TxType::Adjustment => "ADJUSTMENT",
    }
}

pub fn status_code(s: TxStatus) -> &'static str {
    match s {
        TxStatus::Pending => "PENDING",
        TxStatus::Posted => "POSTED",
        TxStatus::Failed => "FAILED",
        TxStatus::Unknown => "UNKNOWN",
        TxStatus::Reversed => "REVERSED",
    }
}

fn line_code(l: LineKind) -> &'static str {
    match l {
        LineKind::Principal => "PRINCIPAL",
        LineKind::Notional => "NOTIONAL",
        LineKind::Shares => "SHARES",
        LineKind::Commission => "COMMISSION",
        LineKind::SecuritiesTransactionTax => "SEC_TX_TAX",
        LineKind::RuralSpecialTax => "RURAL_TAX",
    }
}

fn side_code(s: Side) -> &'static str {
    match s {
        Side::Buy => "BUY",
        Side::Sell => "SELL",
    }
}

fn market_code(m: Market) -> &'static str {
    match m {
        Market::Kospi => "KOSPI",
        Market::Kosdaq => "KOSDAQ",
        Market::Other => "OTHER",
    }
}

fn cancel_code(r: CancelReason) -> &'static str {
    match r {
        CancelReason::Requested => "REQUESTED",
        CancelReason::CancelAll => "CANCEL_ALL",
        CancelReason::IocRemainder => "IOC_REMAINDER",
        CancelReason::FokUnfilled => "FOK_UNFILLED",
        CancelReason::MarketRemainder => "MARKET_REMAINDER",
        CancelReason::SelfTrade => "SELF_TRADE",
        CancelReason::QuoteReplaced => "QUOTE_REPLACED",
        CancelReason::Overflow => "OVERFLOW",
        CancelReason::LedgerCheckFailed => "LEDGER_CHECK_FAILED",
    }
}

/// Parses the `side`, `order_type`, `tif` codes back (history queries, reconcile).
pub fn parse_side(code: &str) -> Option<Side> {
    match code {
        "BUY" => Some(Side::Buy),
        "SELL" => Some(Side::Sell),
        _ => None,
    }
}
