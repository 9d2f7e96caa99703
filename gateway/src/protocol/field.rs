//! Wire field types: fixed-size, little-endian, validated on decode.
//!
//! Every field a message carries implements [`Field`]: a fixed byte size, a name for the
//! protocol document, and an encoder/decoder over exactly that many bytes. Decoding never
//! panics; a byte pattern outside a field's domain (an enum byte out of range, a bool other
//! than 0/1, a string that is not NUL-padded UTF-8) is a [`FieldError`].
//!
//! **Invariants**: `decode(encode(x)) == x` for every value a constructor can build, and
//! `encode(decode(b)) == b` for every byte string `decode` accepts (a canonical encoding:
//! fuzzed and property-tested).
//!
//! **Performance**: every impl is a few loads and stores; no allocation.

use kuku_engine::{
    AccountId, Amount, CancelReason, ClientOrderId, CommandKind, ExternalRef, InlineStr, Market,
    MarketPhase, OrderId, OrderType, Price, Qty, RequestKind, Side, SymbolName, TickRule,
    TimeInForce, TradeId, TxId, TxStatus, TxType,
};

/// A field's bytes are outside its domain.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid {field_type} value")]
pub struct FieldError {
    pub field_type: &'static str,
}

/// A fixed-size wire field.
pub trait Field: Sized + Copy {
    /// Bytes on the wire.
    const SIZE: usize;
    /// The type's name in docs/protocol.md.
    const WIRE_TYPE: &'static str;
    /// Writes exactly `SIZE` bytes into `out` (`out.len() == SIZE`).
    fn put(&self, out: &mut [u8]);
    /// Reads from exactly `SIZE` bytes (`bytes.len() == SIZE`).
    fn get(bytes: &[u8]) -> Result<Self, FieldError>;
}

fn array<const N: usize>(bytes: &[u8]) -> [u8; N] {
    let mut a = [0u8; N];
    a.copy_from_slice(&bytes[..N]);
    a
}

macro_rules! int_field {
    ($t:ty, $name:literal) => {
        impl Field for $t {
            const SIZE: usize = std::mem::size_of::<$t>();
            const WIRE_TYPE: &'static str = $name;
            #[inline]
            fn put(&self, out: &mut [u8]) {
                out.copy_from_slice(&self.to_le_bytes());
            }
            #[inline]
            fn get(bytes: &[u8]) -> Result<Self, FieldError> {
                Ok(<$t>::from_le_bytes(array(bytes)))
            }
        }
    };
}

int_field!(u8, "u8");
int_field!(u16, "u16");
int_field!(u32, "u32");
int_field!(u64, "u64");
int_field!(i64, "i64");

macro_rules! newtype_field {
    ($t:ty, $inner:ty, $name:literal) => {
        impl Field for $t {
            const SIZE: usize = <$inner as Field>::SIZE;
            const WIRE_TYPE: &'static str = $name;
            #[inline]
            fn put(&self, out: &mut [u8]) {
                self.0.put(out)
            }
            #[inline]
            fn get(bytes: &[u8]) -> Result<Self, FieldError> {
                <$inner>::get(bytes).map(Self)
            }
        }
    };
}

newtype_field!(AccountId, u32, "u32");
newtype_field!(OrderId, u64, "u64");
newtype_field!(ClientOrderId, u64, "u64");
newtype_field!(TradeId, u64, "u64");
newtype_field!(TxId, u64, "u64");
newtype_field!(Price, i64, "i64 (KRW)");
newtype_field!(Qty, i64, "i64 (shares)");
newtype_field!(Amount, i64, "i64 (KRW)");

impl Field for bool {
    const SIZE: usize = 1;
    const WIRE_TYPE: &'static str = "bool (u8 0/1)";
    #[inline]
    fn put(&self, out: &mut [u8]) {
        out[0] = u8::from(*self);
    }
    #[inline]
    fn get(bytes: &[u8]) -> Result<Self, FieldError> {
        match bytes[0] {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(FieldError { field_type: "bool" }),
        }
    }
}

