//! Engine state from the journal: recovery (newest usable snapshot + replay of the frames after
//! it), the shadow snapshotter, and the replay loop both are built on.
//!
//! - [`recover_engine`]: what a node does at start, after `Journal::open` has cut any torn
//!   tail: restore the newest snapshot that passes every check, replay the journal after it.
//! - [`write_snapshot_at`]: the shadow snapshotter. Rebuilds the state at `seq` (normally the
//!   seq of a journaled `TakeSnapshot`) from the newest snapshot at or before it plus the
//!   journal, and writes `snapshots/<seq>.snap` with the state hash and CRC. Runs on a
//!   background thread or on the standby, never on the processor thread.
//! - [`replay_journal`]: decode + `Engine::apply` of every frame after the engine's last seq,
//!   up to a seq, with any `EventSink`.
//! - [`open_journal_and_engine`]: the writer side in one call: open (or create) the journal,
//!   store the engine-config sidecar, recover the engine.
//!
//! A snapshot is used only if all of these hold, else it is reported in
//! [`RecoveryInfo::rejected_snapshots`] and the next older one is tried (then genesis):
//! its CRC, magic, sizes and name verify; its engine-logic version and capacities hash are the
//! caller's; the journal holds the frame at its seq (a snapshot written from frames that a
//! power loss then took is *ahead* of the journal: using it would resurrect lost commands); the
//! payload decodes, holds the caller's config and the same seq; the stable hash of the decoded
//! state equals the stored state hash; and the engine restores from it.
//!
//! **Invariants**
//! - The recovered engine's `last_seq` is the last valid frame's seq (or `seq_until`), and its
//!   state is exactly the state an uninterrupted run over the same frames reaches (tested on
//!   state hashes and event streams, `tests/snapshot_replay.rs`).
//! - A journal written under another engine-logic version or capacities hash is refused before
//!   any frame is applied.
//! - A damaged frame at or before the durable watermark is a hard error
//!   ([`JournalError::DurableDataCorrupt`]); one after it is a torn tail: replay stops there and
//!   reports it ([`TornTail`]), which is exactly what `Journal::open` keeps.
//!
//! **Performance**: recovery is O(snapshot + frames after it): every frame is CRC-checked,
//! decoded (no allocation for steady-state commands) and applied with a `NullSink`. Checking a
//! snapshot candidate re-reads the start of the segment holding its seq (at most one segment),
//! and hashes the decoded snapshot once (O(state)). The shadow snapshotter allocates the whole
//! snapshot in memory (engine snapshot, encoded payload).
//!
//! **Known limitations**: the reader maps segments of a live journal; the shadow snapshotter
//! must only be asked for a seq the writer has already committed (the processor has seen it),
//! and never reads past it. Recovery does not prune segments older than the newest snapshot.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use kuku_engine::hash::stable_hash;
use kuku_engine::{Engine, EngineConfig, EventSink, NullSink, RestoreError};

use crate::codec::{self, CodecError};
use crate::error::{CorruptionKind, JournalError, SnapshotFault};
use crate::journal::{Journal, JournalConfig, JournalMeta};
use crate::meta_file;
use crate::reader::JournalReader;
use crate::recovery::{Findings, RecoveryReport};
use crate::snapshot::{SnapshotMeta, SnapshotStore};

