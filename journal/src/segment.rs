//! Segment files: naming, the header pages (header record + watermark slots), preallocation
//! and mapping.
//!
//! A segment is a fixed-size file `<first seq, 20 digits>.seg`. Page 0 holds the header
//! record, written once when the segment is created; page 1 holds the watermark slots,
//! rewritten after every commit; frames start at [`SEGMENT_DATA_START`] (8 KiB).
//!
//! ```text
//! page 0: header record
//!   offset size field
//!        0    8 magic "KUKUJNL\0"
//!        8    4 format version (u32 LE, currently 1)
//!       12    4 engine-logic version (u32 LE)
//!       16    8 epoch (u64 LE)
//!       24    8 capacities hash (u64 LE)
//!       32    8 first seq (u64 LE), equal to the number in the file name
//!       40    8 segment_bytes (u64 LE), the file size the segment was created with
//!       48    4 frame_payload_max (u32 LE) the frames in this segment obey
//!       52    8 reserved, zero
//!       60    4 crc32c of bytes 0..60
//! page 1: watermark slots (layout in watermark.rs), at 4096 and 4608
//! 8192..: frames (layout in frame.rs)
//! ```
//!
//! Keeping the header record alone in a page that is never rewritten means a torn rewrite of
//! the watermark page cannot damage it, and vice versa; frames never share a page with either.
//!
//! **Invariants**: the file name, the header's first seq and the first frame's seq agree; every
//! byte after the last frame is zero; a segment is never truncated while mapped.
//!
//! **Performance**: a new segment is a zero-filled file (`prepare_segment_file`, about 20-60
//! ms for 64 MiB, done ahead by the journal's helper thread) that a roll renames and maps (+
//! one msync of the header pages and one directory fsync with `every-batch`). Written zeros,
//! not `fallocate`: stores into unwritten extents fault expensively (see
//! `prepare_segment_file`).
//!
//! **Known limitations**: zero-filling costs a full write of each segment (and a second one
//! of the pages writeback reaches before their frames do). `preallocate` (`fallocate(2)`,
//! zero-fill where unsupported) remains for extending a segment found cut short and for the
//! watermark file. The header pages are
//! 4 KiB each even where the OS page is larger (16/64 KiB on some arm64 kernels); correctness
//! does not depend on it, only the page-separation argument above.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use memmap2::{Mmap, MmapMut, MmapOptions};

use crate::error::JournalError;
use crate::frame::{FRAME_HEADER_BYTES, frame_bytes, le_u32, le_u64};
use crate::watermark;

/// Magic at the start of every segment.
pub const SEGMENT_MAGIC: [u8; 8] = *b"KUKUJNL\0";
/// Format version written by this build; the only one it reads.
pub const SEGMENT_FORMAT_VERSION: u32 = 1;
/// Size of the header record at the start of the header page.
pub const SEGMENT_HEADER_BYTES: usize = 64;
/// Offset of the watermark slots: page 1.
pub const SEGMENT_WATERMARK_AT: usize = 4096;
/// Offset of the first frame: after the header page and the watermark page.
pub const SEGMENT_DATA_START: usize = 8192;
/// Segment sizes are multiples of this.
pub const SEGMENT_ALIGN_BYTES: u64 = 4096;
/// Smallest segment: the two header pages plus one page of frames.
pub const SEGMENT_BYTES_MIN: u64 = 3 * SEGMENT_ALIGN_BYTES;
/// Largest segment (bounds recovery's per-segment scan and address-space use).
pub const SEGMENT_BYTES_MAX: u64 = 1 << 32;
const SEGMENT_FILE_SUFFIX: &str = ".seg";
const SEGMENT_FILE_DIGITS: usize = 20;

/// The decoded header record of a segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentHeader {
    pub engine_logic_version: u32,
    pub epoch: u64,
    pub capacities_hash: u64,
    pub first_seq: u64,
    pub segment_bytes: u64,
    pub frame_payload_max: u32,
}

impl SegmentHeader {
    pub(crate) fn encode(&self) -> [u8; SEGMENT_HEADER_BYTES] {
        let mut bytes = [0u8; SEGMENT_HEADER_BYTES];
        bytes[0..8].copy_from_slice(&SEGMENT_MAGIC);
        bytes[8..12].copy_from_slice(&SEGMENT_FORMAT_VERSION.to_le_bytes());
        bytes[12..16].copy_from_slice(&self.engine_logic_version.to_le_bytes());
        bytes[16..24].copy_from_slice(&self.epoch.to_le_bytes());
        bytes[24..32].copy_from_slice(&self.capacities_hash.to_le_bytes());
        bytes[32..40].copy_from_slice(&self.first_seq.to_le_bytes());
        bytes[40..48].copy_from_slice(&self.segment_bytes.to_le_bytes());
        bytes[48..52].copy_from_slice(&self.frame_payload_max.to_le_bytes());
        let crc = crc32c::crc32c(&bytes[0..60]);
        bytes[60..64].copy_from_slice(&crc.to_le_bytes());
        bytes
    }

