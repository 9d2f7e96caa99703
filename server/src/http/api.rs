//! The trading and market-data endpoints of the HTTP door, its shared state and its router.
//!
//! Each trading request becomes the protocol message a TCP client would send and goes
//! through `translate::trading_request` (the same refusals, the same codes); a command is
//! submitted under a fresh origin and its translated events become the answer. Queries go
//! through `translate::answer` against the door's read model, as the TCP door's do.
//!
//! **Invariants**: a token for one account never reads or changes another account: the
//! account comes from the verified token only (no endpoint takes an account id), and the
//! translation layer scopes every query and command to it. An error answer is a problem
//! (see `problem`).

use super::admin;
use super::extract::{ApiPath, ApiQuery, Body, Trader, idempotency_key};
use super::jwt::{self, JwtKeys};
use super::outcome::{Collected, Outcomes, TradeRecord, View};
use super::problem::{ApiError, Problem};
use crate::pipeline::{Origin, Submitter};
use axum::Json;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use kuku_engine::{
    AccountId, Command, OrderId, OrderType, Price, Qty, RejectReason, Side, TimeInForce,
};
use kuku_gateway::auth::{Secret, Token};
use kuku_gateway::protocol::{
    AccountQuery, Cancel, CancelAll, Code, GatewayCode, Message, Modify, NewOrder as WireOrder,
    OpenOrders, OrderStatus, ReferenceQuery, WireOrderState,
};
use kuku_gateway::translate::{self, Query, RateLimits, Refusal, Request, Scope};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;
use utoipa::ToSchema;

/// What every handler shares.
pub struct Inner {
    pub outcomes: Arc<Outcomes>,
    pub submitter: parking_lot::Mutex<Submitter>,
    pub rate_limits: Arc<RateLimits>,
    pub jwt: JwtKeys,
    /// The gateway's account-token secret (checks the token `/auth/token` exchanges).
    pub secret: Secret,
    pub admin_token: Token,
    pub outcome_timeout: Duration,
    /// False on a standby or a fenced node: commands are refused with `503 9014 NotPrimary`.
    pub serving: Arc<std::sync::atomic::AtomicBool>,
    /// Ledger and trade history from the query database.
    pub history: super::history::HistoryStore,
    /// The market-data service: the market's quotes, ticks, candles and reference data.
    pub market_data: kuku_marketdata::MarketDataHandle,
    /// Serializes the admin reference writes, so the database and the service see them in
    /// the same order.
    pub reference_writes: tokio::sync::Mutex<()>,
    /// The WebSocket feeds (`None`: `http.ws.enabled = false`).
    pub ws: Option<Arc<super::ws::hub::Hub>>,
}

#[derive(Clone)]
pub struct AppState(Arc<Inner>);

impl AppState {
    pub fn new(inner: Inner) -> AppState {
        AppState(Arc::new(inner))
    }
}

impl std::ops::Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl Inner {
    /// Submits `command` and waits for its outcome: `Busy` (503) if the ring or the waiter
    /// table is full, `OutcomeUnknown` (504) past the deadline.
    pub async fn submit(&self, command: Command) -> Result<Collected, ApiError> {
        if !self.serving.load(std::sync::atomic::Ordering::Acquire) {
            return Err(ApiError::gateway(GatewayCode::NotPrimary));
        }
        let busy = || ApiError::gateway(GatewayCode::Busy);
        let waiter = self.outcomes.register().ok_or_else(busy)?;
        if self
            .submitter
            .lock()
            .try_submit(Origin(waiter.origin), command)
            .is_err()
        {
            self.outcomes.forget(waiter.origin);
            return Err(busy());
        }
        match tokio::time::timeout(self.outcome_timeout, waiter.outcome).await {
            Ok(Ok(collected)) => Ok(collected),
            _ => {
                self.outcomes.forget(waiter.origin);
                Err(ApiError::gateway(GatewayCode::OutcomeUnknown).with_detail(
                    "outcome unknown: resend with the same Idempotency-Key to learn it",
                ))
            }
        }
    }

    /// Runs `f` on the door's read model.
    pub fn read<R>(&self, f: impl FnOnce(&View) -> R) -> R {
        f(&self.outcomes.view.read())
    }

    /// A trading request through the translation layer: its command, or the refusal.
    fn trading_command(&self, account: AccountId, message: Message) -> Result<Command, ApiError> {
        let translated = self.read(|v| translate::trading_request(account, message, &v.symbols));
        match translated {
            Ok(Request::Command(c)) => Ok(c),
            Err(Refusal::Reject(code)) => Err(ApiError::code(code)),
            Ok(Request::Query(_)) | Err(Refusal::NotAllowed) => {
                Err(ApiError::gateway(GatewayCode::InvalidRequest))
            }
        }
    }

