//! Idempotency keys: a resent request never creates a second order.
//!
//! Every trading request (new order, cancel, cancel-all, modify) carries a `client_order_id`
//! that is unique per account per trading day (FIX ClOrdID style: one key space per account).
//! The table remembers, for each key used today, the request's content and its outcome:
//! - same key, same content: the original outcome is returned (accepted or rejected) and
//!   nothing is created;
//! - same key, different content: `DuplicateKey`;
//! - the account's share of the table is full: `KeysFull` (never evicted; keys reset at
//!   StartOfDay).
//!
//! Rejects that happen before the key is recorded (unknown account, DuplicateKey, KeysFull)
//! do not use up the key; nor do gateway-level rejects (Busy, RateLimited) that never reach
//! the journal.
//!
//! **Performance**: one probe per request into an open-addressing table sized once (twice
//! `keys_max`, pages touched at construction), cleared (not freed) at StartOfDay. Content is
//! compared by a 64-bit fingerprint, so an entry is 32 bytes.

use crate::reject::RejectReason;
use crate::types::TimeInForce;
use crate::types::{AccountId, ClientOrderId, OrderId, OrderType, Price, Qty, Side, SymbolId};
use serde::{Deserialize, Serialize};

/// What a request asked for, compared field by field on a resend.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum RequestContent {
    Place {
        symbol: SymbolId,
        side: Side,
        order_type: OrderType,
        tif: TimeInForce,
        price: Price,
        qty: Qty,
    },
    Cancel {
        order_id: OrderId,
    },
    CancelAll {
        symbol: Option<SymbolId>,
    },
    Modify {
        order_id: OrderId,
        new_qty: Qty,
        new_price: Price,
    },
}

/// How a request ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Outcome {
    /// A new order accepted under this id, or the order a cancel/modify acted on.
    Accepted(OrderId),
    Rejected(RejectReason),
    /// A cancel-all and how many orders it cancelled.
    CancelledAll(u32),
}

/// What the table remembers of a request: a fingerprint of its content and its outcome.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct KeyRecord {
    pub fingerprint: u64,
    pub outcome: Outcome,
}

impl RequestContent {
    /// A stable 64-bit fingerprint of the content (XXH3 over a fixed layout). Two different
    /// contents collide with probability 2^-64: a different request under a used key would
    /// then be answered as a resend.
    #[inline]
    pub fn fingerprint(&self) -> u64 {
        let mut b = [0u8; 40];
        let (tag, a, x, y): (u8, u64, i64, i64) = match *self {
            RequestContent::Place {
                symbol,
                side,
                order_type,
                tif,
                price,
                qty,
            } => {
                let flags = (side as u64) | (order_type as u64) << 8 | (tif as u64) << 16;
                (1, u64::from(symbol.0) | flags << 32, price.0, qty.0)
            }
            RequestContent::Cancel { order_id } => (2, order_id.0, 0, 0),
            RequestContent::CancelAll { symbol } => {
                (3, symbol.map_or(u64::MAX, |s| u64::from(s.0)), 0, 0)
            }
            RequestContent::Modify {
                order_id,
                new_qty,
                new_price,
            } => (4, order_id.0, new_price.0, new_qty.0),
        };
        b[0] = tag;
        b[8..16].copy_from_slice(&a.to_le_bytes());
        b[16..24].copy_from_slice(&x.to_le_bytes());
        b[24..32].copy_from_slice(&y.to_le_bytes());
        xxhash_rust::xxh3::xxh3_64(&b)
    }
}

/// The lookup result for an incoming request.
pub enum KeyCheck {
    /// First use today.
    New,
    /// A resend: same content, here is the original outcome.
    Resent(Outcome),
    /// Used today for something else.
    Conflict,
}

#[derive(Clone, Copy)]
struct Slot {
    /// 0: empty (accounts are numbered from 1).
    account: u32,
    key: u64,
    record: KeyRecord,
}

const EMPTY: Slot = Slot {
    account: 0,
    key: 0,
    record: KeyRecord {
        fingerprint: 0,
        outcome: Outcome::CancelledAll(0),
    },
};

/// Open addressing with linear probing, sized once to twice `keys_max`, never deleted from
/// (cleared whole at StartOfDay); a [`crate::table::Table`] (filled at construction, huge
/// pages where available).
pub struct KeyTable {
    slots: crate::table::Table<Slot>,
    shift: u32,
    mask: usize,
    /// Keys recorded today (table and pending).
    len: usize,
    keys_max: usize,
    /// Keys recorded but not yet written to the table (`EMPTY` where none): each one's
    /// bucket was prefetched when it arrived, and it is written `PENDING_MAX` records later,
    /// when the line is in cache, by the record that takes its place in this ring.
    pending: [Slot; PENDING_MAX],
    /// The ring position the next record takes.
    pending_next: usize,
    /// Per account, the largest key recorded today: a larger key is new without a lookup
    /// (clients that number requests upwards, as FIX clients do, never pay for the table).
    high_water: Vec<u64>,
}

