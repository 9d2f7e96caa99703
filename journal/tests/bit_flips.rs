//! Random single-bit flips anywhere that matters (segment headers, every byte of every frame
//! including its length word and padding, watermark slots, unused tails) are always detected:
//! after the durable watermark they are truncated at the damaged frame, at or before it they are
//! refused with the damaged frame's location. Recovery never panics and never makes an
//! allocation sized by a corrupt length (checked with a counting global allocator).

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};

use common::{
    META, SEGMENT_BYTES_SMALL, append_range, check_all_frames, config, copy_journal, payload,
    segment_paths,
};
use kuku_journal::{
    CorruptionKind, Durability, Journal, JournalError, SEGMENT_DATA_START, SEGMENT_HEADER_BYTES,
    WATERMARK_FILE_NAME, frame_bytes,
};
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;

/// Records the largest single allocation while armed.
struct CountingAllocator;

static ALLOC_TRACKING: AtomicBool = AtomicBool::new(false);
static ALLOC_BYTES_MAX: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is forwarded unchanged to the system allocator; the bookkeeping only
// touches atomics and never allocates.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if ALLOC_TRACKING.load(Ordering::Relaxed) {
            ALLOC_BYTES_MAX.fetch_max(layout.size(), Ordering::Relaxed);
        }
        // SAFETY: same layout contract as our caller's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System.alloc` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if ALLOC_TRACKING.load(Ordering::Relaxed) {
            ALLOC_BYTES_MAX.fetch_max(new_size, Ordering::Relaxed);
        }
        // SAFETY: `ptr` came from `System` with `layout`; same contract as our caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

/// Tests in this binary share the allocation tracker.
static SERIAL: Mutex<()> = Mutex::new(());

/// Recovery allocates header pages (8 KiB) and small bookkeeping; a corrupt length would ask
/// for up to 4 GiB.
const RECOVERY_ALLOC_BYTES_MAX: usize = 64 * 1024;
const FRAMES: u64 = 100;

/// Where a frame lies: segment index, start, end including padding.
#[derive(Debug, Clone, Copy)]
struct FrameAt {
    segment: usize,
    start: usize,
    end_padded: usize,
}

struct Base {
    dir: tempfile::TempDir,
    segments: Vec<PathBuf>,
    first_seqs: Vec<u64>,
    frames: Vec<FrameAt>,
    /// End of data per segment.
    ends: Vec<usize>,
}

/// A journal of 100 frames over several 12 KiB segments, written once per test process.
fn base() -> &'static Base {
    static BASE: OnceLock<Base> = OnceLock::new();
    BASE.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let mut journal = Journal::create(
            dir.path(),
            config(SEGMENT_BYTES_SMALL, Durability::None),
            META,
        )
        .unwrap();
        append_range(&mut journal, 1..=FRAMES);
        // Written but never marked durable (no graceful close): the watermark stays at 0.
        journal.commit().unwrap();
        drop(journal);
        // The writer's placement rule: a frame that does not fit starts the next segment.
        let (mut frames, mut ends, mut first_seqs) = (Vec::new(), Vec::new(), vec![1]);
        let mut offset = SEGMENT_DATA_START;
        for seq in 1..=FRAMES {
            let len = frame_bytes(payload(seq).len());
            if offset + len > SEGMENT_BYTES_SMALL as usize {
                ends.push(offset);
                first_seqs.push(seq);
                offset = SEGMENT_DATA_START;
            }
            frames.push(FrameAt {
                segment: first_seqs.len() - 1,
                start: offset,
                end_padded: offset + len,
            });
            offset += len;
        }
        ends.push(offset);
        let segments = segment_paths(dir.path());
        assert_eq!(segments.len(), first_seqs.len());
        assert!(segments.len() >= 3);
        Base {
            dir,
            segments,
            first_seqs,
            frames,
            ends,
        }
    })
}

#[derive(Debug, Clone, Copy)]
enum Target {
    /// A bit of a segment's header record.
    Header { segment: usize, byte: usize },
    /// A bit of a frame (len, crc, seq, ts, payload or padding).
    Frame { index: usize, byte: usize },
    /// A bit of a watermark slot in the last segment's watermark page.
    PageSlot { slot: usize, byte: usize },
    /// A bit of a watermark slot in the watermark file.
    FileSlot { slot: usize, byte: usize },
    /// A bit after the end of data of the last segment.
    LastTail { byte: usize },
    /// A bit after the end of data of a sealed segment.
    SealedTail { segment: usize, byte: usize },
}

