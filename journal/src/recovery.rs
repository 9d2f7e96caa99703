//! Recovery: what `Journal::open` does before the first append, in two steps. [`plan`] reads
//! and checks everything and changes nothing; [`apply`] carries the plan out. A caller (the
//! node's start-up, `kuku-replay verify`) can look at the plan's [`Findings`] in between and
//! refuse to go on (e.g. when the query database holds commands the cut would lose).
//!
//! Planning:
//! 1. Read every segment's header pages: validate headers, check the engine-logic version and
//!    capacities hash against the caller's [`JournalMeta`] (refused on mismatch), and take the
//!    durable watermark as the largest seq in any valid watermark slot (the `watermark` file
//!    and every segment's watermark page).
//! 2. Scan all frames in seq order, verifying length, CRC, seq continuity and padding, and
//!    that each segment starts where the previous one ended.
//! 3. At the first bad spot, with `seq_expected` the seq that should have been there:
//!    - `seq_expected <= watermark`: durable data is damaged, a hard
//!      [`JournalError::DurableDataCorrupt`] naming segment, offset and seq;
//!    - otherwise it is a torn tail: the rest of that segment and the later segments (a
//!      segment whose header is bad goes whole) are to be cut.
//!
//!    A journal that simply ends before the watermark is the same hard error; non-zero bytes
//!    after a clean end (an unsynced page that reached the disk before the one before it) are
//!    cut too, so a later append can never be followed by stale frames.
//! 4. A directory with no segment files is a new journal only if nothing else of an earlier
//!    journal is in it (a watermark above 0, snapshots, the engine config, the epoch history, a
//!    quarantine, any other file): otherwise [`JournalError::EarlierJournalMissing`].
//!
//! Applying: the bytes to cut are first copied into a quarantine directory
//! (`quarantine/<seq>-<unix ms>/` in the journal directory: the cut part of the segment, the
//! removed segment files moved whole, and a `cut.txt` describing the cut), then zeroed in the
//! segment; with `every-batch` the quarantine copy is made durable before the zeroing, and the
//! zeroing before the first new frame. Nothing is ever deleted.
//!
//! **Invariants**: frames at or before the watermark are never modified; after recovery every
//! byte after the last kept frame is zero and the next append gets `last kept seq + 1`; every
//! byte recovery cut is in the quarantine.
//!
//! **Performance**: O(journal bytes): every frame's CRC is checked (hardware CRC, several GB/s),
//! and the last segment's tail is scanned for stale bytes. Segment data is mapped, never copied
//! (except the cut bytes into the quarantine).
//!
//! **Known limitations**: verification is not limited to segments after the newest snapshot;
//! a long journal that is not pruned makes opening slower. Damage in the unused tail of a
//! sealed segment whose successor continues the seq is ignored, not reported (it holds no
//! data: the writer rolled there). The quarantine is never pruned: an operator deletes it once
//! the cut is understood.

use std::fmt;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::durability::Durability;
use crate::error::{CorruptionKind, JournalError, MetaField};
use crate::frame::{self, Decoded};
use crate::journal::{ActiveSegment, JournalConfig, JournalMeta, LOCK_FILE_NAME};
use crate::segment::{
    self, HeaderPages, NEXT_SEGMENT_FILE_NAME, SEGMENT_DATA_START, SEGMENT_WATERMARK_AT,
    SegmentFile, SegmentHeader,
};
use crate::watermark;

/// The quarantine directory inside a journal directory: what recovery cut, kept.
pub const QUARANTINE_DIR_NAME: &str = "quarantine";

/// The replication layer's epoch history in a journal directory (kuku-server writes it; a
/// standby joining a primary writes it before its first segment). Recovery does not count it
/// as a trace of an earlier journal: the replication layer judges it (a primary whose epoch is
/// above 0 and whose journal is new refuses to start).
pub const EPOCH_FILE_NAME: &str = "epochs";

/// What recovery found and did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Segment files kept.
    pub segments: usize,
    pub frames_kept: u64,
    /// The first seq the journal holds (1 unless old segments were pruned).
    pub seq_first: u64,
    /// The last kept seq; `seq_first - 1` when no frame is kept.
    pub seq_last: u64,
    /// The durable watermark found on disk.
    pub seq_durable: u64,
    /// `None` when nothing had to be cut.
    pub truncation: Option<Truncation>,
}

