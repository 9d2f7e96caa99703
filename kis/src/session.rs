//! The running adapter: a thread of its own with a single-threaded tokio runtime that keeps a
//! KIS WebSocket session subscribed to every configured symbol, reconnects and resubscribes
//! when it drops or falls silent, asks the REST fallback for symbols whose stream is quiet,
//! and hands decoded records to the consumer through a bounded queue.
//!
//! Every external call goes through a deadline, a circuit breaker (one for REST, one for the
//! WebSocket) and exponential backoff with jitter
//! (docs/adr/ADR-023-quote-sources-breaker-and-stale-quotes.md).
//!
//! **Invariants**: the consumer is never blocked (a full queue drops and counts); after every
//! (re)connect each symbol is subscribed again to both streams; a session counts as healthy
//! (breaker success) only once it has delivered a data frame, so a server that accepts
//! connections and then stays silent opens the breaker.
//!
//! **Performance**: one allocation per frame (the records vector is reused); REST calls happen
//! only for quiet symbols, at most once per `fallback_after` each.
//!
//! **Known limitations**: one WebSocket session (at most 20 symbols); encrypted streams are
//! not supported.

use crate::backoff::Backoff;
use crate::breaker::CircuitBreaker;
use crate::config::KisConfig;
use crate::error::KisError;
use crate::frame::{self, Inbound, Record, ShortCode, SubscribeKind};
use crate::http::{BaseUrl, Endpoint};
use crate::metrics::KisMetrics;
use crate::rest::RestClient;
use crate::secret::Secret;
use crate::token::{TokenManager, TokenSource};
use futures_util::{SinkExt, StreamExt};
use kuku_engine::Price;
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

/// What the adapter hands the consumer (by value, like [`Record`]).
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KisEvent {
    /// A decoded stream record (a trade or a ten-level book).
    Record(Record),
    /// The last price of a quiet symbol, from the REST fallback.
    FallbackPrice { code: ShortCode, price: Price },
    /// The WebSocket session is subscribed (again).
    Connected,
    /// The WebSocket session ended; a reconnect follows.
    Disconnected { reason: String },
}

/// State shared between the session task, the fallback task and the consumer.
struct Shared {
    config: KisConfig,
    metrics: Arc<KisMetrics>,
    events: SyncSender<KisEvent>,
    rest: RestClient,
    tokens: tokio::sync::Mutex<TokenManager>,
    rest_breaker: Mutex<CircuitBreaker>,
    ws_breaker: Mutex<CircuitBreaker>,
    last_quote: Mutex<BTreeMap<ShortCode, Instant>>,
}

/// The running adapter; dropping it stops the session.
pub struct KisAdapter {
    events: Receiver<KisEvent>,
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

fn unix_now_s() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl KisAdapter {
    /// Validates the configuration and starts the session thread.
    pub fn start(config: KisConfig) -> Result<KisAdapter, KisError> {
        config.validate()?;
        let limits = config.limits.clone();
        let rest = RestClient::new(
            Endpoint::new(
                BaseUrl::parse(&config.rest_base)?,
                config.rest_ca_file.as_deref(),
            )?,
            config.app_key.clone(),
            config.app_secret.clone(),
            limits.request_timeout,
        );
        let (tx, rx) = std::sync::mpsc::sync_channel(limits.events_queued_max);
        let shared = Arc::new(Shared {
            tokens: tokio::sync::Mutex::new(TokenManager::new(
                config.token_cache.clone(),
                limits.token_refresh_margin,
                limits.token_issue_interval_min,
            )),
            rest_breaker: Mutex::new(CircuitBreaker::new(limits.rest_breaker)),
            ws_breaker: Mutex::new(CircuitBreaker::new(limits.ws_breaker)),
            last_quote: Mutex::new(BTreeMap::new()),
            metrics: Arc::new(KisMetrics::default()),
            events: tx,
            rest,
            config,
        });
        let (stop, stop_rx) = watch::channel(false);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| KisError::Config(format!("cannot build the adapter's runtime: {e}")))?;
        let task_shared = shared.clone();
        let thread = std::thread::Builder::new()
            .name("kis-adapter".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let fallback =
                        tokio::spawn(fallback_loop(task_shared.clone(), stop_rx.clone()));
                    session_loop(task_shared, stop_rx).await;
                    fallback.abort();
                });
            })
            .map_err(|e| KisError::Config(format!("cannot start the adapter thread: {e}")))?;
        Ok(KisAdapter {
            events: rx,
            shared,
            stop,
            thread: Some(thread),
        })
    }

    /// Moves every waiting event into `out` (never blocks).
    pub fn drain(&self, out: &mut Vec<KisEvent>) {
        out.extend(self.events.try_iter());
    }

    /// Waits up to `timeout` for the next event (for tests and simple consumers).
    pub fn recv_timeout(&self, timeout: Duration) -> Option<KisEvent> {
        self.events.recv_timeout(timeout).ok()
    }

    pub fn metrics(&self) -> Arc<KisMetrics> {
        self.shared.metrics.clone()
    }

    /// How old the newest quote of `code` is (`None`: none yet).
    pub fn quote_age(&self, code: ShortCode) -> Option<Duration> {
        lock(&self.shared.last_quote)
            .get(&code)
            .map(|t| t.elapsed())
    }

    /// Stops the session and waits for its thread.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        let _ = self.stop.send(true);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for KisAdapter {
    fn drop(&mut self) {
        self.shutdown();
    }
}

