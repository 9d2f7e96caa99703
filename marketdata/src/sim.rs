//! The simulated market: a random walk of each symbol's mid price on its tick grid, inside its
//! daily band, shown as a ten-level book either side of the mid, with a market trade at the
//! best bid or ask on about half the steps, so that a new user's order has liquidity to fill
//! against and the candles have ticks.
//!
//! **Invariants**: every quote is on the grid, inside the band, not crossed or locked (best
//! bid < best ask) and has at most ten levels a side; every tick trades at the best level of
//! the quote that follows it and no more than that level's quantity. The walk is
//! deterministic for a seed and the sequence of `now` values it is polled with.
//!
//! **Performance**: one step per symbol per poll; no allocation per step (the output buffer is
//! the caller's).
//!
//! **Known limitations**: the walk knows nothing of real prices beyond the base price and the
//! engine's last trade; the levels' sizes are uniform random.

use crate::model::{LEVELS_MAX, LastTrade, Level, Levels, MarketEvent, Quote, Tick, TimestampNs};
use crate::source::{Delivery, Poll, Source, SourceError};
use kuku_engine::{Price, Qty, Side, Symbol, SymbolCode};
use std::collections::BTreeMap;
use std::time::Duration;

/// A deterministic xorshift generator (the feed's randomness never touches the engine).
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

/// The simulated source.
pub struct SimSource {
    rng: Rng,
    mids: BTreeMap<SymbolCode, Price>,
    /// Largest number of ticks the mid moves per step.
    pub step_ticks_max: u64,
    /// How often the pump polls (one walk step per symbol per poll).
    pub interval: Duration,
}

impl SimSource {
    pub fn new(seed: u64, interval: Duration) -> SimSource {
        SimSource {
            rng: Rng::new(seed),
            mids: BTreeMap::new(),
            step_ticks_max: 2,
            interval,
        }
    }

    /// One step of `symbol`: a tick (on about half the steps) and the quote after it. Nothing
    /// if the symbol has no band or its band is too narrow for a bid and an ask.
    pub fn step(&mut self, symbol: &Symbol, now: TimestampNs, out: &mut Vec<MarketEvent>) {
        let Some(band) = symbol.band else { return };
        let rule = symbol.tick_rule;
        let floor = rule.tick_index(band.lower);
        let ceiling = rule.tick_index(band.upper);
        let (lo, hi) = (floor + 1, ceiling - 1);
        if lo > hi {
            return;
        }
        let start = symbol.last_trade_price.unwrap_or(symbol.base_price);
        let mid = *self.mids.entry(symbol.code).or_insert(start);
        let moves = 2 * self.step_ticks_max + 1;
        let delta = self.rng.below(moves) as i64 - self.step_ticks_max as i64;
        let index = (rule.tick_index(rule.floor_to_grid(mid)) + delta).clamp(lo, hi);
        self.mids.insert(symbol.code, rule.price_at_index(index));
        let mut bids = Levels::EMPTY;
        let mut asks = Levels::EMPTY;
        for depth in 1..=LEVELS_MAX as i64 {
            if index - depth >= floor {
                bids.push(self.level(rule.price_at_index(index - depth)));
            }
            if index + depth <= ceiling {
                asks.push(self.level(rule.price_at_index(index + depth)));
            }
        }
        let tick = self.trade(symbol.code, now, &bids, &asks);
        if let Some(t) = tick {
            out.push(MarketEvent::Tick(t));
        }
        out.push(MarketEvent::Quote(Quote {
            symbol: symbol.code,
            ts_ns: now,
            bids,
            asks,
            last_trade: tick.map(|t| LastTrade {
                price: t.price,
                qty: t.qty,
                ts_ns: t.ts_ns,
            }),
        }));
    }

    fn level(&mut self, price: Price) -> Level {
        Level {
            price,
            qty: Qty((1 + self.rng.below(10) as i64) * 100),
        }
    }

    /// A trade at the best bid (a seller hit it) or the best ask (a buyer lifted it).
    fn trade(
        &mut self,
        symbol: SymbolCode,
        now: TimestampNs,
        bids: &Levels,
        asks: &Levels,
    ) -> Option<Tick> {
        if self.rng.below(2) == 0 {
            return None;
        }
        let aggressor = if self.rng.below(2) == 0 {
            Side::Buy
        } else {
            Side::Sell
        };
        let level = match aggressor {
            Side::Buy => asks.best()?,
            Side::Sell => bids.best()?,
        };
        let qty = (1 + self.rng.below(10) as i64) * 10;
        Some(Tick {
            symbol,
            ts_ns: now,
            price: level.price,
            qty: Qty(qty.min(level.qty.0)),
            aggressor,
        })
    }
}

impl Source for SimSource {
    fn name(&self) -> &'static str {
        "sim"
    }

    fn delivery(&self) -> Delivery {
        Delivery::Conflated
    }

    fn poll(
        &mut self,
        now: TimestampNs,
        universe: &[Symbol],
        out: &mut Vec<MarketEvent>,
    ) -> Result<Poll, SourceError> {
        for symbol in universe {
            self.step(symbol, now, out);
        }
        Ok(Poll::Pending {
            wake_after: self.interval.max(Duration::from_millis(1)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kuku_engine::{Market, PriceBand, SymbolId, SymbolName, TickRule};

    fn symbol(base: i64) -> Symbol {
        Symbol {
            id: SymbolId(1),
            code: SymbolCode::new("005930").expect("valid"),
            name: SymbolName::new("S").expect("valid"),
            market: Market::Kospi,
            tick_rule: TickRule::Krx,
            banded: true,
            base_price: Price(base),
            band: PriceBand::krx(TickRule::Krx, Price(base)),
            lot_size: Qty(1),
            last_trade_price: None,
        }
    }

    #[test]
    fn quotes_stay_on_grid_inside_the_band_and_uncrossed_at_every_depth() {
        for base in [1_990, 4_995, 19_990, 49_950, 119_900, 499_500, 1_699_000] {
            let s = symbol(base);
            let band = s.band.expect("banded");
            let mut sim = SimSource::new(base as u64, Duration::from_millis(1));
            sim.step_ticks_max = 50;
            let mut out = Vec::new();
            for i in 0..2_000 {
                out.clear();
                sim.step(&s, TimestampNs(i), &mut out);
                let Some(MarketEvent::Quote(q)) = out.last() else {
                    panic!("every step ends with a quote")
                };
                assert_eq!(q.validate(), Ok(()));
                assert!(q.top_of_book().is_some(), "two-sided for base {base}");
                for l in q.bids.as_slice().iter().chain(q.asks.as_slice()) {
                    assert!(
                        s.tick_rule.is_on_grid(l.price) && band.contains(l.price),
                        "{} for base {base}",
                        l.price
                    );
                }
                if let [MarketEvent::Tick(t), MarketEvent::Quote(_)] = out.as_slice() {
                    let best = match t.aggressor {
                        Side::Buy => q.asks.best(),
                        Side::Sell => q.bids.best(),
                    }
                    .expect("the traded side exists");
                    assert_eq!(t.price, best.price);
                    assert!(t.qty <= best.qty && t.qty.0 > 0);
                }
            }
        }
    }

    #[test]
    fn the_walk_is_deterministic_for_a_seed() {
        let s = symbol(71_000);
        let run = |seed| {
            let mut sim = SimSource::new(seed, Duration::from_millis(1));
            let mut out = Vec::new();
            for i in 0..100 {
                sim.step(&s, TimestampNs(i), &mut out);
            }
            out
        };
        assert_eq!(run(7), run(7));
        assert_ne!(run(7), run(8));
    }
}
