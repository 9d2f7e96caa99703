//! `--market-data kis` with a stream that never sends a frame: the REST fallback's price
//! reaches the node's market-data service and is served by the HTTP door as the symbol's
//! `last` (origin `fallback`) on `market-quote`, without a quote (empty sides, no `ts_ns`) and
//! without a candle; the node's /metrics counts it. Everything binds 127.0.0.1; every wait is
//! bounded.

mod support;

use kuku_kis::ShortCode;
use kuku_kis::testkit::{self, FakeKis, FakeKisConfig};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use support::TestNode;
use support::http::{funded, login};

const WAIT_MAX: Duration = Duration::from_secs(30);

#[test]
fn a_fallback_price_of_a_silent_stream_is_served_as_the_market_last() {
    // SAFETY: this test binary holds one test, and nextest runs it in a process of its own:
    // no other thread reads the environment while it is set.
    unsafe {
        std::env::set_var(kuku_kis::config::ENV_APP_KEY, testkit::APP_KEY);
        std::env::set_var(kuku_kis::config::ENV_APP_SECRET, testkit::APP_SECRET);
    }
    let fake = FakeKis::start(FakeKisConfig::default()).expect("fake KIS");
    fake.faults.silence.store(true, Ordering::SeqCst);
    let t = TestNode::start_http_with(|c| {
        c.database_url = Some("none".into());
        c.feed.enabled = true;
        c.feed.source = "kis".into();
        c.feed.interval_ms = 20;
        let kis = &mut c.feed.kis;
        kis.rest_base = fake.rest_base();
        kis.ws_url = fake.ws_url();
        kis.symbols = vec!["005930".into()];
        kis.stale_after_ms = 600;
        kis.silence_timeout_ms = 5_000;
        kis.fallback_after_ms = 150;
        kis.request_timeout_ms = 500;
    });
    let api = login(t.http_addr(), funded(t.http_addr(), "reader", 0));
    let expected = fake
        .price_of(ShortCode::parse("005930").expect("code"))
        .expect("the fake's price");

    let deadline = Instant::now() + WAIT_MAX;
    let quote = loop {
        let r = api.get("/api/v1/symbols/005930/market-quote");
        if r.status == 200 {
            break r.json();
        }
        assert_eq!(r.status, 404, "{:?}", r.json());
        assert!(
            Instant::now() < deadline,
            "no fallback price reached the HTTP door"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(quote["last"]["origin"], "fallback", "{quote}");
    assert_eq!(quote["last"]["price"].as_i64(), Some(expected), "{quote}");
    assert!(quote["last"]["ts_ns"].as_u64().is_some_and(|ts| ts > 0));
    assert!(quote["ts_ns"].is_null(), "no quote came: {quote}");
    assert_eq!(quote["bids"].as_array().map(Vec::len), Some(0));
    assert_eq!(quote["asks"].as_array().map(Vec::len), Some(0));

    let r = api.get("/api/v1/symbols/005930/candles?interval=1m");
    assert_eq!(r.status, 200);
    assert_eq!(
        r.json()["candles"].as_array().map(Vec::len),
        Some(0),
        "a fallback price makes no candle"
    );
    let r = api.get("/api/v1/symbols/005930/market-ticks");
    assert_eq!(r.json()["ticks"].as_array().map(Vec::len), Some(0));

    let node = t.node.as_ref().expect("running");
    let metrics =
        kuku_server::metrics::render(&kuku_server::metrics::MetricsSources::of(node, None));
    let counted = |name: &str| {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or_else(|| panic!("{name} is not on /metrics:\n{metrics}"))
    };
    assert!(counted("kuku_md_last_prices_received_total") >= 1);
    assert!(counted("kuku_kis_fallback_prices") >= counted("kuku_md_last_prices_received_total"));
    assert_eq!(counted("kuku_md_quotes_received_total"), 0);
}
