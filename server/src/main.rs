//! `kuku`: the Kuku node and its tools. Thin: parse arguments, build config, call the library.

use clap::{Args, Parser, Subcommand};
use kuku_gateway::translate::RateLimits;
use kuku_server::config::NodeConfig;
use kuku_server::http::{HttpDoor, HttpServer};
use kuku_server::node::{Node, NodeOutputs};
use kuku_server::pipeline::wait::Wait;
use kuku_server::scheduler::ScheduleMode;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

#[derive(Parser)]
#[command(
    name = "kuku",
    version,
    about = "Kuku: a mock Korean securities broker on an LMAX-style exchange core"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run a node in-process through a readable end-to-end scenario, then exit.
    Demo {
        /// Keep the data here instead of a temporary directory.
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Milliseconds between simulated quotes.
        #[arg(long, default_value_t = 50)]
        feed_interval_ms: u64,
    },
    /// Run a node until SIGINT or SIGTERM. It fail-stops: a panic aborts it (SIGABRT), a
    /// journal failure ends it with status 74 (docs/operations.md, Fail-stop).
    Serve(ServeArgs),
    /// Compare every table of the database (orders, trades, ledger transactions and entries,
    /// balances, positions, accounts, symbols, the checkpoint) with the rows the journal
    /// rebuilds, and with the engine at the checkpoint. Exit status 2 on any difference.
    Reconcile(ReconcileArgs),
    /// An account's history (ledger transactions, orders, trades) read from the database.
    History(HistoryArgs),
    /// Operator commands over the gateway's admin session (accounts, money, symbols, tokens).
    Admin(kuku_gateway::cli::AdminArgs),
    /// Trade over the gateway: orders, cancels, balances, positions, the execution stream.
    Client(kuku_gateway::cli::ClientArgs),
    /// Make a hot standby the primary, in a new epoch (docs/operations.md, Failover).
    Promote(PromoteArgs),
    /// Move a stopped node's data directory to this build's engine-logic version: a new journal
    /// from the final snapshot the old build wrote at its clean stop (docs/operations.md,
    /// Upgrades). The old journal is kept next to the new one.
    Upgrade(ReconcileArgs),
    /// Reference data in the database: markets, symbols (ISIN, names, market, tick rule, lot,
    /// listing status), provider mappings; and the stored candles.
    Reference(ReferenceArgs),
    /// Print the HTTP API's OpenAPI 3.1 document (what `/api/v1/openapi.json` serves).
    Openapi,
    /// A node's replication role, epoch, seqs and alarms (JSON).
    ReplicationStatus {
        /// The node's replication address (`replication.listen`).
        #[arg(long)]
        node: String,
    },
}

#[derive(Args)]
struct PromoteArgs {
    /// The standby's replication address (`replication.listen`).
    #[arg(long)]
    node: String,
    /// The admin token (64 hex digits); default: read from --secrets.
    #[arg(long, env = "KUKU_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,
    /// The credentials file `kuku serve` wrote.
    #[arg(long, default_value = "kuku-data/gateway-secrets.toml")]
    secrets: PathBuf,
}

