//! The engine is total: every command, with any field values, in any market phase, answers
//! with events, never panics, keeps every invariant, and when it is rejected changes nothing.
//!
//! - `hostile_streams_keep_every_invariant`: proptest streams of every command kind whose
//!   numbers come from the whole range of their types, from the edges where rules change
//!   (`hostile::EDGE_*`) and from plausible values (so that orders rest, trade and settle),
//!   through engines with and without accounting, starting empty or from a trading market.
//!   `KUKU_TOTALITY_CASES` raises the number of streams (default sized for CI).
//! - `extreme_values_in_every_field_are_rejected_and_replay_cleanly`: i64::MIN, i64::MAX and
//!   u64::MAX in each field that carries a price, a quantity, an amount or an id.
//! - `fuzz_corpus_replays`: the committed corpus of the `engine_apply` fuzz target.

use kuku_engine::hostile::{EDGE_I64, EDGE_U32, EDGE_U64, Harness, State, check_bytes};
use kuku_engine::testkit::{Driver, cmd, reject_reason};
use kuku_engine::*;
use proptest::prelude::*;
use proptest::test_runner::{Config, FileFailurePersistence};
use std::path::Path;

/// A field's value: mostly plausible (so that orders rest, trade and settle), often an edge
/// where rules change, sometimes anything its type holds.
fn field<T>(plausible: impl Strategy<Value = T> + 'static, edges: &'static [T]) -> BoxedStrategy<T>
where
    T: Arbitrary + Clone + std::fmt::Debug + 'static,
{
    prop_oneof![
        4 => plausible,
        2 => proptest::sample::select(edges),
        1 => any::<T>(),
    ]
    .boxed()
}

fn i64_field(plausible: impl Strategy<Value = i64> + 'static) -> BoxedStrategy<i64> {
    field(plausible, EDGE_I64)
}

fn u64_field(plausible: impl Strategy<Value = u64> + 'static) -> BoxedStrategy<u64> {
    field(plausible, EDGE_U64)
}

fn u32_field(plausible: impl Strategy<Value = u32> + 'static) -> BoxedStrategy<u32> {
    field(plausible, EDGE_U32)
}

/// A price near 005930's (tick 100), 247540's (tick 1 and 5) or the fixed-tick symbol's.
fn price() -> BoxedStrategy<i64> {
    i64_field(prop_oneof![
        (-40i64..=40).prop_map(|s| 71_000 + s * 100),
        (-20i64..=20).prop_map(|s| 1_990 + s * 5),
        (-20i64..=20).prop_map(|s| 1_000 + s * 5),
    ])
}

fn qty() -> BoxedStrategy<i64> {
    i64_field(1i64..=50)
}

fn amount() -> BoxedStrategy<i64> {
    i64_field(prop_oneof![1i64..=5_000_000, -5_000i64..=5_000])
}

fn account() -> BoxedStrategy<AccountId> {
    u32_field(0u32..=4).prop_map(AccountId).boxed()
}

fn symbol() -> BoxedStrategy<SymbolId> {
    u32_field(0u32..=4).prop_map(SymbolId).boxed()
}

fn key() -> BoxedStrategy<ClientOrderId> {
    u64_field(1u64..=60).prop_map(ClientOrderId).boxed()
}

fn text<const N: usize>() -> impl Strategy<Value = InlineStr<N>> {
    prop_oneof![
        4 => (0u32..12).prop_map(|i| format!("r{i}")),
        1 => Just(String::new()),
        1 => "[ -~가]{0,12}",
    ]
    .prop_map(|s| InlineStr::new(&s).unwrap_or_default())
}

fn phase() -> impl Strategy<Value = MarketPhase> {
    prop_oneof![
        Just(MarketPhase::Closed),
        Just(MarketPhase::PreOpen),
        Just(MarketPhase::Continuous),
        Just(MarketPhase::ClosingCall),
        Just(MarketPhase::AfterHours),
    ]
}

fn order() -> impl Strategy<Value = Command> {
    let kinds = prop_oneof![
        Just((OrderType::Limit, TimeInForce::Day)),
        Just((OrderType::Limit, TimeInForce::Ioc)),
        Just((OrderType::Limit, TimeInForce::Fok)),
        Just((OrderType::Market, TimeInForce::Ioc)),
        Just((OrderType::Market, TimeInForce::Day)),
    ];
    let side = prop_oneof![Just(Side::Buy), Just(Side::Sell)];
    (account(), key(), symbol(), side, kinds, price(), qty()).prop_map(
        |(account, key, symbol, side, (order_type, tif), price, qty)| {
            Command::PlaceOrder(NewOrder {
                account,
                client_order_id: key,
                symbol,
                side,
                order_type,
                tif,
                price: Price(price),
                qty: Qty(qty),
            })
        },
    )
}

