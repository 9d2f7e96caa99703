//! The gateway's mirror of the node: a read model folded from the output events the gateway
//! itself consumes, the symbol code index, and the replay history; plus the translation of
//! engine events into the wire messages each account receives.
//!
//! Because the gateway answers queries from its own fold, on its own thread, a query always
//! sees at least every event the session has already been sent (no read-your-writes race
//! with another consumer thread).
//!
//! **Invariants**: events are applied in output order, each exactly once; an event is
//! translated *before* it is applied, so order details (client order id) are still there
//! when the event finishes the order. Every event that carries an `acct_seq > 0` for an
//! account yields exactly one sequenced message for that account, so the per-account stream
//! a client sees is gap-free.
//!
//! **Performance**: one read-model update (O(log n) B-tree operations) and at most two
//! message constructions per event; no allocation except the read model's and history's own.

use crate::history::History;
use crate::protocol::{
    AccountOpened, CancelAllDone, CancelCause, Cancelled, Code, CommandRejected, Execution,
    Liquidity, Message, Modified, OrderAccepted, OrderRejected, RequestRejected, RequestResent,
    TransactionUpdate,
};
use kuku_engine::idempotency::Outcome;
use kuku_engine::readmodel::ReadModel;
use kuku_engine::{
    AccountId, Amount, Asset, ClientOrderId, Event, OrderId, Qty, Side, SymbolId, TradeId,
};
use rustc_hash::FxHashMap;

/// A message addressed to one account.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Addressed {
    pub account: AccountId,
    /// 0: not sequenced (a reject for a command without a valid account).
    pub acct_seq: u64,
    pub message: Message,
}

/// At most two messages per event (a fill between two users).
pub type Translated = [Option<Addressed>; 2];

pub struct Mirror {
    pub read_model: ReadModel,
    pub history: History,
    codes: Vec<Option<Code>>,
    ids: FxHashMap<Code, SymbolId>,
}

impl Mirror {
    pub fn new(read_model: ReadModel, history: History) -> Mirror {
        let mut mirror = Mirror {
            read_model,
            history,
            codes: Vec::new(),
            ids: FxHashMap::default(),
        };
        let symbols: Vec<_> = mirror
            .read_model
            .symbols
            .values()
            .map(|s| (s.symbol.id, s.symbol.code))
            .collect();
        for (id, code) in symbols {
            mirror.index_symbol(id, code.as_str());
        }
        mirror
    }

    fn index_symbol(&mut self, id: SymbolId, code: &str) {
        let i = id.0 as usize;
        if self.codes.len() <= i {
            self.codes.resize(i + 1, None);
        }
        let code = Code::new(code);
        self.codes[i] = code;
        if let Some(c) = code {
            self.ids.insert(c, id);
        }
    }

    /// The wire code of a symbol (`None` if unknown or longer than 6 characters).
    #[inline]
    pub fn code(&self, id: SymbolId) -> Option<Code> {
        self.codes.get(id.0 as usize).copied().flatten()
    }

    /// The symbol with this wire code.
    #[inline]
    pub fn symbol_id(&self, code: Code) -> Option<SymbolId> {
        self.ids.get(&code).copied()
    }

    /// Applies one output event: translates it for its accounts, records the sequenced
    /// messages in the history, then folds it into the read model.
    pub fn apply(&mut self, seq: u64, ts: u64, event: &Event) -> Translated {
        let out = self.translate(ts, event);
        if let Event::EpochBegan { id_floor, .. } = *event {
            // Before the fold raises them: each account's last number of the old epoch.
            for (account, view) in &self.read_model.accounts {
                self.history.mark_epoch(*account, id_floor, view.acct_seq);
            }
        }
        self.read_model.apply(seq, ts, event);
        if let Event::SymbolRegistered { symbol } = event {
            self.index_symbol(symbol.id, symbol.code.as_str());
        }
        for a in out.iter().flatten() {
            if a.acct_seq > 0 {
                self.history.push(a.account, a.acct_seq, a.message);
            }
        }
        out
    }

