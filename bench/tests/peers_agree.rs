//! The model oracle and both peers end in the same state on the same flow, the harness says
//! so, and it reports a peer that does not as a finding.
#![cfg(feature = "peers")]

use kuku_bench::engine_bench::{self, EngineBenchOptions};
use kuku_bench::peers::{MatchcoreBook, OrderbookRsBook};
use kuku_bench::{
    BookUnderTest, EngineSelection, Flow, FlowConfig, FlowOp, ModelBook, Side, Tif,
    registered_engines,
};

fn smoke_flow(symbols: u32, crossing_capped: bool) -> Flow {
    let config = FlowConfig {
        seed: 2024,
        symbols,
        accounts: 40,
        depth_orders: 1_200,
        ops_steady: 5_000,
        crossing_capped,
        ..FlowConfig::default()
    };
    Flow::generate(&config).unwrap()
}

fn run(mut book: Box<dyn BookUnderTest>, flow: &Flow) -> Box<dyn BookUnderTest> {
    book.run_all(flow.ops());
    book
}

#[test]
fn model_and_both_peers_end_in_the_oracle_state_on_the_smoke_flow() {
    let flow = smoke_flow(2, true);
    let engines: [Box<dyn BookUnderTest>; 3] = [
        Box::new(ModelBook::new(2)),
        Box::new(MatchcoreBook::new(&flow)),
        Box::new(OrderbookRsBook::new(&flow)),
    ];
    assert!(flow.expected().trades > 1_000);
    for engine in engines {
        let engine = run(engine, &flow);
        assert_eq!(
            &engine.end_state(),
            flow.expected(),
            "{} deviates",
            engine.name()
        );
        assert_eq!(
            engine.anomalies(),
            0,
            "{} reported anomalies",
            engine.name()
        );
    }
}

#[test]
fn harness_reports_agreement_and_prints_required_json_keys() {
    let flow = smoke_flow(1, true);
    let engines = registered_engines(EngineSelection {
        compare_peers: true,
        orderbook_rs: true,
        model: true,
        full: true,
        sorted_ladder: true,
    })
    .unwrap();
    let options = EngineBenchOptions {
        runs: 2,
        latency: true,
    };
    let report = engine_bench::run(&flow, &engines, options, 0.0, &mut std::io::sink()).unwrap();
    assert!(report.states_agree());
    let mut text = Vec::new();
    report.write_text(&mut text).unwrap();
    assert!(
        String::from_utf8(text)
            .unwrap()
            .contains("all engines agree with the oracle: yes")
    );
    let json = report.to_json();
    assert_eq!(json["states_agree"], true);
    for key in [
        "kuku_ops_per_s",
        "kuku_full_ops_per_s",
        "kuku_sorted_ops_per_s",
        "kuku_p99_ns",
        "matchcore_ops_per_s",
        "orderbook_rs_ops_per_s",
        "model_ops_per_s",
        "matchcore_p99_ns",
    ] {
        assert!(json[key].as_f64().is_some_and(|v| v > 0.0), "{key} missing");
    }
    for e in &report.engines {
        assert_eq!(e.anomalies, 0, "{} had unexpected rejects", e.name);
    }
    assert_eq!(
        report
            .engines
            .iter()
            .map(|e| e.ops_per_s.len())
            .collect::<Vec<_>>(),
        [2; 6]
    );
}

#[test]
fn matchcore_trades_through_the_limit_of_a_crossing_order_remainder() {
    let sell = |id, price, qty| FlowOp::Limit {
        id,
        symbol: 0,
        account: 1,
        side: Side::Sell,
        price,
        qty,
        tif: Tif::Day,
    };
    let ops = vec![
        sell(1, 50_000, 5),
        sell(2, 50_050, 5),
        FlowOp::Limit {
            id: 3,
            symbol: 0,
            account: 2,
            side: Side::Buy,
            price: 50_000,
            qty: 8,
            tif: Tif::Day,
        },
    ];
    let flow = Flow::from_ops(FlowConfig::default(), ops, 0).unwrap();
    // The oracle: 5 @ 50,000, then 3 rest as the best bid at 50,000.
    assert_eq!(flow.expected().books[0].best_bid, Some(50_000));
    assert_eq!(flow.expected().trades, 1);
    let orderbook_rs = run(Box::new(OrderbookRsBook::new(&flow)), &flow);
    assert_eq!(&orderbook_rs.end_state(), flow.expected());
    // matchcore 0.4.0: the remainder buys 3 @ 50,050, above its 50,000 limit.
    let matchcore = run(Box::new(MatchcoreBook::new(&flow)), &flow).end_state();
    assert_eq!((matchcore.trades, matchcore.books[0].best_bid), (2, None));
    assert_eq!(matchcore.books[0].open_qty, 2);
}

#[test]
fn uncapped_flow_makes_matchcore_a_finding_with_its_first_divergence() {
    let flow = smoke_flow(1, false);
    let engines = registered_engines(EngineSelection {
        compare_peers: true,
        orderbook_rs: true,
        model: false,
        full: false,
        sorted_ladder: false,
    })
    .unwrap();
    let options = EngineBenchOptions {
        runs: 1,
        latency: false,
    };
    let report = engine_bench::run(&flow, &engines, options, 0.0, &mut std::io::sink()).unwrap();
    assert!(!report.states_agree());
    let matchcore = report
        .engines
        .iter()
        .find(|e| e.name == "matchcore")
        .unwrap();
    assert!(!matchcore.state_ok());
    let (index, _) = matchcore
        .first_divergence
        .clone()
        .expect("divergence located");
    assert!(matches!(flow.ops()[index], FlowOp::Limit { .. }));
    assert!(
        report
            .engines
            .iter()
            .find(|e| e.name == "orderbook_rs")
            .unwrap()
            .state_ok()
    );
    let mut text = Vec::new();
    report.write_text(&mut text).unwrap();
    assert!(
        String::from_utf8(text)
            .unwrap()
            .contains("FINDING: matchcore")
    );
    assert_eq!(report.to_json()["matchcore_state_ok"], false);
}
