//! Order books: price-time priority per symbol.
//!
//! A [`Book`] holds two [`Ladder`]s (bids and asks). Orders live in the shared
//! [`OrderStore`] slab; a level is an intrusive FIFO of slab slots, so adding, cancelling and
//! filling an order touch only its neighbours. Matching itself lives in the engine (it needs
//! the ledger); the book offers the structural operations: rest, unlink, reduce, best.
//!
//! **Invariants**
//! - Every live order is in exactly one level of its symbol's book, on its side, at its price.
//! - Within a level, orders are in ascending `priority`.
//! - `level.qty` = sum of leaves, `level.count` = number of orders, per level.
//!
//! **Performance**: O(1) per structural operation on a direct ladder; O(log L) lookup plus a
//! memmove for a new level on a sorted ladder. No allocation after construction.
//!
//! **Known limitations**: one book per symbol; no auctions (the call phases reject orders).

pub mod idmap;
pub mod ladder;
pub mod order;

use crate::config::LadderPolicy;
use crate::reference::{PriceBand, TickRule};
use crate::types::{Price, Qty, Side};
use ladder::{DirectLadder, Ladder, Level, SortedLadder};
use order::{Links, NIL, OrderStore, Slot};

/// Totals of one level after a change, for `BookChanged` events.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LevelState {
    pub price: Price,
    pub qty: Qty,
    pub count: u32,
}

/// The two sides of one symbol's book.
pub struct Book {
    pub bids: Ladder,
    pub asks: Ladder,
}

impl Book {
    /// An empty book whose ladders fit `band` (direct) or hold `levels_max` levels (sorted).
    pub fn new(
        policy: LadderPolicy,
        rule: TickRule,
        band: Option<PriceBand>,
        levels_max: u32,
    ) -> Book {
        let mut book = Book {
            bids: Ladder::Sorted(SortedLadder::with_capacity(Side::Buy, 0)),
            asks: Ladder::Sorted(SortedLadder::with_capacity(Side::Sell, 0)),
        };
        book.respan(policy, rule, band, levels_max);
        book
    }

    /// Rebuilds an empty book for a new band (StartOfDay). Reuses the ladders' memory when
    /// they are of the right design and large enough; allocates otherwise (a daily command,
    /// not the steady state).
    pub fn respan(
        &mut self,
        policy: LadderPolicy,
        rule: TickRule,
        band: Option<PriceBand>,
        levels_max: u32,
    ) {
        debug_assert!(self.bids.best().is_none() && self.asks.best().is_none());
        for side in [Side::Buy, Side::Sell] {
            let ladder = match side {
                Side::Buy => &mut self.bids,
                Side::Sell => &mut self.asks,
            };
            if let (LadderPolicy::Auto, Some(b)) = (policy, band) {
                if let Ladder::Direct(d) = ladder
                    && d.reset(rule, b.lower, b.upper, levels_max)
                {
                    continue;
                }
                let mut d = DirectLadder::new(side);
                if d.reset(rule, b.lower, b.upper, levels_max) {
                    *ladder = Ladder::Direct(d);
                    continue;
                }
                // A band wider than levels_max ticks: fall back to sorted levels.
            }
            match ladder {
                Ladder::Sorted(s) if s.capacity() >= levels_max as usize => s.clear(),
                _ => {
                    *ladder = Ladder::Sorted(SortedLadder::with_capacity(side, levels_max as usize))
                }
            }
        }
    }

    #[inline]
    pub fn side(&self, side: Side) -> &Ladder {
        match side {
            Side::Buy => &self.bids,
            Side::Sell => &self.asks,
        }
    }

    #[inline]
    pub fn best(&self, side: Side) -> Option<&Level> {
        self.side(side).best()
    }

    /// True if an order could rest at `price` on `side` (room for its level).
    #[inline]
    pub fn has_room_for(&self, side: Side, price: Price) -> bool {
        self.side(side).has_room_for(price)
    }