/// Errors of recovery, replay and the snapshotter.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StateError {
    /// The journal itself: missing directory, empty journal, damaged durable data, meta
    /// mismatch, I/O.
    #[error(transparent)]
    Journal(#[from] JournalError),

    /// A frame passed its CRC but its payload is not a command this build can decode.
    #[error(
        "frame seq {seq} passed its CRC but its payload does not decode ({source}): written by an incompatible build, or a codec bug"
    )]
    Payload {
        seq: u64,
        #[source]
        source: CodecError,
    },

    /// The engine-config sidecar (or a `--config` file) is unreadable or inconsistent.
    #[error("engine config {}: {reason}", .path.display())]
    ConfigFile { path: PathBuf, reason: String },

    /// The journal directory has no engine-config sidecar.
    #[error(
        "no engine config: {} does not exist (the writer stores it with kuku_journal::meta_file::write_config; pass the config explicitly, e.g. kuku-replay --config FILE)",
        .path.display()
    )]
    ConfigFileMissing { path: PathBuf },

    #[error("{op} {}: {source}", .path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    /// The journal ends (or is torn) before the seq that was asked for.
    #[error(
        "the journal in {} ends at seq {seq_last}, before the requested seq {seq_requested}{}",
        .dir.display(),
        .torn_tail.as_ref().map(|t| format!(" (torn tail: {t})")).unwrap_or_default()
    )]
    JournalEndsBefore {
        dir: PathBuf,
        seq_requested: u64,
        seq_last: u64,
        torn_tail: Option<TornTail>,
    },

    /// The journal no longer starts at seq 1 and no snapshot can stand in for the pruned part.
    #[error(
        "the journal in {} starts at seq {seq_first} (older segments were pruned) and no usable snapshot at seq {} or later exists: nothing to replay from",
        .dir.display(),
        .seq_first.saturating_sub(1)
    )]
    NoReplayBase { dir: PathBuf, seq_first: u64 },

    /// Encoding the snapshot payload failed.
    #[error("snapshot at seq {seq} could not be encoded: {source}")]
    SnapshotEncode {
        seq: u64,
        #[source]
        source: CodecError,
    },

    /// The recovered engine and the reopened journal disagree on the last seq.
    #[error(
        "recovered engine ends at seq {engine_seq_last} but the journal at seq {journal_seq_last}"
    )]
    Diverged {
        engine_seq_last: u64,
        journal_seq_last: u64,
    },

    /// The journal has segments but not a single frame.
    #[error("the journal in {} holds no frames (empty journal)", .dir.display())]
    NoFrames { dir: PathBuf },

    /// A caller error (e.g. a snapshot at seq 0).
    #[error("invalid request: {reason}")]
    InvalidRequest { reason: String },

    /// A start-up check of the caller refused the journal before anything was changed.
    #[error("{reason}")]
    Refused { reason: String },
}

/// The journal meta a journal of `config`'s commands carries.
pub fn journal_meta(config: &EngineConfig, epoch: u64) -> JournalMeta {
    JournalMeta {
        engine_logic_version: crate::upgrade::engine_logic_version(),
        capacities_hash: config.capacities_hash(),
        epoch,
    }
}

/// A damaged spot after the durable watermark where replay stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TornTail {
    pub segment: PathBuf,
    pub offset: u64,
    /// The seq that should have been there: every frame before it was replayed.
    pub seq_expected: u64,
    pub seq_durable: u64,
    pub kind: CorruptionKind,
}

impl fmt::Display for TornTail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} at byte offset {}: {}; expected seq {}, after the durable watermark {}",
            self.segment.display(),
            self.offset,
            self.kind,
            self.seq_expected,
            self.seq_durable
        )
    }
}

/// Why a snapshot file was passed over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SnapshotRejection {
    /// The file failed its own verification (CRC, magic, sizes, name).
    Corrupt(SnapshotFault),
    EngineLogicVersion {
        found: u32,
        expected: u32,
    },
    CapacitiesHash {
        found: u64,
        expected: u64,
    },
    /// The journal does not hold the frame at the snapshot's seq (e.g. lost in a power loss
    /// after the snapshot was written from the page cache).
    AheadOfJournal,
    /// Older than the journal's first kept frame minus one: nothing connects it to the journal.
    OlderThanJournal {
        seq_first: u64,
    },
    Undecodable(CodecError),
    /// The decoded payload holds another engine config or seq than its header says.
    PayloadMismatch(&'static str),
    HashMismatch {
        stored: u64,
        computed: u64,
    },
    /// `Engine::from_snapshot` refused it (the engine's `RestoreError`, as text).
    Unrestorable(String),
}

