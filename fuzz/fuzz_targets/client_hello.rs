//! Fuzz target `client_hello`: see `gateway::fuzzing::client_hello`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| gateway::fuzzing::run("client_hello", data));
