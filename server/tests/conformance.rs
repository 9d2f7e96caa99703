//! Conformance of live nodes with docs/protocol.md: every message type, every field and every
//! code the document names occurs on the wire, and every frame a node sends decodes with
//! nothing but the document's own tables (offsets, sizes, field types, enum values), the way
//! a client written in another language from the document would read it.
//!
//! Clients talk to three nodes through a recording proxy (one node per set of limits: a node
//! with tiny capacities for the "full" codes, one with a generous request budget for the
//! Truncated and Busy codes, one with a tiny budget and short timers). After the run, the
//! proxy's byte streams are cut into frames and read with the document's tables; the test
//! then compares what occurred with what the document names. The few codes no client can
//! be sent on this wire, or that need another setup, are listed with the reason and must not
//! occur (so the list cannot go stale). gateway/tests/codec.rs checks the same tables against
//! the codec; this test checks them against running servers.

mod support;

use kuku_engine::{
    AccountId, Amount, ClientOrderId, Command, EngineConfig, ExternalRef, FeeSchedule, Market,
    MarketPhase, OrderId, OrderType, Price, Qty, RejectReason, Side, SymbolName, TaxRates,
    TickRule, TimeInForce, TxId, TxStatus,
};
use kuku_gateway::GatewayError;
use kuku_gateway::client::{AdminClient, Connection, LoginOptions, TradingClient};
use kuku_gateway::protocol::doc::{DocMessage, decode_by_doc, parse_codes, parse_layouts};
use kuku_gateway::protocol::*;
use kuku_gateway::translate::REPORTS_MAX;
use kuku_server::node::NodeOutputs;
use kuku_server::scheduler::ScheduleMode;
use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use support::*;

const WAIT: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------------------------
// The recording proxy

/// One direction of one connection, as the proxy saw it.
struct Stream {
    to_server: bool,
    bytes: Arc<Mutex<Vec<u8>>>,
}

#[derive(Default)]
struct Recording {
    streams: Mutex<Vec<Stream>>,
}

impl Recording {
    fn stream(&self, to_server: bool) -> Arc<Mutex<Vec<u8>>> {
        let bytes = Arc::new(Mutex::new(Vec::new()));
        self.streams.lock().unwrap().push(Stream {
            to_server,
            bytes: Arc::clone(&bytes),
        });
        bytes
    }
}

/// The proxy's copying threads: (copies towards the server, the thread).
type Pumps = Arc<Mutex<Vec<(bool, JoinHandle<()>)>>>;

/// Forwards every connection to `upstream`, recording both directions.
struct Proxy {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
    pumps: Pumps,
    /// The client-side sockets, to unblock their copying threads at the end.
    clients: Arc<Mutex<Vec<TcpStream>>>,
}

