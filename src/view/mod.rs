//! The viewer's API: open a `.gsi` file, ask for the size you will show, get pixels.
//!
//! A `.gsi` picture has no pixel grid: a viewer asks for the size it will display (a fit into
//! its window, or the visible rectangle of a zoomed view) and the picture is rendered sharp at
//! that size, into the viewer's own buffer, in the pixel format its toolkit draws.
//!
//! ```no_run
//! # fn main() -> gsimg::Result<()> {
//! use gsimg::view::{Decoder, PixelFormat, fit_size};
//! let mut dec = Decoder::open("photo.gsi", gsimg::Limits::default())?;
//! let info = dec.info();
//! let (w, h) = fit_size(info.width, info.height, 1920, 1080)?; // as `gsimg decode` sizes it
//! let stride = PixelFormat::Rgba8.min_stride(w).unwrap();
//! let mut pixels = vec![0u8; stride * h as usize];
//! dec.render(w, h, PixelFormat::Rgba8, &mut pixels, stride)?;
//! # Ok(()) }
//! ```
//!
//! - [`Decoder`]: open from bytes, a reader or a path, with [`Limits`]; the picture's
//!   [`Info`]; renders of the whole picture or of a region of a zoomed view into a caller's
//!   buffer ([`PixelFormat`], any stride), on the CPU or a CUDA GPU ([`Backend`]), cancellable
//!   from another thread ([`CancelHandle`]).
//! - [`Renderer`]: the backend choice and the GPU→CPU fallback policy, for callers that hold a
//!   [`SplatImage`] themselves (the upscaler).
//! - [`fit_size`], [`fit_within`], [`zoomed_region`]: the sizes a viewer asks for.
//! - [`orient_frame`], [`oriented_size`]: the file's EXIF orientation, which renders leave to
//!   the caller.
//! - [`upscale`]: a raster picture to any larger size through the upscale network.
//!
//! The library never prints: a fallback from the GPU to the CPU is reported in each render's
//! [`Rendered`] and to an optional callback ([`Decoder::on_fallback`]).

mod decoder;
mod pixels;
mod upscale;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::cuda::{CudaRenderer, GpuImage};
use crate::render::{self, RenderOptions};
use crate::{Error, Limits, Result, SplatImage};
use crate::{Frame, Region, Sample, Viewport};

pub use decoder::{Decoder, Info};
pub use pixels::{PixelFormat, premultiply, required_len};
pub use upscale::{ENSEMBLE_PASSES, UpscaleOptions, Upscaled, upscale};

/// Where renders run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Backend {
    /// The CUDA renderer when a GPU and driver are usable, else the CPU; a GPU failure during
    /// a render redoes that render on the CPU. Each fallback is reported ([`Fallback`]).
    #[default]
    Auto,
    /// The CPU reference renderer.
    Cpu,
    /// The CUDA renderer; an error ([`Error::NoGpu`] or [`Error::Cuda`]) when it is
    /// unavailable or fails.
    Cuda,
}

/// Where a render ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Device {
    /// The CPU renderer.
    Cpu,
    /// A CUDA GPU.
    Cuda,
}

impl std::fmt::Display for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Device::Cpu => "the CPU",
            Device::Cuda => "the GPU",
        })
    }
}

/// Why [`Backend::Auto`] rendered on the CPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FallbackKind {
    /// No usable GPU (no driver, no device, or gsimg built without CUDA): not a fault.
    NoGpu,
    /// A GPU is there but could not be set up.
    GpuSetup,
    /// A render failed on the GPU and was redone on the CPU.
    GpuRender,
}

/// A fallback of [`Backend::Auto`] from the GPU to the CPU, with the GPU's error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fallback {
    /// What happened.
    pub kind: FallbackKind,
    /// The GPU's error message.
    pub reason: String,
}

impl std::fmt::Display for Fallback {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let r = &self.reason;
        match self.kind {
            FallbackKind::NoGpu => write!(f, "rendering on the CPU ({r})"),
            FallbackKind::GpuSetup => {
                write!(f, "the GPU could not be set up ({r}); rendering on the CPU")
            }
            FallbackKind::GpuRender => {
                write!(f, "the GPU render failed ({r}); rendering on the CPU")
            }
        }
    }
}