/// Raw bytes (tokens): any value is valid.
impl<const N: usize> Field for [u8; N] {
    const SIZE: usize = N;
    const WIRE_TYPE: &'static str = "bytes";
    #[inline]
    fn put(&self, out: &mut [u8]) {
        out.copy_from_slice(self);
    }
    #[inline]
    fn get(bytes: &[u8]) -> Result<Self, FieldError> {
        Ok(array(bytes))
    }
}

/// An enum carried as one byte; codes start at 1 so zeroed memory never decodes.
macro_rules! enum_field {
    ($t:ty, $name:literal, { $($variant:path = $code:literal),* $(,)? }) => {
        impl Field for $t {
            const SIZE: usize = 1;
            const WIRE_TYPE: &'static str = $name;
            #[inline]
            fn put(&self, out: &mut [u8]) {
                out[0] = match self { $($variant => $code,)* };
            }
            #[inline]
            fn get(bytes: &[u8]) -> Result<Self, FieldError> {
                match bytes[0] {
                    $($code => Ok($variant),)*
                    _ => Err(FieldError { field_type: $name }),
                }
            }
        }
    };
}

enum_field!(Side, "Side (u8)", { Side::Buy = 1, Side::Sell = 2 });
enum_field!(OrderType, "OrderType (u8)", { OrderType::Limit = 1, OrderType::Market = 2 });
enum_field!(TimeInForce, "TimeInForce (u8)", {
    TimeInForce::Day = 1, TimeInForce::Ioc = 2, TimeInForce::Fok = 3,
});
enum_field!(Market, "Market (u8)", { Market::Kospi = 1, Market::Kosdaq = 2, Market::Other = 3 });
enum_field!(RequestKind, "RequestKind (u8)", {
    RequestKind::Cancel = 1, RequestKind::CancelAll = 2, RequestKind::Modify = 3,
});
enum_field!(TxType, "TxType (u8)", {
    TxType::Deposit = 1, TxType::Withdrawal = 2, TxType::Trade = 3, TxType::Reversal = 4,
    TxType::Adjustment = 5,
});
enum_field!(TxStatus, "TxStatus (u8)", {
    TxStatus::Pending = 1, TxStatus::Posted = 2, TxStatus::Failed = 3, TxStatus::Unknown = 4,
    TxStatus::Reversed = 5,
});
enum_field!(CommandKind, "CommandKind (u8)", {
    CommandKind::RegisterSymbol = 1, CommandKind::SetFeeSchedule = 2, CommandKind::StartOfDay = 3,
    CommandKind::SetMarketPhase = 4, CommandKind::EndOfDay = 5, CommandKind::OpenAccount = 6,
    CommandKind::Deposit = 7, CommandKind::Withdraw = 8, CommandKind::Adjust = 9,
    CommandKind::ConfirmTransaction = 10, CommandKind::FailTransaction = 11,
    CommandKind::ReverseTransaction = 12, CommandKind::ExpireStaleExternal = 13,
    CommandKind::PlaceOrder = 14, CommandKind::CancelOrder = 15, CommandKind::CancelAll = 16,
    CommandKind::ModifyOrder = 17, CommandKind::QuoteUpdate = 18, CommandKind::TakeSnapshot = 19,
    CommandKind::BeginEpoch = 30, CommandKind::SetQuoteStatus = 21,
});

enum_field!(MarketPhase, "MarketPhase (u8)", {
    MarketPhase::Closed = 1, MarketPhase::PreOpen = 2, MarketPhase::Continuous = 3,
    MarketPhase::ClosingCall = 4, MarketPhase::AfterHours = 5,
});

/// Why an order left the book without filling (the engine's reasons plus EndOfDay expiry).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CancelCause {
    Engine(CancelReason),
    /// A DAY order expired at EndOfDay.
    Expired,
}

/// One byte: 1-7 the engine's first reasons in declaration order, 8 Expired, 9-10 the
/// engine's later reasons (numbers never change meaning).
const CANCEL_CAUSES: [CancelCause; 10] = [
    CancelCause::Engine(CancelReason::Requested),
    CancelCause::Engine(CancelReason::CancelAll),
    CancelCause::Engine(CancelReason::IocRemainder),
    CancelCause::Engine(CancelReason::FokUnfilled),
    CancelCause::Engine(CancelReason::MarketRemainder),
    CancelCause::Engine(CancelReason::SelfTrade),
    CancelCause::Engine(CancelReason::QuoteReplaced),
    CancelCause::Expired,
    CancelCause::Engine(CancelReason::Overflow),
    CancelCause::Engine(CancelReason::LedgerCheckFailed),
];