fn pump(mut from: TcpStream, mut to: TcpStream, record: Arc<Mutex<Vec<u8>>>) {
    let mut buf = [0u8; 16 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                record.lock().unwrap().extend_from_slice(&buf[..n]);
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}

impl Proxy {
    fn start(upstream: SocketAddr, recording: &Arc<Recording>) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("a port");
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let pumps = Arc::new(Mutex::new(Vec::new()));
        let clients = Arc::new(Mutex::new(Vec::new()));
        let accept = {
            let (stop, pumps, clients, recording) = (
                Arc::clone(&stop),
                Arc::clone(&pumps),
                Arc::clone(&clients),
                Arc::clone(recording),
            );
            std::thread::spawn(move || {
                for client in listener.incoming() {
                    if stop.load(Ordering::Acquire) {
                        break;
                    }
                    let Ok(client) = client else { continue };
                    let Ok(server) = TcpStream::connect(upstream) else {
                        continue;
                    };
                    let _ = client.set_nodelay(true);
                    let _ = server.set_nodelay(true);
                    clients.lock().unwrap().push(client.try_clone().unwrap());
                    let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                    let up = recording.stream(true);
                    let down = recording.stream(false);
                    let mut p = pumps.lock().unwrap();
                    p.push((true, std::thread::spawn(move || pump(client, server, up))));
                    p.push((false, std::thread::spawn(move || pump(s2, c2, down))));
                }
            })
        };
        Proxy {
            addr,
            stop,
            accept: Some(accept),
            pumps,
            clients,
        }
    }

    /// After the node behind it has shut down (it closed every connection): waits for every
    /// byte the node sent, then closes the client sides and joins everything.
    fn finish(mut self) {
        self.stop.store(true, Ordering::Release);
        let _ = TcpStream::connect(self.addr);
        if let Some(a) = self.accept.take() {
            a.join().unwrap();
        }
        let pumps = std::mem::take(&mut *self.pumps.lock().unwrap());
        let (down, up): (Vec<_>, Vec<_>) = pumps.into_iter().partition(|(to, _)| !to);
        for (_, p) in down {
            p.join().unwrap();
        }
        for c in self.clients.lock().unwrap().iter() {
            let _ = c.shutdown(Shutdown::Both);
        }
        for (_, p) in up {
            p.join().unwrap();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Reading the recording with the document

struct Doc {
    layouts: Vec<DocMessage>,
    codes: Vec<(u16, String)>,
    /// Enum name -> its documented values.
    enums: BTreeMap<String, BTreeSet<u8>>,
}

impl Doc {
    fn load() -> Doc {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/protocol.md");
        let text = std::fs::read_to_string(path)
            .expect("docs/protocol.md")
            .replace("\r\n", "\n");
        let mut enums = BTreeMap::new();
        for line in text.lines() {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            if cells.len() != 4 {
                continue;
            }
            let Some(name) = cells[1].strip_prefix('`').and_then(|n| n.strip_suffix('`')) else {
                continue;
            };
            if !name.chars().all(|c| c.is_ascii_alphabetic()) {
                continue;
            }
            let values: BTreeSet<u8> = cells[2]
                .split(", ")
                .filter_map(|item| item.split_whitespace().next()?.parse().ok())
                .collect();
            if !values.is_empty() {
                enums.insert(name.to_owned(), values);
            }
        }
        Doc {
            layouts: parse_layouts(&text),
            codes: parse_codes(&text),
            enums,
        }
    }

    /// Checks one field's bytes against its documented type.
    fn check_field(&self, message: &str, field: &str, wire_type: &str, bytes: &[u8]) {
        let what = format!("{message}.{field} ({wire_type}) = {bytes:02x?}");
        let enum_ok = |name: &str, b: u8| {
            self.enums
                .get(name)
                .unwrap_or_else(|| panic!("{what}: enum {name} is not documented"))
                .contains(&b)
        };
        let code_ok = |b: &[u8]| {
            let len = b.iter().position(|&x| x == 0).unwrap_or(b.len());
            len > 0
                && b[..len].iter().all(u8::is_ascii_alphanumeric)
                && b[len..].iter().all(|&x| x == 0)
        };
        let ok = match wire_type {
            "u8" | "u16" | "u32" | "u64" | "i64" | "i64 (KRW)" | "i64 (shares)" | "bytes" => true,
            "bool (u8 0/1)" => bytes[0] <= 1,
            "Code (char[6])" => code_ok(bytes),
            "Code (char[6], all NUL = none)" => bytes.iter().all(|&b| b == 0) || code_ok(bytes),
            "utf8 (NUL-padded)" => {
                let len = bytes.iter().position(|&x| x == 0).unwrap_or(bytes.len());
                std::str::from_utf8(&bytes[..len]).is_ok() && bytes[len..].iter().all(|&x| x == 0)
            }
            "TickRule (u8 + i64)" => enum_ok("TickKind", bytes[0]),
            "TxStatus (u8, 0 = none)" => bytes[0] == 0 || enum_ok("TxStatus", bytes[0]),
            other => {
                let name = other
                    .strip_suffix(" (u8)")
                    .unwrap_or_else(|| panic!("{what}: the type is not documented"));
                enum_ok(name, bytes[0])
            }
        };
        assert!(ok, "{what}: outside the documented domain");
    }
}

/// What occurred on the wire.
#[derive(Default)]
struct Seen {
    types: BTreeSet<u8>,
    /// (message, field) that carried a non-zero value at least once.
    fields: BTreeSet<(String, String)>,
    /// Codes the server sent (in `code`, `reason` and `outcome_code` fields).
    codes: BTreeSet<u16>,
    frames: usize,
}

impl Seen {
    fn read(&mut self, doc: &Doc, recording: &Recording) {
        for s in recording.streams.lock().unwrap().iter() {
            let bytes = s.bytes.lock().unwrap();
            let mut at = 0;
            while bytes.len() - at >= 3 {
                let length = u16::from_le_bytes([bytes[at], bytes[at + 1]]) as usize;
                let frame_end = at + 2 + length;
                let known = doc.layouts.iter().any(|m| m.msg_type == bytes[at + 2]);
                if s.to_server {
                    // A client stream may end in deliberately malformed bytes: read it up to
                    // the first frame the document does not describe.
                    let whole = frame_end <= bytes.len()
                        && length > 0
                        && split_frame(&bytes[at..frame_end], u16::MAX as usize).is_ok();
                    if !whole
                        || !known
                        || decode_by_doc(&doc.layouts, &bytes[at..frame_end]).is_err()
                    {
                        break;
                    }
                }
                assert!(
                    frame_end <= bytes.len(),
                    "the server sent a partial frame at byte {at}"
                );
                let frame = &bytes[at..frame_end];
                let (m, values) = decode_by_doc(&doc.layouts, frame)
                    .unwrap_or_else(|e| panic!("a frame the document does not describe: {e}"));
                // The codec reads the same frame as the same message type.
                let (codec, used) = split_frame(frame, u16::MAX as usize)
                    .unwrap_or_else(|e| panic!("{}: {e}", m.name))
                    .expect("whole");
                assert_eq!((codec.msg_type(), used), (m.msg_type, frame.len()));
                self.types.insert(m.msg_type);
                self.frames += 1;
                for v in &values {
                    doc.check_field(&m.name, &v.field.name, &v.field.wire_type, v.bytes);
                    if v.is_set() {
                        self.fields.insert((m.name.clone(), v.field.name.clone()));
                    }
                    let is_code =
                        matches!(v.field.name.as_str(), "code" | "reason" | "outcome_code")
                            && v.field.wire_type == "u16";
                    if !s.to_server && is_code && v.is_set() {
                        self.codes.insert(v.int() as u16);
                    }
                }
                at = frame_end;
            }
        }
    }
}

/// Codes the document names that no test here makes a node send, and why.
const CODES_NOT_SENT: &[(u16, &str)] = &[
    (
        1003,
        "InvalidSymbolCode: a wire code (1-6 ASCII letters or digits) is always a valid engine code",
    ),
    (
        1009,
        "DayAlreadyStarted: answers the scheduler's StartOfDay, which concerns no account",
    ),
    (
        1010,
        "DayNotStarted: answers the scheduler's EndOfDay or phase change, which concerns no account",
    ),
    (
        2014,
        "MarketOrderModify: a MARKET order is IOC or FOK, so it is never live when a Modify arrives",
    ),
    (
        4011,
        "LedgerCheckFailed: only a bug makes the ledger refuse what the engine admitted",
    ),
    (
        5001,
        "QuoteCrossed: answers the node's quote feed, not a client",
    ),
    (
        5002,
        "QuoteLocked: answers the node's quote feed, not a client",
    ),
    (
        5003,
        "QuoteOffTick: answers the node's quote feed, not a client",
    ),
    (
        5004,
        "QuoteOutsideBand: answers the node's quote feed, not a client",
    ),
    (
        5005,
        "InvalidQuoteQty: answers the node's quote feed, not a client",
    ),
    (
        5006,
        "QuoteEmpty: answers the node's quote feed, not a client",
    ),
    (
        2016,
        "QuoteStale: needs a quote source that fell silent (the KIS source); server/tests/kis_feed.rs and engine/tests/quote_status.rs",
    ),
    (
        5007,
        "QuoteSourceStale: answers the node's quote feed, not a client",
    ),
    (
        9014,
        "NotPrimary: needs a standby or a fenced primary; server/tests/failover.rs logs in to both",
    ),
    (
        9059,
        "SlowReader: by definition the client is not reading; gateway_hostile.rs checks the counter",
    ),
    (
        9020,
        "InvalidRequest: the HTTP door's; http_api.rs checks it",
    ),
    (
        9021,
        "IdempotencyKeyMissing: the HTTP door's; http_api.rs checks it",
    ),
    (
        9022,
        "IdempotencyKeyInvalid: the HTTP door's; http_api.rs checks it",
    ),
    (
        9023,
        "Unauthenticated: the HTTP door's; http_api.rs checks it",
    ),
    (
        9024,
        "OutcomeUnknown: the HTTP door's; http_outcome.rs checks it",
    ),
    (9025, "NotFound: the HTTP door's; http_api.rs checks it"),
    (9026, "BodyTooLarge: the HTTP door's; http_api.rs checks it"),
    (
        9027,
        "HistoryUnavailable: the HTTP door's, when its query database does not answer",
    ),
    (
        9028,
        "InvalidInterval: the HTTP door's market and reference data; http_market_data.rs checks it",
    ),
    (
        9029,
        "InvalidTimeRange: the HTTP door's market and reference data; http_market_data.rs checks it",
    ),
    (
        9030,
        "UnknownMarket: the HTTP door's market and reference data; http_market_data.rs checks it",
    ),
    (
        9031,
        "InvalidReferenceCode: the HTTP door's market and reference data; http_market_data.rs checks it",
    ),
    (
        9032,
        "InvalidIsin: the HTTP door's market and reference data; http_market_data.rs checks it",
    ),
    (
        9033,
        "InvalidReferenceName: the HTTP door's market and reference data; http_market_data.rs checks it",
    ),
    (
        9034,
        "InvalidLotSize: the HTTP door's market and reference data; http_market_data.rs checks it",
    ),
    (
        9035,
        "InvalidReferenceTickRule: the HTTP door's market and reference data; http_market_data.rs checks it",
    ),
    (
        9036,
        "InvalidListingStatus: the HTTP door's market and reference data; http_market_data.rs checks it",
    ),
    (
        9037,
        "InvalidProvider: the HTTP door's market and reference data; http_market_data.rs checks it",
    ),
    (
        9038,
        "InvalidExternalCode: the HTTP door's market and reference data; http_market_data.rs checks it",
    ),
    (
        9039,
        "UnknownReferenceSymbol: the HTTP door's market and reference data; http_market_data.rs checks it",
    ),
    (
        9040,
        "UnknownMapping: the HTTP door's market and reference data; http_market_data.rs checks it",
    ),
    (
        9041,
        "ReferenceUnavailable: the HTTP door's market and reference data; http_market_data.rs checks it",
    ),
];

// ---------------------------------------------------------------------------------------------
// Helpers

fn reply_code(m: &Message) -> u16 {
    match m {
        Message::OrderRejected(r) => r.reason,
        Message::RequestRejected(r) => r.reason,
        Message::QueryDone(d) => d.code,
        Message::AdminResult(r) => r.code,
        Message::LoginRejected(r) => r.code,
        Message::ProtocolError(p) => p.code,
        Message::Logout(l) => l.code,
        _ => 0,
    }
}

/// Sends a trading request and waits for the reply that answers its key.
fn request(c: &mut TradingClient, m: impl Into<Message>) -> Message {
    let m = m.into();
    let key = match m {
        Message::NewOrder(o) => o.client_order_id.0,
        Message::Cancel(x) => x.request_id.0,
        Message::CancelAll(x) => x.request_id.0,
        Message::Modify(x) => x.request_id.0,
        Message::OrderStatus(q) => q.request_id,
        Message::OpenOrders(q) => q.request_id,
        Message::AccountQuery(q) => q.request_id,
        Message::ReferenceQuery(q) => q.request_id,
        other => panic!("not a request: {other:?}"),
    };
    let sent = m;
    c.send(m).unwrap();
    let deadline = Instant::now() + WAIT;
    while Instant::now() < deadline {
        let Some(r) = c.next_message(Duration::from_millis(500)).unwrap() else {
            continue;
        };
        let answers = match (sent, r) {
            (Message::NewOrder(_), Message::OrderAccepted(a)) => a.client_order_id.0 == key,
            (Message::NewOrder(_), Message::OrderRejected(a)) => a.client_order_id.0 == key,
            (Message::Cancel(_), Message::Cancelled(a)) => a.request_id.0 == key,
            (Message::CancelAll(_), Message::CancelAllDone(a)) => a.request_id.0 == key,
            (Message::Modify(_), Message::Modified(a)) => a.request_id.0 == key,
            (
                Message::Cancel(_) | Message::CancelAll(_) | Message::Modify(_),
                Message::RequestRejected(a),
            ) => a.request_id.0 == key,
            (
                Message::Cancel(_) | Message::CancelAll(_) | Message::Modify(_),
                Message::RequestResent(a),
            ) => a.request_id.0 == key,
            (
                Message::OrderStatus(_)
                | Message::OpenOrders(_)
                | Message::AccountQuery(_)
                | Message::ReferenceQuery(_),
                Message::QueryDone(d),
            ) => d.request_id == key,
            _ => false,
        };
        if answers {
            return r;
        }
    }
    panic!("no reply to key {key}");
}

fn order(key: u64, symbol: &str, side: Side, qty: i64, price: i64) -> NewOrder {
    NewOrder {
        client_order_id: ClientOrderId(key),
        symbol: code(symbol),
        side,
        order_type: OrderType::Limit,
        tif: TimeInForce::Day,
        price: Price(price),
        qty: Qty(qty),
    }
}

fn accepted_id(m: &Message) -> OrderId {
    match m {
        Message::OrderAccepted(a) => a.order_id,
        other => panic!("expected OrderAccepted, got {other:?}"),
    }
}

fn xref(s: &str) -> ExternalRef {
    ExternalRef::new(s).unwrap()
}

fn login_frame(version: u16, account: AccountId, flags: u8, seq: u64, token: [u8; 32]) -> Login {
    Login {
        version,
        account,
        flags,
        last_seen_acct_seq: seq,
        token,
    }
}

/// The next message on a raw connection that `pick` accepts (heartbeats and others skipped).
fn raw_expect<T>(c: &mut Connection, mut pick: impl FnMut(&Message) -> Option<T>) -> T {
    let deadline = Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "the expected message did not arrive");
        let m = c.recv(left).unwrap();
        if let Some(t) = pick(&m) {
            return t;
        }
    }
}

fn raw_code(c: &mut Connection) -> u16 {
    raw_expect(c, |m| match m {
        Message::ProtocolError(_) | Message::LoginRejected(_) | Message::Logout(_) => {
            Some(reply_code(m))
        }
        _ => None,
    })
}

fn wait_phase(t: &TestNode, phase: MarketPhase) {
    let deadline = Instant::now() + WAIT;
    while t.node.as_ref().unwrap().read_model.read().phase != Some(phase) {
        assert!(
            Instant::now() < deadline,
            "the phase never became {phase:?}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

// ---------------------------------------------------------------------------------------------
// Node A: the whole protocol, with tiny capacities for the "full" codes

fn node_a(recording: &Arc<Recording>) {
    let mut t = TestNode::start_with(|c| {
        c.schedule = ScheduleMode::Manual;
        c.engine = EngineConfig {
            orders_max: 24,
            accounts_max: 8,
            symbols_max: 14,
            levels_max: 16,
            orders_per_account_day_max: 40,
            positions_max: 10,
            open_tx_max: 3,
            ..EngineConfig::small()
        };
    });
    let proxy = Proxy::start(t.addr, recording);
    let p = proxy.addr;
    let mut admin = AdminClient::login(p, ADMIN_TOKEN).unwrap();

    // Fees change between trading days; a rate beyond 100% is refused by the gateway.
    let fees = FeeSchedule {
        commission_ppm: 150,
        kospi: TaxRates {
            securities_transaction_ppm: 500,
            rural_special_ppm: 1_500,
        },
        kosdaq: TaxRates {
            securities_transaction_ppm: 2_000,
            rural_special_ppm: 100,
        },
        other: TaxRates {
            securities_transaction_ppm: 300,
            rural_special_ppm: 200,
        },
    };
    assert_eq!(admin.set_fees(fees).unwrap().code, 0);
    let bad = FeeSchedule {
        commission_ppm: 2_000_000,
        ..fees
    };
    assert_eq!(admin.set_fees(bad).unwrap().code, 1011);

    // Accounts.
    let open = |admin: &mut AdminClient, owner: &str| admin.open_account(xref(owner)).unwrap();
    let alice = open(&mut admin, "alice").account;
    let bob = open(&mut admin, "bob").account;
    let carol = open(&mut admin, "carol").account;
    let dave = open(&mut admin, "dave").account;
    let erin = open(&mut admin, "erin").account;
    assert_eq!(open(&mut admin, "").code, RejectReason::InvalidOwner.code());
    for (a, amount) in [(alice, 100_000_000), (bob, 1_000_000), (dave, 50_000_000)] {
        let r = admin
            .deposit(a, Amount(amount), xref(&format!("fund-{a}")))
            .unwrap();
        assert_eq!((r.code, r.tx_status), (0, Some(TxStatus::Posted)));
    }
    let (mut a, _) =
        TradingClient::login(p, alice, t.token(alice), LoginOptions::default()).unwrap();

    // Before the trading day: orders are refused by the engine (sequenced).
    match request(&mut a, order(1, SAMSUNG, Side::Buy, 1, 119_900)) {
        Message::OrderRejected(r) => {
            assert_eq!(r.reason, RejectReason::MarketClosed.code());
            assert!(r.acct_seq > 0);
        }
        other => panic!("{other:?}"),
    }

    // Symbols: a new one, a duplicate, bad tick rules, base prices and lots, a full table.
    let register =
        |admin: &mut AdminClient, c: &str, tick: TickRule, base: i64, banded: bool, lot: i64| {
            admin
                .register_symbol(
                    code(c),
                    SymbolName::new("Test Co").unwrap(),
                    Market::Kosdaq,
                    tick,
                    Price(base),
                    banded,
                    Qty(lot),
                )
                .unwrap()
        };
    let new1 = register(&mut admin, "NEW1", TickRule::Krx, 20_000, true, 1);
    assert!(new1.code == 0 && new1.symbol_id > 0, "{new1:?}");
    assert_eq!(
        register(&mut admin, SAMSUNG, TickRule::Krx, 20_000, true, 1).code,
        1002
    );
    assert_eq!(
        register(&mut admin, "BAD1", TickRule::Fixed(0), 1_000, true, 1).code,
        1004
    );
    assert_eq!(
        register(&mut admin, "BAD2", TickRule::Krx, 20_001, true, 1).code,
        1005
    );
    assert_eq!(
        register(&mut admin, "BAD3", TickRule::Krx, 20_000, true, 0).code,
        1006
    );
    // A KRX rule carrying a tick: refused with the tick rule's code, the session stays up.
    let mut raw_admin = Connection::connect(p).unwrap();
    raw_admin
        .send(login_frame(
            PROTOCOL_VERSION,
            AccountId(0),
            0,
            0,
            ADMIN_TOKEN,
        ))
        .unwrap();
    raw_expect(&mut raw_admin, |m| {
        matches!(m, Message::LoginAccepted(_)).then_some(())
    });
    raw_admin
        .send(RegisterSymbol {
            request_id: 77,
            code: code("BAD4"),
            name: SymbolName::new("x").unwrap(),
            market: Market::Other,
            tick_rule: WireTickRule {
                kind: TickKind::Krx,
                tick: 5,
            },
            base_price: Price(1_000),
            banded: false,
            lot_size: Qty(1),
        })
        .unwrap();
    let r = raw_expect(&mut raw_admin, |m| match m {
        Message::AdminResult(r) => Some(*r),
        _ => None,
    });
    assert_eq!((r.request_id, r.code), (77, 1004));
    let fix5 = register(&mut admin, "FIX5", TickRule::Fixed(5), 1_000, false, 10);
    assert_eq!(fix5.code, 0);
    assert_eq!(
        register(&mut admin, "FULL1", TickRule::Krx, 20_000, true, 1).code,
        1007
    );

    // The trading day opens (the scheduler's commands, submitted by hand on this schedule).
    let day = 20_261_207;
    let node = t.node.as_mut().unwrap();
    node.submit_blocking(Command::StartOfDay {
        trading_day: day,
        base_prices: vec![],
    });
    node.submit_blocking(Command::SetMarketPhase {
        phase: MarketPhase::Continuous,
    });
    wait_phase(&t, MarketPhase::Continuous);
    assert_eq!(admin.set_fees(fees).unwrap().code, 1012);
    let reference = admin.reference(None).unwrap();
    let market = reference.market.expect("a MarketReport");
    assert_eq!(
        (market.trading_day, market.phase),
        (day, MarketPhase::Continuous)
    );
    assert_eq!(market.kosdaq_rural_special_ppm, 100);
    assert_eq!(reference.symbols.len(), 14);
    let samsung = reference
        .symbols
        .iter()
        .find(|s| s.code == Some(code(SAMSUNG)))
        .expect("listed");
    assert_eq!(
        (samsung.base_price, samsung.lower_limit, samsung.upper_limit),
        (Price(119_900), Price(84_000), Price(155_800))
    );
    assert_eq!(admin.reference(Some(code("NOPE"))).unwrap().code, 1001);

    // Transfers of shares, with a cost basis; resends; a different price; bad quantities.
    let r = admin
        .transfer_in(bob, code(SAMSUNG), Qty(100), Price(110_000), xref("b-in"))
        .unwrap();
    assert_eq!(
        (r.code, r.account, r.tx_status),
        (0, bob, Some(TxStatus::Posted))
    );
    let again = admin
        .transfer_in(bob, code(SAMSUNG), Qty(100), Price(110_000), xref("b-in"))
        .unwrap();
    assert!(again.resent && again.tx_id == r.tx_id, "{again:?}");
    let other_price = admin
        .transfer_in(bob, code(SAMSUNG), Qty(100), Price(120_000), xref("b-in"))
        .unwrap();
    assert_eq!(other_price.code, RejectReason::ExternalRefReused.code());
    assert_eq!(
        admin
            .transfer_in(bob, code(SAMSUNG), Qty(0), Price(1), xref("b-zero"))
            .unwrap()
            .code,
        4001
    );
    let view = admin.account(bob).unwrap();
    assert_eq!(view.positions[0].cost_basis, Amount(11_000_000));

    // Orders: a resting buy, a resend, a duplicate key, a fill between two users.
    let (mut b, _) = TradingClient::login(p, bob, t.token(bob), LoginOptions::default()).unwrap();
    let buy = order(10, SAMSUNG, Side::Buy, 10, 119_900);
    let resting = accepted_id(&request(&mut a, buy));
    match request(&mut a, buy) {
        Message::OrderAccepted(r) => assert!(r.resent && r.order_id == resting),
        other => panic!("{other:?}"),
    }
    let dup = NewOrder {
        qty: Qty(11),
        ..buy
    };
    assert_eq!(reply_code(&request(&mut a, dup)), 2011);
    // A trade between two deposits: its TRADE transaction is the id between theirs, and no
    // external transaction can be reversed by it (4007).
    let d1 = admin.deposit(alice, Amount(1_000), xref("a-d1")).unwrap();
    request(&mut b, order(11, SAMSUNG, Side::Sell, 4, 119_900));
    let fill = next_picked(&mut a, |m| match m {
        Message::Execution(e) => Some(e),
        _ => None,
    });
    assert_eq!(
        (fill.liquidity, fill.qty, fill.leaves),
        (Liquidity::Maker, Qty(4), Qty(6))
    );
    let d2 = admin.deposit(alice, Amount(1_000), xref("a-d2")).unwrap();
    assert_eq!(d2.tx_id.0, d1.tx_id.0 + 2, "one TRADE between the deposits");
    assert_eq!(admin.reverse(TxId(d1.tx_id.0 + 1)).unwrap().code, 4007);

    // Modify down (priority kept), no change, up (priority lost), then cancel: the report's
    // quantities (docs/protocol.md, "Quantities").
    let modify = |key, qty, price| Modify {
        request_id: ClientOrderId(key),
        order_id: resting,
        new_qty: Qty(qty),
        new_price: Price(price),
    };
    match request(&mut a, modify(12, 3, 119_900)) {
        Message::Modified(m) => assert!(m.priority_kept && m.leaves == Qty(3)),
        other => panic!("{other:?}"),
    }
    assert_eq!(reply_code(&request(&mut a, modify(13, 3, 119_900))), 2013);
    match request(&mut a, modify(14, 8, 119_900)) {
        Message::Modified(m) => assert!(!m.priority_kept && m.leaves == Qty(8)),
        other => panic!("{other:?}"),
    }
    let cancel = Cancel {
        request_id: ClientOrderId(15),
        order_id: resting,
    };
    match request(&mut a, cancel) {
        Message::Cancelled(c) => assert_eq!((c.qty_cancelled, c.request_id.0), (Qty(8), 15)),
        other => panic!("{other:?}"),
    }
    match request(&mut a, cancel) {
        Message::RequestResent(r) => assert_eq!(r.outcome_code, 0),
        other => panic!("{other:?}"),
    }
    let status = OrderStatus {
        request_id: 16,
        order_id: resting,
    };
    let report = a.order_status(resting).unwrap().unwrap();
    assert_eq!(
        (
            report.state,
            report.qty,
            report.filled,
            report.leaves,
            report.cancelled
        ),
        (WireOrderState::Cancelled, Qty(12), Qty(4), Qty(0), Qty(8))
    );
    assert_eq!(reply_code(&request(&mut a, status)), 0);
    // A rejected cancel, and its resend carrying the original outcome.
    let unknown = Cancel {
        request_id: ClientOrderId(17),
        order_id: OrderId(999_999),
    };
    match request(&mut a, unknown) {
        Message::RequestRejected(r) => assert!(r.acct_seq > 0 && r.reason == 2007),
        other => panic!("{other:?}"),
    }
    match request(&mut a, unknown) {
        Message::RequestResent(r) => assert_eq!(r.outcome_code, 2007),
        other => panic!("{other:?}"),
    }

    // A cancel-all of one symbol, and its resend.
    request(&mut a, order(20, SAMSUNG, Side::Buy, 1, 119_000));
    request(&mut a, order(21, SAMSUNG, Side::Buy, 1, 118_900));
    let all = CancelAll {
        request_id: ClientOrderId(22),
        symbol: Some(code(SAMSUNG)),
    };
    match request(&mut a, all) {
        Message::CancelAllDone(d) => assert_eq!((d.cancelled, d.symbol), (2, Some(code(SAMSUNG)))),
        other => panic!("{other:?}"),
    }
    match request(&mut a, all) {
        Message::RequestResent(r) => assert_eq!(r.cancelled, 2),
        other => panic!("{other:?}"),
    }

    // The engine's order rules, then the gateway's.
    for (o, want) in [
        (order(30, SAMSUNG, Side::Buy, 0, 119_900), 2001),
        (order(31, "FIX5", Side::Buy, 5, 1_000), 2002),
        (order(32, SAMSUNG, Side::Buy, 1, 0), 2003),
        (order(33, SAMSUNG, Side::Buy, 1, 119_950), 2004),
        (order(34, SAMSUNG, Side::Buy, 1, 200_000), 2005),
        (
            NewOrder {
                order_type: OrderType::Market,
                tif: TimeInForce::Ioc,
                price: Price(0),
                ..order(35, "FIX5", Side::Buy, 10, 0)
            },
            2006,
        ),
        (order(36, SAMSUNG, Side::Buy, 1_000, 119_900), 3002),
        (order(49, SAMSUNG, Side::Sell, 1_000, 119_900), 3003),
        (order(37, "NOPE", Side::Buy, 1, 119_900), 1001),
        (order(38, SAMSUNG, Side::Buy, 1, i64::MAX), 2015),
        (order(1 << 63, SAMSUNG, Side::Buy, 1, 119_900), 9003),
        (
            NewOrder {
                order_type: OrderType::Market,
                tif: TimeInForce::Ioc,
                ..order(39, SAMSUNG, Side::Buy, 1, 119_900)
            },
            9006,
        ),
        (
            NewOrder {
                order_type: OrderType::Market,
                tif: TimeInForce::Day,
                price: Price(0),
                ..order(40, SAMSUNG, Side::Buy, 1, 0)
            },
            9007,
        ),
    ] {
        let reply = request(&mut a, o);
        assert_eq!(reply_code(&reply), want, "{o:?}: {reply:?}");
        if let Message::OrderRejected(r) = reply {
            assert_eq!(r.symbol, Some(o.symbol), "the symbol is echoed");
            assert_eq!(
                r.acct_seq == 0,
                want >= 9000 || want == 1001 || want == 2015
            );
        }
    }
    // A rejected order's resend: the original outcome.
    match request(&mut a, order(36, SAMSUNG, Side::Buy, 1_000, 119_900)) {
        Message::OrderRejected(r) => assert!(r.resent && r.reason == 3002),
        other => panic!("{other:?}"),
    }

    // MARKET, IOC and FOK remainders; self-trade prevention.
    request(&mut b, order(40, SAMSUNG, Side::Sell, 5, 119_900));
    let market = |key, qty, tif| NewOrder {
        order_type: OrderType::Market,
        tif,
        price: Price(0),
        ..order(key, SAMSUNG, Side::Buy, qty, 0)
    };
    accepted_id(&request(&mut a, market(41, 5, TimeInForce::Ioc)));
    let cause = |c: &mut TradingClient| {
        next_picked(c, |m| match m {
            Message::Cancelled(x) => Some(x.reason),
            _ => None,
        })
    };
    accepted_id(&request(&mut a, market(42, 5, TimeInForce::Ioc)));
    assert_eq!(
        cause(&mut a),
        CancelCause::Engine(kuku_engine::CancelReason::MarketRemainder)
    );
    accepted_id(&request(
        &mut a,
        NewOrder {
            tif: TimeInForce::Ioc,
            ..order(43, SAMSUNG, Side::Buy, 3, 119_900)
        },
    ));
    assert_eq!(
        cause(&mut a),
        CancelCause::Engine(kuku_engine::CancelReason::IocRemainder)
    );
    accepted_id(&request(
        &mut a,
        NewOrder {
            tif: TimeInForce::Fok,
            ..order(44, SAMSUNG, Side::Buy, 3, 119_900)
        },
    ));
    assert_eq!(
        cause(&mut a),
        CancelCause::Engine(kuku_engine::CancelReason::FokUnfilled)
    );
    request(&mut a, order(45, SAMSUNG, Side::Sell, 1, 120_000));
    accepted_id(&request(&mut a, order(46, SAMSUNG, Side::Buy, 1, 120_000)));
    assert_eq!(
        cause(&mut a),
        CancelCause::Engine(kuku_engine::CancelReason::SelfTrade)
    );
    accepted_id(&request(&mut a, order(48, SAMSUNG, Side::Buy, 1, 100_000)));
    // Bob sells to Alice's resting buy: a sell pays taxes; Bob's position realizes profit.
    request(&mut a, order(47, SAMSUNG, Side::Buy, 2, 119_800));
    request(&mut b, order(41, SAMSUNG, Side::Sell, 2, 119_800));
    let sold = next_picked(&mut b, |m| match m {
        Message::Execution(e) => Some(e),
        _ => None,
    });
    assert!(
        sold.tax.0 > 0 && sold.liquidity == Liquidity::Taker,
        "{sold:?}"
    );
    request(&mut b, order(42, SAMSUNG, Side::Sell, 1, 150_000));

    // Queries: own orders and account, another account's, the reference data after trades.
    let open_orders = request(
        &mut a,
        OpenOrders {
            request_id: 50,
            symbol: Some(code(SAMSUNG)),
        },
    );
    assert!(
        matches!(open_orders, Message::QueryDone(d) if d.code == 0 && d.count == 2),
        "{open_orders:?}"
    );
    let own = a.account().unwrap();
    assert!(own.snapshot.cash_hold.0 > 0 && !own.positions.is_empty());
    let bob_view = b.account().unwrap();
    assert!(bob_view.positions[0].realized_pnl.0 != 0 && bob_view.positions[0].qty_hold.0 > 0);
    let theirs = request(
        &mut b,
        AccountQuery {
            request_id: 51,
            account: alice,
        },
    );
    assert_eq!(reply_code(&theirs), 9004);
    assert_eq!(b.order_status(resting).unwrap(), Err(2007));
    let traded = b.reference(Some(code(SAMSUNG))).unwrap();
    assert_eq!(traded.symbols[0].last_price, Price(119_800));
    assert!(admin.account(alice).is_ok());
    match admin.account(AccountId(0)) {
        Err(GatewayError::Unexpected(e)) => assert!(e.contains("3001"), "{e}"),
        other => panic!("{other:?}"),
    }

    // Money: withdrawals confirmed and failed, bad transitions, resends, reversals.
    let w = admin.withdraw(alice, Amount(1_000), xref("a-w1")).unwrap();
    assert_eq!(w.tx_status, Some(TxStatus::Pending));
    assert_eq!(
        admin.confirm(w.tx_id).unwrap().tx_status,
        Some(TxStatus::Posted)
    );
    assert_eq!(admin.confirm(w.tx_id).unwrap().code, 4003);
    let w2 = admin.withdraw(alice, Amount(1_000), xref("a-w2")).unwrap();
    assert_eq!(
        admin.fail(w2.tx_id).unwrap().tx_status,
        Some(TxStatus::Failed)
    );
    assert_eq!(admin.confirm(TxId(999_999)).unwrap().code, 4002);
    assert_eq!(
        admin
            .withdraw(alice, Amount(10_000_000_000), xref("a-w3"))
            .unwrap()
            .code,
        3002
    );
    // Admin rejects that concern the account reach its sessions too (sequenced).
    let rejected = next_picked(&mut a, |m| match m {
        Message::CommandRejected(c) if c.command == kuku_engine::CommandKind::Withdraw => Some(c),
        _ => None,
    });
    assert_eq!(rejected.reason, 3002);
    assert_eq!(
        admin.deposit(alice, Amount(0), xref("a-d0")).unwrap().code,
        4001
    );
    let d3 = admin.deposit(alice, Amount(5_000), xref("a-d3")).unwrap();
    let d3_again = admin.deposit(alice, Amount(5_000), xref("a-d3")).unwrap();
    assert!(d3_again.resent && d3_again.tx_id == d3.tx_id);
    assert_eq!(
        admin
            .deposit(alice, Amount(6_000), xref("a-d3"))
            .unwrap()
            .code,
        4008
    );
    let reversal = admin.reverse(d3.tx_id).unwrap();
    assert_eq!(reversal.code, 0);
    assert_eq!(admin.reverse(d3.tx_id).unwrap().code, 4005);
    assert_eq!(admin.reverse(reversal.tx_id).unwrap().code, 4004);
    let funding = admin
        .deposit(alice, Amount(100_000_000), xref(&format!("fund-{alice}")))
        .unwrap();
    assert_eq!(admin.reverse(funding.tx_id).unwrap().code, 4006);
    // Open transactions are bounded (open_tx_max = 3).
    let pending: Vec<_> = (0..3)
        .map(|i| {
            admin
                .withdraw(dave, Amount(10), xref(&format!("d-w{i}")))
                .unwrap()
        })
        .collect();
    assert_eq!(
        admin.withdraw(dave, Amount(10), xref("d-w3")).unwrap().code,
        4009
    );
    for w in pending {
        admin.fail(w.tx_id).unwrap();
    }
    // Shares out: more than held, then one.
    assert_eq!(
        admin
            .transfer_out(bob, code(SAMSUNG), Qty(1_000), xref("b-out0"))
            .unwrap()
            .code,
        4010
    );
    assert_eq!(
        admin
            .transfer_out(bob, code(SAMSUNG), Qty(1), xref("b-out1"))
            .unwrap()
            .code,
        0
    );
    // A cost basis beyond i64: the tenth transfer of 10^9 shares at 10^9 overflows it.
    let mut overflow = 0;
    for i in 0..10 {
        overflow = admin
            .transfer_in(
                carol,
                code("NEW1"),
                Qty(1_000_000_000),
                Price(1_000_000_000),
                xref(&format!("ov{i}")),
            )
            .unwrap()
            .code;
    }
    assert_eq!(overflow, RejectReason::Overflow.code());

    // Tokens; an account resent; full tables of accounts and positions.
    assert!(admin.issue_token(alice).unwrap().is_ok());
    assert_eq!(admin.issue_token(AccountId(999)).unwrap(), Err(3001));
    let resent = open(&mut admin, "alice");
    assert!(resent.resent && resent.account == alice);
    let mut code_seen = 0;
    for i in 0..10 {
        code_seen = open(&mut admin, &format!("filler-{i}")).code;
        if code_seen != 0 {
            break;
        }
    }
    assert_eq!(code_seen, 3004);
    // Keys per account per day (40): Erin uses hers up on cancels of unknown orders.
    let (mut e, _) = TradingClient::login(p, erin, t.token(erin), LoginOptions::default()).unwrap();
    let mut last = 0;
    for key in 1..=41 {
        last = reply_code(&request(
            &mut e,
            Cancel {
                request_id: ClientOrderId(key),
                order_id: OrderId(999_999),
            },
        ));
    }
    assert_eq!(last, 2012);
    // Levels (16 per side) and orders (24 live) are bounded.
    let (mut d, _) = TradingClient::login(p, dave, t.token(dave), LoginOptions::default()).unwrap();
    let mut levels = Vec::new();
    for k in 0..17 {
        levels.push(reply_code(&request(
            &mut d,
            order(100 + k, "FIX5", Side::Buy, 10, 1_000 - 5 * k as i64),
        )));
    }
    assert_eq!(levels.last(), Some(&2010), "{levels:?}");
    let mut last = 0;
    for k in 0..24 {
        last = reply_code(&request(
            &mut d,
            order(200 + k, "FIX5", Side::Buy, 10, 1_000),
        ));
        if last != 0 {
            break;
        }
    }
    assert_eq!(last, 2009);

    // Positions are bounded (10): Erin receives shares of one symbol after another.
    let mut code_seen = 0;
    for s in reference.symbols.iter().filter_map(|s| s.code) {
        code_seen = admin
            .transfer_in(erin, s, Qty(1), Price(0), xref(&format!("e-{s}")))
            .unwrap()
            .code;
        if code_seen != 0 {
            break;
        }
    }
    assert_eq!(code_seen, 3005);

    // Reconnects: a replay from a seq, a seq ahead, a bad token, an unknown account.
    let seen = a.last_seen_acct_seq;
    let (again, replayed) = TradingClient::login(
        p,
        alice,
        t.token(alice),
        LoginOptions::default_from(seen / 2),
    )
    .unwrap();
    assert_eq!(again.accepted.replay_first_seq, seen / 2 + 1);
    assert!(!replayed.is_empty());
    let refused = |account: AccountId, token, seq| match TradingClient::login(
        p,
        account,
        token,
        LoginOptions::default_from(seq),
    ) {
        Err(GatewayError::LoginRejected { code }) => code,
        other => panic!("{:?}", other.map(|_| ())),
    };
    assert_eq!(refused(alice, t.token(alice), u64::MAX), 9011);
    assert_eq!(refused(alice, t.token(bob), 0), 9010);
    assert_eq!(refused(AccountId(200), t.token(AccountId(200)), 0), 3001);
    again.logout().unwrap();

    // Versions: a version-1 Login (no version field) and an unknown version.
    let mut v1 = Connection::connect(p).unwrap();
    let mut frame = Message::from(login_frame(2, alice, 0, 0, t.token(alice))).to_frame();
    frame.remove(3);
    frame.remove(3);
    frame[0] = 46;
    v1.send_raw(&frame).unwrap();
    assert_eq!(raw_code(&mut v1), 9015);
    let mut v3 = Connection::connect(p).unwrap();
    v3.send(login_frame(3, alice, 0, 0, t.token(alice)))
        .unwrap();
    assert_eq!(raw_code(&mut v3), 9015);

    // Protocol errors: each closes only its own connection.
    let raw = |bytes: &[u8]| {
        let mut c = Connection::connect(p).unwrap();
        c.send_raw(bytes).unwrap();
        raw_code(&mut c)
    };
    assert_eq!(raw(&[0xff, 0xff, 0x10]), 9050);
    assert_eq!(raw(&[0, 0]), 9051);
    assert_eq!(raw(&[1, 0, 0xee]), 9052);
    assert_eq!(raw(&[5, 0, Heartbeat::TYPE, 0, 0, 0, 0]), 9053);
    assert_eq!(
        raw(&Message::from(AccountQuery {
            request_id: 1,
            account: AccountId(0)
        })
        .to_frame()),
        9055
    );
    let alice_token = t.token(alice);
    let logged_in = |flags| {
        let mut c = Connection::connect(p).unwrap();
        c.send(login_frame(PROTOCOL_VERSION, alice, flags, 0, alice_token))
            .unwrap();
        raw_expect(&mut c, |m| {
            matches!(m, Message::LoginAccepted(_)).then_some(())
        });
        c
    };
    let mut c = logged_in(FLAG_NO_REPLAY);
    let mut bad_side = Message::from(order(60, SAMSUNG, Side::Buy, 1, 119_900)).to_frame();
    bad_side[17] = 9;
    c.send_raw(&bad_side).unwrap();
    assert_eq!(raw_code(&mut c), 9054);
    let mut c = logged_in(FLAG_NO_REPLAY);
    c.send(IssueToken {
        request_id: 1,
        account: alice,
    })
    .unwrap();
    assert_eq!(raw_code(&mut c), 9056);
    let mut c = logged_in(FLAG_NO_REPLAY);
    c.send(Logout { code: 0 }).unwrap();
    assert_eq!(raw_code(&mut c), 0, "a Logout is answered with Logout 0");

    // The end of the day expires DAY orders; a session still open at shutdown hears why.
    let node = t.node.as_mut().unwrap();
    node.submit_blocking(Command::EndOfDay { trading_day: day });
    let expired = next_picked(&mut d, |m| match m {
        Message::Cancelled(c) => Some(c),
        _ => None,
    });
    assert_eq!(expired.reason, CancelCause::Expired);
    let report = d.order_status(expired.order_id).unwrap().unwrap();
    assert_eq!(report.state, WireOrderState::Expired);
    let mut last_session = logged_in(FLAG_CANCEL_ON_DISCONNECT);
    drop((a, b, d, e, admin, raw_admin));
    t.stop();
    assert_eq!(
        raw_code(&mut last_session),
        GatewayCode::ShuttingDown.code()
    );
    proxy.finish();
}

// ---------------------------------------------------------------------------------------------
// Node B: a generous budget, for a truncated answer and a full input ring

/// Orders in the Busy flood: more than the output ring (16,384 events, one per order here)
/// and the input ring (4,096) hold together.
const FLOOD: usize = 24_000;

fn node_b(recording: &Arc<Recording>) {
    let outputs = NodeOutputs {
        pollers: 1,
        ..NodeOutputs::default()
    };
    let mut t = TestNode::start_with_outputs(
        |c| {
            c.gateway.rate_per_s = 1_000_000_000;
            c.gateway.burst = 1_000_000_000;
            c.engine = EngineConfig {
                orders_max: 8_192,
                orders_per_account_day_max: 8_000,
                ..EngineConfig::small()
            };
        },
        outputs,
    );
    // A consumer of the node's output that the test can stop: when it stops, the output ring
    // fills, the processor waits, the input ring fills, and the gateway answers Busy.
    let mut poller = t
        .node
        .as_mut()
        .unwrap()
        .pollers
        .pop()
        .expect("the extra poller");
    let paused = Arc::new(AtomicBool::new(false));
    let drainer = {
        let paused = Arc::clone(&paused);
        std::thread::spawn(move || {
            loop {
                if paused.load(Ordering::Acquire) {
                    std::thread::sleep(Duration::from_millis(1));
                    continue;
                }
                match poller.take(4_096) {
                    // Only the events read are released to the producer.
                    Ok(mut guard) => for _ in &mut guard {},
                    Err(disruptor::Polling::NoEvents) => {
                        std::thread::sleep(Duration::from_millis(1))
                    }
                    Err(disruptor::Polling::Shutdown) => return,
                }
            }
        })
    };
    let proxy = Proxy::start(t.addr, recording);
    let p = proxy.addr;
    let mut admin = AdminClient::login(p, ADMIN_TOKEN).unwrap();
    let cheap = admin
        .register_symbol(
            code("CHEAP"),
            SymbolName::new("Cheap").unwrap(),
            Market::Other,
            TickRule::Fixed(1),
            Price(100),
            false,
            Qty(1),
        )
        .unwrap();
    assert_eq!(cheap.code, 0);
    let (account, _) = t.funded_account("many", 1_000_000_000);
    let (c, _) =
        TradingClient::login(p, account, t.token(account), LoginOptions::default()).unwrap();
    // More live orders than one answer holds.
    let n = REPORTS_MAX as u64 + 1;
    let mut burst = Vec::new();
    for k in 1..=n {
        Message::from(order(k, "CHEAP", Side::Buy, 1, 1)).encode(&mut burst);
    }
    let mut conn = c.into_connection();
    conn.send_raw(&burst).unwrap();
    let mut accepted = 0;
    let deadline = Instant::now() + Duration::from_secs(60);
    while accepted < n {
        assert!(
            Instant::now() < deadline,
            "{accepted} of {n} orders accepted"
        );
        match conn.recv(WAIT).unwrap() {
            Message::OrderAccepted(_) => accepted += 1,
            // The input ring was full (the key was not used): send that order again.
            Message::OrderRejected(r) if r.reason == GatewayCode::Busy.code() => {
                conn.send(order(r.client_order_id.0, "CHEAP", Side::Buy, 1, 1))
                    .unwrap();
            }
            Message::OrderRejected(r) => panic!("{r:?}"),
            _ => {}
        }
    }
    conn.send(OpenOrders {
        request_id: 1,
        symbol: None,
    })
    .unwrap();
    let done = raw_expect(&mut conn, |m| match m {
        Message::QueryDone(d) => Some(*d),
        _ => None,
    });
    assert_eq!((done.code, done.count), (9005, REPORTS_MAX as u32));

    // Busy: stop the extra consumer, then send more orders than both rings hold (each a
    // duplicate key: one event each) while reading the answers.
    paused.store(true, Ordering::Release);
    let flood: Vec<u8> = {
        let mut f = Vec::new();
        let m = Message::from(order(1, "CHEAP", Side::Buy, 2, 1));
        for _ in 0..FLOOD {
            m.encode(&mut f);
        }
        f
    };
    let mut writer = conn.stream().try_clone().unwrap();
    let sender = std::thread::spawn(move || writer.write_all(&flood).is_ok());
    // Every order of the flood is answered: a DuplicateKey from the engine, or Busy.
    let mut busy = 0;
    let mut answered = 0;
    let deadline = Instant::now() + Duration::from_secs(60);
    while answered < FLOOD {
        assert!(
            Instant::now() < deadline,
            "{answered} of {FLOOD} answered, {busy} Busy"
        );
        if let Message::OrderRejected(r) = conn.recv(WAIT).unwrap() {
            answered += 1;
            if r.reason == GatewayCode::Busy.code() {
                if busy == 0 {
                    // Seen: let the consumer go on, the node drains what it holds.
                    paused.store(false, Ordering::Release);
                }
                busy += 1;
            } else {
                assert_eq!(r.reason, RejectReason::DuplicateKey.code());
            }
        }
    }
    assert!(busy > 0, "the input ring never filled");
    assert!(sender.join().unwrap());
    drop((conn, admin));
    t.stop();
    drainer.join().unwrap();
    proxy.finish();
}

// ---------------------------------------------------------------------------------------------
// Node C: a tiny budget, few sessions, short timers

fn node_c(recording: &Arc<Recording>) {
    let t = TestNode::start_with(|c| {
        // Never refills: exactly 3 requests per account, whatever the timing.
        c.gateway.rate_per_s = 0;
        c.gateway.burst = 3;
        c.gateway.sessions_max = 4;
        c.gateway.heartbeat_interval_ms = 100;
        c.gateway.idle_timeout_ms = 600;
        c.gateway.login_timeout_ms = 300;
    });
    let proxy = Proxy::start(t.addr, recording);
    let p = proxy.addr;
    let (account, _) = t.funded_account("limited", 1_000);
    // One budget for the account: two sessions share its 3 tokens.
    let (mut s1, _) =
        TradingClient::login(p, account, t.token(account), LoginOptions::default()).unwrap();
    let (mut s2, _) =
        TradingClient::login(p, account, t.token(account), LoginOptions::default()).unwrap();
    assert_eq!(s1.accepted.burst, 3);
    let query = |key| AccountQuery {
        request_id: key,
        account: AccountId(0),
    };
    let codes: Vec<u16> = (1..=3)
        .map(|k| reply_code(&request(&mut s1, query(k))))
        .chain((4..=5).map(|k| reply_code(&request(&mut s2, query(k)))))
        .collect();
    assert_eq!(codes.iter().filter(|&&c| c == 9002).count(), 2, "{codes:?}");
    assert_eq!(
        codes[..3].iter().filter(|&&c| c == 0).count(),
        3,
        "{codes:?}"
    );
    // A silent session hears heartbeats, then is closed for idleness.
    let mut idle = Connection::connect(p).unwrap();
    idle.set_heartbeat_interval(Duration::from_secs(3_600));
    idle.send(login_frame(
        PROTOCOL_VERSION,
        account,
        FLAG_NO_REPLAY,
        0,
        t.token(account),
    ))
    .unwrap();
    raw_expect(&mut idle, |m| {
        matches!(m, Message::Heartbeat(_)).then_some(())
    });
    assert_eq!(raw_code(&mut idle), 9057);
    // A connection that never logs in.
    let mut mute = Connection::connect(p).unwrap();
    assert_eq!(raw_code(&mut mute), 9058);
    // sessions_max = 4: once the two closed sessions are gone, two more fit and the fifth is
    // refused at once.
    drop((idle, mute));
    let deadline = Instant::now() + WAIT;
    while t.gateway().stats().sessions_open.load(Ordering::Relaxed) != 2 {
        assert!(
            Instant::now() < deadline,
            "the closed sessions were never reaped"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let _third = Connection::connect(p).unwrap();
    let _fourth = Connection::connect(p).unwrap();
    let mut fifth = Connection::connect(p).unwrap();
    assert_eq!(raw_code(&mut fifth), GatewayCode::SessionsFull.code());
    drop((s1, s2));
    let mut t = t;
    t.stop();
    proxy.finish();
}

/// A node past an epoch boundary: a client that saw messages the old epoch's tail lost (here
/// made by journaling `BeginEpoch` the way a promoted primary does) is told where to resume.
fn node_d(recording: &Arc<Recording>) {
    let mut t = TestNode::start();
    let proxy = Proxy::start(t.addr, recording);
    let p = proxy.addr;
    let (account, _) = t.funded_account("diverged", 1_000);
    let last_before = {
        let node = t.node.as_ref().unwrap();
        let read_model = node.read_model.read();
        read_model.accounts.get(&account).map_or(0, |a| a.acct_seq)
    };
    t.node
        .as_mut()
        .unwrap()
        .submit_blocking(kuku_engine::Command::BeginEpoch { epoch: 1 });
    // The admin reply comes after the gateway fanned out everything before it.
    let r = t
        .admin()
        .deposit(account, Amount(5), ExternalRef::new("after-epoch").unwrap())
        .unwrap();
    assert_eq!(r.code, 0, "{r:?}");
    let mut c = Connection::connect(p).unwrap();
    c.send(login_frame(
        PROTOCOL_VERSION,
        account,
        0,
        last_before + 1,
        t.token(account),
    ))
    .unwrap();
    let diverged = raw_expect(&mut c, |m| match m {
        Message::LoginDiverged(d) => Some(*d),
        _ => None,
    });
    assert_eq!(diverged.code, GatewayCode::HistoryDiverged.code());
    assert_eq!(diverged.replay_from_seq, last_before);
    t.stop();
    proxy.finish();
}

#[test]
fn heavy_every_message_field_and_code_of_the_document_occurs_on_a_live_node() {
    let doc = Doc::load();
    let recording = Arc::new(Recording::default());
    node_a(&recording);
    node_b(&recording);
    node_c(&recording);
    node_d(&recording);
    let mut seen = Seen::default();
    seen.read(&doc, &recording);
    assert!(seen.frames > 1_000, "{} frames", seen.frames);

    let missing_types: Vec<&str> = doc
        .layouts
        .iter()
        .filter(|m| !seen.types.contains(&m.msg_type))
        .map(|m| m.name.as_str())
        .collect();
    assert!(
        missing_types.is_empty(),
        "message types never on the wire: {missing_types:?}"
    );

    let missing_fields: Vec<String> = doc
        .layouts
        .iter()
        .flat_map(|m| {
            m.fields
                .iter()
                .map(move |f| (m.name.clone(), f.name.clone()))
        })
        .filter(|k| !seen.fields.contains(k))
        .map(|(m, f)| format!("{m}.{f}"))
        .collect();
    assert!(
        missing_fields.is_empty(),
        "fields that never carried a value other than 0: {missing_fields:?}"
    );

    let documented: BTreeSet<u16> = doc.codes.iter().map(|(c, _)| *c).collect();
    for (code, why) in CODES_NOT_SENT {
        assert!(
            documented.contains(code),
            "{code} is not documented ({why})"
        );
        assert!(
            !seen.codes.contains(code),
            "{code} was sent after all: drop it from the list"
        );
    }
    let exempt: BTreeSet<u16> = CODES_NOT_SENT.iter().map(|(c, _)| *c).collect();
    let missing_codes: Vec<&(u16, String)> = doc
        .codes
        .iter()
        .filter(|(c, _)| !seen.codes.contains(c) && !exempt.contains(c))
        .collect();
    assert!(
        missing_codes.is_empty(),
        "codes never sent: {missing_codes:?}"
    );
    let undocumented: Vec<&u16> = seen
        .codes
        .iter()
        .filter(|c| !documented.contains(c))
        .collect();
    assert!(
        undocumented.is_empty(),
        "codes sent but not documented: {undocumented:?}"
    );
}
