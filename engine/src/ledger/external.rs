//! External transactions: accounts, deposits, withdrawals, adjustments, their confirmation,
//! failure, expiry and reversal.
//!
//! Status transitions (docs/ledger.md has the full table):
//! - Deposit and Adjustment post at once: created POSTED.
//! - Withdrawal: PENDING (its cash is held) -> POSTED (confirm) | FAILED (fail) | UNKNOWN
//!   (ExpireStaleExternal past its cutoff); UNKNOWN -> POSTED | FAILED only by explicit
//!   confirm or fail (reconciliation).
//! - POSTED DEPOSIT / WITHDRAWAL / ADJUSTMENT -> REVERSED at most once, by a REVERSAL
//!   transaction linked both ways. A reversal is never reversed; one that would make available
//!   cash (or shares) negative is rejected.
//!
//! The engine keeps the open transactions and a bounded FIFO window of closed ones with
//! their external references: a resent request (same account, reference and content) is
//! recognized and answered with the original status; a reversal is checked against the
//! window; an id that fell out of it gets `TransactionNotInWindow`. The database enforces
//! reference uniqueness beyond the window.
//!
//! **Performance**: FxHash maps preallocated to `open_tx_max` / `closed_tx_window_max`; no
//! allocation after construction (the expiry scratch list is preallocated too).

use super::AMOUNT_MAX;
use super::balance::{Hold, Holder, LedgerFault, LedgerTx};
use crate::command::{Asset, CommandKind};
use crate::engine::Engine;
use crate::event::{BusinessRef, Event, EventSink, Posting, TxStatus, TxType};
use crate::limits::{PRICE_MAX, QTY_MAX, amount_in_range};
use crate::portfolio::after_transfer;
use crate::reject::RejectReason;
use crate::types::{AccountId, Amount, ExternalRef, Price, Qty, TxId};
use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;

/// A deposit, withdrawal, adjustment or reversal the engine still remembers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExternalTx {
    pub id: TxId,
    pub tx_type: TxType,
    pub account: AccountId,
    pub asset: Asset,
    /// The amount as requested: positive for deposits and withdrawals, signed for
    /// adjustments; for a reversal, the effect on the user (the negation of the original's).
    pub amount: Amount,
    pub external_ref: ExternalRef,
    pub status: TxStatus,
    pub created_ts: u64,
    /// Reversal <-> reversed transaction.
    pub linked: Option<TxId>,
    /// Shares transferred in: what each cost (KRW), added to the position's cost basis.
    /// 0 for everything else.
    pub cost_price: Price,
}

impl ExternalTx {
    /// What posting this transaction adds to the user's balance of `asset`.
    pub fn user_delta(&self) -> i64 {
        match self.tx_type {
            TxType::Withdrawal => -self.amount.0,
            _ => self.amount.0,
        }
    }
}

/// Open transactions and the window of recently closed ones.
pub struct ExternalTxs {
    pub open: FxHashMap<TxId, ExternalTx>,
    pub open_max: usize,
    pub closed: FxHashMap<TxId, ExternalTx>,
    /// Closed ids, oldest closing first.
    pub closed_order: VecDeque<TxId>,
    pub window_max: usize,
    pub refs: FxHashMap<(AccountId, ExternalRef), TxId>,
    scratch: Vec<TxId>,
}

impl ExternalTxs {
    pub fn new(open_max: u32, window_max: u32) -> ExternalTxs {
        let (open_max, window_max) = (open_max as usize, window_max as usize);
        let mut open = FxHashMap::default();
        open.reserve(open_max);
        let mut closed = FxHashMap::default();
        closed.reserve(window_max + 1);
        let mut refs = FxHashMap::default();
        refs.reserve(open_max + window_max + 1);
        ExternalTxs {
            open,
            open_max,
            closed,
            closed_order: VecDeque::with_capacity(window_max + 1),
            window_max,
            refs,
            scratch: Vec::with_capacity(open_max),
        }
    }

