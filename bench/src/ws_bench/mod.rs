//! `kuku-bench ws`: WebSocket fan-out of a Kuku node to many clients, beside a bare tokio +
//! tokio-tungstenite baseline measured the same way in the same run.
//!
//! **Method**
//! - Two servers, each a child process of the bench so that its resident memory is its own:
//!   the node (`kuku-bench ws-node-server`: a node as `kuku serve` starts it, with the
//!   simulated feed walking `--symbols` symbols at `--quote-rate` quotes a second in all) and
//!   the baseline (`kuku-bench ws-baseline-server`). Each run measures the node, then the
//!   baseline; the baseline broadcasts quote and trade messages of the sizes and at the rates
//!   the clients received from the node in that run, through a broadcast channel as deep as
//!   the node's per-connection queue bound, in one burst per node feed step (the node's feed
//!   delivers a step's quotes and ticks together; `--baseline-spread` spaces them evenly).
//! - During the node's phase, market IOC orders of 1 share (a buy then a sell of each symbol
//!   in turn) go through the HTTP API at `--order-rate`, so the engine trades against the
//!   feed's quotes.
//! - The clients (`fleet`): `--clients` connections from `--client-threads` threads, each
//!   subscribed to the quote and trades channels of every symbol. Once all subscribed, a
//!   warm-up, then a window of `--duration`: every message whose `ts` falls inside it is
//!   counted per connection and its event-to-client latency (`now - ts`) recorded; after the
//!   window, a drain of `--drain` before the connections close.
//! - Undelivered: every connection subscribed to the same channels, so every connection that
//!   keeps up (the server did not close it) must have received the same messages in the
//!   window: each one's shortfall against the connection that received the most is counted.
//! - Server counters: the node's `kuku_ws_*` metrics, scraped before the clients close; the
//!   baseline's own counters (broadcast, written, lost to `Lagged`), printed when it stops.
//! - Resident memory: `VmRSS` of the server's process every second; flat when its largest
//!   value in the last half of the window is less than 5% above its value at the window's
//!   midpoint.
//! - The floor, per run: the node's p99 at most 2x the baseline's; 0 undelivered messages to
//!   the connections that kept up; the node's memory flat.
//!
//! **Known limitations**: clients and server share the machine's cores (two on the reference
//! machine), so the clients' own reading time is in both sides' latencies, and a server that
//! needs more CPU leaves less to the clients; the baseline's rates are the node's as received,
//! so a node that loses messages also lowers the baseline's offered load.

mod baseline;
pub mod fleet;
mod node_server;

pub use baseline::{BaselineServerArgs, serve as serve_baseline};
pub use node_server::{NodeServerArgs, serve as serve_node};

use crate::machine::{cpu_model, utc_now};
use anyhow::{Context, bail};
use fleet::{Fleet, FleetConfig, FleetResult, now_ns};
use hdrhistogram::Histogram;
use serde::Serialize;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Bounds: the bench always stops by itself.
const CLIENTS_MAX: usize = 19_000;
const DURATION_MAX: Duration = Duration::from_secs(600);
const RUNS_MAX: usize = 20;
const RATE_MAX: f64 = 10_000.0;
/// How long a child may take to start serving, and to stop.
const CHILD_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the clients may take to connect and subscribe.
const SUBSCRIBE_TIMEOUT: Duration = Duration::from_secs(180);
/// How long the order sender may take to open and fund its account.
const ORDER_SET_UP_TIMEOUT: Duration = Duration::from_secs(60);
/// The node's memory may grow this much in the last half of the window and still be flat.
const FLAT_GROWTH_MAX: f64 = 0.05;

