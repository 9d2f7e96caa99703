//! `kuku-bench tcp`: order-to-ack latency over the binary TCP protocol, open loop at a fixed
//! offered rate, beside a minimal mio echo server measured the same way in the same run.
//!
//! **Method**
//! - Open loop: request `i` is due at `t0 + i / rate` and goes out on connection
//!   `i % connections` whether or not earlier requests were answered. Latency is measured
//!   from the *intended* send time to the arrival of the acknowledgement (coordinated
//!   omission corrected: a stalled server is charged for every request it delayed).
//! - The order mix: a new passive DAY limit buy (acknowledged by OrderAccepted) or, with
//!   probability `cancel_pct`, a cancel of the connection's oldest resting order
//!   (acknowledged by Cancelled); a connection with `resting_max` resting orders always
//!   cancels. Passive orders never trade, so the book and the holds stay bounded and every
//!   request has exactly one acknowledgement. Each connection is its own account.
//! - Errors: every request not acknowledged (rejects counted by code, Busy and RateLimited
//!   included, and requests still unanswered `drain_timeout` after the last send). More
//!   than 1% errors marks the run invalid.
//! - The echo baseline sends the same frames at the same rate over the same number of
//!   connections to a mio server that writes back what it reads: the network and client
//!   cost without the node.
//! - Sender and receiver are two threads (the receiver blocks in epoll, so arrival times are
//!   not delayed by the sender's sleeps); the sender sleeps until the next due request and
//!   then sends everything due, one write per connection.
//!
//! **Outputs**: `latency.hlog` (HdrHistogram interval log, tags `kuku` and `echo`),
//! `summary.json`, `percentiles.svg` under `--out-dir`; with `--json` the summary is the
//! last line of stdout.
//!
//! **Known limitations**: client and server share the machine's two cores, so the client's
//! own scheduling delays are in both the Kuku and the echo numbers.

use crate::machine::{rfc3339, unix_now};
use anyhow::{Context, bail};
use hdrhistogram::Histogram;
use kuku_engine::{
    AccountId, Amount, ClientOrderId, ExternalRef, OrderId, OrderType, Price, Qty, Side,
    TimeInForce,
};
use kuku_gateway::auth::{Credentials, Token, decode_hex32, encode_hex, random_bytes32};
use kuku_gateway::client::AdminClient;
use kuku_gateway::protocol::{
    Cancel, Code, FLAG_NO_REPLAY, Login, Message, NewOrder, PROTOCOL_VERSION, code_name,
    split_frame,
};
use mio::{Events, Interest, Poll, Token as MioToken};
use serde_json::json;
use std::collections::{BTreeMap, VecDeque};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Bounds: the bench always stops by itself.
const DURATION_MAX: Duration = Duration::from_secs(600);
const RATE_MAX: u64 = 2_000_000;
const CONNECTIONS_MAX: usize = 1_024;
const SLICES_MAX: usize = 100;

#[derive(Debug, clap::Args)]
pub struct TcpBenchArgs {
    /// A running gateway (`kuku serve`). Without it, an in-process node is started on a temp
    /// dir (always-open schedule, no feed) and stopped at the end.
    #[arg(long)]
    pub addr: Option<String>,
    /// The admin token of --addr (64 hex digits); default: read from --secrets.
    #[arg(long, env = "KUKU_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    #[arg(long, default_value = "kuku-data/gateway-secrets.toml")]
    pub secrets: PathBuf,
    #[arg(long, default_value_t = 8)]
    pub connections: usize,
    /// Offered requests per second over all connections.
    #[arg(long, default_value_t = 10_000)]
    pub rate: u64,
    /// How long to send, e.g. `30s`, `500ms`.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Sent but not recorded at the start (connections and caches warm up).
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub warmup: Duration,
    /// Percent of requests that cancel the connection's oldest resting order.
    #[arg(long, default_value_t = 50)]
    pub cancel_pct: u32,
    /// A connection with this many resting orders always cancels.
    #[arg(long, default_value_t = 256)]
    pub resting_max: usize,
    /// Also measure a mio echo server at the same rate and connections.
    #[arg(long)]
    pub echo_baseline: bool,
    /// In-process node only: `none` or `every-batch`.
    #[arg(long, default_value = "none")]
    pub durability: String,
    /// The symbol to trade, its base price and tick (passive buys go 1-50 ticks below).
    #[arg(long, default_value = "005930")]
    pub symbol: String,
    #[arg(long, default_value_t = 119_900)]
    pub base_price: i64,
    #[arg(long, default_value_t = 100)]
    pub tick: i64,
    /// Seconds to wait for outstanding acknowledgements after the last send.
    #[arg(long, default_value_t = 5)]
    pub drain_timeout_s: u64,
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Where the histogram log, the summary and the plot go
    /// [default: target/kuku-bench/tcp-<unix time>].
    #[arg(long)]
    pub out_dir: Option<PathBuf>,
    /// Print the JSON summary as the last line.
    #[arg(long)]
    pub json: bool,
    /// After the Kuku phase, time `sync_probe_count` journal-like syncs (a 64-byte frame
    /// written into a preallocated, zero-filled, memory-mapped file in this directory, then
    /// `msync(MS_SYNC)` of its page, as `every-batch` does) and report their latency beside
    /// the order-to-ack latency. Point it at the served node's data directory.
    #[arg(long)]
    pub sync_probe_dir: Option<PathBuf>,
    #[arg(long, default_value_t = 2_000)]
    pub sync_probe_count: usize,
    /// Split the run into this many slices, echo and Kuku alternating (echo, Kuku, echo,
    /// ...), each with fresh connections (and, against Kuku, fresh accounts) and its own
    /// warm-up; the slices' histograms are merged. On a shared machine this exposes both to
    /// the same background load instead of two different time windows.
    #[arg(long, default_value_t = 1)]
    pub slices: usize,
}

pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .map_or((s, "s"), |i| (&s[..i], &s[i..]));
    let n: f64 = num.parse().map_err(|_| format!("bad duration {s:?}"))?;
    let secs = match unit {
        "s" => n,
        "ms" => n / 1e3,
        "us" => n / 1e6,
        "m" => n * 60.0,
        _ => return Err(format!("bad duration unit in {s:?} (s, ms, us, m)")),
    };
    Ok(Duration::from_secs_f64(secs))
}

/// What one run measured.
struct RunResult {
    histogram: Histogram<u64>,
    sent: u64,
    acked: u64,
    errors_by_code: BTreeMap<String, u64>,
    unanswered: u64,
    elapsed: Duration,
    started_unix: Duration,
}

impl RunResult {
    /// Two slices of one run as one: histograms added, counts summed, time summed.
    fn merge(mut self, other: RunResult) -> RunResult {
        self.histogram
            .add(&other.histogram)
            .expect("histograms of equal bounds add");
        self.sent += other.sent;
        self.acked += other.acked;
        for (code, n) in other.errors_by_code {
            *self.errors_by_code.entry(code).or_default() += n;
        }
        self.unanswered += other.unanswered;
        self.elapsed += other.elapsed;
        self
    }

    fn errors(&self) -> u64 {
        self.errors_by_code.values().sum::<u64>() + self.unanswered
    }
}

/// One connection's shared state between sender and receiver.
struct Lane {
    resting: Mutex<VecDeque<OrderId>>,
}

#[derive(Clone)]
struct Plan {
    connections: usize,
    rate: u64,
    total: u64,
    warmup: u64,
    cancel_pct: u32,
    resting_max: usize,
    symbol: Code,
    base_price: i64,
    tick: i64,
    seed: u64,
    drain_timeout: Duration,
}

pub fn run(args: TcpBenchArgs, out: &mut impl Write) -> anyhow::Result<serde_json::Value> {
    if args.duration > DURATION_MAX || args.duration.is_zero() {
        bail!("--duration must be between 1 ms and {DURATION_MAX:?}");
    }
    if args.rate == 0 || args.rate > RATE_MAX {
        bail!("--rate must be between 1 and {RATE_MAX}");
    }
    if args.connections == 0 || args.connections > CONNECTIONS_MAX {
        bail!("--connections must be between 1 and {CONNECTIONS_MAX}");
    }
    let symbol = Code::new(&args.symbol).context("--symbol")?;
    let total = (args.rate as f64 * args.duration.as_secs_f64()).round() as u64;
    let plan = Plan {
        connections: args.connections,
        rate: args.rate,
        total,
        warmup: (args.rate as f64 * args.warmup.as_secs_f64()) as u64,
        cancel_pct: args.cancel_pct.min(100),
        resting_max: args.resting_max.max(1),
        symbol,
        base_price: args.base_price,
        tick: args.tick.max(1),
        seed: args.seed,
        drain_timeout: Duration::from_secs(args.drain_timeout_s),
    };
    let out_dir = args.out_dir.clone().unwrap_or_else(|| {
        let secs = unix_now().as_secs();
        PathBuf::from(format!("target/kuku-bench/tcp-{secs}"))
    });
    std::fs::create_dir_all(&out_dir)
        .with_context(|| format!("cannot create {}", out_dir.display()))?;
    lower_timer_slack();

    let slices = args.slices.clamp(1, SLICES_MAX);
    let mut slice_plan = plan.clone();
    slice_plan.total = (total / slices as u64).max(1);
    writeln!(
        out,
        "kuku{}: {} req/s over {} connections for {:?} ({}% cancels), in {} slice(s){}",
        if args.echo_baseline {
            " and the echo baseline"
        } else {
            ""
        },
        plan.rate,
        plan.connections,
        args.duration,
        plan.cancel_pct,
        slices,
        if args.echo_baseline && slices > 1 {
            ", echo and Kuku alternating"
        } else {
            ""
        }
    )?;
    let mode = if args.addr.is_some() {
        "external"
    } else {
        "in-process"
    };
    let admin_token = match &args.addr {
        Some(_) => Some(match &args.admin_token {
            Some(h) => decode_hex32(h).context("--admin-token")?,
            None => Credentials::load(&args.secrets)?.admin_token,
        }),
        None => None,
    };
    let mut echo: Option<RunResult> = None;
    let mut kuku: Option<RunResult> = None;
    for _ in 0..slices {
        // Echo and Kuku alternate, so both see the same (shared, noisy) machine.
        if args.echo_baseline {
            let e = run_echo(&slice_plan)?;
            echo = Some(match echo {
                Some(acc) => acc.merge(e),
                None => e,
            });
        }
        let k = match (&args.addr, admin_token) {
            (Some(addr), Some(token)) => {
                let addr: SocketAddr = addr.parse().context("--addr")?;
                run_kuku(&slice_plan, addr, token)?
            }
            _ => run_in_process(&slice_plan, &args.durability)?,
        };
        kuku = Some(match kuku {
            Some(acc) => acc.merge(k),
            None => k,
        });
    }
    let kuku = kuku.context("no slice ran")?;
    let sync = match &args.sync_probe_dir {
        Some(dir) => {
            writeln!(
                out,
                "sync probe: {} syncs in {}",
                args.sync_probe_count,
                dir.display()
            )?;
            Some(sync_probe(dir, args.sync_probe_count)?)
        }
        None => None,
    };
    let mut summary = summarize(&args, &plan, mode, &kuku, echo.as_ref(), &out_dir)?;
    summary["slices"] = json!(slices);
    if let Some(h) = &sync {
        let p = percentiles(h);
        summary["sync_p50_us"] = p["p50_us"].clone();
        summary["sync_p99_us"] = p["p99_us"].clone();
        summary["sync_max_us"] = p["max_us"].clone();
        summary["sync_count"] = p["count"].clone();
    }
    write_outputs(&out_dir, &kuku, echo.as_ref(), &summary)?;
    print_human(out, &summary)?;
    if args.json {
        writeln!(out, "{summary}")?;
    }
    Ok(summary)
}

