//! The pump: polls a [`Source`], hands every event to the [`MarketData`] service (and the
//! recorder), and the top of book of each quote to the engine as a `QuoteUpdate` stamped
//! with the quote's source timestamp. It runs on the market-data thread; the engine side is
//! a non-blocking submit (`Submitter::try_submit_at` in the node) that may answer busy.
//!
//! Delivery ([`Delivery`]):
//! - **conflated** (the simulated and live feeds): the newest quote per symbol waits in the
//!   [`Conflator`]; a refused submit leaves it pending and a newer quote replaces it, so a
//!   fast feed never fills the input ring;
//! - **lossless** (replay): every quote waits in order in a backlog; while the backlog is not
//!   empty the source is not polled (backpressure), so the engine sees exactly the recorded
//!   sequence.
//!
//! **Invariants**: quotes of symbols the engine does not know and one-sided quotes are never
//! submitted (counted); the backlog holds at most one poll's quotes; the conflator at most
//! one quote per symbol.
//!
//! **Performance**: one pass over the batch; the buffers are reused between steps.
//!
//! **Known limitations**: the engine sees only the best level each side (its `QuoteUpdate`
//! carries one); the ten levels live in the service.

use crate::candle::CandleUpdate;
use crate::model::{MarketEvent, TimestampNs, TopOfBook};
use crate::record::Recorder;
use crate::service::MarketDataHandle;
use crate::source::{Delivery, Poll, Source, SourceError};
use kuku_engine::{Command, Symbol, SymbolCode, SymbolId};
use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::Ordering;
use std::time::Duration;

/// A quote's top of book for the engine, with its source timestamp.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EngineQuote {
    pub symbol: SymbolId,
    pub ts_ns: TimestampNs,
    pub top: TopOfBook,
}

impl EngineQuote {
    pub fn command(&self) -> Command {
        Command::QuoteUpdate {
            symbol: self.symbol,
            bid_price: self.top.bid.price,
            bid_qty: self.top.bid.qty,
            ask_price: self.top.ask.price,
            ask_qty: self.top.ask.qty,
        }
    }
}

/// Keeps the latest quote per symbol until the engine takes it.
#[derive(Default)]
pub struct Conflator {
    pending: BTreeMap<SymbolId, EngineQuote>,
}

impl Conflator {
    /// Replaces any pending quote of the same symbol; true if one was replaced.
    pub fn offer(&mut self, quote: EngineQuote) -> bool {
        self.pending.insert(quote.symbol, quote).is_some()
    }

    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Submits pending quotes in symbol order until one is refused; returns how many went.
    pub fn publish(&mut self, mut submit: impl FnMut(u64, Command) -> bool) -> usize {
        let mut sent = 0;
        while let Some((&symbol, quote)) = self.pending.iter().next() {
            if !submit(quote.ts_ns.0, quote.command()) {
                break;
            }
            self.pending.remove(&symbol);
            sent += 1;
        }
        sent
    }
}

/// Drives one source.
pub struct Pump {
    source: Box<dyn Source>,
    service: MarketDataHandle,
    recorder: Option<Recorder>,
    conflator: Conflator,
    backlog: VecDeque<EngineQuote>,
    events: Vec<MarketEvent>,
    ended: bool,
}

/// How long the pump waits before retrying a busy engine.
const BUSY_RETRY: Duration = Duration::from_millis(1);

impl Pump {
    pub fn new(
        source: Box<dyn Source>,
        service: MarketDataHandle,
        recorder: Option<Recorder>,
    ) -> Pump {
        Pump {
            source,
            service,
            recorder,
            conflator: Conflator::default(),
            backlog: VecDeque::new(),
            events: Vec::new(),
            ended: false,
        }
    }