#[derive(Args)]
struct ServeArgs {
    /// A TOML config file (flags and environment variables override it).
    #[arg(long, env = "KUKU_CONFIG")]
    config: Option<PathBuf>,
    #[arg(long, env = "KUKU_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// `every-batch` (one fdatasync per batch) or `none` (page cache only).
    #[arg(long, env = "KUKU_DURABILITY")]
    durability: Option<String>,
    #[arg(long, env = "KUKU_SCHEDULE", value_enum)]
    schedule: Option<ScheduleMode>,
    /// Pin the business-logic processor to this core.
    #[arg(long, env = "KUKU_PROCESSOR_CORE")]
    processor_core: Option<usize>,
    #[arg(long, env = "KUKU_PROCESSOR_WAIT", value_enum)]
    processor_wait: Option<Wait>,
    /// Disable the market-data feed.
    #[arg(long)]
    no_feed: bool,
    /// The market-data source: `sim` (the simulated walk, the default), `replay:FILE`, or
    /// `kis` (the KIS Open API: `[feed.kis]` in the config file, the app key and secret in
    /// KUKU_KIS_APP_KEY and KUKU_KIS_APP_SECRET).
    #[arg(long, env = "KUKU_MARKET_DATA")]
    market_data: Option<String>,
    /// A replay's pace: N x the recorded pace; 0 plays as fast as the engine takes it.
    #[arg(long)]
    speed: Option<f64>,
    /// Record what the market-data source delivers (quotes and ticks) to FILE.
    #[arg(long, value_name = "FILE")]
    record: Option<PathBuf>,
    /// The query store: mysql://USER:PASSWORD@HOST:PORT/DATABASE, sqlite:PATH or none
    /// [default: DATA_DIR/kuku.sqlite].
    #[arg(long, env = "KUKU_DATABASE_URL", hide_env_values = true)]
    database_url: Option<String>,
    /// The gateway's listen address (default 127.0.0.1:7878).
    #[arg(long, env = "KUKU_LISTEN")]
    listen: Option<String>,
    /// Serve `GET /metrics` (Prometheus text) on this address, e.g. 127.0.0.1:7880.
    #[arg(long, env = "KUKU_METRICS_LISTEN")]
    metrics_listen: Option<String>,
    /// The gateway's token secret (64 hex digits); default: the credentials file.
    #[arg(long, env = "KUKU_GATEWAY_SECRET", hide_env_values = true)]
    gateway_secret: Option<String>,
    /// The admin token (64 hex digits); default: the credentials file.
    #[arg(long, env = "KUKU_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,
    /// Run without the TCP gateway.
    #[arg(long)]
    no_gateway: bool,
    /// The HTTP API's listen address (default 127.0.0.1:8080).
    #[arg(long, env = "KUKU_HTTP_LISTEN")]
    http_listen: Option<String>,
    /// The HTTP API's JWT signing key (64 hex digits); default: DATA_DIR/http-jwt-key.
    #[arg(long, env = "KUKU_HTTP_JWT_KEY", hide_env_values = true)]
    http_jwt_key: Option<String>,
    /// Run without the HTTP API.
    #[arg(long)]
    no_http: bool,
    /// Replication mode: none, async or sync (`replication.mode`).
    #[arg(long, env = "KUKU_REPLICATION", value_enum)]
    replication: Option<kuku_server::replication::Mode>,
    /// This node's replication address: standbys and `kuku promote` connect here.
    #[arg(long, env = "KUKU_REPLICATION_LISTEN")]
    replication_listen: Option<String>,
    /// Run as a hot standby of the primary at this replication address.
    #[arg(long, env = "KUKU_STANDBY_OF")]
    standby_of: Option<String>,
    /// Another node's replication address, asked for a newer epoch at start-up (repeatable).
    #[arg(long = "peer")]
    peers: Vec<String>,
    /// What sync replication does without a standby: stall or degrade.
    #[arg(long, value_enum)]
    on_standby_loss: Option<kuku_server::replication::OnStandbyLoss>,
}

#[derive(Args)]
struct ReconcileArgs {
    /// The node's TOML config file (flags and environment variables override it).
    #[arg(long, env = "KUKU_CONFIG")]
    config: Option<PathBuf>,
    #[arg(long, env = "KUKU_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// The database to check [default: DATA_DIR/kuku.sqlite].
    #[arg(long, env = "KUKU_DATABASE_URL", hide_env_values = true)]
    database_url: Option<String>,
}

#[derive(Args)]
struct ReferenceArgs {
    #[command(flatten)]
    database: ReconcileArgs,
    #[command(subcommand)]
    command: kuku_server::reference::ReferenceCommand,
}

