#![no_main]
//! Fuzz target: see `gsimg::fuzzing::roundtrip`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| gsimg::fuzzing::roundtrip(data));
