//! Conveniences for driving an engine by hand: tests, the demo, benchmarks and tools.
//!
//! [`Driver`] stamps envelopes with dense seqs and increasing timestamps; the `cmd` helpers
//! build commands with readable arguments. Nothing here is used by the engine itself.

use crate::command::{Command, Envelope, MarketPhase, NewOrder, RegisterSymbol};
use crate::config::EngineConfig;
use crate::engine::Engine;
use crate::event::Event;
use crate::fees::FeeSchedule;
use crate::reference::TickRule;
use crate::types::{
    AccountId, Amount, ClientOrderId, ExternalRef, Market, OrderId, OrderType, Price, Qty, Side,
    SymbolCode, SymbolId, SymbolName, TimeInForce,
};

/// An engine plus a seq/ts stamper that keeps every envelope it applied.
pub struct Driver {
    pub engine: Engine,
    pub seq: u64,
    pub ts: u64,
    /// Every envelope applied, in order (a journal in memory).
    pub journal: Vec<Envelope>,
}

impl Driver {
    pub fn new(config: EngineConfig) -> Driver {
        Driver {
            engine: Engine::new(config),
            seq: 0,
            ts: 1_000_000_000,
            journal: Vec::new(),
        }
    }

    /// Applies `command` with the next seq and a ts 1 ms later; returns its events.
    pub fn apply(&mut self, command: Command) -> Vec<Event> {
        self.seq += 1;
        self.ts += 1_000_000;
        let envelope = Envelope {
            seq: self.seq,
            ts: self.ts,
            command,
        };
        let mut events = Vec::new();
        self.engine.apply(&envelope, &mut events);
        self.journal.push(envelope);
        events
    }

    /// A market ready to trade: the 2026 fee schedule, the given KRX symbols registered
    /// (code, market, base price), a day started and the continuous session open.
    pub fn krx_market(config: EngineConfig, symbols: &[(&str, Market, i64)]) -> Driver {
        let mut d = Driver::new(config);
        d.apply(Command::SetFeeSchedule(FeeSchedule::KRX_2026));
        for &(code, market, base) in symbols {
            d.apply(cmd::register_krx(code, code, market, base));
        }
        d.apply(Command::StartOfDay {
            trading_day: 20_260_105,
            base_prices: Vec::new(),
        });
        d.apply(Command::SetMarketPhase {
            phase: MarketPhase::Continuous,
        });
        d
    }

    /// Opens an account for `owner` and deposits `cash` KRW; returns its id.
    pub fn funded_account(&mut self, owner: &str, cash: i64) -> AccountId {
        let events = self.apply(cmd::open_account(owner));
        let account = events
            .iter()
            .find_map(|e| match e {
                Event::AccountOpened { account, .. } => Some(*account),
                _ => None,
            })
            .expect("the account opens");
        if cash > 0 {
            self.apply(cmd::deposit(account, cash, &format!("fund-{owner}")));
        }
        account
    }
}

/// Readable command constructors.
pub mod cmd {
    use super::*;

    pub fn register_krx(code: &str, name: &str, market: Market, base: i64) -> Command {
        Command::RegisterSymbol(RegisterSymbol {
            code: SymbolCode::new(code).expect("a short code"),
            name: SymbolName::new(name).expect("a short name"),
            market,
            tick_rule: TickRule::Krx,
            base_price: Price(base),
            banded: true,
            lot_size: Qty(1),
        })
    }

    pub fn open_account(owner: &str) -> Command {
        Command::OpenAccount {
            owner: ExternalRef::new(owner).expect("a short owner key"),
        }
    }

    pub fn deposit(account: AccountId, amount: i64, external_ref: &str) -> Command {
        Command::Deposit {
            account,
            amount: Amount(amount),
            external_ref: ExternalRef::new(external_ref).expect("a short reference"),
        }
    }