#[derive(Args)]
struct HistoryArgs {
    #[command(flatten)]
    database: ReconcileArgs,
    /// The account number.
    #[arg(long)]
    account: u32,
    #[arg(long, value_enum, default_value = "all")]
    kind: kuku_server::database::HistoryKind,
    /// Only ids (tx_id, order_id, trade_id) above this, for paging.
    #[arg(long, default_value_t = 0)]
    after: u64,
    /// At most this many of each kind.
    #[arg(long, default_value_t = 100)]
    limit: u32,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // A node fail-stops: a panic in any of its threads aborts the process (ADR-012).
    if matches!(cli.command, Cmd::Serve(_) | Cmd::Demo { .. }) {
        kuku_server::failstop::install_panic_hook();
    }
    // The demo's transcript is the output; its logs stay quiet unless asked for.
    let default_log = if matches!(
        cli.command,
        Cmd::Demo { .. }
            | Cmd::Admin(_)
            | Cmd::Client(_)
            | Cmd::History(_)
            | Cmd::Reference(_)
            | Cmd::Promote(_)
            | Cmd::Upgrade(_)
            | Cmd::ReplicationStatus { .. }
            | Cmd::Openapi
    ) {
        "warn"
    } else {
        "info"
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("KUKU_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_log)),
        )
        .with_writer(std::io::stderr)
        .init();
    let result = match cli.command {
        Cmd::Demo {
            data_dir,
            feed_interval_ms,
        } => kuku_server::demo::run(
            kuku_server::demo::DemoOptions {
                data_dir,
                feed_interval_ms,
            },
            &mut std::io::stdout(),
        ),
        Cmd::Serve(args) => serve(args),
        Cmd::Reconcile(args) => return reconcile(args),
        Cmd::History(args) => history(&args),
        Cmd::Reference(args) => database_config(&args.database).and_then(|config| {
            kuku_server::reference::run(&config, args.command, &mut std::io::stdout().lock())
        }),
        Cmd::Admin(args) => kuku_gateway::cli::run_admin(args, &mut std::io::stdout()),
        Cmd::Client(args) => kuku_gateway::cli::run_client(args, &mut std::io::stdout()),
        Cmd::Promote(args) => promote(&args),
        Cmd::Upgrade(args) => upgrade(&args),
        Cmd::Openapi => {
            print!("{}", kuku_server::http::openapi::document());
            Ok(())
        }
        Cmd::ReplicationStatus { node } => {
            kuku_server::replication::control::status(&node, Duration::from_secs(5)).and_then(|s| {
                println!("{}", serde_json::to_string(&s)?);
                Ok(())
            })
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kuku: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn serve_config(args: &ServeArgs) -> anyhow::Result<NodeConfig> {
    let mut config = match &args.config {
        Some(path) => NodeConfig::load(path)?,
        None => NodeConfig::default(),
    };
    if let Some(d) = &args.data_dir {
        config.data_dir = d.clone();
    }
    if let Some(d) = &args.durability {
        config.durability = d.clone();
    }
    if let Some(s) = args.schedule {
        config.schedule = s;
    }
    if args.processor_core.is_some() {
        config.pipeline.processor_core = args.processor_core;
    }
    if let Some(w) = args.processor_wait {
        config.pipeline.processor_wait = w;
    }
    if args.no_feed {
        config.feed.enabled = false;
    }
    if let Some(source) = &args.market_data {
        config.feed.source = source.clone();
    }
    if let Some(speed) = args.speed {
        config.feed.speed = speed;
    }
    if args.record.is_some() {
        config.feed.record = args.record.clone();
    }
    if args.database_url.is_some() {
        config.database_url = args.database_url.clone();
    }
    if let Some(l) = &args.listen {
        config.gateway.listen = l.clone();
    }
    if let Some(m) = &args.metrics_listen {
        config.metrics_listen = Some(m.clone());
    }
    config.gateway.secret_hex = args.gateway_secret.clone();
    config.gateway.admin_token_hex = args.admin_token.clone();
    if args.no_gateway {
        config.gateway.enabled = false;
    }
    if let Some(l) = &args.http_listen {
        config.http.listen = l.clone();
    }
    config.http.jwt_key_hex = args.http_jwt_key.clone();
    if args.no_http {
        config.http.enabled = false;
    }
    let r = &mut config.replication;
    if let Some(m) = args.replication {
        r.mode = m;
    }
    if args.replication_listen.is_some() {
        r.listen = args.replication_listen.clone();
    }
    if args.standby_of.is_some() {
        r.standby_of = args.standby_of.clone();
    }
    if !args.peers.is_empty() {
        r.peers = args.peers.clone();
    }
    if let Some(l) = args.on_standby_loss {
        r.on_standby_loss = l;
    }
    config.validate()?;
    Ok(config)
}

fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let config = serve_config(&args)?;
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, Arc::clone(&stop))?;
    }
    let mut outputs = NodeOutputs::default();
    let http = if config.http.enabled {
        Some(HttpDoor::prepare(&config, &mut outputs)?)
    } else {
        None
    };
    let (node, gateway) = if config.gateway.enabled {
        let (node, gateway) = kuku_server::gateway::start(&config, outputs)?;
        tracing::info!(
            listen = %gateway.local_addr(),
            secrets = %config.gateway.secrets_path(&config).display(),
            "The TCP gateway is up: `kuku admin` reads the admin token from the secrets file."
        );
        (node, Some(gateway))
    } else {
        (Node::start(&config, outputs)?, None)
    };
    let http = match http {
        Some(door) => {
            let credentials = config.gateway.credentials(&config)?;
            let rate_limits = match &gateway {
                Some(g) => g.rate_limits(),
                None => Arc::new(RateLimits::new(
                    config.gateway.rate_per_s,
                    config.gateway.burst,
                )),
            };
            let server = door.serve(
                &node,
                rate_limits,
                credentials.secret,
                credentials.admin_token,
            )?;
            tracing::info!(
                listen = %server.local_addr(),
                jwt_key = %config.http.jwt_key_path(&config).display(),
                "The HTTP API is up under /api/v1 (docs/api.md)."
            );
            Some(server)
        }
        None => None,
    };
    tracing::info!(
        data_dir = %config.data_dir.display(),
        durability = %config.durability,
        seq = node.startup.seq_last,
        "Kuku is serving. Stop it with Ctrl-C (SIGINT) or SIGTERM."
    );
    if let (Some(r), Some(addr)) = (&node.replication, node.replication_addr) {
        tracing::info!(
            replication = %addr,
            role = ?r.role(),
            epoch = r.epoch(),
            mode = ?r.mode(),
            "Replication is on."
        );
    }
    let metrics = match &config.metrics_listen {
        Some(listen) => {
            let mut sources = kuku_server::metrics::MetricsSources::of(&node, gateway.as_ref());
            sources.ws = http.as_ref().and_then(HttpServer::ws_metrics);
            let m = kuku_server::metrics::start(listen, sources)?;
            tracing::info!(listen = %m.local_addr(), "Metrics: GET /metrics (Prometheus text).");
            Some(m)
        }
        None => None,
    };
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(metrics);
    tracing::info!("Stopping: no new commands are taken; draining the rings.");
    if let Some(http) = http {
        http.shutdown();
    }
    if let Some(gateway) = gateway {
        gateway.shutdown();
    }
    let seq = node.shutdown();
    tracing::info!(
        seq,
        "Kuku stopped cleanly: every accepted command is journaled and applied."
    );
    Ok(())
}

/// `kuku promote`: prints the new primary's epoch and seq.
fn promote(args: &PromoteArgs) -> anyhow::Result<()> {
    let token = match &args.admin_token {
        Some(hex) => kuku_gateway::auth::decode_hex32(hex)?,
        None => {
            kuku_gateway::auth::Credentials::load(&args.secrets)
                .map_err(|e| {
                    anyhow::anyhow!(
                        "no --admin-token (or KUKU_ADMIN_TOKEN), and {} is unreadable: {e}",
                        args.secrets.display()
                    )
                })?
                .admin_token
        }
    };
    let answer = kuku_server::replication::control::promote(&args.node, token)?;
    println!("{answer}");
    Ok(())
}

/// The node config a database command reads: the file, then the flags.
fn database_config(args: &ReconcileArgs) -> anyhow::Result<NodeConfig> {
    let mut config = match &args.config {
        Some(path) => NodeConfig::load(path)?,
        None => NodeConfig::default(),
    };
    if let Some(d) = &args.data_dir {
        config.data_dir = d.clone();
    }
    if args.database_url.is_some() {
        config.database_url = args.database_url.clone();
    }
    Ok(config)
}

/// `kuku upgrade`: checks, then moves the data directory to this build's engine-logic version.
fn upgrade(args: &ReconcileArgs) -> anyhow::Result<()> {
    let config = database_config(args)?;
    let journal = config.journal_dir();
    let plan = kuku_journal::upgrade::plan_upgrade(&journal)?;
    // The rows before the upgrade cannot be re-derived by the new build: the database must
    // hold them all.
    if plan.from_version != 0
        && let Some((url, checkpoint)) = kuku_server::database::peek_checkpoint(&config)?
        && checkpoint.seq < plan.seq_last
    {
        anyhow::bail!(
            "the query database at {url} holds rows up to seq {}, behind the journal's last seq \
             {}: the new build cannot re-derive the rest. Start the old build, let its database \
             writer catch up (kuku_db_lag_seq 0), stop it cleanly, then upgrade",
            checkpoint.seq,
            plan.seq_last
        );
    }
    let done = kuku_journal::upgrade::upgrade(plan)?;
    match &done.archive {
        Some(archive) => println!(
            "upgraded {} from engine-logic version {} to {} at seq {} (state hash {:#018x}); the \
             old journal is kept in {}",
            done.journal_dir.display(),
            done.from_version,
            done.to_version,
            done.seq,
            done.state_hash,
            archive.display()
        ),
        None => println!(
            "finished an interrupted upgrade of {} to engine-logic version {}",
            done.journal_dir.display(),
            done.to_version
        ),
    }
    Ok(())
}

/// `kuku history`: an account's history from the query store.
fn history(args: &HistoryArgs) -> anyhow::Result<()> {
    let config = database_config(&args.database)?;
    let mut out = std::io::stdout().lock();
    kuku_server::database::history(
        &config,
        args.account,
        args.kind,
        args.after,
        args.limit,
        &mut out,
    )
}

/// `kuku reconcile`: prints the report; exit status 0 clean, 2 differences, 1 error.
fn reconcile(args: ReconcileArgs) -> ExitCode {
    let run = || -> anyhow::Result<kuku_persistence::ReconcileReport> {
        kuku_server::database::reconcile(&database_config(&args)?)
    };
    match run() {
        Ok(report) => {
            println!("{report}");
            if report.is_clean() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(2)
            }
        }
        Err(e) => {
            eprintln!("kuku reconcile: {e:#}");
            ExitCode::FAILURE
        }
    }
}
