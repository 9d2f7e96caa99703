//! Balances and holds, and the only code that changes them.
//!
//! Every balance of the ledger lives in a type of this module with private fields: a user's
//! cash and cash hold ([`Account`]), a user's shares and share hold ([`Position`]), and the
//! system accounts ([`SystemBalances`], [`SystemShares`]). Code outside this module reads them
//! through getters and changes them through three entry points of [`Ledger`]:
//! - [`Ledger::post`] posts a whole transaction ([`LedgerTx`]): its lines, and the holds the
//!   transaction settles (a fill settles what its order held, a confirmed withdrawal its own
//!   hold), as one step;
//! - [`Ledger::place_hold`] and [`Ledger::release_hold`] change a hold.
//!
//! Each entry point checks, before it changes anything: the lines sum to zero per asset; no
//! two lines (or releases) name the same balance; every named account and position exists;
//! no arithmetic leaves the `i64` range; no user balance goes negative or below its holds; no
//! hold goes negative or above its balance. A failed check changes nothing and returns a
//! [`LedgerFault`]. An `Overflow` is a limit of the number range that a command can reach (the
//! caller rejects it with `RejectReason::Overflow`); every other fault means the code that
//! built the transaction is wrong, and the caller raises an alarm (`Event::LedgerAlarm`) and
//! rejects the command with `RejectReason::LedgerCheckFailed`, so the fault is loud but never
//! a poison command that stops every replica replaying the journal.
//!
//! **Invariants** (after every successful call): per asset, the balances of all ledger
//! accounts sum to what they summed to before (zero from an empty ledger); for every user
//! account and position `0 <= hold <= balance`.
//!
//! **Performance**: O(lines^2) with at most [`LINES_MAX`] lines and two releases: a few dozen
//! compares and no allocation. A fill's posting resolves its user share balances by the
//! position slot its orders cached, never by a map lookup.

use super::Ledger;
use crate::command::Asset;
use crate::types::{AccountId, Amount, ExternalRef, Price, Qty, SymbolId};
use serde::{Deserialize, Serialize};

/// The most lines a [`LedgerTx`] carries: a fill between two users nets into buyer cash,
/// seller cash, fee, tax, seller shares and buyer shares.
pub const LINES_MAX: usize = 6;

/// The most holds one [`LedgerTx`] settles (a fill: the buyer's cash, the seller's shares).
pub const RELEASES_MAX: usize = 2;

/// A trading account: its cash balance and hold, and bookkeeping that is not money.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    pub id: AccountId,
    pub owner: ExternalRef,
    /// The USER_CASH balance.
    cash: Amount,
    /// Cash held by live buy orders and open withdrawals.
    cash_hold: Amount,
    /// The last per-account event sequence number assigned.
    pub acct_seq: u64,
    /// Request ids used today.
    pub keys_today: u32,
    /// Live orders, oldest first (intrusive list through the order slab).
    #[serde(skip, default = "nil")]
    pub orders_head: crate::book::order::Slot,
    #[serde(skip, default = "nil")]
    pub orders_tail: crate::book::order::Slot,
}

fn nil() -> crate::book::order::Slot {
    crate::book::order::NIL
}

impl Account {
    /// A new account with no money.
    pub fn new(id: AccountId, owner: ExternalRef) -> Account {
        Account {
            id,
            owner,
            cash: Amount(0),
            cash_hold: Amount(0),
            acct_seq: 0,
            keys_today: 0,
            orders_head: nil(),
            orders_tail: nil(),
        }
    }

    /// The USER_CASH balance.
    #[inline]
    pub fn cash(&self) -> Amount {
        self.cash
    }

    /// Cash held by live buy orders and open withdrawals.
    #[inline]
    pub fn cash_hold(&self) -> Amount {
        self.cash_hold
    }

    /// Cash free for new orders and withdrawals (never negative while the invariants hold).
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

/// Shares, share hold, cost basis and realized profit of one account in one symbol.
///
/// The share balance *is* the ledger's USER_SECURITIES(account, symbol) balance; cost basis
/// and realized PnL are bookkeeping on top of it (see [`crate::portfolio`] for the rules).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    pub account: AccountId,
    pub symbol: SymbolId,
    /// Shares owned (the USER_SECURITIES balance).
    qty: Qty,
    /// Shares held by live sell orders.
    hold: Qty,
    /// What the shares owned cost, buy commission included.
    pub cost_basis: Amount,
    /// Profit realized by sells, net of every fee and tax.
    pub realized_pnl: Amount,
}