    /// Decodes and validates a header; `name_seq` is the seq in the file name.
    pub(crate) fn decode(bytes: &[u8], name_seq: u64) -> Result<Self, &'static str> {
        if bytes.len() < SEGMENT_HEADER_BYTES {
            return Err("file shorter than the header");
        }
        if le_u32(bytes, 60) != crc32c::crc32c(&bytes[0..60]) {
            return Err("header CRC mismatch");
        }
        if bytes[0..8] != SEGMENT_MAGIC {
            return Err("bad magic");
        }
        if le_u32(bytes, 8) != SEGMENT_FORMAT_VERSION {
            return Err("unsupported format version");
        }
        let header = SegmentHeader {
            engine_logic_version: le_u32(bytes, 12),
            epoch: le_u64(bytes, 16),
            capacities_hash: le_u64(bytes, 24),
            first_seq: le_u64(bytes, 32),
            segment_bytes: le_u64(bytes, 40),
            frame_payload_max: le_u32(bytes, 48),
        };
        if header.first_seq != name_seq {
            return Err("first seq differs from the file name");
        }
        check_sizes(header.segment_bytes, header.frame_payload_max)?;
        Ok(header)
    }
}

/// Checks a segment size and payload limit pair (config and headers alike).
pub(crate) fn check_sizes(segment_bytes: u64, frame_payload_max: u32) -> Result<(), &'static str> {
    if !(SEGMENT_BYTES_MIN..=SEGMENT_BYTES_MAX).contains(&segment_bytes) {
        return Err("segment_bytes out of range");
    }
    if !segment_bytes.is_multiple_of(SEGMENT_ALIGN_BYTES) {
        return Err("segment_bytes is not a multiple of 4096");
    }
    let frame_bytes_max = frame_bytes(frame_payload_max as usize) as u64;
    if frame_payload_max == 0 || frame_bytes_max > segment_bytes - SEGMENT_DATA_START as u64 {
        return Err("frame_payload_max is zero or a largest frame does not fit in a segment");
    }
    Ok(())
}

/// `00000000000000000001.seg` for first seq 1.
pub fn segment_file_name(first_seq: u64) -> String {
    format!(
        "{first_seq:0width$}{SEGMENT_FILE_SUFFIX}",
        width = SEGMENT_FILE_DIGITS
    )
}

/// The first seq encoded in a segment file name, if `name` is one.
pub fn parse_segment_file_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(SEGMENT_FILE_SUFFIX)?;
    if digits.len() != SEGMENT_FILE_DIGITS || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // Seqs are dense from 1: a segment named 0 is not one of ours.
    digits.parse().ok().filter(|&seq| seq >= 1)
}

/// A segment file found in a journal directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SegmentFile {
    pub path: PathBuf,
    pub name_seq: u64,
}

/// Segment files of `dir`, ascending by first seq. Other files are ignored.
pub(crate) fn list_segments(dir: &Path) -> Result<Vec<SegmentFile>, JournalError> {
    let mut segments = Vec::new();
    for entry in fs::read_dir(dir).map_err(JournalError::io("read directory", dir))? {
        let entry = entry.map_err(JournalError::io("read directory", dir))?;
        let Some(name_seq) = entry.file_name().to_str().and_then(parse_segment_file_name) else {
            continue;
        };
        let file_type = entry
            .file_type()
            .map_err(JournalError::io("stat", entry.path()))?;
        if file_type.is_file() {
            segments.push(SegmentFile {
                path: entry.path(),
                name_seq,
            });
        }
    }
    segments.sort_by_key(|s| s.name_seq);
    Ok(segments)
}

/// The header pages of a segment file as stored (zero-extended if the file is shorter), and
/// the file's length.
pub(crate) struct HeaderPages {
    pub bytes: Box<[u8; SEGMENT_DATA_START]>,
    pub file_bytes: u64,
}

