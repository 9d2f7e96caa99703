//! Hostile clients against a live gateway: malformed frames of every kind, slow dribbles,
//! truncated frames, arbitrary bytes (proptest), 1,000 connections opened and dropped, and a
//! client that never reads. Throughout, a well-behaved client keeps being served, the
//! gateway never stops, and memory stays bounded.

mod support;

use kuku_engine::{AccountId, Price, Qty};
use kuku_gateway::GatewayError;
use kuku_gateway::client::{Connection, LoginOptions, TradingClient};
use kuku_gateway::protocol::*;
use proptest::prelude::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use support::*;

const WAIT: Duration = Duration::from_secs(10);

/// The well-behaved client: places an order and must get its ack promptly.
struct Good {
    client: TradingClient,
}

impl Good {
    fn new(t: &TestNode) -> Good {
        let (alice, _) = t.funded_account("good", 10_000_000_000);
        let options = LoginOptions {
            no_replay: true,
            ..LoginOptions::default()
        };
        Good {
            client: t.trader(alice, options).0,
        }
    }

    fn is_served(&mut self) {
        let started = Instant::now();
        let reply = self.client.place(buy(1, 110_000)).expect("served");
        assert!(matches!(reply, Message::OrderAccepted(_)), "{reply:?}");
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "served slowly: {:?}",
            started.elapsed()
        );
        while self.client.next_message(Duration::ZERO).unwrap().is_some() {}
    }
}

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

/// Sends `bytes` on a fresh connection and returns the ProtocolError code the server answers
/// with (it must then close the connection).
fn protocol_error_for(t: &TestNode, login_first: bool, bytes: &[u8]) -> u16 {
    let mut c = Connection::connect(t.addr).unwrap();
    if login_first {
        let alice = AccountId(1);
        c.send(Login {
            version: PROTOCOL_VERSION,
            account: alice,
            flags: FLAG_NO_REPLAY,
            last_seen_acct_seq: 0,
            token: t.token(alice),
        })
        .unwrap();
        assert!(matches!(c.recv(WAIT).unwrap(), Message::LoginAccepted(_)));
    }
    c.send_raw(bytes).unwrap();
    let code = loop {
        match c.recv(WAIT) {
            Ok(Message::ProtocolError(p)) => break p.code,
            Ok(Message::Heartbeat(_)) => continue,
            other => panic!("expected a ProtocolError, got {other:?}"),
        }
    };
    assert!(
        matches!(c.recv(WAIT), Err(GatewayError::Closed)),
        "closed after the error"
    );
    code
}

fn frame(len: u16, ty: u8, body: &[u8]) -> Vec<u8> {
    let mut f = len.to_le_bytes().to_vec();
    f.push(ty);
    f.extend_from_slice(body);
    f
}

#[test]
fn malformed_frames_get_a_protocol_error_and_a_disconnect() {
    let t = TestNode::start();
    let mut good = Good::new(&t);
    let rss_before = rss_bytes();
    good.is_served();
    // Oversized: refused from the length field alone.
    assert_eq!(
        protocol_error_for(&t, false, &[0xff, 0xff]),
        ProtocolCode::FrameTooLarge.code()
    );
    good.is_served();
    assert_eq!(
        protocol_error_for(&t, false, &[0, 0]),
        ProtocolCode::FrameEmpty.code()
    );
    assert_eq!(
        protocol_error_for(&t, true, &frame(1, 0xee, &[])),
        ProtocolCode::UnknownType.code()
    );
    // A Heartbeat that claims a body.
    assert_eq!(
        protocol_error_for(&t, true, &frame(5, Heartbeat::TYPE, &[0; 4])),
        ProtocolCode::BadLength.code()
    );
    // A NewOrder with side 9.
    let mut order = NewOrder {
        client_order_id: kuku_engine::ClientOrderId(1),
        symbol: code(SAMSUNG),
        side: kuku_engine::Side::Buy,
        order_type: kuku_engine::OrderType::Limit,
        tif: kuku_engine::TimeInForce::Day,
        price: Price(110_000),
        qty: Qty(1),
    };
    let mut bytes = Message::from(order).to_frame();
    bytes[3 + 8 + 6] = 9;
    assert_eq!(
        protocol_error_for(&t, true, &bytes),
        ProtocolCode::InvalidValue.code()
    );
    // A symbol code with a byte after its NUL padding.
    order.symbol = code("0059");
    let mut bytes = Message::from(order).to_frame();
    bytes[3 + 8 + 5] = b'X';
    assert_eq!(
        protocol_error_for(&t, true, &bytes),
        ProtocolCode::InvalidValue.code()
    );
    // A server-only message from a client.
    let hb = Message::from(QueryDone {
        request_id: 1,
        code: 0,
        count: 0,
    })
    .to_frame();
    assert_eq!(
        protocol_error_for(&t, true, &hb),
        ProtocolCode::UnexpectedMessage.code()
    );
    // A second Login.
    let login = Message::from(Login {
        version: PROTOCOL_VERSION,
        account: AccountId(1),
        flags: 0,
        last_seen_acct_seq: 0,
        token: [0; 32],
    });
    assert_eq!(
        protocol_error_for(&t, true, &login.to_frame()),
        ProtocolCode::UnexpectedMessage.code()
    );
    // Unknown login flags.
    let bad_flags = Message::from(Login {
        version: PROTOCOL_VERSION,
        account: AccountId(1),
        flags: 0x80,
        last_seen_acct_seq: 0,
        token: t.token(AccountId(1)),
    });
    assert_eq!(
        protocol_error_for(&t, false, &bad_flags.to_frame()),
        ProtocolCode::InvalidValue.code()
    );
    good.is_served();
    let stats = t.gateway().stats();
    assert!(stats.protocol_errors.load(Ordering::Relaxed) >= 9);
    assert!(rss_bytes() < rss_before + (64 << 20), "memory grew");
}

