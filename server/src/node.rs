//! A Kuku node: recovery at start-up, the pipeline, and the threads around it (read model,
//! snapshotter, scheduler, market data), with a graceful shutdown.
//!
//! Start-up reads and cross-checks everything before it changes anything: the data directory
//! (a directory, writable), the journal (segments, headers, watermark, snapshots, engine
//! config: `Journal::prepare_open`), the query database's checkpoint, and, for a primary with
//! `peers`, how far a standby got. Only a new, empty data directory starts a fresh journal;
//! any disagreement is a refusal that names what is missing and what to do
//! (docs/operations.md, "Refusals at start-up"), with nothing modified. Then: open the journal
//! (a torn tail is quarantined and cut, logged at WARN); recover the engine from the newest
//! valid snapshot plus the journal after it; build the read model from the recovered engine
//! (the processor thread does not exist yet); start the pipeline; on a fresh journal, register
//! the fee schedule and the symbol universe through it. With `durability = "none"` the
//! journal's watermark syncer moves the durable watermark every `watermark_interval_ms`.
//!
//! Shutdown: stop intake (scheduler, market data, the caller's producers), drop the last submitter
//! so the pipeline drains every accepted command, close the journal (a final commit), let the
//! snapshotter finish, write a final snapshot at the last seq (what `kuku upgrade` starts a
//! new engine-logic version from), and let the database writer catch up (`crate::database`).

use crate::alarms::Alarms;
use crate::config::NodeConfig;
use crate::pipeline::fold::{self, ReadModelFolder, SharedReadModel};
use crate::pipeline::{
    self, Busy, CommandLog, LogError, Notify, Origin, OutputHandler, OutputPoller, OutputSlot,
    Outputs, Pipeline, PipelineStatus, Submitter, now_ns,
};
use crate::replication::{self, ReplicatedLog, Replication, Role};
use crate::scheduler::{self, DayState, KstTime, ScheduleMode};
use crate::universe;
use anyhow::Context;
use kuku_engine::readmodel::ReadModel;
use kuku_engine::{Command, Engine, EngineConfig, Event, FeeSchedule, MarketPhase};
use kuku_journal::{Journal, JournalConfig, codec};
use kuku_marketdata::MarketDataHandle;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::thread::JoinHandle;
use std::time::Duration;

/// The journal as the pipeline's command log.
pub struct JournalLog {
    journal: Option<Journal>,
}

impl JournalLog {
    pub fn new(journal: Journal) -> JournalLog {
        JournalLog {
            journal: Some(journal),
        }
    }
}

impl JournalLog {
    pub fn journal(&self) -> Option<&Journal> {
        self.journal.as_ref()
    }

    pub fn journal_mut(&mut self) -> Option<&mut Journal> {
        self.journal.as_mut()
    }
}

impl CommandLog for JournalLog {
    #[inline]
    fn append(&mut self, seq: u64, ts: u64, command: &Command) -> Result<(), LogError> {
        let journal = self
            .journal
            .as_mut()
            .ok_or_else(|| LogError::Failed("closed".into()))?;
        let len = codec::encoded_len(command);
        journal
            .append_with(seq, ts, len, |buf| {
                codec::encode_command(command, buf).unwrap_or(0)
            })
            .map(|_| ())
            .map_err(|e| LogError::Failed(e.to_string()))
    }

    #[inline]
    fn commit(&mut self) -> Result<(), LogError> {
        let journal = self
            .journal
            .as_mut()
            .ok_or_else(|| LogError::Failed("closed".into()))?;
        journal
            .commit()
            .map(|_| ())
            .map_err(|e| LogError::Failed(e.to_string()))
    }

    fn commit_blocks(&self) -> bool {
        self.journal
            .as_ref()
            .is_some_and(|j| j.config().durability != kuku_journal::Durability::None)
    }
}

impl Drop for JournalLog {
    fn drop(&mut self) {
        if let Some(journal) = self.journal.take() {
            match journal.close() {
                Ok(seq) => tracing::info!(seq, "The journal was closed after its last command."),
                Err(e) => tracing::error!(error = %e, "The journal could not be closed cleanly."),
            }
        }
    }
}

