//! Fuzz target `pfx`: see `gateway::fuzzing::pfx`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| gateway::fuzzing::run("pfx", data));
