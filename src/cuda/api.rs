//! The public GPU types: renderer, uploaded image, device frame and end-to-end decoder.

use std::marker::PhantomData;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use cudarc::driver::{CudaSlice, CudaStream, PinnedHostSlice};

use super::launch::GaussianIn;
use super::pipeline::{Plan, Target, Workspace};
use super::runtime::{Runtime, driver_err};
use super::{GpuSample, HostFrame, RenderInfo};
use crate::core::frame::Sample;
use crate::{ChannelLayout, Error, Frame, Limits, Result, SplatImage, Viewport};

/// Number of CUDA devices; 0 without an NVIDIA driver.
#[cfg(feature = "unstable")]
pub fn device_count() -> usize {
    super::runtime::device_count()
}

/// A CUDA device with gsimg's kernels: the entry point of the GPU renderer.
///
/// The first one created for a device opens its primary context, which then stays open for the
/// process: later ones (and clones) share it and its loaded kernels. The kernels are loaded
/// (JIT-compiled by the driver, then cached by it on disk) on first use.
#[derive(Clone)]
pub struct CudaRenderer {
    rt: Arc<Runtime>,
}

impl std::fmt::Debug for CudaRenderer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CudaRenderer")
            .field("device", &self.rt.name)
            .finish()
    }
}

impl CudaRenderer {
    /// The first CUDA device. [`Error::NoGpu`](crate::Error::NoGpu) without a driver, a GPU,
    /// or a GPU the kernels support (compute capability 7.5 or newer); [`Error::Cuda`] when
    /// opening a usable GPU fails (e.g. out of memory).
    pub fn new() -> Result<Self> {
        Self::with_device(0)
    }

    /// CUDA device `ordinal`.
    pub fn with_device(ordinal: usize) -> Result<Self> {
        Ok(CudaRenderer {
            rt: Runtime::shared(ordinal)?,
        })
    }

    /// The device's name, e.g. "NVIDIA H100 80GB HBM3".
    pub fn device_name(&self) -> &str {
        &self.rt.name
    }

    /// The device's streaming multiprocessors.
    pub fn multiprocessors(&self) -> u32 {
        self.rt.multiprocessors
    }

    /// Device memory bandwidth in GB/s (bytes read plus bytes written) of `reps` device-to-device
    /// copies of `bytes` bytes: the ceiling for benchmarks. Diagnostic.
    #[doc(hidden)]
    pub fn measure_copy_bandwidth(&self, bytes: usize, reps: u32) -> Result<f64> {
        use cudarc::driver::sys::CUevent_flags;
        let s = &self.rt.stream;
        let err = driver_err("bandwidth measurement");
        let src = s
            .alloc_zeros::<u8>(bytes)
            .map_err(driver_err("GPU memory allocation"))?;
        let mut dst = s
            .alloc_zeros::<u8>(bytes)
            .map_err(driver_err("GPU memory allocation"))?;
        s.memcpy_dtod(&src, &mut dst).map_err(driver_err("copy"))?;
        let ev = || self.rt.ctx.new_event(Some(CUevent_flags::CU_EVENT_DEFAULT));
        let (a, b) = (
            ev().map_err(driver_err("event"))?,
            ev().map_err(driver_err("event"))?,
        );
        a.record(s).map_err(driver_err("event record"))?;
        for _ in 0..reps {
            s.memcpy_dtod(&src, &mut dst).map_err(driver_err("copy"))?;
        }
        b.record(s).map_err(driver_err("event record"))?;
        let ms = a.elapsed_ms(&b).map_err(err)? as f64;
        Ok(2.0 * bytes as f64 * reps as f64 / (ms * 1e-3) / 1e9)
    }

