//! kuku-gateway: Kuku's front door. The binary order-entry and admin protocol
//! ([`protocol`], specified in docs/protocol.md), the translation layer every door shares
//! between protocol requests and engine commands, events and codes ([`translate`], ADR-016),
//! the mio TCP server that speaks the protocol ([`server`]), the Rust client library
//! ([`client`]) and the `kuku client` / `kuku admin` command lines ([`cli`]).
//!
//! The gateway never touches the engine: it submits commands through a [`server::NodeLink`]
//! (the node's input ring), reads their events from the node's output ring, and answers
//! queries from its own read model, folded from those same events. It does not depend on
//! kuku-server (the server depends on it).
//!
//! What this crate must never do: block its event loop (on the ring, a socket or a lock),
//! panic or stall on anything a client sends, or let one session's traffic grow memory
//! without bound.

pub mod auth;
pub mod cli;
pub mod client;
pub mod error;
pub mod history;
pub mod protocol;
pub mod server;
pub mod translate;

pub use error::GatewayError;
