//! Rendering a [`SplatImage`] at any output size, scale or region.
//!
//! A render is described by a [`Viewport`]: the size of a virtual full output (the whole image
//! scaled to `width × height`, x and y scales independent) and the rectangle of it to produce.
//! The region of a render is bit-for-bit the same as the same rectangle cropped from the full
//! render. `format-spec.md` §3 is the normative rule; [`project`] holds the per-Gaussian math.

mod cpu;
mod fastexp;
pub use crate::core::geometry as project;

use crate::core::splat::SplatImage;
use crate::{Error, Limits, Result};

pub use cpu::{render_cpu, render_cpu_with};
pub(crate) use fastexp::exp_neg_half;

/// Options of a render beyond what and how much ([`render_cpu_with`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct RenderOptions<'a> {
    /// Set from any thread to stop the render soon (a viewer that no longer needs it): the
    /// render then returns [`Error::Cancelled`]. Checked before every tile of pixels.
    pub cancel: Option<&'a std::sync::atomic::AtomicBool>,
}

/// A rectangle of output pixels: columns `x .. x + width`, rows `y .. y + height`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Region {
    /// Left column.
    pub x: u32,
    /// Top row.
    pub y: u32,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
}

impl Region {
    /// Number of pixels.
    pub fn pixels(&self) -> u64 {
        self.width as u64 * self.height as u64
    }
}

/// What to render: the full output size the image is scaled to, and the part of it to produce.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Viewport {
    /// Width of the virtual full output, in pixels.
    pub width: u32,
    /// Height of the virtual full output, in pixels.
    pub height: u32,
    /// The rectangle of the full output to render.
    pub region: Region,
}

impl Viewport {
    /// The whole image at `width × height`.
    pub fn full(width: u32, height: u32) -> Self {
        Viewport {
            width,
            height,
            region: Region {
                x: 0,
                y: 0,
                width,
                height,
            },
        }
    }

    /// The whole image scaled by `scale` (rounded to whole pixels, at least 1).
    pub fn scaled(native_width: u32, native_height: u32, scale: f64) -> Result<Self> {
        Self::scaled_xy(native_width, native_height, scale, scale)
    }

    /// The whole image scaled by `sx` horizontally and `sy` vertically.
    pub fn scaled_xy(native_width: u32, native_height: u32, sx: f64, sy: f64) -> Result<Self> {
        let dim = |n: u32, s: f64, name| {
            if !(s.is_finite() && s > 0.0) {
                return Err(Error::invalid(
                    name,
                    format!("{s} must be a positive finite number"),
                ));
            }
            let v = (n as f64 * s).round().max(1.0);
            if v > u32::MAX as f64 {
                return Err(Error::invalid(
                    name,
                    format!("{s} gives an output over 2^32 pixels wide"),
                ));
            }
            Ok(v as u32)
        };
        Ok(Self::full(
            dim(native_width, sx, "scale")?,
            dim(native_height, sy, "scale")?,
        ))
    }

    /// The same full output, restricted to `region`.
    pub fn with_region(mut self, region: Region) -> Self {
        self.region = region;
        self
    }

    /// Checks the viewport against the image and the limits.
    pub fn validate(&self, limits: &Limits) -> Result<()> {
        if self.width == 0 || self.height == 0 {
            return Err(Error::invalid(
                "output size",
                format!("{}x{}: both must be at least 1", self.width, self.height),
            ));
        }
        let r = &self.region;
        if r.width == 0 || r.height == 0 {
            return Err(Error::invalid(
                "region",
                format!("{}x{}: empty", r.width, r.height),
            ));
        }
        if r.x as u64 + r.width as u64 > self.width as u64
            || r.y as u64 + r.height as u64 > self.height as u64
        {
            return Err(Error::invalid(
                "region",
                format!(
                    "{},{} {}x{} reaches outside the {}x{} output",
                    r.x, r.y, r.width, r.height, self.width, self.height
                ),
            ));
        }
        limits.check(
            "output width",
            self.width as u64,
            limits.max_output_dimension as u64,
        )?;
        limits.check(
            "output height",
            self.height as u64,
            limits.max_output_dimension as u64,
        )?;
        limits.check("output pixel count", r.pixels(), limits.max_output_pixels)?;
        Ok(())
    }

