//! `kuku-bench locks`: the lock-strategy experiment. Many concurrent clients place orders that
//! reserve cash or shares from one hot account (or from many accounts), implemented six ways:
//! naive read-modify-write (READ COMMITTED and REPEATABLE READ), pessimistic
//! `SELECT ... FOR UPDATE`, an optimistic version column, a Redis lock with a fencing token,
//! an atomic conditional `UPDATE` (all on MariaDB/InnoDB), and Kuku's single writer over TCP.
//!
//! **Method**
//! - One workload ([`workload`]): closed loop, one order outstanding per client, 1, 10, 100
//!   and 1,000 clients, scenarios `buy` and `sell` (one hot account) and `mix` (many
//!   accounts). Latency per order from the client's decision to its outcome (connection and
//!   lock waits, backoff and retries included), in an HdrHistogram.
//! - Equally durable: InnoDB syncs each commit (`innodb_flush_log_at_trx_commit = 1`,
//!   recorded from the server, never changed), Kuku runs `every-batch` (the journal is synced
//!   before an order is acknowledged). `kuku-none` (no sync) can be added, labelled.
//! - Each strategy has its own database (`kuku_locks_<strategy>`) or key prefix, reset before
//!   every run; each Kuku run gets a fresh node. Runs are interleaved: every round runs each
//!   strategy once per scenario and concurrency, so a noisy spell of the shared machine hits
//!   all of them; medians over rounds are reported.
//! - After every run the target's own state is checked ([`check`]): no lost update, never
//!   negative, no double spend, every acknowledged order recorded.
//! - [`innodb`] records the server's settings, the lock and fsync counters of each run, and
//!   probes InnoDB's gap locks and deadlocks between two transactions.
//! - `--lease-expiry` runs the Redis lock with a simulated pause longer than the lease in
//!   some orders, with and without the fencing token, and checks both.
//!
//! **Outputs** under `--out-dir`: `summary.json` (every run and the medians), `report.md`
//! (the tables), `locks.svg` (throughput and p99 against concurrency). `--plot-from` redraws
//! the plot from a saved summary.
//!
//! **Invariants**: every database and Redis key the bench creates is dropped at the end, also
//! after an error; server settings are read, never changed.
//!
//! **Performance**: a full run (9 strategies, 3 scenarios, 4 concurrencies, 3 rounds) takes
//! about 37 minutes on two cores; `--smoke` about 20 seconds.
//!
//! **Known limitations**: MariaDB, Redis, the Kuku node and the clients share the machine's
//! cores (two on the reference machine), so every strategy's numbers include the others'
//! CPU use in the same process or server; the pool is capped below the server's
//! `max_connections` (151) to leave room for other users of the server, so at 1,000 clients
//! most clients wait for a connection (inside their latency).

pub mod check;
pub mod innodb;
pub mod kuku_node;
pub mod plot;
pub mod redis_lock;
pub mod sql;
pub mod workload;

use crate::machine::{cpu_model, utc_now};
use crate::tcp_bench::parse_duration;
use anyhow::{Context, bail};
use serde::Serialize;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::future::Future;
use std::io::Write;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use workload::{Funding, RunSpec, RunStats, Scenario, Stop};

/// Where a strategy lets a test or an experiment step in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HookPoint {
    /// The Redis lock is held; no database work done yet.
    AfterLock,
    /// The balance was read; nothing written yet.
    AfterRead,
}

/// A hook: awaited at each [`HookPoint`] of each order.
pub type Hook = Arc<
    dyn Fn(HookPoint, workload::Order) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync,
>;

/// A number unique to this process and moment (database suffixes, Redis tokens).
pub fn unique_nonce() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = crate::machine::unix_now().as_nanos() as u64;
    ((std::process::id() as u64) << 40) ^ nanos ^ (COUNTER.fetch_add(1, Ordering::Relaxed) << 32)
}

/// The strategies.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Strategy {
    NaiveRc,
    NaiveRr,
    Pessimistic,
    Optimistic,
    RedisLock,
    RedisLockUnfenced,
    Atomic,
    Kuku,
    /// Kuku with one trading session per client on the hot account, as each database client
    /// has its own connection (every session of an account hears all its acknowledgements).
    KukuSessionPerClient,
    KukuNone,
}

