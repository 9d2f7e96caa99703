//! The recorded market-data file (format version 2): what a source delivered, quotes, ticks
//! and last prices with their source timestamps, one JSON object per line (docs/market-data.md,
//! "File format"; the choice is argued in docs/adr/ADR-022-market-data-outside-the-core.md).
//!
//! ```text
//! {"format":"kuku-market-data","version":2,"source":"kis"}
//! {"kind":"tick","symbol":"005930","ts_ns":1772668800000000000,"price":71100,"qty":30,"aggressor":"Buy"}
//! {"kind":"quote","symbol":"005930","ts_ns":1772668800000000000,"bids":[[71000,300]],"asks":[[71100,470]],"last_trade":{"price":71100,"qty":30,"ts_ns":1772668800000000000}}
//! {"kind":"last_price","symbol":"005930","ts_ns":1772668810000000000,"price":71200}
//! ```
//!
//! Version 2 added the `last_price` record; nothing else changed, so a reader reads version 1
//! files as they are (and refuses a `last_price` record in one: version 1 had none).
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
/// The version this build writes.
pub const FORMAT_VERSION: u32 = 2;
/// The oldest version this build reads (version 1: quotes and ticks only).
pub const FORMAT_VERSION_MIN: u32 = 1;
/// The first version with `last_price` records.
const VERSION_LAST_PRICE: u32 = 2;
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
        event.set_ts_ns(ts);
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
    /// The header's version (what records the file may hold).
    version: u32,
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
            version: FORMAT_VERSION,
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
        if !(FORMAT_VERSION_MIN..=FORMAT_VERSION).contains(&header.version) {
            return Err(reader.bad(format!(
                "format version {} is not supported (this build reads versions \
                 {FORMAT_VERSION_MIN} to {FORMAT_VERSION})",
                header.version
            )));
        }
        reader.version = header.version;
        Ok(reader)
    }

    /// The next record, `None` at the end (or at a torn last line).
    pub fn next_event(&mut self) -> Result<Option<MarketEvent>, SourceError> {
        if !self.next_line()? {
            return Ok(None);
        }
        let event: MarketEvent = serde_json::from_str(self.buf.trim_end())
            .map_err(|e| self.bad(format!("not a quote, tick or last_price record: {e}")))?;
        if matches!(event, MarketEvent::LastPrice(_)) && self.version < VERSION_LAST_PRICE {
            return Err(self.bad(format!(
                "a last_price record in a version {} file (they exist from version \
                 {VERSION_LAST_PRICE} on)",
                self.version
            )));
        }
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

    /// The format version the header names.
    pub fn version(&self) -> u32 {
        self.version
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
    use crate::model::{LastPrice, Level, Levels, Quote, Tick};
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
            MarketEvent::LastPrice(LastPrice {
                symbol,
                ts_ns: TimestampNs(6),
                price: Price(71_200),
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
    fn a_version_1_file_still_reads_and_may_not_hold_last_prices() {
        let v1 = r#"{"format":"kuku-market-data","version":1,"source":"sim"}"#;
        let lines: Vec<String> = events()
            .iter()
            .map(|e| serde_json::to_string(e).expect("serializes"))
            .collect();
        let (tick, quote, last) = (&lines[0], &lines[1], &lines[2]);
        let mut r = reader(&format!("{v1}\n{tick}\n{quote}\n")).expect("a version 1 header");
        assert_eq!(r.version(), 1);
        assert_eq!(r.next_event().expect("valid"), Some(events()[0]));
        assert_eq!(r.next_event().expect("valid"), Some(events()[1]));
        assert_eq!(r.next_event().expect("the end"), None);
        let mut r = reader(&format!("{v1}\n{last}\n")).expect("a version 1 header");
        let e = r.next_event().expect_err("no last prices in version 1");
        assert!(matches!(e, SourceError::BadRecord { line: 2, .. }), "{e}");
        assert!(e.to_string().contains("last_price"), "{e}");
    }

    #[test]
    fn a_last_price_record_is_validated_like_a_live_event() {
        let header = r#"{"format":"kuku-market-data","version":2,"source":"kis"}"#;
        for (price, ok) in [
            ("0", false),
            ("1", true),
            ("-5", false),
            ("1000000001", false),
        ] {
            let line =
                format!(r#"{{"kind":"last_price","symbol":"005930","ts_ns":1,"price":{price}}}"#);
            let got = reader(&format!("{header}\n{line}\n"))
                .expect("header")
                .next_event();
            assert_eq!(got.is_ok(), ok, "price {price}: {got:?}");
        }
        let no_price = r#"{"kind":"last_price","symbol":"005930","ts_ns":1}"#;
        assert!(
            reader(&format!("{header}\n{no_price}\n"))
                .expect("header")
                .next_event()
                .is_err()
        );
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
        for unknown in [0, 3, u32::MAX] {
            let header =
                format!(r#"{{"format":"kuku-market-data","version":{unknown},"source":"sim"}}"#);
            let e = reader(&format!("{header}\n"))
                .err()
                .expect("refused")
                .to_string();
            assert!(e.contains(&format!("version {unknown} ")), "{e}");
        }
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
