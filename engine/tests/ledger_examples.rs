//! Worked examples of the ledger: fees, taxes and rounding, holds, external transactions,
//! reversals and idempotency. The numbers here are the ones in docs/ledger.md.

use kuku_engine::testkit::{Driver, accepted_id, cmd, reject_reason, trades};
use kuku_engine::*;

fn posted(events: &[Event]) -> Vec<Transaction> {
    events.iter().filter_map(|e| e.transaction(0)).collect()
}

fn line(tx: &Transaction, account: LedgerAccount, kind: LineKind) -> i64 {
    tx.entries()
        .iter()
        .filter(|e| e.account == account && e.line == kind)
        .map(|e| e.amount.0)
        .sum()
}

fn give_shares(d: &mut Driver, account: AccountId, symbol: u32, qty: i64) {
    let e = d.apply(Command::Adjust {
        account,
        asset: Asset::Shares(SymbolId(symbol)),
        amount: Amount(qty),
        external_ref: ExternalRef::new(&format!("shares-{account}-{symbol}")).unwrap(),
        cost_price: Price(0),
    });
    assert!(reject_reason(&e).is_none());
}

fn cash(d: &Driver, a: AccountId) -> i64 {
    d.engine.ledger().account(a).unwrap().cash().0
}

#[test]
fn kospi_fill_between_users_charges_commission_both_sides_and_two_sell_taxes() {
    let mut d = Driver::krx_market(EngineConfig::small(), &[("005930", Market::Kospi, 71_000)]);
    let alice = d.funded_account("alice", 1_000_000);
    let bob = d.funded_account("bob", 0);
    give_shares(&mut d, bob, 1, 10);
    d.apply(cmd::limit(bob, 1, 1, Side::Sell, 71_000, 10));
    let e = d.apply(cmd::limit(alice, 1, 1, Side::Buy, 71_000, 10));
    let tx = posted(&e)[0];
    assert_eq!(tx.tx_type, TxType::Trade);
    assert_eq!(tx.entries().len(), 12);
    // notional 710,000; commission floor(106.5) = 106 per side;
    // securities transaction tax 0.05% = 355; rural special tax 0.15% = 1,065.
    assert_eq!(
        line(&tx, LedgerAccount::UserCash(alice), LineKind::Notional),
        -710_000
    );
    assert_eq!(
        line(&tx, LedgerAccount::UserCash(bob), LineKind::Notional),
        710_000
    );
    assert_eq!(
        line(&tx, LedgerAccount::UserCash(alice), LineKind::Commission),
        -106
    );
    assert_eq!(
        line(&tx, LedgerAccount::UserCash(bob), LineKind::Commission),
        -106
    );
    assert_eq!(
        line(&tx, LedgerAccount::SystemFee, LineKind::Commission),
        212
    );
    assert_eq!(
        line(
            &tx,
            LedgerAccount::SystemTax,
            LineKind::SecuritiesTransactionTax
        ),
        355
    );
    assert_eq!(
        line(&tx, LedgerAccount::SystemTax, LineKind::RuralSpecialTax),
        1_065
    );
    assert_eq!(
        line(
            &tx,
            LedgerAccount::UserSecurities(alice, SymbolId(1)),
            LineKind::Shares
        ),
        10
    );
    assert!(tx.is_balanced());
    assert_eq!(cash(&d, alice), 1_000_000 - 710_106);
    assert_eq!(cash(&d, bob), 710_000 - 106 - 355 - 1_065);
    let p = d.engine.ledger().position(alice, SymbolId(1)).unwrap();
    assert_eq!((p.qty(), p.cost_basis), (Qty(10), Amount(710_106)));
    let p = d.engine.ledger().position(bob, SymbolId(1)).unwrap();
    // Bob's shares came by adjustment at no cost: the whole net is realized profit.
    assert_eq!(p.realized_pnl, Amount(708_474));
    d.engine.check_invariants().unwrap();
}

