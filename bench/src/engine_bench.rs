//! The engine comparison harness behind `kuku-bench engine`.
//!
//! One flow is generated once; every registered engine runs it, interleaved (A, B, C, A, B,
//! C, ...) for `runs` rounds, each pass on a fresh engine:
//! - **Throughput pass**: the warm-up ops are applied untimed (they build the book), then the
//!   steady-state ops run inside one `Instant` pair; ops/s = steady ops / elapsed. No timer
//!   per op.
//! - **Latency pass** (separate, after all throughput rounds, also interleaved): the same, but
//!   each steady-state op is timed with an `Instant` pair into an hdrhistogram.
//!
//! After every pass the engine's [`EndState`] is compared with the flow's oracle. An engine
//! that deviates in any pass is reported as a finding and its numbers are marked not
//! comparable (docs/architecture.md §9: a ratio counts only when both sides did the same
//! work and ended in the same state).
//!
//! **Invariants**: the flow is identical for every engine and pass; nothing but the steady
//! ops runs between the two `Instant::now()` calls of a throughput pass (engine construction,
//! warm-up, end-state extraction and drop are outside).
//!
//! **Performance**: one `Box<dyn BookUnderTest>` call per pass; per-op dispatch is static
//! (see [`BookUnderTest`]). Memory: the flow (40 bytes an op) plus one engine at a time.
//!
//! **Known limitations**: closed loop, single thread, no coordinated-omission correction (no
//! offered rate: this measures service time, not latency under load). Per-op latency
//! includes the timer's own cost, which is measured and printed. Medians over few runs on a
//! shared 2-core machine are noisy: read the spread.

use crate::book_under_test::{BookUnderTest, EngineEntry};
use crate::end_state::EndState;
use crate::flow::{Flow, FlowConfig, FlowStats};
use crate::model::ModelBook;
use hdrhistogram::Histogram;
use serde::Serialize;
use serde_json::{Map, Value, json};
use std::io::{self, Write};
use std::time::{Duration, Instant};

/// Highest latency the histograms track (larger values saturate).
const LATENCY_NS_MAX: u64 = 60_000_000_000;
/// Timer-overhead probe length.
const TIMER_PROBES: u32 = 100_000;
/// Flows up to this many ops get a first-divergence search when an engine deviates.
const DIVERGENCE_SEARCH_OPS_MAX: usize = 5_000_000;
/// Reads one percentile out of a latency summary.
type PercentilePick = fn(&LatencySummary) -> u64;
/// Engines whose JSON keys are always present (null when not registered).
const ENGINES_REPORTED: [&str; 3] = ["kuku", "matchcore", "orderbook_rs"];

/// How to run the comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EngineBenchOptions {
    /// Rounds of interleaved passes (each engine runs once per round and pass kind).
    pub runs: usize,
    /// Also run the per-op latency passes.
    pub latency: bool,
}

impl Default for EngineBenchOptions {
    fn default() -> Self {
        Self {
            runs: 5,
            latency: true,
        }
    }
}

/// Percentiles of one latency pass, nanoseconds per op.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct LatencySummary {
    /// Median.
    pub p50_ns: u64,
    /// 90th percentile.
    pub p90_ns: u64,
    /// 99th percentile.
    pub p99_ns: u64,
    /// 99.9th percentile.
    pub p999_ns: u64,
    /// Slowest op.
    pub max_ns: u64,
}

impl LatencySummary {
    fn from_histogram(histogram: &Histogram<u64>) -> Self {
        Self {
            p50_ns: histogram.value_at_quantile(0.50),
            p90_ns: histogram.value_at_quantile(0.90),
            p99_ns: histogram.value_at_quantile(0.99),
            p999_ns: histogram.value_at_quantile(0.999),
            max_ns: histogram.max(),
        }
    }
}

/// Median and spread of a set of samples.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Spread {
    /// Median (mean of the two middle samples for an even count).
    pub median: f64,
    /// Smallest sample.
    pub min: f64,
    /// Largest sample.
    pub max: f64,
    /// `(max - min) / median`, percent.
    pub range_pct: f64,
}

