//! The admin endpoints of the HTTP door (`/api/v1/admin/...`, the admin token as the bearer
//! token): accounts and their trading tokens, deposits, withdrawals and their confirmation or
//! failure, reversals, share transfers in, symbol registration and the fee schedule. Each request becomes the admin protocol message a
//! TCP admin client would send and goes through `translate::admin_request`; the command's
//! events add up to one `AdminResult` (`translate::AdminOutcome`), as on the TCP door.
//!
//! **Idempotency**: admin commands are idempotent by their own keys, as on the TCP door: an
//! account by its `owner`, a deposit or withdrawal by its `external_ref` (a resend with the
//! same content answers the original transaction with `resent: true`; other content is
//! `409 ExternalRefReused`), a confirm, fail or reverse by the transaction's state, a symbol
//! by its code (`409 SymbolExists`), the fee schedule by being a value. The
//! Idempotency-Key header is therefore not needed here.

use super::api::AppState;
use super::extract::{Admin, ApiPath, Body};
use super::problem::ApiError;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post, put};
use kuku_engine::{
    AccountId, Amount, ExternalRef, Market, Price, Qty, RejectReason, SymbolName, TxId,
};
use kuku_gateway::protocol::{
    Code, ConfirmTransaction, Deposit, FailTransaction, GatewayCode, Message, OpenAccount,
    RegisterSymbol, ReverseTransaction, SetFeeSchedule, TickKind, TransferIn, WireTickRule,
    Withdraw,
};
use kuku_gateway::translate::{self, AdminRequest, Refusal, Scope};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// What an admin command did.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct AdminResponse {
    pub account: u32,
    /// The transaction created or changed (0: none).
    pub tx_id: u64,
    /// `pending`, `posted`, `failed`, `unknown` or `reversed` (absent: no transaction).
    pub tx_status: Option<String>,
    /// True when this repeats an earlier identical request (nothing new happened).
    pub resent: bool,
    /// The symbol a registration listed (0: none).
    pub symbol_id: u32,
    pub seq: u64,
}

async fn admin_command(s: &AppState, message: Message) -> Result<AdminResponse, ApiError> {
    let translated = s.read(|v| translate::admin_request(message, &v.symbols));
    let command = match translated {
        Ok(AdminRequest::Command { command, .. }) => command,
        Err(Refusal::Reject(code)) => return Err(ApiError::code(code)),
        _ => return Err(ApiError::gateway(GatewayCode::InvalidRequest)),
    };
    let collected = s.submit(command).await?;
    let a = collected.admin;
    if a.code != 0 {
        return Err(ApiError::code(a.code));
    }
    Ok(AdminResponse {
        account: a.account.0,
        tx_id: a.tx_id,
        tx_status: a.tx_status.map(|t| format!("{t:?}").to_lowercase()),
        resent: a.resent,
        symbol_id: a.symbol_id,
        seq: collected.seq,
    })
}

fn external_ref(s: &str) -> Result<ExternalRef, ApiError> {
    ExternalRef::new(s)
        .filter(|r| !r.is_empty())
        .ok_or_else(|| {
            ApiError::gateway(GatewayCode::InvalidRequest)
                .with_detail("an external reference or owner is 1-32 bytes")
        })
}

/// The errors of an admin command.
pub struct AdminErrors;

impl utoipa::IntoResponses for AdminErrors {
    fn responses()
    -> std::collections::BTreeMap<String, utoipa::openapi::RefOr<utoipa::openapi::Response>> {
        use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
        [
            ("400", "Malformed request or a value out of range"),
            ("401", "No admin token"),
            ("403", "An account's access token, not the admin token"),
            ("404", "No such account or transaction"),
            (
                "409",
                "The external reference was used for a different request",
            ),
            ("413", "Body too large"),
            (
                "422",
                "Rejected by a rule (cash, state of the transaction, ...)",
            ),
            ("503", "The node is busy (Retry-After), or not the primary"),
            ("504", "Outcome unknown: resend the same request"),
        ]
        .iter()
        .map(|(status, description)| {
            let response = ResponseBuilder::new()
                .description(*description)
                .content(
                    "application/problem+json",
                    ContentBuilder::new()
                        .schema(Some(Ref::from_schema_name("Problem")))
                        .build(),
                )
                .build();
            (status.to_string(), response.into())
        })
        .collect()
    }
}

