//! Helpers shared by the journal's integration tests: a fixed meta, small configs, and
//! deterministic payloads so any test can check any frame it reads back.
#![allow(dead_code)]

use std::fs;
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};

use kuku_journal::{
    Durability, Journal, JournalConfig, JournalMeta, JournalReader, LOCK_FILE_NAME,
};

pub const META: JournalMeta = JournalMeta {
    engine_logic_version: 7,
    capacities_hash: 0x1234_5678_9abc_def0,
    epoch: 1,
};

/// 12 KiB: the two header pages and one 4 KiB page of frames.
pub const SEGMENT_BYTES_SMALL: u64 = 12 * 1024;
pub const FRAME_PAYLOAD_MAX: u32 = 1024;

pub fn config(segment_bytes: u64, durability: Durability) -> JournalConfig {
    JournalConfig {
        segment_bytes,
        frame_payload_max: FRAME_PAYLOAD_MAX,
        durability,
    }
}

/// The payload of frame `seq`: 1 to 200 bytes, none of them zero (so zeroing any suffix of a
/// frame changes it).
pub fn payload(seq: u64) -> Vec<u8> {
    let len = 1 + (seq.wrapping_mul(7919) % 200) as usize;
    (0..len)
        .map(|i| 1 + ((seq as usize * 31 + i) % 255) as u8)
        .collect()
}

pub fn ts(seq: u64) -> u64 {
    1_700_000_000_000_000_000 + seq * 1_000
}

pub fn append_range(journal: &mut Journal, seqs: RangeInclusive<u64>) {
    for seq in seqs {
        journal.append(seq, ts(seq), &payload(seq)).expect("append");
    }
}

/// Reads every frame of the journal in `dir`, checking each against `payload`/`ts`; returns
/// the last seq (0 for none).
pub fn check_all_frames(dir: &Path) -> u64 {
    let reader = JournalReader::open(dir).expect("open reader");
    let mut seq_last = reader.seq_first() - 1;
    for frame in reader.frames_from(reader.seq_first()).expect("frames") {
        let frame = frame.expect("valid frame");
        assert_eq!(frame.seq, seq_last + 1, "dense seqs");
        assert_eq!(
            frame.payload,
            payload(frame.seq).as_slice(),
            "payload of seq {}",
            frame.seq
        );
        assert_eq!(frame.ts, ts(frame.seq), "ts of seq {}", frame.seq);
        seq_last = frame.seq;
    }
    seq_last
}

/// Segment files of `dir`, oldest first.
pub fn segment_paths(dir: &Path) -> Vec<PathBuf> {
    let mut paths: Vec<PathBuf> = fs::read_dir(dir)
        .expect("read dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    paths.sort();
    paths
}

/// Copies the journal files of `from` into the (existing, empty) directory `to`.
pub fn copy_journal(from: &Path, to: &Path) {
    for entry in fs::read_dir(from).expect("read dir") {
        let entry = entry.expect("entry");
        if entry.file_type().expect("type").is_file() && entry.file_name() != LOCK_FILE_NAME {
            fs::copy(entry.path(), to.join(entry.file_name())).expect("copy");
        }
    }
}

/// Offsets of the frames written by `append_range(1..=n)` into a fresh journal whose frames all
/// fit in its first segment: (start, end of payload) per frame.
pub fn frame_spans(n: u64) -> Vec<(usize, usize)> {
    let mut offset = kuku_journal::SEGMENT_DATA_START;
    (1..=n)
        .map(|seq| {
            let len = payload(seq).len();
            let span = (offset, offset + kuku_journal::FRAME_HEADER_BYTES + len);
            offset += kuku_journal::frame_bytes(len);
            span
        })
        .collect()
}
