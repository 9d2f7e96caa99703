//! The lock-strategy experiment's strategies against the real MariaDB, Redis and an in-process
//! Kuku node: more than 100 concurrent orders on one account end exact for every strategy
//! meant to be correct; the naive read-modify-write, forced by a barrier between its read and
//! its write, loses updates and the check says so; the Redis lock's fencing token refuses a
//! holder whose lease expired, and without it that holder overwrites; InnoDB's gap-lock and
//! lock-upgrade probes end as InnoDB's locking rules say.
//!
//! MariaDB at `KUKU_MYSQL_URL` (default `mysql://root@127.0.0.1:3306/test`), Redis at
//! `KUKU_REDIS_URL` (default `redis://127.0.0.1:6379`); each test uses databases and key
//! prefixes of its own and drops them.

use kuku_bench::locks::check::{self, Check};
use kuku_bench::locks::kuku_node::{KukuSettings, KukuTarget};
use kuku_bench::locks::redis_lock::{LockSettings, RedisLock};
use kuku_bench::locks::sql::{SqlKind, SqlPlacer, SqlSettings, SqlTarget};
use kuku_bench::locks::workload::{
    self, Asset, BUY_PRICE_KRW, Conflict, Counters, Funding, Order, Outcome, Placer, RunSpec,
    RunStats, Scenario, Stop,
};
use kuku_bench::locks::{Hook, HookPoint, innodb, unique_nonce};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Barrier, Notify};

fn mysql_url() -> String {
    std::env::var("KUKU_MYSQL_URL").unwrap_or_else(|_| "mysql://root@127.0.0.1:3306/test".into())
}

fn redis_url() -> String {
    std::env::var("KUKU_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime")
}

/// 32 clients x 4 orders: 128 orders on one account, all clients released together.
const CLIENTS: u32 = 32;
const ORDERS_PER_CLIENT: u32 = 4;
/// The account can pay for 100 of them.
const AFFORDABLE: i64 = 100;

fn hot_funding() -> Funding {
    Funding {
        cash_krw: AFFORDABLE * BUY_PRICE_KRW,
        shares: AFFORDABLE,
    }
}

fn spec(scenario: Scenario, clients: u32, orders: u32) -> RunSpec {
    RunSpec {
        scenario,
        clients,
        accounts_mix: 4,
        stop: Stop::Orders(orders),
        seed: 7,
    }
}

/// A database target of its own (with a Redis lock of its own for the Redis strategies).
async fn sql_target(kind: SqlKind, lock: LockSettings) -> SqlTarget {
    let suffix = format!("{:x}", unique_nonce());
    let redis = match kind {
        SqlKind::RedisLock { .. } => Some(Arc::new(
            RedisLock::connect(&redis_url(), &format!("kuku_locks_test_{suffix}"), 2, lock)
                .await
                .expect("Redis answers (start redis-server or set KUKU_REDIS_URL)"),
        )),
        _ => None,
    };
    let settings = SqlSettings {
        lock,
        ..SqlSettings::default()
    };
    SqlTarget::create(
        &mysql_url(),
        &format!("kuku_locks_test_{suffix}"),
        kind,
        settings,
        redis,
    )
    .await
    .expect("MariaDB answers and lets us create a database (start it or set KUKU_MYSQL_URL)")
}

async fn run_sql(target: &SqlTarget, spec: RunSpec, funding: Funding) -> (RunStats, Check) {
    target.reset(spec.accounts(), funding).await.unwrap();
    let placer = Arc::new(SqlPlacer::new(target, spec.clients).await.unwrap());
    let stats = workload::drive(Arc::clone(&placer), spec).await.unwrap();
    placer.close().await;
    let rows = target.ledger().await.unwrap();
    let check = check::check(&rows, &stats.view);
    (stats, check)
}

async fn cleanup(target: &SqlTarget) {
    target.drop_database().await.unwrap();
    if let Some(r) = &target.redis {
        r.clear().await.unwrap();
    }
}

