//! The properties the fuzz targets (`fuzz/`, run with `cargo fuzz`, which needs a nightly
//! compiler) check on every input; the ordinary test suite replays the committed corpora
//! through the same functions on stable Rust.

use super::{Message, decode_all};

/// Decodes `data` as a stream of frames: never panics, and whatever decodes re-encodes to
/// exactly the bytes it came from.
pub fn check_frames(data: &[u8]) {
    let (messages, _) = decode_all(data, u16::MAX as usize);
    let mut again = Vec::with_capacity(data.len());
    for m in &messages {
        m.encode(&mut again);
    }
    assert_eq!(
        &data[..again.len()],
        &again[..],
        "decoding is not canonical"
    );
}

/// Decodes `data[1..]` as a body of type `data[0]`: never panics, and a decoded body
/// re-encodes to itself.
pub fn check_body(data: &[u8]) {
    let Some((&msg_type, body)) = data.split_first() else {
        return;
    };
    if let Ok(m) = Message::decode(msg_type, body) {
        assert_eq!(m.msg_type(), msg_type);
        assert_eq!(&m.to_frame()[3..], body, "decoding is not canonical");
    }
}
