//! The database from the command line: `kuku serve` refuses a bad database URL or wrong
//! credentials with a clear error (no panic), and `kuku history` serves an account's history
//! from the database alone.

use std::path::Path;
use std::process::{Command, Output};

fn kuku(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kuku"))
        .args(args)
        .env("KUKU_LOG", "warn")
        .env_remove("KUKU_DATABASE_URL")
        .env_remove("KUKU_CONFIG")
        .output()
        .expect("kuku runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn serve_refuses_a_bad_database_url_or_wrong_credentials_with_a_clear_error() {
    let base = std::env::var(kuku_persistence::testkit::MYSQL_URL_ENV)
        .unwrap_or_else(|_| kuku_persistence::testkit::MYSQL_URL_DEFAULT.into());
    let rest = base.split_once("://").unwrap().1;
    let host = rest.split('/').next().unwrap().rsplit('@').next().unwrap();
    let cases = [
        ("postgres://x/y".to_owned(), "unsupported scheme"),
        ("mysql://root@127.0.0.1".to_owned(), "no database name"),
        (
            format!("mysql://kuku_no_such_user:wrong-password@{host}/kuku_x"),
            "wrong user name or password",
        ),
    ];
    for (url, expected) in cases {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().to_str().unwrap();
        let out = kuku(&[
            "serve",
            "--data-dir",
            data,
            "--no-gateway",
            "--no-http",
            "--no-feed",
            "--database-url",
            &url,
        ]);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{url}: {stderr}");
        assert!(stderr.contains(expected), "{url}: {stderr}");
        assert!(
            stderr.contains("cannot start the database writer"),
            "{stderr}"
        );
        assert!(!stderr.contains("panicked"), "{stderr}");
        assert!(
            !stderr.contains("wrong-password"),
            "the password is masked: {stderr}"
        );
    }
}

#[test]
fn history_is_served_from_the_database_without_the_journal() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data_s = data.to_str().unwrap();
    let demo = kuku(&["demo", "--data-dir", data_s]);
    assert!(demo.status.success(), "{}", text(&demo.stderr));
    assert!(data.join("kuku.sqlite").exists());
    // Without the journal nothing but the database can answer.
    std::fs::rename(data.join("journal"), dir.path().join("journal-moved")).unwrap();
    assert!(!Path::new(&data.join("journal")).exists());

    let out = kuku(&["history", "--data-dir", data_s, "--account", "1"]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{}{stdout}", text(&out.stderr));
    // The demo's account 1: a deposit, three fills (two buys, one market sell), a withdrawal,
    // a reversed deposit and its reversal.
    assert!(
        stdout.contains("account 1: history from sqlite:"),
        "{stdout}"
    );
    assert!(stdout.contains("ledger transactions (7):"), "{stdout}");
    assert!(
        stdout.contains("tx 1 DEPOSIT POSTED seq ")
            && stdout.contains(" asset KRW amount 300000000 ref demo-deposit-1"),
        "{stdout}"
    );
    assert!(
        stdout.contains("WITHDRAWAL POSTED")
            && stdout.contains("SEC_TX_TAX")
            && stdout.contains("asset KRW amount -500000 reverses tx 6"),
        "{stdout}"
    );
    assert!(stdout.contains("orders (3):"), "{stdout}");
    // Order #26 as the demo told it: "[5] BUY <qty> at ...; filled <n> @ ..." then cancelled.
    // The history keeps what was asked and what filled (the rest was cancelled).
    let told = text(&demo.stdout);
    let line = told
        .lines()
        .find(|l| l.contains("accepted as order #26"))
        .unwrap_or_else(|| panic!("{told}"));
    let number_after = |key: &str| -> String {
        let rest = &line[line.find(key).unwrap_or_else(|| panic!("{line}")) + key.len()..];
        rest.chars()
            .take_while(|c| c.is_ascii_digit() || *c == ',')
            .filter(char::is_ascii_digit)
            .collect()
    };
    let (asked, filled) = (number_after("BUY "), number_after("filled "));
    assert!(
        asked.parse::<u64>().unwrap() > filled.parse::<u64>().unwrap(),
        "{line}"
    );
    let order_26 = stdout
        .lines()
        .find(|l| {
            l.trim_start()
                .starts_with("order 26 (client 2) symbol 005930 BUY LIMIT DAY")
        })
        .unwrap_or_else(|| panic!("{stdout}"));
    // Its quantities add up: what was asked = what filled + what was cancelled.
    let cancelled = asked.parse::<u64>().unwrap() - filled.parse::<u64>().unwrap();
    assert!(
        order_26.contains(&format!(
            " qty {asked} filled {filled} leaves 0 cancelled {cancelled} CANCELLED"
        )),
        "{line}\n{order_26}"
    );
    assert!(
        stdout.contains("SELL MARKET IOC qty 5 filled 5 leaves 0 cancelled 0 FILLED"),
        "{stdout}"
    );
    assert!(stdout.contains("trades (3):"), "{stdout}");
    // Assets and symbols by name: the trades are in 005930, their entries move KRW and shares.
    assert!(stdout.contains("symbol 005930 "), "{stdout}");
    assert!(
        stdout.contains(" asset 005930 ") && !stdout.contains(" asset 0 "),
        "{stdout}"
    );

    // Paging and one kind at a time.
    let out = kuku(&[
        "history",
        "--data-dir",
        data_s,
        "--account",
        "1",
        "--kind",
        "transactions",
        "--after",
        "4",
    ]);
    let stdout = text(&out.stdout);
    assert!(stdout.contains("ledger transactions (3):"), "{stdout}");
    assert!(!stdout.contains("orders ("), "{stdout}");

    // No database: a clear error.
    let empty = dir.path().join("empty");
    let out = kuku(&[
        "history",
        "--data-dir",
        empty.to_str().unwrap(),
        "--account",
        "1",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("the node never wrote one"),
        "{}",
        text(&out.stderr)
    );
}
