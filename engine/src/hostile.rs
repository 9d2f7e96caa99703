//! Hostile input for tests and fuzzing: commands whose numbers come from the whole range of
//! their types and from the edges where rules change, and a [`Harness`] that applies them and
//! checks, after every command, what must always hold.
//!
//! After every command the harness checks: the engine did not panic (the caller's test or
//! fuzzer sees a panic); [`Engine::check_invariants`] holds; every ledger transaction an event
//! carries is balanced; no ledger check failed (`Event::LedgerAlarm` means the engine admitted
//! something its ledger refused); and a command answered only by rejects or resends left the
//! books, balances, holds and positions exactly as they were ([`State`]).
//!
//! [`check_bytes`] is the body of the `engine_apply` fuzz target (fuzz/): it reads commands
//! from arbitrary bytes ([`ByteCommands`]) and runs them through harnesses with and without
//! accounting, from an empty engine and from a trading market. `engine/tests/totality.rs`
//! replays the committed corpus and runs the same checks on proptest streams.
//!
//! Nothing here is used by the engine itself.

use crate::command::{Asset, Command, MarketPhase, NewOrder, QuoteStatus, RegisterSymbol};
use crate::config::EngineConfig;
use crate::engine::Engine;
use crate::event::Event;
use crate::fees::{FeeSchedule, TaxRates};
use crate::limits::{AMOUNT_MAX, PRICE_MAX, QTY_MAX};
use crate::reference::TickRule;
use crate::testkit::{Driver, cmd};
use crate::types::{
    AccountId, Amount, ClientOrderId, ExternalRef, Market, OrderId, OrderType, Price, Qty, Side,
    SymbolCode, SymbolId, SymbolName, TimeInForce, TxId,
};

/// Prices, quantities and amounts where rules change: the ends of the `i64` range, the engine's
/// limits and one past them, the KRX tick-table row boundaries and the bands of the
/// [`Harness::market`] symbols.
pub const EDGE_I64: &[i64] = &[
    0,
    1,
    -1,
    2,
    i64::MIN,
    i64::MIN + 1,
    i64::MAX,
    i64::MAX - 1,
    PRICE_MAX,
    PRICE_MAX + 1,
    QTY_MAX,
    QTY_MAX + 1,
    AMOUNT_MAX,
    AMOUNT_MAX + 1,
    -AMOUNT_MAX,
    -AMOUNT_MAX - 1,
    1_999,
    2_000,
    4_995,
    5_000,
    19_990,
    20_000,
    49_950,
    50_000,
    199_900,
    200_000,
    499_500,
    500_000,
    1_000_000,
    // 005930 at 71,000: band 49,700..92,300 (tick 100 inside), one tick beyond each end.
    71_000,
    49_700,
    92_300,
    49_600,
    92_400,
    // 247540 at 1,990: band 1,393..2,585 across the 1/5 tick rows.
    1_990,
    1_393,
    2_585,
    1_392,
    2_590,
];

/// Identifiers, timestamps and cut-offs at their edges.
pub const EDGE_U64: &[u64] = &[0, 1, 2, 3, 4, 5, u64::MAX, u64::MAX - 1, 1 << 32, 1 << 63];

/// Account and symbol ids, trading days at their edges.
pub const EDGE_U32: &[u32] = &[0, 1, 2, 3, 4, u32::MAX, u32::MAX - 1, 255, 256];

/// What a rejected command must leave as it was: every live order (with its place in its book),
/// every balance, hold and position, the system accounts, and the reference data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct State {
    orders: Vec<OrderRow>,
    accounts: Vec<(u32, i64, i64)>,
    positions: Vec<(u32, u32, i64, i64, i64, i64)>,
    system: (i64, i64, i64, i64, Vec<(i64, i64)>),
    symbols: Vec<SymbolRow>,
}

/// id, account, symbol, side, price, leaves, filled, cash hold, resting.
type OrderRow = (u64, u32, u32, u8, i64, i64, i64, i64, bool);
/// id, base price, band, last trade price.
type SymbolRow = (u32, i64, Option<(i64, i64)>, Option<i64>);

