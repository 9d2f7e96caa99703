//! The database strategies on MariaDB (InnoDB): naive read-modify-write, pessimistic
//! `SELECT ... FOR UPDATE`, optimistic version column, a Redis lock with a fencing token, and
//! the atomic conditional `UPDATE`, each in its own database (`kuku_locks_<strategy>`).
//!
//! **Schema** (the same for every strategy):
//! - `balances(account_id, asset, amount, initial, version, fence)`, one row per account and
//!   asset (`KRW` or the symbol code): `amount` is what is still available to reserve.
//! - `orders(id, account_id, asset, reserved, client_key UNIQUE)`: one row per accepted
//!   order, written in the same transaction as the reservation.
//!
//! **Per order** (`?` bound; round trips in brackets):
//! - naive: `BEGIN; SELECT amount; UPDATE SET amount = <read - reserve>; INSERT; COMMIT` [5].
//!   No lock between the read and the write: two orders that read the same amount both
//!   write `read - reserve`, and one reservation is lost (at READ COMMITTED and at InnoDB's
//!   REPEATABLE READ alike: a plain SELECT is a snapshot read, the UPDATE overwrites).
//! - pessimistic: the same with `SELECT ... FOR UPDATE`: the row's X lock is held from the
//!   read to the commit [5].
//! - optimistic: `SELECT amount, version` (autocommit); `BEGIN; UPDATE ... SET amount = ?,
//!   version = version + 1 WHERE ... AND version = ?`; no row: someone else won, roll back,
//!   back off, read again, up to `retries_max` retries, then give up (a conflict) [5 per try].
//! - redis lock: take the Redis lock of the row (fencing token `f`); `UPDATE SET fence = f
//!   WHERE fence < f` (autocommit: registers the token before reading; no row: a newer holder
//!   came first, fenced); `BEGIN; SELECT amount; UPDATE SET amount = ? WHERE fence = f` (no
//!   row: a newer holder registered since, fenced); `INSERT; COMMIT`; release [8]. Without
//!   the fencing token (`redis-lock-unfenced`): no registration, a plain write, and a holder
//!   whose lease expired mid-work overwrites the next holder's reservation.
//! - atomic: `BEGIN; UPDATE SET amount = amount - ? WHERE ... AND amount >= ?` (no row: not
//!   enough); `INSERT; COMMIT` [4]. The check and the write are one statement under the row
//!   lock.
//!
//! Deadlocks (1213) roll the transaction back and are retried like a version conflict; a lock
//! wait timeout (1205) gives the order up. Connections come from a pool of at most
//! `pool_max`; a client waits for one inside its measured latency and keeps it for all the
//! attempts of its order (a retry does not queue for the pool again).
//!
//! **Invariants**: an order is accepted only after its `COMMIT` returned; every accepted order
//! has exactly one `orders` row (the check counts them).
//!
//! **Performance**: statements are prepared once per connection (sqlx's cache) and each costs
//! a round trip; no ping on checkout; the pool's connections are all opened before a run.
//!
//! **Known limitations**: no stored procedures and no multi-statement batches, which would
//! save round trips (and lock hold time) for every strategy alike.

use super::redis_lock::{Held, LockSettings, RedisLock};
use super::workload::{Asset, Conflict, Counters, Funding, Order, Outcome, Placer, Rng, backoff};
use super::{Hook, HookPoint};
use anyhow::Context;
use sqlx::mysql::{MySqlConnectOptions, MySqlDatabaseError, MySqlPool, MySqlPoolOptions};
use sqlx::pool::PoolConnection;
use sqlx::{Connection, Executor, MySql, Row};
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// MariaDB error numbers the strategies act on.
pub const ER_LOCK_DEADLOCK: u16 = 1213;
pub const ER_LOCK_WAIT_TIMEOUT: u16 = 1205;

