//! What replication needs from the journal: the last frame's stored bytes, raising the epoch
//! (a new segment carries it), decoding a shipped frame, and cutting a divergent tail.

mod common;

use common::{META, SEGMENT_BYTES_SMALL, append_range, check_all_frames, config, payload, ts};
use kuku_journal::{
    Durability, Journal, JournalError, JournalMeta, JournalReader, decode_frame, encode_frame,
    truncate_after,
};

#[test]
fn last_frame_is_the_stored_frame_and_decodes_on_the_other_side() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(SEGMENT_BYTES_SMALL, Durability::None);
    let mut journal = Journal::create(dir.path(), cfg, META).unwrap();
    append_range(&mut journal, 1..=3);
    let shipped = journal.last_frame().to_vec();
    let (frame, used) = decode_frame(&shipped, 3, 1024).unwrap();
    assert_eq!(
        (frame.seq, frame.ts, frame.payload),
        (3, ts(3), &payload(3)[..])
    );
    assert_eq!(used, shipped.len());
    // The same bytes as a frame re-encoded from what a reader returns (catch-up path).
    let mut again = Vec::new();
    encode_frame(&mut again, 3, ts(3), &payload(3));
    assert_eq!(&again[..shipped.len()], &shipped[..]);
    // A flipped bit or a wrong seq is refused.
    let mut bad = shipped.clone();
    bad[30] ^= 1;
    assert!(decode_frame(&bad, 3, 1024).is_err());
    assert!(decode_frame(&shipped, 4, 1024).is_err());
}

#[test]
fn raise_epoch_starts_a_segment_carrying_the_new_epoch() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(SEGMENT_BYTES_SMALL, Durability::EveryBatch);
    let mut journal = Journal::create(dir.path(), cfg, META).unwrap();
    append_range(&mut journal, 1..=5);
    let raised = META.epoch + 1;
    journal.raise_epoch(raised).unwrap();
    assert!(matches!(
        journal.raise_epoch(raised),
        Err(JournalError::InvalidConfig { .. })
    ));
    append_range(&mut journal, 6..=8);
    journal.close().unwrap();
    let reader = JournalReader::open(dir.path()).unwrap();
    let epochs: Vec<(u64, u64)> = reader
        .stats()
        .unwrap()
        .segments
        .iter()
        .map(|s| (s.first_seq, s.epoch))
        .collect();
    assert_eq!(epochs.last(), Some(&(6, raised)), "{epochs:?}");
    // The old epoch can no longer open it: a promoted node wrote to it.
    assert!(matches!(
        Journal::open(dir.path(), cfg, META),
        Err(JournalError::EpochRegression { .. })
    ));
    let newer = JournalMeta {
        epoch: raised,
        ..META
    };
    let (journal, report) = Journal::open(dir.path(), cfg, newer).unwrap();
    assert_eq!((report.seq_last, journal.seq_next()), (8, 9));
}

#[test]
fn truncate_after_cuts_a_durable_tail_across_segments() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(SEGMENT_BYTES_SMALL, Durability::EveryBatch);
    let mut journal = Journal::create(dir.path(), cfg, META).unwrap();
    for batch in 0..8u64 {
        append_range(&mut journal, batch * 10 + 1..=batch * 10 + 10);
        journal.commit().unwrap();
    }
    assert_eq!(journal.durable_watermark(), 80);
    journal.close().unwrap();
    assert!(matches!(
        truncate_after(dir.path(), 0),
        Err(JournalError::InvalidConfig { .. })
    ));

    let cut = truncate_after(dir.path(), 33).unwrap();
    assert_eq!(cut.seq_last, 33);
    assert!(cut.segments_removed > 0, "{cut:?}");
    assert_eq!(check_all_frames(dir.path()), 33);
    let reader = JournalReader::open(dir.path()).unwrap();
    assert_eq!(
        reader.durable_watermark(),
        33,
        "the watermark follows the cut"
    );
    drop(reader);
    // The journal reopens at the cut without a torn tail and continues from it.
    let (mut journal, report) = Journal::open(dir.path(), cfg, META).unwrap();
    assert_eq!((report.seq_last, report.truncation), (33, None));
    append_range(&mut journal, 34..=40);
    journal.close().unwrap();
    assert_eq!(check_all_frames(dir.path()), 40);
    // Cutting at or after the end changes nothing.
    assert_eq!(truncate_after(dir.path(), 40).unwrap().frames_removed, 0);
    assert_eq!(check_all_frames(dir.path()), 40);
}
