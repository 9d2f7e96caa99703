//! Replication to hot standbys and failover (docs/architecture.md §6, ADR-009).
//!
//! Roles. A **primary** journals each command, ships the batch's frames to every connected
//! standby at the end of the batch (the journaller stage, [`ReplicatedLog`]) and, in `sync`
//! mode, waits for a standby's ack of the batch's last seq before the batch is released to the
//! processor: an isolated primary acknowledges nothing. A **standby** (`--standby-of ADDR`)
//! dials the primary's replication address, handshakes (engine-logic version, capacities hash,
//! epoch, last seq), truncates a tail the primary does not have, then feeds the received
//! commands into its own pipeline with the primary's seq and ts: its journal and engine are
//! byte-for-byte the primary's, its gateway's replay history too, and it acks each batch once
//! journaled. Its gateway refuses logins (`9014 NotPrimary`). `kuku promote` turns a standby
//! into a primary in a new epoch; a **fenced** node (an old primary that learned of a newer
//! epoch) serves nobody.
//!
//! Modules: `wire` (messages), `log` (the journaller-stage [`ReplicatedLog`]), `primary`
//! (listener, standby sessions, catch-up from the journal), `standby` (join, receiver),
//! `control` (`kuku promote` / `kuku replication status` client side).
//!
//! **Invariants**
//! - Epochs only grow; a node's epoch and the (epoch, first seq) history are persisted in
//!   `<journal>/epochs` (fsynced) before the node acts in a new epoch.
//! - Frames and acks carry the epoch; a message of another epoch than the session's is refused
//!   and the connection dropped.
//! - A standby applies frame `n + 1` only after frame `n`, each with a valid journal CRC.
//! - In `sync` mode (unless degraded) the processor sees seq `n` only after some standby
//!   journaled it.
//!
//! **Performance**: on the primary, per command one `memcpy` of the frame into the batch
//! buffer; per batch one mutex, one `write` per standby and, in `sync`, one condvar wait for
//! the ack (a network round trip plus the standby's journal append).
//!
//! **Known limitations**: batches are written to standbys from the journaller thread (no
//! queue per standby), so a standby whose socket buffer is full delays the primary, even in
//! `async` mode, for at most `heartbeat_timeout_ms` (the write timeout), after which it is
//! dropped; a per-standby sender thread with a bounded queue would remove that delay. The
//! standby dials the primary (no standby list on the primary);
//! there is no automatic promotion (by design: promotion is explicit); catch-up reads the
//! primary's journal, so a standby further behind than the primary's oldest segment cannot
//! join (not possible yet: segments are never pruned).

pub mod control;
mod log;
mod primary;
mod standby;
pub mod wire;

pub use log::ReplicatedLog;

use crate::pipeline::{Origin, PipelineStatus, Submitter};
use anyhow::Context;
use kuku_journal::JournalMeta;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// `replication.mode`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// No replication (a single node).
    #[default]
    None,
    /// Ship batches without waiting: a failover may lose the unacknowledged tail.
    Async,
    /// A batch is applied only after a standby acknowledged it.
    Sync,
}

/// `replication.on_standby_loss`: what `sync` does while no standby acknowledges.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum OnStandbyLoss {
    /// Wait for a standby for ever: nothing more is applied or acknowledged (no loss, no
    /// availability). Clients see their orders time out; they resend after the failover.
    #[default]
    Stall,
    /// After `degrade_after_ms` without an ack, continue unreplicated (logged as an error
    /// every batch window): availability over the guarantee. A failover during degradation
    /// loses what was acknowledged meanwhile, and an isolated old primary in this mode can
    /// acknowledge orders a promoted standby never sees (split brain): fencing relies on
    /// `peers` being reachable at start-up.
    Degrade,
}

/// The `[replication]` section of the node config.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ReplicationSettings {
    pub mode: Mode,
    /// Where this node accepts standbys (as primary) and operator requests (`kuku promote`,
    /// status) in every role. Required when replication is on.
    pub listen: Option<String>,
    /// Run as a hot standby of the primary whose replication address this is.
    pub standby_of: Option<String>,
    /// Other nodes' replication addresses, asked for their epoch when this node starts as a
    /// primary: one in a newer epoch fences this node (it serves nobody, and says how to
    /// rejoin).
    pub peers: Vec<String>,
    pub on_standby_loss: OnStandbyLoss,
    pub degrade_after_ms: u64,
    pub heartbeat_interval_ms: u64,
    /// A peer silent for this long is lost (the standby then logs that promotion is possible).
    pub heartbeat_timeout_ms: u64,
}

