//! Whole-state invariant checks (tests, `kuku-replay verify`): O(state), allocates.
//!
//! 1. Every asset sums to zero over all ledger accounts (the trial balance).
//! 2. No user balance or hold is negative; no hold exceeds its balance.
//! 3. Holds equal what live orders and open withdrawals need: each buy's hold is the risk
//!    formula of its current state; an account's cash hold is the sum of its buys' holds and
//!    open withdrawals; a position's hold is the sum of its sells' leaves.
//! 4. Books: level totals equal their orders; FIFO in priority order; every live resting
//!    order is in its level; no book is crossed.
//! 5. Accounts' order lists: each holds exactly its account's live orders, in OrderId order,
//!    with links that agree both ways.

use crate::engine::Engine;
use crate::event::TxStatus;
use crate::risk::buy_hold;
use crate::types::{OrderType, Price, Side};
use rustc_hash::FxHashMap;

impl Engine {
    /// `Err` describes the first violated invariant.
    pub fn check_invariants(&self) -> Result<(), String> {
        self.check_trial_balance()?;
        if self.config.accounting {
            self.check_balances_and_holds()?;
            self.check_account_lists()?;
        }
        self.check_books()
    }

    fn check_account_lists(&self) -> Result<(), String> {
        use crate::book::order::NIL;
        let mut listed = 0usize;
        for a in self.ledger.accounts() {
            let (mut prev, mut cur, mut last_id) = (NIL, a.orders_head, 0u64);
            while cur != NIL {
                let o = self.orders.get(cur);
                if o.id.0 == 0
                    || o.account != a.id
                    || o.id.0 <= last_id
                    || o.by_account.prev != prev
                {
                    return Err(format!("account {}: order list broken at slot {cur}", a.id));
                }
                listed += 1;
                if listed > self.orders.live_count() as usize {
                    return Err(format!("account {}: order list loops", a.id));
                }
                (prev, last_id, cur) = (cur, o.id.0, o.by_account.next);
            }
            if a.orders_tail != prev {
                return Err(format!("account {}: order list tail wrong", a.id));
            }
        }
        let users = self
            .orders
            .iter()
            .filter(|(_, o)| !o.account.is_system_market())
            .count();
        if listed != users {
            return Err(format!(
                "{listed} orders in account lists, {users} live user orders"
            ));
        }
        Ok(())
    }

    fn check_trial_balance(&self) -> Result<(), String> {
        let (krw, shares) = self.ledger.trial_balance();
        if krw != 0 {
            return Err(format!("KRW sums to {krw}, not 0"));
        }
        if let Some((s, n)) = shares.iter().find(|(_, n)| *n != 0) {
            return Err(format!("shares of symbol {s} sum to {n}, not 0"));
        }
        Ok(())
    }

    fn check_balances_and_holds(&self) -> Result<(), String> {
        let mut cash_hold: FxHashMap<u32, i64> = FxHashMap::default();
        let mut share_hold: FxHashMap<(u32, u32), i64> = FxHashMap::default();
        for (_, o) in self.orders.iter() {
            if o.account.is_system_market() {
                continue;
            }
            match o.side {
                Side::Buy => {
                    let price = match o.order_type {
                        OrderType::Limit => o.price,
                        OrderType::Market => self.symbols[o.symbol.0 as usize - 1]
                            .symbol
                            .band
                            .map_or(Price(0), |b| b.upper),
                    };
                    let want = buy_hold(
                        price,
                        o.leaves,
                        o.cum_notional,
                        o.commission_charged,
                        self.fees.commission_ppm,
                    );
                    if want != Some(o.cash_hold) {
                        return Err(format!("order {} holds {} not {want:?}", o.id, o.cash_hold));
                    }
                    *cash_hold.entry(o.account.0).or_default() += o.cash_hold.0;
                }
                Side::Sell => {
                    *share_hold.entry((o.account.0, o.symbol.0)).or_default() += o.leaves.0
                }
            }
        }
        for t in self.ledger.external.open.values() {
            if matches!(t.status, TxStatus::Pending | TxStatus::Unknown) {
                *cash_hold.entry(t.account.0).or_default() += t.amount.0;
            }
        }
        for a in self.ledger.accounts() {
            let want = cash_hold.get(&a.id.0).copied().unwrap_or(0);
            if a.cash().0 < 0 || a.cash_hold().0 < 0 || a.cash_hold().0 > a.cash().0 {
                return Err(format!(
                    "account {}: cash {} hold {}",
                    a.id,
                    a.cash(),
                    a.cash_hold()
                ));
            }
            if a.cash_hold().0 != want {
                return Err(format!(
                    "account {}: hold {} but needs {want}",
                    a.id,
                    a.cash_hold()
                ));
            }
        }
        for p in self.ledger.positions() {
            let want = share_hold
                .get(&(p.account.0, p.symbol.0))
                .copied()
                .unwrap_or(0);
            if p.qty().0 < 0 || p.hold().0 < 0 || p.hold() > p.qty() || p.hold().0 != want {
                return Err(format!(
                    "position {}/{}: qty {} hold {} but sells need {want}",
                    p.account,
                    p.symbol,
                    p.qty(),
                    p.hold()
                ));
            }
            if p.qty().0 == 0 && p.cost_basis.0 != 0 {
                return Err(format!(
                    "position {}/{}: flat with cost",
                    p.account, p.symbol
                ));
            }
        }
        Ok(())
    }

    fn check_books(&self) -> Result<(), String> {
        let mut resting = 0usize;
        for s in &self.symbols {
            for side in [Side::Buy, Side::Sell] {
                for level in s.book.side(side).iter() {
                    let (mut qty, mut count, mut last_priority) = (0i64, 0u32, 0u64);
                    let mut cur = level.head;
                    while cur != crate::book::order::NIL {
                        let o = self.orders.get(cur);
                        if o.price != level.price || o.side != side || o.symbol != s.symbol.id {
                            return Err(format!("order {} in the wrong level", o.id));
                        }
                        if o.priority <= last_priority || !o.resting || o.leaves.0 <= 0 {
                            return Err(format!("order {} out of FIFO order or empty", o.id));
                        }
                        last_priority = o.priority;
                        qty += o.leaves.0;
                        count += 1;
                        cur = o.level.next;
                    }
                    if qty != level.qty.0 || count != level.count {
                        return Err(format!(
                            "level {} of {} totals wrong",
                            level.price, s.symbol.code
                        ));
                    }
                    resting += count as usize;
                }
            }
            if let (Some(b), Some(a)) = (s.book.best(Side::Buy), s.book.best(Side::Sell))
                && b.price >= a.price
            {
                return Err(format!(
                    "book {} crossed: {} >= {}",
                    s.symbol.code, b.price, a.price
                ));
            }
        }
        let live_resting = self.orders.iter().filter(|(_, o)| o.resting).count();
        if resting != live_resting || live_resting != self.orders.live_count() as usize {
            return Err(format!(
                "{resting} orders in levels, {live_resting} resting, {} live",
                self.orders.live_count()
            ));
        }
        Ok(())
    }
}
