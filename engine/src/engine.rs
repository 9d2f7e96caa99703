//! The engine: one deterministic state machine, `apply(envelope) -> events`.
//!
//! `Engine::apply` is a pure function of the engine's state and the envelope: no clock (time
//! is the largest `ts` seen), no randomness, no I/O, no threads, no address-dependent
//! iteration. Replaying the same journal yields the same events and state, byte for byte.
//!
//! This file holds the state, the dispatch, reference data and the day cycle; orders and
//! matching are in [`crate::matching`], money movements in [`crate::ledger`].
//!
//! **Invariants**: see [`Engine::check_invariants`]; every command yields at least one event.
//!
//! **Performance**: dispatch is one `match`; no allocation per command in steady state
//! (everything is sized from [`EngineConfig`]); daily commands (StartOfDay, RegisterSymbol)
//! may allocate.

use crate::book::Book;
use crate::book::order::OrderStore;
use crate::command::{Command, CommandKind, Envelope, MarketPhase, QuoteStatus, RegisterSymbol};
use crate::config::EngineConfig;
use crate::event::{CancelReason, Event, EventSink};
use crate::fees::FeeSchedule;
use crate::idempotency::KeyTable;
use crate::ledger::Ledger;
use crate::limits::{BASE_PRICES_MAX, PRICE_MAX};
use crate::reference::{self, PriceBand, ReferenceError, Symbol};
use crate::reject::RejectReason;
use crate::types::{AccountId, OrderId, Price, SymbolCode, SymbolId};
use rustc_hash::FxHashMap;

/// A symbol's reference data, book and synthetic quote orders.
pub struct SymbolState {
    pub symbol: Symbol,
    pub book: Book,
    /// The SYSTEM_MARKET's live quote orders, if any.
    pub synthetic_bid: Option<OrderId>,
    pub synthetic_ask: Option<OrderId>,
    /// The quote source's last verdict (`SetQuoteStatus`); `Fresh` until one arrives.
    pub quote_status: QuoteStatus,
}

pub struct Engine {
    pub(crate) config: EngineConfig,
    /// The largest `ts` seen: the engine's only notion of time.
    pub(crate) now_ts: u64,
    pub(crate) last_seq: u64,
    pub(crate) phase: MarketPhase,
    pub(crate) day_open: bool,
    pub(crate) trading_day: u32,
    pub(crate) fees: FeeSchedule,
    pub(crate) symbols: Vec<SymbolState>,
    pub(crate) symbol_by_code: FxHashMap<SymbolCode, SymbolId>,
    pub(crate) orders: OrderStore,
    pub(crate) ledger: Ledger,
    pub(crate) keys: KeyTable,
    pub(crate) next_order_id: u64,
    pub(crate) next_trade_id: u64,
    pub(crate) next_priority: u64,
    /// The kind of the command being applied (named by ledger alarms).
    pub(crate) applying: CommandKind,
}

impl Engine {
    pub fn new(config: EngineConfig) -> Engine {
        let mut symbol_by_code = FxHashMap::default();
        symbol_by_code.reserve(config.symbols_max as usize);
        Engine {
            config,
            now_ts: 0,
            last_seq: 0,
            phase: MarketPhase::Closed,
            day_open: false,
            trading_day: 0,
            fees: FeeSchedule::default(),
            symbols: Vec::with_capacity(config.symbols_max as usize),
            symbol_by_code,
            orders: OrderStore::new(config.orders_max),
            ledger: Ledger::new(
                config.accounts_max,
                config.positions_max,
                config.symbols_max,
                config.open_tx_max,
                config.closed_tx_window_max,
            ),
            keys: KeyTable::new(
                if config.accounting {
                    config.keys_max
                } else {
                    0
                },
                config.accounts_max,
            ),
            next_order_id: 1,
            next_trade_id: 1,
            next_priority: 1,
            applying: CommandKind::TakeSnapshot,
        }
    }

    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// Applies one journaled command, emitting its events into `sink`.
    #[inline]
    pub fn apply(&mut self, envelope: &Envelope, sink: &mut impl EventSink) {
        self.apply_command(envelope.seq, envelope.ts, &envelope.command, sink);
    }

