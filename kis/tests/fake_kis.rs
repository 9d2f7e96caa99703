//! The adapter against the fake KIS server: token, approval, subscribe and decode from the
//! golden frames, PINGPONG, and every injected fault ending in the right breaker state and
//! recovering. Everything binds 127.0.0.1; every wait is bounded.

use kuku_kis::breaker::BreakerConfig;
use kuku_kis::frame::{self, Inbound, Record};
use kuku_kis::http::{BaseUrl, Endpoint};
use kuku_kis::metrics::KisMetrics;
use kuku_kis::rest::RestClient;
use kuku_kis::testkit::{self, FakeKis, FakeKisConfig};
use kuku_kis::token::{TokenManager, TokenSource, read_cache};
use kuku_kis::{KisAdapter, KisConfig, KisError, KisEvent, KisLimits, Secret, ShortCode};
use std::os::unix::fs::PermissionsExt;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

const WAIT_MAX: Duration = Duration::from_secs(15);

fn code(s: &str) -> ShortCode {
    ShortCode::parse(s).expect("code")
}

fn fast_limits() -> KisLimits {
    let breaker = BreakerConfig {
        failures_max: 2,
        open_for: Duration::from_millis(300),
        half_open_probes_max: 1,
    };
    KisLimits {
        request_timeout: Duration::from_millis(300),
        connect_timeout: Duration::from_millis(500),
        attempts_max: 2,
        backoff_base: Duration::from_millis(10),
        backoff_max: Duration::from_millis(50),
        token_issue_interval_min: Duration::ZERO,
        silence_timeout: Duration::from_millis(300),
        fallback_after: Duration::from_millis(200),
        stale_after: Duration::from_millis(500),
        rest_breaker: breaker,
        ws_breaker: breaker,
        ..KisLimits::default()
    }
}

fn config(fake: &FakeKis, dir: &tempfile::TempDir) -> KisConfig {
    KisConfig {
        rest_base: fake.rest_base(),
        rest_ca_file: None,
        ws_url: fake.ws_url(),
        app_key: Secret::new(testkit::APP_KEY),
        app_secret: Secret::new(testkit::APP_SECRET),
        token_cache: dir.path().join("kis-token.json"),
        symbols: vec![code("005930"), code("000660")],
        limits: fast_limits(),
    }
}

fn rest(fake: &FakeKis) -> RestClient {
    RestClient::new(
        Endpoint::new(BaseUrl::parse(&fake.rest_base()).expect("base"), None).expect("endpoint"),
        Secret::new(testkit::APP_KEY),
        Secret::new(testkit::APP_SECRET),
        Duration::from_millis(500),
    )
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// Drains events into `seen` until `done` holds (bounded by WAIT_MAX).
fn wait_for(
    adapter: &KisAdapter,
    seen: &mut Vec<KisEvent>,
    what: &str,
    mut done: impl FnMut(&[KisEvent]) -> bool,
) {
    let deadline = Instant::now() + WAIT_MAX;
    while !done(seen) {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}; metrics:\n{}",
            render(adapter)
        );
        if let Some(e) = adapter.recv_timeout(Duration::from_millis(20)) {
            seen.push(e);
        }
    }
}

fn render(adapter: &KisAdapter) -> String {
    let mut s = String::new();
    adapter.metrics().render(&mut s);
    s
}

fn count(m: &std::sync::atomic::AtomicU64) -> u64 {
    KisMetrics::get(m)
}

fn records_after(seen: &[KisEvent], from: usize) -> usize {
    seen[from.min(seen.len())..]
        .iter()
        .filter(|e| matches!(e, KisEvent::Record(_)))
        .count()
}