    /// Loads every kernel module (the renderer's and the refinement's) now rather than on first
    /// use: the driver compiles the PTX for this GPU when a module loads.
    pub fn preload(&self) -> Result<()> {
        for k in [
            super::kernels::Kernel::ProjectGaussians,
            super::kernels::Kernel::ScanBlocks,
            super::kernels::Kernel::Rasterize(0),
            super::kernels::Kernel::RefineForward(0),
        ] {
            self.rt.function(k)?;
        }
        Ok(())
    }

    unstable_pub! {
        /// Uploads a picture (`width × height`, `channels` values per pixel, rows top to bottom,
        /// values as the renderer produces them) for refinement on the device
        /// (`GpuRefiner::descend`).
        fn refiner(
            &self,
            width: u32,
            height: u32,
            channels: usize,
            target: &[f32],
        ) -> Result<super::GpuRefiner> {
            super::GpuRefiner::new(self.rt.clone(), width, height, channels, target)
        }
    }

    /// Copies `image`'s Gaussians to the device, once, for any number of renders.
    pub fn upload(&self, image: &SplatImage) -> Result<GpuImage> {
        let stream = self.rt.new_stream()?;
        let host: Vec<GaussianIn> = image.gaussians().iter().map(GaussianIn::from).collect();
        let gaussians = if host.is_empty() {
            // SAFETY: a one-element buffer no kernel reads (no Gaussians, no launch that does).
            unsafe { stream.alloc::<GaussianIn>(1) }
        } else {
            stream.clone_htod(&host)
        }
        .map_err(driver_err("uploading the Gaussians"))?;
        let ws = Workspace::new(&self.rt, stream)?;
        Ok(GpuImage {
            rt: self.rt.clone(),
            gaussians,
            n: host.len(),
            width: image.width(),
            height: image.height(),
            layout: image.layout(),
            ws,
            out: None,
        })
    }

    /// A `width × height` picture of `channels` samples per pixel on the device, for
    /// [`GpuImage::render_into`].
    pub fn alloc_frame<T: Sample>(
        &self,
        width: u32,
        height: u32,
        channels: usize,
    ) -> Result<DeviceFrame<T>> {
        if !(1..=4).contains(&channels) || width == 0 || height == 0 {
            return Err(Error::invalid(
                "device frame",
                format!("{width}x{height}x{channels}: sizes must be >= 1, channels 1 to 4"),
            ));
        }
        let pitch = width as u64 * channels as u64 * T::KIND.size() as u64;
        let bytes = pitch
            .checked_mul(height as u64)
            .filter(|b| *b <= isize::MAX as u64)
            .ok_or_else(|| Error::invalid("device frame", "too large"))?;
        // SAFETY: the frame's contents are undefined until a render writes them; download()
        // only copies bytes out, which is sound for u8 and f32 whatever they hold.
        let buf = unsafe { self.rt.stream.alloc::<u8>(bytes as usize) }
            .map_err(driver_err("GPU memory allocation"))?;
        // The allocation is stream-ordered: finish it before other streams use the frame.
        self.rt
            .stream
            .synchronize()
            .map_err(driver_err("GPU memory allocation"))?;
        Ok(DeviceFrame {
            buf,
            width,
            height,
            channels,
            pitch,
            rt: self.rt.clone(),
            _sample: PhantomData,
        })
    }

    /// An end-to-end decoder (`.gsi` bytes to RGBA8 in host memory) with its own stream and
    /// buffers.
    pub fn decoder(&self, limits: Limits) -> Result<CudaDecoder> {
        let stream = self.rt.new_stream()?;
        let ws = Workspace::new(&self.rt, stream.clone())?;
        Ok(CudaDecoder {
            rt: self.rt.clone(),
            stream,
            ws,
            limits,
            staging: None,
            gaussians: None,
            out_dev: None,
            out_host: None,
        })
    }
}

/// A picture on the device, written by [`GpuImage::render_into`]: rows of `pitch_bytes()`
/// bytes, `channels` interleaved samples per pixel.
pub struct DeviceFrame<T: Sample> {
    buf: CudaSlice<u8>,
    width: u32,
    height: u32,
    channels: usize,
    pitch: u64,
    rt: Arc<Runtime>,
    _sample: PhantomData<T>,
}

