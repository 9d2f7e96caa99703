//! The node's query store: the database writer ([`kuku_persistence`]) attached to the output
//! ring, and `kuku reconcile`.
//!
//! Which database: `--database-url` / `KUKU_DATABASE_URL` / `database_url` in the config file
//! (`mysql://USER:PASSWORD@HOST:PORT/DATABASE` for MySQL or MariaDB); without one, an embedded
//! SQLite file at `DATA_DIR/kuku.sqlite`; `none` runs without a database (benchmarks).
//!
//! The writer is an output consumer like any other: its handler copies the events it stores
//! into a bounded queue and never blocks the ring (see `kuku_persistence::intake`). A database
//! that cannot be reached at start-up (bad URL, wrong credentials, server down) stops the
//! node's start with a clear error; one that goes away later only makes the writer fall
//! behind, and it catches up from the journal when the database is back.

use std::time::Duration;

use anyhow::Context;
use kuku_persistence::{
    ConnectOptions, Database, DatabaseUrl, ReconcileReport, Writer, WriterConfig,
};
use serde::{Deserialize, Serialize};

use crate::config::NodeConfig;
use crate::pipeline::{OutputHandler, OutputSlot};

/// The embedded database's file name under the data directory.
pub const SQLITE_FILE_NAME: &str = "kuku.sqlite";

/// `[database]` settings (the URL itself is `database_url`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseSettings {
    /// Intake queue capacity in events; when full the writer re-derives from the journal.
    pub intake_events_max: usize,
    /// Largest batch (one database transaction), in commands and in rows.
    pub batch_commands_max: usize,
    pub batch_rows_max: usize,
    /// Retry backoff cap after a failed batch.
    pub retry_backoff_max_ms: u64,
    /// How long shutdown waits for the writer to catch up.
    pub shutdown_timeout_s: u64,
    /// How long connecting (and waiting for a pooled connection) may take.
    pub connect_timeout_s: u64,
    /// How long one writer batch (or one `kuku history` query) may take before it is
    /// abandoned; a hung connection then counts a retry and clears `kuku_db_up`.
    pub statement_timeout_ms: u64,
    /// How long `kuku reconcile`'s reads (whole tables) may take.
    pub reconcile_timeout_s: u64,
}

impl Default for DatabaseSettings {
    fn default() -> Self {
        let w = WriterConfig::new(
            DatabaseUrl::sqlite_file(std::path::Path::new(SQLITE_FILE_NAME)),
            Default::default(),
            Default::default(),
        );
        DatabaseSettings {
            intake_events_max: w.intake_events_max,
            batch_commands_max: w.batch_commands_max,
            batch_rows_max: w.batch_rows_max,
            retry_backoff_max_ms: w.retry_backoff_max.as_millis() as u64,
            shutdown_timeout_s: w.shutdown_timeout.as_secs(),
            connect_timeout_s: w.connect.connect_timeout.as_secs(),
            statement_timeout_ms: w.statement_timeout.as_millis() as u64,
            reconcile_timeout_s: 600,
        }
    }
}

/// The database a node with `config` writes to; `None` when it runs without one.
pub fn database_url(config: &NodeConfig) -> anyhow::Result<Option<DatabaseUrl>> {
    match config.database_url.as_deref().map(str::trim) {
        Some("none" | "off") => Ok(None),
        Some(url) if !url.is_empty() => Ok(Some(DatabaseUrl::parse(url)?)),
        _ => Ok(Some(DatabaseUrl::sqlite_file(
            &std::path::absolute(&config.data_dir)
                .unwrap_or_else(|_| config.data_dir.clone())
                .join(SQLITE_FILE_NAME),
        ))),
    }
}

/// The writer's configuration for a node.
pub fn writer_config(config: &NodeConfig, url: DatabaseUrl) -> WriterConfig {
    let s = &config.database;
    let mut w = WriterConfig::new(url, config.journal_dir(), config.engine);
    w.intake_events_max = s.intake_events_max.max(1);
    w.batch_commands_max = s.batch_commands_max.max(1);
    w.batch_rows_max = s.batch_rows_max.max(1);
    w.retry_backoff_max = Duration::from_millis(s.retry_backoff_max_ms.max(1));
    w.shutdown_timeout = Duration::from_secs(s.shutdown_timeout_s);
    w.connect.connect_timeout = Duration::from_secs(s.connect_timeout_s.max(1));
    w.statement_timeout = statement_timeout(config);
    w.connect.statement_timeout = w.statement_timeout;
    w
}

