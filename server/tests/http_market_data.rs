//! The market's data and the reference data over the HTTP door, end to end against a live
//! node: candles after a replay of the committed sample match candles computed by hand from
//! the sample's ticks, as do the market's quote and ticks; candles of ingested ticks honour
//! `from`, `to` and `limit`; reference symbols and mappings registered over HTTP reach the
//! database and the running node at once, refused ones write nothing anywhere; a trading
//! token on the admin endpoints is 403; a database outage is 503 (9027 on candles, 9041 on
//! writes, the service unchanged) and a resend after it stores; every numeric parameter at
//! its extremes is a 400 problem and the node goes on answering.

mod support;

use kuku_engine::{Price, Qty, Side, SymbolCode};
use kuku_marketdata::record::RecordReader;
use kuku_marketdata::{Interval, MarketEvent, Tick, TimestampNs};
use kuku_persistence::testkit::{TcpProxy, TestDatabase};
use kuku_persistence::{ConnectOptions, Database, DatabaseUrl};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use support::http::{Api, admin, funded, login};
use support::*;

fn sample() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../data/market-data-sample.jsonl")
}

fn trader(t: &TestNode) -> Api {
    let addr = t.http_addr();
    let account = funded(addr, "reader", 0);
    login(addr, account)
}

fn service(t: &TestNode) -> &kuku_marketdata::MarketData {
    &t.node.as_ref().expect("running").market_data
}

/// A candle as (start_ns, open, high, low, close, volume, trades).
type Ohlcv = (u64, i64, i64, i64, i64, i64, u64);

/// The sample's 1m candles of `symbol`, computed from its ticks.
fn hand_candles(symbol: &str) -> Vec<Ohlcv> {
    let mut reader = RecordReader::open(&sample()).expect("the sample opens");
    let mut candles: BTreeMap<u64, Ohlcv> = BTreeMap::new();
    while let Some(e) = reader.next_event().expect("the sample is valid") {
        let MarketEvent::Tick(tick) = e else { continue };
        if tick.symbol.as_str() != symbol {
            continue;
        }
        let start = Interval::M1.start_of(tick.ts_ns).0;
        let (p, q) = (tick.price.0, tick.qty.0);
        candles
            .entry(start)
            .and_modify(|c| {
                c.2 = c.2.max(p);
                c.3 = c.3.min(p);
                c.4 = p;
                c.5 += q;
                c.6 += 1;
            })
            .or_insert((start, p, p, p, p, q, 1));
    }
    candles.into_values().collect()
}

fn candle_tuple(c: &Value) -> Ohlcv {
    (
        c["start_ns"].as_u64().unwrap(),
        c["open"].as_i64().unwrap(),
        c["high"].as_i64().unwrap(),
        c["low"].as_i64().unwrap(),
        c["close"].as_i64().unwrap(),
        c["volume"].as_i64().unwrap(),
        c["trades"].as_u64().unwrap(),
    )
}

