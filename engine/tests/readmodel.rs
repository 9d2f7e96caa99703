//! The read model, fed only by events, equals the engine's live state after every command
//! of a long mixed stream (orders of every type, cancels, modifies, quotes, deposits,
//! withdrawals, end and start of day).

use kuku_engine::readmodel::ReadModel;
use kuku_engine::testkit::{Driver, cmd};
use kuku_engine::*;

fn check(engine: &Engine, rm: &ReadModel) {
    let sys = engine.ledger().system();
    for (account, want) in [
        (LedgerAccount::SystemFee, sys.fee()),
        (LedgerAccount::SystemTax, sys.tax()),
        (LedgerAccount::SystemMarket, sys.market_cash()),
        (LedgerAccount::SystemExternal, sys.external_cash()),
    ] {
        assert_eq!(rm.balance(account, Asset::Krw), want.0, "{account:?}");
    }
    for (i, sh) in engine.ledger().system_shares().iter().enumerate() {
        let asset = Asset::Shares(SymbolId(i as u32 + 1));
        assert_eq!(rm.balance(LedgerAccount::SystemMarket, asset), sh.market());
        assert_eq!(
            rm.balance(LedgerAccount::SystemExternal, asset),
            sh.external()
        );
    }
    assert!(
        rm.trial_balance().values().all(|v| *v == 0),
        "{:?}",
        rm.trial_balance()
    );
    for a in engine.ledger().accounts() {
        let v = rm.accounts.get(&a.id).expect("account known");
        assert_eq!(
            (v.cash, v.cash_hold, v.owner),
            (a.cash(), a.cash_hold(), a.owner),
            "account {}",
            a.id
        );
        assert_eq!(v.acct_seq, a.acct_seq, "acct_seq of {}", a.id);
    }
    for p in engine.ledger().positions() {
        if p.qty().0 != 0 || p.hold().0 != 0 {
            assert_eq!(rm.positions.get(&(p.account, p.symbol)), Some(p));
        }
    }
    let live: Vec<(OrderId, Price, Qty)> = engine
        .live_orders()
        .filter(|o| !o.account.is_system_market())
        .map(|o| (o.id, o.price, o.leaves))
        .collect();
    for (account, ids) in &rm.open_by_account {
        assert!(
            ids.windows(2).all(|w| w[0] < w[1]),
            "open orders of {account} not in ascending id order: {ids:?}"
        );
    }
    let mut open: Vec<(OrderId, Price, Qty)> = rm
        .open_by_account
        .values()
        .flatten()
        .map(|id| {
            let o = rm.orders.get(*id).expect("an open order is known");
            (*id, o.price, o.leaves)
        })
        .collect();
    open.sort();
    assert_eq!(open, live);
    for s in engine.symbols() {
        let book = engine.book(s.id).unwrap();
        let view = &rm.symbols[&s.id].book;
        for (side, levels) in [(Side::Buy, &view.bids), (Side::Sell, &view.asks)] {
            let want: Vec<(Price, Qty, u32)> = book
                .side(side)
                .iter()
                .map(|l| (l.price, l.qty, l.count))
                .collect();
            let mut got: Vec<(Price, Qty, u32)> =
                levels.iter().map(|(p, (q, n))| (*p, *q, *n)).collect();
            if side == Side::Buy {
                got.reverse();
            }
            assert_eq!(got, want, "{} {side:?}", s.code);
        }
        assert_eq!(
            rm.symbols[&s.id].symbol.last_trade_price,
            s.last_trade_price
        );
    }
}

