//! The gateway's event loop: accept, read and decode, dispatch requests, drain the node's
//! output into the sessions, flush, time out, reap. See the parent module for the
//! invariants; this file is the mechanics. What happens to a decoded message is in the
//! sibling modules: `login` (sessions opening), `requests` (trading and admin requests
//! through the translation layer, queries), `fanout` (output events to sessions), and
//! `sessions` (the session table).
//!
//! One iteration: `poll` (woken by sockets, the node's output waker, or the tick timeout) ->
//! accept -> drain output -> read the sessions that have input (a byte budget each) -> retry
//! internal commands (cancel-on-disconnect) -> timers (every `TICK`) -> flush -> reap.

use super::mirror::Mirror;
use super::session::{Ending, Role, Session};
use super::sessions::{Routes, Sessions};
use super::{Drained, GatewayConfig, GatewayStats, LISTENER, NodeLink, WAKER};
use crate::protocol::{
    DecodeError, FrameError, GatewayCode, Heartbeat, LOGIN_V1_BODY_LEN, Login, LoginRejected,
    Logout, Message, ProtocolCode, split_frame,
};
use crate::translate::RateLimits;
use mio::net::TcpListener;
use mio::{Events, Interest, Poll, Registry, Token};
use std::io::{self, Read, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Timer resolution: heartbeats, timeouts and lingering closes are checked this often.
const TICK: Duration = Duration::from_millis(50);
/// Bytes read from one session per loop iteration (fairness between sessions).
const READ_BUDGET_BYTES: usize = 64 * 1024;
/// Bytes read per `read` call.
const READ_CHUNK_BYTES: usize = 16 * 1024;
/// Output events handled per `drain` call, and per loop iteration.
const DRAIN_BATCH: usize = 4_096;
const DRAIN_BUDGET: usize = 16_384;
/// First origin id of this gateway's sessions: far from the small ids in-process clients use.
const ORIGIN_BASE: u64 = 1 << 48;

pub(super) struct EventLoop<L> {
    pub(super) poll: Poll,
    pub(super) registry: Registry,
    pub(super) listener: TcpListener,
    pub(super) link: L,
    pub(super) config: GatewayConfig,
    pub(super) mirror: Mirror,
    pub(super) sessions: Sessions,
    pub(super) routes: Routes,
    /// Every account's request budget (shared with the node's other doors).
    pub(super) rate_limits: Arc<RateLimits>,
    pub(super) next_origin: u64,
    /// Sessions that may have unread input (edge-triggered readiness).
    pub(super) ready: Vec<usize>,
    pub(super) accept_blocked: bool,
    pub(super) node_gone: bool,
    pub(super) stop: Arc<AtomicBool>,
    pub(super) stats: Arc<GatewayStats>,
}

impl<L: NodeLink> EventLoop<L> {
    pub(super) fn new(
        gateway: super::Gateway,
        link: L,
        stop: Arc<AtomicBool>,
        stats: Arc<GatewayStats>,
    ) -> EventLoop<L> {
        let registry = gateway
            .poll
            .registry()
            .try_clone()
            .expect("an epoll registry can be duplicated");
        EventLoop {
            poll: gateway.poll,
            registry,
            listener: gateway
                .listener
                .expect("Gateway::spawn binds the listener before the loop starts"),
            link,
            sessions: Sessions::new(gateway.config.outbound_bytes_max, Arc::clone(&stats)),
            config: gateway.config,
            mirror: gateway.mirror,
            routes: Routes::default(),
            rate_limits: gateway.rate_limits,
            next_origin: ORIGIN_BASE,
            ready: Vec::new(),
            accept_blocked: false,
            node_gone: false,
            stop,
            stats,
        }
    }

    pub(super) fn run(mut self) {
        tracing::info!(addr = %self.listener.local_addr().map_or_else(|e| e.to_string(), |a| a.to_string()),
            "The gateway is listening.");
        let _ = WAKER;
        let mut events = Events::with_capacity(1_024);
        let mut drain_more = false;
        let mut last_tick = Instant::now();
        loop {
            let busy = drain_more || !self.ready.is_empty() || !self.sessions.internal.is_empty();
            let timeout = if busy { Duration::ZERO } else { TICK };
            if let Err(e) = self.poll.poll(&mut events, Some(timeout)) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                tracing::error!(error = %e, "The gateway's poll failed; the gateway stops.");
                break;
            }
            self.sessions.now = Instant::now();
            for event in events.iter() {
                match event.token() {
                    LISTENER => self.accept_all(),
                    Token(i) if i < self.sessions.slots.len() => {
                        let readable =
                            event.is_readable() || event.is_read_closed() || event.is_error();
                        self.on_socket_event(i, readable, event.is_writable());
                    }
                    _ => {}
                }
            }
            drain_more = self.drain_output();
            self.read_ready();
            self.submit_internal();
            let now = self.sessions.now;
            if now.duration_since(last_tick) >= TICK {
                last_tick = now;
                self.tick(now);
            }
            self.flush_dirty();
            self.reap();
            if self.stop.load(Ordering::Acquire) || self.node_gone {
                break;
            }
        }
        self.shut_down();
    }

    fn on_socket_event(&mut self, i: usize, readable: bool, writable: bool) {
        let Some(s) = self.sessions.get(i) else {
            return;
        };
        if readable && !s.ready {
            s.ready = true;
            self.ready.push(i);
        }
        if writable && s.queued_bytes() > 0 && s.flush().is_err() {
            self.sessions.end(i, Ending::Abort);
        }
    }

    fn accept_all(&mut self) {
        self.accept_blocked = false;
        loop {
            match self.listener.accept() {
                Ok((stream, _)) => self.admit(stream),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // E.g. EMFILE: retried on the next tick, when sessions may have closed.
                    tracing::warn!(error = %e, "The gateway could not accept a connection.");
                    self.accept_blocked = true;
                    break;
                }
            }
        }
    }

    fn admit(&mut self, mut stream: mio::net::TcpStream) {
        if self.sessions.open_count >= self.config.sessions_max {
            GatewayStats::add(&self.stats.sessions_refused);
            let refusal = LoginRejected {
                code: GatewayCode::SessionsFull.code(),
            };
            let _ = stream.write(&Message::from(refusal).to_frame());
            return;
        }
        let _ = stream.set_nodelay(true);
        let i = match self.sessions.free.pop() {
            Some(i) => i,
            None => {
                self.sessions.slots.push(None);
                self.sessions.slots.len() - 1
            }
        };
        let interest = Interest::READABLE | Interest::WRITABLE;
        if let Err(e) = self.registry.register(&mut stream, Token(i), interest) {
            tracing::warn!(error = %e, "A connection could not be registered.");
            self.sessions.free.push(i);
            return;
        }
        let origin = self.next_origin;
        self.next_origin += 1;
        let now = self.sessions.now;
        self.sessions.slots[i] = Some(Session::new(stream, origin, now));
        self.sessions.open_count += 1;
        self.routes.by_origin.insert(origin, i);
        GatewayStats::add(&self.stats.sessions_accepted);
    }

    /// Drains the node's output; true if the budget ran out with events left.
    fn drain_output(&mut self) -> bool {
        let mut handled = 0;
        loop {
            let (mirror, sessions, routes) = (&mut self.mirror, &mut self.sessions, &self.routes);
            let drained = self.link.drain(DRAIN_BATCH, &mut |out| {
                super::fanout::on_output(mirror, sessions, routes, out);
            });
            match drained {
                Drained::Events(0) => return false,
                Drained::Events(n) => {
                    handled += n;
                    self.stats.events.fetch_add(n as u64, Ordering::Relaxed);
                    if handled >= DRAIN_BUDGET {
                        return true;
                    }
                }
                Drained::Shutdown => {
                    tracing::info!("The node's output shut down; the gateway stops.");
                    self.node_gone = true;
                    return false;
                }
            }
        }
    }

    fn read_ready(&mut self) {
        let ready = std::mem::take(&mut self.ready);
        for &i in &ready {
            if let Some(s) = self.sessions.get(i) {
                s.ready = false;
                self.read_session(i);
            }
        }
        // Keep the allocation.
        let mut ready = ready;
        ready.clear();
        if self.ready.is_empty() {
            self.ready = ready;
        }
    }

    fn read_session(&mut self, i: usize) {
        let mut budget = READ_BUDGET_BYTES;
        let now = self.sessions.now;
        loop {
            let Some(s) = self.sessions.get(i) else {
                return;
            };
            if s.dead {
                return;
            }
            if !s.is_open() {
                // Closing: discard input until the peer closes.
                let mut sink = [0u8; 4_096];
                match s.stream.read(&mut sink) {
                    Ok(0) => s.dead = true,
                    Ok(_) => continue,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(_) => s.dead = true,
                }
                return;
            }
            let len = s.inbound.len();
            s.inbound.resize(len + READ_CHUNK_BYTES, 0);
            let read = s.stream.read(&mut s.inbound[len..]);
            match read {
                Ok(0) => {
                    s.inbound.truncate(len);
                    self.sessions.end(i, Ending::Abort);
                    return;
                }
                Ok(n) => {
                    s.inbound.truncate(len + n);
                    s.last_recv = now;
                    self.process_inbound(i);
                    budget = budget.saturating_sub(n);
                    if budget == 0 {
                        if let Some(s) = self.sessions.get(i)
                            && !s.ready
                        {
                            s.ready = true;
                            self.ready.push(i);
                        }
                        return;
                    }
                }
                Err(e) => {
                    s.inbound.truncate(len);
                    match e.kind() {
                        io::ErrorKind::WouldBlock => return,
                        io::ErrorKind::Interrupted => {}
                        _ => {
                            self.sessions.end(i, Ending::Abort);
                            return;
                        }
                    }
                }
            }
        }
    }

    /// Decodes and handles every whole frame in session `i`'s inbound buffer.
    fn process_inbound(&mut self, i: usize) {
        let Some(s) = self.sessions.get(i) else {
            return;
        };
        let inbound = std::mem::take(&mut s.inbound);
        let mut at = 0;
        loop {
            match split_frame(&inbound[at..], self.config.frame_len_max) {
                Ok(Some((message, used))) => {
                    at += used;
                    self.handle(i, message);
                    if !self.sessions.get(i).is_some_and(|s| s.is_open()) {
                        return;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    let connected = self
                        .sessions
                        .get(i)
                        .is_some_and(|s| matches!(s.role, Role::Connected));
                    if connected && is_login_v1(&e) {
                        // A client of protocol version 1: tell it so in words it decodes.
                        GatewayStats::add(&self.stats.login_rejects);
                        let m = LoginRejected {
                            code: GatewayCode::UnsupportedVersion.code(),
                        };
                        self.sessions.end(i, Ending::Graceful(m.into()));
                        return;
                    }
                    let (code, msg_type) = protocol_code(&e);
                    self.sessions.protocol_error(i, code, msg_type);
                    return;
                }
            }
        }
        if let Some(s) = self.sessions.get(i) {
            let mut inbound = inbound;
            inbound.drain(..at);
            s.inbound = inbound;
        }
    }

    /// Dispatches one decoded message by the session's state.
    fn handle(&mut self, i: usize, message: Message) {
        let Some(s) = self.sessions.get(i) else {
            return;
        };
        let ty = message.msg_type();
        match (&s.role, message) {
            (Role::Connected, Message::Login(login)) => self.login(i, login),
            (Role::Connected, _) => self
                .sessions
                .protocol_error(i, ProtocolCode::NotLoggedIn, ty),
            (_, Message::Heartbeat(_)) => {}
            (_, Message::Logout(_)) => {
                let bye = Logout { code: 0 };
                self.sessions.end(i, Ending::Graceful(bye.into()));
            }
            (_, Message::Login(_)) => {
                self.sessions
                    .protocol_error(i, ProtocolCode::UnexpectedMessage, ty)
            }
            (
                Role::Trading {
                    account, budget, ..
                },
                m,
            ) => {
                let (account, budget) = (*account, Arc::clone(budget));
                self.trading_request(i, account, &budget, m);
            }
            (Role::Admin { .. }, m) => self.admin_request(i, m),
        }
    }

    pub(super) fn submit_internal(&mut self) {
        while let Some((origin, command)) = self.sessions.internal.pop_front() {
            if self.link.submit(origin, command.clone()).is_err() {
                self.sessions.internal.push_front((origin, command));
                return;
            }
        }
    }

    fn tick(&mut self, now: Instant) {
        if self.accept_blocked {
            self.accept_all();
        }
        let (hb, idle, login) = (
            self.config.heartbeat_interval,
            self.config.idle_timeout,
            self.config.login_timeout,
        );
        let mut queued_total = 0usize;
        for i in 0..self.sessions.slots.len() {
            let Some(s) = self.sessions.get(i) else {
                continue;
            };
            queued_total += s.queued_bytes();
            if !s.is_open() {
                if s.closing_until.is_some_and(|t| now >= t) {
                    s.dead = true;
                }
                continue;
            }
            let timeout = match s.role {
                Role::Connected if now.duration_since(s.connected_at) > login => {
                    Some(ProtocolCode::LoginTimeout)
                }
                Role::Connected => None,
                _ if now.duration_since(s.last_recv) > idle => Some(ProtocolCode::IdleTimeout),
                _ => None,
            };
            if let Some(code) = timeout {
                GatewayStats::add(&self.stats.timeouts);
                self.sessions.protocol_error(i, code, 0);
            } else if !matches!(s.role, Role::Connected) && now.duration_since(s.last_send) >= hb {
                self.sessions.send(i, &Heartbeat {}.into());
            }
        }
        let stats = &self.stats;
        stats
            .sessions_open
            .store(self.sessions.open_count as u64, Ordering::Relaxed);
        stats
            .outbound_bytes
            .store(queued_total as u64, Ordering::Relaxed);
        stats
            .outbound_bytes_peak
            .fetch_max(self.sessions.outbound_peak as u64, Ordering::Relaxed);
    }

    fn flush_dirty(&mut self) {
        let dirty = std::mem::take(&mut self.sessions.dirty);
        for &i in &dirty {
            let Some(s) = self.sessions.get(i) else {
                continue;
            };
            s.dirty = false;
            if s.dead {
                continue;
            }
            if s.flush().is_err() {
                self.sessions.end(i, Ending::Abort);
            }
        }
        let mut dirty = dirty;
        dirty.clear();
        if self.sessions.dirty.is_empty() {
            self.sessions.dirty = dirty;
        }
    }

    /// Removes the sessions that are dead or whose linger ran out.
    fn reap(&mut self) {
        if self.sessions.ending.is_empty() {
            return;
        }
        let now = self.sessions.now;
        let ending = std::mem::take(&mut self.sessions.ending);
        for i in ending {
            let Some(s) = self.sessions.get(i) else {
                continue;
            };
            if !(s.dead || s.closing_until.is_some_and(|t| now >= t)) {
                self.sessions.ending.push(i);
                continue;
            }
            let Some(mut s) = self.sessions.slots[i].take() else {
                continue;
            };
            let _ = self.registry.deregister(&mut s.stream);
            self.routes.by_origin.remove(&s.origin);
            if let Some(account) = s.account()
                && let Some(list) = self.routes.by_account.get_mut(&account)
            {
                list.retain(|&j| j != i);
                if list.is_empty() {
                    self.routes.by_account.remove(&account);
                }
            }
            self.sessions.free.push(i);
            self.sessions.open_count -= 1;
        }
    }

    /// Ends every session (cancel-on-disconnect applies), submits the resulting commands
    /// (for up to a second while the ring is busy) and flushes what it can.
    fn shut_down(&mut self) {
        for i in 0..self.sessions.slots.len() {
            let bye = Logout {
                code: GatewayCode::ShuttingDown.code(),
            };
            self.sessions.end(i, Ending::Graceful(bye.into()));
        }
        let deadline = Instant::now() + Duration::from_secs(1);
        while !self.sessions.internal.is_empty() && Instant::now() < deadline {
            self.submit_internal();
            if !self.sessions.internal.is_empty() {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        if !self.sessions.internal.is_empty() {
            tracing::warn!(
                left = self.sessions.internal.len(),
                "Cancel-on-disconnect commands could not be submitted before shutdown."
            );
        }
        self.flush_dirty();
        let open = self.sessions.slots.iter().flatten().count();
        tracing::info!(sessions_closed = open, "The gateway stopped.");
    }
}

/// A Login frame of protocol version 1 (its body had no version field).
fn is_login_v1(e: &FrameError) -> bool {
    matches!(
        e,
        FrameError::Decode(DecodeError::BadLength { msg_type, len, .. })
            if *msg_type == Login::TYPE && *len == LOGIN_V1_BODY_LEN
    )
}

fn protocol_code(e: &FrameError) -> (ProtocolCode, u8) {
    match *e {
        FrameError::Empty => (ProtocolCode::FrameEmpty, 0),
        FrameError::TooLarge { .. } => (ProtocolCode::FrameTooLarge, 0),
        FrameError::Decode(DecodeError::UnknownType(t)) => (ProtocolCode::UnknownType, t),
        FrameError::Decode(DecodeError::BadLength { msg_type, .. }) => {
            (ProtocolCode::BadLength, msg_type)
        }
        FrameError::Decode(DecodeError::InvalidField { msg_type, .. }) => {
            (ProtocolCode::InvalidValue, msg_type)
        }
    }
}