    fn client_order_id(&self, order: OrderId) -> ClientOrderId {
        self.read_model
            .orders
            .get(order)
            .map_or(ClientOrderId(0), |o| o.info.client_order_id)
    }

    fn translate(&self, ts: u64, event: &Event) -> Translated {
        let one = |account: AccountId, acct_seq: u64, message: Message| {
            [
                Some(Addressed {
                    account,
                    acct_seq,
                    message,
                }),
                None,
            ]
        };
        match *event {
            Event::Trade { .. } => self.executions(ts, event),
            Event::AccountOpened {
                account,
                owner,
                acct_seq,
                resent,
            } => one(
                account,
                acct_seq,
                AccountOpened {
                    acct_seq,
                    account,
                    owner,
                    resent,
                }
                .into(),
            ),
            Event::OrderAccepted {
                acct_seq,
                order,
                resent,
            } => one(
                order.account,
                acct_seq,
                OrderAccepted {
                    acct_seq,
                    order_id: order.order_id,
                    client_order_id: order.client_order_id,
                    symbol: self.code(order.symbol),
                    side: order.side,
                    order_type: order.order_type,
                    tif: order.tif,
                    resent,
                    price: order.price,
                    qty: order.qty,
                }
                .into(),
            ),
            Event::OrderRejected {
                acct_seq,
                account,
                client_order_id,
                symbol,
                reason,
                resent,
            } => one(
                account,
                acct_seq,
                OrderRejected {
                    acct_seq,
                    client_order_id,
                    symbol: self.code(symbol),
                    reason: reason.code(),
                    resent,
                }
                .into(),
            ),
            Event::RequestRejected {
                acct_seq,
                account,
                request_id,
                request,
                order_id,
                reason,
            } => one(
                account,
                acct_seq,
                RequestRejected {
                    acct_seq,
                    request_id,
                    request,
                    order_id,
                    reason: reason.code(),
                }
                .into(),
            ),
            Event::RequestResent {
                acct_seq,
                account,
                request_id,
                request,
                order_id,
                outcome,
            } => {
                let (outcome_code, cancelled) = match outcome {
                    Outcome::Accepted(_) => (0, 0),
                    Outcome::Rejected(r) => (r.code(), 0),
                    Outcome::CancelledAll(n) => (0, n),
                };
                one(
                    account,
                    acct_seq,
                    RequestResent {
                        acct_seq,
                        request_id,
                        request,
                        order_id,
                        outcome_code,
                        cancelled,
                    }
                    .into(),
                )
            }
            Event::CancelAllDone {
                acct_seq,
                account,
                request_id,
                symbol,
                cancelled,
            } => one(
                account,
                acct_seq,
                CancelAllDone {
                    acct_seq,
                    request_id,
                    symbol: symbol.and_then(|s| self.code(s)),
                    cancelled,
                }
                .into(),
            ),
            Event::CommandRejected {
                command,
                account,
                acct_seq,
                reason,
            } => one(
                account,
                acct_seq,
                CommandRejected {
                    acct_seq,
                    command,
                    reason: reason.code(),
                }
                .into(),
            ),
            Event::OrderCancelled {
                acct_seq,
                account,
                order_id,
                symbol,
                qty_cancelled,
                reason,
                request_id,
            } => one(
                account,
                acct_seq,
                Cancelled {
                    acct_seq,
                    order_id,
                    client_order_id: self.client_order_id(order_id),
                    request_id,
                    symbol: self.code(symbol),
                    reason: CancelCause::Engine(reason),
                    qty_cancelled,
                }
                .into(),
            ),
            Event::OrderExpired {
                acct_seq,
                account,
                order_id,
                symbol,
                qty_expired,
            } => one(
                account,
                acct_seq,
                Cancelled {
                    acct_seq,
                    order_id,
                    client_order_id: self.client_order_id(order_id),
                    request_id: ClientOrderId(0),
                    symbol: self.code(symbol),
                    reason: CancelCause::Expired,
                    qty_cancelled: qty_expired,
                }
                .into(),
            ),
            Event::OrderModified {
                acct_seq,
                account,
                order_id,
                request_id,
                price,
                leaves,
                priority_kept,
            } => one(
                account,
                acct_seq,
                Modified {
                    acct_seq,
                    order_id,
                    request_id,
                    price,
                    leaves,
                    priority_kept,
                }
                .into(),
            ),
            Event::TransactionStatusChanged {
                tx,
                tx_type,
                account,
                acct_seq,
                asset,
                amount,
                external_ref,
                from,
                to,
                linked,
                resent,
            } => one(
                account,
                acct_seq,
                TransactionUpdate {
                    acct_seq,
                    tx_id: tx,
                    tx_type,
                    from,
                    to,
                    resent,
                    asset: match asset {
                        Asset::Krw => None,
                        Asset::Shares(s) => self.code(s),
                    },
                    amount,
                    external_ref,
                    linked_tx_id: linked.unwrap_or_default(),
                }
                .into(),
            ),
            _ => [None, None],
        }
    }

