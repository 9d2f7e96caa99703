//! The recorded market-data file (format version 1): what a source delivered, quotes and
//! ticks with their source timestamps, one JSON object per line (docs/market-data.md, "File
//! format"; the choice is argued in docs/adr/ADR-022-market-data-outside-the-core.md).
//!
//! ```text
//! {"format":"kuku-market-data","version":1,"source":"sim"}
//! {"kind":"tick","symbol":"005930","ts_ns":1772668800000000000,"price":71100,"qty":30,"aggressor":"Buy"}
//! {"kind":"quote","symbol":"005930","ts_ns":1772668800000000000,"bids":[[71000,300]],"asks":[[71100,470]],"last_trade":{"price":71100,"qty":30,"ts_ns":1772668800000000000}}
//! ```
//!
//! **Invariants**: the first line is the header; every later line is one [`MarketEvent`] and
//! ends with `\n`; timestamps never go backwards from one line to the next (the recorder
//! clamps a source clock that stepped back). A reader validates every record
//! ([`MarketEvent::validate`]) and the order, and names the line of the first bad one; a last
//! line without its `\n` is a write torn by a crash and is ignored (counted in
//! [`RecordReader::torn_tail`]).
//!
//! **Performance**: about 300 bytes per ten-level quote; the recorder writes through a
//! buffer and flushes at most every [`FLUSH_EVERY`] records and when dropped.
//!
//! **Known limitations**: no checksum per line: a corrupted digit that still makes a valid
//! record is not detected (the file is an input like any feed, checked for validity, not
//! authenticity).

use crate::model::{MarketEvent, TimestampNs};
use crate::source::SourceError;
use serde::{Deserialize, Serialize};
use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

/// The `format` field of the header.
pub const FORMAT_NAME: &str = "kuku-market-data";
/// The version this build writes and reads.
pub const FORMAT_VERSION: u32 = 1;
/// The recorder flushes after this many records.
pub const FLUSH_EVERY: u64 = 256;
/// The longest line a reader accepts (a ten-level quote is about 300 bytes).
pub const LINE_BYTES_MAX: usize = 4_096;

/// The first line of a file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    pub format: String,
    pub version: u32,
    /// The source that was recorded (`sim`, `replay`, a provider).
    pub source: String,
}

/// Writes what a source delivered.
pub struct Recorder {
    path: PathBuf,
    out: BufWriter<std::fs::File>,
    last_ts: TimestampNs,
    records: u64,
}

impl Recorder {
    /// Creates (or truncates) `path` and writes the header.
    pub fn create(path: &Path, source: &str) -> Result<Recorder, SourceError> {
        let io = |source| SourceError::Io {
            path: path.display().to_string(),
            source,
        };
        let file = std::fs::File::create(path).map_err(io)?;
        let mut recorder = Recorder {
            path: path.to_owned(),
            out: BufWriter::new(file),
            last_ts: TimestampNs(0),
            records: 0,
        };
        let header = Header {
            format: FORMAT_NAME.to_owned(),
            version: FORMAT_VERSION,
            source: source.to_owned(),
        };
        let line = serde_json::to_string(&header).expect("a header always serializes");
        writeln!(recorder.out, "{line}").map_err(io)?;
        recorder.out.flush().map_err(io)?;
        Ok(recorder)
    }

    /// Appends one event (its timestamp clamped to the previous record's, if it is earlier).
    pub fn write(&mut self, event: &MarketEvent) -> Result<(), SourceError> {
        let mut event = *event;
        let ts = event.ts_ns().max(self.last_ts);
        match &mut event {
            MarketEvent::Quote(q) => q.ts_ns = ts,
            MarketEvent::Tick(t) => t.ts_ns = ts,
        }
        self.last_ts = ts;
        let line = serde_json::to_string(&event).expect("an event always serializes");
        let path = &self.path;
        let io = |source| SourceError::Io {
            path: path.display().to_string(),
            source,
        };
        writeln!(self.out, "{line}").map_err(io)?;
        self.records += 1;
        if self.records.is_multiple_of(FLUSH_EVERY) {
            self.out.flush().map_err(io)?;
        }
        Ok(())
    }

