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
///
/// Aligned to a cache line: the compiler puts the wide fields first and the owner's name
/// last, so everything a request and a fill read (cash, hold, sequence, key count, order
/// list) sits in the first line of every account, where an 80-byte stride split it over
/// two for half of them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[repr(align(64))]
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

// Every field but the owner's name in the first cache line of an account.
const _: () = {
    use std::mem::offset_of;
    let hot_ends = [
        offset_of!(Account, id) + 4,
        offset_of!(Account, cash) + 8,
        offset_of!(Account, cash_hold) + 8,
        offset_of!(Account, acct_seq) + 8,
        offset_of!(Account, keys_today) + 4,
        offset_of!(Account, orders_head) + 4,
        offset_of!(Account, orders_tail) + 4,
    ];
    let mut i = 0;
    while i < hot_ends.len() {
        assert!(
            hot_ends[i] <= 64,
            "an account's hot fields fit its first line"
        );
        i += 1;
    }
    assert!(size_of::<Position>() == 64, "a position is one cache line");
};

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
///
/// Aligned to a cache line (64 bytes, 40 of them used): a fill reads and writes a position
/// in one line, where a 40-byte stride split three positions in five over two.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[repr(align(64))]
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
        // |cost| * qty / qty_before <= |cost|: the quotient fits back into an i64. The product
        // fits an i64 for every realistic position (a 64-bit division is several times
        // cheaper than a 128-bit one, which is a library call).
        match self.cost_basis.0.checked_mul(qty.0) {
            Some(product) => Amount(product / self.qty.0),
            None => Amount((self.cost_basis.0 as i128 * qty.0 as i128 / self.qty.0 as i128) as i64),
        }
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
/// it settles. Built line by line ([`LedgerTx::new`], [`LedgerTx::line`],
/// [`LedgerTx::release`]), or, for the one transaction on the hot path, in a fill's fixed
/// shape ([`LedgerTx::fill`]), which `post` checks by the same rules without resolving each
/// line generically (a differential test holds the two checkers to the same answers).
#[derive(Clone, Copy, Debug)]
pub struct LedgerTx {
    shape: Shape,
}

#[derive(Clone, Copy, Debug)]
enum Shape {
    Lines {
        lines: [Line; LINES_MAX],
        lines_len: u8,
        releases: [Hold; RELEASES_MAX],
        releases_len: u8,
    },
    Fill(Fill),
}

/// One side of a fill.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Party {
    /// SYSTEM_MARKET (synthetic quote liquidity): its cash and its shares of the symbol.
    Market,
    /// A user: its cash, and its shares in the position slot its order cached.
    User { account: AccountId, position: u32 },
}

/// A fill's TRADE transaction in its fixed shape: `qty` shares of `symbol` move from the
/// seller to the buyer; each side's cash moves by its own line; commission and taxes go to
/// SYSTEM_FEE and SYSTEM_TAX; the buyer's cash hold and the seller's share hold settle.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fill {
    pub symbol: SymbolId,
    pub qty: i64,
    pub buyer: Party,
    pub seller: Party,
    /// Into the buyer's cash (a buy pays: negative).
    pub buyer_cash: i64,
    /// Into the seller's cash.
    pub seller_cash: i64,
    pub fee: i64,
    pub tax: i64,
    /// The buyer's cash hold this fill settles (user buyers).
    pub buyer_release: i64,
    /// The seller's share hold this fill settles (user sellers).
    pub seller_release: i64,
}

impl Fill {
    fn cash_holder(party: Party) -> Holder {
        match party {
            Party::Market => Holder::MarketCash,
            Party::User { account, .. } => Holder::UserCash(account),
        }
    }

    fn shares_holder(party: Party, symbol: SymbolId) -> Holder {
        match party {
            Party::Market => Holder::MarketShares(symbol),
            Party::User { position, .. } => Holder::UserShares(position),
        }
    }

