//! Quote age per symbol and the stale/fresh decision the node journals.
//!
//! The adapter observes when each symbol last had a quote (a stream record or a REST
//! fallback price). [`StaleTracker::transitions`] turns ages into status *changes*: a symbol
//! with no quote for `stale_after` becomes `Stale`, and `Fresh` again on its next quote. The
//! node journals each change as a command, so the engine never reads a clock and a replay of
//! the journal decides exactly what the live run decided
//! (docs/adr/ADR-023-quote-sources-breaker-and-stale-quotes.md).
//!
//! **Invariants**: a status change is reported once per change; a symbol never observed is
//! `Stale` from the start (no liquidity before the first quote) and reported as such at the
//! first call.
//!
//! **Performance**: O(symbols) per call, with symbols bounded by the session's 20.

use crate::frame::ShortCode;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Whether a symbol's quotes can be trusted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QuoteStatus {
    Fresh,
    Stale,
}

#[derive(Clone, Copy, Debug)]
struct Entry {
    last_quote: Option<Instant>,
    reported: Option<QuoteStatus>,
}

/// Quote ages and reported statuses of a fixed set of symbols.
#[derive(Clone, Debug)]
pub struct StaleTracker {
    stale_after: Duration,
    symbols: BTreeMap<ShortCode, Entry>,
}

impl StaleTracker {
    pub fn new(symbols: &[ShortCode], stale_after: Duration) -> StaleTracker {
        let entry = Entry {
            last_quote: None,
            reported: None,
        };
        StaleTracker {
            stale_after,
            symbols: symbols.iter().map(|c| (*c, entry)).collect(),
        }
    }

    /// A quote of `code` arrived at `at` (unknown symbols are ignored).
    pub fn observe(&mut self, code: ShortCode, at: Instant) {
        if let Some(e) = self.symbols.get_mut(&code) {
            e.last_quote = Some(e.last_quote.map_or(at, |prev| prev.max(at)));
        }
    }

    /// How old the last quote of `code` is at `now` (`None`: never quoted or unknown).
    pub fn age(&self, code: ShortCode, now: Instant) -> Option<Duration> {
        self.symbols
            .get(&code)?
            .last_quote
            .map(|t| now.saturating_duration_since(t))
    }

    fn status_at(&self, e: &Entry, now: Instant) -> QuoteStatus {
        match e.last_quote {
            Some(t) if now.saturating_duration_since(t) < self.stale_after => QuoteStatus::Fresh,
            _ => QuoteStatus::Stale,
        }
    }

    /// Appends every status change since the last call (symbol order).
    pub fn transitions(&mut self, now: Instant, out: &mut Vec<(ShortCode, QuoteStatus)>) {
        let codes: Vec<ShortCode> = self.symbols.keys().copied().collect();
        for code in codes {
            let e = self.symbols[&code];
            let status = self.status_at(&e, now);
            if e.reported != Some(status) {
                out.push((code, status));
                if let Some(e) = self.symbols.get_mut(&code) {
                    e.reported = Some(status);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(s: &str) -> ShortCode {
        ShortCode::parse(s).expect("code")
    }

    #[test]
    fn symbols_start_stale_and_turn_fresh_on_their_first_quote() {
        let t0 = Instant::now();
        let mut tracker = StaleTracker::new(&[code("005930")], Duration::from_secs(30));
        let mut out = Vec::new();
        tracker.transitions(t0, &mut out);
        assert_eq!(out, vec![(code("005930"), QuoteStatus::Stale)]);
        tracker.observe(code("005930"), t0);
        out.clear();
        tracker.transitions(t0, &mut out);
        assert_eq!(out, vec![(code("005930"), QuoteStatus::Fresh)]);
    }

    #[test]
    fn a_symbol_turns_stale_exactly_at_the_threshold_and_is_reported_once() {
        let t0 = Instant::now();
        let mut tracker =
            StaleTracker::new(&[code("005930"), code("000660")], Duration::from_secs(30));
        tracker.observe(code("005930"), t0);
        tracker.observe(code("000660"), t0 + Duration::from_secs(20));
        let mut out = Vec::new();
        tracker.transitions(t0, &mut out);
        out.clear();
        tracker.transitions(t0 + Duration::from_millis(29_999), &mut out);
        assert!(out.is_empty());
        tracker.transitions(t0 + Duration::from_secs(30), &mut out);
        assert_eq!(out, vec![(code("005930"), QuoteStatus::Stale)]);
        out.clear();
        tracker.transitions(t0 + Duration::from_secs(31), &mut out);
        assert!(out.is_empty(), "no repeat: {out:?}");
        assert_eq!(
            tracker.age(code("000660"), t0 + Duration::from_secs(31)),
            Some(Duration::from_secs(11))
        );
    }

    #[test]
    fn unknown_symbols_are_ignored() {
        let t0 = Instant::now();
        let mut tracker = StaleTracker::new(&[code("005930")], Duration::from_secs(1));
        tracker.observe(code("999999"), t0);
        assert_eq!(tracker.age(code("999999"), t0), None);
    }
}
