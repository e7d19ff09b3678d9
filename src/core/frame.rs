//! The pixel buffer: [`Frame`], a picture in memory in any sample type (`u8` or `f32`) and
//! channel layout: what a render produces and what an encoder reads.

use super::splat::ChannelLayout;
use crate::{Error, Limits, Result};

/// A picture in memory: `width × height` pixels of the layout's channels, interleaved, rows top
/// to bottom, no padding. Renders produce it (`u8` per §3.5, or `f32` before clamping), and the
/// encoders read it as `Frame<f32>` with values in [0, 1] (sRGB-encoded values as stored, not
/// linearized).
#[derive(Debug, Clone, PartialEq)]
pub struct Frame<T> {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// The channels of each pixel, in this order (gray, gray + alpha, RGB or RGBA).
    pub layout: ChannelLayout,
    /// `width * height * channels` samples.
    pub data: Vec<T>,
}

impl<T> Frame<T> {
    /// Samples per pixel (1 to 4).
    pub fn channels(&self) -> usize {
        self.layout.channels()
    }

    /// Checks that the size is not empty and that the buffer holds `width * height * channels`
    /// samples.
    pub fn validate(&self) -> Result<()> {
        if self.width == 0 || self.height == 0 {
            return Err(Error::invalid(
                "image size",
                format!("{}x{}", self.width, self.height),
            ));
        }
        let n = self.width as usize * self.height as usize * self.channels();
        if self.data.len() != n {
            return Err(Error::invalid(
                "pixel buffer",
                format!("{} values, {n} expected", self.data.len()),
            ));
        }
        Ok(())
    }
}

impl Frame<f32> {
    /// A picture from 8-bit samples (each divided by 255).
    pub fn from_u8(width: u32, height: u32, layout: ChannelLayout, samples: &[u8]) -> Result<Self> {
        let p = Frame {
            width,
            height,
            layout,
            data: samples.iter().map(|&v| v as f32 / 255.0).collect(),
        };
        p.validate()?;
        Ok(p)
    }

    /// The picture in 8-bit samples (§3.5 rounding).
    pub fn to_u8(&self) -> Frame<u8> {
        Frame {
            width: self.width,
            height: self.height,
            layout: self.layout,
            data: self
                .data
                .iter()
                .map(|&v| <u8 as Sample>::from_value(v))
                .collect(),
        }
    }

    /// The picture with its channels converted to `layout` (gray ↔ RGB by BT.601 luma, alpha
    /// added as opaque or dropped).
    pub fn to_layout(&self, layout: ChannelLayout) -> Frame<f32> {
        if layout == self.layout {
            return self.clone();
        }
        let (ci, co) = (self.channels(), layout.channels());
        let mut data = Vec::with_capacity(self.width as usize * self.height as usize * co);
        for px in self.data.chunks_exact(ci) {
            let (color, alpha): ([f32; 3], f32) = match self.layout {
                ChannelLayout::Gray => ([px[0]; 3], 1.0),
                ChannelLayout::GrayAlpha => ([px[0]; 3], px[1]),
                ChannelLayout::Rgb => ([px[0], px[1], px[2]], 1.0),
                ChannelLayout::Rgba => ([px[0], px[1], px[2]], px[3]),
            };
            let luma = 0.299 * color[0] + 0.587 * color[1] + 0.114 * color[2];
            match layout {
                ChannelLayout::Gray => data.push(luma),
                ChannelLayout::GrayAlpha => data.extend([luma, alpha]),
                ChannelLayout::Rgb => data.extend(color),
                ChannelLayout::Rgba => data.extend([color[0], color[1], color[2], alpha]),
            }
        }
        Frame {
            width: self.width,
            height: self.height,
            layout,
            data,
        }
    }
}

/// The mean of several float renders of one region (the upscaler's geometric self-ensemble,
/// `crate::encode::optim::symmetry`): add each render, then take the mean in any sample type.
#[derive(Debug, Clone)]
pub struct FrameMean {
    sum: Frame<f32>,
    count: u32,
}

impl FrameMean {
    /// An empty mean for `width × height` renders in `layout`. The sum (one f32 per sample) and
    /// one float render beside it count against `limits.max_memory_bytes`.
    pub fn new(
        width: u32,
        height: u32,
        layout: ChannelLayout,
        limits: &Limits,
    ) -> Result<FrameMean> {
        let channels = layout.channels();
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
                layout,
                data: vec![0.0; width as usize * height as usize * channels],
            },
            count: 0,
        })
    }

    /// Adds a render of the same size.
    pub fn add(&mut self, frame: &Frame<f32>) -> Result<()> {
        let s = &self.sum;
        if (frame.width, frame.height, frame.layout) != (s.width, s.height, s.layout) {
            return Err(Error::invalid(
                "render to average",
                format!(
                    "{}x{} with {} channels, {}x{} with {} expected",
                    frame.width,
                    frame.height,
                    frame.channels(),
                    s.width,
                    s.height,
                    s.channels()
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
            layout: self.sum.layout,
            data: self
                .sum
                .data
                .iter()
                .map(|&v| T::from_value(v * k))
                .collect(),
        }
    }
}

/// A sample type of a [`Frame`]: `u8` (§3.5), or `f32` (in [0, 1] for pictures; renders before
/// clamping). Sealed: the renderers, the GPU's included, write these two types only.
pub trait Sample: Copy + Default + Send + Sync + 'static + sealed::Sealed {
    /// Converts a blended channel value (§3.4) to this type (§3.5 for 8-bit).
    fn from_value(v: f32) -> Self;
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for u8 {}
    impl Sealed for f32 {}
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
