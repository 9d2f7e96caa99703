//! The database writer: a thread that turns the node's events into rows and commits them in
//! batches, each with the checkpoint `(epoch, seq)` of its last command, in one transaction.
//!
//! ```text
//! output ring --offer()--> intake queue (bounded) --> writer thread --batch + checkpoint--> DB
//!                                                      ^
//!          journal (commands) --replay on a shadow engine--/  (after a restart or a drop)
//! ```
//!
//! - **Adaptive batching**: the writer takes whatever whole commands are queued, up to
//!   `batch_commands_max` commands or `batch_rows_max` rows, and commits; an idle node gets
//!   one small batch per command, a busy one large batches (the backlog sets the size).
//! - **Exactly once**: rows and checkpoint commit together; the writer resumes right after the
//!   checkpoint. Everything between the checkpoint and the first event it receives (a restart:
//!   the node starts after its journal's end; a drop period: events were discarded) is
//!   re-derived by replaying the journal on a shadow engine recovered at the writer's position
//!   (newest snapshot + replay), capturing the events each command yields. Replay is
//!   deterministic, so these are the events the node emitted.
//! - **Never blocks the node**: the intake only `try_send`s ([`crate::intake`]); a slow or
//!   absent database makes the queue overflow, the intake drops events, and the writer
//!   re-derives them from the journal later. Memory is bounded by the queue, one batch, the
//!   live-order rows and (while re-deriving) one shadow engine.
//! - **Retries**: a failed batch is rolled back and retried as is, with exponential backoff
//!   (`retry_backoff_min` doubling to `retry_backoff_max`); every attempt, connecting
//!   included, has a deadline (`statement_timeout`, 5 s by default). The writer keeps one
//!   connection; after a failed attempt it abandons it (closed at once, never handed back to
//!   the pool) and, on MySQL / MariaDB, kills it by its connection id from the next
//!   connection before writing again: a hung connection's transaction would otherwise hold
//!   the checkpoint row's lock until the server's `wait_timeout` (8 hours by default), and
//!   every later batch would wait for it. The lag (commands and seconds) is logged every
//!   `lag_log_every` while behind, and is always in [`WriterMetrics`]; a failed attempt
//!   clears `database_ok` (`kuku_db_up`) and counts a retry.
//!
//! **Invariants**
//! - `checkpoint.seq <= position <= seen_seq`; the builder holds exactly the commands
//!   `checkpoint.seq + 1 ..= position`.
//! - A command's rows reach the database at most once (the conditional checkpoint update and
//!   the primary keys) and at least once (nothing after the checkpoint is forgotten: it is
//!   either in hand, in the queue, or re-derived from the journal).
//! - The journal is read only up to `seen_seq`: commands the node has applied, hence
//!   committed to the journal.
//!
//! **Performance**: event -> row conversion is O(1) per event on the writer thread; the
//! database round trips dominate (see `kuku-bench persistence`). Re-deriving costs one engine
//! recovery per drop period plus re-applying the missed commands.
//!
//! **Known limitations**: the journal must keep every segment after the checkpoint (the
//! journal does not prune segments yet; when it does, it must stay behind
//! [`WriterMetrics::checkpoint_seq`]). The writer does not know the replicated watermark:
//! on a replicating node, kuku-server offers it only events up to that watermark.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, TryRecvError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use kuku_engine::{Engine, EngineConfig, Event, EventSink};
use kuku_journal::state::{RecoverOptions, recover_engine_with};
use kuku_journal::{JournalReader, codec};

use crate::builder::BatchBuilder;
use crate::db::{ConnectOptions, Database};
use crate::error::PersistenceError;
use crate::intake::{IntakeReceiver, Item, WriterHandle, is_stored};
use crate::metrics::{WriterMetrics, WriterStatus, now_ns};
use crate::rows::Batch;
use crate::store::{self, Checkpoint, Statements, with_timeout};
use crate::url::Backend;
use sqlx::pool::PoolConnection;
use sqlx::{Any, AssertSqlSafe, Row};

