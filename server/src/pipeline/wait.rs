//! Wait strategies for ring consumers, chosen by configuration (ADR-006).
//!
//! The `disruptor` crate's `WaitStrategy` is a trait; this enum picks one at run time:
//! - `BusySpin`: lowest latency, burns its core (only for the pinned processor);
//! - `SpinHint`: busy spin with `spin_loop` hints;
//! - `Yield`: `sched_yield` between polls;
//! - `Backoff`: spin briefly, then yield, then sleep `BACKOFF_SLEEP` (with the thread's timer
//!   slack lowered, the sleep is close to its nominal length).
//! - `Block`: spin briefly, then sleep on a futex until the stage feeding this thread signals
//!   new work ([`Signal`]); an idle thread uses no CPU and wakes as soon as work arrives. The
//!   default for every thread (docs/architecture.md §10: no spinning in tests).
//!
//! **Performance**: `Backoff` adds at most about `BACKOFF_SLEEP` of latency to the first event
//! after an idle period, and its spinning, yielding and 50 µs timer wake-ups cost CPU that a
//! 2-core machine does not have (measured: ADR-006). `Block` costs the publisher one atomic
//! add per publish, plus a `futex_wake` only while a consumer sleeps; a sleeping consumer
//! wakes in one scheduler wake-up.
//!
//! **Known limitations**: `Block` needs the [`Signal`] of the ring it waits on installed on
//! its thread ([`install_signal`]); without one it falls back to `Backoff`. A stage whose
//! progress is published by the `disruptor` crate after the handler returns (the processor
//! behind the journaller) is signalled just before that store; the waiter spins briefly after
//! every signal to catch it, and its futex wait has a timeout (`BLOCK_TIMEOUT`), so a lost
//! wake-up costs at most that.

use disruptor::Sequence;
use disruptor::wait_strategies::WaitStrategy;
use serde::{Deserialize, Serialize};
use std::cell::{Cell, RefCell};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

/// How long a backed-off consumer sleeps between polls.
pub const BACKOFF_SLEEP: Duration = Duration::from_micros(50);
const SPINS_MAX: u32 = 100;
const YIELDS_MAX: u32 = 200;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Wait {
    BusySpin,
    SpinHint,
    Yield,
    Backoff,
    Block,
}

/// The longest a `Block` waiter sleeps without a signal (a safety net for a lost wake-up).
pub const BLOCK_TIMEOUT: Duration = Duration::from_micros(500);
const BLOCK_SPINS: u32 = 64;

/// An event count: a publisher calls [`Signal::notify`] after publishing; `Block` waiters
/// sleep on it until its epoch moves.
#[derive(Debug, Default)]
pub struct Signal {
    epoch: AtomicU32,
    sleepers: AtomicU32,
}

impl Signal {
    /// Wakes every sleeping waiter (one atomic add when nobody sleeps).
    #[inline]
    pub fn notify(&self) {
        self.epoch.fetch_add(1, Ordering::SeqCst);
        if self.sleepers.load(Ordering::SeqCst) > 0 {
            futex_wake_all(&self.epoch);
        }
    }

    fn epoch(&self) -> u32 {
        self.epoch.load(Ordering::SeqCst)
    }

