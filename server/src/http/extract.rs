//! Request extractors of the HTTP door, each refusing with a problem (never axum's plain
//! text): the bearer token of a trading account ([`Trader`], which also takes a token of the
//! account's request budget), the admin token ([`Admin`]), JSON bodies ([`Body`]), path and
//! query parameters ([`ApiPath`], [`ApiQuery`]) and the Idempotency-Key ([`idempotency_key`]).
//!
//! **Invariants**: a trading request is authenticated before its budget is charged and
//! charged before its body is read; an Idempotency-Key maps to one engine key, the same
//! for the same string on every request and every door (docs/api.md, "Idempotency").

use super::api::AppState;
use super::jwt::TokenRefusal;
use super::problem::ApiError;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::HeaderMap;
use axum::http::request::Parts;
use kuku_engine::{AccountId, ClientOrderId};
use kuku_gateway::auth::{decode_hex32, tokens_equal};
use kuku_gateway::protocol::GatewayCode;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};
use std::time::Instant;

/// The Idempotency-Key header.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";
/// The longest Idempotency-Key accepted.
pub const IDEMPOTENCY_KEY_LEN_MAX: usize = 64;

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
}

fn unauthenticated(why: &str) -> ApiError {
    ApiError::gateway(GatewayCode::Unauthenticated).with_detail(why.to_owned())
}

/// A trading account, authenticated by its bearer JWT, that had a request's budget left.
#[derive(Clone, Copy, Debug)]
pub struct Trader(pub AccountId);

impl FromRequestParts<AppState> for Trader {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let token = bearer(&parts.headers).ok_or_else(|| {
            unauthenticated("an Authorization: Bearer <access token> header is needed")
        })?;
        let account = state.jwt.verify(token).map_err(|e| match e {
            TokenRefusal::Expired => unauthenticated("the access token has expired: get a new one"),
            TokenRefusal::Invalid => unauthenticated("the access token is not valid"),
        })?;
        if !state.rate_limits.try_take(account, Instant::now()) {
            // Retry-After counts whole seconds: a bucket that refills at least once a second
            // has a token again within one.
            let rate = u64::from(state.rate_limits.rate_per_s());
            let retry_after_s = if rate == 0 { 60 } else { 1 };
            return Err(ApiError::gateway(GatewayCode::RateLimited).with_retry_after(retry_after_s));
        }
        Ok(Trader(account))
    }
}

/// The operator, authenticated by the admin token (64 hex digits) as a bearer token.
#[derive(Clone, Copy, Debug)]
pub struct Admin;

impl FromRequestParts<AppState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let token = bearer(&parts.headers).ok_or_else(|| {
            unauthenticated("an Authorization: Bearer <admin token> header is needed")
        })?;
        match decode_hex32(token) {
            Ok(t) if tokens_equal(&t, &state.admin_token) => Ok(Admin),
            // Authenticated, but as an account: not permitted here.
            _ if state.jwt.verify(token).is_ok() => {
                Err(ApiError::gateway(GatewayCode::NotPermitted)
                    .with_detail("an account's access token cannot use the admin endpoints"))
            }
            _ => Err(ApiError::gateway(GatewayCode::InvalidToken)
                .with_detail("the admin endpoints need the admin token")),
        }
    }
}

/// A JSON body of type `T`.
pub struct Body<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|e| match e {
                BytesRejection::FailedToBufferBody(_) => {
                    ApiError::gateway(GatewayCode::BodyTooLarge)
                }
                other => {
                    ApiError::gateway(GatewayCode::InvalidRequest).with_detail(other.body_text())
                }
            })?;
        serde_json::from_slice(&bytes).map(Body).map_err(|e| {
            ApiError::gateway(GatewayCode::InvalidRequest)
                .with_detail(format!("the body is not valid for this endpoint: {e}"))
        })
    }
}

/// Path parameters.
pub struct ApiPath<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Path::<T>::from_request_parts(parts, state)
            .await
            .map(|Path(t)| ApiPath(t))
            .map_err(|e: PathRejection| {
                ApiError::gateway(GatewayCode::InvalidRequest).with_detail(e.body_text())
            })
    }
}

/// Query-string parameters.
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(t)| ApiQuery(t))
            .map_err(|e: QueryRejection| {
                ApiError::gateway(GatewayCode::InvalidRequest).with_detail(e.body_text())
            })
    }
}

/// The engine key of a request's Idempotency-Key (docs/api.md, "Idempotency"): a decimal
/// integer is the engine key itself (the `client_order_id` / `request_id` a TCP client would
/// send, so both doors share keys); any other string is the first 8 bytes of its SHA-256,
/// top bit cleared (the top bit marks keys reserved for the gateway).
pub fn idempotency_key(headers: &HeaderMap) -> Result<ClientOrderId, ApiError> {
    let value = headers
        .get(IDEMPOTENCY_KEY)
        .ok_or_else(|| ApiError::gateway(GatewayCode::IdempotencyKeyMissing))?;
    let key = value
        .to_str()
        .ok()
        .filter(|k| {
            (1..=IDEMPOTENCY_KEY_LEN_MAX).contains(&k.len())
                && k.bytes().all(|b| b.is_ascii_graphic())
        })
        .ok_or_else(|| ApiError::gateway(GatewayCode::IdempotencyKeyInvalid))?;
    Ok(ClientOrderId(engine_key(key)))
}

/// See [`idempotency_key`].
pub fn engine_key(key: &str) -> u64 {
    if key.bytes().all(|b| b.is_ascii_digit())
        && let Ok(n) = key.parse::<u64>()
    {
        return n;
    }
    let digest = Sha256::digest(key.as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(first) & !kuku_gateway::protocol::RESERVED_KEY_BIT
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn with_key(k: &[u8]) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(IDEMPOTENCY_KEY, HeaderValue::from_bytes(k).unwrap());
        h
    }

    #[test]
    fn a_decimal_key_is_the_engine_key_and_others_hash_below_the_reserved_bit() {
        assert_eq!(
            idempotency_key(&with_key(b"42")).unwrap(),
            ClientOrderId(42)
        );
        let a = idempotency_key(&with_key(b"order-7f3a")).unwrap();
        assert_eq!(a, idempotency_key(&with_key(b"order-7f3a")).unwrap());
        assert_ne!(a, idempotency_key(&with_key(b"order-7f3b")).unwrap());
        assert_eq!(a.0 & kuku_gateway::protocol::RESERVED_KEY_BIT, 0);
        // Beyond u64: not a number, so hashed.
        let big = idempotency_key(&with_key(b"99999999999999999999999")).unwrap();
        assert_eq!(big.0 & kuku_gateway::protocol::RESERVED_KEY_BIT, 0);
    }

    #[test]
    fn a_missing_empty_long_or_non_ascii_key_is_refused() {
        let code = |h: &HeaderMap| idempotency_key(h).unwrap_err().code;
        assert_eq!(code(&HeaderMap::new()), 9021);
        assert_eq!(code(&with_key(b"")), 9022);
        assert_eq!(code(&with_key(&[b'a'; 65])), 9022);
        assert_eq!(code(&with_key(b"a b")), 9022);
        assert_eq!(code(&with_key("\u{e9}".as_bytes())), 9022);
    }
}
