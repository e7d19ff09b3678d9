#![no_main]
//! Fuzz target: see `gsimg::fuzzing::network_output`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| gsimg::fuzzing::network_output(data));