fn reference() -> impl Strategy<Value = Command> {
    let rule = prop_oneof![
        Just(TickRule::Krx),
        i64_field(prop_oneof![Just(1i64), Just(5), Just(100)]).prop_map(TickRule::Fixed),
    ];
    let market = prop_oneof![
        Just(Market::Kospi),
        Just(Market::Kosdaq),
        Just(Market::Other)
    ];
    let fee = || i64_field(prop_oneof![0i64..=2_000, Just(1_000_000), Just(1_000_001)]);
    let rates = || {
        (fee(), fee()).prop_map(|(s, r)| TaxRates {
            securities_transaction_ppm: s,
            rural_special_ppm: r,
        })
    };
    prop_oneof![
        (
            text(),
            rule,
            market,
            price(),
            any::<bool>(),
            i64_field(1i64..=10)
        )
            .prop_map(|(code, tick_rule, market, base, banded, lot)| {
                Command::RegisterSymbol(RegisterSymbol {
                    code,
                    name: SymbolName::new("x").unwrap(),
                    market,
                    tick_rule,
                    base_price: Price(base),
                    banded,
                    lot_size: Qty(lot),
                })
            }),
        (fee(), rates(), rates(), rates()).prop_map(|(commission_ppm, kospi, kosdaq, other)| {
            Command::SetFeeSchedule(FeeSchedule {
                commission_ppm,
                kospi,
                kosdaq,
                other,
            })
        }),
        (
            u32_field(Just(20_260_106)),
            proptest::collection::vec((symbol(), price()), 0..4)
        )
            .prop_map(|(trading_day, prices)| Command::StartOfDay {
                trading_day,
                base_prices: prices.into_iter().map(|(s, p)| (s, Price(p))).collect(),
            }),
        u32_field(Just(20_260_105)).prop_map(|trading_day| Command::EndOfDay { trading_day }),
        phase().prop_map(|phase| Command::SetMarketPhase { phase }),
    ]
}

fn money() -> impl Strategy<Value = Command> {
    let tx = || u64_field(1u64..=40).prop_map(TxId);
    let asset = prop_oneof![Just(Asset::Krw), symbol().prop_map(Asset::Shares)];
    prop_oneof![
        text().prop_map(|owner| Command::OpenAccount { owner }),
        (account(), amount(), text()).prop_map(|(account, a, external_ref)| Command::Deposit {
            account,
            amount: Amount(a),
            external_ref,
        }),
        (account(), amount(), text()).prop_map(|(account, a, external_ref)| Command::Withdraw {
            account,
            amount: Amount(a),
            external_ref,
        }),
        (
            account(),
            asset,
            amount(),
            text(),
            prop_oneof![Just(0i64), price()]
        )
            .prop_map(|(account, asset, a, external_ref, cost)| {
                Command::Adjust {
                    account,
                    asset,
                    amount: Amount(a),
                    external_ref,
                    cost_price: Price(cost),
                }
            }),
        tx().prop_map(|tx| Command::ConfirmTransaction { tx }),
        tx().prop_map(|tx| Command::FailTransaction { tx }),
        tx().prop_map(|tx| Command::ReverseTransaction { tx }),
        u64_field(Just(1_000_000_000))
            .prop_map(|cutoff_ts| Command::ExpireStaleExternal { cutoff_ts }),
    ]
}

fn request() -> impl Strategy<Value = Command> {
    let order_id = || u64_field(1u64..=30).prop_map(OrderId);
    prop_oneof![
        (account(), key(), order_id()).prop_map(|(account, request_id, order_id)| {
            Command::CancelOrder {
                account,
                request_id,
                order_id,
            }
        }),
        (account(), key(), proptest::option::of(symbol())).prop_map(
            |(account, request_id, symbol)| Command::CancelAll {
                account,
                request_id,
                symbol,
            }
        ),
        (account(), key(), order_id(), qty(), price()).prop_map(
            |(account, request_id, order_id, q, p)| Command::ModifyOrder {
                account,
                request_id,
                order_id,
                new_qty: Qty(q),
                new_price: Price(p),
            }
        ),
        (symbol(), price(), qty(), price(), qty()).prop_map(|(symbol, bp, bq, ap, aq)| {
            Command::QuoteUpdate {
                symbol,
                bid_price: Price(bp),
                bid_qty: Qty(bq),
                ask_price: Price(ap),
                ask_qty: Qty(aq),
            }
        }),
        Just(Command::TakeSnapshot),
        (
            symbol(),
            prop_oneof![Just(QuoteStatus::Fresh), Just(QuoteStatus::Stale)]
        )
            .prop_map(|(symbol, status)| Command::SetQuoteStatus { symbol, status }),
        prop_oneof![
            0u64..4,
            Just(kuku_engine::epochs::EPOCH_MAX),
            Just(kuku_engine::epochs::EPOCH_MAX + 1),
            any::<u64>()
        ]
        .prop_map(|epoch| Command::BeginEpoch { epoch }),
    ]
}

