//! Start-up is truthful, with real `kuku serve` processes: it refuses (exit status 1, one
//! line saying what is missing and what to do, nothing modified) a data directory that is a
//! file, a journal whose segments are gone while its watermark remembers them, a database
//! that holds commands the journal does not (a lost journal, or a torn-tail cut that would
//! lose them), and damage below a `none`-mode watermark that the watermark syncer moved while
//! the node ran. A torn tail that may be cut is quarantined and logged at WARN. The gateway's
//! port stays closed until start-up succeeded. A full disk while a segment is prepared
//! fail-stops the node (status 74) and loses nothing acknowledged.
//!
//! Heavy (child processes): the tests are `heavy_*` and run one at a time. Every wait is
//! bounded in time.

mod support;

use kuku_engine::{AccountId, Amount, ClientOrderId, ExternalRef};
use kuku_gateway::client::{AdminClient, LoginOptions, TradingClient};
use kuku_gateway::protocol::{Message, NewOrder};
use kuku_journal::{JournalReader, QUARANTINE_DIR_NAME};
use kuku_server::config::NodeConfig;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use support::process::{Serve, WAIT};
use support::{ADMIN_TOKEN, SECRET, buy};

fn free_addr() -> SocketAddr {
    support::listen_addr()
}

/// A node's config in `root/name`: no feed, always open, `durability`, its own port.
fn node_config(root: &Path, name: &str, durability: &str) -> NodeConfig {
    let mut c = support::config(&root.join(name));
    c.durability = durability.into();
    c.database_url = Some("none".into());
    c.gateway.listen = free_addr().to_string();
    c
}

fn gateway(c: &NodeConfig) -> SocketAddr {
    c.gateway.listen.parse().expect("an address")
}

/// Runs `kuku serve` on `config` and expects a refusal: exit status 1, the log naming
/// `expected`. Returns the log.
fn refused(config: &NodeConfig, expected: &str) -> String {
    let mut node = Serve::start(config, &[]);
    let status = node.wait_exit();
    let log = node.log();
    assert_eq!(status.code(), Some(1), "{log}");
    assert!(log.contains(expected), "expected {expected:?} in:\n{log}");
    assert!(!log.contains("Kuku is serving"), "{log}");
    log
}