    pub fn get(&self, id: TxId) -> Option<&ExternalTx> {
        self.open.get(&id).or_else(|| self.closed.get(&id))
    }

    pub fn by_ref(&self, account: AccountId, external_ref: &ExternalRef) -> Option<&ExternalTx> {
        self.refs
            .get(&(account, *external_ref))
            .and_then(|id| self.get(*id))
    }

    /// Adds a closed transaction to the window, evicting the oldest beyond `window_max`.
    pub fn close(&mut self, tx: ExternalTx) {
        self.open.remove(&tx.id);
        self.closed.insert(tx.id, tx);
        self.closed_order.push_back(tx.id);
        while self.closed_order.len() > self.window_max {
            let Some(old) = self.closed_order.pop_front() else {
                break;
            };
            if let Some(t) = self.closed.remove(&old) {
                let key = (t.account, t.external_ref);
                if self.refs.get(&key) == Some(&old) {
                    self.refs.remove(&key);
                }
            }
        }
    }

    fn remember_ref(&mut self, tx: &ExternalTx) {
        if tx.tx_type != TxType::Reversal && self.window_max > 0 {
            self.refs.insert((tx.account, tx.external_ref), tx.id);
        }
    }
}

/// A request's fields as a transaction value, for the shared checks.
fn proposal(
    tx_type: TxType,
    account: AccountId,
    asset: Asset,
    amount: Amount,
    external_ref: ExternalRef,
) -> ExternalTx {
    ExternalTx {
        id: TxId(0),
        tx_type,
        account,
        asset,
        amount,
        external_ref,
        status: TxStatus::Pending,
        created_ts: 0,
        linked: None,
        cost_price: Price(0),
    }
}

impl Engine {
    pub(crate) fn open_account(&mut self, owner: ExternalRef, sink: &mut impl EventSink) {
        let kind = CommandKind::OpenAccount;
        if owner.is_empty() {
            return self.reject_command(kind, AccountId(0), RejectReason::InvalidOwner, sink);
        }
        if let Some(account) = self.ledger.account_of_owner(&owner) {
            let acct_seq = self.ledger.next_seq(account);
            return sink.emit(&Event::AccountOpened {
                account,
                owner,
                acct_seq,
                resent: true,
            });
        }
        let Some(account) = self.ledger.open_account(owner) else {
            return self.reject_command(kind, AccountId(0), RejectReason::AccountsFull, sink);
        };
        let acct_seq = self.ledger.next_seq(account);
        sink.emit(&Event::AccountOpened {
            account,
            owner,
            acct_seq,
            resent: false,
        });
    }

    /// Shared checks of deposit, withdrawal and adjustment: account, amount, resend.
    /// `Ok(false)` means the request was a resend and has been answered.
    fn check_external(
        &mut self,
        kind: CommandKind,
        proposed: &ExternalTx,
        sink: &mut impl EventSink,
    ) -> Result<bool, RejectReason> {
        let ExternalTx {
            tx_type,
            account,
            asset,
            amount,
            external_ref,
            cost_price,
            ..
        } = *proposed;
        if self.ledger.account(account).is_none() {
            return Err(RejectReason::UnknownAccount);
        }
        // Ranges first, in the order `limits::check_ranges` checks them (a door refuses with
        // the engine's code), then the rules.
        let amount_ok = match kind {
            CommandKind::Adjust => amount_in_range(amount),
            _ => amount.0 > 0 && amount.0 <= AMOUNT_MAX,
        };
        if !amount_ok {
            return Err(RejectReason::InvalidAmount);
        }
        if cost_price.0 != 0 && (cost_price.0 > PRICE_MAX || amount.0 > QTY_MAX) {
            return Err(RejectReason::OutOfRange);
        }
        if amount.0 == 0 {
            return Err(RejectReason::InvalidAmount);
        }
        // A cost price belongs to shares coming in.
        if cost_price.0 != 0 && (cost_price.0 < 0 || asset == Asset::Krw || amount.0 < 0) {
            return Err(RejectReason::InvalidPrice);
        }
        if let Asset::Shares(symbol) = asset
            && self.symbol_state(symbol).is_none()
        {
            return Err(RejectReason::UnknownSymbol);
        }
        if let Some(prev) = self.ledger.external.by_ref(account, &external_ref).copied() {
            if prev.tx_type != tx_type
                || prev.amount != amount
                || prev.asset != asset
                || prev.cost_price != cost_price
            {
                return Err(RejectReason::ExternalRefReused);
            }
            self.emit_status(&prev, Some(prev.status), prev.status, true, sink);
            return Ok(false);
        }
        Ok(true)
    }