impl fmt::Display for SnapshotRejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SnapshotRejection::Corrupt(fault) => write!(f, "corrupt: {fault}"),
            SnapshotRejection::EngineLogicVersion { found, expected } => {
                write!(f, "engine-logic version {found}, expected {expected}")
            }
            SnapshotRejection::CapacitiesHash { found, expected } => {
                write!(f, "capacities hash {found:#x}, expected {expected:#x}")
            }
            SnapshotRejection::AheadOfJournal => {
                f.write_str("the journal does not hold the frame at its seq (ahead of the journal)")
            }
            SnapshotRejection::OlderThanJournal { seq_first } => {
                write!(f, "older than the journal's first frame (seq {seq_first})")
            }
            SnapshotRejection::Undecodable(e) => write!(f, "payload does not decode: {e}"),
            SnapshotRejection::PayloadMismatch(what) => {
                write!(f, "payload disagrees with the header: {what}")
            }
            SnapshotRejection::HashMismatch { stored, computed } => write!(
                f,
                "state hash mismatch (stored {stored:#018x}, payload hashes to {computed:#018x})"
            ),
            SnapshotRejection::Unrestorable(e) => write!(f, "engine cannot restore it: {e}"),
        }
    }
}

/// A snapshot file recovery passed over, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RejectedSnapshot {
    pub path: PathBuf,
    /// The seq in its file name.
    pub seq: u64,
    pub reason: SnapshotRejection,
}

/// The snapshot a recovery started from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotBase {
    pub path: PathBuf,
    pub meta: SnapshotMeta,
}

/// What a recovery did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecoveryInfo {
    /// `None`: replayed from genesis (seq 1).
    pub base: Option<SnapshotBase>,
    /// Newer snapshots that were passed over, newest first.
    pub rejected_snapshots: Vec<RejectedSnapshot>,
    pub commands_replayed: u64,
    /// The engine's last applied seq (0 for an empty journal).
    pub seq_last: u64,
    /// The durable watermark recorded in the journal.
    pub seq_durable: u64,
    /// Where replay stopped early on a torn tail (a journal `Journal::open` has not cut yet).
    pub torn_tail: Option<TornTail>,
}

/// What [`recover_engine_with`] should do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecoverOptions {
    /// Stop after this seq (inclusive); `None`: the whole journal. Snapshots after it are not
    /// considered. With a `Some`, a journal that ends earlier is an error.
    pub seq_until: Option<u64>,
    /// `false`: ignore snapshots and replay from genesis.
    pub use_snapshots: bool,
}

impl Default for RecoverOptions {
    fn default() -> Self {
        RecoverOptions {
            seq_until: None,
            use_snapshots: true,
        }
    }
}

/// What [`replay_journal`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayOutcome {
    pub commands: u64,
    /// The engine's last seq afterwards.
    pub seq_last: u64,
    pub torn_tail: Option<TornTail>,
}

/// What [`write_snapshot_at`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotWritten {
    pub path: PathBuf,
    pub meta: SnapshotMeta,
    pub payload_bytes: u64,
    /// The snapshot the state was rebuilt from (`None`: genesis).
    pub base: Option<SnapshotBase>,
    pub commands_replayed: u64,
    /// `Engine::check_invariants` on the state written: an `Err` is a bug the operator must
    /// hear of (the snapshot is written all the same, as evidence).
    pub invariants: Result<(), String>,
}

/// Recovers the engine of the journal in `dir`: newest usable snapshot + every frame after it.
pub fn recover_engine(
    dir: impl AsRef<Path>,
    config: &EngineConfig,
) -> Result<(Engine, RecoveryInfo), StateError> {
    recover_engine_with(dir, config, RecoverOptions::default())
}

