//! The live-order slab: every resting order of every book, with its intrusive links.
//!
//! Orders live in one preallocated `Vec` of slots with a free list. A slot index is an
//! internal handle only: identity is the `OrderId` counter, mapped to slots by an
//! [`IdMap`] (open addressing without tombstones, so no rehash pauses). Each order sits in two
//! intrusive doubly-linked lists: its price level's FIFO (time priority) and its account's
//! list, the latter in OrderId order (append on accept; a modify keeps the id).
//!
//! **Invariants**
//! - A slot is either free (on the free list, its id 0) or holds exactly one live order.
//! - `by_id` maps exactly the live orders to their slots.
//! - Account lists are sorted by OrderId.
//!
//! **Performance**: O(1) insert, remove and lookup; no allocation after construction (the map
//! is built with capacity `orders_max` and never holds more). An order is two cache lines,
//! the fields a cancel or a match touches in the first: removing an order touches its first
//! line, its level neighbours' first lines and (with accounts) its account neighbours'.
//! There is no list of all orders: walking every order in OrderId order ([`OrderStore::iter`],
//! for snapshots, the end of the day and checks, never per request) reads the id map
//! sequentially and sorts, O(capacity + live log live). A global list cost every remove two
//! more cache misses (its id-order neighbours sit anywhere in the slab); measured in
//! docs/benchmarks.md §8.

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

/// The slab of live orders.
pub struct OrderStore {
    slots: crate::table::Table<Order>,
    free_head: Slot,
    by_id: IdMap,
    live: u32,
}

impl OrderStore {
    pub fn new(orders_max: u32) -> Self {
        let blank = Order {
            id: OrderId(0),
            account: AccountId(0),
            client_order_id: ClientOrderId(0),
            symbol: SymbolId(0),
            side: Side::Buy,
            order_type: OrderType::Limit,
            tif: TimeInForce::Day,
            price: Price(0),
            leaves: Qty(0),
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
        };
        let mut slots = crate::table::Table::new(orders_max as usize, blank);
        // Free list threaded through `level.next`, lowest slot first.
        for (i, slot) in slots.iter_mut().enumerate() {
            slot.level.next = if i + 1 < orders_max as usize {
                (i + 1) as Slot
            } else {
                NIL
            };
        }
        let by_id = IdMap::with_capacity(orders_max as usize);
        OrderStore {
            slots,
            free_head: if orders_max > 0 { 0 } else { NIL },
            by_id,
            live: 0,
        }
    }

    #[inline]
    pub fn is_full(&self) -> bool {
        self.free_head == NIL
    }

    #[inline]
    pub fn live_count(&self) -> u32 {
        self.live
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

    /// Starts loading the index bucket of `id` into cache.
    #[inline]
    pub fn prefetch(&self, id: OrderId) {
        self.by_id.prefetch(id);
    }

    /// Starts loading the first cache line of the order in `slot` (the fields a lookup and
    /// a cancel read).
    #[inline]
    pub fn prefetch_head(&self, slot: Slot) {
        crate::idempotency::prefetch_read(&self.slots[slot as usize].id);
    }

    #[inline]
    pub fn slot_of(&self, id: OrderId) -> Option<Slot> {
        self.by_id.get(id)
    }

    /// Takes a free slot for `order`. The caller links it into its level and account lists.
    /// `None` if the slab is full.
    pub fn insert(&mut self, mut order: Order) -> Option<Slot> {
        let slot = self.free_head;
        if slot == NIL {
            return None;
        }
        self.free_head = self.slots[slot as usize].level.next;
        order.level = Links::NONE;
        order.by_account = Links::NONE;
        self.by_id.insert(order.id, slot);
        self.slots[slot as usize] = order;
        self.live += 1;
        Some(slot)
    }

    /// Frees a slot; the caller has unlinked it from its level and account lists.
    pub fn remove(&mut self, slot: Slot) {
        let id = self.slots[slot as usize].id;
        self.by_id.remove(id);
        let s = &mut self.slots[slot as usize];
        s.id = OrderId(0);
        s.level = Links {
            prev: NIL,
            next: self.free_head,
        };
        self.free_head = slot;
        self.live -= 1;
    }

    /// The live orders' slots in OrderId order (allocates; not for per-request paths).
    pub fn slots_by_id(&self) -> Vec<Slot> {
        self.by_id.slots_by_key()
    }

    /// Iterates live orders in OrderId order (allocates; not for per-request paths).
    pub fn iter(&self) -> impl Iterator<Item = (Slot, &Order)> + '_ {
        self.slots_by_id()
            .into_iter()
            .map(move |slot| (slot, &self.slots[slot as usize]))
    }
}
