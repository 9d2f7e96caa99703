//! The market-data service: what the sources delivered, kept for readers. The pump
//! ([`crate::pump`]) ingests every event on the market-data thread; the HTTP door, the
//! WebSocket channels and the admin commands read through a [`MarketDataHandle`] (the latest
//! ten-level quote per symbol, its last price, the recent ticks, the recent candles, the
//! reference data) and
//! receive updates through a [`Subscription`] (a bounded queue) or a callback
//! ([`MarketData::subscribe_callback`], for an async consumer's own bounded channel).
//!
//! **Invariants**: a reader sees whole events (one lock per ingested batch); ticks and candles
//! are kept per symbol in time order, at most [`ServiceLimits::ticks_per_symbol_max`] and
//! [`ServiceLimits::candles_per_series_max`] (the oldest go first); a subscriber's queue is
//! bounded and the service never blocks on it: an update that does not fit is dropped and
//! counted in [`Subscription::dropped`].
//!
//! **Performance**: the pump takes the write lock once per batch; readers take the read lock
//! and copy out what they asked for. Fan-out costs one `try_send` per subscriber and update.
//!
//! A symbol's last price ([`Last`]) is its newest tick's price or its newest [`LastPrice`] (a
//! provider's fallback), whichever arrived later. A last price is not a quote and not a trade
//! (docs/adr/ADR-023-quote-sources-breaker-and-stale-quotes.md, amendment "Fallback prices in
//! the market-data service"): it changes neither the quote nor its age, and makes no candle;
//! like every event, its timestamp moves the market clock on (closing candles whose interval
//! ended).
//!
//! **Known limitations**: the history kept in memory is bounded; older candles are read from
//! the database (`kuku_persistence::market`). Quote age is measured from when the service
//! received the quote (a replay's recorded timestamps are in the past).

use crate::candle::{Candle, CandleBuilder, CandleUpdate};
use crate::model::{LastPrice, MarketEvent, Quote, Tick, TimestampNs};
use crate::reference::{
    Mapping, Market, MarketCode, ReferenceBook, ReferenceError, ReferenceSymbol,
};
use crate::time::Interval;
use kuku_engine::Price;
use kuku_engine::SymbolCode;
use parking_lot::{Mutex, RwLock};
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};

/// The shared service.
pub type MarketDataHandle = Arc<MarketData>;

/// Bounds of what the service keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServiceLimits {
    pub ticks_per_symbol_max: usize,
    /// Per symbol and interval (1,440 = a day of 1m candles).
    pub candles_per_series_max: usize,
    pub subscribers_max: usize,
    pub subscriber_queue_max: usize,
}

impl Default for ServiceLimits {
    fn default() -> Self {
        ServiceLimits {
            ticks_per_symbol_max: 1_000,
            candles_per_series_max: 1_440,
            subscribers_max: 256,
            subscriber_queue_max: 4_096,
        }
    }
}

/// Counters for /metrics (monotonic unless named otherwise).
#[derive(Debug, Default)]
pub struct MarketDataStats {
    pub quotes_received: AtomicU64,
    pub ticks_received: AtomicU64,
    /// Last prices a source delivered (a provider's fallback for a silent stream).
    pub last_prices_received: AtomicU64,
    /// Events a source delivered that failed validation (not kept, not submitted).
    pub events_invalid: AtomicU64,
    /// Quotes handed to the engine as `QuoteUpdate`.
    pub quotes_submitted: AtomicU64,
    /// Quotes replaced by a newer one of the same symbol before the engine took them.
    pub quotes_conflated: AtomicU64,
    /// Quotes of a symbol the engine does not know, or one-sided: not submitted.
    pub quotes_not_submitted: AtomicU64,
    /// Ticks left out of a candle because their interval had moved on.
    pub ticks_late: AtomicU64,
    /// Updates dropped because a subscriber's queue was full.
    pub subscriber_drops: AtomicU64,
    /// Candles the candle store failed to write (logged).
    pub candle_write_failures: AtomicU64,
    /// 1 once the source ended (a replay reached the end of its file).
    pub source_ended: AtomicU64,
}

/// An update pushed to subscribers. Not boxed: a subscriber's queue holds updates by value
/// and its capacity is fixed, so a boxed quote would only add an allocation per update.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Update {
    Quote(Quote),
    Tick(Tick),
    /// A fallback last price (delivered to subscribers of quotes).
    LastPrice(LastPrice),
    Candle(CandleUpdate),
}