/// [`recover_engine`] with a stop seq and/or without snapshots.
pub fn recover_engine_with(
    dir: impl AsRef<Path>,
    config: &EngineConfig,
    options: RecoverOptions,
) -> Result<(Engine, RecoveryInfo), StateError> {
    let dir = dir.as_ref();
    let reader = JournalReader::open(dir)?;
    reader.check_meta(&journal_meta(config, 0))?;
    let seq_max = options.seq_until.unwrap_or(u64::MAX);
    let (mut engine, base, rejected_snapshots) =
        restore_base(dir, &reader, config, seq_max, options.use_snapshots)?;
    let outcome = replay_journal(&reader, &mut engine, seq_max, &mut NullSink)?;
    if let Some(seq_requested) = options.seq_until
        && outcome.seq_last < seq_requested
    {
        return Err(StateError::JournalEndsBefore {
            dir: dir.to_owned(),
            seq_requested,
            seq_last: outcome.seq_last,
            torn_tail: outcome.torn_tail,
        });
    }
    let info = RecoveryInfo {
        base,
        rejected_snapshots,
        commands_replayed: outcome.commands,
        seq_last: outcome.seq_last,
        seq_durable: reader.durable_watermark(),
        torn_tail: outcome.torn_tail,
    };
    debug_assert_eq!(engine.last_seq(), info.seq_last);
    Ok((engine, info))
}

/// The shadow snapshotter: rebuilds the state at `seq` and writes `snapshots/<seq>.snap`.
///
/// `seq` must be committed by the writer (normally a journaled `TakeSnapshot` the processor has
/// seen); nothing after it is read. Never call this on the processor thread.
pub fn write_snapshot_at(
    dir: impl AsRef<Path>,
    config: &EngineConfig,
    seq: u64,
) -> Result<SnapshotWritten, StateError> {
    let dir = dir.as_ref();
    if seq == 0 {
        return Err(StateError::InvalidRequest {
            reason: "a snapshot needs seq >= 1 (seq 0 is the empty engine)".to_owned(),
        });
    }
    let options = RecoverOptions {
        seq_until: Some(seq),
        use_snapshots: true,
    };
    let (engine, info) = recover_engine_with(dir, config, options)?;
    let invariants = engine.check_invariants();
    let snapshot = engine.snapshot();
    let meta = SnapshotMeta {
        seq,
        // By definition equal to engine.state_hash(), without a second snapshot().
        state_hash: stable_hash(&snapshot),
        engine_logic_version: crate::upgrade::engine_logic_version(),
        capacities_hash: config.capacities_hash(),
    };
    debug_assert_eq!(snapshot.last_seq, seq);
    let payload = codec::encode_snapshot(&snapshot)
        .map_err(|source| StateError::SnapshotEncode { seq, source })?;
    drop(snapshot);
    let path = SnapshotStore::create(dir)?.write(&meta, &payload)?;
    Ok(SnapshotWritten {
        path,
        meta,
        payload_bytes: payload.len() as u64,
        base: info.base,
        commands_replayed: info.commands_replayed,
        invariants,
    })
}

/// Decodes and applies every frame after `engine.last_seq()` up to `seq_until` (inclusive),
/// emitting events into `sink`. Stops at the end of the journal, or at a torn tail (reported);
/// damage at or before the durable watermark is [`JournalError::DurableDataCorrupt`].
pub fn replay_journal<S: EventSink>(
    reader: &JournalReader,
    engine: &mut Engine,
    seq_until: u64,
    sink: &mut S,
) -> Result<ReplayOutcome, StateError> {
    let seq_from = engine.last_seq() + 1;
    let mut outcome = ReplayOutcome {
        commands: 0,
        seq_last: engine.last_seq(),
        torn_tail: None,
    };
    if seq_from > seq_until {
        return Ok(outcome);
    }
    if seq_from < reader.seq_first() {
        return Err(StateError::NoReplayBase {
            dir: reader.dir().to_owned(),
            seq_first: reader.seq_first(),
        });
    }
    for item in reader.frames_from(seq_from)? {
        let frame = match item {
            Ok(frame) => frame,
            Err(error) => {
                outcome.torn_tail = Some(torn_tail_or_error(reader, error)?);
                break;
            }
        };
        let envelope = codec::decode_envelope(&frame).map_err(|source| StateError::Payload {
            seq: frame.seq,
            source,
        })?;
        engine.apply(&envelope, sink);
        outcome.commands += 1;
        if frame.seq >= seq_until {
            break;
        }
    }
    outcome.seq_last = engine.last_seq();
    Ok(outcome)
}