#[test]
fn candles_quote_and_ticks_after_a_replay_of_the_sample_match_the_sample() {
    let t = TestNode::start_http_with(|c| {
        c.feed.enabled = true;
        c.feed.source = format!("replay:{}", sample().display());
        c.feed.speed = 0.0;
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    while service(&t).stats.source_ended.load(Ordering::Acquire) == 0 {
        assert!(Instant::now() < deadline, "the replay did not finish");
        std::thread::sleep(Duration::from_millis(20));
    }
    let api = trader(&t);

    let expected = hand_candles(SAMSUNG);
    assert!(expected.len() >= 2, "the sample spans several minutes");
    let r = api.get("/api/v1/symbols/005930/candles?interval=1m&limit=1000");
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let body = r.json();
    assert_eq!(body["interval"], "1m");
    let served: Vec<_> = body["candles"]
        .as_array()
        .unwrap()
        .iter()
        .map(candle_tuple)
        .collect();
    assert_eq!(served, expected);
    for c in body["candles"].as_array().unwrap() {
        assert_eq!(
            c["end_ns"].as_u64().unwrap() - c["start_ns"].as_u64().unwrap(),
            60_000_000_000
        );
    }
    // limit keeps the newest; from cuts the oldest.
    let r = api.get("/api/v1/symbols/005930/candles?interval=1m&limit=1");
    let newest: Vec<_> = r.json()["candles"]
        .as_array()
        .unwrap()
        .iter()
        .map(candle_tuple)
        .collect();
    assert_eq!(newest, expected[expected.len() - 1..].to_vec());
    let second = expected[1].0;
    let r = api.get(&format!(
        "/api/v1/symbols/005930/candles?interval=1m&from={second}"
    ));
    assert_eq!(
        r.json()["candles"].as_array().unwrap().len(),
        expected.len() - 1
    );

    // The market's last quote and newest ticks are the sample's.
    let mut reader = RecordReader::open(&sample()).unwrap();
    let (mut last_quote, mut ticks) = (None, Vec::new());
    while let Some(e) = reader.next_event().unwrap() {
        match e {
            MarketEvent::Quote(q) if q.symbol.as_str() == SAMSUNG => last_quote = Some(q),
            MarketEvent::Tick(k) if k.symbol.as_str() == SAMSUNG => ticks.push(k),
            _ => {}
        }
    }
    let quote = last_quote.expect("the sample quotes Samsung");
    let r = api.get("/api/v1/symbols/005930/market-quote");
    assert_eq!(r.status, 200);
    let q = r.json();
    assert_eq!(q["ts_ns"].as_u64().unwrap(), quote.ts_ns.0);
    let bids = q["bids"].as_array().unwrap();
    assert_eq!(bids.len(), quote.bids.len());
    assert_eq!(
        bids[0]["price"].as_i64().unwrap(),
        quote.bids.as_slice()[0].price.0
    );
    assert_eq!(
        q["asks"][0]["qty"].as_i64().unwrap(),
        quote.asks.as_slice()[0].qty.0
    );

    let r = api.get("/api/v1/symbols/005930/market-ticks?limit=3");
    assert_eq!(r.status, 200);
    let served = r.json()["ticks"].as_array().unwrap().clone();
    assert_eq!(served.len(), 3.min(ticks.len()));
    let newest = ticks.last().unwrap();
    assert_eq!(served[0]["ts_ns"].as_u64().unwrap(), newest.ts_ns.0);
    assert_eq!(served[0]["price"].as_i64().unwrap(), newest.price.0);
    assert_eq!(served[0]["qty"].as_i64().unwrap(), newest.qty.0);

    // Kuku's own trades are apart: no order traded on Kuku.
    let r = api.get("/api/v1/symbols/005930/trades");
    assert_eq!(r.status, 200);
    assert!(r.json()["trades"].as_array().unwrap().is_empty());
}

fn tick(ts_ns: u64, price: i64, qty: i64) -> MarketEvent {
    MarketEvent::Tick(Tick {
        symbol: SymbolCode::new(SAMSUNG).unwrap(),
        ts_ns: TimestampNs(ts_ns),
        price: Price(price),
        qty: Qty(qty),
        aggressor: Side::Buy,
    })
}

#[test]
fn candles_of_ingested_ticks_honour_interval_from_to_and_limit() {
    let t = TestNode::start_http_with(|c| c.database_url = Some("none".into()));
    let minute = 60_000_000_000_u64;
    // 09:00:00 KST of a trading day: on the 1m, 5m and 1h grids; its day starts at 00:00 KST.
    let day = Interval::D1
        .start_of(TimestampNs(1_796_601_600_000_000_000))
        .0;
    let t0 = day + 9 * 3_600_000_000_000;
    assert_eq!(Interval::H1.start_of(TimestampNs(t0)).0, t0);
    let mut updates = Vec::new();
    service(&t).ingest(
        &[
            tick(t0, 100, 1),
            tick(t0 + 10, 120, 2),
            tick(t0 + minute, 90, 3),
            tick(t0 + 2 * minute + 5, 95, 4),
        ],
        0,
        &mut updates,
    );
    let api = trader(&t);
    let candles = |query: &str| {
        let r = api.get(&format!("/api/v1/symbols/005930/candles?{query}"));
        assert_eq!(
            r.status,
            200,
            "{query}: {}",
            String::from_utf8_lossy(&r.body)
        );
        r.json()["candles"]
            .as_array()
            .unwrap()
            .iter()
            .map(candle_tuple)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        candles("interval=1m"),
        vec![
            (t0, 100, 120, 100, 120, 3, 2),
            (t0 + minute, 90, 90, 90, 90, 3, 1),
            (t0 + 2 * minute, 95, 95, 95, 95, 4, 1),
        ]
    );
    assert_eq!(candles("interval=5m"), vec![(t0, 100, 120, 90, 95, 10, 4)]);
    assert_eq!(candles("interval=1d"), vec![(day, 100, 120, 90, 95, 10, 4)]);
    let to = t0 + 2 * minute;
    assert_eq!(
        candles(&format!("interval=1m&from={}&to={to}", t0 + 1)),
        vec![(t0 + minute, 90, 90, 90, 90, 3, 1)]
    );
    assert_eq!(candles("interval=1m&limit=2").len(), 2);
    assert_eq!(candles("interval=1m&limit=2")[0].0, t0 + minute);
    assert!(candles(&format!("interval=1h&to={t0}")).is_empty());
    // A listed symbol without market trades has no candles; an unknown one is 404.
    let r = api.get("/api/v1/symbols/000660/candles?interval=1m");
    assert_eq!(r.status, 200);
    assert!(r.json()["candles"].as_array().unwrap().is_empty());
    let r = api.get("/api/v1/symbols/NOPE/candles?interval=1m");
    assert_eq!(r.status, 404);
    assert_eq!(
        r.problem_code(),
        u64::from(kuku_engine::RejectReason::UnknownSymbol.code())
    );
    let r = api.get("/api/v1/symbols/NOPE/market-ticks");
    assert_eq!(r.status, 404);
    let r = api.get("/api/v1/symbols/000660/market-quote");
    assert_eq!((r.status, r.problem_code()), (404, 9025));
}

#[test]
fn every_numeric_parameter_at_its_extremes_is_a_400_problem_and_the_node_goes_on() {
    let t = TestNode::start_http_with(|_| {});
    let api = trader(&t);
    let base = "/api/v1/symbols/005930/candles?interval=1m";
    let refused = [
        ("&from=-1", 9020),
        ("&from=18446744073709551616", 9020),
        ("&from=abc", 9020),
        ("&from=", 9020),
        ("&from=1.5", 9020),
        ("&to=-1", 9020),
        ("&to=x", 9020),
        ("&to=0", 9029),
        ("&from=0&to=0", 9029),
        ("&from=5&to=4", 9029),
        ("&from=18446744073709551615", 9029),
        ("&to=18446744073709551615", 9029),
        ("&to=9223372036854775808", 9029),
        ("&limit=0", 9020),
        ("&limit=-1", 9020),
        ("&limit=1001", 9020),
        ("&limit=4294967295", 9020),
        ("&limit=18446744073709551615", 9020),
        ("&limit=ten", 9020),
        ("&limit=1&limit=2", 9020),
        ("&unknown=1", 9020),
    ];
    for (extra, code) in refused {
        let r = api.get(&format!("{base}{extra}"));
        assert_eq!((r.status, r.problem_code()), (400, code), "{extra}");
    }
    for interval in ["", "1M", "2m", "1w", "%00", "1m%20"] {
        let r = api.get(&format!(
            "/api/v1/symbols/005930/candles?interval={interval}"
        ));
        assert_eq!((r.status, r.problem_code()), (400, 9028), "{interval:?}");
    }
    let r = api.get("/api/v1/symbols/005930/candles");
    assert_eq!(
        (r.status, r.problem_code()),
        (400, 9020),
        "interval is required"
    );
    for limit in ["0", "-1", "1001", "18446744073709551615", "x"] {
        let r = api.get(&format!(
            "/api/v1/symbols/005930/market-ticks?limit={limit}"
        ));
        assert_eq!((r.status, r.problem_code()), (400, 9020), "{limit}");
    }
    // The largest accepted values answer.
    let r = api.get(&format!(
        "{base}&from=9223372036854775806&to=9223372036854775807&limit=1000"
    ));
    assert_eq!(r.status, 200);
    assert!(r.json()["candles"].as_array().unwrap().is_empty());
    let r = api.get("/api/v1/symbols/005930/market-ticks?limit=1000");
    assert_eq!(r.status, 200);
    assert_eq!(
        api.get("/api/v1/account").status,
        200,
        "the node still answers"
    );
}

fn samsung_body() -> Value {
    json!({
        "code": "005930",
        "isin": "KR7005930003",
        "name_ko": "삼성전자",
        "name_en": "Samsung Electronics",
        "market": "KOSPI",
    })
}

fn stored(url: &DatabaseUrl) -> (Vec<String>, Vec<String>) {
    let options = ConnectOptions {
        connections_max: 1,
        connect_timeout: Duration::from_secs(5),
        statement_timeout: Duration::from_secs(5),
        migrate: false,
    };
    kuku_persistence::block_on(async {
        let db = Database::connect(url, &options).await.expect("connects");
        let symbols = db.reference_symbols().await.expect("reads");
        let mappings = db.symbol_mappings().await.expect("reads");
        db.close().await;
        (
            symbols
                .iter()
                .map(|s| {
                    format!(
                        "{} {} {} {}",
                        s.code,
                        s.isin.as_str(),
                        s.name_en,
                        s.lot_size.0
                    )
                })
                .collect(),
            mappings
                .iter()
                .map(|m| format!("{} {} {}", m.provider, m.external_code, m.symbol))
                .collect(),
        )
    })
}

#[test]
fn reference_symbols_and_mappings_round_trip_through_http_and_the_database() {
    let db = TestDatabase::mysql();
    let url = db.url().clone();
    let t = TestNode::start_http_with(|c| c.database_url = Some(url.expose().to_owned()));
    let addr = t.http_addr();
    let api = trader(&t);
    let admin = admin(addr);
    let nothing = stored(&url);

    let r = admin.post("/api/v1/admin/reference/symbols", None, &samsung_body());
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json()["tick_rule"], "krx");
    assert_eq!(r.json()["lot_size"], 1);
    assert_eq!(r.json()["status"], "listed");
    let r = admin.post(
        "/api/v1/admin/reference/mappings",
        None,
        &json!({ "provider": "kis", "external_code": "A005930", "symbol": "005930" }),
    );
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));

    // In the database...
    let (symbols, mappings) = stored(&url);
    assert_eq!(symbols.len(), nothing.0.len() + 1);
    assert!(symbols.contains(&"005930 KR7005930003 Samsung Electronics 1".to_owned()));
    assert!(mappings.contains(&"kis A005930 005930".to_owned()));
    // ... and in the running node at once.
    let r = api.get("/api/v1/reference/symbols/005930");
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["name_ko"], "삼성전자");
    assert_eq!(r.json()["isin"], "KR7005930003");
    let r = api.get("/api/v1/reference/resolve?provider=kis&external_code=A005930");
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["symbol"], "005930");
    let r = api.get("/api/v1/reference/symbols?market=KOSPI");
    assert!(
        r.json()["symbols"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["code"] == "005930")
    );
    let r = api.get("/api/v1/reference/symbols?market=KOSDAQ");
    assert!(
        !r.json()["symbols"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["code"] == "005930")
    );
    let r = api.get("/api/v1/reference/mappings?provider=kis");
    assert_eq!(r.json()["mappings"][0]["external_code"], "A005930");
    let r = api.get("/api/v1/reference/mappings?provider=other");
    assert!(r.json()["mappings"].as_array().unwrap().is_empty());
    let r = api.get("/api/v1/reference/markets");
    let codes: Vec<_> = r.json()["markets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["code"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(codes, ["KOSPI", "KOSDAQ"]);

    // A re-registration replaces (a value, so a resend is safe).
    let mut renamed = samsung_body();
    renamed["name_en"] = json!("Samsung Elec");
    renamed["lot_size"] = json!(10);
    assert_eq!(
        admin
            .post("/api/v1/admin/reference/symbols", None, &renamed)
            .status,
        201
    );
    let (symbols, _) = stored(&url);
    assert!(symbols.contains(&"005930 KR7005930003 Samsung Elec 10".to_owned()));
    assert_eq!(
        api.get("/api/v1/reference/symbols/005930").json()["lot_size"],
        10
    );

    // Refused input writes nothing, in the database or the node.
    let before = stored(&url);
    let bad_symbols = [
        ("isin", json!("KR7005930004"), 9032),
        ("isin", json!(""), 9032),
        ("code", json!("00-59"), 9031),
        ("code", json!("ABCDEFGHIJKLM"), 9031),
        ("name_ko", json!(""), 9033),
        ("name_en", json!("x".repeat(65)), 9033),
        ("name_en", json!("a\u{7}b"), 9033),
        ("market", json!("NYSE"), 9030),
        ("tick_rule", json!("fixed:0"), 9035),
        ("tick_rule", json!("fixed:-1"), 9035),
        ("tick_rule", json!("fixed:18446744073709551615"), 9035),
        ("lot_size", json!(0), 9034),
        ("lot_size", json!(-1), 9034),
        ("lot_size", json!(i64::MAX), 9034),
        ("lot_size", json!(u64::MAX), 9020),
        ("lot_size", json!("1"), 9020),
        ("lot_size", json!(1.5), 9020),
        ("status", json!("halted"), 9036),
        ("extra", json!(1), 9020),
    ];
    for (field, value, code) in bad_symbols {
        let mut body = samsung_body();
        body["code"] = json!("000660");
        body["isin"] = json!("KR7000660001");
        body[field] = value.clone();
        let r = admin.post("/api/v1/admin/reference/symbols", None, &body);
        assert_eq!(
            (r.status, r.problem_code()),
            (400, code),
            "{field} = {value}"
        );
    }
    let bad_mappings = [
        (
            json!({ "provider": "KIS", "external_code": "x", "symbol": "005930" }),
            400,
            9037,
        ),
        (
            json!({ "provider": "", "external_code": "x", "symbol": "005930" }),
            400,
            9037,
        ),
        (
            json!({ "provider": "kis", "external_code": "", "symbol": "005930" }),
            400,
            9038,
        ),
        (
            json!({ "provider": "kis", "external_code": "a b", "symbol": "005930" }),
            400,
            9038,
        ),
        (
            json!({ "provider": "kis", "external_code": "x".repeat(33), "symbol": "005930" }),
            400,
            9038,
        ),
        (
            json!({ "provider": "kis", "external_code": "000660", "symbol": "000660" }),
            404,
            9039,
        ),
        (
            json!({ "provider": "kis", "external_code": "x", "symbol": "" }),
            400,
            9031,
        ),
        (
            json!({ "provider": "kis", "external_code": "x" }),
            400,
            9020,
        ),
    ];
    for (body, status, code) in bad_mappings {
        let r = admin.post("/api/v1/admin/reference/mappings", None, &body);
        assert_eq!((r.status, r.problem_code()), (status, code), "{body}");
    }
    assert_eq!(stored(&url), before, "refused requests wrote nothing");
    let r = api.get("/api/v1/reference/symbols/000660");
    assert_eq!((r.status, r.problem_code()), (404, 9039));
    let r = api.get("/api/v1/reference/resolve?provider=kis&external_code=000660");
    assert_eq!((r.status, r.problem_code()), (404, 9040));
    assert_eq!(
        api.get("/api/v1/reference/mappings").json()["mappings"]
            .as_array()
            .unwrap()
            .len(),
        1
    );

    // Reads refuse malformed filters with their codes.
    let r = api.get("/api/v1/reference/symbols?market=NYSE");
    assert_eq!((r.status, r.problem_code()), (400, 9030));
    let r = api.get("/api/v1/reference/mappings?provider=Bad!");
    assert_eq!((r.status, r.problem_code()), (400, 9037));
    let r = api.get("/api/v1/reference/symbols/a-b");
    assert_eq!((r.status, r.problem_code()), (400, 9031));
    let r = api.get("/api/v1/reference/resolve?provider=kis");
    assert_eq!((r.status, r.problem_code()), (400, 9020));

    // A restarted node loads what was registered over HTTP.
    let t = t.restart();
    let samsung = service(&t)
        .reference_symbol(SymbolCode::new(SAMSUNG).unwrap())
        .expect("loaded at start");
    assert_eq!(
        (samsung.name_en.as_str(), samsung.lot_size.0),
        ("Samsung Elec", 10)
    );
    assert_eq!(
        service(&t).resolve("kis", "A005930").map(|c| c.to_string()),
        Some(SAMSUNG.to_owned())
    );
}

