//! A small HTTP/1.1 client over hyper for the KIS REST calls, plain or over TLS: one
//! connection per call, a deadline over connect + TLS handshake + request + body, and a body
//! size limit.
//!
//! TLS is rustls with the `ring` provider. The trust roots are Mozilla's (the `webpki-roots`
//! crate), plus the certificates of an optional PEM file (`rest_ca_file`, for a private CA or
//! a test server). The server name checked against the certificate, and sent as SNI, is the
//! host of the base URL. Certificate verification cannot be turned off.
//!
//! **Invariants**: a call never outlives its deadline; a body larger than `body_bytes_max`
//! is an error, never buffered whole; an `https://` call never sends a byte of the request
//! before the server's certificate chain has been verified for the base host.
//!
//! **Performance**: the TLS client configuration (root store included) is built once per
//! [`Endpoint`]; every call pays a TCP connect and a TLS handshake (a resumed one after the
//! first, from rustls's in-memory session cache shared by the endpoint's calls).
//!
//! **Known limitations**: a connection is not reused between calls (the adapter calls REST a
//! few times a minute). No client certificates. IPv6 literal hosts (`https://[::1]:443`) are
//! not accepted; a host name resolving to IPv6 is. The WebSocket side is `ws://` only (KIS's
//! market-data WebSocket hosts are plain `ws://`).

use crate::error::KisError;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::Request;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};

/// Largest response body read (KIS answers are a few kilobytes).
pub const BODY_BYTES_MAX: usize = 1 << 20;
/// Largest extra CA file read (a bundle of a few hundred certificates fits).
pub const CA_FILE_BYTES_MAX: u64 = 1 << 20;

/// The scheme of a REST base.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scheme {
    Http,
    Https,
}

impl Scheme {
    pub fn default_port(self) -> u16 {
        match self {
            Scheme::Http => 80,
            Scheme::Https => 443,
        }
    }
}

/// A parsed `http://host[:port]` or `https://host[:port]` base.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BaseUrl {
    pub scheme: Scheme,
    pub host: String,
    pub port: u16,
}

impl BaseUrl {
    pub fn parse(url: &str) -> Result<BaseUrl, KisError> {
        let (scheme, rest) = if let Some(rest) = url.strip_prefix("https://") {
            (Scheme::Https, rest)
        } else if let Some(rest) = url.strip_prefix("http://") {
            (Scheme::Http, rest)
        } else {
            return Err(KisError::Config(format!(
                "REST base {url:?} must be https://host[:port] or http://host[:port]"
            )));
        };
        let rest = rest.trim_end_matches('/');
        let (host, port) = match rest.rsplit_once(':') {
            Some((h, p)) => (
                h,
                p.parse::<u16>()
                    .ok()
                    .filter(|p| *p != 0)
                    .ok_or_else(|| KisError::Config(format!("REST base {url:?}: bad port")))?,
            ),
            None => (rest, scheme.default_port()),
        };
        if host.is_empty() || host.contains(['/', '@', '?', '#', '[', ']', ' ']) {
            return Err(KisError::Config(format!("REST base {url:?}: bad host")));
        }
        Ok(BaseUrl {
            scheme,
            host: host.to_string(),
            port,
        })
    }
}