fn run_in_process(plan: &Plan, durability: &str) -> anyhow::Result<RunResult> {
    use kuku_server::config::{FeedSettings, NodeConfig};
    use kuku_server::node::NodeOutputs;
    let dir = tempfile::tempdir()?;
    let admin_token = random_bytes32()?;
    let mut config = NodeConfig {
        data_dir: dir.path().to_owned(),
        durability: durability.to_owned(),
        schedule: kuku_server::scheduler::ScheduleMode::AlwaysOpen,
        snapshot_every: 0,
        feed: FeedSettings {
            enabled: false,
            ..FeedSettings::default()
        },
        ..NodeConfig::default()
    };
    config.gateway.listen = "127.0.0.1:0".into();
    config.gateway.secret_hex = Some(encode_hex(&random_bytes32()?));
    config.gateway.admin_token_hex = Some(encode_hex(&admin_token));
    config.gateway.rate_per_s = u32::MAX;
    config.gateway.burst = u32::MAX;
    config.gateway.outbound_bytes_max = 16 << 20;
    let (node, gateway) = kuku_server::gateway::start(&config, NodeOutputs::default())?;
    let addr = gateway.local_addr();
    // The fresh node registers its universe first; wait until the symbol trades.
    let deadline = Instant::now() + Duration::from_secs(30);
    while {
        let rm = node.read_model.read();
        rm.symbol_by_code(plan.symbol.as_str()).is_none() || rm.phase.is_none()
    } {
        if Instant::now() > deadline {
            bail!("the in-process node never listed {}", plan.symbol);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_millis(200));
    let result = run_kuku(plan, addr, admin_token);
    kuku_server::gateway::shutdown(node, gateway);
    result
}

/// Opens one funded account per connection, logs each in, and runs the load.
fn run_kuku(plan: &Plan, addr: SocketAddr, admin_token: Token) -> anyhow::Result<RunResult> {
    let mut admin = AdminClient::login(addr, admin_token).context("admin login")?;
    let nonce = unix_now().as_nanos();
    let mut streams = Vec::with_capacity(plan.connections);
    for c in 0..plan.connections {
        let owner = ExternalRef::new(&format!("bench-{nonce}-{c}")).context("owner")?;
        let opened = admin.open_account(owner)?;
        anyhow::ensure!(
            opened.code == 0,
            "open-account rejected: {}",
            code_name(opened.code)
        );
        let account = opened.account;
        let reference = ExternalRef::new(&format!("bench-{nonce}-{c}")).context("ref")?;
        let dep = admin.deposit(account, Amount(1_000_000_000_000_000), reference)?;
        anyhow::ensure!(dep.code == 0, "deposit rejected: {}", code_name(dep.code));
        let token = admin
            .issue_token(account)?
            .map_err(|c| anyhow::anyhow!("issue-token: {}", code_name(c)))?;
        streams.push(login(addr, account, token)?);
    }
    drop(admin);
    load(plan, streams)
}

fn login(addr: SocketAddr, account: AccountId, token: Token) -> anyhow::Result<TcpStream> {
    let mut s = TcpStream::connect(addr)?;
    s.set_nodelay(true)?;
    let login = Login {
        version: PROTOCOL_VERSION,
        account,
        flags: FLAG_NO_REPLAY,
        last_seen_acct_seq: 0,
        token,
    };
    s.write_all(&Message::from(login).to_frame())?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 512];
    loop {
        let n = s.read(&mut chunk)?;
        anyhow::ensure!(n > 0, "closed during login");
        buf.extend_from_slice(&chunk[..n]);
        if let Some((m, _)) = split_frame(&buf, u16::MAX as usize)? {
            anyhow::ensure!(matches!(m, Message::LoginAccepted(_)), "login: {m:?}");
            break;
        }
    }
    s.set_read_timeout(None)?;
    Ok(s)
}