/// 128 concurrent orders on one account that can pay for 100, buys and sells: exact.
fn assert_exact_on_a_hot_account(name: &str, stats: &RunStats, check: &Check, may_conflict: bool) {
    let c = &stats.counters;
    assert!(check.ok, "{name}: {}", check.describe());
    assert_eq!(
        c.orders(),
        (CLIENTS * ORDERS_PER_CLIENT) as u64,
        "{name}: {c:?}"
    );
    assert_eq!(check.orders_acknowledged, c.accepted, "{name}");
    if may_conflict {
        assert!(c.accepted as i64 <= AFFORDABLE, "{name}: {c:?}");
        assert!(
            c.accepted as i64 == AFFORDABLE || c.conflicts > 0,
            "{name}: {c:?}"
        );
    } else {
        assert_eq!(c.accepted as i64, AFFORDABLE, "{name}: {c:?}");
        assert_eq!(c.conflicts, 0, "{name}: {c:?}");
    }
}

#[test]
fn heavy_database_strategies_end_exact_with_128_concurrent_orders_on_one_account() {
    let rt = runtime();
    rt.block_on(async {
        for kind in [
            SqlKind::Pessimistic,
            SqlKind::Optimistic,
            SqlKind::RedisLock { fenced: true },
            SqlKind::Atomic,
        ] {
            let target = sql_target(kind, LockSettings::default()).await;
            for scenario in [Scenario::Buy, Scenario::Sell] {
                let (stats, check) = run_sql(
                    &target,
                    spec(scenario, CLIENTS, ORDERS_PER_CLIENT),
                    hot_funding(),
                )
                .await;
                let name = format!("{kind:?} {}", scenario.name());
                assert_exact_on_a_hot_account(&name, &stats, &check, kind == SqlKind::Optimistic);
                if kind == SqlKind::Optimistic {
                    assert!(
                        stats.counters.retries > 0,
                        "{name}: 32 clients on one row collide"
                    );
                }
            }
            // Many accounts: four accounts, 10 buys and 10 sells affordable on each.
            let (stats, check) = run_sql(
                &target,
                spec(Scenario::Mix, CLIENTS, ORDERS_PER_CLIENT),
                Funding {
                    cash_krw: 10 * BUY_PRICE_KRW,
                    shares: 10,
                },
            )
            .await;
            assert!(check.ok, "{kind:?} mix: {}", check.describe());
            assert_eq!(stats.counters.orders(), 128, "{kind:?} mix");
            assert!(
                stats.counters.accepted <= 80,
                "{kind:?} mix: {:?}",
                stats.counters
            );
            cleanup(&target).await;
        }
    });
}

#[test]
fn heavy_kuku_ends_exact_with_128_concurrent_orders_on_one_account() {
    let rt = runtime();
    for scenario in [Scenario::Buy, Scenario::Sell] {
        let target = KukuTarget::start(&KukuSettings::default(), 1, hot_funding()).unwrap();
        let stats = rt
            .block_on(async {
                let placer = Arc::new(target.client().await?);
                workload::drive(placer, spec(scenario, CLIENTS, ORDERS_PER_CLIENT)).await
            })
            .unwrap();
        let rows = target.ledger().unwrap();
        target.stop();
        let check = check::check(&rows, &stats.view);
        assert_exact_on_a_hot_account(&format!("kuku {}", scenario.name()), &stats, &check, false);
        assert_eq!(stats.counters.retries, 0, "the single writer never retries");
        // The node's own books: cash held by exactly the 100 accepted buys, or 100 shares.
        let held = rows
            .iter()
            .find(|r| {
                r.asset
                    == if scenario == Scenario::Buy {
                        Asset::Cash
                    } else {
                        Asset::Shares
                    }
            })
            .unwrap();
        assert_eq!((held.reserved_recorded, held.remaining), (held.initial, 0));
    }
    let target = KukuTarget::start(
        &KukuSettings::default(),
        4,
        Funding {
            cash_krw: 10 * BUY_PRICE_KRW,
            shares: 10,
        },
    )
    .unwrap();
    let stats = rt
        .block_on(async {
            let placer = Arc::new(target.client().await?);
            workload::drive(placer, spec(Scenario::Mix, CLIENTS, ORDERS_PER_CLIENT)).await
        })
        .unwrap();
    let rows = target.ledger().unwrap();
    target.stop();
    let check = check::check(&rows, &stats.view);
    assert!(check.ok, "kuku mix: {}", check.describe());
    assert_eq!(stats.counters.orders(), 128);
}

