//! Edge tests of the book: order types, time in force, modify priority, self-trade
//! prevention, market orders within the band, and quote-driven synthetic liquidity.

use kuku_engine::testkit::{Driver, accepted_id, cmd, reject_reason, trades};
use kuku_engine::*;

const SAMSUNG: u32 = 1;

/// One KOSPI symbol at base 71,000 (band 49,700..92,300, tick 100), accounts funded well.
fn market() -> (Driver, AccountId, AccountId, AccountId) {
    let mut d = Driver::krx_market(EngineConfig::small(), &[("005930", Market::Kospi, 71_000)]);
    let a = d.funded_account("alice", 1_000_000_000);
    let b = d.funded_account("bob", 1_000_000_000);
    let c = d.funded_account("carol", 1_000_000_000);
    // Give bob and carol shares to sell.
    for acct in [b, c] {
        d.apply(Command::Adjust {
            account: acct,
            asset: Asset::Shares(SymbolId(SAMSUNG)),
            amount: Amount(10_000),
            external_ref: ExternalRef::new(&format!("seed-{acct}")).unwrap(),
            cost_price: Price(0),
        });
    }
    (d, a, b, c)
}

fn cancel_reason(events: &[Event]) -> Option<CancelReason> {
    events.iter().find_map(|e| match e {
        Event::OrderCancelled { reason, .. } => Some(*reason),
        _ => None,
    })
}

#[test]
fn limit_orders_match_at_the_makers_price_in_time_priority() {
    let (mut d, a, b, c) = market();
    let e1 = d.apply(cmd::limit(b, 1, SAMSUNG, Side::Sell, 71_000, 10));
    let e2 = d.apply(cmd::limit(c, 1, SAMSUNG, Side::Sell, 71_000, 10));
    let (m1, m2) = (accepted_id(&e1).unwrap(), accepted_id(&e2).unwrap());
    let e = d.apply(cmd::limit(a, 1, SAMSUNG, Side::Buy, 71_500 - 500 + 100, 15));
    let t = accepted_id(&e).unwrap();
    assert_eq!(
        trades(&e),
        vec![(71_000, 10, m1.0, t.0), (71_000, 5, m2.0, t.0)]
    );
    assert_eq!(d.engine.live_order_count(), 1);
    d.engine.check_invariants().unwrap();
}

#[test]
fn ioc_remainder_is_cancelled() {
    let (mut d, a, b, _) = market();
    d.apply(cmd::limit(b, 1, SAMSUNG, Side::Sell, 71_000, 3));
    let e = d.apply(cmd::order(
        a,
        1,
        SAMSUNG,
        Side::Buy,
        OrderType::Limit,
        TimeInForce::Ioc,
        71_000,
        5,
    ));
    assert_eq!(trades(&e).len(), 1);
    assert_eq!(cancel_reason(&e), Some(CancelReason::IocRemainder));
    assert_eq!(d.engine.live_order_count(), 0);
    d.engine.check_invariants().unwrap();
}

#[test]
fn fok_never_partially_fills() {
    let (mut d, a, b, c) = market();
    d.apply(cmd::limit(b, 1, SAMSUNG, Side::Sell, 71_000, 3));
    d.apply(cmd::limit(c, 1, SAMSUNG, Side::Sell, 71_100, 3));
    // 7 wanted, 6 available up to 71,100: killed with no fill.
    let e = d.apply(cmd::order(
        a,
        1,
        SAMSUNG,
        Side::Buy,
        OrderType::Limit,
        TimeInForce::Fok,
        71_100,
        7,
    ));
    assert!(trades(&e).is_empty());
    assert_eq!(cancel_reason(&e), Some(CancelReason::FokUnfilled));
    // 6 wanted up to 71,000 only: 3 available at that price: killed.
    let e = d.apply(cmd::order(
        a,
        2,
        SAMSUNG,
        Side::Buy,
        OrderType::Limit,
        TimeInForce::Fok,
        71_000,
        6,
    ));
    assert!(trades(&e).is_empty());
    // 6 up to 71,100: fills completely across two levels.
    let e = d.apply(cmd::order(
        a,
        3,
        SAMSUNG,
        Side::Buy,
        OrderType::Limit,
        TimeInForce::Fok,
        71_100,
        6,
    ));
    assert_eq!(trades(&e).iter().map(|t| t.1).sum::<i64>(), 6);
    assert_eq!(d.engine.live_order_count(), 0);
    d.engine.check_invariants().unwrap();
}