impl Strategy {
    pub const ALL: [Strategy; 10] = [
        Strategy::NaiveRc,
        Strategy::NaiveRr,
        Strategy::Pessimistic,
        Strategy::Optimistic,
        Strategy::RedisLock,
        Strategy::RedisLockUnfenced,
        Strategy::Atomic,
        Strategy::Kuku,
        Strategy::KukuSessionPerClient,
        Strategy::KukuNone,
    ];
    /// What `kuku-bench locks` runs unless told otherwise.
    pub const DEFAULT: [Strategy; 9] = [
        Strategy::NaiveRc,
        Strategy::NaiveRr,
        Strategy::Pessimistic,
        Strategy::Optimistic,
        Strategy::RedisLock,
        Strategy::Atomic,
        Strategy::Kuku,
        Strategy::KukuSessionPerClient,
        Strategy::KukuNone,
    ];
    /// The six strategies (both naive variants), once each: the smoke run.
    pub const SMOKE: [Strategy; 7] = [
        Strategy::NaiveRc,
        Strategy::NaiveRr,
        Strategy::Pessimistic,
        Strategy::Optimistic,
        Strategy::RedisLock,
        Strategy::Atomic,
        Strategy::Kuku,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Strategy::NaiveRc => "naive-rc",
            Strategy::NaiveRr => "naive-rr",
            Strategy::Pessimistic => "pessimistic",
            Strategy::Optimistic => "optimistic",
            Strategy::RedisLock => "redis-lock",
            Strategy::RedisLockUnfenced => "redis-lock-unfenced",
            Strategy::Atomic => "atomic",
            Strategy::Kuku => "kuku",
            Strategy::KukuSessionPerClient => "kuku-session-per-client",
            Strategy::KukuNone => "kuku-none",
        }
    }

    pub fn parse(s: &str) -> Result<Strategy, String> {
        Strategy::ALL
            .into_iter()
            .find(|x| x.name() == s)
            .ok_or_else(|| {
                let names: Vec<_> = Strategy::ALL.iter().map(|s| s.name()).collect();
                format!("unknown strategy {s:?} ({})", names.join(", "))
            })
    }

    /// The database strategy, if this is one.
    pub fn sql_kind(self) -> Option<sql::SqlKind> {
        use sql::SqlKind::*;
        Some(match self {
            Strategy::NaiveRc => NaiveReadCommitted,
            Strategy::NaiveRr => NaiveRepeatableRead,
            Strategy::Pessimistic => Pessimistic,
            Strategy::Optimistic => Optimistic,
            Strategy::RedisLock => RedisLock { fenced: true },
            Strategy::RedisLockUnfenced => RedisLock { fenced: false },
            Strategy::Atomic => Atomic,
            Strategy::Kuku | Strategy::KukuSessionPerClient | Strategy::KukuNone => return None,
        })
    }

    /// Whether the strategy is meant to be correct (the naive ones and the unfenced lock are
    /// in the experiment to show how they fail).
    pub fn is_correct_by_design(self) -> bool {
        !matches!(
            self,
            Strategy::NaiveRc | Strategy::NaiveRr | Strategy::RedisLockUnfenced
        )
    }
}

fn parse_strategy(s: &str) -> Result<Strategy, String> {
    Strategy::parse(s)
}

fn parse_scenario(s: &str) -> Result<Scenario, String> {
    Scenario::parse(s)
}

/// `kuku-bench locks` flags.
#[derive(Debug, Clone, clap::Args)]
pub struct LocksBenchArgs {
    /// Strategies to run [default: naive-rc,naive-rr,pessimistic,optimistic,redis-lock,atomic,
    /// kuku,kuku-session-per-client,kuku-none; the first seven with --smoke]; also
    /// redis-lock-unfenced.
    #[arg(long, value_delimiter = ',', value_parser = parse_strategy)]
    pub strategies: Option<Vec<Strategy>>,
    /// Scenarios: buy and sell (one hot account), mix (many accounts) [default: all].
    #[arg(long, value_delimiter = ',', value_parser = parse_scenario)]
    pub scenarios: Option<Vec<Scenario>>,
    /// Concurrent clients [default: 1,10,100,1000; 1,4 with --smoke].
    #[arg(long, value_delimiter = ',')]
    pub clients: Option<Vec<u32>>,
    /// Interleaved rounds (medians over them) [default: 3; 1 with --smoke].
    #[arg(long)]
    pub runs: Option<usize>,
    /// Unmeasured start of each run [default: 1s; 100ms with --smoke].
    #[arg(long, value_parser = parse_duration)]
    pub warmup: Option<Duration>,
    /// Measured window of each run [default: 4s; 300ms with --smoke].
    #[arg(long, value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// Accounts of the mix [default: 1000; 20 with --smoke].
    #[arg(long)]
    pub accounts: Option<u32>,
    /// Database connections per pool at most (the server allows max_connections in all).
    #[arg(long, default_value_t = 100)]
    pub pool_max: u32,
    /// Retries of one order after a version conflict or a deadlock.
    #[arg(long, default_value_t = 10)]
    pub retries_max: u32,
    /// Optimistic backoff: first ceiling and cap of the random wait.
    #[arg(long, default_value = "500us", value_parser = parse_duration)]
    pub backoff_base: Duration,
    #[arg(long, default_value = "20ms", value_parser = parse_duration)]
    pub backoff_cap: Duration,
    /// `SET SESSION innodb_lock_wait_timeout` in seconds (default: the server's).
    #[arg(long)]
    pub lock_wait_timeout_s: Option<u32>,
    /// The Redis lock's lease.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub lock_ttl: Duration,
    /// Longest wait for the Redis lock (then a lock timeout) [default: the server's InnoDB
    /// lock wait timeout].
    #[arg(long, value_parser = parse_duration)]
    pub lock_wait_max: Option<Duration>,
    /// Kuku: trading sessions per account (every session of an account hears all of its
    /// acknowledgements).
    #[arg(long, default_value_t = 1)]
    pub kuku_sessions_per_account: u32,
    /// Kuku's query store: `sqlite` (the node's default, a file in its data directory) or `none`.
    #[arg(long, default_value = "sqlite")]
    pub kuku_query_store: String,
    /// Where Kuku's temporary data directories go (put it on the disk MariaDB uses).
    #[arg(long)]
    pub kuku_data_dir: Option<PathBuf>,
    /// Also run the lease-expiry experiment (Redis lock with and without fencing).
    #[arg(long)]
    pub lease_expiry: bool,
    /// Lease-expiry experiment: every Nth order of each client pauses after its read for
    /// twice the lease (the lease there is 100 ms).
    #[arg(long, default_value_t = 20)]
    pub lease_pause_every: u32,
    /// Skip the InnoDB gap-lock and deadlock probes.
    #[arg(long)]
    pub no_probes: bool,
    /// Suffix for database names and Redis prefixes (default: none; tests use a unique one).
    #[arg(long, default_value = "")]
    pub name_suffix: String,
    #[arg(
        long,
        env = "KUKU_MYSQL_URL",
        default_value = "mysql://root@127.0.0.1:3306/test"
    )]
    pub mysql_url: String,
    #[arg(long, env = "KUKU_REDIS_URL", default_value = "redis://127.0.0.1:6379")]
    pub redis_url: String,
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Client runtime worker threads.
    #[arg(long, default_value_t = 2)]
    pub client_threads: usize,
    /// Where summary.json, report.md and locks.svg go [default: target/kuku-bench/locks-<unix time>].
    #[arg(long)]
    pub out_dir: Option<PathBuf>,
    /// Only redraw the plot and the tables from this summary.json (into --out-dir or next to
    /// it).
    #[arg(long)]
    pub plot_from: Option<PathBuf>,
    /// Tiny sizes: every strategy once, for CI.
    #[arg(long)]
    pub smoke: bool,
    /// Print the JSON summary as the last line.
    #[arg(long)]
    pub json: bool,
}

