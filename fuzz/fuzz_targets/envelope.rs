//! Fuzz target `envelope`: see `gateway::fuzzing::envelope`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| gateway::fuzzing::run("envelope", data));