fn target() -> impl Strategy<Value = (Target, u8)> {
    let base = base();
    let segments = base.segments.len();
    let frames = base.frames.clone();
    let target = prop_oneof![
        1 => (0..segments, 0..SEGMENT_HEADER_BYTES).prop_map(|(segment, byte)| Target::Header { segment, byte }),
        6 => (0..frames.len(), any::<prop::sample::Index>()).prop_map(move |(index, at)| {
            let frame = frames[index];
            Target::Frame { index, byte: at.index(frame.end_padded - frame.start) }
        }),
        1 => (0..2usize, 0..16usize).prop_map(|(slot, byte)| Target::PageSlot { slot, byte }),
        1 => (0..2usize, 0..16usize).prop_map(|(slot, byte)| Target::FileSlot { slot, byte }),
        1 => any::<prop::sample::Index>().prop_map(move |at| {
            let last_end = base.ends[segments - 1];
            Target::LastTail { byte: last_end + at.index(SEGMENT_BYTES_SMALL as usize - last_end) }
        }),
        1 => (0..segments - 1, any::<prop::sample::Index>()).prop_map(move |(segment, at)| {
            let end = base.ends[segment];
            Target::SealedTail { segment, byte: end + at.index((SEGMENT_BYTES_SMALL as usize - end).max(1)) }
        }),
    ];
    (target, 0..8u8)
}

fn flip(path: &Path, byte: usize, bit: u8) {
    let mut bytes = fs::read(path).unwrap();
    if byte < bytes.len() {
        bytes[byte] ^= 1 << bit;
        fs::write(path, bytes).unwrap();
    }
}

/// What recovery must do.
#[derive(Debug, PartialEq, Eq)]
enum Expected {
    /// Refused: damage at this segment, offset and seq, at or before the watermark.
    Refused {
        segment: usize,
        offset: u64,
        seq: u64,
    },
    /// Truncated at this segment, offset and seq.
    Truncated {
        segment: usize,
        offset: u64,
        seq: u64,
    },
    /// Everything kept, nothing reported.
    Intact,
}

fn expected(target: Target, seq_durable: u64) -> Expected {
    let base = base();
    let last = base.segments.len() - 1;
    let damaged = |segment: usize, offset: usize, seq: u64| {
        if seq <= seq_durable {
            Expected::Refused {
                segment,
                offset: offset as u64,
                seq,
            }
        } else {
            Expected::Truncated {
                segment,
                offset: offset as u64,
                seq,
            }
        }
    };
    match target {
        Target::Header { segment, .. } => damaged(segment, 0, base.first_seqs[segment]),
        Target::Frame { index, .. } => {
            let frame = base.frames[index];
            damaged(frame.segment, frame.start, index as u64 + 1)
        }
        Target::LastTail { .. } => damaged(last, base.ends[last], FRAMES + 1),
        Target::PageSlot { .. } | Target::FileSlot { .. } | Target::SealedTail { .. } => {
            Expected::Intact
        }
    }
}

