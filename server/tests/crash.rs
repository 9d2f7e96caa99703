//! A child process runs a node under its own generated load and prints each acknowledged
//! command's seq and client order id; the test kills it with SIGKILL at a point it chooses,
//! restarts from the data directory, and finds every acknowledged command in the recovered
//! state, with a state hash equal to a clean replay of the journal (no snapshots).

use kuku_engine::testkit::cmd;
use kuku_engine::*;
use kuku_server::config::{FeedSettings, NodeConfig};
use kuku_server::node::{Node, NodeOutputs};
use kuku_server::pipeline::{Origin, OutputSlot};
use kuku_server::scheduler::ScheduleMode;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command as Process, Stdio};
use std::time::{Duration, Instant};

const CHILD_ENV: &str = "KUKU_CRASH_CHILD_DIR";
const LOAD_ORIGIN: u64 = 9;

fn config(dir: &Path) -> NodeConfig {
    NodeConfig {
        data_dir: dir.to_owned(),
        durability: "every-batch".into(),
        segment_mib: 1,
        schedule: ScheduleMode::AlwaysOpen,
        snapshot_every: 300,
        feed: FeedSettings {
            interval_ms: 5,
            ..FeedSettings::default()
        },
        engine: EngineConfig::small(),
        ..NodeConfig::default()
    }
}

/// The child: a node, and a load of orders whose acknowledgements are printed as
/// `ACK <seq> <client order id>` once their last event has left the processor.
#[test]
fn heavy_crash_child_entry() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return; // only runs as the child of the crash test
    };
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(tracing_subscriber::EnvFilter::new(
            std::env::var("KUKU_LOG").unwrap_or_else(|_| "warn".into()),
        ))
        .try_init();
    // The command's client order id comes with its first event; the ack is its last.
    let mut coid = 0u64;
    let printer = Box::new(move |slot: &OutputSlot, _, _| {
        if slot.origin != Origin(LOAD_ORIGIN) {
            return;
        }
        match slot.event {
            Event::OrderAccepted { order, .. } => coid = order.client_order_id.0,
            Event::OrderRejected {
                client_order_id, ..
            } => coid = client_order_id.0,
            _ => {}
        }
        if slot.last {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "ACK {} {coid}", slot.seq);
            let _ = out.flush();
        }
    });
    let mut node = Node::start(
        &config(Path::new(&dir)),
        NodeOutputs {
            handlers: vec![("crash-acks", printer)],
            ..Default::default()
        },
    )
    .unwrap();
    node.submit_blocking(cmd::open_account("crash-trader"));
    node.submit_blocking(cmd::deposit(
        AccountId(1),
        1_000_000_000_000,
        "crash-funding",
    ));
    let mut submitter = node.submitter.clone();
    let mut rng = 0x5eed_u64;
    for coid in 1..=1_000_000u64 {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let price = 119_000 + (rng % 20) as i64 * 100;
        let order = cmd::limit(
            AccountId(1),
            coid,
            1,
            Side::Buy,
            price,
            1 + (rng >> 8) as i64 % 5,
        );
        while submitter
            .try_submit(Origin(LOAD_ORIGIN), order.clone())
            .is_err()
        {
            std::thread::sleep(Duration::from_micros(100));
        }
        if coid % 64 == 0 {
            std::thread::sleep(Duration::from_micros(200));
        }
        if coid % 700 == 0 {
            // The shadow snapshotter writes snapshots while the load goes on.
            let _ = submitter.try_submit(Origin::INTERNAL, Command::TakeSnapshot);
        }
    }
}

#[test]
fn heavy_sigkill_under_load_loses_no_acknowledged_command() {
    for round in 0..3u64 {
        let dir = tempfile::tempdir().unwrap();
        let mut child = Process::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "heavy_crash_child_entry",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, dir.path())
            .env("KUKU_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let kill_after = 1_500 + round * 2_500;
        let mut acked: Vec<(u64, u64)> = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let mut parts = line.split_whitespace();
            if parts.next() != Some("ACK") {
                continue;
            }
            let seq: u64 = parts.next().unwrap().parse().unwrap();
            let coid: u64 = parts.next().unwrap().parse().unwrap();
            acked.push((seq, coid));
            // Later rounds kill only once the shadow snapshotter has written a snapshot, so
            // recovery goes through snapshot + replay.
            let snapshot_written = round == 0
                || std::fs::read_dir(dir.path().join("journal/snapshots")).is_ok_and(|mut d| {
                    d.any(|e| e.is_ok_and(|e| e.path().extension().is_some_and(|x| x == "snap")))
                });
            if (acked.len() as u64 >= kill_after && snapshot_written) || Instant::now() > deadline {
                break;
            }
        }
        // SIGKILL: no chance to flush or close anything.
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(
            acked.len() as u64 >= kill_after,
            "the child acknowledged {} commands",
            acked.len()
        );

        let journal = dir.path().join("journal");
        let engine_config = EngineConfig::small();
        let (engine, info) = kuku_journal::state::recover_engine(&journal, &engine_config).unwrap();
        let options = kuku_journal::state::RecoverOptions {
            seq_until: None,
            use_snapshots: false,
        };
        let (clean, _) =
            kuku_journal::state::recover_engine_with(&journal, &engine_config, options).unwrap();
        assert_eq!(
            engine.state_hash(),
            clean.state_hash(),
            "snapshot + replay equals a clean replay"
        );
        let snapshots: Vec<_> = std::fs::read_dir(journal.join("snapshots"))
            .map(|d| d.filter_map(|e| e.ok()).map(|e| e.file_name()).collect())
            .unwrap_or_default();
        assert!(
            info.base.is_some() || round == 0,
            "later rounds recover from a snapshot too: {info:?}, on disk: {snapshots:?}"
        );
        let last_acked = acked.iter().map(|a| a.0).max().unwrap();
        assert!(
            engine.last_seq() >= last_acked,
            "recovered {} < acked {last_acked}",
            engine.last_seq()
        );
        // Every acknowledged command is in the recovered journal at the seq it was acknowledged
        // with, and the recovered state includes it (its seq <= the last applied).
        let reader = kuku_journal::JournalReader::open(&journal).unwrap();
        let journaled: std::collections::BTreeMap<u64, u64> = reader
            .frames_from(1)
            .unwrap()
            // A frame cut by the kill after the durable watermark ends the readable journal.
            .map_while(|f| f.ok())
            .map(|f| {
                let env = kuku_journal::codec::decode_envelope(&f).unwrap();
                let coid = match env.command {
                    Command::PlaceOrder(o) => o.client_order_id.0,
                    _ => 0,
                };
                (env.seq, coid)
            })
            .collect();
        for (seq, coid) in &acked {
            assert_eq!(
                journaled.get(seq),
                Some(coid),
                "acknowledged seq {seq} (order {coid})"
            );
        }
        engine.check_invariants().unwrap();

        // Restarting the node on the same directory continues the journal.
        let node = Node::start(
            &NodeConfig {
                feed: FeedSettings {
                    enabled: false,
                    ..FeedSettings::default()
                },
                ..config(dir.path())
            },
            NodeOutputs::default(),
        )
        .unwrap();
        assert_eq!(node.startup.seq_last, engine.last_seq());
        node.shutdown();
    }
}
