//! Reconciliation: the query store against the journal, table by table.
//!
//! Every table the writer fills is compared whole: `orders` (open and closed), `trades`,
//! `ledger_transactions`, `ledger_entries`, `balances`, `positions`, `accounts`, `symbols`,
//! and the `kuku_checkpoint` row. Closed orders and trades are not in the engine's state, so
//! the expected rows are rebuilt by replaying the journal from genesis up to the database's
//! checkpoint through the writer's own row builder ([`BatchBuilder`]), applied the way the
//! writer's statements apply them (inserts, and upserts that change only their update
//! columns). For each table: the row count and an order-independent hash on both sides, then
//! the first differing rows as a readable diff. The engine rebuilt at the checkpoint is also
//! compared with what the rows say (an independent second opinion):
//! 1. the trial balance of the stored ledger lines: every asset sums to zero;
//! 2. every ledger account's balance (sum of its stored lines) against the engine's ledger;
//! 3. the balances rows (cash, hold) and account owners against the engine's accounts;
//! 4. the positions rows (shares, hold, cost basis, realized profit);
//! 5. open orders (account, symbol, side, price, open and filled quantity).
//!
//! The database is read in one transaction (a consistent snapshot on InnoDB and SQLite), so a
//! live writer cannot move it between two tables. The database lagging the journal is
//! reported, not a difference: the comparison is at the checkpoint. Any difference makes
//! [`ReconcileReport::is_clean`] false, which `kuku reconcile` turns into exit status 2.
//!
//! **Performance**: one replay of the journal from genesis to the checkpoint (O(commands),
//! applying each, about a million a second) and one full scan of every table; both sides'
//! rows are held in memory (roughly 200 bytes a row).
//!
//! **Known limitations**: a journal that no longer starts at seq 1 (after `kuku upgrade`
//! archived its older frames) cannot rebuild the rows written before its first frame: the
//! tables are then not compared (the report says so) and only the engine checks run.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use kuku_engine::hash::stable_hash;
use kuku_engine::{Engine, EngineConfig, Event, EventSink};
use kuku_journal::state::{RecoverOptions, recover_engine_with};
use kuku_journal::{JournalReader, codec};
use sqlx::{AnyConnection, AssertSqlSafe, Row};

use crate::builder::{BatchBuilder, parse_side};
use crate::db::Database;
use crate::error::PersistenceError;
use crate::intake::is_stored;
use crate::query::{BalanceView, LedgerKey, OrderView, PositionView};
use crate::rows::{
    AccountRow, BalanceRow, Batch, Cell, EntryRow, ExternalTransactionRow, OrderRow, PositionRow,
    SymbolRow, TableRow, TradeRow, TradeTransactionRow,
};
use crate::store::{self, Checkpoint};

/// How many differences of one area are listed before the rest are only counted.
pub const DIFFERENCES_LISTED_MAX: usize = 50;

/// How many differing rows of one table are shown.
pub const ROWS_LISTED_MAX: usize = 10;

/// Commands whose rows are folded into the expected tables at a time.
const REPLAY_BATCH_COMMANDS: u64 = 4_096;

/// One thing the database and the engine disagree on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Difference {
    /// What was compared: `trial balance`, `ledger`, `balance`, `account`, `position`,
    /// `open order`, `checkpoint`, or `table <name>`.
    pub area: String,
    /// Which row: e.g. `account 7`, `USER_CASH account 7 asset KRW`.
    pub key: String,
    pub database: String,
    pub engine: String,
}

/// How many items each engine comparison covered.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Compared {
    pub accounts: usize,
    pub positions: usize,
    pub open_orders: usize,
    pub ledger_accounts: usize,
    pub assets: usize,
}

/// One table on both sides.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableComparison {
    pub table: &'static str,
    pub database_rows: usize,
    pub database_hash: u64,
    /// The rows the journal's replay expects.
    pub expected_rows: usize,
    pub expected_hash: u64,
    /// Rows missing on one side or different, in key order.
    pub differing_rows: usize,
}

