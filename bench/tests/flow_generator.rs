//! The flow generator: determinism, and the invariants that make engines agree.

use kuku_bench::{Flow, FlowConfig, FlowError, FlowMix, FlowOp, ModelBook, Side, Tif};

fn small_config(seed: u64, symbols: u32) -> FlowConfig {
    FlowConfig {
        seed,
        symbols,
        accounts: 50,
        depth_orders: 1_500,
        ops_steady: 8_000,
        ..FlowConfig::default()
    }
}

/// Pinned: changes only when the generator or its PRNG changes (then say so in the commit).
const OPS_HASH_SEED_7_TWO_SYMBOLS: u64 = 0xe777_ef03_eb4a_24f5;

#[test]
fn same_seed_generates_the_same_ops() {
    let a = Flow::generate(&small_config(7, 2)).unwrap();
    let b = Flow::generate(&small_config(7, 2)).unwrap();
    assert_eq!(a.ops(), b.ops());
    assert_eq!(a.expected(), b.expected());
    assert_eq!(a.ops_hash(), b.ops_hash());
}

#[test]
fn ops_hash_is_pinned() {
    let flow = Flow::generate(&small_config(7, 2)).unwrap();
    assert_eq!(
        flow.ops_hash(),
        OPS_HASH_SEED_7_TWO_SYMBOLS,
        "generator output changed: {:#018x}",
        flow.ops_hash()
    );
}

#[test]
fn different_seeds_generate_different_ops() {
    let a = Flow::generate(&small_config(7, 1)).unwrap();
    let b = Flow::generate(&small_config(8, 1)).unwrap();
    assert_ne!(a.ops_hash(), b.ops_hash());
}

#[test]
fn ids_are_dense_from_one_in_submission_order() {
    let flow = Flow::generate(&small_config(3, 3)).unwrap();
    let mut id_next = 1;
    for op in flow.ops() {
        if let FlowOp::Limit { id, .. } | FlowOp::Market { id, .. } = *op {
            assert_eq!(id, id_next);
            id_next += 1;
        }
    }
    assert_eq!(flow.id_max(), id_next - 1);
}

#[test]
fn cancel_and_modify_name_only_live_unfilled_orders_of_their_book() {
    let flow = Flow::generate(&small_config(11, 2)).unwrap();
    let mut model = ModelBook::new(2);
    let (mut cancels, mut modifies) = (0, 0);
    for op in flow.ops() {
        match *op {
            FlowOp::Cancel {
                id,
                symbol,
                account,
            } => {
                let order = model
                    .order(id)
                    .unwrap_or_else(|| panic!("cancel of dead order in {op:?}"));
                assert_eq!((order.symbol, order.account), (symbol, account));
                cancels += 1;
            }
            FlowOp::Modify {
                id,
                symbol,
                account,
                new_price,
                new_qty,
            } => {
                let order = model
                    .order(id)
                    .unwrap_or_else(|| panic!("modify of dead order in {op:?}"));
                assert_eq!((order.symbol, order.account), (symbol, account));
                assert_eq!(
                    order.filled_qty, 0,
                    "modify of a partly filled order: {op:?}"
                );
                assert!(
                    (new_price, new_qty) != (order.price, order.open_qty),
                    "no-op modify {op:?}"
                );
                let opposite = match order.side {
                    Side::Buy => model.best_ask(symbol).is_some_and(|ask| new_price >= ask),
                    Side::Sell => model.best_bid(symbol).is_some_and(|bid| new_price <= bid),
                };
                assert!(!opposite, "crossing modify {op:?}");
                modifies += 1;
            }
            _ => {}
        }
        model.apply_op(op).unwrap();
    }
    assert!(
        cancels > 500 && modifies > 300,
        "mix too thin: {cancels} cancels, {modifies} modifies"
    );
}

#[test]
fn crossing_orders_fill_completely_and_never_self_trade() {
    let flow = Flow::generate(&small_config(5, 2)).unwrap();
    let mut model = ModelBook::new(2);
    let mut crossing = 0;
    for op in flow.ops() {
        let before = model.end_state().trades;
        match *op {
            FlowOp::Limit {
                id,
                symbol,
                side,
                price,
                qty,
                tif,
                ..
            } => {
                let inside = model.liquidity_within(symbol, side, Some(price));
                model.apply_op(op).unwrap();
                if inside > 0 && !(tif == Tif::Fok && qty > inside) {
                    assert!(
                        qty <= inside,
                        "crossing order asks beyond its limit: {op:?}"
                    );
                    assert!(
                        !model.is_live(id),
                        "crossing order left a remainder: {op:?}"
                    );
                    assert!(model.end_state().trades > before);
                    crossing += 1;
                }
            }
            FlowOp::Market {
                symbol, side, qty, ..
            } => {
                assert!(
                    qty <= model.liquidity_within(symbol, side, None),
                    "market order not capped: {op:?}"
                );
                model.apply_op(op).unwrap();
                crossing += 1;
            }
            _ => model.apply_op(op).unwrap(),
        }
    }
    assert_eq!(model.self_trades(), 0);
    assert!(crossing > 1_000);
}

#[test]
fn prices_are_tick_multiples_inside_the_band() {
    let config = small_config(9, 1);
    let flow = Flow::generate(&config).unwrap();
    let band = config.price_min()..=config.price_max();
    assert_eq!((config.price_min(), config.price_max()), (35_000, 65_000));
    for op in flow.ops() {
        let price = match *op {
            FlowOp::Limit { price, .. } => price,
            FlowOp::Modify { new_price, .. } => new_price,
            _ => continue,
        };
        assert!(
            band.contains(&price) && price % config.price_tick == 0,
            "bad price in {op:?}"
        );
    }
}

#[test]
fn warm_up_builds_the_target_depth_and_steady_state_holds_it() {
    let config = small_config(1, 2);
    let flow = Flow::generate(&config).unwrap();
    assert_eq!(flow.warmup_ops().len() as u64, config.depth_orders);
    assert!(
        flow.warmup_ops()
            .iter()
            .all(|op| matches!(op, FlowOp::Limit { tif: Tif::Day, .. }))
    );
    assert_eq!(flow.steady_ops().len() as u64, config.ops_steady);
    let live = flow.expected().live_orders;
    assert!(
        live.abs_diff(config.depth_orders) <= config.depth_orders / 20,
        "depth drifted to {live}"
    );
    assert_eq!(flow.expected().books.len(), 2);
}

#[test]
fn invalid_configs_are_rejected() {
    let one_account = FlowConfig {
        accounts: 1,
        ..FlowConfig::default()
    };
    assert_eq!(
        Flow::generate(&one_account).unwrap_err(),
        FlowError::TooFewAccounts(1)
    );
    let bad_mix = FlowConfig {
        mix: FlowMix {
            cancel_pct: 19,
            ..FlowMix::default()
        },
        ..FlowConfig::default()
    };
    assert!(matches!(Flow::generate(&bad_mix), Err(FlowError::Mix(_))));
    let off_grid = FlowConfig {
        price_base: 50_010,
        ..FlowConfig::default()
    };
    assert!(matches!(
        Flow::generate(&off_grid),
        Err(FlowError::PriceGrid(_))
    ));
}

#[test]
fn hand_made_flow_with_a_dead_cancel_is_rejected() {
    let ops = vec![FlowOp::Cancel {
        id: 1,
        symbol: 0,
        account: 1,
    }];
    let error = Flow::from_ops(FlowConfig::default(), ops, 0).unwrap_err();
    assert!(matches!(error, FlowError::InvalidOp { index: 0, .. }));
}
