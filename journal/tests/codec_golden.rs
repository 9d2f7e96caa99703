//! The payload codec: golden bytes pin the on-disk layout of every command tag (a failing test
//! here means journals already written would no longer decode: add a new tag instead, ADR-005);
//! round trips over random commands; corrupt payloads are errors, never panics.

mod streams;

use kuku_engine::fees::TaxRates;
use kuku_engine::hash::stable_hash;
use kuku_engine::testkit::cmd;
use kuku_engine::*;
use kuku_journal::codec::{
    self, CodecError, PLACE_ORDER_ENCODED_BYTES, decode_command, decode_snapshot, encode_command,
    encode_command_to_vec, encode_snapshot, encoded_len,
};
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;

/// Parses hex with spaces between fields for readability.
fn hex(s: &str) -> Vec<u8> {
    let digits: Vec<u8> = s.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    assert!(digits.len().is_multiple_of(2), "odd hex length");
    digits
        .chunks(2)
        .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).unwrap(), 16).unwrap())
        .collect()
}

fn golden(command: Command, expected_hex: &str) {
    let expected = hex(expected_hex);
    let encoded = encode_command_to_vec(&command);
    assert_eq!(
        encoded, expected,
        "layout of {command:?} changed:\n got      {encoded:02x?}\n expected {expected:02x?}"
    );
    assert_eq!(encoded_len(&command), expected.len());
    assert_eq!(decode_command(&expected).unwrap(), command);
}

#[test]
fn golden_place_order() {
    // tag 14 | account 7 | client_order_id 42 | symbol 1 | sell | limit | day | price 71,000 | qty 10
    golden(
        cmd::limit(AccountId(7), 42, 1, Side::Sell, 71_000, 10),
        "0e 07000000 2a00000000000000 01000000 01 00 00 5815010000000000 0a00000000000000",
    );
    assert_eq!(PLACE_ORDER_ENCODED_BYTES, 36);
    // buy | market | ioc, price recorded as 0
    golden(
        cmd::market(AccountId(0x0102_0304), u64::MAX, 2, Side::Buy, 3),
        "0e 04030201 ffffffffffffffff 02000000 00 01 01 0000000000000000 0300000000000000",
    );
    // FOK with a negative price (invalid, but journaled as submitted)
    golden(
        cmd::order(
            AccountId(1),
            1,
            1,
            Side::Buy,
            OrderType::Limit,
            TimeInForce::Fok,
            -1,
            1,
        ),
        "0e 01000000 0100000000000000 01000000 00 00 02 ffffffffffffffff 0100000000000000",
    );
}

#[test]
fn golden_cancel_modify_quote() {
    golden(
        cmd::cancel(AccountId(3), 0x10, 0x0a0b),
        "0f 03000000 1000000000000000 0b0a000000000000",
    );
    golden(
        Command::CancelAll {
            account: AccountId(3),
            request_id: ClientOrderId(5),
            symbol: None,
        },
        "10 03000000 0500000000000000 00",
    );
    golden(
        Command::CancelAll {
            account: AccountId(3),
            request_id: ClientOrderId(5),
            symbol: Some(SymbolId(0)),
        },
        "10 03000000 0500000000000000 01 00000000",
    );
    golden(
        cmd::modify(AccountId(2), 9, 77, 15, 70_900),
        "11 02000000 0900000000000000 4d00000000000000 0f00000000000000 f414010000000000",
    );
    golden(
        cmd::quote(1, 70_900, 100, 71_100, 0),
        "12 01000000 f414010000000000 6400000000000000 bc15010000000000 0000000000000000",
    );
}