    /// Horizontal and vertical scale factors from `image`'s native size.
    pub fn scale_factors(&self, image: &SplatImage) -> (f64, f64) {
        (
            self.width as f64 / image.width() as f64,
            self.height as f64 / image.height() as f64,
        )
    }
}

/// A rendered picture: `width × height` pixels of `channels` interleaved samples, rows top to
/// bottom, no padding.
#[derive(Debug, Clone, PartialEq)]
pub struct Frame<T> {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Samples per pixel (1 to 4, the image's [`ChannelLayout`](crate::ChannelLayout) order).
    pub channels: usize,
    /// `width * height * channels` samples.
    pub data: Vec<T>,
}

/// The mean of several float renders of one region (the upscaler's geometric self-ensemble,
/// `crate::encode::symmetry`): add each render, then take the mean in any sample type.
#[derive(Debug, Clone)]
pub struct FrameMean {
    sum: Frame<f32>,
    count: u32,
}

impl FrameMean {
    /// An empty mean for `width × height` renders of `channels` samples. The sum (one f32 per
    /// sample) and one float render beside it count against `limits.max_memory_bytes`.
    pub fn new(width: u32, height: u32, channels: usize, limits: &Limits) -> Result<FrameMean> {
        let bytes = 2 * width as u64 * height as u64 * channels as u64 * 4;
        limits.check(
            "averaged render memory (bytes)",
            bytes,
            limits.max_memory_bytes,
        )?;
        Ok(FrameMean {
            sum: Frame {
                width,
                height,
                channels,
                data: vec![0.0; width as usize * height as usize * channels],
            },
            count: 0,
        })
    }

    /// Adds a render of the same size.
    pub fn add(&mut self, frame: &Frame<f32>) -> Result<()> {
        let s = &self.sum;
        if (frame.width, frame.height, frame.channels) != (s.width, s.height, s.channels) {
            return Err(Error::invalid(
                "render to average",
                format!(
                    "{}x{} with {} channels, {}x{} with {} expected",
                    frame.width, frame.height, frame.channels, s.width, s.height, s.channels
                ),
            ));
        }
        for (a, &b) in self.sum.data.iter_mut().zip(&frame.data) {
            *a += b;
        }
        self.count += 1;
        Ok(())
    }

    /// Renders added so far.
    pub fn count(&self) -> u32 {
        self.count
    }

    /// The mean, converted as a render would be (§3.5 for 8 bits); zeros if nothing was added.
    pub fn mean<T: Sample>(&self) -> Frame<T> {
        let k = 1.0 / self.count.max(1) as f32;
        Frame {
            width: self.sum.width,
            height: self.sum.height,
            channels: self.sum.channels,
            data: self
                .sum
                .data
                .iter()
                .map(|&v| T::from_value(v * k))
                .collect(),
        }
    }
}

/// An output sample type: f32 in [0, 1] before clamping, or u8.
pub trait Sample: Copy + Default + Send + Sync + 'static {
    /// Converts a blended channel value (§3.4) to this type (§3.5 for 8-bit).
    fn from_value(v: f32) -> Self;
}

impl Sample for f32 {
    #[inline]
    fn from_value(v: f32) -> Self {
        v
    }
}

impl Sample for u8 {
    #[inline(always)]
    fn from_value(v: f32) -> Self {
        // §3.5: floor(clamp(v, 0, 1) · 255 + ½). `max`/`min` return the other operand for NaN, so
        // `x` is in [0.5, 255.5] whatever `v` is.
        #[allow(clippy::manual_clamp)] // `clamp` would keep NaN; this cannot produce it.
        let x = v.max(0.0).min(1.0) * 255.0 + 0.5;
        // SAFETY: x is finite and in [0.5, 255.5], so truncation fits a u8. (The checked `as`
        // cast would block vectorization of the store loop.)
        unsafe { x.to_int_unchecked::<u8>() }
    }
}