#[derive(Debug, clap::Args)]
pub struct WsBenchArgs {
    /// WebSocket connections.
    #[arg(long, default_value_t = 10_000)]
    pub clients: usize,
    /// Symbols (the first of the demo universe); every client subscribes to all of them.
    #[arg(long, default_value_t = 2)]
    pub symbols: usize,
    /// The measured window, e.g. `20s`.
    #[arg(long, default_value = "20s", value_parser = crate::tcp_bench::parse_duration)]
    pub duration: Duration,
    /// Between the last subscription and the window.
    #[arg(long, default_value = "3s", value_parser = crate::tcp_bench::parse_duration)]
    pub warmup: Duration,
    /// After the window, before the clients close (messages of the window still arriving).
    #[arg(long, default_value = "5s", value_parser = crate::tcp_bench::parse_duration)]
    pub drain: Duration,
    /// Simulated quotes per second over all symbols (the node's feed interval follows).
    #[arg(long, default_value_t = 2.0)]
    pub quote_rate: f64,
    /// Orders per second through the HTTP API during the node's phase.
    #[arg(long, default_value_t = 1.0)]
    pub order_rate: f64,
    /// Threads of the client fleet.
    #[arg(long, default_value_t = 1)]
    pub client_threads: usize,
    /// Threads of each server's runtime.
    #[arg(long, default_value_t = 2)]
    pub server_threads: usize,
    /// Handshakes in flight at once.
    #[arg(long, default_value_t = 128)]
    pub connect_concurrency: usize,
    /// The baseline's broadcast capacity; default: the node's per-connection queue bound.
    #[arg(long)]
    pub queue: Option<usize>,
    /// Space the baseline's messages evenly instead of in one burst per node feed step.
    #[arg(long)]
    pub baseline_spread: bool,
    /// Each baseline socket's read buffer (tungstenite's and axum's default is 128 KiB).
    #[arg(long, default_value_t = 4_096)]
    pub baseline_read_buffer_bytes: usize,
    /// The node's WebSocket path.
    #[arg(long, default_value = "/ws")]
    pub path: String,
    /// Independent runs (fresh servers each); the report gives each and the median.
    #[arg(long, default_value_t = 1)]
    pub runs: usize,
    /// Only the baseline (at `--quote-rate` and, for trades, `--order-rate`).
    #[arg(long)]
    pub baseline_only: bool,
    /// A small, quick run (CI): 50 clients, a 2 s window, one run.
    #[arg(long)]
    pub smoke: bool,
    /// Print the JSON summary as the last line.
    #[arg(long)]
    pub json: bool,
}

impl WsBenchArgs {
    fn validate(&mut self) -> anyhow::Result<()> {
        if self.smoke {
            self.clients = self.clients.min(50);
            self.duration = Duration::from_secs(2);
            self.warmup = Duration::from_millis(500);
            self.drain = Duration::from_millis(500);
            self.runs = 1;
        }
        if self.clients == 0 || self.clients > CLIENTS_MAX {
            bail!("--clients must be between 1 and {CLIENTS_MAX}");
        }
        if !(1..=12).contains(&self.symbols) {
            bail!("--symbols must be between 1 and 12 (the demo universe)");
        }
        if self.duration.is_zero() || self.duration + self.warmup + self.drain > DURATION_MAX {
            bail!("--duration must be positive and, with --warmup and --drain, at most 600 s");
        }
        if !(self.quote_rate > 0.0 && self.quote_rate <= RATE_MAX) {
            bail!("--quote-rate must be above 0 and at most {RATE_MAX}");
        }
        if !(self.order_rate >= 0.0 && self.order_rate <= RATE_MAX) {
            bail!("--order-rate must be between 0 and {RATE_MAX}");
        }
        if !(1..=16).contains(&self.client_threads) || !(1..=64).contains(&self.server_threads) {
            bail!("--client-threads must be 1-16 and --server-threads 1-64");
        }
        if self.connect_concurrency == 0 || self.connect_concurrency > 4_096 {
            bail!("--connect-concurrency must be between 1 and 4096");
        }
        if self.runs == 0 || self.runs > RUNS_MAX {
            bail!("--runs must be between 1 and {RUNS_MAX}");
        }
        if !(256..=1 << 20).contains(&self.baseline_read_buffer_bytes) {
            bail!("--baseline-read-buffer-bytes must be between 256 and 1048576");
        }
        if self.queue.is_some_and(|q| q == 0 || q > 1 << 20) {
            bail!("--queue must be between 1 and 1048576");
        }
        Ok(())
    }

    /// The node's feed interval for the asked quote rate (one quote per symbol per step).
    fn feed_interval_ms(&self) -> u64 {
        ((self.symbols as f64 * 1_000.0 / self.quote_rate).round() as u64).clamp(1, 60_000)
    }
}

/// Latency percentiles, microseconds.
#[derive(Clone, Debug, Serialize)]
pub struct Latency {
    pub samples: u64,
    pub p50_us: u64,
    pub p90_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub max_us: u64,
}

impl Latency {
    fn of(h: &Histogram<u64>) -> Latency {
        Latency {
            samples: h.len(),
            p50_us: h.value_at_quantile(0.50),
            p90_us: h.value_at_quantile(0.90),
            p99_us: h.value_at_quantile(0.99),
            p999_us: h.value_at_quantile(0.999),
            max_us: h.max(),
        }
    }
}

/// The server's resident memory over the phase.
#[derive(Clone, Debug, Serialize)]
pub struct RssSummary {
    pub samples: usize,
    pub first_mib: f64,
    pub window_mid_mib: f64,
    pub last_mib: f64,
    pub max_mib: f64,
    /// Largest value in the window's last half over its value at the window's midpoint - 1.
    pub last_half_growth: f64,
    pub flat: bool,
    /// One value a second, MiB.
    pub series_mib: Vec<f64>,
}