impl LocksBenchArgs {
    /// Smoke-size arguments with a unique name suffix (CI).
    pub fn smoke() -> LocksBenchArgs {
        LocksBenchArgs {
            strategies: None,
            scenarios: None,
            clients: None,
            runs: None,
            warmup: None,
            duration: None,
            accounts: None,
            pool_max: 100,
            retries_max: 10,
            backoff_base: Duration::from_micros(500),
            backoff_cap: Duration::from_millis(20),
            lock_wait_timeout_s: None,
            lock_ttl: Duration::from_secs(2),
            lock_wait_max: None,
            kuku_sessions_per_account: 1,
            kuku_query_store: "sqlite".into(),
            kuku_data_dir: None,
            lease_expiry: true,
            lease_pause_every: 5,
            no_probes: false,
            name_suffix: format!("_{:x}", unique_nonce()),
            mysql_url: std::env::var("KUKU_MYSQL_URL")
                .unwrap_or_else(|_| "mysql://root@127.0.0.1:3306/test".into()),
            redis_url: std::env::var("KUKU_REDIS_URL")
                .unwrap_or_else(|_| "redis://127.0.0.1:6379".into()),
            seed: 42,
            client_threads: 2,
            out_dir: None,
            plot_from: None,
            smoke: true,
            json: false,
        }
    }
}

/// The funding of every account in the benchmark: far more than any run reserves, so the
/// numbers measure contention, not rejects (the tests run accounts dry on purpose).
pub const BENCH_FUNDING: Funding = Funding {
    cash_krw: 100_000_000_000_000,
    shares: 1_000_000_000,
};

/// One run's record.
#[derive(Clone, Debug, Serialize)]
pub struct RunRecord {
    pub strategy: &'static str,
    pub scenario: &'static str,
    pub clients: u32,
    pub round: usize,
    /// Database connections in the pool, or Kuku sessions.
    pub connections: u32,
    pub window_s: f64,
    pub accepted_per_s: f64,
    pub orders_per_s: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub max_us: f64,
    pub mean_us: f64,
    pub counters: workload::Counters,
    pub check: check::Check,
    /// Server counter differences (database strategies).
    pub innodb: BTreeMap<String, i64>,
}

fn us(ns: u64) -> f64 {
    (ns as f64 / 100.0).round() / 10.0
}

fn record(
    strategy: Strategy,
    spec: &RunSpec,
    round: usize,
    connections: u32,
    stats: &RunStats,
    check: check::Check,
    innodb: BTreeMap<String, i64>,
) -> RunRecord {
    let h = &stats.histogram;
    RunRecord {
        strategy: strategy.name(),
        scenario: spec.scenario.name(),
        clients: spec.clients,
        round,
        connections,
        window_s: stats.window.as_secs_f64(),
        accepted_per_s: (stats.accepted_per_s() * 10.0).round() / 10.0,
        orders_per_s: (stats.orders_per_s() * 10.0).round() / 10.0,
        p50_us: us(h.value_at_quantile(0.50)),
        p99_us: us(h.value_at_quantile(0.99)),
        max_us: us(h.max()),
        mean_us: us(h.mean() as u64),
        counters: stats.counters.clone(),
        check,
        innodb,
    }
}

/// The targets of one bench invocation.
struct Targets {
    sql: BTreeMap<Strategy, sql::SqlTarget>,
    status: Option<sqlx::MySqlConnection>,
}

