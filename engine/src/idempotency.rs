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
/// (cleared whole at StartOfDay). Its pages are touched at construction so no first-touch
/// page fault lands on the processor thread later.
pub struct KeyTable {
    slots: Vec<Slot>,
    shift: u32,
    mask: usize,
    len: usize,
    keys_max: usize,
}

impl KeyTable {
    pub fn new(keys_max: u32) -> KeyTable {
        let capacity = (keys_max.max(1) as usize * 2).next_power_of_two().max(16);
        let mut slots = vec![EMPTY; capacity];
        prefault(&mut slots);
        KeyTable {
            slots,
            shift: 64 - capacity.trailing_zeros(),
            mask: capacity - 1,
            len: 0,
            keys_max: keys_max as usize,
        }
    }

    #[inline]
    fn home(&self, account: AccountId, key: ClientOrderId) -> usize {
        let k = key.0 ^ u64::from(account.0).rotate_left(40);
        (k.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> self.shift) as usize
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
    pub fn check(
        &self,
        account: AccountId,
        key: ClientOrderId,
        content: &RequestContent,
    ) -> KeyCheck {
        let s = &self.slots[self.find(account, key)];
        if s.account == 0 {
            KeyCheck::New
        } else if s.record.fingerprint == content.fingerprint() {
            KeyCheck::Resent(s.record.outcome)
        } else {
            KeyCheck::Conflict
        }
    }

    /// True if the global table has room for one more key.
    #[inline]
    pub fn has_room(&self) -> bool {
        self.len < self.keys_max
    }

    #[inline]
    pub fn record(&mut self, account: AccountId, key: ClientOrderId, record: KeyRecord) {
        debug_assert!(self.has_room() && account.0 != 0);
        let i = self.find(account, key);
        if self.slots[i].account == 0 {
            self.len += 1;
        }
        self.slots[i] = Slot {
            account: account.0,
            key: key.0,
            record,
        };
    }

    /// Forgets every key (StartOfDay). Keeps the memory.
    pub fn clear(&mut self) {
        if self.len > 0 {
            self.slots.fill(EMPTY);
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
            .filter(|s| s.account != 0)
            .map(|s| ((AccountId(s.account), ClientOrderId(s.key)), s.record))
            .collect();
        v.sort_unstable_by_key(|(k, _)| *k);
        v
    }
}

/// Writes one byte per 4 KiB page so the OS maps the memory now, not on the hot path.
pub(crate) fn prefault<T: Copy>(items: &mut [T]) {
    let bytes = std::mem::size_of_val(items);
    let base = items.as_mut_ptr() as *mut u8;
    let mut offset = 0;
    while offset < bytes {
        // SAFETY: `offset < bytes` stays inside the slice's allocation; writing back the
        // byte that is there changes nothing but forces the page to be mapped.
        unsafe {
            let p = base.add(offset);
            std::ptr::write_volatile(p, std::ptr::read_volatile(p));
        }
        offset += 4_096;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_per_account_and_content_checked() {
        let mut t = KeyTable::new(100);
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
        for k in 0..99u64 {
            t.record(AccountId(5), ClientOrderId(k), record);
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
