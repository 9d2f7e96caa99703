//! The HTTP door against a `kuku serve` child whose processor pauses (the
//! `processor::stall_on_order` failpoint): a request whose outcome does not arrive in time is
//! 504 "outcome unknown", resending it with the same Idempotency-Key learns the outcome, and
//! the input ring that fills meanwhile refuses further orders with 503 Busy, which used no key.

mod support;

use serde_json::json;
use std::time::{Duration, Instant};
use support::http::{Reply, funded, limit, login};
use support::process::Serve;
use support::{SAMSUNG, config};

const ORDERS: &str = "/api/v1/orders";

fn free_port() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().to_string()
}

#[test]
fn a_paused_processor_gives_504_then_the_same_key_learns_the_outcome_and_a_full_ring_503() {
    let root = tempfile::tempdir().unwrap();
    let mut c = config(&root.path().join("node"));
    c.pipeline.input_ring_size = 64;
    c.http.outcome_timeout_ms = 1_000;
    c.http.listen = free_port();
    let mut serve = Serve::start(
        &c,
        &[(
            kuku_server::failpoint::FAILPOINT_ENV,
            "processor::stall_on_order=1",
        )],
    );
    serve.wait_serving();
    let addr = c.http.listen.parse().unwrap();
    let alice = login(addr, funded(addr, "alice", 100_000_000));
    let deadline = Instant::now() + Duration::from_secs(10);
    while alice.get("/api/v1/market").json()["phase"] != "continuous" {
        assert!(Instant::now() < deadline, "the market never opened");
        std::thread::sleep(Duration::from_millis(20));
    }
    let order = limit(SAMSUNG, "buy", 1, 119_000);

    // The first order pauses the processor for 3 s; its answer gives up after 1 s.
    let stalled_at = Instant::now();
    let first = alice.post(ORDERS, Some("stalled"), &order);
    assert_eq!((first.status, first.problem_code()), (504, 9024));
    assert!(
        first.json()["detail"]
            .as_str()
            .unwrap()
            .contains("same Idempotency-Key")
    );

    // Meanwhile 100 more: the 64-slot ring takes 63 (their outcomes are unknown too), the
    // rest are refused at once.
    let flood: Vec<Reply> = (0..100)
        .map(|i| {
            let (alice, order) = (alice.clone(), order.clone());
            std::thread::spawn(move || alice.post(ORDERS, Some(&format!("f{i}")), &order))
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|h| h.join().unwrap())
        .collect();
    assert!(
        stalled_at.elapsed() < kuku_server::failpoint::STALL,
        "the flood must happen while the processor is paused"
    );
    let (mut busy, mut unknown) = (Vec::new(), Vec::new());
    for (i, r) in flood.iter().enumerate() {
        match r.status {
            503 => {
                assert_eq!(r.problem_code(), 9001);
                assert_eq!(r.header("retry-after"), Some("1"));
                busy.push(i);
            }
            504 => {
                assert_eq!(r.problem_code(), 9024);
                unknown.push(i);
            }
            other => panic!("request {i}: {other}"),
        }
    }
    assert!(
        !busy.is_empty() && !unknown.is_empty(),
        "{busy:?} {unknown:?}"
    );
    assert!(unknown.len() <= 63, "{}", unknown.len());

    // After the pause, the same key learns what happened: the order was accepted.
    std::thread::sleep(
        kuku_server::failpoint::STALL.saturating_sub(stalled_at.elapsed())
            + Duration::from_millis(500),
    );
    let learned = alice.post(ORDERS, Some("stalled"), &order);
    assert_eq!(learned.status, 201, "{}", learned.json());
    assert_eq!(learned.json()["resent"], true);
    for &i in &unknown {
        let r = alice.post(ORDERS, Some(&format!("f{i}")), &order);
        assert_eq!((r.status, r.json()["resent"].clone()), (201, json!(true)));
    }
    // A key refused with 503 was never used: it places a new order now.
    let r = alice.post(ORDERS, Some(&format!("f{}", busy[0])), &order);
    assert_eq!((r.status, r.json()["resent"].clone()), (201, json!(false)));
    // Exactly the accepted ones exist (no partial effect of a refusal).
    let open = alice.get(&format!("{ORDERS}?limit=500")).json();
    assert_eq!(
        open["orders"].as_array().unwrap().len(),
        1 + unknown.len() + 1
    );
    serve.stop();
}
