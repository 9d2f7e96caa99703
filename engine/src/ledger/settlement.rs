//! Settling one fill: the TRADE transaction, holds, order figures and positions.
//!
//! A fill is planned first ([`plan_fill`]): every new figure (charges, the orders' running
//! totals and holds, the positions' cost and realized profit) and the netted ledger lines are
//! computed with checked arithmetic from the state as it is, without changing it. Only when
//! the plan exists does the ledger post it ([`Ledger::post`], which checks it once more), and
//! only when that succeeded does the caller apply the plan's order and position figures. So a
//! fill either happens completely or changes nothing, and a match that stops at a fill that
//! cannot happen (a figure beyond `i64`) leaves every earlier fill standing and consistent.
//!
//! Lines of a TRADE transaction as events and the database report it (zero-amount lines are
//! left out; SYSTEM_MARKET pays no commission or tax, so a synthetic fill has 4 to 8 lines, a
//! user-to-user KOSPI fill 12):
//!
//! | line | debit (-) | credit (+) |
//! |---|---|---|
//! | Notional | buyer cash | seller cash |
//! | Shares | seller securities | buyer securities |
//! | Commission (buyer) | buyer cash | SYSTEM_FEE |
//! | Commission (seller) | seller cash | SYSTEM_FEE |
//! | Securities transaction tax | seller cash | SYSTEM_TAX |
//! | Rural special tax | seller cash | SYSTEM_TAX |
//!
//! The ledger posts the same transaction netted per balance (at most six lines: buyer cash,
//! seller cash, fee, tax, seller shares, buyer shares), and releases, in the same step, the
//! buyer's cash hold and the seller's share hold that the fill settles.
//!
//! Each charge is `floor(cumulative notional x rate) - already charged` per order and
//! component ([`crate::fees`]), except that one fill never charges a seller more than its
//! notional: a fill of a few won can meet several components' rounding steps at once, and the
//! part of a charge that would exceed the notional is left for the order's next fill (waived if
//! there is none), so a sell never needs cash.

use super::Ledger;
use super::balance::{Fill, Party};
use crate::book::order::Order;
use crate::fees::{FeeSchedule, cumulative_charge};
use crate::portfolio::{CostUpdate, after_buy, after_sell};
use crate::risk::buy_hold;
use crate::types::{Amount, Market, OrderType, Price, Qty};

/// What a fill charged.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FillCharges {
    pub buyer_commission: Amount,
    pub seller_commission: Amount,
    pub seller_taxes: [Amount; 2],
}

/// An order's figures after a fill.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OrderAfterFill {
    pub leaves: Qty,
    pub filled: Qty,
    pub cum_notional: Amount,
    pub commission_charged: Amount,
    pub taxes_charged: [Amount; 2],
    pub cash_hold: Amount,
}

impl OrderAfterFill {
    /// The quantities only (book-only mode); `None` if the fill exceeds the leaves or the
    /// filled total overflows.
    #[inline]
    pub fn quantities(o: &Order, qty: Qty) -> Option<OrderAfterFill> {
        let leaves = o.leaves.0.checked_sub(qty.0).filter(|l| *l >= 0)?;
        Some(OrderAfterFill {
            leaves: Qty(leaves),
            filled: Qty(o.filled.0.checked_add(qty.0)?),
            cum_notional: o.cum_notional,
            commission_charged: o.commission_charged,
            taxes_charged: o.taxes_charged,
            cash_hold: o.cash_hold,
        })
    }

    #[inline]
    pub fn apply(&self, o: &mut Order) {
        o.leaves = self.leaves;
        o.filled = self.filled;
        o.cum_notional = self.cum_notional;
        o.commission_charged = self.commission_charged;
        o.taxes_charged = self.taxes_charged;
        o.cash_hold = self.cash_hold;
    }
}

