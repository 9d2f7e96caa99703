//! The codec: every message round-trips through its frame (property tests over every
//! field's domain), decoding is total and canonical on arbitrary bytes, split frames
//! reassemble, and docs/protocol.md carries exactly the layouts, codes and hex examples the
//! code defines (server/tests/conformance.rs checks the same document against a live node).

use kuku_engine::{
    AccountId, Amount, ClientOrderId, InlineStr, Market, MarketPhase, OrderId, OrderType, Price,
    Qty, RejectReason, Side, TimeInForce, TradeId, TxId, TxStatus, TxType,
};
use kuku_gateway::protocol::*;
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;

fn code() -> impl Strategy<Value = Code> {
    "[0-9A-Z]{1,6}".prop_map(|s| Code::new(&s).expect("valid"))
}

fn opt_code() -> impl Strategy<Value = Option<Code>> {
    proptest::option::of(code())
}

fn text<const N: usize>() -> impl Strategy<Value = InlineStr<N>> {
    proptest::string::string_regex(&format!("[a-z0-9 가-힣-]{{0,{}}}", N / 3))
        .expect("regex")
        .prop_filter_map("fits", |s| InlineStr::new(&s))
}

fn side() -> impl Strategy<Value = Side> {
    prop_oneof![Just(Side::Buy), Just(Side::Sell)]
}

fn tx_status() -> impl Strategy<Value = TxStatus> {
    prop_oneof![
        Just(TxStatus::Pending),
        Just(TxStatus::Posted),
        Just(TxStatus::Failed),
        Just(TxStatus::Unknown),
        Just(TxStatus::Reversed)
    ]
}

/// A sample of every message type, with arbitrary field values.
fn message() -> impl Strategy<Value = Message> {
    let order_type = prop_oneof![Just(OrderType::Limit), Just(OrderType::Market)];
    let tif = prop_oneof![
        Just(TimeInForce::Day),
        Just(TimeInForce::Ioc),
        Just(TimeInForce::Fok)
    ];
    let ids = (any::<u64>(), any::<u64>(), any::<i64>(), any::<i64>());
    prop_oneof![
        (any::<u32>(), any::<u8>(), any::<u64>(), any::<[u8; 32]>()).prop_map(|(a, f, s, t)| {
            Message::from(Login {
                version: (a % 4) as u16,
                account: AccountId(a),
                flags: f,
                last_seen_acct_seq: s,
                token: t,
            })
        }),
        (ids, code(), side(), order_type.clone(), tif.clone()).prop_map(
            |((k, _, p, q), symbol, side, order_type, tif)| {
                NewOrder {
                    client_order_id: ClientOrderId(k),
                    symbol,
                    side,
                    order_type,
                    tif,
                    price: Price(p),
                    qty: Qty(q),
                }
                .into()
            }
        ),
        (ids, opt_code(), side(), order_type, tif, any::<bool>()).prop_map(
            |((s, o, p, q), symbol, side, order_type, tif, resent)| {
                OrderAccepted {
                    acct_seq: s,
                    order_id: OrderId(o),
                    client_order_id: ClientOrderId(o ^ s),
                    symbol,
                    side,
                    order_type,
                    tif,
                    resent,
                    price: Price(p),
                    qty: Qty(q),
                }
                .into()
            }
        ),
        (ids, opt_code(), side(), any::<bool>(), any::<u64>()).prop_map(
            |((s, o, p, q), symbol, side, maker, ts)| {
                Execution {
                    acct_seq: s,
                    order_id: OrderId(o),
                    client_order_id: ClientOrderId(s),
                    trade_id: TradeId(o.wrapping_add(1)),
                    symbol,
                    side,
                    liquidity: if maker {
                        Liquidity::Maker
                    } else {
                        Liquidity::Taker
                    },
                    price: Price(p),
                    qty: Qty(q),
                    leaves: Qty(q / 2),
                    commission: Amount(p / 3),
                    tax: Amount(q / 5),
                    ts_ns: ts,
                }
                .into()
            }
        ),
        (ids, opt_code(), 1u8..=8).prop_map(|((s, o, _, q), symbol, cause)| {
            let mut m = Cancelled {
                acct_seq: s,
                order_id: OrderId(o),
                client_order_id: ClientOrderId(1),
                request_id: ClientOrderId(2),
                symbol,
                reason: CancelCause::Expired,
                qty_cancelled: Qty(q),
            };
            let mut f = Message::from(m).to_frame();
            f[3 + 32 + 6] = cause;
            if let Ok(Message::Cancelled(c)) = Message::decode(f[2], &f[3..]) {
                m = c;
            }
            m.into()
        }),
        (
            ids,
            tx_status(),
            proptest::option::of(tx_status()),
            text::<32>(),
            opt_code()
        )
            .prop_map(|((s, t, a, _), to, from, external_ref, asset)| {
                TransactionUpdate {
                    acct_seq: s,
                    tx_id: TxId(t),
                    tx_type: TxType::Withdrawal,
                    from,
                    to,
                    resent: false,
                    asset,
                    amount: Amount(a),
                    external_ref,
                    linked_tx_id: TxId(0),
                }
                .into()
            }),
        (
            any::<u64>(),
            code(),
            text::<48>(),
            any::<i64>(),
            any::<bool>(),
            any::<i64>()
        )
            .prop_map(|(r, code, name, tick, banded, p)| {
                RegisterSymbol {
                    request_id: r,
                    code,
                    name,
                    market: Market::Kosdaq,
                    tick_rule: WireTickRule {
                        kind: if tick % 2 == 0 {
                            TickKind::Krx
                        } else {
                            TickKind::Fixed
                        },
                        tick: tick / 3,
                    },
                    base_price: Price(p),
                    banded,
                    lot_size: Qty(1),
                }
                .into()
            }),
        (any::<u64>(), any::<u16>(), any::<u32>()).prop_map(|(r, c, n)| {
            QueryDone {
                request_id: r,
                code: c,
                count: n,
            }
            .into()
        }),
        (
            any::<u64>(),
            any::<u16>(),
            any::<u8>(),
            proptest::option::of(tx_status())
        )
            .prop_map(|(r, c, t, st)| {
                AdminResult {
                    request_id: r,
                    code: c,
                    request_type: t,
                    resent: c % 2 == 0,
                    account: AccountId(c as u32),
                    tx_id: TxId(r),
                    tx_status: st,
                    symbol_id: 3,
                }
                .into()
            }),
        Just(Message::from(Heartbeat {})),
        any::<u16>().prop_map(|code| Logout { code }.into()),
        (any::<u16>(), any::<u64>()).prop_map(|(code, replay_from_seq)| {
            LoginDiverged {
                code,
                replay_from_seq,
            }
            .into()
        }),
        version_2_message(),
    ]
}