impl Position {
    /// A flat position.
    pub fn new(account: AccountId, symbol: SymbolId) -> Position {
        Position {
            account,
            symbol,
            qty: Qty(0),
            hold: Qty(0),
            cost_basis: Amount(0),
            realized_pnl: Amount(0),
        }
    }

    /// A position holding `qty` shares that cost `cost_basis` (unit tests of the cost rules).
    #[cfg(test)]
    pub(crate) fn for_test(qty: Qty, cost_basis: Amount) -> Position {
        Position {
            qty,
            cost_basis,
            ..Position::new(AccountId(1), SymbolId(1))
        }
    }

    /// Shares owned (the USER_SECURITIES balance).
    #[inline]
    pub fn qty(&self) -> Qty {
        self.qty
    }

    /// Shares held by live sell orders.
    #[inline]
    pub fn hold(&self) -> Qty {
        self.hold
    }

    /// Shares free to sell or withdraw.
    #[inline]
    pub fn available(&self) -> Qty {
        Qty(self.qty.0 - self.hold.0)
    }

    /// Cost leaving the position when `qty` of its shares go: proportional, floored; all of
    /// it when the position closes.
    #[inline]
    pub fn cost_removed(&self, qty: Qty) -> Amount {
        if qty.0 >= self.qty.0 || self.qty.0 <= 0 {
            return self.cost_basis;
        }
        // |cost| * qty / qty_before <= |cost|: the quotient fits back into an i64.
        Amount((self.cost_basis.0 as i128 * qty.0 as i128 / self.qty.0 as i128) as i64)
    }

    /// Average cost per share (buy commission included), `None` when flat.
    pub fn average_cost(&self) -> Option<f64> {
        (self.qty.0 > 0).then(|| self.cost_basis.0 as f64 / self.qty.0 as f64)
    }

    /// Market value at `price`, and the unrealized profit against the cost basis (both
    /// saturate at the `i64` range: a report, not money that moves).
    pub fn valuation(&self, price: Price) -> (Amount, Amount) {
        let value = Amount(price.0.saturating_mul(self.qty.0));
        (value, Amount(value.0.saturating_sub(self.cost_basis.0)))
    }
}

/// Balances of the system ledger accounts that are not per symbol.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SystemBalances {
    fee: Amount,
    tax: Amount,
    market_cash: Amount,
    external_cash: Amount,
}

impl SystemBalances {
    /// SYSTEM_FEE: commission income.
    pub fn fee(&self) -> Amount {
        self.fee
    }

    /// SYSTEM_TAX: taxes withheld.
    pub fn tax(&self) -> Amount {
        self.tax
    }

    /// SYSTEM_MARKET's cash: the street, counterparty of synthetic fills.
    pub fn market_cash(&self) -> Amount {
        self.market_cash
    }

    /// SYSTEM_EXTERNAL's cash: the bank, counterparty of deposits and withdrawals.
    pub fn external_cash(&self) -> Amount {
        self.external_cash
    }
}

/// Per-symbol share balances of the system accounts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SystemShares {
    market: i64,
    external: i64,
}

impl SystemShares {
    /// SYSTEM_MARKET's shares of the symbol.
    pub fn market(&self) -> i64 {
        self.market
    }

    /// SYSTEM_EXTERNAL's shares of the symbol (share adjustments' counterparty).
    pub fn external(&self) -> i64 {
        self.external
    }
}

/// Where the balance a line changes lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Holder {
    /// USER_CASH(account).
    UserCash(AccountId),
    /// USER_SECURITIES of the position in this slot of the ledger's positions.
    UserShares(u32),
    /// SYSTEM_FEE (KRW).
    Fee,
    /// SYSTEM_TAX (KRW).
    Tax,
    /// SYSTEM_MARKET's KRW.
    MarketCash,
    /// SYSTEM_MARKET's shares of a symbol.
    MarketShares(SymbolId),
    /// SYSTEM_EXTERNAL's KRW.
    ExternalCash,
    /// SYSTEM_EXTERNAL's shares of a symbol.
    ExternalShares(SymbolId),
}

/// One line of a [`LedgerTx`]: `amount` into the holder's balance (negative: out of it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Line {
    pub holder: Holder,
    pub amount: i64,
}

