//! `kuku-bench ws-baseline-server`: the baseline of `kuku-bench ws`, a bare tokio +
//! tokio-tungstenite WebSocket server run as a child process of the bench.
//!
//! It broadcasts quote and trade messages of the same shapes and sizes as the node's, at the
//! rates the bench measured on the node, through one `tokio::sync::broadcast` channel whose
//! capacity is the node's per-connection queue bound (in bursts, one per node feed step, with
//! `--step-ms`; else evenly spaced); each connection forwards what it
//! subscribed to. A receiver that falls a whole channel behind loses messages (`Lagged(n)`):
//! counted as dropped. Every message's `ts` is stamped when the generator makes it, before it
//! is queued, as the node's feed does.
//!
//! Protocol with the bench: one JSON line on stdout when listening (`{"ws": ..., "pid": ...}`);
//! when stdin reaches its end, one JSON line of counters and exit.

use super::fleet::now_ns;
use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use std::io::BufRead;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::broadcast;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

#[derive(Debug, clap::Args)]
pub struct BaselineServerArgs {
    /// Symbols, comma separated.
    #[arg(long, value_delimiter = ',', required = true)]
    pub symbols: Vec<String>,
    /// Quote messages per second over all symbols.
    #[arg(long)]
    pub quote_rate: f64,
    /// Trade messages per second over all symbols.
    #[arg(long)]
    pub trade_rate: f64,
    /// Bytes of each quote message.
    #[arg(long, default_value_t = 200)]
    pub quote_bytes: usize,
    /// Bytes of each trade message.
    #[arg(long, default_value_t = 150)]
    pub trade_bytes: usize,
    /// The broadcast channel's capacity: the node's per-connection queue bound.
    #[arg(long, default_value_t = 1_024)]
    pub queue: usize,
    /// Worker threads of the server's runtime.
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
    /// Each socket's read buffer.
    #[arg(long, default_value_t = 4_096)]
    pub read_buffer_bytes: usize,
    /// Emit in bursts, one every this many milliseconds (the node's feed step: a step's
    /// quotes and ticks reach the clients together); 0 spaces the messages evenly.
    #[arg(long, default_value_t = 0)]
    pub step_ms: u64,
}

/// What the server counts; printed when it stops.
#[derive(Debug, Default)]
struct Counters {
    /// Messages the generator broadcast.
    events: AtomicU64,
    /// Messages written to a connection.
    sent: AtomicU64,
    /// Messages a lagging connection lost (`Lagged(n)`).
    dropped: AtomicU64,
    connections: AtomicU64,
    subscriptions: AtomicU64,
}

/// One broadcast message: which symbol and channel, and the frame.
#[derive(Clone, Debug)]
struct Item {
    symbol: usize,
    trade: bool,
    frame: Utf8Bytes,
}

const RATE_MAX: f64 = 1_000_000.0;

/// Runs the server until stdin ends.
pub fn serve(args: &BaselineServerArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        !args.symbols.is_empty() && args.symbols.len() <= 64,
        "--symbols: 1 to 64"
    );
    anyhow::ensure!(
        (0.0..=RATE_MAX).contains(&args.quote_rate) && (0.0..=RATE_MAX).contains(&args.trade_rate),
        "rates must be between 0 and {RATE_MAX}"
    );
    anyhow::ensure!((1..=1 << 20).contains(&args.queue), "--queue: 1 to 1048576");
    anyhow::ensure!((1..=64).contains(&args.threads), "--threads: 1 to 64");
    anyhow::ensure!(
        (256..=1 << 20).contains(&args.read_buffer_bytes),
        "--read-buffer-bytes: 256 to 1048576"
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads)
        .enable_all()
        .build()?;
    let counters = Arc::new(Counters::default());
    let (tx, _) = broadcast::channel::<Item>(args.queue);
    let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
    let addr = listener.local_addr()?;
    println!(
        "{}",
        json!({"ws": format!("ws://{addr}/ws"), "pid": std::process::id()})
    );
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    // The bench ends the server by closing our stdin.
    std::thread::spawn(move || {
        let mut sink = String::new();
        let mut stdin = std::io::stdin().lock();
        while stdin.read_line(&mut sink).is_ok_and(|n| n > 0) {
            sink.clear();
        }
        let _ = stop_tx.send(());
    });
    let ws_config = WebSocketConfig::default()
        .read_buffer_size(args.read_buffer_bytes)
        .write_buffer_size(0);
    runtime.block_on(async {
        tokio::spawn(generate(
            args.clone_plan(),
            tx.clone(),
            Arc::clone(&counters),
        ));
        let symbols = Arc::new(args.symbols.clone());
        let accept = async {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (rx, counters, symbols) =
                    (tx.subscribe(), Arc::clone(&counters), Arc::clone(&symbols));
                tokio::spawn(async move {
                    let _ = stream.set_nodelay(true);
                    if let Ok(ws) =
                        tokio_tungstenite::accept_async_with_config(stream, Some(ws_config)).await
                    {
                        counters.connections.fetch_add(1, Ordering::Relaxed);
                        connection(ws, rx, &symbols, &counters).await;
                    }
                });
            }
        };
        tokio::select! {
            _ = accept => {}
            _ = stop_rx => {}
        }
    });
    runtime.shutdown_timeout(Duration::from_secs(1));
    let c = &counters;
    println!(
        "{}",
        json!({
            "events": c.events.load(Ordering::Relaxed),
            "sent": c.sent.load(Ordering::Relaxed),
            "dropped": c.dropped.load(Ordering::Relaxed),
            "connections": c.connections.load(Ordering::Relaxed),
            "subscriptions": c.subscriptions.load(Ordering::Relaxed),
        })
    );
    Ok(())
}

