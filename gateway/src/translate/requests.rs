//! Requests: an external request (a protocol message) becomes an engine command or a query,
//! or is refused before the journal with a code.
//!
//! What is refused here, in this order (docs/protocol.md, "Order entry" and "Value ranges"):
//! - a client order id or request id with the top bit set: `9003 ReservedKey`;
//! - a symbol code no listed symbol has: `1001 UnknownSymbol`;
//! - a MARKET order with a price other than 0 (`9006 MarketOrderPrice`) or a DAY time in
//!   force (`9007 MarketOrderTif`): its price would be ignored and its rest cancelled, which
//!   a client that sends them does not expect;
//! - a transfer of shares whose quantity is not positive (`4001 InvalidAmount`) or beyond
//!   `QTY_MAX` (`2015 OutOfRange`);
//! - a tick rule of the KRX table with a non-zero tick (`1004 InvalidTickRule`);
//! - any number beyond the engine's ranges, with the engine's own code
//!   (`kuku_engine::limits::check_ranges`).
//!
//! Such a refusal is not sequenced and uses no key: the client may correct the request and
//! send it again under the same key. Everything else reaches the engine, which applies its
//! own rules (and answers with sequenced messages).
//!
//! **Invariants**: total over every message: each is a request, a query, or a refusal.

use super::queries::Query;
use super::symbols::Symbols;
use crate::protocol::{
    AdminResult, GatewayCode, IssueToken, Message, OrderRejected, QueryDone, RESERVED_KEY_BIT,
    RequestRejected,
};
use kuku_engine::limits::{QTY_MAX, check_ranges};
use kuku_engine::{
    AccountId, Amount, Asset, ClientOrderId, Command, ExternalRef, FeeSchedule, NewOrder, OrderId,
    OrderType, Price, Qty, RegisterSymbol, RejectReason, RequestKind, SymbolCode, TaxRates,
    TimeInForce,
};

/// What a request asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    /// Submit this command to the node; its events answer it.
    Command(Command),
    /// Answer from the read model.
    Query(Query),
}

/// What an admin request asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AdminRequest {
    /// Submit this command; its events make one AdminResult echoing `request_id`.
    Command { request_id: u64, command: Command },
    /// Answer from the read model.
    Query(Query),
    /// Answer with the account's token (the door holds the secret).
    IssueToken(IssueToken),
}

/// Why a request does not reach the node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Not a request this kind of session may send (the TCP door closes the session with
    /// `9056 UnexpectedMessage`).
    NotAllowed,
    /// Refused with this code; answer with [`trading_rejection`] / [`admin_rejection`].
    Reject(u16),
}

impl From<RejectReason> for Refusal {
    fn from(r: RejectReason) -> Refusal {
        Refusal::Reject(r.code())
    }
}

impl From<GatewayCode> for Refusal {
    fn from(g: GatewayCode) -> Refusal {
        Refusal::Reject(g.code())
    }
}

fn unreserved(key: ClientOrderId) -> Result<(), Refusal> {
    if key.0 & RESERVED_KEY_BIT != 0 {
        return Err(GatewayCode::ReservedKey.into());
    }
    Ok(())
}

fn in_range(command: Command) -> Result<Command, Refusal> {
    check_ranges(&command)?;
    Ok(command)
}

/// A trading session's request, for the session's `account`.
pub fn trading_request(
    account: AccountId,
    message: Message,
    symbols: &Symbols,
) -> Result<Request, Refusal> {
    let symbol = |code| symbols.id(code).ok_or(RejectReason::UnknownSymbol);
    let command = match message {
        Message::OrderStatus(q) => return Ok(Request::Query(Query::OrderStatus(q))),
        Message::OpenOrders(q) => return Ok(Request::Query(Query::OpenOrders(q))),
        Message::AccountQuery(q) => return Ok(Request::Query(Query::Account(q))),
        Message::ReferenceQuery(q) => return Ok(Request::Query(Query::Reference(q))),
        Message::NewOrder(o) => {
            unreserved(o.client_order_id)?;
            let symbol = symbol(o.symbol)?;
            if o.order_type == OrderType::Market {
                if o.price != Price(0) {
                    return Err(GatewayCode::MarketOrderPrice.into());
                }
                if o.tif == TimeInForce::Day {
                    return Err(GatewayCode::MarketOrderTif.into());
                }
            }
            Command::PlaceOrder(NewOrder {
                account,
                client_order_id: o.client_order_id,
                symbol,
                side: o.side,
                order_type: o.order_type,
                tif: o.tif,
                price: o.price,
                qty: o.qty,
            })
        }
        Message::Cancel(c) => {
            unreserved(c.request_id)?;
            Command::CancelOrder {
                account,
                request_id: c.request_id,
                order_id: c.order_id,
            }
        }
        Message::CancelAll(c) => {
            unreserved(c.request_id)?;
            Command::CancelAll {
                account,
                request_id: c.request_id,
                symbol: c.symbol.map(symbol).transpose()?,
            }
        }
        Message::Modify(m) => {
            unreserved(m.request_id)?;
            Command::ModifyOrder {
                account,
                request_id: m.request_id,
                order_id: m.order_id,
                new_qty: m.new_qty,
                new_price: m.new_price,
            }
        }
        _ => return Err(Refusal::NotAllowed),
    };
    in_range(command).map(Request::Command)
}

