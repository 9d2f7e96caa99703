//! `kuku-bench`: command-line front end of the kuku-bench library. Parses arguments, builds
//! the config, calls the library; nothing else lives here.
//!
//! Exit status: 0 on success, 1 on an error, 3 when an engine ended in a different state than
//! the oracle (its numbers are then not comparable; the report says which and how), 4 when
//! the tcp run had more than 1% errors (an http run: any error, or a missed --floor; a ws run:
//! a failed floor point), 5 when a locking strategy meant to be correct failed
//! its correctness check.

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use kuku_bench::engine_bench::{self, EngineBenchOptions};
use kuku_bench::{EngineSelection, Flow, FlowConfig, registered_engines};
use std::io::Write;
use std::process::ExitCode;
use std::time::Instant;

/// Kuku's benchmark harness.
#[derive(Debug, Parser)]
#[command(name = "kuku-bench", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Order-book throughput and per-op latency on a generated flow, optionally side by side
    /// with peer engines (matchcore, orderbook-rs).
    Engine(EngineArgs),
    /// The journal: append per durability mode and batch size, read, replay and recovery,
    /// against raw copy / raw sync baselines.
    Journal(kuku_bench::journal_bench::JournalBenchArgs),
    /// The whole pipeline (ring, journal, processor, consumers) against direct apply.
    Pipeline(kuku_bench::pipeline_bench::PipelineBenchArgs),
    /// The database writer into MariaDB: rows/s per batch size against the same SQL on
    /// pre-built rows, and the lag at offered rates below and above its capacity.
    Persistence(kuku_bench::persistence_bench::PersistenceBenchArgs),
    /// Order-to-ack latency over the TCP gateway, open loop at a fixed rate, beside a mio
    /// echo server (`--echo-baseline`); against `--addr` or an in-process node.
    Tcp(kuku_bench::tcp_bench::TcpBenchArgs),
    /// Order-to-response latency over the HTTP door, open loop at a fixed rate, beside a
    /// baseline axum endpoint doing the same work minus the node (JSON decode, JWT check, a
    /// response of the same size).
    Http(kuku_bench::http_bench::HttpBenchArgs),
    /// The lock-strategy experiment: concurrent orders reserving cash or shares from one hot
    /// account (or many), naive / pessimistic / optimistic / Redis lock / atomic update on
    /// MariaDB against Kuku's single writer.
    Locks(kuku_bench::locks::LocksBenchArgs),
    /// WebSocket fan-out: many clients subscribed to quotes and trades of a node, beside a
    /// bare tokio-tungstenite server broadcasting the same messages (each a child process).
    Ws(kuku_bench::ws_bench::WsBenchArgs),
    /// The node of `kuku-bench ws` (started by it; stops when its stdin ends).
    #[command(hide = true)]
    WsNodeServer(kuku_bench::ws_bench::NodeServerArgs),
    /// The baseline of `kuku-bench ws` (started by it; stops when its stdin ends).
    #[command(hide = true)]
    WsBaselineServer(kuku_bench::ws_bench::BaselineServerArgs),
    // Later subcommands slot in here: Pipeline, Tcp, Persistence.
}

