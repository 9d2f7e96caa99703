//! The feed consumer on the node's output ring: it keeps every symbol's full book of price
//! levels (from the recovered engine, then `BookChanged` events), and at the end of each
//! command turns what changed into feed messages for the fan-out ([`super::hub`]): a book
//! update (the top-10 levels that changed, under the symbol's next book `seq`), a quote
//! when the best prices or the last trade changed, trades, and the messages of the
//! `account` channel.
//!
//! **Invariants**
//! - The handler never blocks: messages go through `try_send` into the fan-out's bounded
//!   queue. A message that does not fit is dropped and counted. A dropped book update puts
//!   that book's snapshot (at its current `seq`) in the hub's slot of pending snapshots (one
//!   per symbol, the newest replacing an older one) instead of the queue, and no update of
//!   that book is queued until the fan-out has taken the snapshot, so the fan-out's books
//!   never skip a change, even if the market then goes quiet.
//! - Book snapshots and updates are derived from the same state (this handler's books), on
//!   the same thread, in the ring's order: update `n` is the difference between snapshot
//!   `n-1` and snapshot `n`.
//! - The state starts from the recovered engine ([`seed`]), exactly where the ring's first
//!   event follows.
//!
//! **Performance**: a `BookChanged` costs one ordered-map update; a command's end costs one
//! top-10 walk per symbol it touched; other events cost a copy into the queue.

use super::hub::Hub;
use crate::node::Seed;
use crate::pipeline::{OutputHandler, OutputSlot, now_ns};
use kuku_engine::{Engine, Event, Price, Qty, Side, SymbolCode, SymbolId};
use kuku_marketdata::Update;
use parking_lot::Mutex;
use rustc_hash::FxHashMap;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{SyncSender, TrySendError};

/// Levels per side in the book channel.
pub const DEPTH: usize = 10;

/// Price levels of one side, best first: `(price, qty)`.
pub type Levels = Vec<(i64, i64)>;

/// A book message: a snapshot, or the changed levels (qty 0 = the level is gone).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BookMsg {
    pub symbol: SymbolCode,
    pub ts: u64,
    /// The symbol's book sequence number (consecutive per symbol).
    pub seq: u64,
    /// The output-ring seq of the command the book reflects.
    pub engine_seq: u64,
    pub snapshot: bool,
    pub bids: Levels,
    pub asks: Levels,
}

/// What the feed handler and the market data hand to the fan-out.
#[derive(Clone, Debug)]
pub enum FeedMsg {
    Book(BookMsg),
    /// Kuku's own best bid and ask and last trade.
    Quote {
        symbol: SymbolCode,
        ts: u64,
        engine_seq: u64,
        bid: Option<(i64, i64)>,
        ask: Option<(i64, i64)>,
        last: Option<(i64, i64)>,
    },
    /// An event of the `account` channel (for its recipients); `symbol`: its symbol's code.
    Account {
        ts: u64,
        engine_seq: u64,
        symbol: Option<SymbolCode>,
        event: Event,
    },
    /// Output-ring messages between these seqs were dropped (trades, quotes, account
    /// messages): clients are told to re-read state.
    Gap {
        ts: u64,
        from_seq: u64,
        to_seq: u64,
    },
    /// An update of the market-data service (its quote, a tick, a candle).
    Market {
        ts: u64,
        update: Box<Update>,
    },
}

/// The bounded queue into the fan-out, counting its depth and what it dropped.
#[derive(Clone)]
pub struct FeedSender {
    tx: SyncSender<FeedMsg>,
    hub: Arc<Hub>,
}

impl FeedSender {
    pub fn new(tx: SyncSender<FeedMsg>, hub: Arc<Hub>) -> FeedSender {
        FeedSender { tx, hub }
    }

