//! Failpoints for the writer's child-process crash tests, compiled in only with the
//! `failpoints` feature.
//!
//! `KUKU_WRITER_FAILPOINT=<name>=<n>` makes the process SIGKILL itself the n-th time (1-based)
//! it passes the failpoint `<name>` (the same convention as the journal's `KUKU_FAILPOINT`,
//! under its own variable so one process can arm one of each). Points:
//! - `writer::before_checkpoint`: inside a batch's transaction, every row written, the
//!   checkpoint not yet moved, nothing committed (a crash mid-batch);
//! - `writer::after_commit`: right after a batch committed, before the writer records it.
//!
//! **Performance**: without the feature a failpoint is an empty inline function.
//!
//! **Known limitations**: one armed failpoint per process; a malformed value panics at the
//! first hit (test configuration: a loud failure beats a silently unarmed test).

/// Every failpoint name this crate defines.
pub const FAILPOINTS: &[&str] = &["writer::before_checkpoint", "writer::after_commit"];

/// The environment variable that arms a failpoint.
pub const FAILPOINT_ENV: &str = "KUKU_WRITER_FAILPOINT";

#[cfg(not(feature = "failpoints"))]
#[inline(always)]
pub(crate) fn hit(_name: &'static str) {}

#[cfg(feature = "failpoints")]
pub(crate) fn hit(name: &'static str) {
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicU64, Ordering};

    static ARMED: OnceLock<Option<(String, u64, AtomicU64)>> = OnceLock::new();
    let armed = ARMED.get_or_init(|| {
        let spec = std::env::var(FAILPOINT_ENV).ok()?;
        let parsed = spec
            .rsplit_once('=')
            .and_then(|(name, n)| Some((name, n.parse::<u64>().ok()?)))
            .filter(|(name, n)| FAILPOINTS.contains(name) && *n >= 1);
        let Some((name, hit_at)) = parsed else {
            panic!(
                "{FAILPOINT_ENV}={spec:?}: expected <name>=<n>, n >= 1, name one of {FAILPOINTS:?}"
            );
        };
        Some((name.to_owned(), hit_at, AtomicU64::new(0)))
    });
    let Some((armed_name, hit_at, hits)) = armed else {
        return;
    };
    if armed_name != name {
        return;
    }
    if hits.fetch_add(1, Ordering::Relaxed) + 1 == *hit_at {
        // SAFETY: kill(2) with our own pid and a valid signal number has no memory-safety
        // preconditions; SIGKILL does not return.
        unsafe {
            libc::kill(libc::getpid(), libc::SIGKILL);
        }
        std::process::abort();
    }
}