impl State {
    pub fn of(engine: &Engine) -> State {
        let l = engine.ledger();
        State {
            orders: engine
                .live_orders()
                .map(|o| {
                    (
                        o.id.0,
                        o.account.0,
                        o.symbol.0,
                        o.side as u8,
                        o.price.0,
                        o.leaves.0,
                        o.filled.0,
                        o.cash_hold.0,
                        o.resting,
                    )
                })
                .collect(),
            accounts: l
                .accounts()
                .iter()
                .map(|a| (a.id.0, a.cash().0, a.cash_hold().0))
                .collect(),
            positions: l
                .positions()
                .iter()
                .map(|p| {
                    (
                        p.account.0,
                        p.symbol.0,
                        p.qty().0,
                        p.hold().0,
                        p.cost_basis.0,
                        p.realized_pnl.0,
                    )
                })
                .collect(),
            system: (
                l.system().fee().0,
                l.system().tax().0,
                l.system().market_cash().0,
                l.system().external_cash().0,
                l.system_shares()
                    .iter()
                    .map(|s| (s.market(), s.external()))
                    .collect(),
            ),
            symbols: engine
                .symbols()
                .map(|s| {
                    (
                        s.id.0,
                        s.base_price.0,
                        s.band.map(|b| (b.lower.0, b.upper.0)),
                        s.last_trade_price.map(|p| p.0),
                    )
                })
                .collect(),
        }
    }
}

/// True for the events that answer a command without changing anything: rejects, resends, the
/// snapshot marker (and alarms, which the harness refuses on their own).
pub fn changes_nothing(event: &Event) -> bool {
    matches!(
        event,
        Event::OrderRejected { .. }
            | Event::RequestRejected { .. }
            | Event::RequestResent { .. }
            | Event::CommandRejected { .. }
            | Event::QuoteRejected { .. }
            | Event::LedgerAlarm { .. }
            | Event::SnapshotMarker
            | Event::OrderAccepted { resent: true, .. }
            | Event::AccountOpened { resent: true, .. }
            | Event::TransactionStatusChanged { resent: true, .. }
    )
}

/// An engine under hostile commands, checked after each one.
pub struct Harness {
    pub driver: Driver,
    /// Commands applied since the harness was built (its setup excluded).
    pub steps: usize,
}

impl Harness {
    /// A fresh engine: no symbols, no accounts, the market closed.
    pub fn empty(accounting: bool) -> Harness {
        Harness {
            driver: Driver::new(config(accounting)),
            steps: 0,
        }
    }

    /// A trading market: the 2026 fee schedule; 005930 (KOSPI, 71,000) and 247540 (KOSDAQ,
    /// 1,990) with bands, and an unbanded symbol with a fixed tick of 5; the continuous
    /// session open; three funded accounts holding shares; resting orders on both sides and a
    /// quote.
    pub fn market(accounting: bool) -> Harness {
        let mut driver = Driver::krx_market(
            config(accounting),
            &[
                ("005930", Market::Kospi, 71_000),
                ("247540", Market::Kosdaq, 1_990),
            ],
        );
        driver.apply(Command::RegisterSymbol(RegisterSymbol {
            code: SymbolCode::new("FIXED5").expect("short"),
            name: SymbolName::new("fixed tick").expect("short"),
            market: Market::Other,
            tick_rule: TickRule::Fixed(5),
            base_price: Price(1_000),
            banded: false,
            lot_size: Qty(1),
        }));
        if accounting {
            for owner in ["a", "b", "c"] {
                let account = driver.funded_account(owner, 1_000_000_000);
                for symbol in 1..=3 {
                    driver.apply(Command::Adjust {
                        account,
                        asset: Asset::Shares(SymbolId(symbol)),
                        amount: Amount(1_000),
                        external_ref: ExternalRef::new(&format!("seed-{symbol}")).expect("short"),
                        cost_price: Price(0),
                    });
                }
            }
        }
        for (i, (account, side, price)) in [
            (1, Side::Buy, 70_900),
            (2, Side::Sell, 71_100),
            (3, Side::Buy, 49_700),
            (1, Side::Sell, 92_300),
        ]
        .into_iter()
        .enumerate()
        {
            driver.apply(cmd::limit(
                AccountId(account),
                9_000 + i as u64,
                1,
                side,
                price,
                10,
            ));
        }
        driver.apply(cmd::limit(AccountId(2), 9_100, 3, Side::Sell, 1_005, 7));
        driver.apply(cmd::quote(2, 1_980, 50, 2_000, 50));
        Harness { driver, steps: 0 }
    }

