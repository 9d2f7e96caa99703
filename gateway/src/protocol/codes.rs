//! The gateway's own codes (range 9000-9099, reserved for the gateway in
//! `kuku_engine::reject`): request rejects decided before the journal, login rejects,
//! logout reasons and protocol errors. Engine reject codes (1000-5099) pass through
//! unchanged as `RejectReason::code()`.
//!
//! A code is never reused for another meaning; new codes take new numbers.

use kuku_engine::RejectReason;

macro_rules! codes {
    ($(#[doc = $enum_doc:literal])* $enum:ident { $($name:ident = $code:literal: $doc:literal,)* }) => {
        $(#[doc = $enum_doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[repr(u16)]
        pub enum $enum {
            $(#[doc = $doc] $name = $code,)*
        }

        impl $enum {
            pub const ALL: &'static [$enum] = &[$($enum::$name,)*];

            #[inline]
            pub fn code(self) -> u16 {
                self as u16
            }

            pub fn from_code(code: u16) -> Option<$enum> {
                match code {
                    $($code => Some($enum::$name),)*
                    _ => None,
                }
            }

            pub fn describe(self) -> &'static str {
                match self {
                    $($enum::$name => $doc,)*
                }
            }
        }
    };
}

codes! {
    /// Rejects, login refusals and logout reasons decided by the gateway.
    GatewayCode {
        Busy = 9001: "the node's input ring was full: retry later (the key was not used)",
        RateLimited = 9002: "the account's request budget (shared by all its sessions) is used up: retry later (the key was not used)",
        ReservedKey = 9003: "client order ids and request ids with the top bit set are reserved for the gateway",
        NotPermitted = 9004: "a trading session may act on its own account only",
        Truncated = 9005: "the reply was cut at 4,096 items: narrow the query (e.g. by symbol)",
        MarketOrderPrice = 9006: "a MARKET order carries price 0 (it trades at the book's prices, up to the band's limit)",
        MarketOrderTif = 9007: "a MARKET order is IOC or FOK (its unfilled rest is always cancelled)",
        InvalidToken = 9010: "the token does not match the account (or the admin token)",
        SeqAhead = 9011: "last_seen_acct_seq is beyond the account's last sequence number on this node",
        SessionsFull = 9012: "the gateway has no room for another session (sessions_max)",
        ShuttingDown = 9013: "the server is shutting down",
        NotPrimary = 9014: "this node is not the primary (a standby, or an old primary fenced after a failover): log in to another address",
        UnsupportedVersion = 9015: "the Login's protocol version is not the one this server speaks (docs/protocol.md, \"Versions\")",
        HistoryDiverged = 9016: "the messages this client saw after replay_from_seq were never issued by this node (an asynchronous failover lost them): log in again from replay_from_seq and treat what was seen after it as void",
        InvalidRequest = 9020: "the HTTP request is malformed: its body is not the JSON the endpoint takes, a number is out of its type's range, or a path or query parameter is invalid",
        IdempotencyKeyMissing = 9021: "a state-changing HTTP request needs an Idempotency-Key header",
        IdempotencyKeyInvalid = 9022: "an Idempotency-Key is 1-64 visible ASCII characters",
        Unauthenticated = 9023: "the HTTP request has no valid bearer token (missing, malformed, expired, or signed with another algorithm or key)",
        OutcomeUnknown = 9024: "the command was submitted but its outcome did not arrive before the deadline: resend with the same Idempotency-Key to learn it",
        NotFound = 9025: "no such HTTP endpoint or resource",
        BodyTooLarge = 9026: "the HTTP request body exceeds the largest one the endpoint accepts",
        HistoryUnavailable = 9027: "the query database did not answer, or the node runs without one: history is not available now",
        InvalidInterval = 9028: "the candle interval is not 1m, 5m, 1h or 1d",
        InvalidTimeRange = 9029: "the time range is not from < to with both in 0..=9223372036854775807 (Unix nanoseconds)",
        UnknownMarket = 9030: "the market is not KOSPI or KOSDAQ",
        InvalidReferenceCode = 9031: "the reference symbol code is not 1 to 12 ASCII letters or digits",
        InvalidIsin = 9032: "the ISIN is not 2 letters, 9 letters or digits and a valid check digit",
        InvalidReferenceName = 9033: "a symbol name (Korean or English) must be 1 to 64 characters without control characters",
        InvalidLotSize = 9034: "the lot size must be between 1 and the largest quantity",
        InvalidReferenceTickRule = 9035: "the tick rule is not `krx` or `fixed:N` with N in 1..=1000000000",
        InvalidListingStatus = 9036: "the listing status is not listed, suspended or delisted",
        InvalidProvider = 9037: "the provider must be 1 to 16 lowercase letters, digits or '-'",
        InvalidExternalCode = 9038: "the external code must be 1 to 32 printable ASCII characters",
        UnknownReferenceSymbol = 9039: "no symbol of that code is registered in the reference data",
        UnknownMapping = 9040: "no symbol is mapped to that provider and external code",
        ReferenceUnavailable = 9041: "the query database did not answer, or the node runs without one: reference data cannot be changed now: resend the same request (a registration or mapping is a value, so a resend is safe)",
    }
}

codes! {
    /// Protocol errors: the server sends ProtocolError with one of these and disconnects.
    ProtocolCode {
        FrameTooLarge = 9050: "the frame's length exceeds the largest message the server accepts",
        FrameEmpty = 9051: "the frame's length is zero (no type byte)",
        UnknownType = 9052: "the message type is unknown",
        BadLength = 9053: "the frame's length does not match its message type",
        InvalidValue = 9054: "a field holds a value outside its domain (enum, bool, code, text, flags)",
        NotLoggedIn = 9055: "the first message must be Login",
        UnexpectedMessage = 9056: "the message is not allowed here (a server message, a second Login, an admin request on a trading session or the reverse)",
        IdleTimeout = 9057: "nothing was received within the idle timeout",
        LoginTimeout = 9058: "no Login within the login timeout",
        SlowReader = 9059: "the session's outbound buffer overflowed (the client reads too slowly); sent only if room is left",
    }
}

/// A human-readable name for any code on the wire (engine or gateway).
pub fn describe_code(code: u16) -> String {
    if code == 0 {
        return "OK".to_owned();
    }
    if let Some(r) = RejectReason::from_code(code) {
        return format!("{r:?} ({code}): {}", r.describe());
    }
    if let Some(g) = GatewayCode::from_code(code) {
        return format!("{g:?} ({code}): {}", g.describe());
    }
    if let Some(p) = ProtocolCode::from_code(code) {
        return format!("{p:?} ({code}): {}", p.describe());
    }
    format!("code {code}")
}

/// A short name for any code (for compact output and benchmark counters).
pub fn code_name(code: u16) -> String {
    if code == 0 {
        return "OK".to_owned();
    }
    if let Some(r) = RejectReason::from_code(code) {
        return format!("{r:?}");
    }
    if let Some(g) = GatewayCode::from_code(code) {
        return format!("{g:?}");
    }
    if let Some(p) = ProtocolCode::from_code(code) {
        return format!("{p:?}");
    }
    format!("Code{code}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gateway_codes_stay_in_the_reserved_range_and_never_collide() {
        let mut seen = std::collections::BTreeSet::new();
        for r in RejectReason::ALL {
            assert!(seen.insert(r.code()));
        }
        for g in GatewayCode::ALL {
            assert!((9000..9100).contains(&g.code()));
            assert!(seen.insert(g.code()), "{g:?}");
            assert_eq!(GatewayCode::from_code(g.code()), Some(*g));
        }
        for p in ProtocolCode::ALL {
            assert!((9000..9100).contains(&p.code()));
            assert!(seen.insert(p.code()), "{p:?}");
            assert_eq!(ProtocolCode::from_code(p.code()), Some(*p));
        }
        assert_eq!(GatewayCode::Busy.code(), 9001);
        assert_eq!(GatewayCode::RateLimited.code(), 9002);
    }
}