    /// Sleeps while the epoch is `seen` (at most `BLOCK_TIMEOUT`).
    fn wait(&self, seen: u32) {
        self.sleepers.fetch_add(1, Ordering::SeqCst);
        futex_wait(&self.epoch, seen, BLOCK_TIMEOUT);
        self.sleepers.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Per thread: the signal `Block` waits on, and (epoch seen, spins since it moved).
struct BlockState {
    signal: Option<Arc<Signal>>,
    seen: u32,
    spins: u32,
}

thread_local! {
    static BLOCK: RefCell<BlockState> = const {
        RefCell::new(BlockState { signal: None, seen: 0, spins: 0 })
    };
}

/// Makes `Block` on this thread wait on `signal` (call it in the thread's init closure).
pub fn install_signal(signal: Arc<Signal>) {
    BLOCK.with(|b| {
        let mut b = b.borrow_mut();
        b.seen = signal.epoch();
        b.spins = 0;
        b.signal = Some(signal);
    });
}

/// One `Block` wait step; false when no signal is installed. (No `Arc` clone here: its
/// reference count shares a cache line with the epoch the publishers bump.)
fn block_step() -> bool {
    BLOCK.with(|b| {
        let mut b = b.borrow_mut();
        let BlockState {
            signal,
            seen,
            spins,
        } = &mut *b;
        let Some(signal) = signal.as_deref() else {
            return false;
        };
        let now = signal.epoch();
        if now != *seen {
            // Something was published since we last looked: re-check, spinning for a while
            // (the store that makes it visible may come just after the signal).
            *seen = now;
            *spins = 0;
        } else if *spins < BLOCK_SPINS {
            *spins += 1;
            std::hint::spin_loop();
        } else {
            signal.wait(*seen);
        }
        true
    })
}

#[cfg(target_os = "linux")]
fn futex_wait(word: &AtomicU32, expected: u32, timeout: Duration) {
    let ts = libc::timespec {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_nsec: timeout.subsec_nanos() as libc::c_long,
    };
    // SAFETY: FUTEX_WAIT reads the aligned u32 behind `word` (alive for the call) and compares
    // it with `expected`; the timespec outlives the call. Errors (EAGAIN, ETIMEDOUT, EINTR)
    // all mean "look again", which the caller does.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT | libc::FUTEX_PRIVATE_FLAG,
            expected,
            &ts as *const libc::timespec,
        );
    }
}

#[cfg(target_os = "linux")]
fn futex_wake_all(word: &AtomicU32) {
    // SAFETY: FUTEX_WAKE only uses the address of `word` as a key.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAKE | libc::FUTEX_PRIVATE_FLAG,
            i32::MAX,
        );
    }
}

#[cfg(not(target_os = "linux"))]
fn futex_wait(word: &AtomicU32, expected: u32, timeout: Duration) {
    if word.load(Ordering::SeqCst) == expected {
        std::thread::sleep(timeout.min(BACKOFF_SLEEP));
    }
}

#[cfg(not(target_os = "linux"))]
fn futex_wake_all(_: &AtomicU32) {}

thread_local! {
    /// (sequence waited for, consecutive waits for it) on this consumer thread.
    static WAITS: Cell<(Sequence, u32)> = const { Cell::new((-1, 0)) };
}

impl WaitStrategy for Wait {
    #[inline]
    fn wait_for(&self, sequence: Sequence) {
        match self {
            Wait::BusySpin => {}
            Wait::SpinHint => std::hint::spin_loop(),
            Wait::Yield => std::thread::yield_now(),
            Wait::Block if block_step() => {}
            Wait::Block | Wait::Backoff => {
                let n = WAITS.with(|w| {
                    let (seq, n) = w.get();
                    let n = if seq == sequence {
                        n.saturating_add(1)
                    } else {
                        0
                    };
                    w.set((sequence, n));
                    n
                });
                if n < SPINS_MAX {
                    std::hint::spin_loop();
                } else if n < YIELDS_MAX {
                    std::thread::yield_now();
                } else {
                    std::thread::sleep(BACKOFF_SLEEP);
                }
            }
        }
    }
}

/// Lowers this thread's timer slack to 1 us so short sleeps are not stretched to 50 us
/// (Linux's default slack). A no-op elsewhere.
pub fn lower_timer_slack() {
    #[cfg(target_os = "linux")]
    // SAFETY: PR_SET_TIMERSLACK takes one integer argument and only affects this thread.
    unsafe {
        libc::prctl(libc::PR_SET_TIMERSLACK, 1_000u64, 0, 0, 0);
    }
}