/// A hold on a user's cash or on the shares of a position (by slot).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hold {
    Cash(AccountId, Amount),
    Shares(u32, Qty),
}

/// A whole transaction as the ledger posts it: its lines, netted per balance, and the holds
/// it settles.
#[derive(Clone, Copy, Debug)]
pub struct LedgerTx {
    lines: [Line; LINES_MAX],
    lines_len: u8,
    releases: [Hold; RELEASES_MAX],
    releases_len: u8,
}

impl Default for LedgerTx {
    fn default() -> Self {
        LedgerTx::new()
    }
}

impl LedgerTx {
    pub const fn new() -> LedgerTx {
        const BLANK: Line = Line {
            holder: Holder::Fee,
            amount: 0,
        };
        LedgerTx {
            lines: [BLANK; LINES_MAX],
            lines_len: 0,
            releases: [Hold::Cash(AccountId(0), Amount(0)); RELEASES_MAX],
            releases_len: 0,
        }
    }

    /// Adds a line (a zero amount is left out). More than [`LINES_MAX`] lines is a bug of
    /// the caller: the transaction is then marked so that `post` refuses it.
    #[inline]
    pub fn line(&mut self, holder: Holder, amount: i64) -> &mut Self {
        if amount == 0 {
            return self;
        }
        match self.lines.get_mut(self.lines_len as usize) {
            Some(slot) => {
                *slot = Line { holder, amount };
                self.lines_len += 1;
            }
            None => self.lines_len = u8::MAX,
        }
        self
    }

    /// Settles a hold as part of this transaction (a zero hold is left out).
    #[inline]
    pub fn release(&mut self, hold: Hold) -> &mut Self {
        let zero = match hold {
            Hold::Cash(_, a) => a.0 == 0,
            Hold::Shares(_, q) => q.0 == 0,
        };
        if zero {
            return self;
        }
        match self.releases.get_mut(self.releases_len as usize) {
            Some(slot) => {
                *slot = hold;
                self.releases_len += 1;
            }
            None => self.releases_len = u8::MAX,
        }
        self
    }

    pub fn lines(&self) -> &[Line] {
        self.lines.get(..self.lines_len as usize).unwrap_or(&[])
    }

    pub fn releases(&self) -> &[Hold] {
        self.releases
            .get(..self.releases_len as usize)
            .unwrap_or(&[])
    }

    fn is_well_formed(&self) -> bool {
        self.lines_len as usize <= LINES_MAX && self.releases_len as usize <= RELEASES_MAX
    }
}

/// Why the ledger refused a posting or a hold. Nothing changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum LedgerFault {
    /// A balance, hold or sum would leave the `i64` range (a limit, not a bug).
    Overflow,
    /// The lines do not sum to zero for some asset.
    Unbalanced,
    /// Two lines, or two releases, name the same balance; or a transaction has too many.
    Malformed,
    /// A line or hold names an account or position that does not exist.
    UnknownHolder,
    /// A user balance would go negative.
    NegativeBalance(AccountId),
    /// A user balance would fall below its holds.
    BelowHold(AccountId),
    /// A hold would go negative or above its balance, or a negative amount was given.
    InvalidHold(AccountId),
}

impl LedgerFault {
    /// True for the faults that mean the caller is wrong (all but `Overflow`).
    pub fn is_bug(self) -> bool {
        self != LedgerFault::Overflow
    }

    /// The user account the fault concerns, if any.
    pub fn account(self) -> Option<AccountId> {
        match self {
            LedgerFault::NegativeBalance(a)
            | LedgerFault::BelowHold(a)
            | LedgerFault::InvalidHold(a) => Some(a),
            _ => None,
        }
    }
}

/// The user balance a holder names and the account it belongs to.
enum UserBalance {
    Cash(usize),
    Shares(usize),
}

impl Ledger {
    /// Opens a trading account with no money; `None` if the table is full.
    pub(crate) fn open_account(&mut self, owner: ExternalRef) -> Option<AccountId> {
        if self.accounts.len() >= self.accounts_max as usize {
            return None;
        }
        let id = AccountId(self.accounts.len() as u32 + 1);
        let mut account = Account::new(id, owner);
        // In a later replication epoch its sequence numbers start at that epoch's floor.
        account.acct_seq = self.acct_seq_floor();
        self.accounts.push(account);
        self.owners.insert(owner, id);
        Some(id)
    }