#[derive(Debug, Args)]
struct EngineArgs {
    /// Also run matchcore 0.4.0 and orderbook-rs 0.15.3 on the same flow.
    #[arg(long)]
    compare_peers: bool,
    /// With --compare-peers, leave orderbook-rs out: about 35 s a pass at the default size, and
    /// it never decides a floor (matchcore is the faster peer).
    #[arg(long, requires = "compare_peers")]
    no_orderbook_rs: bool,
    /// Also time the model book (the oracle); it runs anyway when nothing else is registered.
    #[arg(long)]
    model: bool,
    /// Also run Kuku with risk, ledger, positions and idempotency on (`kuku_full`).
    #[arg(long)]
    full: bool,
    /// Also run Kuku on sorted levels only (`kuku_sorted`, the ladder comparison).
    #[arg(long)]
    sorted_ladder: bool,
    /// Time only the engine of this name among those selected (e.g. `kuku_full`), to profile
    /// it alone under a sampling profiler; the state check against the oracle still runs.
    #[arg(long, value_name = "ENGINE")]
    only: Option<String>,
    /// Rounds of interleaved passes per engine [default: 5; 2 with --smoke].
    #[arg(long)]
    runs: Option<usize>,
    /// Flow seed.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Steady-state (timed) ops [default: 1000000; 5000 with --smoke].
    #[arg(long)]
    ops: Option<u64>,
    /// Resting orders built by the untimed warm-up, over all symbols [default: 100000; 1000 with --smoke].
    #[arg(long)]
    depth: Option<u64>,
    /// Symbols (one book each).
    #[arg(long, default_value_t = 1)]
    symbols: u32,
    /// Accounts placing orders.
    #[arg(long, default_value_t = 1000)]
    accounts: u32,
    /// Mean distance of passive orders from the touch, ticks: larger spreads the same depth
    /// over more price levels (shorter queues per level).
    #[arg(long, default_value_t = FlowConfig::default().passive_offset_ticks_mean)]
    passive_offset_ticks_mean: i64,
    /// Let crossing orders ask for more than the liquidity inside their limit. The peers
    /// then disagree (matchcore 0.4.0 trades through the limit): shows the finding.
    #[arg(long)]
    uncapped_crossing: bool,
    /// Skip the per-op latency passes.
    #[arg(long)]
    no_latency: bool,
    /// Tiny sizes for a quick check of the whole pipeline.
    #[arg(long)]
    smoke: bool,
    /// Print one JSON object with the results as the last line of output.
    #[arg(long)]
    json: bool,
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("kuku-bench: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Engine(args) => engine(args),
        Command::Pipeline(args) => {
            let json = kuku_bench::pipeline_bench::run(&args)?;
            if args.json {
                println!("{json}");
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Tcp(args) => {
            let summary = kuku_bench::tcp_bench::run(args, &mut std::io::stdout())?;
            Ok(if summary["valid"] == serde_json::Value::Bool(true) {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(4)
            })
        }
        Command::Http(args) => {
            let met = kuku_bench::http_bench::run(args, &mut std::io::stdout())?;
            // Exit 4, as tcp does for an invalid run: a request failed, or --floor was missed.
            Ok(if met {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(4)
            })
        }
        Command::Persistence(args) => {
            let json = kuku_bench::persistence_bench::run(&args)?;
            if args.json {
                println!("{json}");
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Locks(args) => {
            let summary = kuku_bench::locks::run(&args, &mut std::io::stdout())?;
            // Exit 5 when a strategy that is meant to be correct failed its check.
            let failed = summary["medians"].as_array().is_some_and(|m| {
                m.iter().any(|m| {
                    kuku_bench::locks::Strategy::parse(m["strategy"].as_str().unwrap_or(""))
                        .is_ok_and(|s| s.is_correct_by_design())
                        && m["checks_ok"] != m["runs"]
                })
            });
            Ok(if failed {
                ExitCode::from(5)
            } else {
                ExitCode::SUCCESS
            })
        }
        Command::Ws(args) => {
            let met = kuku_bench::ws_bench::run(args, &mut std::io::stdout())?;
            // Exit 4, as http does: a floor point failed (a smoke run: nothing arrived).
            Ok(if met {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(4)
            })
        }
        Command::WsNodeServer(args) => {
            kuku_bench::ws_bench::serve_node(&args)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::WsBaselineServer(args) => {
            kuku_bench::ws_bench::serve_baseline(&args)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Journal(args) => {
            let json = kuku_bench::journal_bench::run(&args)?;
            if args.json {
                println!("{json}");
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn engine(args: EngineArgs) -> anyhow::Result<ExitCode> {
    let (ops_default, depth_default, runs_default) = if args.smoke {
        (5_000, 1_000, 2)
    } else {
        (1_000_000, 100_000, 5)
    };
    let config = FlowConfig {
        seed: args.seed,
        symbols: args.symbols,
        accounts: args.accounts,
        depth_orders: args.depth.unwrap_or(depth_default),
        ops_steady: args.ops.unwrap_or(ops_default),
        crossing_capped: !args.uncapped_crossing,
        passive_offset_ticks_mean: args.passive_offset_ticks_mean,
        ..FlowConfig::default()
    };
    let options = EngineBenchOptions {
        runs: args.runs.unwrap_or(runs_default).max(1),
        latency: !args.no_latency,
    };
    let engines = registered_engines(EngineSelection {
        compare_peers: args.compare_peers,
        orderbook_rs: !args.no_orderbook_rs,
        model: args.model,
        full: args.full,
        sorted_ladder: args.sorted_ladder,
    })?;
    let engines = match &args.only {
        None => engines,
        Some(only) => {
            let names: Vec<&str> = engines.iter().map(|e| e.name).collect();
            let kept: Vec<_> = engines.into_iter().filter(|e| e.name == only).collect();
            anyhow::ensure!(
                !kept.is_empty(),
                "--only {only}: not among the selected engines ({})",
                names.join(", ")
            );
            kept
        }
    };

    let generate_start = Instant::now();
    let flow = Flow::generate(&config).context("invalid flow configuration")?;
    let generate_s = generate_start.elapsed().as_secs_f64();

    let mut stderr = std::io::stderr();
    let report = engine_bench::run(&flow, &engines, options, generate_s, &mut stderr)?;
    let mut stdout = std::io::stdout().lock();
    report.write_text(&mut stdout)?;
    if args.json {
        writeln!(stdout, "{}", serde_json::to_string(&report.to_json())?)?;
    }
    stdout.flush()?;
    Ok(if report.states_agree() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(3)
    })
}
