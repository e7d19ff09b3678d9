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
//! [`write()`], [`GsiFile`]), rendering ([`Viewport`], [`render_cpu`], the GPU's in [`gpu`]), encoding
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

/// Declares functions or methods that the tools, tests and benchmarks call but a program
/// cannot use without the unstable modules' types: public and hidden from the documentation with
/// the `unstable` feature, crate-private without it.
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
// Rendering (the GPU's in `gpu`).
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
    LoadedImage, NetworkEncoder, NetworkOptions, Quality, RateResult, RateTarget, load_image,
};
