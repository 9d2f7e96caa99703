//! Failpoints for child-process fault tests, compiled in only with the `failpoints` feature.
//!
//! `KUKU_FAILPOINT=<name>=<n>` arms the failpoint `<name>`: the n-th time (1-based) the process
//! passes it, it fires. Firing first writes one line to stderr, `failpoint <name> fired (pass
//! <n>)`, so a parent test can time what follows; then what it does depends on the point:
//! - **Crash points** SIGKILL the process: `journal::after_append`,
//!   `journal::commit_before_sync`, `journal::commit_after_sync`,
//!   `journal::commit_after_watermark`, `journal::after_roll`, `snapshot::before_rename`.
//!   SIGKILL, not `abort`, because it is exactly what an operator's `kill -9` or the OOM killer
//!   does: no unwinding, no destructors, no core file. The page cache survives, so these tests
//!   prove recovery after a process crash; power loss is simulated separately through
//!   [`crate::SyncHook`].
//! - **Error points** make the operation return an I/O error, as a failing device would:
//!   `journal::append_fails` (an append, before it writes anything) and
//!   `journal::commit_sync_fails` (the msync of an `every-batch` commit that has frames to
//!   sync; the journal is poisoned exactly as after a real failed msync). They test what the
//!   journal's user does with a failed write (the node stops at once: ADR-012).
//! - **A full disk**: `journal::segment_enospc` makes preparing a segment file (the first
//!   segment of a new journal, or the next one, on the helper thread or at a roll) fail with
//!   `ENOSPC`, at the n-th preparation and every one after it, as a disk that stays full.
//!
//! A hand-written hook rather than the `fail` crate: the tests need one point armed per process,
//! chosen by the parent through the environment, which is twenty lines; `fail` would add a
//! dependency and a global registry behind a lock.
//!
//! **Performance**: without the feature, a failpoint is an empty inline function (an error
//! point returns a constant `Ok`). With it, an unarmed process pays one `OnceLock` load per
//! hit.
//!
//! **Known limitations**: one armed failpoint per process; a malformed `KUKU_FAILPOINT` panics
//! at the first hit (it is test configuration, and a loud failure beats a silently unarmed
//! test). Test builds of this crate enable the feature through a dev-dependency on itself, so a
//! workspace-wide test or bench build compiles the (unarmed) hooks into every user of the crate.

/// Every failpoint name this crate defines (crash points, then error points).
pub const FAILPOINTS: &[&str] = &[
    "journal::after_append",
    "journal::commit_before_sync",
    "journal::commit_after_sync",
    "journal::commit_after_watermark",
    "journal::after_roll",
    "snapshot::before_rename",
    "journal::append_fails",
    "journal::commit_sync_fails",
    "journal::segment_enospc",
];

/// The environment variable that arms a failpoint.
pub const FAILPOINT_ENV: &str = "KUKU_FAILPOINT";

/// A crash point: SIGKILLs the process when it fires.
#[cfg(not(feature = "failpoints"))]
#[inline(always)]
pub(crate) fn hit(_name: &'static str) {}

/// An error point: returns an I/O error when it fires.
#[cfg(not(feature = "failpoints"))]
#[inline(always)]
pub(crate) fn fail(_name: &'static str) -> std::io::Result<()> {
    Ok(())
}

/// A full-disk point: from its n-th pass on, returns the OS error `ENOSPC`.
#[cfg(not(feature = "failpoints"))]
#[inline(always)]
pub(crate) fn no_space(_name: &'static str) -> std::io::Result<()> {
    Ok(())
}

/// A full-disk point: from its n-th pass on, returns the OS error `ENOSPC`.
#[cfg(feature = "failpoints")]
pub(crate) fn no_space(name: &'static str) -> std::io::Result<()> {
    if fires_from(name) {
        return Err(std::io::Error::from_raw_os_error(libc::ENOSPC));
    }
    Ok(())
}

/// A crash point: SIGKILLs the process when it fires.
#[cfg(feature = "failpoints")]
pub(crate) fn hit(name: &'static str) {
    if fires(name) {
        kill_self();
    }
}

/// Ends the process with SIGKILL, as `kill -9` would: no unwinding, no destructors.
pub fn kill_self() -> ! {
    // SAFETY: kill(2) with our own pid and a valid signal number has no memory-safety
    // preconditions; SIGKILL does not return.
    unsafe {
        libc::kill(libc::getpid(), libc::SIGKILL);
    }
    std::process::abort();
}

/// An error point: returns an I/O error when it fires.
#[cfg(feature = "failpoints")]
pub(crate) fn fail(name: &'static str) -> std::io::Result<()> {
    if fires(name) {
        return Err(std::io::Error::other(format!(
            "failpoint {name}: an injected I/O error"
        )));
    }
    Ok(())
}

/// Counts a pass of `name`; true on the armed pass (after writing the line that says so).
#[cfg(feature = "failpoints")]
fn fires(name: &'static str) -> bool {
    armed().is_some_and(|armed| armed.pass(name))
}

/// Counts a pass of `name`; true on the armed pass and every pass after it.
#[cfg(feature = "failpoints")]
fn fires_from(name: &'static str) -> bool {
    armed().is_some_and(|armed| armed.count(name).is_some_and(|(pass, at)| pass >= at))
}

#[cfg(feature = "failpoints")]
fn armed() -> Option<&'static Armed> {
    static ARMED: std::sync::OnceLock<Option<Armed>> = std::sync::OnceLock::new();
    ARMED
        .get_or_init(|| Armed::from_env(FAILPOINT_ENV, FAILPOINTS))
        .as_ref()
}

/// The one failpoint a process armed through its environment: `<ENV>=<name>=<n>` fires
/// `<name>` on its n-th pass. Shared by every crate's failpoints (each keeps its own variable
/// and names), so the parsing and the line a parent test waits for are the same everywhere.
pub struct Armed {
    name: String,
    hit_at: u64,
    hits: std::sync::atomic::AtomicU64,
}

impl Armed {
    /// The failpoint armed in `env`, if any. A malformed value panics: it is test
    /// configuration, and a loud failure beats a silently unarmed test.
    pub fn from_env(env: &str, names: &[&str]) -> Option<Armed> {
        let spec = std::env::var(env).ok()?;
        let parsed = spec
            .rsplit_once('=')
            .and_then(|(name, n)| Some((name, n.parse::<u64>().ok()?)))
            .filter(|(name, n)| names.contains(name) && *n >= 1);
        let Some((name, hit_at)) = parsed else {
            panic!("{env}={spec:?}: expected <name>=<n>, n >= 1, name one of {names:?}");
        };
        Some(Armed {
            name: name.to_owned(),
            hit_at,
            hits: std::sync::atomic::AtomicU64::new(0),
        })
    }

    /// Counts a pass of `name`; true on the armed pass, after writing `failpoint <name> fired
    /// (pass <n>)` to stderr.
    pub fn pass(&self, name: &str) -> bool {
        self.count(name).is_some_and(|(pass, at)| pass == at)
    }

    /// Counts a pass of `name` if it is the armed failpoint: (this pass, the armed pass).
    /// Writes the line that says it fired on the armed pass.
    pub fn count(&self, name: &str) -> Option<(u64, u64)> {
        use std::sync::atomic::Ordering;
        if self.name != name {
            return None;
        }
        let pass = self.hits.fetch_add(1, Ordering::Relaxed) + 1;
        if pass == self.hit_at {
            eprintln!("failpoint {name} fired (pass {})", self.hit_at);
        }
        Some((pass, self.hit_at))
    }
}
