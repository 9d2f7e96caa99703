//! A deliberately naive reference engine for the book (accounting off): live orders in one
//! `Vec`, every question answered by a linear scan. Slow and obviously right; the real engine
//! must produce exactly its events and books on any command stream.

use kuku_engine::*;

#[derive(Clone, Copy, Debug)]
pub struct NOrder {
    pub id: u64,
    pub account: u32,
    pub symbol: u32,
    pub side: Side,
    pub order_type: OrderType,
    pub tif: TimeInForce,
    pub price: i64,
    pub leaves: i64,
    /// Time priority; 0 while not resting.
    pub priority: u64,
}

pub struct NSymbol {
    pub sym: Symbol,
    pub synthetic: [Option<u64>; 2],
}

pub struct Naive {
    pub symbols: Vec<NSymbol>,
    pub orders: Vec<NOrder>,
    pub phase: MarketPhase,
    pub day_open: bool,
    pub next_order_id: u64,
    pub next_trade_id: u64,
    pub next_priority: u64,
    pub out: Vec<Event>,
}

fn crosses(side: Side, level: i64, limit: i64) -> bool {
    match side {
        Side::Buy => level <= limit,
        Side::Sell => level >= limit,
    }
}

/// Better-first ordering key of a resting order on its side.
fn better(side: Side, a: &NOrder, b: &NOrder) -> bool {
    if a.price != b.price {
        return match side {
            Side::Buy => a.price > b.price,
            Side::Sell => a.price < b.price,
        };
    }
    a.priority < b.priority
}

impl Naive {
    pub fn new() -> Naive {
        Naive {
            symbols: Vec::new(),
            orders: Vec::new(),
            phase: MarketPhase::Closed,
            day_open: false,
            next_order_id: 1,
            next_trade_id: 1,
            next_priority: 1,
            out: Vec::new(),
        }
    }

    pub fn apply(&mut self, c: &Command) -> Vec<Event> {
        self.out.clear();
        match c {
            Command::RegisterSymbol(r) => self.register(r),
            Command::StartOfDay {
                trading_day,
                base_prices,
            } => self.sod(*trading_day, base_prices),
            Command::SetMarketPhase { phase } => {
                if !self.day_open && *phase != MarketPhase::Closed {
                    self.reject_cmd(CommandKind::SetMarketPhase, RejectReason::DayNotStarted);
                } else {
                    self.phase = *phase;
                    self.out.push(Event::PhaseChanged { phase: *phase });
                }
            }
            Command::EndOfDay { trading_day } => self.eod(*trading_day),
            Command::PlaceOrder(o) => self.place(o),
            Command::CancelOrder {
                account,
                request_id,
                order_id,
            } => self.cancel(*account, *request_id, *order_id),
            Command::CancelAll {
                account,
                request_id,
                symbol,
            } => self.cancel_all(*account, *request_id, *symbol),
            Command::ModifyOrder {
                account,
                request_id,
                order_id,
                new_qty,
                new_price,
            } => self.modify(*account, *request_id, *order_id, *new_qty, *new_price),
            Command::QuoteUpdate {
                symbol,
                bid_price,
                bid_qty,
                ask_price,
                ask_qty,
            } => self.quote(*symbol, (bid_price.0, bid_qty.0), (ask_price.0, ask_qty.0)),
            other => panic!("the naive engine does not model {other:?}"),
        }
        std::mem::take(&mut self.out)
    }

    fn sym(&self, id: u32) -> Option<&Symbol> {
        self.symbols
            .get((id as usize).wrapping_sub(1))
            .map(|s| &s.sym)
    }

    fn register(&mut self, r: &RegisterSymbol) {
        let id = SymbolId(self.symbols.len() as u32 + 1);
        let band = if r.banded {
            PriceBand::krx(r.tick_rule, r.base_price)
        } else {
            None
        };
        let sym = Symbol {
            id,
            code: r.code,
            name: r.name,
            market: r.market,
            tick_rule: r.tick_rule,
            banded: r.banded,
            base_price: r.base_price,
            band,
            lot_size: r.lot_size,
            last_trade_price: None,
        };
        self.symbols.push(NSymbol {
            sym,
            synthetic: [None, None],
        });
        self.out.push(Event::SymbolRegistered { symbol: sym });
    }

