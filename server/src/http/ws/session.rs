//! One WebSocket connection: the upgrade (refused with `503 9081` at `connections_max`),
//! then one task that reads the client's ops, writes the connection's [`Outbox`], pings,
//! and enforces the access token's expiry.
//!
//! **Token expiry**: after `auth`, the socket is bound to the token's account until the
//! token's `exp`. A client keeps the socket by sending `auth` again with a fresh token of the
//! same account before then; at `exp` the server sends error `9078 TokenExpired` and closes
//! with code 4078. A token of another account is refused (`9079`); the socket keeps its
//! account.
//!
//! **Invariants**: no client input panics or blocks the fan-out; every refusal is an error
//! frame with a numbered code, and the refusals that end the socket close it with
//! `code - 5000` and a reason. A socket whose writes stall longer than `send_timeout_ms` is
//! dropped.

use super::hub::{Hub, Kind, Outbox, Topic};
use super::protocol::{self, ClientOp, WsCode};
use crate::http::api::AppState;
use crate::http::jwt::now_s;
use crate::http::problem::ApiError;
use crate::pipeline::now_ns;
use axum::extract::State;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use kuku_engine::{AccountId, SymbolCode};
use kuku_marketdata::Interval;
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// Frames written per wake-up before the session looks at the socket again.
const FRAMES_PER_FLUSH: usize = 64;

/// `GET /ws`.
pub async fn upgrade(State(state): State<AppState>, ws: WebSocketUpgrade) -> Response {
    let Some(hub) = state.ws.clone() else {
        return ApiError::code(9025)
            .with_detail("WebSocket feeds are disabled on this node (http.ws.enabled)")
            .into_response();
    };
    let Some(outbox) = hub.open() else {
        return ApiError {
            code: WsCode::ConnectionsFull.code(),
            status: StatusCode::SERVICE_UNAVAILABLE,
            detail: Some(format!(
                "the door has {} WebSocket connections already (http.ws.connections_max)",
                hub.settings.connections_max
            )),
            retry_after_s: Some(1),
        }
        .into_response();
    };
    // The frame size axum enforces bounds memory; the protocol's smaller limit is checked
    // per frame so that the refusal can be an error frame and a close with a reason.
    let hard_max = hub.settings.frame_bytes_max.saturating_mul(16);
    // Every frame is written as it is sent (the queue is the buffer), and the read buffer is
    // small: at axum's defaults (128 KiB each way) 10,000 idle connections held 1.3 GiB.
    ws.max_message_size(hard_max)
        .max_frame_size(hard_max)
        .read_buffer_size(hub.settings.read_buffer_bytes)
        .write_buffer_size(0)
        .on_upgrade(move |socket| async move {
            let mut session = Session {
                hub: Arc::clone(&hub),
                state,
                outbox: Arc::clone(&outbox),
                topics: Vec::new(),
                auth: None,
                bad_frames: 0,
                last_heard: Instant::now(),
            };
            session.run(socket).await;
            hub.close(&outbox, &session.topics);
        })
}

#[derive(Clone, Copy, Debug)]
struct Auth {
    account: AccountId,
    exp_s: u64,
}

struct Session {
    hub: Arc<Hub>,
    state: AppState,
    outbox: Arc<Outbox>,
    topics: Vec<Topic>,
    auth: Option<Auth>,
    bad_frames: u32,
    last_heard: Instant,
}

/// Why the loop ends.
enum End {
    /// The client closed, or the socket failed: nothing more to send.
    Gone,
    /// Close with this code and reason.
    Close(WsCode, String),
}

