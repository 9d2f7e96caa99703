//! `BeginEpoch`: after it, every new order id, trade id, transaction id and per-account
//! sequence number is in the epoch's range, above anything issued before (so a lost tail's ids
//! are never reissued); nothing is lowered by an older epoch; an epoch out of range is rejected
//! and changes nothing; the read model follows the engine.

use kuku_engine::epochs::{EPOCH_MAX, epoch_floor, epoch_of};
use kuku_engine::readmodel::ReadModel;
use kuku_engine::testkit::{Driver, accepted_id, cmd, reject_reason};
use kuku_engine::*;

fn market() -> (Driver, AccountId, AccountId) {
    let mut d = Driver::krx_market(EngineConfig::small(), &[("005930", Market::Kospi, 71_000)]);
    let buyer = d.funded_account("buyer", 100_000_000);
    let seller = d.funded_account("seller", 100_000_000);
    d.apply(Command::Adjust {
        account: seller,
        asset: Asset::Shares(SymbolId(1)),
        amount: Amount(1_000),
        external_ref: ExternalRef::new("shares").unwrap(),
        cost_price: Price(0),
    });
    (d, buyer, seller)
}

/// The largest acct_seq an event carries for `account`.
fn seq_of(events: &[Event], account: AccountId) -> u64 {
    events
        .iter()
        .flat_map(|e| e.recipients())
        .filter(|(a, _)| *a == account)
        .map(|(_, s)| s)
        .max()
        .unwrap_or(0)
}

fn tx_of(events: &[Event]) -> Option<TxId> {
    events.iter().find_map(|e| match e {
        Event::TransactionStatusChanged { tx, .. } => Some(*tx),
        _ => None,
    })
}

#[test]
fn a_new_epoch_moves_every_identifier_into_its_range() {
    let (mut d, buyer, seller) = market();
    let before = d.apply(cmd::limit(buyer, 1, 1, Side::Buy, 71_000, 5));
    let old_order = accepted_id(&before).unwrap();
    let old_seq = seq_of(&before, buyer);
    assert!(epoch_of(old_order.0) == 0 && epoch_of(old_seq) == 0);

    let began = d.apply(Command::BeginEpoch { epoch: 3 });
    let floor = epoch_floor(3).unwrap();
    assert_eq!(
        began,
        vec![Event::EpochBegan {
            epoch: 3,
            id_floor: floor
        }]
    );

    let order = d.apply(cmd::limit(buyer, 2, 1, Side::Buy, 71_000, 5));
    let id = accepted_id(&order).unwrap();
    assert!(id.0 >= floor && epoch_of(id.0) == 3, "{id:?}");
    assert!(seq_of(&order, buyer) > floor);
    let fill = d.apply(cmd::limit(seller, 1, 1, Side::Sell, 71_000, 10));
    let trades: Vec<(TradeId, TxId)> = fill
        .iter()
        .filter_map(|e| match e {
            Event::Trade { trade_id, tx, .. } => Some((*trade_id, *tx)),
            _ => None,
        })
        .collect();
    assert_eq!(trades.len(), 2, "{fill:?}");
    for (trade, tx) in trades {
        assert_eq!((epoch_of(trade.0), epoch_of(tx.0)), (3, 3));
    }
    assert_eq!(epoch_of(seq_of(&fill, seller)), 3);
    let deposit = d.apply(cmd::deposit(buyer, 1_000, "after"));
    assert_eq!(epoch_of(tx_of(&deposit).unwrap().0), 3);

    // An account opened in the epoch starts in its range too.
    let opened = d.apply(cmd::open_account("newcomer"));
    let newcomer = opened
        .iter()
        .find_map(|e| match e {
            Event::AccountOpened { account, .. } => Some(*account),
            _ => None,
        })
        .unwrap();
    assert_eq!(seq_of(&opened, newcomer), floor + 1);

    // An older (or the same) epoch lowers nothing.
    let counters = d.apply(Command::BeginEpoch { epoch: 1 });
    assert!(matches!(counters[..], [Event::EpochBegan { epoch: 1, .. }]));
    let later = d.apply(cmd::limit(buyer, 3, 1, Side::Buy, 70_000, 1));
    assert!(accepted_id(&later).unwrap().0 > id.0);

    // Out of range: rejected, nothing changes.
    let state = kuku_engine::hostile::State::of(&d.engine);
    for epoch in [EPOCH_MAX + 1, u64::MAX] {
        let rejected = d.apply(Command::BeginEpoch { epoch });
        assert_eq!(reject_reason(&rejected), Some(RejectReason::OutOfRange));
        assert_eq!(kuku_engine::hostile::State::of(&d.engine), state);
    }
    let next = d.apply(cmd::limit(buyer, 4, 1, Side::Buy, 70_000, 1));
    assert_eq!(
        accepted_id(&next).unwrap().0,
        accepted_id(&later).unwrap().0 + 1,
        "the counters did not move"
    );
    d.engine.check_invariants().unwrap();

    // The read model folded from the events agrees with the engine's.
    let mut folded = ReadModel::default();
    let mut replayed = Engine::new(EngineConfig::small());
    for envelope in &d.journal {
        let mut events = Vec::new();
        replayed.apply(envelope, &mut events);
        for e in &events {
            folded.apply(envelope.seq, envelope.ts, e);
        }
    }
    assert_eq!(replayed.state_hash(), d.engine.state_hash());
    let from_engine = ReadModel::from_engine(&d.engine);
    for (account, view) in &from_engine.accounts {
        assert_eq!(
            folded.accounts[account].acct_seq, view.acct_seq,
            "{account:?}"
        );
    }
}

#[test]
fn epoch_zero_changes_no_identifier() {
    let (mut d, buyer, _) = market();
    let first = accepted_id(&d.apply(cmd::limit(buyer, 1, 1, Side::Buy, 71_000, 1))).unwrap();
    d.apply(Command::BeginEpoch { epoch: 0 });
    let second = accepted_id(&d.apply(cmd::limit(buyer, 2, 1, Side::Buy, 71_000, 1))).unwrap();
    assert_eq!(second.0, first.0 + 1);
}