    pub(crate) fn deposit(
        &mut self,
        account: AccountId,
        amount: Amount,
        external_ref: ExternalRef,
        sink: &mut impl EventSink,
    ) {
        let kind = CommandKind::Deposit;
        let proposed = proposal(TxType::Deposit, account, Asset::Krw, amount, external_ref);
        match self.check_external(kind, &proposed, sink) {
            Err(reason) => self.reject_command(kind, account, reason, sink),
            Ok(false) => {}
            Ok(true) => {
                let tx =
                    self.new_external(TxType::Deposit, account, Asset::Krw, amount, external_ref);
                if let Err(fault) = self.post_external(tx, None, None, sink) {
                    self.refuse(kind, account, fault, sink);
                }
            }
        }
    }

    pub(crate) fn withdraw(
        &mut self,
        account: AccountId,
        amount: Amount,
        external_ref: ExternalRef,
        sink: &mut impl EventSink,
    ) {
        let kind = CommandKind::Withdraw;
        let proposed = proposal(
            TxType::Withdrawal,
            account,
            Asset::Krw,
            amount,
            external_ref,
        );
        let checked = self
            .check_external(kind, &proposed, sink)
            .and_then(|fresh| {
                if !fresh {
                    return Ok(false);
                }
                if self.ledger.external.open.len() >= self.ledger.external.open_max {
                    return Err(RejectReason::OpenTransactionsFull);
                }
                let available = self.ledger.account(account).map(|a| a.available());
                if available.is_none_or(|available| available < amount) {
                    return Err(RejectReason::InsufficientCash);
                }
                Ok(true)
            });
        match checked {
            Err(reason) => self.reject_command(kind, account, reason, sink),
            Ok(false) => {}
            Ok(true) => {
                let mut tx = self.new_external(
                    TxType::Withdrawal,
                    account,
                    Asset::Krw,
                    amount,
                    external_ref,
                );
                tx.status = TxStatus::Pending;
                if let Err(fault) = self.ledger.place_hold(Hold::Cash(account, amount)) {
                    return self.refuse(kind, account, fault, sink);
                }
                self.take_new_tx_id(&tx);
                self.ledger.external.open.insert(tx.id, tx);
                self.ledger.external.remember_ref(&tx);
                self.emit_status(&tx, None, TxStatus::Pending, false, sink);
                self.emit_account_state(account, sink);
            }
        }
    }

    pub(crate) fn adjust(
        &mut self,
        account: AccountId,
        asset: Asset,
        amount: Amount,
        external_ref: ExternalRef,
        cost_price: Price,
        sink: &mut impl EventSink,
    ) {
        let kind = CommandKind::Adjust;
        let mut proposed = proposal(TxType::Adjustment, account, asset, amount, external_ref);
        proposed.cost_price = cost_price;
        let checked = self
            .check_external(kind, &proposed, sink)
            .and_then(|fresh| {
                if fresh {
                    self.check_user_delta(
                        account,
                        asset,
                        amount.0,
                        RejectReason::AdjustmentWouldOverdraw,
                    )?;
                }
                Ok(fresh)
            });
        match checked {
            Err(reason) => self.reject_command(kind, account, reason, sink),
            Ok(false) => {}
            Ok(true) => {
                let mut tx =
                    self.new_external(TxType::Adjustment, account, asset, amount, external_ref);
                tx.cost_price = cost_price;
                if let Err(fault) = self.post_external(tx, None, None, sink) {
                    self.refuse(kind, account, fault, sink);
                }
            }
        }
    }

