//! Errors of the HTTP door as RFC 9457 problem details (`application/problem+json`), each
//! carrying the stable numbered code of docs/protocol.md in `code`: the engine's reject
//! codes pass through unchanged, the gateway's (9000-9099) too, so a client sees the same
//! code on either door.
//!
//! The HTTP status follows from the code alone ([`status_of`]); docs/api.md lists the table.
//!
//! **Invariants**: every error response has a problem body with `type`, `title`, `status`,
//! `detail` and `code`; a 429 or 503 has `Retry-After`.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use kuku_engine::RejectReason;
use kuku_gateway::protocol::{GatewayCode, code_name, describe_code};
use serde::Serialize;
use utoipa::ToSchema;

/// An RFC 9457 problem details object.
#[derive(Clone, Debug, Serialize, serde::Deserialize, PartialEq, Eq, ToSchema)]
pub struct Problem {
    /// `urn:kuku:code:<code>`.
    #[serde(rename = "type")]
    pub type_: String,
    /// The code's name, e.g. `InsufficientCash`.
    pub title: String,
    /// The HTTP status.
    pub status: u16,
    /// What happened, in words.
    pub detail: String,
    /// The stable code (docs/protocol.md).
    pub code: u16,
}

/// An error answer: a code, its status, an optional detail and Retry-After.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiError {
    pub code: u16,
    pub status: StatusCode,
    pub detail: Option<String>,
    pub retry_after_s: Option<u64>,
}

impl ApiError {
    /// The error for `code`, with the status the code maps to.
    pub fn code(code: u16) -> ApiError {
        ApiError {
            code,
            status: status_of(code),
            detail: None,
            retry_after_s: match GatewayCode::from_code(code) {
                Some(GatewayCode::Busy | GatewayCode::RateLimited) => Some(1),
                _ => None,
            },
        }
    }

    pub fn gateway(code: GatewayCode) -> ApiError {
        ApiError::code(code.code())
    }

    pub fn reject(reason: RejectReason) -> ApiError {
        ApiError::code(reason.code())
    }

    pub fn with_detail(mut self, detail: impl Into<String>) -> ApiError {
        self.detail = Some(detail.into());
        self
    }

    pub fn with_retry_after(mut self, seconds: u64) -> ApiError {
        self.retry_after_s = Some(seconds.max(1));
        self
    }

    pub fn problem(&self) -> Problem {
        Problem {
            type_: format!("urn:kuku:code:{}", self.code),
            title: code_name(self.code),
            status: self.status.as_u16(),
            detail: self
                .detail
                .clone()
                .unwrap_or_else(|| describe_code(self.code)),
            code: self.code,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::to_vec(&self.problem()).unwrap_or_default();
        let mut response = (self.status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if let Some(s) = self.retry_after_s {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        response
    }
}

/// The HTTP status of a code.
pub fn status_of(code: u16) -> StatusCode {
    use GatewayCode as G;
    use RejectReason as R;
    if let Some(g) = G::from_code(code) {
        return match g {
            G::Busy | G::NotPrimary | G::ShuttingDown | G::SessionsFull | G::HistoryUnavailable => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            G::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            G::InvalidToken | G::Unauthenticated => StatusCode::UNAUTHORIZED,
            G::NotPermitted => StatusCode::FORBIDDEN,
            G::NotFound | G::UnknownReferenceSymbol | G::UnknownMapping => StatusCode::NOT_FOUND,
            G::ReferenceUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            G::OutcomeUnknown => StatusCode::GATEWAY_TIMEOUT,
            G::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            _ => StatusCode::BAD_REQUEST,
        };
    }
    match R::from_code(code) {
        // The request itself is malformed: no value of the state could accept it.
        Some(R::OutOfRange | R::InvalidQty | R::InvalidPrice | R::InvalidAmount) => {
            StatusCode::BAD_REQUEST
        }
        Some(R::InvalidSymbolCode | R::InvalidTickRule | R::InvalidOwner) => {
            StatusCode::BAD_REQUEST
        }
        Some(R::UnknownOrder | R::UnknownAccount | R::UnknownTransaction) => StatusCode::NOT_FOUND,
        Some(R::DuplicateKey | R::ExternalRefReused | R::SymbolExists) => StatusCode::CONFLICT,
        Some(_) => StatusCode::UNPROCESSABLE_ENTITY,
        None => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_maps_to_a_client_or_availability_status() {
        for r in RejectReason::ALL {
            let s = status_of(r.code());
            assert!(s.is_client_error(), "{r:?} -> {s}");
        }
        for g in GatewayCode::ALL {
            let s = status_of(g.code());
            assert!(s.is_client_error() || s == 503 || s == 504, "{g:?} -> {s}");
        }
        assert_eq!(status_of(3002), StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(status_of(2011), StatusCode::CONFLICT);
        assert_eq!(status_of(9002), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(status_of(9001), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(status_of(9028), StatusCode::BAD_REQUEST);
        assert_eq!(status_of(9039), StatusCode::NOT_FOUND);
        assert_eq!(status_of(9041), StatusCode::SERVICE_UNAVAILABLE);
    }

    #[test]
    fn a_problem_names_its_code() {
        let p = ApiError::reject(RejectReason::InsufficientCash).problem();
        assert_eq!(p.type_, "urn:kuku:code:3002");
        assert_eq!(p.title, "InsufficientCash");
        assert_eq!((p.status, p.code), (422, 3002));
    }
}
