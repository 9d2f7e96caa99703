//! The Kuku binary protocol (docs/protocol.md): frames, messages, field types and codes.
//!
//! A frame is `length u16 LE | type u8 | body`, where `length` counts the type byte and the
//! body, and every message type has one fixed body layout of little-endian integers,
//! one-byte enums, NUL-padded strings and raw bytes. No serde, no self-description: a client
//! in any language needs only the tables in docs/protocol.md (ADR-007 explains why).
//!
//! **Invariants**: decoding is total (any byte string yields a message, "need more bytes",
//! or an error, never a panic) and canonical (a decoded message re-encodes to the same
//! bytes); both are property-tested and fuzzed (`fuzz/`).

pub mod codes;
pub mod doc;
pub mod field;
pub mod frame;
pub mod fuzzing;
pub mod messages;

pub use codes::{GatewayCode, ProtocolCode, code_name, describe_code};
pub use field::{
    CancelCause, Code, Field, FieldError, Liquidity, TickKind, WireOrderState, WireTickRule,
};
pub use frame::{CLIENT_FRAME_LEN_MAX, FrameError, decode_all, split_frame};
pub use messages::*;

/// The protocol version this build speaks, sent in `Login.version`. 2: Login carries the
/// version; OrderReport a cancelled quantity; ReferenceQuery, MarketReport, SymbolReport,
/// TransferIn and TransferOut; tick rules decode any tick (docs/protocol.md, "Changes").
pub const PROTOCOL_VERSION: u16 = 2;

/// The body length of a version-1 Login (no version field): such a Login is answered with
/// `LoginRejected 9015 UnsupportedVersion` instead of a protocol error.
pub const LOGIN_V1_BODY_LEN: usize = 45;

/// Login flag: cancel every live order of the account when this session ends.
pub const FLAG_CANCEL_ON_DISCONNECT: u8 = 1;
/// Login flag: replay nothing, send live messages only (one-shot tools).
pub const FLAG_NO_REPLAY: u8 = 2;

/// Client order ids and request ids with this bit set are reserved for the gateway (it uses
/// them for cancel-on-disconnect); clients that send one get `ReservedKey`.
pub const RESERVED_KEY_BIT: u64 = 1 << 63;
