//! Cuts at every byte offset: after the durable watermark they are torn tails (truncated,
//! reported, appending continues); at or before it they are hard errors naming segment, offset
//! and seq.

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use common::{
    META, append_range, check_all_frames, config, copy_journal, frame_spans, segment_paths,
};
use kuku_journal::{
    CorruptionKind, Durability, Journal, JournalConfig, JournalError, RecoveryReport,
    SEGMENT_DATA_START, SEGMENT_HEADER_BYTES, segment_file_name,
};

/// 16 KiB: 8 KiB of frames, enough for 25 frames of up to 200 bytes in one segment.
const SEGMENT_BYTES: u64 = 16 * 1024;

#[derive(Debug, Clone, Copy)]
enum Cut {
    /// Zero every byte from the offset on (lost pages in a preallocated file).
    Zero,
    /// Truncate the file at the offset.
    Truncate,
}

/// A journal written once, kept as bytes.
struct Base {
    segment: Vec<u8>,
    dir: tempfile::TempDir,
    spans: Vec<(usize, usize)>,
}

fn build_base(frames: u64, seq_durable: u64, durability: Durability) -> Base {
    let dir = tempfile::tempdir().unwrap();
    let mut journal = Journal::create(dir.path(), config(SEGMENT_BYTES, durability), META).unwrap();
    append_range(&mut journal, 1..=seq_durable);
    journal.commit().unwrap();
    append_range(&mut journal, seq_durable + 1..=frames);
    assert_eq!(
        journal.durable_watermark(),
        if durability == Durability::None {
            0
        } else {
            seq_durable
        }
    );
    // Dropped without close: the uncommitted frames stay in the page cache, as after a crash.
    drop(journal);
    let paths = segment_paths(dir.path());
    assert_eq!(paths.len(), 1, "all frames in one segment");
    Base {
        segment: fs::read(&paths[0]).unwrap(),
        dir,
        spans: frame_spans(frames),
    }
}

/// The offsets to cut at: every byte of the header record and of the frames (and a little past
/// them); in the rest of the header pages, whose bytes are all zero except the watermark slots,
/// every cut gives the same file, so only the boundaries and the slots are tried.
fn cut_offsets(base: &Base) -> Vec<usize> {
    let written_end = base.spans.last().unwrap().1;
    let mut offsets: Vec<usize> = (0..SEGMENT_HEADER_BYTES).collect();
    offsets.extend([
        64, 65, 511, 1024, 4095, 4096, 4097, 4100, 4111, 4112, 4608, 4620, 8191,
    ]);
    offsets.extend(SEGMENT_DATA_START..written_end + 16);
    offsets
}

/// Replaces the journal in `work` with `base` cut at `offset`.
fn install_cut(base: &Base, work: &Path, offset: usize, cut: Cut) -> PathBuf {
    for entry in fs::read_dir(work).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            fs::remove_dir_all(path).unwrap();
        } else {
            fs::remove_file(path).unwrap();
        }
    }
    copy_journal(base.dir.path(), work);
    let path = work.join(segment_file_name(1));
    let bytes = match cut {
        Cut::Zero => {
            let mut bytes = base.segment.clone();
            bytes[offset..].fill(0);
            bytes
        }
        Cut::Truncate => base.segment[..offset].to_vec(),
    };
    fs::write(&path, bytes).unwrap();
    path
}

/// How many whole frames lie before `offset`, and the frame cut in two by it (if any).
fn whole_frames_before(spans: &[(usize, usize)], offset: usize) -> (u64, Option<usize>) {
    let kept = spans.iter().take_while(|(_, end)| *end <= offset).count();
    let split = spans
        .get(kept)
        .filter(|(start, _)| *start < offset)
        .map(|(start, _)| *start);
    (kept as u64, split)
}

