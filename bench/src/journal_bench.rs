//! The journal benchmark behind `kuku-bench journal`: append throughput per
//! durability mode and batch size, read + verify, replay (read + decode + apply) against apply
//! alone, and recovery time with and without a snapshot, each against a baseline measured in the
//! same run (docs/architecture.md §9).
//!
//! Passes, interleaved round by round (`--runs`), each on fresh files in a temporary directory
//! under `--dir` (the file system being measured; its type is printed):
//! - **raw_copy**: per frame, write len/seq/ts, copy the pre-encoded payload and crc32c it into
//!   a file prepared like a segment (fallocate'd, `MAP_SHARED` mapping), no syscall. The floor
//!   for `append none` (which also encodes the command) is 0.5x this.
//! - **append** (`none` and `every-batch`, batches of 1, 16, 256, 1024): `append_command`
//!   (codec straight into the mapping) + `commit()` per batch through the real `Journal`.
//!   every-batch runs at most 2,000 batches per pass (40 with `--smoke`) so batch 1 stays
//!   bounded.
//! - **raw_sync**: raw_copy of 1,024 frames then `msync(MS_SYNC)` of the written range (what
//!   the journal's commit does), in a loop; the floor for every-batch at 1,024 is 0.8x this.
//! - **read+verify**: `JournalReader` over the journal, every frame's CRC/seq/padding checked.
//! - **replay vs apply**: `replay_journal` (open + read + verify + decode + `Engine::apply`)
//!   against `Engine::apply` alone over the same envelopes decoded in advance, both from a
//!   fresh engine; both must end in the generator's state hash. Floor: replay >= 0.8x apply.
//! - **recovery**: a journal of 1M (10M with `--full`) commands with a `TakeSnapshot` at 90%,
//!   snapshot written by `write_snapshot_at`; `recover_engine` with and without snapshots,
//!   state hash checked against the generator's.
//!
//! The command flow is deterministic (a seeded xorshift, no OS randomness): the testkit
//! `Driver` sets up 8 KOSPI symbols and 1,000 funded accounts holding shares, then about 70%
//! PlaceOrder (DAY limits around the touch, some crossing IOC limits and market orders), 15%
//! CancelOrder of recent resting orders, 10% QuoteUpdate, 5% ModifyOrder, with a day roll
//! (EndOfDay, StartOfDay, continuous phase) every 250,000 commands so state stays bounded.
//!
//! **Invariants**: no pass times anything but its loop (engine construction, file creation,
//! generation and checks are outside); replay and apply end in the same state or the run
//! fails; every ratio is taken per round (interleaved) and the median reported.
//!
//! **Known limitations**: recovery is measured with a warm page cache (the files were just
//! written); a cold start adds reading the journal from the device. every-batch numbers depend
//! on the device's flush latency and are noisy on a shared VM: read the spread.

use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, bail, ensure};
use kuku_engine::testkit::{Driver, cmd};
use kuku_engine::{
    AccountId, Amount, Asset, Command, Engine, EngineConfig, Envelope, Event, EventSink,
    ExternalRef, Market, MarketPhase, NullSink, OrderType, Side, SymbolId, TimeInForce,
};
use kuku_journal::codec::{append_command, encode_command_to_vec};
use kuku_journal::state::{RecoverOptions, recover_engine_with};
use kuku_journal::{
    Durability, FRAME_HEADER_BYTES, Journal, JournalConfig, JournalReader, frame_bytes,
    journal_meta, replay_journal, write_config, write_snapshot_at,
};
use serde_json::{Value, json};

/// `kuku-bench journal` flags.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct JournalBenchArgs {
    /// Directory for the temporary journals: put it on the file system to measure
    /// [default: the system temp directory].
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Interleaved rounds of every pass [default: 5; 2 with --smoke].
    #[arg(long)]
    pub runs: Option<usize>,
    /// Commands in the workload (append, read, replay passes) [default: 1000000; 20000 with
    /// --smoke].
    #[arg(long)]
    pub commands: Option<u64>,
    /// Also measure recovery of a 10,000,000-command journal.
    #[arg(long)]
    pub full: bool,
    /// Tiny sizes, for a quick check of every pass (also used by `cargo test`).
    #[arg(long)]
    pub smoke: bool,
    /// Print one JSON object with the results as the last line of output.
    #[arg(long)]
    pub json: bool,
}