#[test]
fn a_trading_token_on_the_admin_reference_endpoints_is_403_and_writes_nothing() {
    let t = TestNode::start_http_with(|_| {});
    let api = trader(&t);
    let r = api.post("/api/v1/admin/reference/symbols", None, &samsung_body());
    assert_eq!((r.status, r.problem_code()), (403, 9004));
    let r = api.post(
        "/api/v1/admin/reference/mappings",
        None,
        &json!({ "provider": "kis", "external_code": "A005930", "symbol": "005930" }),
    );
    assert_eq!((r.status, r.problem_code()), (403, 9004));
    let r = Api::new(t.http_addr()).post("/api/v1/admin/reference/symbols", None, &samsung_body());
    assert_eq!((r.status, r.problem_code()), (401, 9023));
    assert!(
        service(&t)
            .reference_symbol(SymbolCode::new(SAMSUNG).unwrap())
            .is_none()
    );
    assert!(service(&t).mappings(None).is_empty());
}

#[test]
fn a_node_without_a_database_refuses_reference_writes_with_503_and_changes_nothing() {
    let t = TestNode::start_http_with(|c| c.database_url = Some("none".into()));
    let r = admin(t.http_addr()).post("/api/v1/admin/reference/symbols", None, &samsung_body());
    assert_eq!((r.status, r.problem_code()), (503, 9041));
    assert!(service(&t).reference_symbols(None).is_empty());
}