/// How many recorded keys wait for their prefetched bucket.
const PENDING_MAX: usize = 16;

impl KeyTable {
    pub fn new(keys_max: u32, accounts_max: u32) -> KeyTable {
        let capacity = (keys_max.max(1) as usize * 2).next_power_of_two().max(16);
        let slots = crate::table::Table::new(capacity, EMPTY);
        KeyTable {
            slots,
            shift: 64 - capacity.trailing_zeros(),
            mask: capacity - 1,
            len: 0,
            keys_max: keys_max as usize,
            pending: [EMPTY; PENDING_MAX],
            pending_next: 0,
            high_water: vec![0; accounts_max as usize + 1],
        }
    }

    #[inline]
    fn home(&self, account: AccountId, key: ClientOrderId) -> usize {
        let k = key.0 ^ u64::from(account.0).rotate_left(40);
        (k.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> self.shift) as usize
    }

    /// Starts loading the bucket of (account, key) into cache.
    #[inline]
    pub fn prefetch(&self, account: AccountId, key: ClientOrderId) {
        prefetch_read(&self.slots[self.home(account, key)]);
    }

    /// The bucket holding (account, key), or the empty bucket where it would go.
    #[inline]
    fn find(&self, account: AccountId, key: ClientOrderId) -> usize {
        let mut i = self.home(account, key);
        loop {
            let s = &self.slots[i];
            if s.account == 0 || (s.account == account.0 && s.key == key.0) {
                return i;
            }
            i = (i + 1) & self.mask;
        }
    }

    #[inline]
    fn high_water(&self, account: AccountId) -> u64 {
        self.high_water
            .get(account.0 as usize)
            .copied()
            .unwrap_or(0)
    }

    /// Whether a request is new, a resend, or a conflict.
    #[inline]
    pub fn check(
        &self,
        account: AccountId,
        key: ClientOrderId,
        content: &RequestContent,
    ) -> KeyCheck {
        if key.0 > self.high_water(account) {
            return KeyCheck::New;
        }
        let found = self
            .pending
            .iter()
            .find(|s| s.account != 0 && s.account == account.0 && s.key == key.0)
            .copied()
            .unwrap_or_else(|| self.slots[self.find(account, key)]);
        if found.account == 0 {
            KeyCheck::New
        } else if found.record.fingerprint == content.fingerprint() {
            KeyCheck::Resent(found.record.outcome)
        } else {
            KeyCheck::Conflict
        }
    }

    /// True if the global table has room for one more key.
    #[inline]
    pub fn has_room(&self) -> bool {
        self.len < self.keys_max
    }

    /// Records a key that [`KeyTable::check`] found new.
    #[inline]
    pub fn record(&mut self, account: AccountId, key: ClientOrderId, record: KeyRecord) {
        debug_assert!(self.has_room() && account.0 != 0);
        if let Some(h) = self.high_water.get_mut(account.0 as usize) {
            *h = (*h).max(key.0);
        }
        self.prefetch(account, key);
        let next = self.pending_next;
        let oldest = std::mem::replace(
            &mut self.pending[next],
            Slot {
                account: account.0,
                key: key.0,
                record,
            },
        );
        if oldest.account != 0 {
            self.write(oldest);
        }
        self.pending_next = (next + 1) % PENDING_MAX;
        self.len += 1;
    }

    fn write(&mut self, slot: Slot) {
        let i = self.find(AccountId(slot.account), ClientOrderId(slot.key));
        self.slots[i] = slot;
    }

