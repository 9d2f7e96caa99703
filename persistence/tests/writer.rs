//! The writer against real databases: MariaDB (a database of its own per test, on the server at
//! KUKU_MYSQL_URL) and SQLite, the same tests on both.
//!
//! Each test generates a deterministic flow (every table exercised), writes it as a journal,
//! and offers its events to a writer as the node's output ring would; the database must then
//! hold exactly the flow's rows (counts per table from the events) and reconcile with the
//! engine rebuilt from the journal.

use std::path::Path;
use std::process::Command as Process;
use std::time::Duration;

use kuku_engine::{AccountId, ExternalRef};
use kuku_persistence::testkit::flow::Flow;
use kuku_persistence::testkit::{TestDatabase, block_on};
use kuku_persistence::{
    ConnectOptions, Database, DatabaseUrl, PersistenceError, Writer, WriterConfig, WriterHandle,
    reconcile,
};

macro_rules! on_both_databases {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[test]
            fn mysql() {
                super::$name(kuku_persistence::testkit::TestDatabase::mysql());
            }
            #[test]
            fn sqlite() {
                super::$name(kuku_persistence::testkit::TestDatabase::sqlite());
            }
        }
    )*};
}

on_both_databases!(
    writes_every_row_once_and_reconciles_with_the_engine,
    a_restart_resumes_after_the_checkpoint_and_rederives_the_gap_from_the_journal,
    a_full_intake_drops_events_and_the_writer_rederives_them_from_the_journal,
    heavy_a_crash_mid_batch_rolls_back_and_the_restart_writes_each_row_once,
    heavy_a_crash_right_after_a_commit_writes_nothing_twice,
    the_database_refuses_a_second_transaction_with_the_same_external_reference,
    reconcile_reports_a_tampered_balance_and_a_lost_order,
    a_store_of_the_first_schema_gains_each_orders_cancelled_quantity,
    reconcile_finds_a_deleted_trade_and_an_altered_closed_order,
);

fn writer_config(db: &DatabaseUrl, journal: &Path, flow: &Flow) -> WriterConfig {
    let mut c = WriterConfig::new(db.clone(), journal.to_owned(), flow.config);
    c.batch_commands_max = 256;
    c.retry_backoff_max = Duration::from_millis(200);
    c
}

/// Offers the events of commands `after < seq <= until`, like the output ring would.
fn offer(handle: &mut WriterHandle, flow: &Flow, after: u64, until: u64) {
    for (seq, ts, event, last) in flow.slots() {
        if seq > after && seq <= until {
            handle.offer(seq, ts, event, last);
        }
    }
}

/// The database holds exactly the flow's rows up to its checkpoint and matches the engine.
fn assert_complete(url: &DatabaseUrl, journal: &Path, flow: &Flow) {
    block_on(async {
        let db = Database::connect(url, &ConnectOptions::default())
            .await
            .unwrap();
        let checkpoint = db.checkpoint().await.unwrap();
        assert_eq!(checkpoint.seq, flow.seq_last());
        assert_eq!(db.row_counts().await.unwrap(), flow.expected_rows());
        let report = reconcile(&db, journal, &flow.config).await.unwrap();
        assert!(report.is_clean(), "{report}");
        assert!(report.compared.open_orders > 0 && report.compared.positions > 0);
        db.close().await;
    });
}

fn setup(seed: u64, commands: usize) -> (tempfile::TempDir, Flow) {
    let dir = tempfile::tempdir().unwrap();
    let flow = Flow::generate(seed, commands);
    flow.write_journal(&dir.path().join("journal")).unwrap();
    (dir, flow)
}