fn run_echo(plan: &Plan) -> anyhow::Result<RunResult> {
    let server = EchoServer::start()?;
    let mut streams = Vec::with_capacity(plan.connections);
    for _ in 0..plan.connections {
        let s = TcpStream::connect(server.addr)?;
        s.set_nodelay(true)?;
        streams.push(s);
    }
    let result = load(plan, streams);
    server.stop();
    result
}

/// The open-loop load over `streams`: a sender (this thread) and a receiver thread.
fn load(plan: &Plan, streams: Vec<TcpStream>) -> anyhow::Result<RunResult> {
    let lanes: Arc<Vec<Lane>> = Arc::new(
        (0..streams.len())
            .map(|_| Lane {
                resting: Mutex::new(VecDeque::new()),
            })
            .collect(),
    );
    let sent = Arc::new(AtomicU64::new(0));
    let sending_done = Arc::new(AtomicBool::new(false));
    let t0 = Instant::now() + Duration::from_millis(50);
    let interval_ns = 1e9 / plan.rate as f64;
    let mut readers = Vec::with_capacity(streams.len());
    for s in &streams {
        let r = s.try_clone()?;
        r.set_nonblocking(true)?;
        readers.push(mio::net::TcpStream::from_std(r));
    }
    let receiver = {
        let lanes = Arc::clone(&lanes);
        let sent = Arc::clone(&sent);
        let done = Arc::clone(&sending_done);
        let (warmup, drain_timeout) = (plan.warmup, plan.drain_timeout);
        std::thread::Builder::new()
            .name("bench-receiver".into())
            .spawn(move || {
                receive(
                    readers,
                    lanes,
                    t0,
                    interval_ns,
                    warmup,
                    sent,
                    done,
                    drain_timeout,
                )
            })?
    };
    let started_unix = unix_now();
    let send_result = send(plan, streams, &lanes, t0, interval_ns, &sent);
    sending_done.store(true, Ordering::Release);
    let received = receiver
        .join()
        .map_err(|_| anyhow::anyhow!("the receiver panicked"))??;
    send_result?;
    let mut r = received;
    r.started_unix = started_unix;
    r.elapsed = r.elapsed.max(Duration::from_nanos(1));
    Ok(r)
}

