//! The HTTP door's WebSocket feeds end to end, on real sockets against an in-process node:
//! a book snapshot then consecutive updates that match the REST book; a forced gap (the
//! fan-out or the client's writes paused through the hub's test hook) repaired by a
//! snapshot and by the client's resync; the private channel of two trading accounts; the
//! access token expiring on an open socket; a client that never reads is closed while
//! another keeps receiving; bad frames answered with numbered errors or a close.

mod support;

use kuku_engine::AccountId;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::http::{Api, funded, limit, login};
use support::ws::{Event, LocalBook, WsClient, metric};
use support::*;
use tungstenite::Message;

const ORDERS: &str = "/api/v1/orders";

fn node_with(tweak: impl FnOnce(&mut kuku_server::config::NodeConfig)) -> TestNode {
    TestNode::start_http_with(|c| {
        c.database_url = Some("none".into());
        tweak(c);
    })
}

fn hub(t: &TestNode) -> Arc<kuku_server::http::ws::hub::Hub> {
    t.http.as_ref().unwrap().ws_hub().expect("ws enabled")
}

/// Waits (bounded) until `cond` holds.
fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Places a limit order; returns the seq of its command.
fn place(api: &Api, key: &str, side: &str, qty: i64, price: i64) -> u64 {
    let r = api.post(ORDERS, Some(key), &limit(SAMSUNG, side, qty, price));
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    r.json()["seq"].as_u64().unwrap()
}

/// A trader with cash and Samsung shares.
fn trader(t: &mut TestNode, owner: &str) -> (u32, Api) {
    let id = funded(t.http_addr(), owner, 1_000_000_000);
    t.give_shares(AccountId(id), 10_000);
    (id, login(t.http_addr(), id))
}

/// Reads book messages into `book` until it reflects `engine_seq`.
fn follow_book(ws: &mut WsClient, book: &mut LocalBook, engine_seq: u64) {
    while book.engine_seq < engine_seq {
        let m =
            ws.next_where(|v| matches!(v["type"].as_str(), Some("book_snapshot" | "book_update")));
        book.apply(&m);
    }
}

fn assert_matches_rest(api: &Api, book: &LocalBook) {
    let rest = api.get(&format!("/api/v1/symbols/{SAMSUNG}/book"));
    assert_eq!(rest.status, 200);
    let (bids, asks) = LocalBook::of_rest(&rest.json());
    assert_eq!(
        (&book.bids, &book.asks),
        (&bids, &asks),
        "the feed's book is not the REST book"
    );
}

