//! The TCP gateway end to end against a real node: authentication, the admin session,
//! rate limits, reconnect with replay (also after a restart), cancel-on-disconnect, and
//! idempotent resends.

mod support;

use kuku_engine::{
    AccountId, Amount, ClientOrderId, ExternalRef, Price, Qty, RejectReason, TxStatus,
};
use kuku_gateway::GatewayError;
use kuku_gateway::client::{AdminClient, Connection, LoginOptions};
use kuku_gateway::protocol::*;
use std::time::Duration;
use support::*;

const WAIT: Duration = Duration::from_secs(10);

#[test]
fn wrong_token_is_rejected_and_a_good_one_logs_in() {
    let t = TestNode::start();
    let (alice, _) = t.funded_account("alice", 1_000_000);
    let wrong = t.token(AccountId(alice.0 + 1));
    let e =
        kuku_gateway::client::TradingClient::login(t.addr, alice, wrong, LoginOptions::default())
            .err()
            .expect("rejected");
    assert!(
        matches!(e, GatewayError::LoginRejected { code } if code == GatewayCode::InvalidToken.code()),
        "{e}"
    );
    let e = AdminClient::login(t.addr, [0; 32]).err().expect("rejected");
    assert!(
        matches!(e, GatewayError::LoginRejected { code: 9010 }),
        "{e}"
    );
    // An account that does not exist, with its (valid) token.
    let ghost = AccountId(200);
    let e = kuku_gateway::client::TradingClient::login(
        t.addr,
        ghost,
        t.token(ghost),
        LoginOptions::default(),
    )
    .err()
    .expect("rejected");
    assert!(
        matches!(e, GatewayError::LoginRejected { code: 3001 }),
        "{e}"
    );
    let (client, replayed) = t.trader(alice, LoginOptions::default());
    assert_eq!(client.accepted.account, alice);
    // last_seen 0: the whole held stream (opened, deposit).
    assert_eq!(replayed.len(), 2, "{replayed:?}");
    client.logout().unwrap();
}

