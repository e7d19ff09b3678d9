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
//! are an unstable interface for gsimg's own command line, benchmarks, tools and fuzzing: they
//! are public only with the `unstable` feature (the `cli` feature turns it on), hidden from the
//! documentation, and may change in any release.
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
// Without `unstable` the modules are private and some of their items serve only the tools,
// benchmarks and tests that need the feature.
#![cfg_attr(not(feature = "unstable"), allow(dead_code, unused_imports))]

mod core;
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
    cuda;
    encode;
    format;
    fuzzing;
    render;
}

/// The Gaussian picture model (unstable path; the types are re-exported at the root).
#[cfg(feature = "unstable")]
#[doc(hidden)]
pub use crate::core::splat;

// The model, geometry, pixel buffers, limits and errors.
pub use crate::core::error::{Cause, Error, Result};
pub use crate::core::format_error::{FormatError, FormatErrorKind, Location};
pub use crate::core::frame::{Frame, FrameMean, Pixels, Sample};
pub use crate::core::geometry::{Region, Viewport};
pub use crate::core::limits::Limits;
pub use crate::core::progress::ProgressSink;
pub use crate::core::splat::{ChannelLayout, Gaussian, SplatImage};
// Files.
pub use crate::format::{Coding, Encoded, GsiFile, Header, Metadata, WriteOptions, read, write};
// Rendering.
pub use crate::cuda::{CudaDecoder, CudaRenderer, GpuImage};
pub use crate::render::{RenderOptions, render_cpu, render_cpu_with};
// Encoding.
pub use crate::encode::analytic::{AnalyticOptions, encode as encode_analytic};
pub use crate::encode::optim::refine::Effort;
pub use crate::encode::{
    LoadedImage, ModelKind, NetworkEncoder, NetworkOptions, Quality, RateResult, RateTarget,
    load_image,
};
