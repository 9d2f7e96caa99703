//! The durable watermark: the highest seq known durable (synced locally with `every-batch`, or
//! declared by replication). Recovery truncates damage after it and refuses damage at or before
//! it.
//!
//! It is kept in two places, each as a pair of alternating slots, and recovery takes the
//! largest valid value found anywhere:
//!
//! - **page 1 of the active segment**: written after every commit's msync; the next commit's
//!   msync (which covers `[0, end of data)`) carries it to disk at no extra cost, so the on-disk
//!   value lags the reported one by at most one batch;
//! - **the `watermark` file** (one mapped 4 KiB page): written at the same time, msynced at
//!   every segment roll, at `close`, and by `set_durable_watermark` with `every-batch`. It
//!   survives the loss of a segment's first pages or of a whole newest segment, which would
//!   take page 1 with it.
//!
//! Either copy may lag, never lead: a value is written only after the frames it covers were
//! synced (or acknowledged by a standby), so a torn or lost slot write can only make recovery
//! more lenient about the last batches, never refuse a journal because of frames that were not
//! yet durable.
//!
//! ```text
//! slot (16 bytes): magic "KWM1" u32 LE | crc32c(magic ++ seq) u32 LE | seq u64 LE
//! slot 0 at +0, slot 1 at +512: separate 512-byte sectors, so a torn sector damages one slot
//! ```
//!
//! **Invariants**: the two slots are written alternately; a reader takes the largest seq of a
//! valid slot, so one damaged slot falls back to the other.
//!
//! **Performance**: a store is two 16-byte memory writes per commit; no syscall.
//!
//! **Known limitations**: a fsync per commit of the watermark file would make it exact, at the
//! price of a second device flush per batch (measured in ADR-004); it is not done.

use std::fs::{self, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};

use memmap2::{MmapMut, MmapOptions};

use crate::error::JournalError;
use crate::frame::{le_u32, le_u64};
use crate::segment::preallocate;

/// Name of the watermark file inside the journal directory.
pub const WATERMARK_FILE_NAME: &str = "watermark";
const WATERMARK_FILE_BYTES: usize = 4096;
const SLOT_STRIDE_BYTES: usize = 512;
const SLOT_BYTES: usize = 16;
const SLOT_MAGIC: u32 = u32::from_le_bytes(*b"KWM1");

fn encode_slot(seq: u64) -> [u8; SLOT_BYTES] {
    let mut slot = [0u8; SLOT_BYTES];
    slot[0..4].copy_from_slice(&SLOT_MAGIC.to_le_bytes());
    slot[8..16].copy_from_slice(&seq.to_le_bytes());
    let crc = crc32c::crc32c_append(crc32c::crc32c(&slot[0..4]), &slot[8..16]);
    slot[4..8].copy_from_slice(&crc.to_le_bytes());
    slot
}

/// The seqs in the valid slots of a slot area (bytes missing from a short area read as absent).
pub(crate) fn decode_slots(area: &[u8]) -> [Option<u64>; 2] {
    [0, SLOT_STRIDE_BYTES].map(|at| {
        let slot = area.get(at..at + SLOT_BYTES)?;
        let crc = crc32c::crc32c_append(crc32c::crc32c(&slot[0..4]), &slot[8..16]);
        (le_u32(slot, 0) == SLOT_MAGIC && le_u32(slot, 4) == crc).then(|| le_u64(slot, 8))
    })
}

/// The newest value in a slot area (0 if none is valid) and the slot to write next (the other).
pub(crate) fn newest(area: &[u8]) -> (u64, usize) {
    let [a, b] = decode_slots(area);
    if b.unwrap_or(0) > a.unwrap_or(0) {
        (b.unwrap_or(0), 0)
    } else {
        (a.unwrap_or(0), 1)
    }
}

/// Writes `seq` into slot `index` of a slot area.
pub(crate) fn write_slot(area: &mut [u8], index: usize, seq: u64) {
    let at = index * SLOT_STRIDE_BYTES;
    area[at..at + SLOT_BYTES].copy_from_slice(&encode_slot(seq));
}

/// The newest value in the watermark file of `dir` (0 if the file is missing or both slots are
/// damaged).
pub(crate) fn read_watermark_file(dir: &Path) -> Result<u64, JournalError> {
    let path = dir.join(WATERMARK_FILE_NAME);
    match fs::read(&path) {
        Ok(bytes) => Ok(newest(&bytes).0),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(0),
        Err(e) => Err(JournalError::io("read", path)(e)),
    }
}

/// The mapped watermark file of a writer.
pub(crate) struct WatermarkFile {
    pub path: PathBuf,
    map: MmapMut,
    slot_next: usize,
    seq: u64,
}

impl WatermarkFile {
    /// Opens the watermark file of `dir`, creating it if missing. Returns whether it was created
    /// (its directory entry then needs a directory fsync to be durable).
    pub fn open_or_create(dir: &Path) -> Result<(WatermarkFile, bool), JournalError> {
        let path = dir.join(WATERMARK_FILE_NAME);
        let created = !path.exists();
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(JournalError::io("open", &path))?;
        let file_bytes = file
            .metadata()
            .map_err(JournalError::io("stat", &path))?
            .len();
        if file_bytes < WATERMARK_FILE_BYTES as u64 {
            preallocate(&file, &path, WATERMARK_FILE_BYTES as u64)?;
        }
        // SAFETY: the file is at least WATERMARK_FILE_BYTES long (preallocated above); only the
        // writer holding the journal directory's lock maps it writable, and nothing truncates it.
        let map = unsafe { MmapOptions::new().len(WATERMARK_FILE_BYTES).map_mut(&file) }
            .map_err(JournalError::io("mmap", &path))?;
        let (seq, slot_next) = newest(&map);
        Ok((
            WatermarkFile {
                path,
                map,
                slot_next,
                seq,
            },
            created,
        ))
    }

    /// The newest value stored (page cache; durable after [`WatermarkFile::sync`]).
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// Stores `seq` into the slot not holding the newest value.
    pub fn store(&mut self, seq: u64) {
        write_slot(&mut self.map, self.slot_next, seq);
        self.slot_next ^= 1;
        self.seq = seq;
    }

    /// msync(MS_SYNC) of the file.
    pub fn sync(&self) -> io::Result<()> {
        self.map.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_round_trip_alternate_and_reject_flips() {
        let mut area = vec![0u8; 1024];
        assert_eq!(newest(&area), (0, 1));
        write_slot(&mut area, 1, 77);
        assert_eq!(decode_slots(&area), [None, Some(77)]);
        assert_eq!(newest(&area), (77, 0));
        write_slot(&mut area, 0, 78);
        assert_eq!(newest(&area), (78, 1));
        for bit in 0..SLOT_BYTES * 8 {
            let mut damaged = area.clone();
            damaged[bit / 8] ^= 1 << (bit % 8);
            assert_eq!(decode_slots(&damaged), [None, Some(77)], "bit {bit}");
            assert_eq!(
                newest(&damaged),
                (77, 0),
                "a damaged newest slot falls back to the other"
            );
        }
    }
}
