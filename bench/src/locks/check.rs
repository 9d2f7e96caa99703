//! The correctness check after every run: the target's own record of each balance against its
//! initial funding and against what the clients were told.
//!
//! For every (account, asset) row:
//! - **no lost update**: `remaining = initial - reserved_recorded`, where `reserved_recorded`
//!   is the sum of the target's accepted orders (SQL: the `orders` rows; Kuku: the holds) and
//!   `remaining` what it still offers (SQL: `balances.amount`; Kuku: available cash or shares);
//! - **never negative**: `remaining >= 0`;
//! - **no double spend**: `reserved_recorded <= initial`;
//! - **every acknowledgement recorded, nothing else**: the recorded reservations (and, where
//!   the target counts them, orders) equal the clients' accepted orders.
//!
//! **Invariants**: the check reads only the target's state after every client has its last
//! outcome; it never trusts the strategy's own counters.
//!
//! **Performance**: one pass over the rows (one SQL query, or one `AccountQuery` per account).
//!
//! **Known limitations**: Kuku's orders are not counted one by one (its holds are), so for
//! Kuku the check compares reservations, not order counts.

use super::workload::{Asset, ClientView};
use serde::Serialize;

/// One balance as the target records it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Row {
    pub account: u32,
    pub asset: Asset,
    pub initial: i64,
    pub remaining: i64,
    pub reserved_recorded: i64,
    /// Accepted orders the target recorded (`None`: the target does not count them).
    pub orders_recorded: Option<u64>,
}

/// The verdict.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Check {
    pub rows: u64,
    /// Rows whose remaining amount is not the initial one minus the recorded reservations.
    pub lost_update_rows: u64,
    /// Reserved by recorded orders but never deducted, summed over rows (KRW and shares
    /// added as numbers; 0 when nothing was lost).
    pub lost_amount: i64,
    pub negative_rows: u64,
    pub double_spend_rows: u64,
    /// Rows whose recorded reservations or order count differ from the acknowledgements.
    pub unacknowledged_rows: u64,
    pub orders_acknowledged: u64,
    pub orders_recorded: Option<u64>,
    pub ok: bool,
}

/// Checks `rows` (every row of every account the run used) against `view`.
pub fn check(rows: &[Row], view: &ClientView) -> Check {
    let mut c = Check {
        orders_acknowledged: view.accepted_total(),
        orders_recorded: Some(0),
        ..Check::default()
    };
    let mut seen = vec![[false; 2]; view.accepted.len()];
    for r in rows {
        c.rows += 1;
        let expected = r.initial - r.reserved_recorded;
        if r.remaining != expected {
            c.lost_update_rows += 1;
            c.lost_amount += r.remaining - expected;
        }
        if r.remaining < 0 {
            c.negative_rows += 1;
        }
        if r.reserved_recorded > r.initial {
            c.double_spend_rows += 1;
        }
        c.orders_recorded = match (c.orders_recorded, r.orders_recorded) {
            (Some(a), Some(b)) => Some(a + b),
            _ => None,
        };
        let (told_n, told_reserved) = view
            .accepted
            .get(r.account as usize)
            .map_or((0, 0), |a| a[r.asset.index()]);
        if let Some(s) = seen.get_mut(r.account as usize) {
            s[r.asset.index()] = true;
        }
        if told_reserved != r.reserved_recorded || r.orders_recorded.is_some_and(|n| n != told_n) {
            c.unacknowledged_rows += 1;
        }
    }
    // An account the clients used must have been checked.
    let missing = view
        .accepted
        .iter()
        .zip(&seen)
        .flat_map(|(a, s)| (0..2).filter(move |&i| a[i].0 > 0 && !s[i]))
        .count() as u64;
    c.unacknowledged_rows += missing;
    c.ok = c.lost_update_rows == 0
        && c.negative_rows == 0
        && c.double_spend_rows == 0
        && c.unacknowledged_rows == 0;
    c
}

impl Check {
    /// A one-line verdict for the report.
    pub fn describe(&self) -> String {
        if self.ok {
            return format!(
                "ok ({} rows, {} orders acknowledged and recorded)",
                self.rows, self.orders_acknowledged
            );
        }
        format!(
            "FAILED: {} lost-update rows (amount {}), {} negative, {} double-spend, {} not matching the acknowledgements ({} acknowledged, {} recorded)",
            self.lost_update_rows,
            self.lost_amount,
            self.negative_rows,
            self.double_spend_rows,
            self.unacknowledged_rows,
            self.orders_acknowledged,
            self.orders_recorded
                .map_or_else(|| "not counted".to_owned(), |n| n.to_string())
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(n: u64, reserved: i64) -> ClientView {
        let mut v = ClientView::new(1);
        v.accepted[0][0] = (n, reserved);
        v
    }

    fn row(remaining: i64, reserved: i64, orders: Option<u64>) -> Row {
        Row {
            account: 0,
            asset: Asset::Cash,
            initial: 1_000,
            remaining,
            reserved_recorded: reserved,
            orders_recorded: orders,
        }
    }

    #[test]
    fn an_exact_ledger_passes() {
        let c = check(&[row(700, 300, Some(3))], &view(3, 300));
        assert!(c.ok, "{c:?}");
        assert_eq!(c.orders_recorded, Some(3));
    }

    #[test]
    fn a_lost_update_is_caught_with_its_amount() {
        // Three orders of 100 recorded, only one deducted.
        let c = check(&[row(900, 300, Some(3))], &view(3, 300));
        assert!(!c.ok);
        assert_eq!((c.lost_update_rows, c.lost_amount), (1, 200));
    }

    #[test]
    fn negative_and_double_spend_are_caught() {
        let c = check(&[row(-100, 1_100, Some(11))], &view(11, 1_100));
        assert!(!c.ok);
        assert_eq!((c.negative_rows, c.double_spend_rows), (1, 1));
        assert_eq!(c.lost_update_rows, 0, "the arithmetic itself is consistent");
    }

    #[test]
    fn an_acknowledged_order_missing_from_the_target_is_caught() {
        let c = check(&[row(800, 200, Some(2))], &view(3, 300));
        assert!(!c.ok);
        assert_eq!(c.unacknowledged_rows, 1);
        // The target did not count orders (Kuku): the reservations still must match.
        let c = check(&[row(800, 200, None)], &view(3, 300));
        assert!(!c.ok);
        assert_eq!(c.orders_recorded, None);
    }

    #[test]
    fn an_unchecked_account_with_acknowledged_orders_fails() {
        let c = check(&[], &view(1, 100));
        assert!(!c.ok);
        assert_eq!(c.unacknowledged_rows, 1);
    }
}
