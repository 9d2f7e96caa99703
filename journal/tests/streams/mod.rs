//! Command streams for the engine-level journal tests: a market setup, a proptest strategy of
//! random commands (valid and invalid, after engine/tests/ledger_properties.rs), envelopes with
//! dense seqs, an uninterrupted reference run, and writing a stream through the real journal.
#![allow(dead_code)]

use std::path::Path;

use kuku_engine::testkit::cmd;
use kuku_engine::*;
use kuku_journal::{
    Durability, Journal, JournalConfig, append_command, journal_meta, write_config,
    write_snapshot_at,
};
use proptest::prelude::*;

pub const SYMBOLS: [(&str, Market, i64); 2] = [
    ("005930", Market::Kospi, 71_000),
    ("247540", Market::Kosdaq, 1_990),
];

pub fn config() -> EngineConfig {
    EngineConfig::small()
}

pub fn ts_of(seq: u64) -> u64 {
    1_000_000_000 + seq * 1_000_000
}

/// Fee schedule, two symbols, a trading day in the continuous phase, three funded accounts
/// holding shares of both symbols.
pub fn setup() -> Vec<Command> {
    let mut v = vec![Command::SetFeeSchedule(FeeSchedule::KRX_2026)];
    for (code, market, base) in SYMBOLS {
        v.push(cmd::register_krx(code, code, market, base));
    }
    v.push(Command::StartOfDay {
        trading_day: 1,
        base_prices: vec![],
    });
    v.push(Command::SetMarketPhase {
        phase: MarketPhase::Continuous,
    });
    for (i, owner) in ["a", "b", "c"].into_iter().enumerate() {
        let account = AccountId(i as u32 + 1);
        v.push(cmd::open_account(owner));
        v.push(cmd::deposit(account, 500_000_000, &format!("seed-{owner}")));
        for s in 1..=2 {
            v.push(Command::Adjust {
                account,
                asset: Asset::Shares(SymbolId(s)),
                amount: Amount(2_000),
                external_ref: ExternalRef::new(&format!("shares-{owner}-{s}")).unwrap(),
                cost_price: kuku_engine::Price(0),
            });
        }
    }
    v
}

fn price(symbol: u32, step: i64) -> i64 {
    if symbol == 1 {
        71_000 + step * 100
    } else {
        1_990 + step
    }
}

fn side() -> impl Strategy<Value = Side> {
    prop_oneof![Just(Side::Buy), Just(Side::Sell)]
}

/// One random command; about one in ten is invalid (unknown account or symbol, bad ids).
pub fn command() -> impl Strategy<Value = Command> {
    let account = prop_oneof![10 => 1u32..=3, 1 => Just(9u32)];
    let symbol = prop_oneof![10 => 1u32..=2, 1 => Just(7u32)];
    let eref = (0u32..40).prop_map(|r| ExternalRef::new(&format!("ref{r}")).unwrap());
    let order = (
        account.clone(),
        1u64..400,
        symbol.clone(),
        side(),
        0u8..8,
        -8i64..=8,
        1i64..=300,
    )
        .prop_map(|(a, coid, s, side, kind, step, qty)| {
            let (ty, tif) = match kind {
                0 => (OrderType::Market, TimeInForce::Ioc),
                1 => (OrderType::Limit, TimeInForce::Ioc),
                2 => (OrderType::Limit, TimeInForce::Fok),
                _ => (OrderType::Limit, TimeInForce::Day),
            };
            cmd::order(AccountId(a), coid, s, side, ty, tif, price(s, step), qty)
        });
    let cancel = (account.clone(), 1u64..400, 1u64..80)
        .prop_map(|(a, r, id)| cmd::cancel(AccountId(a), r, id));
    let cancel_all =
        (account.clone(), 1u64..400, prop::option::of(0u32..=2)).prop_map(|(a, r, s)| {
            Command::CancelAll {
                account: AccountId(a),
                request_id: ClientOrderId(r),
                symbol: s.map(SymbolId),
            }
        });
    let modify = (account.clone(), 1u64..400, 1u64..80, 1i64..=300, -8i64..=8)
        .prop_map(|(a, r, id, q, step)| cmd::modify(AccountId(a), r, id, q, price(1, step)));
    let money = (account.clone(), 0u8..3, 1i64..20_000_000, eref.clone()).prop_map(
        |(a, kind, amount, r)| match kind {
            0 => cmd::deposit(AccountId(a), amount, r.as_str()),
            1 => cmd::withdraw(AccountId(a), amount, r.as_str()),
            _ => Command::Adjust {
                account: AccountId(a),
                asset: Asset::Krw,
                amount: Amount(amount % 1_000 - 500),
                external_ref: r,
                cost_price: kuku_engine::Price(0),
            },
        },
    );
    let tx = (0u64..60).prop_map(TxId);
    let tx_cmd = (0u8..4, tx, 0u64..2_000_000_000).prop_map(|(k, tx, cutoff)| match k {
        0 => Command::ConfirmTransaction { tx },
        1 => Command::FailTransaction { tx },
        2 => Command::ReverseTransaction { tx },
        _ => Command::ExpireStaleExternal {
            cutoff_ts: 1_000_000_000 + cutoff,
        },
    });
    let quote =
        (symbol, -6i64..=6, 1i64..3, 0i64..200, 0i64..200).prop_map(|(s, mid, half, bq, aq)| {
            cmd::quote(s, price(s, mid - half), bq, price(s, mid + half), aq)
        });
    prop_oneof![
        30 => order,
        6 => cancel,
        2 => cancel_all,
        6 => modify,
        8 => money,
        6 => tx_cmd,
        10 => quote,
        1 => Just(Command::EndOfDay { trading_day: 1 }),
        1 => Just(Command::StartOfDay { trading_day: 2, base_prices: vec![(SymbolId(1), Price(70_000))] }),
        1 => Just(Command::SetMarketPhase { phase: MarketPhase::Continuous }),
    ]
}

