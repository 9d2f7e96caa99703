//! The HTTP door's output consumer: one managed handler thread of the output ring that keeps
//! the door's read model ([`View`]) and hands each command the door submitted its translated
//! events ([`Collected`]), through a oneshot channel registered under the command's origin.
//!
//! For every event: if the door submitted its command (origin at or above [`ORIGIN_BASE`]),
//! the event is translated with `translate_event` against the read model *before* the event
//! (as the TCP door does) and an admin outcome accumulates it; then the event is folded into
//! the read model, the symbol index and the recent trades. On the command's last event its
//! collection is completed, after the batch's write lock is released, so the waiting request
//! reads a read model that already holds its command's effect.
//!
//! **Invariants**: origins are unique for the process's life (a counter), so an outcome never
//! reaches another request; a request that gave up (timeout) removed its waiter first, and
//! its late outcome is dropped. At most `in_flight_max` waiters exist.
//!
//! **Performance**: per event one translation (two message constructions at most) for the
//! door's own commands, one read-model fold for every event; the write lock is taken once per
//! output batch (or per [`EVENTS_PER_LOCK`] events). Memory: a read model (its order window,
//! about 25 MiB), [`TRADES_PER_SYMBOL_MAX`] trades per symbol, one small vector per command
//! in flight.
//!
//! **Known limitations**: recent trades start empty at each start of the node (they are not
//! rebuilt from the journal).

use crate::node::Seed;
use crate::pipeline::{OutputHandler, OutputSlot};
use kuku_engine::readmodel::ReadModel;
use kuku_engine::{Engine, Event, Price, Qty, Side, SymbolId, TradeId};
use kuku_gateway::translate::{Addressed, AdminOutcome, Symbols, translate_event};
use parking_lot::lock_api::ArcRwLockWriteGuard;
use parking_lot::{Mutex, RwLock};
use rustc_hash::FxHashMap;
use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::oneshot;

/// First origin id of the HTTP door's commands: far from the TCP gateway's (2^48 up) and the
/// node's own (0).
pub const ORIGIN_BASE: u64 = 1 << 56;
/// Events folded under one hold of the write lock, at most.
pub const EVENTS_PER_LOCK: usize = 4_096;
/// Recent trades kept per symbol.
pub const TRADES_PER_SYMBOL_MAX: usize = 200;

/// One trade as the recent-trades endpoint shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TradeRecord {
    pub trade_id: TradeId,
    pub price: Price,
    pub qty: Qty,
    pub taker_side: Side,
    pub ts_ns: u64,
}

/// What the door reads: the read model, the symbol index and the recent trades.
#[derive(Default)]
pub struct View {
    pub read_model: ReadModel,
    pub symbols: Symbols,
    pub trades: FxHashMap<SymbolId, VecDeque<TradeRecord>>,
}

impl View {
    fn apply(&mut self, slot: &OutputSlot) {
        if let Event::Trade {
            trade_id,
            symbol,
            price,
            qty,
            taker_side,
            ..
        } = slot.event
        {
            let trades = self.trades.entry(symbol).or_default();
            if trades.len() == TRADES_PER_SYMBOL_MAX {
                trades.pop_front();
            }
            trades.push_back(TradeRecord {
                trade_id,
                price,
                qty,
                taker_side,
                ts_ns: slot.ts,
            });
        }
        self.symbols.observe(&slot.event);
        self.read_model.apply(slot.seq, slot.ts, &slot.event);
    }
}

/// A command's outcome: its seq, the messages its events send (to any account: the caller
/// keeps those of its own), and the admin result they add up to.
#[derive(Clone, Debug, Default)]
pub struct Collected {
    pub seq: u64,
    pub messages: Vec<Addressed>,
    pub admin: AdminOutcome,
}

/// Shared between the handler thread and the request handlers.
pub struct Outcomes {
    pub view: Arc<RwLock<View>>,
    waiting: Mutex<FxHashMap<u64, oneshot::Sender<Collected>>>,
    next_origin: AtomicU64,
    in_flight_max: usize,
}

/// A registered waiter: submit the command with `origin`, then await `outcome`.
pub struct Waiter {
    pub origin: u64,
    pub outcome: oneshot::Receiver<Collected>,
}

impl Outcomes {
    pub fn new(in_flight_max: usize) -> Outcomes {
        Outcomes {
            view: Arc::new(RwLock::new(View::default())),
            waiting: Mutex::new(FxHashMap::default()),
            next_origin: AtomicU64::new(ORIGIN_BASE),
            in_flight_max,
        }
    }