fn statement_timeout(config: &NodeConfig) -> Duration {
    Duration::from_millis(config.database.statement_timeout_ms.max(1))
}

/// Runs `future` with the deadline `timeout`; a timeout is an error naming `op`.
async fn timed<T>(
    op: &'static str,
    timeout: Duration,
    future: impl Future<Output = Result<T, kuku_persistence::PersistenceError>>,
) -> anyhow::Result<T> {
    match tokio::time::timeout(timeout, future).await {
        Ok(result) => Ok(result?),
        Err(_) => anyhow::bail!("the database did not answer {op} within {timeout:?}"),
    }
}

/// Starts the writer for a node whose journal ends at `journal_seq_last`, and the output
/// handler that feeds it; `None` when the node runs without a database. `epoch` is the node's
/// replication epoch at start-up (0 without replication), stored with every checkpoint; a
/// promotion while running is picked up at the next start.
pub fn start_writer(
    config: &NodeConfig,
    journal_seq_last: u64,
    epoch: u64,
) -> anyhow::Result<Option<(Writer, OutputHandler)>> {
    let Some(url) = database_url(config)? else {
        tracing::info!("No database: the node runs without a query store (database_url = none).");
        return Ok(None);
    };
    let mut writer_config = writer_config(config, url);
    writer_config.epoch = epoch;
    let (writer, mut handle) = Writer::start(writer_config, journal_seq_last)?;
    let handler: OutputHandler = Box::new(move |slot: &OutputSlot, _, _| {
        handle.offer(slot.seq, slot.ts, &slot.event, slot.last);
    });
    Ok(Some((writer, handler)))
}

/// The checkpoint of the node's query store, read before the journal is opened (see
/// `Node::start`): the database's URL (password masked) and its checkpoint; `None` without a
/// database or before the first write.
pub fn peek_checkpoint(
    config: &NodeConfig,
) -> anyhow::Result<Option<(String, kuku_persistence::Checkpoint)>> {
    let Some(url) = database_url(config)? else {
        return Ok(None);
    };
    let timeout = Duration::from_secs(config.database.connect_timeout_s.max(1));
    let checkpoint =
        kuku_persistence::block_on(kuku_persistence::db::peek_checkpoint(&url, timeout))?;
    Ok(checkpoint.map(|c| (url.redacted(), c)))
}

/// `kuku reconcile`: the database against the engine rebuilt from the node's journal.
pub fn reconcile(config: &NodeConfig) -> anyhow::Result<ReconcileReport> {
    let url =
        database_url(config)?.context("database_url is none: there is no database to reconcile")?;
    if let Some(path) = url.sqlite_path()
        && !path.exists()
    {
        anyhow::bail!(
            "no database at {}: the node never wrote one",
            path.display()
        );
    }
    let journal = config.journal_dir();
    let engine = kuku_journal::meta_file::read_config(&journal)
        .with_context(|| format!("cannot read the engine config of {}", journal.display()))?;
    kuku_persistence::block_on(async {
        let options = ConnectOptions {
            connections_max: 2,
            connect_timeout: Duration::from_secs(config.database.connect_timeout_s.max(1)),
            statement_timeout: statement_timeout(config),
            migrate: false,
        };
        let db = timed(
            "connecting",
            options.connect_timeout,
            Database::connect(&url, &options),
        )
        .await?;
        let timeout = Duration::from_secs(config.database.reconcile_timeout_s.max(1));
        let report = timed(
            "reconcile's reads",
            timeout,
            kuku_persistence::reconcile(&db, &journal, &engine),
        )
        .await;
        db.close().await;
        report
    })
}

/// What `kuku history` lists.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum HistoryKind {
    /// Ledger transactions with their entries.
    Transactions,
    Orders,
    Trades,
    /// All three.
    All,
}

