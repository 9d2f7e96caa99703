//! The market's data and the reference data over the HTTP door, read from the market-data
//! service (`Node::market_data`, docs/market-data.md) and, for candles older than the
//! service keeps and for admin writes, the query database.
//!
//! Two kinds of price data sit side by side under `/symbols/{code}` and must not be confused:
//! `book`, `quote` and `trades` are Kuku's own order book and Kuku's own trades (the engine's
//! read model); `market-quote`, `market-ticks` and `candles` are what the market (the feed's
//! source) shows: its ten-level quote, its trades (ticks) and the candles built from them.
//!
//! Reference data (`/reference/...`) is the market's listing of a symbol (ISIN, names, lot,
//! status) and the provider mappings; the admin endpoints register a symbol and map a
//! provider's code: the request is validated, written to the database, then applied to the
//! running service, so every reader of the node sees it at once.
//!
//! **Time parameters**: `from` and `to` are Unix nanoseconds (UTC), a candle is returned when
//! its interval's start is in `[from, to)`; `from` defaults to 0 and `to` to
//! [`TIME_NS_MAX`] (both at most [`TIME_NS_MAX`], the largest the database stores), and
//! `from < to`. `limit` (1 to [`CANDLES_LIMIT_MAX`], default [`CANDLES_LIMIT_DEFAULT`])
//! keeps the newest candles of the range, returned oldest first.
//!
//! **Invariants**
//! - A refused admin request (a field invalid, a mapping to an unregistered symbol) writes
//!   nothing, in the database or the service.
//! - An admin write reaches the service only after the database stored it; admin writes are
//!   serialized (`Inner::reference_writes`), so the service applies them in the database's
//!   order.
//! - Every numeric query parameter is bounded before it reaches the service or the database.
//!
//! **Performance**: reads copy out of the service under its read lock (O(kept items));
//! candles add one indexed database query when the node has a database.
//!
//! **Known limitations**: reference changes made with `kuku reference` while a node runs
//! reach its service at the next start (those made here reach it at once); a write whose
//! database answer is lost (`503 ReferenceUnavailable`) may have been stored: resend it.

use super::api::{ApiSide, AppState, known_code, problems, unknown_symbol};
use super::extract::{Admin, ApiPath, ApiQuery, Body, Trader};
use super::problem::ApiError;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use kuku_engine::{Qty, SymbolCode};
use kuku_gateway::protocol::GatewayCode;
use kuku_marketdata::reference::{ReferenceError, parse_tick_rule, tick_rule_to_str};
use kuku_marketdata::{
    Candle, Interval, Isin, ListingStatus, Mapping, Market, MarketCode, ReferenceSymbol,
    TimestampNs,
};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The largest `from` / `to` (Unix ns): the database stores timestamps as signed 64-bit.
pub const TIME_NS_MAX: u64 = i64::MAX as u64;
/// Candles in one answer at most.
pub const CANDLES_LIMIT_MAX: u32 = 1_000;
pub const CANDLES_LIMIT_DEFAULT: u32 = 100;
/// Market ticks in one answer at most (the service keeps 1,000 per symbol).
pub const TICKS_LIMIT_MAX: u32 = 1_000;
pub const TICKS_LIMIT_DEFAULT: u32 = 100;

/// The stable code of a reference refusal.
pub fn reference_code(e: &ReferenceError) -> GatewayCode {
    match e {
        ReferenceError::UnknownMarket(_) => GatewayCode::UnknownMarket,
        ReferenceError::InvalidCode(_) => GatewayCode::InvalidReferenceCode,
        ReferenceError::InvalidIsin(_) => GatewayCode::InvalidIsin,
        ReferenceError::InvalidName { .. } => GatewayCode::InvalidReferenceName,
        ReferenceError::InvalidLotSize(_) => GatewayCode::InvalidLotSize,
        ReferenceError::InvalidTickRule(_) => GatewayCode::InvalidReferenceTickRule,
        ReferenceError::InvalidStatus(_) => GatewayCode::InvalidListingStatus,
        ReferenceError::InvalidProvider(_) => GatewayCode::InvalidProvider,
        ReferenceError::InvalidExternalCode(_) => GatewayCode::InvalidExternalCode,
        ReferenceError::UnknownSymbol(_) => GatewayCode::UnknownReferenceSymbol,
    }
}