fn expect_torn_tail_report(
    report: &RecoveryReport,
    segment: &Path,
    offset: usize,
    kept: u64,
    split: Option<usize>,
) {
    assert_eq!(report.frames_kept, kept, "cut at {offset}: {report}");
    assert_eq!(report.seq_last, kept, "cut at {offset}: {report}");
    if offset < SEGMENT_HEADER_BYTES {
        let cut = report
            .truncation
            .as_ref()
            .expect("a broken header is reported");
        assert_eq!((cut.offset, cut.seq_expected), (0, 1), "{report}");
        assert!(
            matches!(cut.kind, CorruptionKind::HeaderInvalid { .. }),
            "{report}"
        );
        assert_eq!(cut.segments_removed, vec![segment.to_owned()]);
    } else if let Some(frame_start) = split {
        let cut = report
            .truncation
            .as_ref()
            .unwrap_or_else(|| panic!("cut at {offset} inside a frame: {report}"));
        assert_eq!(cut.segment, segment);
        assert_eq!(
            cut.offset, frame_start as u64,
            "the cut is reported at the torn frame"
        );
        assert_eq!(cut.seq_expected, kept + 1);
        assert!(
            cut.bytes_discarded > 0 && cut.bytes_discarded < (offset - frame_start + 1) as u64,
            "{report}"
        );
        assert!(cut.segments_removed.is_empty());
    } else {
        // A cut on a frame boundary (or in padding) leaves nothing to see.
        assert_eq!(report.truncation, None, "cut at {offset}: {report}");
    }
}

#[test]
fn every_byte_cut_without_a_watermark_keeps_the_whole_frames_before_it() {
    let base = build_base(20, 0, Durability::None);
    let work = tempfile::tempdir().unwrap();
    let cfg = config(SEGMENT_BYTES, Durability::None);
    for cut in [Cut::Zero, Cut::Truncate] {
        for offset in cut_offsets(&base) {
            let segment = install_cut(&base, work.path(), offset, cut);
            let (mut journal, report) = Journal::open(work.path(), cfg, META)
                .unwrap_or_else(|e| panic!("{cut:?} at {offset}: recovery must succeed: {e}"));
            let (kept, split) = whole_frames_before(&base.spans, offset);
            expect_torn_tail_report(&report, &segment, offset, kept, split);

            assert_eq!(journal.seq_next(), kept + 1, "{cut:?} at {offset}");
            append_range(&mut journal, kept + 1..=kept + 3);
            journal.close().unwrap();
            let (journal, report) = Journal::open(work.path(), cfg, META).unwrap();
            assert_eq!(
                (report.seq_last, &report.truncation),
                (kept + 3, &None),
                "{cut:?} at {offset}: {report}"
            );
            drop(journal);
            assert_eq!(
                check_all_frames(work.path()),
                kept + 3,
                "{cut:?} at {offset}"
            );
        }
    }
}

#[test]
fn every_byte_cut_at_or_before_the_watermark_is_a_hard_error_after_it_a_torn_tail() {
    const SEQ_DURABLE: u64 = 20;
    let base = build_base(25, SEQ_DURABLE, Durability::EveryBatch);
    let work = tempfile::tempdir().unwrap();
    let cfg = config(SEGMENT_BYTES, Durability::EveryBatch);
    for cut in [Cut::Zero, Cut::Truncate] {
        for offset in cut_offsets(&base) {
            let segment = install_cut(&base, work.path(), offset, cut);
            let before = fs::read(&segment).unwrap();
            let (kept, split) = whole_frames_before(&base.spans, offset);
            let result = Journal::open(work.path(), cfg, META);
            if kept >= SEQ_DURABLE {
                let (_journal, report) =
                    result.unwrap_or_else(|e| panic!("{cut:?} at {offset}: {e}"));
                expect_torn_tail_report(&report, &segment, offset, kept, split);
                assert_eq!(report.seq_durable, SEQ_DURABLE);
                continue;
            }
            let err = result.expect_err("damage before the watermark must be refused");
            let expected_offset = if offset < SEGMENT_HEADER_BYTES {
                0
            } else {
                base.spans[kept as usize].0 as u64
            };
            match &err {
                JournalError::DurableDataCorrupt {
                    segment: at,
                    offset,
                    seq_expected,
                    seq_durable,
                    ..
                } => {
                    assert_eq!(at, &segment);
                    assert_eq!(
                        (*offset, *seq_expected, *seq_durable),
                        (expected_offset, kept + 1, SEQ_DURABLE)
                    );
                }
                other => panic!("{cut:?} at {offset}: expected DurableDataCorrupt, got {other}"),
            }
            let message = err.to_string();
            for needle in [
                segment_file_name(1),
                format!("byte offset {expected_offset}"),
                format!("seq {}", kept + 1),
                format!("watermark {SEQ_DURABLE}"),
            ] {
                assert!(message.contains(&needle), "{message:?} lacks {needle:?}");
            }
            assert_eq!(
                fs::read(&segment).unwrap(),
                before,
                "a refused journal is left untouched"
            );
        }
    }
}

