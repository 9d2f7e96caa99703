//! The Rust client library: a blocking connection that speaks the protocol, a trading client
//! (orders, cancels, queries, the execution stream, reconnect with replay) and an admin
//! client. `kuku client`, `kuku admin`, the tests and the benchmark's setup use it.
//!
//! Replies are matched to requests by their keys (client order id, request id); every other
//! message that arrives meanwhile (fills of other orders, heartbeats aside) is kept in
//! arrival order and handed out by [`TradingClient::next_message`], so nothing the server
//! sends is lost while waiting. The client sends a Heartbeat whenever it has been quiet for
//! the session's heartbeat interval.
//!
//! **Known limitations**: blocking I/O, one request in flight at a time through the helpers
//! (pipelining is possible with [`TradingClient::send`] and [`TradingClient::next_message`]).
//!
//! ```no_run
//! use kuku_gateway::client::{LoginOptions, OrderSpec, TradingClient};
//! use kuku_gateway::protocol::Code;
//! use kuku_engine::{AccountId, Price, Qty, Side};
//!
//! # fn main() -> Result<(), kuku_gateway::GatewayError> {
//! let token = [0u8; 32]; // from `kuku admin issue-token 1`
//! let (mut client, _replayed) =
//!     TradingClient::login("127.0.0.1:7878", AccountId(1), token, LoginOptions::default())?;
//! let code = Code::new("005930").expect("a 6-character code");
//! let reply = client.place(OrderSpec::limit(code, Side::Buy, Qty(10), Price(71_000)))?;
//! println!("{reply:?}");
//! # Ok(())
//! # }
//! ```

use crate::auth::Token;
use crate::error::GatewayError;
use crate::protocol::*;
use kuku_engine::{
    AccountId, Amount, ClientOrderId, ExternalRef, Market, OrderId, OrderType, Price, Qty, Side,
    SymbolName, TickRule, TimeInForce, TxId,
};
use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

/// How long the helpers wait for a reply.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(10);

/// A blocking protocol connection.
pub struct Connection {
    stream: TcpStream,
    inbound: Vec<u8>,
    at: usize,
    last_send: Instant,
    heartbeat_interval: Duration,
}

impl Connection {
    pub fn connect(addr: impl ToSocketAddrs) -> Result<Connection, GatewayError> {
        let stream = TcpStream::connect(addr)?;
        stream.set_nodelay(true)?;
        Ok(Connection {
            stream,
            inbound: Vec::with_capacity(64 * 1024),
            at: 0,
            last_send: Instant::now(),
            heartbeat_interval: Duration::from_secs(1),
        })
    }

    pub fn send(&mut self, message: impl Into<Message>) -> Result<(), GatewayError> {
        let frame = message.into().to_frame();
        self.stream.write_all(&frame)?;
        self.last_send = Instant::now();
        Ok(())
    }

    /// Sends raw bytes (tests of hostile input).
    pub fn send_raw(&mut self, bytes: &[u8]) -> Result<(), GatewayError> {
        self.stream.write_all(bytes)?;
        Ok(())
    }