impl RecoveryReport {
    pub(crate) fn empty(seq_first: u64) -> RecoveryReport {
        RecoveryReport {
            segments: 1,
            frames_kept: 0,
            seq_first,
            seq_last: seq_first - 1,
            seq_durable: 0,
            truncation: None,
        }
    }
}

/// A torn tail that recovery cut away (or, in [`Findings`], would cut).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Truncation {
    /// The segment where the first bad spot is.
    pub segment: PathBuf,
    /// Byte offset of the cut in that segment (0: the whole segment was removed).
    pub offset: u64,
    /// The seq that should have been at the cut; the next append gets this seq.
    pub seq_expected: u64,
    /// What was wrong there.
    pub kind: CorruptionKind,
    /// Non-zero bytes discarded (zeroed in the cut segment plus used bytes of removed files).
    pub bytes_discarded: u64,
    /// Segment files removed whole (moved into the quarantine), oldest first.
    pub segments_removed: Vec<PathBuf>,
    /// The lowest and highest seq of the frames in the cut bytes that still pass their CRC
    /// (found by scanning past the damage); `None` if there are none.
    pub frames_cut: Option<(u64, u64)>,
    /// Where the cut bytes were kept (`None` in a plan that was not applied).
    pub quarantine: Option<PathBuf>,
}

impl fmt::Display for Truncation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "torn tail cut at {} offset {} (expected seq {}: {}), {} byte(s) discarded, {} segment(s) removed",
            self.segment.display(),
            self.offset,
            self.seq_expected,
            self.kind,
            self.bytes_discarded,
            self.segments_removed.len()
        )?;
        if let Some((low, high)) = self.frames_cut {
            write!(f, ", frames with seqs {low}..={high} among the cut bytes")?;
        }
        if let Some(q) = &self.quarantine {
            write!(f, ", kept in {}", q.display())?;
        }
        Ok(())
    }
}

impl fmt::Display for RecoveryReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} segment(s), {} frame(s) kept, seq {}..={}, durable watermark {}",
            self.segments, self.frames_kept, self.seq_first, self.seq_last, self.seq_durable
        )?;
        if let Some(cut) = &self.truncation {
            write!(f, "; {cut}")?;
        }
        Ok(())
    }
}

/// What start-up found in a journal directory, before changing anything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Findings {
    pub dir: PathBuf,
    /// No segment files and no trace of an earlier journal: a new journal will be created.
    pub fresh: bool,
    /// Segment files that will be kept.
    pub segments: usize,
    /// The first seq the journal holds (1 for a fresh journal).
    pub seq_first: u64,
    /// The last seq the journal will hold once a torn tail is cut (`seq_first - 1` if none).
    pub seq_last: u64,
    /// The durable watermark found on disk.
    pub seq_durable: u64,
    /// The torn tail recovery will cut (and quarantine), if any.
    pub cut: Option<Truncation>,
    /// Quarantine directories earlier recoveries left (oldest first).
    pub quarantined: Vec<PathBuf>,
}

impl Findings {
    fn fresh(dir: &Path, quarantined: Vec<PathBuf>) -> Findings {
        Findings {
            dir: dir.to_owned(),
            fresh: true,
            segments: 0,
            seq_first: 1,
            seq_last: 0,
            seq_durable: 0,
            cut: None,
            quarantined,
        }
    }
}

impl fmt::Display for Findings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.fresh {
            return write!(f, "{}: a new, empty journal directory", self.dir.display());
        }
        write!(
            f,
            "{}: {} segment(s), seq {}..={}, durable watermark {}",
            self.dir.display(),
            self.segments,
            self.seq_first,
            self.seq_last,
            self.seq_durable
        )?;
        if let Some(cut) = &self.cut {
            write!(f, "; to cut: {cut}")?;
        }
        Ok(())
    }
}

/// The state a `Journal` continues from.
pub(crate) struct Recovered {
    pub active: ActiveSegment,
    pub write_offset: usize,
    pub seq_next: u64,
    pub seq_durable: u64,
    pub watermark_in_page: u64,
    pub watermark_slot_next: usize,
    pub report: RecoveryReport,
}

/// One segment file as found on disk.
struct Found {
    file: SegmentFile,
    page: HeaderPages,
    header: Result<SegmentHeader, &'static str>,
}

