//! Engine recovery end to end through the real journal, codec and snapshot store: snapshots
//! written by the shadow snapshotter, recovery from the newest usable one, fallback past corrupt
//! or foreign snapshots to older ones and to genesis (always the same state), refusal of a
//! journal written under another config, torn tails, and the writer-side start-up.

mod streams;

use std::fs;
use std::path::Path;

use kuku_engine::*;
use kuku_journal::state::{SnapshotRejection, open_journal_and_engine};
use kuku_journal::{
    Durability, JournalError, JournalReader, SnapshotMeta, SnapshotStore, StateError,
    recover_engine, write_snapshot_at,
};

fn journal_with_snapshots(dir: &Path, snaps: &[u64]) -> Vec<Envelope> {
    streams::journal_with_snapshots(dir, 2_000, snaps)
}

fn snapshot_path(dir: &Path, seq: u64) -> std::path::PathBuf {
    dir.join(SnapshotStore::DIR_NAME)
        .join(kuku_journal::snapshot_file_name(seq))
}

fn flip_byte(path: &Path, at_from_end: usize) {
    let mut bytes = fs::read(path).unwrap();
    let at = bytes.len() - at_from_end;
    bytes[at] ^= 0x40;
    fs::write(path, bytes).unwrap();
}

#[test]
fn recovery_uses_the_newest_snapshot_and_falls_back_past_corrupt_ones() {
    let dir = tempfile::tempdir().unwrap();
    let (s1, s2) = (700, 1_500);
    let envelopes = journal_with_snapshots(dir.path(), &[s1, s2]);
    let reference = streams::reference_run(&envelopes, &[s1, s2]);
    let config = streams::config();

    let (engine, info) = recover_engine(dir.path(), &config).unwrap();
    assert_eq!(info.base.as_ref().map(|b| b.meta.seq), Some(s2));
    assert_eq!(
        info.base.as_ref().unwrap().meta.state_hash,
        reference.hash_at[&s2]
    );
    assert_eq!(info.commands_replayed, envelopes.len() as u64 - s2);
    assert_eq!(info.seq_last, envelopes.len() as u64);
    assert_eq!(info.seq_durable, envelopes.len() as u64);
    assert!(info.rejected_snapshots.is_empty() && info.torn_tail.is_none());
    assert_eq!(engine.state_hash(), reference.final_hash);

    // A corrupt newest snapshot (a flipped payload byte): the older one, same state.
    flip_byte(&snapshot_path(dir.path(), s2), 100);
    let (engine, info) = recover_engine(dir.path(), &config).unwrap();
    assert_eq!(info.base.as_ref().map(|b| b.meta.seq), Some(s1));
    assert_eq!(info.rejected_snapshots.len(), 1);
    assert!(matches!(
        info.rejected_snapshots[0].reason,
        SnapshotRejection::Corrupt(_)
    ));
    assert_eq!(engine.state_hash(), reference.final_hash);

    // Both corrupt: genesis, same state.
    flip_byte(&snapshot_path(dir.path(), s1), 7);
    let (engine, info) = recover_engine(dir.path(), &config).unwrap();
    assert!(info.base.is_none());
    assert_eq!(info.rejected_snapshots.len(), 2);
    assert_eq!(info.commands_replayed, envelopes.len() as u64);
    assert_eq!(engine.state_hash(), reference.final_hash);
    engine.check_invariants().unwrap();
}

