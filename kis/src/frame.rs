//! The KIS WebSocket wire shapes: the subscribe/unsubscribe request, the JSON control frames
//! (subscribe acknowledgements, PINGPONG) and the data frames of H0STCNT0 (trades) and
//! H0STASP0 (the ten-level book).
//!
//! A data frame is `E|TR_ID|NNN|f1^f2^...`: `E` is 0 (plain) or 1 (AES-encrypted, used by
//! KIS only for account notices, which this adapter never subscribes to), `NNN` the number
//! of records, and the fields of all records follow one another, caret-separated, in the
//! documented order. The record width is the field count divided by `NNN`; KIS has appended
//! columns to both TRs over time (H0STASP0 grew from 59 to 63), so a record at least as wide
//! as the columns read here is accepted.
//!
//! Field orders, from KIS's sample repository koreainvestment/open-trading-api:
//! - H0STCNT0: `examples_llm/domestic_stock/ccnl_krx/ccnl_krx.py` (46 columns:
//!   MKSC_SHRN_ISCD, STCK_CNTG_HOUR, STCK_PRPR, ..., ASKP1 at 10, BIDP1 at 11, CNTG_VOL at
//!   12, ACML_VOL at 13, ...);
//! - H0STASP0: `examples_llm/domestic_stock/asking_price_krx/asking_price_krx.py`
//!   (MKSC_SHRN_ISCD, BSOP_HOUR, HOUR_CLS_CODE, ASKP1..10, BIDP1..10, ASKP_RSQN1..10,
//!   BIDP_RSQN1..10, totals, ...);
//! - the frame layout and the subscribe JSON: `examples_llm/kis_auth.py` (`data_fetch`,
//!   `system_resp`) and the API portal page "국내주식 실시간호가 (KRX) [실시간-004]"
//!   (https://apiportal.koreainvestment.com/apiservice-apiservice?/tryitout/H0STASP0).
//!
//! **Invariants**: a decoded record has a six-digit symbol code, a time `HHMMSS`, prices
//! and quantities that are non-negative integers within `PRICE_KRW_MAX`/`QTY_MAX`; a frame
//! whose count does not match its fields is rejected whole (no partial records).
//!
//! **Performance**: one pass over the frame and one allocation (the index of its fields); a
//! book record is decoded into fixed arrays; the records go into the caller's vector.
//!
//! **Known limitations**: encrypted frames (E = 1) are rejected, not decrypted.

use kuku_engine::{Price, Qty};
use serde::Serialize;

pub const TR_TRADE: &str = "H0STCNT0";
pub const TR_BOOK: &str = "H0STASP0";
pub const TR_PINGPONG: &str = "PINGPONG";

/// Columns of an H0STCNT0 record read here (the documented record has 46).
pub const TRADE_COLUMNS_MIN: usize = 46;
/// Columns of an H0STASP0 record read here (the documented record has 59, newer ones 63).
pub const BOOK_COLUMNS_MIN: usize = 59;
/// Book depth KIS publishes per side.
pub const BOOK_LEVELS: usize = 10;
/// Largest price accepted: the engine's `PRICE_MAX` (KRW per share).
pub const PRICE_KRW_MAX: i64 = kuku_engine::limits::PRICE_MAX;
/// Largest quantity accepted per field: the engine's `QTY_MAX` (shares).
pub const QTY_MAX: i64 = kuku_engine::limits::QTY_MAX;
/// Largest record count a frame may announce (KIS sends up to a few dozen).
pub const RECORDS_PER_FRAME_MAX: usize = 999;

/// A six-digit KRX short code (`005930`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ShortCode([u8; 6]);

impl ShortCode {
    pub fn parse(s: &str) -> Option<ShortCode> {
        let bytes: [u8; 6] = s.as_bytes().try_into().ok()?;
        bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric())
            .then_some(ShortCode(bytes))
    }

    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).expect("parsed from ASCII alphanumerics")
    }
}

impl std::fmt::Display for ShortCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Seconds since midnight KST, from `HHMMSS`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct KstTime {
    pub seconds_of_day: u32,
}

/// One trade (an H0STCNT0 record).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Trade {
    pub code: ShortCode,
    pub time: KstTime,
    pub price: Price,
    pub qty: Qty,
    pub best_ask: Price,
    pub best_bid: Price,
    pub volume_day: Qty,
}

