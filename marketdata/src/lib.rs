//! kuku-marketdata: market data outside the exchange core. The source-independent model
//! ([`Quote`] with ten levels a side and the last trade, [`Tick`], [`Candle`]), the
//! [`Source`] trait and its sources (the simulated walk [`SimSource`], the [`ReplaySource`] of
//! a recorded file), the recorded file format ([`record`]), candles built from ticks with KST
//! boundaries ([`candle`], [`time`]), the reference domain (markets, symbols, external
//! mappings: [`reference`]), the service readers query and subscribe to ([`MarketData`]) and
//! the [`Pump`] that connects a source to the service and the engine.
//!
//! Why market data lives here and not in the engine: docs/adr/ADR-022-market-data-outside-the-core.md.
//!
//! What this crate must never do: run on the processor thread, block a source on a reader or
//! subscriber, hand the engine anything but a validated two-sided top of book, or panic on
//! anything a file or a provider delivers.

pub mod candle;
pub mod model;
pub mod pump;
pub mod record;
pub mod reference;
pub mod replay;
pub mod service;
pub mod sim;
pub mod source;
pub mod time;

pub use candle::{Candle, CandleBuilder, CandleUpdate};
pub use model::{
    LEVELS_MAX, LastPrice, LastTrade, Level, Levels, MarketEvent, ModelError, Quote, Tick,
    TimestampNs, TopOfBook,
};
pub use pump::{Conflator, EngineQuote, Pump};
pub use record::{RecordReader, Recorder};
pub use reference::{
    Isin, ListingStatus, Mapping, Market, MarketCode, ReferenceBook, ReferenceError,
    ReferenceSymbol,
};
pub use replay::{ReplaySource, Speed};
pub use service::{
    CallbackSubscription, Delivered, Last, LastOrigin, MarketData, MarketDataHandle,
    MarketDataStats, ServiceLimits, SubscribeError, Subscription, Topics, Update,
};
pub use sim::SimSource;
pub use source::{Delivery, Poll, Source, SourceError};
pub use time::{Interval, KST_OFFSET_S};