fn writes_every_row_once_and_reconciles_with_the_engine(test_db: TestDatabase) {
    let (dir, flow) = setup(7, 3_000);
    let journal = dir.path().join("journal");
    let (writer, mut handle) =
        Writer::start(writer_config(test_db.url(), &journal, &flow), 0).unwrap();
    offer(&mut handle, &flow, 0, u64::MAX);
    assert!(writer.wait_checkpoint(flow.seq_last(), Duration::from_secs(60)));
    let status = writer.shutdown();
    assert_eq!(status.events_dropped, 0);
    assert_eq!(
        status.commands_rederived, 0,
        "everything came through the intake"
    );
    assert!(status.batches_committed > 1);
    assert_complete(test_db.url(), &journal, &flow);

    // The history of an account, from the database alone.
    block_on(async {
        let db = Database::connect(test_db.url(), &ConnectOptions::default())
            .await
            .unwrap();
        let account = AccountId(3);
        let txs = db.account_transactions(account, 0, 10_000).await.unwrap();
        assert!(txs.iter().any(|t| t.tx_type == "DEPOSIT"));
        assert!(txs.iter().any(|t| t.tx_type == "TRADE"));
        assert!(txs.windows(2).all(|w| w[0].tx_id < w[1].tx_id));
        for tx in &txs {
            if tx.status == "POSTED" || tx.status == "REVERSED" {
                assert!(!tx.entries.is_empty(), "{tx:?}");
            }
            let sum: i64 = tx
                .entries
                .iter()
                .filter(|e| e.asset_symbol_id == 0)
                .map(|e| e.amount)
                .sum();
            assert_eq!(sum, 0, "KRW lines of {} balance", tx.tx_id);
            let touches = tx.account_id == 3 || tx.entries.iter().any(|e| e.account_id == 3);
            assert!(touches, "{tx:?}");
        }
        let page = db
            .account_transactions(account, txs[4].tx_id, 3)
            .await
            .unwrap();
        assert_eq!(
            page.iter().map(|t| t.tx_id).collect::<Vec<_>>(),
            txs[5..8].iter().map(|t| t.tx_id).collect::<Vec<_>>()
        );
        let orders = db.account_orders(account, 0, 10_000).await.unwrap();
        assert!(orders.len() > 10 && orders.iter().all(|o| o.account_id == 3));
        let trades = db.account_trades(account, 0, 10_000).await.unwrap();
        assert!(!trades.is_empty());
        assert!(
            trades
                .iter()
                .all(|t| t.maker_account_id == 3 || t.taker_account_id == 3)
        );
        let fund = ExternalRef::new("fund-2").unwrap();
        let deposit = db
            .external_transaction(account, &fund)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (deposit.tx_type.as_str(), deposit.amount),
            ("DEPOSIT", 5_000_000_000)
        );
        assert_eq!(deposit.entries.len(), 2);
        db.close().await;
    });
}

fn a_restart_resumes_after_the_checkpoint_and_rederives_the_gap_from_the_journal(
    test_db: TestDatabase,
) {
    let (dir, flow) = setup(11, 3_000);
    let journal = dir.path().join("journal");
    let (first_stop, restart_at) = (flow.seq_last() / 3, 2 * flow.seq_last() / 3);
    let (writer, mut handle) =
        Writer::start(writer_config(test_db.url(), &journal, &flow), 0).unwrap();
    offer(&mut handle, &flow, 0, first_stop);
    drop(handle);
    assert_eq!(writer.shutdown().checkpoint_seq, first_stop);

    // The node restarts at `restart_at` (its journal went on without a writer): the writer
    // re-derives first_stop+1..=restart_at from the journal, then takes the live events.
    let (writer, mut handle) =
        Writer::start(writer_config(test_db.url(), &journal, &flow), restart_at).unwrap();
    offer(&mut handle, &flow, restart_at, u64::MAX);
    assert!(writer.wait_checkpoint(flow.seq_last(), Duration::from_secs(60)));
    let status = writer.shutdown();
    assert_eq!(status.commands_rederived, restart_at - first_stop);
    assert_complete(test_db.url(), &journal, &flow);
}

