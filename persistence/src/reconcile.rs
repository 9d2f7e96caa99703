//! Reconciliation: the query store against the engine state rebuilt from the journal.
//!
//! The engine is rebuilt at the database's checkpoint (newest snapshot + replay, read-only, so
//! it works against a live node), and compared on:
//! 1. the trial balance of the stored ledger lines: every asset sums to zero;
//! 2. every ledger account's balance (sum of its stored lines) against the engine's ledger
//!    (user cash and shares, fee, tax, market and external accounts);
//! 3. the balances read model (cash, hold) and account owners against the engine's accounts;
//! 4. the positions read model (shares, hold, cost basis, realized profit);
//! 5. open orders (account, symbol, side, price, open and filled quantity).
//!
//! Any difference is listed with both sides; [`ReconcileReport::is_clean`] is what `kuku
//! reconcile` turns into its exit code. The database lagging the journal is reported, not a
//! difference: the comparison is at the checkpoint.
//!
//! **Performance**: one recovery (O(snapshot + replay)), and full scans of the read models,
//! open orders and ledger lines (the sums are computed by the database).

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use kuku_engine::{Engine, EngineConfig};
use kuku_journal::JournalReader;
use kuku_journal::state::{RecoverOptions, recover_engine_with};

use crate::builder::parse_side;
use crate::db::Database;
use crate::error::PersistenceError;
use crate::query::{BalanceView, LedgerKey, OrderView, PositionView};
use crate::store::Checkpoint;

/// How many differences of one area are listed before the rest are only counted.
pub const DIFFERENCES_LISTED_MAX: usize = 50;

/// One thing the database and the engine disagree on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Difference {
    /// What was compared: `trial balance`, `ledger`, `balance`, `account`, `position`, `open order`.
    pub area: &'static str,
    /// Which row: e.g. `account 7`, `USER_CASH account 7 asset KRW`.
    pub key: String,
    pub database: String,
    pub engine: String,
}

/// How many items each comparison covered.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Compared {
    pub accounts: usize,
    pub positions: usize,
    pub open_orders: usize,
    pub ledger_accounts: usize,
    pub assets: usize,
}

/// What the database holds, as compared (read by [`read_database_state`]).
#[derive(Clone, Debug, Default)]
pub struct DatabaseState {
    pub checkpoint: Checkpoint,
    pub trial_balance: BTreeMap<u32, i64>,
    pub ledger_balances: BTreeMap<LedgerKey, i64>,
    pub balances: Vec<BalanceView>,
    pub owners: BTreeMap<u32, String>,
    pub positions: Vec<PositionView>,
    pub open_orders: Vec<OrderView>,
}

#[derive(Clone, Debug)]
pub struct ReconcileReport {
    /// The database URL (password masked).
    pub database: String,
    pub checkpoint: Checkpoint,
    /// The last command in the journal (the database lags it by `journal_seq_last - checkpoint`).
    pub journal_seq_last: u64,
    /// The stored ledger lines summed per asset (0 = KRW).
    pub trial_balance: BTreeMap<u32, i64>,
    pub compared: Compared,
    pub differences: Vec<Difference>,
}

impl ReconcileReport {
    pub fn is_clean(&self) -> bool {
        self.differences.is_empty()
    }
}

/// Reads what the comparison needs from the database.
pub async fn read_database_state(db: &Database) -> Result<DatabaseState, PersistenceError> {
    Ok(DatabaseState {
        checkpoint: db.checkpoint().await?,
        trial_balance: db.trial_balance().await?,
        ledger_balances: db.ledger_balances().await?,
        balances: db.balances().await?,
        owners: db.account_owners().await?,
        positions: db.positions().await?,
        open_orders: db.open_orders(None).await?,
    })
}

/// Rebuilds the engine at the database's checkpoint from the journal in `journal_dir` and
/// compares.
pub async fn reconcile(
    db: &Database,
    journal_dir: &Path,
    engine_config: &EngineConfig,
) -> Result<ReconcileReport, PersistenceError> {
    let state = read_database_state(db).await?;
    let checkpoint = state.checkpoint;
    let options = RecoverOptions {
        seq_until: Some(checkpoint.seq),
        use_snapshots: true,
    };
    let (engine, _) = recover_engine_with(journal_dir, engine_config, options)?;
    let reader = JournalReader::open(journal_dir)?;
    let after = reader
        .frames_from(checkpoint.seq + 1)
        .map(|frames| frames.map_while(Result::ok).count() as u64)
        .unwrap_or(0);
    let (compared, differences) = compare(&state, &engine);
    Ok(ReconcileReport {
        database: db.url().redacted(),
        checkpoint,
        journal_seq_last: checkpoint.seq + after,
        trial_balance: state.trial_balance,
        compared,
        differences,
    })
}