/// Abandoned connections remembered for a kill (older ones are left to the server's
/// `idle_write_transaction_timeout`).
const KILLS_PENDING_MAX: usize = 16;
use crate::url::DatabaseUrl;

/// How a writer runs.
#[derive(Clone, Debug)]
pub struct WriterConfig {
    pub database_url: DatabaseUrl,
    pub connect: ConnectOptions,
    /// The node's journal, for re-deriving events.
    pub journal_dir: PathBuf,
    /// The engine config the journal was written under.
    pub engine: EngineConfig,
    /// Stored with the checkpoint (raised by a promotion, docs/architecture.md §6).
    pub epoch: u64,
    /// Intake queue capacity, in events.
    pub intake_events_max: usize,
    pub batch_commands_max: usize,
    pub batch_rows_max: usize,
    pub retry_backoff_min: Duration,
    pub retry_backoff_max: Duration,
    /// Deadline of one batch attempt (connecting, begin to commit).
    pub statement_timeout: Duration,
    /// How often the lag is logged while the writer is behind.
    pub lag_log_every: Duration,
    /// How long [`Writer::shutdown`] keeps trying to catch up before it gives up (what is left
    /// is re-derived at the next start).
    pub shutdown_timeout: Duration,
}

impl WriterConfig {
    /// Defaults for the given database and journal.
    pub fn new(database_url: DatabaseUrl, journal_dir: PathBuf, engine: EngineConfig) -> Self {
        WriterConfig {
            database_url,
            connect: ConnectOptions::default(),
            journal_dir,
            engine,
            epoch: 0,
            intake_events_max: 1 << 16,
            batch_commands_max: 2_048,
            batch_rows_max: 32_768,
            retry_backoff_min: Duration::from_millis(50),
            retry_backoff_max: Duration::from_secs(2),
            statement_timeout: Duration::from_secs(5),
            lag_log_every: Duration::from_secs(10),
            shutdown_timeout: Duration::from_secs(30),
        }
    }
}

/// A running writer thread.
pub struct Writer {
    thread: Option<JoinHandle<()>>,
    metrics: Arc<WriterMetrics>,
    stop: Arc<AtomicBool>,
    url: DatabaseUrl,
}