/// Symbols and accounts of the workload.
const SYMBOLS: u32 = 8;
const ACCOUNTS: u32 = 1_000;
/// A day roll every this many commands keeps keys and resting orders bounded.
const DAY_COMMANDS: u64 = 250_000;
/// every-batch passes stop after this many batches (batch 1 would otherwise take minutes).
const SYNC_BATCHES_MAX: u64 = 2_000;
const SYNC_BATCHES_MAX_SMOKE: u64 = 40;
const BATCH_SIZES: [u64; 4] = [1, 16, 256, 1_024];
const SEGMENT_BYTES: u64 = JournalConfig::SEGMENT_BYTES_DEFAULT;
/// Recent resting orders cancels and modifies pick from.
const RECENT_ORDERS_MAX: usize = 4_096;

/// The journal benchmark at the smallest sizes: every pass once, for tests.
pub fn smoke() -> anyhow::Result<Value> {
    run(&JournalBenchArgs {
        smoke: true,
        ..JournalBenchArgs::default()
    })
}

/// Runs every pass; prints progress to stderr and the results table to stdout; returns the
/// JSON summary (the caller prints it as the last line with `--json`).
pub fn run(args: &JournalBenchArgs) -> anyhow::Result<Value> {
    let (commands_default, runs_default) = if args.smoke {
        (20_000, 2)
    } else {
        (1_000_000, 5)
    };
    let commands = args.commands.unwrap_or(commands_default).max(1_000);
    let runs = args.runs.unwrap_or(runs_default).max(1);
    let base_dir = args.dir.clone().unwrap_or_else(std::env::temp_dir);
    std::fs::create_dir_all(&base_dir)
        .with_context(|| format!("creating {}", base_dir.display()))?;
    let fs_type = filesystem_type(&base_dir);
    eprintln!(
        "journal bench: {commands} commands, {runs} runs, in {} ({fs_type})",
        base_dir.display()
    );

    let started = Instant::now();
    let workload = Workload::generate(commands)?;
    eprintln!(
        "  workload generated in {:.1} s: {} frames, {:.1} payload bytes/frame",
        started.elapsed().as_secs_f64(),
        workload.envelopes.len(),
        workload.payload_bytes_mean()
    );
    let mut report = Report::default();
    for round in 0..runs {
        eprintln!("  round {}/{runs}", round + 1);
        let sync_batches_max = if args.smoke {
            SYNC_BATCHES_MAX_SMOKE
        } else {
            SYNC_BATCHES_MAX
        };
        append_round(&base_dir, &workload, sync_batches_max, &mut report)?;
        replay_round(&base_dir, &workload, &mut report)?;
    }
    let mut recovery = vec![recovery_pass(
        &base_dir,
        1_000_000 / if args.smoke { 50 } else { 1 },
        runs.min(3),
    )?];
    if args.full && !args.smoke {
        recovery.push(recovery_pass(&base_dir, 10_000_000, 1)?);
    }
    let summary = report.summary(&workload, &recovery, runs, &base_dir, &fs_type);
    print_table(&summary);
    Ok(summary)
}

// ---------------------------------------------------------------------------------------------
// Workload

/// A deterministic command flow (see the module docs) and what it must end in.
struct Workload {
    envelopes: Vec<Envelope>,
    /// Every payload, encoded once (the raw baselines copy these).
    payloads: Vec<Vec<u8>>,
    config: EngineConfig,
    /// The generator engine's state hash after the last envelope.
    final_hash: u64,
}

impl Workload {
    fn generate(commands: u64) -> anyhow::Result<Workload> {
        let mut flow = Flow::new(0x5eed_cafe_f00d_d00d);
        let mut envelopes = flow.take_setup();
        while (envelopes.len() as u64) < commands {
            envelopes.push(flow.next_envelope());
        }
        let payloads = envelopes
            .iter()
            .map(|e| encode_command_to_vec(&e.command))
            .collect();
        flow.driver
            .engine
            .check_invariants()
            .map_err(anyhow::Error::msg)
            .context("the generated flow broke an engine invariant")?;
        Ok(Workload {
            final_hash: flow.driver.engine.state_hash(),
            config: flow.config,
            envelopes,
            payloads,
        })
    }

    fn frames(&self) -> u64 {
        self.envelopes.len() as u64
    }

    fn payload_bytes_mean(&self) -> f64 {
        self.payloads.iter().map(Vec::len).sum::<usize>() as f64 / self.payloads.len() as f64
    }

    fn frame_bytes_total(&self, count: usize) -> u64 {
        self.payloads[..count]
            .iter()
            .map(|p| frame_bytes(p.len()) as u64)
            .sum()
    }
}

/// Generates the flow by applying it to an engine, which tells it the ids of accepted orders
/// (cancels and modifies target recent resting orders) and the expected final state.
struct Flow {
    driver: Driver,
    config: EngineConfig,
    rng: u64,
    accounts: Vec<AccountId>,
    recent: std::collections::VecDeque<(AccountId, u64)>,
    client_order_id: u64,
    since_day_roll: u64,
    trading_day: u32,
}

