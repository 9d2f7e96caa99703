//! The gateway's event loop: accept, read and decode, dispatch requests, drain the node's
//! output into the sessions, flush, time out, reap. See the parent module for the
//! invariants; this file is the mechanics.
//!
//! One iteration: `poll` (woken by sockets, the node's output waker, or the tick timeout) ->
//! accept -> drain output -> read the sessions that have input (a byte budget each) -> retry
//! internal commands (cancel-on-disconnect) -> timers (every `TICK`) -> flush -> reap.

use super::mirror::Mirror;
use super::session::{AdminAccumulator, Ending, Role, Session};
use super::{Drained, GatewayConfig, GatewayStats, LISTENER, NodeLink, OutputRef, WAKER};
use crate::auth::tokens_equal;
use crate::protocol::{
    AccountQuery, AccountSnapshot, FLAG_CANCEL_ON_DISCONNECT, FLAG_NO_REPLAY, FrameError,
    GatewayCode, Heartbeat, Login, LoginAccepted, LoginDiverged, LoginRejected, Logout, Message,
    OpenOrders, OrderRejected, OrderReport, OrderStatus, PositionReport, ProtocolCode,
    ProtocolError, QueryDone, RESERVED_KEY_BIT, RequestRejected, TokenIssued, WireOrderState,
    split_frame,
};
use crate::protocol::{AdminResult, DecodeError};
use crate::ratelimit::TokenBucket;
use kuku_engine::readmodel::{OrderState, OrderView};
use kuku_engine::{
    AccountId, ClientOrderId, Command, Event, FeeSchedule, NewOrder, OrderId, RegisterSymbol,
    RejectReason, RequestKind, TaxRates,
};
use mio::net::TcpListener;
use mio::{Events, Interest, Poll, Registry, Token};
use rustc_hash::FxHashMap;
use std::collections::VecDeque;
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
/// How long a closing session may take to flush and see the peer close.
const LINGER: Duration = Duration::from_secs(1);
/// Items in one OpenOrders reply at most (then QueryDone says Truncated).
pub(super) const REPORTS_MAX: usize = 4_096;
/// First origin id of this gateway's sessions: far from the small ids in-process clients use.
const ORIGIN_BASE: u64 = 1 << 48;

fn now_unix_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// The session table and everything a send or a close touches.
struct Sessions {
    slots: Vec<Option<Session>>,
    free: Vec<usize>,
    open_count: usize,
    /// Sessions with queued output to flush this iteration.
    dirty: Vec<usize>,
    /// Sessions that are closing or dead, checked by `reap`.
    ending: Vec<usize>,
    /// Commands the gateway itself must submit (cancel-on-disconnect), retried while Busy.
    internal: VecDeque<(u64, Command)>,
    last_internal_key: u64,
    outbound_bytes_max: usize,
    outbound_peak: usize,
    now: Instant,
    stats: Arc<GatewayStats>,
}

impl Sessions {
    #[inline]
    fn get(&mut self, i: usize) -> Option<&mut Session> {
        self.slots.get_mut(i).and_then(Option::as_mut)
    }

    /// Queues `message` for session `i` (an open one); a session whose queue overflows is
    /// aborted as a slow reader.
    #[inline]
    fn send(&mut self, i: usize, message: &Message) {
        let Some(s) = self.slots.get_mut(i).and_then(Option::as_mut) else {
            return;
        };
        if !s.is_open() {
            return;
        }
        message.encode(&mut s.out);
        s.last_send = self.now;
        let queued = s.queued_bytes();
        if queued > self.outbound_bytes_max {
            GatewayStats::add(&self.stats.slow_readers);
            tracing::debug!(origin = s.origin, queued, "A slow reader was disconnected.");
            self.end(i, Ending::Abort);
            return;
        }
        self.outbound_peak = self.outbound_peak.max(queued);
        if !s.dirty {
            s.dirty = true;
            self.dirty.push(i);
        }
    }