/// One server's numbers in one run.
#[derive(Clone, Debug, Serialize)]
pub struct SideReport {
    pub server: String,
    pub clients: usize,
    pub subscribed: usize,
    pub window_s: f64,
    pub latency: Latency,
    /// Data messages (quote, trade) each client received a second in the window, on average.
    pub quotes_per_client_s: f64,
    pub trades_per_client_s: f64,
    pub quote_bytes: f64,
    pub trade_bytes: f64,
    pub delivered_total: u64,
    pub delivered_in_window: u64,
    /// The most any connection received in the window.
    pub reference_in_window: u64,
    /// Shortfall of the connections that kept up against the reference.
    pub undelivered: u64,
    pub clients_short: usize,
    pub ended_early: BTreeMap<String, u64>,
    pub error_frames: u64,
    pub error_samples: Vec<String>,
    /// The server's own counters (the node's `kuku_ws_*` metrics; the baseline's counters).
    pub server_counters: BTreeMap<String, f64>,
    pub rss: Option<RssSummary>,
    pub orders: Option<OrderCounts>,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct OrderCounts {
    pub sent: u64,
    pub accepted: u64,
    pub failed: u64,
}

/// One run: the node and the baseline, and the floor's verdicts.
#[derive(Clone, Debug, Serialize)]
pub struct RunReport {
    pub node: Option<SideReport>,
    pub baseline: SideReport,
    pub p99_ratio: Option<f64>,
    pub floor: Option<Floor>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Floor {
    pub p99_within_2x: bool,
    pub nothing_undelivered: bool,
    pub rss_flat: bool,
}

impl Floor {
    fn passed(&self) -> bool {
        self.p99_within_2x && self.nothing_undelivered && self.rss_flat
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct WsBenchReport {
    pub date: String,
    pub cpu: String,
    pub clients: usize,
    pub symbols: Vec<String>,
    pub quote_rate: f64,
    pub order_rate: f64,
    pub feed_interval_ms: u64,
    pub duration_s: f64,
    pub client_threads: usize,
    pub server_threads: usize,
    pub nofile_limit: u64,
    pub runs: Vec<RunReport>,
    pub median_p99_ratio: Option<f64>,
    pub floor_passed: Option<bool>,
}

/// Runs the benchmark and prints its report; false when a run failed the floor, or, in a
/// smoke run, when no message arrived or a client did not subscribe.
pub fn run(mut args: WsBenchArgs, out: &mut dyn Write) -> anyhow::Result<bool> {
    args.validate()?;
    let nofile = raise_nofile_limit()?;
    // The bench holds one socket per client; each server as many, in its own process.
    let needed = args.clients as u64 + 256;
    writeln!(
        out,
        "open files: limit raised to {nofile} (the hard limit); {needed} needed per process{}",
        if nofile < needed {
            ": TOO LOW, connections will fail"
        } else {
            ""
        }
    )?;
    let (symbols, _) = node_server::universe(args.symbols)?;
    let mut runs = Vec::with_capacity(args.runs);
    for r in 0..args.runs {
        let report = one_run(&args, &symbols, out).with_context(|| format!("run {}", r + 1))?;
        runs.push(report);
    }
    let ratios: Vec<f64> = runs.iter().filter_map(|r| r.p99_ratio).collect();
    let median_p99_ratio = median(ratios);
    let floors: Vec<bool> = runs
        .iter()
        .filter_map(|r| r.floor.as_ref().map(Floor::passed))
        .collect();
    let floor_passed = (!floors.is_empty()).then(|| floors.iter().all(|p| *p));
    let report = WsBenchReport {
        date: utc_now(),
        cpu: cpu_model(),
        clients: args.clients,
        symbols,
        quote_rate: args.quote_rate,
        order_rate: args.order_rate,
        feed_interval_ms: args.feed_interval_ms(),
        duration_s: args.duration.as_secs_f64(),
        client_threads: args.client_threads,
        server_threads: args.server_threads,
        nofile_limit: nofile,
        runs,
        median_p99_ratio,
        floor_passed,
    };
    if let Some(ratio) = median_p99_ratio {
        let p99s = |f: fn(&RunReport) -> Option<u64>| {
            median(report.runs.iter().filter_map(f).map(|v| v as f64).collect())
        };
        writeln!(
            out,
            "median of {} run(s): node p99 {:.0} us, baseline p99 {:.0} us, ratio {ratio:.2}x; \
             floor {}",
            report.runs.len(),
            p99s(|r| r.node.as_ref().map(|n| n.latency.p99_us)).unwrap_or(0.0),
            p99s(|r| Some(r.baseline.latency.p99_us)).unwrap_or(0.0),
            match floor_passed {
                Some(true) => "PASS in every run",
                _ => "FAIL in at least one run",
            }
        )?;
    }
    if args.json {
        writeln!(out, "{}", serde_json::to_string(&report)?)?;
    }
    if args.smoke {
        let sides = report
            .runs
            .iter()
            .flat_map(|r| r.node.iter().chain(std::iter::once(&r.baseline)));
        for side in sides {
            if side.subscribed < side.clients || side.delivered_in_window == 0 {
                writeln!(
                    out,
                    "smoke: {} had {} of {} clients subscribed and {} messages in the window",
                    side.server, side.subscribed, side.clients, side.delivered_in_window
                )?;
                return Ok(false);
            }
        }
        return Ok(true);
    }
    Ok(floor_passed.unwrap_or(true))
}

/// At most `n` values of `series`, evenly spaced, the last one included.
fn downsample(series: &[f64], n: usize) -> Vec<f64> {
    if series.len() <= n || n < 2 {
        return series.to_vec();
    }
    let step = (series.len() - 1) as f64 / (n - 1) as f64;
    (0..n)
        .map(|i| series[((i as f64 * step).round() as usize).min(series.len() - 1)])
        .collect()
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    Some(v[v.len() / 2])
}

/// Raises RLIMIT_NOFILE to its hard limit; returns the new soft limit.
fn raise_nofile_limit() -> anyhow::Result<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit read and write the struct we own.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            bail!("getrlimit: {}", std::io::Error::last_os_error());
        }
        limit.rlim_cur = limit.rlim_max;
        if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
            bail!("setrlimit: {}", std::io::Error::last_os_error());
        }
    }
    Ok(limit.rlim_cur)
}

