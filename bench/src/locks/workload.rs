//! The one workload every strategy runs: closed-loop clients placing orders that reserve cash
//! (a buy) or shares (a sell) from an account, and the driver that runs them and counts.
//!
//! - **Scenarios**: `buy` (every order reserves cash from one hot account), `sell` (every
//!   order reserves shares of one symbol from that account), `mix` (each order picks one of
//!   `accounts` accounts uniformly and is a buy or a sell with equal odds).
//! - **Closed loop**: each client has exactly one order outstanding; it places the next as
//!   soon as the previous one has an outcome. A client's latency runs from the moment it
//!   decides to place the order to its outcome: waiting for a pooled connection, for a lock,
//!   backing off and retrying are all inside it.
//! - **Stop**: after a fixed time (the benchmark: a warm-up that is not measured, then the
//!   measured window; every order started in the window is measured) or after a fixed count of
//!   orders per client, all clients released together by a barrier (the tests).
//!
//! **Invariants**: every accepted order is counted in [`ClientView`] (warm-up included), so the
//! correctness check compares the target's final state with everything the clients were told.
//!
//! **Performance**: one HdrHistogram per client, merged at the end; no shared state between
//! clients on the hot path besides the target itself.
//!
//! **Known limitations**: the clients run in the benchmark's process on the same two cores as
//! the servers they load, so a strategy that makes the client work harder (polling a lock,
//! retrying) takes CPU from the servers too.

use hdrhistogram::Histogram;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The price of every buy order (KRW per share) and of every sell order. The two never cross,
/// so in Kuku every order rests and holds what it reserved; nothing trades.
pub const BUY_PRICE_KRW: i64 = 100_000;
pub const SELL_PRICE_KRW: i64 = 140_000;
/// Shares per order.
pub const ORDER_QTY: i64 = 1;
/// The symbol the orders trade (Samsung Electronics in the demo universe).
pub const SYMBOL: &str = "005930";
/// Latency histogram bounds: 1 µs to 10 minutes, 3 significant digits.
const LATENCY_NS_MIN: u64 = 1_000;
const LATENCY_NS_MAX: u64 = 600_000_000_000;

/// Which rows the orders reserve from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scenario {
    /// Every order reserves cash from account 0.
    Buy,
    /// Every order reserves shares from account 0.
    Sell,
    /// Orders spread uniformly over all accounts, half buys, half sells.
    Mix,
}

impl Scenario {
    pub const ALL: [Scenario; 3] = [Scenario::Buy, Scenario::Sell, Scenario::Mix];

    pub fn name(self) -> &'static str {
        match self {
            Scenario::Buy => "buy",
            Scenario::Sell => "sell",
            Scenario::Mix => "mix",
        }
    }

    pub fn parse(s: &str) -> Result<Scenario, String> {
        Scenario::ALL
            .into_iter()
            .find(|x| x.name() == s)
            .ok_or_else(|| format!("unknown scenario {s:?} (buy, sell, mix)"))
    }

    /// Accounts the scenario touches (the hot scenarios use one).
    pub fn accounts(self, accounts_mix: u32) -> u32 {
        match self {
            Scenario::Buy | Scenario::Sell => 1,
            Scenario::Mix => accounts_mix.max(1),
        }
    }
}

/// What an order reserves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Asset {
    /// KRW, by a buy.
    Cash,
    /// Shares of [`SYMBOL`], by a sell.
    Shares,
}

impl Asset {
    pub const ALL: [Asset; 2] = [Asset::Cash, Asset::Shares];

    /// The key of the asset's row in the SQL `balances` table.
    pub fn sql_key(self) -> &'static str {
        match self {
            Asset::Cash => "KRW",
            Asset::Shares => SYMBOL,
        }
    }

    pub fn index(self) -> usize {
        match self {
            Asset::Cash => 0,
            Asset::Shares => 1,
        }
    }
}

/// One order a client places.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Order {
    /// The client placing it (0-based) and its sequence number within that client (from 1):
    /// together a key unique in the run.
    pub client: u32,
    pub seq: u32,
    /// Index of the account (0-based; each target maps it to its own account id).
    pub account: u32,
    pub asset: Asset,
}

impl Order {
    /// What the order reserves: KRW for a buy, shares for a sell.
    pub fn reserve(&self) -> i64 {
        match self.asset {
            Asset::Cash => BUY_PRICE_KRW * ORDER_QTY,
            Asset::Shares => ORDER_QTY,
        }
    }