/// Extra consumers of the output ring (the gateway, the database writer, tests).
#[derive(Default)]
pub struct NodeOutputs {
    pub handlers: Vec<(&'static str, OutputHandler)>,
    pub pollers: usize,
    pub notifiers: Vec<Arc<dyn Notify>>,
    /// The gateway's "this node is the primary" flag (see `GatewayConfig::serving`): the node
    /// sets it from its replication role. `None`: the node keeps its own.
    pub serving: Option<Arc<AtomicBool>>,
    /// Called with the recovered engine before the pipeline starts: a consumer that keeps
    /// its own read model (the HTTP door) builds it here, so it starts exactly where the
    /// output ring's first event follows.
    pub seeds: Vec<Seed>,
}

/// A consumer's start from the recovered engine (see [`NodeOutputs::seeds`]).
pub type Seed = Box<dyn FnOnce(&Engine) + Send>;

/// What start-up found.
#[derive(Clone, Debug)]
pub struct StartupReport {
    pub seq_last: u64,
    pub commands_replayed: u64,
    pub snapshot_seq: Option<u64>,
    pub fresh: bool,
    pub journal_dir: PathBuf,
}

pub struct Node {
    pub submitter: Submitter,
    pub read_model: SharedReadModel,
    pub status: Arc<PipelineStatus>,
    /// Ledger alarms and invariant failures (logged, counted, exported in /metrics).
    pub alarms: Arc<Alarms>,
    pub pollers: Vec<OutputPoller>,
    pub startup: StartupReport,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    pipeline: Option<Pipeline>,
    snapshotter: Option<JoinHandle<()>>,
    /// The query store's writer (`None`: `database_url = "none"`).
    database: Option<kuku_persistence::Writer>,
    /// Replication state (`None`: replication off).
    pub replication: Option<Arc<Replication>>,
    /// Where the replication listener is bound (`kuku promote --node` this).
    pub replication_addr: Option<std::net::SocketAddr>,
    /// The standby's receiver (joined before the pipeline drains: it holds a submitter).
    replication_receiver: Option<JoinHandle<()>>,
    /// The replication listener (joined after the pipeline drained).
    replication_listener: Option<JoinHandle<()>>,
    /// True while this node acts as primary (gateway logins, scheduler, feed, snapshots).
    serving: Arc<AtomicBool>,
    /// For the final snapshot at a clean stop.
    engine_config: EngineConfig,
    /// The market-data service: quotes, ticks, candles, reference data (`crate::market_data`).
    pub market_data: MarketDataHandle,
    /// The KIS adapter's counters when the source is KIS (for /metrics).
    pub kis_metrics: Option<Arc<kuku_kis::KisMetrics>>,
    /// Stores candles in the query database (`None`: no database or no feed).
    candle_writer: Option<crate::market_data::CandleWriter>,
}

impl Node {
    pub fn start(config: &NodeConfig, outputs: NodeOutputs) -> anyhow::Result<Node> {
        config.validate()?;
        check_data_dir(&config.data_dir)?;
        // A replay file that cannot be read stops the start before anything else happens.
        let source = config
            .feed
            .enabled
            .then(|| crate::market_data::open_source(config))
            .transpose()?;
        let journal_dir = config.journal_dir();
        let journal_config = JournalConfig {
            segment_bytes: config.segment_mib * 1024 * 1024,
            durability: config.durability()?,
            ..JournalConfig::default()
        };
        let serving = outputs
            .serving
            .clone()
            .unwrap_or_else(|| Arc::new(AtomicBool::new(true)));
        let (repl, upstream, peer_ahead) = start_replication(config, journal_config, &serving)?;
        let epoch = repl.as_ref().map_or(0, |r| r.epoch());
        let database_checkpoint = crate::database::peek_checkpoint(config).context(
            "cannot start the database writer (reading its checkpoint before the journal is opened)",
        )?;
        let primary = repl.as_ref().is_none_or(|r| r.role() != Role::Standby);
        let check = |findings: &kuku_journal::Findings| {
            if primary && findings.fresh && epoch > 0 {
                return Err(format!(
                    "the journal directory {} is new (empty), but its epoch file says this node \
                     was a primary in epoch {epoch}: its journal is gone. Restore it, or rebuild \
                     this node as a standby from an empty data directory (docs/operations.md, \
                     \"Refusals at start-up\")",
                    findings.dir.display()
                ));
            }
            check_against_journal(
                findings,
                database_checkpoint.as_ref(),
                epoch,
                peer_ahead.as_ref(),
            )
        };
        let (mut journal, engine, report, info) =
            kuku_journal::state::open_journal_and_engine_checked(
                &journal_dir,
                journal_config,
                &config.engine,
                epoch,
                check,
            )
            .with_context(|| format!("cannot recover the journal in {}", journal_dir.display()))?;
        if let Some(cut) = &report.truncation {
            tracing::warn!(
                seq_from = cut.seq_expected,
                frames_cut = ?cut.frames_cut,
                bytes = cut.bytes_discarded,
                quarantine = %cut.quarantine.as_deref().map_or_else(String::new, |q| q.display().to_string()),
                "TORN TAIL: recovery cut the journal after the durable watermark ({cut}); the \
                 cut bytes are kept in the quarantine directory. Nothing cut was acknowledged \
                 as durable; see docs/operations.md, \"Torn tail or hard error\"."
            );
        }
        if journal_config.durability == kuku_journal::Durability::None
            && config.watermark_interval_ms > 0
        {
            journal
                .start_watermark_sync(Duration::from_millis(config.watermark_interval_ms))
                .context("cannot start the journal's watermark syncer")?;
        }
        tracing::info!("{report}");
        let fresh = engine.last_seq() == 0 && info.base.is_none();
        let startup = StartupReport {
            seq_last: engine.last_seq(),
            commands_replayed: info.commands_replayed,
            snapshot_seq: info.base.as_ref().map(|b| b.meta.seq),
            fresh,
            journal_dir: journal_dir.clone(),
        };
        tracing::info!(
            seq_last = startup.seq_last,
            replayed = startup.commands_replayed,
            snapshot = ?startup.snapshot_seq,
            "The engine was recovered from the journal."
        );
        let read_model = fold::share(ReadModel::from_engine(&engine));
        for seed in outputs.seeds {
            seed(&engine);
        }
        let day = DayState {
            day_open: engine.day_open(),
            trading_day: engine.trading_day(),
            phase: engine.phase(),
        };

        // The query store's writer resumes after its checkpoint (re-deriving from the journal).
        let (database, database_handler) =
            crate::database::start_writer(config, engine.last_seq(), epoch)
                .context("cannot start the database writer")?
                .unzip();
        let database_handler = match (&repl, database_handler) {
            (Some(r), Some(h)) => Some(gate_at_replicated_watermark(Arc::clone(r), h)),
            (_, h) => h,
        };
        // After the writer migrated the schema: start-up changes nothing before its checks.
        let (market_data, market_data_url) = crate::market_data::start_service(config)?;
        let alarms = Arc::new(Alarms::default());
        let (snapshot_tx, snapshotter) = spawn_snapshotter(
            journal_dir.clone(),
            config.engine,
            repl.clone(),
            Arc::clone(&alarms),
        );
        let mut handlers: Vec<(&'static str, OutputHandler)> = vec![
            // One consumer thread for the read model and the snapshot markers: on two cores
            // every thread woken per output batch costs latency (docs/benchmarks.md §4).
            (
                "kuku-readmodel",
                read_model_handler(Arc::clone(&read_model), snapshot_tx, Arc::clone(&alarms)),
            ),
        ];
        handlers.extend(database_handler.map(|h| ("kuku-db-writer", h)));
        handlers.extend(outputs.handlers);
        let log: Box<dyn CommandLog> = match &repl {
            Some(r) => Box::new(ReplicatedLog::new(JournalLog::new(journal), Arc::clone(r))),
            None => Box::new(JournalLog::new(journal)),
        };
        let pipeline = pipeline::start(
            config.pipeline.to_config(),
            engine,
            log,
            Outputs {
                handlers,
                pollers: outputs.pollers,
                notifiers: outputs.notifiers,
            },
        );
        let mut node = Node {
            submitter: pipeline.submitter.clone(),
            read_model,
            status: Arc::clone(&pipeline.status),
            alarms,
            pollers: Vec::new(),
            startup,
            stop: Arc::new(AtomicBool::new(false)),
            threads: Vec::new(),
            pipeline: Some(pipeline),
            snapshotter: Some(snapshotter),
            database,
            replication: repl,
            replication_addr: None,
            replication_receiver: None,
            replication_listener: None,
            serving,
            engine_config: config.engine,
            market_data,
            kis_metrics: None,
            candle_writer: None,
        };
        node.pollers = std::mem::take(&mut node.pipeline.as_mut().expect("started").pollers);
        if let Some(r) = node.replication.clone() {
            node.start_replication_threads(&r, upstream)?;
        }
        if fresh && node.serving.load(Ordering::Acquire) {
            node.bootstrap(config)?;
        }
        node.spawn_scheduler(config.schedule, day);
        if let Some(source) = source {
            node.kis_metrics = source.kis_metrics.clone();
            node.spawn_market_data(config, source, market_data_url.as_ref())?;
        }
        if config.snapshot_every > 0 {
            node.spawn_snapshot_timer(config.snapshot_every);
        }
        Ok(node)
    }