impl Default for ReplicationSettings {
    fn default() -> Self {
        ReplicationSettings {
            mode: Mode::None,
            listen: None,
            standby_of: None,
            peers: Vec::new(),
            on_standby_loss: OnStandbyLoss::Stall,
            degrade_after_ms: 2_000,
            heartbeat_interval_ms: 200,
            heartbeat_timeout_ms: 1_000,
        }
    }
}

impl ReplicationSettings {
    /// Whether this node takes part in replication at all.
    pub fn enabled(&self) -> bool {
        self.mode != Mode::None || self.standby_of.is_some()
    }

    pub fn validate(&self) -> Result<(), crate::config::ConfigError> {
        let invalid = |field, message: &str| {
            Err(crate::config::ConfigError::Invalid {
                field,
                message: message.to_owned(),
            })
        };
        if !self.enabled() {
            return Ok(());
        }
        if self.listen.is_none() {
            return invalid(
                "replication.listen",
                "replication needs a listen address (e.g. 127.0.0.1:7900) for standbys and `kuku promote`",
            );
        }
        for a in self
            .listen
            .iter()
            .chain(&self.standby_of)
            .chain(&self.peers)
        {
            if a.parse::<std::net::SocketAddr>().is_err() {
                return invalid("replication", &format!("{a:?} is not an IP:port address"));
            }
        }
        if self.heartbeat_interval_ms == 0
            || self.heartbeat_timeout_ms <= self.heartbeat_interval_ms
        {
            return invalid(
                "replication.heartbeat_timeout_ms",
                "must be larger than heartbeat_interval_ms (> 0)",
            );
        }
        if self.standby_of.is_some() && self.mode == Mode::None {
            return invalid(
                "replication.mode",
                "a standby needs the mode it will use once promoted: async or sync",
            );
        }
        Ok(())
    }

    fn heartbeat_interval(&self) -> Duration {
        Duration::from_millis(self.heartbeat_interval_ms)
    }

    fn heartbeat_timeout(&self) -> Duration {
        Duration::from_millis(self.heartbeat_timeout_ms)
    }
}

/// The node's role, as seen by the gateway and the replication threads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
#[repr(u8)]
pub enum Role {
    Standby = 0,
    Primary = 1,
    /// An old primary that learned of a newer epoch: serves nobody.
    Fenced = 2,
    /// Between `kuku promote` and the new epoch.
    Promoting = 3,
}

/// A standby connected to this primary and streaming live.
pub(crate) struct LiveStandby {
    pub id: u64,
    pub stream: TcpStream,
}

/// What the journaller shares with the connection threads.
#[derive(Default)]
pub(crate) struct Links {
    pub standbys: Vec<LiveStandby>,
    /// The last seq shipped live (every frame up to it is in the local journal).
    pub sent_seq: u64,
    /// The standby's connection to its primary (acks go up it).
    pub upstream: Option<TcpStream>,
}

/// The persisted epoch state (`<journal>/epochs`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EpochFile {
    pub epoch: u64,
    /// (epoch, first seq written in it), oldest first.
    pub history: Vec<(u64, u64)>,
}

pub const EPOCH_FILE_NAME: &str = kuku_journal::EPOCH_FILE_NAME;

impl EpochFile {
    pub fn path(journal_dir: &Path) -> PathBuf {
        journal_dir.join(EPOCH_FILE_NAME)
    }

