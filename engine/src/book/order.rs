//! The live-order slab: every resting order of every book, with its intrusive links.
//!
//! Orders live in one preallocated table of slots. An order's id chooses its slot: the
//! **home** slot is `id mod slots`, and an order sits there unless an older order still holds
//! it, in which case it takes the nearest free slot below and is entered in a small
//! [`IdMap`] of displaced orders. A lookup by id (every cancel and modify) is then one load
//! of the order itself, where a separate id index costs a dependent load first. The slot
//! index is an internal handle only: identity is the `OrderId` counter. Each order sits in
//! two intrusive doubly-linked lists: its price level's FIFO (time priority) and its
//! account's list, the latter in OrderId order (append on accept; a modify keeps the id).
//!
//! **Invariants**
//! - A slot is either free (its occupancy bit clear, its id 0) or holds exactly one live
//!   order (bit set).
//! - An order is in its home slot, or it is in `displaced`, mapped to its slot; `displaced`
//!   holds nothing else.
//! - At most `orders_max` orders are live; the slab has at least twice as many slots, so a
//!   free slot always exists.
//! - Account lists are sorted by OrderId.
//!
//! **Performance**: lookup O(1), one cache line for an order in its home (on the
//! `kuku-bench engine` flow about 89% of lookups; docs/benchmarks.md §11); insert O(1),
//! except that a displaced order's search for a free slot scans occupancy words downward
//! (usually the first; at worst slots/64 words); remove O(1). No allocation after
//! construction. Ids are handed out in sequence, so new orders fill consecutive slots
//! (the prefetcher works for us), and the slots just below the next home are those of the
//! most recent ids: short-lived orders (IOC, market, filled) leave them free, and the next
//! ids reach them last, so a displaced order rarely displaces another. An order is two
//! cache lines, the fields a cancel or a match touches in the first: removing an order
//! touches its first line, its level neighbours' first lines and (with accounts) its
//! account neighbours'. There is no list of all orders: walking every order in OrderId
//! order ([`OrderStore::iter`], for snapshots, the end of the day and checks, never per
//! request) reads the occupancy bits and sorts, O(slots/64 + live log live).

use super::idmap::IdMap;
use crate::types::{
    AccountId, Amount, ClientOrderId, OrderId, OrderType, Price, Qty, Side, SymbolId, TimeInForce,
};

/// A slab slot index; `NIL` ends a list.
pub type Slot = u32;
pub const NIL: Slot = u32::MAX;

/// Intrusive list links.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Links {
    pub prev: Slot,
    pub next: Slot,
}

impl Links {
    pub const NONE: Links = Links {
        prev: NIL,
        next: NIL,
    };
}

/// A live order: two cache lines (`repr(C)` keeps the order of the fields), the first with
/// everything a lookup, a cancel, a match and [`Order::head`] read, the second with the
/// counters a fill updates and the fields only reports read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C, align(64))]
pub struct Order {
    // First cache line.
    pub id: OrderId,
    pub price: Price,
    /// Open quantity.
    pub leaves: Qty,
    /// Cash this order holds (buys) under the risk rules; 0 for sells and SYSTEM_MARKET.
    pub cash_hold: Amount,
    pub level: Links,
    pub by_account: Links,
    pub account: AccountId,
    pub symbol: SymbolId,
    /// The owner's position in this symbol (index into the ledger's positions), cached so a
    /// fill touches no map; `NIL` for SYSTEM_MARKET and in book-only mode.
    pub position: u32,
    pub side: Side,
    pub order_type: OrderType,
    pub tif: TimeInForce,
    /// True while the order sits in a price level (an incoming order matches first).
    pub resting: bool,
    // Second cache line.
    /// Time priority within its level: lower goes first. Reassigned when priority is lost.
    pub priority: u64,
    pub client_order_id: ClientOrderId,
    pub filled: Qty,
    /// Sum of price x qty over this order's fills (for cumulative commission and tax).
    pub cum_notional: Amount,
    pub commission_charged: Amount,
    pub taxes_charged: [Amount; 2],
    pub ts_accepted: u64,
}

const _: () = assert!(size_of::<Order>() == 128, "an order is two cache lines");

/// The fields hot paths need of an order, small enough to copy freely.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OrderHead {
    pub id: OrderId,
    pub account: AccountId,
    pub symbol: SymbolId,
    pub side: Side,
    pub order_type: OrderType,
    pub tif: TimeInForce,
    pub resting: bool,
    pub price: Price,
    pub leaves: Qty,
    pub cash_hold: Amount,
    pub position: u32,
}