#[test]
fn a_book_subscriber_gets_a_snapshot_then_consecutive_updates_and_sees_quotes_and_trades() {
    let mut t = node_with(|_| {});
    let (_, alice) = trader(&mut t, "alice");
    let (_, bob) = trader(&mut t, "bob");
    // A resting order before the subscription: the snapshot must hold it.
    let first = place(&alice, "a0", "buy", 10, 119_000);
    let mut ws = WsClient::connect(t.http_addr());
    for channel in ["quote", "trades", "book"] {
        let r = ws.subscribe(channel, SAMSUNG);
        assert_eq!(r["type"], "subscribed", "{r}");
        assert_eq!(r["channel"], channel);
        assert_eq!(r["symbol"], SAMSUNG);
    }
    let snapshot = ws.next_where(|v| v["type"] == "book_snapshot");
    let mut book = LocalBook::default();
    book.apply(&snapshot);
    assert!(book.engine_seq >= first, "{snapshot}");
    assert!(snapshot["ts"].as_u64().unwrap() > 0);
    assert_eq!(book.bids.first(), Some(&(119_000, 10)), "{snapshot}");
    let mut last = 0;
    for i in 0..12 {
        last = place(&alice, &format!("b{i}"), "buy", 10, 118_000 - 100 * i);
        last = last.max(place(&bob, &format!("s{i}"), "sell", 5, 120_000 + 100 * i));
    }
    // A cross: bob sells into alice's best bid.
    let traded = place(&bob, "x", "sell", 4, 119_000);
    last = last.max(traded);
    let mut trades = Vec::new();
    let mut quotes = Vec::new();
    while book.engine_seq < last || trades.is_empty() {
        let m = ws.next();
        match m["type"].as_str() {
            Some("book_snapshot" | "book_update") => book.apply(&m),
            Some("trade") => trades.push(m),
            Some("quote") => quotes.push(m),
            _ => panic!("unexpected {m}"),
        }
    }
    assert_eq!(book.jumps, 0, "no gap without back-pressure");
    // 11 bid and 10 ask levels enter the top ten (the 11th and 12th ask do not), one is hit.
    assert!(book.updates >= 20, "{book:?}");
    assert_eq!(book.bids.len(), 10, "ten levels: {book:?}");
    assert_eq!(book.bids[0], (119_000, 6));
    assert_matches_rest(&alice, &book);
    let trade = &trades[0];
    assert_eq!(
        (trade["price"].as_i64(), trade["qty"].as_i64()),
        (Some(119_000), Some(4))
    );
    assert_eq!(trade["side"], "sell");
    assert_eq!(trade["source"], "kuku");
    assert!(trade["ts"].as_u64().unwrap() > 0);
    let q = quotes.last().expect("quotes");
    assert_eq!(q["symbol"], SAMSUNG);
    assert!(
        q.get("bid").is_some() && q.get("ask").is_some() && q.get("last").is_some(),
        "{q}"
    );
    // A resync answers a snapshot equal to the book kept from the updates.
    ws.send(json!({"op": "resync", "channel": "book", "symbol": SAMSUNG}));
    let again = ws.next_where(|v| v["type"] == "book_snapshot");
    let mut copy = book.clone();
    copy.apply(&again);
    assert_eq!(
        (copy.seq, &copy.bids, &copy.asks),
        (book.seq, &book.bids, &book.asks)
    );
    // Unsubscribed: no more book messages.
    ws.send(json!({"op": "unsubscribe", "channel": "book", "symbol": SAMSUNG, "id": 5}));
    let r = ws.next_where(|v| v["type"] == "unsubscribed");
    assert_eq!(r["id"], 5);
}

#[test]
fn a_forced_gap_is_seen_as_a_seq_jump_and_the_resync_gives_the_consistent_book() {
    let mut t = node_with(|c| {
        c.http.ws.feed_queue_max = 2;
        c.http.ws.queue_frames_max = 4;
        c.http.ws.slow_overflows_max = 1_000_000;
    });
    let (_, alice) = trader(&mut t, "alice");
    let mut ws = WsClient::connect(t.http_addr());
    assert_eq!(ws.subscribe("book", SAMSUNG)["type"], "subscribed");
    let mut book = LocalBook::default();
    book.apply(&ws.next_where(|v| v["type"] == "book_snapshot"));
    let hub = hub(&t);

    // 1. The fan-out stalls: its queue (2) fills and the feed handler drops updates, then
    // sends a snapshot instead.
    hub.pause(false, true);
    let mut last = 0;
    for i in 0..20 {
        // Each a new best bid: every order changes the top ten.
        last = place(&alice, &format!("f{i}"), "buy", 1, 110_000 + 100 * i);
    }
    wait_until("feed drops", || {
        metric(&t, "kuku_ws_feed_dropped_total") > 0
    });
    hub.pause(false, false);
    follow_book(&mut ws, &mut book, last);
    assert!(book.jumps >= 1, "the client saw no seq jump: {book:?}");
    assert_matches_rest(&alice, &book);

    // 2. The client's writes stall: its queue (4) overflows, its pending updates are
    // conflated into one snapshot when it drains.
    let jumps = book.jumps;
    hub.pause(true, false);
    for i in 0..20 {
        // Each a new best ask: every order changes the top ten.
        last = place(&alice, &format!("w{i}"), "sell", 1, 132_000 - 100 * i);
    }
    wait_until("conflation", || {
        metric(&t, "kuku_ws_messages_dropped_total") > 0
    });
    assert!(metric(&t, "kuku_ws_queue_depth_max") <= 4);
    hub.pause(false, false);
    follow_book(&mut ws, &mut book, last);
    assert!(
        book.jumps > jumps,
        "no snapshot replaced the conflated updates: {book:?}"
    );
    assert_matches_rest(&alice, &book);

    // 3. The client's own resync returns the same book.
    ws.send(json!({"op": "resync", "channel": "book", "symbol": SAMSUNG}));
    let snapshot = ws.next_where(|v| v["type"] == "book_snapshot");
    let mut copy = book.clone();
    copy.apply(&snapshot);
    assert_eq!((&copy.bids, &copy.asks), (&book.bids, &book.asks));
    assert!(metric(&t, "kuku_ws_book_resyncs_total") >= 2);
}

