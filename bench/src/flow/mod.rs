//! A seeded, deterministic order flow that every engine under test can run and agree on.
//!
//! [`Flow::generate`] builds the whole operation sequence up front from a [`FlowConfig`]:
//! first a **warm-up** of passive limit orders that builds the book to `depth_orders`
//! resting orders, then `ops_steady` **steady-state** operations drawn from [`FlowMix`].
//! While generating it keeps its own obviously-right price-time book ([`ModelBook`]); the
//! model shapes each operation so that engines with different edge-case semantics must reach
//! the same outcome, and its final state is the oracle ([`Flow::expected`]).
//!
//! # The steady-state mix (defaults, percent of steady ops)
//! | kind | default | what it is |
//! |---|---|---|
//! | limit passive | 45 | DAY limit that does not cross; rests. Price: one tick off the best opposite price, then `k` ticks further away (`k` geometric with mean `passive_offset_ticks_mean` (5), capped at `passive_offset_ticks_max` (100)), so the spread stays tight and depth thins out away from the touch. |
//! | limit crossing | 10 | DAY limit priced 0..=`cross_offset_ticks_max` ticks through the best opposite price; quantity capped so it fills completely. |
//! | IOC | 5 | `ioc_miss_pct` of them (20) priced not to cross (cancelled, no trade); the rest crossing and capped like a crossing limit. |
//! | FOK | 5 | `fok_kill_pct` of them (20) ask for more than all liquidity inside the limit (killed, no trade); the rest crossing and capped (fill completely). |
//! | market | 5 | quantity capped at the opposite side's liquidity; fills completely. |
//! | cancel | 20 | a uniformly random live order. |
//! | modify | 10 | a random live order that has not traded: `modify_qty_down_pct` (50) lower quantity (keeps priority), `modify_qty_up_pct` (25) higher quantity (loses priority), the rest a new non-crossing price, same quantity (loses priority). |
//!
//! A depth controller keeps the book near `depth_orders`: a passive draw becomes a cancel
//! above `depth_orders + 2%`, a cancel draw becomes a passive order below `depth_orders - 2%`.
//! A draw that cannot be shaped (no opposite liquidity, no eligible order) falls back to a
//! passive limit. [`FlowStats`] counts what was actually emitted.
//!
//! # Invariants (what makes the peers agree)
//! - Ids are dense from 1 in submission order: every `Limit` and `Market` takes the next id.
//! - Every price is a multiple of `price_tick` inside the band `price_base ± price_band_pct%`
//!   (band width truncated to the tick).
//! - A crossing order (limit, IOC, FOK that fills, market) never asks for more than the
//!   liquidity inside its limit (unless `crossing_capped` is off), so no remainder of a
//!   crossing order ever rests or is cancelled. matchcore 0.4.0 matches a crossing limit order with no price limit (a
//!   remainder trades through the limit price), so a flow without this cap diverges.
//! - A crossing order never reaches an order of its own account: its quantity is capped at the
//!   liquidity in front of the first own-account maker (Kuku cancels the incoming remainder on
//!   self-trade; the peers have no self-trade prevention in the configuration used).
//! - A killed FOK asks for more than *all* liquidity inside its limit, own orders included, so
//!   it is killed under any self-trade rule.
//! - `Cancel` and `Modify` name only live orders; `Modify` only orders with no fill yet, so
//!   "new quantity" means the same thing whether an engine reads it as total or open
//!   quantity. A modify never crosses and never keeps both price and quantity unchanged.
//!
//! # Performance
//! Generation costs about as much as running the model book: `O(log levels)` per op plus a
//! linear scan of one price level on cancel and modify. The ops live in one `Vec` (40 bytes
//! an op).
//!
//! # Known limitations
//! - Cancels pick uniformly among live orders (so where the depth is), with no bias to recent
//!   orders as in real flow.
//! - Queues get long: with the default offsets most depth sits within ~10 ticks of the touch
//!   (at 400k orders on one symbol, about 20k orders on each top level). Engines that scan a
//!   level on cancel or modify pay for it; `passive_offset_ticks_mean` spreads the depth.
//! - No crossing modify, no partial fill of a crossing order that then rests, no IOC with a
//!   partial fill: the peers disagree on those (see `peers`), so the flow leaves them out.
//! - One fixed tick per symbol (no KRX tick table); all symbols share the price grid.

