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
//!   Replication (`crate::replication`) joins this stage.
//! - **Processor** (one thread, optionally pinned): owns the [`Engine`]; applies each
//!   command and publishes its events to the output ring, tagged with the command's seq, ts
//!   and origin, the command's last event flagged. It never does I/O.
//! - **Output ring** (`disruptor` single producer): consumers run as managed handler threads
//!   or poll from threads they own (an [`OutputPoller`]); after each batch the processor calls
//!   every registered [`Notify`] once (e.g. a `mio::Waker`), so a mio loop needs no timeout.
//!
//! **Invariants**
//! - `seq` = the recovered base + ring sequence + 1: dense from 1 across restarts.
//! - The processor applies only commands the journaller committed. If the log fails
//!   ([`LogError::Failed`]), the process ends at once (fail-stop, `crate::failstop`): the
//!   failed command and everything after it are never applied or acknowledged. If the log
//!   refuses commands by design ([`LogError::Refused`]), the pipeline halts: nothing more is
//!   applied or acknowledged, and [`PipelineStatus::halted`] says so.
//! - Every command yields events; exactly one of them has `last = true`.
//! - A command's events are published only after it returned from the engine (unless it
//!   emits more than the processor's buffer holds), so a panic while applying it publishes
//!   none of them.
//!
//! **Performance**: no allocation per command on the journaller or processor (a
//! `StartOfDay`'s base-price list is the only heap data a command carries); one output slot
//! write per event.

pub mod fold;
mod stream;
pub mod wait;

use crate::pipeline::wait::{Signal, Wait, install_signal, lower_timer_slack};
use crossbeam_utils::CachePadded;
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

/// One slot of the output ring: an event and the command it came from. 16-byte aligned so
/// the processor can write it with aligned streaming stores (see `stream`).
#[derive(Clone, Copy, Debug)]
#[repr(align(16))]
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
    /// True when `commit` does I/O or waits: a disk sync (group commit), shipping frames to a
    /// standby or waiting for its ack. The processor must not run such a commit (it never does
    /// I/O, and must not apply a command before its batch is committed), so the pipeline then
    /// runs `Staged` whatever its configuration says.
    fn commit_blocks(&self) -> bool {
        false
    }
}

/// Why the command log did not take a command.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// The log could not store it (an I/O error, a poisoned journal): the node fail-stops.
    #[error("the command log failed: {0}")]
    Failed(String),
    /// The log takes no more commands by design (the node is fenced, or it shuts down with a
    /// `sync` batch no standby acknowledged): the pipeline halts, the node stays up.
    #[error("the command log refused the command: {0}")]
    Refused(String),
}

/// Called once per output batch by the processor (e.g. wakes a mio loop).
pub trait Notify: Send + Sync {
    fn notify(&self);
}

impl<F: Fn() + Send + Sync> Notify for F {
    fn notify(&self) {
        self()
    }
}

/// Shared counters of a running pipeline. Each sits on its own cache line: the processor
/// stores `journaled_seq` per command (fused layout) while producers bump `busy` on every
/// refusal, so sharing a line would move it between cores on each refusal under overload.
#[derive(Debug, Default)]
pub struct PipelineStatus {
    /// The last seq the journaller committed (durable as the durability mode defines it).
    pub journaled_seq: CachePadded<AtomicU64>,
    /// The last seq the processor applied.
    pub applied_seq: CachePadded<AtomicU64>,
    /// Commands refused with `Busy`.
    pub busy: CachePadded<AtomicU64>,
    /// Journal batches committed (commands journaled / batches = the group-commit size).
    pub batches: CachePadded<AtomicU64>,
    /// Set when the command log refused a command ([`LogError::Refused`]): nothing after
    /// `journaled_seq` is applied. (A log failure ends the process instead.)
    pub halted: CachePadded<AtomicBool>,
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
    /// Journal on its own thread, or on the processor's (see [`Layout`]).
    pub layout: Layout,
    /// Runs first on the processor thread (tests: e.g. mark the thread for an allocation
    /// counter). `None` in production.
    pub on_processor_start: Option<fn()>,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        PipelineConfig {
            // Sized by measurement (ADR-006): 16Ki commands and 64Ki events (~13k commands)
            // keep both rings (1.8 MiB + 11 MiB) closer to the caches than 64Ki / 256Ki did,
            // and still hold milliseconds of work at full speed.
            input_ring_size: 1 << 14,
            output_ring_size: 1 << 16,
            journal_wait: Wait::Block,
            processor_wait: Wait::Block,
            consumer_wait: Wait::Block,
            processor_core: None,
            layout: Layout::Fused,
            on_processor_start: None,
        }
    }
}