#[test]
fn kosdaq_sell_pays_one_tax_and_system_market_pays_nothing() {
    let mut d = Driver::krx_market(
        EngineConfig::small(),
        &[("247540", Market::Kosdaq, 150_000)],
    );
    let carol = d.funded_account("carol", 0);
    give_shares(&mut d, carol, 1, 7);
    d.apply(cmd::quote(1, 150_000, 100, 150_100, 100));
    let e = d.apply(cmd::limit(carol, 1, 1, Side::Sell, 150_000, 7));
    let tx = posted(&e)[0];
    // notional 1,050,000; commission floor(157.5) = 157; KOSDAQ tax 0.20% = 2,100.
    assert_eq!(
        line(&tx, LedgerAccount::UserCash(carol), LineKind::Commission),
        -157
    );
    assert_eq!(
        line(
            &tx,
            LedgerAccount::UserCash(carol),
            LineKind::SecuritiesTransactionTax
        ),
        -2_100
    );
    assert_eq!(
        line(
            &tx,
            LedgerAccount::UserCash(carol),
            LineKind::RuralSpecialTax
        ),
        0
    );
    assert_eq!(
        line(&tx, LedgerAccount::SystemMarket, LineKind::Notional),
        -1_050_000
    );
    assert_eq!(
        line(&tx, LedgerAccount::SystemMarket, LineKind::Commission),
        0
    );
    assert_eq!(tx.entries().len(), 8);
    assert_eq!(cash(&d, carol), 1_050_000 - 157 - 2_100);
    d.engine.check_invariants().unwrap();
}

#[test]
fn splitting_into_many_fills_pays_the_same_as_one_fill() {
    // 100 shares at 1,990: commission floor(199,000 x 0.015%) = floor(29.85) = 29. As 100
    // fills of 1 share, a per-fill floor would charge floor(0.2985) = 0 each: 0 in total.
    let total_commission = |split: bool| {
        let mut d = Driver::krx_market(EngineConfig::small(), &[("000001", Market::Kospi, 1_990)]);
        let buyer = d.funded_account("buyer", 1_000_000);
        let seller = d.funded_account("seller", 0);
        give_shares(&mut d, seller, 1, 100);
        if split {
            for i in 0..100 {
                d.apply(cmd::limit(seller, i + 1, 1, Side::Sell, 1_990, 1));
            }
        } else {
            d.apply(cmd::limit(seller, 1, 1, Side::Sell, 1_990, 100));
        }
        let e = d.apply(cmd::limit(buyer, 1, 1, Side::Buy, 1_990, 100));
        assert_eq!(trades(&e).len(), if split { 100 } else { 1 });
        let paid: i64 = e
            .iter()
            .filter_map(|e| match e {
                Event::Trade {
                    buyer_commission, ..
                } => Some(buyer_commission.0),
                _ => None,
            })
            .sum();
        assert_eq!(cash(&d, buyer), 1_000_000 - 199_000 - paid);
        d.engine.check_invariants().unwrap();
        paid
    };
    assert_eq!(total_commission(false), 29);
    assert_eq!(total_commission(true), 29);
}

#[test]
fn fully_committed_account_fills_to_exactly_zero() {
    let mut d = Driver::krx_market(EngineConfig::small(), &[("005930", Market::Kospi, 71_000)]);
    // 10 x 71,000 = 710,000 + commission floor(106.5) = 106: the hold is 710,106.
    let alice = d.funded_account("alice", 710_105);
    let e = d.apply(cmd::limit(alice, 1, 1, Side::Buy, 71_000, 10));
    assert_eq!(
        reject_reason(&e),
        Some(RejectReason::InsufficientCash),
        "1 won short"
    );
    d.apply(cmd::deposit(alice, 1, "top-up"));
    let e = d.apply(cmd::limit(alice, 2, 1, Side::Buy, 71_000, 10));
    assert!(accepted_id(&e).is_some());
    assert_eq!(
        d.engine.ledger().account(alice).unwrap().available(),
        Amount(0)
    );
    // Three partial fills at the limit: 3, 3, 4 shares.
    for (i, q) in [3, 3, 4].into_iter().enumerate() {
        d.apply(cmd::quote(1, 70_900, 1, 71_000, q));
        let _ = i;
        d.engine.check_invariants().unwrap();
    }
    let a = d.engine.ledger().account(alice).unwrap();
    assert_eq!((a.cash(), a.cash_hold()), (Amount(0), Amount(0)));
    assert_eq!(
        d.engine.live_order_count(),
        1,
        "only the synthetic bid remains"
    );
}