/// Runs the experiment; writes the outputs; returns the summary.
pub fn run(args: &LocksBenchArgs, out: &mut impl Write) -> anyhow::Result<Value> {
    if let Some(from) = &args.plot_from {
        let summary: Value = serde_json::from_str(
            &std::fs::read_to_string(from).with_context(|| format!("{}", from.display()))?,
        )?;
        let dir = args
            .out_dir
            .clone()
            .or_else(|| from.parent().map(|p| p.to_owned()))
            .unwrap_or_default();
        std::fs::write(dir.join("locks.svg"), plot::svg(&summary))?;
        std::fs::write(dir.join("report.md"), report_markdown(&summary))?;
        writeln!(
            out,
            "plot and tables: {} {}",
            dir.join("locks.svg").display(),
            dir.join("report.md").display()
        )?;
        return Ok(summary);
    }
    let smoke = args.smoke;
    let strategies = args.strategies.clone().unwrap_or_else(|| {
        if smoke {
            Strategy::SMOKE.to_vec()
        } else {
            Strategy::DEFAULT.to_vec()
        }
    });
    let scenarios = args
        .scenarios
        .clone()
        .unwrap_or_else(|| Scenario::ALL.to_vec());
    let clients_list = args.clients.clone().unwrap_or_else(|| {
        if smoke {
            vec![1, 4]
        } else {
            vec![1, 10, 100, 1_000]
        }
    });
    anyhow::ensure!(
        clients_list.iter().all(|&c| (1..=10_000).contains(&c)),
        "--clients must be between 1 and 10,000"
    );
    let runs = args.runs.unwrap_or(if smoke { 1 } else { 3 }).max(1);
    let warmup = args
        .warmup
        .unwrap_or(Duration::from_millis(if smoke { 100 } else { 1_000 }));
    let measure = args
        .duration
        .unwrap_or(Duration::from_millis(if smoke { 300 } else { 4_000 }));
    anyhow::ensure!(
        measure > Duration::ZERO && measure + warmup <= Duration::from_secs(600),
        "--duration must be positive and, with --warmup, at most 10 minutes"
    );
    let accounts_mix = args.accounts.unwrap_or(if smoke { 20 } else { 1_000 });
    let out_dir = args.out_dir.clone().unwrap_or_else(|| {
        PathBuf::from(format!(
            "target/kuku-bench/locks-{}",
            crate::machine::unix_now().as_secs()
        ))
    });
    std::fs::create_dir_all(&out_dir)
        .with_context(|| format!("cannot create {}", out_dir.display()))?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.client_threads.clamp(1, 64))
        .enable_all()
        .build()?;
    let date = utc_now();
    let server_url = sql::server_of(&args.mysql_url).to_owned();

    // The server's settings, recorded once; the Redis lock waits as long as InnoDB would.
    let (settings, status) = rt.block_on(async {
        let mut c = <sqlx::MySqlConnection as sqlx::Connection>::connect(&format!("{server_url}/"))
            .await
            .with_context(|| format!("cannot connect to MariaDB at {server_url}"))?;
        let s = innodb::settings(&mut c).await?;
        anyhow::Ok((s, c))
    })?;
    let innodb_wait_s: u64 = settings
        .get("innodb_lock_wait_timeout")
        .and_then(|v| v.parse().ok())
        .unwrap_or(50);
    let lock_wait_max = args.lock_wait_max.unwrap_or(Duration::from_secs(
        args.lock_wait_timeout_s.map_or(innodb_wait_s, u64::from),
    ));
    let sql_settings = sql::SqlSettings {
        pool_max: args.pool_max.max(1),
        retries_max: args.retries_max,
        backoff_base: args.backoff_base,
        backoff_cap: args.backoff_cap,
        lock_wait_timeout_s: args.lock_wait_timeout_s,
        lock: redis_lock::LockSettings {
            ttl: args.lock_ttl,
            wait_max: lock_wait_max,
            ..redis_lock::LockSettings::default()
        },
    };
    let needs_redis = strategies
        .iter()
        .any(|s| matches!(s, Strategy::RedisLock | Strategy::RedisLockUnfenced))
        || args.lease_expiry;
    writeln!(
        out,
        "kuku-bench locks: {} on {}; MariaDB {} (flush_log_at_trx_commit={}, {}, lock wait {} s, max_connections {}); pool <= {}",
        date,
        cpu_model(),
        settings.get("version").map_or("?", |s| s.as_str()),
        settings
            .get("innodb_flush_log_at_trx_commit")
            .map_or("?", |s| s.as_str()),
        settings.get("tx_isolation").map_or("?", |s| s.as_str()),
        innodb_wait_s,
        settings.get("max_connections").map_or("?", |s| s.as_str()),
        sql_settings.pool_max
    )?;

    let mut targets = Targets {
        sql: BTreeMap::new(),
        status: Some(status),
    };
    let result = (|| -> anyhow::Result<Value> {
        let mut redis_version = None;
        for &strategy in &strategies {
            let Some(kind) = strategy.sql_kind() else {
                continue;
            };
            let target = rt.block_on(async {
                let redis = if matches!(kind, sql::SqlKind::RedisLock { .. }) {
                    let lock = redis_lock::RedisLock::connect(
                        &args.redis_url,
                        &format!("kuku_locks{}:{}", args.name_suffix, strategy.name()),
                        4,
                        sql_settings.lock,
                    )
                    .await?;
                    redis_version = Some(lock.server_version().await?);
                    Some(Arc::new(lock))
                } else {
                    None
                };
                sql::SqlTarget::create(
                    &args.mysql_url,
                    &format!(
                        "kuku_locks_{}{}",
                        strategy.name().replace('-', "_"),
                        args.name_suffix
                    ),
                    kind,
                    sql_settings,
                    redis,
                )
                .await
            })?;
            targets.sql.insert(strategy, target);
        }
        if needs_redis && redis_version.is_none() {
            redis_version = Some(rt.block_on(async {
                redis_lock::RedisLock::connect(
                    &args.redis_url,
                    "kuku_locks_probe",
                    1,
                    sql_settings.lock,
                )
                .await?
                .server_version()
                .await
            })?);
        }
        let kuku_settings = |durability: &str| kuku_node::KukuSettings {
            durability: durability.into(),
            database_url: (args.kuku_query_store == "none").then(|| "none".to_owned()),
            sessions_per_account: args.kuku_sessions_per_account.max(1),
            data_parent: args.kuku_data_dir.clone(),
        };
        let mut records = Vec::new();
        for round in 0..runs {
            for &scenario in &scenarios {
                for &clients in &clients_list {
                    let spec = RunSpec {
                        scenario,
                        clients,
                        accounts_mix,
                        stop: Stop::Time { warmup, measure },
                        seed: args.seed ^ round as u64,
                    };
                    for &strategy in &strategies {
                        let r = match strategy {
                            Strategy::Kuku => run_kuku(
                                &rt,
                                &kuku_settings("every-batch"),
                                strategy,
                                &spec,
                                round,
                            )?,
                            Strategy::KukuSessionPerClient => {
                                let settings = kuku_node::KukuSettings {
                                    // The mix's clients spread over every account already.
                                    sessions_per_account: match scenario {
                                        Scenario::Mix => 1,
                                        Scenario::Buy | Scenario::Sell => clients,
                                    },
                                    ..kuku_settings("every-batch")
                                };
                                run_kuku(&rt, &settings, strategy, &spec, round)?
                            }
                            Strategy::KukuNone => {
                                run_kuku(&rt, &kuku_settings("none"), strategy, &spec, round)?
                            }
                            _ => {
                                let target = targets
                                    .sql
                                    .get(&strategy)
                                    .context("a database for every database strategy")?;
                                let status =
                                    targets.status.as_mut().context("the status connection")?;
                                rt.block_on(run_sql(target, status, strategy, &spec, round))?
                            }
                        };
                        writeln!(
                            out,
                            "round {} {:>5} {:>4} clients {:<20} {:>10.1} accepted/s  p50 {:>9.1} us  p99 {:>10.1} us  max {:>10.1} us  retries {:>7} conflicts {:>6} deadlocks {:>4} lock timeouts {:>4}  check: {}",
                            round + 1,
                            r.scenario,
                            r.clients,
                            r.strategy,
                            r.accepted_per_s,
                            r.p50_us,
                            r.p99_us,
                            r.max_us,
                            r.counters.retries,
                            r.counters.conflicts,
                            r.counters.deadlocks,
                            r.counters.lock_timeouts,
                            r.check.describe()
                        )?;
                        out.flush()?;
                        records.push(r);
                    }
                }
            }
        }
        let lease = if args.lease_expiry {
            writeln!(
                out,
                "lease expiry: the Redis lock with a pause longer than the lease"
            )?;
            let status = targets.status.as_mut().context("the status connection")?;
            let v = rt.block_on(lease_expiry(args, status, &sql_settings, smoke))?;
            for r in &v {
                writeln!(
                    out,
                    "  {:<20} accepted {:>6}  fenced {:>4}  leases lost {:>4}  check: {}",
                    r.strategy,
                    r.counters.accepted,
                    r.counters.fenced,
                    r.counters.leases_lost,
                    r.check.describe()
                )?;
            }
            v
        } else {
            Vec::new()
        };
        let probes = if args.no_probes {
            Vec::new()
        } else {
            let v = rt.block_on(innodb::probes(
                &server_url,
                &format!("kuku_locks_probes{}", args.name_suffix),
            ))?;
            for p in &v {
                writeln!(
                    out,
                    "probe ({}) {}: first {}, second {}, deadlocks {}, locks {:?}",
                    p.isolation, p.probe, p.first, p.second, p.deadlocks, p.locks
                )?;
            }
            v
        };
        let mut summary = summarize(&records, runs);
        summary["bench"] = json!("locks");
        summary["date"] = json!(date);
        summary["cpu"] = json!(cpu_model());
        summary["cores"] = json!(std::thread::available_parallelism().map_or(0, |n| n.get()));
        summary["runs"] = json!(runs);
        summary["warmup_s"] = json!(warmup.as_secs_f64());
        summary["duration_s"] = json!(measure.as_secs_f64());
        summary["accounts_mix"] = json!(accounts_mix);
        summary["pool_max"] = json!(sql_settings.pool_max);
        summary["retries_max"] = json!(sql_settings.retries_max);
        summary["lock_ttl_ms"] = json!(args.lock_ttl.as_millis() as u64);
        summary["lock_wait_max_s"] = json!(lock_wait_max.as_secs_f64());
        summary["kuku_sessions_per_account"] = json!(args.kuku_sessions_per_account);
        summary["kuku_query_store"] = json!(args.kuku_query_store);
        summary["mariadb"] = json!(settings);
        summary["redis_version"] = json!(redis_version);
        summary["lease_expiry"] = serde_json::to_value(&lease)?;
        summary["probes"] = serde_json::to_value(&probes)?;
        summary["runs_detail"] = serde_json::to_value(&records)?;
        Ok(summary)
    })();
    // Drop the databases and Redis keys whatever happened.
    rt.block_on(async {
        for target in targets.sql.values() {
            let _ = target.drop_database().await;
            if let Some(r) = &target.redis {
                let _ = r.clear().await;
            }
        }
    });
    let summary = result?;
    std::fs::write(
        out_dir.join("summary.json"),
        serde_json::to_string_pretty(&summary)?,
    )?;
    std::fs::write(out_dir.join("report.md"), report_markdown(&summary))?;
    std::fs::write(out_dir.join("locks.svg"), plot::svg(&summary))?;
    out.write_all(report_markdown(&summary).as_bytes())?;
    writeln!(out, "outputs: {}", out_dir.display())?;
    if args.json {
        writeln!(out, "{summary}")?;
    }
    Ok(summary)
}

