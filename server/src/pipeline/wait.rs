//! Wait strategies for ring consumers, chosen by configuration (ADR-006).
//!
//! The `disruptor` crate's `WaitStrategy` is a trait; this enum picks one at run time:
//! - `BusySpin`: lowest latency, burns its core (only for the pinned processor);
//! - `SpinHint`: busy spin with `spin_loop` hints;
//! - `Yield`: `sched_yield` between polls;
//! - `Backoff`: spin briefly, then yield, then sleep `BACKOFF_SLEEP` (with the thread's timer
//!   slack lowered, the sleep is close to its nominal length). The default for every thread
//!   except the processor, and for every thread in tests (DESIGN.md §10: no spinning).
//!
//! **Performance**: `Backoff` adds at most about `BACKOFF_SLEEP` of latency to the first event
//! after an idle period; under load it never sleeps (events are always available).

use disruptor::Sequence;
use disruptor::wait_strategies::WaitStrategy;
use serde::{Deserialize, Serialize};
use std::cell::Cell;
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
}

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
            Wait::Backoff => {
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