/// Sends request `i` at `t0 + i * interval`, everything due in one write per connection.
fn send(
    plan: &Plan,
    mut streams: Vec<TcpStream>,
    lanes: &[Lane],
    t0: Instant,
    interval_ns: f64,
    sent: &AtomicU64,
) -> anyhow::Result<()> {
    let mut rng = plan.seed | 1;
    let mut buffers: Vec<Vec<u8>> = vec![Vec::with_capacity(4_096); streams.len()];
    let mut i = 0u64;
    while i < plan.total {
        let due = t0 + Duration::from_nanos((i as f64 * interval_ns) as u64);
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        }
        let now = Instant::now();
        let elapsed_ns = now.saturating_duration_since(t0).as_nanos() as f64;
        let due_last = ((elapsed_ns / interval_ns) as u64 + 1).min(plan.total);
        while i < due_last {
            let c = (i % streams.len() as u64) as usize;
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            let key = ClientOrderId(i + 1);
            let cancel = {
                let mut resting = lanes[c]
                    .resting
                    .lock()
                    .map_err(|_| anyhow::anyhow!("poisoned"))?;
                let wants =
                    resting.len() >= plan.resting_max || (rng % 100) < plan.cancel_pct as u64;
                if wants { resting.pop_front() } else { None }
            };
            let m: Message = match cancel {
                Some(order_id) => Cancel {
                    request_id: key,
                    order_id,
                }
                .into(),
                None => NewOrder {
                    client_order_id: key,
                    symbol: plan.symbol,
                    side: Side::Buy,
                    order_type: OrderType::Limit,
                    tif: TimeInForce::Day,
                    price: Price(plan.base_price - plan.tick * (1 + (rng >> 32) as i64 % 50)),
                    qty: Qty(1 + (rng >> 40) as i64 % 10),
                }
                .into(),
            };
            m.encode(&mut buffers[c]);
            i += 1;
        }
        for (c, buf) in buffers.iter_mut().enumerate() {
            if !buf.is_empty() {
                streams[c].write_all(buf).context("send")?;
                buf.clear();
            }
        }
        sent.store(i, Ordering::Release);
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn receive(
    mut readers: Vec<mio::net::TcpStream>,
    lanes: Arc<Vec<Lane>>,
    t0: Instant,
    interval_ns: f64,
    warmup: u64,
    sent: Arc<AtomicU64>,
    sending_done: Arc<AtomicBool>,
    drain_timeout: Duration,
) -> anyhow::Result<RunResult> {
    let mut poll = Poll::new()?;
    for (c, r) in readers.iter_mut().enumerate() {
        poll.registry()
            .register(r, MioToken(c), Interest::READABLE)?;
    }
    let mut histogram = Histogram::<u64>::new_with_bounds(1_000, 60_000_000_000, 3)?;
    let mut errors_by_code: BTreeMap<String, u64> = BTreeMap::new();
    let mut answered = 0u64;
    let mut acked = 0u64;
    let mut last_answer = t0;
    let mut inbound: Vec<Vec<u8>> = vec![Vec::with_capacity(64 * 1024); readers.len()];
    let mut events = Events::with_capacity(256);
    let mut chunk = vec![0u8; 256 * 1024];
    let mut drain_deadline: Option<Instant> = None;
    loop {
        if sending_done.load(Ordering::Acquire) {
            let total = sent.load(Ordering::Acquire);
            if answered >= total {
                break;
            }
            let deadline = *drain_deadline.get_or_insert_with(|| Instant::now() + drain_timeout);
            if Instant::now() >= deadline {
                break;
            }
        }
        poll.poll(&mut events, Some(Duration::from_millis(20)))?;
        for e in events.iter() {
            let c = e.token().0;
            loop {
                match readers[c].read(&mut chunk) {
                    Ok(0) => break,
                    Ok(n) => inbound[c].extend_from_slice(&chunk[..n]),
                    Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => break,
                    Err(err) if err.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(err) => return Err(err.into()),
                }
            }
            let now = Instant::now();
            let mut at = 0;
            while let Some((m, used)) = split_frame(&inbound[c][at..], u16::MAX as usize)? {
                at += used;
                let (key, ok) = match m {
                    Message::OrderAccepted(a) => {
                        if let Ok(mut r) = lanes[c].resting.lock() {
                            r.push_back(a.order_id);
                        }
                        (a.client_order_id.0, true)
                    }
                    Message::Cancelled(x) => (x.request_id.0, true),
                    // The echo baseline: its own frames come back.
                    Message::NewOrder(o) => {
                        if let Ok(mut r) = lanes[c].resting.lock() {
                            r.push_back(OrderId(o.client_order_id.0));
                        }
                        (o.client_order_id.0, true)
                    }
                    Message::Cancel(x) => (x.request_id.0, true),
                    Message::OrderRejected(r) => {
                        *errors_by_code.entry(code_name(r.reason)).or_default() += 1;
                        (r.client_order_id.0, false)
                    }
                    Message::RequestRejected(r) => {
                        *errors_by_code.entry(code_name(r.reason)).or_default() += 1;
                        (r.request_id.0, false)
                    }
                    Message::ProtocolError(p) => bail!("protocol error {}", code_name(p.code)),
                    Message::Logout(l) => bail!("logged out: {}", code_name(l.code)),
                    _ => continue,
                };
                answered += 1;
                last_answer = now;
                if ok {
                    acked += 1;
                    let i = key.saturating_sub(1);
                    if i >= warmup {
                        let due = t0 + Duration::from_nanos((i as f64 * interval_ns) as u64);
                        let latency_ns = now.saturating_duration_since(due).as_nanos() as u64;
                        histogram.saturating_record(latency_ns.max(1_000));
                    }
                }
            }
            inbound[c].drain(..at);
        }
    }
    let total = sent.load(Ordering::Acquire);
    Ok(RunResult {
        histogram,
        sent: total,
        acked,
        errors_by_code,
        unanswered: total.saturating_sub(answered),
        elapsed: last_answer.saturating_duration_since(t0),
        started_unix: Duration::ZERO,
    })
}

/// A minimal mio echo server on 127.0.0.1:0 (one thread).
struct EchoServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    waker: Arc<mio::Waker>,
    thread: std::thread::JoinHandle<()>,
}

impl EchoServer {
    fn start() -> anyhow::Result<EchoServer> {
        let poll = Poll::new()?;
        let waker = Arc::new(mio::Waker::new(poll.registry(), MioToken(usize::MAX))?);
        let mut listener = mio::net::TcpListener::bind("127.0.0.1:0".parse()?)?;
        let addr = listener.local_addr()?;
        poll.registry()
            .register(&mut listener, MioToken(usize::MAX - 1), Interest::READABLE)?;
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("bench-echo".into())
            .spawn(move || echo_loop(poll, listener, stop2))?;
        Ok(EchoServer {
            addr,
            stop,
            waker,
            thread,
        })
    }

    fn stop(self) {
        self.stop.store(true, Ordering::Release);
        let _ = self.waker.wake();
        let _ = self.thread.join();
    }
}

