//! `kuku-bench pipeline`: the whole LMAX pipeline in-process (a producer thread -> input ring
//! -> journaller (a real journal on disk) -> processor -> output ring -> the read-model
//! consumer and a completion consumer) against `Engine::apply` alone on the same flow, in the
//! same run.
//!
//! - **Throughput**: one producer publishes every command as fast as the ring takes them
//!   (`Busy` is retried); the clock stops when the completion consumer has seen the last
//!   event of the last command. One timer per pass.
//! - **Latency**: open loop at a fixed offered rate. Command `i` is due at `t0 + i / rate`;
//!   its latency is from that intended time to the moment its last event reaches the
//!   completion consumer (coordinated-omission corrected: a stalled pipeline delays the
//!   sends, and the delay is counted). The command's index travels as its `Origin`.
//! - **Ratio**: every pipeline pass is paired with a direct-apply pass run just before it, and
//!   a configuration's "x direct" is the median over its passes of pipeline / paired direct.
//!   This host's speed drifts by tens of percent over seconds (other guests): a ratio of two
//!   medians taken minutes apart measured that drift as much as the pipeline.
//! - **Same work**: after each pass the journal is recovered and its state hash (timestamps
//!   zeroed: the pipeline stamps wall-clock time) must equal the direct run's; a pass that
//!   differs is reported and not comparable.
//!
//! Configurations: processor wait strategy (busy-spin pinned to core 1, backoff, yield) x
//! durability (`none`, `every-batch`, with its average batch size).
//!
//! Each throughput pass also prints the CPU time per command of every pipeline thread (from
//! `/proc/self/task/*/stat`), the processor's kernel share of it and its minor page faults per
//! 1,000 commands: on two shared cores a wall-clock ratio alone does not say which thread is
//! the bottleneck.
//!
//! **Known limitations**: one producer thread (the gateway is one mio thread too); on this
//! 2-core machine the producer, journaller and consumers share the core the processor does
//! not spin on.

use crate::flow::{Flow, FlowConfig};
use crate::kuku::{engine_config, flow_commands, set_up_commands};
use anyhow::{Context, bail};
use hdrhistogram::Histogram;
use kuku_engine::readmodel::ReadModel;
use kuku_engine::{Command, Engine, EventSink, LadderPolicy, NullSink};
use kuku_journal::{Durability, JournalConfig};
use kuku_server::node::JournalLog;
use kuku_server::pipeline::fold::{self, ReadModelFolder};
use kuku_server::pipeline::wait::Wait;
use kuku_server::pipeline::{self, Busy, Layout, Origin, OutputSlot, Outputs, PipelineConfig};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, clap::Args)]
pub struct PipelineBenchArgs {
    /// Steady-state commands per pass.
    #[arg(long)]
    pub ops: Option<u64>,
    /// Resting orders built by the warm-up.
    #[arg(long)]
    pub depth: Option<u64>,
    /// Passes per configuration (interleaved).
    #[arg(long)]
    pub runs: Option<usize>,
    /// Offered rate of the latency pass, commands/s.
    #[arg(long, default_value_t = 200_000)]
    pub rate: u64,
    /// Where journals go (a temporary directory under it); default: the system temp dir.
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Only the configurations whose name contains this.
    #[arg(long)]
    pub only: Option<String>,
    /// Skip the latency pass.
    #[arg(long)]
    pub no_latency: bool,
    /// Tiny sizes (CI smoke).
    #[arg(long)]
    pub smoke: bool,
    /// Print one JSON object as the last line.
    #[arg(long)]
    pub json: bool,
    /// The output consumer only counts completions (no read model): the pipeline's own cost.
    #[arg(long)]
    pub no_read_model: bool,
    /// Also attach the node's WebSocket feed consumer (its output handler, seeded from the
    /// engine, and its fan-out thread, with no client connected): the core's cost of the feed.
    #[arg(long)]
    pub ws_feed: bool,
    /// Input ring slots (a power of two); default: the node's.
    #[arg(long, default_value_t = PipelineConfig::default().input_ring_size)]
    pub input_ring: usize,
    /// Output ring slots (a power of two); default: the node's.
    #[arg(long, default_value_t = PipelineConfig::default().output_ring_size)]
    pub output_ring: usize,
}

/// One pipeline configuration under test.
#[derive(Clone, Copy, Debug)]
struct Setup {
    name: &'static str,
    /// The processor's wait strategy.
    wait: Wait,
    /// The journaller's and the output consumer's.
    others: Wait,
    core: Option<usize>,
    durability: Durability,
    layout: Layout,
}