/// Every client waits at a barrier between its read and its write, so in each round all
/// clients read the same amount and all write `read - reserve`: each round keeps one of its
/// reservations. With 8 clients x 16 orders the account loses exactly 112 of 128.
#[test]
fn heavy_the_naive_read_modify_write_loses_updates_and_the_check_catches_it() {
    const N: u32 = 8;
    const ROUNDS: u32 = 16;
    let rt = runtime();
    rt.block_on(async {
        for kind in [SqlKind::NaiveReadCommitted, SqlKind::NaiveRepeatableRead] {
            let mut target = sql_target(kind, LockSettings::default()).await;
            let barrier = Arc::new(Barrier::new(N as usize));
            let hook: Hook = Arc::new(move |point, _order| {
                let barrier = Arc::clone(&barrier);
                Box::pin(async move {
                    if point == HookPoint::AfterRead {
                        // Bounded: a client that failed would otherwise hold the others.
                        let _ = tokio::time::timeout(Duration::from_secs(30), barrier.wait()).await;
                    }
                })
            });
            target.hook = Some(hook);
            let funding = Funding {
                cash_krw: 1_000 * BUY_PRICE_KRW,
                shares: 1_000,
            };
            let (stats, check) = run_sql(&target, spec(Scenario::Buy, N, ROUNDS), funding).await;
            assert_eq!(stats.counters.accepted, (N * ROUNDS) as u64, "{kind:?}");
            assert!(!check.ok, "{kind:?}: the check must catch the lost updates");
            assert_eq!(check.lost_update_rows, 1, "{kind:?}: {check:?}");
            assert_eq!(
                check.lost_amount,
                ((N - 1) * ROUNDS) as i64 * BUY_PRICE_KRW,
                "{kind:?}: {check:?}"
            );
            // Every order is recorded: the money was promised 128 times, deducted 16 times.
            assert_eq!(check.orders_recorded, Some((N * ROUNDS) as u64));
            assert_eq!(check.unacknowledged_rows, 0);
            cleanup(&target).await;
        }
    });
}

/// Client 0 takes the Redis lock and pauses at `pause_at` until client 1 has taken the lock
/// (after client 0's 100 ms lease expired) and placed its order; then client 0 goes on.
async fn lease_expiry(fenced: bool, pause_at: HookPoint) -> (Outcome, Counters, Outcome, Check) {
    let lock = LockSettings {
        ttl: Duration::from_millis(100),
        wait_max: Duration::from_secs(10),
        ..LockSettings::default()
    };
    let mut target = sql_target(SqlKind::RedisLock { fenced }, lock).await;
    let paused = Arc::new(Notify::new());
    let resume = Arc::new(Notify::new());
    let (p, r) = (Arc::clone(&paused), Arc::clone(&resume));
    target.hook = Some(Arc::new(move |point, order: Order| {
        let (p, r) = (Arc::clone(&p), Arc::clone(&r));
        Box::pin(async move {
            if point == pause_at && order.client == 0 {
                p.notify_one();
                let _ = tokio::time::timeout(Duration::from_secs(30), r.notified()).await;
            }
        })
    }));
    let funding = Funding {
        cash_krw: 10 * BUY_PRICE_KRW,
        shares: 10,
    };
    target.reset(1, funding).await.unwrap();
    let placer = Arc::new(SqlPlacer::new(&target, 2).await.unwrap());
    let order = |client| Order {
        client,
        seq: 1,
        account: 0,
        asset: Asset::Cash,
    };
    let a = {
        let placer = Arc::clone(&placer);
        tokio::spawn(async move {
            let mut c = Counters::default();
            let outcome = placer.place(order(0), &mut c).await.unwrap();
            (outcome, c)
        })
    };
    paused.notified().await;
    // Client 1 polls until client 0's lease expires, then runs its whole order.
    let mut b_counters = Counters::default();
    let b = placer.place(order(1), &mut b_counters).await.unwrap();
    assert!(
        b_counters.lock_polls > 0,
        "client 1 had to wait for the lease to expire"
    );
    resume.notify_one();
    let (a, a_counters) = a.await.unwrap();
    placer.close().await;
    let rows = target.ledger().await.unwrap();
    let mut view = workload::ClientView::new(1);
    for (outcome, client) in [(a, 0), (b, 1)] {
        if outcome == Outcome::Accepted {
            view.accepted[0][0].0 += 1;
            view.accepted[0][0].1 += order(client).reserve();
        }
    }
    let check = check::check(&rows, &view);
    cleanup(&target).await;
    (a, a_counters, b, check)
}