/// The messages protocol version 2 added or changed.
fn version_2_message() -> impl Strategy<Value = Message> {
    let ids = (any::<u64>(), any::<u64>(), any::<i64>(), any::<i64>());
    let state = prop_oneof![
        Just(WireOrderState::New),
        Just(WireOrderState::PartiallyFilled),
        Just(WireOrderState::Filled),
        Just(WireOrderState::Cancelled),
        Just(WireOrderState::Expired)
    ];
    let phase = prop_oneof![
        Just(MarketPhase::Closed),
        Just(MarketPhase::PreOpen),
        Just(MarketPhase::Continuous),
        Just(MarketPhase::ClosingCall),
        Just(MarketPhase::AfterHours)
    ];
    prop_oneof![
        (ids, opt_code(), side(), state).prop_map(|((r, o, p, q), symbol, side, state)| {
            OrderReport {
                request_id: r,
                order_id: OrderId(o),
                client_order_id: ClientOrderId(r ^ o),
                symbol,
                side,
                order_type: OrderType::Limit,
                tif: TimeInForce::Ioc,
                state,
                price: Price(p),
                qty: Qty(q),
                leaves: Qty(q / 3),
                filled: Qty(q / 5),
                cancelled: Qty(q / 7),
            }
            .into()
        }),
        (any::<u64>(), opt_code())
            .prop_map(|(request_id, symbol)| { ReferenceQuery { request_id, symbol }.into() }),
        (ids, any::<u32>(), phase).prop_map(|((r, _, p, q), day, phase)| {
            MarketReport {
                request_id: r,
                trading_day: day,
                phase,
                commission_ppm: p,
                kospi_securities_transaction_ppm: q,
                kospi_rural_special_ppm: p / 2,
                kosdaq_securities_transaction_ppm: q / 2,
                kosdaq_rural_special_ppm: p / 3,
                other_securities_transaction_ppm: q / 3,
                other_rural_special_ppm: -p,
            }
            .into()
        }),
        (ids, opt_code(), text::<48>(), any::<bool>(), any::<u32>()).prop_map(
            |((r, _, p, q), code, name, banded, id)| {
                SymbolReport {
                    request_id: r,
                    symbol_id: id,
                    code,
                    name,
                    market: Market::Other,
                    tick_rule: WireTickRule {
                        kind: if banded {
                            TickKind::Krx
                        } else {
                            TickKind::Fixed
                        },
                        tick: q,
                    },
                    base_price: Price(p),
                    banded,
                    lower_limit: Price(p / 2),
                    upper_limit: Price(q / 2),
                    lot_size: Qty(1),
                    last_price: Price(q),
                }
                .into()
            }
        ),
        (ids, code(), text::<32>()).prop_map(|((r, a, p, q), symbol, external_ref)| {
            TransferIn {
                request_id: r,
                account: AccountId(a as u32),
                symbol,
                qty: Qty(q),
                price: Price(p),
                external_ref,
            }
            .into()
        }),
        (ids, code(), text::<32>()).prop_map(|((r, a, _, q), symbol, external_ref)| {
            TransferOut {
                request_id: r,
                account: AccountId(a as u32),
                symbol,
                qty: Qty(q),
                external_ref,
            }
            .into()
        }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 512,
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(
            "tests/proptest-regressions/codec.txt",
        ))),
        ..ProptestConfig::default()
    })]

    #[test]
    fn every_message_round_trips_through_its_frame(m in message()) {
        let frame = m.to_frame();
        prop_assert_eq!(frame.len(), m.frame_len());
        let (back, used) = split_frame(&frame, u16::MAX as usize).unwrap().unwrap();
        prop_assert_eq!(used, frame.len());
        prop_assert_eq!(back, m);
    }

    #[test]
    fn a_stream_split_anywhere_reassembles(ms in proptest::collection::vec(message(), 1..8), cut in any::<prop::sample::Index>()) {
        let mut stream = Vec::new();
        for m in &ms {
            m.encode(&mut stream);
        }
        let cut = cut.index(stream.len());
        // Feed in two pieces as a socket might deliver them.
        let (mut buf, mut out) = (stream[..cut].to_vec(), Vec::new());
        for piece in [&[][..], &stream[cut..]] {
            buf.extend_from_slice(piece);
            while let Some((m, used)) = split_frame(&buf, u16::MAX as usize).unwrap() {
                out.push(m);
                buf.drain(..used);
            }
        }
        prop_assert_eq!(out, ms);
    }

    #[test]
    fn decoding_arbitrary_bytes_is_total_and_canonical(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        let (messages, _) = decode_all(&bytes, u16::MAX as usize);
        // Whatever decoded re-encodes to exactly the bytes it came from.
        let mut again = Vec::new();
        for m in &messages {
            m.encode(&mut again);
        }
        prop_assert_eq!(&bytes[..again.len()], &again[..]);
    }

    #[test]
    fn any_body_of_the_right_length_decodes_or_fails_cleanly(ty in any::<u8>(), body in proptest::collection::vec(any::<u8>(), 0..120)) {
        if let Some(len) = body_len(ty) {
            let mut body = body;
            body.resize(len, 0);
            if let Ok(m) = Message::decode(ty, &body) {
                prop_assert_eq!(&m.to_frame()[3..], &body[..]);
            }
        } else {
            prop_assert!(Message::decode(ty, &body).is_err());
        }
    }
}