const fn setup(
    name: &'static str,
    wait: Wait,
    others: Wait,
    core: Option<usize>,
    durability: Durability,
    layout: Layout,
) -> Setup {
    Setup {
        name,
        wait,
        others,
        core,
        durability,
        layout,
    }
}

use Durability::{EveryBatch, None as NoSync};
use Layout::{Fused, Staged};
use Wait::{Backoff, Block, BusySpin, Yield};

const SETUPS: [Setup; 9] = [
    setup("block_none", Block, Block, None, NoSync, Staged),
    setup("backoff_none", Backoff, Backoff, None, NoSync, Staged),
    setup("yield_none", Yield, Yield, None, NoSync, Staged),
    setup("spin_pinned_none", BusySpin, Block, Some(1), NoSync, Staged),
    setup("fused_block_none", Block, Block, None, NoSync, Fused),
    setup("fused_backoff_none", Backoff, Backoff, None, NoSync, Fused),
    setup(
        "fused_spin_pinned_none",
        BusySpin,
        Block,
        Some(1),
        NoSync,
        Fused,
    ),
    setup("block_every_batch", Block, Block, None, EveryBatch, Staged),
    setup(
        "backoff_every_batch",
        Backoff,
        Backoff,
        None,
        EveryBatch,
        Staged,
    ),
];

/// Smoke runs (tests, CI) never spin or pin (docs/architecture.md §10).
const SMOKE_SETUPS: [Setup; 3] = [
    setup("block_none", Block, Block, None, NoSync, Staged),
    setup("fused_block_none", Block, Block, None, NoSync, Fused),
    setup("block_every_batch", Block, Block, None, EveryBatch, Staged),
];

struct Prepared {
    config: kuku_engine::EngineConfig,
    set_up: Vec<Command>,
    commands: Vec<Command>,
    direct_hash: u64,
    /// Input and output ring slots.
    rings: (usize, usize),
    /// Run the output consumer without the read model.
    no_read_model: bool,
    /// Attach the WebSocket feed consumer beside the read model.
    ws_feed: bool,
}

