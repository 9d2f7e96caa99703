//! Property tests of the ledger over random command streams (valid and invalid) with
//! accounting on: every asset sums to zero; no balance or hold is negative; holds equal what
//! live orders and open withdrawals need; the balances equal the sum of every posted entry;
//! positions equal the sum of fills and share transfers; a rejected command changes nothing.

use kuku_engine::testkit::cmd;
use kuku_engine::*;
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;
use std::collections::BTreeMap;

const SYMBOLS: [(&str, Market, i64); 2] = [
    ("005930", Market::Kospi, 71_000),
    ("247540", Market::Kosdaq, 1_990),
];

fn setup() -> Vec<Command> {
    let mut v = vec![Command::SetFeeSchedule(FeeSchedule::KRX_2026)];
    for (code, market, base) in SYMBOLS {
        v.push(cmd::register_krx(code, code, market, base));
    }
    v.push(Command::StartOfDay {
        trading_day: 1,
        base_prices: vec![],
    });
    v.push(Command::SetMarketPhase {
        phase: MarketPhase::Continuous,
    });
    for owner in ["a", "b", "c"] {
        v.push(cmd::open_account(owner));
    }
    v
}

fn price(symbol: u32, step: i64) -> i64 {
    if symbol == 1 {
        71_000 + step * 100
    } else {
        1_990 + step
    }
}

fn side() -> impl Strategy<Value = Side> {
    prop_oneof![Just(Side::Buy), Just(Side::Sell)]
}

fn command() -> impl Strategy<Value = Command> {
    let account = prop_oneof![10 => 1u32..=3, 1 => Just(9u32)];
    let symbol = prop_oneof![10 => 1u32..=2, 1 => Just(7u32)];
    let eref = (0u32..40).prop_map(|r| ExternalRef::new(&format!("ref{r}")).unwrap());
    let order = (
        account.clone(),
        1u64..200,
        symbol.clone(),
        side(),
        0u8..8,
        -8i64..=8,
        1i64..=300,
    )
        .prop_map(|(a, coid, s, side, kind, step, qty)| {
            let (ty, tif) = match kind {
                0 => (OrderType::Market, TimeInForce::Ioc),
                1 => (OrderType::Limit, TimeInForce::Ioc),
                2 => (OrderType::Limit, TimeInForce::Fok),
                _ => (OrderType::Limit, TimeInForce::Day),
            };
            cmd::order(AccountId(a), coid, s, side, ty, tif, price(s, step), qty)
        });
    let cancel = (account.clone(), 1u64..200, 1u64..80)
        .prop_map(|(a, r, id)| cmd::cancel(AccountId(a), r, id));
    let modify = (account.clone(), 1u64..200, 1u64..80, 1i64..=300, -8i64..=8)
        .prop_map(|(a, r, id, q, step)| cmd::modify(AccountId(a), r, id, q, price(1, step)));
    let deposit = (account.clone(), 1i64..50_000_000, eref.clone()).prop_map(|(a, amt, r)| {
        Command::Deposit {
            account: AccountId(a),
            amount: Amount(amt),
            external_ref: r,
        }
    });
    let withdraw = (account.clone(), 1i64..20_000_000, eref.clone()).prop_map(|(a, amt, r)| {
        Command::Withdraw {
            account: AccountId(a),
            amount: Amount(amt),
            external_ref: r,
        }
    });
    let adjust = (
        account,
        prop_oneof![
            Just(Asset::Krw),
            (1u32..=2).prop_map(|s| Asset::Shares(SymbolId(s)))
        ],
        -500i64..=1_000,
        eref,
    )
        .prop_map(|(a, asset, amt, r)| Command::Adjust {
            account: AccountId(a),
            asset,
            amount: Amount(amt),
            external_ref: r,
            cost_price: Price(0),
        });
    let tx = (0u64..60).prop_map(TxId);
    let tx_cmd = (0u8..4, tx, 0u64..2_000_000_000).prop_map(|(k, tx, cutoff)| match k {
        0 => Command::ConfirmTransaction { tx },
        1 => Command::FailTransaction { tx },
        2 => Command::ReverseTransaction { tx },
        _ => Command::ExpireStaleExternal {
            cutoff_ts: 1_000_000_000 + cutoff,
        },
    });
    let quote =
        (symbol, -6i64..=6, 1i64..3, 0i64..200, 0i64..200).prop_map(|(s, mid, half, bq, aq)| {
            cmd::quote(s, price(s, mid - half), bq, price(s, mid + half), aq)
        });
    prop_oneof![
        30 => order,
        6 => cancel,
        6 => modify,
        8 => deposit,
        5 => withdraw,
        4 => adjust,
        8 => tx_cmd,
        10 => quote,
        1 => Just(Command::EndOfDay { trading_day: 1 }),
        1 => Just(Command::StartOfDay { trading_day: 2, base_prices: vec![] }),
        1 => Just(Command::SetMarketPhase { phase: MarketPhase::Continuous }),
    ]
}

