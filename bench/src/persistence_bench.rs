//! The persistence benchmark behind `kuku-bench persistence`: rows per second the
//! database writer commits into MariaDB, against a ceiling measured in the same run, over a
//! sweep of batch sizes; and the lag at offered rates below and above the writer's capacity.
//!
//! Passes, interleaved round by round (`--runs`), each into a fresh database created next to
//! the one in `KUKU_MYSQL_URL` (default `mysql://root@127.0.0.1:3306/test`) and dropped after:
//! - **ceiling**: the writer's own SQL statements and transaction boundaries (`store::write_batch`:
//!   multi-row inserts and upserts per table plus the checkpoint, one transaction per batch of
//!   `batch` commands) executed on batches built in advance from the same events. Only the
//!   database work is timed.
//! - **writer (live)**: the events offered through `WriterHandle::offer`, as the node's output
//!   ring does (paced so the bounded intake never overflows), until the checkpoint reaches the
//!   last command: intake, event -> row folding, coalescing, statements, commits.
//! - **writer (catch-up)**: a writer started behind the whole journal re-derives every event by
//!   replaying it on a shadow engine (what it does after a restart or an outage), until the
//!   checkpoint reaches the last command. Batches are full, so its boundaries are the ceiling's.
//!
//! Rows are row writes: inserted rows, upserted rows (coalesced per key within a batch) and the
//! checkpoint update. Every pass must end with exactly the flow's rows per table (checked), and
//! the last pass of each kind reconciles with the engine. Floor: each writer >= 0.5x the ceiling
//! at the same batch size (docs/architecture.md §9), judged on the median of paired ratios
//! (each writer pass over the ceiling pass of the same batch size and round: on a shared
//! machine a slow spell slows every pass near it, so pairing cancels most of it).
//!
//! Lag: a writer (default batch, default intake) is offered a longer flow of the same mix at a
//! fixed command rate, 0.5x and 2x the live writer's measured rate, for `--lag-seconds`; lag
//! (commands offered whose rows are not committed) is sampled every 100 ms and its growth rate
//! (least-squares slope over the second half) reported in commands/s and rows/s behind. Above
//! capacity the intake overflows and the writer re-derives from the journal, as in production.
//! (The flow's timestamps are synthetic, so lag in seconds is given as lag / offered rate.)
//!
//! **Known limitations**: the database runs on the same two cores as the writer and the
//! benchmark; numbers include that contention. The flow has 8 accounts and 2 symbols (hot rows
//! coalesce well); more accounts would write more balance and position rows per batch.

use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use kuku_persistence::builder::BatchBuilder;
use kuku_persistence::rows::Batch;
use kuku_persistence::store::{self, Checkpoint, Statements};
use kuku_persistence::testkit::TestDatabase;
use kuku_persistence::testkit::flow::Flow;
use kuku_persistence::{
    ConnectOptions, Database, Writer, WriterConfig, WriterHandle, block_on, intake,
};
use serde_json::{Value, json};
use sqlx::Row;

/// `kuku-bench persistence` flags.
#[derive(Debug, Clone, clap::Args)]
pub struct PersistenceBenchArgs {
    /// Commands in the flow [default: 40000; 2000 with --smoke].
    #[arg(long)]
    pub commands: Option<usize>,
    /// Batch sizes (commands per database transaction) to sweep [default: 16,64,256,1024,4096].
    #[arg(long, value_delimiter = ',')]
    pub batches: Option<Vec<usize>>,
    /// Interleaved rounds of every pass [default: 3; 1 with --smoke].
    #[arg(long)]
    pub runs: Option<usize>,
    /// Seconds of each lag measurement [default: 8; 1 with --smoke].
    #[arg(long)]
    pub lag_seconds: Option<u64>,
    /// Flow seed.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Tiny sizes, for a quick check of every pass (also used by `cargo test`).
    #[arg(long)]
    pub smoke: bool,
    /// Print one JSON object with the results as the last line of output.
    #[arg(long)]
    pub json: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Ceiling,
    Live,
    CatchUp,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Ceiling => "ceiling",
            Kind::Live => "writer_live",
            Kind::CatchUp => "writer_catch_up",
        }
    }
}