impl Update {
    pub fn symbol(&self) -> SymbolCode {
        match self {
            Update::Quote(q) => q.symbol,
            Update::Tick(t) => t.symbol,
            Update::LastPrice(l) => l.symbol,
            Update::Candle(c) => c.candle.symbol,
        }
    }
}

/// Where a symbol's last price came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LastOrigin {
    /// A market trade (a tick).
    Trade,
    /// A provider's last-price snapshot ([`LastPrice`]), e.g. the KIS REST fallback.
    Fallback,
}

/// A symbol's last price: its newest tick's or its newest fallback price, whichever came last.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Last {
    pub price: Price,
    /// The event's timestamp.
    pub ts_ns: TimestampNs,
    pub origin: LastOrigin,
}

/// What a subscriber wants.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Topics {
    /// `None`: every symbol.
    pub symbol: Option<SymbolCode>,
    pub quotes: bool,
    pub ticks: bool,
    /// Candle updates of these intervals.
    pub candles: Vec<Interval>,
}

impl Topics {
    fn wants(&self, update: &Update) -> bool {
        if self.symbol.is_some_and(|s| s != update.symbol()) {
            return false;
        }
        match update {
            Update::Quote(_) | Update::LastPrice(_) => self.quotes,
            Update::Tick(_) => self.ticks,
            Update::Candle(c) => self.candles.contains(&c.candle.interval),
        }
    }
}

/// A subscriber's end: updates in order, with a count of those dropped when it fell behind.
pub struct Subscription {
    pub updates: Receiver<Update>,
    dropped: Arc<AtomicU64>,
}

impl Subscription {
    /// Updates dropped because the queue was full (a client that fell behind should re-read
    /// the snapshot through the query handle).
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// What a subscriber's callback did with an update (see [`MarketData::subscribe_callback`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Delivered {
    /// Taken (queued by the subscriber).
    Taken,
    /// The subscriber's own queue is full: the update is dropped and counted.
    Full,
    /// The subscriber is gone: it is removed.
    Closed,
}

/// A callback subscriber's end: only its count of dropped updates.
pub struct CallbackSubscription {
    dropped: Arc<AtomicU64>,
}

impl CallbackSubscription {
    /// Updates dropped because the callback answered [`Delivered::Full`].
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// A subscriber's callback: called on the market-data thread, must not block.
type Deliver = Box<dyn FnMut(&Update) -> Delivered + Send>;

enum Sink {
    Queue(SyncSender<Update>),
    Callback(Deliver),
}

impl Sink {
    fn deliver(&mut self, update: &Update) -> Delivered {
        match self {
            Sink::Queue(sender) => match sender.try_send(*update) {
                Ok(()) => Delivered::Taken,
                Err(TrySendError::Full(_)) => Delivered::Full,
                Err(TrySendError::Disconnected(_)) => Delivered::Closed,
            },
            Sink::Callback(deliver) => deliver(update),
        }
    }
}

struct Subscriber {
    topics: Topics,
    sink: Sink,
    dropped: Arc<AtomicU64>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SubscribeError {
    #[error("the market-data service has {0} subscribers already (subscribers_max)")]
    TooMany(usize),
}

/// A quote and when the service received it.
#[derive(Clone, Copy, Debug)]
struct LatestQuote {
    quote: Quote,
    received_ns: u64,
}

#[derive(Default)]
struct State {
    quotes: BTreeMap<SymbolCode, LatestQuote>,
    last: BTreeMap<SymbolCode, Last>,
    ticks: BTreeMap<SymbolCode, VecDeque<Tick>>,
    candles: BTreeMap<(SymbolCode, Interval), VecDeque<Candle>>,
    builder: CandleBuilder,
    /// The newest event timestamp seen (closes candles).
    market_now: TimestampNs,
    reference: ReferenceBook,
}

/// The service.
pub struct MarketData {
    limits: ServiceLimits,
    state: RwLock<State>,
    subscribers: Mutex<Vec<Subscriber>>,
    pub stats: MarketDataStats,
}

impl MarketData {
    pub fn new(limits: ServiceLimits, reference: ReferenceBook) -> MarketDataHandle {
        Arc::new(MarketData {
            limits,
            state: RwLock::new(State {
                reference,
                ..State::default()
            }),
            subscribers: Mutex::new(Vec::new()),
            stats: MarketDataStats::default(),
        })
    }