fn auth(ws: &mut WsClient, api: &Api) -> Value {
    ws.send(json!({"op": "auth", "token": api.bearer.as_deref().unwrap(), "id": "a"}));
    ws.next_where(|v| v["id"] == "a")
}

#[test]
fn the_account_channel_sees_only_its_own_account() {
    let mut t = node_with(|_| {});
    let (alice_id, alice) = trader(&mut t, "alice");
    let (bob_id, bob) = trader(&mut t, "bob");
    let (carol_id, carol) = trader(&mut t, "carol");
    let mut sockets = Vec::new();
    for api in [&alice, &bob, &carol] {
        let mut ws = WsClient::connect(t.http_addr());
        // Not before auth.
        let r = ws.subscribe("account", "");
        assert_eq!(r["code"], 9076, "{r}");
        let r = auth(&mut ws, api);
        assert_eq!(r["type"], "authenticated", "{r}");
        let r = ws.subscribe("account", "");
        assert_eq!(r["type"], "subscribed", "{r}");
        sockets.push(ws);
    }
    place(&alice, "a1", "buy", 7, 119_900);
    let seq = place(&bob, "b1", "sell", 7, 119_900);
    for (ws, (me, other)) in sockets
        .iter_mut()
        .zip([(alice_id, bob_id), (bob_id, alice_id)])
    {
        let mut seen = Vec::new();
        let execution = ws.next_where(|v| {
            seen.push(v.clone());
            v["type"] == "execution"
        });
        assert_eq!(execution["qty"], 7);
        assert_eq!(execution["price"], 119_900);
        let balance = ws.next_where(|v| {
            seen.push(v.clone());
            v["type"] == "balance"
        });
        assert!(balance["cash"].as_i64().is_some(), "{balance}");
        while let Some(Event::Json(v)) = ws.next_event(Duration::from_millis(300)) {
            seen.push(v);
        }
        assert!(
            seen.iter()
                .any(|v| v["type"] == "order" && v["status"] == "accepted")
        );
        assert!(seen.iter().any(|v| v["type"] == "position"));
        for v in &seen {
            assert_eq!(v["account"], me, "account {me} was sent {v}");
            assert_ne!(v["account"], other);
            assert!(v["engine_seq"].as_u64().unwrap() <= seq);
        }
    }
    // Carol did nothing: her socket carries nothing of theirs.
    let carol_ws = &mut sockets[2];
    while let Some(Event::Json(v)) = carol_ws.next_event(Duration::from_millis(300)) {
        assert_eq!(v["account"], carol_id, "carol was sent {v}");
    }
    // Alice cannot bind her socket to bob's token.
    let r = auth(&mut sockets[0], &bob);
    assert_eq!(r["code"], 9079, "{r}");
}

/// A token of `account` expiring at `exp` (signed with the test node's JWT key).
fn token(account: u32, exp: u64) -> String {
    let claims = json!({"sub": account.to_string(), "iss": "kuku", "iat": exp - 1, "exp": exp});
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(&JWT_KEY).unwrap(),
    )
    .unwrap()
}

