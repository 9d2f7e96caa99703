//! Start-up never builds on a journal it cannot vouch for, and never destroys what it cuts:
//! a directory whose segments are gone but whose watermark (or engine config, snapshots, ...)
//! says a journal lived there is refused, untouched; `verify` fails on whatever start-up
//! refuses (a missing last segment, a journal cut at a frame boundary before its watermark);
//! a torn tail is moved into a quarantine directory before it is cut; with `none` durability
//! the watermark syncer moves the watermark while the writer runs, so damage below it is a
//! hard error, as with `every-batch`.

mod streams;

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use kuku_engine::Envelope;
use kuku_journal::state::open_journal_and_engine;
use kuku_journal::{
    CorruptionKind, Durability, FRAME_ALIGN_BYTES, FRAME_HEADER_BYTES, Journal, JournalConfig,
    JournalError, JournalReader, QUARANTINE_DIR_NAME, SEGMENT_DATA_START, StateError,
    WATERMARK_FILE_NAME, journal_meta, tool, write_config,
};

/// 16 KiB segments (8 KiB of frames): a few hundred commands span several of them.
fn small_config(durability: Durability) -> JournalConfig {
    JournalConfig {
        segment_bytes: 16 * 1024,
        frame_payload_max: 4096,
        durability,
    }
}

fn commands(count: usize) -> Vec<Envelope> {
    let mut stream = streams::setup();
    stream.extend(streams::deterministic_commands(count));
    streams::envelopes(stream, 1)
}

fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut paths: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    paths.sort();
    paths
}

/// A closed `every-batch` journal of ~600 commands over several segments (watermark at its end).
fn closed_journal(dir: &Path) -> Vec<Envelope> {
    let envelopes = commands(600);
    let meta = journal_meta(&streams::config(), 1);
    let mut journal = Journal::create(dir, small_config(Durability::EveryBatch), meta).unwrap();
    write_config(dir, &streams::config()).unwrap();
    streams::append_all(&mut journal, &envelopes, 50);
    journal.close().unwrap();
    assert!(segments(dir).len() >= 3, "several segments");
    envelopes
}

/// Byte offsets (in their segment) of every frame, by seq.
fn frame_offsets(dir: &Path) -> Vec<(u64, PathBuf, usize)> {
    let mut out = Vec::new();
    for path in segments(dir) {
        let bytes = fs::read(&path).unwrap();
        let mut offset = SEGMENT_DATA_START;
        while offset + FRAME_HEADER_BYTES <= bytes.len() {
            let len = u32::from_le_bytes(bytes[offset..offset + 4].try_into().unwrap()) as usize;
            if len == 0 {
                break;
            }
            let seq = u64::from_le_bytes(bytes[offset + 8..offset + 16].try_into().unwrap());
            out.push((seq, path.clone(), offset));
            offset += (FRAME_HEADER_BYTES + len).next_multiple_of(FRAME_ALIGN_BYTES);
        }
    }
    out
}

fn dir_listing(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<(String, Vec<u8>)> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, fs::read(&p).unwrap())
        })
        .collect();
    files.sort();
    files
}

