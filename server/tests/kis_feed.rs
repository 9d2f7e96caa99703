//! `--market-data kis` through a node, against the fake KIS: quotes reach the engine as
//! synthetic liquidity; when KIS is slow, then down, the node journals the symbol stale and
//! the liquidity is withdrawn (both breakers open on /metrics); when KIS is back, the symbol
//! turns fresh and the liquidity returns. The journal holds the verdicts, in order, and a
//! recovery from it ends fresh. Everything binds 127.0.0.1; every wait is bounded.

use kuku_engine::testkit::cmd;
use kuku_engine::{Command, EngineConfig, Envelope, FeeSchedule, Market, MarketPhase, QuoteStatus};
use kuku_journal::{Journal, JournalConfig, codec, journal_meta, write_config};
use kuku_kis::testkit::{self, FakeKis, FakeKisConfig};
use kuku_server::config::NodeConfig;
use kuku_server::node::{Node, NodeOutputs};
use kuku_server::scheduler::ScheduleMode;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const WAIT_MAX: Duration = Duration::from_secs(30);

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_nanos() as u64
}

/// A journal with the fee schedule, 005930 at 71,000 and an open continuous day.
fn prepared_config(dir: &Path, fake: &FakeKis) -> NodeConfig {
    let mut config = NodeConfig {
        data_dir: dir.to_owned(),
        durability: "none".into(),
        schedule: ScheduleMode::Manual,
        snapshot_every: 0,
        database_url: Some("none".into()),
        engine: EngineConfig::small(),
        ..NodeConfig::default()
    };
    config.segment_mib = 4;
    config.gateway.enabled = false;
    config.feed.source = "kis".into();
    config.feed.interval_ms = 20;
    let kis = &mut config.feed.kis;
    kis.rest_base = fake.rest_base();
    kis.ws_url = fake.ws_url();
    kis.symbols = vec!["005930".into()];
    kis.stale_after_ms = 600;
    kis.silence_timeout_ms = 300;
    kis.fallback_after_ms = 150;
    kis.request_timeout_ms = 200;
    let journal_dir = config.journal_dir();
    std::fs::create_dir_all(&journal_dir).expect("creates");
    let journal_config = JournalConfig {
        segment_bytes: 1 << 20,
        ..JournalConfig::default()
    };
    let mut journal = Journal::create(
        &journal_dir,
        journal_config,
        journal_meta(&config.engine, 0),
    )
    .expect("creates");
    let setup = [
        Command::SetFeeSchedule(FeeSchedule::KRX_2026),
        cmd::register_krx("005930", "Samsung Electronics", Market::Kospi, 71_000),
        Command::StartOfDay {
            trading_day: 20_261_207,
            base_prices: Vec::new(),
        },
        Command::SetMarketPhase {
            phase: MarketPhase::Continuous,
        },
    ];
    let ts = now_ns() - 1_000_000_000;
    for (i, command) in setup.into_iter().enumerate() {
        let envelope = Envelope {
            seq: i as u64 + 1,
            ts,
            command,
        };
        codec::append_command(&mut journal, &envelope).expect("appends");
    }
    journal.commit().expect("commits");
    journal.close().expect("closes");
    write_config(&journal_dir, &config.engine).expect("writes");
    config
}

/// Sides of the book with liquidity; no user trades here, so every level is a synthetic quote.
fn quoted_sides(node: &Node) -> usize {
    let rm = node.read_model.read();
    rm.symbols.values().next().map_or(0, |s| {
        usize::from(s.book.best_bid().is_some()) + usize::from(s.book.best_ask().is_some())
    })
}

fn metric(node: &Node, name: &str) -> u64 {
    let text = kuku_server::metrics::render(&kuku_server::metrics::MetricsSources::of(node, None));
    let prefix = format!("kuku_kis_{name} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("{name} is not on /metrics:\n{text}"))
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT_MAX;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_node_on_kis_withdraws_liquidity_while_kis_is_slow_or_down_and_restores_it_when_back() {
    // SAFETY: this test binary holds one test, and nextest runs it in a process of its own:
    // no other thread reads the environment while it is set.
    unsafe {
        std::env::set_var(kuku_kis::config::ENV_APP_KEY, testkit::APP_KEY);
        std::env::set_var(kuku_kis::config::ENV_APP_SECRET, testkit::APP_SECRET);
    }
    let fake = FakeKis::start(FakeKisConfig::default()).expect("fake KIS");
    let dir = tempfile::tempdir().expect("a temp dir");
    let config = prepared_config(dir.path(), &fake);
    let node = Node::start(&config, NodeOutputs::default()).expect("starts");

    // Up: the book's best levels rest as synthetic orders.
    wait_until("synthetic liquidity", || quoted_sides(&node) == 2);
    assert!(metric(&node, "frames_decoded") > 0);

    // Slow: the stream is silent and REST answers too late.
    fake.faults.silence.store(true, Ordering::SeqCst);
    fake.faults.rest_delay_ms.store(1_000, Ordering::SeqCst);
    wait_until("the liquidity withdrawn", || quoted_sides(&node) == 0);

    // Down: the WebSocket is refused and REST answers 500.
    fake.faults.ws_refuse.store(true, Ordering::SeqCst);
    fake.faults.rest_delay_ms.store(0, Ordering::SeqCst);
    fake.faults.rest_5xx.store(u64::MAX / 2, Ordering::SeqCst);
    wait_until("both breakers opened", || {
        metric(&node, "ws_breaker_opened") >= 1 && metric(&node, "rest_breaker_opened") >= 1
    });
    assert_eq!(quoted_sides(&node), 0);

    // Back.
    fake.faults.ws_refuse.store(false, Ordering::SeqCst);
    fake.faults.silence.store(false, Ordering::SeqCst);
    fake.faults.rest_5xx.store(0, Ordering::SeqCst);
    wait_until("the liquidity back", || quoted_sides(&node) == 2);
    assert!(metric(&node, "reconnects") >= 1);
    wait_until("the WebSocket breaker closed", || {
        metric(&node, "ws_breaker_state") == 0
    });
    node.shutdown();

    // The journal holds the verdicts in order, and recovery from it ends fresh.
    let reader = kuku_journal::JournalReader::open(config.journal_dir()).expect("opens");
    let verdicts: Vec<QuoteStatus> = reader
        .frames_from(1)
        .expect("reads")
        .map_while(|f| f.ok())
        .filter_map(
            |f| match codec::decode_envelope(&f).expect("decodes").command {
                Command::SetQuoteStatus { status, .. } => Some(status),
                _ => None,
            },
        )
        .collect();
    let last_stale = verdicts.iter().rposition(|s| *s == QuoteStatus::Stale);
    assert!(
        matches!(last_stale, Some(i) if verdicts[i + 1..].contains(&QuoteStatus::Fresh)),
        "{verdicts:?}"
    );
    let (engine, _) = kuku_journal::state::recover_engine(config.journal_dir(), &config.engine)
        .expect("recovers");
    let snapshot = engine.snapshot();
    assert_eq!(snapshot.symbols[0].quote_status, QuoteStatus::Fresh);
}
