//! Replication and failover with real `kuku serve` processes on 127.0.0.1: a primary
//! and a hot standby in `sync` mode, SIGKILL, `kuku promote` (its library call), rejoin with
//! truncation, fencing, a cut replication link (through a test proxy), and the handshake's
//! refusals. Every wait is bounded in time; the tests are `heavy_` (run one at a time).
//!
//! `KUKU_FAILOVER_CYCLES=20` runs the long mode of the failover-under-load test (default 3).

mod support;

use kuku_engine::ClientOrderId;
use kuku_engine::{AccountId, Amount, EngineConfig, Event, EventSink, ExternalRef};
use kuku_gateway::GatewayError;
use kuku_gateway::auth::encode_hex;
use kuku_gateway::client::{AdminClient, FailoverClient, LoginOptions, TradingClient};
use kuku_gateway::protocol::Message;
use kuku_journal::JournalReader;
use kuku_journal::state::{RecoverOptions, recover_engine_with};
use kuku_server::config::NodeConfig;
use kuku_server::replication::wire::{self, Hello, Msg, RefuseCode};
use kuku_server::replication::{Mode, OnStandbyLoss, ReplicationSettings, StatusReport, control};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command as Process, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::{ADMIN_TOKEN, SECRET, buy};

const KUKU: &str = env!("CARGO_BIN_EXE_kuku");
const NOT_PRIMARY: u16 = 9014;

/// The line `kuku serve` logs once all its listeners are bound and it serves.
const SERVING_LINE: &str = "Kuku is serving.";

fn free_addr() -> SocketAddr {
    support::listen_addr()
}