pub fn run(args: &PipelineBenchArgs) -> anyhow::Result<Value> {
    let (ops, depth, runs) = if args.smoke {
        (5_000, 1_000, 1)
    } else {
        (
            args.ops.unwrap_or(1_000_000),
            args.depth.unwrap_or(100_000),
            args.runs.unwrap_or(3),
        )
    };
    let all: &[Setup] = if args.smoke { &SMOKE_SETUPS } else { &SETUPS };
    let setups: Vec<Setup> = all
        .iter()
        .filter(|s| args.only.as_deref().is_none_or(|o| s.name.contains(o)))
        .copied()
        .collect();
    if setups.is_empty() {
        let names: Vec<&str> = all.iter().map(|s| s.name).collect();
        bail!(
            "--only {:?} matches no configuration; the configurations are: {}",
            args.only.as_deref().unwrap_or(""),
            names.join(", ")
        );
    }
    let setups = &setups[..];
    let flow = Flow::generate(&FlowConfig {
        depth_orders: depth,
        ops_steady: ops,
        ..FlowConfig::default()
    })
    .context("invalid flow")?;
    let config = engine_config(&flow, true, LadderPolicy::Auto);
    let set_up = set_up_commands(&flow, true);
    let commands = flow_commands(&flow, 1);
    let mut prepared = Prepared {
        config,
        set_up,
        commands,
        direct_hash: 0,
        rings: (args.input_ring, args.output_ring),
        no_read_model: args.no_read_model,
        ws_feed: args.ws_feed,
    };
    let base = args
        .dir
        .clone()
        .unwrap_or_else(std::env::temp_dir)
        .join(format!("kuku-pipeline-bench-{}", std::process::id()));
    eprintln!(
        "pipeline bench: {} commands per pass ({} set-up), depth {depth}, {runs} runs",
        prepared.commands.len(),
        prepared.set_up.len()
    );

    let fold = read_model_fold(&prepared);
    eprintln!("  read-model fold alone: {fold:.0} commands/s");
    let mut direct = Vec::new();
    let mut through: Vec<Vec<f64>> = vec![Vec::new(); setups.len()];
    let mut ratios: Vec<Vec<f64>> = vec![Vec::new(); setups.len()];
    let mut batches: Vec<Vec<f64>> = vec![Vec::new(); setups.len()];
    let mut agree = vec![true; setups.len()];
    for round in 0..runs {
        let hash = direct_apply_diagnostics(&prepared);
        journaled_apply(&prepared, &base.join(format!("r{round}-journaled")))?;
        prepared.direct_hash = hash;
        for (i, setup) in setups.iter().enumerate() {
            // Each pass is paired with a direct pass just before it: on a shared host whose
            // speed drifts over seconds, the ratio of the two is what compares.
            let (rate, hash) = direct_apply(&prepared);
            if hash != prepared.direct_hash {
                bail!(
                    "direct apply is not deterministic: {hash:#x} != {:#x}",
                    prepared.direct_hash
                );
            }
            direct.push(rate);
            let dir = base.join(format!("r{round}-{}", setup.name));
            let pass = throughput_pass(&prepared, setup, &dir)?;
            through[i].push(pass.ops_per_s);
            ratios[i].push(pass.ops_per_s / rate);
            batches[i].push(pass.batch_avg);
            agree[i] &= pass.state_hash == prepared.direct_hash;
            let _ = std::fs::remove_dir_all(&dir);
            let c = pass.cpu;
            eprintln!(
                "  round {round} {:<24} {:>12.0} ops/s  {:.3}x its direct pass ({rate:.0}) \
                 (batch avg {:.1}; CPU ns/cmd: processor {:.0} (sys {:.0}, {:.1} faults/1k), \
                 journaller {:.0}, consumer {:.0}, producer {:.0})",
                setup.name,
                pass.ops_per_s,
                pass.ops_per_s / rate,
                pass.batch_avg,
                c.processor,
                c.processor_sys,
                c.processor_faults_per_k,
                c.journal,
                c.consumer,
                c.producer
            );
        }
    }

    let mut latencies = Vec::new();
    for setup in setups {
        if args.no_latency {
            latencies.push(Histogram::<u64>::new_with_bounds(1, 600_000_000_000, 3)?);
            continue;
        }
        let dir = base.join(format!("lat-{}", setup.name));
        let h = latency_pass(&prepared, setup, &dir, args.rate)?;
        let _ = std::fs::remove_dir_all(&dir);
        latencies.push(h);
    }
    let _ = std::fs::remove_dir_all(&base);
    report(
        &prepared, setups, &direct, &through, &ratios, &batches, &agree, &latencies, fold, args,
    )
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    s.get(s.len() / 2).copied().unwrap_or(0.0)
}

/// `Engine::apply` alone on the same commands: throughput and the final state hash.
fn direct_apply(p: &Prepared) -> (f64, u64) {
    let mut engine = Engine::new(p.config);
    let mut seq = 0;
    for c in &p.set_up {
        seq += 1;
        engine.apply_command(seq, seq, c, &mut NullSink);
    }
    let mut sink = Counter(0);
    let start = Instant::now();
    for c in &p.commands {
        seq += 1;
        engine.apply_command(seq, seq, c, &mut sink);
    }
    let elapsed = start.elapsed().as_secs_f64();
    std::hint::black_box(sink.0);
    (p.commands.len() as f64 / elapsed, timeless_hash(&engine))
}

/// A breakdown of the processor's share, printed once per round: direct apply with its
/// events copied into a ring-sized array (the processor's copy into the output ring).
/// Returns the direct run's state hash.
fn direct_apply_diagnostics(p: &Prepared) -> u64 {
    let (rate, hash) = direct_apply(p);
    let mut engine = Engine::new(p.config);
    let mut seq = 0;
    for c in &p.set_up {
        seq += 1;
        engine.apply_command(seq, seq, c, &mut NullSink);
    }
    let mut ring = CopySink {
        slots: vec![(0u64, None); 1 << 14],
        at: 0,
    };
    let start = Instant::now();
    for c in &p.commands {
        seq += 1;
        engine.apply_command(seq, seq, c, &mut ring);
    }
    let elapsed = start.elapsed().as_secs_f64();
    std::hint::black_box(&ring.slots);
    eprintln!(
        "  direct apply: {rate:.0} ops/s; its events copied into a 16Ki-slot array: {:.0} ops/s",
        p.commands.len() as f64 / elapsed
    );
    hash
}

