//! A token bucket per session: `rate_per_s` tokens per second refill a bucket of `burst`
//! tokens; each request takes one. A request that finds the bucket empty is rejected
//! (RateLimited) without touching the node, and the session stays up.
//!
//! **Invariants**: `0 <= tokens <= burst`; refill is computed from elapsed time on demand
//! (no timer), in integer nano-tokens, so no drift accumulates.

use std::time::Instant;

const NANOS_PER_S: u128 = 1_000_000_000;

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
}
