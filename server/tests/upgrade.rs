//! The upgrade path, with real `kuku` processes: one binary plays the old build and, with the
//! engine-logic version override of test builds (`KUKU_ENGINE_LOGIC_VERSION_OVERRIDE`), the
//! new one. The old build writes a final snapshot when it stops cleanly; the new build
//! refuses the old data directory (pointing at `kuku upgrade`); `kuku upgrade` starts a new
//! journal from the snapshot (same state hash) and keeps the old journal; the new build then
//! serves the carried-over state. What cannot be carried over is refused, naming the file: a
//! node that did not stop cleanly (no final snapshot), a snapshot the new build cannot read.
//!
//! Heavy (child processes): `heavy_*`, one at a time. Every wait is bounded in time.

mod support;

use kuku_engine::{AccountId, Amount, ENGINE_LOGIC_VERSION, ExternalRef};
use kuku_gateway::client::{AdminClient, LoginOptions, TradingClient};
use kuku_gateway::protocol::Message;
use kuku_journal::upgrade::ENGINE_LOGIC_VERSION_OVERRIDE_ENV;
use kuku_journal::{JournalReader, SnapshotStore};
use kuku_server::config::NodeConfig;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command as Process, Output};
use std::time::{Duration, Instant};
use support::process::{KUKU, Serve, WAIT};
use support::{ADMIN_TOKEN, SECRET, buy};

fn free_addr() -> SocketAddr {
    support::listen_addr()
}

fn node_config(root: &Path) -> NodeConfig {
    let mut c = support::config(&root.join("node"));
    c.durability = "every-batch".into();
    // The embedded SQLite query store (kuku upgrade checks it caught up).
    c.database_url = None;
    c.gateway.listen = free_addr().to_string();
    c
}

fn gateway(c: &NodeConfig) -> SocketAddr {
    c.gateway.listen.parse().expect("an address")
}

fn new_version() -> String {
    (ENGINE_LOGIC_VERSION + 1).to_string()
}

