//! Simulated power loss with `every-batch`: a sync hook records, at every completed sync, the
//! bytes that reached the disk. After the "crash" the disk image is exactly that (everything
//! written after the last sync of each byte is lost), or that plus a random subset of the
//! unsynced 512-byte sectors (the kernel may have written some back on its own). Recovery must
//! then hold every seq that `commit()` reported durable, never refuse the journal, and let
//! appending continue.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use common::{META, SEGMENT_BYTES_SMALL, append_range, check_all_frames, config};
use kuku_journal::{Durability, Journal, LOCK_FILE_NAME, SyncEvent};
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;

const SECTOR_BYTES: usize = 512;

/// The disk as of the last completed syncs: file name -> contents.
#[derive(Default)]
struct DiskModel {
    files: BTreeMap<String, Vec<u8>>,
    /// The last frame seq inside any synced range (a roll syncs a sealed segment before the
    /// batch's commit, so this can run ahead of what commit reported).
    seq_synced: u64,
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .and_then(|n| n.to_str())
        .expect("utf-8 file name")
        .to_owned()
}

impl DiskModel {
    /// `[start, end)` of `path` reached the disk with its current contents.
    fn capture_range(&mut self, path: &Path, start: usize, end: usize) {
        let current = fs::read(path).expect("read synced file");
        let image = self.files.entry(file_name(path)).or_default();
        image.resize(current.len(), 0);
        let end = end.min(current.len());
        image[start..end].copy_from_slice(&current[start..end]);
    }

    /// The directory's entries are durable: files present now exist after a crash, files gone
    /// now stay gone.
    fn capture_dir(&mut self, dir: &Path) {
        let present: Vec<(String, u64)> = journal_files(dir)
            .into_iter()
            .map(|p| (file_name(&p), fs::metadata(&p).expect("stat").len()))
            .collect();
        self.files
            .retain(|name, _| present.iter().any(|(n, _)| n == name));
        for (name, len) in present {
            self.files
                .entry(name)
                .or_insert_with(|| vec![0; len as usize]);
        }
    }
}

fn journal_files(dir: &Path) -> Vec<PathBuf> {
    fs::read_dir(dir)
        .expect("read dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.is_file() && file_name(p) != LOCK_FILE_NAME)
        .collect()
}

/// A small deterministic generator for the sector-survival choices.
struct XorShift(u64);

impl XorShift {
    fn coin(&mut self) -> bool {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 & 1 == 1
    }
}

/// Writes the crashed disk into `image`: the synced model, plus (with `survivors`) random
/// unsynced sectors of the live files.
fn build_image(model: &DiskModel, live: &Path, image: &Path, survivors: Option<u64>) {
    let mut files = model.files.clone();
    if let Some(seed) = survivors {
        let mut rng = XorShift(seed | 1);
        for path in journal_files(live) {
            let name = file_name(&path);
            if !files.contains_key(&name) && !rng.coin() {
                continue; // a file whose directory entry was never synced may be gone
            }
            let current = fs::read(&path).expect("read live file");
            let durable = files.entry(name).or_insert_with(|| vec![0; current.len()]);
            durable.resize(current.len(), 0);
            for (sector, bytes) in durable.chunks_mut(SECTOR_BYTES).enumerate() {
                if rng.coin() {
                    let at = sector * SECTOR_BYTES;
                    bytes.copy_from_slice(&current[at..at + bytes.len()]);
                }
            }
        }
    }
    for (name, bytes) in files {
        fs::write(image.join(name), bytes).expect("write image file");
    }
}

fn run(batches: &[u64], trailing: u64, survivors: Option<u64>) -> Result<(), TestCaseError> {
    let live = tempfile::tempdir().unwrap();
    let cfg = config(SEGMENT_BYTES_SMALL, Durability::EveryBatch);
    let mut journal = Journal::create(live.path(), cfg, META).unwrap();
    // `create` with every-batch returns only after syncing everything it wrote.
    let model = Arc::new(Mutex::new(DiskModel::default()));
    for path in journal_files(live.path()) {
        let len = fs::metadata(&path).unwrap().len() as usize;
        model.lock().unwrap().capture_range(&path, 0, len);
    }
    let hook_model = Arc::clone(&model);
    let dir = live.path().to_owned();
    journal.set_sync_hook(Box::new(move |event: &SyncEvent<'_>| {
        let mut model = hook_model.lock().unwrap();
        match *event {
            SyncEvent::SegmentSynced {
                segment,
                offset_start,
                offset_end,
                seq_last,
                ..
            } => {
                model.capture_range(segment, offset_start as usize, offset_end as usize);
                model.seq_synced = model.seq_synced.max(seq_last);
            }
            SyncEvent::WatermarkFileSynced { path, .. } => model.capture_range(path, 0, usize::MAX),
            SyncEvent::DirectorySynced { .. } => model.capture_dir(&dir),
            _ => {}
        }
    }));

    let mut seq_last = 0;
    let mut durable_reported = 0;
    for &batch in batches {
        append_range(&mut journal, seq_last + 1..=seq_last + batch);
        seq_last += batch;
        let durable = journal.commit().unwrap();
        prop_assert_eq!(durable, seq_last, "every-batch: the whole batch is durable");
        durable_reported = durable;
    }
    append_range(&mut journal, seq_last + 1..=seq_last + trailing);
    drop(journal); // power off: only what the model holds (and maybe some sectors) survives

    let image = tempfile::tempdir().unwrap();
    build_image(&model.lock().unwrap(), live.path(), image.path(), survivors);
    let (mut journal, report) = Journal::open(image.path(), cfg, META)
        .unwrap_or_else(|e| panic!("recovery after a power loss must not refuse: {e}"));
    prop_assert!(
        report.seq_last >= durable_reported,
        "lost a durable seq: {} < {}",
        report,
        durable_reported
    );
    prop_assert!(
        report.seq_durable <= durable_reported,
        "the watermark never leads: {}",
        report
    );
    prop_assert!(report.seq_last <= seq_last + trailing);
    if survivors.is_none() {
        let seq_synced = model.lock().unwrap().seq_synced;
        prop_assert!(seq_synced >= durable_reported);
        prop_assert_eq!(
            report.seq_last,
            seq_synced,
            "without write-back, exactly the synced frames"
        );
    }
    let seq_next = report.seq_last + 1;
    append_range(&mut journal, seq_next..=seq_next + 4);
    journal.close().unwrap();
    prop_assert_eq!(check_all_frames(image.path()), seq_next + 4);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 48,
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(
            "tests/proptest-regressions/power_loss.txt",
        ))),
        ..ProptestConfig::default()
    })]

    #[test]
    fn power_loss_keeps_every_seq_commit_reported_durable(
        batches in prop::collection::vec(1..40u64, 0..12),
        trailing in 0..40u64,
        survivors in prop::option::of(any::<u64>()),
    ) {
        run(&batches, trailing, survivors)?;
    }
}

#[test]
fn power_loss_in_the_middle_of_a_segment_roll_keeps_the_durable_frames() {
    // 12 KiB segments hold about 30 frames: batches of 25 roll inside a batch.
    for trailing in [0, 1, 10, 30, 60] {
        run(&[25, 25, 25], trailing, None).unwrap();
        run(
            &[25, 25, 25],
            trailing,
            Some(0x9e37_79b9_7f4a_7c15 ^ trailing),
        )
        .unwrap();
    }
}
