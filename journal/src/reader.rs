//! [`JournalReader`]: read-only, verifying access to a journal directory, for replay tools,
//! `kuku-replay stats`/`verify` and the replicator.
//!
//! [`JournalReader::frames_from`] iterates `(seq, ts, payload)` across segments, checking
//! every frame's length, CRC, padding and seq continuity, and each segment's header and first
//! seq. The first problem is yielded as a [`JournalError::CorruptFrame`] and ends the
//! iteration. The reader never modifies anything: a torn tail that recovery would truncate is
//! reported like any other damage; compare its seq with [`JournalReader::durable_watermark`]
//! to tell the two apart.
//!
//! **Invariants**: yielded seqs are dense and increasing; every yielded payload passed its CRC.
//!
//! **Performance**: segments are mapped lazily, on first use, and stay mapped for the
//! reader's lifetime so payloads can borrow from them (`&'r [u8]`, no copy, no allocation per
//! frame). Mapping costs address space, not memory: the page cache backs it.
//!
//! **Known limitations**: meant for a journal no writer is modifying, or for frames up to a
//! seq the writer has committed: bytes that change under a live mapping are not something
//! Rust's `&[u8]` allows for. Tailing a live journal (the replicator) should get frames from
//! the writer's thread instead. `frames_from` verifies the frames it skips in its first
//! segment as well.

use std::cell::OnceCell;
use std::path::{Path, PathBuf};

use memmap2::Mmap;

use crate::error::{CorruptionKind, JournalError};
use crate::frame::{self, Decoded, Frame};
use crate::journal::JournalMeta;
use crate::recovery;
use crate::segment::{self, SEGMENT_DATA_START, SEGMENT_WATERMARK_AT, SegmentHeader};
use crate::watermark;

/// A read-only view of a journal directory.
#[derive(Debug)]
pub struct JournalReader {
    dir: PathBuf,
    segments: Vec<ReaderSegment>,
    seq_durable: u64,
}

#[derive(Debug)]
struct ReaderSegment {
    path: PathBuf,
    name_seq: u64,
    file_bytes: u64,
    header: Result<SegmentHeader, &'static str>,
    map: OnceCell<Option<Mmap>>,
}

/// Per-segment figures from [`JournalReader::stats`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentStats {
    pub path: PathBuf,
    pub first_seq: u64,
    pub frames: u64,
    /// Bytes up to the end of the last frame (header page included).
    pub bytes_used: u64,
    /// The file's size on disk.
    pub file_bytes: u64,
    pub epoch: u64,
}

/// Whole-journal figures from [`JournalReader::stats`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalStats {
    pub segments: Vec<SegmentStats>,
    pub frames: u64,
    pub payload_bytes: u64,
    /// `None` for a journal without frames.
    pub seq_first: Option<u64>,
    pub seq_last: Option<u64>,
    pub seq_durable: u64,
    pub file_bytes: u64,
}