/// One timed pass.
#[derive(Clone, Copy, Debug)]
struct Pass {
    rows: u64,
    batches: u64,
    seconds: f64,
}

impl Pass {
    fn rows_per_s(&self) -> f64 {
        self.rows as f64 / self.seconds
    }
}

/// Runs the benchmark; prints a readable report to stderr and returns the JSON summary.
pub fn run(args: &PersistenceBenchArgs) -> anyhow::Result<Value> {
    let commands = args
        .commands
        .unwrap_or(if args.smoke { 2_000 } else { 40_000 });
    let batches = args.batches.clone().unwrap_or_else(|| {
        if args.smoke {
            vec![64, 1024]
        } else {
            vec![16, 64, 256, 1024, 4096]
        }
    });
    let runs = args.runs.unwrap_or(if args.smoke { 1 } else { 3 }).max(1);
    let lag_seconds = args.lag_seconds.unwrap_or(if args.smoke { 1 } else { 8 });
    ensure!(
        batches.iter().all(|b| *b > 0),
        "batch sizes must be positive"
    );

    let dir = tempfile::tempdir()?;
    let journal = dir.path().join("journal");
    let started = Instant::now();
    let flow = Flow::generate(args.seed, commands);
    flow.write_journal(&journal)?;
    let expected = flow.expected_rows();
    eprintln!(
        "flow: {} commands, {} events, generated and journaled in {:.1} s; {}",
        flow.seq_last(),
        flow.events.iter().map(Vec::len).sum::<usize>(),
        started.elapsed().as_secs_f64(),
        mix(&flow)
    );
    let settings = mariadb_settings()?;
    eprintln!("MariaDB: {settings:?}");

    let mut results: Vec<(usize, Kind, Pass)> = Vec::new();
    for round in 0..runs {
        for &batch in &batches {
            for kind in [Kind::Ceiling, Kind::Live, Kind::CatchUp] {
                let reconcile = round + 1 == runs && batch == batches[batches.len() - 1];
                let pass = run_pass(kind, batch, &flow, &journal, reconcile)?;
                eprintln!(
                    "round {} batch {batch:>5} {:<16} {:>9.0} rows/s ({} rows, {} batches, {:.2} s)",
                    round + 1,
                    kind.name(),
                    pass.rows_per_s(),
                    pass.rows,
                    pass.batches,
                    pass.seconds
                );
                results.push((batch, kind, pass));
            }
        }
    }

    let mut sweep = Vec::new();
    let mut floor_ok = true;
    for &batch in &batches {
        let rates = |kind: Kind| -> Vec<f64> {
            results
                .iter()
                .filter(|(b, k, _)| *b == batch && *k == kind)
                .map(|(_, _, p)| p.rows_per_s())
                .collect()
        };
        let (ceiling, live, catch_up) = (
            rates(Kind::Ceiling),
            rates(Kind::Live),
            rates(Kind::CatchUp),
        );
        // Paired: each writer pass over the ceiling pass of the same batch size in the same
        // round (minutes apart at most), so slow spells of the shared machine cancel out.
        let paired =
            |w: &[f64]| -> Vec<f64> { w.iter().zip(&ceiling).map(|(w, c)| w / c).collect() };
        let (live_paired, catch_up_paired) = (paired(&live), paired(&catch_up));
        let (live_ratio, catch_up_ratio) = (median(&live_paired), median(&catch_up_paired));
        floor_ok &= live_ratio >= 0.5 && catch_up_ratio >= 0.5;
        let rows_per_command = results
            .iter()
            .find(|(b, k, _)| *b == batch && *k == Kind::Ceiling)
            .map_or(0.0, |(_, _, p)| p.rows as f64 / flow.seq_last() as f64);
        eprintln!(
            "batch {batch:>5}: ceiling {:>9.0} rows/s | writer live {:>9.0} ({live_ratio:.2}x, {}) | writer catch-up {:>9.0} ({catch_up_ratio:.2}x, {}) | {rows_per_command:.2} row writes per command",
            median(&ceiling),
            median(&live),
            range(&live_paired),
            median(&catch_up),
            range(&catch_up_paired),
        );
        sweep.push(json!({
            "batch_commands": batch,
            "row_writes_per_command": rows_per_command,
            "ceiling_rows_per_s": spread(&ceiling),
            "writer_live_rows_per_s": spread(&live),
            "writer_catch_up_rows_per_s": spread(&catch_up),
            "writer_live_vs_ceiling": live_ratio,
            "writer_catch_up_vs_ceiling": catch_up_ratio,
            "writer_live_vs_ceiling_paired": spread(&live_paired),
            "writer_catch_up_vs_ceiling_paired": spread(&catch_up_paired),
        }));
    }

    let default_batch = WriterConfig::new(
        kuku_persistence::DatabaseUrl::sqlite_file(Path::new("x")),
        journal.clone(),
        flow.config,
    )
    .batch_commands_max;
    // The writer's rate at its default batch: the median of three passes (one pass can land
    // in a slow spell of the shared machine and set the offered rates far off).
    let live_cmds_per_s = {
        let mut rates = Vec::new();
        for _ in 0..3 {
            let p = run_pass(Kind::Live, default_batch, &flow, &journal, false)?;
            rates.push(flow.seq_last() as f64 / p.seconds);
        }
        eprintln!(
            "writer live at its default batch ({default_batch} commands): {} commands/s",
            range(&rates)
        );
        median(&rates)
    };
    let rows_per_command = expected_row_writes_per_command(&flow, default_batch);
    let mut lag = Vec::new();
    for multiplier in [0.5, 2.0] {
        let rate = live_cmds_per_s * multiplier;
        // A flow long enough to offer at `rate` for the whole measurement.
        let needed = (rate * lag_seconds as f64 * 1.1) as usize + 1_000;
        let lag_dir = tempfile::tempdir()?;
        let lag_flow = Flow::generate(args.seed + 1, needed.max(commands));
        lag_flow.write_journal(&lag_dir.path().join("journal"))?;
        let l = lag_pass(
            &lag_flow,
            &lag_dir.path().join("journal"),
            rate,
            Duration::from_secs(lag_seconds),
        )?;
        eprintln!(
            "lag at {multiplier}x the writer's rate ({rate:.0} commands/s, {:.0} rows/s offered): grows {:.0} commands/s = {:.0} rows/s behind; max lag {} commands ({:.2} s of offered load); {} intake overflows",
            rate * rows_per_command,
            l.growth_cmds_per_s,
            l.growth_cmds_per_s * rows_per_command,
            l.lag_max_seq,
            l.lag_max_seq as f64 / rate,
            l.overflows
        );
        lag.push(json!({
            "offered_multiplier": multiplier,
            "offered_commands_per_s": rate,
            "offered_rows_per_s": rate * rows_per_command,
            "lag_growth_commands_per_s": l.growth_cmds_per_s,
            "lag_growth_rows_per_s": l.growth_cmds_per_s * rows_per_command,
            "lag_max_commands": l.lag_max_seq,
            "lag_max_seconds_of_load": l.lag_max_seq as f64 / rate,
            "intake_overflows": l.overflows,
            "seconds": lag_seconds,
        }));
    }
    eprintln!(
        "floor (each writer >= 0.5x the ceiling at every batch size): {}",
        if floor_ok { "met" } else { "NOT met" }
    );
    Ok(json!({
        "bench": "persistence",
        "date": crate::machine::utc_now(),
        "machine": {
            "cpus": std::thread::available_parallelism().map_or(0, |n| n.get()),
            "cpu_model": crate::machine::cpu_model(),
        },
        "mariadb": settings_json(&settings),
        "workload": {
            "commands": flow.seq_last(),
            "seed": args.seed,
            "mix": mix(&flow),
            "rows_per_table": format!("{expected:?}"),
        },
        "sweep": sweep,
        "lag": lag,
        "floor_met": floor_ok,
    }))
}

