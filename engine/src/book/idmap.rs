//! `OrderId -> slot`: an open-addressing table with linear probing in Robin Hood order and
//! backward-shift deletion, sized once for `orders_max`. The order slab keeps in it the
//! orders that do not sit in their home slot (see `order.rs`).
//!
//! Why not `HashMap`: a `hashbrown` table that sees constant inserts and removes fills with
//! tombstones and periodically rehashes in place, an O(capacity) pause (milliseconds at a
//! million orders) on the processor thread. Backward-shift deletion leaves no tombstones, so
//! every operation costs a short probe, always.
//!
//! Why Robin Hood order: ids are handed out in sequence, so the live orders fill long runs of
//! consecutive buckets. With plain linear probing a delete must scan to the end of its run
//! (a later entry might belong before the hole), which on the `kuku-bench engine` flow was
//! about 25 buckets per delete; keeping each run sorted by home bucket lets the shift stop at
//! the first entry that sits in its home bucket, usually the next one.
//!
//! **Invariants**: load <= 1/2 (capacity is the power of two >= 2 x `orders_max`); every key
//! is reachable from its home bucket without crossing an empty bucket; along a run, an
//! entry's distance from its home never drops by more than one from bucket to bucket (Robin
//! Hood order: an entry at distance 0 starts a new cluster); key 0 marks empty (order ids
//! start at 1).
//!
//! **Performance**: the home bucket of an id is its low bits. Ids are handed out in
//! sequence, so new orders land in consecutive buckets (the cache line and the prefetcher
//! work for us) instead of a random bucket per insert; the few orders that outlive a table's
//! worth of newer ids take the next free bucket. Measured against Fibonacci hashing on the
//! `kuku-bench engine` flow: 4.4M -> 5.7M ops/s (same run conditions, docs/benchmarks.md).
//! No allocation after construction (the pages are touched at construction); iteration order
//! is never exposed.

use super::order::Slot;
use crate::types::OrderId;

#[derive(Clone, Copy)]
struct Bucket {
    key: u64,
    slot: Slot,
}

const EMPTY: Bucket = Bucket { key: 0, slot: 0 };

pub struct IdMap {
    buckets: crate::table::Table<Bucket>,
    mask: usize,
    len: usize,
}

impl IdMap {
    pub fn with_capacity(items_max: usize) -> IdMap {
        let capacity = (items_max.max(1) * 2).next_power_of_two().max(16);
        let buckets = crate::table::Table::new(capacity, EMPTY);
        IdMap {
            buckets,
            mask: capacity - 1,
            len: 0,
        }
    }

    #[inline]
    fn home(&self, key: u64) -> usize {
        (key as usize) & self.mask
    }

    /// How far bucket `i` lies past the home of the key stored in it.
    #[inline]
    fn distance(&self, key: u64, i: usize) -> usize {
        i.wrapping_sub(self.home(key)) & self.mask
    }

    /// Starts loading `id`'s home bucket into cache.
    #[inline]
    pub fn prefetch(&self, id: OrderId) {
        crate::idempotency::prefetch_read(&self.buckets[self.home(id.0)]);
    }

    #[inline]
    pub fn get(&self, id: OrderId) -> Option<Slot> {
        // Key 0 marks an empty bucket: no order has id 0 (a request may name it).
        if id.0 == 0 {
            return None;
        }
        let mut i = self.home(id.0);
        let mut dist = 0;
        loop {
            let b = self.buckets[i];
            if b.key == id.0 {
                return Some(b.slot);
            }
            // Robin Hood order: past an entry closer to its home than we are to ours, the key
            // would have been placed already.
            if b.key == 0 || self.distance(b.key, i) < dist {
                return None;
            }
            i = (i + 1) & self.mask;
            dist += 1;
        }
    }

    /// Inserts a new key (ids are never reused, so it is not present). Robin Hood: the
    /// entry being placed takes the bucket of any resident closer to its own home, which
    /// then moves on.
    #[inline]
    pub fn insert(&mut self, id: OrderId, slot: Slot) {
        debug_assert!(id.0 != 0 && self.len < self.mask / 2 + 1);
        let mut carried = Bucket { key: id.0, slot };
        let mut i = self.home(id.0);
        let mut dist = 0;
        loop {
            let resident = self.buckets[i];
            if resident.key == 0 {
                self.buckets[i] = carried;
                break;
            }
            debug_assert_ne!(resident.key, id.0);
            let resident_dist = self.distance(resident.key, i);
            if resident_dist < dist {
                self.buckets[i] = carried;
                carried = resident;
                dist = resident_dist;
            }
            i = (i + 1) & self.mask;
            dist += 1;
        }
        self.len += 1;
    }