#[test]
fn read_model_tracks_the_engine_exactly() {
    let mut d = Driver::new(EngineConfig::small());
    let mut rm = ReadModel::default();
    let feed = |d: &mut Driver, rm: &mut ReadModel, c: Command| {
        for e in d.apply(c) {
            rm.apply(d.seq, d.ts, &e);
        }
    };
    feed(
        &mut d,
        &mut rm,
        Command::SetFeeSchedule(FeeSchedule::KRX_2026),
    );
    feed(
        &mut d,
        &mut rm,
        cmd::register_krx("005930", "Samsung", Market::Kospi, 71_000),
    );
    feed(
        &mut d,
        &mut rm,
        cmd::register_krx("247540", "EcoPro BM", Market::Kosdaq, 150_000),
    );
    feed(
        &mut d,
        &mut rm,
        Command::StartOfDay {
            trading_day: 1,
            base_prices: vec![],
        },
    );
    feed(
        &mut d,
        &mut rm,
        Command::SetMarketPhase {
            phase: MarketPhase::Continuous,
        },
    );
    for i in 0..6u32 {
        feed(&mut d, &mut rm, cmd::open_account(&format!("user{i}")));
        let a = AccountId(i + 1);
        feed(
            &mut d,
            &mut rm,
            cmd::deposit(a, 500_000_000, &format!("dep{i}")),
        );
        for s in 1..=2 {
            feed(
                &mut d,
                &mut rm,
                Command::Adjust {
                    account: a,
                    asset: Asset::Shares(SymbolId(s)),
                    amount: Amount(5_000),
                    external_ref: ExternalRef::new(&format!("sh{i}-{s}")).unwrap(),
                    cost_price: Price(0),
                },
            );
        }
    }
    let mut rng = 0x1234_5678_9abc_def1u64;
    for i in 0..20_000u64 {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let a = AccountId(1 + (rng % 6) as u32);
        let s = 1 + ((rng >> 8) % 2) as u32;
        let side = if (rng >> 12) & 1 == 0 {
            Side::Buy
        } else {
            Side::Sell
        };
        let (base, tick) = if s == 1 {
            (71_000, 100)
        } else {
            (150_000, 100)
        };
        let price = base + (((rng >> 16) % 21) as i64 - 10) * tick;
        let qty = 1 + ((rng >> 24) % 40) as i64;
        let c = match (rng >> 32) % 24 {
            0..=9 => cmd::limit(a, i + 1, s, side, price, qty),
            10 => cmd::order(
                a,
                i + 1,
                s,
                side,
                OrderType::Limit,
                TimeInForce::Ioc,
                price,
                qty,
            ),
            11 => cmd::order(
                a,
                i + 1,
                s,
                side,
                OrderType::Limit,
                TimeInForce::Fok,
                price,
                qty,
            ),
            12 => cmd::market(a, i + 1, s, side, qty),
            13..=15 => cmd::cancel(a, i + 1, (rng >> 40) % (i + 1) + 1),
            16 | 17 => cmd::modify(a, i + 1, (rng >> 40) % (i + 1) + 1, qty, price),
            18 | 19 => cmd::quote(s, price - tick * 2, 50, price + tick * 2, 50),
            20 => cmd::withdraw(a, 1_000 + (rng >> 40) as i64 % 10_000, &format!("w{i}")),
            21 => Command::ConfirmTransaction {
                tx: TxId((rng >> 40) % 200),
            },
            22 => Command::CancelAll {
                account: a,
                request_id: ClientOrderId(i + 1),
                symbol: None,
            },
            _ => {
                feed(&mut d, &mut rm, Command::EndOfDay { trading_day: 1 });
                feed(
                    &mut d,
                    &mut rm,
                    Command::StartOfDay {
                        trading_day: 2,
                        base_prices: vec![],
                    },
                );
                Command::SetMarketPhase {
                    phase: MarketPhase::Continuous,
                }
            }
        };
        feed(&mut d, &mut rm, c);
        if i % 500 == 0 {
            check(&d.engine, &rm);
            // A read model built from a recovered engine (the node's start-up) agrees too.
            check(&d.engine, &ReadModel::from_engine(&d.engine));
        }
    }
    check(&d.engine, &rm);
    assert!(d.engine.live_order_count() > 10);
}

/// The quantities of an order mean one thing through its life: `qty()` is filled + leaves +
/// cancelled, a modify sets leaves (so it changes the size), and an order that leaves the
/// book unfilled has leaves 0 and the rest in `cancelled`.
#[test]
fn order_quantities_after_fills_modifies_and_cancels() {
    let mut d = Driver::krx_market(EngineConfig::small(), &[("005930", Market::Kospi, 71_000)]);
    let mut rm = ReadModel::default();
    let feed = |d: &mut Driver, rm: &mut ReadModel, c: Command| {
        for e in d.apply(c) {
            rm.apply(d.seq, d.ts, &e);
        }
    };
    let alice = d.funded_account("alice", 10_000_000);
    let bob = d.funded_account("bob", 10_000_000);
    feed(
        &mut d,
        &mut rm,
        cmd::limit(alice, 1, 1, Side::Buy, 71_000, 2),
    );
    let order = OrderId(1);
    feed(
        &mut d,
        &mut rm,
        Command::Adjust {
            account: bob,
            asset: Asset::Shares(SymbolId(1)),
            amount: Amount(1),
            external_ref: ExternalRef::new("one").unwrap(),
            cost_price: Price(0),
        },
    );
    feed(
        &mut d,
        &mut rm,
        cmd::limit(bob, 1, 1, Side::Sell, 71_000, 1),
    );
    feed(&mut d, &mut rm, cmd::modify(alice, 2, order.0, 5, 71_000));
    let view = |rm: &ReadModel| *rm.orders.get(order).expect("known");
    let v = view(&rm);
    assert_eq!(v.info.qty, Qty(2), "the size it was accepted with");
    assert_eq!((v.filled, v.leaves, v.cancelled), (Qty(1), Qty(5), Qty(0)));
    assert_eq!(v.qty(), Qty(6), "after a modify: the new total");
    feed(&mut d, &mut rm, cmd::cancel(alice, 3, order.0));
    let v = view(&rm);
    assert_eq!(
        v.state,
        readmodel::OrderState::Cancelled(CancelReason::Requested)
    );
    assert_eq!((v.filled, v.leaves, v.cancelled), (Qty(1), Qty(0), Qty(5)));
    assert_eq!(v.qty(), Qty(6), "a cancel does not change the size");
}
