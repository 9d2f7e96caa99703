//! Writer, reader and error behaviour of the journal on healthy data.

mod common;

use std::panic::{AssertUnwindSafe, catch_unwind};

use common::{
    FRAME_PAYLOAD_MAX, META, SEGMENT_BYTES_SMALL, append_range, check_all_frames, config, payload,
    segment_paths, ts,
};
use kuku_journal::{
    Durability, Journal, JournalConfig, JournalError, JournalMeta, JournalReader, MetaField,
    NEXT_SEGMENT_FILE_NAME, SEGMENT_DATA_START, WATERMARK_FILE_NAME, segment_file_name,
};

#[test]
fn committed_frames_read_back_after_reopen_across_segments() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(SEGMENT_BYTES_SMALL, Durability::EveryBatch);
    let mut journal = Journal::create(dir.path(), cfg, META).unwrap();
    for batch in 0..10u64 {
        append_range(&mut journal, batch * 10 + 1..=batch * 10 + 10);
        assert_eq!(
            journal.commit().unwrap(),
            batch * 10 + 10,
            "commit reports the batch durable"
        );
    }
    assert_eq!(journal.durable_watermark(), 100);
    drop(journal);

    let (mut journal, report) = Journal::open(dir.path(), cfg, META).unwrap();
    assert_eq!(
        (report.frames_kept, report.seq_first, report.seq_last),
        (100, 1, 100)
    );
    assert_eq!(report.truncation, None);
    assert_eq!(report.seq_durable, 100);
    assert!(report.segments > 1, "12 KiB segments roll: {report}");
    assert_eq!(journal.seq_next(), 101);
    append_range(&mut journal, 101..=105);
    assert_eq!(journal.close().unwrap(), 105);
    assert_eq!(check_all_frames(dir.path()), 105);
}

#[test]
fn a_graceful_close_in_none_mode_makes_every_frame_durable() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(SEGMENT_BYTES_SMALL, Durability::None);
    let mut journal = Journal::create(dir.path(), cfg, META).unwrap();
    append_range(&mut journal, 1..=60);
    assert_eq!(
        journal.commit().unwrap(),
        0,
        "`none` commits promise nothing"
    );
    assert_eq!(
        journal.close().unwrap(),
        60,
        "close syncs and moves the watermark"
    );

    let (journal, report) = Journal::open(dir.path(), cfg, META).unwrap();
    assert!(report.segments > 1, "the frames span segments: {report}");
    assert_eq!((report.seq_last, report.seq_durable), (60, 60));
    assert_eq!(report.truncation, None);
    assert_eq!(journal.seq_next(), 61);
}

#[test]
fn segments_are_named_by_their_first_seq() {
    let dir = tempfile::tempdir().unwrap();
    let mut journal = Journal::create(
        dir.path(),
        config(SEGMENT_BYTES_SMALL, Durability::None),
        META,
    )
    .unwrap();
    append_range(&mut journal, 1..=60);
    journal.close().unwrap();

    let reader = JournalReader::open(dir.path()).unwrap();
    let stats = reader.stats().unwrap();
    assert_eq!(stats.frames, 60);
    assert_eq!((stats.seq_first, stats.seq_last), (Some(1), Some(60)));
    assert_eq!(
        stats.payload_bytes,
        (1..=60).map(|s| payload(s).len() as u64).sum::<u64>()
    );
    assert_eq!(stats.segments.len(), segment_paths(dir.path()).len());
    for segment in &stats.segments {
        let name = segment
            .path
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .to_owned();
        assert_eq!(name, segment_file_name(segment.first_seq));
        assert_eq!(segment.file_bytes, SEGMENT_BYTES_SMALL);
        assert!(
            segment.bytes_used <= SEGMENT_BYTES_SMALL
                && segment.bytes_used > SEGMENT_DATA_START as u64
        );
    }
    assert_eq!(stats.segments.iter().map(|s| s.frames).sum::<u64>(), 60);
    // Every segment after the first starts right after the previous one's last frame.
    let mut next = 1;
    for segment in &stats.segments {
        assert_eq!(segment.first_seq, next);
        next += segment.frames;
    }
}

#[test]
fn reader_starts_mid_journal_and_rejects_a_seq_before_the_first() {
    let dir = tempfile::tempdir().unwrap();
    let mut journal = Journal::create(
        dir.path(),
        config(SEGMENT_BYTES_SMALL, Durability::None),
        META,
    )
    .unwrap();
    append_range(&mut journal, 1..=50);
    journal.commit().unwrap();
    drop(journal);

    let reader = JournalReader::open(dir.path()).unwrap();
    let seqs: Vec<u64> = reader
        .frames_from(37)
        .unwrap()
        .map(|f| f.unwrap().seq)
        .collect();
    assert_eq!(seqs, (37..=50).collect::<Vec<_>>());
    assert_eq!(reader.frames_from(51).unwrap().count(), 0);
    assert!(matches!(
        reader.frames_from(0),
        Err(JournalError::SeqNotInJournal {
            requested: 0,
            seq_first: 1
        })
    ));
    assert_eq!(reader.meta(), Some(META));
}