    fn reject_cmd(&mut self, command: CommandKind, reason: RejectReason) {
        self.out.push(Event::CommandRejected {
            command,
            account: AccountId(0),
            acct_seq: 0,
            reason,
        });
    }

    fn sod(&mut self, trading_day: u32, base_prices: &[(SymbolId, Price)]) {
        if self.day_open {
            return self.reject_cmd(CommandKind::StartOfDay, RejectReason::DayAlreadyStarted);
        }
        for (id, p) in base_prices {
            match self.sym(id.0) {
                None => {
                    return self.reject_cmd(CommandKind::StartOfDay, RejectReason::UnknownSymbol);
                }
                Some(s) if !s.tick_rule.is_on_grid(*p) => {
                    return self
                        .reject_cmd(CommandKind::StartOfDay, RejectReason::InvalidBasePrice);
                }
                _ => {}
            }
        }
        self.day_open = true;
        self.out.push(Event::DayStarted { trading_day });
        for s in self.symbols.iter_mut() {
            let sym = &mut s.sym;
            let given = base_prices.iter().rfind(|(i, _)| *i == sym.id).map(|p| p.1);
            let base = given
                .or(sym.last_trade_price.map(|p| sym.tick_rule.floor_to_grid(p)))
                .unwrap_or(sym.base_price);
            sym.base_price = base;
            if sym.banded {
                sym.band = PriceBand::krx(sym.tick_rule, base);
            }
            if let Some(b) = sym.band {
                self.out.push(Event::BandSet {
                    symbol: sym.id,
                    base_price: base,
                    lower: b.lower,
                    upper: b.upper,
                });
            }
        }
    }

    fn eod(&mut self, trading_day: u32) {
        if !self.day_open {
            return self.reject_cmd(CommandKind::EndOfDay, RejectReason::DayNotStarted);
        }
        let mut ids: Vec<u64> = self.orders.iter().map(|o| o.id).collect();
        ids.sort();
        for id in ids {
            let o = self.take(id);
            if o.account == 0 {
                self.out.push(Event::OrderCancelled {
                    acct_seq: 0,
                    account: AccountId(0),
                    order_id: OrderId(o.id),
                    symbol: SymbolId(o.symbol),
                    qty_cancelled: Qty(o.leaves),
                    reason: CancelReason::QuoteReplaced,
                    request_id: ClientOrderId(0),
                });
            } else {
                self.out.push(Event::OrderExpired {
                    acct_seq: 0,
                    account: AccountId(o.account),
                    order_id: OrderId(o.id),
                    symbol: SymbolId(o.symbol),
                    qty_expired: Qty(o.leaves),
                });
            }
            self.level_event(o.symbol, o.side, o.price);
        }
        for s in self.symbols.iter_mut() {
            s.synthetic = [None, None];
        }
        self.day_open = false;
        self.phase = MarketPhase::Closed;
        self.out.push(Event::DayEnded { trading_day });
        self.out.push(Event::PhaseChanged {
            phase: MarketPhase::Closed,
        });
    }

    fn take(&mut self, id: u64) -> NOrder {
        let i = self.orders.iter().position(|o| o.id == id).expect("live");
        self.orders.remove(i)
    }

    fn level_event(&mut self, symbol: u32, side: Side, price: i64) {
        let at: Vec<&NOrder> = self
            .orders
            .iter()
            .filter(|o| o.symbol == symbol && o.side == side && o.price == price && o.priority > 0)
            .collect();
        self.out.push(Event::BookChanged {
            symbol: SymbolId(symbol),
            side,
            price: Price(price),
            level_qty: Qty(at.iter().map(|o| o.leaves).sum()),
            level_orders: at.len() as u32,
        });
    }