/// `kuku history`: an account's ledger transactions, orders and trades, read from the query
/// store (never from the engine), oldest first, `limit` of each after the given ids. The
/// first line names the checkpoint: the history is complete up to that command.
pub fn history(
    config: &NodeConfig,
    account: u32,
    kind: HistoryKind,
    after: u64,
    limit: u32,
    out: &mut dyn std::io::Write,
) -> anyhow::Result<()> {
    let url =
        database_url(config)?.context("database_url is none: there is no database to read")?;
    if let Some(path) = url.sqlite_path()
        && !path.exists()
    {
        anyhow::bail!(
            "no database at {}: the node never wrote one",
            path.display()
        );
    }
    let account_id = kuku_engine::AccountId(account);
    kuku_persistence::block_on(async {
        let options = ConnectOptions {
            connections_max: 1,
            connect_timeout: Duration::from_secs(config.database.connect_timeout_s.max(1)),
            statement_timeout: statement_timeout(config),
            migrate: false,
        };
        let each = options.statement_timeout;
        let db = timed(
            "connecting",
            options.connect_timeout,
            Database::connect(&url, &options),
        )
        .await?;
        let checkpoint = timed("reading the checkpoint", each, db.checkpoint()).await?;
        writeln!(
            out,
            "account {account}: history from {url} (complete up to seq {}, epoch {})",
            checkpoint.seq, checkpoint.epoch
        )?;
        let codes = db.symbol_codes().await?;
        let asset = |id: u32| asset_name(&codes, id);
        let all = kind == HistoryKind::All;
        if all || kind == HistoryKind::Transactions {
            let txs = timed(
                "reading transactions",
                each,
                db.account_transactions(account_id, after, limit),
            )
            .await?;
            writeln!(out, "\nledger transactions ({}):", txs.len())?;
            for t in &txs {
                write!(
                    out,
                    "  tx {} {} {} seq {} asset {} amount {}",
                    t.tx_id,
                    t.tx_type,
                    t.status,
                    t.created_seq,
                    asset(t.asset_symbol_id),
                    t.amount
                )?;
                if let Some(r) = &t.external_ref {
                    write!(out, " ref {r}")?;
                }
                if let Some(id) = t.trade_id {
                    write!(out, " trade {id}")?;
                }
                if let Some(id) = t.reverses_tx_id {
                    write!(out, " reverses tx {id}")?;
                }
                if let Some(id) = t.reversed_by_tx_id {
                    write!(out, " reversed by tx {id}")?;
                }
                writeln!(out)?;
                for e in &t.entries {
                    writeln!(
                        out,
                        "      {:>2} {:<15} account {:<6} asset {:<6} {:>14} {}",
                        e.line_no,
                        e.ledger_account,
                        e.account_id,
                        asset(e.asset_symbol_id),
                        e.amount,
                        e.line_kind
                    )?;
                }
            }
        }
        if all || kind == HistoryKind::Orders {
            let orders = timed(
                "reading orders",
                each,
                db.account_orders(account_id, after, limit),
            )
            .await?;
            writeln!(out, "\norders ({}):", orders.len())?;
            for o in &orders {
                write!(
                    out,
                    "  order {} (client {}) symbol {} {} {} {}",
                    o.order_id,
                    o.client_order_id,
                    asset(o.symbol_id),
                    o.side,
                    o.order_type,
                    o.tif
                )?;
                if o.order_type != "MARKET" {
                    write!(out, " price {}", o.price)?;
                }
                write!(
                    out,
                    " qty {} filled {} leaves {} cancelled {} {} seq {}..{}",
                    o.qty, o.filled, o.leaves, o.cancelled, o.status, o.accepted_seq, o.updated_seq
                )?;
                if let Some(reason) = &o.cancel_reason {
                    write!(out, " ({reason})")?;
                }
                writeln!(out)?;
            }
        }
        if all || kind == HistoryKind::Trades {
            let trades = timed(
                "reading trades",
                each,
                db.account_trades(account_id, after, limit),
            )
            .await?;
            writeln!(out, "\ntrades ({}):", trades.len())?;
            for t in &trades {
                let side = if t.taker_account_id == account {
                    format!("taker {}", t.taker_side)
                } else {
                    "maker".to_owned()
                };
                writeln!(
                    out,
                    "  trade {} seq {} symbol {} {} x {} ({side}) buyer fee {} seller fee {} tax {}+{} tx {}",
                    t.trade_id,
                    t.seq,
                    asset(t.symbol_id),
                    t.qty,
                    t.price,
                    t.buyer_commission,
                    t.seller_commission,
                    t.securities_tax,
                    t.rural_tax,
                    t.tx_id
                )?;
            }
        }
        db.close().await;
        Ok(())
    })
}

/// An asset as `kuku history` prints it: `KRW`, or the symbol's code (`005930`); an id the
/// store does not know (it cannot be, the symbol row is written before any use of it) as
/// `symbol#ID`.
fn asset_name(codes: &std::collections::BTreeMap<u32, String>, id: u32) -> String {
    if id == 0 {
        return "KRW".to_owned();
    }
    codes
        .get(&id)
        .cloned()
        .unwrap_or_else(|| format!("symbol#{id}"))
}