    /// Applies one command and checks everything that must hold after it.
    pub fn step(&mut self, command: Command) -> Result<Vec<Event>, String> {
        let before = State::of(&self.driver.engine);
        let what = format!("{command:?}");
        let events = self.driver.apply(command);
        self.steps += 1;
        let at = |msg: String| format!("step {} ({what}): {msg}", self.steps);
        if events.is_empty() {
            return Err(at("no event".into()));
        }
        if let Some(alarm) = events
            .iter()
            .find(|e| matches!(e, Event::LedgerAlarm { .. }))
        {
            return Err(at(format!(
                "the ledger refused what the engine admitted: {alarm:?}"
            )));
        }
        let ts = self.driver.ts;
        if let Some(e) = events
            .iter()
            .find(|e| e.transaction(ts).is_some_and(|t| !t.is_balanced()))
        {
            return Err(at(format!("an unbalanced transaction: {e:?}")));
        }
        self.driver.engine.check_invariants().map_err(at)?;
        if events.iter().all(changes_nothing) && State::of(&self.driver.engine) != before {
            return Err(at(format!(
                "a rejected command changed the state: {events:?}"
            )));
        }
        Ok(events)
    }
}

fn config(accounting: bool) -> EngineConfig {
    EngineConfig {
        orders_max: 512,
        accounts_max: 8,
        symbols_max: 8,
        positions_max: 64,
        open_tx_max: 16,
        closed_tx_window_max: 16,
        orders_per_account_day_max: 256,
        keys_max: 2_048,
        accounting,
        ..EngineConfig::small()
    }
}

/// Reads commands from arbitrary bytes: a kind byte, then each field. A numeric field takes a
/// selector byte: below 0x80 it picks an edge value ([`EDGE_I64`], [`EDGE_U64`],
/// [`EDGE_U32`]) or a small number, otherwise the next bytes give the value in full. Runs out
/// of bytes as zeros, and ends when the input does.
pub struct ByteCommands<'a> {
    data: &'a [u8],
}

impl<'a> ByteCommands<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        ByteCommands { data }
    }

    fn byte(&mut self) -> u8 {
        match self.data.split_first() {
            Some((b, rest)) => {
                self.data = rest;
                *b
            }
            None => 0,
        }
    }

    fn flag(&mut self) -> bool {
        self.byte() & 1 == 0
    }

    fn raw<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0u8; N];
        for b in &mut out {
            *b = self.byte();
        }
        out
    }

    fn i64(&mut self) -> i64 {
        match self.byte() {
            s @ 0..0x40 => EDGE_I64[s as usize % EDGE_I64.len()],
            s @ 0x40..0x80 => i64::from(s - 0x40),
            _ => i64::from_le_bytes(self.raw()),
        }
    }

    fn u64(&mut self) -> u64 {
        match self.byte() {
            s @ 0..0x40 => EDGE_U64[s as usize % EDGE_U64.len()],
            s @ 0x40..0x80 => u64::from(s - 0x40),
            _ => u64::from_le_bytes(self.raw()),
        }
    }

    fn u32(&mut self) -> u32 {
        match self.byte() {
            s @ 0..0x40 => EDGE_U32[s as usize % EDGE_U32.len()],
            s @ 0x40..0x80 => u32::from(s - 0x40),
            _ => u32::from_le_bytes(self.raw()),
        }
    }

    fn pick<T: Copy>(&mut self, options: &[T]) -> T {
        options[self.byte() as usize % options.len()]
    }

    fn text<const N: usize>(&mut self) -> crate::types::InlineStr<N> {
        const CHARS: &[char] = &[
            '0', '5', '9', 'A', 'Z', 'a', 'z', '-', '_', ' ', '가', '\u{0}',
        ];
        let mut s = String::new();
        for _ in 0..self.byte() as usize % (N + 2) {
            let c = self.pick(CHARS);
            if s.len() + c.len_utf8() > N {
                break;
            }
            s.push(c);
        }
        crate::types::InlineStr::new(&s).unwrap_or_default()
    }

    fn phase(&mut self) -> MarketPhase {
        self.pick(&[
            MarketPhase::Closed,
            MarketPhase::PreOpen,
            MarketPhase::Continuous,
            MarketPhase::ClosingCall,
            MarketPhase::AfterHours,
        ])
    }

    fn fee_schedule(&mut self) -> FeeSchedule {
        let mut rates = || TaxRates {
            securities_transaction_ppm: self.i64(),
            rural_special_ppm: self.i64(),
        };
        let (kospi, kosdaq, other) = (rates(), rates(), rates());
        FeeSchedule {
            commission_ppm: self.i64(),
            kospi,
            kosdaq,
            other,
        }
    }

    fn asset(&mut self) -> Asset {
        if self.flag() {
            Asset::Krw
        } else {
            Asset::Shares(SymbolId(self.u32()))
        }
    }
}