    pub fn withdraw(account: AccountId, amount: i64, external_ref: &str) -> Command {
        Command::Withdraw {
            account,
            amount: Amount(amount),
            external_ref: ExternalRef::new(external_ref).expect("a short reference"),
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub fn order(
        account: AccountId,
        client_order_id: u64,
        symbol: u32,
        side: Side,
        order_type: OrderType,
        tif: TimeInForce,
        price: i64,
        qty: i64,
    ) -> Command {
        Command::PlaceOrder(NewOrder {
            account,
            client_order_id: ClientOrderId(client_order_id),
            symbol: SymbolId(symbol),
            side,
            order_type,
            tif,
            price: Price(price),
            qty: Qty(qty),
        })
    }

    /// A DAY limit order.
    pub fn limit(
        account: AccountId,
        coid: u64,
        symbol: u32,
        side: Side,
        price: i64,
        qty: i64,
    ) -> Command {
        order(
            account,
            coid,
            symbol,
            side,
            OrderType::Limit,
            TimeInForce::Day,
            price,
            qty,
        )
    }

    pub fn market(account: AccountId, coid: u64, symbol: u32, side: Side, qty: i64) -> Command {
        order(
            account,
            coid,
            symbol,
            side,
            OrderType::Market,
            TimeInForce::Ioc,
            0,
            qty,
        )
    }

    pub fn cancel(account: AccountId, request_id: u64, order_id: u64) -> Command {
        Command::CancelOrder {
            account,
            request_id: ClientOrderId(request_id),
            order_id: OrderId(order_id),
        }
    }

    pub fn modify(
        account: AccountId,
        request_id: u64,
        order_id: u64,
        qty: i64,
        price: i64,
    ) -> Command {
        Command::ModifyOrder {
            account,
            request_id: ClientOrderId(request_id),
            order_id: OrderId(order_id),
            new_qty: Qty(qty),
            new_price: Price(price),
        }
    }

    pub fn quote(symbol: u32, bid: i64, bid_qty: i64, ask: i64, ask_qty: i64) -> Command {
        Command::QuoteUpdate {
            symbol: SymbolId(symbol),
            bid_price: Price(bid),
            bid_qty: Qty(bid_qty),
            ask_price: Price(ask),
            ask_qty: Qty(ask_qty),
        }
    }
}

/// A resting DAY limit buy of 10 for account 1 on symbol 1, its client order id equal to its
/// id: the order an `OrderAccepted` event (or a read-model view) carries in unit tests.
pub fn order_info(id: u64, price: i64) -> crate::event::OrderInfo {
    crate::event::OrderInfo {
        order_id: OrderId(id),
        account: AccountId(1),
        client_order_id: ClientOrderId(id),
        symbol: SymbolId(1),
        side: Side::Buy,
        order_type: OrderType::Limit,
        tif: TimeInForce::Day,
        price: Price(price),
        qty: Qty(10),
    }
}

/// The first `OrderAccepted` order id in `events`.
pub fn accepted_id(events: &[Event]) -> Option<OrderId> {
    events.iter().find_map(|e| match e {
        Event::OrderAccepted { order, .. } => Some(order.order_id),
        _ => None,
    })
}

/// The reject reason of the first rejection in `events`, of any kind.
pub fn reject_reason(events: &[Event]) -> Option<crate::reject::RejectReason> {
    events.iter().find_map(|e| match e {
        Event::OrderRejected { reason, .. }
        | Event::RequestRejected { reason, .. }
        | Event::CommandRejected { reason, .. }
        | Event::QuoteRejected { reason, .. } => Some(*reason),
        _ => None,
    })
}

/// Every trade in `events` as (price, qty, maker order, taker order).
pub fn trades(events: &[Event]) -> Vec<(i64, i64, u64, u64)> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Trade {
                price,
                qty,
                maker_order,
                taker_order,
                ..
            } => Some((price.0, qty.0, maker_order.0, taker_order.0)),
            _ => None,
        })
        .collect()
}
