//! Memory stays bounded with a thousand slow WebSocket clients: every client's writes are
//! held (the hub's test hook: to the server, each looks like a client that does not read)
//! while quotes and book changes pour in; no connection's queue ever exceeds
//! `queue_frames_max`, the total queued stays below connections x bound, the excess is
//! dropped (quotes) or conflated (book updates), and once the clients read again their books
//! are consistent with the REST book.

mod support;

use kuku_engine::{AccountId, SymbolCode};
use kuku_marketdata::{Level, Levels, MarketEvent, Quote, TimestampNs};
use serde_json::json;
use std::time::{Duration, Instant};
use support::http::{funded, limit, login};
use support::ws::{LocalBook, WsClient, metric};
use support::*;

const CLIENTS: usize = 1_000;
const QUEUE: u64 = 16;

fn assert_bounded(t: &TestNode) {
    let depth = metric(t, "kuku_ws_queue_depth_max");
    let queued = metric(t, "kuku_ws_queued_frames");
    assert!(
        depth <= QUEUE,
        "a queue held {depth} frames (bound {QUEUE})"
    );
    assert!(
        queued <= CLIENTS as u64 * QUEUE,
        "{queued} frames queued (bound {})",
        CLIENTS as u64 * QUEUE
    );
}

#[test]
fn a_thousand_slow_clients_stay_within_their_queue_bounds() {
    let mut t = TestNode::start_http_with(|c| {
        c.database_url = Some("none".into());
        c.http.ws.queue_frames_max = QUEUE as usize;
        c.http.ws.slow_overflows_max = 1_000_000;
        c.http.ws.connections_max = CLIENTS + 10;
    });
    let addr = t.http_addr();
    let id = funded(addr, "alice", 1_000_000_000);
    t.give_shares(AccountId(id), 10_000);
    let alice = login(addr, id);
    let mut clients: Vec<WsClient> = (0..CLIENTS).map(|_| WsClient::connect(addr)).collect();
    for ws in &mut clients {
        ws.send(json!({"op": "subscribe", "channel": "quote", "symbol": SAMSUNG}));
        ws.send(json!({"op": "subscribe", "channel": "book", "symbol": SAMSUNG}));
    }
    let mut books: Vec<LocalBook> = Vec::with_capacity(CLIENTS);
    for ws in &mut clients {
        let mut book = LocalBook::default();
        book.apply(&ws.next_where(|v| v["type"] == "book_snapshot"));
        books.push(book);
    }
    assert_eq!(metric(&t, "kuku_ws_connections"), CLIENTS as u64);
    assert_eq!(metric(&t, "kuku_ws_subscriptions"), 2 * CLIENTS as u64);

    let hub = t.http.as_ref().unwrap().ws_hub().unwrap();
    hub.pause(true, false);
    let service = &t.node.as_ref().unwrap().market_data;
    let code = SymbolCode::new(SAMSUNG).unwrap();
    for i in 0..100i64 {
        let quote = Quote {
            symbol: code,
            ts_ns: TimestampNs(1_796_601_600_000_000_000 + i as u64),
            bids: Levels::from_slice(&[Level::new(119_000 - 100 * (i % 5), 10)]).unwrap(),
            asks: Levels::from_slice(&[Level::new(120_000 + 100 * (i % 5), 10)]).unwrap(),
            last_trade: None,
        };
        service.ingest(&[MarketEvent::Quote(quote)], 0, &mut Vec::new());
        assert_bounded(&t);
    }
    let mut last = 0;
    for i in 0..30 {
        let r = alice.post(
            "/api/v1/orders",
            Some(&format!("o{i}")),
            &limit(SAMSUNG, "buy", 1, 110_000 + 100 * i),
        );
        assert_eq!(r.status, 201);
        last = r.json()["seq"].as_u64().unwrap();
        assert_bounded(&t);
    }
    // Every book update reached the fan-out and was queued, dropped or conflated.
    let deadline = Instant::now() + Duration::from_secs(60);
    while metric(&t, "kuku_ws_feed_queue_depth") > 0 {
        assert!(
            Instant::now() < deadline,
            "the fan-out never drained its queue"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_bounded(&t);
    assert!(metric(&t, "kuku_ws_messages_dropped_total") >= CLIENTS as u64 * 100);
    assert_eq!(
        metric(&t, "kuku_ws_connections"),
        CLIENTS as u64,
        "no one was closed"
    );

    hub.pause(false, false);
    // Every client drains and ends with the REST book (snapshots replaced what was dropped).
    let rest = alice.get(&format!("/api/v1/symbols/{SAMSUNG}/book"));
    let (bids, asks) = LocalBook::of_rest(&rest.json());
    for (ws, book) in clients.iter_mut().zip(&mut books) {
        while book.engine_seq < last {
            let m = ws.next_where(|v| {
                matches!(v["type"].as_str(), Some("book_snapshot" | "book_update"))
            });
            book.apply(&m);
        }
        assert_eq!((&book.bids, &book.asks), (&bids, &asks));
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while metric(&t, "kuku_ws_queued_frames") > 0 {
        assert!(Instant::now() < deadline, "queues never drained");
        std::thread::sleep(Duration::from_millis(10));
    }
    drop(clients);
}
