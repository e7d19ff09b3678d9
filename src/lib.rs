//! # gsimg: Gaussian-splatting images
//!
//! gsimg stores a picture as a set of 2D Gaussians in a compact `.gsi` file and renders it at
//! any resolution, zoom or region:
//!
//! ```text
//! picture ──encode──▶ SplatImage ──write──▶ .gsi bytes ──read──▶ SplatImage ──render──▶ pixels
//! ```
//!
//! The names a user needs are at the crate root: reading and writing files ([`read`],
//! [`write()`], [`GsiFile`]), rendering ([`Viewport`], [`render_cpu`], [`CudaRenderer`]), encoding
//! ([`load_image`], [`encode_analytic`], [`NetworkOptions`]), and the shared model, limits and
//! errors ([`SplatImage`], [`Limits`], [`Error`]). ARCHITECTURE.md describes the layers behind
//! them.
//!
//! The modules themselves (format internals, quantizers, the optimizer, ONNX Runtime plumbing)
//! are an unstable interface for gsimg's benchmarks, tools, tests and fuzzing: they
//! are public only with the `unstable` feature, hidden from the documentation, and may change in
//! any release. The `gsimg` command (package `gsimg-cli`) is built on the public names alone.
//!
//! For viewers, [`view`] opens a file and renders any size or region into the caller's buffer
//! in the pixel format it draws, on the CPU or a GPU; with the `image-hooks` feature,
//! `image_hooks` makes `.gsi` files open through the `image` crate.
//!
//! ```no_run
//! # fn main() -> gsimg::Result<()> {
//! let bytes = std::fs::read("photo.gsi")?;
//! let limits = gsimg::Limits::default();
//! let file = gsimg::read(&bytes, &limits)?;
//! let view = gsimg::Viewport::scaled(file.image.width(), file.image.height(), 2.5)?;
//! let frame: gsimg::Frame<u8> = gsimg::render_cpu(&file.image, &view, &limits)?;
//! # let _ = frame;
//! # Ok(()) }
//! ```
#![warn(missing_docs)]

#[cfg(feature = "image-hooks")]
pub mod image_hooks;
pub mod view;

/// Declares the crate's layer modules: public but hidden from the documentation with the
/// `unstable` feature, private without it.
macro_rules! layer {
    ($($(#[$m:meta])* $name:ident;)*) => {$(
        $(#[$m])*
        #[cfg(feature = "unstable")]
        #[doc(hidden)]
        pub mod $name;
        $(#[$m])*
        #[cfg(not(feature = "unstable"))]
        mod $name;
    )*};
}

layer! {
    core;
    cuda;
    encode;
    format;
    render;
}

/// The bodies of the fuzz targets (`fuzz/`), replayed by the tests.
#[cfg(feature = "unstable")]
#[doc(hidden)]
pub mod fuzzing;

// The model, geometry, pixel buffers, limits and errors.
pub use crate::core::error::{Cause, Error, Result};
pub use crate::core::format_error::{FormatError, FormatErrorKind, Location};
pub use crate::core::frame::{Frame, FrameMean, Sample};
pub use crate::core::geometry::{Region, Viewport};
pub use crate::core::limits::Limits;
pub use crate::core::progress::ProgressSink;
pub use crate::core::splat::{ChannelLayout, Gaussian, SplatImage};
// Files.
pub use crate::format::consts::SIGNATURE;
pub use crate::format::{
    Analysis, AttrQuant, Coding, ColorModel, Encoded, GsiFile, Header, Inspection, Metadata,
    Packing, Predictor, WriteOptions, analyze, inspect, read, write,
};
// Rendering.
pub use crate::cuda::{CudaDecoder, CudaRenderer, DeviceFrame, GpuImage};
pub use crate::render::{RenderOptions, render_cpu, render_cpu_with};
// Encoding: pictures in, the two encoders, their settings, rate control, memory.
pub use crate::encode::analytic::{
    AnalyticOptions, encode as encode_analytic, encode_to_rate as encode_analytic_to_rate,
};
pub use crate::encode::memory::{
    EncoderKind, check as check_encode_memory, estimate as estimate_encode_memory, picture_size,
};
pub use crate::encode::optim::fit::FitOptions;
pub use crate::encode::optim::refine::{Effort, RefineDevice, RefineOptions};
pub use crate::encode::{
    LoadedImage, ModelInfo, ModelKind, NetworkEncoder, NetworkOptions, Quality, RateResult,
    RateTarget, load_image,
};
// The network encoder's model and ONNX Runtime.
pub use crate::encode::network::{MessageSink, Quantizers, locate_model};
pub use crate::encode::runtime::ort_lib::{FoundLibrary, LibrarySearch, LibrarySource};
pub use crate::encode::runtime::{Device as NetworkDevice, Provider};
