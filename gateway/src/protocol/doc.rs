//! docs/protocol.md as data: the worked examples it prints (generated from here), and a
//! reader of the document's own tables (message layouts, codes, hex dumps), so that tests
//! can check the document against the codec and decode live frames with nothing but the
//! document, the way a client in another language would.
//!
//! **Invariants**: [`parse_layouts`] and [`decode_by_doc`] read only the document's text:
//! they share no table with the codec, so a disagreement between the two is found.

use super::field::Code;
use super::messages::{
    Login, Message, NewOrder, OrderAccepted, OrderRejected, OrderReport, TransferIn,
};
use super::{FLAG_CANCEL_ON_DISCONNECT, PROTOCOL_VERSION, WireOrderState};
use kuku_engine::{
    AccountId, ClientOrderId, ExternalRef, OrderId, OrderType, Price, Qty, Side, TimeInForce,
};

/// The worked examples of docs/protocol.md, "Examples": a title and the message.
pub fn examples() -> Vec<(&'static str, Message)> {
    let code = Code::new("005930").expect("a valid code");
    vec![
        (
            "Login: protocol version 2, account 1, cancel-on-disconnect, last seen seq 0, token 0x11 x 32",
            Login {
                version: PROTOCOL_VERSION,
                account: AccountId(1),
                flags: FLAG_CANCEL_ON_DISCONNECT,
                last_seen_acct_seq: 0,
                token: [0x11; 32],
            }
            .into(),
        ),
        (
            "NewOrder: client order id 1001, BUY 10 005930 LIMIT DAY @ 119,900",
            NewOrder {
                client_order_id: ClientOrderId(1001),
                symbol: code,
                side: Side::Buy,
                order_type: OrderType::Limit,
                tif: TimeInForce::Day,
                price: Price(119_900),
                qty: Qty(10),
            }
            .into(),
        ),
        (
            "OrderAccepted: acct_seq 3, order 7",
            OrderAccepted {
                acct_seq: 3,
                order_id: OrderId(7),
                client_order_id: ClientOrderId(1001),
                symbol: Some(code),
                side: Side::Buy,
                order_type: OrderType::Limit,
                tif: TimeInForce::Day,
                resent: false,
                price: Price(119_900),
                qty: Qty(10),
            }
            .into(),
        ),
        (
            "OrderRejected by the gateway: RateLimited (9002), not sequenced",
            OrderRejected {
                acct_seq: 0,
                client_order_id: ClientOrderId(1002),
                symbol: Some(code),
                reason: 9002,
                resent: false,
            }
            .into(),
        ),
        (
            "OrderReport of order 7 after 4 filled, a Modify to 8 open, then a Cancel: qty 12 = filled 4 + leaves 0 + cancelled 8",
            OrderReport {
                request_id: 55,
                order_id: OrderId(7),
                client_order_id: ClientOrderId(1001),
                symbol: Some(code),
                side: Side::Buy,
                order_type: OrderType::Limit,
                tif: TimeInForce::Day,
                state: WireOrderState::Cancelled,
                price: Price(119_900),
                qty: Qty(12),
                leaves: Qty(0),
                filled: Qty(4),
                cancelled: Qty(8),
            }
            .into(),
        ),
        (
            "TransferIn: request 9, account 1 receives 10 x 005930 at a cost of 50,000 each, ref \"in-1\"",
            TransferIn {
                request_id: 9,
                account: AccountId(1),
                symbol: code,
                qty: Qty(10),
                price: Price(50_000),
                external_ref: ExternalRef::new("in-1").expect("short"),
            }
            .into(),
        ),
        ("Heartbeat", super::messages::Heartbeat {}.into()),
    ]
}

/// A frame as the document prints it: 16 bytes per line, offset first.
pub fn hex_dump(frame: &[u8]) -> String {
    let mut out = String::new();
    for (i, chunk) in frame.chunks(16).enumerate() {
        let hex: Vec<String> = chunk.iter().map(|b| format!("{b:02x}")).collect();
        out += &format!("{:04x}  {}\n", i * 16, hex.join(" "));
    }
    out
}

/// The examples as the document prints them.
pub fn examples_markdown() -> String {
    let mut out = String::new();
    for (title, m) in examples() {
        out += &format!(
            "{title} ({} bytes):\n```\n{}```\n\n",
            m.frame_len(),
            hex_dump(&m.to_frame())
        );
    }
    out
}

/// Every hex dump in `doc` ("Title (N bytes):" then a fenced block of `offset  bytes`
/// lines): the title and the bytes.
pub fn parse_hex_dumps(doc: &str) -> Vec<(String, Vec<u8>)> {
    let lines: Vec<&str> = doc.lines().collect();
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let Some(title) = line.strip_suffix(" bytes):") else {
            continue;
        };
        let Some(open) = title.rfind(" (") else {
            continue;
        };
        if lines.get(i + 1) != Some(&"```") {
            continue;
        }
        let mut bytes = Vec::new();
        for l in &lines[i + 2..] {
            if *l == "```" {
                break;
            }
            for b in l.split_whitespace().skip(1) {
                if let Ok(v) = u8::from_str_radix(b, 16) {
                    bytes.push(v);
                }
            }
        }
        out.push((title[..open].to_owned(), bytes));
    }
    out
}

