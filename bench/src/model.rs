//! The model book: a deliberately plain price-time order book, the flow's oracle.
//!
//! The generator drives one [`ModelBook`] while it shapes the flow and takes its final state
//! as the expected end state; as a [`BookUnderTest`] it replays a flow from scratch so the
//! harness can be exercised (and checked for determinism) without any real engine.
//!
//! Semantics (the reference the adapters are checked against):
//! - Price-time priority per symbol; a trade executes at the resting (maker) order's price.
//! - An incoming limit matches while the best opposite price is at or inside its limit; the
//!   rest of a DAY order rests at the back of its level, of an IOC is dropped. A FOK first
//!   checks that the liquidity inside its limit covers it, else does nothing. A market order
//!   matches without a limit and drops its rest.
//! - Modify: same price and lower quantity keeps the place in the queue; same price and
//!   higher quantity moves to the back of the level; a new price takes the order off the book
//!   and re-enters it as an incoming DAY limit with the same id (it could trade as taker).
//!   The new quantity is the new open quantity.
//! - No self-trade prevention: [`ModelBook::self_trades`] counts trades between orders of
//!   one account so tests can prove the flow never produces one.
//!
//! **Invariants**: every live order is in exactly one level queue and in `orders`; a level's
//! `open_qty` is the sum of its orders' open quantity and it is never empty; `live_ids` holds
//! each live id once and `live_index` points at it.
//!
//! **Performance**: `BTreeMap` per side (`O(log levels)`), `VecDeque` per level; a cancel or
//! a modify scans its level linearly. Fine for an oracle, not a contender.
//!
//! **Known limitations**: no iceberg, post-only, stop or expiry; quantities assumed to fit
//! `i64` sums (the flow keeps them small).

use crate::book_under_test::BookUnderTest;
use crate::end_state::{BookEnd, EndState, TradeHasher};
use crate::flow::{FlowOp, Side, Tif};
use rustc_hash::FxHashMap;
use std::collections::{BTreeMap, VecDeque};

/// A live order as the model sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestingOrder {
    /// Book.
    pub symbol: u32,
    /// Owner.
    pub account: u32,
    /// Side.
    pub side: Side,
    /// Limit price.
    pub price: i64,
    /// Quantity still open.
    pub open_qty: i64,
    /// Quantity executed so far.
    pub filled_qty: i64,
    live_index: usize,
}

/// Why the model refused an op (a flow bug, never expected from the generator).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ModelReject {
    /// Cancel or modify of an id that is not live.
    #[error("order {0} is not live")]
    UnknownOrder(u64),
    /// A new order reused a live id.
    #[error("order id {0} is already live")]
    DuplicateId(u64),
    /// Symbol out of range.
    #[error("symbol {0} out of range")]
    UnknownSymbol(u32),
    /// Price or quantity not positive.
    #[error("price and quantity must be positive")]
    NotPositive,
    /// Modify with the current price and quantity.
    #[error("modify of order {0} changes nothing")]
    NoChange(u64),
}

#[derive(Debug, Default)]
struct Level {
    queue: VecDeque<u64>,
    open_qty: i64,
}

#[derive(Debug, Default)]
struct SymbolBook {
    bids: BTreeMap<i64, Level>,
    asks: BTreeMap<i64, Level>,
}

impl SymbolBook {
    fn side_mut(&mut self, side: Side) -> &mut BTreeMap<i64, Level> {
        match side {
            Side::Buy => &mut self.bids,
            Side::Sell => &mut self.asks,
        }
    }

    /// Levels a taker on `taker_side` would meet, best first, within `limit`.
    fn levels_for_taker(
        &self,
        taker_side: Side,
        limit: Option<i64>,
    ) -> Box<dyn Iterator<Item = (&i64, &Level)> + '_> {
        match taker_side {
            Side::Buy => {
                let it = self.asks.iter();
                Box::new(it.take_while(move |(price, _)| limit.is_none_or(|l| **price <= l)))
            }
            Side::Sell => {
                let it = self.bids.iter().rev();
                Box::new(it.take_while(move |(price, _)| limit.is_none_or(|l| **price >= l)))
            }
        }
    }
}

/// The oracle order book over all symbols of a flow.
#[derive(Debug)]
pub struct ModelBook {
    books: Vec<SymbolBook>,
    orders: FxHashMap<u64, RestingOrder>,
    live_ids: Vec<u64>,
    trades: TradeHasher,
    self_trades: u64,
    rejects: u64,
}