    /// Answers a query through the translation layer, returning its messages; a final
    /// QueryDone with a non-zero code other than `Truncated` is an error.
    fn query(&self, query: Query, scope: Scope) -> Result<Vec<Message>, ApiError> {
        let mut out = Vec::new();
        self.read(|v| {
            translate::answer(query, scope, &v.read_model, &v.symbols, &mut |m| {
                out.push(m)
            })
        });
        let refused = match out.last() {
            Some(Message::QueryDone(d))
                if d.code != 0 && d.code != GatewayCode::Truncated.code() =>
            {
                Some(d.code)
            }
            _ => None,
        };
        match refused {
            Some(code) => Err(ApiError::code(code)),
            None => Ok(out),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Wire enums of the JSON API.

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ApiSide {
    Buy,
    Sell,
}

impl From<ApiSide> for Side {
    fn from(s: ApiSide) -> Side {
        match s {
            ApiSide::Buy => Side::Buy,
            ApiSide::Sell => Side::Sell,
        }
    }
}

impl From<Side> for ApiSide {
    fn from(s: Side) -> ApiSide {
        match s {
            Side::Buy => ApiSide::Buy,
            Side::Sell => ApiSide::Sell,
        }
    }
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ApiOrderType {
    Limit,
    Market,
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ApiTif {
    Day,
    Ioc,
    Fok,
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ApiOrderState {
    New,
    PartiallyFilled,
    Filled,
    Cancelled,
    Expired,
}

impl From<WireOrderState> for ApiOrderState {
    fn from(s: WireOrderState) -> ApiOrderState {
        match s {
            WireOrderState::New => ApiOrderState::New,
            WireOrderState::PartiallyFilled => ApiOrderState::PartiallyFilled,
            WireOrderState::Filled => ApiOrderState::Filled,
            WireOrderState::Cancelled => ApiOrderState::Cancelled,
            WireOrderState::Expired => ApiOrderState::Expired,
        }
    }
}

fn order_type(t: OrderType) -> ApiOrderType {
    match t {
        OrderType::Limit => ApiOrderType::Limit,
        OrderType::Market => ApiOrderType::Market,
    }
}

fn tif(t: TimeInForce) -> ApiTif {
    match t {
        TimeInForce::Day => ApiTif::Day,
        TimeInForce::Ioc => ApiTif::Ioc,
        TimeInForce::Fok => ApiTif::Fok,
    }
}

fn code_str(c: Option<Code>) -> String {
    c.map(|c| c.as_str().to_owned()).unwrap_or_default()
}

/// A symbol code from the API: a string no symbol can have is `1001 UnknownSymbol`, as an
/// unlisted code is.
fn wire_code(s: &str) -> Result<Code, ApiError> {
    Code::new(s).ok_or_else(|| ApiError::reject(RejectReason::UnknownSymbol))
}

// ---------------------------------------------------------------------------------------
// Auth.

/// `POST /api/v1/auth/token`: an account's trading token for an access token.
#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenRequest {
    /// The account id.
    pub account: u32,
    /// The account's trading token (64 hex digits, what `kuku admin issue-token` prints).
    pub token: String,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct TokenResponse {
    pub access_token: String,
    /// Always `Bearer`.
    pub token_type: String,
    /// Seconds until the token expires.
    pub expires_in: u64,
    pub account: u32,
}

#[utoipa::path(post, path = "/api/v1/auth/token", tag = "auth",
    request_body = TokenRequest,
    responses(
        (status = 200, description = "An access token (HS256 JWT)", body = TokenResponse),
        (status = 400, description = "Malformed body", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Wrong token, or unknown account", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn issue_token(
    State(s): State<AppState>,
    Body(req): Body<TokenRequest>,
) -> Result<Json<TokenResponse>, ApiError> {
    let invalid = || ApiError::gateway(GatewayCode::InvalidToken);
    let account = AccountId(req.account);
    let token = kuku_gateway::auth::decode_hex32(&req.token).map_err(|_| invalid())?;
    let exists = s.read(|v| v.read_model.accounts.contains_key(&account));
    if account.0 == 0 || !s.secret.verify(account, &token) || !exists {
        return Err(invalid());
    }
    let (access_token, _) = s
        .jwt
        .issue(account, jwt::now_s())
        .map_err(|e| ApiError::gateway(GatewayCode::InvalidToken).with_detail(e.to_string()))?;
    Ok(Json(TokenResponse {
        access_token,
        token_type: "Bearer".into(),
        expires_in: s.jwt.ttl_s(),
        account: account.0,
    }))
}

// ---------------------------------------------------------------------------------------
// Orders.

/// A new order.
#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewOrderRequest {
    /// The symbol's code, e.g. `005930`.
    pub symbol: String,
    pub side: ApiSide,
    #[serde(rename = "type")]
    pub order_type: ApiOrderType,
    /// DAY (limit orders only), IOC or FOK.
    pub tif: ApiTif,
    /// KRW per share; 0 or absent for MARKET orders.
    #[serde(default)]
    pub price: i64,
    /// Shares.
    pub qty: i64,
}

/// One fill of an order.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct ExecutionView {
    pub trade_id: u64,
    pub price: i64,
    pub qty: i64,
    /// `maker` or `taker`.
    pub liquidity: String,
    pub commission: i64,
    pub tax: i64,
    pub ts_ns: u64,
}

/// An order.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct OrderView {
    pub order_id: u64,
    /// The engine key the order was placed under (see docs/api.md, "Idempotency").
    pub client_order_id: u64,
    pub symbol: String,
    pub side: ApiSide,
    #[serde(rename = "type")]
    pub order_type: ApiOrderType,
    pub tif: ApiTif,
    pub state: ApiOrderState,
    pub price: i64,
    /// Filled + open + cancelled (the size after any modify).
    pub qty: i64,
    /// Open quantity (0 once finished).
    pub leaves: i64,
    pub filled: i64,
    pub cancelled: i64,
}

/// The answer to a state-changing order request.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct OrderResponse {
    pub order: OrderView,
    /// The fills this request caused (empty for a resend).
    pub executions: Vec<ExecutionView>,
    /// True when the Idempotency-Key was used before with the same request: nothing new
    /// happened and `order` is the order's state now.
    pub resent: bool,
    /// The journal position of the command.
    pub seq: u64,
}

fn order_view_of(m: &Message) -> Option<OrderView> {
    let Message::OrderReport(r) = m else {
        return None;
    };
    Some(OrderView {
        order_id: r.order_id.0,
        client_order_id: r.client_order_id.0,
        symbol: code_str(r.symbol),
        side: r.side.into(),
        order_type: order_type(r.order_type),
        tif: tif(r.tif),
        state: r.state.into(),
        price: r.price.0,
        qty: r.qty.0,
        leaves: r.leaves.0,
        filled: r.filled.0,
        cancelled: r.cancelled.0,
    })
}

/// The order's state as the order-status query reports it.
fn order_now(s: &Inner, account: AccountId, order_id: OrderId) -> Result<OrderView, ApiError> {
    let answer = s.query(
        Query::OrderStatus(OrderStatus {
            request_id: 0,
            order_id,
        }),
        Scope::Account(account),
    )?;
    answer
        .iter()
        .find_map(order_view_of)
        .ok_or_else(|| ApiError::reject(RejectReason::UnknownOrder))
}

/// What a trading command's messages (to `account`) say: the first refusal, if any, and
/// what was accepted.
#[derive(Default)]
struct Verdict {
    order_id: Option<OrderId>,
    resent: bool,
    cancelled: u32,
    executions: Vec<ExecutionView>,
}

fn verdict(account: AccountId, collected: &Collected) -> Result<Verdict, ApiError> {
    let mut v = Verdict::default();
    for a in collected.messages.iter().filter(|a| a.account == account) {
        match a.message {
            Message::OrderRejected(r) => return Err(ApiError::code(r.reason)),
            Message::RequestRejected(r) => return Err(ApiError::code(r.reason)),
            Message::CommandRejected(r) => return Err(ApiError::code(r.reason)),
            Message::RequestResent(r) if r.outcome_code != 0 => {
                return Err(ApiError::code(r.outcome_code));
            }
            Message::RequestResent(r) => {
                v.resent = true;
                v.cancelled = r.cancelled;
                v.order_id = v.order_id.or(Some(r.order_id));
            }
            Message::OrderAccepted(o) => {
                v.resent |= o.resent;
                v.order_id = Some(o.order_id);
            }
            Message::Cancelled(c) => v.order_id = v.order_id.or(Some(c.order_id)),
            Message::Modified(m) => v.order_id = v.order_id.or(Some(m.order_id)),
            Message::CancelAllDone(d) => v.cancelled = d.cancelled,
            Message::Execution(e) => v.executions.push(ExecutionView {
                trade_id: e.trade_id.0,
                price: e.price.0,
                qty: e.qty.0,
                liquidity: format!("{:?}", e.liquidity).to_lowercase(),
                commission: e.commission.0,
                tax: e.tax.0,
                ts_ns: e.ts_ns,
            }),
            _ => {}
        }
    }
    Ok(v)
}

fn replayed(mut response: Response, resent: bool) -> Response {
    if resent {
        response
            .headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    response
}

/// Submits a trading message and answers with the order it concerns.
async fn order_command(
    s: &Inner,
    account: AccountId,
    message: Message,
    order_hint: Option<OrderId>,
    status: StatusCode,
) -> Result<Response, ApiError> {
    let command = s.trading_command(account, message)?;
    let collected = s.submit(command).await?;
    let v = verdict(account, &collected)?;
    let order_id = v
        .order_id
        .or(order_hint)
        .ok_or_else(|| ApiError::reject(RejectReason::UnknownOrder))?;
    let order = order_now(s, account, order_id)?;
    let body = OrderResponse {
        order,
        executions: v.executions,
        resent: v.resent,
        seq: collected.seq,
    };
    Ok(replayed((status, Json(body)).into_response(), v.resent))
}

#[utoipa::path(post, path = "/api/v1/orders", tag = "orders",
    request_body = NewOrderRequest,
    params(("Idempotency-Key" = String, Header, description = "The request's key: a decimal integer is the engine key itself; any other string of 1-64 visible ASCII characters is hashed to one (docs/api.md)")),
    responses((status = 201, description = "Accepted (and possibly filled)", body = OrderResponse), TradingErrors),
    security(("bearer" = [])))]
pub async fn place_order(
    State(s): State<AppState>,
    Trader(account): Trader,
    headers: HeaderMap,
    Body(req): Body<NewOrderRequest>,
) -> Result<Response, ApiError> {
    let key = idempotency_key(&headers)?;
    let message = WireOrder {
        client_order_id: key,
        symbol: wire_code(&req.symbol)?,
        side: req.side.into(),
        order_type: match req.order_type {
            ApiOrderType::Limit => OrderType::Limit,
            ApiOrderType::Market => OrderType::Market,
        },
        tif: match req.tif {
            ApiTif::Day => TimeInForce::Day,
            ApiTif::Ioc => TimeInForce::Ioc,
            ApiTif::Fok => TimeInForce::Fok,
        },
        price: Price(req.price),
        qty: Qty(req.qty),
    };
    order_command(&s, account, message.into(), None, StatusCode::CREATED).await
}

#[derive(Clone, Copy, Debug, Deserialize)]
pub struct OrderPath {
    pub order_id: u64,
}

#[utoipa::path(delete, path = "/api/v1/orders/{order_id}", tag = "orders",
    params(("order_id" = u64, Path, description = "The order id"),
        ("Idempotency-Key" = String, Header, description = "The request's key (docs/api.md)")),
    responses((status = 200, description = "Cancelled; the order as it is now", body = OrderResponse), TradingErrors),
    security(("bearer" = [])))]
