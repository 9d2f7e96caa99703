//! The client side of `kuku-bench ws`: many WebSocket connections on a few threads.
//!
//! Each thread runs a current-thread tokio runtime with one task per connection; a thread's
//! connections share its counters and its latency histogram (no locks, no per-connection
//! histogram). A connection subscribes to the quote and trades channels of every symbol, then
//! reads until the conductor stops the fleet or the server closes it.
//!
//! What a connection counts: every data message (`quote`, `trade`); the ones whose `ts` falls
//! inside the measured window, per connection (the undelivered count compares them), and their
//! event-to-client latency (`now - ts`, same machine clock) in the thread's histogram.

use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::{Semaphore, watch};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

/// The largest latency recorded, microseconds (larger values are clamped to it).
const LATENCY_MAX_US: u64 = 60_000_000;
/// How long a connection waits for the server's answer to its close frame.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);
/// How long the conductor waits for the threads once they were told to stop.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// What the fleet connects to and how.
#[derive(Clone, Debug)]
pub struct FleetConfig {
    pub addr: SocketAddr,
    /// The WebSocket path, e.g. `/ws`.
    pub path: String,
    pub clients: usize,
    pub threads: usize,
    pub symbols: Vec<String>,
    /// Connections in their TCP and WebSocket handshakes at once, over all threads.
    pub connect_concurrency: usize,
    pub connect_timeout: Duration,
    /// Each socket's read buffer (tungstenite's default of 128 KiB times 10,000 clients would
    /// be the client's memory, not the server's).
    pub read_buffer_bytes: usize,
}

/// Counters the conductor reads while the fleet runs, and the measured window.
#[derive(Debug, Default)]
struct Shared {
    subscribed: AtomicUsize,
    failed: AtomicUsize,
    /// The window in ns since the Unix epoch; `u64::MAX` until the conductor sets it.
    window_start_ns: AtomicU64,
    window_end_ns: AtomicU64,
}

/// Why a connection ended before the fleet was stopped, or never started.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Ending {
    ConnectFailed(String),
    ClosedByServer(String),
    Error(String),
}

/// One connection's record.
#[derive(Clone, Debug, Default)]
struct ClientRecord {
    in_window: u64,
    acks: usize,
    ending: Option<Ending>,
}

/// Frame and byte counts, per client thread and summed over the fleet.
#[derive(Clone, Copy, Debug, Default)]
pub struct Counts {
    pub data_messages: u64,
    pub quote_messages: u64,
    pub trade_messages: u64,
    pub quote_bytes: u64,
    pub trade_bytes: u64,
    pub window_quotes: u64,
    pub window_trades: u64,
    pub error_frames: u64,
    pub other_frames: u64,
}

impl std::ops::AddAssign for Counts {
    fn add_assign(&mut self, o: Counts) {
        self.data_messages += o.data_messages;
        self.quote_messages += o.quote_messages;
        self.trade_messages += o.trade_messages;
        self.quote_bytes += o.quote_bytes;
        self.trade_bytes += o.trade_bytes;
        self.window_quotes += o.window_quotes;
        self.window_trades += o.window_trades;
        self.error_frames += o.error_frames;
        self.other_frames += o.other_frames;
    }
}

/// What one thread's connections saw (merged into [`FleetResult`]).
struct ThreadState {
    clients: Vec<ClientRecord>,
    histogram: Histogram<u64>,
    counts: Counts,
    /// The first error frames, as received.
    error_samples: Vec<String>,
}

/// The merged numbers of a stopped fleet.
#[derive(Clone, Debug)]
pub struct FleetResult {
    pub histogram: Histogram<u64>,
    /// Per connection: data messages whose `ts` fell in the window.
    pub in_window: Vec<u64>,
    /// Per connection: why it ended early, if it did.
    pub endings: Vec<Option<Ending>>,
    pub counts: Counts,
    pub error_samples: Vec<String>,
}

impl FleetResult {
    /// How many connections ended early, by reason (the reason's text shortened).
    pub fn endings_by_reason(&self) -> BTreeMap<String, u64> {
        let mut by = BTreeMap::new();
        for e in self.endings.iter().flatten() {
            let key = match e {
                Ending::ConnectFailed(r) => format!("connect failed: {r}"),
                Ending::ClosedByServer(r) => format!("closed by server: {r}"),
                Ending::Error(r) => format!("error: {r}"),
            };
            let key: String = key.chars().take(120).collect();
            *by.entry(key).or_insert(0) += 1;
        }
        by
    }
}

