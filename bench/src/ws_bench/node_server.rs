//! `kuku-bench ws-node-server`: the Kuku node of `kuku-bench ws`, run as a child process of
//! the bench so that its resident memory is the server's alone.
//!
//! It starts a node the way `kuku serve` does (the TCP gateway, the HTTP door with `/ws`,
//! `GET /metrics`, the simulated market-data feed) on ephemeral ports of 127.0.0.1, in a
//! temporary data directory, with `durability = "none"`, the always-open schedule and a
//! universe of the first `--symbols` symbols of the demo universe, so the feed walks exactly
//! those (one quote per symbol per `--feed-interval-ms`).
//!
//! Protocol with the bench: one JSON line on stdout when serving (`{"http", "metrics",
//! "admin_token", "queue_frames_max", "connections_max", "pid"}`); when stdin reaches its end, it stops the node, prints
//! `{"stopped": true}` and exits.

use anyhow::Context;
use kuku_server::config::{FeedSettings, NodeConfig};
use serde_json::json;
use std::io::BufRead;

#[derive(Debug, clap::Args)]
pub struct NodeServerArgs {
    /// The first N symbols of the demo universe.
    #[arg(long, default_value_t = 3)]
    pub symbols: usize,
    /// One simulated quote per symbol this often.
    #[arg(long, default_value_t = 200)]
    pub feed_interval_ms: u64,
    /// Threads of the HTTP door's runtime (which serves `/ws`).
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
    /// WebSocket connections the bench will open (the node's limit is raised to it).
    #[arg(long, default_value_t = 10_000)]
    pub connections: usize,
}

/// The first `n` symbols of the demo universe (their codes), and the universe CSV of them.
pub fn universe(n: usize) -> anyhow::Result<(Vec<String>, String)> {
    let mut lines = kuku_server::universe::DEMO_UNIVERSE.lines();
    let header = lines.next().context("the demo universe is empty")?;
    let rows: Vec<&str> = lines.filter(|l| !l.trim().is_empty()).take(n).collect();
    anyhow::ensure!(
        n >= 1 && rows.len() == n,
        "--symbols must be between 1 and the demo universe's size"
    );
    let codes = rows
        .iter()
        .map(|r| r.split(',').next().unwrap_or("").to_owned())
        .collect();
    let mut csv = format!("{header}\n");
    for r in rows {
        csv.push_str(r);
        csv.push('\n');
    }
    Ok((codes, csv))
}

/// Runs the node until stdin ends.
pub fn serve(args: &NodeServerArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        (1..=60_000).contains(&args.feed_interval_ms),
        "--feed-interval-ms: 1 to 60000"
    );
    let (_, csv) = universe(args.symbols)?;
    let dir = tempfile::tempdir()?;
    let universe_path = dir.path().join("universe.csv");
    std::fs::write(&universe_path, csv)?;
    let admin_token = kuku_gateway::auth::random_bytes32()?;
    let mut config = NodeConfig {
        data_dir: dir.path().join("data"),
        durability: "none".into(),
        schedule: kuku_server::scheduler::ScheduleMode::AlwaysOpen,
        snapshot_every: 0,
        universe: Some(universe_path),
        feed: FeedSettings {
            enabled: true,
            source: "sim".into(),
            interval_ms: args.feed_interval_ms,
            ..FeedSettings::default()
        },
        ..NodeConfig::default()
    };
    crate::http_bench::open_doors(
        &mut config,
        &admin_token,
        &kuku_gateway::auth::random_bytes32()?,
    )?;
    config.http.worker_threads = args.threads;
    // Room for every client of the bench; the per-connection queue keeps its default (the
    // baseline copies it).
    config.http.ws.connections_max = config.http.ws.connections_max.max(args.connections);
    config.metrics_listen = Some("127.0.0.1:0".into());
    config.validate()?;
    let (node, gateway, http) = crate::http_bench::start_node(&config)?;
    let mut sources = kuku_server::metrics::MetricsSources::of(&node, Some(&gateway));
    sources.ws = http.ws_metrics();
    let metrics = kuku_server::metrics::start("127.0.0.1:0", sources)?;
    println!(
        "{}",
        json!({
            "http": http.local_addr().to_string(),
            "metrics": metrics.local_addr().to_string(),
            "admin_token": kuku_gateway::auth::encode_hex(&admin_token),
            "queue_frames_max": config.http.ws.queue_frames_max,
            "connections_max": config.http.ws.connections_max,
            "pid": std::process::id(),
        })
    );
    // The bench stops the node by closing our stdin.
    let mut sink = String::new();
    let mut stdin = std::io::stdin().lock();
    while stdin.read_line(&mut sink).is_ok_and(|n| n > 0) {
        sink.clear();
    }
    drop(metrics);
    http.shutdown();
    kuku_server::gateway::shutdown(node, gateway);
    println!("{}", json!({"stopped": true}));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_universe_is_the_demo_universe_s_head() {
        let (codes, csv) = universe(2).expect("two symbols");
        assert_eq!(codes, ["005930", "000660"]);
        assert_eq!(csv.lines().count(), 3);
        assert!(universe(0).is_err());
        assert!(universe(10_000).is_err());
    }
}
