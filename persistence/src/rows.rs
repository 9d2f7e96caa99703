//! Rows: what one batch writes, table by table, in the columns of the schema
//! (`migrations/*/0001_query_store.sql`).
//!
//! A [`Batch`] is the unit of one database transaction: the rows derived from a run of whole
//! commands (`seq_first..=seq_last`), and the checkpoint that moves to `seq_last` with them.
//! Append-only tables (accounts, symbols, trade transactions, ledger entries, trades) are plain
//! `INSERT`s, so a row written twice would fail loudly on its primary key. Read models and
//! rows that change (orders, external transactions, balances, positions) are upserts of the
//! row's full latest state, coalesced per key within the batch: an account touched by 500
//! fills in one batch is written once.
//!
//! **Performance**: rows are plain `Copy`-ish structs (inline strings, no heap per row);
//! coalescing uses a key -> index map, so a batch costs O(rows) to build and to bind.

use kuku_engine::ExternalRef;
use rustc_hash::FxHashMap;
use sqlx::Any;
use sqlx::any::AnyArguments;
use sqlx::query::Query;

/// A statement with `Any` arguments.
pub(crate) type AnyQuery<'q> = Query<'q, Any, AnyArguments>;

/// One table's row type and how its columns bind.
pub(crate) trait TableRow {
    const TABLE: &'static str;
    const COLUMNS: &'static [&'static str];
    /// The primary key's columns.
    const KEY: &'static [&'static str];
    /// `Some((conflict key, columns updated on conflict))` for upserts; `None`: plain insert.
    const UPSERT: Option<(&'static [&'static str], &'static [&'static str])>;
    fn bind<'q>(&self, q: AnyQuery<'q>) -> AnyQuery<'q>;
    /// The row's values in `COLUMNS` order, as a database returns them (reconcile compares
    /// them with what it reads).
    fn cells(&self) -> Vec<Cell>;
}

/// One value of a row, as stored: every number is a BIGINT, every string a VARCHAR.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Cell {
    Null,
    Int(i64),
    Text(String),
}

impl Cell {
    fn text(s: &str) -> Cell {
        Cell::Text(s.to_owned())
    }

    fn opt_int(v: Option<i64>) -> Cell {
        v.map_or(Cell::Null, Cell::Int)
    }

    fn opt_text(v: Option<&str>) -> Cell {
        v.map_or(Cell::Null, Cell::text)
    }
}

impl std::fmt::Display for Cell {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Cell::Null => f.write_str("NULL"),
            Cell::Int(v) => write!(f, "{v}"),
            Cell::Text(t) => write!(f, "{t:?}"),
        }
    }
}