    /// [`Engine::apply`] without an `Envelope` (the pipeline reads the command in place from
    /// its ring slot).
    pub fn apply_command(
        &mut self,
        seq: u64,
        ts: u64,
        command: &Command,
        sink: &mut impl EventSink,
    ) {
        // A gap or a repeat means the pipeline (or a tool) feeds the wrong journal: an
        // internal fault, so stop rather than apply out of order (cheap: one compare).
        assert!(
            self.last_seq == 0 || Some(seq) == self.last_seq.checked_add(1),
            "commands arrive in dense seq order: seq {seq} after {}",
            self.last_seq
        );
        self.last_seq = seq;
        self.applying = command.kind();
        self.now_ts = self.now_ts.max(ts);
        #[cfg(debug_assertions)]
        {
            let mut counted = CountingSink {
                inner: sink,
                events: 0,
            };
            self.dispatch(command, &mut counted);
            debug_assert!(
                counted.events > 0,
                "every command answers with at least one event: {command:?}"
            );
        }
        #[cfg(not(debug_assertions))]
        self.dispatch(command, sink);
    }

    #[inline]
    fn dispatch(&mut self, command: &Command, sink: &mut impl EventSink) {
        match command {
            Command::PlaceOrder(order) => self.place_order(order, sink),
            Command::CancelOrder {
                account,
                request_id,
                order_id,
            } => self.cancel_order(*account, *request_id, *order_id, sink),
            Command::ModifyOrder {
                account,
                request_id,
                order_id,
                new_qty,
                new_price,
            } => self.modify_order(*account, *request_id, *order_id, *new_qty, *new_price, sink),
            Command::CancelAll {
                account,
                request_id,
                symbol,
            } => self.cancel_all(*account, *request_id, *symbol, sink),
            Command::QuoteUpdate {
                symbol,
                bid_price,
                bid_qty,
                ask_price,
                ask_qty,
            } => self.quote_update(
                *symbol,
                (*bid_price, *bid_qty),
                (*ask_price, *ask_qty),
                sink,
            ),
            Command::RegisterSymbol(r) => self.register_symbol(r, sink),
            Command::SetFeeSchedule(s) => self.set_fee_schedule(s, sink),
            Command::StartOfDay {
                trading_day,
                base_prices,
            } => self.start_of_day(*trading_day, base_prices, sink),
            Command::SetMarketPhase { phase } => self.set_phase(*phase, sink),
            Command::EndOfDay { trading_day } => self.end_of_day(*trading_day, sink),
            Command::OpenAccount { owner } => self.open_account(*owner, sink),
            Command::Deposit {
                account,
                amount,
                external_ref,
            } => self.deposit(*account, *amount, *external_ref, sink),
            Command::Withdraw {
                account,
                amount,
                external_ref,
            } => self.withdraw(*account, *amount, *external_ref, sink),
            Command::Adjust {
                account,
                asset,
                amount,
                external_ref,
                cost_price,
            } => self.adjust(*account, *asset, *amount, *external_ref, *cost_price, sink),
            Command::ConfirmTransaction { tx } => self.confirm_transaction(*tx, sink),
            Command::FailTransaction { tx } => self.fail_transaction(*tx, sink),
            Command::ReverseTransaction { tx } => self.reverse_transaction(*tx, sink),
            Command::ExpireStaleExternal { cutoff_ts } => self.expire_stale(*cutoff_ts, sink),
            Command::TakeSnapshot => sink.emit(&Event::SnapshotMarker),
            Command::BeginEpoch { epoch } => self.begin_epoch(*epoch, sink),
            Command::SetQuoteStatus { symbol, status } => {
                self.set_quote_status(*symbol, *status, sink)
            }
        }
    }

    /// Raises every id counter and account sequence number to `epoch`'s floor
    /// ([`crate::epochs`]); never lowers one.
    fn begin_epoch(&mut self, epoch: u64, sink: &mut impl EventSink) {
        let Some(floor) = crate::epochs::epoch_floor(epoch) else {
            let kind = CommandKind::BeginEpoch;
            return self.reject_command(kind, AccountId(0), RejectReason::OutOfRange, sink);
        };
        self.next_order_id = self.next_order_id.max(floor);
        self.next_trade_id = self.next_trade_id.max(floor);
        self.ledger.raise_ids_to(floor);
        sink.emit(&Event::EpochBegan {
            epoch,
            id_floor: floor,
        });
    }

    pub(crate) fn reject_command(
        &mut self,
        command: CommandKind,
        account: AccountId,
        reason: RejectReason,
        sink: &mut impl EventSink,
    ) {
        let acct_seq = self.ledger.next_seq(account);
        sink.emit(&Event::CommandRejected {
            command,
            account,
            acct_seq,
            reason,
        });
    }

    #[inline]
    pub(crate) fn symbol_state(&self, id: SymbolId) -> Option<&SymbolState> {
        (id.0 as usize)
            .checked_sub(1)
            .and_then(|i| self.symbols.get(i))
    }