fn a_full_intake_drops_events_and_the_writer_rederives_them_from_the_journal(
    test_db: TestDatabase,
) {
    let (dir, flow) = setup(13, 4_000);
    let journal = dir.path().join("journal");
    let mut config = writer_config(test_db.url(), &journal, &flow);
    config.intake_events_max = 16;
    config.batch_commands_max = 64;
    let (writer, mut handle) = Writer::start(config, 0).unwrap();
    offer(&mut handle, &flow, 0, u64::MAX);
    assert!(writer.wait_checkpoint(flow.seq_last(), Duration::from_secs(90)));
    let status = writer.shutdown();
    assert!(
        status.overflows > 0 && status.events_dropped > 0,
        "{status}"
    );
    assert!(status.commands_rederived > 0, "{status}");
    assert_complete(test_db.url(), &journal, &flow);
}

const CHILD_DIR_ENV: &str = "KUKU_TEST_WRITER_CHILD_DIR";
const CHILD_URL_ENV: &str = "KUKU_TEST_WRITER_CHILD_URL";

/// The child of the crash tests: a writer over the flow's journal, killed by its failpoint.
#[test]
fn crash_child_entry() {
    let (Ok(dir), Ok(url)) = (std::env::var(CHILD_DIR_ENV), std::env::var(CHILD_URL_ENV)) else {
        return; // only runs as the child of a crash test
    };
    let flow = Flow::generate(17, 2_000);
    let url = DatabaseUrl::parse(&url).unwrap();
    let journal = Path::new(&dir).join("journal");
    let (writer, mut handle) = Writer::start(writer_config(&url, &journal, &flow), 0).unwrap();
    offer(&mut handle, &flow, 0, u64::MAX);
    writer.wait_checkpoint(flow.seq_last(), Duration::from_secs(60));
    // Not reached: the armed failpoint kills the process first.
    std::process::exit(3);
}

/// Runs the child with `failpoint` armed; returns its exit status.
fn crash_child(dir: &Path, url: &DatabaseUrl, failpoint: &str) -> std::process::ExitStatus {
    Process::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "crash_child_entry",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_DIR_ENV, dir)
        .env(CHILD_URL_ENV, url.expose())
        .env(kuku_persistence::failpoint::FAILPOINT_ENV, failpoint)
        .status()
        .unwrap()
}

fn crash_then_restart(test_db: TestDatabase, failpoint: &str) {
    use std::os::unix::process::ExitStatusExt;
    let (dir, flow) = setup(17, 2_000);
    let journal = dir.path().join("journal");
    let status = crash_child(dir.path(), test_db.url(), failpoint);
    assert_eq!(
        status.signal(),
        Some(libc::SIGKILL),
        "the child died by its failpoint: {status:?}"
    );
    block_on(async {
        let db = Database::connect(test_db.url(), &ConnectOptions::default())
            .await
            .unwrap();
        let checkpoint = db.checkpoint().await.unwrap();
        assert!(
            checkpoint.seq > 0 && checkpoint.seq < flow.seq_last(),
            "{checkpoint:?}"
        );
        // Exactly the rows of the commands up to the checkpoint: nothing of the killed batch.
        assert_eq!(
            db.row_counts().await.unwrap(),
            flow.expected_rows_until(checkpoint.seq)
        );
        db.close().await;
    });
    // The node restarts with its whole journal: the writer re-derives the rest.
    let (writer, handle) = Writer::start(
        writer_config(test_db.url(), &journal, &flow),
        flow.seq_last(),
    )
    .unwrap();
    assert!(writer.wait_checkpoint(flow.seq_last(), Duration::from_secs(60)));
    drop(handle);
    let status = writer.shutdown();
    assert_eq!(
        status.retries, 0,
        "no row was written twice (a duplicate key would fail)"
    );
    assert_complete(test_db.url(), &journal, &flow);
}