async fn run_sql(
    target: &sql::SqlTarget,
    status: &mut sqlx::MySqlConnection,
    strategy: Strategy,
    spec: &RunSpec,
    round: usize,
) -> anyhow::Result<RunRecord> {
    target.reset(spec.accounts(), BENCH_FUNDING).await?;
    let placer = Arc::new(sql::SqlPlacer::new(target, spec.clients).await?);
    let connections = placer.pool.size();
    let before = innodb::counters(status).await?;
    let stats = workload::drive(Arc::clone(&placer), *spec).await;
    let after = innodb::counters(status).await?;
    placer.close().await;
    let stats = stats?;
    let rows = target.ledger().await?;
    let check = check::check(&rows, &stats.view);
    Ok(record(
        strategy,
        spec,
        round,
        connections,
        &stats,
        check,
        innodb::delta(&before, &after),
    ))
}

fn run_kuku(
    rt: &tokio::runtime::Runtime,
    settings: &kuku_node::KukuSettings,
    strategy: Strategy,
    spec: &RunSpec,
    round: usize,
) -> anyhow::Result<RunRecord> {
    let target = kuku_node::KukuTarget::start(settings, spec.accounts(), BENCH_FUNDING)?;
    let stats = rt.block_on(async {
        let placer = Arc::new(target.client().await?);
        workload::drive(placer, *spec).await
    })?;
    let rows = target.ledger()?;
    target.stop();
    let check = check::check(&rows, &stats.view);
    let sessions = spec.accounts() * settings.sessions_per_account.max(1);
    Ok(record(
        strategy,
        spec,
        round,
        sessions,
        &stats,
        check,
        BTreeMap::new(),
    ))
}