    pub fn flush(&mut self) -> Result<(), SourceError> {
        self.out.flush().map_err(|source| SourceError::Io {
            path: self.path.display().to_string(),
            source,
        })
    }

    pub fn records(&self) -> u64 {
        self.records
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        let _ = self.out.flush();
    }
}

/// Reads a recorded file record by record.
pub struct RecordReader {
    path: String,
    input: Box<dyn BufRead + Send>,
    line: u64,
    last_ts: TimestampNs,
    torn_tail: bool,
    buf: String,
}

impl RecordReader {
    pub fn open(path: &Path) -> Result<RecordReader, SourceError> {
        let file = std::fs::File::open(path).map_err(|source| SourceError::Io {
            path: path.display().to_string(),
            source,
        })?;
        RecordReader::new(path.display().to_string(), Box::new(BufReader::new(file)))
    }

    /// Reads from any buffered input (`name` appears in errors); checks the header.
    pub fn new(name: String, input: Box<dyn BufRead + Send>) -> Result<RecordReader, SourceError> {
        let mut reader = RecordReader {
            path: name,
            input,
            line: 0,
            last_ts: TimestampNs(0),
            torn_tail: false,
            buf: String::new(),
        };
        if !reader.next_line()? {
            return Err(reader.bad("the file is empty: expected a header line".into()));
        }
        let header: Header = serde_json::from_str(reader.buf.trim_end())
            .map_err(|e| reader.bad(format!("not a market-data header: {e}")))?;
        if header.format != FORMAT_NAME {
            return Err(reader.bad(format!(
                "the format is {:?}, not {FORMAT_NAME:?}",
                header.format
            )));
        }
        if header.version != FORMAT_VERSION {
            return Err(reader.bad(format!(
                "format version {} is not supported (this build reads version {FORMAT_VERSION})",
                header.version
            )));
        }
        Ok(reader)
    }

    /// The next record, `None` at the end (or at a torn last line).
    pub fn next_event(&mut self) -> Result<Option<MarketEvent>, SourceError> {
        if !self.next_line()? {
            return Ok(None);
        }
        let event: MarketEvent = serde_json::from_str(self.buf.trim_end())
            .map_err(|e| self.bad(format!("not a quote or tick record: {e}")))?;
        event.validate().map_err(|e| self.bad(e.to_string()))?;
        if event.ts_ns() < self.last_ts {
            return Err(self.bad(format!(
                "the timestamp {} is earlier than the previous record's {}",
                event.ts_ns().0,
                self.last_ts.0
            )));
        }
        self.last_ts = event.ts_ns();
        Ok(Some(event))
    }

    /// True if the file ended in a line without its `\n` (ignored).
    pub fn torn_tail(&self) -> bool {
        self.torn_tail
    }

    /// Lines read so far (the header is line 1).
    pub fn line(&self) -> u64 {
        self.line
    }

    /// Reads the next non-empty line into `buf`; false at the end or at a torn last line.
    fn next_line(&mut self) -> Result<bool, SourceError> {
        loop {
            self.buf.clear();
            let read = (&mut self.input)
                .take(LINE_BYTES_MAX as u64 + 1)
                .read_line(&mut self.buf)
                .map_err(|source| SourceError::Io {
                    path: self.path.clone(),
                    source,
                })?;
            if read == 0 {
                return Ok(false);
            }
            self.line += 1;
            if !self.buf.ends_with('\n') {
                if read > LINE_BYTES_MAX {
                    return Err(self.bad(format!("longer than {LINE_BYTES_MAX} bytes")));
                }
                self.torn_tail = true;
                return Ok(false);
            }
            if !self.buf.trim().is_empty() {
                return Ok(true);
            }
        }
    }

