//! Hostile commands read from the input through engines with and without accounting, empty
//! and trading: no panic, every invariant after every command, rejects change nothing
//! (`kuku_engine::hostile::check_bytes`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    kuku_engine::hostile::check_bytes(data);
});