fn refused(e: ReferenceError) -> ApiError {
    ApiError::gateway(reference_code(&e)).with_detail(e.to_string())
}

fn invalid(detail: &str) -> ApiError {
    ApiError::gateway(GatewayCode::InvalidRequest).with_detail(detail.to_owned())
}

/// A reference symbol code: 1 to 12 ASCII letters or digits.
fn reference_code_of(code: &str) -> Result<SymbolCode, ApiError> {
    SymbolCode::new(code)
        .filter(|c| !c.is_empty() && c.as_str().bytes().all(|b| b.is_ascii_alphanumeric()))
        .ok_or_else(|| refused(ReferenceError::InvalidCode(code.to_owned())))
}

/// A symbol the node knows: listed in the engine or registered in the reference data.
fn market_symbol(s: &AppState, code: &str) -> Result<SymbolCode, ApiError> {
    let symbol = SymbolCode::new(code)
        .filter(|c| !c.is_empty())
        .ok_or_else(unknown_symbol)?;
    if known_code(s, code).is_ok() || s.market_data.reference_symbol(symbol).is_some() {
        Ok(symbol)
    } else {
        Err(unknown_symbol())
    }
}

// ---------------------------------------------------------------------------------------
// Candles.

#[derive(Clone, Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct CandlesQuery {
    /// `1m`, `5m`, `1h` or `1d` (intervals start on the KST wall clock).
    pub interval: String,
    /// Candles starting at or after this instant (Unix ns, default 0).
    #[param(minimum = 0, maximum = 9223372036854775807_i64)]
    pub from: Option<u64>,
    /// Candles starting before this instant (Unix ns, default 9223372036854775807).
    #[param(minimum = 1, maximum = 9223372036854775807_i64)]
    pub to: Option<u64>,
    /// The newest this many candles of the range, 1-1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
}

/// One OHLCV candle of the market's trades.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct CandleView {
    /// The interval's start (Unix ns).
    pub start_ns: u64,
    /// The interval's end, exclusive (Unix ns).
    pub end_ns: u64,
    pub open: i64,
    pub high: i64,
    pub low: i64,
    pub close: i64,
    /// Shares traded.
    pub volume: i64,
    /// Market trades in the interval.
    pub trades: u64,
}

impl From<&Candle> for CandleView {
    fn from(c: &Candle) -> CandleView {
        CandleView {
            start_ns: c.start_ns.0,
            end_ns: c.end_ns().0,
            open: c.open.0,
            high: c.high.0,
            low: c.low.0,
            close: c.close.0,
            volume: c.volume,
            trades: c.trades,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct CandlesResponse {
    pub symbol: String,
    pub interval: String,
    pub from: u64,
    pub to: u64,
    /// Oldest first; an interval without market trades has no candle.
    pub candles: Vec<CandleView>,
}

/// The checked candle query: interval, `[from, to)`, limit.
fn candle_range(q: &CandlesQuery) -> Result<(Interval, u64, u64, u32), ApiError> {
    let interval = Interval::parse(&q.interval).ok_or_else(|| {
        ApiError::gateway(GatewayCode::InvalidInterval).with_detail(format!(
            "the interval {:?} is not 1m, 5m, 1h or 1d",
            q.interval
        ))
    })?;
    let (from, to) = (q.from.unwrap_or(0), q.to.unwrap_or(TIME_NS_MAX));
    if from >= to || to > TIME_NS_MAX {
        return Err(
            ApiError::gateway(GatewayCode::InvalidTimeRange).with_detail(format!(
                "from ({from}) must be below to ({to}), and both at most {TIME_NS_MAX}"
            )),
        );
    }
    let limit = match q.limit.unwrap_or(CANDLES_LIMIT_DEFAULT) {
        n @ 1..=CANDLES_LIMIT_MAX => n,
        _ => return Err(invalid("limit must be between 1 and 1000")),
    };
    Ok((interval, from, to, limit))
}

#[utoipa::path(get, path = "/api/v1/symbols/{code}/candles", tag = "market-data",
    params(("code" = String, Path, description = "The symbol code"), CandlesQuery),
    responses((status = 200, description = "The market's candles, oldest first", body = CandlesResponse), MarketDataErrors),
    security(("bearer" = [])))]
pub async fn get_candles(
    State(s): State<AppState>,
    _trader: Trader,
    ApiPath(p): ApiPath<super::api::SymbolPath>,
    ApiQuery(q): ApiQuery<CandlesQuery>,
) -> Result<Json<CandlesResponse>, ApiError> {
    let (interval, from, to, limit) = candle_range(&q)?;
    let symbol = market_symbol(&s, &p.code)?;
    let db = match s.history.configured() {
        true => Some(s.history.db().await?),
        false => None,
    };
    let read = crate::market_data::candle_history(
        &s.market_data,
        db,
        symbol,
        interval,
        TimestampNs(from),
        TimestampNs(to),
        limit,
    );
    let candles = s.history.timed(read).await?;
    Ok(Json(CandlesResponse {
        symbol: symbol.as_str().to_owned(),
        interval: interval.as_str().to_owned(),
        from,
        to,
        candles: candles.iter().map(CandleView::from).collect(),
    }))
}

// ---------------------------------------------------------------------------------------
// The market's quote and ticks.

/// A price level of the market's book.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct MarketLevel {
    pub price: i64,
    pub qty: i64,
}