/// What a render did besides its pixels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    /// Where it ran.
    pub device: Device,
    /// Set when [`Backend::Auto`] fell back to the CPU for this render, or when the renderer
    /// was set up for it and found no usable GPU.
    pub fallback: Option<Fallback>,
}

/// A callback told of each fallback to the CPU as it happens (on the rendering thread).
pub type FallbackCallback = Box<dyn Fn(&Fallback) + Send + Sync>;

/// A handle that cancels a [`Decoder`]'s render in progress from any thread: the render then
/// returns [`Error::Cancelled`]. A render clears the flag when it starts, so a cancel reaches
/// only the render in progress, never a later one.
#[derive(Debug, Clone, Default)]
pub struct CancelHandle(Arc<AtomicBool>);

impl CancelHandle {
    /// Stops the render in progress soon: on the CPU within one tile of 64 × 32 pixels; on a
    /// GPU within the two batches of about a megapixel each that may be queued on the device
    /// (a render of less finishes and is then discarded).
    pub fn cancel(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    /// Whether a cancel is pending.
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    pub(crate) fn flag(&self) -> &AtomicBool {
        &self.0
    }

    pub(crate) fn clear(&self) {
        self.0.store(false, Ordering::Relaxed);
    }
}

/// The backend of renders, set up once for any number of them: the GPU is opened once, and
/// [`Backend::Auto`] without one renders on the CPU.
pub struct Renderer {
    backend: Backend,
    gpu: Option<CudaRenderer>,
    setup_fallback: Option<Fallback>,
}

impl std::fmt::Debug for Renderer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Renderer")
            .field("backend", &self.backend)
            .field("gpu", &self.gpu.is_some())
            .field("setup_fallback", &self.setup_fallback)
            .finish()
    }
}

impl Renderer {
    /// Sets up `backend`: [`Backend::Cuda`] fails without a usable GPU; [`Backend::Auto`]
    /// then renders on the CPU and says why in [`Renderer::setup_fallback`].
    pub fn new(backend: Backend) -> Result<Renderer> {
        let (gpu, setup_fallback) = match backend {
            Backend::Cpu => (None, None),
            Backend::Cuda => (Some(CudaRenderer::new()?), None),
            Backend::Auto => match CudaRenderer::new() {
                Ok(gpu) => (Some(gpu), None),
                Err(e) => {
                    let kind = if matches!(e, Error::NoGpu(_)) {
                        FallbackKind::NoGpu
                    } else {
                        FallbackKind::GpuSetup
                    };
                    let reason = e.to_string();
                    (None, Some(Fallback { kind, reason }))
                }
            },
        };
        Ok(Renderer {
            backend,
            gpu,
            setup_fallback,
        })
    }

    /// The backend asked for.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Where renders go (unless a GPU failure falls back).
    pub fn device(&self) -> Device {
        if self.gpu.is_some() {
            Device::Cuda
        } else {
            Device::Cpu
        }
    }

    /// Why [`Backend::Auto`] found no usable GPU when it was set up, if it did not.
    pub fn setup_fallback(&self) -> Option<&Fallback> {
        self.setup_fallback.as_ref()
    }

    /// Renders `view` of `image` in its own channels (1–4), as [`render::render_cpu`] does.
    /// On the GPU the picture is uploaded for this render only.
    pub fn render<T: Sample>(
        &self,
        image: &SplatImage,
        view: &Viewport,
        limits: &Limits,
        cancel: Option<&AtomicBool>,
    ) -> Result<(Frame<T>, Rendered)> {
        self.render_cached(image, &mut None, view, limits, cancel)
    }