/// How a database strategy reserves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SqlKind {
    NaiveReadCommitted,
    NaiveRepeatableRead,
    Pessimistic,
    Optimistic,
    RedisLock { fenced: bool },
    Atomic,
}

impl SqlKind {
    /// The session's isolation level.
    pub fn isolation(self) -> &'static str {
        match self {
            SqlKind::NaiveReadCommitted => "READ COMMITTED",
            _ => "REPEATABLE READ",
        }
    }
}

/// Retry, pool and lock settings of the database strategies.
#[derive(Clone, Copy, Debug)]
pub struct SqlSettings {
    /// Connections at most per pool (the server allows `max_connections`, shared with every
    /// other user of the server).
    pub pool_max: u32,
    /// Re-attempts of one order after a version conflict or a deadlock.
    pub retries_max: u32,
    pub backoff_base: Duration,
    pub backoff_cap: Duration,
    /// `SET SESSION innodb_lock_wait_timeout` (seconds); `None`: the server's.
    pub lock_wait_timeout_s: Option<u32>,
    pub lock: LockSettings,
}

impl Default for SqlSettings {
    fn default() -> Self {
        SqlSettings {
            pool_max: 100,
            retries_max: 10,
            backoff_base: Duration::from_micros(500),
            backoff_cap: Duration::from_millis(20),
            lock_wait_timeout_s: None,
            lock: LockSettings::default(),
        }
    }
}

/// Splits `mysql://user@host:port/db` into the server part and the database.
pub fn server_of(url: &str) -> &str {
    match url.rsplit_once('/') {
        Some((server, _)) if server.contains("://") && !server.ends_with('/') => server,
        _ => url,
    }
}

/// One strategy's database, created (empty) by [`SqlTarget::create`] and dropped by
/// [`SqlTarget::drop_database`].
pub struct SqlTarget {
    pub kind: SqlKind,
    pub database: String,
    server_url: String,
    pub settings: SqlSettings,
    pub redis: Option<Arc<RedisLock>>,
    pub hook: Option<Hook>,
}

