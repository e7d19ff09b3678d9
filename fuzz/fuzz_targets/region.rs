#![no_main]
//! Fuzz target: see `gsimg::fuzzing::region`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| gsimg::fuzzing::region(data));