    /// Takes up the candles stored before a restart (the newest of each series): see
    /// [`CandleBuilder::resume`]. Call before the first [`MarketData::ingest`].
    pub fn resume_candles(&self, stored: &[Candle]) {
        let mut state = self.state.write();
        for candle in stored {
            state.builder.resume(*candle);
            keep_candle(
                &mut state.candles,
                *candle,
                self.limits.candles_per_series_max,
            );
        }
    }

    /// Keeps a batch of source events (invalid ones are counted and skipped), builds the
    /// candles, and pushes the updates to subscribers. Appends the candle updates to
    /// `candles_out` (for the candle store). `received_ns`: the wall clock now.
    pub fn ingest(
        &self,
        events: &[MarketEvent],
        received_ns: u64,
        candles_out: &mut Vec<CandleUpdate>,
    ) {
        let first_candle = candles_out.len();
        let mut updates = Vec::with_capacity(events.len() * 2);
        {
            let mut guard = self.state.write();
            let state = &mut *guard;
            for event in events {
                if event.validate().is_err() {
                    self.stats.events_invalid.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                state.market_now = state.market_now.max(event.ts_ns());
                match event {
                    MarketEvent::Quote(q) => {
                        self.stats.quotes_received.fetch_add(1, Ordering::Relaxed);
                        state.quotes.insert(
                            q.symbol,
                            LatestQuote {
                                quote: *q,
                                received_ns,
                            },
                        );
                        updates.push(Update::Quote(*q));
                    }
                    MarketEvent::Tick(t) => {
                        self.stats.ticks_received.fetch_add(1, Ordering::Relaxed);
                        let ticks = state.ticks.entry(t.symbol).or_default();
                        if ticks.len() == self.limits.ticks_per_symbol_max {
                            ticks.pop_front();
                        }
                        ticks.push_back(*t);
                        state.last.insert(
                            t.symbol,
                            Last {
                                price: t.price,
                                ts_ns: t.ts_ns,
                                origin: LastOrigin::Trade,
                            },
                        );
                        updates.push(Update::Tick(*t));
                        state.builder.on_tick(t, candles_out);
                    }
                    MarketEvent::LastPrice(l) => {
                        // A last price, not a quote: the quote and its age stay as they are;
                        // no size and no trade time, so no candle (ADR-023).
                        self.stats
                            .last_prices_received
                            .fetch_add(1, Ordering::Relaxed);
                        state.last.insert(
                            l.symbol,
                            Last {
                                price: l.price,
                                ts_ns: l.ts_ns,
                                origin: LastOrigin::Fallback,
                            },
                        );
                        updates.push(Update::LastPrice(*l));
                    }
                }
            }
            let market_now = state.market_now;
            state.builder.close_due(market_now, candles_out);
            let late = state.builder.ticks_late();
            self.stats.ticks_late.store(late, Ordering::Relaxed);
            for update in &candles_out[first_candle..] {
                keep_candle(
                    &mut state.candles,
                    update.candle,
                    self.limits.candles_per_series_max,
                );
                updates.push(Update::Candle(*update));
            }
        }
        self.publish(&updates);
    }

    fn publish(&self, updates: &[Update]) {
        let mut subscribers = self.subscribers.lock();
        subscribers.retain_mut(|s| {
            for update in updates.iter().filter(|u| s.topics.wants(u)) {
                match s.sink.deliver(update) {
                    Delivered::Taken => {}
                    Delivered::Full => {
                        s.dropped.fetch_add(1, Ordering::Relaxed);
                        self.stats.subscriber_drops.fetch_add(1, Ordering::Relaxed);
                    }
                    Delivered::Closed => return false,
                }
            }
            true
        });
    }

    /// Subscribes to updates; the queue holds `subscriber_queue_max` of them.
    pub fn subscribe(&self, topics: Topics) -> Result<Subscription, SubscribeError> {
        let (sender, updates) = sync_channel(self.limits.subscriber_queue_max);
        let dropped = self.add_subscriber(topics, Sink::Queue(sender))?;
        Ok(Subscription { updates, dropped })
    }

    /// Subscribes with a callback, called on the market-data thread for every wanted update
    /// (with the subscriber list locked): it must not block, e.g. a `try_send` into the
    /// subscriber's own bounded async channel (a WebSocket session's).
    pub fn subscribe_callback(
        &self,
        topics: Topics,
        deliver: impl FnMut(&Update) -> Delivered + Send + 'static,
    ) -> Result<CallbackSubscription, SubscribeError> {
        let dropped = self.add_subscriber(topics, Sink::Callback(Box::new(deliver)))?;
        Ok(CallbackSubscription { dropped })
    }

    fn add_subscriber(&self, topics: Topics, sink: Sink) -> Result<Arc<AtomicU64>, SubscribeError> {
        let mut subscribers = self.subscribers.lock();
        if subscribers.len() >= self.limits.subscribers_max {
            return Err(SubscribeError::TooMany(subscribers.len()));
        }
        let dropped = Arc::new(AtomicU64::new(0));
        subscribers.push(Subscriber {
            topics,
            sink,
            dropped: Arc::clone(&dropped),
        });
        Ok(dropped)
    }

    pub fn subscribers(&self) -> usize {
        self.subscribers.lock().len()
    }

    /// The latest ten-level quote of `symbol`.
    pub fn quote(&self, symbol: SymbolCode) -> Option<Quote> {
        self.state.read().quotes.get(&symbol).map(|l| l.quote)
    }

    /// The last price of `symbol`: its newest tick's or fallback price, whichever came last.
    pub fn last(&self, symbol: SymbolCode) -> Option<Last> {
        self.state.read().last.get(&symbol).copied()
    }

    /// The latest quote of every symbol, in code order.
    pub fn quotes(&self) -> Vec<Quote> {
        self.state.read().quotes.values().map(|l| l.quote).collect()
    }

    /// Seconds since each symbol's latest quote was received, at `now_ns` (wall clock).
    pub fn quote_ages_s(&self, now_ns: u64) -> Vec<(SymbolCode, f64)> {
        self.state
            .read()
            .quotes
            .iter()
            .map(|(s, l)| (*s, now_ns.saturating_sub(l.received_ns) as f64 / 1e9))
            .collect()
    }

    /// The newest `limit` ticks of `symbol`, oldest first.
    pub fn ticks(&self, symbol: SymbolCode, limit: usize) -> Vec<Tick> {
        let state = self.state.read();
        let Some(ticks) = state.ticks.get(&symbol) else {
            return Vec::new();
        };
        ticks
            .iter()
            .skip(ticks.len().saturating_sub(limit))
            .copied()
            .collect()
    }

    /// The kept candles of `symbol` and `interval` starting in `[from, to)`, oldest first, at
    /// most `limit` (the newest of the range). The open candle is included.
    pub fn candles(
        &self,
        symbol: SymbolCode,
        interval: Interval,
        from: TimestampNs,
        to: TimestampNs,
        limit: usize,
    ) -> Vec<Candle> {
        let state = self.state.read();
        let Some(series) = state.candles.get(&(symbol, interval)) else {
            return Vec::new();
        };
        let in_range: Vec<Candle> = series
            .iter()
            .filter(|c| c.start_ns >= from && c.start_ns < to)
            .copied()
            .collect();
        in_range[in_range.len().saturating_sub(limit)..].to_vec()
    }

    /// Every kept candle, in (symbol, interval, start) order (tests, the determinism check).
    pub fn all_candles(&self) -> Vec<Candle> {
        self.state
            .read()
            .candles
            .values()
            .flatten()
            .copied()
            .collect()
    }

    pub fn markets(&self) -> Vec<Market> {
        self.state.read().reference.markets()
    }

    pub fn reference_symbols(&self, market: Option<MarketCode>) -> Vec<ReferenceSymbol> {
        self.state.read().reference.symbols(market)
    }

    pub fn reference_symbol(&self, code: SymbolCode) -> Option<ReferenceSymbol> {
        self.state.read().reference.symbol(&code).cloned()
    }

    pub fn mappings(&self, provider: Option<&str>) -> Vec<Mapping> {
        self.state.read().reference.mappings(provider)
    }

    pub fn resolve(&self, provider: &str, external_code: &str) -> Option<SymbolCode> {
        self.state.read().reference.resolve(provider, external_code)
    }

    /// Registers (or updates) a symbol's reference data in memory (the caller persists it).
    pub fn register_symbol(&self, symbol: ReferenceSymbol) -> Result<(), ReferenceError> {
        self.state.write().reference.register(symbol)
    }

    /// Maps a provider's code in memory (the caller persists it).
    pub fn map_symbol(&self, mapping: Mapping) -> Result<(), ReferenceError> {
        self.state.write().reference.map(mapping)
    }
}

/// Keeps a candle's newest state: replaces the series' last candle if it is the same
/// interval, appends it otherwise (dropping the oldest beyond `max`).
fn keep_candle(
    candles: &mut BTreeMap<(SymbolCode, Interval), VecDeque<Candle>>,
    candle: Candle,
    max: usize,
) {
    let series = candles.entry((candle.symbol, candle.interval)).or_default();
    match series.back_mut() {
        Some(last) if last.start_ns == candle.start_ns => *last = candle,
        _ => {
            if series.len() == max {
                series.pop_front();
            }
            series.push_back(candle);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Level, Levels};
    use kuku_engine::{Price, Qty, Side};

    fn code() -> SymbolCode {
        SymbolCode::new("005930").expect("valid")
    }

    fn tick(ts: u64) -> MarketEvent {
        MarketEvent::Tick(Tick {
            symbol: code(),
            ts_ns: TimestampNs(ts),
            price: Price(100),
            qty: Qty(1),
            aggressor: Side::Buy,
        })
    }

    fn quote(ts: u64, bid: i64) -> MarketEvent {
        MarketEvent::Quote(Quote {
            symbol: code(),
            ts_ns: TimestampNs(ts),
            bids: Levels::from_slice(&[Level::new(bid, 1)]).expect("one"),
            asks: Levels::from_slice(&[Level::new(bid + 1, 1)]).expect("one"),
            last_trade: None,
        })
    }

    fn service(limits: ServiceLimits) -> MarketDataHandle {
        MarketData::new(limits, ReferenceBook::default())
    }

    #[test]
    fn the_newest_quote_and_the_newest_ticks_are_kept_within_their_bounds() {
        let md = service(ServiceLimits {
            ticks_per_symbol_max: 3,
            ..ServiceLimits::default()
        });
        let mut candles = Vec::new();
        let events: Vec<_> = (1..=5)
            .map(tick)
            .chain([quote(6, 90), quote(7, 95)])
            .collect();
        md.ingest(&events, 0, &mut candles);
        assert_eq!(
            md.ticks(code(), 10)
                .iter()
                .map(|t| t.ts_ns.0)
                .collect::<Vec<_>>(),
            [3, 4, 5]
        );
        assert_eq!(md.ticks(code(), 1).len(), 1);
        let MarketEvent::Quote(q) = quote(7, 95) else {
            unreachable!()
        };
        assert_eq!(md.quote(code()), Some(q));
        assert_eq!(md.stats.quotes_received.load(Ordering::Relaxed), 2);
        assert_eq!(md.stats.ticks_received.load(Ordering::Relaxed), 5);
    }

    fn last_price(ts: u64, price: i64) -> MarketEvent {
        MarketEvent::LastPrice(LastPrice {
            symbol: code(),
            ts_ns: TimestampNs(ts),
            price: Price(price),
        })
    }

    #[test]
    fn a_last_price_sets_the_last_but_not_the_quote_its_age_or_a_candle() {
        let md = service(ServiceLimits::default());
        let quotes = md
            .subscribe(Topics {
                quotes: true,
                candles: Interval::ALL.to_vec(),
                ..Topics::default()
            })
            .expect("room");
        let mut candles = Vec::new();
        md.ingest(&[last_price(5, 71_200)], 1_000, &mut candles);
        assert_eq!(md.quote(code()), None, "a last price is not a quote");
        assert!(
            md.quote_ages_s(2_000).is_empty(),
            "nor does it start an age"
        );
        assert_eq!(
            md.last(code()),
            Some(Last {
                price: Price(71_200),
                ts_ns: TimestampNs(5),
                origin: LastOrigin::Fallback
            })
        );
        assert!(candles.is_empty(), "no candle from a last price");
        let series = md.candles(
            code(),
            Interval::M1,
            TimestampNs(0),
            TimestampNs(u64::MAX),
            10,
        );
        assert!(series.is_empty());
        assert_eq!(md.stats.last_prices_received.load(Ordering::Relaxed), 1);
        let got: Vec<_> = quotes.updates.try_iter().collect();
        assert!(matches!(got.as_slice(), [Update::LastPrice(l)] if l.price == Price(71_200)));

        // A quote received earlier keeps its age through later last prices.
        md.ingest(&[quote(6, 90)], 10_000_000_000, &mut candles);
        md.ingest(&[last_price(7, 95)], 20_000_000_000, &mut candles);
        assert_eq!(md.quote_ages_s(30_000_000_000), [(code(), 20.0)]);
        assert_eq!(md.quote(code()).map(|q| q.ts_ns), Some(TimestampNs(6)));

        // The newer of a tick and a last price is the last.
        md.ingest(&[tick(8)], 0, &mut candles);
        let last = md.last(code()).expect("a last");
        assert_eq!((last.price, last.origin), (Price(100), LastOrigin::Trade));
        md.ingest(&[last_price(9, 101)], 0, &mut candles);
        let last = md.last(code()).expect("a last");
        assert_eq!(
            (last.price, last.origin),
            (Price(101), LastOrigin::Fallback)
        );
        assert_eq!(md.ticks(code(), 10).len(), 1, "a last price is not a tick");
    }

    #[test]
    fn invalid_events_are_counted_and_not_kept() {
        let md = service(ServiceLimits::default());
        md.ingest(&[quote(1, 0)], 0, &mut Vec::new());
        assert_eq!(md.quote(code()), None);
        assert_eq!(md.stats.events_invalid.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn a_full_subscriber_queue_drops_and_counts_without_blocking_the_source() {
        let md = service(ServiceLimits {
            subscriber_queue_max: 2,
            subscribers_max: 2,
            ..ServiceLimits::default()
        });
        let ticks_only = md
            .subscribe(Topics {
                ticks: true,
                ..Topics::default()
            })
            .expect("room");
        let candles_1d = md
            .subscribe(Topics {
                candles: vec![Interval::D1],
                ..Topics::default()
            })
            .expect("room");
        assert_eq!(
            md.subscribe(Topics::default()).err(),
            Some(SubscribeError::TooMany(2))
        );
        let events: Vec<_> = (1..=5).map(tick).collect();
        md.ingest(&events, 0, &mut Vec::new());
        assert_eq!(ticks_only.updates.try_iter().count(), 2);
        assert_eq!(ticks_only.dropped(), 3);
        let got: Vec<_> = candles_1d.updates.try_iter().collect();
        assert!(
            got.iter()
                .all(|u| matches!(u, Update::Candle(c) if c.candle.interval == Interval::D1))
        );
        drop(ticks_only);
        md.ingest(&[tick(6)], 0, &mut Vec::new());
        assert_eq!(md.subscribers(), 1, "a dropped subscription is removed");
    }

    #[test]
    fn a_callback_subscriber_is_called_per_wanted_update_and_removed_when_closed() {
        let md = service(ServiceLimits::default());
        let seen = Arc::new(parking_lot::Mutex::new(Vec::new()));
        // A subscriber whose own queue holds one update, then goes away.
        let mut calls = 0;
        let sub = {
            let seen = Arc::clone(&seen);
            md.subscribe_callback(
                Topics {
                    quotes: true,
                    ..Topics::default()
                },
                move |u| {
                    calls += 1;
                    match calls {
                        1 => {
                            seen.lock().push(*u);
                            Delivered::Taken
                        }
                        2 => Delivered::Full,
                        _ => Delivered::Closed,
                    }
                },
            )
            .expect("room")
        };
        md.ingest(&[quote(1, 90), tick(2), quote(3, 91)], 0, &mut Vec::new());
        let MarketEvent::Quote(first) = quote(1, 90) else {
            unreachable!()
        };
        assert_eq!(
            *seen.lock(),
            [Update::Quote(first)],
            "quotes only, in order"
        );
        assert_eq!(sub.dropped(), 1, "the second quote did not fit");
        assert_eq!(md.subscribers(), 1);
        md.ingest(&[quote(4, 92)], 0, &mut Vec::new());
        assert_eq!(md.subscribers(), 0, "Closed removes it");
    }

    #[test]
    fn candle_series_keep_the_newest_state_of_each_interval_up_to_their_bound() {
        let md = service(ServiceLimits {
            candles_per_series_max: 2,
            ..ServiceLimits::default()
        });
        let minute = 60_000_000_000;
        let events: Vec<_> = [0, 1, minute, 2 * minute, 2 * minute + 1]
            .into_iter()
            .map(tick)
            .collect();
        md.ingest(&events, 0, &mut Vec::new());
        let m1 = md.candles(
            code(),
            Interval::M1,
            TimestampNs(0),
            TimestampNs(u64::MAX),
            10,
        );
        assert_eq!(
            m1.iter()
                .map(|c| (c.start_ns.0, c.trades))
                .collect::<Vec<_>>(),
            [(minute, 1), (2 * minute, 2)]
        );
        let newest = md.candles(
            code(),
            Interval::M1,
            TimestampNs(0),
            TimestampNs(u64::MAX),
            1,
        );
        assert_eq!(newest.len(), 1);
        assert!(
            md.candles(
                code(),
                Interval::M1,
                TimestampNs(0),
                TimestampNs(minute),
                10
            )
            .is_empty()
        );
    }
}