impl Order {
    /// A fresh order value (DAY limit, nothing filled); callers override what differs.
    #[inline]
    pub fn new(
        id: OrderId,
        account: AccountId,
        client_order_id: ClientOrderId,
        symbol: SymbolId,
        side: Side,
        price: Price,
        qty: Qty,
    ) -> Order {
        Order {
            id,
            account,
            client_order_id,
            symbol,
            side,
            order_type: OrderType::Limit,
            tif: TimeInForce::Day,
            price,
            leaves: qty,
            filled: Qty(0),
            priority: 0,
            cum_notional: Amount(0),
            commission_charged: Amount(0),
            taxes_charged: [Amount(0); 2],
            cash_hold: Amount(0),
            ts_accepted: 0,
            resting: false,
            position: NIL,
            level: Links::NONE,
            by_account: Links::NONE,
        }
    }

    #[inline]
    pub fn head(&self) -> OrderHead {
        OrderHead {
            id: self.id,
            account: self.account,
            symbol: self.symbol,
            side: self.side,
            order_type: self.order_type,
            tif: self.tif,
            resting: self.resting,
            price: self.price,
            leaves: self.leaves,
            cash_hold: self.cash_hold,
            position: self.position,
        }
    }
}

/// How many slab slots per order of capacity: an order lives in the slot its id selects
/// (`id mod slots`) unless an older order still holds that slot, and a sparser slab makes
/// that rarer (docs/benchmarks.md §11 measures the rate).
const SLOTS_PER_ORDER: usize = 2;

/// The slab of live orders.
pub struct OrderStore {
    slots: crate::table::Table<Order>,
    /// `slots.len() - 1`; the slab's length is a power of two.
    mask: usize,
    /// One bit per slot, set while the slot holds an order.
    occupied: Vec<u64>,
    /// The orders that do not sit in their home slot (`id & mask`): their home was taken
    /// when they were accepted.
    displaced: IdMap,
    live: u32,
    orders_max: u32,
    /// Orders placed away from their home slot since construction.
    displaced_total: u64,
    /// Orders placed since construction.
    inserted_total: u64,
}

impl OrderStore {
    pub fn new(orders_max: u32) -> Self {
        let blank = Order::new(
            OrderId(0),
            AccountId(0),
            ClientOrderId(0),
            SymbolId(0),
            Side::Buy,
            Price(0),
            Qty(0),
        );
        let len = (orders_max.max(1) as usize * SLOTS_PER_ORDER).next_power_of_two();
        OrderStore {
            slots: crate::table::Table::new(len, blank),
            mask: len - 1,
            occupied: vec![0; len.div_ceil(64)],
            displaced: IdMap::with_capacity(orders_max as usize),
            live: 0,
            orders_max,
            displaced_total: 0,
            inserted_total: 0,
        }
    }

    #[inline]
    pub fn is_full(&self) -> bool {
        self.live >= self.orders_max
    }

    #[inline]
    pub fn live_count(&self) -> u32 {
        self.live
    }

    /// Orders placed away from their home slot since construction (each costs its lookups
    /// a second probe, in the displaced index).
    pub fn displaced_total(&self) -> u64 {
        self.displaced_total
    }

    /// Orders placed since construction.
    pub fn inserted_total(&self) -> u64 {
        self.inserted_total
    }

    #[inline]
    pub fn get(&self, slot: Slot) -> &Order {
        &self.slots[slot as usize]
    }

    #[inline]
    pub fn get_mut(&mut self, slot: Slot) -> &mut Order {
        &mut self.slots[slot as usize]
    }

    /// Two distinct orders, both mutable (a taker and a maker).
    #[inline]
    pub fn get2_mut(&mut self, a: Slot, b: Slot) -> (&mut Order, &mut Order) {
        assert_ne!(a, b, "a taker never matches itself");
        let (a, b) = (a as usize, b as usize);
        if a < b {
            let (lo, hi) = self.slots.split_at_mut(b);
            (&mut lo[a], &mut hi[0])
        } else {
            let (lo, hi) = self.slots.split_at_mut(a);
            (&mut hi[0], &mut lo[b])
        }
    }

    #[inline]
    fn home(&self, id: OrderId) -> usize {
        (id.0 as usize) & self.mask
    }

    /// Starts loading the first cache line of the slot where `id` usually lives (the fields
    /// a lookup and a cancel read).
    #[inline]
    pub fn prefetch(&self, id: OrderId) {
        crate::idempotency::prefetch_read(&self.slots[self.home(id)].id);
    }

    /// The slot of live order `id`: its home slot, one load, unless it was displaced.
    #[inline]
    pub fn slot_of(&self, id: OrderId) -> Option<Slot> {
        // A free slot has id 0, and no order has id 0 (a request may name it).
        if id.0 == 0 {
            return None;
        }
        let home = self.home(id);
        if self.slots[home].id == id {
            return Some(home as Slot);
        }
        if self.displaced.is_empty() {
            return None;
        }
        self.displaced.get(id)
    }

