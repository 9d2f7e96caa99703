//! Prints the worked examples, the message layout tables and the code tables of
//! docs/protocol.md, generated from the codec itself:
//! `cargo run -p kuku-gateway --example protocol_tables`.

use kuku_engine::RejectReason;
use kuku_gateway::protocol::doc::examples_markdown;
use kuku_gateway::protocol::{GatewayCode, ProtocolCode, layout_markdown};

fn main() {
    print!("{}", examples_markdown());
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