#[test]
fn snapshots_that_do_not_belong_are_passed_over() {
    let dir = tempfile::tempdir().unwrap();
    let s1 = 900;
    let envelopes = journal_with_snapshots(dir.path(), &[s1]);
    let reference = streams::reference_run(&envelopes, &[s1]);
    let config = streams::config();
    let store = SnapshotStore::open(dir.path()).unwrap();
    let good = store.read(snapshot_path(dir.path(), s1)).unwrap();
    let last = envelopes.len() as u64;

    // CRC-valid files that must not be used: another capacities hash; a seq the journal does
    // not hold (written from frames a power loss then took); a stored hash that does not match
    // the payload; a payload of another seq; a payload that does not decode.
    let real = write_snapshot_at(dir.path(), &config, 1_200).unwrap();
    assert_eq!(
        real.invariants,
        Ok(()),
        "the snapshotter checks the state it writes"
    );
    assert_eq!(real.base.map(|b| b.meta.seq), Some(s1));
    let real = store.read(&real.path).unwrap();
    let wrong_hash = SnapshotMeta {
        state_hash: real.meta.state_hash ^ 1,
        ..real.meta
    };
    store.write(&wrong_hash, &real.payload).unwrap();
    let foreign = SnapshotMeta {
        seq: 1_000,
        capacities_hash: good.meta.capacities_hash ^ 1,
        ..good.meta
    };
    store.write(&foreign, &good.payload).unwrap();
    let ahead = SnapshotMeta {
        seq: last + 5,
        ..good.meta
    };
    store.write(&ahead, &good.payload).unwrap();
    let wrong_seq = SnapshotMeta {
        seq: 1_100,
        ..good.meta
    };
    store.write(&wrong_seq, &good.payload).unwrap();
    let garbage = SnapshotMeta {
        seq: 1_300,
        ..good.meta
    };
    store.write(&garbage, &[1, 0xff, 0xff, 0xff]).unwrap();

    let (engine, info) = recover_engine(dir.path(), &config).unwrap();
    assert_eq!(info.base.map(|b| b.meta.seq), Some(s1));
    let reasons: Vec<(u64, &SnapshotRejection)> = info
        .rejected_snapshots
        .iter()
        .map(|r| (r.seq, &r.reason))
        .collect();
    assert_eq!(reasons.len(), 5, "{reasons:?}");
    assert!(matches!(reasons[0], (s, SnapshotRejection::AheadOfJournal) if s == last + 5));
    assert!(matches!(
        reasons[1],
        (1_300, SnapshotRejection::Undecodable(_))
    ));
    assert!(matches!(
        reasons[2],
        (1_200, SnapshotRejection::HashMismatch { .. })
    ));
    assert!(matches!(
        reasons[3],
        (1_100, SnapshotRejection::PayloadMismatch("last seq"))
    ));
    assert!(matches!(
        reasons[4],
        (1_000, SnapshotRejection::CapacitiesHash { .. })
    ));
    assert_eq!(engine.state_hash(), reference.final_hash);
}

#[test]
fn a_journal_of_another_config_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    journal_with_snapshots(dir.path(), &[]);
    let other = EngineConfig {
        orders_max: streams::config().orders_max + 1,
        ..streams::config()
    };
    let error = recover_engine(dir.path(), &other).err().expect("refused");
    assert!(
        matches!(
            error,
            StateError::Journal(JournalError::MetaMismatch { .. })
        ),
        "{error}"
    );
    assert!(error.to_string().contains("capacities hash"), "{error}");
    let error = write_snapshot_at(dir.path(), &other, 10).unwrap_err();
    assert!(matches!(
        error,
        StateError::Journal(JournalError::MetaMismatch { .. })
    ));
}