/// The first bad spot: cut at `offset` of segment `index`.
#[derive(Clone, Copy)]
struct Cut {
    index: usize,
    offset: usize,
    seq_expected: u64,
    kind: CorruptionKind,
}

struct Scan {
    /// Header of each segment whose header was valid, in order.
    headers: Vec<SegmentHeader>,
    /// End of data of each segment scanned to its end.
    ends: Vec<usize>,
    frames: u64,
    seq_next: u64,
    cut: Option<Cut>,
}

/// What recovery will do to a journal with segments (see the module docs).
pub(crate) struct Plan {
    found: Vec<Found>,
    scan: Scan,
    keep: Keep,
    seq_durable: u64,
    seq_first: u64,
    seq_next: u64,
    /// Non-zero bytes at or after the kept data of the active segment (a cut or stale bytes).
    zero_span: Option<(usize, usize)>,
    pub findings: Findings,
}

/// Reads and checks a journal directory without changing anything. `Ok(None)`: the directory
/// is missing or holds nothing at all (a new journal); `Err(EarlierJournalMissing)`: it holds
/// no segments but traces of an earlier journal.
pub(crate) fn plan(dir: &Path, meta: &JournalMeta) -> Result<Option<Plan>, JournalError> {
    if !dir.exists() {
        return Ok(None);
    }
    if !dir.is_dir() {
        return Err(JournalError::NotADirectory {
            path: dir.to_owned(),
        });
    }
    let files = segment::list_segments(dir)?;
    if files.is_empty() {
        let evidence = earlier_journal_evidence(dir)?;
        if !evidence.is_empty() {
            return Err(JournalError::EarlierJournalMissing {
                dir: dir.to_owned(),
                evidence,
            });
        }
        return Ok(None);
    }
    let found = read_headers(files, meta)?;
    let seq_durable = durable_watermark(dir, &found)?;
    let seq_first = found[0].file.name_seq;
    let scan = scan(&found)?;
    let cut = refuse_durable_damage(&found, &scan, seq_durable)?;
    let seq_next = cut.as_ref().map_or(scan.seq_next, |c| c.seq_expected);
    debug_assert!(seq_next > seq_durable);
    debug_assert_eq!(scan.frames, seq_next - seq_first);
    let keep = Keep::after(&found, &scan, cut.as_ref());
    let zero_span = match keep.active_index {
        Some(i) => {
            let len = found[i].page.file_bytes.min(scan.headers[i].segment_bytes) as usize;
            let map = segment::map_read(&found[i].file.path, len)?;
            nonzero_span(map.as_deref().unwrap_or(&[]), keep.write_offset)
        }
        None => None,
    };
    let mut bytes_discarded = zero_span.map_or(0, |(start, end)| (end - start) as u64);
    let mut frames_cut = None;
    let mut segments_removed = Vec::new();
    for (i, gone) in found.iter().enumerate().skip(keep.remove_from) {
        bytes_discarded += used_bytes(&gone.file.path, gone.page.file_bytes)?;
        segments_removed.push(gone.file.path.clone());
        let payload_max = gone.header.map_or(u32::MAX, |h| h.frame_payload_max);
        merge_range(
            &mut frames_cut,
            frames_in(
                &gone.file.path,
                gone.page.file_bytes,
                SEGMENT_DATA_START,
                payload_max,
            )?,
        );
        debug_assert!(i >= keep.remove_from);
    }
    if let (Some(i), Some((start, _))) = (keep.active_index, zero_span) {
        let payload_max = scan.headers[i].frame_payload_max;
        merge_range(
            &mut frames_cut,
            frames_in(
                &found[i].file.path,
                found[i].page.file_bytes,
                start,
                payload_max,
            )?,
        );
    }
    let planned_cut = match cut {
        Some(c) => Some((
            found[c.index].file.path.clone(),
            c.offset,
            c.seq_expected,
            c.kind,
        )),
        // No bad frame, but stale bytes after the end of data: report them there.
        None => zero_span.and_then(|_| {
            let i = keep.active_index?;
            let kind = CorruptionKind::StaleBytesAfterEnd;
            Some((
                found[i].file.path.clone(),
                keep.write_offset,
                seq_next,
                kind,
            ))
        }),
    };
    let findings = Findings {
        dir: dir.to_owned(),
        fresh: false,
        segments: keep.remove_from.max(1),
        seq_first,
        seq_last: seq_next - 1,
        seq_durable,
        cut: planned_cut.map(|(segment, offset, seq_expected, kind)| Truncation {
            segment,
            offset: offset as u64,
            seq_expected,
            kind,
            bytes_discarded,
            segments_removed,
            frames_cut,
            quarantine: None,
        }),
        quarantined: list_quarantine(dir)?,
    };
    Ok(Some(Plan {
        found,
        scan,
        keep,
        seq_durable,
        seq_first,
        seq_next,
        zero_span,
        findings,
    }))
}