    /// Queues `msg`; `false` if the queue is full (the message is dropped and counted).
    pub fn offer(&self, msg: FeedMsg) -> bool {
        let m = &self.hub.metrics;
        m.feed_queue_depth.fetch_add(1, Ordering::Relaxed);
        match self.tx.try_send(msg) {
            Ok(()) => true,
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                m.feed_queue_depth.fetch_sub(1, Ordering::Relaxed);
                m.feed_dropped.fetch_add(1, Ordering::Relaxed);
                false
            }
        }
    }
}

/// One symbol's book as the feed keeps it.
#[derive(Default)]
struct FeedBook {
    code: SymbolCode,
    bids: BTreeMap<Price, Qty>,
    asks: BTreeMap<Price, Qty>,
    /// The top levels last published (what the fan-out's copy holds at `seq`).
    top_bids: Levels,
    top_asks: Levels,
    seq: u64,
    last: Option<(i64, i64)>,
    /// A changed level or a trade since the command began.
    touched: bool,
    traded: bool,
    /// An update was dropped: a snapshot went to the hub's pending slot instead.
    resync: bool,
}

impl FeedBook {
    fn new(code: SymbolCode) -> FeedBook {
        FeedBook {
            code,
            ..FeedBook::default()
        }
    }

    fn set_level(&mut self, side: Side, price: Price, qty: Qty) {
        let levels = match side {
            Side::Buy => &mut self.bids,
            Side::Sell => &mut self.asks,
        };
        if qty.0 > 0 {
            levels.insert(price, qty);
        } else {
            levels.remove(&price);
        }
        self.touched = true;
    }

    fn top(&self) -> (Levels, Levels) {
        let (mut bids, mut asks) = (Levels::new(), Levels::new());
        self.top_into(&mut bids, &mut asks);
        (bids, asks)
    }

    /// The top levels into `bids` and `asks` (cleared first; their capacity is reused).
    fn top_into(&self, bids: &mut Levels, asks: &mut Levels) {
        bids.clear();
        asks.clear();
        let level = |(p, q): (&Price, &Qty)| (p.0, q.0);
        bids.extend(self.bids.iter().rev().take(DEPTH).map(level));
        asks.extend(self.asks.iter().take(DEPTH).map(level));
    }

    fn snapshot(&self, ts: u64, engine_seq: u64) -> BookMsg {
        BookMsg {
            symbol: self.code,
            ts,
            seq: self.seq,
            engine_seq,
            snapshot: true,
            bids: self.top_bids.clone(),
            asks: self.top_asks.clone(),
        }
    }
}

/// The levels of `new` that differ from `old` (a level gone from the top has qty 0).
pub fn diff(old: &[(i64, i64)], new: &[(i64, i64)]) -> Levels {
    let mut changed: Levels = new.iter().filter(|l| !old.contains(l)).copied().collect();
    for &(price, _) in old {
        if !new.iter().any(|&(p, _)| p == price) {
            changed.push((price, 0));
        }
    }
    changed
}

/// The handler's state: every symbol's book.
#[derive(Default)]
pub struct FeedState {
    books: FxHashMap<SymbolId, FeedBook>,
    touched: Vec<SymbolId>,
    /// Output seqs whose non-book messages were dropped (reported as a gap).
    lost: Option<(u64, u64)>,
    /// Buffers for a command's new top levels (no allocation per command).
    scratch: (Levels, Levels),
}

impl FeedState {
    /// The state of a recovered engine.
    pub fn from_engine(engine: &Engine) -> FeedState {
        let mut state = FeedState::default();
        for symbol in engine.symbols() {
            let mut book = FeedBook::new(symbol.code);
            if let Some(b) = engine.book(symbol.id) {
                for side in [Side::Buy, Side::Sell] {
                    for l in b.side(side).iter() {
                        book.set_level(side, l.price, l.qty);
                    }
                }
            }
            book.touched = false;
            (book.top_bids, book.top_asks) = book.top();
            book.last = symbol.last_trade_price.map(|p| (p.0, 0));
            state.books.insert(symbol.id, book);
        }
        state
    }

    /// The published books (what the fan-out starts from).
    pub fn snapshots(&self, engine_seq: u64) -> Vec<BookMsg> {
        let ts = now_ns();
        self.books
            .values()
            .map(|b| b.snapshot(ts, engine_seq))
            .collect()
    }

