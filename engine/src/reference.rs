//! Reference data: symbols, KRX tick sizes and the daily price band.
//!
//! The KRX tick table (KRW): <2,000: 1; <5,000: 5; <20,000: 10; <50,000: 50; <200,000: 100;
//! <500,000: 500; >=500,000: 1,000. The daily band follows KRX's published method: the limit
//! width is base x 0.3 truncated to the tick size *of the base price*; the upper limit is
//! base + width truncated to the tick size at that price; the lower limit is base - width.
//! Example: base 21,050 (tick 50): width 6,315 -> 6,300, upper 27,350, lower 14,750.
//!
//! Prices map to a dense *tick index* (0 for price 0, 1 for the first tick above, ...), which
//! is monotonic in price; the book's direct-indexed ladder uses it.
//!
//! **Invariants**
//! - `tick_index` and `price_at_index` are inverse on every on-grid price > 0.
//! - A band's limits are on the grid and `lower <= base <= upper`, `lower >= tick(lower)`.
//!
//! **Performance**: tick lookups are a short linear scan over 7 table rows (branch-predicted).
//!
//! **Known limitations**: the band percentage is fixed at 30% (KRX since 2015).

use crate::limits::{PRICE_MAX, QTY_MAX};
use crate::types::{Market, Price, Qty, SymbolCode, SymbolId, SymbolName};
use serde::{Deserialize, Serialize};

/// KRX tick table: (upper bound exclusive, tick). The last row has no upper bound.
const KRX_TICKS: [(i64, i64); 7] = [
    (2_000, 1),
    (5_000, 5),
    (20_000, 10),
    (50_000, 50),
    (200_000, 100),
    (500_000, 500),
    (i64::MAX, 1_000),
];

/// The daily limit as a fraction: 30 / 100.
const BAND_PERCENT: i64 = 30;

/// How prices are quantized for a symbol.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum TickRule {
    /// The KRX equity table (tick depends on the price).
    Krx,
    /// One tick for every price (other markets and tests). Must be > 0.
    Fixed(i64),
}

impl TickRule {
    /// The tick size at `price` (for the KRX table: the row the price falls in).
    #[inline]
    pub fn tick_at(self, price: Price) -> i64 {
        match self {
            TickRule::Fixed(t) => t,
            // The first row whose bound lies above the price; the last row has none (any price
            // at or above 500,000, i64::MAX included).
            TickRule::Krx => KRX_TICKS
                .iter()
                .find(|(end, _)| price.0 < *end)
                .map_or(KRX_TICKS[KRX_TICKS.len() - 1].1, |row| row.1),
        }
    }

    /// True if `price` > 0 lies on this rule's grid.
    #[inline]
    pub fn is_on_grid(self, price: Price) -> bool {
        price.0 > 0 && price.0 % self.tick_at(price) == 0
    }

    /// Truncates `price` down to the grid at that price.
    #[inline]
    pub fn floor_to_grid(self, price: Price) -> Price {
        let t = self.tick_at(price);
        Price(price.0 - price.0.rem_euclid(t))
    }

    /// Dense index of an on-grid price: monotonic, `index(p + tick) == index(p) + 1`.
    ///
    /// On the matching hot path (every level lookup of a direct ladder), so its arithmetic is
    /// explicit rather than overflow-checked: a fixed tick is > 0 (validated at
    /// registration), and in the KRX table `price - row.start` is >= 0 for every price of a
    /// row but the first row's negative ones (whose start is 0), so neither the division nor
    /// the subtraction can overflow; the sum is at most the price itself.
    #[inline]
    pub fn tick_index(self, price: Price) -> i64 {
        match self {
            TickRule::Fixed(t) => price.0.wrapping_div(t),
            TickRule::Krx => {
                let row = krx_row_of(|row| price.0 < row.end);
                row.index
                    .wrapping_add(price.0.wrapping_sub(row.start).wrapping_div(row.tick))
            }
        }
    }