    fn bad(&self, message: String) -> SourceError {
        SourceError::BadRecord {
            path: self.path.clone(),
            line: self.line,
            message,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Level, Levels, Quote, Tick};
    use kuku_engine::{Price, Qty, Side, SymbolCode};

    fn reader(text: &str) -> Result<RecordReader, SourceError> {
        RecordReader::new(
            "test".into(),
            Box::new(std::io::Cursor::new(text.as_bytes().to_vec())),
        )
    }

    fn events() -> Vec<MarketEvent> {
        let symbol = SymbolCode::new("005930").expect("valid");
        vec![
            MarketEvent::Tick(Tick {
                symbol,
                ts_ns: TimestampNs(5),
                price: Price(71_100),
                qty: Qty(30),
                aggressor: Side::Buy,
            }),
            MarketEvent::Quote(Quote {
                symbol,
                ts_ns: TimestampNs(5),
                bids: Levels::from_slice(&[Level::new(71_000, 300)]).expect("one"),
                asks: Levels::from_slice(&[Level::new(71_100, 470)]).expect("one"),
                last_trade: None,
            }),
        ]
    }

    #[test]
    fn what_the_recorder_writes_the_reader_reads_back() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let path = dir.path().join("md.jsonl");
        let mut recorder = Recorder::create(&path, "sim").expect("created");
        for e in events() {
            recorder.write(&e).expect("written");
        }
        drop(recorder);
        let mut reader = RecordReader::open(&path).expect("opened");
        let mut back = Vec::new();
        while let Some(e) = reader.next_event().expect("valid") {
            back.push(e);
        }
        assert_eq!(back, events());
        assert!(!reader.torn_tail());
    }

    #[test]
    fn a_torn_last_line_is_ignored_and_reported() {
        let header = r#"{"format":"kuku-market-data","version":1,"source":"sim"}"#;
        let tick = serde_json::to_string(&events()[0]).expect("serializes");
        let mut r = reader(&format!("{header}\n{tick}\n{}", &tick[..20])).expect("header");
        assert!(r.next_event().expect("valid").is_some());
        assert!(r.next_event().expect("torn: the end").is_none());
        assert!(r.torn_tail());
    }

    #[test]
    fn bad_headers_records_and_order_name_their_line() {
        assert!(matches!(
            reader(""),
            Err(SourceError::BadRecord { line: 0, .. })
        ));
        let v2 = r#"{"format":"kuku-market-data","version":2,"source":"sim"}"#;
        let e = reader(&format!("{v2}\n"))
            .err()
            .expect("refused")
            .to_string();
        assert!(e.contains("version 2"), "{e}");
        let header = r#"{"format":"kuku-market-data","version":1,"source":"sim"}"#;
        let crossed =
            r#"{"kind":"quote","symbol":"005930","ts_ns":1,"bids":[[200,1]],"asks":[[100,1]]}"#;
        let mut r = reader(&format!("{header}\n{crossed}\n")).expect("header");
        let e = r.next_event().expect_err("crossed");
        assert!(matches!(e, SourceError::BadRecord { line: 2, .. }), "{e}");
        let later =
            r#"{"kind":"tick","symbol":"005930","ts_ns":9,"price":100,"qty":1,"aggressor":"Buy"}"#;
        let earlier =
            r#"{"kind":"tick","symbol":"005930","ts_ns":8,"price":100,"qty":1,"aggressor":"Buy"}"#;
        let mut r = reader(&format!("{header}\n{later}\n\n{earlier}\n")).expect("header");
        assert!(r.next_event().expect("valid").is_some());
        let e = r.next_event().expect_err("backwards");
        assert!(matches!(e, SourceError::BadRecord { line: 4, .. }), "{e}");
        let long = format!("{header}\n{}\n", "x".repeat(LINE_BYTES_MAX + 10));
        assert!(reader(&long).expect("header").next_event().is_err());
        let negative =
            r#"{"kind":"tick","symbol":"005930","ts_ns":-1,"price":100,"qty":1,"aggressor":"Buy"}"#;
        assert!(
            reader(&format!("{header}\n{negative}\n"))
                .expect("header")
                .next_event()
                .is_err()
        );
    }
}
