//! Stable reject reasons.
//!
//! A reject is a value, never an error or a panic. Codes are stable numbers grouped in ranges
//! by area (exchange-core style) and are part of the wire protocol (docs/protocol.md):
//!
//! | range | area |
//! |---|---|
//! | 1000-1099 | reference data, phases, day cycle |
//! | 2000-2099 | order validation and the book |
//! | 3000-3099 | accounts and risk |
//! | 4000-4099 | ledger and external transactions |
//! | 5000-5099 | market data (quotes) |
//! | 9000-9099 | reserved for the gateway (never produced by the engine) |
//!
//! A code is never reused for another meaning; new reasons take new numbers.

use serde::{Deserialize, Serialize};

macro_rules! reasons {
    ($($name:ident = $code:literal: $doc:literal,)*) => {
        /// Why a command was rejected. `code()` is the stable wire number.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[repr(u16)]
        pub enum RejectReason {
            $(#[doc = $doc] $name = $code,)*
        }

        impl RejectReason {
            /// Every reason, in code order.
            pub const ALL: &'static [RejectReason] = &[$(RejectReason::$name,)*];

            /// The stable numeric code.
            #[inline]
            pub fn code(self) -> u16 {
                self as u16
            }

            /// The reason with this code, if any.
            pub fn from_code(code: u16) -> Option<RejectReason> {
                match code {
                    $($code => Some(RejectReason::$name),)*
                    _ => None,
                }
            }

            /// A short, stable, human-readable explanation.
            pub fn describe(self) -> &'static str {
                match self {
                    $(RejectReason::$name => $doc,)*
                }
            }
        }
    };
}

reasons! {
    UnknownSymbol = 1001: "the symbol is not registered",
    SymbolExists = 1002: "a symbol with this code is already registered",
    InvalidSymbolCode = 1003: "a symbol code is 1-12 ASCII letters or digits",
    InvalidTickRule = 1004: "a fixed tick must be positive",
    InvalidBasePrice = 1005: "the base price must be positive and on the tick grid",
    InvalidLotSize = 1006: "the lot size must be positive",
    SymbolsFull = 1007: "the symbol table is full (symbols_max)",
    MarketClosed = 1008: "orders are accepted in the continuous session only",
    DayAlreadyStarted = 1009: "StartOfDay while a trading day is open",
    DayNotStarted = 1010: "EndOfDay or a trading phase without an open trading day",
    InvalidFeeSchedule = 1011: "fee and tax rates must be between 0 and 1,000,000 ppm",
    FeesDuringDay = 1012: "the fee schedule changes only while no trading day is open (live buy orders hold cash at today's rates)",
    InvalidQty = 2001: "the quantity must be positive",
    QtyNotLotMultiple = 2002: "the quantity must be a multiple of the lot size",
    InvalidPrice = 2003: "a limit price must be positive",
    PriceOffTick = 2004: "the price is not on the tick grid",
    PriceOutsideBand = 2005: "the price is outside today's +-30% band",
    MarketOrderWithoutBand = 2006: "MARKET orders need a symbol with a daily band",
    UnknownOrder = 2007: "no live order with this id for this account",
    Overflow = 2008: "a computed amount (a notional, a hold, a balance or a running total) would overflow",
    OrdersFull = 2009: "the live order table is full (orders_max)",
    LevelsFull = 2010: "the book has no room for another price level (levels_max)",
    DuplicateKey = 2011: "this client order id was used today for a different request",
    KeysFull = 2012: "the account used up today's request ids (orders_per_account_day_max)",
    NoChange = 2013: "the modify changes neither price nor quantity",
    MarketOrderModify = 2014: "MARKET orders cannot be modified",
    QuoteStale = 2016: "MARKET orders are refused while the symbol's external quotes are stale (SetQuoteStatus Stale); LIMIT orders are accepted",
    OutOfRange = 2015: "a price or quantity is beyond the range any command may carry (PRICE_MAX, QTY_MAX in docs/protocol.md)",
    UnknownAccount = 3001: "the account does not exist",
    InsufficientCash = 3002: "available cash does not cover the order or withdrawal",
    InsufficientShares = 3003: "available shares do not cover the sell",
    AccountsFull = 3004: "the account table is full (accounts_max)",
    PositionsFull = 3005: "the position table is full (positions_max)",
    InvalidOwner = 3006: "the account owner key must not be empty",
    InvalidAmount = 4001: "the amount must be positive (an adjustment: non-zero) and at most AMOUNT_MAX in magnitude",
    UnknownTransaction = 4002: "no such transaction in the engine's window",
    InvalidTransition = 4003: "the transaction's status does not allow this transition",
    NotReversible = 4004: "only DEPOSIT, WITHDRAWAL and ADJUSTMENT transactions can be reversed",
    AlreadyReversed = 4005: "the transaction was reversed already",
    ReversalWouldOverdraw = 4006: "the reversal would make available cash or shares negative",
    TransactionNotInWindow = 4007: "the transaction is neither open nor in the engine's window of recent reversible transactions (too old, or a TRADE)",
    ExternalRefReused = 4008: "this external reference was used for a different request",
    OpenTransactionsFull = 4009: "the open transaction table is full (open_tx_max)",
    AdjustmentWouldOverdraw = 4010: "the adjustment would make available cash or shares negative",
    LedgerCheckFailed = 4011: "an internal ledger check refused the posting or hold, so nothing changed; the operator is alerted",
    QuoteCrossed = 5001: "the quote's bid is above its ask",
    QuoteLocked = 5002: "the quote's bid equals its ask",
    QuoteOffTick = 5003: "a quote price is not on the tick grid",
    QuoteOutsideBand = 5004: "a quote price is outside today's band",
    InvalidQuoteQty = 5005: "quote sizes must be zero or positive multiples of the lot size",
    QuoteEmpty = 5006: "the quote has no size on either side and there is no earlier quote to withdraw",
    QuoteSourceStale = 5007: "the symbol's quote source is marked stale: a SetQuoteStatus Fresh must come before new quotes",
}

impl std::fmt::Display for RejectReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?} ({}): {}", self, self.code(), self.describe())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_are_unique() {
        let mut seen = std::collections::BTreeSet::new();
        for &r in RejectReason::ALL {
            assert!(seen.insert(r.code()), "duplicate code {}", r.code());
            assert_eq!(RejectReason::from_code(r.code()), Some(r));
        }
        assert_eq!(RejectReason::from_code(0), None);
    }

    #[test]
    fn codes_are_pinned() {
        // Codes are part of the wire protocol: changing one breaks clients.
        assert_eq!(RejectReason::MarketClosed.code(), 1008);
        assert_eq!(RejectReason::InsufficientCash.code(), 3002);
        assert_eq!(RejectReason::DuplicateKey.code(), 2011);
        assert_eq!(RejectReason::QuoteCrossed.code(), 5001);
    }
}