#[test]
fn golden_bytes_pin_the_login_and_new_order_layouts() {
    let login = Message::from(Login {
        version: 2,
        account: AccountId(1),
        flags: FLAG_CANCEL_ON_DISCONNECT,
        last_seen_acct_seq: 5,
        token: [0xab; 32],
    });
    let mut expected = vec![
        0x30, 0x00, 0x01, 0x02, 0x00, 0x01, 0, 0, 0, 0x01, 5, 0, 0, 0, 0, 0, 0, 0,
    ];
    expected.extend_from_slice(&[0xab; 32]);
    assert_eq!(login.to_frame(), expected);

    let order = Message::from(NewOrder {
        client_order_id: ClientOrderId(7),
        symbol: Code::new("005930").unwrap(),
        side: Side::Buy,
        order_type: OrderType::Limit,
        tif: TimeInForce::Day,
        price: Price(71_000),
        qty: Qty(10),
    });
    let expected: Vec<u8> = [
        &[0x22, 0x00, 0x10][..],
        &7u64.to_le_bytes(),
        b"005930",
        &[1, 1, 1],
        &71_000i64.to_le_bytes(),
        &10i64.to_le_bytes(),
    ]
    .concat();
    assert_eq!(order.to_frame(), expected);
}

#[test]
fn frames_are_refused_as_soon_as_the_header_shows_them_bad() {
    let max = CLIENT_FRAME_LEN_MAX;
    assert_eq!(split_frame(&[0xff], max), Ok(None));
    assert!(matches!(
        split_frame(&[0xff, 0xff], max),
        Err(FrameError::TooLarge { .. })
    ));
    assert_eq!(split_frame(&[0, 0], max), Err(FrameError::Empty));
    assert!(matches!(
        split_frame(&[1, 0, 0xee], max),
        Err(FrameError::Decode(DecodeError::UnknownType(0xee)))
    ));
    // A Heartbeat claiming 4 body bytes, before they arrive.
    assert!(matches!(
        split_frame(&[5, 0, Heartbeat::TYPE], max),
        Err(FrameError::Decode(DecodeError::BadLength { .. }))
    ));
}

