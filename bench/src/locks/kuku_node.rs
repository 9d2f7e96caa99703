//! Kuku's single writer as a strategy: a real node (journal, pipeline, gateway) started
//! in-process on a temporary data directory, loaded over TCP with the binary protocol.
//!
//! - **Setup** (not timed): the node starts with the always-open schedule and no quote feed;
//!   an admin session sets a zero fee schedule (a buy then holds exactly price x qty), opens
//!   the accounts and deposits their cash; their shares come as operator adjustments through
//!   the node's input ring.
//! - **Orders**: a buy is a DAY limit buy of 1 share at 100,000 KRW, a sell a DAY limit sell of
//!   1 share at 140,000 KRW: they never cross, so each rests and holds its cash or shares
//!   until the end. The engine checks available cash or shares and takes the hold in one step
//!   on its one thread; nothing else ever writes an account.
//! - **Sessions**: each account has `sessions_per_account` trading sessions; a client uses
//!   session `client % sessions_per_account` of the order's account, and many clients share a
//!   session, each with its one order outstanding (the session is pipelined). The gateway
//!   sends every message of an account to all of that account's sessions, so more sessions per
//!   account multiply the acknowledgements the gateway writes; one session per account is the
//!   default (an application server keeps one per account it trades for).
//! - **Check**: the account's cash, cash hold, shares and share hold from an admin
//!   `AccountQuery` (the gateway's read model, which has applied every event a client was
//!   answered with).
//!
//! **Invariants**: a key (client order id) is unique per account and run ([`Order::key`]); an
//! order counts as accepted only after `OrderAccepted` arrived, which the node sends after the
//! command is journaled (`every-batch`: synced) and applied.
//!
//! **Performance**: a session's writer coalesces whatever frames are queued into one write (at
//! most 64 KiB); its reader hands replies out by key from one map.
//!
//! **Known limitations**: the node, its query-store writer (SQLite, as `kuku serve` runs by
//! default) and the clients share the machine's cores. `Busy` (input ring full) is resent
//! with the same key after a short backoff and counted as a retry.

use super::workload::{Asset, Counters, Funding, Order, Outcome, Placer, Rng, backoff};
use super::workload::{BUY_PRICE_KRW, ORDER_QTY, SELL_PRICE_KRW, SYMBOL};
use anyhow::{Context, bail};
use kuku_engine::{
    AccountId, Amount, ClientOrderId, EngineConfig, ExternalRef, FeeSchedule, MarketPhase,
    OrderType, Price, Qty, RejectReason, Side, TaxRates, TimeInForce,
};
use kuku_gateway::auth::{Secret, Token, encode_hex, random_bytes32};
use kuku_gateway::client::AdminClient;
use kuku_gateway::protocol::{
    Code, FLAG_NO_REPLAY, GatewayCode, Login, Message, NewOrder, code_name, split_frame,
};
use kuku_gateway::server::GatewayHandle;
use kuku_server::config::{FeedSettings, NodeConfig};
use kuku_server::node::{Node, NodeOutputs};
use rustc_hash::FxHashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};

/// How long a client waits for one order's outcome before the run fails.
const REPLY_TIMEOUT: Duration = Duration::from_secs(60);
/// Busy resends of one order at most.
const BUSY_RESENDS_MAX: u32 = 10_000;
/// Bytes a session writer coalesces into one write at most.
const WRITE_COALESCE_BYTES_MAX: usize = 64 * 1024;

/// How the node is run.
#[derive(Clone, Debug)]
pub struct KukuSettings {
    /// `every-batch` (synced before acknowledging) or `none`.
    pub durability: String,
    /// The query store: `None` runs the node's default (an embedded SQLite file in the data
    /// directory, as `kuku serve`), `Some("none")` runs without one.
    pub database_url: Option<String>,
    pub sessions_per_account: u32,
    /// Where the temporary data directory is made (default: the system's temp directory).
    pub data_parent: Option<PathBuf>,
}

