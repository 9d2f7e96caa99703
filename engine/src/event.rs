//! Events: everything the engine tells the world, in the order it happened.
//!
//! Every command yields at least one event. Events that concern a trading account carry that
//! account's sequence number (`acct_seq`, dense from 1 per account, 0 for SYSTEM_MARKET and
//! for commands without a valid account), so any node can replay a client's missed messages
//! from the journal.
//!
//! **Invariants**
//! - Every transaction `Event::transaction` expands sums to zero per asset.
//! - Events are plain `Copy` data: emitting one never allocates.
//!
//! **Performance**: events are compact (the largest, `Trade`, is about 150 bytes): ledger
//! lines are not carried but expanded on demand by [`Event::transaction`]; sinks receive
//! events by reference.

use crate::command::{Asset, CommandKind, MarketPhase, QuoteStatus};
use crate::fees::FeeSchedule;
use crate::idempotency::Outcome;
use crate::portfolio::Position;
use crate::reference::Symbol;
use crate::reject::RejectReason;
use crate::types::{
    AccountId, Amount, ClientOrderId, ExternalRef, OrderId, OrderType, Price, Qty, Side, SymbolId,
    TimeInForce, TradeId, TxId,
};
use serde::{Deserialize, Serialize};

/// Receives the events of each applied command.
pub trait EventSink {
    fn emit(&mut self, event: &Event);
}

/// Collects events into a `Vec` (tests, tools; allocates).
impl EventSink for Vec<Event> {
    fn emit(&mut self, event: &Event) {
        self.push(*event);
    }
}

/// Discards events.
pub struct NullSink;

impl EventSink for NullSink {
    #[inline]
    fn emit(&mut self, _event: &Event) {}
}

/// Ledger accounts (docs/ledger.md).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum LedgerAccount {
    /// A user's KRW.
    UserCash(AccountId),
    /// A user's shares of one symbol.
    UserSecurities(AccountId, SymbolId),
    /// Commission income.
    SystemFee,
    /// Taxes withheld.
    SystemTax,
    /// The street: counterparty of synthetic (quote-driven) fills.
    SystemMarket,
    /// The bank: counterparty of deposits, withdrawals and adjustments.
    SystemExternal,
}

/// What a ledger line is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum LineKind {
    /// Deposit, withdrawal or adjustment principal.
    Principal,
    /// Trade notional (price x qty) between the two cash accounts.
    Notional,
    /// Shares delivered between the two securities accounts.
    Shares,
    Commission,
    SecuritiesTransactionTax,
    RuralSpecialTax,
}

/// One line of a transaction: `amount` of `asset` into `account` (negative: out of it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Entry {
    pub account: LedgerAccount,
    pub asset: Asset,
    pub amount: Amount,
    pub line: LineKind,
}

/// The most lines a transaction has (a user-to-user KOSPI fill: notional 2, shares 2,
/// commission 2 x 2, two taxes x 2).
pub const ENTRIES_MAX: usize = 12;

/// Transaction types (docs/ledger.md).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum TxType {
    Deposit,
    Withdrawal,
    Trade,
    Reversal,
    Adjustment,
}

impl TxType {
    /// Only DEPOSIT, WITHDRAWAL and ADJUSTMENT can be reversed.
    pub fn is_reversible(self) -> bool {
        matches!(
            self,
            TxType::Deposit | TxType::Withdrawal | TxType::Adjustment
        )
    }
}

/// Transaction statuses; see docs/ledger.md for the transition table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum TxStatus {
    Pending,
    Posted,
    Failed,
    Unknown,
    Reversed,
}

/// What a transaction refers to in the business.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum BusinessRef {
    /// The bank's (or operator's) reference, unique per account.
    External(ExternalRef),
    Trade(TradeId),
    /// A reversal refers to the transaction it reverses.
    Reverses(TxId),
}

