//! Moving a data directory to a build with another engine-logic version (`kuku upgrade`).
//!
//! A journal is replayed only by the engine logic that wrote it, so a new version cannot
//! continue an old journal. What carries over is the state: the old build writes a final
//! snapshot at the last seq when it stops cleanly (the node does so at every clean stop), and
//! the new build starts a new journal right after it, from that snapshot.
//!
//! [`plan_upgrade`] checks everything and changes nothing (the node must be stopped: it takes
//! the journal's lock): one engine-logic version in every segment, and not this build's; every
//! frame intact up to the durable watermark (a clean stop leaves the watermark at the last
//! seq); the snapshot at the last seq present, readable by this build's snapshot codec (a
//! format it cannot read is refused with the file's path), its decoded state hashing to its
//! stored state hash, holding the sidecar's engine config, restorable, and keeping the
//! engine's invariants. [`upgrade`] then builds the new journal in `<journal>.upgrade` next to
//! the old one: a first segment starting at `last seq + 1` under this version (watermark at
//! the last seq), the snapshot rewritten under this version with the same state hash, the
//! engine config, the replication epoch history; syncs it; renames the old journal directory
//! to `journal-v<old version>-seq-<first>-<last>` (kept, never deleted) and the new one into
//! place. Run again after a crash, it finishes an interrupted swap.
//!
//! **Invariants**: the old journal is never modified; the new journal's state at its first
//! seq minus one is exactly the old journal's at its last (same state hash).
//!
//! **Performance**: one CRC pass over the old journal, one decode and hash of the snapshot,
//! one new segment (zero-filled) and one snapshot write; the node is stopped meanwhile.
//!
//! **Known limitations**: the frames before the upgrade stay in the archive, readable only by
//! the old build: the new build cannot replay from genesis (`kuku reconcile` cannot rebuild
//! the rows written before, and the database writer cannot re-derive them, so the database
//! must have caught up before the upgrade: `kuku upgrade` checks it). A snapshot's payload is
//! the serde encoding of `EngineSnapshot`, so an upgrade that changes those structs needs a
//! codec that reads the old layout; until one exists such an upgrade is refused here.

use std::fs;
use std::path::{Path, PathBuf};

use kuku_engine::hash::stable_hash;
use kuku_engine::{Engine, EngineConfig, EngineSnapshot};

use crate::Durability;
use crate::codec;
use crate::journal::{Journal, JournalConfig, JournalMeta, lock_dir};
use crate::meta_file;
use crate::reader::JournalReader;
use crate::recovery::EPOCH_FILE_NAME;
use crate::segment::sync_dir;
use crate::snapshot::{SnapshotMeta, SnapshotStore, snapshot_file_name};
use crate::state::StateError;

/// In test builds (feature `failpoints`) this environment variable makes the process act as a
/// build of another engine-logic version, so one binary can play an old and a new build.
pub const ENGINE_LOGIC_VERSION_OVERRIDE_ENV: &str = "KUKU_ENGINE_LOGIC_VERSION_OVERRIDE";

/// The engine-logic version this build writes into segments, snapshots and the sidecar, and
/// accepts in them: `kuku_engine::ENGINE_LOGIC_VERSION` (or, in test builds, the override).
pub fn engine_logic_version() -> u32 {
    #[cfg(feature = "failpoints")]
    {
        use std::sync::OnceLock;
        static VERSION: OnceLock<u32> = OnceLock::new();
        *VERSION.get_or_init(|| {
            std::env::var(ENGINE_LOGIC_VERSION_OVERRIDE_ENV)
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(kuku_engine::ENGINE_LOGIC_VERSION)
        })
    }
    #[cfg(not(feature = "failpoints"))]
    {
        kuku_engine::ENGINE_LOGIC_VERSION
    }
}

/// The suffix of the directory a new journal is built in, next to the old one.
pub const STAGING_SUFFIX: &str = "upgrade";

/// The directory a journal is built in by `kuku upgrade` (`<journal>.upgrade`).
pub fn staging_dir(journal_dir: &Path) -> PathBuf {
    journal_dir.with_extension(STAGING_SUFFIX)
}

/// A checked upgrade, ready to be carried out (holds the journal's lock).
#[derive(Debug)]
pub struct UpgradePlan {
    journal_dir: PathBuf,
    lock: Option<fs::File>,
    pub from_version: u32,
    pub to_version: u32,
    /// The old journal's first and last seq.
    pub seq_first: u64,
    pub seq_last: u64,
    pub epoch: u64,
    pub state_hash: u64,
    /// The final snapshot the new journal starts from.
    pub snapshot: PathBuf,
    config: EngineConfig,
    state: Option<EngineSnapshot>,
    journal_config: JournalConfig,
    /// An interrupted swap to finish (the new journal is complete in the staging directory).
    resume: bool,
}

