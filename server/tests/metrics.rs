//! `GET /metrics` over real HTTP: the pipeline's, the database writer's and the gateway's
//! counters, in the Prometheus text format, moving as orders flow; an unknown path is a 404.

mod support;

use kuku_server::metrics::{self, MetricsSources};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};
use support::*;

/// One HTTP/1.1 GET; (status line, body).
fn get(addr: SocketAddr, path: &str) -> (String, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: kuku\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").expect("an HTTP response");
    (
        head.lines().next().unwrap_or("").to_owned(),
        body.to_owned(),
    )
}

/// name -> value of every sample line; every sample has HELP and TYPE lines before it.
fn samples(body: &str) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    let mut typed = Vec::new();
    for line in body.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            typed.push(rest.split(' ').next().unwrap().to_owned());
        } else if !line.starts_with('#') && !line.is_empty() {
            let (name, value) = line.split_once(' ').expect("name value");
            assert!(typed.iter().any(|t| t == name), "{name} has no TYPE line");
            out.insert(name.to_owned(), value.parse::<f64>().expect("a number"));
        }
    }
    out
}

#[test]
fn metrics_report_the_pipeline_the_writer_and_the_gateway_as_orders_flow() {
    let t = TestNode::start();
    let server = metrics::start(
        "127.0.0.1:0",
        MetricsSources::of(t.node.as_ref().unwrap(), t.gateway.as_ref()),
    )
    .unwrap();
    let before = samples(&get(server.local_addr(), "/metrics").1);
    for name in [
        "kuku_pipeline_applied_seq",
        "kuku_pipeline_busy_total",
        "kuku_db_lag_seq",
        "kuku_db_lag_seconds",
        "kuku_db_checkpoint_seq",
        "kuku_gateway_sessions_open",
        "kuku_gateway_requests_total",
    ] {
        assert!(before.contains_key(name), "{name} missing: {before:?}");
    }

    let (alice, _) = t.funded_account("alice", 100_000_000);
    let (mut a, _) = t.trader(alice, Default::default());
    for i in 0..5 {
        accepted(&a.place(buy(1, 119_000 - i * 100)).unwrap());
    }
    // The writer commits asynchronously (wait until its lag is back to zero); the gateway
    // refreshes its session gauge on its periodic tick.
    let deadline = Instant::now() + Duration::from_secs(30);
    let after = loop {
        let m = samples(&get(server.local_addr(), "/metrics").1);
        if m["kuku_db_lag_seq"] == 0.0
            && m["kuku_db_checkpoint_seq"] >= m["kuku_pipeline_applied_seq"]
            && m["kuku_gateway_sessions_open"] >= 1.0
        {
            break m;
        }
        assert!(
            Instant::now() < deadline,
            "the writer never caught up: {m:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(after["kuku_pipeline_applied_seq"] >= before["kuku_pipeline_applied_seq"] + 5.0);
    assert_eq!(
        after["kuku_pipeline_applied_seq"],
        after["kuku_pipeline_journaled_seq"]
    );
    assert!(after["kuku_gateway_requests_total"] >= 5.0);
    assert!(after["kuku_db_rows_written_total"] > before["kuku_db_rows_written_total"]);
    assert_eq!(after["kuku_pipeline_halted"], 0.0);

    let (status, _) = get(server.local_addr(), "/nothing");
    assert!(status.contains("404"), "{status}");
}

#[test]
fn a_metrics_address_that_cannot_be_bound_is_a_clear_error() {
    let t = TestNode::start();
    let e = metrics::start(
        "256.0.0.1:99999",
        MetricsSources::of(t.node.as_ref().unwrap(), None),
    )
    .err()
    .expect("an error")
    .to_string();
    assert!(
        e.contains("cannot listen for metrics on 256.0.0.1:99999"),
        "{e}"
    );
}