/// Removes `id` from the live-id list in O(1), fixing the moved order's index.
fn unlink_live(orders: &mut FxHashMap<u64, RestingOrder>, live_ids: &mut Vec<u64>, index: usize) {
    live_ids.swap_remove(index);
    if let Some(moved_id) = live_ids.get(index) {
        let moved = orders
            .get_mut(moved_id)
            .expect("every live id has an order");
        moved.live_index = index;
    }
}

impl ModelBook {
    /// An empty book for `symbols` symbols.
    pub fn new(symbols: u32) -> Self {
        Self {
            books: (0..symbols).map(|_| SymbolBook::default()).collect(),
            orders: FxHashMap::default(),
            live_ids: Vec::new(),
            trades: TradeHasher::new(),
            self_trades: 0,
            rejects: 0,
        }
    }

    /// Applies one op, or says why it is invalid (and changes nothing).
    pub fn apply_op(&mut self, op: &FlowOp) -> Result<(), ModelReject> {
        if op.symbol() as usize >= self.books.len() {
            return Err(ModelReject::UnknownSymbol(op.symbol()));
        }
        match *op {
            FlowOp::Limit {
                id,
                symbol,
                account,
                side,
                price,
                qty,
                tif,
            } => {
                self.check_new(id, price, qty)?;
                self.submit_limit(id, symbol, account, side, price, qty, tif);
            }
            FlowOp::Market {
                id,
                symbol,
                account,
                side,
                qty,
            } => {
                self.check_new(id, 1, qty)?;
                self.match_incoming(symbol, id, account, side, None, qty);
            }
            FlowOp::Cancel { id, .. } => {
                self.remove(id).ok_or(ModelReject::UnknownOrder(id))?;
            }
            FlowOp::Modify {
                id,
                new_price,
                new_qty,
                ..
            } => self.modify(id, new_price, new_qty)?,
        }
        Ok(())
    }