#[test]
fn price_improvement_releases_the_unused_hold() {
    let mut d = Driver::krx_market(EngineConfig::small(), &[("005930", Market::Kospi, 71_000)]);
    let alice = d.funded_account("alice", 710_106);
    d.apply(cmd::quote(1, 70_000, 10, 70_500, 4));
    // Buys 4 at 70,500 at once, rests 6 at 71,000.
    let e = d.apply(cmd::limit(alice, 1, 1, Side::Buy, 71_000, 10));
    assert_eq!(trades(&e), vec![(70_500, 4, 2, 3)]);
    // Paid 282,000 + floor(282,000 x 0.015%) = 42. Hold now 6 x 71,000 = 426,000 +
    // floor((282,000 + 426,000) x 0.015%) - 42 = 106 - 42 = 64.
    let a = d.engine.ledger().account(alice).unwrap();
    assert_eq!(a.cash(), Amount(710_106 - 282_042));
    assert_eq!(a.cash_hold(), Amount(426_064));
    assert_eq!(
        a.available(),
        Amount(2_000),
        "the 500 won x 4 improvement, released"
    );
    d.engine.check_invariants().unwrap();
}

/// A sequential model of one account's cash: each buy order holds price x qty +
/// floor(price x qty x 0.015%); orders that fit in journal order are accepted.
#[test]
fn thousand_orders_exceeding_cash_accept_exactly_those_that_fit_in_order() {
    let mut d = Driver::krx_market(EngineConfig::small(), &[("005930", Market::Kospi, 71_000)]);
    let cash_start = 50_000_000i64;
    let alice = d.funded_account("alice", cash_start);
    let mut available = cash_start;
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    let (mut accepted, mut rejected) = (0, 0);
    for i in 0..1_000u64 {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let price = 60_000 + (rng % 100) as i64 * 100; // bids below any ask: they rest
        let qty = 1 + (rng >> 20) as i64 % 9;
        let need = price * qty + price * qty * 150 / 1_000_000;
        let e = d.apply(cmd::limit(alice, i + 1, 1, Side::Buy, price, qty));
        if need <= available {
            assert!(
                accepted_id(&e).is_some(),
                "order {i} fits: {need} <= {available}"
            );
            available -= need;
            accepted += 1;
        } else {
            assert_eq!(
                reject_reason(&e),
                Some(RejectReason::InsufficientCash),
                "order {i}"
            );
            rejected += 1;
        }
    }
    assert!(
        accepted > 50 && rejected > 500,
        "{accepted} accepted, {rejected} rejected"
    );
    assert_eq!(
        d.engine.ledger().account(alice).unwrap().available(),
        Amount(available)
    );
    d.engine.check_invariants().unwrap();
}

fn status_changes(events: &[Event]) -> Vec<(Option<TxStatus>, TxStatus)> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::TransactionStatusChanged { from, to, .. } => Some((*from, *to)),
            _ => None,
        })
        .collect()
}

fn tx_id(events: &[Event]) -> TxId {
    events
        .iter()
        .find_map(|e| match e {
            Event::TransactionStatusChanged { tx, .. } => Some(*tx),
            _ => None,
        })
        .unwrap()
}

#[test]
fn withdrawal_pending_unknown_then_posted() {
    let mut d = Driver::krx_market(EngineConfig::small(), &[]);
    let a = d.funded_account("alice", 100_000);
    let e = d.apply(cmd::withdraw(a, 60_000, "wd-1"));
    assert_eq!(status_changes(&e), vec![(None, TxStatus::Pending)]);
    let tx = tx_id(&e);
    assert_eq!(
        d.engine.ledger().account(a).unwrap().available(),
        Amount(40_000),
        "held"
    );
    let e = d.apply(cmd::withdraw(a, 50_000, "wd-2"));
    assert_eq!(reject_reason(&e), Some(RejectReason::InsufficientCash));
    let e = d.apply(Command::ExpireStaleExternal {
        cutoff_ts: d.ts + 1,
    });
    assert_eq!(
        status_changes(&e),
        vec![(Some(TxStatus::Pending), TxStatus::Unknown)]
    );
    // UNKNOWN keeps the hold; only an explicit confirm or fail moves it.
    assert_eq!(
        d.engine.ledger().account(a).unwrap().available(),
        Amount(40_000)
    );
    let e = d.apply(Command::ConfirmTransaction { tx });
    assert_eq!(
        status_changes(&e),
        vec![(Some(TxStatus::Unknown), TxStatus::Posted)]
    );
    let a_now = d.engine.ledger().account(a).unwrap();
    assert_eq!(
        (a_now.cash(), a_now.cash_hold()),
        (Amount(40_000), Amount(0))
    );
    let e = d.apply(Command::ConfirmTransaction { tx });
    assert_eq!(
        reject_reason(&e),
        Some(RejectReason::InvalidTransition),
        "posted is final"
    );
    d.engine.check_invariants().unwrap();
}