fn now_s() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[test]
fn an_expiring_token_closes_the_socket_unless_a_fresh_one_comes_first() {
    let mut t = node_with(|c| c.http.token_ttl_s = 2);
    let (alice_id, _) = trader(&mut t, "alice");
    // The door's own short-lived tokens work.
    let api = login(t.http_addr(), alice_id);
    let mut short = WsClient::connect(t.http_addr());
    assert_eq!(auth(&mut short, &api)["type"], "authenticated");
    assert_eq!(short.subscribe("account", "")["type"], "subscribed");
    let exp = now_s() + 3;
    let mut renewed = WsClient::connect(t.http_addr());
    renewed.send(json!({"op": "auth", "token": token(alice_id, exp), "id": 1}));
    assert_eq!(renewed.next_where(|v| v["id"] == 1)["exp"], exp);
    assert_eq!(renewed.subscribe("account", "")["type"], "subscribed");
    renewed.send(json!({"op": "auth", "token": token(alice_id, exp + 30), "id": 2}));
    assert_eq!(renewed.next_where(|v| v["id"] == 2)["exp"], exp + 30);

    let (seen, close) = short.until_closed();
    let (code, reason) = close.expect("a close frame");
    assert_eq!(code, 4078, "{reason}");
    assert!(reason.contains("TokenExpired"), "{reason}");
    assert!(seen.iter().any(|v| v["code"] == 9078), "{seen:?}");
    assert!(metric(&t, "kuku_ws_token_expired_closes_total") >= 1);
    // Past the first token's expiry, the renewed socket is still open and answers.
    while now_s() <= exp {
        std::thread::sleep(Duration::from_millis(100));
    }
    renewed.send(json!({"op": "ping", "id": 3}));
    assert_eq!(renewed.next_where(|v| v["id"] == 3)["type"], "pong");
    // An expired token is refused outright.
    renewed.send(json!({"op": "auth", "token": token(alice_id, now_s() - 5), "id": 4}));
    assert_eq!(renewed.next_where(|v| v["id"] == 4)["code"], 9077);
    // The largest expiry a token can carry is accepted, not a crash.
    renewed.send(json!({"op": "auth", "token": token(alice_id, u64::MAX), "id": 5}));
    assert_eq!(renewed.next_where(|v| v["id"] == 5)["exp"], u64::MAX);
    renewed.send(json!({"op": "ping", "id": 6}));
    assert_eq!(renewed.next_where(|v| v["id"] == 6)["type"], "pong");
}