#[test]
fn protocol_md_hex_examples_are_what_the_codec_encodes() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/protocol.md");
    let doc = std::fs::read_to_string(path)
        .expect("docs/protocol.md exists")
        .replace("\r\n", "\n");
    let dumps = doc::parse_hex_dumps(&doc);
    let examples = doc::examples();
    assert_eq!(
        dumps.len(),
        examples.len(),
        "the document's hex examples are not the generated ones (regenerate them with \
         `cargo run -p kuku-gateway --example protocol_tables`)"
    );
    for ((title, bytes), (want_title, message)) in dumps.iter().zip(&examples) {
        assert_eq!(title, want_title);
        assert_eq!(bytes, &message.to_frame(), "{title}");
        let (decoded, used) = split_frame(bytes, u16::MAX as usize)
            .expect("a valid frame")
            .expect("whole");
        assert_eq!((decoded, used), (*message, bytes.len()), "{title}");
        // The document's own tables read it too.
        let layouts = doc::parse_layouts(&doc);
        let (m, _) = doc::decode_by_doc(&layouts, bytes).expect("the tables describe it");
        assert_eq!(m.name, message.name());
    }
}

#[test]
fn tick_rules_decode_any_tick_and_reject_only_unknown_kinds() {
    let register = |kind: u8, tick: i64| {
        let m = Message::from(RegisterSymbol {
            request_id: 1,
            code: Code::new("NEW1").unwrap(),
            name: InlineStr::new("new").unwrap(),
            market: Market::Kospi,
            tick_rule: WireTickRule {
                kind: TickKind::Krx,
                tick: 0,
            },
            base_price: Price(1_000),
            banded: true,
            lot_size: Qty(1),
        });
        let mut frame = m.to_frame();
        // tick_rule at offset 66: kind u8, tick i64.
        frame[66] = kind;
        frame[67..75].copy_from_slice(&tick.to_le_bytes());
        split_frame(&frame, u16::MAX as usize).map(|r| r.map(|(m, _)| m))
    };
    for (kind, tick) in [(1u8, 5i64), (2, 0), (2, -3), (2, i64::MAX)] {
        match register(kind, tick) {
            Ok(Some(Message::RegisterSymbol(r))) => assert_eq!(r.tick_rule.tick, tick),
            other => panic!("{kind} {tick}: {other:?}"),
        }
    }
    for kind in [0u8, 3, 255] {
        assert!(
            matches!(
                register(kind, 0),
                Err(FrameError::Decode(DecodeError::InvalidField {
                    field: "tick_rule",
                    ..
                }))
            ),
            "kind {kind}"
        );
    }
}

#[test]
fn protocol_md_lists_every_layout_and_code() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/protocol.md");
    let doc = std::fs::read_to_string(path).expect("docs/protocol.md exists");
    let doc = doc.replace("\r\n", "\n");
    for table in layout_markdown().split("### ").skip(1) {
        let table = format!("### {table}");
        assert!(
            doc.contains(table.trim_end()),
            "docs/protocol.md is out of date (regenerate the layouts with \
             `cargo run -p kuku-gateway --example protocol_tables`):\n{table}"
        );
    }
    for r in RejectReason::ALL {
        assert!(
            doc.contains(&format!("| {} | `{:?}` |", r.code(), r)),
            "missing reject {r:?}"
        );
    }
    for g in GatewayCode::ALL {
        assert!(
            doc.contains(&format!("| {} | `{:?}` |", g.code(), g)),
            "missing {g:?}"
        );
    }
    for p in ProtocolCode::ALL {
        assert!(
            doc.contains(&format!("| {} | `{:?}` |", p.code(), p)),
            "missing {p:?}"
        );
    }
}
