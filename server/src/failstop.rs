//! Fail-stop (ADR-012): a fault the node cannot reason about ends the process at once, so a
//! supervisor restarts it or a standby takes over, instead of a half-working node holding its
//! port open.
//!
//! - **A panic in any thread**: [`install_panic_hook`] (called by `kuku serve` and `kuku demo`)
//!   replaces the default hook with one that writes one line to stderr (the thread, the panic
//!   message and location and, on the processor or journaller thread, the seq and kind of the
//!   command in hand) and aborts the process (SIGABRT) before the panicking thread unwinds.
//! - **A command-log failure** ([`LogError::Failed`]: the journal cannot append or sync, the
//!   epoch cannot be raised): [`log_failed`] writes one line and ends the process with status
//!   [`EXIT_LOG_FAILURE`] through `_exit(2)`. A log that *refuses* commands by design
//!   ([`LogError::Refused`]: a fenced node, a `sync` shutdown without a standby) is not a fault:
//!   the pipeline halts and the node stays up (`PipelineStatus::halted`).
//!
//! The line starts with `kuku: FAIL-STOP:` and is written with `eprintln`-style direct writes
//! to stderr, not through `tracing`: it shows whatever the log filter, and a panic inside the
//! logging code cannot deadlock it.
//!
//! **Invariants**
//! - Nothing is acknowledged for a command at or after the fault. Replies leave through the
//!   output ring, which carries a command's events only after its batch was journaled and the
//!   command applied; the processor keeps a command's events private until the command returns
//!   (see `BufferSink` in `pipeline`), so a panic in `apply` publishes none of them, and the
//!   faulting thread never returns to publish more. The other threads stop with the process,
//!   having got at most as far as events already published, which belong to earlier commands.
//! - A log failure never returns to the pipeline: the failed command is not applied.
//!
//! **Performance**: the journaller and the processor note the command in hand once per
//! command ([`note_command`]): one 16-byte store to a thread-local `Cell`, const-initialised
//! and without a destructor, so there is no lazy-initialisation check and no atomic; on x86-64
//! it is a plain `mov` relative to `%fs` next to the hundreds of nanoseconds the command
//! costs. Nothing else runs on the hot path; the hook and the exit are cold.
//!
//! **Known limitations**
//! - A command emitting more events than the processor's buffer holds (128) publishes its
//!   first ones before it returns; if it panics after that, consumers may have seen part of
//!   its events: in practice an order that sweeps many resting orders or a cancel-all of many
//!   orders (each fill or cancel emits several events).
//! - The hook aborts on every panic, including one a library would have caught
//!   (`catch_unwind`, e.g. a tokio task behind the metrics endpoint): in this process a panic is
//!   always a bug, and a bug in any thread stops the node.
//! - After a panic on the processor, the seq in the line is that of the command being applied,
//!   or, if the panic came between commands (publishing a batch), of the last one applied.

use crate::pipeline::LogError;
use kuku_engine::CommandKind;
use std::cell::Cell;
use std::io::Write;

/// The exit status after a command-log failure (`EX_IOERR` in sysexits.h). A panic ends the
/// process by SIGABRT instead (status 134 in a shell).
pub const EXIT_LOG_FAILURE: i32 = 74;

thread_local! {
    /// The command this thread is handling: (seq, kind). Written by the journaller and the
    /// processor, read by the panic hook on the same thread.
    static COMMAND: Cell<Option<(u64, CommandKind)>> = const { Cell::new(None) };
}

/// Records the command this thread is about to handle, for the panic hook's line.
#[inline(always)]
pub(crate) fn note_command(seq: u64, kind: CommandKind) {
    COMMAND.set(Some((seq, kind)));
}

/// Makes every panic in this process fail-stop: one line to stderr, then `abort`. Call it
/// once, first thing in a binary that runs a node; library users (tests) keep the default hook.
pub fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let thread = std::thread::current();
        let thread = thread.name().unwrap_or("<unnamed>");
        let message = info
            .payload_as_str()
            .unwrap_or("<a non-string panic payload>");
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "kuku: FAIL-STOP: thread '{thread}' panicked");
        if let Some(at) = info.location() {
            let _ = write!(err, " at {at}");
        }
        // escape_debug keeps a multi-line message (an assert's left/right) on the one line.
        let _ = write!(err, ": {}", message.escape_debug());
        if let Some((seq, kind)) = COMMAND.get() {
            let _ = write!(err, "; command seq {seq} ({kind:?})");
        }
        let _ = writeln!(
            err,
            "; the process aborts (docs/operations.md, Fail-stop: find the command with \
             `kuku-replay dump`, fix the code, restart; never skip the command)"
        );
        // No backtrace: symbolising one can take longer than the process has to live. The
        // engine's panics are reproduced offline with a backtrace by `kuku-replay replay
        // --until <seq>` (docs/operations.md), and `abort` leaves a core file where enabled.
        drop(err);
        std::process::abort();
    }));
}

/// Ends the process after a command-log failure at `seq` (the append that failed, or the last
/// seq of the batch whose commit failed). `unapplied_from` is the first seq the processor has
/// not applied: nothing from it on was applied or acknowledged.
#[cold]
pub(crate) fn log_failed(seq: u64, unapplied_from: u64, error: &LogError) -> ! {
    let thread = std::thread::current();
    let _ = writeln!(
        std::io::stderr().lock(),
        "kuku: FAIL-STOP: thread '{}': {error} (seq {seq}); nothing from seq {unapplied_from} \
         on was applied or acknowledged; the process exits with status {EXIT_LOG_FAILURE} \
         (docs/operations.md, Fail-stop: fix the storage, restart; recovery resumes from the \
         journal)",
        thread.name().unwrap_or("<unnamed>"),
    );
    // SAFETY: _exit(2) has no memory-safety preconditions. It ends every thread at once
    // without running atexit handlers or destructors (none of which may run now: other
    // threads are still using what they would tear down).
    unsafe { libc::_exit(EXIT_LOG_FAILURE) }
}