    /// [`Renderer::render`], keeping the GPU upload of `image` in `upload` for the next render
    /// of the same picture (the caller drops `upload` when the picture changes).
    pub(crate) fn render_cached<T: Sample>(
        &self,
        image: &SplatImage,
        upload: &mut Option<GpuImage>,
        view: &Viewport,
        limits: &Limits,
        cancel: Option<&AtomicBool>,
    ) -> Result<(Frame<T>, Rendered)> {
        let on_cpu = |fallback| -> Result<(Frame<T>, Rendered)> {
            let frame = render::render_cpu_with(image, view, limits, &RenderOptions { cancel })?;
            Ok((
                frame,
                Rendered {
                    device: Device::Cpu,
                    fallback,
                },
            ))
        };
        let Some(gpu) = &self.gpu else {
            return on_cpu(None);
        };
        let mut on_gpu = || -> Result<Frame<T>> {
            if upload.is_none() {
                *upload = Some(gpu.upload(image)?);
            }
            let gpu_image = upload.as_mut().expect("uploaded above");
            match cancel {
                Some(c) => gpu_image.render_cancellable(view, limits, c),
                None => gpu_image.render(view, limits),
            }
        };
        match (self.backend, on_gpu()) {
            (_, Ok(frame)) => {
                // A cancel during the last batches of tiles discards the finished result.
                if cancel.is_some_and(|c| c.load(Ordering::Relaxed)) {
                    return Err(Error::Cancelled);
                }
                Ok((
                    frame,
                    Rendered {
                        device: Device::Cuda,
                        fallback: None,
                    },
                ))
            }
            // A cancel is no GPU fault: no fallback to the CPU.
            (_, Err(Error::Cancelled)) => Err(Error::Cancelled),
            (Backend::Auto, Err(e)) => match e {
                // Requests the CPU would refuse too: report them as they are.
                Error::InvalidParameter { .. } => Err(e),
                Error::LimitsExceeded { what, .. } if !what.contains("GPU") => Err(e),
                e => {
                    *upload = None;
                    on_cpu(Some(Fallback {
                        kind: FallbackKind::GpuRender,
                        reason: e.to_string(),
                    }))
                }
            },
            (_, Err(e)) => Err(e),
        }
    }
}

/// `other × new / old`, rounded, at least 1 (the side that follows the aspect ratio).
fn aspect(other: u32, new: u32, old: u32) -> Result<u32> {
    let v = (other as f64 * new as f64 / old.max(1) as f64)
        .round()
        .max(1.0);
    if v > u32::MAX as f64 {
        return Err(Error::invalid(
            "output size",
            format!("{new} gives an aspect-preserving size over 2^32"),
        ));
    }
    Ok(v as u32)
}

/// The size of a `width × height` picture shown within `max_w × max_h`, keeping its aspect
/// ratio: `gsimg decode --width max_w` if that fits `max_h`, else `gsimg decode --height
/// max_h` (the free side is `other × new / old`, rounded, at least 1). A max of 0 leaves that
/// side free; both 0 give the native size. The result may be larger than the native size: the
/// picture renders sharp at any size.
pub fn fit_size(width: u32, height: u32, max_w: u32, max_h: u32) -> Result<(u32, u32)> {
    if width == 0 || height == 0 {
        return Err(Error::invalid(
            "picture size",
            format!("{width}x{height}: both must be at least 1"),
        ));
    }
    Ok(match (max_w, max_h) {
        (0, 0) => (width, height),
        (w, 0) => (w, aspect(height, w, width)?),
        (0, h) => (aspect(width, h, height)?, h),
        (w, h) => {
            let by_width = aspect(height, w, width)?;
            if by_width <= h {
                (w, by_width)
            } else {
                (aspect(width, h, height)?, h)
            }
        }
    })
}

/// The whole picture at [`fit_size`].
pub fn fit_within(width: u32, height: u32, max_w: u32, max_h: u32) -> Result<Viewport> {
    let (w, h) = fit_size(width, height, max_w, max_h)?;
    Ok(Viewport::full(w, h))
}

/// The rectangle `region` of the picture zoomed to `full_w × full_h` (a viewer's visible part
/// of a zoomed view), checked to lie inside it.
pub fn zoomed_region(full_w: u32, full_h: u32, region: Region) -> Result<Viewport> {
    let view = Viewport::full(full_w, full_h).with_region(region);
    view.validate(&Limits::unlimited())?;
    Ok(view)
}