mod generator;
mod prng;

pub use prng::Prng;

use crate::end_state::EndState;
use crate::model::{ModelBook, ModelReject};
use serde::Serialize;
use xxhash_rust::xxh3::Xxh3Default;

/// Buy or sell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum Side {
    /// Bid.
    Buy,
    /// Ask.
    Sell,
}

impl Side {
    /// The other side.
    pub fn opposite(self) -> Side {
        match self {
            Side::Buy => Side::Sell,
            Side::Sell => Side::Buy,
        }
    }
}

/// Time in force of a limit order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum Tif {
    /// Rests until filled or cancelled (GTC at the peers).
    Day,
    /// Immediate or cancel: the unfilled rest is cancelled.
    Ioc,
    /// Fill or kill: fills completely or does nothing.
    Fok,
}

/// One operation of a flow, in engine-neutral terms.
///
/// `symbol` is the book (0-based, `< FlowConfig::symbols`); `account` the owner (1-based).
/// Prices are KRW (multiples of the tick), quantities shares; both always positive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FlowOp {
    /// A new limit order.
    Limit {
        id: u64,
        symbol: u32,
        account: u32,
        side: Side,
        price: i64,
        qty: i64,
        tif: Tif,
    },
    /// A new market order (the flow caps it so it fills completely).
    Market {
        id: u64,
        symbol: u32,
        account: u32,
        side: Side,
        qty: i64,
    },
    /// Cancel a live order.
    Cancel { id: u64, symbol: u32, account: u32 },
    /// Replace a live, unfilled order's price and/or quantity with absolute values; at least
    /// one differs from the order's current value. A price change or a quantity increase
    /// loses time priority; a quantity decrease at the same price keeps it.
    Modify {
        id: u64,
        symbol: u32,
        account: u32,
        new_price: i64,
        new_qty: i64,
    },
}

impl FlowOp {
    /// The book this op goes to.
    pub fn symbol(&self) -> u32 {
        match *self {
            FlowOp::Limit { symbol, .. }
            | FlowOp::Market { symbol, .. }
            | FlowOp::Cancel { symbol, .. }
            | FlowOp::Modify { symbol, .. } => symbol,
        }
    }

    /// A fixed little-endian encoding, used for the flow hash.
    fn encode(&self, out: &mut Vec<u8>) {
        let side_code = |side: Side| match side {
            Side::Buy => 0u8,
            Side::Sell => 1u8,
        };
        match *self {
            FlowOp::Limit {
                id,
                symbol,
                account,
                side,
                price,
                qty,
                tif,
            } => {
                out.push(0);
                out.extend_from_slice(&id.to_le_bytes());
                out.extend_from_slice(&symbol.to_le_bytes());
                out.extend_from_slice(&account.to_le_bytes());
                out.push(side_code(side));
                out.extend_from_slice(&price.to_le_bytes());
                out.extend_from_slice(&qty.to_le_bytes());
                out.push(match tif {
                    Tif::Day => 0,
                    Tif::Ioc => 1,
                    Tif::Fok => 2,
                });
            }
            FlowOp::Market {
                id,
                symbol,
                account,
                side,
                qty,
            } => {
                out.push(1);
                out.extend_from_slice(&id.to_le_bytes());
                out.extend_from_slice(&symbol.to_le_bytes());
                out.extend_from_slice(&account.to_le_bytes());
                out.push(side_code(side));
                out.extend_from_slice(&qty.to_le_bytes());
            }
            FlowOp::Cancel {
                id,
                symbol,
                account,
            } => {
                out.push(2);
                out.extend_from_slice(&id.to_le_bytes());
                out.extend_from_slice(&symbol.to_le_bytes());
                out.extend_from_slice(&account.to_le_bytes());
            }
            FlowOp::Modify {
                id,
                symbol,
                account,
                new_price,
                new_qty,
            } => {
                out.push(3);
                out.extend_from_slice(&id.to_le_bytes());
                out.extend_from_slice(&symbol.to_le_bytes());
                out.extend_from_slice(&account.to_le_bytes());
                out.extend_from_slice(&new_price.to_le_bytes());
                out.extend_from_slice(&new_qty.to_le_bytes());
            }
        }
    }
}

