//! The HTTP door: a JSON API under `/api/v1` beside the binary TCP gateway (ADR-018,
//! docs/api.md). It speaks for the same node through the same translation layer
//! (`kuku_gateway::translate`): a request becomes the protocol message the TCP door would
//! decode, goes through the same `trading_request` / `admin_request` checks, is submitted
//! into the same input ring, and its answer is built from the same translated events, so
//! both doors give the same answer and code to the same request.
//!
//! Pieces: [`outcome`] (an output-ring handler that keeps this door's read model and hands
//! each command's translated events to the request waiting for them), [`jwt`] (access
//! tokens), [`problem`] (RFC 9457 errors carrying the stable codes), [`extract`] (bearer
//! auth, the rate limit, bodies, paths, the Idempotency-Key), [`api`], [`admin`] and
//! [`history`] (the handlers; history reads the query database), [`market`] (the market's
//! data and the reference data of the market-data service), [`openapi`] (the OpenAPI 3.1 document generated from the handlers),
//! [`ws`] (the WebSocket feeds on `/ws`).
//!
//! Threads: a tokio runtime of its own (`worker_threads`, named `kuku-http`), one output
//! handler thread (`kuku-http-outcomes`), and with `/ws` a second output handler thread
//! (`kuku-ws-feed`) and the fan-out thread (`kuku-ws-fanout`). Nothing here runs on, or waits for, the processor
//! thread except through the rings.
//!
//! **Invariants**
//! - A request that is refused before the ring (authentication, rate limit, a malformed
//!   body, a translation refusal, `Busy`) was never journaled and used no idempotency key.
//! - A submitted command's answer is built only from its own events (routed by origin),
//!   after they are folded into this door's read model, so a follow-up query reads the
//!   command's effect.
//! - The number of commands waiting for their outcome is bounded (`in_flight_max`); past it
//!   a request is refused with `503 Busy` before it is submitted.
//!
//! **Performance**: per command one JSON decode, one HS256 check, one budget check, one
//! ring publish under a mutex, one oneshot channel, and the translation of its events on the
//! handler thread. Queries take the read lock of the door's read model.
//!
//! **Known limitations**: plain HTTP/1.1 (terminate TLS in front); the read model holds the
//! last `OrderViews` window of orders, so "all orders" lists only recent ones (the history
//! endpoints read older trades and transactions from the query database).

pub mod admin;
pub mod api;
pub mod extract;
pub mod history;
pub mod jwt;
pub mod market;
pub mod openapi;
pub mod outcome;
pub mod problem;
pub mod ws;

use crate::config::NodeConfig;
use crate::node::{Node, NodeOutputs};
use anyhow::Context;
use kuku_gateway::auth::{Secret, Token};
use kuku_gateway::translate::RateLimits;
use outcome::Outcomes;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// The `[http]` section of the node config.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct HttpSettings {
    /// Serve the HTTP API (`kuku serve`; `--no-http` turns it off).
    pub enabled: bool,
    /// Listen address (`--http-listen`, `KUKU_HTTP_LISTEN`).
    pub listen: String,
    /// The JWT signing key file (64 hex digits, created with a fresh key, mode 0600, if
    /// missing); default `<data_dir>/http-jwt-key`. `KUKU_HTTP_JWT_KEY` overrides it.
    pub jwt_key_file: Option<PathBuf>,
    #[serde(skip)]
    pub jwt_key_hex: Option<String>,
    /// Lifetime of an access token.
    pub token_ttl_s: u64,
    /// How long a request waits for its command's outcome before answering 504.
    pub outcome_timeout_ms: u64,
    /// Threads of the door's runtime.
    pub worker_threads: usize,
    /// The largest request body accepted.
    pub body_bytes_max: usize,
    /// Commands submitted and waiting for their outcome, at most.
    pub in_flight_max: usize,
    /// The WebSocket feeds (`[http.ws]`).
    pub ws: ws::WsSettings,
}

impl Default for HttpSettings {
    fn default() -> Self {
        HttpSettings {
            enabled: true,
            listen: "127.0.0.1:8080".to_owned(),
            jwt_key_file: None,
            jwt_key_hex: None,
            token_ttl_s: 900,
            outcome_timeout_ms: 5_000,
            worker_threads: 2,
            body_bytes_max: 16 * 1024,
            in_flight_max: 16_384,
            ws: ws::WsSettings::default(),
        }
    }
}

impl HttpSettings {
    pub fn validate(&self) -> Result<(), String> {
        if self.token_ttl_s == 0 || self.token_ttl_s > 86_400 {
            return Err("http.token_ttl_s must be between 1 and 86400".into());
        }
        if self.outcome_timeout_ms == 0 {
            return Err("http.outcome_timeout_ms must be positive".into());
        }
        if self.worker_threads == 0 || self.worker_threads > 64 {
            return Err("http.worker_threads must be between 1 and 64".into());
        }
        if self.body_bytes_max < 1_024 {
            return Err("http.body_bytes_max must be at least 1024".into());
        }
        if self.in_flight_max == 0 {
            return Err("http.in_flight_max must be at least 1".into());
        }
        self.ws.validate()
    }

