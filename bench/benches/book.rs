//! Criterion microbench: every registered book (model, peers; Kuku once registered) on the
//! same small flow. Under `cargo test --benches` criterion runs each routine once, so this is
//! also a smoke test; before measuring it checks that every engine ends in the oracle state.
//!
//! Run: `cargo bench -p kuku-bench --bench book`. Deep books and long runs belong to
//! `kuku-bench engine`, not here.

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use kuku_bench::{
    BookUnderTest, EngineEntry, EngineSelection, Flow, FlowConfig, registered_engines,
};

fn warmed_up(flow: &Flow, entry: &EngineEntry) -> Box<dyn BookUnderTest> {
    let mut book = (entry.make)(flow);
    book.run_all(flow.warmup_ops());
    book
}

fn book_flow(c: &mut Criterion) {
    let config = FlowConfig {
        depth_orders: 2_000,
        ops_steady: 10_000,
        ..FlowConfig::default()
    };
    let flow = Flow::generate(&config).expect("the default config with small sizes is valid");
    let selection = EngineSelection {
        compare_peers: cfg!(feature = "peers"),
        orderbook_rs: true,
        model: true,
        full: true,
        sorted_ladder: true,
    };
    let engines = registered_engines(selection).expect("peers are requested only when built");

    let mut group = c.benchmark_group("book_flow");
    group.sample_size(20);
    group.throughput(Throughput::Elements(flow.steady_ops().len() as u64));
    for entry in &engines {
        let mut check = warmed_up(&flow, entry);
        check.run_all(flow.steady_ops());
        assert_eq!(
            &check.end_state(),
            flow.expected(),
            "{} deviates from the oracle",
            entry.name
        );
        group.bench_function(entry.name, |b| {
            b.iter_batched(
                || warmed_up(&flow, entry),
                |mut book| {
                    book.run_all(flow.steady_ops());
                    book
                },
                BatchSize::LargeInput,
            );
        });
    }
    group.finish();
}

criterion_group!(benches, book_flow);
criterion_main!(benches);