fn heavy_a_crash_mid_batch_rolls_back_and_the_restart_writes_each_row_once(test_db: TestDatabase) {
    crash_then_restart(test_db, "writer::before_checkpoint=3");
}

fn heavy_a_crash_right_after_a_commit_writes_nothing_twice(test_db: TestDatabase) {
    crash_then_restart(test_db, "writer::after_commit=4");
}

fn the_database_refuses_a_second_transaction_with_the_same_external_reference(
    test_db: TestDatabase,
) {
    block_on(async {
        let db = Database::connect(test_db.url(), &ConnectOptions::default())
            .await
            .unwrap();
        let insert = "INSERT INTO ledger_transactions (tx_id, tx_type, status, account_id, \
            asset_symbol_id, amount, external_ref, created_seq, created_ts_ns, updated_seq) \
            VALUES (?, 'DEPOSIT', 'POSTED', ?, 0, 100, ?, 1, 1, 1)";
        let run = |tx: i64, account: i64, r: &'static str| {
            sqlx::query(insert)
                .bind(tx)
                .bind(account)
                .bind(r)
                .execute(db.pool())
        };
        run(1, 1, "bank-1").await.unwrap();
        run(2, 2, "bank-1")
            .await
            .expect("another account may use the same reference");
        run(3, 1, "BANK-1")
            .await
            .expect("references compare byte for byte");
        run(4, 1, "bank-1 ").await.expect("trailing spaces count");
        let e = run(5, 1, "bank-1").await.unwrap_err();
        assert!(
            e.as_database_error()
                .is_some_and(|d| d.is_unique_violation()),
            "{e}"
        );
        db.close().await;
    });
}

/// A store written before orders had a `cancelled` column: the migration derives it from the
/// rows (a closed order's size minus what filled), so history reads the same either way.
fn a_store_of_the_first_schema_gains_each_orders_cancelled_quantity(test_db: TestDatabase) {
    block_on(async {
        let options = ConnectOptions {
            migrate: false,
            ..ConnectOptions::default()
        };
        let db = Database::connect(test_db.url(), &options).await.unwrap();
        let all = kuku_persistence::db::migrator(db.backend());
        let first =
            sqlx::migrate::Migrator::with_migrations(vec![all.iter().next().unwrap().clone()]);
        first.run(db.pool()).await.unwrap();
        let insert = "INSERT INTO orders (order_id, account_id, client_order_id, symbol_id, \
            side, order_type, tif, price, qty, leaves, filled, status, is_open, cancel_reason, \
            accepted_seq, accepted_ts_ns, updated_seq) \
            VALUES (?, 1, ?, 1, 'BUY', 'LIMIT', 'DAY', 100, ?, ?, ?, ?, ?, NULL, 1, 1, 2)";
        for (id, qty, leaves, filled, status, open) in [
            (1i64, 10i64, 0i64, 3i64, "CANCELLED", 0i64),
            (2, 5, 0, 5, "FILLED", 0),
            (3, 7, 5, 2, "PARTIALLY_FILLED", 1),
            (4, 4, 0, 0, "EXPIRED", 0),
        ] {
            sqlx::query(insert)
                .bind(id)
                .bind(id)
                .bind(qty)
                .bind(leaves)
                .bind(filled)
                .bind(status)
                .bind(open)
                .execute(db.pool())
                .await
                .unwrap();
        }
        db.migrate().await.unwrap();
        let orders = db.account_orders(AccountId(1), 0, 10).await.unwrap();
        let got: Vec<(u64, i64, i64, i64, i64)> = orders
            .iter()
            .map(|o| (o.order_id, o.qty, o.filled, o.leaves, o.cancelled))
            .collect();
        assert_eq!(
            got,
            [
                (1, 10, 3, 0, 7),
                (2, 5, 5, 0, 0),
                (3, 7, 2, 5, 0),
                (4, 4, 0, 0, 4)
            ]
        );
        db.close().await;
    });
}

