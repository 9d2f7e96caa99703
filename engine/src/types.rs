//! Domain newtypes: prices, quantities, amounts and identifiers.
//!
//! Every number that crosses a module boundary has its own type, so a quantity can never be
//! passed where a price is expected. Arithmetic on money is checked: an overflow becomes a
//! reject (`RejectReason::Overflow`), never a panic or a wrap.
//!
//! **Invariants**
//! - `Price` of a live order is > 0; `Qty` of a live order is > 0.
//! - Identifiers come from counters in the engine, never from slab slots or memory addresses.
//!
//! **Performance**: all types are `Copy` wrappers around one integer; they compile to the
//! integer itself.

use serde::{Deserialize, Serialize};
use std::fmt;

macro_rules! newtype {
    ($(#[$meta:meta])* $name:ident($inner:ty)) => {
        $(#[$meta])*
        #[derive(
            Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
        )]
        #[serde(transparent)]
        pub struct $name(pub $inner);

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }
    };
}

newtype!(
    /// KRW per share.
    Price(i64)
);
newtype!(
    /// A number of shares.
    Qty(i64)
);
newtype!(
    /// A sum of KRW (or, in a ledger entry for a securities asset, a number of shares).
    Amount(i64)
);
newtype!(
    /// An order, numbered by the engine from 1 in acceptance order.
    OrderId(u64)
);
newtype!(
    /// A trading account. 0 is the SYSTEM_MARKET participant (synthetic quote liquidity).
    AccountId(u32)
);
newtype!(
    /// A listed symbol, numbered by the engine from 1 in registration order.
    SymbolId(u32)
);
newtype!(
    /// A trade (one fill between a maker and a taker), numbered from 1.
    TradeId(u64)
);
newtype!(
    /// A ledger transaction, numbered from 1.
    TxId(u64)
);
newtype!(
    /// The client's key for a request (order, cancel, modify): unique per account per day.
    ClientOrderId(u64)
);

impl AccountId {
    /// The street: counterparty of every synthetic (quote-driven) fill.
    pub const SYSTEM_MARKET: AccountId = AccountId(0);

    /// True for the SYSTEM_MARKET participant, which has no cash or risk checks.
    #[inline]
    pub fn is_system_market(self) -> bool {
        self == Self::SYSTEM_MARKET
    }
}

impl Price {
    /// `price * qty` in KRW, or `None` on overflow.
    #[inline]
    pub fn notional(self, qty: Qty) -> Option<Amount> {
        self.0.checked_mul(qty.0).map(Amount)
    }
}

impl Amount {
    pub const ZERO: Amount = Amount(0);

    #[inline]
    pub fn checked_add(self, other: Amount) -> Option<Amount> {
        self.0.checked_add(other.0).map(Amount)
    }

    #[inline]
    pub fn checked_sub(self, other: Amount) -> Option<Amount> {
        self.0.checked_sub(other.0).map(Amount)
    }
}

impl Qty {
    pub const ZERO: Qty = Qty(0);
}

/// Buy or sell.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Side {
    Buy,
    Sell,
}

impl Side {
    #[inline]
    pub fn opposite(self) -> Side {
        match self {
            Side::Buy => Side::Sell,
            Side::Sell => Side::Buy,
        }
    }
}

/// LIMIT rests at its price; MARKET executes within the daily band and the rest is cancelled.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum OrderType {
    Limit,
    Market,
}

/// Time in force.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum TimeInForce {
    /// Rests until filled, cancelled, or expired at EndOfDay.
    Day,
    /// Immediate or cancel: whatever does not fill at once is cancelled.
    Ioc,
    /// Fill or kill: fills completely at once or not at all.
    Fok,
}

/// Markets that KRX symbols list on; `Other` covers tests and non-KRX instruments.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Market {
    Kospi,
    Kosdaq,
    Other,
}

/// A fixed-capacity, inline UTF-8 string: lets commands stay free of heap pointers on the
/// hot path and keeps their encoding bounded.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct InlineStr<const N: usize> {
    len: u8,
    bytes: [u8; N],
}

impl<const N: usize> InlineStr<N> {
    /// `None` if `s` is longer than `N` bytes (or than 255).
    pub fn new(s: &str) -> Option<Self> {
        if s.len() > N || s.len() > u8::MAX as usize {
            return None;
        }
        let mut bytes = [0u8; N];
        bytes[..s.len()].copy_from_slice(s.as_bytes());
        Some(Self {
            len: s.len() as u8,
            bytes,
        })
    }

    pub fn as_str(&self) -> &str {
        // The constructors only accept whole `&str` values, so the prefix is valid UTF-8;
        // deserialization re-validates through `new`.
        std::str::from_utf8(&self.bytes[..self.len as usize]).unwrap_or("")
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl<const N: usize> Default for InlineStr<N> {
    fn default() -> Self {
        Self {
            len: 0,
            bytes: [0; N],
        }
    }
}

impl<const N: usize> fmt::Debug for InlineStr<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl<const N: usize> fmt::Display for InlineStr<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl<const N: usize> Serialize for InlineStr<N> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de, const N: usize> Deserialize<'de> for InlineStr<N> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        InlineStr::new(&s)
            .ok_or_else(|| serde::de::Error::custom(format_args!("string longer than {N} bytes")))
    }
}

/// A KRX short code such as "005930" (6 ASCII characters; newer codes contain letters).
pub type SymbolCode = InlineStr<12>;
/// A human-readable symbol name, at most 48 bytes of UTF-8.
pub type SymbolName = InlineStr<48>;
/// An external reference (bank transfer id), at most 32 bytes, unique per account.
pub type ExternalRef = InlineStr<32>;