    /// Removes `id` if present, shifting later entries of its probe run back.
    #[inline]
    pub fn remove(&mut self, id: OrderId) {
        if id.0 == 0 {
            return;
        }
        let mut i = self.home(id.0);
        let mut dist = 0;
        loop {
            let k = self.buckets[i].key;
            if k == id.0 {
                break;
            }
            if k == 0 || self.distance(k, i) < dist {
                return;
            }
            i = (i + 1) & self.mask;
            dist += 1;
        }
        self.len -= 1;
        // Backward shift: each following entry away from its home moves one bucket back;
        // the first empty bucket or entry at its home (a new cluster) ends the run.
        let mut hole = i;
        loop {
            let next = (hole + 1) & self.mask;
            let b = self.buckets[next];
            if b.key == 0 || self.distance(b.key, next) == 0 {
                break;
            }
            self.buckets[hole] = b;
            hole = next;
        }
        self.buckets[hole] = EMPTY;
    }

    /// Every stored value, in ascending key order: one sequential pass over the buckets and
    /// a sort, O(capacity + len log len).
    pub fn slots_by_key(&self) -> Vec<Slot> {
        let mut pairs: Vec<(u64, Slot)> = Vec::with_capacity(self.len);
        pairs.extend(
            self.buckets
                .iter()
                .filter(|b| b.key != 0)
                .map(|b| (b.key, b.slot)),
        );
        pairs.sort_unstable_by_key(|&(key, _)| key);
        pairs.into_iter().map(|(_, slot)| slot).collect()
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn behaves_like_a_map_under_churn() {
        let mut m = IdMap::with_capacity(1_000);
        let mut model = BTreeMap::new();
        let mut next = 1u64;
        let mut rng = 0x9e37_79b9u64;
        for step in 0..200_000u32 {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            if model.len() < 1_000 && (!rng.is_multiple_of(3) || model.is_empty()) {
                m.insert(OrderId(next), step);
                model.insert(next, step);
                next += 1;
            } else {
                // Remove a random live id (old ones too: they outlive many newer ids).
                let k = *model.keys().nth((rng >> 8) as usize % model.len()).unwrap();
                m.remove(OrderId(k));
                model.remove(&k);
            }
            if step % 997 == 0 {
                for (k, v) in &model {
                    assert_eq!(m.get(OrderId(*k)), Some(*v));
                }
                let in_key_order: Vec<Slot> = model.values().copied().collect();
                assert_eq!(m.slots_by_key(), in_key_order);
                assert_robin_hood_order(&m);
                assert_eq!(m.len(), model.len());
            }
            assert_eq!(m.get(OrderId(next + 7)), None);
        }
    }

    /// Along every run, an entry's distance from home grows by at most one per bucket, and
    /// an entry after an empty bucket sits in its home.
    fn assert_robin_hood_order(m: &IdMap) {
        let n = m.mask + 1;
        for i in 0..n {
            let b = m.buckets[i];
            if b.key == 0 {
                continue;
            }
            let prev = m.buckets[(i + n - 1) & m.mask];
            let bound = if prev.key == 0 {
                0
            } else {
                m.distance(prev.key, (i + n - 1) & m.mask) + 1
            };
            assert!(
                m.distance(b.key, i) <= bound,
                "bucket {i}: key {} is {} from home, the bound is {bound}",
                b.key,
                m.distance(b.key, i)
            );
        }
    }

    #[test]
    fn a_full_run_across_the_table_end_shifts_back_and_stays_in_order() {
        // 16 buckets: keys 14, 15 at home, then 30 and 31 (homes 14, 15) wrap to 0 and 1,
        // then 16 (home 0) is displaced to 2.
        let mut m = IdMap::with_capacity(8);
        for (key, slot) in [(14, 1), (15, 2), (30, 3), (31, 4), (16, 5)] {
            m.insert(OrderId(key), slot);
            assert_robin_hood_order(&m);
        }
        m.remove(OrderId(15));
        assert_robin_hood_order(&m);
        for (key, slot) in [(14, 1), (30, 3), (31, 4), (16, 5)] {
            assert_eq!(m.get(OrderId(key)), Some(slot), "key {key}");
        }
        assert_eq!((m.get(OrderId(15)), m.len()), (None, 4));
        assert_eq!(m.slots_by_key(), vec![1, 5, 3, 4]);
    }

    #[test]
    fn id_zero_is_never_found_and_never_removes_anything() {
        let mut m = IdMap::with_capacity(16);
        assert_eq!(m.get(OrderId(0)), None, "an empty bucket is not order 0");
        m.insert(OrderId(1), 7);
        m.remove(OrderId(0));
        assert_eq!(
            (m.get(OrderId(0)), m.get(OrderId(1)), m.len()),
            (None, Some(7), 1)
        );
        assert_eq!(m.get(OrderId(u64::MAX)), None);
    }
}