    fn code(&self, symbol: SymbolId) -> Option<SymbolCode> {
        self.books.get(&symbol).map(|b| b.code)
    }

    fn touch(&mut self, symbol: SymbolId) -> Option<&mut FeedBook> {
        let book = self.books.get_mut(&symbol)?;
        if !book.touched && !book.traded {
            self.touched.push(symbol);
        }
        Some(book)
    }

    /// Folds one event; sends what it makes at once (trades, account messages) or at the
    /// command's end (books, quotes).
    pub fn on_event(&mut self, slot: &OutputSlot, out: &FeedSender) {
        let ts = now_ns();
        match slot.event {
            Event::SymbolRegistered { symbol } => {
                self.books
                    .entry(symbol.id)
                    .or_insert_with(|| FeedBook::new(symbol.code));
                out.hub.add_symbol(symbol.code);
            }
            Event::BookChanged {
                symbol,
                side,
                price,
                level_qty,
                ..
            } => {
                if let Some(book) = self.touch(symbol) {
                    book.set_level(side, price, level_qty);
                }
            }
            Event::Trade {
                symbol, price, qty, ..
            } => {
                if let Some(book) = self.touch(symbol) {
                    book.traded = true;
                    book.last = Some((price.0, qty.0));
                }
                // A trade goes to the trades channel and its two accounts: made only if one
                // of them has a subscriber.
                if out.hub.wants_trades() || out.hub.wants_accounts() {
                    self.send(out, slot.seq, Self::account(slot, ts, self.code(symbol)));
                }
            }
            _ => {
                if recipients(&slot.event)[0].0.0 != 0 && out.hub.wants_accounts() {
                    let symbol = event_symbol(&slot.event).and_then(|s| self.code(s));
                    self.send(out, slot.seq, Self::account(slot, ts, symbol));
                }
            }
        }
        if slot.last {
            self.end_of_command(slot.seq, ts, out);
        }
    }

    fn account(slot: &OutputSlot, ts: u64, symbol: Option<SymbolCode>) -> FeedMsg {
        FeedMsg::Account {
            ts,
            engine_seq: slot.seq,
            symbol,
            event: slot.event,
        }
    }

    /// Sends a message that cannot be rebuilt later; a drop is remembered as a gap.
    fn send(&mut self, out: &FeedSender, seq: u64, msg: FeedMsg) {
        if let Some((from, to)) = self.lost {
            if out.offer(FeedMsg::Gap {
                ts: now_ns(),
                from_seq: from,
                to_seq: to,
            }) {
                self.lost = None;
            } else {
                self.lost = Some((from, seq));
                return;
            }
        }
        if !out.offer(msg) {
            self.lost = Some((self.lost.map_or(seq, |l| l.0), seq));
        }
    }

    fn end_of_command(&mut self, engine_seq: u64, ts: u64, out: &FeedSender) {
        let mut touched = std::mem::take(&mut self.touched);
        for &symbol in &touched {
            let Some(book) = self.books.get_mut(&symbol) else {
                continue;
            };
            let (mut bids, mut asks) = std::mem::take(&mut self.scratch);
            book.top_into(&mut bids, &mut asks);
            let changed_bids = diff(&book.top_bids, &bids);
            let changed_asks = diff(&book.top_asks, &asks);
            let best_changed =
                book.top_bids.first() != bids.first() || book.top_asks.first() != asks.first();
            let traded = book.traded;
            book.touched = false;
            book.traded = false;
            if !changed_bids.is_empty() || !changed_asks.is_empty() {
                book.seq += 1;
                std::mem::swap(&mut book.top_bids, &mut bids);
                std::mem::swap(&mut book.top_asks, &mut asks);
                // While a snapshot waits in the hub's slot, it is replaced by the newer one.
                let snapshot_waits = book.resync
                    && out
                        .hub
                        .replace_pending_snapshot(book.snapshot(ts, engine_seq));
                if !snapshot_waits {
                    let update = BookMsg {
                        symbol: book.code,
                        ts,
                        seq: book.seq,
                        engine_seq,
                        snapshot: false,
                        bids: changed_bids,
                        asks: changed_asks,
                    };
                    book.resync = !out.offer(FeedMsg::Book(update));
                    if book.resync {
                        out.hub.put_pending_snapshot(book.snapshot(ts, engine_seq));
                    }
                }
            }
            if best_changed || traded {
                let quote = FeedMsg::Quote {
                    symbol: book.code,
                    ts,
                    engine_seq,
                    bid: book.top_bids.first().copied(),
                    ask: book.top_asks.first().copied(),
                    last: book.last,
                };
                // A lost quote is superseded by the next one: no gap is reported.
                out.offer(quote);
            }
            self.scratch = (bids, asks);
        }
        touched.clear();
        self.touched = touched;
    }
}

