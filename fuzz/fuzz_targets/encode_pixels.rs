#![no_main]
//! Fuzz target: see `gsimg::fuzzing::encode_pixels`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| gsimg::fuzzing::encode_pixels(data));
