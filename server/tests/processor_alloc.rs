//! Zero allocation on the processor thread in steady state: a per-thread counting allocator
//! counts what the processor thread allocates while 1,000,000 mixed commands go through the
//! whole pipeline (journaller, processor, output ring, a consumer), in both layouts: staged
//! (a journaller thread in front of the processor) and fused (the processor encodes each
//! command into the log itself). Its own test binary, so nothing else shares the allocator.

use kuku_engine::testkit::{Driver, cmd};
use kuku_engine::*;
use kuku_server::pipeline::{
    self, Busy, CommandLog, Layout as StageLayout, LogError, MemoryLog, Origin, OutputSlot,
    Outputs, PipelineConfig,
};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

struct CountingAlloc;
static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);
thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
}

// SAFETY: delegates every call to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.with(Cell::get) {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if COUNTING.with(Cell::get) {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

fn count_on_this_thread() {
    COUNTING.with(|c| c.set(true));
}

/// Mixed orders over funded accounts (prices around 71,000, tick 100).
fn flow(n: u64, seed: u64, coid_base: u64) -> Vec<Command> {
    let mut rng = seed;
    (0..n)
        .map(|i| {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            let a = AccountId(1 + (rng % 16) as u32);
            let side = if (rng >> 8) & 1 == 0 {
                Side::Buy
            } else {
                Side::Sell
            };
            let price = 71_000 + ((rng >> 12) % 21) as i64 * 100 - 1_000;
            let qty = 1 + ((rng >> 20) % 20) as i64;
            let coid = coid_base + i + 1;
            match (rng >> 32) % 10 {
                0..=5 => cmd::limit(a, coid, 1, side, price, qty),
                6 => cmd::order(
                    a,
                    coid,
                    1,
                    side,
                    OrderType::Limit,
                    TimeInForce::Ioc,
                    price,
                    qty,
                ),
                7 => cmd::cancel(a, coid, (rng >> 40) % (coid_base + i + 1) + 1),
                8 => cmd::modify(a, coid, (rng >> 40) % (coid_base + i + 1) + 1, qty, price),
                _ => cmd::quote(1, price - 200, 50, price + 200, 50),
            }
        })
        .collect()
}

fn submit_all(submitter: &mut pipeline::Submitter, commands: Vec<Command>) {
    for c in commands {
        let mut c = Some(c);
        while let Some(command) = c.take() {
            if let Err(Busy) = submitter.try_submit(Origin(1), command.clone()) {
                c = Some(command);
                std::thread::sleep(Duration::from_micros(50));
            }
        }
    }
}

fn wait_applied(status: &pipeline::PipelineStatus, seq: u64) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while status.applied_seq.load(Ordering::Acquire) < seq {
        assert!(Instant::now() < deadline, "the pipeline did not drain");
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Encodes each command as the journal does, into a buffer allocated once (a fused processor
/// runs this; the journal's own append writes into its mapped segment the same way).
struct EncodingLog {
    buffer: Vec<u8>,
    bytes: u64,
}

impl CommandLog for EncodingLog {
    fn append(&mut self, _: u64, _: u64, command: &Command) -> Result<(), LogError> {
        let len = kuku_journal::codec::encoded_len(command);
        let written = kuku_journal::codec::encode_command(command, &mut self.buffer[..len])
            .map_err(|e| LogError::Failed(e.to_string()))?;
        self.bytes += written as u64;
        Ok(())
    }

    fn commit(&mut self) -> Result<(), LogError> {
        Ok(())
    }
}

#[test]
fn heavy_processor_thread_allocates_nothing_in_steady_state() {
    processor_allocates_nothing(StageLayout::Staged, Box::new(MemoryLog::default()));
}

#[test]
fn heavy_fused_processor_thread_journals_and_allocates_nothing_in_steady_state() {
    let log = EncodingLog {
        buffer: vec![0; 64 << 10],
        bytes: 0,
    };
    processor_allocates_nothing(StageLayout::Fused, Box::new(log));
}

fn processor_allocates_nothing(layout: StageLayout, log: Box<dyn CommandLog>) {
    let mut config = EngineConfig::small();
    config.orders_max = 1 << 16;
    config.keys_max = 1 << 22;
    config.orders_per_account_day_max = 1 << 21;
    let mut d = Driver::krx_market(config, &[("005930", Market::Kospi, 71_000)]);
    for i in 0..16 {
        let a = d.funded_account(&format!("acct{i}"), 1_000_000_000_000);
        d.apply(Command::Adjust {
            account: a,
            asset: Asset::Shares(SymbolId(1)),
            amount: Amount(1_000_000_000),
            external_ref: ExternalRef::new("seed").unwrap(),
            cost_price: kuku_engine::Price(0),
        });
    }
    // The mechanism is live: marking a thread counts its allocations.
    count_on_this_thread();
    drop(std::hint::black_box(vec![1u8; 64]));
    COUNTING.with(|c| c.set(false));
    assert_eq!(ALLOCATIONS.swap(0, Ordering::Relaxed), 1);

    let base = d.seq;
    let consumed = Arc::new(AtomicU64::new(0));
    let seen = Arc::clone(&consumed);
    let outputs = Outputs {
        handlers: vec![(
            "alloc-test-consumer",
            Box::new(move |slot: &OutputSlot, _, _| {
                if slot.last {
                    seen.fetch_add(1, Ordering::Relaxed);
                }
            }),
        )],
        pollers: 0,
        notifiers: vec![],
    };
    let pipeline_config = PipelineConfig {
        input_ring_size: 1 << 12,
        output_ring_size: 1 << 14,
        on_processor_start: Some(count_on_this_thread),
        layout,
        ..PipelineConfig::default()
    };
    let p = pipeline::start(pipeline_config, d.engine, log, outputs);
    let mut submitter = p.submitter.clone();

    let warm_up = 200_000u64;
    submit_all(&mut submitter, flow(warm_up, 0x1234_5678, 0));
    wait_applied(&p.status, base + warm_up);
    // The counter sees the processor thread only; it starts now, after the warm-up.
    ALLOCATIONS.store(0, Ordering::Relaxed);
    let measured = 1_000_000u64;
    submit_all(&mut submitter, flow(measured, 0x9abc_def0, warm_up));
    wait_applied(&p.status, base + warm_up + measured);
    let allocations = ALLOCATIONS.load(Ordering::Relaxed);
    drop(submitter);
    drop(p);
    assert_eq!(
        allocations, 0,
        "allocations on the processor thread in steady state ({layout:?})"
    );
    assert_eq!(consumed.load(Ordering::Relaxed), warm_up + measured);
}
