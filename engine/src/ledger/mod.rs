//! The double-entry ledger: the single source of truth for money and shares.
//!
//! Balances live here and change only by balanced postings: a fill posts one TRADE
//! transaction (notional, shares, commission per user side, each sell-tax component as its
//! own line); deposits, withdrawals, adjustments and reversals post their principal against
//! SYSTEM_EXTERNAL (see [`external`]). Events carry postings compactly (`Event::Trade` with
//! its charges, `Event::LedgerPosted` with its principal) and `Event::transaction` expands
//! either into the full, balanced list of lines; balances are updated in place, and
//! `tests/ledger_properties.rs` replays every expanded transaction onto a zeroed ledger and
//! checks it reproduces the engine's balances exactly.
//!
//! **Invariants** (checked by [`crate::Engine::check_invariants`])
//! - Every asset sums to zero over all ledger accounts.
//! - No user balance or hold is negative; holds never exceed balances.
//! - `account.cash_hold` equals what its live buy orders and open withdrawals need.
//!
//! **Performance**: accounts are a dense `Vec` (id - 1); positions a `Vec` found through an
//! FxHash map, and cached in each live order, so a fill touches no map. No allocation after
//! construction.
//!
//! **Known limitations**: settlement is immediate (KRX settles cash on T+2); balances are i64
//! KRW, commands bound single amounts well below overflow (see `AMOUNT_MAX`).

pub mod external;
pub mod settlement;

use crate::book::order::{NIL, Slot};
use crate::portfolio::Position;
use crate::types::{AccountId, Amount, ExternalRef, SymbolId};
use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};

/// The largest single amount a deposit, withdrawal or adjustment may move (10^15 KRW), so that
/// sums of many stay far from i64 overflow.
pub const AMOUNT_MAX: i64 = 1_000_000_000_000_000;

/// A trading account's cash and bookkeeping.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    pub id: AccountId,
    pub owner: ExternalRef,
    /// The USER_CASH balance.
    pub cash: Amount,
    /// Cash held by live buy orders and open withdrawals.
    pub cash_hold: Amount,
    /// The last per-account event sequence number assigned.
    pub acct_seq: u64,
    /// Request ids used today.
    pub keys_today: u32,
    /// Live orders, oldest first (intrusive list through the order slab).
    #[serde(skip, default = "nil")]
    pub orders_head: Slot,
    #[serde(skip, default = "nil")]
    pub orders_tail: Slot,
}

fn nil() -> Slot {
    NIL
}

impl Account {
    #[inline]
    pub fn available(&self) -> Amount {
        Amount(self.cash.0 - self.cash_hold.0)
    }

    /// Assigns the next per-account event sequence number.
    #[inline]
    pub fn next_seq(&mut self) -> u64 {
        self.acct_seq += 1;
        self.acct_seq
    }
}

/// Balances of the system ledger accounts that are not per symbol.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SystemBalances {
    pub fee: Amount,
    pub tax: Amount,
    pub market_cash: Amount,
    pub external_cash: Amount,
}

/// Per-symbol share balances of the system accounts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SystemShares {
    pub market: i64,
    pub external: i64,
}

pub struct Ledger {
    pub accounts: Vec<Account>,
    pub accounts_max: u32,
    pub owners: FxHashMap<ExternalRef, AccountId>,
    pub positions: Vec<Position>,
    pub positions_max: u32,
    pub position_index: FxHashMap<(AccountId, SymbolId), u32>,
    pub system: SystemBalances,
    /// Indexed by symbol id - 1.
    pub system_shares: Vec<SystemShares>,
    pub external: external::ExternalTxs,
    pub next_tx_id: u64,
}

impl Ledger {
    pub fn new(
        accounts_max: u32,
        positions_max: u32,
        symbols_max: u32,
        open_tx_max: u32,
        closed_tx_window_max: u32,
    ) -> Ledger {
        let mut owners = FxHashMap::default();
        owners.reserve(accounts_max as usize);
        let mut position_index = FxHashMap::default();
        position_index.reserve(positions_max as usize);
        Ledger {
            accounts: Vec::with_capacity(accounts_max as usize),
            accounts_max,
            owners,
            positions: Vec::with_capacity(positions_max as usize),
            positions_max,
            position_index,
            system: SystemBalances::default(),
            system_shares: Vec::with_capacity(symbols_max as usize),
            external: external::ExternalTxs::new(open_tx_max, closed_tx_window_max),
            next_tx_id: 1,
        }
    }

    #[inline]
    pub fn account(&self, id: AccountId) -> Option<&Account> {
        (id.0 as usize)
            .checked_sub(1)
            .and_then(|i| self.accounts.get(i))
    }

    #[inline]
    pub fn account_mut(&mut self, id: AccountId) -> Option<&mut Account> {
        (id.0 as usize)
            .checked_sub(1)
            .and_then(|i| self.accounts.get_mut(i))
    }

    /// The next per-account sequence number, or 0 for SYSTEM_MARKET / unknown accounts.
    #[inline]
    pub fn next_seq(&mut self, id: AccountId) -> u64 {
        self.account_mut(id).map_or(0, Account::next_seq)
    }

    #[inline]
    pub fn position_slot(&self, account: AccountId, symbol: SymbolId) -> Option<u32> {
        self.position_index.get(&(account, symbol)).copied()
    }

    #[inline]
    pub fn position(&self, account: AccountId, symbol: SymbolId) -> Option<&Position> {
        self.position_slot(account, symbol)
            .map(|i| &self.positions[i as usize])
    }

    /// The position's slot, created flat if absent; `None` if the table is full.
    pub fn position_slot_or_insert(&mut self, account: AccountId, symbol: SymbolId) -> Option<u32> {
        if let Some(i) = self.position_slot(account, symbol) {
            return Some(i);
        }
        if self.positions.len() >= self.positions_max as usize {
            return None;
        }
        let i = self.positions.len() as u32;
        self.positions.push(Position::new(account, symbol));
        self.position_index.insert((account, symbol), i);
        Some(i)
    }

    /// Takes the next transaction id.
    #[inline]
    pub fn take_tx_id(&mut self) -> crate::types::TxId {
        let id = crate::types::TxId(self.next_tx_id);
        self.next_tx_id += 1;
        id
    }

    /// Sums of every asset over all ledger accounts: (KRW, per-symbol shares). Both must be 0.
    pub fn trial_balance(&self) -> (i128, Vec<(SymbolId, i128)>) {
        let krw = self.accounts.iter().map(|a| a.cash.0 as i128).sum::<i128>()
            + self.system.fee.0 as i128
            + self.system.tax.0 as i128
            + self.system.market_cash.0 as i128
            + self.system.external_cash.0 as i128;
        let mut shares: Vec<(SymbolId, i128)> = self
            .system_shares
            .iter()
            .enumerate()
            .map(|(i, s)| {
                (
                    SymbolId(i as u32 + 1),
                    s.market as i128 + s.external as i128,
                )
            })
            .collect();
        for p in &self.positions {
            if let Some(entry) = shares.get_mut(p.symbol.0 as usize - 1) {
                entry.1 += p.qty.0 as i128;
            }
        }
        (krw, shares)
    }
}
