//! A blocking WebSocket client of the HTTP door's `/ws` for tests: JSON ops out, JSON
//! messages in, every wait bounded; and a local copy of a book kept from the feed.

use serde_json::{Value, json};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};
use tungstenite::Message;
use tungstenite::protocol::CloseFrame;

/// The value of a `kuku_ws_*` metric of the node's `/ws`, as `/metrics` renders it.
pub fn metric(t: &super::TestNode, name: &str) -> u64 {
    let m = t.http.as_ref().unwrap().ws_metrics().expect("ws enabled");
    let mut text = String::new();
    m.render(&mut text);
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .unwrap_or_else(|| panic!("{name} not in {text}"))
        .parse()
        .unwrap()
}

/// A bound on every wait for a message.
pub const WAIT: Duration = Duration::from_secs(30);

pub struct WsClient {
    pub socket: tungstenite::WebSocket<TcpStream>,
}

/// What [`WsClient::next_event`] read.
#[derive(Debug)]
pub enum Event {
    Json(Value),
    Closed(Option<CloseFrame>),
}

impl WsClient {
    pub fn connect(addr: SocketAddr) -> WsClient {
        WsClient::try_connect(addr).unwrap_or_else(|e| panic!("the upgrade failed: {e}"))
    }

    pub fn try_connect(addr: SocketAddr) -> Result<WsClient, tungstenite::Error> {
        let stream = TcpStream::connect(addr).expect("connect to the HTTP door");
        stream
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        stream.set_write_timeout(Some(WAIT)).unwrap();
        match tungstenite::client(format!("ws://{addr}/ws"), stream) {
            Ok((socket, _)) => Ok(WsClient { socket }),
            Err(tungstenite::HandshakeError::Failure(e)) => Err(e),
            Err(tungstenite::HandshakeError::Interrupted(_)) => {
                Err(tungstenite::Error::Io(std::io::ErrorKind::TimedOut.into()))
            }
        }
    }

    pub fn send(&mut self, op: Value) {
        self.socket
            .send(Message::Text(op.to_string().into()))
            .expect("send an op");
    }

    pub fn send_raw(&mut self, message: Message) {
        self.socket.send(message).expect("send a frame");
    }

    /// The next JSON message or the close, `None` if nothing came within `timeout`.
    pub fn next_event(&mut self, timeout: Duration) -> Option<Event> {
        let deadline = Instant::now() + timeout;
        loop {
            match self.socket.read() {
                Ok(Message::Text(t)) => {
                    let v = serde_json::from_str(t.as_str())
                        .unwrap_or_else(|e| panic!("not JSON ({e}): {t}"));
                    return Some(Event::Json(v));
                }
                Ok(Message::Close(frame)) => return Some(Event::Closed(frame)),
                Ok(_) => {}
                Err(tungstenite::Error::Io(e))
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    if Instant::now() >= deadline {
                        return None;
                    }
                }
                Err(
                    tungstenite::Error::ConnectionClosed
                    | tungstenite::Error::AlreadyClosed
                    | tungstenite::Error::Protocol(_)
                    | tungstenite::Error::Io(_),
                ) => return Some(Event::Closed(None)),
                Err(e) => panic!("reading the socket: {e}"),
            }
        }
    }

    /// The next JSON message; panics on a close or after [`WAIT`].
    pub fn next(&mut self) -> Value {
        match self.next_event(WAIT) {
            Some(Event::Json(v)) => v,
            other => panic!("expected a message, got {other:?}"),
        }
    }

    /// The next message `pick` accepts (others are skipped), within [`WAIT`].
    pub fn next_where(&mut self, mut pick: impl FnMut(&Value) -> bool) -> Value {
        let deadline = Instant::now() + WAIT;
        while Instant::now() < deadline {
            match self.next_event(Duration::from_millis(500)) {
                Some(Event::Json(v)) if pick(&v) => return v,
                Some(Event::Json(_)) | None => {}
                Some(Event::Closed(f)) => panic!("closed while waiting: {f:?}"),
            }
        }
        panic!("no matching message within {WAIT:?}")
    }

    /// Reads until the close frame (skipping messages, kept in the result); its code and
    /// reason, within [`WAIT`].
    pub fn until_closed(&mut self) -> (Vec<Value>, Option<(u16, String)>) {
        let deadline = Instant::now() + WAIT;
        let mut seen = Vec::new();
        while Instant::now() < deadline {
            match self.next_event(Duration::from_millis(500)) {
                Some(Event::Json(v)) => seen.push(v),
                Some(Event::Closed(f)) => {
                    return (seen, f.map(|f| (u16::from(f.code), f.reason.to_string())));
                }
                None => {}
            }
        }
        panic!("not closed within {WAIT:?}; saw {seen:?}")
    }

    /// Subscribes and waits for the `subscribed` reply.
    pub fn subscribe(&mut self, channel: &str, symbol: &str) -> Value {
        self.send(json!({"op": "subscribe", "channel": channel, "symbol": symbol}));
        self.next_where(|v| v["type"] == "subscribed" || v["type"] == "error")
    }
}