pub(crate) fn read_header_pages(path: &Path) -> Result<HeaderPages, JournalError> {
    let mut file = File::open(path).map_err(JournalError::io("open", path))?;
    let file_bytes = file
        .metadata()
        .map_err(JournalError::io("stat", path))?
        .len();
    let mut bytes = Box::new([0u8; SEGMENT_DATA_START]);
    let mut filled = 0;
    while filled < SEGMENT_DATA_START {
        match file.read(&mut bytes[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(JournalError::io("read", path)(e)),
        }
    }
    Ok(HeaderPages { bytes, file_bytes })
}

/// Maps the first `len` bytes of a segment file read-only (`None` when `len` is 0).
pub(crate) fn map_read(path: &Path, len: usize) -> Result<Option<Mmap>, JournalError> {
    if len == 0 {
        return Ok(None);
    }
    let file = File::open(path).map_err(JournalError::io("open", path))?;
    // SAFETY: the mapping is read-only and covers at most the file's current length (callers
    // pass min(file length, segment_bytes)); this crate never truncates a segment it or a
    // reader may have mapped (recovery zeroes bytes instead, and removes whole files, which
    // keeps existing mappings valid). Another process truncating the file would be a SIGBUS,
    // which the journal's lock file and the documented ownership rules exclude.
    let map = unsafe { MmapOptions::new().len(len).map(&file) };
    map.map(Some).map_err(JournalError::io("mmap", path))
}

/// Opens an existing segment for writing, extends it to `segment_bytes` if it was cut short,
/// and maps it read-write.
pub(crate) fn map_write(path: &Path, segment_bytes: u64) -> Result<MmapMut, JournalError> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(JournalError::io("open", path))?;
    let file_bytes = file
        .metadata()
        .map_err(JournalError::io("stat", path))?
        .len();
    if file_bytes < segment_bytes {
        preallocate(&file, path, segment_bytes)?;
    }
    map_mut(&file, path, segment_bytes)
}

fn map_mut(file: &File, path: &Path, segment_bytes: u64) -> Result<MmapMut, JournalError> {
    let len = usize::try_from(segment_bytes).map_err(|_| JournalError::InvalidConfig {
        reason: format!("segment_bytes {segment_bytes} does not fit this platform's address space"),
    })?;
    // SAFETY: the file is at least `segment_bytes` long (preallocated just before), the journal
    // holds the directory's exclusive lock so no other writer maps or modifies it, and this
    // crate never truncates a mapped segment. The mapping is MAP_SHARED, so stores reach the
    // page cache and msync makes them durable.
    let map = unsafe { MmapOptions::new().len(len).map_mut(file) };
    map.map_err(JournalError::io("mmap", path))
}

/// The file a journal prepares its next segment in (see [`prepare_segment_file`]); never a
/// segment name, so listing and recovery ignore it.
pub const NEXT_SEGMENT_FILE_NAME: &str = "next-segment.tmp";

/// Writes a zero-filled file of `segment_bytes` at `dir/NEXT_SEGMENT_FILE_NAME` (replacing a
/// leftover one), ready to become the next segment.
///
/// Written zeros rather than `fallocate`'s unwritten extents: the first store through the
/// mapping to each page of an unwritten extent is a page fault that allocates, zeroes and
/// converts it, which cost the appending thread 80-100 ns per command (docs/benchmarks.md
/// §3); writing the zeros with `write(2)` costs about a seventh of that per byte, and can be
/// done before the segment is needed. Space is still reserved up front (a full disk fails
/// here, not as a SIGBUS on a store).
pub(crate) fn prepare_segment_file(dir: &Path, segment_bytes: u64) -> Result<File, JournalError> {
    let path = dir.join(NEXT_SEGMENT_FILE_NAME);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)
        .map_err(JournalError::io("create segment", &path))?;
    crate::failpoint::no_space("journal::segment_enospc")
        .map_err(JournalError::io("zero-fill", &path))?;
    zero_fill(&file, &path, segment_bytes)?;
    Ok(file)
}

/// Creates a new segment file (zero-filled, see [`prepare_segment_file`]), maps it, writes
/// its header record and the current watermark into slot 0. The caller syncs (or not)
/// according to its durability.
pub(crate) fn create_segment(
    dir: &Path,
    header: &SegmentHeader,
    watermark_seq: u64,
) -> Result<(PathBuf, MmapMut), JournalError> {
    let file = prepare_segment_file(dir, header.segment_bytes)?;
    install_segment(dir, file, header, watermark_seq)
}