impl Spread {
    /// `None` for no samples.
    pub fn of(samples: &[f64]) -> Option<Spread> {
        let mut sorted: Vec<f64> = samples.to_vec();
        sorted.sort_by(f64::total_cmp);
        let count = sorted.len();
        let (&min, &max) = (sorted.first()?, sorted.last()?);
        let median = if count % 2 == 1 {
            sorted[count / 2]
        } else {
            (sorted[count / 2 - 1] + sorted[count / 2]) / 2.0
        };
        let range_pct = if median > 0.0 {
            (max - min) / median * 100.0
        } else {
            0.0
        };
        Some(Spread {
            median,
            min,
            max,
            range_pct,
        })
    }
}

/// Everything one engine produced over all passes.
#[derive(Debug, Clone, Serialize)]
pub struct EngineResult {
    /// Registered name.
    pub name: &'static str,
    /// Steady-state ops per second, one per throughput pass.
    pub ops_per_s: Vec<f64>,
    /// One per latency pass.
    pub latencies: Vec<LatencySummary>,
    /// Largest anomaly count of any pass.
    pub anomalies: u64,
    /// How the first deviating pass differed from the oracle; empty when every pass agreed.
    pub deviations: Vec<String>,
    /// End state of the last pass.
    pub end_state: Option<EndState>,
    /// For a deviating engine: the first op after which its state differs from the model's
    /// (0-based index into the whole flow, warm-up included) and the op itself.
    pub first_divergence: Option<(usize, String)>,
}

impl EngineResult {
    /// True when every pass ended in the oracle state.
    pub fn state_ok(&self) -> bool {
        self.deviations.is_empty() && self.end_state.is_some()
    }

    /// Median and spread of the throughput passes.
    pub fn ops_per_s_spread(&self) -> Option<Spread> {
        Spread::of(&self.ops_per_s)
    }

    /// Median and spread over passes of one latency percentile.
    pub fn latency_spread(&self, pick: impl Fn(&LatencySummary) -> u64) -> Option<Spread> {
        let samples: Vec<f64> = self.latencies.iter().map(|l| pick(l) as f64).collect();
        Spread::of(&samples)
    }

    fn check(&mut self, state: EndState, anomalies: u64, oracle: &EndState) {
        self.anomalies = self.anomalies.max(anomalies);
        if self.deviations.is_empty() {
            self.deviations = state.differences(oracle);
        }
        self.end_state = Some(state);
    }
}

/// The whole comparison: flow, oracle, per-engine results, context.
#[derive(Debug, Clone, Serialize)]
pub struct EngineBenchReport {
    /// Flow parameters.
    pub config: FlowConfig,
    /// What the flow contains.
    pub stats: FlowStats,
    /// Untimed warm-up ops per pass.
    pub warmup_ops: u64,
    /// Timed ops per pass.
    pub steady_ops: u64,
    /// Expected end state (the model book's).
    pub oracle: EndState,
    /// Per engine, in registry order.
    pub engines: Vec<EngineResult>,
    /// Rounds run.
    pub runs: usize,
    /// Median cost of one `Instant::now()` pair, included in every latency sample.
    pub timer_overhead_ns: u64,
    /// Seconds spent generating the flow.
    pub generate_s: f64,
    /// When the run started, UTC, ISO 8601.
    pub date_utc: String,
    /// CPU model from /proc/cpuinfo, if readable.
    pub cpu: String,
}

impl EngineBenchReport {
    /// True when every engine ended every pass in the oracle state.
    pub fn states_agree(&self) -> bool {
        self.engines.iter().all(EngineResult::state_ok)
    }
}