    /// The same transaction built line by line, in the order the fill checker checks it.
    pub fn as_lines(&self) -> LedgerTx {
        let mut tx = LedgerTx::new();
        if let Party::User { account, .. } = self.buyer {
            tx.release(Hold::Cash(account, Amount(self.buyer_release)));
        }
        if let Party::User { position, .. } = self.seller {
            tx.release(Hold::Shares(position, Qty(self.seller_release)));
        }
        tx.line(Fill::cash_holder(self.buyer), self.buyer_cash)
            .line(Fill::cash_holder(self.seller), self.seller_cash)
            .line(Holder::Fee, self.fee)
            .line(Holder::Tax, self.tax)
            .line(Fill::shares_holder(self.buyer, self.symbol), self.qty)
            .line(
                Fill::shares_holder(self.seller, self.symbol),
                self.qty.wrapping_neg(),
            );
        tx
    }
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
            shape: Shape::Lines {
                lines: [BLANK; LINES_MAX],
                lines_len: 0,
                releases: [Hold::Cash(AccountId(0), Amount(0)); RELEASES_MAX],
                releases_len: 0,
            },
        }
    }

    /// A fill's transaction in its fixed shape.
    pub const fn fill(fill: Fill) -> LedgerTx {
        LedgerTx {
            shape: Shape::Fill(fill),
        }
    }

    /// Adds a line (a zero amount is left out). More than [`LINES_MAX`] lines, or a line
    /// added to a fill, is a bug of the caller: the transaction is then marked so that `post`
    /// refuses it.
    #[inline]
    pub fn line(&mut self, holder: Holder, amount: i64) -> &mut Self {
        if amount == 0 {
            return self;
        }
        match &mut self.shape {
            Shape::Lines {
                lines, lines_len, ..
            } => match lines.get_mut(*lines_len as usize) {
                Some(slot) => {
                    *slot = Line { holder, amount };
                    *lines_len += 1;
                }
                None => *lines_len = u8::MAX,
            },
            Shape::Fill(_) => *self = LedgerTx::malformed(),
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
        match &mut self.shape {
            Shape::Lines {
                releases,
                releases_len,
                ..
            } => match releases.get_mut(*releases_len as usize) {
                Some(slot) => {
                    *slot = hold;
                    *releases_len += 1;
                }
                None => *releases_len = u8::MAX,
            },
            Shape::Fill(_) => *self = LedgerTx::malformed(),
        }
        self
    }

    fn malformed() -> LedgerTx {
        let mut tx = LedgerTx::new();
        if let Shape::Lines { lines_len, .. } = &mut tx.shape {
            *lines_len = u8::MAX;
        }
        tx
    }

    /// The lines (empty for a malformed transaction or a fill: see [`Fill::as_lines`]).
    pub fn lines(&self) -> &[Line] {
        match &self.shape {
            Shape::Lines {
                lines, lines_len, ..
            } => lines.get(..*lines_len as usize).unwrap_or(&[]),
            Shape::Fill(_) => &[],
        }
    }

    /// The holds it settles (empty for a malformed transaction or a fill).
    pub fn releases(&self) -> &[Hold] {
        match &self.shape {
            Shape::Lines {
                releases,
                releases_len,
                ..
            } => releases.get(..*releases_len as usize).unwrap_or(&[]),
            Shape::Fill(_) => &[],
        }
    }

    fn is_well_formed(&self) -> bool {
        match &self.shape {
            Shape::Lines {
                lines_len,
                releases_len,
                ..
            } => *lines_len as usize <= LINES_MAX && *releases_len as usize <= RELEASES_MAX,
            Shape::Fill(_) => true,
        }
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
    #[inline]
    pub fn post(&mut self, tx: &LedgerTx) -> Result<(), LedgerFault> {
        // Inlined, so that a caller posting a fill calls the fill checker directly, without
        // a copy of the transaction or a test of its shape.
        match &tx.shape {
            Shape::Fill(fill) => self.post_fill(fill),
            Shape::Lines { .. } => self.post_lines(tx),
        }
    }

    /// `post` for a transaction built line by line.
    ///
    /// One pass resolves each line to where its balance lives, computes the balance after it
    /// and checks it; a second pass writes the results. Per-asset sums are kept as it goes
    /// (KRW, and the one symbol a transaction's shares are in; a transaction in several
    /// symbols falls back to a pairwise check).
    #[inline(never)]
    fn post_lines(&mut self, tx: &LedgerTx) -> Result<(), LedgerFault> {
        if !tx.is_well_formed() {
            return Err(LedgerFault::Malformed);
        }
        let (lines, releases) = (tx.lines(), tx.releases());
        // The balance each release settles, and its hold after the release.
        let mut settled = [(Place::Fee, 0i64); RELEASES_MAX];
        for i in 0..releases.len() {
            let place = match releases[i] {
                Hold::Cash(id, _) => {
                    Place::Cash(self.account_slot(id).ok_or(LedgerFault::UnknownHolder)?)
                }
                Hold::Shares(slot, _) => Place::Shares(slot as usize),
            };
            if settled[..i].iter().any(|(p, _)| *p == place) {
                return Err(LedgerFault::Malformed);
            }
            settled[i] = (place, self.hold_after(releases[i], -1)?);
        }
        let settled = &settled[..releases.len()];
        let mut resolved = [(Place::Fee, 0i64); LINES_MAX];
        let (mut krw, mut shares, mut symbol, mut symbols_mixed) = (0i128, 0i128, None, false);
        for i in 0..lines.len() {
            let amount = lines[i].amount;
            let (place, asset, balance) = self.resolve(lines[i].holder)?;
            if resolved[..i].iter().any(|(p, _)| *p == place) {
                return Err(LedgerFault::Malformed);
            }
            match asset {
                Asset::Krw => krw += amount as i128,
                Asset::Shares(s) if symbol.is_none_or(|first| first == s) => {
                    symbol = Some(s);
                    shares += amount as i128;
                }
                Asset::Shares(_) => symbols_mixed = true,
            }
            let after = balance.checked_add(amount).ok_or(LedgerFault::Overflow)?;
            let (account, mut hold) = match place {
                Place::Cash(a) => (self.accounts[a].id, self.accounts[a].cash_hold.0),
                Place::Shares(p) => (self.positions[p].account, self.positions[p].hold.0),
                _ => {
                    resolved[i] = (place, after);
                    continue;
                }
            };
            for &(p, hold_after) in settled {
                if p == place {
                    hold = hold_after;
                }
            }
            if after < 0 {
                return Err(LedgerFault::NegativeBalance(account));
            }
            if after < hold {
                return Err(LedgerFault::BelowHold(account));
            }
            resolved[i] = (place, after);
        }
        if symbols_mixed {
            self.check_balanced(lines)?;
        } else if krw != 0 || shares != 0 {
            return Err(LedgerFault::Unbalanced);
        }
        // Every value below was computed and checked above, and no balance or hold appears
        // twice: writing them cannot fail.
        for &(place, hold) in settled {
            match place {
                Place::Cash(a) => self.accounts[a].cash_hold = Amount(hold),
                Place::Shares(p) => self.positions[p].hold = Qty(hold),
                _ => {}
            }
        }
        for &(place, after) in &resolved[..lines.len()] {
            *self.place_mut(place) = after;
        }
        Ok(())
    }

    /// `post` for a fill: the straight pass for the two-user shape, else the check-by-check
    /// path. Both give the general path's answers (`tests::a_fill_posts_as_its_lines_do`).
    #[inline]
    fn post_fill(&mut self, f: &Fill) -> Result<(), LedgerFault> {
        if self.post_user_fill(f) {
            return Ok(());
        }
        self.post_fill_checked(f)
    }

    /// A fill between two different users' accounts and positions, the shape matching
    /// makes: every balance and hold it changes is computed and checked in one straight
    /// pass, then written. Returns `false`, having changed nothing, for any other shape or
    /// when any check fails, and `post_fill_checked` then gives the answer. Where it returns
    /// `true` every check of `post_fill_checked` passes (each is one of the conditions
    /// below) and the writes are the same: a zero line or release that the checked path
    /// leaves out writes the value it already has.
    #[inline(never)]
    fn post_user_fill(&mut self, f: &Fill) -> bool {
        let (
            Party::User {
                account: buyer,
                position: buyer_position,
            },
            Party::User {
                account: seller,
                position: seller_position,
            },
        ) = (f.buyer, f.seller)
        else {
            return false;
        };
        if buyer == seller
            || buyer_position == seller_position
            || f.qty <= 0
            || f.buyer_release < 0
            || f.seller_release < 0
        {
            return false;
        }
        let (Some(b), Some(s)) = (self.account_slot(buyer), self.account_slot(seller)) else {
            return false;
        };
        let (bp, sp) = (buyer_position as usize, seller_position as usize);
        let (Some(buyer_shares), Some(seller_shares)) =
            (self.positions.get(bp), self.positions.get(sp))
        else {
            return false;
        };
        let (buyer, seller) = (&self.accounts[b], &self.accounts[s]);
        // Every sum at once, its overflow flag kept (no branch per step).
        let (buyer_hold, o1) = buyer.cash_hold.0.overflowing_sub(f.buyer_release);
        let (buyer_cash, o2) = buyer.cash.0.overflowing_add(f.buyer_cash);
        let (seller_cash, o3) = seller.cash.0.overflowing_add(f.seller_cash);
        let (seller_hold, o4) = seller_shares.hold.0.overflowing_sub(f.seller_release);
        let (buyer_qty, o5) = buyer_shares.qty.0.overflowing_add(f.qty);
        let (seller_qty, o6) = seller_shares.qty.0.overflowing_sub(f.qty);
        let (fee, o7) = self.system.fee.0.overflowing_add(f.fee);
        let (tax, o8) = self.system.tax.0.overflowing_add(f.tax);
        // The KRW lines sum to zero (a partial sum beyond `i64` declines: the checked path
        // sums in i128 and gives the answer).
        let (krw, o9) = f.buyer_cash.overflowing_add(f.seller_cash);
        let (krw, o10) = krw.overflowing_add(f.fee);
        let (krw, o11) = krw.overflowing_add(f.tax);
        let overflow = o1 | o2 | o3 | o4 | o5 | o6 | o7 | o8 | o9 | o10 | o11;
        let holds_and_balances = (buyer_hold >= 0)
            & (buyer_cash >= buyer_hold)
            & (seller_cash >= 0)
            & (seller_cash >= seller.cash_hold.0)
            & (seller_hold >= 0)
            & (seller_qty >= seller_hold)
            & (buyer_qty >= 0)
            & (buyer_qty >= buyer_shares.hold.0);
        let balanced = (krw == 0) & (buyer_shares.symbol == seller_shares.symbol);
        if overflow | !holds_and_balances | !balanced {
            return false;
        }
        self.accounts[b].cash_hold = Amount(buyer_hold);
        self.accounts[b].cash = Amount(buyer_cash);
        self.accounts[s].cash = Amount(seller_cash);
        self.positions[sp].hold = Qty(seller_hold);
        self.positions[sp].qty = Qty(seller_qty);
        self.positions[bp].qty = Qty(buyer_qty);
        self.system.fee = Amount(fee);
        self.system.tax = Amount(tax);
        true
    }

    /// `post_fill` for every shape and outcome: the checks of the general path, in the same
    /// order and with the same answers, without resolving each line generically.
    #[inline(never)]
    fn post_fill_checked(&mut self, f: &Fill) -> Result<(), LedgerFault> {
        use LedgerFault::{BelowHold, InvalidHold, Malformed, NegativeBalance, Overflow};
        const UNKNOWN: LedgerFault = LedgerFault::UnknownHolder;
        // 1. The releases, in `Fill::as_lines` order: the buyer's cash hold, then the
        //    seller's share hold.
        let mut buyer_index = None;
        let buyer_hold = match f.buyer {
            Party::User { account, .. } if f.buyer_release != 0 => {
                let i = self.account_slot(account).ok_or(UNKNOWN)?;
                buyer_index = Some(i);
                Some(self.cash_hold_after_release(i, account, f.buyer_release)?)
            }
            _ => None,
        };
        let seller_hold = match f.seller {
            Party::User { position, .. } if f.seller_release != 0 => {
                let p = self.positions.get(position as usize).ok_or(UNKNOWN)?;
                if f.seller_release < 0 {
                    return Err(InvalidHold(p.account));
                }
                let new = p.hold.0.checked_sub(f.seller_release).ok_or(Overflow)?;
                if new < 0 {
                    return Err(InvalidHold(p.account));
                }
                Some(new)
            }
            _ => None,
        };
        // 2. The cash lines: buyer, seller (each left out when zero), fee, tax.
        let buyer_cash = if f.buyer_cash == 0 {
            None
        } else {
            let i = match (f.buyer, buyer_index) {
                (Party::User { .. }, Some(i)) => Some(i),
                (Party::User { account, .. }, None) => {
                    Some(self.account_slot(account).ok_or(UNKNOWN)?)
                }
                (Party::Market, _) => None,
            };
            buyer_index = i;
            Some(self.cash_after(i, f.buyer_cash, buyer_hold)?)
        };
        let mut seller_index = None;
        let seller_cash = if f.seller_cash == 0 {
            None
        } else {
            seller_index = match f.seller {
                Party::User { account, .. } => Some(self.account_slot(account).ok_or(UNKNOWN)?),
                Party::Market => None,
            };
            let same = match (f.buyer, f.seller) {
                (Party::Market, Party::Market) => true,
                (Party::User { account: b, .. }, Party::User { account: s, .. }) => b == s,
                _ => false,
            };
            if same && buyer_cash.is_some() {
                return Err(Malformed);
            }
            // The buyer's released hold is this balance's hold if the two sides are one
            // account (whose own cash line was left out).
            let hold = buyer_hold.filter(|_| same);
            Some(self.cash_after(seller_index, f.seller_cash, hold)?)
        };
        let fee = match f.fee {
            0 => None,
            fee => Some(self.system.fee.0.checked_add(fee).ok_or(Overflow)?),
        };
        let tax = match f.tax {
            0 => None,
            tax => Some(self.system.tax.0.checked_add(tax).ok_or(Overflow)?),
        };
        // 3. The share lines (left out when the quantity is zero): buyer +qty, seller -qty.
        let mut shares = [None, None];
        let mut symbols = [None, None];
        if f.qty != 0 {
            let seller_position = match f.seller {
                Party::User { position, .. } => Some(position),
                Party::Market => None,
            };
            for (k, (party, amount)) in [(f.buyer, f.qty), (f.seller, f.qty.wrapping_neg())]
                .into_iter()
                .enumerate()
            {
                let (place, symbol, balance, user) = match party {
                    Party::User { position, .. } => {
                        let p = self.positions.get(position as usize).ok_or(UNKNOWN)?;
                        // The seller's share hold settles first (it is this balance's hold
                        // if the two sides name one position).
                        let released = seller_hold.filter(|_| seller_position == Some(position));
                        let hold = released.unwrap_or(p.hold.0);
                        let place = Place::Shares(position as usize);
                        (place, p.symbol, p.qty.0, Some((p.account, hold)))
                    }
                    Party::Market => {
                        let i = (f.symbol.0 as usize).checked_sub(1).ok_or(UNKNOWN)?;
                        let b = self.system_shares.get(i).ok_or(UNKNOWN)?;
                        (Place::MarketShares(i), f.symbol, b.market, None)
                    }
                };
                if k == 1 && shares[0].is_some_and(|(p, _)| p == place) {
                    return Err(Malformed);
                }
                let after = balance.checked_add(amount).ok_or(Overflow)?;
                if let Some((account, hold)) = user {
                    if after < 0 {
                        return Err(NegativeBalance(account));
                    }
                    if after < hold {
                        return Err(BelowHold(account));
                    }
                }
                shares[k] = Some((place, after));
                symbols[k] = Some(symbol);
            }
        }
        // 4. Per asset, the lines sum to zero.
        let krw = f.buyer_cash as i128 + f.seller_cash as i128 + f.fee as i128 + f.tax as i128;
        let moved = f.qty as i128 + f.qty.wrapping_neg() as i128;
        if krw != 0 || (f.qty != 0 && (symbols[0] != symbols[1] || moved != 0)) {
            return Err(LedgerFault::Unbalanced);
        }
        // Every value below was computed and checked above: writing them cannot fail.
        if let (Party::User { account, .. }, Some(hold)) = (f.buyer, buyer_hold)
            && let Some(i) = self.account_slot(account)
        {
            self.accounts[i].cash_hold = Amount(hold);
        }
        if let (Party::User { position, .. }, Some(hold)) = (f.seller, seller_hold) {
            self.positions[position as usize].hold = Qty(hold);
        }
        for (index, after) in [(buyer_index, buyer_cash), (seller_index, seller_cash)] {
            match (index, after) {
                (Some(i), Some(after)) => self.accounts[i].cash = Amount(after),
                (None, Some(after)) => self.system.market_cash = Amount(after),
                _ => {}
            }
        }
        if let Some(fee) = fee {
            self.system.fee = Amount(fee);
        }
        if let Some(tax) = tax {
            self.system.tax = Amount(tax);
        }
        for (place, after) in shares.into_iter().flatten() {
            *self.place_mut(place) = after;
        }
        Ok(())
    }

    /// A cash balance (a user's by index, else SYSTEM_MARKET's) after `amount`, checked as
    /// `post` checks a line: no overflow; a user's not negative nor below its hold (`hold`
    /// if a release of this posting settles it, else its current hold).
    fn cash_after(
        &self,
        index: Option<usize>,
        amount: i64,
        hold: Option<i64>,
    ) -> Result<i64, LedgerFault> {
        let Some(i) = index else {
            let market = self.system.market_cash.0;
            return market.checked_add(amount).ok_or(LedgerFault::Overflow);
        };
        let a = &self.accounts[i];
        let after = a.cash.0.checked_add(amount).ok_or(LedgerFault::Overflow)?;
        if after < 0 {
            return Err(LedgerFault::NegativeBalance(a.id));
        }
        if after < hold.unwrap_or(a.cash_hold.0) {
            return Err(LedgerFault::BelowHold(a.id));
        }
        Ok(after)
    }

    /// A user's cash hold after `amount` of it is released (`post`'s rules for a release).
    fn cash_hold_after_release(
        &self,
        index: usize,
        account: AccountId,
        amount: i64,
    ) -> Result<i64, LedgerFault> {
        if amount < 0 {
            return Err(LedgerFault::InvalidHold(account));
        }
        let new = self.accounts[index]
            .cash_hold
            .0
            .checked_sub(amount)
            .ok_or(LedgerFault::Overflow)?;
        if new < 0 {
            return Err(LedgerFault::InvalidHold(account));
        }
        Ok(new)
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

    /// Where `holder`'s balance lives, its asset and its balance now.
    fn resolve(&self, holder: Holder) -> Result<(Place, Asset, i64), LedgerFault> {
        const UNKNOWN: LedgerFault = LedgerFault::UnknownHolder;
        let symbol = |s: SymbolId| {
            let i = (s.0 as usize).checked_sub(1).ok_or(UNKNOWN)?;
            self.system_shares.get(i).map(|b| (i, b)).ok_or(UNKNOWN)
        };
        Ok(match holder {
            Holder::UserCash(id) => {
                let i = self.account_slot(id).ok_or(UNKNOWN)?;
                (Place::Cash(i), Asset::Krw, self.accounts[i].cash.0)
            }
            Holder::UserShares(slot) => {
                let p = self.positions.get(slot as usize).ok_or(UNKNOWN)?;
                (
                    Place::Shares(slot as usize),
                    Asset::Shares(p.symbol),
                    p.qty.0,
                )
            }
            Holder::Fee => (Place::Fee, Asset::Krw, self.system.fee.0),
            Holder::Tax => (Place::Tax, Asset::Krw, self.system.tax.0),
            Holder::MarketCash => (Place::MarketCash, Asset::Krw, self.system.market_cash.0),
            Holder::ExternalCash => (Place::ExternalCash, Asset::Krw, self.system.external_cash.0),
            Holder::MarketShares(s) => {
                let (i, b) = symbol(s)?;
                (Place::MarketShares(i), Asset::Shares(s), b.market)
            }
            Holder::ExternalShares(s) => {
                let (i, b) = symbol(s)?;
                (Place::ExternalShares(i), Asset::Shares(s), b.external)
            }
        })
    }

    /// The balance at a place `resolve` returned (the tables have not changed since).
    #[inline]
    fn place_mut(&mut self, place: Place) -> &mut i64 {
        match place {
            Place::Cash(i) => &mut self.accounts[i].cash.0,
            Place::Shares(i) => &mut self.positions[i].qty.0,
            Place::Fee => &mut self.system.fee.0,
            Place::Tax => &mut self.system.tax.0,
            Place::MarketCash => &mut self.system.market_cash.0,
            Place::ExternalCash => &mut self.system.external_cash.0,
            Place::MarketShares(i) => &mut self.system_shares[i].market,
            Place::ExternalShares(i) => &mut self.system_shares[i].external,
        }
    }
}

/// A holder resolved to the index of its balance.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Place {
    Cash(usize),
    Shares(usize),
    Fee,
    Tax,
    MarketCash,
    ExternalCash,
    MarketShares(usize),
    ExternalShares(usize),
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

    /// The fill checker gives every answer the general one gives for the same transaction
    /// built line by line (`Fill::as_lines`), and leaves the same state: fills over random
    /// balances and holds, with sides, positions and symbols that exist or not, and amounts
    /// from the edges of `i64`.
    #[test]
    fn a_fill_posts_as_its_lines_do() {
        use proptest::prelude::*;
        let amount = || {
            prop_oneof![
                3 => -3_000i64..3_000,
                1 => proptest::sample::select(vec![0, 1, -1, i64::MAX, i64::MIN, i64::MAX - 1]),
            ]
        };
        let party = || {
            prop_oneof![
                1 => Just(Party::Market),
                4 => (0u32..=3, 0u32..=6).prop_map(|(a, p)| Party::User {
                    account: AccountId(a),
                    position: p,
                }),
            ]
        };
        let chaos = (
            (0u32..=3, amount(), party(), party()),
            (amount(), amount(), amount(), amount()),
            (amount(), amount(), any::<bool>()),
        )
            .prop_map(
                |((symbol, qty, buyer, seller), (bc, sc, fee, tax), (br, sr, balanced))| {
                    // Half balance their cash, so that they get past the sum check.
                    let sc = match balanced {
                        true => bc
                            .checked_add(fee)
                            .and_then(|v| v.checked_add(tax))
                            .and_then(i64::checked_neg)
                            .unwrap_or(sc),
                        false => sc,
                    };
                    Fill {
                        symbol: SymbolId(symbol),
                        qty,
                        buyer,
                        seller,
                        buyer_cash: bc,
                        seller_cash: sc,
                        fee,
                        tax,
                        buyer_release: br,
                        seller_release: sr,
                    }
                },
            );
        // Fills as matching makes them, in symbol 1 (positions 0 and 1), some over-drawing.
        let side = |a: u32| match a {
            0 => Party::Market,
            a => Party::User {
                account: AccountId(a),
                position: a - 1,
            },
        };
        let plausible = (
            0u32..=2,
            0u32..=2,
            0i64..30,
            1i64..60,
            (0i64..5, 0i64..5, 0i64..9),
        )
            .prop_map(move |(b, s, qty, price, (cb, cs, tax))| {
                let notional = price * qty;
                let (buyer, seller) = (side(b), side(s));
                let user = |p: Party, v: i64| if p == Party::Market { 0 } else { v };
                Fill {
                    symbol: SymbolId(1),
                    qty,
                    buyer,
                    seller,
                    buyer_cash: -(notional + user(buyer, cb)),
                    seller_cash: notional - user(seller, cs) - user(seller, tax),
                    fee: user(buyer, cb) + user(seller, cs),
                    tax: user(seller, tax),
                    buyer_release: user(buyer, notional + cb + tax / 3),
                    seller_release: user(seller, qty),
                }
            });
        let fill = prop_oneof![plausible, chaos];
        let balances = proptest::collection::vec((0i64..5_000, 0i64..100), 6);
        let mut runner = proptest::test_runner::TestRunner::new(proptest::test_runner::Config {
            cases: 20_000,
            failure_persistence: None,
            ..Default::default()
        });
        let posted = std::cell::Cell::new(0u32);
        let straight_posted = std::cell::Cell::new(0u32);
        runner
            .run(&(fill, balances), |(fill, balances)| {
                let build = || {
                    let mut l = Ledger::new(4, 8, 3, 4, 4);
                    l.add_symbol();
                    l.add_symbol();
                    for owner in ["a", "b"] {
                        l.open_account(ExternalRef::new(owner).unwrap()).unwrap();
                    }
                    // Positions 0-5: accounts 1 and 2 in symbols 1 and 2, and 1 again.
                    for (a, s) in [(1, 1), (2, 1), (1, 2), (2, 2)] {
                        l.position_slot_or_insert(AccountId(a), SymbolId(s))
                            .unwrap();
                    }
                    for (i, &(cash, shares)) in balances.iter().take(2).enumerate() {
                        let id = AccountId(i as u32 + 1);
                        let mut fund = LedgerTx::new();
                        fund.line(Holder::UserCash(id), cash)
                            .line(Holder::ExternalCash, -cash)
                            .line(Holder::UserShares(i as u32), shares)
                            .line(Holder::ExternalShares(SymbolId(1)), -shares);
                        l.post(&fund).unwrap();
                        l.place_hold(Hold::Cash(id, Amount(balances[2 + i].0.min(cash))))
                            .unwrap();
                        l.place_hold(Hold::Shares(i as u32, Qty(balances[4 + i].1.min(shares))))
                            .unwrap();
                    }
                    l
                };
                let (mut fast, mut general, mut straight) = (build(), build(), build());
                let got = fast.post(&LedgerTx::fill(fill));
                let want = general.post(&fill.as_lines());
                prop_assert_eq!(got, want, "{:?}", fill);
                prop_assert_eq!(state(&fast), state(&general), "{:?}", fill);
                posted.set(posted.get() + u32::from(got.is_ok()));
                // The straight pass on its own: where it posts, the general path posts the
                // same; where it declines, it has changed nothing.
                if straight.post_user_fill(&fill) {
                    prop_assert_eq!(want, Ok(()), "{:?}", fill);
                    prop_assert_eq!(state(&straight), state(&general), "{:?}", fill);
                    straight_posted.set(straight_posted.get() + 1);
                } else {
                    prop_assert_eq!(state(&straight), state(&build()), "{:?}", fill);
                }
                Ok(())
            })
            .unwrap();
        assert!(
            posted.get() > 500,
            "too few fills posted ({})",
            posted.get()
        );
        assert!(
            straight_posted.get() > 200,
            "too few fills posted by the straight pass ({})",
            straight_posted.get()
        );
    }
}
