//! # gsimg: Gaussian-splatting images
//!
//! gsimg stores a picture as a set of 2D Gaussians in a compact `.gsi` file and renders it at
//! any resolution, zoom or region:
//!
//! ```text
//! picture ──encode──▶ SplatImage ──write──▶ .gsi bytes ──read──▶ SplatImage ──render──▶ pixels
//! ```
//!
//! The crate root holds the names a program works with, by job:
//!
//! - the picture and its geometry: [`SplatImage`] of [`Gaussian`]s, the [`Viewport`] a render
//!   shows and a [`Region`] of it;
//! - pixels in memory: [`Frame`] with its [`ChannelLayout`] (sample types and averaging in
//!   [`frame`]);
//! - files: [`read`] into a [`GsiFile`], [`inspect`] without decoding the tiles (header,
//!   metadata and coding details in [`info`]), [`write()`] with [`WriteOptions`];
//! - rendering on the CPU: [`render_cpu`], and [`render_cpu_with`] with [`RenderOptions`] (a
//!   cancel flag); the CUDA renderer is in [`gpu`], and [`view`] chooses between them;
//! - encoding: [`load_image`] reads a picture, [`encode_analytic`] with [`AnalyticOptions`] or a
//!   [`NetworkEncoder`] built from [`NetworkOptions`] turns it into a file; quality, rate
//!   targets, refinement and memory estimates are in [`encode`], the network's model and
//!   runtime in [`network`];
//! - upscaling a raster picture: [`view::upscale`];
//! - bounds, errors and progress: [`Limits`] on what an input may make the library do,
//!   [`Error`] and [`Result`] (the details of a malformed file in [`error`]), and
//!   [`ProgressSink`] for the long operations.
//!
//! ARCHITECTURE.md describes the layers behind them. The layer modules themselves (format
//! internals, quantizers, the optimizer, ONNX Runtime plumbing) are an unstable interface for
//! gsimg's benchmarks, tools, tests and fuzzing: they are public only with the `unstable`
//! feature, hidden from the documentation, and may change in any release. The `gsimg` command
//! (package `gsimg-cli`) is built on the public names alone.
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

