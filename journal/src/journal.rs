//! [`Journal`]: the single writer. Appends frames straight into the active segment's mapping,
//! commits batches according to its [`Durability`], rolls to a new segment when a frame does
//! not fit, and keeps the durable watermark.
//!
//! A commit with `every-batch` is one `msync(MS_SYNC)` over `[0, end of written data)` of the
//! active segment; only after it returns does the watermark advance. The new watermark is
//! then stored in the segment's watermark page and in the `watermark` file (see
//! `watermark.rs`): the next commit's msync carries the former to disk, rolls and `close`
//! sync the latter. Neither costs a flush per batch; a fsynced watermark file per commit would
//! (see ADR-004).
//!
//! **Invariants**
//! - `seq_next` is dense: every append takes exactly `seq_next`, from the recovered base.
//! - Every byte of the active segment at or after `write_offset` is zero.
//! - `durable_watermark() <= seq_next - 1`, and it never decreases.
//! - After a failed sync the journal is poisoned: it refuses every later write.
//!
//! **Performance**: `append` is a seq check, a bounds check, a memcpy and a CRC into the
//! mapping: no allocation, no syscall, no lock. `commit` with `every-batch` is one msync (which
//! on Linux is `vfs_fsync_range(datasync)`: dirty pages of the range + one device cache flush);
//! with `none` it is a branch. Segments are zero-filled files, not `fallocate`d ones: a first
//! store into an unwritten extent is a page fault that allocates and converts it, which cost
//! the appender 80-100 ns per command (see [`segment::prepare_segment_file`]). When the
//! active segment is half full, a helper thread (`kuku-seg-prep`) writes the next one's
//! zeros; a roll renames and maps that file (+ an msync of the sealed segment and a directory
//! fsync with `every-batch`), once per `segment_bytes`.
//!
//! With `none`, [`Journal::start_watermark_sync`] runs a helper thread (`kuku-wm-sync`) that
//! every interval fdatasyncs the segments holding what was committed and then moves the
//! watermark file to the last committed seq: the durable watermark advances without a clean
//! stop, from a thread other than the appender, and always after the frames below it are on
//! disk. A failed sync there poisons the journal (its next commit fails).
//!
//! **Known limitations**: single writer per directory (enforced with a lock file). The first
//! segment is zero-filled on the opening thread (about 20-60 ms for 64 MiB), and a roll that
//! finds the next segment not ready waits for it. Zero-filling writes each segment twice to
//! disk (zeros, then frames, unless the frames arrive before writeback). Opening a journal
//! verifies every segment (O(journal bytes)). Dropping a `Journal` without `close` makes
//! nothing more durable: frames already appended stay in the page cache and survive a
//! process exit.

use std::fs::{self, File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use memmap2::MmapMut;

use crate::durability::Durability;
use crate::error::JournalError;
use crate::failpoint;
use crate::frame::{self, FRAME_HEADER_BYTES, frame_bytes};
use crate::hook::{SyncEvent, SyncHook};
use crate::recovery::{self, Findings, RecoveryReport};
use crate::segment::{self, SEGMENT_DATA_START, SEGMENT_WATERMARK_AT, SegmentHeader};
use crate::watermark::{self, WatermarkFile};

/// The journal's lock file inside the journal directory.
pub const LOCK_FILE_NAME: &str = "journal.lock";

/// Sizes and durability of a journal. Existing segments keep the sizes they were created with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JournalConfig {
    /// Size of every new segment file, a multiple of 4096 in `12 KiB..=4 GiB` (two header pages + frames).
    pub segment_bytes: u64,
    /// Largest payload accepted by `append`; a frame of this size must fit in a segment.
    pub frame_payload_max: u32,
    pub durability: Durability,
}

impl JournalConfig {
    pub const SEGMENT_BYTES_DEFAULT: u64 = 64 << 20;
    pub const FRAME_PAYLOAD_MAX_DEFAULT: u32 = 64 << 10;

    pub fn validate(&self) -> Result<(), JournalError> {
        segment::check_sizes(self.segment_bytes, self.frame_payload_max).map_err(|reason| {
            JournalError::InvalidConfig {
                reason: format!(
                    "{reason} (segment_bytes {}, frame_payload_max {})",
                    self.segment_bytes, self.frame_payload_max
                ),
            }
        })
    }
}

impl Default for JournalConfig {
    fn default() -> Self {
        JournalConfig {
            segment_bytes: Self::SEGMENT_BYTES_DEFAULT,
            frame_payload_max: Self::FRAME_PAYLOAD_MAX_DEFAULT,
            durability: Durability::EveryBatch,
        }
    }
}

/// What the caller expects of a journal: the engine build and capacity configuration whose
/// commands it holds, and the node's current epoch. Recorded in every segment header; a journal
/// with a different engine-logic version or capacities hash is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct JournalMeta {
    pub engine_logic_version: u32,
    pub capacities_hash: u64,
    /// New segments carry this epoch; opening a journal with a newer one is refused.
    pub epoch: u64,
}