fn command() -> impl Strategy<Value = Command> {
    prop_oneof![8 => order(), 4 => request(), 3 => money(), 2 => reference()]
}

// A test's own knob, not an input of the engine: the engine's environment ban does not apply.
#[allow(clippy::disallowed_methods)]
fn cases() -> u32 {
    std::env::var("KUKU_TOTALITY_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(96)
}

proptest! {
    #![proptest_config(Config {
        cases: cases(),
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(
            "tests/proptest-regressions/totality.txt",
        ))),
        ..Config::default()
    })]

    #[test]
    fn hostile_streams_keep_every_invariant(
        start in 0u8..4,
        commands in proptest::collection::vec(command(), 1..160),
    ) {
        let accounting = start % 2 == 0;
        let mut harness = if start < 2 {
            Harness::market(accounting)
        } else {
            Harness::empty(accounting)
        };
        for command in commands {
            if let Err(e) = harness.step(command) {
                prop_assert!(false, "accounting {}: {}", accounting, e);
            }
        }
    }
}

/// Each case: a command with an extreme value in one field, and the code it must get.
fn extreme_cases() -> Vec<(Command, RejectReason)> {
    let a = AccountId(1);
    let mut key = 500;
    let mut order = |price: i64, qty: i64| {
        key += 1;
        cmd::limit(a, key, 1, Side::Buy, price, qty)
    };
    let transfer = |amount: i64, cost: i64| Command::Adjust {
        account: a,
        asset: Asset::Shares(SymbolId(1)),
        amount: Amount(amount),
        external_ref: ExternalRef::new("x").unwrap(),
        cost_price: Price(cost),
    };
    let adjust = |amount: i64| transfer(amount, 0);
    let quote = |bp: i64, bq: i64, ap: i64, aq: i64| cmd::quote(1, bp, bq, ap, aq);
    let register = |base: i64, tick: TickRule, lot: i64| {
        Command::RegisterSymbol(RegisterSymbol {
            code: SymbolCode::new("NEW1").unwrap(),
            name: SymbolName::new("new").unwrap(),
            market: Market::Kospi,
            tick_rule: tick,
            base_price: Price(base),
            banded: true,
            lot_size: Qty(lot),
        })
    };
    let mut cases = vec![
        (order(i64::MAX, 1), RejectReason::OutOfRange),
        (order(i64::MIN, 1), RejectReason::InvalidPrice),
        (order(71_000, i64::MAX), RejectReason::OutOfRange),
        (order(71_000, i64::MIN), RejectReason::InvalidQty),
        (
            cmd::limit(a, 520, 1, Side::Sell, i64::MAX, 1),
            RejectReason::OutOfRange,
        ),
        (
            cmd::modify(a, 602, 1, 5, i64::MAX),
            RejectReason::OutOfRange,
        ),
        (
            cmd::modify(a, 603, 1, i64::MAX, 71_000),
            RejectReason::OutOfRange,
        ),
        (
            cmd::modify(a, 604, 1, i64::MIN, 71_000),
            RejectReason::InvalidQty,
        ),
        (
            cmd::modify(a, 605, 1, 5, i64::MIN),
            RejectReason::InvalidPrice,
        ),
        (cmd::cancel(a, 606, u64::MAX), RejectReason::UnknownOrder),
        // Order ids start at 1; 0 must not find the order table's empty marker.
        (cmd::cancel(a, 607, 0), RejectReason::UnknownOrder),
        (
            cmd::modify(a, 608, 0, 5, 71_000),
            RejectReason::UnknownOrder,
        ),
        (
            Command::CancelOrder {
                account: AccountId(u32::MAX),
                request_id: ClientOrderId(u64::MAX),
                order_id: OrderId(u64::MAX),
            },
            RejectReason::UnknownAccount,
        ),
        (quote(i64::MAX, 10, 0, 0), RejectReason::OutOfRange),
        (quote(71_000, i64::MAX, 0, 0), RejectReason::OutOfRange),
        (quote(0, 0, i64::MAX, 10), RejectReason::OutOfRange),
        (quote(i64::MIN, 10, 0, 0), RejectReason::QuoteOffTick),
        (quote(71_000, i64::MIN, 0, 0), RejectReason::InvalidQuoteQty),
        (cmd::deposit(a, i64::MAX, "d1"), RejectReason::InvalidAmount),
        (cmd::deposit(a, i64::MIN, "d2"), RejectReason::InvalidAmount),
        (
            cmd::withdraw(a, i64::MAX, "w1"),
            RejectReason::InvalidAmount,
        ),
        (
            cmd::withdraw(a, i64::MIN, "w2"),
            RejectReason::InvalidAmount,
        ),
        (adjust(i64::MAX), RejectReason::InvalidAmount),
        (adjust(i64::MIN), RejectReason::InvalidAmount),
        (transfer(10, i64::MAX), RejectReason::OutOfRange),
        (transfer(10, i64::MIN), RejectReason::InvalidPrice),
        (transfer(i64::MAX, 71_000), RejectReason::InvalidAmount),
        (
            transfer(limits::QTY_MAX + 1, 71_000),
            RejectReason::OutOfRange,
        ),
        (transfer(-10, 71_000), RejectReason::InvalidPrice),
        (
            register(i64::MAX, TickRule::Krx, 1),
            RejectReason::OutOfRange,
        ),
        (
            register(i64::MIN, TickRule::Krx, 1),
            RejectReason::InvalidBasePrice,
        ),
        (
            register(1_000, TickRule::Fixed(i64::MAX), 1),
            RejectReason::OutOfRange,
        ),
        (
            register(1_000, TickRule::Fixed(i64::MIN), 1),
            RejectReason::InvalidTickRule,
        ),
        (
            register(1_000, TickRule::Krx, i64::MAX),
            RejectReason::OutOfRange,
        ),
        (
            register(1_000, TickRule::Krx, i64::MIN),
            RejectReason::InvalidLotSize,
        ),
        (
            Command::ConfirmTransaction { tx: TxId(u64::MAX) },
            RejectReason::UnknownTransaction,
        ),
        (
            Command::ReverseTransaction { tx: TxId(u64::MAX) },
            RejectReason::UnknownTransaction,
        ),
    ];
    let mut fees = FeeSchedule::KRX_2026;
    fees.commission_ppm = i64::MAX;
    cases.push((
        Command::SetFeeSchedule(fees),
        RejectReason::InvalidFeeSchedule,
    ));
    fees.commission_ppm = i64::MIN;
    cases.push((
        Command::SetFeeSchedule(fees),
        RejectReason::InvalidFeeSchedule,
    ));
    cases
}