fn run_pass(
    kind: Kind,
    batch: usize,
    flow: &Flow,
    journal: &Path,
    reconcile: bool,
) -> anyhow::Result<Pass> {
    let test_db = TestDatabase::mysql();
    let mut config = WriterConfig::new(test_db.url().clone(), journal.to_owned(), flow.config);
    config.batch_commands_max = batch;
    config.batch_rows_max = usize::MAX;
    config.lag_log_every = Duration::from_secs(3600);
    let pass = match kind {
        Kind::Ceiling => ceiling_pass(&config, flow)?,
        Kind::Live => {
            let (writer, mut handle) = Writer::start(config, 0)?;
            let started = Instant::now();
            offer_paced(&mut handle, flow, None);
            finish(writer, flow, started)?
        }
        Kind::CatchUp => {
            let started = Instant::now();
            let (writer, handle) = Writer::start(config, flow.seq_last())?;
            let pass = finish(writer, flow, started)?;
            drop(handle);
            pass
        }
    };
    check_database(&test_db, flow, journal, reconcile)?;
    Ok(pass)
}

/// Waits for the writer to commit the last command; the pass ends there.
fn finish(writer: Writer, flow: &Flow, started: Instant) -> anyhow::Result<Pass> {
    ensure!(
        writer.wait_checkpoint(flow.seq_last(), Duration::from_secs(600)),
        "the writer did not finish: {}",
        writer.status()
    );
    let seconds = started.elapsed().as_secs_f64();
    let status = writer.shutdown();
    ensure!(status.retries == 0, "the writer retried: {status}");
    Ok(Pass {
        rows: status.rows_written,
        batches: status.batches_committed,
        seconds,
    })
}

