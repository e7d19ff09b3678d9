//! Per-Gaussian preparation for a render: the spec's §3 math, shared by every backend.
//!
//! A Gaussian of the native picture is mapped into output-pixel space for a given output size,
//! widened by the anti-aliasing prefilter, and reduced to the numbers the rasterizer needs: the
//! centre, the inverse covariance ("conic"), the amplitude and the pixel bounding box of its
//! 3-sigma ellipse. `kernels/project.cu` mirrors this function line by line.

use super::splat::{Gaussian, SplatImage};
use crate::{Error, Limits, Result};

/// Variance, in output pixels², of the prefilter added to every Gaussian (§3.3): the variance of
/// a box of one output pixel, 1/12, so that rendering at 2× and averaging 2×2 blocks gives the
/// same filter as rendering at 1×.
pub const PREFILTER_VARIANCE: f64 = 1.0 / 12.0;

/// A Gaussian contributes to a pixel only where its squared Mahalanobis distance q ≤ this (3σ).
pub const CUTOFF_Q: f32 = 9.0;

/// Denominators below this give a zero pixel (§3.4): 2^-40, exact in binary.
pub const MIN_WEIGHT_SUM: f32 = 1.0 / 1_099_511_627_776.0;

/// A Gaussian in output-pixel space, ready to rasterize.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Projected {
    /// Centre in output pixels.
    pub mx: f32,
    /// Centre in output pixels.
    pub my: f32,
    /// Conic (inverse covariance) `[[a, b], [b, c]]`.
    pub conic: [f32; 3],
    /// Peak weight `sqrt(det Σ / det Σ')` (≤ 1).
    pub amp: f32,
    /// Inclusive pixel bounding box `[x0, y0, x1, y1]` of the 3σ ellipse, full-output coordinates.
    pub bbox: [i64; 4],
    /// Channel values.
    pub color: [f32; 4],
}

/// Maps `g` into output space for scale factors `sx = out_width / native_width` and
/// `sy = out_height / native_height` (§3.2–3.3).
pub fn project(g: &Gaussian, sx: f64, sy: f64) -> Projected {
    let (xx, xy, yy) = g.covariance();
    let oxx = sx * sx * xx + PREFILTER_VARIANCE;
    let oyy = sy * sy * yy + PREFILTER_VARIANCE;
    let oxy = sx * sy * xy;
    let det = oxx * oyy - oxy * oxy;
    let (s1, s2) = (g.scale[0] as f64, g.scale[1] as f64);
    let det0 = (sx * sy * s1 * s2) * (sx * sy * s1 * s2);
    let amp = (det0 / det).sqrt();
    let mx = sx * g.x as f64;
    let my = sy * g.y as f64;
    let rx = 3.0 * oxx.sqrt();
    let ry = 3.0 * oyy.sqrt();
    // Pixel i is inside when |i + 0.5 - mx| <= rx.
    let bbox = [
        clamp_i64((mx - rx - 0.5).ceil()),
        clamp_i64((my - ry - 0.5).ceil()),
        clamp_i64((mx + rx - 0.5).floor()),
        clamp_i64((my + ry - 0.5).floor()),
    ];
    Projected {
        mx: mx as f32,
        my: my as f32,
        conic: [(oyy / det) as f32, (-oxy / det) as f32, (oxx / det) as f32],
        amp: amp as f32,
        bbox,
        color: g.color,
    }
}

fn clamp_i64(v: f64) -> i64 {
    // Output coordinates are below 2^32; anything further out is equally "off the image".
    v.clamp(-(1i64 << 40) as f64, (1i64 << 40) as f64) as i64
}

/// The columns of row `y` where the ellipse `q ≤ 9` may lie, widened by one pixel on each side
/// against rounding, as an inclusive range within the bounding box (empty when `lo > hi`).
#[inline]
pub fn row_span(p: &Projected, y: i64) -> (i64, i64) {
    let [a, b, c] = p.conic;
    let (a, b, c) = (a as f64, b as f64, c as f64);
    let dy = (y as f64 + 0.5) - p.my as f64;
    let disc = b * b * dy * dy - a * (c * dy * dy - CUTOFF_Q as f64);
    if disc < 0.0 {
        return (1, 0);
    }
    let root = disc.sqrt();
    let lo = p.mx as f64 + (-b * dy - root) / a - 0.5;
    let hi = p.mx as f64 + (-b * dy + root) / a - 0.5;
    // `as` saturates, and the bounding box bounds the result anyway.
    let lo = (lo.ceil() as i64).saturating_sub(1).max(p.bbox[0]);
    let hi = (hi.floor() as i64).saturating_add(1).min(p.bbox[2]);
    (lo, hi)
}

/// The weight of `p` at the centre of output pixel `(x, y)`: `amp · exp(-q/2)` when `q ≤ 9`,
/// else 0 — the reference evaluation, in f32 (the renderers compute exactly this).
#[inline]
pub fn weight(p: &Projected, x: i64, y: i64) -> f32 {
    let dx = (x as f32 + 0.5) - p.mx;
    let dy = (y as f32 + 0.5) - p.my;
    let [a, b, c] = p.conic;
    let q = a * dx * dx + (2.0 * b * dy) * dx + c * dy * dy;
    if q <= CUTOFF_Q {
        p.amp * (-0.5 * q).exp()
    } else {
        0.0
    }
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
