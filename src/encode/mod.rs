//! Encoders: from pixels to Gaussians and `.gsi` files.
#![forbid(unsafe_code)]

mod alpha;
pub mod analytic;
pub(crate) mod coverage;
mod digest;
pub mod fit;
mod input;
pub mod memory;
pub mod network;
#[cfg(feature = "onnx")]
mod onnx;
#[cfg(not(feature = "onnx"))]
#[path = "onnx_stub.rs"]
mod onnx;
pub mod ort_lib;
pub mod rate;
pub mod realloc;
pub mod refine;
pub mod symmetry;

pub use input::{LoadedImage, Pixels, from_dynamic, load_image};
pub use network::{Device, ModelInfo, ModelKind, NetworkEncoder, NetworkOptions, Provider};
pub use rate::{RateResult, RateTarget};