#[test]
fn anything_before_login_is_a_protocol_error_and_a_disconnect() {
    let t = TestNode::start();
    let mut c = Connection::connect(t.addr).unwrap();
    c.send(AccountQuery {
        request_id: 1,
        account: AccountId(0),
    })
    .unwrap();
    match c.recv(WAIT).unwrap() {
        Message::ProtocolError(p) => {
            assert_eq!(p.code, ProtocolCode::NotLoggedIn.code());
            assert_eq!(p.msg_type, AccountQuery::TYPE);
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(c.recv(WAIT), Err(GatewayError::Closed)));
}

#[test]
fn a_trading_session_acts_only_on_its_own_account() {
    let t = TestNode::start();
    let (alice, _) = t.funded_account("alice", 50_000_000);
    let (bob, _) = t.funded_account("bob", 50_000_000);
    let (mut a, _) = t.trader(alice, LoginOptions::default());
    let (mut b, _) = t.trader(bob, LoginOptions::default());
    let order = accepted(&a.place(buy(1, 119_000)).unwrap());
    // Bob can neither see nor cancel Alice's order, nor read her account.
    assert_eq!(
        b.order_status(order.order_id).unwrap(),
        Err(RejectReason::UnknownOrder.code())
    );
    match b.cancel(order.order_id).unwrap() {
        Message::RequestRejected(r) => assert_eq!(r.reason, RejectReason::UnknownOrder.code()),
        other => panic!("{other:?}"),
    }
    b.send(AccountQuery {
        request_id: 7,
        account: alice,
    })
    .unwrap();
    let done = next_picked(&mut b, |m| match m {
        Message::QueryDone(d) => Some(d),
        _ => None,
    });
    assert_eq!(done.code, GatewayCode::NotPermitted.code());
    // An admin request on a trading session is a protocol error.
    b.send(IssueToken {
        request_id: 1,
        account: bob,
    })
    .unwrap();
    let e = b.next_message(WAIT).expect_err("disconnected");
    assert!(
        matches!(e, GatewayError::ServerProtocolError { code: 9056 }),
        "{e}"
    );
    // Alice's order is untouched.
    let status = a.order_status(order.order_id).unwrap().unwrap();
    assert_eq!(status.state, WireOrderState::New);
}

#[test]
fn admin_session_runs_accounts_money_symbols_fees_and_tokens() {
    let t = TestNode::start();
    let mut admin = t.admin();
    let ext = |s: &str| ExternalRef::new(s).unwrap();
    let opened = admin.open_account(ext("carol")).unwrap();
    assert_eq!((opened.code, opened.request_type), (0, OpenAccount::TYPE));
    let carol = opened.account;
    let again = admin.open_account(ext("carol")).unwrap();
    assert!(again.resent && again.account == carol, "{again:?}");

    let dep = admin
        .deposit(carol, Amount(10_000_000), ext("dep-1"))
        .unwrap();
    assert_eq!(dep.tx_status, Some(TxStatus::Posted));
    let resent = admin
        .deposit(carol, Amount(10_000_000), ext("dep-1"))
        .unwrap();
    assert!(resent.resent && resent.tx_id == dep.tx_id, "{resent:?}");

    let wd = admin
        .withdraw(carol, Amount(1_000_000), ext("wd-1"))
        .unwrap();
    assert_eq!(wd.tx_status, Some(TxStatus::Pending));
    let view = admin.account(carol).unwrap();
    assert_eq!(view.snapshot.cash_hold, Amount(1_000_000));
    let confirmed = admin.confirm(wd.tx_id).unwrap();
    assert_eq!(confirmed.tx_status, Some(TxStatus::Posted));
    let wd2 = admin.withdraw(carol, Amount(500_000), ext("wd-2")).unwrap();
    assert_eq!(
        admin.fail(wd2.tx_id).unwrap().tx_status,
        Some(TxStatus::Failed)
    );
    let dep2 = admin
        .deposit(carol, Amount(5_000_000), ext("dep-2"))
        .unwrap();
    let reversal = admin.reverse(dep2.tx_id).unwrap();
    assert_eq!(reversal.code, 0, "{reversal:?}");
    assert_ne!(reversal.tx_id, dep2.tx_id, "the reversal's own id");
    let twice = admin.reverse(dep2.tx_id).unwrap();
    assert_eq!(twice.code, RejectReason::AlreadyReversed.code());
    let overdraw = admin.reverse(dep.tx_id).unwrap();
    assert_eq!(overdraw.code, RejectReason::ReversalWouldOverdraw.code());
    let view = admin.account(carol).unwrap();
    assert_eq!(
        (view.snapshot.cash, view.snapshot.cash_hold),
        (Amount(9_000_000), Amount(0))
    );

    let listed = admin
        .register_symbol(
            code("900001"),
            kuku_engine::SymbolName::new("Test Co").unwrap(),
            kuku_engine::Market::Kosdaq,
            kuku_engine::TickRule::Krx,
            Price(10_000),
            true,
            Qty(1),
        )
        .unwrap();
    assert!(listed.code == 0 && listed.symbol_id > 0, "{listed:?}");
    let dup = admin
        .register_symbol(
            code("900001"),
            kuku_engine::SymbolName::new("Again").unwrap(),
            kuku_engine::Market::Kosdaq,
            kuku_engine::TickRule::Krx,
            Price(10_000),
            true,
            Qty(1),
        )
        .unwrap();
    assert_eq!(dup.code, RejectReason::SymbolExists.code());
    // The always-open schedule keeps a trading day open: fees change only between days.
    assert_eq!(
        admin
            .set_fees(kuku_engine::FeeSchedule::KRX_2026)
            .unwrap()
            .code,
        RejectReason::FeesDuringDay.code()
    );

    let token = admin.issue_token(carol).unwrap().unwrap();
    assert_eq!(token, t.token(carol));
    assert_eq!(admin.issue_token(AccountId(250)).unwrap(), Err(3001));
    // The new symbol trades over the wire under its code.
    let (mut c, _) = t.trader(carol, LoginOptions::default());
    let spec = kuku_gateway::client::OrderSpec::limit(
        code("900001"),
        kuku_engine::Side::Sell,
        Qty(1),
        Price(10_000),
    );
    match c.place(spec).unwrap() {
        Message::OrderRejected(r) => assert_eq!(r.reason, RejectReason::InsufficientShares.code()),
        other => panic!("{other:?}"),
    }
}

#[test]
fn excess_orders_are_rate_limited_and_the_session_stays_up() {
    let t = TestNode::start_with(|c| {
        c.gateway.rate_per_s = 1;
        c.gateway.burst = 5;
    });
    let (alice, _) = t.funded_account("alice", 100_000_000);
    let (mut a, _) = t.trader(alice, LoginOptions::default());
    let mut keys = Vec::new();
    for _ in 0..8 {
        let k = a.next_key();
        keys.push(k);
        a.send(NewOrder {
            client_order_id: k,
            symbol: code(SAMSUNG),
            side: kuku_engine::Side::Buy,
            order_type: kuku_engine::OrderType::Limit,
            tif: kuku_engine::TimeInForce::Day,
            price: Price(119_000),
            qty: Qty(1),
        })
        .unwrap();
    }
    let (mut ok, mut limited) = (Vec::new(), Vec::new());
    while ok.len() + limited.len() < 8 {
        match a.next_message(WAIT).unwrap().expect("a reply") {
            Message::OrderAccepted(x) => ok.push(x.client_order_id),
            Message::OrderRejected(r) => {
                assert_eq!(r.reason, GatewayCode::RateLimited.code());
                assert_eq!(r.acct_seq, 0, "gateway rejects are not sequenced");
                limited.push(r.client_order_id);
            }
            _ => {}
        }
    }
    assert_eq!((ok.len(), limited.len()), (5, 3));
    // A rate-limited key was never used: once the bucket refills it is accepted.
    std::thread::sleep(Duration::from_millis(1_100));
    let again = a
        .place(kuku_gateway::client::OrderSpec {
            client_order_id: Some(limited[0]),
            ..buy(1, 119_000)
        })
        .unwrap();
    assert!(!accepted(&again).resent);
    assert_eq!(
        t.gateway()
            .stats()
            .rate_limited
            .load(std::sync::atomic::Ordering::Relaxed),
        3
    );
}

/// Alice rests an order; Bob fills it while Alice is away; Alice reconnects with her last
/// seen sequence number and gets exactly what she missed, in order.
#[test]
fn reconnect_replays_missed_messages_from_the_account_sequence() {
    let mut t = TestNode::start();
    let (alice, _) = t.funded_account("alice", 100_000_000);
    let (bob, _) = t.funded_account("bob", 0);
    t.give_shares(bob, 10);
    let (mut a, _) = t.trader(alice, LoginOptions::default());
    let order = accepted(&a.place(buy(10, 119_900)).unwrap());
    let seen = a.last_seen_acct_seq;
    assert_eq!(seen, order.acct_seq);
    drop(a.into_connection());

    let (mut b, _) = t.trader(bob, LoginOptions::default());
    b.place(sell(4, 119_900)).unwrap();
    b.place(sell(6, 119_900)).unwrap();

    let (a, replayed) = t.trader(
        alice,
        LoginOptions {
            last_seen_acct_seq: seen,
            ..LoginOptions::default()
        },
    );
    assert_eq!(a.accepted.replay_first_seq, seen + 1);
    let fills: Vec<_> = replayed
        .iter()
        .map(|m| match m {
            Message::Execution(e) => (e.acct_seq, e.order_id, e.qty, e.leaves),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        fills,
        [
            (seen + 1, order.order_id, Qty(4), Qty(6)),
            (seen + 2, order.order_id, Qty(6), Qty(0))
        ]
    );
    assert_eq!(a.accepted.acct_seq_last, seen + 2);

    // After a restart the history is rebuilt from the journal: the same replay.
    let t = t.restart();
    let (a2, replayed2) = t.trader(
        alice,
        LoginOptions {
            last_seen_acct_seq: seen,
            ..LoginOptions::default()
        },
    );
    assert_eq!(replayed2, replayed);
    assert_eq!(a2.accepted.acct_seq_last, seen + 2);
    // Asking from 0 replays the whole stream: opened, deposit, accepted, two fills.
    let (_, all) = t.trader(alice, LoginOptions::default_from(0));
    let seqs: Vec<u64> = all.iter().map(kuku_gateway::client::acct_seq_of).collect();
    assert_eq!(seqs, (1..=seen + 2).collect::<Vec<_>>());
    // A client claiming to be ahead of the node is refused.
    let e = kuku_gateway::client::TradingClient::login(
        t.addr,
        alice,
        t.token(alice),
        LoginOptions {
            last_seen_acct_seq: seen + 3,
            ..LoginOptions::default()
        },
    )
    .err()
    .expect("rejected");
    assert!(
        matches!(e, GatewayError::LoginRejected { code: 9011 }),
        "{e}"
    );
}

#[test]
fn cancel_on_disconnect_cancels_live_orders_only_when_asked() {
    let t = TestNode::start();
    let (alice, _) = t.funded_account("alice", 100_000_000);
    let with = LoginOptions {
        cancel_on_disconnect: true,
        ..LoginOptions::default()
    };
    let (mut a, _) = t.trader(alice, with);
    let o1 = accepted(&a.place(buy(1, 119_000)).unwrap());
    let o2 = accepted(&a.place(buy(2, 118_000)).unwrap());
    // The watcher logs in first: it sees the cancels only if its session exists when they
    // happen.
    let (mut watcher, _) = t.trader(alice, LoginOptions::default());
    drop(a.into_connection());

    let mut cancelled = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while cancelled.len() < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "the dropped session's orders were not cancelled: {cancelled:?}"
        );
        if let Some(Message::Cancelled(c)) = watcher.next_message(WAIT).unwrap() {
            assert_eq!(
                c.reason,
                CancelCause::Engine(kuku_engine::CancelReason::CancelAll)
            );
            cancelled.push(c.order_id);
        }
    }
    cancelled.sort();
    assert_eq!(cancelled, [o1.order_id, o2.order_id]);
    assert!(watcher.open_orders(None).unwrap().0.is_empty());

    // Without the flag, a dropped session leaves its orders alone.
    let (mut b, _) = t.trader(alice, LoginOptions::default());
    let o3 = accepted(&b.place(buy(1, 119_000)).unwrap());
    drop(b.into_connection());
    std::thread::sleep(Duration::from_millis(300));
    let (orders, _) = watcher.open_orders(None).unwrap();
    assert_eq!(
        orders.iter().map(|o| o.order_id).collect::<Vec<_>>(),
        [o3.order_id]
    );
}

