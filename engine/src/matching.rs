//! Orders: placement, matching, cancel, cancel-all, modify and quote-driven liquidity.
//!
//! One matching code path serves users and the SYSTEM_MARKET's synthetic quotes alike: an
//! incoming order (new, modified with loss of priority, or a new synthetic quote) walks the
//! opposite side from the best price while it crosses, filling makers in time priority.
//!
//! Validation order of `PlaceOrder` (the first failing rule decides the reason):
//! 1. the account exists (`UnknownAccount`) — accounting mode only;
//! 2. the key: a resend returns the original outcome; other content `DuplicateKey`;
//! 3. room for the key (`KeysFull`);
//! 4. the symbol (`UnknownSymbol`); 5. the phase is continuous (`MarketClosed`);
//! 6. qty > 0 (`InvalidQty`); qty <= `QTY_MAX` and price <= `PRICE_MAX` (`OutOfRange`);
//! 7. qty a lot multiple (`QtyNotLotMultiple`);
//! 8. LIMIT: price > 0 (`InvalidPrice`), on the grid (`PriceOffTick`), in the band
//!    (`PriceOutsideBand`); MARKET: the symbol has a band (`MarketOrderWithoutBand`) and its
//!    quotes are not stale (`QuoteStale`, ADR-023);
//! 9. price x qty fits (`Overflow`); 10. a free order slot (`OrdersFull`), room for its level
//!    (`LevelsFull`), and for a buy a position slot (`PositionsFull`);
//! 11. risk: `InsufficientCash` (buy) / `InsufficientShares` (sell).
//!
//! Rejects from step 4 on use up the key (a resend returns the same reject). Steps 1-3 and
//! 10-11 are skipped in book-only mode (accounting off), except the order slot and level room.
//!
//! Self-trade prevention: when the next maker belongs to the taker's account, the taker's
//! remainder is cancelled (`SelfTrade`); fills before it stand. FOK checks fillability with
//! the same rule first, so an FOK either fills completely or not at all.
//!
//! **Performance**: matching touches only the makers it fills; events are built on the stack.

use crate::book::LevelState;
use crate::book::order::{Links, NIL, Order, OrderHead, Slot};
use crate::command::{NewOrder, QuoteStatus};
use crate::engine::Engine;
use crate::event::{CancelReason, Event, EventSink, OrderInfo, RequestKind};
use crate::idempotency::{KeyCheck, KeyRecord, Outcome, RequestContent};
use crate::ledger::settlement::{FillCharges, plan_fill};
use crate::ledger::{Hold, LedgerFault, LedgerTx};
use crate::limits::{PRICE_MAX, QTY_MAX};
use crate::reject::RejectReason;
use crate::risk::buy_hold;
use crate::types::{
    AccountId, Amount, ClientOrderId, OrderId, OrderType, Price, Qty, Side, SymbolId, TimeInForce,
    TradeId,
};

/// A cancel-side request (cancel, cancel-all, modify) as the key table and replies see it.
#[derive(Clone, Copy)]
struct Request {
    account: AccountId,
    request_id: ClientOrderId,
    content: RequestContent,
    kind: RequestKind,
    order_id: OrderId,
}

/// Why matching stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum MatchStop {
    Filled,
    NoLiquidity,
    SelfTrade,
    /// The next fill would take a figure beyond `i64` (see [`RejectReason::Overflow`]).
    Overflow,
    /// The ledger refused the next fill's posting: a bug, alarmed (`Event::LedgerAlarm`).
    LedgerCheckFailed,
}

/// What validation established for an order about to be accepted.
struct Admitted {
    /// The price holds are computed at (limit, or the band limit for MARKET).
    hold_price: Price,
    cash_hold: Amount,
    /// The owner's position slot in the symbol, if it has one (accounting mode).
    position: Option<u32>,
}

#[inline]
fn crosses(side: Side, level_price: Price, limit: Price) -> bool {
    match side {
        Side::Buy => level_price <= limit,
        Side::Sell => level_price >= limit,
    }
}

impl Engine {
    // ----- PlaceOrder -----

    pub(crate) fn place_order(&mut self, o: &NewOrder, sink: &mut impl EventSink) {
        let price = match o.order_type {
            OrderType::Limit => o.price,
            OrderType::Market => Price(0),
        };
        let content = RequestContent::Place {
            symbol: o.symbol,
            side: o.side,
            order_type: o.order_type,
            tif: o.tif,
            price,
            qty: o.qty,
        };
        if !self.config.accounting {
            if o.account.is_system_market() {
                return self.reject_order(o, RejectReason::UnknownAccount, false, sink);
            }
            return match self.admit(o) {
                Err(reason) => self.reject_order(o, reason, true, sink),
                Ok(admitted) => self.accept_order(o, price, content, admitted, sink),
            };
        }
        let Some(account) = self.ledger.account(o.account) else {
            return self.reject_order(o, RejectReason::UnknownAccount, false, sink);
        };
        let keys_today = account.keys_today;
        // The key's bucket is usually not in cache: start loading it, and run the (read-only)
        // validation of steps 4-11 meanwhile; the key still decides first.
        self.keys.prefetch(o.account, o.client_order_id);
        let admitted = self.admit(o);
        match self.keys.check(o.account, o.client_order_id, &content) {
            KeyCheck::Resent(outcome) => return self.resend_place(o, price, outcome, sink),
            KeyCheck::Conflict => {
                return self.reject_order(o, RejectReason::DuplicateKey, false, sink);
            }
            KeyCheck::New => {}
        }
        if keys_today >= self.config.orders_per_account_day_max || !self.keys.has_room() {
            return self.reject_order(o, RejectReason::KeysFull, false, sink);
        }
        match admitted {
            Err(reason) => self.reject_order(o, reason, true, sink),
            Ok(admitted) => self.accept_order(o, price, content, admitted, sink),
        }
    }

