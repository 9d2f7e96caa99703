//! `kuku-replay`, the built binary, on real journals: verify passes on a good journal and
//! fails clearly (non-zero exit, a message naming what and where) on a missing directory, an
//! empty one, a journal without frames, damaged frames and a lying snapshot; dump filters;
//! replay --until prints the reference engine's state hash; stats counts commands by kind.

mod streams;

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::process::{Command as Process, Output};

use kuku_engine::*;
use kuku_journal::{JournalReader, SnapshotMeta, SnapshotStore, meta_file};
use serde_json::Value;

fn kuku_replay(args: &[&str]) -> Output {
    Process::new(env!("CARGO_BIN_EXE_kuku-replay"))
        .args(args)
        .output()
        .expect("run kuku-replay")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A journal of 1,200 commands with snapshots at seqs 400 and 900.
fn good_journal(dir: &Path) -> Vec<Envelope> {
    streams::journal_with_snapshots(dir, 1_200, &[400, 900])
}

fn path(dir: &Path) -> &str {
    dir.to_str().unwrap()
}

#[test]
fn verify_passes_on_a_good_journal() {
    let dir = tempfile::tempdir().unwrap();
    let envelopes = good_journal(dir.path());
    let reference = streams::reference_run(&envelopes, &[]);
    let out = kuku_replay(&["verify", path(dir.path())]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));
    assert!(stdout.contains(": OK |"), "{stdout}");
    assert_eq!(
        stdout.matches("): ok").count(),
        2,
        "two snapshots checked: {stdout}"
    );
    assert!(stdout.contains(&format!("{:#018x}", reference.final_hash)));

    let out = kuku_replay(&["verify", path(dir.path()), "--json"]);
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["passed"], true);
    assert_eq!(report["frames_verified"], envelopes.len() as u64);
    assert_eq!(report["seq_last"], envelopes.len() as u64);
}

#[test]
fn every_verb_takes_the_data_directory_too() {
    let data = tempfile::tempdir().unwrap();
    let journal = data.path().join("journal");
    fs::create_dir(&journal).unwrap();
    let envelopes = good_journal(&journal);
    for command in ["verify", "dump", "replay", "stats"] {
        let from_data = kuku_replay(&[command, path(data.path())]);
        let from_journal = kuku_replay(&[command, path(&journal)]);
        assert_eq!(
            from_data.status.code(),
            Some(0),
            "{command}: {}",
            text(&from_data.stderr)
        );
        assert_eq!(
            text(&from_data.stdout),
            text(&from_journal.stdout),
            "{command}"
        );
    }
    let out = kuku_replay(&["dump", path(data.path()), "--seq", "3"]);
    assert_eq!(text(&out.stdout).lines().count(), 1);
    assert!(envelopes.len() > 3);
}