    /// Starts closing session `i`; cancel-on-disconnect is queued here.
    fn end(&mut self, i: usize, ending: Ending) {
        let now = self.now;
        let Some(s) = self.slots.get_mut(i).and_then(Option::as_mut) else {
            return;
        };
        if !s.is_open() {
            if ending == Ending::Abort {
                s.dead = true;
            }
            return;
        }
        match ending {
            Ending::Graceful(message) => {
                if matches!(message, Message::ProtocolError(_)) {
                    GatewayStats::add(&self.stats.protocol_errors);
                }
                message.encode(&mut s.out);
                s.closing_until = Some(now + LINGER);
                s.inbound = Vec::new();
                if !s.dirty {
                    s.dirty = true;
                    self.dirty.push(i);
                }
            }
            Ending::Abort => s.dead = true,
        }
        if let Role::Trading {
            account,
            cancel_on_disconnect: true,
        } = s.role
        {
            let key = (now_unix_ns() | RESERVED_KEY_BIT).max(self.last_internal_key + 1);
            self.last_internal_key = key;
            let cancel = Command::CancelAll {
                account,
                request_id: ClientOrderId(key),
                symbol: None,
            };
            self.internal.push_back((s.origin, cancel));
            GatewayStats::add(&self.stats.cancel_on_disconnect);
        }
        self.ending.push(i);
    }

    fn protocol_error(&mut self, i: usize, code: ProtocolCode, msg_type: u8) {
        let m = ProtocolError {
            code: code.code(),
            msg_type,
        };
        self.end(i, Ending::Graceful(m.into()));
    }
}

/// Where events and replies go.
#[derive(Default)]
struct Routes {
    by_account: FxHashMap<AccountId, Vec<usize>>,
    by_origin: FxHashMap<u64, usize>,
}

