//! Framing: `length u16 LE | type u8 | body`, where `length` counts the type byte and the
//! body. [`split_frame`] takes the next whole frame off the front of a byte buffer.
//!
//! **Invariants**: a frame is refused as soon as its header shows it cannot be valid (zero
//! length, a length above the limit, an unknown type, a length that does not match the
//! type), before its body arrives, so a hostile length never makes the server wait for or
//! buffer bytes it would refuse anyway.
//!
//! **Performance**: O(1) per frame; no allocation.

use super::messages::{DecodeError, HEADER_BYTES, Message, body_len};

/// The largest `length` a server accepts from clients by default: every client message is
/// far smaller (the largest, RegisterSymbol, has an 89-byte body).
pub const CLIENT_FRAME_LEN_MAX: usize = 256;

/// Why the bytes at the front of a buffer are not a valid frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("zero-length frame")]
    Empty,
    #[error("frame length {len} exceeds {len_max}")]
    TooLarge { len: usize, len_max: usize },
    #[error(transparent)]
    Decode(#[from] DecodeError),
}

/// Takes the next frame off the front of `buf`: `Ok(Some((message, bytes_used)))`,
/// `Ok(None)` if more bytes are needed, or an error as soon as the frame is known bad.
#[inline]
pub fn split_frame(buf: &[u8], len_max: usize) -> Result<Option<(Message, usize)>, FrameError> {
    if buf.len() < 2 {
        return Ok(None);
    }
    let len = u16::from_le_bytes([buf[0], buf[1]]) as usize;
    if len == 0 {
        return Err(FrameError::Empty);
    }
    if len > len_max {
        return Err(FrameError::TooLarge { len, len_max });
    }
    if buf.len() < HEADER_BYTES {
        return Ok(None);
    }
    let msg_type = buf[2];
    let expected = body_len(msg_type).ok_or(DecodeError::UnknownType(msg_type))?;
    if len - 1 != expected {
        return Err(DecodeError::BadLength {
            msg_type,
            len: len - 1,
            expected,
        }
        .into());
    }
    let total = 2 + len;
    if buf.len() < total {
        return Ok(None);
    }
    let message = Message::decode(msg_type, &buf[HEADER_BYTES..total])?;
    Ok(Some((message, total)))
}

/// Decodes every frame in `bytes` (tests, tools, the fuzz targets): the messages, and the
/// error that stopped decoding, if any. Trailing bytes of an incomplete frame are ignored.
pub fn decode_all(bytes: &[u8], len_max: usize) -> (Vec<Message>, Option<FrameError>) {
    let mut out = Vec::new();
    let mut at = 0;
    loop {
        match split_frame(&bytes[at..], len_max) {
            Ok(Some((m, used))) => {
                out.push(m);
                at += used;
            }
            Ok(None) => return (out, None),
            Err(e) => return (out, Some(e)),
        }
    }
}