    /// Posts a whole transaction: checks it, then settles its releases and applies its lines.
    /// Nothing changes unless every check passes (see the module docs for the checks).
    pub fn post(&mut self, tx: &LedgerTx) -> Result<(), LedgerFault> {
        if !tx.is_well_formed() {
            return Err(LedgerFault::Malformed);
        }
        let (lines, releases) = (tx.lines(), tx.releases());
        self.check_balanced(lines)?;
        for (i, r) in releases.iter().enumerate() {
            if releases[..i].iter().any(|o| same_hold(o, r)) {
                return Err(LedgerFault::Malformed);
            }
            self.hold_after(*r, -1)?;
        }
        for (i, line) in lines.iter().enumerate() {
            if lines[..i].iter().any(|o| o.holder == line.holder) {
                return Err(LedgerFault::Malformed);
            }
            self.check_line(line, releases)?;
        }
        // Every step below was checked above on the same values, and no balance appears
        // twice: none of them can fail or overflow now.
        for r in releases {
            let hold = self.hold_after(*r, -1)?;
            self.set_hold(*r, hold);
        }
        for line in lines {
            *self.balance_mut(line.holder)? += line.amount;
        }
        Ok(())
    }

    /// Adds to a hold: the amount must be >= 0 and the hold stay within its balance.
    pub fn place_hold(&mut self, hold: Hold) -> Result<(), LedgerFault> {
        let new = self.hold_after(hold, 1)?;
        self.set_hold(hold, new);
        Ok(())
    }

    /// Takes from a hold: the amount must be >= 0 and at most the hold.
    pub fn release_hold(&mut self, hold: Hold) -> Result<(), LedgerFault> {
        let new = self.hold_after(hold, -1)?;
        self.set_hold(hold, new);
        Ok(())
    }

    /// Per asset, the lines sum to zero.
    fn check_balanced(&self, lines: &[Line]) -> Result<(), LedgerFault> {
        for (i, line) in lines.iter().enumerate() {
            let asset = self.asset_of(line.holder)?;
            let mut first = true;
            let mut sum = 0i128;
            for (j, other) in lines.iter().enumerate() {
                if self.asset_of(other.holder)? == asset {
                    first &= j >= i;
                    sum += other.amount as i128;
                }
            }
            if first && sum != 0 {
                return Err(LedgerFault::Unbalanced);
            }
        }
        Ok(())
    }

    /// The balance after `line`, checked against the user's hold after `releases`.
    fn check_line(&self, line: &Line, releases: &[Hold]) -> Result<(), LedgerFault> {
        let balance = self.balance(line.holder)?;
        let after = balance
            .checked_add(line.amount)
            .ok_or(LedgerFault::Overflow)?;
        let Some((user, account)) = self.user_balance(line.holder)? else {
            return Ok(());
        };
        if after < 0 {
            return Err(LedgerFault::NegativeBalance(account));
        }
        let mut hold = match user {
            UserBalance::Cash(i) => self.accounts[i].cash_hold.0,
            UserBalance::Shares(i) => self.positions[i].hold.0,
        };
        for r in releases {
            if same_balance(r, line.holder) {
                hold = self.hold_after(*r, -1)?;
            }
        }
        if after < hold {
            return Err(LedgerFault::BelowHold(account));
        }
        Ok(())
    }

    /// The hold of `hold`'s balance after adding (`sign` 1) or taking (`sign` -1) its amount.
    fn hold_after(&self, hold: Hold, sign: i64) -> Result<i64, LedgerFault> {
        let (current, balance, amount, account) = match hold {
            Hold::Cash(id, amount) => {
                let a = self.account(id).ok_or(LedgerFault::UnknownHolder)?;
                (a.cash_hold.0, a.cash.0, amount.0, id)
            }
            Hold::Shares(slot, qty) => {
                let p = self
                    .positions
                    .get(slot as usize)
                    .ok_or(LedgerFault::UnknownHolder)?;
                (p.hold.0, p.qty.0, qty.0, p.account)
            }
        };
        if amount < 0 {
            return Err(LedgerFault::InvalidHold(account));
        }
        let new = current
            .checked_add(sign * amount)
            .ok_or(LedgerFault::Overflow)?;
        // Taking may leave a hold above a balance that the same transaction's lines lower
        // afterwards; `check_line` checks the balance against it. Adding must fit now.
        if new < 0 || (sign > 0 && new > balance) {
            return Err(LedgerFault::InvalidHold(account));
        }
        Ok(new)
    }