    /// Registers a waiter for a command about to be submitted; `None` when `in_flight_max`
    /// commands are already waiting.
    pub fn register(&self) -> Option<Waiter> {
        let mut waiting = self.waiting.lock();
        if waiting.len() >= self.in_flight_max {
            return None;
        }
        let origin = self.next_origin.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        waiting.insert(origin, tx);
        Some(Waiter {
            origin,
            outcome: rx,
        })
    }

    /// Removes a waiter that will not wait (its command was refused, or it timed out).
    pub fn forget(&self, origin: u64) {
        self.waiting.lock().remove(&origin);
    }

    fn complete(&self, origin: u64, collected: Collected) {
        if let Some(tx) = self.waiting.lock().remove(&origin) {
            let _ = tx.send(collected);
        }
    }
}

/// Builds the door's view from the recovered engine (a `NodeOutputs` seed).
pub fn seed(outcomes: Arc<Outcomes>) -> Seed {
    Box::new(move |engine: &Engine| {
        let read_model = ReadModel::from_engine(engine);
        let mut view = outcomes.view.write();
        view.symbols = Symbols::from_read_model(&read_model);
        view.read_model = read_model;
        view.trades.clear();
    })
}

/// The output handler (see the module docs).
pub fn handler(outcomes: Arc<Outcomes>) -> OutputHandler {
    let mut guard: Option<ArcRwLockWriteGuard<parking_lot::RawRwLock, View>> = None;
    let mut held_for = 0usize;
    let mut collecting: FxHashMap<u64, Collected> = FxHashMap::default();
    let mut finished: Vec<(u64, Collected)> = Vec::new();
    Box::new(move |slot: &OutputSlot, _, end_of_batch| {
        let view = guard.get_or_insert_with(|| outcomes.view.write_arc());
        let origin = slot.origin.0;
        if origin >= ORIGIN_BASE {
            let c = collecting.entry(origin).or_default();
            c.seq = slot.seq;
            let translated = translate_event(&view.symbols, &view.read_model, slot.ts, &slot.event);
            c.messages.extend(translated.into_iter().flatten());
            c.admin.accumulate(&slot.event);
        }
        view.apply(slot);
        if slot.last
            && origin >= ORIGIN_BASE
            && let Some(c) = collecting.remove(&origin)
        {
            finished.push((origin, c));
        }
        held_for += 1;
        if end_of_batch || held_for >= EVENTS_PER_LOCK {
            guard = None;
            held_for = 0;
            for (origin, c) in finished.drain(..) {
                outcomes.complete(origin, c);
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::Origin;
    use kuku_engine::{AccountId, Amount, ExternalRef};

    fn slot(seq: u64, origin: u64, event: Event, last: bool) -> OutputSlot {
        OutputSlot {
            seq,
            ts: 0,
            origin: Origin(origin),
            event,
            last,
        }
    }

    fn opened(account: u32) -> Event {
        Event::AccountOpened {
            account: AccountId(account),
            owner: ExternalRef::new("o").expect("short"),
            acct_seq: 1,
            resent: false,
        }
    }

    #[test]
    fn a_command_outcome_reaches_only_its_waiter_after_the_fold() {
        let outcomes = Arc::new(Outcomes::new(8));
        let mut h = handler(Arc::clone(&outcomes));
        let mut a = outcomes.register().expect("room");
        let mut b = outcomes.register().expect("room");
        h(&slot(1, a.origin, opened(7), false), 0, false);
        h(
            &slot(
                1,
                a.origin,
                Event::AccountUpdated {
                    account: AccountId(7),
                    cash: Amount(0),
                    cash_hold: Amount(0),
                },
                true,
            ),
            1,
            false,
        );
        // Not before the batch ends (the write lock is still held).
        assert!(a.outcome.try_recv().is_err());
        h(&slot(2, 5, opened(8), true), 2, true);
        let got = a.outcome.try_recv().expect("completed at the batch's end");
        assert_eq!(got.seq, 1);
        assert_eq!(got.admin.account, AccountId(7));
        assert_eq!(got.messages.len(), 1, "{:?}", got.messages);
        assert!(
            outcomes
                .view
                .read()
                .read_model
                .accounts
                .contains_key(&AccountId(7))
        );
        assert!(b.outcome.try_recv().is_err(), "another origin's waiter");
        outcomes.forget(b.origin);
    }

    #[test]
    fn waiters_are_bounded_and_a_forgotten_one_frees_its_place() {
        let outcomes = Outcomes::new(2);
        let a = outcomes.register().expect("room");
        let _b = outcomes.register().expect("room");
        assert!(outcomes.register().is_none());
        outcomes.forget(a.origin);
        assert!(outcomes.register().is_some());
    }
}