#[test]
fn fok_blocked_by_own_order_is_killed() {
    let (mut d, _, b, c) = market();
    d.apply(cmd::limit(b, 1, SAMSUNG, Side::Sell, 71_000, 3));
    d.apply(cmd::limit(c, 1, SAMSUNG, Side::Buy, 70_000, 1));
    d.apply(cmd::limit(c, 2, SAMSUNG, Side::Sell, 71_000, 3));
    d.apply(cmd::limit(b, 2, SAMSUNG, Side::Sell, 71_000, 3));
    // carol buys 9 FOK: bob's 3, then carol's own 3 would self-trade: killed.
    let e = d.apply(cmd::order(
        c,
        3,
        SAMSUNG,
        Side::Buy,
        OrderType::Limit,
        TimeInForce::Fok,
        71_000,
        6,
    ));
    assert!(trades(&e).is_empty());
    assert_eq!(cancel_reason(&e), Some(CancelReason::FokUnfilled));
}

#[test]
fn self_trade_prevention_cancels_the_incoming_remainder() {
    let (mut d, _, b, c) = market();
    d.apply(cmd::limit(c, 1, SAMSUNG, Side::Sell, 71_000, 2));
    d.apply(cmd::limit(b, 1, SAMSUNG, Side::Sell, 71_000, 2));
    d.apply(cmd::limit(c, 2, SAMSUNG, Side::Buy, 60_000, 1));
    // bob buys 5: fills carol's 2, then meets his own ask: remainder cancelled.
    let e = d.apply(cmd::limit(b, 2, SAMSUNG, Side::Buy, 71_000, 5));
    assert_eq!(trades(&e).len(), 1);
    assert_eq!(trades(&e)[0].1, 2);
    assert_eq!(cancel_reason(&e), Some(CancelReason::SelfTrade));
    // bob's resting ask is untouched.
    assert_eq!(
        d.engine
            .book(SymbolId(SAMSUNG))
            .unwrap()
            .best(Side::Sell)
            .unwrap()
            .qty,
        Qty(2)
    );
    d.engine.check_invariants().unwrap();
}

#[test]
fn market_orders_never_trade_outside_the_band_and_cancel_the_rest() {
    let (mut d, a, b, _) = market();
    d.apply(cmd::limit(b, 1, SAMSUNG, Side::Sell, 92_300, 2)); // the upper limit
    let e = d.apply(cmd::market(a, 1, SAMSUNG, Side::Buy, 5));
    assert_eq!(trades(&e), vec![(92_300, 2, 1, 2)]);
    assert_eq!(cancel_reason(&e), Some(CancelReason::MarketRemainder));
    // Outside the band nothing can rest, so nothing can trade there either.
    let e = d.apply(cmd::limit(b, 2, SAMSUNG, Side::Sell, 92_400, 1));
    assert_eq!(reject_reason(&e), Some(RejectReason::PriceOutsideBand));
    d.engine.check_invariants().unwrap();
}

#[test]
fn market_order_on_unbanded_symbol_is_rejected() {
    let mut d = Driver::krx_market(EngineConfig::small(), &[]);
    d.apply(Command::RegisterSymbol(RegisterSymbol {
        code: SymbolCode::new("TEST1").unwrap(),
        name: SymbolName::new("Unbanded").unwrap(),
        market: Market::Other,
        tick_rule: TickRule::Fixed(5),
        base_price: Price(1_000),
        banded: false,
        lot_size: Qty(1),
    }));
    let a = d.funded_account("alice", 1_000_000);
    let e = d.apply(cmd::market(a, 1, 1, Side::Buy, 1));
    assert_eq!(
        reject_reason(&e),
        Some(RejectReason::MarketOrderWithoutBand)
    );
    // Limit orders far from the base are fine without a band.
    let e = d.apply(cmd::limit(a, 2, 1, Side::Buy, 5, 1));
    assert!(accepted_id(&e).is_some());
}