impl TableComparison {
    pub fn matches(&self) -> bool {
        self.differing_rows == 0
    }
}

/// What the database holds, as compared with the engine (derived from its rows).
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
    /// The commands whose rows were rebuilt (`None`: the tables were not compared).
    pub covered: Option<(u64, u64)>,
    /// Why the tables were not compared, when `covered` is `None`.
    pub not_covered: Option<String>,
    /// The stored ledger lines summed per asset (0 = KRW).
    pub trial_balance: BTreeMap<u32, i64>,
    pub compared: Compared,
    pub tables: Vec<TableComparison>,
    pub differences: Vec<Difference>,
}

impl ReconcileReport {
    pub fn is_clean(&self) -> bool {
        self.differences.is_empty() && self.tables.iter().all(TableComparison::matches)
    }
}

/// A table's rows by primary key.
type Rows = BTreeMap<Vec<Cell>, Vec<Cell>>;

/// A table as stored or as expected.
#[derive(Clone, Debug)]
struct Table {
    name: &'static str,
    columns: &'static [&'static str],
    key: &'static [&'static str],
    rows: Rows,
}

impl Table {
    fn of<R: TableRow>() -> Table {
        Table {
            name: R::TABLE,
            columns: R::COLUMNS,
            key: R::KEY,
            rows: Rows::new(),
        }
    }

    fn index(&self, column: &str) -> usize {
        column_index(self.name, self.columns, column)
    }

    fn key_of(&self, cells: &[Cell]) -> Vec<Cell> {
        self.key
            .iter()
            .map(|k| cells[self.index(k)].clone())
            .collect()
    }

    /// Applies rows the way the writer's statement for `R` does.
    fn apply<R: TableRow>(&mut self, rows: &[R]) {
        for row in rows {
            let cells = row.cells();
            // A row type's cells and its columns are written side by side in rows.rs: a
            // column added to one and not the other is a bug, found here, not in a diff.
            assert_eq!(
                cells.len(),
                self.columns.len(),
                "{}: cells vs columns",
                self.name
            );
            let key = self.key_of(&cells);
            let (name, columns) = (self.name, self.columns);
            match (R::UPSERT, self.rows.get_mut(&key)) {
                (Some((_, updated)), Some(existing)) => {
                    for column in updated {
                        let i = column_index(name, columns, column);
                        existing[i] = cells[i].clone();
                    }
                }
                // An insert of an existing key would fail in the database; the replay never
                // makes one (the builder writes each insert-only row once).
                _ => {
                    self.rows.insert(key, cells);
                }
            }
        }
    }

    fn hash(&self) -> u64 {
        self.rows.iter().fold(0u64, |sum, (key, row)| {
            sum.wrapping_add(stable_hash(&(hashable(key), hashable(row))))
        })
    }

    fn int(&self, row: &[Cell], column: &str) -> i64 {
        match &row[self.index(column)] {
            Cell::Int(v) => *v,
            _ => 0,
        }
    }

    fn text(&self, row: &[Cell], column: &str) -> String {
        match &row[self.index(column)] {
            Cell::Text(t) => t.clone(),
            Cell::Int(v) => v.to_string(),
            Cell::Null => String::new(),
        }
    }

    fn describe(&self, cells: &[Cell]) -> String {
        self.columns
            .iter()
            .zip(cells)
            .map(|(c, v)| format!("{c}={v}"))
            .collect::<Vec<_>>()
            .join(" ")
    }