fn reconcile_reports_a_tampered_balance_and_a_lost_order(test_db: TestDatabase) {
    let (dir, flow) = setup(19, 1_500);
    let journal = dir.path().join("journal");
    let (writer, mut handle) =
        Writer::start(writer_config(test_db.url(), &journal, &flow), 0).unwrap();
    offer(&mut handle, &flow, 0, u64::MAX);
    assert!(writer.wait_checkpoint(flow.seq_last(), Duration::from_secs(60)));
    writer.shutdown();
    block_on(async {
        let db = Database::connect(test_db.url(), &ConnectOptions::default())
            .await
            .unwrap();
        sqlx::query("UPDATE balances SET cash = cash + 1 WHERE account_id = 2")
            .execute(db.pool())
            .await
            .unwrap();
        let open = db.open_orders(None).await.unwrap();
        let lost = open.iter().find(|o| o.account_id != 0).unwrap().order_id as i64;
        sqlx::query("DELETE FROM orders WHERE order_id = ?")
            .bind(lost)
            .execute(db.pool())
            .await
            .unwrap();
        sqlx::query("DELETE FROM ledger_entries WHERE tx_id = (SELECT MAX(tx_id) FROM ledger_transactions WHERE tx_type = 'TRADE') AND line_no = 0")
            .execute(db.pool())
            .await
            .unwrap();
        let report = reconcile(&db, &journal, &flow.config).await.unwrap();
        assert!(!report.is_clean());
        let text = report.to_string();
        assert!(
            text.contains("MISMATCH balance: account 2 (cash, hold)"),
            "{text}"
        );
        assert!(
            text.contains(&format!("MISMATCH open order: order {lost} ")),
            "{text}"
        );
        assert!(text.contains("MISMATCH trial balance: asset KRW"), "{text}");
        assert!(
            text.contains("MISMATCH ledger: USER_CASH account"),
            "{text}"
        );
        db.close().await;
    });
}

/// Closed orders and trades are not in the engine: reconcile rebuilds them by replaying the
/// journal through the writer's row builder and compares every table.
fn reconcile_finds_a_deleted_trade_and_an_altered_closed_order(test_db: TestDatabase) {
    let (dir, flow) = setup(23, 1_500);
    let journal = dir.path().join("journal");
    let (writer, mut handle) =
        Writer::start(writer_config(test_db.url(), &journal, &flow), 0).unwrap();
    offer(&mut handle, &flow, 0, u64::MAX);
    assert!(writer.wait_checkpoint(flow.seq_last(), Duration::from_secs(60)));
    writer.shutdown();
    block_on(async {
        let db = Database::connect(test_db.url(), &ConnectOptions::default())
            .await
            .unwrap();
        let clean = reconcile(&db, &journal, &flow.config).await.unwrap();
        assert!(clean.is_clean(), "{clean}");
        assert_eq!(clean.covered, Some((1, flow.seq_last())));
        let tables: Vec<&str> = clean.tables.iter().map(|t| t.table).collect();
        for table in [
            "symbols",
            "accounts",
            "ledger_transactions",
            "ledger_entries",
            "trades",
            "orders",
            "balances",
            "positions",
        ] {
            assert!(tables.contains(&table), "{table} compared: {tables:?}");
        }
        use sqlx::Row;
        let trade: i64 = sqlx::query("SELECT MIN(trade_id) AS id FROM trades")
            .fetch_one(db.pool())
            .await
            .unwrap()
            .try_get("id")
            .unwrap();
        sqlx::query("DELETE FROM trades WHERE trade_id = ?")
            .bind(trade)
            .execute(db.pool())
            .await
            .unwrap();
        let closed = sqlx::query(
            "SELECT order_id, filled FROM orders WHERE is_open = 0 AND filled > 0 \
             ORDER BY order_id LIMIT 1",
        )
        .fetch_one(db.pool())
        .await
        .unwrap();
        let (order, filled): (i64, i64) = (
            closed.try_get("order_id").unwrap(),
            closed.try_get("filled").unwrap(),
        );
        sqlx::query("UPDATE orders SET filled = filled + 1 WHERE order_id = ?")
            .bind(order)
            .execute(db.pool())
            .await
            .unwrap();
        let report = reconcile(&db, &journal, &flow.config).await.unwrap();
        assert!(!report.is_clean(), "{report}");
        let text = report.to_string();
        let trades = report.tables.iter().find(|t| t.table == "trades").unwrap();
        assert_eq!(trades.database_rows + 1, trades.expected_rows, "{text}");
        assert_ne!(trades.database_hash, trades.expected_hash);
        assert!(
            text.contains(&format!(
                "MISMATCH table trades: trade_id={trade}: database (missing)"
            )),
            "{text}"
        );
        let orders = report.tables.iter().find(|t| t.table == "orders").unwrap();
        assert_eq!(orders.database_rows, orders.expected_rows);
        assert_eq!(orders.differing_rows, 1, "{text}");
        assert!(
            text.contains(&format!(
                "MISMATCH table orders: order_id={order}: database filled={} | engine filled={filled}",
                filled + 1
            )),
            "{text}"
        );
        // Nothing else differs: the balances, positions and ledger lines are intact.
        let other: Vec<_> = report
            .differences
            .iter()
            .filter(|d| !d.area.starts_with("table "))
            .collect();
        assert!(other.is_empty(), "{other:?}");
        db.close().await;
    });
}

