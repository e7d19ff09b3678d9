//! Encoding: from a picture to Gaussians and a `.gsi` file.
//!
//! The crate root re-exports the entry points a program starts from ([`load_image`],
//! [`encode_analytic`] with [`AnalyticOptions`], [`NetworkEncoder`] with [`NetworkOptions`]);
//! this module holds them and everything else about encoding:
//!
//! - what the encoders return: [`Encoded`] (the file's bytes and the picture they read back
//!   as), [`LoadedImage`] (a decoded input picture);
//! - what a quality number means to each encoder ([`Quality`]), and encoding to a size instead
//!   ([`RateTarget`], [`encode_analytic_to_rate`], [`RateResult`];
//!   [`NetworkEncoder::encode_to_rate`] for the network);
//! - the optimizer's settings both encoders share: the colour fit ([`FitOptions`]) and the
//!   refinement ([`RefineOptions`], its [`Effort`] presets and where it runs, [`RefineDevice`]);
//! - memory: the size of a picture file from its header alone ([`picture_size`]) and the
//!   encoders' peak memory ([`EncoderKind`], [`estimate_memory`]), to refuse a picture over
//!   [`Limits::max_memory_bytes`](crate::Limits::max_memory_bytes) before decoding it
//!   ([`check_memory`]).
//!
//! The network's model files and ONNX Runtime are described in [`network`](crate::network).
#![forbid(unsafe_code)]

#[cfg(feature = "unstable")]
#[doc(hidden)]
pub mod analytic;
#[cfg(not(feature = "unstable"))]
pub(crate) mod analytic;
mod digest;
mod input;
#[cfg(feature = "unstable")]
#[doc(hidden)]
pub mod memory;
#[cfg(not(feature = "unstable"))]
pub(crate) mod memory;
#[cfg(feature = "unstable")]
#[doc(hidden)]
pub mod network;
#[cfg(not(feature = "unstable"))]
pub(crate) mod network;
#[cfg(feature = "unstable")]
#[doc(hidden)]
pub mod optim;
#[cfg(not(feature = "unstable"))]
pub(crate) mod optim;
#[cfg(feature = "unstable")]
#[doc(hidden)]
pub mod rate;
#[cfg(not(feature = "unstable"))]
pub(crate) mod rate;
#[cfg(feature = "unstable")]
#[doc(hidden)]
pub mod runtime;
#[cfg(not(feature = "unstable"))]
pub(crate) mod runtime;

pub use crate::format::Encoded;
pub use analytic::{
    AnalyticOptions, encode as encode_analytic, encode_to_rate as encode_analytic_to_rate,
};
pub use input::{LoadedImage, load_image};
pub use memory::{EncoderKind, check as check_memory, estimate as estimate_memory, picture_size};
pub use network::{NetworkEncoder, NetworkOptions};
pub use optim::fit::FitOptions;
pub use optim::refine::{Effort, RefineDevice, RefineOptions};
pub use rate::{Quality, RateResult, RateTarget};
// Public in `gsimg::network`.
pub(crate) use network::Provider;
// For the tools, tests and benchmarks only.
#[cfg(feature = "unstable")]
#[doc(hidden)]
pub use input::from_dynamic;
#[cfg(feature = "unstable")]
#[doc(hidden)]
pub use network::Device;
