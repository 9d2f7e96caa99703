//! Writing a batch: its rows and the checkpoint, in one database transaction.
//!
//! Each table's rows go out as multi-row `INSERT` statements (upserts for read models:
//! `ON DUPLICATE KEY UPDATE` on MySQL, `ON CONFLICT DO UPDATE` on SQLite). A table's rows are
//! cut into chunks whose sizes are powers of two up to [`CHUNK_ROWS_MAX`] (1,000 rows = 512 +
//! 256 + 128 + 64 + 32 + 8), so each table has at most ten distinct statements: they stay
//! prepared in the connection's statement cache instead of being re-parsed for every odd
//! batch size. The checkpoint update is conditional on the previous seq (`WHERE seq = ?`):
//! if another writer moved it, the transaction is rolled back and the conflict reported.
//!
//! Every statement (begin, each chunk, the checkpoint update, commit) has its own deadline,
//! [`Statements::statement_timeout`]: a batch on a healthy database may take long in total
//! (a catch-up batch of 30,000 rows), but a statement whose reply does not come is abandoned
//! within the deadline ([`PersistenceError::Timeout`]).
//!
//! **Invariants**: a batch's rows and its checkpoint commit together or not at all; the
//! checkpoint only moves forward, by exactly the batch's commands.
//!
//! **Performance**: one round trip per chunk plus begin, checkpoint and commit; values are
//! bound (binary protocol on MySQL), never formatted into SQL.

use std::any::TypeId;
use std::time::Duration;

use rustc_hash::FxHashMap;
use sqlx::{AnyConnection, Row, SqlSafeStr, SqlStr};

use crate::error::PersistenceError;
use crate::failpoint;
use crate::rows::{Batch, OrderRow, TableRow, int};
use crate::url::Backend;

/// The largest number of rows one statement carries (a power of two). MySQL allows 65,535
/// placeholders per statement and SQLite 32,766; the widest table (orders) binds 17 columns.
pub const CHUNK_ROWS_MAX: usize = 512;

/// The checkpoint: the last command whose rows are all in the database.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Checkpoint {
    pub epoch: u64,
    pub seq: u64,
    /// The journal timestamp of that command (0 at genesis).
    pub ts_ns: u64,
}

/// Generated SQL text per (row type, rows per statement), built once; and how long one
/// statement may take.
#[derive(Debug)]
pub struct Statements {
    backend: Backend,
    sql: FxHashMap<(TypeId, usize), SqlStr>,
    statement_timeout: Duration,
}

impl Statements {
    /// Statements with a 5 s deadline each (see [`Statements::set_statement_timeout`]).
    pub fn new(backend: Backend) -> Statements {
        Statements {
            backend,
            sql: FxHashMap::default(),
            statement_timeout: Duration::from_secs(5),
        }
    }

    /// How long one statement may take before it is abandoned.
    pub fn set_statement_timeout(&mut self, timeout: Duration) {
        self.statement_timeout = timeout;
    }

    pub fn statement_timeout(&self) -> Duration {
        self.statement_timeout
    }

    fn insert_sql<R: TableRow + 'static>(&mut self, rows: usize) -> SqlStr {
        let backend = self.backend;
        self.sql
            .entry((TypeId::of::<R>(), rows))
            .or_insert_with(|| insert_statement::<R>(backend, rows))
            .clone()
    }
}

/// `INSERT INTO t (c1, ..) VALUES (?, ..), .. [upsert clause]` for `rows` rows.
fn insert_statement<R: TableRow>(backend: Backend, rows: usize) -> SqlStr {
    let columns = R::COLUMNS.join(", ");
    let tuple = format!("({})", vec!["?"; R::COLUMNS.len()].join(", "));
    let mut sql = format!("INSERT INTO {} ({columns}) VALUES ", R::TABLE);
    for i in 0..rows {
        if i > 0 {
            sql.push_str(", ");
        }
        sql.push_str(&tuple);
    }
    if let Some((keys, updated)) = R::UPSERT {
        match backend {
            Backend::MySql => {
                sql.push_str(" ON DUPLICATE KEY UPDATE ");
                let sets: Vec<String> = updated
                    .iter()
                    .map(|c| format!("{c} = VALUES({c})"))
                    .collect();
                sql.push_str(&sets.join(", "));
            }
            Backend::Sqlite => {
                sql.push_str(&format!(
                    " ON CONFLICT ({}) DO UPDATE SET ",
                    keys.join(", ")
                ));
                let sets: Vec<String> = updated
                    .iter()
                    .map(|c| format!("{c} = excluded.{c}"))
                    .collect();
                sql.push_str(&sets.join(", "));
            }
        }
    }
    sqlx::AssertSqlSafe(sql).into_sql_str()
}