/// Runs `engines` over `flow`, interleaved; progress lines go to `progress`.
pub fn run(
    flow: &Flow,
    engines: &[EngineEntry],
    options: EngineBenchOptions,
    generate_s: f64,
    progress: &mut dyn Write,
) -> io::Result<EngineBenchReport> {
    let date_utc = crate::machine::utc_now();
    let oracle = flow.expected();
    let mut results: Vec<EngineResult> = engines
        .iter()
        .map(|entry| EngineResult {
            name: entry.name,
            ops_per_s: Vec::new(),
            latencies: Vec::new(),
            anomalies: 0,
            deviations: Vec::new(),
            end_state: None,
            first_divergence: None,
        })
        .collect();
    for round in 1..=options.runs {
        for (entry, result) in engines.iter().zip(&mut results) {
            let (ops_per_s, state, anomalies, detail) = throughput_pass(flow, entry);
            result.check(state, anomalies, oracle);
            result.ops_per_s.push(ops_per_s);
            let verdict = if result.state_ok() {
                "state ok"
            } else {
                "STATE DEVIATES"
            };
            writeln!(
                progress,
                "throughput {round}/{}: {:<12} {:>12.0} ops/s  {verdict}",
                options.runs, entry.name, ops_per_s
            )?;
            if let Some(detail) = detail.filter(|_| round == 1) {
                writeln!(progress, "    {}: {detail}", entry.name)?;
            }
        }
    }
    let timer_overhead_ns = if options.latency {
        timer_overhead_ns()
    } else {
        0
    };
    for round in 1..=(if options.latency { options.runs } else { 0 }) {
        for (entry, result) in engines.iter().zip(&mut results) {
            let (latency, state, anomalies) = latency_pass(flow, entry);
            result.check(state, anomalies, oracle);
            result.latencies.push(latency);
            writeln!(
                progress,
                "latency    {round}/{}: {:<12} p50 {} ns  p99 {} ns",
                options.runs, entry.name, latency.p50_ns, latency.p99_ns
            )?;
        }
    }
    for (entry, result) in engines.iter().zip(&mut results) {
        if !result.state_ok() && flow.ops().len() <= DIVERGENCE_SEARCH_OPS_MAX {
            writeln!(
                progress,
                "searching the first op after which {} deviates ...",
                entry.name
            )?;
            result.first_divergence = first_divergence(flow, entry)
                .map(|index| (index, format!("{:?}", flow.ops()[index])));
        }
    }
    Ok(EngineBenchReport {
        config: flow.config().clone(),
        stats: flow.stats().clone(),
        warmup_ops: flow.warmup_ops().len() as u64,
        steady_ops: flow.steady_ops().len() as u64,
        oracle: oracle.clone(),
        engines: results,
        runs: options.runs,
        timer_overhead_ns,
        generate_s,
        date_utc,
        cpu: crate::machine::cpu_model(),
    })
}

/// A fresh engine with the warm-up applied (untimed).
fn warmed_up(flow: &Flow, entry: &EngineEntry) -> Box<dyn BookUnderTest> {
    let mut book = (entry.make)(flow);
    book.run_all(flow.warmup_ops());
    book
}

fn throughput_pass(flow: &Flow, entry: &EngineEntry) -> (f64, EndState, u64, Option<String>) {
    let mut book = warmed_up(flow, entry);
    let steady = flow.steady_ops();
    let start = Instant::now();
    book.run_all(steady);
    let elapsed = start.elapsed();
    let state = book.end_state();
    let anomalies = book.anomalies();
    let detail = book.detail();
    drop(book);
    (
        steady.len() as f64 / elapsed.max(Duration::from_nanos(1)).as_secs_f64(),
        state,
        anomalies,
        detail,
    )
}

fn latency_pass(flow: &Flow, entry: &EngineEntry) -> (LatencySummary, EndState, u64) {
    let mut histogram = Histogram::<u64>::new_with_bounds(1, LATENCY_NS_MAX, 3)
        .expect("constant histogram bounds are valid");
    let mut book = warmed_up(flow, entry);
    book.run_timed(flow.steady_ops(), &mut histogram);
    let state = book.end_state();
    let anomalies = book.anomalies();
    drop(book);
    (LatencySummary::from_histogram(&histogram), state, anomalies)
}