    /// True while this node acts as primary: a door submits commands only then (a standby's
    /// journal takes its primary's commands only).
    pub fn serving(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.serving)
    }

    /// Registers the fee schedule and the universe on a fresh journal.
    fn bootstrap(&mut self, config: &NodeConfig) -> anyhow::Result<()> {
        let csv = match &config.universe {
            Some(path) => std::fs::read_to_string(path)
                .with_context(|| format!("cannot read the universe {}", path.display()))?,
            None => universe::DEMO_UNIVERSE.to_owned(),
        };
        let symbols = universe::parse(&csv)?;
        self.submit_blocking(Command::SetFeeSchedule(FeeSchedule::KRX_2026));
        for c in symbols {
            self.submit_blocking(c);
        }
        tracing::info!(
            "A fresh journal: the 2026 fee schedule and the symbol universe were registered."
        );
        Ok(())
    }

    /// Submits, retrying while the ring is busy (cold paths only).
    pub fn submit_blocking(&mut self, command: Command) {
        submit_retrying(&mut self.submitter, Origin::INTERNAL, command, &self.stop);
    }

    fn spawn_scheduler(&mut self, mode: ScheduleMode, mut state: DayState) {
        if mode == ScheduleMode::Manual {
            return;
        }
        let mut submitter = self.submitter.clone();
        let stop = Arc::clone(&self.stop);
        let serving = Arc::clone(&self.serving);
        let read_model = Arc::clone(&self.read_model);
        let mut was_serving = serving.load(Ordering::Acquire);
        self.threads.push(spawn("kuku-scheduler", move || {
            while !stop.load(Ordering::Relaxed) {
                // Only a primary moves the day on; a promoted standby starts from its state.
                let now_serving = serving.load(Ordering::Acquire);
                if now_serving && !was_serving {
                    state = day_state_of(&read_model).unwrap_or(state);
                }
                was_serving = now_serving;
                if !now_serving {
                    sleep_unless_stopped(&stop, Duration::from_millis(100));
                    continue;
                }
                let plan = scheduler::plan(mode, state, KstTime::from_unix_ns(now_ns()));
                for c in &plan {
                    tracing::info!(command = ?c.kind(), "The scheduler moves the trading day on.");
                    submit_retrying(&mut submitter, Origin::INTERNAL, c.clone(), &stop);
                }
                state = scheduler::advance(state, &plan);
                sleep_unless_stopped(&stop, Duration::from_secs(1));
            }
        }));
    }

