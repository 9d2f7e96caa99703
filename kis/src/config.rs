//! The adapter's configuration: hosts, credentials, symbols and every limit.
//!
//! **Invariants**: credentials are [`Secret`]s (redacted in `Debug`); `validate` refuses a
//! configuration with more subscriptions than one session may hold.

use crate::breaker::BreakerConfig;
use crate::error::KisError;
use crate::frame::ShortCode;
use crate::secret::Secret;
use std::path::PathBuf;
use std::time::Duration;

/// KIS's REST host for mock trading (the real-trading host is
/// `https://openapi.koreainvestment.com:9443`).
pub const MOCK_REST_HOST: &str = "https://openapivts.koreainvestment.com:29443";
/// KIS's WebSocket host for mock trading (real trading: port 21000).
pub const MOCK_WS_URL: &str = "ws://ops.koreainvestment.com:31000/tryitout";
/// Subscriptions (tr_id x symbol) one WebSocket session may hold (KIS allows about 40).
pub const SUBSCRIPTIONS_PER_SESSION_MAX: usize = 40;

/// The environment variables the credentials are read from.
pub const ENV_APP_KEY: &str = "KUKU_KIS_APP_KEY";
pub const ENV_APP_SECRET: &str = "KUKU_KIS_APP_SECRET";

/// Deadlines, retries and thresholds.
#[derive(Clone, Debug)]
pub struct KisLimits {
    /// Deadline of one REST call (connect + answer).
    pub request_timeout: Duration,
    /// Deadline of the WebSocket connect and handshake.
    pub connect_timeout: Duration,
    /// Attempts of one REST call (the first one included) before it fails.
    pub attempts_max: u32,
    /// Backoff between retries and reconnects: first ceiling and largest ceiling.
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    /// A token is renewed this long before it expires.
    pub token_refresh_margin: Duration,
    /// Shortest time between two token issues (KIS: about one a minute).
    pub token_issue_interval_min: Duration,
    /// A WebSocket with no frame at all (not even PINGPONG) for this long is dropped and
    /// reconnected.
    pub silence_timeout: Duration,
    /// A symbol with no quote for this long gets its price from the REST fallback.
    pub fallback_after: Duration,
    /// A symbol with no book or trade from the stream for this long is stale (a REST
    /// fallback price does not count: it is a last price, not a quote).
    pub stale_after: Duration,
    /// Largest WebSocket text frame accepted.
    pub frame_bytes_max: usize,
    /// Events waiting for the consumer; further events are dropped and counted.
    pub events_queued_max: usize,
    pub rest_breaker: BreakerConfig,
    pub ws_breaker: BreakerConfig,
}

impl Default for KisLimits {
    fn default() -> KisLimits {
        KisLimits {
            request_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(5),
            attempts_max: 3,
            backoff_base: Duration::from_millis(200),
            backoff_max: Duration::from_secs(30),
            token_refresh_margin: Duration::from_secs(30 * 60),
            token_issue_interval_min: Duration::from_secs(61),
            silence_timeout: Duration::from_secs(30),
            fallback_after: Duration::from_secs(10),
            stale_after: Duration::from_secs(30),
            frame_bytes_max: 64 * 1024,
            events_queued_max: 65_536,
            rest_breaker: BreakerConfig::default(),
            ws_breaker: BreakerConfig::default(),
        }
    }
}

/// Everything the adapter needs.
#[derive(Clone, Debug)]
pub struct KisConfig {
    /// `https://host[:port]` of the REST API ([`MOCK_REST_HOST`], or the real-trading
    /// host); `http://host[:port]` for a plain test server.
    pub rest_base: String,
    /// A PEM file of extra trust anchors for the REST host (a private CA, a test server),
    /// added to Mozilla's roots.
    pub rest_ca_file: Option<PathBuf>,
    /// `ws://host:port/path` of the WebSocket.
    pub ws_url: String,
    pub app_key: Secret,
    pub app_secret: Secret,
    /// Where the access token is cached (mode 0600).
    pub token_cache: PathBuf,
    pub symbols: Vec<ShortCode>,
    pub limits: KisLimits,
}

impl KisConfig {
    /// Credentials from `KUKU_KIS_APP_KEY` / `KUKU_KIS_APP_SECRET`.
    pub fn credentials_from_env() -> Result<(Secret, Secret), KisError> {
        let read = |name: &str| {
            std::env::var(name)
                .ok()
                .filter(|v| !v.is_empty())
                .map(Secret::new)
                .ok_or_else(|| KisError::Config(format!("{name} is not set")))
        };
        Ok((read(ENV_APP_KEY)?, read(ENV_APP_SECRET)?))
    }

    /// Subscriptions this configuration needs: a trade and a book stream per symbol.
    pub fn subscriptions(&self) -> usize {
        self.symbols.len() * 2
    }

    pub fn validate(&self) -> Result<(), KisError> {
        if self.symbols.is_empty() {
            return Err(KisError::Config("no symbols to subscribe to".into()));
        }
        if self.subscriptions() > SUBSCRIPTIONS_PER_SESSION_MAX {
            return Err(KisError::Config(format!(
                "{} symbols need {} subscriptions; one KIS session holds {}",
                self.symbols.len(),
                self.subscriptions(),
                SUBSCRIPTIONS_PER_SESSION_MAX
            )));
        }
        if self.app_key.is_empty() || self.app_secret.is_empty() {
            return Err(KisError::Config(
                "the app key and secret must be set".into(),
            ));
        }
        if !self.ws_url.starts_with("ws://") {
            return Err(KisError::Config(format!(
                "WebSocket URL {:?} must be ws://",
                self.ws_url
            )));
        }
        crate::http::BaseUrl::parse(&self.rest_base)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(symbols: usize) -> KisConfig {
        KisConfig {
            rest_base: "http://127.0.0.1:1".into(),
            rest_ca_file: None,
            ws_url: "ws://127.0.0.1:1/tryitout".into(),
            app_key: Secret::new("key-value"),
            app_secret: Secret::new("secret-value"),
            token_cache: PathBuf::from("token.json"),
            symbols: (0..symbols)
                .map(|i| ShortCode::parse(&format!("{i:06}")).expect("code"))
                .collect(),
            limits: KisLimits::default(),
        }
    }

    #[test]
    fn twenty_symbols_fit_one_session_and_twenty_one_do_not() {
        assert!(config(20).validate().is_ok());
        let err = config(21).validate().unwrap_err().to_string();
        assert!(err.contains("42 subscriptions"), "{err}");
    }

    #[test]
    fn debug_output_never_contains_the_credentials() {
        let text = format!("{:?}", config(1));
        assert!(
            !text.contains("key-value") && !text.contains("secret-value"),
            "{text}"
        );
    }
}
