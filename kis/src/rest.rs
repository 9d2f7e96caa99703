//! The KIS REST calls: the OAuth2 access token (`POST /oauth2/tokenP`), the WebSocket
//! approval key (`POST /oauth2/Approval`) and the current-price inquiry (tr_id
//! FHKST01010100, `GET /uapi/domestic-stock/v1/quotations/inquire-price`), the fallback for a
//! symbol whose stream is silent.
//!
//! Shapes, from KIS's sample repository koreainvestment/open-trading-api:
//! `examples_llm/kis_auth.py` (`auth`: body {grant_type, appkey, appsecret}, answer
//! access_token / access_token_token_expired / expires_in; `auth_ws`: body {grant_type,
//! appkey, secretkey}, answer approval_key; `_url_fetch`: headers authorization "Bearer ...",
//! appkey, appsecret, tr_id, custtype "P"), and
//! `examples_llm/domestic_stock/inquire_price/inquire_price.py` (FID_COND_MRKT_DIV_CODE "J",
//! FID_INPUT_ISCD, output.stck_prpr). An expired token is answered with msg_cd EGW00123
//! (EGW00121 for an invalid one).
//!
//! **Invariants**: no credential or token is ever formatted into an error or a log line.

use crate::error::KisError;
use crate::frame::ShortCode;
use crate::http::{self, Call, Endpoint};
use crate::secret::Secret;
use kuku_engine::Price;
use serde::Deserialize;
use std::time::Duration;

pub const PATH_TOKEN: &str = "/oauth2/tokenP";
pub const PATH_APPROVAL: &str = "/oauth2/Approval";
pub const PATH_INQUIRE_PRICE: &str = "/uapi/domestic-stock/v1/quotations/inquire-price";
pub const TR_INQUIRE_PRICE: &str = "FHKST01010100";
/// msg_cd values that mean "issue a new token".
pub const TOKEN_INVALID_CODES: [&str; 2] = ["EGW00121", "EGW00123"];

/// An issued access token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IssuedToken {
    pub value: Secret,
    /// Seconds the token is valid from its issue.
    pub expires_in_s: u64,
}

/// The REST side of KIS.
#[derive(Clone, Debug)]
pub struct RestClient {
    endpoint: Endpoint,
    app_key: Secret,
    app_secret: Secret,
    timeout: Duration,
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
    expires_in: u64,
}

#[derive(Deserialize)]
struct ApprovalAnswer {
    approval_key: String,
}

#[derive(Deserialize)]
struct BusinessAnswer {
    rt_cd: Option<String>,
    msg_cd: Option<String>,
    msg1: Option<String>,
    output: Option<PriceOutput>,
}

#[derive(Deserialize)]
struct PriceOutput {
    stck_prpr: String,
}

fn malformed(call: &'static str, e: impl std::fmt::Display) -> KisError {
    KisError::Malformed {
        call,
        message: e.to_string(),
    }
}

/// The first 200 characters of a body, for an error message (bodies carry no credentials).
fn snippet(body: &[u8]) -> String {
    String::from_utf8_lossy(body).chars().take(200).collect()
}

impl RestClient {
    pub fn new(
        endpoint: Endpoint,
        app_key: Secret,
        app_secret: Secret,
        timeout: Duration,
    ) -> RestClient {
        RestClient {
            endpoint,
            app_key,
            app_secret,
            timeout,
        }
    }

    async fn post_json(
        &self,
        name: &'static str,
        path: &str,
        body: serde_json::Value,
    ) -> Result<bytes::Bytes, KisError> {
        let call = Call {
            name,
            method: "POST",
            path_and_query: path,
            headers: &[],
            body: Some(body.to_string()),
        };
        let response = http::send(&self.endpoint, call, self.timeout).await?;
        if response.status != 200 {
            return Err(KisError::Http {
                call: name,
                status: response.status,
                message: snippet(&response.body),
            });
        }
        Ok(response.body)
    }