/// `count` commands from `command()` with proptest's deterministic runner (same on every run).
pub fn deterministic_commands(count: usize) -> Vec<Command> {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let strategy = command();
    (0..count)
        .map(|_| strategy.new_tree(&mut runner).expect("a command").current())
        .collect()
}

/// Envelopes with dense seqs from `first_seq`.
pub fn envelopes(commands: impl IntoIterator<Item = Command>, first_seq: u64) -> Vec<Envelope> {
    commands
        .into_iter()
        .enumerate()
        .map(|(i, command)| {
            let seq = first_seq + i as u64;
            Envelope {
                seq,
                ts: ts_of(seq),
                command,
            }
        })
        .collect()
}

/// An uninterrupted run: the events of every command, and the state hash after every seq in
/// `hash_at` (seq -> hash).
pub struct Reference {
    pub events: Vec<Vec<Event>>,
    pub hash_at: std::collections::BTreeMap<u64, u64>,
    pub final_hash: u64,
}

pub fn reference_run(envelopes: &[Envelope], hash_at: &[u64]) -> Reference {
    let mut engine = Engine::new(config());
    let mut reference = Reference {
        events: Vec::with_capacity(envelopes.len()),
        hash_at: Default::default(),
        final_hash: 0,
    };
    for envelope in envelopes {
        let mut events = Vec::new();
        engine.apply(envelope, &mut events);
        reference.events.push(events);
        if hash_at.contains(&envelope.seq) {
            reference.hash_at.insert(envelope.seq, engine.state_hash());
        }
    }
    engine.check_invariants().expect("reference run invariants");
    reference.final_hash = engine.state_hash();
    reference
}

pub fn journal_config(durability: Durability) -> JournalConfig {
    JournalConfig {
        segment_bytes: 1 << 20,
        frame_payload_max: 4096,
        durability,
    }
}

/// Creates a journal in `dir` with the engine-config sidecar and appends `envelopes` through
/// the codec, committing every `batch` frames. Returns the open journal.
pub fn write_journal(
    dir: &Path,
    envelopes: &[Envelope],
    durability: Durability,
    batch: usize,
) -> Journal {
    let mut journal = Journal::create(dir, journal_config(durability), journal_meta(&config(), 1))
        .expect("create journal");
    write_config(dir, &config()).expect("write engine.json");
    append_all(&mut journal, envelopes, batch);
    journal
}

pub fn append_all(journal: &mut Journal, envelopes: &[Envelope], batch: usize) {
    for chunk in envelopes.chunks(batch.max(1)) {
        for envelope in chunk {
            append_command(journal, envelope).expect("append");
        }
        journal.commit().expect("commit");
    }
}

/// Writes setup + `count` commands with a TakeSnapshot inserted at each seq of `snaps`
/// (ascending), every-batch in batches of 100, and writes a snapshot file for each through
/// `write_snapshot_at` while the writer is open (checking its base is the previous snapshot).
/// Returns the envelopes.
pub fn journal_with_snapshots(dir: &Path, count: usize, snaps: &[u64]) -> Vec<Envelope> {
    let mut stream = setup();
    for command in deterministic_commands(count) {
        if snaps.contains(&(stream.len() as u64 + 1)) {
            stream.push(Command::TakeSnapshot);
        }
        stream.push(command);
    }
    let envelopes = envelopes(stream, 1);
    let mut journal = write_journal(dir, &[], Durability::EveryBatch, 1);
    let mut previous = None;
    let mut written_up_to = 0;
    for &snap in snaps {
        append_all(&mut journal, &envelopes[written_up_to..snap as usize], 100);
        written_up_to = snap as usize;
        assert_eq!(envelopes[snap as usize - 1].command, Command::TakeSnapshot);
        // The snapshotter runs while the writer is open: it reads committed frames only.
        let written = write_snapshot_at(dir, &config(), snap).expect("snapshot");
        assert_eq!(written.meta.seq, snap);
        assert_eq!(written.base.map(|b| b.meta.seq), previous);
        previous = Some(snap);
    }
    append_all(&mut journal, &envelopes[written_up_to..], 100);
    journal.close().expect("close");
    envelopes
}