/// What the baseline sends: the node's rates and sizes as received, or the asked ones.
struct BaselinePlan {
    quote_rate: f64,
    trade_rate: f64,
    quote_bytes: usize,
    trade_bytes: usize,
    queue: usize,
}

fn one_run(
    args: &WsBenchArgs,
    symbols: &[String],
    out: &mut dyn Write,
) -> anyhow::Result<RunReport> {
    let mut plan = BaselinePlan {
        quote_rate: args.quote_rate,
        trade_rate: args.order_rate,
        quote_bytes: 200,
        trade_bytes: 150,
        queue: args.queue.unwrap_or(1_024),
    };
    let node = if args.baseline_only {
        None
    } else {
        let node = node_phase(args, symbols)?;
        print_side(out, &node)?;
        // Every client subscribed to every symbol: what one client received a second is the
        // rate over all symbols.
        plan.quote_rate = node.quotes_per_client_s;
        plan.trade_rate = node.trades_per_client_s;
        if node.quote_bytes > 0.0 {
            plan.quote_bytes = node.quote_bytes.round() as usize;
        }
        if node.trade_bytes > 0.0 {
            plan.trade_bytes = node.trade_bytes.round() as usize;
        }
        if let Some(q) = node
            .server_counters
            .get("queue_frames_max")
            .filter(|_| args.queue.is_none())
        {
            plan.queue = *q as usize;
        }
        Some(node)
    };
    let baseline = baseline_phase(args, symbols, &plan)?;
    print_side(out, &baseline)?;
    let (p99_ratio, floor) = match &node {
        Some(n) => {
            let ratio = n.latency.p99_us as f64 / baseline.latency.p99_us.max(1) as f64;
            let floor = Floor {
                p99_within_2x: ratio <= 2.0,
                nothing_undelivered: n.undelivered == 0,
                rss_flat: n.rss.as_ref().is_some_and(|r| r.flat),
            };
            writeln!(
                out,
                "  floor: p99 {ratio:.2}x the baseline (<= 2x) {}; undelivered to clients that \
                 kept up {} (0) {}; node RSS flat (< 5% in the window's last half) {}",
                verdict(floor.p99_within_2x),
                n.undelivered,
                verdict(floor.nothing_undelivered),
                verdict(floor.rss_flat),
            )?;
            (Some(ratio), Some(floor))
        }
        None => (None, None),
    };
    Ok(RunReport {
        node,
        baseline,
        p99_ratio,
        floor,
    })
}

fn verdict(ok: bool) -> &'static str {
    if ok { "PASS" } else { "FAIL" }
}

