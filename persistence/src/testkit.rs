//! Test support shared by this crate's tests, the server's and the benchmark: a database of
//! one's own on the shared MariaDB (or a SQLite file), dropped afterwards, and a TCP proxy
//! that can cut and restore a database's connections, or hang them (requests pass, replies do
//! not), without stopping the server.
//!
//! MariaDB is found at `KUKU_MYSQL_URL` (default `mysql://root@127.0.0.1:3306/test`); each
//! [`TestDatabase::mysql`] creates a uniquely named database next to it, so tests run in
//! parallel. An unreachable server is a test failure with instructions, never a skip.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use sqlx::migrate::MigrateDatabase;

use crate::url::DatabaseUrl;

/// The MariaDB the tests use.
pub const MYSQL_URL_ENV: &str = "KUKU_MYSQL_URL";
pub const MYSQL_URL_DEFAULT: &str = "mysql://root@127.0.0.1:3306/test";

pub use crate::db::block_on;

/// A database for one test: created empty, dropped (MySQL) or deleted (SQLite) on drop.
pub struct TestDatabase {
    url: DatabaseUrl,
    _dir: Option<tempfile::TempDir>,
}

impl TestDatabase {
    /// A fresh database on the shared MariaDB.
    pub fn mysql() -> TestDatabase {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let base = std::env::var(MYSQL_URL_ENV).unwrap_or_else(|_| MYSQL_URL_DEFAULT.into());
        let (server, _) = base.rsplit_once('/').unwrap_or((&base, ""));
        let nanos = crate::metrics::now_ns() % 1_000_000_000;
        let name = format!(
            "kuku_t{}_{}_{nanos}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let url = DatabaseUrl::parse(&format!("{server}/{name}"))
            .unwrap_or_else(|e| panic!("{MYSQL_URL_ENV}={base:?} is not usable: {e}"));
        sqlx::any::install_default_drivers();
        block_on(sqlx::Any::create_database(url.expose())).unwrap_or_else(|e| {
            panic!(
                "cannot create a test database on the MariaDB at {}: {e}. Start MariaDB \
                 (scripts/test.sh does) or point {MYSQL_URL_ENV} at one, e.g. \
                 {MYSQL_URL_ENV}=mysql://root@127.0.0.1:3306/test",
                url
            )
        });
        TestDatabase { url, _dir: None }
    }

    /// A fresh SQLite file in a temporary directory.
    pub fn sqlite() -> TestDatabase {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let url = DatabaseUrl::sqlite_file(&dir.path().join("kuku.sqlite"));
        TestDatabase {
            url,
            _dir: Some(dir),
        }
    }

    pub fn url(&self) -> &DatabaseUrl {
        &self.url
    }

    /// The same database reached through `proxy` (MySQL only).
    pub fn url_through(&self, proxy: &TcpProxy) -> DatabaseUrl {
        let url = self.url.expose();
        let (scheme_user, rest) = url.split_once('@').unwrap_or(("mysql://", url));
        let (_, path) = rest.split_once('/').unwrap_or((rest, ""));
        DatabaseUrl::parse(&format!("{scheme_user}@{}/{path}", proxy.addr()))
            .expect("a proxy URL is valid")
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        sqlx::any::install_default_drivers();
        if self._dir.is_none() {
            let _ = block_on(sqlx::Any::force_drop_database(self.url.expose()));
        }
    }
}

/// A TCP proxy to a database server that a test can cut (every connection reset, new ones
/// refused) and restore, to simulate an outage without stopping the server; or hang: every
/// connection open at that moment, and every one opened until [`TcpProxy::restore`], still
/// forwards what the client sends but withholds every reply, and keeps its server side open
/// when the client gives up, as a network that drops packets would. A hung connection never
/// heals (restoring only lets new connections through), so its server-side transaction stays
/// open until the server ends it or someone kills it.
pub struct TcpProxy {
    addr: SocketAddr,
    cut: Arc<AtomicBool>,
    hanging: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<ProxiedConn>>>,
    accept: Option<JoinHandle<()>>,
}

/// One proxied connection: its two sockets and whether it hangs.
struct ProxiedConn {
    client: TcpStream,
    server: TcpStream,
    hung: Arc<AtomicBool>,
}

impl TcpProxy {
    /// Listens on an ephemeral loopback port and forwards to `upstream`.
    pub fn start(upstream: SocketAddr) -> std::io::Result<TcpProxy> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let cut = Arc::new(AtomicBool::new(false));
        let hanging = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let conns = Arc::new(Mutex::new(Vec::new()));
        let accept = {
            let state = AcceptState {
                cut: Arc::clone(&cut),
                hanging: Arc::clone(&hanging),
                stop: Arc::clone(&stop),
                conns: Arc::clone(&conns),
            };
            std::thread::Builder::new()
                .name("test-tcp-proxy".into())
                .spawn(move || accept_loop(listener, upstream, &state))?
        };
        Ok(TcpProxy {
            addr,
            cut,
            hanging,
            stop,
            conns,
            accept: Some(accept),
        })
    }