impl Shared {
    fn emit(&self, event: KisEvent) {
        match self.events.try_send(event) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                KisMetrics::add(&self.metrics.events_dropped, 1);
            }
        }
    }

    fn publish_breakers(&self) {
        let now = Instant::now();
        let m = &self.metrics;
        let ws = lock(&self.ws_breaker);
        m.ws_breaker_state
            .store(ws.state(now).as_gauge(), Ordering::Relaxed);
        m.ws_breaker_opened
            .store(ws.opened_total(), Ordering::Relaxed);
        drop(ws);
        let rest = lock(&self.rest_breaker);
        m.rest_breaker_state
            .store(rest.state(now).as_gauge(), Ordering::Relaxed);
        m.rest_breaker_opened
            .store(rest.opened_total(), Ordering::Relaxed);
    }

    fn new_backoff(&self, seed: u64) -> Backoff {
        let l = &self.config.limits;
        Backoff::new(l.backoff_base, l.backoff_max, seed)
    }

    /// One REST call through the breaker, with retries, backoff and token renewal.
    async fn rest_call<T, F, Fut>(&self, mut call: F) -> Result<T, KisError>
    where
        F: FnMut(Secret) -> Fut,
        Fut: std::future::Future<Output = Result<T, KisError>>,
    {
        let mut backoff = self.new_backoff(0x6b69_7321);
        let mut last = KisError::BreakerOpen { call: "rest" };
        for _ in 0..self.config.limits.attempts_max {
            if !lock(&self.rest_breaker).allow(Instant::now()) {
                self.publish_breakers();
                return Err(KisError::BreakerOpen { call: "rest" });
            }
            KisMetrics::add(&self.metrics.rest_calls, 1);
            let result = match self.token().await {
                Ok(token) => call(token).await,
                Err(e) => Err(e),
            };
            match result {
                Ok(v) => {
                    lock(&self.rest_breaker).on_success();
                    self.publish_breakers();
                    return Ok(v);
                }
                Err(e) => {
                    KisMetrics::add(&self.metrics.rest_failures, 1);
                    if let KisError::TokenExpired { .. } = e {
                        KisMetrics::add(&self.metrics.token_refreshes, 1);
                        self.tokens.lock().await.invalidate()?;
                    } else {
                        lock(&self.rest_breaker).on_failure(Instant::now());
                    }
                    self.publish_breakers();
                    if !e.is_transient() {
                        return Err(e);
                    }
                    tracing::debug!(error = %e, "KIS REST call failed; retrying");
                    last = e;
                    tokio::time::sleep(backoff.next_delay()).await;
                }
            }
        }
        Err(last)
    }

    async fn token(&self) -> Result<Secret, KisError> {
        let mut tokens = self.tokens.lock().await;
        let (token, source) = tokens.token(&self.rest, unix_now_s()).await?;
        if source == TokenSource::Issued {
            KisMetrics::add(&self.metrics.token_issues, 1);
        }
        Ok(token)
    }

    fn observe_quote(&self, code: ShortCode) {
        lock(&self.last_quote).insert(code, Instant::now());
    }
}

