//! WebSocket feeds on the HTTP door (`GET /ws`, docs/api.md "WebSocket", ADR-024,
//! docs/diagrams/websocket-architecture.md): public channels per symbol (`quote`, `book`,
//! `trades`, `candles`) and the private `account` channel of the JWT's account.
//!
//! Pieces: [`feed`] (an output-ring handler of the node that keeps the feed's own books and
//! turns events into feed messages, never blocking the ring), [`hub`] (the fan-out thread:
//! the subscription registry, the books as clients see them, each connection's bounded
//! [`hub::Outbox`]), [`session`] (one task per socket: the client's ops, auth and expiry,
//! pings, writing the outbox), [`protocol`] (ops, codes, control replies).
//!
//! **Invariants**
//! - The output ring never waits for a client: the feed handler only `try_send`s into the
//!   fan-out's bounded queue; a message that does not fit is dropped, and a dropped book
//!   update is replaced by a snapshot of that book left in the hub's pending slot, which
//!   the fan-out takes before any later update of that book.
//! - A book subscriber sees a snapshot tagged with `seq`, then updates `seq+1`, `seq+2`, ...
//!   with no gap, unless a new `book_snapshot` replaces its book (after a resync or a
//!   conflation); snapshots and updates come from the same state in the same order.
//! - Every connection's queue holds at most `queue_frames_max` frames; a client that does
//!   not read is conflated, then closed, and never slows the fan-out or another client.
//!
//! **Performance**: per output event a few map operations on the handler thread; per book
//! change one top-10 diff at the command's end. Each message is serialized once, and a
//! connection's queue holds a reference-counted copy.
//!
//! **Known limitations**: the `account` channel starts with no snapshot (read the REST
//! account, orders and positions after subscribing); book `seq` restarts at each start of
//! the node (a reconnecting client resubscribes and gets a snapshot).

pub mod feed;
pub mod hub;
pub mod protocol;
pub mod session;

use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicU64, Ordering};

/// The `[http.ws]` section of the node config.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct WsSettings {
    /// Serve `/ws`.
    pub enabled: bool,
    /// Open WebSocket connections, at most (more are answered `503` with code 9081).
    pub connections_max: usize,
    /// Subscriptions per connection, at most.
    pub subscriptions_max: usize,
    /// Frames queued per connection, at most (its back-pressure bound).
    pub queue_frames_max: usize,
    /// Queue overflows a connection may cause before it is closed as a slow consumer.
    pub slow_overflows_max: u64,
    /// How long one frame may take to be written to a socket before it is closed.
    pub send_timeout_ms: u64,
    /// The largest client frame (larger ones close the socket with 4071).
    pub frame_bytes_max: usize,
    /// Refused client frames a connection may send before it is closed.
    pub bad_frames_max: u32,
    /// Interval of the server's WebSocket pings.
    pub ping_interval_s: u64,
    /// A connection that sends nothing (not even a pong) for this long is closed.
    pub idle_timeout_s: u64,
    /// Messages queued from the feed handler (and the market data) to the fan-out thread.
    pub feed_queue_max: usize,
    /// Each socket's read buffer, allocated when the connection opens (client frames are
    /// small: a larger buffer costs memory per connection and buys nothing).
    pub read_buffer_bytes: usize,
}

impl Default for WsSettings {
    fn default() -> Self {
        WsSettings {
            enabled: true,
            connections_max: 10_000,
            subscriptions_max: 64,
            queue_frames_max: 1_024,
            slow_overflows_max: 256,
            send_timeout_ms: 5_000,
            frame_bytes_max: 4_096,
            bad_frames_max: 16,
            ping_interval_s: 20,
            idle_timeout_s: 60,
            feed_queue_max: 65_536,
            read_buffer_bytes: 4_096,
        }
    }
}

impl WsSettings {
    pub fn validate(&self) -> Result<(), String> {
        let check = |ok: bool, what: &str| if ok { Ok(()) } else { Err(what.to_owned()) };
        check(
            (1..=1_000_000).contains(&self.connections_max),
            "http.ws.connections_max must be between 1 and 1000000",
        )?;
        check(
            (1..=4_096).contains(&self.subscriptions_max),
            "http.ws.subscriptions_max must be between 1 and 4096",
        )?;
        check(
            (4..=1_048_576).contains(&self.queue_frames_max),
            "http.ws.queue_frames_max must be between 4 and 1048576",
        )?;
        check(
            self.send_timeout_ms > 0,
            "http.ws.send_timeout_ms must be positive",
        )?;
        check(
            (256..=1_048_576).contains(&self.frame_bytes_max),
            "http.ws.frame_bytes_max must be between 256 and 1048576",
        )?;
        check(
            self.ping_interval_s > 0 && self.idle_timeout_s > self.ping_interval_s,
            "http.ws.ping_interval_s must be positive and below http.ws.idle_timeout_s",
        )?;
        check(
            (1..=16_777_216).contains(&self.feed_queue_max),
            "http.ws.feed_queue_max must be between 1 and 16777216",
        )?;
        check(
            (256..=1_048_576).contains(&self.read_buffer_bytes),
            "http.ws.read_buffer_bytes must be between 256 and 1048576",
        )
    }
}