    /// The next message, waiting up to `timeout` (heartbeats included). Sends a Heartbeat
    /// when the connection has been quiet for the heartbeat interval.
    pub fn recv(&mut self, timeout: Duration) -> Result<Message, GatewayError> {
        let deadline = Instant::now() + timeout;
        loop {
            // Any frame a server sends is at most 3 + 255 bytes.
            match split_frame(&self.inbound[self.at..], u16::MAX as usize)? {
                Some((m, used)) => {
                    self.at += used;
                    if self.at == self.inbound.len() {
                        self.inbound.clear();
                        self.at = 0;
                    }
                    return Ok(m);
                }
                None => {
                    if self.at > 0 {
                        self.inbound.drain(..self.at);
                        self.at = 0;
                    }
                }
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(GatewayError::Timeout(timeout));
            }
            if now.duration_since(self.last_send) >= self.heartbeat_interval {
                self.send(Heartbeat {})?;
            }
            let wait = (deadline - now)
                .min(self.heartbeat_interval)
                .max(Duration::from_millis(1));
            self.stream.set_read_timeout(Some(wait))?;
            let mut chunk = [0u8; 16 * 1024];
            match self.stream.read(&mut chunk) {
                Ok(0) => return Err(GatewayError::Closed),
                Ok(n) => self.inbound.extend_from_slice(&chunk[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock
                            | io::ErrorKind::TimedOut
                            | io::ErrorKind::Interrupted
                    ) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }

    pub fn set_heartbeat_interval(&mut self, interval: Duration) {
        self.heartbeat_interval = interval.max(Duration::from_millis(10));
    }

    pub fn stream(&self) -> &TcpStream {
        &self.stream
    }
}

/// Keys for client order ids and request ids: microseconds since the epoch x 256, so keys
/// of separate runs of the CLI never collide within a trading day.
fn key_base() -> u64 {
    let us = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_micros() as u64);
    (us << 8) & !RESERVED_KEY_BIT
}

/// Login options of a trading session.
#[derive(Clone, Copy, Debug, Default)]
pub struct LoginOptions {
    /// The last per-account sequence number already processed (0: none).
    pub last_seen_acct_seq: u64,
    pub cancel_on_disconnect: bool,
    /// Live messages only (no replay).
    pub no_replay: bool,
}

impl LoginOptions {
    /// Replay everything after `last_seen_acct_seq` (0: the whole held stream).
    pub fn default_from(last_seen_acct_seq: u64) -> LoginOptions {
        LoginOptions {
            last_seen_acct_seq,
            ..LoginOptions::default()
        }
    }
}

/// An order to place.
#[derive(Clone, Copy, Debug)]
pub struct OrderSpec {
    pub symbol: Code,
    pub side: Side,
    pub order_type: OrderType,
    pub tif: TimeInForce,
    pub price: Price,
    pub qty: Qty,
    /// `None`: the client picks the next key.
    pub client_order_id: Option<ClientOrderId>,
}

impl OrderSpec {
    pub fn limit(symbol: Code, side: Side, qty: Qty, price: Price) -> OrderSpec {
        OrderSpec {
            symbol,
            side,
            order_type: OrderType::Limit,
            tif: TimeInForce::Day,
            price,
            qty,
            client_order_id: None,
        }
    }

    pub fn market(symbol: Code, side: Side, qty: Qty) -> OrderSpec {
        OrderSpec {
            order_type: OrderType::Market,
            tif: TimeInForce::Ioc,
            price: Price(0),
            ..OrderSpec::limit(symbol, side, qty, Price(0))
        }
    }
}

/// A trading session that survives failovers. It knows every node's address; it logs in to
/// whichever is the primary (a standby answers `9014 NotPrimary`), from the last per-account
/// seq it saw, so the messages it missed are replayed (kept in [`FailoverClient::missed`]);
/// and when the connection is lost or a reply times out while an order is in flight, it logs
/// in again and resends that order with the same client order id. The engine answers a resend
/// with the original outcome (`resent` set), so an order is never placed twice.
///
/// After an asynchronous failover that lost the old primary's last messages, the new primary
/// answers the login with `9016 HistoryDiverged` and the seq to replay from: the client
/// records the divergence in [`FailoverClient::diverged`] (what it saw after that seq never
/// happened), drops the messages it kept after it, and logs in again from it. Orders whose
/// outcome was in the lost part are resent by `place` as usual: the new primary decides them
/// afresh.
///
/// **Known limitations**: one order in flight at a time (`place` waits for the outcome); a
/// cancel or modify is not resent (the caller asks for the order's status instead).
pub struct FailoverClient {
    addrs: Vec<std::net::SocketAddr>,
    account: AccountId,
    token: Token,
    session: Option<TradingClient>,
    next_key: u64,
    /// The last per-account seq seen over every session.
    pub last_seen_acct_seq: u64,
    /// Messages replayed at each re-login (the caller drains them).
    pub missed: Vec<Message>,
    /// How long `place` keeps trying to reach a primary.
    pub failover_timeout: Duration,
    /// Orders resent after a lost connection or a timeout.
    pub resends: u64,
    /// Each failover that lost messages this client had seen: (its last seen seq then, the seq
    /// the new primary replays from).
    pub diverged: Vec<(u64, u64)>,
}

impl FailoverClient {
    pub fn new(addrs: &[std::net::SocketAddr], account: AccountId, token: Token) -> FailoverClient {
        FailoverClient {
            addrs: addrs.to_vec(),
            account,
            token,
            session: None,
            next_key: key_base(),
            last_seen_acct_seq: 0,
            missed: Vec::new(),
            failover_timeout: Duration::from_secs(60),
            resends: 0,
            diverged: Vec::new(),
        }
    }

    /// A fresh client order id.
    pub fn next_key(&mut self) -> ClientOrderId {
        self.next_key += 1;
        ClientOrderId(self.next_key)
    }

    /// The current session, logging in to the primary first if there is none.
    fn session(&mut self, deadline: Instant) -> Result<&mut TradingClient, GatewayError> {
        if self.session.is_none() {
            let options = LoginOptions::default_from(self.last_seen_acct_seq);
            let mut options = options;
            let (client, replayed) = loop {
                match TradingClient::login_any(&self.addrs, self.account, self.token, options) {
                    Ok((client, replayed, _)) => break (client, replayed),
                    Err(GatewayError::HistoryDiverged {
                        last_seen,
                        replay_from_seq,
                    }) => {
                        // What was seen after `replay_from_seq` was lost with the old primary.
                        self.diverged.push((last_seen, replay_from_seq));
                        self.missed
                            .retain(|m| acct_seq_of(m) == 0 || acct_seq_of(m) <= replay_from_seq);
                        self.last_seen_acct_seq = replay_from_seq;
                        options = LoginOptions::default_from(replay_from_seq);
                    }
                    Err(e) if Instant::now() >= deadline => return Err(e),
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            };
            self.missed.extend(replayed);
            self.session = Some(client);
        }
        Ok(self.session.as_mut().expect("just logged in"))
    }

    /// Places an order (a fresh key unless `spec` has one) and returns its outcome
    /// (`OrderAccepted` or `OrderRejected`), resending across failovers (see the type docs).
    pub fn place(&mut self, spec: OrderSpec) -> Result<Message, GatewayError> {
        let key = spec.client_order_id.unwrap_or_else(|| self.next_key());
        let spec = OrderSpec {
            client_order_id: Some(key),
            ..spec
        };
        let deadline = Instant::now() + self.failover_timeout;
        let mut attempt = 0u32;
        loop {
            let session = self.session(deadline)?;
            let outcome = session.place(spec);
            let seen = session.last_seen_acct_seq;
            self.last_seen_acct_seq = self.last_seen_acct_seq.max(seen);
            match outcome {
                Ok(m) => return Ok(m),
                Err(e @ GatewayError::LoginRejected { .. }) => return Err(e),
                Err(e) if Instant::now() >= deadline => return Err(e),
                Err(_) => {
                    // Lost or timed out with the order in flight: find the primary, resend.
                    self.session = None;
                    self.resends += 1;
                    attempt += 1;
                    debug_assert!(attempt < 10_000, "bounded by the deadline");
                }
            }
        }
    }
}

/// A trading session.
pub struct TradingClient {
    conn: Connection,
    pub account: AccountId,
    pub accepted: LoginAccepted,
    next_key: u64,
    /// Messages that arrived while waiting for another reply.
    unread: VecDeque<Message>,
    /// The last per-account sequence number seen (for a reconnect).
    pub last_seen_acct_seq: u64,
}

/// The per-account sequence number of a sequenced message (0 for others).
pub fn acct_seq_of(m: &Message) -> u64 {
    match m {
        Message::OrderAccepted(x) => x.acct_seq,
        Message::OrderRejected(x) => x.acct_seq,
        Message::Execution(x) => x.acct_seq,
        Message::Cancelled(x) => x.acct_seq,
        Message::Modified(x) => x.acct_seq,
        Message::RequestRejected(x) => x.acct_seq,
        Message::RequestResent(x) => x.acct_seq,
        Message::CancelAllDone(x) => x.acct_seq,
        Message::TransactionUpdate(x) => x.acct_seq,
        Message::AccountOpened(x) => x.acct_seq,
        Message::CommandRejected(x) => x.acct_seq,
        _ => 0,
    }
}

fn login_reply(conn: &mut Connection, last_seen: u64) -> Result<LoginAccepted, GatewayError> {
    match conn.recv(REPLY_TIMEOUT)? {
        Message::LoginAccepted(a) => {
            conn.set_heartbeat_interval(Duration::from_millis(a.heartbeat_interval_ms as u64));
            Ok(a)
        }
        Message::LoginRejected(r) => Err(GatewayError::LoginRejected { code: r.code }),
        Message::LoginDiverged(d) => Err(GatewayError::HistoryDiverged {
            last_seen,
            replay_from_seq: d.replay_from_seq,
        }),
        Message::ProtocolError(p) => Err(GatewayError::ServerProtocolError { code: p.code }),
        other => Err(GatewayError::Unexpected(format!("{other:?}"))),
    }
}

impl TradingClient {
    /// Connects, logs in, and reads the replayed messages (returned in order).
    pub fn login(
        addr: impl ToSocketAddrs,
        account: AccountId,
        token: Token,
        options: LoginOptions,
    ) -> Result<(TradingClient, Vec<Message>), GatewayError> {
        let mut conn = Connection::connect(addr)?;
        let mut flags = 0;
        if options.cancel_on_disconnect {
            flags |= FLAG_CANCEL_ON_DISCONNECT;
        }
        if options.no_replay {
            flags |= FLAG_NO_REPLAY;
        }
        conn.send(Login {
            version: PROTOCOL_VERSION,
            account,
            flags,
            last_seen_acct_seq: options.last_seen_acct_seq,
            token,
        })?;
        let accepted = login_reply(&mut conn, options.last_seen_acct_seq)?;
        let mut client = TradingClient {
            conn,
            account,
            accepted,
            next_key: key_base(),
            unread: VecDeque::new(),
            last_seen_acct_seq: options.last_seen_acct_seq,
        };
        let mut replayed = Vec::with_capacity(accepted.replay_count as usize);
        while replayed.len() < accepted.replay_count as usize {
            let m = client.recv_raw(REPLY_TIMEOUT)?;
            if !matches!(m, Message::Heartbeat(_)) {
                replayed.push(m);
            }
        }
        Ok((client, replayed))
    }

    /// Logs in to the first of `addrs` that is the primary: a node answering `9014
    /// NotPrimary` (a standby, a fenced old primary) or not reachable is skipped. Returns the
    /// session, its replayed messages and the index of the address that took it. After a
    /// failover, log in with `last_seen_acct_seq` and resend every order whose outcome was not
    /// seen with the same `client_order_id`: the engine answers a resend with the original
    /// outcome (`RequestResent`), so nothing is placed twice.
    pub fn login_any(
        addrs: &[std::net::SocketAddr],
        account: AccountId,
        token: Token,
        options: LoginOptions,
    ) -> Result<(TradingClient, Vec<Message>, usize), GatewayError> {
        let mut last = GatewayError::Unexpected("no address given".into());
        for (i, addr) in addrs.iter().enumerate() {
            match TradingClient::login(addr, account, token, options) {
                Ok((client, replayed)) => return Ok((client, replayed, i)),
                // The primary answered: the caller must decide (see `FailoverClient`).
                Err(e @ GatewayError::HistoryDiverged { .. }) => return Err(e),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    /// A fresh key for a client order id or request id.
    pub fn next_key(&mut self) -> ClientOrderId {
        self.next_key += 1;
        ClientOrderId(self.next_key)
    }

    pub fn send(&mut self, message: impl Into<Message>) -> Result<(), GatewayError> {
        self.conn.send(message)
    }

    fn recv_raw(&mut self, timeout: Duration) -> Result<Message, GatewayError> {
        let m = self.conn.recv(timeout)?;
        let seq = acct_seq_of(&m);
        if seq > self.last_seen_acct_seq {
            self.last_seen_acct_seq = seq;
        }
        match m {
            Message::ProtocolError(p) => Err(GatewayError::ServerProtocolError { code: p.code }),
            Message::Logout(l) => Err(GatewayError::LoggedOut { code: l.code }),
            m => Ok(m),
        }
    }

    /// The next message (buffered ones first), heartbeats skipped; `Ok(None)` on timeout.
    pub fn next_message(&mut self, timeout: Duration) -> Result<Option<Message>, GatewayError> {
        if let Some(m) = self.unread.pop_front() {
            return Ok(Some(m));
        }
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.recv_raw(left) {
                Ok(Message::Heartbeat(_)) => continue,
                Ok(m) => return Ok(Some(m)),
                Err(GatewayError::Timeout(_)) => return Ok(None),
                Err(e) => return Err(e),
            }
        }
    }

    /// Waits for the first message `pick` accepts; others are kept for `next_message`.
    fn wait_for<T>(
        &mut self,
        mut pick: impl FnMut(&Message) -> Option<T>,
    ) -> Result<T, GatewayError> {
        let deadline = Instant::now() + REPLY_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let m = self.recv_raw(left)?;
            if let Some(t) = pick(&m) {
                return Ok(t);
            }
            if !matches!(m, Message::Heartbeat(_)) {
                self.unread.push_back(m);
            }
        }
    }

    /// Places an order and waits for OrderAccepted or OrderRejected.
    pub fn place(&mut self, spec: OrderSpec) -> Result<Message, GatewayError> {
        let client_order_id = spec.client_order_id.unwrap_or_else(|| self.next_key());
        self.send(NewOrder {
            client_order_id,
            symbol: spec.symbol,
            side: spec.side,
            order_type: spec.order_type,
            tif: spec.tif,
            price: spec.price,
            qty: spec.qty,
        })?;
        self.wait_for(|m| match m {
            Message::OrderAccepted(a) if a.client_order_id == client_order_id => Some(*m),
            Message::OrderRejected(r) if r.client_order_id == client_order_id => Some(*m),
            _ => None,
        })
    }

    /// Cancels an order: Cancelled, RequestRejected or RequestResent.
    pub fn cancel(&mut self, order_id: OrderId) -> Result<Message, GatewayError> {
        let request_id = self.next_key();
        self.send(Cancel {
            request_id,
            order_id,
        })?;
        self.wait_for(|m| request_reply(m, request_id))
    }

    /// Cancels every live order (of one symbol): the Cancelled messages are kept for
    /// `next_message`; returns CancelAllDone, RequestRejected or RequestResent.
    pub fn cancel_all(&mut self, symbol: Option<Code>) -> Result<Message, GatewayError> {
        let request_id = self.next_key();
        self.send(CancelAll { request_id, symbol })?;
        self.wait_for(|m| match m {
            Message::Cancelled(_) => None,
            _ => request_reply(m, request_id),
        })
    }

    /// Sets an order's open quantity and price: Modified, RequestRejected or RequestResent.
    pub fn modify(
        &mut self,
        order_id: OrderId,
        new_qty: Qty,
        new_price: Price,
    ) -> Result<Message, GatewayError> {
        let request_id = self.next_key();
        self.send(Modify {
            request_id,
            order_id,
            new_qty,
            new_price,
        })?;
        self.wait_for(|m| request_reply(m, request_id))
    }

    /// One order's state (`Err` carries a reject such as UnknownOrder as `code`).
    pub fn order_status(
        &mut self,
        order_id: OrderId,
    ) -> Result<Result<OrderReport, u16>, GatewayError> {
        let request_id = self.next_key().0;
        self.send(OrderStatus {
            request_id,
            order_id,
        })?;
        let (reports, code) = self.collect_reports(request_id)?;
        Ok(match reports.first() {
            Some(r) if code == 0 => Ok(*r),
            _ => Err(code),
        })
    }

    /// The account's live orders (of one symbol).
    pub fn open_orders(
        &mut self,
        symbol: Option<Code>,
    ) -> Result<(Vec<OrderReport>, u16), GatewayError> {
        let request_id = self.next_key().0;
        self.send(OpenOrders { request_id, symbol })?;
        self.collect_reports(request_id)
    }

    fn collect_reports(
        &mut self,
        request_id: u64,
    ) -> Result<(Vec<OrderReport>, u16), GatewayError> {
        let mut reports = Vec::new();
        loop {
            let done = self.wait_for(|m| match m {
                Message::OrderReport(r) if r.request_id == request_id => Some(Err(*r)),
                Message::QueryDone(d) if d.request_id == request_id => Some(Ok(d.code)),
                _ => None,
            })?;
            match done {
                Err(report) => reports.push(report),
                Ok(code) => return Ok((reports, code)),
            }
        }
    }

    /// The reference data: trading day, phase, fees, and the listed symbols (or one).
    pub fn reference(&mut self, symbol: Option<Code>) -> Result<ReferenceView, GatewayError> {
        let request_id = self.next_key().0;
        self.send(ReferenceQuery { request_id, symbol })?;
        collect_reference(request_id, |pick| self.wait_for(pick))
    }

    /// Balances, holds and positions of the session's account.
    pub fn account(&mut self) -> Result<AccountView, GatewayError> {
        let request_id = self.next_key().0;
        self.send(AccountQuery {
            request_id,
            account: AccountId(0),
        })?;
        collect_account(request_id, |pick| self.wait_for(pick))
    }

    /// Logs out and waits for the server's Logout (or the close).
    pub fn logout(mut self) -> Result<(), GatewayError> {
        self.send(Logout { code: 0 })?;
        loop {
            match self.recv_raw(REPLY_TIMEOUT) {
                Err(GatewayError::LoggedOut { .. }) | Err(GatewayError::Closed) => return Ok(()),
                Err(e) => return Err(e),
                Ok(_) => {}
            }
        }
    }

    /// The connection (tests: drop it without logging out, or read nothing).
    pub fn into_connection(self) -> Connection {
        self.conn
    }
}

fn request_reply(m: &Message, request_id: ClientOrderId) -> Option<Message> {
    match m {
        Message::Cancelled(c) if c.request_id == request_id => Some(*m),
        Message::Modified(c) if c.request_id == request_id => Some(*m),
        Message::CancelAllDone(c) if c.request_id == request_id => Some(*m),
        Message::RequestRejected(c) if c.request_id == request_id => Some(*m),
        Message::RequestResent(c) if c.request_id == request_id => Some(*m),
        _ => None,
    }
}

/// An AccountQuery's answer.
#[derive(Clone, Debug)]
pub struct AccountView {
    pub snapshot: AccountSnapshot,
    pub positions: Vec<PositionReport>,
}

type Pick<'a, T> = Box<dyn FnMut(&Message) -> Option<T> + 'a>;

fn collect_account(
    request_id: u64,
    mut wait: impl FnMut(Pick<'_, Message>) -> Result<Message, GatewayError>,
) -> Result<AccountView, GatewayError> {
    let mut snapshot = None;
    let mut positions = Vec::new();
    loop {
        let m = wait(Box::new(move |m: &Message| match m {
            Message::AccountSnapshot(s) if s.request_id == request_id => Some(*m),
            Message::PositionReport(p) if p.request_id == request_id => Some(*m),
            Message::QueryDone(d) if d.request_id == request_id => Some(*m),
            _ => None,
        }))?;
        match m {
            Message::AccountSnapshot(s) => snapshot = Some(s),
            Message::PositionReport(p) => positions.push(p),
            Message::QueryDone(d) => {
                return match snapshot {
                    Some(snapshot) if d.code == 0 => Ok(AccountView {
                        snapshot,
                        positions,
                    }),
                    _ => Err(GatewayError::Unexpected(describe_code(d.code))),
                };
            }
            _ => {}
        }
    }
}

/// A ReferenceQuery's answer.
#[derive(Clone, Debug)]
pub struct ReferenceView {
    /// `None` when the query was refused (an unknown symbol: see `code`).
    pub market: Option<MarketReport>,
    pub symbols: Vec<SymbolReport>,
    /// QueryDone's code (0: complete).
    pub code: u16,
}

fn collect_reference(
    request_id: u64,
    mut wait: impl FnMut(Pick<'_, Message>) -> Result<Message, GatewayError>,
) -> Result<ReferenceView, GatewayError> {
    let mut view = ReferenceView {
        market: None,
        symbols: Vec::new(),
        code: 0,
    };
    loop {
        let m = wait(Box::new(move |m: &Message| match m {
            Message::MarketReport(r) if r.request_id == request_id => Some(*m),
            Message::SymbolReport(r) if r.request_id == request_id => Some(*m),
            Message::QueryDone(d) if d.request_id == request_id => Some(*m),
            _ => None,
        }))?;
        match m {
            Message::MarketReport(r) => view.market = Some(r),
            Message::SymbolReport(r) => view.symbols.push(r),
            Message::QueryDone(d) => {
                view.code = d.code;
                return Ok(view);
            }
            _ => {}
        }
    }
}

/// An admin session.
pub struct AdminClient {
    conn: Connection,
    next_request_id: u64,
}

/// What an admin request returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AdminReply {
    Result(AdminResult),
    Token(TokenIssued),
}

impl AdminReply {
    /// The reject code (0: done).
    pub fn code(&self) -> u16 {
        match self {
            AdminReply::Result(r) => r.code,
            AdminReply::Token(_) => 0,
        }
    }
}

impl AdminClient {
    pub fn login(
        addr: impl ToSocketAddrs,
        admin_token: Token,
    ) -> Result<AdminClient, GatewayError> {
        let mut conn = Connection::connect(addr)?;
        conn.send(Login {
            version: PROTOCOL_VERSION,
            account: AccountId(0),
            flags: 0,
            last_seen_acct_seq: 0,
            token: admin_token,
        })?;
        login_reply(&mut conn, 0)?;
        Ok(AdminClient {
            conn,
            next_request_id: key_base(),
        })
    }

    fn next_id(&mut self) -> u64 {
        self.next_request_id += 1;
        self.next_request_id
    }

    /// Sends an admin request built with a fresh request id; waits for its reply.
    pub fn request(
        &mut self,
        build: impl FnOnce(u64) -> Message,
    ) -> Result<AdminReply, GatewayError> {
        let request_id = self.next_id();
        self.conn.send(build(request_id))?;
        let deadline = Instant::now() + REPLY_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.conn.recv(left)? {
                Message::AdminResult(r) if r.request_id == request_id => {
                    return Ok(AdminReply::Result(r));
                }
                Message::TokenIssued(t) if t.request_id == request_id => {
                    return Ok(AdminReply::Token(t));
                }
                Message::ProtocolError(p) => {
                    return Err(GatewayError::ServerProtocolError { code: p.code });
                }
                Message::Logout(l) => return Err(GatewayError::LoggedOut { code: l.code }),
                _ => {}
            }
        }
    }

    fn result(&mut self, build: impl FnOnce(u64) -> Message) -> Result<AdminResult, GatewayError> {
        match self.request(build)? {
            AdminReply::Result(r) => Ok(r),
            AdminReply::Token(t) => Err(GatewayError::Unexpected(format!("{t:?}"))),
        }
    }

    pub fn open_account(&mut self, owner: ExternalRef) -> Result<AdminResult, GatewayError> {
        self.result(|request_id| OpenAccount { request_id, owner }.into())
    }

    pub fn deposit(
        &mut self,
        account: AccountId,
        amount: Amount,
        external_ref: ExternalRef,
    ) -> Result<AdminResult, GatewayError> {
        self.result(|request_id| {
            Deposit {
                request_id,
                account,
                amount,
                external_ref,
            }
            .into()
        })
    }

    pub fn withdraw(
        &mut self,
        account: AccountId,
        amount: Amount,
        external_ref: ExternalRef,
    ) -> Result<AdminResult, GatewayError> {
        self.result(|request_id| {
            Withdraw {
                request_id,
                account,
                amount,
                external_ref,
            }
            .into()
        })
    }

    pub fn confirm(&mut self, tx_id: TxId) -> Result<AdminResult, GatewayError> {
        self.result(|request_id| ConfirmTransaction { request_id, tx_id }.into())
    }

    pub fn fail(&mut self, tx_id: TxId) -> Result<AdminResult, GatewayError> {
        self.result(|request_id| FailTransaction { request_id, tx_id }.into())
    }

    pub fn reverse(&mut self, tx_id: TxId) -> Result<AdminResult, GatewayError> {
        self.result(|request_id| ReverseTransaction { request_id, tx_id }.into())
    }

    #[allow(clippy::too_many_arguments)]
    pub fn register_symbol(
        &mut self,
        code: Code,
        name: SymbolName,
        market: Market,
        tick_rule: TickRule,
        base_price: Price,
        banded: bool,
        lot_size: Qty,
    ) -> Result<AdminResult, GatewayError> {
        self.result(|request_id| {
            RegisterSymbol {
                request_id,
                code,
                name,
                market,
                tick_rule: tick_rule.into(),
                base_price,
                banded,
                lot_size,
            }
            .into()
        })
    }

    pub fn set_fees(
        &mut self,
        schedule: kuku_engine::FeeSchedule,
    ) -> Result<AdminResult, GatewayError> {
        self.result(|request_id| {
            SetFeeSchedule {
                request_id,
                commission_ppm: schedule.commission_ppm,
                kospi_securities_transaction_ppm: schedule.kospi.securities_transaction_ppm,
                kospi_rural_special_ppm: schedule.kospi.rural_special_ppm,
                kosdaq_securities_transaction_ppm: schedule.kosdaq.securities_transaction_ppm,
                kosdaq_rural_special_ppm: schedule.kosdaq.rural_special_ppm,
                other_securities_transaction_ppm: schedule.other.securities_transaction_ppm,
                other_rural_special_ppm: schedule.other.rural_special_ppm,
            }
            .into()
        })
    }

    /// Shares of `symbol` arrive in `account` from outside, at a cost of `price` each.
    pub fn transfer_in(
        &mut self,
        account: AccountId,
        symbol: Code,
        qty: Qty,
        price: Price,
        external_ref: ExternalRef,
    ) -> Result<AdminResult, GatewayError> {
        self.result(|request_id| {
            TransferIn {
                request_id,
                account,
                symbol,
                qty,
                price,
                external_ref,
            }
            .into()
        })
    }

    /// Shares of `symbol` leave `account` to outside (at their average cost).
    pub fn transfer_out(
        &mut self,
        account: AccountId,
        symbol: Code,
        qty: Qty,
        external_ref: ExternalRef,
    ) -> Result<AdminResult, GatewayError> {
        self.result(|request_id| {
            TransferOut {
                request_id,
                account,
                symbol,
                qty,
                external_ref,
            }
            .into()
        })
    }

    /// The reference data (any session may ask).
    pub fn reference(&mut self, symbol: Option<Code>) -> Result<ReferenceView, GatewayError> {
        let request_id = self.next_id();
        self.conn.send(ReferenceQuery { request_id, symbol })?;
        let conn = &mut self.conn;
        collect_reference(request_id, |mut pick| {
            let deadline = Instant::now() + REPLY_TIMEOUT;
            loop {
                let left = deadline.saturating_duration_since(Instant::now());
                let m = conn.recv(left)?;
                if let Some(m) = pick(&m) {
                    return Ok(m);
                }
            }
        })
    }

    /// An account's login token (`Err` with the reject code if the account is unknown).
    pub fn issue_token(&mut self, account: AccountId) -> Result<Result<Token, u16>, GatewayError> {
        Ok(
            match self.request(|request_id| {
                IssueToken {
                    request_id,
                    account,
                }
                .into()
            })? {
                AdminReply::Token(t) => Ok(t.token),
                AdminReply::Result(r) => Err(r.code),
            },
        )
    }

    /// Any account's balances and positions.
    pub fn account(&mut self, account: AccountId) -> Result<AccountView, GatewayError> {
        let request_id = self.next_id();
        self.conn.send(AccountQuery {
            request_id,
            account,
        })?;
        let conn = &mut self.conn;
        collect_account(request_id, |mut pick| {
            let deadline = Instant::now() + REPLY_TIMEOUT;
            loop {
                let left = deadline.saturating_duration_since(Instant::now());
                let m = conn.recv(left)?;
                if let Some(m) = pick(&m) {
                    return Ok(m);
                }
            }
        })
    }
}