/// Where calls go: the base and, for `https://`, the TLS client set up for it.
#[derive(Clone)]
pub struct Endpoint {
    base: BaseUrl,
    tls: Option<(tokio_rustls::TlsConnector, ServerName<'static>)>,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("base", &self.base)
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

impl Endpoint {
    /// An endpoint for `base`; `ca_file` adds the certificates of a PEM file to the trust
    /// roots (refused with an `http://` base, where it would silently do nothing).
    pub fn new(base: BaseUrl, ca_file: Option<&Path>) -> Result<Endpoint, KisError> {
        let tls = match base.scheme {
            Scheme::Http => {
                if let Some(path) = ca_file {
                    return Err(KisError::Config(format!(
                        "a REST CA file ({}) is set but the REST base http://{}:{} does not use TLS",
                        path.display(),
                        base.host,
                        base.port
                    )));
                }
                None
            }
            Scheme::Https => {
                let name = ServerName::try_from(base.host.clone()).map_err(|e| {
                    KisError::Config(format!(
                        "REST base host {:?} is not a TLS server name: {e}",
                        base.host
                    ))
                })?;
                Some((tls_connector(ca_file)?, name))
            }
        };
        Ok(Endpoint { base, tls })
    }

    pub fn base(&self) -> &BaseUrl {
        &self.base
    }
}

/// Mozilla's roots plus every certificate of `ca_file`.
fn tls_connector(ca_file: Option<&Path>) -> Result<tokio_rustls::TlsConnector, KisError> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = ca_file {
        for cert in read_ca_file(path)? {
            roots.add(cert).map_err(|e| {
                KisError::Config(format!(
                    "REST CA file {}: a certificate is not a usable trust anchor: {e}",
                    path.display()
                ))
            })?;
        }
    }
    let mut config = rustls::ClientConfig::builder_with_provider(ring_provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| KisError::Config(format!("TLS set-up: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

/// rustls's `ring` provider. rustls deprecates it because it lacks the post-quantum key
/// exchange that the `aws-lc-rs` provider has; `aws-lc-rs` needs cmake and a C toolchain at
/// build time, which the node's builds do not require. The classical X25519/ECDHE groups and
/// certificate verification are unaffected.
#[allow(deprecated)]
pub fn ring_provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The certificates of a PEM file: at least one, the file at most [`CA_FILE_BYTES_MAX`].
fn read_ca_file(path: &Path) -> Result<Vec<CertificateDer<'static>>, KisError> {
    let fail = |what: String| KisError::Config(format!("REST CA file {}: {what}", path.display()));
    let len = std::fs::metadata(path)
        .map_err(|e| fail(e.to_string()))?
        .len();
    if len > CA_FILE_BYTES_MAX {
        return Err(fail(format!(
            "{len} bytes, more than the {CA_FILE_BYTES_MAX} read"
        )));
    }
    let pem = std::fs::read(path).map_err(|e| fail(e.to_string()))?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| fail(format!("not a PEM certificate bundle: {e}")))?;
    if certs.is_empty() {
        return Err(fail("no CERTIFICATE block".into()));
    }
    Ok(certs)
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

/// Sends `call` to `endpoint` within `timeout` (connect, TLS handshake, request and body).
pub async fn send(
    endpoint: &Endpoint,
    call: Call<'_>,
    timeout: Duration,
) -> Result<Response, KisError> {
    let name = call.name;
    match tokio::time::timeout(timeout, send_inner(endpoint, call)).await {
        Ok(result) => result,
        Err(_) => Err(KisError::Timeout {
            call: name,
            timeout_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
        }),
    }
}

async fn send_inner(endpoint: &Endpoint, call: Call<'_>) -> Result<Response, KisError> {
    let base = &endpoint.base;
    let stream = tokio::net::TcpStream::connect((base.host.as_str(), base.port))
        .await
        .map_err(|e| KisError::Transport {
            call: call.name,
            message: e.to_string(),
        })?;
    match &endpoint.tls {
        None => exchange(base, stream, call).await,
        Some((connector, name)) => {
            let stream = connector
                .connect(name.clone(), stream)
                .await
                .map_err(|e| handshake_error(call.name, base, e))?;
            exchange(base, stream, call).await
        }
    }
}

/// A failed handshake: a certificate the roots do not vouch for (or not for this host) is a
/// [`KisError::Certificate`], which repeats until the configuration changes; anything else
/// (a reset, a protocol error) is a transient transport error.
fn handshake_error(call: &'static str, base: &BaseUrl, e: std::io::Error) -> KisError {
    let tls = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>());
    match tls {
        Some(rustls::Error::InvalidCertificate(problem)) => KisError::Certificate {
            call,
            host: format!("{}:{}", base.host, base.port),
            message: match problem {
                rustls::CertificateError::UnknownIssuer => "unknown issuer: the chain leads to \
                    none of the trust roots (Mozilla's, or rest_ca_file)"
                    .to_string(),
                other => other.to_string(),
            },
        },
        _ => KisError::Transport {
            call,
            message: format!("TLS handshake with {}:{}: {e}", base.host, base.port),
        },
    }
}

async fn exchange<S>(base: &BaseUrl, stream: S, call: Call<'_>) -> Result<Response, KisError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let transport = |e: &dyn std::fmt::Display| KisError::Transport {
        call: call.name,
        message: e.to_string(),
    };
    let io = hyper_util::rt::TokioIo::new(stream);
    let (mut sender, connection) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| transport(&e))?;
    let driver = tokio::spawn(connection);
    let host = if base.port == base.scheme.default_port() {
        base.host.clone()
    } else {
        format!("{}:{}", base.host, base.port)
    };
    let mut request = Request::builder()
        .method(call.method)
        .uri(call.path_and_query)
        .header("host", host)
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
    fn https_and_http_bases_parse_with_their_default_ports() {
        assert_eq!(
            BaseUrl::parse("https://openapivts.koreainvestment.com:29443/").expect("ok"),
            BaseUrl {
                scheme: Scheme::Https,
                host: "openapivts.koreainvestment.com".into(),
                port: 29443
            }
        );
        let https = BaseUrl::parse("https://openapi.koreainvestment.com").expect("ok");
        assert_eq!((https.scheme, https.port), (Scheme::Https, 443));
        let http = BaseUrl::parse("http://127.0.0.1").expect("ok");
        assert_eq!((http.scheme, http.port), (Scheme::Http, 80));
        assert_eq!(
            BaseUrl::parse("http://127.0.0.1:65535").expect("ok").port,
            65535
        );
    }

    #[test]
    fn malformed_bases_are_refused_with_a_clear_error() {
        for bad in [
            "ftp://host",
            "openapi.koreainvestment.com:9443",
            "https://host:99999",
            "https://host:0",
            "https://host:port",
            "https://:443",
            "https://",
            "http://user@host:80",
            "https://host/path",
        ] {
            let err = BaseUrl::parse(bad).expect_err(bad).to_string();
            assert!(err.contains("REST base"), "{bad}: {err}");
        }
    }

    #[test]
    fn a_ca_file_with_a_plain_http_base_is_refused() {
        let base = BaseUrl::parse("http://127.0.0.1:1").expect("base");
        let err = Endpoint::new(base, Some(Path::new("ca.pem")))
            .expect_err("refused")
            .to_string();
        assert!(err.contains("does not use TLS"), "{err}");
    }

    #[test]
    fn a_missing_empty_or_oversized_ca_file_is_a_configuration_error() {
        let dir = tempfile::tempdir().expect("dir");
        let base = || BaseUrl::parse("https://localhost:1").expect("base");
        let missing = dir.path().join("missing.pem");
        let err = Endpoint::new(base(), Some(&missing)).expect_err("missing");
        assert!(matches!(err, KisError::Config(_)), "{err}");

        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "no certificate here\n").expect("write");
        let err = Endpoint::new(base(), Some(&empty))
            .expect_err("empty")
            .to_string();
        assert!(err.contains("no CERTIFICATE block"), "{err}");

        let big = dir.path().join("big.pem");
        let len = usize::try_from(CA_FILE_BYTES_MAX).expect("fits") + 1;
        std::fs::write(&big, vec![b'a'; len]).expect("write");
        let err = Endpoint::new(base(), Some(&big))
            .expect_err("big")
            .to_string();
        assert!(err.contains("more than"), "{err}");
    }

    #[test]
    fn an_https_endpoint_without_a_ca_file_uses_the_public_roots() {
        let endpoint = Endpoint::new(
            BaseUrl::parse("https://openapi.koreainvestment.com:9443").expect("base"),
            None,
        )
        .expect("endpoint");
        assert!(endpoint.tls.is_some());
        assert_eq!(endpoint.base().port, 9443);
    }
}