/// The segment being appended to.
pub(crate) struct ActiveSegment {
    pub path: PathBuf,
    pub map: MmapMut,
    pub header: SegmentHeader,
}

/// The writer. See the module docs.
pub struct Journal {
    dir: PathBuf,
    config: JournalConfig,
    meta: JournalMeta,
    active: ActiveSegment,
    /// Where the next frame goes in the active segment.
    write_offset: usize,
    /// End of the active segment's frame area (its `segment_bytes`).
    data_end: usize,
    seq_next: u64,
    /// The durable watermark, the watermark file and what the syncer thread needs.
    shared: Arc<Shared>,
    /// The watermark value in the active segment's watermark page (page cache).
    watermark_in_page: u64,
    /// The page slot the next watermark write goes to (the one not holding the newest value).
    watermark_slot_next: usize,
    /// Where the last appended frame starts in the active segment (its header included), and
    /// its length without padding (0: nothing appended since open).
    last_frame_at: usize,
    last_frame_len: usize,
    /// Frames were appended since the last commit.
    batch_open: bool,
    poisoned: Option<String>,
    sync_hook: Option<Box<dyn SyncHook>>,
    /// The next segment's file, being zero-filled on a helper thread (see
    /// [`segment::prepare_segment_file`]) once the active segment is half full; taken by the
    /// next roll.
    next_segment: Option<JoinHandle<Result<File, JournalError>>>,
    /// The write offset at which the next segment's preparation starts (`usize::MAX`: started).
    prepare_at: usize,
    /// The watermark syncer (`none` only; see [`Journal::start_watermark_sync`]).
    syncer: Option<Syncer>,
    _lock: File,
}

/// What the journal shares with its watermark syncer thread.
struct Shared {
    /// The last committed seq: every frame up to it is in the page cache.
    seq_committed: AtomicU64,
    /// The highest seq known durable; only grows.
    seq_durable: AtomicU64,
    watermark_file: Mutex<WatermarkFile>,
    /// Set (with the cause) when the syncer's fdatasync or msync failed.
    sync_failed: AtomicBool,
    sync_failure: Mutex<Option<String>>,
}

impl Shared {
    fn watermark_file(&self) -> MutexGuard<'_, WatermarkFile> {
        // A panic while holding it leaves a valid file (slots are written whole): go on.
        self.watermark_file
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The watermark syncer thread and its stop signal.
struct Syncer {
    stop: Arc<(Mutex<bool>, Condvar)>,
    thread: Option<JoinHandle<()>>,
}

impl Syncer {
    fn stop(&mut self) {
        let (stopped, wake) = &*self.stop;
        *stopped
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = true;
        wake.notify_all();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A journal directory read, checked and locked, with nothing changed yet: see
/// [`Journal::prepare_open`]. Dropping it releases the lock and changes nothing.
pub struct PendingOpen {
    dir: PathBuf,
    config: JournalConfig,
    meta: JournalMeta,
    lock: Option<File>,
    plan: Option<recovery::Plan>,
    findings: Findings,
}

impl std::fmt::Debug for PendingOpen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingOpen")
            .field("findings", &self.findings)
            .finish_non_exhaustive()
    }
}

impl PendingOpen {
    /// What recovery found, and what it will cut.
    pub fn findings(&self) -> &Findings {
        &self.findings
    }

    /// Carries the recovery out (quarantining and cutting a torn tail), or creates the new
    /// journal of an empty directory.
    pub fn open(self) -> Result<(Journal, RecoveryReport), JournalError> {
        let PendingOpen {
            dir,
            config,
            meta,
            lock,
            plan,
            findings: _,
        } = self;
        match plan {
            Some(plan) => {
                let lock = match lock {
                    Some(lock) => lock,
                    None => lock_dir(&dir)?,
                };
                Journal::recover_locked(&dir, config, meta, plan, lock)
            }
            None => {
                fs::create_dir_all(&dir).map_err(JournalError::io("create directory", &dir))?;
                let lock = match lock {
                    Some(lock) => lock,
                    None => lock_dir(&dir)?,
                };
                let journal = Journal::create_locked(&dir, config, meta, lock, 1)?;
                Ok((journal, RecoveryReport::empty(1)))
            }
        }
    }
}

impl Drop for Journal {
    /// Waits for the next segment's preparation and removes its unused file (a crash leaves
    /// it behind; it is not a segment, and the next preparation replaces it).
    fn drop(&mut self) {
        if let Some(mut syncer) = self.syncer.take() {
            syncer.stop();
        }
        if let Some(preparing) = self.next_segment.take() {
            let _ = preparing.join();
            let _ = fs::remove_file(self.dir.join(segment::NEXT_SEGMENT_FILE_NAME));
        }
    }
}

impl std::fmt::Debug for Journal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Journal")
            .field("dir", &self.dir)
            .field("config", &self.config)
            .field("meta", &self.meta)
            .field("active_segment", &self.active.path)
            .field("write_offset", &self.write_offset)
            .field("seq_next", &self.seq_next)
            .field("seq_durable", &self.durable_watermark())
            .field("poisoned", &self.poisoned)
            .finish_non_exhaustive()
    }
}