impl Field for CancelCause {
    const SIZE: usize = 1;
    const WIRE_TYPE: &'static str = "CancelCause (u8)";
    #[inline]
    fn put(&self, out: &mut [u8]) {
        let i = CANCEL_CAUSES.iter().position(|c| c == self).unwrap_or(0);
        out[0] = i as u8 + 1;
    }
    #[inline]
    fn get(bytes: &[u8]) -> Result<Self, FieldError> {
        (bytes[0] as usize)
            .checked_sub(1)
            .and_then(|i| CANCEL_CAUSES.get(i).copied())
            .ok_or(FieldError {
                field_type: "CancelCause",
            })
    }
}

/// An order's state in a query reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum WireOrderState {
    New,
    PartiallyFilled,
    Filled,
    Cancelled,
    Expired,
}

enum_field!(WireOrderState, "OrderState (u8)", {
    WireOrderState::New = 1, WireOrderState::PartiallyFilled = 2, WireOrderState::Filled = 3,
    WireOrderState::Cancelled = 4, WireOrderState::Expired = 5,
});

/// Which side of a fill this account was on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Liquidity {
    /// The resting order (maker).
    Maker,
    /// The incoming order (taker).
    Taker,
}

enum_field!(Liquidity, "Liquidity (u8)", { Liquidity::Maker = 1, Liquidity::Taker = 2 });

/// A transaction status, or none (a transaction's creation has no previous status).
impl Field for Option<TxStatus> {
    const SIZE: usize = 1;
    const WIRE_TYPE: &'static str = "TxStatus (u8, 0 = none)";
    #[inline]
    fn put(&self, out: &mut [u8]) {
        match self {
            None => out[0] = 0,
            Some(s) => s.put(out),
        }
    }
    #[inline]
    fn get(bytes: &[u8]) -> Result<Self, FieldError> {
        if bytes[0] == 0 {
            Ok(None)
        } else {
            TxStatus::get(bytes).map(Some)
        }
    }
}

/// How a tick rule's prices are quantized: the kind byte of a [`WireTickRule`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TickKind {
    /// The KRX equity tick table (docs/protocol.md lists it).
    Krx,
    /// One tick size for every price.
    Fixed,
}

enum_field!(TickKind, "TickKind (u8)", { TickKind::Krx = 1, TickKind::Fixed = 2 });

/// A tick rule as the wire carries it: a kind byte (1 = the KRX table, 2 = fixed), then an
/// `i64` tick (the fixed tick; 0 for the KRX table). Any tick value decodes: whether it is
/// valid (positive, within `PRICE_MAX`; 0 with the KRX table) is a rule of the request, which
/// is answered with a reject code (`1004 InvalidTickRule`, `2015 OutOfRange`) rather than a
/// protocol error.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct WireTickRule {
    pub kind: TickKind,
    pub tick: i64,
}

impl WireTickRule {
    /// The engine's rule, or `None` for the KRX table with a non-zero tick.
    pub fn to_engine(self) -> Option<TickRule> {
        match (self.kind, self.tick) {
            (TickKind::Krx, 0) => Some(TickRule::Krx),
            (TickKind::Krx, _) => None,
            (TickKind::Fixed, t) => Some(TickRule::Fixed(t)),
        }
    }
}

impl From<TickRule> for WireTickRule {
    fn from(rule: TickRule) -> WireTickRule {
        match rule {
            TickRule::Krx => WireTickRule {
                kind: TickKind::Krx,
                tick: 0,
            },
            TickRule::Fixed(tick) => WireTickRule {
                kind: TickKind::Fixed,
                tick,
            },
        }
    }
}

impl Field for WireTickRule {
    const SIZE: usize = 9;
    const WIRE_TYPE: &'static str = "TickRule (u8 + i64)";
    #[inline]
    fn put(&self, out: &mut [u8]) {
        self.kind.put(&mut out[..1]);
        self.tick.put(&mut out[1..9]);
    }
    #[inline]
    fn get(bytes: &[u8]) -> Result<Self, FieldError> {
        Ok(WireTickRule {
            kind: TickKind::get(&bytes[..1]).map_err(|_| FieldError {
                field_type: "TickRule",
            })?,
            tick: i64::get(&bytes[1..9])?,
        })
    }
}