#[test]
fn withdrawal_unknown_then_failed_releases_the_hold() {
    let mut d = Driver::krx_market(EngineConfig::small(), &[]);
    let a = d.funded_account("alice", 100_000);
    let tx = tx_id(&d.apply(cmd::withdraw(a, 60_000, "wd-1")));
    d.apply(Command::ExpireStaleExternal {
        cutoff_ts: d.ts + 1,
    });
    let e = d.apply(Command::FailTransaction { tx });
    assert_eq!(
        status_changes(&e),
        vec![(Some(TxStatus::Unknown), TxStatus::Failed)]
    );
    assert!(posted(&e).is_empty(), "a failed withdrawal posts nothing");
    let acct = d.engine.ledger().account(a).unwrap();
    assert_eq!(
        (acct.cash(), acct.cash_hold()),
        (Amount(100_000), Amount(0))
    );
    let e = d.apply(Command::ReverseTransaction { tx });
    assert_eq!(reject_reason(&e), Some(RejectReason::InvalidTransition));
    d.engine.check_invariants().unwrap();
}

#[test]
fn deposit_reversal_is_linked_both_ways_and_happens_once() {
    let mut d = Driver::krx_market(EngineConfig::small(), &[]);
    let a = d.funded_account("alice", 0);
    let dep = tx_id(&d.apply(cmd::deposit(a, 30_000, "dep-1")));
    let e = d.apply(Command::ReverseTransaction { tx: dep });
    let rev = posted(&e)[0];
    assert_eq!(rev.tx_type, TxType::Reversal);
    assert_eq!(
        line(&rev, LedgerAccount::UserCash(a), LineKind::Principal),
        -30_000
    );
    let links: Vec<_> = e
        .iter()
        .filter_map(|e| match e {
            Event::TransactionStatusChanged { tx, to, linked, .. } => Some((*tx, *to, *linked)),
            _ => None,
        })
        .collect();
    assert_eq!(
        links,
        vec![
            (rev.id, TxStatus::Posted, Some(dep)),
            (dep, TxStatus::Reversed, Some(rev.id))
        ]
    );
    assert_eq!(cash(&d, a), 0);
    let e = d.apply(Command::ReverseTransaction { tx: dep });
    assert_eq!(reject_reason(&e), Some(RejectReason::AlreadyReversed));
    let e = d.apply(Command::ReverseTransaction { tx: rev.id });
    assert_eq!(
        reject_reason(&e),
        Some(RejectReason::NotReversible),
        "a reversal is never reversed"
    );
    d.engine.check_invariants().unwrap();
}

#[test]
fn reversal_of_spent_cash_is_rejected() {
    let mut d = Driver::krx_market(EngineConfig::small(), &[("005930", Market::Kospi, 71_000)]);
    let a = d.funded_account("alice", 0);
    let dep = tx_id(&d.apply(cmd::deposit(a, 710_106, "dep-1")));
    d.apply(cmd::limit(a, 1, 1, Side::Buy, 71_000, 10)); // holds all of it
    let e = d.apply(Command::ReverseTransaction { tx: dep });
    assert_eq!(reject_reason(&e), Some(RejectReason::ReversalWouldOverdraw));
    assert_eq!(cash(&d, a), 710_106, "nothing moved");
    d.engine.check_invariants().unwrap();
}

#[test]
fn resent_deposit_with_the_same_reference_credits_once() {
    let mut d = Driver::krx_market(EngineConfig::small(), &[]);
    let a = d.funded_account("alice", 0);
    let first = d.apply(cmd::deposit(a, 10_000, "bank-77"));
    let again = d.apply(cmd::deposit(a, 10_000, "bank-77"));
    assert!(posted(&again).is_empty());
    assert!(matches!(
        again[0],
        Event::TransactionStatusChanged {
            resent: true,
            to: TxStatus::Posted,
            ..
        }
    ));
    assert_eq!(tx_id(&again), tx_id(&first));
    assert_eq!(cash(&d, a), 10_000);
    let e = d.apply(cmd::deposit(a, 99, "bank-77"));
    assert_eq!(reject_reason(&e), Some(RejectReason::ExternalRefReused));
    let b = d.funded_account("bob", 0);
    d.apply(cmd::deposit(b, 10_000, "bank-77"));
    assert_eq!(cash(&d, b), 10_000, "references are unique per account");
}