/// One level of a side: price and resting quantity (0/0 for an empty level).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BookLevel {
    pub price: Price,
    pub qty: Qty,
}

/// The ten-level book (an H0STASP0 record); level 0 is the best.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Book {
    pub code: ShortCode,
    pub time: KstTime,
    pub asks: [BookLevel; BOOK_LEVELS],
    pub bids: [BookLevel; BOOK_LEVELS],
}

/// A record of a data frame.
///
/// Kept by value (a book is 336 bytes): records go into a reused vector, so boxing the book
/// would cost an allocation per record for no saving.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Record {
    Trade(Trade),
    Book(Book),
}

impl Record {
    pub fn code(&self) -> ShortCode {
        match self {
            Record::Trade(t) => t.code,
            Record::Book(b) => b.code,
        }
    }
}

/// What a text frame from KIS is.
#[derive(Debug, PartialEq, Eq)]
pub enum Inbound {
    /// A data frame; its records were appended to the caller's vector.
    Data { tr_id: &'static str, records: usize },
    /// A PINGPONG heartbeat: send the same text back.
    PingPong,
    /// A subscribe or unsubscribe acknowledgement (rt_cd "0").
    Ack {
        tr_id: String,
        tr_key: String,
        msg: String,
    },
    /// A refused request (rt_cd not "0": an unknown key, too many subscriptions).
    Refused {
        tr_id: String,
        tr_key: String,
        msg: String,
    },
}

/// Why a frame was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("not a KIS frame: {0}")]
    Shape(&'static str),
    #[error("encrypted frames are not subscribed to")]
    Encrypted,
    #[error("unknown tr_id")]
    UnknownTr,
    #[error("the record count does not match the fields")]
    Count,
    #[error("field {index} is invalid")]
    Field { index: usize },
    #[error("control frame is not the documented JSON: {0}")]
    Json(String),
}

/// Decodes one text frame; data records are appended to `out` (nothing is appended if the
/// frame is rejected).
pub fn decode(text: &str, out: &mut Vec<Record>) -> Result<Inbound, FrameError> {
    match text.as_bytes().first() {
        Some(b'0') | Some(b'1') => decode_data(text, out),
        Some(b'{') => decode_control(text),
        _ => Err(FrameError::Shape("neither a data frame nor JSON")),
    }
}

fn decode_data(text: &str, out: &mut Vec<Record>) -> Result<Inbound, FrameError> {
    let mut parts = text.splitn(4, '|');
    let encrypted = parts.next().ok_or(FrameError::Shape("no header"))?;
    let tr_id = parts.next().ok_or(FrameError::Shape("no tr_id"))?;
    let count = parts.next().ok_or(FrameError::Shape("no count"))?;
    let payload = parts.next().ok_or(FrameError::Shape("no payload"))?;
    if encrypted != "0" {
        return Err(FrameError::Encrypted);
    }
    let (tr_id, columns_min): (&'static str, usize) = match tr_id {
        TR_TRADE => (TR_TRADE, TRADE_COLUMNS_MIN),
        TR_BOOK => (TR_BOOK, BOOK_COLUMNS_MIN),
        _ => return Err(FrameError::UnknownTr),
    };
    if count.is_empty() || count.len() > 3 || !count.bytes().all(|b| b.is_ascii_digit()) {
        return Err(FrameError::Count);
    }
    let records: usize = count.parse().map_err(|_| FrameError::Count)?;
    if records == 0 || records > RECORDS_PER_FRAME_MAX {
        return Err(FrameError::Count);
    }
    let fields: Vec<&str> = payload.split('^').collect();
    if !fields.len().is_multiple_of(records) || fields.len() / records < columns_min {
        return Err(FrameError::Count);
    }
    let width = fields.len() / records;
    let start = out.len();
    for chunk in fields.chunks_exact(width) {
        let record = if tr_id == TR_TRADE {
            decode_trade(chunk).map(Record::Trade)
        } else {
            decode_book(chunk).map(Record::Book)
        };
        match record {
            Ok(r) => out.push(r),
            Err(e) => {
                out.truncate(start);
                return Err(e);
            }
        }
    }
    Ok(Inbound::Data { tr_id, records })
}

fn code_at(f: &[&str], index: usize) -> Result<ShortCode, FrameError> {
    ShortCode::parse(f[index]).ok_or(FrameError::Field { index })
}

fn time_at(f: &[&str], index: usize) -> Result<KstTime, FrameError> {
    let s = f[index];
    let bad = FrameError::Field { index };
    if s.len() != 6 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad);
    }
    let n = |r: std::ops::Range<usize>| s[r].parse::<u32>().map_err(|_| bad.clone());
    let (h, m, sec) = (n(0..2)?, n(2..4)?, n(4..6)?);
    if h > 23 || m > 59 || sec > 59 {
        return Err(bad);
    }
    Ok(KstTime {
        seconds_of_day: h * 3600 + m * 60 + sec,
    })
}

