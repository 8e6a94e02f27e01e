//! Fuzz target `secret_value`: see `gateway::fuzzing::secret_value`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| gateway::fuzzing::run("secret_value", data));
