//! Recovery: what `Journal::open` does before the first append.
//!
//! 1. Read every segment's header pages: validate headers, check the engine-logic version and
//!    capacities hash against the caller's [`JournalMeta`] (refused on mismatch, before
//!    anything is modified), and take the durable watermark as the largest seq in any valid
//!    watermark slot (the `watermark` file and every segment's watermark page).
//! 2. Scan all frames in seq order, verifying length, CRC, seq continuity and padding, and
//!    that each segment starts where the previous one ended.
//! 3. At the first bad spot, with `seq_expected` the seq that should have been there:
//!    - `seq_expected <= watermark`: durable data is damaged, a hard
//!      [`JournalError::DurableDataCorrupt`] naming segment, offset and seq; nothing is
//!      modified;
//!    - otherwise it is a torn tail: zero the rest of that segment, remove the later segments
//!      (a segment whose header is bad is removed whole), and report it in a [`Truncation`].
//!
//!    A journal that simply ends before the watermark is the same hard error; non-zero bytes
//!    after a clean end (an unsynced page that reached the disk before the one before it) are
//!    zeroed and reported too, so a later append can never be followed by stale frames.
//! 4. Make the result durable with `every-batch` (msync of the zeroed range, directory fsync
//!    after removals) before the first new frame is written.
//!
//! **Invariants**: frames at or before the watermark are never modified; after recovery every
//! byte after the last kept frame is zero and the next append gets `last kept seq + 1`.
//!
//! **Performance**: O(journal bytes): every frame's CRC is checked (hardware CRC, several GB/s),
//! and the last segment's tail is scanned for stale bytes. Segment data is mapped, never copied.
//!
//! **Known limitations**: verification is not limited to segments after the newest snapshot;
//! a long journal that is not pruned makes opening slower. Damage in the unused tail of a
//! sealed segment whose successor continues the seq is ignored, not reported (it holds no
//! data: the writer rolled there).

use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};

use crate::durability::Durability;
use crate::error::{CorruptionKind, JournalError, MetaField};
use crate::frame::{self, Decoded};
use crate::journal::{ActiveSegment, JournalConfig, JournalMeta};
use crate::segment::{
    self, HeaderPages, SEGMENT_DATA_START, SEGMENT_WATERMARK_AT, SegmentFile, SegmentHeader,
};
use crate::watermark;

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

/// A torn tail that recovery cut away.
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
    /// Segment files removed whole, oldest first.
    pub segments_removed: Vec<PathBuf>,
}

impl fmt::Display for RecoveryReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} segment(s), {} frame(s) kept, seq {}..={}, durable watermark {}",
            self.segments, self.frames_kept, self.seq_first, self.seq_last, self.seq_durable
        )?;
        if let Some(cut) = &self.truncation {
            write!(
                f,
                "; torn tail cut at {} offset {} (expected seq {}: {}), {} byte(s) discarded, {} segment(s) removed",
                cut.segment.display(),
                cut.offset,
                cut.seq_expected,
                cut.kind,
                cut.bytes_discarded,
                cut.segments_removed.len()
            )?;
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

pub(crate) fn recover(
    dir: &Path,
    config: &JournalConfig,
    meta: &JournalMeta,
) -> Result<Recovered, JournalError> {
    let files = segment::list_segments(dir)?;
    if files.is_empty() {
        return Err(JournalError::EmptyJournal {
            dir: dir.to_owned(),
        });
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
    let (segments_removed, mut bytes_discarded) = remove_segments(&found[keep.remove_from..])?;
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
    bytes_discarded += zeroed.map_or(0, |(start, end)| (end - start) as u64);
    let page = keep_watermark_in_page(&mut active, seq_durable);

    if config.durability == Durability::EveryBatch {
        // Durable before the first new frame: stale bytes must not come back after a crash.
        let dir_changed = !segments_removed.is_empty() || keep.active_index.is_none();
        let page_changed = page.changed || keep.active_index.is_none();
        sync_recovery(dir, &active, zeroed, page_changed, dir_changed)?;
    }

    let cut_at = match cut {
        Some(c) => Some((
            found[c.index].file.path.clone(),
            c.offset,
            c.seq_expected,
            c.kind,
        )),
        // No bad frame, but stale bytes after the end of data: report them there.
        None => zeroed.map(|_| {
            let kind = CorruptionKind::StaleBytesAfterEnd;
            (active.path.clone(), keep.write_offset, seq_next, kind)
        }),
    };
    let truncation = cut_at.map(|(segment, offset, seq_expected, kind)| Truncation {
        segment,
        offset: offset as u64,
        seq_expected,
        kind,
        bytes_discarded,
        segments_removed,
    });
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

/// Removes whole segment files; returns their paths and how many used bytes they held.
fn remove_segments(gone: &[Found]) -> Result<(Vec<PathBuf>, u64), JournalError> {
    let mut bytes_discarded = 0;
    let mut removed = Vec::with_capacity(gone.len());
    for segment in gone {
        bytes_discarded += used_bytes(&segment.file.path, segment.page.file_bytes)?;
        fs::remove_file(&segment.file.path)
            .map_err(JournalError::io("remove segment", &segment.file.path))?;
        removed.push(segment.file.path.clone());
    }
    Ok((removed, bytes_discarded))
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

/// Zeroes every non-zero byte of `map` at or after `from`; returns the zeroed span.
fn zero_stale_bytes(map: &mut [u8], from: usize) -> Option<(usize, usize)> {
    let tail = &map[from..];
    let first = first_nonzero(tail)?;
    let last = tail.iter().rposition(|&b| b != 0).unwrap_or(first);
    let (start, end) = (from + first, from + last + 1);
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
