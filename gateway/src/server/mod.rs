//! The gateway server: one mio event loop on one thread that owns every session, submits
//! commands through a [`NodeLink`], drains the node's output events, and answers queries from
//! its [`Mirror`]. What a request means (its command, its refusal codes, the per-account rate
//! limit) and what an event tells each account is decided by the translation layer
//! ([`crate::translate`]), which other doors share; this module is the TCP transport and the
//! sessions.
//!
//! Files: `event_loop` (poll, accept, read, timers, flush, reap), `sessions` (the session
//! table, send and close), `session` (one connection), `login`, `requests` (trading and admin
//! requests, queries), `fanout` (output events to sessions), `mirror` (the read model).
//!
//! Start-up: [`Gateway::new`] creates the poll and its waker (hand the waker to the node as an
//! output notifier, so the loop wakes once per output batch and never waits on a poll
//! timeout, which mio rounds up to whole milliseconds) and [`Gateway::spawn`] binds the
//! listener last, so no client connects before the gateway can answer ([`Gateway::bind`]
//! binds at once);
//! [`Gateway::seed`] and [`Gateway::recover_event`] rebuild the read model and the replay
//! history (from the journal) up to where the node's output starts; [`Gateway::spawn`]
//! runs the loop.
//!
//! **Invariants**
//! - The loop never blocks except in `poll`: sockets are non-blocking, the ring submit is
//!   `try_submit` (a full ring is a `Busy` reject to the client), output is drained without
//!   waiting.
//! - Memory per session is bounded: the inbound buffer by one read chunk plus one partial
//!   frame (`frame_len_max`), the outbound buffer by `outbound_bytes_max` (a session that
//!   exceeds it is disconnected as a slow reader). Sessions are bounded by `sessions_max`,
//!   the replay history by its own bounds.
//! - Each session's origin id is unique for the gateway's life, so a reply never reaches a
//!   later session that reuses a slot.
//!
//! **Performance**: per request one frame decode, one budget check (an uncontended mutex) and
//! one ring publish; per event one mirror update and one frame encode per recipient session; writes
//! are batched per loop iteration. Reads are capped per session per iteration
//! (`READ_BUDGET_BYTES`) so one flooding client cannot starve the others.
//!
//! **Known limitations**: one thread serves every session (enough for this 2-core target;
//! sharding sessions over several loops would need the mirror shared or split); no TLS.

mod event_loop;
mod fanout;
mod login;
pub mod mirror;
mod requests;
mod session;
mod sessions;

use crate::auth::{Secret, Token};
use crate::error::GatewayError;
use crate::history::History;
use crate::protocol::CLIENT_FRAME_LEN_MAX;
use crate::translate::RateLimits;
use kuku_engine::readmodel::ReadModel;
use kuku_engine::{Command, Event};
use mio::{Poll, Token as MioToken, Waker};
pub use mirror::Mirror;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

/// The node's input ring was full.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("busy: the node's input ring is full")]
pub struct Busy;

/// One output event of the node, as the gateway sees it.
#[derive(Clone, Copy, Debug)]
pub struct OutputRef<'a> {
    pub seq: u64,
    pub ts: u64,
    /// Who submitted the command (0: the node itself).
    pub origin: u64,
    pub event: &'a Event,
    /// True on the command's last event.
    pub last: bool,
}

/// What a drain found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Drained {
    /// This many events were handed over (0: none available now).
    Events(usize),
    /// The node's output has shut down: no event will come again.
    Shutdown,
}

