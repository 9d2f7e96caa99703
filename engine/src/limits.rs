//! The ranges of every number a command may carry.
//!
//! The engine checks them first, before any rule that computes with the value (a tick lookup,
//! a notional, a hold), and rejects what lies outside with a stable code
//! ([`RejectReason::OutOfRange`] for prices and quantities, [`RejectReason::InvalidAmount`]
//! for amounts). Every door (the gateway's translation layer for trading and admin requests,
//! the scheduler, the quote feed) imports the same constants and refuses such values before
//! anything is journaled, so a client learns of its mistake without using up a request id;
//! the engine's own check stays, because the journal must be safe to replay whatever wrote
//! it.
//!
//! **Why these bounds**: a price x quantity of at most `PRICE_MAX * QTY_MAX` = 10^18 fits an
//! `i64` (about 9.2 x 10^18) with room for the commission on top (rates are at most 100%), so
//! no admission rule can overflow. Balances and cumulative figures that grow over many
//! commands are checked where they change (the ledger's entry points) and reject with
//! [`RejectReason::Overflow`].
//!
//! [`RejectReason::OutOfRange`]: crate::RejectReason::OutOfRange
//! [`RejectReason::InvalidAmount`]: crate::RejectReason::InvalidAmount
//! [`RejectReason::Overflow`]: crate::RejectReason::Overflow

use crate::command::Command;
use crate::reference::TickRule;
use crate::reject::RejectReason;
use crate::types::{Amount, Price, Qty};

/// The highest price (KRW per share) any command may carry: a limit price, a modify's new
/// price, a quote, a base price or a fixed tick. KRX's highest-priced shares trade in the
/// low millions of won; 10^9 leaves three orders of magnitude.
pub const PRICE_MAX: i64 = 1_000_000_000;

/// The largest quantity (shares) of an order, a modify, a quote side or a lot size.
pub const QTY_MAX: i64 = 1_000_000_000;

/// The largest single amount a deposit, withdrawal or adjustment may move (10^15 KRW, or
/// shares for a share adjustment), so that sums of many stay far from `i64` overflow.
pub const AMOUNT_MAX: i64 = 1_000_000_000_000_000;

/// The most base prices one StartOfDay may carry (one per symbol; `symbols_max` bounds it
/// further in the engine).
pub const BASE_PRICES_MAX: usize = 65_536;

/// True if a price lies in `0..=PRICE_MAX` (0: a MARKET order's or an empty quote side's).
#[inline]
pub fn price_in_range(price: Price) -> bool {
    (0..=PRICE_MAX).contains(&price.0)
}

/// True if a quantity lies in `0..=QTY_MAX` (0 is then refused by the rule that needs a
/// positive quantity, with its own code).
#[inline]
pub fn qty_in_range(qty: Qty) -> bool {
    (0..=QTY_MAX).contains(&qty.0)
}

/// True if an amount's magnitude is at most [`AMOUNT_MAX`].
#[inline]
pub fn amount_in_range(amount: Amount) -> bool {
    (-AMOUNT_MAX..=AMOUNT_MAX).contains(&amount.0)
}

