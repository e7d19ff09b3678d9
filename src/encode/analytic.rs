//! The analytic encoder: a classical, non-neural baseline.
//!
//! 1. A quadtree over the picture splits any block whose squared error against its mean colour
//!    exceeds a threshold, from 32×32 down to 2×2 pixels; the threshold is found by bisection so
//!    the number of leaves meets the requested Gaussian count.
//! 2. Each leaf becomes one Gaussian at its centre, shaped by the block's gradient structure
//!    tensor: elongated along edges, narrow across them, round in flat areas.
//! 3. Colours are fitted by least squares ([`fit`](super::optim::fit)), then every parameter is
//!    refined by gradient descent on the render error ([`refine`](super::optim::refine)).
//! 4. The geometry is quantized exactly as the file will store it, and the colours are fitted
//!    again by least squares to the picture under the rendering rule.

use rayon::prelude::*;

use super::optim::fit::{FitOptions, fit_colors};
use super::optim::refine::{
    QuantGrid, ROUND_START_UNITS, RefineOptions, refine_quantized_with_progress, refine_units,
    refine_with_progress,
};
use super::rate::{self, RateResult, RateTarget};
use crate::core::frame::Frame;
use crate::core::progress::{Meter, Part, ProgressSink};
use crate::core::splat::{Gaussian, SplatImage};
use crate::format::{self, Encoded, WriteOptions};
use crate::{Error, Result};

const ROOT: u32 = 32;
const MIN_BLOCK: u32 = 2;

/// Below this many Gaussians per pixel the refinement moves none
/// ([`RefineOptions::reallocate`] is ignored): at lower densities the gaps between Gaussians are
/// too wide for the small ones a move adds, and moves lose quality instead of gaining it.
pub const MOVE_MIN_DENSITY: f64 = 0.015;

/// σ of a Gaussian in a flat quadtree block, as a fraction of the block's side, when the
/// Gaussians are written as placed (without refinement, wider Gaussians than
/// [`REFINED_SPREAD`] cover the block better).
pub const SPREAD: f64 = 0.55;

/// The same when the Gaussians are refined: smaller Gaussians refine further, up to
/// [`REFINED_SPREAD_MAX_DENSITY`].
pub const REFINED_SPREAD: f64 = 0.45;

/// Above this density (Gaussians per pixel) refinement starts from [`SPREAD`] again: dense
/// Gaussians no longer gain from starting smaller.
pub const REFINED_SPREAD_MAX_DENSITY: f64 = 0.06;

/// Settings of the analytic encoder.
#[derive(Clone)]
pub struct AnalyticOptions {
    /// Target number of Gaussians per native pixel (e.g. 1/40 for a compact file).
    pub density: f64,
    /// σ of a Gaussian in a flat block, as a fraction of the block's side; `None`: `SPREAD`,
    /// or `REFINED_SPREAD` when refining at densities up to `REFINED_SPREAD_MAX_DENSITY`.
    pub spread: Option<f64>,
    /// Colour fit settings.
    pub fit: FitOptions,
    /// Gradient refinement of all parameters before quantization (0 iterations: none).
    pub refine: RefineOptions,
    /// File layout and quantization.
    pub write: WriteOptions,
    /// Progress of the encode (placement, colour fits, refinement steps, writing), reported
    /// as units done of a total ([`ProgressSink`]); `None`, the default: none.
    pub progress: Option<ProgressSink>,
}

impl std::fmt::Debug for AnalyticOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AnalyticOptions")
            .field("density", &self.density)
            .field("spread", &self.spread)
            .field("fit", &self.fit)
            .field("refine", &self.refine)
            .field("write", &self.write)
            .field("progress", &self.progress.as_ref().map(|_| "…"))
            .finish()
    }
}

/// Progress units of placing the Gaussians (40 passes of the quadtree), in units of about one
/// refinement step (`gsimg::ProgressSink`).
const PLACE_UNITS: usize = 8;
/// Progress units of a colour fit.
const FIT_UNITS: usize = ROUND_START_UNITS;
/// Progress units of quantizing and writing the file.
const WRITE_UNITS: usize = 2;

