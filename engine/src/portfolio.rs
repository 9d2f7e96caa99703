//! Positions: shares, cost basis and realized profit per account and symbol.
//!
//! The share balance of a position *is* the ledger's USER_SECURITIES(account, symbol)
//! balance; cost basis and realized PnL are bookkeeping on top of it.
//!
//! Conventions (stated in docs/ledger.md):
//! - Average cost **includes** buy commission: `cost_basis` grows by notional + commission.
//! - A sell removes `floor(cost_basis x qty_sold / qty_before)` of cost (all of it when the
//!   position closes), and realizes proceeds - commission - taxes - removed cost.
//! - Valuation uses the symbol's last trade price.
//!
//! **Invariants**: `qty >= hold >= 0`; `qty == 0` implies `cost_basis == 0`.

pub use crate::ledger::balance::Position;

use crate::types::{Amount, Price, Qty};

/// A position's cost basis and realized profit after a change of its shares, computed before
/// the ledger posts the change (from the position as it is), applied after it posted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CostUpdate {
    pub cost_basis: Amount,
    pub realized_pnl: Amount,
}

impl CostUpdate {
    pub fn apply(self, p: &mut Position) {
        p.cost_basis = self.cost_basis;
        p.realized_pnl = self.realized_pnl;
    }
}

/// After buying `qty` shares for `notional + commission`; `None` on overflow.
#[inline]
pub fn after_buy(p: &Position, notional: Amount, commission: Amount) -> Option<CostUpdate> {
    Some(CostUpdate {
        cost_basis: p
            .cost_basis
            .checked_add(notional)?
            .checked_add(commission)?,
        realized_pnl: p.realized_pnl,
    })
}

/// After selling `qty` shares for `net_proceeds` (notional - commission - taxes); `None` on
/// overflow.
#[inline]
pub fn after_sell(p: &Position, qty: Qty, net_proceeds: Amount) -> Option<CostUpdate> {
    let removed = p.cost_removed(qty);
    Some(CostUpdate {
        cost_basis: p.cost_basis.checked_sub(removed)?,
        realized_pnl: p
            .realized_pnl
            .checked_add(net_proceeds)?
            .checked_sub(removed)?,
    })
}

/// After shares are added (`qty` > 0) or removed outside trading (a transfer, an adjustment
/// or its reversal): added shares carry `cost_price` each into the cost basis (no commission:
/// the shares were not bought here); removed ones take their proportional (average) cost
/// along, whatever they cost when they came in.
#[inline]
pub fn after_transfer(p: &Position, qty: Qty, cost_price: Price) -> Option<CostUpdate> {
    let cost_basis = if qty.0 < 0 {
        let removed = p.cost_removed(Qty(qty.0.checked_neg()?));
        p.cost_basis.checked_sub(removed)?
    } else {
        p.cost_basis
            .checked_add(Amount(cost_price.0.checked_mul(qty.0)?))?
    };
    Some(CostUpdate {
        cost_basis,
        realized_pnl: p.realized_pnl,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{AccountId, SymbolId};

    #[test]
    fn average_cost_includes_commission_and_sells_realize_net() {
        let p = Position::new(AccountId(1), SymbolId(1));
        let bought = after_buy(&p, Amount(710_000), Amount(106)).unwrap();
        assert_eq!(bought.cost_basis, Amount(710_106));
        let mut p = Position::for_test(Qty(10), bought.cost_basis);
        // Sell 4 at 75,000: notional 300,000; commission 45; taxes 150 + 450.
        let sold = after_sell(&p, Qty(4), Amount(300_000 - 45 - 150 - 450)).unwrap();
        // Removed cost floor(710,106 * 4 / 10) = 284,042.
        assert_eq!(sold.cost_basis, Amount(710_106 - 284_042));
        assert_eq!(sold.realized_pnl, Amount(299_355 - 284_042));
        sold.apply(&mut p);
        // Closing the rest removes exactly what is left.
        let closed = after_sell(&Position::for_test(Qty(6), p.cost_basis), Qty(6), Amount(0));
        assert_eq!(closed.unwrap().cost_basis, Amount(0));
    }

    #[test]
    fn shares_transferred_in_carry_their_cost_and_leave_at_average_cost() {
        let p = Position::for_test(Qty(10), Amount(1_000_000));
        let added = after_transfer(&p, Qty(10), Price(50_000)).unwrap();
        assert_eq!(added.cost_basis, Amount(1_500_000));
        assert_eq!(added.realized_pnl, Amount(0));
        let free = after_transfer(&p, Qty(10), Price(0)).unwrap();
        assert_eq!(free.cost_basis, Amount(1_000_000), "shares without a cost");
        // 20 shares costing 1,500,000: taking 10 out removes half, whatever they cost.
        let p = Position::for_test(Qty(20), added.cost_basis);
        let out = after_transfer(&p, Qty(-10), Price(0)).unwrap();
        assert_eq!(out.cost_basis, Amount(750_000));
    }

    #[test]
    fn cost_updates_refuse_overflow() {
        let p = Position::for_test(Qty(1), Amount(i64::MAX - 1));
        assert!(after_buy(&p, Amount(1), Amount(1)).is_none());
        assert!(
            after_transfer(&p, Qty(i64::MIN), Price(0)).is_none(),
            "a removal that cannot be negated"
        );
        assert_eq!(
            after_transfer(&p, Qty(-5), Price(0)).unwrap().cost_basis,
            Amount(0)
        );
        assert!(
            after_transfer(&p, Qty(2), Price(1)).is_none(),
            "a cost that overflows the basis"
        );
        assert!(
            after_transfer(&p, Qty(i64::MAX), Price(2)).is_none(),
            "a cost that overflows its product"
        );
        let mut rich = Position::for_test(Qty(1), Amount(0));
        rich.realized_pnl = Amount(i64::MAX);
        assert!(after_sell(&rich, Qty(1), Amount(1)).is_none());
    }
}
