//! Encode + split + decode cost of the two hottest frames (ADR-007's numbers):
//! `cargo run --release -p kuku-gateway --example codec_speed`

use kuku_engine::{ClientOrderId, OrderId, OrderType, Price, Qty, Side, TimeInForce};
use kuku_gateway::protocol::*;
use std::hint::black_box;
use std::time::Instant;

fn main() {
    let code = Code::new("005930").expect("valid");
    let order = Message::from(NewOrder {
        client_order_id: ClientOrderId(1),
        symbol: code,
        side: Side::Buy,
        order_type: OrderType::Limit,
        tif: TimeInForce::Day,
        price: Price(119_900),
        qty: Qty(10),
    });
    let ack = Message::from(OrderAccepted {
        acct_seq: 3,
        order_id: OrderId(7),
        client_order_id: ClientOrderId(1),
        symbol: Some(code),
        side: Side::Buy,
        order_type: OrderType::Limit,
        tif: TimeInForce::Day,
        resent: false,
        price: Price(119_900),
        qty: Qty(10),
    });
    for (name, m) in [("NewOrder", order), ("OrderAccepted", ack)] {
        let n = 10_000_000u64;
        let mut buf = Vec::with_capacity(64);
        let t = Instant::now();
        for i in 0..n {
            buf.clear();
            let mut m = m;
            if let Message::NewOrder(o) = &mut m {
                o.client_order_id = ClientOrderId(i);
            }
            black_box(&m).encode(&mut buf);
            let (back, used) = split_frame(black_box(&buf), 256)
                .ok()
                .flatten()
                .expect("frame");
            black_box((back, used));
        }
        let ns = t.elapsed().as_nanos() as f64 / n as f64;
        println!(
            "{name}: {} bytes per frame, encode + decode {ns:.1} ns",
            m.frame_len()
        );
    }
}
