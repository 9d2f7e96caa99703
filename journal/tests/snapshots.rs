//! Snapshot store: the newest valid snapshot wins, a corrupt newest one falls back to an older
//! one (and is reported), missing and empty stores are reported clearly.

use std::fs;

use kuku_journal::{JournalError, SnapshotFault, SnapshotMeta, SnapshotStore, snapshot_file_name};

fn meta(seq: u64) -> SnapshotMeta {
    SnapshotMeta {
        seq,
        state_hash: seq.wrapping_mul(0x9e37_79b9_7f4a_7c15),
        engine_logic_version: 7,
        capacities_hash: 11,
    }
}

fn state(seq: u64) -> Vec<u8> {
    (0..seq * 10).map(|i| (i % 251) as u8).collect()
}

fn store_with(seqs: &[u64]) -> (tempfile::TempDir, SnapshotStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = SnapshotStore::create(dir.path()).unwrap();
    for &seq in seqs {
        let path = store.write(&meta(seq), &state(seq)).unwrap();
        assert_eq!(
            path,
            dir.path().join("snapshots").join(snapshot_file_name(seq))
        );
    }
    (dir, store)
}

#[test]
fn the_newest_valid_snapshot_wins() {
    let (_dir, store) = store_with(&[100, 300, 200]);
    let latest = store.latest_valid().unwrap();
    let snapshot = latest.snapshot.unwrap();
    assert_eq!(snapshot.meta, meta(300));
    assert_eq!(snapshot.payload, state(300));
    assert!(latest.skipped.is_empty());
    assert_eq!(
        store
            .list()
            .unwrap()
            .iter()
            .map(|f| f.seq)
            .collect::<Vec<_>>(),
        [100, 200, 300]
    );
}

#[test]
fn a_corrupt_newest_snapshot_falls_back_to_an_older_one_and_is_reported() {
    let (_dir, store) = store_with(&[100, 200, 300]);
    let files = store.list().unwrap();
    // Newest: one flipped payload bit. Second newest: cut short.
    let mut newest = fs::read(&files[2].path).unwrap();
    newest[60] ^= 0x04;
    fs::write(&files[2].path, newest).unwrap();
    let second = fs::read(&files[1].path).unwrap();
    fs::write(&files[1].path, &second[..second.len() - 3]).unwrap();

    let latest = store.latest_valid().unwrap();
    assert_eq!(latest.snapshot.unwrap().meta, meta(100));
    assert_eq!(latest.skipped.len(), 2);
    assert_eq!(latest.skipped[0].path, files[2].path);
    assert!(matches!(
        latest.skipped[0].reason,
        SnapshotFault::CrcMismatch { .. }
    ));
    assert_eq!(latest.skipped[1].path, files[1].path);

    let err = store.read(&files[2].path).unwrap_err();
    assert!(
        matches!(&err, JournalError::SnapshotCorrupt { path, .. } if *path == files[2].path),
        "{err}"
    );
    assert!(err.to_string().contains(&snapshot_file_name(300)), "{err}");
}

#[test]
fn a_snapshot_under_the_wrong_name_is_rejected() {
    let (dir, store) = store_with(&[100]);
    let snapshots = dir.path().join("snapshots");
    fs::rename(
        snapshots.join(snapshot_file_name(100)),
        snapshots.join(snapshot_file_name(500)),
    )
    .unwrap();
    let latest = store.latest_valid().unwrap();
    assert!(latest.snapshot.is_none());
    assert_eq!(
        latest.skipped[0].reason,
        SnapshotFault::NameMismatch {
            name_seq: 500,
            header_seq: 100
        }
    );
}

#[test]
fn missing_and_empty_stores_are_reported_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let err = SnapshotStore::open(dir.path()).unwrap_err();
    assert!(
        matches!(&err, JournalError::MissingDirectory { path } if path.ends_with("snapshots")),
        "{err}"
    );
    assert!(err.to_string().contains("snapshots"), "{err}");
    let err = SnapshotStore::create(dir.path().join("no-journal-here")).unwrap_err();
    assert!(
        matches!(err, JournalError::MissingDirectory { .. }),
        "{err}"
    );

    let store = SnapshotStore::create(dir.path()).unwrap();
    let latest = store.latest_valid().unwrap();
    assert!(
        latest.snapshot.is_none() && latest.skipped.is_empty(),
        "empty: nothing to restore"
    );
    assert!(store.list().unwrap().is_empty());
    assert!(SnapshotStore::open(dir.path()).is_ok());
}

#[test]
fn writing_the_same_seq_again_replaces_the_snapshot() {
    let (_dir, store) = store_with(&[100]);
    let replacement = SnapshotMeta {
        state_hash: 1,
        ..meta(100)
    };
    store.write(&replacement, b"new state").unwrap();
    let snapshot = store.latest_valid().unwrap().snapshot.unwrap();
    assert_eq!(
        (snapshot.meta, snapshot.payload.as_slice()),
        (replacement, &b"new state"[..])
    );
    assert_eq!(store.list().unwrap().len(), 1);
}

#[test]
fn prune_keeps_the_newest_valid_snapshots_and_removes_older_ones() {
    let (dir, store) = store_with(&[100, 200, 300, 400]);
    let files = store.list().unwrap();
    let mut newest = fs::read(&files[3].path).unwrap();
    newest[10] ^= 1;
    fs::write(&files[3].path, newest).unwrap();
    let stale_temp = dir
        .path()
        .join("snapshots")
        .join(format!(".{}.tmp", snapshot_file_name(500)));
    fs::write(&stale_temp, b"half written").unwrap();
    assert_eq!(
        store.list().unwrap().len(),
        4,
        "temporary files are not listed"
    );

    let removed = store.prune(2).unwrap();
    assert!(removed.contains(&stale_temp));
    assert!(removed.contains(&files[0].path));
    assert_eq!(removed.len(), 2, "{removed:?}");
    let left: Vec<u64> = store.list().unwrap().iter().map(|f| f.seq).collect();
    assert_eq!(
        left,
        [200, 300, 400],
        "two valid ones kept, plus the newer corrupt one for inspection"
    );

    assert!(
        store.prune(10).unwrap().is_empty(),
        "fewer valid than asked: nothing removed"
    );
    assert!(matches!(
        store.prune(0),
        Err(JournalError::InvalidConfig { .. })
    ));
}
