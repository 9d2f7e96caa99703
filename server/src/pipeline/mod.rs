//! The LMAX-shaped pipeline: producers -> input ring -> journaller -> processor -> output ring
//! -> independent consumers.
//!
//! - **Input ring** (`disruptor` multi-producer): gateway sessions, the admin session, the
//!   scheduler and the market-data feed publish [`InputSlot`]s with `try_publish`; a full ring
//!   is an immediate [`Busy`], never a block.
//! - **Journaller** (one thread): appends each command to the [`CommandLog`] and, at the end
//!   of each batch, commits (group commit: one sync per batch in `every-batch` mode). The
//!   `disruptor` crate publishes a consumer's progress only after its whole batch, so the
//!   processor never sees a command before the batch holding it was committed.
//!   Replication ([K7]) joins this stage.
//! - **Processor** (one thread, optionally pinned): owns the [`Engine`]; applies each
//!   command and publishes its events to the output ring, tagged with the command's seq, ts
//!   and origin, the command's last event flagged. It never does I/O.
//! - **Output ring** (`disruptor` single producer): consumers run as managed handler threads
//!   or poll from threads they own (an [`OutputPoller`]); after each batch the processor calls
//!   every registered [`Notify`] once (e.g. a `mio::Waker`), so a mio loop needs no timeout.
//!
//! **Invariants**
//! - `seq` = the recovered base + ring sequence + 1: dense from 1 across restarts.
//! - The processor applies only commands the journaller committed; if the log fails, the
//!   pipeline halts (nothing more is applied or acknowledged) and reports it.
//! - Every command yields events; exactly one of them has `last = true`.
//!
//! **Performance**: no allocation per command on the journaller or processor (a
//! `StartOfDay`'s base-price list is the only heap data a command carries); one output slot
//! write per event.

pub mod wait;

use crate::pipeline::wait::{Wait, lower_timer_slack};
use disruptor::{
    BusySpin, EventPoller, MultiConsumerBarrier, MultiProducer, ProcessorSettings, Producer,
    RingBufferFull, Sequence, SingleConsumerBarrier, SingleProducer,
};
use kuku_engine::{Command, Engine, Event, EventSink};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Who submitted a command; its events carry it back (0: internal, e.g. the scheduler).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Origin(pub u64);

impl Origin {
    pub const INTERNAL: Origin = Origin(0);
}

/// One slot of the input ring.
pub struct InputSlot {
    /// Nanoseconds since the Unix epoch, stamped at publish (before the journal write).
    pub ts: u64,
    pub origin: Origin,
    pub command: Command,
}

/// One slot of the output ring: an event and the command it came from.
#[derive(Clone, Copy, Debug)]
pub struct OutputSlot {
    pub seq: u64,
    pub ts: u64,
    pub origin: Origin,
    pub event: Event,
    /// True on the command's last event.
    pub last: bool,
}

/// The input ring was full: the command was not accepted (and used no idempotency key).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("busy: the input ring is full, retry later")]
pub struct Busy;

/// Where the journaller writes commands.
pub trait CommandLog: Send + 'static {
    fn append(&mut self, seq: u64, ts: u64, command: &Command) -> Result<(), LogError>;
    /// Ends a batch (group commit: in `every-batch` mode it returns once the batch is on
    /// disk; in `none` mode once it is in the page cache).
    fn commit(&mut self) -> Result<(), LogError>;
}

#[derive(Debug, thiserror::Error)]
#[error("command log failed: {0}")]
pub struct LogError(pub String);

/// Called once per output batch by the processor (e.g. wakes a mio loop).
pub trait Notify: Send + Sync {
    fn notify(&self);
}

impl<F: Fn() + Send + Sync> Notify for F {
    fn notify(&self) {
        self()
    }
}

/// Shared counters of a running pipeline.
#[derive(Debug, Default)]
pub struct PipelineStatus {
    /// The last seq the journaller committed (durable as the durability mode defines it).
    pub journaled_seq: AtomicU64,
    /// The last seq the processor applied.
    pub applied_seq: AtomicU64,
    /// Commands refused with `Busy`.
    pub busy: AtomicU64,
    /// Journal batches committed (commands journaled / batches = the group-commit size).
    pub batches: AtomicU64,
    /// Set when the command log failed: nothing after `journaled_seq` is applied.
    pub halted: AtomicBool,
}

/// A managed output consumer: runs on its own thread with the given wait strategy.
pub type OutputHandler = Box<dyn FnMut(&OutputSlot, Sequence, bool) + Send>;

/// An output consumer that polls from a thread it owns.
pub type OutputPoller = EventPoller<OutputSlot, disruptor::SingleProducerBarrier>;

