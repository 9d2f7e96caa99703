//! An open query store: a connection pool, its dialect, and the schema migrations.
//!
//! One code path serves both databases through sqlx's `Any` driver: statements use `?`
//! placeholders and portable SQL, and the few dialect differences (upsert syntax, casting
//! sums) are chosen by [`Backend`]. Queries are checked at run time, so building the crate
//! never needs a database.
//!
//! Connecting does, in order: parse the URL; for MySQL, create the database if it does not
//! exist (the user must be allowed to); open the pool (SQLite: WAL journal, `synchronous =
//! NORMAL`, a busy timeout); run the migrations (sqlx's migrator: a `_sqlx_migrations` table,
//! checksums of applied migrations, a lock against concurrent migrators).
//!
//! **Invariants**: after [`Database::connect`] the schema is at the newest migration this
//! build knows, and the checkpoint row exists.
//!
//! **Known limitations**: MySQL tables use MariaDB's `utf8mb4_nopad_bin` collation (MySQL 8
//! would need `utf8mb4_0900_bin`); SQLite durability is `synchronous = NORMAL`, which can lose
//! the newest transactions on power loss but never splits one: the writer then re-derives them
//! from the journal.

use std::borrow::Cow;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::migrate::{MigrateDatabase, Migration, MigrationType, Migrator};
use sqlx::{Any, AnyPool, AssertSqlSafe, Executor, SqlSafeStr};

use crate::error::{PersistenceError, connect_hint};
use crate::url::{Backend, DatabaseUrl};

/// How to open a database.
#[derive(Clone, Debug)]
pub struct ConnectOptions {
    /// Pool size (the writer uses one connection; queries and reconcile the others).
    pub connections_max: u32,
    /// How long to wait for a connection (also the start-up connect timeout).
    pub connect_timeout: Duration,
    /// The longest a statement (a writer's batch) may take before it is abandoned. On MySQL /
    /// MariaDB every session also gets `idle_write_transaction_timeout` (MariaDB) of twice
    /// this, so the server ends a write transaction whose client went silent (a hung network)
    /// instead of holding its locks until `wait_timeout`.
    pub statement_timeout: Duration,
    /// Create the schema (run the migrations). Off for read-only tools on an existing store.
    pub migrate: bool,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        ConnectOptions {
            connections_max: 4,
            connect_timeout: Duration::from_secs(10),
            statement_timeout: Duration::from_secs(5),
            migrate: true,
        }
    }
}

/// An open query store.
#[derive(Clone, Debug)]
pub struct Database {
    pool: AnyPool,
    url: DatabaseUrl,
    statement_timeout: Duration,
}

impl Database {
    /// Connects (creating a missing MySQL database or SQLite file) and migrates the schema.
    pub async fn connect(
        url: &DatabaseUrl,
        options: &ConnectOptions,
    ) -> Result<Database, PersistenceError> {
        sqlx::any::install_default_drivers();
        let connect_error = |error: sqlx::Error| PersistenceError::Connect {
            url: url.redacted(),
            hint: connect_hint(&error),
            error,
        };
        match url.backend() {
            Backend::MySql => {
                let exists = tokio::time::timeout(
                    options.connect_timeout,
                    Any::database_exists(url.expose()),
                )
                .await
                .map_err(|_| connect_error(sqlx::Error::PoolTimedOut))?
                .map_err(connect_error)?;
                if !exists {
                    Any::create_database(url.expose())
                        .await
                        .map_err(connect_error)?;
                    tracing::info!(url = %url, "The database did not exist and was created.");
                }
            }
            Backend::Sqlite => {
                if let Some(dir) = url.sqlite_path().and_then(|p| p.parent())
                    && !dir.as_os_str().is_empty()
                {
                    std::fs::create_dir_all(dir).map_err(|e| {
                        connect_error(sqlx::Error::Io(std::io::Error::new(
                            e.kind(),
                            format!("cannot create {}: {e}", dir.display()),
                        )))
                    })?;
                }
            }
        }
        let connect_options: AnyConnectOptions = url.expose().parse().map_err(connect_error)?;
        let backend = url.backend();
        let idle_write_s = (options.statement_timeout.as_secs_f64() * 2.0)
            .ceil()
            .max(1.0) as u64;
        let pool = AnyPoolOptions::new()
            .max_connections(options.connections_max.max(1))
            .acquire_timeout(options.connect_timeout)
            .after_connect(move |conn, _meta| {
                Box::pin(async move {
                    match backend {
                        Backend::Sqlite => {
                            conn.execute(
                                "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
                                 PRAGMA busy_timeout = 10000;",
                            )
                            .await?;
                        }
                        Backend::MySql => {
                            // MariaDB ends a write transaction idle this long (its client hung
                            // or vanished without a FIN). MySQL has no such variable: the
                            // writer kills its abandoned connections itself (writer.rs).
                            let sql = format!(
                                "SET SESSION idle_write_transaction_timeout = {idle_write_s}"
                            );
                            let _ = conn.execute(sqlx::raw_sql(AssertSqlSafe(sql))).await;
                        }
                    }
                    Ok(())
                })
            })
            .connect_with(connect_options)
            .await
            .map_err(connect_error)?;
        let db = Database {
            pool,
            url: url.clone(),
            statement_timeout: options.statement_timeout,
        };
        if options.migrate {
            tokio::time::timeout(
                options.connect_timeout.max(options.statement_timeout),
                db.migrate(),
            )
            .await
            .unwrap_or(Err(PersistenceError::Timeout {
                op: "migrating the schema",
                timeout: options.connect_timeout.max(options.statement_timeout),
            }))?;
        }
        Ok(db)
    }

