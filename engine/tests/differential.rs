//! Differential test: the real engine (accounting off, i.e. the book alone) and a naive
//! reference engine (`common/naive.rs`: a Vec and linear scans) consume the same random
//! command streams, valid and invalid; every event and the final books must be identical.

mod common;

use common::naive::{Naive, engine_books};
use kuku_engine::*;
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;

/// Symbols: a KOSPI stock at 71,000 (tick 100), one at 1,990 whose band spans the 1 / 5 tick
/// rows, and an unbanded fixed-tick instrument (sorted ladder, no MARKET orders).
fn setup() -> Vec<Command> {
    let krx = |code: &str, base: i64| {
        Command::RegisterSymbol(RegisterSymbol {
            code: SymbolCode::new(code).unwrap(),
            name: SymbolName::new(code).unwrap(),
            market: Market::Kospi,
            tick_rule: TickRule::Krx,
            base_price: Price(base),
            banded: true,
            lot_size: Qty(1),
        })
    };
    vec![
        krx("005930", 71_000),
        krx("000001", 1_990),
        Command::RegisterSymbol(RegisterSymbol {
            code: SymbolCode::new("FIX5").unwrap(),
            name: SymbolName::new("Fixed").unwrap(),
            market: Market::Other,
            tick_rule: TickRule::Fixed(5),
            base_price: Price(1_000),
            banded: false,
            lot_size: Qty(10),
        }),
        Command::StartOfDay {
            trading_day: 1,
            base_prices: vec![],
        },
        Command::SetMarketPhase {
            phase: MarketPhase::Continuous,
        },
    ]
}

/// A price near the symbol's base: mostly on the grid, sometimes off it or out of band.
fn price_for(symbol: u32, step: i64, off_grid: bool) -> i64 {
    let (base, tick) = match symbol {
        1 => (71_000, 100),
        2 => (1_990, 1),
        3 => (1_000, 5),
        _ => (10_000, 10),
    };
    let p = base + step * tick;
    if off_grid { p + 1 } else { p }
}

fn side() -> impl Strategy<Value = Side> {
    prop_oneof![Just(Side::Buy), Just(Side::Sell)]
}