fn echo_loop(mut poll: Poll, listener: mio::net::TcpListener, stop: Arc<AtomicBool>) {
    let mut conns: Vec<(mio::net::TcpStream, Vec<u8>)> = Vec::new();
    let mut events = Events::with_capacity(256);
    let mut buf = vec![0u8; 64 * 1024];
    while !stop.load(Ordering::Acquire) {
        if poll
            .poll(&mut events, Some(Duration::from_millis(100)))
            .is_err()
        {
            return;
        }
        for e in events.iter() {
            match e.token().0 {
                t if t == usize::MAX - 1 => {
                    while let Ok((mut s, _)) = listener.accept() {
                        let _ = s.set_nodelay(true);
                        let token = MioToken(conns.len());
                        let interest = Interest::READABLE | Interest::WRITABLE;
                        if poll.registry().register(&mut s, token, interest).is_ok() {
                            conns.push((s, Vec::new()));
                        }
                    }
                }
                t if t < conns.len() => {
                    let (s, pending) = &mut conns[t];
                    loop {
                        match s.read(&mut buf) {
                            Ok(0) => break,
                            Ok(n) => pending.extend_from_slice(&buf[..n]),
                            Err(_) => break,
                        }
                    }
                    while !pending.is_empty() {
                        match s.write(pending) {
                            Ok(n) => {
                                pending.drain(..n);
                            }
                            Err(_) => break,
                        }
                    }
                }
                _ => {}
            }
        }
    }
}

/// Latency of `count` journal-like durable appends in `dir` (same file system as the node's
/// journal): 64 bytes copied into a preallocated, zero-filled mapping, then `msync(MS_SYNC)`
/// of the page that holds them. The file is removed afterwards.
fn sync_probe(dir: &Path, count: usize) -> anyhow::Result<Histogram<u64>> {
    const FRAME_BYTES: usize = 64;
    let count = count.clamp(1, 100_000);
    let file_bytes = (count * FRAME_BYTES).next_multiple_of(4_096);
    let path = dir.join(format!("kuku-bench-sync-probe-{}.tmp", std::process::id()));
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    let result = (|| -> anyhow::Result<Histogram<u64>> {
        // Zero-filled and synced up front, as the journal prepares a segment, so a sync
        // writes data pages only, never the file's size or block map.
        (&file).write_all(&vec![0u8; file_bytes])?;
        file.sync_all()?;
        // SAFETY: the file was created above by this process, is not truncated while
        // mapped, and nothing else maps it.
        let mut map = unsafe { memmap2::MmapMut::map_mut(&file)? };
        let mut histogram = Histogram::<u64>::new_with_bounds(1_000, 60_000_000_000, 3)?;
        let frame = [0xa5u8; FRAME_BYTES];
        for i in 0..count {
            let at = i * FRAME_BYTES;
            let t = Instant::now();
            map[at..at + FRAME_BYTES].copy_from_slice(&frame);
            let page = at / 4_096 * 4_096;
            map.flush_range(page, 4_096)?;
            histogram.saturating_record((t.elapsed().as_nanos() as u64).max(1_000));
        }
        Ok(histogram)
    })();
    let _ = std::fs::remove_file(&path);
    result
}

fn us(ns: u64) -> f64 {
    (ns as f64 / 1e3 * 10.0).round() / 10.0
}

fn percentiles(h: &Histogram<u64>) -> serde_json::Value {
    json!({
        "p50_us": us(h.value_at_quantile(0.50)),
        "p90_us": us(h.value_at_quantile(0.90)),
        "p99_us": us(h.value_at_quantile(0.99)),
        "p999_us": us(h.value_at_quantile(0.999)),
        "max_us": us(h.max()),
        "mean_us": us(h.mean() as u64),
        "count": h.len(),
    })
}

fn summarize(
    args: &TcpBenchArgs,
    plan: &Plan,
    mode: &str,
    kuku: &RunResult,
    echo: Option<&RunResult>,
    out_dir: &Path,
) -> anyhow::Result<serde_json::Value> {
    let k = percentiles(&kuku.histogram);
    let errors = kuku.errors();
    let error_rate = errors as f64 / kuku.sent.max(1) as f64;
    let achieved = kuku.acked as f64 / kuku.elapsed.as_secs_f64();
    let mut errors_by_code = kuku.errors_by_code.clone();
    if kuku.unanswered > 0 {
        errors_by_code.insert("Unanswered".into(), kuku.unanswered);
    }
    let mut summary = json!({
        "bench": "tcp",
        "date": rfc3339(kuku.started_unix),
        "mode": mode,
        "durability": if mode == "in-process" { args.durability.as_str() } else { "as served" },
        "connections": plan.connections,
        "duration_s": args.duration.as_secs_f64(),
        "warmup_s": args.warmup.as_secs_f64(),
        "order_mix": {
            "new_passive_limit_buy_pct": 100 - plan.cancel_pct,
            "cancel_oldest_pct": plan.cancel_pct,
            "resting_max_per_connection": plan.resting_max,
        },
        "offered_rate": plan.rate,
        "achieved_rate": (achieved * 10.0).round() / 10.0,
        "sent": kuku.sent,
        "acked": kuku.acked,
        "errors": errors,
        "error_rate": error_rate,
        "errors_by_code": errors_by_code,
        "valid": error_rate <= 0.01,
        "p50_us": k["p50_us"], "p90_us": k["p90_us"], "p99_us": k["p99_us"],
        "p999_us": k["p999_us"], "max_us": k["max_us"], "mean_us": k["mean_us"],
        "echo_p50_us": null, "echo_p99_us": null, "echo_p999_us": null, "echo_max_us": null,
        "out_dir": out_dir.display().to_string(),
    });
    if let Some(e) = echo {
        let p = percentiles(&e.histogram);
        let ratio = |a: &serde_json::Value, b: &serde_json::Value| {
            let (a, b) = (a.as_f64().unwrap_or(0.0), b.as_f64().unwrap_or(0.0));
            if b > 0.0 {
                ((a / b) * 100.0).round() / 100.0
            } else {
                0.0
            }
        };
        let p50_ratio = ratio(&k["p50_us"], &p["p50_us"]);
        let p99_ratio = ratio(&k["p99_us"], &p["p99_us"]);
        summary["echo_p50_us"] = p["p50_us"].clone();
        summary["echo_p99_us"] = p["p99_us"].clone();
        summary["echo_p999_us"] = p["p999_us"].clone();
        summary["echo_max_us"] = p["max_us"].clone();
        summary["echo_errors"] = json!(e.errors());
        summary["p50_ratio"] = json!(p50_ratio);
        summary["p99_ratio"] = json!(p99_ratio);
        summary["floor_met"] = json!(
            error_rate <= 0.01
                && p50_ratio <= 3.0
                && p99_ratio <= 4.0
                && achieved >= plan.rate as f64 * 0.99
        );
    }
    Ok(summary)
}