impl SqlTarget {
    /// Creates database `database` on the server of `url` (dropping a leftover of that name)
    /// with the schema.
    pub async fn create(
        url: &str,
        database: &str,
        kind: SqlKind,
        settings: SqlSettings,
        redis: Option<Arc<RedisLock>>,
    ) -> anyhow::Result<SqlTarget> {
        anyhow::ensure!(
            database
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "database name {database:?}"
        );
        let server_url = server_of(url).to_owned();
        let mut admin = sqlx::MySqlConnection::connect(&format!("{server_url}/"))
            .await
            .with_context(|| {
                format!(
                    "cannot connect to MariaDB at {server_url} (start it, or set KUKU_MYSQL_URL)"
                )
            })?;
        admin
            .execute(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS `{database}`"
            )))
            .await?;
        admin
            .execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE `{database}`")))
            .await?;
        admin.close().await?;
        let target = SqlTarget {
            kind,
            database: database.to_owned(),
            server_url,
            settings,
            redis,
            hook: None,
        };
        let mut c = target.connection().await?;
        for statement in [
            "CREATE TABLE balances (
                account_id BIGINT NOT NULL,
                asset VARCHAR(8) NOT NULL,
                amount BIGINT NOT NULL,
                initial BIGINT NOT NULL,
                version BIGINT NOT NULL DEFAULT 0,
                fence BIGINT NOT NULL DEFAULT 0,
                PRIMARY KEY (account_id, asset)
            ) ENGINE = InnoDB",
            "CREATE TABLE orders (
                id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
                account_id BIGINT NOT NULL,
                asset VARCHAR(8) NOT NULL,
                reserved BIGINT NOT NULL,
                client_key BIGINT UNSIGNED NOT NULL,
                UNIQUE KEY by_client_key (client_key),
                KEY by_balance (account_id, asset)
            ) ENGINE = InnoDB",
        ] {
            c.execute(statement).await?;
        }
        c.close().await?;
        Ok(target)
    }

    fn options(&self) -> anyhow::Result<MySqlConnectOptions> {
        Ok(MySqlConnectOptions::from_str(&format!(
            "{}/{}",
            self.server_url, self.database
        ))?)
    }

    /// One connection outside any pool (setup and checks).
    pub async fn connection(&self) -> anyhow::Result<sqlx::MySqlConnection> {
        Ok(sqlx::MySqlConnection::connect_with(&self.options()?).await?)
    }

    /// Empties `orders` and gives `accounts` accounts their funding (ids from 1).
    pub async fn reset(&self, accounts: u32, funding: Funding) -> anyhow::Result<()> {
        let mut c = self.connection().await?;
        c.execute("TRUNCATE TABLE orders").await?;
        c.execute("DELETE FROM balances").await?;
        let rows: Vec<(u32, Asset)> = (0..accounts)
            .flat_map(|a| Asset::ALL.map(|asset| (a, asset)))
            .collect();
        for chunk in rows.chunks(500) {
            let mut sql =
                String::from("INSERT INTO balances (account_id, asset, amount, initial) VALUES ");
            for (i, (account, asset)) in chunk.iter().enumerate() {
                if i > 0 {
                    sql.push(',');
                }
                let v = funding.initial(*asset);
                sql.push_str(&format!(
                    "({}, '{}', {v}, {v})",
                    account + 1,
                    asset.sql_key()
                ));
            }
            c.execute(sqlx::AssertSqlSafe(sql)).await?;
        }
        c.close().await?;
        if let Some(redis) = &self.redis {
            redis.clear().await?;
        }
        Ok(())
    }

    /// A pool for `clients` clients: `min(clients, pool_max)` connections, opened now, each
    /// with the strategy's isolation level.
    pub async fn pool(&self, clients: u32) -> anyhow::Result<MySqlPool> {
        let size = clients.clamp(1, self.settings.pool_max.max(1));
        let isolation = self.kind.isolation();
        let lock_wait = self.settings.lock_wait_timeout_s;
        let pool = MySqlPoolOptions::new()
            .max_connections(size)
            .min_connections(size)
            // A waiting client is part of the measurement; 10 minutes only bounds a stuck run.
            .acquire_timeout(Duration::from_secs(600))
            // No ping per checkout: it would add a round trip to every order.
            .test_before_acquire(false)
            .after_connect(move |conn, _meta| {
                Box::pin(async move {
                    conn.execute(sqlx::AssertSqlSafe(format!(
                        "SET SESSION TRANSACTION ISOLATION LEVEL {isolation}"
                    )))
                    .await?;
                    if let Some(s) = lock_wait {
                        conn.execute(sqlx::AssertSqlSafe(format!(
                            "SET SESSION innodb_lock_wait_timeout = {s}"
                        )))
                        .await?;
                    }
                    Ok(())
                })
            })
            .connect_with(self.options()?)
            .await?;
        // min_connections are opened in the background: open them all before measuring.
        let mut held = Vec::with_capacity(size as usize);
        for _ in 0..size {
            held.push(pool.acquire().await?);
        }
        drop(held);
        Ok(pool)
    }

    /// Reads every balance row with its orders (see [`super::check`]).
    pub async fn ledger(&self) -> anyhow::Result<Vec<super::check::Row>> {
        let mut c = self.connection().await?;
        let rows = sqlx::query(
            "SELECT b.account_id, b.asset, b.initial, b.amount,
                    COUNT(o.id) AS orders_n, CAST(COALESCE(SUM(o.reserved), 0) AS SIGNED) AS reserved
             FROM balances b
             LEFT JOIN orders o ON o.account_id = b.account_id AND o.asset = b.asset
             GROUP BY b.account_id, b.asset, b.initial, b.amount
             ORDER BY b.account_id, b.asset",
        )
        .fetch_all(&mut c)
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let account_id: i64 = r.try_get("account_id")?;
            let asset: String = r.try_get("asset")?;
            let asset = match asset.as_str() {
                "KRW" => Asset::Cash,
                _ => Asset::Shares,
            };
            out.push(super::check::Row {
                account: (account_id - 1) as u32,
                asset,
                initial: r.try_get("initial")?,
                remaining: r.try_get("amount")?,
                reserved_recorded: r.try_get("reserved")?,
                orders_recorded: Some(r.try_get::<i64, _>("orders_n")? as u64),
            });
        }
        c.close().await?;
        Ok(out)
    }

    pub async fn drop_database(&self) -> anyhow::Result<()> {
        let mut admin = sqlx::MySqlConnection::connect(&format!("{}/", self.server_url)).await?;
        admin
            .execute(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS `{}`",
                self.database
            )))
            .await?;
        admin.close().await?;
        Ok(())
    }
}