#[test]
fn extreme_values_in_every_field_are_rejected_and_replay_cleanly() {
    let mut harness = Harness::market(true);
    let first = harness
        .step(cmd::limit(AccountId(1), 400, 1, Side::Buy, 70_000, 5))
        .expect("a plain order");
    assert!(testkit::accepted_id(&first).is_some(), "{first:?}");
    for (command, reason) in extreme_cases() {
        let events = harness.step(command.clone()).expect("checks hold");
        assert_eq!(
            reject_reason(&events),
            Some(reason),
            "{command:?}: {events:?}"
        );
    }
    // StartOfDay carries base prices; it is refused while the day is open, so close it first.
    harness
        .step(Command::EndOfDay {
            trading_day: 20_260_105,
        })
        .expect("end of day");
    for price in [i64::MAX, i64::MIN] {
        let events = harness
            .step(Command::StartOfDay {
                trading_day: 20_260_106,
                base_prices: vec![(SymbolId(1), Price(price))],
            })
            .expect("checks hold");
        assert!(
            reject_reason(&events).is_some(),
            "base price {price}: {events:?}"
        );
    }
    // The engine keeps serving: a new day, a valid order.
    harness
        .step(Command::StartOfDay {
            trading_day: 20_260_106,
            base_prices: vec![],
        })
        .expect("a new day");
    harness
        .step(Command::SetMarketPhase {
            phase: MarketPhase::Continuous,
        })
        .expect("open");
    let last = harness
        .step(cmd::limit(AccountId(2), 700, 1, Side::Buy, 71_000, 3))
        .expect("a valid order after the extremes");
    assert!(testkit::accepted_id(&last).is_some(), "{last:?}");
    // A restart replays the journal, extremes included, to the same state.
    let original = &harness.driver;
    let mut replayed = Driver::new(*original.engine.config());
    for envelope in &original.journal {
        let mut events = Vec::new();
        replayed.engine.apply(envelope, &mut events);
    }
    assert_eq!(State::of(&replayed.engine), State::of(&original.engine));
    assert_eq!(replayed.engine.state_hash(), original.engine.state_hash());
}

// A test reading its corpus, not engine code: the engine's I/O ban does not apply.
#[allow(clippy::disallowed_methods)]
#[test]
fn fuzz_corpus_replays() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/engine_apply");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).expect("the corpus exists") {
        let path = entry.expect("a directory entry").path();
        let data = std::fs::read(&path).expect("a corpus file");
        let result = std::panic::catch_unwind(|| check_bytes(&data));
        assert!(
            result.is_ok(),
            "{} fails the engine_apply check",
            path.display()
        );
        n += 1;
    }
    assert!(
        n >= 10,
        "the engine_apply corpus is nearly empty ({n} files)"
    );
}
