//! The fan-out: one thread takes the feed's messages ([`FeedMsg`]) from its bounded queue,
//! serializes each once, and pushes it into the bounded [`Outbox`] of every connection
//! subscribed to its topic. It keeps each symbol's top-10 book as clients see it (applying
//! exactly the feed's snapshots and updates), so a new subscriber, a resync or a conflated
//! connection gets a snapshot consistent with the updates that follow it.
//!
//! **Invariants**
//! - The registry lock is held while the fan-out applies a book message to its copy and
//!   pushes it, and while a session pushes a snapshot of that copy: a snapshot at `seq` is
//!   always followed, in that connection's queue, by update `seq+1`.
//! - An [`Outbox`] never holds more than `queue_frames_max` frames. When a book update does
//!   not fit, the connection's queued updates of that book are removed and the book is
//!   marked stale; the session replaces them with one snapshot once it has drained the
//!   queue. A trade, candle or account message that does not fit, or more than
//!   `slow_overflows_max` overflows, close the connection as a slow consumer.
//! - The fan-out never waits on a socket: it only locks a queue, pushes and notifies.
//!
//! **Performance**: one JSON serialization per message, then a reference-counted frame per
//! subscriber; one registry lock per message.

use super::WsMetrics;
use super::WsSettings;
use super::feed::{BookMsg, FeedMsg, Levels};
use super::protocol::WsCode;
use axum::extract::ws::Utf8Bytes;
use kuku_engine::{AccountId, Event, Side, SymbolCode};
use kuku_marketdata::{Interval, Update};
use parking_lot::{Mutex, RwLock};
use rustc_hash::{FxHashMap, FxHashSet};
use serde_json::{Value, json};
use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, TryRecvError};
use std::time::Duration;

/// How long the fan-out thread sleeps when its queue is empty (see [`Hub::run`]).
pub const IDLE_POLL: Duration = Duration::from_micros(500);

/// What a connection subscribes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Topic {
    Quote(SymbolCode),
    Trades(SymbolCode),
    Book(SymbolCode),
    Candles(SymbolCode, Interval),
    Account(AccountId),
}

impl Topic {
    pub fn channel(&self) -> &'static str {
        match self {
            Topic::Quote(_) => "quote",
            Topic::Trades(_) => "trades",
            Topic::Book(_) => "book",
            Topic::Candles(..) => "candles",
            Topic::Account(_) => "account",
        }
    }

    pub fn symbol(&self) -> Option<SymbolCode> {
        match *self {
            Topic::Quote(s) | Topic::Trades(s) | Topic::Book(s) | Topic::Candles(s, _) => Some(s),
            Topic::Account(_) => None,
        }
    }

    pub fn interval(&self) -> Option<Interval> {
        match *self {
            Topic::Candles(_, i) => Some(i),
            _ => None,
        }
    }
}

/// A queued frame; `book` names the symbol of a book update (removed when conflated).
struct Frame {
    text: Utf8Bytes,
    book: Option<SymbolCode>,
}

/// How a message may be dropped when a connection's queue is full.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A book update: conflated into a later snapshot.
    BookUpdate(SymbolCode),
    /// A book snapshot: owed again (as a stale book) if it does not fit.
    BookSnapshot(SymbolCode),
    /// Superseded by the next one (quotes, replies, pongs): dropped.
    Droppable,
    /// Must not be lost (trades, candles, account messages): the connection is closed.
    Essential,
}

impl Kind {
    fn book(self) -> Option<SymbolCode> {
        match self {
            Kind::BookUpdate(s) | Kind::BookSnapshot(s) => Some(s),
            Kind::Droppable | Kind::Essential => None,
        }
    }
}

#[derive(Default)]
struct OutboxInner {
    frames: VecDeque<Frame>,
    /// Books whose updates were conflated: a snapshot is owed.
    stale: Vec<SymbolCode>,
    overflows: u64,
    closing: Option<(WsCode, String)>,
}

/// A connection's bounded queue of frames, written by the fan-out and the session, read by
/// the session.
pub struct Outbox {
    pub id: u64,
    inner: Mutex<OutboxInner>,
    pub notify: tokio::sync::Notify,
    cap: usize,
    slow_overflows_max: u64,
    metrics: Arc<WsMetrics>,
}

impl Outbox {
    fn new(id: u64, settings: &WsSettings, metrics: Arc<WsMetrics>) -> Outbox {
        Outbox {
            id,
            inner: Mutex::new(OutboxInner::default()),
            notify: tokio::sync::Notify::new(),
            cap: settings.queue_frames_max,
            slow_overflows_max: settings.slow_overflows_max,
            metrics,
        }
    }