#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OpenAccountRequest {
    /// The owner's key (1-32 bytes); opening again with the same owner returns the same
    /// account.
    pub owner: String,
}

#[utoipa::path(post, path = "/api/v1/admin/accounts", tag = "admin",
    request_body = OpenAccountRequest,
    responses((status = 201, description = "The account", body = AdminResponse), AdminErrors),
    security(("admin" = [])))]
pub async fn open_account(
    State(s): State<AppState>,
    _admin: Admin,
    Body(req): Body<OpenAccountRequest>,
) -> Result<(StatusCode, Json<AdminResponse>), ApiError> {
    let message = OpenAccount {
        request_id: 0,
        owner: external_ref(&req.owner)?,
    };
    created(admin_command(&s, message.into()).await?)
}

#[derive(Clone, Copy, Debug, Deserialize)]
pub struct AccountPath {
    pub account: u32,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct TradingTokenResponse {
    pub account: u32,
    /// The account's trading token (64 hex digits), for `/api/v1/auth/token` or a TCP login.
    pub token: String,
}

#[utoipa::path(post, path = "/api/v1/admin/accounts/{account}/token", tag = "admin",
    params(("account" = u32, Path, description = "The account id")),
    responses((status = 200, description = "The account's trading token", body = TradingTokenResponse), AdminErrors),
    security(("admin" = [])))]
pub async fn trading_token(
    State(s): State<AppState>,
    _admin: Admin,
    ApiPath(p): ApiPath<AccountPath>,
) -> Result<Json<TradingTokenResponse>, ApiError> {
    let account = AccountId(p.account);
    let exists = s.read(|v| v.read_model.accounts.contains_key(&account));
    if account.0 == 0 || !exists {
        return Err(ApiError::reject(RejectReason::UnknownAccount));
    }
    Ok(Json(TradingTokenResponse {
        account: account.0,
        token: kuku_gateway::auth::encode_hex(&s.secret.account_token(account)),
    }))
}

#[utoipa::path(get, path = "/api/v1/admin/accounts/{account}", tag = "admin",
    params(("account" = u32, Path, description = "The account id")),
    responses((status = 200, description = "The account", body = super::api::Portfolio), AdminErrors),
    security(("admin" = [])))]
pub async fn get_any_account(
    State(s): State<AppState>,
    _admin: Admin,
    ApiPath(p): ApiPath<AccountPath>,
) -> Result<Json<super::api::Portfolio>, ApiError> {
    if p.account == 0 {
        return Err(ApiError::reject(RejectReason::UnknownAccount));
    }
    let (snapshot, positions) = super::api::account_answer(&s, AccountId(p.account), Scope::Any)?;
    s.read(|v| super::api::value(v, snapshot, positions))
        .map(Json)
}

#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MoneyRequest {
    pub account: u32,
    /// KRW, positive.
    pub amount: i64,
    /// The bank's reference (1-32 bytes): the request's idempotency key.
    pub external_ref: String,
}

impl MoneyRequest {
    /// The fields a deposit and a withdrawal carry, in the protocol's types.
    fn fields(&self) -> Result<(AccountId, Amount, ExternalRef), ApiError> {
        Ok((
            AccountId(self.account),
            Amount(self.amount),
            external_ref(&self.external_ref)?,
        ))
    }
}

fn created(r: AdminResponse) -> Result<(StatusCode, Json<AdminResponse>), ApiError> {
    Ok((StatusCode::CREATED, Json(r)))
}

#[utoipa::path(post, path = "/api/v1/admin/deposits", tag = "admin",
    request_body = MoneyRequest,
    responses((status = 201, description = "The deposit transaction", body = AdminResponse), AdminErrors),
    security(("admin" = [])))]
pub async fn deposit(
    State(s): State<AppState>,
    _admin: Admin,
    Body(req): Body<MoneyRequest>,
) -> Result<(StatusCode, Json<AdminResponse>), ApiError> {
    let (account, amount, external_ref) = req.fields()?;
    let message = Deposit {
        request_id: 0,
        account,
        amount,
        external_ref,
    };
    created(admin_command(&s, message.into()).await?)
}

