//! Pre-trade risk: what an order must hold so that no fill can overdraw its account.
//!
//! A buy holds `price x leaves + floor((cum_notional + price x leaves) x commission) -
//! commission_charged` (MARKET buys at the band's upper limit). Any fill executes at a price
//! <= the hold price, so the cumulative notional after it is <= the one the hold assumed and,
//! the charge being monotonic, the fill's cost (notional + commission increment) never
//! exceeds the hold. A sell holds its leaves in shares; its charges (commission and taxes,
//! each floored on the cumulative notional) are always <= its cumulative proceeds, so a sell
//! never needs cash. Holds are recomputed on every fill and modify.
//!
//! **Invariants**: `account.cash_hold` = sum of its buy orders' holds + its open withdrawals;
//! `position.hold` = sum of its sell orders' leaves; available = balance - hold >= 0.

use crate::fees::cumulative_charge;
use crate::types::{Amount, Price, Qty};

/// The cash a buy order must hold for `leaves` more shares at up to `price`, given what it
/// has filled (`cum_notional`) and paid in commission so far. `None` on overflow.
#[inline(always)]
pub fn buy_hold(
    price: Price,
    leaves: Qty,
    cum_notional: Amount,
    commission_charged: Amount,
    commission_ppm: i64,
) -> Option<Amount> {
    let open_notional = price.notional(leaves)?;
    let total_notional = cum_notional.checked_add(open_notional)?;
    let commission = cumulative_charge(total_notional, commission_ppm);
    open_notional.checked_add(Amount(commission.0 - commission_charged.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hold_covers_a_full_fill_at_the_limit() {
        // 10 shares at 71,000: notional 710,000, commission floor(106.5) = 106.
        let h = buy_hold(Price(71_000), Qty(10), Amount(0), Amount(0), 150).unwrap();
        assert_eq!(h, Amount(710_106));
    }

    #[test]
    fn hold_after_partial_fill_accounts_for_cumulative_rounding() {
        // After 3 shares filled at 70,000 (210,000; commission charged floor(31.5) = 31), the
        // remaining 7 at 71,000 hold 497,000 + floor((210,000 + 497,000) * 150e-6) - 31
        // = 497,000 + 106 - 31 = 497,075.
        let h = buy_hold(Price(71_000), Qty(7), Amount(210_000), Amount(31), 150).unwrap();
        assert_eq!(h, Amount(497_075));
    }

    #[test]
    fn hold_overflow_is_none() {
        assert!(buy_hold(Price(i64::MAX), Qty(2), Amount(0), Amount(0), 150).is_none());
    }
}