impl JournalReader {
    /// Opens `dir` for reading; reads the watermark and every segment's header pages (not its
    /// frames).
    pub fn open(dir: impl AsRef<Path>) -> Result<JournalReader, JournalError> {
        let dir = dir.as_ref();
        if !dir.is_dir() {
            return Err(JournalError::MissingDirectory {
                path: dir.to_owned(),
            });
        }
        let files = segment::list_segments(dir)?;
        if files.is_empty() {
            return Err(JournalError::EmptyJournal {
                dir: dir.to_owned(),
            });
        }
        let mut segments = Vec::with_capacity(files.len());
        let mut seq_durable = watermark::read_watermark_file(dir)?;
        for file in files {
            let page = segment::read_header_pages(&file.path)?;
            let header = if page.file_bytes < segment::SEGMENT_HEADER_BYTES as u64 {
                Err("file shorter than the header")
            } else {
                SegmentHeader::decode(&page.bytes[..], file.name_seq)
            };
            seq_durable = seq_durable.max(watermark::newest(&page.bytes[SEGMENT_WATERMARK_AT..]).0);
            segments.push(ReaderSegment {
                path: file.path,
                name_seq: file.name_seq,
                file_bytes: page.file_bytes,
                header,
                map: OnceCell::new(),
            });
        }
        Ok(JournalReader {
            dir: dir.to_owned(),
            segments,
            seq_durable,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The durable watermark recorded on disk (watermark file and segments' watermark pages).
    pub fn durable_watermark(&self) -> u64 {
        self.seq_durable
    }

    /// The meta of the newest segment with a valid header.
    pub fn meta(&self) -> Option<JournalMeta> {
        self.segments
            .iter()
            .rev()
            .find_map(|s| s.header.ok())
            .map(|h| JournalMeta {
                engine_logic_version: h.engine_logic_version,
                capacities_hash: h.capacities_hash,
                epoch: h.epoch,
            })
    }

    /// Refuses the journal if any segment with a valid header was written by another
    /// engine-logic version or capacity configuration than `meta`'s (the epoch is not checked:
    /// a reader accepts every epoch). Segments with invalid headers are left to the frame scan,
    /// which reports them with their location.
    pub fn check_meta(&self, meta: &JournalMeta) -> Result<(), JournalError> {
        let any_epoch = JournalMeta {
            epoch: u64::MAX,
            ..*meta
        };
        for segment in &self.segments {
            if let Ok(header) = &segment.header {
                recovery::check_meta(&segment.path, header, &any_epoch)?;
            }
        }
        Ok(())
    }

    /// Segment files and their first seqs (from the file names), oldest first.
    pub fn segments(&self) -> impl Iterator<Item = (&Path, u64)> {
        self.segments.iter().map(|s| (s.path.as_path(), s.name_seq))
    }

    /// The first seq the journal holds (from the oldest segment's name).
    pub fn seq_first(&self) -> u64 {
        self.segments[0].name_seq
    }

    /// Every frame with seq >= `seq_from`, verified. A `seq_from` past the end yields nothing.
    pub fn frames_from(&self, seq_from: u64) -> Result<Frames<'_>, JournalError> {
        let seq_first = self.seq_first();
        if seq_from < seq_first {
            return Err(JournalError::SeqNotInJournal {
                requested: seq_from,
                seq_first,
            });
        }
        let index = self.segments.partition_point(|s| s.name_seq <= seq_from) - 1;
        Ok(Frames {
            reader: self,
            index,
            offset: 0,
            seq_expected: self.segments[index].name_seq,
            seq_from,
            done: false,
        })
    }

    /// Walks every frame and sums up; fails on the first damaged spot.
    pub fn stats(&self) -> Result<JournalStats, JournalError> {
        let mut segments: Vec<SegmentStats> = Vec::with_capacity(self.segments.len());
        let mut frames = self.frames_from(self.seq_first())?;
        let (mut count, mut payload_bytes) = (0, 0);
        let (mut seq_first, mut seq_last) = (None, None);
        while let Some(item) = frames.next() {
            let frame = item?;
            count += 1;
            payload_bytes += frame.payload.len() as u64;
            seq_first.get_or_insert(frame.seq);
            seq_last = Some(frame.seq);
            // Segments without frames still get a row, below; attribute this one.
            let segment = &self.segments[frames.index];
            if segments.last().is_none_or(|s| s.path != segment.path) {
                segments.push(self.empty_stats(frames.index));
            }
            if let Some(row) = segments.last_mut() {
                row.frames += 1;
                row.bytes_used = frames.offset as u64;
            }
        }
        for index in 0..self.segments.len() {
            if !segments.iter().any(|s| s.path == self.segments[index].path) {
                segments.push(self.empty_stats(index));
            }
        }
        segments.sort_by_key(|s| s.first_seq);
        Ok(JournalStats {
            file_bytes: segments.iter().map(|s| s.file_bytes).sum(),
            segments,
            frames: count,
            payload_bytes,
            seq_first,
            seq_last,
            seq_durable: self.seq_durable,
        })
    }

    fn empty_stats(&self, index: usize) -> SegmentStats {
        let segment = &self.segments[index];
        SegmentStats {
            path: segment.path.clone(),
            first_seq: segment.name_seq,
            frames: 0,
            bytes_used: SEGMENT_DATA_START as u64,
            file_bytes: segment.file_bytes,
            epoch: segment.header.map_or(0, |h| h.epoch),
        }
    }

    /// The mapped bytes of segment `index` (up to its file length and `segment_bytes`).
    fn data(&self, index: usize, header: &SegmentHeader) -> Result<&[u8], JournalError> {
        let segment = &self.segments[index];
        if let Some(map) = segment.map.get() {
            return Ok(map.as_deref().unwrap_or(&[]));
        }
        let len = segment.file_bytes.min(header.segment_bytes) as usize;
        let map = segment::map_read(&segment.path, len)?;
        Ok(segment.map.get_or_init(|| map).as_deref().unwrap_or(&[]))
    }
}

/// Iterator over verified frames; see [`JournalReader::frames_from`].
#[derive(Debug)]
pub struct Frames<'r> {
    reader: &'r JournalReader,
    index: usize,
    /// Offset of the next frame in segment `index`; 0 before the segment is entered.
    offset: usize,
    seq_expected: u64,
    seq_from: u64,
    done: bool,
}

impl<'r> Frames<'r> {
    fn fail(
        &mut self,
        offset: usize,
        kind: CorruptionKind,
    ) -> Option<Result<Frame<'r>, JournalError>> {
        self.done = true;
        Some(Err(JournalError::CorruptFrame {
            segment: self.reader.segments[self.index].path.clone(),
            offset: offset as u64,
            seq_expected: self.seq_expected,
            kind,
        }))
    }
}

impl<'r> Iterator for Frames<'r> {
    type Item = Result<Frame<'r>, JournalError>;

    fn next(&mut self) -> Option<Self::Item> {
        while !self.done {
            let segment = &self.reader.segments[self.index];
            let header = match segment.header {
                Ok(header) => header,
                Err(reason) => return self.fail(0, CorruptionKind::HeaderInvalid { reason }),
            };
            let data = match self.reader.data(self.index, &header) {
                Ok(data) => data,
                Err(error) => {
                    self.done = true;
                    return Some(Err(error));
                }
            };
            self.offset = self.offset.max(SEGMENT_DATA_START);
            let decoded = if self.offset < data.len() {
                frame::decode(
                    data,
                    self.offset,
                    self.seq_expected,
                    header.frame_payload_max,
                )
            } else {
                Ok(Decoded::End)
            };
            match decoded {
                Ok(Decoded::Frame { frame, next_offset }) => {
                    self.offset = next_offset;
                    self.seq_expected += 1;
                    if frame.seq >= self.seq_from {
                        return Some(Ok(frame));
                    }
                }
                Ok(Decoded::End) => {
                    let Some(next) = self.reader.segments.get(self.index + 1) else {
                        self.done = true;
                        return None;
                    };
                    if next.name_seq != self.seq_expected {
                        let kind = CorruptionKind::EndOfData {
                            next_segment_first_seq: Some(next.name_seq),
                        };
                        return self.fail(self.offset, kind);
                    }
                    self.index += 1;
                    self.offset = 0;
                }
                Err(kind) => {
                    let next = self.reader.segments.get(self.index + 1).map(|s| s.name_seq);
                    if !recovery::successor_continues(next, self.seq_expected) {
                        return self.fail(self.offset, kind);
                    }
                    self.index += 1;
                    self.offset = 0;
                }
            }
        }
        None
    }
}
