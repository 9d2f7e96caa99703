//! Alarms: faults that must reach the operator although the node keeps serving.
//!
//! - A **ledger alarm**: the engine admitted a posting or hold that its ledger entry points
//!   refused (`Event::LedgerAlarm`). Nothing changed and the command was rejected with
//!   `LedgerCheckFailed`; it is a bug in the engine, not a poison command, so every replica
//!   replays it the same way and keeps running.
//! - An **invariant failure**: `Engine::check_invariants` failed on a state the snapshotter
//!   rebuilt (off the processor thread) for a snapshot.
//!
//! Each is logged at ERROR and counted; `/metrics` exports the counts
//! (`kuku_ledger_alarms_total`, `kuku_invariant_failures_total`), and an alert on either
//! above zero is the operator's cue (docs/operations.md).

use kuku_engine::CommandKind;
use kuku_engine::ledger::LedgerFault;
use std::sync::atomic::{AtomicU64, Ordering};

/// Alarm counters of a running node.
#[derive(Debug, Default)]
pub struct Alarms {
    ledger: AtomicU64,
    invariants: AtomicU64,
}

impl Alarms {
    /// Reports an `Event::LedgerAlarm` seen at `seq`.
    pub fn ledger(&self, seq: u64, command: CommandKind, fault: LedgerFault) {
        self.ledger.fetch_add(1, Ordering::Relaxed);
        tracing::error!(
            seq,
            command = ?command,
            fault = ?fault,
            "LEDGER ALARM: the ledger refused a posting the engine had admitted; the command \
             was rejected and nothing changed. This is a bug: keep the journal and report it \
             (kuku-replay dump --seq {seq} shows the command)."
        );
    }

    /// Reports a failed `check_invariants` on the state at `seq`.
    pub fn invariants(&self, seq: u64, violation: &str) {
        self.invariants.fetch_add(1, Ordering::Relaxed);
        tracing::error!(
            seq,
            violation,
            "INVARIANT ALARM: the state rebuilt for the snapshot at this seq breaks an \
             invariant. This is a bug: keep the journal and the snapshot and report it."
        );
    }

    pub fn ledger_total(&self) -> u64 {
        self.ledger.load(Ordering::Relaxed)
    }

    pub fn invariants_total(&self) -> u64 {
        self.invariants.load(Ordering::Relaxed)
    }
}
