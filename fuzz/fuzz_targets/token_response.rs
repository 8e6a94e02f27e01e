//! Fuzz target `token_response`: see `gateway::fuzzing::token_response`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| gateway::fuzzing::run("token_response", data));
