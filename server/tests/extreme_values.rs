//! The extremes of every numeric field against a live node: i64::MIN and i64::MAX in each
//! price, quantity and amount, u64::MAX (and 0) in each id. Through the gateway, each gets a
//! reject with its stable code; a value beyond the engine's ranges is refused before the
//! journal (the reject carries no account sequence number). Submitted straight into the input
//! ring, past the gateway, the same values are journaled and rejected by the engine. Either
//! way the node keeps serving, and a restart replays the journal, extremes included, to the
//! same state.

mod support;

use kuku_engine::{
    AccountId, Amount, Asset, ClientOrderId, Command, ExternalRef, FeeSchedule, Market, NewOrder,
    OrderId, OrderType, Price, Qty, RegisterSymbol, RejectReason, Side, SymbolCode, SymbolName,
    TickRule, TimeInForce, TxId,
};
use kuku_gateway::client::{LoginOptions, OrderSpec};
use kuku_gateway::protocol::*;
use support::*;

const MAX: i64 = i64::MAX;
const MIN: i64 = i64::MIN;

fn order_reject(m: &Message) -> (u16, u64) {
    match m {
        Message::OrderRejected(r) => (r.reason, r.acct_seq),
        other => panic!("expected OrderRejected, got {other:?}"),
    }
}

fn request_reject(m: &Message) -> (u16, u64) {
    match m {
        Message::RequestRejected(r) => (r.reason, r.acct_seq),
        other => panic!("expected RequestRejected, got {other:?}"),
    }
}

