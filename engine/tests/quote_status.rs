//! The stale-quote policy (ADR-023): a journaled `SetQuoteStatus` decides, never a clock.
//! Stale withdraws the symbol's synthetic quote orders and refuses new quotes (5007) and
//! MARKET orders (2016); LIMIT orders are accepted and resting orders keep matching each
//! other; Fresh lets quotes in again. Replay and snapshot + replay decide the same.

use kuku_engine::testkit::{Driver, accepted_id, cmd, reject_reason, trades};
use kuku_engine::*;

const SAMSUNG: u32 = 1;
const HYNIX: u32 = 2;

fn market() -> (Driver, AccountId, AccountId) {
    let mut d = Driver::krx_market(
        EngineConfig::small(),
        &[
            ("005930", Market::Kospi, 71_000),
            ("000660", Market::Kospi, 120_500),
        ],
    );
    let buyer = d.funded_account("buyer", 1_000_000_000);
    let seller = d.funded_account("seller", 0);
    d.apply(Command::Adjust {
        account: seller,
        asset: Asset::Shares(SymbolId(SAMSUNG)),
        amount: Amount(1_000),
        external_ref: ExternalRef::new("seed").expect("ref"),
        cost_price: Price(0),
    });
    (d, buyer, seller)
}

fn status(symbol: u32, status: QuoteStatus) -> Command {
    Command::SetQuoteStatus {
        symbol: SymbolId(symbol),
        status,
    }
}

fn synthetic_orders(d: &Driver) -> usize {
    let snap = d.engine.snapshot();
    snap.orders
        .iter()
        .filter(|o| o.account == AccountId::SYSTEM_MARKET)
        .count()
}

#[test]
fn stale_withdraws_synthetic_quotes_and_answers_with_the_status() {
    let (mut d, _, _) = market();
    d.apply(cmd::quote(SAMSUNG, 70_900, 100, 71_100, 100));
    d.apply(cmd::quote(HYNIX, 120_000, 10, 121_000, 10));
    assert_eq!(synthetic_orders(&d), 4);
    let events = d.apply(status(SAMSUNG, QuoteStatus::Stale));
    let withdrawn = events
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
    assert_eq!(withdrawn, 2);
    assert_eq!(
        events.last(),
        Some(&Event::QuoteStatusSet {
            symbol: SymbolId(SAMSUNG),
            status: QuoteStatus::Stale
        })
    );
    assert_eq!(synthetic_orders(&d), 2, "the other symbol keeps its quotes");
    d.engine.check_invariants().expect("invariants");
}

#[test]
fn a_stale_symbol_rejects_quotes_and_market_orders_with_stable_codes() {
    let (mut d, buyer, _) = market();
    d.apply(status(SAMSUNG, QuoteStatus::Stale));
    let e = d.apply(cmd::quote(SAMSUNG, 70_900, 100, 71_100, 100));
    assert_eq!(reject_reason(&e), Some(RejectReason::QuoteSourceStale));
    assert_eq!(RejectReason::QuoteSourceStale.code(), 5007);
    let e = d.apply(cmd::market(buyer, 1, SAMSUNG, Side::Buy, 10));
    assert_eq!(reject_reason(&e), Some(RejectReason::QuoteStale));
    assert_eq!(RejectReason::QuoteStale.code(), 2016);
    // The other symbol is unaffected.
    let e = d.apply(cmd::quote(HYNIX, 120_000, 10, 121_000, 10));
    assert_eq!(reject_reason(&e), None);
}

#[test]
fn resting_orders_keep_matching_each_other_while_quotes_are_stale() {
    let (mut d, buyer, seller) = market();
    d.apply(status(SAMSUNG, QuoteStatus::Stale));
    let ask = d.apply(cmd::limit(seller, 1, SAMSUNG, Side::Sell, 71_000, 10));
    assert!(accepted_id(&ask).is_some());
    let bid = d.apply(cmd::limit(buyer, 2, SAMSUNG, Side::Buy, 71_000, 4));
    assert_eq!(
        trades(&bid).iter().map(|t| (t.0, t.1)).collect::<Vec<_>>(),
        vec![(71_000, 4)]
    );
    d.engine.check_invariants().expect("invariants");
}

#[test]
fn fresh_again_lets_quotes_and_market_orders_in() {
    let (mut d, buyer, _) = market();
    d.apply(status(SAMSUNG, QuoteStatus::Stale));
    d.apply(status(SAMSUNG, QuoteStatus::Fresh));
    let e = d.apply(cmd::quote(SAMSUNG, 70_900, 100, 71_100, 100));
    assert_eq!(reject_reason(&e), None);
    let e = d.apply(cmd::market(buyer, 1, SAMSUNG, Side::Buy, 10));
    assert_eq!(trades(&e)[0].0, 71_100);
}

#[test]
fn an_unknown_symbol_is_rejected_and_changes_nothing() {
    let (mut d, _, _) = market();
    d.apply(cmd::quote(SAMSUNG, 70_900, 100, 71_100, 100));
    let mut before = d.engine.snapshot();
    for symbol in [0, 3, u32::MAX] {
        let e = d.apply(status(symbol, QuoteStatus::Stale));
        assert_eq!(reject_reason(&e), Some(RejectReason::UnknownSymbol));
    }
    let mut after = d.engine.snapshot();
    // Only the seq and the time moved.
    for snap in [&mut before, &mut after] {
        snap.last_seq = 0;
        snap.now_ts = 0;
    }
    assert_eq!(after, before);
}

#[test]
fn replay_and_snapshot_restore_decide_exactly_as_the_live_run() {
    let (mut d, buyer, seller) = market();
    d.apply(cmd::quote(SAMSUNG, 70_900, 100, 71_100, 100));
    d.apply(status(SAMSUNG, QuoteStatus::Stale));
    let snap = d.engine.snapshot();
    let at_snapshot = d.journal.len();
    let live_tail: Vec<Vec<Event>> = vec![
        d.apply(cmd::market(buyer, 1, SAMSUNG, Side::Buy, 10)),
        d.apply(cmd::limit(seller, 1, SAMSUNG, Side::Sell, 71_000, 5)),
        d.apply(status(SAMSUNG, QuoteStatus::Fresh)),
        d.apply(cmd::quote(SAMSUNG, 70_900, 100, 71_100, 100)),
    ];
    // Whole replay from the journal.
    let mut replay = Engine::new(EngineConfig::small());
    for envelope in &d.journal {
        replay.apply(envelope, &mut Vec::new());
    }
    assert_eq!(replay.state_hash(), d.engine.state_hash());
    // Snapshot at the stale point, then the tail.
    let mut restored = Engine::from_snapshot(&snap).expect("restore");
    for (envelope, live) in d.journal[at_snapshot..].iter().zip(&live_tail) {
        let mut events = Vec::new();
        restored.apply(envelope, &mut events);
        assert_eq!(&events, live);
    }
    assert_eq!(restored.state_hash(), d.engine.state_hash());
}