    /// Issues a new access token (KIS allows about one a minute; the caller rate-limits).
    pub async fn issue_token(&self) -> Result<IssuedToken, KisError> {
        let body = serde_json::json!({
            "grant_type": "client_credentials",
            "appkey": self.app_key.expose(),
            "appsecret": self.app_secret.expose(),
        });
        let bytes = self.post_json("token", PATH_TOKEN, body).await?;
        let answer: TokenAnswer =
            serde_json::from_slice(&bytes).map_err(|e| malformed("token", e))?;
        if answer.access_token.is_empty() || answer.expires_in == 0 {
            return Err(malformed("token", "empty token or zero lifetime"));
        }
        Ok(IssuedToken {
            value: Secret::new(answer.access_token),
            expires_in_s: answer.expires_in,
        })
    }

    /// The approval key the WebSocket subscribe requests carry.
    pub async fn approval_key(&self) -> Result<Secret, KisError> {
        let body = serde_json::json!({
            "grant_type": "client_credentials",
            "appkey": self.app_key.expose(),
            "secretkey": self.app_secret.expose(),
        });
        let bytes = self.post_json("approval", PATH_APPROVAL, body).await?;
        let answer: ApprovalAnswer =
            serde_json::from_slice(&bytes).map_err(|e| malformed("approval", e))?;
        if answer.approval_key.is_empty() {
            return Err(malformed("approval", "empty approval_key"));
        }
        Ok(Secret::new(answer.approval_key))
    }

    /// The last price of `code` (FHKST01010100).
    pub async fn current_price(&self, token: &Secret, code: ShortCode) -> Result<Price, KisError> {
        const CALL: &str = "inquire-price";
        let path = format!("{PATH_INQUIRE_PRICE}?FID_COND_MRKT_DIV_CODE=J&FID_INPUT_ISCD={code}");
        let bearer = format!("Bearer {}", token.expose());
        let headers = [
            ("authorization", bearer.as_str()),
            ("appkey", self.app_key.expose()),
            ("appsecret", self.app_secret.expose()),
            ("tr_id", TR_INQUIRE_PRICE),
            ("custtype", "P"),
        ];
        let call = Call {
            name: CALL,
            method: "GET",
            path_and_query: &path,
            headers: &headers,
            body: None,
        };
        let response = http::send(&self.endpoint, call, self.timeout).await?;
        // KIS answers an expired token with a business body (on 500 as well as 200).
        let answer: Result<BusinessAnswer, _> = serde_json::from_slice(&response.body);
        if let Ok(answer) = &answer
            && let Some(code) = answer
                .msg_cd
                .as_deref()
                .filter(|c| TOKEN_INVALID_CODES.contains(c))
        {
            return Err(KisError::TokenExpired {
                call: CALL,
                msg_cd: code.to_string(),
            });
        }
        if response.status != 200 {
            return Err(KisError::Http {
                call: CALL,
                status: response.status,
                message: snippet(&response.body),
            });
        }
        let answer = answer.map_err(|e| malformed(CALL, e))?;
        if answer.rt_cd.as_deref() != Some("0") {
            return Err(KisError::Rejected {
                call: CALL,
                rt_cd: answer.rt_cd.unwrap_or_default(),
                msg_cd: answer.msg_cd.unwrap_or_default(),
                msg: answer.msg1.unwrap_or_default(),
            });
        }
        let output = answer.output.ok_or_else(|| malformed(CALL, "no output"))?;
        let price = output.stck_prpr.trim();
        match price.parse::<i64>() {
            Ok(p)
                if p > 0
                    && p <= crate::frame::PRICE_KRW_MAX
                    && price.bytes().all(|b| b.is_ascii_digit()) =>
            {
                Ok(Price(p))
            }
            _ => Err(malformed(CALL, "stck_prpr is not a positive price")),
        }
    }
}
