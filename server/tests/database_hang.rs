//! A hung database connection (accepted, the query delivered, the reply never coming back),
//! through the test TCP proxy's hang mode, while orders flow. The writer's statement timeout
//! abandons the batch: `kuku_db_up` drops to 0 and retries are counted within seconds, the
//! node keeps trading, and the checkpoint does not move. Once the database answers again the
//! writer recovers by itself: it kills its abandoned connection (whose transaction the server
//! would otherwise keep, with its locks, for hours: the proxy keeps that connection's server
//! side open for ever), the next batch commits, and the database reconciles with the journal.

mod db_common;

use db_common::*;
use kuku_persistence::testkit::{TcpProxy, TestDatabase};
use kuku_server::node::{Node, NodeOutputs};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// How long the database stays hung.
const HANG: Duration = Duration::from_secs(6);

#[test]
fn heavy_a_hung_database_connection_is_abandoned_and_the_writer_recovers() {
    let test_db = TestDatabase::mysql();
    let proxy = TcpProxy::to_test_mysql();
    let dir = tempfile::tempdir().unwrap();
    let mut config = node_config(dir.path(), &test_db.url_through(&proxy));
    config.database.statement_timeout_ms = 1_000;
    config.database.connect_timeout_s = 2;
    let mut node = Node::start(&config, NodeOutputs::default()).unwrap();
    fund_traders(&mut node);
    let metrics = Arc::clone(node.database_metrics().unwrap());
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        let submitter = node.submitter.clone();
        let load = s.spawn(|| run_load(submitter, &stop, 1_000_000, 500, 0x4a6e));
        let deadline = Instant::now() + Duration::from_secs(30);
        while metrics.checkpoint_seq.load(Ordering::Acquire) == 0 {
            assert!(
                Instant::now() < deadline,
                "nothing was written before the hang"
            );
            std::thread::sleep(Duration::from_millis(20));
        }

        proxy.hang();
        let hung_at = Instant::now();
        let applied_before = node.status.applied_seq.load(Ordering::Acquire);
        // The statement timeout (1 s) abandons the batch: the database is reported down.
        while metrics.database_ok.load(Ordering::Acquire) {
            assert!(
                hung_at.elapsed() < Duration::from_secs(5),
                "kuku_db_up stayed 1 on a hung connection: {}",
                metrics.status(0)
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        let detected = hung_at.elapsed();
        let checkpoint_in_hang = metrics.checkpoint_seq.load(Ordering::Acquire);
        while hung_at.elapsed() < HANG {
            std::thread::sleep(Duration::from_millis(100));
            assert_eq!(
                metrics.checkpoint_seq.load(Ordering::Acquire),
                checkpoint_in_hang,
                "nothing commits while every reply is withheld"
            );
        }
        let status = metrics.status(kuku_persistence::metrics::now_ns());
        assert!(!status.database_ok && status.retries >= 2, "{status}");
        assert!(
            node.status.applied_seq.load(Ordering::Acquire) > applied_before + 500,
            "the node kept trading"
        );
        eprintln!("the hang was detected after {detected:?}; {status}");

        proxy.restore();
        stop.store(true, Ordering::Relaxed);
        load.join().unwrap();
    });
    let applied = node.status.applied_seq.load(Ordering::Acquire);
    // The abandoned transaction is ended (killed, or by MariaDB's
    // idle_write_transaction_timeout) and the next batches commit.
    let deadline = Instant::now() + Duration::from_secs(60);
    while metrics.checkpoint_seq.load(Ordering::Acquire) < applied {
        assert!(
            Instant::now() < deadline,
            "the writer did not recover: {} (last error: {:?})",
            metrics.status(0),
            metrics.status(0).last_error
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(metrics.database_ok.load(Ordering::Acquire));
    node.shutdown();
    assert_database_matches_journal(&config);
}