pub async fn cancel_order(
    State(s): State<AppState>,
    Trader(account): Trader,
    headers: HeaderMap,
    ApiPath(p): ApiPath<OrderPath>,
) -> Result<Response, ApiError> {
    let key = idempotency_key(&headers)?;
    let message = Cancel {
        request_id: key,
        order_id: OrderId(p.order_id),
    };
    let hint = Some(OrderId(p.order_id));
    order_command(&s, account, message.into(), hint, StatusCode::OK).await
}

/// A modify: the order's new limit price and new open quantity.
#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ModifyRequest {
    pub price: i64,
    /// The new open (unfilled) quantity.
    pub qty: i64,
}

#[utoipa::path(patch, path = "/api/v1/orders/{order_id}", tag = "orders",
    request_body = ModifyRequest,
    params(("order_id" = u64, Path, description = "The order id"),
        ("Idempotency-Key" = String, Header, description = "The request's key (docs/api.md)")),
    responses((status = 200, description = "Modified; the order as it is now", body = OrderResponse), TradingErrors),
    security(("bearer" = [])))]
pub async fn modify_order(
    State(s): State<AppState>,
    Trader(account): Trader,
    headers: HeaderMap,
    ApiPath(p): ApiPath<OrderPath>,
    Body(req): Body<ModifyRequest>,
) -> Result<Response, ApiError> {
    let key = idempotency_key(&headers)?;
    let message = Modify {
        request_id: key,
        order_id: OrderId(p.order_id),
        new_qty: Qty(req.qty),
        new_price: Price(req.price),
    };
    let hint = Some(OrderId(p.order_id));
    order_command(&s, account, message.into(), hint, StatusCode::OK).await
}