impl Session {
    async fn run(&mut self, mut socket: WebSocket) {
        let settings = self.hub.settings.clone();
        let mut ping = tokio::time::interval(Duration::from_secs(settings.ping_interval_s));
        ping.tick().await;
        let idle = Duration::from_secs(settings.idle_timeout_s);
        let end = loop {
            let expiry = self.auth.map(|a| deadline_of(a.exp_s));
            tokio::select! {
                _ = self.outbox.notify.notified() => {
                    if let Err(end) = self.flush(&mut socket).await {
                        break end;
                    }
                }
                incoming = socket.recv() => match incoming {
                    None => break End::Gone,
                    Some(Err(_)) => break End::Close(
                        WsCode::FrameTooLarge,
                        "the frame could not be read (too large or malformed)".into(),
                    ),
                    Some(Ok(message)) => {
                        self.last_heard = Instant::now();
                        if let Some(end) = self.on_message(message) {
                            break end;
                        }
                    }
                },
                _ = ping.tick() => {
                    if self.last_heard.elapsed() > idle {
                        break End::Close(WsCode::IdleTimeout, "nothing was received within idle_timeout_s".into());
                    }
                    if !self.send(&mut socket, Message::Ping(Default::default())).await {
                        break End::Gone;
                    }
                }
                _ = sleep_until(expiry), if expiry.is_some() => {
                    // The token may have been renewed by an `auth` handled just before.
                    if self.auth.is_some_and(|a| a.exp_s <= now_s()) {
                        self.hub.metrics.token_expired_closes.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        break End::Close(WsCode::TokenExpired, "the access token expired: send auth with a fresh token before exp".into());
                    }
                }
            }
        };
        if let End::Close(code, why) = end {
            self.close(&mut socket, code, &why).await;
        }
    }

    /// Writes what the outbox holds; `Err` when the socket must end.
    async fn flush(&mut self, socket: &mut WebSocket) -> Result<(), End> {
        if self.hub.writes_paused() {
            return Ok(());
        }
        let mut frames = Vec::with_capacity(FRAMES_PER_FLUSH);
        loop {
            frames.clear();
            let taken = self.outbox.take(FRAMES_PER_FLUSH, &mut frames);
            for text in frames.drain(..) {
                if !self.send(socket, Message::Text(text)).await {
                    return Err(End::Gone);
                }
            }
            if taken.stale {
                self.hub.resync_stale(&self.outbox);
                continue;
            }
            if !taken.more {
                return match taken.closing {
                    Some((code, why)) => Err(End::Close(code, why)),
                    None => Ok(()),
                };
            }
        }
    }

    /// Sends one frame within `send_timeout_ms`; `false` if the socket is gone or stalled.
    async fn send(&self, socket: &mut WebSocket, message: Message) -> bool {
        let timeout = Duration::from_millis(self.hub.settings.send_timeout_ms);
        let counted = matches!(message, Message::Text(_));
        match tokio::time::timeout(timeout, socket.send(message)).await {
            Ok(Ok(())) => {
                if counted {
                    super::WsMetrics::add(&self.hub.metrics.messages_sent, 1);
                }
                true
            }
            Ok(Err(_)) => false,
            Err(_) => {
                self.outbox
                    .mark_slow("a frame could not be written within send_timeout_ms");
                false
            }
        }
    }

    /// Sends the error frame of `code` (if it fits) and a close frame with the reason.
    async fn close(&self, socket: &mut WebSocket, code: WsCode, why: &str) {
        if code != WsCode::SlowConsumer {
            let text = protocol::error(code, why, None);
            let _ = self.send(socket, Message::Text(text.into())).await;
        }
        let frame = CloseFrame {
            code: code.close_code(),
            reason: Utf8Bytes::from(protocol::close_reason(code, why)),
        };
        let _ = self.send(socket, Message::Close(Some(frame))).await;
    }

    fn reply(&self, text: String) {
        self.outbox.push(text.into(), Kind::Droppable);
    }