/// Steady-state operation mix, in percent. The seven top-level shares must sum to 100.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FlowMix {
    /// Non-crossing DAY limits.
    pub limit_passive_pct: u32,
    /// DAY limits that cross and fill completely.
    pub limit_crossing_pct: u32,
    /// IOC limits.
    pub ioc_pct: u32,
    /// FOK limits.
    pub fok_pct: u32,
    /// Market orders.
    pub market_pct: u32,
    /// Cancels.
    pub cancel_pct: u32,
    /// Modifies.
    pub modify_pct: u32,
    /// Of the IOCs: share priced not to cross (cancelled without a trade).
    pub ioc_miss_pct: u32,
    /// Of the FOKs: share that asks for more than the liquidity inside the limit (killed).
    pub fok_kill_pct: u32,
    /// Of the modifies: share that lowers the quantity.
    pub modify_qty_down_pct: u32,
    /// Of the modifies: share that raises the quantity (the rest move the price).
    pub modify_qty_up_pct: u32,
}

impl Default for FlowMix {
    fn default() -> Self {
        Self {
            limit_passive_pct: 45,
            limit_crossing_pct: 10,
            ioc_pct: 5,
            fok_pct: 5,
            market_pct: 5,
            cancel_pct: 20,
            modify_pct: 10,
            ioc_miss_pct: 20,
            fok_kill_pct: 20,
            modify_qty_down_pct: 50,
            modify_qty_up_pct: 25,
        }
    }
}

impl FlowMix {
    fn top_level_sum_pct(&self) -> u32 {
        self.limit_passive_pct
            + self.limit_crossing_pct
            + self.ioc_pct
            + self.fok_pct
            + self.market_pct
            + self.cancel_pct
            + self.modify_pct
    }
}

/// Everything that decides a flow. Same config, same ops, bit for bit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FlowConfig {
    /// PRNG seed.
    pub seed: u64,
    /// Number of symbols; each is its own book (default 1).
    pub symbols: u32,
    /// Number of accounts placing orders, `1..=accounts` (default 1000; at least 2).
    pub accounts: u32,
    /// Reference price of every symbol, KRW (default 50,000); a multiple of the tick.
    pub price_base: i64,
    /// Tick size, KRW (default 50).
    pub price_tick: i64,
    /// Daily band half-width in percent of the base price (default 30, as KRX).
    pub price_band_pct: i64,
    /// Mean distance of a passive order behind the best non-crossing price, ticks (default 5).
    pub passive_offset_ticks_mean: i64,
    /// Largest such distance, ticks (default 100).
    pub passive_offset_ticks_max: i64,
    /// Crossing orders are priced up to this many ticks through the best opposite (default 2).
    pub cross_offset_ticks_max: i64,
    /// Largest quantity a new order asks for before capping (default 100).
    pub qty_max: i64,
    /// Resting orders the warm-up builds, over all symbols, and the steady-state target.
    pub depth_orders: u64,
    /// Steady-state operations after the warm-up.
    pub ops_steady: u64,
    /// Cap every crossing order at the liquidity inside its limit (default true). Off, a
    /// crossing order may ask for more (its rest rests or is cancelled per its TIF); only
    /// meant to show the peers' disagreement (matchcore's trade-through) as a finding.
    pub crossing_capped: bool,
    /// Steady-state mix.
    pub mix: FlowMix,
}

impl Default for FlowConfig {
    fn default() -> Self {
        Self {
            seed: 42,
            symbols: 1,
            accounts: 1000,
            price_base: 50_000,
            price_tick: 50,
            price_band_pct: 30,
            passive_offset_ticks_mean: 5,
            passive_offset_ticks_max: 100,
            cross_offset_ticks_max: 2,
            qty_max: 100,
            depth_orders: 100_000,
            ops_steady: 1_000_000,
            crossing_capped: true,
            mix: FlowMix::default(),
        }
    }
}

