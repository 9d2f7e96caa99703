//! Fail-stop (ADR-012) with real `kuku serve` processes on 127.0.0.1. A fault is injected by a
//! failpoint armed in the child's environment: an I/O error from the journal (an append, with
//! `durability none`: the fused layout; a group commit's msync, with `every-batch`: the staged
//! layout) or a panic in the processor as it applies an order. Each must end the process with a
//! non-zero status within a second of the fault (measured from the failpoint's own stderr line
//! to the child's exit), with one `FAIL-STOP` line naming the seq, and no order at or after the
//! faulting one acknowledged: the client sees its connection close instead. The restarted node
//! (failpoint disarmed: the code "fixed") recovers from the journal; a resent order gets the
//! outcome the journal holds. A standby whose processor panics stops the same way and, once
//! restarted, applies the journaled command and catches up.
//!
//! Heavy (child processes, restarts): the tests are `heavy_*`, run one at a time
//! (.config/nextest.toml). Every wait is bounded in time.

mod support;

use kuku_engine::{AccountId, Amount, ClientOrderId, ExternalRef};
use kuku_gateway::auth::encode_hex;
use kuku_gateway::client::{AdminClient, LoginOptions, OrderSpec, TradingClient};
use kuku_gateway::protocol::{Message, NewOrder};
use kuku_journal::JournalReader;
use kuku_journal::tool::{DumpFilter, dump};
use kuku_server::config::NodeConfig;
use kuku_server::failstop::EXIT_LOG_FAILURE;
use kuku_server::replication::{Mode, ReplicationSettings, control};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Child, Command as Process, ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant};
use support::{ADMIN_TOKEN, SECRET, buy};

const KUKU: &str = env!("CARGO_BIN_EXE_kuku");
/// How long the process may live after the fault.
const FAIL_STOP_MAX: Duration = Duration::from_secs(1);
/// A bound on every other wait (start-up, a reply, the fault itself).
const WAIT: Duration = Duration::from_secs(30);
const SERVING: &str = "Kuku is serving";
const FAIL_STOP: &str = "kuku: FAIL-STOP:";
/// The failpoints fire at the third order after a restart: two are acknowledged first.
const FAULT_AT: u64 = 3;
/// Orders sent back to back from the faulting one on (none may be acknowledged).
const IN_FLIGHT: u64 = 3;
/// The orders after a restart have keys `KEY_BASE + 1..`: `FAULT_AT - 1` acknowledged ones,
/// then the faulting one and the rest in flight.
const KEY_BASE: u64 = 1_000;

fn free_addr() -> SocketAddr {
    support::listen_addr()
}

/// A running `kuku serve`: its stderr lines (with the time each arrived) and its exit.
struct Serve {
    name: String,
    lines: Receiver<(Instant, String)>,
    /// Every line read so far (for failure messages and the FAIL-STOP checks).
    log: Vec<String>,
    exit: Receiver<(Instant, ExitStatus)>,
    /// Asks the waiter thread to send SIGTERM (graceful stop) or SIGKILL (drop).
    terminate: Arc<AtomicBool>,
    kill: Arc<AtomicBool>,
    exited: Option<(Instant, ExitStatus)>,
}

