//! Prints the message layout tables and code tables of docs/protocol.md, generated from the
//! codec itself: `cargo run -p kuku-gateway --example protocol_tables`.

use kuku_engine::RejectReason;
use kuku_gateway::protocol::{GatewayCode, ProtocolCode, layout_markdown};

fn main() {
    for (title, m) in examples() {
        println!("{title} ({} bytes):\n```", m.frame_len());
        for (i, chunk) in m.to_frame().chunks(16).enumerate() {
            let hex: Vec<String> = chunk.iter().map(|b| format!("{b:02x}")).collect();
            println!("{:04x}  {}", i * 16, hex.join(" "));
        }
        println!("```\n");
    }
    println!("{}", layout_markdown());
    println!("| code | name | meaning |\n|---:|---|---|");
    for r in RejectReason::ALL {
        println!("| {} | `{:?}` | {} |", r.code(), r, r.describe());
    }
    println!();
    println!("| code | name | meaning |\n|---:|---|---|");
    for g in GatewayCode::ALL {
        println!("| {} | `{:?}` | {} |", g.code(), g, g.describe());
    }
    println!();
    println!("| code | name | meaning |\n|---:|---|---|");
    for p in ProtocolCode::ALL {
        println!("| {} | `{:?}` | {} |", p.code(), p, p.describe());
    }
}

/// Hex dumps of a login, an order and its acknowledgement (docs/protocol.md, "Examples").
fn examples() -> Vec<(&'static str, kuku_gateway::protocol::Message)> {
    use kuku_engine::*;
    use kuku_gateway::protocol as p;
    let code = p::Code::new("005930").expect("valid");
    vec![
        (
            "Login: account 1, cancel-on-disconnect, last seen seq 0, token 0x11 x 32",
            p::Login {
                account: AccountId(1),
                flags: p::FLAG_CANCEL_ON_DISCONNECT,
                last_seen_acct_seq: 0,
                token: [0x11; 32],
            }
            .into(),
        ),
        (
            "NewOrder: client order id 1001, BUY 10 005930 LIMIT DAY @ 119,900",
            p::NewOrder {
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
            p::OrderAccepted {
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
            p::OrderRejected {
                acct_seq: 0,
                client_order_id: ClientOrderId(1002),
                symbol: Some(code),
                reason: 9002,
                resent: false,
            }
            .into(),
        ),
        ("Heartbeat", p::Heartbeat {}.into()),
    ]
}