/// A reader error after the durable watermark is a torn tail; at or before it, a hard error.
pub(crate) fn torn_tail_or_error(
    reader: &JournalReader,
    error: JournalError,
) -> Result<TornTail, StateError> {
    let seq_durable = reader.durable_watermark();
    match error {
        JournalError::CorruptFrame {
            segment,
            offset,
            seq_expected,
            kind,
        } => {
            if seq_expected > seq_durable {
                Ok(TornTail {
                    segment,
                    offset,
                    seq_expected,
                    seq_durable,
                    kind,
                })
            } else {
                Err(JournalError::DurableDataCorrupt {
                    segment,
                    offset,
                    seq_expected,
                    seq_durable,
                    kind,
                }
                .into())
            }
        }
        other => Err(other.into()),
    }
}

/// The engine to replay from: the newest usable snapshot at or before `seq_max`, or genesis.
pub(crate) fn restore_base(
    dir: &Path,
    reader: &JournalReader,
    config: &EngineConfig,
    seq_max: u64,
    use_snapshots: bool,
) -> Result<(Engine, Option<SnapshotBase>, Vec<RejectedSnapshot>), StateError> {
    let mut rejected = Vec::new();
    let store = match SnapshotStore::open(dir) {
        Ok(store) if use_snapshots => Some(store),
        Ok(_) | Err(JournalError::MissingDirectory { .. }) => None,
        Err(other) => return Err(other.into()),
    };
    if let Some(store) = store {
        for file in store.list()?.into_iter().rev() {
            if file.seq > seq_max {
                continue;
            }
            match try_snapshot(&store, &file.path, reader, config)? {
                Ok((engine, meta)) => {
                    let base = SnapshotBase {
                        path: file.path,
                        meta,
                    };
                    return Ok((engine, Some(base), rejected));
                }
                Err(reason) => rejected.push(RejectedSnapshot {
                    path: file.path,
                    seq: file.seq,
                    reason,
                }),
            }
        }
    }
    if reader.seq_first() > 1 {
        return Err(StateError::NoReplayBase {
            dir: dir.to_owned(),
            seq_first: reader.seq_first(),
        });
    }
    Ok((Engine::new(*config), None, rejected))
}

/// Checks one snapshot file in the order of the module docs (cheap checks first). The outer
/// `Result` is for errors that stop recovery (I/O, durable damage); the inner one rejects.
fn try_snapshot(
    store: &SnapshotStore,
    path: &Path,
    reader: &JournalReader,
    config: &EngineConfig,
) -> Result<Result<(Engine, SnapshotMeta), SnapshotRejection>, StateError> {
    let snapshot = match store.read(path) {
        Ok(snapshot) => snapshot,
        Err(JournalError::SnapshotCorrupt { reason, .. }) => {
            return Ok(Err(SnapshotRejection::Corrupt(reason)));
        }
        Err(other) => return Err(other.into()),
    };
    let meta = snapshot.meta;
    let version = crate::upgrade::engine_logic_version();
    if meta.engine_logic_version != version {
        return Ok(Err(SnapshotRejection::EngineLogicVersion {
            found: meta.engine_logic_version,
            expected: version,
        }));
    }
    if meta.capacities_hash != config.capacities_hash() {
        return Ok(Err(SnapshotRejection::CapacitiesHash {
            found: meta.capacities_hash,
            expected: config.capacities_hash(),
        }));
    }
    if let Err(rejection) = check_journal_reaches(reader, meta.seq)? {
        return Ok(Err(rejection));
    }
    let decoded = match codec::decode_snapshot(&snapshot.payload) {
        Ok(decoded) => decoded,
        Err(e) => return Ok(Err(SnapshotRejection::Undecodable(e))),
    };
    drop(snapshot);
    if decoded.config != *config {
        return Ok(Err(SnapshotRejection::PayloadMismatch("engine config")));
    }
    if decoded.last_seq != meta.seq {
        return Ok(Err(SnapshotRejection::PayloadMismatch("last seq")));
    }
    let computed = stable_hash(&decoded);
    if computed != meta.state_hash {
        return Ok(Err(SnapshotRejection::HashMismatch {
            stored: meta.state_hash,
            computed,
        }));
    }
    Ok(Engine::from_snapshot(&decoded)
        .map(|engine| (engine, meta))
        .map_err(|e: RestoreError| SnapshotRejection::Unrestorable(e.to_string())))
}

