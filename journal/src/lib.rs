//! kuku-journal: Kuku's command journal. Fixed-size, preallocated, memory-mapped segment files
//! of CRC-checked frames; group commit with a durable watermark; crash recovery that truncates
//! torn tails and refuses damaged durable data; a verifying reader; an atomic snapshot store.
//!
//! Two layers. The frame layer (`Journal`, `JournalReader`, `SnapshotStore`, recovery of the
//! files) stores opaque payload bytes and knows nothing of commands. The engine layer above it
//! ([`codec`], [`state`], [`meta_file`], [`tool`]) gives those bytes meaning: the payload codec,
//! engine recovery (newest valid snapshot + replay), the shadow snapshotter, the engine-config
//! sidecar and the `kuku-replay` tool. The frame layer must never call into the engine layer.
//!
//! What it must never do: allocate, lock or make a syscall per appended frame; truncate a frame
//! at or before the durable watermark; apply a journal written by another engine-logic version
//! or capacity configuration; panic on bytes read from disk.
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
//! 00000000000000000001.seg   segments, named by their first seq (fixed size, zero-filled)
//! 00000000000000000417.seg
//! watermark                  the durable watermark (two CRC'd slots)
//! journal.lock               the single writer's lock
//! next-segment.tmp           the next segment, being zero-filled (not a segment; removed on close)
//! quarantine/                what recovery cut from torn tails, kept (one directory per cut)
//! engine.json                the engine config the commands were applied under (meta_file)
//! snapshots/                 <seq>.snap files (SnapshotStore)
//! ```
//!
//! Recovery rule: a bad frame (CRC, length, padding, seq continuity) or bad segment header
//! *after* the durable watermark is a torn tail, moved into `quarantine/`, cut and reported in a
//! [`RecoveryReport`]; one *at or before* it is a hard [`JournalError::DurableDataCorrupt`]
//! naming the segment, byte offset and expected seq. A directory with no segments starts a
//! new journal only if nothing of an earlier one is in it ([`JournalError::EarlierJournalMissing`]).
//!
//! Modules: `segment` (files, header pages), `frame` (frame layout), `watermark` (where the
//! durable watermark lives), `journal` (the writer), `recovery`, `reader`, `snapshot`, `hook`
//! (sync observer for power-loss tests), `failpoint` (crash points, feature `failpoints`); and
//! above them `codec` (command and snapshot payloads), `state` (engine recovery, replay, shadow
//! snapshots), `meta_file` (the `engine.json` sidecar), `tool` (`kuku-replay`), `upgrade`
//! (`kuku upgrade`: a new journal for a new engine-logic version, from a final snapshot). The format and
//! its rationale are in docs/adr/ADR-004-journal-format.md, the codec in ADR-005; operating
//! procedures in docs/operations.md.

pub mod codec;
mod durability;
mod error;
pub mod failpoint;
mod frame;
mod hook;
mod journal;
pub mod meta_file;
mod reader;
mod recovery;
mod segment;
mod snapshot;
pub mod state;
pub mod tool;
mod truncate;
pub mod upgrade;
mod watermark;

pub use codec::{CodecError, append_command, decode_command, decode_envelope, encode_command};
pub use durability::{Durability, ParseDurabilityError};
pub use error::{CorruptionKind, JournalError, MetaField, SnapshotFault};
pub use frame::{
    FRAME_ALIGN_BYTES, FRAME_HEADER_BYTES, Frame, decode_frame, encode_frame, frame_bytes,
};
pub use hook::{SyncEvent, SyncHook};
pub use journal::{Journal, JournalConfig, JournalMeta, LOCK_FILE_NAME, PendingOpen};
pub use meta_file::{ENGINE_CONFIG_FILE_NAME, read_config, write_config};
pub use reader::{Frames, JournalReader, JournalStats, SegmentStats};
pub use recovery::{EPOCH_FILE_NAME, Findings, QUARANTINE_DIR_NAME, RecoveryReport, Truncation};
pub use segment::{
    NEXT_SEGMENT_FILE_NAME, SEGMENT_DATA_START, SEGMENT_HEADER_BYTES, parse_segment_file_name,
    segment_file_name,
};
pub use snapshot::{
    LatestSnapshot, SkippedSnapshot, Snapshot, SnapshotFile, SnapshotMeta, SnapshotStore,
    snapshot_file_name,
};
pub use state::{
    RecoverOptions, RecoveryInfo, StateError, journal_meta, open_journal_and_engine,
    open_journal_and_engine_checked, recover_engine, recover_engine_with, replay_journal,
    write_snapshot_at,
};
pub use truncate::{Truncated, truncate_after};
pub use watermark::WATERMARK_FILE_NAME;
