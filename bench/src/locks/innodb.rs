//! What the MariaDB server is and what its InnoDB locking did: the settings the comparison
//! depends on (read, never changed), the lock and fsync counters around each run, and two
//! deterministic probes of InnoDB's locks between two transactions.
//!
//! - **Settings**: version, `innodb_flush_log_at_trx_commit` (1: a commit is synced before it
//!   returns, the durability Kuku's `every-batch` matches), the default isolation, the lock
//!   wait timeout, deadlock detection, `max_connections`, binary log and its sync.
//! - **Counters** (`SHOW GLOBAL STATUS`, differences over a run): row lock waits and time,
//!   deadlocks, data fsyncs (the redo log's included). They are server-wide: anything else
//!   using the server during a run is counted too.
//! - **Probes**, each on its own two connections, steps in a fixed order; a step that must
//!   block runs in a task, and the probe waits (bounded) until InnoDB lists the lock wait in
//!   `information_schema.INNODB_LOCK_WAITS`, then records the locks involved:
//!   - *gap lock*: two transactions `SELECT ... FOR UPDATE` a position row that does not
//!     exist yet, then both `INSERT` it. At REPEATABLE READ both take a gap lock (gap locks
//!     never conflict with each other), each insert waits for the other's gap lock, and InnoDB
//!     breaks the cycle with a deadlock. At READ COMMITTED there is no gap lock: the first
//!     insert succeeds and the second waits for it, then fails with a duplicate key.
//!   - *lock upgrade*: two transactions read a balance `LOCK IN SHARE MODE`, then both
//!     `UPDATE` it: each needs the exclusive lock the other's shared lock blocks: a deadlock
//!     at any isolation level.
//!
//! **Invariants**: nothing here changes a server setting; the probes run in a database of
//! their own and drop it.
//!
//! **Performance**: a probe takes well under a second (each wait is observed after 150 ms).
//!
//! **Known limitations**: `INNODB_LOCKS` shows only locks someone waits for or holds against
//! a waiter; the probes record those, not every lock held. InnoDB serves these tables from a
//! cache it refreshes only after 100 ms without a reader, so the probe polls every 150 ms.

use anyhow::Context;
use serde::Serialize;
use sqlx::{Connection, Executor, MySqlConnection, Row};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// The server settings recorded with every report.
pub const SETTINGS: &[&str] = &[
    "version",
    "innodb_flush_log_at_trx_commit",
    "tx_isolation",
    "innodb_lock_wait_timeout",
    "innodb_deadlock_detect",
    "max_connections",
    "log_bin",
    "sync_binlog",
    "innodb_flush_method",
    "innodb_buffer_pool_size",
    "innodb_snapshot_isolation",
    "innodb_autoinc_lock_mode",
    "thread_handling",
];

/// The counters compared around each run.
pub const COUNTERS: &[&str] = &[
    "Innodb_row_lock_waits",
    "Innodb_row_lock_time",
    "Innodb_deadlocks",
    "Innodb_data_fsyncs",
];

/// How long `information_schema.INNODB_LOCKS` must go unread before InnoDB refreshes it
/// (its cache's minimum idle time is 100 ms).
const I_S_CACHE_IDLE: Duration = Duration::from_millis(150);

/// Reads `SETTINGS` from the server.
pub async fn settings(c: &mut MySqlConnection) -> anyhow::Result<BTreeMap<String, String>> {
    let list = SETTINGS
        .iter()
        .map(|s| format!("'{s}'"))
        .collect::<Vec<_>>()
        .join(",");
    let rows = c
        .fetch_all(sqlx::AssertSqlSafe(format!(
            "SHOW GLOBAL VARIABLES WHERE Variable_name IN ({list})"
        )))
        .await?;
    let mut out = BTreeMap::new();
    for r in rows {
        out.insert(r.try_get::<String, _>(0)?, r.try_get::<String, _>(1)?);
    }
    Ok(out)
}

/// Reads `COUNTERS` from the server.
pub async fn counters(c: &mut MySqlConnection) -> anyhow::Result<BTreeMap<String, i64>> {
    let list = COUNTERS
        .iter()
        .map(|s| format!("'{s}'"))
        .collect::<Vec<_>>()
        .join(",");
    let rows = c
        .fetch_all(sqlx::AssertSqlSafe(format!(
            "SHOW GLOBAL STATUS WHERE Variable_name IN ({list})"
        )))
        .await?;
    let mut out = BTreeMap::new();
    for r in rows {
        let value: String = r.try_get(1)?;
        out.insert(r.try_get::<String, _>(0)?, value.parse().unwrap_or(0));
    }
    Ok(out)
}

/// `after - before` per counter.
pub fn delta(
    before: &BTreeMap<String, i64>,
    after: &BTreeMap<String, i64>,
) -> BTreeMap<String, i64> {
    after
        .iter()
        .map(|(k, v)| (k.clone(), v - before.get(k).copied().unwrap_or(0)))
        .collect()
}