/// A trade on the market (not a Kuku trade).
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct MarketTick {
    pub ts_ns: u64,
    pub price: i64,
    pub qty: i64,
    /// The side whose order took liquidity on the market.
    pub aggressor: ApiSide,
}

/// The market's ten-level quote of a symbol as the source last delivered it, and the
/// symbol's last price.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct MarketQuoteResponse {
    pub symbol: String,
    /// The source's timestamp of the quote (Unix ns; absent: no quote yet, only a last price).
    pub ts_ns: Option<u64>,
    /// Best first, up to ten.
    pub bids: Vec<MarketLevel>,
    /// Best first, up to ten.
    pub asks: Vec<MarketLevel>,
    /// The market's last trade the quote reports (absent: none).
    pub last_trade: Option<MarketLastTrade>,
    /// The symbol's last price: its newest market trade or the source's fallback price
    /// (e.g. KIS's current-price inquiry while its stream is silent), whichever came later.
    /// A fallback price does not refresh the quote (absent: neither yet).
    pub last: Option<MarketLast>,
}

/// Where a last price came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum MarketLastOrigin {
    /// A market trade (see `market-ticks`).
    Trade,
    /// The source's last-price snapshot for a symbol whose stream is silent.
    Fallback,
}

/// A symbol's last price on the market.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct MarketLast {
    pub price: i64,
    /// When the source delivered it (Unix ns): a fallback price does not say when it traded.
    pub ts_ns: u64,
    pub origin: MarketLastOrigin,
}

/// The market's last trade as a quote reports it (a quote does not say who took liquidity).
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct MarketLastTrade {
    pub ts_ns: u64,
    pub price: i64,
    pub qty: i64,
}

#[utoipa::path(get, path = "/api/v1/symbols/{code}/market-quote", tag = "market-data",
    params(("code" = String, Path, description = "The symbol code")),
    responses((status = 200, description = "The market's latest ten-level quote (not Kuku's book)", body = MarketQuoteResponse), MarketDataErrors),
    security(("bearer" = [])))]
pub async fn get_market_quote(
    State(s): State<AppState>,
    _trader: Trader,
    ApiPath(p): ApiPath<super::api::SymbolPath>,
) -> Result<Json<MarketQuoteResponse>, ApiError> {
    let symbol = market_symbol(&s, &p.code)?;
    let quote = s.market_data.quote(symbol);
    let last = s.market_data.last(symbol);
    if quote.is_none() && last.is_none() {
        return Err(ApiError::gateway(GatewayCode::NotFound)
            .with_detail("no market quote or last price of this symbol has been received"));
    }
    let levels = |side: Option<&kuku_marketdata::Levels>| {
        side.map(|side| {
            side.as_slice()
                .iter()
                .map(|l| MarketLevel {
                    price: l.price.0,
                    qty: l.qty.0,
                })
                .collect()
        })
        .unwrap_or_default()
    };
    Ok(Json(MarketQuoteResponse {
        symbol: symbol.as_str().to_owned(),
        ts_ns: quote.map(|q| q.ts_ns.0),
        bids: levels(quote.as_ref().map(|q| &q.bids)),
        asks: levels(quote.as_ref().map(|q| &q.asks)),
        last_trade: quote.and_then(|q| q.last_trade).map(|t| MarketLastTrade {
            ts_ns: t.ts_ns.0,
            price: t.price.0,
            qty: t.qty.0,
        }),
        last: last.map(|l| MarketLast {
            price: l.price.0,
            ts_ns: l.ts_ns.0,
            origin: match l.origin {
                kuku_marketdata::LastOrigin::Trade => MarketLastOrigin::Trade,
                kuku_marketdata::LastOrigin::Fallback => MarketLastOrigin::Fallback,
            },
        }),
    }))
}