#[test]
fn append_with_encodes_in_place_and_scrubs_unused_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(SEGMENT_BYTES_SMALL, Durability::EveryBatch);
    let mut journal = Journal::create(dir.path(), cfg, META).unwrap();
    for seq in 1..=40 {
        let expected = payload(seq);
        let written = journal
            .append_with(seq, ts(seq), 256, |buf| {
                assert_eq!(buf.len(), 256);
                assert!(buf.iter().all(|&b| b == 0), "the closure gets zeroed space");
                buf[..expected.len()].copy_from_slice(&expected);
                // Scribble past the end: the journal must clean it up.
                buf[expected.len()..].fill(0xAA);
                expected.len()
            })
            .unwrap();
        assert_eq!(written, expected.len());
    }
    journal.close().unwrap();
    let (_journal, report) = Journal::open(dir.path(), cfg, META).unwrap();
    assert_eq!(
        report.truncation, None,
        "no stale bytes after the last frame: {report}"
    );
    drop(_journal);
    assert_eq!(check_all_frames(dir.path()), 40);
}

#[test]
fn append_with_failure_or_panic_leaves_no_trace() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(SEGMENT_BYTES_SMALL, Durability::None);
    let mut journal = Journal::create(dir.path(), cfg, META).unwrap();
    append_range(&mut journal, 1..=3);

    let too_long = journal.append_with(4, ts(4), 16, |buf| {
        buf.fill(7);
        17
    });
    assert!(matches!(
        too_long,
        Err(JournalError::PayloadWriterOutOfRange {
            written: 17,
            payload_len_max: 16
        })
    ));
    let empty = journal.append_with(4, ts(4), 16, |buf| {
        buf.fill(7);
        0
    });
    assert!(matches!(
        empty,
        Err(JournalError::PayloadWriterOutOfRange { written: 0, .. })
    ));
    let panicked = catch_unwind(AssertUnwindSafe(|| {
        journal.append_with(4, ts(4), 16, |buf| {
            buf.fill(9);
            panic!("encoder bug");
        })
    }));
    assert!(panicked.is_err());
    assert_eq!(journal.seq_next(), 4, "failed appends do not consume a seq");

    append_range(&mut journal, 4..=6);
    journal.close().unwrap();
    let (journal, report) = Journal::open(dir.path(), cfg, META).unwrap();
    assert_eq!(report.truncation, None, "{report}");
    drop(journal);
    assert_eq!(check_all_frames(dir.path()), 6);
}

#[test]
fn append_rejects_wrong_seq_empty_and_oversized_payloads() {
    let dir = tempfile::tempdir().unwrap();
    let mut journal = Journal::create(
        dir.path(),
        config(SEGMENT_BYTES_SMALL, Durability::None),
        META,
    )
    .unwrap();
    assert!(matches!(
        journal.append(2, 0, b"x"),
        Err(JournalError::SeqMismatch {
            expected: 1,
            got: 2
        })
    ));
    assert!(matches!(
        journal.append(1, 0, b""),
        Err(JournalError::PayloadEmpty)
    ));
    let big = vec![1u8; FRAME_PAYLOAD_MAX as usize + 1];
    assert!(matches!(
        journal.append(1, 0, &big),
        Err(JournalError::PayloadTooLarge { len, max: FRAME_PAYLOAD_MAX }) if len == big.len()
    ));
    journal.append(1, 0, &big[1..]).unwrap();
    assert!(matches!(
        journal.append(1, 0, b"x"),
        Err(JournalError::SeqMismatch {
            expected: 2,
            got: 1
        })
    ));
}

#[test]
fn none_durability_reports_only_the_watermark_set_by_replication() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(SEGMENT_BYTES_SMALL, Durability::None);
    let mut journal = Journal::create(dir.path(), cfg, META).unwrap();
    append_range(&mut journal, 1..=10);
    assert_eq!(
        journal.commit().unwrap(),
        0,
        "page cache only: nothing durable"
    );
    journal.set_durable_watermark(6).unwrap();
    assert_eq!(journal.commit().unwrap(), 6);
    journal.set_durable_watermark(3).unwrap();
    assert_eq!(
        journal.durable_watermark(),
        6,
        "the watermark never goes back"
    );
    assert!(matches!(
        journal.set_durable_watermark(11),
        Err(JournalError::WatermarkAhead {
            requested: 11,
            seq_last: 10
        })
    ));
    drop(journal);
    let (_journal, report) = Journal::open(dir.path(), cfg, META).unwrap();
    assert_eq!(report.seq_durable, 6);
}