impl<T: Sample> DeviceFrame<T> {
    /// Width in pixels.
    pub fn width(&self) -> u32 {
        self.width
    }

    /// Height in pixels.
    pub fn height(&self) -> u32 {
        self.height
    }

    /// Samples per pixel.
    pub fn channels(&self) -> usize {
        self.channels
    }

    /// Bytes from one row to the next.
    pub fn pitch_bytes(&self) -> u64 {
        self.pitch
    }

    /// The device address of the first pixel (a `CUdeviceptr`), for interop with other CUDA
    /// code in the same context (e.g. a viewer's texture upload).
    pub fn device_ptr(&self) -> u64 {
        use cudarc::driver::DevicePtr;
        let (ptr, _sync) = self.buf.device_ptr(&self.rt.stream);
        ptr
    }

    /// Copies the picture to host memory.
    pub fn download(&self) -> Result<Frame<T>> {
        let len = self.width as usize * self.height as usize * self.channels;
        let mut data = vec![T::default(); len];
        download_into(&self.rt.stream, &self.buf, &mut data, None)?;
        self.rt
            .stream
            .synchronize()
            .map_err(driver_err("device-to-host copy"))?;
        Ok(Frame {
            width: self.width,
            height: self.height,
            layout: ChannelLayout::from_channels(self.channels).expect("checked by alloc_frame"),
            data,
        })
    }
}

/// Bytes per piece of a cancellable render's download: a 16384² RGB frame (768 MiB) takes a
/// few hundred milliseconds to copy to pageable host memory, longer than its rasterization, so
/// the flag is checked between pieces of 32 MiB (about 10 ms each).
const CANCEL_DOWNLOAD_BYTES: usize = 32 << 20;

/// Enqueues a copy of the first `data.len()` samples of `buf` into `data`. With `cancel`, copies
/// in pieces of [`CANCEL_DOWNLOAD_BYTES`], each waited for, and returns [`Error::Cancelled`]
/// between two pieces once the flag is set.
fn download_into<T: GpuSample>(
    stream: &Arc<CudaStream>,
    buf: &CudaSlice<u8>,
    data: &mut [T],
    cancel: Option<&AtomicBool>,
) -> Result<()> {
    let bytes = std::mem::size_of_val(data);
    // SAFETY: T is u8 or f32 (`Sample` is sealed): every byte pattern is a valid value, the
    // alignment of u8 is 1, and the byte view covers exactly `data`'s memory while `data` is
    // mutably borrowed.
    let dst = unsafe { std::slice::from_raw_parts_mut(data.as_mut_ptr() as *mut u8, bytes) };
    let piece = if cancel.is_some() {
        CANCEL_DOWNLOAD_BYTES
    } else {
        bytes
    };
    let mut start = 0;
    while start < bytes {
        let end = (start + piece).min(bytes);
        stream
            .memcpy_dtoh(&buf.slice(start..end), &mut dst[start..end])
            .map_err(driver_err("device-to-host copy"))?;
        start = end;
        if let Some(flag) = cancel {
            stream
                .synchronize()
                .map_err(driver_err("device-to-host copy"))?;
            if start < bytes && flag.load(std::sync::atomic::Ordering::Relaxed) {
                return Err(Error::Cancelled);
            }
        }
    }
    Ok(())
}

/// A [`SplatImage`] on the device, rendered at any size, zoom or region without re-uploading.
///
/// Renders run on the image's own stream and return when finished; the lists, counters and
/// output buffers of one render are reused by the next.
pub struct GpuImage {
    rt: Arc<Runtime>,
    gaussians: CudaSlice<GaussianIn>,
    n: usize,
    width: u32,
    height: u32,
    layout: ChannelLayout,
    ws: Workspace,
    /// Device output of host-frame renders.
    out: Option<CudaSlice<u8>>,
}