/// Remembers accepted DAY limit orders of users.
struct Accepted<'a>(&'a mut std::collections::VecDeque<(AccountId, u64)>);

impl EventSink for Accepted<'_> {
    fn emit(&mut self, event: &Event) {
        if let Event::OrderAccepted { order, .. } = event
            && order.tif == TimeInForce::Day
            && !order.account.is_system_market()
        {
            if self.0.len() == RECENT_ORDERS_MAX {
                self.0.pop_front();
            }
            self.0.push_back((order.account, order.order_id.0));
        }
    }
}

impl Flow {
    fn new(seed: u64) -> Flow {
        let config = EngineConfig::default();
        let symbols: Vec<(String, i64)> = (0..SYMBOLS)
            .map(|s| (format!("{:06}", 5_930 + s), 50_000 + 10_000 * i64::from(s)))
            .collect();
        let mut driver = Driver::new(config);
        driver.apply(Command::SetFeeSchedule(kuku_engine::FeeSchedule::KRX_2026));
        for (code, base) in &symbols {
            driver.apply(cmd::register_krx(code, code, Market::Kospi, *base));
        }
        driver.apply(Command::StartOfDay {
            trading_day: 20_260_105,
            base_prices: Vec::new(),
        });
        driver.apply(Command::SetMarketPhase {
            phase: MarketPhase::Continuous,
        });
        let mut accounts = Vec::with_capacity(ACCOUNTS as usize);
        for a in 0..ACCOUNTS {
            let account = driver.funded_account(&format!("acct{a}"), 1_000_000_000_000);
            for s in 1..=SYMBOLS {
                driver.apply(Command::Adjust {
                    account,
                    asset: Asset::Shares(SymbolId(s)),
                    amount: Amount(100_000_000),
                    external_ref: ExternalRef::new(&format!("seed{a}-{s}"))
                        .expect("a short reference"),
                    cost_price: kuku_engine::Price(0),
                });
            }
            accounts.push(account);
        }
        Flow {
            driver,
            config,
            rng: seed | 1,
            accounts,
            recent: std::collections::VecDeque::with_capacity(RECENT_ORDERS_MAX),
            client_order_id: 0,
            since_day_roll: 0,
            trading_day: 20_260_105,
        }
    }

    fn take_setup(&mut self) -> Vec<Envelope> {
        std::mem::take(&mut self.driver.journal)
    }

    fn random(&mut self) -> u64 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.rng
    }

    fn next_command(&mut self) -> Command {
        self.since_day_roll += 1;
        if self.since_day_roll > DAY_COMMANDS {
            return self.day_roll();
        }
        let r = self.random();
        let account = self.accounts[(r % u64::from(ACCOUNTS)) as usize];
        let symbol = 1 + ((r >> 12) % u64::from(SYMBOLS)) as u32;
        let mid = 50_000 + 10_000 * i64::from(symbol - 1);
        let side = if (r >> 20) & 1 == 0 {
            Side::Buy
        } else {
            Side::Sell
        };
        // Passive orders rest 1..=20 ticks behind the touch; crossing ones reach 1..=3 through it.
        let behind = 1 + ((r >> 24) % 20) as i64;
        let through = 1 + ((r >> 24) % 3) as i64;
        let (passive, crossing) = match side {
            Side::Buy => (mid - 100 * behind, mid + 100 * through),
            Side::Sell => (mid + 100 * behind, mid - 100 * through),
        };
        let qty = 1 + ((r >> 32) % 100) as i64;
        self.client_order_id += 1;
        let coid = self.client_order_id;
        match (r >> 48) % 100 {
            0..=59 => cmd::limit(account, coid, symbol, side, passive, qty),
            60..=67 => cmd::order(
                account,
                coid,
                symbol,
                side,
                OrderType::Limit,
                TimeInForce::Ioc,
                crossing,
                qty,
            ),
            68..=69 => cmd::market(account, coid, symbol, side, qty),
            70..=84 => match self.recent.pop_back() {
                Some((owner, order_id)) => cmd::cancel(owner, coid, order_id),
                None => cmd::limit(account, coid, symbol, side, passive, qty),
            },
            85..=94 => {
                let spread = 100 * (1 + ((r >> 8) % 3) as i64);
                cmd::quote(symbol, mid - spread, 100 + qty, mid + spread, 100 + qty)
            }
            _ => match self
                .recent
                .get(((r >> 8) as usize) % self.recent.len().max(1))
            {
                Some(&(owner, order_id)) => cmd::modify(owner, coid, order_id, qty, passive),
                None => cmd::limit(account, coid, symbol, side, passive, qty),
            },
        }
    }

    /// EndOfDay, then StartOfDay and the continuous phase over the next two commands.
    fn day_roll(&mut self) -> Command {
        match self.since_day_roll - DAY_COMMANDS {
            1 => {
                self.recent.clear();
                Command::EndOfDay {
                    trading_day: self.trading_day,
                }
            }
            2 => {
                self.trading_day += 1;
                Command::StartOfDay {
                    trading_day: self.trading_day,
                    base_prices: Vec::new(),
                }
            }
            _ => {
                self.since_day_roll = 0;
                Command::SetMarketPhase {
                    phase: MarketPhase::Continuous,
                }
            }
        }
    }

    /// The next envelope, applied to the generator engine.
    fn next_envelope(&mut self) -> Envelope {
        let command = self.next_command();
        self.driver.seq += 1;
        self.driver.ts += 1_000;
        let envelope = Envelope {
            seq: self.driver.seq,
            ts: self.driver.ts,
            command,
        };
        self.driver
            .engine
            .apply(&envelope, &mut Accepted(&mut self.recent));
        envelope
    }
}