/// The code the engine rejects `command` with if one of its numbers lies beyond its range
/// (`OutOfRange` for prices and quantities, `InvalidAmount` for amounts, `InvalidFeeSchedule`
/// for rates): what every door checks before it submits. `Ok` does not mean the engine will
/// accept the command, only that no number in it is out of range; values below the ranges
/// (zero, negative) are left to the engine's own rules and codes.
pub fn check_ranges(command: &Command) -> Result<(), RejectReason> {
    let too_big = |price: Price, qty: Qty| price.0 > PRICE_MAX || qty.0 > QTY_MAX;
    let out = match command {
        Command::PlaceOrder(o) => too_big(o.price, o.qty),
        Command::ModifyOrder {
            new_qty, new_price, ..
        } => too_big(*new_price, *new_qty),
        Command::QuoteUpdate {
            bid_price,
            bid_qty,
            ask_price,
            ask_qty,
            ..
        } => {
            (bid_qty.0 > 0 && too_big(*bid_price, *bid_qty))
                || (ask_qty.0 > 0 && too_big(*ask_price, *ask_qty))
        }
        Command::RegisterSymbol(r) => {
            let tick_too_big = matches!(r.tick_rule, TickRule::Fixed(t) if t > PRICE_MAX);
            tick_too_big || too_big(r.base_price, r.lot_size)
        }
        Command::StartOfDay { base_prices, .. } => {
            base_prices.len() > BASE_PRICES_MAX || base_prices.iter().any(|(_, p)| p.0 > PRICE_MAX)
        }
        Command::Deposit { amount, .. } | Command::Withdraw { amount, .. } => {
            if amount.0 > AMOUNT_MAX {
                return Err(RejectReason::InvalidAmount);
            }
            false
        }
        Command::Adjust {
            amount, cost_price, ..
        } => {
            if !amount_in_range(*amount) {
                return Err(RejectReason::InvalidAmount);
            }
            // Shares that carry a cost are a transfer in: a quantity and a price.
            cost_price.0 != 0 && too_big(*cost_price, Qty(amount.0))
        }
        Command::SetFeeSchedule(f) => {
            if !f.is_valid() {
                return Err(RejectReason::InvalidFeeSchedule);
            }
            false
        }
        // A symbol id (any value: an unknown one is rejected by the engine) and a two-valued
        // status: nothing to range-check.
        Command::SetQuoteStatus { .. } => false,
        _ => false,
    };
    if out {
        Err(RejectReason::OutOfRange)
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_largest_notional_and_its_commission_fit_an_i64() {
        let notional = PRICE_MAX.checked_mul(QTY_MAX).expect("fits");
        assert!(
            notional.checked_mul(2).is_some(),
            "notional + 100% commission"
        );
    }

    #[test]
    fn ranges_include_their_bounds_and_nothing_beyond() {
        assert!(price_in_range(Price(0)) && price_in_range(Price(PRICE_MAX)));
        assert!(!price_in_range(Price(-1)) && !price_in_range(Price(PRICE_MAX + 1)));
        assert!(!price_in_range(Price(i64::MAX)) && !price_in_range(Price(i64::MIN)));
        assert!(qty_in_range(Qty(QTY_MAX)) && !qty_in_range(Qty(QTY_MAX + 1)));
        assert!(!qty_in_range(Qty(-1)) && !qty_in_range(Qty(i64::MIN)));
        assert!(amount_in_range(Amount(-AMOUNT_MAX)) && amount_in_range(Amount(AMOUNT_MAX)));
        assert!(!amount_in_range(Amount(i64::MIN)) && !amount_in_range(Amount(i64::MAX)));
    }

    /// What a door refuses, the engine rejects with the same code: the doors never change a
    /// command's answer, only spare it the journal.
    #[test]
    fn a_door_refuses_exactly_with_the_engines_code() {
        use crate::hostile::{Harness, changes_nothing};
        use crate::testkit::reject_reason;
        let mut refused = 0;
        for data in 0u32..4_000 {
            let bytes: Vec<u8> = (0..48)
                .map(|i| (data.wrapping_mul(2_654_435_761).rotate_left(i) >> 24) as u8)
                .collect();
            let mut harness = Harness::market(true);
            for command in crate::hostile::ByteCommands::new(&bytes).take(4) {
                let door = check_ranges(&command);
                let events = harness.step(command.clone()).expect("checks hold");
                if let Err(code) = door {
                    refused += 1;
                    assert!(events.iter().all(changes_nothing), "{command:?}");
                    let engine = reject_reason(&events);
                    // The engine may stop at an earlier rule (unknown account, market
                    // closed, ...); when it reaches the range, its code is the door's.
                    if matches!(
                        engine,
                        Some(
                            RejectReason::OutOfRange
                                | RejectReason::InvalidAmount
                                | RejectReason::InvalidFeeSchedule
                        )
                    ) {
                        assert_eq!(engine, Some(code), "{command:?}: {events:?}");
                    }
                }
            }
        }
        assert!(
            refused > 100,
            "the sample exercises the ranges ({refused} refusals)"
        );
    }
}
