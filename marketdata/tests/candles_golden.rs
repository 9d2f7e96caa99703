//! Candles against the hand-written golden fixture (tests/fixtures/candles_golden.txt).
//!
//! The test's own clock conversion turns the fixture's KST wall-clock times into Unix
//! nanoseconds by counting days, independently of the crate's interval arithmetic.

use kuku_engine::{Price, Qty, Side, SymbolCode};
use kuku_marketdata::{Candle, CandleBuilder, Interval, Tick, TimestampNs};
use std::collections::BTreeMap;

const FIXTURE: &str = include_str!("fixtures/candles_golden.txt");

/// Days from 1970-01-01 to `y-m-d` by counting whole years and months.
fn days_since_epoch(y: i64, m: i64, d: i64) -> i64 {
    let leap = |y: i64| (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let mut days = 0;
    for year in 1970..y {
        days += if leap(year) { 366 } else { 365 };
    }
    let month_days = [
        31,
        if leap(y) { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    days += month_days[..(m - 1) as usize].iter().sum::<i64>();
    days + d - 1
}

/// "YYYY-MM-DD" and "HH:MM[:SS.mmm]" in KST to Unix nanoseconds.
fn kst_ns(date: &str, time: &str) -> u64 {
    let n = |s: &str| s.parse::<i64>().expect("a number in the fixture");
    let ymd: Vec<i64> = date.split('-').map(n).collect();
    let (hms, millis) = time.split_once('.').unwrap_or((time, "0"));
    let hms: Vec<i64> = hms.split(':').map(n).collect();
    let seconds_kst = days_since_epoch(ymd[0], ymd[1], ymd[2]) * 86_400
        + hms[0] * 3_600
        + hms[1] * 60
        + hms.get(2).copied().unwrap_or(0);
    ((seconds_kst - 9 * 3_600) * 1_000_000_000 + n(millis) * 1_000_000) as u64
}

fn code(s: &str) -> SymbolCode {
    SymbolCode::new(s).expect("a valid code in the fixture")
}

fn fixture() -> (Vec<Tick>, Vec<Candle>) {
    let mut ticks = Vec::new();
    let mut candles = Vec::new();
    for line in FIXTURE.lines().map(str::trim) {
        let f: Vec<&str> = line.split_whitespace().collect();
        let int = |s: &str| s.parse::<i64>().expect("a number in the fixture");
        match f.first() {
            Some(&"tick") => ticks.push(Tick {
                symbol: code(f[1]),
                ts_ns: TimestampNs(kst_ns(f[2], f[3])),
                price: Price(int(f[4])),
                qty: Qty(int(f[5])),
                aggressor: if f[6] == "Buy" { Side::Buy } else { Side::Sell },
            }),
            Some(&"candle") => candles.push(Candle {
                symbol: code(f[1]),
                interval: Interval::parse(f[2]).expect("an interval in the fixture"),
                start_ns: TimestampNs(kst_ns(f[3], f[4])),
                open: Price(int(f[5])),
                high: Price(int(f[6])),
                low: Price(int(f[7])),
                close: Price(int(f[8])),
                volume: int(f[9]),
                trades: int(f[10]) as u64,
            }),
            _ => {}
        }
    }
    (ticks, candles)
}

/// Every candle's final state, keyed by (symbol, interval, start).
type Book = BTreeMap<(SymbolCode, Interval, TimestampNs), Candle>;

fn build(ticks: &[Tick]) -> (Book, usize) {
    let mut builder = CandleBuilder::default();
    let mut updates = Vec::new();
    for t in ticks {
        builder.on_tick(t, &mut updates);
    }
    let closed = updates.iter().filter(|u| u.closed).count();
    let mut book = Book::new();
    for u in updates {
        book.insert(
            (u.candle.symbol, u.candle.interval, u.candle.start_ns),
            u.candle,
        );
    }
    (book, closed)
}

#[test]
fn the_test_clock_agrees_with_a_known_date() {
    // 2026-03-05 09:00 KST = 2026-03-05 00:00 UTC = 1772668800 (date -u -d 2026-03-05 +%s).
    assert_eq!(kst_ns("2026-03-05", "09:00"), 1_772_668_800_000_000_000);
}

#[test]
fn candles_match_the_hand_written_golden_fixture() {
    let (ticks, expected) = fixture();
    assert_eq!(ticks.len(), 12);
    assert_eq!(expected.len(), 26);
    let (built, _) = build(&ticks);
    let expected: Book = expected
        .into_iter()
        .map(|c| ((c.symbol, c.interval, c.start_ns), c))
        .collect();
    for (key, want) in &expected {
        assert_eq!(built.get(key), Some(want), "candle {key:?}");
    }
    let extra: Vec<_> = built.keys().filter(|k| !expected.contains_key(k)).collect();
    assert!(extra.is_empty(), "candles not in the fixture: {extra:?}");
}

#[test]
fn an_interval_without_trades_has_no_candle() {
    let (ticks, _) = fixture();
    let (built, _) = build(&ticks);
    let empty_minute = (
        code("005930"),
        Interval::M1,
        TimestampNs(kst_ns("2026-03-05", "09:02")),
    );
    assert!(!built.contains_key(&empty_minute));
    let around = built
        .range(
            (
                code("005930"),
                Interval::M1,
                TimestampNs(kst_ns("2026-03-05", "09:01")),
            )
                ..=(
                    code("005930"),
                    Interval::M1,
                    TimestampNs(kst_ns("2026-03-05", "09:03")),
                ),
        )
        .count();
    assert_eq!(around, 2, "09:01 and 09:03 only");
}

#[test]
fn trades_at_the_same_timestamp_keep_their_arrival_order() {
    let (mut ticks, _) = fixture();
    // The three 09:00:00.000 trades in another order: the minute's open changes with them.
    ticks.swap(1, 3);
    let (built, _) = build(&ticks);
    let minute = built[&(
        code("005930"),
        Interval::M1,
        TimestampNs(kst_ns("2026-03-05", "09:00")),
    )];
    assert_eq!(
        (minute.open, minute.high, minute.low),
        (Price(70_900), Price(71_100), Price(70_900))
    );
}

#[test]
fn every_candle_but_the_newest_of_each_series_was_closed_by_a_later_tick() {
    let (ticks, expected) = fixture();
    let (_, closed) = build(&ticks);
    let series: std::collections::BTreeSet<_> =
        expected.iter().map(|c| (c.symbol, c.interval)).collect();
    assert_eq!(closed, expected.len() - series.len());
}