#[test]
fn golden_reference_and_day_cycle() {
    golden(
        Command::RegisterSymbol(RegisterSymbol {
            code: SymbolCode::new("005930").unwrap(),
            name: SymbolName::new("Samsung").unwrap(),
            market: Market::Kospi,
            tick_rule: TickRule::Krx,
            base_price: Price(71_000),
            banded: true,
            lot_size: Qty(1),
        }),
        // code "005930" | name "Samsung" | KOSPI | KRX ticks | base 71,000 | banded | lot 1
        "01 06 303035393330 07 53616d73756e67 00 00 5815010000000000 01 0100000000000000",
    );
    golden(
        Command::RegisterSymbol(RegisterSymbol {
            code: SymbolCode::new("T1").unwrap(),
            name: SymbolName::new("").unwrap(),
            market: Market::Other,
            tick_rule: TickRule::Fixed(5),
            base_price: Price(100),
            banded: false,
            lot_size: Qty(10),
        }),
        "01 02 5431 00 02 01 0500000000000000 6400000000000000 00 0a00000000000000",
    );
    golden(
        Command::SetFeeSchedule(FeeSchedule {
            commission_ppm: 150,
            kospi: TaxRates {
                securities_transaction_ppm: 500,
                rural_special_ppm: 1_500,
            },
            kosdaq: TaxRates {
                securities_transaction_ppm: 2_000,
                rural_special_ppm: 0,
            },
            other: TaxRates::default(),
        }),
        "02 9600000000000000 f401000000000000 dc05000000000000 d007000000000000 0000000000000000 0000000000000000 0000000000000000",
    );
    golden(
        Command::StartOfDay {
            trading_day: 20_260_105,
            base_prices: vec![(SymbolId(1), Price(70_000)), (SymbolId(2), Price(2_000))],
        },
        // 20,260,105 = 0x0135_2509
        "03 09253501 02000000 01000000 7011010000000000 02000000 d007000000000000",
    );
    golden(
        Command::SetMarketPhase {
            phase: MarketPhase::Continuous,
        },
        "04 02",
    );
    golden(
        Command::EndOfDay {
            trading_day: 20_260_105,
        },
        "05 09253501",
    );
    golden(Command::TakeSnapshot, "13");
    golden(
        Command::SetQuoteStatus {
            symbol: SymbolId(0x0102_0304),
            status: QuoteStatus::Stale,
        },
        "15 04030201 01",
    );
    golden(
        Command::SetQuoteStatus {
            symbol: SymbolId(1),
            status: QuoteStatus::Fresh,
        },
        "15 01000000 00",
    );
    golden(
        Command::BeginEpoch {
            epoch: 0x0102_0304_0506_0708,
        },
        "1e 0807060504030201",
    );
}

#[test]
fn golden_money_commands() {
    golden(cmd::open_account("kim"), "06 03 6b696d");
    golden(
        cmd::deposit(AccountId(1), 1_000_000, "tx-1"),
        "07 01000000 40420f0000000000 04 74782d31",
    );
    golden(
        cmd::withdraw(AccountId(1), 5, "w"),
        "08 01000000 0500000000000000 01 77",
    );
    golden(
        Command::Adjust {
            account: AccountId(4),
            asset: Asset::Shares(SymbolId(2)),
            amount: Amount(-3),
            external_ref: ExternalRef::new("fix").unwrap(),
            cost_price: kuku_engine::Price(0),
        },
        "09 04000000 01 02000000 fdffffffffffffff 03 666978",
    );
    golden(
        Command::Adjust {
            account: AccountId(4),
            asset: Asset::Krw,
            amount: Amount(1),
            external_ref: ExternalRef::new("").unwrap(),
            cost_price: kuku_engine::Price(0),
        },
        "09 04000000 00 0100000000000000 00",
    );
    // A transfer in at a cost: tag 20, the fields of tag 9, then the cost price 50,000.
    golden(
        Command::Adjust {
            account: AccountId(4),
            asset: Asset::Shares(SymbolId(2)),
            amount: Amount(10),
            external_ref: ExternalRef::new("in").unwrap(),
            cost_price: kuku_engine::Price(50_000),
        },
        "14 04000000 01 02000000 0a00000000000000 02 696e 50c3000000000000",
    );
    golden(
        Command::ConfirmTransaction { tx: TxId(1) },
        "0a 0100000000000000",
    );
    golden(
        Command::FailTransaction { tx: TxId(2) },
        "0b 0200000000000000",
    );
    golden(
        Command::ReverseTransaction { tx: TxId(3) },
        "0c 0300000000000000",
    );
    golden(
        Command::ExpireStaleExternal { cutoff_ts: 256 },
        "0d 0001000000000000",
    );
}