    /// The market-data thread: polls the source through the pump while the node serves and the
    /// market is continuous, and hands candle updates to the candle writer.
    fn spawn_market_data(
        &mut self,
        config: &NodeConfig,
        opened: crate::market_data::OpenedSource,
        url: Option<&kuku_persistence::DatabaseUrl>,
    ) -> anyhow::Result<()> {
        let crate::market_data::OpenedSource {
            source, kis_status, ..
        } = opened;
        let recorder = crate::market_data::open_recorder(config, source.as_ref())?;
        let mut pump = kuku_marketdata::Pump::new(source, Arc::clone(&self.market_data), recorder);
        let writer = url
            .map(|url| crate::market_data::CandleWriter::start(config, url, &self.market_data))
            .transpose()?;
        let pending = writer.as_ref().map(|w| Arc::clone(&w.pending));
        self.candle_writer = writer;
        let mut submitter = self.submitter.clone();
        let mut status_submitter = self.submitter.clone();
        let stop = Arc::clone(&self.stop);
        let read_model = Arc::clone(&self.read_model);
        let serving = Arc::clone(&self.serving);
        let idle = Duration::from_millis(config.feed.interval_ms.clamp(1, 1_000));
        tracing::info!(source = pump.source_name(), record = ?config.feed.record, "Market data starts.");
        self.threads.push(spawn("kuku-marketdata", move || {
            let mut candles = Vec::new();
            let mut submit = |ts: u64, c: Command| submitter.try_submit_at(Origin::INTERNAL, ts, c).is_ok();
            let mut failed = false;
            while !stop.load(Ordering::Relaxed) {
                let symbols: Vec<_> = {
                    let rm = read_model.read();
                    if serving.load(Ordering::Acquire) && rm.phase == Some(MarketPhase::Continuous) {
                        rm.symbols.values().map(|s| s.symbol).collect()
                    } else {
                        Vec::new()
                    }
                };
                if symbols.is_empty() || failed {
                    sleep_unless_stopped(&stop, idle);
                    continue;
                }
                if let Some(status) = &kis_status {
                    journal_quote_status(status, &symbols, &mut status_submitter, &stop);
                }
                let wait = match pump.step(now_ns(), &symbols, &mut submit, &mut candles) {
                    Ok(wait) => wait,
                    Err(e) => {
                        tracing::error!(error = %e, "The market-data source failed; no more quotes come from it.");
                        failed = true;
                        idle
                    }
                };
                if let Some(p) = &pending
                    && !candles.is_empty()
                    && !p.offer(&candles)
                {
                    tracing::warn!("The candle writer is too far behind; candle updates were dropped.");
                }
                candles.clear();
                sleep_unless_stopped(&stop, wait);
            }
        }));
        Ok(())
    }

