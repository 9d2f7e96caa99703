//! Shared by the database tests of the node: a node config with a database, a trading load,
//! and the check that the database holds exactly what the journal says.

#![allow(dead_code)]

use kuku_engine::testkit::cmd;
use kuku_engine::*;
use kuku_persistence::query::RowCounts;
use kuku_persistence::{ConnectOptions, Database, DatabaseUrl};
use kuku_server::config::{FeedSettings, NodeConfig};
use kuku_server::node::{Node, submit_retrying};
use kuku_server::pipeline::{Origin, Submitter};
use kuku_server::scheduler::ScheduleMode;
use std::collections::BTreeSet;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

pub const LOAD_ORIGIN: u64 = 9;
pub const TRADERS: u32 = 4;

/// A node on `dir` writing to `url`, trading around the clock, with the simulated feed.
pub fn node_config(dir: &Path, url: &DatabaseUrl) -> NodeConfig {
    let mut config = NodeConfig {
        data_dir: dir.to_owned(),
        durability: "every-batch".into(),
        segment_mib: 1,
        schedule: ScheduleMode::AlwaysOpen,
        snapshot_every: 2_000,
        feed: FeedSettings {
            interval_ms: 50,
            ..FeedSettings::default()
        },
        database_url: Some(url.expose().to_owned()),
        engine: EngineConfig::small(),
        ..NodeConfig::default()
    };
    config.database.retry_backoff_max_ms = 500;
    config
}

/// Opens the traders' accounts with cash and shares of 005930 (symbol 1).
pub fn fund_traders(node: &mut Node) {
    for i in 0..TRADERS {
        node.submit_blocking(cmd::open_account(&format!("trader-{i}")));
        let account = AccountId(i + 1);
        node.submit_blocking(cmd::deposit(account, 10_000_000_000, &format!("fund-{i}")));
        node.submit_blocking(Command::Adjust {
            account,
            asset: Asset::Shares(SymbolId(1)),
            amount: Amount(1_000_000),
            external_ref: ExternalRef::new(&format!("shares-{i}")).unwrap(),
            cost_price: kuku_engine::Price(0),
        });
    }
}

/// Submits crossing orders (and some IOCs, cancel-alls and deposits) for the traders until
/// `stop` or `commands_max`, pacing itself to about `rate_per_s`. Returns the commands sent.
pub fn run_load(
    mut submitter: Submitter,
    stop: &AtomicBool,
    commands_max: u64,
    rate_per_s: u64,
    seed: u64,
) -> u64 {
    let mut rng = seed | 1;
    let started = Instant::now();
    let mut sent = 0u64;
    while sent < commands_max && !stop.load(Ordering::Relaxed) {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let account = AccountId(1 + (rng % u64::from(TRADERS)) as u32);
        let coid = 1_000_000 + sent;
        let side = if (rng >> 8).is_multiple_of(2) {
            Side::Buy
        } else {
            Side::Sell
        };
        let price = 119_400 + ((rng >> 16) % 11) as i64 * 100;
        let qty = 1 + ((rng >> 24) % 10) as i64;
        let command = match (rng >> 32) % 100 {
            0..=79 => cmd::limit(account, coid, 1, side, price, qty),
            80..=91 => cmd::order(
                account,
                coid,
                1,
                side,
                OrderType::Limit,
                TimeInForce::Ioc,
                price,
                qty,
            ),
            92..=95 => Command::CancelAll {
                account,
                request_id: ClientOrderId(coid),
                symbol: None,
            },
            _ => cmd::deposit(
                account,
                1_000 + (rng % 1000) as i64,
                &format!("dep-{seed}-{sent}"),
            ),
        };
        submit_retrying(&mut submitter, Origin(LOAD_ORIGIN), command, stop);
        sent += 1;
        // Pace: never ahead of `rate_per_s`.
        let due = Duration::from_micros(sent * 1_000_000 / rate_per_s.max(1));
        if let Some(ahead) = due.checked_sub(started.elapsed()) {
            std::thread::sleep(ahead);
        }
    }
    sent
}