#[test]
fn corrupt_payloads_are_errors() {
    assert!(matches!(
        decode_command(&[]),
        Err(CodecError::Truncated { field: "tag", .. })
    ));
    assert_eq!(decode_command(&[0]), Err(CodecError::UnknownTag { tag: 0 }));
    assert_eq!(
        decode_command(&[200]),
        Err(CodecError::UnknownTag { tag: 200 })
    );
    let mut order = encode_command_to_vec(&cmd::limit(AccountId(1), 1, 1, Side::Buy, 1, 1));
    order[17] = 2; // side
    assert!(matches!(
        decode_command(&order),
        Err(CodecError::InvalidValue {
            field: "side",
            offset: 17,
            value: 2
        })
    ));
    // A cost price of 0 under tag 20 would be a second encoding of a tag-9 adjustment.
    assert!(matches!(
        decode_command(&hex("14 04000000 00 0100000000000000 00 0000000000000000")),
        Err(CodecError::InvalidValue {
            field: "cost_price",
            offset: 15,
            value: 0
        })
    ));
    // A quote status other than 0 (fresh) or 1 (stale).
    assert!(matches!(
        decode_command(&hex("15 01000000 02")),
        Err(CodecError::InvalidValue {
            field: "status",
            offset: 5,
            value: 2
        })
    ));
    let mut trailing = encode_command_to_vec(&Command::TakeSnapshot);
    trailing.push(0);
    assert_eq!(
        decode_command(&trailing),
        Err(CodecError::TrailingBytes { len: 2, extra: 1 })
    );
    // A StartOfDay claiming four billion entries fails before allocating them.
    assert!(matches!(
        decode_command(&hex("03 01000000 ffffffff")),
        Err(CodecError::Truncated {
            field: "base prices",
            ..
        })
    ));
    // A code longer than 12 bytes, and one that is not UTF-8.
    assert!(matches!(
        decode_command(&hex("01 0d 30303030303030303030303030")),
        Err(CodecError::InvalidString { field: "code", .. })
    ));
    assert!(matches!(
        decode_command(&hex("06 02 ff fe")),
        Err(CodecError::InvalidString {
            field: "owner",
            reason: "not UTF-8",
            ..
        })
    ));
    let mut buf = [0u8; 8];
    assert_eq!(
        encode_command(&cmd::cancel(AccountId(1), 1, 1), &mut buf),
        Err(CodecError::BufferTooSmall {
            needed: 21,
            available: 8
        })
    );
}

