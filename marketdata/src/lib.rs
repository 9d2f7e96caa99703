//! kuku-marketdata: market data outside the exchange core. The source-independent model
//! ([`Quote`] with ten levels a side and the last trade, [`Tick`]), the [`Source`] trait every
//! source implements, and the KST interval grid of candles ([`time`]).
//!
//! What this crate must never do: run on the processor thread, block a source on a reader or
//! subscriber, hand the engine anything but a validated two-sided top of book, or panic on
//! anything a file or a provider delivers.

pub mod model;
pub mod source;
pub mod time;

pub use model::{
    LEVELS_MAX, LastTrade, Level, Levels, MarketEvent, ModelError, Quote, Tick, TimestampNs,
    TopOfBook,
};
pub use source::{Delivery, Poll, Source, SourceError};
pub use time::{Interval, KST_OFFSET_S};