/// A pool bound to a strategy: what the driver places orders on.
pub struct SqlPlacer {
    pub kind: SqlKind,
    pub pool: MySqlPool,
    pub settings: SqlSettings,
    pub redis: Option<Arc<RedisLock>>,
    pub hook: Option<Hook>,
    rng_seed: AtomicU64,
}

impl SqlPlacer {
    pub async fn new(target: &SqlTarget, clients: u32) -> anyhow::Result<SqlPlacer> {
        Ok(SqlPlacer {
            kind: target.kind,
            pool: target.pool(clients).await?,
            settings: target.settings,
            redis: target.redis.clone(),
            hook: target.hook.clone(),
            rng_seed: AtomicU64::new(0x5eed),
        })
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }

    async fn hook(&self, point: HookPoint, order: Order) {
        if let Some(h) = &self.hook {
            h(point, order).await;
        }
    }
}

/// One attempt's result.
enum Attempt {
    Done(Outcome),
    /// The version moved (optimistic): read again.
    Stale,
}

/// The MariaDB error number of a database error.
pub fn error_number(e: &anyhow::Error) -> Option<u16> {
    match e.downcast_ref::<sqlx::Error>()? {
        sqlx::Error::Database(db) => db
            .try_downcast_ref::<MySqlDatabaseError>()
            .map(|m| m.number()),
        _ => None,
    }
}

type Conn = PoolConnection<MySql>;

const SELECT_AMOUNT: &str = "SELECT amount FROM balances WHERE account_id = ? AND asset = ?";
const INSERT_ORDER: &str =
    "INSERT INTO orders (account_id, asset, reserved, client_key) VALUES (?, ?, ?, ?)";

impl SqlPlacer {
    async fn insert_order(
        tx: &mut sqlx::Transaction<'_, MySql>,
        order: &Order,
    ) -> anyhow::Result<()> {
        sqlx::query(INSERT_ORDER)
            .bind(order.account as i64 + 1)
            .bind(order.asset.sql_key())
            .bind(order.reserve())
            .bind(order.key())
            .execute(&mut **tx)
            .await?;
        Ok(())
    }

    /// Naive and pessimistic: read (locking or not), check, write the computed amount.
    async fn read_modify_write(
        &self,
        c: &mut Conn,
        order: &Order,
        for_update: bool,
    ) -> anyhow::Result<Attempt> {
        let (id, asset) = (order.account as i64 + 1, order.asset.sql_key());
        let mut tx = c.begin().await?;
        let sql = if for_update {
            "SELECT amount FROM balances WHERE account_id = ? AND asset = ? FOR UPDATE"
        } else {
            SELECT_AMOUNT
        };
        let amount: i64 = sqlx::query_scalar(sql)
            .bind(id)
            .bind(asset)
            .fetch_one(&mut *tx)
            .await?;
        self.hook(HookPoint::AfterRead, *order).await;
        if amount < order.reserve() {
            tx.rollback().await?;
            return Ok(Attempt::Done(Outcome::Insufficient));
        }
        sqlx::query("UPDATE balances SET amount = ? WHERE account_id = ? AND asset = ?")
            .bind(amount - order.reserve())
            .bind(id)
            .bind(asset)
            .execute(&mut *tx)
            .await?;
        Self::insert_order(&mut tx, order).await?;
        tx.commit().await?;
        Ok(Attempt::Done(Outcome::Accepted))
    }

