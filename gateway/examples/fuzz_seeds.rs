//! Writes the seed corpora of the fuzz targets (fuzz/corpus/*): one frame per message type
//! (a body of 0x01 bytes, which is valid for most layouts), real encoded messages, and the
//! malformed classes the hostile-client suite covers.
//! `cargo run -p kuku-gateway --example fuzz_seeds`

use kuku_engine::{AccountId, ClientOrderId, OrderType, Price, Qty, Side, TimeInForce};
use kuku_gateway::protocol::*;
use std::path::Path;

fn main() -> std::io::Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus");
    let frames = root.join("decode_frames");
    let bodies = root.join("decode_body");
    std::fs::create_dir_all(&frames)?;
    std::fs::create_dir_all(&bodies)?;
    for m in MESSAGES {
        let mut f = ((1 + m.body_len) as u16).to_le_bytes().to_vec();
        f.push(m.msg_type);
        f.extend(std::iter::repeat_n(1u8, m.body_len));
        std::fs::write(frames.join(format!("type-{:02x}", m.msg_type)), &f)?;
        std::fs::write(bodies.join(format!("type-{:02x}", m.msg_type)), &f[2..])?;
    }
    let login = Message::from(Login {
        version: PROTOCOL_VERSION,
        account: AccountId(1),
        flags: FLAG_CANCEL_ON_DISCONNECT,
        last_seen_acct_seq: 3,
        token: [7; 32],
    });
    let order = Message::from(NewOrder {
        client_order_id: ClientOrderId(1),
        symbol: Code::new("005930").expect("valid"),
        side: Side::Buy,
        order_type: OrderType::Limit,
        tif: TimeInForce::Day,
        price: Price(71_000),
        qty: Qty(10),
    });
    let mut session = login.to_frame();
    order.encode(&mut session);
    Message::from(Heartbeat {}).encode(&mut session);
    std::fs::write(frames.join("login-order-heartbeat"), &session)?;
    std::fs::write(bodies.join("new-order"), &order.to_frame()[2..])?;
    let malformed: [(&str, &[u8]); 5] = [
        ("oversized", &[0xff, 0xff, 0x10]),
        ("zero-length", &[0, 0]),
        ("unknown-type", &[1, 0, 0xee]),
        ("bad-length", &[5, 0, 0x04, 0, 0, 0, 0]),
        ("truncated", &session[..20]),
    ];
    for (name, bytes) in malformed {
        std::fs::write(frames.join(name), bytes)?;
    }
    println!("seeds written under {}", root.display());
    Ok(())
}
