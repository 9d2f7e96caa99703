//! Queries: order status, open orders, balances and positions, and the reference data,
//! answered from a read model folded from the node's output events. Queries are never
//! journaled and never reach the engine.
//!
//! Every query's answer ends with one `QueryDone` (code 0, or why nothing or not everything
//! was answered, and how many reports came before it).
//!
//! **Invariants**: a trading session sees only its own account's orders and balances (another
//! account's order is `2007 UnknownOrder`, as if it did not exist; another account's balances
//! are `9004 NotPermitted`); an answer holds at most [`REPORTS_MAX`] reports.
//!
//! **Performance**: OrderStatus is one ring lookup; OpenOrders walks the account's open
//! orders; AccountQuery its positions; ReferenceQuery the symbol table (in id order).

use super::symbols::Symbols;
use crate::protocol::{
    AccountQuery, AccountSnapshot, GatewayCode, MarketReport, Message, OpenOrders, OrderReport,
    OrderStatus, PositionReport, QueryDone, ReferenceQuery, SymbolReport, WireOrderState,
};
use kuku_engine::readmodel::{OrderState, OrderView, ReadModel};
use kuku_engine::{AccountId, MarketPhase, Price, RejectReason};

/// Reports in one answer at most (then QueryDone says `9005 Truncated`).
pub const REPORTS_MAX: usize = 4_096;

/// A query a session may send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Query {
    OrderStatus(OrderStatus),
    OpenOrders(OpenOrders),
    Account(AccountQuery),
    Reference(ReferenceQuery),
}

/// Whose data a session may see.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// A trading session: its own account only.
    Account(AccountId),
    /// An admin session: every account.
    Any,
}

/// Answers `query` for a session of `scope`, handing each reply message to `out` in order.
pub fn answer(
    query: Query,
    scope: Scope,
    read_model: &ReadModel,
    symbols: &Symbols,
    out: &mut dyn FnMut(Message),
) {
    let done = |request_id: u64, code: u16, count: u32| -> Message {
        QueryDone {
            request_id,
            code,
            count,
        }
        .into()
    };
    match query {
        Query::OrderStatus(q) => {
            let own = match scope {
                Scope::Account(a) => Some(a),
                Scope::Any => None,
            };
            let found = read_model
                .orders
                .get(q.order_id)
                .filter(|o| own.is_none_or(|a| o.info.account == a));
            match found {
                Some(o) => {
                    out(order_report(symbols, q.request_id, o));
                    out(done(q.request_id, 0, 1));
                }
                None => out(done(q.request_id, RejectReason::UnknownOrder.code(), 0)),
            }
        }
        Query::OpenOrders(q) => {
            let Scope::Account(account) = scope else {
                return out(done(q.request_id, GatewayCode::NotPermitted.code(), 0));
            };
            let symbol = q.symbol.map(|c| symbols.id(c));
            let mut count = 0u32;
            let mut code = 0;
            for o in read_model.open_orders(account) {
                if symbol.is_some_and(|s| s != Some(o.info.symbol)) {
                    continue;
                }
                if count as usize == REPORTS_MAX {
                    code = GatewayCode::Truncated.code();
                    break;
                }
                out(order_report(symbols, q.request_id, o));
                count += 1;
            }
            out(done(q.request_id, code, count));
        }
        Query::Account(q) => account(q, scope, read_model, symbols, out),
        Query::Reference(q) => reference(q, read_model, symbols, out),
    }
}

