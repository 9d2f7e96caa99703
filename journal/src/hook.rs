//! [`SyncHook`]: a seam through which a test observes every completed sync, to build the
//! "disk as of the last completed sync" for a simulated power loss.
//!
//! The journal calls the hook right after a sync returned successfully, before anything else
//! is written, so the file contents of the reported range at that moment are exactly what
//! reached stable storage.
//!
//! **Performance**: one predictable branch per sync when no hook is installed.
//!
//! **Known limitations**: syncs made inside `Journal::create` / `Journal::open` (segment 1's
//! header pages, recovery's zeroing) happen before a hook can be installed and are not
//! reported; the first commit's sync covers the header pages again.

use std::path::Path;

/// One completed sync.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SyncEvent<'a> {
    /// `msync(MS_SYNC)` of `[offset_start, offset_end)` of a segment file returned.
    SegmentSynced {
        segment: &'a Path,
        offset_start: u64,
        offset_end: u64,
        /// The last frame seq inside the synced range (0 if none).
        seq_last: u64,
        /// The watermark value in this segment's watermark page, now on disk.
        watermark_seq: u64,
    },
    /// `msync(MS_SYNC)` of the whole watermark file returned.
    WatermarkFileSynced { path: &'a Path, watermark_seq: u64 },
    /// `fsync` of the journal directory returned (segment creations/removals are durable).
    DirectorySynced { dir: &'a Path },
}

/// Observer of completed syncs; see the module docs.
pub trait SyncHook: Send {
    fn on_sync(&mut self, event: &SyncEvent<'_>);
}

impl<F> SyncHook for F
where
    F: FnMut(&SyncEvent<'_>) + Send,
{
    fn on_sync(&mut self, event: &SyncEvent<'_>) {
        self(event)
    }
}