    /// Queues a frame (see [`Kind`] for a full queue) and wakes the session.
    pub fn push(&self, text: Utf8Bytes, kind: Kind) {
        {
            let mut inner = self.inner.lock();
            if inner.closing.is_some() {
                return;
            }
            if let Some(symbol) = kind.book()
                && inner.stale.contains(&symbol)
            {
                WsMetrics::add(&self.metrics.messages_dropped, 1);
                return;
            }
            if inner.frames.len() >= self.cap {
                self.overflow(&mut inner, kind);
            } else {
                let book = kind.book();
                inner.frames.push_back(Frame { text, book });
                WsMetrics::add(&self.metrics.queued_frames, 1);
                self.metrics
                    .queue_depth_max
                    .fetch_max(inner.frames.len() as u64, Ordering::Relaxed);
            }
        }
        self.notify.notify_one();
    }

    fn overflow(&self, inner: &mut OutboxInner, kind: Kind) {
        inner.overflows += 1;
        WsMetrics::add(&self.metrics.messages_dropped, 1);
        match kind {
            Kind::BookUpdate(symbol) | Kind::BookSnapshot(symbol) => {
                let before = inner.frames.len();
                inner.frames.retain(|f| f.book != Some(symbol));
                let removed = (before - inner.frames.len()) as u64;
                WsMetrics::sub(&self.metrics.queued_frames, removed);
                WsMetrics::add(&self.metrics.messages_dropped, removed);
                inner.stale.push(symbol);
            }
            Kind::Droppable => {}
            Kind::Essential => {
                self.close_slow(
                    inner,
                    "a trade, candle or account message did not fit the connection's queue",
                );
                return;
            }
        }
        if inner.overflows > self.slow_overflows_max {
            self.close_slow(inner, "the connection's queue overflowed too often");
        }
    }

    fn close_slow(&self, inner: &mut OutboxInner, why: &str) {
        if inner.closing.is_some() {
            return;
        }
        WsMetrics::add(&self.metrics.slow_closes, 1);
        inner.closing = Some((WsCode::SlowConsumer, why.to_owned()));
        let n = inner.frames.len() as u64;
        inner.frames.clear();
        WsMetrics::sub(&self.metrics.queued_frames, n);
    }

    /// Marks the connection a slow consumer (its socket stalled); counted once.
    pub fn mark_slow(&self, why: &str) {
        self.close_slow(&mut self.inner.lock(), why);
    }

    /// Asks the session to close the socket with `code`.
    pub fn close(&self, code: WsCode, why: &str) {
        {
            let mut inner = self.inner.lock();
            if inner.closing.is_none() {
                inner.closing = Some((code, why.to_owned()));
            }
        }
        self.notify.notify_one();
    }

    /// Takes up to `max` frames, the books owed a snapshot, and a pending close.
    pub fn take(&self, max: usize, out: &mut Vec<Utf8Bytes>) -> Taken {
        let mut inner = self.inner.lock();
        let n = inner.frames.len().min(max);
        out.extend(inner.frames.drain(..n).map(|f| f.text));
        WsMetrics::sub(&self.metrics.queued_frames, n as u64);
        Taken {
            more: !inner.frames.is_empty(),
            stale: inner.frames.is_empty() && !inner.stale.is_empty(),
            closing: inner.closing.clone(),
        }
    }