#[derive(Clone, Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct MarketTicksQuery {
    /// Ticks, 1-1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct MarketTicksResponse {
    pub symbol: String,
    /// Newest first.
    pub ticks: Vec<MarketTick>,
}

#[utoipa::path(get, path = "/api/v1/symbols/{code}/market-ticks", tag = "market-data",
    params(("code" = String, Path, description = "The symbol code"), MarketTicksQuery),
    responses((status = 200, description = "The market's recent trades (not Kuku's trades)", body = MarketTicksResponse), MarketDataErrors),
    security(("bearer" = [])))]
pub async fn get_market_ticks(
    State(s): State<AppState>,
    _trader: Trader,
    ApiPath(p): ApiPath<super::api::SymbolPath>,
    ApiQuery(q): ApiQuery<MarketTicksQuery>,
) -> Result<Json<MarketTicksResponse>, ApiError> {
    let limit = match q.limit.unwrap_or(TICKS_LIMIT_DEFAULT) {
        n @ 1..=TICKS_LIMIT_MAX => n as usize,
        _ => return Err(invalid("limit must be between 1 and 1000")),
    };
    let symbol = market_symbol(&s, &p.code)?;
    let ticks = s
        .market_data
        .ticks(symbol, limit)
        .iter()
        .rev()
        .map(|t| MarketTick {
            ts_ns: t.ts_ns.0,
            price: t.price.0,
            qty: t.qty.0,
            aggressor: t.aggressor.into(),
        })
        .collect();
    Ok(Json(MarketTicksResponse {
        symbol: symbol.as_str().to_owned(),
        ticks,
    }))
}

// ---------------------------------------------------------------------------------------
// Reference data.

/// A market Kuku lists symbols of.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct MarketView {
    /// `KOSPI` or `KOSDAQ`.
    pub code: String,
    pub name: String,
    pub operator: String,
    pub timezone: String,
    pub session_open_kst: String,
    pub session_close_kst: String,
}