fn write_outputs(
    out_dir: &Path,
    kuku: &RunResult,
    echo: Option<&RunResult>,
    summary: &serde_json::Value,
) -> anyhow::Result<()> {
    use hdrhistogram::serialization::V2Serializer;
    use hdrhistogram::serialization::interval_log::{IntervalLogWriterBuilder, Tag};
    let mut log = Vec::new();
    let mut serializer = V2Serializer::new();
    {
        let mut writer = IntervalLogWriterBuilder::new()
            .add_comment("kuku-bench tcp: order-to-ack latency (ns) from intended send time")
            .with_base_time(std::time::UNIX_EPOCH + kuku.started_unix)
            .begin_log_with(&mut log, &mut serializer)?;
        let mut put = |r: &RunResult, tag: &str| -> anyhow::Result<()> {
            writer
                .write_histogram(&r.histogram, Duration::ZERO, r.elapsed, Tag::new(tag))
                .map_err(|e| anyhow::anyhow!("histogram log: {e}"))
        };
        put(kuku, "kuku")?;
        if let Some(e) = echo {
            put(e, "echo")?;
        }
    }
    std::fs::write(out_dir.join("latency.hlog"), log)?;
    std::fs::write(
        out_dir.join("summary.json"),
        serde_json::to_string_pretty(summary)?,
    )?;
    let mut series = vec![("kuku", "#d62728", &kuku.histogram)];
    if let Some(e) = echo {
        series.push(("echo baseline", "#1f77b4", &e.histogram));
    }
    std::fs::write(
        out_dir.join("percentiles.svg"),
        percentile_svg(&series, summary),
    )?;
    Ok(())
}

/// A latency-by-percentile plot (x: percentile on a 1/(1-p) log scale, y: microseconds).
pub fn percentile_svg(
    series: &[(&str, &str, &Histogram<u64>)],
    summary: &serde_json::Value,
) -> String {
    let (w, h, left, bottom, top, right) = (760.0, 420.0, 70.0, 50.0, 40.0, 20.0);
    let x_max_nines = 5.0; // up to 99.999%
    let y_max_us = series
        .iter()
        .map(|(_, _, hist)| hist.value_at_quantile(0.99999) as f64 / 1e3)
        .fold(1.0, f64::max)
        * 1.1;
    let px = |nines: f64| left + (w - left - right) * nines / x_max_nines;
    let py = |us: f64| top + (h - top - bottom) * (1.0 - us / y_max_us);
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
    );
    svg += &format!(
        "<text x=\"{left}\" y=\"20\" font-size=\"14\">kuku-bench tcp: latency by percentile ({} req/s offered, {} connections, {})</text>\n",
        summary["offered_rate"],
        summary["connections"],
        summary["date"].as_str().unwrap_or("")
    );
    for (i, label) in ["0%", "90%", "99%", "99.9%", "99.99%", "99.999%"]
        .iter()
        .enumerate()
    {
        let x = px(i as f64);
        svg += &format!(
            "<line x1=\"{x:.1}\" y1=\"{top}\" x2=\"{x:.1}\" y2=\"{:.1}\" stroke=\"#ddd\"/>\n",
            h - bottom
        );
        svg += &format!(
            "<text x=\"{x:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{label}</text>\n",
            h - bottom + 18.0
        );
    }
    for i in 0..=5 {
        let us_val = y_max_us * i as f64 / 5.0;
        let y = py(us_val);
        svg += &format!(
            "<line x1=\"{left}\" y1=\"{y:.1}\" x2=\"{:.1}\" y2=\"{y:.1}\" stroke=\"#ddd\"/>\n",
            w - right
        );
        svg += &format!(
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{us_val:.0}</text>\n",
            left - 6.0,
            y + 4.0
        );
    }
    svg += &format!(
        "<text x=\"14\" y=\"{:.1}\" transform=\"rotate(-90 14 {:.1})\">latency (us)</text>\n",
        h / 2.0,
        h / 2.0
    );
    svg += &format!(
        "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">percentile</text>\n",
        (w + left) / 2.0,
        h - 8.0
    );
    for (k, (name, color, hist)) in series.iter().enumerate() {
        let mut points = String::new();
        let steps = 200;
        for s in 0..=steps {
            let nines = x_max_nines * s as f64 / steps as f64;
            let q = 1.0 - 10f64.powf(-nines);
            let v = hist.value_at_quantile(q.min(1.0)) as f64 / 1e3;
            points += &format!("{:.1},{:.1} ", px(nines), py(v.min(y_max_us)));
        }
        svg += &format!(
            "<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"2\" points=\"{points}\"/>\n"
        );
        let ly = top + 16.0 + 16.0 * k as f64;
        svg += &format!(
            "<line x1=\"{:.1}\" y1=\"{ly:.1}\" x2=\"{:.1}\" y2=\"{ly:.1}\" stroke=\"{color}\" stroke-width=\"2\"/>\n",
            left + 10.0,
            left + 30.0
        );
        svg += &format!(
            "<text x=\"{:.1}\" y=\"{:.1}\">{name}</text>\n",
            left + 36.0,
            ly + 4.0
        );
    }
    svg += "</svg>\n";
    svg
}