    /// Frames queued now.
    pub fn len(&self) -> usize {
        self.inner.lock().frames.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn discard(&self) {
        let mut inner = self.inner.lock();
        let n = inner.frames.len() as u64;
        inner.frames.clear();
        WsMetrics::sub(&self.metrics.queued_frames, n);
    }
}

/// What [`Outbox::take`] found besides the frames.
pub struct Taken {
    pub more: bool,
    /// The queue is drained and some book is owed a snapshot ([`Hub::resync_stale`]).
    pub stale: bool,
    pub closing: Option<(WsCode, String)>,
}

/// A symbol's top-10 book as clients see it.
#[derive(Clone, Debug, Default)]
struct MirrorBook {
    seq: u64,
    engine_seq: u64,
    bids: Levels,
    asks: Levels,
}

impl MirrorBook {
    /// Applies an update; `false` if it does not follow this book's seq (ignored).
    fn apply(&mut self, m: &BookMsg) -> bool {
        if m.snapshot {
            self.seq = m.seq;
            self.bids = m.bids.clone();
            self.asks = m.asks.clone();
        } else {
            // Updates queued before a snapshot that replaced them are stale: skipped.
            if m.seq != self.seq + 1 {
                if m.seq > self.seq + 1 {
                    tracing::warn!(
                        seq = m.seq,
                        book_seq = self.seq,
                        "A book update out of sequence was ignored."
                    );
                }
                return false;
            }
            self.seq = m.seq;
            apply_levels(&mut self.bids, &m.bids, |a, b| b.cmp(&a));
            apply_levels(&mut self.asks, &m.asks, |a, b| a.cmp(&b));
        }
        self.engine_seq = m.engine_seq;
        true
    }
}

fn apply_levels(levels: &mut Levels, changes: &Levels, order: fn(i64, i64) -> std::cmp::Ordering) {
    for &(price, qty) in changes {
        levels.retain(|&(p, _)| p != price);
        if qty > 0 {
            levels.push((price, qty));
        }
    }
    levels.sort_by(|a, b| order(a.0, b.0));
    levels.truncate(super::feed::DEPTH);
}

#[derive(Default)]
struct Registry {
    subscribers: FxHashMap<Topic, FxHashMap<u64, Arc<Outbox>>>,
    books: FxHashMap<SymbolCode, MirrorBook>,
}

impl Registry {
    /// Queues the message `make` serializes to every subscriber of `topic`; with none, the
    /// message is never serialized (a node without clients pays no JSON).
    fn push(&self, topic: &Topic, kind: Kind, make: impl FnOnce() -> String) {
        let Some(subs) = self.subscribers.get(topic).filter(|subs| !subs.is_empty()) else {
            return;
        };
        let text: Utf8Bytes = make().into();
        for outbox in subs.values() {
            outbox.push(text.clone(), kind);
        }
    }
}

/// The shared state of `/ws`.
pub struct Hub {
    pub settings: WsSettings,
    pub metrics: Arc<WsMetrics>,
    registry: Mutex<Registry>,
    /// Every connection's outbox (for broadcasts: gaps, shutdown).
    outboxes: Mutex<FxHashMap<u64, Arc<Outbox>>>,
    /// Symbols of the engine (the market data's reference symbols are accepted too).
    symbols: RwLock<FxHashSet<SymbolCode>>,
    next_id: AtomicU64,
    pub stopping: AtomicBool,
    /// Live `account` subscriptions: while there are none, the feed sends no account
    /// messages (their volume is several per order).
    account_subscriptions: AtomicU64,
    trade_subscriptions: AtomicU64,
    /// Book snapshots that replace dropped updates (one per symbol), and whether any waits.
    pending_snapshots: Mutex<FxHashMap<SymbolCode, BookMsg>>,
    snapshots_pending: AtomicBool,
    /// Test hooks ([`Hub::pause`]).
    writes_paused: AtomicBool,
    fanout_paused: AtomicBool,
}

impl Hub {
    pub fn new(settings: WsSettings) -> Arc<Hub> {
        Arc::new(Hub {
            settings,
            metrics: Arc::new(WsMetrics::default()),
            registry: Mutex::new(Registry::default()),
            outboxes: Mutex::new(FxHashMap::default()),
            symbols: RwLock::new(FxHashSet::default()),
            next_id: AtomicU64::new(1),
            stopping: AtomicBool::new(false),
            account_subscriptions: AtomicU64::new(0),
            trade_subscriptions: AtomicU64::new(0),
            pending_snapshots: Mutex::new(FxHashMap::default()),
            snapshots_pending: AtomicBool::new(false),
            writes_paused: AtomicBool::new(false),
            fanout_paused: AtomicBool::new(false),
        })
    }

    /// A test hook: with `writes`, sessions stop writing to their sockets (every client looks
    /// like one that does not read, and queues fill); with `fanout`, the fan-out thread stops
    /// taking feed messages (its queue fills and the feed handler drops). Unpausing resumes.
    pub fn pause(&self, writes: bool, fanout: bool) {
        self.writes_paused.store(writes, Ordering::Release);
        self.fanout_paused.store(fanout, Ordering::Release);
        if !writes {
            for outbox in self.outboxes.lock().values() {
                outbox.notify.notify_one();
            }
        }
    }

    pub fn writes_paused(&self) -> bool {
        self.writes_paused.load(Ordering::Acquire)
    }

