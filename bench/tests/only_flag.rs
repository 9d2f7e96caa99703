//! `kuku-bench engine --only`: times one engine of the selection, still checked against the
//! oracle, and refuses a name that is not selected.

use std::process::Command;

fn engine(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_kuku-bench"))
        .arg("engine")
        .args(args)
        .output()
        .expect("kuku-bench runs")
}

#[test]
fn only_times_the_named_engine_and_checks_it() {
    let out = engine(&["--smoke", "--full", "--no-latency", "--only", "kuku_full"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    // Rows of the throughput and state tables start with the engine's name.
    let first_words: Vec<&str> = stdout
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert!(first_words.contains(&"kuku_full"), "{stdout}");
    assert!(!first_words.contains(&"kuku"), "{stdout}");
    assert!(
        stdout.contains("all engines agree with the oracle: yes"),
        "{stdout}"
    );
}

#[test]
fn only_refuses_an_engine_that_is_not_selected() {
    // `kuku_full` runs only with `--full`.
    let out = engine(&["--smoke", "--no-latency", "--only", "kuku_full"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--only kuku_full: not among the selected engines (kuku)"),
        "{stderr}"
    );
}