#[test]
fn lost_segments_with_a_watermark_are_refused_and_nothing_changes() {
    let dir = tempfile::tempdir().unwrap();
    let envelopes = closed_journal(dir.path());
    for segment in segments(dir.path()) {
        fs::remove_file(segment).unwrap();
    }
    let before = dir_listing(dir.path());
    let config = small_config(Durability::EveryBatch);
    let Err(error) = open_journal_and_engine(dir.path(), config, &streams::config(), 1) else {
        panic!("a fresh journal over a lost one");
    };
    let message = error.to_string();
    match error {
        StateError::Journal(JournalError::EarlierJournalMissing { evidence, .. }) => {
            let seq_last = envelopes.len();
            assert!(
                evidence
                    .iter()
                    .any(|e| e.contains(&format!("up to seq {seq_last}"))),
                "{evidence:?}"
            );
            assert!(
                evidence.iter().any(|e| e.contains("engine.json")),
                "{evidence:?}"
            );
        }
        other => panic!("a fresh journal over a lost one: {other}"),
    }
    assert!(message.contains("restore the segment files"), "{message}");
    // Nothing was created, rewritten or removed (the lock file is the only newcomer).
    let after: Vec<_> = dir_listing(dir.path())
        .into_iter()
        .filter(|(name, _)| name != kuku_journal::LOCK_FILE_NAME)
        .collect();
    let before: Vec<_> = before
        .into_iter()
        .filter(|(name, _)| name != kuku_journal::LOCK_FILE_NAME)
        .collect();
    assert_eq!(after, before);
    assert!(segments(dir.path()).is_empty());
    let meta = journal_meta(&streams::config(), 1);
    assert!(matches!(
        Journal::create(dir.path(), config, meta),
        Err(JournalError::EarlierJournalMissing { .. })
    ));
    assert!(matches!(
        tool::verify(dir.path(), &streams::config()),
        Err(StateError::Journal(
            JournalError::EarlierJournalMissing { .. }
        ))
    ));
    // A watermark file alone (seq > 0) is enough evidence.
    fs::remove_file(dir.path().join("engine.json")).unwrap();
    assert!(dir.path().join(WATERMARK_FILE_NAME).is_file());
    assert!(matches!(
        Journal::open_or_create(dir.path(), config, meta),
        Err(JournalError::EarlierJournalMissing { .. })
    ));
}

#[test]
fn verify_fails_on_a_journal_missing_its_last_segment() {
    let dir = tempfile::tempdir().unwrap();
    let envelopes = closed_journal(dir.path());
    let last = segments(dir.path()).pop().unwrap();
    fs::remove_file(&last).unwrap();
    let error = tool::verify(dir.path(), &streams::config()).unwrap_err();
    match &error {
        StateError::Journal(JournalError::DurableDataCorrupt {
            seq_durable, kind, ..
        }) => {
            assert_eq!(*seq_durable, envelopes.len() as u64);
            assert!(matches!(kind, CorruptionKind::EndOfData { .. }), "{kind}");
        }
        other => panic!("verify passed a journal without its last segment: {other}"),
    }
    // Start-up refuses the same journal.
    let meta = journal_meta(&streams::config(), 1);
    assert!(matches!(
        Journal::open(dir.path(), small_config(Durability::EveryBatch), meta),
        Err(JournalError::DurableDataCorrupt { .. })
    ));
}

#[test]
fn verify_fails_on_a_journal_cut_at_a_frame_boundary() {
    let dir = tempfile::tempdir().unwrap();
    let envelopes = closed_journal(dir.path());
    let cut_seq = envelopes.len() as u64 - 5;
    let (_, path, offset) = frame_offsets(dir.path())
        .into_iter()
        .find(|(seq, _, _)| *seq == cut_seq)
        .unwrap();
    let mut bytes = fs::read(&path).unwrap();
    bytes[offset..].fill(0);
    fs::write(&path, bytes).unwrap();
    // The reader alone sees a clean end of data; verify must compare it with the watermark.
    let reader = JournalReader::open(dir.path()).unwrap();
    let last = reader
        .frames_from(1)
        .unwrap()
        .map(|f| f.unwrap().seq)
        .last();
    assert_eq!(last, Some(cut_seq - 1));
    let error = tool::verify(dir.path(), &streams::config()).unwrap_err();
    assert!(
        matches!(
            &error,
            StateError::Journal(JournalError::DurableDataCorrupt { seq_expected, .. })
                if *seq_expected == cut_seq
        ),
        "verify passed a journal cut before its watermark: {error}"
    );
}

