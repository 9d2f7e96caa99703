//! The crate's error type, [`JournalError`], and the corruption vocabulary shared by recovery,
//! the reader and the snapshot store.
//!
//! Every variant names what a caller (or an operator reading the message) can act on: which
//! directory, which segment file, which byte offset, which seq.

use std::fmt;
use std::io;
use std::path::PathBuf;

/// Everything that can go wrong in the journal, the reader and the snapshot store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JournalError {
    /// The directory given to open does not exist.
    #[error(
        "journal directory {} does not exist (create a new journal with Journal::create or Journal::open_or_create)",
        .path.display()
    )]
    MissingDirectory { path: PathBuf },

    /// The directory exists but holds no segment files.
    #[error(
        "journal directory {} holds no segment files (*.seg): nothing to recover (create a new journal with Journal::create or Journal::open_or_create)",
        .dir.display()
    )]
    EmptyJournal { dir: PathBuf },

    /// The journal directory holds no segment files but traces of an earlier journal: its
    /// frames are missing. A new journal is never started over them.
    #[error(
        "journal directory {} holds no segment files, but a journal lived here before: {}. Its frames are missing; refusing to start a new journal over them (docs/operations.md, \"Refusals at start-up\"): restore the segment files from a backup or a replica, or rebuild this node as a standby from an empty data directory; to really start over, move the data directory aside",
        .dir.display(),
        .evidence.join("; ")
    )]
    EarlierJournalMissing { dir: PathBuf, evidence: Vec<String> },

    /// A path that must be a directory is something else (a file).
    #[error(
        "{} is not a directory (a file is in its place): give a directory, or move the file away",
        .path.display()
    )]
    NotADirectory { path: PathBuf },

    /// `Journal::create` on a directory that already holds segments.
    #[error(
        "journal directory {} already holds segment files; open it instead of creating a new journal",
        .dir.display()
    )]
    JournalExists { dir: PathBuf },

    /// Another writer (this or another process) holds the journal's lock file.
    #[error("journal directory {} is locked by another writer (lock file {})", .dir.display(), .lock.display())]
    Locked { dir: PathBuf, lock: PathBuf },

    /// A segment was written by a different engine build or capacity configuration.
    #[error(
        "{}: {field} is {found:#x}, but this build expects {expected:#x}; refusing a journal written by a different engine build or capacity configuration (run the build and [engine] settings it was written with; to move a data directory to a new engine-logic version, stop the old build cleanly and run `kuku upgrade`: docs/operations.md, \"Upgrades\")",
        .segment.display()
    )]
    MetaMismatch {
        segment: PathBuf,
        field: MetaField,
        expected: u64,
        found: u64,
    },

    /// A segment carries a newer epoch than the caller: a promoted peer wrote to this journal.
    #[error(
        "{}: written in epoch {found}, newer than the caller's epoch {expected}; a promoted node has taken over, this node must rejoin as a standby",
        .segment.display()
    )]
    EpochRegression {
        segment: PathBuf,
        expected: u64,
        found: u64,
    },

    /// Recovery found damage at or before the durable watermark: data that was reported
    /// durable is missing or corrupt. Never truncated automatically.
    #[error(
        "{} at byte offset {offset}: {kind}; expected frame seq {seq_expected}, which is at or before the durable watermark {seq_durable}: durable data is damaged, refusing to truncate it (restore the segment from a replica or a backup)",
        .segment.display()
    )]
    DurableDataCorrupt {
        segment: PathBuf,
        offset: u64,
        seq_expected: u64,
        seq_durable: u64,
        kind: CorruptionKind,
    },

    /// The reader met a frame it cannot accept. Recovery would truncate it if it lies after
    /// the durable watermark (see [`crate::JournalReader::durable_watermark`]).
    #[error("{} at byte offset {offset}: {kind}; expected frame seq {seq_expected}", .segment.display())]
    CorruptFrame {
        segment: PathBuf,
        offset: u64,
        seq_expected: u64,
        kind: CorruptionKind,
    },

    /// `append` with a seq other than the next one.
    #[error("append out of order: expected seq {expected}, got {got}")]
    SeqMismatch { expected: u64, got: u64 },

    /// Payloads need at least one byte: a zero length word marks the end of written data.
    #[error(
        "payload is empty; a frame needs at least one payload byte (a zero length marks the end of data)"
    )]
    PayloadEmpty,

    /// Payload larger than the configured `frame_payload_max`.
    #[error("payload of {len} bytes exceeds frame_payload_max ({max} bytes)")]
    PayloadTooLarge { len: usize, max: u32 },

    /// The closure given to `append_with` reported a length outside `1..=payload_len_max`.
    #[error(
        "append_with: the payload writer returned {written} bytes, outside 1..={payload_len_max}"
    )]
    PayloadWriterOutOfRange {
        written: usize,
        payload_len_max: usize,
    },

    /// `set_durable_watermark` beyond what has been appended.
    #[error("durable watermark {requested} is ahead of the last appended seq {seq_last}")]
    WatermarkAhead { requested: u64, seq_last: u64 },

    /// The reader was asked for a seq older than the oldest segment.
    #[error("seq {requested} is before the first seq {seq_first} kept in the journal")]
    SeqNotInJournal { requested: u64, seq_first: u64 },

    /// A configuration value out of range.
    #[error("invalid journal configuration: {reason}")]
    InvalidConfig { reason: String },

    /// A sync failed earlier. After a failed msync/fsync the kernel may have dropped the dirty
    /// pages, so retrying could report success for lost data ("fsyncgate"): the journal stops.
    #[error(
        "an earlier sync failed ({cause}); the journal refuses further writes: reopen it so recovery checks what reached the disk"
    )]
    Poisoned { cause: String },

    /// A snapshot file failed validation.
    #[error("snapshot {} is corrupt: {reason}", .path.display())]
    SnapshotCorrupt {
        path: PathBuf,
        reason: SnapshotFault,
    },

    /// The file system holding the journal is full.
    #[error(
        "no space left on the device holding {} ({op}: {source}): free space on that file system, then restart; every frame written so far is kept (docs/operations.md, \"A full disk\")",
        .path.display()
    )]
    NoSpace {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    /// An operating-system call failed.
    #[error("{op} {}: {source}", .path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

impl JournalError {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> Self {
        let path = path.into();
        move |source| match source.raw_os_error() {
            Some(libc::ENOSPC) | Some(libc::EDQUOT) => JournalError::NoSpace { op, path, source },
            _ => JournalError::Io { op, path, source },
        }
    }
}

/// Which part of the segment header's meta differed from what the caller expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetaField {
    EngineLogicVersion,
    CapacitiesHash,
}