/// The unsequenced reply that refuses trading request `message` with `code` (a gateway
/// decision: `acct_seq` 0, the key unused), or `None` if `message` is not a trading request.
pub fn trading_rejection(message: &Message, code: u16) -> Option<Message> {
    let request = |request_id, request, order_id| {
        RequestRejected {
            acct_seq: 0,
            request_id,
            request,
            order_id,
            reason: code,
        }
        .into()
    };
    let done = |request_id| {
        QueryDone {
            request_id,
            code,
            count: 0,
        }
        .into()
    };
    Some(match *message {
        Message::NewOrder(o) => OrderRejected {
            acct_seq: 0,
            client_order_id: o.client_order_id,
            symbol: Some(o.symbol),
            reason: code,
            resent: false,
        }
        .into(),
        Message::Cancel(c) => request(c.request_id, RequestKind::Cancel, c.order_id),
        Message::CancelAll(c) => request(c.request_id, RequestKind::CancelAll, OrderId(0)),
        Message::Modify(c) => request(c.request_id, RequestKind::Modify, c.order_id),
        Message::OrderStatus(q) => done(q.request_id),
        Message::OpenOrders(q) => done(q.request_id),
        Message::AccountQuery(q) => done(q.request_id),
        Message::ReferenceQuery(q) => done(q.request_id),
        _ => return None,
    })
}

/// An admin session's request.
pub fn admin_request(message: Message, symbols: &Symbols) -> Result<AdminRequest, Refusal> {
    let symbol = |code| symbols.id(code).ok_or(RejectReason::UnknownSymbol);
    let transfer_qty = |qty: Qty| {
        if qty.0 <= 0 {
            Err(Refusal::from(RejectReason::InvalidAmount))
        } else if qty.0 > QTY_MAX {
            Err(Refusal::from(RejectReason::OutOfRange))
        } else {
            Ok(qty.0)
        }
    };
    let (request_id, command) = match message {
        Message::AccountQuery(q) => return Ok(AdminRequest::Query(Query::Account(q))),
        Message::ReferenceQuery(q) => return Ok(AdminRequest::Query(Query::Reference(q))),
        Message::IssueToken(t) => return Ok(AdminRequest::IssueToken(t)),
        Message::OpenAccount(m) => (m.request_id, Command::OpenAccount { owner: m.owner }),
        Message::Deposit(m) => (
            m.request_id,
            Command::Deposit {
                account: m.account,
                amount: m.amount,
                external_ref: m.external_ref,
            },
        ),
        Message::Withdraw(m) => (
            m.request_id,
            Command::Withdraw {
                account: m.account,
                amount: m.amount,
                external_ref: m.external_ref,
            },
        ),
        Message::ConfirmTransaction(m) => {
            (m.request_id, Command::ConfirmTransaction { tx: m.tx_id })
        }
        Message::FailTransaction(m) => (m.request_id, Command::FailTransaction { tx: m.tx_id }),
        Message::ReverseTransaction(m) => {
            (m.request_id, Command::ReverseTransaction { tx: m.tx_id })
        }
        Message::RegisterSymbol(m) => {
            let tick_rule = m
                .tick_rule
                .to_engine()
                .ok_or(RejectReason::InvalidTickRule)?;
            // A wire code (1-6 ASCII alphanumerics) is always a valid engine code.
            let code = SymbolCode::new(m.code.as_str()).ok_or(RejectReason::InvalidSymbolCode)?;
            (
                m.request_id,
                Command::RegisterSymbol(RegisterSymbol {
                    code,
                    name: m.name,
                    market: m.market,
                    tick_rule,
                    base_price: m.base_price,
                    banded: m.banded,
                    lot_size: m.lot_size,
                }),
            )
        }
        Message::SetFeeSchedule(m) => (
            m.request_id,
            Command::SetFeeSchedule(FeeSchedule {
                commission_ppm: m.commission_ppm,
                kospi: TaxRates {
                    securities_transaction_ppm: m.kospi_securities_transaction_ppm,
                    rural_special_ppm: m.kospi_rural_special_ppm,
                },
                kosdaq: TaxRates {
                    securities_transaction_ppm: m.kosdaq_securities_transaction_ppm,
                    rural_special_ppm: m.kosdaq_rural_special_ppm,
                },
                other: TaxRates {
                    securities_transaction_ppm: m.other_securities_transaction_ppm,
                    rural_special_ppm: m.other_rural_special_ppm,
                },
            }),
        ),
        Message::TransferIn(m) => (
            m.request_id,
            transfer(
                m.account,
                symbol(m.symbol)?,
                transfer_qty(m.qty)?,
                m.price,
                m.external_ref,
            ),
        ),
        Message::TransferOut(m) => (
            m.request_id,
            // Positive and at most QTY_MAX: the negation cannot overflow.
            transfer(
                m.account,
                symbol(m.symbol)?,
                -transfer_qty(m.qty)?,
                Price(0),
                m.external_ref,
            ),
        ),
        _ => return Err(Refusal::NotAllowed),
    };
    let command = in_range(command)?;
    Ok(AdminRequest::Command {
        request_id,
        command,
    })
}

