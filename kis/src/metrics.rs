//! The adapter's counters and gauges, read by the node's /metrics.
//!
//! **Invariants**: counters only grow; the breaker gauges are 0 closed, 1 half open, 2 open.
//!
//! **Performance**: relaxed atomics, one increment per frame.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

macro_rules! kis_metrics {
    ($($(#[$doc:meta])* $name:ident),* $(,)?) => {
        /// Counters and gauges of one adapter.
        #[derive(Debug, Default)]
        pub struct KisMetrics {
            $($(#[$doc])* pub $name: AtomicU64,)*
        }

        impl KisMetrics {
            /// Prometheus text, each name prefixed with `kuku_kis_`.
            pub fn render(&self, out: &mut String) {
                $(
                    let _ = writeln!(out, "kuku_kis_{} {}", stringify!($name), self.$name.load(Ordering::Relaxed));
                )*
            }
        }
    };
}

kis_metrics! {
    /// Data frames decoded.
    frames_decoded,
    /// Frames rejected (malformed, encrypted, unknown tr_id, oversized).
    frames_rejected,
    /// Records in the decoded frames.
    records_decoded,
    /// PINGPONG frames echoed.
    pingpongs,
    /// WebSocket sessions opened.
    connects,
    /// WebSocket sessions lost and reopened (drop, silence, error).
    reconnects,
    /// Subscriptions sent (resubscriptions after a reconnect included).
    subscriptions_sent,
    /// Subscriptions KIS refused.
    subscriptions_refused,
    /// Access tokens issued.
    token_issues,
    /// Tokens found expired and replaced.
    token_refreshes,
    /// Approval-key requests that failed.
    approval_failures,
    /// REST calls made and failed (each attempt).
    rest_calls,
    rest_failures,
    /// Prices obtained from the REST fallback.
    fallback_prices,
    /// Events dropped because the consumer's queue was full.
    events_dropped,
    /// Breaker gauges (0 closed, 1 half open, 2 open) and how often each opened.
    ws_breaker_state,
    rest_breaker_state,
    ws_breaker_opened,
    rest_breaker_opened,
}

impl KisMetrics {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_lists_every_metric_with_its_value() {
        let m = KisMetrics::default();
        KisMetrics::add(&m.frames_decoded, 3);
        let mut text = String::new();
        m.render(&mut text);
        assert!(text.contains("kuku_kis_frames_decoded 3\n"));
        assert!(text.contains("kuku_kis_ws_breaker_state 0\n"));
        assert_eq!(text.lines().count(), 19);
    }
}
