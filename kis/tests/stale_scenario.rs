//! "The quote API is slow, then down, then back", end to end: the fake KIS, the adapter, the
//! bridge and an engine applying the commands the bridge journals. While quotes are stale the
//! engine withdraws the synthetic liquidity, refuses MARKET orders (2016) and keeps matching
//! resting orders; once KIS is back the symbol turns fresh and quotes flow again. Replaying
//! the journal gives the same state. Everything binds 127.0.0.1; every wait is bounded.

use kuku_engine::testkit::{Driver, cmd, reject_reason, trades};
use kuku_engine::{
    Amount, Asset, Command, EngineConfig, Event, ExternalRef, Market, Price, QuoteStatus,
    RejectReason, Side, SymbolId,
};
use kuku_kis::breaker::BreakerConfig;
use kuku_kis::metrics::KisMetrics;
use kuku_kis::testkit::{self, FakeKis, FakeKisConfig};
use kuku_kis::{KisAdapter, KisConfig, KisLimits, QuoteBridge, Secret, ShortCode};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

const WAIT_MAX: Duration = Duration::from_secs(20);
const SAMSUNG: u32 = 1;

fn code(s: &str) -> ShortCode {
    ShortCode::parse(s).expect("code")
}

struct Node {
    adapter: KisAdapter,
    bridge: QuoteBridge,
    driver: Driver,
    events: Vec<Event>,
    commands: Vec<Command>,
}

impl Node {
    /// Moves KIS events through the bridge into the engine until `done` holds.
    fn run_until(&mut self, what: &str, mut done: impl FnMut(&Node) -> bool) {
        let deadline = Instant::now() + WAIT_MAX;
        let mut buffer = Vec::new();
        let mut out = Vec::new();
        while !done(self) {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            if let Some(event) = self.adapter.recv_timeout(Duration::from_millis(10)) {
                buffer.push(event);
            }
            self.adapter.drain(&mut buffer);
            let now = Instant::now();
            for event in buffer.drain(..) {
                self.bridge.on_event(&event, now, &mut out);
            }
            self.bridge.tick(now, &mut out);
            for command in out.drain(..) {
                self.commands.push(command.clone());
                let events = self.driver.apply(command);
                self.events.extend(events);
            }
        }
    }

    fn status_commands(&self) -> Vec<QuoteStatus> {
        self.commands
            .iter()
            .filter_map(|c| match c {
                Command::SetQuoteStatus {
                    symbol: SymbolId(SAMSUNG),
                    status,
                } => Some(*status),
                _ => None,
            })
            .collect()
    }

    fn last_status(&self) -> Option<QuoteStatus> {
        self.status_commands().last().copied()
    }

    fn quotes_applied(&self) -> usize {
        self.commands
            .iter()
            .filter(|c| {
                matches!(
                    c,
                    Command::QuoteUpdate {
                        symbol: SymbolId(SAMSUNG),
                        ..
                    }
                )
            })
            .count()
    }
}

fn limits() -> KisLimits {
    let breaker = BreakerConfig {
        failures_max: 2,
        open_for: Duration::from_millis(400),
        half_open_probes_max: 1,
    };
    KisLimits {
        request_timeout: Duration::from_millis(200),
        connect_timeout: Duration::from_millis(300),
        attempts_max: 2,
        backoff_base: Duration::from_millis(10),
        backoff_max: Duration::from_millis(100),
        token_issue_interval_min: Duration::ZERO,
        silence_timeout: Duration::from_millis(300),
        fallback_after: Duration::from_millis(150),
        stale_after: Duration::from_millis(600),
        rest_breaker: breaker,
        ws_breaker: breaker,
        ..KisLimits::default()
    }
}