/// Bytes of a symbol code on the wire.
pub const CODE_BYTES: usize = 6;

/// A KRX short code on the wire: 1-6 ASCII letters or digits, NUL-padded on the right
/// ("005930"). Codes longer than 6 characters cannot be addressed over this protocol.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Code([u8; CODE_BYTES]);

impl Code {
    /// `None` unless `s` is 1-6 ASCII alphanumerics.
    pub fn new(s: &str) -> Option<Code> {
        let b = s.as_bytes();
        if b.is_empty() || b.len() > CODE_BYTES || !b.iter().all(u8::is_ascii_alphanumeric) {
            return None;
        }
        let mut bytes = [0u8; CODE_BYTES];
        bytes[..b.len()].copy_from_slice(b);
        Some(Code(bytes))
    }

    pub fn as_str(&self) -> &str {
        let len = self.0.iter().position(|&b| b == 0).unwrap_or(CODE_BYTES);
        // Only ASCII alphanumerics are ever stored (checked by `new` and `get`).
        std::str::from_utf8(&self.0[..len]).unwrap_or("")
    }

    fn is_valid(bytes: &[u8; CODE_BYTES]) -> bool {
        let len = bytes.iter().position(|&b| b == 0).unwrap_or(CODE_BYTES);
        len > 0
            && bytes[..len].iter().all(u8::is_ascii_alphanumeric)
            && bytes[len..].iter().all(|&b| b == 0)
    }
}

impl std::fmt::Debug for Code {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self.as_str(), f)
    }
}

impl std::fmt::Display for Code {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Field for Code {
    const SIZE: usize = CODE_BYTES;
    const WIRE_TYPE: &'static str = "Code (char[6])";
    #[inline]
    fn put(&self, out: &mut [u8]) {
        out.copy_from_slice(&self.0);
    }
    #[inline]
    fn get(bytes: &[u8]) -> Result<Self, FieldError> {
        let a = array::<CODE_BYTES>(bytes);
        if Code::is_valid(&a) {
            Ok(Code(a))
        } else {
            Err(FieldError { field_type: "Code" })
        }
    }
}

/// A code, or none: six NUL bytes (e.g. "every symbol", or "KRW" for an asset).
impl Field for Option<Code> {
    const SIZE: usize = CODE_BYTES;
    const WIRE_TYPE: &'static str = "Code (char[6], all NUL = none)";
    #[inline]
    fn put(&self, out: &mut [u8]) {
        match self {
            None => out.fill(0),
            Some(c) => c.put(out),
        }
    }
    #[inline]
    fn get(bytes: &[u8]) -> Result<Self, FieldError> {
        if bytes.iter().all(|&b| b == 0) {
            Ok(None)
        } else {
            Code::get(bytes).map(Some)
        }
    }
}

/// UTF-8 text, NUL-padded on the right (no NUL inside the text).
impl<const N: usize> Field for InlineStr<N> {
    const SIZE: usize = N;
    const WIRE_TYPE: &'static str = "utf8 (NUL-padded)";
    #[inline]
    fn put(&self, out: &mut [u8]) {
        out.fill(0);
        let s = self.as_str().as_bytes();
        out[..s.len()].copy_from_slice(s);
    }
    #[inline]
    fn get(bytes: &[u8]) -> Result<Self, FieldError> {
        let err = FieldError { field_type: "utf8" };
        let bytes = &bytes[..N];
        let len = bytes.iter().position(|&b| b == 0).unwrap_or(N);
        if bytes[len..].iter().any(|&b| b != 0) {
            return Err(err);
        }
        let s = std::str::from_utf8(&bytes[..len]).map_err(|_| err)?;
        InlineStr::new(s).ok_or(err)
    }
}

/// Compile-time check that the engine's string types keep the sizes the protocol documents.
const _: () = {
    assert!(<ExternalRef as Field>::SIZE == 32);
    assert!(<SymbolName as Field>::SIZE == 48);
};