#[test]
fn token_is_issued_once_cached_with_mode_0600_and_reused_by_a_new_manager() {
    let fake = FakeKis::start(FakeKisConfig::default()).expect("fake");
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("token.json");
    let rt = runtime();
    let client = rest(&fake);
    let now = 1_800_000_000;
    let margin = Duration::from_secs(1800);
    let mut first = TokenManager::new(path.clone(), margin, Duration::from_secs(61));
    let (token, source) = rt.block_on(first.token(&client, now)).expect("issue");
    assert_eq!(source, TokenSource::Issued);
    assert_eq!(token.expose(), "fake-token-1");
    let (_, source) = rt.block_on(first.token(&client, now + 10)).expect("memory");
    assert_eq!(source, TokenSource::Memory);
    let mode = std::fs::metadata(&path)
        .expect("cache")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
    let cached = read_cache(&path).expect("read").expect("token");
    assert_eq!(cached.expires_at_unix_s, now + 86_400);

    let mut second = TokenManager::new(path.clone(), margin, Duration::from_secs(61));
    let (token, source) = rt.block_on(second.token(&client, now + 20)).expect("cache");
    assert_eq!(
        (token.expose(), source),
        ("fake-token-1", TokenSource::DiskCache)
    );
    assert_eq!(fake.seen.token_issues.load(Ordering::SeqCst), 1);
}

#[test]
fn token_is_refreshed_before_expiry_but_never_twice_within_the_issue_interval() {
    let fake = FakeKis::start(FakeKisConfig::default()).expect("fake");
    let dir = tempfile::tempdir().expect("dir");
    let rt = runtime();
    let client = rest(&fake);
    let now = 1_800_000_000;
    let mut tokens = TokenManager::new(
        dir.path().join("t.json"),
        Duration::from_secs(1800),
        Duration::from_secs(61),
    );
    rt.block_on(tokens.token(&client, now)).expect("issue");
    // 86 400 s lifetime, 1 800 s margin: at +84 599 s it is still used, at +84 600 s renewed.
    let (_, source) = rt
        .block_on(tokens.token(&client, now + 84_599))
        .expect("still valid");
    assert_eq!(source, TokenSource::Memory);
    let (token, source) = rt
        .block_on(tokens.token(&client, now + 84_600))
        .expect("refresh");
    assert_eq!(
        (token.expose(), source),
        ("fake-token-2", TokenSource::Issued)
    );
    // KIS said it expired 10 s later: a new issue must wait for the interval.
    tokens.invalidate().expect("invalidate");
    let err = rt
        .block_on(tokens.token(&client, now + 84_610))
        .unwrap_err();
    assert!(matches!(err, KisError::TokenIssueTooSoon { .. }), "{err}");
    let (token, _) = rt
        .block_on(tokens.token(&client, now + 84_661))
        .expect("after the interval");
    assert_eq!(token.expose(), "fake-token-3");
    assert_eq!(tokens.issued_total(), 3);
}

#[test]
fn a_rate_limited_token_issue_is_an_http_error_that_can_be_retried() {
    let fake = FakeKis::start(FakeKisConfig {
        token_issue_interval: Duration::from_secs(60),
        ..FakeKisConfig::default()
    })
    .expect("fake");
    let rt = runtime();
    let client = rest(&fake);
    rt.block_on(client.issue_token()).expect("first");
    let err = rt.block_on(client.issue_token()).unwrap_err();
    assert!(matches!(err, KisError::Http { status: 403, .. }), "{err}");
    assert!(err.to_string().contains("EGW00133"));
}

#[test]
fn approval_key_is_issued_and_a_refusal_is_an_error() {
    let fake = FakeKis::start(FakeKisConfig::default()).expect("fake");
    let rt = runtime();
    let key = rt.block_on(rest(&fake).approval_key()).expect("approval");
    assert_eq!(key.expose(), "fake-approval-1");
    fake.faults.approval_failures.store(1, Ordering::SeqCst);
    let err = rt.block_on(rest(&fake).approval_key()).unwrap_err();
    assert!(matches!(err, KisError::Http { status: 403, .. }), "{err}");
    let wrong = RestClient::new(
        Endpoint::new(BaseUrl::parse(&fake.rest_base()).expect("base"), None).expect("endpoint"),
        Secret::new("other-key"),
        Secret::new("other-secret"),
        Duration::from_millis(500),
    );
    let err = rt.block_on(wrong.approval_key()).unwrap_err();
    assert!(!err.to_string().contains("other-secret"), "{err}");
}

