//! kuku-kis: the KIS (Korea Investment & Securities) Open API market-data adapter. It speaks
//! KIS's real shapes (OAuth2 token, WebSocket approval key, H0STCNT0 trades and H0STASP0
//! ten-level books over WebSocket, PINGPONG, the FHKST01010100 current-price inquiry as a REST
//! fallback), wraps every external call in deadlines, retries with backoff and jitter and a
//! circuit breaker, reconnects and resubscribes, and tracks the age of each symbol's quotes so
//! the node can journal a stale/fresh status ([`staleness`]).
//!
//! With the `testkit` feature, [`testkit::FakeKis`] is a local KIS (axum + WebSocket) serving
//! committed golden frames, with injectable faults; no test reaches the internet.
//!
//! Decisions: docs/adr/ADR-023-quote-sources-breaker-and-stale-quotes.md. Setup:
//! docs/market-data.md, "KIS".
//!
//! What this crate must never do: log or format a credential, block its consumer, run on the
//! processor thread, or panic on anything KIS (or a hostile server posing as KIS) sends.

pub mod backoff;
pub mod breaker;
pub mod bridge;
pub mod config;
pub mod error;
pub mod frame;
pub mod http;
pub mod metrics;
pub mod rest;
pub mod secret;
pub mod session;
pub mod source;
pub mod staleness;
#[cfg(feature = "testkit")]
pub mod testkit;
pub mod token;

pub use backoff::Backoff;
pub use breaker::{BreakerConfig, BreakerState, CircuitBreaker};
pub use bridge::QuoteBridge;
pub use config::{KisConfig, KisLimits};
pub use error::KisError;
pub use frame::{Book, BookLevel, Inbound, Record, ShortCode, Trade};
pub use metrics::KisMetrics;
pub use secret::Secret;
pub use session::{KisAdapter, KisEvent};
pub use source::{KisSource, KisStatus};
pub use staleness::{QuoteStatus, StaleTracker};