#[test]
fn transactions_outside_the_window_are_rejected_with_a_stable_code() {
    let config = EngineConfig {
        closed_tx_window_max: 2,
        ..EngineConfig::small()
    };
    let mut d = Driver::krx_market(config, &[]);
    let a = d.funded_account("alice", 0);
    let old = tx_id(&d.apply(cmd::deposit(a, 1, "d1")));
    d.apply(cmd::deposit(a, 1, "d2"));
    d.apply(cmd::deposit(a, 1, "d3"));
    let e = d.apply(Command::ReverseTransaction { tx: old });
    assert_eq!(
        reject_reason(&e),
        Some(RejectReason::TransactionNotInWindow)
    );
    let e = d.apply(Command::ReverseTransaction { tx: TxId(999) });
    assert_eq!(reject_reason(&e), Some(RejectReason::UnknownTransaction));
}

#[test]
fn adjustments_post_against_external_and_cannot_overdraw() {
    let mut d = Driver::krx_market(EngineConfig::small(), &[]);
    let a = d.funded_account("alice", 1_000);
    let e = d.apply(Command::Adjust {
        account: a,
        asset: Asset::Krw,
        amount: Amount(-1_001),
        external_ref: ExternalRef::new("fix-1").unwrap(),
        cost_price: Price(0),
    });
    assert_eq!(
        reject_reason(&e),
        Some(RejectReason::AdjustmentWouldOverdraw)
    );
    let e = d.apply(Command::Adjust {
        account: a,
        asset: Asset::Krw,
        amount: Amount(-400),
        external_ref: ExternalRef::new("fix-2").unwrap(),
        cost_price: Price(0),
    });
    let tx = posted(&e)[0];
    assert_eq!(tx.tx_type, TxType::Adjustment);
    assert_eq!(
        line(&tx, LedgerAccount::SystemExternal, LineKind::Principal),
        400
    );
    assert_eq!(cash(&d, a), 600);
    d.engine.check_invariants().unwrap();
}

/// Shares transferred in carry the cost they name; a sale realizes profit against it; a
/// resend is recognized, a different price under the same reference is refused; the reversal
/// takes the shares and their (average) cost back out.
#[test]
fn a_transfer_in_carries_its_cost_basis_and_its_reversal_removes_it() {
    let mut d = Driver::krx_market(EngineConfig::small(), &[("005930", Market::Kospi, 71_000)]);
    let bob = d.funded_account("bob", 0);
    let alice = d.funded_account("alice", 1_000_000);
    let transfer = |qty: i64, price: i64, r: &str| Command::Adjust {
        account: bob,
        asset: Asset::Shares(SymbolId(1)),
        amount: Amount(qty),
        external_ref: ExternalRef::new(r).unwrap(),
        cost_price: Price(price),
    };
    let position = |d: &Driver| *d.engine.ledger().position(bob, SymbolId(1)).unwrap();
    let e = d.apply(transfer(10, 50_000, "in-1"));
    let tx = posted(&e)[0];
    assert_eq!(tx.tx_type, TxType::Adjustment);
    assert_eq!(
        line(
            &tx,
            LedgerAccount::UserSecurities(bob, SymbolId(1)),
            LineKind::Principal
        ),
        10
    );
    assert_eq!(position(&d).cost_basis, Amount(500_000));
    // The same request again: recognized, nothing more; another price: refused.
    let again = d.apply(transfer(10, 50_000, "in-1"));
    assert!(
        again
            .iter()
            .any(|e| matches!(e, Event::TransactionStatusChanged { resent: true, .. }))
    );
    assert_eq!(position(&d).qty(), Qty(10));
    let other = d.apply(transfer(10, 60_000, "in-1"));
    assert_eq!(reject_reason(&other), Some(RejectReason::ExternalRefReused));
    // A cost price on cash or on a removal is not a transfer in.
    let e = d.apply(Command::Adjust {
        account: bob,
        asset: Asset::Krw,
        amount: Amount(5),
        external_ref: ExternalRef::new("cash").unwrap(),
        cost_price: Price(1),
    });
    assert_eq!(reject_reason(&e), Some(RejectReason::InvalidPrice));
    let e = d.apply(transfer(-1, 50_000, "out-1"));
    assert_eq!(reject_reason(&e), Some(RejectReason::InvalidPrice));
    // Bob sells 4 at 71,000: notional 284,000, commission 42, taxes 142 + 426; the sale
    // removes floor(500,000 x 4 / 10) = 200,000 of cost and realizes 283,390 - 200,000.
    d.apply(cmd::limit(alice, 1, 1, Side::Buy, 71_000, 4));
    d.apply(cmd::limit(bob, 1, 1, Side::Sell, 71_000, 4));
    let p = position(&d);
    assert_eq!((p.qty(), p.cost_basis), (Qty(6), Amount(300_000)));
    assert_eq!(p.realized_pnl, Amount(284_000 - 42 - 142 - 426 - 200_000));
    // Reversing the transfer needs 10 available shares: only 6 are left.
    let e = d.apply(Command::ReverseTransaction { tx: tx.id });
    assert_eq!(reject_reason(&e), Some(RejectReason::ReversalWouldOverdraw));
    d.apply(transfer(4, 0, "gift"));
    let e = d.apply(Command::ReverseTransaction { tx: tx.id });
    assert!(reject_reason(&e).is_none(), "{e:?}");
    let p = position(&d);
    assert_eq!((p.qty(), p.cost_basis), (Qty(0), Amount(0)));
    d.engine.check_invariants().unwrap();
}