    /// Checks that adding `delta` of `asset` to the user keeps its available balance >= 0
    /// and that a position exists or can be created for shares.
    fn check_user_delta(
        &self,
        account: AccountId,
        asset: Asset,
        delta: i64,
        overdraw: RejectReason,
    ) -> Result<(), RejectReason> {
        let after = |available: i64| available.checked_add(delta).ok_or(RejectReason::Overflow);
        match asset {
            Asset::Krw => {
                let a = self
                    .ledger
                    .account(account)
                    .ok_or(RejectReason::UnknownAccount)?;
                if after(a.available().0)? < 0 {
                    return Err(overdraw);
                }
            }
            Asset::Shares(symbol) => match self.ledger.position(account, symbol) {
                Some(p) if after(p.available().0)? < 0 => return Err(overdraw),
                Some(_) => {}
                None if delta < 0 => return Err(overdraw),
                None if !self.ledger.has_room_for_position() => {
                    return Err(RejectReason::PositionsFull);
                }
                None => {}
            },
        }
        Ok(())
    }

    fn new_external(
        &mut self,
        tx_type: TxType,
        account: AccountId,
        asset: Asset,
        amount: Amount,
        external_ref: ExternalRef,
    ) -> ExternalTx {
        ExternalTx {
            // Taken for good only when the transaction is recorded (a refused posting uses up
            // no id).
            id: TxId(self.ledger.next_tx_id),
            tx_type,
            account,
            asset,
            amount,
            external_ref,
            status: TxStatus::Posted,
            created_ts: self.now_ts,
            linked: None,
            cost_price: Price(0),
        }
    }

    /// Posts `tx` (moving its user delta against SYSTEM_EXTERNAL, settling `release` in the
    /// same step), closes it into the window and emits its status change from `from`, its
    /// `LedgerPosted` and the new balance. On `Err` nothing has changed.
    fn post_external(
        &mut self,
        mut tx: ExternalTx,
        from: Option<TxStatus>,
        release: Option<Hold>,
        sink: &mut impl EventSink,
    ) -> Result<(), LedgerFault> {
        let delta = tx.user_delta();
        let mut posting = LedgerTx::new();
        let mut new_position = None;
        let cost = match tx.asset {
            Asset::Krw => {
                posting.line(Holder::UserCash(tx.account), delta).line(
                    Holder::ExternalCash,
                    delta.checked_neg().ok_or(LedgerFault::Overflow)?,
                );
                None
            }
            Asset::Shares(symbol) => {
                let existing = self.ledger.position_slot(tx.account, symbol);
                let slot = match existing {
                    Some(slot) => slot,
                    None => self
                        .ledger
                        .position_slot_or_insert(tx.account, symbol)
                        .ok_or(LedgerFault::UnknownHolder)?,
                };
                new_position = existing.is_none().then_some(slot);
                let position = self
                    .ledger
                    .position_at(slot)
                    .ok_or(LedgerFault::UnknownHolder)?;
                let cost = after_transfer(position, Qty(delta), tx.cost_price)
                    .ok_or(LedgerFault::Overflow);
                posting.line(Holder::UserShares(slot), delta).line(
                    Holder::ExternalShares(symbol),
                    delta.checked_neg().ok_or(LedgerFault::Overflow)?,
                );
                Some((slot, cost))
            }
        };
        if let Some(hold) = release {
            posting.release(hold);
        }
        let posted = match cost {
            Some((_, Err(fault))) => Err(fault),
            _ => self.ledger.post(&posting),
        };
        if let Err(fault) = posted {
            if let Some(slot) = new_position {
                self.ledger.forget_new_position(slot);
            }
            return Err(fault);
        }
        if let Some((slot, Ok(cost))) = cost
            && let Some(p) = self.ledger.position_mut(slot)
        {
            cost.apply(p);
        }
        if from.is_none() {
            self.take_new_tx_id(&tx);
        }
        tx.status = TxStatus::Posted;
        let business_ref = match (tx.tx_type, tx.linked) {
            (TxType::Reversal, Some(orig)) => BusinessRef::Reverses(orig),
            _ => BusinessRef::External(tx.external_ref),
        };
        let posting = Posting {
            tx: tx.id,
            tx_type: tx.tx_type,
            business_ref,
            account: tx.account,
            asset: tx.asset,
            amount: Amount(delta),
        };
        if tx.tx_type != TxType::Reversal {
            self.ledger.external.remember_ref(&tx);
        }
        self.ledger.external.close(tx);
        self.emit_status(&tx, from, TxStatus::Posted, false, sink);
        sink.emit(&Event::LedgerPosted { posting });
        self.emit_holder_state(&tx, sink);
        Ok(())
    }