    fn check_price(sym: &Symbol, price: i64) -> Result<(), RejectReason> {
        if price <= 0 {
            return Err(RejectReason::InvalidPrice);
        }
        if !sym.tick_rule.is_on_grid(Price(price)) {
            return Err(RejectReason::PriceOffTick);
        }
        if let Some(b) = sym.band
            && (price < b.lower.0 || price > b.upper.0)
        {
            return Err(RejectReason::PriceOutsideBand);
        }
        Ok(())
    }

    fn place(&mut self, o: &NewOrder) {
        let reject = |n: &mut Naive, reason| {
            n.out.push(Event::OrderRejected {
                acct_seq: 0,
                account: o.account,
                client_order_id: o.client_order_id,
                symbol: o.symbol,
                reason,
                resent: false,
            })
        };
        if o.account.0 == 0 {
            return reject(self, RejectReason::UnknownAccount);
        }
        let Some(sym) = self.sym(o.symbol.0).copied() else {
            return reject(self, RejectReason::UnknownSymbol);
        };
        if self.phase != MarketPhase::Continuous {
            return reject(self, RejectReason::MarketClosed);
        }
        if o.qty.0 <= 0 {
            return reject(self, RejectReason::InvalidQty);
        }
        if o.qty.0 % sym.lot_size.0 != 0 {
            return reject(self, RejectReason::QtyNotLotMultiple);
        }
        let limit = match o.order_type {
            OrderType::Limit => {
                if let Err(r) = Self::check_price(&sym, o.price.0) {
                    return reject(self, r);
                }
                o.price.0
            }
            OrderType::Market => match sym.band {
                None => return reject(self, RejectReason::MarketOrderWithoutBand),
                Some(b) => {
                    if o.side == Side::Buy {
                        b.upper.0
                    } else {
                        b.lower.0
                    }
                }
            },
        };
        if limit.checked_mul(o.qty.0).is_none() {
            return reject(self, RejectReason::Overflow);
        }
        let price = if o.order_type == OrderType::Market {
            0
        } else {
            o.price.0
        };
        let id = self.next_order_id;
        self.next_order_id += 1;
        self.out.push(Event::OrderAccepted {
            acct_seq: 0,
            order: OrderInfo {
                order_id: OrderId(id),
                account: o.account,
                client_order_id: o.client_order_id,
                symbol: o.symbol,
                side: o.side,
                order_type: o.order_type,
                tif: o.tif,
                price: Price(price),
                qty: o.qty,
            },
            resent: false,
        });
        let order = NOrder {
            id,
            account: o.account.0,
            symbol: o.symbol.0,
            side: o.side,
            order_type: o.order_type,
            tif: o.tif,
            price,
            leaves: o.qty.0,
            priority: 0,
        };
        self.execute(order, limit);
    }

    /// The incoming order matches, then rests or is cancelled; it is not in `orders` yet.
    fn execute(&mut self, mut taker: NOrder, limit: i64) {
        if taker.tif == TimeInForce::Fok && !self.fok_fillable(&taker, limit) {
            return self.cancelled(&taker, CancelReason::FokUnfilled, 0);
        }
        let self_trade = self.match_order(&mut taker, limit);
        if taker.leaves == 0 {
            return;
        }
        let reason = if self_trade {
            CancelReason::SelfTrade
        } else if taker.order_type == OrderType::Market {
            CancelReason::MarketRemainder
        } else if taker.tif == TimeInForce::Ioc {
            CancelReason::IocRemainder
        } else if taker.tif == TimeInForce::Fok {
            CancelReason::FokUnfilled
        } else {
            taker.priority = self.next_priority;
            self.next_priority += 1;
            self.orders.push(taker);
            return self.level_event(taker.symbol, taker.side, taker.price);
        };
        self.cancelled(&taker, reason, 0);
    }

    fn cancelled(&mut self, o: &NOrder, reason: CancelReason, request_id: u64) {
        self.out.push(Event::OrderCancelled {
            acct_seq: 0,
            account: AccountId(o.account),
            order_id: OrderId(o.id),
            symbol: SymbolId(o.symbol),
            qty_cancelled: Qty(o.leaves),
            reason,
            request_id: ClientOrderId(request_id),
        });
    }

