//! Integration tests through the public API, in one binary.

mod common;

mod cuda;
mod encode;
mod format;
mod fuzz_regressions;
mod layers;
mod malformed;
mod rate;
mod render;
mod robustness;
mod test_vector;
mod torch_fixture;