/// A running fleet.
pub struct Fleet {
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
    threads: Vec<std::thread::JoinHandle<anyhow::Result<ThreadState>>>,
    clients: usize,
}

impl Fleet {
    /// Starts the threads; connections open in the background (see [`Fleet::progress`]).
    pub fn start(config: FleetConfig) -> anyhow::Result<Fleet> {
        anyhow::ensure!(config.threads >= 1, "the fleet needs a thread");
        let shared = Arc::new(Shared {
            window_start_ns: AtomicU64::new(u64::MAX),
            window_end_ns: AtomicU64::new(u64::MAX),
            ..Shared::default()
        });
        let (stop, stop_rx) = watch::channel(false);
        let config = Arc::new(config);
        let mut threads = Vec::with_capacity(config.threads);
        for t in 0..config.threads {
            let (config, shared, stop_rx) =
                (Arc::clone(&config), Arc::clone(&shared), stop_rx.clone());
            threads.push(
                std::thread::Builder::new()
                    .name(format!("ws-clients-{t}"))
                    .spawn(move || thread_main(t, &config, shared, stop_rx))?,
            );
        }
        Ok(Fleet {
            shared,
            stop,
            threads,
            clients: config.clients,
        })
    }

    /// (subscribed to every channel, failed) connections so far.
    pub fn progress(&self) -> (usize, usize) {
        (
            self.shared.subscribed.load(Ordering::Relaxed),
            self.shared.failed.load(Ordering::Relaxed),
        )
    }