#[test]
fn idempotent_resend_returns_the_same_order_and_creates_nothing() {
    let mut d = Driver::krx_market(EngineConfig::small(), &[("005930", Market::Kospi, 71_000)]);
    let a = d.funded_account("alice", 10_000_000);
    let first = d.apply(cmd::limit(a, 42, 1, Side::Buy, 70_000, 3));
    let again = d.apply(cmd::limit(a, 42, 1, Side::Buy, 70_000, 3));
    assert_eq!(accepted_id(&again), accepted_id(&first));
    assert!(matches!(
        again[0],
        Event::OrderAccepted { resent: true, .. }
    ));
    assert_eq!(again.len(), 1, "no book change, nothing created");
    assert_eq!(d.engine.live_order_count(), 1);
    let other = d.apply(cmd::limit(a, 42, 1, Side::Buy, 70_000, 4));
    assert_eq!(reject_reason(&other), Some(RejectReason::DuplicateKey));
    // A rejected request's resend returns the same reject, even once it would now pass.
    let r1 = d.apply(cmd::limit(a, 43, 1, Side::Sell, 70_000, 3));
    assert_eq!(reject_reason(&r1), Some(RejectReason::InsufficientShares));
    give_shares(&mut d, a, 1, 3);
    let r2 = d.apply(cmd::limit(a, 43, 1, Side::Sell, 70_000, 3));
    assert!(matches!(
        r2[0],
        Event::OrderRejected {
            resent: true,
            reason: RejectReason::InsufficientShares,
            ..
        }
    ));
    // Cancels carry their own keys: a resent cancel is answered, not applied twice.
    let id = accepted_id(&first).unwrap();
    let c1 = d.apply(cmd::cancel(a, 44, id.0));
    assert!(matches!(c1[0], Event::OrderCancelled { .. }));
    let c2 = d.apply(cmd::cancel(a, 44, id.0));
    assert!(matches!(c2[0], Event::RequestResent { .. }));
    // Keys reset at StartOfDay.
    d.apply(Command::EndOfDay {
        trading_day: 20_260_105,
    });
    d.apply(Command::StartOfDay {
        trading_day: 20_260_106,
        base_prices: vec![],
    });
    d.apply(Command::SetMarketPhase {
        phase: MarketPhase::Continuous,
    });
    let next_day = d.apply(cmd::limit(a, 42, 1, Side::Buy, 70_000, 4));
    assert!(matches!(
        next_day[0],
        Event::OrderAccepted { resent: false, .. }
    ));
    d.engine.check_invariants().unwrap();
}