fn print_side(out: &mut dyn Write, s: &SideReport) -> anyhow::Result<()> {
    writeln!(
        out,
        "{}: {}/{} clients subscribed; per client {:.2} quotes/s ({:.0} B) + {:.2} trades/s \
         ({:.0} B); latency p50 {} us p90 {} us p99 {} us p99.9 {} us max {} us ({} samples)",
        s.server,
        s.subscribed,
        s.clients,
        s.quotes_per_client_s,
        s.quote_bytes,
        s.trades_per_client_s,
        s.trade_bytes,
        s.latency.p50_us,
        s.latency.p90_us,
        s.latency.p99_us,
        s.latency.p999_us,
        s.latency.max_us,
        s.latency.samples,
    )?;
    writeln!(
        out,
        "  delivered {} ({} in the {:.1} s window, at most {} to one client); undelivered to \
         clients that kept up {} ({} clients short); ended early {:?}; error frames {}",
        s.delivered_total,
        s.delivered_in_window,
        s.window_s,
        s.reference_in_window,
        s.undelivered,
        s.clients_short,
        s.ended_early,
        s.error_frames,
    )?;
    if !s.error_samples.is_empty() {
        writeln!(out, "  first error frames: {:?}", s.error_samples)?;
    }
    writeln!(out, "  server counters: {:?}", s.server_counters)?;
    if let Some(r) = &s.rss {
        writeln!(
            out,
            "  server RSS: {} samples, first {:.1} MiB, window midpoint {:.1} MiB, last {:.1} \
             MiB, max {:.1} MiB; last half {:+.1}% ({}); series {:?}",
            r.samples,
            r.first_mib,
            r.window_mid_mib,
            r.last_mib,
            r.max_mib,
            r.last_half_growth * 100.0,
            if r.flat { "flat" } else { "growing" },
            downsample(&r.series_mib, 30),
        )?;
    }
    if let Some(o) = &s.orders {
        writeln!(
            out,
            "  orders: {} sent, {} accepted, {} failed",
            o.sent, o.accepted, o.failed
        )?;
    }
    Ok(())
}

/// A child server process of the bench.
struct ChildServer {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: std::sync::mpsc::Receiver<String>,
    ready: Value,
}

