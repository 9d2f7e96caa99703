//! What every engine under test must agree on at the end of a flow, and the trade-sequence
//! hash they all compute the same way.
//!
//! A comparison between engines counts only when their [`EndState`]s are equal
//! (docs/architecture.md §9): the same number of live orders and open quantity per book,
//! the same best bid and ask per book, and the same trade sequence, summarised by count
//! and by an xxh3-64 hash over
//! `(maker flow id, taker flow id, price, qty)` of every trade in execution order, each as
//! 8 little-endian bytes (`u64`, `u64`, `i64`, `i64`).
//!
//! **Invariants**: [`TradeHasher::record`] fed the trades one by one gives the same digest as
//! [`trade_hash`] over the whole slice (xxh3 streaming equals one-shot); an engine that
//! records no trade has `trade_hash == trade_hash(&[])`.
//!
//! **Performance**: recording a trade copies 32 bytes into the streaming hasher's buffer
//! (about 5-10 ns, no allocation), so adapters can hash inside the measured loop instead of
//! collecting trades in a growing vector.
//!
//! **Known limitations**: equal end states do not prove equal intermediate states (an order
//! could have been resting at a different price for a while); the trade hash catches most of
//! that, since any different match shows up as a different trade.

use serde::Serialize;
use xxhash_rust::xxh3::{Xxh3Default, xxh3_64};

/// One symbol's book at the end of a flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct BookEnd {
    /// Orders resting on the book.
    pub live_orders: u64,
    /// Sum of the open (unfilled) quantity of the resting orders.
    pub open_qty: i64,
    /// Highest resting buy price, if any.
    pub best_bid: Option<i64>,
    /// Lowest resting sell price, if any.
    pub best_ask: Option<i64>,
}

/// The state every engine must end in after the same flow.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EndState {
    /// Resting orders over all books.
    pub live_orders: u64,
    /// Number of trades executed.
    pub trades: u64,
    /// xxh3-64 over the trade sequence; see the module docs and [`TradeHasher`].
    pub trade_hash: u64,
    /// One entry per symbol, indexed by `FlowOp`'s `symbol`.
    pub books: Vec<BookEnd>,
}

impl EndState {
    /// Builds an end state from per-book tops and the trade hasher; `live_orders` is summed.
    pub fn new(books: Vec<BookEnd>, trades: &TradeHasher) -> Self {
        let live_orders = books.iter().map(|book| book.live_orders).sum();
        Self {
            live_orders,
            trades: trades.trades(),
            trade_hash: trades.digest(),
            books,
        }
    }

    /// Field-by-field differences from `expected`, for a finding; empty when equal.
    pub fn differences(&self, expected: &EndState) -> Vec<String> {
        let mut found = Vec::new();
        if self.live_orders != expected.live_orders {
            found.push(format!(
                "live_orders {} (expected {})",
                self.live_orders, expected.live_orders
            ));
        }
        if self.trades != expected.trades {
            found.push(format!(
                "trades {} (expected {})",
                self.trades, expected.trades
            ));
        }
        if self.trade_hash != expected.trade_hash {
            found.push(format!(
                "trade_hash {:016x} (expected {:016x})",
                self.trade_hash, expected.trade_hash
            ));
        }
        if self.books.len() != expected.books.len() {
            found.push(format!(
                "{} books (expected {})",
                self.books.len(),
                expected.books.len()
            ));
        }
        for (symbol, (got, want)) in self.books.iter().zip(&expected.books).enumerate() {
            if got != want {
                found.push(format!("symbol {symbol}: {got:?} (expected {want:?})"));
            }
        }
        found
    }
}

/// One executed trade, in flow ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TradeRecord {
    /// Flow id of the resting order.
    pub maker_id: u64,
    /// Flow id of the incoming order.
    pub taker_id: u64,
    /// Execution price.
    pub price: i64,
    /// Executed quantity.
    pub qty: i64,
}

impl TradeRecord {
    fn to_le_bytes(self) -> [u8; 32] {
        let mut bytes = [0u8; 32];
        bytes[0..8].copy_from_slice(&self.maker_id.to_le_bytes());
        bytes[8..16].copy_from_slice(&self.taker_id.to_le_bytes());
        bytes[16..24].copy_from_slice(&self.price.to_le_bytes());
        bytes[24..32].copy_from_slice(&self.qty.to_le_bytes());
        bytes
    }
}

/// The trade-sequence hash of a whole slice at once (reference for [`TradeHasher`]).
pub fn trade_hash(trades: &[TradeRecord]) -> u64 {
    let bytes: Vec<u8> = trades
        .iter()
        .flat_map(|trade| trade.to_le_bytes())
        .collect();
    xxh3_64(&bytes)
}

/// Streaming trade-sequence hasher: every adapter (Kuku's included) feeds its trades here in
/// execution order. No allocation per trade.
#[derive(Clone)]
pub struct TradeHasher {
    hasher: Xxh3Default,
    trades: u64,
}

impl Default for TradeHasher {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for TradeHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TradeHasher")
            .field("trades", &self.trades)
            .field("digest", &format_args!("{:016x}", self.digest()))
            .finish()
    }
}

impl TradeHasher {
    /// An empty trade sequence.
    pub fn new() -> Self {
        Self {
            hasher: Xxh3Default::new(),
            trades: 0,
        }
    }

    /// Appends one trade to the sequence.
    #[inline]
    pub fn record(&mut self, maker_id: u64, taker_id: u64, price: i64, qty: i64) {
        self.hasher.update(
            &TradeRecord {
                maker_id,
                taker_id,
                price,
                qty,
            }
            .to_le_bytes(),
        );
        self.trades += 1;
    }

    /// Number of trades recorded so far.
    pub fn trades(&self) -> u64 {
        self.trades
    }

    /// The hash of the sequence recorded so far.
    pub fn digest(&self) -> u64 {
        self.hasher.digest()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streaming_hash_equals_one_shot_hash() {
        let trades: Vec<TradeRecord> = (0..100)
            .map(|i| TradeRecord {
                maker_id: i,
                taker_id: i + 1000,
                price: 50_000 + i as i64,
                qty: 7,
            })
            .collect();
        let mut hasher = TradeHasher::new();
        for t in &trades {
            hasher.record(t.maker_id, t.taker_id, t.price, t.qty);
        }
        assert_eq!(hasher.digest(), trade_hash(&trades));
        assert_eq!(hasher.trades(), 100);
        assert_eq!(TradeHasher::new().digest(), trade_hash(&[]));
    }

    #[test]
    fn hash_depends_on_order() {
        let a = TradeRecord {
            maker_id: 1,
            taker_id: 2,
            price: 3,
            qty: 4,
        };
        let b = TradeRecord {
            maker_id: 2,
            taker_id: 1,
            price: 3,
            qty: 4,
        };
        assert_ne!(trade_hash(&[a, b]), trade_hash(&[b, a]));
    }
}