#[test]
fn modify_decrease_keeps_priority_increase_and_price_change_lose_it() {
    let (mut d, a, b, c) = market();
    let o1 = accepted_id(&d.apply(cmd::limit(b, 1, SAMSUNG, Side::Sell, 71_000, 10))).unwrap();
    let o2 = accepted_id(&d.apply(cmd::limit(c, 1, SAMSUNG, Side::Sell, 71_000, 10))).unwrap();
    // Decrease: keeps priority.
    let e = d.apply(cmd::modify(b, 2, o1.0, 8, 71_000));
    assert!(matches!(
        e[0],
        Event::OrderModified {
            priority_kept: true,
            ..
        }
    ));
    let e = d.apply(cmd::limit(a, 1, SAMSUNG, Side::Buy, 71_000, 1));
    assert_eq!(trades(&e)[0].2, o1.0, "o1 still first");
    // Increase: loses priority.
    let e = d.apply(cmd::modify(b, 3, o1.0, 20, 71_000));
    assert!(matches!(
        e[0],
        Event::OrderModified {
            priority_kept: false,
            ..
        }
    ));
    let e = d.apply(cmd::limit(a, 2, SAMSUNG, Side::Buy, 71_000, 1));
    assert_eq!(trades(&e)[0].2, o2.0, "o2 now first");
    // Price change: loses priority, and a crossing price trades as an incoming order.
    d.apply(cmd::limit(a, 3, SAMSUNG, Side::Buy, 70_000, 4));
    let e = d.apply(cmd::modify(c, 2, o2.0, 9, 70_000));
    assert!(matches!(
        e[0],
        Event::OrderModified {
            priority_kept: false,
            ..
        }
    ));
    assert_eq!(trades(&e), vec![(70_000, 4, 5, o2.0)]);
    d.engine.check_invariants().unwrap();
}

#[test]
fn modify_rejects_no_change_and_unknown_orders() {
    let (mut d, a, b, _) = market();
    let o1 = accepted_id(&d.apply(cmd::limit(b, 1, SAMSUNG, Side::Sell, 71_000, 10))).unwrap();
    let e = d.apply(cmd::modify(b, 2, o1.0, 10, 71_000));
    assert_eq!(reject_reason(&e), Some(RejectReason::NoChange));
    let e = d.apply(cmd::modify(a, 1, o1.0, 5, 71_000));
    assert_eq!(
        reject_reason(&e),
        Some(RejectReason::UnknownOrder),
        "not alice's order"
    );
    let e = d.apply(cmd::cancel(a, 2, o1.0));
    assert_eq!(reject_reason(&e), Some(RejectReason::UnknownOrder));
    let e = d.apply(cmd::cancel(b, 3, 999));
    assert_eq!(reject_reason(&e), Some(RejectReason::UnknownOrder));
}

#[test]
fn bad_orders_get_their_own_reasons() {
    let (mut d, a, _, _) = market();
    let cases = [
        (
            cmd::limit(a, 1, 9, Side::Buy, 71_000, 1),
            RejectReason::UnknownSymbol,
        ),
        (
            cmd::limit(a, 2, SAMSUNG, Side::Buy, 71_000, 0),
            RejectReason::InvalidQty,
        ),
        (
            cmd::limit(a, 3, SAMSUNG, Side::Buy, 71_000, -5),
            RejectReason::InvalidQty,
        ),
        (
            cmd::limit(a, 4, SAMSUNG, Side::Buy, 71_050, 1),
            RejectReason::PriceOffTick,
        ),
        (
            cmd::limit(a, 5, SAMSUNG, Side::Buy, 0, 1),
            RejectReason::InvalidPrice,
        ),
        (
            cmd::limit(a, 6, SAMSUNG, Side::Buy, 49_600, 1),
            RejectReason::PriceOutsideBand,
        ),
        (
            cmd::limit(a, 7, SAMSUNG, Side::Buy, 71_000, i64::MAX),
            RejectReason::OutOfRange,
        ),
        (
            cmd::limit(AccountId(77), 8, SAMSUNG, Side::Buy, 71_000, 1),
            RejectReason::UnknownAccount,
        ),
        (
            cmd::limit(a, 9, SAMSUNG, Side::Sell, 71_000, 1),
            RejectReason::InsufficientShares,
        ),
        (
            cmd::limit(a, 10, SAMSUNG, Side::Buy, 92_300, 100_000),
            RejectReason::InsufficientCash,
        ),
        (cmd::cancel(a, 11, 12345), RejectReason::UnknownOrder),
    ];
    for (command, reason) in cases {
        let e = d.apply(command.clone());
        assert_eq!(reject_reason(&e), Some(reason), "{command:?}");
    }
    d.apply(Command::SetMarketPhase {
        phase: MarketPhase::ClosingCall,
    });
    let e = d.apply(cmd::limit(a, 12, SAMSUNG, Side::Buy, 71_000, 1));
    assert_eq!(reject_reason(&e), Some(RejectReason::MarketClosed));
    assert_eq!(d.engine.live_order_count(), 0);
    d.engine.check_invariants().unwrap();
}