// ---------------------------------------------------------------------------------------------
// Append passes and their raw baselines

#[derive(Default)]
struct Report {
    /// frames/s per round.
    raw_copy: Vec<f64>,
    raw_sync: Vec<f64>,
    /// (durability, batch) -> frames/s per round.
    append: std::collections::BTreeMap<(&'static str, u64), Vec<f64>>,
    append_frames: std::collections::BTreeMap<(&'static str, u64), u64>,
    raw_sync_frames: u64,
    read_verify: Vec<f64>,
    replay: Vec<f64>,
    apply: Vec<f64>,
    /// Per-round ratios (interleaved), the floors' subjects.
    ratio_none_vs_raw_copy: Vec<f64>,
    ratio_every_batch_vs_raw_sync: Vec<f64>,
    ratio_replay_vs_apply: Vec<f64>,
}

fn append_round(
    base: &Path,
    workload: &Workload,
    sync_batches_max: u64,
    report: &mut Report,
) -> anyhow::Result<()> {
    let frames = workload.frames();
    let raw_copy = raw_copy_pass(base, workload, frames)?;
    report.raw_copy.push(raw_copy);
    let mut none_1024 = 0.0;
    for batch in BATCH_SIZES {
        let rate = append_pass(base, workload, Durability::None, batch, frames)?;
        if batch == 1_024 {
            none_1024 = rate;
        }
        report.append.entry(("none", batch)).or_default().push(rate);
        report.append_frames.insert(("none", batch), frames);
    }
    report.ratio_none_vs_raw_copy.push(none_1024 / raw_copy);

    let sync_frames = frames.min(1_024 * sync_batches_max);
    let raw_sync = raw_sync_pass(base, workload, sync_frames)?;
    report.raw_sync.push(raw_sync);
    report.raw_sync_frames = sync_frames;
    let mut every_batch_1024 = 0.0;
    for batch in BATCH_SIZES {
        let count = frames.min(batch * sync_batches_max);
        let rate = append_pass(base, workload, Durability::EveryBatch, batch, count)?;
        if batch == 1_024 {
            every_batch_1024 = rate;
        }
        report
            .append
            .entry(("every-batch", batch))
            .or_default()
            .push(rate);
        report.append_frames.insert(("every-batch", batch), count);
    }
    report
        .ratio_every_batch_vs_raw_sync
        .push(every_batch_1024 / raw_sync);
    Ok(())
}

/// `frames` appends through the real journal, a commit per `batch`; returns frames/s.
fn append_pass(
    base: &Path,
    workload: &Workload,
    durability: Durability,
    batch: u64,
    frames: u64,
) -> anyhow::Result<f64> {
    let dir = tempfile::tempdir_in(base)?;
    let config = JournalConfig {
        durability,
        ..JournalConfig::default()
    };
    let mut journal = Journal::create(dir.path(), config, journal_meta(&workload.config, 1))?;
    let envelopes = &workload.envelopes[..frames as usize];
    let start = Instant::now();
    for chunk in envelopes.chunks(batch as usize) {
        for envelope in chunk {
            append_command(&mut journal, envelope)?;
        }
        journal.commit()?;
    }
    let elapsed = start.elapsed().as_secs_f64();
    ensure!(journal.seq_last() == frames, "every frame appended");
    drop(journal);
    Ok(frames as f64 / elapsed)
}

/// A file prepared like a journal segment: fallocate'd (no zero-writing), mapped shared.
struct RawSegment {
    file: File,
    map: memmap2::MmapMut,
    offset: usize,
}

impl RawSegment {
    fn create(path: &Path, bytes: u64) -> anyhow::Result<RawSegment> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)?;
        // SAFETY: fallocate on a file descriptor we own, with a valid length.
        let rc = unsafe { libc::fallocate(file.as_raw_fd(), 0, 0, bytes as libc::off_t) };
        if rc != 0 {
            file.set_len(bytes)?;
        }
        // SAFETY: the file is private to this benchmark and not truncated while mapped.
        let map = unsafe {
            memmap2::MmapOptions::new()
                .len(bytes as usize)
                .map_mut(&file)?
        };
        Ok(RawSegment {
            file,
            map,
            offset: kuku_journal::SEGMENT_DATA_START,
        })
    }