/// The Redis lock with a 100 ms lease; every `lease_pause_every`-th order of each client
/// pauses 200 ms after reading the balance (a stop-the-world pause, a slow network): its
/// lease expires, another client takes the lock, and the paused one then writes. Fenced, the
/// database refuses the stale write; unfenced, it overwrites the other's reservation.
async fn lease_expiry(
    args: &LocksBenchArgs,
    status: &mut sqlx::MySqlConnection,
    base: &sql::SqlSettings,
    smoke: bool,
) -> anyhow::Result<Vec<RunRecord>> {
    let ttl = Duration::from_millis(100);
    let pause = ttl * 2;
    let every = args.lease_pause_every.max(1);
    let settings = sql::SqlSettings {
        lock: redis_lock::LockSettings {
            ttl,
            wait_max: Duration::from_secs(30),
            ..base.lock
        },
        ..*base
    };
    let mut out = Vec::new();
    for strategy in [Strategy::RedisLock, Strategy::RedisLockUnfenced] {
        let Some(kind) = strategy.sql_kind() else {
            continue;
        };
        let suffix = format!("{}_{:x}", args.name_suffix, unique_nonce() & 0xffff);
        let redis = Arc::new(
            redis_lock::RedisLock::connect(
                &args.redis_url,
                &format!("kuku_locks_lease{suffix}:{}", strategy.name()),
                2,
                settings.lock,
            )
            .await?,
        );
        let mut target = sql::SqlTarget::create(
            &args.mysql_url,
            &format!(
                "kuku_locks_lease_{}{suffix}",
                strategy.name().replace('-', "_")
            ),
            kind,
            settings,
            Some(Arc::clone(&redis)),
        )
        .await?;
        target.hook = Some(Arc::new(move |point, order| {
            if point == HookPoint::AfterRead && order.seq % every == 0 {
                Box::pin(tokio::time::sleep(pause))
            } else {
                Box::pin(std::future::ready(()))
            }
        }));
        let spec = RunSpec {
            scenario: Scenario::Buy,
            clients: if smoke { 4 } else { 10 },
            accounts_mix: 1,
            stop: Stop::Time {
                warmup: Duration::ZERO,
                measure: if smoke {
                    Duration::from_millis(600)
                } else {
                    Duration::from_secs(5)
                },
            },
            seed: args.seed,
        };
        let r = run_sql(&target, status, strategy, &spec, 0).await;
        let _ = target.drop_database().await;
        let _ = redis.clear().await;
        out.push(r?);
    }
    Ok(out)
}

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Medians per (strategy, scenario, clients) and the hypothesis at 100 clients.
pub fn summarize(records: &[RunRecord], runs: usize) -> Value {
    let mut groups: BTreeMap<(&str, &str, u32), Vec<&RunRecord>> = BTreeMap::new();
    let mut order: Vec<(&str, &str, u32)> = Vec::new();
    for r in records {
        let k = (r.scenario, r.strategy, r.clients);
        if !groups.contains_key(&k) {
            order.push(k);
        }
        groups.entry(k).or_default().push(r);
    }
    order.sort_by_key(|k| (Scenario::parse(k.0).ok(), Strategy::parse(k.1).ok(), k.2));
    let mut medians = Vec::new();
    for k in &order {
        let g = &groups[k];
        let mut total = workload::Counters::default();
        for r in g {
            total.add(&r.counters);
        }
        let checks_ok = g.iter().filter(|r| r.check.ok).count();
        let lost_update_runs = g.iter().filter(|r| r.check.lost_update_rows > 0).count();
        let fsyncs: i64 = g
            .iter()
            .map(|r| r.innodb.get("Innodb_data_fsyncs").copied().unwrap_or(0))
            .sum();
        let lock_waits: i64 = g
            .iter()
            .map(|r| r.innodb.get("Innodb_row_lock_waits").copied().unwrap_or(0))
            .sum();
        let server_deadlocks: i64 = g
            .iter()
            .map(|r| r.innodb.get("Innodb_deadlocks").copied().unwrap_or(0))
            .sum();
        medians.push(json!({
            "scenario": k.0,
            "strategy": k.1,
            "clients": k.2,
            "runs": g.len(),
            "connections": g[0].connections,
            "accepted_per_s": median(g.iter().map(|r| r.accepted_per_s).collect()),
            "accepted_per_s_min": g.iter().map(|r| r.accepted_per_s).fold(f64::MAX, f64::min),
            "accepted_per_s_max": g.iter().map(|r| r.accepted_per_s).fold(0.0, f64::max),
            "p50_us": median(g.iter().map(|r| r.p50_us).collect()),
            "p99_us": median(g.iter().map(|r| r.p99_us).collect()),
            "max_us": median(g.iter().map(|r| r.max_us).collect()),
            "counters_total": total,
            "checks_ok": checks_ok,
            "lost_update_runs": lost_update_runs,
            "innodb_row_lock_waits_total": lock_waits,
            "innodb_deadlocks_total": server_deadlocks,
            "innodb_fsyncs_per_accepted": if total.accepted > 0 && fsyncs > 0 {
                json!(((fsyncs as f64 / total.accepted as f64) * 1000.0).round() / 1000.0)
            } else {
                Value::Null
            },
        }));
    }
    json!({
        "medians": medians,
        "hypothesis": hypothesis(&medians, runs),
    })
}