#[utoipa::path(post, path = "/api/v1/admin/withdrawals", tag = "admin",
    request_body = MoneyRequest,
    responses((status = 201, description = "The withdrawal transaction (pending until confirmed or failed)", body = AdminResponse), AdminErrors),
    security(("admin" = [])))]
pub async fn withdraw(
    State(s): State<AppState>,
    _admin: Admin,
    Body(req): Body<MoneyRequest>,
) -> Result<(StatusCode, Json<AdminResponse>), ApiError> {
    let (account, amount, external_ref) = req.fields()?;
    let message = Withdraw {
        request_id: 0,
        account,
        amount,
        external_ref,
    };
    created(admin_command(&s, message.into()).await?)
}

#[derive(Clone, Copy, Debug, Deserialize)]
pub struct TxPath {
    pub tx_id: u64,
}

macro_rules! tx_endpoint {
    ($name:ident, $path:literal, $message:ident, $what:literal) => {
        #[utoipa::path(post, path = $path, tag = "admin",
            params(("tx_id" = u64, Path, description = "The transaction id")),
            responses((status = 200, description = $what, body = AdminResponse), AdminErrors),
            security(("admin" = [])))]
        pub async fn $name(
            State(s): State<AppState>,
            _admin: Admin,
            ApiPath(p): ApiPath<TxPath>,
        ) -> Result<Json<AdminResponse>, ApiError> {
            let message = $message {
                request_id: 0,
                tx_id: TxId(p.tx_id),
            };
            admin_command(&s, message.into()).await.map(Json)
        }
    };
}

tx_endpoint!(
    confirm,
    "/api/v1/admin/transactions/{tx_id}/confirm",
    ConfirmTransaction,
    "The transaction is posted"
);
tx_endpoint!(
    fail,
    "/api/v1/admin/transactions/{tx_id}/fail",
    FailTransaction,
    "The transaction failed (its hold is released)"
);
tx_endpoint!(
    reverse,
    "/api/v1/admin/transactions/{tx_id}/reverse",
    ReverseTransaction,
    "The reversal transaction"
);

#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TransferInRequest {
    pub account: u32,
    pub symbol: String,
    /// Shares, positive.
    pub qty: i64,
    /// The cost price the shares carry into the cost basis (KRW per share).
    pub price: i64,
    /// The transfer's reference (1-32 bytes): its idempotency key.
    pub external_ref: String,
}

#[utoipa::path(post, path = "/api/v1/admin/transfers-in", tag = "admin",
    request_body = TransferInRequest,
    responses((status = 201, description = "The adjustment transaction", body = AdminResponse), AdminErrors),
    security(("admin" = [])))]
pub async fn transfer_in(
    State(s): State<AppState>,
    _admin: Admin,
    Body(req): Body<TransferInRequest>,
) -> Result<(StatusCode, Json<AdminResponse>), ApiError> {
    let message = TransferIn {
        request_id: 0,
        account: AccountId(req.account),
        symbol: Code::new(&req.symbol)
            .ok_or_else(|| ApiError::reject(RejectReason::UnknownSymbol))?,
        qty: Qty(req.qty),
        price: Price(req.price),
        external_ref: external_ref(&req.external_ref)?,
    };
    created(admin_command(&s, message.into()).await?)
}

/// The market a symbol is listed on (its sell taxes follow from it).
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ApiMarket {
    Kospi,
    Kosdaq,
    Other,
}

/// How a symbol's prices are quantized.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ApiTickKind {
    /// The KRX equity tick table (`tick` must be 0).
    Krx,
    /// One tick size for every price (`tick` > 0).
    Fixed,
}

#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterSymbolRequest {
    /// 1-6 ASCII letters or digits.
    pub code: String,
    /// Up to 48 bytes.
    pub name: String,
    pub market: ApiMarket,
    pub tick_kind: ApiTickKind,
    /// The fixed tick (0 with the KRX table).
    #[serde(default)]
    pub tick: i64,
    /// KRW, on the tick grid.
    pub base_price: i64,
    /// Whether the daily +-30% band applies.
    pub banded: bool,
    pub lot_size: i64,
}

