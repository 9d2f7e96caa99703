//! Crash tests with a real child process. The parent re-executes this test binary to run
//! `child_writer_process` (a no-op unless `KUKU_CRASH_CHILD_DIR` is set), which appends
//! batches with `every-batch` and prints each durable seq after `commit()` returns. A failpoint
//! chosen by the parent (`KUKU_FAILPOINT=<name>=<n>`) SIGKILLs the child; the parent then
//! recovers and checks that every seq the child reported durable is there, in order, with its
//! payload, and that appending continues.
//!
//! Heavy: the crash tests are named `heavy_*`, which the `heavy` nextest test group in
//! .config/nextest.toml serializes (or filter `binary(crash_process)`). Bounded: at most
//! `FRAMES_TOTAL` frames per child and a `CHILD_TIMEOUT` per run.

mod common;

use std::fs::{self, File};
use std::io::Write;
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use common::{META, append_range, check_all_frames, config, payload};
use kuku_journal::{Durability, Journal, SnapshotMeta, SnapshotStore};

const CHILD_DIR_ENV: &str = "KUKU_CRASH_CHILD_DIR";
const CHILD_MODE_ENV: &str = "KUKU_CRASH_CHILD_MODE";
const DURABLE_MARKER: &str = "KUKU_DURABLE=";
const FRAMES_TOTAL: u64 = 1_500;
/// 64 KiB segments: the child rolls about every 450 frames.
const SEGMENT_BYTES: u64 = 64 * 1024;
const CHILD_TIMEOUT: Duration = Duration::from_secs(60);
const POLL_INTERVAL: Duration = Duration::from_millis(10);

/// The child's side: does nothing in a normal test run.
#[test]
fn child_writer_process() {
    let Some(dir) = std::env::var_os(CHILD_DIR_ENV) else {
        return;
    };
    match std::env::var(CHILD_MODE_ENV).as_deref() {
        Ok("snapshots") => child_snapshots(Path::new(&dir)),
        _ => child_journal(Path::new(&dir)),
    }
}

fn child_journal(dir: &Path) {
    let cfg = config(SEGMENT_BYTES, Durability::EveryBatch);
    let (mut journal, _) =
        Journal::open_or_create(dir, cfg, META).expect("child opens the journal");
    let mut stdout = std::io::stdout().lock();
    let mut lcg = 0x2545_f491_4f6c_dd1du64;
    let mut seq = journal.seq_next();
    while seq <= FRAMES_TOTAL {
        lcg = lcg
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        let batch = 1 + (lcg >> 58); // 1..=64 frames
        let batch_last = (seq + batch - 1).min(FRAMES_TOTAL);
        append_range(&mut journal, seq..=batch_last);
        let durable = journal.commit().expect("commit");
        assert_eq!(durable, batch_last);
        // One line per commit, flushed before the next batch starts.
        writeln!(stdout, "\n{DURABLE_MARKER}{durable}")
            .and_then(|()| stdout.flush())
            .expect("stdout");
        seq = batch_last + 1;
    }
    journal.close().expect("close");
}

fn child_snapshots(dir: &Path) {
    let store = SnapshotStore::create(dir).expect("snapshot store");
    for seq in [10u64, 20, 30] {
        let meta = SnapshotMeta {
            seq,
            state_hash: seq * 7,
            engine_logic_version: 7,
            capacities_hash: 9,
        };
        store.write(&meta, &payload(seq)).expect("write snapshot");
        println!("\n{DURABLE_MARKER}{seq}");
    }
}

/// Runs the child with `failpoint` armed; returns its exit status and the durable seqs it printed.
fn run_child(dir: &Path, mode: &str, failpoint: &str) -> (ExitStatus, Vec<u64>) {
    let stdout_path = dir.with_extension("stdout");
    let stdout = File::create(&stdout_path).unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "child_writer_process",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_DIR_ENV, dir)
        .env(CHILD_MODE_ENV, mode)
        .env(kuku_journal::failpoint::FAILPOINT_ENV, failpoint)
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + CHILD_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            child.kill().unwrap();
            child.wait().unwrap();
            panic!("child with {failpoint} did not finish in {CHILD_TIMEOUT:?}");
        }
        std::thread::sleep(POLL_INTERVAL);
    };
    let output = fs::read_to_string(&stdout_path).unwrap();
    let durable = output
        .lines()
        .filter_map(|line| line.split_once(DURABLE_MARKER))
        .map(|(_, seq)| seq.trim().parse().expect("durable seq"))
        .collect();
    (status, durable)
}

