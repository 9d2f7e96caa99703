//! A silent KIS stream, through the source and the pump into the market-data service: the
//! REST fallback's price becomes the symbol's last (origin `Fallback`), without a quote,
//! without a candle and without turning the symbol fresh; the recorded session carries it as a
//! `last_price` record and a replay of the file restores the same last. Everything binds
//! 127.0.0.1; every wait is bounded.

use kuku_engine::testkit::cmd;
use kuku_engine::{
    Command, Engine, EngineConfig, Envelope, FeeSchedule, Market, MarketPhase, NullSink, Price,
    Symbol,
};
use kuku_kis::testkit::{self, FakeKis, FakeKisConfig};
use kuku_kis::{KisConfig, KisLimits, KisSource, QuoteStatus, Secret, ShortCode};
use kuku_marketdata::record::RecordReader;
use kuku_marketdata::{
    Interval, LastOrigin, MarketData, MarketDataHandle, MarketEvent, Pump, Recorder, ReferenceBook,
    ReplaySource, ServiceLimits, Speed, TimestampNs,
};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const WAIT_MAX: Duration = Duration::from_secs(15);
const CODE: &str = "005930";

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_nanos() as u64
}

fn code() -> ShortCode {
    ShortCode::parse(CODE).expect("code")
}

fn symbol() -> kuku_engine::SymbolCode {
    kuku_engine::SymbolCode::new(CODE).expect("code")
}

/// An engine that knows 005930 and trades continuously (the pump's universe).
fn universe() -> Vec<Symbol> {
    let mut engine = Engine::new(EngineConfig::small());
    let commands = [
        Command::SetFeeSchedule(FeeSchedule::KRX_2026),
        cmd::register_krx(CODE, "Samsung Electronics", Market::Kospi, 71_000),
        Command::StartOfDay {
            trading_day: 20_261_207,
            base_prices: Vec::new(),
        },
        Command::SetMarketPhase {
            phase: MarketPhase::Continuous,
        },
    ];
    for (i, command) in commands.into_iter().enumerate() {
        let seq = i as u64 + 1;
        engine.apply(
            &Envelope {
                seq,
                ts: 1,
                command,
            },
            &mut NullSink,
        );
    }
    engine.symbols().copied().collect()
}

fn service() -> MarketDataHandle {
    MarketData::new(ServiceLimits::default(), ReferenceBook::default())
}

/// Steps the pump until `done` holds (bounded); the engine's commands are counted only.
fn step_until(pump: &mut Pump, universe: &[Symbol], what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT_MAX;
    let mut candles = Vec::new();
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        pump.step(now_ns(), universe, &mut |_, _| true, &mut candles)
            .expect("the source keeps going");
        assert!(candles.is_empty(), "a last price makes no candle");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn a_silent_stream_s_fallback_price_is_the_symbols_last_in_the_market_data_service() {
    let fake = FakeKis::start(FakeKisConfig::default()).expect("fake KIS");
    // The session connects and subscribes, and no frame ever comes.
    fake.faults.silence.store(true, Ordering::SeqCst);
    let dir = tempfile::tempdir().expect("a temp dir");
    let config = KisConfig {
        rest_base: fake.rest_base(),
        rest_ca_file: None,
        ws_url: fake.ws_url(),
        app_key: Secret::new(testkit::APP_KEY),
        app_secret: Secret::new(testkit::APP_SECRET),
        token_cache: dir.path().join("token.json"),
        symbols: vec![code()],
        limits: KisLimits {
            fallback_after: Duration::from_millis(200),
            stale_after: Duration::from_millis(400),
            silence_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_millis(500),
            ..KisLimits::default()
        },
    };
    let (source, status) = KisSource::start(config).expect("the KIS source starts");
    let metrics = source.metrics();
    let path = dir.path().join("kis-fallback.jsonl");
    let recorder = Recorder::create(&path, "kis").expect("the recorder opens");
    let service = service();
    let mut pump = Pump::new(Box::new(source), service.clone(), Some(recorder));
    let universe = universe();

    let mut changes = Vec::new();
    step_until(&mut pump, &universe, "two fallback prices", || {
        status.changes(Instant::now(), now_ns(), &mut changes);
        service.stats.last_prices_received.load(Ordering::Relaxed) >= 2
    });
    status.changes(Instant::now(), now_ns(), &mut changes);

    let expected = fake.price_of(code()).expect("the fake's price");
    let last = service.last(symbol()).expect("a last price");
    assert_eq!(last.price, Price(expected));
    assert_eq!(last.origin, LastOrigin::Fallback);
    assert!(
        metrics.fallback_prices.load(Ordering::Relaxed)
            >= service.stats.last_prices_received.load(Ordering::Relaxed),
        "every delivered last price was a counted fallback price"
    );
    assert_eq!(service.quote(symbol()), None, "a last price is not a quote");
    assert!(service.quote_ages_s(now_ns()).is_empty());
    assert!(service.ticks(symbol(), 10).is_empty(), "nor a trade");
    let candles = service.candles(
        symbol(),
        Interval::M1,
        TimestampNs(0),
        TimestampNs(u64::MAX),
        10,
    );
    assert!(candles.is_empty(), "nor a candle point");
    assert_eq!(
        changes,
        vec![(symbol(), QuoteStatus::Stale)],
        "never quoted, the symbol is stale, and fallback prices do not turn it fresh"
    );
    assert_eq!(
        service.stats.quotes_submitted.load(Ordering::Relaxed),
        0,
        "the engine gets no quote from a last price"
    );
    drop(pump);

    // The recording holds the last prices and a replay restores the same last.
    let mut reader = RecordReader::open(&path).expect("the recording opens");
    assert_eq!(reader.version(), kuku_marketdata::record::FORMAT_VERSION);
    let mut recorded = Vec::new();
    while let Some(event) = reader.next_event().expect("every record is valid") {
        recorded.push(event);
    }
    assert!(recorded.len() >= 2, "{recorded:?}");
    assert!(recorded.iter().all(|e| matches!(
        e,
        MarketEvent::LastPrice(l) if l.symbol == symbol() && l.price == Price(expected)
    )));
    let replayed = service_after_replay(&path, &universe);
    let newest = *recorded.last().expect("not empty");
    assert_eq!(
        replayed.last(symbol()).map(|l| l.ts_ns),
        Some(newest.ts_ns())
    );
    assert_eq!(replayed.last(symbol()).map(|l| l.price), Some(last.price));
    assert_eq!(replayed.quote(symbol()), None);
}

fn service_after_replay(path: &std::path::Path, universe: &[Symbol]) -> MarketDataHandle {
    let service = service();
    let source = ReplaySource::open(path, Speed::UNPACED).expect("the recording opens");
    let mut pump = Pump::new(Box::new(source), service.clone(), None);
    step_until(&mut pump, universe, "the replay to end", || {
        pump_finished(&service)
    });
    service
}

fn pump_finished(service: &MarketDataHandle) -> bool {
    service.stats.source_ended.load(Ordering::Relaxed) == 1
}