#[test]
fn a_torn_tail_is_quarantined_before_it_is_cut() {
    let dir = tempfile::tempdir().unwrap();
    let envelopes = commands(60);
    let committed = 40;
    let meta = journal_meta(&streams::config(), 1);
    let config = streams::journal_config(Durability::EveryBatch);
    let mut journal = Journal::create(dir.path(), config, meta).unwrap();
    write_config(dir.path(), &streams::config()).unwrap();
    streams::append_all(&mut journal, &envelopes[..committed], 10);
    for envelope in &envelopes[committed..] {
        kuku_journal::append_command(&mut journal, envelope).unwrap();
    }
    // A crash: the uncommitted frames stay in the page cache, after the watermark.
    drop(journal);
    let bad_seq = committed as u64 + 3;
    let (_, path, offset) = frame_offsets(dir.path())
        .into_iter()
        .find(|(seq, _, _)| *seq == bad_seq)
        .unwrap();
    let mut bytes = fs::read(&path).unwrap();
    bytes[offset + FRAME_HEADER_BYTES] ^= 0x40;
    fs::write(&path, &bytes).unwrap();
    let end = bytes.iter().rposition(|&b| b != 0).unwrap() + 1;
    let cut_bytes = bytes[offset..end].to_vec();

    let (journal, engine, report, _) =
        open_journal_and_engine(dir.path(), config, &streams::config(), 1).unwrap();
    assert_eq!(engine.last_seq(), bad_seq - 1);
    let cut = report.truncation.expect("a torn tail is reported");
    assert_eq!((cut.seq_expected, cut.offset), (bad_seq, offset as u64));
    assert_eq!(cut.bytes_discarded, cut_bytes.len() as u64);
    assert_eq!(
        cut.frames_cut,
        Some((bad_seq + 1, envelopes.len() as u64)),
        "the frames after the damage still pass their CRC"
    );
    let quarantine = cut.quarantine.expect("the cut bytes are kept");
    assert!(quarantine.starts_with(dir.path().join(QUARANTINE_DIR_NAME)));
    let piece_name = format!("{}@{offset}", path.file_name().unwrap().to_string_lossy());
    assert_eq!(fs::read(quarantine.join(piece_name)).unwrap(), cut_bytes);
    let about = fs::read_to_string(quarantine.join("cut.txt")).unwrap();
    assert!(
        about.contains(&format!("seq expected there: {bad_seq}")),
        "{about}"
    );
    // The segment itself is zero from the cut on.
    drop(journal);
    let after = fs::read(&path).unwrap();
    assert!(after[offset..].iter().all(|&b| b == 0));
    assert_eq!(after[..offset], bytes[..offset]);
    // verify lists the quarantine.
    let report = tool::verify(dir.path(), &streams::config()).unwrap();
    assert_eq!(report.quarantined, vec![quarantine]);
    let mut text = Vec::new();
    report.write_text(&mut text).unwrap();
    assert!(String::from_utf8(text).unwrap().contains("quarantine: "));
}

#[test]
fn with_durability_none_the_watermark_advances_and_earlier_damage_is_a_hard_error() {
    let dir = tempfile::tempdir().unwrap();
    let envelopes = commands(200);
    let meta = journal_meta(&streams::config(), 1);
    let config = small_config(Durability::None);
    let mut journal = Journal::create(dir.path(), config, meta).unwrap();
    write_config(dir.path(), &streams::config()).unwrap();
    journal
        .start_watermark_sync(Duration::from_millis(10))
        .unwrap();
    streams::append_all(&mut journal, &envelopes, 20);
    let seq_last = envelopes.len() as u64;
    let deadline = Instant::now() + Duration::from_secs(20);
    while journal.durable_watermark() < seq_last {
        assert!(
            Instant::now() < deadline,
            "the syncer never moved the watermark to {seq_last}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    // On disk (the watermark file) before the journal reports it.
    assert_eq!(
        JournalReader::open(dir.path()).unwrap().durable_watermark(),
        seq_last
    );
    // A crash: no clean close.
    drop(journal);
    let bad_seq = seq_last - 50;
    let (_, path, offset) = frame_offsets(dir.path())
        .into_iter()
        .find(|(seq, _, _)| *seq == bad_seq)
        .unwrap();
    let mut bytes = fs::read(&path).unwrap();
    bytes[offset + FRAME_HEADER_BYTES] ^= 0x01;
    fs::write(&path, &bytes).unwrap();
    match Journal::open(dir.path(), config, meta) {
        Err(JournalError::DurableDataCorrupt {
            seq_expected,
            seq_durable,
            ..
        }) => assert_eq!((seq_expected, seq_durable), (bad_seq, seq_last)),
        Ok((_, report)) => panic!("damage below the watermark was cut: {report}"),
        Err(other) => panic!("{other}"),
    }
    assert_eq!(fs::read(&path).unwrap(), bytes, "nothing was modified");
    assert!(!dir.path().join(QUARANTINE_DIR_NAME).exists());
}