/// A breakdown printed beside direct apply: the fused processor's work without its threads
/// (each command appended to a real journal, `durability none`, then applied, on one thread).
fn journaled_apply(p: &Prepared, dir: &std::path::Path) -> anyhow::Result<()> {
    use kuku_server::pipeline::CommandLog;
    std::fs::create_dir_all(dir)?;
    let journal_config = JournalConfig {
        segment_bytes: JournalConfig::SEGMENT_BYTES_DEFAULT,
        durability: Durability::None,
        ..JournalConfig::default()
    };
    let (journal, mut engine, _, _) =
        kuku_journal::state::open_journal_and_engine(dir, journal_config, &p.config, 0)?;
    let mut log = JournalLog::new(journal);
    let mut seq = 0;
    for c in &p.set_up {
        seq += 1;
        log.append(seq, seq, c)?;
        engine.apply_command(seq, seq, c, &mut NullSink);
    }
    let mut sink = Counter(0);
    let start = Instant::now();
    for c in &p.commands {
        seq += 1;
        log.append(seq, seq, c)?;
        engine.apply_command(seq, seq, c, &mut sink);
    }
    log.commit()?;
    let elapsed = start.elapsed().as_secs_f64();
    drop(log);
    let _ = std::fs::remove_dir_all(dir);
    eprintln!(
        "  direct apply, each command journaled first (one thread): {:.0} ops/s",
        p.commands.len() as f64 / elapsed
    );
    Ok(())
}

/// The processor's own share of publishing (copying each event into a ring-sized array),
/// without the threads: a breakdown printed beside direct apply.
struct CopySink {
    slots: Vec<(u64, Option<kuku_engine::Event>)>,
    at: usize,
}

impl EventSink for CopySink {
    #[inline]
    fn emit(&mut self, event: &kuku_engine::Event) {
        let i = self.at & (self.slots.len() - 1);
        self.slots[i] = (self.at as u64, Some(*event));
        self.at += 1;
    }
}

/// The state hash with every timestamp zeroed: the pipeline stamps commands from the wall
/// clock while the direct run uses its own counter, and no command of the flow depends on
/// time, so equal hashes mean the same state.
pub fn timeless_hash(engine: &Engine) -> u64 {
    let mut s = engine.snapshot();
    s.now_ts = 0;
    for o in s.orders.iter_mut() {
        o.ts_accepted = 0;
    }
    for t in s.open_txs.iter_mut().chain(s.closed_txs.iter_mut()) {
        t.created_ts = 0;
    }
    kuku_engine::hash::stable_hash(&s)
}

/// The read-model consumer's fold alone ([`ReadModelFolder`], as in the pipeline), on the
/// events of a direct run, in output batches of `FOLD_BATCH` events (a breakdown of the
/// consumer's share): commands per second.
fn read_model_fold(p: &Prepared) -> f64 {
    const FOLD_BATCH: usize = 1024;
    let mut engine = Engine::new(p.config);
    let mut seq = 0;
    let mut set_up_events = Vec::new();
    for c in &p.set_up {
        seq += 1;
        engine.apply_command(seq, seq, c, &mut set_up_events);
    }
    let mut slots: Vec<OutputSlot> = Vec::with_capacity(p.commands.len() * 6);
    let mut buf = Vec::new();
    for c in &p.commands {
        seq += 1;
        buf.clear();
        engine.apply_command(seq, seq, c, &mut buf);
        let n = buf.len();
        slots.extend(buf.iter().enumerate().map(|(i, e)| OutputSlot {
            seq,
            ts: seq,
            origin: Origin(1),
            event: *e,
            last: i + 1 == n,
        }));
    }
    {
        let mut counts: std::collections::BTreeMap<String, usize> = Default::default();
        for slot in &slots {
            let name = format!("{:?}", slot.event);
            let name = name.split([' ', '{', '(']).next().unwrap_or("").to_string();
            *counts.entry(name).or_default() += 1;
        }
        let per_cmd = |n: usize| n as f64 / p.commands.len() as f64;
        eprintln!("  events per command: {:.2}", per_cmd(slots.len()));
        for (k, v) in counts {
            eprintln!("    {k:<24} {:.3}", per_cmd(v));
        }
    }
    let mut rm = ReadModel::default();
    for (i, e) in set_up_events.iter().enumerate() {
        rm.apply(i as u64 + 1, 0, e);
    }
    let model = fold::share(rm);
    let mut folder = ReadModelFolder::new(Arc::clone(&model));
    let start = Instant::now();
    for (i, slot) in slots.iter().enumerate() {
        folder.fold(slot, (i + 1) % FOLD_BATCH == 0 || i + 1 == slots.len());
    }
    let elapsed = start.elapsed().as_secs_f64();
    std::hint::black_box(model.read().last_seq);
    p.commands.len() as f64 / elapsed
}