#[test]
fn a_resent_order_returns_the_original_outcome_and_creates_nothing() {
    let t = TestNode::start();
    let (alice, _) = t.funded_account("alice", 100_000_000);
    let (mut a, _) = t.trader(alice, LoginOptions::default());
    let key = ClientOrderId(42);
    let spec = kuku_gateway::client::OrderSpec {
        client_order_id: Some(key),
        ..buy(3, 119_000)
    };
    let first = accepted(&a.place(spec).unwrap());
    assert!(!first.resent);
    // The client lost the ack and resends, even over a new session.
    drop(a.into_connection());
    let (mut a, _) = t.trader(alice, LoginOptions::default());
    let again = accepted(&a.place(spec).unwrap());
    assert!(again.resent);
    assert_eq!(again.order_id, first.order_id);
    assert_eq!(a.open_orders(None).unwrap().0.len(), 1);
    // Same key, different content: DuplicateKey.
    let other = kuku_gateway::client::OrderSpec {
        client_order_id: Some(key),
        ..buy(4, 119_000)
    };
    match a.place(other).unwrap() {
        Message::OrderRejected(r) => assert_eq!(r.reason, RejectReason::DuplicateKey.code()),
        m => panic!("{m:?}"),
    }
    // A rejected order resent is rejected again with the original reason.
    let bad = kuku_gateway::client::OrderSpec {
        client_order_id: Some(ClientOrderId(43)),
        ..buy(1, 1_000_000_000)
    };
    let r1 = a.place(bad).unwrap();
    let r2 = a.place(bad).unwrap();
    match (r1, r2) {
        (Message::OrderRejected(x), Message::OrderRejected(y)) => {
            assert_eq!(x.reason, RejectReason::PriceOutsideBand.code());
            assert_eq!((y.reason, y.resent), (x.reason, true));
        }
        other => panic!("{other:?}"),
    }
    // Reserved keys never reach the engine.
    let reserved = kuku_gateway::client::OrderSpec {
        client_order_id: Some(ClientOrderId(RESERVED_KEY_BIT | 1)),
        ..buy(1, 119_000)
    };
    match a.place(reserved).unwrap() {
        Message::OrderRejected(r) => assert_eq!((r.reason, r.acct_seq), (9003, 0)),
        m => panic!("{m:?}"),
    }
}