/// Where the journal is written (ADR-006).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Layout {
    /// A journaller thread appends and commits each batch; the processor thread follows it.
    Staged,
    /// The processor thread appends each command to the log, then applies it; it commits at
    /// the end of each batch. One thread and one ring hop fewer. Only for a log whose
    /// `commit` does not block ([`CommandLog::commit_blocks`]): a command is then as durable
    /// before it is applied as in `Staged` (in the page cache). With a syncing or replicating
    /// log the pipeline runs `Staged`, because a command must not be applied before its batch
    /// is on disk (or acknowledged by a standby), and the processor does no I/O. The default: it is what `durability = "none"` runs, and `every-batch` runs
    /// `Staged` through that rule.
    #[default]
    Fused,
}

/// A cloneable handle to publish commands into the input ring.
#[derive(Clone)]
pub struct Submitter {
    producer: MultiProducer<InputSlot, SingleConsumerBarrier>,
    /// Wakes the first stage (`Wait::Block`) after each publish.
    signal: Arc<Signal>,
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
            Ok(_) => {
                self.signal.notify();
                Ok(())
            }
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

    // Signals for `Wait::Block`: the input ring's (publishers -> first stage), the
    // journaller's (-> processor, staged layout) and the output ring's (-> consumers).
    let input_signal = Arc::new(Signal::default());
    let journal_signal = Arc::new(Signal::default());
    let output_signal = Arc::new(Signal::default());
    let (output, pollers) =
        build_output(&config, outputs.handlers, outputs.pollers, &output_signal);

    let fused = config.layout == Layout::Fused && !log.commit_blocks();
    let (fused_log, staged_log) = if fused {
        (Some(log), None)
    } else {
        (None, Some(log))
    };
    let processor = Processor {
        engine,
        output,
        base_seq,
        status: Arc::clone(&status),
        notifiers: outputs.notifiers,
        buffer: Vec::with_capacity(OUTPUT_BUFFER_SLOTS),
        output_signal,
        applied: base_seq,
        log: fused_log,
        flushes: 0,
    };
    let processor_wait = config.processor_wait;
    let on_start = config.on_processor_start;
    let processor_signal = Arc::clone(if fused {
        &input_signal
    } else {
        &journal_signal
    });
    let init_processor = move || {
        install_signal(processor_signal);
        if processor_wait != Wait::BusySpin {
            lower_timer_slack();
        }
        if let Some(hook) = on_start {
            hook();
        }
        processor
    };
    let builder = disruptor::build_multi_producer(config.input_ring_size, input_factory, BusySpin);
    let producer = if let Some(mut log) = staged_log {
        let journal_stage = {
            let status = Arc::clone(&status);
            let signal = Arc::clone(&journal_signal);
            move |_: &mut (), slot: &InputSlot, seq: Sequence, end_of_batch: bool| {
                journal_one(&mut *log, &status, base_seq, slot, seq, end_of_batch);
                if end_of_batch {
                    signal.notify();
                }
            }
        };
        let journal_input = Arc::clone(&input_signal);
        let mut builder = builder
            .thread_name("kuku-journal")
            .handle_events_and_state_with_wait_strategy(
                journal_stage,
                move || init_consumer_thread(journal_input),
                config.journal_wait,
            )
            .and_then()
            .thread_name("kuku-processor");
        if let Some(core) = config.processor_core {
            builder = builder.pin_at_core(core);
        }
        builder
            .handle_events_and_state_with_wait_strategy(
                Processor::on_command,
                init_processor,
                processor_wait,
            )
            .build()
    } else {
        let mut builder = builder.thread_name("kuku-processor");
        if let Some(core) = config.processor_core {
            builder = builder.pin_at_core(core);
        }
        builder
            .handle_events_and_state_with_wait_strategy(
                Processor::on_command,
                init_processor,
                processor_wait,
            )
            .build()
    };
    Pipeline {
        submitter: Submitter {
            producer,
            signal: input_signal,
            status: Arc::clone(&status),
        },
        pollers,
        status,
    }
}