struct Counter(u64);

impl EventSink for Counter {
    #[inline]
    fn emit(&mut self, _event: &kuku_engine::Event) {
        self.0 += 1;
    }
}

struct Pass {
    ops_per_s: f64,
    batch_avg: f64,
    state_hash: u64,
    /// CPU nanoseconds per command of each pipeline thread during the timed part.
    cpu: ThreadCpu,
}

/// CPU time per command of the pipeline's threads (a breakdown that wall-clock throughput on
/// a shared machine blurs): processor, journaller (staged), output consumer, producer.
#[derive(Clone, Copy, Debug, Default)]
struct ThreadCpu {
    processor: f64,
    /// Of `processor`, the part spent in the kernel (page faults on the journal's mapping in
    /// the fused layouts, wake-ups).
    processor_sys: f64,
    /// Minor page faults of the processor thread per 1,000 commands.
    processor_faults_per_k: f64,
    journal: f64,
    consumer: f64,
    producer: f64,
}

/// One thread's counters from `/proc/self/task/*/stat`.
#[derive(Clone, Debug)]
struct TaskStat {
    name: String,
    /// User + system CPU time, in clock ticks.
    ticks: u64,
    /// System CPU time, in clock ticks.
    sys_ticks: u64,
    minor_faults: u64,
}

/// CPU time and page faults of this process's threads by name (Linux `/proc/self/task/*/stat`;
/// empty elsewhere).
fn thread_ticks() -> Vec<TaskStat> {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return Vec::new();
    };
    // The calling thread is the producer: found by its id (its stat line changes as it runs).
    // SAFETY: gettid has no preconditions.
    let own = unsafe { libc::gettid() }.to_string();
    tasks
        .flatten()
        .filter_map(|t| {
            let stat = std::fs::read_to_string(t.path().join("stat")).ok()?;
            Some((t.file_name() == own.as_str(), stat))
        })
        .filter_map(|(is_own, stat)| {
            let open = stat.find('(')?;
            let close = stat.rfind(')')?;
            let name = if is_own {
                "producer".to_string()
            } else {
                stat[open + 1..close].to_string()
            };
            let fields: Vec<&str> = stat[close + 2..].split(' ').collect();
            // Fields 10, 14 and 15 of stat (minflt, utime, stime) are 7, 11 and 12 after the
            // name.
            let field = |i: usize| fields.get(i)?.parse::<u64>().ok();
            let sys_ticks = field(12)?;
            Some(TaskStat {
                name,
                ticks: field(11)? + sys_ticks,
                sys_ticks,
                minor_faults: field(7)?,
            })
        })
        .collect()
}

impl ThreadCpu {
    fn between(before: &[TaskStat], after: &[TaskStat], commands: usize) -> ThreadCpu {
        // SAFETY: sysconf has no preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
        let commands = commands.max(1) as f64;
        let delta = |name: &str, counter: fn(&TaskStat) -> u64| -> f64 {
            let sum =
                |v: &[TaskStat]| -> u64 { v.iter().filter(|t| t.name == name).map(counter).sum() };
            sum(after).saturating_sub(sum(before)) as f64
        };
        let ns_per_cmd =
            |name: &str, ticks: fn(&TaskStat) -> u64| delta(name, ticks) / hz * 1e9 / commands;
        let cpu = |t: &TaskStat| t.ticks;
        ThreadCpu {
            processor: ns_per_cmd("kuku-processor", cpu),
            processor_sys: ns_per_cmd("kuku-processor", |t| t.sys_ticks),
            processor_faults_per_k: delta("kuku-processor", |t| t.minor_faults) * 1e3 / commands,
            journal: ns_per_cmd("kuku-journal", cpu),
            consumer: ns_per_cmd("bench-readmodel", cpu),
            producer: ns_per_cmd("producer", cpu),
        }
    }
}