    fn describe_key(&self, key: &[Cell]) -> String {
        self.key
            .iter()
            .zip(key)
            .map(|(c, v)| format!("{c}={v}"))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// Where `column` is among a table's `columns` (the names are the schema's, fixed here).
fn column_index(table: &str, columns: &[&str], column: &str) -> usize {
    columns
        .iter()
        .position(|c| *c == column)
        .unwrap_or_else(|| panic!("{table} has no column {column}"))
}

/// A cell as a serde-hashable value: (kind, number, text).
fn hashable(cells: &[Cell]) -> Vec<(u8, i64, &str)> {
    cells
        .iter()
        .map(|c| match c {
            Cell::Null => (0, 0, ""),
            Cell::Int(v) => (1, *v, ""),
            Cell::Text(t) => (2, 0, t.as_str()),
        })
        .collect()
}

/// Every table the writer fills, empty.
fn empty_tables() -> Vec<Table> {
    vec![
        Table::of::<SymbolRow>(),
        Table::of::<AccountRow>(),
        Table::of::<TradeTransactionRow>(),
        Table::of::<EntryRow>(),
        Table::of::<TradeRow>(),
        Table::of::<OrderRow>(),
        Table::of::<BalanceRow>(),
        Table::of::<PositionRow>(),
    ]
}

fn table<'t>(tables: &'t mut [Table], name: &str) -> &'t mut Table {
    tables
        .iter_mut()
        .find(|t| t.name == name)
        .unwrap_or_else(|| panic!("no table {name}"))
}

/// Applies one batch of the builder to the expected tables, in the writer's statement order.
fn apply_batch(tables: &mut [Table], batch: &Batch) {
    table(tables, SymbolRow::TABLE).apply(&batch.symbols);
    table(tables, AccountRow::TABLE).apply(&batch.accounts);
    table(tables, TradeTransactionRow::TABLE).apply(&batch.trade_transactions);
    table(tables, ExternalTransactionRow::TABLE).apply(batch.external_transactions.rows());
    table(tables, EntryRow::TABLE).apply(&batch.entries);
    table(tables, TradeRow::TABLE).apply(&batch.trades);
    table(tables, OrderRow::TABLE).apply(batch.orders.rows());
    table(tables, BalanceRow::TABLE).apply(batch.balances.rows());
    table(tables, PositionRow::TABLE).apply(batch.positions.rows());
}

/// Reads a whole table into cells.
async fn read_table(conn: &mut AnyConnection, mut table: Table) -> Result<Table, PersistenceError> {
    let sql = format!("SELECT {} FROM {}", table.columns.join(", "), table.name);
    let rows = sqlx::query(AssertSqlSafe(sql))
        .fetch_all(&mut *conn)
        .await
        .map_err(PersistenceError::db("reading a table"))?;
    for row in &rows {
        let mut cells = Vec::with_capacity(table.columns.len());
        for i in 0..table.columns.len() {
            let cell = match row.try_get::<Option<i64>, _>(i) {
                Ok(v) => v.map_or(Cell::Null, Cell::Int),
                Err(_) => row
                    .try_get::<Option<String>, _>(i)
                    .map_err(PersistenceError::db("decoding a row"))?
                    .map_or(Cell::Null, Cell::Text),
            };
            cells.push(cell);
        }
        let key = table.key_of(&cells);
        table.rows.insert(key, cells);
    }
    Ok(table)
}

/// Reads the checkpoint and every table in one transaction.
async fn read_stored(db: &Database) -> Result<(Checkpoint, Vec<Table>), PersistenceError> {
    use sqlx::Connection;
    let mut conn = db
        .pool()
        .acquire()
        .await
        .map_err(PersistenceError::db("connecting"))?;
    let mut tx = conn
        .begin()
        .await
        .map_err(PersistenceError::db("beginning a read"))?;
    let checkpoint = store::read_checkpoint(&mut tx).await?;
    let mut tables = Vec::new();
    for empty in empty_tables() {
        tables.push(read_table(&mut tx, empty).await?);
    }
    tx.rollback()
        .await
        .map_err(PersistenceError::db("ending a read"))?;
    Ok((checkpoint, tables))
}

