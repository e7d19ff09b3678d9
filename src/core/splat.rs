//! The Gaussian image model shared by the encoders, the file format and the renderers.
//!
//! A [`SplatImage`] is a continuous picture: a native size and a list of anisotropic 2D
//! Gaussians whose positions and extents are in native-pixel units, so one image renders the
//! same picture at any output size (`format-spec.md` §3 gives the exact rule).

use crate::{Error, Result};

/// The channels a Gaussian carries and an image renders to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChannelLayout {
    /// One luma channel.
    Gray,
    /// Luma and (straight, not premultiplied) alpha.
    GrayAlpha,
    /// Red, green, blue.
    Rgb,
    /// Red, green, blue and straight alpha.
    Rgba,
}

impl ChannelLayout {
    /// Number of channels (1 to 4).
    pub fn channels(self) -> usize {
        match self {
            ChannelLayout::Gray => 1,
            ChannelLayout::GrayAlpha => 2,
            ChannelLayout::Rgb => 3,
            ChannelLayout::Rgba => 4,
        }
    }

    /// The layout with `n` channels, if 1 ≤ n ≤ 4.
    pub fn from_channels(n: usize) -> Option<Self> {
        Some(match n {
            1 => ChannelLayout::Gray,
            2 => ChannelLayout::GrayAlpha,
            3 => ChannelLayout::Rgb,
            4 => ChannelLayout::Rgba,
            _ => return None,
        })
    }

    /// Whether the last channel is alpha.
    pub fn has_alpha(self) -> bool {
        matches!(self, ChannelLayout::GrayAlpha | ChannelLayout::Rgba)
    }

    /// Whether the colour channels are red, green and blue (not gray).
    pub fn is_color(self) -> bool {
        matches!(self, ChannelLayout::Rgb | ChannelLayout::Rgba)
    }
}

/// One anisotropic 2D Gaussian in native-pixel coordinates.
///
/// Its covariance is `R(θ) · diag(σ₁², σ₂²) · R(θ)ᵀ` with `R(θ)` the counter-clockwise rotation
/// by `rotation` radians in the image plane (x right, y down), `σ₁ = scale[0]`,
/// `σ₂ = scale[1]`. Positions are continuous: the centre of native pixel `(i, j)` is at
/// `(i + 0.5, j + 0.5)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Gaussian {
    /// Centre, x, in native pixels.
    pub x: f32,
    /// Centre, y, in native pixels (downwards).
    pub y: f32,
    /// Standard deviations along the rotated axes, in native pixels; both > 0.
    pub scale: [f32; 2],
    /// Rotation of the first axis, in radians.
    pub rotation: f32,
    /// Channel values in the image's [`ChannelLayout`] order, nominally in [0, 1]; entries past
    /// the layout's channel count are ignored and kept at 0.
    pub color: [f32; 4],
}

impl Gaussian {
    /// The covariance `(Σxx, Σxy, Σyy)` in native pixels², computed in f64 as the spec's §3.2.
    pub fn covariance(&self) -> (f64, f64, f64) {
        let (s1, s2) = (self.scale[0] as f64, self.scale[1] as f64);
        let (v1, v2) = (s1 * s1, s2 * s2);
        let (sin, cos) = (self.rotation as f64).sin_cos();
        let xx = v1 * cos * cos + v2 * sin * sin;
        let yy = v1 * sin * sin + v2 * cos * cos;
        let xy = (v1 - v2) * sin * cos;
        (xx, xy, yy)
    }
}

/// A picture made of Gaussians: the in-memory form of a `.gsi` file.
#[derive(Debug, Clone, PartialEq)]
pub struct SplatImage {
    width: u32,
    height: u32,
    layout: ChannelLayout,
    gaussians: Vec<Gaussian>,
}

impl SplatImage {
    /// A picture of Gaussians that are valid by construction (a decoder's: finite values,
    /// positive scales), without checking each again.
    pub(crate) fn from_valid(
        width: u32,
        height: u32,
        layout: ChannelLayout,
        gaussians: Vec<Gaussian>,
    ) -> Self {
        debug_assert!(Self::new(width, height, layout, gaussians.clone()).is_ok());
        SplatImage {
            width,
            height,
            layout,
            gaussians,
        }
    }

    /// Builds an image, checking that the size is non-zero and every Gaussian is finite with
    /// positive scales.
    pub fn new(
        width: u32,
        height: u32,
        layout: ChannelLayout,
        gaussians: Vec<Gaussian>,
    ) -> Result<Self> {
        if width == 0 || height == 0 {
            return Err(Error::invalid(
                "size",
                format!("{width}x{height}: both must be at least 1"),
            ));
        }
        let nc = layout.channels();
        for (i, g) in gaussians.iter().enumerate() {
            let finite = [g.x, g.y, g.scale[0], g.scale[1], g.rotation]
                .iter()
                .chain(&g.color[..nc])
                .all(|v| v.is_finite());
            if !finite || g.scale[0] <= 0.0 || g.scale[1] <= 0.0 {
                return Err(Error::invalid(
                    "gaussian",
                    format!("Gaussian {i} has a non-finite value or a scale <= 0: {g:?}"),
                ));
            }
        }
        Ok(SplatImage {
            width,
            height,
            layout,
            gaussians,
        })
    }

    /// Native width in pixels.
    pub fn width(&self) -> u32 {
        self.width
    }

    /// Native height in pixels.
    pub fn height(&self) -> u32 {
        self.height
    }

    /// The channel layout.
    pub fn layout(&self) -> ChannelLayout {
        self.layout
    }

    /// The Gaussians, in file order.
    pub fn gaussians(&self) -> &[Gaussian] {
        &self.gaussians
    }

    /// Takes the Gaussians out.
    pub fn into_gaussians(self) -> Vec<Gaussian> {
        self.gaussians
    }
}