/// Stores a u64 the engine counts (ids, seqs, nanosecond timestamps) in a signed BIGINT. Every
/// such number stays below 2^63 (a counter would need 9.2 x 10^18 increments).
#[inline]
pub(crate) fn int(value: u64) -> i64 {
    debug_assert!(value <= i64::MAX as u64, "{value} does not fit a BIGINT");
    value as i64
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SymbolRow {
    pub symbol_id: i64,
    pub code: kuku_engine::SymbolCode,
    pub name: kuku_engine::SymbolName,
    pub market: &'static str,
    pub lot_size: i64,
    pub registered_seq: i64,
}

impl TableRow for SymbolRow {
    const TABLE: &'static str = "symbols";
    const COLUMNS: &'static [&'static str] = &[
        "symbol_id",
        "code",
        "name",
        "market",
        "lot_size",
        "registered_seq",
    ];
    const KEY: &'static [&'static str] = &["symbol_id"];
    const UPSERT: Option<(&'static [&'static str], &'static [&'static str])> = None;
    fn bind<'q>(&self, q: AnyQuery<'q>) -> AnyQuery<'q> {
        q.bind(self.symbol_id)
            .bind(self.code.as_str())
            .bind(self.name.as_str())
            .bind(self.market)
            .bind(self.lot_size)
            .bind(self.registered_seq)
    }
    fn cells(&self) -> Vec<Cell> {
        vec![
            Cell::Int(self.symbol_id),
            Cell::text(self.code.as_str()),
            Cell::text(self.name.as_str()),
            Cell::text(self.market),
            Cell::Int(self.lot_size),
            Cell::Int(self.registered_seq),
        ]
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AccountRow {
    pub account_id: i64,
    pub owner: ExternalRef,
    pub opened_seq: i64,
    pub opened_ts_ns: i64,
}

impl TableRow for AccountRow {
    const TABLE: &'static str = "accounts";
    const COLUMNS: &'static [&'static str] = &["account_id", "owner", "opened_seq", "opened_ts_ns"];
    const KEY: &'static [&'static str] = &["account_id"];
    const UPSERT: Option<(&'static [&'static str], &'static [&'static str])> = None;
    fn bind<'q>(&self, q: AnyQuery<'q>) -> AnyQuery<'q> {
        q.bind(self.account_id)
            .bind(self.owner.as_str())
            .bind(self.opened_seq)
            .bind(self.opened_ts_ns)
    }
    fn cells(&self) -> Vec<Cell> {
        vec![
            Cell::Int(self.account_id),
            Cell::text(self.owner.as_str()),
            Cell::Int(self.opened_seq),
            Cell::Int(self.opened_ts_ns),
        ]
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BalanceRow {
    pub account_id: i64,
    pub cash: i64,
    pub cash_hold: i64,
    pub updated_seq: i64,
}

impl TableRow for BalanceRow {
    const TABLE: &'static str = "balances";
    const COLUMNS: &'static [&'static str] = &["account_id", "cash", "cash_hold", "updated_seq"];
    const KEY: &'static [&'static str] = &["account_id"];
    const UPSERT: Option<(&'static [&'static str], &'static [&'static str])> =
        Some((&["account_id"], &["cash", "cash_hold", "updated_seq"]));
    fn bind<'q>(&self, q: AnyQuery<'q>) -> AnyQuery<'q> {
        q.bind(self.account_id)
            .bind(self.cash)
            .bind(self.cash_hold)
            .bind(self.updated_seq)
    }
    fn cells(&self) -> Vec<Cell> {
        vec![
            Cell::Int(self.account_id),
            Cell::Int(self.cash),
            Cell::Int(self.cash_hold),
            Cell::Int(self.updated_seq),
        ]
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PositionRow {
    pub account_id: i64,
    pub symbol_id: i64,
    pub qty: i64,
    pub hold: i64,
    pub cost_basis: i64,
    pub realized_pnl: i64,
    pub updated_seq: i64,
}

impl TableRow for PositionRow {
    const TABLE: &'static str = "positions";
    const COLUMNS: &'static [&'static str] = &[
        "account_id",
        "symbol_id",
        "qty",
        "hold",
        "cost_basis",
        "realized_pnl",
        "updated_seq",
    ];
    const KEY: &'static [&'static str] = &["account_id", "symbol_id"];
    const UPSERT: Option<(&'static [&'static str], &'static [&'static str])> = Some((
        &["account_id", "symbol_id"],
        &["qty", "hold", "cost_basis", "realized_pnl", "updated_seq"],
    ));
    fn bind<'q>(&self, q: AnyQuery<'q>) -> AnyQuery<'q> {
        q.bind(self.account_id)
            .bind(self.symbol_id)
            .bind(self.qty)
            .bind(self.hold)
            .bind(self.cost_basis)
            .bind(self.realized_pnl)
            .bind(self.updated_seq)
    }
    fn cells(&self) -> Vec<Cell> {
        vec![
            Cell::Int(self.account_id),
            Cell::Int(self.symbol_id),
            Cell::Int(self.qty),
            Cell::Int(self.hold),
            Cell::Int(self.cost_basis),
            Cell::Int(self.realized_pnl),
            Cell::Int(self.updated_seq),
        ]
    }
}

/// A ledger transaction's header. External ones (deposits, withdrawals, adjustments,
/// reversals) are upserted as their status moves; TRADE ones are inserted once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TransactionRow {
    pub tx_id: i64,
    pub tx_type: &'static str,
    pub status: &'static str,
    pub account_id: i64,
    pub asset_symbol_id: i64,
    pub amount: i64,
    /// DEPOSIT, WITHDRAWAL, ADJUSTMENT: the bank's or operator's reference (unique per
    /// account). `None` for TRADE and REVERSAL (a reversal shares its original's reference).
    pub external_ref: Option<ExternalRef>,
    pub trade_id: Option<i64>,
    pub reverses_tx_id: Option<i64>,
    pub reversed_by_tx_id: Option<i64>,
    pub created_seq: i64,
    pub created_ts_ns: i64,
    pub updated_seq: i64,
}