/// The findings for a directory that holds no journal yet (see [`plan`]).
pub(crate) fn fresh_findings(dir: &Path) -> Result<Findings, JournalError> {
    let quarantined = if dir.is_dir() {
        list_quarantine(dir)?
    } else {
        Vec::new()
    };
    Ok(Findings::fresh(dir, quarantined))
}

/// Carries out a plan: quarantines the bytes to cut, zeroes them, and leaves the active
/// segment mapped for appending.
pub(crate) fn apply(
    dir: &Path,
    config: &JournalConfig,
    meta: &JournalMeta,
    plan: Plan,
) -> Result<Recovered, JournalError> {
    let Plan {
        found,
        scan,
        keep,
        seq_durable,
        seq_first,
        seq_next,
        zero_span,
        findings,
    } = plan;
    let every_batch = config.durability == Durability::EveryBatch;
    let mut truncation = findings.cut;
    if let Some(t) = truncation.as_mut() {
        let active = keep.active_index.map(|i| &found[i]);
        let piece = match (active, zero_span) {
            (Some(a), Some((start, end))) => Some((&a.file.path, start, end)),
            _ => None,
        };
        t.quarantine = Some(quarantine(dir, t, piece, every_batch)?);
    }
    let mut active = match keep.active_index {
        Some(i) => {
            let (path, header) = (&found[i].file.path, scan.headers[i]);
            let map = segment::map_write(path, header.segment_bytes)?;
            ActiveSegment {
                path: path.clone(),
                map,
                header,
            }
        }
        // Every segment went: start again at the journal's first seq.
        None => new_segment(dir, config, meta, seq_first, seq_durable)?,
    };
    let zeroed = zero_stale_bytes(&mut active.map, keep.write_offset);
    debug_assert_eq!(
        zeroed.is_some(),
        zero_span.is_some() && keep.active_index.is_some()
    );
    let page = keep_watermark_in_page(&mut active, seq_durable);

    if every_batch {
        // Durable before the first new frame: stale bytes must not come back after a crash.
        let removed = truncation
            .as_ref()
            .is_some_and(|t| !t.segments_removed.is_empty());
        let dir_changed = removed || keep.active_index.is_none();
        let page_changed = page.changed || keep.active_index.is_none();
        sync_recovery(dir, &active, zeroed, page_changed, dir_changed)?;
    }
    Ok(Recovered {
        active,
        write_offset: keep.write_offset,
        seq_next,
        seq_durable,
        watermark_in_page: page.seq,
        watermark_slot_next: page.slot_next,
        report: RecoveryReport {
            segments: keep.remove_from.max(1),
            frames_kept: scan.frames,
            seq_first,
            seq_last: seq_next - 1,
            seq_durable,
            truncation,
        },
    })
}

