//! Shapes each operation against the model book so that every engine must agree on it.
//!
//! See the parent module for the mix and the invariants; this module only implements them.

use super::{Flow, FlowConfig, FlowOp, FlowStats, Prng, Side, Tif};
use crate::model::ModelBook;

/// Taker accounts tried before a crossing draw falls back to a passive order.
const TAKER_ACCOUNT_TRIES_MAX: u32 = 4;
/// Random picks tried when looking for an unfilled order to modify.
const MODIFY_PICKS_MAX: u32 = 8;

/// Which steady-state kind a draw asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Draw {
    Passive,
    Crossing,
    Ioc,
    Fok,
    Market,
    Cancel,
    Modify,
}

struct Generator<'a> {
    config: &'a FlowConfig,
    prng: Prng,
    model: ModelBook,
    ops: Vec<FlowOp>,
    stats: FlowStats,
    id_last: u64,
    ops_per_symbol: Vec<u64>,
}

pub(super) fn generate(config: &FlowConfig) -> Flow {
    let capacity = usize::try_from(config.depth_orders.saturating_add(config.ops_steady))
        .unwrap_or(usize::MAX)
        .min(1 << 28);
    let mut generator = Generator {
        config,
        prng: Prng::new(config.seed),
        model: ModelBook::new(config.symbols),
        ops: Vec::with_capacity(capacity),
        stats: FlowStats::default(),
        id_last: 0,
        ops_per_symbol: vec![0; config.symbols as usize],
    };
    generator.warm_up();
    let warmup_len = generator.ops.len();
    for _ in 0..config.ops_steady {
        generator.steady_op();
    }
    debug_assert_eq!(generator.model.self_trades(), 0);
    Flow {
        config: config.clone(),
        expected: generator.model.end_state(),
        ops: generator.ops,
        warmup_len,
        stats: generator.stats,
        id_max: generator.id_last,
        ops_per_symbol: generator.ops_per_symbol,
    }
}