fn command() -> impl Strategy<Value = Command> {
    let symbol = prop_oneof![8 => 1u32..=3, 1 => Just(9u32)];
    let account = prop_oneof![20 => 1u32..=4, 1 => Just(0u32)];
    let qty = prop_oneof![10 => (1i64..=40).prop_map(|q| q * 10), 1 => -5i64..=5];
    let step =
        prop_oneof![20 => -12i64..=12, 1 => prop_oneof![Just(-400i64), Just(400), Just(5_000)]];
    let order = (
        account.clone(),
        1u64..1_000,
        symbol.clone(),
        side(),
        0u8..10,
        0u8..10,
        step.clone(),
        any::<bool>(),
        qty.clone(),
    )
        .prop_map(|(account, coid, symbol, side, ty, tif, step, off, qty)| {
            let order_type = if ty == 0 {
                OrderType::Market
            } else {
                OrderType::Limit
            };
            let tif = match tif {
                0 => TimeInForce::Fok,
                1 | 2 => TimeInForce::Ioc,
                _ => TimeInForce::Day,
            };
            let off_grid = off && step % 7 == 0;
            Command::PlaceOrder(NewOrder {
                account: AccountId(account),
                client_order_id: ClientOrderId(coid),
                symbol: SymbolId(symbol),
                side,
                order_type,
                tif,
                price: Price(price_for(symbol, step, off_grid)),
                qty: Qty(qty),
            })
        });
    // Ids >= 1,000 are resolved by `resolve_targets` to a live order (and, mostly, its owner).
    let target = prop_oneof![1 => 1u64..60, 6 => 1_000u64..2_000];
    let cancel = (account.clone(), target.clone()).prop_map(|(a, id)| Command::CancelOrder {
        account: AccountId(a),
        request_id: ClientOrderId(id + 5_000),
        order_id: OrderId(id),
    });
    let modify = (account.clone(), target, qty.clone(), step.clone(), 0u8..3).prop_map(
        |(a, id, qty, step, same)| {
            Command::ModifyOrder {
                account: AccountId(a),
                request_id: ClientOrderId(id + 9_000),
                order_id: OrderId(id),
                new_qty: Qty(qty),
                // The symbol is unknown here: use a price valid for symbol 1 mostly.
                new_price: Price(if same == 0 {
                    price_for(3, step, false)
                } else {
                    price_for(1, step, false)
                }),
            }
        },
    );
    let cancel_all = (account, prop::option::of(1u32..=3)).prop_map(|(a, s)| Command::CancelAll {
        account: AccountId(a),
        request_id: ClientOrderId(7),
        symbol: s.map(SymbolId),
    });
    let quote = (
        symbol,
        -10i64..=10,
        0i64..4,
        0i64..4,
        0i64..=30,
        0i64..=30,
        0u8..20,
    )
        .prop_map(|(s, mid, half_bid, half_ask, bq, aq, bad)| {
            let (mut bid, mut ask) = (
                price_for(s, mid - half_bid, false),
                price_for(s, mid + half_ask, false),
            );
            if bad == 0 {
                std::mem::swap(&mut bid, &mut ask);
            }
            Command::QuoteUpdate {
                symbol: SymbolId(s),
                bid_price: Price(bid),
                bid_qty: Qty(bq * 10),
                ask_price: Price(if bad == 1 { ask + 1 } else { ask }),
                ask_qty: Qty(aq * 10),
            }
        });
    let phase = prop_oneof![
        4 => Just(MarketPhase::Continuous),
        1 => Just(MarketPhase::ClosingCall),
        1 => Just(MarketPhase::PreOpen),
    ]
    .prop_map(|phase| Command::SetMarketPhase { phase });
    let day = prop_oneof![
        Just(Command::EndOfDay { trading_day: 1 }),
        (0i64..3).prop_map(|k| Command::StartOfDay {
            trading_day: 2,
            base_prices: if k == 0 {
                vec![(SymbolId(1), Price(72_000))]
            } else {
                vec![]
            },
        }),
    ];
    prop_oneof![
        40 => order,
        10 => cancel,
        10 => modify,
        2 => cancel_all,
        12 => quote,
        2 => phase,
        1 => day,
    ]
}

fn config() -> EngineConfig {
    EngineConfig {
        accounting: false,
        ..EngineConfig::small()
    }
}

/// Points cancel/modify ids >= 1,000 at a live order chosen by the id, and (unless the
/// account is 4, kept as a wrong owner) at its owner; a modify's price is made valid for the
/// order's symbol unless the generator asked for another symbol's grid.
fn resolve_targets(command: &Command, naive: &Naive) -> Command {
    let mut live: Vec<_> = naive
        .orders
        .iter()
        .filter(|o| o.account != 0)
        .copied()
        .collect();
    live.sort_by_key(|o| o.id);
    let pick =
        |id: OrderId| (id.0 >= 1_000 && !live.is_empty()).then(|| live[id.0 as usize % live.len()]);
    match command.clone() {
        Command::CancelOrder {
            account,
            request_id,
            order_id,
        } => match pick(order_id) {
            Some(o) => Command::CancelOrder {
                account: if account.0 == 4 {
                    account
                } else {
                    AccountId(o.account)
                },
                request_id,
                order_id: OrderId(o.id),
            },
            None => command.clone(),
        },
        Command::ModifyOrder {
            account,
            request_id,
            order_id,
            new_qty,
            new_price,
        } => match pick(order_id) {
            Some(o) => {
                let step = (new_price.0 - 71_000) / 100;
                let price = if new_price.0 % 100 == 0 {
                    price_for(o.symbol, step, false)
                } else {
                    new_price.0
                };
                Command::ModifyOrder {
                    account: if account.0 == 4 {
                        account
                    } else {
                        AccountId(o.account)
                    },
                    request_id,
                    order_id: OrderId(o.id),
                    new_qty,
                    new_price: Price(price),
                }
            }
            None => command.clone(),
        },
        other => other,
    }
}