fn int_at(f: &[&str], index: usize, max: i64) -> Result<i64, FrameError> {
    let s = f[index];
    if s.is_empty() || s.len() > 19 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(FrameError::Field { index });
    }
    match s.parse::<i64>() {
        Ok(v) if v <= max => Ok(v),
        _ => Err(FrameError::Field { index }),
    }
}

fn decode_trade(f: &[&str]) -> Result<Trade, FrameError> {
    let price = Price(int_at(f, 2, PRICE_KRW_MAX)?);
    if price.0 == 0 {
        return Err(FrameError::Field { index: 2 });
    }
    Ok(Trade {
        code: code_at(f, 0)?,
        time: time_at(f, 1)?,
        price,
        best_ask: Price(int_at(f, 10, PRICE_KRW_MAX)?),
        best_bid: Price(int_at(f, 11, PRICE_KRW_MAX)?),
        qty: Qty(int_at(f, 12, QTY_MAX)?),
        volume_day: Qty(int_at(f, 13, QTY_MAX)?),
    })
}

fn decode_book(f: &[&str]) -> Result<Book, FrameError> {
    const ASK_PRICE: usize = 3;
    const BID_PRICE: usize = ASK_PRICE + BOOK_LEVELS;
    const ASK_QTY: usize = BID_PRICE + BOOK_LEVELS;
    const BID_QTY: usize = ASK_QTY + BOOK_LEVELS;
    let mut asks = [BookLevel::default(); BOOK_LEVELS];
    let mut bids = [BookLevel::default(); BOOK_LEVELS];
    for i in 0..BOOK_LEVELS {
        asks[i] = BookLevel {
            price: Price(int_at(f, ASK_PRICE + i, PRICE_KRW_MAX)?),
            qty: Qty(int_at(f, ASK_QTY + i, QTY_MAX)?),
        };
        bids[i] = BookLevel {
            price: Price(int_at(f, BID_PRICE + i, PRICE_KRW_MAX)?),
            qty: Qty(int_at(f, BID_QTY + i, QTY_MAX)?),
        };
    }
    let book = Book {
        code: code_at(f, 0)?,
        time: time_at(f, 1)?,
        asks,
        bids,
    };
    check_book_order(&book)?;
    Ok(book)
}

/// Asks rise and bids fall away from the best (empty levels, price 0, only at the back), and
/// the best bid is below the best ask when both sides are present.
fn check_book_order(book: &Book) -> Result<(), FrameError> {
    let side_ok = |levels: &[BookLevel; BOOK_LEVELS], rising: bool| {
        let mut prev: Option<i64> = None;
        let mut ended = false;
        for level in levels {
            if level.price.0 == 0 {
                ended = true;
                continue;
            }
            if ended {
                return false;
            }
            if let Some(p) = prev
                && ((rising && level.price.0 <= p) || (!rising && level.price.0 >= p))
            {
                return false;
            }
            prev = Some(level.price.0);
        }
        true
    };
    if !side_ok(&book.asks, true) {
        return Err(FrameError::Field { index: 3 });
    }
    if !side_ok(&book.bids, false) {
        return Err(FrameError::Field { index: 13 });
    }
    let (ask, bid) = (book.asks[0].price.0, book.bids[0].price.0);
    if ask > 0 && bid > 0 && bid >= ask {
        return Err(FrameError::Field { index: 13 });
    }
    Ok(())
}

