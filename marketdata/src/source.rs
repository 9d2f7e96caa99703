//! The one trait every market-data source implements: the simulated walk ([`crate::sim`]),
//! the replay of a recorded file ([`crate::replay`]), and provider adapters (KIS) later.
//!
//! A source is polled by the market-data pump on its own thread (never the processor's):
//! each [`Source::poll`] appends the events that are due at `now` to the caller's buffer and
//! says when to poll again. The pump hands every event to the market-data service (quotes,
//! ticks, candles, subscribers, the recorder) and the top of book of each quote to the engine
//! as a `QuoteUpdate`, in the way [`Source::delivery`] asks.
//!
//! **Contract** (checked for every source by `tests/contract.rs`):
//! - every event appended is valid ([`crate::MarketEvent::validate`]);
//! - per symbol, event timestamps never go backwards;
//! - a source that returned [`Poll::Ended`] appends nothing more and keeps returning it;
//! - a poll never blocks longer than it takes to read what is due (no sleeping inside).
//!
//! **Known limitations**: a source gets the engine's symbols (`universe`) on every poll and
//! maps its own identifiers to symbol codes itself (the reference domain's mappings).

use crate::model::{MarketEvent, TimestampNs};
use kuku_engine::Symbol;
use std::time::Duration;

/// What a poll says about the source.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Poll {
    /// More may come: poll again after this long at the latest.
    Pending { wake_after: Duration },
    /// Nothing more will come (the end of a replay file).
    Ended,
}

/// How the pump hands a source's top of book to the engine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Delivery {
    /// Keep only the newest quote per symbol while the input ring is busy (a live feed: an
    /// old quote is worth nothing once a newer one exists, and the ring must never fill).
    Conflated,
    /// Every quote, in order, waiting while the input ring is busy (a replay: the engine must
    /// see exactly the recorded sequence so two replays end in the same state).
    Lossless,
}

/// Why a source cannot go on.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The recorded file cannot be read.
    #[error("cannot read the market-data file {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    /// A record of the file is not valid.
    #[error("the market-data file {path}, line {line}: {message}")]
    BadRecord {
        path: String,
        line: u64,
        message: String,
    },
}

/// A market-data source. Implementations are deterministic for the same input (a seed, a
/// file) and the same sequence of `now` values.
pub trait Source: Send {
    /// A short name for logs and metrics (`sim`, `replay`).
    fn name(&self) -> &'static str;

    /// How the pump must deliver this source's quotes to the engine.
    fn delivery(&self) -> Delivery;

    /// Appends the events due at `now` (source order, per-symbol timestamps non-decreasing).
    fn poll(
        &mut self,
        now: TimestampNs,
        universe: &[Symbol],
        out: &mut Vec<MarketEvent>,
    ) -> Result<Poll, SourceError>;
}