    /// Writes one frame as `frame::seal` does: header fields, payload, crc32c.
    #[inline]
    fn copy_frame(&mut self, seq: u64, ts: u64, payload: &[u8]) {
        let start = self.offset;
        let frame = &mut self.map[start..start + FRAME_HEADER_BYTES + payload.len()];
        frame[0..4].copy_from_slice(&(payload.len() as u32).to_le_bytes());
        frame[8..16].copy_from_slice(&seq.to_le_bytes());
        frame[16..24].copy_from_slice(&ts.to_le_bytes());
        frame[FRAME_HEADER_BYTES..].copy_from_slice(payload);
        let crc = crc32c::crc32c_append(crc32c::crc32c(&frame[0..4]), &frame[8..]);
        frame[4..8].copy_from_slice(&crc.to_le_bytes());
        self.offset = start + frame_bytes(payload.len());
    }
}

fn raw_segment_bytes(workload: &Workload, frames: u64) -> u64 {
    let data =
        workload.frame_bytes_total(frames as usize) + kuku_journal::SEGMENT_DATA_START as u64;
    data.div_ceil(4_096) * 4_096
}

/// raw_copy: every frame copied and CRC'd into one prepared file; returns frames/s.
fn raw_copy_pass(base: &Path, workload: &Workload, frames: u64) -> anyhow::Result<f64> {
    let dir = tempfile::tempdir_in(base)?;
    let mut segment = RawSegment::create(
        &dir.path().join("raw.seg"),
        raw_segment_bytes(workload, frames),
    )?;
    let start = Instant::now();
    for (envelope, payload) in workload.envelopes[..frames as usize]
        .iter()
        .zip(&workload.payloads)
    {
        segment.copy_frame(envelope.seq, envelope.ts, payload);
    }
    let elapsed = start.elapsed().as_secs_f64();
    std::hint::black_box(&segment.map[segment.offset - 8..segment.offset]);
    Ok(frames as f64 / elapsed)
}

/// raw_sync: 1,024 frames copied, then msync(MS_SYNC) of the written range, in a loop.
fn raw_sync_pass(base: &Path, workload: &Workload, frames: u64) -> anyhow::Result<f64> {
    let dir = tempfile::tempdir_in(base)?;
    let mut segment = RawSegment::create(
        &dir.path().join("raw.seg"),
        raw_segment_bytes(workload, frames),
    )?;
    let envelopes = &workload.envelopes[..frames as usize];
    let start = Instant::now();
    for (chunk, payloads) in envelopes.chunks(1_024).zip(workload.payloads.chunks(1_024)) {
        for (envelope, payload) in chunk.iter().zip(payloads) {
            segment.copy_frame(envelope.seq, envelope.ts, payload);
        }
        segment.map.flush_range(0, segment.offset)?;
    }
    let elapsed = start.elapsed().as_secs_f64();
    drop(segment.file);
    Ok(frames as f64 / elapsed)
}

// ---------------------------------------------------------------------------------------------
// Read, replay and apply