impl Default for KukuSettings {
    fn default() -> Self {
        KukuSettings {
            durability: "every-batch".into(),
            database_url: None,
            sessions_per_account: 1,
            data_parent: None,
        }
    }
}

/// A running node with funded accounts.
pub struct KukuTarget {
    node: Option<Node>,
    gateway: Option<GatewayHandle>,
    pub addr: SocketAddr,
    admin_token: Token,
    secret: Secret,
    /// Account ids by account index.
    pub accounts: Vec<AccountId>,
    pub funding: Funding,
    pub settings: KukuSettings,
    _dir: tempfile::TempDir,
}

fn zero_fees() -> FeeSchedule {
    let none = TaxRates {
        securities_transaction_ppm: 0,
        rural_special_ppm: 0,
    };
    FeeSchedule {
        commission_ppm: 0,
        kospi: none,
        kosdaq: none,
        other: none,
    }
}

impl KukuTarget {
    /// Starts a node and opens and funds `accounts` accounts (blocking; call it outside the
    /// runtime).
    pub fn start(
        settings: &KukuSettings,
        accounts: u32,
        funding: Funding,
    ) -> anyhow::Result<KukuTarget> {
        let dir = match &settings.data_parent {
            Some(p) => tempfile::tempdir_in(p)?,
            None => tempfile::tempdir()?,
        };
        let admin_token = random_bytes32()?;
        let secret_bytes = random_bytes32()?;
        let defaults = NodeConfig::default();
        let mut config = NodeConfig {
            data_dir: dir.path().to_owned(),
            durability: settings.durability.clone(),
            // The bench opens the day itself, after setting fees of zero (the schedule
            // changes only between trading days).
            schedule: kuku_server::scheduler::ScheduleMode::Manual,
            snapshot_every: 0,
            feed: FeedSettings {
                enabled: false,
                ..FeedSettings::default()
            },
            database_url: settings.database_url.clone(),
            engine: EngineConfig {
                // Every order rests: room for the longest run's orders on one account.
                orders_max: 1 << 21,
                orders_per_account_day_max: 1 << 22,
                keys_max: 1 << 22,
                ..defaults.engine
            },
            ..defaults
        };
        config.gateway.listen = "127.0.0.1:0".into();
        config.gateway.secret_hex = Some(encode_hex(&secret_bytes));
        config.gateway.admin_token_hex = Some(encode_hex(&admin_token));
        // The experiment compares locking, not admission control: no token bucket.
        config.gateway.rate_per_s = u32::MAX;
        config.gateway.burst = u32::MAX;
        config.gateway.outbound_bytes_max = 16 << 20;
        config.gateway.sessions_max = 4_096;
        // Sessions of idle accounts (the mix at one client) must outlive a run.
        config.gateway.idle_timeout_ms = 3_600_000;
        let (node, gateway) = kuku_server::gateway::start(&config, NodeOutputs::default())?;
        let mut target = KukuTarget {
            addr: gateway.local_addr(),
            node: Some(node),
            gateway: Some(gateway),
            admin_token,
            secret: Secret::from_bytes(secret_bytes),
            accounts: Vec::new(),
            funding,
            settings: settings.clone(),
            _dir: dir,
        };
        target.open_without_fees()?;
        target.wait_until_open()?;
        target.fund(accounts)?;
        Ok(target)
    }

    fn node(&self) -> anyhow::Result<&Node> {
        self.node.as_ref().context("the node is stopped")
    }