/// A running pipeline on a fresh journal with the read-model consumer, which also calls
/// `on_slot(Some(origin) on a command's last event, else None, end_of_batch)` per event.
fn start(
    p: &Prepared,
    setup: &Setup,
    dir: &std::path::Path,
    on_slot: impl FnMut(Option<Origin>, bool) + Send + 'static,
) -> anyhow::Result<pipeline::Pipeline> {
    std::fs::create_dir_all(dir)?;
    let journal_config = JournalConfig {
        segment_bytes: JournalConfig::SEGMENT_BYTES_DEFAULT,
        durability: setup.durability,
        ..JournalConfig::default()
    };
    let (journal, engine, _, _) =
        kuku_journal::state::open_journal_and_engine(dir, journal_config, &p.config, 0)?;
    // One consumer thread keeps the read model and reports completions (as the node's
    // responder thread does): fewer threads than cores matters on two cores.
    let mut folder = ReadModelFolder::new(fold::share(ReadModel::from_engine(&engine)));
    let mut on_slot = on_slot;
    let skip_fold = p.no_read_model;
    let consumer = Box::new(move |slot: &OutputSlot, _, end_of_batch: bool| {
        if !skip_fold {
            folder.fold(slot, end_of_batch);
        }
        on_slot(slot.last.then_some(slot.origin), end_of_batch);
    });
    let mut handlers: Vec<(&'static str, pipeline::OutputHandler)> =
        vec![("bench-readmodel", consumer)];
    if p.ws_feed {
        handlers.push(("bench-ws-feed", ws_feed_consumer(&engine)?));
    }
    let config = PipelineConfig {
        input_ring_size: p.rings.0,
        output_ring_size: p.rings.1,
        processor_wait: setup.wait,
        journal_wait: setup.others,
        consumer_wait: setup.others,
        processor_core: setup.core,
        layout: setup.layout,
        ..PipelineConfig::default()
    };
    Ok(pipeline::start(
        config,
        engine,
        Box::new(JournalLog::new(journal)),
        Outputs {
            handlers,
            pollers: 0,
            notifiers: vec![],
        },
    ))
}

/// The node's WebSocket feed consumer as `HttpDoor` attaches it: the output handler seeded
/// from `engine`, and the fan-out thread behind its bounded queue. The thread ends when the
/// handler (the queue's only sender) is dropped with the pipeline.
fn ws_feed_consumer(engine: &Engine) -> anyhow::Result<pipeline::OutputHandler> {
    use kuku_server::http::ws::{WsSettings, feed, hub::Hub};
    let settings = WsSettings::default();
    let (tx, rx) = std::sync::mpsc::sync_channel(settings.feed_queue_max);
    let hub = Hub::new(settings);
    let seeded = feed::Seeded::default();
    feed::seed(Arc::clone(&seeded), Arc::clone(&hub))(engine);
    let fanout = Arc::clone(&hub);
    std::thread::Builder::new()
        .name("bench-ws-fanout".into())
        .spawn(move || fanout.run(rx))?;
    Ok(feed::handler(seeded, feed::FeedSender::new(tx, hub)))
}

/// Publishes; while the ring is full, sleeps `FULL_RING_PAUSE` (as a gateway session would
/// answer Busy and read on). Yielding instead, the producer took about 40% of the machine's
/// CPU from the pipeline threads it waits for (perf, 2026-12-03): on two cores, a waiting
/// thread must not compete with the threads it waits for.
fn submit(s: &mut pipeline::Submitter, origin: Origin, c: &Command) {
    while let Err(Busy) = s.try_submit(origin, c.clone()) {
        std::thread::sleep(FULL_RING_PAUSE);
    }
}

/// How long a producer facing a full ring pauses: the processor drains about 500 commands
/// in it at 2.5M/s, so the pause (a futex and a timer, a few µs of CPU) costs the producer
/// ~10 ns per command, and even an 8Ki ring still holds thousands of commands when it wakes.
/// At 50 µs the producer's wake-ups cost it 91-100 ns per command against 64-73 at 200 µs
/// (3 interleaved pairs, 2026-12-04, docs/benchmarks.md §3).
const FULL_RING_PAUSE: Duration = Duration::from_micros(200);

/// How often the main thread, every command published, looks for the last completion.
const COMPLETION_POLL: Duration = Duration::from_micros(50);

fn wait_until(count: &AtomicU64, n: u64) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(600);
    while count.load(Ordering::Acquire) < n {
        if Instant::now() > deadline {
            bail!("the pipeline did not complete {n} commands in time");
        }
        std::thread::sleep(COMPLETION_POLL);
    }
    Ok(())
}