#[test]
fn a_database_outage_is_503_on_candles_and_reference_writes_and_a_resend_after_it_stores() {
    let db = TestDatabase::mysql();
    let proxy = TcpProxy::to_test_mysql();
    let url = db.url_through(&proxy);
    let t = TestNode::start_http_with(|c| {
        c.database_url = Some(url.expose().to_owned());
        c.database.connect_timeout_s = 1;
        c.database.statement_timeout_ms = 1_000;
    });
    let addr = t.http_addr();
    let api = trader(&t);
    proxy.cut();

    let r = api.get("/api/v1/symbols/005930/candles?interval=1m");
    assert_eq!((r.status, r.problem_code()), (503, 9027));
    let r = admin(addr).post("/api/v1/admin/reference/symbols", None, &samsung_body());
    assert_eq!((r.status, r.problem_code()), (503, 9041));
    assert!(
        service(&t)
            .reference_symbol(SymbolCode::new(SAMSUNG).unwrap())
            .is_none(),
        "the service changes only after the database stored the write"
    );

    proxy.restore();
    let r = admin(addr).post("/api/v1/admin/reference/symbols", None, &samsung_body());
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    let (symbols, _) = stored(db.url());
    assert_eq!(symbols, ["005930 KR7005930003 Samsung Electronics 1"]);
    assert!(
        service(&t)
            .reference_symbol(SymbolCode::new(SAMSUNG).unwrap())
            .is_some()
    );
    assert_eq!(
        api.get("/api/v1/symbols/005930/candles?interval=1m").status,
        200
    );
}
