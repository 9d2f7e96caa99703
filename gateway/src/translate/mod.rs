//! The translation layer between the outside world and the engine, shared by every door (the
//! TCP gateway in [`crate::server`], and any other front end: an HTTP door calls the same
//! functions). A door owns its transport and its sessions; everything a request *means* is
//! decided here, once:
//!
//! - [`requests`]: an external request (a protocol message) becomes an engine
//!   [`Command`](kuku_engine::Command) or a query, or is refused before the journal with a
//!   protocol code: reserved keys, unknown symbol codes, the MARKET-order rules, the engine's
//!   value ranges (`kuku_engine::limits`), the tick-rule encoding, transfers of shares.
//! - [`outcomes`]: the engine's events become the messages each account is sent (the codes
//!   are the engine's `RejectReason` codes and the gateway's 9000-9099), and an admin
//!   request's events one `AdminResult`.
//! - [`queries`]: status, open orders, balances and the reference data, answered from a
//!   read model folded from the same events.
//! - [`ratelimit`]: the per-account request budget, one per account across all doors and
//!   sessions (ADR-016).
//! - [`symbols`]: the wire code <-> engine id index.
//!
//! The vocabulary is the protocol's message structs (docs/protocol.md): a binary door
//! encodes them as frames, another door may render the same structs in its own format, so
//! both doors give the same answer with the same code to the same request.
//!
//! **Invariants**: a refusal decided here never reaches the journal and uses no idempotency
//! key; what the engine would refuse for the same reason it refuses with the same code (the
//! ranges are the engine's own `check_ranges`). Nothing here blocks or panics on any input.
//!
//! **Performance**: translating a request is a few comparisons, one hash lookup (the symbol
//! code) and the range check; an event, at most two message constructions.
//!
//! **Known limitations**: the door-level rules (the MARKET-order rules, positive transfer
//! quantities) bind requests that arrive through a door; commands from the node's own
//! producers (scheduler, feed, tools) reach the engine directly and meet only its rules.

pub mod outcomes;
pub mod queries;
pub mod ratelimit;
pub mod requests;
pub mod symbols;

pub use outcomes::{Addressed, AdminOutcome, Translated, translate_event};
pub use queries::{Query, REPORTS_MAX, Scope, answer};
pub use ratelimit::{AccountBudget, RateLimits, TokenBucket};
pub use requests::{
    AdminRequest, Refusal, Request, admin_rejection, admin_request, admin_request_id,
    trading_rejection, trading_request,
};
pub use symbols::Symbols;