/// The accounts an event of the `account` channel goes to, with their `acct_seq` (0: none):
/// the engine's recipients, plus balance and position changes.
pub fn recipients(event: &Event) -> [(kuku_engine::AccountId, u64); 2] {
    const NONE: (kuku_engine::AccountId, u64) = (kuku_engine::AccountId(0), 0);
    match *event {
        Event::AccountUpdated { account, .. } => [(account, 0), NONE],
        Event::PositionUpdated { position } => [(position.account, 0), NONE],
        _ => event.recipients(),
    }
}

/// The symbol an account event concerns, if it names one.
fn event_symbol(event: &Event) -> Option<SymbolId> {
    match *event {
        Event::OrderAccepted { order, .. } => Some(order.symbol),
        Event::OrderRejected { symbol, .. }
        | Event::OrderCancelled { symbol, .. }
        | Event::OrderExpired { symbol, .. }
        | Event::Trade { symbol, .. } => Some(symbol),
        Event::PositionUpdated { position } => Some(position.symbol),
        _ => None,
    }
}

/// The state handed from the seed to the handler.
pub type Seeded = Arc<Mutex<Option<FeedState>>>;

/// Builds the feed's books from the recovered engine (a `NodeOutputs` seed) and gives the
/// fan-out the same books.
pub fn seed(seeded: Seeded, hub: Arc<Hub>) -> Seed {
    Box::new(move |engine: &Engine| {
        let state = FeedState::from_engine(engine);
        for symbol in engine.symbols() {
            hub.add_symbol(symbol.code);
        }
        hub.seed_books(state.snapshots(engine.last_seq()));
        *seeded.lock() = Some(state);
    })
}

/// The output handler (see the module docs).
pub fn handler(seeded: Seeded, out: FeedSender) -> OutputHandler {
    let mut state: Option<FeedState> = None;
    Box::new(move |slot: &OutputSlot, _, _| {
        let state = state.get_or_insert_with(|| seeded.lock().take().unwrap_or_default());
        state.on_event(slot, &out);
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_diff_names_changed_and_removed_levels() {
        let old = vec![(100, 5), (99, 3)];
        let new = vec![(100, 4), (98, 1)];
        let mut d = diff(&old, &new);
        d.sort();
        assert_eq!(d, vec![(98, 1), (99, 0), (100, 4)]);
        assert!(diff(&new, &new).is_empty());
    }

    #[test]
    fn the_top_keeps_ten_levels_best_first() {
        let mut book = FeedBook::new(SymbolCode::new("A").unwrap());
        for p in 1..=15 {
            book.set_level(Side::Buy, Price(p), Qty(1));
            book.set_level(Side::Sell, Price(100 + p), Qty(1));
        }
        let (bids, asks) = book.top();
        assert_eq!(bids.len(), DEPTH);
        assert_eq!(bids[0], (15, 1));
        assert_eq!(asks[0], (101, 1));
        book.set_level(Side::Buy, Price(15), Qty(0));
        assert_eq!(book.top().0[0], (14, 1));
    }
}