#[test]
fn extremes_in_every_field_get_rejects_and_the_node_keeps_serving_and_replays() {
    let mut t = TestNode::start();
    let (alice, _) = t.funded_account("alice", 10_000_000_000);
    t.give_shares(alice, 100);
    let options = LoginOptions {
        no_replay: true,
        ..LoginOptions::default()
    };
    let (mut c, _) = t.trader(alice, options);
    let resting = accepted(&c.place(buy(3, 110_000)).expect("placed")).order_id;

    // Orders: beyond the ranges is refused by the gateway (acct_seq 0: never journaled);
    // below them the engine rejects (acct_seq > 0).
    let limit = |side, qty, price| OrderSpec::limit(code(SAMSUNG), side, Qty(qty), Price(price));
    let market = |side, qty, price| OrderSpec {
        price: Price(price),
        ..OrderSpec::market(code(SAMSUNG), side, Qty(qty))
    };
    let out = RejectReason::OutOfRange.code();
    for (spec, code, journaled) in [
        (limit(Side::Buy, 1, MAX), out, false),
        (limit(Side::Sell, 1, MAX), out, false),
        (limit(Side::Buy, MAX, 110_000), out, false),
        (limit(Side::Sell, MAX, 110_000), out, false),
        // A MARKET order carries no price: any other than 0 is refused at the door.
        (
            market(Side::Buy, 1, MAX),
            GatewayCode::MarketOrderPrice.code(),
            false,
        ),
        (
            market(Side::Sell, 1, MIN),
            GatewayCode::MarketOrderPrice.code(),
            false,
        ),
        (
            limit(Side::Buy, 1, MIN),
            RejectReason::InvalidPrice.code(),
            true,
        ),
        (
            limit(Side::Buy, MIN, 110_000),
            RejectReason::InvalidQty.code(),
            true,
        ),
        (
            market(Side::Sell, MIN, 0),
            RejectReason::InvalidQty.code(),
            true,
        ),
    ] {
        let (reason, acct_seq) = order_reject(&c.place(spec).expect("answered"));
        assert_eq!(reason, code, "{spec:?}");
        assert_eq!(acct_seq > 0, journaled, "{spec:?}: acct_seq {acct_seq}");
    }
    for (qty, price, code) in [
        (5, MAX, out),
        (MAX, 110_000, out),
        (MIN, 110_000, RejectReason::InvalidQty.code()),
        (5, MIN, RejectReason::InvalidPrice.code()),
    ] {
        let reply = c.modify(resting, Qty(qty), Price(price)).expect("answered");
        assert_eq!(request_reject(&reply).0, code, "modify {qty} @ {price}");
    }
    for id in [u64::MAX, 0] {
        let reply = c.cancel(OrderId(id)).expect("answered");
        assert_eq!(request_reject(&reply).0, RejectReason::UnknownOrder.code());
    }

    // Admin requests.
    let mut admin = t.admin();
    let xref = |s: &str| ExternalRef::new(s).unwrap();
    for (amount, r) in [(MAX, "d-max"), (MIN, "d-min")] {
        let result = admin
            .deposit(alice, Amount(amount), xref(r))
            .expect("answered");
        assert_eq!(
            result.code,
            RejectReason::InvalidAmount.code(),
            "deposit {amount}"
        );
        let result = admin
            .withdraw(alice, Amount(amount), xref(r))
            .expect("answered");
        assert_eq!(
            result.code,
            RejectReason::InvalidAmount.code(),
            "withdraw {amount}"
        );
    }
    for tx in [u64::MAX, 0] {
        for result in [
            admin.confirm(TxId(tx)),
            admin.fail(TxId(tx)),
            admin.reverse(TxId(tx)),
        ] {
            let result = result.expect("answered");
            assert_eq!(
                result.code,
                RejectReason::UnknownTransaction.code(),
                "tx {tx}"
            );
        }
    }
    let register = |admin: &mut kuku_gateway::client::AdminClient, tick, base, lot| {
        admin
            .register_symbol(
                code("NEWSYM"),
                SymbolName::new("new").unwrap(),
                Market::Kospi,
                tick,
                Price(base),
                true,
                Qty(lot),
            )
            .expect("answered")
            .code
    };
    assert_eq!(register(&mut admin, TickRule::Krx, MAX, 1), out);
    assert_eq!(register(&mut admin, TickRule::Fixed(MAX), 1_000, 1), out);
    assert_eq!(register(&mut admin, TickRule::Krx, 1_000, MAX), out);
    assert_eq!(
        register(&mut admin, TickRule::Krx, MIN, 1),
        RejectReason::InvalidBasePrice.code()
    );
    assert_eq!(
        register(&mut admin, TickRule::Krx, 1_000, MIN),
        RejectReason::InvalidLotSize.code()
    );
    for rate in [MAX, MIN] {
        let mut fees = FeeSchedule::KRX_2026;
        fees.commission_ppm = rate;
        let result = admin.set_fees(fees).expect("answered");
        assert_eq!(result.code, RejectReason::InvalidFeeSchedule.code());
    }

    // Past the gateway: the same extremes go into the journal, and the engine rejects them.
    let samsung = t.samsung();
    let node = t.node.as_mut().unwrap();
    let order = |price, qty| {
        Command::PlaceOrder(NewOrder {
            account: alice,
            client_order_id: ClientOrderId(1 << 40),
            symbol: samsung,
            side: Side::Buy,
            order_type: OrderType::Limit,
            tif: TimeInForce::Day,
            price: Price(price),
            qty: Qty(qty),
        })
    };
    for command in [
        order(MAX, 1),
        order(110_000, MAX),
        Command::ModifyOrder {
            account: alice,
            request_id: ClientOrderId(1 << 41),
            order_id: resting,
            new_qty: Qty(MAX),
            new_price: Price(MAX),
        },
        Command::QuoteUpdate {
            symbol: samsung,
            bid_price: Price(MAX),
            bid_qty: Qty(MAX),
            ask_price: Price(MAX),
            ask_qty: Qty(1),
        },
        Command::RegisterSymbol(RegisterSymbol {
            code: SymbolCode::new("POISON").unwrap(),
            name: SymbolName::new("poison").unwrap(),
            market: Market::Kospi,
            tick_rule: TickRule::Krx,
            base_price: Price(MAX),
            banded: true,
            lot_size: Qty(1),
        }),
        Command::Adjust {
            account: alice,
            asset: Asset::Shares(samsung),
            amount: Amount(MIN),
            external_ref: xref("adj-min"),
            cost_price: kuku_engine::Price(0),
        },
        Command::Deposit {
            account: AccountId(u32::MAX),
            amount: Amount(MAX),
            external_ref: xref("dep-max"),
        },
        Command::ExpireStaleExternal {
            cutoff_ts: u64::MAX,
        },
    ] {
        node.submit_blocking(command);
    }
    // Still serving: a fresh order is accepted.
    let second = accepted(&c.place(buy(2, 109_900)).expect("served")).order_id;
    let money = |v: kuku_gateway::client::AccountView| {
        let s = v.snapshot;
        let positions: Vec<_> = v
            .positions
            .iter()
            .map(|p| (p.symbol, p.qty, p.qty_hold, p.cost_basis))
            .collect();
        (s.cash, s.cash_hold, s.acct_seq, positions)
    };
    let before = money(c.account().expect("account"));

    // A restart replays every journaled command, extremes included, to the same state.
    drop(c);
    drop(admin);
    let t = t.restart();
    let (mut c, _) = t.trader(alice, options);
    assert_eq!(money(c.account().expect("account")), before);
    for id in [resting, second] {
        let status = c
            .order_status(id)
            .expect("answered")
            .expect("the order survived");
        assert_eq!(status.order_id, id);
    }
    accepted(&c.place(buy(1, 109_800)).expect("served after the restart"));
}
