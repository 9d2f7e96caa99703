//! Any body under any message type (first byte: the type).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    kuku_gateway::protocol::fuzzing::check_body(data);
});