/// Copies the cut part of the active segment (`piece`: path, start, end) and moves the removed
/// segments into a new quarantine directory, with a `cut.txt` describing the cut. Returns the
/// directory. With `durable`, every file and both directories are synced before returning.
fn quarantine(
    dir: &Path,
    cut: &Truncation,
    piece: Option<(&PathBuf, usize, usize)>,
    durable: bool,
) -> Result<PathBuf, JournalError> {
    let root = dir.join(QUARANTINE_DIR_NAME);
    fs::create_dir_all(&root).map_err(JournalError::io("create directory", &root))?;
    let stamp_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    let mut target = root.join(format!("{:020}-{stamp_ms}", cut.seq_expected));
    let mut attempt = 0;
    while target.exists() {
        attempt += 1;
        target = root.join(format!("{:020}-{stamp_ms}-{attempt}", cut.seq_expected));
    }
    fs::create_dir(&target).map_err(JournalError::io("create directory", &target))?;
    if let Some((path, start, end)) = piece {
        let map = segment::map_read(path, end)?;
        let bytes = map.as_deref().map_or(&[][..], |m| &m[start..end]);
        let name = format!("{}@{start}", file_name(path));
        write_file(&target.join(name), bytes, durable)?;
    }
    for removed in &cut.segments_removed {
        let to = target.join(file_name(removed));
        fs::rename(removed, &to)
            .map_err(JournalError::io("move segment into quarantine", removed))?;
    }
    let mut text = format!(
        "torn tail cut by recovery\nsegment: {}\noffset: {}\nseq expected there: {}\nwhat was wrong: {}\nbytes cut: {}\n",
        cut.segment.display(),
        cut.offset,
        cut.seq_expected,
        cut.kind,
        cut.bytes_discarded
    );
    if let Some((path, start, end)) = piece {
        text += &format!(
            "{}@{start}: bytes {start}..{end} of {}\n",
            file_name(path),
            path.display()
        );
    }
    for removed in &cut.segments_removed {
        text += &format!("{}: the whole segment file\n", file_name(removed));
    }
    match cut.frames_cut {
        Some((low, high)) => {
            text += &format!("frames passing their CRC among the cut bytes: seqs {low}..={high}\n")
        }
        None => text += "no frame among the cut bytes passes its CRC\n",
    }
    write_file(&target.join("cut.txt"), text.as_bytes(), durable)?;
    if durable {
        segment::sync_dir(&target)?;
        segment::sync_dir(&root)?;
        segment::sync_dir(dir)?;
    }
    Ok(target)
}

fn file_name(path: &Path) -> String {
    path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}

fn write_file(path: &Path, bytes: &[u8], durable: bool) -> Result<(), JournalError> {
    let mut file = fs::File::create(path).map_err(JournalError::io("create", path))?;
    file.write_all(bytes)
        .map_err(JournalError::io("write", path))?;
    if durable {
        file.sync_all().map_err(JournalError::io("fsync", path))?;
    }
    Ok(())
}

/// The quarantine directories of `dir`, oldest first.
pub(crate) fn list_quarantine(dir: &Path) -> Result<Vec<PathBuf>, JournalError> {
    let root = dir.join(QUARANTINE_DIR_NAME);
    let entries = match fs::read_dir(&root) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(JournalError::io("read directory", &root)(e)),
    };
    let mut found = Vec::new();
    for entry in entries {
        let entry = entry.map_err(JournalError::io("read directory", &root))?;
        found.push(entry.path());
    }
    found.sort();
    Ok(found)
}

/// What in a journal directory without segment files shows that a journal lived there: a
/// watermark above 0, snapshot files, a non-empty quarantine, and any other file or directory
/// but the lock file, a half-prepared next segment and empty directories. Empty: a new journal.
fn earlier_journal_evidence(dir: &Path) -> Result<Vec<String>, JournalError> {
    let mut evidence = Vec::new();
    let mut names: Vec<(String, PathBuf, bool)> = Vec::new();
    for entry in fs::read_dir(dir).map_err(JournalError::io("read directory", dir))? {
        let entry = entry.map_err(JournalError::io("read directory", dir))?;
        let is_dir = entry
            .file_type()
            .map_err(JournalError::io("stat", entry.path()))?
            .is_dir();
        names.push((
            entry.file_name().to_string_lossy().into_owned(),
            entry.path(),
            is_dir,
        ));
    }
    names.sort();
    for (name, path, is_dir) in names {
        let epoch_file = name == EPOCH_FILE_NAME || name == format!("{EPOCH_FILE_NAME}.tmp");
        if name == LOCK_FILE_NAME || name == NEXT_SEGMENT_FILE_NAME || epoch_file {
            continue;
        }
        if name == watermark::WATERMARK_FILE_NAME && !is_dir {
            let seq = watermark::read_watermark_file(dir)?;
            if seq > 0 {
                evidence.push(format!(
                    "the watermark file says every frame up to seq {seq} was durable"
                ));
            }
            continue;
        }
        if is_dir {
            let count = fs::read_dir(&path)
                .map_err(JournalError::io("read directory", &path))?
                .count();
            if count > 0 {
                evidence.push(format!("{name}/ holds {count} entr(ies)"));
            }
            continue;
        }
        evidence.push(format!("the file {name}"));
    }
    Ok(evidence)
}

