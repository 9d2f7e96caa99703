//! `kuku-bench http`: order-to-response latency over the HTTP door, open loop at a fixed
//! offered rate, beside a baseline axum endpoint measured the same way in the same run.
//!
//! **Method**
//! - An in-process node (always-open schedule, no feed, durability `none` by default) with
//!   its HTTP door on an ephemeral port, and in the same process a baseline axum server on
//!   another: it decodes the same JSON body into the door's own request type, checks the same
//!   HS256 bearer token with the door's own verifier, and answers a body of the same size as
//!   the node's answer, on a runtime with as many threads as the door's. The node minus the
//!   node, so the ratio is what the node adds.
//! - Open loop: request `i` is due at `t0 + i / rate`. A pacer thread hands each request to
//!   the client runtime at its due time; the request takes an idle keep-alive connection
//!   (waiting for one if all are busy) and its latency is measured from the *intended* send
//!   time to the last byte of the answer (coordinated omission corrected).
//! - Each request is a new passive DAY limit buy (1-50 ticks below the base price, so it never
//!   trades) with a fresh Idempotency-Key, for one of `accounts` funded accounts, round robin.
//! - Phases alternate baseline, node, baseline, node ... (`slices` of each), each with its own
//!   warm-up, so both see the same background load; histograms are merged per side.
//! - Errors: any answer other than 201 (baseline: 200), and any request unanswered
//!   `drain_timeout` after the last send. The floor (`--floor`) asks for p50 <= 3x and
//!   p99 <= 4x the baseline's, and 0 errors.
//!
//! **Known limitations**: client, baseline and node share the machine's cores, so the
//! client's scheduling delays are in both numbers; the pacer's sleep resolution (tens of
//! microseconds) is charged to both sides alike.

use crate::machine::{cpu_model, utc_now};
use anyhow::{Context, bail};
use axum::body::Bytes;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use kuku_server::config::{FeedSettings, NodeConfig};
use kuku_server::http::HttpDoor;
use kuku_server::http::api::NewOrderRequest;
use kuku_server::http::jwt::{JwtKeys, now_s};
use kuku_server::node::NodeOutputs;
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Bounds: the bench always stops by itself.
const DURATION_MAX: Duration = Duration::from_secs(600);
const RATE_MAX: u64 = 200_000;
const CONNECTIONS_MAX: usize = 1_024;
const RUNS_MAX: usize = 50;

#[derive(Debug, clap::Args)]
pub struct HttpBenchArgs {
    /// Offered orders per second.
    #[arg(long, default_value_t = 5_000)]
    pub rate: u64,
    /// Measured time per slice and side, e.g. `5s`.
    #[arg(long, default_value = "5s", value_parser = crate::tcp_bench::parse_duration)]
    pub duration: Duration,
    /// Sent but not recorded at the start of each slice.
    #[arg(long, default_value = "1s", value_parser = crate::tcp_bench::parse_duration)]
    pub warmup: Duration,
    /// Keep-alive connections of the client.
    #[arg(long, default_value_t = 64)]
    pub connections: usize,
    /// Accounts placing the orders.
    #[arg(long, default_value_t = 8)]
    pub accounts: usize,
    /// Baseline/node slice pairs per run.
    #[arg(long, default_value_t = 2)]
    pub slices: usize,
    /// Independent runs (a fresh node each); the report gives each and the median.
    #[arg(long, default_value_t = 1)]
    pub runs: usize,
    /// `none` or `every-batch`.
    #[arg(long, default_value = "none")]
    pub durability: String,
    /// Threads of the door's runtime (and of the baseline's).
    #[arg(long, default_value_t = 2)]
    pub server_threads: usize,
    /// Threads of the client's runtime.
    #[arg(long, default_value_t = 1)]
    pub client_threads: usize,
    #[arg(long, default_value = "005930")]
    pub symbol: String,
    #[arg(long, default_value_t = 119_900)]
    pub base_price: i64,
    #[arg(long, default_value_t = 100)]
    pub tick: i64,
    #[arg(long, default_value_t = 5)]
    pub drain_timeout_s: u64,
    /// A small, quick run (CI): 500/s, 300 ms slices, one pair, one run.
    #[arg(long)]
    pub smoke: bool,
    /// Exit non-zero unless the median run meets p50 <= 3x, p99 <= 4x and 0 errors.
    #[arg(long)]
    pub floor: bool,
    /// Print the JSON summary as the last line.
    #[arg(long)]
    pub json: bool,
}