/// The `/ws` counters and gauges exported in `/metrics` (`kuku_ws_*`).
#[derive(Debug, Default)]
pub struct WsMetrics {
    /// Open connections.
    pub connections: AtomicU64,
    pub connections_total: AtomicU64,
    /// Upgrades refused because `connections_max` were open.
    pub connections_refused: AtomicU64,
    /// Live subscriptions over all connections.
    pub subscriptions: AtomicU64,
    /// Frames written to sockets.
    pub messages_sent: AtomicU64,
    /// Frames a connection's full queue did not take (conflated book updates included).
    pub messages_dropped: AtomicU64,
    /// Feed messages dropped because the fan-out's queue was full.
    pub feed_dropped: AtomicU64,
    /// Book snapshots sent to replace conflated or lost updates (resyncs).
    pub book_resyncs: AtomicU64,
    /// Connections closed as slow consumers.
    pub slow_closes: AtomicU64,
    /// Connections closed because their token expired.
    pub token_expired_closes: AtomicU64,
    /// Frames queued over all connections now.
    pub queued_frames: AtomicU64,
    /// The deepest any one connection's queue has been since the start.
    pub queue_depth_max: AtomicU64,
    /// Messages waiting in the fan-out's queue now.
    pub feed_queue_depth: AtomicU64,
    /// Client frames refused with an error.
    pub bad_frames: AtomicU64,
}

impl WsMetrics {
    pub fn get(a: &AtomicU64) -> u64 {
        a.load(Ordering::Relaxed)
    }

    pub(crate) fn add(a: &AtomicU64, n: u64) {
        a.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn sub(a: &AtomicU64, n: u64) {
        a.fetch_sub(n, Ordering::Relaxed);
    }

    /// Renders the metrics in the Prometheus text format.
    pub fn render(&self, out: &mut String) {
        use std::fmt::Write as _;
        let rows: [(&str, &str, &str, &AtomicU64); 14] = [
            (
                "kuku_ws_connections",
                "gauge",
                "Open WebSocket connections.",
                &self.connections,
            ),
            (
                "kuku_ws_connections_total",
                "counter",
                "WebSocket connections accepted.",
                &self.connections_total,
            ),
            (
                "kuku_ws_connections_refused_total",
                "counter",
                "WebSocket upgrades refused at connections_max.",
                &self.connections_refused,
            ),
            (
                "kuku_ws_subscriptions",
                "gauge",
                "Live WebSocket subscriptions.",
                &self.subscriptions,
            ),
            (
                "kuku_ws_messages_sent_total",
                "counter",
                "WebSocket frames written to clients.",
                &self.messages_sent,
            ),
            (
                "kuku_ws_messages_dropped_total",
                "counter",
                "WebSocket frames a full connection queue did not take (conflated).",
                &self.messages_dropped,
            ),
            (
                "kuku_ws_feed_dropped_total",
                "counter",
                "Feed messages dropped because the fan-out queue was full.",
                &self.feed_dropped,
            ),
            (
                "kuku_ws_book_resyncs_total",
                "counter",
                "Book snapshots sent to replace conflated or lost updates.",
                &self.book_resyncs,
            ),
            (
                "kuku_ws_slow_closes_total",
                "counter",
                "WebSocket connections closed as slow consumers.",
                &self.slow_closes,
            ),
            (
                "kuku_ws_token_expired_closes_total",
                "counter",
                "WebSocket connections closed at token expiry.",
                &self.token_expired_closes,
            ),
            (
                "kuku_ws_queued_frames",
                "gauge",
                "Frames queued over all WebSocket connections.",
                &self.queued_frames,
            ),
            (
                "kuku_ws_queue_depth_max",
                "gauge",
                "Deepest single connection queue since the start.",
                &self.queue_depth_max,
            ),
            (
                "kuku_ws_feed_queue_depth",
                "gauge",
                "Messages waiting for the fan-out thread.",
                &self.feed_queue_depth,
            ),
            (
                "kuku_ws_bad_frames_total",
                "counter",
                "Client frames refused with an error.",
                &self.bad_frames,
            ),
        ];
        for (name, kind, help, value) in rows {
            let _ = write!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {}\n",
                Self::get(value)
            );
        }
    }
}