const TRANSACTION_COLUMNS: &[&str] = &[
    "tx_id",
    "tx_type",
    "status",
    "account_id",
    "asset_symbol_id",
    "amount",
    "external_ref",
    "trade_id",
    "reverses_tx_id",
    "reversed_by_tx_id",
    "created_seq",
    "created_ts_ns",
    "updated_seq",
];

fn transaction_cells(row: &TransactionRow) -> Vec<Cell> {
    vec![
        Cell::Int(row.tx_id),
        Cell::text(row.tx_type),
        Cell::text(row.status),
        Cell::Int(row.account_id),
        Cell::Int(row.asset_symbol_id),
        Cell::Int(row.amount),
        Cell::opt_text(row.external_ref.as_ref().map(|r| r.as_str())),
        Cell::opt_int(row.trade_id),
        Cell::opt_int(row.reverses_tx_id),
        Cell::opt_int(row.reversed_by_tx_id),
        Cell::Int(row.created_seq),
        Cell::Int(row.created_ts_ns),
        Cell::Int(row.updated_seq),
    ]
}

fn bind_transaction<'q>(row: &TransactionRow, q: AnyQuery<'q>) -> AnyQuery<'q> {
    q.bind(row.tx_id)
        .bind(row.tx_type)
        .bind(row.status)
        .bind(row.account_id)
        .bind(row.asset_symbol_id)
        .bind(row.amount)
        .bind(row.external_ref.as_ref().map(|r| r.as_str().to_owned()))
        .bind(row.trade_id)
        .bind(row.reverses_tx_id)
        .bind(row.reversed_by_tx_id)
        .bind(row.created_seq)
        .bind(row.created_ts_ns)
        .bind(row.updated_seq)
}

/// A TRADE transaction (inserted once, with its fill).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TradeTransactionRow(pub TransactionRow);

impl TableRow for TradeTransactionRow {
    const TABLE: &'static str = "ledger_transactions";
    const COLUMNS: &'static [&'static str] = TRANSACTION_COLUMNS;
    const KEY: &'static [&'static str] = &["tx_id"];
    const UPSERT: Option<(&'static [&'static str], &'static [&'static str])> = None;
    fn bind<'q>(&self, q: AnyQuery<'q>) -> AnyQuery<'q> {
        bind_transaction(&self.0, q)
    }
    fn cells(&self) -> Vec<Cell> {
        transaction_cells(&self.0)
    }
}

/// An external transaction's latest state (upserted: status and links move).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExternalTransactionRow(pub TransactionRow);