    /// Steps 4-11 of the validation order.
    fn admit(&self, o: &NewOrder) -> Result<Admitted, RejectReason> {
        let state = self
            .symbol_state(o.symbol)
            .ok_or(RejectReason::UnknownSymbol)?;
        let sym = &state.symbol;
        if self.phase != crate::command::MarketPhase::Continuous {
            return Err(RejectReason::MarketClosed);
        }
        if o.qty.0 <= 0 {
            return Err(RejectReason::InvalidQty);
        }
        if o.qty.0 > QTY_MAX || o.price.0 > PRICE_MAX {
            return Err(RejectReason::OutOfRange);
        }
        if o.qty.0 % sym.lot_size.0 != 0 {
            return Err(RejectReason::QtyNotLotMultiple);
        }
        let hold_price = match o.order_type {
            OrderType::Limit => {
                self.check_price(sym, o.price)?;
                o.price
            }
            OrderType::Market => {
                let band = sym.band.ok_or(RejectReason::MarketOrderWithoutBand)?;
                if state.quote_status == QuoteStatus::Stale {
                    return Err(RejectReason::QuoteStale);
                }
                match o.side {
                    Side::Buy => band.upper,
                    Side::Sell => band.lower,
                }
            }
        };
        hold_price.notional(o.qty).ok_or(RejectReason::Overflow)?;
        if self.orders.is_full() {
            return Err(RejectReason::OrdersFull);
        }
        let book = &self.symbols[o.symbol.0 as usize - 1].book;
        if o.order_type == OrderType::Limit && !book.has_room_for(o.side, o.price) {
            return Err(RejectReason::LevelsFull);
        }
        let mut cash_hold = Amount(0);
        let mut position = None;
        if self.config.accounting {
            let account = self.ledger.account(o.account).expect("checked in step 1");
            match o.side {
                Side::Buy => {
                    position = self.ledger.position_slot(o.account, o.symbol);
                    if position.is_none() && !self.ledger.has_room_for_position() {
                        return Err(RejectReason::PositionsFull);
                    }
                    cash_hold = buy_hold(
                        hold_price,
                        o.qty,
                        Amount(0),
                        Amount(0),
                        self.fees.commission_ppm,
                    )
                    .ok_or(RejectReason::Overflow)?;
                    if cash_hold > account.available() {
                        return Err(RejectReason::InsufficientCash);
                    }
                }
                Side::Sell => {
                    position = self.ledger.position_slot(o.account, o.symbol);
                    let available = position
                        .and_then(|slot| self.ledger.position_at(slot))
                        .map_or(Qty(0), |p| p.available());
                    if o.qty > available {
                        return Err(RejectReason::InsufficientShares);
                    }
                }
            }
        }
        Ok(Admitted {
            hold_price,
            cash_hold,
            position,
        })
    }

    /// Price rules shared by orders and modifies: positive, on the grid, inside the band.
    fn check_price(
        &self,
        sym: &crate::reference::Symbol,
        price: Price,
    ) -> Result<(), RejectReason> {
        if price.0 <= 0 {
            return Err(RejectReason::InvalidPrice);
        }
        if !sym.tick_rule.is_on_grid(price) {
            return Err(RejectReason::PriceOffTick);
        }
        if let Some(band) = sym.band
            && !band.contains(price)
        {
            return Err(RejectReason::PriceOutsideBand);
        }
        Ok(())
    }

    fn reject_order(
        &mut self,
        o: &NewOrder,
        reason: RejectReason,
        record: bool,
        sink: &mut impl EventSink,
    ) {
        if record && self.config.accounting {
            let price = if o.order_type == OrderType::Market {
                Price(0)
            } else {
                o.price
            };
            self.record_key(
                o.account,
                o.client_order_id,
                RequestContent::Place {
                    symbol: o.symbol,
                    side: o.side,
                    order_type: o.order_type,
                    tif: o.tif,
                    price,
                    qty: o.qty,
                },
                Outcome::Rejected(reason),
            );
        }
        let acct_seq = self.ledger.next_seq(o.account);
        sink.emit(&Event::OrderRejected {
            acct_seq,
            account: o.account,
            client_order_id: o.client_order_id,
            symbol: o.symbol,
            reason,
            resent: false,
        });
    }

    fn record_key(
        &mut self,
        account: AccountId,
        key: ClientOrderId,
        content: RequestContent,
        outcome: Outcome,
    ) {
        self.keys.record(
            account,
            key,
            KeyRecord {
                fingerprint: content.fingerprint(),
                outcome,
            },
        );
        if let Some(a) = self.ledger.account_mut(account) {
            a.keys_today += 1;
        }
    }

    fn resend_place(
        &mut self,
        o: &NewOrder,
        price: Price,
        outcome: Outcome,
        sink: &mut impl EventSink,
    ) {
        let acct_seq = self.ledger.next_seq(o.account);
        let event = match outcome {
            Outcome::Accepted(order_id) => Event::OrderAccepted {
                acct_seq,
                order: OrderInfo {
                    order_id,
                    account: o.account,
                    client_order_id: o.client_order_id,
                    symbol: o.symbol,
                    side: o.side,
                    order_type: o.order_type,
                    tif: o.tif,
                    price,
                    qty: o.qty,
                },
                resent: true,
            },
            Outcome::Rejected(reason) => Event::OrderRejected {
                acct_seq,
                account: o.account,
                client_order_id: o.client_order_id,
                symbol: o.symbol,
                reason,
                resent: true,
            },
            // A Place key records a Place outcome; only a 64-bit fingerprint collision with a
            // cancel-all could lead here: answer it as the conflict it is.
            Outcome::CancelledAll(_) => Event::OrderRejected {
                acct_seq,
                account: o.account,
                client_order_id: o.client_order_id,
                symbol: o.symbol,
                reason: RejectReason::DuplicateKey,
                resent: false,
            },
        };
        sink.emit(&event);
    }