    #[inline]
    fn is_occupied(&self, slot: usize) -> bool {
        self.occupied[slot / 64] & (1 << (slot % 64)) != 0
    }

    /// The nearest free slot below `home`, wrapping: the homes of the ids handed out just
    /// before, which the next ids reach last. The caller knows a free slot exists.
    fn free_slot_below(&self, home: usize) -> usize {
        let words = self.occupied.len();
        let mut w = home / 64;
        // Bits below `home` in its own word first, then whole words downward, wrapping.
        let mut free = !self.occupied[w] & ((1u64 << (home % 64)) - 1);
        for _ in 0..=words {
            if free != 0 {
                return w * 64 + 63 - free.leading_zeros() as usize;
            }
            w = if w == 0 { words - 1 } else { w - 1 };
            free = !self.occupied[w];
            if w * 64 + 64 > self.slots.len() {
                free &= (1u64 << (self.slots.len() % 64)) - 1;
            }
        }
        unreachable!("a store below orders_max has a free slot")
    }

    /// Places `order` (its id new and non-zero) in its home slot, or in a free slot nearby
    /// if an older order holds the home. The caller links it into its level, and into its
    /// account's list: `by_account` is kept as given (the caller sets it before, so that the
    /// new slot is written once). `None` if `orders_max` orders are live.
    pub fn insert(&mut self, mut order: Order) -> Option<Slot> {
        if self.is_full() {
            return None;
        }
        debug_assert!(order.id.0 != 0 && self.slot_of(order.id).is_none());
        let home = self.home(order.id);
        let slot = if self.is_occupied(home) {
            let slot = self.free_slot_below(home);
            self.displaced.insert(order.id, slot as Slot);
            self.displaced_total += 1;
            slot
        } else {
            home
        };
        self.occupied[slot / 64] |= 1 << (slot % 64);
        order.level = Links::NONE;
        self.slots[slot] = order;
        self.live += 1;
        self.inserted_total += 1;
        Some(slot as Slot)
    }

    /// Frees a slot; the caller has unlinked it from its level and account lists.
    pub fn remove(&mut self, slot: Slot) {
        let s = slot as usize;
        let id = self.slots[s].id;
        debug_assert!(id.0 != 0 && self.is_occupied(s));
        if s != self.home(id) {
            self.displaced.remove(id);
        }
        self.slots[s].id = OrderId(0);
        self.slots[s].level = Links::NONE;
        self.occupied[s / 64] &= !(1 << (s % 64));
        self.live -= 1;
    }

    /// The live orders' slots in OrderId order (allocates; not for per-request paths).
    pub fn slots_by_id(&self) -> Vec<Slot> {
        let mut pairs: Vec<(u64, Slot)> = Vec::with_capacity(self.live as usize);
        for (w, &word) in self.occupied.iter().enumerate() {
            let mut bits = word;
            while bits != 0 {
                let slot = w * 64 + bits.trailing_zeros() as usize;
                bits &= bits - 1;
                pairs.push((self.slots[slot].id.0, slot as Slot));
            }
        }
        pairs.sort_unstable_by_key(|&(id, _)| id);
        pairs.into_iter().map(|(_, slot)| slot).collect()
    }