/// A config that cannot produce a flow, or a hand-made op list that is not a valid flow.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FlowError {
    /// Zero symbols.
    #[error("symbols must be at least 1")]
    NoSymbols,
    /// Fewer than two accounts: a crossing order needs a counterparty of another account.
    #[error("accounts must be at least 2, got {0}")]
    TooFewAccounts(u32),
    /// Tick, base price or band unusable.
    #[error("price grid invalid: {0}")]
    PriceGrid(&'static str),
    /// A quantity or offset bound below 1 (or below 0 for offsets).
    #[error("{0} out of range")]
    Bound(&'static str),
    /// The top-level mix does not sum to 100 or a sub-share exceeds 100.
    #[error("mix invalid: {0}")]
    Mix(String),
    /// [`Flow::from_ops`]: op `index` is invalid against the model book.
    #[error("op {index} is invalid: {reject}")]
    InvalidOp {
        /// Position in the op list.
        index: usize,
        /// What the model book said.
        reject: ModelReject,
    },
    /// [`Flow::from_ops`]: the warm-up is longer than the op list.
    #[error("warm-up of {warmup_len} ops exceeds the {ops_len} ops given")]
    WarmupTooLong {
        /// Requested warm-up length.
        warmup_len: usize,
        /// Ops given.
        ops_len: usize,
    },
}

impl FlowConfig {
    /// Half-width of the band in KRW, truncated to the tick.
    pub fn price_band_width(&self) -> i64 {
        self.price_base * self.price_band_pct / 100 / self.price_tick * self.price_tick
    }

    /// Lowest allowed price (lower band limit).
    pub fn price_min(&self) -> i64 {
        self.price_base - self.price_band_width()
    }

    /// Highest allowed price (upper band limit).
    pub fn price_max(&self) -> i64 {
        self.price_base + self.price_band_width()
    }

    /// Checks every bound the generator relies on.
    pub fn validate(&self) -> Result<(), FlowError> {
        if self.symbols == 0 {
            return Err(FlowError::NoSymbols);
        }
        if self.accounts < 2 {
            return Err(FlowError::TooFewAccounts(self.accounts));
        }
        if self.price_tick <= 0 || self.price_base <= 0 || self.price_base % self.price_tick != 0 {
            return Err(FlowError::PriceGrid(
                "base price must be a positive tick multiple",
            ));
        }
        if !(1..100).contains(&self.price_band_pct) || self.price_base.checked_mul(100).is_none() {
            return Err(FlowError::PriceGrid("band must be 1..100 percent"));
        }
        if self.price_band_width() < 4 * self.price_tick || self.price_min() <= 0 {
            return Err(FlowError::PriceGrid(
                "band must span at least 8 ticks above zero",
            ));
        }
        if !(1..=1_000_000_000).contains(&self.qty_max) {
            return Err(FlowError::Bound("qty_max"));
        }
        if !(0..=1_000).contains(&self.passive_offset_ticks_mean) {
            return Err(FlowError::Bound("passive_offset_ticks_mean"));
        }
        if !(0..=1_000_000).contains(&self.passive_offset_ticks_max) {
            return Err(FlowError::Bound("passive_offset_ticks_max"));
        }
        if !(0..=1_000_000).contains(&self.cross_offset_ticks_max) {
            return Err(FlowError::Bound("cross_offset_ticks_max"));
        }
        let mix = &self.mix;
        if mix.top_level_sum_pct() != 100 {
            return Err(FlowError::Mix(format!(
                "top-level shares sum to {}, not 100",
                mix.top_level_sum_pct()
            )));
        }
        if mix.ioc_miss_pct > 100
            || mix.fok_kill_pct > 100
            || mix.modify_qty_down_pct + mix.modify_qty_up_pct > 100
        {
            return Err(FlowError::Mix("a sub-share exceeds 100".to_string()));
        }
        Ok(())
    }
}

/// What the generator emitted, by kind (warm-up included in `limit_passive`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct FlowStats {
    /// Warm-up ops (all passive DAY limits).
    pub warmup_ops: u64,
    /// Steady-state passive DAY limits.
    pub limit_passive: u64,
    /// Crossing DAY limits (fill completely).
    pub limit_crossing: u64,
    /// Crossing IOCs (fill completely).
    pub ioc_fill: u64,
    /// Non-crossing IOCs (cancelled, no trade).
    pub ioc_miss: u64,
    /// FOKs that fill completely.
    pub fok_fill: u64,
    /// FOKs that are killed.
    pub fok_kill: u64,
    /// Market orders.
    pub market: u64,
    /// Cancels.
    pub cancel: u64,
    /// Modifies lowering quantity.
    pub modify_qty_down: u64,
    /// Modifies raising quantity.
    pub modify_qty_up: u64,
    /// Modifies moving the price.
    pub modify_price: u64,
    /// Draws the depth controller turned into the other of passive/cancel.
    pub depth_controller_swaps: u64,
    /// Draws that could not be shaped and became a passive limit.
    pub fallbacks_to_passive: u64,
    /// Largest quantity of any single op (a killed FOK asks for more than the book holds):
    /// fund accounts' shares from it where an engine checks holdings.
    pub qty_op_max: i64,
    /// Largest `price x qty` of any single op (market orders at the upper band limit), KRW:
    /// fund accounts' cash from it.
    pub notional_op_max: i64,
}