    fn accept_order(
        &mut self,
        o: &NewOrder,
        price: Price,
        content: RequestContent,
        admitted: Admitted,
        sink: &mut impl EventSink,
    ) {
        let id = OrderId(self.next_order_id);
        let mut position = NIL;
        if self.config.accounting {
            match self.place_order_hold(o, &admitted) {
                Ok(slot) => position = slot,
                Err(fault) => {
                    self.ledger_alarm(fault, sink);
                    return self.reject_order(o, RejectReason::LedgerCheckFailed, true, sink);
                }
            }
            self.record_key(o.account, o.client_order_id, content, Outcome::Accepted(id));
        }
        self.next_order_id += 1;
        let order = Order::new(
            id,
            o.account,
            o.client_order_id,
            o.symbol,
            o.side,
            price,
            o.qty,
        );
        // The new order's slot is seldom in cache: its fields, the account-list links
        // included, are written once, and nothing reads them back here.
        let by_account = self.account_links(o.account);
        let order = Order {
            order_type: o.order_type,
            tif: o.tif,
            cash_hold: admitted.cash_hold,
            ts_accepted: self.now_ts,
            position,
            by_account,
            ..order
        };
        let slot = self.orders.insert(order).expect("admitted: a free slot");
        self.join_account_list(slot, o.account, by_account);
        let acct_seq = self.ledger.next_seq(o.account);
        sink.emit(&Event::OrderAccepted {
            acct_seq,
            order: OrderInfo {
                order_id: id,
                account: o.account,
                client_order_id: o.client_order_id,
                symbol: o.symbol,
                side: o.side,
                order_type: o.order_type,
                tif: o.tif,
                price,
                qty: o.qty,
            },
            resent: false,
        });
        if self.config.accounting {
            match o.side {
                Side::Buy => self.emit_account_state(o.account, sink),
                Side::Sell => self.emit_position(position, sink),
            }
        }
        self.execute(slot, admitted.hold_price, sink);
    }

    /// Places an accepted order's hold (cash for a buy, shares for a sell) and returns its
    /// position slot (a buy creates the flat position it settles into). On `Err` nothing has
    /// changed.
    fn place_order_hold(&mut self, o: &NewOrder, admitted: &Admitted) -> Result<u32, LedgerFault> {
        match (o.side, admitted.position) {
            (Side::Buy, position) => {
                self.ledger
                    .place_hold(Hold::Cash(o.account, admitted.cash_hold))?;
                match position.or_else(|| self.ledger.position_slot_or_insert(o.account, o.symbol))
                {
                    Some(slot) => Ok(slot),
                    None => {
                        // Admission checked the room; undo the hold if it was wrong.
                        let _ = self
                            .ledger
                            .release_hold(Hold::Cash(o.account, admitted.cash_hold));
                        Err(LedgerFault::UnknownHolder)
                    }
                }
            }
            (Side::Sell, Some(slot)) => {
                self.ledger.place_hold(Hold::Shares(slot, o.qty))?;
                Ok(slot)
            }
            (Side::Sell, None) => Err(LedgerFault::UnknownHolder),
        }
    }

    /// Matches the order in `slot` as an incoming order up to `limit`, then rests its
    /// remainder (DAY limit) or cancels it (IOC, FOK, MARKET, self-trade).
    fn execute(&mut self, slot: Slot, limit: Price, sink: &mut impl EventSink) {
        let o = self.orders.get(slot).head();
        if o.tif == TimeInForce::Fok && !self.fok_fillable(&o, limit) {
            return self.cancel_remainder(slot, CancelReason::FokUnfilled, sink);
        }
        let stop = self.match_order(slot, limit, sink);
        let o = self.orders.get(slot).head();
        if o.leaves.0 == 0 {
            self.remove_live_order(slot, sink);
            return;
        }
        let reason = match (stop, o.order_type, o.tif) {
            (MatchStop::SelfTrade, _, _) => CancelReason::SelfTrade,
            (MatchStop::Overflow, _, _) => CancelReason::Overflow,
            (MatchStop::LedgerCheckFailed, _, _) => CancelReason::LedgerCheckFailed,
            (_, OrderType::Market, _) => CancelReason::MarketRemainder,
            (_, _, TimeInForce::Ioc) => CancelReason::IocRemainder,
            (_, _, TimeInForce::Fok) => CancelReason::FokUnfilled,
            (_, OrderType::Limit, TimeInForce::Day) => return self.rest(slot, sink),
        };
        self.cancel_remainder(slot, reason, sink);
    }

    /// True if `o` can fill completely now at prices up to `limit`, before meeting an order
    /// of its own account (where self-trade prevention would stop it).
    ///
    /// Level totals decide first (cheap: one pass over the crossing levels, never their
    /// orders): too little liquidity inside the limit kills the FOK at once. Only when there
    /// is enough are the orders walked, in priority order, as matching would: that walk stops
    /// where the fill would, so it costs no more than the fill itself.
    fn fok_fillable(&self, o: &OrderHead, limit: Price) -> bool {
        let book = &self.symbols[o.symbol.0 as usize - 1].book;
        let levels = || {
            book.side(o.side.opposite())
                .iter()
                .take_while(|l| crosses(o.side, l.price, limit))
        };
        let mut inside = 0i64;
        for level in levels() {
            inside = inside.saturating_add(level.qty.0);
            if inside >= o.leaves.0 {
                break;
            }
        }
        if inside < o.leaves.0 {
            return false;
        }
        let mut need = o.leaves.0;
        for level in levels() {
            let mut cur = level.head;
            while cur != NIL {
                let maker = self.orders.get(cur);
                if maker.account == o.account {
                    return false;
                }
                need -= maker.leaves.0;
                if need <= 0 {
                    return true;
                }
                cur = maker.level.next;
            }
        }
        false
    }