    /// One Execution for each user side of a fill (SYSTEM_MARKET gets none).
    fn executions(&self, ts: u64, event: &Event) -> Translated {
        let Event::Trade {
            trade_id,
            symbol,
            price,
            qty,
            taker_side,
            maker_order,
            maker_account,
            maker_acct_seq,
            maker_leaves,
            taker_order,
            taker_account,
            taker_acct_seq,
            taker_leaves,
            buyer_commission,
            seller_commission,
            seller_taxes,
            ..
        } = *event
        else {
            return [None, None];
        };
        let fill = Fill {
            trade_id,
            code: self.code(symbol),
            price,
            qty,
            ts,
            buyer_commission,
            seller_commission,
            seller_tax: Amount(seller_taxes[0].0.saturating_add(seller_taxes[1].0)),
        };
        let side = |account: AccountId,
                    acct_seq: u64,
                    order: OrderId,
                    side: Side,
                    liquidity: Liquidity,
                    leaves: Qty| {
            (acct_seq > 0 && !account.is_system_market()).then(|| Addressed {
                account,
                acct_seq,
                message: fill.execution(
                    acct_seq,
                    order,
                    self.client_order_id(order),
                    side,
                    liquidity,
                    leaves,
                ),
            })
        };
        [
            side(
                maker_account,
                maker_acct_seq,
                maker_order,
                taker_side.opposite(),
                Liquidity::Maker,
                maker_leaves,
            ),
            side(
                taker_account,
                taker_acct_seq,
                taker_order,
                taker_side,
                Liquidity::Taker,
                taker_leaves,
            ),
        ]
    }
}

/// The parts of a fill both sides share.
struct Fill {
    trade_id: TradeId,
    code: Option<Code>,
    price: kuku_engine::Price,
    qty: Qty,
    ts: u64,
    buyer_commission: Amount,
    seller_commission: Amount,
    seller_tax: Amount,
}

impl Fill {
    fn execution(
        &self,
        acct_seq: u64,
        order_id: OrderId,
        client_order_id: ClientOrderId,
        side: Side,
        liquidity: Liquidity,
        leaves: Qty,
    ) -> Message {
        let (commission, tax) = match side {
            Side::Buy => (self.buyer_commission, Amount(0)),
            Side::Sell => (self.seller_commission, self.seller_tax),
        };
        Execution {
            acct_seq,
            order_id,
            client_order_id,
            trade_id: self.trade_id,
            symbol: self.code,
            side,
            liquidity,
            price: self.price,
            qty: self.qty,
            leaves,
            commission,
            tax,
            ts_ns: self.ts,
        }
        .into()
    }
}