fn multi_segment_journal(dir: &Path, seq_durable: u64, frames: u64) -> JournalConfig {
    let cfg = config(common::SEGMENT_BYTES_SMALL, Durability::EveryBatch);
    let mut journal = Journal::create(dir, cfg, META).unwrap();
    append_range(&mut journal, 1..=seq_durable);
    assert_eq!(journal.commit().unwrap(), seq_durable);
    append_range(&mut journal, seq_durable + 1..=frames);
    drop(journal);
    cfg
}

#[test]
fn a_lost_newest_segment_below_the_watermark_is_a_hard_error() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = multi_segment_journal(dir.path(), 100, 100);
    let segments = segment_paths(dir.path());
    assert!(segments.len() >= 3);
    fs::remove_file(segments.last().unwrap()).unwrap();
    let err = Journal::open(dir.path(), cfg, META).unwrap_err();
    assert!(
        matches!(&err, JournalError::DurableDataCorrupt { segment, kind: CorruptionKind::EndOfData { next_segment_first_seq: None }, .. }
            if segment == &segments[segments.len() - 2]),
        "{err}"
    );
}

#[test]
fn a_bad_header_after_the_watermark_removes_that_segment_and_later_ones() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = multi_segment_journal(dir.path(), 5, 100);
    let segments = segment_paths(dir.path());
    assert!(segments.len() >= 3);
    let mut second = fs::read(&segments[1]).unwrap();
    second[20] ^= 0x10;
    fs::write(&segments[1], second).unwrap();
    let first_seq_of_second: u64 = segments[1]
        .file_stem()
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap();

    let (mut journal, report) = Journal::open(dir.path(), cfg, META).unwrap();
    let cut = report.truncation.clone().expect("reported");
    assert_eq!((cut.offset, cut.seq_expected), (0, first_seq_of_second));
    assert!(matches!(cut.kind, CorruptionKind::HeaderInvalid { .. }));
    assert_eq!(cut.segments_removed, segments[1..].to_vec());
    assert_eq!(report.frames_kept, first_seq_of_second - 1);
    append_range(&mut journal, first_seq_of_second..=first_seq_of_second + 40);
    journal.close().unwrap();
    assert_eq!(check_all_frames(dir.path()), first_seq_of_second + 40);
}

#[test]
fn stale_frames_after_a_lost_page_are_zeroed_so_new_appends_cannot_meet_them() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(SEGMENT_BYTES, Durability::None);
    let mut journal = Journal::create(dir.path(), cfg, META).unwrap();
    append_range(&mut journal, 1..=12);
    // A crash, not a graceful close: the watermark stays at 0.
    journal.commit().unwrap();
    drop(journal);
    // Frame 11 never reached the disk, frame 12 did (pages are written back in any order).
    let spans = frame_spans(12);
    let path = dir.path().join(segment_file_name(1));
    let mut bytes = fs::read(&path).unwrap();
    bytes[spans[10].0..spans[10].1].fill(0);
    fs::write(&path, bytes).unwrap();

    let (mut journal, report) = Journal::open(dir.path(), cfg, META).unwrap();
    let cut = report.truncation.clone().expect("stale bytes are reported");
    assert_eq!(cut.kind, CorruptionKind::StaleBytesAfterEnd);
    assert_eq!((cut.offset, cut.seq_expected), (spans[10].0 as u64, 11));
    assert_eq!(report.frames_kept, 10);
    append_range(&mut journal, 11..=30);
    journal.close().unwrap();
    assert_eq!(check_all_frames(dir.path()), 30);
}