/// What the engine comparisons need, from the stored rows.
fn database_state(checkpoint: Checkpoint, tables: &[Table]) -> DatabaseState {
    let find = |name: &str| {
        tables
            .iter()
            .find(|t| t.name == name)
            .unwrap_or_else(|| panic!("no table {name}"))
    };
    let mut state = DatabaseState {
        checkpoint,
        ..DatabaseState::default()
    };
    let entries = find(EntryRow::TABLE);
    for row in entries.rows.values() {
        let amount = entries.int(row, "amount");
        let asset = entries.int(row, "asset_symbol_id") as u32;
        *state.trial_balance.entry(asset).or_default() += amount;
        let key = (
            entries.text(row, "ledger_account"),
            entries.int(row, "account_id") as u32,
            asset,
        );
        *state.ledger_balances.entry(key).or_default() += amount;
    }
    state.ledger_balances.retain(|_, v| *v != 0);
    let balances = find(BalanceRow::TABLE);
    state.balances = balances
        .rows
        .values()
        .map(|r| BalanceView {
            account_id: balances.int(r, "account_id") as u32,
            cash: balances.int(r, "cash"),
            cash_hold: balances.int(r, "cash_hold"),
        })
        .collect();
    let accounts = find(AccountRow::TABLE);
    state.owners = accounts
        .rows
        .values()
        .map(|r| {
            (
                accounts.int(r, "account_id") as u32,
                accounts.text(r, "owner"),
            )
        })
        .collect();
    let positions = find(PositionRow::TABLE);
    state.positions = positions
        .rows
        .values()
        .map(|r| PositionView {
            account_id: positions.int(r, "account_id") as u32,
            symbol_id: positions.int(r, "symbol_id") as u32,
            qty: positions.int(r, "qty"),
            hold: positions.int(r, "hold"),
            cost_basis: positions.int(r, "cost_basis"),
            realized_pnl: positions.int(r, "realized_pnl"),
        })
        .collect();
    let orders = find(OrderRow::TABLE);
    state.open_orders = orders
        .rows
        .values()
        .filter(|r| orders.int(r, "is_open") == 1)
        .map(|r| OrderView {
            order_id: orders.int(r, "order_id") as u64,
            account_id: orders.int(r, "account_id") as u32,
            client_order_id: orders.int(r, "client_order_id") as u64,
            symbol_id: orders.int(r, "symbol_id") as u32,
            side: orders.text(r, "side"),
            order_type: orders.text(r, "order_type"),
            tif: orders.text(r, "tif"),
            price: orders.int(r, "price"),
            qty: orders.int(r, "qty"),
            leaves: orders.int(r, "leaves"),
            filled: orders.int(r, "filled"),
            cancelled: orders.int(r, "cancelled"),
            status: orders.text(r, "status"),
            cancel_reason: Some(orders.text(r, "cancel_reason")).filter(|t| !t.is_empty()),
            accepted_seq: orders.int(r, "accepted_seq") as u64,
            updated_seq: orders.int(r, "updated_seq") as u64,
        })
        .collect();
    state
}

/// Reads what the engine comparison needs from the database, in one transaction.
pub async fn read_database_state(db: &Database) -> Result<DatabaseState, PersistenceError> {
    let (checkpoint, tables) = read_stored(db).await?;
    Ok(database_state(checkpoint, &tables))
}

/// Collects the stored events of one command.
#[derive(Default)]
struct StoredEvents(Vec<Event>);

impl EventSink for StoredEvents {
    fn emit(&mut self, event: &Event) {
        if is_stored(event) {
            self.0.push(*event);
        }
    }
}

/// What replaying the journal to the checkpoint gives.
struct Rebuilt {
    engine: Engine,
    /// `None` when the tables could not be rebuilt (the reason is in `not_covered`).
    tables: Option<Vec<Table>>,
    not_covered: Option<String>,
    /// The ts of the command at the checkpoint (0 at seq 0).
    ts_at_checkpoint: u64,
}

