//! Criterion microbenches of the market-data path (ADR-022): reading a recorded file (JSON
//! lines, the chosen format) against decoding the same events from postcard frames (the
//! framed-binary alternative), building candles from ticks, and one ingest of a simulated
//! batch into the service. Under `cargo test --benches` criterion runs each routine once, so
//! this is also a smoke test.
//!
//! Run: `cargo bench -p kuku-marketdata --bench marketdata`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use kuku_engine::{
    Market, Price, PriceBand, Qty, Side, Symbol, SymbolCode, SymbolId, SymbolName, TickRule,
};
use kuku_marketdata::record::{RecordReader, Recorder};
use kuku_marketdata::{
    CandleBuilder, LastPrice, LastTrade, Level, Levels, MarketData, MarketEvent, Quote,
    ReferenceBook, ServiceLimits, SimSource, Source, Tick, TimestampNs,
};

/// The framed-binary alternative's record: postcard needs a layout without optional fields
/// or internal tags, so the bench encodes this mirror of a `MarketEvent`.
#[derive(serde::Serialize, serde::Deserialize)]
enum Frame {
    Quote {
        symbol: String,
        ts_ns: u64,
        bids: Vec<(i64, i64)>,
        asks: Vec<(i64, i64)>,
        last_trade: Option<(i64, i64, u64)>,
    },
    Tick {
        symbol: String,
        ts_ns: u64,
        price: i64,
        qty: i64,
        buy: bool,
    },
    LastPrice {
        symbol: String,
        ts_ns: u64,
        price: i64,
    },
}

fn frame_of(e: &MarketEvent) -> Frame {
    let levels = |l: &Levels| l.as_slice().iter().map(|l| (l.price.0, l.qty.0)).collect();
    match e {
        MarketEvent::Quote(q) => Frame::Quote {
            symbol: q.symbol.to_string(),
            ts_ns: q.ts_ns.0,
            bids: levels(&q.bids),
            asks: levels(&q.asks),
            last_trade: q.last_trade.map(|t| (t.price.0, t.qty.0, t.ts_ns.0)),
        },
        MarketEvent::Tick(t) => Frame::Tick {
            symbol: t.symbol.to_string(),
            ts_ns: t.ts_ns.0,
            price: t.price.0,
            qty: t.qty.0,
            buy: t.aggressor == Side::Buy,
        },
        MarketEvent::LastPrice(l) => Frame::LastPrice {
            symbol: l.symbol.to_string(),
            ts_ns: l.ts_ns.0,
            price: l.price.0,
        },
    }
}

fn event_of(f: Frame) -> Option<MarketEvent> {
    let levels = |l: Vec<(i64, i64)>| {
        let l: Vec<Level> = l.into_iter().map(|(p, q)| Level::new(p, q)).collect();
        Levels::from_slice(&l)
    };
    Some(match f {
        Frame::Quote {
            symbol,
            ts_ns,
            bids,
            asks,
            last_trade,
        } => MarketEvent::Quote(Quote {
            symbol: SymbolCode::new(&symbol)?,
            ts_ns: TimestampNs(ts_ns),
            bids: levels(bids)?,
            asks: levels(asks)?,
            last_trade: last_trade.map(|(p, q, ts)| LastTrade {
                price: Price(p),
                qty: Qty(q),
                ts_ns: TimestampNs(ts),
            }),
        }),
        Frame::Tick {
            symbol,
            ts_ns,
            price,
            qty,
            buy,
        } => MarketEvent::Tick(Tick {
            symbol: SymbolCode::new(&symbol)?,
            ts_ns: TimestampNs(ts_ns),
            price: Price(price),
            qty: Qty(qty),
            aggressor: if buy { Side::Buy } else { Side::Sell },
        }),
        Frame::LastPrice {
            symbol,
            ts_ns,
            price,
        } => MarketEvent::LastPrice(LastPrice {
            symbol: SymbolCode::new(&symbol)?,
            ts_ns: TimestampNs(ts_ns),
            price: Price(price),
        }),
    })
}

