//! Candles (OHLCV) built from the market's ticks, downstream of the source on the market-data
//! thread (never on the processor, never from Kuku's own fills).
//!
//! Rules (docs/market-data.md, "Candles"):
//! - Intervals 1m, 5m, 1h, 1d start on the KST wall clock ([`Interval::start_of`]); 1d is a
//!   KST calendar day.
//! - Ticks are taken in arrival order: of trades at the same timestamp the first is the
//!   open and the last the close.
//! - **An interval without trades produces no candle**: there is no row and no update for
//!   it; a client that draws a continuous chart carries the previous close forward itself.
//! - A candle is *closed* when the market clock (the newest event timestamp the service saw,
//!   tick or quote) reaches its end, or a tick of a later interval arrives. A tick older than
//!   the symbol's open candle of an interval (or for an interval already closed) is late: it
//!   is counted and left out of that interval.
//!
//! **Invariants**: `low <= open, close <= high`; `volume` is the sum of the ticks' quantities
//! (saturating at `i64::MAX`), `trades >= 1`.
//!
//! **Performance**: O(log symbols) per tick and interval; one open candle per symbol and
//! interval is kept here (the history lives in the service and the database).
//!
//! **Known limitations**: no turnover (price x quantity) column; no trading-calendar
//! awareness (a candle is wherever a tick is).

use crate::model::{Tick, TimestampNs};
use crate::time::Interval;
use kuku_engine::{Price, SymbolCode};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One candle of one symbol and interval.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Candle {
    pub symbol: SymbolCode,
    pub interval: Interval,
    /// The interval's start (Unix ns, on the KST grid).
    pub start_ns: TimestampNs,
    pub open: Price,
    pub high: Price,
    pub low: Price,
    pub close: Price,
    /// Shares traded.
    pub volume: i64,
    /// Ticks in the interval.
    pub trades: u64,
}

impl Candle {
    fn first(tick: &Tick, interval: Interval, start_ns: TimestampNs) -> Candle {
        Candle {
            symbol: tick.symbol,
            interval,
            start_ns,
            open: tick.price,
            high: tick.price,
            low: tick.price,
            close: tick.price,
            volume: tick.qty.0,
            trades: 1,
        }
    }

    fn add(&mut self, tick: &Tick) {
        self.high = self.high.max(tick.price);
        self.low = self.low.min(tick.price);
        self.close = tick.price;
        self.volume = self.volume.saturating_add(tick.qty.0);
        self.trades += 1;
        debug_assert!(self.low <= self.open && self.open <= self.high);
        debug_assert!(self.low <= self.close && self.close <= self.high);
    }

    /// The end (exclusive) of its interval.
    pub fn end_ns(&self) -> TimestampNs {
        self.interval.end_of(self.start_ns)
    }
}

/// A candle that changed, and whether it is final.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CandleUpdate {
    pub candle: Candle,
    pub closed: bool,
}

#[derive(Clone, Copy, Debug)]
struct Slot {
    candle: Candle,
    closed: bool,
}

/// Builds every symbol's candles from its ticks.
#[derive(Default)]
pub struct CandleBuilder {
    current: BTreeMap<(SymbolCode, Interval), Slot>,
    ticks_late: u64,
}

impl CandleBuilder {
    /// Adds a tick to the candle of each interval; appends what changed (a candle the tick
    /// closed first, then the one it updated).
    pub fn on_tick(&mut self, tick: &Tick, out: &mut Vec<CandleUpdate>) {
        for interval in Interval::ALL {
            let start = interval.start_of(tick.ts_ns);
            let key = (tick.symbol, interval);
            match self.current.get_mut(&key) {
                Some(slot) if slot.candle.start_ns == start && !slot.closed => {
                    slot.candle.add(tick);
                    out.push(CandleUpdate {
                        candle: slot.candle,
                        closed: false,
                    });
                }
                Some(slot) if slot.candle.start_ns >= start => self.ticks_late += 1,
                slot => {
                    if let Some(slot) = slot
                        && !slot.closed
                    {
                        out.push(CandleUpdate {
                            candle: slot.candle,
                            closed: true,
                        });
                    }
                    let candle = Candle::first(tick, interval, start);
                    self.current.insert(
                        key,
                        Slot {
                            candle,
                            closed: false,
                        },
                    );
                    out.push(CandleUpdate {
                        candle,
                        closed: false,
                    });
                }
            }
        }
    }

    /// Closes every open candle whose interval ended at or before `market_now`.
    pub fn close_due(&mut self, market_now: TimestampNs, out: &mut Vec<CandleUpdate>) {
        for slot in self.current.values_mut() {
            if !slot.closed && slot.candle.end_ns() <= market_now {
                slot.closed = true;
                out.push(CandleUpdate {
                    candle: slot.candle,
                    closed: true,
                });
            }
        }
    }