/// Replays the journal from genesis to `seq` through the writer's row builder.
fn rebuild(
    journal_dir: &Path,
    config: &EngineConfig,
    seq: u64,
) -> Result<Rebuilt, PersistenceError> {
    let reader = JournalReader::open(journal_dir)?;
    if reader.seq_first() > 1 {
        let options = RecoverOptions {
            seq_until: Some(seq),
            use_snapshots: true,
        };
        let (engine, _) = recover_engine_with(journal_dir, config, options)?;
        let ts = if seq >= reader.seq_first() {
            reader
                .frames_from(seq)?
                .next()
                .transpose()?
                .map_or(0, |f| f.ts)
        } else {
            0
        };
        return Ok(Rebuilt {
            engine,
            tables: None,
            not_covered: Some(format!(
                "the journal starts at seq {} (its earlier frames were archived), so the rows \
                 of the commands before it cannot be rebuilt",
                reader.seq_first()
            )),
            ts_at_checkpoint: ts,
        });
    }
    reader.check_meta(&kuku_journal::journal_meta(config, 0))?;
    let mut engine = Engine::new(*config);
    let mut tables = empty_tables();
    let mut builder = BatchBuilder::default();
    let mut events = StoredEvents::default();
    let mut ts_at_checkpoint = 0;
    if seq > 0 {
        for frame in reader.frames_from(1)? {
            let frame = frame?;
            let envelope = codec::decode_envelope(&frame).map_err(|source| {
                kuku_journal::StateError::Payload {
                    seq: frame.seq,
                    source,
                }
            })?;
            events.0.clear();
            engine.apply(&envelope, &mut events);
            for event in &events.0 {
                builder.add_event(envelope.seq, envelope.ts, event);
            }
            builder.end_command(envelope.seq, envelope.ts);
            if envelope.seq % REPLAY_BATCH_COMMANDS == 0 {
                apply_batch(&mut tables, &builder.take());
            }
            if envelope.seq >= seq {
                ts_at_checkpoint = envelope.ts;
                break;
            }
        }
    }
    apply_batch(&mut tables, &builder.take());
    if engine.last_seq() < seq {
        return Err(PersistenceError::Corrupt(format!(
            "the database's checkpoint is at seq {seq} but the journal ends at seq {}",
            engine.last_seq()
        )));
    }
    Ok(Rebuilt {
        engine,
        tables: Some(tables),
        not_covered: None,
        ts_at_checkpoint,
    })
}

/// Compares the database with the journal in `journal_dir`: every table, rebuilt by replaying
/// the journal to the database's checkpoint, and the engine at that checkpoint.
pub async fn reconcile(
    db: &Database,
    journal_dir: &Path,
    engine_config: &EngineConfig,
) -> Result<ReconcileReport, PersistenceError> {
    let (checkpoint, stored) = read_stored(db).await?;
    let state = database_state(checkpoint, &stored);
    let rebuilt = rebuild(journal_dir, engine_config, checkpoint.seq)?;
    let reader = JournalReader::open(journal_dir)?;
    let after = reader
        .frames_from(checkpoint.seq.max(reader.seq_first() - 1) + 1)
        .map(|frames| frames.map_while(Result::ok).count() as u64)
        .unwrap_or(0);
    let journal_epoch = reader.meta().map_or(0, |m| m.epoch);
    let (compared, mut differences) = compare(&state, &rebuilt.engine);
    if checkpoint.seq > 0 && checkpoint.ts_ns != rebuilt.ts_at_checkpoint {
        differences.push(Difference {
            area: "checkpoint".into(),
            key: format!("ts_ns of seq {}", checkpoint.seq),
            database: checkpoint.ts_ns.to_string(),
            engine: rebuilt.ts_at_checkpoint.to_string(),
        });
    }
    if checkpoint.epoch > journal_epoch {
        differences.push(Difference {
            area: "checkpoint".into(),
            key: "epoch".into(),
            database: checkpoint.epoch.to_string(),
            engine: format!("at most {journal_epoch} (the journal's newest epoch)"),
        });
    }
    let mut tables = Vec::new();
    if let Some(expected) = &rebuilt.tables {
        for (stored, expected) in stored.iter().zip(expected) {
            let (comparison, rows) = compare_table(stored, expected);
            differences.extend(rows);
            tables.push(comparison);
        }
    }
    Ok(ReconcileReport {
        database: db.url().redacted(),
        checkpoint,
        journal_seq_last: checkpoint.seq + after,
        covered: rebuilt.tables.as_ref().map(|_| (1, checkpoint.seq)),
        not_covered: rebuilt.not_covered,
        trial_balance: state.trial_balance.clone(),
        compared,
        tables,
        differences,
    })
}

