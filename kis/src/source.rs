//! KIS as a market-data [`Source`] of kuku-marketdata, and the handle through which the node
//! journals each symbol's quote status before the pump delivers that symbol's next quote.
//!
//! The adapter's records become market events: a ten-level book a [`Quote`], a trade a
//! [`Tick`], a REST fallback price a [`LastPrice`]. Events are stamped with the poll's `now`
//! (KIS's `HHMMSS` has whole seconds only), never earlier than the last stamp, so per-symbol
//! timestamps never go backwards.
//!
//! The order that keeps the engine consistent (ADR-023): the node calls
//! [`KisStatus::changes`] first, which moves what the adapter received into this source's
//! buffer and reports the status changes it implies (a stale symbol with a new book turns
//! fresh); it journals them; then the pump polls, and the quotes follow their status.
//!
//! **Invariants**: every event handed out is valid (`MarketEvent::validate`); the buffer
//! holds at most `events_queued_max` events (more are dropped and counted); the source never
//! blocks and never ends.
//!
//! A fallback price is a last price, neither a quote nor a trade (ADR-023): it becomes a
//! `LastPrice` event, which the market-data service shows as the symbol's last, and it does
//! not refresh the symbol's quote age, so it never turns a stale symbol fresh.
//!
//! **Known limitations**: a fallback price is stamped when the pump takes it, like every KIS
//! event; KIS does not say when that last trade happened.

use crate::frame::{Book, Record, Trade};
use crate::metrics::KisMetrics;
use crate::session::{KisAdapter, KisEvent};
use crate::staleness::{QuoteStatus, StaleTracker};
use crate::{KisConfig, KisError, ShortCode};
use kuku_engine::{Price, Side, Symbol, SymbolCode};
use kuku_marketdata::{
    Delivery, LastPrice, Level, Levels, MarketEvent, Poll, Quote, Source, SourceError, Tick,
    TimestampNs,
};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

struct Inner {
    adapter: KisAdapter,
    tracker: StaleTracker,
    pending: Vec<MarketEvent>,
    pending_max: usize,
    last_ts: u64,
    received: Vec<KisEvent>,
    transitions: Vec<(ShortCode, QuoteStatus)>,
}

/// The KIS source the pump polls.
pub struct KisSource {
    inner: Arc<Mutex<Inner>>,
    metrics: Arc<KisMetrics>,
}

/// The node's side: quote-status changes to journal.
#[derive(Clone)]
pub struct KisStatus {
    inner: Arc<Mutex<Inner>>,
}

fn lock(m: &Mutex<Inner>) -> std::sync::MutexGuard<'_, Inner> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn code_of(code: ShortCode) -> Option<SymbolCode> {
    SymbolCode::new(code.as_str())
}

/// A KIS book as a market quote (levels with a price and a size; empty sides stay empty).
pub fn quote_of(book: &Book, ts_ns: TimestampNs) -> Option<Quote> {
    let side = |levels: &[crate::frame::BookLevel]| {
        let mut out = Levels::EMPTY;
        for l in levels.iter().filter(|l| l.price.0 > 0 && l.qty.0 > 0) {
            out.push(Level {
                price: l.price,
                qty: l.qty,
            });
        }
        out
    };
    let quote = Quote {
        symbol: code_of(book.code)?,
        ts_ns,
        bids: side(&book.bids),
        asks: side(&book.asks),
        last_trade: None,
    };
    quote.validate().ok().map(|()| quote)
}

/// A REST fallback price as a market last price (`None`: not a valid code or price).
pub fn last_price_of(code: ShortCode, price: Price, ts_ns: TimestampNs) -> Option<LastPrice> {
    let last = LastPrice {
        symbol: code_of(code)?,
        ts_ns,
        price,
    };
    last.validate().ok().map(|()| last)
}

/// A KIS trade as a market tick (a buyer took liquidity if it traded at or above the ask).
pub fn tick_of(trade: &Trade, ts_ns: TimestampNs) -> Option<Tick> {
    let aggressor = if trade.best_ask.0 > 0 && trade.price >= trade.best_ask {
        Side::Buy
    } else {
        Side::Sell
    };
    let tick = Tick {
        symbol: code_of(trade.code)?,
        ts_ns,
        price: trade.price,
        qty: trade.qty,
        aggressor,
    };
    tick.validate().ok().map(|()| tick)
}