/// Makes a prepared file (zero-filled, `header.segment_bytes` long, at
/// `dir/NEXT_SEGMENT_FILE_NAME`) the segment starting at `header.first_seq`: renames it, maps
/// it, writes its header record and the current watermark into slot 0.
pub(crate) fn install_segment(
    dir: &Path,
    file: File,
    header: &SegmentHeader,
    watermark_seq: u64,
) -> Result<(PathBuf, MmapMut), JournalError> {
    let path = dir.join(segment_file_name(header.first_seq));
    if path.exists() {
        return Err(JournalError::io("create segment", &path)(io::Error::from(
            io::ErrorKind::AlreadyExists,
        )));
    }
    fs::rename(dir.join(NEXT_SEGMENT_FILE_NAME), &path)
        .map_err(JournalError::io("rename segment", &path))?;
    let mut map = map_mut(&file, &path, header.segment_bytes)?;
    map[..SEGMENT_HEADER_BYTES].copy_from_slice(&header.encode());
    watermark::write_slot(&mut map[SEGMENT_WATERMARK_AT..], 0, watermark_seq);
    debug_assert!(
        map[SEGMENT_DATA_START..SEGMENT_DATA_START + FRAME_HEADER_BYTES]
            .iter()
            .all(|&b| b == 0)
    );
    Ok((path, map))
}

/// Extends `file` to `len` bytes of allocated, zero-reading blocks.
///
/// `fallocate` allocates blocks without writing them (unwritten extents read as zero): no
/// zero-writing I/O, and a later store through the mapping cannot hit ENOSPC (which, through a
/// mapping, would be a SIGBUS rather than an error). Where it is unsupported, write zeros.
pub(crate) fn preallocate(file: &File, path: &Path, len: u64) -> Result<(), JournalError> {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        let len_off = libc::off_t::try_from(len).map_err(|_| JournalError::InvalidConfig {
            reason: format!("segment_bytes {len} does not fit off_t"),
        })?;
        loop {
            // SAFETY: `file` is an open, writable descriptor borrowed for the duration of the
            // call; fallocate only reads its integer arguments.
            let rc = unsafe { libc::fallocate(file.as_raw_fd(), 0, 0, len_off) };
            if rc == 0 {
                return Ok(());
            }
            let err = io::Error::last_os_error();
            match err.raw_os_error() {
                Some(libc::EINTR) => continue,
                Some(libc::EOPNOTSUPP) | Some(libc::ENOSYS) => break,
                _ => return Err(JournalError::io("fallocate", path)(err)),
            }
        }
    }
    zero_fill(file, path, len)
}

fn zero_fill(mut file: &File, path: &Path, len: u64) -> Result<(), JournalError> {
    let chunk = [0u8; 64 * 1024];
    let start = file
        .metadata()
        .map_err(JournalError::io("stat", path))?
        .len();
    let mut written = start;
    file.seek(SeekFrom::Start(start))
        .map_err(JournalError::io("seek", path))?;
    while written < len {
        let n = chunk.len().min((len - written) as usize);
        file.write_all(&chunk[..n])
            .map_err(JournalError::io("zero-fill", path))?;
        written += n as u64;
    }
    Ok(())
}

/// fsyncs a directory so file creations, renames and removals in it are durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), JournalError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(JournalError::io("fsync directory", dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> SegmentHeader {
        SegmentHeader {
            engine_logic_version: 3,
            epoch: 2,
            capacities_hash: 0xdead_beef,
            first_seq: 41,
            segment_bytes: 1 << 20,
            frame_payload_max: 4096,
        }
    }

    #[test]
    fn header_round_trips_and_rejects_a_different_name() {
        let bytes = header().encode();
        assert_eq!(SegmentHeader::decode(&bytes, 41), Ok(header()));
        assert!(SegmentHeader::decode(&bytes, 42).is_err());
    }

    #[test]
    fn header_detects_every_single_bit_flip() {
        let bytes = header().encode();
        for bit in 0..SEGMENT_HEADER_BYTES * 8 {
            let mut damaged = bytes;
            damaged[bit / 8] ^= 1 << (bit % 8);
            assert!(SegmentHeader::decode(&damaged, 41).is_err(), "bit {bit}");
        }
    }

    #[test]
    fn segment_names_have_twenty_digits() {
        assert_eq!(segment_file_name(1), "00000000000000000001.seg");
        assert_eq!(parse_segment_file_name("00000000000000000001.seg"), Some(1));
        assert_eq!(parse_segment_file_name("0000000000000000001.seg"), None);
        assert_eq!(parse_segment_file_name("99999999999999999999.seg"), None);
        assert_eq!(parse_segment_file_name("0000000000000000000a.seg"), None);
        assert_eq!(
            parse_segment_file_name("00000000000000000001.seg.tmp"),
            None
        );
        assert_eq!(parse_segment_file_name("00000000000000000000.seg"), None);
    }
}
