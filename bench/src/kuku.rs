//! Kuku's adapter for the engine comparison: the real `Engine::apply` path (validation, the
//! book, events), book-only (`kuku`) or with risk, ledger, positions and idempotency on
//! (`kuku_full`).
//!
//! Set-up outside the measured loop: one symbol per flow book with the flow's fixed tick and
//! its +-30% band (`TickRule::Fixed` gives exactly the flow's band), the continuous session
//! open; in full mode the 2026 KRX fee schedule (KOSPI: commission and both sell taxes) and
//! every account funded far beyond any need (so there are no risk rejects: a reject would be
//! cheap work the peers never do).
//!
//! Every request (order, cancel, modify) carries the next number of one upward sequence as
//! its client id, as a FIX client numbers its ClOrdIDs. The sink records trades into the
//! shared trade hasher and counts unexpected rejects; it is part of the measured work, as
//! trade reporting is for the peers.

use crate::book_under_test::BookUnderTest;
use crate::end_state::{BookEnd, EndState, TradeHasher};
use crate::flow::{Flow, FlowOp, Side as FSide, Tif};
use kuku_engine::*;

pub struct KukuBook {
    name: &'static str,
    engine: Engine,
    sink: Recorder,
    seq: u64,
    symbols: u32,
}

/// Reads the engine's events during the run.
struct Recorder {
    hasher: TradeHasher,
    anomalies: u64,
}

impl EventSink for Recorder {
    #[inline]
    fn emit(&mut self, event: &Event) {
        match event {
            Event::Trade {
                maker_order,
                taker_order,
                price,
                qty,
                ..
            } => self
                .hasher
                .record(maker_order.0, taker_order.0, price.0, qty.0),
            Event::OrderRejected { .. }
            | Event::RequestRejected { .. }
            | Event::CommandRejected { .. } => self.anomalies += 1,
            _ => {}
        }
    }
}

/// Shares and cash each account starts with in full mode.
const SHARES_PER_ACCOUNT: i64 = 1_000_000_000;
const CASH_PER_ACCOUNT: i64 = 1_000_000_000_000_000;

impl KukuBook {
    /// `full`: risk, ledger, positions and idempotency on; `ladder`: the book design.
    pub fn new(flow: &Flow, full: bool, ladder: LadderPolicy) -> KukuBook {
        let name = match (full, ladder) {
            (false, LadderPolicy::Auto) => "kuku",
            (true, LadderPolicy::Auto) => "kuku_full",
            (false, LadderPolicy::SortedOnly) => "kuku_sorted",
            (true, LadderPolicy::SortedOnly) => "kuku_full_sorted",
        };
        let mut book = KukuBook {
            name,
            engine: Engine::new(engine_config(flow, full, ladder)),
            sink: Recorder {
                hasher: TradeHasher::new(),
                anomalies: 0,
            },
            seq: 0,
            symbols: flow.config().symbols,
        };
        for command in set_up_commands(flow, full) {
            book.seq += 1;
            let mut events = Vec::new();
            book.engine
                .apply_command(book.seq, book.seq, &command, &mut events);
            let rejected = kuku_engine::testkit::reject_reason(&events);
            assert!(
                rejected.is_none(),
                "set-up {command:?} rejected: {rejected:?}"
            );
        }
        book
    }
}

/// The engine configuration a flow needs (tables sized from it).
pub fn engine_config(flow: &Flow, full: bool, ladder: LadderPolicy) -> EngineConfig {
    let c = flow.config();
    let ops = flow.ops().len() as u32;
    EngineConfig {
        orders_max: (c.depth_orders as u32 + 4_096).next_power_of_two(),
        accounts_max: c.accounts + 1,
        symbols_max: c.symbols + 1,
        levels_max: 16_384,
        orders_per_account_day_max: ops + 16,
        keys_max: ops + 16,
        positions_max: (c.accounts * c.symbols) + 16,
        open_tx_max: 16,
        closed_tx_window_max: 16,
        accounting: full,
        ladder,
    }
}