/// Twelve symbols like the demo universe's price range.
fn universe() -> Vec<Symbol> {
    (0..12u32)
        .map(|i| {
            let base = 5_000 + i64::from(i) * 47_950;
            let base = TickRule::Krx.floor_to_grid(Price(base));
            Symbol {
                id: SymbolId(i + 1),
                code: SymbolCode::new(&format!("{:06}", i * 1_111)).expect("valid"),
                name: SymbolName::new("S").expect("valid"),
                market: Market::Kospi,
                tick_rule: TickRule::Krx,
                banded: true,
                base_price: base,
                band: PriceBand::krx(TickRule::Krx, base),
                lot_size: Qty(1),
                last_trade_price: None,
            }
        })
        .collect()
}

/// `steps` polls of the simulated source, 200 ms apart.
fn simulated(steps: u64) -> Vec<MarketEvent> {
    let universe = universe();
    let mut sim = SimSource::new(7, Duration::from_millis(200));
    let mut out = Vec::new();
    for i in 0..steps {
        sim.poll(
            TimestampNs(1_772_668_800_000_000_000 + i * 200_000_000),
            &universe,
            &mut out,
        )
        .expect("the simulation works");
    }
    out
}

fn formats(c: &mut Criterion) {
    let events = simulated(200);
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("md.jsonl");
    let mut recorder = Recorder::create(&path, "sim").expect("created");
    for e in &events {
        recorder.write(e).expect("written");
    }
    drop(recorder);
    let text = std::fs::read(&path).expect("readable");
    let frames: Vec<Vec<u8>> = events
        .iter()
        .map(|e| postcard::to_stdvec(&frame_of(e)).expect("encodes"))
        .collect();
    let json_bytes = text.len();
    let postcard_bytes: usize = frames.iter().map(|f| f.len() + 8).sum();
    println!(
        "{} events: JSON lines {json_bytes} bytes ({:.0}/event); postcard + 8-byte frame header (length, CRC) {postcard_bytes} bytes ({:.0}/event)",
        events.len(),
        json_bytes as f64 / events.len() as f64,
        postcard_bytes as f64 / events.len() as f64
    );
    println!(
        "size_of: Command {} bytes (the engine's input slot holds one), Quote {} bytes, \
         TopOfBook {} bytes",
        std::mem::size_of::<kuku_engine::Command>(),
        std::mem::size_of::<Quote>(),
        std::mem::size_of::<kuku_marketdata::TopOfBook>()
    );
    let mut group = c.benchmark_group("read_recording");
    group.throughput(Throughput::Elements(events.len() as u64));
    group.bench_function("json_lines", |b| {
        b.iter(|| {
            let input = std::io::Cursor::new(text.clone());
            let mut reader = RecordReader::new("bench".into(), Box::new(input)).expect("header");
            let mut n = 0;
            while let Some(e) = reader.next_event().expect("valid") {
                black_box(e);
                n += 1;
            }
            assert_eq!(n, events.len());
        })
    });
    group.bench_function("postcard_frames", |b| {
        b.iter(|| {
            for f in &frames {
                black_box(crc32c::crc32c(f));
                let frame: Frame = postcard::from_bytes(f).expect("decodes");
                let e = event_of(frame).expect("in range");
                e.validate().expect("valid");
                black_box(e);
            }
        })
    });
    group.finish();
}

fn candles_and_ingest(c: &mut Criterion) {
    let events = simulated(500);
    let ticks: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            MarketEvent::Tick(t) => Some(*t),
            MarketEvent::Quote(_) | MarketEvent::LastPrice(_) => None,
        })
        .collect();
    println!(
        "candles: {} ticks of {} symbols",
        ticks.len(),
        universe().len()
    );
    let mut group = c.benchmark_group("candles");
    group.throughput(Throughput::Elements(ticks.len() as u64));
    group.bench_function("on_tick", |b| {
        b.iter(|| {
            let mut builder = CandleBuilder::default();
            let mut out = Vec::with_capacity(ticks.len() * 8);
            for t in &ticks {
                builder.on_tick(t, &mut out);
            }
            black_box(out.len())
        })
    });
    group.finish();
    let batch = simulated(1);
    let mut group = c.benchmark_group("service");
    group.throughput(Throughput::Elements(batch.len() as u64));
    let service = MarketData::new(ServiceLimits::default(), ReferenceBook::default());
    let mut out = Vec::new();
    group.bench_function("ingest_one_sim_step_12_symbols", |b| {
        b.iter(|| {
            out.clear();
            service.ingest(&batch, 0, &mut out);
            black_box(out.len())
        })
    });
    group.finish();
}

criterion_group!(benches, formats, candles_and_ingest);
criterion_main!(benches);