/// At 100 clients on one hot account (buy): Kuku against the best correct database strategy.
fn hypothesis(medians: &[Value], _runs: usize) -> Value {
    let at = |strategy: &str| {
        medians
            .iter()
            .find(|m| m["scenario"] == "buy" && m["clients"] == 100 && m["strategy"] == strategy)
    };
    let kuku = at("kuku");
    let best_db = ["pessimistic", "optimistic", "redis-lock", "atomic"]
        .iter()
        .filter_map(|s| at(s))
        .max_by(|a, b| {
            a["accepted_per_s"]
                .as_f64()
                .unwrap_or(0.0)
                .total_cmp(&b["accepted_per_s"].as_f64().unwrap_or(0.0))
        });
    match (kuku, best_db) {
        (Some(k), Some(b)) => {
            let kr = k["accepted_per_s"].as_f64().unwrap_or(0.0);
            let br = b["accepted_per_s"].as_f64().unwrap_or(0.0);
            let ratio = if br > 0.0 { kr / br } else { 0.0 };
            let per_client = at("kuku-session-per-client").map(|p| {
                let pr = p["accepted_per_s"].as_f64().unwrap_or(0.0);
                json!({
                    "accepted_per_s": pr,
                    "ratio": if br > 0.0 { (pr / br * 100.0).round() / 100.0 } else { 0.0 },
                    "retries": p["counters_total"]["retries"],
                })
            });
            json!({
                "kuku_session_per_client": per_client,
                "kuku_accepted_per_s": kr,
                "best_database_strategy": b["strategy"],
                "best_database_accepted_per_s": br,
                "ratio": (ratio * 100.0).round() / 100.0,
                "kuku_retries": k["counters_total"]["retries"],
                "ten_x_met": ratio >= 10.0,
                "kuku_without_retries": k["counters_total"]["retries"] == 0,
                "atomic_is_best_database_strategy": b["strategy"] == "atomic",
            })
        }
        _ => Value::Null,
    }
}

/// The tables of `report.md`.
pub fn report_markdown(summary: &Value) -> String {
    let mut s = String::new();
    let empty = Vec::new();
    let medians = summary["medians"].as_array().unwrap_or(&empty);
    let mut scenarios: Vec<&str> = medians
        .iter()
        .filter_map(|m| m["scenario"].as_str())
        .collect();
    scenarios.dedup();
    let mut clients: Vec<u64> = medians
        .iter()
        .filter_map(|m| m["clients"].as_u64())
        .collect();
    clients.sort_unstable();
    clients.dedup();
    // The overview: accepted orders/s and p99 per strategy and concurrency.
    for sc in &scenarios {
        s += &format!("\n### `{sc}`: accepted orders/s (p99 latency)\n\n| strategy |");
        for c in &clients {
            s += &format!(" {c} client{} |", if *c == 1 { "" } else { "s" });
        }
        s += "\n|---|";
        s += &"---:|".repeat(clients.len());
        s += "\n";
        let mut strategies: Vec<&str> = medians
            .iter()
            .filter(|m| m["scenario"] == *sc)
            .filter_map(|m| m["strategy"].as_str())
            .collect();
        strategies.dedup();
        for st in strategies {
            s += &format!("| {st} |");
            for c in &clients {
                let cell = medians
                    .iter()
                    .find(|m| m["scenario"] == *sc && m["strategy"] == st && m["clients"] == *c)
                    .map_or_else(String::new, |m| {
                        format!(
                            "{} ({})",
                            thousands(m["accepted_per_s"].as_f64().unwrap_or(0.0)),
                            duration_us(m["p99_us"].as_f64().unwrap_or(0.0))
                        )
                    });
                s += &format!(" {cell} |");
            }
            s += "\n";
        }
    }
    for sc in scenarios {
        s += &format!(
            "\n### scenario `{sc}`\n\n| strategy | clients | conns | accepted/s (median) | min..max | p50 µs | p99 µs | max µs | retries | conflicts | deadlocks | lock timeouts | InnoDB lock waits | fsyncs/order | check |\n|---|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n"
        );
        for m in medians.iter().filter(|m| m["scenario"] == sc) {
            let c = &m["counters_total"];
            let check = if m["checks_ok"] == m["runs"] {
                "exact".to_owned()
            } else if m["lost_update_runs"].as_u64().unwrap_or(0) > 0 {
                format!(
                    "lost updates in {}/{} runs",
                    m["lost_update_runs"], m["runs"]
                )
            } else {
                format!(
                    "failed in {} runs",
                    m["runs"].as_u64().unwrap_or(0) - m["checks_ok"].as_u64().unwrap_or(0)
                )
            };
            s += &format!(
                "| {} | {} | {} | {:.0} | {:.0}..{:.0} | {:.0} | {:.0} | {:.0} | {} | {} | {} | {} | {} | {} | {} |\n",
                m["strategy"].as_str().unwrap_or(""),
                m["clients"],
                m["connections"],
                m["accepted_per_s"].as_f64().unwrap_or(0.0),
                m["accepted_per_s_min"].as_f64().unwrap_or(0.0),
                m["accepted_per_s_max"].as_f64().unwrap_or(0.0),
                m["p50_us"].as_f64().unwrap_or(0.0),
                m["p99_us"].as_f64().unwrap_or(0.0),
                m["max_us"].as_f64().unwrap_or(0.0),
                c["retries"],
                c["conflicts"],
                c["deadlocks"],
                c["lock_timeouts"],
                m["innodb_row_lock_waits_total"],
                m["innodb_fsyncs_per_accepted"],
                check
            );
        }
    }
    if !summary["hypothesis"].is_null() {
        let h = &summary["hypothesis"];
        s += &format!(
            "\nAt 100 clients on one hot account: kuku {:.0} accepted/s, best database strategy {} {:.0}/s: {}x (10x: {}), kuku retries {}.\n",
            h["kuku_accepted_per_s"].as_f64().unwrap_or(0.0),
            h["best_database_strategy"].as_str().unwrap_or("?"),
            h["best_database_accepted_per_s"].as_f64().unwrap_or(0.0),
            h["ratio"],
            h["ten_x_met"],
            h["kuku_retries"]
        );
    }
    s
}