/// Offers every event; waits while the intake is nearly full (never overflows it), or, with a
/// rate, paces commands to it (then it may overflow, as a node would make it).
fn offer_paced(handle: &mut WriterHandle, flow: &Flow, rate: Option<(f64, Instant, Duration)>) {
    let capacity = 1usize << 16;
    for (seq, ts, event, last) in flow.slots() {
        match rate {
            None => {
                while handle.metrics().queued.load(Ordering::Relaxed) + 64 > capacity {
                    std::thread::sleep(Duration::from_micros(50));
                }
            }
            Some((per_s, started, until)) if last => {
                if started.elapsed() > until {
                    return;
                }
                let due = Duration::from_secs_f64(seq as f64 / per_s);
                if let Some(ahead) = due.checked_sub(started.elapsed()) {
                    std::thread::sleep(ahead);
                }
            }
            Some(_) => {}
        }
        handle.offer(seq, ts, event, last);
    }
}

/// The ceiling: batches built in advance (untimed), then only `store::write_batch` timed.
fn ceiling_pass(config: &WriterConfig, flow: &Flow) -> anyhow::Result<Pass> {
    let batches = build_batches(flow, config.batch_commands_max);
    let rows: u64 = batches.iter().map(Batch::row_count).sum();
    block_on(async {
        let db = Database::connect(&config.database_url, &ConnectOptions::default()).await?;
        let mut conn = db.pool().acquire().await?;
        let mut statements = Statements::new(db.backend());
        let mut checkpoint = Checkpoint::default();
        let started = Instant::now();
        for batch in &batches {
            checkpoint =
                store::write_batch(&mut conn, &mut statements, batch, 0, checkpoint).await?;
        }
        let seconds = started.elapsed().as_secs_f64();
        drop(conn);
        db.close().await;
        Ok(Pass {
            rows,
            batches: batches.len() as u64,
            seconds,
        })
    })
}

