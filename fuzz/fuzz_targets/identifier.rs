//! Fuzz target `identifier`: see `gateway::fuzzing::identifier`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| gateway::fuzzing::run("identifier", data));
