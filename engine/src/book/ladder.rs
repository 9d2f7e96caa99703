//! Price ladders: one side of a book, mapping prices to FIFO levels.
//!
//! Two designs (ADR-002 compares them):
//! - [`DirectLadder`]: KRX prices live in a bounded band (+-30%), so the levels of a banded
//!   symbol are a `Vec` indexed by tick offset from the lower limit, with a bitmap of
//!   non-empty levels to find the next best price. O(1) level lookup; the best price after a
//!   level empties is found by scanning bitmap words (a band has at most a few thousand ticks).
//! - [`SortedLadder`]: non-empty levels kept in a `Vec` sorted so that the best price is at
//!   the end (bids ascending, asks descending). Lookup is a binary search; a new level costs a
//!   memmove of the levels behind it (usually few: new levels tend to form near the top).
//!   Used for symbols without a band, where prices are unbounded.
//!
//! **Invariants**
//! - A level is listed (bit set / present in the sorted vec) iff it has at least one order.
//! - `qty` of a level is the sum of its orders' leaves; `count` their number.
//!
//! **Performance**: neither design allocates after construction; the sorted ladder refuses a
//! level beyond its capacity (`levels_max`), the direct one is sized to the band.

use super::order::{NIL, Slot};
use crate::reference::TickRule;
use crate::types::{Price, Qty, Side};

/// A price level: a FIFO of orders (head = oldest priority) and its totals.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Level {
    pub price: Price,
    pub head: Slot,
    pub tail: Slot,
    pub qty: Qty,
    pub count: u32,
}

impl Level {
    pub const fn empty(price: Price) -> Level {
        Level {
            price,
            head: NIL,
            tail: NIL,
            qty: Qty(0),
            count: 0,
        }
    }

    #[inline]
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }
}

/// A ladder over the ticks of `[lower, upper]` under one tick rule.
pub struct DirectLadder {
    side: Side,
    rule: TickRule,
    index_lower: i64,
    levels: Vec<Level>,
    nonempty: Vec<u64>,
    /// Offset of the best non-empty level, if any.
    best: Option<usize>,
}

impl DirectLadder {
    /// An empty ladder with no span; call [`DirectLadder::reset`] before use.
    pub fn new(side: Side) -> Self {
        DirectLadder {
            side,
            rule: TickRule::Fixed(1),
            index_lower: 0,
            levels: Vec::new(),
            nonempty: Vec::new(),
            best: None,
        }
    }

    /// Re-spans an empty ladder over `[lower, upper]`, growing its memory if needed. Returns
    /// false if the span exceeds `levels_max` (the caller then uses a sorted ladder).
    pub fn reset(&mut self, rule: TickRule, lower: Price, upper: Price, levels_max: u32) -> bool {
        debug_assert!(self.best.is_none(), "re-spanning a ladder with orders");
        let index_lower = rule.tick_index(lower);
        let span = (rule.tick_index(upper) - index_lower + 1) as usize;
        if span > levels_max as usize {
            return false;
        }
        self.rule = rule;
        self.index_lower = index_lower;
        self.levels.clear();
        self.levels
            .extend((0..span).map(|i| Level::empty(rule.price_at_index(index_lower + i as i64))));
        self.nonempty.clear();
        self.nonempty.resize(span.div_ceil(64), 0);
        self.best = None;
        true
    }

    #[inline]
    fn offset(&self, price: Price) -> usize {
        // Both indices are of prices in the band (a price outside it is rejected before a
        // level is looked up), so the difference is small and >= 0; the index into `levels`
        // below is bounds-checked all the same.
        let off = self.rule.tick_index(price).wrapping_sub(self.index_lower);
        debug_assert!(
            off >= 0 && (off as usize) < self.levels.len(),
            "price in band"
        );
        off as usize
    }

    #[inline]
    fn better(&self, a: usize, b: usize) -> bool {
        match self.side {
            Side::Buy => a > b,
            Side::Sell => a < b,
        }
    }

    #[inline]
    pub fn best(&self) -> Option<&Level> {
        self.best.map(|i| &self.levels[i])
    }

    #[inline]
    pub fn level(&self, price: Price) -> Option<&Level> {
        let l = &self.levels[self.offset(price)];
        (!l.is_empty()).then_some(l)
    }

    #[inline]
    pub fn level_mut(&mut self, price: Price) -> &mut Level {
        let off = self.offset(price);
        &mut self.levels[off]
    }

    /// Marks the level at `price` non-empty (call after adding its first order).
    #[inline]
    pub fn mark_nonempty(&mut self, price: Price) {
        let off = self.offset(price);
        self.nonempty[off / 64] |= 1 << (off % 64);
        match self.best {
            Some(b) if !self.better(off, b) => {}
            _ => self.best = Some(off),
        }
    }

    /// Marks the level at `price` empty (call after removing its last order).
    pub fn mark_empty(&mut self, price: Price) {
        let off = self.offset(price);
        self.nonempty[off / 64] &= !(1 << (off % 64));
        if self.best == Some(off) {
            self.best = match self.side {
                Side::Buy => self.highest_set_below(off),
                Side::Sell => self.lowest_set_above(off),
            };
        }
    }

