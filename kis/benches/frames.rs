//! Cost of decoding KIS data frames (the golden frames): one trade, three trades in one
//! frame, and one ten-level book. Run: `cargo bench -p kuku-kis --bench frames`.

use criterion::{Criterion, criterion_group, criterion_main};
use kuku_kis::frame::{self, Record};
use std::hint::black_box;

fn frames(c: &mut Criterion) {
    let golden = kuku_kis::testkit::golden_frames();
    let pick = |prefix: &str| {
        *golden
            .iter()
            .find(|l| l.starts_with(prefix))
            .expect("a golden frame with this header")
    };
    let cases = [
        ("trade_1_record", pick("0|H0STCNT0|001|")),
        ("trade_3_records", pick("0|H0STCNT0|003|")),
        ("book_10_levels", pick("0|H0STASP0|001|")),
    ];
    let mut group = c.benchmark_group("kis_decode");
    for (name, text) in cases {
        let mut out: Vec<Record> = Vec::with_capacity(8);
        group.bench_function(name, |b| {
            b.iter(|| {
                out.clear();
                black_box(frame::decode(black_box(text), &mut out)).expect("golden frame");
            })
        });
    }
    group.finish();
}

criterion_group!(benches, frames);
criterion_main!(benches);