#[derive(Clone, Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CancelAllRequest {
    /// Only this symbol's orders (absent: all).
    #[serde(default)]
    pub symbol: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct CancelAllResponse {
    pub cancelled: u32,
    pub resent: bool,
    pub seq: u64,
}

#[utoipa::path(post, path = "/api/v1/orders/cancel-all", tag = "orders",
    request_body = CancelAllRequest,
    params(("Idempotency-Key" = String, Header, description = "The request's key (docs/api.md)")),
    responses((status = 200, description = "The account's open orders (of the symbol) were cancelled", body = CancelAllResponse), TradingErrors),
    security(("bearer" = [])))]
pub async fn cancel_all(
    State(s): State<AppState>,
    Trader(account): Trader,
    headers: HeaderMap,
    Body(req): Body<CancelAllRequest>,
) -> Result<Response, ApiError> {
    let key = idempotency_key(&headers)?;
    let symbol = req.symbol.as_deref().map(wire_code).transpose()?;
    let message = CancelAll {
        request_id: key,
        symbol,
    };
    let command = s.trading_command(account, message.into())?;
    let collected = s.submit(command).await?;
    let v = verdict(account, &collected)?;
    let body = CancelAllResponse {
        cancelled: v.cancelled,
        resent: v.resent,
        seq: collected.seq,
    };
    Ok(replayed(Json(body).into_response(), v.resent))
}

#[utoipa::path(get, path = "/api/v1/orders/{order_id}", tag = "orders",
    params(("order_id" = u64, Path, description = "The order id")),
    responses((status = 200, description = "The order", body = OrderView), QueryErrors),
    security(("bearer" = [])))]
pub async fn get_order(
    State(s): State<AppState>,
    Trader(account): Trader,
    ApiPath(p): ApiPath<OrderPath>,
) -> Result<Json<OrderView>, ApiError> {
    order_now(&s, account, OrderId(p.order_id)).map(Json)
}

/// Which orders to list.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OrderFilter {
    /// Live orders only.
    #[default]
    Open,
    /// Every order the read model still holds (the recent ones), finished included.
    All,
}

#[derive(Clone, Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListOrders {
    /// `open` (default) or `all`.
    #[serde(default)]
    #[param(inline)]
    pub state: OrderFilter,
    /// Only this symbol.
    pub symbol: Option<String>,
    /// Orders with an id above this one (the previous page's `next_after`).
    pub after: Option<u64>,
    /// Page size, 1-500 (default 100).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
}

/// Most orders in one page.
pub const PAGE_MAX: u32 = 500;

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct OrderPage {
    pub orders: Vec<OrderView>,
    /// Pass as `after` for the next page; absent on the last page.
    pub next_after: Option<u64>,
}

fn page_limit(limit: Option<u32>) -> Result<usize, ApiError> {
    match limit.unwrap_or(100) {
        n @ 1..=PAGE_MAX => Ok(n as usize),
        _ => Err(ApiError::gateway(GatewayCode::InvalidRequest)
            .with_detail("limit must be between 1 and 500")),
    }
}

#[utoipa::path(get, path = "/api/v1/orders", tag = "orders",
    params(ListOrders),
    responses((status = 200, description = "A page of orders in id order", body = OrderPage), QueryErrors),
    security(("bearer" = [])))]
pub async fn list_orders(
    State(s): State<AppState>,
    Trader(account): Trader,
    ApiQuery(q): ApiQuery<ListOrders>,
) -> Result<Json<OrderPage>, ApiError> {
    let limit = page_limit(q.limit)?;
    // A filter that names no listed symbol is a resource that does not exist.
    let symbol = q.symbol.as_deref().map(|c| known_code(&s, c)).transpose()?;
    let mut orders: Vec<OrderView> = match q.state {
        OrderFilter::Open => s
            .query(
                Query::OpenOrders(OpenOrders {
                    request_id: 0,
                    symbol,
                }),
                Scope::Account(account),
            )?
            .iter()
            .filter_map(order_view_of)
            .collect(),
        OrderFilter::All => s.read(|v| {
            let only = symbol.map(|c| v.symbols.id(c));
            v.read_model
                .orders
                .iter()
                .filter(|o| o.info.account == account)
                .filter(|o| only.is_none_or(|id| Some(o.info.symbol) == id))
                .map(|o| translate::queries::order_report(&v.symbols, 0, o))
                .filter_map(|m| order_view_of(&m))
                .collect()
        }),
    };
    orders.retain(|o| q.after.is_none_or(|a| o.order_id > a));
    orders.sort_unstable_by_key(|o| o.order_id);
    let next_after = (orders.len() > limit).then(|| orders[limit - 1].order_id);
    orders.truncate(limit);
    Ok(Json(OrderPage { orders, next_after }))
}