#[test]
fn lot_size_is_enforced() {
    let mut d = Driver::krx_market(EngineConfig::small(), &[]);
    d.apply(Command::RegisterSymbol(RegisterSymbol {
        code: SymbolCode::new("LOT10").unwrap(),
        name: SymbolName::new("Lot of ten").unwrap(),
        market: Market::Other,
        tick_rule: TickRule::Krx,
        base_price: Price(10_000),
        banded: true,
        lot_size: Qty(10),
    }));
    let a = d.funded_account("alice", 10_000_000);
    let e = d.apply(cmd::limit(a, 1, 1, Side::Buy, 10_000, 15));
    assert_eq!(reject_reason(&e), Some(RejectReason::QtyNotLotMultiple));
    let e = d.apply(cmd::limit(a, 2, 1, Side::Buy, 10_000, 20));
    assert!(accepted_id(&e).is_some());
}

#[test]
fn end_of_day_expires_day_orders_in_order_id_order() {
    let (mut d, a, b, _) = market();
    d.apply(cmd::limit(b, 1, SAMSUNG, Side::Sell, 72_000, 1));
    d.apply(cmd::limit(a, 1, SAMSUNG, Side::Buy, 70_000, 1));
    d.apply(cmd::quote(SAMSUNG, 69_000, 5, 73_000, 5));
    d.apply(cmd::limit(b, 2, SAMSUNG, Side::Sell, 71_900, 1));
    let e = d.apply(Command::EndOfDay {
        trading_day: 20_260_105,
    });
    let gone: Vec<u64> = e
        .iter()
        .filter_map(|e| match e {
            Event::OrderExpired { order_id, .. } | Event::OrderCancelled { order_id, .. } => {
                Some(order_id.0)
            }
            _ => None,
        })
        .collect();
    assert_eq!(gone, vec![1, 2, 3, 4, 5]);
    assert_eq!(d.engine.live_order_count(), 0);
    assert_eq!(d.engine.phase(), MarketPhase::Closed);
    let e = d.apply(cmd::limit(a, 2, SAMSUNG, Side::Buy, 70_000, 1));
    assert_eq!(reject_reason(&e), Some(RejectReason::MarketClosed));
    d.engine.check_invariants().unwrap();
}

#[test]
fn quotes_replace_synthetic_liquidity_and_cross_resting_users_at_their_price() {
    let (mut d, a, b, _) = market();
    let e = d.apply(cmd::quote(SAMSUNG, 70_900, 100, 71_100, 100));
    assert_eq!(
        e.iter()
            .filter(|e| matches!(e, Event::OrderAccepted { .. }))
            .count(),
        2
    );
    // A user buy lifts the synthetic ask at its price.
    let e = d.apply(cmd::limit(a, 1, SAMSUNG, Side::Buy, 71_500, 10));
    assert_eq!(trades(&e)[0].0, 71_100);
    // A resting user ask at 71,200, then a quote whose bid is 71,300: the synthetic bid
    // trades with the user at the user's price 71,200; the old quote is cancelled first.
    d.apply(cmd::limit(b, 1, SAMSUNG, Side::Sell, 71_200, 5));
    let e = d.apply(cmd::quote(SAMSUNG, 71_300, 100, 71_500, 100));
    let cancelled = e
        .iter()
        .filter(|e| {
            matches!(
                e,
                Event::OrderCancelled {
                    reason: CancelReason::QuoteReplaced,
                    ..
                }
            )
        })
        .count();
    assert_eq!(cancelled, 2);
    assert_eq!(
        trades(&e).iter().map(|t| (t.0, t.1)).collect::<Vec<_>>(),
        vec![(71_200, 5)]
    );
    let book = d.engine.book(SymbolId(SAMSUNG)).unwrap();
    assert_eq!(book.best(Side::Buy).unwrap().price, Price(71_300));
    assert_eq!(book.best(Side::Buy).unwrap().qty, Qty(95));
    assert_eq!(book.best(Side::Sell).unwrap().price, Price(71_500));
    d.engine.check_invariants().unwrap();
}

