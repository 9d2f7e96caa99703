//! kuku-server: the Kuku node. Wires the LMAX-style pipeline (input ring, journaller,
//! pinned processor, output ring and its consumers) around `kuku-engine`, and provides the
//! `kuku` binary's commands.
//!
//! What this crate must never do: touch the engine's state from any thread but the
//! processor's, or block the processor on I/O.

pub mod alarms;
pub mod config;
pub mod database;
pub mod demo;
pub mod failpoint;
pub mod failstop;
pub mod gateway;
pub mod http;
pub mod local;
pub mod market_data;
pub mod metrics;
pub mod node;
pub mod pipeline;
pub mod reference;
pub mod replication;
pub mod scheduler;
pub mod universe;