impl GpuImage {
    /// Native width.
    pub fn width(&self) -> u32 {
        self.width
    }

    /// Native height.
    pub fn height(&self) -> u32 {
        self.height
    }

    /// Channel layout.
    pub fn layout(&self) -> ChannelLayout {
        self.layout
    }

    /// Number of Gaussians.
    pub fn gaussian_count(&self) -> usize {
        self.n
    }

    /// Measures each render's device time into `RenderInfo::gpu_ms` (two CUDA events).
    #[cfg(feature = "unstable")]
    #[doc(hidden)]
    pub fn set_timing(&mut self, on: bool) -> Result<()> {
        self.ws.set_timing(&self.rt, on)
    }

    /// Renders `viewport` into a host frame with the image's channels, like
    /// [`render_cpu`](crate::render::render_cpu).
    pub fn render<T: Sample>(&mut self, viewport: &Viewport, limits: &Limits) -> Result<Frame<T>> {
        self.render_host(viewport, limits, false, None)
            .map(|(f, _)| f)
    }

    /// [`GpuImage::render`], stopped with [`Error::Cancelled`] soon after `cancel` is set from
    /// another thread: the tiles are rasterized in batches of about a megapixel, and the flag is
    /// checked between them.
    pub fn render_cancellable<T: Sample>(
        &mut self,
        viewport: &Viewport,
        limits: &Limits,
        cancel: &AtomicBool,
    ) -> Result<Frame<T>> {
        self.render_host(viewport, limits, false, Some(cancel))
            .map(|(f, _)| f)
    }

    /// Tiles per launch of [`GpuImage::render_cancellable`] (default 4,096 tiles of 16 × 16
    /// pixels): smaller batches cancel sooner. For tests on slow emulations of the device.
    #[doc(hidden)]
    pub fn set_cancel_batch_tiles(&mut self, tiles: u32) {
        self.ws.cancel_batch_tiles = tiles.max(1) as u64;
    }

    /// Renders `viewport` into a 4-channel host frame: gray is repeated into red, green and
    /// blue, and a missing alpha is 1.
    pub fn render_rgba<T: Sample>(
        &mut self,
        viewport: &Viewport,
        limits: &Limits,
    ) -> Result<Frame<T>> {
        self.render_host(viewport, limits, true, None)
            .map(|(f, _)| f)
    }

    /// [`GpuImage::render`], also returning what the render did.
    #[cfg(feature = "unstable")]
    #[doc(hidden)]
    pub fn render_with_info<T: Sample>(
        &mut self,
        viewport: &Viewport,
        limits: &Limits,
        rgba: bool,
    ) -> Result<(Frame<T>, RenderInfo)> {
        self.render_host(viewport, limits, rgba, None)
    }

    fn render_host<T: GpuSample>(
        &mut self,
        viewport: &Viewport,
        limits: &Limits,
        rgba: bool,
        cancel: Option<&AtomicBool>,
    ) -> Result<(Frame<T>, RenderInfo)> {
        let plan = Plan::new(self.n, (self.width, self.height), viewport, limits)?;
        let nc = self.layout.channels();
        let oc = if rgba { 4 } else { nc };
        let r = viewport.region;
        let pitch = r.width as u64 * oc as u64 * T::KIND.size() as u64;
        let bytes = pitch * r.height as u64;
        plan.check_memory(limits, 0, bytes)?;
        let len = r.pixels() as usize * oc;
        let mut data = vec![T::default(); len];
        let stream = self.ws.stream.clone();
        let out = ensure_bytes(&stream, &mut self.out, bytes)?;
        let info = self.ws.render(
            &self.rt,
            &self.gaussians,
            &plan,
            nc,
            limits,
            Target {
                buf: out,
                pitch,
                kind: T::KIND,
                expand_rgba: rgba,
            },
            cancel,
            |s, buf| download_into(s, buf, &mut data, cancel),
        )?;
        Ok((
            Frame {
                width: r.width,
                height: r.height,
                layout: if rgba {
                    ChannelLayout::Rgba
                } else {
                    self.layout
                },
                data,
            },
            info,
        ))
    }