/// What [`upgrade`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upgraded {
    pub journal_dir: PathBuf,
    /// Where the old journal is kept (`None` when an interrupted swap was finished).
    pub archive: Option<PathBuf>,
    pub from_version: u32,
    pub to_version: u32,
    /// The new journal's first frame will be `seq + 1`.
    pub seq: u64,
    pub state_hash: u64,
}

fn refused(reason: String) -> StateError {
    StateError::Refused { reason }
}

/// Checks that the journal in `journal_dir` can move to this build's engine-logic version
/// (see the module docs) and returns the plan. Changes nothing.
pub fn plan_upgrade(journal_dir: &Path) -> Result<UpgradePlan, StateError> {
    let to_version = engine_logic_version();
    let staging = staging_dir(journal_dir);
    if !journal_dir.exists() && staging.is_dir() {
        return resume_plan(journal_dir, to_version);
    }
    let lock = lock_dir(journal_dir)?;
    let reader = JournalReader::open(journal_dir)?;
    let meta = reader.meta().ok_or_else(|| {
        refused(format!(
            "{}: no segment has a valid header",
            journal_dir.display()
        ))
    })?;
    let from_version = meta.engine_logic_version;
    if from_version == to_version {
        return Err(refused(format!(
            "the journal in {} is already at engine-logic version {to_version}: nothing to upgrade",
            journal_dir.display()
        )));
    }
    // One version in every segment: a mix means an earlier upgrade went wrong.
    reader.check_meta(&JournalMeta {
        engine_logic_version: from_version,
        capacities_hash: meta.capacities_hash,
        epoch: u64::MAX,
    })?;
    let seq_first = reader.seq_first();
    let mut seq_last = seq_first - 1;
    for frame in reader.frames_from(seq_first)? {
        let frame = frame.map_err(|e| {
            refused(format!(
                "{e}: the journal does not end cleanly. Start the old build once (its recovery \
                 settles the journal), stop it cleanly, then upgrade"
            ))
        })?;
        seq_last = frame.seq;
    }
    if seq_last < seq_first {
        return Err(refused(format!(
            "the journal in {} holds no frames: nothing to carry over (start the new build on an \
             empty data directory instead)",
            journal_dir.display()
        )));
    }
    if reader.durable_watermark() < seq_last {
        return Err(refused(format!(
            "the journal's durable watermark is {} but it ends at seq {seq_last}: the old build \
             did not stop cleanly. Start it, stop it cleanly (SIGTERM), then upgrade",
            reader.durable_watermark()
        )));
    }
    let snapshot = journal_dir
        .join(SnapshotStore::DIR_NAME)
        .join(snapshot_file_name(seq_last));
    if !snapshot.is_file() {
        return Err(refused(format!(
            "no final snapshot at the journal's last seq: {} does not exist. The old build \
             writes it when it stops cleanly: start it, stop it cleanly (SIGTERM), then upgrade",
            snapshot.display()
        )));
    }
    let file = SnapshotStore::open(journal_dir)?.read(&snapshot)?;
    let state = codec::decode_snapshot(&file.payload).map_err(|e| {
        refused(format!(
            "the snapshot {} (engine-logic version {}) cannot be read by this build (engine-logic \
             version {to_version}): {e}. This upgrade changes the snapshot format; it needs a \
             build that reads the old format",
            snapshot.display(),
            file.meta.engine_logic_version
        ))
    })?;
    let hash = stable_hash(&state);
    if hash != file.meta.state_hash {
        return Err(refused(format!(
            "the snapshot {} decodes to a state whose hash {hash:#018x} is not its stored state \
             hash {:#018x}: this build does not read it as the old build wrote it",
            snapshot.display(),
            file.meta.state_hash
        )));
    }
    let (config, _) = meta_file::read_config_any_version(journal_dir)?;
    if state.config != config || state.last_seq != seq_last {
        return Err(refused(format!(
            "the snapshot {} holds another engine config or seq than {}",
            snapshot.display(),
            meta_file::config_path(journal_dir).display()
        )));
    }
    let engine = Engine::from_snapshot(&state).map_err(|e| {
        refused(format!(
            "this build cannot restore the snapshot {}: {e}",
            snapshot.display()
        ))
    })?;
    engine.check_invariants().map_err(|e| {
        refused(format!(
            "the state in {} breaks this build's invariants: {e}",
            snapshot.display()
        ))
    })?;
    let first = reader
        .segments()
        .next()
        .map(|(path, _)| path.to_owned())
        .ok_or_else(|| refused("no segment".into()))?;
    let journal_config = segment_config(&first)?;
    Ok(UpgradePlan {
        journal_dir: journal_dir.to_owned(),
        lock: Some(lock),
        from_version,
        to_version,
        seq_first,
        seq_last,
        epoch: meta.epoch,
        state_hash: hash,
        snapshot,
        config,
        state: Some(state),
        journal_config,
        resume: false,
    })
}