fn throughput_pass(p: &Prepared, setup: &Setup, dir: &std::path::Path) -> anyhow::Result<Pass> {
    let done = Arc::new(AtomicU64::new(0));
    let seen = Arc::clone(&done);
    // Completions are counted on the consumer thread and published once per output batch
    // (the clock stops at the batch holding the last command's last event): one shared
    // atomic write per command cost the consumer a cache-line transfer per command.
    let mut completed = 0;
    let pipeline = start(p, setup, dir, move |last, end_of_batch| {
        completed += u64::from(last.is_some());
        if end_of_batch {
            seen.store(completed, Ordering::Release);
        }
    })?;
    let mut s = pipeline.submitter.clone();
    for c in &p.set_up {
        submit(&mut s, Origin::INTERNAL, c);
    }
    wait_until(&done, p.set_up.len() as u64)?;
    let batches_before = pipeline.status.batches.load(Ordering::Relaxed);
    let total = (p.set_up.len() + p.commands.len()) as u64;
    let ticks_before = thread_ticks();
    let start_time = Instant::now();
    for c in &p.commands {
        submit(&mut s, Origin(1), c);
    }
    wait_until(&done, total)?;
    let elapsed = start_time.elapsed().as_secs_f64();
    let cpu = ThreadCpu::between(&ticks_before, &thread_ticks(), p.commands.len());
    let batches = pipeline.status.batches.load(Ordering::Relaxed) - batches_before;
    drop(s);
    drop(pipeline);
    let (engine, _) = kuku_journal::state::recover_engine(dir, &p.config)?;
    Ok(Pass {
        ops_per_s: p.commands.len() as f64 / elapsed,
        batch_avg: p.commands.len() as f64 / batches.max(1) as f64,
        state_hash: timeless_hash(&engine),
        cpu,
    })
}

fn latency_pass(
    p: &Prepared,
    setup: &Setup,
    dir: &std::path::Path,
    rate: u64,
) -> anyhow::Result<Histogram<u64>> {
    let period_ns = 1_000_000_000 / rate.max(1);
    let t0 = Arc::new(AtomicU64::new(0));
    let histogram = Arc::new(Mutex::new(Histogram::<u64>::new_with_bounds(
        1,
        600_000_000_000,
        3,
    )?));
    let done = Arc::new(AtomicU64::new(0));
    let (t0_c, h_c, done_c) = (Arc::clone(&t0), Arc::clone(&histogram), Arc::clone(&done));
    let clock = Instant::now();
    let pipeline = start(p, setup, dir, move |last, _| {
        let Some(origin) = last else {
            return;
        };
        if origin.0 > 0 {
            // origin = index + 1 of a timed command
            let intended = t0_c.load(Ordering::Acquire) + (origin.0 - 1) * period_ns;
            let now = clock.elapsed().as_nanos() as u64;
            if let Ok(mut h) = h_c.lock() {
                h.saturating_record(now.saturating_sub(intended));
            }
        }
        done_c.fetch_add(1, Ordering::Release);
    })?;
    let mut s = pipeline.submitter.clone();
    for c in &p.set_up {
        submit(&mut s, Origin::INTERNAL, c);
    }
    wait_until(&done, p.set_up.len() as u64)?;
    // A bounded latency pass: at most 2 s of offered load.
    let n = p.commands.len().min((rate * 2) as usize);
    t0.store(
        clock.elapsed().as_nanos() as u64 + 1_000_000,
        Ordering::Release,
    );
    let t0_ns = t0.load(Ordering::Acquire);
    // Open loop: at each wake-up, send every command already due (each keeps its intended
    // time, so a late send counts against the pipeline), then sleep until the next is due.
    // The producer never spins: on two cores a spinning producer was preempted for
    // milliseconds by the threads it feeds, and that showed up as latency (2026-12-03).
    kuku_server::pipeline::wait::lower_timer_slack();
    let mut i = 0;
    while i < n {
        let now = clock.elapsed().as_nanos() as u64;
        while i < n && t0_ns + i as u64 * period_ns <= now {
            submit(&mut s, Origin(i as u64 + 1), &p.commands[i]);
            i += 1;
        }
        let due = t0_ns + i as u64 * period_ns;
        let now = clock.elapsed().as_nanos() as u64;
        if i < n && due > now {
            std::thread::sleep(Duration::from_nanos(due - now));
        }
    }
    wait_until(&done, (p.set_up.len() + n) as u64)?;
    drop(s);
    drop(pipeline);
    let h = histogram
        .lock()
        .map_err(|_| anyhow::anyhow!("poisoned"))?
        .clone();
    Ok(h)
}

