//! The adapter's errors, each one a caller can act on (retry, refresh the token, give up).

/// Why a KIS call failed.
#[derive(Debug, thiserror::Error)]
pub enum KisError {
    /// The configuration cannot work (a host that is not a URL, too many subscriptions).
    #[error("KIS configuration: {0}")]
    Config(String),
    /// The call did not answer within its deadline.
    #[error("KIS {call} timed out after {timeout_ms} ms")]
    Timeout { call: &'static str, timeout_ms: u64 },
    /// Connecting or talking to the host failed.
    #[error("KIS {call}: transport error: {message}")]
    Transport { call: &'static str, message: String },
    /// The server's TLS certificate is not trusted for the host (unknown issuer, wrong name,
    /// expired): it repeats until the roots or the host change.
    #[error("KIS {call}: TLS certificate of {host} refused: {message}")]
    Certificate {
        call: &'static str,
        host: String,
        message: String,
    },
    /// The server answered with an HTTP status that is not success.
    #[error("KIS {call}: HTTP {status}: {message}")]
    Http {
        call: &'static str,
        status: u16,
        message: String,
    },
    /// The access token is no longer valid (KIS msg_cd EGW00123 and its siblings): issue a new one.
    #[error("KIS {call}: the access token expired ({msg_cd})")]
    TokenExpired { call: &'static str, msg_cd: String },
    /// A new token was asked for sooner than KIS allows (about once a minute).
    #[error(
        "KIS token issue refused: the last token was issued {since_ms} ms ago (minimum {min_ms} ms)"
    )]
    TokenIssueTooSoon { since_ms: u64, min_ms: u64 },
    /// A business error (`rt_cd` other than "0").
    #[error("KIS {call}: rt_cd {rt_cd} {msg_cd}: {msg}")]
    Rejected {
        call: &'static str,
        rt_cd: String,
        msg_cd: String,
        msg: String,
    },
    /// The response body is not the documented shape.
    #[error("KIS {call}: malformed response: {message}")]
    Malformed { call: &'static str, message: String },
    /// The circuit breaker is open: the call was not attempted.
    #[error("KIS {call}: circuit breaker open")]
    BreakerOpen { call: &'static str },
    /// The token cache file cannot be read or written.
    #[error("KIS token cache {path}: {source}")]
    TokenCache {
        path: String,
        source: std::io::Error,
    },
}

impl KisError {
    /// Whether trying again later can succeed (network trouble, 5xx, timeouts), as opposed to
    /// a refusal that will repeat (bad credentials, a malformed configuration).
    pub fn is_transient(&self) -> bool {
        match self {
            KisError::Timeout { .. }
            | KisError::Transport { .. }
            | KisError::TokenExpired { .. }
            | KisError::TokenIssueTooSoon { .. }
            | KisError::BreakerOpen { .. }
            | KisError::Malformed { .. } => true,
            KisError::Http { status, .. } => *status >= 500 || *status == 429,
            KisError::Config(_)
            | KisError::Certificate { .. }
            | KisError::Rejected { .. }
            | KisError::TokenCache { .. } => false,
        }
    }
}