    /// A key unique per run (client order id in Kuku, `client_key` in SQL).
    pub fn key(&self) -> u64 {
        ((self.client as u64 + 1) << 32) | self.seq as u64
    }
}

/// What each account starts with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Funding {
    pub cash_krw: i64,
    pub shares: i64,
}

impl Funding {
    pub fn initial(&self, asset: Asset) -> i64 {
        match asset {
            Asset::Cash => self.cash_krw,
            Asset::Shares => self.shares,
        }
    }
}

/// Why an order was not placed although the account could pay for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Conflict {
    /// Optimistic: the version moved on every attempt, retries ran out.
    RetriesExhausted,
    /// Redis lock: the database refused a write with an outdated fencing token.
    Fenced,
    /// InnoDB's lock wait timeout, or no Redis lock within the wait bound.
    LockTimeout,
    /// Deadlocks on every attempt, retries ran out.
    Deadlock,
}

/// An order's outcome.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Accepted,
    /// Not enough available cash or shares: a correct business reject.
    Insufficient,
    Conflict(Conflict),
}

/// Counters of one client (merged over clients), warm-up excluded unless said.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Counters {
    pub accepted: u64,
    pub insufficient: u64,
    /// Orders given up for contention (every [`Conflict`] kind).
    pub conflicts: u64,
    pub conflicts_retries_exhausted: u64,
    pub fenced: u64,
    pub lock_timeouts: u64,
    pub conflicts_deadlock: u64,
    /// Re-attempts of an order's transaction (version conflicts, deadlocks, Busy resends).
    pub retries: u64,
    /// Deadlocks InnoDB reported to the client (each then retried or given up).
    pub deadlocks: u64,
    /// Failed `SET NX` attempts while waiting for the Redis lock.
    pub lock_polls: u64,
    /// Unlocks that found the lock gone or someone else's (the lease had expired).
    pub leases_lost: u64,
}

impl Counters {
    pub fn outcome(&mut self, outcome: Outcome) {
        match outcome {
            Outcome::Accepted => self.accepted += 1,
            Outcome::Insufficient => self.insufficient += 1,
            Outcome::Conflict(c) => {
                self.conflicts += 1;
                match c {
                    Conflict::RetriesExhausted => self.conflicts_retries_exhausted += 1,
                    Conflict::Fenced => self.fenced += 1,
                    Conflict::LockTimeout => self.lock_timeouts += 1,
                    Conflict::Deadlock => self.conflicts_deadlock += 1,
                }
            }
        }
    }

    pub fn add(&mut self, o: &Counters) {
        self.accepted += o.accepted;
        self.insufficient += o.insufficient;
        self.conflicts += o.conflicts;
        self.conflicts_retries_exhausted += o.conflicts_retries_exhausted;
        self.fenced += o.fenced;
        self.lock_timeouts += o.lock_timeouts;
        self.conflicts_deadlock += o.conflicts_deadlock;
        self.retries += o.retries;
        self.deadlocks += o.deadlocks;
        self.lock_polls += o.lock_polls;
        self.leases_lost += o.leases_lost;
    }

    pub fn orders(&self) -> u64 {
        self.accepted + self.insufficient + self.conflicts
    }
}

/// What the clients were told: accepted orders and their reservations per (account, asset),
/// warm-up included.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClientView {
    /// `[account][asset index]` -> (accepted orders, reserved in total).
    pub accepted: Vec<[(u64, i64); 2]>,
}

impl ClientView {
    pub fn new(accounts: u32) -> ClientView {
        ClientView {
            accepted: vec![[(0, 0); 2]; accounts as usize],
        }
    }

    fn record(&mut self, order: &Order) {
        let slot = &mut self.accepted[order.account as usize][order.asset.index()];
        slot.0 += 1;
        slot.1 += order.reserve();
    }

    fn add(&mut self, o: &ClientView) {
        for (a, b) in self.accepted.iter_mut().zip(&o.accepted) {
            for i in 0..2 {
                a[i].0 += b[i].0;
                a[i].1 += b[i].1;
            }
        }
    }

    pub fn accepted_total(&self) -> u64 {
        self.accepted.iter().map(|a| a[0].0 + a[1].0).sum()
    }
}

