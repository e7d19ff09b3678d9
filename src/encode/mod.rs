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

pub use input::{LoadedImage, load_image};
pub use network::{NetworkEncoder, NetworkOptions, Provider};
// For the tools, tests and benchmarks only.
#[cfg(feature = "unstable")]
pub use input::from_dynamic;
#[cfg(feature = "unstable")]
pub use network::Device;
pub use rate::{Quality, RateResult, RateTarget};