impl TableRow for ExternalTransactionRow {
    const TABLE: &'static str = "ledger_transactions";
    const COLUMNS: &'static [&'static str] = TRANSACTION_COLUMNS;
    const KEY: &'static [&'static str] = &["tx_id"];
    const UPSERT: Option<(&'static [&'static str], &'static [&'static str])> =
        Some((&["tx_id"], &["status", "reversed_by_tx_id", "updated_seq"]));
    fn bind<'q>(&self, q: AnyQuery<'q>) -> AnyQuery<'q> {
        bind_transaction(&self.0, q)
    }
    fn cells(&self) -> Vec<Cell> {
        transaction_cells(&self.0)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EntryRow {
    pub tx_id: i64,
    pub line_no: i64,
    pub ledger_account: &'static str,
    pub account_id: i64,
    pub asset_symbol_id: i64,
    pub amount: i64,
    pub line_kind: &'static str,
    pub seq: i64,
}

impl TableRow for EntryRow {
    const TABLE: &'static str = "ledger_entries";
    const COLUMNS: &'static [&'static str] = &[
        "tx_id",
        "line_no",
        "ledger_account",
        "account_id",
        "asset_symbol_id",
        "amount",
        "line_kind",
        "seq",
    ];
    const KEY: &'static [&'static str] = &["tx_id", "line_no"];
    const UPSERT: Option<(&'static [&'static str], &'static [&'static str])> = None;
    fn bind<'q>(&self, q: AnyQuery<'q>) -> AnyQuery<'q> {
        q.bind(self.tx_id)
            .bind(self.line_no)
            .bind(self.ledger_account)
            .bind(self.account_id)
            .bind(self.asset_symbol_id)
            .bind(self.amount)
            .bind(self.line_kind)
            .bind(self.seq)
    }
    fn cells(&self) -> Vec<Cell> {
        vec![
            Cell::Int(self.tx_id),
            Cell::Int(self.line_no),
            Cell::text(self.ledger_account),
            Cell::Int(self.account_id),
            Cell::Int(self.asset_symbol_id),
            Cell::Int(self.amount),
            Cell::text(self.line_kind),
            Cell::Int(self.seq),
        ]
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OrderRow {
    pub order_id: i64,
    pub account_id: i64,
    pub client_order_id: i64,
    pub symbol_id: i64,
    pub side: &'static str,
    pub order_type: &'static str,
    pub tif: &'static str,
    /// The current limit price (0 for MARKET).
    pub price: i64,
    /// The order's size: filled + leaves + cancelled (a modify changes it; closing it does
    /// not, so a cancelled or expired order keeps the size it had).
    pub qty: i64,
    /// Open quantity (0 once the order is closed).
    pub leaves: i64,
    pub filled: i64,
    /// What left the book unfilled when the order was cancelled or expired (else 0).
    pub cancelled: i64,
    pub status: &'static str,
    pub is_open: bool,
    pub cancel_reason: Option<&'static str>,
    pub accepted_seq: i64,
    pub accepted_ts_ns: i64,
    pub updated_seq: i64,
}

impl TableRow for OrderRow {
    const TABLE: &'static str = "orders";
    const COLUMNS: &'static [&'static str] = &[
        "order_id",
        "account_id",
        "client_order_id",
        "symbol_id",
        "side",
        "order_type",
        "tif",
        "price",
        "qty",
        "leaves",
        "filled",
        "cancelled",
        "status",
        "is_open",
        "cancel_reason",
        "accepted_seq",
        "accepted_ts_ns",
        "updated_seq",
    ];
    const KEY: &'static [&'static str] = &["order_id"];
    const UPSERT: Option<(&'static [&'static str], &'static [&'static str])> = Some((
        &["order_id"],
        &[
            "price",
            "qty",
            "leaves",
            "filled",
            "cancelled",
            "status",
            "is_open",
            "cancel_reason",
            "updated_seq",
        ],
    ));
    fn bind<'q>(&self, q: AnyQuery<'q>) -> AnyQuery<'q> {
        q.bind(self.order_id)
            .bind(self.account_id)
            .bind(self.client_order_id)
            .bind(self.symbol_id)
            .bind(self.side)
            .bind(self.order_type)
            .bind(self.tif)
            .bind(self.price)
            .bind(self.qty)
            .bind(self.leaves)
            .bind(self.filled)
            .bind(self.cancelled)
            .bind(self.status)
            .bind(i64::from(self.is_open))
            .bind(self.cancel_reason)
            .bind(self.accepted_seq)
            .bind(self.accepted_ts_ns)
            .bind(self.updated_seq)
    }
    fn cells(&self) -> Vec<Cell> {
        vec![
            Cell::Int(self.order_id),
            Cell::Int(self.account_id),
            Cell::Int(self.client_order_id),
            Cell::Int(self.symbol_id),
            Cell::text(self.side),
            Cell::text(self.order_type),
            Cell::text(self.tif),
            Cell::Int(self.price),
            Cell::Int(self.qty),
            Cell::Int(self.leaves),
            Cell::Int(self.filled),
            Cell::Int(self.cancelled),
            Cell::text(self.status),
            Cell::Int(i64::from(self.is_open)),
            Cell::opt_text(self.cancel_reason),
            Cell::Int(self.accepted_seq),
            Cell::Int(self.accepted_ts_ns),
            Cell::Int(self.updated_seq),
        ]
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TradeRow {
    pub trade_id: i64,
    pub seq: i64,
    pub ts_ns: i64,
    pub symbol_id: i64,
    pub price: i64,
    pub qty: i64,
    pub taker_side: &'static str,
    pub maker_order_id: i64,
    pub maker_account_id: i64,
    pub taker_order_id: i64,
    pub taker_account_id: i64,
    pub buyer_commission: i64,
    pub seller_commission: i64,
    pub securities_tax: i64,
    pub rural_tax: i64,
    pub tx_id: i64,
}

impl TableRow for TradeRow {
    const TABLE: &'static str = "trades";
    const COLUMNS: &'static [&'static str] = &[
        "trade_id",
        "seq",
        "ts_ns",
        "symbol_id",
        "price",
        "qty",
        "taker_side",
        "maker_order_id",
        "maker_account_id",
        "taker_order_id",
        "taker_account_id",
        "buyer_commission",
        "seller_commission",
        "securities_tax",
        "rural_tax",
        "tx_id",
    ];
    const KEY: &'static [&'static str] = &["trade_id"];
    const UPSERT: Option<(&'static [&'static str], &'static [&'static str])> = None;
    fn bind<'q>(&self, q: AnyQuery<'q>) -> AnyQuery<'q> {
        q.bind(self.trade_id)
            .bind(self.seq)
            .bind(self.ts_ns)
            .bind(self.symbol_id)
            .bind(self.price)
            .bind(self.qty)
            .bind(self.taker_side)
            .bind(self.maker_order_id)
            .bind(self.maker_account_id)
            .bind(self.taker_order_id)
            .bind(self.taker_account_id)
            .bind(self.buyer_commission)
            .bind(self.seller_commission)
            .bind(self.securities_tax)
            .bind(self.rural_tax)
            .bind(self.tx_id)
    }
    fn cells(&self) -> Vec<Cell> {
        vec![
            Cell::Int(self.trade_id),
            Cell::Int(self.seq),
            Cell::Int(self.ts_ns),
            Cell::Int(self.symbol_id),
            Cell::Int(self.price),
            Cell::Int(self.qty),
            Cell::text(self.taker_side),
            Cell::Int(self.maker_order_id),
            Cell::Int(self.maker_account_id),
            Cell::Int(self.taker_order_id),
            Cell::Int(self.taker_account_id),
            Cell::Int(self.buyer_commission),
            Cell::Int(self.seller_commission),
            Cell::Int(self.securities_tax),
            Cell::Int(self.rural_tax),
            Cell::Int(self.tx_id),
        ]
    }
}