#[test]
fn a_client_that_never_reads_is_closed_and_the_others_keep_receiving() {
    let t = node_with(|c| {
        c.http.ws.queue_frames_max = 1_024;
        c.http.ws.send_timeout_ms = 2_000;
    });
    let mut reader = WsClient::connect(t.http_addr());
    let mut sleeper = WsClient::connect(t.http_addr());
    for ws in [&mut reader, &mut sleeper] {
        assert_eq!(ws.subscribe("trades", SAMSUNG)["type"], "subscribed");
    }
    let service = Arc::clone(&t.node.as_ref().unwrap().market_data);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    // The feeder stays at most 500 ticks ahead of the reader, so however the machine
    // schedules the reader it never lags by more than its queue; the sleeper lags by all.
    let read = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let feeding = {
        let stop = Arc::clone(&stop);
        let read = Arc::clone(&read);
        std::thread::spawn(move || {
            let code = kuku_engine::SymbolCode::new(SAMSUNG).unwrap();
            let t0 = 1_796_601_600_000_000_000u64;
            let mut sent = 0u64;
            let deadline = Instant::now() + Duration::from_secs(60);
            // Bounded: 400,000 ticks or 60 s.
            while !stop.load(std::sync::atomic::Ordering::Relaxed)
                && sent < 400_000
                && Instant::now() < deadline
            {
                let batch: Vec<_> = (0..50)
                    .map(|i| {
                        kuku_marketdata::MarketEvent::Tick(kuku_marketdata::Tick {
                            symbol: code,
                            ts_ns: kuku_marketdata::TimestampNs(t0 + sent + i),
                            price: kuku_engine::Price(120_000),
                            qty: kuku_engine::Qty(1),
                            aggressor: kuku_engine::Side::Buy,
                        })
                    })
                    .collect();
                let mut candles = Vec::new();
                service.ingest(&batch, 0, &mut candles);
                sent += 50;
                while sent > read.load(std::sync::atomic::Ordering::Relaxed) + 500
                    && Instant::now() < deadline
                    && !stop.load(std::sync::atomic::Ordering::Relaxed)
                {
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
            sent
        })
    };
    let mut received = 0u64;
    let deadline = Instant::now() + Duration::from_secs(60);
    while metric(&t, "kuku_ws_slow_closes_total") == 0 {
        assert!(
            Instant::now() < deadline,
            "the sleeping client was never closed"
        );
        for _ in 0..100 {
            match reader.next_event(Duration::from_millis(50)) {
                Some(Event::Json(v)) => {
                    assert_eq!(v["type"], "trade", "{v}");
                    received += 1;
                    read.store(received, std::sync::atomic::Ordering::Relaxed);
                }
                Some(Event::Closed(f)) => panic!("the reader was closed: {f:?}"),
                None => break,
            }
        }
    }
    let at_close = received;
    // The reader keeps receiving after the sleeper was closed.
    while received < at_close + 1_000 {
        match reader.next_event(Duration::from_secs(10)) {
            Some(Event::Json(v)) => {
                assert_eq!(v["type"], "trade", "{v}");
                received += 1;
                read.store(received, std::sync::atomic::Ordering::Relaxed);
            }
            other => panic!("the reader stopped receiving: {other:?}"),
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    feeding.join().unwrap();
    wait_until("the sleeper's connection to go", || {
        metric(&t, "kuku_ws_connections") == 1
    });
    assert!(metric(&t, "kuku_ws_queue_depth_max") <= 1_024);
}

fn error_of(ws: &mut WsClient, frame: Message) -> Value {
    ws.send_raw(frame);
    ws.next_where(|v| v["type"] == "error")
}

#[test]
fn bad_frames_get_numbered_errors_or_a_close_with_a_reason_and_never_a_crash() {
    let t = node_with(|c| {
        c.http.ws.subscriptions_max = 3;
        c.http.ws.bad_frames_max = 12;
        c.http.ws.connections_max = 4;
    });
    let addr = t.http_addr();
    let mut ws = WsClient::connect(addr);
    let text = |s: &str| Message::Text(s.to_owned().into());
    let cases: [(&str, u64); 11] = [
        ("garbage", 9070),
        ("[1,2,3]", 9070),
        (r#"{"op":"fly"}"#, 9070),
        (r#"{"channel":"quote"}"#, 9070),
        (
            r#"{"op":"subscribe","channel":"nope","symbol":"005930"}"#,
            9072,
        ),
        (
            r#"{"op":"subscribe","channel":"quote","symbol":"!!"}"#,
            9073,
        ),
        (
            r#"{"op":"subscribe","channel":"quote","symbol":"ABCDEFGHIJKLM"}"#,
            9073,
        ),
        (
            r#"{"op":"subscribe","channel":"quote","symbol":"ZZZZZZ"}"#,
            9073,
        ),
        (
            r#"{"op":"subscribe","channel":"candles","symbol":"005930","interval":"7m"}"#,
            9074,
        ),
        (
            r#"{"op":"unsubscribe","channel":"trades","symbol":"005930"}"#,
            9082,
        ),
        (r#"{"op":"auth","token":"not.a.jwt"}"#, 9077),
    ];
    for (frame, code) in cases {
        let e = error_of(&mut ws, text(frame));
        assert_eq!(e["code"], code, "{frame} -> {e}");
        assert!(e["message"].as_str().is_some_and(|m| !m.is_empty()), "{e}");
    }
    let e = error_of(&mut ws, Message::Binary(vec![1, 2, 3].into()));
    assert_eq!(e["code"], 9070);
    // Extreme ids are echoed or refused, never a crash.
    ws.send(json!({"op": "ping", "id": u64::MAX}));
    assert_eq!(ws.next_where(|v| v["type"] == "pong")["id"], u64::MAX);
    ws.send(json!({"op": "ping", "id": -1.5e300}));
    assert_eq!(ws.next_where(|v| v["type"] == "pong")["id"], -1.5e300);
    // The 13th refused frame closes the socket.
    let (_, close) = {
        ws.send_raw(text("garbage"));
        ws.until_closed()
    };
    assert_eq!(close.expect("a close").0, 4083);

    // Too many subscriptions: closed with a reason.
    let mut ws = WsClient::connect(addr);
    for channel in ["quote", "trades", "book"] {
        assert_eq!(ws.subscribe(channel, SAMSUNG)["type"], "subscribed");
    }
    ws.send(json!({"op": "subscribe", "channel": "candles", "symbol": SAMSUNG, "interval": "1m"}));
    let (seen, close) = ws.until_closed();
    let (code, reason) = close.expect("a close");
    assert_eq!(code, 4075, "{reason}");
    assert!(seen.iter().any(|v| v["code"] == 9075), "{seen:?}");

    // A huge frame: closed with 4071.
    let mut ws = WsClient::connect(addr);
    ws.send_raw(text(&format!(
        r#"{{"op":"ping","pad":"{}"}}"#,
        "x".repeat(10_000)
    )));
    let (_, close) = ws.until_closed();
    assert_eq!(close.expect("a close").0, 4071);

    // Past connections_max the upgrade is refused with 503 and code 9081.
    let held: Vec<_> = (0..4).map(|_| WsClient::connect(addr)).collect();
    wait_until("four connections", || {
        metric(&t, "kuku_ws_connections") == 4
    });
    match WsClient::try_connect(addr) {
        Err(tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 503);
            let body: Value = serde_json::from_slice(response.body().as_deref().unwrap()).unwrap();
            assert_eq!(body["code"], 9081, "{body}");
        }
        Err(e) => panic!("expected a 503, got {e}"),
        Ok(_) => panic!("a fifth connection was accepted"),
    }
    drop(held);
    wait_until("the connections to go", || {
        metric(&t, "kuku_ws_connections") == 0
    });
    // The door still serves.
    let mut ws = WsClient::connect(addr);
    ws.send(json!({"op": "ping"}));
    assert_eq!(ws.next()["type"], "pong");
    assert!(metric(&t, "kuku_ws_bad_frames_total") >= 13);
}

#[test]
fn the_market_datas_quotes_ticks_and_candles_reach_their_channels() {
    use kuku_marketdata::{Interval, Level, Levels, MarketEvent, Quote, Tick, TimestampNs};
    let t = node_with(|_| {});
    let mut ws = WsClient::connect(t.http_addr());
    assert_eq!(ws.subscribe("quote", SAMSUNG)["type"], "subscribed");
    assert_eq!(ws.subscribe("trades", SAMSUNG)["type"], "subscribed");
    ws.send(json!({"op": "subscribe", "channel": "candles", "symbol": SAMSUNG, "interval": "1m", "id": 9}));
    let r = ws.next_where(|v| v["id"] == 9);
    assert_eq!(
        (r["type"].as_str(), r["interval"].as_str()),
        (Some("subscribed"), Some("1m"))
    );
    let code = kuku_engine::SymbolCode::new(SAMSUNG).unwrap();
    let t0 = Interval::M1
        .start_of(TimestampNs(1_796_601_600_000_000_000))
        .0;
    let quote = Quote {
        symbol: code,
        ts_ns: TimestampNs(t0),
        bids: Levels::from_slice(&[Level::new(119_800, 100), Level::new(119_700, 50)]).unwrap(),
        asks: Levels::from_slice(&[Level::new(120_000, 70)]).unwrap(),
        last_trade: None,
    };
    let tick = |ts: u64, price: i64| {
        MarketEvent::Tick(Tick {
            symbol: code,
            ts_ns: TimestampNs(ts),
            price: kuku_engine::Price(price),
            qty: kuku_engine::Qty(3),
            aggressor: kuku_engine::Side::Sell,
        })
    };
    let before = kuku_server::pipeline::now_ns();
    let service = &t.node.as_ref().unwrap().market_data;
    service.ingest(
        &[
            MarketEvent::Quote(quote),
            tick(t0 + 1, 119_900),
            tick(t0 + 60_000_000_001, 120_000),
        ],
        0,
        &mut Vec::new(),
    );
    let q = ws.next_where(|v| v["type"] == "quote");
    assert_eq!(q["source"], "market");
    assert_eq!(
        (q["bid"].as_i64(), q["ask"].as_i64()),
        (Some(119_800), Some(120_000))
    );
    assert_eq!(q["bids"], json!([[119_800, 100], [119_700, 50]]));
    assert!(q["ts"].as_u64().unwrap() >= before);
    let trade = ws.next_where(|v| v["type"] == "trade");
    assert_eq!(
        (trade["price"].as_i64(), trade["qty"].as_i64()),
        (Some(119_900), Some(3))
    );
    assert_eq!(
        (trade["source"].as_str(), trade["side"].as_str()),
        (Some("market"), Some("sell"))
    );
    // The second tick opens the next minute: the first candle closes.
    let closed = ws.next_where(|v| v["type"] == "candle" && v["closed"] == true);
    assert_eq!(closed["interval"], "1m");
    assert_eq!(closed["start_ns"].as_u64(), Some(t0));
    assert_eq!(
        (closed["open"].as_i64(), closed["volume"].as_i64()),
        (Some(119_900), Some(3))
    );
    // WebSocket-level pings are answered too.
    ws.send_raw(Message::Ping(vec![7].into()));
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        assert!(Instant::now() < deadline, "no pong");
        match ws.socket.read() {
            Ok(Message::Pong(p)) => {
                assert_eq!(&p[..], &[7]);
                break;
            }
            Ok(_) => {}
            Err(tungstenite::Error::Io(_)) => {}
            Err(e) => panic!("{e}"),
        }
    }
}

#[test]
fn ws_counters_are_in_the_metrics_and_shutdown_closes_with_a_reason() {
    let mut t = node_with(|_| {});
    let mut ws = WsClient::connect(t.http_addr());
    assert_eq!(ws.subscribe("book", SAMSUNG)["type"], "subscribed");
    ws.next_where(|v| v["type"] == "book_snapshot");
    let mut sources = kuku_server::metrics::MetricsSources::of(t.node.as_ref().unwrap(), None);
    sources.ws = t.http.as_ref().unwrap().ws_metrics();
    let text = kuku_server::metrics::render(&sources);
    for line in [
        "kuku_ws_connections 1",
        "kuku_ws_subscriptions 1",
        "kuku_ws_messages_sent_total 2",
        "kuku_ws_slow_closes_total 0",
        "kuku_ws_queued_frames 0",
    ] {
        assert!(
            text.contains(&format!("\n{line}\n")),
            "{line} not in {text}"
        );
    }
    t.stop();
    let (_, close) = ws.until_closed();
    let (code, reason) = close.expect("a close frame");
    assert_eq!(code, 4084, "{reason}");
    assert!(reason.contains("ShuttingDown"), "{reason}");
}

#[test]
fn a_silent_client_is_closed_after_the_idle_timeout() {
    let t = node_with(|c| {
        c.http.ws.ping_interval_s = 1;
        c.http.ws.idle_timeout_s = 2;
    });
    let mut talker = WsClient::connect(t.http_addr());
    let mut silent = WsClient::connect(t.http_addr());
    // The silent client reads nothing (so it answers no ping) for longer than the timeout.
    let quiet_until = Instant::now() + Duration::from_secs(4);
    while Instant::now() < quiet_until {
        talker.send(json!({"op": "ping"}));
        assert_eq!(talker.next_where(|v| v["type"] == "pong")["type"], "pong");
        std::thread::sleep(Duration::from_millis(500));
    }
    let (_, close) = silent.until_closed();
    let (code, reason) = close.expect("a close frame");
    assert_eq!(code, 4085, "{reason}");
    talker.send(json!({"op": "ping", "id": "still"}));
    assert_eq!(talker.next_where(|v| v["id"] == "still")["type"], "pong");
}