    pub fn add_symbol(&self, code: SymbolCode) {
        self.symbols.write().insert(code);
    }

    pub fn knows_symbol(&self, code: &SymbolCode) -> bool {
        self.symbols.read().contains(code)
    }

    /// Leaves a book snapshot for the fan-out (the feed dropped an update of that book).
    pub fn put_pending_snapshot(&self, snapshot: BookMsg) {
        self.pending_snapshots
            .lock()
            .insert(snapshot.symbol, snapshot);
        self.snapshots_pending.store(true, Ordering::Release);
    }

    /// Replaces the pending snapshot of the same book; `false` if the fan-out has taken it
    /// already (then updates may follow it through the queue again).
    pub fn replace_pending_snapshot(&self, snapshot: BookMsg) -> bool {
        let mut pending = self.pending_snapshots.lock();
        match pending.get_mut(&snapshot.symbol) {
            Some(slot) => {
                *slot = snapshot;
                true
            }
            None => false,
        }
    }

    fn deliver_pending_snapshots(&self) {
        if !self.snapshots_pending.swap(false, Ordering::AcqRel) {
            return;
        }
        let taken: Vec<BookMsg> = self
            .pending_snapshots
            .lock()
            .drain()
            .map(|(_, s)| s)
            .collect();
        for snapshot in taken {
            self.deliver_book(snapshot);
        }
    }

    /// The fan-out's books at start-up (from the feed's seed).
    pub fn seed_books(&self, books: Vec<BookMsg>) {
        let mut registry = self.registry.lock();
        for b in books {
            registry.books.entry(b.symbol).or_default().apply(&b);
        }
    }