/// Chunk sizes for `n` rows: as many [`CHUNK_ROWS_MAX`] as fit, then the binary digits of the
/// rest, largest first.
fn chunk_sizes(n: usize) -> impl Iterator<Item = usize> {
    let full = n / CHUNK_ROWS_MAX;
    let rest = n % CHUNK_ROWS_MAX;
    std::iter::repeat_n(CHUNK_ROWS_MAX, full).chain(
        (0..CHUNK_ROWS_MAX.trailing_zeros())
            .rev()
            .map(|bit| 1usize << bit)
            .filter(move |size| rest & size != 0),
    )
}

async fn write_rows<R: TableRow + 'static>(
    conn: &mut AnyConnection,
    statements: &mut Statements,
    rows: &[R],
) -> Result<(), PersistenceError> {
    let mut start = 0;
    for size in chunk_sizes(rows.len()) {
        let sql = statements.insert_sql::<R>(size);
        let mut query = sqlx::query(sql);
        for row in &rows[start..start + size] {
            query = row.bind(query);
        }
        let timeout = statements.statement_timeout;
        with_timeout(R::TABLE, timeout, async {
            query
                .execute(&mut *conn)
                .await
                .map_err(PersistenceError::db(R::TABLE))
        })
        .await?;
        start += size;
    }
    debug_assert_eq!(start, rows.len());
    Ok(())
}

/// Writes `batch` and moves the checkpoint from `previous.seq` to `batch.seq_last`, in one
/// transaction.
pub async fn write_batch(
    conn: &mut AnyConnection,
    statements: &mut Statements,
    batch: &Batch,
    epoch: u64,
    previous: Checkpoint,
) -> Result<Checkpoint, PersistenceError> {
    debug_assert!(!batch.is_empty());
    debug_assert_eq!(batch.seq_first, previous.seq + 1, "batches are contiguous");
    use sqlx::Connection;
    let timeout = statements.statement_timeout;
    let mut tx = with_timeout("beginning a batch", timeout, async {
        conn.begin()
            .await
            .map_err(PersistenceError::db("beginning a batch"))
    })
    .await?;
    write_rows(&mut tx, statements, &batch.symbols).await?;
    write_rows(&mut tx, statements, &batch.accounts).await?;
    write_rows(&mut tx, statements, &batch.trade_transactions).await?;
    write_rows(&mut tx, statements, batch.external_transactions.rows()).await?;
    write_rows(&mut tx, statements, &batch.entries).await?;
    write_rows(&mut tx, statements, &batch.trades).await?;
    write_rows(&mut tx, statements, batch.orders.rows()).await?;
    write_rows(&mut tx, statements, batch.balances.rows()).await?;
    write_rows(&mut tx, statements, batch.positions.rows()).await?;
    // A crash here leaves the rows uncommitted: the database rolls them back with the
    // transaction, and the checkpoint still names `previous`.
    failpoint::hit("writer::before_checkpoint");
    let checkpoint = Checkpoint {
        epoch,
        seq: batch.seq_last,
        ts_ns: batch.ts_last_ns,
    };
    let moved = with_timeout("moving the checkpoint", timeout, async {
        sqlx::query(
            "UPDATE kuku_checkpoint SET epoch = ?, seq = ?, ts_ns = ? WHERE id = 1 AND seq = ?",
        )
        .bind(int(checkpoint.epoch))
        .bind(int(checkpoint.seq))
        .bind(int(checkpoint.ts_ns))
        .bind(int(previous.seq))
        .execute(&mut *tx)
        .await
        .map_err(PersistenceError::db("moving the checkpoint"))
    })
    .await?;
    if moved.rows_affected() != 1 {
        return Err(PersistenceError::CheckpointConflict {
            expected: previous.seq,
        });
    }
    with_timeout("committing a batch", timeout, async {
        tx.commit()
            .await
            .map_err(PersistenceError::db("committing a batch"))
    })
    .await?;
    failpoint::hit("writer::after_commit");
    Ok(checkpoint)
}

/// Reads the checkpoint.
pub async fn read_checkpoint(conn: &mut AnyConnection) -> Result<Checkpoint, PersistenceError> {
    let row = sqlx::query("SELECT epoch, seq, ts_ns FROM kuku_checkpoint WHERE id = 1")
        .fetch_optional(&mut *conn)
        .await
        .map_err(PersistenceError::db("reading the checkpoint"))?
        .ok_or_else(|| PersistenceError::Corrupt("the checkpoint row is missing".into()))?;
    let get = |column: &str| -> Result<u64, PersistenceError> {
        let value: i64 = row
            .try_get(column)
            .map_err(PersistenceError::db("reading the checkpoint"))?;
        u64::try_from(value)
            .map_err(|_| PersistenceError::Corrupt(format!("checkpoint {column} = {value}")))
    };
    Ok(Checkpoint {
        epoch: get("epoch")?,
        seq: get("seq")?,
        ts_ns: get("ts_ns")?,
    })
}