// ---------------------------------------------------------------------------------------
// Account, positions, portfolio.

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct AccountResponse {
    pub account: u32,
    /// KRW owned.
    pub cash: i64,
    /// KRW held by open buy orders and pending withdrawals.
    pub held: i64,
    /// cash - held.
    pub available: i64,
    /// The account's last sequence number.
    pub acct_seq: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct PositionView {
    pub symbol: String,
    /// Shares owned.
    pub qty: i64,
    /// Shares held by open sell orders.
    pub qty_held: i64,
    /// What the shares owned cost, buy commission included (KRW).
    pub cost_basis: i64,
    /// cost_basis / qty (KRW per share; 0 when flat).
    pub average_cost: f64,
    /// Profit realized by sells, net of fees and taxes (KRW).
    pub realized_pnl: i64,
}

/// Where a position's price comes from.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PriceSource {
    /// The symbol's last trade today.
    LastTrade,
    /// No trade yet: the middle of the best bid and ask (floored to a KRW).
    QuoteMid,
    /// Neither: the day's base price.
    BasePrice,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct ValuedPosition {
    #[serde(flatten)]
    pub position: PositionView,
    pub last_price: i64,
    pub price_source: PriceSource,
    /// qty x last_price.
    pub market_value: i64,
    /// market_value - cost_basis.
    pub unrealized_pnl: i64,
    /// unrealized_pnl / cost_basis x 100 (absent when the cost basis is 0).
    pub return_pct: Option<f64>,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct Portfolio {
    pub account: AccountResponse,
    pub positions: Vec<ValuedPosition>,
    /// Sum of market values.
    pub market_value: i64,
    /// cash + market_value.
    pub equity: i64,
    pub cost_basis: i64,
    pub unrealized_pnl: i64,
    pub realized_pnl: i64,
    /// unrealized_pnl / cost_basis x 100 (absent when the cost basis is 0).
    pub return_pct: Option<f64>,
}

/// The account query's answer: the snapshot and its positions.
pub fn account_answer(
    s: &Inner,
    account: AccountId,
    scope: Scope,
) -> Result<(AccountResponse, Vec<PositionView>), ApiError> {
    let answer = s.query(
        Query::Account(AccountQuery {
            request_id: 0,
            account,
        }),
        scope,
    )?;
    let mut snapshot = None;
    let mut positions = Vec::new();
    for m in &answer {
        match m {
            Message::AccountSnapshot(a) => {
                snapshot = Some(AccountResponse {
                    account: a.account.0,
                    cash: a.cash.0,
                    held: a.cash_hold.0,
                    available: a.available.0,
                    acct_seq: a.acct_seq,
                })
            }
            Message::PositionReport(p) => positions.push(PositionView {
                symbol: code_str(p.symbol),
                qty: p.qty.0,
                qty_held: p.qty_hold.0,
                cost_basis: p.cost_basis.0,
                average_cost: if p.qty.0 > 0 {
                    p.cost_basis.0 as f64 / p.qty.0 as f64
                } else {
                    0.0
                },
                realized_pnl: p.realized_pnl.0,
            }),
            _ => {}
        }
    }
    let snapshot = snapshot.ok_or_else(|| ApiError::reject(RejectReason::UnknownAccount))?;
    Ok((snapshot, positions))
}

#[utoipa::path(get, path = "/api/v1/account", tag = "account",
    responses((status = 200, description = "Cash, held and available", body = AccountResponse), QueryErrors),
    security(("bearer" = [])))]
pub async fn get_account(
    State(s): State<AppState>,
    Trader(account): Trader,
) -> Result<Json<AccountResponse>, ApiError> {
    account_answer(&s, account, Scope::Account(account)).map(|(a, _)| Json(a))
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct PositionsResponse {
    pub positions: Vec<PositionView>,
}

#[utoipa::path(get, path = "/api/v1/positions", tag = "account",
    responses((status = 200, description = "The account's positions", body = PositionsResponse), QueryErrors),
    security(("bearer" = [])))]
pub async fn get_positions(
    State(s): State<AppState>,
    Trader(account): Trader,
) -> Result<Json<PositionsResponse>, ApiError> {
    account_answer(&s, account, Scope::Account(account))
        .map(|(_, positions)| Json(PositionsResponse { positions }))
}

/// The price a position is valued at, and where it came from.
fn mark(v: &View, code: &str) -> Option<(i64, PriceSource)> {
    let id = v.symbols.id(Code::new(code)?)?;
    let sym = v.read_model.symbols.get(&id)?;
    if let Some(p) = sym.symbol.last_trade_price {
        return Some((p.0, PriceSource::LastTrade));
    }
    if let (Some((bid, _)), Some((ask, _))) = (sym.book.best_bid(), sym.book.best_ask()) {
        return Some(((bid.0 + ask.0) / 2, PriceSource::QuoteMid));
    }
    Some((sym.symbol.base_price.0, PriceSource::BasePrice))
}

fn return_pct(pnl: i64, cost: i64) -> Option<f64> {
    (cost != 0).then(|| pnl as f64 / cost as f64 * 100.0)
}

