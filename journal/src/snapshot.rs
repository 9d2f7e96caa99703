//! [`SnapshotStore`]: engine snapshots as single files in `<journal dir>/snapshots/`, written
//! atomically and verified on load.
//!
//! ```text
//! <seq, 20 digits>.snap
//!   offset size field
//!        0    8 magic "KUKUSNP\0"
//!        8    4 format version (u32 LE, currently 1)
//!       12    4 engine-logic version (u32 LE)
//!       16    8 seq (u64 LE): the snapshot reflects every frame up to and including it
//!       24    8 state hash (u64 LE)
//!       32    8 capacities hash (u64 LE)
//!       40    8 payload length (u64 LE)
//!       48    n payload
//!     48+n    4 crc32c of bytes 0..48+n
//! ```
//!
//! Writing: a temporary file `.<name>.tmp`, fsync, rename over the final name, fsync the
//! directory. A crash leaves either the old set of snapshots or the new one, plus at worst a
//! stale temporary file that listing ignores and `prune` removes.
//!
//! **Invariants**: a file with the final name is complete (it was renamed only after its fsync);
//! a snapshot is returned only if its CRC, sizes and name agree.
//!
//! **Performance**: a snapshot is read whole into memory to verify it (its size comes from the
//! file system, never from the length field, so a corrupt header cannot cause a huge
//! allocation). `latest_valid` reads newest first and stops at the first valid file.
//!
//! **Known limitations**: payloads are held in memory whole (no streaming); the store does not
//! check the meta against the caller's build: compare [`SnapshotMeta`] with the journal's
//! [`crate::JournalMeta`] before restoring.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{JournalError, SnapshotFault};
use crate::failpoint;
use crate::frame::{le_u32, le_u64};
use crate::segment::sync_dir;

const SNAPSHOT_MAGIC: [u8; 8] = *b"KUKUSNP\0";
const SNAPSHOT_FORMAT_VERSION: u32 = 1;
const SNAPSHOT_HEADER_BYTES: usize = 48;
const SNAPSHOT_CRC_BYTES: usize = 4;
const SNAPSHOT_FILE_SUFFIX: &str = ".snap";
const SNAPSHOT_FILE_DIGITS: usize = 20;
const TEMP_PREFIX: &str = ".";
const TEMP_SUFFIX: &str = ".tmp";

/// What a snapshot describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SnapshotMeta {
    /// The snapshot reflects every journal frame up to and including this seq.
    pub seq: u64,
    pub state_hash: u64,
    pub engine_logic_version: u32,
    pub capacities_hash: u64,
}

/// A verified snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub path: PathBuf,
    pub meta: SnapshotMeta,
    pub payload: Vec<u8>,
}

/// A snapshot file as listed (not verified).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotFile {
    pub path: PathBuf,
    pub seq: u64,
    pub file_bytes: u64,
}

/// A snapshot file `latest_valid` passed over, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedSnapshot {
    pub path: PathBuf,
    pub reason: SnapshotFault,
}

/// The outcome of [`SnapshotStore::latest_valid`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LatestSnapshot {
    /// The newest valid snapshot; `None` if the store is empty or holds only corrupt files
    /// (then recovery replays the journal from its first seq).
    pub snapshot: Option<Snapshot>,
    /// Newer files that failed verification, newest first.
    pub skipped: Vec<SkippedSnapshot>,
}

/// The snapshot directory of a journal.
#[derive(Debug, Clone)]
pub struct SnapshotStore {
    dir: PathBuf,
}

impl SnapshotStore {
    /// Name of the snapshot directory inside the journal directory.
    pub const DIR_NAME: &'static str = "snapshots";

    /// Opens (creating if needed) `<journal_dir>/snapshots`.
    pub fn create(journal_dir: impl AsRef<Path>) -> Result<SnapshotStore, JournalError> {
        let journal_dir = journal_dir.as_ref();
        if !journal_dir.is_dir() {
            return Err(JournalError::MissingDirectory {
                path: journal_dir.to_owned(),
            });
        }
        let dir = journal_dir.join(Self::DIR_NAME);
        if !dir.is_dir() {
            fs::create_dir(&dir).map_err(JournalError::io("create directory", &dir))?;
            sync_dir(journal_dir)?;
        }
        Ok(SnapshotStore { dir })
    }

