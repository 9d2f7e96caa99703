//! The read-model consumer: folds the output ring's events into the shared [`ReadModel`]
//! that queries read.
//!
//! **Performance**: each event is folded straight from its ring slot, under a write lock
//! taken at the first event of an output batch and held to the batch's end (or for at most
//! [`EVENTS_PER_LOCK`] events). Copying a batch out of the ring first, to hold the lock only
//! while folding, cost this consumer about a third of its time in copies and a second pass
//! over a buffer larger than the core's L2 (perf, 2026-12-03; docs/benchmarks.md §3).
//!
//! **Invariant**: a query never sees part of an output batch longer than [`EVENTS_PER_LOCK`]
//! events; it waits at most for that many folds.

use crate::pipeline::OutputSlot;
use kuku_engine::readmodel::ReadModel;
use parking_lot::RwLock;
use parking_lot::lock_api::ArcRwLockWriteGuard;
use std::sync::Arc;

/// The read model shared between its consumer (writer) and queries (readers).
pub type SharedReadModel = Arc<RwLock<ReadModel>>;

/// Wraps a read model for sharing.
pub fn share(model: ReadModel) -> SharedReadModel {
    Arc::new(RwLock::new(model))
}

/// The most events folded under one hold of the write lock.
pub const EVENTS_PER_LOCK: usize = 4096;

/// Folds output slots into a [`SharedReadModel`]; owned by one consumer thread.
pub struct ReadModelFolder {
    model: SharedReadModel,
    guard: Option<ArcRwLockWriteGuard<parking_lot::RawRwLock, ReadModel>>,
    held_for: usize,
}

impl ReadModelFolder {
    pub fn new(model: SharedReadModel) -> ReadModelFolder {
        ReadModelFolder {
            model,
            guard: None,
            held_for: 0,
        }
    }

    /// Folds one event. `end_of_batch` (as the ring reports it) releases the lock.
    #[inline]
    pub fn fold(&mut self, slot: &OutputSlot, end_of_batch: bool) {
        let model = &self.model;
        let guard = self.guard.get_or_insert_with(|| model.write_arc());
        guard.apply(slot.seq, slot.ts, &slot.event);
        self.held_for += 1;
        if end_of_batch || self.held_for >= EVENTS_PER_LOCK {
            self.guard = None;
            self.held_for = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::Origin;
    use kuku_engine::{AccountId, Amount, Event};

    fn slot(seq: u64, cash: i64) -> OutputSlot {
        OutputSlot {
            seq,
            ts: 0,
            origin: Origin::INTERNAL,
            event: Event::AccountUpdated {
                account: AccountId(7),
                cash: Amount(cash),
                cash_hold: Amount(0),
            },
            last: true,
        }
    }

    #[test]
    fn the_lock_is_held_within_a_batch_and_released_at_its_end() {
        let model = SharedReadModel::default();
        let mut folder = ReadModelFolder::new(Arc::clone(&model));
        folder.fold(&slot(1, 100), false);
        assert!(
            model.try_read().is_none(),
            "a batch in progress holds the lock"
        );
        folder.fold(&slot(2, 250), true);
        let rm = model.try_read().expect("released at the end of the batch");
        assert_eq!(
            rm.accounts.get(&AccountId(7)).map(|a| a.cash),
            Some(Amount(250))
        );
        assert_eq!(rm.last_seq, 2);
    }

    #[test]
    fn a_long_batch_releases_the_lock_every_events_per_lock_events() {
        let model = SharedReadModel::default();
        let mut folder = ReadModelFolder::new(Arc::clone(&model));
        for seq in 1..=EVENTS_PER_LOCK as u64 {
            assert!(seq == 1 || model.try_read().is_none());
            folder.fold(&slot(seq, seq as i64), false);
        }
        let rm = model
            .try_read()
            .expect("released after EVENTS_PER_LOCK events");
        assert_eq!(rm.last_seq, EVENTS_PER_LOCK as u64);
    }
}
