//! The replay history: each account's most recent sequenced messages, kept so that a client
//! reconnecting with its last seen per-account sequence number gets what it missed
//! (SoupBinTCP-style), on this node or, after a restart, rebuilt from the journal.
//!
//! **Epochs**: after a failover the new primary's sequence numbers continue in a new epoch's
//! range (`kuku_engine::epochs`); the history remembers, per account, the last sequence number
//! it had before each epoch began ([`History::mark_epoch`]), which tells a client whose last
//! seen number lies in a lost tail ([`History::diverged`]).
//!
//! **Bounds**: at most `per_account_max` messages per account and `total_max` in all; when
//! the total is exceeded the globally oldest message is dropped. A client that asks for
//! more than is held gets what is held and learns of the gap from LoginAccepted
//! (`replay_first_seq > last_seen + 1`); it then resynchronizes with queries.
//!
//! **Invariants**: each account's messages are held in increasing, gap-free `acct_seq`
//! order (the engine assigns them densely and the gateway sees them in order);
//! `len() <= total_max`.
//!
//! **Performance**: O(1) per push (amortized); memory is about 150 bytes per held message (1,000,000 held: about 150 MB).

use crate::protocol::Message;
use kuku_engine::AccountId;
use rustc_hash::FxHashMap;
use std::collections::VecDeque;

pub struct History {
    per_account_max: usize,
    total_max: usize,
    accounts: FxHashMap<AccountId, VecDeque<(u64, Message)>>,
    /// Push order over all accounts; entries whose message was already dropped (by the
    /// per-account bound) are skipped when they reach the front.
    order: VecDeque<(AccountId, u64)>,
    held: usize,
    /// Per account: (an epoch's id floor, the account's last sequence number before it),
    /// oldest first, at most [`EPOCH_MARKS_PER_ACCOUNT_MAX`].
    epochs: FxHashMap<AccountId, Vec<(u64, u64)>>,
}

/// Epoch beginnings remembered per account (failovers are rare; older ones are forgotten).
pub const EPOCH_MARKS_PER_ACCOUNT_MAX: usize = 8;

impl History {
    pub fn new(per_account_max: usize, total_max: usize) -> History {
        History {
            per_account_max: per_account_max.max(1),
            total_max: total_max.max(1),
            accounts: FxHashMap::default(),
            order: VecDeque::new(),
            held: 0,
            epochs: FxHashMap::default(),
        }
    }

    /// Records that an epoch whose sequence numbers start above `floor` began after
    /// `account`'s sequence number `last_before`.
    pub fn mark_epoch(&mut self, account: AccountId, floor: u64, last_before: u64) {
        let marks = self.epochs.entry(account).or_default();
        if marks.last().is_some_and(|(f, _)| *f >= floor) {
            return;
        }
        if marks.len() >= EPOCH_MARKS_PER_ACCOUNT_MAX {
            marks.remove(0);
        }
        marks.push((floor, last_before));
    }

    /// For a client of `account` whose last seen sequence number is `last_seen`: if that
    /// number lies after the last one this node issued before the next epoch began (so the
    /// client saw messages of a tail this node never had), the number to replay from.
    /// `None`: nothing known against it.
    pub fn diverged(&self, account: AccountId, last_seen: u64) -> Option<u64> {
        if last_seen == 0 {
            return None;
        }
        let marks = self.epochs.get(&account)?;
        let &(_, last_before) = marks.iter().find(|(floor, _)| *floor > last_seen)?;
        (last_seen > last_before).then_some(last_before)
    }

    /// Records `account`'s message with sequence number `acct_seq`.
    pub fn push(&mut self, account: AccountId, acct_seq: u64, message: Message) {
        let held = self.accounts.entry(account).or_default();
        debug_assert!(held.back().is_none_or(|(s, _)| *s < acct_seq));
        held.push_back((acct_seq, message));
        self.held += 1;
        if held.len() > self.per_account_max {
            held.pop_front();
            self.held -= 1;
        }
        self.order.push_back((account, acct_seq));
        while self.order.len() > self.total_max {
            let Some((a, s)) = self.order.pop_front() else {
                break;
            };
            if let Some(q) = self.accounts.get_mut(&a) {
                if q.front().is_some_and(|(front, _)| *front == s) {
                    q.pop_front();
                    self.held -= 1;
                }
                if q.is_empty() {
                    self.accounts.remove(&a);
                }
            }
        }
        debug_assert!(self.held <= self.total_max);
    }

    /// The held messages of `account` after `after_seq`, oldest first.
    pub fn after(
        &self,
        account: AccountId,
        after_seq: u64,
    ) -> impl Iterator<Item = (u64, &Message)> {
        let held = self.accounts.get(&account);
        let start = held.map_or(0, |q| q.partition_point(|(s, _)| *s <= after_seq));
        held.into_iter()
            .flat_map(move |q| q.range(start..))
            .map(|(s, m)| (*s, m))
    }

    /// Messages held in all.
    pub fn len(&self) -> usize {
        self.held
    }

    pub fn is_empty(&self) -> bool {
        self.held == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::Heartbeat;

    fn msg() -> Message {
        Message::Heartbeat(Heartbeat {})
    }

    #[test]
    fn a_seq_in_a_lost_tail_is_found_through_the_epoch_marks() {
        let mut h = History::new(10, 100);
        let floor = 1 << 40;
        h.mark_epoch(AccountId(1), floor, 7);
        // 8 and 9 were issued by the old primary only.
        assert_eq!(h.diverged(AccountId(1), 9), Some(7));
        assert_eq!(h.diverged(AccountId(1), 8), Some(7));
        assert_eq!(h.diverged(AccountId(1), 7), None);
        assert_eq!(h.diverged(AccountId(1), 3), None);
        assert_eq!(h.diverged(AccountId(1), floor + 2), None);
        assert_eq!(h.diverged(AccountId(1), 0), None);
        assert_eq!(h.diverged(AccountId(2), 9), None);
        // A second failover: its own mark decides for seqs of the middle epoch.
        h.mark_epoch(AccountId(1), 2 * floor, floor + 5);
        assert_eq!(h.diverged(AccountId(1), floor + 6), Some(floor + 5));
        assert_eq!(h.diverged(AccountId(1), floor + 5), None);
        assert_eq!(h.diverged(AccountId(1), 9), Some(7));
    }

    #[test]
    fn replays_after_a_seq_within_both_bounds() {
        let mut h = History::new(3, 5);
        for s in 1..=4 {
            h.push(AccountId(1), s, msg());
        }
        // Per-account bound: 2, 3, 4 held.
        let seqs: Vec<u64> = h.after(AccountId(1), 0).map(|(s, _)| s).collect();
        assert_eq!(seqs, [2, 3, 4]);
        let seqs: Vec<u64> = h.after(AccountId(1), 3).map(|(s, _)| s).collect();
        assert_eq!(seqs, [4]);
        for s in 1..=3 {
            h.push(AccountId(2), s, msg());
        }
        // Total bound 5: the globally oldest held (account 1's seq 2) went.
        assert_eq!(h.len(), 5);
        let seqs: Vec<u64> = h.after(AccountId(1), 0).map(|(s, _)| s).collect();
        assert_eq!(seqs, [3, 4]);
        assert_eq!(h.after(AccountId(9), 0).count(), 0);
        for s in 4..=100 {
            h.push(AccountId(2), s, msg());
        }
        assert!(h.len() <= 5);
        assert_eq!(h.after(AccountId(1), 0).count(), 0);
    }
}