/// What the events say the balances are: every posted entry summed per ledger account and
/// asset, and positions from fills and share transfers.
#[derive(Default)]
struct Shadow {
    entries: BTreeMap<(LedgerAccount, Asset), i64>,
    fills: BTreeMap<(AccountId, SymbolId), i64>,
    /// The last `AccountUpdated` / `PositionUpdated` seen: the read model's feed.
    accounts: BTreeMap<AccountId, (Amount, Amount)>,
    positions: BTreeMap<(AccountId, SymbolId), kuku_engine::portfolio::Position>,
}

impl Shadow {
    fn absorb(&mut self, events: &[Event]) {
        for e in events {
            if let Some(transaction) = e.transaction(0) {
                assert!(transaction.is_balanced(), "{transaction:?}");
                for entry in transaction.entries() {
                    *self
                        .entries
                        .entry((entry.account, entry.asset))
                        .or_default() += entry.amount.0;
                    if let (
                        LedgerAccount::UserSecurities(a, s),
                        TxType::Adjustment | TxType::Reversal,
                    ) = (entry.account, transaction.tx_type)
                    {
                        *self.fills.entry((a, s)).or_default() += entry.amount.0;
                    }
                }
            }
            match e {
                Event::AccountUpdated {
                    account,
                    cash,
                    cash_hold,
                } => {
                    self.accounts.insert(*account, (*cash, *cash_hold));
                }
                Event::PositionUpdated { position } => {
                    self.positions
                        .insert((position.account, position.symbol), *position);
                }
                _ => {}
            }
            if let Event::Trade {
                symbol,
                qty,
                taker_side,
                maker_account,
                taker_account,
                ..
            } = e
            {
                let (buyer, seller) = match taker_side {
                    Side::Buy => (*taker_account, *maker_account),
                    Side::Sell => (*maker_account, *taker_account),
                };
                if !buyer.is_system_market() {
                    *self.fills.entry((buyer, *symbol)).or_default() += qty.0;
                }
                if !seller.is_system_market() {
                    *self.fills.entry((seller, *symbol)).or_default() -= qty.0;
                }
            }
        }
    }

    fn check(&self, engine: &Engine) -> Result<(), String> {
        let l = engine.ledger();
        let get =
            |a: LedgerAccount, asset: Asset| self.entries.get(&(a, asset)).copied().unwrap_or(0);
        for acct in l.accounts() {
            if get(LedgerAccount::UserCash(acct.id), Asset::Krw) != acct.cash().0 {
                return Err(format!("cash of {} differs from its entries", acct.id));
            }
            let fed = self.accounts.get(&acct.id).copied().unwrap_or_default();
            if fed != (acct.cash(), acct.cash_hold()) {
                return Err(format!(
                    "account {}: AccountUpdated feed {fed:?} is stale",
                    acct.id
                ));
            }
        }
        for p in l.positions() {
            let s = Asset::Shares(p.symbol);
            if get(LedgerAccount::UserSecurities(p.account, p.symbol), s) != p.qty().0 {
                return Err(format!(
                    "position {}/{} differs from its entries",
                    p.account, p.symbol
                ));
            }
            let fed = self.positions.get(&(p.account, p.symbol));
            if fed.is_some_and(|f| f != p) || (fed.is_none() && (p.qty().0 != 0 || p.hold().0 != 0))
            {
                return Err(format!(
                    "position {}/{}: PositionUpdated feed {fed:?} is stale",
                    p.account, p.symbol
                ));
            }
            if self.fills.get(&(p.account, p.symbol)).copied().unwrap_or(0) != p.qty().0 {
                return Err(format!(
                    "position {}/{} differs from its fills",
                    p.account, p.symbol
                ));
            }
        }
        let sys = [
            (LedgerAccount::SystemFee, l.system().fee().0),
            (LedgerAccount::SystemTax, l.system().tax().0),
            (LedgerAccount::SystemMarket, l.system().market_cash().0),
            (LedgerAccount::SystemExternal, l.system().external_cash().0),
        ];
        for (a, want) in sys {
            if get(a, Asset::Krw) != want {
                return Err(format!("{a:?} differs from its entries"));
            }
        }
        Ok(())
    }
}