    fn register_symbol(&mut self, r: &RegisterSymbol, sink: &mut impl EventSink) {
        let checked = reference::validate_code(&r.code)
            .and_then(|_| reference::validate_pricing(r.tick_rule, r.base_price, r.lot_size));
        let reason = match checked {
            Err(e) => Some(reference_reject(e)),
            Ok(()) if self.symbol_by_code.contains_key(&r.code) => Some(RejectReason::SymbolExists),
            Ok(()) if self.symbols.len() >= self.config.symbols_max as usize => {
                Some(RejectReason::SymbolsFull)
            }
            Ok(()) => None,
        };
        if let Some(reason) = reason {
            return self.reject_command(CommandKind::RegisterSymbol, AccountId(0), reason, sink);
        }
        let id = SymbolId(self.symbols.len() as u32 + 1);
        let band = if r.banded {
            PriceBand::krx(r.tick_rule, r.base_price)
        } else {
            None
        };
        let symbol = Symbol {
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
        let book = Book::new(
            self.config.ladder,
            r.tick_rule,
            band,
            self.config.levels_max,
        );
        self.symbols.push(SymbolState {
            symbol,
            book,
            synthetic_bid: None,
            synthetic_ask: None,
            quote_status: QuoteStatus::Fresh,
        });
        self.symbol_by_code.insert(r.code, id);
        self.ledger.add_symbol();
        sink.emit(&Event::SymbolRegistered { symbol });
    }

    fn set_fee_schedule(&mut self, s: &FeeSchedule, sink: &mut impl EventSink) {
        let reason = if !s.is_valid() {
            Some(RejectReason::InvalidFeeSchedule)
        } else if self.day_open {
            // Live buys hold cash for their commission at today's rate: a new rate would
            // leave their holds short (or long) of what a fill charges.
            Some(RejectReason::FeesDuringDay)
        } else {
            None
        };
        if let Some(reason) = reason {
            let kind = CommandKind::SetFeeSchedule;
            return self.reject_command(kind, AccountId(0), reason, sink);
        }
        self.fees = *s;
        sink.emit(&Event::FeeScheduleSet { schedule: *s });
    }

    fn start_of_day(
        &mut self,
        trading_day: u32,
        base_prices: &[(SymbolId, Price)],
        sink: &mut impl EventSink,
    ) {
        let reason = if self.day_open {
            Some(RejectReason::DayAlreadyStarted)
        } else if base_prices.len() > BASE_PRICES_MAX.min(self.config.symbols_max as usize) {
            Some(RejectReason::OutOfRange)
        } else {
            base_prices
                .iter()
                .find_map(|&(id, price)| match self.symbol_state(id) {
                    None => Some(RejectReason::UnknownSymbol),
                    Some(_) if price.0 > PRICE_MAX => Some(RejectReason::OutOfRange),
                    Some(s) if !s.symbol.tick_rule.is_on_grid(price) => {
                        Some(RejectReason::InvalidBasePrice)
                    }
                    Some(_) => None,
                })
        };
        if let Some(reason) = reason {
            return self.reject_command(CommandKind::StartOfDay, AccountId(0), reason, sink);
        }
        self.day_open = true;
        self.trading_day = trading_day;
        self.keys.clear();
        self.ledger.reset_keys_today();
        sink.emit(&Event::DayStarted { trading_day });
        for i in 0..self.symbols.len() {
            let id = SymbolId(i as u32 + 1);
            let state = &mut self.symbols[i];
            let sym = &mut state.symbol;
            // The official previous close if given; else today's last trade; else unchanged.
            let given = base_prices
                .iter()
                .rev()
                .find(|(s, _)| *s == id)
                .map(|p| p.1);
            let base = given
                .or(sym.last_trade_price.map(|p| sym.tick_rule.floor_to_grid(p)))
                .unwrap_or(sym.base_price);
            sym.base_price = base;
            if sym.banded {
                sym.band = PriceBand::krx(sym.tick_rule, base);
            }
            let (rule, band) = (sym.tick_rule, sym.band);
            state
                .book
                .respan(self.config.ladder, rule, band, self.config.levels_max);
            if let Some(b) = band {
                sink.emit(&Event::BandSet {
                    symbol: id,
                    base_price: base,
                    lower: b.lower,
                    upper: b.upper,
                });
            }
        }
    }

    /// Any phase but `Closed` needs an open trading day.
    fn set_phase(&mut self, phase: MarketPhase, sink: &mut impl EventSink) {
        if !self.day_open && phase != MarketPhase::Closed {
            let reason = RejectReason::DayNotStarted;
            return self.reject_command(CommandKind::SetMarketPhase, AccountId(0), reason, sink);
        }
        self.phase = phase;
        sink.emit(&Event::PhaseChanged { phase });
    }

    /// Ends the day: every live order leaves the book in OrderId order (user orders expire,
    /// synthetic quotes are withdrawn) and the market closes.
    fn end_of_day(&mut self, trading_day: u32, sink: &mut impl EventSink) {
        if !self.day_open {
            return self.reject_command(
                CommandKind::EndOfDay,
                AccountId(0),
                RejectReason::DayNotStarted,
                sink,
            );
        }
        // Every order expires, in OrderId order (nothing is added meanwhile, so the slots
        // taken up front stay valid).
        for slot in self.orders.slots_by_id() {
            let o = *self.orders.get(slot);
            let event = if o.account.is_system_market() {
                Event::OrderCancelled {
                    acct_seq: 0,
                    account: o.account,
                    order_id: o.id,
                    symbol: o.symbol,
                    qty_cancelled: o.leaves,
                    reason: CancelReason::QuoteReplaced,
                    request_id: crate::types::ClientOrderId(0),
                }
            } else {
                Event::OrderExpired {
                    acct_seq: self.ledger.next_seq(o.account),
                    account: o.account,
                    order_id: o.id,
                    symbol: o.symbol,
                    qty_expired: o.leaves,
                }
            };
            sink.emit(&event);
            if let Some(state) = self.remove_live_order(slot, sink) {
                sink.emit(&Event::BookChanged {
                    symbol: o.symbol,
                    side: o.side,
                    price: state.price,
                    level_qty: state.qty,
                    level_orders: state.count,
                });
            }
        }
        for s in self.symbols.iter_mut() {
            s.synthetic_bid = None;
            s.synthetic_ask = None;
        }
        self.day_open = false;
        self.phase = MarketPhase::Closed;
        sink.emit(&Event::DayEnded { trading_day });
        sink.emit(&Event::PhaseChanged {
            phase: MarketPhase::Closed,
        });
    }

    // ----- read API (tests, tools, snapshots; never called from another thread) -----

    /// The last applied seq.
    pub fn last_seq(&self) -> u64 {
        self.last_seq
    }

    /// The engine's time: the largest envelope `ts` seen.
    pub fn now_ts(&self) -> u64 {
        self.now_ts
    }

    pub fn phase(&self) -> MarketPhase {
        self.phase
    }

    pub fn day_open(&self) -> bool {
        self.day_open
    }

    pub fn trading_day(&self) -> u32 {
        self.trading_day
    }

    pub fn fee_schedule(&self) -> &FeeSchedule {
        &self.fees
    }

    pub fn symbol(&self, id: SymbolId) -> Option<&Symbol> {
        self.symbol_state(id).map(|s| &s.symbol)
    }

    pub fn symbol_by_code(&self, code: &str) -> Option<&Symbol> {
        let code = SymbolCode::new(code)?;
        self.symbol_by_code
            .get(&code)
            .and_then(|id| self.symbol(*id))
    }

    pub fn symbols(&self) -> impl Iterator<Item = &Symbol> + '_ {
        self.symbols.iter().map(|s| &s.symbol)
    }

