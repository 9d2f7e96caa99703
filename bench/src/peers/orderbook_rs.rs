//! orderbook-rs 0.15.3 behind [`BookUnderTest`].
//!
//! One `orderbook_rs::OrderBook<()>` per symbol (`OrderBook::new`, default configuration:
//! wall clock for order timestamps, no tick or lot size, no fees, `STPMode::None`, no risk
//! limits, no listeners). Flow ids are passed straight through as `Id::Sequential`, and the
//! trades' maker and taker ids come back the same way.
//!
//! Semantics found in the source (`orderbook/modifications.rs`, `book.rs`, and pricelevel
//! 0.10.2 `price_level/level.rs`):
//! - A limit order matches up to its limit price; a DAY (GTC) remainder rests; an IOC
//!   remainder is dropped and the call returns `Err(InsufficientLiquidity)` *after* the trades
//!   (only [`OrderBook::add_order_with_committed`] hands those trades back, so the adapter
//!   uses it); a FOK is preflighted within its limit and killed untouched with the same error.
//! - Market orders sweep with no limit; a remainder is dropped.
//! - `UpdateQuantity`: a decrease keeps the order's place, an increase moves it to the back
//!   (pricelevel reserves a fresh tail sequence). Quantity 0 cancels.
//! - `UpdatePrice` / `UpdatePriceAndQuantity`: cancel, then re-add at the back of the new
//!   level; a re-add that crosses matches within its limit, but its trades reach only a trade
//!   listener, not the caller. The flow never sends a crossing modify, and a trade that went
//!   unrecorded would show as a trade-hash mismatch, not go unnoticed.
//! - `UpdatePriceAndQuantity` with an unchanged price is still cancel-and-re-add (loses
//!   priority), so the adapter sends `UpdateQuantity` when the price is unchanged, keeping
//!   each order's current price in a flow-id-indexed table.
//! - `cancel_order` of an unknown id returns `Ok(None)` (counted as an anomaly here).
//!
//! **Performance**: the book is built for concurrent use (DashMap, SkipMap, per-level locks,
//! a submit gate) and allocates per submit (`Arc<OrderType>`, the match result), and
//! `UpdateQuantity` scans the order's level; expect it to be the slowest engine by far.
//!
//! **Known limitations**: trades of a crossing modify are not captured (see above).

use crate::book_under_test::BookUnderTest;
use crate::end_state::{BookEnd, EndState, TradeHasher};
use crate::flow::{Flow, FlowOp, Side, Tif};
use orderbook_rs::{OrderBook, OrderBookError, TradeResult};
use pricelevel::{Hash32, Id, MatchResult, OrderType, OrderUpdate, Price, Quantity, TimeInForce};

/// orderbook-rs 0.15.3, one book per symbol.
pub struct OrderbookRsBook {
    books: Vec<OrderBook<()>>,
    /// Current price per flow id (0 when never a resting limit).
    prices: Vec<i64>,
    trades: TradeHasher,
    anomalies: u64,
}

fn side(side: Side) -> pricelevel::Side {
    match side {
        Side::Buy => pricelevel::Side::Buy,
        Side::Sell => pricelevel::Side::Sell,
    }
}

fn time_in_force(tif: Tif) -> TimeInForce {
    match tif {
        Tif::Day => TimeInForce::Gtc,
        Tif::Ioc => TimeInForce::Ioc,
        Tif::Fok => TimeInForce::Fok,
    }
}