#[test]
fn open_refuses_another_engine_build_or_capacity_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(SEGMENT_BYTES_SMALL, Durability::None);
    let mut journal = Journal::create(dir.path(), cfg, META).unwrap();
    append_range(&mut journal, 1..=5);
    journal.close().unwrap();

    let other_logic = JournalMeta {
        engine_logic_version: 8,
        ..META
    };
    let err = Journal::open(dir.path(), cfg, other_logic).unwrap_err();
    assert!(
        matches!(
            &err,
            JournalError::MetaMismatch {
                field: MetaField::EngineLogicVersion,
                expected: 8,
                found: 7,
                ..
            }
        ),
        "{err}"
    );
    assert!(
        err.to_string().contains(&segment_file_name(1)),
        "names the segment: {err}"
    );
    let other_caps = JournalMeta {
        capacities_hash: 1,
        ..META
    };
    let err = Journal::open(dir.path(), cfg, other_caps).unwrap_err();
    assert!(
        matches!(
            err,
            JournalError::MetaMismatch {
                field: MetaField::CapacitiesHash,
                ..
            }
        ),
        "{err}"
    );
    let err = JournalReader::open(dir.path()).unwrap().meta();
    assert_eq!(err, Some(META), "the refused journal is untouched");
}

#[test]
fn a_newer_epoch_starts_a_new_segment_and_an_older_one_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(SEGMENT_BYTES_SMALL, Durability::EveryBatch);
    let mut journal = Journal::create(dir.path(), cfg, META).unwrap();
    append_range(&mut journal, 1..=5);
    journal.close().unwrap();

    let promoted = JournalMeta { epoch: 2, ..META };
    let (mut journal, _) = Journal::open(dir.path(), cfg, promoted).unwrap();
    assert!(
        journal
            .active_segment_path()
            .ends_with(segment_file_name(6))
    );
    append_range(&mut journal, 6..=8);
    journal.close().unwrap();
    assert_eq!(
        JournalReader::open(dir.path())
            .unwrap()
            .meta()
            .map(|m| m.epoch),
        Some(2)
    );
    assert_eq!(check_all_frames(dir.path()), 8);

    let err = Journal::open(dir.path(), cfg, META).unwrap_err();
    assert!(
        matches!(
            err,
            JournalError::EpochRegression {
                expected: 1,
                found: 2,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn a_changed_payload_limit_applies_from_a_new_segment() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(SEGMENT_BYTES_SMALL, Durability::None);
    let mut journal = Journal::create(dir.path(), cfg, META).unwrap();
    append_range(&mut journal, 1..=3);
    journal.close().unwrap();
    let bigger = JournalConfig {
        frame_payload_max: 2048,
        ..cfg
    };
    let (mut journal, _) = Journal::open(dir.path(), bigger, META).unwrap();
    assert!(
        journal
            .active_segment_path()
            .ends_with(segment_file_name(4))
    );
    journal.append(4, ts(4), &[5u8; 2000]).unwrap();
    journal.close().unwrap();
    let reader = JournalReader::open(dir.path()).unwrap();
    assert_eq!(
        reader
            .frames_from(4)
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .payload,
        &[5u8; 2000][..]
    );
}

#[test]
fn clear_errors_for_missing_empty_existing_and_locked_journals() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope");
    let cfg = config(SEGMENT_BYTES_SMALL, Durability::None);
    let err = Journal::open(&missing, cfg, META).unwrap_err();
    assert!(
        matches!(&err, JournalError::MissingDirectory { path } if *path == missing),
        "{err}"
    );
    assert!(err.to_string().contains("does not exist"), "{err}");
    assert!(matches!(
        JournalReader::open(&missing),
        Err(JournalError::MissingDirectory { .. })
    ));

    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let err = Journal::open(&empty, cfg, META).unwrap_err();
    assert!(matches!(err, JournalError::EmptyJournal { .. }), "{err}");
    assert!(matches!(
        JournalReader::open(&empty),
        Err(JournalError::EmptyJournal { .. })
    ));

    let (journal, report) = Journal::open_or_create(&empty, cfg, META).unwrap();
    assert_eq!((report.frames_kept, report.seq_last), (0, 0));
    assert!(empty.join(WATERMARK_FILE_NAME).is_file());
    let err = Journal::open(&empty, cfg, META).unwrap_err();
    assert!(
        matches!(err, JournalError::Locked { .. }),
        "a second writer is refused: {err}"
    );
    drop(journal);
    let err = Journal::create(&empty, cfg, META).unwrap_err();
    assert!(matches!(err, JournalError::JournalExists { .. }), "{err}");
    assert!(
        Journal::open(&empty, cfg, META).is_ok(),
        "the lock is released on drop"
    );
}

#[test]
fn invalid_configurations_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    for bad in [
        JournalConfig {
            segment_bytes: 8192,
            ..JournalConfig::default()
        },
        JournalConfig {
            segment_bytes: 12 * 1024 + 1,
            ..JournalConfig::default()
        },
        JournalConfig {
            segment_bytes: 12 * 1024,
            frame_payload_max: 4096,
            durability: Durability::None,
        },
        JournalConfig {
            frame_payload_max: 0,
            ..JournalConfig::default()
        },
    ] {
        let err = Journal::create(dir.path(), bad, META).unwrap_err();
        assert!(
            matches!(err, JournalError::InvalidConfig { .. }),
            "{bad:?}: {err}"
        );
    }
    assert!(JournalConfig::default().validate().is_ok());
}

