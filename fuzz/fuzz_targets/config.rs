//! Fuzz target `config`: see `gateway::fuzzing::config`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| gateway::fuzzing::run("config", data));