#[allow(clippy::too_many_arguments)]
fn report(
    p: &Prepared,
    setups: &[Setup],
    direct: &[f64],
    through: &[Vec<f64>],
    ratios: &[Vec<f64>],
    batches: &[Vec<f64>],
    agree: &[bool],
    latencies: &[Histogram<u64>],
    fold: f64,
    args: &PipelineBenchArgs,
) -> anyhow::Result<Value> {
    let direct_median = median(direct);
    println!(
        "pipeline vs direct apply, {} commands per pass",
        p.commands.len()
    );
    println!(
        "{:<26} {:>12} {:>8} {:>9} {:>9} {:>9} {:>9} {:>10}  state",
        "configuration", "ops/s", "x direct", "batch", "p50 us", "p99 us", "p999 us", "max us"
    );
    println!(
        "{:<26} {:>12.0} {:>8.2}",
        "direct_apply", direct_median, 1.0
    );
    let mut configs = Vec::new();
    let mut best: Option<(usize, f64)> = None;
    for (i, s) in setups.iter().enumerate() {
        let ops = median(&through[i]);
        let ratio = median(&ratios[i]);
        let h = &latencies[i];
        let us = |q: f64| h.value_at_quantile(q) as f64 / 1_000.0;
        println!(
            "{:<26} {:>12.0} {:>8.2} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>10.1}  {}",
            s.name,
            ops,
            ratio,
            median(&batches[i]),
            us(0.5),
            us(0.99),
            us(0.999),
            h.max() as f64 / 1_000.0,
            if agree[i] {
                "same hash"
            } else {
                "DIFFERENT HASH"
            }
        );
        if s.durability == Durability::None && agree[i] && best.is_none_or(|(_, b)| ratio > b) {
            best = Some((i, ratio));
        }
        configs.push(json!({
            "name": s.name,
            "processor_wait": format!("{:?}", s.wait),
            "other_waits": format!("{:?}", s.others),
            "processor_core": s.core,
            "durability": s.durability.to_string(),
            "layout": format!("{:?}", s.layout),
            "ops_per_s": ops,
            "ops_per_s_runs": through[i],
            "ratio": ratio,
            "ratio_runs": ratios[i],
            "batch_avg": median(&batches[i]),
            "p50_ns": h.value_at_quantile(0.5),
            "p99_ns": h.value_at_quantile(0.99),
            "p999_ns": h.value_at_quantile(0.999),
            "max_ns": h.max(),
            "latency_samples": h.len(),
            "same_state_hash": agree[i],
        }));
    }
    let (bi, bratio) = best.unwrap_or((0, 0.0));
    let bh = &latencies[bi];
    let summary = json!({
        "ops_per_s": median(&through[bi]),
        "direct_apply_ops_per_s": direct_median,
        "ratio": bratio,
        "ratio_method": "median over passes of (pipeline pass / the direct-apply pass run just before it)",
        "p50_ns": bh.value_at_quantile(0.5),
        "p99_ns": bh.value_at_quantile(0.99),
        "configuration": setups[bi].name,
        "offered_rate": args.rate,
        "commands": p.commands.len(),
        "direct_apply_runs": direct,
        "read_model_fold_cmds_per_s": fold,
        "read_model": !p.no_read_model,
        "input_ring": p.rings.0,
        "output_ring": p.rings.1,
        "configurations": configs,
        "state_hash": format!("{:#018x}", p.direct_hash),
    });
    Ok(summary)
}

/// The smallest run (tests and `cargo test --benches`).
pub fn smoke() -> anyhow::Result<Value> {
    run(&smoke_args())
}

fn smoke_args() -> PipelineBenchArgs {
    PipelineBenchArgs {
        ops: None,
        depth: None,
        runs: None,
        rate: 50_000,
        dir: None,
        only: None,
        no_latency: false,
        smoke: true,
        json: false,
        input_ring: PipelineConfig::default().input_ring_size,
        output_ring: PipelineConfig::default().output_ring_size,
        no_read_model: false,
        // The smoke run covers the WebSocket feed consumer on the ring too.
        ws_feed: true,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn smoke_pipeline_bench_ends_in_the_direct_state() {
        let v = super::smoke().unwrap();
        for c in v["configurations"].as_array().unwrap() {
            assert_eq!(c["same_state_hash"], true, "{c}");
        }
        assert!(v["ops_per_s"].as_f64().unwrap() > 0.0);
    }

    #[test]
    fn an_only_filter_that_matches_nothing_is_a_clear_error() {
        let args = super::PipelineBenchArgs {
            only: Some("no_such_setup".into()),
            ..super::smoke_args()
        };
        let e = super::run(&args).unwrap_err().to_string();
        assert!(
            e.contains("no_such_setup") && e.contains("fused_block"),
            "{e}"
        );
    }
}
