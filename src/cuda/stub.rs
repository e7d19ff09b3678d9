//! The CUDA renderer's API when gsimg is built without the `cuda` feature: the same types, whose
//! constructors return `Error::NoGpu("built without CUDA support")`.

use std::convert::Infallible;
use std::marker::PhantomData;

use super::{HostFrame, RenderInfo};
use crate::core::frame::Sample;
use crate::{ChannelLayout, Error, Frame, Limits, Result, SplatImage, Viewport};

fn unsupported<T>() -> Result<T> {
    Err(Error::NoGpu("built without CUDA support".into()))
}

/// Number of CUDA devices: always 0 without the `cuda` feature.
#[cfg(feature = "unstable")]
pub fn device_count() -> usize {
    0
}

/// A CUDA device (unavailable: built without the `cuda` feature).
#[derive(Debug, Clone)]
pub struct CudaRenderer {
    never: Infallible,
}

impl CudaRenderer {
    /// Always [`Error::NoGpu`].
    pub fn new() -> Result<Self> {
        unsupported()
    }

    /// Always [`Error::NoGpu`].
    pub fn with_device(_ordinal: usize) -> Result<Self> {
        unsupported()
    }

    /// Unreachable.
    pub fn device_name(&self) -> &str {
        match self.never {}
    }

    /// Unreachable.
    pub fn multiprocessors(&self) -> u32 {
        match self.never {}
    }

    /// Unreachable.
    #[doc(hidden)]
    pub fn measure_copy_bandwidth(&self, _bytes: usize, _reps: u32) -> Result<f64> {
        match self.never {}
    }

    /// Unreachable.
    pub fn preload(&self) -> Result<()> {
        match self.never {}
    }

    unstable_pub! {
        /// Unreachable.
        fn refiner(
            &self,
            _width: u32,
            _height: u32,
            _channels: usize,
            _target: &[f32],
        ) -> Result<GpuRefiner> {
            match self.never {}
        }
    }

    /// Unreachable.
    pub fn upload(&self, _image: &SplatImage) -> Result<GpuImage> {
        match self.never {}
    }

    /// Unreachable.
    pub fn alloc_frame<T: Sample>(
        &self,
        _width: u32,
        _height: u32,
        _channels: usize,
    ) -> Result<DeviceFrame<T>> {
        match self.never {}
    }

    /// Unreachable.
    pub fn decoder(&self, _limits: Limits) -> Result<CudaDecoder> {
        match self.never {}
    }
}

/// A picture on the device (unavailable).
pub struct DeviceFrame<T: Sample> {
    never: Infallible,
    _sample: PhantomData<T>,
}

impl<T: Sample> DeviceFrame<T> {
    /// Unreachable.
    pub fn width(&self) -> u32 {
        match self.never {}
    }

    /// Unreachable.
    pub fn height(&self) -> u32 {
        match self.never {}
    }

    /// Unreachable.
    pub fn channels(&self) -> usize {
        match self.never {}
    }

    /// Unreachable.
    pub fn pitch_bytes(&self) -> u64 {
        match self.never {}
    }

    /// Unreachable.
    pub fn device_ptr(&self) -> u64 {
        match self.never {}
    }

    /// Unreachable.
    pub fn download(&self) -> Result<Frame<T>> {
        match self.never {}
    }
}

/// An image on the device (unavailable).
pub struct GpuImage {
    never: Infallible,
}

impl GpuImage {
    /// Unreachable.
    pub fn width(&self) -> u32 {
        match self.never {}
    }

    /// Unreachable.
    pub fn height(&self) -> u32 {
        match self.never {}
    }

    /// Unreachable.
    pub fn layout(&self) -> ChannelLayout {
        match self.never {}
    }

    /// Unreachable.
    pub fn gaussian_count(&self) -> usize {
        match self.never {}
    }

    /// Unreachable.
    #[cfg(feature = "unstable")]
    #[doc(hidden)]
    pub fn set_timing(&mut self, _on: bool) -> Result<()> {
        match self.never {}
    }

    /// Unreachable.
    pub fn render<T: Sample>(&mut self, _v: &Viewport, _l: &Limits) -> Result<Frame<T>> {
        match self.never {}
    }