#[test]
fn the_fencing_token_refuses_a_holder_whose_lease_expired_mid_work() {
    runtime().block_on(async {
        // Paused between its read and its write: its write carries an outdated token.
        let (a, a_counters, b, check) = lease_expiry(true, HookPoint::AfterRead).await;
        assert_eq!(b, Outcome::Accepted);
        assert_eq!(a, Outcome::Conflict(Conflict::Fenced));
        assert_eq!(
            a_counters.leases_lost, 1,
            "the expired holder's unlock deleted nothing"
        );
        assert!(check.ok, "{}", check.describe());
        // Paused before touching the database: its token registration is refused.
        let (a, _, b, check) = lease_expiry(true, HookPoint::AfterLock).await;
        assert_eq!(
            (a, b),
            (Outcome::Conflict(Conflict::Fenced), Outcome::Accepted)
        );
        assert!(check.ok, "{}", check.describe());
    });
}

#[test]
fn without_the_fencing_token_the_expired_holder_overwrites_and_the_check_catches_it() {
    runtime().block_on(async {
        let (a, a_counters, b, check) = lease_expiry(false, HookPoint::AfterRead).await;
        // Both were told "accepted"; the stale holder wrote the amount it read before the
        // other's reservation, so one reservation is gone.
        assert_eq!((a, b), (Outcome::Accepted, Outcome::Accepted));
        assert_eq!(a_counters.leases_lost, 1);
        assert!(!check.ok);
        assert_eq!(check.lost_update_rows, 1);
        assert_eq!(check.lost_amount, BUY_PRICE_KRW);
    });
}

#[test]
fn innodb_deadlocks_on_gap_locks_at_repeatable_read_only_and_on_lock_upgrades_always() {
    runtime().block_on(async {
        let server = kuku_bench::locks::sql::server_of(&mysql_url()).to_owned();
        let probes = innodb::probes(
            &server,
            &format!("kuku_locks_test_probes_{:x}", unique_nonce()),
        )
        .await
        .unwrap();
        assert_eq!(probes.len(), 4);
        let find = |probe: &str, isolation: &str| {
            probes
                .iter()
                .find(|p| p.probe.starts_with(probe) && p.isolation == isolation)
                .unwrap()
        };
        let deadlocked = |p: &innodb::ProbeResult| {
            [&p.first, &p.second]
                .iter()
                .filter(|o| o.starts_with("error 1213"))
                .count()
        };
        let gap_rr = find("gap lock", "REPEATABLE READ");
        assert_eq!(deadlocked(gap_rr), 1, "{gap_rr:?}");
        assert!(
            gap_rr.locks.iter().all(|l| l.mode.contains("GAP")),
            "{gap_rr:?}"
        );
        let gap_rc = find("gap lock", "READ COMMITTED");
        assert_eq!(deadlocked(gap_rc), 0, "{gap_rc:?}");
        assert_eq!(gap_rc.first, "ok");
        assert!(gap_rc.second.starts_with("error 1062"), "{gap_rc:?}");
        assert!(
            gap_rc.locks.iter().all(|l| !l.mode.contains("GAP")),
            "{gap_rc:?}"
        );
        for isolation in ["REPEATABLE READ", "READ COMMITTED"] {
            let up = find("lock upgrade", isolation);
            assert_eq!(deadlocked(up), 1, "{up:?}");
            assert!(up.locks.iter().any(|l| l.mode == "S"), "{up:?}");
        }
    });
}