impl From<Market> for MarketView {
    fn from(m: Market) -> MarketView {
        MarketView {
            code: m.code.as_str().to_owned(),
            name: m.name.to_owned(),
            operator: m.operator.to_owned(),
            timezone: m.timezone.to_owned(),
            session_open_kst: m.session_open_kst.to_owned(),
            session_close_kst: m.session_close_kst.to_owned(),
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct MarketsResponse {
    pub markets: Vec<MarketView>,
}

/// A symbol as the market lists it.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct ReferenceSymbolView {
    pub code: String,
    pub isin: String,
    pub name_ko: String,
    pub name_en: String,
    /// `KOSPI` or `KOSDAQ`.
    pub market: String,
    /// `krx` or `fixed:N`.
    pub tick_rule: String,
    pub lot_size: i64,
    /// `listed`, `suspended` or `delisted`.
    pub status: String,
}

impl From<&ReferenceSymbol> for ReferenceSymbolView {
    fn from(s: &ReferenceSymbol) -> ReferenceSymbolView {
        ReferenceSymbolView {
            code: s.code.as_str().to_owned(),
            isin: s.isin.as_str().to_owned(),
            name_ko: s.name_ko.clone(),
            name_en: s.name_en.clone(),
            market: s.market.as_str().to_owned(),
            tick_rule: tick_rule_to_str(s.tick_rule),
            lot_size: s.lot_size.0,
            status: s.status.as_str().to_owned(),
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct ReferenceSymbolsResponse {
    /// In code order.
    pub symbols: Vec<ReferenceSymbolView>,
}

/// A provider's code for a symbol.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MappingView {
    /// The provider, 1-16 lowercase letters, digits or '-' (e.g. `kis`).
    pub provider: String,
    /// The provider's code, 1-32 printable ASCII characters.
    pub external_code: String,
    /// The symbol code it stands for.
    pub symbol: String,
}

impl From<&Mapping> for MappingView {
    fn from(m: &Mapping) -> MappingView {
        MappingView {
            provider: m.provider.clone(),
            external_code: m.external_code.clone(),
            symbol: m.symbol.as_str().to_owned(),
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct MappingsResponse {
    /// In (provider, external code) order.
    pub mappings: Vec<MappingView>,
}

#[utoipa::path(get, path = "/api/v1/reference/markets", tag = "reference",
    responses((status = 200, description = "The markets", body = MarketsResponse), ReferenceErrors),
    security(("bearer" = [])))]
pub async fn list_markets(State(s): State<AppState>, _trader: Trader) -> Json<MarketsResponse> {
    Json(MarketsResponse {
        markets: s
            .market_data
            .markets()
            .into_iter()
            .map(Into::into)
            .collect(),
    })
}

#[derive(Clone, Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ReferenceSymbolsQuery {
    /// Only this market's symbols: `KOSPI` or `KOSDAQ`.
    pub market: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/reference/symbols", tag = "reference",
    params(ReferenceSymbolsQuery),
    responses((status = 200, description = "The registered symbols", body = ReferenceSymbolsResponse), ReferenceErrors),
    security(("bearer" = [])))]
pub async fn list_reference_symbols(
    State(s): State<AppState>,
    _trader: Trader,
    ApiQuery(q): ApiQuery<ReferenceSymbolsQuery>,
) -> Result<Json<ReferenceSymbolsResponse>, ApiError> {
    let market = q
        .market
        .as_deref()
        .map(MarketCode::parse)
        .transpose()
        .map_err(refused)?;
    let symbols = s.market_data.reference_symbols(market);
    Ok(Json(ReferenceSymbolsResponse {
        symbols: symbols.iter().map(Into::into).collect(),
    }))
}

#[utoipa::path(get, path = "/api/v1/reference/symbols/{code}", tag = "reference",
    params(("code" = String, Path, description = "The symbol code")),
    responses((status = 200, description = "The symbol as the market lists it", body = ReferenceSymbolView), ReferenceErrors),
    security(("bearer" = [])))]
pub async fn get_reference_symbol(
    State(s): State<AppState>,
    _trader: Trader,
    ApiPath(p): ApiPath<super::api::SymbolPath>,
) -> Result<Json<ReferenceSymbolView>, ApiError> {
    let code = reference_code_of(&p.code)?;
    s.market_data
        .reference_symbol(code)
        .map(|r| Json((&r).into()))
        .ok_or_else(|| refused(ReferenceError::UnknownSymbol(p.code)))
}

#[derive(Clone, Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct MappingsQuery {
    /// Only this provider's mappings.
    pub provider: Option<String>,
}

fn check_provider(provider: &str) -> Result<(), ApiError> {
    let probe = Mapping {
        provider: provider.to_owned(),
        external_code: "x".to_owned(),
        symbol: SymbolCode::new("X").expect("a valid code"),
    };
    probe.validate().map_err(refused)
}

#[utoipa::path(get, path = "/api/v1/reference/mappings", tag = "reference",
    params(MappingsQuery),
    responses((status = 200, description = "The provider mappings", body = MappingsResponse), ReferenceErrors),
    security(("bearer" = [])))]
pub async fn list_mappings(
    State(s): State<AppState>,
    _trader: Trader,
    ApiQuery(q): ApiQuery<MappingsQuery>,
) -> Result<Json<MappingsResponse>, ApiError> {
    if let Some(p) = &q.provider {
        check_provider(p)?;
    }
    let mappings = s.market_data.mappings(q.provider.as_deref());
    Ok(Json(MappingsResponse {
        mappings: mappings.iter().map(Into::into).collect(),
    }))
}

#[derive(Clone, Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ResolveQuery {
    /// The provider, e.g. `kis`.
    pub provider: String,
    /// The provider's code.
    pub external_code: String,
}

