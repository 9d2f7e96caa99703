//! Commands: everything that can change the engine's state, each journaled before it is applied.
//!
//! A command travels in an [`Envelope`] with a dense `seq` (from 1) and a `ts` in nanoseconds
//! since the Unix epoch, stamped before the journal write. The engine never reads a clock:
//! its time is the largest `ts` it has seen.
//!
//! **Invariants**: commands hold no heap data except `StartOfDay::base_prices` (a daily
//! command), so the steady-state commands (orders, cancels, quotes) cost no allocation.

use crate::fees::FeeSchedule;
use crate::reference::TickRule;
use crate::types::{
    AccountId, Amount, ClientOrderId, ExternalRef, Market, OrderId, OrderType, Price, Qty, Side,
    SymbolCode, SymbolId, SymbolName, TimeInForce, TxId,
};
use serde::{Deserialize, Serialize};

/// A command with its position in the journal and its timestamp.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    /// Dense from 1: the ring sequence offset by the recovered base.
    pub seq: u64,
    /// Nanoseconds since the Unix epoch, stamped before the journal write.
    pub ts: u64,
    pub command: Command,
}

/// Trading phases (KST). Orders are accepted in `Continuous` only.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum MarketPhase {
    /// No session (night, weekends, before the first StartOfDay).
    Closed,
    /// 08:30-09:00 pre-open call (not built yet: rejects orders).
    PreOpen,
    /// 09:00-15:20 continuous matching.
    Continuous,
    /// 15:20-15:30 closing call (not built yet: rejects orders).
    ClosingCall,
    /// 16:00-18:00 after-hours single-price session (not built yet: rejects orders).
    AfterHours,
}

/// Whether a symbol's external quotes can be trusted, as the quote source decided it
/// (docs/adr/ADR-023-quote-sources-breaker-and-stale-quotes.md).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum QuoteStatus {
    /// Quotes flow (every symbol starts here).
    #[default]
    Fresh,
    /// The source has had no quote for the symbol for too long: quote-driven liquidity is
    /// withdrawn, new quotes and MARKET orders are rejected until the source says `Fresh`.
    Stale,
}

/// A new order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewOrder {
    pub account: AccountId,
    pub client_order_id: ClientOrderId,
    pub symbol: SymbolId,
    pub side: Side,
    pub order_type: OrderType,
    pub tif: TimeInForce,
    /// Limit price; ignored (and recorded as 0) for MARKET orders.
    pub price: Price,
    pub qty: Qty,
}

/// The asset a ledger line moves: cash (KRW) or shares of one symbol.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Asset {
    Krw,
    Shares(SymbolId),
}

/// A symbol listing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegisterSymbol {
    pub code: SymbolCode,
    pub name: SymbolName,
    pub market: Market,
    pub tick_rule: TickRule,
    /// Reference price for the band until the next StartOfDay.
    pub base_price: Price,
    /// Whether the symbol has a daily +-30% band (KRX equities: yes).
    pub banded: bool,
    pub lot_size: Qty,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    RegisterSymbol(RegisterSymbol),
    SetFeeSchedule(FeeSchedule),
    /// Opens a trading day: recomputes every band from its base price (the official previous
    /// close given here; else the last trade; else the previous base) and resets the
    /// idempotency keys.
    StartOfDay {
        /// yyyymmdd in KST.
        trading_day: u32,
        base_prices: Vec<(SymbolId, Price)>,
    },
    SetMarketPhase {
        phase: MarketPhase,
    },
    /// Ends the trading day: DAY orders expire, synthetic quotes are withdrawn.
    EndOfDay {
        trading_day: u32,
    },
    /// Opens a trading account; `owner` is a unique key (resending it returns the same account).
    OpenAccount {
        owner: ExternalRef,
    },
    /// A bank deposit that has arrived: posted at once.
    Deposit {
        account: AccountId,
        amount: Amount,
        external_ref: ExternalRef,
    },
    /// A withdrawal: PENDING with a cash hold until confirmed or failed.
    Withdraw {
        account: AccountId,
        amount: Amount,
        external_ref: ExternalRef,
    },
    /// An operator's correction or a share transfer, posted at once against SYSTEM_EXTERNAL
    /// (signed amount: KRW, or shares of one symbol).
    Adjust {
        account: AccountId,
        asset: Asset,
        amount: Amount,
        external_ref: ExternalRef,
        /// What each added share cost (KRW): shares transferred in carry `cost_price x amount`
        /// into the position's cost basis. 0 for cash and for removals (removed shares take
        /// their average cost along); a transfer in may also carry no cost.
        cost_price: Price,
    },
    ConfirmTransaction {
        tx: TxId,
    },
    FailTransaction {
        tx: TxId,
    },
    ReverseTransaction {
        tx: TxId,
    },
    /// PENDING external transactions created before `cutoff_ts` become UNKNOWN.
    ExpireStaleExternal {
        cutoff_ts: u64,
    },
    PlaceOrder(NewOrder),
    CancelOrder {
        account: AccountId,
        request_id: ClientOrderId,
        order_id: OrderId,
    },
    /// Cancels every live order of the account (of one symbol, if given), in OrderId order.
    CancelAll {
        account: AccountId,
        request_id: ClientOrderId,
        symbol: Option<SymbolId>,
    },
    /// Sets the open (leaves) quantity and the price of a live LIMIT order, both absolute.
    /// A price change or a quantity increase loses time priority; a decrease keeps it.
    ModifyOrder {
        account: AccountId,
        request_id: ClientOrderId,
        order_id: OrderId,
        new_qty: Qty,
        new_price: Price,
    },
    /// The external best bid and ask (a size of 0 withdraws that side).
    QuoteUpdate {
        symbol: SymbolId,
        bid_price: Price,
        bid_qty: Qty,
        ask_price: Price,
        ask_qty: Qty,
    },
    /// A marker: a shadow engine replaying the journal writes a snapshot at this seq.
    TakeSnapshot,
    /// The quote source's verdict on a symbol's quotes, journaled so that the engine never
    /// reads a clock and a replay decides exactly as the live run did. `Stale` withdraws the
    /// symbol's synthetic quote orders and refuses QuoteUpdates and MARKET orders until
    /// `Fresh`; resting orders keep matching each other.
    SetQuoteStatus {
        symbol: SymbolId,
        status: QuoteStatus,
    },
    /// The first command of a replication epoch (a promoted primary journals it): raises the
    /// id counters and every account's sequence number to the epoch's floor
    /// ([`crate::epochs`]).
    BeginEpoch {
        epoch: u64,
    },
}