    /// A new connection's outbox; `None` at `connections_max`.
    pub fn open(&self) -> Option<Arc<Outbox>> {
        let m = &self.metrics;
        let admitted = m
            .connections
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.settings.connections_max as u64).then_some(n + 1)
            });
        if admitted.is_err() {
            WsMetrics::add(&m.connections_refused, 1);
            return None;
        }
        WsMetrics::add(&m.connections_total, 1);
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let outbox = Arc::new(Outbox::new(id, &self.settings, Arc::clone(m)));
        self.outboxes.lock().insert(id, Arc::clone(&outbox));
        Some(outbox)
    }

    /// Forgets a connection and its subscriptions.
    pub fn close(&self, outbox: &Arc<Outbox>, topics: &[Topic]) {
        {
            let mut registry = self.registry.lock();
            for topic in topics {
                self.remove(&mut registry, topic, outbox.id);
            }
        }
        WsMetrics::sub(&self.metrics.subscriptions, topics.len() as u64);
        self.outboxes.lock().remove(&outbox.id);
        outbox.discard();
        WsMetrics::sub(&self.metrics.connections, 1);
    }

    /// Whether any connection subscribes to an `account` channel.
    pub fn wants_accounts(&self) -> bool {
        self.account_subscriptions.load(Ordering::Relaxed) > 0
    }

    /// Whether any connection subscribes to a `trades` channel.
    pub fn wants_trades(&self) -> bool {
        self.trade_subscriptions.load(Ordering::Relaxed) > 0
    }

    /// The count of subscriptions the feed handler asks about before it makes a message
    /// (the account and trades channels), if `topic` is one.
    fn interest(&self, topic: &Topic) -> Option<&AtomicU64> {
        match topic {
            Topic::Account(_) => Some(&self.account_subscriptions),
            Topic::Trades(_) => Some(&self.trade_subscriptions),
            _ => None,
        }
    }

    fn remove(&self, registry: &mut Registry, topic: &Topic, id: u64) -> bool {
        let Some(subs) = registry.subscribers.get_mut(topic) else {
            return false;
        };
        let removed = subs.remove(&id).is_some();
        if removed && let Some(interest) = self.interest(topic) {
            interest.fetch_sub(1, Ordering::Relaxed);
        }
        if subs.is_empty() {
            registry.subscribers.remove(topic);
        }
        removed
    }

    /// Subscribes `outbox` to `topic`, queuing `reply` first and, for a book, its snapshot
    /// (under the registry lock: the next update queued is the snapshot's seq + 1).
    pub fn subscribe(&self, outbox: &Arc<Outbox>, topic: Topic, reply: String) {
        let mut registry = self.registry.lock();
        let subs = registry.subscribers.entry(topic).or_default();
        if subs.insert(outbox.id, Arc::clone(outbox)).is_none() {
            WsMetrics::add(&self.metrics.subscriptions, 1);
            if let Some(interest) = self.interest(&topic) {
                interest.fetch_add(1, Ordering::Relaxed);
            }
        }
        outbox.push(reply.into(), Kind::Droppable);
        if let Topic::Book(symbol) = topic {
            let text = snapshot_json(symbol, registry.books.get(&symbol));
            outbox.push(text.into(), Kind::BookSnapshot(symbol));
        }
    }

    /// Unsubscribes; `false` if it was not subscribed.
    pub fn unsubscribe(&self, outbox: &Arc<Outbox>, topic: &Topic) -> bool {
        let mut registry = self.registry.lock();
        let removed = self.remove(&mut registry, topic, outbox.id);
        if removed {
            WsMetrics::sub(&self.metrics.subscriptions, 1);
        }
        removed
    }

    /// Queues a fresh snapshot of `symbol`'s book (a client's resync).
    pub fn resync(&self, outbox: &Outbox, symbol: SymbolCode) {
        let registry = self.registry.lock();
        let text = snapshot_json(symbol, registry.books.get(&symbol));
        WsMetrics::add(&self.metrics.book_resyncs, 1);
        outbox.push(text.into(), Kind::BookSnapshot(symbol));
    }

    /// Replaces a drained connection's conflated books with snapshots.
    pub fn resync_stale(&self, outbox: &Outbox) {
        let registry = self.registry.lock();
        let stale = std::mem::take(&mut outbox.inner.lock().stale);
        for symbol in stale {
            let text = snapshot_json(symbol, registry.books.get(&symbol));
            WsMetrics::add(&self.metrics.book_resyncs, 1);
            outbox.push(text.into(), Kind::BookSnapshot(symbol));
        }
    }

    /// Closes every connection (shutdown).
    pub fn close_all(&self, code: WsCode, why: &str) {
        for outbox in self.outboxes.lock().values() {
            outbox.close(code, why);
        }
    }

    /// Delivers one feed message to its subscribers.
    pub fn deliver(&self, msg: FeedMsg) {
        match msg {
            FeedMsg::Book(b) => self.deliver_book(b),
            FeedMsg::Quote {
                symbol,
                ts,
                engine_seq,
                bid,
                ask,
                last,
            } => {
                let level = |l: Option<(i64, i64)>| l.map_or(json!([]), |(p, q)| json!([p, q]));
                self.registry
                    .lock()
                    .push(&Topic::Quote(symbol), Kind::Droppable, || {
                        json!({
                            "type": "quote", "source": "kuku", "symbol": symbol.as_str(),
                            "ts": ts, "engine_seq": engine_seq,
                            "bid": bid.map(|l| l.0), "bid_qty": bid.map(|l| l.1),
                            "ask": ask.map(|l| l.0), "ask_qty": ask.map(|l| l.1),
                            "last": last.map(|l| l.0), "last_qty": last.map(|l| l.1),
                            "best_bid": level(bid), "best_ask": level(ask),
                        })
                        .to_string()
                    });
            }
            FeedMsg::Account {
                ts,
                engine_seq,
                symbol,
                event,
            } => self.deliver_account(ts, engine_seq, symbol, &event),
            FeedMsg::Gap {
                ts,
                from_seq,
                to_seq,
            } => {
                let text: Utf8Bytes = json!({
                    "type": "gap", "ts": ts, "from_engine_seq": from_seq, "to_engine_seq": to_seq,
                    "message": "the feed fell behind: trades and account messages of these engine seqs were dropped; re-read them over the REST API",
                })
                .to_string()
                .into();
                // To the connections that lose something: subscribers of trades or an account.
                let registry = self.registry.lock();
                let mut told = FxHashSet::default();
                for (topic, subs) in &registry.subscribers {
                    if matches!(topic, Topic::Trades(_) | Topic::Account(_)) {
                        for (id, outbox) in subs {
                            if told.insert(*id) {
                                outbox.push(text.clone(), Kind::Essential);
                            }
                        }
                    }
                }
            }
            FeedMsg::Market { ts, update } => self.deliver_market(ts, &update),
        }
    }

    fn deliver_book(&self, b: BookMsg) {
        let mut registry = self.registry.lock();
        let book = registry.books.entry(b.symbol).or_default();
        if !book.apply(&b) {
            return;
        }
        let topic = Topic::Book(b.symbol);
        if b.snapshot {
            WsMetrics::add(&self.metrics.book_resyncs, 1);
            let text = snapshot_json(b.symbol, Some(book));
            registry.push(&topic, Kind::BookSnapshot(b.symbol), || text);
        } else {
            registry.push(&topic, Kind::BookUpdate(b.symbol), || update_json(&b));
        }
    }

    fn deliver_account(&self, ts: u64, engine_seq: u64, symbol: Option<SymbolCode>, event: &Event) {
        let registry = self.registry.lock();
        for (account, acct_seq) in super::feed::recipients(event) {
            if account.0 == 0 {
                continue;
            }
            let topic = Topic::Account(account);
            if !registry.subscribers.contains_key(&topic) {
                continue;
            }
            if let Some(v) = account_json(account, acct_seq, ts, engine_seq, symbol, event) {
                registry.push(&topic, Kind::Essential, || v.to_string());
            }
        }
        if let (
            Event::Trade {
                trade_id,
                price,
                qty,
                taker_side,
                ..
            },
            Some(symbol),
        ) = (event, symbol)
        {
            registry.push(&Topic::Trades(symbol), Kind::Essential, || {
                json!({
                    "type": "trade", "source": "kuku", "symbol": symbol.as_str(), "ts": ts,
                    "engine_seq": engine_seq, "trade_id": trade_id.0, "price": price.0,
                    "qty": qty.0, "side": side(*taker_side),
                })
                .to_string()
            });
        }
    }

    fn deliver_market(&self, ts: u64, update: &Update) {
        let (topic, text, kind) = match update {
            Update::Quote(q) => (
                Topic::Quote(q.symbol),
                json!({
                    "type": "quote", "source": "market", "symbol": q.symbol.as_str(), "ts": ts,
                    "market_ts": q.ts_ns.0,
                    "bid": q.bids.best().map(|l| l.price.0), "bid_qty": q.bids.best().map(|l| l.qty.0),
                    "ask": q.asks.best().map(|l| l.price.0), "ask_qty": q.asks.best().map(|l| l.qty.0),
                    "last": q.last_trade.map(|t| t.price.0), "last_qty": q.last_trade.map(|t| t.qty.0),
                    "bids": q.bids, "asks": q.asks,
                }),
                Kind::Droppable,
            ),
            // A last price without a quote (the quote source's fallback while its stream is
            // silent): on the quote channel, as its own type; the quote itself may be stale.
            Update::LastPrice(l) => (
                Topic::Quote(l.symbol),
                json!({
                    "type": "last_price", "source": "market", "symbol": l.symbol.as_str(),
                    "ts": ts, "market_ts": l.ts_ns.0, "price": l.price.0,
                }),
                Kind::Droppable,
            ),
            Update::Tick(t) => (
                Topic::Trades(t.symbol),
                json!({
                    "type": "trade", "source": "market", "symbol": t.symbol.as_str(), "ts": ts,
                    "market_ts": t.ts_ns.0, "price": t.price.0, "qty": t.qty.0,
                    "side": side(t.aggressor),
                }),
                Kind::Essential,
            ),
            Update::Candle(c) => {
                let k = &c.candle;
                (
                    Topic::Candles(k.symbol, k.interval),
                    json!({
                        "type": "candle", "symbol": k.symbol.as_str(), "ts": ts,
                        "interval": k.interval.as_str(), "start_ns": k.start_ns.0,
                        "end_ns": k.interval.end_of(k.start_ns).0,
                        "open": k.open.0, "high": k.high.0, "low": k.low.0, "close": k.close.0,
                        "volume": k.volume, "trades": k.trades, "closed": c.closed,
                    }),
                    Kind::Essential,
                )
            }
        };
        self.registry.lock().push(&topic, kind, || text.to_string());
    }

    /// The fan-out thread's loop: until `stopping` is set and the feed is drained. It polls
    /// its queue instead of blocking on it: a receiver blocked on the queue makes every
    /// `try_send` of the feed handler, on the output ring, a wake-up system call; polling,
    /// a send is a few atomic operations, and a message waits at most [`IDLE_POLL`] when
    /// the feed is quiet.
    pub fn run(&self, feed: Receiver<FeedMsg>) {
        loop {
            if self.fanout_paused.load(Ordering::Acquire) && !self.stopping.load(Ordering::Acquire)
            {
                std::thread::sleep(Duration::from_millis(1));
                continue;
            }
            match feed.try_recv() {
                Ok(msg) => {
                    WsMetrics::sub(&self.metrics.feed_queue_depth, 1);
                    self.deliver(msg);
                    self.deliver_pending_snapshots();
                }
                Err(TryRecvError::Empty) => {
                    self.deliver_pending_snapshots();
                    if self.stopping.load(Ordering::Acquire) {
                        return;
                    }
                    std::thread::sleep(IDLE_POLL);
                }
                Err(TryRecvError::Disconnected) => return,
            }
        }
    }
}

