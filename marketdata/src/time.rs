//! Korean time for candles: KST is UTC+9 all year (Korea has no daylight saving time), and
//! candle intervals start on KST wall-clock boundaries.
//!
//! **Invariants**: [`Interval::start_of`] returns the largest interval start `<= ts` on the
//! KST grid; a 1d interval is one KST calendar day, 00:00 to 24:00 KST (15:00 to 15:00 UTC).
//!
//! **Performance**: integer arithmetic only.
//!
//! **Known limitations**: days are calendar days, not trading days (a weekend or holiday has
//! no ticks and so no candle; see [`crate::candle`]).

use crate::model::TimestampNs;
use serde::{Deserialize, Serialize};

/// KST's offset from UTC, in seconds.
pub const KST_OFFSET_S: i64 = 9 * 3_600;
const NS_PER_S: u64 = 1_000_000_000;

/// A candle interval.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Interval {
    #[serde(rename = "1m")]
    M1,
    #[serde(rename = "5m")]
    M5,
    #[serde(rename = "1h")]
    H1,
    #[serde(rename = "1d")]
    D1,
}

impl Interval {
    pub const ALL: [Interval; 4] = [Interval::M1, Interval::M5, Interval::H1, Interval::D1];

    pub fn seconds(self) -> u64 {
        match self {
            Interval::M1 => 60,
            Interval::M5 => 300,
            Interval::H1 => 3_600,
            Interval::D1 => 86_400,
        }
    }

    /// The name used in URLs, files and the database (`1m`, `5m`, `1h`, `1d`).
    pub fn as_str(self) -> &'static str {
        match self {
            Interval::M1 => "1m",
            Interval::M5 => "5m",
            Interval::H1 => "1h",
            Interval::D1 => "1d",
        }
    }

    pub fn parse(s: &str) -> Option<Interval> {
        Interval::ALL.into_iter().find(|i| i.as_str() == s)
    }

    /// The start of the interval holding `ts`, on the KST grid.
    pub fn start_of(self, ts: TimestampNs) -> TimestampNs {
        let len_ns = self.seconds() * NS_PER_S;
        // Shift to KST wall-clock nanoseconds, floor, shift back. Timestamps before
        // 1970-01-01 09:00 KST do not occur (the source clock is Unix time).
        let offset_ns = KST_OFFSET_S as u64 * NS_PER_S;
        let kst = ts.0.saturating_add(offset_ns);
        let start = kst - kst % len_ns;
        TimestampNs(start.saturating_sub(offset_ns))
    }

    /// The end (exclusive) of the interval starting at `start`.
    pub fn end_of(self, start: TimestampNs) -> TimestampNs {
        TimestampNs(start.0.saturating_add(self.seconds() * NS_PER_S))
    }
}

impl std::fmt::Display for Interval {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = NS_PER_S;

    #[test]
    fn a_kst_day_starts_at_15_00_utc() {
        // 2026-03-05 00:00:00 UTC = 1_772_668_800 (date -u -d 2026-03-05 +%s).
        let utc_midnight = 1_772_668_800 * S;
        // 09:00 KST on 2026-03-05 is 00:00 UTC: its KST day began 9 hours earlier.
        assert_eq!(
            Interval::D1.start_of(TimestampNs(utc_midnight)),
            TimestampNs(utc_midnight - 9 * 3_600 * S)
        );
        // One nanosecond before 15:00 UTC is still that KST day; 15:00 UTC starts the next.
        let next_kst_day = utc_midnight + 15 * 3_600 * S;
        assert_eq!(
            Interval::D1.start_of(TimestampNs(next_kst_day - 1)),
            TimestampNs(utc_midnight - 9 * 3_600 * S)
        );
        assert_eq!(
            Interval::D1.start_of(TimestampNs(next_kst_day)),
            TimestampNs(next_kst_day)
        );
    }

    #[test]
    fn minute_intervals_start_on_the_grid_and_the_extremes_do_not_overflow() {
        let t = TimestampNs(1_772_668_800 * S + 7 * 60 * S + 59 * S + 999_999_999);
        assert_eq!(Interval::M1.start_of(t).0, 1_772_668_800 * S + 7 * 60 * S);
        assert_eq!(Interval::M5.start_of(t).0, 1_772_668_800 * S + 5 * 60 * S);
        assert_eq!(Interval::H1.start_of(t).0, 1_772_668_800 * S);
        for i in Interval::ALL {
            assert_eq!(i.start_of(TimestampNs(0)), TimestampNs(0));
            // Unix time near u64::MAX saturates instead of overflowing (no panic).
            let start = i.start_of(TimestampNs(u64::MAX));
            assert!(i.end_of(start) > start);
            assert_eq!(Interval::parse(i.as_str()), Some(i));
        }
        assert_eq!(Interval::parse("2m"), None);
    }
}
