//! matchcore 0.4.0 behind [`BookUnderTest`].
//!
//! One `matchcore::OrderBook` per symbol. matchcore assigns order ids itself (the command's
//! sequence number, which must be dense from 0 per book and is consumed by every command,
//! rejected or not), so the adapter keeps two id tables, both sized from the flow up front:
//! flow id -> matchcore id (global, indexed by flow id) and matchcore id -> flow id (per
//! book, indexed by sequence number). Timestamps are the sequence number (the flow has no
//! clock and no GTD orders).
//!
//! Semantics found in the source (`orderbook/execution/submit.rs`, `amend.rs`,
//! `logic/matching.rs`):
//! - A crossing limit order (DAY/GTC or IOC) is matched with `limit_price: None`: once the
//!   liquidity inside its limit is used up it keeps matching at worse prices (trade-through).
//!   A FOK first checks liquidity *within* its limit, then matches the same way, so a FOK
//!   that passes the check never trades through. The flow caps crossing quantity at the
//!   liquidity inside the limit, which makes this invisible.
//! - An amend that changes the price re-enters the order with a new time priority and, if it
//!   crosses, matches with no limit as well; the flow's modifies never cross.
//! - Quantity amend: increase moves the order to the back of its level (a new queue entry;
//!   the old one is skipped lazily), decrease keeps its place.
//! - Market orders sweep with no limit; the unfilled rest is cancelled.
//! - Every trade reports the maker's id, price and quantity; the taker is the command's order.
//!
//! **Performance**: the adapter does two table stores per new order and one hash update per
//! trade; matchcore itself allocates the outcome (a `Vec<Trade>` per match).
//!
//! **Known limitations**: only limit orders are cancelled or amended (`OrderKind::Limit`);
//! triggered (pegged / conditional) order outcomes are counted as anomalies, never expected.

use crate::book_under_test::BookUnderTest;
use crate::end_state::{BookEnd, EndState, TradeHasher};
use crate::flow::{Flow, FlowOp, Side, Tif};
use ::matchcore as mc;

/// Flow id stored for commands that create no order.
const NO_FLOW_ID: u64 = u64::MAX;

struct SymbolBook {
    book: mc::OrderBook,
    /// Sequence number of the next command to this book.
    sequence_next: u64,
    /// Flow id per matchcore order id (= sequence number).
    flow_ids: Vec<u64>,
}

/// matchcore 0.4.0, one book per symbol.
pub struct MatchcoreBook {
    books: Vec<SymbolBook>,
    /// Matchcore order id per flow id.
    matchcore_ids: Vec<u64>,
    trades: TradeHasher,
    anomalies: u64,
}

impl MatchcoreBook {
    /// A fresh engine sized for `flow`.
    pub fn new(flow: &Flow) -> Self {
        let books = flow
            .ops_per_symbol()
            .iter()
            .enumerate()
            .map(|(symbol, ops)| SymbolBook {
                book: mc::OrderBook::new(&format!("S{symbol}")),
                sequence_next: 0,
                flow_ids: Vec::with_capacity(usize::try_from(*ops).unwrap_or(0)),
            })
            .collect();
        let ids = usize::try_from(flow.id_max()).map_or(0, |max| max + 1);
        Self {
            books,
            matchcore_ids: vec![0; ids],
            trades: TradeHasher::new(),
            anomalies: 0,
        }
    }

    /// Runs one command on `symbol`'s book; records the flow id the command's order gets.
    fn execute(&mut self, symbol: u32, flow_id: u64, kind: mc::CommandKind) -> mc::CommandOutcome {
        let book = &mut self.books[symbol as usize];
        let sequence = book.sequence_next;
        book.sequence_next += 1;
        book.flow_ids.push(flow_id);
        if flow_id != NO_FLOW_ID {
            if let Some(slot) = self.matchcore_ids.get_mut(flow_id as usize) {
                *slot = sequence;
            } else {
                self.anomalies += 1;
            }
        }
        let meta = mc::CommandMeta {
            sequence_number: mc::SequenceNumber(sequence),
            timestamp: mc::Timestamp(sequence),
        };
        book.book.execute(&mc::Command { meta, kind })
    }

    /// Hashes the trades of a submit or amend outcome; counts rejects as anomalies.
    fn record(&mut self, symbol: u32, taker_id: u64, outcome: &mc::CommandOutcome) {
        let effects = match outcome {
            mc::CommandOutcome::Applied(mc::CommandReport::Submit(effects))
            | mc::CommandOutcome::Applied(mc::CommandReport::Amend(effects)) => effects,
            mc::CommandOutcome::Applied(mc::CommandReport::Cancel) => return,
            mc::CommandOutcome::Rejected(_) => {
                self.anomalies += 1;
                return;
            }
        };
        if !effects.triggered_orders().is_empty() {
            self.anomalies += 1;
        }
        let Some(result) = effects.target_order().match_result() else {
            return;
        };
        let flow_ids = &self.books[symbol as usize].flow_ids;
        for trade in result.trades() {
            let maker_id = flow_ids
                .get(trade.maker_order_id().0 as usize)
                .copied()
                .unwrap_or(NO_FLOW_ID);
            let price = i64::try_from(trade.price().0).unwrap_or(i64::MAX);
            let qty = i64::try_from(trade.quantity().0).unwrap_or(i64::MAX);
            self.trades.record(maker_id, taker_id, price, qty);
        }
    }