    fn wait_until_open(&self) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            {
                let rm = self.node()?.read_model.read();
                if rm.symbol_by_code(SYMBOL).is_some() && rm.phase == Some(MarketPhase::Continuous)
                {
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                bail!("the node did not open the market for {SYMBOL} within 60 s");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Sets fees of zero (so that a reservation is exactly price x quantity, as in the
    /// database strategies) before the first trading day, then opens it.
    fn open_without_fees(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(60);
        while self
            .node()?
            .read_model
            .read()
            .symbol_by_code(SYMBOL)
            .is_none()
        {
            anyhow::ensure!(Instant::now() < deadline, "the node never listed {SYMBOL}");
            std::thread::sleep(Duration::from_millis(10));
        }
        let mut admin = AdminClient::login(self.addr, self.admin_token).context("admin login")?;
        let r = admin.set_fees(zero_fees())?;
        anyhow::ensure!(r.code == 0, "set-fees rejected: {}", code_name(r.code));
        let node = self.node.as_mut().context("the node is stopped")?;
        node.submit_blocking(kuku_engine::Command::StartOfDay {
            trading_day: 20_260_105,
            base_prices: Vec::new(),
        });
        node.submit_blocking(kuku_engine::Command::SetMarketPhase {
            phase: MarketPhase::Continuous,
        });
        Ok(())
    }

    fn fund(&mut self, accounts: u32) -> anyhow::Result<()> {
        let mut admin = AdminClient::login(self.addr, self.admin_token).context("admin login")?;
        let nonce = super::unique_nonce();
        for i in 0..accounts {
            let owner = ExternalRef::new(&format!("locks-{nonce:x}-{i}")).context("owner")?;
            let opened = admin.open_account(owner)?;
            anyhow::ensure!(opened.code == 0, "open-account: {}", code_name(opened.code));
            let reference = ExternalRef::new(&format!("dep-{nonce:x}-{i}")).context("ref")?;
            let dep = admin.deposit(opened.account, Amount(self.funding.cash_krw), reference)?;
            anyhow::ensure!(dep.code == 0, "deposit: {}", code_name(dep.code));
            self.accounts.push(opened.account);
        }
        let node = self.node.as_mut().context("the node is stopped")?;
        let symbol = node
            .read_model
            .read()
            .symbol_by_code(SYMBOL)
            .context("the symbol is listed")?
            .symbol
            .id;
        for (i, &account) in self.accounts.iter().enumerate() {
            node.submit_blocking(kuku_engine::Command::Adjust {
                account,
                asset: kuku_engine::Asset::Shares(symbol),
                amount: Amount(self.funding.shares),
                cost_price: kuku_engine::Price(0),
                external_ref: ExternalRef::new(&format!("shares-{nonce:x}-{i}")).context("ref")?,
            });
        }
        // The adjustments are applied in order: the last account's shares mean all arrived.
        let last = *self.accounts.last().context("at least one account")?;
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let held = node
                .read_model
                .read()
                .positions
                .get(&(last, symbol))
                .map_or(0, |p| p.qty().0);
            if held >= self.funding.shares {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("the share adjustments were not applied within 120 s");
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Logs in the sessions (on the current runtime).
    pub async fn client(&self) -> anyhow::Result<KukuPlacer> {
        let per_account = self.settings.sessions_per_account.max(1);
        let symbol = Code::new(SYMBOL).context("symbol code")?;
        let mut sessions = Vec::with_capacity(self.accounts.len());
        for &account in &self.accounts {
            let token = self.secret.account_token(account);
            let mut list = Vec::with_capacity(per_account as usize);
            for _ in 0..per_account {
                list.push(Session::login(self.addr, account, token).await?);
            }
            sessions.push(list);
        }
        Ok(KukuPlacer { sessions, symbol })
    }

    /// Every account's cash and shares as the node sees them (blocking).
    pub fn ledger(&self) -> anyhow::Result<Vec<super::check::Row>> {
        let mut admin = AdminClient::login(self.addr, self.admin_token).context("admin login")?;
        let mut rows = Vec::with_capacity(self.accounts.len() * 2);
        for (i, &account) in self.accounts.iter().enumerate() {
            let view = admin.account(account)?;
            let s = view.snapshot;
            // `available` is the node's cash - cash_hold: the check expects it to be the
            // deposit minus the holds, so a cash balance that moved shows as a mismatch.
            rows.push(super::check::Row {
                account: i as u32,
                asset: Asset::Cash,
                initial: self.funding.cash_krw,
                remaining: s.available.0,
                reserved_recorded: s.cash_hold.0,
                orders_recorded: None,
            });
            let (qty, hold) = view
                .positions
                .iter()
                .find(|p| p.symbol.is_some_and(|c| c.as_str() == SYMBOL))
                .map_or((0, 0), |p| (p.qty.0, p.qty_hold.0));
            rows.push(super::check::Row {
                account: i as u32,
                asset: Asset::Shares,
                initial: self.funding.shares,
                remaining: qty - hold,
                reserved_recorded: hold,
                orders_recorded: None,
            });
        }
        Ok(rows)
    }

    /// Stops gateway and node; the data directory is deleted.
    pub fn stop(mut self) {
        if let (Some(node), Some(gateway)) = (self.node.take(), self.gateway.take()) {
            kuku_server::gateway::shutdown(node, gateway);
        }
    }
}

impl Drop for KukuTarget {
    fn drop(&mut self) {
        if let (Some(node), Some(gateway)) = (self.node.take(), self.gateway.take()) {
            kuku_server::gateway::shutdown(node, gateway);
        }
    }
}

/// An order's reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Reply {
    Accepted,
    Rejected(u16),
}

type Pending = Mutex<FxHashMap<u64, oneshot::Sender<Reply>>>;

/// One trading session: a writer task coalescing frames, a reader task handing replies to
/// the waiting clients by client order id.
struct Session {
    out: mpsc::UnboundedSender<Vec<u8>>,
    pending: Arc<Pending>,
}

impl Session {
    async fn login(
        addr: SocketAddr,
        account: AccountId,
        token: Token,
    ) -> anyhow::Result<Arc<Session>> {
        let mut stream = tokio::net::TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let login = Login {
            version: kuku_gateway::protocol::PROTOCOL_VERSION,
            account,
            flags: FLAG_NO_REPLAY,
            last_seen_acct_seq: 0,
            token,
        };
        stream.write_all(&Message::from(login).to_frame()).await?;
        let mut inbound = Vec::with_capacity(64 * 1024);
        let mut chunk = vec![0u8; 64 * 1024];
        let used = tokio::time::timeout(Duration::from_secs(30), async {
            loop {
                let n = stream.read(&mut chunk).await?;
                anyhow::ensure!(n > 0, "closed during login");
                inbound.extend_from_slice(&chunk[..n]);
                if let Some((m, used)) = split_frame(&inbound, u16::MAX as usize)? {
                    anyhow::ensure!(matches!(m, Message::LoginAccepted(_)), "login: {m:?}");
                    return Ok(used);
                }
            }
        })
        .await
        .context("login timed out")??;
        inbound.drain(..used);
        let (reader, writer) = stream.into_split();
        let (out, rx) = mpsc::unbounded_channel();
        let pending: Arc<Pending> = Arc::new(Mutex::new(FxHashMap::default()));
        tokio::spawn(write_loop(writer, rx));
        tokio::spawn(read_loop(reader, inbound, Arc::clone(&pending)));
        Ok(Arc::new(Session { out, pending }))
    }
}

async fn write_loop(
    mut writer: tokio::net::tcp::OwnedWriteHalf,
    mut rx: mpsc::UnboundedReceiver<Vec<u8>>,
) {
    let mut buf = Vec::with_capacity(WRITE_COALESCE_BYTES_MAX);
    while let Some(frame) = rx.recv().await {
        buf.extend_from_slice(&frame);
        while buf.len() < WRITE_COALESCE_BYTES_MAX {
            match rx.try_recv() {
                Ok(f) => buf.extend_from_slice(&f),
                Err(_) => break,
            }
        }
        if writer.write_all(&buf).await.is_err() {
            return;
        }
        buf.clear();
    }
}

async fn read_loop(
    mut reader: tokio::net::tcp::OwnedReadHalf,
    mut inbound: Vec<u8>,
    pending: Arc<Pending>,
) {
    let mut chunk = vec![0u8; 256 * 1024];
    'read: loop {
        let mut at = 0;
        loop {
            match split_frame(&inbound[at..], u16::MAX as usize) {
                Ok(Some((m, used))) => {
                    at += used;
                    let (key, reply) = match m {
                        Message::OrderAccepted(a) => (a.client_order_id.0, Reply::Accepted),
                        Message::OrderRejected(r) => {
                            (r.client_order_id.0, Reply::Rejected(r.reason))
                        }
                        Message::Logout(_) | Message::ProtocolError(_) => break 'read,
                        _ => continue,
                    };
                    // Another session's order of the same account (every session hears every
                    // message of its account) is not in this map.
                    let waiter = pending.lock().ok().and_then(|mut p| p.remove(&key));
                    if let Some(w) = waiter {
                        let _ = w.send(reply);
                    }
                }
                Ok(None) => break,
                Err(_) => break 'read,
            }
        }
        inbound.drain(..at);
        match reader.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => inbound.extend_from_slice(&chunk[..n]),
        }
    }
    // The session is gone: every waiter's sender is dropped and its client fails.
    if let Ok(mut p) = pending.lock() {
        p.clear();
    }
}

/// The client side: sessions by account index.
pub struct KukuPlacer {
    sessions: Vec<Vec<Arc<Session>>>,
    symbol: Code,
}

impl Placer for KukuPlacer {
    async fn place(&self, order: Order, counters: &mut Counters) -> anyhow::Result<Outcome> {
        let list = &self.sessions[order.account as usize];
        let session = &list[order.client as usize % list.len()];
        let (side, price) = match order.asset {
            Asset::Cash => (Side::Buy, BUY_PRICE_KRW),
            Asset::Shares => (Side::Sell, SELL_PRICE_KRW),
        };
        let frame = Message::from(NewOrder {
            client_order_id: ClientOrderId(order.key()),
            symbol: self.symbol,
            side,
            order_type: OrderType::Limit,
            tif: TimeInForce::Day,
            price: Price(price),
            qty: Qty(ORDER_QTY),
        })
        .to_frame();
        let mut rng = Rng::new(order.key());
        for resend in 0..=BUSY_RESENDS_MAX {
            let (tx, rx) = oneshot::channel();
            session
                .pending
                .lock()
                .map_err(|_| anyhow::anyhow!("poisoned"))?
                .insert(order.key(), tx);
            session
                .out
                .send(frame.clone())
                .map_err(|_| anyhow::anyhow!("the session's writer is gone"))?;
            let reply = tokio::time::timeout(REPLY_TIMEOUT, rx)
                .await
                .with_context(|| {
                    format!("no reply to order {} within {REPLY_TIMEOUT:?}", order.key())
                })?
                .context("the session closed")?;
            match reply {
                Reply::Accepted => return Ok(Outcome::Accepted),
                Reply::Rejected(code)
                    if code == RejectReason::InsufficientCash.code()
                        || code == RejectReason::InsufficientShares.code() =>
                {
                    return Ok(Outcome::Insufficient);
                }
                Reply::Rejected(code) if code == GatewayCode::Busy.code() => {
                    counters.retries += 1;
                    let wait = backoff(
                        resend.min(10),
                        Duration::from_micros(100),
                        Duration::from_millis(5),
                        &mut rng,
                    );
                    tokio::time::sleep(wait).await;
                }
                Reply::Rejected(code) => {
                    bail!("order {} rejected: {}", order.key(), code_name(code))
                }
            }
        }
        bail!(
            "order {} found the node busy {BUSY_RESENDS_MAX} times",
            order.key()
        )
    }
}