/// A ledger transaction with all its lines, as [`Event::transaction`] expands it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transaction {
    pub id: TxId,
    pub tx_type: TxType,
    pub business_ref: BusinessRef,
    /// The user account the transaction was made for (the taker's for trades).
    pub account: AccountId,
    pub ts: u64,
    pub entries_len: u8,
    pub entries: [Entry; ENTRIES_MAX],
}

impl Transaction {
    pub fn entries(&self) -> &[Entry] {
        &self.entries[..self.entries_len as usize]
    }

    /// True if the lines sum to zero for every asset they touch.
    pub fn is_balanced(&self) -> bool {
        let lines = self.entries();
        lines.iter().all(|probe| {
            lines
                .iter()
                .filter(|e| e.asset == probe.asset)
                .try_fold(0i64, |acc, e| acc.checked_add(e.amount.0))
                == Some(0)
        })
    }
}

/// Builds a transaction's lines without allocating.
pub struct Lines {
    entries: [Entry; ENTRIES_MAX],
    len: usize,
}

impl Default for Lines {
    fn default() -> Self {
        Lines::new()
    }
}

impl Lines {
    pub fn new() -> Lines {
        Lines {
            entries: [Entry {
                account: LedgerAccount::SystemMarket,
                asset: Asset::Krw,
                amount: Amount(0),
                line: LineKind::Notional,
            }; ENTRIES_MAX],
            len: 0,
        }
    }

    /// Adds a balanced pair: `amount` of `asset` from `from` to `to` (nothing if zero).
    #[inline]
    pub fn transfer(
        &mut self,
        from: LedgerAccount,
        to: LedgerAccount,
        asset: Asset,
        amount: i64,
        line: LineKind,
    ) {
        if amount == 0 {
            return;
        }
        self.entries[self.len] = Entry {
            account: from,
            asset,
            amount: Amount(-amount),
            line,
        };
        self.entries[self.len + 1] = Entry {
            account: to,
            asset,
            amount: Amount(amount),
            line,
        };
        self.len += 2;
    }

    pub fn into_transaction(
        self,
        id: TxId,
        tx_type: TxType,
        business_ref: BusinessRef,
        account: AccountId,
        ts: u64,
    ) -> Transaction {
        Transaction {
            id,
            tx_type,
            business_ref,
            account,
            ts,
            entries_len: self.len as u8,
            entries: self.entries,
        }
    }
}

/// A principal posting (deposit, withdrawal, adjustment, reversal): `amount` of `asset`
/// moves from SYSTEM_EXTERNAL to the user (negative: from the user).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Posting {
    pub tx: TxId,
    pub tx_type: TxType,
    pub business_ref: BusinessRef,
    pub account: AccountId,
    pub asset: Asset,
    pub amount: Amount,
}

impl Posting {
    pub fn transaction(&self, ts: u64) -> Transaction {
        let mut lines = Lines::new();
        let user = match self.asset {
            Asset::Krw => LedgerAccount::UserCash(self.account),
            Asset::Shares(s) => LedgerAccount::UserSecurities(self.account, s),
        };
        lines.transfer(
            LedgerAccount::SystemExternal,
            user,
            self.asset,
            self.amount.0,
            LineKind::Principal,
        );
        lines.into_transaction(self.tx, self.tx_type, self.business_ref, self.account, ts)
    }
}

fn cash_account(account: AccountId) -> LedgerAccount {
    if account.is_system_market() {
        LedgerAccount::SystemMarket
    } else {
        LedgerAccount::UserCash(account)
    }
}

fn securities_account(account: AccountId, symbol: SymbolId) -> LedgerAccount {
    if account.is_system_market() {
        LedgerAccount::SystemMarket
    } else {
        LedgerAccount::UserSecurities(account, symbol)
    }
}