impl Writer {
    /// Connects to the database (creating and migrating it if needed), reads the checkpoint and
    /// starts the writer thread. `journal_seq_last` is the last command in the journal when the
    /// node starts: the first event offered will be of a later command, and everything after
    /// the checkpoint up to it is re-derived from the journal.
    ///
    /// Fails (without starting anything) if the database cannot be reached, refuses the
    /// credentials, or holds a checkpoint ahead of the journal.
    pub fn start(
        config: WriterConfig,
        journal_seq_last: u64,
    ) -> Result<(Writer, WriterHandle), PersistenceError> {
        let metrics = Arc::new(WriterMetrics::default());
        metrics.seen_seq.store(journal_seq_last, Ordering::Release);
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, rx) = mpsc::sync_channel(config.intake_events_max.max(1));
        let (ready_tx, ready_rx) = mpsc::channel::<Result<Checkpoint, PersistenceError>>();
        let url = config.database_url.clone();
        let thread = {
            let metrics = Arc::clone(&metrics);
            let stop = Arc::clone(&stop);
            std::thread::Builder::new()
                .name("kuku-db-writer".into())
                .spawn(move || {
                    let intake = IntakeReceiver { rx, metrics };
                    writer_thread(config, journal_seq_last, intake, &stop, ready_tx);
                })
                .map_err(|e| PersistenceError::Start(e.to_string()))?
        };
        let checkpoint = match ready_rx.recv() {
            Ok(Ok(checkpoint)) => checkpoint,
            Ok(Err(e)) => {
                let _ = thread.join();
                return Err(e);
            }
            Err(_) => {
                let _ = thread.join();
                return Err(PersistenceError::Start(
                    "the writer thread ended during start-up".into(),
                ));
            }
        };
        tracing::info!(
            url = %url,
            checkpoint_seq = checkpoint.seq,
            journal_seq = journal_seq_last,
            "The database writer started; it resumes after the checkpoint."
        );
        let handle = WriterHandle::new(tx, Arc::clone(&metrics));
        let writer = Writer {
            thread: Some(thread),
            metrics,
            stop,
            url,
        };
        Ok((writer, handle))
    }

    pub fn metrics(&self) -> &Arc<WriterMetrics> {
        &self.metrics
    }

    pub fn status(&self) -> WriterStatus {
        self.metrics.status(now_ns())
    }

    /// Waits until the checkpoint reaches `seq` (tests, tools); false on timeout.
    pub fn wait_checkpoint(&self, seq: u64, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while self.metrics.checkpoint_seq.load(Ordering::Acquire) < seq {
            if Instant::now() > deadline || self.metrics.stopped.load(Ordering::Acquire) {
                return self.metrics.checkpoint_seq.load(Ordering::Acquire) >= seq;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        true
    }

    /// Stops after writing everything the node has emitted (call it once the node's output
    /// consumers have finished), or after `shutdown_timeout`. Returns the final counters.
    pub fn shutdown(mut self) -> WriterStatus {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let status = self.status();
        tracing::info!(url = %self.url, %status, "The database writer stopped.");
        status
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        // Not shut down: let the thread finish on its own deadline.
        self.stop.store(true, Ordering::Release);
    }
}

fn writer_thread(
    config: WriterConfig,
    journal_seq_last: u64,
    intake: IntakeReceiver,
    stop: &AtomicBool,
    ready: mpsc::Sender<Result<Checkpoint, PersistenceError>>,
) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            let _ = ready.send(Err(PersistenceError::Start(e.to_string())));
            return;
        }
    };
    let metrics = Arc::clone(&intake.metrics);
    let loop_metrics = Arc::clone(&metrics);
    runtime.block_on(async move {
        let mut state = match WriterLoop::open(config, journal_seq_last, &loop_metrics).await {
            Ok(state) => state,
            Err(e) => {
                let _ = ready.send(Err(e));
                return;
            }
        };
        let _ = ready.send(Ok(state.checkpoint));
        state.run(&intake, stop).await;
        // Hand the connection back first: closing the pool waits for every connection.
        drop(state.conn.take());
        state.db.close().await;
    });
    metrics.stopped.store(true, Ordering::Release);
}

/// Captures the events of one command during a journal replay.
#[derive(Default)]
struct CaptureSink(Vec<Event>);

impl EventSink for CaptureSink {
    fn emit(&mut self, event: &Event) {
        if is_stored(event) {
            self.0.push(*event);
        }
    }
}

/// The writer thread's state.
struct WriterLoop {
    db: Database,
    config: WriterConfig,
    metrics: Arc<WriterMetrics>,
    statements: Statements,
    builder: BatchBuilder,
    /// Committed.
    checkpoint: Checkpoint,
    /// The last command whose events are in the builder or committed.
    position: u64,
    /// Events of the command being assembled from the intake (seq, ts, event).
    partial: Vec<(u64, u64, Event)>,
    partial_seq: Option<u64>,
    /// An intake item waiting for a gap before it to be re-derived.
    held: Option<Item>,
    /// The engine at `position` after a re-derivation (reused if the next gap starts there).
    shadow: Option<Engine>,
    backoff: Duration,
    last_lag_log: Instant,
    stop_deadline: Option<Instant>,
    /// The writer's connection (`None` until connected, and after a failed attempt).
    conn: Option<PoolConnection<Any>>,
    /// Its MySQL connection id (`None` on SQLite).
    conn_id: Option<i64>,
    /// Abandoned MySQL connections to kill before the next batch.
    kills_pending: Vec<i64>,
    /// An attempt was abandoned: its commit may have happened (only the reply was lost), so
    /// the next attempt reads the checkpoint before writing.
    outcome_unknown: bool,
}

