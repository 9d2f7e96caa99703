//! A circuit breaker around every KIS call: after `failures_max` consecutive failures it
//! opens and refuses calls for `open_for`; then it lets `half_open_probes_max` probe calls
//! through, closing on a success and opening again on a failure.
//!
//! Why a small state machine rather than a crate: docs/adr/ADR-023-quote-sources-breaker-and-stale-quotes.md
//! (the maintained crates either wrap futures with their own timers, which hides the clock
//! from tests, or pull in a metrics stack; this one takes `now` as an argument, so every
//! transition is tested without sleeping).
//!
//! **Invariants**: `Open` lasts at least `open_for` from the failure that opened it; a
//! `HalfOpen` breaker never has more than `half_open_probes_max` calls in flight; a success
//! in any state closes the breaker and resets the failure count.
//!
//! **Performance**: O(1), no allocation.
//!
//! **Known limitations**: one breaker guards one dependency (the adapter keeps one for REST
//! and one for the WebSocket); failures are counted, not rated over a window.

use std::time::{Duration, Instant};

/// Breaker settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BreakerConfig {
    /// Consecutive failures that open the breaker.
    pub failures_max: u32,
    /// How long an open breaker refuses calls before it lets a probe through.
    pub open_for: Duration,
    /// Calls let through while half open.
    pub half_open_probes_max: u32,
}

impl Default for BreakerConfig {
    fn default() -> BreakerConfig {
        BreakerConfig {
            failures_max: 5,
            open_for: Duration::from_secs(10),
            half_open_probes_max: 1,
        }
    }
}

/// The state a breaker is in, as /metrics shows it (0 closed, 1 half open, 2 open).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BreakerState {
    Closed,
    HalfOpen,
    Open,
}

impl BreakerState {
    pub fn as_gauge(self) -> u64 {
        match self {
            BreakerState::Closed => 0,
            BreakerState::HalfOpen => 1,
            BreakerState::Open => 2,
        }
    }
}

#[derive(Clone, Copy, Debug)]
enum Inner {
    Closed { failures: u32 },
    Open { until: Instant },
    HalfOpen { probes_in_flight: u32 },
}

/// The breaker. Every call is `allow` then exactly one of `on_success` / `on_failure`.
#[derive(Clone, Debug)]
pub struct CircuitBreaker {
    config: BreakerConfig,
    inner: Inner,
    opened_total: u64,
}

impl CircuitBreaker {
    pub fn new(config: BreakerConfig) -> CircuitBreaker {
        assert!(
            config.failures_max >= 1,
            "a breaker must allow at least one failure"
        );
        assert!(
            config.half_open_probes_max >= 1,
            "a half-open breaker must let a probe through"
        );
        CircuitBreaker {
            config,
            inner: Inner::Closed { failures: 0 },
            opened_total: 0,
        }
    }

    /// The state at `now` (an open breaker whose time is up reads as half open).
    pub fn state(&self, now: Instant) -> BreakerState {
        match self.inner {
            Inner::Closed { .. } => BreakerState::Closed,
            Inner::Open { until } if now >= until => BreakerState::HalfOpen,
            Inner::Open { .. } => BreakerState::Open,
            Inner::HalfOpen { .. } => BreakerState::HalfOpen,
        }
    }

    /// How many times the breaker has opened.
    pub fn opened_total(&self) -> u64 {
        self.opened_total
    }

    /// Whether a call may go out at `now`; a `true` must be followed by one outcome.
    pub fn allow(&mut self, now: Instant) -> bool {
        match self.inner {
            Inner::Closed { .. } => true,
            Inner::Open { until } if now < until => false,
            Inner::Open { .. } => {
                self.inner = Inner::HalfOpen {
                    probes_in_flight: 1,
                };
                true
            }
            Inner::HalfOpen { probes_in_flight } => {
                if probes_in_flight < self.config.half_open_probes_max {
                    self.inner = Inner::HalfOpen {
                        probes_in_flight: probes_in_flight + 1,
                    };
                    true
                } else {
                    false
                }
            }
        }
    }