/// The sizes the old journal's segments were written with (the new journal keeps them).
fn segment_config(segment: &Path) -> Result<JournalConfig, StateError> {
    let pages = crate::segment::read_header_pages(segment)?;
    let name_seq = segment
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(crate::segment::parse_segment_file_name)
        .unwrap_or(0);
    let header = crate::segment::SegmentHeader::decode(&pages.bytes[..], name_seq)
        .map_err(|reason| refused(format!("{}: {reason}", segment.display())))?;
    Ok(JournalConfig {
        segment_bytes: header.segment_bytes,
        frame_payload_max: header.frame_payload_max,
        durability: Durability::EveryBatch,
    })
}

/// A plan that only finishes an interrupted swap (the new journal is complete).
fn resume_plan(journal_dir: &Path, to_version: u32) -> Result<UpgradePlan, StateError> {
    let staging = staging_dir(journal_dir);
    let reader = JournalReader::open(&staging)?;
    let seq_first = reader.seq_first();
    Ok(UpgradePlan {
        journal_dir: journal_dir.to_owned(),
        lock: None,
        from_version: 0,
        to_version,
        seq_first,
        seq_last: seq_first - 1,
        epoch: reader.meta().map_or(0, |m| m.epoch),
        state_hash: 0,
        snapshot: staging
            .join(SnapshotStore::DIR_NAME)
            .join(snapshot_file_name(seq_first - 1)),
        config: meta_file::read_config(&staging)?,
        state: None,
        journal_config: JournalConfig::default(),
        resume: true,
    })
}

/// Carries out a plan (see the module docs).
pub fn upgrade(mut plan: UpgradePlan) -> Result<Upgraded, StateError> {
    let journal_dir = plan.journal_dir.clone();
    let staging = staging_dir(&journal_dir);
    let parent = journal_dir
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map_or_else(|| PathBuf::from("."), Path::to_owned);
    let io = |op: &'static str, path: &Path| {
        let path = path.to_owned();
        move |source| StateError::Io { op, path, source }
    };
    if plan.resume {
        fs::rename(&staging, &journal_dir).map_err(io("rename", &staging))?;
        sync_dir(&parent)?;
        return Ok(Upgraded {
            journal_dir,
            archive: None,
            from_version: plan.from_version,
            to_version: plan.to_version,
            seq: plan.seq_last,
            state_hash: plan.state_hash,
        });
    }
    let state = plan
        .state
        .take()
        .ok_or_else(|| refused("the plan holds no state".into()))?;
    if staging.exists() {
        // A build that crashed before the swap: start it again.
        fs::remove_dir_all(&staging).map_err(io("remove", &staging))?;
    }
    let meta = JournalMeta {
        engine_logic_version: plan.to_version,
        capacities_hash: plan.config.capacities_hash(),
        epoch: plan.epoch,
    };
    let journal = Journal::create_from(&staging, plan.journal_config, meta, plan.seq_last + 1)?;
    journal.close()?;
    let payload = codec::encode_snapshot(&state).map_err(|source| StateError::SnapshotEncode {
        seq: plan.seq_last,
        source,
    })?;
    let snapshot_meta = SnapshotMeta {
        seq: plan.seq_last,
        state_hash: stable_hash(&state),
        engine_logic_version: plan.to_version,
        capacities_hash: plan.config.capacities_hash(),
    };
    debug_assert_eq!(snapshot_meta.state_hash, plan.state_hash);
    SnapshotStore::create(&staging)?.write(&snapshot_meta, &payload)?;
    meta_file::write_config(&staging, &plan.config)?;
    let epochs = journal_dir.join(EPOCH_FILE_NAME);
    if epochs.is_file() {
        let to = staging.join(EPOCH_FILE_NAME);
        fs::copy(&epochs, &to).map_err(io("copy", &epochs))?;
        fs::File::open(&to)
            .and_then(|f| f.sync_all())
            .map_err(io("fsync", &to))?;
    }
    sync_dir(&staging)?;
    sync_dir(&parent)?;
    let archive = parent.join(format!(
        "journal-v{}-seq-{}-{}",
        plan.from_version, plan.seq_first, plan.seq_last
    ));
    drop(plan.lock.take());
    fs::rename(&journal_dir, &archive).map_err(io("rename", &journal_dir))?;
    fs::rename(&staging, &journal_dir).map_err(io("rename", &staging))?;
    sync_dir(&parent)?;
    Ok(Upgraded {
        journal_dir,
        archive: Some(archive),
        from_version: plan.from_version,
        to_version: plan.to_version,
        seq: plan.seq_last,
        state_hash: plan.state_hash,
    })
}
