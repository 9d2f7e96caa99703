//! `GET /metrics`: the node's counters in the Prometheus text format (version 0.0.4), served
//! by a small HTTP server (axum on a one-thread tokio runtime) on its own thread, when
//! `metrics_listen` is set. It reads shared atomics only: the pipeline's journaled and
//! applied seq and its Busy count, the database writer's checkpoint and lag (seq and seconds),
//! the gateway's session and request counters, the market data's quotes and ticks received
//! and each symbol's quote age (`kuku_md_quote_age_seconds{symbol="005930"}`, read under the
//! service's read lock). Nothing here touches the processor.
//!
//! **Performance**: a scrape loads a few dozen atomics and formats them; nothing is counted on
//! the hot paths for it (the counters exist for the log and the tests anyway).
//!
//! **Known limitations**: no histograms (latency is measured by `kuku-bench`), plain HTTP, no
//! authentication: bind it to a loopback or management address.

use crate::node::Node;
use crate::pipeline::{PipelineStatus, now_ns};
use anyhow::Context;
use kuku_gateway::server::{GatewayHandle, GatewayStats};
use kuku_persistence::WriterMetrics;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

/// What the endpoint reports.
pub struct MetricsSources {
    pub pipeline: Arc<PipelineStatus>,
    pub alarms: Arc<crate::alarms::Alarms>,
    pub database: Option<Arc<WriterMetrics>>,
    pub gateway: Option<Arc<GatewayStats>>,
    /// Replication role, epoch, acks and alarms (`None`: replication off).
    pub replication: Option<Arc<crate::replication::Replication>>,
    /// Market-data counters and quote ages (`None`: not reported).
    pub market_data: Option<kuku_marketdata::MarketDataHandle>,
    /// The KIS adapter's counters (`None`: another source).
    pub kis: Option<Arc<kuku_kis::KisMetrics>>,
    /// The HTTP door's WebSocket counters (`None`: no door, or its feeds are off).
    pub ws: Option<Arc<crate::http::ws::WsMetrics>>,
}

impl MetricsSources {
    /// The counters of a running node and its gateway (if any).
    pub fn of(node: &Node, gateway: Option<&GatewayHandle>) -> MetricsSources {
        MetricsSources {
            pipeline: Arc::clone(&node.status),
            alarms: Arc::clone(&node.alarms),
            database: node.database_metrics().cloned(),
            gateway: gateway.map(GatewayHandle::stats_handle),
            replication: node.replication.clone(),
            market_data: Some(Arc::clone(&node.market_data)),
            kis: node.kis_metrics.clone(),
            ws: None,
        }
    }
}

/// A running metrics endpoint; stopped (and joined) on drop.
pub struct MetricsServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl MetricsServer {
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Binds `listen` (e.g. `127.0.0.1:7880`, port 0 for any) and serves `/metrics` until the
/// returned handle is dropped.
pub fn start(listen: &str, sources: MetricsSources) -> anyhow::Result<MetricsServer> {
    let listener = std::net::TcpListener::bind(listen)
        .with_context(|| format!("cannot listen for metrics on {listen}"))?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
        .context("cannot start the metrics endpoint's runtime")?;
    let stop = Arc::new(AtomicBool::new(false));
    let stopping = Arc::clone(&stop);
    let sources = Arc::new(sources);
    let thread = std::thread::Builder::new()
        .name("kuku-metrics".into())
        .spawn(move || {
            let served = runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener)?;
                let app = axum::Router::new().route(
                    "/metrics",
                    axum::routing::get(move || {
                        let body = render(&sources);
                        async move {
                            (
                                [(
                                    axum::http::header::CONTENT_TYPE,
                                    "text/plain; version=0.0.4",
                                )],
                                body,
                            )
                        }
                    }),
                );
                axum::serve(listener, app)
                    .with_graceful_shutdown(async move {
                        while !stopping.load(Ordering::Acquire) {
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                    })
                    .await
            });
            if let Err(e) = served {
                tracing::error!(error = %e, "The metrics endpoint stopped with an error.");
            }
        })
        .context("cannot spawn the metrics thread")?;
    Ok(MetricsServer {
        addr,
        stop,
        thread: Some(thread),
    })
}

