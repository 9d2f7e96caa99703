//! The `/ws` message contract: the client's ops, the numbered error codes (9070-9089) with the
//! WebSocket close codes they map to, and the JSON of the control replies. Data messages are
//! built by the fan-out ([`super::hub`]). docs/api.md, "WebSocket", is the reference.

use serde::Deserialize;
use serde_json::{Value, json};

/// A client frame, decoded leniently: unknown keys are ignored, missing ones are `None`, so
/// that every refusal names what is wrong instead of a serde message.
#[derive(Debug, Default, Deserialize)]
pub struct ClientOp {
    pub op: Option<String>,
    pub channel: Option<String>,
    pub symbol: Option<String>,
    pub interval: Option<String>,
    pub token: Option<String>,
    /// Echoed in the reply (a number, or a string of at most [`ID_CHARS_MAX`] characters).
    pub id: Option<Value>,
}

/// The longest string `id` echoed back.
pub const ID_CHARS_MAX: usize = 64;

impl ClientOp {
    /// Decodes one text frame; `Err` names why it is not an op.
    pub fn parse(text: &str) -> Result<ClientOp, String> {
        let op: ClientOp = serde_json::from_str(text)
            .map_err(|e| format!("the frame is not a JSON object of the /ws protocol: {e}"))?;
        match &op.id {
            None | Some(Value::Number(_)) => {}
            Some(Value::String(s)) if s.chars().count() <= ID_CHARS_MAX => {}
            Some(_) => {
                return Err(format!(
                    "id must be a number or a string of at most {ID_CHARS_MAX} characters"
                ));
            }
        }
        Ok(op)
    }
}

/// The error codes of `/ws` (docs/api.md, "WebSocket errors and close codes"). A code that
/// also closes the socket closes it with WebSocket close code `code - 5000` (4070-4089) and the
/// code's name and detail as the reason.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WsCode {
    /// Not JSON, not an object, a binary frame, or an unknown or missing op.
    BadFrame = 9070,
    /// A frame larger than `http.ws.frame_bytes_max` (closes).
    FrameTooLarge = 9071,
    UnknownChannel = 9072,
    /// The symbol is not 1-12 ASCII letters or digits, or no listed symbol has it.
    InvalidSymbol = 9073,
    /// The candle interval is not 1m, 5m, 1h or 1d.
    InvalidInterval = 9074,
    /// More than `subscriptions_max` subscriptions on one connection (closes).
    TooManySubscriptions = 9075,
    /// The `account` channel needs an `auth` op first.
    Unauthenticated = 9076,
    /// The token of an `auth` op is missing, malformed, expired or not this server's.
    InvalidToken = 9077,
    /// The access token expired on an open socket and no fresh one came (closes).
    TokenExpired = 9078,
    /// A re-auth with a token of another account (the socket keeps its account).
    AccountMismatch = 9079,
    /// The connection's queue overflowed too often, or a message that cannot be conflated
    /// (a trade, an account message, a candle) did not fit (closes).
    SlowConsumer = 9080,
    /// The door has `connections_max` sockets already (answered 503 before the upgrade).
    ConnectionsFull = 9081,
    /// An unsubscribe of something not subscribed.
    NotSubscribed = 9082,
    /// More than `bad_frames_max` refused frames on one connection (closes).
    TooManyBadFrames = 9083,
    /// The server is shutting down (closes).
    ShuttingDown = 9084,
    /// Nothing was received within `idle_timeout_s` (closes).
    IdleTimeout = 9085,
}

impl WsCode {
    pub const ALL: [WsCode; 16] = [
        WsCode::BadFrame,
        WsCode::FrameTooLarge,
        WsCode::UnknownChannel,
        WsCode::InvalidSymbol,
        WsCode::InvalidInterval,
        WsCode::TooManySubscriptions,
        WsCode::Unauthenticated,
        WsCode::InvalidToken,
        WsCode::TokenExpired,
        WsCode::AccountMismatch,
        WsCode::SlowConsumer,
        WsCode::ConnectionsFull,
        WsCode::NotSubscribed,
        WsCode::TooManyBadFrames,
        WsCode::ShuttingDown,
        WsCode::IdleTimeout,
    ];

    pub fn code(self) -> u16 {
        self as u16
    }

    /// The WebSocket close code (private range 4000-4999).
    pub fn close_code(self) -> u16 {
        self.code() - 5000
    }