/// The lines of the TRADE transaction of one fill (zero lines left out):
///
/// | line | debit (-) | credit (+) |
/// |---|---|---|
/// | Notional | buyer cash | seller cash |
/// | Shares | seller securities | buyer securities |
/// | Commission (buyer) | buyer cash | SYSTEM_FEE |
/// | Commission (seller) | seller cash | SYSTEM_FEE |
/// | Securities transaction tax | seller cash | SYSTEM_TAX |
/// | Rural special tax | seller cash | SYSTEM_TAX |
#[allow(clippy::too_many_arguments)]
pub fn trade_lines(
    symbol: SymbolId,
    buyer: AccountId,
    seller: AccountId,
    price: Price,
    qty: Qty,
    buyer_commission: Amount,
    seller_commission: Amount,
    seller_taxes: [Amount; 2],
) -> Lines {
    let mut lines = Lines::new();
    let (buyer_cash, seller_cash) = (cash_account(buyer), cash_account(seller));
    let krw = Asset::Krw;
    lines.transfer(
        buyer_cash,
        seller_cash,
        krw,
        price.0 * qty.0,
        LineKind::Notional,
    );
    lines.transfer(
        securities_account(seller, symbol),
        securities_account(buyer, symbol),
        Asset::Shares(symbol),
        qty.0,
        LineKind::Shares,
    );
    let (fee, tax) = (LedgerAccount::SystemFee, LedgerAccount::SystemTax);
    lines.transfer(
        buyer_cash,
        fee,
        krw,
        buyer_commission.0,
        LineKind::Commission,
    );
    lines.transfer(
        seller_cash,
        fee,
        krw,
        seller_commission.0,
        LineKind::Commission,
    );
    let [stt, rural] = seller_taxes;
    lines.transfer(
        seller_cash,
        tax,
        krw,
        stt.0,
        LineKind::SecuritiesTransactionTax,
    );
    lines.transfer(seller_cash, tax, krw, rural.0, LineKind::RuralSpecialTax);
    lines
}

/// Why a live order left the book without filling.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum CancelReason {
    /// The owner asked (CancelOrder).
    Requested,
    /// The owner asked for all (CancelAll).
    CancelAll,
    /// IOC remainder.
    IocRemainder,
    /// FOK could not fill completely: nothing filled.
    FokUnfilled,
    /// MARKET remainder after the band's liquidity.
    MarketRemainder,
    /// Self-trade prevention: the incoming remainder is cancelled.
    SelfTrade,
    /// A synthetic quote order replaced by a newer quote or withdrawn at EndOfDay.
    QuoteReplaced,
    /// The incoming order's next fill would take a balance or running total beyond `i64`: its
    /// remainder is cancelled; fills before it stand.
    Overflow,
    /// The ledger refused the incoming order's next fill (a bug, reported by
    /// `Event::LedgerAlarm`): its remainder is cancelled; fills before it stand.
    LedgerCheckFailed,
}

/// An accepted order as the engine recorded it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderInfo {
    pub order_id: OrderId,
    pub account: AccountId,
    pub client_order_id: ClientOrderId,
    pub symbol: SymbolId,
    pub side: Side,
    pub order_type: OrderType,
    pub tif: TimeInForce,
    /// The limit price (0 for MARKET orders).
    pub price: Price,
    pub qty: Qty,
}