#[test]
fn current_price_inquiry_answers_and_an_expired_token_is_recognised() {
    let fake = FakeKis::start(FakeKisConfig::default()).expect("fake");
    let rt = runtime();
    let client = rest(&fake);
    let token = rt.block_on(client.issue_token()).expect("token").value;
    let price = rt
        .block_on(client.current_price(&token, code("000660")))
        .expect("price");
    assert_eq!(Some(price.0), fake.price_of(code("000660")));
    fake.expire_tokens();
    let err = rt
        .block_on(client.current_price(&token, code("000660")))
        .unwrap_err();
    assert!(
        matches!(&err, KisError::TokenExpired { msg_cd, .. } if msg_cd == "EGW00123"),
        "{err}"
    );
    let err = rt
        .block_on(client.current_price(&token, code("999999")))
        .unwrap_err();
    assert!(matches!(err, KisError::TokenExpired { .. }));
}

#[test]
fn every_golden_frame_decodes_with_its_announced_record_count() {
    let mut total = 0;
    let mut books = 0;
    for line in testkit::golden_frames() {
        let mut records = Vec::new();
        let inbound = frame::decode(line, &mut records).expect("golden frame decodes");
        let announced: usize = line
            .split('|')
            .nth(2)
            .expect("count")
            .parse()
            .expect("number");
        assert_eq!(
            inbound,
            Inbound::Data {
                tr_id: if line.contains("H0STASP0") {
                    frame::TR_BOOK
                } else {
                    frame::TR_TRADE
                },
                records: announced
            }
        );
        assert_eq!(records.len(), announced);
        for r in &records {
            if let Record::Book(b) = r {
                books += 1;
                assert!(b.bids[0].price < b.asks[0].price);
                assert!(b.asks.iter().all(|l| l.qty.0 > 0));
            }
        }
        total += records.len();
    }
    assert_eq!((total, books), (9, 3));
}

#[test]
fn adapter_subscribes_decodes_both_streams_and_echoes_pingpong() {
    let fake = FakeKis::start(FakeKisConfig::default()).expect("fake");
    let dir = tempfile::tempdir().expect("dir");
    let adapter = KisAdapter::start(config(&fake, &dir)).expect("adapter");
    let mut seen = Vec::new();
    wait_for(
        &adapter,
        &mut seen,
        "trades and books of both symbols and a multi-record frame",
        |s| {
            let has = |c: &str, book: bool| {
                s.iter().any(|e| match e {
                    KisEvent::Record(Record::Book(b)) => book && b.code.as_str() == c,
                    KisEvent::Record(Record::Trade(t)) => !book && t.code.as_str() == c,
                    _ => false,
                })
            };
            has("005930", true)
                && has("005930", false)
                && has("000660", true)
                && has("000660", false)
        },
    );
    let m = adapter.metrics();
    assert!(
        count(&m.records_decoded) > count(&m.frames_decoded),
        "a frame held several records"
    );
    wait_for(&adapter, &mut seen, "a PINGPONG echo", |_| {
        fake.seen.pingpong_echoes.load(Ordering::SeqCst) >= 1
    });
    assert!(count(&m.pingpongs) >= 1);
    let requests = fake.seen.subscribe_requests.lock().expect("lock").clone();
    assert_eq!(requests.len(), 4);
    assert!(requests.iter().all(|(tr_type, _, _)| tr_type == "1"));
    assert_eq!(count(&m.frames_rejected), 0);
    assert_eq!(count(&m.ws_breaker_state), 0);
    assert!(adapter.quote_age(code("005930")).is_some());
    assert!(!format!("{:?}", config(&fake, &dir)).contains(testkit::APP_SECRET));
}

#[test]
fn a_dropped_websocket_is_reconnected_and_resubscribed() {
    let fake = FakeKis::start(FakeKisConfig::default()).expect("fake");
    fake.faults.ws_drop_after_frames.store(3, Ordering::SeqCst);
    let dir = tempfile::tempdir().expect("dir");
    let adapter = KisAdapter::start(config(&fake, &dir)).expect("adapter");
    let m = adapter.metrics();
    let mut seen = Vec::new();
    wait_for(
        &adapter,
        &mut seen,
        "two reconnects, resubscribed each time",
        |_| {
            count(&m.reconnects) >= 2
                && fake.seen.subscribe_requests.lock().expect("lock").len() >= 12
        },
    );
    assert!(fake.seen.ws_sessions.load(Ordering::SeqCst) >= 3);
    fake.faults.ws_drop_after_frames.store(0, Ordering::SeqCst);
    let from = seen.len();
    wait_for(&adapter, &mut seen, "records after the drops", |s| {
        records_after(s, from) >= 10
    });
    assert!(
        seen.iter()
            .any(|e| matches!(e, KisEvent::Disconnected { .. }))
    );
    assert_eq!(
        count(&m.ws_breaker_state),
        0,
        "a session that delivered data keeps the breaker closed"
    );
}