#[test]
fn a_frame_of_the_maximum_size_fits_an_empty_segment() {
    let dir = tempfile::tempdir().unwrap();
    let max = 4096 - kuku_journal::FRAME_HEADER_BYTES as u32;
    let cfg = JournalConfig {
        segment_bytes: SEGMENT_BYTES_SMALL,
        frame_payload_max: max,
        durability: Durability::None,
    };
    let mut journal = Journal::create(dir.path(), cfg, META).unwrap();
    for seq in 1..=3 {
        journal
            .append(seq, 0, &vec![seq as u8; max as usize])
            .unwrap();
    }
    journal.close().unwrap();
    assert_eq!(
        segment_paths(dir.path()).len(),
        3,
        "one full frame per segment"
    );
    let reader = JournalReader::open(dir.path()).unwrap();
    assert_eq!(reader.stats().unwrap().frames, 3);
}

#[test]
fn create_refuses_a_watermark_left_by_a_removed_journal() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(SEGMENT_BYTES_SMALL, Durability::EveryBatch);
    let mut journal = Journal::create(dir.path(), cfg, META).unwrap();
    append_range(&mut journal, 1..=10);
    journal.close().unwrap();
    for segment in segment_paths(dir.path()) {
        std::fs::remove_file(segment).unwrap();
    }
    // The watermark says frames up to 10 were durable: a new journal would hide their loss.
    let err = Journal::create(dir.path(), cfg, META).unwrap_err();
    assert!(
        matches!(err, JournalError::EarlierJournalMissing { .. }),
        "{err}"
    );
    let err = Journal::open_or_create(dir.path(), cfg, META).unwrap_err();
    assert!(
        matches!(err, JournalError::EarlierJournalMissing { .. }),
        "{err}"
    );
    // An operator who really starts over removes what is left.
    std::fs::remove_file(dir.path().join(WATERMARK_FILE_NAME)).unwrap();
    let mut journal = Journal::create(dir.path(), cfg, META).unwrap();
    assert_eq!(journal.durable_watermark(), 0);
    append_range(&mut journal, 1..=3);
    journal.close().unwrap();
    let (_journal, report) = Journal::open(dir.path(), cfg, META).unwrap();
    assert_eq!((report.seq_last, report.seq_durable), (3, 3));
}

#[test]
fn rolls_take_the_prepared_zero_filled_segment_and_close_leaves_no_prepared_file() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(SEGMENT_BYTES_SMALL, Durability::EveryBatch);
    let next = dir.path().join(NEXT_SEGMENT_FILE_NAME);
    let mut journal = Journal::create(dir.path(), cfg, META).unwrap();
    assert!(
        !next.exists(),
        "nothing is prepared before the segment is half full"
    );
    append_range(&mut journal, 1..=100);
    journal.commit().unwrap();
    let segments = segment_paths(dir.path());
    assert!(segments.len() > 2, "12 KiB segments roll: {segments:?}");
    for path in &segments {
        let bytes = std::fs::read(path).unwrap();
        assert_eq!(
            bytes.len() as u64,
            SEGMENT_BYTES_SMALL,
            "{path:?} is full size"
        );
    }
    journal.close().unwrap();
    assert!(!next.exists(), "close removes the unused prepared file");

    // A crash can leave a prepared file behind: it is not a segment, and it is replaced.
    std::fs::write(&next, b"left by a crash").unwrap();
    let (mut journal, report) = Journal::open(dir.path(), cfg, META).unwrap();
    assert_eq!((report.frames_kept, report.seq_last), (100, 100));
    append_range(&mut journal, 101..=160);
    journal.commit().unwrap();
    drop(journal);
    assert!(!next.exists());
    assert_eq!(check_all_frames(dir.path()), 160);
}
