#![no_main]
//! Fuzz target: see `gsimg::fuzzing::model_metadata`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| gsimg::fuzzing::model_metadata(data));
