//! [`ReplicatedLog`]: the journaller stage of a replicating node (a [`CommandLog`]).
//!
//! `append` writes the frame to the local journal and, as a primary, copies the stored frame
//! bytes into the batch buffer. `commit` commits locally, then: as a primary, ships the batch to
//! every live standby and, in `sync` mode, waits for an ack of the batch's last seq (the
//! pipeline releases the batch to the processor only when `commit` returns); as a standby, acks
//! the committed seq to the primary. A raised epoch (promotion) is picked up at the next append:
//! the journal continues in a new segment carrying it.
//!
//! Errors: a local journal failure is [`LogError::Failed`] (the node fail-stops, ADR-012); a
//! fenced node's commit, and a `sync` wait that shutdown ends without a standby's ack, are
//! [`LogError::Refused`] (the pipeline halts; the node stays up to be inspected and stopped).
//!
//! **Invariants**: frames are shipped in seq order, each batch after its local append; a seq is
//! acked by a standby only after its local commit.
//!
//! **Performance**: no allocation per command (the batch buffer keeps its capacity; it is
//! shipped early when it passes [`BATCH_BYTES_MAX`]).

use super::{Replication, Role, wire};
use crate::node::JournalLog;
use crate::pipeline::{CommandLog, LogError};
use kuku_engine::Command;
use kuku_journal::FRAME_ALIGN_BYTES;
use std::sync::Arc;
use std::sync::atomic::Ordering;

/// Batch bytes shipped before the batch ends (bounds a message and the standby's buffer).
pub const BATCH_BYTES_MAX: usize = 1 << 20;

pub struct ReplicatedLog {
    local: JournalLog,
    repl: Arc<Replication>,
    batch: Vec<u8>,
    batch_last_seq: u64,
    epoch: u64,
}

impl ReplicatedLog {
    pub fn new(local: JournalLog, repl: Arc<Replication>) -> ReplicatedLog {
        let epoch = local.journal().map_or(0, |j| j.meta().epoch);
        ReplicatedLog {
            local,
            repl,
            batch: Vec::with_capacity(BATCH_BYTES_MAX + (64 << 10)),
            batch_last_seq: 0,
            epoch,
        }
    }

    /// Ships the buffered frames to every live standby (dropping any that cannot take them).
    fn ship(&mut self) {
        if self.batch.is_empty() {
            return;
        }
        let mut links = self.repl.links.lock().expect("links lock");
        let epoch = self.epoch;
        let batch = &self.batch;
        links.standbys.retain_mut(|s| {
            match wire::write_frames(&mut s.stream, epoch, batch) {
                Ok(()) => true,
                Err(e) => {
                    tracing::error!(standby = s.id, error = %e, "A standby was dropped: it could not take a batch.");
                    let _ = s.stream.shutdown(std::net::Shutdown::Both);
                    false
                }
            }
        });
        links.sent_seq = self.batch_last_seq;
        drop(links);
        self.batch.clear();
    }

    fn ack_upstream(&self, seq: u64) {
        let mut links = self.repl.links.lock().expect("links lock");
        if let Some(up) = links.upstream.as_mut() {
            let msg = wire::Msg::Ack {
                epoch: self.epoch,
                seq,
            };
            if let Err(e) = wire::write_msg(up, &msg) {
                tracing::warn!(error = %e, seq, "The ack could not be sent to the primary.");
            }
        }
    }
}

impl CommandLog for ReplicatedLog {
    #[inline]
    fn append(&mut self, seq: u64, ts: u64, command: &Command) -> Result<(), LogError> {
        let epoch = self.repl.epoch.load(Ordering::Acquire);
        if epoch > self.epoch {
            self.local
                .journal_mut()
                .ok_or_else(|| LogError::Failed("closed".into()))?
                .raise_epoch(epoch)
                .map_err(|e| LogError::Failed(e.to_string()))?;
            tracing::info!(
                epoch,
                seq,
                "The journal continues in a new segment of the new epoch."
            );
            self.epoch = epoch;
        }
        self.local.append(seq, ts, command)?;
        if self.repl.role() == Role::Primary {
            let frame = self
                .local
                .journal()
                .ok_or_else(|| LogError::Failed("closed".into()))?
                .last_frame();
            self.batch.extend_from_slice(frame);
            let padded = frame.len().next_multiple_of(FRAME_ALIGN_BYTES);
            self.batch
                .resize(self.batch.len() + (padded - frame.len()), 0);
            self.batch_last_seq = seq;
            if self.batch.len() >= BATCH_BYTES_MAX {
                self.ship();
            }
        }
        Ok(())
    }

    /// Always: a commit ships frames to the standbys (and in `sync` mode waits for an ack),
    /// or acks upstream; that is I/O, so the pipeline runs it on its own stage (ADR-006).
    fn commit_blocks(&self) -> bool {
        true
    }

    fn commit(&mut self) -> Result<(), LogError> {
        self.local.commit()?;
        let seq = self.local.journal().map_or(0, |j| j.seq_last());
        match self.repl.role() {
            Role::Primary => {
                self.ship();
                if self.repl.mode() == super::Mode::Sync {
                    self.repl.wait_acked(seq).map_err(LogError::Refused)?;
                }
            }
            Role::Standby | Role::Promoting => self.ack_upstream(seq),
            Role::Fenced => {
                return Err(LogError::Refused(
                    "this node is fenced (a newer epoch exists): it applies nothing more".into(),
                ));
            }
        }
        Ok(())
    }
}