    /// Unreachable.
    #[doc(hidden)]
    pub fn set_cancel_batch_tiles(&mut self, _tiles: u32) {
        match self.never {}
    }

    /// Unreachable.
    pub fn render_cancellable<T: Sample>(
        &mut self,
        _v: &Viewport,
        _l: &Limits,
        _c: &std::sync::atomic::AtomicBool,
    ) -> Result<Frame<T>> {
        match self.never {}
    }

    /// Unreachable.
    pub fn render_rgba<T: Sample>(&mut self, _v: &Viewport, _l: &Limits) -> Result<Frame<T>> {
        match self.never {}
    }

    /// Unreachable.
    #[cfg(feature = "unstable")]
    #[doc(hidden)]
    pub fn render_with_info<T: Sample>(
        &mut self,
        _v: &Viewport,
        _l: &Limits,
        _rgba: bool,
    ) -> Result<(Frame<T>, RenderInfo)> {
        match self.never {}
    }

    /// Unreachable.
    pub fn render_into<T: Sample>(
        &mut self,
        _v: &Viewport,
        _l: &Limits,
        _frame: &mut DeviceFrame<T>,
    ) -> Result<RenderInfo> {
        match self.never {}
    }
}

/// An end-to-end decoder (unavailable).
pub struct CudaDecoder {
    never: Infallible,
}

impl CudaDecoder {
    /// Unreachable.
    pub fn decode_rgba8(&mut self, _gsi: &[u8], _v: Option<Viewport>) -> Result<HostFrame<'_>> {
        match self.never {}
    }

    /// Unreachable.
    pub fn render_rgba8(&mut self, _i: &SplatImage, _v: &Viewport) -> Result<HostFrame<'_>> {
        match self.never {}
    }
}

/// A picture uploaded for refinement (unavailable: built without the `cuda` feature).
#[derive(Debug)]
pub struct GpuRefiner {
    never: Infallible,
}

impl GpuRefiner {
    unstable_pub! {
        /// Unreachable.
        fn set_target(
            &mut self,
            _width: u32,
            _height: u32,
            _channels: usize,
            _target: &[f32],
        ) -> Result<()> {
            match self.never {}
        }
    }

    /// Unreachable.
    #[cfg(feature = "unstable")]
    pub fn width(&self) -> u32 {
        match self.never {}
    }

    /// Unreachable.
    #[cfg(feature = "unstable")]
    pub fn height(&self) -> u32 {
        match self.never {}
    }

    /// Unreachable.
    pub fn descend(
        &mut self,
        _gaussians: &mut [crate::core::splat::Gaussian],
        _adam: &super::AdamSettings,
        _iterations: usize,
        _grid: Option<&crate::format::QuantGrid>,
    ) -> Result<(f64, f64)> {
        match self.never {}
    }

    /// Unreachable.
    #[cfg(feature = "unstable")]
    pub fn gradients(
        &mut self,
        _gaussians: &[crate::core::splat::Gaussian],
    ) -> Result<(f64, Vec<[f64; 9]>)> {
        match self.never {}
    }

    /// Unreachable.
    pub fn fit_colors(
        &mut self,
        _gaussians: &mut [crate::core::splat::Gaussian],
        _iterations: usize,
        _clamp: (f32, f32),
    ) -> Result<()> {
        match self.never {}
    }

    /// Unreachable.
    pub fn removal_costs(
        &mut self,
        _gaussians: &[crate::core::splat::Gaussian],
    ) -> Result<Vec<f64>> {
        match self.never {}
    }

    /// Unreachable.
    pub(crate) fn blend_maps(
        &mut self,
        _gaussians: &[crate::core::splat::Gaussian],
        _keep: Option<&[bool]>,
    ) -> Result<super::BlendMaps> {
        match self.never {}
    }

    /// Unreachable.
    #[cfg(feature = "unstable")]
    pub fn error_map(
        &mut self,
        _gaussians: &[crate::core::splat::Gaussian],
        _keep: Option<&[bool]>,
    ) -> Result<Vec<f32>> {
        match self.never {}
    }
}