/// Rows keyed for coalescing: the last write of a key in a batch wins, first-seen order kept.
#[derive(Clone, Debug)]
pub struct Coalesced<K, R> {
    index: FxHashMap<K, usize>,
    rows: Vec<R>,
}

impl<K, R> Default for Coalesced<K, R> {
    fn default() -> Self {
        Coalesced {
            index: FxHashMap::default(),
            rows: Vec::new(),
        }
    }
}

impl<K: std::hash::Hash + Eq, R> Coalesced<K, R> {
    /// Inserts `row` under `key`, replacing an earlier row of the same key.
    pub fn put(&mut self, key: K, row: R) {
        match self.index.get(&key) {
            Some(&i) => self.rows[i] = row,
            None => {
                self.index.insert(key, self.rows.len());
                self.rows.push(row);
            }
        }
    }

    pub fn get_mut(&mut self, key: &K) -> Option<&mut R> {
        self.index.get(key).map(|&i| &mut self.rows[i])
    }

    pub fn rows(&self) -> &[R] {
        &self.rows
    }

    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }
}

/// The rows of a run of whole commands, written in one database transaction with the
/// checkpoint `(epoch, seq_last)`.
#[derive(Clone, Debug, Default)]
pub struct Batch {
    /// The first and last command (seq) whose rows this batch holds; 0 when empty.
    pub seq_first: u64,
    pub seq_last: u64,
    /// The journal timestamp of the last command (stored with the checkpoint).
    pub ts_last_ns: u64,
    pub commands: u64,
    pub symbols: Vec<SymbolRow>,
    pub accounts: Vec<AccountRow>,
    pub trade_transactions: Vec<TradeTransactionRow>,
    pub external_transactions: Coalesced<u64, ExternalTransactionRow>,
    pub entries: Vec<EntryRow>,
    pub trades: Vec<TradeRow>,
    pub orders: Coalesced<u64, OrderRow>,
    pub balances: Coalesced<u32, BalanceRow>,
    pub positions: Coalesced<(u32, u32), PositionRow>,
}

impl Batch {
    /// Row writes this batch makes, the checkpoint update included.
    pub fn row_count(&self) -> u64 {
        (self.symbols.len()
            + self.accounts.len()
            + self.trade_transactions.len()
            + self.external_transactions.len()
            + self.entries.len()
            + self.trades.len()
            + self.orders.len()
            + self.balances.len()
            + self.positions.len()
            + 1) as u64
    }

    /// True if no command has been added.
    pub fn is_empty(&self) -> bool {
        self.commands == 0
    }
}