impl Journal {
    /// Creates a new journal in `dir` (created if missing), starting at seq 1. Refused if the
    /// directory holds segments ([`JournalError::JournalExists`]) or traces of an earlier
    /// journal ([`JournalError::EarlierJournalMissing`]).
    pub fn create(
        dir: impl AsRef<Path>,
        config: JournalConfig,
        meta: JournalMeta,
    ) -> Result<Journal, JournalError> {
        let dir = dir.as_ref();
        config.validate()?;
        if dir.exists() && !dir.is_dir() {
            return Err(JournalError::NotADirectory {
                path: dir.to_owned(),
            });
        }
        fs::create_dir_all(dir).map_err(JournalError::io("create directory", dir))?;
        let lock = lock_dir(dir)?;
        if !segment::list_segments(dir)?.is_empty() {
            return Err(JournalError::JournalExists {
                dir: dir.to_owned(),
            });
        }
        // Refuses a directory with traces of an earlier journal.
        recovery::plan(dir, &meta)?;
        Journal::create_locked(dir, config, meta, lock, 1)
    }

    /// Creates a new journal in the empty directory `dir` whose first frame will be
    /// `first_seq`: the frames before it are not in this journal (a snapshot at
    /// `first_seq - 1` stands in for them, as after `kuku upgrade`). The watermark starts at
    /// `first_seq - 1`.
    pub fn create_from(
        dir: impl AsRef<Path>,
        config: JournalConfig,
        meta: JournalMeta,
        first_seq: u64,
    ) -> Result<Journal, JournalError> {
        let dir = dir.as_ref();
        config.validate()?;
        if first_seq == 0 {
            return Err(JournalError::InvalidConfig {
                reason: "a journal's first seq is at least 1".into(),
            });
        }
        fs::create_dir_all(dir).map_err(JournalError::io("create directory", dir))?;
        let lock = lock_dir(dir)?;
        if !segment::list_segments(dir)?.is_empty() {
            return Err(JournalError::JournalExists {
                dir: dir.to_owned(),
            });
        }
        recovery::plan(dir, &meta)?;
        Journal::create_locked(dir, config, meta, lock, first_seq)
    }