    /// The JWT key file's path for a node with `data_dir`.
    pub fn jwt_key_path(&self, config: &NodeConfig) -> PathBuf {
        self.jwt_key_file
            .clone()
            .unwrap_or_else(|| config.data_dir.join("http-jwt-key"))
    }

    /// The signing key: the hex override, else the file (created if missing).
    pub fn jwt_key(&self, config: &NodeConfig) -> anyhow::Result<[u8; 32]> {
        match &self.jwt_key_hex {
            Some(hex) => kuku_gateway::auth::decode_hex32(hex).context("KUKU_HTTP_JWT_KEY"),
            None => jwt::load_or_create_key(&self.jwt_key_path(config)),
        }
    }
}

/// The door before the node starts: its listener is bound (a busy port fails before the
/// node starts) and its output handler is in the node's outputs.
pub struct HttpDoor {
    listener: std::net::TcpListener,
    outcomes: Arc<Outcomes>,
    settings: HttpSettings,
    jwt_key: [u8; 32],
    history: history::HistoryStore,
    ws: Option<WsFeed>,
}

/// The WebSocket feeds before the node starts: the hub, and the fan-out's queue (its
/// sending end is in the feed handler; the market data gets a clone at `serve`).
struct WsFeed {
    hub: Arc<ws::hub::Hub>,
    sender: ws::feed::FeedSender,
    receiver: std::sync::mpsc::Receiver<ws::feed::FeedMsg>,
}

impl WsFeed {
    /// Adds the feed's output handler and seed to `outputs`.
    fn prepare(settings: &ws::WsSettings, outputs: &mut NodeOutputs) -> WsFeed {
        let hub = ws::hub::Hub::new(settings.clone());
        let (tx, receiver) = std::sync::mpsc::sync_channel(settings.feed_queue_max);
        let sender = ws::feed::FeedSender::new(tx, Arc::clone(&hub));
        let seeded = ws::feed::Seeded::default();
        outputs.handlers.push((
            "kuku-ws-feed",
            ws::feed::handler(Arc::clone(&seeded), sender.clone()),
        ));
        outputs.seeds.push(ws::feed::seed(seeded, Arc::clone(&hub)));
        WsFeed {
            hub,
            sender,
            receiver,
        }
    }

    /// Starts the fan-out thread and subscribes it to the market data's updates.
    fn start(
        self,
        market_data: &kuku_marketdata::MarketDataHandle,
    ) -> anyhow::Result<(Arc<ws::hub::Hub>, JoinHandle<()>)> {
        let WsFeed {
            hub,
            sender,
            receiver,
        } = self;
        let topics = kuku_marketdata::Topics {
            symbol: None,
            quotes: true,
            ticks: true,
            candles: kuku_marketdata::Interval::ALL.to_vec(),
        };
        let stopping = Arc::clone(&hub);
        let subscribed = market_data.subscribe_callback(topics, move |update| {
            if stopping.stopping.load(std::sync::atomic::Ordering::Acquire) {
                return kuku_marketdata::Delivered::Closed;
            }
            let msg = ws::feed::FeedMsg::Market {
                ts: crate::pipeline::now_ns(),
                update: Box::new(*update),
            };
            if sender.offer(msg) {
                kuku_marketdata::Delivered::Taken
            } else {
                kuku_marketdata::Delivered::Full
            }
        });
        if let Err(e) = subscribed {
            tracing::warn!(error = %e, "The WebSocket feeds get no market data (quotes, ticks, candles of the source).");
        }
        let fanout = Arc::clone(&hub);
        let thread = std::thread::Builder::new()
            .name("kuku-ws-fanout".into())
            .spawn(move || fanout.run(receiver))
            .context("cannot spawn the WebSocket fan-out thread")?;
        Ok((hub, thread))
    }
}

