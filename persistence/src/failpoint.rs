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
    use kuku_journal::failpoint::Armed;
    static ARMED: std::sync::OnceLock<Option<Armed>> = std::sync::OnceLock::new();
    let armed = ARMED.get_or_init(|| Armed::from_env(FAILPOINT_ENV, FAILPOINTS));
    if armed.as_ref().is_some_and(|a| a.pass(name)) {
        kuku_journal::failpoint::kill_self();
    }
}