#[test]
fn orders_fills_modifies_cancels_and_queries_over_the_wire() {
    let mut t = TestNode::start();
    let (alice, _) = t.funded_account("alice", 100_000_000);
    let (bob, _) = t.funded_account("bob", 0);
    t.give_shares(bob, 100);
    let (mut a, _) = t.trader(alice, LoginOptions::default());
    let (mut b, _) = t.trader(bob, LoginOptions::default());
    let resting = accepted(&b.place(sell(10, 120_000)).unwrap());
    match b.modify(resting.order_id, Qty(5), Price(120_000)).unwrap() {
        Message::Modified(m) => assert!(m.priority_kept && m.leaves == Qty(5)),
        m => panic!("{m:?}"),
    }
    let taker = accepted(&a.place(buy(8, 120_000)).unwrap());
    let fill = next_picked(&mut a, |m| match m {
        Message::Execution(e) => Some(e),
        _ => None,
    });
    assert_eq!(
        (fill.order_id, fill.qty, fill.leaves),
        (taker.order_id, Qty(5), Qty(3))
    );
    assert_eq!(fill.liquidity, Liquidity::Taker);
    assert!(fill.commission.0 > 0 && fill.tax == Amount(0));
    let maker_fill = next_picked(&mut b, |m| match m {
        Message::Execution(e) => Some(e),
        _ => None,
    });
    assert_eq!(maker_fill.client_order_id, resting.client_order_id);
    assert!(maker_fill.tax.0 > 0, "the seller pays taxes");
    let view = a.account().unwrap();
    assert_eq!(view.positions.len(), 1);
    assert_eq!(view.positions[0].qty, Qty(5));
    assert_eq!(view.positions[0].symbol, Some(code(SAMSUNG)));
    let status = a.order_status(taker.order_id).unwrap().unwrap();
    assert_eq!(
        (status.state, status.filled, status.leaves),
        (WireOrderState::PartiallyFilled, Qty(5), Qty(3))
    );
    match a.cancel_all(None).unwrap() {
        Message::CancelAllDone(d) => assert_eq!(d.cancelled, 1),
        m => panic!("{m:?}"),
    }
    assert_eq!(
        a.order_status(taker.order_id).unwrap().unwrap().state,
        WireOrderState::Cancelled
    );
    match a.cancel(taker.order_id).unwrap() {
        Message::RequestRejected(r) => assert_eq!(r.reason, RejectReason::UnknownOrder.code()),
        m => panic!("{m:?}"),
    }
}