    fn spawn_snapshot_timer(&mut self, every: u64) {
        let mut submitter = self.submitter.clone();
        let stop = Arc::clone(&self.stop);
        let status = Arc::clone(&self.status);
        let mut last = status.applied_seq.load(Ordering::Relaxed);
        let serving = Arc::clone(&self.serving);
        self.threads.push(spawn("kuku-snapshot-timer", move || {
            while !stop.load(Ordering::Relaxed) {
                let applied = status.applied_seq.load(Ordering::Relaxed);
                // A standby snapshots at the primary's journaled TakeSnapshot commands.
                if applied >= last + every && serving.load(Ordering::Acquire) {
                    let _ = submitter.try_submit(Origin::INTERNAL, Command::TakeSnapshot);
                    last = applied;
                }
                sleep_unless_stopped(&stop, Duration::from_secs(1));
            }
        }));
    }

    /// The database writer's counters and lag (`None` without a database).
    pub fn database_metrics(&self) -> Option<&Arc<kuku_persistence::WriterMetrics>> {
        self.database.as_ref().map(|w| w.metrics())
    }

    /// Waits until the processor has applied `seq` (tests, the demo).
    pub fn wait_applied(&self, seq: u64, timeout: Duration) -> bool {
        let deadline = std::time::Instant::now() + timeout;
        while self.status.applied_seq.load(Ordering::Acquire) < seq {
            if std::time::Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        true
    }

    /// Graceful shutdown: stop intake, drain, sync, join. Returns the last applied seq.
    pub fn shutdown(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        if let Some(w) = self.candle_writer.take() {
            w.shutdown();
        }
        let status = Arc::clone(&self.status);
        if let Some(r) = &self.replication {
            r.begin_stop();
        }
        if let Some(receiver) = self.replication_receiver.take() {
            let _ = receiver.join();
        }
        drop(self.pollers);
        drop(self.submitter);
        // Dropping the last submitter drains the input ring, then the output ring.
        drop(self.pipeline.take());
        if let Some(r) = &self.replication {
            r.finish_stop();
        }
        if let Some(listener) = self.replication_listener.take() {
            let _ = listener.join();
        }
        if let Some(s) = self.snapshotter.take() {
            let _ = s.join();
        }
        write_final_snapshot(
            &self.startup.journal_dir,
            &self.engine_config,
            status.applied_seq.load(Ordering::Acquire),
        );
        // Every event has been offered: the writer catches up (or times out) and stops.
        if let Some(writer) = self.database.take() {
            writer.shutdown();
        }
        status.applied_seq.load(Ordering::Acquire)
    }
}

fn spawn(name: &str, f: impl FnOnce() + Send + 'static) -> JoinHandle<()> {
    std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(f)
        .expect("the OS can start a thread")
}

pub(crate) fn sleep_unless_stopped(stop: &AtomicBool, total: Duration) {
    let step = Duration::from_millis(20).min(total);
    let mut slept = Duration::ZERO;
    while slept < total && !stop.load(Ordering::Relaxed) {
        std::thread::sleep(step);
        slept += step;
    }
}

/// Journals the KIS source's quote-status changes before the pump delivers the quotes that
/// follow them (ADR-023); never dropped, so the retry waits out a busy ring.
fn journal_quote_status(
    status: &kuku_kis::KisStatus,
    symbols: &[kuku_engine::Symbol],
    submitter: &mut Submitter,
    stop: &AtomicBool,
) {
    let mut changes = Vec::new();
    status.changes(std::time::Instant::now(), now_ns(), &mut changes);
    for (code, change) in changes {
        let Some(symbol) = symbols.iter().find(|s| s.code == code) else {
            continue;
        };
        let status = match change {
            kuku_kis::QuoteStatus::Fresh => kuku_engine::QuoteStatus::Fresh,
            kuku_kis::QuoteStatus::Stale => kuku_engine::QuoteStatus::Stale,
        };
        tracing::info!(symbol = %code, ?status, "The quote source's verdict is journaled.");
        let command = Command::SetQuoteStatus {
            symbol: symbol.id,
            status,
        };
        submit_retrying(submitter, Origin::INTERNAL, command, stop);
    }
}

/// Retries a cold-path submission while the ring is busy, unless the node is stopping.
pub fn submit_retrying(
    submitter: &mut Submitter,
    origin: Origin,
    command: Command,
    stop: &AtomicBool,
) {
    let mut command = command;
    loop {
        match submitter.try_submit(origin, command.clone()) {
            Ok(()) => return,
            Err(Busy) if !stop.load(Ordering::Relaxed) => {
                std::thread::sleep(Duration::from_micros(200));
                command = command.clone();
            }
            Err(Busy) => return,
        }
    }
}

/// Folds output events into the shared read model ([`ReadModelFolder`]: one lock per output
/// batch), hands each `TakeSnapshot` marker's seq to the snapshot thread and reports ledger
/// alarms.
fn read_model_handler(
    read_model: SharedReadModel,
    snapshots: mpsc::Sender<u64>,
    alarms: Arc<Alarms>,
) -> OutputHandler {
    let mut folder = ReadModelFolder::new(read_model);
    Box::new(move |slot: &OutputSlot, _, end_of_batch| {
        match slot.event {
            Event::SnapshotMarker => {
                let _ = snapshots.send(slot.seq);
            }
            Event::LedgerAlarm { command, fault } => alarms.ledger(slot.seq, command, fault),
            _ => {}
        }
        folder.fold(slot, end_of_batch);
    })
}

/// The shadow snapshotter: rebuilds the state at a marker's seq from the newest snapshot and
/// the journal, off the processor thread, and writes it.
fn spawn_snapshotter(
    dir: PathBuf,
    config: EngineConfig,
    repl: Option<Arc<Replication>>,
    alarms: Arc<Alarms>,
) -> (mpsc::Sender<u64>, JoinHandle<()>) {
    let (tx, rx) = mpsc::channel::<u64>();
    let handle = spawn("kuku-snapshotter", move || {
        // The shadow replay is background work: on a small machine it must not take a core
        // from the processor or the gateway while orders flow (it measurably raised the
        // order-to-ack p99; docs/benchmarks.md §4). It still gets every idle cycle.
        lower_this_thread_priority();
        while let Ok(seq) = rx.recv() {
            let written = kuku_journal::state::write_snapshot_at(&dir, &config, seq);
            if let Ok(w) = &written
                && let Err(violation) = &w.invariants
            {
                alarms.invariants(seq, violation);
            }
            match written {
                Ok(w) if repl.is_some() => {
                    tracing::info!(
                        seq,
                        hash = format!("{:#018x}", w.meta.state_hash),
                        "A snapshot was written."
                    );
                    if let Some(r) = &repl {
                        r.on_local_snapshot(seq, w.meta.state_hash);
                    }
                }
                Ok(w) => tracing::info!(
                    seq,
                    hash = format!("{:#018x}", w.meta.state_hash),
                    path = %w.path.display(),
                    replayed = w.commands_replayed,
                    "A snapshot was written."
                ),
                Err(e) => tracing::warn!(seq, error = %e, "A snapshot could not be written."),
            }
        }
    });
    (tx, handle)
}

/// A standby's joined connection to its primary and the last seq it keeps.
type Upstream = (std::net::TcpStream, u64);

/// A peer in this node's epoch that holds more of the journal than this node: (its replication
/// address, its last journaled seq).
type PeerAhead = (String, u64);

/// What [`start_replication`] sets up: the replication state, a standby's joined connection,
/// and a primary's standby that journaled more than this node.
type ReplicationStart = (
    Option<Arc<Replication>>,
    Option<Upstream>,
    Option<PeerAhead>,
);

/// Builds the replication state and, for a standby, joins the primary (truncating a divergent
/// tail) before the journal is opened. Returns the joined connection for the receiver, and for
/// a primary the peer (a standby of this epoch) that journaled the most.
fn start_replication(
    config: &NodeConfig,
    journal_config: JournalConfig,
    serving: &Arc<AtomicBool>,
) -> anyhow::Result<ReplicationStart> {
    if !config.replication.enabled() {
        return Ok((None, None, None));
    }
    let journal_dir = config.journal_dir();
    let mut epochs = replication::EpochFile::load(&journal_dir)?;
    // A journal written in a newer epoch than the file says (the file is lost): trust the journal.
    if let Some(meta) = kuku_journal::JournalReader::open(&journal_dir)
        .ok()
        .and_then(|r| r.meta())
    {
        epochs.epoch = epochs.epoch.max(meta.epoch);
    }
    let admin_token = config.gateway.credentials(config)?.admin_token;
    let repl = Replication::new(
        config.replication.clone(),
        journal_dir,
        config.data_dir.clone(),
        kuku_journal::state::journal_meta(&config.engine, epochs.epoch),
        admin_token,
        epochs,
        Arc::clone(serving),
    );
    if repl.role() == Role::Standby {
        let joined = replication::join(&repl, journal_config)?;
        return Ok((Some(repl), Some(joined), None));
    }
    let probe = replication::probe_peers(&config.replication.peers, repl.epoch());
    if let Some((epoch, peer)) = probe.newer {
        repl.fence(epoch, &peer);
    }
    Ok((Some(repl), None, probe.standby_ahead))
}

/// Refuses to build on a journal that the query database or a standby shows is missing
/// commands: run on the journal's findings before anything is changed (a torn tail is not yet
/// cut). The reason names what is missing and what the operator can do.
fn check_against_journal(
    findings: &kuku_journal::Findings,
    database: Option<&(String, kuku_persistence::Checkpoint)>,
    epoch: u64,
    peer_ahead: Option<&PeerAhead>,
) -> Result<(), String> {
    let journal = if findings.fresh {
        "the journal directory is new (empty)".to_owned()
    } else {
        format!("the journal ends at seq {}", findings.seq_last)
    };
    let cut = findings.cut.as_ref().map_or_else(String::new, |c| {
        format!(
            " once recovery cuts its torn tail at seq {} (nothing was cut yet)",
            c.seq_expected
        )
    });
    if let Some((url, checkpoint)) = database
        && (checkpoint.seq > findings.seq_last || checkpoint.epoch > epoch)
    {
        return Err(format!(
            "{journal}{cut}, but the query database at {url} holds rows up to seq {} (epoch {}, \
             this node's epoch {epoch}): either this data directory lost journal frames \
             (restore them from a backup or the standby) or the database belongs to another \
             data directory (point --database-url at this node's own database, or at an empty \
             one to rebuild it from the journal). Nothing was changed (docs/operations.md, \
             \"Refusals at start-up\").",
            checkpoint.seq, checkpoint.epoch
        ));
    }
    if let Some((peer, seq)) = peer_ahead
        && *seq > findings.seq_last
    {
        return Err(format!(
            "{journal}{cut}, but the standby at {peer} (same epoch {epoch}) journaled up to seq \
             {seq}: this node lost commands the standby has. Promote the standby (`kuku promote \
             --node {peer}`) and restart this node as its standby (`--standby-of {peer}`), which \
             cuts and refetches its tail. Nothing was changed (docs/operations.md, \"Refusals at \
             start-up\")."
        ));
    }
    Ok(())
}

/// Checks the data directory before anything is written into it: it must be a directory (it
/// is created if missing) and writable. Clear errors instead of the first failing write's.
pub fn check_data_dir(dir: &std::path::Path) -> anyhow::Result<()> {
    match std::fs::metadata(dir) {
        Ok(meta) if !meta.is_dir() => anyhow::bail!(
            "the data directory {} is a file, not a directory: point --data-dir (data_dir in \
             the config) at a directory, or move the file away (docs/operations.md, \"Refusals \
             at start-up\")",
            dir.display()
        ),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create the data directory {}", dir.display()))?;
        }
        Err(e) => {
            return Err(e)
                .with_context(|| format!("cannot read the data directory {}", dir.display()));
        }
    }
    let journal = dir.join("journal");
    let staging = kuku_journal::upgrade::staging_dir(&journal);
    if staging.exists() {
        anyhow::bail!(
            "{} exists: a `kuku upgrade` was interrupted. Run `kuku upgrade` again (it finishes \
             or restarts it) before starting the node (docs/operations.md, \"Upgrades\")",
            staging.display()
        );
    }
    if journal.exists() && !journal.is_dir() {
        anyhow::bail!(
            "{} is a file, not the journal directory: move it away (docs/operations.md, \
             \"Refusals at start-up\")",
            journal.display()
        );
    }
    let probe = dir.join(".kuku-write-probe");
    let written = std::fs::File::create(&probe).and_then(|f| f.sync_all());
    let _ = std::fs::remove_file(&probe);
    if let Err(e) = written {
        let why = match e.raw_os_error() {
            Some(libc::ENOSPC) | Some(libc::EDQUOT) => {
                "the file system is full: free space on it, then start again"
            }
            Some(libc::EROFS) => "the file system is mounted read-only",
            _ => "fix its owner or mode, or run kuku as its owner",
        };
        anyhow::bail!(
            "the data directory {} is not writable ({e}): {why} (docs/operations.md, \
             \"Refusals at start-up\")",
            dir.display()
        );
    }
    Ok(())
}