/// When the clients stop.
#[derive(Clone, Copy, Debug)]
pub enum Stop {
    /// Run `warmup` unmeasured, then measure for `measure`; orders started in the window are
    /// measured (they may finish after it).
    Time { warmup: Duration, measure: Duration },
    /// Each client places exactly this many orders, all clients starting together.
    Orders(u32),
}

/// One run's shape.
#[derive(Clone, Copy, Debug)]
pub struct RunSpec {
    pub scenario: Scenario,
    pub clients: u32,
    /// Accounts of the `mix` scenario.
    pub accounts_mix: u32,
    pub stop: Stop,
    pub seed: u64,
}

impl RunSpec {
    pub fn accounts(&self) -> u32 {
        self.scenario.accounts(self.accounts_mix)
    }
}

/// Everything a run measured.
#[derive(Clone, Debug)]
pub struct RunStats {
    pub histogram: Histogram<u64>,
    pub counters: Counters,
    /// Length of the measured window (with `Stop::Orders`: first start to last outcome).
    pub window: Duration,
    pub view: ClientView,
}

impl RunStats {
    /// Accepted orders per second in the measured window.
    pub fn accepted_per_s(&self) -> f64 {
        self.counters.accepted as f64 / self.window.as_secs_f64().max(1e-9)
    }

    /// Orders with any outcome per second.
    pub fn orders_per_s(&self) -> f64 {
        self.counters.orders() as f64 / self.window.as_secs_f64().max(1e-9)
    }
}

/// A deterministic xorshift generator (the workload never depends on a crate's PRNG).
#[derive(Clone, Copy, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        (((self.next_u64() >> 11) as u128 * n as u128) >> 53) as u64
    }
}

/// The `seq`-th order of `client` in `scenario`.
pub fn next_order(
    scenario: Scenario,
    accounts: u32,
    client: u32,
    seq: u32,
    rng: &mut Rng,
) -> Order {
    let (account, asset) = match scenario {
        Scenario::Buy => (0, Asset::Cash),
        Scenario::Sell => (0, Asset::Shares),
        Scenario::Mix => {
            let account = rng.below(accounts.max(1) as u64) as u32;
            let asset = if rng.next_u64() & 1 == 0 {
                Asset::Cash
            } else {
                Asset::Shares
            };
            (account, asset)
        }
    };
    Order {
        client,
        seq,
        account,
        asset,
    }
}

/// A target the driver can place orders on: each strategy's client side.
pub trait Placer: Send + Sync + 'static {
    /// Places one order; counts retries, lock polls and the like in `counters`. An `Err` is a
    /// failure of the harness or a server (not a contention outcome) and stops the run.
    fn place(
        &self,
        order: Order,
        counters: &mut Counters,
    ) -> impl std::future::Future<Output = anyhow::Result<Outcome>> + Send;
}

/// Runs `spec.clients` closed-loop clients against `placer` on the current runtime.
pub async fn drive<P: Placer>(placer: Arc<P>, spec: RunSpec) -> anyhow::Result<RunStats> {
    let clients = spec.clients.max(1);
    let accounts = spec.accounts();
    let barrier = Arc::new(tokio::sync::Barrier::new(clients as usize + 1));
    let mut tasks = Vec::with_capacity(clients as usize);
    for client in 0..clients {
        let placer = Arc::clone(&placer);
        let barrier = Arc::clone(&barrier);
        tasks.push(tokio::spawn(async move {
            run_client(placer, spec, accounts, client, barrier).await
        }));
    }
    // Every client is spawned and waiting: start the clock for all at once.
    barrier.wait().await;
    let started = Instant::now();
    let mut histogram = Histogram::new_with_bounds(LATENCY_NS_MIN, LATENCY_NS_MAX, 3)?;
    let mut counters = Counters::default();
    let mut view = ClientView::new(accounts);
    let mut first_error = None;
    for task in tasks {
        match task.await {
            Ok(Ok(c)) => {
                histogram.add(&c.histogram)?;
                counters.add(&c.counters);
                view.add(&c.view);
            }
            Ok(Err(e)) => {
                first_error.get_or_insert(e);
            }
            Err(join) => {
                first_error.get_or_insert(anyhow::anyhow!("a client task failed: {join}"));
            }
        }
    }
    if let Some(e) = first_error {
        return Err(e);
    }
    let window = match spec.stop {
        Stop::Time { measure, .. } => measure,
        Stop::Orders(_) => started.elapsed(),
    };
    Ok(RunStats {
        histogram,
        counters,
        window,
        view,
    })
}

