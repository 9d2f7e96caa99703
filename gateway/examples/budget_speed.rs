//! The cost of one request-budget check (ADR-016's numbers), the three ways a door can take a
//! token, each interleaved with the others over several rounds:
//! - a bucket owned by the session (the per-session limit this replaced),
//! - the account's shared budget held by the session (what the TCP gateway does),
//! - a lookup of the account's budget per request (what a door that keeps no session state
//!   would do), among 10,000 accounts.
//!
//! `cargo run --release -p kuku-gateway --example budget_speed`

use kuku_engine::AccountId;
use kuku_gateway::translate::{RateLimits, TokenBucket};
use std::hint::black_box;
use std::time::Instant;

const N: u64 = 10_000_000;
const ROUNDS: usize = 5;

fn main() {
    let t0 = Instant::now();
    let limits = RateLimits::new(u32::MAX, u32::MAX);
    for a in 1..=10_000 {
        limits.budget(AccountId(a), t0);
    }
    let mut owned = TokenBucket::new(u32::MAX, u32::MAX, t0);
    let shared = limits.budget(AccountId(1), t0);
    let mut results: [Vec<f64>; 3] = [Vec::new(), Vec::new(), Vec::new()];
    for _ in 0..ROUNDS {
        let t = Instant::now();
        for _ in 0..N {
            black_box(owned.try_take(black_box(t0)));
        }
        results[0].push(t.elapsed().as_nanos() as f64 / N as f64);
        let t = Instant::now();
        for _ in 0..N {
            black_box(shared.try_take(black_box(t0)));
        }
        results[1].push(t.elapsed().as_nanos() as f64 / N as f64);
        let t = Instant::now();
        for i in 0..N {
            let account = AccountId(1 + (i % 10_000) as u32);
            black_box(limits.try_take(black_box(account), black_box(t0)));
        }
        results[2].push(t.elapsed().as_nanos() as f64 / N as f64);
    }
    let names = [
        "session-owned bucket",
        "shared account budget, held by the session",
        "account budget looked up per request",
    ];
    for (name, r) in names.iter().zip(results.iter_mut()) {
        r.sort_by(f64::total_cmp);
        println!(
            "{name}: median {:.1} ns per check (range {:.1}-{:.1}, {ROUNDS} rounds of {N})",
            r[ROUNDS / 2],
            r[0],
            r[ROUNDS - 1]
        );
    }
}
