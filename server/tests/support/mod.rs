//! A real node with the TCP gateway, in-process on a temp dir (always-open schedule, no feed,
//! durability none, an ephemeral port), and helpers to fund accounts and log in.

#![allow(dead_code)]

pub mod http;
pub mod process;
pub mod ws;

use kuku_engine::{AccountId, Amount, EngineConfig, ExternalRef, MarketPhase, Price, Qty, Side};
use kuku_gateway::auth::{Secret, Token, encode_hex};
use kuku_gateway::client::{AdminClient, LoginOptions, OrderSpec, TradingClient};
use kuku_gateway::protocol::{Code, Message};
use kuku_gateway::server::GatewayHandle;
use kuku_server::config::{FeedSettings, NodeConfig};
use kuku_server::http::{HttpDoor, HttpServer};
use kuku_server::node::{Node, NodeOutputs};
use kuku_server::scheduler::ScheduleMode;
use std::net::SocketAddr;
use std::path::Path;

pub const ADMIN_TOKEN: Token = [0xad; 32];
pub const SECRET: [u8; 32] = [0x5e; 32];
/// The HTTP door's JWT signing key in tests (tests mint their own tokens with it).
pub const JWT_KEY: [u8; 32] = [0x7a; 32];
/// Samsung Electronics in the demo universe: base 119,900 KRW, tick 100.
pub const SAMSUNG: &str = "005930";
pub const PRICE: Price = Price(119_900);

pub fn code(s: &str) -> Code {
    Code::new(s).expect("a valid code")
}

pub fn config(dir: &Path) -> NodeConfig {
    let mut c = NodeConfig {
        data_dir: dir.to_owned(),
        durability: "none".into(),
        schedule: ScheduleMode::AlwaysOpen,
        snapshot_every: 0,
        feed: FeedSettings {
            enabled: false,
            ..FeedSettings::default()
        },
        engine: EngineConfig::small(),
        ..NodeConfig::default()
    };
    // Small segments: a test node rolls, and does not zero-fill 64 MiB per journal.
    c.segment_mib = 4;
    c.pipeline.input_ring_size = 1 << 12;
    c.pipeline.output_ring_size = 1 << 14;
    c.gateway.listen = "127.0.0.1:0".into();
    c.gateway.secret_hex = Some(encode_hex(&SECRET));
    c.gateway.admin_token_hex = Some(encode_hex(&ADMIN_TOKEN));
    c.http.listen = "127.0.0.1:0".into();
    c.http.jwt_key_hex = Some(encode_hex(&JWT_KEY));
    c
}

pub struct TestNode {
    pub node: Option<Node>,
    pub gateway: Option<GatewayHandle>,
    /// The HTTP door (only [`TestNode::start_http_with`] starts it).
    pub http: Option<HttpServer>,
    pub addr: SocketAddr,
    pub config: NodeConfig,
    pub dir: tempfile::TempDir,
}

impl TestNode {
    pub fn start() -> TestNode {
        TestNode::start_with(|_| {})
    }

    pub fn start_with(tweak: impl FnOnce(&mut NodeConfig)) -> TestNode {
        TestNode::start_with_outputs(tweak, NodeOutputs::default())
    }

    /// A node with extra output consumers (e.g. a poller the test drains itself: it is in
    /// `node.pollers`).
    pub fn start_with_outputs(
        tweak: impl FnOnce(&mut NodeConfig),
        outputs: NodeOutputs,
    ) -> TestNode {
        let dir = tempfile::tempdir().expect("a temp dir");
        let mut config = config(dir.path());
        tweak(&mut config);
        TestNode::start_in_with(dir, config, outputs)
    }

    fn start_in(dir: tempfile::TempDir, config: NodeConfig) -> TestNode {
        TestNode::start_in_with(dir, config, NodeOutputs::default())
    }

    fn start_in_with(dir: tempfile::TempDir, config: NodeConfig, outputs: NodeOutputs) -> TestNode {
        let (node, gateway) = kuku_server::gateway::start(&config, outputs).expect("node starts");
        // The fresh-journal bootstrap (fees, universe) must be applied before tests trade.
        let mut t = TestNode {
            addr: gateway.local_addr(),
            node: Some(node),
            gateway: Some(gateway),
            http: None,
            config,
            dir,
        };
        t.wait_until_ready();
        t
    }

    /// A node with the TCP gateway and the HTTP door (sharing the rate limits).
    pub fn start_http_with(tweak: impl FnOnce(&mut NodeConfig)) -> TestNode {
        let dir = tempfile::tempdir().expect("a temp dir");
        let mut config = config(dir.path());
        tweak(&mut config);
        let mut outputs = NodeOutputs::default();
        let door = HttpDoor::prepare(&config, &mut outputs).expect("the HTTP door binds");
        let (node, gateway) = kuku_server::gateway::start(&config, outputs).expect("node starts");
        let http = door
            .serve(
                &node,
                gateway.rate_limits(),
                Secret::from_bytes(SECRET),
                ADMIN_TOKEN,
            )
            .expect("the HTTP door serves");
        let mut t = TestNode {
            addr: gateway.local_addr(),
            node: Some(node),
            gateway: Some(gateway),
            http: Some(http),
            config,
            dir,
        };
        t.wait_until_ready();
        t
    }

