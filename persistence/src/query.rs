//! History and read-model queries: what `kuku reconcile`, tools and (later) the HTTP API ask
//! the query store. Account history (ledger transactions with their entries, orders, trades)
//! is served from here, never from the engine, which keeps live state only.
//!
//! Every history query pages by id (`after` = the last id of the previous page, `limit` rows)
//! in id order, so each is one range scan of an index (docs/persistence.md lists which).
//!
//! **Known limitations**: amounts are summed in the database (`SUM` cast to a signed BIGINT on
//! MySQL), so a single sum must fit an i64; KRW totals of this system stay far below.

use std::collections::BTreeMap;

use kuku_engine::{AccountId, ExternalRef};
use sqlx::any::AnyRow;
use sqlx::{AssertSqlSafe, Row};

use crate::db::Database;
use crate::error::PersistenceError;
use crate::store::{self, Checkpoint};
use crate::url::Backend;

/// A ledger transaction as stored, with its entries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TransactionView {
    pub tx_id: u64,
    pub tx_type: String,
    pub status: String,
    pub account_id: u32,
    /// 0: KRW; else the symbol whose shares moved (for TRADE: the symbol traded).
    pub asset_symbol_id: u32,
    pub amount: i64,
    pub external_ref: Option<String>,
    pub trade_id: Option<u64>,
    pub reverses_tx_id: Option<u64>,
    pub reversed_by_tx_id: Option<u64>,
    pub created_seq: u64,
    pub created_ts_ns: u64,
    pub entries: Vec<EntryView>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EntryView {
    pub line_no: u32,
    pub ledger_account: String,
    pub account_id: u32,
    pub asset_symbol_id: u32,
    pub amount: i64,
    pub line_kind: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OrderView {
    pub order_id: u64,
    pub account_id: u32,
    pub client_order_id: u64,
    pub symbol_id: u32,
    pub side: String,
    pub order_type: String,
    pub tif: String,
    pub price: i64,
    /// The order's size: filled + leaves + cancelled.
    pub qty: i64,
    pub leaves: i64,
    pub filled: i64,
    /// What left the book unfilled (a cancel or an expiry).
    pub cancelled: i64,
    pub status: String,
    pub cancel_reason: Option<String>,
    pub accepted_seq: u64,
    pub updated_seq: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TradeView {
    pub trade_id: u64,
    pub seq: u64,
    pub ts_ns: u64,
    pub symbol_id: u32,
    pub price: i64,
    pub qty: i64,
    pub taker_side: String,
    pub maker_order_id: u64,
    pub maker_account_id: u32,
    pub taker_order_id: u64,
    pub taker_account_id: u32,
    pub buyer_commission: i64,
    pub seller_commission: i64,
    pub securities_tax: i64,
    pub rural_tax: i64,
    pub tx_id: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BalanceView {
    pub account_id: u32,
    pub cash: i64,
    pub cash_hold: i64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PositionView {
    pub account_id: u32,
    pub symbol_id: u32,
    pub qty: i64,
    pub hold: i64,
    pub cost_basis: i64,
    pub realized_pnl: i64,
}

/// Rows per table (tests, reconcile, the benchmark).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RowCounts {
    pub symbols: u64,
    pub accounts: u64,
    pub balances: u64,
    pub positions: u64,
    pub ledger_transactions: u64,
    pub ledger_entries: u64,
    pub orders: u64,
    pub trades: u64,
}

/// `(ledger_account, account_id, asset_symbol_id)`: a ledger account's balance in one asset.
pub type LedgerKey = (String, u32, u32);

const TX_COLUMNS: &str = "tx_id, tx_type, status, account_id, asset_symbol_id, amount, \
    external_ref, trade_id, reverses_tx_id, reversed_by_tx_id, created_seq, created_ts_ns";
const ORDER_COLUMNS: &str = "order_id, account_id, client_order_id, symbol_id, side, \
    order_type, tif, price, qty, leaves, filled, cancelled, status, cancel_reason, accepted_seq, \
    updated_seq";
const TRADE_COLUMNS: &str = "trade_id, seq, ts_ns, symbol_id, price, qty, taker_side, \
    maker_order_id, maker_account_id, taker_order_id, taker_account_id, buyer_commission, \
    seller_commission, securities_tax, rural_tax, tx_id";

fn decode(op: &'static str) -> impl Fn(sqlx::Error) -> PersistenceError {
    move |error| PersistenceError::Database { op, error }
}

fn uint<T: TryFrom<i64>>(row: &AnyRow, column: &str) -> Result<T, PersistenceError> {
    let v: i64 = row.try_get(column).map_err(decode("decoding a row"))?;
    T::try_from(v).map_err(|_| PersistenceError::Corrupt(format!("{column} = {v}")))
}

fn opt_uint(row: &AnyRow, column: &str) -> Result<Option<u64>, PersistenceError> {
    let v: Option<i64> = row.try_get(column).map_err(decode("decoding a row"))?;
    v.map(|v| u64::try_from(v).map_err(|_| PersistenceError::Corrupt(format!("{column} = {v}"))))
        .transpose()
}

fn int(row: &AnyRow, column: &str) -> Result<i64, PersistenceError> {
    row.try_get(column).map_err(decode("decoding a row"))
}

fn text(row: &AnyRow, column: &str) -> Result<String, PersistenceError> {
    row.try_get(column).map_err(decode("decoding a row"))
}

fn opt_text(row: &AnyRow, column: &str) -> Result<Option<String>, PersistenceError> {
    row.try_get(column).map_err(decode("decoding a row"))
}

fn transaction_view(row: &AnyRow) -> Result<TransactionView, PersistenceError> {
    Ok(TransactionView {
        tx_id: uint(row, "tx_id")?,
        tx_type: text(row, "tx_type")?,
        status: text(row, "status")?,
        account_id: uint(row, "account_id")?,
        asset_symbol_id: uint(row, "asset_symbol_id")?,
        amount: int(row, "amount")?,
        external_ref: opt_text(row, "external_ref")?,
        trade_id: opt_uint(row, "trade_id")?,
        reverses_tx_id: opt_uint(row, "reverses_tx_id")?,
        reversed_by_tx_id: opt_uint(row, "reversed_by_tx_id")?,
        created_seq: uint(row, "created_seq")?,
        created_ts_ns: uint(row, "created_ts_ns")?,
        entries: Vec::new(),
    })
}

fn order_view(row: &AnyRow) -> Result<OrderView, PersistenceError> {
    Ok(OrderView {
        order_id: uint(row, "order_id")?,
        account_id: uint(row, "account_id")?,
        client_order_id: uint(row, "client_order_id")?,
        symbol_id: uint(row, "symbol_id")?,
        side: text(row, "side")?,
        order_type: text(row, "order_type")?,
        tif: text(row, "tif")?,
        price: int(row, "price")?,
        qty: int(row, "qty")?,
        leaves: int(row, "leaves")?,
        filled: int(row, "filled")?,
        cancelled: int(row, "cancelled")?,
        status: text(row, "status")?,
        cancel_reason: opt_text(row, "cancel_reason")?,
        accepted_seq: uint(row, "accepted_seq")?,
        updated_seq: uint(row, "updated_seq")?,
    })
}

fn trade_view(row: &AnyRow) -> Result<TradeView, PersistenceError> {
    Ok(TradeView {
        trade_id: uint(row, "trade_id")?,
        seq: uint(row, "seq")?,
        ts_ns: uint(row, "ts_ns")?,
        symbol_id: uint(row, "symbol_id")?,
        price: int(row, "price")?,
        qty: int(row, "qty")?,
        taker_side: text(row, "taker_side")?,
        maker_order_id: uint(row, "maker_order_id")?,
        maker_account_id: uint(row, "maker_account_id")?,
        taker_order_id: uint(row, "taker_order_id")?,
        taker_account_id: uint(row, "taker_account_id")?,
        buyer_commission: int(row, "buyer_commission")?,
        seller_commission: int(row, "seller_commission")?,
        securities_tax: int(row, "securities_tax")?,
        rural_tax: int(row, "rural_tax")?,
        tx_id: uint(row, "tx_id")?,
    })
}

fn account_key(account: AccountId) -> i64 {
    i64::from(account.0)
}

fn page(after: u64, limit: u32) -> (i64, i64) {
    (
        i64::try_from(after).unwrap_or(i64::MAX),
        i64::from(limit.max(1)),
    )
}

impl Database {
    /// The checkpoint: every row of commands up to it is here.
    pub async fn checkpoint(&self) -> Result<Checkpoint, PersistenceError> {
        let mut conn = self.pool().acquire().await.map_err(decode("connecting"))?;
        store::read_checkpoint(&mut conn).await
    }

    /// The account's ledger transactions after `after_tx`, oldest first, with their entries:
    /// those made for it (deposits, withdrawals, adjustments, reversals, trades it took) and
    /// every transaction that moved its cash or shares (trades it made). Index range scans:
    /// `ix_ledger_tx_account`, `ix_ledger_entries_account`.
    pub async fn account_transactions(
        &self,
        account: AccountId,
        after_tx: u64,
        limit: u32,
    ) -> Result<Vec<TransactionView>, PersistenceError> {
        let (after, limit) = page(after_tx, limit);
        let sql = format!(
            "SELECT {TX_COLUMNS} FROM ledger_transactions WHERE tx_id IN ( \
               SELECT tx_id FROM ledger_transactions WHERE account_id = ? AND tx_id > ? \
               UNION \
               SELECT tx_id FROM ledger_entries WHERE account_id = ? AND tx_id > ? \
                 AND ledger_account IN ('USER_CASH', 'USER_SECURITIES')) \
             ORDER BY tx_id LIMIT ?"
        );
        let rows = sqlx::query(AssertSqlSafe(sql))
            .bind(account_key(account))
            .bind(after)
            .bind(account_key(account))
            .bind(after)
            .bind(limit)
            .fetch_all(self.pool())
            .await
            .map_err(decode("reading account transactions"))?;
        let mut txs = rows
            .iter()
            .map(transaction_view)
            .collect::<Result<Vec<_>, _>>()?;
        self.attach_entries(&mut txs).await?;
        Ok(txs)
    }

    /// The transaction an external reference names for an account, if any (the guard against a
    /// resent deposit the engine no longer remembers: `uk_ledger_tx_external_ref`).
    pub async fn external_transaction(
        &self,
        account: AccountId,
        external_ref: &ExternalRef,
    ) -> Result<Option<TransactionView>, PersistenceError> {
        let sql = format!(
            "SELECT {TX_COLUMNS} FROM ledger_transactions WHERE account_id = ? AND external_ref = ?"
        );
        let row = sqlx::query(AssertSqlSafe(sql))
            .bind(account_key(account))
            .bind(external_ref.as_str())
            .fetch_optional(self.pool())
            .await
            .map_err(decode("reading a transaction by reference"))?;
        let mut txs = row
            .as_ref()
            .map(transaction_view)
            .transpose()?
            .into_iter()
            .collect::<Vec<_>>();
        self.attach_entries(&mut txs).await?;
        Ok(txs.pop())
    }

    async fn attach_entries(&self, txs: &mut [TransactionView]) -> Result<(), PersistenceError> {
        if txs.is_empty() {
            return Ok(());
        }
        let placeholders = vec!["?"; txs.len()].join(", ");
        let sql = format!(
            "SELECT tx_id, line_no, ledger_account, account_id, asset_symbol_id, amount, line_kind \
             FROM ledger_entries WHERE tx_id IN ({placeholders}) ORDER BY tx_id, line_no"
        );
        let mut query = sqlx::query(AssertSqlSafe(sql));
        for tx in txs.iter() {
            query = query.bind(i64::try_from(tx.tx_id).unwrap_or(i64::MAX));
        }
        let rows = query
            .fetch_all(self.pool())
            .await
            .map_err(decode("reading ledger entries"))?;
        let mut by_tx: BTreeMap<u64, Vec<EntryView>> = BTreeMap::new();
        for row in &rows {
            by_tx
                .entry(uint(row, "tx_id")?)
                .or_default()
                .push(EntryView {
                    line_no: uint(row, "line_no")?,
                    ledger_account: text(row, "ledger_account")?,
                    account_id: uint(row, "account_id")?,
                    asset_symbol_id: uint(row, "asset_symbol_id")?,
                    amount: int(row, "amount")?,
                    line_kind: text(row, "line_kind")?,
                });
        }
        for tx in txs.iter_mut() {
            tx.entries = by_tx.remove(&tx.tx_id).unwrap_or_default();
        }
        Ok(())
    }

    /// The account's orders after `after_order`, oldest first (`ix_orders_account`).
    pub async fn account_orders(
        &self,
        account: AccountId,
        after_order: u64,
        limit: u32,
    ) -> Result<Vec<OrderView>, PersistenceError> {
        let (after, limit) = page(after_order, limit);
        let sql = format!(
            "SELECT {ORDER_COLUMNS} FROM orders WHERE account_id = ? AND order_id > ? \
             ORDER BY order_id LIMIT ?"
        );
        let rows = sqlx::query(AssertSqlSafe(sql))
            .bind(account_key(account))
            .bind(after)
            .bind(limit)
            .fetch_all(self.pool())
            .await
            .map_err(decode("reading account orders"))?;
        rows.iter().map(order_view).collect()
    }

    /// Open orders (all accounts, or one), by order id (`ix_orders_open`).
    pub async fn open_orders(
        &self,
        account: Option<AccountId>,
    ) -> Result<Vec<OrderView>, PersistenceError> {
        let rows = match account {
            Some(a) => {
                let sql = format!(
                    "SELECT {ORDER_COLUMNS} FROM orders WHERE is_open = 1 AND account_id = ? \
                     ORDER BY order_id"
                );
                sqlx::query(AssertSqlSafe(sql))
                    .bind(account_key(a))
                    .fetch_all(self.pool())
                    .await
            }
            None => {
                let sql = format!(
                    "SELECT {ORDER_COLUMNS} FROM orders WHERE is_open = 1 ORDER BY order_id"
                );
                sqlx::query(AssertSqlSafe(sql)).fetch_all(self.pool()).await
            }
        }
        .map_err(decode("reading open orders"))?;
        rows.iter().map(order_view).collect()
    }

    /// The account's fills after `after_trade`, as maker or taker, oldest first
    /// (`ix_trades_maker_account`, `ix_trades_taker_account`).
    pub async fn account_trades(
        &self,
        account: AccountId,
        after_trade: u64,
        limit: u32,
    ) -> Result<Vec<TradeView>, PersistenceError> {
        let (after, limit) = page(after_trade, limit);
        let sql = format!(
            "SELECT {TRADE_COLUMNS} FROM trades WHERE trade_id IN ( \
               SELECT trade_id FROM trades WHERE maker_account_id = ? AND trade_id > ? \
               UNION \
               SELECT trade_id FROM trades WHERE taker_account_id = ? AND trade_id > ?) \
             ORDER BY trade_id LIMIT ?"
        );
        let rows = sqlx::query(AssertSqlSafe(sql))
            .bind(account_key(account))
            .bind(after)
            .bind(account_key(account))
            .bind(after)
            .bind(limit)
            .fetch_all(self.pool())
            .await
            .map_err(decode("reading account trades"))?;
        rows.iter().map(trade_view).collect()
    }

    /// Every account's cash and hold (the balances read model), by account.
    pub async fn balances(&self) -> Result<Vec<BalanceView>, PersistenceError> {
        let rows =
            sqlx::query("SELECT account_id, cash, cash_hold FROM balances ORDER BY account_id")
                .fetch_all(self.pool())
                .await
                .map_err(decode("reading balances"))?;
        rows.iter()
            .map(|r| {
                Ok(BalanceView {
                    account_id: uint(r, "account_id")?,
                    cash: int(r, "cash")?,
                    cash_hold: int(r, "cash_hold")?,
                })
            })
            .collect()
    }

    /// Every position (the positions read model), by account and symbol.
    pub async fn positions(&self) -> Result<Vec<PositionView>, PersistenceError> {
        let rows = sqlx::query(
            "SELECT account_id, symbol_id, qty, hold, cost_basis, realized_pnl FROM positions \
             ORDER BY account_id, symbol_id",
        )
        .fetch_all(self.pool())
        .await
        .map_err(decode("reading positions"))?;
        rows.iter()
            .map(|r| {
                Ok(PositionView {
                    account_id: uint(r, "account_id")?,
                    symbol_id: uint(r, "symbol_id")?,
                    qty: int(r, "qty")?,
                    hold: int(r, "hold")?,
                    cost_basis: int(r, "cost_basis")?,
                    realized_pnl: int(r, "realized_pnl")?,
                })
            })
            .collect()
    }

    /// `SUM(column)` as a signed integer in both dialects (MySQL's `SUM` is a DECIMAL).
    fn sum(&self, column: &str) -> String {
        match self.backend() {
            Backend::MySql => format!("CAST(SUM({column}) AS SIGNED)"),
            Backend::Sqlite => format!("SUM({column})"),
        }
    }

    /// The sum of every ledger line per asset (`asset_symbol_id`, 0 = KRW): all zero in a
    /// balanced ledger. A full scan of ledger_entries.
    pub async fn trial_balance(&self) -> Result<BTreeMap<u32, i64>, PersistenceError> {
        let sql = format!(
            "SELECT asset_symbol_id, {} AS total FROM ledger_entries GROUP BY asset_symbol_id",
            self.sum("amount")
        );
        let rows = sqlx::query(AssertSqlSafe(sql))
            .fetch_all(self.pool())
            .await
            .map_err(decode("computing the trial balance"))?;
        rows.iter()
            .map(|r| Ok((uint(r, "asset_symbol_id")?, int(r, "total")?)))
            .collect()
    }

    /// Every ledger account's balance per asset, summed from the lines (non-zero ones).
    pub async fn ledger_balances(&self) -> Result<BTreeMap<LedgerKey, i64>, PersistenceError> {
        let sql = format!(
            "SELECT ledger_account, account_id, asset_symbol_id, {} AS total FROM ledger_entries \
             GROUP BY ledger_account, account_id, asset_symbol_id",
            self.sum("amount")
        );
        let rows = sqlx::query(AssertSqlSafe(sql))
            .fetch_all(self.pool())
            .await
            .map_err(decode("summing ledger accounts"))?;
        let mut balances = BTreeMap::new();
        for r in &rows {
            let total = int(r, "total")?;
            if total != 0 {
                let key = (
                    text(r, "ledger_account")?,
                    uint(r, "account_id")?,
                    uint(r, "asset_symbol_id")?,
                );
                balances.insert(key, total);
            }
        }
        Ok(balances)
    }

    /// Owners of every account, by account id.
    pub async fn account_owners(&self) -> Result<BTreeMap<u32, String>, PersistenceError> {
        let rows = sqlx::query("SELECT account_id, owner FROM accounts")
            .fetch_all(self.pool())
            .await
            .map_err(decode("reading accounts"))?;
        rows.iter()
            .map(|r| Ok((uint(r, "account_id")?, text(r, "owner")?)))
            .collect()
    }

    /// Every symbol's code, by symbol id (`kuku history` names assets with them).
    pub async fn symbol_codes(&self) -> Result<BTreeMap<u32, String>, PersistenceError> {
        let rows = sqlx::query("SELECT symbol_id, code FROM symbols")
            .fetch_all(self.pool())
            .await
            .map_err(decode("reading symbols"))?;
        rows.iter()
            .map(|r| Ok((uint(r, "symbol_id")?, text(r, "code")?)))
            .collect()
    }

    /// Rows per table.
    pub async fn row_counts(&self) -> Result<RowCounts, PersistenceError> {
        let mut counts = [0u64; 8];
        let tables = [
            "symbols",
            "accounts",
            "balances",
            "positions",
            "ledger_transactions",
            "ledger_entries",
            "orders",
            "trades",
        ];
        for (count, table) in counts.iter_mut().zip(tables) {
            let sql = format!("SELECT COUNT(*) AS n FROM {table}");
            let row = sqlx::query(AssertSqlSafe(sql))
                .fetch_one(self.pool())
                .await
                .map_err(decode("counting rows"))?;
            *count = uint(&row, "n")?;
        }
        let [
            symbols,
            accounts,
            balances,
            positions,
            ledger_transactions,
            ledger_entries,
            orders,
            trades,
        ] = counts;
        Ok(RowCounts {
            symbols,
            accounts,
            balances,
            positions,
            ledger_transactions,
            ledger_entries,
            orders,
            trades,
        })
    }
}