fn account(
    q: AccountQuery,
    scope: Scope,
    read_model: &ReadModel,
    symbols: &Symbols,
    out: &mut dyn FnMut(Message),
) {
    let refuse = |code: u16| -> Message {
        QueryDone {
            request_id: q.request_id,
            code,
            count: 0,
        }
        .into()
    };
    let target = match (scope, q.account.0) {
        (Scope::Account(own), 0) => own,
        (Scope::Account(own), _) if q.account != own => {
            return out(refuse(GatewayCode::NotPermitted.code()));
        }
        _ => q.account,
    };
    // Account 0 is no trading account (SYSTEM_MARKET): on an admin session it names none.
    let Some(a) = read_model.accounts.get(&target).filter(|_| target.0 != 0) else {
        return out(refuse(RejectReason::UnknownAccount.code()));
    };
    let positions: Vec<_> = read_model.positions_of(target).copied().collect();
    let shown = positions.len().min(REPORTS_MAX);
    out(AccountSnapshot {
        request_id: q.request_id,
        account: target,
        cash: a.cash,
        cash_hold: a.cash_hold,
        available: a.available(),
        acct_seq: a.acct_seq,
        positions: shown as u32,
    }
    .into());
    for p in &positions[..shown] {
        out(PositionReport {
            request_id: q.request_id,
            symbol: symbols.code(p.symbol),
            qty: p.qty(),
            qty_hold: p.hold(),
            cost_basis: p.cost_basis,
            realized_pnl: p.realized_pnl,
        }
        .into());
    }
    let code = if shown < positions.len() {
        GatewayCode::Truncated.code()
    } else {
        0
    };
    out(QueryDone {
        request_id: q.request_id,
        code,
        count: shown as u32,
    }
    .into());
}

fn reference(
    q: ReferenceQuery,
    read_model: &ReadModel,
    symbols: &Symbols,
    out: &mut dyn FnMut(Message),
) {
    let only = match q.symbol {
        None => None,
        Some(code) => match symbols.id(code) {
            Some(id) => Some(id),
            None => {
                return out(QueryDone {
                    request_id: q.request_id,
                    code: RejectReason::UnknownSymbol.code(),
                    count: 0,
                }
                .into());
            }
        },
    };
    let fees = read_model.fees;
    out(MarketReport {
        request_id: q.request_id,
        trading_day: read_model.trading_day,
        phase: read_model.phase.unwrap_or(MarketPhase::Closed),
        commission_ppm: fees.commission_ppm,
        kospi_securities_transaction_ppm: fees.kospi.securities_transaction_ppm,
        kospi_rural_special_ppm: fees.kospi.rural_special_ppm,
        kosdaq_securities_transaction_ppm: fees.kosdaq.securities_transaction_ppm,
        kosdaq_rural_special_ppm: fees.kosdaq.rural_special_ppm,
        other_securities_transaction_ppm: fees.other.securities_transaction_ppm,
        other_rural_special_ppm: fees.other.rural_special_ppm,
    }
    .into());
    let mut count = 0u32;
    let mut code = 0;
    let listed = read_model
        .symbols
        .values()
        .filter(|s| only.is_none_or(|id| s.symbol.id == id));
    for s in listed {
        if count as usize == REPORTS_MAX {
            code = GatewayCode::Truncated.code();
            break;
        }
        let sym = &s.symbol;
        let band = sym.band.filter(|_| sym.banded);
        out(SymbolReport {
            request_id: q.request_id,
            symbol_id: sym.id.0,
            code: symbols.code(sym.id),
            name: sym.name,
            market: sym.market,
            tick_rule: sym.tick_rule.into(),
            base_price: sym.base_price,
            banded: sym.banded,
            lower_limit: band.map_or(Price(0), |b| b.lower),
            upper_limit: band.map_or(Price(0), |b| b.upper),
            lot_size: sym.lot_size,
            last_price: sym.last_trade_price.unwrap_or(Price(0)),
        }
        .into());
        count += 1;
    }
    out(QueryDone {
        request_id: q.request_id,
        code,
        count,
    }
    .into());
}

/// One order's report: `qty` is filled + leaves + cancelled (the size after any modify),
/// `leaves` 0 once the order is finished.
pub fn order_report(symbols: &Symbols, request_id: u64, o: &OrderView) -> Message {
    OrderReport {
        request_id,
        order_id: o.info.order_id,
        client_order_id: o.info.client_order_id,
        symbol: symbols.code(o.info.symbol),
        side: o.info.side,
        order_type: o.info.order_type,
        tif: o.info.tif,
        state: match o.state {
            OrderState::New => WireOrderState::New,
            OrderState::PartiallyFilled => WireOrderState::PartiallyFilled,
            OrderState::Filled => WireOrderState::Filled,
            OrderState::Cancelled(_) => WireOrderState::Cancelled,
            OrderState::Expired => WireOrderState::Expired,
        },
        price: o.price,
        qty: o.qty(),
        leaves: o.leaves,
        filled: o.filled,
        cancelled: o.cancelled,
    }
    .into()
}