    /// Waits until every connection subscribed or failed, or `timeout`; returns the progress.
    pub fn wait_settled(&self, timeout: Duration) -> (usize, usize) {
        let deadline = Instant::now() + timeout;
        loop {
            let (ok, failed) = self.progress();
            if ok + failed >= self.clients || Instant::now() >= deadline {
                return (ok, failed);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Messages with `start_ns <= ts < end_ns` are counted and timed from now on.
    pub fn set_window(&self, start_ns: u64, end_ns: u64) {
        self.shared.window_end_ns.store(end_ns, Ordering::Relaxed);
        self.shared
            .window_start_ns
            .store(start_ns, Ordering::Relaxed);
    }

    /// Closes every connection and merges the threads' numbers.
    pub fn stop(self) -> anyhow::Result<FleetResult> {
        let _ = self.stop.send(true);
        let deadline = Instant::now() + STOP_TIMEOUT;
        let mut states = Vec::with_capacity(self.threads.len());
        for handle in self.threads {
            while !handle.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            anyhow::ensure!(
                handle.is_finished(),
                "a client thread did not stop within {STOP_TIMEOUT:?}"
            );
            let state = handle
                .join()
                .map_err(|_| anyhow::anyhow!("a client thread panicked"))??;
            states.push(state);
        }
        Ok(merge(states))
    }
}

fn merge(states: Vec<ThreadState>) -> FleetResult {
    let mut r = FleetResult {
        histogram: latency_histogram(),
        in_window: Vec::new(),
        endings: Vec::new(),
        counts: Counts::default(),
        error_samples: Vec::new(),
    };
    for s in states {
        // Same bounds on both sides: adding cannot fail.
        let _ = r.histogram.add(&s.histogram);
        for c in s.clients {
            r.in_window.push(c.in_window);
            r.endings.push(c.ending);
        }
        r.counts += s.counts;
        r.error_samples.extend(s.error_samples);
    }
    r.error_samples.truncate(5);
    r
}

/// Latencies in microseconds, 1 us to 60 s, 3 significant digits.
pub fn latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, LATENCY_MAX_US, 3).expect("valid bounds")
}

/// Nanoseconds since the Unix epoch (the clock the server stamps `ts` with).
pub fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

fn thread_main(
    t: usize,
    config: &FleetConfig,
    shared: Arc<Shared>,
    stop: watch::Receiver<bool>,
) -> anyhow::Result<ThreadState> {
    // This thread's connections: every `threads`-th one.
    let mine: Vec<usize> = (t..config.clients).step_by(config.threads).collect();
    let state = Rc::new(RefCell::new(ThreadState {
        clients: vec![ClientRecord::default(); mine.len()],
        histogram: latency_histogram(),
        counts: Counts::default(),
        error_samples: Vec::new(),
    }));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let local = tokio::task::LocalSet::new();
    let permits = Rc::new(Semaphore::new(
        (config.connect_concurrency / config.threads).max(1),
    ));
    let subscribe = Rc::new(subscribe_frames(&config.symbols));
    let config = Rc::new(config.clone());
    local.block_on(&runtime, async {
        let mut tasks = Vec::with_capacity(mine.len());
        for slot in 0..mine.len() {
            let connection = Connection {
                slot,
                config: Rc::clone(&config),
                state: Rc::clone(&state),
                shared: Arc::clone(&shared),
                subscribe: Rc::clone(&subscribe),
            };
            let (permits, stop) = (Rc::clone(&permits), stop.clone());
            tasks.push(tokio::task::spawn_local(connection.run(permits, stop)));
        }
        for task in tasks {
            let _ = task.await;
        }
    });
    drop(local);
    drop(runtime);
    Rc::try_unwrap(state)
        .map(RefCell::into_inner)
        .map_err(|_| anyhow::anyhow!("a connection outlived its thread"))
}

/// The subscribe ops of one connection: quote and trades of each symbol.
fn subscribe_frames(symbols: &[String]) -> Vec<String> {
    let mut frames = Vec::with_capacity(symbols.len() * 2);
    for symbol in symbols {
        for channel in ["quote", "trades"] {
            frames.push(
                serde_json::json!({"op": "subscribe", "channel": channel, "symbol": symbol})
                    .to_string(),
            );
        }
    }
    frames
}

type Socket = tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>;

struct Connection {
    slot: usize,
    config: Rc<FleetConfig>,
    state: Rc<RefCell<ThreadState>>,
    shared: Arc<Shared>,
    subscribe: Rc<Vec<String>>,
}

impl Connection {
    async fn run(self, permits: Rc<Semaphore>, mut stop: watch::Receiver<bool>) {
        let opened = {
            let Ok(_permit) = permits.acquire().await else {
                return;
            };
            tokio::time::timeout(self.config.connect_timeout, self.open()).await
        };
        let mut socket = match opened {
            Ok(Ok(socket)) => socket,
            Ok(Err(e)) => return self.fail(Ending::ConnectFailed(e.to_string())),
            Err(_) => return self.fail(Ending::ConnectFailed("timed out".into())),
        };
        loop {
            tokio::select! {
                biased;
                _ = stop.changed() => {
                    let _ = tokio::time::timeout(CLOSE_TIMEOUT, socket.close(None)).await;
                    return;
                }
                frame = socket.next() => match frame {
                    Some(Ok(Message::Text(text))) => self.on_text(text.as_str()),
                    Some(Ok(Message::Close(frame))) => {
                        let reason = frame
                            .map(|f| format!("{} {}", u16::from(f.code), f.reason))
                            .unwrap_or_else(|| "no reason".into());
                        return self.end(Ending::ClosedByServer(reason));
                    }
                    Some(Ok(_)) => {}
                    Some(Err(e)) => return self.end(Ending::Error(e.to_string())),
                    None => return self.end(Ending::ClosedByServer("end of stream".into())),
                }
            }
        }
    }

    /// TCP connect, the WebSocket handshake, the subscribe ops.
    async fn open(&self) -> anyhow::Result<Socket> {
        let stream = tokio::net::TcpStream::connect(self.config.addr).await?;
        stream.set_nodelay(true)?;
        let url = format!("ws://{}{}", self.config.addr, self.config.path);
        let ws_config = WebSocketConfig::default()
            .read_buffer_size(self.config.read_buffer_bytes)
            .write_buffer_size(0);
        let (mut socket, _) =
            tokio_tungstenite::client_async_with_config(url, stream, Some(ws_config)).await?;
        for frame in self.subscribe.iter() {
            socket.feed(Message::text(frame.as_str())).await?;
        }
        socket.flush().await?;
        Ok(socket)
    }