/// `1234567.8` as `1,234,568`.
fn thousands(v: f64) -> String {
    let digits = format!("{:.0}", v.max(0.0));
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

/// Microseconds as `850 µs`, `12.3 ms` or `4.2 s`.
fn duration_us(us: f64) -> String {
    if us >= 1e6 {
        format!("{:.1} s", us / 1e6)
    } else if us >= 1e4 {
        format!("{:.0} ms", us / 1e3)
    } else if us >= 1e3 {
        format!("{:.1} ms", us / 1e3)
    } else {
        format!("{us:.0} µs")
    }
}

/// The bench at smoke size (CI).
pub fn smoke() -> anyhow::Result<Value> {
    let args = LocksBenchArgs {
        scenarios: Some(vec![Scenario::Buy, Scenario::Mix]),
        clients: Some(vec![4]),
        out_dir: Some(tempfile::tempdir()?.keep()),
        ..LocksBenchArgs::smoke()
    };
    let mut sink = Vec::new();
    let summary = run(&args, &mut sink)?;
    if let Some(dir) = &args.out_dir {
        let _ = std::fs::remove_dir_all(dir);
    }
    if summary["medians"].as_array().is_none_or(|m| m.is_empty()) {
        bail!("the smoke run measured nothing");
    }
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strategy_names_round_trip() {
        for s in Strategy::ALL {
            assert_eq!(Strategy::parse(s.name()), Ok(s));
        }
        assert!(Strategy::parse("mutex").is_err());
        assert_eq!(Strategy::Kuku.sql_kind(), None);
        assert!(!Strategy::NaiveRr.is_correct_by_design());
    }

    #[test]
    fn numbers_print_for_people() {
        assert_eq!(thousands(1_234_567.8), "1,234,568");
        assert_eq!(thousands(999.0), "999");
        assert_eq!(duration_us(850.0), "850 µs");
        assert_eq!(duration_us(1_240.0), "1.2 ms");
        assert_eq!(duration_us(123_456.0), "123 ms");
        assert_eq!(duration_us(4_200_000.0), "4.2 s");
    }

    #[test]
    fn medians_of_odd_and_even_counts() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), 2.5);
        assert_eq!(median(vec![]), 0.0);
    }

    /// The whole harness at smoke size: every default strategy, the lease-expiry experiment
    /// and the probes, against the real MariaDB and Redis and an in-process node.
    #[test]
    fn heavy_locks_smoke_run_checks_every_strategy() {
        let summary = smoke().expect("the smoke run completes");
        let medians = summary["medians"].as_array().unwrap();
        for s in Strategy::SMOKE {
            for sc in ["buy", "mix"] {
                let m = medians
                    .iter()
                    .find(|m| m["strategy"] == s.name() && m["scenario"] == sc)
                    .unwrap_or_else(|| panic!("{} {sc} missing", s.name()));
                assert!(m["counters_total"]["accepted"].as_u64().unwrap() > 0, "{m}");
                if s.is_correct_by_design() {
                    assert_eq!(m["checks_ok"], m["runs"], "{m}");
                }
            }
        }
        let lease = summary["lease_expiry"].as_array().unwrap();
        let fenced = lease
            .iter()
            .find(|r| r["strategy"] == "redis-lock")
            .unwrap();
        assert_eq!(fenced["check"]["ok"], true, "{fenced}");
        let probes = summary["probes"].as_array().unwrap();
        assert_eq!(probes.len(), 4);
        let gap_rr = &probes[0];
        assert_eq!(gap_rr["isolation"], "REPEATABLE READ");
        assert_eq!(gap_rr["deadlocks"], 1, "{gap_rr}");
    }
}