/// Extends `range` to cover `more`.
fn merge_range(range: &mut Option<(u64, u64)>, more: Option<(u64, u64)>) {
    if let Some((low, high)) = more {
        *range = Some(range.map_or((low, high), |(l, h)| (l.min(low), h.max(high))));
    }
}

/// The lowest and highest seq of the frames in a segment file from `from` on that pass their
/// length and CRC checks (whatever their seq), stepping over damage 8 bytes at a time.
fn frames_in(
    path: &Path,
    file_bytes: u64,
    from: usize,
    frame_payload_max: u32,
) -> Result<Option<(u64, u64)>, JournalError> {
    let Ok(len) = usize::try_from(file_bytes) else {
        return Ok(None);
    };
    let map = segment::map_read(path, len)?;
    let data = map.as_deref().unwrap_or(&[]);
    let mut range = None;
    let mut offset = from.max(SEGMENT_DATA_START);
    offset = offset.next_multiple_of(frame::FRAME_ALIGN_BYTES);
    while offset < data.len() {
        match frame::peek(data, offset, frame_payload_max) {
            Some((seq, next_offset)) => {
                merge_range(&mut range, Some((seq, seq)));
                offset = next_offset;
            }
            None => offset += frame::FRAME_ALIGN_BYTES,
        }
    }
    Ok(range)
}

/// Turns damage at or before the watermark (or a journal that ends before it) into the hard
/// error; returns the torn-tail cut, if any.
fn refuse_durable_damage(
    found: &[Found],
    scan: &Scan,
    seq_durable: u64,
) -> Result<Option<Cut>, JournalError> {
    let refuse = |index: usize, offset: usize, seq_expected: u64, kind: CorruptionKind| {
        Err(JournalError::DurableDataCorrupt {
            segment: found[index].file.path.clone(),
            offset: offset as u64,
            seq_expected,
            seq_durable,
            kind,
        })
    };
    match &scan.cut {
        Some(cut) if cut.seq_expected <= seq_durable => {
            refuse(cut.index, cut.offset, cut.seq_expected, cut.kind)
        }
        Some(cut) => Ok(Some(*cut)),
        None if scan.seq_next <= seq_durable => {
            let last = found.len() - 1;
            let kind = CorruptionKind::EndOfData {
                next_segment_first_seq: None,
            };
            refuse(last, scan.ends[last], scan.seq_next, kind)
        }
        None => Ok(None),
    }
}

/// What survives a cut: the segment that stays active (none if every segment goes), where its
/// data ends, and the index from which segments are removed.
struct Keep {
    active_index: Option<usize>,
    write_offset: usize,
    remove_from: usize,
}

impl Keep {
    fn after(found: &[Found], scan: &Scan, cut: Option<&Cut>) -> Keep {
        let last = found.len() - 1;
        match cut {
            None => Keep {
                active_index: Some(last),
                write_offset: scan.ends[last],
                remove_from: found.len(),
            },
            // A bad header: that segment goes whole; the previous one (if any) stays active.
            Some(c) if c.offset == 0 => Keep {
                active_index: c.index.checked_sub(1),
                write_offset: c
                    .index
                    .checked_sub(1)
                    .map_or(SEGMENT_DATA_START, |i| scan.ends[i]),
                remove_from: c.index,
            },
            Some(c) => Keep {
                active_index: Some(c.index),
                write_offset: c.offset,
                remove_from: c.index + 1,
            },
        }
    }
}

fn new_segment(
    dir: &Path,
    config: &JournalConfig,
    meta: &JournalMeta,
    first_seq: u64,
    seq_durable: u64,
) -> Result<ActiveSegment, JournalError> {
    let header = SegmentHeader {
        engine_logic_version: meta.engine_logic_version,
        epoch: meta.epoch,
        capacities_hash: meta.capacities_hash,
        first_seq,
        segment_bytes: config.segment_bytes,
        frame_payload_max: config.frame_payload_max,
    };
    let (path, map) = segment::create_segment(dir, &header, seq_durable)?;
    Ok(ActiveSegment { path, map, header })
}

/// msyncs what recovery changed in the active segment (zeroed bytes, header pages) and fsyncs
/// the directory after removals or a creation.
fn sync_recovery(
    dir: &Path,
    active: &ActiveSegment,
    zeroed: Option<(usize, usize)>,
    page_changed: bool,
    dir_changed: bool,
) -> Result<(), JournalError> {
    if zeroed.is_some() || page_changed {
        let end = zeroed.map_or(SEGMENT_DATA_START, |(_, end)| end.max(SEGMENT_DATA_START));
        active
            .map
            .flush_range(0, end)
            .map_err(JournalError::io("msync", &active.path))?;
    }
    if dir_changed {
        segment::sync_dir(dir)?;
    }
    Ok(())
}