    fn fail(&self, ending: Ending) {
        self.shared.failed.fetch_add(1, Ordering::Relaxed);
        self.state.borrow_mut().clients[self.slot].ending = Some(ending);
    }

    fn end(&self, ending: Ending) {
        let mut state = self.state.borrow_mut();
        let client = &mut state.clients[self.slot];
        if client.acks < self.subscribe.len() {
            // It never counted as subscribed: count it as failed so the conductor stops waiting.
            self.shared.failed.fetch_add(1, Ordering::Relaxed);
        }
        client.ending = Some(ending);
    }

    fn on_text(&self, text: &str) {
        let now = now_ns();
        let mut state = self.state.borrow_mut();
        let kind = string_field(text, "type").unwrap_or("");
        match kind {
            "quote" | "trade" => {
                let quote = kind == "quote";
                state.counts.data_messages += 1;
                if quote {
                    state.counts.quote_messages += 1;
                    state.counts.quote_bytes += text.len() as u64;
                } else {
                    state.counts.trade_messages += 1;
                    state.counts.trade_bytes += text.len() as u64;
                }
                let Some(ts) = u64_field(text, "ts") else {
                    state.counts.other_frames += 1;
                    return;
                };
                let start = self.shared.window_start_ns.load(Ordering::Relaxed);
                let end = self.shared.window_end_ns.load(Ordering::Relaxed);
                if ts >= start && ts < end {
                    state.clients[self.slot].in_window += 1;
                    if quote {
                        state.counts.window_quotes += 1;
                    } else {
                        state.counts.window_trades += 1;
                    }
                    let us = (now.saturating_sub(ts) / 1_000).clamp(1, LATENCY_MAX_US);
                    // In bounds by the clamp: recording cannot fail.
                    let _ = state.histogram.record(us);
                }
            }
            "subscribed" => {
                let client = &mut state.clients[self.slot];
                client.acks += 1;
                if client.acks == self.subscribe.len() {
                    self.shared.subscribed.fetch_add(1, Ordering::Relaxed);
                }
            }
            "error" => {
                state.counts.error_frames += 1;
                if state.error_samples.len() < 5 {
                    state.error_samples.push(text.chars().take(200).collect());
                }
            }
            _ => state.counts.other_frames += 1,
        }
    }
}

/// The value of `"key":"value"` in a flat JSON object, without parsing the rest (the clients
/// read hundreds of thousands of messages a second on a shared core).
pub fn string_field<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    let at = field_start(text, key)?;
    let rest = text[at..].strip_prefix('"')?;
    rest.find('"').map(|end| &rest[..end])
}

/// The value of `"key":123` in a flat JSON object.
pub fn u64_field(text: &str, key: &str) -> Option<u64> {
    let at = field_start(text, key)?;
    let rest = &text[at..];
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    rest[..digits].parse().ok()
}

/// Where the value of `"key":` starts (after optional spaces).
fn field_start(text: &str, key: &str) -> Option<usize> {
    let pattern = format!("\"{key}\":");
    let at = text.find(&pattern)? + pattern.len();
    let spaces = text[at..].bytes().take_while(|b| *b == b' ').count();
    Some(at + spaces)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_read_from_flat_json() {
        let text = r#"{"type":"quote","symbol":"005930","ts": 1765000000123456789,"bid":1}"#;
        assert_eq!(string_field(text, "type"), Some("quote"));
        assert_eq!(string_field(text, "symbol"), Some("005930"));
        assert_eq!(u64_field(text, "ts"), Some(1_765_000_000_123_456_789));
        assert_eq!(u64_field(text, "missing"), None);
        assert_eq!(string_field(text, "ts"), None);
        assert_eq!(u64_field(r#"{"ts":-5}"#, "ts"), None);
        assert_eq!(u64_field(r#"{"ts":99999999999999999999999}"#, "ts"), None);
    }

    #[test]
    fn every_symbol_gets_both_channels() {
        let frames = subscribe_frames(&["005930".into(), "000660".into()]);
        assert_eq!(frames.len(), 4);
        assert!(frames[1].contains(r#""channel":"trades""#));
        assert!(frames[3].contains(r#""symbol":"000660""#));
    }
}
