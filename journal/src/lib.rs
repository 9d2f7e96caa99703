//! kuku-journal: Kuku's command journal. Fixed-size, preallocated, memory-mapped segment files
//! of CRC-checked frames; group commit with a durable watermark; crash recovery that truncates
//! torn tails and refuses damaged durable data; a verifying reader; an atomic snapshot store.
//!
//! The journal stores opaque payload bytes: it knows nothing of commands and must never depend
//! on the engine (the codec lives above it). It must never allocate, lock or make a syscall per
//! appended frame, and never truncate a frame at or before the durable watermark.
//!
//! ```
//! use kuku_journal::{Durability, Journal, JournalConfig, JournalMeta, JournalReader};
//!
//! # fn main() -> Result<(), kuku_journal::JournalError> {
//! let dir = tempfile::tempdir().expect("temp dir");
//! let config = JournalConfig { segment_bytes: 1 << 20, frame_payload_max: 4096, durability: Durability::EveryBatch };
//! let meta = JournalMeta { engine_logic_version: 1, capacities_hash: 0xc0ffee, epoch: 1 };
//!
//! let mut journal = Journal::create(dir.path(), config, meta)?;
//! journal.append(1, 1_000, b"first command")?;
//! journal.append_with(2, 1_001, 64, |buf| {
//!     buf[..6].copy_from_slice(b"second");
//!     6
//! })?;
//! assert_eq!(journal.commit()?, 2); // both frames are durable now
//! drop(journal);
//!
//! let (mut journal, report) = Journal::open(dir.path(), config, meta)?;
//! assert_eq!((report.seq_last, report.truncation), (2, None));
//! journal.append(3, 1_002, b"third")?;
//! journal.close()?;
//!
//! let reader = JournalReader::open(dir.path())?;
//! let seqs: Vec<u64> = reader.frames_from(2)?.map(|f| f.map(|f| f.seq)).collect::<Result<_, _>>()?;
//! assert_eq!(seqs, [2, 3]);
//! # Ok(())
//! # }
//! ```
//!
//! A journal directory holds:
//!
//! ```text
//! 00000000000000000001.seg   segments, named by their first seq (fixed size, preallocated)
//! 00000000000000000417.seg
//! watermark                  the durable watermark (two CRC'd slots)
//! journal.lock               the single writer's lock
//! snapshots/                 <seq>.snap files (SnapshotStore)
//! ```
//!
//! Recovery rule: a bad frame (CRC, length, padding, seq continuity) or bad segment header
//! *after* the durable watermark is a torn tail, truncated and reported in a
//! [`RecoveryReport`]; one *at or before* it is a hard [`JournalError::DurableDataCorrupt`]
//! naming the segment, byte offset and expected seq.
//!
//! Modules: `segment` (files, header pages), `frame` (frame layout), `watermark` (where the
//! durable watermark lives), `journal` (the writer), `recovery`, `reader`, `snapshot`, `hook`
//! (sync observer for power-loss tests), `failpoint` (crash points, feature `failpoints`). The format and its
//! rationale are in docs/adr/ADR-004-journal-format.md.

mod durability;
mod error;
pub mod failpoint;
mod frame;
mod hook;
mod journal;
mod reader;
mod recovery;
mod segment;
mod snapshot;
mod watermark;

pub use durability::{Durability, ParseDurabilityError};
pub use error::{CorruptionKind, JournalError, MetaField, SnapshotFault};
pub use frame::{FRAME_ALIGN_BYTES, FRAME_HEADER_BYTES, Frame, frame_bytes};
pub use hook::{SyncEvent, SyncHook};
pub use journal::{Journal, JournalConfig, JournalMeta, LOCK_FILE_NAME};
pub use reader::{Frames, JournalReader, JournalStats, SegmentStats};
pub use recovery::{RecoveryReport, Truncation};
pub use segment::{
    SEGMENT_DATA_START, SEGMENT_HEADER_BYTES, parse_segment_file_name, segment_file_name,
};
pub use snapshot::{
    LatestSnapshot, SkippedSnapshot, Snapshot, SnapshotFile, SnapshotMeta, SnapshotStore,
    snapshot_file_name,
};
pub use watermark::WATERMARK_FILE_NAME;
