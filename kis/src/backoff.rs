//! Exponential backoff with full jitter between retries and reconnects: attempt `n` waits a
//! uniformly random time in `[0, min(max, base * 2^n)]`, so a fleet of nodes that lost KIS at
//! the same moment does not come back at the same moment.
//!
//! **Invariants**: every delay is at most `max`; the ceiling never decreases until `reset`.
//!
//! **Performance**: O(1), no allocation; the generator is seeded, so tests are repeatable.

use std::time::Duration;

#[derive(Clone, Debug)]
pub struct Backoff {
    base: Duration,
    max: Duration,
    attempt: u32,
    rng: fastrand::Rng,
}

impl Backoff {
    pub fn new(base: Duration, max: Duration, seed: u64) -> Backoff {
        assert!(base <= max, "the backoff base must not exceed its maximum");
        Backoff {
            base,
            max,
            attempt: 0,
            rng: fastrand::Rng::with_seed(seed),
        }
    }

    /// The ceiling of the next delay, before jitter.
    pub fn ceiling(&self) -> Duration {
        let factor = 1u32.checked_shl(self.attempt.min(20)).unwrap_or(u32::MAX);
        self.base.saturating_mul(factor).min(self.max)
    }

    /// The next delay (and one more attempt counted).
    pub fn next_delay(&mut self) -> Duration {
        let ceiling_ms = u64::try_from(self.ceiling().as_millis()).unwrap_or(u64::MAX);
        self.attempt = self.attempt.saturating_add(1);
        Duration::from_millis(self.rng.u64(0..=ceiling_ms))
    }

    pub fn attempts(&self) -> u32 {
        self.attempt
    }

    /// After a success: the next failure starts from `base` again.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ceiling_doubles_up_to_the_maximum() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(1000), 7);
        let mut ceilings = Vec::new();
        for _ in 0..6 {
            ceilings.push(b.ceiling().as_millis());
            b.next_delay();
        }
        assert_eq!(ceilings, vec![100, 200, 400, 800, 1000, 1000]);
    }

    #[test]
    fn delays_never_exceed_their_ceiling_and_are_jittered() {
        let mut b = Backoff::new(Duration::from_millis(50), Duration::from_millis(400), 42);
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..200 {
            let ceiling = b.ceiling();
            let d = b.next_delay();
            assert!(d <= ceiling);
            seen.insert(d.as_millis());
        }
        assert!(
            seen.len() > 50,
            "full jitter spreads the delays, got {} distinct",
            seen.len()
        );
    }

    #[test]
    fn reset_starts_from_the_base_again() {
        let mut b = Backoff::new(Duration::from_millis(10), Duration::from_secs(1), 1);
        for _ in 0..5 {
            b.next_delay();
        }
        b.reset();
        assert_eq!(b.ceiling(), Duration::from_millis(10));
        assert_eq!(b.attempts(), 0);
    }

    #[test]
    fn huge_attempt_counts_saturate_at_the_maximum() {
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(30), 3);
        for _ in 0..100 {
            assert!(b.next_delay() <= Duration::from_secs(30));
        }
        assert_eq!(b.ceiling(), Duration::from_secs(30));
    }
}