    /// The HTTP door's address.
    pub fn http_addr(&self) -> SocketAddr {
        self.http.as_ref().expect("started with HTTP").local_addr()
    }

    /// Waits until the bootstrap (fees, universe) is applied and, on the always-open schedule,
    /// the scheduler has opened the market: the read model starts with the engine's phase
    /// (`Closed`), so only `Continuous` says the opening commands were applied.
    fn wait_until_ready(&mut self) {
        let needs_open = self.config.schedule == ScheduleMode::AlwaysOpen;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            if let Ok(mut admin) = AdminClient::login(self.addr, ADMIN_TOKEN)
                && admin.issue_token(AccountId(u32::MAX)).is_ok()
            {
                let rm = self.node.as_ref().unwrap().read_model.read();
                if rm.symbol_by_code(SAMSUNG).is_some()
                    && (!needs_open || rm.phase == Some(MarketPhase::Continuous))
                {
                    return;
                }
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the node never bootstrapped"
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }

    /// Stops gateway and node, then starts them again on the same data directory.
    pub fn restart(mut self) -> TestNode {
        self.stop();
        let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().expect("a temp dir"));
        let mut config = self.config.clone();
        config.data_dir = dir.path().to_owned();
        TestNode::start_in(dir, config)
    }

    pub fn stop(&mut self) {
        if let Some(h) = self.http.take() {
            h.shutdown();
        }
        if let Some(g) = self.gateway.take() {
            g.shutdown();
        }
        if let Some(n) = self.node.take() {
            n.shutdown();
        }
    }

    pub fn admin(&self) -> AdminClient {
        AdminClient::login(self.addr, ADMIN_TOKEN).expect("admin login")
    }

    pub fn token(&self, account: AccountId) -> Token {
        Secret::from_bytes(SECRET).account_token(account)
    }

    /// A new account holding `cash` KRW.
    pub fn funded_account(&self, owner: &str, cash: i64) -> (AccountId, Token) {
        let mut admin = self.admin();
        let r = admin
            .open_account(ExternalRef::new(owner).unwrap())
            .expect("open account");
        assert_eq!(r.code, 0, "{r:?}");
        if cash == 0 {
            return (r.account, self.token(r.account));
        }
        let r = admin
            .deposit(
                r.account,
                Amount(cash),
                ExternalRef::new(&format!("{owner}-dep")).unwrap(),
            )
            .expect("deposit");
        assert_eq!(r.code, 0, "{r:?}");
        (r.account, self.token(r.account))
    }

    pub fn trader(
        &self,
        account: AccountId,
        options: LoginOptions,
    ) -> (TradingClient, Vec<Message>) {
        TradingClient::login(self.addr, account, self.token(account), options).expect("login")
    }

    pub fn gateway(&self) -> &GatewayHandle {
        self.gateway.as_ref().expect("running")
    }
}

impl Drop for TestNode {
    fn drop(&mut self) {
        self.stop();
    }
}

pub fn buy(qty: i64, price: i64) -> OrderSpec {
    OrderSpec::limit(code(SAMSUNG), Side::Buy, Qty(qty), Price(price))
}

pub fn sell(qty: i64, price: i64) -> OrderSpec {
    OrderSpec::limit(code(SAMSUNG), Side::Sell, Qty(qty), Price(price))
}

pub fn accepted(m: &Message) -> kuku_gateway::protocol::OrderAccepted {
    match m {
        Message::OrderAccepted(a) => *a,
        other => panic!("expected OrderAccepted, got {other:?}"),
    }
}

impl TestNode {
    /// Samsung's symbol id on this node.
    pub fn samsung(&self) -> kuku_engine::SymbolId {
        let node = self.node.as_ref().expect("running");
        let read_model = node.read_model.read();
        read_model
            .symbol_by_code(SAMSUNG)
            .expect("listed")
            .symbol
            .id
    }

    /// Gives `account` shares of Samsung (an operator adjustment through the input ring) and
    /// waits until the read model shows them.
    pub fn give_shares(&mut self, account: AccountId, qty: i64) {
        let symbol = self.samsung();
        let node = self.node.as_mut().expect("running");
        node.submit_blocking(kuku_engine::Command::Adjust {
            account,
            asset: kuku_engine::Asset::Shares(symbol),
            amount: Amount(qty),
            external_ref: ExternalRef::new(&format!("shares-{}-{qty}", account.0)).unwrap(),
            cost_price: kuku_engine::Price(0),
        });
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let held = node
                .read_model
                .read()
                .positions
                .get(&(account, symbol))
                .map_or(0, |p| p.qty().0);
            if held >= qty {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the shares never arrived"
            );
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }
}

/// The next message `pick` accepts (others are skipped); panics after 30 s without one, so a
/// missing message fails the test instead of hanging it.
pub fn next_picked<T>(c: &mut TradingClient, mut pick: impl FnMut(Message) -> Option<T>) -> T {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while std::time::Instant::now() < deadline {
        if let Some(m) = c.next_message(std::time::Duration::from_secs(1)).unwrap()
            && let Some(t) = pick(m)
        {
            return t;
        }
    }
    panic!("the expected message did not arrive within 30 s");
}