    /// Resting orders of the opposite side, best first.
    fn opposite(&self, taker: &NOrder) -> Vec<NOrder> {
        let side = taker.side.opposite();
        let mut v: Vec<NOrder> = self
            .orders
            .iter()
            .filter(|o| o.symbol == taker.symbol && o.side == side && o.priority > 0)
            .copied()
            .collect();
        v.sort_by(|a, b| {
            if better(side, a, b) {
                std::cmp::Ordering::Less
            } else {
                std::cmp::Ordering::Greater
            }
        });
        v
    }

    fn fok_fillable(&self, taker: &NOrder, limit: i64) -> bool {
        let mut need = taker.leaves;
        for m in self.opposite(taker) {
            if !crosses(taker.side, m.price, limit) || m.account == taker.account {
                return false;
            }
            need -= m.leaves;
            if need <= 0 {
                return true;
            }
        }
        false
    }

    /// Returns true if self-trade prevention stopped the taker.
    fn match_order(&mut self, taker: &mut NOrder, limit: i64) -> bool {
        loop {
            let book = self.opposite(taker);
            let Some(best) = book.first() else {
                return false;
            };
            let price = best.price;
            if !crosses(taker.side, price, limit) {
                return false;
            }
            let mut stop = None;
            for m in book.iter().filter(|m| m.price == price) {
                if m.account == taker.account {
                    stop = Some(true);
                    break;
                }
                let qty = m.leaves.min(taker.leaves);
                self.trade(taker, m.id, price, qty);
                if taker.leaves == 0 {
                    stop = Some(false);
                    break;
                }
            }
            self.level_event(taker.symbol, taker.side.opposite(), price);
            if let Some(s) = stop {
                return s;
            }
        }
    }

    fn trade(&mut self, taker: &mut NOrder, maker_id: u64, price: i64, qty: i64) {
        taker.leaves -= qty;
        let i = self.orders.iter().position(|o| o.id == maker_id).unwrap();
        self.orders[i].leaves -= qty;
        let maker = self.orders[i];
        if maker.leaves == 0 {
            self.orders.remove(i);
        }
        self.symbols[taker.symbol as usize - 1].sym.last_trade_price = Some(Price(price));
        let trade_id = self.next_trade_id;
        self.next_trade_id += 1;
        self.out.push(Event::Trade {
            trade_id: TradeId(trade_id),
            symbol: SymbolId(taker.symbol),
            price: Price(price),
            qty: Qty(qty),
            taker_side: taker.side,
            maker_order: OrderId(maker.id),
            maker_account: AccountId(maker.account),
            maker_acct_seq: 0,
            maker_leaves: Qty(maker.leaves),
            taker_order: OrderId(taker.id),
            taker_account: AccountId(taker.account),
            taker_acct_seq: 0,
            taker_leaves: Qty(taker.leaves),
            buyer_commission: Amount(0),
            seller_commission: Amount(0),
            seller_taxes: [Amount(0); 2],
            tx: TxId(0),
        });
    }

    fn request_rejected(
        &mut self,
        account: AccountId,
        request_id: ClientOrderId,
        request: RequestKind,
        order_id: OrderId,
        reason: RejectReason,
    ) {
        self.out.push(Event::RequestRejected {
            acct_seq: 0,
            account,
            request_id,
            request,
            order_id,
            reason,
        });
    }

    fn owned(&self, account: AccountId, order_id: OrderId) -> Option<NOrder> {
        self.orders
            .iter()
            .find(|o| o.id == order_id.0 && o.account == account.0 && account.0 != 0)
            .copied()
    }

    fn cancel(&mut self, account: AccountId, request_id: ClientOrderId, order_id: OrderId) {
        let Some(o) = self.owned(account, order_id) else {
            return self.request_rejected(
                account,
                request_id,
                RequestKind::Cancel,
                order_id,
                RejectReason::UnknownOrder,
            );
        };
        self.take(o.id);
        self.cancelled(&o, CancelReason::Requested, request_id.0);
        self.level_event(o.symbol, o.side, o.price);
    }