/// The commands that prepare an engine for a flow: symbols with the flow's tick and band,
/// the day and the continuous session; with `full`, the fee schedule and funded accounts.
pub fn set_up_commands(flow: &Flow, full: bool) -> Vec<Command> {
    let c = flow.config();
    let mut out = Vec::new();
    if full {
        out.push(Command::SetFeeSchedule(FeeSchedule::KRX_2026));
    }
    for s in 0..c.symbols {
        out.push(Command::RegisterSymbol(RegisterSymbol {
            code: SymbolCode::new(&format!("B{s:05}")).expect("short"),
            name: SymbolName::new("bench book").expect("short"),
            market: Market::Kospi,
            tick_rule: TickRule::Fixed(c.price_tick),
            base_price: Price(c.price_base),
            banded: true,
            lot_size: Qty(1),
        }));
    }
    out.push(Command::StartOfDay {
        trading_day: 1,
        base_prices: Vec::new(),
    });
    out.push(Command::SetMarketPhase {
        phase: MarketPhase::Continuous,
    });
    if full {
        for a in 1..=c.accounts {
            let account = AccountId(a);
            out.push(Command::OpenAccount {
                owner: ExternalRef::new(&format!("bench{a}")).expect("short"),
            });
            out.push(Command::Deposit {
                account,
                amount: Amount(CASH_PER_ACCOUNT),
                external_ref: ExternalRef::new("bench-cash").expect("short"),
            });
            for s in 1..=c.symbols {
                out.push(Command::Adjust {
                    account,
                    asset: Asset::Shares(SymbolId(s)),
                    amount: Amount(SHARES_PER_ACCOUNT),
                    external_ref: ExternalRef::new(&format!("bench-shares-{s}")).expect("short"),
                    cost_price: kuku_engine::Price(0),
                });
            }
        }
    }
    out
}

/// Every op of the flow as a command; client ids number upward from `coid_first`.
pub fn flow_commands(flow: &Flow, coid_first: u64) -> Vec<Command> {
    flow.ops()
        .iter()
        .enumerate()
        .map(|(i, op)| command(op, coid_first + i as u64))
        .collect()
}

/// One flow op as a Kuku command carrying client id `coid`.
///
/// Kuku numbers accepted orders densely from 1 and accepts every flow order, so its order
/// ids are the flow's ids (an anomaly counter would show otherwise).
#[inline]
pub fn command(op: &FlowOp, coid: u64) -> Command {
    let side = |s: FSide| match s {
        FSide::Buy => Side::Buy,
        FSide::Sell => Side::Sell,
    };
    match *op {
        FlowOp::Limit {
            symbol,
            account,
            side: s,
            price,
            qty,
            tif,
            ..
        } => Command::PlaceOrder(NewOrder {
            account: AccountId(account),
            client_order_id: ClientOrderId(coid),
            symbol: SymbolId(symbol + 1),
            side: side(s),
            order_type: OrderType::Limit,
            tif: match tif {
                Tif::Day => TimeInForce::Day,
                Tif::Ioc => TimeInForce::Ioc,
                Tif::Fok => TimeInForce::Fok,
            },
            price: Price(price),
            qty: Qty(qty),
        }),
        FlowOp::Market {
            symbol,
            account,
            side: s,
            qty,
            ..
        } => Command::PlaceOrder(NewOrder {
            account: AccountId(account),
            client_order_id: ClientOrderId(coid),
            symbol: SymbolId(symbol + 1),
            side: side(s),
            order_type: OrderType::Market,
            tif: TimeInForce::Ioc,
            price: Price(0),
            qty: Qty(qty),
        }),
        FlowOp::Cancel { id, account, .. } => Command::CancelOrder {
            account: AccountId(account),
            request_id: ClientOrderId(coid),
            order_id: OrderId(id),
        },
        FlowOp::Modify {
            id,
            account,
            new_price,
            new_qty,
            ..
        } => Command::ModifyOrder {
            account: AccountId(account),
            request_id: ClientOrderId(coid),
            order_id: OrderId(id),
            new_qty: Qty(new_qty),
            new_price: Price(new_price),
        },
    }
}

impl BookUnderTest for KukuBook {
    fn name(&self) -> &'static str {
        self.name
    }

    #[inline]
    fn apply(&mut self, op: &FlowOp) {
        let command = command(op, self.seq + 1);
        self.seq += 1;
        self.engine
            .apply_command(self.seq, self.seq, &command, &mut self.sink);
    }

    fn end_state(&self) -> EndState {
        let mut books = vec![
            BookEnd {
                live_orders: 0,
                open_qty: 0,
                best_bid: None,
                best_ask: None,
            };
            self.symbols as usize
        ];
        for o in self.engine.live_orders() {
            let b = &mut books[o.symbol.0 as usize - 1];
            b.live_orders += 1;
            b.open_qty += o.leaves.0;
        }
        for (i, b) in books.iter_mut().enumerate() {
            let book = self
                .engine
                .book(SymbolId(i as u32 + 1))
                .expect("registered");
            b.best_bid = book.best(Side::Buy).map(|l| l.price.0);
            b.best_ask = book.best(Side::Sell).map(|l| l.price.0);
        }
        EndState::new(books, &self.sink.hasher)
    }

    fn anomalies(&self) -> u64 {
        self.sink.anomalies
    }

    fn detail(&self) -> Option<String> {
        let (displaced, accepted) = self.engine.orders_displaced();
        Some(format!(
            "{displaced} of {accepted} accepted orders placed away from their home slot ({:.1}%), warm-up included",
            100.0 * displaced as f64 / accepted.max(1) as f64
        ))
    }
}