/// The gateway's connection to a node: the input ring and an output-ring consumer.
pub trait NodeLink: Send + 'static {
    /// Publishes a command without blocking.
    fn submit(&mut self, origin: u64, command: Command) -> Result<(), Busy>;
    /// Hands at most `limit` available output events to `sink`, in order, without waiting.
    fn drain(&mut self, limit: usize, sink: &mut dyn FnMut(OutputRef<'_>)) -> Drained;
}

/// Gateway settings (the server maps its `[gateway]` config section onto these).
#[derive(Clone, Debug)]
pub struct GatewayConfig {
    pub listen: SocketAddr,
    /// Account tokens are HMACs under this secret.
    pub secret: Secret,
    pub admin_token: Token,
    pub sessions_max: usize,
    /// The largest frame length accepted from clients.
    pub frame_len_max: usize,
    /// Bytes queued for one session before it is disconnected as a slow reader.
    pub outbound_bytes_max: usize,
    /// The server sends a Heartbeat after this long without sending.
    pub heartbeat_interval: Duration,
    /// A session that sends nothing for this long is closed.
    pub idle_timeout: Duration,
    /// A connection that has not logged in after this long is closed.
    pub login_timeout: Duration,
    /// Each trading account's request budget, shared by all its sessions (and the node's
    /// other doors, see [`Gateway::rate_limits`]): refill rate (requests per second) and
    /// capacity.
    pub rate_per_s: u32,
    pub burst: u32,
    /// Replay history bounds (see [`crate::history`]).
    pub history_per_account_max: usize,
    pub history_total_max: usize,
    /// Whether this node is the primary: while false (a standby, or a fenced old primary)
    /// every login, trading or admin, is refused with `9014 NotPrimary`.
    pub serving: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl GatewayConfig {
    /// Defaults on `listen` with the given credentials.
    pub fn new(listen: SocketAddr, secret: Secret, admin_token: Token) -> GatewayConfig {
        GatewayConfig {
            listen,
            secret,
            admin_token,
            sessions_max: 2_048,
            frame_len_max: CLIENT_FRAME_LEN_MAX,
            outbound_bytes_max: 1 << 20,
            heartbeat_interval: Duration::from_secs(1),
            idle_timeout: Duration::from_secs(10),
            login_timeout: Duration::from_secs(5),
            rate_per_s: 20_000,
            burst: 2_000,
            history_per_account_max: 4_096,
            history_total_max: 1_000_000,
            serving: std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true)),
        }
    }

    pub fn validate(&self) -> Result<(), GatewayError> {
        let bad = |m: &str| Err(GatewayError::Config(m.to_owned()));
        if self.sessions_max == 0 {
            return bad("sessions_max must be at least 1");
        }
        if self.frame_len_max < CLIENT_FRAME_LEN_MAX || self.frame_len_max > u16::MAX as usize {
            return bad("frame_len_max must be between 256 and 65535");
        }
        if self.outbound_bytes_max < 4_096 {
            return bad("outbound_bytes_max must be at least 4096");
        }
        if self.heartbeat_interval.is_zero() || self.idle_timeout <= self.heartbeat_interval {
            return bad("idle_timeout must exceed a non-zero heartbeat_interval");
        }
        if self.login_timeout.is_zero() {
            return bad("login_timeout must be positive");
        }
        if self.burst == 0 {
            return bad("burst must be at least 1");
        }
        Ok(())
    }
}

/// Counters of a running gateway (monotonic unless noted).
#[derive(Debug, Default)]
pub struct GatewayStats {
    /// Sessions open now (gauge).
    pub sessions_open: AtomicU64,
    pub sessions_accepted: AtomicU64,
    pub sessions_refused: AtomicU64,
    pub logins: AtomicU64,
    pub login_rejects: AtomicU64,
    pub protocol_errors: AtomicU64,
    pub slow_readers: AtomicU64,
    pub timeouts: AtomicU64,
    pub requests: AtomicU64,
    pub rate_limited: AtomicU64,
    pub busy: AtomicU64,
    pub events: AtomicU64,
    /// Bytes queued in outbound buffers now, over all sessions (gauge).
    pub outbound_bytes: AtomicU64,
    /// The largest outbound buffer any session has held.
    pub outbound_bytes_peak: AtomicU64,
    pub cancel_on_disconnect: AtomicU64,
}

