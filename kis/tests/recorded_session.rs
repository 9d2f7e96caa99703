//! A KIS session recorded through the market-data pump and replayed through kuku-marketdata's
//! replay source: the recording holds every quote and tick the KIS source delivered (both
//! symbols, both streams), and replaying it twice into fresh engines ends in the same state.

use kuku_engine::testkit::cmd;
use kuku_engine::{
    Command, Engine, EngineConfig, Envelope, FeeSchedule, Market, MarketPhase, NullSink, Symbol,
};
use kuku_kis::testkit::{self, FakeKis, FakeKisConfig};
use kuku_kis::{KisConfig, KisLimits, KisSource, Secret, ShortCode};
use kuku_marketdata::record::RecordReader;
use kuku_marketdata::{
    MarketData, MarketEvent, Pump, Recorder, ReferenceBook, ReplaySource, ServiceLimits, Speed,
};
use std::collections::BTreeSet;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const WAIT_MAX: Duration = Duration::from_secs(20);

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_nanos() as u64
}

/// An engine with 005930 at 71,000 and 000660 at 120,500, trading.
fn engine() -> (Engine, u64) {
    let mut engine = Engine::new(EngineConfig::small());
    let setup = [
        Command::SetFeeSchedule(FeeSchedule::KRX_2026),
        cmd::register_krx("005930", "Samsung Electronics", Market::Kospi, 71_000),
        cmd::register_krx("000660", "SK hynix", Market::Kospi, 120_500),
        Command::StartOfDay {
            trading_day: 20_261_207,
            base_prices: Vec::new(),
        },
        Command::SetMarketPhase {
            phase: MarketPhase::Continuous,
        },
    ];
    let mut seq = 0;
    for command in setup {
        seq += 1;
        engine.apply(
            &Envelope {
                seq,
                ts: 1,
                command,
            },
            &mut NullSink,
        );
    }
    (engine, seq)
}

/// Runs `pump` into a fresh engine until `done`; returns the engine.
fn run(mut pump: Pump, mut done: impl FnMut(&Pump) -> bool) -> Engine {
    let (mut engine, mut seq) = engine();
    let universe: Vec<Symbol> = engine.symbols().copied().collect();
    let mut candles = Vec::new();
    let deadline = Instant::now() + WAIT_MAX;
    while !done(&pump) {
        assert!(Instant::now() < deadline, "the pump did not finish");
        let mut submit = |ts: u64, command: Command| {
            seq += 1;
            engine.apply(&Envelope { seq, ts, command }, &mut NullSink);
            true
        };
        pump.step(now_ns(), &universe, &mut submit, &mut candles)
            .expect("the source keeps going");
        std::thread::sleep(Duration::from_millis(5));
    }
    engine
}

fn replay(path: &Path) -> (u64, u64) {
    let service = MarketData::new(ServiceLimits::default(), ReferenceBook::default());
    let source = ReplaySource::open(path, Speed::UNPACED).expect("the recording opens");
    let pump = Pump::new(Box::new(source), service.clone(), None);
    let engine = run(pump, Pump::finished);
    (
        engine.state_hash(),
        service.stats.quotes_submitted.load(Ordering::Relaxed),
    )
}

#[test]
fn a_recorded_kis_session_replays_to_the_same_state_twice() {
    let fake = FakeKis::start(FakeKisConfig::default()).expect("fake KIS");
    let dir = tempfile::tempdir().expect("a temp dir");
    let config = KisConfig {
        rest_base: fake.rest_base(),
        rest_ca_file: None,
        ws_url: fake.ws_url(),
        app_key: Secret::new(testkit::APP_KEY),
        app_secret: Secret::new(testkit::APP_SECRET),
        token_cache: dir.path().join("token.json"),
        symbols: vec![
            ShortCode::parse("005930").expect("code"),
            ShortCode::parse("000660").expect("code"),
        ],
        limits: KisLimits::default(),
    };
    let (source, _status) = KisSource::start(config).expect("the KIS source starts");
    let path = dir.path().join("kis-session.jsonl");
    let recorder = Recorder::create(&path, "kis").expect("the recorder opens");
    let service = MarketData::new(ServiceLimits::default(), ReferenceBook::default());
    let live = Pump::new(Box::new(source), service.clone(), Some(recorder));
    let stats = &service.stats;
    run(live, |_| {
        stats.quotes_received.load(Ordering::Relaxed) >= 10
            && stats.ticks_received.load(Ordering::Relaxed) >= 10
    });
    let (quotes, ticks, last_prices) = (
        stats.quotes_received.load(Ordering::Relaxed),
        stats.ticks_received.load(Ordering::Relaxed),
        stats.last_prices_received.load(Ordering::Relaxed),
    );

    let mut reader = RecordReader::open(&path).expect("the recording opens");
    let (mut recorded_quotes, mut recorded_ticks, mut recorded_last_prices) = (0, 0, 0);
    let mut symbols = BTreeSet::new();
    while let Some(event) = reader.next_event().expect("every record is valid") {
        event.validate().expect("valid");
        symbols.insert(event.symbol().as_str().to_owned());
        match event {
            MarketEvent::Quote(q) => {
                assert_eq!(q.bids.len(), 10);
                assert_eq!(q.asks.len(), 10);
                recorded_quotes += 1;
            }
            MarketEvent::Tick(_) => recorded_ticks += 1,
            MarketEvent::LastPrice(_) => recorded_last_prices += 1,
        }
    }
    assert_eq!(
        (recorded_quotes, recorded_ticks, recorded_last_prices),
        (quotes, ticks, last_prices)
    );
    assert_eq!(symbols.len(), 2);

    let first = replay(&path);
    let second = replay(&path);
    assert_eq!(first, second);
    assert_eq!(
        first.1, recorded_quotes,
        "every recorded quote reached the engine"
    );
}