    fn matchcore_id(&self, flow_id: u64) -> mc::OrderId {
        mc::OrderId(
            self.matchcore_ids
                .get(flow_id as usize)
                .copied()
                .unwrap_or(u64::MAX),
        )
    }
}

fn side(side: Side) -> mc::Side {
    match side {
        Side::Buy => mc::Side::Buy,
        Side::Sell => mc::Side::Sell,
    }
}

fn time_in_force(tif: Tif) -> mc::TimeInForce {
    match tif {
        Tif::Day => mc::TimeInForce::Gtc,
        Tif::Ioc => mc::TimeInForce::Ioc,
        Tif::Fok => mc::TimeInForce::Fok,
    }
}

/// Flow prices and quantities are positive (flow invariant), so they fit `u64`.
fn unsigned(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

/// A patch with both absolute values: matchcore treats an unchanged price or quantity in a
/// patch as no change (`amend_limit_order` compares with the order's current values).
fn limit_patch(new_price: i64, new_qty: i64) -> mc::LimitOrderPatch {
    mc::LimitOrderPatch::new()
        .with_price(mc::Price(unsigned(new_price)))
        .with_quantity_policy(mc::QuantityPolicy::Standard {
            quantity: mc::Quantity(unsigned(new_qty)),
        })
}

impl BookUnderTest for MatchcoreBook {
    fn name(&self) -> &'static str {
        "matchcore"
    }

    fn apply(&mut self, op: &FlowOp) {
        match *op {
            FlowOp::Limit {
                id,
                symbol,
                side: s,
                price,
                qty,
                tif,
                ..
            } => {
                let order = mc::LimitOrder::new(
                    mc::Price(unsigned(price)),
                    mc::QuantityPolicy::Standard {
                        quantity: mc::Quantity(unsigned(qty)),
                    },
                    mc::OrderFlags::new(side(s), false, time_in_force(tif)),
                );
                let kind = mc::CommandKind::Submit(mc::SubmitCmd {
                    order: mc::NewOrder::Limit(order),
                });
                let outcome = self.execute(symbol, id, kind);
                self.record(symbol, id, &outcome);
            }
            FlowOp::Market {
                id,
                symbol,
                side: s,
                qty,
                ..
            } => {
                let order = mc::MarketOrder::new(mc::Quantity(unsigned(qty)), side(s), false);
                let kind = mc::CommandKind::Submit(mc::SubmitCmd {
                    order: mc::NewOrder::Market(order),
                });
                let outcome = self.execute(symbol, id, kind);
                self.record(symbol, id, &outcome);
            }
            FlowOp::Cancel { id, symbol, .. } => {
                let order_id = self.matchcore_id(id);
                let kind = mc::CommandKind::Cancel(mc::CancelCmd {
                    order_id,
                    order_kind: mc::OrderKind::Limit,
                });
                let outcome = self.execute(symbol, NO_FLOW_ID, kind);
                self.record(symbol, id, &outcome);
            }
            FlowOp::Modify {
                id,
                symbol,
                new_price,
                new_qty,
                ..
            } => {
                let order_id = self.matchcore_id(id);
                let patch = mc::AmendPatch::Limit(limit_patch(new_price, new_qty));
                let kind = mc::CommandKind::Amend(mc::AmendCmd { order_id, patch });
                let outcome = self.execute(symbol, NO_FLOW_ID, kind);
                self.record(symbol, id, &outcome);
            }
        }
    }

    fn end_state(&self) -> EndState {
        let books = self
            .books
            .iter()
            .map(|symbol_book| {
                let book = &symbol_book.book;
                let orders = book.limit().orders();
                let open_qty = orders
                    .values()
                    .map(|order| order.total_quantity().0)
                    .sum::<u64>();
                BookEnd {
                    live_orders: orders.len() as u64,
                    open_qty: i64::try_from(open_qty).unwrap_or(i64::MAX),
                    best_bid: book
                        .best_bid_price()
                        .map(|p| i64::try_from(p.0).unwrap_or(i64::MAX)),
                    best_ask: book
                        .best_ask_price()
                        .map(|p| i64::try_from(p.0).unwrap_or(i64::MAX)),
                }
            })
            .collect();
        EndState::new(books, &self.trades)
    }

    fn anomalies(&self) -> u64 {
        self.anomalies
    }
}