#[test]
fn missing_empty_and_frameless_journals_fail_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope");
    for command in ["verify", "dump", "replay", "stats"] {
        let out = kuku_replay(&[command, missing.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(1), "{command}");
        let stderr = text(&out.stderr);
        assert!(stderr.contains("does not exist"), "{command}: {stderr}");
    }

    let empty = dir.path().join("empty");
    fs::create_dir(&empty).unwrap();
    meta_file::write_config(&empty, &streams::config()).unwrap();
    for command in ["verify", "dump", "replay", "stats"] {
        let out = kuku_replay(&[command, empty.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(1), "{command}");
        let stderr = text(&out.stderr);
        // verify checks as start-up does: an engine config without segments is a journal
        // whose frames are gone, not a new one.
        let expected = if command == "verify" {
            "holds no segment files, but a journal lived here"
        } else {
            "empty journal"
        };
        assert!(stderr.contains(expected), "{command}: {stderr}");
    }

    let frameless = dir.path().join("frameless");
    streams::write_journal(&frameless, &[], kuku_journal::Durability::EveryBatch, 1)
        .close()
        .unwrap();
    for command in ["verify", "dump", "replay", "stats"] {
        let out = kuku_replay(&[command, frameless.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(1), "{command}");
        let stderr = text(&out.stderr);
        assert!(stderr.contains("holds no frames"), "{command}: {stderr}");
    }
}

#[test]
fn a_missing_config_is_explained_and_can_be_given() {
    let dir = tempfile::tempdir().unwrap();
    good_journal(dir.path());
    let sidecar = meta_file::config_path(dir.path());
    let moved = dir.path().join("elsewhere.json");
    fs::rename(&sidecar, &moved).unwrap();
    let out = kuku_replay(&["verify", path(dir.path())]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("no engine config"),
        "{}",
        text(&out.stderr)
    );
    let out = kuku_replay(&[
        "verify",
        path(dir.path()),
        "--config",
        moved.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));

    // A bare EngineConfig of other capacities: refused by the segment headers.
    let other = EngineConfig {
        orders_max: 7,
        ..streams::config()
    };
    let bare = dir.path().join("bare.json");
    fs::write(&bare, serde_json::to_string(&other).unwrap()).unwrap();
    let out = kuku_replay(&[
        "verify",
        path(dir.path()),
        "--config",
        bare.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("capacities hash"),
        "{}",
        text(&out.stderr)
    );
}

/// Flips one payload byte of frame `seq` (all frames sit in the first segment).
fn damage_frame(dir: &Path, seq: u64) -> (String, u64) {
    let reader = JournalReader::open(dir).unwrap();
    let (segment, _) = reader.segments().next().unwrap();
    let segment = segment.to_owned();
    let mut offset = kuku_journal::SEGMENT_DATA_START;
    for frame in reader.frames_from(1).unwrap() {
        let frame = frame.unwrap();
        if frame.seq == seq {
            break;
        }
        offset += kuku_journal::frame_bytes(frame.payload.len());
    }
    drop(reader);
    let mut bytes = fs::read(&segment).unwrap();
    bytes[offset + kuku_journal::FRAME_HEADER_BYTES] ^= 0x10;
    fs::write(&segment, bytes).unwrap();
    (
        segment.file_name().unwrap().to_str().unwrap().to_owned(),
        offset as u64,
    )
}

#[test]
fn a_damaged_durable_frame_fails_verify_with_its_location() {
    let dir = tempfile::tempdir().unwrap();
    good_journal(dir.path());
    let (segment, offset) = damage_frame(dir.path(), 650);
    for command in ["verify", "replay", "stats", "dump"] {
        let out = kuku_replay(&[command, path(dir.path())]);
        assert_eq!(out.status.code(), Some(1), "{command}");
        let stderr = text(&out.stderr);
        for needle in [
            segment.as_str(),
            &format!("byte offset {offset}"),
            "seq 650",
            "CRC mismatch",
            "durable",
        ] {
            assert!(stderr.contains(needle), "{command}: {needle:?} in {stderr}");
        }
    }
}

#[test]
fn a_torn_tail_is_reported_with_exit_code_2() {
    let dir = tempfile::tempdir().unwrap();
    let envelopes = good_journal(dir.path());
    // Uncommitted frames past the durable watermark, the second one damaged.
    let last = envelopes.len() as u64;
    let extra = streams::envelopes(streams::deterministic_commands(3), last + 1);
    let mut journal = kuku_journal::Journal::open(
        dir.path(),
        streams::journal_config(kuku_journal::Durability::EveryBatch),
        kuku_journal::journal_meta(&streams::config(), 1),
    )
    .unwrap()
    .0;
    for e in &extra {
        kuku_journal::append_command(&mut journal, e).unwrap();
    }
    drop(journal);
    damage_frame(dir.path(), last + 2);
    let out = kuku_replay(&["verify", path(dir.path())]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("TORN TAIL") && stdout.contains(&format!("seq {}", last + 2)));
    assert!(
        stdout.contains(&format!("last seq {}", last + 1)),
        "{stdout}"
    );
    let out = kuku_replay(&["stats", path(dir.path()), "--json"]);
    assert_eq!(out.status.code(), Some(2));
    let stats: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(stats["frames"], last + 1);
}

#[test]
fn a_snapshot_with_a_wrong_state_hash_fails_verify() {
    let dir = tempfile::tempdir().unwrap();
    good_journal(dir.path());
    let store = SnapshotStore::open(dir.path()).unwrap();
    let path900 = store.dir().join(kuku_journal::snapshot_file_name(900));
    let snapshot = store.read(&path900).unwrap();
    let lying = SnapshotMeta {
        state_hash: snapshot.meta.state_hash ^ 0xff,
        ..snapshot.meta
    };
    store.write(&lying, &snapshot.payload).unwrap();
    let out = kuku_replay(&["verify", path(dir.path())]);
    assert_eq!(out.status.code(), Some(1));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("FAILED: snapshot"), "{stdout}");
    assert!(
        stdout.contains("differs from the replayed engine"),
        "{stdout}"
    );
}

fn dump(dir: &Path, args: &[&str]) -> Vec<Value> {
    let mut all = vec!["dump", path(dir)];
    all.extend_from_slice(args);
    let out = kuku_replay(&all);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect()
}

#[test]
fn dump_filters_by_seq_time_account_and_symbol() {
    let dir = tempfile::tempdir().unwrap();
    let envelopes = good_journal(dir.path());
    let all = dump(dir.path(), &[]);
    assert_eq!(all.len(), envelopes.len());
    assert_eq!(all[0]["kind"], "SetFeeSchedule");
    assert_eq!(all[0]["seq"], 1);

    let range = dump(dir.path(), &["--from", "100", "--to", "109"]);
    let seqs: Vec<u64> = range.iter().map(|l| l["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, (100..=109).collect::<Vec<_>>());

    let (since, until) = (streams::ts_of(200), streams::ts_of(204));
    let by_time = dump(
        dir.path(),
        &[
            "--since-ts",
            &since.to_string(),
            "--until-ts",
            &until.to_string(),
        ],
    );
    assert_eq!(by_time.len(), 5);

    let account2 = dump(dir.path(), &["--account", "2"]);
    let expected = envelopes
        .iter()
        .filter(|e| e.command.account() == Some(AccountId(2)))
        .count();
    assert_eq!(account2.len(), expected);
    assert!(account2.iter().all(|l| l["account"] == 2));

    let samsung = dump(dir.path(), &["--symbol", "005930"]);
    let expected = envelopes
        .iter()
        .filter(|e| {
            e.command.symbol() == Some(SymbolId(1))
                || matches!(&e.command, Command::RegisterSymbol(r) if r.code.as_str() == "005930")
        })
        .count();
    assert_eq!(samsung.len(), expected);
    assert!(samsung.iter().all(|l| l["symbol"] == "005930"));
    assert_eq!(samsung[0]["kind"], "RegisterSymbol");

    let both = dump(
        dir.path(),
        &["--symbol", "247540", "--account", "3", "--to", "800"],
    );
    assert!(!both.is_empty());
    assert!(
        both.iter()
            .all(|l| l["symbol"] == "247540" && l["account"] == 3)
    );
    // The command itself round-trips through its JSON.
    let first: Command = serde_json::from_value(both[0]["command"].clone()).unwrap();
    let seq = both[0]["seq"].as_u64().unwrap();
    assert_eq!(first, envelopes[seq as usize - 1].command);
}

#[test]
fn replay_until_prints_the_reference_state_hash() {
    let dir = tempfile::tempdir().unwrap();
    let envelopes = good_journal(dir.path());
    let reference = streams::reference_run(&envelopes, &[650, 900]);
    for (until, from_snapshot) in [(650, Some(400)), (900, Some(900))] {
        let out = kuku_replay(&["replay", path(dir.path()), "--until", &until.to_string()]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        let stdout = text(&out.stdout);
        assert!(
            stdout.contains(&format!("state hash: {:#018x}", reference.hash_at[&until])),
            "{stdout}"
        );
        assert!(stdout.contains(&format!("last seq: {until}")), "{stdout}");
        assert!(
            stdout.contains(&format!("from snapshot at seq {}", from_snapshot.unwrap())),
            "{stdout}"
        );
        assert!(stdout.contains("invariants: ok") && stdout.contains("trial balance: KRW 0"));
    }
    let out = kuku_replay(&["replay", path(dir.path()), "--json", "--no-snapshots"]);
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        report["state_hash"],
        format!("{:#018x}", reference.final_hash)
    );
    assert_eq!(report["commands_replayed"], envelopes.len() as u64);
    assert_eq!(report["books"][0]["code"], "005930");
    assert_eq!(report["accounts"].as_array().unwrap().len(), 3);
    assert_eq!(report["trial_balance"]["krw"], "0");

    let out = kuku_replay(&["replay", path(dir.path()), "--until", "99999"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("before the requested seq 99999"));
}

#[test]
fn stats_counts_commands_by_kind() {
    let dir = tempfile::tempdir().unwrap();
    let envelopes = good_journal(dir.path());
    let out = kuku_replay(&["stats", path(dir.path()), "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stats: Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut expected: BTreeMap<String, u64> = BTreeMap::new();
    for e in &envelopes {
        *expected
            .entry(format!("{:?}", e.command.kind()))
            .or_default() += 1;
    }
    let counted: BTreeMap<String, u64> = stats["commands_by_kind"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_u64().unwrap()))
        .collect();
    assert_eq!(counted, expected);
    assert_eq!(stats["frames"], envelopes.len() as u64);
    assert_eq!(stats["seq_first"], 1);
    assert_eq!(stats["seq_last"], envelopes.len() as u64);
    assert_eq!(stats["ts_first"], streams::ts_of(1));
    assert_eq!(stats["snapshots"].as_array().unwrap().len(), 2);
    assert_eq!(stats["segments"][0]["frames"], envelopes.len() as u64);

    let out = kuku_replay(&["stats", path(dir.path())]);
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("PlaceOrder") && stdout.contains("bytes: payload"),
        "{stdout}"
    );
}
