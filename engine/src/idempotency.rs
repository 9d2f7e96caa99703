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
//! **Performance**: one FxHash lookup per request; the map is preallocated with `keys_max`
//! entries and cleared (not freed) at StartOfDay.

use crate::reject::RejectReason;
use crate::types::TimeInForce;
use crate::types::{AccountId, ClientOrderId, OrderId, OrderType, Price, Qty, Side, SymbolId};
use rustc_hash::FxHashMap;
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

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct KeyRecord {
    pub content: RequestContent,
    pub outcome: Outcome,
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

pub struct KeyTable {
    map: FxHashMap<(AccountId, ClientOrderId), KeyRecord>,
    keys_max: usize,
}

impl KeyTable {
    pub fn new(keys_max: u32) -> KeyTable {
        let mut map = FxHashMap::default();
        map.reserve(keys_max as usize);
        KeyTable {
            map,
            keys_max: keys_max as usize,
        }
    }

    #[inline]
    pub fn check(
        &self,
        account: AccountId,
        key: ClientOrderId,
        content: &RequestContent,
    ) -> KeyCheck {
        match self.map.get(&(account, key)) {
            None => KeyCheck::New,
            Some(r) if r.content == *content => KeyCheck::Resent(r.outcome),
            Some(_) => KeyCheck::Conflict,
        }
    }

    /// True if the global table has room for one more key.
    #[inline]
    pub fn has_room(&self) -> bool {
        self.map.len() < self.keys_max
    }

    #[inline]
    pub fn record(&mut self, account: AccountId, key: ClientOrderId, record: KeyRecord) {
        debug_assert!(self.has_room());
        self.map.insert((account, key), record);
    }

    /// Forgets every key (StartOfDay). Keeps the memory.
    pub fn clear(&mut self) {
        self.map.clear();
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// All keys, sorted (for snapshots and the state hash).
    pub fn sorted(&self) -> Vec<((AccountId, ClientOrderId), KeyRecord)> {
        let mut v: Vec<_> = self.map.iter().map(|(k, r)| (*k, *r)).collect();
        v.sort_unstable_by_key(|(k, _)| *k);
        v
    }
}