    async fn optimistic(&self, c: &mut Conn, order: &Order) -> anyhow::Result<Attempt> {
        let (id, asset) = (order.account as i64 + 1, order.asset.sql_key());
        let row =
            sqlx::query("SELECT amount, version FROM balances WHERE account_id = ? AND asset = ?")
                .bind(id)
                .bind(asset)
                .fetch_one(&mut **c)
                .await?;
        let (amount, version): (i64, i64) = (row.try_get(0)?, row.try_get(1)?);
        self.hook(HookPoint::AfterRead, *order).await;
        if amount < order.reserve() {
            return Ok(Attempt::Done(Outcome::Insufficient));
        }
        let mut tx = c.begin().await?;
        let updated = sqlx::query(
            "UPDATE balances SET amount = ?, version = version + 1
             WHERE account_id = ? AND asset = ? AND version = ?",
        )
        .bind(amount - order.reserve())
        .bind(id)
        .bind(asset)
        .bind(version)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if updated != 1 {
            tx.rollback().await?;
            return Ok(Attempt::Stale);
        }
        Self::insert_order(&mut tx, order).await?;
        tx.commit().await?;
        Ok(Attempt::Done(Outcome::Accepted))
    }

    async fn atomic(&self, c: &mut Conn, order: &Order) -> anyhow::Result<Attempt> {
        let mut tx = c.begin().await?;
        let updated = sqlx::query(
            "UPDATE balances SET amount = amount - ?
             WHERE account_id = ? AND asset = ? AND amount >= ?",
        )
        .bind(order.reserve())
        .bind(order.account as i64 + 1)
        .bind(order.asset.sql_key())
        .bind(order.reserve())
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if updated != 1 {
            tx.rollback().await?;
            return Ok(Attempt::Done(Outcome::Insufficient));
        }
        Self::insert_order(&mut tx, order).await?;
        tx.commit().await?;
        Ok(Attempt::Done(Outcome::Accepted))
    }

    /// The work done under the Redis lock `held`.
    async fn under_redis_lock(
        &self,
        c: &mut Conn,
        order: &Order,
        held: &Held,
        fenced: bool,
    ) -> anyhow::Result<Attempt> {
        let (id, asset) = (order.account as i64 + 1, order.asset.sql_key());
        if fenced {
            // Register the token before reading: from now on a write with an older token
            // fails, and a newer holder's registration makes this holder's write fail.
            let registered = sqlx::query(
                "UPDATE balances SET fence = ? WHERE account_id = ? AND asset = ? AND fence < ?",
            )
            .bind(held.fence)
            .bind(id)
            .bind(asset)
            .bind(held.fence)
            .execute(&mut **c)
            .await?
            .rows_affected();
            if registered != 1 {
                return Ok(Attempt::Done(Outcome::Conflict(Conflict::Fenced)));
            }
        }
        let mut tx = c.begin().await?;
        let amount: i64 = sqlx::query_scalar(SELECT_AMOUNT)
            .bind(id)
            .bind(asset)
            .fetch_one(&mut *tx)
            .await?;
        self.hook(HookPoint::AfterRead, *order).await;
        if amount < order.reserve() {
            tx.rollback().await?;
            return Ok(Attempt::Done(Outcome::Insufficient));
        }
        let updated = if fenced {
            sqlx::query(
                "UPDATE balances SET amount = ? WHERE account_id = ? AND asset = ? AND fence = ?",
            )
            .bind(amount - order.reserve())
            .bind(id)
            .bind(asset)
            .bind(held.fence)
            .execute(&mut *tx)
            .await?
        } else {
            sqlx::query("UPDATE balances SET amount = ? WHERE account_id = ? AND asset = ?")
                .bind(amount - order.reserve())
                .bind(id)
                .bind(asset)
                .execute(&mut *tx)
                .await?
        }
        .rows_affected();
        if updated != 1 {
            tx.rollback().await?;
            return Ok(Attempt::Done(Outcome::Conflict(Conflict::Fenced)));
        }
        Self::insert_order(&mut tx, order).await?;
        tx.commit().await?;
        Ok(Attempt::Done(Outcome::Accepted))
    }