    /// Creates the first segment (starting at `first_seq`) of a new journal in the locked,
    /// empty directory `dir`.
    fn create_locked(
        dir: &Path,
        config: JournalConfig,
        meta: JournalMeta,
        lock: File,
        first_seq: u64,
    ) -> Result<Journal, JournalError> {
        if !segment::list_segments(dir)?.is_empty() {
            return Err(JournalError::JournalExists {
                dir: dir.to_owned(),
            });
        }
        let seq_durable = first_seq - 1;
        let header = new_header(&config, &meta, first_seq);
        let (path, map) = segment::create_segment(dir, &header, seq_durable)?;
        let active = ActiveSegment { path, map, header };
        // A watermark file without segments that says seq 0 holds nothing: replace it.
        let watermark_path = dir.join(watermark::WATERMARK_FILE_NAME);
        match fs::remove_file(&watermark_path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(JournalError::io(
                    "remove stale watermark file",
                    watermark_path,
                )(e));
            }
            _ => {}
        }
        let (mut watermark_file, _) = WatermarkFile::open_or_create(dir)?;
        if seq_durable > 0 {
            watermark_file.store(seq_durable);
        }
        let mut journal = Journal::assemble(
            dir,
            config,
            meta,
            active,
            SEGMENT_DATA_START,
            first_seq,
            seq_durable,
            watermark_file,
            lock,
        );
        if config.durability == Durability::EveryBatch {
            journal.sync_active(SEGMENT_DATA_START)?;
            journal.sync_watermark_file()?;
            journal.sync_directory()?;
            if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
                segment::sync_dir(parent)?;
            }
        }
        Ok(journal)
    }

    /// Reads and checks the journal in `dir` and takes its lock, changing nothing: the
    /// returned [`PendingOpen`] says what recovery found and will cut ([`Findings`]), and
    /// [`PendingOpen::open`] carries it out. A caller can refuse in between (e.g. a database
    /// that holds commands a torn-tail cut would lose). A directory that is missing or holds
    /// nothing becomes a new journal; one without segments but with traces of an earlier
    /// journal is refused ([`JournalError::EarlierJournalMissing`]).
    pub fn prepare_open(
        dir: impl AsRef<Path>,
        config: JournalConfig,
        meta: JournalMeta,
    ) -> Result<PendingOpen, JournalError> {
        let dir = dir.as_ref();
        config.validate()?;
        if dir.exists() && !dir.is_dir() {
            return Err(JournalError::NotADirectory {
                path: dir.to_owned(),
            });
        }
        let lock = if dir.is_dir() {
            Some(lock_dir(dir)?)
        } else {
            None
        };
        let plan = recovery::plan(dir, &meta)?;
        let findings = match &plan {
            Some(plan) => plan.findings.clone(),
            None => recovery::fresh_findings(dir)?,
        };
        Ok(PendingOpen {
            dir: dir.to_owned(),
            config,
            meta,
            lock,
            plan,
            findings,
        })
    }

    /// What [`Journal::prepare_open`] would find, without taking the lock (tools: a running
    /// writer may be appending; its newest frames can then look like a torn tail). The epoch
    /// is not checked.
    pub fn inspect(dir: impl AsRef<Path>, meta: JournalMeta) -> Result<Findings, JournalError> {
        let dir = dir.as_ref();
        let any_epoch = JournalMeta {
            epoch: u64::MAX,
            ..meta
        };
        match recovery::plan(dir, &any_epoch)? {
            Some(plan) => Ok(plan.findings),
            None => recovery::fresh_findings(dir),
        }
    }

    /// Opens an existing journal and recovers it: verifies every segment, cuts a torn tail
    /// after the durable watermark (quarantined and reported), and refuses damage at or before
    /// it. A missing or empty directory is an error here ([`Journal::open_or_create`] creates).
    pub fn open(
        dir: impl AsRef<Path>,
        config: JournalConfig,
        meta: JournalMeta,
    ) -> Result<(Journal, RecoveryReport), JournalError> {
        let dir = dir.as_ref();
        config.validate()?;
        if !dir.exists() {
            return Err(JournalError::MissingDirectory {
                path: dir.to_owned(),
            });
        }
        let pending = Journal::prepare_open(dir, config, meta)?;
        if pending.plan.is_none() {
            return Err(JournalError::EmptyJournal {
                dir: dir.to_owned(),
            });
        }
        pending.open()
    }

    fn recover_locked(
        dir: &Path,
        config: JournalConfig,
        meta: JournalMeta,
        plan: recovery::Plan,
        lock: File,
    ) -> Result<(Journal, RecoveryReport), JournalError> {
        let recovered = recovery::apply(dir, &config, &meta, plan)?;
        let (watermark_file, created) = WatermarkFile::open_or_create(dir)?;
        let mut journal = Journal::assemble(
            dir,
            config,
            meta,
            recovered.active,
            recovered.write_offset,
            recovered.seq_next,
            recovered.seq_durable,
            watermark_file,
            lock,
        );
        journal.watermark_in_page = recovered.watermark_in_page;
        journal.watermark_slot_next = recovered.watermark_slot_next;
        let file_behind = journal.shared.watermark_file().seq() < recovered.seq_durable;
        if file_behind || created {
            journal.shared.watermark_file().store(recovered.seq_durable);
            if config.durability == Durability::EveryBatch {
                journal.sync_watermark_file()?;
                journal.sync_directory()?;
            }
        }
        journal.start_segment_for_new_settings()?;
        Ok((journal, recovered.report))
    }

    /// Opens the journal in `dir`, or creates it if the directory is missing or holds nothing
    /// (a directory with traces of an earlier journal but no segments is refused).
    pub fn open_or_create(
        dir: impl AsRef<Path>,
        config: JournalConfig,
        meta: JournalMeta,
    ) -> Result<(Journal, RecoveryReport), JournalError> {
        Journal::prepare_open(dir, config, meta)?.open()
    }

    #[allow(clippy::too_many_arguments)]
    fn assemble(
        dir: &Path,
        config: JournalConfig,
        meta: JournalMeta,
        active: ActiveSegment,
        write_offset: usize,
        seq_next: u64,
        seq_durable: u64,
        watermark_file: WatermarkFile,
        lock: File,
    ) -> Journal {
        let data_end = active.map.len();
        let shared = Arc::new(Shared {
            seq_committed: AtomicU64::new(seq_next - 1),
            seq_durable: AtomicU64::new(seq_durable),
            watermark_file: Mutex::new(watermark_file),
            sync_failed: AtomicBool::new(false),
            sync_failure: Mutex::new(None),
        });
        Journal {
            dir: dir.to_owned(),
            config,
            meta,
            active,
            write_offset,
            data_end,
            seq_next,
            shared,
            watermark_in_page: seq_durable,
            watermark_slot_next: 1,
            last_frame_at: 0,
            last_frame_len: 0,
            batch_open: false,
            poisoned: None,
            sync_hook: None,
            next_segment: None,
            prepare_at: data_end / 2,
            syncer: None,
            _lock: lock,
        }
    }

    /// Starts zero-filling the next segment's file on a helper thread, so that a roll only
    /// renames and maps it. Without a thread, the roll prepares the file itself.
    #[cold]
    #[inline(never)]
    fn prepare_next_segment(&mut self) {
        debug_assert!(self.next_segment.is_none());
        self.prepare_at = usize::MAX;
        let dir = self.dir.clone();
        let segment_bytes = self.config.segment_bytes;
        self.next_segment = std::thread::Builder::new()
            .name("kuku-seg-prep".into())
            .spawn(move || segment::prepare_segment_file(&dir, segment_bytes))
            .ok();
    }

    /// The prepared next segment, waiting for its thread if it is still writing (it started
    /// when the active segment was half full); `None` if it failed or never started (the roll
    /// then prepares one itself and reports that attempt's error, if any).
    fn take_next_segment(&mut self) -> Option<File> {
        let prepared = self.next_segment.take()?.join().ok()?;
        prepared.ok()
    }

    /// Installs an observer of completed syncs (tests: simulated power loss).
    pub fn set_sync_hook(&mut self, hook: Box<dyn SyncHook>) {
        self.sync_hook = Some(hook);
    }

    /// Appends one frame. `seq` must be [`Journal::seq_next`]; the payload is 1 to
    /// `frame_payload_max` bytes. Nothing is durable before [`Journal::commit`].
    pub fn append(&mut self, seq: u64, ts: u64, payload: &[u8]) -> Result<(), JournalError> {
        self.check_append(seq, payload.len())?;
        let frame_len = FRAME_HEADER_BYTES + payload.len();
        let start = self.reserve(seq, frame_bytes(payload.len()))?;
        let frame = &mut self.active.map[start..start + frame_len];
        frame[FRAME_HEADER_BYTES..].copy_from_slice(payload);
        frame::seal(frame, seq, ts);
        self.last_frame_at = start;
        self.last_frame_len = frame_len;
        self.finish_append(seq, start + frame_bytes(payload.len()));
        Ok(())
    }

    /// Appends one frame whose payload `write_payload` encodes in place: it gets a zeroed
    /// buffer of `payload_len_max` bytes inside the segment and returns how many it used
    /// (1..=`payload_len_max`). Returns that length.
    ///
    /// Bytes the closure wrote past its returned length are zeroed again. Pass a tight
    /// `payload_len_max`: the frame must fit with that size, and the slack is scanned.
    pub fn append_with<F>(
        &mut self,
        seq: u64,
        ts: u64,
        payload_len_max: usize,
        write_payload: F,
    ) -> Result<usize, JournalError>
    where
        F: FnOnce(&mut [u8]) -> usize,
    {
        self.check_append(seq, payload_len_max)?;
        let start = self.reserve(seq, frame_bytes(payload_len_max))?;
        let written = {
            let region = &mut self.active.map[start..start + FRAME_HEADER_BYTES + payload_len_max];
            // Restores the all-zero tail if the closure panics or returns a bad length.
            let mut scrub = ScrubOnDrop(region);
            let written = write_payload(&mut scrub.0[FRAME_HEADER_BYTES..]);
            if written == 0 || written > payload_len_max {
                return Err(JournalError::PayloadWriterOutOfRange {
                    written,
                    payload_len_max,
                });
            }
            let region = std::mem::take(&mut scrub.0);
            let slack = &mut region[FRAME_HEADER_BYTES + written..];
            if slack.iter().any(|&b| b != 0) {
                slack.fill(0);
            }
            frame::seal(&mut region[..FRAME_HEADER_BYTES + written], seq, ts);
            written
        };
        self.last_frame_at = start;
        self.last_frame_len = FRAME_HEADER_BYTES + written;
        self.finish_append(seq, start + frame_bytes(written));
        Ok(written)
    }

    /// The bytes of the frame appended last (`len | crc | seq | ts | payload`, no padding),
    /// exactly as stored: the replicator ships them to standbys without re-encoding. Empty
    /// before the first append after `create`/`open`.
    #[inline]
    pub fn last_frame(&self) -> &[u8] {
        &self.active.map[self.last_frame_at..self.last_frame_at + self.last_frame_len]
    }

    /// Moves the journal to a newer `epoch` (a promotion): commits the open batch, then
    /// continues in a new segment whose header carries the epoch, so every frame from the next
    /// seq on is recorded as written in it. A lower or equal epoch is refused.
    pub fn raise_epoch(&mut self, epoch: u64) -> Result<(), JournalError> {
        if epoch <= self.meta.epoch {
            return Err(JournalError::InvalidConfig {
                reason: format!(
                    "raise_epoch({epoch}): the journal is already in epoch {}; an epoch only grows",
                    self.meta.epoch
                ),
            });
        }
        self.commit()?;
        self.meta.epoch = epoch;
        self.start_segment_for_new_settings()
    }

    #[inline]
    fn check_append(&self, seq: u64, payload_len: usize) -> Result<(), JournalError> {
        if let Some(cause) = &self.poisoned {
            return Err(JournalError::Poisoned {
                cause: cause.clone(),
            });
        }
        failpoint::fail("journal::append_fails").map_err(|source| JournalError::Io {
            op: "write",
            path: self.active.path.clone(),
            source,
        })?;
        if seq != self.seq_next {
            return Err(JournalError::SeqMismatch {
                expected: self.seq_next,
                got: seq,
            });
        }
        if payload_len == 0 {
            return Err(JournalError::PayloadEmpty);
        }
        if payload_len > self.config.frame_payload_max as usize {
            return Err(JournalError::PayloadTooLarge {
                len: payload_len,
                max: self.config.frame_payload_max,
            });
        }
        Ok(())
    }

    /// Returns the offset for a frame of `frame_len` bytes, rolling to a new segment first if
    /// it does not fit in the active one.
    #[inline]
    fn reserve(&mut self, seq: u64, frame_len: usize) -> Result<usize, JournalError> {
        if frame_len > self.data_end - self.write_offset {
            self.roll(seq)?;
        }
        debug_assert!(self.write_offset + frame_len <= self.data_end);
        Ok(self.write_offset)
    }

    #[inline]
    fn finish_append(&mut self, seq: u64, write_offset: usize) {
        debug_assert!(
            write_offset <= self.data_end && write_offset.is_multiple_of(frame::FRAME_ALIGN_BYTES)
        );
        self.write_offset = write_offset;
        // Cannot overflow: reaching u64::MAX takes 2^64 appends.
        self.seq_next = seq + 1;
        self.batch_open = true;
        if write_offset >= self.prepare_at {
            self.prepare_next_segment();
        }
        failpoint::hit("journal::after_append");
    }

    /// Ends a batch. With `every-batch`, makes every appended frame durable (one msync), then
    /// advances the durable watermark to the last appended seq. With `none`, does nothing.
    /// Returns the durable watermark.
    pub fn commit(&mut self) -> Result<u64, JournalError> {
        if self.shared.sync_failed.load(Ordering::Relaxed) {
            self.take_sync_failure();
        }
        if let Some(cause) = &self.poisoned {
            return Err(JournalError::Poisoned {
                cause: cause.clone(),
            });
        }
        if !self.batch_open {
            return Ok(self.durable_watermark());
        }
        self.batch_open = false;
        if self.config.durability == Durability::None {
            // For the watermark syncer: everything up to here is in the page cache.
            self.shared
                .seq_committed
                .store(self.seq_next - 1, Ordering::Release);
            return Ok(self.durable_watermark());
        }
        failpoint::hit("journal::commit_before_sync");
        if let Err(source) = failpoint::fail("journal::commit_sync_fails") {
            // Handled as a failed msync in `sync_active` is: the journal is poisoned.
            self.poisoned = Some(source.to_string());
            return Err(JournalError::Io {
                op: "msync",
                path: self.active.path.clone(),
                source,
            });
        }
        self.sync_active(self.write_offset)?;
        failpoint::hit("journal::commit_after_sync");
        let seq_last = self.seq_next - 1;
        self.write_watermark(seq_last);
        self.set_durable(seq_last);
        self.shared.seq_committed.store(seq_last, Ordering::Release);
        failpoint::hit("journal::commit_after_watermark");
        Ok(seq_last)
    }

    /// Moves the syncer's failure (if any) into `poisoned`.
    #[cold]
    fn take_sync_failure(&mut self) {
        if self.poisoned.is_none() {
            let cause = self
                .shared
                .sync_failure
                .lock()
                .ok()
                .and_then(|f| f.clone())
                .unwrap_or_else(|| "the watermark syncer's sync failed".to_owned());
            self.poisoned = Some(cause);
        }
    }

    fn set_durable(&self, seq: u64) {
        self.shared.seq_durable.fetch_max(seq, Ordering::AcqRel);
    }

    /// Records that every frame up to `seq` is durable elsewhere (e.g. acknowledged by a
    /// standby). The watermark never decreases (a lower `seq` is a no-op); with `every-batch`
    /// the watermark file is synced before this returns, with `none` it stays in the page
    /// cache.
    ///
    /// After this, recovery refuses to truncate frames up to `seq`: if a local power loss
    /// loses some of them, the node must fetch them from its peer.
    pub fn set_durable_watermark(&mut self, seq: u64) -> Result<(), JournalError> {
        if let Some(cause) = &self.poisoned {
            return Err(JournalError::Poisoned {
                cause: cause.clone(),
            });
        }
        let seq_last = self.seq_next - 1;
        if seq > seq_last {
            return Err(JournalError::WatermarkAhead {
                requested: seq,
                seq_last,
            });
        }
        if seq <= self.durable_watermark() {
            return Ok(());
        }
        self.write_watermark(seq);
        self.set_durable(seq);
        if self.config.durability == Durability::EveryBatch {
            self.sync_watermark_file()?;
        }
        Ok(())
    }

    /// Commits the open batch and makes the whole journal durable: with `every-batch` it syncs
    /// the watermark file so the on-disk watermark catches up with the last commit; with
    /// `none` (a graceful shutdown) it syncs every segment, then moves the watermark to the
    /// last appended seq. Returns the durable watermark.
    pub fn close(mut self) -> Result<u64, JournalError> {
        if let Some(mut syncer) = self.syncer.take() {
            syncer.stop();
        }
        let seq_durable = self.commit()?;
        if self.config.durability == Durability::EveryBatch {
            self.sync_watermark_file()?;
            return Ok(seq_durable);
        }
        // `none`: a graceful shutdown still puts everything on disk (the earlier segments
        // first, then the active one with its header page), and only then moves the
        // watermark, so a later power loss cannot cost a command of a cleanly stopped node.
        let seq_last = self.seq_last();
        if seq_last > self.durable_watermark() {
            for segment in segment::list_segments(&self.dir)? {
                if segment.path != self.active.path {
                    fs::File::open(&segment.path)
                        .and_then(|f| f.sync_data())
                        .map_err(JournalError::io("fdatasync", &segment.path))?;
                }
            }
            self.sync_active(self.write_offset)?;
            self.write_watermark(seq_last);
            self.set_durable(seq_last);
            self.sync_watermark_file()?;
        }
        Ok(self.durable_watermark())
    }

    /// The seq the next append must carry.
    pub fn seq_next(&self) -> u64 {
        self.seq_next
    }

    /// The last appended seq (`seq_next - 1`; 0 before the first frame of a new journal).
    pub fn seq_last(&self) -> u64 {
        self.seq_next - 1
    }

    /// The highest seq known durable (synced locally, or set by `set_durable_watermark`).
    pub fn durable_watermark(&self) -> u64 {
        self.shared.seq_durable.load(Ordering::Acquire)
    }

    /// With `none`, starts the watermark syncer (see the module docs): every `interval` it
    /// fdatasyncs the segments that hold committed frames, then stores the last committed seq
    /// as the durable watermark in the watermark file (msynced). It stops when the journal is
    /// closed or dropped. A failed sync poisons the journal: its next commit fails. With
    /// `every-batch` (each commit is durable already) it does nothing.
    pub fn start_watermark_sync(&mut self, interval: Duration) -> Result<(), JournalError> {
        if self.config.durability != Durability::None || self.syncer.is_some() {
            return Ok(());
        }
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let (shared, dir) = (Arc::clone(&self.shared), self.dir.clone());
        let signal = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("kuku-wm-sync".into())
            .spawn(move || run_syncer(&dir, &shared, &signal, interval))
            .map_err(JournalError::io("start the watermark syncer", &self.dir))?;
        self.syncer = Some(Syncer {
            stop,
            thread: Some(thread),
        });
        Ok(())
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn config(&self) -> &JournalConfig {
        &self.config
    }

    pub fn meta(&self) -> &JournalMeta {
        &self.meta
    }

    /// The segment file currently appended to.
    pub fn active_segment_path(&self) -> &Path {
        &self.active.path
    }

    /// Stores the watermark in the active segment's watermark page and in the watermark file
    /// (memory writes; see `watermark.rs` for when each reaches the disk).
    fn write_watermark(&mut self, seq: u64) {
        watermark::write_slot(
            &mut self.active.map[SEGMENT_WATERMARK_AT..],
            self.watermark_slot_next,
            seq,
        );
        self.watermark_slot_next ^= 1;
        self.watermark_in_page = seq;
        self.shared.watermark_file().store(seq);
    }

    /// msync(MS_SYNC) of `[0, end)` of the active segment: the header pages (the watermark
    /// page is the only one rewritten) and every frame written so far, in one call and so one
    /// device flush. Only dirty pages are written.
    fn sync_active(&mut self, end: usize) -> Result<(), JournalError> {
        if let Err(source) = self.active.map.flush_range(0, end) {
            self.poisoned = Some(source.to_string());
            return Err(JournalError::Io {
                op: "msync",
                path: self.active.path.clone(),
                source,
            });
        }
        let seq_last = if end > SEGMENT_DATA_START {
            self.seq_next - 1
        } else {
            0
        };
        if let Some(hook) = self.sync_hook.as_mut() {
            hook.on_sync(&SyncEvent::SegmentSynced {
                segment: &self.active.path,
                offset_start: 0,
                offset_end: end as u64,
                seq_last,
                watermark_seq: self.watermark_in_page,
            });
        }
        Ok(())
    }

    fn sync_watermark_file(&mut self) -> Result<(), JournalError> {
        let (synced, path, seq) = {
            let file = self.shared.watermark_file();
            (file.sync(), file.path.clone(), file.seq())
        };
        if let Err(source) = synced {
            self.poisoned = Some(source.to_string());
            return Err(JournalError::Io {
                op: "msync",
                path,
                source,
            });
        }
        if let Some(hook) = self.sync_hook.as_mut() {
            hook.on_sync(&SyncEvent::WatermarkFileSynced {
                path: &path,
                watermark_seq: seq,
            });
        }
        Ok(())
    }

    fn sync_directory(&mut self) -> Result<(), JournalError> {
        if let Err(error) = segment::sync_dir(&self.dir) {
            self.poisoned = Some(error.to_string());
            return Err(error);
        }
        if let Some(hook) = self.sync_hook.as_mut() {
            hook.on_sync(&SyncEvent::DirectorySynced { dir: &self.dir });
        }
        Ok(())
    }

    /// With `every-batch`, makes a just-created segment's header pages and directory entry
    /// durable (a crash leaves either no file or a valid empty segment), and the watermark file
    /// with them: it is the copy that outlives the loss of a newest segment.
    fn sync_new_segment(&mut self) -> Result<(), JournalError> {
        if self.config.durability == Durability::EveryBatch {
            self.sync_active(SEGMENT_DATA_START)?;
            self.sync_directory()?;
            self.sync_watermark_file()?;
        }
        Ok(())
    }

    /// Seals the active segment and starts a new one whose first seq is `first_seq`.
    #[cold]
    fn roll(&mut self, first_seq: u64) -> Result<(), JournalError> {
        if self.config.durability == Durability::EveryBatch && self.batch_open {
            // The batch's commit syncs only the new segment: make this one's frames durable now.
            self.sync_active(self.write_offset)?;
        }
        let header = new_header(&self.config, &self.meta, first_seq);
        let seq_durable = self.durable_watermark();
        let (path, map) = match self.take_next_segment() {
            Some(file) => segment::install_segment(&self.dir, file, &header, seq_durable)?,
            None => segment::create_segment(&self.dir, &header, seq_durable)?,
        };
        self.active = ActiveSegment { path, map, header };
        self.write_offset = SEGMENT_DATA_START;
        self.data_end = self.active.map.len();
        self.watermark_in_page = seq_durable;
        self.watermark_slot_next = 1;
        self.prepare_at = self.data_end / 2;
        self.sync_new_segment()?;
        failpoint::hit("journal::after_roll");
        Ok(())
    }

    /// After recovery: if the active segment was written with another epoch or payload limit,
    /// continue in a fresh segment that carries the current ones.
    fn start_segment_for_new_settings(&mut self) -> Result<(), JournalError> {
        let header = &self.active.header;
        if header.epoch == self.meta.epoch
            && header.frame_payload_max == self.config.frame_payload_max
        {
            return Ok(());
        }
        if self.write_offset == SEGMENT_DATA_START {
            // No frames yet: replace the empty segment, which has the same first seq.
            fs::remove_file(&self.active.path)
                .map_err(JournalError::io("remove segment", &self.active.path))?;
            if self.config.durability == Durability::EveryBatch {
                self.sync_directory()?;
            }
        }
        debug_assert!(!self.batch_open);
        self.roll(self.seq_next)
    }
}