/// The request a cancel-side reply answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum RequestKind {
    Cancel,
    CancelAll,
    Modify,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Event {
    SymbolRegistered {
        symbol: Symbol,
    },
    FeeScheduleSet {
        schedule: FeeSchedule,
    },
    DayStarted {
        trading_day: u32,
    },
    /// A symbol's base price and band for the day (one per symbol at StartOfDay).
    BandSet {
        symbol: SymbolId,
        base_price: Price,
        lower: Price,
        upper: Price,
    },
    PhaseChanged {
        phase: MarketPhase,
    },
    DayEnded {
        trading_day: u32,
    },
    AccountOpened {
        account: AccountId,
        owner: ExternalRef,
        acct_seq: u64,
        /// True when the owner key was seen before: this is the existing account.
        resent: bool,
    },
    OrderAccepted {
        acct_seq: u64,
        order: OrderInfo,
        /// True when this answers a resend of an earlier request with the same key.
        resent: bool,
    },
    OrderRejected {
        acct_seq: u64,
        account: AccountId,
        client_order_id: ClientOrderId,
        symbol: SymbolId,
        reason: RejectReason,
        resent: bool,
    },
    /// A cancel, cancel-all or modify request was rejected.
    RequestRejected {
        acct_seq: u64,
        account: AccountId,
        request_id: ClientOrderId,
        request: RequestKind,
        order_id: OrderId,
        reason: RejectReason,
    },
    /// A cancel, cancel-all or modify request was resent with the same key and content: the
    /// original outcome, nothing done again.
    RequestResent {
        acct_seq: u64,
        account: AccountId,
        request_id: ClientOrderId,
        request: RequestKind,
        order_id: OrderId,
        outcome: Outcome,
    },
    /// A cancel-all finished (after its `OrderCancelled` events).
    CancelAllDone {
        acct_seq: u64,
        account: AccountId,
        request_id: ClientOrderId,
        symbol: Option<SymbolId>,
        cancelled: u32,
    },
    /// A non-order command was rejected (admin, reference data, ledger).
    CommandRejected {
        command: CommandKind,
        account: AccountId,
        acct_seq: u64,
        reason: RejectReason,
    },
    QuoteRejected {
        symbol: SymbolId,
        reason: RejectReason,
    },
    /// The quote source's verdict on a symbol (`SetQuoteStatus`), after the withdrawals a
    /// `Stale` one causes.
    QuoteStatusSet {
        symbol: SymbolId,
        status: QuoteStatus,
    },
    Trade {
        trade_id: TradeId,
        symbol: SymbolId,
        price: Price,
        qty: Qty,
        taker_side: Side,
        maker_order: OrderId,
        maker_account: AccountId,
        maker_acct_seq: u64,
        /// Open quantity of the maker after this fill (0: filled).
        maker_leaves: Qty,
        taker_order: OrderId,
        taker_account: AccountId,
        taker_acct_seq: u64,
        taker_leaves: Qty,
        buyer_commission: Amount,
        seller_commission: Amount,
        /// Securities transaction tax and rural special tax paid by the seller.
        seller_taxes: [Amount; 2],
        /// The TRADE ledger transaction (0 when accounting is off).
        tx: TxId,
    },
    OrderCancelled {
        acct_seq: u64,
        account: AccountId,
        order_id: OrderId,
        symbol: SymbolId,
        /// The open quantity that was cancelled.
        qty_cancelled: Qty,
        reason: CancelReason,
        /// The cancel / cancel-all request, if the owner asked.
        request_id: ClientOrderId,
    },
    OrderModified {
        acct_seq: u64,
        account: AccountId,
        order_id: OrderId,
        request_id: ClientOrderId,
        price: Price,
        /// The new open quantity.
        leaves: Qty,
        priority_kept: bool,
    },
    OrderExpired {
        acct_seq: u64,
        account: AccountId,
        order_id: OrderId,
        symbol: SymbolId,
        qty_expired: Qty,
    },
    /// A principal posting (deposit, withdrawal, adjustment, reversal). Trades post through
    /// `Trade` itself; [`Event::transaction`] expands both into lines.
    LedgerPosted {
        posting: Posting,
    },
    /// An account's cash and hold after a change (accounting mode only).
    AccountUpdated {
        account: AccountId,
        cash: Amount,
        cash_hold: Amount,
    },
    /// A position after a change (accounting mode only).
    PositionUpdated {
        position: Position,
    },
    /// An external transaction (deposit, withdrawal, adjustment, reversal) was created
    /// (`from: None`) or moved between statuses.
    TransactionStatusChanged {
        tx: TxId,
        tx_type: TxType,
        account: AccountId,
        acct_seq: u64,
        asset: Asset,
        amount: Amount,
        external_ref: ExternalRef,
        from: Option<TxStatus>,
        to: TxStatus,
        /// For a reversal: the reversed transaction; for a reversed one: its reversal.
        linked: Option<TxId>,
        /// True when this answers a resend (same external reference and content).
        resent: bool,
    },
    /// ExpireStaleExternal finished (after its status changes).
    StaleExternalExpired {
        cutoff_ts: u64,
        expired: u32,
    },
    /// The total open quantity and order count at one price level after a change.
    BookChanged {
        symbol: SymbolId,
        side: Side,
        price: Price,
        level_qty: Qty,
        level_orders: u32,
    },
    SnapshotMarker,
    /// A replication epoch began: every id counter and account sequence number is at least
    /// `id_floor` now ([`crate::epochs`]).
    EpochBegan {
        epoch: u64,
        id_floor: u64,
    },
    /// A ledger entry point refused a posting or hold that the engine's own rules had
    /// admitted: a bug. Nothing changed; the command is rejected (or the order's remainder
    /// cancelled) with `LedgerCheckFailed`. The node logs it and counts it in its metrics.
    LedgerAlarm {
        command: CommandKind,
        fault: crate::ledger::LedgerFault,
    },
}