impl Serve {
    /// Starts `kuku serve --config <config>` with `failpoint` (variable, value) armed.
    fn start(name: &str, config: &NodeConfig, failpoint: Option<(&str, String)>) -> Serve {
        let path = config.data_dir.with_extension("toml");
        std::fs::write(&path, toml::to_string(config).expect("config to TOML")).unwrap();
        let mut command = Process::new(KUKU);
        command
            .args(["serve", "--config"])
            .arg(&path)
            .env("KUKU_GATEWAY_SECRET", encode_hex(&SECRET))
            .env("KUKU_ADMIN_TOKEN", encode_hex(&ADMIN_TOKEN))
            .env("KUKU_LOG", "info")
            .env_remove(kuku_journal::failpoint::FAILPOINT_ENV)
            .env_remove(kuku_server::failpoint::FAILPOINT_ENV)
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if let Some((var, value)) = failpoint {
            command.env(var, value);
        }
        let mut child = command.spawn().expect("kuku serve starts");
        let stderr = child.stderr.take().expect("piped stderr");
        let (line_tx, lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if line_tx.send((Instant::now(), line)).is_err() {
                    break;
                }
            }
        });
        let (exit_tx, exit) = channel();
        let terminate = Arc::new(AtomicBool::new(false));
        let kill = Arc::new(AtomicBool::new(false));
        let (term, kill_flag) = (Arc::clone(&terminate), Arc::clone(&kill));
        std::thread::spawn(move || wait_child(child, &term, &kill_flag, exit_tx));
        Serve {
            name: name.to_owned(),
            lines,
            log: Vec::new(),
            exit,
            terminate,
            kill,
            exited: None,
        }
    }

    fn log_text(&self) -> String {
        self.log.join("\n")
    }

    /// The first line (from now on) containing `needle`, with the time it arrived.
    fn wait_line(&mut self, needle: &str, timeout: Duration) -> (Instant, String) {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok((at, line)) => {
                    self.log.push(line.clone());
                    if line.contains(needle) {
                        return (at, line);
                    }
                }
                Err(RecvTimeoutError::Timeout) => panic!(
                    "{}: no line with {needle:?} within {timeout:?}:\n{}",
                    self.name,
                    self.log_text()
                ),
                Err(RecvTimeoutError::Disconnected) => panic!(
                    "{}: stderr closed without a line with {needle:?}:\n{}",
                    self.name,
                    self.log_text()
                ),
            }
        }
    }

    /// Waits for the process to end; returns when it did and how.
    fn wait_exit(&mut self, timeout: Duration) -> (Instant, ExitStatus) {
        if let Some(e) = self.exited {
            return e;
        }
        match self.exit.recv_timeout(timeout) {
            Ok(e) => {
                self.exited = Some(e);
                // The rest of its stderr (the reader reaches the end of the pipe now).
                let deadline = Instant::now() + Duration::from_secs(5);
                while let Ok((_, line)) = self
                    .lines
                    .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                {
                    self.log.push(line);
                }
                e
            }
            Err(_) => panic!(
                "{} still runs {timeout:?} later:\n{}",
                self.name,
                self.log_text()
            ),
        }
    }

    /// SIGTERM, and a clean exit.
    fn stop(&mut self) {
        self.terminate.store(true, Ordering::Release);
        let (_, status) = self.wait_exit(WAIT);
        assert!(
            status.success(),
            "{} stopped with {status}:\n{}",
            self.name,
            self.log_text()
        );
    }

    fn fail_stop_lines(&self) -> Vec<&String> {
        self.log.iter().filter(|l| l.contains(FAIL_STOP)).collect()
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        if self.exited.is_none() {
            self.kill.store(true, Ordering::Release);
            let _ = self.exit.recv_timeout(WAIT);
        }
    }
}