#[utoipa::path(get, path = "/api/v1/reference/resolve", tag = "reference",
    params(ResolveQuery),
    responses((status = 200, description = "The symbol the provider's code stands for", body = MappingView), ReferenceErrors),
    security(("bearer" = [])))]
pub async fn resolve(
    State(s): State<AppState>,
    _trader: Trader,
    ApiQuery(q): ApiQuery<ResolveQuery>,
) -> Result<Json<MappingView>, ApiError> {
    let wanted = Mapping {
        provider: q.provider,
        external_code: q.external_code,
        symbol: SymbolCode::new("X").expect("a valid code"),
    };
    wanted.validate().map_err(refused)?;
    let symbol = s
        .market_data
        .resolve(&wanted.provider, &wanted.external_code)
        .ok_or_else(|| ApiError::gateway(GatewayCode::UnknownMapping))?;
    Ok(Json(MappingView::from(&Mapping { symbol, ..wanted })))
}

// ---------------------------------------------------------------------------------------
// Admin: register and map.

fn default_tick_rule() -> String {
    "krx".to_owned()
}

fn default_lot_size() -> i64 {
    1
}

fn default_status() -> String {
    "listed".to_owned()
}

/// A symbol's reference data to register (or to replace what is known of it).
#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterReferenceSymbol {
    /// The KRX short code, 1-12 ASCII letters or digits (e.g. `005930`).
    pub code: String,
    /// The ISIN, check digit verified (e.g. `KR7005930003`).
    pub isin: String,
    /// 1-64 characters.
    pub name_ko: String,
    /// 1-64 characters.
    pub name_en: String,
    /// `KOSPI` or `KOSDAQ`.
    pub market: String,
    /// `krx` (the KRX tick table, default) or `fixed:N`.
    #[serde(default = "default_tick_rule")]
    pub tick_rule: String,
    /// Shares per lot, 1 to 1,000,000,000 (default 1).
    #[serde(default = "default_lot_size")]
    pub lot_size: i64,
    /// `listed` (default), `suspended` or `delisted`.
    #[serde(default = "default_status")]
    pub status: String,
}

impl RegisterReferenceSymbol {
    fn checked(&self) -> Result<ReferenceSymbol, ReferenceError> {
        let symbol = ReferenceSymbol {
            code: SymbolCode::new(&self.code)
                .filter(|c| !c.is_empty() && c.as_str().bytes().all(|b| b.is_ascii_alphanumeric()))
                .ok_or_else(|| ReferenceError::InvalidCode(self.code.clone()))?,
            isin: Isin::parse(&self.isin)?,
            name_ko: self.name_ko.clone(),
            name_en: self.name_en.clone(),
            market: MarketCode::parse(&self.market)?,
            tick_rule: parse_tick_rule(&self.tick_rule)?,
            lot_size: Qty(self.lot_size),
            status: ListingStatus::parse(&self.status)?,
        };
        symbol.validate()?;
        Ok(symbol)
    }
}

/// A database failure of an admin write: `503 ReferenceUnavailable`, its detail kept.
fn write_failed(e: ApiError) -> ApiError {
    let detail = e.detail.unwrap_or_default();
    ApiError::gateway(GatewayCode::ReferenceUnavailable).with_detail(detail)
}

#[utoipa::path(post, path = "/api/v1/admin/reference/symbols", tag = "admin",
    request_body = RegisterReferenceSymbol,
    responses((status = 201, description = "Registered; the node serves it at once", body = ReferenceSymbolView), ReferenceAdminErrors),
    security(("admin" = [])))]
pub async fn register_reference_symbol(
    State(s): State<AppState>,
    _admin: Admin,
    Body(body): Body<RegisterReferenceSymbol>,
) -> Result<(StatusCode, Json<ReferenceSymbolView>), ApiError> {
    let symbol = body.checked().map_err(refused)?;
    let _serial = s.reference_writes.lock().await;
    let db = s.history.db().await.map_err(write_failed)?;
    s.history
        .timed(db.register_reference_symbol(&symbol))
        .await
        .map_err(write_failed)?;
    s.market_data
        .register_symbol(symbol.clone())
        .map_err(refused)?;
    Ok((StatusCode::CREATED, Json((&symbol).into())))
}

