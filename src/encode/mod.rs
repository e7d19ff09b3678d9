//! Encoders: from pixels to Gaussians and `.gsi` files.
#![forbid(unsafe_code)]

pub mod analytic;
mod digest;
mod input;
pub mod memory;
pub mod network;
pub mod optim;
pub mod rate;
pub mod runtime;

pub use optim::{fit, realloc, refine, symmetry};
pub use runtime::ort_lib;

pub use input::{LoadedImage, Pixels, from_dynamic, load_image};
pub use network::{Device, ModelInfo, ModelKind, NetworkEncoder, NetworkOptions, Provider};
pub use rate::{Quality, RateResult, RateTarget};