    /// Handles one client frame; `Some` when the socket must end.
    fn on_message(&mut self, message: Message) -> Option<End> {
        let text = match message {
            Message::Text(text) => text,
            Message::Binary(_) => {
                return self.refuse(
                    WsCode::BadFrame,
                    "binary frames are not part of the protocol: send JSON text",
                    None,
                );
            }
            Message::Close(_) => return Some(End::Gone),
            Message::Ping(_) | Message::Pong(_) => return None,
        };
        if text.len() > self.hub.settings.frame_bytes_max {
            return Some(End::Close(
                WsCode::FrameTooLarge,
                format!(
                    "a frame is at most {} bytes",
                    self.hub.settings.frame_bytes_max
                ),
            ));
        }
        let op = match ClientOp::parse(text.as_str()) {
            Ok(op) => op,
            Err(why) => return self.refuse(WsCode::BadFrame, &why, None),
        };
        let id = op.id.clone();
        match op.op.as_deref() {
            Some("ping") => {
                self.reply(protocol::pong(now_ns(), id.as_ref()));
                None
            }
            Some("auth") => self.on_auth(&op, id.as_ref()),
            Some("subscribe") => self.on_subscribe(&op, id.as_ref()),
            Some("unsubscribe") => self.on_unsubscribe(&op, id.as_ref()),
            Some("resync") => self.on_resync(&op, id.as_ref()),
            Some(other) => {
                let why =
                    format!("unknown op {other:?}: ping, auth, subscribe, unsubscribe or resync");
                self.refuse(WsCode::BadFrame, &why, id.as_ref())
            }
            None => self.refuse(WsCode::BadFrame, "the frame has no op", id.as_ref()),
        }
    }

    /// Answers an error frame; a closing code, or one refusal too many, ends the socket.
    fn refuse(&mut self, code: WsCode, why: &str, id: Option<&Value>) -> Option<End> {
        super::WsMetrics::add(&self.hub.metrics.bad_frames, 1);
        if code.closes() {
            return Some(End::Close(code, why.to_owned()));
        }
        self.reply(protocol::error(code, why, id));
        self.bad_frames += 1;
        if self.bad_frames > self.hub.settings.bad_frames_max {
            return Some(End::Close(
                WsCode::TooManyBadFrames,
                format!(
                    "more than {} refused frames",
                    self.hub.settings.bad_frames_max
                ),
            ));
        }
        None
    }

    fn on_auth(&mut self, op: &ClientOp, id: Option<&Value>) -> Option<End> {
        let Some(token) = op.token.as_deref() else {
            return self.refuse(
                WsCode::InvalidToken,
                "auth needs a token (the access token of POST /api/v1/auth/token)",
                id,
            );
        };
        match self.state.jwt.verify_with_expiry(token) {
            Ok((account, exp_s)) => {
                if let Some(a) = self.auth
                    && a.account != account
                {
                    let why = format!(
                        "this socket is bound to account {}; a token of account {} is refused",
                        a.account.0, account.0
                    );
                    return self.refuse(WsCode::AccountMismatch, &why, id);
                }
                self.auth = Some(Auth { account, exp_s });
                self.reply(protocol::authenticated(account.0, exp_s, id));
                None
            }
            Err(e) => self.refuse(WsCode::InvalidToken, &e.to_string(), id),
        }
    }

    /// The topic an op names, or the refusal.
    fn topic(&self, op: &ClientOp) -> Result<Topic, (WsCode, String)> {
        let channel = op.channel.as_deref().unwrap_or("");
        if channel == "account" {
            return match self.auth {
                Some(a) => Ok(Topic::Account(a.account)),
                None => Err((
                    WsCode::Unauthenticated,
                    "the account channel needs an auth op with an access token first".into(),
                )),
            };
        }
        if !matches!(channel, "quote" | "trades" | "book" | "candles") {
            return Err((
                WsCode::UnknownChannel,
                format!("unknown channel {channel:?}: quote, trades, book, candles or account"),
            ));
        }
        let symbol = self.symbol(op.symbol.as_deref())?;
        Ok(match channel {
            "quote" => Topic::Quote(symbol),
            "trades" => Topic::Trades(symbol),
            "book" => Topic::Book(symbol),
            _ => {
                let interval = op.interval.as_deref().and_then(Interval::parse).ok_or((
                    WsCode::InvalidInterval,
                    "the candles channel needs an interval: 1m, 5m, 1h or 1d".to_owned(),
                ))?;
                Topic::Candles(symbol, interval)
            }
        })
    }

