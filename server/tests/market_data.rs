//! Market data through the node: replaying the committed sample (data/market-data-sample.jsonl)
//! twice gives the same engine state hash and the same candles, the replayed quotes reach the
//! engine with their recorded timestamps, and /metrics reports quotes, ticks and quote ages;
//! the candle history a reader gets merges the database with the service's newer state.

use kuku_engine::{Command, Engine, EngineConfig, Envelope, FeeSchedule, MarketPhase, NullSink};
use kuku_journal::{Journal, JournalConfig, codec, journal_meta, write_config};
use kuku_marketdata::record::RecordReader;
use kuku_marketdata::{
    Candle, Interval, MarketData, MarketEvent, Pump, ReferenceBook, ReplaySource, ServiceLimits,
    Speed, TimestampNs,
};
use kuku_server::config::{FeedSettings, NodeConfig};
use kuku_server::node::{Node, NodeOutputs};
use kuku_server::scheduler::ScheduleMode;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

fn sample() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../data/market-data-sample.jsonl")
}

/// What the sample holds: (quotes, ticks, first ts, last quote ts).
fn sample_counts() -> (u64, u64, u64, u64) {
    let mut reader = RecordReader::open(&sample()).expect("the sample opens");
    let (mut quotes, mut ticks, mut first, mut last_quote) = (0, 0, None, 0);
    while let Some(e) = reader.next_event().expect("the sample is valid") {
        first.get_or_insert(e.ts_ns().0);
        match e {
            MarketEvent::Quote(q) => {
                quotes += 1;
                last_quote = q.ts_ns.0;
            }
            MarketEvent::Tick(_) => ticks += 1,
            MarketEvent::LastPrice(_) => {}
        }
    }
    (quotes, ticks, first.expect("not empty"), last_quote)
}

/// The commands a node needs before the sample's quotes apply: fees, the demo universe, a
/// trading day in its continuous phase. Stamped one second before the sample starts.
fn setup(ts: u64) -> Vec<Envelope> {
    let mut commands = vec![Command::SetFeeSchedule(FeeSchedule::KRX_2026)];
    commands.extend(
        kuku_server::universe::parse(kuku_server::universe::DEMO_UNIVERSE).expect("parses"),
    );
    commands.push(Command::StartOfDay {
        trading_day: 20_261_206,
        base_prices: Vec::new(),
    });
    commands.push(Command::SetMarketPhase {
        phase: MarketPhase::Continuous,
    });
    commands
        .into_iter()
        .enumerate()
        .map(|(i, command)| Envelope {
            seq: i as u64 + 1,
            ts,
            command,
        })
        .collect()
}

/// Replays the sample straight into an engine through the pump; returns the state hash, the
/// engine's time and the candles.
fn replay_into_engine() -> (u64, u64, Vec<Candle>) {
    let (_, _, first, _) = sample_counts();
    let mut engine = Engine::new(EngineConfig::small());
    let setup = setup(first - 1_000_000_000);
    let mut seq = setup.len() as u64;
    for e in &setup {
        engine.apply(e, &mut NullSink);
    }
    let universe: Vec<_> = engine.symbols().copied().collect();
    let service = MarketData::new(ServiceLimits::default(), ReferenceBook::default());
    let source = ReplaySource::open(&sample(), Speed::UNPACED).expect("opens");
    let mut pump = Pump::new(Box::new(source), service.clone(), None);
    let mut candles = Vec::new();
    let mut submit = |ts: u64, command: Command| {
        seq += 1;
        engine.apply(&Envelope { seq, ts, command }, &mut NullSink);
        true
    };
    for _ in 0..10_000 {
        if pump.finished() {
            break;
        }
        pump.step(0, &universe, &mut submit, &mut candles)
            .expect("the sample replays");
    }
    assert!(pump.finished());
    (engine.state_hash(), engine.now_ts(), service.all_candles())
}

#[test]
fn replaying_the_sample_twice_into_an_engine_gives_the_same_state_and_candles() {
    let (quotes, ticks, _, last_quote) = sample_counts();
    assert!(quotes > 0 && ticks > 0, "the sample has quotes and ticks");
    let first = replay_into_engine();
    let second = replay_into_engine();
    assert_eq!(first.0, second.0, "state hash");
    assert_eq!(first.2, second.2, "candles");
    assert_eq!(
        first.1, last_quote,
        "the engine's time is the last recorded quote's"
    );
    assert!(first.2.iter().any(|c| c.interval == Interval::M1));
    let volume: i64 = first
        .2
        .iter()
        .filter(|c| c.interval == Interval::D1)
        .map(|c| c.volume)
        .sum();
    assert!(volume > 0);
}