#[test]
fn malformed_frames_are_rejected_counted_and_the_stream_goes_on() {
    let fake = FakeKis::start(FakeKisConfig::default()).expect("fake");
    fake.faults.malformed_frames.store(4, Ordering::SeqCst);
    let dir = tempfile::tempdir().expect("dir");
    let adapter = KisAdapter::start(config(&fake, &dir)).expect("adapter");
    let m = adapter.metrics();
    let mut seen = Vec::new();
    wait_for(
        &adapter,
        &mut seen,
        "four rejected frames then records",
        |s| count(&m.frames_rejected) >= 4 && records_after(s, 0) >= 3,
    );
    assert_eq!(count(&m.frames_rejected), 4);
    assert_eq!(
        count(&m.reconnects),
        0,
        "a bad frame does not cost the session"
    );
}

#[test]
fn silence_opens_the_websocket_breaker_and_quotes_resume_when_it_ends() {
    let fake = FakeKis::start(FakeKisConfig::default()).expect("fake");
    fake.faults.silence.store(true, Ordering::SeqCst);
    let dir = tempfile::tempdir().expect("dir");
    let mut cfg = config(&fake, &dir);
    cfg.limits.fallback_after = Duration::from_secs(3600);
    let adapter = KisAdapter::start(cfg).expect("adapter");
    let m = adapter.metrics();
    let mut seen = Vec::new();
    wait_for(&adapter, &mut seen, "the breaker to open", |_| {
        count(&m.ws_breaker_opened) >= 1
    });
    assert_eq!(records_after(&seen, 0), 0);
    fake.faults.silence.store(false, Ordering::SeqCst);
    wait_for(&adapter, &mut seen, "records after the silence", |s| {
        records_after(s, 0) >= 3
    });
    wait_for(&adapter, &mut seen, "the breaker to close", |_| {
        count(&m.ws_breaker_state) == 0
    });
}

#[test]
fn approval_failures_open_the_breaker_and_the_session_recovers() {
    let fake = FakeKis::start(FakeKisConfig::default()).expect("fake");
    fake.faults.approval_failures.store(4, Ordering::SeqCst);
    let dir = tempfile::tempdir().expect("dir");
    let mut cfg = config(&fake, &dir);
    cfg.limits.fallback_after = Duration::from_secs(3600);
    let adapter = KisAdapter::start(cfg).expect("adapter");
    let m = adapter.metrics();
    let mut seen = Vec::new();
    wait_for(&adapter, &mut seen, "records after the refusals", |s| {
        records_after(s, 0) >= 3
    });
    assert_eq!(count(&m.approval_failures), 4);
    assert!(count(&m.ws_breaker_opened) >= 1);
    assert_eq!(count(&m.ws_breaker_state), 0);
}

#[test]
fn a_refused_websocket_upgrade_opens_the_breaker_and_recovers() {
    let fake = FakeKis::start(FakeKisConfig::default()).expect("fake");
    fake.faults.ws_refuse.store(true, Ordering::SeqCst);
    let dir = tempfile::tempdir().expect("dir");
    let mut cfg = config(&fake, &dir);
    cfg.limits.fallback_after = Duration::from_secs(3600);
    let adapter = KisAdapter::start(cfg).expect("adapter");
    let m = adapter.metrics();
    let mut seen = Vec::new();
    wait_for(&adapter, &mut seen, "the breaker to open", |_| {
        count(&m.ws_breaker_opened) >= 1
    });
    fake.faults.ws_refuse.store(false, Ordering::SeqCst);
    wait_for(&adapter, &mut seen, "records", |s| records_after(s, 0) >= 3);
    assert_eq!(count(&m.ws_breaker_state), 0);
}

