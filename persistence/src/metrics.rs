//! The writer's counters and its lag, shared (behind an `Arc`) with whoever shows them: the
//! node's log line, a metrics endpoint, tests.
//!
//! Lag is measured two ways: in commands (`seen_seq - checkpoint_seq`: commands the node has
//! applied whose rows are not yet committed) and in seconds (how long ago the oldest such
//! command was journaled, by the journal's own timestamps).
//!
//! **Performance**: relaxed atomics, written by the writer thread once per batch and by the
//! intake once per command; reading never blocks either.

use std::fmt;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

/// Live counters of one writer.
#[derive(Debug, Default)]
pub struct WriterMetrics {
    /// The last command the node emitted completely (the intake saw its last event).
    pub seen_seq: AtomicU64,
    pub seen_ts_ns: AtomicU64,
    /// The database checkpoint: every row of commands up to it is committed.
    pub checkpoint_seq: AtomicU64,
    pub checkpoint_ts_ns: AtomicU64,
    /// The journal timestamp of the oldest command the writer holds but has not committed
    /// (0: none held).
    pub oldest_pending_ts_ns: AtomicU64,
    pub batches_committed: AtomicU64,
    pub commands_written: AtomicU64,
    /// Row writes committed (inserts, upserts and checkpoint updates).
    pub rows_written: AtomicU64,
    /// Failed batch attempts (each retried after a backoff).
    pub retries: AtomicU64,
    /// Events the intake dropped because its buffer was full.
    pub events_dropped: AtomicU64,
    /// Times the intake's buffer overflowed (each starts a drop period).
    pub overflows: AtomicU64,
    /// Commands whose events were re-derived by replaying the journal.
    pub commands_rederived: AtomicU64,
    /// Items in the intake buffer.
    pub queued: AtomicUsize,
    /// Set by the intake when its buffer overflowed; cleared by the writer once it has drained
    /// the buffer, which lets the intake take events again (at a command boundary).
    pub overflowed: AtomicBool,
    /// False while the last database attempt failed.
    pub database_ok: AtomicBool,
    /// Set once the writer thread has stopped.
    pub stopped: AtomicBool,
    pub last_error: Mutex<Option<String>>,
}

/// A point-in-time copy of the counters, with the lag computed.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct WriterStatus {
    pub seen_seq: u64,
    pub checkpoint_seq: u64,
    pub lag_seq: u64,
    pub lag_seconds: f64,
    pub batches_committed: u64,
    pub commands_written: u64,
    pub rows_written: u64,
    pub retries: u64,
    pub events_dropped: u64,
    pub overflows: u64,
    pub commands_rederived: u64,
    pub queued: usize,
    pub database_ok: bool,
    pub last_error: Option<String>,
}

impl WriterMetrics {
    /// Commands applied by the node whose rows are not committed yet.
    pub fn lag_seq(&self) -> u64 {
        self.seen_seq
            .load(Ordering::Acquire)
            .saturating_sub(self.checkpoint_seq.load(Ordering::Acquire))
    }

    /// Seconds since the oldest uncommitted command was journaled (0 when caught up).
    pub fn lag_seconds(&self, now_ns: u64) -> f64 {
        if self.lag_seq() == 0 {
            return 0.0;
        }
        let oldest = match self.oldest_pending_ts_ns.load(Ordering::Acquire) {
            0 => self.seen_ts_ns.load(Ordering::Acquire),
            ts => ts,
        };
        now_ns.saturating_sub(oldest) as f64 / 1e9
    }

    pub fn status(&self, now_ns: u64) -> WriterStatus {
        let load = |a: &AtomicU64| a.load(Ordering::Acquire);
        WriterStatus {
            seen_seq: load(&self.seen_seq),
            checkpoint_seq: load(&self.checkpoint_seq),
            lag_seq: self.lag_seq(),
            lag_seconds: self.lag_seconds(now_ns),
            batches_committed: load(&self.batches_committed),
            commands_written: load(&self.commands_written),
            rows_written: load(&self.rows_written),
            retries: load(&self.retries),
            events_dropped: load(&self.events_dropped),
            overflows: load(&self.overflows),
            commands_rederived: load(&self.commands_rederived),
            queued: self.queued.load(Ordering::Acquire),
            database_ok: self.database_ok.load(Ordering::Acquire),
            last_error: self.last_error.lock().ok().and_then(|e| e.clone()),
        }
    }

    pub(crate) fn set_error(&self, error: Option<String>) {
        self.database_ok.store(error.is_none(), Ordering::Release);
        if let Ok(mut e) = self.last_error.lock() {
            *e = error;
        }
    }
}

impl fmt::Display for WriterStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "checkpoint seq {} | lag {} commands, {:.1} s | {} rows in {} batches | {} retries | {} events dropped in {} overflows, {} commands re-derived from the journal",
            self.checkpoint_seq,
            self.lag_seq,
            self.lag_seconds,
            self.rows_written,
            self.batches_committed,
            self.retries,
            self.events_dropped,
            self.overflows,
            self.commands_rederived
        )
    }
}

/// Nanoseconds since the Unix epoch (the journal's clock).
pub fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}