/// A data directory whose journal holds the setup commands (a node started on it recovers a
/// continuous market without registering anything itself).
fn prepared_node_config(dir: &Path, setup_ts: u64) -> NodeConfig {
    let mut config = NodeConfig {
        data_dir: dir.to_owned(),
        durability: "none".into(),
        schedule: ScheduleMode::Manual,
        snapshot_every: 0,
        feed: FeedSettings {
            source: format!("replay:{}", sample().display()),
            speed: 0.0,
            ..FeedSettings::default()
        },
        engine: EngineConfig::small(),
        ..NodeConfig::default()
    };
    config.segment_mib = 4;
    config.gateway.enabled = false;
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
    for e in setup(setup_ts) {
        codec::append_command(&mut journal, &e).expect("appends");
    }
    journal.commit().expect("commits");
    journal.close().expect("closes");
    write_config(&journal_dir, &config.engine).expect("writes");
    config
}

/// Runs a node that replays the sample; returns (state hash, engine time, stored 1m candles,
/// /metrics text).
fn replay_through_a_node() -> (u64, u64, Vec<Candle>, String) {
    let (quotes, _, first, _) = sample_counts();
    let dir = tempfile::tempdir().expect("a temp dir");
    let config = prepared_node_config(dir.path(), first - 1_000_000_000);
    let setup_len = setup(0).len() as u64;
    let node = Node::start(&config, NodeOutputs::default()).expect("starts");
    let stats = &node.market_data.stats;
    let deadline = Instant::now() + Duration::from_secs(30);
    while stats.quotes_submitted.load(Ordering::Relaxed) < quotes {
        assert!(Instant::now() < deadline, "the replay did not finish");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(stats.source_ended.load(Ordering::Relaxed), 1);
    assert!(node.wait_applied(setup_len + quotes, Duration::from_secs(10)));
    let metrics =
        kuku_server::metrics::render(&kuku_server::metrics::MetricsSources::of(&node, None));
    let symbol = node.market_data.quotes()[0].symbol;
    let seq = node.shutdown();
    assert_eq!(
        seq,
        setup_len + quotes,
        "every recorded quote, nothing else"
    );
    let (engine, _) = kuku_journal::state::recover_engine(config.journal_dir(), &config.engine)
        .expect("recovers");
    let url = kuku_server::database::database_url(&config)
        .expect("valid")
        .expect("sqlite");
    let candles = kuku_persistence::block_on(async {
        let db = kuku_persistence::Database::connect(&url, &Default::default())
            .await
            .expect("connects");
        let c = db
            .candles(
                symbol,
                Interval::M1,
                TimestampNs(0),
                TimestampNs(u64::MAX),
                1_000,
            )
            .await
            .expect("reads");
        db.close().await;
        c
    });
    (engine.state_hash(), engine.now_ts(), candles, metrics)
}

#[test]
fn replaying_the_sample_twice_through_a_node_gives_the_same_state_hash_and_stored_candles() {
    let (quotes, ticks, _, last_quote) = sample_counts();
    let first = replay_through_a_node();
    let second = replay_through_a_node();
    assert_eq!(first.0, second.0, "state hash");
    assert_eq!(
        first.1, last_quote,
        "quotes were journaled with their recorded timestamps"
    );
    assert_eq!(first.1, second.1);
    assert!(!first.2.is_empty(), "candles were stored");
    assert_eq!(first.2, second.2, "stored candles");
    let metrics = first.3;
    assert!(
        metrics.contains(&format!("\nkuku_md_quotes_received_total {quotes}\n")),
        "{metrics}"
    );
    assert!(
        metrics.contains(&format!("\nkuku_md_ticks_received_total {ticks}\n")),
        "{metrics}"
    );
    assert!(
        metrics.contains("kuku_md_quote_age_seconds{symbol=\""),
        "{metrics}"
    );
}

#[test]
fn a_replay_file_that_does_not_exist_stops_the_start_with_its_name() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let mut config = prepared_node_config(dir.path(), 1);
    config.feed.source = "replay:/nonexistent/md.jsonl".into();
    let e = Node::start(&config, NodeOutputs::default())
        .err()
        .expect("refused");
    assert!(format!("{e:#}").contains("/nonexistent/md.jsonl"), "{e:#}");
}