impl Iterator for ByteCommands<'_> {
    type Item = Command;

    fn next(&mut self) -> Option<Command> {
        let kind = *self.data.first()?;
        self.data = &self.data[1..];
        Some(match kind % 21 {
            0 => Command::RegisterSymbol(RegisterSymbol {
                code: self.text(),
                name: self.text(),
                market: self.pick(&[Market::Kospi, Market::Kosdaq, Market::Other]),
                tick_rule: if self.flag() {
                    TickRule::Krx
                } else {
                    TickRule::Fixed(self.i64())
                },
                base_price: Price(self.i64()),
                banded: self.flag(),
                lot_size: Qty(self.i64()),
            }),
            1 => Command::SetFeeSchedule(self.fee_schedule()),
            2 => {
                let trading_day = self.u32();
                let n = self.byte() % 4;
                let base_prices = (0..n)
                    .map(|_| (SymbolId(self.u32()), Price(self.i64())))
                    .collect();
                Command::StartOfDay {
                    trading_day,
                    base_prices,
                }
            }
            3 => Command::SetMarketPhase {
                phase: self.phase(),
            },
            4 => Command::EndOfDay {
                trading_day: self.u32(),
            },
            5 => Command::OpenAccount { owner: self.text() },
            6 => Command::Deposit {
                account: AccountId(self.u32()),
                amount: Amount(self.i64()),
                external_ref: self.text(),
            },
            7 => Command::Withdraw {
                account: AccountId(self.u32()),
                amount: Amount(self.i64()),
                external_ref: self.text(),
            },
            8 => Command::Adjust {
                account: AccountId(self.u32()),
                asset: self.asset(),
                amount: Amount(self.i64()),
                external_ref: self.text(),
                // Half the adjustments carry a cost price: a transfer in, or a misuse of one.
                cost_price: Price(if self.flag() { 0 } else { self.i64() }),
            },
            9 => Command::ConfirmTransaction {
                tx: TxId(self.u64()),
            },
            10 => Command::FailTransaction {
                tx: TxId(self.u64()),
            },
            11 => Command::ReverseTransaction {
                tx: TxId(self.u64()),
            },
            12 => Command::ExpireStaleExternal {
                cutoff_ts: self.u64(),
            },
            13 => Command::PlaceOrder(NewOrder {
                account: AccountId(self.u32()),
                client_order_id: ClientOrderId(self.u64()),
                symbol: SymbolId(self.u32()),
                side: self.pick(&[Side::Buy, Side::Sell]),
                order_type: self.pick(&[OrderType::Limit, OrderType::Market]),
                tif: self.pick(&[TimeInForce::Day, TimeInForce::Ioc, TimeInForce::Fok]),
                price: Price(self.i64()),
                qty: Qty(self.i64()),
            }),
            14 => Command::CancelOrder {
                account: AccountId(self.u32()),
                request_id: ClientOrderId(self.u64()),
                order_id: OrderId(self.u64()),
            },
            15 => Command::CancelAll {
                account: AccountId(self.u32()),
                request_id: ClientOrderId(self.u64()),
                symbol: (self.flag()).then(|| SymbolId(self.u32())),
            },
            16 => Command::ModifyOrder {
                account: AccountId(self.u32()),
                request_id: ClientOrderId(self.u64()),
                order_id: OrderId(self.u64()),
                new_qty: Qty(self.i64()),
                new_price: Price(self.i64()),
            },
            17 => Command::QuoteUpdate {
                symbol: SymbolId(self.u32()),
                bid_price: Price(self.i64()),
                bid_qty: Qty(self.i64()),
                ask_price: Price(self.i64()),
                ask_qty: Qty(self.i64()),
            },
            18 => Command::TakeSnapshot,
            19 => Command::SetQuoteStatus {
                symbol: SymbolId(self.u32()),
                status: self.pick(&[QuoteStatus::Fresh, QuoteStatus::Stale]),
            },
            _ => Command::BeginEpoch { epoch: self.u64() },
        })
    }
}

/// The fuzz target's body: the commands in `data` through four harnesses (empty and trading,
/// with and without accounting). Panics with the harness's message on a violation.
pub fn check_bytes(data: &[u8]) {
    let commands: Vec<Command> = ByteCommands::new(data).take(256).collect();
    for accounting in [true, false] {
        for mut harness in [Harness::empty(accounting), Harness::market(accounting)] {
            for command in &commands {
                if let Err(e) = harness.step(command.clone()) {
                    panic!("accounting {accounting}: {e}");
                }
            }
        }
    }
}