/// Compares a database state with an engine at the same seq.
pub fn compare(db: &DatabaseState, engine: &Engine) -> (Compared, Vec<Difference>) {
    let mut diffs = Vec::new();
    let mut compared = Compared {
        assets: db.trial_balance.len(),
        ..Compared::default()
    };
    for (asset, total) in &db.trial_balance {
        if *total != 0 {
            diffs.push(Difference {
                area: "trial balance",
                key: format!("asset {}", asset_label(*asset)),
                database: total.to_string(),
                engine: "0".into(),
            });
        }
    }
    let expected = engine_ledger_balances(engine);
    compared.ledger_accounts = expected.len();
    diff_maps(
        "ledger",
        &db.ledger_balances,
        &expected,
        ledger_label,
        &mut diffs,
    );
    compare_accounts(db, engine, &mut compared, &mut diffs);
    compare_positions(db, engine, &mut compared, &mut diffs);
    compare_orders(db, engine, &mut compared, &mut diffs);
    (compared, diffs)
}

fn compare_accounts(
    db: &DatabaseState,
    engine: &Engine,
    compared: &mut Compared,
    diffs: &mut Vec<Difference>,
) {
    let stored: BTreeMap<u32, (i64, i64)> = db
        .balances
        .iter()
        .map(|b| (b.account_id, (b.cash, b.cash_hold)))
        .collect();
    let live: BTreeMap<u32, (i64, i64)> = engine
        .ledger()
        .accounts()
        .iter()
        .map(|a| (a.id.0, (a.cash().0, a.cash_hold().0)))
        .collect();
    compared.accounts = live.len();
    diff_maps(
        "balance",
        &stored,
        &live,
        |id| format!("account {id} (cash, hold)"),
        diffs,
    );
    let owners: BTreeMap<u32, String> = engine
        .ledger()
        .accounts()
        .iter()
        .map(|a| (a.id.0, a.owner.as_str().to_owned()))
        .collect();
    diff_maps(
        "account",
        &db.owners,
        &owners,
        |id| format!("account {id} owner"),
        diffs,
    );
}

fn compare_positions(
    db: &DatabaseState,
    engine: &Engine,
    compared: &mut Compared,
    diffs: &mut Vec<Difference>,
) {
    type Pos = (i64, i64, i64, i64);
    let flat: Pos = (0, 0, 0, 0);
    let stored: BTreeMap<(u32, u32), Pos> = db
        .positions
        .iter()
        .map(|p| {
            (
                (p.account_id, p.symbol_id),
                (p.qty, p.hold, p.cost_basis, p.realized_pnl),
            )
        })
        .filter(|(_, v)| *v != flat)
        .collect();
    let live: BTreeMap<(u32, u32), Pos> = engine
        .ledger()
        .positions()
        .iter()
        .map(|p| {
            let v = (p.qty().0, p.hold().0, p.cost_basis.0, p.realized_pnl.0);
            ((p.account.0, p.symbol.0), v)
        })
        .filter(|(_, v)| *v != flat)
        .collect();
    compared.positions = live.len();
    diff_maps(
        "position",
        &stored,
        &live,
        |(a, s)| format!("account {a} symbol {s} (qty, hold, cost basis, realized pnl)"),
        diffs,
    );
}

fn compare_orders(
    db: &DatabaseState,
    engine: &Engine,
    compared: &mut Compared,
    diffs: &mut Vec<Difference>,
) {
    type Open = (u32, u32, String, i64, i64, i64);
    let stored: BTreeMap<u64, Open> = db
        .open_orders
        .iter()
        .map(|o| {
            let side = parse_side(&o.side).map_or(o.side.clone(), |s| format!("{s:?}"));
            let v = (o.account_id, o.symbol_id, side, o.price, o.leaves, o.filled);
            (o.order_id, v)
        })
        .collect();
    let live: BTreeMap<u64, Open> = engine
        .live_orders()
        .map(|o| {
            let v = (
                o.account.0,
                o.symbol.0,
                format!("{:?}", o.side),
                o.price.0,
                o.leaves.0,
                o.filled.0,
            );
            (o.id.0, v)
        })
        .collect();
    compared.open_orders = live.len();
    diff_maps(
        "open order",
        &stored,
        &live,
        |id| format!("order {id} (account, symbol, side, price, leaves, filled)"),
        diffs,
    );
}