impl ChildServer {
    /// Starts `kuku-bench <args>` and waits for its ready line.
    fn spawn(args: &[String]) -> anyhow::Result<ChildServer> {
        let exe = std::env::current_exe().context("the bench's own executable")?;
        let mut child = Command::new(exe)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("starting kuku-bench {}", args.join(" ")))?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().context("the child's stdout")?;
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        let mut server = ChildServer {
            child,
            stdin,
            lines,
            ready: Value::Null,
        };
        match server.next_json(CHILD_TIMEOUT) {
            Ok(ready) => {
                server.ready = ready;
                Ok(server)
            }
            Err(e) => {
                server.kill();
                Err(e.context(format!("kuku-bench {} did not start", args[0])))
            }
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The next JSON line the child prints.
    fn next_json(&self, timeout: Duration) -> anyhow::Result<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self
                .lines
                .recv_timeout(left)
                .map_err(|_| anyhow::anyhow!("no answer within {timeout:?}"))?;
            if let Ok(v) = serde_json::from_str::<Value>(&line) {
                return Ok(v);
            }
        }
    }

    /// Closes its stdin (its signal to stop) and returns its last JSON line.
    fn stop(mut self) -> anyhow::Result<Value> {
        drop(self.stdin.take());
        let last = self.next_json(CHILD_TIMEOUT);
        let deadline = Instant::now() + CHILD_TIMEOUT;
        while Instant::now() < deadline {
            if self.child.try_wait()?.is_some() {
                return last;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.kill();
        last.and_then(|_| bail!("the child server did not exit within {CHILD_TIMEOUT:?}"))
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ChildServer {
    fn drop(&mut self) {
        if self.stdin.is_some() {
            self.kill();
        }
    }
}

/// Samples a process's VmRSS once a second until stopped.
struct RssSampler {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<Vec<(u64, u64)>>,
}

impl RssSampler {
    fn start(pid: u32) -> RssSampler {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let mut samples = Vec::new();
            let path = format!("/proc/{pid}/status");
            while !flag.load(Ordering::Relaxed) {
                if let Some(kib) = std::fs::read_to_string(&path)
                    .ok()
                    .and_then(|s| vm_rss_kib(&s))
                {
                    samples.push((now_ns(), kib));
                }
                // Short sleeps so that stopping is prompt.
                for _ in 0..10 {
                    if flag.load(Ordering::Relaxed) {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
            samples
        });
        RssSampler { stop, thread }
    }

    fn stop(self, window: (u64, u64)) -> Option<RssSummary> {
        self.stop.store(true, Ordering::Relaxed);
        let samples = self.thread.join().ok()?;
        rss_summary(&samples, window)
    }
}

/// `VmRSS:   12345 kB` of /proc/PID/status, in KiB.
fn vm_rss_kib(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// The series' summary; flat when the last half of the window stays within 5% of its
/// midpoint's value.
fn rss_summary(samples: &[(u64, u64)], (start, end): (u64, u64)) -> Option<RssSummary> {
    let mib = |kib: u64| kib as f64 / 1024.0;
    let first = samples.first()?.1;
    let mid_t = start + (end - start) / 2;
    let in_window: Vec<&(u64, u64)> = samples
        .iter()
        .filter(|(t, _)| *t >= start && *t <= end)
        .collect();
    let mid = in_window
        .iter()
        .find(|(t, _)| *t >= mid_t)
        .map(|(_, k)| *k)?;
    let last_half_max = in_window
        .iter()
        .filter(|(t, _)| *t >= mid_t)
        .map(|(_, k)| *k)
        .max()?;
    let growth = last_half_max as f64 / mid.max(1) as f64 - 1.0;
    Some(RssSummary {
        samples: samples.len(),
        first_mib: mib(first),
        window_mid_mib: mib(mid),
        last_mib: mib(samples.last()?.1),
        max_mib: mib(samples.iter().map(|(_, k)| *k).max()?),
        last_half_growth: growth,
        flat: growth < FLAT_GROWTH_MAX,
        series_mib: samples
            .iter()
            .map(|(_, k)| (mib(*k) * 10.0).round() / 10.0)
            .collect(),
    })
}

/// The fleet against one server: connect, subscribe, warm up, the window, drain, close.
struct Measured {
    fleet: FleetResult,
    subscribed: usize,
    window: (u64, u64),
    /// The server's counters read just before the clients closed.
    counters_before_close: BTreeMap<String, f64>,
}

fn measure(
    args: &WsBenchArgs,
    symbols: &[String],
    addr: SocketAddr,
    path: &str,
    read_counters: &dyn Fn() -> BTreeMap<String, f64>,
) -> anyhow::Result<Measured> {
    let fleet = Fleet::start(FleetConfig {
        addr,
        path: path.to_owned(),
        clients: args.clients,
        threads: args.client_threads,
        symbols: symbols.to_vec(),
        connect_concurrency: args.connect_concurrency,
        connect_timeout: Duration::from_secs(30),
        read_buffer_bytes: 4_096,
    })?;
    let (subscribed, _) = fleet.wait_settled(SUBSCRIBE_TIMEOUT);
    let start = now_ns() + args.warmup.as_nanos() as u64;
    let end = start + args.duration.as_nanos() as u64;
    fleet.set_window(start, end);
    let until_end = Duration::from_nanos(end.saturating_sub(now_ns()));
    std::thread::sleep(until_end + args.drain);
    let counters_before_close = read_counters();
    let result = fleet.stop()?;
    Ok(Measured {
        fleet: result,
        subscribed,
        window: (start, end),
        counters_before_close,
    })
}

fn side_report(
    server: &str,
    args: &WsBenchArgs,
    m: Measured,
    server_counters: BTreeMap<String, f64>,
    rss: Option<RssSummary>,
    orders: Option<OrderCounts>,
) -> SideReport {
    let f = &m.fleet;
    let window_s = (m.window.1 - m.window.0) as f64 / 1e9;
    let reference = f.in_window.iter().copied().max().unwrap_or(0);
    let (mut undelivered, mut short) = (0, 0);
    for (count, ending) in f.in_window.iter().zip(&f.endings) {
        if ending.is_none() && *count < reference {
            undelivered += reference - count;
            short += 1;
        }
    }
    let per_client_s = |n: u64| n as f64 / m.subscribed.max(1) as f64 / window_s;
    let average = |bytes: u64, n: u64| if n == 0 { 0.0 } else { bytes as f64 / n as f64 };
    SideReport {
        server: server.to_owned(),
        clients: args.clients,
        subscribed: m.subscribed,
        window_s,
        latency: Latency::of(&f.histogram),
        quotes_per_client_s: per_client_s(f.counts.window_quotes),
        trades_per_client_s: per_client_s(f.counts.window_trades),
        quote_bytes: average(f.counts.quote_bytes, f.counts.quote_messages),
        trade_bytes: average(f.counts.trade_bytes, f.counts.trade_messages),
        delivered_total: f.counts.data_messages,
        delivered_in_window: f.in_window.iter().sum(),
        reference_in_window: reference,
        undelivered,
        clients_short: short,
        ended_early: f.endings_by_reason(),
        error_frames: f.counts.error_frames,
        error_samples: f.error_samples.clone(),
        server_counters,
        rss,
        orders,
    }
}

fn baseline_phase(
    args: &WsBenchArgs,
    symbols: &[String],
    plan: &BaselinePlan,
) -> anyhow::Result<SideReport> {
    let child = ChildServer::spawn(&[
        "ws-baseline-server".into(),
        format!("--symbols={}", symbols.join(",")),
        format!("--quote-rate={}", plan.quote_rate),
        format!("--trade-rate={}", plan.trade_rate),
        format!("--quote-bytes={}", plan.quote_bytes),
        format!("--trade-bytes={}", plan.trade_bytes),
        format!("--queue={}", plan.queue),
        format!("--threads={}", args.server_threads),
        format!("--read-buffer-bytes={}", args.baseline_read_buffer_bytes),
        format!(
            "--step-ms={}",
            if args.baseline_spread {
                0
            } else {
                args.feed_interval_ms()
            }
        ),
    ])?;
    let ws: SocketAddr = child.ready["ws"]
        .as_str()
        .and_then(|u| u.strip_prefix("ws://"))
        .and_then(|u| u.strip_suffix("/ws"))
        .context("the baseline's ready line")?
        .parse()?;
    let rss = RssSampler::start(child.pid());
    let measured = measure(args, symbols, ws, "/ws", &BTreeMap::new);
    let stats = child.stop();
    let measured = measured?;
    let rss = rss.stop(measured.window);
    let mut counters = BTreeMap::new();
    if let Ok(Value::Object(stats)) = stats {
        for (k, v) in stats {
            if let Some(v) = v.as_f64() {
                counters.insert(format!("baseline_{k}"), v);
            }
        }
    }
    counters.insert("baseline_queue".into(), plan.queue as f64);
    Ok(side_report("baseline", args, measured, counters, rss, None))
}

fn node_phase(args: &WsBenchArgs, symbols: &[String]) -> anyhow::Result<SideReport> {
    let child = ChildServer::spawn(&[
        "ws-node-server".into(),
        format!("--symbols={}", symbols.len()),
        format!("--feed-interval-ms={}", args.feed_interval_ms()),
        format!("--threads={}", args.server_threads),
        format!("--connections={}", args.clients),
    ])?;
    let queue_bound = child.ready["queue_frames_max"].as_f64();
    let field = |k: &str| -> anyhow::Result<String> {
        Ok(child.ready[k]
            .as_str()
            .with_context(|| format!("the node's ready line has no {k}"))?
            .to_owned())
    };
    let http: SocketAddr = field("http")?.parse()?;
    let metrics: SocketAddr = field("metrics")?.parse()?;
    let admin = format!("Bearer {}", field("admin_token")?);
    let rss = RssSampler::start(child.pid());
    let orders = Orders::start(http, admin, symbols.to_vec(), args.order_rate)?;
    let read_metrics = || scrape_ws_metrics(metrics).unwrap_or_default();
    let measured = measure(args, symbols, http, &args.path, &read_metrics);
    let orders = orders.stop();
    let stopped = child.stop();
    let measured = measured?;
    stopped.context("stopping the node")?;
    let rss = rss.stop(measured.window);
    let mut counters = measured.counters_before_close.clone();
    if let Some(q) = queue_bound {
        counters.insert("queue_frames_max".into(), q);
    }
    Ok(side_report(
        "node",
        args,
        measured,
        counters,
        rss,
        Some(orders?),
    ))
}

/// `kuku_ws_*` series of the node's `GET /metrics` (labels kept in the name).
fn scrape_ws_metrics(addr: SocketAddr) -> anyhow::Result<BTreeMap<String, f64>> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (status, body) = runtime.block_on(async {
        tokio::time::timeout(
            Duration::from_secs(5),
            crate::http_bench::call(addr, "GET", "/metrics", &[], None),
        )
        .await
    })??;
    anyhow::ensure!(status == 200, "GET /metrics answered {status}");
    Ok(parse_metrics(&String::from_utf8_lossy(&body), "kuku_ws_"))
}

/// The samples of Prometheus text whose name starts with `prefix`.
fn parse_metrics(text: &str, prefix: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| {
            let (name, value) = l.rsplit_once(' ')?;
            Some((name.to_owned(), value.parse().ok()?))
        })
        .collect()
}

/// The order sender of the node's phase: market IOC orders of 1 share through the HTTP API.
struct Orders {
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
    accepted: Arc<AtomicU64>,
    thread: std::thread::JoinHandle<anyhow::Result<()>>,
}

impl Orders {
    fn start(
        http: SocketAddr,
        admin: String,
        symbols: Vec<String>,
        rate: f64,
    ) -> anyhow::Result<Orders> {
        let stop = Arc::new(AtomicBool::new(false));
        let (sent, accepted) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let (flag, s, a) = (Arc::clone(&stop), Arc::clone(&sent), Arc::clone(&accepted));
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let thread = std::thread::Builder::new()
            .name("ws-orders".into())
            .spawn(move || runtime.block_on(send_orders(http, admin, symbols, rate, flag, s, a)))?;
        Ok(Orders {
            stop,
            sent,
            accepted,
            thread,
        })
    }

    fn stop(self) -> anyhow::Result<OrderCounts> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread
            .join()
            .map_err(|_| anyhow::anyhow!("the order sender panicked"))??;
        let sent = self.sent.load(Ordering::Relaxed);
        let accepted = self.accepted.load(Ordering::Relaxed);
        Ok(OrderCounts {
            sent,
            accepted,
            failed: sent - accepted,
        })
    }
}

/// Order `i`: symbol `(i / 2) % n`, a buy when `i` is even, else a sell of what it bought.
async fn send_orders(
    http: SocketAddr,
    admin: String,
    symbols: Vec<String>,
    rate: f64,
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
    accepted: Arc<AtomicU64>,
) -> anyhow::Result<()> {
    use crate::http_bench::{account, call};
    let set_up = async {
        crate::http_bench::wait_open(http, &admin).await?;
        account(http, &admin, &format!("ws-bench-{}", now_ns())).await
    };
    let bearer = tokio::time::timeout(ORDER_SET_UP_TIMEOUT, set_up)
        .await
        .map_err(|_| {
            anyhow::anyhow!("the order account was not set up within {ORDER_SET_UP_TIMEOUT:?}")
        })??;
    if rate <= 0.0 {
        return Ok(());
    }
    let period = Duration::from_secs_f64(1.0 / rate);
    let start = tokio::time::Instant::now();
    let mut i: u64 = 0;
    while !stop.load(Ordering::Relaxed) {
        tokio::time::sleep_until(start + period.mul_f64(i as f64)).await;
        let body = json!({
            "symbol": symbols[(i / 2) as usize % symbols.len()],
            "side": if i.is_multiple_of(2) { "buy" } else { "sell" },
            "type": "market",
            "tif": "ioc",
            "qty": 1,
        });
        let key = format!("ws-{i}");
        sent.fetch_add(1, Ordering::Relaxed);
        let answer = tokio::time::timeout(
            Duration::from_secs(5),
            call(
                http,
                "POST",
                "/api/v1/orders",
                &[("authorization", &bearer), ("idempotency-key", &key)],
                Some(serde_json::to_vec(&body)?.into()),
            ),
        )
        .await;
        if matches!(answer, Ok(Ok((201, _)))) {
            accepted.fetch_add(1, Ordering::Relaxed);
        }
        i += 1;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_series_are_shortened_for_the_text_report() {
        let series: Vec<f64> = (0..100).map(f64::from).collect();
        let short = downsample(&series, 5);
        assert_eq!(short, [0.0, 25.0, 50.0, 74.0, 99.0]);
        assert_eq!(downsample(&series[..3], 5).len(), 3);
    }

    #[test]
    fn rss_is_read_from_proc_status() {
        assert_eq!(vm_rss_kib("Name:\tx\nVmRSS:\t  12345 kB\n"), Some(12_345));
        assert_eq!(vm_rss_kib("Name:\tx\n"), None);
    }

    #[test]
    fn flat_means_under_five_percent_in_the_last_half() {
        let s = |v: &[u64]| -> Vec<(u64, u64)> {
            v.iter()
                .enumerate()
                .map(|(i, k)| (i as u64 * 10, *k))
                .collect()
        };
        let flat = rss_summary(&s(&[100, 200, 300, 300, 310, 300]), (10, 50)).expect("summary");
        assert!(flat.flat, "{flat:?}");
        let growing = rss_summary(&s(&[100, 200, 300, 300, 330, 300]), (10, 50)).expect("s");
        assert!(!growing.flat, "{growing:?}");
        assert!(rss_summary(&[], (0, 1)).is_none());
    }

    #[test]
    fn ws_metrics_are_picked_from_prometheus_text() {
        let text = "# HELP x\nkuku_ws_connections 10\nkuku_other 3\nkuku_ws_sent_total{channel=\"quote\"} 7\n";
        let m = parse_metrics(text, "kuku_ws_");
        assert_eq!(m.len(), 2);
        assert_eq!(m["kuku_ws_sent_total{channel=\"quote\"}"], 7.0);
    }

    #[test]
    fn smoke_and_bounds_are_checked() {
        let mut args = WsBenchArgs {
            clients: 10_000,
            symbols: 2,
            duration: Duration::from_secs(20),
            warmup: Duration::from_secs(3),
            drain: Duration::from_secs(5),
            quote_rate: 2.0,
            order_rate: 1.0,
            client_threads: 1,
            server_threads: 2,
            connect_concurrency: 128,
            queue: None,
            baseline_read_buffer_bytes: 4_096,
            baseline_spread: false,
            path: "/ws".into(),
            runs: 1,
            baseline_only: false,
            smoke: false,
            json: false,
        };
        args.validate().expect("defaults are valid");
        assert_eq!(args.feed_interval_ms(), 1_000);
        args.quote_rate = f64::NAN;
        assert!(args.validate().is_err());
        args.quote_rate = 15.0;
        args.clients = 0;
        assert!(args.validate().is_err());
        args.smoke = true;
        args.clients = 10_000;
        args.validate().expect("smoke is valid");
        assert_eq!(args.clients, 50);
    }
}
