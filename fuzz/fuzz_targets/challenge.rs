//! Fuzz target `challenge`: see `gateway::fuzzing::challenge`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| gateway::fuzzing::run("challenge", data));