#[test]
fn candle_history_merges_the_database_with_newer_state_in_memory() {
    use kuku_engine::{Price, Qty, Side, SymbolCode};
    use kuku_marketdata::Tick;
    let test_db = kuku_persistence::testkit::TestDatabase::sqlite();
    let minute = 60_000_000_000u64;
    let t0 = 1_772_668_800_000_000_000u64;
    let code = SymbolCode::new("005930").expect("valid");
    let tick = |ts: u64, price: i64| {
        MarketEvent::Tick(Tick {
            symbol: code,
            ts_ns: TimestampNs(ts),
            price: Price(price),
            qty: Qty(1),
            aggressor: Side::Buy,
        })
    };
    let service = MarketData::new(ServiceLimits::default(), ReferenceBook::default());
    let mut stored = Vec::new();
    // Minute 0 is only in the database (the service restarted since); minute 1 is in the
    // database with an older state; minute 2 has not been flushed.
    service.ingest(&[tick(t0, 100), tick(t0 + minute, 110)], 0, &mut stored);
    let stale_minute_1: Vec<Candle> = stored
        .iter()
        .filter(|u| u.candle.interval == Interval::M1)
        .map(|u| u.candle)
        .collect();
    let restarted = MarketData::new(ServiceLimits::default(), ReferenceBook::default());
    restarted.ingest(
        &[
            tick(t0 + minute, 110),
            tick(t0 + minute + 1, 120),
            tick(t0 + 2 * minute, 130),
        ],
        0,
        &mut Vec::new(),
    );
    let (all, newest_two, memory_only) = kuku_persistence::block_on(async {
        let db = kuku_persistence::Database::connect(test_db.url(), &Default::default())
            .await
            .expect("connects");
        db.upsert_candles(&stale_minute_1).await.expect("writes");
        let range = (TimestampNs(0), TimestampNs(u64::MAX));
        let history = |limit| {
            kuku_server::market_data::candle_history(
                &restarted,
                Some(&db),
                code,
                Interval::M1,
                range.0,
                range.1,
                limit,
            )
        };
        let all = history(10).await.expect("reads");
        let newest_two = history(2).await.expect("reads");
        let memory_only = kuku_server::market_data::candle_history(
            &restarted,
            None,
            code,
            Interval::M1,
            range.0,
            range.1,
            10,
        )
        .await
        .expect("reads");
        db.close().await;
        (all, newest_two, memory_only)
    });
    let summary = |cs: &[Candle]| -> Vec<(u64, i64, u64)> {
        cs.iter()
            .map(|c| ((c.start_ns.0 - t0) / minute, c.close.0, c.trades))
            .collect()
    };
    assert_eq!(summary(&all), [(0, 100, 1), (1, 120, 2), (2, 130, 1)]);
    assert_eq!(summary(&newest_two), [(1, 120, 2), (2, 130, 1)]);
    assert_eq!(summary(&memory_only), [(1, 120, 2), (2, 130, 1)]);
}

#[test]
fn a_restarted_node_goes_on_with_the_candle_open_across_the_restart() {
    use kuku_engine::{Price, Qty, Side, SymbolCode};
    use kuku_marketdata::Tick;
    for test_db in [
        kuku_persistence::testkit::TestDatabase::sqlite(),
        kuku_persistence::testkit::TestDatabase::mysql(),
    ] {
        let t0 = 1_772_668_800_000_000_000u64;
        let code = SymbolCode::new("005930").expect("valid");
        let tick = |ts: u64, price: i64, qty: i64| {
            MarketEvent::Tick(Tick {
                symbol: code,
                ts_ns: TimestampNs(ts),
                price: Price(price),
                qty: Qty(qty),
                aggressor: Side::Buy,
            })
        };
        // Before the restart: three trades in minute 0, stored by the candle writer.
        let before = MarketData::new(ServiceLimits::default(), ReferenceBook::default());
        let mut updates = Vec::new();
        before.ingest(
            &[tick(t0, 100, 5), tick(t0 + 1, 120, 1), tick(t0 + 2, 90, 2)],
            0,
            &mut updates,
        );
        let stored: Vec<Candle> = updates.iter().map(|u| u.candle).collect();
        kuku_persistence::block_on(async {
            let db = kuku_persistence::Database::connect(test_db.url(), &Default::default())
                .await
                .expect("connects");
            db.upsert_candles(&stored).await.expect("writes");
            db.close().await;
        });
        // The restarted node's service takes up the stored candles; one more trade in the
        // same minute extends minute 0 instead of starting it again.
        let dir = tempfile::tempdir().expect("a temp dir");
        let config = NodeConfig {
            data_dir: dir.path().to_owned(),
            database_url: Some(test_db.url().expose().to_owned()),
            ..NodeConfig::default()
        };
        let (after, _) = kuku_server::market_data::start_service(&config).expect("starts");
        let mut updates = Vec::new();
        after.ingest(&[tick(t0 + 30, 110, 4)], 0, &mut updates);
        let m1 = updates
            .iter()
            .find(|u| u.candle.interval == Interval::M1)
            .expect("a 1m update")
            .candle;
        assert_eq!(
            (m1.open, m1.high, m1.low, m1.close, m1.volume, m1.trades),
            (Price(100), Price(120), Price(90), Price(110), 12, 4),
            "minute 0 goes on from its stored state"
        );
        let d1 = updates
            .iter()
            .find(|u| u.candle.interval == Interval::D1)
            .expect("a 1d update")
            .candle;
        assert_eq!((d1.open, d1.volume, d1.trades), (Price(100), 12, 4));
    }
}
