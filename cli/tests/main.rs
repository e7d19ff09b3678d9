//! Tests of the `gsimg` command, in one binary: each runs the built program as a user does
//! (and, where a test compares, the library's own output).

// The library's test helpers (seeded random pictures and files).
#[path = "../../tests/common/mod.rs"]
#[allow(dead_code)] // not every helper is used here
mod common;

mod batch;
mod bounds;
mod cli;
mod cli_edges;
mod cuda_cli;
mod onnx;
mod viewer;

/// The repository's root (the library's package), where the models, fixtures and fuzz seeds
/// are.
pub fn repo_root() -> &'static std::path::Path {
    std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}