fn replay_round(base: &Path, workload: &Workload, report: &mut Report) -> anyhow::Result<()> {
    let dir = tempfile::tempdir_in(base)?;
    let config = JournalConfig {
        durability: Durability::None,
        ..JournalConfig::default()
    };
    let mut journal = Journal::create(dir.path(), config, journal_meta(&workload.config, 1))?;
    for envelope in &workload.envelopes {
        append_command(&mut journal, envelope)?;
    }
    journal.close()?;
    let frames = workload.frames() as f64;

    let start = Instant::now();
    let reader = JournalReader::open(dir.path())?;
    let (mut count, mut bytes) = (0u64, 0u64);
    for frame in reader.frames_from(1)? {
        let frame = frame?;
        count += 1;
        bytes += frame.payload.len() as u64;
    }
    let elapsed = start.elapsed().as_secs_f64();
    ensure!(count == workload.frames(), "read every frame");
    std::hint::black_box(bytes);
    report.read_verify.push(frames / elapsed);
    drop(reader);

    // Both from a fresh engine, constructed outside the timed loop.
    let mut engine = Engine::new(workload.config);
    let start = Instant::now();
    let reader = JournalReader::open(dir.path())?;
    let outcome = replay_journal(&reader, &mut engine, u64::MAX, &mut NullSink)?;
    let replay_s = start.elapsed().as_secs_f64();
    ensure!(
        outcome.commands == workload.frames(),
        "replayed every frame"
    );
    check_state(&engine, workload.final_hash, "replay")?;
    drop(engine);

    let mut engine = Engine::new(workload.config);
    let start = Instant::now();
    for envelope in &workload.envelopes {
        engine.apply(envelope, &mut NullSink);
    }
    let apply_s = start.elapsed().as_secs_f64();
    check_state(&engine, workload.final_hash, "apply")?;

    report.replay.push(frames / replay_s);
    report.apply.push(frames / apply_s);
    report.ratio_replay_vs_apply.push(apply_s / replay_s);
    Ok(())
}

