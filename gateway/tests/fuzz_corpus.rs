//! Replays the fuzz corpora (fuzz/corpus/<target>/*) through the fuzz targets' checks, so
//! every input a fuzzer kept (and every crash it found, once added) is a regression test on
//! stable Rust.

use kuku_gateway::protocol::fuzzing::{check_body, check_frames};
use std::path::Path;

fn replay(target: &str, check: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target);
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).expect("the corpus exists") {
        let path = entry.expect("a directory entry").path();
        let data = std::fs::read(&path).expect("a corpus file");
        let result = std::panic::catch_unwind(|| check(&data));
        assert!(
            result.is_ok(),
            "{} fails the {target} check",
            path.display()
        );
        n += 1;
    }
    assert!(n >= 5, "the {target} corpus is nearly empty ({n} files)");
}

#[test]
fn decode_frames_corpus_passes() {
    replay("decode_frames", check_frames);
}

#[test]
fn decode_body_corpus_passes() {
    replay("decode_body", check_body);
}