/// Any command, including values no valid flow produces (extremes, empty strings).
fn any_command() -> impl Strategy<Value = Command> {
    let s32 = "[a-z0-9]{0,32}".prop_map(|s| ExternalRef::new(&s).unwrap());
    let extreme = prop_oneof![Just(i64::MIN), Just(i64::MAX), Just(0i64), any::<i64>()];
    prop_oneof![
        streams::command(),
        (
            any::<u32>(),
            any::<u64>(),
            any::<u32>(),
            extreme.clone(),
            extreme.clone()
        )
            .prop_map(|(a, c, s, p, q)| cmd::order(
                AccountId(a),
                c,
                s,
                Side::Sell,
                OrderType::Market,
                TimeInForce::Fok,
                p,
                q
            )),
        (
            "[0-9A-Z]{0,12}",
            "\\PC{0,12}",
            any::<bool>(),
            extreme.clone(),
            extreme.clone(),
            prop::option::of(any::<i64>())
        )
            .prop_map(
                |(code, name, banded, base, lot, fixed)| Command::RegisterSymbol(RegisterSymbol {
                    code: SymbolCode::new(&code).unwrap(),
                    name: SymbolName::new(&name).unwrap(),
                    market: if banded {
                        Market::Kosdaq
                    } else {
                        Market::Other
                    },
                    tick_rule: fixed.map_or(TickRule::Krx, TickRule::Fixed),
                    base_price: Price(base),
                    banded,
                    lot_size: Qty(lot),
                })
            ),
        (
            any::<u32>(),
            prop::collection::vec((any::<u32>(), extreme.clone()), 0..40)
        )
            .prop_map(|(day, prices)| Command::StartOfDay {
                trading_day: day,
                base_prices: prices
                    .into_iter()
                    .map(|(s, p)| (SymbolId(s), Price(p)))
                    .collect(),
            }),
        (
            any::<u32>(),
            extreme.clone(),
            s32.clone(),
            any::<Option<u32>>(),
            extreme
        )
            .prop_map(|(a, amount, r, s, cost)| {
                Command::Adjust {
                    account: AccountId(a),
                    asset: s.map_or(Asset::Krw, |s| Asset::Shares(SymbolId(s))),
                    amount: Amount(amount),
                    external_ref: r,
                    cost_price: Price(cost),
                }
            }),
        s32.prop_map(|owner| Command::OpenAccount { owner }),
        any::<u64>().prop_map(|cutoff_ts| Command::ExpireStaleExternal { cutoff_ts }),
        Just(Command::TakeSnapshot),
        (any::<u32>(), any::<bool>()).prop_map(|(s, stale)| Command::SetQuoteStatus {
            symbol: SymbolId(s),
            status: if stale {
                QuoteStatus::Stale
            } else {
                QuoteStatus::Fresh
            },
        }),
        any::<u64>().prop_map(|epoch| Command::BeginEpoch { epoch }),
        Just(Command::SetMarketPhase {
            phase: MarketPhase::AfterHours
        }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 512,
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(
            "tests/proptest-regressions/codec_golden.txt",
        ))),
        ..ProptestConfig::default()
    })]

    #[test]
    fn every_command_round_trips(command in any_command()) {
        let bytes = encode_command_to_vec(&command);
        prop_assert_eq!(bytes.len(), encoded_len(&command));
        prop_assert_eq!(decode_command(&bytes).unwrap(), command);
        // Every strict prefix is an error, never a panic or a different command.
        for cut in 0..bytes.len() {
            prop_assert!(decode_command(&bytes[..cut]).is_err());
        }
    }

    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..80)) {
        if let Ok(command) = decode_command(&bytes) {
            // Whatever decodes re-encodes to the same bytes: the format has one spelling.
            prop_assert_eq!(encode_command_to_vec(&command), bytes);
        }
    }

    #[test]
    fn flipped_bits_never_panic(command in any_command(), bit in any::<prop::sample::Index>()) {
        let mut bytes = encode_command_to_vec(&command);
        let bit = bit.index(bytes.len() * 8);
        bytes[bit / 8] ^= 1 << (bit % 8);
        if let Ok(decoded) = decode_command(&bytes) {
            prop_assert_eq!(encode_command_to_vec(&decoded), bytes);
        }
    }
}

#[test]
fn snapshot_payload_round_trips_and_rejects_damage() {
    let envelopes = streams::envelopes(
        streams::setup()
            .into_iter()
            .chain(streams::deterministic_commands(400)),
        1,
    );
    let mut engine = Engine::new(streams::config());
    for e in &envelopes {
        engine.apply(e, &mut NullSink);
    }
    let snapshot = engine.snapshot();
    let payload = encode_snapshot(&snapshot).unwrap();
    assert_eq!(payload[0], codec::SNAPSHOT_CODEC_VERSION);
    // The payload is canonical: what decodes re-encodes to the same bytes and hashes the same.
    // (Not `==` on the structs: `Account` carries slab links that snapshots leave out.)
    let decoded = decode_snapshot(&payload).unwrap();
    assert_eq!(stable_hash(&decoded), stable_hash(&snapshot));
    assert_eq!(encode_snapshot(&decoded).unwrap(), payload);
    assert_eq!(
        stable_hash(&Engine::from_snapshot(&decoded).unwrap().snapshot()),
        engine.state_hash()
    );

    let mut wrong_version = payload.clone();
    wrong_version[0] = 9;
    assert_eq!(
        decode_snapshot(&wrong_version),
        Err(CodecError::SnapshotVersion { version: 9 })
    );
    let mut trailing = payload.clone();
    trailing.push(0);
    assert!(matches!(
        decode_snapshot(&trailing),
        Err(CodecError::TrailingBytes { extra: 1, .. })
    ));
    assert!(decode_snapshot(&[]).is_err());
    for cut in (0..payload.len()).step_by(payload.len() / 97 + 1) {
        assert!(
            decode_snapshot(&payload[..cut]).is_err(),
            "prefix of {cut} bytes"
        );
    }
    // Bit flips anywhere: an error or some snapshot, never a panic (the file CRC and the state
    // hash catch what decodes).
    for bit in (0..payload.len() * 8).step_by(61) {
        let mut damaged = payload.clone();
        damaged[bit / 8] ^= 1 << (bit % 8);
        let _ = decode_snapshot(&damaged);
    }
}