/// Declares functions or methods that the crate calls itself but that only the tools, tests and
/// benchmarks call from outside (format internals, tuning knobs), or that a program cannot use
/// without the unstable modules' types: public and hidden from the documentation with the
/// `unstable` feature, crate-private without it. (What the crate never calls itself is
/// `#[cfg(feature = "unstable")]` instead.)
macro_rules! unstable_pub {
    ($(#[$m:meta])* fn $($rest:tt)*) => {
        $(#[$m])*
        #[cfg(feature = "unstable")]
        #[doc(hidden)]
        pub fn $($rest)*
        $(#[$m])*
        #[cfg(not(feature = "unstable"))]
        pub(crate) fn $($rest)*
    };
}

// The layer modules (and the encode façade's parts, in encode/mod.rs) are public but hidden
// from the documentation with the `unstable` feature, crate-private without it. Written as
// plain `mod` items (not through a macro) so that rustfmt reaches their files.
#[cfg(feature = "unstable")]
#[doc(hidden)]
pub mod core;
#[cfg(not(feature = "unstable"))]
pub(crate) mod core;
#[cfg(feature = "unstable")]
#[doc(hidden)]
pub mod cuda;
#[cfg(not(feature = "unstable"))]
pub(crate) mod cuda;
pub mod encode;
#[cfg(feature = "unstable")]
#[doc(hidden)]
pub mod format;
#[cfg(not(feature = "unstable"))]
pub(crate) mod format;
#[cfg(feature = "unstable")]
#[doc(hidden)]
pub mod render;
#[cfg(not(feature = "unstable"))]
pub(crate) mod render;

/// The CUDA renderer: a GPU with gsimg's kernels ([`CudaRenderer`](gpu::CudaRenderer)), a
/// picture uploaded once and rendered at any size or region ([`GpuImage`](gpu::GpuImage)) into
/// a host [`Frame`] or a [`DeviceFrame`](gpu::DeviceFrame) that stays on the GPU, and an
/// end-to-end decoder of `.gsi` bytes to RGBA8 ([`CudaDecoder`](gpu::CudaDecoder)).
///
/// libcuda is loaded at run time: without a driver or a GPU (or built without the `cuda`
/// feature) [`CudaRenderer::new`](gpu::CudaRenderer::new) returns [`Error::NoGpu`], and a
/// program renders with [`render_cpu`] instead; [`view`] makes this choice, and falls back to
/// the CPU, for viewers.
pub mod gpu {
    pub use crate::cuda::{
        CudaDecoder, CudaRenderer, DeviceFrame, GpuImage, HostFrame, RenderInfo,
    };
}

/// The network encoder's model and runtime, beyond [`NetworkOptions`] and [`NetworkEncoder`]:
/// what a model file declares ([`ModelInfo`](network::ModelInfo),
/// [`ModelKind`](network::ModelKind), [`Quantizers`](network::Quantizers)), where gsimg installs
/// models ([`locate_model`](network::locate_model)), how ONNX Runtime is found
/// ([`LibrarySearch`](network::LibrarySearch)), where the network runs
/// ([`Device`](network::Device), [`Provider`](network::Provider)), status messages
/// ([`MessageSink`](network::MessageSink)) and one run's output
/// ([`NetworkOutput`](network::NetworkOutput)).
pub mod network {
    pub use crate::encode::network::{
        MessageSink, ModelInfo, ModelKind, NetworkOutput, Quantizers, locate_model,
    };
    pub use crate::encode::runtime::ort_lib::{FoundLibrary, LibrarySearch, LibrarySource};
    pub use crate::encode::runtime::{Device, Provider};
}

/// The bodies of the fuzz targets (`fuzz/`), replayed by the tests.
#[cfg(feature = "unstable")]
#[doc(hidden)]
pub mod fuzzing;

/// Errors: the crate's [`Error`] and [`Result`] (also at the crate root), what a malformed
/// file's error says ([`FormatError`](error::FormatError): its
/// [`FormatErrorKind`](error::FormatErrorKind) and [`Location`](error::Location) in the file),
/// and the [`Cause`](error::Cause) of a fault outside gsimg's own checks (a picture decoder, a
/// model file, ONNX Runtime, the CUDA driver): a message, and the error it comes from as its
/// `source()`.
pub mod error {
    pub use crate::core::error::{Cause, Error, Result};
    pub use crate::core::format_error::{FormatError, FormatErrorKind, Location};
}

/// Pixel buffers: [`Frame`] with its [`ChannelLayout`] (both also at the crate root), the
/// sample types a frame holds ([`Sample`](frame::Sample): `u8` and `f32`), and the running
/// mean of several frames ([`FrameMean`](frame::FrameMean)).
pub mod frame {
    pub use crate::core::frame::{Frame, FrameMean, Sample};
    pub use crate::core::splat::ChannelLayout;
}

/// What a `.gsi` file holds beyond its picture: its [`Inspection`](info::Inspection) from
/// [`inspect`] (also at the crate root), the [`Header`](info::Header) with the types of its
/// fields ([`ColorModel`](info::ColorModel), [`Predictor`](info::Predictor),
/// [`Packing`](info::Packing), [`AttrQuant`](info::AttrQuant)), the [`Metadata`](info::Metadata)
/// (ICC profile, orientation), how the tiles are coded ([`Coding`](info::Coding)), where the
/// bytes go ([`analyze`](info::analyze), [`Analysis`](info::Analysis)), and the
/// [`SIGNATURE`](info::SIGNATURE) that starts every file. `format-spec.md` defines each field.
pub mod info {
    pub use crate::format::consts::SIGNATURE;
    pub use crate::format::{
        Analysis, AttrQuant, Coding, ColorModel, Header, Inspection, Metadata, Packing, Predictor,
        analyze, inspect,
    };
}

// The model, geometry, pixel buffers, limits, errors and progress.
pub use crate::core::error::{Error, Result};
pub use crate::core::frame::Frame;
pub use crate::core::geometry::{Region, Viewport};
pub use crate::core::limits::Limits;
pub use crate::core::progress::ProgressSink;
pub use crate::core::splat::{ChannelLayout, Gaussian, SplatImage};
// Files.
pub use crate::format::{GsiFile, WriteOptions, inspect, read, write};
// Rendering (the GPU's in `gpu`).
pub use crate::render::{RenderOptions, render_cpu, render_cpu_with};
// Encoding (the rest in `encode`).
pub use crate::encode::{
    AnalyticOptions, NetworkEncoder, NetworkOptions, encode_analytic, load_image,
};
