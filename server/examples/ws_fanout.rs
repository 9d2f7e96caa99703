//! Measures the `/ws` fan-out's cost per feed message against the number of subscribers of
//! its topic (ADR-024): a book update is serialized once and a reference-counted frame is
//! pushed into each subscriber's bounded queue. Queues are drained between rounds, outside
//! the timed part. Prints the median of seven runs per subscriber count, and the ratio to one subscriber.
//!
//! `cargo run --release -p kuku-server --example ws_fanout`

use kuku_engine::SymbolCode;
use kuku_server::http::ws::WsSettings;
use kuku_server::http::ws::feed::{BookMsg, FeedMsg};
use kuku_server::http::ws::hub::{Hub, Topic};
use std::time::Instant;

const MESSAGES: u64 = 20_000;
const ROUND: u64 = 500;
const RUNS: usize = 7;

fn update(symbol: SymbolCode, seq: u64) -> FeedMsg {
    FeedMsg::Book(BookMsg {
        symbol,
        ts: 1,
        seq,
        engine_seq: seq,
        snapshot: false,
        bids: vec![(119_900 - (seq as i64 % 10) * 100, 10 + seq as i64)],
        asks: vec![(120_000, 0)],
    })
}

/// Nanoseconds per message delivered to `subscribers` connections.
fn run(subscribers: usize) -> f64 {
    let hub = Hub::new(WsSettings {
        queue_frames_max: 1_024,
        connections_max: subscribers.max(1),
        ..WsSettings::default()
    });
    let symbol = SymbolCode::new("005930").expect("a code");
    let outboxes: Vec<_> = (0..subscribers)
        .map(|_| hub.open().expect("room"))
        .collect();
    for o in &outboxes {
        hub.subscribe(o, Topic::Book(symbol), String::new());
    }
    let mut sink = Vec::new();
    let drain = |sink: &mut Vec<_>| {
        for o in &outboxes {
            sink.clear();
            o.take(usize::MAX, sink);
        }
    };
    drain(&mut sink);
    let mut timed = std::time::Duration::ZERO;
    let mut seq = 0;
    while seq < MESSAGES {
        let start = Instant::now();
        for _ in 0..ROUND {
            seq += 1;
            hub.deliver(update(symbol, seq));
        }
        timed += start.elapsed();
        drain(&mut sink);
    }
    timed.as_nanos() as f64 / MESSAGES as f64
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    println!(
        "subscribers | ns per message (median of {RUNS}) | ns per subscriber push | x of 1 subscriber"
    );
    let mut base = f64::NAN;
    for n in [1usize, 10, 100, 1_000] {
        let ns = median((0..RUNS).map(|_| run(n)).collect());
        if n == 1 {
            base = ns;
        }
        let per_push = (ns - base) / (n as f64 - 1.0).max(1.0);
        println!("{n:>11} | {ns:>10.0} | {per_push:>8.1} | {:.2}", ns / base);
    }
}