    /// Takes up a candle stored before a restart as the open candle of its series, so the
    /// next tick of the same interval extends it (its open, high, low, volume and trade count
    /// stand) instead of starting the interval again and overwriting the stored row. A series
    /// that already has a candle as new or newer keeps it. The market clock closes a resumed
    /// candle whose interval has ended like any other.
    pub fn resume(&mut self, candle: Candle) {
        let key = (candle.symbol, candle.interval);
        if self
            .current
            .get(&key)
            .is_some_and(|slot| slot.candle.start_ns >= candle.start_ns)
        {
            return;
        }
        self.current.insert(
            key,
            Slot {
                candle,
                closed: false,
            },
        );
    }

    /// Ticks left out because their interval had moved on.
    pub fn ticks_late(&self) -> u64 {
        self.ticks_late
    }

    /// The newest candle of `symbol` and `interval` (open or just closed).
    pub fn current(&self, symbol: SymbolCode, interval: Interval) -> Option<Candle> {
        self.current.get(&(symbol, interval)).map(|s| s.candle)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kuku_engine::{Qty, Side};

    const MIN: u64 = 60_000_000_000;

    fn tick(ts: u64, price: i64, qty: i64) -> Tick {
        Tick {
            symbol: SymbolCode::new("005930").expect("valid"),
            ts_ns: TimestampNs(ts),
            price: Price(price),
            qty: Qty(qty),
            aggressor: Side::Buy,
        }
    }

    #[test]
    fn a_late_tick_is_counted_and_left_out() {
        let mut b = CandleBuilder::default();
        let mut out = Vec::new();
        b.on_tick(&tick(2 * MIN, 100, 1), &mut out);
        b.on_tick(&tick(MIN, 90, 1), &mut out);
        let m1 = b.current(tick(0, 1, 1).symbol, Interval::M1).expect("one");
        assert_eq!(
            (m1.start_ns, m1.low, m1.trades),
            (TimestampNs(2 * MIN), Price(100), 1)
        );
        assert_eq!(b.ticks_late(), 1, "only the 1m interval had moved on");
    }

    #[test]
    fn the_market_clock_closes_candles_once_and_a_closed_interval_takes_no_more_ticks() {
        let mut b = CandleBuilder::default();
        let mut out = Vec::new();
        b.on_tick(&tick(MIN, 100, 1), &mut out);
        out.clear();
        b.close_due(TimestampNs(2 * MIN), &mut out);
        assert_eq!(out.len(), 1, "only the 1m candle ended");
        assert!(out[0].closed && out[0].candle.interval == Interval::M1);
        out.clear();
        b.close_due(TimestampNs(2 * MIN), &mut out);
        assert!(out.is_empty());
        b.on_tick(&tick(MIN + 1, 100, 1), &mut out);
        assert_eq!(b.ticks_late(), 1);
        assert!(out.iter().all(|u| u.candle.interval != Interval::M1));
    }

    #[test]
    fn a_resumed_candle_is_extended_by_the_next_tick_of_its_interval() {
        let mut b = CandleBuilder::default();
        let stored = Candle {
            trades: 3,
            volume: 30,
            ..Candle::first(&tick(MIN + 5, 100, 10), Interval::M1, TimestampNs(MIN))
        };
        let stored = Candle {
            high: Price(120),
            low: Price(95),
            close: Price(110),
            ..stored
        };
        b.resume(stored);
        let mut out = Vec::new();
        b.on_tick(&tick(MIN + 30, 90, 2), &mut out);
        let m1 = b.current(stored.symbol, Interval::M1).expect("one");
        assert_eq!(
            (m1.open, m1.high, m1.low, m1.close, m1.volume, m1.trades),
            (Price(100), Price(120), Price(90), Price(90), 32, 4)
        );
        assert_eq!(
            out[0],
            CandleUpdate {
                candle: m1,
                closed: false
            }
        );
        // An older stored candle never replaces a newer one.
        b.resume(Candle {
            start_ns: TimestampNs(0),
            ..stored
        });
        assert_eq!(b.current(stored.symbol, Interval::M1), Some(m1));
    }

    #[test]
    fn a_resumed_candle_whose_interval_ended_is_closed_and_takes_no_tick() {
        let mut b = CandleBuilder::default();
        let stored = Candle::first(&tick(MIN, 100, 1), Interval::M1, TimestampNs(MIN));
        b.resume(stored);
        let mut out = Vec::new();
        b.on_tick(&tick(3 * MIN, 105, 1), &mut out);
        assert_eq!(
            out[0],
            CandleUpdate {
                candle: stored,
                closed: true
            }
        );
        let m1 = b.current(stored.symbol, Interval::M1).expect("one");
        assert_eq!(
            (m1.start_ns, m1.open, m1.trades),
            (TimestampNs(3 * MIN), Price(105), 1)
        );
    }

    #[test]
    fn volume_saturates_instead_of_overflowing() {
        let mut b = CandleBuilder::default();
        let mut out = Vec::new();
        for _ in 0..3 {
            b.on_tick(&tick(MIN, 100, i64::MAX / 2), &mut out);
        }
        let c = b.current(tick(0, 1, 1).symbol, Interval::D1).expect("one");
        assert_eq!((c.volume, c.trades), (i64::MAX, 3));
    }
}