/// Values `positions` at their marks (checked: a sum beyond i64 is `Overflow`).
pub fn value(
    v: &View,
    account: AccountResponse,
    positions: Vec<PositionView>,
) -> Result<Portfolio, ApiError> {
    let overflow = || ApiError::reject(RejectReason::Overflow);
    let mut valued = Vec::with_capacity(positions.len());
    let (mut market_value, mut cost_basis, mut unrealized, mut realized) = (0i64, 0i64, 0i64, 0i64);
    for p in positions {
        let (last_price, price_source) = mark(v, &p.symbol).unwrap_or((0, PriceSource::BasePrice));
        let mv = p.qty.checked_mul(last_price).ok_or_else(overflow)?;
        let pnl = mv.checked_sub(p.cost_basis).ok_or_else(overflow)?;
        market_value = market_value.checked_add(mv).ok_or_else(overflow)?;
        cost_basis = cost_basis.checked_add(p.cost_basis).ok_or_else(overflow)?;
        unrealized = unrealized.checked_add(pnl).ok_or_else(overflow)?;
        realized = realized.checked_add(p.realized_pnl).ok_or_else(overflow)?;
        valued.push(ValuedPosition {
            return_pct: return_pct(pnl, p.cost_basis),
            position: p,
            last_price,
            price_source,
            market_value: mv,
            unrealized_pnl: pnl,
        });
    }
    let equity = account
        .cash
        .checked_add(market_value)
        .ok_or_else(overflow)?;
    Ok(Portfolio {
        account,
        positions: valued,
        market_value,
        equity,
        cost_basis,
        unrealized_pnl: unrealized,
        realized_pnl: realized,
        return_pct: return_pct(unrealized, cost_basis),
    })
}

#[utoipa::path(get, path = "/api/v1/portfolio", tag = "account",
    responses((status = 200, description = "Positions valued at the last price", body = Portfolio), QueryErrors),
    security(("bearer" = [])))]
pub async fn get_portfolio(
    State(s): State<AppState>,
    Trader(account): Trader,
) -> Result<Json<Portfolio>, ApiError> {
    let (snapshot, positions) = account_answer(&s, account, Scope::Account(account))?;
    s.read(|v| value(v, snapshot, positions)).map(Json)
}

// ---------------------------------------------------------------------------------------
// Reference and market data.

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct SymbolInfo {
    pub symbol_id: u32,
    pub code: String,
    pub name: String,
    /// `kospi`, `kosdaq` or `other`.
    pub market: String,
    pub base_price: i64,
    pub banded: bool,
    /// Today's band (0 when unbanded).
    pub lower_limit: i64,
    pub upper_limit: i64,
    pub lot_size: i64,
    /// Today's last trade price (0: none yet).
    pub last_price: i64,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct SymbolsResponse {
    pub symbols: Vec<SymbolInfo>,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct MarketInfo {
    pub trading_day: u32,
    /// `closed`, `pre_open`, `continuous`, `closing_call` or `after_hours`.
    pub phase: String,
    pub commission_ppm: i64,
    pub kospi_securities_transaction_ppm: i64,
    pub kospi_rural_special_ppm: i64,
    pub kosdaq_securities_transaction_ppm: i64,
    pub kosdaq_rural_special_ppm: i64,
    pub other_securities_transaction_ppm: i64,
    pub other_rural_special_ppm: i64,
}

fn snake(debug: String) -> String {
    let mut out = String::with_capacity(debug.len() + 4);
    for (i, c) in debug.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

fn reference(s: &Inner, symbol: Option<Code>) -> Result<(MarketInfo, Vec<SymbolInfo>), ApiError> {
    let answer = s.query(
        Query::Reference(ReferenceQuery {
            request_id: 0,
            symbol,
        }),
        Scope::Any,
    )?;
    let mut market = None;
    let mut symbols = Vec::new();
    for m in &answer {
        match m {
            Message::MarketReport(r) => {
                market = Some(MarketInfo {
                    trading_day: r.trading_day,
                    phase: snake(format!("{:?}", r.phase)),
                    commission_ppm: r.commission_ppm,
                    kospi_securities_transaction_ppm: r.kospi_securities_transaction_ppm,
                    kospi_rural_special_ppm: r.kospi_rural_special_ppm,
                    kosdaq_securities_transaction_ppm: r.kosdaq_securities_transaction_ppm,
                    kosdaq_rural_special_ppm: r.kosdaq_rural_special_ppm,
                    other_securities_transaction_ppm: r.other_securities_transaction_ppm,
                    other_rural_special_ppm: r.other_rural_special_ppm,
                })
            }
            Message::SymbolReport(r) => symbols.push(SymbolInfo {
                symbol_id: r.symbol_id,
                code: code_str(r.code),
                name: r.name.as_str().to_owned(),
                market: snake(format!("{:?}", r.market)),
                base_price: r.base_price.0,
                banded: r.banded,
                lower_limit: r.lower_limit.0,
                upper_limit: r.upper_limit.0,
                lot_size: r.lot_size.0,
                last_price: r.last_price.0,
            }),
            _ => {}
        }
    }
    let market = market.ok_or_else(|| ApiError::gateway(GatewayCode::NotFound))?;
    Ok((market, symbols))
}

#[utoipa::path(get, path = "/api/v1/symbols", tag = "market",
    responses((status = 200, description = "Every listed symbol", body = SymbolsResponse), QueryErrors),
    security(("bearer" = [])))]
pub async fn list_symbols(
    State(s): State<AppState>,
    _trader: Trader,
) -> Result<Json<SymbolsResponse>, ApiError> {
    reference(&s, None).map(|(_, symbols)| Json(SymbolsResponse { symbols }))
}

#[derive(Clone, Debug, Deserialize)]
pub struct SymbolPath {
    pub code: String,
}

#[utoipa::path(get, path = "/api/v1/symbols/{code}", tag = "market",
    params(("code" = String, Path, description = "The symbol code")),
    responses((status = 200, description = "The symbol", body = SymbolInfo), QueryErrors),
    security(("bearer" = [])))]
