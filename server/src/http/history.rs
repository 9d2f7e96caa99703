//! History endpoints of the HTTP door: the account's ledger transactions (with their entries)
//! and its trades, read from the query database (never from the engine, which keeps live
//! state only), paged by id in id order (ids grow with the journal's seq).
//!
//! The door opens its own small pool to the database on the first history request. The
//! database is written asynchronously behind the engine: every answer names the
//! `checkpoint_seq` up to which the history is complete (an order answered with `seq` S is in
//! the history once `checkpoint_seq >= S`).
//!
//! **Invariants**: an account sees only its own transactions and trades (the account comes
//! from the token); a page holds at most [`HISTORY_PAGE_MAX`] items.
//!
//! **Known limitations**: a node without a database (`database_url = "none"`), or a database
//! that does not answer within its statement timeout, answers `503 9027 HistoryUnavailable`.

use super::api::{ApiSide, AppState, QueryErrors};
use super::extract::{ApiQuery, Trader};
use super::problem::ApiError;
use axum::Json;
use axum::extract::State;
use kuku_engine::SymbolId;
use kuku_gateway::protocol::GatewayCode;
use kuku_persistence::{ConnectOptions, Database, DatabaseUrl};
use serde::{Deserialize, Serialize};
use std::time::Duration;
use utoipa::ToSchema;

/// Items in one history page at most.
pub const HISTORY_PAGE_MAX: u32 = 500;

/// Where the history comes from: the node's query database, connected on first use.
pub struct HistoryStore {
    url: Option<DatabaseUrl>,
    options: ConnectOptions,
    db: tokio::sync::OnceCell<Database>,
}

impl HistoryStore {
    pub fn new(
        url: Option<DatabaseUrl>,
        connect_timeout: Duration,
        statement_timeout: Duration,
    ) -> HistoryStore {
        HistoryStore {
            url,
            options: ConnectOptions {
                connections_max: 2,
                connect_timeout,
                statement_timeout,
                migrate: false,
            },
            db: tokio::sync::OnceCell::new(),
        }
    }

    /// The query database (`None`: the node runs without one), connected on first use.
    pub(super) fn configured(&self) -> bool {
        self.url.is_some()
    }

    pub(super) async fn db(&self) -> Result<&Database, ApiError> {
        let url = self.url.as_ref().ok_or_else(|| {
            unavailable("the node runs without a query database (database_url = \"none\")")
        })?;
        let connect = Database::connect(url, &self.options);
        self.db
            .get_or_try_init(|| async {
                match tokio::time::timeout(self.options.connect_timeout, connect).await {
                    Ok(Ok(db)) => Ok(db),
                    Ok(Err(e)) => Err(unavailable(&format!("cannot connect: {e}"))),
                    Err(_) => Err(unavailable("the query database did not answer in time")),
                }
            })
            .await
    }

    /// Runs a query with the statement timeout.
    pub(super) async fn timed<T>(
        &self,
        query: impl Future<Output = Result<T, kuku_persistence::PersistenceError>>,
    ) -> Result<T, ApiError> {
        match tokio::time::timeout(self.options.statement_timeout, query).await {
            Ok(Ok(t)) => Ok(t),
            Ok(Err(e)) => Err(unavailable(&e.to_string())),
            Err(_) => Err(unavailable("the query database did not answer in time")),
        }
    }
}

fn unavailable(detail: &str) -> ApiError {
    ApiError::gateway(GatewayCode::HistoryUnavailable).with_detail(detail.to_owned())
}

#[derive(Clone, Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct HistoryQuery {
    /// Items with an id above this one (the previous page's `next_after`).
    pub after: Option<u64>,
    /// Page size, 1-500 (default 100).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
}

fn page(q: &HistoryQuery) -> Result<(u64, u32), ApiError> {
    match q.limit.unwrap_or(100) {
        n @ 1..=HISTORY_PAGE_MAX => Ok((q.after.unwrap_or(0), n)),
        _ => Err(ApiError::gateway(GatewayCode::InvalidRequest)
            .with_detail("limit must be between 1 and 500")),
    }
}

/// One line of a ledger transaction.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct EntryItem {
    pub line_no: u32,
    /// `USER_CASH`, `USER_SECURITIES`, `SYSTEM_FEE`, `SYSTEM_TAX`, `SYSTEM_MARKET` or
    /// `SYSTEM_EXTERNAL`.
    pub ledger_account: String,
    /// The user account of a USER_* line (0 for system lines).
    pub account: u32,
    /// `KRW` or the symbol code of the shares.
    pub asset: String,
    /// Signed: positive adds to the ledger account.
    pub amount: i64,
    pub line_kind: String,
}