/// One lock as `INNODB_LOCKS` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LockSeen {
    pub mode: String,
    pub kind: String,
    pub index: String,
    pub data: String,
}

/// What a probe saw.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ProbeResult {
    pub probe: String,
    pub isolation: String,
    /// The locks involved in the first wait.
    pub locks: Vec<LockSeen>,
    /// Each transaction's last statement's outcome: `ok` or the MariaDB error number and text.
    pub first: String,
    pub second: String,
    /// `Innodb_deadlocks` over the probe.
    pub deadlocks: i64,
}

async fn connect(url: &str, isolation: &str) -> anyhow::Result<MySqlConnection> {
    let mut c = MySqlConnection::connect(url).await?;
    c.execute(sqlx::AssertSqlSafe(format!(
        "SET SESSION TRANSACTION ISOLATION LEVEL {isolation}"
    )))
    .await?;
    // A probe never waits long: each wait it causes is resolved by its next step.
    c.execute("SET SESSION innodb_lock_wait_timeout = 20")
        .await?;
    Ok(c)
}

fn outcome(r: &Result<sqlx::mysql::MySqlQueryResult, sqlx::Error>) -> String {
    match r {
        Ok(_) => "ok".into(),
        Err(sqlx::Error::Database(db)) => {
            let n = db
                .try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>()
                .map_or(0, |m| m.number());
            format!("error {n}: {}", db.message())
        }
        Err(e) => format!("error: {e}"),
    }
}

/// Waits (at most 10 s) until InnoDB reports a lock wait on `table_prefix`, and returns the
/// locks involved.
async fn wait_for_lock_wait(
    observer: &mut MySqlConnection,
    table_prefix: &str,
) -> anyhow::Result<Vec<LockSeen>> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let rows = sqlx::query(
            "SELECT l.lock_mode, l.lock_type, COALESCE(l.lock_index, ''), COALESCE(l.lock_data, '')
             FROM information_schema.INNODB_LOCK_WAITS w
             JOIN information_schema.INNODB_LOCKS l
               ON l.lock_id = w.requested_lock_id OR l.lock_id = w.blocking_lock_id
             WHERE l.lock_table LIKE ?
             ORDER BY l.lock_id",
        )
        .bind(format!("{table_prefix}%"))
        .fetch_all(&mut *observer)
        .await?;
        if !rows.is_empty() {
            let mut out = Vec::with_capacity(rows.len());
            for r in rows {
                out.push(LockSeen {
                    mode: r.try_get(0)?,
                    kind: r.try_get(1)?,
                    index: r.try_get(2)?,
                    data: r.try_get(3)?,
                });
            }
            return Ok(out);
        }
        if Instant::now() >= deadline {
            let trx = sqlx::query(
                "SELECT CONCAT(trx_id, ' ', trx_state, ' ', COALESCE(trx_query, '')) FROM information_schema.INNODB_TRX",
            )
            .fetch_all(&mut *observer)
            .await?;
            let mut trx: Vec<String> = trx.iter().filter_map(|r| r.try_get(0).ok()).collect();
            let locks = sqlx::query(
                "SELECT CONCAT(lock_id, ' ', lock_mode, ' ', lock_table, ' ', COALESCE(lock_data, '')) FROM information_schema.INNODB_LOCKS",
            )
            .fetch_all(&mut *observer)
            .await?;
            trx.extend(locks.iter().filter_map(|r| r.try_get(0).ok()));
            anyhow::bail!(
                "no lock wait on {table_prefix} appeared within 10 s; transactions: {trx:?}"
            );
        }
        // InnoDB refreshes the cache behind these tables only when it has not been read for
        // 100 ms: polling faster would read the same stale snapshot forever.
        tokio::time::sleep(I_S_CACHE_IDLE).await;
    }
}

/// Runs both probes at both isolation levels in a fresh database `database` (dropped after).
pub async fn probes(server_url: &str, database: &str) -> anyhow::Result<Vec<ProbeResult>> {
    let mut admin = MySqlConnection::connect(&format!("{server_url}/")).await?;
    admin
        .execute(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS `{database}`"
        )))
        .await?;
    admin
        .execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE `{database}`")))
        .await?;
    let url = format!("{server_url}/{database}");
    let result = async {
        let mut out = Vec::new();
        for isolation in ["REPEATABLE READ", "READ COMMITTED"] {
            out.push(gap_lock_probe(&url, database, isolation).await?);
            out.push(upgrade_probe(&url, database, isolation).await?);
        }
        anyhow::Ok(out)
    }
    .await;
    admin
        .execute(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS `{database}`"
        )))
        .await?;
    result
}