pub async fn get_symbol(
    State(s): State<AppState>,
    _trader: Trader,
    ApiPath(p): ApiPath<SymbolPath>,
) -> Result<Json<SymbolInfo>, ApiError> {
    let code = known_code(&s, &p.code)?;
    let (_, symbols) = reference(&s, Some(code))?;
    symbols
        .into_iter()
        .next()
        .map(Json)
        .ok_or_else(unknown_symbol)
}

pub(super) fn unknown_symbol() -> ApiError {
    // A path that names no symbol is a resource that does not exist.
    let mut e = ApiError::reject(RejectReason::UnknownSymbol);
    e.status = StatusCode::NOT_FOUND;
    e
}

pub(super) fn known_code(s: &Inner, code: &str) -> Result<Code, ApiError> {
    let code = Code::new(code).ok_or_else(unknown_symbol)?;
    match s.read(|v| v.symbols.id(code)) {
        Some(_) => Ok(code),
        None => Err(unknown_symbol()),
    }
}

#[utoipa::path(get, path = "/api/v1/market", tag = "market",
    responses((status = 200, description = "The trading day, the phase and the fee schedule", body = MarketInfo), QueryErrors),
    security(("bearer" = [])))]
pub async fn get_market(
    State(s): State<AppState>,
    _trader: Trader,
) -> Result<Json<MarketInfo>, ApiError> {
    // The market report comes with the symbol list; ask for one symbol's worth at most.
    let first = s.read(|v| v.read_model.symbols.values().next().map(|s| s.symbol.id));
    let code = first.and_then(|id| s.read(|v| v.symbols.code(id)));
    reference(&s, code).map(|(market, _)| Json(market))
}

/// One price level.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct Level {
    pub price: i64,
    pub qty: i64,
    pub orders: u32,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct BookResponse {
    pub symbol: String,
    /// Best first.
    pub bids: Vec<Level>,
    /// Best first.
    pub asks: Vec<Level>,
}

#[derive(Clone, Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct DepthQuery {
    /// Levels per side, 1-10 (default 10).
    #[param(minimum = 1, maximum = 10)]
    pub depth: Option<u32>,
}

/// Levels shown per side at most.
pub const DEPTH_MAX: u32 = 10;

#[utoipa::path(get, path = "/api/v1/symbols/{code}/book", tag = "market",
    params(("code" = String, Path, description = "The symbol code"), DepthQuery),
    responses((status = 200, description = "The book's best levels", body = BookResponse), QueryErrors),
    security(("bearer" = [])))]
pub async fn get_book(
    State(s): State<AppState>,
    _trader: Trader,
    ApiPath(p): ApiPath<SymbolPath>,
    ApiQuery(q): ApiQuery<DepthQuery>,
) -> Result<Json<BookResponse>, ApiError> {
    let depth = match q.depth.unwrap_or(DEPTH_MAX) {
        d @ 1..=DEPTH_MAX => d as usize,
        _ => {
            return Err(ApiError::gateway(GatewayCode::InvalidRequest)
                .with_detail("depth must be between 1 and 10"));
        }
    };
    let code = known_code(&s, &p.code)?;
    s.read(|v| {
        let book = v
            .symbols
            .id(code)
            .and_then(|id| v.read_model.symbols.get(&id))
            .map(|sym| &sym.book)
            .ok_or_else(unknown_symbol)?;
        let level = |(p, (q, n)): (&Price, &(Qty, u32))| Level {
            price: p.0,
            qty: q.0,
            orders: *n,
        };
        Ok(Json(BookResponse {
            symbol: code.as_str().to_owned(),
            bids: book.bids.iter().rev().take(depth).map(level).collect(),
            asks: book.asks.iter().take(depth).map(level).collect(),
        }))
    })
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct QuoteResponse {
    pub symbol: String,
    pub bid_price: Option<i64>,
    pub bid_qty: Option<i64>,
    pub ask_price: Option<i64>,
    pub ask_qty: Option<i64>,
    /// Today's last trade price (absent: none yet).
    pub last_price: Option<i64>,
    pub base_price: i64,
}

#[utoipa::path(get, path = "/api/v1/symbols/{code}/quote", tag = "market",
    params(("code" = String, Path, description = "The symbol code")),
    responses((status = 200, description = "Best bid and ask, last price", body = QuoteResponse), QueryErrors),
    security(("bearer" = [])))]
pub async fn get_quote(
    State(s): State<AppState>,
    _trader: Trader,
    ApiPath(p): ApiPath<SymbolPath>,
) -> Result<Json<QuoteResponse>, ApiError> {
    let code = known_code(&s, &p.code)?;
    s.read(|v| {
        let sym = v
            .symbols
            .id(code)
            .and_then(|id| v.read_model.symbols.get(&id))
            .ok_or_else(unknown_symbol)?;
        let (bid, ask) = (sym.book.best_bid(), sym.book.best_ask());
        Ok(Json(QuoteResponse {
            symbol: code.as_str().to_owned(),
            bid_price: bid.map(|b| b.0.0),
            bid_qty: bid.map(|b| b.1.0),
            ask_price: ask.map(|a| a.0.0),
            ask_qty: ask.map(|a| a.1.0),
            last_price: sym.symbol.last_trade_price.map(|p| p.0),
            base_price: sym.symbol.base_price.0,
        }))
    })
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct TradeView {
    pub trade_id: u64,
    pub price: i64,
    pub qty: i64,
    /// The side of the order that took liquidity.
    pub taker_side: ApiSide,
    pub ts_ns: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct TradesResponse {
    pub symbol: String,
    /// Newest first.
    pub trades: Vec<TradeView>,
}

#[derive(Clone, Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct TradesQuery {
    /// Trades, 1-200 (default 50).
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u32>,
}

#[utoipa::path(get, path = "/api/v1/symbols/{code}/trades", tag = "market",
    params(("code" = String, Path, description = "The symbol code"), TradesQuery),
    responses((status = 200, description = "Recent trades since the node started", body = TradesResponse), QueryErrors),
    security(("bearer" = [])))]
