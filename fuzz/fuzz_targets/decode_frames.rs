//! Any byte stream through the frame splitter and decoder.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    kuku_gateway::protocol::fuzzing::check_frames(data);
});