/// `kuku upgrade` on the node's config, as the new build.
fn kuku_upgrade(config: &NodeConfig) -> Output {
    let toml_path = config.data_dir.with_extension("toml");
    std::fs::write(&toml_path, toml::to_string(config).unwrap()).unwrap();
    Process::new(KUKU)
        .args(["upgrade", "--config"])
        .arg(&toml_path)
        .env(ENGINE_LOGIC_VERSION_OVERRIDE_ENV, new_version())
        .output()
        .expect("kuku upgrade runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn admin(addr: SocketAddr) -> AdminClient {
    let deadline = Instant::now() + WAIT;
    loop {
        match AdminClient::login(addr, ADMIN_TOKEN) {
            Ok(a) => return a,
            Err(e) => assert!(Instant::now() < deadline, "no admin login: {e}"),
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn trader(addr: SocketAddr, account: AccountId) -> TradingClient {
    let token = kuku_gateway::auth::Secret::from_bytes(SECRET).account_token(account);
    TradingClient::login(addr, account, token, LoginOptions::default())
        .expect("login")
        .0
}

/// A node of the old build with an account and a resting order, stopped cleanly.
fn old_node_stopped(config: &NodeConfig) -> (AccountId, u64) {
    let mut node = Serve::start(config, &[]);
    node.wait_serving();
    let mut a = admin(gateway(config));
    let opened = a.open_account(ExternalRef::new("kim").unwrap()).unwrap();
    let account = opened.account;
    let d = a
        .deposit(
            account,
            Amount(50_000_000),
            ExternalRef::new("dep").unwrap(),
        )
        .unwrap();
    assert_eq!(d.code, 0, "{d:?}");
    let mut c = trader(gateway(config), account);
    let deadline = Instant::now() + WAIT;
    let order = loop {
        match c.place(buy(3, 100_000)) {
            Ok(Message::OrderAccepted(acc)) => break acc.order_id.0,
            _ => assert!(Instant::now() < deadline, "the market never opened"),
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    drop(c);
    node.stop();
    (account, order)
}

fn state_hash_at_end(journal: &Path, config: &NodeConfig) -> (u64, u64) {
    let (engine, _) = kuku_journal::state::recover_engine(journal, &config.engine).unwrap();
    (engine.last_seq(), engine.state_hash())
}

fn segment_count(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter(|e| {
                    e.as_ref()
                        .is_ok_and(|e| e.path().extension().is_some_and(|x| x == "seg"))
                })
                .count()
        })
        .unwrap_or(0)
}

#[test]
fn heavy_kuku_upgrade_moves_a_data_directory_to_a_new_engine_logic_version() {
    let root = tempfile::tempdir().unwrap();
    let config = node_config(root.path());
    let (account, order) = old_node_stopped(&config);
    let journal = config.journal_dir();
    let (seq_last, hash) = state_hash_at_end(&journal, &config);
    let snapshots = SnapshotStore::open(&journal).unwrap().list().unwrap();
    assert_eq!(
        snapshots.last().map(|s| s.seq),
        Some(seq_last),
        "the clean stop wrote a final snapshot"
    );

    // The new build refuses the old journal, and says what to do.
    let mut node = Serve::start(
        &config,
        &[(ENGINE_LOGIC_VERSION_OVERRIDE_ENV, &new_version())],
    );
    let status = node.wait_exit();
    let log = node.log();
    assert_eq!(status.code(), Some(1), "{log}");
    assert!(log.contains("kuku upgrade"), "{log}");

    let out = kuku_upgrade(&config);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    assert!(
        stdout.contains(&format!(
            "from engine-logic version {ENGINE_LOGIC_VERSION} to {} at seq {seq_last}",
            ENGINE_LOGIC_VERSION + 1
        )),
        "{stdout}"
    );
    assert!(stdout.contains(&format!("{hash:#018x}")), "{stdout}");
    // The old journal is kept whole; the new one starts right after its last seq.
    let archive: PathBuf = config
        .data_dir
        .join(format!("journal-v{ENGINE_LOGIC_VERSION}-seq-1-{seq_last}"));
    assert!(segment_count(&archive) >= 1, "{}", archive.display());
    let reader = JournalReader::open(&journal).unwrap();
    assert_eq!(reader.seq_first(), seq_last + 1);
    assert_eq!(
        reader.meta().unwrap().engine_logic_version,
        ENGINE_LOGIC_VERSION + 1
    );
    let store = SnapshotStore::open(&journal).unwrap();
    let carried = store
        .read(&store.list().unwrap()[0].path)
        .expect("the snapshot under the new version");
    assert_eq!(
        (
            carried.meta.seq,
            carried.meta.state_hash,
            carried.meta.engine_logic_version
        ),
        (seq_last, hash, ENGINE_LOGIC_VERSION + 1)
    );

    // The new build serves the carried-over state: the account, its money, its order.
    let mut node = Serve::start(
        &config,
        &[(ENGINE_LOGIC_VERSION_OVERRIDE_ENV, &new_version())],
    );
    node.wait_serving();
    let mut c = trader(gateway(&config), account);
    let (open, _) = c.open_orders(None).unwrap();
    assert!(
        open.iter().any(|o| o.order_id.0 == order),
        "the resting order carried over: {open:?}"
    );
    let placed = c.place(buy(1, 100_100)).unwrap();
    assert!(matches!(placed, Message::OrderAccepted(_)), "{placed:?}");
    drop(c);
    node.stop();
    // Running it again has nothing to do.
    let again = kuku_upgrade(&config);
    assert!(!again.status.success());
    assert!(
        text(&again.stderr).contains("already at engine-logic version"),
        "{}",
        text(&again.stderr)
    );
}

#[test]
fn heavy_kuku_upgrade_refuses_what_it_cannot_carry_over() {
    // A node that did not stop cleanly left no final snapshot.
    let root = tempfile::tempdir().unwrap();
    let config = node_config(root.path());
    let mut node = Serve::start(&config, &[]);
    node.wait_serving();
    admin(gateway(&config))
        .open_account(ExternalRef::new("lee").unwrap())
        .unwrap();
    node.kill();
    let journal = config.journal_dir();
    let out = kuku_upgrade(&config);
    let stderr = text(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("no final snapshot"), "{stderr}");
    assert!(stderr.contains(&journal.display().to_string()), "{stderr}");

    // A final snapshot whose format the new build cannot read is refused with its path, and
    // nothing changes.
    let root = tempfile::tempdir().unwrap();
    let config = node_config(root.path());
    old_node_stopped(&config);
    let journal = config.journal_dir();
    let store = SnapshotStore::open(&journal).unwrap();
    let last = store.list().unwrap().pop().unwrap();
    let mut snapshot = store.read(&last.path).unwrap();
    snapshot.payload[0] = 99; // a snapshot codec this build does not know
    SnapshotStore::create(&journal)
        .unwrap()
        .write(&snapshot.meta, &snapshot.payload)
        .unwrap();
    let segments = segment_count(&journal);
    let out = kuku_upgrade(&config);
    let stderr = text(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("cannot be read by this build"), "{stderr}");
    assert!(
        stderr.contains(&last.path.display().to_string()),
        "{stderr}"
    );
    assert_eq!(segment_count(&journal), segments);
    assert_eq!(
        JournalReader::open(&journal)
            .unwrap()
            .meta()
            .unwrap()
            .engine_logic_version,
        ENGINE_LOGIC_VERSION
    );
    assert!(
        !std::fs::read_dir(&config.data_dir).unwrap().any(|e| e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .starts_with("journal-v")),
        "no archive: nothing was moved"
    );
}