/// Command kinds, for statistics, dumps and rejects of non-order commands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum CommandKind {
    RegisterSymbol,
    SetFeeSchedule,
    StartOfDay,
    SetMarketPhase,
    EndOfDay,
    OpenAccount,
    Deposit,
    Withdraw,
    Adjust,
    ConfirmTransaction,
    FailTransaction,
    ReverseTransaction,
    ExpireStaleExternal,
    PlaceOrder,
    CancelOrder,
    CancelAll,
    ModifyOrder,
    QuoteUpdate,
    TakeSnapshot,
    BeginEpoch,
    SetQuoteStatus,
}

impl Command {
    pub fn kind(&self) -> CommandKind {
        match self {
            Command::RegisterSymbol(_) => CommandKind::RegisterSymbol,
            Command::SetFeeSchedule(_) => CommandKind::SetFeeSchedule,
            Command::StartOfDay { .. } => CommandKind::StartOfDay,
            Command::SetMarketPhase { .. } => CommandKind::SetMarketPhase,
            Command::EndOfDay { .. } => CommandKind::EndOfDay,
            Command::OpenAccount { .. } => CommandKind::OpenAccount,
            Command::Deposit { .. } => CommandKind::Deposit,
            Command::Withdraw { .. } => CommandKind::Withdraw,
            Command::Adjust { .. } => CommandKind::Adjust,
            Command::ConfirmTransaction { .. } => CommandKind::ConfirmTransaction,
            Command::FailTransaction { .. } => CommandKind::FailTransaction,
            Command::ReverseTransaction { .. } => CommandKind::ReverseTransaction,
            Command::ExpireStaleExternal { .. } => CommandKind::ExpireStaleExternal,
            Command::PlaceOrder(_) => CommandKind::PlaceOrder,
            Command::CancelOrder { .. } => CommandKind::CancelOrder,
            Command::CancelAll { .. } => CommandKind::CancelAll,
            Command::ModifyOrder { .. } => CommandKind::ModifyOrder,
            Command::QuoteUpdate { .. } => CommandKind::QuoteUpdate,
            Command::TakeSnapshot => CommandKind::TakeSnapshot,
            Command::BeginEpoch { .. } => CommandKind::BeginEpoch,
            Command::SetQuoteStatus { .. } => CommandKind::SetQuoteStatus,
        }
    }

    /// The trading account a command acts for, if any (for dumps and filters).
    pub fn account(&self) -> Option<AccountId> {
        match self {
            Command::Deposit { account, .. }
            | Command::Withdraw { account, .. }
            | Command::Adjust { account, .. }
            | Command::CancelOrder { account, .. }
            | Command::CancelAll { account, .. }
            | Command::ModifyOrder { account, .. } => Some(*account),
            Command::PlaceOrder(o) => Some(o.account),
            _ => None,
        }
    }

    /// The symbol a command is about, if any (for dumps and filters).
    pub fn symbol(&self) -> Option<SymbolId> {
        match self {
            Command::PlaceOrder(o) => Some(o.symbol),
            Command::QuoteUpdate { symbol, .. } | Command::SetQuoteStatus { symbol, .. } => {
                Some(*symbol)
            }
            Command::CancelAll { symbol, .. } => *symbol,
            Command::Adjust {
                asset: Asset::Shares(s),
                ..
            } => Some(*s),
            _ => None,
        }
    }
}