#[utoipa::path(post, path = "/api/v1/admin/reference/mappings", tag = "admin",
    request_body = MappingView,
    responses((status = 201, description = "Mapped; the node resolves it at once", body = MappingView), ReferenceAdminErrors),
    security(("admin" = [])))]
pub async fn map_symbol(
    State(s): State<AppState>,
    _admin: Admin,
    Body(body): Body<MappingView>,
) -> Result<(StatusCode, Json<MappingView>), ApiError> {
    let mapping = Mapping {
        provider: body.provider,
        external_code: body.external_code,
        symbol: reference_code_of(&body.symbol)?,
    };
    mapping.validate().map_err(refused)?;
    let _serial = s.reference_writes.lock().await;
    // The service holds what the database holds (it loaded it at start, and every write
    // here goes to the database first), so a symbol it lacks is refused before any write.
    if s.market_data.reference_symbol(mapping.symbol).is_none() {
        return Err(refused(ReferenceError::UnknownSymbol(body.symbol)));
    }
    let db = s.history.db().await.map_err(write_failed)?;
    s.history
        .timed(db.map_symbol(&mapping))
        .await
        .map_err(write_failed)?;
    s.market_data.map_symbol(mapping.clone()).map_err(refused)?;
    Ok((StatusCode::CREATED, Json((&mapping).into())))
}

// ---------------------------------------------------------------------------------------
// Error lists and routes.

/// The errors of a market-data read.
pub struct MarketDataErrors;

impl utoipa::IntoResponses for MarketDataErrors {
    fn responses()
    -> std::collections::BTreeMap<String, utoipa::openapi::RefOr<utoipa::openapi::Response>> {
        problems(&[
            (
                "400",
                "Malformed path or query, a bad interval (9028) or time range (9029)",
            ),
            ("401", "No valid access token"),
            ("404", "No such symbol, or no market quote of it yet"),
            (
                "429",
                "The account's request budget is used up (Retry-After)",
            ),
            ("503", "The query database did not answer (9027)"),
        ])
    }
}

/// The errors of a reference read.
pub struct ReferenceErrors;

impl utoipa::IntoResponses for ReferenceErrors {
    fn responses()
    -> std::collections::BTreeMap<String, utoipa::openapi::RefOr<utoipa::openapi::Response>> {
        problems(&[
            (
                "400",
                "Malformed query, an unknown market (9030), a bad code or provider (9031-9038)",
            ),
            ("401", "No valid access token"),
            ("404", "No such symbol (9039) or mapping (9040)"),
            (
                "429",
                "The account's request budget is used up (Retry-After)",
            ),
        ])
    }
}

/// The errors of an admin reference write.
pub struct ReferenceAdminErrors;

impl utoipa::IntoResponses for ReferenceAdminErrors {
    fn responses()
    -> std::collections::BTreeMap<String, utoipa::openapi::RefOr<utoipa::openapi::Response>> {
        problems(&[
            (
                "400",
                "Malformed body, or a field refused (9030-9038); nothing was written",
            ),
            ("401", "No admin token"),
            ("403", "An account's access token, not the admin token"),
            (
                "404",
                "The mapping's symbol is not registered (9039); nothing was written",
            ),
            ("413", "Body too large"),
            (
                "503",
                "The query database did not answer (9041): resend the same request",
            ),
        ])
    }
}