/// Smallest op index `i` such that the engine's state after `ops[..=i]` differs from the
/// model's, by bisection over prefixes (each probe runs a fresh engine and a fresh model).
/// Assumes a divergence persists once it appears; `None` if the full flow agrees.
fn first_divergence(flow: &Flow, entry: &EngineEntry) -> Option<usize> {
    let ops = flow.ops();
    let differs = |len: usize| {
        let mut book = (entry.make)(flow);
        book.run_all(&ops[..len]);
        let mut model = ModelBook::new(flow.config().symbols);
        model.run_all(&ops[..len]);
        book.end_state() != model.end_state()
    };
    if !differs(ops.len()) {
        return None;
    }
    let (mut agreeing, mut differing) = (0, ops.len());
    while differing - agreeing > 1 {
        let middle = agreeing + (differing - agreeing) / 2;
        if differs(middle) {
            differing = middle;
        } else {
            agreeing = middle;
        }
    }
    Some(differing - 1)
}

/// Median cost of an `Instant::now()` pair with nothing between.
fn timer_overhead_ns() -> u64 {
    let mut histogram = Histogram::<u64>::new_with_bounds(1, LATENCY_NS_MAX, 3)
        .expect("constant histogram bounds are valid");
    for _ in 0..TIMER_PROBES {
        let start = Instant::now();
        let elapsed_ns = start.elapsed().as_nanos();
        histogram.saturating_record(u64::try_from(elapsed_ns).unwrap_or(u64::MAX));
    }
    histogram.value_at_quantile(0.5)
}

