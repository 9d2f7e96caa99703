//! A small HTTP/1.1 client over hyper for the KIS REST calls: one connection per call, a
//! deadline over connect + request + body, and a body size limit.
//!
//! **Invariants**: a call never outlives its deadline; a body larger than `body_bytes_max`
//! is an error, never buffered whole.
//!
//! **Known limitations**: plain `http://` only. The KIS hosts are `https://`; a node talks to
//! them through a local TLS-terminating proxy (docs/market-data.md, "KIS"). A connection is
//! not reused between calls (the adapter calls REST a few times a minute).

use crate::error::KisError;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::Request;
use std::time::Duration;

/// Largest response body read (KIS answers are a few kilobytes).
pub const BODY_BYTES_MAX: usize = 1 << 20;

/// A parsed `http://host:port` base.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BaseUrl {
    pub host: String,
    pub port: u16,
}

impl BaseUrl {
    pub fn parse(url: &str) -> Result<BaseUrl, KisError> {
        let rest = url.strip_prefix("http://").ok_or_else(|| {
            KisError::Config(format!(
                "REST base {url:?} must be http://host:port (use a local TLS proxy for the https hosts)"
            ))
        })?;
        let rest = rest.trim_end_matches('/');
        let (host, port) = match rest.rsplit_once(':') {
            Some((h, p)) => (
                h,
                p.parse::<u16>()
                    .map_err(|_| KisError::Config(format!("REST base {url:?}: bad port")))?,
            ),
            None => (rest, 80),
        };
        if host.is_empty() || host.contains('/') {
            return Err(KisError::Config(format!("REST base {url:?}: bad host")));
        }
        Ok(BaseUrl {
            host: host.to_string(),
            port,
        })
    }
}

/// The answer to a call.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub body: Bytes,
}

/// One request: method, path with query, headers, JSON body.
pub struct Call<'a> {
    pub name: &'static str,
    pub method: &'static str,
    pub path_and_query: &'a str,
    pub headers: &'a [(&'a str, &'a str)],
    pub body: Option<String>,
}

/// Sends `call` to `base` within `timeout`.
pub async fn send(base: &BaseUrl, call: Call<'_>, timeout: Duration) -> Result<Response, KisError> {
    let name = call.name;
    match tokio::time::timeout(timeout, send_inner(base, call)).await {
        Ok(result) => result,
        Err(_) => Err(KisError::Timeout {
            call: name,
            timeout_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
        }),
    }
}

async fn send_inner(base: &BaseUrl, call: Call<'_>) -> Result<Response, KisError> {
    let transport = |e: &dyn std::fmt::Display| KisError::Transport {
        call: call.name,
        message: e.to_string(),
    };
    let stream = tokio::net::TcpStream::connect((base.host.as_str(), base.port))
        .await
        .map_err(|e| transport(&e))?;
    let io = hyper_util::rt::TokioIo::new(stream);
    let (mut sender, connection) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| transport(&e))?;
    let driver = tokio::spawn(connection);
    let mut request = Request::builder()
        .method(call.method)
        .uri(call.path_and_query)
        .header("host", format!("{}:{}", base.host, base.port))
        .header("content-type", "application/json; charset=utf-8")
        .header("accept", "application/json");
    for (k, v) in call.headers {
        request = request.header(*k, *v);
    }
    let body = Full::new(Bytes::from(call.body.unwrap_or_default()));
    let request = request.body(body).map_err(|e| transport(&e))?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| transport(&e))?;
    let status = response.status().as_u16();
    let body = Limited::new(response.into_body(), BODY_BYTES_MAX)
        .collect()
        .await
        .map_err(|e| transport(&e))?
        .to_bytes();
    driver.abort();
    Ok(Response { status, body })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls_parse_and_https_is_refused_with_a_clear_error() {
        assert_eq!(
            BaseUrl::parse("http://127.0.0.1:29443/").expect("ok"),
            BaseUrl {
                host: "127.0.0.1".into(),
                port: 29443
            }
        );
        assert_eq!(BaseUrl::parse("http://proxy").expect("ok").port, 80);
        let err = BaseUrl::parse("https://openapivts.koreainvestment.com:29443").unwrap_err();
        assert!(err.to_string().contains("TLS proxy"));
        assert!(BaseUrl::parse("http://h:99999").is_err());
        assert!(BaseUrl::parse("http://:80").is_err());
    }
}
