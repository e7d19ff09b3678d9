//! The CUDA renderer: the kernels of `kernels/` launched through `cudarc`, matching
//! [`render_cpu`](crate::render::render_cpu) (`format-spec.md` §3.6).
//!
//! This module is the only place in gsimg with `unsafe` code and `cudarc` types; the rest of the
//! crate, and callers, see gsimg's own types:
//!
//! - [`CudaRenderer`]: a device with the kernels loaded (created once; cheap to clone);
//! - [`GpuImage`]: a [`SplatImage`](crate::SplatImage) uploaded once, rendered at any number of
//!   sizes, zooms and regions without re-uploading (for image viewers), into a host
//!   [`Frame`](crate::Frame) or a [`DeviceFrame`] that stays on the GPU;
//! - [`CudaDecoder`]: `.gsi` bytes in host memory to RGBA8 in (pinned) host memory, reusing its
//!   buffers from one file to the next.
//!
//! libcuda is loaded at run time: a build needs no CUDA toolkit, and without a driver or a GPU
//! [`CudaRenderer::new`] returns [`Error::NoGpu`](crate::Error::NoGpu) (callers then use the CPU
//! renderer); [`Error::Cuda`](crate::Error::Cuda) is a failure of a usable GPU. The kernels are embedded as PTX (`kernels/ptx/`, compute capability 7.5 and newer,
//! NVIDIA driver 580 or newer); see `kernels/README.md`. Built without the `cuda` feature, the
//! same types exist and every constructor returns `Error::NoGpu("built without CUDA support")`.
//!
//! ```no_run
//! # fn main() -> gsimg::Result<()> {
//! use gsimg::cuda::CudaRenderer;
//! let bytes = std::fs::read("photo.gsi")?;
//! let file = gsimg::format::read(&bytes, &gsimg::Limits::default())?;
//! let gpu = CudaRenderer::new()?;
//! let mut image = gpu.upload(&file.image)?;
//! for scale in [1.0, 2.5, 8.0] {
//!     let view = gsimg::Viewport::scaled(image.width(), image.height(), scale)?;
//!     let frame: gsimg::Frame<u8> = image.render(&view, &gsimg::Limits::default())?;
//! #   let _ = frame;
//! }
//! # Ok(()) }
//! ```

#[cfg(feature = "cuda")]
use crate::core::frame::Sample;

#[cfg(feature = "cuda")]
mod api;
#[cfg(feature = "cuda")]
mod kernels;
#[cfg(feature = "cuda")]
mod launch;
#[cfg(feature = "cuda")]
mod pipeline;
#[cfg(feature = "cuda")]
mod refine;
#[cfg(feature = "cuda")]
mod runtime;
#[cfg(not(feature = "cuda"))]
mod stub;

#[cfg(all(feature = "cuda", feature = "unstable"))]
pub use api::device_count;
#[cfg(feature = "cuda")]
pub use api::{CudaDecoder, CudaRenderer, DeviceFrame, GpuImage};
#[cfg(feature = "cuda")]
pub use refine::GpuRefiner;
#[cfg(all(not(feature = "cuda"), feature = "unstable"))]
pub use stub::device_count;
#[cfg(not(feature = "cuda"))]
pub use stub::{CudaDecoder, CudaRenderer, DeviceFrame, GpuImage, GpuRefiner};

/// Step sizes and bounds of a descent (the Adam settings of
/// [`RefineOptions`](crate::encode::optim::refine::RefineOptions)).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamSettings {
    /// Step size of positions, native pixels.
    pub lr_position: f32,
    /// Step size of log2-scales.
    pub lr_scale: f32,
    /// Step size of rotations, radians.
    pub lr_rotation: f32,
    /// Step size of channel values.
    pub lr_color: f32,
    /// The step sizes at the last step as a fraction of the above (exponential decay; 1:
    /// constant).
    pub lr_final: f32,
    /// Smallest and largest σ, native pixels.
    pub scale_bounds: (f32, f32),
}

/// The step-size factor of step `step` of `iterations`: `lr_final^(step / (iterations − 1))`,
/// computed in binary32 as the GPU's host side does.
pub fn lr_factor(lr_final: f32, step: usize, iterations: usize) -> f32 {
    if lr_final == 1.0 || iterations < 2 {
        return 1.0;
    }
    lr_final.powf(step as f32 / (iterations - 1) as f32)
}

/// A render's per-pixel maps for the moves between refinement rounds (`GpuRefiner::blend_maps`):
/// the blend's numerator (4 channels), and (weight sum, squared error, 0, 0).
pub(crate) type BlendMaps = (Vec<[f32; 4]>, Vec<[f32; 4]>);

/// Whether gsimg was built with the CUDA renderer (the `cuda` feature).
#[cfg(feature = "unstable")]
pub const BUILT_WITH_CUDA: bool = cfg!(feature = "cuda");

/// The PTX of each kernel file, as embedded (for tests and diagnostics).
#[cfg(all(feature = "cuda", feature = "unstable"))]
pub use kernels::PTX_FILES;

/// Which kernel family writes a sample type. [`Sample`] is sealed to `u8` (§3.5) and `f32`
/// (unclamped values), so the size tells them apart.
#[cfg(feature = "cuda")]
pub(crate) trait GpuSample: Sample {
    /// The kernel family.
    const KIND: SampleKind;
}

#[cfg(feature = "cuda")]
impl<T: Sample> GpuSample for T {
    const KIND: SampleKind = if size_of::<T>() == 1 {
        SampleKind::U8
    } else {
        SampleKind::F32
    };
}

/// The output sample type of a kernel.
#[cfg(feature = "cuda")]
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SampleKind {
    /// 8-bit samples (§3.5).
    U8,
    /// binary32 samples.
    F32,
}

#[cfg(feature = "cuda")]
impl SampleKind {
    /// Bytes per sample.
    pub fn size(self) -> usize {
        match self {
            SampleKind::U8 => 1,
            SampleKind::F32 => 4,
        }
    }
}

/// What one GPU render did.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct RenderInfo {
    /// Gaussian–pixel evaluations bounded by the Gaussians' clipped bounding boxes: the CPU
    /// renderer's "render work" (without its per-row cost), checked against
    /// [`Limits::render_work_limit`](crate::Limits::render_work_limit).
    pub work: u64,
    /// Entries of the per-tile Gaussian lists (one per Gaussian and 16 × 16 tile it touches).
    pub tile_entries: u64,
    /// Tiles of the region.
    pub tiles: u64,
    /// 1, or 2 when the tile lists outgrew their buffers and the render ran again.
    pub attempts: u32,
    /// Device time of the render's kernels in milliseconds, when timing is on (a measurement
    /// switch of gsimg's own tools; `None` otherwise).
    pub gpu_ms: Option<f32>,
    /// The same split into projection, tile binning (prefix sum, pairs, radix sort, ranges) and
    /// rasterization, when timing is on.
    pub stage_ms: Option<[f32; 3]>,
}

/// An 8-bit picture in host memory owned by a [`CudaDecoder`], valid until its next decode.
#[derive(Debug, Clone, Copy)]
pub struct HostFrame<'a> {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Samples per pixel (4: RGBA).
    pub channels: usize,
    /// `width * height * channels` samples, rows top to bottom, no padding.
    pub data: &'a [u8],
}