    /// Iterates live orders in OrderId order (allocates; not for per-request paths).
    pub fn iter(&self) -> impl Iterator<Item = (Slot, &Order)> + '_ {
        self.slots_by_id()
            .into_iter()
            .map(move |slot| (slot, &self.slots[slot as usize]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn order(id: u64) -> Order {
        Order {
            priority: id,
            ..Order::new(
                OrderId(id),
                AccountId(1),
                ClientOrderId(id),
                SymbolId(1),
                Side::Buy,
                Price(100),
                Qty(1),
            )
        }
    }

    /// Every live order is found in its slot, the occupancy bits and the live count agree
    /// with the slots, and exactly the orders away from home are in the displaced index.
    fn assert_consistent(store: &OrderStore, model: &BTreeMap<u64, Slot>) {
        for (&id, &slot) in model {
            assert_eq!(store.slot_of(OrderId(id)), Some(slot), "order {id}");
            assert_eq!(store.get(slot).id, OrderId(id));
        }
        let mut occupied = 0;
        for slot in 0..store.slots.len() {
            let id = store.get(slot as Slot).id;
            assert_eq!(store.is_occupied(slot), id.0 != 0, "slot {slot}");
            occupied += usize::from(id.0 != 0);
        }
        assert_eq!(
            (occupied, store.live_count() as usize),
            (model.len(), model.len())
        );
        let away = model
            .iter()
            .filter(|&(&id, &slot)| store.home(OrderId(id)) != slot as usize)
            .count();
        assert_eq!(store.displaced.len(), away);
        let by_id: Vec<Slot> = model.values().copied().collect();
        assert_eq!(store.slots_by_id(), by_id);
    }

    #[test]
    fn an_order_lives_in_its_home_slot_until_an_older_order_holds_it() {
        // 8 orders of capacity: 16 slots. Order 3 outlives 16 newer ids, so order 19 (home 3)
        // goes to the nearest free slot below, 2 (order 2 is gone).
        let mut store = OrderStore::new(8);
        let mut model = BTreeMap::new();
        for id in 1..=3 {
            model.insert(id, store.insert(order(id)).unwrap());
        }
        assert_eq!(model.values().copied().collect::<Vec<_>>(), vec![1, 2, 3]);
        for id in [1, 2] {
            store.remove(model.remove(&id).unwrap());
        }
        for id in 4..=18 {
            let slot = store.insert(order(id)).unwrap();
            assert_eq!(slot as u64, id % 16, "order {id} at home");
            store.remove(slot);
        }
        let slot = store.insert(order(19)).unwrap();
        assert_eq!(slot, 2, "displaced below its home");
        model.insert(19, slot);
        assert_eq!(store.displaced_total(), 1);
        assert_consistent(&store, &model);
        // Order 35 (home 3 again) finds 3 still taken and 2 taken: slot 1.
        model.insert(35, store.insert(order(35)).unwrap());
        assert_eq!(model[&35], 1);
        assert_consistent(&store, &model);
        // Removing the displaced orders empties the index; a lookup of a dead id finds nothing.
        for id in [19, 35] {
            store.remove(model.remove(&id).unwrap());
        }
        assert_consistent(&store, &model);
        assert_eq!(store.slot_of(OrderId(19)), None);
        assert_eq!(
            store.slot_of(OrderId(0)),
            None,
            "a free slot is not order 0"
        );
    }

    #[test]
    fn the_search_for_a_free_slot_wraps_below_slot_zero() {
        // Home 0 taken and every slot below it (there are none): the search wraps to the top.
        let mut store = OrderStore::new(8);
        let first = store.insert(order(16)).unwrap();
        assert_eq!(first, 0);
        let slot = store.insert(order(32)).unwrap();
        assert_eq!(slot, 15, "wrapped to the highest slot");
        assert_eq!(store.slot_of(OrderId(32)), Some(15));
    }

    #[test]
    fn a_full_store_refuses_and_a_small_store_never_uses_slots_it_does_not_have() {
        // Two orders of capacity: four slots, in one 64-bit occupancy word.
        let mut store = OrderStore::new(2);
        assert_eq!(store.insert(order(4)), Some(0));
        // Home 0 is taken and nothing lies below it: the search wraps to slot 3, not to a
        // bit of the word past the slab's end.
        assert_eq!(store.insert(order(8)), Some(3));
        assert!(store.is_full());
        assert_eq!(store.insert(order(9)), None);
        let mut model = BTreeMap::from([(4, 0), (8, 3)]);
        assert_consistent(&store, &model);
        store.remove(model.remove(&4).unwrap());
        assert_eq!(store.insert(order(12)), Some(0), "home free again");
        model.insert(12, 0);
        assert_consistent(&store, &model);
    }

    #[test]
    fn behaves_like_a_map_under_churn_with_long_lived_orders() {
        let mut store = OrderStore::new(200);
        let mut model: BTreeMap<u64, Slot> = BTreeMap::new();
        let mut next = 1u64;
        let mut rng = 0x2545_f491_4f6c_dd1du64;
        for step in 0..100_000u32 {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            if model.len() < 200 && (!rng.is_multiple_of(3) || model.is_empty()) {
                let slot = store.insert(order(next)).expect("below capacity");
                assert!(model.insert(next, slot).is_none());
                next += 1;
            } else if model.len() == 200 {
                assert_eq!(store.insert(order(next)), None, "full");
                next += 1;
                let k = *model.keys().nth((rng >> 8) as usize % 200).unwrap();
                store.remove(model.remove(&k).unwrap());
            } else {
                // Mostly young orders go, so old ones outlive many newer ids (displacement).
                let n = model.len();
                let i = if rng.is_multiple_of(5) {
                    (rng >> 8) as usize % n
                } else {
                    n - 1 - (rng >> 8) as usize % n.min(8)
                };
                let k = *model.keys().nth(i).unwrap();
                store.remove(model.remove(&k).unwrap());
            }
            if step % 499 == 0 {
                assert_consistent(&store, &model);
            }
        }
        assert!(store.displaced_total() > 0, "the churn displaced orders");
    }
}