#[test]
fn replay_stops_at_a_torn_tail_and_the_writer_cuts_it() {
    let dir = tempfile::tempdir().unwrap();
    let envelopes = journal_with_snapshots(dir.path(), &[500]);
    let committed = envelopes.len() as u64;
    // Ten more frames, appended but never committed: after the durable watermark.
    let extra = streams::envelopes(streams::deterministic_commands(10), committed + 1);
    let (mut journal, _, _, _) = open_journal_and_engine(
        dir.path(),
        streams::journal_config(Durability::EveryBatch),
        &streams::config(),
        1,
    )
    .unwrap();
    for e in &extra {
        kuku_journal::append_command(&mut journal, e).unwrap();
    }
    drop(journal);
    // Damage the 5th uncommitted frame's payload.
    let torn_seq = committed + 5;
    let segment = JournalReader::open(dir.path())
        .unwrap()
        .segments()
        .last()
        .map(|(p, _)| p.to_owned())
        .unwrap();
    let offset = frame_offset(dir.path(), torn_seq);
    let mut bytes = fs::read(&segment).unwrap();
    bytes[offset + kuku_journal::FRAME_HEADER_BYTES] ^= 0xff;
    fs::write(&segment, bytes).unwrap();

    let all: Vec<Envelope> = envelopes.iter().chain(&extra).cloned().collect();
    let reference = streams::reference_run(&all, &[torn_seq - 1]);
    let (engine, info) = recover_engine(dir.path(), &streams::config()).unwrap();
    let torn = info.torn_tail.expect("a torn tail is reported");
    assert_eq!((torn.seq_expected, torn.offset), (torn_seq, offset as u64));
    assert_eq!(info.seq_last, torn_seq - 1);
    assert_eq!(engine.state_hash(), reference.hash_at[&(torn_seq - 1)]);

    // The writer's start-up cuts the tail and agrees with the engine; appends continue.
    let (mut journal, engine, report, info) = open_journal_and_engine(
        dir.path(),
        streams::journal_config(Durability::EveryBatch),
        &streams::config(),
        1,
    )
    .unwrap();
    assert!(report.truncation.is_some());
    assert!(info.torn_tail.is_none());
    assert_eq!(journal.seq_next(), torn_seq);
    assert_eq!(engine.state_hash(), reference.hash_at[&(torn_seq - 1)]);
    kuku_journal::append_command(&mut journal, &extra[4]).unwrap();
    journal.close().unwrap();
    let (engine, _) = recover_engine(dir.path(), &streams::config()).unwrap();
    assert_eq!(engine.last_seq(), torn_seq);
}

#[test]
fn damage_before_the_durable_watermark_is_a_hard_error() {
    let dir = tempfile::tempdir().unwrap();
    journal_with_snapshots(dir.path(), &[]);
    let segment = JournalReader::open(dir.path())
        .unwrap()
        .segments()
        .next()
        .map(|(p, _)| p.to_owned())
        .unwrap();
    let offset = frame_offset(dir.path(), 100);
    let mut bytes = fs::read(&segment).unwrap();
    bytes[offset + kuku_journal::FRAME_HEADER_BYTES] ^= 1;
    fs::write(&segment, bytes).unwrap();
    let error = recover_engine(dir.path(), &streams::config())
        .err()
        .expect("refused");
    match &error {
        StateError::Journal(JournalError::DurableDataCorrupt {
            segment: s,
            offset: o,
            seq_expected,
            ..
        }) => {
            assert_eq!((s, *o, *seq_expected), (&segment, offset as u64, 100));
        }
        other => panic!("expected DurableDataCorrupt, got {other}"),
    }
    assert!(error.to_string().contains("byte offset"), "{error}");
}

#[test]
fn the_shadow_snapshotter_refuses_a_seq_the_journal_does_not_hold() {
    let dir = tempfile::tempdir().unwrap();
    let envelopes = journal_with_snapshots(dir.path(), &[]);
    let last = envelopes.len() as u64;
    let error = write_snapshot_at(dir.path(), &streams::config(), last + 1).unwrap_err();
    assert!(
        matches!(error, StateError::JournalEndsBefore { seq_requested, seq_last, .. }
            if seq_requested == last + 1 && seq_last == last),
        "{error}"
    );
    assert!(matches!(
        write_snapshot_at(dir.path(), &streams::config(), 0),
        Err(StateError::InvalidRequest { .. })
    ));
    // At the very last seq it works, and recovery then replays nothing.
    write_snapshot_at(dir.path(), &streams::config(), last).unwrap();
    let (_, info) = recover_engine(dir.path(), &streams::config()).unwrap();
    assert_eq!(
        (info.base.map(|b| b.meta.seq), info.commands_replayed),
        (Some(last), 0)
    );
}

/// Byte offset of frame `seq` in a journal whose frames all sit in its first segment.
fn frame_offset(dir: &Path, seq: u64) -> usize {
    let reader = JournalReader::open(dir).unwrap();
    let mut offset = kuku_journal::SEGMENT_DATA_START;
    for frame in reader.frames_from(1).unwrap() {
        let frame = frame.unwrap();
        if frame.seq == seq {
            return offset;
        }
        offset += kuku_journal::frame_bytes(frame.payload.len());
    }
    panic!("seq {seq} not found");
}