impl Inner {
    /// Moves what the adapter received into the buffer, observing quote times (of stream
    /// records only: a fallback price does not refresh the quote age).
    fn collect(&mut self, now: Instant, ts: TimestampNs) {
        self.received.clear();
        self.adapter.drain(&mut self.received);
        for event in std::mem::take(&mut self.received) {
            let market = match &event {
                KisEvent::Record(record) => {
                    self.tracker.observe(record.code(), now);
                    match record {
                        Record::Book(b) => quote_of(b, ts).map(MarketEvent::Quote),
                        Record::Trade(t) => tick_of(t, ts).map(MarketEvent::Tick),
                    }
                }
                KisEvent::FallbackPrice { code, price } => {
                    last_price_of(*code, *price, ts).map(MarketEvent::LastPrice)
                }
                KisEvent::Connected | KisEvent::Disconnected { .. } => continue,
            };
            match market {
                Some(e) if self.pending.len() < self.pending_max => self.pending.push(e),
                Some(_) => KisMetrics::add(&self.adapter.metrics().events_dropped, 1),
                None => KisMetrics::add(&self.adapter.metrics().frames_rejected, 1),
            }
        }
    }

    fn stamp(&mut self, now_ns: u64) -> TimestampNs {
        self.last_ts = self.last_ts.max(now_ns);
        TimestampNs(self.last_ts)
    }
}

impl KisSource {
    /// Starts the adapter for `config` and returns the source and its status handle.
    pub fn start(config: KisConfig) -> Result<(KisSource, KisStatus), KisError> {
        let tracker = StaleTracker::new(&config.symbols, config.limits.stale_after);
        let pending_max = config.limits.events_queued_max;
        let adapter = KisAdapter::start(config)?;
        let metrics = adapter.metrics();
        let inner = Arc::new(Mutex::new(Inner {
            adapter,
            tracker,
            pending: Vec::new(),
            pending_max,
            last_ts: 0,
            received: Vec::new(),
            transitions: Vec::new(),
        }));
        Ok((
            KisSource {
                inner: Arc::clone(&inner),
                metrics,
            },
            KisStatus { inner },
        ))
    }

    pub fn metrics(&self) -> Arc<KisMetrics> {
        Arc::clone(&self.metrics)
    }
}

impl KisStatus {
    /// Appends every quote-status change since the last call (symbol order), after moving
    /// what the adapter received into the source's buffer.
    pub fn changes(&self, now: Instant, now_ns: u64, out: &mut Vec<(SymbolCode, QuoteStatus)>) {
        let mut inner = lock(&self.inner);
        let ts = inner.stamp(now_ns);
        inner.collect(now, ts);
        let mut transitions = std::mem::take(&mut inner.transitions);
        transitions.clear();
        inner.tracker.transitions(now, &mut transitions);
        out.extend(
            transitions
                .iter()
                .filter_map(|(c, s)| Some((code_of(*c)?, *s))),
        );
        inner.transitions = transitions;
    }

    /// How old the newest quote of `code` is.
    pub fn quote_age(&self, code: ShortCode, now: Instant) -> Option<Duration> {
        lock(&self.inner).tracker.age(code, now)
    }
}

impl Source for KisSource {
    fn name(&self) -> &'static str {
        "kis"
    }

    fn delivery(&self) -> Delivery {
        Delivery::Conflated
    }

    fn poll(
        &mut self,
        now: TimestampNs,
        _universe: &[Symbol],
        out: &mut Vec<MarketEvent>,
    ) -> Result<Poll, SourceError> {
        let mut inner = lock(&self.inner);
        let ts = inner.stamp(now.0);
        inner.collect(Instant::now(), ts);
        for mut event in inner.pending.drain(..) {
            // Stamped at delivery: never earlier than any event delivered before.
            event.set_ts_ns(ts);
            out.push(event);
        }
        Ok(Poll::Pending {
            wake_after: Duration::from_millis(20),
        })
    }
}