fn init_consumer_thread(signal: Arc<Signal>) {
    install_signal(signal);
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
    signal: &Arc<Signal>,
) -> (Output, Vec<OutputPoller>) {
    let mut builder = disruptor::build_single_producer(
        config.output_ring_size.max(2 * OUTPUT_BUFFER_SLOTS),
        output_factory,
        BusySpin,
    )
    .with_multi_consumer();
    let mut pollers = Vec::with_capacity(poller_count);
    for _ in 0..poller_count {
        let (poller, next) = builder.new_event_poller();
        pollers.push(poller);
        builder = next;
    }
    for (name, mut handler) in handlers {
        let signal = Arc::clone(signal);
        builder = builder
            .thread_name(name)
            .handle_events_and_state_with_wait_strategy(
                move |_: &mut (), slot: &OutputSlot, seq: Sequence, eob: bool| {
                    handler(slot, seq, eob)
                },
                move || init_consumer_thread(signal),
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
    crate::failstop::note_command(seq, slot.command.kind());
    // The processor has seen nothing after the last committed batch.
    let unapplied_from = || status.journaled_seq.load(Ordering::Relaxed) + 1;
    if let Err(e) = log.append(seq, slot.ts, &slot.command) {
        stop_or_halt(status, seq, unapplied_from(), e);
        return;
    }
    if end_of_batch {
        match log.commit() {
            Ok(()) => {
                status.batches.fetch_add(1, Ordering::Relaxed);
                status.journaled_seq.store(seq, Ordering::Release);
            }
            Err(e) => stop_or_halt(status, seq, unapplied_from(), e),
        }
    }
}

/// A log failure ends the process (fail-stop); a refusal halts the pipeline.
#[cold]
fn stop_or_halt(status: &PipelineStatus, seq: u64, unapplied_from: u64, e: LogError) {
    if let LogError::Failed(_) = e {
        crate::failstop::log_failed(seq, unapplied_from, &e);
    }
    status.halted.store(true, Ordering::Release);
    tracing::error!(
        seq,
        error = %e,
        "The command log refused a command, so the node halts: nothing after the last \
         journaled command is applied or acknowledged. Stop the node and act on the reason."
    );
}

/// Output events buffered by the processor before one `batch_publish`: each publish is a
/// store to the ring's cursor, a cache line every consumer polls, so publishing per event
/// cost a cross-core cache-line transfer per event (ADR-006). 128 events (22 KiB, about 25
/// commands) keep the buffer in L1 and still publish rarely; 1024 (176 KiB) measured ~6%
/// slower.
const OUTPUT_BUFFER_SLOTS: usize = 128;

/// Within a batch, the consumers are woken after every this many flushes, not after each:
/// a consumer that keeps up sleeps between flushes, and waking it (a `futex_wake`, and a
/// scheduler wake-up on its side) after every 128 events cost the processor tens of ns of
/// kernel time per command (ADR-006). A consumer still spinning sees every flush anyway;
/// the end of a batch, and a full ring, always wake.
const FLUSHES_PER_WAKE: u32 = 8;

/// The processor thread's state.
struct Processor {
    engine: Engine,
    output: Output,
    base_seq: u64,
    status: Arc<PipelineStatus>,
    notifiers: Vec<Arc<dyn Notify>>,
    /// Events of this batch not yet published (capacity `OUTPUT_BUFFER_SLOTS`, never grown).
    buffer: Vec<OutputSlot>,
    /// Wakes the output consumers after each flush.
    output_signal: Arc<Signal>,
    /// The last seq applied (published as `applied_seq` at the end of each batch).
    applied: u64,
    /// The command log, in the fused layout only.
    log: Option<Box<dyn CommandLog>>,
    /// Flushes of this batch so far (see [`FLUSHES_PER_WAKE`]).
    flushes: u32,
}

impl Processor {
    fn on_command(&mut self, slot: &InputSlot, ring_seq: Sequence, end_of_batch: bool) {
        let seq = self.base_seq + ring_seq as u64 + 1;
        crate::failstop::note_command(seq, slot.command.kind());
        if self.journal_fused(seq, slot) && seq <= self.status.journaled_seq.load(Ordering::Acquire)
        {
            self.apply(seq, slot);
        } else {
            // Only after the log refused a command: this one was never made durable.
            debug_assert!(self.status.halted.load(Ordering::Relaxed));
        }
        if end_of_batch {
            self.end_batch(seq);
        }
    }

    /// Fused layout: appends the command to the log (false if the log failed now or before).
    /// Staged: nothing to do (the journaller did it).
    fn journal_fused(&mut self, seq: u64, slot: &InputSlot) -> bool {
        let Some(log) = self.log.as_deref_mut() else {
            return true;
        };
        if self.status.halted.load(Ordering::Relaxed) {
            return false;
        }
        if let Err(e) = log.append(seq, slot.ts, &slot.command) {
            stop_or_halt(&self.status, seq, self.applied + 1, e);
            return false;
        }
        self.status.journaled_seq.store(seq, Ordering::Release);
        true
    }

    fn apply(&mut self, seq: u64, slot: &InputSlot) {
        crate::failpoint::before_apply(&slot.command);
        let mut sink = BufferSink {
            command_start: self.buffer.len(),
            buffer: &mut self.buffer,
            output: &mut self.output,
            signal: &self.output_signal,
            flushes: &mut self.flushes,
            seq,
            ts: slot.ts,
            origin: slot.origin,
        };
        self.engine
            .apply_command(seq, slot.ts, &slot.command, &mut sink);
        if let Some(last) = self.buffer.last_mut()
            && last.seq == seq
        {
            last.last = true;
        }
        self.applied = seq;
    }

    /// Commits (fused), then publishes the batch's events and wakes the consumers, if any
    /// command of the batch was applied; also when a log refusal cut the batch short, so the
    /// commands applied before it are still answered.
    fn end_batch(&mut self, seq: u64) {
        if let Some(log) = self.log.as_deref_mut()
            && !self.status.halted.load(Ordering::Relaxed)
        {
            match log.commit() {
                Ok(()) => {
                    self.status.batches.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => stop_or_halt(&self.status, seq, self.applied + 1, e),
            }
        }
        if self.applied == self.status.applied_seq.load(Ordering::Relaxed) {
            return;
        }
        let n = self.buffer.len();
        flush(&mut self.output, &mut self.buffer, n, &self.output_signal);
        self.output_signal.notify();
        self.flushes = 0;
        self.status
            .applied_seq
            .store(self.applied, Ordering::Release);
        for n in &self.notifiers {
            n.notify();
        }
    }
}

/// Publishes the first `n` buffered events in one batch and removes them from the buffer
/// (the others move to its front); while the output ring lacks room (a consumer lags), wakes
/// the consumers (one may sleep: mid-batch flushes do not all wake them) and yields the core
/// instead of spinning, so on a small machine the consumer can run. The slots are written
/// with streaming stores, which keep the ring out of the processor's caches (`stream`,
/// ADR-006).
fn flush(output: &mut Output, buffer: &mut Vec<OutputSlot>, n: usize, signal: &Signal) {
    if n == 0 {
        return;
    }
    loop {
        let published = output.try_batch_publish(n, |slots| {
            for (slot, event) in slots.zip(buffer[..n].iter()) {
                stream::copy_slot(slot, event);
            }
            // The cursor is published when this closure returns: the streamed slots first.
            stream::publish_fence();
        });
        if published.is_ok() {
            break;
        }
        signal.notify();
        std::thread::yield_now();
    }
    buffer.drain(..n);
}

/// Buffers a command's events for the output ring. A command's last event is flagged once it
/// returns. A full buffer publishes only the events of the commands before this one, so a
/// command's events stay private until it returns (a panic while it is applied publishes
/// none of them: fail-stop). Only a command with more events than the buffer holds has its
/// earlier ones published before it ends (unflagged), so the flag still marks its last one.
struct BufferSink<'a> {
    /// Where this command's events begin in the buffer.
    command_start: usize,
    buffer: &'a mut Vec<OutputSlot>,
    output: &'a mut Output,
    signal: &'a Signal,
    /// Mid-batch flushes since the batch began (see [`FLUSHES_PER_WAKE`]).
    flushes: &'a mut u32,
    seq: u64,
    ts: u64,
    origin: Origin,
}

impl EventSink for BufferSink<'_> {
    #[inline]
    fn emit(&mut self, event: &Event) {
        if self.buffer.len() == OUTPUT_BUFFER_SLOTS {
            let done = if self.command_start > 0 {
                self.command_start
            } else {
                OUTPUT_BUFFER_SLOTS
            };
            flush(self.output, self.buffer, done, self.signal);
            self.command_start = 0;
            *self.flushes += 1;
            if self.flushes.is_multiple_of(FLUSHES_PER_WAKE) {
                self.signal.notify();
            }
        }
        self.buffer.push(OutputSlot {
            seq: self.seq,
            ts: self.ts,
            origin: self.origin,
            event: *event,
            last: false,
        });
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
            .map_err(|_| LogError::Failed("poisoned".into()))?;
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Seqs of everything the poller can read now.
    fn published(poller: &mut OutputPoller) -> Vec<u64> {
        let mut seqs = Vec::new();
        if let Ok(mut guard) = poller.take(u64::MAX) {
            for slot in &mut guard {
                seqs.push(slot.seq);
            }
        }
        seqs
    }

    /// Emits `events` events for `seq` through a sink as `Processor::apply` builds it.
    fn emit(
        output: &mut Output,
        buffer: &mut Vec<OutputSlot>,
        signal: &Signal,
        seq: u64,
        events: usize,
    ) {
        let mut flushes = 0;
        let mut sink = BufferSink {
            command_start: buffer.len(),
            buffer,
            output,
            signal,
            flushes: &mut flushes,
            seq,
            ts: 0,
            origin: Origin::INTERNAL,
        };
        for _ in 0..events {
            sink.emit(&Event::SnapshotMarker);
        }
    }

    #[test]
    fn a_full_buffer_publishes_only_the_commands_that_returned() {
        let signal = Arc::new(Signal::default());
        let (mut output, mut pollers) =
            build_output(&PipelineConfig::default(), Vec::new(), 1, &signal);
        let poller = &mut pollers[0];
        let mut buffer = Vec::with_capacity(OUTPUT_BUFFER_SLOTS);
        // Command 1 returned with 126 events; command 2 fills the buffer and goes on.
        emit(
            &mut output,
            &mut buffer,
            &signal,
            1,
            OUTPUT_BUFFER_SLOTS - 2,
        );
        assert!(published(poller).is_empty());
        emit(&mut output, &mut buffer, &signal, 2, 5);
        assert_eq!(
            published(poller),
            vec![1; OUTPUT_BUFFER_SLOTS - 2],
            "command 1's events, and none of command 2's (it has not returned)"
        );
        assert_eq!(buffer.iter().map(|s| s.seq).collect::<Vec<_>>(), [2; 5]);
        // A command with more events than the buffer holds: its first ones must go out.
        emit(
            &mut output,
            &mut buffer,
            &signal,
            3,
            OUTPUT_BUFFER_SLOTS + 10,
        );
        let seqs = published(poller);
        assert_eq!(&seqs[..5], [2; 5]);
        assert_eq!(seqs[5..], vec![3; OUTPUT_BUFFER_SLOTS]);
        assert_eq!(buffer.len(), 10);
        assert!(buffer.iter().all(|s| s.seq == 3));
    }
}
