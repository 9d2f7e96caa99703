//! The replay history: each account's most recent sequenced messages, kept so that a client
//! reconnecting with its last seen per-account sequence number gets what it missed
//! (SoupBinTCP-style), on this node or, after a restart, rebuilt from the journal.
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
}

impl History {
    pub fn new(per_account_max: usize, total_max: usize) -> History {
        History {
            per_account_max: per_account_max.max(1),
            total_max: total_max.max(1),
            accounts: FxHashMap::default(),
            order: VecDeque::new(),
            held: 0,
        }
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