    /// Renders `viewport` into `frame`, which stays on the device. The frame must be the size of
    /// the viewport's region, with the image's channel count or 4 (RGBA, as
    /// [`GpuImage::render_rgba`]).
    pub fn render_into<T: Sample>(
        &mut self,
        viewport: &Viewport,
        limits: &Limits,
        frame: &mut DeviceFrame<T>,
    ) -> Result<RenderInfo> {
        let plan = Plan::new(self.n, (self.width, self.height), viewport, limits)?;
        let nc = self.layout.channels();
        let r = viewport.region;
        if frame.width != r.width || frame.height != r.height {
            return Err(Error::invalid(
                "device frame",
                format!(
                    "{}x{} for a {}x{} region",
                    frame.width, frame.height, r.width, r.height
                ),
            ));
        }
        if frame.channels != nc && frame.channels != 4 {
            return Err(Error::invalid(
                "device frame",
                format!(
                    "{} channels for an image of {nc} (use {nc} or 4)",
                    frame.channels
                ),
            ));
        }
        if !Arc::ptr_eq(&frame.rt, &self.rt) {
            return Err(Error::invalid("device frame", "allocated on another GPU"));
        }
        let rgba = frame.channels == 4 && nc != 4;
        self.ws.render(
            &self.rt,
            &self.gaussians,
            &plan,
            nc,
            limits,
            Target {
                buf: &mut frame.buf,
                pitch: frame.pitch,
                kind: T::KIND,
                expand_rgba: rgba,
            },
            None,
            |_, _| Ok(()),
        )
    }
}

/// Allocates a byte buffer anew when `buf` is shorter than `len`.
fn ensure_bytes<'a>(
    stream: &Arc<CudaStream>,
    buf: &'a mut Option<CudaSlice<u8>>,
    len: u64,
) -> Result<&'a mut CudaSlice<u8>> {
    let len = len.max(1) as usize;
    if buf.as_ref().is_none_or(|b| b.len() < len) {
        *buf = None;
        // SAFETY: output bytes are written by the rasterizer before they are copied out.
        *buf =
            Some(unsafe { stream.alloc::<u8>(len) }.map_err(driver_err("GPU memory allocation"))?);
    }
    Ok(buf.as_mut().expect("allocated above"))
}

/// `.gsi` bytes in host memory to RGBA8 in host memory, on one stream with buffers reused from
/// one file to the next: the file is parsed and entropy-decoded on the CPU
/// ([`format::read`](crate::format::read)), its Gaussians copied through page-locked memory,
/// rendered, and the pixels copied back into page-locked memory the returned frame borrows.
/// For throughput, run one decoder per CPU thread: their streams overlap on the device.
pub struct CudaDecoder {
    rt: Arc<Runtime>,
    stream: Arc<CudaStream>,
    ws: Workspace,
    limits: Limits,
    staging: Option<PinnedHostSlice<GaussianIn>>,
    gaussians: Option<CudaSlice<GaussianIn>>,
    out_dev: Option<CudaSlice<u8>>,
    out_host: Option<PinnedHostSlice<u8>>,
}