fn run(commands: &[Command], policy: LadderPolicy) -> Result<(), TestCaseError> {
    let mut engine = Engine::new(EngineConfig {
        ladder: policy,
        ..config()
    });
    let mut naive = Naive::new();
    let setup = setup();
    for (i, command) in setup.iter().chain(commands).enumerate() {
        let command = &resolve_targets(command, &naive);
        let mut events = Vec::new();
        engine.apply(
            &Envelope {
                seq: i as u64 + 1,
                ts: i as u64,
                command: command.clone(),
            },
            &mut events,
        );
        let expected = naive.apply(command);
        prop_assert_eq!(&events, &expected, "command #{}: {:?}", i, command);
        if let Err(e) = engine.check_invariants() {
            return Err(TestCaseError::fail(format!("after #{i} {command:?}: {e}")));
        }
    }
    prop_assert_eq!(engine_books(&engine), naive.books());
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 256,
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(
            "tests/proptest-regressions/differential.txt",
        ))),
        ..ProptestConfig::default()
    })]

    #[test]
    fn engine_matches_naive_reference(commands in prop::collection::vec(command(), 1..300)) {
        run(&commands, LadderPolicy::Auto)?;
    }

    #[test]
    fn sorted_ladder_matches_naive_reference(commands in prop::collection::vec(command(), 1..200)) {
        run(&commands, LadderPolicy::SortedOnly)?;
    }
}

/// The generator must reach the interesting paths, or the differential test proves little:
/// a long deterministic stream is compared too, and its event mix is checked.
#[test]
fn long_stream_matches_and_covers_every_path() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let strategy = command();
    let commands: Vec<Command> = (0..20_000)
        .map(|_| strategy.new_tree(&mut runner).unwrap().current())
        .collect();
    run(&commands, LadderPolicy::Auto).unwrap();

    let mut engine = Engine::new(config());
    let mut naive = Naive::new();
    let mut events = Vec::new();
    for (i, c) in setup().iter().chain(&commands).enumerate() {
        let c = resolve_targets(c, &naive);
        naive.apply(&c);
        engine.apply(
            &Envelope {
                seq: i as u64 + 1,
                ts: 0,
                command: c,
            },
            &mut events,
        );
    }
    let count = |f: &dyn Fn(&Event) -> bool| events.iter().filter(|e| f(e)).count();
    let cancelled = |r: CancelReason| {
        count(&|e| matches!(e, Event::OrderCancelled { reason, .. } if *reason == r))
    };
    assert!(count(&|e| matches!(e, Event::Trade { .. })) > 500);
    assert!(
        count(&|e| matches!(
            e,
            Event::Trade {
                maker_account: AccountId(0),
                ..
            }
        )) > 20,
        "synthetic makers"
    );
    assert!(
        count(&|e| matches!(
            e,
            Event::Trade {
                taker_account: AccountId(0),
                ..
            }
        )) > 5,
        "synthetic takers"
    );
    for r in [
        CancelReason::SelfTrade,
        CancelReason::FokUnfilled,
        CancelReason::IocRemainder,
        CancelReason::MarketRemainder,
        CancelReason::QuoteReplaced,
        CancelReason::Requested,
        CancelReason::CancelAll,
    ] {
        assert!(cancelled(r) > 5, "{r:?}: {}", cancelled(r));
    }
    assert!(
        count(&|e| matches!(
            e,
            Event::OrderModified {
                priority_kept: true,
                ..
            }
        )) > 5
    );
    assert!(
        count(&|e| matches!(
            e,
            Event::OrderModified {
                priority_kept: false,
                ..
            }
        )) > 5
    );
    assert!(count(&|e| matches!(e, Event::OrderExpired { .. })) > 5);
    assert!(count(&|e| matches!(e, Event::QuoteRejected { .. })) > 5);
    assert!(count(&|e| matches!(e, Event::OrderRejected { .. })) > 100);
}