#[derive(Clone, Copy, Debug)]
pub struct PipelineConfig {
    /// Input ring slots (a power of two).
    pub input_ring_size: usize,
    /// Output ring slots (a power of two).
    pub output_ring_size: usize,
    pub journal_wait: Wait,
    pub processor_wait: Wait,
    pub consumer_wait: Wait,
    /// Pin the processor thread to this core.
    pub processor_core: Option<usize>,
    /// Runs first on the processor thread (tests: e.g. mark the thread for an allocation
    /// counter). `None` in production.
    pub on_processor_start: Option<fn()>,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        PipelineConfig {
            input_ring_size: 1 << 16,
            output_ring_size: 1 << 18,
            journal_wait: Wait::Backoff,
            processor_wait: Wait::Backoff,
            consumer_wait: Wait::Backoff,
            processor_core: None,
            on_processor_start: None,
        }
    }
}

/// A cloneable handle to publish commands into the input ring.
#[derive(Clone)]
pub struct Submitter {
    producer: MultiProducer<InputSlot, SingleConsumerBarrier>,
    status: Arc<PipelineStatus>,
}

impl Submitter {
    /// Publishes `command`, stamped with the current time. `Busy` if the ring is full.
    #[inline]
    pub fn try_submit(&mut self, origin: Origin, command: Command) -> Result<(), Busy> {
        self.try_submit_at(origin, now_ns(), command)
    }

    /// Publishes `command` with the given timestamp (a hot standby replays the primary's
    /// commands with the primary's ts, so both engines see the same time).
    #[inline]
    pub fn try_submit_at(&mut self, origin: Origin, ts: u64, command: Command) -> Result<(), Busy> {
        let mut command = Some(command);
        let published = self.producer.try_publish(|slot| {
            slot.ts = ts;
            slot.origin = origin;
            slot.command = command.take().expect("the closure runs once");
        });
        match published {
            Ok(_) => Ok(()),
            Err(RingBufferFull) => {
                self.status.busy.fetch_add(1, Ordering::Relaxed);
                Err(Busy)
            }
        }
    }

    pub fn status(&self) -> &Arc<PipelineStatus> {
        &self.status
    }
}

/// Nanoseconds since the Unix epoch (the timestamp a command is journaled with).
pub fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// A running pipeline. Dropping every [`Submitter`] (this one included) drains and stops it:
/// the journaller and processor finish the ring, then the output consumers finish theirs.
pub struct Pipeline {
    pub submitter: Submitter,
    /// The output pollers requested, in order.
    pub pollers: Vec<OutputPoller>,
    pub status: Arc<PipelineStatus>,
}