impl CudaDecoder {
    /// Decodes `gsi` and renders it at `viewport` (the native size when `None`) as RGBA8.
    pub fn decode_rgba8(
        &mut self,
        gsi: &[u8],
        viewport: Option<Viewport>,
    ) -> Result<HostFrame<'_>> {
        let file = crate::format::read(gsi, &self.limits)?;
        let view = viewport.unwrap_or(Viewport::full(file.image.width(), file.image.height()));
        self.render_rgba8(&file.image, &view)
    }

    /// Renders an already decoded image as RGBA8 through the decoder's buffers.
    pub fn render_rgba8(&mut self, image: &SplatImage, view: &Viewport) -> Result<HostFrame<'_>> {
        let limits = self.limits;
        let plan = Plan::new(
            image.gaussian_count(),
            (image.width(), image.height()),
            view,
            &limits,
        )?;
        let r = view.region;
        let pitch = r.width as u64 * 4;
        let bytes = pitch * r.height as u64;
        plan.check_memory(&limits, 0, bytes)?;
        // Gaussians: host -> page-locked staging -> device.
        let n = image.gaussian_count().max(1);
        if self.staging.as_ref().is_none_or(|s| s.len() < n) {
            self.staging = None;
            let len = n + n / 4;
            // SAFETY: page-locked, write-combined host memory (fast to fill sequentially and to
            // copy to the device); it is filled below before the copy that reads it.
            self.staging = Some(
                unsafe { self.rt.ctx.alloc_pinned::<GaussianIn>(len) }
                    .map_err(driver_err("pinned host allocation"))?,
            );
        }
        let staging = self.staging.as_mut().expect("allocated above");
        {
            let dst = staging
                .as_mut_slice()
                .map_err(driver_err("pinned host memory"))?;
            for (d, g) in dst.iter_mut().zip(image.gaussians()) {
                *d = GaussianIn::from(g);
            }
        }
        let dev = ensure_gaussians(&self.stream, &mut self.gaussians, n)?;
        // A plain slice of the page-locked buffer: the driver still copies it by DMA,
        // asynchronously; the buffer is not touched again before the render is waited for.
        let src = &staging
            .as_slice()
            .map_err(driver_err("pinned host memory"))?[..n];
        self.stream
            .memcpy_htod(src, &mut dev.slice_mut(..n))
            .map_err(driver_err("host-to-device copy"))?;
        let out_dev = ensure_bytes(&self.stream, &mut self.out_dev, bytes)?;
        if self
            .out_host
            .as_ref()
            .is_none_or(|h| (h.len() as u64) < bytes)
        {
            self.out_host = None;
            // SAFETY: page-locked host memory (flags 0: cached, fast for the CPU to read), read
            // only after the device-to-host copy into it completed.
            self.out_host = Some(
                unsafe { self.rt.ctx.alloc_pinned_with_flags::<u8>(bytes as usize, 0) }
                    .map_err(driver_err("pinned host allocation"))?,
            );
        }
        let host = self.out_host.as_mut().expect("allocated above");
        let nc = image.layout().channels();
        self.ws.render(
            &self.rt,
            dev,
            &plan,
            nc,
            &limits,
            Target {
                buf: out_dev,
                pitch,
                kind: super::SampleKind::U8,
                expand_rgba: nc != 4,
            },
            None,
            |s, buf| {
                s.memcpy_dtoh(&buf.slice(..bytes as usize), host)
                    .map_err(driver_err("device-to-host copy"))
            },
        )?;
        let data = self
            .out_host
            .as_ref()
            .expect("allocated above")
            .as_slice()
            .map_err(driver_err("pinned host memory"))?;
        Ok(HostFrame {
            width: r.width,
            height: r.height,
            channels: 4,
            data: &data[..bytes as usize],
        })
    }
}

fn ensure_gaussians<'a>(
    stream: &Arc<CudaStream>,
    buf: &'a mut Option<CudaSlice<GaussianIn>>,
    n: usize,
) -> Result<&'a mut CudaSlice<GaussianIn>> {
    if buf.as_ref().is_none_or(|b| b.len() < n) {
        *buf = None;
        // SAFETY: written by the upload that follows before any kernel reads it.
        *buf = Some(
            unsafe { stream.alloc::<GaussianIn>(n + n / 4) }
                .map_err(driver_err("GPU memory allocation"))?,
        );
    }
    Ok(buf.as_mut().expect("allocated above"))
}