/// One field of a message layout table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DocField {
    pub offset: usize,
    pub size: usize,
    pub name: String,
    pub wire_type: String,
}

/// One message as the document describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DocMessage {
    pub name: String,
    pub msg_type: u8,
    /// The whole frame's size in bytes.
    pub frame_bytes: usize,
    pub fields: Vec<DocField>,
}

/// Every `### Name (type `0xNN`, ...)` section of `doc` with its layout table.
pub fn parse_layouts(doc: &str) -> Vec<DocMessage> {
    let mut out: Vec<DocMessage> = Vec::new();
    for line in doc.lines() {
        if let Some(rest) = line.strip_prefix("### ")
            && let Some((name, tail)) = rest.split_once(" (type `0x")
            && let Some(hex) = tail.get(..2)
            && let Ok(msg_type) = u8::from_str_radix(hex, 16)
        {
            out.push(DocMessage {
                name: name.to_owned(),
                msg_type,
                frame_bytes: 0,
                fields: Vec::new(),
            });
            continue;
        }
        let Some(m) = out.last_mut() else {
            continue;
        };
        if let Some(rest) = line.strip_prefix("Frame: ")
            && let Some((n, _)) = rest.split_once(" bytes")
        {
            m.frame_bytes = n.parse().unwrap_or(0);
            continue;
        }
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        // | offset | size | `name` | type | notes |
        if cells.len() >= 6
            && let (Ok(offset), Ok(size)) = (cells[1].parse(), cells[2].parse())
            && let Some(name) = cells[3].strip_prefix('`').and_then(|n| n.strip_suffix('`'))
        {
            m.fields.push(DocField {
                offset,
                size,
                name: name.to_owned(),
                wire_type: cells[4].to_owned(),
            });
        }
    }
    out
}

/// Every code of the document's code tables (`| 1001 | `UnknownSymbol` | ...`).
pub fn parse_codes(doc: &str) -> Vec<(u16, String)> {
    doc.lines()
        .filter_map(|line| {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            if cells.len() < 4 {
                return None;
            }
            let code: u16 = cells[1].parse().ok()?;
            let name = cells[2].strip_prefix('`')?.strip_suffix('`')?;
            (1000..10_000)
                .contains(&code)
                .then(|| (code, name.to_owned()))
        })
        .collect()
}

/// One field's value as the document's table reads it from a frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DocValue<'a> {
    pub field: &'a DocField,
    pub bytes: &'a [u8],
}

impl DocValue<'_> {
    /// The field read as a little-endian integer (up to 8 bytes; wider fields: 0).
    pub fn int(&self) -> u64 {
        if self.bytes.len() > 8 {
            return 0;
        }
        let mut b = [0u8; 8];
        b[..self.bytes.len()].copy_from_slice(self.bytes);
        u64::from_le_bytes(b)
    }

    /// Whether any byte is set.
    pub fn is_set(&self) -> bool {
        self.bytes.iter().any(|&b| b != 0)
    }
}

/// Reads one whole frame with nothing but the document: its length, its type's section,
/// each field at its documented offset and size. `Err` names the disagreement.
pub fn decode_by_doc<'a>(
    layouts: &'a [DocMessage],
    frame: &'a [u8],
) -> Result<(&'a DocMessage, Vec<DocValue<'a>>), String> {
    if frame.len() < 3 {
        return Err(format!("a frame of {} bytes", frame.len()));
    }
    let length = u16::from_le_bytes([frame[0], frame[1]]) as usize;
    if length + 2 != frame.len() {
        return Err(format!(
            "length field {length}, frame of {} bytes",
            frame.len()
        ));
    }
    let m = layouts
        .iter()
        .find(|m| m.msg_type == frame[2])
        .ok_or_else(|| format!("type {:#04x} is not in the document", frame[2]))?;
    if m.frame_bytes != frame.len() {
        return Err(format!(
            "{}: the document says {} bytes, the frame has {}",
            m.name,
            m.frame_bytes,
            frame.len()
        ));
    }
    let mut at = 3;
    let mut values = Vec::with_capacity(m.fields.len());
    for f in &m.fields {
        if f.offset != at || f.offset + f.size > frame.len() {
            return Err(format!("{}.{} at offset {}", m.name, f.name, f.offset));
        }
        values.push(DocValue {
            field: f,
            bytes: &frame[f.offset..f.offset + f.size],
        });
        at += f.size;
    }
    if at != frame.len() {
        return Err(format!(
            "{}: {} bytes not in any field",
            m.name,
            frame.len() - at
        ));
    }
    Ok((m, values))
}