    pub fn name(self) -> &'static str {
        match self {
            WsCode::BadFrame => "BadFrame",
            WsCode::FrameTooLarge => "FrameTooLarge",
            WsCode::UnknownChannel => "UnknownChannel",
            WsCode::InvalidSymbol => "InvalidSymbol",
            WsCode::InvalidInterval => "InvalidInterval",
            WsCode::TooManySubscriptions => "TooManySubscriptions",
            WsCode::Unauthenticated => "Unauthenticated",
            WsCode::InvalidToken => "InvalidToken",
            WsCode::TokenExpired => "TokenExpired",
            WsCode::AccountMismatch => "AccountMismatch",
            WsCode::SlowConsumer => "SlowConsumer",
            WsCode::ConnectionsFull => "ConnectionsFull",
            WsCode::NotSubscribed => "NotSubscribed",
            WsCode::TooManyBadFrames => "TooManyBadFrames",
            WsCode::ShuttingDown => "ShuttingDown",
            WsCode::IdleTimeout => "IdleTimeout",
        }
    }

    /// Whether the server closes the socket after this error.
    pub fn closes(self) -> bool {
        matches!(
            self,
            WsCode::FrameTooLarge
                | WsCode::TooManySubscriptions
                | WsCode::TokenExpired
                | WsCode::SlowConsumer
                | WsCode::TooManyBadFrames
                | WsCode::ShuttingDown
                | WsCode::IdleTimeout
        )
    }
}

/// A close frame's reason: at most 123 bytes (RFC 6455), cut on a character boundary.
pub fn close_reason(code: WsCode, detail: &str) -> String {
    let mut reason = format!("{} {}: {detail}", code.code(), code.name());
    if reason.len() > 123 {
        let mut end = 123;
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        reason.truncate(end);
    }
    reason
}

/// `{"type":"error","code":..,"name":..,"message":..}` (+ the op's `id`).
pub fn error(code: WsCode, message: &str, id: Option<&Value>) -> String {
    with_id(
        json!({"type": "error", "code": code.code(), "name": code.name(), "message": message}),
        id,
    )
}

/// `{"type":"subscribed"|"unsubscribed","channel":..,"symbol":..}` (+ interval, id).
pub fn subscription_reply(kind: &str, topic: &super::hub::Topic, id: Option<&Value>) -> String {
    let mut v = json!({"type": kind, "channel": topic.channel()});
    if let Some(symbol) = topic.symbol() {
        v["symbol"] = json!(symbol.as_str());
    }
    if let Some(interval) = topic.interval() {
        v["interval"] = json!(interval.as_str());
    }
    with_id(v, id)
}

/// `{"type":"pong","ts":..}`.
pub fn pong(ts: u64, id: Option<&Value>) -> String {
    with_id(json!({"type": "pong", "ts": ts}), id)
}

/// `{"type":"authenticated","account":..,"exp":..}`.
pub fn authenticated(account: u32, exp: u64, id: Option<&Value>) -> String {
    with_id(
        json!({"type": "authenticated", "account": account, "exp": exp}),
        id,
    )
}

fn with_id(mut v: Value, id: Option<&Value>) -> String {
    if let Some(id) = id {
        v["id"] = id.clone();
    }
    v.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_in_their_range_and_close_codes_are_private() {
        for c in WsCode::ALL {
            assert!((9070..=9089).contains(&c.code()), "{c:?}");
            assert!((4070..=4089).contains(&c.close_code()), "{c:?}");
        }
    }

    #[test]
    fn bad_frames_are_refused_with_a_reason() {
        assert!(ClientOp::parse("garbage").is_err());
        assert!(ClientOp::parse("[1,2]").is_err());
        assert!(ClientOp::parse(r#"{"op":"ping","id":{"a":1}}"#).is_err());
        assert!(ClientOp::parse(&format!(r#"{{"op":"ping","id":"{}"}}"#, "x".repeat(65))).is_err());
        let op = ClientOp::parse(r#"{"op":"ping","id":7,"extra":true}"#).unwrap();
        assert_eq!(op.op.as_deref(), Some("ping"));
    }

    #[test]
    fn a_close_reason_fits_a_control_frame() {
        let r = close_reason(WsCode::BadFrame, &"가".repeat(100));
        assert!(r.len() <= 123);
    }
}