#[test]
fn wrong_credentials_fail_start_up_with_a_clear_error() {
    let base = std::env::var(kuku_persistence::testkit::MYSQL_URL_ENV)
        .unwrap_or_else(|_| kuku_persistence::testkit::MYSQL_URL_DEFAULT.into());
    let rest = base.split_once("://").unwrap().1;
    let host = rest.split('/').next().unwrap().rsplit('@').next().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = |url: &str| {
        WriterConfig::new(
            DatabaseUrl::parse(url).unwrap(),
            dir.path().to_owned(),
            kuku_engine::EngineConfig::small(),
        )
    };
    let url = format!("mysql://kuku_no_such_user:wrong-password@{host}/kuku_x");
    let error = Writer::start(config(&url), 0).err().unwrap();
    let text = error.to_string();
    assert!(
        matches!(error, PersistenceError::Connect { .. }),
        "{error:?}"
    );
    assert!(text.contains("wrong user name or password"), "{text}");
    assert!(
        !text.contains("wrong-password"),
        "the password is masked: {text}"
    );

    // Nothing listens on this port (bound, then closed).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut c = config(&format!("mysql://root@127.0.0.1:{port}/kuku_x"));
    c.connect.connect_timeout = Duration::from_secs(3);
    let text = Writer::start(c, 0).err().unwrap().to_string();
    assert!(
        text.contains("cannot connect to the database at mysql://root@127.0.0.1"),
        "{text}"
    );

    let text = DatabaseUrl::parse("mysql://root@127.0.0.1")
        .unwrap_err()
        .to_string();
    assert!(text.contains("no database name"), "{text}");
}

#[test]
fn a_database_ahead_of_the_journal_is_refused() {
    let test_db = TestDatabase::sqlite();
    let (dir, flow) = setup(23, 600);
    let journal = dir.path().join("journal");
    let (writer, mut handle) =
        Writer::start(writer_config(test_db.url(), &journal, &flow), 0).unwrap();
    offer(&mut handle, &flow, 0, u64::MAX);
    assert!(writer.wait_checkpoint(flow.seq_last(), Duration::from_secs(60)));
    writer.shutdown();
    // Another node's (shorter) journal with the same database.
    let error = Writer::start(writer_config(test_db.url(), &journal, &flow), 10)
        .err()
        .unwrap();
    assert!(
        matches!(error, PersistenceError::CheckpointAhead { .. }),
        "{error}"
    );
}
