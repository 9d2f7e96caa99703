//! [`truncate_after`]: cuts a journal back to a seq, for a node that rejoins as a standby after
//! a failover and holds a tail the new primary never had (frames it journaled but that were
//! never replicated, or replicated to nobody before it died).
//!
//! This is the one operation that removes frames at or before the durable watermark: the
//! watermark is lowered to the cut, because the frames after it are known to be wrong (a newer
//! epoch decided differently), not merely unsynced.
//!
//! **Invariants**: after it returns, the journal's last frame is `seq` (or the journal ended
//! before it and nothing changed); every byte after that frame in its segment is zero; no later
//! segment and no snapshot of a later seq remains; both watermark copies are `<= seq`.
//!
//! **Performance**: one scan of the segment holding `seq` (frames up to it, then the bytes
//! after it page by page, zeroing only pages that hold data), one fsync of it, of the watermark
//! file and of the directory.
//!
//! **Known limitations**: takes the journal lock, so the node must not be running on the
//! directory. The query database is not touched: a database writer on a replicated node
//! persists only up to the replicated watermark, which never lies after the cut.

use std::fs::{self, OpenOptions};
use std::path::Path;

use memmap2::MmapOptions;

use crate::error::{CorruptionKind, JournalError};
use crate::frame::{self, Decoded};
use crate::journal::lock_dir;
use crate::segment::{self, SEGMENT_DATA_START, SEGMENT_WATERMARK_AT, SegmentHeader};
use crate::snapshot::SnapshotStore;
use crate::watermark::{self, WatermarkFile};

/// What [`truncate_after`] removed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Truncated {
    /// The journal's last seq afterwards.
    pub seq_last: u64,
    /// Frames removed from the segment holding the cut (later segments are counted whole).
    pub frames_removed: u64,
    pub segments_removed: usize,
    pub snapshots_removed: usize,
}

/// Removes every frame after `seq` from the journal in `dir` (see the module docs). `seq` must
/// be at least 1: a rejoining node keeps at least the first frame it shares with the primary.
pub fn truncate_after(dir: impl AsRef<Path>, seq: u64) -> Result<Truncated, JournalError> {
    let dir = dir.as_ref();
    if seq == 0 {
        return Err(JournalError::InvalidConfig {
            reason: "truncate_after(0) would remove every frame: delete the data directory and \
                     start the standby from scratch instead"
                .into(),
        });
    }
    let _lock = lock_dir(dir)?;
    let segments = segment::list_segments(dir)?;
    let Some(target_at) = segments.iter().rposition(|s| s.name_seq <= seq) else {
        return Err(JournalError::EmptyJournal {
            dir: dir.to_owned(),
        });
    };
    let mut out = Truncated {
        seq_last: seq,
        ..Truncated::default()
    };
    let (found, removed) =
        cut_segment(&segments[target_at].path, segments[target_at].name_seq, seq)?;
    if !found && target_at + 1 == segments.len() {
        // The journal ends before `seq`: nothing to remove.
        out.seq_last = 0;
        return Ok(out);
    }
    out.frames_removed = removed;
    for later in &segments[target_at + 1..] {
        fs::remove_file(&later.path).map_err(JournalError::io("remove segment", &later.path))?;
        out.segments_removed += 1;
    }
    let (mut file, _) = WatermarkFile::open_or_create(dir)?;
    if file.seq() > seq {
        file.store(seq);
        file.store(seq);
        file.sync().map_err(JournalError::io(
            "msync",
            dir.join(watermark::WATERMARK_FILE_NAME),
        ))?;
    }
    segment::sync_dir(dir)?;
    if let Ok(store) = SnapshotStore::open(dir) {
        for snapshot in store.list()? {
            if snapshot.seq > seq {
                fs::remove_file(&snapshot.path)
                    .map_err(JournalError::io("remove snapshot", &snapshot.path))?;
                out.snapshots_removed += 1;
            }
        }
    }
    Ok(out)
}

/// Zeroes everything after frame `seq` in the segment at `path` and lowers its watermark page.
/// Returns whether frame `seq` was found and how many frames came after it.
fn cut_segment(path: &Path, first_seq: u64, seq: u64) -> Result<(bool, u64), JournalError> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(JournalError::io("open", path))?;
    // SAFETY: the journal lock is held, so no writer maps this segment; segments are never
    // shrunk while mapped, and the mapping does not outlive this function.
    let mut map =
        unsafe { MmapOptions::new().map_mut(&file) }.map_err(JournalError::io("mmap", path))?;
    let header = SegmentHeader::decode(&map[..], first_seq).map_err(|reason| {
        JournalError::CorruptFrame {
            segment: path.to_owned(),
            offset: 0,
            seq_expected: first_seq,
            kind: CorruptionKind::HeaderInvalid { reason },
        }
    })?;
    let (mut offset, mut next_seq) = (SEGMENT_DATA_START, first_seq);
    let mut cut = None;
    let mut after = 0u64;
    // Walks the valid frames; a torn frame ends the walk (it is zeroed below like the rest).
    while let Ok(Decoded::Frame { frame, next_offset }) =
        frame::decode(&map[..], offset, next_seq, header.frame_payload_max)
    {
        if frame.seq == seq {
            cut = Some(next_offset);
        } else if frame.seq > seq {
            after += 1;
        }
        offset = next_offset;
        next_seq += 1;
    }
    let Some(cut) = cut else {
        return Ok((false, 0));
    };
    let mut at = cut;
    while at < map.len() {
        let end = ((at / 4096) + 1) * 4096;
        let end = end.min(map.len());
        if map[at..end].iter().any(|&b| b != 0) {
            map[at..end].fill(0);
        }
        at = end;
    }
    let area = &mut map[SEGMENT_WATERMARK_AT..SEGMENT_DATA_START];
    if watermark::newest(area).0 > seq {
        watermark::write_slot(area, 0, seq);
        watermark::write_slot(area, 1, seq);
    }
    map.flush().map_err(JournalError::io("msync", path))?;
    Ok((true, after))
}