/// The command lines of transfers, reference data and order status, as an operator and a
/// trader would run them.
#[test]
fn transfers_symbols_and_order_quantities_on_the_command_line() {
    use kuku_gateway::auth::encode_hex;
    use kuku_gateway::cli::{AdminArgs, AdminCmd, ClientArgs, ClientCmd, run_admin, run_client};
    let t = TestNode::start();
    let (alice, token) = t.funded_account("alice", 50_000_000);
    let admin = |command| {
        let mut out = Vec::new();
        let args = AdminArgs {
            addr: t.addr.to_string(),
            admin_token: Some(encode_hex(&ADMIN_TOKEN)),
            secrets: "unused".into(),
            command,
        };
        let result = run_admin(args, &mut out);
        (result.is_ok(), String::from_utf8(out).unwrap())
    };
    let client = |command| {
        let mut out = Vec::new();
        let args = ClientArgs {
            addr: t.addr.to_string(),
            account: alice.0,
            token: encode_hex(&token),
            cancel_on_disconnect: false,
            command,
        };
        run_client(args, &mut out).unwrap();
        String::from_utf8(out).unwrap()
    };
    let (ok, out) = admin(AdminCmd::TransferIn {
        account: alice.0,
        symbol: SAMSUNG.into(),
        qty: 10,
        price: 50_000,
        external_ref: Some("in-1".into()),
    });
    assert!(ok && out.starts_with("transfer-in: OK, account "), "{out}");
    let tx: u64 = out
        .split("transaction ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{out}"));
    let (_, out) = admin(AdminCmd::Balance { account: alice.0 });
    assert!(
        out.contains("005930: 10 shares (0 held), cost 500,000 KRW"),
        "{out}"
    );
    let (ok, out) = admin(AdminCmd::TransferOut {
        account: alice.0,
        symbol: SAMSUNG.into(),
        qty: 11,
        external_ref: None,
    });
    assert!(!ok && out.contains("AdjustmentWouldOverdraw"), "{out}");
    let (ok, out) = admin(AdminCmd::Reverse { tx });
    assert!(ok && out.starts_with("reverse: OK"), "{out}");
    let (_, out) = admin(AdminCmd::Balance { account: alice.0 });
    assert!(
        out.contains("005930: 0 shares (0 held), cost 0 KRW"),
        "{out}"
    );

    let out = client(ClientCmd::Symbols {
        symbol: Some(SAMSUNG.into()),
    });
    assert!(out.contains("commission 150 ppm"), "{out}");
    assert!(
        out.contains("005930 \"Samsung Electronics\" (Kospi, id 1): base 119,900 KRW, band 84,000..155,800, KRX ticks, lot 1"),
        "{out}"
    );
    // An order modified up, then cancelled: its size is the new total, the rest cancelled.
    let mut c = t.trader(alice, LoginOptions::default()).0;
    let order = accepted(&c.place(buy(2, 119_000)).unwrap()).order_id;
    assert!(matches!(
        c.modify(order, Qty(5), Price(119_000)).unwrap(),
        Message::Modified(_)
    ));
    assert!(matches!(c.cancel(order).unwrap(), Message::Cancelled(_)));
    let out = client(ClientCmd::Status { order_id: order.0 });
    assert!(
        out.contains("qty 5, filled 0, leaves 0, cancelled 5, Cancelled"),
        "{out}"
    );
}
