//! The request budget of an account: one token bucket per account, shared by every session
//! of the account on every door (ADR-016). `rate_per_s` tokens per second refill a bucket of
//! `burst` tokens; each request (order, cancel, modify, query) takes one. A request that finds
//! the bucket empty is refused (`9002 RateLimited`) before it reaches the node; the session
//! stays up.
//!
//! **Invariants**: `0 <= tokens <= burst`; refill is computed from elapsed time on demand (no
//! timer), in integer nano-tokens, so no drift accumulates. An account's bucket is created
//! full the first time a door asks for it and is never replaced, so opening more sessions,
//! reconnecting or switching doors neither adds to the budget nor refills it.
//!
//! **Performance**: a door fetches the account's [`AccountBudget`] once per session (a map
//! lookup under a mutex) and then pays one uncontended mutex and a few integer operations per
//! request. Memory: one bucket (about 64 bytes) per account that has logged in, bounded by the
//! engine's `accounts_max`; only authenticated accounts get one.
//!
//! **Known limitations**: buckets live in memory: a restart gives every account a full
//! bucket. Admin sessions are not limited (their requests are the operator's).

use kuku_engine::AccountId;
use rustc_hash::FxHashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

const NANOS_PER_S: u128 = 1_000_000_000;

/// One token bucket.
#[derive(Clone, Debug)]
pub struct TokenBucket {
    rate_per_s: u64,
    /// Capacity in nano-tokens (burst x 1e9).
    capacity_nano: u128,
    /// Tokens in nano-tokens.
    tokens_nano: u128,
    refilled_at: Instant,
}

impl TokenBucket {
    /// A full bucket. `rate_per_s == 0` never refills.
    pub fn new(rate_per_s: u32, burst: u32, now: Instant) -> TokenBucket {
        let capacity_nano = burst as u128 * NANOS_PER_S;
        TokenBucket {
            rate_per_s: rate_per_s as u64,
            capacity_nano,
            tokens_nano: capacity_nano,
            refilled_at: now,
        }
    }

    /// Takes one token if there is one.
    #[inline]
    pub fn try_take(&mut self, now: Instant) -> bool {
        let elapsed_ns = now.saturating_duration_since(self.refilled_at).as_nanos();
        if elapsed_ns > 0 {
            let refill = elapsed_ns.saturating_mul(self.rate_per_s as u128);
            self.tokens_nano = self
                .tokens_nano
                .saturating_add(refill)
                .min(self.capacity_nano);
            self.refilled_at = now;
        }
        if self.tokens_nano >= NANOS_PER_S {
            self.tokens_nano -= NANOS_PER_S;
            true
        } else {
            false
        }
    }
}

/// One account's budget, shared by its sessions (hold it in the session).
#[derive(Debug)]
pub struct AccountBudget(Mutex<TokenBucket>);

impl AccountBudget {
    /// Takes one request's token if the budget has one.
    #[inline]
    pub fn try_take(&self, now: Instant) -> bool {
        // A bucket is consistent after every operation (nothing in it can panic), so a lock
        // poisoned by a panic elsewhere still guards a valid bucket.
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .try_take(now)
    }
}

/// Every account's budget: the doors of a node share one (`Arc`).
#[derive(Debug)]
pub struct RateLimits {
    rate_per_s: u32,
    burst: u32,
    budgets: Mutex<FxHashMap<AccountId, Arc<AccountBudget>>>,
}

impl RateLimits {
    pub fn new(rate_per_s: u32, burst: u32) -> RateLimits {
        RateLimits {
            rate_per_s,
            burst,
            budgets: Mutex::new(FxHashMap::default()),
        }
    }

    pub fn rate_per_s(&self) -> u32 {
        self.rate_per_s
    }

    pub fn burst(&self) -> u32 {
        self.burst
    }

    /// The account's budget (full the first time it is asked for).
    pub fn budget(&self, account: AccountId, now: Instant) -> Arc<AccountBudget> {
        let mut budgets = self.budgets.lock().unwrap_or_else(PoisonError::into_inner);
        Arc::clone(budgets.entry(account).or_insert_with(|| {
            Arc::new(AccountBudget(Mutex::new(TokenBucket::new(
                self.rate_per_s,
                self.burst,
                now,
            ))))
        }))
    }

    /// Takes one token of the account's budget (a door that does not keep the budget).
    pub fn try_take(&self, account: AccountId, now: Instant) -> bool {
        self.budget(account, now).try_take(now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_burst_then_the_refill_rate() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(1_000, 10, t0);
        assert_eq!((0..20).filter(|_| b.try_take(t0)).count(), 10);
        // 5 ms at 1,000/s refills 5 tokens.
        let t1 = t0 + Duration::from_millis(5);
        assert_eq!((0..20).filter(|_| b.try_take(t1)).count(), 5);
        // A long pause refills to the burst, no more.
        let t2 = t1 + Duration::from_secs(60);
        assert_eq!((0..20).filter(|_| b.try_take(t2)).count(), 10);
    }

    #[test]
    fn every_session_and_door_of_an_account_draws_on_one_budget() {
        let t0 = Instant::now();
        let limits = RateLimits::new(1_000, 10);
        let (a, b) = (AccountId(1), AccountId(2));
        let first = limits.budget(a, t0);
        let second = limits.budget(a, t0);
        assert!(Arc::ptr_eq(&first, &second), "one budget per account");
        // Two sessions and a door that does not keep the budget: 10 tokens between them.
        let taken = (0..5).filter(|_| first.try_take(t0)).count()
            + (0..5).filter(|_| second.try_take(t0)).count()
            + (0..5).filter(|_| limits.try_take(a, t0)).count();
        assert_eq!(taken, 10);
        // A session opened later gets the same empty budget, not a fresh one.
        assert!(!limits.budget(a, t0).try_take(t0));
        // Another account is not affected.
        assert_eq!((0..20).filter(|_| limits.try_take(b, t0)).count(), 10);
        // The refill is the account's rate, whoever takes it.
        let t1 = t0 + Duration::from_millis(3);
        assert_eq!((0..20).filter(|_| second.try_take(t1)).count(), 3);
    }
}