/// Where the output ring's events go.
pub struct Outputs {
    /// Managed consumers, each on its own thread.
    pub handlers: Vec<(&'static str, OutputHandler)>,
    /// How many pollers to create for consumers that own their thread.
    pub pollers: usize,
    /// Called once per output batch.
    pub notifiers: Vec<Arc<dyn Notify>>,
}

/// Starts the threads. `engine` is the recovered state; `base_seq` its last applied seq.
pub fn start(
    config: PipelineConfig,
    engine: Engine,
    log: Box<dyn CommandLog>,
    outputs: Outputs,
) -> Pipeline {
    let status = Arc::new(PipelineStatus::default());
    let base_seq = engine.last_seq();
    status.journaled_seq.store(base_seq, Ordering::Relaxed);
    status.applied_seq.store(base_seq, Ordering::Relaxed);

    let (output, pollers) = build_output(&config, outputs.handlers, outputs.pollers);

    let journal_stage = {
        let status = Arc::clone(&status);
        let mut log = log;
        move |_: &mut (), slot: &InputSlot, seq: Sequence, end_of_batch: bool| {
            journal_one(&mut *log, &status, base_seq, slot, seq, end_of_batch);
        }
    };
    let processor = Processor {
        engine,
        output,
        base_seq,
        status: Arc::clone(&status),
        notifiers: outputs.notifiers,
        published: false,
    };
    let mut builder =
        disruptor::build_multi_producer(config.input_ring_size, input_factory, BusySpin)
            .thread_name("kuku-journal")
            .handle_events_and_state_with_wait_strategy(
                journal_stage,
                init_consumer_thread,
                config.journal_wait,
            )
            .and_then()
            .thread_name("kuku-processor");
    if let Some(core) = config.processor_core {
        builder = builder.pin_at_core(core);
    }
    let processor_wait = config.processor_wait;
    let on_start = config.on_processor_start;
    let producer = builder
        .handle_events_and_state_with_wait_strategy(
            Processor::on_command,
            move || {
                if processor_wait != Wait::BusySpin {
                    lower_timer_slack();
                }
                if let Some(hook) = on_start {
                    hook();
                }
                processor
            },
            processor_wait,
        )
        .build();
    Pipeline {
        submitter: Submitter {
            producer,
            status: Arc::clone(&status),
        },
        pollers,
        status,
    }
}

fn init_consumer_thread() {
    lower_timer_slack();
}

fn input_factory() -> InputSlot {
    InputSlot {
        ts: 0,
        origin: Origin::INTERNAL,
        command: Command::TakeSnapshot,
    }
}

fn output_factory() -> OutputSlot {
    OutputSlot {
        seq: 0,
        ts: 0,
        origin: Origin::INTERNAL,
        event: Event::SnapshotMarker,
        last: false,
    }
}

type Output = SingleProducer<OutputSlot, MultiConsumerBarrier>;

fn build_output(
    config: &PipelineConfig,
    handlers: Vec<(&'static str, OutputHandler)>,
    poller_count: usize,
) -> (Output, Vec<OutputPoller>) {
    let mut builder =
        disruptor::build_single_producer(config.output_ring_size, output_factory, BusySpin)
            .with_multi_consumer();
    let mut pollers = Vec::with_capacity(poller_count);
    for _ in 0..poller_count {
        let (poller, next) = builder.new_event_poller();
        pollers.push(poller);
        builder = next;
    }
    for (name, mut handler) in handlers {
        builder = builder
            .thread_name(name)
            .handle_events_and_state_with_wait_strategy(
                move |_: &mut (), slot: &OutputSlot, seq: Sequence, eob: bool| {
                    handler(slot, seq, eob)
                },
                init_consumer_thread,
                config.consumer_wait,
            );
    }
    (builder.build(), pollers)
}

fn journal_one(
    log: &mut dyn CommandLog,
    status: &PipelineStatus,
    base_seq: u64,
    slot: &InputSlot,
    ring_seq: Sequence,
    end_of_batch: bool,
) {
    if status.halted.load(Ordering::Relaxed) {
        return;
    }
    let seq = base_seq + ring_seq as u64 + 1;
    if let Err(e) = log.append(seq, slot.ts, &slot.command) {
        halt(status, seq, &e);
        return;
    }
    if end_of_batch {
        match log.commit() {
            Ok(()) => {
                status.batches.fetch_add(1, Ordering::Relaxed);
                status.journaled_seq.store(seq, Ordering::Release);
            }
            Err(e) => halt(status, seq, &e),
        }
    }
}

fn halt(status: &PipelineStatus, seq: u64, e: &LogError) {
    status.halted.store(true, Ordering::Release);
    tracing::error!(
        seq,
        error = %e,
        "The command log failed, so the node halts: nothing after the last durable command \
         is applied or acknowledged. Restart the node to recover from the journal."
    );
}

/// The processor thread's state.
struct Processor {
    engine: Engine,
    output: Output,
    base_seq: u64,
    status: Arc<PipelineStatus>,
    notifiers: Vec<Arc<dyn Notify>>,
    /// Whether this batch published any output (to notify once at its end).
    published: bool,
}

impl Processor {
    fn on_command(&mut self, slot: &InputSlot, ring_seq: Sequence, end_of_batch: bool) {
        let seq = self.base_seq + ring_seq as u64 + 1;
        if seq > self.status.journaled_seq.load(Ordering::Acquire) {
            // Only after a log failure: the command was never made durable.
            debug_assert!(self.status.halted.load(Ordering::Relaxed));
            return;
        }
        let mut sink = RingSink {
            output: &mut self.output,
            seq,
            ts: slot.ts,
            origin: slot.origin,
            pending: None,
        };
        self.engine
            .apply_command(seq, slot.ts, &slot.command, &mut sink);
        sink.finish();
        self.published = true;
        if end_of_batch {
            self.status.applied_seq.store(seq, Ordering::Release);
            if self.published {
                for n in &self.notifiers {
                    n.notify();
                }
                self.published = false;
            }
        }
    }
}

/// Publishes a command's events to the output ring, one slot each, flagging the last: each
/// event is held back until the next arrives (or the command ends).
struct RingSink<'a> {
    output: &'a mut Output,
    seq: u64,
    ts: u64,
    origin: Origin,
    pending: Option<Event>,
}

impl RingSink<'_> {
    /// Publishes one event; while the output ring is full (a consumer lags), yields the core
    /// instead of spinning, so on a small machine the lagging consumer can run.
    #[inline]
    fn publish(&mut self, event: Event, last: bool) {
        let (seq, ts, origin) = (self.seq, self.ts, self.origin);
        let write = |slot: &mut OutputSlot| {
            slot.seq = seq;
            slot.ts = ts;
            slot.origin = origin;
            slot.event = event;
            slot.last = last;
        };
        while self.output.try_publish(write).is_err() {
            std::thread::yield_now();
        }
    }

    fn finish(&mut self) {
        if let Some(event) = self.pending.take() {
            self.publish(event, true);
        }
    }
}

impl EventSink for RingSink<'_> {
    #[inline]
    fn emit(&mut self, event: &Event) {
        if let Some(previous) = self.pending.replace(*event) {
            self.publish(previous, false);
        }
    }
}

/// A command log in memory (tests and benchmarks that exclude the disk).
#[derive(Default)]
pub struct MemoryLog {
    pub frames: Arc<std::sync::Mutex<Vec<kuku_engine::Envelope>>>,
}

impl CommandLog for MemoryLog {
    fn append(&mut self, seq: u64, ts: u64, command: &Command) -> Result<(), LogError> {
        let mut frames = self
            .frames
            .lock()
            .map_err(|_| LogError("poisoned".into()))?;
        frames.push(kuku_engine::Envelope {
            seq,
            ts,
            command: command.clone(),
        });
        Ok(())
    }

    fn commit(&mut self) -> Result<(), LogError> {
        Ok(())
    }
}