    pub fn source_name(&self) -> &'static str {
        self.source.name()
    }

    /// True once the source ended and every quote of it went to the engine.
    pub fn finished(&self) -> bool {
        self.ended && self.backlog.is_empty() && self.conflator.pending() == 0
    }

    /// One round at `now_ns` (wall clock): hand waiting quotes to the engine, poll the source
    /// unless a lossless backlog waits, keep and record the events, hand their quotes on.
    /// `submit(ts_ns, command)` answers false when the engine is busy. Candle updates are
    /// appended to `candles` (for the candle store). Returns how long to wait before the
    /// next round.
    pub fn step(
        &mut self,
        now_ns: u64,
        universe: &[Symbol],
        submit: &mut impl FnMut(u64, Command) -> bool,
        candles: &mut Vec<CandleUpdate>,
    ) -> Result<Duration, SourceError> {
        if !self.drain(submit) {
            return Ok(BUSY_RETRY);
        }
        if self.ended {
            return Ok(Duration::from_millis(100));
        }
        self.events.clear();
        let polled = self
            .source
            .poll(TimestampNs(now_ns), universe, &mut self.events);
        let wait = match polled {
            Ok(Poll::Pending { wake_after }) => wake_after,
            Ok(Poll::Ended) => {
                self.end();
                Duration::from_millis(100)
            }
            Err(e) => {
                // The events before the error are still delivered.
                self.end();
                self.deliver(now_ns, universe, candles);
                self.drain(submit);
                return Err(e);
            }
        };
        self.deliver(now_ns, universe, candles);
        if !self.drain(submit) {
            return Ok(BUSY_RETRY);
        }
        Ok(wait)
    }

    fn end(&mut self) {
        self.ended = true;
        self.service.stats.source_ended.store(1, Ordering::Relaxed);
        if let Some(r) = &mut self.recorder
            && let Err(e) = r.flush()
        {
            tracing::warn!(error = %e, "The market-data recording could not be flushed.");
        }
    }

    /// Records and ingests the polled events and queues their quotes for the engine.
    fn deliver(&mut self, now_ns: u64, universe: &[Symbol], candles: &mut Vec<CandleUpdate>) {
        if self.events.is_empty() {
            return;
        }
        if let Some(r) = &mut self.recorder {
            let written = self.events.iter().try_for_each(|e| r.write(e));
            if let Err(e) = written {
                tracing::warn!(error = %e, "Recording stopped: the market-data file cannot be written.");
                self.recorder = None;
            }
        }
        self.service.ingest(&self.events, now_ns, candles);
        let ids: BTreeMap<SymbolCode, SymbolId> = universe.iter().map(|s| (s.code, s.id)).collect();
        let delivery = self.source.delivery();
        let stats = &self.service.stats;
        for event in &self.events {
            let MarketEvent::Quote(q) = event else {
                continue;
            };
            let (Some(&symbol), Some(top), Ok(())) =
                (ids.get(&q.symbol), q.top_of_book(), q.validate())
            else {
                stats.quotes_not_submitted.fetch_add(1, Ordering::Relaxed);
                continue;
            };
            let quote = EngineQuote {
                symbol,
                ts_ns: q.ts_ns,
                top,
            };
            match delivery {
                Delivery::Conflated => {
                    if self.conflator.offer(quote) {
                        stats.quotes_conflated.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Delivery::Lossless => self.backlog.push_back(quote),
            }
        }
    }

    /// Hands waiting quotes to the engine; true if nothing is left waiting.
    fn drain(&mut self, submit: &mut impl FnMut(u64, Command) -> bool) -> bool {
        let stats = &self.service.stats;
        while let Some(quote) = self.backlog.front() {
            if !submit(quote.ts_ns.0, quote.command()) {
                return false;
            }
            self.backlog.pop_front();
            stats.quotes_submitted.fetch_add(1, Ordering::Relaxed);
        }
        let sent = self.conflator.publish(&mut *submit);
        stats
            .quotes_submitted
            .fetch_add(sent as u64, Ordering::Relaxed);
        self.conflator.pending() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Level;
    use kuku_engine::{Price, Qty};

    fn q(sym: u32, bid: i64, ts: u64) -> EngineQuote {
        EngineQuote {
            symbol: SymbolId(sym),
            ts_ns: TimestampNs(ts),
            top: TopOfBook {
                bid: Level {
                    price: Price(bid),
                    qty: Qty(1),
                },
                ask: Level {
                    price: Price(bid + 100),
                    qty: Qty(1),
                },
            },
        }
    }

    #[test]
    fn conflation_keeps_the_latest_and_survives_busy() {
        let mut c = Conflator::default();
        for bid in [100, 200, 300] {
            c.offer(q(1, bid, bid as u64));
        }
        c.offer(q(2, 500, 7));
        let mut busy_once = true;
        let sent = c.publish(|_, _| !std::mem::replace(&mut busy_once, false));
        assert_eq!((sent, c.pending()), (0, 2), "refused: nothing lost");
        c.offer(q(1, 400, 9));
        let mut got = Vec::new();
        c.publish(|ts, cmd| {
            got.push((ts, cmd));
            true
        });
        assert_eq!(
            got,
            vec![(9, q(1, 400, 9).command()), (7, q(2, 500, 7).command())]
        );
    }
}