/// A ledger transaction (docs/ledger.md).
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct TransactionItem {
    pub tx_id: u64,
    /// `DEPOSIT`, `WITHDRAWAL`, `TRADE`, `REVERSAL` or `ADJUSTMENT`.
    pub tx_type: String,
    /// `PENDING`, `POSTED`, `FAILED`, `UNKNOWN` or `REVERSED`.
    pub status: String,
    /// `KRW` or the symbol code (for a trade, the symbol traded).
    pub asset: String,
    pub amount: i64,
    pub external_ref: Option<String>,
    pub trade_id: Option<u64>,
    pub reverses_tx_id: Option<u64>,
    pub reversed_by_tx_id: Option<u64>,
    /// The journal seq of the command that created it.
    pub seq: u64,
    pub ts_ns: u64,
    pub entries: Vec<EntryItem>,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct TransactionsPage {
    /// The history is complete up to this journal seq.
    pub checkpoint_seq: u64,
    pub transactions: Vec<TransactionItem>,
    /// Pass as `after` for the next page; absent on the last page.
    pub next_after: Option<u64>,
}

/// One fill, from the account's side.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct TradeItem {
    pub trade_id: u64,
    pub seq: u64,
    pub ts_ns: u64,
    pub symbol: String,
    /// The account's side.
    pub side: ApiSide,
    /// `maker` or `taker`.
    pub liquidity: String,
    pub order_id: u64,
    pub price: i64,
    pub qty: i64,
    /// The account's commission.
    pub commission: i64,
    /// The account's taxes (sells only).
    pub tax: i64,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct TradesPage {
    /// The history is complete up to this journal seq.
    pub checkpoint_seq: u64,
    pub trades: Vec<TradeItem>,
    /// Pass as `after` for the next page; absent on the last page.
    pub next_after: Option<u64>,
}

fn asset_name(s: &AppState, symbol_id: u32) -> String {
    if symbol_id == 0 {
        return "KRW".to_owned();
    }
    s.read(|v| v.symbols.code(SymbolId(symbol_id)))
        .map_or_else(|| format!("symbol {symbol_id}"), |c| c.as_str().to_owned())
}

/// History errors: the query errors and 503 when the database does not answer.
pub struct HistoryErrors;

impl utoipa::IntoResponses for HistoryErrors {
    fn responses()
    -> std::collections::BTreeMap<String, utoipa::openapi::RefOr<utoipa::openapi::Response>> {
        let mut r = <QueryErrors as utoipa::IntoResponses>::responses();
        r.insert(
            "503".to_owned(),
            super::api::problem_response("The query database is not available"),
        );
        r
    }
}

#[utoipa::path(get, path = "/api/v1/history/transactions", tag = "account",
    params(HistoryQuery),
    responses((status = 200, description = "The account's ledger transactions with their entries, oldest first", body = TransactionsPage), HistoryErrors),
    security(("bearer" = [])))]
pub async fn transactions(
    State(s): State<AppState>,
    Trader(account): Trader,
    ApiQuery(q): ApiQuery<HistoryQuery>,
) -> Result<Json<TransactionsPage>, ApiError> {
    let (after, limit) = page(&q)?;
    let store = &s.history;
    let db = store.db().await?;
    let checkpoint = store.timed(db.checkpoint()).await?;
    let mut rows = store
        .timed(db.account_transactions(account, after, limit + 1))
        .await?;
    let next_after = next(&mut rows, limit, |t| t.tx_id);
    let transactions = rows
        .into_iter()
        .map(|t| TransactionItem {
            tx_id: t.tx_id,
            tx_type: t.tx_type,
            status: t.status,
            asset: asset_name(&s, t.asset_symbol_id),
            amount: t.amount,
            external_ref: t.external_ref,
            trade_id: t.trade_id,
            reverses_tx_id: t.reverses_tx_id,
            reversed_by_tx_id: t.reversed_by_tx_id,
            seq: t.created_seq,
            ts_ns: t.created_ts_ns,
            entries: t
                .entries
                .into_iter()
                .map(|e| EntryItem {
                    line_no: e.line_no,
                    ledger_account: e.ledger_account,
                    account: e.account_id,
                    asset: asset_name(&s, e.asset_symbol_id),
                    amount: e.amount,
                    line_kind: e.line_kind,
                })
                .collect(),
        })
        .collect();
    Ok(Json(TransactionsPage {
        checkpoint_seq: checkpoint.seq,
        transactions,
        next_after,
    }))
}

/// Keeps `limit` rows; the last kept row's id when more followed.
fn next<T>(rows: &mut Vec<T>, limit: u32, id: impl Fn(&T) -> u64) -> Option<u64> {
    let limit = limit as usize;
    if rows.len() > limit {
        rows.truncate(limit);
        rows.last().map(id)
    } else {
        None
    }
}

#[utoipa::path(get, path = "/api/v1/history/trades", tag = "account",
    params(HistoryQuery),
    responses((status = 200, description = "The account's fills, oldest first", body = TradesPage), HistoryErrors),
    security(("bearer" = [])))]
pub async fn trades(
    State(s): State<AppState>,
    Trader(account): Trader,
    ApiQuery(q): ApiQuery<HistoryQuery>,
) -> Result<Json<TradesPage>, ApiError> {
    let (after, limit) = page(&q)?;
    let store = &s.history;
    let db = store.db().await?;
    let checkpoint = store.timed(db.checkpoint()).await?;
    let mut rows = store
        .timed(db.account_trades(account, after, limit + 1))
        .await?;
    let next_after = next(&mut rows, limit, |t| t.trade_id);
    let trades = rows
        .into_iter()
        .map(|t| {
            let taker = t.taker_account_id == account.0;
            let taker_buys = t.taker_side.eq_ignore_ascii_case("buy");
            let buys = taker == taker_buys;
            TradeItem {
                trade_id: t.trade_id,
                seq: t.seq,
                ts_ns: t.ts_ns,
                symbol: asset_name(&s, t.symbol_id),
                side: if buys { ApiSide::Buy } else { ApiSide::Sell },
                liquidity: if taker { "taker" } else { "maker" }.to_owned(),
                order_id: if taker {
                    t.taker_order_id
                } else {
                    t.maker_order_id
                },
                price: t.price,
                qty: t.qty,
                commission: if buys {
                    t.buyer_commission
                } else {
                    t.seller_commission
                },
                tax: if buys {
                    0
                } else {
                    t.securities_tax.saturating_add(t.rural_tax)
                },
            }
        })
        .collect();
    Ok(Json(TradesPage {
        checkpoint_seq: checkpoint.seq,
        trades,
        next_after,
    }))
}