fn assert_killed(status: ExitStatus, failpoint: &str) {
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(
        status.signal(),
        Some(libc::SIGKILL),
        "{failpoint}: the failpoint must fire (status {status})"
    );
}

/// Crashes a writer at `failpoint` and checks recovery against what it reported durable
/// (at least `durable_min`, so the scenario is not vacuous).
fn crash_and_recover(failpoint: &str, durable_min: u64) {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("journal");
    let (status, durable) = run_child(&dir, "journal", failpoint);
    assert_killed(status, failpoint);
    assert!(
        durable.windows(2).all(|w| w[0] < w[1]),
        "{failpoint}: durable seqs increase"
    );
    let durable_last = durable.last().copied().unwrap_or(0);
    assert!(
        durable_last >= durable_min,
        "{failpoint}: only {durable_last} durable"
    );

    let cfg = config(SEGMENT_BYTES, Durability::EveryBatch);
    let (mut journal, report) = Journal::open(&dir, cfg, META)
        .unwrap_or_else(|e| panic!("{failpoint}: recovery failed: {e}"));
    // The page cache survives SIGKILL: nothing that was appended may be lost, torn or refused.
    assert!(
        report.seq_last >= durable_last,
        "{failpoint}: {report} lost durable seq {durable_last}"
    );
    assert_eq!(report.truncation, None, "{failpoint}: {report}");
    assert!(report.seq_durable <= report.seq_last);
    let seq_next = report.seq_last + 1;
    append_range(&mut journal, seq_next..=seq_next + 9);
    journal.close().unwrap();
    assert_eq!(check_all_frames(&dir), seq_next + 9, "{failpoint}");

    // And a restarted writer picks up where the journal ends.
    if seq_next <= FRAMES_TOTAL {
        let (status, durable) = run_child(&dir, "journal", "journal::after_roll=1000000");
        assert!(status.success(), "{failpoint}: restarted child: {status}");
        assert_eq!(durable.last().copied(), Some(FRAMES_TOTAL));
        assert_eq!(check_all_frames(&dir), FRAMES_TOTAL);
    }
}

#[test]
fn heavy_crash_after_append_before_commit_keeps_every_durable_seq() {
    // Batches are at most 64 frames: everything before the batch holding append n is durable.
    for n in [1u64, 40, 777] {
        crash_and_recover(&format!("journal::after_append={n}"), n.saturating_sub(64));
    }
}

#[test]
fn heavy_crash_mid_commit_keeps_every_durable_seq() {
    // n-1 commits completed and were printed before the n-th one was killed.
    for (failpoint, commits_before) in [
        ("journal::commit_before_sync=3", 2),
        ("journal::commit_after_sync=1", 0),
        ("journal::commit_after_sync=17", 16),
        ("journal::commit_after_watermark=9", 8),
    ] {
        crash_and_recover(failpoint, commits_before);
    }
}

#[test]
fn heavy_crash_right_after_a_segment_roll_keeps_every_durable_seq() {
    // A 64 KiB segment holds over 400 of these frames.
    for n in [1u64, 2] {
        crash_and_recover(&format!("journal::after_roll={n}"), 300 * n);
    }
}

#[test]
fn heavy_crash_before_a_snapshot_rename_keeps_the_previous_snapshot() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("journal");
    fs::create_dir(&dir).unwrap();
    let (status, written) = run_child(&dir, "snapshots", "snapshot::before_rename=3");
    assert_killed(status, "snapshot::before_rename=3");
    assert_eq!(written, [10, 20]);

    let store = SnapshotStore::open(&dir).unwrap();
    let latest = store.latest_valid().unwrap();
    let snapshot = latest.snapshot.expect("the previous snapshot survives");
    assert_eq!((snapshot.meta.seq, snapshot.payload), (20, payload(20)));
    assert!(
        latest.skipped.is_empty(),
        "the half-written one never got its final name"
    );
    let removed = store.prune(5).unwrap();
    assert_eq!(
        removed.len(),
        1,
        "prune removes the stale temporary file: {removed:?}"
    );
    assert_eq!(
        store
            .list()
            .unwrap()
            .iter()
            .map(|f| f.seq)
            .collect::<Vec<_>>(),
        [10, 20]
    );
}
