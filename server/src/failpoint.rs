//! Failpoints of the node for child-process fail-stop tests, compiled in only with the
//! `failpoints` feature.
//!
//! `KUKU_NODE_FAILPOINT=<name>=<n>` arms the failpoint `<name>`: the n-th time (1-based) the
//! process passes it, it writes one line to stderr, `failpoint <name> fired (pass <n>)` (so a
//! parent test can time what follows), then does what the point does. The journal's own
//! points (`KUKU_FAILPOINT`, crash and I/O-error points) are in `kuku_journal::failpoint`; a
//! variable of its own lets one process arm one of each. Points:
//! - `processor::panic_on_order`: the processor panics as it is about to apply the n-th
//!   `PlaceOrder` it sees (after the command was journaled), as a bug in the engine would.
//!   Only orders are counted, so a test can aim at its own n-th order whatever the node
//!   journaled before it (fees, symbols, accounts, the trading day).
//! - `processor::stall_on_order`: the processor sleeps [`STALL`] before it applies the n-th
//!   `PlaceOrder` (a paused processor: outcomes stop arriving and the input ring fills),
//!   then goes on normally.
//!
//! **Performance**: without the feature a failpoint is an empty inline function. With it, an
//! unarmed process pays one discriminant test and, for an order, one `OnceLock` load per
//! command.
//!
//! **Known limitations**: one armed failpoint per process; a malformed value panics at the
//! first hit (test configuration: a loud failure beats a silently unarmed test). Test builds
//! of this crate enable the feature through a dev-dependency on itself, so a workspace-wide
//! test or bench build compiles the (unarmed) hook into every user of the crate.

use kuku_engine::Command;

/// Every failpoint name this crate defines.
pub const FAILPOINTS: &[&str] = &["processor::panic_on_order", "processor::stall_on_order"];

/// How long `processor::stall_on_order` pauses the processor.
pub const STALL: std::time::Duration = std::time::Duration::from_secs(3);

/// The environment variable that arms a failpoint.
pub const FAILPOINT_ENV: &str = "KUKU_NODE_FAILPOINT";

/// Runs on the processor thread just before it applies `command`.
#[cfg(not(feature = "failpoints"))]
#[inline(always)]
pub(crate) fn before_apply(_command: &Command) {}

/// Runs on the processor thread just before it applies `command`.
#[cfg(feature = "failpoints")]
pub(crate) fn before_apply(command: &Command) {
    if !matches!(command, Command::PlaceOrder(_)) {
        return;
    }
    if fires("processor::panic_on_order") {
        panic!("failpoint processor::panic_on_order: an injected bug in applying an order");
    }
    if fires("processor::stall_on_order") {
        std::thread::sleep(STALL);
    }
}

/// Counts a pass of `name`; true on the armed pass (after writing the line that says so).
#[cfg(feature = "failpoints")]
fn fires(name: &'static str) -> bool {
    use kuku_journal::failpoint::Armed;
    static ARMED: std::sync::OnceLock<Option<Armed>> = std::sync::OnceLock::new();
    ARMED
        .get_or_init(|| Armed::from_env(FAILPOINT_ENV, FAILPOINTS))
        .as_ref()
        .is_some_and(|armed| armed.pass(name))
}