/// Why one WebSocket session ended.
enum SessionEnd {
    Stopped,
    Lost(String),
}

async fn session_loop(shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let mut backoff = shared.new_backoff(0x7773_7331);
    loop {
        if *stop.borrow() {
            return;
        }
        let allowed = lock(&shared.ws_breaker).allow(Instant::now());
        shared.publish_breakers();
        let end = if allowed {
            run_session(&shared, &mut stop, &mut backoff).await
        } else {
            let wait = lock(&shared.ws_breaker).retry_after(Instant::now());
            SessionEnd::Lost(format!("breaker open for {} ms", wait.as_millis()))
        };
        let reason = match end {
            SessionEnd::Stopped => return,
            SessionEnd::Lost(reason) => reason,
        };
        tracing::info!(%reason, "KIS WebSocket session ended; reconnecting");
        shared.emit(KisEvent::Disconnected { reason });
        let delay = {
            let breaker_wait = lock(&shared.ws_breaker).retry_after(Instant::now());
            backoff.next_delay().max(breaker_wait)
        };
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = stop.changed() => return,
        }
    }
}

/// A WebSocket session with KIS.
type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Opens, subscribes and reads one session until it ends; a lost session is a breaker failure.
async fn run_session(
    shared: &Arc<Shared>,
    stop: &mut watch::Receiver<bool>,
    backoff: &mut Backoff,
) -> SessionEnd {
    let end = match open_session(shared).await {
        Ok(ws) => read_session(shared, ws, stop, backoff).await,
        Err(reason) => SessionEnd::Lost(reason),
    };
    if let SessionEnd::Lost(_) = &end {
        lock(&shared.ws_breaker).on_failure(Instant::now());
        shared.publish_breakers();
    }
    end
}

/// The approval key, the connection, and both streams of every symbol subscribed.
async fn open_session(shared: &Shared) -> Result<Ws, String> {
    let approval = shared.rest.approval_key().await.map_err(|e| {
        KisMetrics::add(&shared.metrics.approval_failures, 1);
        format!("approval: {e}")
    })?;
    let limits = &shared.config.limits;
    let ws_config = WebSocketConfig::default()
        .max_message_size(Some(limits.frame_bytes_max))
        .max_frame_size(Some(limits.frame_bytes_max));
    let connect = tokio_tungstenite::connect_async_with_config(
        shared.config.ws_url.as_str(),
        Some(ws_config),
        true,
    );
    let mut ws = match tokio::time::timeout(limits.connect_timeout, connect).await {
        Ok(Ok((ws, _))) => ws,
        Ok(Err(e)) => return Err(format!("connect: {e}")),
        Err(_) => return Err("connect timed out".into()),
    };
    KisMetrics::add(&shared.metrics.connects, 1);
    if KisMetrics::get(&shared.metrics.connects) > 1 {
        KisMetrics::add(&shared.metrics.reconnects, 1);
    }
    for code in &shared.config.symbols {
        for tr_id in [frame::TR_TRADE, frame::TR_BOOK] {
            let text =
                frame::subscribe_request(approval.expose(), SubscribeKind::Subscribe, tr_id, *code);
            ws.send(Message::Text(text.into()))
                .await
                .map_err(|e| format!("subscribe: {e}"))?;
            KisMetrics::add(&shared.metrics.subscriptions_sent, 1);
        }
    }
    shared.emit(KisEvent::Connected);
    Ok(ws)
}

