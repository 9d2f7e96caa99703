//! Identifier ranges per replication epoch: after a failover, order ids, trade ids,
//! transaction ids and per-account sequence numbers continue above anything the old primary
//! could have issued, so a lost (unreplicated) tail can never give an old identifier a new
//! meaning.
//!
//! Epoch `e` owns the identifiers from `e << 40` on (epoch 0: from 1). A promoted primary
//! journals [`crate::Command::BeginEpoch`] as its first command; applying it raises every id
//! counter, and every account's sequence number, to the epoch's floor (never lowers one). An
//! account opened later starts its sequence numbers at the floor of the epoch it is opened in,
//! which the engine reads off its own transaction-id counter (no extra state, so snapshots and
//! state hashes of journals without a `BeginEpoch` are unchanged).
//!
//! **Invariants**: `epoch_floor(e) + 2^40 <= 2^62` for every accepted epoch, so ids stay far
//! below `i64::MAX` (the query store's BIGINT) even after 2^40 increments in one epoch.
//!
//! **Performance**: nothing per command; `BeginEpoch` is O(accounts) once per promotion, and
//! opening an account reads one counter more.
//!
//! **Known limitations**: account and symbol ids index the engine's tables and are not
//! tagged: an account opened in a lost tail can get its id reissued to another owner on the
//! new primary (OpenAccount is idempotent by owner, so resending it learns the new id). An
//! epoch that issues 2^40 ids of one kind runs into the next epoch's range.

/// Bits of an identifier below the epoch tag.
pub const EPOCH_ID_SHIFT: u32 = 40;

/// The largest epoch whose identifier range fits (`2^22 - 1`).
pub const EPOCH_MAX: u64 = (1 << 22) - 1;

/// The first identifier of epoch `epoch` (0 for epoch 0); `None` beyond [`EPOCH_MAX`].
#[inline]
pub fn epoch_floor(epoch: u64) -> Option<u64> {
    (epoch <= EPOCH_MAX).then_some(epoch << EPOCH_ID_SHIFT)
}

/// The epoch an identifier or sequence number was issued in.
#[inline]
pub fn epoch_of(id: u64) -> u64 {
    id >> EPOCH_ID_SHIFT
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floors_tag_ids_with_their_epoch_and_stay_below_i64_max() {
        assert_eq!(epoch_floor(0), Some(0));
        assert_eq!(epoch_floor(1), Some(1 << 40));
        assert_eq!(epoch_of(1 << 40), 1);
        assert_eq!(epoch_of((1 << 40) - 1), 0);
        let last = epoch_floor(EPOCH_MAX).unwrap();
        assert!(last + (1 << EPOCH_ID_SHIFT) <= 1 << 62);
        assert_eq!(epoch_floor(EPOCH_MAX + 1), None);
        assert_eq!(epoch_floor(u64::MAX), None);
    }
}