    fn check_new(&self, id: u64, price: i64, qty: i64) -> Result<(), ModelReject> {
        if price <= 0 || qty <= 0 {
            return Err(ModelReject::NotPositive);
        }
        if self.orders.contains_key(&id) {
            return Err(ModelReject::DuplicateId(id));
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn submit_limit(
        &mut self,
        id: u64,
        symbol: u32,
        account: u32,
        side: Side,
        price: i64,
        qty: i64,
        tif: Tif,
    ) {
        if tif == Tif::Fok && self.liquidity_within(symbol, side, Some(price)) < qty {
            return;
        }
        let filled = self.match_incoming(symbol, id, account, side, Some(price), qty);
        if filled < qty && tif == Tif::Day {
            self.rest(
                id,
                RestingOrder {
                    symbol,
                    account,
                    side,
                    price,
                    open_qty: qty - filled,
                    filled_qty: filled,
                    live_index: 0,
                },
            );
        }
    }

    /// Matches an incoming order against the opposite side; returns the quantity filled.
    fn match_incoming(
        &mut self,
        symbol: u32,
        taker_id: u64,
        taker_account: u32,
        side: Side,
        limit: Option<i64>,
        qty: i64,
    ) -> i64 {
        let Self {
            books,
            orders,
            live_ids,
            trades,
            self_trades,
            ..
        } = self;
        let levels = books[symbol as usize].side_mut(side.opposite());
        let mut remaining = qty;
        while remaining > 0 {
            let best = match side {
                Side::Buy => levels.first_entry(),
                Side::Sell => levels.last_entry(),
            };
            let Some(mut entry) = best else { break };
            let price = *entry.key();
            let outside = match (side, limit) {
                (_, None) => false,
                (Side::Buy, Some(limit)) => price > limit,
                (Side::Sell, Some(limit)) => price < limit,
            };
            if outside {
                break;
            }
            let level = entry.get_mut();
            while remaining > 0 {
                let Some(&maker_id) = level.queue.front() else {
                    break;
                };
                let maker = orders.get_mut(&maker_id).expect("queued ids are live");
                let fill = remaining.min(maker.open_qty);
                trades.record(maker_id, taker_id, price, fill);
                if maker.account == taker_account {
                    *self_trades += 1;
                }
                remaining -= fill;
                level.open_qty -= fill;
                maker.open_qty -= fill;
                maker.filled_qty += fill;
                if maker.open_qty == 0 {
                    let index = maker.live_index;
                    level.queue.pop_front();
                    orders.remove(&maker_id);
                    unlink_live(orders, live_ids, index);
                }
            }
            if level.queue.is_empty() {
                debug_assert_eq!(level.open_qty, 0);
                entry.remove();
            }
        }
        qty - remaining
    }

    fn rest(&mut self, id: u64, mut order: RestingOrder) {
        debug_assert!(order.open_qty > 0);
        order.live_index = self.live_ids.len();
        self.live_ids.push(id);
        let level = self.books[order.symbol as usize]
            .side_mut(order.side)
            .entry(order.price)
            .or_default();
        level.queue.push_back(id);
        level.open_qty += order.open_qty;
        self.orders.insert(id, order);
    }

    /// Takes a live order off the book; returns it.
    fn remove(&mut self, id: u64) -> Option<RestingOrder> {
        let order = self.orders.get(&id).copied()?;
        let levels = self.books[order.symbol as usize].side_mut(order.side);
        let level = levels
            .get_mut(&order.price)
            .expect("a live order's level exists");
        let position = level.queue.iter().position(|queued| *queued == id);
        level
            .queue
            .remove(position.expect("a live order is in its level's queue"));
        level.open_qty -= order.open_qty;
        if level.queue.is_empty() {
            levels.remove(&order.price);
        }
        self.orders.remove(&id);
        unlink_live(&mut self.orders, &mut self.live_ids, order.live_index);
        Some(order)
    }

    fn modify(&mut self, id: u64, new_price: i64, new_qty: i64) -> Result<(), ModelReject> {
        let order = *self.orders.get(&id).ok_or(ModelReject::UnknownOrder(id))?;
        if new_price <= 0 || new_qty <= 0 {
            return Err(ModelReject::NotPositive);
        }
        if new_price == order.price && new_qty == order.open_qty {
            return Err(ModelReject::NoChange(id));
        }
        if new_price == order.price {
            let levels = self.books[order.symbol as usize].side_mut(order.side);
            let level = levels
                .get_mut(&order.price)
                .expect("a live order's level exists");
            level.open_qty += new_qty - order.open_qty;
            if new_qty > order.open_qty {
                let position = level.queue.iter().position(|queued| *queued == id);
                level
                    .queue
                    .remove(position.expect("a live order is in its level's queue"));
                level.queue.push_back(id);
            }
            self.orders.get_mut(&id).expect("checked above").open_qty = new_qty;
            return Ok(());
        }
        self.remove(id);
        let filled = self.match_incoming(
            order.symbol,
            id,
            order.account,
            order.side,
            Some(new_price),
            new_qty,
        );
        if filled < new_qty {
            self.rest(
                id,
                RestingOrder {
                    price: new_price,
                    open_qty: new_qty - filled,
                    filled_qty: order.filled_qty + filled,
                    ..order
                },
            );
        }
        Ok(())
    }

    /// Highest resting buy price of `symbol`.
    pub fn best_bid(&self, symbol: u32) -> Option<i64> {
        self.books[symbol as usize].bids.keys().next_back().copied()
    }

    /// Lowest resting sell price of `symbol`.
    pub fn best_ask(&self, symbol: u32) -> Option<i64> {
        self.books[symbol as usize].asks.keys().next().copied()
    }

    /// Total open quantity a taker on `taker_side` could reach within `limit`.
    pub fn liquidity_within(&self, symbol: u32, taker_side: Side, limit: Option<i64>) -> i64 {
        self.books[symbol as usize]
            .levels_for_taker(taker_side, limit)
            .map(|(_, level)| level.open_qty)
            .sum()
    }

    /// How much of `want` a taker of `account` could fill within `limit` before meeting an
    /// order of its own account (in price-time order).
    pub fn fillable_without_self_trade(
        &self,
        symbol: u32,
        taker_side: Side,
        account: u32,
        limit: Option<i64>,
        want: i64,
    ) -> i64 {
        let mut fillable = 0;
        for (_, level) in self.books[symbol as usize].levels_for_taker(taker_side, limit) {
            for maker_id in &level.queue {
                let maker = &self.orders[maker_id];
                if maker.account == account {
                    return fillable;
                }
                fillable += maker.open_qty;
                if fillable >= want {
                    return want;
                }
            }
        }
        fillable
    }

    /// Number of live orders over all symbols.
    pub fn live_orders(&self) -> usize {
        self.live_ids.len()
    }

    /// The `index`-th live order id (`index < live_orders()`), in no meaningful order.
    pub fn live_id(&self, index: usize) -> u64 {
        self.live_ids[index]
    }

    /// A live order by id.
    pub fn order(&self, id: u64) -> Option<&RestingOrder> {
        self.orders.get(&id)
    }

    /// True when `id` is resting.
    pub fn is_live(&self, id: u64) -> bool {
        self.orders.contains_key(&id)
    }

    /// Trades so far between two orders of the same account.
    pub fn self_trades(&self) -> u64 {
        self.self_trades
    }

    /// Ops refused through [`BookUnderTest::apply`].
    pub fn rejects(&self) -> u64 {
        self.rejects
    }

    /// The state the engines are compared on.
    pub fn end_state(&self) -> EndState {
        let books = self
            .books
            .iter()
            .map(|book| {
                let levels = book.bids.values().chain(book.asks.values());
                let (live_orders, open_qty) = levels.fold((0u64, 0i64), |(n, q), level| {
                    (n + level.queue.len() as u64, q + level.open_qty)
                });
                BookEnd {
                    live_orders,
                    open_qty,
                    best_bid: book.bids.keys().next_back().copied(),
                    best_ask: book.asks.keys().next().copied(),
                }
            })
            .collect();
        EndState::new(books, &self.trades)
    }
}

impl BookUnderTest for ModelBook {
    fn name(&self) -> &'static str {
        "model"
    }

    fn apply(&mut self, op: &FlowOp) {
        if self.apply_op(op).is_err() {
            self.rejects += 1;
        }
    }

    fn end_state(&self) -> EndState {
        ModelBook::end_state(self)
    }

    fn anomalies(&self) -> u64 {
        self.rejects + self.self_trades
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limit(id: u64, account: u32, side: Side, price: i64, qty: i64, tif: Tif) -> FlowOp {
        FlowOp::Limit {
            id,
            symbol: 0,
            account,
            side,
            price,
            qty,
            tif,
        }
    }

    #[test]
    fn matches_in_price_then_time_priority_at_maker_price() {
        let mut book = ModelBook::new(1);
        book.apply_op(&limit(1, 1, Side::Sell, 101, 5, Tif::Day))
            .unwrap();
        book.apply_op(&limit(2, 2, Side::Sell, 100, 5, Tif::Day))
            .unwrap();
        book.apply_op(&limit(3, 3, Side::Sell, 100, 5, Tif::Day))
            .unwrap();
        book.apply_op(&limit(4, 4, Side::Buy, 101, 12, Tif::Day))
            .unwrap();
        let mut expected = TradeHasher::new();
        expected.record(2, 4, 100, 5);
        expected.record(3, 4, 100, 5);
        expected.record(1, 4, 101, 2);
        let state = book.end_state();
        assert_eq!(state.trade_hash, expected.digest());
        assert_eq!(state.books[0].best_ask, Some(101));
        assert_eq!(state.books[0].open_qty, 3);
        assert_eq!(book.order(1).unwrap().filled_qty, 2);
    }

    #[test]
    fn ioc_rest_is_dropped_and_fok_without_liquidity_does_nothing() {
        let mut book = ModelBook::new(1);
        book.apply_op(&limit(1, 1, Side::Sell, 100, 5, Tif::Day))
            .unwrap();
        book.apply_op(&limit(2, 2, Side::Buy, 100, 6, Tif::Fok))
            .unwrap();
        assert_eq!(book.end_state().trades, 0);
        book.apply_op(&limit(3, 2, Side::Buy, 100, 8, Tif::Ioc))
            .unwrap();
        let state = book.end_state();
        assert_eq!((state.trades, state.live_orders), (1, 0));
    }

    #[test]
    fn modify_quantity_down_keeps_priority_and_up_loses_it() {
        let mut book = ModelBook::new(1);
        for id in 1..=3 {
            book.apply_op(&limit(id, id as u32, Side::Buy, 100, 10, Tif::Day))
                .unwrap();
        }
        let modify = |id, new_qty| FlowOp::Modify {
            id,
            symbol: 0,
            account: id as u32,
            new_price: 100,
            new_qty,
        };
        book.apply_op(&modify(1, 4)).unwrap();
        book.apply_op(&modify(2, 20)).unwrap();
        book.apply_op(&FlowOp::Market {
            id: 4,
            symbol: 0,
            account: 9,
            side: Side::Sell,
            qty: 14,
        })
        .unwrap();
        let mut expected = TradeHasher::new();
        expected.record(1, 4, 100, 4);
        expected.record(3, 4, 100, 10);
        assert_eq!(book.end_state().trade_hash, expected.digest());
        assert!(book.is_live(2) && !book.is_live(1) && !book.is_live(3));
    }

    #[test]
    fn cancel_of_unknown_order_is_rejected_without_change() {
        let mut book = ModelBook::new(1);
        let before = book.end_state();
        assert_eq!(
            book.apply_op(&FlowOp::Cancel {
                id: 9,
                symbol: 0,
                account: 1
            }),
            Err(ModelReject::UnknownOrder(9))
        );
        assert_eq!(book.end_state(), before);
    }
}