    /// Forgets every key (StartOfDay). Keeps the memory.
    pub fn clear(&mut self) {
        if self.len > 0 {
            self.slots.fill(EMPTY);
            self.high_water.fill(0);
            self.pending = [EMPTY; PENDING_MAX];
            self.pending_next = 0;
            self.len = 0;
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// All keys, sorted (for snapshots and the state hash).
    pub fn sorted(&self) -> Vec<((AccountId, ClientOrderId), KeyRecord)> {
        let mut v: Vec<_> = self
            .slots
            .iter()
            .chain(&self.pending)
            .filter(|s| s.account != 0)
            .map(|s| ((AccountId(s.account), ClientOrderId(s.key)), s.record))
            .collect();
        v.sort_unstable_by_key(|(k, _)| *k);
        v
    }
}

/// A hint to load the cache lines of `value` (no effect on results). A value that is not
/// line-aligned (a 40-byte key slot, say) can straddle two lines: both are requested, or the
/// field read first may sit in the line that was never loaded.
#[inline(always)]
pub(crate) fn prefetch_read<T>(value: &T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch never faults and has no effect on memory contents; both pointers
    // are inside (or one past the start of) the referenced value.
    unsafe {
        use core::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        let first = value as *const T as *const i8;
        _mm_prefetch::<{ _MM_HINT_T0 }>(first);
        if size_of::<T>() > 1 {
            _mm_prefetch::<{ _MM_HINT_T0 }>(first.add(size_of::<T>() - 1));
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = value;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// XXH3-64 of the little-endian bytes of `[tag, a, x, y, 0]`, the fingerprint's layout.
    fn xxh3_of_words(words: [u64; 5]) -> u64 {
        let mut bytes = [0u8; 40];
        for (chunk, word) in bytes.chunks_exact_mut(8).zip(words) {
            chunk.copy_from_slice(&word.to_le_bytes());
        }
        xxhash_rust::xxh3::xxh3_64(&bytes)
    }

    /// Fingerprints are kept in snapshots and the state hash: a build that computed them
    /// differently would answer a resend of a key restored from a snapshot as a conflict.
    /// Pinned per request kind, at the extremes of every field, and to one literal value.
    #[test]
    fn fingerprints_never_change() {
        let flags =
            (Side::Sell as u64) | (OrderType::Limit as u64) << 8 | (TimeInForce::Ioc as u64) << 16;
        let place = RequestContent::Place {
            symbol: SymbolId(u32::MAX),
            side: Side::Sell,
            order_type: OrderType::Limit,
            tif: TimeInForce::Ioc,
            price: Price(i64::MIN),
            qty: Qty(i64::MAX),
        };
        assert_eq!(
            place.fingerprint(),
            xxh3_of_words([
                1,
                u64::from(u32::MAX) | flags << 32,
                i64::MIN as u64,
                i64::MAX as u64,
                0
            ])
        );
        let modify = RequestContent::Modify {
            order_id: OrderId(u64::MAX),
            new_qty: Qty(-1),
            new_price: Price(0),
        };
        assert_eq!(
            modify.fingerprint(),
            xxh3_of_words([4, u64::MAX, 0, u64::MAX, 0])
        );
        let all = RequestContent::CancelAll { symbol: None };
        assert_eq!(all.fingerprint(), xxh3_of_words([3, u64::MAX, 0, 0, 0]));
        let one = RequestContent::CancelAll {
            symbol: Some(SymbolId(7)),
        };
        assert_eq!(one.fingerprint(), xxh3_of_words([3, 7, 0, 0, 0]));
        let cancel = RequestContent::Cancel {
            order_id: OrderId(9),
        };
        assert_eq!(cancel.fingerprint(), 0xDDE8_62E5_521B_56A9);
    }

    #[test]
    fn keys_are_per_account_and_content_checked() {
        let mut t = KeyTable::new(100, 10);
        let place = RequestContent::Place {
            symbol: SymbolId(1),
            side: Side::Buy,
            order_type: OrderType::Limit,
            tif: TimeInForce::Day,
            price: Price(100),
            qty: Qty(1),
        };
        let other = RequestContent::Cancel {
            order_id: OrderId(1),
        };
        assert!(matches!(
            t.check(AccountId(1), ClientOrderId(7), &place),
            KeyCheck::New
        ));
        let record = KeyRecord {
            fingerprint: place.fingerprint(),
            outcome: Outcome::Accepted(OrderId(3)),
        };
        t.record(AccountId(1), ClientOrderId(7), record);
        assert!(matches!(
            t.check(AccountId(1), ClientOrderId(7), &place),
            KeyCheck::Resent(Outcome::Accepted(OrderId(3)))
        ));
        assert!(matches!(
            t.check(AccountId(1), ClientOrderId(7), &other),
            KeyCheck::Conflict
        ));
        assert!(matches!(
            t.check(AccountId(2), ClientOrderId(7), &place),
            KeyCheck::New
        ));
        // Keys below the account's high-water mark go through the lookup, pending or not.
        for k in (0..99u64).rev() {
            t.record(AccountId(5), ClientOrderId(k), record);
        }
        for k in [0u64, 50, 98] {
            assert!(matches!(
                t.check(AccountId(5), ClientOrderId(k), &place),
                KeyCheck::Resent(_)
            ));
            assert!(matches!(
                t.check(AccountId(5), ClientOrderId(k), &other),
                KeyCheck::Conflict
            ));
        }
        assert!(!t.has_room());
        assert_eq!(t.sorted().len(), 100);
        t.clear();
        assert!(t.is_empty() && t.has_room());
        assert!(matches!(
            t.check(AccountId(1), ClientOrderId(7), &place),
            KeyCheck::New
        ));
    }

    #[test]
    fn fingerprints_are_pinned_and_distinguish_fields() {
        let a = RequestContent::Modify {
            order_id: OrderId(1),
            new_qty: Qty(2),
            new_price: Price(3),
        };
        let b = RequestContent::Modify {
            order_id: OrderId(1),
            new_qty: Qty(3),
            new_price: Price(2),
        };
        assert_ne!(a.fingerprint(), b.fingerprint());
        assert_eq!(a.fingerprint(), a.fingerprint());
    }
}