/// One side's numbers in one run.
#[derive(Clone, Debug, serde::Serialize)]
pub struct SideResult {
    pub requests: u64,
    pub errors: u64,
    pub p50_us: f64,
    pub p90_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    pub max_us: f64,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct RunReport {
    pub node: SideResult,
    pub baseline: SideResult,
    pub p50_ratio: f64,
    pub p99_ratio: f64,
    pub response_bytes: usize,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct HttpBenchReport {
    pub date: String,
    pub cpu: String,
    pub rate: u64,
    pub duration_s: f64,
    pub slices: usize,
    pub connections: usize,
    pub durability: String,
    pub runs: Vec<RunReport>,
    pub median_p50_ratio: f64,
    pub median_p99_ratio: f64,
    pub errors_total: u64,
    pub floor_met: bool,
}

impl HttpBenchArgs {
    fn validate(&mut self) -> anyhow::Result<()> {
        if self.smoke {
            self.rate = 500;
            self.duration = Duration::from_millis(300);
            self.warmup = Duration::from_millis(100);
            self.slices = 1;
            self.runs = 1;
            self.connections = self.connections.min(8);
        }
        if self.rate == 0 || self.rate > RATE_MAX {
            bail!("--rate must be between 1 and {RATE_MAX}");
        }
        if self.duration.is_zero() || self.duration + self.warmup > DURATION_MAX {
            bail!("--duration must be positive and, with --warmup, at most 600 s");
        }
        if self.connections == 0 || self.connections > CONNECTIONS_MAX {
            bail!("--connections must be between 1 and {CONNECTIONS_MAX}");
        }
        if self.runs == 0 || self.runs > RUNS_MAX || self.slices == 0 || self.slices > 20 {
            bail!("--runs must be 1-{RUNS_MAX} and --slices 1-20");
        }
        if self.accounts == 0 || self.accounts > 1_000 {
            bail!("--accounts must be between 1 and 1000");
        }
        Ok(())
    }
}

/// Runs the benchmark and prints its report; false when a request failed, or when `--floor`
/// was asked for and the median run missed it.
pub fn run(mut args: HttpBenchArgs, out: &mut dyn std::io::Write) -> anyhow::Result<bool> {
    args.validate()?;
    let mut runs = Vec::with_capacity(args.runs);
    for r in 0..args.runs {
        let report = one_run(&args).with_context(|| format!("run {}", r + 1))?;
        writeln!(
            out,
            "run {}: node p50 {:.0} us p99 {:.0} us | baseline p50 {:.0} us p99 {:.0} us | \
             ratio p50 {:.2}x p99 {:.2}x | errors {} + {} (baseline) | {} requests",
            r + 1,
            report.node.p50_us,
            report.node.p99_us,
            report.baseline.p50_us,
            report.baseline.p99_us,
            report.p50_ratio,
            report.p99_ratio,
            report.node.errors,
            report.baseline.errors,
            report.node.requests,
        )?;
        runs.push(report);
    }
    let median = |f: fn(&RunReport) -> f64| {
        let mut v: Vec<f64> = runs.iter().map(f).collect();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let errors_total = runs.iter().map(|r| r.node.errors + r.baseline.errors).sum();
    let (p50, p99) = (median(|r| r.p50_ratio), median(|r| r.p99_ratio));
    let report = HttpBenchReport {
        date: utc_now(),
        cpu: cpu_model(),
        rate: args.rate,
        duration_s: args.duration.as_secs_f64(),
        slices: args.slices,
        connections: args.connections,
        durability: args.durability.clone(),
        median_p50_ratio: p50,
        median_p99_ratio: p99,
        errors_total,
        floor_met: p50 <= 3.0 && p99 <= 4.0 && errors_total == 0,
        runs,
    };
    writeln!(
        out,
        "median of {} run(s) at {}/s: p50 {:.2}x, p99 {:.2}x the baseline, {} errors: floor \
         (p50 <= 3x, p99 <= 4x, 0 errors) {}",
        report.runs.len(),
        report.rate,
        p50,
        p99,
        errors_total,
        if report.floor_met { "met" } else { "NOT met" }
    )?;
    if args.json {
        writeln!(out, "{}", serde_json::to_string(&report)?)?;
    }
    // Errors fail any run (a smoke run included); the latency floor only with --floor.
    Ok(report.errors_total == 0 && (!args.floor || report.floor_met))
}

/// Starts a node from `config` with both doors open: the TCP gateway and the HTTP door.
pub(crate) fn start_node(
    config: &NodeConfig,
) -> anyhow::Result<(
    kuku_server::node::Node,
    kuku_gateway::server::GatewayHandle,
    kuku_server::http::HttpServer,
)> {
    let mut outputs = NodeOutputs::default();
    let door = HttpDoor::prepare(config, &mut outputs)?;
    let (node, gateway) = kuku_server::gateway::start(config, outputs)?;
    let credentials = config.gateway.credentials(config)?;
    let http = door.serve(
        &node,
        gateway.rate_limits(),
        credentials.secret,
        credentials.admin_token,
    )?;
    Ok((node, gateway, http))
}

/// A bench node's doors: the TCP gateway and the HTTP door on ephemeral ports of 127.0.0.1,
/// a fresh gateway secret, the given admin token and JWT key, and no rate limit.
pub(crate) fn open_doors(
    config: &mut NodeConfig,
    admin_token: &[u8; 32],
    jwt_key: &[u8; 32],
) -> anyhow::Result<()> {
    config.gateway.listen = "127.0.0.1:0".into();
    config.gateway.secret_hex = Some(kuku_gateway::auth::encode_hex(
        &kuku_gateway::auth::random_bytes32()?,
    ));
    config.gateway.admin_token_hex = Some(kuku_gateway::auth::encode_hex(admin_token));
    config.gateway.rate_per_s = u32::MAX;
    config.gateway.burst = u32::MAX;
    config.http.listen = "127.0.0.1:0".into();
    config.http.jwt_key_hex = Some(kuku_gateway::auth::encode_hex(jwt_key));
    Ok(())
}

/// The in-process node with its door, the baseline, the accounts; then the slices.
fn one_run(args: &HttpBenchArgs) -> anyhow::Result<RunReport> {
    let dir = tempfile::tempdir()?;
    let admin_token = kuku_gateway::auth::random_bytes32()?;
    let jwt_key = kuku_gateway::auth::random_bytes32()?;
    let mut config = NodeConfig {
        data_dir: dir.path().to_owned(),
        durability: args.durability.clone(),
        schedule: kuku_server::scheduler::ScheduleMode::AlwaysOpen,
        snapshot_every: 0,
        feed: FeedSettings {
            enabled: false,
            ..FeedSettings::default()
        },
        ..NodeConfig::default()
    };
    open_doors(&mut config, &admin_token, &jwt_key)?;
    config.http.worker_threads = args.server_threads;
    let (node, gateway, http) = start_node(&config)?;
    let node_addr = http.local_addr();
    let client = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.client_threads)
        .enable_all()
        .build()?;
    let result = client.block_on(measure(args, node_addr, admin_token, jwt_key));
    drop(client);
    http.shutdown();
    kuku_server::gateway::shutdown(node, gateway);
    result
}

async fn measure(
    args: &HttpBenchArgs,
    node: SocketAddr,
    admin_token: [u8; 32],
    jwt_key: [u8; 32],
) -> anyhow::Result<RunReport> {
    let admin = format!("Bearer {}", kuku_gateway::auth::encode_hex(&admin_token));
    wait_open(node, &admin).await?;
    let mut bearers = Vec::with_capacity(args.accounts);
    let nonce = now_s();
    for a in 0..args.accounts {
        bearers.push(account(node, &admin, &format!("bench-{nonce}-{a}")).await?);
    }
    // The node's answer to an order: its size is the baseline's.
    let probe = order_body(args, 0);
    let (status, body) = call(
        node,
        "POST",
        "/api/v1/orders",
        &[("authorization", &bearers[0]), ("idempotency-key", "probe")],
        Some(probe),
    )
    .await?;
    anyhow::ensure!(status == 201, "the probe order was answered {status}");
    let response_bytes = body.len();
    let baseline = start_baseline(jwt_key, response_bytes, args.server_threads)?;
    let plan = Arc::new(Plan {
        rate: args.rate,
        warmup: args.warmup,
        duration: args.duration,
        drain_timeout: Duration::from_secs(args.drain_timeout_s),
        bearers,
        bodies: (0..64).map(|i| order_body(args, i)).collect(),
    });
    let (mut node_h, mut base_h) = (histogram(), histogram());
    let (mut node_err, mut base_err, mut node_n, mut base_n) = (0, 0, 0, 0);
    for slice in 0..args.slices {
        let b = slice_run(
            Arc::clone(&plan),
            baseline.addr,
            200,
            args.connections,
            slice,
        )
        .await?;
        base_h.add(&b.histogram)?;
        (base_err, base_n) = (base_err + b.errors, base_n + b.requests);
        let n = slice_run(Arc::clone(&plan), node, 201, args.connections, slice).await?;
        node_h.add(&n.histogram)?;
        (node_err, node_n) = (node_err + n.errors, node_n + n.requests);
    }
    baseline.stop();
    let node = side(&node_h, node_n, node_err);
    let baseline = side(&base_h, base_n, base_err);
    Ok(RunReport {
        p50_ratio: node.p50_us / baseline.p50_us.max(1.0),
        p99_ratio: node.p99_us / baseline.p99_us.max(1.0),
        node,
        baseline,
        response_bytes,
    })
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid bounds")
}

fn side(h: &Histogram<u64>, requests: u64, errors: u64) -> SideResult {
    let q = |p: f64| h.value_at_quantile(p) as f64;
    SideResult {
        requests,
        errors,
        p50_us: q(0.50),
        p90_us: q(0.90),
        p99_us: q(0.99),
        p999_us: q(0.999),
        max_us: h.max() as f64,
    }
}

fn order_body(args: &HttpBenchArgs, i: u64) -> Bytes {
    let ticks = 1 + (i % 50) as i64;
    let body = json!({
        "symbol": args.symbol,
        "side": "buy",
        "type": "limit",
        "tif": "day",
        "price": args.base_price - ticks * args.tick,
        "qty": 1,
    });
    Bytes::from(serde_json::to_vec(&body).expect("JSON"))
}

struct Plan {
    rate: u64,
    warmup: Duration,
    duration: Duration,
    drain_timeout: Duration,
    bearers: Vec<String>,
    bodies: Vec<Bytes>,
}

struct Slice {
    histogram: Histogram<u64>,
    requests: u64,
    errors: u64,
}

type Connection = SendRequest<Full<Bytes>>;

async fn connect(addr: SocketAddr) -> anyhow::Result<Connection> {
    let stream = tokio::net::TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

/// One open-loop slice against `addr`: warm-up, then `duration` recorded.
async fn slice_run(
    plan: Arc<Plan>,
    addr: SocketAddr,
    ok_status: u16,
    connections: usize,
    slice: usize,
) -> anyhow::Result<Slice> {
    let mut pool = Vec::with_capacity(connections);
    for _ in 0..connections {
        pool.push(connect(addr).await?);
    }
    let pool = Arc::new(parking_lot::Mutex::new(pool));
    let permits = Arc::new(tokio::sync::Semaphore::new(connections));
    let total = ((plan.warmup + plan.duration).as_secs_f64() * plan.rate as f64) as u64;
    let warm = (plan.warmup.as_secs_f64() * plan.rate as f64) as u64;
    let (due_tx, mut due_rx) = tokio::sync::mpsc::unbounded_channel::<(u64, Instant)>();
    let t0 = Instant::now() + Duration::from_millis(20);
    let interval_ns = 1_000_000_000 / plan.rate;
    // The pacer: a thread that sleeps until each request's due time.
    let pacer = std::thread::spawn(move || {
        for i in 0..total {
            let due = t0 + Duration::from_nanos(i * interval_ns);
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
            if due_tx.send((i, due)).is_err() {
                return;
            }
        }
    });
    let (lat_tx, mut lat_rx) = tokio::sync::mpsc::unbounded_channel::<Option<u64>>();
    let errors = Arc::new(AtomicU64::new(0));
    while let Some((i, due)) = due_rx.recv().await {
        let (plan, pool, permits, lat_tx, errors) = (
            Arc::clone(&plan),
            Arc::clone(&pool),
            Arc::clone(&permits),
            lat_tx.clone(),
            Arc::clone(&errors),
        );
        tokio::spawn(async move {
            let ok = one_request(&plan, addr, &pool, &permits, i, slice, ok_status).await;
            let latency_us = due.elapsed().as_micros() as u64;
            if !ok {
                errors.fetch_add(1, Ordering::Relaxed);
            }
            let recorded = (i >= warm && ok).then_some(latency_us.max(1));
            let _ = lat_tx.send(recorded);
        });
    }
    let _ = pacer.join();
    drop(lat_tx);
    let mut histogram = histogram();
    let mut answered = 0u64;
    let deadline = Instant::now() + plan.drain_timeout;
    while answered < total {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, lat_rx.recv()).await {
            Ok(Some(Some(us))) => {
                histogram.record(us.min(60_000_000))?;
                answered += 1;
            }
            Ok(Some(None)) => answered += 1,
            Ok(None) | Err(_) => break,
        }
    }
    let unanswered = total - answered;
    Ok(Slice {
        histogram,
        requests: total - warm,
        errors: errors.load(Ordering::Relaxed) + unanswered,
    })
}

async fn one_request(
    plan: &Plan,
    addr: SocketAddr,
    pool: &parking_lot::Mutex<Vec<Connection>>,
    permits: &tokio::sync::Semaphore,
    i: u64,
    slice: usize,
    ok_status: u16,
) -> bool {
    let Ok(_permit) = permits.acquire().await else {
        return false;
    };
    let taken = pool.lock().pop();
    let mut conn = match taken {
        Some(c) if !c.is_closed() => c,
        _ => match connect(addr).await {
            Ok(c) => c,
            Err(_) => return false,
        },
    };
    let bearer = &plan.bearers[i as usize % plan.bearers.len()];
    let key = format!("s{slice}-{i}");
    let request = hyper::Request::post("/api/v1/orders")
        .header("host", addr.to_string())
        .header("authorization", bearer)
        .header("idempotency-key", key)
        .header("content-type", "application/json")
        .body(Full::new(
            plan.bodies[i as usize % plan.bodies.len()].clone(),
        ));
    let Ok(request) = request else {
        return false;
    };
    if conn.ready().await.is_err() {
        return false;
    }
    let ok = match conn.send_request(request).await {
        Ok(response) => {
            let status = response.status().as_u16();
            response.into_body().collect().await.is_ok() && status == ok_status
        }
        Err(_) => false,
    };
    pool.lock().push(conn);
    ok
}

/// A one-off request on its own connection (setup only).
pub(crate) async fn call(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<Bytes>,
) -> anyhow::Result<(u16, Bytes)> {
    let mut conn = connect(addr).await?;
    let mut request = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header("host", addr.to_string())
        .header("content-type", "application/json");
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    let request = request.body(Full::new(body.unwrap_or_default()))?;
    let response = conn.send_request(request).await?;
    let status = response.status().as_u16();
    let bytes = response.into_body().collect().await?.to_bytes();
    Ok((status, bytes))
}

async fn json_call(
    addr: SocketAddr,
    path: &str,
    bearer: &str,
    body: Value,
) -> anyhow::Result<Value> {
    let (status, bytes) = call(
        addr,
        "POST",
        path,
        &[("authorization", bearer)],
        Some(Bytes::from(serde_json::to_vec(&body)?)),
    )
    .await?;
    anyhow::ensure!(
        (200..300).contains(&status),
        "{path}: {status} {}",
        String::from_utf8_lossy(&bytes)
    );
    Ok(serde_json::from_slice(&bytes)?)
}

/// A funded account and its access token (`Bearer ...`).
pub(crate) async fn account(node: SocketAddr, admin: &str, owner: &str) -> anyhow::Result<String> {
    let opened = json_call(
        node,
        "/api/v1/admin/accounts",
        admin,
        json!({"owner": owner}),
    )
    .await?;
    let id = opened["account"].as_u64().context("account id")?;
    json_call(
        node,
        "/api/v1/admin/deposits",
        admin,
        json!({"account": id, "amount": 1_000_000_000_000_000_i64, "external_ref": owner}),
    )
    .await?;
    let token = json_call(
        node,
        &format!("/api/v1/admin/accounts/{id}/token"),
        admin,
        json!({}),
    )
    .await?;
    let exchanged = json_call(
        node,
        "/api/v1/auth/token",
        "",
        json!({"account": id, "token": token["token"]}),
    )
    .await?;
    let jwt = exchanged["access_token"].as_str().context("access token")?;
    Ok(format!("Bearer {jwt}"))
}

/// Waits until the node's bootstrap opened the market (the phase is continuous).
pub(crate) async fn wait_open(node: SocketAddr, admin: &str) -> anyhow::Result<()> {
    let bearer = account(node, admin, &format!("bench-probe-{}", now_s())).await?;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, market) = call(
            node,
            "GET",
            "/api/v1/market",
            &[("authorization", &bearer)],
            None,
        )
        .await?;
        if status == 200 && serde_json::from_slice::<Value>(&market)?["phase"] == "continuous" {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("the in-process node never opened its market");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The baseline server: its own runtime and thread, like the door's.
struct Baseline {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Baseline {
    fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn start_baseline(
    jwt_key: [u8; 32],
    response_bytes: usize,
    threads: usize,
) -> anyhow::Result<Baseline> {
    use axum::http::{HeaderMap, StatusCode};
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    let keys = Arc::new(JwtKeys::new(&jwt_key, 900));
    // `{"pad":"   ..."}` of exactly the node's answer's size.
    let pad = response_bytes.saturating_sub(r#"{"pad":""}"#.len());
    let answer = Bytes::from(format!(r#"{{"pad":"{}"}}"#, " ".repeat(pad)));
    let handler = move |headers: HeaderMap, body: Bytes| {
        let (keys, answer) = (Arc::clone(&keys), answer.clone());
        async move {
            let token = headers
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "));
            let authorized = token.is_some_and(|t| keys.verify(t).is_ok());
            let decoded = serde_json::from_slice::<NewOrderRequest>(&body).is_ok();
            let has_key = headers.contains_key("idempotency-key");
            let status = if authorized && decoded && has_key {
                StatusCode::OK
            } else {
                StatusCode::BAD_REQUEST
            };
            (status, [("content-type", "application/json")], answer)
        }
    };
    let app = axum::Router::new().route("/api/v1/orders", axum::routing::post(handler));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()?;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::Builder::new()
        .name("bench-baseline".into())
        .spawn(move || {
            runtime.block_on(async move {
                let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
                    return;
                };
                let _ = axum::serve(listener, app)
                    .with_graceful_shutdown(async move {
                        let _ = stop_rx.await;
                    })
                    .await;
            });
            runtime.shutdown_timeout(Duration::from_secs(1));
        })?;
    Ok(Baseline {
        addr,
        stop: Some(stop_tx),
        thread: Some(thread),
    })
}
