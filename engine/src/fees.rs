//! Commission and sell-tax schedule, and the cumulative rounding rule.
//!
//! Rates are in parts per million (ppm): 0.015% = 150 ppm. From 2026: commission 0.015% per
//! side (users only; SYSTEM_MARKET pays none); KOSPI sells pay 0.05% securities transaction
//! tax + 0.15% rural special tax; KOSDAQ sells pay 0.20% securities transaction tax.
//!
//! Rounding without a splitting loophole: per order and per component, the charge on a fill is
//! `floor(cumulative_notional * rate) - already_charged`, so the total an order pays depends
//! only on its cumulative notional, never on how it was split into fills.
//!
//! **Invariants**: `0 <= charge(c) <= c` for every rate <= 1,000,000 ppm and notional c >= 0,
//! and `charge` is monotonic in `c`.

use crate::types::{Amount, Market};
use serde::{Deserialize, Serialize};

/// One million: the ppm denominator.
pub const PPM: i64 = 1_000_000;

/// The two sell-tax components Korea levies on listed shares.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum TaxKind {
    /// 증권거래세.
    SecuritiesTransaction,
    /// 농어촌특별세 (KOSPI only).
    RuralSpecial,
}

/// Sell-tax rates of one market.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TaxRates {
    pub securities_transaction_ppm: i64,
    pub rural_special_ppm: i64,
}

impl TaxRates {
    /// The rates as an array indexed like `[TaxKind::SecuritiesTransaction, RuralSpecial]`.
    #[inline]
    pub fn as_array(&self) -> [i64; 2] {
        [self.securities_transaction_ppm, self.rural_special_ppm]
    }
}

/// Commission and tax rates, set by a journaled `SetFeeSchedule` command.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct FeeSchedule {
    /// Charged on each user side of every fill.
    pub commission_ppm: i64,
    pub kospi: TaxRates,
    pub kosdaq: TaxRates,
    pub other: TaxRates,
}

impl FeeSchedule {
    /// The 2026 Korean schedule: 0.015% commission; KOSPI 0.05% + 0.15%; KOSDAQ 0.20%.
    pub const KRX_2026: FeeSchedule = FeeSchedule {
        commission_ppm: 150,
        kospi: TaxRates {
            securities_transaction_ppm: 500,
            rural_special_ppm: 1_500,
        },
        kosdaq: TaxRates {
            securities_transaction_ppm: 2_000,
            rural_special_ppm: 0,
        },
        other: TaxRates {
            securities_transaction_ppm: 0,
            rural_special_ppm: 0,
        },
    };

    /// Sell-tax rates for a market.
    #[inline]
    pub fn taxes(&self, market: Market) -> &TaxRates {
        match market {
            Market::Kospi => &self.kospi,
            Market::Kosdaq => &self.kosdaq,
            Market::Other => &self.other,
        }
    }

    /// True if every rate lies in 0..=1,000,000 ppm.
    pub fn is_valid(&self) -> bool {
        let ok = |r: i64| (0..=PPM).contains(&r);
        ok(self.commission_ppm)
            && [self.kospi, self.kosdaq, self.other]
                .iter()
                .all(|t| ok(t.securities_transaction_ppm) && ok(t.rural_special_ppm))
    }
}

/// `floor(notional * rate_ppm / 1e6)`, the cumulative charge at a cumulative notional.
///
/// Computed in i128: the product of an i64 notional and a rate <= 1e6 cannot overflow, and the
/// result is <= notional, so it fits back into i64.
#[inline]
pub fn cumulative_charge(cumulative_notional: Amount, rate_ppm: i64) -> Amount {
    debug_assert!(cumulative_notional.0 >= 0 && (0..=PPM).contains(&rate_ppm));
    // u64 when the product fits (every realistic notional), i128 otherwise: same result.
    match (cumulative_notional.0 as u64).checked_mul(rate_ppm as u64) {
        Some(product) => Amount((product / PPM as u64) as i64),
        None => Amount(((cumulative_notional.0 as i128 * rate_ppm as i128) / PPM as i128) as i64),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cumulative_charge_floors() {
        // 0.015% of 1,000,000 = 150 exactly.
        assert_eq!(cumulative_charge(Amount(1_000_000), 150), Amount(150));
        // 0.015% of 71,000 = 10.65 -> 10.
        assert_eq!(cumulative_charge(Amount(71_000), 150), Amount(10));
        assert_eq!(cumulative_charge(Amount(6_666), 150), Amount(0));
        assert_eq!(cumulative_charge(Amount(i64::MAX), PPM), Amount(i64::MAX));
    }

    #[test]
    fn splitting_never_lowers_the_total() {
        // Ten fills of 6,666 KRW each: charged per fill the floor would be 0 every time; the
        // cumulative rule charges floor(66,660 * 150e-6) = 9 in total, like one fill.
        let mut charged = Amount(0);
        let mut cum = Amount(0);
        for _ in 0..10 {
            cum = Amount(cum.0 + 6_666);
            let c = cumulative_charge(cum, 150);
            charged = c;
        }
        assert_eq!(charged, cumulative_charge(Amount(66_660), 150));
        assert_eq!(charged, Amount(9));
    }

    #[test]
    fn krx_2026_schedule_is_valid() {
        assert!(FeeSchedule::KRX_2026.is_valid());
        let mut bad = FeeSchedule::KRX_2026;
        bad.commission_ppm = -1;
        assert!(!bad.is_valid());
    }
}