    /// Appends the order in `slot` to the tail of its level (lowest priority).
    /// The caller checked `has_room_for`.
    pub fn rest(&mut self, store: &mut OrderStore, slot: Slot) -> LevelState {
        let (side, price, leaves) = {
            let o = store.get(slot);
            (o.side, o.price, o.leaves)
        };
        debug_assert!(leaves.0 > 0);
        let ladder = match side {
            Side::Buy => &mut self.bids,
            Side::Sell => &mut self.asks,
        };
        let (level, first) = match ladder {
            Ladder::Direct(d) => {
                let first = d.level_mut(price).is_empty();
                if first {
                    d.mark_nonempty(price);
                }
                (d.level_mut(price), first)
            }
            Ladder::Sorted(s) => {
                let l = s
                    .level_mut_or_insert(price)
                    .expect("caller checked has_room_for");
                let first = l.is_empty();
                (l, first)
            }
        };
        let tail = level.tail;
        level.tail = slot;
        if first {
            level.head = slot;
        }
        // A level holds at most `orders_max` orders of at most `QTY_MAX` each (10^15 at the
        // default capacity): its totals cannot overflow, and the hot path skips the checks.
        level.qty = Qty(level.qty.0.wrapping_add(leaves.0));
        level.count = level.count.wrapping_add(1);
        let state = LevelState {
            price,
            qty: level.qty,
            count: level.count,
        };
        if tail != NIL {
            store.get_mut(tail).level.next = slot;
        }
        store.get_mut(slot).level = Links {
            prev: tail,
            next: NIL,
        };
        state
    }

    /// Removes the order in `slot` from its level (the slot stays allocated).
    pub fn unlink(&mut self, store: &mut OrderStore, slot: Slot) -> LevelState {
        let (Links { prev, next }, side, price, leaves) = {
            let o = store.get(slot);
            (o.level, o.side, o.price, o.leaves)
        };
        if prev != NIL {
            store.get_mut(prev).level.next = next;
        }
        if next != NIL {
            store.get_mut(next).level.prev = prev;
        }
        store.get_mut(slot).level = Links::NONE;
        let ladder = match side {
            Side::Buy => &mut self.bids,
            Side::Sell => &mut self.asks,
        };
        let level = match ladder {
            Ladder::Direct(d) => d.level_mut(price),
            Ladder::Sorted(s) => s.level_mut(price).expect("a live order's level exists"),
        };
        if prev == NIL {
            level.head = next;
        }
        if next == NIL {
            level.tail = prev;
        }
        // The order is in the level: its leaves are part of the total, and the count >= 1.
        level.qty = Qty(level.qty.0.wrapping_sub(leaves.0));
        level.count = level.count.wrapping_sub(1);
        let state = LevelState {
            price,
            qty: level.qty,
            count: level.count,
        };
        if level.count == 0 {
            debug_assert_eq!(level.qty, Qty(0));
            match ladder {
                Ladder::Direct(d) => d.mark_empty(price),
                Ladder::Sorted(s) => s.remove(price),
            }
        }
        state
    }

    /// Lowers the level total after the order at `price` on `side` lost `qty` of its leaves
    /// (a fill or a quantity decrease that keeps priority).
    pub fn reduce(&mut self, side: Side, price: Price, qty: Qty) -> LevelState {
        let ladder = match side {
            Side::Buy => &mut self.bids,
            Side::Sell => &mut self.asks,
        };
        let level = match ladder {
            Ladder::Direct(d) => d.level_mut(price),
            Ladder::Sorted(s) => s.level_mut(price).expect("a live order's level exists"),
        };
        // `qty` is part of an order's leaves in this level (a fill or a decrease).
        level.qty = Qty(level.qty.0.wrapping_sub(qty.0));
        debug_assert!(level.qty.0 >= 0);
        LevelState {
            price,
            qty: level.qty,
            count: level.count,
        }
    }
}