pub async fn get_trades(
    State(s): State<AppState>,
    _trader: Trader,
    ApiPath(p): ApiPath<SymbolPath>,
    ApiQuery(q): ApiQuery<TradesQuery>,
) -> Result<Json<TradesResponse>, ApiError> {
    let limit = match q.limit.unwrap_or(50) {
        n @ 1..=200 => n as usize,
        _ => {
            return Err(ApiError::gateway(GatewayCode::InvalidRequest)
                .with_detail("limit must be between 1 and 200"));
        }
    };
    let code = known_code(&s, &p.code)?;
    let trades = s.read(|v| {
        let id = v.symbols.id(code);
        id.and_then(|id| v.trades.get(&id))
            .map(|t| {
                t.iter()
                    .rev()
                    .take(limit)
                    .map(|t: &TradeRecord| TradeView {
                        trade_id: t.trade_id.0,
                        price: t.price.0,
                        qty: t.qty.0,
                        taker_side: t.taker_side.into(),
                        ts_ns: t.ts_ns,
                    })
                    .collect()
            })
            .unwrap_or_default()
    });
    Ok(Json(TradesResponse {
        symbol: code.as_str().to_owned(),
        trades,
    }))
}

// ---------------------------------------------------------------------------------------
// Documented error sets.

pub fn problem_response(description: &str) -> utoipa::openapi::RefOr<utoipa::openapi::Response> {
    use utoipa::openapi::{ContentBuilder, ResponseBuilder};
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/problem+json",
            ContentBuilder::new()
                .schema(Some(utoipa::openapi::Ref::from_schema_name("Problem")))
                .build(),
        )
        .build()
        .into()
}

pub(super) fn problems(
    list: &[(&str, &str)],
) -> std::collections::BTreeMap<String, utoipa::openapi::RefOr<utoipa::openapi::Response>> {
    list.iter()
        .map(|(status, description)| (status.to_string(), problem_response(description)))
        .collect()
}

/// The errors of a state-changing trading request.
pub struct TradingErrors;

impl utoipa::IntoResponses for TradingErrors {
    fn responses()
    -> std::collections::BTreeMap<String, utoipa::openapi::RefOr<utoipa::openapi::Response>> {
        problems(&[
            (
                "400",
                "Malformed request, missing or invalid Idempotency-Key, or a value out of range",
            ),
            ("401", "No valid access token"),
            ("404", "No such order for this account"),
            (
                "409",
                "The Idempotency-Key was used today for a different request",
            ),
            ("413", "Body too large"),
            (
                "422",
                "Rejected by a business rule (cash, shares, tick, band, phase, ...)",
            ),
            (
                "429",
                "The account's request budget is used up (Retry-After)",
            ),
            ("503", "The node is busy (Retry-After), or not the primary"),
            (
                "504",
                "Outcome unknown: resend with the same Idempotency-Key",
            ),
        ])
    }
}

/// The errors of a query.
pub struct QueryErrors;

impl utoipa::IntoResponses for QueryErrors {
    fn responses()
    -> std::collections::BTreeMap<String, utoipa::openapi::RefOr<utoipa::openapi::Response>> {
        problems(&[
            ("400", "Malformed path or query"),
            ("401", "No valid access token"),
            ("404", "No such order or symbol"),
            (
                "429",
                "The account's request budget is used up (Retry-After)",
            ),
        ])
    }
}

// ---------------------------------------------------------------------------------------
// Router.

async fn openapi_json() -> Response {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        super::openapi::document(),
    )
        .into_response()
}

async fn not_found() -> ApiError {
    ApiError::gateway(GatewayCode::NotFound)
}

async fn method_not_allowed() -> ApiError {
    let mut e = ApiError::gateway(GatewayCode::NotFound)
        .with_detail("this endpoint does not take this method");
    e.status = StatusCode::METHOD_NOT_ALLOWED;
    e
}

/// The door's routes.
pub fn router(state: AppState, body_bytes_max: usize) -> axum::Router {
    let api = axum::Router::new()
        .route("/auth/token", post(issue_token))
        .route("/orders", post(place_order).get(list_orders))
        .route("/orders/cancel-all", post(cancel_all))
        .route(
            "/orders/{order_id}",
            get(get_order).delete(cancel_order).patch(modify_order),
        )
        .route("/account", get(get_account))
        .route("/positions", get(get_positions))
        .route("/portfolio", get(get_portfolio))
        .route("/market", get(get_market))
        .route("/symbols", get(list_symbols))
        .route("/symbols/{code}", get(get_symbol))
        .route("/symbols/{code}/book", get(get_book))
        .route("/symbols/{code}/quote", get(get_quote))
        .route("/symbols/{code}/trades", get(get_trades))
        .route("/history/transactions", get(super::history::transactions))
        .route("/history/trades", get(super::history::trades))
        .route("/openapi.json", get(openapi_json))
        .merge(admin::routes())
        .merge(super::market::routes());
    axum::Router::new()
        .route("/ws", get(super::ws::session::upgrade))
        .nest("/api/v1", api)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(body_bytes_max))
        .with_state(state)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enum_names_render_in_snake_case() {
        assert_eq!(snake("ClosingCall".into()), "closing_call");
        assert_eq!(snake("Kospi".into()), "kospi");
    }

    #[test]
    fn page_limits_are_bounded() {
        assert_eq!(page_limit(None).unwrap(), 100);
        assert_eq!(page_limit(Some(500)).unwrap(), 500);
        assert_eq!(page_limit(Some(0)).unwrap_err().code, 9020);
        assert_eq!(page_limit(Some(501)).unwrap_err().code, 9020);
    }
}