/// The flow's events folded into batches of `batch` commands, as the writer's builder does.
fn build_batches(flow: &Flow, batch: usize) -> Vec<Batch> {
    let mut builder = BatchBuilder::default();
    let mut out = Vec::new();
    for (envelope, events) in flow.envelopes.iter().zip(&flow.events) {
        for e in events.iter().filter(|e| intake::is_stored(e)) {
            builder.add_event(envelope.seq, envelope.ts, e);
        }
        builder.end_command(envelope.seq, envelope.ts);
        if builder.batch().commands as usize >= batch {
            out.push(builder.take());
        }
    }
    if !builder.batch().is_empty() {
        out.push(builder.take());
    }
    out
}

fn expected_row_writes_per_command(flow: &Flow, batch: usize) -> f64 {
    let rows: u64 = build_batches(flow, batch)
        .iter()
        .map(Batch::row_count)
        .sum();
    rows as f64 / flow.seq_last() as f64
}

/// Same rows as the flow, same checkpoint; optionally reconciled with the engine.
fn check_database(
    test_db: &TestDatabase,
    flow: &Flow,
    journal: &Path,
    reconcile: bool,
) -> anyhow::Result<()> {
    block_on(async {
        let db = Database::connect(test_db.url(), &ConnectOptions::default()).await?;
        ensure!(db.checkpoint().await?.seq == flow.seq_last(), "checkpoint");
        let counts = db.row_counts().await?;
        ensure!(
            counts == flow.expected_rows(),
            "rows {counts:?} != {:?}",
            flow.expected_rows()
        );
        if reconcile {
            let report = kuku_persistence::reconcile(&db, journal, &flow.config).await?;
            if !report.is_clean() {
                bail!("the database does not reconcile:\n{report}");
            }
        }
        db.close().await;
        Ok(())
    })
}

struct Lag {
    growth_cmds_per_s: f64,
    lag_max_seq: u64,
    overflows: u64,
}

/// Offers the flow at `rate` commands/s for `duration` and samples the lag.
fn lag_pass(flow: &Flow, journal: &Path, rate: f64, duration: Duration) -> anyhow::Result<Lag> {
    let test_db = TestDatabase::mysql();
    let config = WriterConfig::new(test_db.url().clone(), journal.to_owned(), flow.config);
    let (writer, mut handle) = Writer::start(config, 0)?;
    let metrics = std::sync::Arc::clone(writer.metrics());
    let started = Instant::now();
    let samples = std::thread::scope(|s| {
        let sampler = s.spawn(|| {
            let mut samples = Vec::new();
            while started.elapsed() < duration {
                std::thread::sleep(Duration::from_millis(100));
                samples.push((started.elapsed().as_secs_f64(), metrics.lag_seq()));
            }
            samples
        });
        offer_paced(&mut handle, flow, Some((rate, started, duration)));
        sampler.join().unwrap_or_default()
    });
    let overflows = metrics.overflows.load(Ordering::Relaxed);
    // Let it finish (untimed) so the database ends complete.
    let seen = metrics.seen_seq.load(Ordering::Acquire);
    ensure!(
        writer.wait_checkpoint(seen, Duration::from_secs(600)),
        "lag pass did not finish"
    );
    drop(handle);
    writer.shutdown();
    // Growth: least-squares slope of lag over the second half (past the start-up transient).
    let tail: Vec<(f64, f64)> = samples
        .iter()
        .skip(samples.len() / 2)
        .map(|(t, l)| (*t, *l as f64))
        .collect();
    let slope = if tail.len() >= 2 {
        let n = tail.len() as f64;
        let (mt, ml) = (
            tail.iter().map(|p| p.0).sum::<f64>() / n,
            tail.iter().map(|p| p.1).sum::<f64>() / n,
        );
        let cov: f64 = tail.iter().map(|(t, l)| (t - mt) * (l - ml)).sum();
        let var: f64 = tail.iter().map(|(t, _)| (t - mt) * (t - mt)).sum();
        if var > 0.0 { cov / var } else { 0.0 }
    } else {
        0.0
    };
    Ok(Lag {
        growth_cmds_per_s: slope.max(0.0),
        lag_max_seq: samples.iter().map(|s| s.1).max().unwrap_or(0),
        overflows,
    })
}