    fn set_hold(&mut self, hold: Hold, new: i64) {
        match hold {
            Hold::Cash(id, _) => {
                if let Some(a) = self.account_slot(id) {
                    self.accounts[a].cash_hold = Amount(new);
                }
            }
            Hold::Shares(slot, _) => {
                if let Some(p) = self.positions.get_mut(slot as usize) {
                    p.hold = Qty(new);
                }
            }
        }
    }

    fn account_slot(&self, id: AccountId) -> Option<usize> {
        let i = (id.0 as usize).checked_sub(1)?;
        (i < self.accounts.len()).then_some(i)
    }

    fn asset_of(&self, holder: Holder) -> Result<Asset, LedgerFault> {
        Ok(match holder {
            Holder::UserCash(_)
            | Holder::Fee
            | Holder::Tax
            | Holder::MarketCash
            | Holder::ExternalCash => Asset::Krw,
            Holder::UserShares(slot) => Asset::Shares(
                self.positions
                    .get(slot as usize)
                    .ok_or(LedgerFault::UnknownHolder)?
                    .symbol,
            ),
            Holder::MarketShares(s) | Holder::ExternalShares(s) => Asset::Shares(s),
        })
    }

    /// For a user holder: which balance, and its account.
    fn user_balance(
        &self,
        holder: Holder,
    ) -> Result<Option<(UserBalance, AccountId)>, LedgerFault> {
        Ok(match holder {
            Holder::UserCash(id) => {
                let i = self.account_slot(id).ok_or(LedgerFault::UnknownHolder)?;
                Some((UserBalance::Cash(i), id))
            }
            Holder::UserShares(slot) => {
                let p = self
                    .positions
                    .get(slot as usize)
                    .ok_or(LedgerFault::UnknownHolder)?;
                Some((UserBalance::Shares(slot as usize), p.account))
            }
            _ => None,
        })
    }

    fn balance(&self, holder: Holder) -> Result<i64, LedgerFault> {
        let shares = |s: SymbolId| {
            (s.0 as usize)
                .checked_sub(1)
                .and_then(|i| self.system_shares.get(i))
                .ok_or(LedgerFault::UnknownHolder)
        };
        Ok(match holder {
            Holder::UserCash(id) => {
                let i = self.account_slot(id).ok_or(LedgerFault::UnknownHolder)?;
                self.accounts[i].cash.0
            }
            Holder::UserShares(slot) => {
                self.positions
                    .get(slot as usize)
                    .ok_or(LedgerFault::UnknownHolder)?
                    .qty
                    .0
            }
            Holder::Fee => self.system.fee.0,
            Holder::Tax => self.system.tax.0,
            Holder::MarketCash => self.system.market_cash.0,
            Holder::ExternalCash => self.system.external_cash.0,
            Holder::MarketShares(s) => shares(s)?.market,
            Holder::ExternalShares(s) => shares(s)?.external,
        })
    }

    fn balance_mut(&mut self, holder: Holder) -> Result<&mut i64, LedgerFault> {
        const UNKNOWN: LedgerFault = LedgerFault::UnknownHolder;
        Ok(match holder {
            Holder::UserCash(id) => {
                let i = self.account_slot(id).ok_or(UNKNOWN)?;
                &mut self.accounts[i].cash.0
            }
            Holder::UserShares(slot) => {
                &mut self.positions.get_mut(slot as usize).ok_or(UNKNOWN)?.qty.0
            }
            Holder::Fee => &mut self.system.fee.0,
            Holder::Tax => &mut self.system.tax.0,
            Holder::MarketCash => &mut self.system.market_cash.0,
            Holder::ExternalCash => &mut self.system.external_cash.0,
            Holder::MarketShares(s) => &mut system_shares(&mut self.system_shares, s)?.market,
            Holder::ExternalShares(s) => &mut system_shares(&mut self.system_shares, s)?.external,
        })
    }
}

fn system_shares(
    shares: &mut [SystemShares],
    s: SymbolId,
) -> Result<&mut SystemShares, LedgerFault> {
    let i = (s.0 as usize)
        .checked_sub(1)
        .ok_or(LedgerFault::UnknownHolder)?;
    shares.get_mut(i).ok_or(LedgerFault::UnknownHolder)
}