/// What the database must hold: rows per table and a few sums, from a clean replay of the
/// journal (no snapshots) up to its end.
#[derive(Debug, PartialEq, Eq)]
pub struct Expected {
    pub rows: RowCounts,
    pub seq_last: u64,
    pub trade_qty: i64,
    pub trade_notional: i64,
}

struct Counter {
    rows: RowCounts,
    txs: BTreeSet<u64>,
    positions: BTreeSet<(AccountId, SymbolId)>,
    trade_qty: i64,
    trade_notional: i64,
}

impl EventSink for Counter {
    fn emit(&mut self, e: &Event) {
        if let Some(tx) = e.transaction(0) {
            self.rows.ledger_entries += tx.entries().len() as u64;
        }
        match *e {
            Event::SymbolRegistered { .. } => self.rows.symbols += 1,
            Event::AccountOpened { resent: false, .. } => {
                self.rows.accounts += 1;
                self.rows.balances += 1;
            }
            Event::OrderAccepted { resent: false, .. } => self.rows.orders += 1,
            Event::Trade { tx, qty, price, .. } => {
                self.rows.trades += 1;
                self.trade_qty += qty.0;
                self.trade_notional += qty.0 * price.0;
                if tx.0 != 0 {
                    self.txs.insert(tx.0);
                }
            }
            Event::TransactionStatusChanged {
                tx, resent: false, ..
            } => {
                self.txs.insert(tx.0);
            }
            Event::PositionUpdated { position } => {
                self.positions.insert((position.account, position.symbol));
            }
            _ => {}
        }
    }
}

pub fn expected_from_journal(journal: &Path, config: &EngineConfig) -> Expected {
    let reader = kuku_journal::JournalReader::open(journal).unwrap();
    let mut engine = Engine::new(*config);
    let mut counter = Counter {
        rows: RowCounts::default(),
        txs: BTreeSet::new(),
        positions: BTreeSet::new(),
        trade_qty: 0,
        trade_notional: 0,
    };
    let outcome =
        kuku_journal::replay_journal(&reader, &mut engine, u64::MAX, &mut counter).unwrap();
    counter.rows.ledger_transactions = counter.txs.len() as u64;
    counter.rows.positions = counter.positions.len() as u64;
    Expected {
        rows: counter.rows,
        seq_last: outcome.seq_last,
        trade_qty: counter.trade_qty,
        trade_notional: counter.trade_notional,
    }
}

/// The database of a stopped node holds exactly the journal's rows and sums, and reconciles.
pub fn assert_database_matches_journal(config: &NodeConfig) {
    let expected = expected_from_journal(&config.journal_dir(), &config.engine);
    let url = kuku_server::database::database_url(config)
        .unwrap()
        .unwrap();
    kuku_persistence::block_on(async {
        let db = Database::connect(&url, &ConnectOptions::default())
            .await
            .unwrap();
        assert_eq!(db.checkpoint().await.unwrap().seq, expected.seq_last);
        assert_eq!(db.row_counts().await.unwrap(), expected.rows);
        let sums = sqlx::query(
            "SELECT CAST(SUM(qty) AS SIGNED) AS q, CAST(SUM(qty * price) AS SIGNED) AS n FROM trades",
        );
        let sums = match url.backend() {
            kuku_persistence::Backend::MySql => sums,
            kuku_persistence::Backend::Sqlite => {
                sqlx::query("SELECT SUM(qty) AS q, SUM(qty * price) AS n FROM trades")
            }
        };
        let row = sums.fetch_one(db.pool()).await.unwrap();
        use sqlx::Row;
        let (q, n): (Option<i64>, Option<i64>) =
            (row.try_get("q").unwrap(), row.try_get("n").unwrap());
        assert_eq!(
            (q.unwrap_or(0), n.unwrap_or(0)),
            (expected.trade_qty, expected.trade_notional)
        );
        let trial = db.trial_balance().await.unwrap();
        assert!(trial.values().all(|v| *v == 0), "{trial:?}");
        db.close().await;
    });
    let report = kuku_server::database::reconcile(config).unwrap();
    assert!(report.is_clean(), "{report}");
    assert!(expected.rows.trades > 100, "the load traded: {expected:?}");
}