/// A transfer of shares is an adjustment of the account's shares against the outside world
/// (SYSTEM_EXTERNAL), carrying the cost price of shares that come in.
fn transfer(
    account: AccountId,
    symbol: kuku_engine::SymbolId,
    qty: i64,
    cost_price: Price,
    external_ref: ExternalRef,
) -> Command {
    Command::Adjust {
        account,
        asset: Asset::Shares(symbol),
        amount: Amount(qty),
        external_ref,
        cost_price,
    }
}

/// The request id an admin request carries (its AdminResult echoes it).
pub fn admin_request_id(message: &Message) -> Option<u64> {
    Some(match message {
        Message::OpenAccount(m) => m.request_id,
        Message::Deposit(m) => m.request_id,
        Message::Withdraw(m) => m.request_id,
        Message::ConfirmTransaction(m) => m.request_id,
        Message::FailTransaction(m) => m.request_id,
        Message::ReverseTransaction(m) => m.request_id,
        Message::RegisterSymbol(m) => m.request_id,
        Message::SetFeeSchedule(m) => m.request_id,
        Message::IssueToken(m) => m.request_id,
        Message::TransferIn(m) => m.request_id,
        Message::TransferOut(m) => m.request_id,
        _ => return None,
    })
}

/// The AdminResult that refuses an admin request with `code`.
pub fn admin_rejection(request_id: u64, request_type: u8, code: u16) -> Message {
    AdminResult {
        request_id,
        code,
        request_type,
        resent: false,
        account: AccountId(0),
        tx_id: kuku_engine::TxId(0),
        tx_status: None,
        symbol_id: 0,
    }
    .into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{
        Code, NewOrder as WireOrder, TickKind, TransferIn, TransferOut, WireTickRule,
    };
    use kuku_engine::{Market, Side, SymbolId, SymbolName};

    fn symbols() -> Symbols {
        let mut s = Symbols::default();
        s.insert(SymbolId(1), "005930");
        s
    }

    fn order(order_type: OrderType, tif: TimeInForce, price: i64, key: u64) -> Message {
        WireOrder {
            client_order_id: ClientOrderId(key),
            symbol: Code::new("005930").unwrap(),
            side: Side::Buy,
            order_type,
            tif,
            price: Price(price),
            qty: Qty(10),
        }
        .into()
    }

    fn code_of(r: Result<Request, Refusal>) -> Option<u16> {
        match r {
            Err(Refusal::Reject(c)) => Some(c),
            _ => None,
        }
    }

    #[test]
    fn orders_are_refused_at_the_door_in_a_fixed_order() {
        let (a, s) = (AccountId(1), symbols());
        let go = |m| trading_request(a, m, &s);
        assert!(matches!(
            go(order(OrderType::Limit, TimeInForce::Day, 71_000, 1)),
            Ok(Request::Command(Command::PlaceOrder(_)))
        ));
        assert_eq!(
            code_of(go(order(
                OrderType::Limit,
                TimeInForce::Day,
                71_000,
                1 << 63
            ))),
            Some(9003)
        );
        assert_eq!(
            code_of(go(order(OrderType::Market, TimeInForce::Ioc, 71_000, 2))),
            Some(9006)
        );
        assert_eq!(
            code_of(go(order(OrderType::Market, TimeInForce::Day, 0, 2))),
            Some(9007)
        );
        assert!(go(order(OrderType::Market, TimeInForce::Fok, 0, 2)).is_ok());
        assert_eq!(
            code_of(go(order(OrderType::Limit, TimeInForce::Day, i64::MAX, 3))),
            Some(RejectReason::OutOfRange.code())
        );
        let mut unknown = order(OrderType::Limit, TimeInForce::Day, 71_000, 4);
        if let Message::NewOrder(o) = &mut unknown {
            o.symbol = Code::new("NOPE").unwrap();
        }
        assert_eq!(code_of(go(unknown)), Some(1001));
        // The refusal echoes the request's key and symbol, unsequenced.
        match trading_rejection(&unknown, 1001) {
            Some(Message::OrderRejected(r)) => {
                assert_eq!((r.acct_seq, r.client_order_id.0), (0, 4));
                assert_eq!(r.symbol, Code::new("NOPE"));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            trading_request(a, crate::protocol::Heartbeat {}.into(), &s),
            Err(Refusal::NotAllowed)
        );
    }

    #[test]
    fn transfers_become_adjustments_of_shares_with_their_cost() {
        let s = symbols();
        let m = TransferIn {
            request_id: 9,
            account: AccountId(3),
            symbol: Code::new("005930").unwrap(),
            qty: Qty(10),
            price: Price(50_000),
            external_ref: ExternalRef::new("in").unwrap(),
        };
        match admin_request(m.into(), &s) {
            Ok(AdminRequest::Command {
                request_id: 9,
                command:
                    Command::Adjust {
                        amount: Amount(10),
                        cost_price: Price(50_000),
                        asset: Asset::Shares(SymbolId(1)),
                        ..
                    },
            }) => {}
            other => panic!("{other:?}"),
        }
        let out = |qty| TransferOut {
            request_id: 10,
            account: AccountId(3),
            symbol: Code::new("005930").unwrap(),
            qty: Qty(qty),
            external_ref: ExternalRef::new("out").unwrap(),
        };
        match admin_request(out(4).into(), &s) {
            Ok(AdminRequest::Command {
                command:
                    Command::Adjust {
                        amount: Amount(-4),
                        cost_price: Price(0),
                        ..
                    },
                ..
            }) => {}
            other => panic!("{other:?}"),
        }
        // A negative transfer out would be a transfer in: refused, as is i64::MIN.
        for qty in [0, -4, i64::MIN] {
            assert_eq!(
                admin_request(out(qty).into(), &s),
                Err(Refusal::Reject(4001))
            );
        }
        assert_eq!(
            admin_request(out(QTY_MAX + 1).into(), &s),
            Err(Refusal::Reject(2015))
        );
        let mut bad_price = m;
        bad_price.price = Price(i64::MAX);
        assert_eq!(
            admin_request(bad_price.into(), &s),
            Err(Refusal::Reject(2015))
        );
    }

    #[test]
    fn a_krx_tick_rule_with_a_tick_is_refused_with_the_tick_rule_code() {
        let register = |kind, tick| crate::protocol::RegisterSymbol {
            request_id: 1,
            code: Code::new("NEW1").unwrap(),
            name: SymbolName::new("new").unwrap(),
            market: Market::Kospi,
            tick_rule: WireTickRule { kind, tick },
            base_price: Price(1_000),
            banded: true,
            lot_size: Qty(1),
        };
        let s = Symbols::default();
        assert_eq!(
            admin_request(register(TickKind::Krx, 5).into(), &s),
            Err(Refusal::Reject(1004))
        );
        assert!(admin_request(register(TickKind::Krx, 0).into(), &s).is_ok());
        // A fixed tick of 0 reaches the engine, which refuses it with the same code.
        assert!(admin_request(register(TickKind::Fixed, 0).into(), &s).is_ok());
        assert_eq!(
            admin_request(register(TickKind::Fixed, i64::MAX).into(), &s),
            Err(Refusal::Reject(2015))
        );
    }
}