impl Default for AnalyticOptions {
    fn default() -> Self {
        AnalyticOptions {
            density: 1.0 / 40.0,
            spread: None,
            fit: FitOptions::default(),
            // Four rounds of moving a tenth of the Gaussians to the error, then 10 steps each
            // (at densities from MOVE_MIN_DENSITY up): more, smaller moves beat fewer, larger
            // ones, as for the network encoder.
            refine: RefineOptions {
                reallocate: 0.1,
                rounds: 4,
                ..RefineOptions::default()
            },
            write: WriteOptions::default(),
            progress: None,
        }
    }
}

impl AnalyticOptions {
    /// Options for a quality from 1 (smallest) to 100 (largest): the Gaussian density goes
    /// geometrically from 1/400 to 1/5 per pixel
    /// (`Quality::analytic_density`).
    pub fn with_quality(quality: u8) -> Result<Self> {
        Ok(AnalyticOptions {
            density: rate::Quality::new(quality)?.analytic_density(),
            ..Default::default()
        })
    }
}

/// Encodes `pixels` into a file of the size `target` asks for, searching the Gaussian density
/// (the other settings of `opts` stay; each round is a full encode).
pub fn encode_to_rate(
    pixels: &Frame<f32>,
    opts: &AnalyticOptions,
    target: RateTarget,
) -> Result<RateResult> {
    target.validate()?;
    let px = pixels.width as f64 * pixels.height as f64;
    // About 40 bits per Gaussian (format 1.1 at the default quantizers) for a first guess.
    let t0 = target.bytes(px) * 8.0 / 40.0 / px;
    // The number of rounds is not known in advance: each round takes half of the progress
    // left, and the end reports all.
    let meter = Meter::new(opts.progress.as_ref(), 1 << 20);
    let mut left = 1usize << 20;
    let result = rate::search(target, px, (1.0 / px, 1.0), t0, |density| {
        let part = meter.part(left / 2);
        left -= left / 2;
        encode_part(
            pixels,
            &AnalyticOptions {
                density,
                ..opts.clone()
            },
            &part,
        )
    });
    meter.finish();
    result
}

/// Sums over rectangles in O(1): per channel, values and squares.
struct Integral {
    w: usize,
    nc: usize,
    sum: Vec<f64>,
    sq: Vec<f64>,
}

impl Integral {
    fn new(p: &Frame<f32>) -> Integral {
        let (w, h, nc) = (p.width as usize, p.height as usize, p.channels());
        let mut sum = vec![0f64; (w + 1) * (h + 1) * nc];
        let mut sq = vec![0f64; (w + 1) * (h + 1) * nc];
        for y in 0..h {
            for x in 0..w {
                for c in 0..nc {
                    let v = p.data[(y * w + x) * nc + c] as f64;
                    let i = ((y + 1) * (w + 1) + x + 1) * nc + c;
                    let up = (y * (w + 1) + x + 1) * nc + c;
                    let left = ((y + 1) * (w + 1) + x) * nc + c;
                    let diag = (y * (w + 1) + x) * nc + c;
                    sum[i] = v + sum[up] + sum[left] - sum[diag];
                    sq[i] = v * v + sq[up] + sq[left] - sq[diag];
                }
            }
        }
        Integral { w, nc, sum, sq }
    }

    fn rect(&self, t: &[f64], x0: u32, y0: u32, x1: u32, y1: u32, c: usize) -> f64 {
        let at = |x: u32, y: u32| t[(y as usize * (self.w + 1) + x as usize) * self.nc + c];
        at(x1, y1) - at(x0, y1) - at(x1, y0) + at(x0, y0)
    }

    /// Squared error of the block against its mean, summed over channels, and the mean.
    fn block(&self, x0: u32, y0: u32, x1: u32, y1: u32) -> (f64, [f32; 4]) {
        let n = ((x1 - x0) * (y1 - y0)) as f64;
        let mut sse = 0.0;
        let mut mean = [0f32; 4];
        for (c, m) in mean.iter_mut().enumerate().take(self.nc) {
            let s = self.rect(&self.sum, x0, y0, x1, y1, c);
            let q = self.rect(&self.sq, x0, y0, x1, y1, c);
            sse += (q - s * s / n).max(0.0);
            *m = (s / n) as f32;
        }
        (sse, mean)
    }
}