/// The active segment's watermark page after recovery.
struct PageWatermark {
    seq: u64,
    slot_next: usize,
    changed: bool,
}

/// Makes sure the active segment's watermark page holds the recovered watermark.
fn keep_watermark_in_page(active: &mut ActiveSegment, seq_durable: u64) -> PageWatermark {
    let slot_area = &mut active.map[SEGMENT_WATERMARK_AT..SEGMENT_DATA_START];
    let (seq, slot_next) = watermark::newest(slot_area);
    if seq >= seq_durable {
        return PageWatermark {
            seq,
            slot_next,
            changed: false,
        };
    }
    watermark::write_slot(slot_area, slot_next, seq_durable);
    PageWatermark {
        seq: seq_durable,
        slot_next: slot_next ^ 1,
        changed: true,
    }
}

/// The largest watermark in the watermark file and in every segment's watermark page.
fn durable_watermark(dir: &Path, found: &[Found]) -> Result<u64, JournalError> {
    let in_file = watermark::read_watermark_file(dir)?;
    Ok(found
        .iter()
        .map(|f| watermark::newest(&f.page.bytes[SEGMENT_WATERMARK_AT..]).0)
        .fold(in_file, u64::max))
}

/// Reads every header page and refuses a meta mismatch or an epoch from the future.
fn read_headers(files: Vec<SegmentFile>, meta: &JournalMeta) -> Result<Vec<Found>, JournalError> {
    let mut found = Vec::with_capacity(files.len());
    for file in files {
        let page = segment::read_header_pages(&file.path)?;
        let header = if page.file_bytes < segment::SEGMENT_HEADER_BYTES as u64 {
            Err("file shorter than the header")
        } else {
            SegmentHeader::decode(&page.bytes[..], file.name_seq)
        };
        if let Ok(h) = &header {
            check_meta(&file.path, h, meta)?;
        }
        found.push(Found { file, page, header });
    }
    Ok(found)
}

pub(crate) fn check_meta(
    path: &Path,
    header: &SegmentHeader,
    meta: &JournalMeta,
) -> Result<(), JournalError> {
    let mismatch = |field, expected: u64, found: u64| JournalError::MetaMismatch {
        segment: path.to_owned(),
        field,
        expected,
        found,
    };
    if header.engine_logic_version != meta.engine_logic_version {
        return Err(mismatch(
            MetaField::EngineLogicVersion,
            meta.engine_logic_version.into(),
            header.engine_logic_version.into(),
        ));
    }
    if header.capacities_hash != meta.capacities_hash {
        return Err(mismatch(
            MetaField::CapacitiesHash,
            meta.capacities_hash,
            header.capacities_hash,
        ));
    }
    if header.epoch > meta.epoch {
        return Err(JournalError::EpochRegression {
            segment: path.to_owned(),
            expected: meta.epoch,
            found: header.epoch,
        });
    }
    Ok(())
}

/// Walks every frame of every segment until the end or the first bad spot.
fn scan(found: &[Found]) -> Result<Scan, JournalError> {
    let mut scan = Scan {
        headers: Vec::with_capacity(found.len()),
        ends: Vec::with_capacity(found.len()),
        frames: 0,
        seq_next: found[0].file.name_seq,
        cut: None,
    };
    for index in 0..found.len() {
        scan.cut = scan_segment(found, index, &mut scan)?;
        if scan.cut.is_some() {
            break;
        }
    }
    Ok(scan)
}