impl fmt::Display for MetaField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MetaField::EngineLogicVersion => "engine-logic version",
            MetaField::CapacitiesHash => "capacities hash",
        })
    }
}

/// What was wrong at a given place in a segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CorruptionKind {
    /// The segment header failed validation (CRC, magic, version, sizes, name).
    HeaderInvalid { reason: &'static str },
    /// The frame's length word is larger than `frame_payload_max` or than the space left.
    LenInvalid { len: u32 },
    /// The frame's CRC does not match its bytes.
    CrcMismatch { stored: u32, computed: u32 },
    /// A well-formed frame carries the wrong seq.
    SeqMismatch { found: u64 },
    /// The padding after a frame's payload is not zero.
    PaddingNonZero,
    /// The data ends (zero length word or end of segment) where frames were expected: either
    /// before the durable watermark, or with a next segment that does not continue the seq.
    EndOfData { next_segment_first_seq: Option<u64> },
    /// Non-zero bytes after the end of data in the last segment (a torn, unsynced write).
    StaleBytesAfterEnd,
}

impl fmt::Display for CorruptionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CorruptionKind::HeaderInvalid { reason } => {
                write!(f, "invalid segment header ({reason})")
            }
            CorruptionKind::LenInvalid { len } => write!(f, "invalid frame length {len}"),
            CorruptionKind::CrcMismatch { stored, computed } => {
                write!(
                    f,
                    "frame CRC mismatch (stored {stored:#010x}, computed {computed:#010x})"
                )
            }
            CorruptionKind::SeqMismatch { found } => write!(f, "frame carries seq {found}"),
            CorruptionKind::PaddingNonZero => f.write_str("non-zero frame padding"),
            CorruptionKind::EndOfData {
                next_segment_first_seq: Some(next),
            } => {
                write!(
                    f,
                    "data ends here but the next segment starts at seq {next}"
                )
            }
            CorruptionKind::EndOfData {
                next_segment_first_seq: None,
            } => f.write_str("data ends here"),
            CorruptionKind::StaleBytesAfterEnd => {
                f.write_str("non-zero bytes after the end of data")
            }
        }
    }
}

/// Why a snapshot file was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SnapshotFault {
    /// Shorter than header + CRC.
    TooShort {
        file_bytes: u64,
    },
    BadMagic,
    UnsupportedVersion {
        version: u32,
    },
    /// The payload length in the header does not match the file size.
    LenMismatch {
        payload_len: u64,
        file_bytes: u64,
    },
    CrcMismatch {
        stored: u32,
        computed: u32,
    },
    /// The seq in the file name differs from the seq in the header.
    NameMismatch {
        name_seq: u64,
        header_seq: u64,
    },
}

impl fmt::Display for SnapshotFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SnapshotFault::TooShort { file_bytes } => {
                write!(f, "file too short ({file_bytes} bytes)")
            }
            SnapshotFault::BadMagic => f.write_str("bad magic"),
            SnapshotFault::UnsupportedVersion { version } => {
                write!(f, "unsupported format version {version}")
            }
            SnapshotFault::LenMismatch {
                payload_len,
                file_bytes,
            } => {
                write!(
                    f,
                    "payload length {payload_len} does not fit the file size {file_bytes}"
                )
            }
            SnapshotFault::CrcMismatch { stored, computed } => {
                write!(
                    f,
                    "CRC mismatch (stored {stored:#010x}, computed {computed:#010x})"
                )
            }
            SnapshotFault::NameMismatch {
                name_seq,
                header_seq,
            } => {
                write!(
                    f,
                    "file name says seq {name_seq}, header says seq {header_seq}"
                )
            }
        }
    }
}
