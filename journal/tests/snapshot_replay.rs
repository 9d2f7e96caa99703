//! Snapshot + replay equals an uninterrupted run, over random command streams (valid and
//! invalid): the stream goes through the real journal and codec, a journaled TakeSnapshot at a
//! random point is turned into a snapshot file by the shadow snapshotter (`write_snapshot_at`:
//! codec + SnapshotStore), the engine restored from that file has the uninterrupted run's state
//! hash at that seq, and then emits exactly the same events for every later command and ends in
//! the same state.

mod streams;

use kuku_engine::*;
use kuku_journal::state::{RecoverOptions, recover_engine_with};
use kuku_journal::{Durability, JournalReader, decode_envelope, write_snapshot_at};
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;

/// `commands` after the setup, with a TakeSnapshot inserted before `commands[cut]`.
fn check(commands: Vec<Command>, cut: usize) -> Result<(), TestCaseError> {
    let setup = streams::setup();
    let stream: Vec<Command> = setup
        .iter()
        .cloned()
        .chain(commands[..cut].iter().cloned())
        .chain([Command::TakeSnapshot])
        .chain(commands[cut..].iter().cloned())
        .collect();
    let snapshot_seq = (setup.len() + cut + 1) as u64;
    let envelopes = streams::envelopes(stream, 1);
    let reference = streams::reference_run(&envelopes, &[snapshot_seq]);

    let dir = tempfile::tempdir().unwrap();
    streams::write_journal(dir.path(), &envelopes, Durability::None, 64)
        .close()
        .unwrap();
    let config = streams::config();
    let written = write_snapshot_at(dir.path(), &config, snapshot_seq).unwrap();
    prop_assert_eq!(written.meta.seq, snapshot_seq);
    prop_assert_eq!(written.meta.state_hash, reference.hash_at[&snapshot_seq]);

    // Restore from the file alone (the journal is only read after it).
    let options = RecoverOptions {
        seq_until: Some(snapshot_seq),
        use_snapshots: true,
    };
    let (mut engine, info) = recover_engine_with(dir.path(), &config, options).unwrap();
    prop_assert_eq!(info.base.map(|b| b.meta.seq), Some(snapshot_seq));
    prop_assert_eq!(info.commands_replayed, 0);
    prop_assert_eq!(engine.state_hash(), reference.hash_at[&snapshot_seq]);

    let reader = JournalReader::open(dir.path()).unwrap();
    let mut applied = 0;
    for frame in reader.frames_from(snapshot_seq + 1).unwrap() {
        let envelope = decode_envelope(&frame.unwrap()).unwrap();
        let mut events = Vec::new();
        engine.apply(&envelope, &mut events);
        let index = envelope.seq as usize - 1;
        prop_assert_eq!(
            &events,
            &reference.events[index],
            "events of seq {} ({:?}) after restoring at seq {}",
            envelope.seq,
            envelope.command,
            snapshot_seq
        );
        applied += 1;
    }
    prop_assert_eq!(applied, envelopes.len() as u64 - snapshot_seq);
    prop_assert_eq!(engine.state_hash(), reference.final_hash);
    engine.check_invariants().map_err(TestCaseError::fail)?;

    // Full recovery picks the same snapshot and lands on the same state.
    let (recovered, info) = kuku_journal::recover_engine(dir.path(), &config).unwrap();
    prop_assert_eq!(info.base.map(|b| b.meta.seq), Some(snapshot_seq));
    prop_assert_eq!(recovered.state_hash(), reference.final_hash);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 48,
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(
            "tests/proptest-regressions/snapshot_replay.txt",
        ))),
        ..ProptestConfig::default()
    })]

    #[test]
    fn snapshot_and_replay_match_an_uninterrupted_run(
        commands in prop::collection::vec(streams::command(), 1..300),
        snapshot_at in any::<prop::sample::Index>(),
    ) {
        let cut = snapshot_at.index(commands.len() + 1);
        check(commands, cut)?;
    }
}

/// The property needs streams that reach fills, resting orders, holds, open withdrawals and
/// reversals before the snapshot, or it proves little: a long deterministic stream, snapshot in
/// the middle, checked once with its mix asserted.
#[test]
fn long_stream_with_live_state_at_the_snapshot() {
    let commands = streams::deterministic_commands(3_000);
    let setup_len = streams::setup().len();
    let envelopes = streams::envelopes(streams::setup().into_iter().chain(commands.clone()), 1);
    let mut engine = Engine::new(streams::config());
    let mut trades = 0;
    let mut cut = None;
    for (i, e) in envelopes.iter().enumerate() {
        let mut events = Vec::new();
        engine.apply(e, &mut events);
        trades += events
            .iter()
            .filter(|e| matches!(e, Event::Trade { .. }))
            .count();
        // The first point past the middle where the state is rich.
        let s = engine.snapshot();
        if i >= 1_000 && trades > 20 && s.orders.len() > 5 && !s.open_txs.is_empty() {
            cut = Some(i + 1 - setup_len);
            break;
        }
    }
    let cut = cut.expect("the stream reaches live orders, fills and open withdrawals");
    check(commands, cut).unwrap();
}