/// The business state, without bookkeeping a reject legitimately touches (the account's
/// event sequence, the request key it used up, the last seq and time).
fn business_state(engine: &Engine) -> EngineSnapshot {
    let mut s = engine.snapshot();
    for a in s.accounts.iter_mut() {
        a.acct_seq = 0;
        a.keys_today = 0;
    }
    s.keys.clear();
    s.last_seq = 0;
    s.now_ts = 0;
    s
}

fn is_reject_only(events: &[Event]) -> bool {
    events.iter().all(|e| {
        matches!(
            e,
            Event::OrderRejected { .. }
                | Event::RequestRejected { .. }
                | Event::CommandRejected { .. }
                | Event::QuoteRejected { .. }
        )
    })
}

fn run(commands: &[Command]) -> Result<(), TestCaseError> {
    let mut engine = Engine::new(EngineConfig::small());
    let mut shadow = Shadow::default();
    for (i, c) in setup().iter().chain(commands).enumerate() {
        let before = business_state(&engine);
        let mut events = Vec::new();
        let ts = 1_000_000_000 + i as u64 * 1_000_000;
        engine.apply(
            &Envelope {
                seq: i as u64 + 1,
                ts,
                command: c.clone(),
            },
            &mut events,
        );
        prop_assert!(!events.is_empty(), "every command yields events: {:?}", c);
        shadow.absorb(&events);
        if let Err(e) = engine
            .check_invariants()
            .and_then(|_| shadow.check(&engine))
        {
            return Err(TestCaseError::fail(format!(
                "after #{i} {c:?}: {e}\n{events:?}"
            )));
        }
        if is_reject_only(&events) {
            prop_assert_eq!(
                business_state(&engine),
                before,
                "a reject changed state: {:?}",
                c
            );
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 200,
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(
            "tests/proptest-regressions/ledger_properties.txt",
        ))),
        ..ProptestConfig::default()
    })]

    #[test]
    fn ledger_invariants_hold_on_random_streams(commands in prop::collection::vec(command(), 1..250)) {
        run(&commands)?;
    }
}

/// The generator must reach fills, fees, taxes, reversals and withdrawals, or the property
/// proves little: a long deterministic stream is checked and its mix asserted.
#[test]
fn long_stream_holds_invariants_and_covers_the_ledger() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let strategy = command();
    let commands: Vec<Command> = (0..6_000)
        .map(|_| strategy.new_tree(&mut runner).unwrap().current())
        .collect();
    run(&commands).unwrap();
    let mut engine = Engine::new(EngineConfig::small());
    let mut events = Vec::new();
    for (i, c) in setup().iter().chain(&commands).enumerate() {
        let ts = 1_000_000_000 + i as u64 * 1_000_000;
        engine.apply(
            &Envelope {
                seq: i as u64 + 1,
                ts,
                command: c.clone(),
            },
            &mut events,
        );
    }
    let count = |f: &dyn Fn(&Event) -> bool| events.iter().filter(|e| f(e)).count();
    let posted = |t: TxType| count(&|e| e.transaction(0).is_some_and(|tx| tx.tx_type == t));
    let status = |to: TxStatus| {
        count(
            &|e| matches!(e, Event::TransactionStatusChanged { to: s, resent: false, .. } if *s == to),
        )
    };
    let user_trades = count(&|e| {
        matches!(e, Event::Trade { maker_account, taker_account, .. }
        if !maker_account.is_system_market() && !taker_account.is_system_market())
    });
    let taxed = count(&|e| matches!(e, Event::Trade { seller_taxes, .. } if seller_taxes[0].0 > 0));
    let mix = (
        posted(TxType::Trade),
        user_trades,
        taxed,
        posted(TxType::Reversal),
        status(TxStatus::Unknown),
        status(TxStatus::Failed),
    );
    assert!(
        mix.0 > 150 && mix.1 > 20 && mix.2 > 50 && mix.3 > 5 && mix.4 > 3 && mix.5 > 1,
        "{mix:?}"
    );
    for r in [
        RejectReason::InsufficientCash,
        RejectReason::InsufficientShares,
        RejectReason::ReversalWouldOverdraw,
        RejectReason::DuplicateKey,
    ] {
        assert!(
            count(&|e| testkit_reason(e) == Some(r)) > 0,
            "{r:?} never happened"
        );
    }
}

fn testkit_reason(e: &Event) -> Option<RejectReason> {
    kuku_engine::testkit::reject_reason(std::slice::from_ref(e))
}