/// What the generator needs, owned.
struct Plan {
    symbols: Vec<String>,
    quote_rate: f64,
    trade_rate: f64,
    quote_bytes: usize,
    trade_bytes: usize,
    step: Option<Duration>,
}

impl BaselineServerArgs {
    fn clone_plan(&self) -> Plan {
        Plan {
            symbols: self.symbols.clone(),
            quote_rate: self.quote_rate,
            trade_rate: self.trade_rate,
            quote_bytes: self.quote_bytes,
            trade_bytes: self.trade_bytes,
            step: (self.step_ms > 0).then(|| Duration::from_millis(self.step_ms)),
        }
    }
}

/// One message of the generator: stamped now, broadcast, counted.
fn emit(plan: &Plan, tx: &broadcast::Sender<Item>, counters: &Counters, trade: bool, n: u64) {
    let symbol = (n as usize) % plan.symbols.len();
    let frame = if trade {
        trade_frame(&plan.symbols[symbol], now_ns(), plan.trade_bytes)
    } else {
        quote_frame(&plan.symbols[symbol], now_ns(), plan.quote_bytes)
    };
    counters.events.fetch_add(1, Ordering::Relaxed);
    // No receivers yet is not an error: nobody subscribed.
    let _ = tx.send(Item {
        symbol,
        trade,
        frame: Utf8Bytes::from(frame),
    });
}

/// Every `step`, the step's share of quotes and trades at once (fractions carried over).
async fn generate_in_steps(
    plan: Plan,
    step: Duration,
    tx: broadcast::Sender<Item>,
    counters: Arc<Counters>,
) {
    let mut ticker = tokio::time::interval(step);
    let (mut quotes, mut trades) = (0u64, 0u64);
    let (mut quote_due, mut trade_due) = (0.0f64, 0.0f64);
    loop {
        ticker.tick().await;
        quote_due += plan.quote_rate * step.as_secs_f64();
        trade_due += plan.trade_rate * step.as_secs_f64();
        while quote_due >= 1.0 {
            emit(&plan, &tx, &counters, false, quotes);
            quotes += 1;
            quote_due -= 1.0;
        }
        while trade_due >= 1.0 {
            emit(&plan, &tx, &counters, true, trades);
            trades += 1;
            trade_due -= 1.0;
        }
    }
}

/// Quotes and trades at their rates, the symbols in turn, each stamped and broadcast.
async fn generate(plan: Plan, tx: broadcast::Sender<Item>, counters: Arc<Counters>) {
    if let Some(step) = plan.step {
        return generate_in_steps(plan, step, tx, counters).await;
    }
    let start = tokio::time::Instant::now();
    let period = |rate: f64| (rate > 0.0).then(|| Duration::from_secs_f64(1.0 / rate));
    let (quote_period, trade_period) = (period(plan.quote_rate), period(plan.trade_rate));
    let (mut quotes, mut trades) = (0u64, 0u64);
    loop {
        let due = |n: u64, p: Option<Duration>| p.map(|p| start + p.mul_f64(n as f64));
        let next_quote = due(quotes, quote_period);
        let next_trade = due(trades, trade_period);
        let (trade, at) = match (next_quote, next_trade) {
            (Some(q), Some(t)) if t < q => (true, t),
            (Some(q), _) => (false, q),
            (None, Some(t)) => (true, t),
            (None, None) => return,
        };
        tokio::time::sleep_until(at).await;
        let n = if trade { &mut trades } else { &mut quotes };
        emit(&plan, &tx, &counters, trade, *n);
        *n += 1;
    }
}

/// `{"type":"quote",...,"pad":"  "}` padded to `bytes` (when it is shorter).
pub fn quote_frame(symbol: &str, ts: u64, bytes: usize) -> String {
    let body = json!({
        "type": "quote", "symbol": symbol, "ts": ts,
        "bid": 119_800, "bid_qty": 1_200, "ask": 119_900, "ask_qty": 900, "last": 119_900,
    });
    pad(body, bytes)
}

