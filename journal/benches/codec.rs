//! Criterion microbench of the payload codec (ADR-005): encode + decode of a realistic command
//! mix (PlaceOrder 70%, CancelOrder 15%, QuoteUpdate 10%, ModifyOrder 5%), the hand-written
//! layout against postcard 1.x on the same commands. (bincode 2.0.1 was measured out of tree,
//! see the ADR: it is not a dependency of the workspace.) Under `cargo test --benches`
//! criterion runs each routine once, so this is also a smoke test of both round trips.
//!
//! Run: `cargo bench -p kuku-journal --bench codec`.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use kuku_engine::testkit::cmd;
use kuku_engine::*;
use kuku_journal::codec::{decode_command, encode_command};

const COMMANDS: usize = 10_000;
const SLOT_BYTES: usize = 64;

/// The mix of ADR-005, from a fixed xorshift seed.
fn mix() -> Vec<Command> {
    let mut rng: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..COMMANDS as u64)
        .map(|i| {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            let r = rng;
            let account = AccountId(1 + (r % 1000) as u32);
            let symbol = 1 + ((r >> 10) % 8) as u32;
            let side = if (r >> 16) & 1 == 0 {
                Side::Buy
            } else {
                Side::Sell
            };
            let price = 71_000 + (((r >> 20) % 41) as i64 - 20) * 100;
            let qty = 1 + ((r >> 32) % 500) as i64;
            match (r >> 48) % 100 {
                0..=69 => {
                    let order_type = if (r >> 40).is_multiple_of(10) {
                        OrderType::Market
                    } else {
                        OrderType::Limit
                    };
                    let tif = if (r >> 44).is_multiple_of(5) {
                        TimeInForce::Ioc
                    } else {
                        TimeInForce::Day
                    };
                    cmd::order(
                        account,
                        1_000 + i,
                        symbol,
                        side,
                        order_type,
                        tif,
                        price,
                        qty,
                    )
                }
                70..=84 => cmd::cancel(account, 1_000 + i, (r >> 8) % 5_000_000),
                85..=94 => cmd::quote(symbol, price - 100, qty, price + 100, qty + 7),
                _ => cmd::modify(account, 1_000 + i, (r >> 8) % 5_000_000, qty, price),
            }
        })
        .collect()
}

type Encode = fn(&Command, &mut [u8]) -> usize;
type Decode = fn(&[u8]) -> Command;

fn hand_encode(c: &Command, buf: &mut [u8]) -> usize {
    encode_command(c, buf).expect("64 bytes fit every command of the mix")
}

fn hand_decode(bytes: &[u8]) -> Command {
    decode_command(bytes).expect("round trip")
}

fn postcard_encode(c: &Command, buf: &mut [u8]) -> usize {
    postcard::to_slice(c, buf).expect("fits").len()
}

fn postcard_decode(bytes: &[u8]) -> Command {
    postcard::from_bytes(bytes).expect("round trip")
}

fn codecs(c: &mut Criterion) {
    let commands = mix();
    let mut group = c.benchmark_group("codec_mix");
    group.throughput(Throughput::Elements(COMMANDS as u64));
    let candidates: [(&str, Encode, Decode); 2] = [
        ("hand_written", hand_encode, hand_decode),
        ("postcard", postcard_encode, postcard_decode),
    ];
    for (name, encode, decode) in candidates {
        let mut buf = vec![0u8; COMMANDS * SLOT_BYTES];
        let mut lens = vec![0usize; COMMANDS];
        for (i, command) in commands.iter().enumerate() {
            let slot = &mut buf[i * SLOT_BYTES..(i + 1) * SLOT_BYTES];
            lens[i] = encode(command, slot);
            assert_eq!(&decode(&slot[..lens[i]]), command, "{name} round trip");
        }
        group.bench_function(format!("{name}/encode"), |b| {
            b.iter(|| {
                for (i, command) in commands.iter().enumerate() {
                    black_box(encode(
                        black_box(command),
                        &mut buf[i * SLOT_BYTES..(i + 1) * SLOT_BYTES],
                    ));
                }
            })
        });
        group.bench_function(format!("{name}/decode"), |b| {
            b.iter(|| {
                for (i, len) in lens.iter().enumerate() {
                    let start = i * SLOT_BYTES;
                    black_box(decode(black_box(&buf[start..start + len])));
                }
            })
        });
    }
    group.finish();
}

criterion_group!(benches, codecs);
criterion_main!(benches);
