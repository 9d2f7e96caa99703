//! The replication wire: length-prefixed little-endian messages over one TCP connection.
//!
//! ```text
//! len u32 (bytes after it: type + body) | type u8 | body
//! 1 Hello      magic "KUKUREPL", wire_version u16, engine_logic_version u32,
//!              capacities_hash u64, epoch u64, seq_last u64            standby -> primary
//! 2 Welcome    epoch u64, seq_last u64, truncate_after u64 (0: none),
//!              history_len u32, history_len x (epoch u64, first_seq u64) primary -> standby
//! 3 Refused    code u16, reason (UTF-8, rest of the message)            either way
//! 4 Frames     epoch u64, journal frames as stored (len|crc|seq|ts|payload, padded to 8)
//! 5 Ack        epoch u64, seq u64: the standby journaled every frame up to seq
//! 6 Heartbeat  epoch u64, seq u64                                      either way
//! 7 StateHash  seq u64, state_hash u64 (the primary's snapshot at seq)
//! 8 Promote    admin token [32]                                        operator -> node
//! 9 Status     (empty)                                                 operator -> node
//! 10 Reply     ok u8, text (UTF-8; JSON for Status)                    node -> operator
//! 11 Start     seq_first u64: stream from here (after the standby opened its journal)
//! ```
//!
//! **Invariants**: a message is at most [`MESSAGE_BYTES_MAX`]; a longer length word, an unknown
//! type or a short body is an [`io::ErrorKind::InvalidData`] error and the connection is
//! dropped, never a panic. Frames keep their journal CRC end to end: the standby checks it.
//!
//! **Performance**: `write_frames` writes the header and the batch bytes in two `write_all`
//! calls (Nagle is off); reading a message allocates its body (one `Vec` per batch).
//!
//! **Known limitations**: no authentication of the stream itself (only `Promote` carries the
//! admin token) and no encryption: run replication on a private network.

use std::io::{self, Read, Write};

pub const MAGIC: [u8; 8] = *b"KUKUREPL";
pub const WIRE_VERSION: u16 = 1;
/// The largest message accepted (a batch is shipped in pieces well below this).
pub const MESSAGE_BYTES_MAX: usize = 64 << 20;

/// Why a handshake or a control request was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u16)]
pub enum RefuseCode {
    EngineLogicVersion = 1,
    CapacitiesHash = 2,
    NotPrimary = 3,
    /// The primary's epoch is older than the standby's: the "primary" is a fenced old one.
    StaleEpoch = 4,
    /// The standby holds frames the primary does not have in the same epoch.
    Diverged = 5,
    Unauthorized = 6,
    Unpromotable = 7,
    BadMessage = 8,
    WireVersion = 9,
}