    /// Inverse of [`TickRule::tick_index`] (saturating far beyond any price).
    #[inline]
    pub fn price_at_index(self, index: i64) -> Price {
        match self {
            TickRule::Fixed(t) => Price(index.saturating_mul(t)),
            TickRule::Krx => {
                let row = krx_row_of(|row| index < row.index_end);
                Price(
                    row.start
                        .saturating_add(index.saturating_sub(row.index).saturating_mul(row.tick)),
                )
            }
        }
    }
}

/// A row of the KRX table with its place on the dense tick index.
#[derive(Clone, Copy)]
struct KrxRow {
    /// The row's prices: `start..end` (the last row: `start..`).
    start: i64,
    end: i64,
    tick: i64,
    /// The index of `start`, and of the next row's start.
    index: i64,
    index_end: i64,
}

/// `KRX_TICKS` with each row's start and index, computed once at compile time.
const KRX_ROWS: [KrxRow; 7] = {
    let mut rows = [KrxRow {
        start: 0,
        end: 0,
        tick: 1,
        index: 0,
        index_end: 0,
    }; 7];
    let (mut i, mut start, mut index) = (0, 0i64, 0i64);
    while i < KRX_TICKS.len() {
        let (end, tick) = KRX_TICKS[i];
        let last = i + 1 == KRX_TICKS.len();
        let index_end = if last {
            i64::MAX
        } else {
            index + (end - start) / tick
        };
        rows[i] = KrxRow {
            start,
            end,
            tick,
            index,
            index_end,
        };
        start = end;
        index = index_end;
        i += 1;
    }
    rows
};

/// The first row `inside` accepts, else the last (unbounded) row.
#[inline]
fn krx_row_of(inside: impl Fn(&KrxRow) -> bool) -> KrxRow {
    let last = KRX_ROWS[KRX_ROWS.len() - 1];
    *KRX_ROWS[..KRX_ROWS.len() - 1]
        .iter()
        .find(|row| inside(row))
        .unwrap_or(&last)
}

/// The daily price limits of a symbol.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PriceBand {
    pub lower: Price,
    pub upper: Price,
}

impl PriceBand {
    /// The +-30% band around `base` by KRX's method; `None` if `base` is not a positive,
    /// on-grid price or the computation overflows.
    pub fn krx(rule: TickRule, base: Price) -> Option<PriceBand> {
        if !rule.is_on_grid(base) {
            return None;
        }
        let raw_width = base.0.checked_mul(BAND_PERCENT)? / 100;
        let base_tick = rule.tick_at(base);
        let width = raw_width - raw_width % base_tick;
        let upper = rule.floor_to_grid(Price(base.0.checked_add(width)?));
        // Finer tick rows divide coarser ones (1 | 5 | 10 | 50 | 100 | 500 | 1,000) and the
        // width is a multiple of the base's tick, so `base - width` is on the grid already.
        let lower = Price(base.0 - width);
        debug_assert!(rule.is_on_grid(lower) && rule.is_on_grid(upper));
        Some(PriceBand { lower, upper })
    }

    #[inline]
    pub fn contains(&self, price: Price) -> bool {
        price >= self.lower && price <= self.upper
    }
}

/// Everything the engine knows about one symbol.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Symbol {
    pub id: SymbolId,
    pub code: SymbolCode,
    pub name: SymbolName,
    pub market: Market,
    pub tick_rule: TickRule,
    /// Whether the symbol has a daily +-30% band (KRX equities do).
    pub banded: bool,
    /// The base price for today's band (the previous official close).
    pub base_price: Price,
    /// Today's band, if `banded`.
    pub band: Option<PriceBand>,
    pub lot_size: Qty,
    /// The last trade price (any participant), or `None` before the first trade.
    pub last_trade_price: Option<Price>,
}