    /// The proxy for the MariaDB of [`MYSQL_URL_ENV`].
    pub fn to_test_mysql() -> TcpProxy {
        let base = std::env::var(MYSQL_URL_ENV).unwrap_or_else(|_| MYSQL_URL_DEFAULT.into());
        let rest = base.split_once("://").map_or(base.as_str(), |(_, r)| r);
        let authority = rest.split('/').next().unwrap_or(rest);
        let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
        let host_port = if host_port.contains(':') {
            host_port.to_owned()
        } else {
            format!("{host_port}:3306")
        };
        let upstream = std::net::ToSocketAddrs::to_socket_addrs(&host_port)
            .ok()
            .and_then(|mut a| a.next())
            .unwrap_or_else(|| panic!("cannot resolve {host_port}"));
        TcpProxy::start(upstream).expect("the proxy starts")
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Resets every open connection and refuses new ones until [`TcpProxy::restore`].
    pub fn cut(&self) {
        self.cut.store(true, Ordering::Release);
        if let Ok(mut conns) = self.conns.lock() {
            for c in conns.drain(..) {
                let _ = c.client.shutdown(Shutdown::Both);
                let _ = c.server.shutdown(Shutdown::Both);
            }
        }
    }

    /// Hangs every open connection, and every new one until [`TcpProxy::restore`]: requests
    /// reach the server, replies never reach the client.
    pub fn hang(&self) {
        self.hanging.store(true, Ordering::Release);
        if let Ok(conns) = self.conns.lock() {
            for c in conns.iter() {
                c.hung.store(true, Ordering::Release);
            }
        }
    }

    /// Ends a cut or a hang for new connections (hung ones stay hung).
    pub fn restore(&self) {
        self.hanging.store(false, Ordering::Release);
        self.cut.store(false, Ordering::Release);
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        self.cut();
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
    }
}

/// What the accept loop shares with the proxy's handle.
struct AcceptState {
    cut: Arc<AtomicBool>,
    hanging: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<ProxiedConn>>>,
}

fn accept_loop(listener: TcpListener, upstream: SocketAddr, state: &AcceptState) {
    while !state.stop.load(Ordering::Acquire) {
        let client = match listener.accept() {
            Ok((client, _)) => client,
            Err(_) => {
                std::thread::sleep(Duration::from_millis(5));
                continue;
            }
        };
        if state.cut.load(Ordering::Acquire) {
            let _ = client.shutdown(Shutdown::Both);
            continue;
        }
        let Ok(server) = TcpStream::connect(upstream) else {
            let _ = client.shutdown(Shutdown::Both);
            continue;
        };
        let _ = client.set_nonblocking(false);
        let hung = Arc::new(AtomicBool::new(state.hanging.load(Ordering::Acquire)));
        let pipes = (
            client.try_clone(),
            server.try_clone(),
            client.try_clone(),
            server.try_clone(),
        );
        let (Ok(c1), Ok(s1), Ok(c2), Ok(s2)) = pipes else {
            continue;
        };
        if let Ok(mut list) = state.conns.lock() {
            list.push(ProxiedConn {
                client,
                server,
                hung: Arc::clone(&hung),
            });
        }
        let up = Arc::clone(&hung);
        std::thread::spawn(move || pipe_up(c1, s1, &up));
        std::thread::spawn(move || pipe_down(s2, c2, &hung));
    }
}

/// Client to server: copies until the client closes. A hung connection's server side stays
/// open after that (the server never learns the client left).
fn pipe_up(mut client: TcpStream, mut server: TcpStream, hung: &AtomicBool) {
    let mut buf = [0u8; 16 * 1024];
    loop {
        match client.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if server.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = client.shutdown(Shutdown::Both);
    if !hung.load(Ordering::Acquire) {
        let _ = server.shutdown(Shutdown::Both);
    }
}

/// Server to client: copies until either side closes; while hung, reads and drops.
fn pipe_down(mut server: TcpStream, mut client: TcpStream, hung: &AtomicBool) {
    let mut buf = [0u8; 16 * 1024];
    loop {
        match server.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(_) if hung.load(Ordering::Acquire) => {}
            Ok(n) => {
                if client.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = client.shutdown(Shutdown::Both);
    if !hung.load(Ordering::Acquire) {
        let _ = server.shutdown(Shutdown::Both);
    }
}

/// A deterministic command flow that exercises every table: accounts, deposits, withdrawals
/// (confirmed, failed, left pending, expired to UNKNOWN), reversals, share adjustments,
/// limit / IOC / market orders that cross, cancels, modifies, cancel-alls, synthetic quotes
/// that fill, and and a day roll that expires resting orders
/// midway (so the flow ends with open orders again).
pub mod flow {
    use kuku_engine::testkit::{Driver, cmd};
    use kuku_engine::{
        AccountId, Amount, Asset, Command, Engine, EngineConfig, Envelope, Event, ExternalRef,
        Market, MarketPhase, OrderType, Side, SymbolId, TimeInForce, TxId, TxStatus, TxType,
    };
    use kuku_journal::{Journal, JournalConfig, codec, journal_meta, write_config};
    use std::path::Path;

    use crate::query::RowCounts;

    /// The symbols: (code, market, base price, tick).
    pub const SYMBOLS: [(&str, Market, i64, i64); 2] = [
        ("005930", Market::Kospi, 71_000, 100),
        ("035720", Market::Kosdaq, 45_000, 50),
    ];
    pub const ACCOUNTS: u32 = 8;

    /// Envelopes with the events each produced, in order, and the engine after the last.
    pub struct Flow {
        pub envelopes: Vec<Envelope>,
        pub events: Vec<Vec<Event>>,
        pub engine: Engine,
        pub config: EngineConfig,
    }

    struct Gen {
        driver: Driver,
        events: Vec<Vec<Event>>,
        rng: u64,
        coid: u64,
        refs: u64,
        pending_withdrawals: Vec<TxId>,
        posted_deposits: Vec<TxId>,
    }

    impl Gen {
        fn next(&mut self) -> u64 {
            self.rng ^= self.rng << 13;
            self.rng ^= self.rng >> 7;
            self.rng ^= self.rng << 17;
            self.rng
        }

        fn pick(&mut self, n: u64) -> u64 {
            self.next() % n.max(1)
        }

        fn apply(&mut self, command: Command) {
            let events = self.driver.apply(command);
            for e in &events {
                if let Event::TransactionStatusChanged {
                    tx,
                    tx_type,
                    to,
                    resent: false,
                    ..
                } = *e
                {
                    match (tx_type, to) {
                        (TxType::Withdrawal, TxStatus::Pending) => {
                            self.pending_withdrawals.push(tx)
                        }
                        (TxType::Deposit, TxStatus::Posted) => self.posted_deposits.push(tx),
                        _ => {}
                    }
                }
            }
            self.events.push(events);
        }

        fn external_ref(&mut self, prefix: &str) -> ExternalRef {
            self.refs += 1;
            ExternalRef::new(&format!("{prefix}-{}", self.refs)).expect("a short reference")
        }

        fn account(&mut self) -> AccountId {
            AccountId(1 + self.pick(u64::from(ACCOUNTS)) as u32)
        }

        fn step(&mut self) {
            let account = self.account();
            let symbol = self.pick(SYMBOLS.len() as u64) as usize;
            let (_, _, base, tick) = SYMBOLS[symbol];
            let sym = symbol as u32 + 1;
            let side = if self.pick(2) == 0 {
                Side::Buy
            } else {
                Side::Sell
            };
            let price = base + (self.pick(9) as i64 - 4) * tick;
            let qty = 1 + self.pick(40) as i64;
            self.coid += 1;
            let coid = self.coid;
            let roll = self.pick(1000);
            let command = match roll {
                0..=449 => cmd::limit(account, coid, sym, side, price, qty),
                450..=549 => cmd::order(
                    account,
                    coid,
                    sym,
                    side,
                    OrderType::Limit,
                    if roll.is_multiple_of(2) {
                        TimeInForce::Ioc
                    } else {
                        TimeInForce::Fok
                    },
                    price,
                    qty,
                ),
                550..=589 => cmd::market(account, coid, sym, side, qty),
                590..=819 => {
                    let live: Vec<(u64, i64, i64)> = self
                        .driver
                        .engine
                        .live_orders()
                        .filter(|o| o.account == account)
                        .map(|o| (o.id.0, o.leaves.0, o.price.0))
                        .collect();
                    if live.is_empty() {
                        cmd::limit(account, coid, sym, side, price, qty)
                    } else {
                        let (id, leaves, old_price) = live[self.pick(live.len() as u64) as usize];
                        if roll < 740 {
                            cmd::cancel(account, coid, id)
                        } else {
                            let new_qty = (leaves + self.pick(5) as i64 - 2).max(1);
                            let new_price = if self.pick(2) == 0 { old_price } else { price };
                            cmd::modify(account, coid, id, new_qty, new_price)
                        }
                    }
                }
                820..=919 => {
                    let bid = base - (1 + self.pick(3) as i64) * tick;
                    let ask = base + (1 + self.pick(3) as i64) * tick;
                    cmd::quote(
                        sym,
                        bid,
                        1 + self.pick(50) as i64,
                        ask,
                        1 + self.pick(50) as i64,
                    )
                }
                920..=944 => Command::Deposit {
                    account,
                    amount: Amount(1_000_000 + self.pick(1_000_000) as i64),
                    external_ref: self.external_ref("dep"),
                },
                945..=964 => Command::Withdraw {
                    account,
                    amount: Amount(10_000 + self.pick(100_000) as i64),
                    external_ref: self.external_ref("wd"),
                },
                965..=979 if !self.pending_withdrawals.is_empty() => {
                    let i = self.pick(self.pending_withdrawals.len() as u64) as usize;
                    let tx = self.pending_withdrawals.swap_remove(i);
                    if roll.is_multiple_of(2) {
                        Command::ConfirmTransaction { tx }
                    } else {
                        Command::FailTransaction { tx }
                    }
                }
                980..=984 if !self.posted_deposits.is_empty() => {
                    let i = self.pick(self.posted_deposits.len() as u64) as usize;
                    Command::ReverseTransaction {
                        tx: self.posted_deposits.swap_remove(i),
                    }
                }
                985..=989 => Command::Adjust {
                    account,
                    asset: Asset::Shares(SymbolId(sym)),
                    amount: Amount(1 + self.pick(20) as i64),
                    external_ref: self.external_ref("adj"),
                    cost_price: kuku_engine::Price(0),
                },
                990..=992 => Command::CancelAll {
                    account,
                    request_id: kuku_engine::ClientOrderId(coid),
                    symbol: None,
                },
                993..=994 => Command::ExpireStaleExternal {
                    cutoff_ts: self.driver.ts.saturating_sub(50_000_000),
                },
                _ => cmd::limit(account, coid, sym, side.opposite(), price, qty),
            };
            self.apply(command);
        }
    }

    impl Flow {
        /// About `commands` commands (set-up and the closing day roll included), from `seed`.
        pub fn generate(seed: u64, commands: usize) -> Flow {
            let config = EngineConfig::small();
            let mut g = Gen {
                driver: Driver::new(config),
                events: Vec::new(),
                rng: seed | 1,
                coid: 0,
                refs: 0,
                pending_withdrawals: Vec::new(),
                posted_deposits: Vec::new(),
            };
            g.apply(Command::SetFeeSchedule(kuku_engine::FeeSchedule::KRX_2026));
            for (code, market, base, _) in SYMBOLS {
                g.apply(cmd::register_krx(code, code, market, base));
            }
            g.apply(Command::StartOfDay {
                trading_day: 20_260_105,
                base_prices: Vec::new(),
            });
            g.apply(Command::SetMarketPhase {
                phase: MarketPhase::Continuous,
            });
            for i in 0..ACCOUNTS {
                g.apply(cmd::open_account(&format!("owner-{i}")));
                let account = AccountId(i + 1);
                g.apply(cmd::deposit(account, 5_000_000_000, &format!("fund-{i}")));
                for s in 0..SYMBOLS.len() as u32 {
                    let external_ref = g.external_ref("seed");
                    g.apply(Command::Adjust {
                        account,
                        asset: Asset::Shares(SymbolId(s + 1)),
                        amount: Amount(100_000),
                        external_ref,
                        cost_price: kuku_engine::Price(0),
                    });
                }
            }
            // A day roll at 60% (DAY orders expire, quotes are withdrawn), then trading goes on,
            // so the flow ends with open orders.
            let roll_at = commands * 3 / 5;
            while g.driver.journal.len() < roll_at {
                g.step();
            }
            g.apply(Command::EndOfDay {
                trading_day: 20_260_105,
            });
            g.apply(Command::StartOfDay {
                trading_day: 20_260_106,
                base_prices: Vec::new(),
            });
            g.apply(Command::SetMarketPhase {
                phase: MarketPhase::Continuous,
            });
            while g.driver.journal.len() < commands {
                g.step();
            }
            Flow {
                envelopes: std::mem::take(&mut g.driver.journal),
                events: g.events,
                engine: g.driver.engine,
                config,
            }
        }

        pub fn seq_last(&self) -> u64 {
            self.envelopes.last().map_or(0, |e| e.seq)
        }

        /// Writes the flow as a journal (with its engine-config sidecar) into `dir`.
        pub fn write_journal(&self, dir: &Path) -> Result<(), crate::PersistenceError> {
            let journal_config = JournalConfig {
                segment_bytes: 1 << 20,
                ..JournalConfig::default()
            };
            let mut journal = Journal::create(dir, journal_config, journal_meta(&self.config, 0))?;
            for envelope in &self.envelopes {
                codec::append_command(&mut journal, envelope)?;
            }
            journal.commit()?;
            journal.close()?;
            write_config(dir, &self.config)?;
            Ok(())
        }

        /// `(seq, ts, event, last)` for every event, as the node's output ring carries them.
        pub fn slots(&self) -> impl Iterator<Item = (u64, u64, &Event, bool)> + '_ {
            self.envelopes
                .iter()
                .zip(&self.events)
                .flat_map(|(envelope, events)| {
                    let n = events.len();
                    events
                        .iter()
                        .enumerate()
                        .map(move |(i, e)| (envelope.seq, envelope.ts, e, i + 1 == n))
                })
        }

        /// The rows the writer must have written for the whole flow.
        pub fn expected_rows(&self) -> RowCounts {
            self.expected_rows_until(u64::MAX)
        }

        /// The rows of the commands up to `seq` (inclusive).
        pub fn expected_rows_until(&self, seq: u64) -> RowCounts {
            let mut c = RowCounts::default();
            let mut txs = std::collections::BTreeSet::new();
            let mut positions = std::collections::BTreeSet::new();
            let commands = self.envelopes.iter().zip(&self.events);
            for (envelope, events) in commands.take_while(|(e, _)| e.seq <= seq) {
                for e in events {
                    if let Some(tx) = e.transaction(envelope.ts) {
                        c.ledger_entries += tx.entries().len() as u64;
                    }
                    match *e {
                        Event::SymbolRegistered { .. } => c.symbols += 1,
                        Event::AccountOpened { resent: false, .. } => {
                            c.accounts += 1;
                            c.balances += 1;
                        }
                        Event::OrderAccepted { resent: false, .. } => c.orders += 1,
                        Event::Trade { tx, .. } => {
                            c.trades += 1;
                            if tx.0 != 0 {
                                txs.insert(tx.0);
                            }
                        }
                        Event::TransactionStatusChanged {
                            tx, resent: false, ..
                        } => {
                            txs.insert(tx.0);
                        }
                        Event::PositionUpdated { position } => {
                            positions.insert((position.account, position.symbol));
                        }
                        _ => {}
                    }
                }
            }
            c.ledger_transactions = txs.len() as u64;
            c.positions = positions.len() as u64;
            c
        }
    }
}