    /// How long until an open breaker lets a probe through (zero if it would now).
    pub fn retry_after(&self, now: Instant) -> Duration {
        match self.inner {
            Inner::Open { until } => until.saturating_duration_since(now),
            _ => Duration::ZERO,
        }
    }

    pub fn on_success(&mut self) {
        self.inner = Inner::Closed { failures: 0 };
    }

    pub fn on_failure(&mut self, now: Instant) {
        self.inner = match self.inner {
            Inner::Closed { failures } if failures + 1 < self.config.failures_max => {
                Inner::Closed {
                    failures: failures + 1,
                }
            }
            Inner::Closed { .. } | Inner::HalfOpen { .. } => self.open(now),
            // A late outcome of a call let through before the breaker opened.
            Inner::Open { until } => Inner::Open { until },
        };
    }

    fn open(&mut self, now: Instant) -> Inner {
        self.opened_total += 1;
        Inner::Open {
            until: now + self.config.open_for,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker() -> CircuitBreaker {
        CircuitBreaker::new(BreakerConfig {
            failures_max: 3,
            open_for: Duration::from_secs(10),
            half_open_probes_max: 1,
        })
    }

    #[test]
    fn stays_closed_below_the_failure_threshold() {
        let mut b = breaker();
        let t0 = Instant::now();
        for _ in 0..2 {
            assert!(b.allow(t0));
            b.on_failure(t0);
        }
        assert_eq!(b.state(t0), BreakerState::Closed);
        assert!(b.allow(t0));
    }

    #[test]
    fn opens_after_consecutive_failures_and_refuses_calls() {
        let mut b = breaker();
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(b.allow(t0));
            b.on_failure(t0);
        }
        assert_eq!(b.state(t0), BreakerState::Open);
        assert!(!b.allow(t0 + Duration::from_secs(9)));
        assert_eq!(
            b.retry_after(t0 + Duration::from_secs(4)),
            Duration::from_secs(6)
        );
        assert_eq!(b.opened_total(), 1);
    }

    #[test]
    fn a_success_resets_the_failure_count() {
        let mut b = breaker();
        let t0 = Instant::now();
        b.on_failure(t0);
        b.on_failure(t0);
        b.on_success();
        b.on_failure(t0);
        b.on_failure(t0);
        assert_eq!(b.state(t0), BreakerState::Closed);
    }

    #[test]
    fn half_open_lets_one_probe_through_and_closes_on_success() {
        let mut b = breaker();
        let t0 = Instant::now();
        for _ in 0..3 {
            b.on_failure(t0);
        }
        let later = t0 + Duration::from_secs(10);
        assert_eq!(b.state(later), BreakerState::HalfOpen);
        assert!(b.allow(later));
        assert!(
            !b.allow(later),
            "a second probe waits for the first one's outcome"
        );
        b.on_success();
        assert_eq!(b.state(later), BreakerState::Closed);
        assert!(b.allow(later));
    }

    #[test]
    fn a_failed_probe_opens_the_breaker_again_for_a_full_period() {
        let mut b = breaker();
        let t0 = Instant::now();
        for _ in 0..3 {
            b.on_failure(t0);
        }
        let probe_at = t0 + Duration::from_secs(11);
        assert!(b.allow(probe_at));
        b.on_failure(probe_at);
        assert_eq!(b.state(probe_at), BreakerState::Open);
        assert!(!b.allow(probe_at + Duration::from_secs(9)));
        assert!(b.allow(probe_at + Duration::from_secs(10)));
        assert_eq!(b.opened_total(), 2);
    }

    #[test]
    fn a_late_failure_does_not_extend_an_open_breaker() {
        let mut b = breaker();
        let t0 = Instant::now();
        for _ in 0..3 {
            b.on_failure(t0);
        }
        b.on_failure(t0 + Duration::from_secs(5));
        assert_eq!(
            b.state(t0 + Duration::from_secs(10)),
            BreakerState::HalfOpen
        );
    }

    #[test]
    fn gauge_values_are_stable() {
        assert_eq!(BreakerState::Closed.as_gauge(), 0);
        assert_eq!(BreakerState::HalfOpen.as_gauge(), 1);
        assert_eq!(BreakerState::Open.as_gauge(), 2);
    }
}