    fn symbol(&self, symbol: Option<&str>) -> Result<SymbolCode, (WsCode, String)> {
        let bad = |why: String| (WsCode::InvalidSymbol, why);
        let s = symbol.ok_or_else(|| bad("the channel needs a symbol".into()))?;
        let well_formed =
            !s.is_empty() && s.len() <= 12 && s.bytes().all(|b| b.is_ascii_alphanumeric());
        let code = SymbolCode::new(s)
            .filter(|_| well_formed)
            .ok_or_else(|| bad("a symbol is 1 to 12 ASCII letters or digits".into()))?;
        // The door's read model may list a symbol registered a moment before the feed saw it.
        let known = self.hub.knows_symbol(&code)
            || self.state.market_data.reference_symbol(code).is_some()
            || self
                .state
                .read(|v| v.read_model.symbol_by_code(s).is_some());
        if known {
            Ok(code)
        } else {
            Err(bad(format!("no listed symbol has the code {s:?}")))
        }
    }

    fn on_subscribe(&mut self, op: &ClientOp, id: Option<&Value>) -> Option<End> {
        let topic = match self.topic(op) {
            Ok(t) => t,
            Err((code, why)) => return self.refuse(code, &why, id),
        };
        if !self.topics.contains(&topic) {
            if self.topics.len() >= self.hub.settings.subscriptions_max {
                let why = format!(
                    "a connection has at most {} subscriptions",
                    self.hub.settings.subscriptions_max
                );
                return self.refuse(WsCode::TooManySubscriptions, &why, id);
            }
            self.topics.push(topic);
        }
        // Subscribing again answers again (and a book sends a fresh snapshot).
        let reply = protocol::subscription_reply("subscribed", &topic, id);
        self.hub.subscribe(&self.outbox, topic, reply);
        None
    }

    fn on_unsubscribe(&mut self, op: &ClientOp, id: Option<&Value>) -> Option<End> {
        let topic = match self.topic(op) {
            Ok(t) => t,
            Err((code, why)) => return self.refuse(code, &why, id),
        };
        if !self.hub.unsubscribe(&self.outbox, &topic) {
            return self.refuse(
                WsCode::NotSubscribed,
                "not subscribed to this channel and symbol",
                id,
            );
        }
        self.topics.retain(|t| *t != topic);
        self.reply(protocol::subscription_reply("unsubscribed", &topic, id));
        None
    }

    fn on_resync(&mut self, op: &ClientOp, id: Option<&Value>) -> Option<End> {
        let topic = match self.topic(op) {
            Ok(t) => t,
            Err((code, why)) => return self.refuse(code, &why, id),
        };
        match topic {
            Topic::Book(symbol) if self.topics.contains(&topic) => {
                self.hub.resync(&self.outbox, symbol);
                None
            }
            Topic::Book(_) => self.refuse(
                WsCode::NotSubscribed,
                "resync needs a book subscription of this symbol",
                id,
            ),
            _ => self.refuse(WsCode::UnknownChannel, "only the book channel resyncs", id),
        }
    }
}

/// The instant a token expiring at `exp_s` (Unix seconds) expires.
fn deadline_of(exp_s: u64) -> Instant {
    let now_ns = now_ns();
    let exp_ns = exp_s.saturating_mul(1_000_000_000);
    let now = Instant::now();
    // An `exp` centuries away (a token minted by hand) must not overflow the clock.
    now.checked_add(Duration::from_nanos(exp_ns.saturating_sub(now_ns)))
        .unwrap_or_else(|| now + Duration::from_secs(100 * 365 * 86_400))
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_expiry_at_the_end_of_time_is_far_away_not_a_panic() {
        let far = deadline_of(u64::MAX);
        assert!(far > Instant::now() + Duration::from_secs(86_400));
        assert!(deadline_of(0) <= Instant::now());
    }
}
