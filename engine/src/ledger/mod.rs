//! The double-entry ledger: the single source of truth for money and shares.
//!
//! Balances live here and change only through the entry points of [`balance`] (post a whole
//! balanced transaction; place or release a hold), which check every posting before they
//! change anything. A fill posts one TRADE
//! transaction (notional, shares, commission per user side, each sell-tax component as its
//! own line); deposits, withdrawals, adjustments and reversals post their principal against
//! SYSTEM_EXTERNAL (see [`external`]). Events carry postings compactly (`Event::Trade` with
//! its charges, `Event::LedgerPosted` with its principal) and `Event::transaction` expands
//! either into the full, balanced list of lines; `tests/ledger_properties.rs` replays every expanded transaction onto a zeroed ledger and
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
//! KRW: commands bound single amounts ([`crate::limits`]) and every sum that grows over many
//! commands is checked by the entry points, which reject what would overflow.

pub mod balance;
pub mod external;
pub mod settlement;

pub use crate::limits::AMOUNT_MAX;
pub use balance::{
    Account, Fill, Hold, Holder, LedgerFault, LedgerTx, Line, Party, Position, SystemBalances,
    SystemShares,
};

use crate::types::{AccountId, ExternalRef, SymbolId};
use rustc_hash::FxHashMap;

/// The ledger: accounts, positions, system balances and open external transactions.
///
/// Its tables are private: other modules read them through the accessors below and change
/// money only through the entry points of [`balance`].
pub struct Ledger {
    accounts: Vec<Account>,
    accounts_max: u32,
    owners: FxHashMap<ExternalRef, AccountId>,
    positions: Vec<Position>,
    positions_max: u32,
    position_index: FxHashMap<(AccountId, SymbolId), u32>,
    system: SystemBalances,
    /// Indexed by symbol id - 1.
    system_shares: Vec<SystemShares>,
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

    /// An account's bookkeeping (sequence numbers, request ids, order list); its cash and
    /// hold change only through the entry points.
    #[inline]
    pub(crate) fn account_mut(&mut self, id: AccountId) -> Option<&mut Account> {
        (id.0 as usize)
            .checked_sub(1)
            .and_then(|i| self.accounts.get_mut(i))
    }

    /// Raises the transaction-id counter and every account's sequence number to `floor`
    /// (a new replication epoch, [`crate::epochs`]).
    pub(crate) fn raise_ids_to(&mut self, floor: u64) {
        self.next_tx_id = self.next_tx_id.max(floor);
        for account in &mut self.accounts {
            account.acct_seq = account.acct_seq.max(floor);
        }
    }

    /// Where a new account's sequence numbers start: the floor of the epoch the transaction-id
    /// counter is in (0 before any `BeginEpoch`).
    pub(crate) fn acct_seq_floor(&self) -> u64 {
        let epoch = crate::epochs::epoch_of(self.next_tx_id);
        crate::epochs::epoch_floor(epoch).unwrap_or(0)
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
            .and_then(|i| self.positions.get(i as usize))
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

    /// Undoes `position_slot_or_insert` of a position that a refused posting was to create:
    /// removes it if it is the newest and still flat, so a rejected command leaves the table
    /// as it was.
    pub(crate) fn forget_new_position(&mut self, slot: u32) {
        let newest = self.positions.len().checked_sub(1);
        if let Some(p) = self.positions.last()
            && newest == Some(slot as usize)
            && *p == Position::new(p.account, p.symbol)
        {
            self.position_index.remove(&(p.account, p.symbol));
            self.positions.pop();
        }
    }

    /// Takes the next transaction id.
    #[inline]
    pub fn take_tx_id(&mut self) -> crate::types::TxId {
        let id = crate::types::TxId(self.next_tx_id);
        self.next_tx_id += 1;
        id
    }

    /// Trading accounts, in id order (account id = index + 1).
    pub fn accounts(&self) -> &[Account] {
        &self.accounts
    }

    /// The account table's capacity.
    pub fn accounts_max(&self) -> u32 {
        self.accounts_max
    }

    /// The account opened for an owner key.
    pub fn account_of_owner(&self, owner: &ExternalRef) -> Option<AccountId> {
        self.owners.get(owner).copied()
    }

    /// Positions, in the order they were created (their slots).
    pub fn positions(&self) -> &[Position] {
        &self.positions
    }

    /// The position in a slot (orders cache their owner's slot).
    #[inline]
    pub fn position_at(&self, slot: u32) -> Option<&Position> {
        self.positions.get(slot as usize)
    }

    /// True if another position fits the table.
    pub fn has_room_for_position(&self) -> bool {
        self.positions.len() < self.positions_max as usize
    }

    /// Balances of SYSTEM_FEE, SYSTEM_TAX and the KRW of SYSTEM_MARKET and SYSTEM_EXTERNAL.
    pub fn system(&self) -> &SystemBalances {
        &self.system
    }

    /// Share balances of SYSTEM_MARKET and SYSTEM_EXTERNAL, indexed by symbol id - 1.
    pub fn system_shares(&self) -> &[SystemShares] {
        &self.system_shares
    }

    /// A new trading day: every account may use `orders_per_account_day_max` request ids again.
    pub(crate) fn reset_keys_today(&mut self) {
        for a in &mut self.accounts {
            a.keys_today = 0;
        }
    }

    /// A position's bookkeeping (cost basis, realized profit); its shares and hold change only
    /// through the entry points.
    #[inline]
    pub(crate) fn position_mut(&mut self, slot: u32) -> Option<&mut Position> {
        self.positions.get_mut(slot as usize)
    }

    /// Adds the system share balances of a newly registered symbol.
    pub(crate) fn add_symbol(&mut self) {
        self.system_shares.push(SystemShares::default());
    }

    /// Rebuilds the tables from a snapshot's (the caller checked capacities).
    pub(crate) fn restore(
        &mut self,
        accounts: &[Account],
        positions: &[Position],
        system: SystemBalances,
        system_shares: &[SystemShares],
    ) {
        for a in accounts {
            let mut a = *a;
            a.orders_head = crate::book::order::NIL;
            a.orders_tail = crate::book::order::NIL;
            self.owners.insert(a.owner, a.id);
            self.accounts.push(a);
        }
        for (i, p) in positions.iter().enumerate() {
            self.positions.push(*p);
            self.position_index.insert((p.account, p.symbol), i as u32);
        }
        self.system = system;
        self.system_shares = system_shares.to_vec();
    }

    /// Sums of every asset over all ledger accounts: (KRW, per-symbol shares). Both must be 0.
    pub fn trial_balance(&self) -> (i128, Vec<(SymbolId, i128)>) {
        let krw = self
            .accounts
            .iter()
            .map(|a| a.cash().0 as i128)
            .sum::<i128>()
            + self.system.fee().0 as i128
            + self.system.tax().0 as i128
            + self.system.market_cash().0 as i128
            + self.system.external_cash().0 as i128;
        let mut shares: Vec<(SymbolId, i128)> = self
            .system_shares
            .iter()
            .enumerate()
            .map(|(i, s)| {
                (
                    SymbolId(i as u32 + 1),
                    s.market() as i128 + s.external() as i128,
                )
            })
            .collect();
        for p in &self.positions {
            let i = (p.symbol.0 as usize).wrapping_sub(1);
            if let Some(entry) = shares.get_mut(i) {
                entry.1 += p.qty().0 as i128;
            }
        }
        (krw, shares)
    }
}
