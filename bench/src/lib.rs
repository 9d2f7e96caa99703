//! kuku-bench: Kuku's workload generator, benchmark harnesses and peer comparisons.
//!
//! - [`flow`]: a seeded, deterministic order flow every engine can agree on, with its oracle.
//! - [`model`]: the plain price-time book that shapes the flow and is its oracle.
//! - [`end_state`]: what engines are compared on, and the shared trade-sequence hash.
//! - [`book_under_test`]: the adapter trait and the engine factory type.
//! - [`engines`]: the registry of engines (`registered_engines`; Kuku's adapter goes there).
//! - [`peers`]: adapters for matchcore 0.4.0 and orderbook-rs 0.15.3 (feature `peers`).
//! - [`engine_bench`]: the interleaved throughput / latency harness behind
//!   `kuku-bench engine`.
//! - [`journal_bench`]: `kuku-bench journal`: append, sync, read, replay and recovery
//!   against raw baselines.
//! - [`http_bench`]: `kuku-bench http`: order-to-response latency over the HTTP door
//!   against a baseline axum endpoint doing the same work minus the node.
//! - [`kuku`]: Kuku's adapter for the engine comparison.
//! - [`machine`]: the date and CPU every report states.
//! - [`ws_bench`]: `kuku-bench ws`: WebSocket fan-out to many clients against a bare
//!   tokio-tungstenite baseline, each server a child process (`ws-node-server`,
//!   `ws-baseline-server`).
//! - [`locks`]: `kuku-bench locks`: the lock-strategy experiment (one hot account, six ways,
//!   on MariaDB, Redis and a Kuku node).
//!
//! What it must never do: time anything but the operations it reports, compare engines that
//! did not end in the same state without saying so, or let a dependency's version change a
//! generated flow (the PRNG is written here).

pub mod book_under_test;
pub mod end_state;
pub mod engine_bench;
pub mod engines;
pub mod flow;
pub mod http_bench;
pub mod journal_bench;
pub mod kuku;
pub mod locks;
pub mod machine;
pub mod model;
#[cfg(feature = "peers")]
pub mod peers;
pub mod persistence_bench;
pub mod pipeline_bench;
pub mod tcp_bench;
pub mod ws_bench;

pub use book_under_test::{BookFactory, BookUnderTest, EngineEntry};
pub use end_state::{BookEnd, EndState, TradeHasher, TradeRecord, trade_hash};
pub use engine_bench::{EngineBenchOptions, EngineBenchReport, EngineResult};
pub use engines::{EngineSelection, registered_engines};
pub use flow::{Flow, FlowConfig, FlowError, FlowMix, FlowOp, FlowStats, Side, Tif};
pub use model::ModelBook;