fn check_state(engine: &Engine, expected: u64, what: &str) -> anyhow::Result<()> {
    let hash = engine.state_hash();
    if hash != expected {
        bail!("{what} ended in state hash {hash:#018x}, the generator in {expected:#018x}");
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Recovery

struct RecoveryResult {
    commands: u64,
    journal_bytes: u64,
    snapshot_seq: u64,
    snapshot_bytes: u64,
    snapshot_write_s: f64,
    /// Seconds per run.
    without_snapshot_s: Vec<f64>,
    with_snapshot_s: Vec<f64>,
}

/// Writes a journal of `commands` commands (TakeSnapshot at 90%), the snapshot, and times
/// recovery with and without it.
fn recovery_pass(base: &Path, commands: u64, runs: usize) -> anyhow::Result<RecoveryResult> {
    eprintln!("  recovery: writing a journal of {commands} commands");
    let dir = tempfile::tempdir_in(base)?;
    let mut flow = Flow::new(0xdead_beef_0bad_f00d);
    let config = JournalConfig {
        durability: Durability::None,
        ..JournalConfig::default()
    };
    let mut journal = Journal::create(dir.path(), config, journal_meta(&flow.config, 1))?;
    write_config(dir.path(), &flow.config)?;
    let mut journal_bytes = 0;
    for envelope in flow.take_setup() {
        journal_bytes += frame_bytes(append_command(&mut journal, &envelope)?) as u64;
    }
    let snapshot_seq = commands * 9 / 10;
    while journal.seq_last() < commands {
        let envelope = if journal.seq_next() == snapshot_seq {
            flow.driver.seq += 1;
            flow.driver.ts += 1_000;
            let envelope = Envelope {
                seq: flow.driver.seq,
                ts: flow.driver.ts,
                command: Command::TakeSnapshot,
            };
            flow.driver.engine.apply(&envelope, &mut NullSink);
            envelope
        } else {
            flow.next_envelope()
        };
        journal_bytes += frame_bytes(append_command(&mut journal, &envelope)?) as u64;
    }
    journal.close()?;
    let expected = flow.driver.engine.state_hash();
    drop(flow);

    let start = Instant::now();
    let written = write_snapshot_at(dir.path(), &EngineConfig::default(), snapshot_seq)?;
    let snapshot_write_s = start.elapsed().as_secs_f64();
    let mut result = RecoveryResult {
        commands,
        journal_bytes,
        snapshot_seq,
        snapshot_bytes: written.payload_bytes,
        snapshot_write_s,
        without_snapshot_s: Vec::new(),
        with_snapshot_s: Vec::new(),
    };
    for _ in 0..runs {
        for use_snapshots in [false, true] {
            let options = RecoverOptions {
                seq_until: None,
                use_snapshots,
            };
            let start = Instant::now();
            let (engine, info) =
                recover_engine_with(dir.path(), &EngineConfig::default(), options)?;
            let elapsed = start.elapsed().as_secs_f64();
            ensure!(
                info.base.map(|b| b.meta.seq) == use_snapshots.then_some(snapshot_seq),
                "recovery started from the expected base"
            );
            check_state(&engine, expected, "recovery")?;
            if use_snapshots {
                result.with_snapshot_s.push(elapsed);
            } else {
                result.without_snapshot_s.push(elapsed);
            }
        }
    }
    Ok(result)
}

// ---------------------------------------------------------------------------------------------
// Reporting

fn median(samples: &[f64]) -> Option<f64> {
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(sorted[n / 2]),
        _ => Some((sorted[n / 2 - 1] + sorted[n / 2]) / 2.0),
    }
}

/// `{median, min, max}` of the samples, or null.
fn spread(samples: &[f64]) -> Value {
    match median(samples) {
        None => Value::Null,
        Some(m) => json!({
            "median": m,
            "min": samples.iter().copied().fold(f64::INFINITY, f64::min),
            "max": samples.iter().copied().fold(f64::NEG_INFINITY, f64::max),
            "runs": samples.len(),
        }),
    }
}

impl Report {
    fn summary(
        &self,
        workload: &Workload,
        recovery: &[RecoveryResult],
        runs: usize,
        dir: &Path,
        fs_type: &str,
    ) -> Value {
        let frame_bytes_mean =
            workload.frame_bytes_total(workload.payloads.len()) as f64 / workload.frames() as f64;
        let mb = |frames_per_s: f64| frames_per_s * frame_bytes_mean / 1e6;
        let append: Vec<Value> = self
            .append
            .iter()
            .map(|((durability, batch), rates)| {
                let m = median(rates).unwrap_or(0.0);
                json!({
                    "durability": durability, "batch": batch,
                    "frames": self.append_frames.get(&(*durability, *batch)),
                    "frames_per_s": spread(rates), "mb_per_s": mb(m),
                })
            })
            .collect();
        let get = |key: (&'static str, u64)| self.append.get(&key).and_then(|r| median(r));
        let recovery_of = |n: u64| recovery.iter().find(|r| r.commands == n);
        let ratios = json!({
            "append_none_vs_raw_copy": median(&self.ratio_none_vs_raw_copy),
            "append_every_batch_vs_raw_sync": median(&self.ratio_every_batch_vs_raw_sync),
            "replay_vs_apply": median(&self.ratio_replay_vs_apply),
        });
        let floor = |ratio: Option<f64>, floor: f64| ratio.map(|r| r >= floor);
        json!({
            "bench": "journal",
            "date": crate::machine::utc_now(),
            "cores": std::thread::available_parallelism().map_or(0, |n| n.get()),
            "dir": dir,
            "filesystem": fs_type,
            "runs": runs,
            "commands": workload.frames(),
            "segment_bytes": SEGMENT_BYTES,
            "payload_bytes_mean": workload.payload_bytes_mean(),
            "frame_bytes_mean": frame_bytes_mean,
            "append_none_frames_per_s": get(("none", 1_024)),
            "raw_copy_frames_per_s": median(&self.raw_copy),
            "append_every_batch_frames_per_s": get(("every-batch", 1_024)),
            "raw_sync_frames_per_s": median(&self.raw_sync),
            "raw_sync_frames": self.raw_sync_frames,
            "read_verify_frames_per_s": median(&self.read_verify),
            "read_verify_mb_per_s": median(&self.read_verify).map(mb),
            "replay_cmds_per_s": median(&self.replay),
            "apply_cmds_per_s": median(&self.apply),
            "recovery_1m_s": recovery_of(1_000_000).and_then(|r| median(&r.without_snapshot_s)),
            "recovery_1m_snapshot_s": recovery_of(1_000_000).and_then(|r| median(&r.with_snapshot_s)),
            "recovery_10m_s": recovery_of(10_000_000).and_then(|r| median(&r.without_snapshot_s)),
            "recovery_10m_snapshot_s": recovery_of(10_000_000).and_then(|r| median(&r.with_snapshot_s)),
            "ratios": ratios,
            "floors": {
                "append_none_vs_raw_copy": 0.5,
                "append_every_batch_vs_raw_sync": 0.8,
                "replay_vs_apply": 0.8,
            },
            "floors_met": {
                "append_none_vs_raw_copy": floor(median(&self.ratio_none_vs_raw_copy), 0.5),
                "append_every_batch_vs_raw_sync": floor(median(&self.ratio_every_batch_vs_raw_sync), 0.8),
                "replay_vs_apply": floor(median(&self.ratio_replay_vs_apply), 0.8),
            },
            "append": append,
            "raw_copy": spread(&self.raw_copy),
            "raw_sync": spread(&self.raw_sync),
            "read_verify": spread(&self.read_verify),
            "replay": spread(&self.replay),
            "apply": spread(&self.apply),
            "recovery": recovery.iter().map(|r| json!({
                "commands": r.commands,
                "journal_bytes": r.journal_bytes,
                "snapshot_seq": r.snapshot_seq,
                "snapshot_payload_bytes": r.snapshot_bytes,
                "snapshot_write_s": r.snapshot_write_s,
                "without_snapshot_s": spread(&r.without_snapshot_s),
                "with_snapshot_s": spread(&r.with_snapshot_s),
            })).collect::<Vec<_>>(),
        })
    }
}

fn print_table(summary: &Value) {
    let num = |v: &Value| v.as_f64().map_or("-".to_owned(), |x| format!("{x:.0}"));
    let ratio = |v: &Value| v.as_f64().map_or("-".to_owned(), |x| format!("{x:.2}"));
    println!(
        "journal bench {} | {} cores | {} on {} | {} commands x {} runs | frame {:.1} B (payload {:.1} B)",
        summary["date"].as_str().unwrap_or("?"),
        summary["cores"],
        summary["filesystem"].as_str().unwrap_or("?"),
        summary["dir"].as_str().unwrap_or("?"),
        summary["commands"],
        summary["runs"],
        summary["frame_bytes_mean"].as_f64().unwrap_or(0.0),
        summary["payload_bytes_mean"].as_f64().unwrap_or(0.0),
    );
    println!("{:<28} {:>14} {:>10}", "pass", "frames/s (med)", "MB/s");
    if let Some(rows) = summary["append"].as_array() {
        for row in rows {
            println!(
                "{:<28} {:>14} {:>10.1}",
                format!(
                    "append {} batch {}",
                    row["durability"].as_str().unwrap_or("?"),
                    row["batch"]
                ),
                num(&row["frames_per_s"]["median"]),
                row["mb_per_s"].as_f64().unwrap_or(0.0)
            );
        }
    }
    for (name, key) in [
        ("raw_copy", "raw_copy_frames_per_s"),
        ("raw_sync (1,024 + msync)", "raw_sync_frames_per_s"),
        ("read+verify", "read_verify_frames_per_s"),
        ("replay (read+decode+apply)", "replay_cmds_per_s"),
        ("apply alone", "apply_cmds_per_s"),
    ] {
        println!("{name:<28} {:>14}", num(&summary[key]));
    }
    if let Some(rows) = summary["recovery"].as_array() {
        for r in rows {
            println!(
                "recovery {} cmds: {:.3} s from genesis, {:.3} s from the snapshot at seq {} ({} B, written in {:.3} s)",
                r["commands"],
                r["without_snapshot_s"]["median"]
                    .as_f64()
                    .unwrap_or(f64::NAN),
                r["with_snapshot_s"]["median"].as_f64().unwrap_or(f64::NAN),
                r["snapshot_seq"],
                r["snapshot_payload_bytes"],
                r["snapshot_write_s"].as_f64().unwrap_or(f64::NAN),
            );
        }
    }
    let ratios = &summary["ratios"];
    println!(
        "ratios (median of interleaved rounds): append none / raw_copy {} (floor 0.5), every-batch@1024 / raw_sync {} (floor 0.8), replay / apply {} (floor 0.8)",
        ratio(&ratios["append_none_vs_raw_copy"]),
        ratio(&ratios["append_every_batch_vs_raw_sync"]),
        ratio(&ratios["replay_vs_apply"]),
    );
}

/// The file system type of `path` (statfs magic), e.g. "ext4".
fn filesystem_type(path: &Path) -> String {
    let Some(c_path) = path.to_str().and_then(|p| std::ffi::CString::new(p).ok()) else {
        return "unknown".to_owned();
    };
    // SAFETY: statfs writes into a zeroed struct we own; the path is NUL-terminated.
    let mut stat: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    if unsafe { libc::statfs(c_path.as_ptr(), &mut stat) } != 0 {
        return "unknown".to_owned();
    }
    #[allow(clippy::unnecessary_cast)]
    let magic = stat.f_type as u64;
    match magic {
        0xEF53 => "ext4".to_owned(),
        0x5846_5342 => "xfs".to_owned(),
        0x9123_683E => "btrfs".to_owned(),
        0x0102_1994 => "tmpfs".to_owned(),
        0x794C_7630 => "overlayfs".to_owned(),
        0x2FC1_2FC1 => "zfs".to_owned(),
        0xF2F5_2010 => "f2fs".to_owned(),
        0x6969 => "nfs".to_owned(),
        other => format!("unknown (statfs magic {other:#x})"),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn smoke_run_meets_the_state_checks_and_reports_every_key() {
        let summary = super::smoke().expect("the smoke run completes");
        for key in [
            "append_none_frames_per_s",
            "raw_copy_frames_per_s",
            "append_every_batch_frames_per_s",
            "raw_sync_frames_per_s",
            "replay_cmds_per_s",
            "apply_cmds_per_s",
        ] {
            assert!(summary[key].as_f64().is_some_and(|v| v > 0.0), "{key}");
        }
        assert!(summary["recovery_10m_s"].is_null());
    }
}