/// Every ledger account's balance per asset in the engine (non-zero ones).
pub fn engine_ledger_balances(engine: &Engine) -> BTreeMap<LedgerKey, i64> {
    let l = engine.ledger();
    let mut m = BTreeMap::new();
    let mut put = |account: &str, id: u32, asset: u32, amount: i64| {
        if amount != 0 {
            m.insert((account.to_owned(), id, asset), amount);
        }
    };
    for a in l.accounts() {
        put("USER_CASH", a.id.0, 0, a.cash().0);
    }
    for p in l.positions() {
        put("USER_SECURITIES", p.account.0, p.symbol.0, p.qty().0);
    }
    put("SYSTEM_FEE", 0, 0, l.system().fee().0);
    put("SYSTEM_TAX", 0, 0, l.system().tax().0);
    put("SYSTEM_MARKET", 0, 0, l.system().market_cash().0);
    put("SYSTEM_EXTERNAL", 0, 0, l.system().external_cash().0);
    for (i, s) in l.system_shares().iter().enumerate() {
        let symbol = i as u32 + 1;
        put("SYSTEM_MARKET", 0, symbol, s.market());
        put("SYSTEM_EXTERNAL", 0, symbol, s.external());
    }
    m
}

fn diff_maps<K: Ord + Clone, V: PartialEq + fmt::Debug>(
    area: &'static str,
    database: &BTreeMap<K, V>,
    engine: &BTreeMap<K, V>,
    label: impl Fn(&K) -> String,
    diffs: &mut Vec<Difference>,
) {
    let show = |v: Option<&V>| v.map_or_else(|| "(none)".to_owned(), |v| format!("{v:?}"));
    let keys: std::collections::BTreeSet<&K> = database.keys().chain(engine.keys()).collect();
    for key in keys {
        let (d, e) = (database.get(key), engine.get(key));
        if d != e {
            diffs.push(Difference {
                area,
                key: label(key),
                database: show(d),
                engine: show(e),
            });
        }
    }
}

fn asset_label(asset: u32) -> String {
    if asset == 0 {
        "KRW".into()
    } else {
        format!("shares of symbol {asset}")
    }
}

fn ledger_label((account, id, asset): &LedgerKey) -> String {
    if account.starts_with("USER") {
        format!("{account} account {id} in {}", asset_label(*asset))
    } else {
        format!("{account} in {}", asset_label(*asset))
    }
}

impl fmt::Display for ReconcileReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "database {} at checkpoint seq {} (epoch {}); journal at seq {}{}",
            self.database,
            self.checkpoint.seq,
            self.checkpoint.epoch,
            self.journal_seq_last,
            match self.journal_seq_last - self.checkpoint.seq.min(self.journal_seq_last) {
                0 => String::new(),
                n => format!(" (the database lags by {n} commands: compared at its checkpoint)"),
            }
        )?;
        write!(f, "trial balance (stored ledger lines per asset):")?;
        if self.trial_balance.is_empty() {
            write!(f, " no lines yet")?;
        }
        for (asset, total) in &self.trial_balance {
            write!(f, " {}={total}", asset_label(*asset))?;
        }
        writeln!(f)?;
        let c = self.compared;
        writeln!(
            f,
            "compared: {} accounts, {} positions, {} open orders, {} ledger account balances, {} assets",
            c.accounts, c.positions, c.open_orders, c.ledger_accounts, c.assets
        )?;
        let mut per_area: BTreeMap<&str, usize> = BTreeMap::new();
        for d in &self.differences {
            let n = per_area.entry(d.area).or_default();
            *n += 1;
            if *n <= DIFFERENCES_LISTED_MAX {
                writeln!(
                    f,
                    "MISMATCH {}: {}: database {} | engine {}",
                    d.area, d.key, d.database, d.engine
                )?;
            }
        }
        for (area, n) in &per_area {
            if *n > DIFFERENCES_LISTED_MAX {
                writeln!(
                    f,
                    "... and {} more {area} differences",
                    n - DIFFERENCES_LISTED_MAX
                )?;
            }
        }
        if self.is_clean() {
            write!(f, "result: no differences")
        } else {
            write!(f, "result: {} differences", self.differences.len())
        }
    }
}