    async fn redis_locked(
        &self,
        c: &mut Conn,
        order: &Order,
        fenced: bool,
        rng: &mut Rng,
        counters: &mut Counters,
    ) -> anyhow::Result<Attempt> {
        let redis = self
            .redis
            .as_ref()
            .context("the redis strategy needs Redis")?;
        let row = format!("{}:{}", order.account + 1, order.asset.sql_key());
        let Some(held) = redis
            .acquire(&row, order.client, rng, &mut counters.lock_polls)
            .await?
        else {
            return Ok(Attempt::Done(Outcome::Conflict(Conflict::LockTimeout)));
        };
        self.hook(HookPoint::AfterLock, *order).await;
        let result = self.under_redis_lock(c, order, &held, fenced).await;
        if !redis.release(&held, order.client).await? {
            counters.leases_lost += 1;
        }
        result
    }

    async fn attempt(
        &self,
        c: &mut Conn,
        order: &Order,
        rng: &mut Rng,
        counters: &mut Counters,
    ) -> anyhow::Result<Attempt> {
        match self.kind {
            SqlKind::NaiveReadCommitted | SqlKind::NaiveRepeatableRead => {
                self.read_modify_write(c, order, false).await
            }
            SqlKind::Pessimistic => self.read_modify_write(c, order, true).await,
            SqlKind::Optimistic => self.optimistic(c, order).await,
            SqlKind::Atomic => self.atomic(c, order).await,
            SqlKind::RedisLock { fenced } => {
                self.redis_locked(c, order, fenced, rng, counters).await
            }
        }
    }
}

impl Placer for SqlPlacer {
    async fn place(&self, order: Order, counters: &mut Counters) -> anyhow::Result<Outcome> {
        let mut rng = Rng::new(self.rng_seed.fetch_add(1, Ordering::Relaxed) ^ order.key());
        // The connection is kept across retries: a retry does not queue for the pool again
        // behind every waiting client.
        let mut c = self.pool.acquire().await.context("pool acquire")?;
        let mut retries = 0u32;
        loop {
            let give_up = match self.attempt(&mut c, &order, &mut rng, counters).await {
                Ok(Attempt::Done(outcome)) => return Ok(outcome),
                Ok(Attempt::Stale) => Conflict::RetriesExhausted,
                Err(e) => match error_number(&e) {
                    Some(ER_LOCK_DEADLOCK) => {
                        counters.deadlocks += 1;
                        Conflict::Deadlock
                    }
                    Some(ER_LOCK_WAIT_TIMEOUT) => {
                        return Ok(Outcome::Conflict(Conflict::LockTimeout));
                    }
                    _ => return Err(e.context(format!("{:?} order {:?}", self.kind, order))),
                },
            };
            if retries >= self.settings.retries_max {
                return Ok(Outcome::Conflict(give_up));
            }
            retries += 1;
            counters.retries += 1;
            let wait = backoff(
                retries - 1,
                self.settings.backoff_base,
                self.settings.backoff_cap,
                &mut rng,
            );
            tokio::time::sleep(wait).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_server_part_of_a_url_drops_the_database() {
        assert_eq!(
            server_of("mysql://root@127.0.0.1:3306/test"),
            "mysql://root@127.0.0.1:3306"
        );
        assert_eq!(
            server_of("mysql://root@127.0.0.1:3306"),
            "mysql://root@127.0.0.1:3306"
        );
    }
}