/// The WebSocket is refused throughout, so every price comes from the REST fallback.
fn fallback_adapter(fake: &FakeKis, dir: &tempfile::TempDir) -> KisAdapter {
    fake.faults.ws_refuse.store(true, Ordering::SeqCst);
    KisAdapter::start(config(fake, dir)).expect("adapter")
}

fn fallback_prices(seen: &[KisEvent], from: usize) -> usize {
    seen[from.min(seen.len())..]
        .iter()
        .filter(|e| matches!(e, KisEvent::FallbackPrice { .. }))
        .count()
}

#[test]
fn rest_5xx_opens_the_rest_breaker_and_the_fallback_recovers() {
    let fake = FakeKis::start(FakeKisConfig::default()).expect("fake");
    fake.faults.rest_5xx.store(1_000, Ordering::SeqCst);
    let dir = tempfile::tempdir().expect("dir");
    let adapter = fallback_adapter(&fake, &dir);
    let m = adapter.metrics();
    let mut seen = Vec::new();
    wait_for(&adapter, &mut seen, "the REST breaker to open", |_| {
        count(&m.rest_breaker_opened) >= 1
    });
    assert_eq!(fallback_prices(&seen, 0), 0);
    fake.faults.rest_5xx.store(0, Ordering::SeqCst);
    wait_for(&adapter, &mut seen, "fallback prices", |s| {
        fallback_prices(s, 0) >= 2
    });
    assert_eq!(count(&m.rest_breaker_state), 0);
    let expected = fake.price_of(code("005930")).expect("golden price");
    assert!(seen.iter().any(|e| matches!(e, KisEvent::FallbackPrice { code: c, price } if c.as_str() == "005930" && price.0 == expected)));
}

#[test]
fn slow_rest_answers_time_out_open_the_breaker_and_recover() {
    let fake = FakeKis::start(FakeKisConfig::default()).expect("fake");
    fake.faults.rest_delay_ms.store(1_000, Ordering::SeqCst);
    let dir = tempfile::tempdir().expect("dir");
    let adapter = fallback_adapter(&fake, &dir);
    let m = adapter.metrics();
    let mut seen = Vec::new();
    wait_for(&adapter, &mut seen, "the REST breaker to open", |_| {
        count(&m.rest_breaker_opened) >= 1
    });
    fake.faults.rest_delay_ms.store(0, Ordering::SeqCst);
    wait_for(&adapter, &mut seen, "fallback prices", |s| {
        fallback_prices(s, 0) >= 2
    });
    assert_eq!(count(&m.rest_breaker_state), 0);
}

#[test]
fn an_expired_token_is_replaced_and_the_fallback_goes_on() {
    let fake = FakeKis::start(FakeKisConfig::default()).expect("fake");
    let dir = tempfile::tempdir().expect("dir");
    let adapter = fallback_adapter(&fake, &dir);
    let m = adapter.metrics();
    let mut seen = Vec::new();
    wait_for(&adapter, &mut seen, "a fallback price", |s| {
        fallback_prices(s, 0) >= 1
    });
    fake.expire_tokens();
    let from = seen.len();
    wait_for(
        &adapter,
        &mut seen,
        "a token refresh and more prices",
        |s| count(&m.token_refreshes) >= 1 && fallback_prices(s, from) >= 2,
    );
    assert_eq!(count(&m.token_issues), 2);
    assert_eq!(fake.seen.token_issues.load(Ordering::SeqCst), 2);
    assert_eq!(
        count(&m.rest_breaker_state),
        0,
        "an expired token is not a failure of KIS"
    );
}

#[test]
fn subscriptions_beyond_the_session_limit_are_refused_and_counted() {
    let fake = FakeKis::start(FakeKisConfig {
        subscriptions_max: 3,
        ..FakeKisConfig::default()
    })
    .expect("fake");
    let dir = tempfile::tempdir().expect("dir");
    let adapter = KisAdapter::start(config(&fake, &dir)).expect("adapter");
    let m = adapter.metrics();
    let mut seen = Vec::new();
    wait_for(
        &adapter,
        &mut seen,
        "the refusal of the fourth subscription",
        |_| count(&m.subscriptions_refused) == 1,
    );
    assert_eq!(count(&m.subscriptions_sent), 4);
    // The three accepted streams still flow.
    wait_for(&adapter, &mut seen, "records", |s| records_after(s, 0) >= 3);
}
