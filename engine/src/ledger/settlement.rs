//! Settling one fill: the TRADE transaction, balances, holds and positions.
//!
//! Lines of a TRADE transaction (zero-amount lines are left out; SYSTEM_MARKET pays no
//! commission or tax, so a synthetic fill has 4 to 8 lines, a user-to-user KOSPI fill 12):
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
//! Each charge is `floor(cumulative notional x rate) - already charged` per order and
//! component ([`crate::fees`]).

use super::Ledger;
use crate::book::order::Order;
use crate::fees::{FeeSchedule, cumulative_charge};
use crate::risk::buy_hold;
use crate::types::{Amount, Market, Price, Qty};

/// What a fill charged.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FillCharges {
    pub buyer_commission: Amount,
    pub seller_commission: Amount,
    pub seller_taxes: [Amount; 2],
}

/// Settles `qty` at `price` between `buyer` and `seller`, whose leaves and filled quantities
/// the caller has already updated. Updates charges, holds, balances and positions, and
/// returns the charges (the `Trade` event carries them; `Event::transaction` expands it into
/// the TRADE transaction's lines).
#[allow(clippy::too_many_arguments)]
pub fn settle_fill(
    ledger: &mut Ledger,
    fees: &FeeSchedule,
    market: Market,
    band_upper: Price,
    buyer: &mut Order,
    seller: &mut Order,
    price: Price,
    qty: Qty,
) -> FillCharges {
    let notional = price.0 * qty.0; // <= each order's validated price x qty
    let mut charges = FillCharges::default();

    buyer.cum_notional = Amount(buyer.cum_notional.0 + notional);
    seller.cum_notional = Amount(seller.cum_notional.0 + notional);
    if !buyer.account.is_system_market() {
        let due = cumulative_charge(buyer.cum_notional, fees.commission_ppm);
        charges.buyer_commission = Amount(due.0 - buyer.commission_charged.0);
        buyer.commission_charged = due;
    }
    if !seller.account.is_system_market() {
        let due = cumulative_charge(seller.cum_notional, fees.commission_ppm);
        charges.seller_commission = Amount(due.0 - seller.commission_charged.0);
        seller.commission_charged = due;
        for (k, rate) in fees.taxes(market).as_array().into_iter().enumerate() {
            let due = cumulative_charge(seller.cum_notional, rate);
            charges.seller_taxes[k] = Amount(due.0 - seller.taxes_charged[k].0);
            seller.taxes_charged[k] = due;
        }
    }
    let taxes = charges.seller_taxes[0].0 + charges.seller_taxes[1].0;

    settle_buyer(
        ledger,
        fees,
        band_upper,
        buyer,
        qty,
        notional,
        charges.buyer_commission,
    );
    settle_seller(
        ledger,
        seller,
        qty,
        notional - charges.seller_commission.0 - taxes,
    );
    let sys = &mut ledger.system;
    sys.fee = Amount(sys.fee.0 + charges.buyer_commission.0 + charges.seller_commission.0);
    sys.tax = Amount(sys.tax.0 + taxes);

    charges
}

fn settle_buyer(
    ledger: &mut Ledger,
    fees: &FeeSchedule,
    band_upper: Price,
    buyer: &mut Order,
    qty: Qty,
    notional: i64,
    commission: Amount,
) {
    if buyer.account.is_system_market() {
        ledger.system.market_cash = Amount(ledger.system.market_cash.0 - notional);
        ledger.system_shares[buyer.symbol.0 as usize - 1].market += qty.0;
        return;
    }
    // A MARKET buy holds at the band's upper limit.
    let hold_price = match buyer.order_type {
        crate::types::OrderType::Limit => buyer.price,
        crate::types::OrderType::Market => band_upper,
    };
    let new_hold = buy_hold(
        hold_price,
        buyer.leaves,
        buyer.cum_notional,
        buyer.commission_charged,
        fees.commission_ppm,
    )
    .expect("bounded by the hold validated at acceptance");
    let account = ledger
        .account_mut(buyer.account)
        .expect("a live order's account exists");
    let cost = notional + commission.0;
    debug_assert!(
        buyer.cash_hold.0 >= cost + new_hold.0,
        "the hold covers the fill"
    );
    account.cash = Amount(account.cash.0 - cost);
    account.cash_hold = Amount(account.cash_hold.0 - buyer.cash_hold.0 + new_hold.0);
    buyer.cash_hold = new_hold;
    debug_assert!(account.cash.0 >= 0 && account.cash_hold.0 <= account.cash.0);
    // A buy reserved its position at acceptance and cached its index.
    ledger.positions[buyer.position as usize].on_buy(qty, Amount(notional), commission);
}

fn settle_seller(ledger: &mut Ledger, seller: &mut Order, qty: Qty, net_proceeds: i64) {
    if seller.account.is_system_market() {
        ledger.system.market_cash = Amount(ledger.system.market_cash.0 + net_proceeds);
        ledger.system_shares[seller.symbol.0 as usize - 1].market -= qty.0;
        return;
    }
    let account = ledger
        .account_mut(seller.account)
        .expect("a live order's account exists");
    account.cash = Amount(account.cash.0 + net_proceeds);
    // A sell needs a position; its index is cached in the order.
    let p = &mut ledger.positions[seller.position as usize];
    p.hold = Qty(p.hold.0 - qty.0);
    p.on_sell(qty, Amount(net_proceeds));
    debug_assert!(p.hold.0 >= 0 && p.qty.0 >= p.hold.0);
}
