//! kuku-persistence: Kuku's query store. An asynchronous writer turns the node's output events
//! into rows (ledger transactions and entries, orders, trades, balances and positions) and
//! commits them in batches, each with the checkpoint `(epoch, seq)` of its last command, to
//! MySQL / MariaDB or an embedded SQLite file; history queries read them back; reconciliation
//! compares them with the engine rebuilt from the journal.
//!
//! The journal is the truth, the database a derived view (docs/adr/ADR-008-database-role.md):
//! anything the database misses or loses after its checkpoint is re-derived from the journal,
//! exactly once.
//!
//! What this crate must never do: block the node (the intake only ever `try_send`s), hold
//! unbounded memory (the intake, a batch and the live orders are bounded), write a row twice or
//! skip one (rows and checkpoint commit together), read the journal past what the node has
//! applied, or panic on anything the database or the network returns.
//!
//! Modules: [`url`] (database URLs), [`db`] (pool, dialect, migrations), [`rows`] and
//! [`builder`] (events to rows), [`store`] (a batch in one transaction), [`intake`] (the
//! node's non-blocking side), [`writer`] (the writer thread: batching, retries, re-deriving
//! from the journal), [`metrics`] (lag and counters), [`query`] (history and read models),
//! [`market`] (candles and reference data, written outside the journal's path),
//! [`reconcile`], [`testkit`] (a database per test, a TCP proxy for outages) and
//! [`failpoint`] (crash points for tests).

pub mod builder;
pub mod db;
mod error;
pub mod failpoint;
pub mod intake;
pub mod market;
pub mod metrics;
pub mod query;
pub mod reconcile;
pub mod rows;
pub mod store;
pub mod testkit;
pub mod url;
pub mod writer;

pub use db::{ConnectOptions, Database, block_on};
pub use error::PersistenceError;
pub use intake::{Offered, WriterHandle};
pub use metrics::{WriterMetrics, WriterStatus};
pub use reconcile::{ReconcileReport, TableComparison, reconcile};
pub use store::Checkpoint;
pub use url::{Backend, DatabaseUrl};
pub use writer::{Writer, WriterConfig};