/// Whether the journal connects to a snapshot at `seq`: it holds the frame at `seq`, or starts
/// right after it.
fn check_journal_reaches(
    reader: &JournalReader,
    seq: u64,
) -> Result<Result<(), SnapshotRejection>, StateError> {
    let seq_first = reader.seq_first();
    if seq + 1 == seq_first {
        return Ok(Ok(()));
    }
    if seq < seq_first {
        return Ok(Err(SnapshotRejection::OlderThanJournal { seq_first }));
    }
    match reader.frames_from(seq)?.next() {
        Some(Ok(frame)) if frame.seq == seq => Ok(Ok(())),
        Some(Ok(_)) | None => Ok(Err(SnapshotRejection::AheadOfJournal)),
        // Damage after the watermark: the journal will be cut before the snapshot's seq.
        Some(Err(error)) => torn_tail_or_error(reader, error)
            .map(|_torn_tail| Err(SnapshotRejection::AheadOfJournal)),
    }
}

/// The writer side at start: opens the journal in `dir` (creating it if it is new), which
/// quarantines and cuts a torn tail; stores the engine-config sidecar if it is missing;
/// recovers the engine; and checks that the engine ends exactly where the journal does. The
/// journal is ready for the next seq.
pub fn open_journal_and_engine(
    dir: impl AsRef<Path>,
    journal_config: JournalConfig,
    engine_config: &EngineConfig,
    epoch: u64,
) -> Result<(Journal, Engine, RecoveryReport, RecoveryInfo), StateError> {
    open_journal_and_engine_checked(dir, journal_config, engine_config, epoch, |_| Ok(()))
}

/// [`open_journal_and_engine`] with a check of the caller's between reading the journal and
/// changing anything: `check` gets what recovery found (and would cut) and may refuse with a
/// reason ([`StateError::Refused`]); then nothing was modified.
pub fn open_journal_and_engine_checked(
    dir: impl AsRef<Path>,
    journal_config: JournalConfig,
    engine_config: &EngineConfig,
    epoch: u64,
    check: impl FnOnce(&Findings) -> Result<(), String>,
) -> Result<(Journal, Engine, RecoveryReport, RecoveryInfo), StateError> {
    let dir = dir.as_ref();
    let meta = journal_meta(engine_config, epoch);
    let pending = Journal::prepare_open(dir, journal_config, meta)?;
    if !pending.findings().fresh {
        // The sidecar must agree before anything is cut.
        match meta_file::read_config(dir) {
            Ok(stored) if stored != *engine_config => {
                return Err(StateError::ConfigFile {
                    path: meta_file::config_path(dir),
                    reason: "holds another engine config than the one given".to_owned(),
                });
            }
            Ok(_) | Err(StateError::ConfigFileMissing { .. }) => {}
            Err(other) => return Err(other),
        }
    }
    check(pending.findings()).map_err(|reason| StateError::Refused { reason })?;
    let (journal, report) = pending.open()?;
    match meta_file::read_config(dir) {
        Ok(stored) if stored == *engine_config => {}
        Ok(_) => {
            return Err(StateError::ConfigFile {
                path: meta_file::config_path(dir),
                reason: "holds another engine config than the one given".to_owned(),
            });
        }
        Err(StateError::ConfigFileMissing { .. }) => {
            meta_file::write_config(dir, engine_config)?;
        }
        Err(other) => return Err(other),
    }
    let (engine, info) = recover_engine(dir, engine_config)?;
    if info.seq_last != journal.seq_last() {
        return Err(StateError::Diverged {
            engine_seq_last: info.seq_last,
            journal_seq_last: journal.seq_last(),
        });
    }
    Ok((journal, engine, report, info))
}