    fn cancel_all(
        &mut self,
        account: AccountId,
        request_id: ClientOrderId,
        symbol: Option<SymbolId>,
    ) {
        if account.0 == 0 {
            return self.request_rejected(
                account,
                request_id,
                RequestKind::CancelAll,
                OrderId(0),
                RejectReason::UnknownAccount,
            );
        }
        let mut mine: Vec<NOrder> = self
            .orders
            .iter()
            .filter(|o| o.account == account.0 && symbol.is_none_or(|s| s.0 == o.symbol))
            .copied()
            .collect();
        mine.sort_by_key(|o| o.id);
        for o in &mine {
            self.take(o.id);
            self.cancelled(o, CancelReason::CancelAll, request_id.0);
            self.level_event(o.symbol, o.side, o.price);
        }
        self.out.push(Event::CancelAllDone {
            acct_seq: 0,
            account,
            request_id,
            symbol,
            cancelled: mine.len() as u32,
        });
    }

    fn modify(
        &mut self,
        account: AccountId,
        request_id: ClientOrderId,
        order_id: OrderId,
        new_qty: Qty,
        new_price: Price,
    ) {
        let reject = |n: &mut Naive, reason| {
            n.request_rejected(account, request_id, RequestKind::Modify, order_id, reason)
        };
        let Some(o) = self.owned(account, order_id) else {
            return reject(self, RejectReason::UnknownOrder);
        };
        if self.phase != MarketPhase::Continuous {
            return reject(self, RejectReason::MarketClosed);
        }
        let sym = *self.sym(o.symbol).unwrap();
        if new_qty.0 <= 0 {
            return reject(self, RejectReason::InvalidQty);
        }
        if new_qty.0 % sym.lot_size.0 != 0 {
            return reject(self, RejectReason::QtyNotLotMultiple);
        }
        if let Err(r) = Self::check_price(&sym, new_price.0) {
            return reject(self, r);
        }
        if new_qty.0 == o.leaves && new_price.0 == o.price {
            return reject(self, RejectReason::NoChange);
        }
        if new_price.0.checked_mul(new_qty.0).is_none() {
            return reject(self, RejectReason::Overflow);
        }
        let kept = new_price.0 == o.price && new_qty.0 < o.leaves;
        self.out.push(Event::OrderModified {
            acct_seq: 0,
            account,
            order_id,
            request_id,
            price: new_price,
            leaves: new_qty,
            priority_kept: kept,
        });
        if kept {
            let i = self.orders.iter().position(|x| x.id == o.id).unwrap();
            self.orders[i].leaves = new_qty.0;
            return self.level_event(o.symbol, o.side, o.price);
        }
        self.take(o.id);
        self.level_event(o.symbol, o.side, o.price);
        let taker = NOrder {
            price: new_price.0,
            leaves: new_qty.0,
            priority: 0,
            ..o
        };
        self.execute(taker, new_price.0);
    }