/// The market-data and reference routes (under /api/v1).
pub fn routes() -> axum::Router<AppState> {
    axum::Router::new()
        .route("/symbols/{code}/candles", get(get_candles))
        .route("/symbols/{code}/market-quote", get(get_market_quote))
        .route("/symbols/{code}/market-ticks", get(get_market_ticks))
        .route("/reference/markets", get(list_markets))
        .route("/reference/symbols", get(list_reference_symbols))
        .route("/reference/symbols/{code}", get(get_reference_symbol))
        .route("/reference/mappings", get(list_mappings))
        .route("/reference/resolve", get(resolve))
        .route("/admin/reference/symbols", post(register_reference_symbol))
        .route("/admin/reference/mappings", post(map_symbol))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(
        interval: &str,
        from: Option<u64>,
        to: Option<u64>,
        limit: Option<u32>,
    ) -> CandlesQuery {
        CandlesQuery {
            interval: interval.to_owned(),
            from,
            to,
            limit,
        }
    }

    #[test]
    fn candle_ranges_are_checked_at_their_extremes() {
        let code = |q: CandlesQuery| candle_range(&q).unwrap_err().code;
        assert_eq!(code(query("2m", None, None, None)), 9028);
        assert_eq!(code(query("", None, None, None)), 9028);
        assert_eq!(code(query("1m", Some(5), Some(5), None)), 9029);
        assert_eq!(code(query("1m", Some(6), Some(5), None)), 9029);
        assert_eq!(code(query("1m", None, Some(0), None)), 9029);
        assert_eq!(code(query("1m", None, Some(u64::MAX), None)), 9029);
        assert_eq!(code(query("1m", Some(u64::MAX), None, None)), 9029);
        assert_eq!(code(query("1m", None, None, Some(0))), 9020);
        assert_eq!(code(query("1m", None, None, Some(1_001))), 9020);
        assert_eq!(code(query("1m", None, None, Some(u32::MAX))), 9020);
        let (interval, from, to, limit) = candle_range(&query("1d", None, None, None)).unwrap();
        assert_eq!(
            (interval, from, to, limit),
            (Interval::D1, 0, TIME_NS_MAX, 100)
        );
        let edge = candle_range(&query(
            "5m",
            Some(TIME_NS_MAX - 1),
            Some(TIME_NS_MAX),
            Some(1000),
        ));
        assert_eq!(
            edge.unwrap(),
            (Interval::M5, TIME_NS_MAX - 1, TIME_NS_MAX, 1000)
        );
    }

    #[test]
    fn every_reference_refusal_has_its_own_code() {
        let errors = [
            ReferenceError::UnknownMarket("x".into()),
            ReferenceError::InvalidCode("x".into()),
            ReferenceError::InvalidIsin("x".into()),
            ReferenceError::InvalidName {
                field: "Korean name",
                value: String::new(),
            },
            ReferenceError::InvalidLotSize(0),
            ReferenceError::InvalidTickRule("x".into()),
            ReferenceError::InvalidStatus("x".into()),
            ReferenceError::InvalidProvider("x".into()),
            ReferenceError::InvalidExternalCode("x".into()),
            ReferenceError::UnknownSymbol("x".into()),
        ];
        let codes: std::collections::BTreeSet<u16> =
            errors.iter().map(|e| reference_code(e).code()).collect();
        assert_eq!(codes.len(), errors.len());
        assert!(codes.iter().all(|c| (9030..=9039).contains(c)));
    }

    #[test]
    fn a_registration_is_validated_field_by_field() {
        let good = RegisterReferenceSymbol {
            code: "005930".into(),
            isin: "KR7005930003".into(),
            name_ko: "삼성전자".into(),
            name_en: "Samsung Electronics".into(),
            market: "KOSPI".into(),
            tick_rule: "krx".into(),
            lot_size: 1,
            status: "listed".into(),
        };
        assert_eq!(good.checked().unwrap().code.as_str(), "005930");
        let code = |f: &dyn Fn(&mut RegisterReferenceSymbol)| {
            let mut r = good.clone();
            f(&mut r);
            reference_code(&r.checked().unwrap_err()).code()
        };
        assert_eq!(code(&|r| r.code = "00-59".into()), 9031);
        assert_eq!(code(&|r| r.code = String::new()), 9031);
        assert_eq!(code(&|r| r.code = "A".repeat(13)), 9031);
        assert_eq!(code(&|r| r.isin = "KR7005930004".into()), 9032);
        assert_eq!(code(&|r| r.name_ko = String::new()), 9033);
        assert_eq!(code(&|r| r.name_en = "x".repeat(65)), 9033);
        assert_eq!(code(&|r| r.market = "NYSE".into()), 9030);
        assert_eq!(code(&|r| r.tick_rule = "fixed:0".into()), 9035);
        assert_eq!(code(&|r| r.lot_size = 0), 9034);
        assert_eq!(code(&|r| r.lot_size = -1), 9034);
        assert_eq!(code(&|r| r.lot_size = i64::MAX), 9034);
        assert_eq!(code(&|r| r.status = "halted".into()), 9036);
    }
}