#[test]
fn a_full_key_table_rejects_and_never_evicts() {
    let config = EngineConfig {
        orders_per_account_day_max: 3,
        ..EngineConfig::small()
    };
    let mut d = Driver::krx_market(config, &[("005930", Market::Kospi, 71_000)]);
    let a = d.funded_account("alice", 10_000_000);
    for k in 1..=3 {
        assert!(accepted_id(&d.apply(cmd::limit(a, k, 1, Side::Buy, 70_000, 1))).is_some());
    }
    let e = d.apply(cmd::limit(a, 4, 1, Side::Buy, 70_000, 1));
    assert_eq!(reject_reason(&e), Some(RejectReason::KeysFull));
    // The old keys still answer resends.
    let e = d.apply(cmd::limit(a, 1, 1, Side::Buy, 70_000, 1));
    assert!(matches!(e[0], Event::OrderAccepted { resent: true, .. }));
    // KeysFull did not use the key: it is still free tomorrow... and today it stays full.
    let e = d.apply(cmd::limit(a, 4, 1, Side::Buy, 70_000, 1));
    assert_eq!(reject_reason(&e), Some(RejectReason::KeysFull));
}

#[test]
fn per_account_event_sequence_is_dense() {
    let mut d = Driver::krx_market(EngineConfig::small(), &[("005930", Market::Kospi, 71_000)]);
    let a = d.funded_account("alice", 10_000_000);
    let b = d.funded_account("bob", 0);
    give_shares(&mut d, b, 1, 10);
    let mut events = Vec::new();
    events.extend(d.apply(cmd::limit(b, 1, 1, Side::Sell, 71_000, 5)));
    events.extend(d.apply(cmd::limit(a, 1, 1, Side::Buy, 71_000, 2)));
    events.extend(d.apply(cmd::limit(a, 2, 1, Side::Buy, 71_000, 9)));
    events.extend(d.apply(cmd::limit(a, 3, 1, Side::Buy, 1, 1)));
    let mut seqs: std::collections::BTreeMap<u32, Vec<u64>> = Default::default();
    for e in &events {
        for (acct, seq) in e.recipients() {
            if seq > 0 {
                seqs.entry(acct.0).or_default().push(seq);
            }
        }
    }
    for (acct, s) in seqs {
        let start = s[0];
        assert_eq!(
            s,
            (start..start + s.len() as u64).collect::<Vec<_>>(),
            "account {acct}"
        );
    }
}

/// docs/ledger.md: at a cumulative notional of 20,000 KRW on KOSPI, a 1-won fill meets the
/// rounding step of the commission and of both sell taxes at once: 3 won of charges on 1 won
/// of proceeds. A fill never charges a seller more than its notional; the rest moves to the
/// order's next fill.
#[test]
fn a_fill_never_charges_a_seller_more_than_its_notional() {
    let mut d = Driver::krx_market(EngineConfig::small(), &[("PENNY1", Market::Kospi, 1)]);
    let buyer = d.funded_account("buyer", 1_000_000);
    let seller = d.funded_account("seller", 0);
    give_shares(&mut d, seller, 1, 20_001);
    d.apply(cmd::limit(seller, 1, 1, Side::Sell, 1, 20_001));
    let seller_charges = |e: &[Event]| -> (i64, i64) {
        let tx = posted(e)[0];
        let paid = [
            LineKind::Commission,
            LineKind::SecuritiesTransactionTax,
            LineKind::RuralSpecialTax,
        ]
        .iter()
        .map(|k| -line(&tx, LedgerAccount::UserCash(seller), *k))
        .sum();
        (
            line(&tx, LedgerAccount::UserCash(seller), LineKind::Notional),
            paid,
        )
    };
    // 19,999 won: commission floor(2.99985) = 2, taxes floor(9.9995) = 9, floor(29.9985) = 29.
    let e = d.apply(cmd::limit(buyer, 1, 1, Side::Buy, 1, 19_999));
    assert_eq!(seller_charges(&e), (19_999, 40));
    // The 20,000th won: every component steps up by 1 (3, 10, 30), but 1 won covers only the
    // commission.
    let e = d.apply(cmd::limit(buyer, 2, 1, Side::Buy, 1, 1));
    assert_eq!(seller_charges(&e), (1, 1));
    assert_eq!(cash(&d, seller), 19_999 - 40);
    // At 20,001 the floors are still (3, 10, 30): 2 won are owed, and this 1-won fill pays 1.
    let e = d.apply(cmd::limit(buyer, 3, 1, Side::Buy, 1, 1));
    assert_eq!(seller_charges(&e), (1, 1));
    d.engine.check_invariants().unwrap();
}