    /// Opens an existing `<journal_dir>/snapshots`.
    pub fn open(journal_dir: impl AsRef<Path>) -> Result<SnapshotStore, JournalError> {
        let dir = journal_dir.as_ref().join(Self::DIR_NAME);
        if !dir.is_dir() {
            return Err(JournalError::MissingDirectory { path: dir });
        }
        Ok(SnapshotStore { dir })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Writes a snapshot atomically (replacing one with the same seq) and returns its path.
    pub fn write(&self, meta: &SnapshotMeta, payload: &[u8]) -> Result<PathBuf, JournalError> {
        let name = snapshot_file_name(meta.seq);
        let path = self.dir.join(&name);
        let temp = self.dir.join(format!("{TEMP_PREFIX}{name}{TEMP_SUFFIX}"));
        let header = encode_header(meta, payload.len() as u64);
        let crc = crc32c::crc32c_append(crc32c::crc32c(&header), payload);
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&temp)
            .map_err(JournalError::io("create", &temp))?;
        file.write_all(&header)
            .and_then(|()| file.write_all(payload))
            .and_then(|()| file.write_all(&crc.to_le_bytes()))
            .map_err(JournalError::io("write", &temp))?;
        file.sync_all().map_err(JournalError::io("fsync", &temp))?;
        drop(file);
        failpoint::hit("snapshot::before_rename");
        fs::rename(&temp, &path).map_err(JournalError::io("rename", &temp))?;
        sync_dir(&self.dir)?;
        Ok(path)
    }

    /// Reads and verifies one snapshot file.
    pub fn read(&self, path: impl AsRef<Path>) -> Result<Snapshot, JournalError> {
        let path = path.as_ref();
        let bytes = fs::read(path).map_err(JournalError::io("read", path))?;
        let name_seq = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(parse_snapshot_file_name);
        match decode(&bytes, name_seq) {
            Ok(meta) => {
                let mut payload = bytes;
                payload.truncate(payload.len() - SNAPSHOT_CRC_BYTES);
                payload.drain(..SNAPSHOT_HEADER_BYTES);
                Ok(Snapshot {
                    path: path.to_owned(),
                    meta,
                    payload,
                })
            }
            Err(reason) => Err(JournalError::SnapshotCorrupt {
                path: path.to_owned(),
                reason,
            }),
        }
    }

    /// Snapshot files, oldest first (by the seq in their names; not verified).
    pub fn list(&self) -> Result<Vec<SnapshotFile>, JournalError> {
        let mut files = Vec::new();
        for entry in
            fs::read_dir(&self.dir).map_err(JournalError::io("read directory", &self.dir))?
        {
            let entry = entry.map_err(JournalError::io("read directory", &self.dir))?;
            let Some(seq) = entry
                .file_name()
                .to_str()
                .and_then(parse_snapshot_file_name)
            else {
                continue;
            };
            let metadata = entry
                .metadata()
                .map_err(JournalError::io("stat", entry.path()))?;
            if metadata.is_file() {
                files.push(SnapshotFile {
                    path: entry.path(),
                    seq,
                    file_bytes: metadata.len(),
                });
            }
        }
        files.sort_by_key(|f| f.seq);
        Ok(files)
    }

    /// The newest snapshot that verifies, falling back to older ones; corrupt newer files are
    /// reported in `skipped`. I/O errors other than corruption are returned as errors.
    pub fn latest_valid(&self) -> Result<LatestSnapshot, JournalError> {
        let mut skipped = Vec::new();
        for file in self.list()?.into_iter().rev() {
            match self.read(&file.path) {
                Ok(snapshot) => {
                    return Ok(LatestSnapshot {
                        snapshot: Some(snapshot),
                        skipped,
                    });
                }
                Err(JournalError::SnapshotCorrupt { path, reason }) => {
                    skipped.push(SkippedSnapshot { path, reason })
                }
                Err(other) => return Err(other),
            }
        }
        Ok(LatestSnapshot {
            snapshot: None,
            skipped,
        })
    }

    /// Keeps the newest `keep_valid` valid snapshots (and any file newer than the oldest of
    /// them), removes everything older and stale temporary files. Returns the removed paths.
    /// If fewer than `keep_valid` snapshots verify, nothing but temporary files is removed.
    pub fn prune(&self, keep_valid: usize) -> Result<Vec<PathBuf>, JournalError> {
        if keep_valid == 0 {
            return Err(JournalError::InvalidConfig {
                reason: "prune(keep_valid = 0) would delete every snapshot".to_owned(),
            });
        }
        let mut removed = self.remove_temp_files()?;
        let files = self.list()?;
        let mut valid_seen = 0;
        let mut oldest_kept = None;
        for (position, file) in files.iter().enumerate().rev() {
            match self.read(&file.path) {
                Ok(_) => valid_seen += 1,
                Err(JournalError::SnapshotCorrupt { .. }) => {}
                Err(other) => return Err(other),
            }
            if valid_seen == keep_valid {
                oldest_kept = Some(position);
                break;
            }
        }
        let Some(oldest_kept) = oldest_kept else {
            return Ok(removed);
        };
        for file in &files[..oldest_kept] {
            fs::remove_file(&file.path).map_err(JournalError::io("remove", &file.path))?;
            removed.push(file.path.clone());
        }
        if !removed.is_empty() {
            sync_dir(&self.dir)?;
        }
        Ok(removed)
    }