    /// Takes the id `new_external` gave `tx` for good, once the transaction is recorded.
    fn take_new_tx_id(&mut self, tx: &ExternalTx) {
        let taken = self.ledger.take_tx_id();
        assert_eq!(
            taken, tx.id,
            "no id is taken between building and recording"
        );
    }

    /// Rejects a command whose posting or hold the ledger refused: `Overflow` for a limit,
    /// else `LedgerCheckFailed` with an alarm.
    fn refuse(
        &mut self,
        kind: CommandKind,
        account: AccountId,
        fault: LedgerFault,
        sink: &mut impl EventSink,
    ) {
        let reason = if fault.is_bug() {
            self.ledger_alarm(fault, sink);
            RejectReason::LedgerCheckFailed
        } else {
            RejectReason::Overflow
        };
        self.reject_command(kind, account, reason, sink);
    }

    /// The account (cash) or position (shares) a transaction touched, after it changed.
    fn emit_holder_state(&self, tx: &ExternalTx, sink: &mut impl EventSink) {
        match tx.asset {
            Asset::Krw => self.emit_account_state(tx.account, sink),
            Asset::Shares(symbol) => self.emit_position_state(tx.account, symbol, sink),
        }
    }

    fn emit_status(
        &mut self,
        tx: &ExternalTx,
        from: Option<TxStatus>,
        to: TxStatus,
        resent: bool,
        sink: &mut impl EventSink,
    ) {
        let acct_seq = self.ledger.next_seq(tx.account);
        sink.emit(&Event::TransactionStatusChanged {
            tx: tx.id,
            tx_type: tx.tx_type,
            account: tx.account,
            acct_seq,
            asset: tx.asset,
            amount: tx.amount,
            external_ref: tx.external_ref,
            from,
            to,
            linked: tx.linked,
            resent,
        });
    }

    fn missing_tx(&self, id: TxId) -> RejectReason {
        if id.0 == 0 || id.0 >= self.ledger.next_tx_id {
            RejectReason::UnknownTransaction
        } else {
            RejectReason::TransactionNotInWindow
        }
    }

    /// An open (PENDING or UNKNOWN) transaction, or why there is none.
    fn open_tx(&self, id: TxId) -> Result<ExternalTx, RejectReason> {
        if let Some(tx) = self.ledger.external.open.get(&id) {
            return Ok(*tx);
        }
        if self.ledger.external.closed.contains_key(&id) {
            return Err(RejectReason::InvalidTransition);
        }
        Err(self.missing_tx(id))
    }

    fn tx_account(&self, id: TxId) -> AccountId {
        self.ledger
            .external
            .get(id)
            .map_or(AccountId(0), |t| t.account)
    }

    pub(crate) fn confirm_transaction(&mut self, id: TxId, sink: &mut impl EventSink) {
        match self.open_tx(id) {
            Err(reason) => {
                let account = self.tx_account(id);
                self.reject_command(CommandKind::ConfirmTransaction, account, reason, sink)
            }
            Ok(tx) => {
                let hold = Hold::Cash(tx.account, tx.amount);
                if let Err(fault) = self.post_external(tx, Some(tx.status), Some(hold), sink) {
                    self.refuse(CommandKind::ConfirmTransaction, tx.account, fault, sink);
                }
            }
        }
    }