impl WriterLoop {
    async fn open(
        config: WriterConfig,
        journal_seq_last: u64,
        metrics: &Arc<WriterMetrics>,
    ) -> Result<WriterLoop, PersistenceError> {
        let mut connect = config.connect.clone();
        connect.statement_timeout = config.statement_timeout;
        let db = Database::connect(&config.database_url, &connect).await?;
        let timeout = config.connect.connect_timeout.max(config.statement_timeout);
        let (checkpoint, open_orders) = with_timeout(
            "reading the checkpoint and the open orders",
            timeout,
            async {
                let mut conn = db
                    .pool()
                    .acquire()
                    .await
                    .map_err(PersistenceError::db("connecting"))?;
                let checkpoint = store::read_checkpoint(&mut conn).await?;
                let open_orders = store::read_open_orders(&mut conn).await?;
                Ok((checkpoint, open_orders))
            },
        )
        .await?;
        if checkpoint.seq > journal_seq_last || checkpoint.epoch > config.epoch {
            return Err(PersistenceError::CheckpointAhead {
                db_epoch: checkpoint.epoch,
                db_seq: checkpoint.seq,
                journal_epoch: config.epoch,
                journal_seq: journal_seq_last,
            });
        }
        metrics
            .checkpoint_seq
            .store(checkpoint.seq, Ordering::Release);
        metrics
            .checkpoint_ts_ns
            .store(checkpoint.ts_ns, Ordering::Release);
        metrics.database_ok.store(true, Ordering::Release);
        let mut statements = Statements::new(db.backend());
        statements.set_statement_timeout(config.statement_timeout);
        Ok(WriterLoop {
            statements,
            db,
            metrics: Arc::clone(metrics),
            builder: BatchBuilder::new(open_orders),
            checkpoint,
            position: checkpoint.seq,
            partial: Vec::new(),
            partial_seq: None,
            held: None,
            shadow: None,
            backoff: config.retry_backoff_min,
            last_lag_log: Instant::now(),
            stop_deadline: None,
            conn: None,
            conn_id: None,
            kills_pending: Vec::new(),
            outcome_unknown: false,
            config,
        })
    }

    fn batch_full(&self) -> bool {
        let b = self.builder.batch();
        b.commands as usize >= self.config.batch_commands_max
            || b.row_count() as usize >= self.config.batch_rows_max
    }

    fn stopping(&mut self, stop: &AtomicBool) -> bool {
        if self.stop_deadline.is_none() && stop.load(Ordering::Acquire) {
            self.stop_deadline = Some(Instant::now() + self.config.shutdown_timeout);
        }
        self.stop_deadline.is_some()
    }

    fn past_deadline(&self) -> bool {
        self.stop_deadline.is_some_and(|d| Instant::now() > d)
    }