fn print_human(out: &mut impl Write, s: &serde_json::Value) -> anyhow::Result<()> {
    writeln!(
        out,
        "kuku: offered {} req/s, achieved {} req/s, p50 {} us, p99 {} us, p99.9 {} us, max {} us, errors {} ({:.3}%){}",
        s["offered_rate"],
        s["achieved_rate"],
        s["p50_us"],
        s["p99_us"],
        s["p999_us"],
        s["max_us"],
        s["errors"],
        s["error_rate"].as_f64().unwrap_or(0.0) * 100.0,
        if s["valid"].as_bool() == Some(true) {
            ""
        } else {
            "  INVALID: more than 1% errors"
        }
    )?;
    if !s["echo_p50_us"].is_null() {
        writeln!(
            out,
            "echo: p50 {} us, p99 {} us, p99.9 {} us, max {} us; ratios p50 {}x, p99 {}x (floor: 3x, 4x) -> floor met: {}",
            s["echo_p50_us"],
            s["echo_p99_us"],
            s["echo_p999_us"],
            s["echo_max_us"],
            s["p50_ratio"],
            s["p99_ratio"],
            s["floor_met"]
        )?;
    }
    if !s["sync_p50_us"].is_null() {
        writeln!(
            out,
            "sync probe (64 B + msync of its page): p50 {} us, p99 {} us, max {} us over {} syncs",
            s["sync_p50_us"], s["sync_p99_us"], s["sync_max_us"], s["sync_count"]
        )?;
    }
    writeln!(out, "outputs: {}", s["out_dir"].as_str().unwrap_or(""))?;
    Ok(())
}

fn lower_timer_slack() {
    #[cfg(target_os = "linux")]
    // SAFETY: PR_SET_TIMERSLACK takes one integer argument and only affects this thread.
    unsafe {
        libc::prctl(libc::PR_SET_TIMERSLACK, 1_000u64, 0, 0, 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_dates_parse_and_format() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2"), Ok(Duration::from_secs(2)));
        assert!(parse_duration("3h").is_err());
    }

    /// A tiny in-process run: the whole harness end to end (node, gateway, echo, outputs).
    #[test]
    fn heavy_a_small_in_process_run_with_echo_is_valid() {
        let dir = tempfile::tempdir().unwrap();
        let args = TcpBenchArgs {
            addr: None,
            admin_token: None,
            secrets: PathBuf::new(),
            connections: 2,
            rate: 500,
            duration: Duration::from_millis(600),
            warmup: Duration::from_millis(100),
            cancel_pct: 50,
            resting_max: 16,
            echo_baseline: true,
            durability: "none".into(),
            symbol: "005930".into(),
            base_price: 119_900,
            tick: 100,
            drain_timeout_s: 5,
            seed: 7,
            out_dir: Some(dir.path().to_owned()),
            json: true,
            sync_probe_dir: Some(dir.path().to_owned()),
            sync_probe_count: 20,
            slices: 2,
        };
        let mut out = Vec::new();
        let s = run(args, &mut out).unwrap();
        assert_eq!(s["errors"], 0, "{s}");
        assert_eq!(s["valid"], true);
        assert_eq!(s["sent"], 300);
        assert!(s["echo_p50_us"].as_f64().unwrap() > 0.0);
        assert_eq!(s["sync_count"], 20, "{s}");
        for f in ["latency.hlog", "summary.json", "percentiles.svg"] {
            assert!(dir.path().join(f).exists(), "{f}");
        }
        let text = String::from_utf8(out).unwrap();
        let last: serde_json::Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
        for key in [
            "offered_rate",
            "achieved_rate",
            "p50_us",
            "p99_us",
            "p999_us",
            "max_us",
            "errors",
            "echo_p50_us",
            "echo_p99_us",
        ] {
            assert!(last.get(key).is_some(), "{key}");
        }
    }
}
