//! After warm-up, 1,000,000 mixed commands (orders of every type, cancels, modifies, quotes,
//! with risk, ledger, positions and idempotency on) allocate nothing on the applying thread.
//!
//! A counting global allocator counts allocations made by this thread while a thread-local
//! flag is set; this file is its own test binary so nothing else shares the allocator.

use kuku_engine::testkit::cmd;
use kuku_engine::*;
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};

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

/// Reads every event so the work cannot be optimized away; allocates nothing.
struct Checksum(u64);

impl EventSink for Checksum {
    fn emit(&mut self, event: &Event) {
        let v = match event {
            Event::Trade { qty, price, .. } => (qty.0 ^ price.0) as u64,
            Event::AccountUpdated { cash, .. } => cash.0 as u64,
            _ => 1,
        };
        self.0 = self.0.wrapping_mul(31).wrapping_add(v);
    }
}

const ACCOUNTS: u32 = 100;
const SYMBOLS: u32 = 4;

/// A deterministic mixed flow over funded accounts (every account holds cash and shares).
fn flow(n: usize, seed: u64, first_seq: u64, first_coid: u64) -> Vec<Envelope> {
    let mut rng = seed;
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let mut out = Vec::with_capacity(n);
    let mut coid = first_coid;
    for i in 0..n {
        let r = next();
        let account = AccountId(1 + (r % ACCOUNTS as u64) as u32);
        let symbol = 1 + ((r >> 8) % SYMBOLS as u64) as u32;
        let side = if (r >> 16) & 1 == 0 {
            Side::Buy
        } else {
            Side::Sell
        };
        let step = ((r >> 20) % 21) as i64 - 10;
        let price = 71_000 + step * 100;
        let qty = 1 + ((r >> 32) % 50) as i64;
        coid += 1;
        let command = match (r >> 40) % 20 {
            0..=9 => cmd::limit(account, coid, symbol, side, price, qty),
            10 | 11 => cmd::order(
                account,
                coid,
                symbol,
                side,
                OrderType::Limit,
                TimeInForce::Ioc,
                price,
                qty,
            ),
            12 => cmd::order(
                account,
                coid,
                symbol,
                side,
                OrderType::Limit,
                TimeInForce::Fok,
                price,
                qty,
            ),
            13 => cmd::market(account, coid, symbol, side, qty),
            14 | 15 => cmd::cancel(account, coid, (r >> 44) % (i as u64 + 1) + 1),
            16 => cmd::modify(account, coid, (r >> 44) % (i as u64 + 1) + 1, qty, price),
            _ => cmd::quote(symbol, price - 200, 100, price + 200, 100),
        };
        out.push(Envelope {
            seq: first_seq + i as u64,
            ts: 2_000_000_000 + i as u64,
            command,
        });
    }
    out
}

#[test]
fn a_million_mixed_commands_allocate_nothing_after_warm_up() {
    let config = EngineConfig {
        orders_max: 1 << 17,
        accounts_max: ACCOUNTS + 1,
        symbols_max: 8,
        levels_max: 4_096,
        orders_per_account_day_max: 1 << 16,
        keys_max: 1 << 22,
        positions_max: 1_024,
        open_tx_max: 16,
        closed_tx_window_max: 1_024,
        accounting: true,
        ladder: LadderPolicy::Auto,
    };
    let mut d = kuku_engine::testkit::Driver::krx_market(config, &[]);
    for s in 0..SYMBOLS {
        d.apply(cmd::register_krx(
            &format!("00{s:04}"),
            "S",
            Market::Kospi,
            71_000,
        ));
    }
    for a in 0..ACCOUNTS {
        let id = d.funded_account(&format!("acct{a}"), 1_000_000_000_000);
        for s in 1..=SYMBOLS {
            d.apply(Command::Adjust {
                account: id,
                asset: Asset::Shares(SymbolId(s)),
                amount: Amount(100_000_000),
                external_ref: ExternalRef::new(&format!("seed{a}-{s}")).unwrap(),
                cost_price: Price(0),
            });
        }
    }
    let mut engine = d.engine;
    let warm_up = flow(200_000, 0x9e37_79b9_7f4a_7c15, d.seq + 1, 0);
    let measured = flow(
        1_000_000,
        0xd1b5_4a32_d192_ed03,
        d.seq + 1 + 200_000,
        10_000_000,
    );
    let mut sink = Checksum(0);
    for e in &warm_up {
        engine.apply(e, &mut sink);
    }
    let live_before = engine.live_order_count();

    // The counter itself works: one deliberate allocation is seen.
    COUNTING.with(|c| c.set(true));
    drop(std::hint::black_box(Box::new(7u64)));
    COUNTING.with(|c| c.set(false));
    assert_eq!(ALLOCATIONS.swap(0, Ordering::Relaxed), 1);

    COUNTING.with(|c| c.set(true));
    for e in &measured {
        engine.apply(e, &mut sink);
    }
    COUNTING.with(|c| c.set(false));
    let allocations = ALLOCATIONS.load(Ordering::Relaxed);

    assert_eq!(
        allocations, 0,
        "allocations while applying 1,000,000 commands"
    );
    assert!(sink.0 != 0 && live_before > 100, "the flow did real work");
    engine.check_invariants().unwrap();
}