    /// Fills the order in `taker_slot` against the opposite side while prices cross `limit`.
    fn match_order(
        &mut self,
        taker_slot: Slot,
        limit: Price,
        sink: &mut impl EventSink,
    ) -> MatchStop {
        let (side, symbol, account) = {
            let t = self.orders.get(taker_slot);
            (t.side, t.symbol, t.account)
        };
        let si = symbol.0 as usize - 1;
        let opposite = side.opposite();
        loop {
            let Some(level) = self.symbols[si].book.best(opposite) else {
                return MatchStop::NoLiquidity;
            };
            let price = level.price;
            if !crosses(side, price, limit) {
                return MatchStop::NoLiquidity;
            }
            let mut maker_slot = level.head;
            let mut stop = None;
            while maker_slot != NIL {
                let maker = self.orders.get(maker_slot);
                if maker.account == account {
                    stop = Some(MatchStop::SelfTrade);
                    break;
                }
                let next = maker.level.next;
                let qty = maker.leaves.min(self.orders.get(taker_slot).leaves);
                if let Err(refused) = self.fill(taker_slot, maker_slot, price, qty, sink) {
                    stop = Some(refused);
                    break;
                }
                if self.orders.get(taker_slot).leaves.0 == 0 {
                    stop = Some(MatchStop::Filled);
                    break;
                }
                maker_slot = next;
            }
            let state = self.symbols[si].book.side(opposite).level(price).map_or(
                LevelState {
                    price,
                    qty: Qty(0),
                    count: 0,
                },
                |l| LevelState {
                    price,
                    qty: l.qty,
                    count: l.count,
                },
            );
            emit_level(sink, symbol, opposite, state);
            if let Some(stop) = stop {
                return stop;
            }
        }
    }

    /// One fill of `qty` at `price`: quantities, ledger, events; removes a filled maker.
    /// Planned first and posted as one transaction: on `Err` nothing has changed.
    fn fill(
        &mut self,
        taker_slot: Slot,
        maker_slot: Slot,
        price: Price,
        qty: Qty,
        sink: &mut impl EventSink,
    ) -> Result<(), MatchStop> {
        let si = self.orders.get(taker_slot).symbol.0 as usize - 1;
        let mut charges = Default::default();
        let mut tx = crate::types::TxId(0);
        if self.config.accounting {
            charges = self.settle(taker_slot, maker_slot, si, price, qty, sink)?;
            tx = self.ledger.take_tx_id();
        } else {
            let (taker, maker) = self.orders.get2_mut(taker_slot, maker_slot);
            let (Some(taker_filled), Some(maker_filled)) = (
                taker.filled.0.checked_add(qty.0),
                maker.filled.0.checked_add(qty.0),
            ) else {
                return Err(MatchStop::Overflow);
            };
            // `qty` is the smaller of the two leaves (match_order).
            taker.leaves = Qty(taker.leaves.0 - qty.0);
            maker.leaves = Qty(maker.leaves.0 - qty.0);
            taker.filled = Qty(taker_filled);
            maker.filled = Qty(maker_filled);
        }
        let trade_id = TradeId(self.next_trade_id);
        self.next_trade_id += 1;
        let state = &mut self.symbols[si];
        state.symbol.last_trade_price = Some(price);
        let maker = self.orders.get(maker_slot).head();
        let taker = self.orders.get(taker_slot).head();
        state.book.reduce(maker.side, price, qty);
        if maker.leaves.0 == 0 {
            self.remove_live_order(maker_slot, sink);
        }
        let maker_acct_seq = self.ledger.next_seq(maker.account);
        let taker_acct_seq = self.ledger.next_seq(taker.account);
        let trade = Event::Trade {
            trade_id,
            symbol: taker.symbol,
            price,
            qty,
            taker_side: taker.side,
            maker_order: maker.id,
            maker_account: maker.account,
            maker_acct_seq,
            maker_leaves: maker.leaves,
            taker_order: taker.id,
            taker_account: taker.account,
            taker_acct_seq,
            taker_leaves: taker.leaves,
            buyer_commission: charges.buyer_commission,
            seller_commission: charges.seller_commission,
            seller_taxes: charges.seller_taxes,
            tx,
        };
        sink.emit(&trade);
        if self.config.accounting {
            for party in [maker, taker] {
                self.emit_account_state(party.account, sink);
                self.emit_position(party.position, sink);
            }
        }
        Ok(())
    }

    /// Plans the fill, posts it to the ledger and applies the plan to both orders and their
    /// positions; returns the charges. On `Err` nothing has changed.
    ///
    /// Kept out of line: the plan is inlined here, and the book-only matching loop, which
    /// never settles, keeps its registers.
    #[inline(never)]
    fn settle(
        &mut self,
        taker_slot: Slot,
        maker_slot: Slot,
        si: usize,
        price: Price,
        qty: Qty,
        sink: &mut impl EventSink,
    ) -> Result<FillCharges, MatchStop> {
        let sym = &self.symbols[si].symbol;
        let band_upper = sym.band.map_or(Price(0), |b| b.upper);
        let (taker, maker) = (self.orders.get(taker_slot), self.orders.get(maker_slot));
        let (buyer, seller) = match taker.side {
            Side::Buy => (taker, maker),
            Side::Sell => (maker, taker),
        };
        let plan = plan_fill(
            &self.ledger,
            &self.fees,
            sym.market,
            band_upper,
            buyer,
            seller,
            price,
            qty,
        )
        .ok_or(MatchStop::Overflow)?;
        if let Err(fault) = self.ledger.post(&LedgerTx::fill(plan.fill)) {
            if !fault.is_bug() {
                return Err(MatchStop::Overflow);
            }
            self.ledger_alarm(fault, sink);
            return Err(MatchStop::LedgerCheckFailed);
        }
        let (taker, maker) = self.orders.get2_mut(taker_slot, maker_slot);
        let (buyer, seller) = match taker.side {
            Side::Buy => (taker, maker),
            Side::Sell => (maker, taker),
        };
        plan.buyer.apply(buyer);
        plan.seller.apply(seller);
        for (slot, cost) in plan.costs.into_iter().flatten() {
            if let Some(p) = self.ledger.position_mut(slot) {
                cost.apply(p);
            }
        }
        Ok(plan.charges)
    }