/// Everything one fill changes, computed before anything changes.
#[derive(Clone, Copy, Debug)]
pub struct FillPlan {
    pub charges: FillCharges,
    /// The TRADE transaction in its fixed shape (`LedgerTx::fill`).
    pub fill: Fill,
    pub buyer: OrderAfterFill,
    pub seller: OrderAfterFill,
    /// (position slot, new cost figures) of each user side.
    pub costs: [Option<(u32, CostUpdate)>; 2],
}

/// Plans a fill of `qty` at `price` between `buyer` and `seller` (neither changed yet).
/// `band_upper` is the price a MARKET buy holds at. `None` if any figure would overflow.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
pub fn plan_fill(
    ledger: &Ledger,
    fees: &FeeSchedule,
    market: Market,
    band_upper: Price,
    buyer: &Order,
    seller: &Order,
    price: Price,
    qty: Qty,
) -> Option<FillPlan> {
    let notional = price.notional(qty)?;
    let mut b = OrderAfterFill::quantities(buyer, qty)?;
    let mut s = OrderAfterFill::quantities(seller, qty)?;
    b.cum_notional = b.cum_notional.checked_add(notional)?;
    s.cum_notional = s.cum_notional.checked_add(notional)?;
    let mut charges = FillCharges::default();
    let mut fill = Fill {
        symbol: buyer.symbol,
        qty: qty.0,
        buyer: Party::Market,
        seller: Party::Market,
        buyer_cash: notional.0.checked_neg()?,
        seller_cash: notional.0,
        fee: 0,
        tax: 0,
        buyer_release: 0,
        seller_release: 0,
    };
    let mut costs = [None, None];

    if !buyer.account.is_system_market() {
        let due = cumulative_charge(b.cum_notional, fees.commission_ppm);
        charges.buyer_commission = due.checked_sub(buyer.commission_charged)?;
        b.commission_charged = due;
        // A MARKET buy holds at the band's upper limit.
        let hold_price = match buyer.order_type {
            OrderType::Limit => buyer.price,
            OrderType::Market => band_upper,
        };
        b.cash_hold = buy_hold(
            hold_price,
            b.leaves,
            b.cum_notional,
            b.commission_charged,
            fees.commission_ppm,
        )?;
        let cost = notional.checked_add(charges.buyer_commission)?;
        fill.buyer = Party::User {
            account: buyer.account,
            position: buyer.position,
        };
        fill.buyer_cash = cost.0.checked_neg()?;
        fill.buyer_release = buyer.cash_hold.checked_sub(b.cash_hold)?.0;
        let position = ledger.position_at(buyer.position)?;
        costs[0] = Some((
            buyer.position,
            after_buy(position, notional, charges.buyer_commission)?,
        ));
    }

    if !seller.account.is_system_market() {
        let mut room = notional;
        let mut charge = |rate: i64, charged: &mut Amount| -> Option<Amount> {
            let due = cumulative_charge(s.cum_notional, rate);
            let increment = due.checked_sub(*charged)?.min(room).max(Amount(0));
            room = room.checked_sub(increment)?;
            *charged = charged.checked_add(increment)?;
            Some(increment)
        };
        charges.seller_commission = charge(fees.commission_ppm, &mut s.commission_charged)?;
        let rates = fees.taxes(market).as_array();
        for (k, rate) in rates.into_iter().enumerate() {
            charges.seller_taxes[k] = charge(rate, &mut s.taxes_charged[k])?;
        }
        let net = room;
        fill.seller = Party::User {
            account: seller.account,
            position: seller.position,
        };
        fill.seller_cash = net.0;
        fill.seller_release = qty.0;
        let position = ledger.position_at(seller.position)?;
        costs[1] = Some((seller.position, after_sell(position, qty, net)?));
    }

    fill.fee = charges
        .buyer_commission
        .checked_add(charges.seller_commission)?
        .0;
    fill.tax = charges.seller_taxes[0]
        .checked_add(charges.seller_taxes[1])?
        .0;
    Some(FillPlan {
        charges,
        fill,
        buyer: b,
        seller: s,
        costs,
    })
}