impl Event {
    /// The ledger transaction this event posts, with all its lines (`ts`: the envelope's).
    pub fn transaction(&self, ts: u64) -> Option<Transaction> {
        match *self {
            Event::LedgerPosted { posting } => Some(posting.transaction(ts)),
            Event::Trade {
                trade_id,
                symbol,
                price,
                qty,
                taker_side,
                maker_account,
                taker_account,
                buyer_commission,
                seller_commission,
                seller_taxes,
                tx,
                ..
            } if tx.0 != 0 => {
                let (buyer, seller) = match taker_side {
                    Side::Buy => (taker_account, maker_account),
                    Side::Sell => (maker_account, taker_account),
                };
                let lines = trade_lines(
                    symbol,
                    buyer,
                    seller,
                    price,
                    qty,
                    buyer_commission,
                    seller_commission,
                    seller_taxes,
                );
                Some(lines.into_transaction(
                    tx,
                    TxType::Trade,
                    BusinessRef::Trade(trade_id),
                    taker_account,
                    ts,
                ))
            }
            _ => None,
        }
    }

    /// The trading accounts this event is addressed to, with their `acct_seq`.
    pub fn recipients(&self) -> [(AccountId, u64); 2] {
        const NONE: (AccountId, u64) = (AccountId(0), 0);
        match *self {
            Event::AccountOpened {
                account, acct_seq, ..
            }
            | Event::OrderRejected {
                account, acct_seq, ..
            }
            | Event::RequestRejected {
                account, acct_seq, ..
            }
            | Event::RequestResent {
                account, acct_seq, ..
            }
            | Event::CancelAllDone {
                account, acct_seq, ..
            }
            | Event::CommandRejected {
                account, acct_seq, ..
            }
            | Event::OrderCancelled {
                account, acct_seq, ..
            }
            | Event::OrderModified {
                account, acct_seq, ..
            }
            | Event::OrderExpired {
                account, acct_seq, ..
            }
            | Event::TransactionStatusChanged {
                account, acct_seq, ..
            } => [(account, acct_seq), NONE],
            Event::OrderAccepted {
                acct_seq, order, ..
            } => [(order.account, acct_seq), NONE],
            Event::Trade {
                maker_account,
                maker_acct_seq,
                taker_account,
                taker_acct_seq,
                ..
            } => [
                (maker_account, maker_acct_seq),
                (taker_account, taker_acct_seq),
            ],
            _ => [NONE, NONE],
        }
    }
}