/// One table, stored against expected: the summary, and the first differing rows.
fn compare_table(stored: &Table, expected: &Table) -> (TableComparison, Vec<Difference>) {
    let area = format!("table {}", stored.name);
    let mut listed = Vec::new();
    let mut differing = 0;
    let keys: std::collections::BTreeSet<&Vec<Cell>> =
        stored.rows.keys().chain(expected.rows.keys()).collect();
    for key in keys {
        let (d, e) = (stored.rows.get(key), expected.rows.get(key));
        if d == e {
            continue;
        }
        differing += 1;
        if listed.len() >= ROWS_LISTED_MAX {
            continue;
        }
        let (database, engine) = match (d, e) {
            (Some(d), Some(e)) => {
                let columns: Vec<usize> = (0..stored.columns.len())
                    .filter(|&i| d[i] != e[i])
                    .collect();
                let show = |row: &[Cell]| {
                    columns
                        .iter()
                        .map(|&i| format!("{}={}", stored.columns[i], row[i]))
                        .collect::<Vec<_>>()
                        .join(" ")
                };
                (show(d), show(e))
            }
            (Some(d), None) => (stored.describe(d), "(no such row)".to_owned()),
            (None, Some(e)) => ("(missing)".to_owned(), expected.describe(e)),
            (None, None) => continue,
        };
        listed.push(Difference {
            area: area.clone(),
            key: stored.describe_key(key),
            database,
            engine,
        });
    }
    let comparison = TableComparison {
        table: stored.name,
        database_rows: stored.rows.len(),
        database_hash: stored.hash(),
        expected_rows: expected.rows.len(),
        expected_hash: expected.hash(),
        differing_rows: differing,
    };
    (comparison, listed)
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
                area: "trial balance".into(),
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
                area: area.into(),
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
        match (self.covered, &self.not_covered) {
            (Some((from, to)), _) => writeln!(
                f,
                "rows rebuilt by replaying the journal through the writer's row builder: seq {from}..={to}"
            )?,
            (None, Some(why)) => writeln!(f, "tables NOT compared: {why}")?,
            (None, None) => {}
        }
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
            "compared with the engine: {} accounts, {} positions, {} open orders, {} ledger account balances, {} assets",
            c.accounts, c.positions, c.open_orders, c.ledger_accounts, c.assets
        )?;
        for t in &self.tables {
            writeln!(
                f,
                "table {:<20} database {:>8} rows (hash {:#018x}) | journal {:>8} rows (hash {:#018x}){}",
                t.table,
                t.database_rows,
                t.database_hash,
                t.expected_rows,
                t.expected_hash,
                if t.matches() {
                    String::new()
                } else {
                    format!(": {} rows differ", t.differing_rows)
                }
            )?;
        }
        let mut per_area: BTreeMap<&str, usize> = BTreeMap::new();
        for d in &self.differences {
            let n = per_area.entry(d.area.as_str()).or_default();
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
        for t in self
            .tables
            .iter()
            .filter(|t| t.differing_rows > ROWS_LISTED_MAX)
        {
            writeln!(
                f,
                "... and {} more differing rows in table {}",
                t.differing_rows - ROWS_LISTED_MAX,
                t.table
            )?;
        }
        if self.is_clean() {
            write!(f, "result: no differences")
        } else {
            let rows: usize = self.tables.iter().map(|t| t.differing_rows).sum();
            let other = self
                .differences
                .iter()
                .filter(|d| !d.area.starts_with("table "))
                .count();
            write!(
                f,
                "result: differences ({rows} differing table rows, {other} engine or checkpoint differences)"
            )
        }
    }
}
