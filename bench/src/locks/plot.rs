//! The experiment's plot: throughput and p99 latency against concurrency, one line per
//! strategy, one row of two panels per scenario, as a self-contained SVG (no dependency).
//!
//! Both axes are logarithmic (concurrency 1..1,000; orders/s and microseconds span several
//! decades). Points are the medians the summary holds; a strategy without a point at some
//! concurrency is drawn through the points it has.
//!
//! **Invariants**: a strategy keeps its color in every plot; strategies that are in the
//! experiment to show how they fail are dashed.
//!
//! **Known limitations**: values of 0 (a strategy that accepted nothing) cannot be drawn on a
//! log axis and are left out.

use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt::Write;

const PANEL_W: f64 = 420.0;
const PANEL_H: f64 = 260.0;
const MARGIN_LEFT: f64 = 70.0;
const MARGIN_TOP: f64 = 50.0;
const GAP_X: f64 = 90.0;
const GAP_Y: f64 = 80.0;
const LEGEND_W: f64 = 190.0;

/// A fixed color per strategy, so every plot of the experiment reads the same.
fn color(strategy: &str) -> &'static str {
    match strategy {
        "naive-rc" => "#bbbbbb",
        "naive-rr" => "#888888",
        "pessimistic" => "#1f77b4",
        "optimistic" => "#ff7f0e",
        "redis-lock" => "#9467bd",
        "redis-lock-unfenced" => "#c5b0d5",
        "atomic" => "#2ca02c",
        "kuku" => "#d62728",
        "kuku-session-per-client" => "#e377c2",
        "kuku-none" => "#f4a3a3",
        _ => "#17becf",
    }
}

/// Strategies that are in the experiment to show how they fail are dashed.
fn dash(strategy: &str) -> &'static str {
    match strategy {
        "naive-rc" | "naive-rr" | "redis-lock-unfenced" => " stroke-dasharray=\"5,4\"",
        _ => "",
    }
}

/// One point: concurrency and the value.
type Series = BTreeMap<String, Vec<(f64, f64)>>;