fn decode_control(text: &str) -> Result<Inbound, FrameError> {
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| FrameError::Json(e.to_string()))?;
    let header = value
        .get("header")
        .ok_or_else(|| FrameError::Json("no header".into()))?;
    let tr_id = header
        .get("tr_id")
        .and_then(|v| v.as_str())
        .ok_or_else(|| FrameError::Json("no header.tr_id".into()))?;
    if tr_id == TR_PINGPONG {
        return Ok(Inbound::PingPong);
    }
    let tr_key = header
        .get("tr_key")
        .and_then(|v| v.as_str())
        .unwrap_or("")
        .to_string();
    let body = value
        .get("body")
        .ok_or_else(|| FrameError::Json("no body".into()))?;
    let rt_cd = body
        .get("rt_cd")
        .and_then(|v| v.as_str())
        .ok_or_else(|| FrameError::Json("no body.rt_cd".into()))?;
    let msg = body
        .get("msg1")
        .and_then(|v| v.as_str())
        .unwrap_or("")
        .to_string();
    let tr_id = tr_id.to_string();
    if rt_cd == "0" {
        Ok(Inbound::Ack { tr_id, tr_key, msg })
    } else {
        Ok(Inbound::Refused { tr_id, tr_key, msg })
    }
}

/// Subscribe (`tr_type` "1") or unsubscribe ("2") to one stream of one symbol.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SubscribeKind {
    Subscribe,
    Unsubscribe,
}

#[derive(Serialize)]
struct SubscribeHeader<'a> {
    approval_key: &'a str,
    custtype: &'static str,
    tr_type: &'static str,
    #[serde(rename = "content-type")]
    content_type: &'static str,
}

#[derive(Serialize)]
struct SubscribeInput<'a> {
    tr_id: &'a str,
    tr_key: &'a str,
}

#[derive(Serialize)]
struct SubscribeBody<'a> {
    input: SubscribeInput<'a>,
}

#[derive(Serialize)]
struct SubscribeRequest<'a> {
    header: SubscribeHeader<'a>,
    body: SubscribeBody<'a>,
}