/// The size a `width × height` render has once EXIF `orientation` (1 to 8) is applied:
/// orientations 5 to 8 swap the sides.
pub fn oriented_size(width: u32, height: u32, orientation: u8) -> (u32, u32) {
    if (5..=8).contains(&orientation) {
        (height, width)
    } else {
        (width, height)
    }
}

/// Applies EXIF `orientation` (1 to 8; others leave the frame as it is) to a rendered frame:
/// what a viewer shows. Renders are in the stored orientation.
pub fn orient_frame<T: Copy>(frame: Frame<T>, orientation: u8) -> Frame<T> {
    if !(2..=8).contains(&orientation) {
        return frame;
    }
    let (w, h, c) = (
        frame.width as usize,
        frame.height as usize,
        frame.channels(),
    );
    let (ow, oh) = oriented_size(frame.width, frame.height, orientation);
    let mut data = Vec::with_capacity(frame.data.len());
    // For each output pixel (x, y), the source pixel it shows.
    let src = |x: usize, y: usize| -> (usize, usize) {
        match orientation {
            2 => (w - 1 - x, y),         // mirrored horizontally
            3 => (w - 1 - x, h - 1 - y), // rotated 180°
            4 => (x, h - 1 - y),         // mirrored vertically
            5 => (y, x),                 // transposed
            6 => (y, h - 1 - x),         // rotated 90° clockwise
            7 => (w - 1 - y, h - 1 - x), // transversed
            _ => (w - 1 - y, x),         // 8: rotated 90° counter-clockwise
        }
    };
    for y in 0..oh as usize {
        for x in 0..ow as usize {
            let (sx, sy) = src(x, y);
            let i = (sy * w + sx) * c;
            data.extend_from_slice(&frame.data[i..i + c]);
        }
    }
    Frame {
        width: ow,
        height: oh,
        layout: frame.layout,
        data,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fit_size_follows_the_limiting_side() {
        assert_eq!(fit_size(768, 512, 0, 0).unwrap(), (768, 512));
        assert_eq!(fit_size(768, 512, 300, 0).unwrap(), (300, 200));
        assert_eq!(fit_size(768, 512, 0, 100).unwrap(), (150, 100));
        assert_eq!(fit_size(768, 512, 300, 100).unwrap(), (150, 100));
        assert_eq!(fit_size(768, 512, 300, 1000).unwrap(), (300, 200));
        assert_eq!(fit_size(768, 512, 3000, 3000).unwrap(), (3000, 2000));
        assert_eq!(fit_size(1000, 1, 10, 0).unwrap(), (10, 1));
        assert!(fit_size(0, 5, 1, 1).is_err());
        assert!(fit_size(1, u32::MAX, u32::MAX, 0).is_err());
    }

    #[test]
    fn zoomed_region_is_checked() {
        let r = |x, y, width, height| Region {
            x,
            y,
            width,
            height,
        };
        assert!(zoomed_region(100, 50, r(90, 40, 10, 10)).is_ok());
        assert!(zoomed_region(100, 50, r(91, 40, 10, 10)).is_err());
        assert!(zoomed_region(100, 50, r(0, 0, 0, 10)).is_err());
    }

    /// Each orientation against the `image` crate's (the CLI's `decode` used it).
    #[test]
    fn orientation_matches_the_image_crate() {
        use image::metadata::Orientation;
        let (w, h) = (5u32, 3u32);
        let data: Vec<u8> = (0..w * h * 3).map(|i| i as u8).collect();
        for o in 1..=8u8 {
            let frame = Frame {
                width: w,
                height: h,
                layout: crate::ChannelLayout::Rgb,
                data: data.clone(),
            };
            let ours = orient_frame(frame, o);
            let mut img: image::DynamicImage = image::RgbImage::from_raw(w, h, data.clone())
                .unwrap()
                .into();
            img.apply_orientation(Orientation::from_exif(o).unwrap());
            assert_eq!(
                (ours.width, ours.height),
                (img.width(), img.height()),
                "{o}"
            );
            assert_eq!(ours.data, img.to_rgb8().into_raw(), "orientation {o}");
        }
    }
}
