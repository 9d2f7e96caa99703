//! The source contract (src/source.rs), run against every source: the simulated walk and the
//! replay of a recording of it.

use kuku_engine::{
    Market, Price, PriceBand, Qty, Symbol, SymbolCode, SymbolId, SymbolName, TickRule,
};
use kuku_marketdata::record::{RecordReader, Recorder};
use kuku_marketdata::{
    Delivery, MarketEvent, Poll, ReplaySource, SimSource, Source, Speed, TimestampNs,
};
use std::collections::BTreeMap;
use std::time::Duration;

const MS: u64 = 1_000_000;
const START_NS: u64 = 1_772_668_800_000_000_000;

fn universe() -> Vec<Symbol> {
    [
        ("005930", 71_000),
        ("000660", 180_000),
        ("035720", 41_950),
        ("TINY", 2),
    ]
    .into_iter()
    .enumerate()
    .map(|(i, (code, base))| Symbol {
        id: SymbolId(i as u32 + 1),
        code: SymbolCode::new(code).expect("valid"),
        name: SymbolName::new(code).expect("valid"),
        market: Market::Kospi,
        tick_rule: TickRule::Krx,
        banded: true,
        base_price: Price(base),
        band: PriceBand::krx(TickRule::Krx, Price(base)),
        lot_size: Qty(1),
        last_trade_price: None,
    })
    .collect()
}

/// Polls `source` `polls` times, `step_ms` apart, checking the contract; returns the events.
fn run_contract(source: &mut dyn Source, polls: u64, step_ms: u64) -> (Vec<MarketEvent>, bool) {
    let universe = universe();
    let mut events = Vec::new();
    let mut last_ts: BTreeMap<SymbolCode, TimestampNs> = BTreeMap::new();
    let mut ended = false;
    for i in 0..polls {
        let mut out = Vec::new();
        let poll = source
            .poll(
                TimestampNs(START_NS + i * step_ms * MS),
                &universe,
                &mut out,
            )
            .expect("the source works");
        if ended {
            assert_eq!(poll, Poll::Ended, "Ended is final");
            assert!(out.is_empty(), "nothing after the end");
        }
        for e in &out {
            assert_eq!(e.validate(), Ok(()), "{e:?}");
            let last = last_ts.entry(e.symbol()).or_default();
            assert!(e.ts_ns() >= *last, "time went backwards for {}", e.symbol());
            *last = e.ts_ns();
        }
        match poll {
            Poll::Ended => ended = true,
            Poll::Pending { wake_after } => assert!(wake_after <= Duration::from_secs(1)),
        }
        events.extend(out);
    }
    (events, ended)
}

fn record(events: &[MarketEvent], path: &std::path::Path) {
    let mut recorder = Recorder::create(path, "sim").expect("created");
    for e in events {
        recorder.write(e).expect("written");
    }
}

#[test]
fn the_simulated_source_keeps_the_contract_and_quotes_every_banded_symbol() {
    let mut sim = SimSource::new(42, Duration::from_millis(200));
    assert_eq!(sim.delivery(), Delivery::Conflated);
    let (events, ended) = run_contract(&mut sim, 50, 200);
    assert!(!ended, "a live source does not end");
    let quoted: std::collections::BTreeSet<_> = events
        .iter()
        .filter_map(|e| match e {
            MarketEvent::Quote(q) => Some(q.symbol.to_string()),
            MarketEvent::Tick(_) | MarketEvent::LastPrice(_) => None,
        })
        .collect();
    // TINY (base 2 KRW) has a band too narrow for a bid and an ask: never quoted.
    assert_eq!(
        quoted.into_iter().collect::<Vec<_>>(),
        ["000660", "005930", "035720"]
    );
    assert!(events.iter().any(|e| matches!(e, MarketEvent::Tick(_))));
}

#[test]
fn the_replay_source_keeps_the_contract_and_delivers_exactly_what_was_recorded() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("md.jsonl");
    let (recorded, _) = run_contract(&mut SimSource::new(42, Duration::from_millis(200)), 50, 200);
    record(&recorded, &path);
    let mut replay = ReplaySource::open(&path, Speed::UNPACED).expect("opened");
    replay.batch_max = 7;
    assert_eq!(replay.delivery(), Delivery::Lossless);
    let (replayed, ended) = run_contract(&mut replay, 1_000, 1);
    assert!(ended);
    assert_eq!(replayed, recorded);
}

#[test]
fn a_paced_replay_delivers_each_event_when_its_recorded_gap_has_passed() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("md.jsonl");
    let (recorded, _) = run_contract(&mut SimSource::new(1, Duration::from_millis(200)), 5, 200);
    record(&recorded, &path);
    // Twice the recorded pace: events 200 ms apart come 100 ms apart.
    let mut replay = ReplaySource::open(&path, Speed::new(2.0).expect("valid")).expect("opened");
    let universe = universe();
    let mut out = Vec::new();
    let poll = |r: &mut ReplaySource, ms: u64, out: &mut Vec<MarketEvent>| {
        r.poll(TimestampNs(START_NS + ms * MS), &universe, out)
            .expect("works")
    };
    assert!(matches!(
        poll(&mut replay, 0, &mut out),
        Poll::Pending { .. }
    ));
    let first_step = out.len();
    assert!(out.iter().all(|e| e.ts_ns().0 == START_NS));
    assert!(
        matches!(poll(&mut replay, 99, &mut out), Poll::Pending { wake_after } if wake_after == Duration::from_millis(1))
    );
    assert_eq!(out.len(), first_step, "nothing due before 100 ms");
    poll(&mut replay, 100, &mut out);
    assert!(out.len() > first_step);
    assert!(out.iter().all(|e| e.ts_ns().0 <= START_NS + 200 * MS));
    assert_eq!(poll(&mut replay, 10_000, &mut out), Poll::Ended);
    assert_eq!(out, recorded);
}

#[test]
fn a_replay_of_a_bad_file_stops_at_the_bad_line_after_delivering_the_good_ones() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("md.jsonl");
    let (recorded, _) = run_contract(&mut SimSource::new(3, Duration::from_millis(200)), 2, 200);
    record(&recorded, &path);
    let mut text = std::fs::read_to_string(&path).expect("readable");
    text.push_str("{\"kind\":\"tick\",\"symbol\":\"005930\"}\n");
    std::fs::write(&path, text).expect("writable");
    let mut replay = ReplaySource::open(&path, Speed::UNPACED).expect("the header is fine");
    let mut out = Vec::new();
    let mut error = None;
    for _ in 0..10 {
        match replay.poll(TimestampNs(START_NS), &universe(), &mut out) {
            Ok(Poll::Ended) => break,
            Ok(_) => {}
            Err(e) => error = Some(e.to_string()),
        }
    }
    assert_eq!(out, recorded);
    let line = recorded.len() + 2;
    let error = error.expect("the bad line is an error");
    assert!(error.contains(&format!("line {line}")), "{error}");
    assert!(RecordReader::open(&dir.path().join("missing")).is_err());
}
