//! `kuku reference` from the command line: register, map and list reference data in the
//! database (MariaDB and SQLite), and clear refusals for bad input that write nothing.

use kuku_persistence::testkit::TestDatabase;
use std::process::{Command, Output};

fn kuku(url: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kuku"))
        .arg("reference")
        .args(["--database-url", url])
        .args(args)
        .env("KUKU_LOG", "warn")
        .env_remove("KUKU_DATABASE_URL")
        .env_remove("KUKU_CONFIG")
        .output()
        .expect("kuku runs")
}

fn ok(url: &str, args: &[&str]) -> Vec<serde_json::Value> {
    let out = kuku(url, args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{args:?}: {stderr}");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect()
}

fn refused(url: &str, args: &[&str], expected: &str) {
    let out = kuku(url, args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
    assert!(stderr.contains(expected), "{args:?}: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

fn register_map_and_list(url: &str) {
    let markets = ok(url, &["markets"]);
    assert_eq!(markets.len(), 2);
    assert_eq!(markets[1]["code"], "KOSPI");
    let samsung = [
        "register",
        "--code",
        "005930",
        "--isin",
        "KR7005930003",
        "--name-ko",
        "삼성전자",
        "--name-en",
        "Samsung Electronics",
        "--market",
        "KOSPI",
    ];
    let registered = ok(url, &samsung);
    assert_eq!(registered[0]["name_ko"], "삼성전자");
    refused(
        url,
        &[
            "register",
            "--code",
            "000660",
            "--isin",
            "KR7000660002",
            "--name-ko",
            "x",
            "--name-en",
            "x",
            "--market",
            "KOSPI",
        ],
        "ISIN",
    );
    refused(
        url,
        &[
            "register",
            "--code",
            "000660",
            "--isin",
            "KR7000660001",
            "--name-ko",
            "x",
            "--name-en",
            "x",
            "--market",
            "NYSE",
        ],
        "KOSPI or KOSDAQ",
    );
    refused(
        url,
        &[
            "register",
            "--code",
            "000660",
            "--isin",
            "KR7000660001",
            "--name-ko",
            "x",
            "--name-en",
            "x",
            "--market",
            "KOSPI",
            "--lot",
            "0",
        ],
        "lot size",
    );
    refused(
        url,
        &[
            "map",
            "--provider",
            "kis",
            "--external-code",
            "000660",
            "--code",
            "000660",
        ],
        "no symbol 000660",
    );
    ok(
        url,
        &[
            "map",
            "--provider",
            "kis",
            "--external-code",
            "005930",
            "--code",
            "005930",
        ],
    );
    let symbols = ok(url, &["symbols", "--market", "KOSPI"]);
    assert_eq!(symbols.len(), 1, "the refused registrations wrote nothing");
    assert_eq!(symbols[0]["isin"], "KR7005930003");
    assert!(ok(url, &["symbols", "--market", "KOSDAQ"]).is_empty());
    let mappings = ok(url, &["mappings", "--provider", "kis"]);
    assert_eq!(mappings.len(), 1);
    assert_eq!(mappings[0]["symbol"], "005930");
    assert!(ok(url, &["candles", "--code", "005930", "--interval", "1d"]).is_empty());
    refused(
        url,
        &["candles", "--code", "005930", "--interval", "2m"],
        "interval",
    );
}

#[test]
fn reference_commands_register_map_and_list_on_mariadb() {
    let db = TestDatabase::mysql();
    register_map_and_list(db.url().expose());
}

#[test]
fn reference_commands_register_map_and_list_on_sqlite() {
    let db = TestDatabase::sqlite();
    register_map_and_list(db.url().expose());
}