fn check_case(seq_durable: u64, target: Target, bit: u8) -> Result<(), TestCaseError> {
    let base = base();
    let work = tempfile::tempdir().unwrap();
    copy_journal(base.dir.path(), work.path());
    let cfg = config(SEGMENT_BYTES_SMALL, Durability::None);
    let (mut journal, _) = Journal::open(work.path(), cfg, META).unwrap();
    journal.set_durable_watermark(seq_durable).unwrap();
    drop(journal);

    let segment_path = |i: usize| work.path().join(base.segments[i].file_name().unwrap());
    let last = base.segments.len() - 1;
    match target {
        Target::Header { segment, byte } => flip(&segment_path(segment), byte, bit),
        Target::Frame { index, byte } => {
            let frame = base.frames[index];
            flip(&segment_path(frame.segment), frame.start + byte, bit);
        }
        Target::PageSlot { slot, byte } => flip(&segment_path(last), 4096 + slot * 512 + byte, bit),
        Target::FileSlot { slot, byte } => flip(
            &work.path().join(WATERMARK_FILE_NAME),
            slot * 512 + byte,
            bit,
        ),
        Target::LastTail { byte } => flip(&segment_path(last), byte, bit),
        Target::SealedTail { segment, byte } => flip(&segment_path(segment), byte, bit),
    }

    ALLOC_BYTES_MAX.store(0, Ordering::Relaxed);
    ALLOC_TRACKING.store(true, Ordering::Relaxed);
    let result = Journal::open(work.path(), cfg, META);
    ALLOC_TRACKING.store(false, Ordering::Relaxed);
    let alloc_bytes_max = ALLOC_BYTES_MAX.load(Ordering::Relaxed);
    prop_assert!(
        alloc_bytes_max <= RECOVERY_ALLOC_BYTES_MAX,
        "recovery allocated {alloc_bytes_max} bytes at once"
    );

    match (expected(target, seq_durable), result) {
        (
            Expected::Refused {
                segment,
                offset,
                seq,
            },
            Err(JournalError::DurableDataCorrupt {
                segment: at,
                offset: o,
                seq_expected,
                seq_durable: w,
                ..
            }),
        ) => {
            prop_assert_eq!(at, segment_path(segment));
            prop_assert_eq!((o, seq_expected, w), (offset, seq, seq_durable));
        }
        (
            Expected::Truncated {
                segment,
                offset,
                seq,
            },
            Ok((journal, report)),
        ) => {
            let cut = report.truncation.clone().expect("a truncation is reported");
            prop_assert_eq!(&cut.segment, &segment_path(segment));
            prop_assert_eq!((cut.offset, cut.seq_expected), (offset, seq), "{}", report);
            prop_assert_eq!(report.frames_kept, seq - 1);
            let header_invalid = matches!(cut.kind, CorruptionKind::HeaderInvalid { .. });
            prop_assert_eq!(offset == 0, header_invalid, "{}", report);
            continue_and_check(journal, work.path(), seq)?;
        }
        (Expected::Intact, Ok((journal, report))) => {
            prop_assert_eq!(report.truncation, None);
            prop_assert_eq!(report.frames_kept, FRAMES);
            prop_assert_eq!(
                report.seq_durable,
                seq_durable,
                "the other copy of the watermark survives"
            );
            continue_and_check(journal, work.path(), FRAMES + 1)?;
        }
        (expected, Err(err)) => prop_assert!(false, "expected {:?}, got error {}", expected, err),
        (expected, Ok((_, report))) => {
            prop_assert!(false, "expected {:?}, got {}", expected, report)
        }
    }
    Ok(())
}

/// Appends after recovery and reads everything back.
fn continue_and_check(
    mut journal: Journal,
    dir: &Path,
    seq_next: u64,
) -> Result<(), TestCaseError> {
    prop_assert_eq!(journal.seq_next(), seq_next);
    append_range(&mut journal, seq_next..=seq_next + 2);
    journal.close().unwrap();
    prop_assert_eq!(check_all_frames(dir), seq_next + 2);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 512,
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(
            "tests/proptest-regressions/bit_flips.txt",
        ))),
        ..ProptestConfig::default()
    })]

    #[test]
    fn a_flipped_bit_is_truncated_after_the_watermark_and_refused_at_or_before_it(
        seq_durable in 0..=FRAMES,
        (target, bit) in target(),
    ) {
        let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        check_case(seq_durable, target, bit)?;
    }
}

#[test]
fn every_bit_of_one_frame_and_one_header_is_detected() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let base = base();
    // The last frame of the first segment, with the watermark just before and at it.
    let index = base.frames.iter().rposition(|f| f.segment == 0).unwrap();
    let frame = base.frames[index];
    for seq_durable in [index as u64, index as u64 + 1] {
        for byte in 0..frame.end_padded - frame.start {
            for bit in 0..8 {
                check_case(seq_durable, Target::Frame { index, byte }, bit).unwrap();
            }
        }
    }
    for byte in 0..SEGMENT_HEADER_BYTES {
        check_case(
            base.first_seqs[1] - 1,
            Target::Header { segment: 1, byte },
            (byte % 8) as u8,
        )
        .unwrap();
    }
}