impl Node {
    fn start_replication_threads(
        &mut self,
        repl: &Arc<Replication>,
        upstream: Option<Upstream>,
    ) -> anyhow::Result<()> {
        repl.links.lock().expect("links lock").sent_seq = self.startup.seq_last;
        repl.attach(Arc::clone(&self.status), self.submitter.clone());
        if let Some((stream, keeps)) = upstream {
            anyhow::ensure!(
                keeps == self.startup.seq_last,
                "the journal ends at seq {} after the rejoin, not at {keeps} as agreed with the primary",
                self.startup.seq_last
            );
            let receiver =
                replication::spawn_receiver(repl, stream, self.submitter.clone(), keeps + 1)?;
            self.replication_receiver = Some(receiver);
        }
        let (addr, listener) = replication::spawn_listener(repl)?;
        self.replication_addr = Some(addr);
        self.replication_listener = Some(listener);
        Ok(())
    }
}

/// The day state a promoted standby's scheduler starts from.
fn day_state_of(read_model: &SharedReadModel) -> Option<DayState> {
    let rm = read_model.read();
    let phase = rm.phase?;
    Some(DayState {
        day_open: rm.trading_day != 0 && phase != MarketPhase::Closed,
        trading_day: rm.trading_day,
        phase,
    })
}