/// The rows of every open order (the builder's live-order cache at the checkpoint).
pub async fn read_open_orders(conn: &mut AnyConnection) -> Result<Vec<OrderRow>, PersistenceError> {
    let rows = sqlx::query(
        "SELECT order_id, account_id, client_order_id, symbol_id, side, order_type, tif, price, \
         qty, leaves, filled, status, accepted_seq, accepted_ts_ns, updated_seq \
         FROM orders WHERE is_open = 1 ORDER BY order_id",
    )
    .fetch_all(&mut *conn)
    .await
    .map_err(PersistenceError::db("reading the open orders"))?;
    rows.iter().map(order_row).collect()
}

fn order_row(row: &sqlx::any::AnyRow) -> Result<OrderRow, PersistenceError> {
    let err = PersistenceError::db("decoding an order");
    let int = |c: &str| row.try_get::<i64, _>(c);
    let code = |c: &str, allowed: &[&'static str]| -> Result<&'static str, PersistenceError> {
        let text: String = row
            .try_get(c)
            .map_err(PersistenceError::db("decoding an order"))?;
        allowed
            .iter()
            .find(|a| **a == text)
            .copied()
            .ok_or_else(|| PersistenceError::Corrupt(format!("orders.{c} = {text:?}")))
    };
    let decode = || -> Result<OrderRow, sqlx::Error> {
        Ok(OrderRow {
            order_id: int("order_id")?,
            account_id: int("account_id")?,
            client_order_id: int("client_order_id")?,
            symbol_id: int("symbol_id")?,
            side: "",
            order_type: "",
            tif: "",
            price: int("price")?,
            qty: int("qty")?,
            leaves: int("leaves")?,
            filled: int("filled")?,
            cancelled: 0,
            status: "",
            is_open: true,
            cancel_reason: None,
            accepted_seq: int("accepted_seq")?,
            accepted_ts_ns: int("accepted_ts_ns")?,
            updated_seq: int("updated_seq")?,
        })
    };
    let mut order = decode().map_err(err)?;
    order.side = code("side", &["BUY", "SELL"])?;
    order.order_type = code("order_type", &["LIMIT", "MARKET"])?;
    order.tif = code("tif", &["DAY", "IOC", "FOK"])?;
    order.status = code("status", &["NEW", "PARTIALLY_FILLED"])?;
    Ok(order)
}

/// Runs `future` with a deadline; a timeout is an error naming `op`.
pub async fn with_timeout<T>(
    op: &'static str,
    timeout: Duration,
    future: impl Future<Output = Result<T, PersistenceError>>,
) -> Result<T, PersistenceError> {
    tokio::time::timeout(timeout, future)
        .await
        .unwrap_or(Err(PersistenceError::Timeout { op, timeout }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_are_powers_of_two_that_add_up() {
        for n in [0, 1, 7, 511, 512, 513, 1000, 5000] {
            let sizes: Vec<usize> = chunk_sizes(n).collect();
            assert_eq!(sizes.iter().sum::<usize>(), n, "{n}: {sizes:?}");
            assert!(
                sizes
                    .iter()
                    .all(|s| s.is_power_of_two() && *s <= CHUNK_ROWS_MAX)
            );
            assert!(sizes.windows(2).all(|w| w[0] >= w[1]));
        }
        assert_eq!(
            chunk_sizes(1000).collect::<Vec<_>>(),
            [512, 256, 128, 64, 32, 8]
        );
    }

    #[test]
    fn upserts_follow_the_dialect() {
        let mysql = insert_statement::<crate::rows::BalanceRow>(Backend::MySql, 2);
        assert_eq!(
            mysql.as_str(),
            "INSERT INTO balances (account_id, cash, cash_hold, updated_seq) VALUES (?, ?, ?, ?), \
             (?, ?, ?, ?) ON DUPLICATE KEY UPDATE cash = VALUES(cash), cash_hold = \
             VALUES(cash_hold), updated_seq = VALUES(updated_seq)"
        );
        let sqlite = insert_statement::<crate::rows::BalanceRow>(Backend::Sqlite, 1);
        assert!(sqlite.as_str().ends_with(
            "ON CONFLICT (account_id) DO UPDATE SET cash = excluded.cash, cash_hold = \
             excluded.cash_hold, updated_seq = excluded.updated_seq"
        ));
        let plain = insert_statement::<crate::rows::EntryRow>(Backend::MySql, 1);
        assert!(!plain.as_str().contains("UPDATE"));
    }
}