fn same_hold(a: &Hold, b: &Hold) -> bool {
    match (a, b) {
        (Hold::Cash(x, _), Hold::Cash(y, _)) => x == y,
        (Hold::Shares(x, _), Hold::Shares(y, _)) => x == y,
        _ => false,
    }
}

fn same_balance(hold: &Hold, holder: Holder) -> bool {
    match (hold, holder) {
        (Hold::Cash(a, _), Holder::UserCash(b)) => *a == b,
        (Hold::Shares(a, _), Holder::UserShares(b)) => *a == b,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    //! These checks are plain code, not `debug_assert!`: they hold in release builds too
    //! (scripts/test.sh runs this module once with `--release`).
    use super::*;

    /// Two accounts, one position each in symbol 1; account 1 holds 1,000 KRW and 10 shares.
    fn ledger() -> (Ledger, [AccountId; 2], [u32; 2]) {
        let mut l = Ledger::new(4, 8, 2, 4, 4);
        l.add_symbol();
        let a = l.open_account(ExternalRef::new("a").unwrap()).unwrap();
        let b = l.open_account(ExternalRef::new("b").unwrap()).unwrap();
        let pa = l.position_slot_or_insert(a, SymbolId(1)).unwrap();
        let pb = l.position_slot_or_insert(b, SymbolId(1)).unwrap();
        let mut fund = LedgerTx::new();
        fund.line(Holder::UserCash(a), 1_000)
            .line(Holder::ExternalCash, -1_000)
            .line(Holder::UserShares(pa), 10)
            .line(Holder::ExternalShares(SymbolId(1)), -10);
        l.post(&fund).expect("a balanced deposit");
        (l, [a, b], [pa, pb])
    }

    /// Every balance and hold, to compare before and after a refused call.
    fn state(
        l: &Ledger,
    ) -> (
        Vec<Account>,
        Vec<Position>,
        SystemBalances,
        Vec<SystemShares>,
    ) {
        (
            l.accounts.clone(),
            l.positions.clone(),
            l.system,
            l.system_shares.clone(),
        )
    }

    fn refused(l: &mut Ledger, tx: &LedgerTx, fault: LedgerFault) {
        let before = state(l);
        assert_eq!(l.post(tx), Err(fault));
        assert_eq!(state(l), before, "a refused posting changes nothing");
    }

    /// Compiled only without debug assertions: its presence in a run shows the checks below
    /// were exercised in a release-like build.
    #[cfg(not(debug_assertions))]
    #[test]
    fn this_build_has_no_debug_assertions() {
        assert!(!cfg!(debug_assertions));
    }

    #[test]
    fn an_unbalanced_transaction_is_refused_and_changes_nothing() {
        let (mut l, [a, b], _) = ledger();
        let mut tx = LedgerTx::new();
        tx.line(Holder::UserCash(a), -100)
            .line(Holder::UserCash(b), 99);
        refused(&mut l, &tx, LedgerFault::Unbalanced);
        // Balanced in KRW but not in shares.
        let mut tx = LedgerTx::new();
        tx.line(Holder::UserCash(a), -100)
            .line(Holder::UserCash(b), 100)
            .line(Holder::MarketShares(SymbolId(1)), 1);
        refused(&mut l, &tx, LedgerFault::Unbalanced);
    }

    #[test]
    fn a_user_balance_never_goes_negative_or_below_its_hold() {
        let (mut l, [a, b], [pa, pb]) = ledger();
        let mut tx = LedgerTx::new();
        tx.line(Holder::UserCash(a), -1_001)
            .line(Holder::UserCash(b), 1_001);
        refused(&mut l, &tx, LedgerFault::NegativeBalance(a));
        let mut tx = LedgerTx::new();
        tx.line(Holder::UserShares(pb), -1)
            .line(Holder::UserShares(pa), 1);
        refused(&mut l, &tx, LedgerFault::NegativeBalance(b));
        l.place_hold(Hold::Cash(a, Amount(600))).unwrap();
        let mut tx = LedgerTx::new();
        tx.line(Holder::UserCash(a), -401).line(Holder::Fee, 401);
        refused(&mut l, &tx, LedgerFault::BelowHold(a));
        // Settling the hold in the same step is what a fill does: allowed.
        tx.release(Hold::Cash(a, Amount(401)));
        l.post(&tx).expect("the hold it settles is released first");
        assert_eq!(
            (l.accounts[0].cash, l.accounts[0].cash_hold),
            (Amount(599), Amount(199))
        );
    }

    #[test]
    fn holds_never_exceed_balances_nor_go_negative() {
        let (mut l, [a, _], [pa, _]) = ledger();
        let before = state(&l);
        let fault = Err(LedgerFault::InvalidHold(a));
        assert_eq!(l.place_hold(Hold::Cash(a, Amount(1_001))), fault);
        assert_eq!(l.place_hold(Hold::Shares(pa, Qty(11))), fault);
        assert_eq!(l.place_hold(Hold::Cash(a, Amount(-1))), fault);
        assert_eq!(l.release_hold(Hold::Cash(a, Amount(1))), fault);
        assert_eq!(state(&l), before);
        l.place_hold(Hold::Cash(a, Amount(1_000)))
            .expect("exactly the balance");
        l.place_hold(Hold::Shares(pa, Qty(10)))
            .expect("exactly the shares");
        assert_eq!(l.release_hold(Hold::Shares(pa, Qty(11))), fault);
        let mut settle_too_much = LedgerTx::new();
        settle_too_much
            .line(Holder::UserCash(a), -10)
            .line(Holder::Fee, 10)
            .release(Hold::Cash(a, Amount(1_001)));
        refused(&mut l, &settle_too_much, LedgerFault::InvalidHold(a));
    }

    #[test]
    fn malformed_unknown_and_overflowing_postings_are_refused() {
        let (mut l, [a, b], _) = ledger();
        let mut twice = LedgerTx::new();
        twice
            .line(Holder::UserCash(a), -1)
            .line(Holder::UserCash(a), -1)
            .line(Holder::UserCash(b), 2);
        refused(&mut l, &twice, LedgerFault::Malformed);
        let mut crowded = LedgerTx::new();
        for _ in 0..=LINES_MAX {
            crowded.line(Holder::Fee, 1);
        }
        refused(&mut l, &crowded, LedgerFault::Malformed);
        let mut ghost = LedgerTx::new();
        ghost
            .line(Holder::UserCash(AccountId(9)), 1)
            .line(Holder::Fee, -1);
        refused(&mut l, &ghost, LedgerFault::UnknownHolder);
        let mut ghost = LedgerTx::new();
        ghost
            .line(Holder::UserShares(99), 1)
            .line(Holder::MarketShares(SymbolId(1)), -1);
        refused(&mut l, &ghost, LedgerFault::UnknownHolder);
        let mut huge = LedgerTx::new();
        huge.line(Holder::UserCash(a), i64::MAX)
            .line(Holder::Tax, -i64::MAX);
        refused(&mut l, &huge, LedgerFault::Overflow);
        assert!(!LedgerFault::Overflow.is_bug() && LedgerFault::Unbalanced.is_bug());
    }

    #[test]
    fn a_fill_posts_and_settles_its_holds_in_one_step() {
        let (mut l, [a, b], [pa, pb]) = ledger();
        let mut fund_b = LedgerTx::new();
        fund_b
            .line(Holder::UserCash(b), 500)
            .line(Holder::ExternalCash, -500);
        l.post(&fund_b).unwrap();
        // b buys 2 of a's shares at 100; commission 1 each side, tax 2 on the sell.
        l.place_hold(Hold::Cash(b, Amount(201))).unwrap();
        l.place_hold(Hold::Shares(pa, Qty(2))).unwrap();
        let mut fill = LedgerTx::new();
        fill.line(Holder::UserCash(b), -201)
            .line(Holder::UserCash(a), 197)
            .line(Holder::Fee, 2)
            .line(Holder::Tax, 2)
            .line(Holder::UserShares(pa), -2)
            .line(Holder::UserShares(pb), 2)
            .release(Hold::Cash(b, Amount(201)))
            .release(Hold::Shares(pa, Qty(2)));
        l.post(&fill).expect("a balanced fill");
        let (krw, shares) = l.trial_balance();
        assert_eq!((krw, shares), (0, vec![(SymbolId(1), 0)]));
        assert_eq!(l.accounts[1].cash, Amount(299));
        assert_eq!((l.positions[0].qty, l.positions[0].hold), (Qty(8), Qty(0)));
        assert_eq!(l.positions[1].qty, Qty(2));
    }
}