/// A generated flow: the ops, where the warm-up ends, and the oracle end state.
#[derive(Debug, Clone)]
pub struct Flow {
    config: FlowConfig,
    ops: Vec<FlowOp>,
    warmup_len: usize,
    expected: EndState,
    stats: FlowStats,
    id_max: u64,
    ops_per_symbol: Vec<u64>,
}

impl Flow {
    /// Generates the flow `config` describes; deterministic in `config`.
    pub fn generate(config: &FlowConfig) -> Result<Flow, FlowError> {
        config.validate()?;
        Ok(generator::generate(config))
    }

    /// A flow from a hand-made op list (tests, findings): validated and given its oracle by
    /// replaying it through the model book. `config` supplies the symbol count and price
    /// grid; its mix and sizes are not used. Stats count only the warm-up length.
    pub fn from_ops(
        config: FlowConfig,
        ops: Vec<FlowOp>,
        warmup_len: usize,
    ) -> Result<Flow, FlowError> {
        if warmup_len > ops.len() {
            return Err(FlowError::WarmupTooLong {
                warmup_len,
                ops_len: ops.len(),
            });
        }
        let mut model = ModelBook::new(config.symbols);
        let mut ops_per_symbol = vec![0u64; config.symbols as usize];
        let mut id_max = 0;
        for (index, op) in ops.iter().enumerate() {
            model
                .apply_op(op)
                .map_err(|reject| FlowError::InvalidOp { index, reject })?;
            ops_per_symbol[op.symbol() as usize] += 1;
            if let FlowOp::Limit { id, .. } | FlowOp::Market { id, .. } = *op {
                id_max = id_max.max(id);
            }
        }
        let stats = FlowStats {
            warmup_ops: warmup_len as u64,
            ..FlowStats::default()
        };
        Ok(Flow {
            config,
            expected: model.end_state(),
            ops,
            warmup_len,
            stats,
            id_max,
            ops_per_symbol,
        })
    }

    /// The config this flow was generated from.
    pub fn config(&self) -> &FlowConfig {
        &self.config
    }

    /// All ops, warm-up first.
    pub fn ops(&self) -> &[FlowOp] {
        &self.ops
    }

    /// The warm-up ops (passive limits building the book).
    pub fn warmup_ops(&self) -> &[FlowOp] {
        &self.ops[..self.warmup_len]
    }

    /// The steady-state ops (what the benchmark times).
    pub fn steady_ops(&self) -> &[FlowOp] {
        &self.ops[self.warmup_len..]
    }

    /// The state every engine must end in after all ops: the model book's.
    pub fn expected(&self) -> &EndState {
        &self.expected
    }

    /// Counts by kind.
    pub fn stats(&self) -> &FlowStats {
        &self.stats
    }

    /// Largest order id used (ids are `1..=id_max`); size id-indexed tables with it.
    pub fn id_max(&self) -> u64 {
        self.id_max
    }

    /// Ops per symbol (warm-up included); size per-book sequence tables with it.
    pub fn ops_per_symbol(&self) -> &[u64] {
        &self.ops_per_symbol
    }

    /// xxh3-64 over a fixed encoding of every op: pins the generator's output in tests.
    pub fn ops_hash(&self) -> u64 {
        let mut hasher = Xxh3Default::new();
        let mut buffer = Vec::with_capacity(64);
        for op in &self.ops {
            buffer.clear();
            op.encode(&mut buffer);
            hasher.update(&buffer);
        }
        hasher.digest()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_op_takes_at_most_40_bytes() {
        assert!(std::mem::size_of::<FlowOp>() <= 40);
    }

    #[test]
    fn band_is_truncated_to_the_tick() {
        let config = FlowConfig {
            price_base: 21_050,
            price_tick: 50,
            ..FlowConfig::default()
        };
        assert_eq!((config.price_min(), config.price_max()), (14_750, 27_350));
    }
}