    async fn run(&mut self, intake: &IntakeReceiver, stop: &AtomicBool) {
        let mut disconnected = false;
        loop {
            if self.stopping(stop) && self.past_deadline() {
                tracing::warn!(
                    position = self.position,
                    checkpoint = self.checkpoint.seq,
                    seen = self.metrics.seen_seq.load(Ordering::Acquire),
                    "The database writer stops before catching up; the next start re-derives the rest from the journal."
                );
                return;
            }
            // Gather whole commands until the batch is full or the queue is empty.
            let mut queue_empty = false;
            while !self.batch_full() {
                let item = match self.held.take() {
                    Some(item) => item,
                    None => match intake.try_next() {
                        Ok(item) => item,
                        Err(TryRecvError::Empty) => {
                            queue_empty = true;
                            break;
                        }
                        Err(TryRecvError::Disconnected) => {
                            disconnected = true;
                            queue_empty = true;
                            break;
                        }
                    },
                };
                if let Some(until) = self.accept(item) {
                    self.held = Some(item);
                    if self.rederive(until, intake, stop).await.is_err() {
                        self.pause().await;
                    }
                    break;
                }
            }
            if !self.builder.batch().is_empty() && (queue_empty || self.batch_full()) {
                self.commit(stop).await;
                continue;
            }
            if queue_empty && self.held.is_none() {
                // Drained: a drop period can end (the intake resumes at the next command).
                self.metrics.overflowed.store(false, Ordering::Release);
                // Commands the node emitted that never arrived (dropped) are in the journal.
                let seen = self.metrics.seen_seq.load(Ordering::Acquire);
                if seen > self.position {
                    match intake.try_next() {
                        Ok(item) => self.held = Some(item),
                        Err(_) => {
                            if self.rederive(seen, intake, stop).await.is_err() {
                                self.pause().await;
                            }
                        }
                    }
                    continue;
                }
                let caught_up = self.checkpoint.seq == seen && self.builder.batch().is_empty();
                if caught_up && (disconnected || self.stopping(stop)) {
                    return;
                }
            }
            self.log_lag();
            if self.held.is_none() && !disconnected {
                match intake.next_timeout(Duration::from_millis(20)) {
                    Ok(item) => self.held = Some(item),
                    Err(RecvTimeoutError::Timeout) => {}
                    Err(RecvTimeoutError::Disconnected) => disconnected = true,
                }
            } else if disconnected && self.held.is_none() {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    }

    /// Takes one intake item. `Some(until)`: the commands `position + 1 ..= until` are missing
    /// before it; re-derive them, then offer the item again.
    fn accept(&mut self, item: Item) -> Option<u64> {
        let seq = item.seq();
        if seq <= self.position {
            return None; // already re-derived from the journal
        }
        if self.partial_seq.is_some_and(|p| p != seq) {
            // The rest of that command was dropped: it will be re-derived whole.
            self.partial.clear();
            self.partial_seq = None;
        }
        if self.partial_seq.is_none() {
            if seq != self.position + 1 {
                return Some(seq - 1);
            }
            self.partial_seq = Some(seq);
        }
        if let Item::Event {
            seq, ts_ns, event, ..
        } = item
        {
            self.partial.push((seq, ts_ns, event));
        }
        if item.is_last() {
            for (s, ts, event) in self.partial.drain(..) {
                self.builder.add_event(s, ts, &event);
            }
            self.end_command(seq, item.ts_ns());
            self.partial_seq = None;
            // The shadow engine no longer matches the position.
            self.shadow = None;
        }
        None
    }

    fn end_command(&mut self, seq: u64, ts_ns: u64) {
        if self.builder.batch().is_empty() {
            self.metrics
                .oldest_pending_ts_ns
                .store(ts_ns, Ordering::Release);
        }
        self.builder.end_command(seq, ts_ns);
        self.position = seq;
    }

    /// Replays the journal from `position + 1` to `until` on the shadow engine, building rows
    /// from the events; keeps going while the intake is dropping (it would only drop more).
    async fn rederive(
        &mut self,
        until: u64,
        intake: &IntakeReceiver,
        stop: &AtomicBool,
    ) -> Result<(), PersistenceError> {
        self.partial.clear();
        self.partial_seq = None;
        let mut until = until;
        while self.position < until {
            let mut engine = self.shadow_engine()?;
            let replayed = self.replay(&mut engine, until, stop).await;
            self.shadow = Some(engine);
            replayed?;
            if self.past_deadline() {
                return Ok(());
            }
            // Drop what the journal already gave; if the intake overflowed meanwhile, keep
            // replaying rather than switch to a stream with a hole in it.
            while let Some(item) = self.held.take().or_else(|| intake.try_next().ok()) {
                if item.seq() > self.position {
                    self.held = Some(item);
                    break;
                }
            }
            if self.held.is_none() && self.metrics.overflowed.load(Ordering::Acquire) {
                self.metrics.overflowed.store(false, Ordering::Release);
                until = until.max(self.metrics.seen_seq.load(Ordering::Acquire));
            }
        }
        Ok(())
    }

    /// The engine at `position`: the shadow if it is there, else recovered from the journal.
    fn shadow_engine(&mut self) -> Result<Engine, PersistenceError> {
        if let Some(engine) = self.shadow.take()
            && engine.last_seq() == self.position
        {
            return Ok(engine);
        }
        let started = Instant::now();
        let options = RecoverOptions {
            seq_until: Some(self.position),
            use_snapshots: true,
        };
        let (engine, info) =
            recover_engine_with(&self.config.journal_dir, &self.config.engine, options)?;
        tracing::info!(
            seq = self.position,
            snapshot = ?info.base.as_ref().map(|b| b.meta.seq),
            replayed = info.commands_replayed,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "The database writer rebuilt the engine at its position to re-derive events from the journal."
        );
        Ok(engine)
    }

    async fn replay(
        &mut self,
        engine: &mut Engine,
        until: u64,
        stop: &AtomicBool,
    ) -> Result<(), PersistenceError> {
        let reader = JournalReader::open(&self.config.journal_dir)?;
        let mut sink = CaptureSink::default();
        let from = self.position + 1;
        for frame in reader.frames_from(from)? {
            let frame = frame?;
            let envelope = codec::decode_envelope(&frame).map_err(|source| {
                kuku_journal::StateError::Payload {
                    seq: frame.seq,
                    source,
                }
            })?;
            sink.0.clear();
            engine.apply(&envelope, &mut sink);
            for event in &sink.0 {
                self.builder.add_event(envelope.seq, envelope.ts, event);
            }
            self.end_command(envelope.seq, envelope.ts);
            self.metrics
                .commands_rederived
                .fetch_add(1, Ordering::Relaxed);
            if self.batch_full() {
                self.commit(stop).await;
                if self.past_deadline() {
                    return Ok(());
                }
            }
            if envelope.seq >= until {
                break;
            }
        }
        if self.position < until {
            return Err(PersistenceError::Corrupt(format!(
                "the journal ends at seq {} but the node emitted seq {until}",
                self.position
            )));
        }
        Ok(())
    }

    /// Commits the batch built so far, retrying with backoff until it succeeds or the
    /// shutdown deadline passes (then the batch is abandoned: it is re-derived next start).
    async fn commit(&mut self, stop: &AtomicBool) {
        let batch = self.builder.take();
        if batch.is_empty() {
            return;
        }
        let rows = batch.row_count();
        loop {
            // Every step of an attempt has its own deadline (statement_timeout).
            let attempt = self.attempt(&batch).await;
            match attempt {
                Ok(checkpoint) => {
                    self.on_committed(checkpoint, batch.commands, rows);
                    return;
                }
                Err(e) => {
                    self.abandon_connection();
                    self.on_failed(&e);
                    if self.stopping(stop) && self.past_deadline() {
                        return;
                    }
                    self.pause().await;
                }
            }
        }
    }

    /// One try at a batch: connect if needed, kill abandoned connections, write. Each step
    /// has the statement timeout as its deadline.
    async fn attempt(&mut self, batch: &Batch) -> Result<Checkpoint, PersistenceError> {
        let timeout = self.config.statement_timeout;
        if self.conn.is_none() {
            let (pool, backend) = (self.db.pool().clone(), self.db.backend());
            let (conn, id) = with_timeout("connecting", timeout, async move {
                let mut conn = pool
                    .acquire()
                    .await
                    .map_err(PersistenceError::db("connecting"))?;
                let id = match backend {
                    Backend::MySql => Some(
                        sqlx::query("SELECT CAST(CONNECTION_ID() AS SIGNED) AS id")
                            .fetch_one(&mut *conn)
                            .await
                            .and_then(|row| row.try_get::<i64, _>("id"))
                            .map_err(PersistenceError::db("reading the connection id"))?,
                    ),
                    Backend::Sqlite => None,
                };
                Ok((conn, id))
            })
            .await?;
            self.conn = Some(conn);
            self.conn_id = id;
        }
        let Some(conn) = self.conn.as_mut() else {
            return Err(PersistenceError::Start("no database connection".into()));
        };
        while let Some(&id) = self.kills_pending.last() {
            let kill = format!("KILL CONNECTION {id}");
            let killed = with_timeout("killing an abandoned connection", timeout, async {
                match sqlx::raw_sql(AssertSqlSafe(kill))
                    .execute(&mut **conn)
                    .await
                {
                    Ok(_) => Ok(true),
                    // 1094: unknown thread id, it has already ended.
                    Err(sqlx::Error::Database(e))
                        if crate::error::mysql_error_number(e.as_ref()) == Some(1094) =>
                    {
                        Ok(false)
                    }
                    Err(e) => Err(PersistenceError::db("killing an abandoned connection")(e)),
                }
            })
            .await?;
            if killed {
                tracing::info!(
                    connection = id,
                    "The database writer killed its abandoned connection (and its transaction)."
                );
            }
            self.kills_pending.pop();
        }
        let (epoch, previous) = (self.config.epoch, self.checkpoint);
        if self.outcome_unknown {
            // The abandoned attempt's transaction has ended now (killed, timed out by the
            // server, or committed before its reply was lost): the checkpoint says which.
            let stored = with_timeout("reading the checkpoint", timeout, async {
                store::read_checkpoint(conn).await
            })
            .await?;
            self.outcome_unknown = false;
            if stored.seq == batch.seq_last && stored.seq > previous.seq {
                tracing::info!(
                    seq = stored.seq,
                    "The abandoned batch had committed (only its reply was lost)."
                );
                return Ok(stored);
            }
            if stored.seq != previous.seq {
                return Err(PersistenceError::CheckpointConflict {
                    expected: previous.seq,
                });
            }
        }
        store::write_batch(conn, &mut self.statements, batch, epoch, previous).await
    }

    /// Drops the connection after a failed attempt without handing it back to the pool (it may
    /// be stuck mid-statement), and remembers it to be killed on the server.
    fn abandon_connection(&mut self) {
        self.outcome_unknown = true;
        if let Some(conn) = self.conn.take() {
            // Closes the socket at once; the pool may open a replacement.
            drop(conn.detach());
        }
        if let Some(id) = self.conn_id.take() {
            if self.kills_pending.len() >= KILLS_PENDING_MAX {
                self.kills_pending.remove(0);
            }
            self.kills_pending.push(id);
        }
    }

    fn on_committed(&mut self, checkpoint: Checkpoint, commands: u64, rows: u64) {
        let m = &self.metrics;
        if !m.database_ok.load(Ordering::Acquire) {
            tracing::info!(
                seq = checkpoint.seq,
                "The database is reachable again; the writer is catching up."
            );
        }
        self.checkpoint = checkpoint;
        self.backoff = self.config.retry_backoff_min;
        m.checkpoint_ts_ns
            .store(checkpoint.ts_ns, Ordering::Release);
        m.checkpoint_seq.store(checkpoint.seq, Ordering::Release);
        m.batches_committed.fetch_add(1, Ordering::Relaxed);
        m.commands_written.fetch_add(commands, Ordering::Relaxed);
        m.rows_written.fetch_add(rows, Ordering::Relaxed);
        if self.builder.batch().is_empty() {
            m.oldest_pending_ts_ns.store(0, Ordering::Release);
        }
        m.set_error(None);
        self.log_lag();
    }

    fn on_failed(&mut self, e: &PersistenceError) {
        let retries = self.metrics.retries.fetch_add(1, Ordering::Relaxed) + 1;
        let first = self.metrics.database_ok.load(Ordering::Acquire);
        self.metrics.set_error(Some(e.to_string()));
        if e.needs_operator() {
            tracing::error!(error = %e, retries, "A database batch failed and will keep failing until an operator acts; the writer retries, the node goes on.");
        } else if first || retries.is_multiple_of(20) {
            tracing::warn!(error = %e, retries, backoff_ms = self.backoff.as_millis() as u64, "A database batch failed; the writer retries with backoff, the node goes on.");
        }
    }

    async fn pause(&mut self) {
        tokio::time::sleep(self.backoff).await;
        self.backoff = (self.backoff * 2).min(self.config.retry_backoff_max);
    }

    fn log_lag(&mut self) {
        if self.last_lag_log.elapsed() < self.config.lag_log_every {
            return;
        }
        self.last_lag_log = Instant::now();
        let status = self.metrics.status(now_ns());
        if status.lag_seq > 0 {
            tracing::info!(
                lag_seq = status.lag_seq,
                lag_s = status.lag_seconds,
                %status,
                "The database writer is behind the node."
            );
        }
    }
}
