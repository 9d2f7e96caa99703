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

use crate::types::{AccountId, Amount, Price, Qty, SymbolId};
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    pub account: AccountId,
    pub symbol: SymbolId,
    /// Shares owned (the USER_SECURITIES balance).
    pub qty: Qty,
    /// Shares held by live sell orders.
    pub hold: Qty,
    /// What the shares owned cost, buy commission included.
    pub cost_basis: Amount,
    /// Profit realized by sells, net of every fee and tax.
    pub realized_pnl: Amount,
}

impl Position {
    pub fn new(account: AccountId, symbol: SymbolId) -> Position {
        Position {
            account,
            symbol,
            qty: Qty(0),
            hold: Qty(0),
            cost_basis: Amount(0),
            realized_pnl: Amount(0),
        }
    }

    /// Shares free to sell or withdraw.
    #[inline]
    pub fn available(&self) -> Qty {
        Qty(self.qty.0 - self.hold.0)
    }

    /// Records a bought fill: `qty` shares for `notional + commission`.
    #[inline]
    pub fn on_buy(&mut self, qty: Qty, notional: Amount, commission: Amount) {
        self.qty = Qty(self.qty.0 + qty.0);
        self.cost_basis = Amount(self.cost_basis.0 + notional.0 + commission.0);
    }

    /// Records a sold fill; `net_proceeds` = notional - commission - taxes.
    #[inline]
    pub fn on_sell(&mut self, qty: Qty, net_proceeds: Amount) {
        let removed = self.cost_removed(qty);
        self.cost_basis = Amount(self.cost_basis.0 - removed.0);
        self.qty = Qty(self.qty.0 - qty.0);
        self.realized_pnl = Amount(self.realized_pnl.0 + net_proceeds.0 - removed.0);
    }

    /// Cost leaving the position when `qty` of its shares go: proportional, floored; all of
    /// it when the position closes.
    #[inline]
    fn cost_removed(&self, qty: Qty) -> Amount {
        if qty.0 >= self.qty.0 || self.qty.0 <= 0 {
            return self.cost_basis;
        }
        Amount((self.cost_basis.0 as i128 * qty.0 as i128 / self.qty.0 as i128) as i64)
    }

    /// Shares added or removed outside trading (an adjustment or its reversal) carry no cost.
    #[inline]
    pub fn on_transfer(&mut self, qty: Qty) {
        if qty.0 < 0 {
            let removed = self.cost_removed(Qty(-qty.0));
            self.cost_basis = Amount(self.cost_basis.0 - removed.0);
        }
        self.qty = Qty(self.qty.0 + qty.0);
    }

    /// Average cost per share (buy commission included), `None` when flat.
    pub fn average_cost(&self) -> Option<f64> {
        (self.qty.0 > 0).then(|| self.cost_basis.0 as f64 / self.qty.0 as f64)
    }

    /// Market value at `price`, and the unrealized profit against the cost basis.
    pub fn valuation(&self, price: Price) -> (Amount, Amount) {
        let value = Amount(price.0.saturating_mul(self.qty.0));
        (value, Amount(value.0 - self.cost_basis.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn average_cost_includes_commission_and_sells_realize_net() {
        let mut p = Position::new(AccountId(1), SymbolId(1));
        p.on_buy(Qty(10), Amount(710_000), Amount(106));
        assert_eq!(p.cost_basis, Amount(710_106));
        // Sell 4 at 75,000: notional 300,000; commission 45; taxes 150 + 450.
        p.on_sell(Qty(4), Amount(300_000 - 45 - 150 - 450));
        // Removed cost floor(710,106 * 4 / 10) = 284,042.
        assert_eq!(p.cost_basis, Amount(710_106 - 284_042));
        assert_eq!(p.realized_pnl, Amount(299_355 - 284_042));
        // Closing the rest removes exactly what is left.
        p.on_sell(Qty(6), Amount(0));
        assert_eq!((p.qty, p.cost_basis), (Qty(0), Amount(0)));
    }
}