/// Reads frames until the session is lost (drop, close, silence) or the adapter stops.
async fn read_session(
    shared: &Shared,
    mut ws: Ws,
    stop: &mut watch::Receiver<bool>,
    backoff: &mut Backoff,
) -> SessionEnd {
    let silence = shared.config.limits.silence_timeout;
    let mut records = Vec::new();
    let mut healthy = false;
    loop {
        let next = tokio::select! {
            next = tokio::time::timeout(silence, ws.next()) => next,
            _ = stop.changed() => {
                let _ = ws.close(None).await;
                return SessionEnd::Stopped;
            }
        };
        let message = match next {
            Err(_) => return SessionEnd::Lost(format!("silent for {} ms", silence.as_millis())),
            Ok(None) => return SessionEnd::Lost("closed by the server".into()),
            Ok(Some(Err(e))) => {
                KisMetrics::add(&shared.metrics.frames_rejected, 1);
                return SessionEnd::Lost(format!("read: {e}"));
            }
            Ok(Some(Ok(m))) => m,
        };
        let text = match &message {
            Message::Text(t) => t.as_str(),
            Message::Close(_) => return SessionEnd::Lost("closed by the server".into()),
            Message::Binary(_) => {
                KisMetrics::add(&shared.metrics.frames_rejected, 1);
                continue;
            }
            _ => continue,
        };
        match on_text(shared, text, &mut records) {
            TextOutcome::Data if !healthy => {
                healthy = true;
                lock(&shared.ws_breaker).on_success();
                shared.publish_breakers();
                backoff.reset();
            }
            TextOutcome::Echo => {
                if let Err(e) = ws.send(Message::Text(text.to_string().into())).await {
                    return SessionEnd::Lost(format!("pingpong echo: {e}"));
                }
            }
            TextOutcome::Data | TextOutcome::Other => {}
        }
    }
}

/// What a text frame asks of the session.
enum TextOutcome {
    /// Records were decoded and handed on.
    Data,
    /// A PINGPONG: send it back.
    Echo,
    Other,
}

/// Decodes one text frame, counts it and hands its records on.
fn on_text(shared: &Shared, text: &str, records: &mut Vec<Record>) -> TextOutcome {
    let m = &shared.metrics;
    records.clear();
    match frame::decode(text, records) {
        Ok(Inbound::Data { .. }) => {
            KisMetrics::add(&m.frames_decoded, 1);
            KisMetrics::add(&m.records_decoded, records.len() as u64);
            for record in records.drain(..) {
                shared.observe_quote(record.code());
                shared.emit(KisEvent::Record(record));
            }
            TextOutcome::Data
        }
        Ok(Inbound::PingPong) => {
            KisMetrics::add(&m.pingpongs, 1);
            TextOutcome::Echo
        }
        Ok(Inbound::Ack { .. }) => TextOutcome::Other,
        Ok(Inbound::Refused { tr_id, tr_key, msg }) => {
            KisMetrics::add(&m.subscriptions_refused, 1);
            tracing::warn!(%tr_id, %tr_key, %msg, "KIS refused a subscription");
            TextOutcome::Other
        }
        Err(e) => {
            KisMetrics::add(&m.frames_rejected, 1);
            tracing::debug!(error = %e, "KIS frame rejected");
            TextOutcome::Other
        }
    }
}

/// Asks REST for the price of every symbol whose stream has been quiet for `fallback_after`.
async fn fallback_loop(shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let limits = shared.config.limits.clone();
    let period = (limits.fallback_after / 4).max(Duration::from_millis(50));
    let mut asked: BTreeMap<ShortCode, Instant> = BTreeMap::new();
    let started = Instant::now();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(period) => {}
            _ = stop.changed() => return,
        }
        // An open breaker turns half open with time alone: keep the gauges current.
        shared.publish_breakers();
        for code in shared.config.symbols.clone() {
            let now = Instant::now();
            let last = lock(&shared.last_quote)
                .get(&code)
                .copied()
                .unwrap_or(started);
            let last_ask = asked.get(&code).copied().unwrap_or(started);
            if now.duration_since(last) < limits.fallback_after
                || now.duration_since(last_ask) < limits.fallback_after
            {
                continue;
            }
            asked.insert(code, now);
            let rest = shared.rest.clone();
            let result = shared
                .rest_call(|token| {
                    let rest = rest.clone();
                    async move { rest.current_price(&token, code).await }
                })
                .await;
            match result {
                Ok(price) => {
                    KisMetrics::add(&shared.metrics.fallback_prices, 1);
                    shared.observe_quote(code);
                    shared.emit(KisEvent::FallbackPrice { code, price });
                }
                Err(e) => tracing::debug!(%code, error = %e, "KIS REST fallback failed"),
            }
        }
    }
}