#[utoipa::path(post, path = "/api/v1/admin/symbols", tag = "admin",
    request_body = RegisterSymbolRequest,
    responses((status = 201, description = "The symbol is listed (`symbol_id`)", body = AdminResponse), AdminErrors),
    security(("admin" = [])))]
pub async fn register_symbol(
    State(s): State<AppState>,
    _admin: Admin,
    Body(req): Body<RegisterSymbolRequest>,
) -> Result<(StatusCode, Json<AdminResponse>), ApiError> {
    let invalid = |what: &str| {
        ApiError::gateway(GatewayCode::InvalidRequest)
            .with_detail(format!("{what} is too long or empty"))
    };
    let message = RegisterSymbol {
        request_id: 0,
        code: Code::new(&req.code)
            .ok_or_else(|| ApiError::reject(RejectReason::InvalidSymbolCode))?,
        name: SymbolName::new(&req.name)
            .filter(|n| !n.is_empty())
            .ok_or_else(|| invalid("name"))?,
        market: match req.market {
            ApiMarket::Kospi => Market::Kospi,
            ApiMarket::Kosdaq => Market::Kosdaq,
            ApiMarket::Other => Market::Other,
        },
        tick_rule: WireTickRule {
            kind: match req.tick_kind {
                ApiTickKind::Krx => TickKind::Krx,
                ApiTickKind::Fixed => TickKind::Fixed,
            },
            tick: req.tick,
        },
        base_price: Price(req.base_price),
        banded: req.banded,
        lot_size: Qty(req.lot_size),
    };
    created(admin_command(&s, message.into()).await?)
}

/// The fee schedule: rates in parts per million (0-1,000,000).
#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FeeScheduleRequest {
    pub commission_ppm: i64,
    pub kospi_securities_transaction_ppm: i64,
    pub kospi_rural_special_ppm: i64,
    pub kosdaq_securities_transaction_ppm: i64,
    pub kosdaq_rural_special_ppm: i64,
    pub other_securities_transaction_ppm: i64,
    pub other_rural_special_ppm: i64,
}

#[utoipa::path(put, path = "/api/v1/admin/fees", tag = "admin",
    request_body = FeeScheduleRequest,
    responses((status = 200, description = "The schedule is set (only while no trading day is open: else 422 1012)", body = AdminResponse), AdminErrors),
    security(("admin" = [])))]
pub async fn set_fees(
    State(s): State<AppState>,
    _admin: Admin,
    Body(req): Body<FeeScheduleRequest>,
) -> Result<Json<AdminResponse>, ApiError> {
    let message = SetFeeSchedule {
        request_id: 0,
        commission_ppm: req.commission_ppm,
        kospi_securities_transaction_ppm: req.kospi_securities_transaction_ppm,
        kospi_rural_special_ppm: req.kospi_rural_special_ppm,
        kosdaq_securities_transaction_ppm: req.kosdaq_securities_transaction_ppm,
        kosdaq_rural_special_ppm: req.kosdaq_rural_special_ppm,
        other_securities_transaction_ppm: req.other_securities_transaction_ppm,
        other_rural_special_ppm: req.other_rural_special_ppm,
    };
    admin_command(&s, message.into()).await.map(Json)
}

/// The admin routes (under /api/v1).
pub fn routes() -> axum::Router<AppState> {
    axum::Router::new()
        .route("/admin/accounts", post(open_account))
        .route("/admin/accounts/{account}", get(get_any_account))
        .route("/admin/accounts/{account}/token", post(trading_token))
        .route("/admin/deposits", post(deposit))
        .route("/admin/withdrawals", post(withdraw))
        .route("/admin/transactions/{tx_id}/confirm", post(confirm))
        .route("/admin/transactions/{tx_id}/fail", post(fail))
        .route("/admin/transactions/{tx_id}/reverse", post(reverse))
        .route("/admin/transfers-in", post(transfer_in))
        .route("/admin/symbols", post(register_symbol))
        .route("/admin/fees", put(set_fees))
}