    /// The longest one statement may take (see [`ConnectOptions::statement_timeout`]).
    pub fn statement_timeout(&self) -> Duration {
        self.statement_timeout
    }

    /// Applies the migrations this build has and the database lacks.
    pub async fn migrate(&self) -> Result<(), PersistenceError> {
        migrator(self.backend())
            .run(&self.pool)
            .await
            .map_err(|error| PersistenceError::Migrate {
                url: self.url.redacted(),
                error,
            })
    }

    pub fn backend(&self) -> Backend {
        self.url.backend()
    }

    pub fn url(&self) -> &DatabaseUrl {
        &self.url
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Closes every connection.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// The checkpoint of the query store at `url` if there is one, without creating or migrating
/// anything: `None` when there is no database yet (no SQLite file, no MySQL database, no
/// schema). Start-up compares it with the journal before the journal is touched. The whole
/// look takes at most `timeout`.
pub async fn peek_checkpoint(
    url: &DatabaseUrl,
    timeout: Duration,
) -> Result<Option<crate::store::Checkpoint>, PersistenceError> {
    sqlx::any::install_default_drivers();
    let connect_error = |error: sqlx::Error| PersistenceError::Connect {
        url: url.redacted(),
        hint: connect_hint(&error),
        error,
    };
    let look = async {
        match url.backend() {
            Backend::Sqlite => {
                if url.sqlite_path().is_none_or(|p| !p.exists()) {
                    return Ok(None);
                }
            }
            Backend::MySql => {
                if !Any::database_exists(url.expose())
                    .await
                    .map_err(connect_error)?
                {
                    return Ok(None);
                }
            }
        }
        let options: AnyConnectOptions = url.expose().parse().map_err(connect_error)?;
        let pool = AnyPoolOptions::new()
            .max_connections(1)
            .acquire_timeout(timeout)
            .connect_with(options)
            .await
            .map_err(connect_error)?;
        let read = async {
            let mut conn = pool
                .acquire()
                .await
                .map_err(PersistenceError::db("connecting"))?;
            let exists = sqlx::query(match url.backend() {
                Backend::Sqlite => {
                    "SELECT COUNT(*) AS n FROM sqlite_master WHERE type = 'table' AND name = 'kuku_checkpoint'"
                }
                Backend::MySql => {
                    "SELECT COUNT(*) AS n FROM information_schema.tables WHERE table_schema = DATABASE() AND table_name = 'kuku_checkpoint'"
                }
            })
            .fetch_one(&mut *conn)
            .await
            .map_err(PersistenceError::db("looking for the checkpoint table"))?;
            let n: i64 = sqlx::Row::try_get(&exists, "n")
                .map_err(PersistenceError::db("looking for the checkpoint table"))?;
            if n == 0 {
                return Ok(None);
            }
            crate::store::read_checkpoint(&mut conn).await.map(Some)
        };
        let checkpoint = read.await;
        pool.close().await;
        checkpoint
    };
    tokio::time::timeout(timeout, look)
        .await
        .unwrap_or(Err(PersistenceError::Timeout {
            op: "reading the checkpoint at start-up",
            timeout,
        }))
}

/// The migrations of one dialect, embedded in the binary, oldest first.
pub fn migrator(backend: Backend) -> Migrator {
    let steps: [(i64, &'static str, &'static str); 3] = match backend {
        Backend::MySql => [
            (
                1,
                "query store",
                include_str!("../migrations/mysql/0001_query_store.sql"),
            ),
            (
                2,
                "order cancelled quantity",
                include_str!("../migrations/mysql/0002_order_cancelled.sql"),
            ),
            (
                3,
                "market data and reference data",
                include_str!("../migrations/mysql/0003_market_data.sql"),
            ),
        ],
        Backend::Sqlite => [
            (
                1,
                "query store",
                include_str!("../migrations/sqlite/0001_query_store.sql"),
            ),
            (
                2,
                "order cancelled quantity",
                include_str!("../migrations/sqlite/0002_order_cancelled.sql"),
            ),
            (
                3,
                "market data and reference data",
                include_str!("../migrations/sqlite/0003_market_data.sql"),
            ),
        ],
    };
    Migrator::with_migrations(
        steps
            .into_iter()
            .map(|(version, description, sql)| {
                Migration::new(
                    version,
                    Cow::Borrowed(description),
                    MigrationType::Simple,
                    sql.into_sql_str(),
                    false,
                )
            })
            .collect(),
    )
}

/// Runs a future to completion on a fresh current-thread runtime (tools and tests that are not
/// async themselves). Everything a future opens (pools, connections) belongs to that runtime:
/// use one `block_on` per piece of work, not one per call.
pub fn block_on<F: Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("the OS provides an event loop (epoll) for a runtime")
        .block_on(future)
}