    /// Reports a ledger check that failed (a bug: see [`crate::ledger::balance`]).
    pub(crate) fn ledger_alarm(&mut self, fault: LedgerFault, sink: &mut impl EventSink) {
        sink.emit(&Event::LedgerAlarm {
            command: self.applying,
            fault,
        });
    }

    /// `AccountUpdated` for a user account (accounting mode).
    pub(crate) fn emit_account_state(&self, account: AccountId, sink: &mut impl EventSink) {
        if let Some(a) = self.ledger.account(account) {
            sink.emit(&Event::AccountUpdated {
                account,
                cash: a.cash(),
                cash_hold: a.cash_hold(),
            });
        }
    }

    /// `PositionUpdated` for the position at a cached index (`NIL`: none).
    #[inline]
    pub(crate) fn emit_position(&self, position: u32, sink: &mut impl EventSink) {
        if let Some(p) = self.ledger.positions().get(position as usize) {
            sink.emit(&Event::PositionUpdated { position: *p });
        }
    }

    /// `PositionUpdated` for a user position (accounting mode).
    pub(crate) fn emit_position_state(
        &self,
        account: AccountId,
        symbol: SymbolId,
        sink: &mut impl EventSink,
    ) {
        if let Some(p) = self.ledger.position(account, symbol) {
            sink.emit(&Event::PositionUpdated { position: *p });
        }
    }

    /// Puts the order in `slot` at the back of its price level.
    fn rest(&mut self, slot: Slot, sink: &mut impl EventSink) {
        let priority = self.next_priority;
        self.next_priority += 1;
        let o = self.orders.get_mut(slot);
        o.priority = priority;
        o.resting = true;
        let (symbol, side) = (o.symbol, o.side);
        let state = self.symbols[symbol.0 as usize - 1]
            .book
            .rest(&mut self.orders, slot);
        emit_level(sink, symbol, side, state);
    }

    fn cancel_remainder(&mut self, slot: Slot, reason: CancelReason, sink: &mut impl EventSink) {
        self.cancel_live(slot, reason, ClientOrderId(0), sink);
    }

    /// Takes a live order out of its level, its account's list and the slab, releasing its
    /// holds (and reporting the new account or position state if that changed anything).
    /// Returns its level's new totals if it was resting.
    pub(crate) fn remove_live_order(
        &mut self,
        slot: Slot,
        sink: &mut impl EventSink,
    ) -> Option<LevelState> {
        let o = self.orders.get(slot).head();
        let level = if o.resting {
            let book = &mut self.symbols[o.symbol.0 as usize - 1].book;
            Some(book.unlink(&mut self.orders, slot))
        } else {
            None
        };
        self.unlink_account(slot);
        self.orders.remove(slot);
        self.release_holds(&o, sink);
        level
    }

    fn release_holds(&mut self, o: &OrderHead, sink: &mut impl EventSink) {
        if !self.config.accounting || o.account.is_system_market() {
            return;
        }
        let hold = match o.side {
            Side::Buy if o.cash_hold.0 != 0 => Hold::Cash(o.account, o.cash_hold),
            Side::Sell if o.leaves.0 != 0 => Hold::Shares(o.position, o.leaves),
            _ => return,
        };
        // The order is gone already; a hold that cannot be released stays (too much held
        // is safe for money) and the fault is reported.
        if let Err(fault) = self.ledger.release_hold(hold) {
            self.ledger_alarm(fault, sink);
        }
        match o.side {
            Side::Buy => self.emit_account_state(o.account, sink),
            Side::Sell => self.emit_position(o.position, sink),
        }
    }

    /// Appends the order in `slot` to its account's list.
    pub(crate) fn link_account(&mut self, slot: Slot) {
        let account = self.orders.get(slot).account;
        let links = self.account_links(account);
        self.orders.get_mut(slot).by_account = links;
        self.join_account_list(slot, account, links);
    }

    /// The account-list links of an order of `account` about to join the end of the list
    /// (none for SYSTEM_MARKET and in book-only mode).
    #[inline]
    fn account_links(&self, account: AccountId) -> Links {
        if !self.config.accounting || account.is_system_market() {
            return Links::NONE;
        }
        Links {
            prev: self.ledger.account(account).map_or(NIL, |a| a.orders_tail),
            next: NIL,
        }
    }

    /// Makes the order in `slot`, which carries `links` from [`Engine::account_links`], the
    /// end of its account's list.
    #[inline]
    fn join_account_list(&mut self, slot: Slot, account: AccountId, links: Links) {
        if !self.config.accounting || account.is_system_market() {
            return;
        }
        let a = self
            .ledger
            .account_mut(account)
            .expect("a live order's account");
        a.orders_tail = slot;
        if links.prev == NIL {
            a.orders_head = slot;
        } else {
            self.orders.get_mut(links.prev).by_account.next = slot;
        }
    }

    fn unlink_account(&mut self, slot: Slot) {
        let (account, Links { prev, next }) = {
            let o = self.orders.get(slot);
            (o.account, o.by_account)
        };
        if !self.config.accounting || account.is_system_market() {
            return;
        }
        if prev != NIL {
            self.orders.get_mut(prev).by_account.next = next;
        }
        if next != NIL {
            self.orders.get_mut(next).by_account.prev = prev;
        }
        let a = self
            .ledger
            .account_mut(account)
            .expect("a live order's account");
        if prev == NIL {
            a.orders_head = next;
        }
        if next == NIL {
            a.orders_tail = prev;
        }
    }

    // ----- Cancel, CancelAll, Modify -----