/// The watermark syncer's loop: one [`sync_round`] per `interval` until stopped or failed.
fn run_syncer(dir: &Path, shared: &Shared, stop: &(Mutex<bool>, Condvar), interval: Duration) {
    let (stopped, wake) = stop;
    let mut round = SyncRound::default();
    let mut guard = stopped
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    loop {
        guard = wake
            .wait_timeout(guard, interval)
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .0;
        if *guard {
            return;
        }
        if let Err(error) = round.run(dir, shared) {
            if let Ok(mut failure) = shared.sync_failure.lock() {
                *failure = Some(format!("the watermark syncer failed: {error}"));
            }
            shared.sync_failed.store(true, Ordering::Release);
            return;
        }
    }
}

/// What the syncer remembers between rounds.
#[derive(Default)]
struct SyncRound {
    /// Segments with this first seq or later may hold frames not yet synced (0: all of them).
    synced_from: u64,
    /// The segment files seen at the last round (a new one needs a directory fsync).
    segments_seen: usize,
}

impl SyncRound {
    /// Makes every committed frame durable, then the watermark that says so.
    fn run(&mut self, dir: &Path, shared: &Shared) -> Result<(), JournalError> {
        let seq = shared.seq_committed.load(Ordering::Acquire);
        if seq <= shared.seq_durable.load(Ordering::Acquire) {
            return Ok(());
        }
        // Every frame up to `seq` is in a segment that exists now (segments are created before
        // their first frame and never removed while the journal runs).
        let segments = segment::list_segments(dir)?;
        for s in segments.iter().filter(|s| s.name_seq >= self.synced_from) {
            File::open(&s.path)
                .and_then(|f| f.sync_data())
                .map_err(JournalError::io("fdatasync", &s.path))?;
        }
        if segments.len() != self.segments_seen {
            segment::sync_dir(dir)?;
            self.segments_seen = segments.len();
        }
        self.synced_from = segments.last().map_or(0, |s| s.name_seq);
        {
            let mut file = shared.watermark_file();
            if file.seq() < seq {
                file.store(seq);
                file.sync()
                    .map_err(JournalError::io("msync", file.path.clone()))?;
            }
        }
        shared.seq_durable.fetch_max(seq, Ordering::AcqRel);
        Ok(())
    }
}

fn new_header(config: &JournalConfig, meta: &JournalMeta, first_seq: u64) -> SegmentHeader {
    SegmentHeader {
        engine_logic_version: meta.engine_logic_version,
        epoch: meta.epoch,
        capacities_hash: meta.capacities_hash,
        first_seq,
        segment_bytes: config.segment_bytes,
        frame_payload_max: config.frame_payload_max,
    }
}

/// Takes the journal directory's exclusive lock (released when the returned file is closed).
pub(crate) fn lock_dir(dir: &Path) -> Result<File, JournalError> {
    let path = dir.join(LOCK_FILE_NAME);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(JournalError::io("open lock file", &path))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(TryLockError::WouldBlock) => Err(JournalError::Locked {
            dir: dir.to_owned(),
            lock: path,
        }),
        Err(TryLockError::Error(source)) => Err(JournalError::Io {
            op: "lock",
            path,
            source,
        }),
    }
}

/// Zeroes the wrapped bytes on drop unless they were taken out (`mem::take`).
struct ScrubOnDrop<'a>(&'a mut [u8]);

impl Drop for ScrubOnDrop<'_> {
    fn drop(&mut self) {
        self.0.fill(0);
    }
}