/// The exposition text.
pub fn render(s: &MetricsSources) -> String {
    let mut out = String::with_capacity(4096);
    let p = &s.pipeline;
    let load = |a: &AtomicU64| a.load(Ordering::Relaxed) as f64;
    gauge(
        &mut out,
        "kuku_pipeline_journaled_seq",
        "Last seq the journal committed.",
        load(&p.journaled_seq),
    );
    gauge(
        &mut out,
        "kuku_pipeline_applied_seq",
        "Last seq the processor applied.",
        load(&p.applied_seq),
    );
    counter(
        &mut out,
        "kuku_pipeline_busy_total",
        "Commands refused because the input ring was full.",
        load(&p.busy),
    );
    counter(
        &mut out,
        "kuku_pipeline_journal_batches_total",
        "Journal batches committed.",
        load(&p.batches),
    );
    gauge(
        &mut out,
        "kuku_pipeline_halted",
        "1 if the command log refused a command (fenced) and the node halted.",
        f64::from(u8::from(p.halted.load(Ordering::Relaxed))),
    );
    counter(
        &mut out,
        "kuku_ledger_alarms_total",
        "Postings or holds the engine admitted and its ledger refused (a bug; see the log).",
        s.alarms.ledger_total() as f64,
    );
    counter(
        &mut out,
        "kuku_invariant_failures_total",
        "Snapshots whose state broke an engine invariant (a bug; see the log).",
        s.alarms.invariants_total() as f64,
    );
    if let Some(w) = &s.database {
        let st = w.status(now_ns());
        gauge(
            &mut out,
            "kuku_db_checkpoint_seq",
            "Last seq committed to the query store.",
            st.checkpoint_seq as f64,
        );
        gauge(
            &mut out,
            "kuku_db_lag_seq",
            "Commands applied by the engine but not yet in the query store.",
            st.lag_seq as f64,
        );
        gauge(
            &mut out,
            "kuku_db_lag_seconds",
            "Age of the oldest command not yet in the query store.",
            st.lag_seconds,
        );
        counter(
            &mut out,
            "kuku_db_rows_written_total",
            "Rows written (all tables).",
            st.rows_written as f64,
        );
        counter(
            &mut out,
            "kuku_db_batches_committed_total",
            "Database transactions committed.",
            st.batches_committed as f64,
        );
        counter(
            &mut out,
            "kuku_db_retries_total",
            "Batches retried after a database error.",
            st.retries as f64,
        );
        counter(
            &mut out,
            "kuku_db_events_dropped_total",
            "Events dropped by a full intake (re-derived from the journal).",
            st.events_dropped as f64,
        );
        counter(
            &mut out,
            "kuku_db_commands_rederived_total",
            "Commands re-derived by replaying the journal.",
            st.commands_rederived as f64,
        );
        gauge(
            &mut out,
            "kuku_db_queued",
            "Events waiting in the writer's intake.",
            st.queued as f64,
        );
        gauge(
            &mut out,
            "kuku_db_up",
            "1 if the last database operation succeeded.",
            f64::from(u8::from(st.database_ok)),
        );
    }
    if let Some(g) = &s.gateway {
        gauge(
            &mut out,
            "kuku_gateway_sessions_open",
            "TCP sessions open.",
            load(&g.sessions_open),
        );
        counter(
            &mut out,
            "kuku_gateway_sessions_accepted_total",
            "TCP sessions accepted.",
            load(&g.sessions_accepted),
        );
        counter(
            &mut out,
            "kuku_gateway_logins_total",
            "Successful logins.",
            load(&g.logins),
        );
        counter(
            &mut out,
            "kuku_gateway_login_rejects_total",
            "Rejected logins.",
            load(&g.login_rejects),
        );
        counter(
            &mut out,
            "kuku_gateway_requests_total",
            "Requests received.",
            load(&g.requests),
        );
        counter(
            &mut out,
            "kuku_gateway_rate_limited_total",
            "Orders rejected by the rate limit.",
            load(&g.rate_limited),
        );
        counter(
            &mut out,
            "kuku_gateway_busy_total",
            "Requests refused because the input ring was full.",
            load(&g.busy),
        );
        counter(
            &mut out,
            "kuku_gateway_protocol_errors_total",
            "Sessions ended by a protocol error.",
            load(&g.protocol_errors),
        );
        counter(
            &mut out,
            "kuku_gateway_slow_readers_total",
            "Sessions ended because they did not read.",
            load(&g.slow_readers),
        );
        gauge(
            &mut out,
            "kuku_gateway_outbound_bytes",
            "Bytes queued in outbound buffers.",
            load(&g.outbound_bytes),
        );
    }
    if let Some(r) = &s.replication {
        render_replication(&mut out, r);
    }
    if let Some(ws) = &s.ws {
        ws.render(&mut out);
    }
    if let Some(kis) = &s.kis {
        kis.render(&mut out);
    }
    if let Some(md) = &s.market_data {
        render_market_data(&mut out, md);
    }
    out
}