/// The order mix of the flow, as text.
fn mix(flow: &Flow) -> String {
    let mut counts = std::collections::BTreeMap::<&str, u64>::new();
    for e in &flow.envelopes {
        let kind = match &e.command {
            kuku_engine::Command::PlaceOrder(o) => match (o.order_type, o.tif) {
                (kuku_engine::OrderType::Market, _) => "market",
                (_, kuku_engine::TimeInForce::Day) => "limit DAY",
                _ => "limit IOC/FOK",
            },
            kuku_engine::Command::CancelOrder { .. } => "cancel",
            kuku_engine::Command::CancelAll { .. } => "cancel-all",
            kuku_engine::Command::ModifyOrder { .. } => "modify",
            kuku_engine::Command::QuoteUpdate { .. } => "quote",
            kuku_engine::Command::Deposit { .. }
            | kuku_engine::Command::Withdraw { .. }
            | kuku_engine::Command::Adjust { .. }
            | kuku_engine::Command::ConfirmTransaction { .. }
            | kuku_engine::Command::FailTransaction { .. }
            | kuku_engine::Command::ReverseTransaction { .. } => "money",
            _ => "other",
        };
        *counts.entry(kind).or_default() += 1;
    }
    let total = flow.envelopes.len().max(1) as f64;
    let trades: usize = flow
        .events
        .iter()
        .flatten()
        .filter(|e| matches!(e, kuku_engine::Event::Trade { .. }))
        .count();
    let parts: Vec<String> = counts
        .iter()
        .map(|(k, n)| format!("{k} {:.0}%", *n as f64 * 100.0 / total))
        .collect();
    format!(
        "{}; {:.2} trades per command; 8 accounts, 2 symbols",
        parts.join(", "),
        trades as f64 / total
    )
}

fn mariadb_settings() -> anyhow::Result<Vec<(String, String)>> {
    let test_db = TestDatabase::mysql();
    block_on(async {
        let db = Database::connect(test_db.url(), &ConnectOptions::default()).await?;
        let mut out = Vec::new();
        for name in [
            "version",
            "innodb_flush_log_at_trx_commit",
            "sync_binlog",
            "log_bin",
            "innodb_buffer_pool_size",
            "innodb_log_file_size",
            "innodb_doublewrite",
        ] {
            let sql = format!("SELECT CAST(@@{name} AS CHAR) AS v");
            let row = sqlx::query(sqlx::AssertSqlSafe(sql))
                .fetch_one(db.pool())
                .await
                .with_context(|| format!("reading @@{name}"))?;
            out.push((name.to_owned(), row.try_get::<String, _>("v")?));
        }
        db.close().await;
        Ok(out)
    })
}

fn settings_json(settings: &[(String, String)]) -> Value {
    Value::Object(
        settings
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect(),
    )
}

fn median(samples: &[f64]) -> f64 {
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    match sorted.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

/// `median (min..max)`, as text.
fn range(samples: &[f64]) -> String {
    let min = samples.iter().copied().fold(f64::INFINITY, f64::min);
    let max = samples.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if median(samples) < 10.0 {
        format!("{:.2} ({min:.2}..{max:.2})", median(samples))
    } else {
        format!("{:.0} ({min:.0}..{max:.0})", median(samples))
    }
}

fn spread(samples: &[f64]) -> Value {
    json!({
        "median": median(samples),
        "min": samples.iter().copied().fold(f64::INFINITY, f64::min),
        "max": samples.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        "runs": samples.len(),
    })
}
