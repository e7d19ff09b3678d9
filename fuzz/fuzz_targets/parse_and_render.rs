#![no_main]
//! Fuzz target: see `gsimg::fuzzing::parse_and_render`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| gsimg::fuzzing::parse_and_render(data));