fn log_range(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (mut lo, mut hi) = (f64::MAX, f64::MIN);
    for v in values.filter(|v| *v > 0.0) {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if lo > hi {
        return (1.0, 10.0);
    }
    let lo = 10f64.powf(lo.log10().floor());
    let hi = 10f64.powf(hi.log10().ceil().max(lo.log10() + 1.0));
    (lo, hi)
}

fn human(v: f64) -> String {
    if v >= 1e6 {
        format!("{}M", v / 1e6)
    } else if v >= 1e3 {
        format!("{}k", v / 1e3)
    } else {
        format!("{v}")
    }
}

#[allow(clippy::too_many_arguments)]
fn panel(
    svg: &mut String,
    x0: f64,
    y0: f64,
    title: &str,
    y_label: &str,
    series: &Series,
    x_range: (f64, f64),
) {
    let y_range = log_range(series.values().flatten().map(|p| p.1));
    let px = |x: f64| {
        x0 + PANEL_W * (x.log10() - x_range.0.log10()) / (x_range.1.log10() - x_range.0.log10())
    };
    let py = |y: f64| {
        y0 + PANEL_H
            * (1.0 - (y.log10() - y_range.0.log10()) / (y_range.1.log10() - y_range.0.log10()))
    };
    let _ = writeln!(
        svg,
        "<rect x=\"{x0}\" y=\"{y0}\" width=\"{PANEL_W}\" height=\"{PANEL_H}\" fill=\"none\" stroke=\"#999\"/>"
    );
    let _ = writeln!(
        svg,
        "<text x=\"{}\" y=\"{}\" font-size=\"13\" font-weight=\"bold\">{title}</text>",
        x0,
        y0 - 10.0
    );
    // Decade grid lines.
    let mut x = x_range.0;
    while x <= x_range.1 * 1.0001 {
        let gx = px(x);
        let _ = writeln!(
            svg,
            "<line x1=\"{gx:.1}\" y1=\"{y0}\" x2=\"{gx:.1}\" y2=\"{:.1}\" stroke=\"#e5e5e5\"/>\n<text x=\"{gx:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
            y0 + PANEL_H,
            y0 + PANEL_H + 16.0,
            human(x)
        );
        x *= 10.0;
    }
    let mut y = y_range.0;
    while y <= y_range.1 * 1.0001 {
        let gy = py(y);
        let _ = writeln!(
            svg,
            "<line x1=\"{x0}\" y1=\"{gy:.1}\" x2=\"{:.1}\" y2=\"{gy:.1}\" stroke=\"#e5e5e5\"/>\n<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
            x0 + PANEL_W,
            x0 - 6.0,
            gy + 4.0,
            human(y)
        );
        y *= 10.0;
    }
    let _ = writeln!(
        svg,
        "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">concurrent clients</text>",
        x0 + PANEL_W / 2.0,
        y0 + PANEL_H + 34.0
    );
    let _ = writeln!(
        svg,
        "<text x=\"{:.1}\" y=\"{:.1}\" transform=\"rotate(-90 {:.1} {:.1})\" text-anchor=\"middle\">{y_label}</text>",
        x0 - 52.0,
        y0 + PANEL_H / 2.0,
        x0 - 52.0,
        y0 + PANEL_H / 2.0
    );
    for (name, points) in series {
        let c = color(name);
        let pts: Vec<String> = points
            .iter()
            .filter(|p| p.1 > 0.0)
            .map(|&(x, y)| format!("{:.1},{:.1}", px(x), py(y)))
            .collect();
        let _ = writeln!(
            svg,
            "<polyline fill=\"none\" stroke=\"{c}\" stroke-width=\"2\"{} points=\"{}\"/>",
            dash(name),
            pts.join(" ")
        );
        for p in &pts {
            let (cx, cy) = p.split_once(',').unwrap_or(("0", "0"));
            let _ = writeln!(
                svg,
                "<circle cx=\"{cx}\" cy=\"{cy}\" r=\"3\" fill=\"{c}\"/>"
            );
        }
    }
}

/// The SVG for the `medians` array of a summary (see `super::summary`).
pub fn svg(summary: &Value) -> String {
    let empty = Vec::new();
    let medians = summary["medians"].as_array().unwrap_or(&empty);
    let mut scenarios: Vec<String> = Vec::new();
    let mut strategies: Vec<String> = Vec::new();
    for m in medians {
        let sc = m["scenario"].as_str().unwrap_or("").to_owned();
        let st = m["strategy"].as_str().unwrap_or("").to_owned();
        if !scenarios.contains(&sc) {
            scenarios.push(sc);
        }
        if !strategies.contains(&st) {
            strategies.push(st);
        }
    }
    let x_range = log_range(medians.iter().filter_map(|m| m["clients"].as_f64()));
    let rows = scenarios.len().max(1) as f64;
    let width = MARGIN_LEFT + 2.0 * PANEL_W + GAP_X + LEGEND_W;
    let height = MARGIN_TOP + rows * (PANEL_H + GAP_Y) + 20.0;
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" font-family=\"sans-serif\" font-size=\"11\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
    );
    let _ = writeln!(
        svg,
        "<text x=\"{MARGIN_LEFT}\" y=\"22\" font-size=\"15\">kuku-bench locks: accepted orders/s and p99 latency against concurrency (medians of {} runs, {})</text>",
        summary["runs"],
        summary["date"].as_str().unwrap_or("")
    );
    for (row, scenario) in scenarios.iter().enumerate() {
        let mut throughput = Series::new();
        let mut p99 = Series::new();
        for m in medians
            .iter()
            .filter(|m| m["scenario"] == scenario.as_str())
        {
            let name = m["strategy"].as_str().unwrap_or("").to_owned();
            let clients = m["clients"].as_f64().unwrap_or(0.0);
            throughput
                .entry(name.clone())
                .or_default()
                .push((clients, m["accepted_per_s"].as_f64().unwrap_or(0.0)));
            p99.entry(name)
                .or_default()
                .push((clients, m["p99_us"].as_f64().unwrap_or(0.0)));
        }
        let y0 = MARGIN_TOP + row as f64 * (PANEL_H + GAP_Y) + 10.0;
        let what = match scenario.as_str() {
            "buy" => "one hot account, buys reserve cash",
            "sell" => "one hot account, sells reserve shares",
            "mix" => "buys and sells over many accounts",
            _ => "",
        };
        panel(
            &mut svg,
            MARGIN_LEFT,
            y0,
            &format!("{scenario}: {what}: accepted orders/s"),
            "orders/s",
            &throughput,
            x_range,
        );
        panel(
            &mut svg,
            MARGIN_LEFT + PANEL_W + GAP_X,
            y0,
            &format!("{scenario}: p99 latency"),
            "p99 (µs)",
            &p99,
            x_range,
        );
    }
    let lx = MARGIN_LEFT + 2.0 * PANEL_W + GAP_X + 20.0;
    for (i, name) in strategies.iter().enumerate() {
        let ly = MARGIN_TOP + 20.0 + 18.0 * i as f64;
        let _ = writeln!(
            svg,
            "<line x1=\"{lx}\" y1=\"{ly}\" x2=\"{}\" y2=\"{ly}\" stroke=\"{}\" stroke-width=\"3\"{}/>\n<text x=\"{}\" y=\"{}\">{name}</text>",
            lx + 22.0,
            color(name),
            dash(name),
            lx + 28.0,
            ly + 4.0
        );
    }
    svg.push_str("</svg>\n");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_summary_plots_every_strategy_and_scenario() {
        let summary = json!({
            "runs": 3, "date": "2026-12-06T00:00:00Z",
            "medians": [
                {"strategy": "kuku", "scenario": "buy", "clients": 1, "accepted_per_s": 1000.0, "p99_us": 900.0},
                {"strategy": "kuku", "scenario": "buy", "clients": 100, "accepted_per_s": 50000.0, "p99_us": 4000.0},
                {"strategy": "atomic", "scenario": "buy", "clients": 1, "accepted_per_s": 300.0, "p99_us": 5000.0},
                {"strategy": "atomic", "scenario": "mix", "clients": 100, "accepted_per_s": 3000.0, "p99_us": 50000.0},
            ]
        });
        let s = svg(&summary);
        assert!(s.starts_with("<svg") && s.ends_with("</svg>\n"));
        assert_eq!(
            s.matches("<polyline").count(),
            6,
            "2 strategies x 2 panels for buy, 1 x 2 for mix"
        );
        for text in ["kuku", "atomic", "buy:", "mix:"] {
            assert!(s.contains(text), "{text}");
        }
        assert!(!s.contains("NaN") && !s.contains("inf"));
    }
}