    /// Steps 1-3 of a cancel-side request: account, key, room. `false` if the request was
    /// answered already (rejected or resent).
    fn begin_request(&mut self, r: Request, sink: &mut impl EventSink) -> bool {
        if !self.config.accounting {
            return true;
        }
        let Request {
            account,
            request_id,
            content,
            kind,
            order_id,
        } = r;
        // Start loading the key's bucket and the order's home slot: both travel while the
        // account and the key are checked.
        self.keys.prefetch(account, request_id);
        self.orders.prefetch(order_id);
        let Some(a) = self.ledger.account(account) else {
            self.reject_request(r, RejectReason::UnknownAccount, sink);
            return false;
        };
        let keys_today = a.keys_today;
        match self.keys.check(account, request_id, &content) {
            KeyCheck::New => {}
            KeyCheck::Resent(outcome) => {
                let acct_seq = self.ledger.next_seq(account);
                sink.emit(&Event::RequestResent {
                    acct_seq,
                    account,
                    request_id,
                    request: kind,
                    order_id,
                    outcome,
                });
                return false;
            }
            KeyCheck::Conflict => {
                self.reject_request(r, RejectReason::DuplicateKey, sink);
                return false;
            }
        }
        if keys_today >= self.config.orders_per_account_day_max || !self.keys.has_room() {
            self.reject_request(r, RejectReason::KeysFull, sink);
            return false;
        }
        true
    }

    fn reject_request(&mut self, r: Request, reason: RejectReason, sink: &mut impl EventSink) {
        let acct_seq = self.ledger.next_seq(r.account);
        sink.emit(&Event::RequestRejected {
            acct_seq,
            account: r.account,
            request_id: r.request_id,
            request: r.kind,
            order_id: r.order_id,
            reason,
        });
    }

    /// Records the outcome of a cancel-side request past step 3 and, if it failed, rejects.
    fn finish_request(&mut self, r: Request, outcome: Outcome, sink: &mut impl EventSink) {
        if self.config.accounting {
            self.record_key(r.account, r.request_id, r.content, outcome);
        }
        if let Outcome::Rejected(reason) = outcome {
            self.reject_request(r, reason, sink);
        }
    }

    /// The slot of a live order owned by `account` (SYSTEM_MARKET orders are never owned by
    /// a user request).
    fn owned_order(&self, account: AccountId, order_id: OrderId) -> Option<Slot> {
        let slot = self.orders.slot_of(order_id)?;
        let o = self.orders.get(slot);
        (o.account == account && !account.is_system_market()).then_some(slot)
    }

    pub(crate) fn cancel_order(
        &mut self,
        account: AccountId,
        request_id: ClientOrderId,
        order_id: OrderId,
        sink: &mut impl EventSink,
    ) {
        let r = Request {
            account,
            request_id,
            content: RequestContent::Cancel { order_id },
            kind: RequestKind::Cancel,
            order_id,
        };
        if !self.begin_request(r, sink) {
            return;
        }
        let Some(slot) = self.owned_order(account, order_id) else {
            return self.finish_request(r, Outcome::Rejected(RejectReason::UnknownOrder), sink);
        };
        self.finish_request(r, Outcome::Accepted(order_id), sink);
        self.cancel_live(slot, CancelReason::Requested, request_id, sink);
    }

    fn cancel_live(
        &mut self,
        slot: Slot,
        reason: CancelReason,
        request_id: ClientOrderId,
        sink: &mut impl EventSink,
    ) {
        let o = self.orders.get(slot).head();
        let acct_seq = self.ledger.next_seq(o.account);
        sink.emit(&Event::OrderCancelled {
            acct_seq,
            account: o.account,
            order_id: o.id,
            symbol: o.symbol,
            qty_cancelled: o.leaves,
            reason,
            request_id,
        });
        if let Some(state) = self.remove_live_order(slot, sink) {
            emit_level(sink, o.symbol, o.side, state);
        }
    }

    pub(crate) fn cancel_all(
        &mut self,
        account: AccountId,
        request_id: ClientOrderId,
        symbol: Option<SymbolId>,
        sink: &mut impl EventSink,
    ) {
        let r = Request {
            account,
            request_id,
            content: RequestContent::CancelAll { symbol },
            kind: RequestKind::CancelAll,
            order_id: OrderId(0),
        };
        if !self.begin_request(r, sink) {
            return;
        }
        if account.is_system_market() {
            return self.finish_request(r, Outcome::Rejected(RejectReason::UnknownAccount), sink);
        }
        // The account's orders in OrderId order: its list (each next read before the order is
        // cancelled), or in book-only mode (no lists) every order, taken up front.
        let mut cancelled = 0u32;
        let mut cancel_if_matching = |engine: &mut Self, slot: Slot| {
            let o = engine.orders.get(slot);
            if o.account == account && symbol.is_none_or(|s| s == o.symbol) {
                engine.cancel_live(slot, CancelReason::CancelAll, request_id, sink);
                cancelled += 1;
            }
        };
        match self.ledger.account(account) {
            Some(a) if self.config.accounting => {
                let mut cur = a.orders_head;
                while cur != NIL {
                    let next = self.orders.get(cur).by_account.next;
                    cancel_if_matching(self, cur);
                    cur = next;
                }
            }
            _ => {
                for slot in self.orders.slots_by_id() {
                    cancel_if_matching(self, slot);
                }
            }
        }
        self.finish_request(r, Outcome::CancelledAll(cancelled), sink);
        let acct_seq = self.ledger.next_seq(account);
        sink.emit(&Event::CancelAllDone {
            acct_seq,
            account,
            request_id,
            symbol,
            cancelled,
        });
    }