/// `{"type":"trade",...,"pad":"  "}` padded to `bytes` (when it is shorter).
pub fn trade_frame(symbol: &str, ts: u64, bytes: usize) -> String {
    let body = json!({
        "type": "trade", "symbol": symbol, "ts": ts, "price": 119_900, "qty": 1, "side": "buy",
    });
    pad(body, bytes)
}

fn pad(mut body: serde_json::Value, bytes: usize) -> String {
    let bare = body.to_string().len() + r#","pad":"""#.len();
    body["pad"] = json!(" ".repeat(bytes.saturating_sub(bare)));
    body.to_string()
}

type Socket = tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>;

/// One connection: answers its ops, forwards what it subscribed to, counts losses.
async fn connection(
    mut ws: Socket,
    mut rx: broadcast::Receiver<Item>,
    symbols: &[String],
    counters: &Counters,
) {
    // Subscribed (symbol, channel) pairs: bit 2*symbol for quotes, 2*symbol+1 for trades.
    let mut subscribed: u128 = 0;
    loop {
        tokio::select! {
            item = rx.recv() => match item {
                Ok(item) => {
                    let bit = 1u128 << (2 * item.symbol + usize::from(item.trade));
                    if subscribed & bit == 0 {
                        continue;
                    }
                    if ws.send(Message::Text(item.frame)).await.is_err() {
                        return;
                    }
                    counters.sent.fetch_add(1, Ordering::Relaxed);
                }
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    counters.dropped.fetch_add(n, Ordering::Relaxed);
                }
                Err(broadcast::error::RecvError::Closed) => return,
            },
            frame = ws.next() => match frame {
                Some(Ok(Message::Text(text))) => {
                    let reply = answer(text.as_str(), symbols, &mut subscribed);
                    if reply.contains(r#""type":"subscribed""#) {
                        counters.subscriptions.fetch_add(1, Ordering::Relaxed);
                    }
                    if ws.send(Message::text(reply)).await.is_err() {
                        return;
                    }
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                Some(Ok(_)) => {}
            },
        }
    }
}

/// The reply to one client op: `subscribed`, `pong` or an error.
fn answer(text: &str, symbols: &[String], subscribed: &mut u128) -> String {
    let Ok(op) = serde_json::from_str::<serde_json::Value>(text) else {
        return json!({"type": "error", "code": 1, "message": "not JSON"}).to_string();
    };
    match op["op"].as_str() {
        Some("ping") => json!({"type": "pong", "ts": now_ns()}).to_string(),
        Some("subscribe") => {
            let channel = op["channel"].as_str().unwrap_or("");
            let symbol = op["symbol"].as_str().unwrap_or("");
            let index = symbols.iter().position(|s| s == symbol);
            match (channel, index) {
                ("quote" | "trades", Some(i)) => {
                    *subscribed |= 1u128 << (2 * i + usize::from(channel == "trades"));
                    json!({"type": "subscribed", "channel": channel, "symbol": symbol}).to_string()
                }
                _ => json!({"type": "error", "code": 2, "message": "unknown channel or symbol"})
                    .to_string(),
            }
        }
        _ => json!({"type": "error", "code": 3, "message": "unknown op"}).to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ws_bench::fleet::{string_field, u64_field};

    #[test]
    fn frames_have_the_asked_size_and_the_keys() {
        let q = quote_frame("005930", 1_765_000_000_000_000_000, 300);
        assert_eq!(q.len(), 300);
        assert_eq!(string_field(&q, "type"), Some("quote"));
        assert_eq!(u64_field(&q, "ts"), Some(1_765_000_000_000_000_000));
        let t = trade_frame("000660", 1_765_000_000_000_000_001, 180);
        assert_eq!(t.len(), 180);
        assert_eq!(string_field(&t, "symbol"), Some("000660"));
        // Asked smaller than the bare message: the bare message.
        assert!(trade_frame("000660", 1, 10).len() > 10);
    }

    #[test]
    fn ops_are_answered() {
        let symbols = vec!["005930".to_owned()];
        let mut subs = 0u128;
        let r = answer(
            r#"{"op":"subscribe","channel":"trades","symbol":"005930"}"#,
            &symbols,
            &mut subs,
        );
        assert!(r.contains("subscribed"));
        assert_eq!(subs, 0b10);
        let r = answer(
            r#"{"op":"subscribe","channel":"book","symbol":"005930"}"#,
            &symbols,
            &mut subs,
        );
        assert!(r.contains("error"));
        assert!(answer("garbage", &symbols, &mut subs).contains("not JSON"));
        assert!(answer(r#"{"op":"ping"}"#, &symbols, &mut subs).contains("pong"));
    }
}