#[test]
fn truncated_and_dribbled_frames_are_handled_without_stalling_others() {
    let t = TestNode::start_with(|c| c.gateway.login_timeout_ms = 1_500);
    let mut good = Good::new(&t);
    // A frame cut short, left hanging: the others are served meanwhile.
    let mut hanging = TcpStream::connect(t.addr).unwrap();
    let login = Message::from(Login {
        version: PROTOCOL_VERSION,
        account: AccountId(1),
        flags: FLAG_NO_REPLAY,
        last_seen_acct_seq: 0,
        token: t.token(AccountId(1)),
    })
    .to_frame();
    hanging.write_all(&login[..20]).unwrap();
    good.is_served();
    // A valid login dribbled a byte at a time is accepted.
    let mut slow = TcpStream::connect(t.addr).unwrap();
    for b in &login {
        slow.write_all(&[*b]).unwrap();
        std::thread::sleep(Duration::from_millis(3));
        good.is_served_quickly_sometimes();
    }
    slow.set_read_timeout(Some(WAIT)).unwrap();
    let mut head = [0u8; 3];
    slow.read_exact(&mut head).unwrap();
    assert_eq!(head[2], LoginAccepted::TYPE);
    // The hanging one is closed at the login timeout with a LoginTimeout error.
    hanging.set_read_timeout(Some(WAIT)).unwrap();
    let mut reply = Vec::new();
    let _ = hanging.read_to_end(&mut reply);
    let (messages, _) = decode_all(&reply, u16::MAX as usize);
    assert!(
        matches!(messages.last(), Some(Message::ProtocolError(p)) if p.code == ProtocolCode::LoginTimeout.code()),
        "{messages:?}"
    );
    good.is_served();
    // A frame truncated by a close mid-body: nothing breaks.
    let mut cut = TcpStream::connect(t.addr).unwrap();
    cut.write_all(&login[..30]).unwrap();
    drop(cut);
    good.is_served();
}

impl Good {
    /// Cheap variant for loops: one order every 16 calls.
    fn is_served_quickly_sometimes(&mut self) {
        static CALLS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        if CALLS.fetch_add(1, Ordering::Relaxed).is_multiple_of(16) {
            self.is_served();
        }
    }
}