    pub(crate) fn modify_order(
        &mut self,
        account: AccountId,
        request_id: ClientOrderId,
        order_id: OrderId,
        new_qty: Qty,
        new_price: Price,
        sink: &mut impl EventSink,
    ) {
        let r = Request {
            account,
            request_id,
            content: RequestContent::Modify {
                order_id,
                new_qty,
                new_price,
            },
            kind: RequestKind::Modify,
            order_id,
        };
        if !self.begin_request(r, sink) {
            return;
        }
        let (slot, new_hold) = match self.admit_modify(account, order_id, new_qty, new_price) {
            Ok(v) => v,
            Err(reason) => return self.finish_request(r, Outcome::Rejected(reason), sink),
        };
        let o = *self.orders.get(slot);
        if let Err(fault) = self.apply_modify_holds(&o, new_qty, new_hold) {
            let reason = if fault.is_bug() {
                self.ledger_alarm(fault, sink);
                RejectReason::LedgerCheckFailed
            } else {
                RejectReason::Overflow
            };
            return self.finish_request(r, Outcome::Rejected(reason), sink);
        }
        self.finish_request(r, Outcome::Accepted(order_id), sink);
        let keeps_priority = new_price == o.price && new_qty < o.leaves;
        let acct_seq = self.ledger.next_seq(account);
        sink.emit(&Event::OrderModified {
            acct_seq,
            account,
            order_id,
            request_id,
            price: new_price,
            leaves: new_qty,
            priority_kept: keeps_priority,
        });
        if self.config.accounting {
            match o.side {
                Side::Buy => self.emit_account_state(account, sink),
                Side::Sell => self.emit_position(o.position, sink),
            }
        }
        let si = o.symbol.0 as usize - 1;
        if keeps_priority {
            let state = self.symbols[si]
                .book
                .reduce(o.side, o.price, Qty(o.leaves.0 - new_qty.0));
            let m = self.orders.get_mut(slot);
            m.leaves = new_qty;
            m.cash_hold = new_hold;
            return emit_level(sink, o.symbol, o.side, state);
        }
        let state = self.symbols[si].book.unlink(&mut self.orders, slot);
        emit_level(sink, o.symbol, o.side, state);
        let m = self.orders.get_mut(slot);
        m.resting = false;
        m.leaves = new_qty;
        m.price = new_price;
        m.cash_hold = new_hold;
        self.execute(slot, new_price, sink);
    }

    /// Modify validation after the key: the order, the phase, quantity and price rules, no
    /// change, level room, risk. Returns the order's slot and its new cash hold.
    fn admit_modify(
        &self,
        account: AccountId,
        order_id: OrderId,
        new_qty: Qty,
        new_price: Price,
    ) -> Result<(Slot, Amount), RejectReason> {
        let slot = self
            .owned_order(account, order_id)
            .ok_or(RejectReason::UnknownOrder)?;
        let o = self.orders.get(slot);
        if self.phase != crate::command::MarketPhase::Continuous {
            return Err(RejectReason::MarketClosed);
        }
        if o.order_type == OrderType::Market {
            return Err(RejectReason::MarketOrderModify);
        }
        let sym = &self.symbols[o.symbol.0 as usize - 1];
        if new_qty.0 <= 0 {
            return Err(RejectReason::InvalidQty);
        }
        if new_qty.0 > QTY_MAX || new_price.0 > PRICE_MAX {
            return Err(RejectReason::OutOfRange);
        }
        if new_qty.0 % sym.symbol.lot_size.0 != 0 {
            return Err(RejectReason::QtyNotLotMultiple);
        }
        self.check_price(&sym.symbol, new_price)?;
        if new_qty == o.leaves && new_price == o.price {
            return Err(RejectReason::NoChange);
        }
        new_price.notional(new_qty).ok_or(RejectReason::Overflow)?;
        if new_price != o.price && !sym.book.has_room_for(o.side, new_price) {
            return Err(RejectReason::LevelsFull);
        }
        if !self.config.accounting {
            return Ok((slot, Amount(0)));
        }
        match o.side {
            Side::Buy => {
                let hold = buy_hold(
                    new_price,
                    new_qty,
                    o.cum_notional,
                    o.commission_charged,
                    self.fees.commission_ppm,
                )
                .ok_or(RejectReason::Overflow)?;
                let available = self.ledger.account(account).expect("owner").available();
                if hold.0 - o.cash_hold.0 > available.0 {
                    return Err(RejectReason::InsufficientCash);
                }
                Ok((slot, hold))
            }
            Side::Sell => {
                let p = &self.ledger.positions()[o.position as usize];
                if new_qty.0 - o.leaves.0 > p.available().0 {
                    return Err(RejectReason::InsufficientShares);
                }
                Ok((slot, Amount(0)))
            }
        }
    }

    /// Moves the order's hold to what its new quantity and price need. On `Err` nothing has
    /// changed.
    fn apply_modify_holds(
        &mut self,
        o: &Order,
        new_qty: Qty,
        new_hold: Amount,
    ) -> Result<(), LedgerFault> {
        if !self.config.accounting {
            return Ok(());
        }
        let (hold, grows) = match o.side {
            Side::Buy => {
                let delta = new_hold
                    .checked_sub(o.cash_hold)
                    .ok_or(LedgerFault::Overflow)?;
                let size = delta.0.checked_abs().ok_or(LedgerFault::Overflow)?;
                (Hold::Cash(o.account, Amount(size)), delta.0 > 0)
            }
            Side::Sell => {
                let delta = new_qty
                    .0
                    .checked_sub(o.leaves.0)
                    .ok_or(LedgerFault::Overflow)?;
                let size = delta.checked_abs().ok_or(LedgerFault::Overflow)?;
                (Hold::Shares(o.position, Qty(size)), delta > 0)
            }
        };
        if grows {
            self.ledger.place_hold(hold)
        } else {
            self.ledger.release_hold(hold)
        }
    }

    // ----- QuoteUpdate -----