struct ClientResult {
    histogram: Histogram<u64>,
    counters: Counters,
    view: ClientView,
}

async fn run_client<P: Placer>(
    placer: Arc<P>,
    spec: RunSpec,
    accounts: u32,
    client: u32,
    barrier: Arc<tokio::sync::Barrier>,
) -> anyhow::Result<ClientResult> {
    let mut rng = Rng::new(spec.seed ^ ((client as u64 + 1) << 20));
    let mut histogram = Histogram::new_with_bounds(LATENCY_NS_MIN, LATENCY_NS_MAX, 3)?;
    let mut measured = Counters::default();
    let mut view = ClientView::new(accounts);
    barrier.wait().await;
    let t0 = Instant::now();
    let (measure_from, end, orders_max) = match spec.stop {
        Stop::Time { warmup, measure } => (t0 + warmup, Some(t0 + warmup + measure), u32::MAX),
        Stop::Orders(n) => (t0, None, n),
    };
    let mut seq = 0u32;
    while seq < orders_max {
        let start = Instant::now();
        if end.is_some_and(|end| start >= end) {
            break;
        }
        seq += 1;
        let order = next_order(spec.scenario, accounts, client, seq, &mut rng);
        let mut counters = Counters::default();
        let outcome = placer.place(order, &mut counters).await?;
        let latency_ns = start.elapsed().as_nanos() as u64;
        if outcome == Outcome::Accepted {
            view.record(&order);
        }
        if start >= measure_from {
            counters.outcome(outcome);
            measured.add(&counters);
            histogram.saturating_record(latency_ns.clamp(LATENCY_NS_MIN, LATENCY_NS_MAX));
        }
    }
    Ok(ClientResult {
        histogram,
        counters: measured,
        view,
    })
}

/// Exponential backoff with full jitter: a random wait in `[0, min(cap, base * 2^attempt)]`.
pub fn backoff(attempt: u32, base: Duration, cap: Duration, rng: &mut Rng) -> Duration {
    let ceiling = base
        .saturating_mul(1u32 << attempt.min(16))
        .min(cap)
        .as_nanos() as u64;
    Duration::from_nanos(rng.below(ceiling.max(1)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orders_follow_the_scenario() {
        let mut rng = Rng::new(7);
        for seq in 1..100 {
            let o = next_order(Scenario::Buy, 1, 3, seq, &mut rng);
            assert_eq!((o.account, o.asset), (0, Asset::Cash));
            assert_eq!(o.reserve(), BUY_PRICE_KRW);
            let o = next_order(Scenario::Sell, 1, 3, seq, &mut rng);
            assert_eq!((o.account, o.asset, o.reserve()), (0, Asset::Shares, 1));
        }
        let mut seen = [[false; 2]; 10];
        for seq in 1..2_000 {
            let o = next_order(Scenario::Mix, 10, 0, seq, &mut rng);
            seen[o.account as usize][o.asset.index()] = true;
        }
        assert!(seen.iter().flatten().all(|&s| s), "every account and asset");
    }

    #[test]
    fn keys_are_unique_per_client_and_sequence() {
        let a = Order {
            client: 0,
            seq: 1,
            account: 0,
            asset: Asset::Cash,
        };
        let b = Order { client: 1, ..a };
        let c = Order { seq: 2, ..a };
        assert_ne!(a.key(), b.key());
        assert_ne!(a.key(), c.key());
        assert!(a.key() < 1 << 63, "the top bit is the gateway's");
    }

    #[test]
    fn backoff_stays_under_its_cap() {
        let mut rng = Rng::new(1);
        let (base, cap) = (Duration::from_micros(500), Duration::from_millis(20));
        for attempt in 0..40 {
            let d = backoff(attempt, base, cap, &mut rng);
            assert!(
                d <= cap.min(base * (1 << attempt.min(16))),
                "{attempt}: {d:?}"
            );
        }
    }

    #[test]
    fn counters_sort_outcomes_by_kind() {
        let mut c = Counters::default();
        c.outcome(Outcome::Accepted);
        c.outcome(Outcome::Insufficient);
        c.outcome(Outcome::Conflict(Conflict::Fenced));
        c.outcome(Outcome::Conflict(Conflict::LockTimeout));
        assert_eq!((c.accepted, c.insufficient, c.conflicts), (1, 1, 2));
        assert_eq!((c.fenced, c.lock_timeouts), (1, 1));
        assert_eq!(c.orders(), 4);
    }
}