    /// The stored state, or epoch 0 with an empty history.
    pub fn load(journal_dir: &Path) -> anyhow::Result<EpochFile> {
        let path = EpochFile::path(journal_dir);
        match std::fs::read_to_string(&path) {
            Ok(text) => serde_json::from_str(&text)
                .with_context(|| format!("the epoch file {} is damaged", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(EpochFile::default()),
            Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
        }
    }

    /// Writes atomically (temp file, fsync, rename, directory fsync).
    pub fn store(&self, journal_dir: &Path) -> anyhow::Result<()> {
        use std::io::Write;
        std::fs::create_dir_all(journal_dir)?;
        let path = EpochFile::path(journal_dir);
        let tmp = journal_dir.join("epochs.tmp");
        let mut f = std::fs::File::create(&tmp)
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        f.write_all(serde_json::to_string(self)?.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, &path)?;
        std::fs::File::open(journal_dir)?.sync_all()?;
        Ok(())
    }

    /// The seq before the first epoch newer than `epoch` (where a node last in `epoch` must cut
    /// its journal), or `None` if no newer epoch exists.
    pub fn cut_for(&self, epoch: u64) -> Option<u64> {
        self.history
            .iter()
            .find(|(e, _)| *e > epoch)
            .map(|(_, first)| first.saturating_sub(1))
    }
}

/// State hashes at snapshot seqs, local and the primary's, compared when both are known.
#[derive(Default)]
struct HashCheck {
    local: BTreeMap<u64, u64>,
    remote: BTreeMap<u64, u64>,
}

const HASHES_KEPT_MAX: usize = 64;

/// The replication state of a node, shared by the journaller, the connection threads, the
/// gateway (through `serving`) and operator requests.
pub struct Replication {
    pub(crate) settings: ReplicationSettings,
    pub(crate) journal_dir: PathBuf,
    pub(crate) data_dir: PathBuf,
    pub(crate) meta: JournalMeta,
    pub(crate) admin_token: [u8; 32],
    role: AtomicU8,
    pub(crate) epoch: AtomicU64,
    pub(crate) epochs: Mutex<EpochFile>,
    /// Gateway logins are accepted while true (the node acts as primary).
    pub(crate) serving: Arc<AtomicBool>,
    pub(crate) links: Mutex<Links>,
    acked: Mutex<u64>,
    acked_changed: Condvar,
    pub(crate) acked_seq: AtomicU64,
    pub(crate) degraded: AtomicBool,
    pub(crate) diverged: AtomicBool,
    /// Shutdown began: a sync wait with no standby gives up.
    pub(crate) stopping: AtomicBool,
    /// Shutdown ended: connection threads exit.
    pub(crate) stopped: AtomicBool,
    /// Standby: the last seq handed to the pipeline.
    pub(crate) received_seq: AtomicU64,
    pub(crate) receiver_stop: AtomicBool,
    pub(crate) receiver_running: AtomicBool,
    /// Standby: when the primary was found lost (ms since the Unix epoch; 0: connected).
    pub(crate) primary_lost_at_ms: AtomicU64,
    pub(crate) next_standby_id: AtomicU64,
    hashes: Mutex<HashCheck>,
    pub(crate) pipeline: OnceLock<Arc<PipelineStatus>>,
    /// For the promotion's `TakeSnapshot`; taken at shutdown so the pipeline can drain.
    submitter: Mutex<Option<Submitter>>,
}

/// What `kuku replication status` prints.
#[derive(Debug, Serialize, Deserialize, Clone, PartialEq, Eq)]
pub struct StatusReport {
    pub role: String,
    pub epoch: u64,
    pub journaled_seq: u64,
    pub applied_seq: u64,
    pub acked_seq: u64,
    pub standbys_live: usize,
    pub primary_connected: bool,
    pub primary_lost_at_ms: u64,
    pub degraded: bool,
    pub diverged: bool,
}

impl Replication {
    pub(crate) fn new(
        settings: ReplicationSettings,
        journal_dir: PathBuf,
        data_dir: PathBuf,
        meta: JournalMeta,
        admin_token: [u8; 32],
        epochs: EpochFile,
        serving: Arc<AtomicBool>,
    ) -> Arc<Replication> {
        let role = if settings.standby_of.is_some() {
            Role::Standby
        } else {
            Role::Primary
        };
        let diverged = data_dir.join(DIVERGED_FILE_NAME).exists();
        if diverged {
            tracing::error!(
                file = %data_dir.join(DIVERGED_FILE_NAME).display(),
                "This node's state once diverged from its primary's: it cannot be promoted. \
                 Rebuild it from the primary (new data directory) and remove the file."
            );
        }
        serving.store(role == Role::Primary, Ordering::Release);
        Arc::new(Replication {
            settings,
            journal_dir,
            data_dir,
            meta,
            admin_token,
            role: AtomicU8::new(role as u8),
            epoch: AtomicU64::new(epochs.epoch),
            epochs: Mutex::new(epochs),
            serving,
            links: Mutex::new(Links::default()),
            acked: Mutex::new(0),
            acked_changed: Condvar::new(),
            acked_seq: AtomicU64::new(0),
            degraded: AtomicBool::new(false),
            diverged: AtomicBool::new(diverged),
            stopping: AtomicBool::new(false),
            stopped: AtomicBool::new(false),
            received_seq: AtomicU64::new(0),
            receiver_stop: AtomicBool::new(false),
            receiver_running: AtomicBool::new(false),
            primary_lost_at_ms: AtomicU64::new(0),
            next_standby_id: AtomicU64::new(1),
            hashes: Mutex::new(HashCheck::default()),
            pipeline: OnceLock::new(),
            submitter: Mutex::new(None),
        })
    }

    pub fn role(&self) -> Role {
        match self.role.load(Ordering::Acquire) {
            0 => Role::Standby,
            1 => Role::Primary,
            2 => Role::Fenced,
            _ => Role::Promoting,
        }
    }

    pub(crate) fn set_role(&self, role: Role) {
        self.role.store(role as u8, Ordering::Release);
        self.serving.store(role == Role::Primary, Ordering::Release);
    }

    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    pub fn mode(&self) -> Mode {
        self.settings.mode
    }

    /// Fences this node: it learned that `epoch_seen` is newer than its own.
    pub(crate) fn fence(&self, epoch_seen: u64, by: &str) {
        if self.role() == Role::Fenced {
            return;
        }
        self.set_role(Role::Fenced);
        tracing::error!(
            epoch = self.epoch(),
            epoch_seen,
            by,
            "FENCED: another node is primary in a newer epoch. This node accepts no orders. \
             Stop it and restart it as a standby (`kuku serve --standby-of <primary's \
             replication address>`): it truncates its divergent tail and catches up."
        );
    }

    /// The highest seq some standby acknowledged.
    pub fn acked_seq(&self) -> u64 {
        self.acked_seq.load(Ordering::Acquire)
    }

    pub(crate) fn record_ack(&self, seq: u64) {
        let mut acked = self.acked.lock().expect("acked lock");
        if seq > *acked {
            *acked = seq;
            self.acked_seq.store(seq, Ordering::Release);
            self.acked_changed.notify_all();
        }
    }

    /// Sync mode: waits until a standby acknowledged `seq` (see [`OnStandbyLoss`]).
    pub(crate) fn wait_acked(&self, seq: u64) -> Result<(), String> {
        let started = Instant::now();
        let mut acked = self.acked.lock().expect("acked lock");
        let mut warned = false;
        while *acked < seq {
            if self.degraded.load(Ordering::Relaxed) {
                return Ok(());
            }
            let live = self.live_standbys();
            if live == 0 && self.stopping.load(Ordering::Relaxed) {
                return Err(format!(
                    "shutting down with seq {seq} not acknowledged by any standby: it is \
                     journaled locally but was not applied or acknowledged"
                ));
            }
            let waited = started.elapsed();
            if self.settings.on_standby_loss == OnStandbyLoss::Degrade
                && waited >= Duration::from_millis(self.settings.degrade_after_ms)
            {
                self.degraded.store(true, Ordering::Release);
                tracing::error!(
                    seq,
                    waited_ms = waited.as_millis() as u64,
                    "REPLICATION DEGRADED: no standby acknowledged within degrade_after_ms; \
                     the node continues UNREPLICATED (on_standby_loss = degrade). Orders \
                     acknowledged from now on can be lost in a failover until a standby \
                     catches up."
                );
                return Ok(());
            }
            if !warned && waited >= self.settings.heartbeat_timeout() {
                warned = true;
                tracing::error!(
                    seq,
                    live,
                    "REPLICATION STALLED: no standby acknowledges (on_standby_loss = stall); \
                     nothing is applied or acknowledged until one does. Start or reconnect \
                     a standby, or promote one elsewhere."
                );
            }
            acked = self
                .acked_changed
                .wait_timeout(acked, Duration::from_millis(20))
                .expect("acked lock")
                .0;
        }
        Ok(())
    }

    pub(crate) fn live_standbys(&self) -> usize {
        self.links.lock().map_or(0, |l| l.standbys.len())
    }

    /// The seq up to which the query database may persist: what a standby has, or everything
    /// when this node is not a replicating primary or runs without a standby (async without
    /// one, or degraded).
    pub fn replicated_watermark(&self) -> u64 {
        if self.role() != Role::Primary
            || self.degraded.load(Ordering::Relaxed)
            || self.live_standbys() == 0
        {
            return u64::MAX;
        }
        self.acked_seq()
    }

    /// Records this node's state hash at a snapshot seq; a primary ships it to its standbys.
    pub fn on_local_snapshot(&self, seq: u64, hash: u64) {
        if self.role() == Role::Primary
            && let Ok(mut links) = self.links.lock()
        {
            let msg = wire::Msg::StateHash { seq, hash };
            links
                .standbys
                .retain_mut(|s| wire::write_msg(&mut s.stream, &msg).is_ok());
        }
        self.check_hash(seq, Some(hash), None);
    }

    /// Compares local and remote hashes at `seq` once both are known.
    pub(crate) fn check_hash(&self, seq: u64, local: Option<u64>, remote: Option<u64>) {
        let mut guard = self.hashes.lock().expect("hash lock");
        let h = &mut *guard;
        if let Some(v) = local {
            h.local.insert(seq, v);
        }
        if let Some(v) = remote {
            h.remote.insert(seq, v);
        }
        for map in [&mut h.local, &mut h.remote] {
            while map.len() > HASHES_KEPT_MAX {
                map.pop_first();
            }
        }
        let (Some(&mine), Some(&theirs)) = (h.local.get(&seq), h.remote.get(&seq)) else {
            return;
        };
        if mine == theirs {
            tracing::info!(
                seq,
                hash = format!("{mine:#018x}"),
                "State hash matches the primary's."
            );
            return;
        }
        self.diverged.store(true, Ordering::Release);
        let _ = std::fs::write(
            self.data_dir.join(DIVERGED_FILE_NAME),
            format!("seq {seq}: local {mine:#018x}, primary {theirs:#018x}\n"),
        );
        tracing::error!(
            seq,
            local = format!("{mine:#018x}"),
            primary = format!("{theirs:#018x}"),
            "DIVERGENCE ALARM: this standby's state hash differs from the primary's at the \
             same seq. It is now unpromotable. Rebuild it from the primary."
        );
    }

    pub fn status(&self) -> StatusReport {
        let (journaled, applied) = self.pipeline.get().map_or((0, 0), |s| {
            (
                s.journaled_seq.load(Ordering::Acquire),
                s.applied_seq.load(Ordering::Acquire),
            )
        });
        let links = self.links.lock().expect("links lock");
        StatusReport {
            role: format!("{:?}", self.role()).to_lowercase(),
            epoch: self.epoch(),
            journaled_seq: journaled,
            applied_seq: applied,
            acked_seq: self.acked_seq(),
            standbys_live: links.standbys.len(),
            primary_connected: links.upstream.is_some(),
            primary_lost_at_ms: self.primary_lost_at_ms.load(Ordering::Relaxed),
            degraded: self.degraded.load(Ordering::Relaxed),
            diverged: self.diverged.load(Ordering::Relaxed),
        }
    }

    /// Called once the pipeline runs.
    pub(crate) fn attach(&self, status: Arc<PipelineStatus>, submitter: Submitter) {
        let _ = self.pipeline.set(status);
        *self.submitter.lock().expect("submitter lock") = Some(submitter);
    }

    pub(crate) fn submit(&self, command: kuku_engine::Command) -> bool {
        let mut submitter = self.submitter.lock().expect("submitter lock");
        submitter
            .as_mut()
            .is_some_and(|s| s.try_submit(Origin::INTERNAL, command).is_ok())
    }

    /// Shutdown, first step: the receiver stops, sync waits without a standby give up, and
    /// the submitter is released so the pipeline can drain.
    pub fn begin_stop(&self) {
        self.stopping.store(true, Ordering::Release);
        self.receiver_stop.store(true, Ordering::Release);
        self.submitter.lock().expect("submitter lock").take();
        if let Ok(mut links) = self.links.lock()
            && let Some(u) = links.upstream.take()
        {
            let _ = u.shutdown(std::net::Shutdown::Both);
        }
    }

    /// Shutdown, last step: the connection threads exit.
    pub fn finish_stop(&self) {
        self.stopped.store(true, Ordering::Release);
        if let Ok(mut links) = self.links.lock() {
            for s in links.standbys.drain(..) {
                let _ = s.stream.shutdown(std::net::Shutdown::Both);
            }
            if let Some(u) = links.upstream.take() {
                let _ = u.shutdown(std::net::Shutdown::Both);
            }
        }
    }
}

/// Marks a node whose state once diverged from its primary's (unpromotable).
pub const DIVERGED_FILE_NAME: &str = "DIVERGED";

pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

pub(crate) use primary::{fence_peers, probe_peers, spawn_listener};
pub(crate) use standby::{join, spawn_receiver};

#[cfg(test)]
mod tests {
    use super::*;

    fn standby_in(dir: &Path) -> Arc<Replication> {
        let settings = ReplicationSettings {
            mode: Mode::Sync,
            listen: Some("127.0.0.1:0".into()),
            standby_of: Some("127.0.0.1:1".into()),
            ..ReplicationSettings::default()
        };
        Replication::new(
            settings,
            dir.join("journal"),
            dir.to_owned(),
            kuku_journal::JournalMeta {
                engine_logic_version: 1,
                capacities_hash: 2,
                epoch: 0,
            },
            [7; 32],
            EpochFile::default(),
            Arc::new(AtomicBool::new(false)),
        )
    }

    #[test]
    fn a_state_hash_mismatch_raises_the_alarm_and_blocks_promotion() {
        let dir = tempfile::tempdir().unwrap();
        let repl = standby_in(dir.path());
        // Equal hashes at the same seq, whichever side arrives first: no alarm.
        repl.check_hash(10, None, Some(0xaa));
        repl.check_hash(10, Some(0xaa), None);
        repl.check_hash(20, Some(0xbb), None);
        assert!(!repl.diverged.load(Ordering::Relaxed));
        // A different hash at the same seq: alarm, persisted, unpromotable.
        repl.check_hash(20, None, Some(0xbc));
        assert!(repl.diverged.load(Ordering::Relaxed));
        assert!(dir.path().join(DIVERGED_FILE_NAME).exists());
        let (ok, why) = control::promote_here(&repl, &[7; 32]);
        assert!(!ok && why.contains("unpromotable"), "{why}");
        assert_eq!(repl.role(), Role::Standby);
        // The flag survives a restart (the file).
        assert!(standby_in(dir.path()).diverged.load(Ordering::Relaxed));
        // And it is a metric to alert on.
        let status = Arc::new(crate::pipeline::PipelineStatus::default());
        let text = crate::metrics::render(&crate::metrics::MetricsSources {
            pipeline: status,
            alarms: Arc::default(),
            database: None,
            gateway: None,
            replication: Some(Arc::clone(&repl)),
            market_data: None,
            kis: None,
            ws: None,
        });
        assert!(text.contains("\nkuku_replication_diverged 1\n"), "{text}");
        assert!(text.contains("\nkuku_replication_role 0\n"), "{text}");
    }

    #[test]
    fn promotion_needs_the_admin_token() {
        let dir = tempfile::tempdir().unwrap();
        let repl = standby_in(dir.path());
        let (ok, why) = control::promote_here(&repl, &[8; 32]);
        assert!(!ok && why.contains("unauthorized"), "{why}");
        assert_eq!(repl.role(), Role::Standby);
    }

    #[test]
    fn bad_replication_settings_are_refused_with_the_field_named() {
        let base = ReplicationSettings {
            mode: Mode::Sync,
            listen: Some("127.0.0.1:7900".into()),
            ..ReplicationSettings::default()
        };
        assert!(base.validate().is_ok());
        for (bad, field) in [
            (
                ReplicationSettings {
                    listen: None,
                    ..base.clone()
                },
                "replication.listen",
            ),
            (
                ReplicationSettings {
                    standby_of: Some("nowhere".into()),
                    ..base.clone()
                },
                "replication",
            ),
            (
                ReplicationSettings {
                    heartbeat_timeout_ms: 10,
                    ..base.clone()
                },
                "replication.heartbeat_timeout_ms",
            ),
            (
                ReplicationSettings {
                    mode: Mode::None,
                    standby_of: Some("127.0.0.1:1".into()),
                    ..base.clone()
                },
                "replication.mode",
            ),
        ] {
            match bad.validate() {
                Err(crate::config::ConfigError::Invalid { field: f, .. }) => assert_eq!(f, field),
                other => panic!("{bad:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn cut_for_finds_the_seq_before_the_next_epoch() {
        let e = EpochFile {
            epoch: 3,
            history: vec![(0, 1), (2, 101), (3, 250)],
        };
        assert_eq!(e.cut_for(0), Some(100));
        assert_eq!(e.cut_for(1), Some(100));
        assert_eq!(e.cut_for(2), Some(249));
        assert_eq!(e.cut_for(3), None);
    }
}