/// Price levels of one side, best first: `(price, qty)`.
pub type Side = Vec<(i64, i64)>;

/// A book kept from `book_snapshot` and `book_update` messages, checking the sequence.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LocalBook {
    pub seq: u64,
    pub engine_seq: u64,
    pub bids: Side,
    pub asks: Side,
    /// Snapshots whose seq was not the next one (a resync after a gap or a conflation).
    pub jumps: u64,
    pub snapshots: u64,
    pub updates: u64,
}

fn levels(v: &Value) -> Side {
    v.as_array()
        .expect("levels")
        .iter()
        .map(|l| (l[0].as_i64().unwrap(), l[1].as_i64().unwrap()))
        .collect()
}

impl LocalBook {
    /// Applies a book message; panics on an update that does not follow (a gap the server
    /// did not repair with a snapshot).
    pub fn apply(&mut self, m: &Value) {
        let seq = m["seq"].as_u64().expect("seq");
        match m["type"].as_str() {
            Some("book_snapshot") => {
                if self.snapshots > 0 && seq > self.seq + 1 {
                    self.jumps += 1;
                }
                self.snapshots += 1;
                self.seq = seq;
                self.bids = levels(&m["bids"]);
                self.asks = levels(&m["asks"]);
            }
            Some("book_update") => {
                assert!(self.snapshots > 0, "an update before any snapshot: {m}");
                assert_eq!(seq, self.seq + 1, "an update out of sequence: {m}");
                self.updates += 1;
                self.seq = seq;
                for (price, qty) in levels(&m["bids"]) {
                    self.bids.retain(|l| l.0 != price);
                    if qty > 0 {
                        self.bids.push((price, qty));
                    }
                }
                for (price, qty) in levels(&m["asks"]) {
                    self.asks.retain(|l| l.0 != price);
                    if qty > 0 {
                        self.asks.push((price, qty));
                    }
                }
                self.bids.sort_by_key(|l| std::cmp::Reverse(l.0));
                self.asks.sort_by_key(|l| l.0);
                self.bids.truncate(10);
                self.asks.truncate(10);
            }
            _ => panic!("not a book message: {m}"),
        }
        self.engine_seq = m["engine_seq"].as_u64().expect("engine_seq");
    }

    /// The top ten levels of a REST `/symbols/{code}/book` answer.
    pub fn of_rest(book: &Value) -> (Side, Side) {
        let side = |v: &Value| -> Side {
            v.as_array()
                .unwrap()
                .iter()
                .map(|l| (l["price"].as_i64().unwrap(), l["qty"].as_i64().unwrap()))
                .collect()
        };
        (side(&book["bids"]), side(&book["asks"]))
    }
}