pub(super) struct EventLoop<L> {
    poll: Poll,
    registry: Registry,
    listener: TcpListener,
    link: L,
    config: GatewayConfig,
    mirror: Mirror,
    sessions: Sessions,
    routes: Routes,
    next_origin: u64,
    /// Sessions that may have unread input (edge-triggered readiness).
    ready: Vec<usize>,
    accept_blocked: bool,
    node_gone: bool,
    stop: Arc<AtomicBool>,
    stats: Arc<GatewayStats>,
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
            sessions: Sessions {
                slots: Vec::new(),
                free: Vec::new(),
                open_count: 0,
                dirty: Vec::new(),
                ending: Vec::new(),
                internal: VecDeque::new(),
                last_internal_key: 0,
                outbound_bytes_max: gateway.config.outbound_bytes_max,
                outbound_peak: 0,
                now: Instant::now(),
                stats: Arc::clone(&stats),
            },
            config: gateway.config,
            mirror: gateway.mirror,
            routes: Routes::default(),
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
        let bucket = TokenBucket::new(self.config.rate_per_s, self.config.burst, now);
        self.sessions.slots[i] = Some(Session::new(stream, origin, bucket, now));
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
                on_output(mirror, sessions, routes, out);
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
            (Role::Trading { account, .. }, m) => {
                let account = *account;
                self.trading_request(i, account, m);
            }
            (Role::Admin { .. }, m) => self.admin_request(i, m),
        }
    }

    fn login(&mut self, i: usize, login: Login) {
        let origin = self.sessions.get(i).map_or(0, |s| s.origin);
        if !self
            .config
            .serving
            .load(std::sync::atomic::Ordering::Acquire)
        {
            GatewayStats::add(&self.stats.login_rejects);
            let m = LoginRejected {
                code: GatewayCode::NotPrimary.code(),
            };
            return self.sessions.end(i, Ending::Graceful(m.into()));
        }
        if login.account.0 == 0 {
            return self.admin_login(i, login, origin);
        }
        if login.flags & !(FLAG_CANCEL_ON_DISCONNECT | FLAG_NO_REPLAY) != 0 {
            return self
                .sessions
                .protocol_error(i, ProtocolCode::InvalidValue, Login::TYPE);
        }
        let account = login.account;
        if self.config.secret.verify(account, &login.token)
            && let Some(replay_from_seq) = self
                .mirror
                .history
                .diverged(account, login.last_seen_acct_seq)
        {
            GatewayStats::add(&self.stats.login_rejects);
            let m = LoginDiverged {
                code: GatewayCode::HistoryDiverged.code(),
                replay_from_seq,
            };
            return self.sessions.end(i, Ending::Graceful(m.into()));
        }
        let reject = if !self.config.secret.verify(account, &login.token) {
            Some(GatewayCode::InvalidToken.code())
        } else {
            match self.mirror.read_model.accounts.get(&account) {
                None => Some(RejectReason::UnknownAccount.code()),
                Some(a) if login.last_seen_acct_seq > a.acct_seq => {
                    Some(GatewayCode::SeqAhead.code())
                }
                Some(_) => None,
            }
        };
        if let Some(code) = reject {
            GatewayStats::add(&self.stats.login_rejects);
            let m = LoginRejected { code };
            return self.sessions.end(i, Ending::Graceful(m.into()));
        }
        let acct_seq_last = self
            .mirror
            .read_model
            .accounts
            .get(&account)
            .map_or(0, |a| a.acct_seq);
        // Replay the newest held messages that fit in half the outbound bound; older ones
        // are a gap the client sees in `replay_first_seq`.
        let held: Vec<(u64, Message)> = if login.flags & FLAG_NO_REPLAY != 0 {
            Vec::new()
        } else {
            self.mirror
                .history
                .after(account, login.last_seen_acct_seq)
                .map(|(s, m)| (s, *m))
                .collect()
        };
        let budget = self.config.outbound_bytes_max / 2;
        let mut bytes = 0;
        let mut first = held.len();
        while first > 0 && bytes + held[first - 1].1.frame_len() <= budget {
            bytes += held[first - 1].1.frame_len();
            first -= 1;
        }
        let replay = &held[first..];
        let accepted = LoginAccepted {
            account,
            session_id: origin,
            acct_seq_last,
            replay_first_seq: replay.first().map_or(0, |(s, _)| *s),
            replay_count: replay.len() as u32,
            heartbeat_interval_ms: self.config.heartbeat_interval.as_millis() as u32,
            idle_timeout_ms: self.config.idle_timeout.as_millis() as u32,
            rate_per_s: self.config.rate_per_s,
            burst: self.config.burst,
        };
        self.sessions.send(i, &accepted.into());
        for (_, m) in replay {
            self.sessions.send(i, m);
        }
        if let Some(s) = self.sessions.get(i) {
            s.role = Role::Trading {
                account,
                cancel_on_disconnect: login.flags & FLAG_CANCEL_ON_DISCONNECT != 0,
            };
            self.routes.by_account.entry(account).or_default().push(i);
            GatewayStats::add(&self.stats.logins);
        }
    }

    fn admin_login(&mut self, i: usize, login: Login, origin: u64) {
        if !tokens_equal(&self.config.admin_token, &login.token) {
            GatewayStats::add(&self.stats.login_rejects);
            let m = LoginRejected {
                code: GatewayCode::InvalidToken.code(),
            };
            return self.sessions.end(i, Ending::Graceful(m.into()));
        }
        if login.flags != 0 {
            return self
                .sessions
                .protocol_error(i, ProtocolCode::InvalidValue, Login::TYPE);
        }
        let accepted = LoginAccepted {
            account: AccountId(0),
            session_id: origin,
            acct_seq_last: 0,
            replay_first_seq: 0,
            replay_count: 0,
            heartbeat_interval_ms: self.config.heartbeat_interval.as_millis() as u32,
            idle_timeout_ms: self.config.idle_timeout.as_millis() as u32,
            rate_per_s: 0,
            burst: 0,
        };
        self.sessions.send(i, &accepted.into());
        if let Some(s) = self.sessions.get(i) {
            s.role = Role::Admin {
                pending: VecDeque::new(),
                result: AdminAccumulator::default(),
            };
            GatewayStats::add(&self.stats.logins);
        }
    }

    fn trading_request(&mut self, i: usize, account: AccountId, message: Message) {
        let Some(reject) = gateway_reject(&message) else {
            return self.sessions.protocol_error(
                i,
                ProtocolCode::UnexpectedMessage,
                message.msg_type(),
            );
        };
        GatewayStats::add(&self.stats.requests);
        let now = self.sessions.now;
        let Some(s) = self.sessions.get(i) else {
            return;
        };
        let origin = s.origin;
        if !s.bucket.try_take(now) {
            GatewayStats::add(&self.stats.rate_limited);
            return self
                .sessions
                .send(i, &reject(GatewayCode::RateLimited.code()));
        }
        let command = match message {
            Message::OrderStatus(q) => return self.order_status(i, account, q),
            Message::OpenOrders(q) => return self.open_orders(i, account, q),
            Message::AccountQuery(q) => return self.account_query(i, Some(account), q),
            m => self.trading_command(account, m),
        };
        // Numbers beyond the engine's ranges are refused here, before the journal, with the
        // code the engine would give them (the request id stays unused).
        let command = command.and_then(|c| {
            kuku_engine::limits::check_ranges(&c)
                .map(|()| c)
                .map_err(RejectReason::code)
        });
        let result = command.and_then(|c| {
            self.link.submit(origin, c).map_err(|_| {
                GatewayStats::add(&self.stats.busy);
                GatewayCode::Busy.code()
            })
        });
        if let Err(code) = result {
            self.sessions.send(i, &reject(code));
        }
    }

    /// The command for an order-entry request, or the code to reject it with.
    fn trading_command(&self, account: AccountId, message: Message) -> Result<Command, u16> {
        let reserved = |key: ClientOrderId| {
            if key.0 & RESERVED_KEY_BIT != 0 {
                Err(GatewayCode::ReservedKey.code())
            } else {
                Ok(())
            }
        };
        let symbol = |code| {
            self.mirror
                .symbol_id(code)
                .ok_or(RejectReason::UnknownSymbol.code())
        };
        Ok(match message {
            Message::NewOrder(o) => {
                reserved(o.client_order_id)?;
                Command::PlaceOrder(NewOrder {
                    account,
                    client_order_id: o.client_order_id,
                    symbol: symbol(o.symbol)?,
                    side: o.side,
                    order_type: o.order_type,
                    tif: o.tif,
                    price: o.price,
                    qty: o.qty,
                })
            }
            Message::Cancel(c) => {
                reserved(c.request_id)?;
                Command::CancelOrder {
                    account,
                    request_id: c.request_id,
                    order_id: c.order_id,
                }
            }
            Message::CancelAll(c) => {
                reserved(c.request_id)?;
                Command::CancelAll {
                    account,
                    request_id: c.request_id,
                    symbol: c.symbol.map(symbol).transpose()?,
                }
            }
            Message::Modify(m) => {
                reserved(m.request_id)?;
                Command::ModifyOrder {
                    account,
                    request_id: m.request_id,
                    order_id: m.order_id,
                    new_qty: m.new_qty,
                    new_price: m.new_price,
                }
            }
            _ => return Err(GatewayCode::NotPermitted.code()),
        })
    }

    fn order_status(&mut self, i: usize, account: AccountId, q: OrderStatus) {
        let report = self
            .mirror
            .read_model
            .orders
            .get(q.order_id)
            .filter(|o| o.info.account == account)
            .map(|o| order_report(&self.mirror, q.request_id, o));
        let done = match report {
            Some(r) => {
                self.sessions.send(i, &r);
                QueryDone {
                    request_id: q.request_id,
                    code: 0,
                    count: 1,
                }
            }
            None => QueryDone {
                request_id: q.request_id,
                code: RejectReason::UnknownOrder.code(),
                count: 0,
            },
        };
        self.sessions.send(i, &done.into());
    }

    fn open_orders(&mut self, i: usize, account: AccountId, q: OpenOrders) {
        let symbol = q.symbol.map(|c| self.mirror.symbol_id(c));
        let mut count = 0u32;
        let mut truncated = false;
        for o in self.mirror.read_model.open_orders(account) {
            if symbol.is_some_and(|s| s != Some(o.info.symbol)) {
                continue;
            }
            if count as usize == REPORTS_MAX {
                truncated = true;
                break;
            }
            self.sessions
                .send(i, &order_report(&self.mirror, q.request_id, o));
            count += 1;
        }
        let code = if truncated {
            GatewayCode::Truncated.code()
        } else {
            0
        };
        let done = QueryDone {
            request_id: q.request_id,
            code,
            count,
        };
        self.sessions.send(i, &done.into());
    }

    /// `own`: the trading session's account (None: an admin session, which may ask for any).
    fn account_query(&mut self, i: usize, own: Option<AccountId>, q: AccountQuery) {
        let target = match (own, q.account.0) {
            (Some(own), 0) => own,
            (Some(own), _) if q.account != own => {
                let done = QueryDone {
                    request_id: q.request_id,
                    code: GatewayCode::NotPermitted.code(),
                    count: 0,
                };
                return self.sessions.send(i, &done.into());
            }
            _ => q.account,
        };
        let rm = &self.mirror.read_model;
        let Some(a) = rm.accounts.get(&target).filter(|_| target.0 != 0) else {
            let done = QueryDone {
                request_id: q.request_id,
                code: RejectReason::UnknownAccount.code(),
                count: 0,
            };
            return self.sessions.send(i, &done.into());
        };
        let positions: Vec<_> = rm.positions_of(target).copied().collect();
        let snapshot = AccountSnapshot {
            request_id: q.request_id,
            account: target,
            cash: a.cash,
            cash_hold: a.cash_hold,
            available: a.available(),
            acct_seq: a.acct_seq,
            positions: positions.len() as u32,
        };
        self.sessions.send(i, &snapshot.into());
        for p in &positions {
            let report = PositionReport {
                request_id: q.request_id,
                symbol: self.mirror.code(p.symbol),
                qty: p.qty(),
                qty_hold: p.hold(),
                cost_basis: p.cost_basis,
                realized_pnl: p.realized_pnl,
            };
            self.sessions.send(i, &report.into());
        }
        let done = QueryDone {
            request_id: q.request_id,
            code: 0,
            count: positions.len() as u32,
        };
        self.sessions.send(i, &done.into());
    }

    fn admin_request(&mut self, i: usize, message: Message) {
        let ty = message.msg_type();
        let command = match message {
            Message::AccountQuery(q) => return self.account_query(i, None, q),
            Message::IssueToken(t) => {
                let reply: Message = if self.mirror.read_model.accounts.contains_key(&t.account) {
                    TokenIssued {
                        request_id: t.request_id,
                        account: t.account,
                        token: self.config.secret.account_token(t.account),
                    }
                    .into()
                } else {
                    admin_failure(t.request_id, ty, RejectReason::UnknownAccount.code())
                };
                return self.sessions.send(i, &reply);
            }
            m => admin_command(m),
        };
        let Some((request_id, command)) = command else {
            return self
                .sessions
                .protocol_error(i, ProtocolCode::UnexpectedMessage, ty);
        };
        let Some(s) = self.sessions.get(i) else {
            return;
        };
        let origin = s.origin;
        if let Err(reason) = kuku_engine::limits::check_ranges(&command) {
            let reply = admin_failure(request_id, ty, reason.code());
            return self.sessions.send(i, &reply);
        }
        match self.link.submit(origin, command) {
            Ok(()) => {
                if let Some(Session {
                    role: Role::Admin { pending, .. },
                    ..
                }) = self.sessions.get(i)
                {
                    pending.push_back((request_id, ty));
                }
            }
            Err(_) => {
                GatewayStats::add(&self.stats.busy);
                let reply = admin_failure(request_id, ty, GatewayCode::Busy.code());
                self.sessions.send(i, &reply);
            }
        }
    }

    fn submit_internal(&mut self) {
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

/// Handles one output event: the mirror, the account's sessions, the origin's admin reply.
fn on_output(mirror: &mut Mirror, sessions: &mut Sessions, routes: &Routes, out: OutputRef<'_>) {
    let translated = mirror.apply(out.seq, out.ts, out.event);
    for a in translated.iter().flatten() {
        if a.acct_seq > 0 {
            if let Some(list) = routes.by_account.get(&a.account) {
                for &i in list {
                    sessions.send(i, &a.message);
                }
            }
        } else if let Some(&i) = routes.by_origin.get(&out.origin)
            && sessions
                .get(i)
                .is_some_and(|s| matches!(s.role, Role::Trading { .. }))
        {
            // A reject without a sequence number (no valid account): only the sender hears.
            sessions.send(i, &a.message);
        }
    }
    if out.origin == 0 {
        return;
    }
    let Some(&i) = routes.by_origin.get(&out.origin) else {
        return;
    };
    let reply = match sessions.get(i) {
        Some(Session {
            role: Role::Admin { pending, result },
            ..
        }) if !pending.is_empty() => {
            accumulate(result, out.event);
            if out.last {
                let (request_id, ty) = pending.pop_front().unwrap_or((0, 0));
                let r = result.result(request_id, ty);
                *result = AdminAccumulator::default();
                Some(r)
            } else {
                None
            }
        }
        _ => None,
    };
    if let Some(r) = reply {
        sessions.send(i, &r.into());
    }
}

fn accumulate(result: &mut AdminAccumulator, event: &Event) {
    match *event {
        Event::AccountOpened {
            account, resent, ..
        } => {
            result.account = account;
            result.resent |= resent;
        }
        Event::TransactionStatusChanged {
            tx,
            account,
            from,
            to,
            resent,
            ..
        } => {
            if !result.tx_created || from.is_none() {
                result.tx_created |= from.is_none();
                result.tx_id = tx.0;
                result.tx_status = Some(to);
            }
            result.account = account;
            result.resent |= resent;
        }
        Event::CommandRejected {
            account, reason, ..
        } => {
            result.code = reason.code();
            result.account = account;
        }
        Event::SymbolRegistered { symbol } => result.symbol_id = symbol.id.0,
        _ => {}
    }
}

fn admin_failure(request_id: u64, request_type: u8, code: u16) -> Message {
    AdminResult {
        request_id,
        code,
        request_type,
        resent: false,
        account: AccountId(0),
        tx_id: kuku_engine::TxId(0),
        tx_status: None,
        symbol_id: 0,
    }
    .into()
}

/// The engine command of an admin request (and its request id).
fn admin_command(message: Message) -> Option<(u64, Command)> {
    Some(match message {
        Message::OpenAccount(m) => (m.request_id, Command::OpenAccount { owner: m.owner }),
        Message::Deposit(m) => (
            m.request_id,
            Command::Deposit {
                account: m.account,
                amount: m.amount,
                external_ref: m.external_ref,
            },
        ),
        Message::Withdraw(m) => (
            m.request_id,
            Command::Withdraw {
                account: m.account,
                amount: m.amount,
                external_ref: m.external_ref,
            },
        ),
        Message::ConfirmTransaction(m) => {
            (m.request_id, Command::ConfirmTransaction { tx: m.tx_id })
        }
        Message::FailTransaction(m) => (m.request_id, Command::FailTransaction { tx: m.tx_id }),
        Message::ReverseTransaction(m) => {
            (m.request_id, Command::ReverseTransaction { tx: m.tx_id })
        }
        Message::RegisterSymbol(m) => (
            m.request_id,
            Command::RegisterSymbol(RegisterSymbol {
                code: kuku_engine::SymbolCode::new(m.code.as_str())?,
                name: m.name,
                market: m.market,
                tick_rule: m.tick_rule,
                base_price: m.base_price,
                banded: m.banded,
                lot_size: m.lot_size,
            }),
        ),
        Message::SetFeeSchedule(m) => (
            m.request_id,
            Command::SetFeeSchedule(FeeSchedule {
                commission_ppm: m.commission_ppm,
                kospi: TaxRates {
                    securities_transaction_ppm: m.kospi_securities_transaction_ppm,
                    rural_special_ppm: m.kospi_rural_special_ppm,
                },
                kosdaq: TaxRates {
                    securities_transaction_ppm: m.kosdaq_securities_transaction_ppm,
                    rural_special_ppm: m.kosdaq_rural_special_ppm,
                },
                other: TaxRates {
                    securities_transaction_ppm: m.other_securities_transaction_ppm,
                    rural_special_ppm: m.other_rural_special_ppm,
                },
            }),
        ),
        _ => return None,
    })
}

/// For a trading request: how to reject it with a gateway code (None: not a request).
fn gateway_reject(message: &Message) -> Option<impl Fn(u16) -> Message + use<>> {
    let m = *message;
    let ok = matches!(
        m,
        Message::NewOrder(_)
            | Message::Cancel(_)
            | Message::CancelAll(_)
            | Message::Modify(_)
            | Message::OrderStatus(_)
            | Message::OpenOrders(_)
            | Message::AccountQuery(_)
    );
    ok.then_some(move |code: u16| -> Message {
        let request = |request_id, request, order_id| {
            RequestRejected {
                acct_seq: 0,
                request_id,
                request,
                order_id,
                reason: code,
            }
            .into()
        };
        let done = |request_id| {
            QueryDone {
                request_id,
                code,
                count: 0,
            }
            .into()
        };
        match m {
            Message::NewOrder(o) => OrderRejected {
                acct_seq: 0,
                client_order_id: o.client_order_id,
                symbol: Some(o.symbol),
                reason: code,
                resent: false,
            }
            .into(),
            Message::Cancel(c) => request(c.request_id, RequestKind::Cancel, c.order_id),
            Message::CancelAll(c) => request(c.request_id, RequestKind::CancelAll, OrderId(0)),
            Message::Modify(c) => request(c.request_id, RequestKind::Modify, c.order_id),
            Message::OrderStatus(q) => done(q.request_id),
            Message::OpenOrders(q) => done(q.request_id),
            Message::AccountQuery(q) => done(q.request_id),
            other => other,
        }
    })
}

fn order_report(mirror: &Mirror, request_id: u64, o: &OrderView) -> Message {
    OrderReport {
        request_id,
        order_id: o.info.order_id,
        client_order_id: o.info.client_order_id,
        symbol: mirror.code(o.info.symbol),
        side: o.info.side,
        order_type: o.info.order_type,
        tif: o.info.tif,
        state: match o.state {
            OrderState::New => WireOrderState::New,
            OrderState::PartiallyFilled => WireOrderState::PartiallyFilled,
            OrderState::Filled => WireOrderState::Filled,
            OrderState::Cancelled(_) => WireOrderState::Cancelled,
            OrderState::Expired => WireOrderState::Expired,
        },
        price: o.price,
        qty: o.info.qty,
        leaves: o.leaves,
        filled: o.filled,
    }
    .into()
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