fn thousands(value: f64) -> String {
    let digits = format!("{:.0}", value.max(0.0));
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn price_text(price: Option<i64>) -> String {
    price.map_or_else(|| "-".to_string(), |p| p.to_string())
}

impl EngineBenchReport {
    /// Human-readable tables: flow, throughput, latency, state check, findings.
    pub fn write_text(&self, out: &mut dyn Write) -> io::Result<()> {
        self.write_flow(out)?;
        self.write_throughput(out)?;
        if self
            .engines
            .iter()
            .any(|engine| !engine.latencies.is_empty())
        {
            self.write_latency(out)?;
        }
        self.write_state_check(out)?;
        self.write_findings(out)
    }

    fn write_flow(&self, out: &mut dyn Write) -> io::Result<()> {
        let c = &self.config;
        let s = &self.stats;
        writeln!(
            out,
            "kuku-bench engine  {}  cpu: {}",
            self.date_utc, self.cpu
        )?;
        writeln!(
            out,
            "flow: seed {} symbols {} accounts {} depth {} warm-up ops {} steady ops {} (generated in {:.1} s), runs {}",
            c.seed,
            c.symbols,
            c.accounts,
            c.depth_orders,
            self.warmup_ops,
            self.steady_ops,
            self.generate_s,
            self.runs
        )?;
        writeln!(
            out,
            "grid: base {} tick {} band {}..={} qty 1..={}",
            c.price_base,
            c.price_tick,
            c.price_min(),
            c.price_max(),
            c.qty_max
        )?;
        let pct = |n: u64| n as f64 * 100.0 / (self.steady_ops.max(1)) as f64;
        writeln!(
            out,
            "steady mix (realized): passive {:.1}%  crossing {:.1}%  ioc fill {:.1}% miss {:.1}%  fok fill {:.1}% kill {:.1}%  market {:.1}%  cancel {:.1}%  modify qty-down {:.1}% qty-up {:.1}% price {:.1}%",
            pct(s.limit_passive),
            pct(s.limit_crossing),
            pct(s.ioc_fill),
            pct(s.ioc_miss),
            pct(s.fok_fill),
            pct(s.fok_kill),
            pct(s.market),
            pct(s.cancel),
            pct(s.modify_qty_down),
            pct(s.modify_qty_up),
            pct(s.modify_price)
        )?;
        writeln!(
            out,
            "      depth-controller swaps {}  fallbacks to passive {}  trades {}",
            s.depth_controller_swaps, s.fallbacks_to_passive, self.oracle.trades
        )
    }

    fn write_throughput(&self, out: &mut dyn Write) -> io::Result<()> {
        writeln!(
            out,
            "\nthroughput, steady-state ops/s (one timer per pass, fresh engine, warm-up untimed)"
        )?;
        writeln!(
            out,
            "{:<14}{:>14}{:>14}{:>14}{:>9}  note",
            "engine", "median", "min", "max", "range"
        )?;
        for engine in &self.engines {
            let Some(spread) = engine.ops_per_s_spread() else {
                continue;
            };
            let note = if engine.state_ok() {
                ""
            } else {
                "NOT COMPARABLE (state deviates)"
            };
            writeln!(
                out,
                "{:<14}{:>14}{:>14}{:>14}{:>8.1}%  {note}",
                engine.name,
                thousands(spread.median),
                thousands(spread.min),
                thousands(spread.max),
                spread.range_pct
            )?;
        }
        Ok(())
    }

    fn write_latency(&self, out: &mut dyn Write) -> io::Result<()> {
        writeln!(
            out,
            "\nlatency per op, ns: median over passes [min..max]; includes ~{} ns timer overhead",
            self.timer_overhead_ns
        )?;
        writeln!(
            out,
            "{:<14}{:>10}{:>10}{:>28}{:>12}{:>12}",
            "engine", "p50", "p90", "p99 [min..max]", "p99.9", "max"
        )?;
        for engine in &self.engines {
            let (Some(p50), Some(p90), Some(p99), Some(p999), Some(max)) = (
                engine.latency_spread(|l| l.p50_ns),
                engine.latency_spread(|l| l.p90_ns),
                engine.latency_spread(|l| l.p99_ns),
                engine.latency_spread(|l| l.p999_ns),
                engine.latency_spread(|l| l.max_ns),
            ) else {
                continue;
            };
            let p99_text = format!("{:.0} [{:.0}..{:.0}]", p99.median, p99.min, p99.max);
            writeln!(
                out,
                "{:<14}{:>10.0}{:>10.0}{:>28}{:>12.0}{:>12.0}",
                engine.name, p50.median, p90.median, p99_text, p999.median, max.median
            )?;
        }
        Ok(())
    }

    fn write_state_check(&self, out: &mut dyn Write) -> io::Result<()> {
        writeln!(out, "\nstate check (every pass vs the model oracle)")?;
        writeln!(
            out,
            "{:<14}{:>12}{:>14}{:>10}{:>10}{:>12}{:>18}{:>10}  verdict",
            "engine", "live", "open qty", "bid[0]", "ask[0]", "trades", "trade hash", "anomalies"
        )?;
        let row = |out: &mut dyn Write,
                   name: &str,
                   state: &EndState,
                   anomalies: String,
                   verdict: &str| {
            let open_qty: i64 = state.books.iter().map(|book| book.open_qty).sum();
            let first = state.books.first();
            writeln!(
                out,
                "{:<14}{:>12}{:>14}{:>10}{:>10}{:>12}{:>18}{:>10}  {verdict}",
                name,
                state.live_orders,
                open_qty,
                price_text(first.and_then(|b| b.best_bid)),
                price_text(first.and_then(|b| b.best_ask)),
                state.trades,
                format!("{:016x}", state.trade_hash),
                anomalies
            )
        };
        row(out, "oracle", &self.oracle, "-".to_string(), "expected")?;
        for engine in &self.engines {
            if let Some(state) = &engine.end_state {
                let verdict = if engine.state_ok() { "ok" } else { "DEVIATES" };
                row(
                    out,
                    engine.name,
                    state,
                    engine.anomalies.to_string(),
                    verdict,
                )?;
            }
        }
        if self.config.symbols > 1 {
            writeln!(
                out,
                "({} books; bid/ask shown for symbol 0, all books compared)",
                self.config.symbols
            )?;
        }
        let verdict = if self.states_agree() { "yes" } else { "NO" };
        writeln!(out, "all engines agree with the oracle: {verdict}")
    }

    fn write_findings(&self, out: &mut dyn Write) -> io::Result<()> {
        for engine in self.engines.iter().filter(|engine| !engine.state_ok()) {
            writeln!(
                out,
                "FINDING: {} ends in a different state than the oracle; its numbers are not comparable:",
                engine.name
            )?;
            for deviation in &engine.deviations {
                writeln!(out, "  - {deviation}")?;
            }
            if let Some((index, op)) = &engine.first_divergence {
                writeln!(
                    out,
                    "  first differing state after op #{index} (0-based, warm-up included): {op}"
                )?;
            }
        }
        Ok(())
    }

    /// One JSON object: flow, oracle, per-engine medians and spreads (`<name>_ops_per_s`,
    /// `<name>_p99_ns`, ...), `states_agree`. The keys for kuku, matchcore and orderbook_rs
    /// are always present (null when the engine did not run).
    pub fn to_json(&self) -> Value {
        let mut root = Map::new();
        root.insert("bench".into(), json!("engine"));
        root.insert("date_utc".into(), json!(self.date_utc));
        root.insert("cpu".into(), json!(self.cpu));
        root.insert("seed".into(), json!(self.config.seed));
        root.insert("symbols".into(), json!(self.config.symbols));
        root.insert("depth".into(), json!(self.config.depth_orders));
        root.insert("warmup_ops".into(), json!(self.warmup_ops));
        root.insert("ops".into(), json!(self.steady_ops));
        root.insert("runs".into(), json!(self.runs));
        root.insert("timer_overhead_ns".into(), json!(self.timer_overhead_ns));
        root.insert("states_agree".into(), json!(self.states_agree()));
        for name in ENGINES_REPORTED {
            for suffix in [
                "ops_per_s",
                "ops_per_s_min",
                "ops_per_s_max",
                "p50_ns",
                "p99_ns",
                "p999_ns",
            ] {
                root.insert(format!("{name}_{suffix}"), Value::Null);
            }
        }
        for engine in &self.engines {
            self.insert_engine_keys(&mut root, engine);
        }
        root.insert("oracle".into(), json!(self.oracle));
        root.insert("flow_config".into(), json!(self.config));
        root.insert("flow_stats".into(), json!(self.stats));
        root.insert("engines".into(), json!(self.engines));
        Value::Object(root)
    }

    fn insert_engine_keys(&self, root: &mut Map<String, Value>, engine: &EngineResult) {
        let name = engine.name;
        if let Some(spread) = engine.ops_per_s_spread() {
            root.insert(format!("{name}_ops_per_s"), json!(spread.median.round()));
            root.insert(format!("{name}_ops_per_s_min"), json!(spread.min.round()));
            root.insert(format!("{name}_ops_per_s_max"), json!(spread.max.round()));
            root.insert(
                format!("{name}_ops_per_s_range_pct"),
                json!(spread.range_pct),
            );
        }
        let percentiles: [(&str, PercentilePick); 4] = [
            ("p50_ns", |l| l.p50_ns),
            ("p99_ns", |l| l.p99_ns),
            ("p999_ns", |l| l.p999_ns),
            ("max_ns", |l| l.max_ns),
        ];
        for (key, pick) in percentiles {
            if let Some(spread) = engine.latency_spread(pick) {
                root.insert(format!("{name}_{key}"), json!(spread.median.round()));
                root.insert(format!("{name}_{key}_min"), json!(spread.min.round()));
                root.insert(format!("{name}_{key}_max"), json!(spread.max.round()));
            }
        }
        root.insert(format!("{name}_state_ok"), json!(engine.state_ok()));
        root.insert(format!("{name}_anomalies"), json!(engine.anomalies));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spread_takes_middle_of_sorted_samples() {
        let spread = Spread::of(&[3.0, 1.0, 2.0]).unwrap();
        assert_eq!((spread.median, spread.min, spread.max), (2.0, 1.0, 3.0));
        assert_eq!(Spread::of(&[4.0, 1.0, 2.0, 3.0]).unwrap().median, 2.5);
        assert!(Spread::of(&[]).is_none());
    }

    #[test]
    fn thousands_groups_digits() {
        assert_eq!(thousands(1_234_567.4), "1,234,567");
        assert_eq!(thousands(999.0), "999");
    }

    #[test]
    fn iso_date_is_well_formed() {
        let date = crate::machine::utc_now();
        assert_eq!(date.len(), 20);
        assert!(date.starts_with("20") && date.ends_with('Z'));
    }
}