async fn gap_lock_probe(url: &str, database: &str, isolation: &str) -> anyhow::Result<ProbeResult> {
    let mut setup = MySqlConnection::connect(url).await?;
    setup.execute("DROP TABLE IF EXISTS positions").await?;
    setup
        .execute(
            "CREATE TABLE positions (account_id BIGINT NOT NULL, symbol VARCHAR(8) NOT NULL,
             qty BIGINT NOT NULL, PRIMARY KEY (account_id, symbol)) ENGINE = InnoDB",
        )
        .await?;
    // Accounts 1 and 3 hold shares; account 2's position does not exist yet.
    setup
        .execute("INSERT INTO positions VALUES (1, '005930', 10), (3, '005930', 10)")
        .await?;
    let before = counters(&mut setup).await?;
    let mut t1 = connect(url, isolation).await?;
    let mut t2 = connect(url, isolation).await?;
    let select = "SELECT qty FROM positions WHERE account_id = 2 AND symbol = '005930' FOR UPDATE";
    let insert = "INSERT INTO positions VALUES (2, '005930', 1)";
    t1.execute("BEGIN").await?;
    t2.execute("BEGIN").await?;
    t1.fetch_optional(select).await?;
    t2.fetch_optional(select).await?;
    let table = format!("`{database}`.`positions`");
    let (first, second, locks);
    if isolation == "REPEATABLE READ" {
        // T1's insert waits for T2's gap lock; T2's insert then closes the cycle.
        let waiting = tokio::spawn(async move {
            let r = t1.execute(insert).await;
            let o = outcome(&r);
            let _ = t1.execute("ROLLBACK").await;
            let _ = t1.close().await;
            o
        });
        locks = wait_for_lock_wait(&mut setup, &table).await?;
        let r2 = t2.execute(insert).await;
        second = outcome(&r2);
        let _ = t2.execute("ROLLBACK").await;
        let _ = t2.close().await;
        first = waiting.await.context("probe task")?;
    } else {
        // No gap locks: T1 inserts at once; T2's insert waits on T1's new row.
        first = outcome(&t1.execute(insert).await);
        let waiting = tokio::spawn(async move {
            let r = t2.execute(insert).await;
            let o = outcome(&r);
            let _ = t2.execute("ROLLBACK").await;
            let _ = t2.close().await;
            o
        });
        locks = wait_for_lock_wait(&mut setup, &table).await?;
        t1.execute("COMMIT").await?;
        let _ = t1.close().await;
        second = waiting.await.context("probe task")?;
    }
    let after = counters(&mut setup).await?;
    let _ = setup.close().await;
    Ok(ProbeResult {
        probe:
            "gap lock: SELECT ... FOR UPDATE of a missing row, then INSERT it, in two transactions"
                .into(),
        isolation: isolation.into(),
        locks,
        first,
        second,
        deadlocks: delta(&before, &after)
            .get("Innodb_deadlocks")
            .copied()
            .unwrap_or(0),
    })
}

async fn upgrade_probe(url: &str, database: &str, isolation: &str) -> anyhow::Result<ProbeResult> {
    let mut setup = MySqlConnection::connect(url).await?;
    setup.execute("DROP TABLE IF EXISTS cash").await?;
    setup
        .execute(
            "CREATE TABLE cash (account_id BIGINT NOT NULL PRIMARY KEY, amount BIGINT NOT NULL)
             ENGINE = InnoDB",
        )
        .await?;
    setup.execute("INSERT INTO cash VALUES (1, 1000)").await?;
    let before = counters(&mut setup).await?;
    let mut t1 = connect(url, isolation).await?;
    let mut t2 = connect(url, isolation).await?;
    let read = "SELECT amount FROM cash WHERE account_id = 1 LOCK IN SHARE MODE";
    let write = "UPDATE cash SET amount = amount - 100 WHERE account_id = 1";
    t1.execute("BEGIN").await?;
    t2.execute("BEGIN").await?;
    t1.fetch_one(read).await?;
    t2.fetch_one(read).await?;
    let waiting = tokio::spawn(async move {
        let r = t1.execute(write).await;
        let o = outcome(&r);
        let _ = t1.execute("ROLLBACK").await;
        o
    });
    let locks = wait_for_lock_wait(&mut setup, &format!("`{database}`.`cash`")).await?;
    let second = outcome(&t2.execute(write).await);
    let _ = t2.execute("ROLLBACK").await;
    let _ = t2.close().await;
    let first = waiting.await.context("probe task")?;
    let after = counters(&mut setup).await?;
    let _ = setup.close().await;
    Ok(ProbeResult {
        probe: "lock upgrade: SELECT ... LOCK IN SHARE MODE, then UPDATE, in two transactions"
            .into(),
        isolation: isolation.into(),
        locks,
        first,
        second,
        deadlocks: delta(&before, &after)
            .get("Innodb_deadlocks")
            .copied()
            .unwrap_or(0),
    })
}