impl GatewayStats {
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    #[inline]
    pub(crate) fn add(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// How long a closing session may take to flush and see the peer close.
const LINGER: Duration = Duration::from_secs(1);

const WAKER: MioToken = MioToken(usize::MAX - 1);
const LISTENER: MioToken = MioToken(usize::MAX - 2);

/// A bound gateway, not yet running.
pub struct Gateway {
    poll: Poll,
    waker: Arc<Waker>,
    /// `None` until bound ([`Gateway::bind`] at once, [`Gateway::new`] in `spawn`).
    listener: Option<mio::net::TcpListener>,
    local_addr: SocketAddr,
    config: GatewayConfig,
    mirror: Mirror,
    rate_limits: Arc<RateLimits>,
}

impl Gateway {
    /// Binds the listener and creates the event loop's poll and waker.
    pub fn bind(config: GatewayConfig) -> Result<Gateway, GatewayError> {
        let mut gateway = Gateway::new(config)?;
        gateway.listen()?;
        Ok(gateway)
    }

    /// Creates the event loop's poll and waker; the listener is bound by [`Gateway::spawn`].
    pub fn new(config: GatewayConfig) -> Result<Gateway, GatewayError> {
        config.validate()?;
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let history = History::new(config.history_per_account_max, config.history_total_max);
        Ok(Gateway {
            poll,
            waker,
            listener: None,
            local_addr: config.listen,
            mirror: Mirror::new(ReadModel::default(), history),
            rate_limits: Arc::new(RateLimits::new(config.rate_per_s, config.burst)),
            config,
        })
    }

    /// Binds and registers the listener (once).
    fn listen(&mut self) -> Result<(), GatewayError> {
        if self.listener.is_some() {
            return Ok(());
        }
        let mut listener = mio::net::TcpListener::bind(self.config.listen).map_err(|source| {
            GatewayError::Bind {
                addr: self.config.listen.to_string(),
                source,
            }
        })?;
        self.poll
            .registry()
            .register(&mut listener, LISTENER, mio::Interest::READABLE)?;
        self.local_addr = listener.local_addr()?;
        self.listener = Some(listener);
        Ok(())
    }

    /// The bound address (the configured one until the listener is bound).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Wakes the event loop; call it once per output batch (the node's notifier).
    pub fn waker(&self) -> Arc<Waker> {
        Arc::clone(&self.waker)
    }

    /// Replaces the read model (e.g. one built from a recovered engine). The history is kept.
    pub fn seed(&mut self, read_model: ReadModel) {
        let history = std::mem::replace(&mut self.mirror.history, History::new(1, 1));
        self.mirror = Mirror::new(read_model, history);
    }

    /// Folds one event replayed from the journal (start-up, before [`Gateway::spawn`]).
    pub fn recover_event(&mut self, seq: u64, ts: u64, event: &Event) {
        self.mirror.apply(seq, ts, event);
    }

    /// Every account's request budget: hand it to the node's other doors so that an account
    /// has one budget whichever way its requests arrive.
    pub fn rate_limits(&self) -> Arc<RateLimits> {
        Arc::clone(&self.rate_limits)
    }

    /// The mirror (start-up checks and tests).
    pub fn mirror(&self) -> &Mirror {
        &self.mirror
    }

    /// Binds the listener if [`Gateway::new`] did not, and runs the event loop on its own
    /// thread until [`GatewayHandle::shutdown`].
    pub fn spawn<L: NodeLink>(mut self, link: L) -> Result<GatewayHandle, GatewayError> {
        self.listen()?;
        let stop = Arc::new(AtomicBool::new(false));
        let stats = Arc::new(GatewayStats::default());
        let waker = Arc::clone(&self.waker);
        let local_addr = self.local_addr;
        let rate_limits = Arc::clone(&self.rate_limits);
        let event_loop =
            event_loop::EventLoop::new(self, link, Arc::clone(&stop), Arc::clone(&stats));
        let thread = std::thread::Builder::new()
            .name("kuku-gateway".to_owned())
            .spawn(move || event_loop.run())?;
        Ok(GatewayHandle {
            stop,
            waker,
            stats,
            local_addr,
            rate_limits,
            thread: Some(thread),
        })
    }
}

/// A running gateway. Dropping it shuts it down.
pub struct GatewayHandle {
    stop: Arc<AtomicBool>,
    waker: Arc<Waker>,
    stats: Arc<GatewayStats>,
    local_addr: SocketAddr,
    rate_limits: Arc<RateLimits>,
    thread: Option<JoinHandle<()>>,
}

impl GatewayHandle {
    /// Every account's request budget, for the node's other doors (see
    /// [`Gateway::rate_limits`]).
    pub fn rate_limits(&self) -> Arc<RateLimits> {
        Arc::clone(&self.rate_limits)
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    pub fn stats(&self) -> &GatewayStats {
        &self.stats
    }

    /// The counters, shared (e.g. with a metrics endpoint).
    pub fn stats_handle(&self) -> Arc<GatewayStats> {
        Arc::clone(&self.stats)
    }

    /// True once the loop has exited (e.g. the node's output shut down).
    pub fn is_finished(&self) -> bool {
        self.thread.as_ref().is_none_or(|t| t.is_finished())
    }

    /// Ends every session (Logout 9013 ShuttingDown; cancel-on-disconnect applies), submits
    /// the resulting cancels, and joins the loop's thread.
    pub fn shutdown(mut self) {
        self.stop_and_join();
    }

    fn stop_and_join(&mut self) {
        self.stop.store(true, Ordering::Release);
        let _ = self.waker.wake();
        if let Some(t) = self.thread.take()
            && t.join().is_err()
        {
            tracing::error!("The gateway thread panicked.");
        }
    }
}

impl Drop for GatewayHandle {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}