    fn quote(&mut self, symbol: SymbolId, bid: (i64, i64), ask: (i64, i64)) {
        let reject = |n: &mut Naive, reason| n.out.push(Event::QuoteRejected { symbol, reason });
        let Some(sym) = self.sym(symbol.0).copied() else {
            return reject(self, RejectReason::UnknownSymbol);
        };
        if self.phase != MarketPhase::Continuous {
            return reject(self, RejectReason::MarketClosed);
        }
        if [bid, ask]
            .iter()
            .any(|(_, q)| *q < 0 || q % sym.lot_size.0 != 0)
        {
            return reject(self, RejectReason::InvalidQuoteQty);
        }
        let quoted: Vec<(i64, i64)> = [bid, ask].into_iter().filter(|(_, q)| *q > 0).collect();
        if quoted
            .iter()
            .any(|(p, _)| !sym.tick_rule.is_on_grid(Price(*p)))
        {
            return reject(self, RejectReason::QuoteOffTick);
        }
        if let Some(b) = sym.band
            && quoted.iter().any(|(p, _)| *p < b.lower.0 || *p > b.upper.0)
        {
            return reject(self, RejectReason::QuoteOutsideBand);
        }
        if bid.1 > 0 && ask.1 > 0 {
            if bid.0 > ask.0 {
                return reject(self, RejectReason::QuoteCrossed);
            }
            if bid.0 == ask.0 {
                return reject(self, RejectReason::QuoteLocked);
            }
        }
        let live_quotes = self.symbols[symbol.0 as usize - 1]
            .synthetic
            .iter()
            .flatten()
            .filter(|id| self.orders.iter().any(|o| o.id == **id))
            .count();
        if quoted.is_empty() && live_quotes == 0 {
            return reject(self, RejectReason::QuoteEmpty);
        }
        let old = std::mem::take(&mut self.symbols[symbol.0 as usize - 1].synthetic);
        for id in old.into_iter().flatten() {
            if let Some(i) = self.orders.iter().position(|o| o.id == id) {
                let o = self.orders.remove(i);
                self.cancelled(&o, CancelReason::QuoteReplaced, 0);
                self.level_event(o.symbol, o.side, o.price);
            }
        }
        for (k, (side, (price, qty))) in [(Side::Buy, bid), (Side::Sell, ask)]
            .into_iter()
            .enumerate()
        {
            if qty == 0 {
                continue;
            }
            let id = self.next_order_id;
            self.next_order_id += 1;
            self.out.push(Event::OrderAccepted {
                acct_seq: 0,
                order: OrderInfo {
                    order_id: OrderId(id),
                    account: AccountId(0),
                    client_order_id: ClientOrderId(0),
                    symbol,
                    side,
                    order_type: OrderType::Limit,
                    tif: TimeInForce::Day,
                    price: Price(price),
                    qty: Qty(qty),
                },
                resent: false,
            });
            let taker = NOrder {
                id,
                account: 0,
                symbol: symbol.0,
                side,
                order_type: OrderType::Limit,
                tif: TimeInForce::Day,
                price,
                leaves: qty,
                priority: 0,
            };
            self.execute(taker, price);
            if self.orders.iter().any(|o| o.id == id) {
                self.symbols[symbol.0 as usize - 1].synthetic[k] = Some(id);
            }
        }
    }

    /// Each symbol's book as (side, price, order ids in FIFO order), best first.
    pub fn books(&self) -> Vec<(u32, Side, i64, Vec<u64>)> {
        let mut out: Vec<(u32, Side, i64, Vec<u64>)> = Vec::new();
        for s in &self.symbols {
            for side in [Side::Buy, Side::Sell] {
                let mut v: Vec<NOrder> = self
                    .orders
                    .iter()
                    .filter(|o| o.symbol == s.sym.id.0 && o.side == side)
                    .copied()
                    .collect();
                v.sort_by(|a, b| {
                    if better(side, a, b) {
                        std::cmp::Ordering::Less
                    } else {
                        std::cmp::Ordering::Greater
                    }
                });
                for o in v {
                    match out.last_mut() {
                        Some((sy, sd, p, ids))
                            if *sy == s.sym.id.0 && *sd == side && *p == o.price =>
                        {
                            ids.push(o.id)
                        }
                        _ => out.push((s.sym.id.0, side, o.price, vec![o.id])),
                    }
                }
            }
        }
        out
    }
}

/// The real engine's books in the same shape as [`Naive::books`] (FIFO = priority order,
/// which `check_invariants` verifies against the intrusive lists).
pub fn engine_books(e: &Engine) -> Vec<(u32, Side, i64, Vec<u64>)> {
    let mut out = Vec::new();
    for s in e.symbols() {
        let book = e.book(s.id).unwrap();
        for side in [Side::Buy, Side::Sell] {
            for level in book.side(side).iter() {
                let mut at: Vec<_> = e
                    .live_orders()
                    .filter(|o| o.symbol == s.id && o.side == side && o.price == level.price)
                    .collect();
                at.sort_by_key(|o| o.priority);
                out.push((
                    s.id.0,
                    side,
                    level.price.0,
                    at.iter().map(|o| o.id.0).collect(),
                ));
            }
        }
    }
    out
}
