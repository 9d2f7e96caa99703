//! kuku-engine: Kuku's deterministic core — order books, KRX market rules, the double-entry
//! ledger, risk, positions and idempotency — as one state machine:
//! `Engine::apply(&Envelope, &mut impl EventSink)`.
//!
//! What this crate must never do: I/O, read a clock, spawn threads, use randomness or
//! address-dependent hashing (`clippy.toml` bans them here), allocate per command in steady
//! state, or panic on any input. A reject is a value with a stable code ([`RejectReason`]).
//!
//! ```
//! use kuku_engine::*;
//!
//! let mut engine = Engine::new(EngineConfig::small());
//! let mut events = Vec::new();
//! let mut seq = 0;
//! let mut apply = |engine: &mut Engine, command: Command, events: &mut Vec<Event>| {
//!     seq += 1;
//!     engine.apply(&Envelope { seq, ts: seq * 1_000, command }, events);
//! };
//! apply(&mut engine, Command::RegisterSymbol(RegisterSymbol {
//!     code: SymbolCode::new("005930").unwrap(),
//!     name: SymbolName::new("Samsung Electronics").unwrap(),
//!     market: Market::Kospi,
//!     tick_rule: TickRule::Krx,
//!     base_price: Price(71_000),
//!     banded: true,
//!     lot_size: Qty(1),
//! }), &mut events);
//! let band = engine.symbol(SymbolId(1)).unwrap().band.unwrap();
//! assert_eq!((band.lower, band.upper), (Price(49_700), Price(92_300)));
//! ```

pub mod book;
pub mod command;
pub mod config;
mod engine;
pub mod epochs;
pub mod event;
pub mod fees;
pub mod hash;
pub mod hostile;
pub mod idempotency;
mod invariants;
pub mod ledger;
pub mod limits;
mod matching;
mod order_views;
pub mod portfolio;
pub mod readmodel;
pub mod reference;
pub mod reject;
pub mod risk;
pub mod snapshot;
mod table;
pub mod testkit;
pub mod types;

pub use command::{
    Asset, Command, CommandKind, Envelope, MarketPhase, NewOrder, QuoteStatus, RegisterSymbol,
};
pub use config::{ENGINE_LOGIC_VERSION, EngineConfig, LadderPolicy};
pub use engine::{Engine, SymbolState};
pub use event::{
    CancelReason, Entry, Event, EventSink, LedgerAccount, LineKind, NullSink, OrderInfo,
    RequestKind, Transaction, TxStatus, TxType,
};
pub use fees::{FeeSchedule, TaxRates};
pub use reference::{PriceBand, Symbol, TickRule};
pub use reject::RejectReason;
pub use snapshot::{EngineSnapshot, RestoreError};
pub use types::*;