/// The JSON text of a subscribe or unsubscribe request (kis_auth.py `data_fetch`).
pub fn subscribe_request(
    approval_key: &str,
    kind: SubscribeKind,
    tr_id: &str,
    code: ShortCode,
) -> String {
    let request = SubscribeRequest {
        header: SubscribeHeader {
            approval_key,
            custtype: "P",
            tr_type: match kind {
                SubscribeKind::Subscribe => "1",
                SubscribeKind::Unsubscribe => "2",
            },
            content_type: "utf-8",
        },
        body: SubscribeBody {
            input: SubscribeInput {
                tr_id,
                tr_key: code.as_str(),
            },
        },
    };
    serde_json::to_string(&request).expect("a struct of strings always serializes")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trade_fields(code: &str, time: &str, price: &str, qty: &str) -> Vec<String> {
        let mut f = vec!["0".to_string(); TRADE_COLUMNS_MIN];
        f[0] = code.into();
        f[1] = time.into();
        f[2] = price.into();
        f[10] = "71100".into();
        f[11] = "71000".into();
        f[12] = qty.into();
        f[13] = "1000".into();
        f
    }

    #[test]
    fn a_frame_with_two_trade_records_decodes_both() {
        let mut fields = trade_fields("005930", "090001", "71000", "10");
        fields.extend(trade_fields("000660", "090002", "120500", "3"));
        let text = format!("0|H0STCNT0|002|{}", fields.join("^"));
        let mut out = Vec::new();
        let inbound = decode(&text, &mut out).expect("valid frame");
        assert_eq!(
            inbound,
            Inbound::Data {
                tr_id: TR_TRADE,
                records: 2
            }
        );
        let Record::Trade(second) = out[1] else {
            panic!("trade expected")
        };
        assert_eq!(second.code.as_str(), "000660");
        assert_eq!(second.price, Price(120500));
        assert_eq!(second.qty, Qty(3));
        assert_eq!(second.time.seconds_of_day, 9 * 3600 + 2);
    }

    #[test]
    fn a_count_that_does_not_match_the_fields_rejects_the_whole_frame() {
        let fields = trade_fields("005930", "090001", "71000", "10");
        let text = format!("0|H0STCNT0|002|{}", fields.join("^"));
        let mut out = Vec::new();
        assert_eq!(decode(&text, &mut out), Err(FrameError::Count));
        assert!(out.is_empty());
    }

    #[test]
    fn a_bad_second_record_leaves_nothing_behind() {
        let mut fields = trade_fields("005930", "090001", "71000", "10");
        fields.extend(trade_fields("000660", "250000", "120500", "3"));
        let text = format!("0|H0STCNT0|002|{}", fields.join("^"));
        let mut out = vec![];
        assert_eq!(decode(&text, &mut out), Err(FrameError::Field { index: 1 }));
        assert!(out.is_empty());
    }

    #[test]
    fn extreme_and_hostile_fields_are_rejected() {
        let cases = [
            ("005930", "090001", "-1", "10"),
            ("005930", "090001", "99999999999999999999", "10"),
            ("005930", "090001", "0", "10"),
            ("005930", "090001", "1e5", "10"),
            ("005930", "096001", "100", "10"),
            ("0059", "090001", "100", "10"),
            ("005930", "090001", "100", "9223372036854775807"),
        ];
        for (code, time, price, qty) in cases {
            let text = format!(
                "0|H0STCNT0|001|{}",
                trade_fields(code, time, price, qty).join("^")
            );
            assert!(
                decode(&text, &mut Vec::new()).is_err(),
                "{code} {time} {price} {qty}"
            );
        }
        let max = PRICE_KRW_MAX.to_string();
        let text = format!(
            "0|H0STCNT0|001|{}",
            trade_fields("005930", "235959", &max, "0").join("^")
        );
        assert!(decode(&text, &mut Vec::new()).is_ok());
    }

    #[test]
    fn malformed_headers_are_rejected() {
        for text in [
            "",
            "x",
            "0|H0STCNT0",
            "0|H0STCNT0|001",
            "1|H0STCNT0|001|a",
            "0|H0XXXXX0|001|a",
            "0|H0STCNT0|000|a",
            "0|H0STCNT0|abc|a",
            "0|H0STCNT0|1000|a",
            "{",
            "{\"header\":{}}",
        ] {
            assert!(decode(text, &mut Vec::new()).is_err(), "{text:?}");
        }
    }

    #[test]
    fn pingpong_and_acks_are_recognised() {
        let ping = r#"{"header":{"tr_id":"PINGPONG","datetime":"20250101090000"}}"#;
        assert_eq!(decode(ping, &mut Vec::new()), Ok(Inbound::PingPong));
        let ack = r#"{"header":{"tr_id":"H0STASP0","tr_key":"005930","encrypt":"N"},"body":{"rt_cd":"0","msg_cd":"OPSP0000","msg1":"SUBSCRIBE SUCCESS","output":{"iv":"x","key":"y"}}}"#;
        assert!(matches!(
            decode(ack, &mut Vec::new()),
            Ok(Inbound::Ack { .. })
        ));
        let refused = r#"{"header":{"tr_id":"H0STASP0","tr_key":"005930","encrypt":"N"},"body":{"rt_cd":"1","msg_cd":"OPSP0008","msg1":"MAX SUBSCRIBE OVER"}}"#;
        assert!(matches!(
            decode(refused, &mut Vec::new()),
            Ok(Inbound::Refused { .. })
        ));
    }

    #[test]
    fn subscribe_request_has_the_documented_shape() {
        let code = ShortCode::parse("005930").expect("code");
        let text = subscribe_request("approval-xyz", SubscribeKind::Subscribe, TR_BOOK, code);
        let v: serde_json::Value = serde_json::from_str(&text).expect("json");
        assert_eq!(v["header"]["approval_key"], "approval-xyz");
        assert_eq!(v["header"]["custtype"], "P");
        assert_eq!(v["header"]["tr_type"], "1");
        assert_eq!(v["header"]["content-type"], "utf-8");
        assert_eq!(v["body"]["input"]["tr_id"], "H0STASP0");
        assert_eq!(v["body"]["input"]["tr_key"], "005930");
        let un = subscribe_request("k", SubscribeKind::Unsubscribe, TR_TRADE, code);
        assert!(un.contains(r#""tr_type":"2""#));
    }
}