impl HttpDoor {
    /// Binds the listener, loads the JWT key, and adds the door's output handler and
    /// read-model seed to `outputs` (pass them to the node's start).
    pub fn prepare(config: &NodeConfig, outputs: &mut NodeOutputs) -> anyhow::Result<HttpDoor> {
        crate::node::check_data_dir(&config.data_dir)?;
        let settings = config.http.clone();
        settings.validate().map_err(anyhow::Error::msg)?;
        let jwt_key = settings.jwt_key(config)?;
        let listener = std::net::TcpListener::bind(&settings.listen)
            .with_context(|| format!("cannot listen for HTTP on {}", settings.listen))?;
        listener.set_nonblocking(true)?;
        let outcomes = Arc::new(Outcomes::new(settings.in_flight_max));
        outputs.handlers.push((
            "kuku-http-outcomes",
            outcome::handler(Arc::clone(&outcomes)),
        ));
        outputs.seeds.push(outcome::seed(Arc::clone(&outcomes)));
        let ws = settings
            .ws
            .enabled
            .then(|| WsFeed::prepare(&settings.ws, outputs));
        let history = history::HistoryStore::new(
            crate::database::database_url(config)?,
            Duration::from_secs(config.database.connect_timeout_s.max(1)),
            Duration::from_millis(config.database.statement_timeout_ms.max(1)),
        );
        Ok(HttpDoor {
            listener,
            outcomes,
            settings,
            jwt_key,
            history,
            ws,
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves the API for `node`. `rate_limits` is the TCP gateway's (one budget per account
    /// across doors); `secret` and `admin_token` are the gateway's credentials.
    pub fn serve(
        self,
        node: &Node,
        rate_limits: Arc<RateLimits>,
        secret: Secret,
        admin_token: Token,
    ) -> anyhow::Result<HttpServer> {
        let (hub, fanout) = match self.ws {
            Some(feed) => {
                let (hub, thread) = feed.start(&node.market_data)?;
                (Some(hub), Some(thread))
            }
            None => (None, None),
        };
        let state = api::AppState::new(api::Inner {
            outcomes: self.outcomes,
            submitter: parking_lot::Mutex::new(node.submitter.clone()),
            rate_limits,
            jwt: jwt::JwtKeys::new(&self.jwt_key, self.settings.token_ttl_s),
            secret,
            admin_token,
            outcome_timeout: Duration::from_millis(self.settings.outcome_timeout_ms),
            serving: node.serving(),
            history: self.history,
            market_data: std::sync::Arc::clone(&node.market_data),
            reference_writes: tokio::sync::Mutex::new(()),
            ws: hub.clone(),
        });
        let mut server = start_server(
            self.listener,
            state,
            self.settings.worker_threads,
            self.settings.body_bytes_max,
        )?;
        server.ws = hub;
        server.fanout = fanout;
        Ok(server)
    }
}

/// A running HTTP door; stopped (and joined) by [`HttpServer::shutdown`] or on drop. Stop it
/// before the node: it holds a submitter, and the pipeline drains only when every submitter
/// is gone.
pub struct HttpServer {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
    ws: Option<Arc<ws::hub::Hub>>,
    fanout: Option<JoinHandle<()>>,
}

impl HttpServer {
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn shutdown(mut self) {
        self.stop_and_join();
    }

    /// The `/ws` hub (`None`: the feeds are disabled); tests use its pause hook.
    pub fn ws_hub(&self) -> Option<Arc<ws::hub::Hub>> {
        self.ws.clone()
    }

    /// The `/ws` counters (`None`: the feeds are disabled).
    pub fn ws_metrics(&self) -> Option<Arc<ws::WsMetrics>> {
        self.ws.as_ref().map(|h| Arc::clone(&h.metrics))
    }

    fn stop_and_join(&mut self) {
        if let Some(hub) = &self.ws {
            hub.stopping
                .store(true, std::sync::atomic::Ordering::Release);
            hub.close_all(
                ws::protocol::WsCode::ShuttingDown,
                "the server is shutting down",
            );
            // The sessions write their close frames on this door's runtime: let them finish
            // (bounded by the grace period) before the runtime stops, or a client sees its
            // socket cut without the reason.
            let deadline = std::time::Instant::now() + SHUTDOWN_GRACE;
            while hub
                .metrics
                .connections
                .load(std::sync::atomic::Ordering::Acquire)
                > 0
                && std::time::Instant::now() < deadline
            {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        if let Some(t) = self.fanout.take()
            && t.join().is_err()
        {
            tracing::error!("The WebSocket fan-out thread panicked.");
        }
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take()
            && t.join().is_err()
        {
            tracing::error!("The HTTP door's thread panicked.");
        }
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}

/// In-flight requests get this long to finish at shutdown; then their connections are cut.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

fn start_server(
    listener: std::net::TcpListener,
    state: api::AppState,
    worker_threads: usize,
    body_bytes_max: usize,
) -> anyhow::Result<HttpServer> {
    let addr = listener.local_addr()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(worker_threads)
        .thread_name("kuku-http")
        .enable_io()
        .enable_time()
        .build()
        .context("cannot start the HTTP door's runtime")?;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let app = api::router(state, body_bytes_max);
    let thread = std::thread::Builder::new()
        .name("kuku-http-serve".into())
        .spawn(move || {
            let served = runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener)?;
                let (graceful_tx, graceful_rx) = tokio::sync::oneshot::channel::<()>();
                let server = axum::serve(listener, app).with_graceful_shutdown(async move {
                    let _ = graceful_rx.await;
                });
                let server = tokio::spawn(std::future::IntoFuture::into_future(server));
                let _ = stop_rx.await;
                let _ = graceful_tx.send(());
                match tokio::time::timeout(SHUTDOWN_GRACE, server).await {
                    Ok(Ok(served)) => served,
                    Ok(Err(joined)) => Err(std::io::Error::other(joined)),
                    // Connections still open after the grace period are cut below.
                    Err(_) => Ok(()),
                }
            });
            if let Err(e) = served {
                tracing::error!(error = %e, "The HTTP door stopped with an error.");
            }
            runtime.shutdown_timeout(SHUTDOWN_GRACE);
        })
        .context("cannot spawn the HTTP door's thread")?;
    tracing::info!(%addr, "The HTTP API is serving under /api/v1.");
    Ok(HttpServer {
        addr,
        stop: Some(stop_tx),
        thread: Some(thread),
        ws: None,
        fanout: None,
    })
}
