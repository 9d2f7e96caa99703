//! The intake: how events get from the node's output ring to the writer thread without ever
//! making the node wait.
//!
//! [`WriterHandle::offer`] is called by an output-ring consumer for every event. It copies the
//! events the writer stores into a bounded queue (`std::sync::mpsc::sync_channel`, used only
//! through `try_send`) and never blocks: when the queue is full it drops the event and enters a
//! *drop period*, in which it drops everything until the writer has drained the queue (it clears
//! `WriterMetrics::overflowed`) and a new command begins. The writer notices the missing
//! commands by their seq (or, if the node then goes quiet, by `seen_seq`) and re-derives them
//! from the journal.
//!
//! **Invariants**
//! - Every command yields exactly one item flagged `last` (the command's own last event, or an
//!   [`Item::End`] marker when that event is one the writer does not store), unless the command
//!   falls in a drop period; then none of its items after the first drop are queued.
//! - The queue never holds the tail of a command without its head: a drop period ends only at
//!   a command boundary.
//! - `seen_seq` is published after the command's items were queued (release), so a writer that
//!   reads it (acquire) and then finds the queue empty knows every queued item of commands up
//!   to it has been received.
//!
//! **Performance**: one `try_send` (a lock-free slot write) per stored event, none for book
//! deltas and other events the writer ignores; no allocation. The queue's capacity bounds the
//! memory: about 200 bytes per item.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};

use kuku_engine::Event;

use crate::metrics::WriterMetrics;

/// What travels from the intake to the writer.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Item {
    /// An event the writer stores.
    Event {
        seq: u64,
        ts_ns: u64,
        event: Event,
        last: bool,
    },
    /// The command at `seq` ended with an event the writer does not store.
    End { seq: u64, ts_ns: u64 },
}

impl Item {
    pub(crate) fn seq(&self) -> u64 {
        match *self {
            Item::Event { seq, .. } | Item::End { seq, .. } => seq,
        }
    }

    pub(crate) fn ts_ns(&self) -> u64 {
        match *self {
            Item::Event { ts_ns, .. } | Item::End { ts_ns, .. } => ts_ns,
        }
    }

    pub(crate) fn is_last(&self) -> bool {
        match *self {
            Item::Event { last, .. } => last,
            Item::End { .. } => true,
        }
    }
}

/// Whether the writer stores anything from `event`.
pub fn is_stored(event: &Event) -> bool {
    matches!(
        event,
        Event::SymbolRegistered { .. }
            | Event::AccountOpened { resent: false, .. }
            | Event::AccountUpdated { .. }
            | Event::PositionUpdated { .. }
            | Event::TransactionStatusChanged { resent: false, .. }
            | Event::LedgerPosted { .. }
            | Event::Trade { .. }
            | Event::OrderAccepted { resent: false, .. }
            | Event::OrderCancelled { .. }
            | Event::OrderExpired { .. }
            | Event::OrderModified { .. }
    )
}

/// What [`WriterHandle::offer`] did with an event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Offered {
    Queued,
    /// Not stored by the writer (book deltas, rejects, ...): nothing queued.
    Skipped,
    /// Dropped: the buffer is (or recently was) full; the writer re-derives it from the journal.
    Dropped,
}

/// The node's side of the writer: a non-blocking, bounded intake.
pub struct WriterHandle {
    tx: SyncSender<Item>,
    metrics: Arc<WriterMetrics>,
    dropping: bool,
    /// Whether the previous event was its command's last (the next one starts a command).
    previous_was_last: bool,
}

impl WriterHandle {
    pub(crate) fn new(tx: SyncSender<Item>, metrics: Arc<WriterMetrics>) -> WriterHandle {
        WriterHandle {
            tx,
            metrics,
            dropping: false,
            previous_was_last: true,
        }
    }

    /// Offers one event of the command at `seq` (journaled at `ts_ns`); `last` marks the
    /// command's last event. Never blocks.
    #[inline]
    pub fn offer(&mut self, seq: u64, ts_ns: u64, event: &Event, last: bool) -> Offered {
        let starts_command = self.previous_was_last;
        self.previous_was_last = last;
        if self.dropping && starts_command && !self.metrics.overflowed.load(Ordering::Acquire) {
            self.dropping = false;
        }
        let offered = if self.dropping {
            self.metrics.events_dropped.fetch_add(1, Ordering::Relaxed);
            Offered::Dropped
        } else {
            self.enqueue(seq, ts_ns, event, last)
        };
        if last {
            self.metrics.seen_ts_ns.store(ts_ns, Ordering::Relaxed);
            self.metrics.seen_seq.store(seq, Ordering::Release);
        }
        offered
    }

    fn enqueue(&mut self, seq: u64, ts_ns: u64, event: &Event, last: bool) -> Offered {
        let item = if is_stored(event) {
            Item::Event {
                seq,
                ts_ns,
                event: *event,
                last,
            }
        } else if last {
            Item::End { seq, ts_ns }
        } else {
            return Offered::Skipped;
        };
        // Counted before the send so the writer's decrement never underflows.
        self.metrics.queued.fetch_add(1, Ordering::Relaxed);
        match self.tx.try_send(item) {
            Ok(()) => Offered::Queued,
            Err(TrySendError::Full(_)) => {
                self.metrics.queued.fetch_sub(1, Ordering::Relaxed);
                self.dropping = true;
                self.metrics.overflowed.store(true, Ordering::Release);
                self.metrics.overflows.fetch_add(1, Ordering::Relaxed);
                self.metrics.events_dropped.fetch_add(1, Ordering::Relaxed);
                Offered::Dropped
            }
            Err(TrySendError::Disconnected(_)) => {
                // The writer thread has stopped (its error is in the metrics and the log).
                self.metrics.queued.fetch_sub(1, Ordering::Relaxed);
                self.metrics.events_dropped.fetch_add(1, Ordering::Relaxed);
                Offered::Dropped
            }
        }
    }

    pub fn metrics(&self) -> &Arc<WriterMetrics> {
        &self.metrics
    }
}

/// The writer's side of the intake.
pub(crate) struct IntakeReceiver {
    pub(crate) rx: Receiver<Item>,
    pub(crate) metrics: Arc<WriterMetrics>,
}

impl IntakeReceiver {
    /// The next item if one is queued.
    pub(crate) fn try_next(&self) -> Result<Item, std::sync::mpsc::TryRecvError> {
        let item = self.rx.try_recv()?;
        self.metrics.queued.fetch_sub(1, Ordering::Relaxed);
        Ok(item)
    }

    /// Waits up to `timeout` for the next item.
    pub(crate) fn next_timeout(
        &self,
        timeout: std::time::Duration,
    ) -> Result<Item, std::sync::mpsc::RecvTimeoutError> {
        let item = self.rx.recv_timeout(timeout)?;
        self.metrics.queued.fetch_sub(1, Ordering::Relaxed);
        Ok(item)
    }
}