/// Continues `scan` through segment `index`; returns the first bad spot, if any.
fn scan_segment(
    found: &[Found],
    index: usize,
    scan: &mut Scan,
) -> Result<Option<Cut>, JournalError> {
    let segment = &found[index];
    let seq_expected = scan.seq_next;
    if index > 0 && segment.file.name_seq != seq_expected {
        // The previous segment ended before this one begins (or overlaps it).
        let kind = CorruptionKind::EndOfData {
            next_segment_first_seq: Some(segment.file.name_seq),
        };
        return Ok(Some(Cut {
            index: index - 1,
            offset: scan.ends[index - 1],
            seq_expected,
            kind,
        }));
    }
    let header = match segment.header {
        Ok(header) => header,
        Err(reason) => {
            let kind = CorruptionKind::HeaderInvalid { reason };
            return Ok(Some(Cut {
                index,
                offset: 0,
                seq_expected,
                kind,
            }));
        }
    };
    scan.headers.push(header);
    let data_len = segment.page.file_bytes.min(header.segment_bytes) as usize;
    let map = segment::map_read(&segment.file.path, data_len)?;
    let data = map.as_deref().unwrap_or(&[]);
    let next_first_seq = found.get(index + 1).map(|f| f.file.name_seq);
    let mut offset = SEGMENT_DATA_START;
    while offset < data.len() {
        match frame::decode(data, offset, scan.seq_next, header.frame_payload_max) {
            Ok(Decoded::Frame { next_offset, .. }) => {
                offset = next_offset;
                scan.seq_next += 1;
                scan.frames += 1;
            }
            Ok(Decoded::End) => break,
            Err(_) if successor_continues(next_first_seq, scan.seq_next) => break,
            Err(kind) => {
                return Ok(Some(Cut {
                    index,
                    offset,
                    seq_expected: scan.seq_next,
                    kind,
                }));
            }
        }
    }
    scan.ends.push(offset);
    Ok(None)
}

/// Whether the next segment starts exactly at `seq_expected`. The writer rolls only when the
/// next frame does not fit, so bytes at the end of a segment whose successor continues the seq
/// are damage in unused space, not a frame: they are ignored rather than cut.
pub(crate) fn successor_continues(next_segment_first_seq: Option<u64>, seq_expected: u64) -> bool {
    next_segment_first_seq == Some(seq_expected)
}

/// The span of `bytes` at or after `from` that holds non-zero bytes (first to last).
fn nonzero_span(bytes: &[u8], from: usize) -> Option<(usize, usize)> {
    let tail = bytes.get(from..)?;
    let first = first_nonzero(tail)?;
    let last = tail.iter().rposition(|&b| b != 0).unwrap_or(first);
    Some((from + first, from + last + 1))
}

/// Zeroes every non-zero byte of `map` at or after `from`; returns the zeroed span.
fn zero_stale_bytes(map: &mut [u8], from: usize) -> Option<(usize, usize)> {
    let (start, end) = nonzero_span(map, from)?;
    map[start..end].fill(0);
    Some((start, end))
}

/// Index of the first non-zero byte; checks 64-byte blocks at a time so it vectorizes.
fn first_nonzero(bytes: &[u8]) -> Option<usize> {
    const BLOCK_BYTES: usize = 64;
    let mut blocks = bytes.chunks(BLOCK_BYTES);
    let block = blocks.position(|block| block.iter().fold(0u8, |acc, &b| acc | b) != 0)?;
    let within = bytes[block * BLOCK_BYTES..].iter().position(|&b| b != 0)?;
    Some(block * BLOCK_BYTES + within)
}

/// Bytes up to the last non-zero byte of a segment file that is about to be removed.
fn used_bytes(path: &Path, file_bytes: u64) -> Result<u64, JournalError> {
    let Ok(len) = usize::try_from(file_bytes) else {
        return Ok(file_bytes);
    };
    let map = segment::map_read(path, len)?;
    let data = map.as_deref().unwrap_or(&[]);
    Ok(data
        .iter()
        .rposition(|&b| b != 0)
        .map_or(0, |last| last as u64 + 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_nonzero_finds_bytes_in_every_position() {
        let mut bytes = vec![0u8; 300];
        assert_eq!(first_nonzero(&bytes), None);
        for at in [0, 1, 63, 64, 65, 299] {
            bytes.fill(0);
            bytes[at] = 9;
            assert_eq!(first_nonzero(&bytes), Some(at));
        }
    }

    #[test]
    fn zero_stale_bytes_clears_only_after_from() {
        let mut bytes = vec![1u8; 100];
        bytes[60..].fill(0);
        bytes[80] = 7;
        assert_eq!(zero_stale_bytes(&mut bytes, 50), Some((50, 81)));
        assert!(bytes[50..].iter().all(|&b| b == 0));
        assert!(bytes[..50].iter().all(|&b| b == 1));
        assert_eq!(zero_stale_bytes(&mut bytes, 50), None);
    }
}
