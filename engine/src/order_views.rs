//! [`OrderViews`]: the read model's orders by id, for status queries and open-order lists.
//!
//! Order ids come from a counter, so the newest orders sit in a ring indexed by
//! `id % WINDOW`: inserting, finding and updating a recent order is one array access, with no
//! hashing and no probing (a hash map of a few hundred thousand orders missed the cache on
//! every probe and was the read model's largest cost). An order whose id falls out of the
//! window while it is still open moves to an overflow map; finished orders are dropped when
//! they fall out of the window, so a finished order stays queryable while it is among the
//! last `WINDOW` order ids (plus the last `OLD_FINISHED_MAX` old orders that finished after
//! moving to the overflow).
//!
//! **Invariants**: an order is in exactly one place (its ring slot or the overflow); every
//! open order is findable; a ring slot holds only an id in `(newest - WINDOW, newest]`.
//!
//! **Performance**: O(1) per operation; advancing `newest` by `k` ids visits `min(k, WINDOW)`
//! slots (ids are dense, so `k` is 1 in steady state). Memory: `WINDOW` slots of
//! `Option<OrderView>` (96 bytes each, about 25 MiB) plus the open orders older than the window.

use crate::readmodel::{OrderState, OrderView};
use crate::types::OrderId;
use rustc_hash::FxHashMap;
use std::collections::VecDeque;

/// Order ids kept in the ring (a power of two).
pub const WINDOW: usize = 1 << 18;
/// Finished orders of the overflow kept for status queries.
pub const OLD_FINISHED_MAX: usize = 4_096;

pub struct OrderViews {
    ring: Box<[Option<OrderView>]>,
    /// The highest id inserted (0: none).
    newest: u64,
    overflow: FxHashMap<OrderId, OrderView>,
    old_finished: VecDeque<OrderId>,
}

impl Default for OrderViews {
    fn default() -> Self {
        OrderViews {
            ring: vec![None; WINDOW].into_boxed_slice(),
            newest: 0,
            overflow: FxHashMap::default(),
            old_finished: VecDeque::new(),
        }
    }
}

impl OrderViews {
    #[inline]
    fn in_window(&self, id: OrderId) -> bool {
        id.0 <= self.newest && id.0 + (WINDOW as u64) > self.newest
    }

    #[inline]
    fn slot(id: OrderId) -> usize {
        (id.0 as usize) & (WINDOW - 1)
    }

    pub fn get(&self, id: OrderId) -> Option<&OrderView> {
        if self.in_window(id) {
            self.ring[Self::slot(id)]
                .as_ref()
                .filter(|o| o.info.order_id == id)
        } else {
            self.overflow.get(&id)
        }
    }

    pub fn get_mut(&mut self, id: OrderId) -> Option<&mut OrderView> {
        if self.in_window(id) {
            self.ring[Self::slot(id)]
                .as_mut()
                .filter(|o| o.info.order_id == id)
        } else {
            self.overflow.get_mut(&id)
        }
    }

    /// Adds (or replaces) an order.
    pub fn insert(&mut self, view: OrderView) {
        let id = view.info.order_id;
        if id.0 > self.newest {
            self.advance(id.0);
        }
        if self.in_window(id) {
            self.ring[Self::slot(id)] = Some(view);
        } else {
            self.overflow.insert(id, view);
        }
    }

    /// Forgets an order (e.g. a synthetic one, which nobody queries).
    pub fn remove(&mut self, id: OrderId) {
        if self.in_window(id) {
            let slot = &mut self.ring[Self::slot(id)];
            if slot.as_ref().is_some_and(|o| o.info.order_id == id) {
                *slot = None;
            }
        } else {
            self.overflow.remove(&id);
        }
    }

    /// Called when an order finished (its view already says so): an old order is remembered
    /// among the last `OLD_FINISHED_MAX`.
    pub fn finished(&mut self, id: OrderId) {
        if self.in_window(id) || !self.overflow.contains_key(&id) {
            return;
        }
        self.old_finished.push_back(id);
        while self.old_finished.len() > OLD_FINISHED_MAX {
            if let Some(old) = self.old_finished.pop_front() {
                self.overflow.remove(&old);
            }
        }
    }

    /// Every order known (window and overflow), in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = &OrderView> + '_ {
        self.ring.iter().flatten().chain(self.overflow.values())
    }

    /// Moves `newest` to `id`: the slots of ids leaving the window are emptied, their open
    /// orders moved to the overflow.
    fn advance(&mut self, id: u64) {
        let leaving = (id - self.newest).min(WINDOW as u64);
        for k in 0..leaving {
            // Ids newest + 1 ..= id enter; the ids WINDOW below them leave.
            let entering = self.newest + 1 + k;
            let Some(old) = self.ring[Self::slot(OrderId(entering))].take() else {
                continue;
            };
            if matches!(old.state, OrderState::New | OrderState::PartiallyFilled) {
                self.overflow.insert(old.info.order_id, old);
            }
        }
        self.newest = id;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::*;

    fn view(id: u64) -> OrderView {
        OrderView {
            info: crate::testkit::order_info(id, 1_000),
            price: Price(1_000),
            leaves: Qty(10),
            filled: Qty(0),
            cancelled: Qty(0),
            state: OrderState::New,
            seq: id,
        }
    }

    #[test]
    fn an_open_order_survives_leaving_the_window_and_a_finished_one_is_dropped_later() {
        let mut t = OrderViews::default();
        t.insert(view(1));
        t.insert(view(2));
        t.get_mut(OrderId(2)).unwrap().state = OrderState::Filled;
        t.finished(OrderId(2));
        let far = 2 + WINDOW as u64 + 5;
        t.insert(view(far));
        assert_eq!(t.get(OrderId(1)).map(|o| o.state), Some(OrderState::New));
        assert!(
            t.get(OrderId(2)).is_none(),
            "a finished order leaves with the window"
        );
        assert!(t.get(OrderId(far)).is_some());
        assert!(t.get(OrderId(far - 1)).is_none(), "never inserted");
        // The old open order finishes in the overflow and is kept among the last few.
        t.get_mut(OrderId(1)).unwrap().state = OrderState::Cancelled(CancelReason::Requested);
        t.finished(OrderId(1));
        assert!(t.get(OrderId(1)).is_some());
        for k in 0..OLD_FINISHED_MAX as u64 {
            let id = far + 1 + k;
            t.insert(view(id));
        }
        assert_eq!(t.iter().count(), 1 + OLD_FINISHED_MAX + 1);
    }

    #[test]
    fn ids_out_of_order_and_removal() {
        let mut t = OrderViews::default();
        t.insert(view(10));
        t.insert(view(3));
        assert!(t.get(OrderId(3)).is_some() && t.get(OrderId(10)).is_some());
        t.remove(OrderId(3));
        assert!(t.get(OrderId(3)).is_none());
        assert!(t.get(OrderId(11)).is_none(), "beyond the newest");
    }
}