/// Owns the child: reports its exit (polled every 2 ms, so the time is that close), sends it
/// SIGTERM or SIGKILL on request. Only this thread reaps it, so its pid is never stale here.
fn wait_child(
    mut child: Child,
    terminate: &AtomicBool,
    kill: &AtomicBool,
    exit: std::sync::mpsc::Sender<(Instant, ExitStatus)>,
) {
    let mut terminated = false;
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        match child.try_wait() {
            Ok(Some(status)) => {
                let _ = exit.send((Instant::now(), status));
                return;
            }
            Ok(None) => {}
            Err(e) => panic!("waiting for the child: {e}"),
        }
        if kill.load(Ordering::Acquire) || Instant::now() > deadline {
            let _ = child.kill();
        } else if !terminated && terminate.load(Ordering::Acquire) {
            terminated = true;
            // SAFETY: kill(2) on the pid of a child this thread owns and has not reaped.
            unsafe {
                libc::kill(child.id() as i32, libc::SIGTERM);
            }
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// A single node's config: no database, no feed, always open, `durability`.
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

fn token(account: AccountId) -> [u8; 32] {
    kuku_gateway::auth::Secret::from_bytes(SECRET).account_token(account)
}

/// Opens and funds an account, then waits until the market takes orders.
fn set_up_account(addr: SocketAddr) -> AccountId {
    let account = funded_account(addr);
    let (mut c, _) = login(addr, account);
    let deadline = Instant::now() + WAIT;
    while !matches!(c.place(buy(1, 100_000)), Ok(Message::OrderAccepted(_))) {
        assert!(Instant::now() < deadline, "the market never opened");
        std::thread::sleep(Duration::from_millis(20));
    }
    account
}

/// Opens an account with 10 billion KRW.
fn funded_account(addr: SocketAddr) -> AccountId {
    let mut admin = AdminClient::login(addr, ADMIN_TOKEN).expect("admin login");
    let r = admin
        .open_account(ExternalRef::new("trader").unwrap())
        .unwrap();
    assert_eq!(r.code, 0, "{r:?}");
    let d = admin
        .deposit(
            r.account,
            Amount(10_000_000_000),
            ExternalRef::new("dep").unwrap(),
        )
        .unwrap();
    assert_eq!(d.code, 0, "{d:?}");
    r.account
}

fn login(addr: SocketAddr, account: AccountId) -> (TradingClient, Vec<Message>) {
    TradingClient::login(addr, account, token(account), LoginOptions::default()).expect("login")
}

/// The order with key `key`: a buy of one share, each at its own price inside the day's band
/// (nothing sells, so none trades).
fn order(key: u64) -> OrderSpec {
    OrderSpec {
        client_order_id: Some(ClientOrderId(key)),
        ..buy(1, 100_000 + (key % 100) as i64 * 100)
    }
}

/// The key of a reply to an order (accepted or rejected), if it is one.
fn order_reply_key(m: &Message) -> Option<u64> {
    match m {
        Message::OrderAccepted(a) => Some(a.client_order_id.0),
        Message::OrderRejected(r) => Some(r.client_order_id.0),
        Message::RequestResent(r) => Some(r.request_id.0),
        _ => None,
    }
}

/// What the fault left: the exit status, the FAIL-STOP line and the seq it names first.
struct Fault {
    status: ExitStatus,
    seq: u64,
    line: String,
}

/// Restarts the node with `failpoint` armed, places `FAULT_AT - 1` orders (each acknowledged),
/// sends `IN_FLIGHT` more back to back (the first one faults), and checks the fail-stop: the
/// process ends within [`FAIL_STOP_MAX`] of the failpoint's line, none of the in-flight orders
/// is answered, the client's connection closes, and there is exactly one FAIL-STOP line.
fn fault_while_trading(
    config: &NodeConfig,
    account: AccountId,
    failpoint: (&str, String),
) -> Fault {
    let mut node = Serve::start("faulting node", config, Some(failpoint.clone()));
    node.wait_line(SERVING, WAIT);
    let (mut client, _) = login(gateway(config), account);
    for key in KEY_BASE + 1..KEY_BASE + FAULT_AT {
        match client.place(order(key)) {
            Ok(Message::OrderAccepted(a)) => assert_eq!(a.client_order_id.0, key),
            other => panic!("order {key} before the fault: {other:?}"),
        }
    }
    for key in KEY_BASE + FAULT_AT..KEY_BASE + FAULT_AT + IN_FLIGHT {
        let spec = order(key);
        client
            .send(NewOrder {
                client_order_id: ClientOrderId(key),
                symbol: spec.symbol,
                side: spec.side,
                order_type: spec.order_type,
                tif: spec.tif,
                price: spec.price,
                qty: spec.qty,
            })
            .expect("sent before the fault");
    }
    let point = failpoint.1.split('=').next().expect("<name>=<n>");
    let (fired_at, fired) = node.wait_line(&format!("failpoint {point} fired"), WAIT);
    let (exited_at, status) = node.wait_exit(WAIT);
    let lived = exited_at.saturating_duration_since(fired_at);
    assert!(
        lived < FAIL_STOP_MAX,
        "the node lived {lived:?} after `{fired}`:\n{}",
        node.log_text()
    );
    assert!(!status.success(), "{status}:\n{}", node.log_text());
    // Nothing answers an in-flight order: the connection ends instead.
    let deadline = Instant::now() + WAIT;
    let closed = loop {
        match client.next_message(Duration::from_millis(200)) {
            Ok(Some(m)) => assert!(
                order_reply_key(&m).is_none_or(|k| k < KEY_BASE + FAULT_AT),
                "an order at or after the fault was answered: {m:?}"
            ),
            Ok(None) => assert!(Instant::now() < deadline, "the connection stayed open"),
            Err(e) => break e,
        }
    };
    eprintln!(
        "fail-stop: {failpoint:?} -> {status} after {lived:?}; client: {closed}\n{}",
        node.fail_stop_lines()
            .iter()
            .map(|l| l.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    );
    let lines = node.fail_stop_lines();
    assert_eq!(lines.len(), 1, "one FAIL-STOP line:\n{}", node.log_text());
    let line = lines[0].clone();
    let seq = line
        .split("seq ")
        .skip(1)
        .find_map(|s| s.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok())
        .unwrap_or_else(|| panic!("no seq in {line:?}"));
    Fault { status, seq, line }
}

/// A fresh node with one funded account, stopped cleanly: the returned config restarts it.
fn prepared_node(root: &Path, durability: &str) -> (NodeConfig, AccountId) {
    let config = node_config(root, "node", durability);
    let mut node = Serve::start("node", &config, None);
    node.wait_line(SERVING, WAIT);
    let account = set_up_account(gateway(&config));
    node.stop();
    (config, account)
}

/// The journal's last seq (the node is stopped).
fn journal_seq_last(config: &NodeConfig) -> u64 {
    JournalReader::open(config.journal_dir())
        .and_then(|r| r.stats())
        .expect("the journal reads")
        .seq_last
        .unwrap_or(0)
}

/// `kuku-replay dump DIR --seq SEQ` (the same as `--from SEQ --to SEQ`), as the operator runs it.
fn dump_one(config: &NodeConfig, seq: u64) -> String {
    let mut out = Vec::new();
    let filter = DumpFilter {
        seq_from: Some(seq),
        seq_to: Some(seq),
        ..DumpFilter::default()
    };
    dump(&config.journal_dir(), None, &filter, &mut out).expect("dump");
    String::from_utf8(out).expect("UTF-8")
}

/// Restarts the node without a failpoint and resends the faulting order: `resent` says
/// whether the journal already held it (answered with its original outcome) or not (placed
/// now).
fn restart_and_resend(config: &NodeConfig, account: AccountId, resent: Option<bool>) {
    let mut node = Serve::start("restarted node", config, None);
    node.wait_line(SERVING, WAIT);
    let (mut client, _) = login(gateway(config), account);
    let key = KEY_BASE + FAULT_AT;
    match client.place(order(key)) {
        Ok(Message::OrderAccepted(a)) => {
            assert_eq!(a.client_order_id.0, key);
            if let Some(resent) = resent {
                assert_eq!(a.resent, resent, "{a:?}");
            }
        }
        other => panic!("the resent order {key}: {other:?}"),
    }
    node.stop();
}

#[test]
fn heavy_a_journal_append_error_stops_the_node_before_the_order_is_applied() {
    let root = tempfile::tempdir().unwrap();
    // durability none: the fused layout (the processor appends, then applies).
    let (config, account) = prepared_node(root.path(), "none");
    let seq_before = journal_seq_last(&config);
    let fault = fault_while_trading(
        &config,
        account,
        (
            kuku_journal::failpoint::FAILPOINT_ENV,
            format!("journal::append_fails={FAULT_AT}"),
        ),
    );
    assert_eq!(
        fault.status.code(),
        Some(EXIT_LOG_FAILURE),
        "{}",
        fault.line
    );
    assert!(fault.line.contains("failed"), "{}", fault.line);
    // The failed append was the third order's; the journal ends with the second.
    assert_eq!(fault.seq, seq_before + FAULT_AT, "{}", fault.line);
    assert!(
        fault
            .line
            .contains(&format!("nothing from seq {} on", fault.seq)),
        "{}",
        fault.line
    );
    assert_eq!(journal_seq_last(&config), fault.seq - 1);
    // The order was never journaled: its resend is placed now.
    restart_and_resend(&config, account, Some(false));
}

#[test]
fn heavy_a_failed_group_commit_stops_the_node_before_the_batch_is_applied() {
    let root = tempfile::tempdir().unwrap();
    // every-batch: the staged layout (a journaller thread commits, then the processor applies).
    let (config, account) = prepared_node(root.path(), "every-batch");
    let seq_before = journal_seq_last(&config);
    let fault = fault_while_trading(
        &config,
        account,
        (
            kuku_journal::failpoint::FAILPOINT_ENV,
            format!("journal::commit_sync_fails={FAULT_AT}"),
        ),
    );
    assert_eq!(
        fault.status.code(),
        Some(EXIT_LOG_FAILURE),
        "{}",
        fault.line
    );
    assert!(fault.line.contains("msync"), "{}", fault.line);
    // Each acknowledged order was its own batch; the failed one holds the third order.
    assert!(fault.seq >= seq_before + FAULT_AT, "{}", fault.line);
    assert!(
        fault
            .line
            .contains(&format!("nothing from seq {} on", seq_before + FAULT_AT)),
        "{}",
        fault.line
    );
    // Its frames reached the page cache before the msync "failed", so the journal may hold
    // the order (unacknowledged): the resend is answered either way, and the node runs on.
    restart_and_resend(&config, account, None);
}

#[test]
fn heavy_a_processor_panic_aborts_the_node_and_the_journaled_order_applies_after_restart() {
    let root = tempfile::tempdir().unwrap();
    let (config, account) = prepared_node(root.path(), "none");
    let seq_before = journal_seq_last(&config);
    let fault = fault_while_trading(
        &config,
        account,
        (
            kuku_server::failpoint::FAILPOINT_ENV,
            format!("processor::panic_on_order={FAULT_AT}"),
        ),
    );
    assert_eq!(fault.status.signal(), Some(libc::SIGABRT), "{}", fault.line);
    assert!(
        fault.line.contains("thread 'kuku-processor' panicked")
            && fault.line.contains("(PlaceOrder)"),
        "{}",
        fault.line
    );
    assert_eq!(fault.seq, seq_before + FAULT_AT, "{}", fault.line);
    // The operator's step: the command at that seq is the third order.
    let dumped = dump_one(&config, fault.seq);
    assert!(
        dumped.contains(r#""kind":"PlaceOrder""#)
            && dumped.contains(&format!(r#""client_order_id":{}"#, KEY_BASE + FAULT_AT)),
        "{dumped}"
    );
    // It was journaled before it was applied: after the restart it is applied (never
    // skipped), and the resend gets its outcome.
    restart_and_resend(&config, account, Some(true));
}

#[test]
fn heavy_a_standby_whose_processor_panics_aborts_and_catches_up_after_restart() {
    let root = tempfile::tempdir().unwrap();
    let replicated = |name: &str, standby_of: Option<SocketAddr>| {
        let mut c = node_config(root.path(), name, "none");
        c.replication = ReplicationSettings {
            mode: Mode::Sync,
            listen: Some(free_addr().to_string()),
            standby_of: standby_of.map(|a| a.to_string()),
            heartbeat_interval_ms: 100,
            heartbeat_timeout_ms: 600,
            ..ReplicationSettings::default()
        };
        c
    };
    let primary_config = replicated("primary", None);
    let primary_repl: SocketAddr = primary_config
        .replication
        .listen
        .as_ref()
        .unwrap()
        .parse()
        .unwrap();
    let standby_config = replicated("standby", Some(primary_repl));
    let standby_repl: SocketAddr = standby_config
        .replication
        .listen
        .as_ref()
        .unwrap()
        .parse()
        .unwrap();
    let mut primary = Serve::start("primary", &primary_config, None);
    primary.wait_line(SERVING, WAIT);
    // The standby's processor panics at the first order it applies.
    let mut standby = Serve::start(
        "standby",
        &standby_config,
        Some((
            kuku_server::failpoint::FAILPOINT_ENV,
            "processor::panic_on_order=1".into(),
        )),
    );
    standby.wait_line(SERVING, WAIT);
    // One order: accepted, or rejected if the market is not open yet; either way the standby
    // journals it, acks it (so the primary answers it) and then applies it.
    let account = funded_account(gateway(&primary_config));
    let (mut client, _) = login(gateway(&primary_config), account);
    match client.place(buy(1, 100_000)) {
        Ok(Message::OrderAccepted(_) | Message::OrderRejected(_)) => {}
        other => panic!("the order on the primary: {other:?}"),
    }
    let (fired_at, fired) = standby.wait_line("failpoint processor::panic_on_order", WAIT);
    let (exited_at, status) = standby.wait_exit(WAIT);
    let lived = exited_at.saturating_duration_since(fired_at);
    assert!(
        lived < FAIL_STOP_MAX,
        "the standby lived {lived:?} after `{fired}`:\n{}",
        standby.log_text()
    );
    assert_eq!(status.signal(), Some(libc::SIGABRT), "{status}");
    let lines = standby.fail_stop_lines();
    assert_eq!(lines.len(), 1, "{}", standby.log_text());
    assert!(
        lines[0].contains("thread 'kuku-processor' panicked") && lines[0].contains("(PlaceOrder)"),
        "{}",
        lines[0]
    );
    eprintln!("standby fail-stop after {lived:?}: {}", lines[0]);
    // Restarted (the code "fixed"), it applies the journaled order and catches up.
    let mut standby = Serve::start("restarted standby", &standby_config, None);
    standby.wait_line(SERVING, WAIT);
    let deadline = Instant::now() + WAIT;
    loop {
        let p = control::status(&primary_repl.to_string(), Duration::from_secs(1));
        let s = control::status(&standby_repl.to_string(), Duration::from_secs(1));
        if let (Ok(p), Ok(s)) = (p, s)
            && s.role == "standby"
            && p.applied_seq > 0
            && s.applied_seq == p.applied_seq
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the standby never caught up:\n{}",
            standby.log_text()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // The primary first (a sync primary stops cleanly while its standby still acks).
    primary.stop();
    standby.stop();
}
