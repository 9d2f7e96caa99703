//! The one interface every engine in a comparison implements, and how engines are registered.
//!
//! An adapter translates [`FlowOp`]s into its engine's commands, hashes the trades the engine
//! reports through a [`TradeHasher`](crate::end_state::TradeHasher) and reports an
//! [`EndState`] at the end.
//!
//! # Writing an adapter (e.g. Kuku's)
//! 1. `impl BookUnderTest for KukuBook`; `name()` returns `"kuku"` (JSON keys `kuku_*`).
//! 2. In `KukuBook::new(flow: &Flow)` set everything up outside the measured loop: one
//!    symbol per `0..flow.config().symbols` with a fixed tick `price_tick` and the band
//!    `price_min()..=price_max()` around `price_base`; accounts `1..=accounts`, each funded
//!    far beyond what it can hold at once (`FlowStats::qty_op_max` and
//!    `FlowStats::notional_op_max` bound a single op; a killed FOK asks for more than the
//!    whole book); the continuous session open. A reject for funds would be a cheap reject
//!    the peers never do, which makes the comparison unfair (docs/architecture.md §9).
//! 3. `apply`: translate each [`FlowOp`]; map the engine's order ids to flow ids (if the
//!    engine numbers accepted orders densely from 1 and accepts every `Limit` and `Market`,
//!    including IOCs and FOKs that do not trade, they are equal); feed every trade in
//!    execution order to one [`TradeHasher`](crate::end_state::TradeHasher) as (maker flow
//!    id, taker flow id, price, qty). Count unexpected rejects in `anomalies`.
//! 4. `end_state`: live orders, open quantity and best bid / ask per symbol, plus the hasher.
//! 5. Register it in [`crate::engines::registered_engines`].
//!
//! **Performance**: the harness calls [`BookUnderTest::run_all`] and
//! [`BookUnderTest::run_timed`] once per pass through a `Box<dyn BookUnderTest>`; their
//! default bodies are compiled per implementing type, so the per-op [`BookUnderTest::apply`]
//! call inside the loop is static and can be inlined. Dynamic dispatch costs one call per
//! pass, not one per op. Adapters should size their tables from the [`Flow`] in their
//! factory ([`Flow::id_max`], [`Flow::ops_per_symbol`]) so the measured loop does not grow
//! them.
//!
//! **Known limitations**: latency per op includes one `Instant::now()` pair (the harness
//! measures and prints that overhead).

use crate::end_state::EndState;
use crate::flow::{Flow, FlowOp};
use hdrhistogram::Histogram;
use std::time::Instant;

/// An order book (or whole engine) that runs a flow.
pub trait BookUnderTest {
    /// Short name, also used for JSON keys (`<name>_ops_per_s`); `[a-z0-9_]` only.
    fn name(&self) -> &'static str;

    /// Applies one op. Must not panic on an op the engine rejects: count it as an anomaly.
    fn apply(&mut self, op: &FlowOp);

    /// Applies every op in order (the throughput pass).
    fn run_all(&mut self, ops: &[FlowOp]) {
        for op in ops {
            self.apply(op);
        }
    }

    /// Applies every op in order, recording each op's wall time in nanoseconds.
    fn run_timed(&mut self, ops: &[FlowOp], latencies_ns: &mut Histogram<u64>) {
        for op in ops {
            let start = Instant::now();
            self.apply(op);
            let elapsed_ns = start.elapsed().as_nanos();
            latencies_ns.saturating_record(u64::try_from(elapsed_ns).unwrap_or(u64::MAX));
        }
    }

    /// The state to compare with the flow's oracle.
    fn end_state(&self) -> EndState;

    /// Ops the engine answered in a way the flow does not expect (a reject of a valid op, a
    /// trade id it cannot map back, ...). Reported next to the state check.
    fn anomalies(&self) -> u64 {
        0
    }

    /// A line about the engine's internals after a pass, printed with the first round's
    /// progress (Kuku: how many orders were placed away from their home slot).
    fn detail(&self) -> Option<String> {
        None
    }
}

/// Builds a fresh engine for a flow (sized from it).
pub type BookFactory = Box<dyn Fn(&Flow) -> Box<dyn BookUnderTest>>;

/// A registered engine: its name and how to build a fresh instance.
pub struct EngineEntry {
    /// Same as the built engine's [`BookUnderTest::name`].
    pub name: &'static str,
    /// Factory called once per pass.
    pub make: BookFactory,
}

impl EngineEntry {
    /// Registers `make` under `name`.
    pub fn new(
        name: &'static str,
        make: impl Fn(&Flow) -> Box<dyn BookUnderTest> + 'static,
    ) -> Self {
        Self {
            name,
            make: Box::new(make),
        }
    }
}

impl std::fmt::Debug for EngineEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EngineEntry")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}