fn side(s: Side) -> &'static str {
    match s {
        Side::Buy => "buy",
        Side::Sell => "sell",
    }
}

fn levels_json(levels: &Levels) -> Value {
    Value::Array(levels.iter().map(|&(p, q)| json!([p, q])).collect())
}

/// `{"type":"book_snapshot",...}` of the fan-out's copy (an empty book at seq 0 if none).
fn snapshot_json(symbol: SymbolCode, book: Option<&MirrorBook>) -> String {
    let empty = MirrorBook::default();
    let book = book.unwrap_or(&empty);
    json!({
        "type": "book_snapshot", "symbol": symbol.as_str(), "ts": crate::pipeline::now_ns(),
        "seq": book.seq, "engine_seq": book.engine_seq,
        "bids": levels_json(&book.bids), "asks": levels_json(&book.asks),
    })
    .to_string()
}

fn update_json(b: &BookMsg) -> String {
    json!({
        "type": "book_update", "symbol": b.symbol.as_str(), "ts": b.ts,
        "seq": b.seq, "engine_seq": b.engine_seq,
        "bids": levels_json(&b.bids), "asks": levels_json(&b.asks),
    })
    .to_string()
}

/// The `account` channel's message for `account` about `event`.
fn account_json(
    account: AccountId,
    acct_seq: u64,
    ts: u64,
    engine_seq: u64,
    symbol: Option<SymbolCode>,
    event: &Event,
) -> Option<Value> {
    let symbol = symbol.map(|s| s.as_str().to_owned());
    let mut v = match *event {
        Event::OrderAccepted { order, resent, .. } => json!({
            "type": "order", "status": "accepted", "order_id": order.order_id.0,
            "client_order_id": order.client_order_id.0, "symbol": symbol, "side": side(order.side),
            "order_type": format!("{:?}", order.order_type).to_lowercase(),
            "tif": format!("{:?}", order.tif).to_lowercase(), "price": order.price.0,
            "qty": order.qty.0, "resent": resent,
        }),
        Event::OrderRejected {
            client_order_id,
            reason,
            resent,
            ..
        } => json!({
            "type": "order", "status": "rejected", "client_order_id": client_order_id.0,
            "symbol": symbol, "code": reason.code(), "resent": resent,
        }),
        Event::OrderCancelled {
            order_id,
            qty_cancelled,
            reason,
            request_id,
            ..
        } => json!({
            "type": "order", "status": "cancelled", "order_id": order_id.0, "symbol": symbol,
            "qty_cancelled": qty_cancelled.0, "reason": format!("{reason:?}"),
            "request_id": request_id.0,
        }),
        Event::OrderModified {
            order_id,
            request_id,
            price,
            leaves,
            priority_kept,
            ..
        } => json!({
            "type": "order", "status": "modified", "order_id": order_id.0,
            "request_id": request_id.0, "price": price.0, "leaves": leaves.0,
            "priority_kept": priority_kept,
        }),
        Event::OrderExpired {
            order_id,
            qty_expired,
            ..
        } => json!({
            "type": "order", "status": "expired", "order_id": order_id.0, "symbol": symbol,
            "qty_expired": qty_expired.0,
        }),
        Event::RequestRejected {
            request_id,
            request,
            order_id,
            reason,
            ..
        } => json!({
            "type": "request_rejected", "request_id": request_id.0,
            "request": format!("{request:?}").to_lowercase(), "order_id": order_id.0,
            "code": reason.code(),
        }),
        Event::Trade {
            trade_id,
            price,
            qty,
            taker_side,
            maker_order,
            maker_account,
            maker_leaves,
            taker_order,
            taker_leaves,
            buyer_commission,
            seller_commission,
            seller_taxes,
            ..
        } => {
            let maker = account == maker_account;
            let my_side = if maker {
                taker_side.opposite()
            } else {
                taker_side
            };
            let commission = match my_side {
                Side::Buy => buyer_commission.0,
                Side::Sell => seller_commission.0,
            };
            let taxes = match my_side {
                Side::Buy => 0,
                Side::Sell => seller_taxes[0].0.saturating_add(seller_taxes[1].0),
            };
            json!({
                "type": "execution", "trade_id": trade_id.0,
                "order_id": if maker { maker_order.0 } else { taker_order.0 },
                "symbol": symbol, "side": side(my_side), "price": price.0, "qty": qty.0,
                "leaves": if maker { maker_leaves.0 } else { taker_leaves.0 },
                "liquidity": if maker { "maker" } else { "taker" },
                "commission": commission, "taxes": taxes,
            })
        }
        Event::AccountUpdated {
            cash, cash_hold, ..
        } => json!({
            "type": "balance", "cash": cash.0, "cash_hold": cash_hold.0,
            "available": cash.0.saturating_sub(cash_hold.0),
        }),
        Event::PositionUpdated { position } => json!({
            "type": "position", "symbol": symbol, "qty": position.qty().0,
            "hold": position.hold().0, "cost_basis": position.cost_basis.0,
            "realized_pnl": position.realized_pnl.0,
        }),
        Event::TransactionStatusChanged {
            tx,
            tx_type,
            asset,
            amount,
            to,
            ..
        } => json!({
            "type": "transaction", "tx": tx.0, "tx_type": format!("{tx_type:?}").to_lowercase(),
            "asset": format!("{asset:?}"), "amount": amount.0,
            "status": format!("{to:?}").to_lowercase(),
        }),
        _ => return None,
    };
    v["account"] = json!(account.0);
    v["ts"] = json!(ts);
    v["engine_seq"] = json!(engine_seq);
    if acct_seq != 0 {
        v["acct_seq"] = json!(acct_seq);
    }
    Some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn book(seq: u64, snapshot: bool, bids: Levels, asks: Levels) -> BookMsg {
        BookMsg {
            symbol: SymbolCode::new("A").unwrap(),
            ts: 0,
            seq,
            engine_seq: seq,
            snapshot,
            bids,
            asks,
        }
    }

    #[test]
    fn a_queued_frame_is_a_small_slot_pointing_at_a_shared_payload() {
        // ADR-024 counts queue memory in these slots.
        assert_eq!(std::mem::size_of::<Frame>(), 48);
        let text: Utf8Bytes = "x".repeat(200).into();
        let copy = text.clone();
        assert_eq!(
            copy.as_str().as_ptr(),
            text.as_str().as_ptr(),
            "shared, not copied"
        );
    }

    #[test]
    fn the_mirror_applies_updates_in_sequence_only() {
        let mut m = MirrorBook::default();
        assert!(m.apply(&book(3, true, vec![(100, 1)], vec![(101, 1)])));
        assert!(!m.apply(&book(5, false, vec![(99, 1)], vec![])), "a gap");
        assert!(m.apply(&book(4, false, vec![(99, 2), (100, 0)], vec![(102, 5)])));
        assert_eq!(m.bids, vec![(99, 2)]);
        assert_eq!(m.asks, vec![(101, 1), (102, 5)]);
    }

    #[test]
    fn a_full_outbox_conflates_book_updates_and_closes_on_an_essential_message() {
        let settings = WsSettings {
            queue_frames_max: 4,
            slow_overflows_max: 100,
            ..WsSettings::default()
        };
        let metrics = Arc::new(WsMetrics::default());
        let outbox = Outbox::new(1, &settings, Arc::clone(&metrics));
        let a = SymbolCode::new("A").unwrap();
        for i in 0..4 {
            outbox.push(format!("u{i}").into(), Kind::BookUpdate(a));
        }
        outbox.push("u4".into(), Kind::BookUpdate(a));
        assert_eq!(
            outbox.len(),
            0,
            "the queued updates of the book were removed"
        );
        assert_eq!(WsMetrics::get(&metrics.queued_frames), 0);
        outbox.push("u5".into(), Kind::BookUpdate(a));
        assert_eq!(outbox.len(), 0, "a stale book takes no update");
        let mut out = Vec::new();
        let taken = outbox.take(16, &mut out);
        assert!(taken.stale && taken.closing.is_none());
        for i in 0..4 {
            outbox.push(format!("q{i}").into(), Kind::Droppable);
        }
        outbox.push("t".into(), Kind::Essential);
        let taken = outbox.take(16, &mut out);
        assert_eq!(taken.closing.map(|c| c.0), Some(WsCode::SlowConsumer));
        assert_eq!(WsMetrics::get(&metrics.slow_closes), 1);
        assert!(WsMetrics::get(&metrics.queue_depth_max) <= 4);
    }
}