impl Generator<'_> {
    fn warm_up(&mut self) {
        // Every warm-up op rests, so this runs exactly `depth_orders` times.
        while (self.model.live_orders() as u64) < self.config.depth_orders {
            let op = self.passive();
            self.emit(op);
            self.stats.warmup_ops += 1;
        }
    }

    fn steady_op(&mut self) {
        let drawn = self.draw();
        let draw = self.depth_controlled(drawn);
        let shaped = match draw {
            Draw::Passive => None,
            Draw::Crossing => self.crossing(Tif::Day),
            Draw::Ioc => self.ioc(),
            Draw::Fok => self.fok(),
            Draw::Market => self.market(),
            Draw::Cancel => self.cancel(),
            Draw::Modify => self.modify().or_else(|| self.cancel()),
        };
        let op = match shaped {
            Some(op) => op,
            None => {
                if draw != Draw::Passive {
                    self.stats.fallbacks_to_passive += 1;
                }
                self.stats.limit_passive += 1;
                self.passive()
            }
        };
        self.emit(op);
    }

    fn draw(&mut self) -> Draw {
        let mix = &self.config.mix;
        let shares = [
            (Draw::Passive, mix.limit_passive_pct),
            (Draw::Crossing, mix.limit_crossing_pct),
            (Draw::Ioc, mix.ioc_pct),
            (Draw::Fok, mix.fok_pct),
            (Draw::Market, mix.market_pct),
            (Draw::Cancel, mix.cancel_pct),
        ];
        let mut point = self.prng.below(100) as u32;
        for (draw, pct) in shares {
            if point < pct {
                return draw;
            }
            point -= pct;
        }
        Draw::Modify
    }

    /// Swaps passive and cancel draws to keep the book within 2% of the target depth.
    fn depth_controlled(&mut self, draw: Draw) -> Draw {
        let target = self.config.depth_orders;
        let live = self.model.live_orders() as u64;
        let slack = target / 50;
        let swapped = match draw {
            Draw::Passive if target > 0 && live > target + slack => Draw::Cancel,
            Draw::Cancel if live < target.saturating_sub(slack) => Draw::Passive,
            other => other,
        };
        if swapped != draw {
            self.stats.depth_controller_swaps += 1;
        }
        swapped
    }

    /// Applies `op` to the model and appends it to the flow.
    fn emit(&mut self, op: FlowOp) {
        // A reject here is a generator bug: stop rather than emit a flow engines disagree on.
        if let Err(reject) = self.model.apply_op(&op) {
            panic!("generator emitted an invalid op {op:?}: {reject}");
        }
        self.ops_per_symbol[op.symbol() as usize] += 1;
        let (price, qty) = match op {
            FlowOp::Limit { price, qty, .. } => (price, qty),
            FlowOp::Modify {
                new_price, new_qty, ..
            } => (new_price, new_qty),
            FlowOp::Market { qty, .. } => (self.config.price_max(), qty),
            FlowOp::Cancel { .. } => (0, 0),
        };
        self.stats.qty_op_max = self.stats.qty_op_max.max(qty);
        self.stats.notional_op_max = self.stats.notional_op_max.max(price.saturating_mul(qty));
        self.ops.push(op);
    }

    fn next_id(&mut self) -> u64 {
        self.id_last += 1;
        self.id_last
    }

    fn random_symbol(&mut self) -> u32 {
        self.prng.below(u64::from(self.config.symbols)) as u32
    }

    fn random_side(&mut self) -> Side {
        if self.prng.below(2) == 0 {
            Side::Buy
        } else {
            Side::Sell
        }
    }

    fn random_account(&mut self) -> u32 {
        1 + self.prng.below(u64::from(self.config.accounts)) as u32
    }

    fn random_qty(&mut self) -> i64 {
        self.prng.between(1, self.config.qty_max)
    }

    /// A resting DAY limit on a random symbol and side.
    fn passive(&mut self) -> FlowOp {
        let symbol = self.random_symbol();
        let mut side = self.random_side();
        let price = match self.passive_price(symbol, side) {
            Some(price) => price,
            None => {
                // The opposite side sits at the band edge; the other side always has room.
                side = side.opposite();
                self.passive_price(symbol, side)
                    .expect("one side always has a passive price")
            }
        };
        let (id, account, qty) = (self.next_id(), self.random_account(), self.random_qty());
        FlowOp::Limit {
            id,
            symbol,
            account,
            side,
            price,
            qty,
            tif: Tif::Day,
        }
    }

    /// A price that does not cross: `k` ticks behind the best price this side can take
    /// without crossing (one tick off the opposite best), `k` geometric. So passive orders
    /// keep the spread tight and thin out away from the touch. `None` if no in-band price is
    /// passive.
    fn passive_price(&mut self, symbol: u32, side: Side) -> Option<i64> {
        let tick = self.config.price_tick;
        let (bid, ask) = (self.model.best_bid(symbol), self.model.best_ask(symbol));
        let offset_ticks = self.passive_offset_ticks();
        let (min, max) = (self.config.price_min(), self.config.price_max());
        match side {
            Side::Buy => {
                let top = match (ask, bid) {
                    (Some(ask), _) => ask - tick,
                    (None, Some(bid)) => bid,
                    (None, None) => self.config.price_base - tick,
                };
                let top = top.min(max);
                (top >= min).then(|| (top - offset_ticks * tick).max(min))
            }
            Side::Sell => {
                let bottom = match (bid, ask) {
                    (Some(bid), _) => bid + tick,
                    (None, Some(ask)) => ask,
                    (None, None) => self.config.price_base + tick,
                };
                let bottom = bottom.max(min);
                (bottom <= max).then(|| (bottom + offset_ticks * tick).min(max))
            }
        }
    }

    /// Geometric number of ticks with mean `passive_offset_ticks_mean`, capped at
    /// `passive_offset_ticks_max` (integer draws only).
    fn passive_offset_ticks(&mut self) -> i64 {
        let odds = self.config.passive_offset_ticks_mean as u64 + 1;
        let mut ticks = 0;
        while ticks < self.config.passive_offset_ticks_max && self.prng.below(odds) != 0 {
            ticks += 1;
        }
        ticks
    }

    /// A limit price 0..=`cross_offset_ticks_max` ticks through the best opposite price.
    fn crossing_price(&mut self, symbol: u32, side: Side) -> Option<i64> {
        let offset_ticks = self.prng.between(0, self.config.cross_offset_ticks_max);
        let through = offset_ticks * self.config.price_tick;
        match side {
            Side::Buy => self
                .model
                .best_ask(symbol)
                .map(|ask| (ask + through).min(self.config.price_max())),
            Side::Sell => self
                .model
                .best_bid(symbol)
                .map(|bid| (bid - through).max(self.config.price_min())),
        }
    }

    /// An account and a quantity (at most `want`) that fill completely within `limit`
    /// without meeting an order of the same account.
    fn taker(
        &mut self,
        symbol: u32,
        side: Side,
        limit: Option<i64>,
        want: i64,
    ) -> Option<(u32, i64)> {
        for _ in 0..TAKER_ACCOUNT_TRIES_MAX {
            let account = self.random_account();
            let fillable = self
                .model
                .fillable_without_self_trade(symbol, side, account, limit, want);
            if fillable == 0 {
                continue;
            }
            // Uncapped: ask for all of `want` when only the liquidity ran out (no own order
            // cut the walk), so the rest meets no maker at all inside the limit.
            let uncapped = !self.config.crossing_capped
                && fillable < want
                && fillable == self.model.liquidity_within(symbol, side, limit);
            return Some((account, if uncapped { want } else { fillable }));
        }
        None
    }

    /// A crossing limit that fills completely (`tif` Day, Ioc or Fok).
    fn crossing(&mut self, tif: Tif) -> Option<FlowOp> {
        let (symbol, side) = (self.random_symbol(), self.random_side());
        let price = self.crossing_price(symbol, side)?;
        let want = self.random_qty();
        let (account, qty) = self.taker(symbol, side, Some(price), want)?;
        match tif {
            Tif::Day => self.stats.limit_crossing += 1,
            Tif::Ioc => self.stats.ioc_fill += 1,
            Tif::Fok => self.stats.fok_fill += 1,
        }
        Some(FlowOp::Limit {
            id: self.next_id(),
            symbol,
            account,
            side,
            price,
            qty,
            tif,
        })
    }

    fn ioc(&mut self) -> Option<FlowOp> {
        if !self.prng.chance_pct(self.config.mix.ioc_miss_pct) {
            return self.crossing(Tif::Ioc);
        }
        let (symbol, side) = (self.random_symbol(), self.random_side());
        let price = self.passive_price(symbol, side)?;
        let (account, qty) = (self.random_account(), self.random_qty());
        self.stats.ioc_miss += 1;
        Some(FlowOp::Limit {
            id: self.next_id(),
            symbol,
            account,
            side,
            price,
            qty,
            tif: Tif::Ioc,
        })
    }

    fn fok(&mut self) -> Option<FlowOp> {
        if !self.prng.chance_pct(self.config.mix.fok_kill_pct) {
            return self.crossing(Tif::Fok);
        }
        let (symbol, side) = (self.random_symbol(), self.random_side());
        let price = self.crossing_price(symbol, side)?;
        // More than everything inside the limit, own orders included: killed by any rule.
        let inside = self.model.liquidity_within(symbol, side, Some(price));
        let qty = inside + self.random_qty();
        let account = self.random_account();
        self.stats.fok_kill += 1;
        Some(FlowOp::Limit {
            id: self.next_id(),
            symbol,
            account,
            side,
            price,
            qty,
            tif: Tif::Fok,
        })
    }

    fn market(&mut self) -> Option<FlowOp> {
        let (symbol, side) = (self.random_symbol(), self.random_side());
        let want = self.random_qty();
        let (account, qty) = self.taker(symbol, side, None, want)?;
        self.stats.market += 1;
        Some(FlowOp::Market {
            id: self.next_id(),
            symbol,
            account,
            side,
            qty,
        })
    }

    fn cancel(&mut self) -> Option<FlowOp> {
        let live = self.model.live_orders();
        if live == 0 {
            return None;
        }
        let id = self.model.live_id(self.prng.below(live as u64) as usize);
        let order = *self.model.order(id).expect("live ids have orders");
        self.stats.cancel += 1;
        Some(FlowOp::Cancel {
            id,
            symbol: order.symbol,
            account: order.account,
        })
    }

    fn modify(&mut self) -> Option<FlowOp> {
        let live = self.model.live_orders();
        if live == 0 {
            return None;
        }
        for _ in 0..MODIFY_PICKS_MAX {
            let id = self.model.live_id(self.prng.below(live as u64) as usize);
            let order = *self.model.order(id).expect("live ids have orders");
            if order.filled_qty > 0 {
                continue;
            }
            let (new_price, new_qty) =
                self.modify_target(order.symbol, order.side, order.price, order.open_qty)?;
            let (symbol, account) = (order.symbol, order.account);
            return Some(FlowOp::Modify {
                id,
                symbol,
                account,
                new_price,
                new_qty,
            });
        }
        None
    }

    /// New (price, qty) for an unfilled order, per the modify sub-mix; never a no-op and
    /// never crossing.
    fn modify_target(
        &mut self,
        symbol: u32,
        side: Side,
        price: i64,
        qty: i64,
    ) -> Option<(i64, i64)> {
        let mix = &self.config.mix;
        let point = self.prng.below(100) as u32;
        if point < mix.modify_qty_down_pct && qty >= 2 {
            self.stats.modify_qty_down += 1;
            return Some((price, self.prng.between(1, qty - 1)));
        }
        if point < mix.modify_qty_down_pct + mix.modify_qty_up_pct {
            // Also a quantity-down draw on a one-share order, which cannot go lower.
            self.stats.modify_qty_up += 1;
            return Some((price, qty + self.random_qty()));
        }
        let mut new_price = self.passive_price(symbol, side)?;
        if new_price == price {
            // One tick further from the opposite side, if the band allows it.
            new_price = match side {
                Side::Buy => price - self.config.price_tick,
                Side::Sell => price + self.config.price_tick,
            };
            if !(self.config.price_min()..=self.config.price_max()).contains(&new_price) {
                return None;
            }
        }
        self.stats.modify_price += 1;
        Some((new_price, qty))
    }
}
