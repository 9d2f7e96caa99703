#!/usr/bin/env bash
# The one test command: every test of the workspace (nextest if present, else cargo test),
# the doctests, and every benchmark built and run once at smoke size.
# Exit code is non-zero on any failure.
set -euo pipefail
cd "$(dirname "$0")/.."

# Heavy tests (crash, outage, failover, many connections) open many files.
ulimit -n 65536 2>/dev/null || ulimit -n 4096 2>/dev/null || true
export RUST_BACKTRACE="${RUST_BACKTRACE:-1}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

step() { printf '\n==> %s\n' "$*"; }

step "build (all targets)"
cargo build --workspace --all-targets --locked

if cargo nextest --version >/dev/null 2>&1; then
    step "tests (cargo nextest)"
    cargo nextest run --workspace --locked --no-fail-fast
else
    step "tests (cargo test; install cargo-nextest for parallel runs and test groups)"
    cargo test --workspace --locked --no-fail-fast -- --test-threads=2
fi

step "doctests"
cargo test --workspace --locked --doc

step "benchmarks build and run once (smoke size)"
cargo test --workspace --locked --benches

step "all tests passed"