/// The database writer's handler, holding back events past the replicated watermark (what a
/// standby has): the query store never shows a command a failover could lose.
fn gate_at_replicated_watermark(repl: Arc<Replication>, mut inner: OutputHandler) -> OutputHandler {
    Box::new(move |slot: &OutputSlot, seq, end_of_batch| {
        // Bounded: a live standby that stops acking is dropped after heartbeat_timeout_ms,
        // and then the watermark no longer holds anything back.
        while slot.seq > repl.replicated_watermark() && !repl.stopping.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_micros(200));
        }
        inner(slot, seq, end_of_batch)
    })
}

/// At a clean stop, a snapshot at the last applied seq (unless one exists): what `kuku
/// upgrade` starts a build of a new engine-logic version from, and a short replay at the next
/// start. A failure is logged; the journal is the truth either way.
fn write_final_snapshot(journal_dir: &std::path::Path, config: &EngineConfig, seq: u64) {
    if seq == 0 {
        return;
    }
    let path = journal_dir
        .join(kuku_journal::SnapshotStore::DIR_NAME)
        .join(kuku_journal::snapshot_file_name(seq));
    if path.exists() {
        return;
    }
    match kuku_journal::state::write_snapshot_at(journal_dir, config, seq) {
        Ok(w) => tracing::info!(
            seq,
            hash = format!("{:#018x}", w.meta.state_hash),
            path = %w.path.display(),
            "The final snapshot was written (kuku upgrade starts from it)."
        ),
        Err(e) => tracing::warn!(seq, error = %e, "The final snapshot could not be written."),
    }
}