    fn remove_temp_files(&self) -> Result<Vec<PathBuf>, JournalError> {
        let mut removed = Vec::new();
        for entry in
            fs::read_dir(&self.dir).map_err(JournalError::io("read directory", &self.dir))?
        {
            let entry = entry.map_err(JournalError::io("read directory", &self.dir))?;
            let is_temp = entry
                .file_name()
                .to_str()
                .is_some_and(|n| n.starts_with(TEMP_PREFIX) && n.ends_with(TEMP_SUFFIX));
            if is_temp {
                fs::remove_file(entry.path()).map_err(JournalError::io("remove", entry.path()))?;
                removed.push(entry.path());
            }
        }
        Ok(removed)
    }
}

/// `00000000000000000042.snap` for seq 42.
pub fn snapshot_file_name(seq: u64) -> String {
    format!(
        "{seq:0width$}{SNAPSHOT_FILE_SUFFIX}",
        width = SNAPSHOT_FILE_DIGITS
    )
}

fn parse_snapshot_file_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(SNAPSHOT_FILE_SUFFIX)?;
    if digits.len() != SNAPSHOT_FILE_DIGITS || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

fn encode_header(meta: &SnapshotMeta, payload_len: u64) -> [u8; SNAPSHOT_HEADER_BYTES] {
    let mut header = [0u8; SNAPSHOT_HEADER_BYTES];
    header[0..8].copy_from_slice(&SNAPSHOT_MAGIC);
    header[8..12].copy_from_slice(&SNAPSHOT_FORMAT_VERSION.to_le_bytes());
    header[12..16].copy_from_slice(&meta.engine_logic_version.to_le_bytes());
    header[16..24].copy_from_slice(&meta.seq.to_le_bytes());
    header[24..32].copy_from_slice(&meta.state_hash.to_le_bytes());
    header[32..40].copy_from_slice(&meta.capacities_hash.to_le_bytes());
    header[40..48].copy_from_slice(&payload_len.to_le_bytes());
    header
}

/// Validates a whole snapshot file's bytes; `name_seq` is the seq in its file name.
fn decode(bytes: &[u8], name_seq: Option<u64>) -> Result<SnapshotMeta, SnapshotFault> {
    let file_bytes = bytes.len() as u64;
    if bytes.len() < SNAPSHOT_HEADER_BYTES + SNAPSHOT_CRC_BYTES {
        return Err(SnapshotFault::TooShort { file_bytes });
    }
    let crc_at = bytes.len() - SNAPSHOT_CRC_BYTES;
    let stored = le_u32(bytes, crc_at);
    let computed = crc32c::crc32c(&bytes[..crc_at]);
    if stored != computed {
        return Err(SnapshotFault::CrcMismatch { stored, computed });
    }
    if bytes[0..8] != SNAPSHOT_MAGIC {
        return Err(SnapshotFault::BadMagic);
    }
    let version = le_u32(bytes, 8);
    if version != SNAPSHOT_FORMAT_VERSION {
        return Err(SnapshotFault::UnsupportedVersion { version });
    }
    let payload_len = le_u64(bytes, 40);
    if payload_len != (crc_at - SNAPSHOT_HEADER_BYTES) as u64 {
        return Err(SnapshotFault::LenMismatch {
            payload_len,
            file_bytes,
        });
    }
    let meta = SnapshotMeta {
        seq: le_u64(bytes, 16),
        state_hash: le_u64(bytes, 24),
        engine_logic_version: le_u32(bytes, 12),
        capacities_hash: le_u64(bytes, 32),
    };
    if let Some(name_seq) = name_seq.filter(|&s| s != meta.seq) {
        return Err(SnapshotFault::NameMismatch {
            name_seq,
            header_seq: meta.seq,
        });
    }
    Ok(meta)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_layout_detects_every_single_bit_flip() {
        let meta = SnapshotMeta {
            seq: 9,
            state_hash: 1,
            engine_logic_version: 2,
            capacities_hash: 3,
        };
        let mut bytes = encode_header(&meta, 5).to_vec();
        bytes.extend_from_slice(b"state");
        let crc = crc32c::crc32c(&bytes);
        bytes.extend_from_slice(&crc.to_le_bytes());
        assert_eq!(decode(&bytes, Some(9)), Ok(meta));
        assert!(decode(&bytes, Some(10)).is_err());
        for bit in 0..bytes.len() * 8 {
            let mut damaged = bytes.clone();
            damaged[bit / 8] ^= 1 << (bit % 8);
            assert!(decode(&damaged, Some(9)).is_err(), "bit {bit}");
        }
    }
}