    pub(crate) fn quote_update(
        &mut self,
        symbol: SymbolId,
        bid: (Price, Qty),
        ask: (Price, Qty),
        sink: &mut impl EventSink,
    ) {
        if let Err(reason) = self.check_quote(symbol, bid, ask) {
            return sink.emit(&Event::QuoteRejected { symbol, reason });
        }
        let si = symbol.0 as usize - 1;
        for id in [
            self.symbols[si].synthetic_bid.take(),
            self.symbols[si].synthetic_ask.take(),
        ]
        .into_iter()
        .flatten()
        {
            if let Some(slot) = self.orders.slot_of(id) {
                self.cancel_live(slot, CancelReason::QuoteReplaced, ClientOrderId(0), sink);
            }
        }
        for (side, (price, qty)) in [(Side::Buy, bid), (Side::Sell, ask)] {
            if qty.0 == 0 {
                continue;
            }
            let id = OrderId(self.next_order_id);
            self.next_order_id += 1;
            let order = Order::new(
                id,
                AccountId::SYSTEM_MARKET,
                ClientOrderId(0),
                symbol,
                side,
                price,
                qty,
            );
            let slot = self
                .orders
                .insert(Order {
                    ts_accepted: self.now_ts,
                    ..order
                })
                .expect("checked: free slots");
            sink.emit(&Event::OrderAccepted {
                acct_seq: 0,
                order: OrderInfo {
                    order_id: id,
                    account: AccountId::SYSTEM_MARKET,
                    client_order_id: ClientOrderId(0),
                    symbol,
                    side,
                    order_type: OrderType::Limit,
                    tif: TimeInForce::Day,
                    price,
                    qty,
                },
                resent: false,
            });
            self.execute(slot, price, sink);
            if self.orders.slot_of(id).is_some() {
                match side {
                    Side::Buy => self.symbols[si].synthetic_bid = Some(id),
                    Side::Sell => self.symbols[si].synthetic_ask = Some(id),
                }
            }
        }
    }

    // ----- SetQuoteStatus -----

    /// Records the quote source's verdict; `Stale` withdraws the symbol's synthetic quote
    /// orders (ADR-023). Orders of other participants stay in the book and keep matching.
    pub(crate) fn set_quote_status(
        &mut self,
        symbol: SymbolId,
        status: QuoteStatus,
        sink: &mut impl EventSink,
    ) {
        if self.symbol_state(symbol).is_none() {
            return sink.emit(&Event::QuoteRejected {
                symbol,
                reason: RejectReason::UnknownSymbol,
            });
        }
        let si = symbol.0 as usize - 1;
        self.symbols[si].quote_status = status;
        if status == QuoteStatus::Stale {
            for id in [
                self.symbols[si].synthetic_bid.take(),
                self.symbols[si].synthetic_ask.take(),
            ]
            .into_iter()
            .flatten()
            {
                if let Some(slot) = self.orders.slot_of(id) {
                    self.cancel_live(slot, CancelReason::QuoteReplaced, ClientOrderId(0), sink);
                }
            }
        }
        sink.emit(&Event::QuoteStatusSet { symbol, status });
        assert!(
            status == QuoteStatus::Fresh
                || (self.symbols[si].synthetic_bid.is_none()
                    && self.symbols[si].synthetic_ask.is_none()),
            "a stale symbol has no synthetic quote orders"
        );
    }

    /// Quote rules: symbol, phase, sizes, grid, band, crossed or locked, capacity.
    fn check_quote(
        &self,
        symbol: SymbolId,
        bid: (Price, Qty),
        ask: (Price, Qty),
    ) -> Result<(), RejectReason> {
        let state = self
            .symbol_state(symbol)
            .ok_or(RejectReason::UnknownSymbol)?;
        let sym = &state.symbol;
        if self.phase != crate::command::MarketPhase::Continuous {
            return Err(RejectReason::MarketClosed);
        }
        if state.quote_status == QuoteStatus::Stale {
            return Err(RejectReason::QuoteSourceStale);
        }
        let sides = [bid, ask];
        if sides
            .iter()
            .any(|(_, q)| q.0 < 0 || q.0 % sym.lot_size.0 != 0)
        {
            return Err(RejectReason::InvalidQuoteQty);
        }
        let quoted = sides.iter().filter(|(_, q)| q.0 > 0);
        if quoted
            .clone()
            .any(|(p, q)| q.0 > QTY_MAX || p.0 > PRICE_MAX)
        {
            return Err(RejectReason::OutOfRange);
        }
        if quoted.clone().any(|(p, _)| !sym.tick_rule.is_on_grid(*p)) {
            return Err(RejectReason::QuoteOffTick);
        }
        if let Some(band) = sym.band
            && quoted.clone().any(|(p, _)| !band.contains(*p))
        {
            return Err(RejectReason::QuoteOutsideBand);
        }
        if bid.1.0 > 0 && ask.1.0 > 0 {
            if bid.0 > ask.0 {
                return Err(RejectReason::QuoteCrossed);
            }
            if bid.0 == ask.0 {
                return Err(RejectReason::QuoteLocked);
            }
        }
        // Old quote orders free their slots first; each new side needs one.
        let freed = [state.synthetic_bid, state.synthetic_ask]
            .iter()
            .flatten()
            .filter(|id| self.orders.slot_of(**id).is_some())
            .count();
        let sides_quoted = quoted.count();
        // Every command answers with at least one event: a quote that changes nothing is
        // refused rather than silently dropped.
        if freed == 0 && sides_quoted == 0 {
            return Err(RejectReason::QuoteEmpty);
        }
        let free = self.orders_free() + freed;
        if free < sides_quoted {
            return Err(RejectReason::OrdersFull);
        }
        for (side, (p, q)) in [(Side::Buy, bid), (Side::Sell, ask)] {
            if q.0 > 0 && !state.book.has_room_for(side, p) {
                return Err(RejectReason::LevelsFull);
            }
        }
        Ok(())
    }

    fn orders_free(&self) -> usize {
        (self.config.orders_max - self.orders.live_count()) as usize
    }
}

#[inline]
fn emit_level(sink: &mut impl EventSink, symbol: SymbolId, side: Side, state: LevelState) {
    sink.emit(&Event::BookChanged {
        symbol,
        side,
        price: state.price,
        level_qty: state.qty,
        level_orders: state.count,
    });
}