#[test]
fn arbitrary_bytes_never_crash_or_stall_the_server() {
    let t = TestNode::start();
    let mut good = Good::new(&t);
    let token = t.token(AccountId(1));
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: 96,
        failure_persistence: Some(Box::new(
            proptest::test_runner::FileFailurePersistence::Direct(
                "tests/proptest-regressions/gateway_hostile.txt",
            ),
        )),
        ..ProptestConfig::default()
    });
    let strategy = (
        any::<bool>(),
        proptest::collection::vec(any::<u8>(), 0..300),
    );
    runner
        .run(&strategy, |(login_first, bytes)| {
            let mut c = TcpStream::connect(t.addr).unwrap();
            if login_first {
                let login = Message::from(Login {
                    version: PROTOCOL_VERSION,
                    account: AccountId(1),
                    flags: FLAG_NO_REPLAY,
                    last_seen_acct_seq: 0,
                    token,
                });
                c.write_all(&login.to_frame()).unwrap();
            }
            let _ = c.write_all(&bytes);
            // Whatever comes back must be well-formed frames.
            c.set_read_timeout(Some(Duration::from_millis(30))).unwrap();
            let mut reply = vec![0u8; 4096];
            let n = c.read(&mut reply).unwrap_or(0);
            let (_, error) = decode_all(&reply[..n], u16::MAX as usize);
            prop_assert!(error.is_none(), "the server sent a bad frame: {error:?}");
            Ok(())
        })
        .unwrap();
    good.is_served();
    assert!(!t.gateway().is_finished());
}

#[test]
fn heavy_a_thousand_connections_opened_and_dropped() {
    raise_fd_limit(8_192);
    let t = TestNode::start();
    let mut good = Good::new(&t);
    let rss_before = rss_bytes();
    for round in 0..2 {
        let mut conns = Vec::with_capacity(1_000);
        for i in 0..1_000 {
            let mut s = TcpStream::connect(t.addr).expect("connect");
            if i % 3 == 0 {
                let _ = s.write_all(&[0x2d, 0x00, 0x01]);
            }
            conns.push(s);
            if i % 250 == 0 {
                good.is_served();
            }
        }
        good.is_served();
        drop(conns);
        let deadline = Instant::now() + WAIT;
        let open = &t.gateway().stats().sessions_open;
        loop {
            good.is_served();
            if open.load(Ordering::Relaxed) <= 1 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "round {round}: sessions were not reaped"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    let accepted = t
        .gateway()
        .stats()
        .sessions_accepted
        .load(Ordering::Relaxed);
    assert!(accepted >= 2_000, "{accepted}");
    assert!(rss_bytes() < rss_before + (128 << 20), "memory grew");
}

#[test]
fn heavy_a_client_that_never_reads_is_disconnected_and_others_are_served() {
    let t = TestNode::start_with(|c| {
        c.gateway.outbound_bytes_max = 64 * 1024;
        c.gateway.rate_per_s = 10_000_000;
        c.gateway.burst = 10_000_000;
    });
    let mut good = Good::new(&t);
    let (deaf_account, _) = t.funded_account("deaf", 1_000);
    let mut deaf = Connection::connect(t.addr).unwrap();
    deaf.send(Login {
        version: PROTOCOL_VERSION,
        account: deaf_account,
        flags: FLAG_NO_REPLAY,
        last_seen_acct_seq: 0,
        token: t.token(deaf_account),
    })
    .unwrap();
    let query = Message::from(AccountQuery {
        request_id: 1,
        account: AccountId(0),
    })
    .to_frame();
    let burst: Vec<u8> = query
        .iter()
        .copied()
        .cycle()
        .take(query.len() * 1_000)
        .collect();
    let slow = &t.gateway().stats().slow_readers;
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut sent = 0usize;
    while slow.load(Ordering::Relaxed) == 0 {
        assert!(
            Instant::now() < deadline,
            "never disconnected after {sent} bytes"
        );
        if deaf.send_raw(&burst).is_err() {
            break;
        }
        sent += burst.len();
        if sent.is_multiple_of(burst.len() * 20) {
            good.is_served();
        }
    }
    let deadline = Instant::now() + WAIT;
    while slow.load(Ordering::Relaxed) == 0 {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(10));
    }
    good.is_served();
    let peak = t
        .gateway()
        .stats()
        .outbound_bytes_peak
        .load(Ordering::Relaxed);
    assert!(
        peak <= 64 * 1024 + 256,
        "the outbound buffer stayed bounded: {peak}"
    );
}

fn raise_fd_limit(want: u64) {
    // SAFETY: getrlimit/setrlimit read and write one plain struct we own.
    unsafe {
        let mut l = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut l) == 0 && l.rlim_cur < want {
            l.rlim_cur = want.min(l.rlim_max);
            libc::setrlimit(libc::RLIMIT_NOFILE, &l);
        }
    }
}