/// Validation errors of `RegisterSymbol` and `StartOfDay` input, mapped to reject reasons.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReferenceError {
    InvalidCode,
    /// A base price or fixed tick above `PRICE_MAX`, or a lot size above `QTY_MAX`.
    OutOfRange,
    InvalidTickRule,
    InvalidBasePrice,
    InvalidLotSize,
}

/// Checks a symbol code: 1..=12 ASCII alphanumerics.
pub fn validate_code(code: &SymbolCode) -> Result<(), ReferenceError> {
    let s = code.as_str();
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(ReferenceError::InvalidCode);
    }
    Ok(())
}

/// Checks a tick rule, a base price against it and a lot size.
pub fn validate_pricing(rule: TickRule, base: Price, lot: Qty) -> Result<(), ReferenceError> {
    if let TickRule::Fixed(t) = rule {
        if t <= 0 {
            return Err(ReferenceError::InvalidTickRule);
        }
        if t > PRICE_MAX {
            return Err(ReferenceError::OutOfRange);
        }
    }
    if base.0 > PRICE_MAX || lot.0 > QTY_MAX {
        return Err(ReferenceError::OutOfRange);
    }
    if !rule.is_on_grid(base) {
        return Err(ReferenceError::InvalidBasePrice);
    }
    if lot.0 <= 0 {
        return Err(ReferenceError::InvalidLotSize);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn krx_tick_table_boundaries() {
        let r = TickRule::Krx;
        let cases = [
            (1, 1),
            (1_999, 1),
            (2_000, 5),
            (4_995, 5),
            (5_000, 10),
            (19_990, 10),
            (20_000, 50),
            (49_950, 50),
            (50_000, 100),
            (199_900, 100),
            (200_000, 500),
            (499_500, 500),
            (500_000, 1_000),
            (2_000_000, 1_000),
        ];
        for (p, t) in cases {
            assert_eq!(r.tick_at(Price(p)), t, "tick at {p}");
            assert!(r.is_on_grid(Price(p)), "{p} on grid");
        }
        assert!(!r.is_on_grid(Price(2_001)));
        assert!(!r.is_on_grid(Price(5_005)));
        assert!(!r.is_on_grid(Price(20_010)));
        assert!(!r.is_on_grid(Price(50_050)));
        assert!(!r.is_on_grid(Price(200_100)));
        assert!(!r.is_on_grid(Price(500_500)));
        assert!(!r.is_on_grid(Price(0)));
        assert!(!r.is_on_grid(Price(-5)));
    }

    #[test]
    fn tick_lookups_are_total_over_every_i64() {
        for p in [i64::MIN, -1, 0, 499_999, 500_000, i64::MAX - 1, i64::MAX] {
            let t = TickRule::Krx.tick_at(Price(p));
            assert!(t > 0, "tick at {p}");
            let _ = TickRule::Krx.is_on_grid(Price(p));
            let _ = TickRule::Krx.floor_to_grid(Price(p));
        }
        assert_eq!(TickRule::Krx.tick_at(Price(i64::MAX)), 1_000);
        assert_eq!(TickRule::Krx.tick_at(Price(i64::MIN)), 1);
        for p in [i64::MAX, i64::MIN, 0, -1] {
            let i = TickRule::Krx.tick_index(Price(p));
            let _ = TickRule::Krx.price_at_index(i);
        }
        for i in [i64::MAX, i64::MIN, -1] {
            let _ = TickRule::Krx.price_at_index(i);
            let _ = TickRule::Fixed(7).price_at_index(i);
        }
        assert!(PriceBand::krx(TickRule::Krx, Price(i64::MAX - 807)).is_none());
    }

    #[test]
    fn tick_index_is_dense_and_inverse_across_rows() {
        let r = TickRule::Krx;
        let mut p = Price(1);
        let mut idx = r.tick_index(p);
        assert_eq!(idx, 1);
        while p.0 < 1_200_000 {
            assert_eq!(r.price_at_index(idx), p);
            let next = Price(p.0 + r.tick_at(p));
            assert_eq!(r.tick_index(next), idx + 1, "after {p}");
            p = next;
            idx += 1;
        }
        let f = TickRule::Fixed(25);
        assert_eq!(f.tick_index(Price(100)), 4);
        assert_eq!(f.price_at_index(4), Price(100));
    }

    #[test]
    fn band_matches_krx_worked_example() {
        let band = PriceBand::krx(TickRule::Krx, Price(21_050)).unwrap();
        assert_eq!(band.upper, Price(27_350));
        assert_eq!(band.lower, Price(14_750));
    }

    #[test]
    fn band_examples_across_rows() {
        // base 119,900 (tick 100): width 35,970 -> 35,900; upper 155,800; lower 84,000.
        let b = PriceBand::krx(TickRule::Krx, Price(119_900)).unwrap();
        assert_eq!((b.lower, b.upper), (Price(84_000), Price(155_800)));
        // base 651,000 (tick 1,000): width 195,300 -> 195,000; upper 846,000; lower 456,000.
        let b = PriceBand::krx(TickRule::Krx, Price(651_000)).unwrap();
        assert_eq!((b.lower, b.upper), (Price(456_000), Price(846_000)));
        // base 1,990 (tick 1): width 597; upper 2,587 -> tick 5 row -> 2,585; lower 1,393.
        let b = PriceBand::krx(TickRule::Krx, Price(1_990)).unwrap();
        assert_eq!((b.lower, b.upper), (Price(1_393), Price(2_585)));
        // base 4,995 (tick 5): width 1,498 -> 1,495; upper 6,490 (tick 10 row: on grid);
        // lower 3,500.
        let b = PriceBand::krx(TickRule::Krx, Price(4_995)).unwrap();
        assert_eq!((b.lower, b.upper), (Price(3_500), Price(6_490)));
        // base 16,000 (tick 10): width 4,800; upper 20,800 -> tick 50 row -> 20,800; lower 11,200.
        let b = PriceBand::krx(TickRule::Krx, Price(16_000)).unwrap();
        assert_eq!((b.lower, b.upper), (Price(11_200), Price(20_800)));
        // base 17,010: width 5,103 -> 5,100; upper 22,110 -> floor to 50 -> 22,100.
        let b = PriceBand::krx(TickRule::Krx, Price(17_010)).unwrap();
        assert_eq!((b.lower, b.upper), (Price(11_910), Price(22_100)));
        // base 420,000 (tick 500): width 126,000; upper 546,000 (tick 1,000: on grid).
        let b = PriceBand::krx(TickRule::Krx, Price(420_000)).unwrap();
        assert_eq!((b.lower, b.upper), (Price(294_000), Price(546_000)));
        // base 5 (tick 1): width 1; upper 6; lower 4.
        let b = PriceBand::krx(TickRule::Krx, Price(5)).unwrap();
        assert_eq!((b.lower, b.upper), (Price(4), Price(6)));
        // base 1: width 0; the band is the single price 1.
        let b = PriceBand::krx(TickRule::Krx, Price(1)).unwrap();
        assert_eq!((b.lower, b.upper), (Price(1), Price(1)));
    }

    #[test]
    fn band_limits_are_on_grid_for_every_krx_base() {
        let r = TickRule::Krx;
        let mut p = Price(1);
        while p.0 < 3_000_000 {
            let b = PriceBand::krx(r, p).unwrap();
            assert!(
                r.is_on_grid(b.lower) && r.is_on_grid(b.upper),
                "base {p}: {b:?}"
            );
            assert!(b.lower <= p && p <= b.upper);
            p = r.floor_to_grid(Price(p.0 + r.tick_at(p) * 7));
        }
    }

    #[test]
    fn band_rejects_off_grid_base() {
        assert!(PriceBand::krx(TickRule::Krx, Price(21_055)).is_none());
        assert!(PriceBand::krx(TickRule::Krx, Price(0)).is_none());
    }
}