    pub fn book(&self, id: SymbolId) -> Option<&Book> {
        self.symbol_state(id).map(|s| &s.book)
    }

    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    pub fn live_order_count(&self) -> u32 {
        self.orders.live_count()
    }

    /// A live order by id.
    pub fn order(&self, id: OrderId) -> Option<&crate::book::order::Order> {
        self.orders.slot_of(id).map(|s| self.orders.get(s))
    }

    /// Orders placed away from their home slot since this engine was built, and orders
    /// accepted in that time (see `book::order`).
    pub fn orders_displaced(&self) -> (u64, u64) {
        (self.orders.displaced_total(), self.orders.inserted_total())
    }

    /// Live orders in OrderId order.
    pub fn live_orders(&self) -> impl Iterator<Item = &crate::book::order::Order> + '_ {
        self.orders.iter().map(|(_, o)| o)
    }
}

fn reference_reject(e: ReferenceError) -> RejectReason {
    match e {
        ReferenceError::InvalidCode => RejectReason::InvalidSymbolCode,
        ReferenceError::OutOfRange => RejectReason::OutOfRange,
        ReferenceError::InvalidTickRule => RejectReason::InvalidTickRule,
        ReferenceError::InvalidBasePrice => RejectReason::InvalidBasePrice,
        ReferenceError::InvalidLotSize => RejectReason::InvalidLotSize,
    }
}

/// Debug builds: counts what a command emits, to check that every command answers.
#[cfg(debug_assertions)]
struct CountingSink<'a, S> {
    inner: &'a mut S,
    events: usize,
}

#[cfg(debug_assertions)]
impl<S: EventSink> EventSink for CountingSink<'_, S> {
    #[inline]
    fn emit(&mut self, event: &Event) {
        self.events += 1;
        self.inner.emit(event);
    }
}
