//! The built-in simulated quote feed: a random walk of each symbol's mid on its tick grid,
//! inside its daily band, turned into `QuoteUpdate` commands (best bid and ask one tick
//! either side of the mid, random sizes) so that a new user's order has liquidity to fill
//! against.
//!
//! Conflation: the feed keeps only the latest quote per symbol and publishes each dirty
//! symbol at most once per tick; a quote refused with `Busy` stays pending and is replaced by
//! newer ones, so a fast feed can never fill the input ring.
//!
//! **Invariants**: every published quote is on the grid, inside the band, and not crossed
//! or locked (bid < ask); the walk is deterministic for a seed.

use crate::pipeline::{Busy, Origin, Submitter};
use kuku_engine::{Command, Price, Qty, Symbol, SymbolId};
use std::collections::BTreeMap;

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

/// One side-by-side quote for a symbol.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Quote {
    pub symbol: SymbolId,
    pub bid: Price,
    pub bid_qty: Qty,
    pub ask: Price,
    pub ask_qty: Qty,
}

impl Quote {
    pub fn command(&self) -> Command {
        Command::QuoteUpdate {
            symbol: self.symbol,
            bid_price: self.bid,
            bid_qty: self.bid_qty,
            ask_price: self.ask,
            ask_qty: self.ask_qty,
        }
    }
}

/// The random walk of every symbol's mid price.
pub struct QuoteSim {
    rng: Rng,
    mids: BTreeMap<SymbolId, Price>,
    /// Largest number of ticks the mid moves per step.
    pub step_ticks_max: u64,
}

impl QuoteSim {
    pub fn new(seed: u64) -> QuoteSim {
        QuoteSim {
            rng: Rng::new(seed),
            mids: BTreeMap::new(),
            step_ticks_max: 2,
        }
    }

    /// The next quote of `symbol`, or `None` if it has no band or its band is too narrow.
    pub fn step(&mut self, symbol: &Symbol) -> Option<Quote> {
        let band = symbol.band?;
        let rule = symbol.tick_rule;
        let lo = rule.tick_index(band.lower) + 1;
        let hi = rule.tick_index(band.upper) - 1;
        if lo > hi {
            return None;
        }
        let start = symbol.last_trade_price.unwrap_or(symbol.base_price);
        let mid = *self.mids.entry(symbol.id).or_insert(start);
        let moves = (2 * self.step_ticks_max + 1) as i64;
        let delta = self.rng.below(moves as u64) as i64 - self.step_ticks_max as i64;
        let index = (rule.tick_index(rule.floor_to_grid(mid)) + delta).clamp(lo, hi);
        let mid = rule.price_at_index(index);
        self.mids.insert(symbol.id, mid);
        let size = |r: &mut Rng| Qty((1 + r.below(10) as i64) * 100);
        Some(Quote {
            symbol: symbol.id,
            bid: rule.price_at_index(index - 1),
            bid_qty: size(&mut self.rng),
            ask: rule.price_at_index(index + 1),
            ask_qty: size(&mut self.rng),
        })
    }
}

/// Keeps the latest quote per symbol until it is published.
#[derive(Default)]
pub struct Conflator {
    pending: BTreeMap<SymbolId, Quote>,
}

impl Conflator {
    /// Replaces any pending quote of the same symbol.
    pub fn offer(&mut self, quote: Quote) {
        self.pending.insert(quote.symbol, quote);
    }

    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Publishes pending quotes in symbol order until one is refused; returns how many went.
    pub fn publish(&mut self, mut submit: impl FnMut(Command) -> Result<(), Busy>) -> usize {
        let mut sent = 0;
        while let Some((&symbol, quote)) = self.pending.iter().next() {
            if submit(quote.command()).is_err() {
                break;
            }
            self.pending.remove(&symbol);
            sent += 1;
        }
        sent
    }
}

/// Publishes through a pipeline submitter with the internal origin.
pub fn submit_via(submitter: &mut Submitter) -> impl FnMut(Command) -> Result<(), Busy> + '_ {
    move |c| submitter.try_submit(Origin::INTERNAL, c)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kuku_engine::{Market, PriceBand, SymbolCode, SymbolName, TickRule};

    fn symbol(base: i64) -> Symbol {
        Symbol {
            id: SymbolId(1),
            code: SymbolCode::new("005930").unwrap(),
            name: SymbolName::new("S").unwrap(),
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
    fn quotes_stay_on_grid_inside_the_band_and_uncrossed() {
        for base in [1_990, 4_995, 19_990, 49_950, 119_900, 499_500, 1_699_000] {
            let s = symbol(base);
            let band = s.band.unwrap();
            let mut sim = QuoteSim::new(base as u64);
            sim.step_ticks_max = 50;
            for _ in 0..5_000 {
                let q = sim.step(&s).unwrap();
                assert!(q.bid < q.ask);
                for p in [q.bid, q.ask] {
                    assert!(
                        s.tick_rule.is_on_grid(p) && band.contains(p),
                        "{p} for base {base}"
                    );
                }
            }
        }
    }

    #[test]
    fn the_walk_is_deterministic_for_a_seed() {
        let s = symbol(71_000);
        let run = |seed| {
            let mut sim = QuoteSim::new(seed);
            (0..100).map(|_| sim.step(&s).unwrap()).collect::<Vec<_>>()
        };
        assert_eq!(run(7), run(7));
        assert_ne!(run(7), run(8));
    }

    #[test]
    fn conflation_keeps_the_latest_and_survives_busy() {
        let mut c = Conflator::default();
        let q = |sym: u32, bid: i64| Quote {
            symbol: SymbolId(sym),
            bid: Price(bid),
            bid_qty: Qty(1),
            ask: Price(bid + 100),
            ask_qty: Qty(1),
        };
        for bid in [100, 200, 300] {
            c.offer(q(1, bid));
        }
        c.offer(q(2, 500));
        let mut busy_once = true;
        let sent = c.publish(|_| {
            if busy_once {
                busy_once = false;
                Err(Busy)
            } else {
                Ok(())
            }
        });
        assert_eq!((sent, c.pending()), (0, 2), "refused: nothing lost");
        c.offer(q(1, 400));
        let mut got = Vec::new();
        c.publish(|cmd| {
            got.push(cmd);
            Ok(())
        });
        assert_eq!(got, vec![q(1, 400).command(), q(2, 500).command()]);
    }
}