/// Opens and funds `n` accounts; returns them.
fn funded_accounts(addr: SocketAddr, n: u32) -> Vec<AccountId> {
    let deadline = Instant::now() + WAIT;
    let mut admin = loop {
        match AdminClient::login(addr, ADMIN_TOKEN) {
            Ok(a) => break a,
            Err(e) => assert!(Instant::now() < deadline, "no admin login: {e}"),
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    (0..n)
        .map(|i| {
            let r = admin
                .open_account(ExternalRef::new(&format!("trader-{i}")).unwrap())
                .unwrap();
            assert_eq!(r.code, 0, "{r:?}");
            let d = admin
                .deposit(
                    r.account,
                    Amount(1_000_000_000),
                    ExternalRef::new(&format!("dep-{i}")).unwrap(),
                )
                .unwrap();
            assert_eq!(d.code, 0, "{d:?}");
            r.account
        })
        .collect()
}

/// The last seq in the journal in `dir` (its committed frames).
fn journal_seq_last(dir: &Path) -> u64 {
    let reader = JournalReader::open(dir).unwrap();
    reader
        .frames_from(reader.seq_first())
        .unwrap()
        .map_while(Result::ok)
        .map(|f| f.seq)
        .last()
        .unwrap_or(0)
}

/// (segment, offset) of the frame with `seq` in the journal in `dir`.
fn frame_at(dir: &Path, seq: u64) -> (PathBuf, usize) {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    paths.sort();
    for path in paths {
        let bytes = std::fs::read(&path).unwrap();
        let mut offset = kuku_journal::SEGMENT_DATA_START;
        while offset + 24 <= bytes.len() {
            let len = u32::from_le_bytes(bytes[offset..offset + 4].try_into().unwrap()) as usize;
            if len == 0 {
                break;
            }
            if u64::from_le_bytes(bytes[offset + 8..offset + 16].try_into().unwrap()) == seq {
                return (path, offset);
            }
            offset += (24 + len).next_multiple_of(8);
        }
    }
    panic!("no frame with seq {seq} in {}", dir.display());
}

/// Flips one payload bit of the frame with `seq`; returns its segment and the new bytes.
fn flip_payload_bit(dir: &Path, seq: u64) -> (PathBuf, Vec<u8>) {
    let (path, offset) = frame_at(dir, seq);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[offset + 24] ^= 0x10;
    std::fs::write(&path, &bytes).unwrap();
    (path, bytes)
}

#[test]
fn heavy_a_data_directory_that_is_a_file_is_refused_clearly() {
    let root = tempfile::tempdir().unwrap();
    let config = node_config(root.path(), "node", "none");
    std::fs::write(&config.data_dir, b"not a directory").unwrap();
    let log = refused(&config, "is a file, not a directory");
    assert!(!log.contains("os error 17"), "{log}");
}

#[test]
fn heavy_the_gateway_port_stays_closed_while_start_up_fails() {
    let root = tempfile::tempdir().unwrap();
    // A "database" that accepts connections and never answers: start-up waits out its
    // connect timeout, then fails.
    let black_hole = TcpListener::bind("127.0.0.1:0").unwrap();
    let held = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let hole_addr = black_hole.local_addr().unwrap();
    let keeper = {
        let held = std::sync::Arc::clone(&held);
        std::thread::spawn(move || {
            for stream in black_hole.incoming().take(8).flatten() {
                held.lock().unwrap().push(stream);
            }
        })
    };
    let mut config = node_config(root.path(), "node", "none");
    config.database_url = Some(format!("mysql://root@{hole_addr}/kuku_never"));
    config.database.connect_timeout_s = 2;
    let mut node = Serve::start(&config, &[]);
    let mut attempts = 0;
    let status = loop {
        if let Ok(Some(status)) = node.child.try_wait() {
            break status;
        }
        attempts += 1;
        assert!(
            TcpStream::connect_timeout(&gateway(&config), Duration::from_millis(100)).is_err(),
            "the gateway accepted a connection while start-up was failing:\n{}",
            node.log()
        );
        assert!(attempts < 3_000, "start-up did not fail:\n{}", node.log());
        std::thread::sleep(Duration::from_millis(10));
    };
    assert_eq!(status.code(), Some(1), "{}", node.log());
    assert!(attempts > 20, "the window was observed ({attempts} probes)");
    drop(held);
    drop(keeper);
}

#[test]
fn heavy_lost_segments_or_a_lost_journal_are_refused_and_nothing_changes() {
    let root = tempfile::tempdir().unwrap();
    let mut config = node_config(root.path(), "node", "every-batch");
    // The embedded SQLite query store.
    config.database_url = None;
    let mut node = Serve::start(&config, &[]);
    node.wait_serving();
    funded_accounts(gateway(&config), 3);
    node.stop();
    let journal = config.journal_dir();
    let seq_last = journal_seq_last(&journal);
    let segments: Vec<PathBuf> = std::fs::read_dir(&journal)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    for s in &segments {
        std::fs::remove_file(s).unwrap();
    }
    // The watermark (and engine.json, the snapshot) remember the journal.
    let log = refused(&config, "holds no segment files, but a journal lived here");
    assert!(log.contains(&format!("up to seq {seq_last}")), "{log}");
    assert!(
        !std::fs::read_dir(&journal).unwrap().any(|e| e
            .unwrap()
            .path()
            .extension()
            .is_some_and(|x| x == "seg")),
        "no new journal was started"
    );
    // Without a trace of it in the directory, the database still remembers.
    std::fs::remove_dir_all(&journal).unwrap();
    let log = refused(&config, "the query database at");
    assert!(
        log.contains("the journal directory is new (empty)"),
        "{log}"
    );
    assert!(
        log.contains(&format!("holds rows up to seq {seq_last}")),
        "{log}"
    );
    assert!(!journal.exists(), "nothing was created");
}

#[test]
fn heavy_none_mode_damage_below_the_moving_watermark_is_refused() {
    let root = tempfile::tempdir().unwrap();
    let mut config = node_config(root.path(), "node", "none");
    config.watermark_interval_ms = 50;
    let mut node = Serve::start(&config, &[]);
    node.wait_serving();
    funded_accounts(gateway(&config), 5);
    let journal = config.journal_dir();
    let seq_last = journal_seq_last(&journal);
    let deadline = Instant::now() + WAIT;
    while JournalReader::open(&journal).unwrap().durable_watermark() < seq_last {
        assert!(
            Instant::now() < deadline,
            "the watermark never reached {seq_last}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    node.kill();
    let (segment, damaged) = flip_payload_bit(&journal, seq_last - 3);
    let log = refused(&config, "at or before the durable watermark");
    assert!(
        log.contains(&format!("expected frame seq {}", seq_last - 3)),
        "{log}"
    );
    assert_eq!(std::fs::read(&segment).unwrap(), damaged, "nothing was cut");
    assert!(!journal.join(QUARANTINE_DIR_NAME).exists());
}

#[test]
fn heavy_none_mode_damage_after_the_watermark_is_refused_while_the_database_has_it() {
    let root = tempfile::tempdir().unwrap();
    let mut config = node_config(root.path(), "node", "none");
    // No watermark syncer: the watermark stays where the fresh journal put it (0).
    config.watermark_interval_ms = 0;
    config.database_url = None;
    let mut node = Serve::start(&config, &[]);
    node.wait_serving();
    funded_accounts(gateway(&config), 5);
    let journal = config.journal_dir();
    let seq_last = journal_seq_last(&journal);
    let sqlite = kuku_persistence::DatabaseUrl::sqlite_file(&config.data_dir.join("kuku.sqlite"));
    let deadline = Instant::now() + WAIT;
    loop {
        let checkpoint = kuku_persistence::block_on(kuku_persistence::db::peek_checkpoint(
            &sqlite,
            Duration::from_secs(5),
        ))
        .unwrap();
        if checkpoint.is_some_and(|c| c.seq >= seq_last) {
            break;
        }
        assert!(Instant::now() < deadline, "the database never caught up");
        std::thread::sleep(Duration::from_millis(20));
    }
    node.kill();
    assert_eq!(
        JournalReader::open(&journal).unwrap().durable_watermark(),
        0
    );
    let bad_seq = seq_last - 3;
    let (segment, damaged) = flip_payload_bit(&journal, bad_seq);
    let log = refused(&config, "the query database at");
    assert!(
        log.contains(&format!("cuts its torn tail at seq {bad_seq}")),
        "{log}"
    );
    assert_eq!(std::fs::read(&segment).unwrap(), damaged, "nothing was cut");
    assert!(!journal.join(QUARANTINE_DIR_NAME).exists());

    // Without that database the cut is allowed: quarantined, logged at WARN, and the node
    // serves.
    config.database_url = Some("none".into());
    let mut node = Serve::start(&config, &[]);
    node.wait_serving();
    let log = node.log();
    assert!(log.contains("WARN") && log.contains("TORN TAIL"), "{log}");
    node.stop();
    let quarantined: Vec<_> = std::fs::read_dir(journal.join(QUARANTINE_DIR_NAME))
        .unwrap()
        .collect();
    assert_eq!(quarantined.len(), 1);
    assert!(journal_seq_last(&journal) >= bad_seq - 1);
}

#[test]
fn heavy_a_full_disk_refuses_a_new_journal_and_fail_stops_a_running_node() {
    let root = tempfile::tempdir().unwrap();
    // The first segment of a new journal cannot be prepared: a clear start-up refusal.
    let config = node_config(root.path(), "fresh", "none");
    let mut node = Serve::start(
        &config,
        &[(
            kuku_journal::failpoint::FAILPOINT_ENV,
            "journal::segment_enospc=1",
        )],
    );
    let status = node.wait_exit();
    let log = node.log();
    assert_eq!(status.code(), Some(1), "{log}");
    assert!(log.contains("no space left on the device"), "{log}");

    // A running node whose next segment cannot be prepared: fail-stop, nothing lost.
    let mut config = node_config(root.path(), "running", "none");
    config.segment_mib = 1;
    config.gateway.rate_per_s = 1_000_000;
    config.gateway.burst = 1_000_000;
    let mut node = Serve::start(
        &config,
        &[(
            kuku_journal::failpoint::FAILPOINT_ENV,
            "journal::segment_enospc=2",
        )],
    );
    node.wait_serving();
    let account = funded_accounts(gateway(&config), 1)[0];
    let token = kuku_gateway::auth::Secret::from_bytes(SECRET).account_token(account);
    let (mut client, _) =
        TradingClient::login(gateway(&config), account, token, LoginOptions::default()).unwrap();
    // Until the market opens (the scheduler opens it after the bootstrap).
    let deadline = Instant::now() + WAIT;
    while !matches!(client.place(buy(1, 100_000)), Ok(Message::OrderAccepted(_))) {
        assert!(Instant::now() < deadline, "the market never opened");
        std::thread::sleep(Duration::from_millis(20));
    }
    // Orders in bursts of 500 until the node stops; count the acknowledged ones. A 1 MiB
    // segment holds about 16,000 orders; the next one is prepared at half of it.
    let mut acknowledged = Vec::new();
    let mut key = 10_000u64;
    let status = loop {
        assert!(key < 100_000, "the node never stopped:\n{}", node.log());
        let last = key + 500;
        let mut sent_all = true;
        while key < last {
            key += 1;
            let spec = buy(1, 100_000 + (key % 100) as i64 * 100);
            let order = NewOrder {
                client_order_id: ClientOrderId(key),
                symbol: spec.symbol,
                side: spec.side,
                order_type: spec.order_type,
                tif: spec.tif,
                price: spec.price,
                qty: spec.qty,
            };
            if client.send(order).is_err() {
                sent_all = false;
                break;
            }
        }
        let mut answered_all = false;
        while sent_all && !answered_all {
            match client.next_message(Duration::from_secs(5)) {
                Ok(Some(Message::OrderAccepted(a))) => acknowledged.push(a.client_order_id.0),
                Ok(Some(Message::OrderRejected(r))) => acknowledged.push(r.client_order_id.0),
                Ok(Some(_)) => continue,
                Ok(None) | Err(_) => break,
            }
            answered_all = acknowledged.last() == Some(&key);
        }
        if !answered_all {
            break node.wait_exit();
        }
    };
    let log = node.log();
    assert_eq!(
        status.code(),
        Some(kuku_server::failstop::EXIT_LOG_FAILURE),
        "{log}"
    );
    let fail_stop = log
        .lines()
        .find(|l| l.contains("kuku: FAIL-STOP:"))
        .unwrap_or_else(|| panic!("no FAIL-STOP line:\n{log}"));
    assert!(
        fail_stop.contains("no space left on the device"),
        "{fail_stop}"
    );
    assert!(acknowledged.len() > 1_000, "{} orders", acknowledged.len());
    // Restarted with space again: every acknowledged order is in the journal.
    let mut node = Serve::start(&config, &[]);
    node.wait_serving();
    node.stop();
    let journal = config.journal_dir();
    let reader = JournalReader::open(&journal).unwrap();
    let mut journaled = std::collections::BTreeSet::new();
    for frame in reader.frames_from(1).unwrap() {
        let frame = frame.unwrap();
        if let kuku_engine::Command::PlaceOrder(o) =
            kuku_journal::decode_command(frame.payload).unwrap()
        {
            journaled.insert(o.client_order_id.0);
        }
    }
    for key in &acknowledged {
        assert!(journaled.contains(key), "acknowledged order {key} was lost");
    }
    let engine = kuku_journal::meta_file::read_config(&journal).unwrap();
    let verified = kuku_journal::tool::verify(&journal, &engine).unwrap();
    assert!(verified.passed(), "{:?}", verified.failures);
}