#[test]
fn slow_then_down_then_back_withdraws_and_restores_liquidity_deterministically() {
    let fake = FakeKis::start(FakeKisConfig::default()).expect("fake");
    let dir = tempfile::tempdir().expect("dir");
    let config = KisConfig {
        rest_base: fake.rest_base(),
        rest_ca_file: None,
        ws_url: fake.ws_url(),
        app_key: Secret::new(testkit::APP_KEY),
        app_secret: Secret::new(testkit::APP_SECRET),
        token_cache: dir.path().join("token.json"),
        symbols: vec![code("005930")],
        limits: limits(),
    };
    let stale_after = config.limits.stale_after;
    let mut driver =
        Driver::krx_market(EngineConfig::small(), &[("005930", Market::Kospi, 71_000)]);
    let buyer = driver.funded_account("buyer", 1_000_000_000);
    let seller = driver.funded_account("seller", 0);
    driver.apply(Command::Adjust {
        account: seller,
        asset: Asset::Shares(SymbolId(SAMSUNG)),
        amount: Amount(1_000),
        external_ref: ExternalRef::new("seed").expect("ref"),
        cost_price: Price(0),
    });
    let ids = [(code("005930"), SymbolId(SAMSUNG))].into_iter().collect();
    let mut node = Node {
        adapter: KisAdapter::start(config).expect("adapter"),
        bridge: QuoteBridge::new(ids, stale_after),
        driver,
        events: Vec::new(),
        commands: Vec::new(),
    };
    let metrics = node.adapter.metrics();

    // Up: quotes flow, a MARKET buy fills against the synthetic ask.
    node.run_until("quotes", |n| n.quotes_applied() >= 3);
    assert_eq!(node.last_status(), Some(QuoteStatus::Fresh));
    let e = node
        .driver
        .apply(cmd::market(buyer, 1, SAMSUNG, Side::Buy, 1));
    assert_eq!(trades(&e).len(), 1, "{e:?}");

    // Slow: the stream falls silent and REST answers after its deadline.
    fake.faults.silence.store(true, Ordering::SeqCst);
    fake.faults.rest_delay_ms.store(1_000, Ordering::SeqCst);
    node.run_until("stale", |n| n.last_status() == Some(QuoteStatus::Stale));
    let e = node
        .driver
        .apply(cmd::market(buyer, 2, SAMSUNG, Side::Buy, 1));
    assert_eq!(reject_reason(&e), Some(RejectReason::QuoteStale));
    let snap = node.driver.engine.snapshot();
    assert!(
        snap.orders
            .iter()
            .all(|o| o.account != kuku_engine::AccountId::SYSTEM_MARKET)
    );
    // Resting orders keep matching each other.
    node.driver
        .apply(cmd::limit(seller, 1, SAMSUNG, Side::Sell, 71_000, 5));
    let e = node
        .driver
        .apply(cmd::limit(buyer, 3, SAMSUNG, Side::Buy, 71_000, 5));
    assert_eq!(trades(&e).len(), 1);

    // Down: the WebSocket is refused and REST answers 500; both breakers open.
    fake.faults.ws_refuse.store(true, Ordering::SeqCst);
    fake.faults.rest_delay_ms.store(0, Ordering::SeqCst);
    fake.faults.rest_5xx.store(u64::MAX / 2, Ordering::SeqCst);
    node.run_until("both breakers open", |_| {
        KisMetrics::get(&metrics.ws_breaker_opened) >= 1
            && KisMetrics::get(&metrics.rest_breaker_opened) >= 1
    });
    assert_eq!(node.last_status(), Some(QuoteStatus::Stale));

    // Back: every fault cleared; the symbol turns fresh and quotes are accepted again.
    fake.faults.ws_refuse.store(false, Ordering::SeqCst);
    fake.faults.silence.store(false, Ordering::SeqCst);
    fake.faults.rest_5xx.store(0, Ordering::SeqCst);
    let quotes_before = node.quotes_applied();
    node.run_until("fresh quotes", |n| {
        n.last_status() == Some(QuoteStatus::Fresh) && n.quotes_applied() >= quotes_before + 2
    });
    let e = node
        .driver
        .apply(cmd::market(buyer, 4, SAMSUNG, Side::Buy, 1));
    assert_eq!(trades(&e).len(), 1, "{e:?}");
    // The WebSocket breaker closes on the first data frame; the REST breaker, unused while the
    // stream flows, turns half open and waits for its next call to decide.
    node.run_until(
        "the WebSocket breaker closed, the REST one no longer open",
        |_| {
            KisMetrics::get(&metrics.ws_breaker_state) == 0
                && KisMetrics::get(&metrics.rest_breaker_state) != 2
        },
    );

    // The bridge never let a quote reach a stale symbol, and each verdict changed the status.
    assert!(!node.events.iter().any(|e| matches!(
        e,
        Event::QuoteRejected {
            reason: RejectReason::QuoteSourceStale,
            ..
        }
    )));
    let statuses = node.status_commands();
    assert!(statuses.windows(2).all(|w| w[0] != w[1]), "{statuses:?}");
    assert!(
        statuses.ends_with(&[QuoteStatus::Stale, QuoteStatus::Fresh]),
        "{statuses:?}"
    );

    // Replay of the journal decides exactly as the live run.
    let mut replay = kuku_engine::Engine::new(EngineConfig::small());
    for envelope in &node.driver.journal {
        replay.apply(envelope, &mut Vec::new());
    }
    assert_eq!(replay.state_hash(), node.driver.engine.state_hash());
}