/// Replication gauges: an operator alerts on `kuku_replication_diverged == 1`,
/// `kuku_replication_degraded == 1` and `kuku_replication_primary_lost == 1`.
fn render_market_data(out: &mut String, md: &kuku_marketdata::MarketData) {
    let s = &md.stats;
    let load = |a: &AtomicU64| a.load(Ordering::Relaxed) as f64;
    for (name, help, value) in [
        (
            "kuku_md_quotes_received_total",
            "Quotes the market-data source delivered.",
            &s.quotes_received,
        ),
        (
            "kuku_md_ticks_received_total",
            "Market trades (ticks) the source delivered.",
            &s.ticks_received,
        ),
        (
            "kuku_md_events_invalid_total",
            "Source events refused by validation.",
            &s.events_invalid,
        ),
        (
            "kuku_md_quotes_submitted_total",
            "Top-of-book QuoteUpdate commands handed to the engine.",
            &s.quotes_submitted,
        ),
        (
            "kuku_md_quotes_conflated_total",
            "Quotes replaced by a newer one before the engine took them.",
            &s.quotes_conflated,
        ),
        (
            "kuku_md_quotes_not_submitted_total",
            "Quotes of unknown symbols or one-sided: not submitted.",
            &s.quotes_not_submitted,
        ),
        (
            "kuku_md_ticks_late_total",
            "Ticks left out of a candle whose interval had moved on.",
            &s.ticks_late,
        ),
        (
            "kuku_md_subscriber_drops_total",
            "Updates dropped because a subscriber fell behind.",
            &s.subscriber_drops,
        ),
        (
            "kuku_md_candle_write_failures_total",
            "Candle batches the database refused (retried).",
            &s.candle_write_failures,
        ),
    ] {
        counter(out, name, help, load(value));
    }
    gauge(
        out,
        "kuku_md_source_ended",
        "1 once the market-data source ended (a replay reached its end).",
        load(&s.source_ended),
    );
    let ages = md.quote_ages_s(now_ns());
    let name = "kuku_md_quote_age_seconds";
    let _ = writeln!(
        out,
        "# HELP {name} Seconds since the latest quote of the symbol was received.\n# TYPE {name} gauge"
    );
    for (symbol, age) in ages {
        // Symbol codes are ASCII letters and digits (validated): no label escaping needed.
        let _ = writeln!(out, "{name}{{symbol=\"{symbol}\"}} {age}");
    }
}

fn render_replication(out: &mut String, r: &crate::replication::Replication) {
    use crate::replication::Role;
    let st = r.status();
    let role = match r.role() {
        Role::Standby => 0.0,
        Role::Primary => 1.0,
        Role::Fenced => 2.0,
        Role::Promoting => 3.0,
    };
    let flag = |b: bool| if b { 1.0 } else { 0.0 };
    gauge(
        out,
        "kuku_replication_role",
        "0 standby, 1 primary, 2 fenced, 3 promoting.",
        role,
    );
    gauge(
        out,
        "kuku_replication_epoch",
        "The node's epoch.",
        st.epoch as f64,
    );
    gauge(
        out,
        "kuku_replication_acked_seq",
        "Highest seq a standby acknowledged (primary).",
        st.acked_seq as f64,
    );
    gauge(
        out,
        "kuku_replication_standbys_live",
        "Standbys streaming live (primary).",
        st.standbys_live as f64,
    );
    gauge(
        out,
        "kuku_replication_degraded",
        "1 while sync replication runs degraded (unreplicated).",
        flag(st.degraded),
    );
    gauge(
        out,
        "kuku_replication_diverged",
        "1 once this node's state hash differed from its primary's (unpromotable).",
        flag(st.diverged),
    );
    gauge(
        out,
        "kuku_replication_primary_lost",
        "1 while a standby has lost its primary.",
        flag(st.primary_lost_at_ms != 0),
    );
}

fn gauge(out: &mut String, name: &str, help: &str, value: f64) {
    metric(out, name, "gauge", help, value);
}

fn counter(out: &mut String, name: &str, help: &str, value: f64) {
    metric(out, name, "counter", help, value);
}

fn metric(out: &mut String, name: &str, kind: &str, help: &str, value: f64) {
    let _ = writeln!(
        out,
        "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
    );
}