fn wait_until(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn status(addr: SocketAddr) -> Option<StatusReport> {
    control::status(&addr.to_string(), Duration::from_secs(1)).ok()
}

/// One node's directories and addresses; its process when running.
struct NodeProc {
    name: &'static str,
    dir: PathBuf,
    gateway: SocketAddr,
    replication: SocketAddr,
    engine: EngineConfig,
    child: Option<Child>,
    /// How many times the log said [`SERVING_LINE`] before the running child was spawned.
    served_before_spawn: usize,
}

#[derive(Clone)]
struct Setup {
    on_loss: OnStandbyLoss,
    degrade_after_ms: u64,
    /// The primary journals a TakeSnapshot after this many commands (checked once a second);
    /// both nodes snapshot at it and compare state hashes.
    snapshot_every: u64,
    mode: Mode,
    heartbeat_timeout_ms: u64,
    /// An embedded SQLite query store (`false`: `database_url = none`).
    database: bool,
    /// How often the journal's watermark syncer runs (`durability = "none"`; 0: never).
    watermark_interval_ms: u64,
}

impl Default for Setup {
    fn default() -> Self {
        Setup {
            on_loss: OnStandbyLoss::Stall,
            degrade_after_ms: 2_000,
            snapshot_every: 200,
            mode: Mode::Sync,
            heartbeat_timeout_ms: 600,
            database: false,
            watermark_interval_ms: 1_000,
        }
    }
}

impl NodeProc {
    fn new(root: &Path, name: &'static str) -> NodeProc {
        let engine = EngineConfig {
            orders_max: 1 << 16,
            orders_per_account_day_max: 1 << 16,
            keys_max: 1 << 18,
            ..EngineConfig::small()
        };
        NodeProc {
            name,
            dir: root.join(name),
            gateway: free_addr(),
            replication: free_addr(),
            engine,
            child: None,
            served_before_spawn: 0,
        }
    }

    fn config(
        &self,
        setup: &Setup,
        standby_of: Option<SocketAddr>,
        peers: &[SocketAddr],
    ) -> NodeConfig {
        let mut c = support::config(&self.dir);
        c.engine = self.engine;
        if !setup.database {
            c.database_url = Some("none".into());
        }
        c.snapshot_every = setup.snapshot_every;
        c.watermark_interval_ms = setup.watermark_interval_ms;
        c.gateway.listen = self.gateway.to_string();
        c.replication = ReplicationSettings {
            mode: setup.mode,
            listen: Some(self.replication.to_string()),
            standby_of: standby_of.map(|a| a.to_string()),
            peers: peers.iter().map(|p| p.to_string()).collect(),
            on_standby_loss: setup.on_loss,
            degrade_after_ms: setup.degrade_after_ms,
            heartbeat_interval_ms: 100,
            heartbeat_timeout_ms: setup.heartbeat_timeout_ms,
        };
        c
    }

    /// Starts `kuku serve` (stderr appended to `<name>.log` next to the data directory).
    fn spawn(&mut self, setup: &Setup, standby_of: Option<SocketAddr>, peers: &[SocketAddr]) {
        assert!(self.child.is_none(), "{} already runs", self.name);
        let config = self.config(setup, standby_of, peers);
        let root = self.dir.parent().expect("a root").to_owned();
        let config_path = root.join(format!("{}.toml", self.name));
        std::fs::write(
            &config_path,
            toml::to_string(&config).expect("config to TOML"),
        )
        .unwrap();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(root.join(format!("{}.log", self.name)))
            .unwrap();
        self.served_before_spawn = self.log().matches(SERVING_LINE).count();
        let child = Process::new(KUKU)
            .args(["serve", "--config"])
            .arg(&config_path)
            .env("KUKU_GATEWAY_SECRET", encode_hex(&SECRET))
            .env("KUKU_ADMIN_TOKEN", encode_hex(&ADMIN_TOKEN))
            .env("KUKU_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("kuku serve starts");
        self.child = Some(child);
    }

    fn log(&self) -> String {
        let root = self.dir.parent().expect("a root");
        std::fs::read_to_string(root.join(format!("{}.log", self.name))).unwrap_or_default()
    }

    fn wait_role(&mut self, role: &str) -> StatusReport {
        let mut last = None;
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Some(c) = self.child.as_mut()
                && let Ok(Some(exit)) = c.try_wait()
            {
                panic!(
                    "{} exited ({exit}) before becoming {role}:\n{}",
                    self.name,
                    self.log()
                );
            }
            if let Some(s) = status(self.replication) {
                if s.role == role && (role == "fenced" || self.serves()) {
                    return s;
                }
                last = Some(s);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!(
            "{} never became {role}: {last:?}\n{}",
            self.name,
            self.log()
        );
    }

    /// True once the running child logged that it serves. A node answers status requests on
    /// its replication address before it binds its gateway (the gateway listens last), so
    /// its role alone does not say that its start-up succeeded.
    fn serves(&self) -> bool {
        self.log().matches(SERVING_LINE).count() > self.served_before_spawn
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill(); // SIGKILL
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait for a clean exit.
    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SAFETY: kill(2) with a child's pid we own and have not reaped.
            unsafe {
                libc::kill(c.id() as i32, libc::SIGTERM);
            }
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                if let Ok(Some(_)) = c.try_wait() {
                    break;
                }
                if Instant::now() > deadline {
                    let _ = c.kill();
                    let _ = c.wait();
                    panic!("{} did not stop within 30 s:\n{}", self.name, self.log());
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    fn journal(&self) -> PathBuf {
        self.dir.join("journal")
    }
}

impl Drop for NodeProc {
    fn drop(&mut self) {
        self.kill();
    }
}

fn promote(node: &NodeProc) -> String {
    control::promote(&node.replication.to_string(), ADMIN_TOKEN)
        .unwrap_or_else(|e| panic!("promote {}: {e:#}\n{}", node.name, node.log()))
}

fn admin(addr: SocketAddr) -> AdminClient {
    let mut last = None;
    for _ in 0..500 {
        match AdminClient::login(addr, ADMIN_TOKEN) {
            Ok(a) => return a,
            Err(e) => last = Some(e),
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("no admin login at {addr}: {last:?}");
}

/// Opens and funds `n` accounts on the primary; returns them.
fn funded_accounts(addr: SocketAddr, n: usize) -> Vec<AccountId> {
    let mut a = admin(addr);
    (0..n)
        .map(|i| {
            let r = a
                .open_account(ExternalRef::new(&format!("trader-{i}")).unwrap())
                .unwrap();
            assert_eq!(r.code, 0, "{r:?}");
            let d = a
                .deposit(
                    r.account,
                    Amount(10_000_000_000),
                    ExternalRef::new(&format!("dep-{i}")).unwrap(),
                )
                .unwrap();
            assert_eq!(d.code, 0, "{d:?}");
            r.account
        })
        .collect()
}

fn token(account: AccountId) -> [u8; 32] {
    kuku_gateway::auth::Secret::from_bytes(SECRET).account_token(account)
}

/// Logs in to whichever of `addrs` is the primary, retrying for up to `timeout`.
fn login_any(
    addrs: &[SocketAddr],
    account: AccountId,
    options: LoginOptions,
    timeout: Duration,
) -> (TradingClient, Vec<Message>) {
    let deadline = Instant::now() + timeout;
    loop {
        match TradingClient::login_any(addrs, account, token(account), options) {
            Ok((c, replayed, _)) => return (c, replayed),
            Err(e) => assert!(Instant::now() < deadline, "no primary among {addrs:?}: {e}"),
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// Places an order until the market is open (the scheduler opens it after bootstrap).
fn wait_market_open(addrs: &[SocketAddr], account: AccountId) {
    let (mut c, _) = login_any(
        addrs,
        account,
        LoginOptions::default(),
        Duration::from_secs(30),
    );
    wait_until("the market to open", Duration::from_secs(30), || {
        matches!(c.place(buy(1, 100_000)), Ok(Message::OrderAccepted(_)))
    });
}

/// What a trader saw: each acknowledged key with its order id; how often it resent.
#[derive(Default, Debug)]
struct TraderLog {
    accepted: Vec<(u64, u64)>,
    rejected: Vec<u64>,
    resends: u64,
}

/// Places orders with fresh keys until `stop` through the library's [`FailoverClient`]: on a
/// lost connection or a timeout it logs in to the current primary and resends the same key.
fn trader(
    addrs: Vec<SocketAddr>,
    account: AccountId,
    stop: Arc<AtomicBool>,
    progress: Arc<AtomicU64>,
) -> TraderLog {
    let mut log = TraderLog::default();
    let mut client = FailoverClient::new(&addrs, account, token(account));
    let mut key = 1_000_000 * u64::from(account.0);
    while !stop.load(Ordering::Relaxed) {
        key += 1;
        let spec = kuku_gateway::client::OrderSpec {
            client_order_id: Some(ClientOrderId(key)),
            ..buy(1 + (key % 3) as i64, 110_000 + (key % 50) as i64 * 100)
        };
        let mut busy = 0;
        loop {
            match client.place(spec) {
                Ok(Message::OrderAccepted(a)) => {
                    log.accepted.push((key, a.order_id.0));
                    break;
                }
                // Busy and RateLimited did not use the key: send it again.
                Ok(Message::OrderRejected(r)) if r.reason == 9001 || r.reason == 9002 => {
                    busy += 1;
                    assert!(busy < 1_000, "key {key}: busy for ever");
                    std::thread::sleep(Duration::from_millis(5));
                }
                Ok(Message::OrderRejected(_)) => {
                    log.rejected.push(key);
                    break;
                }
                Ok(other) => panic!("unexpected reply {other:?}"),
                Err(e) => panic!("key {key}: no outcome across failovers: {e}"),
            }
        }
        progress.fetch_add(1, Ordering::Relaxed);
    }
    log.resends = client.resends;
    log
}

/// Collects who created which order while a journal is replayed.
#[derive(Default)]
struct Created {
    by_key: BTreeMap<(u32, u64), Vec<u64>>,
}

impl EventSink for Created {
    fn emit(&mut self, event: &Event) {
        if let Event::OrderAccepted {
            order,
            resent: false,
            ..
        } = event
        {
            self.by_key
                .entry((order.account.0, order.client_order_id.0))
                .or_default()
                .push(order.order_id.0);
        }
    }
}

/// Replays a journal from genesis: the orders created and the final state hash.
fn replay(dir: &Path, engine: &EngineConfig) -> (Created, u64, u64) {
    let reader = JournalReader::open(dir).unwrap();
    let mut e = kuku_engine::Engine::new(*engine);
    let mut created = Created::default();
    kuku_journal::state::replay_journal(&reader, &mut e, u64::MAX, &mut created).unwrap();
    e.check_invariants()
        .expect("the ledger balances and the books are consistent");
    (created, e.state_hash(), e.last_seq())
}

/// A fenced node refuses a trading login with NotPrimary.
/// (Its gateway listens once its start-up is complete, which may be after its replication
/// address already reports the role: a refused connection is retried for a while.)
fn assert_refuses_logins(node: &NodeProc, account: AccountId) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match TradingClient::login(
            node.gateway,
            account,
            token(account),
            LoginOptions::default(),
        ) {
            Err(GatewayError::LoginRejected { code }) => {
                assert_eq!(code, NOT_PRIMARY);
                return;
            }
            Err(GatewayError::Io(e))
                if e.kind() == std::io::ErrorKind::ConnectionRefused
                    && Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(20));
            }
            other => panic!("a fenced node took a login: {:?}", other.map(|_| ())),
        }
    }
}

fn start_pair(root: &Path, setup: &Setup) -> (NodeProc, NodeProc) {
    let mut a = NodeProc::new(root, "a");
    let mut b = NodeProc::new(root, "b");
    a.spawn(setup, None, &[b.replication]);
    a.wait_role("primary");
    b.spawn(setup, Some(a.replication), &[a.replication]);
    b.wait_role("standby");
    (a, b)
}

fn wait_caught_up(primary: &NodeProc, standby: &NodeProc) {
    wait_until(
        "the standby to catch up",
        Duration::from_secs(30),
        || match (status(primary.replication), status(standby.replication)) {
            (Some(p), Some(s)) => p.applied_seq > 0 && s.applied_seq == p.applied_seq,
            _ => false,
        },
    );
}

/// Why a node's role is not enough to call it up: a primary answers status requests on its
/// replication address before its gateway binds (the gateway listens last); when the gateway's
/// port is taken, the node reports its role and then exits, and a standby started on the role
/// alone finds nothing to join (connection refused until its join deadline).
#[test]
fn heavy_a_primary_whose_gateway_port_is_taken_reports_its_role_then_exits() {
    let root = tempfile::tempdir().unwrap();
    let mut a = NodeProc::new(root.path(), "a");
    let taken = TcpListener::bind(a.gateway).expect("the gateway's port is free");
    a.spawn(&Setup::default(), None, &[]);
    let deadline = Instant::now() + Duration::from_secs(30);
    let exit = loop {
        if let Some(exit) = a.child.as_mut().and_then(|c| c.try_wait().unwrap()) {
            break exit;
        }
        assert!(Instant::now() < deadline, "a started on a taken port");
        std::thread::sleep(Duration::from_millis(20));
    };
    drop(taken);
    assert!(!exit.success());
    let log = a.log();
    assert!(
        log.contains("The replication listener is up."),
        "the replication listener answers before the gateway binds:\n{log}"
    );
    assert!(
        log.contains(&format!("cannot listen on {}", a.gateway)),
        "{log}"
    );
    assert!(!a.serves(), "{log}");
}

#[test]
fn heavy_failover_under_load_loses_and_duplicates_nothing() {
    let cycles: usize = std::env::var("KUKU_FAILOVER_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let root = tempfile::tempdir().unwrap();
    let setup = Setup::default();
    let (a, b) = start_pair(root.path(), &setup);
    let mut nodes = [a, b];
    let addrs = vec![nodes[0].gateway, nodes[1].gateway];
    let accounts = funded_accounts(nodes[0].gateway, 3);
    wait_market_open(&addrs, accounts[0]);
    let stop = Arc::new(AtomicBool::new(false));
    let progress = Arc::new(AtomicU64::new(0));
    let traders: Vec<_> = accounts
        .iter()
        .map(|&account| {
            let (addrs, stop, progress) = (addrs.clone(), Arc::clone(&stop), Arc::clone(&progress));
            std::thread::spawn(move || trader(addrs, account, stop, progress))
        })
        .collect();
    let mut primary = 0;
    for cycle in 0..cycles {
        let before = progress.load(Ordering::Relaxed);
        wait_until("orders to flow", Duration::from_secs(30), || {
            progress.load(Ordering::Relaxed) >= before + 150
        });
        let standby = 1 - primary;
        nodes[primary].kill();
        let promoted = promote(&nodes[standby]);
        eprintln!(
            "cycle {cycle}: {} promoted: {promoted}",
            nodes[standby].name
        );
        let new_primary_repl = nodes[standby].replication;
        nodes[primary].spawn(&setup, Some(new_primary_repl), &[new_primary_repl]);
        nodes[primary].wait_role("standby");
        primary = standby;
    }
    let before = progress.load(Ordering::Relaxed);
    wait_until(
        "orders to flow after the last failover",
        Duration::from_secs(30),
        || progress.load(Ordering::Relaxed) >= before + 100,
    );
    stop.store(true, Ordering::Relaxed);
    let logs: Vec<TraderLog> = traders.into_iter().map(|t| t.join().unwrap()).collect();
    wait_caught_up(&nodes[primary], &nodes[1 - primary]);
    let standby = 1 - primary;
    // The primary first: its last commands (e.g. a timer's TakeSnapshot) are acked by the
    // standby before they are applied; stopping the standby first could leave one journaled
    // only on the primary (an unacknowledged tail, which a rejoin would truncate).
    nodes[primary].stop();
    nodes[standby].stop();

    let engine = nodes[primary].engine;
    let (created, hash, seq_last) = replay(&nodes[primary].journal(), &engine);
    let (_, standby_hash, standby_seq) = replay(&nodes[standby].journal(), &engine);
    assert_eq!(
        (standby_seq, standby_hash),
        (seq_last, hash),
        "the standby's journal replays to the primary's state"
    );
    // The recovered state (newest snapshot + replay) equals the clean replay.
    let (recovered, _) =
        recover_engine_with(nodes[primary].journal(), &engine, RecoverOptions::default()).unwrap();
    assert_eq!(recovered.state_hash(), hash);
    let mut acknowledged = 0;
    let mut resends = 0;
    for (account, log) in accounts.iter().zip(&logs) {
        resends += log.resends;
        for &(key, order_id) in &log.accepted {
            let ids = created
                .by_key
                .get(&(account.0, key))
                .map(Vec::as_slice)
                .unwrap_or(&[]);
            assert_eq!(
                ids,
                [order_id],
                "account {} key {key}: acknowledged once as order {order_id}",
                account.0
            );
            acknowledged += 1;
        }
    }
    for (key, ids) in &created.by_key {
        assert_eq!(ids.len(), 1, "{key:?} created {ids:?}");
    }
    for node in &nodes {
        assert!(!node.log().contains("DIVERGENCE ALARM"), "{}", node.log());
    }
    eprintln!(
        "{cycles} failovers: {acknowledged} acknowledged orders, {resends} resends, seq {seq_last}, hash {hash:#018x}"
    );
    assert!(acknowledged > 150 * cycles as u64 / 2);
}

#[test]
fn heavy_old_primary_is_fenced_and_rejoins_with_its_tail_truncated() {
    let root = tempfile::tempdir().unwrap();
    let setup = Setup::default();
    let mut a = NodeProc::new(root.path(), "a");
    let mut b = NodeProc::new(root.path(), "b");
    let proxy = Proxy::start(a.replication);
    a.spawn(&setup, None, &[b.replication]);
    a.wait_role("primary");
    b.spawn(&setup, Some(proxy.addr), &[a.replication]);
    b.wait_role("standby");
    let accounts = funded_accounts(a.gateway, 1);
    let addrs = [a.gateway];
    wait_market_open(&addrs, accounts[0]);
    wait_caught_up(&a, &b);
    // Cut the link: the next order is journaled on A but never reaches B.
    proxy.cut();
    let a_seq_before = status(a.replication).unwrap().journaled_seq;
    let (mut c, _) = login_any(
        &addrs,
        accounts[0],
        LoginOptions::default(),
        Duration::from_secs(10),
    );
    let spec = buy(7, 111_100);
    c.send(kuku_gateway::protocol::NewOrder {
        client_order_id: ClientOrderId(777),
        symbol: spec.symbol,
        side: spec.side,
        order_type: spec.order_type,
        tif: spec.tif,
        price: spec.price,
        qty: spec.qty,
    })
    .unwrap();
    wait_until(
        "A to journal the unreplicated order",
        Duration::from_secs(10),
        || {
            std::fs::read_dir(a.journal()).is_ok()
                && JournalReader::open(a.journal())
                    .ok()
                    .and_then(|r| {
                        r.frames_from(a_seq_before + 1)
                            .ok()
                            .map(|mut f| f.next().is_some())
                    })
                    .unwrap_or(false)
        },
    );
    assert_eq!(
        status(a.replication).unwrap().applied_seq,
        a_seq_before,
        "sync: not applied without an ack"
    );
    a.kill();
    drop(c);
    promote(&b);
    // B decides differently at the same seq.
    let (mut c, _) = login_any(
        &[b.gateway],
        accounts[0],
        LoginOptions::default(),
        Duration::from_secs(10),
    );
    // In sync mode B stalls until a standby is back: A restarted as a *primary* must refuse.
    a.spawn(&setup, None, &[b.replication]);
    let fenced = a.wait_role("fenced");
    assert!(!fenced.degraded);
    assert_refuses_logins(&a, accounts[0]);
    assert!(a.log().contains("FENCED"), "{}", a.log());
    a.stop();
    // Rejoin as a standby: the unreplicated tail goes, B's history comes.
    a.spawn(&setup, Some(b.replication), &[b.replication]);
    a.wait_role("standby");
    assert!(a.log().contains("REJOIN"), "{}", a.log());
    let placed = c.place(kuku_gateway::client::OrderSpec {
        client_order_id: Some(ClientOrderId(888)),
        ..buy(2, 111_200)
    });
    assert!(
        matches!(placed, Ok(Message::OrderAccepted(_))),
        "{placed:?}"
    );
    wait_caught_up(&b, &a);
    b.stop(); // the primary first (see the failover test)
    a.stop();
    let engine = a.engine;
    let (created_b, hash_b, seq_b) = replay(&b.journal(), &engine);
    let (created_a, hash_a, seq_a) = replay(&a.journal(), &engine);
    assert_eq!((seq_a, hash_a), (seq_b, hash_b));
    let acct = accounts[0].0;
    assert!(
        !created_a.by_key.contains_key(&(acct, 777)),
        "the truncated order is gone"
    );
    assert!(created_a.by_key.contains_key(&(acct, 888)));
    assert_eq!(created_a.by_key, created_b.by_key);
}

#[test]
fn heavy_reconnect_to_promoted_node_replays_what_the_old_primary_would_have() {
    let root = tempfile::tempdir().unwrap();
    let setup = Setup {
        snapshot_every: 5,
        ..Setup::default()
    };
    let (mut a, b) = start_pair(root.path(), &setup);
    let accounts = funded_accounts(a.gateway, 2);
    let addrs = [a.gateway, b.gateway];
    wait_market_open(&addrs, accounts[0]);
    let (mut c, _) = login_any(
        &addrs,
        accounts[0],
        LoginOptions::default(),
        Duration::from_secs(10),
    );
    let seen_at = c.last_seen_acct_seq;
    for i in 0..8 {
        let placed = c.place(buy(1 + i, 112_000 + i * 100)).unwrap();
        assert!(matches!(placed, Message::OrderAccepted(_)), "{placed:?}");
    }
    wait_caught_up(&a, &b);
    // The primary's snapshot hashes reach the standby, which compares them with its own.
    wait_until(
        "a state-hash comparison on the standby",
        Duration::from_secs(15),
        || b.log().contains("State hash matches the primary's"),
    );
    assert!(!b.log().contains("DIVERGENCE ALARM"));
    let (_, from_old) = TradingClient::login(
        a.gateway,
        accounts[0],
        token(accounts[0]),
        LoginOptions::default_from(seen_at),
    )
    .unwrap();
    assert!(from_old.len() >= 8, "{from_old:?}");
    a.kill();
    promote(&b);
    let (_, from_new) = TradingClient::login(
        b.gateway,
        accounts[0],
        token(accounts[0]),
        LoginOptions::default_from(seen_at),
    )
    .unwrap();
    assert_eq!(
        from_new, from_old,
        "the promoted node replays the same messages"
    );
}

#[test]
fn heavy_standby_with_other_capacities_or_engine_version_is_refused() {
    let root = tempfile::tempdir().unwrap();
    let setup = Setup::default();
    let mut a = NodeProc::new(root.path(), "a");
    a.spawn(&setup, None, &[]);
    a.wait_role("primary");
    // A different [engine] configuration: refused with a clear message, and the standby exits.
    let mut b = NodeProc::new(root.path(), "b");
    b.engine.orders_max *= 2;
    b.spawn(&setup, Some(a.replication), &[]);
    let mut child = b.child.take().unwrap();
    let exit = (0..1_500)
        .find_map(|_| {
            std::thread::sleep(Duration::from_millis(20));
            child.try_wait().unwrap()
        })
        .expect("the mismatched standby exits");
    assert!(!exit.success());
    assert!(b.log().contains("capacities hash mismatch"), "{}", b.log());
    assert!(a.log().contains("capacities hash mismatch"), "{}", a.log());
    // A different engine-logic version (another build): refused at the handshake.
    let meta = kuku_journal::state::journal_meta(&a.engine, 0);
    let mut s = TcpStream::connect(a.replication).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    wire::write_msg(
        &mut s,
        &Msg::Hello(Hello {
            wire_version: wire::WIRE_VERSION,
            engine_logic_version: meta.engine_logic_version + 1,
            capacities_hash: meta.capacities_hash,
            epoch: 0,
            seq_last: 0,
        }),
    )
    .unwrap();
    match wire::read_msg(&mut s).unwrap() {
        Msg::Refused { code, reason } => {
            assert_eq!(code, RefuseCode::EngineLogicVersion as u16);
            assert!(reason.contains("engine-logic version mismatch"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    // A standby from a newer epoch tells an old primary it is stale: it fences itself.
    let mut s = TcpStream::connect(a.replication).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    wire::write_msg(
        &mut s,
        &Msg::Hello(Hello {
            wire_version: wire::WIRE_VERSION,
            engine_logic_version: meta.engine_logic_version,
            capacities_hash: meta.capacities_hash,
            epoch: 5,
            seq_last: 0,
        }),
    )
    .unwrap();
    match wire::read_msg(&mut s).unwrap() {
        Msg::Refused { code, .. } => assert_eq!(code, RefuseCode::StaleEpoch as u16),
        other => panic!("{other:?}"),
    }
    a.wait_role("fenced");
}

/// Cut in sync mode: `stall` holds the order until the standby is back; `degrade` goes on
/// alone after `degrade_after_ms` and the standby catches up later. Nothing is lost either way.
#[test]
fn heavy_cut_replication_link_stalls_or_degrades_as_configured() {
    for on_loss in [OnStandbyLoss::Stall, OnStandbyLoss::Degrade] {
        let root = tempfile::tempdir().unwrap();
        let setup = Setup {
            on_loss,
            degrade_after_ms: 500,
            ..Setup::default()
        };
        let mut a = NodeProc::new(root.path(), "a");
        let mut b = NodeProc::new(root.path(), "b");
        let proxy = Proxy::start(a.replication);
        a.spawn(&setup, None, &[]);
        a.wait_role("primary");
        b.spawn(&setup, Some(proxy.addr), &[]);
        b.wait_role("standby");
        let accounts = funded_accounts(a.gateway, 1);
        wait_market_open(&[a.gateway], accounts[0]);
        wait_caught_up(&a, &b);
        proxy.cut();
        let (tx, rx) = std::sync::mpsc::channel();
        let (gw, account) = (a.gateway, accounts[0]);
        let placing = std::thread::spawn(move || {
            let (mut c, _) = login_any(
                &[gw],
                account,
                LoginOptions::default(),
                Duration::from_secs(10),
            );
            let started = Instant::now();
            let r = c.place(kuku_gateway::client::OrderSpec {
                client_order_id: Some(ClientOrderId(4242)),
                ..buy(3, 113_000)
            });
            tx.send((
                r.map(|m| matches!(m, Message::OrderAccepted(_))),
                started.elapsed(),
            ))
            .unwrap();
        });
        match on_loss {
            OnStandbyLoss::Stall => {
                assert!(
                    rx.recv_timeout(Duration::from_millis(1_500)).is_err(),
                    "stall: no ack without a standby"
                );
                assert!(!status(a.replication).unwrap().degraded);
                proxy.restore();
                let (accepted, took) = rx
                    .recv_timeout(Duration::from_secs(15))
                    .expect("acked once the standby is back");
                assert_eq!(accepted.ok(), Some(true));
                assert!(took >= Duration::from_millis(1_500));
            }
            OnStandbyLoss::Degrade => {
                let (accepted, took) = rx
                    .recv_timeout(Duration::from_secs(8))
                    .expect("degrade: acked alone");
                assert_eq!(accepted.ok(), Some(true));
                assert!(took >= Duration::from_millis(500), "{took:?}");
                assert!(status(a.replication).unwrap().degraded);
                assert!(a.log().contains("REPLICATION DEGRADED"));
                proxy.restore();
                wait_until("sync again", Duration::from_secs(15), || {
                    status(a.replication).is_some_and(|s| !s.degraded)
                });
            }
        }
        placing.join().unwrap();
        wait_caught_up(&a, &b);
        a.stop();
        b.stop();
        let (created_a, hash_a, seq_a) = replay(&a.journal(), &a.engine);
        let (_, hash_b, seq_b) = replay(&b.journal(), &b.engine);
        assert_eq!(
            (seq_a, hash_a),
            (seq_b, hash_b),
            "{on_loss:?}: the standby has everything"
        );
        assert!(created_a.by_key.contains_key(&(accounts[0].0, 4242)));
        drop(proxy);
    }
}

/// A TCP forwarder whose connections the test can cut (and refuse) and restore.
struct Proxy {
    addr: SocketAddr,
    open: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<TcpStream>>>,
}

impl Proxy {
    fn start(target: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let proxy = Proxy {
            addr: listener.local_addr().unwrap(),
            open: Arc::new(AtomicBool::new(true)),
            stop: Arc::new(AtomicBool::new(false)),
            conns: Arc::default(),
        };
        let (open, stop, conns) = (
            Arc::clone(&proxy.open),
            Arc::clone(&proxy.stop),
            Arc::clone(&proxy.conns),
        );
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let Ok((client, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                };
                if !open.load(Ordering::Relaxed) {
                    continue; // dropped: refused while cut
                }
                let _ = client.set_nonblocking(false);
                let Ok(server) = TcpStream::connect(target) else {
                    continue;
                };
                let _ = (client.set_nodelay(true), server.set_nodelay(true));
                let mut c = conns.lock().unwrap();
                c.push(client.try_clone().unwrap());
                c.push(server.try_clone().unwrap());
                pump(client.try_clone().unwrap(), server.try_clone().unwrap());
                pump(server, client);
            }
        });
        proxy
    }

    fn cut(&self) {
        self.open.store(false, Ordering::Relaxed);
        for c in self.conns.lock().unwrap().drain(..) {
            let _ = c.shutdown(std::net::Shutdown::Both);
        }
    }

    fn restore(&self) {
        self.open.store(true, Ordering::Relaxed);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.cut();
    }
}

fn pump(mut from: TcpStream, mut to: TcpStream) {
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 64 << 10];
        loop {
            match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if to.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            }
        }
        let _ = to.shutdown(std::net::Shutdown::Both);
    });
}

/// Heartbeats flow both ways on an idle pair (nobody is declared lost), and a frozen primary
/// (SIGSTOP: no FIN, no RST) is detected after `heartbeat_timeout_ms`, not before.
#[test]
fn heavy_heartbeats_keep_an_idle_pair_up_and_detect_a_frozen_primary() {
    let root = tempfile::tempdir().unwrap();
    let (a, b) = start_pair(root.path(), &Setup::default());
    wait_caught_up(&a, &b);
    std::thread::sleep(Duration::from_millis(1_500)); // idle: 2.5x the heartbeat timeout
    let s = status(b.replication).unwrap();
    assert!(
        s.primary_connected && s.primary_lost_at_ms == 0,
        "{s:?}\n{}",
        b.log()
    );
    assert!(!b.log().contains("PRIMARY LOST"), "{}", b.log());
    assert_eq!(status(a.replication).unwrap().standbys_live, 1);
    let pid = a.child.as_ref().unwrap().id() as i32;
    let stopped_at_ms = now_ms();
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(pid, libc::SIGSTOP) };
    let mut lost_at_ms = 0;
    wait_until(
        "the standby to detect the frozen primary",
        Duration::from_secs(10),
        || {
            lost_at_ms = status(b.replication).map_or(0, |s| s.primary_lost_at_ms);
            lost_at_ms != 0
        },
    );
    // SAFETY: as above.
    unsafe { libc::kill(pid, libc::SIGCONT) };
    let detected_ms = lost_at_ms.saturating_sub(stopped_at_ms);
    eprintln!("a frozen primary was detected after {detected_ms} ms (timeout 600 ms)");
    // The last heartbeat arrived up to one interval plus a read tick (100 + 25 ms) before the
    // stop: detection comes about 475-600 ms after it (plus a status poll); well before that
    // would mean a healthy primary can be declared lost.
    assert!((400..3_000).contains(&detected_ms), "{detected_ms} ms");
    assert!(b.log().contains("PRIMARY LOST"));
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// The query database's checkpoint seq of a running node (its embedded SQLite file).
fn database_seq(node: &NodeProc) -> u64 {
    database_checkpoint(node).1
}

/// The query database's checkpoint (epoch, seq) of a node (its embedded SQLite file).
fn database_checkpoint(node: &NodeProc) -> (u64, u64) {
    let url = kuku_persistence::DatabaseUrl::sqlite_file(&node.dir.join("kuku.sqlite"));
    kuku_persistence::block_on(async {
        let db = kuku_persistence::Database::connect(&url, &Default::default())
            .await
            .unwrap();
        let c = db.checkpoint().await.unwrap();
        (c.epoch, c.seq)
    })
}

/// The query store's checkpoint is (epoch, seq): a promoted node, once restarted, writes its
/// new epoch with every batch.
#[test]
fn heavy_a_restarted_promoted_node_checkpoints_its_new_epoch() {
    let root = tempfile::tempdir().unwrap();
    let setup = Setup {
        mode: Mode::Async,
        database: true,
        ..Setup::default()
    };
    let (mut a, mut b) = start_pair(root.path(), &setup);
    funded_accounts(a.gateway, 1);
    wait_caught_up(&a, &b);
    let before = status(a.replication).unwrap().epoch;
    a.kill();
    promote(&b);
    let epoch = b.wait_role("primary").epoch;
    assert!(
        epoch > before,
        "promotion raised the epoch: {before} -> {epoch}"
    );
    b.stop();
    b.spawn(&setup, None, &[]);
    b.wait_role("primary");
    funded_accounts(b.gateway, 1);
    wait_until(
        "the database to checkpoint the new epoch",
        Duration::from_secs(15),
        || database_checkpoint(&b).0 == epoch,
    );
}

/// Async mode: orders are acknowledged before the standby has them, but the database writer
/// holds back everything after the replicated watermark until the standby acks (or is
/// declared lost): the query store never shows what a failover could lose.
#[test]
fn heavy_async_database_persists_only_up_to_the_replicated_watermark() {
    let root = tempfile::tempdir().unwrap();
    let setup = Setup {
        mode: Mode::Async,
        heartbeat_timeout_ms: 5_000,
        database: true,
        ..Setup::default()
    };
    let (a, b) = start_pair(root.path(), &setup);
    let accounts = funded_accounts(a.gateway, 1);
    wait_market_open(&[a.gateway], accounts[0]);
    wait_caught_up(&a, &b);
    let applied = status(a.replication).unwrap().applied_seq;
    wait_until("the database to catch up", Duration::from_secs(15), || {
        database_seq(&a) == applied
    });
    // Freeze the standby: it stays connected (no FIN) but acks nothing.
    let pid = b.child.as_ref().unwrap().id() as i32;
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(pid, libc::SIGSTOP) };
    let (mut c, _) = login_any(
        &[a.gateway],
        accounts[0],
        LoginOptions::default(),
        Duration::from_secs(10),
    );
    for i in 0..5 {
        let placed = c.place(buy(1, 111_000 + i * 100)).unwrap();
        assert!(
            matches!(placed, Message::OrderAccepted(_)),
            "async acks alone: {placed:?}"
        );
    }
    std::thread::sleep(Duration::from_millis(700));
    let s = status(a.replication).unwrap();
    assert!(
        s.applied_seq >= applied + 5 && s.acked_seq <= applied,
        "{s:?}"
    );
    assert_eq!(s.standbys_live, 1, "{s:?}");
    let held = database_seq(&a);
    assert!(
        held <= s.acked_seq,
        "the database ran ahead of the standby: {held} > {}",
        s.acked_seq
    );
    // SAFETY: as above.
    unsafe { libc::kill(pid, libc::SIGCONT) };
    wait_until(
        "the database to follow the acks",
        Duration::from_secs(15),
        || database_seq(&a) == s.applied_seq,
    );
}

/// A promotion while the old primary still runs (an operator's mistake, or a partition that
/// healed): the new primary tells its peers about the new epoch, and the old one fences
/// itself at once instead of stalling its clients.
#[test]
fn heavy_promotion_fences_an_old_primary_that_still_runs() {
    let root = tempfile::tempdir().unwrap();
    let (mut a, b) = start_pair(root.path(), &Setup::default());
    let accounts = funded_accounts(a.gateway, 1);
    wait_caught_up(&a, &b);
    promote(&b);
    a.wait_role("fenced");
    wait_until(
        "the promoted node to log the fencing",
        Duration::from_secs(10),
        || b.log().contains("was told to fence itself"),
    );
    assert_refuses_logins(&a, accounts[0]);
    // The clients find the new primary.
    let (_, _, at) = TradingClient::login_any(
        &[a.gateway, b.gateway],
        accounts[0],
        token(accounts[0]),
        LoginOptions::default(),
    )
    .unwrap();
    assert_eq!(at, 1);
}

/// What a journal's events say each identifier means: order ids, trade ids and transaction ids
/// to what they were given to, per-account sequence numbers to the event that carried them.
#[derive(Default)]
struct Meanings {
    orders: BTreeMap<u64, (u32, u64)>,
    trades: BTreeMap<u64, String>,
    txs: BTreeMap<u64, String>,
    seqs: BTreeMap<(u32, u64), String>,
}

impl EventSink for Meanings {
    fn emit(&mut self, event: &Event) {
        for (account, seq) in event.recipients() {
            if seq > 0 {
                self.seqs.insert(
                    (account.0, seq),
                    format!("{event:?}").replace(&format!("acct_seq: {seq}"), ""),
                );
            }
        }
        match event {
            Event::OrderAccepted {
                order,
                resent: false,
                ..
            } => {
                self.orders
                    .insert(order.order_id.0, (order.account.0, order.client_order_id.0));
            }
            Event::Trade {
                trade_id,
                maker_order,
                taker_order,
                qty,
                price,
                tx,
                ..
            } => {
                let what = format!("{maker_order:?} {taker_order:?} {qty:?} {price:?}");
                self.trades.insert(trade_id.0, what.clone());
                self.txs.insert(tx.0, what);
            }
            Event::TransactionStatusChanged {
                tx,
                account,
                amount,
                external_ref,
                resent: false,
                ..
            } => {
                self.txs
                    .entry(tx.0)
                    .or_insert_with(|| format!("{account:?} {amount:?} {external_ref:?}"));
            }
            _ => {}
        }
    }
}

fn meanings(dir: &Path, engine: &EngineConfig) -> Meanings {
    let reader = JournalReader::open(dir).unwrap();
    let mut e = kuku_engine::Engine::new(*engine);
    let mut m = Meanings::default();
    kuku_journal::state::replay_journal(&reader, &mut e, u64::MAX, &mut m).unwrap();
    m
}

/// Every identifier both journals hold means the same thing in both.
fn assert_no_identifier_reused(old: &Meanings, new: &Meanings) -> usize {
    let mut shared = 0;
    for (kind, a, b) in [
        ("trade", &old.trades, &new.trades),
        ("transaction", &old.txs, &new.txs),
    ] {
        for (id, meaning) in a {
            if let Some(other) = b.get(id) {
                assert_eq!(meaning, other, "{kind} id {id} was given a new meaning");
                shared += 1;
            }
        }
    }
    for (id, who) in &old.orders {
        if let Some(other) = new.orders.get(id) {
            assert_eq!(who, other, "order id {id} was given to another order");
            shared += 1;
        }
    }
    for (key, event) in &old.seqs {
        if let Some(other) = new.seqs.get(key) {
            assert_eq!(event, other, "account {} seq {} was reused", key.0, key.1);
            shared += 1;
        }
    }
    shared
}

/// An asynchronous failover that loses acknowledged orders (the replication link is cut, then
/// the primary dies): the promoted node issues no order, trade or transaction id and no
/// per-account sequence number that the old primary had given to something else, and a
/// client whose last seen number was in the lost tail is told its history diverged (with the
/// number to replay from), logs in again from it and goes on trading.
#[test]
fn heavy_an_async_failover_that_loses_a_tail_reuses_no_identifier_and_the_client_recovers() {
    let root = tempfile::tempdir().unwrap();
    let setup = Setup {
        mode: Mode::Async,
        ..Setup::default()
    };
    let mut a = NodeProc::new(root.path(), "a");
    let mut b = NodeProc::new(root.path(), "b");
    let proxy = Proxy::start(a.replication);
    a.spawn(&setup, None, &[b.replication]);
    a.wait_role("primary");
    b.spawn(&setup, Some(proxy.addr), &[a.replication]);
    b.wait_role("standby");
    let accounts = funded_accounts(a.gateway, 2);
    let addrs = [a.gateway, b.gateway];
    wait_market_open(&addrs, accounts[0]);
    let mut client = FailoverClient::new(&addrs, accounts[0], token(accounts[0]));
    client.failover_timeout = Duration::from_secs(20);
    for i in 0..5 {
        let placed = client.place(buy(1, 110_000 + i * 100)).unwrap();
        assert!(matches!(placed, Message::OrderAccepted(_)), "{placed:?}");
    }
    wait_caught_up(&a, &b);
    let shipped = status(b.replication).unwrap().applied_seq;

    // The link is cut: the next orders are acknowledged by A alone (async), then A dies.
    proxy.cut();
    let mut lost = Vec::new();
    for i in 0..10 {
        match client.place(buy(1 + i, 111_000 + i * 100)).unwrap() {
            Message::OrderAccepted(acc) => lost.push(acc.order_id.0),
            other => panic!("{other:?}"),
        }
    }
    let seen_in_lost_tail = client.last_seen_acct_seq;
    a.kill();
    assert_eq!(
        status(b.replication).unwrap().applied_seq,
        shipped,
        "B never got the tail"
    );
    wait_until(
        "B to find its primary lost",
        Duration::from_secs(10),
        || status(b.replication).is_some_and(|s| s.primary_lost_at_ms != 0),
    );
    promote(&b);
    assert_eq!(
        status(b.replication).unwrap().primary_lost_at_ms,
        0,
        "a primary has no lost primary"
    );

    // The client goes on: its history diverged, it replays from where B's epoch began.
    let placed = client.place(buy(2, 112_000)).unwrap();
    let Message::OrderAccepted(after) = placed else {
        panic!("{placed:?}");
    };
    assert!(
        after.order_id.0 >= 1 << 40,
        "a new epoch's id: {:?}",
        after.order_id
    );
    assert!(after.acct_seq > 1 << 40, "{}", after.acct_seq);
    assert_eq!(client.diverged.len(), 1, "{:?}", client.diverged);
    let (seen, replay_from) = client.diverged[0];
    assert_eq!(seen, seen_in_lost_tail);
    assert!(replay_from < seen, "{replay_from} < {seen}");
    for i in 0..3 {
        let placed = client.place(buy(1, 112_100 + i * 100)).unwrap();
        assert!(matches!(placed, Message::OrderAccepted(_)), "{placed:?}");
    }
    // The other account, which saw nothing of the lost tail, logs in without a divergence.
    let (_, replayed) = login_any(
        &[b.gateway],
        accounts[1],
        LoginOptions::default(),
        Duration::from_secs(10),
    );
    assert!(!replayed.is_empty());
    let old = meanings(&a.journal(), &a.engine);

    // The old primary rejoins: its lost tail is cut (the log names the seqs it removed).
    a.spawn(&setup, Some(b.replication), &[b.replication]);
    a.wait_role("standby");
    let rejoin = a.log();
    let line = rejoin
        .lines()
        .find(|l| l.contains("REJOIN"))
        .unwrap_or_else(|| panic!("no REJOIN line:\n{rejoin}"));
    assert!(
        line.contains("removed_seqs") && line.contains(&format!("\"{}..=", shipped + 1)),
        "{line}"
    );
    wait_caught_up(&b, &a);
    b.stop();
    a.stop();
    let new = meanings(&b.journal(), &b.engine);
    let rejoined = meanings(&a.journal(), &a.engine);
    assert_eq!(
        rejoined.orders, new.orders,
        "the rejoined node has B's history"
    );
    for id in &lost {
        assert!(old.orders.contains_key(id), "order {id} in A's lost tail");
    }
    let shared = assert_no_identifier_reused(&old, &new);
    assert!(
        shared > 10,
        "the shared prefix was compared ({shared} identifiers)"
    );
    assert!(new.orders.keys().any(|id| *id >= 1 << 40));
}

/// A primary that lost frames its standby has (its tail after the local watermark, as a power
/// loss of a `none`-durability node takes it) refuses to start as the primary again: it would
/// cut the tail and diverge from the standby. Nothing is cut.
#[test]
fn heavy_a_primary_behind_its_standby_refuses_to_start() {
    let root = tempfile::tempdir().unwrap();
    let setup = Setup {
        watermark_interval_ms: 0,
        ..Setup::default()
    };
    let (mut a, b) = start_pair(root.path(), &setup);
    funded_accounts(a.gateway, 2);
    wait_caught_up(&a, &b);
    let standby_seq = status(b.replication).unwrap().journaled_seq;
    a.kill();
    // A's last frames are gone (zeroed: the pages never reached its disk).
    let reader = JournalReader::open(a.journal()).unwrap();
    assert_eq!(
        reader.durable_watermark(),
        0,
        "no local watermark in none mode here"
    );
    drop(reader);
    let mut segments: Vec<PathBuf> = std::fs::read_dir(a.journal())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "seg"))
        .collect();
    segments.sort();
    let last = segments.pop().unwrap();
    let mut bytes = std::fs::read(&last).unwrap();
    let end = bytes.iter().rposition(|&x| x != 0).unwrap() + 1;
    // About the last few frames (a frame here is under 100 bytes).
    bytes[end
        .saturating_sub(200)
        .max(kuku_journal::SEGMENT_DATA_START)..end]
        .fill(0);
    std::fs::write(&last, &bytes).unwrap();
    a.spawn(&setup, None, &[b.replication]);
    let mut child = a.child.take().unwrap();
    let exit = (0..1_500)
        .find_map(|_| {
            std::thread::sleep(Duration::from_millis(20));
            child.try_wait().unwrap()
        })
        .expect("the primary refuses to start");
    assert_eq!(exit.code(), Some(1), "{}", a.log());
    let log = a.log();
    assert!(
        log.contains(&format!("journaled up to seq {standby_seq}")),
        "{log}"
    );
    assert!(log.contains("lost commands the standby has"), "{log}");
    assert_eq!(std::fs::read(&last).unwrap(), bytes, "nothing was cut");
    assert!(!a.journal().join(kuku_journal::QUARANTINE_DIR_NAME).exists());
}