#[test]
fn an_empty_quote_withdraws_a_live_quote_and_is_rejected_when_there_is_none() {
    let (mut d, _, _, _) = market();
    // Nothing quoted, nothing to withdraw: refused, so the command still gets an answer.
    let events = d.apply(cmd::quote(SAMSUNG, 70_900, 0, 71_100, 0));
    assert_eq!(reject_reason(&events), Some(RejectReason::QuoteEmpty));
    assert_eq!(events.len(), 1);
    // With a live quote, the same command withdraws both sides.
    d.apply(cmd::quote(SAMSUNG, 70_900, 100, 71_100, 100));
    let events = d.apply(cmd::quote(SAMSUNG, 70_900, 0, 71_100, 0));
    let cancelled = events
        .iter()
        .filter(|e| matches!(e, Event::OrderCancelled { .. }))
        .count();
    assert_eq!((cancelled, reject_reason(&events)), (2, None));
    let book = d.engine.book(SymbolId(SAMSUNG)).unwrap();
    assert!(book.best(Side::Buy).is_none() && book.best(Side::Sell).is_none());
    // And once withdrawn, another empty quote is refused again.
    let events = d.apply(cmd::quote(SAMSUNG, 70_900, 0, 71_100, 0));
    assert_eq!(reject_reason(&events), Some(RejectReason::QuoteEmpty));
    d.engine.check_invariants().unwrap();
}

#[test]
fn bad_quotes_are_rejected_and_leave_the_old_quote() {
    let (mut d, _, _, _) = market();
    d.apply(cmd::quote(SAMSUNG, 70_900, 100, 71_100, 100));
    let cases = [
        (
            cmd::quote(SAMSUNG, 71_200, 1, 71_100, 1),
            RejectReason::QuoteCrossed,
        ),
        (
            cmd::quote(SAMSUNG, 71_100, 1, 71_100, 1),
            RejectReason::QuoteLocked,
        ),
        (
            cmd::quote(SAMSUNG, 70_950, 1, 71_100, 1),
            RejectReason::QuoteOffTick,
        ),
        (
            cmd::quote(SAMSUNG, 49_600, 1, 71_100, 1),
            RejectReason::QuoteOutsideBand,
        ),
        (
            cmd::quote(SAMSUNG, 70_900, -1, 71_100, 1),
            RejectReason::InvalidQuoteQty,
        ),
        (
            cmd::quote(9, 70_900, 1, 71_100, 1),
            RejectReason::UnknownSymbol,
        ),
    ];
    for (command, reason) in cases {
        assert_eq!(reject_reason(&d.apply(command)), Some(reason));
    }
    let book = d.engine.book(SymbolId(SAMSUNG)).unwrap();
    assert_eq!(book.best(Side::Buy).unwrap().price, Price(70_900));
    assert_eq!(book.best(Side::Sell).unwrap().price, Price(71_100));
    // A one-sided quote withdraws the other side.
    d.apply(cmd::quote(SAMSUNG, 70_800, 10, 0, 0));
    let book = d.engine.book(SymbolId(SAMSUNG)).unwrap();
    assert!(book.best(Side::Sell).is_none());
}

#[test]
fn cancel_all_cancels_in_order_id_order() {
    let (mut d, a, b, _) = market();
    d.apply(cmd::limit(a, 1, SAMSUNG, Side::Buy, 70_000, 1));
    d.apply(cmd::limit(b, 1, SAMSUNG, Side::Sell, 72_000, 1));
    d.apply(cmd::limit(a, 2, SAMSUNG, Side::Buy, 70_100, 1));
    d.apply(cmd::limit(a, 3, SAMSUNG, Side::Buy, 69_000, 1));
    let e = d.apply(Command::CancelAll {
        account: a,
        request_id: ClientOrderId(4),
        symbol: None,
    });
    let ids: Vec<u64> = e
        .iter()
        .filter_map(|e| match e {
            Event::OrderCancelled { order_id, .. } => Some(order_id.0),
            _ => None,
        })
        .collect();
    assert_eq!(ids, vec![1, 3, 4]);
    assert!(matches!(
        e.last(),
        Some(Event::CancelAllDone { cancelled: 3, .. })
    ));
    assert_eq!(d.engine.live_order_count(), 1);
    d.engine.check_invariants().unwrap();
}
