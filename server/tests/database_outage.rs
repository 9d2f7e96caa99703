//! A 30 s database outage while orders flow: the node's connection to MariaDB goes through a
//! TCP proxy inside the test, which cuts every connection (and refuses new ones) and later
//! restores them; the shared server itself is never touched. During the outage the node keeps
//! accepting and matching; the writer falls behind with a bounded intake (it overflows, drops
//! and later re-derives from the journal); after the database is back it catches up and the
//! database reconciles with the engine exactly.

mod db_common;

use db_common::*;
use kuku_engine::Event;
use kuku_persistence::testkit::{TcpProxy, TestDatabase};
use kuku_server::node::{Node, NodeOutputs};
use kuku_server::pipeline::OutputSlot;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

const OUTAGE: Duration = Duration::from_secs(30);

#[test]
fn heavy_a_30_s_database_outage_does_not_stop_trading_and_reconciles_after() {
    let test_db = TestDatabase::mysql();
    let proxy = TcpProxy::to_test_mysql();
    let dir = tempfile::tempdir().unwrap();
    let mut config = node_config(dir.path(), &test_db.url_through(&proxy));
    // A small intake, so the outage overflows it and the writer must use the journal.
    config.database.intake_events_max = 2_048;
    config.database.connect_timeout_s = 2;

    let trades = Arc::new(AtomicU64::new(0));
    let counter = {
        let trades = Arc::clone(&trades);
        Box::new(move |slot: &OutputSlot, _, _| {
            if matches!(slot.event, Event::Trade { .. }) {
                trades.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    let mut node = Node::start(
        &config,
        NodeOutputs {
            handlers: vec![("test-trades", counter)],
            ..Default::default()
        },
    )
    .unwrap();
    fund_traders(&mut node);
    let metrics = Arc::clone(node.database_metrics().unwrap());
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        let submitter = node.submitter.clone();
        let load = s.spawn(|| run_load(submitter, &stop, 1_000_000, 1_000, 0xbeef));
        std::thread::sleep(Duration::from_secs(2));
        assert!(
            metrics.checkpoint_seq.load(Ordering::Acquire) > 0,
            "written before the outage"
        );

        proxy.cut();
        let cut_at = Instant::now();
        let (applied_before, trades_before) = (
            node.status.applied_seq.load(Ordering::Acquire),
            trades.load(Ordering::Relaxed),
        );
        let mut checkpoint_in_outage = None;
        while cut_at.elapsed() < OUTAGE {
            std::thread::sleep(Duration::from_secs(1));
            if cut_at.elapsed() > Duration::from_secs(3) {
                // No batch commits while the database is unreachable.
                let checkpoint = metrics.checkpoint_seq.load(Ordering::Acquire);
                assert_eq!(*checkpoint_in_outage.get_or_insert(checkpoint), checkpoint);
                assert!(!metrics.database_ok.load(Ordering::Acquire));
            }
        }
        let applied_during = node.status.applied_seq.load(Ordering::Acquire) - applied_before;
        let traded_during = trades.load(Ordering::Relaxed) - trades_before;
        let status = metrics.status(kuku_persistence::metrics::now_ns());
        assert!(
            applied_during > 10_000,
            "the node kept accepting: {applied_during} commands"
        );
        assert!(
            traded_during > 1_000,
            "the node kept matching: {traded_during} trades"
        );
        assert!(
            status.lag_seq > 10_000 && status.lag_seconds > 20.0,
            "{status}"
        );
        assert!(status.overflows > 0 && status.retries > 0, "{status}");
        assert!(
            status.queued <= config.database.intake_events_max,
            "bounded: {status}"
        );

        proxy.restore();
        std::thread::sleep(Duration::from_secs(2));
        stop.store(true, Ordering::Relaxed);
        load.join().unwrap();
    });
    let applied = node.status.applied_seq.load(Ordering::Acquire);
    // A bound for "eventually", not a speed check: catching up re-derives ~30 s of traffic
    // from the journal into MariaDB, which took 5-10 s alone and once over 60 s while the
    // rest of the suite shared the two cores (2026-12-04).
    let deadline = Instant::now() + Duration::from_secs(180);
    while metrics.checkpoint_seq.load(Ordering::Acquire) < applied {
        assert!(
            Instant::now() < deadline,
            "caught up: {}",
            metrics.status(0)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let status = metrics.status(kuku_persistence::metrics::now_ns());
    assert!(
        status.commands_rederived > 0 && status.database_ok,
        "{status}"
    );
    // Shutdown waits for the writer to pass the last command (the feed went on meanwhile).
    node.shutdown();
    assert_database_matches_journal(&config);
}
