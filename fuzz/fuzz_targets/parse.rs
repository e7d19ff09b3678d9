#![no_main]
//! Fuzz target: see `gsimg::fuzzing::parse`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| gsimg::fuzzing::parse(data));
