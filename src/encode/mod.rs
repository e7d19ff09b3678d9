//! Encoders: from pixels to Gaussians and `.gsi` files.
#![forbid(unsafe_code)]

pub mod analytic;
pub mod fit;
mod input;

pub use input::{LoadedImage, Pixels, from_dynamic, load_image};