/// Quadtree leaves `[x0, y0, x1, y1)` for an error threshold.
fn leaves(ii: &Integral, w: u32, h: u32, threshold: f64, out: &mut Vec<[u32; 4]>) {
    fn split(ii: &Integral, b: [u32; 4], t: f64, out: &mut Vec<[u32; 4]>) {
        let (bw, bh) = (b[2] - b[0], b[3] - b[1]);
        if bw.max(bh) > MIN_BLOCK && ii.block(b[0], b[1], b[2], b[3]).0 > t {
            let (mx, my) = (b[0] + bw.div_ceil(2), b[1] + bh.div_ceil(2));
            for q in [
                [b[0], b[1], mx, my],
                [mx, b[1], b[2], my],
                [b[0], my, mx, b[3]],
                [mx, my, b[2], b[3]],
            ] {
                if q[0] < q[2] && q[1] < q[3] {
                    split(ii, q, t, out);
                }
            }
        } else {
            out.push(b);
        }
    }
    out.clear();
    for y in (0..h).step_by(ROOT as usize) {
        for x in (0..w).step_by(ROOT as usize) {
            split(
                ii,
                [x, y, (x + ROOT).min(w), (y + ROOT).min(h)],
                threshold,
                out,
            );
        }
    }
}

/// Places Gaussians (geometry and mean colours) for about `target` leaves.
pub fn place(p: &Frame<f32>, target: usize, spread: f64) -> Vec<Gaussian> {
    let ii = Integral::new(p);
    let (w, h) = (p.width, p.height);
    let mut blocks = Vec::new();
    // Bisection on log(threshold): more threshold, fewer leaves.
    let (mut lo, mut hi) = (-30.0f64, 20.0f64);
    for _ in 0..40 {
        let mid = 0.5 * (lo + hi);
        leaves(&ii, w, h, mid.exp(), &mut blocks);
        if blocks.len() > target {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    leaves(&ii, w, h, hi.exp(), &mut blocks);
    let luma = luma_plane(p);
    blocks
        .par_iter()
        .map(|b| {
            let (_, mean) = ii.block(b[0], b[1], b[2], b[3]);
            shape(&luma, w as usize, h as usize, *b, mean, spread)
        })
        .collect()
}

fn luma_plane(p: &Frame<f32>) -> Vec<f32> {
    let nc = p.channels();
    p.data
        .chunks_exact(nc)
        .map(|px| {
            if nc >= 3 {
                0.299 * px[0] + 0.587 * px[1] + 0.114 * px[2]
            } else {
                px[0]
            }
        })
        .collect()
}

/// Re-orients Gaussians by the structure tensor of the picture around each (a window of
/// ±2·sqrt(σ1σ2), at least ±2 px), keeping each one's area (σ1σ2): long along edges and narrow
/// across them, as [`place`] shapes its own. Used on the compact network's Gaussians before
/// refinement: they are nearly round (median σ1/σ2 of 1.26 on Kodak `kodim05`, against 2.26 for
/// the quadtree's), and 40 refinement steps do not elongate and turn them far enough.
pub(crate) fn orient_by_structure(p: &Frame<f32>, gs: &mut [Gaussian]) {
    let luma = luma_plane(p);
    let (w, h) = (p.width as usize, p.height as usize);
    gs.par_iter_mut().for_each(|g| {
        let r = (2.0 * (g.scale[0] * g.scale[1]).sqrt()).max(2.0);
        let b = [
            (g.x - r).floor().clamp(0.0, w as f32) as u32,
            (g.y - r).floor().clamp(0.0, h as f32) as u32,
            (g.x + r).ceil().clamp(0.0, w as f32) as u32,
            (g.y + r).ceil().clamp(0.0, h as f32) as u32,
        ];
        if b[0] >= b[2] || b[1] >= b[3] {
            return;
        }
        let s = shape(&luma, w, h, b, g.color, 1.0);
        let area = g.scale[0] as f64 * g.scale[1] as f64;
        let ratio = (s.scale[0] / s.scale[1]) as f64;
        g.scale = [(area * ratio).sqrt() as f32, (area / ratio).sqrt() as f32];
        g.rotation = s.rotation;
    });
}

/// One Gaussian for a block, oriented by the block's structure tensor.
fn shape(luma: &[f32], w: usize, h: usize, b: [u32; 4], mean: [f32; 4], spread: f64) -> Gaussian {
    let (mut jxx, mut jxy, mut jyy) = (0f64, 0f64, 0f64);
    for y in b[1] as usize..b[3] as usize {
        for x in b[0] as usize..b[2] as usize {
            let at = |x: usize, y: usize| luma[y * w + x] as f64;
            let gx = at((x + 1).min(w - 1), y) - at(x.saturating_sub(1), y);
            let gy = at(x, (y + 1).min(h - 1)) - at(x, y.saturating_sub(1));
            jxx += gx * gx;
            jxy += gx * gy;
            jyy += gy * gy;
        }
    }
    // Eigen-decomposition of [[jxx, jxy], [jxy, jyy]]: λ1 ≥ λ2, gradient along angle φ.
    let tr = jxx + jyy;
    let disc = ((jxx - jyy) * (jxx - jyy) + 4.0 * jxy * jxy).sqrt();
    let coherence = if tr > 1e-9 { disc / tr } else { 0.0 };
    let phi = 0.5 * (2.0 * jxy).atan2(jxx - jyy);
    let side = (((b[2] - b[0]) * (b[3] - b[1])) as f64).sqrt();
    let base = spread * side;
    // Along the edge (perpendicular to the gradient) longer, across it narrower.
    let along = base * (1.0 + 0.6 * coherence);
    let across = base * (1.0 - 0.5 * coherence);
    Gaussian {
        x: (b[0] + b[2]) as f32 * 0.5,
        y: (b[1] + b[3]) as f32 * 0.5,
        scale: [along.max(0.2) as f32, across.max(0.2) as f32],
        rotation: (phi + std::f64::consts::FRAC_PI_2) as f32,
        color: mean,
    }
}

/// The progress units of an encode with `opts` ([`AnalyticOptions::progress`]).
fn encode_units(opts: &AnalyticOptions) -> usize {
    let refine = if opts.refine.iterations > 0 {
        FIT_UNITS + refine_units(&opts.refine) + opts.refine.quantized_steps
    } else {
        0
    };
    PLACE_UNITS + refine + FIT_UNITS + WRITE_UNITS
}

/// Encodes `pixels` into a `.gsi` file with the analytic method.
pub fn encode(pixels: &Frame<f32>, opts: &AnalyticOptions) -> Result<Encoded> {
    let meter = Meter::new(opts.progress.as_ref(), encode_units(opts));
    let encoded = encode_part(pixels, opts, &meter.part(encode_units(opts)));
    meter.finish();
    encoded
}

/// [`encode`], reporting to `progress`.
fn encode_part(pixels: &Frame<f32>, opts: &AnalyticOptions, progress: &Part) -> Result<Encoded> {
    pixels.validate()?;
    if !(opts.density > 0.0 && opts.density <= 4.0) {
        return Err(Error::invalid(
            "density",
            format!("{} (allowed: above 0, at most 4)", opts.density),
        ));
    }
    let target =
        ((pixels.width as f64 * pixels.height as f64 * opts.density).round() as usize).max(1);
    if let Some(s) = opts.spread
        && !(s > 0.0 && s <= 4.0)
    {
        return Err(Error::invalid(
            "spread",
            format!("{s} (allowed: above 0, at most 4)"),
        ));
    }
    let spread = opts.spread.unwrap_or(
        if opts.refine.iterations > 0 && opts.density <= REFINED_SPREAD_MAX_DENSITY {
            REFINED_SPREAD
        } else {
            SPREAD
        },
    );
    let units = encode_units(opts);
    let mut at = 0;
    // The next `n` units of this encode.
    let mut stage = |n: usize| {
        let p = progress.within(at, n, units);
        at += n;
        p
    };
    let mut gaussians = place(pixels, target, spread);
    stage(PLACE_UNITS).finish();
    let (mut notes, mut warnings) = (Vec::new(), Vec::new());
    let mut record = |o: super::optim::refine::RefineOutcome| {
        notes.extend(o.note());
        warnings.extend(o.warning());
    };
    if opts.refine.iterations > 0 {
        fit_colors(pixels, &mut gaussians, &opts.fit);
        stage(FIT_UNITS).finish();
        let mut ropts = opts.refine;
        if opts.density < MOVE_MIN_DENSITY {
            ropts.reallocate = 0.0;
        }
        // (Without moves the refinement counts fewer units: its part is spread over them.)
        let part = stage(refine_units(&opts.refine));
        record(refine_with_progress(pixels, &mut gaussians, &ropts, &part)?);
    }
    // Quantize the geometry as the file will, so the colours are fitted to what is stored.
    let draft = SplatImage::new(
        pixels.width,
        pixels.height,
        pixels.layout,
        gaussians.clone(),
    )?;
    let header = format::plan_header(&draft, &opts.write)?;
    if opts.refine.iterations > 0 && opts.refine.quantized_steps > 0 {
        let grid = QuantGrid::of(&header);
        let steps = opts.refine.quantized_steps;
        record(refine_quantized_with_progress(
            pixels,
            &mut gaussians,
            &opts.refine,
            &grid,
            steps,
            &stage(steps),
        )?);
    }
    for g in gaussians.iter_mut() {
        let color = g.color;
        *g = format::dequantize(&header, &format::quantize(&header, g));
        g.color = color;
    }
    fit_colors(pixels, &mut gaussians, &opts.fit);
    stage(FIT_UNITS).finish();
    let image = SplatImage::new(pixels.width, pixels.height, pixels.layout, gaussians)?;
    let mut encoded = format::write(&image, &opts.write)?;
    stage(WRITE_UNITS).finish();
    encoded.notes = notes;
    encoded.warnings = warnings;
    Ok(encoded)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ChannelLayout;

    /// Out-of-range settings are errors that name the setting, not panics.
    #[test]
    fn bad_density_or_spread_is_a_clear_error() {
        let px = Frame::from_u8(8, 8, ChannelLayout::Gray, &[128; 64]).unwrap();
        for (density, spread, name) in [
            (0.0, None, "density"),
            (f64::NAN, None, "density"),
            (0.1, Some(0.0), "spread"),
            (0.1, Some(-1.0), "spread"),
            (0.1, Some(f64::INFINITY), "spread"),
        ] {
            let opts = AnalyticOptions {
                density,
                spread,
                ..Default::default()
            };
            let e = encode(&px, &opts).unwrap_err().to_string();
            assert!(e.contains(name), "{e}");
        }
    }

    /// Round Gaussians on a straight edge (dark left of the line x = y/2 + 20, bright right)
    /// come out long along it and narrow across it, with their areas kept.
    #[test]
    fn orienting_aligns_with_edges_and_keeps_areas() {
        let (w, h) = (64u32, 64u32);
        let mut data = Vec::with_capacity((w * h * 3) as usize);
        for y in 0..h {
            for x in 0..w {
                let v = if (x as f32 + 0.5) > 0.5 * (y as f32 + 0.5) + 20.0 {
                    0.9
                } else {
                    0.1
                };
                data.extend([v, v, v]);
            }
        }
        let p = Frame {
            width: w,
            height: h,
            layout: ChannelLayout::Rgb,
            data,
        };
        let mut gs: Vec<Gaussian> = (0..5)
            .map(|i| {
                let y = 12.0 + 10.0 * i as f32;
                Gaussian {
                    x: 0.5 * y + 20.0,
                    y,
                    scale: [3.0, 3.0],
                    rotation: 0.0,
                    color: [0.5; 4],
                }
            })
            .collect();
        orient_by_structure(&p, &mut gs);
        // The edge runs along (0.5, 1): angle atan2(1, 0.5) from the x axis (mod π).
        let edge = 1f32.atan2(0.5);
        for g in &gs {
            assert!(
                (g.scale[0] * g.scale[1] - 9.0).abs() < 1e-3,
                "area kept: {g:?}"
            );
            assert!(g.scale[0] > 2.0 * g.scale[1], "elongated: {g:?}");
            let d = (g.rotation - edge).rem_euclid(std::f32::consts::PI);
            let d = d.min(std::f32::consts::PI - d);
            assert!(d < 0.1, "along the edge: {g:?}, edge angle {edge}");
        }
    }
}