/// Sets this thread's nice value to 19 (Linux nice values are per thread). Best effort.
pub fn lower_this_thread_priority() {
    #[cfg(target_os = "linux")]
    // SAFETY: setpriority with the caller's own thread id only changes its scheduling weight.
    unsafe {
        let tid = libc::gettid();
        if libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, 19) != 0 {
            tracing::debug!("The thread priority could not be lowered.");
        }
    }
}

/// Runs `engine`-independent start-up checks (used by `kuku serve --check`).
pub fn describe(engine: &Engine) -> String {
    format!(
        "seq {} | {} symbols | {} accounts | {} live orders | day open: {}",
        engine.last_seq(),
        engine.symbols().count(),
        engine.ledger().accounts().len(),
        engine.live_order_count(),
        engine.day_open()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::Origin;
    use kuku_engine::CommandKind;
    use kuku_engine::ledger::LedgerFault;

    #[test]
    fn a_ledger_alarm_on_the_output_ring_is_counted_and_exported() {
        let alarms = Arc::new(Alarms::default());
        let (snapshots, _rx) = mpsc::channel();
        let read_model = fold::share(ReadModel::default());
        let mut handler = read_model_handler(read_model, snapshots, Arc::clone(&alarms));
        let slot = OutputSlot {
            seq: 42,
            ts: 0,
            origin: Origin::INTERNAL,
            event: Event::LedgerAlarm {
                command: CommandKind::PlaceOrder,
                fault: LedgerFault::Unbalanced,
            },
            last: true,
        };
        handler(&slot, 0, true);
        alarms.invariants(43, "KRW sums to 1, not 0");
        let text = crate::metrics::render(&crate::metrics::MetricsSources {
            pipeline: Arc::default(),
            alarms: Arc::clone(&alarms),
            database: None,
            gateway: None,
            replication: None,
            market_data: None,
            kis: None,
            ws: None,
        });
        assert!(text.contains("\nkuku_ledger_alarms_total 1\n"), "{text}");
        assert!(
            text.contains("\nkuku_invariant_failures_total 1\n"),
            "{text}"
        );
    }
}