/// Flow prices and quantities are positive (flow invariant).
fn unsigned(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

fn flow_id(id: Id) -> Option<u64> {
    match id {
        Id::Sequential(n) => Some(n),
        _ => None,
    }
}

impl OrderbookRsBook {
    /// A fresh engine sized for `flow`.
    pub fn new(flow: &Flow) -> Self {
        let books = (0..flow.config().symbols)
            .map(|symbol| OrderBook::new(&format!("S{symbol}")))
            .collect();
        let ids = usize::try_from(flow.id_max()).map_or(0, |max| max + 1);
        Self {
            books,
            prices: vec![0; ids],
            trades: TradeHasher::new(),
            anomalies: 0,
        }
    }

    fn record(&mut self, result: &MatchResult) {
        for trade in result.trades().as_vec() {
            let (Some(maker_id), Some(taker_id)) = (
                flow_id(trade.maker_order_id()),
                flow_id(trade.taker_order_id()),
            ) else {
                self.anomalies += 1;
                continue;
            };
            let price = i64::try_from(trade.price().as_u128()).unwrap_or(i64::MAX);
            let qty = i64::try_from(trade.quantity().as_u64()).unwrap_or(i64::MAX);
            self.trades.record(maker_id, taker_id, price, qty);
        }
    }

    fn record_committed(&mut self, committed: Option<&TradeResult>) {
        if let Some(trade_result) = committed {
            self.record(&trade_result.match_result);
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn limit(&mut self, id: u64, symbol: u32, s: Side, price: i64, qty: i64, tif: Tif) {
        let book = &self.books[symbol as usize];
        let order = OrderType::Standard {
            id: Id::Sequential(id),
            price: Price::new(u128::from(unsigned(price))),
            quantity: Quantity::new(unsigned(qty)),
            side: side(s),
            user_id: Hash32::zero(),
            timestamp: book.clock().now_millis(),
            time_in_force: time_in_force(tif),
            extra_fields: (),
        };
        match book.add_order_with_committed(order) {
            Ok((_, trade_result)) => self.record_committed(trade_result.as_ref()),
            Err(failure) => {
                self.record_committed(failure.committed.as_deref());
                let expected = tif != Tif::Day
                    && matches!(failure.error, OrderBookError::InsufficientLiquidity { .. });
                if !expected {
                    self.anomalies += 1;
                }
            }
        }
        if let Some(slot) = self.prices.get_mut(id as usize) {
            *slot = price;
        }
    }

    fn modify(&mut self, id: u64, symbol: u32, new_price: i64, new_qty: i64) {
        let current_price = self.prices.get(id as usize).copied().unwrap_or(0);
        let order_id = Id::Sequential(id);
        let update = if current_price == new_price {
            OrderUpdate::UpdateQuantity {
                order_id,
                new_quantity: Quantity::new(unsigned(new_qty)),
            }
        } else {
            OrderUpdate::UpdatePriceAndQuantity {
                order_id,
                new_price: Price::new(u128::from(unsigned(new_price))),
                new_quantity: Quantity::new(unsigned(new_qty)),
            }
        };
        match self.books[symbol as usize].update_order(update) {
            Ok(Some(_)) => {
                if let Some(slot) = self.prices.get_mut(id as usize) {
                    *slot = new_price;
                }
            }
            Ok(None) | Err(_) => self.anomalies += 1,
        }
    }
}

impl BookUnderTest for OrderbookRsBook {
    fn name(&self) -> &'static str {
        "orderbook_rs"
    }

    fn apply(&mut self, op: &FlowOp) {
        match *op {
            FlowOp::Limit {
                id,
                symbol,
                side,
                price,
                qty,
                tif,
                ..
            } => self.limit(id, symbol, side, price, qty, tif),
            FlowOp::Market {
                id,
                symbol,
                side: s,
                qty,
                ..
            } => {
                let book = &self.books[symbol as usize];
                match book.submit_market_order_with_committed(
                    Id::Sequential(id),
                    unsigned(qty),
                    side(s),
                ) {
                    Ok(result) => self.record(&result),
                    Err(failure) => {
                        self.record_committed(failure.committed.as_deref());
                        self.anomalies += 1;
                    }
                }
            }
            FlowOp::Cancel { id, symbol, .. } => {
                match self.books[symbol as usize].cancel_order(Id::Sequential(id)) {
                    Ok(Some(_)) => {}
                    Ok(None) | Err(_) => self.anomalies += 1,
                }
            }
            FlowOp::Modify {
                id,
                symbol,
                new_price,
                new_qty,
                ..
            } => self.modify(id, symbol, new_price, new_qty),
        }
    }

    fn end_state(&self) -> EndState {
        let books = self
            .books
            .iter()
            .map(|book| {
                let orders = book.get_all_orders();
                let open_qty: u64 = orders
                    .iter()
                    .map(|order| {
                        order.visible_quantity().as_u64() + order.hidden_quantity().as_u64()
                    })
                    .sum();
                let price = |p: u128| i64::try_from(p).unwrap_or(i64::MAX);
                BookEnd {
                    live_orders: orders.len() as u64,
                    open_qty: i64::try_from(open_qty).unwrap_or(i64::MAX),
                    best_bid: book.best_bid().map(price),
                    best_ask: book.best_ask().map(price),
                }
            })
            .collect();
        EndState::new(books, &self.trades)
    }

    fn anomalies(&self) -> u64 {
        self.anomalies
    }
}