    pub(crate) fn fail_transaction(&mut self, id: TxId, sink: &mut impl EventSink) {
        match self.open_tx(id) {
            Err(reason) => {
                let account = self.tx_account(id);
                self.reject_command(CommandKind::FailTransaction, account, reason, sink)
            }
            Ok(mut tx) => {
                if let Err(fault) = self.ledger.release_hold(Hold::Cash(tx.account, tx.amount)) {
                    return self.refuse(CommandKind::FailTransaction, tx.account, fault, sink);
                }
                let from = tx.status;
                tx.status = TxStatus::Failed;
                self.ledger.external.close(tx);
                self.emit_status(&tx, Some(from), TxStatus::Failed, false, sink);
                self.emit_account_state(tx.account, sink);
            }
        }
    }

    pub(crate) fn reverse_transaction(&mut self, id: TxId, sink: &mut impl EventSink) {
        let checked = self.check_reversal(id);
        let orig = match checked {
            Err(reason) => {
                let account = self.tx_account(id);
                return self.reject_command(CommandKind::ReverseTransaction, account, reason, sink);
            }
            Ok(orig) => orig,
        };
        let kind = CommandKind::ReverseTransaction;
        let mut reversal = self.new_external(
            TxType::Reversal,
            orig.account,
            orig.asset,
            Amount(-orig.user_delta()),
            orig.external_ref,
        );
        reversal.linked = Some(orig.id);
        let mut reversed = orig;
        reversed.status = TxStatus::Reversed;
        reversed.linked = Some(reversal.id);
        if let Err(fault) = self.post_external(reversal, None, None, sink) {
            return self.refuse(kind, orig.account, fault, sink);
        }
        // Closing the reversal may have moved the original out of the window.
        if let Some(t) = self.ledger.external.closed.get_mut(&orig.id) {
            *t = reversed;
        }
        self.emit_status(
            &reversed,
            Some(TxStatus::Posted),
            TxStatus::Reversed,
            false,
            sink,
        );
    }

    fn check_reversal(&self, id: TxId) -> Result<ExternalTx, RejectReason> {
        let Some(orig) = self.ledger.external.closed.get(&id).copied() else {
            if self.ledger.external.open.contains_key(&id) {
                return Err(RejectReason::InvalidTransition);
            }
            return Err(self.missing_tx(id));
        };
        if !orig.tx_type.is_reversible() {
            return Err(RejectReason::NotReversible);
        }
        match orig.status {
            TxStatus::Reversed => return Err(RejectReason::AlreadyReversed),
            TxStatus::Posted => {}
            _ => return Err(RejectReason::InvalidTransition),
        }
        self.check_user_delta(
            orig.account,
            orig.asset,
            -orig.user_delta(),
            RejectReason::ReversalWouldOverdraw,
        )?;
        Ok(orig)
    }

    /// PENDING transactions created before `cutoff_ts` become UNKNOWN, in TxId order.
    pub(crate) fn expire_stale(&mut self, cutoff_ts: u64, sink: &mut impl EventSink) {
        let mut stale = std::mem::take(&mut self.ledger.external.scratch);
        stale.clear();
        stale.extend(
            self.ledger
                .external
                .open
                .values()
                .filter(|t| t.status == TxStatus::Pending && t.created_ts < cutoff_ts)
                .map(|t| t.id),
        );
        stale.sort_unstable();
        for id in &stale {
            let tx = self.ledger.external.open.get_mut(id).expect("listed above");
            tx.status = TxStatus::Unknown;
            let tx = *tx;
            self.emit_status(&tx, Some(TxStatus::Pending), TxStatus::Unknown, false, sink);
        }
        sink.emit(&Event::StaleExternalExpired {
            cutoff_ts,
            expired: stale.len() as u32,
        });
        self.ledger.external.scratch = stale;
    }
}