impl RefuseCode {
    pub fn from_u16(v: u16) -> Option<RefuseCode> {
        use RefuseCode::*;
        [
            EngineLogicVersion,
            CapacitiesHash,
            NotPrimary,
            StaleEpoch,
            Diverged,
            Unauthorized,
            Unpromotable,
            BadMessage,
            WireVersion,
        ]
        .into_iter()
        .find(|c| *c as u16 == v)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hello {
    pub wire_version: u16,
    pub engine_logic_version: u32,
    pub capacities_hash: u64,
    pub epoch: u64,
    pub seq_last: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Welcome {
    pub epoch: u64,
    pub seq_last: u64,
    /// 0: keep everything; else the standby must remove every frame after this seq.
    pub truncate_after: u64,
    /// (epoch, first seq) of every epoch, oldest first.
    pub history: Vec<(u64, u64)>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Msg {
    Hello(Hello),
    Welcome(Welcome),
    Refused { code: u16, reason: String },
    Frames { epoch: u64, bytes: Vec<u8> },
    Ack { epoch: u64, seq: u64 },
    Heartbeat { epoch: u64, seq: u64 },
    StateHash { seq: u64, hash: u64 },
    Promote { token: [u8; 32] },
    Status,
    Reply { ok: bool, text: String },
    Start { seq_first: u64 },
}

fn bad(what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("replication wire: {what}"),
    )
}

struct Body<'a>(&'a [u8]);

impl<'a> Body<'a> {
    fn take(&mut self, n: usize) -> io::Result<&'a [u8]> {
        if self.0.len() < n {
            return Err(bad("message shorter than its type requires"));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }
    fn u16(&mut self) -> io::Result<u16> {
        Ok(u16::from_le_bytes(
            self.take(2)?.try_into().expect("2 bytes"),
        ))
    }
    fn u32(&mut self) -> io::Result<u32> {
        Ok(u32::from_le_bytes(
            self.take(4)?.try_into().expect("4 bytes"),
        ))
    }
    fn u64(&mut self) -> io::Result<u64> {
        Ok(u64::from_le_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }
    fn text(self) -> String {
        String::from_utf8_lossy(self.0).into_owned()
    }
}

impl Msg {
    fn type_byte(&self) -> u8 {
        match self {
            Msg::Hello(_) => 1,
            Msg::Welcome(_) => 2,
            Msg::Refused { .. } => 3,
            Msg::Frames { .. } => 4,
            Msg::Ack { .. } => 5,
            Msg::Heartbeat { .. } => 6,
            Msg::StateHash { .. } => 7,
            Msg::Promote { .. } => 8,
            Msg::Status => 9,
            Msg::Reply { .. } => 10,
            Msg::Start { .. } => 11,
        }
    }

    fn encode_body(&self, out: &mut Vec<u8>) {
        match self {
            Msg::Hello(h) => {
                out.extend_from_slice(&MAGIC);
                out.extend_from_slice(&h.wire_version.to_le_bytes());
                out.extend_from_slice(&h.engine_logic_version.to_le_bytes());
                out.extend_from_slice(&h.capacities_hash.to_le_bytes());
                out.extend_from_slice(&h.epoch.to_le_bytes());
                out.extend_from_slice(&h.seq_last.to_le_bytes());
            }
            Msg::Welcome(w) => {
                for v in [w.epoch, w.seq_last, w.truncate_after] {
                    out.extend_from_slice(&v.to_le_bytes());
                }
                out.extend_from_slice(&(w.history.len() as u32).to_le_bytes());
                for (e, s) in &w.history {
                    out.extend_from_slice(&e.to_le_bytes());
                    out.extend_from_slice(&s.to_le_bytes());
                }
            }
            Msg::Refused { code, reason } => {
                out.extend_from_slice(&code.to_le_bytes());
                out.extend_from_slice(reason.as_bytes());
            }
            Msg::Frames { epoch, bytes } => {
                out.extend_from_slice(&epoch.to_le_bytes());
                out.extend_from_slice(bytes);
            }
            Msg::Ack { epoch, seq } | Msg::Heartbeat { epoch, seq } => {
                out.extend_from_slice(&epoch.to_le_bytes());
                out.extend_from_slice(&seq.to_le_bytes());
            }
            Msg::StateHash { seq, hash } => {
                out.extend_from_slice(&seq.to_le_bytes());
                out.extend_from_slice(&hash.to_le_bytes());
            }
            Msg::Promote { token } => out.extend_from_slice(token),
            Msg::Status => {}
            Msg::Reply { ok, text } => {
                out.push(u8::from(*ok));
                out.extend_from_slice(text.as_bytes());
            }
            Msg::Start { seq_first } => out.extend_from_slice(&seq_first.to_le_bytes()),
        }
    }

    fn decode(kind: u8, body: &[u8]) -> io::Result<Msg> {
        let mut b = Body(body);
        Ok(match kind {
            1 => {
                if b.take(8)? != MAGIC {
                    return Err(bad("not a Kuku replication peer (bad magic)"));
                }
                Msg::Hello(Hello {
                    wire_version: b.u16()?,
                    engine_logic_version: b.u32()?,
                    capacities_hash: b.u64()?,
                    epoch: b.u64()?,
                    seq_last: b.u64()?,
                })
            }
            2 => {
                let (epoch, seq_last, truncate_after) = (b.u64()?, b.u64()?, b.u64()?);
                let n = b.u32()? as usize;
                if n > 1 << 16 {
                    return Err(bad("epoch history too long"));
                }
                let mut history = Vec::with_capacity(n);
                for _ in 0..n {
                    history.push((b.u64()?, b.u64()?));
                }
                Msg::Welcome(Welcome {
                    epoch,
                    seq_last,
                    truncate_after,
                    history,
                })
            }
            3 => Msg::Refused {
                code: b.u16()?,
                reason: b.text(),
            },
            4 => Msg::Frames {
                epoch: b.u64()?,
                bytes: b.0.to_vec(),
            },
            5 => Msg::Ack {
                epoch: b.u64()?,
                seq: b.u64()?,
            },
            6 => Msg::Heartbeat {
                epoch: b.u64()?,
                seq: b.u64()?,
            },
            7 => Msg::StateHash {
                seq: b.u64()?,
                hash: b.u64()?,
            },
            8 => Msg::Promote {
                token: b.take(32)?.try_into().expect("32 bytes"),
            },
            9 => Msg::Status,
            10 => Msg::Reply {
                ok: b.take(1)?[0] != 0,
                text: b.text(),
            },
            11 => Msg::Start {
                seq_first: b.u64()?,
            },
            other => return Err(bad(&format!("unknown message type {other}"))),
        })
    }
}

/// Writes one message.
pub fn write_msg(w: &mut impl Write, msg: &Msg) -> io::Result<()> {
    let mut out = Vec::with_capacity(64);
    out.extend_from_slice(&[0; 4]);
    out.push(msg.type_byte());
    msg.encode_body(&mut out);
    let len = (out.len() - 4) as u32;
    out[0..4].copy_from_slice(&len.to_le_bytes());
    w.write_all(&out)
}

/// Writes a `Frames` message without copying the batch.
pub fn write_frames(w: &mut impl Write, epoch: u64, frames: &[u8]) -> io::Result<()> {
    let len = (1 + 8 + frames.len()) as u32;
    let mut head = [0u8; 13];
    head[0..4].copy_from_slice(&len.to_le_bytes());
    head[4] = 4;
    head[5..13].copy_from_slice(&epoch.to_le_bytes());
    w.write_all(&head)?;
    w.write_all(frames)
}

/// Reads one message (blocking, or up to the socket's read timeout).
pub fn read_msg(r: &mut impl Read) -> io::Result<Msg> {
    let mut len = [0u8; 4];
    r.read_exact(&mut len)?;
    let len = u32::from_le_bytes(len) as usize;
    if len == 0 || len > MESSAGE_BYTES_MAX {
        return Err(bad(&format!("message length {len} out of range")));
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body)?;
    Msg::decode(body[0], &body[1..])
}

/// Reads messages from a socket with a read timeout without ever losing a partly received
/// message: bytes accumulate until a whole message is there (a plain `read_exact` that times
/// out half-way would desynchronise the stream).
#[derive(Default)]
pub struct MsgReader {
    buf: Vec<u8>,
    chunk: Vec<u8>,
}

impl MsgReader {
    /// The next message, `Ok(None)` if the read timed out first, `Err` on EOF or bad input.
    pub fn poll(&mut self, r: &mut impl Read) -> io::Result<Option<Msg>> {
        if self.chunk.is_empty() {
            self.chunk = vec![0; 64 << 10];
        }
        loop {
            if let Some(msg) = self.take()? {
                return Ok(Some(msg));
            }
            match r.read(&mut self.chunk) {
                Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(n) => self.buf.extend_from_slice(&self.chunk[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    return Ok(None);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    fn take(&mut self) -> io::Result<Option<Msg>> {
        if self.buf.len() < 4 {
            return Ok(None);
        }
        let len = u32::from_le_bytes(self.buf[0..4].try_into().expect("4 bytes")) as usize;
        if len == 0 || len > MESSAGE_BYTES_MAX {
            return Err(bad(&format!("message length {len} out of range")));
        }
        if self.buf.len() < 4 + len {
            return Ok(None);
        }
        let msg = Msg::decode(self.buf[4], &self.buf[5..4 + len])?;
        self.buf.drain(..4 + len);
        Ok(Some(msg))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_message_round_trips() {
        let messages = [
            Msg::Hello(Hello {
                wire_version: WIRE_VERSION,
                engine_logic_version: 7,
                capacities_hash: 0xabc,
                epoch: 2,
                seq_last: 99,
            }),
            Msg::Welcome(Welcome {
                epoch: 3,
                seq_last: 10,
                truncate_after: 5,
                history: vec![(0, 1), (3, 6)],
            }),
            Msg::Refused {
                code: RefuseCode::CapacitiesHash as u16,
                reason: "no".into(),
            },
            Msg::Frames {
                epoch: 1,
                bytes: vec![1, 2, 3],
            },
            Msg::Ack { epoch: 1, seq: 2 },
            Msg::Heartbeat { epoch: 1, seq: 2 },
            Msg::StateHash { seq: 4, hash: 5 },
            Msg::Promote { token: [7; 32] },
            Msg::Status,
            Msg::Reply {
                ok: true,
                text: "{}".into(),
            },
            Msg::Start { seq_first: 8 },
        ];
        for m in messages {
            let mut buf = Vec::new();
            write_msg(&mut buf, &m).unwrap();
            assert_eq!(read_msg(&mut buf.as_slice()).unwrap(), m);
        }
    }

    /// A reader that hands out at most `step` bytes per call and times out every other call.
    struct Trickle<'a> {
        bytes: &'a [u8],
        step: usize,
        calls: usize,
    }

    impl Read for Trickle<'_> {
        fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
            self.calls += 1;
            if self.calls.is_multiple_of(2) {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            let n = self.step.min(self.bytes.len()).min(out.len());
            out[..n].copy_from_slice(&self.bytes[..n]);
            self.bytes = &self.bytes[n..];
            Ok(n)
        }
    }

    #[test]
    fn a_message_split_by_timeouts_is_reassembled() {
        let mut bytes = Vec::new();
        let frames = Msg::Frames {
            epoch: 3,
            bytes: (0..200u8).collect(),
        };
        write_msg(&mut bytes, &frames).unwrap();
        write_msg(&mut bytes, &Msg::Ack { epoch: 3, seq: 9 }).unwrap();
        let mut r = Trickle {
            bytes: &bytes,
            step: 7,
            calls: 0,
        };
        let mut reader = MsgReader::default();
        let mut got = Vec::new();
        for _ in 0..1_000 {
            match reader.poll(&mut r) {
                Ok(Some(m)) => got.push(m),
                Ok(None) => {}
                Err(_) => break,
            }
        }
        assert_eq!(got, [frames, Msg::Ack { epoch: 3, seq: 9 }]);
    }

    #[test]
    fn bad_input_is_an_error_not_a_panic() {
        for bytes in [
            &[0u8, 0, 0, 0][..],
            &[1, 0, 0, 0, 99],
            &[3, 0, 0, 0, 1, 0, 0],
            &[255, 255, 255, 255],
            &[
                9, 0, 0, 0, 1, b'X', b'U', b'K', b'U', b'R', b'E', b'P', b'L',
            ],
        ] {
            assert!(read_msg(&mut &bytes[..]).is_err(), "{bytes:?}");
        }
    }
}