    fn highest_set_below(&self, off: usize) -> Option<usize> {
        let mut w = off / 64;
        let mut word = self.nonempty[w] & ((1u64 << (off % 64)) - 1);
        loop {
            if word != 0 {
                return Some(w * 64 + 63 - word.leading_zeros() as usize);
            }
            if w == 0 {
                return None;
            }
            w -= 1;
            word = self.nonempty[w];
        }
    }

    fn lowest_set_above(&self, off: usize) -> Option<usize> {
        let mut w = off / 64;
        let shift = off % 64 + 1;
        let mut word = if shift == 64 {
            0
        } else {
            self.nonempty[w] & (!0u64 << shift)
        };
        loop {
            if word != 0 {
                return Some(w * 64 + word.trailing_zeros() as usize);
            }
            w += 1;
            if w == self.nonempty.len() {
                return None;
            }
            word = self.nonempty[w];
        }
    }

    /// The next non-empty level worse than `price` (lower for bids, higher for asks).
    pub fn next_worse(&self, price: Price) -> Option<&Level> {
        let off = self.offset(price);
        let next = match self.side {
            Side::Buy => self.highest_set_below(off),
            Side::Sell => self.lowest_set_above(off),
        };
        next.map(|i| &self.levels[i])
    }
}

/// Non-empty levels sorted with the best price last.
pub struct SortedLadder {
    side: Side,
    levels: Vec<Level>,
}

impl SortedLadder {
    pub fn with_capacity(side: Side, capacity: usize) -> Self {
        SortedLadder {
            side,
            levels: Vec::with_capacity(capacity),
        }
    }

    /// Position of `price` in the vec (Ok) or where it would be inserted (Err).
    #[inline]
    fn search(&self, price: Price) -> Result<usize, usize> {
        match self.side {
            // Bids ascending: the highest is last.
            Side::Buy => self.levels.binary_search_by(|l| l.price.cmp(&price)),
            // Asks descending: the lowest is last.
            Side::Sell => self.levels.binary_search_by(|l| price.cmp(&l.price)),
        }
    }

    #[inline]
    pub fn best(&self) -> Option<&Level> {
        self.levels.last()
    }

    #[inline]
    pub fn level(&self, price: Price) -> Option<&Level> {
        self.search(price).ok().map(|i| &self.levels[i])
    }

    /// The level at `price`, created empty if absent; `None` if a new level would exceed the
    /// capacity.
    #[inline]
    pub fn level_mut_or_insert(&mut self, price: Price) -> Option<&mut Level> {
        let i = match self.search(price) {
            Ok(i) => i,
            Err(i) => {
                if self.levels.len() == self.levels.capacity() {
                    return None;
                }
                self.levels.insert(i, Level::empty(price));
                i
            }
        };
        Some(&mut self.levels[i])
    }

    #[inline]
    pub fn level_mut(&mut self, price: Price) -> Option<&mut Level> {
        self.search(price).ok().map(|i| &mut self.levels[i])
    }

    /// True if a level at `price` exists or there is room for one.
    #[inline]
    pub fn has_room_for(&self, price: Price) -> bool {
        self.levels.len() < self.levels.capacity() || self.search(price).is_ok()
    }

    /// Drops the (empty) level at `price`.
    pub fn remove(&mut self, price: Price) {
        if let Ok(i) = self.search(price) {
            debug_assert!(self.levels[i].is_empty());
            self.levels.remove(i);
        }
    }

    pub fn clear(&mut self) {
        self.levels.clear();
    }

    pub fn capacity(&self) -> usize {
        self.levels.capacity()
    }

    /// The next non-empty level worse than `price` (lower for bids, higher for asks).
    pub fn next_worse(&self, price: Price) -> Option<&Level> {
        let i = match self.search(price) {
            Ok(i) | Err(i) => i,
        };
        // Worse levels sit before the best (which is last).
        i.checked_sub(1).map(|j| &self.levels[j])
    }
}

/// One side of a book, in whichever design the symbol uses.
pub enum Ladder {
    Direct(DirectLadder),
    Sorted(SortedLadder),
}

impl Ladder {
    #[inline]
    pub fn best(&self) -> Option<&Level> {
        match self {
            Ladder::Direct(d) => d.best(),
            Ladder::Sorted(s) => s.best(),
        }
    }

    #[inline]
    pub fn level(&self, price: Price) -> Option<&Level> {
        match self {
            Ladder::Direct(d) => d.level(price),
            Ladder::Sorted(s) => s.level(price),
        }
    }

    /// True if an order at `price` can be placed without exceeding the level capacity.
    #[inline]
    pub fn has_room_for(&self, price: Price) -> bool {
        match self {
            Ladder::Direct(_) => true,
            Ladder::Sorted(s) => s.has_room_for(price),
        }
    }

    #[inline]
    pub fn next_worse(&self, price: Price) -> Option<&Level> {
        match self {
            Ladder::Direct(d) => d.next_worse(price),
            Ladder::Sorted(s) => s.next_worse(price),
        }
    }

    /// Non-empty levels from best to worst, without allocating.
    pub fn iter(&self) -> impl Iterator<Item = &Level> + '_ {
        std::iter::successors(self.best(), |l| self.next_worse(l.price))
    }
}
