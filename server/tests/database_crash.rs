//! A child process runs a node under load with a database (MariaDB, or the embedded SQLite);
//! it is killed mid-batch, either by the writer's own failpoint (inside a batch's transaction,
//! rows written, checkpoint not moved, nothing committed) or by the test's SIGKILL at a point
//! it picks. The node is then restarted on the same data directory and database: once the
//! writer has caught up, the database holds exactly the rows and sums a clean replay of the
//! journal yields (so none was lost and none written twice), and reconciles with the engine.

mod db_common;

use db_common::*;
use kuku_persistence::DatabaseUrl;
use kuku_persistence::testkit::TestDatabase;
use kuku_server::config::FeedSettings;
use kuku_server::node::{Node, NodeOutputs};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command as Process, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

const CHILD_DIR_ENV: &str = "KUKU_DB_CRASH_CHILD_DIR";
const CHILD_URL_ENV: &str = "KUKU_DB_CRASH_CHILD_URL";

/// The child: a node with a database and a trading load; prints `APPLIED <seq>` and
/// `CHECKPOINT <seq>` lines until it is killed.
#[test]
fn heavy_db_crash_child_entry() {
    let (Ok(dir), Ok(url)) = (std::env::var(CHILD_DIR_ENV), std::env::var(CHILD_URL_ENV)) else {
        return; // only runs as the child of a crash test
    };
    let url = DatabaseUrl::parse(&url).unwrap();
    let mut config = node_config(Path::new(&dir), &url);
    // Small batches, so a crash lands in the middle of a busy writer.
    config.database.batch_commands_max = 32;
    let mut node = Node::start(&config, NodeOutputs::default()).unwrap();
    fund_traders(&mut node);
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        let submitter = node.submitter.clone();
        let stop = &stop;
        s.spawn(move || run_load(submitter, stop, 200_000, 2_000, 0x5eed));
        let metrics = node.database_metrics().unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            let applied = node.status.applied_seq.load(Ordering::Acquire);
            let checkpoint = metrics.checkpoint_seq.load(Ordering::Acquire);
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "APPLIED {applied}\nCHECKPOINT {checkpoint}");
            let _ = out.flush();
            std::thread::sleep(Duration::from_millis(20));
        }
        stop.store(true, Ordering::Relaxed);
    });
}

/// Runs the child until it dies by its failpoint, or until its checkpoint passes
/// `kill_after_checkpoint` and the test kills it.
fn run_child(dir: &Path, url: &DatabaseUrl, failpoint: Option<&str>, kill_after_checkpoint: u64) {
    let mut child = Process::new(std::env::current_exe().unwrap());
    child
        .args([
            "--exact",
            "heavy_db_crash_child_entry",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_DIR_ENV, dir)
        .env(CHILD_URL_ENV, url.expose())
        .env("KUKU_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    if let Some(f) = failpoint {
        child.env(kuku_persistence::failpoint::FAILPOINT_ENV, f);
    }
    let mut child = child.spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut checkpoint = 0u64;
    for line in BufReader::new(stdout).lines() {
        let Ok(line) = line else { break };
        if let Some(seq) = line.strip_prefix("CHECKPOINT ") {
            checkpoint = seq.parse().unwrap();
            if failpoint.is_none() && checkpoint >= kill_after_checkpoint {
                break;
            }
        }
    }
    // With a failpoint the child has killed itself (its stdout closed); else SIGKILL it now.
    let _ = child.kill();
    let status = child.wait().unwrap();
    assert_eq!(status.signal(), Some(libc::SIGKILL), "{status:?}");
    assert!(
        checkpoint > 0,
        "the writer committed batches before the crash"
    );
}

fn crash_restart_and_check(test_db: TestDatabase, failpoint: Option<&str>) {
    let dir = tempfile::tempdir().unwrap();
    run_child(dir.path(), test_db.url(), failpoint, 1_500);
    let mut config = node_config(dir.path(), test_db.url());
    config.feed = FeedSettings {
        enabled: false,
        ..FeedSettings::default()
    };
    let node = Node::start(&config, NodeOutputs::default()).unwrap();
    let journal_end = node.startup.seq_last;
    let metrics = node.database_metrics().unwrap().clone();
    let deadline = Instant::now() + Duration::from_secs(60);
    while metrics.checkpoint_seq.load(Ordering::Acquire) < journal_end {
        assert!(
            Instant::now() < deadline,
            "the writer caught up: {:?}",
            metrics
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(metrics.commands_rederived.load(Ordering::Acquire) > 0);
    node.shutdown();
    assert_database_matches_journal(&config);
}

#[test]
fn heavy_node_killed_by_the_writer_failpoint_mid_batch_restarts_exactly_once_mysql() {
    // MariaDB commits take milliseconds: batches hold many commands.
    crash_restart_and_check(TestDatabase::mysql(), Some("writer::before_checkpoint=200"));
}

#[test]
fn heavy_node_killed_by_the_writer_failpoint_mid_batch_restarts_exactly_once_sqlite() {
    // SQLite commits take a fraction of a millisecond: batches are often one command.
    crash_restart_and_check(
        TestDatabase::sqlite(),
        Some("writer::before_checkpoint=1500"),
    );
}

#[test]
fn heavy_node_sigkilled_under_load_restarts_exactly_once_mysql() {
    crash_restart_and_check(TestDatabase::mysql(), None);
}

#[test]
fn heavy_node_sigkilled_under_load_restarts_exactly_once_sqlite() {
    crash_restart_and_check(TestDatabase::sqlite(), None);
}
