//! The CPU renderer: the reference implementation of `format-spec.md` §3, tiled and parallel.
//!
//! The output region is cut into tiles of `TILE_W × TILE_H` pixels. Each Gaussian is listed in
//! every tile its 3σ bounding box touches (no cap per tile); tile rows render in parallel with
//! rayon, and inside a tile every pixel adds its Gaussians in file order, so the result does not
//! depend on the thread count or on where the region starts: a region render is bit-for-bit the
//! crop of the full render.

use std::sync::atomic::{AtomicBool, Ordering};

use rayon::prelude::*;

use super::fastexp::exp_neg_half;
use super::RenderOptions;
use crate::core::frame::{Frame, Sample};
use crate::core::geometry::{CUTOFF_Q, MIN_WEIGHT_SUM, Projected, Viewport, project, row_span};
use crate::core::splat::SplatImage;
use crate::{Error, Limits, Result};

const TILE_W: i64 = 64;
const TILE_H: i64 = 32;
/// Pixels computed together in the weight loop.
const LANES: usize = 8;
/// Most tile-list entries held at once (4 bytes each); larger renders go in groups of tile rows.
const MAX_LIST_ENTRIES: u64 = 1 << 24;

/// Work counted for each row of a Gaussian in each tile it crosses (finding the row's span,
/// [`row_span`], costs about as much as one group of [`LANES`] pixels).
const ROW_COST: u64 = LANES as u64;

/// Renders `viewport` of `image` on the CPU.
pub fn render_cpu<T: Sample>(
    image: &SplatImage,
    viewport: &Viewport,
    limits: &Limits,
) -> Result<Frame<T>> {
    render_cpu_with(image, viewport, limits, &RenderOptions::default())
}

/// [`render_cpu`] with options: a cancel flag, checked before every tile of 64 × 32 pixels
/// (a tile takes at most milliseconds for files within [`Limits`]): once it is set, the render
/// stops and returns [`Error::Cancelled`].
pub fn render_cpu_with<T: Sample>(
    image: &SplatImage,
    viewport: &Viewport,
    limits: &Limits,
    options: &RenderOptions,
) -> Result<Frame<T>> {
    viewport.validate(limits)?;
    let r = viewport.region;
    let nc = image.layout().channels();
    let region = [
        r.x as i64,
        r.y as i64,
        r.x as i64 + r.width as i64 - 1,
        r.y as i64 + r.height as i64 - 1,
    ];
    let projected = project_all(image, viewport, region, limits)?;
    let mut data = vec![T::default(); r.pixels() as usize * nc];
    let cancel = options.cancel;
    let ctx = Ctx {
        projected: &projected,
        region,
        nc,
        cancel,
    };
    match nc {
        1 => ctx.render::<T, 1>(&mut data),
        2 => ctx.render::<T, 2>(&mut data),
        3 => ctx.render::<T, 3>(&mut data),
        _ => ctx.render::<T, 4>(&mut data),
    }
    if cancel.is_some_and(|c| c.load(Ordering::Relaxed)) {
        return Err(Error::Cancelled);
    }
    Ok(Frame {
        width: r.width,
        height: r.height,
        layout: image.layout(),
        data,
    })
}

/// Projects every Gaussian, keeps those touching `region` with their boxes clipped to it, and
/// checks the memory and work limits.
pub(crate) fn project_all(
    image: &SplatImage,
    viewport: &Viewport,
    region: [i64; 4],
    limits: &Limits,
) -> Result<Vec<Projected>> {
    let (sx, sy) = viewport.scale_factors(image);
    let gaussians = image.gaussians();
    // The picture's Gaussians and their projections, side by side.
    limits.check(
        "render memory (bytes)",
        gaussians.len() as u64
            * (std::mem::size_of::<Projected>() + std::mem::size_of::<crate::Gaussian>()) as u64,
        limits.max_memory_bytes,
    )?;
    let projected: Vec<Projected> = gaussians
        .par_iter()
        .with_min_len(4096)
        .filter_map(|g| {
            let mut p = project(g, sx, sy);
            let b = &mut p.bbox;
            b[0] = b[0].max(region[0]);
            b[1] = b[1].max(region[1]);
            b[2] = b[2].min(region[2]);
            b[3] = b[3].min(region[3]);
            (b[0] <= b[2] && b[1] <= b[3]).then_some(p)
        })
        .collect();
    // The work the rasterizer will do: each row of a Gaussian's clipped box, in whole groups
    // of LANES pixels, plus the cost of finding its span in every tile the row crosses.
    let work: u64 = projected
        .iter()
        .map(|p| {
            let [x0, y0, x1, y1] = p.bbox;
            let width = ((x1 - x0 + 1) as u64).next_multiple_of(LANES as u64);
            let tiles = ((x1 - region[0]) / TILE_W - (x0 - region[0]) / TILE_W + 1) as u64;
            ((y1 - y0 + 1) as u64).saturating_mul(width.saturating_add(ROW_COST * tiles))
        })
        .fold(0u64, |a, b| a.saturating_add(b));
    let pixels = ((region[2] - region[0] + 1) * (region[3] - region[1] + 1)) as u64;
    limits.check(
        "render work (Gaussian-pixel evaluations)",
        work,
        limits.render_work_limit(pixels),
    )?;
    Ok(projected)
}

struct Ctx<'a> {
    projected: &'a [Projected],
    region: [i64; 4],
    nc: usize,
    cancel: Option<&'a AtomicBool>,
}

impl Ctx<'_> {
    fn cancelled(&self) -> bool {
        self.cancel.is_some_and(|c| c.load(Ordering::Relaxed))
    }

    fn tiles_x(&self) -> i64 {
        (self.region[2] - self.region[0]) / TILE_W + 1
    }

    fn tiles_y(&self) -> i64 {
        (self.region[3] - self.region[1]) / TILE_H + 1
    }

    /// Tile column and row spans (inclusive) of a projected Gaussian.
    fn tile_span(&self, p: &Projected) -> [i64; 4] {
        [
            (p.bbox[0] - self.region[0]) / TILE_W,
            (p.bbox[1] - self.region[1]) / TILE_H,
            (p.bbox[2] - self.region[0]) / TILE_W,
            (p.bbox[3] - self.region[1]) / TILE_H,
        ]
    }

    fn render<T: Sample, const C: usize>(&self, out: &mut [T]) {
        let (tx, ty) = (self.tiles_x(), self.tiles_y());
        let width = (self.region[2] - self.region[0] + 1) as usize;
        // Entries per tile row, to group rows so the lists stay under MAX_LIST_ENTRIES.
        let mut row_entries = vec![0u64; ty as usize];
        for p in self.projected {
            let s = self.tile_span(p);
            for e in &mut row_entries[s[1] as usize..=s[3] as usize] {
                *e += (s[2] - s[0] + 1) as u64;
            }
        }
        let band = width * TILE_H as usize * self.nc;
        let mut row0 = 0i64;
        let mut bands = out.chunks_mut(band);
        while row0 < ty && !self.cancelled() {
            let mut row1 = row0 + 1;
            let mut total = row_entries[row0 as usize];
            while row1 < ty && total + row_entries[row1 as usize] <= MAX_LIST_ENTRIES {
                total += row_entries[row1 as usize];
                row1 += 1;
            }
            let group_bands: Vec<&mut [T]> = bands.by_ref().take((row1 - row0) as usize).collect();
            if total > MAX_LIST_ENTRIES {
                // One tile row with more entries than the cap: list each tile on its own.
                let out_band = group_bands
                    .into_iter()
                    .next()
                    .expect("one band per tile row");
                self.render_row_unlisted::<T, C>(row0, tx, out_band);
            } else {
                self.render_group::<T, C>(row0, row1, tx, group_bands);
            }
            row0 = row1;
        }
    }

    /// Renders tile rows `row0..row1` from shared per-tile lists built in one pass.
    fn render_group<T: Sample, const C: usize>(
        &self,
        row0: i64,
        row1: i64,
        tx: i64,
        bands: Vec<&mut [T]>,
    ) {
        let ntiles = ((row1 - row0) * tx) as usize;
        let mut offsets = vec![0u32; ntiles + 1];
        let clip = |s: [i64; 4]| (s[1].max(row0), s[3].min(row1 - 1));
        for p in self.projected {
            let s = self.tile_span(p);
            let (r0, r1) = clip(s);
            for row in r0..=r1 {
                for col in s[0]..=s[2] {
                    offsets[((row - row0) * tx + col) as usize + 1] += 1;
                }
            }
        }
        for i in 0..ntiles {
            offsets[i + 1] += offsets[i];
        }
        let mut fill = offsets.clone();
        let mut lists = vec![0u32; offsets[ntiles] as usize];
        for (gi, p) in self.projected.iter().enumerate() {
            let s = self.tile_span(p);
            let (r0, r1) = clip(s);
            for row in r0..=r1 {
                for col in s[0]..=s[2] {
                    let t = ((row - row0) * tx + col) as usize;
                    lists[fill[t] as usize] = gi as u32;
                    fill[t] += 1;
                }
            }
        }
        bands.into_par_iter().enumerate().for_each(|(k, band)| {
            let row = row0 + k as i64;
            let mut acc = vec![0f32; ((TILE_W * TILE_H) as usize + LANES) * (C + 1)];
            for col in 0..tx {
                if self.cancelled() {
                    return;
                }
                let t = (k as i64 * tx + col) as usize;
                let list = &lists[offsets[t] as usize..offsets[t + 1] as usize];
                self.render_tile::<T, C>(
                    col,
                    row,
                    list.iter().map(|&i| &self.projected[i as usize]),
                    &mut acc,
                    band,
                );
            }
        });
    }

    /// Renders one tile row whose lists would be too large, finding each tile's Gaussians by a
    /// scan of all of them (slow, but bounded in memory; only hostile files get here).
    fn render_row_unlisted<T: Sample, const C: usize>(&self, row: i64, tx: i64, band: &mut [T]) {
        let mut acc = vec![0f32; ((TILE_W * TILE_H) as usize + LANES) * (C + 1)];
        for col in 0..tx {
            if self.cancelled() {
                return;
            }
            let hits = self.projected.iter().filter(|p| {
                let s = self.tile_span(p);
                s[0] <= col && col <= s[2] && s[1] <= row && row <= s[3]
            });
            self.render_tile::<T, C>(col, row, hits, &mut acc, band);
        }
    }

    /// Blends the Gaussians of tile (`col`, `row`) and writes the tile into its band of rows,
    /// with 256-bit vectors where the processor has AVX2 (the same operations per pixel, so the
    /// same result: Rust never fuses a multiply and an add on its own).
    fn render_tile<'p, T: Sample, const C: usize>(
        &self,
        col: i64,
        row: i64,
        gaussians: impl Iterator<Item = &'p Projected>,
        acc: &mut [f32],
        band: &mut [T],
    ) {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the processor supports AVX2, checked just above.
            unsafe { self.render_tile_avx2::<T, C>(col, row, gaussians, acc, band) };
            return;
        }
        self.render_tile_impl::<T, C>(col, row, gaussians, acc, band)
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    fn render_tile_avx2<'p, T: Sample, const C: usize>(
        &self,
        col: i64,
        row: i64,
        gaussians: impl Iterator<Item = &'p Projected>,
        acc: &mut [f32],
        band: &mut [T],
    ) {
        self.render_tile_impl::<T, C>(col, row, gaussians, acc, band)
    }

    /// The body of [`Self::render_tile`]. `acc` holds `C + 1` planes of `TILE_W × TILE_H` sums: one per channel, then the weights.
    #[inline(always)]
    fn render_tile_impl<'p, T: Sample, const C: usize>(
        &self,
        col: i64,
        row: i64,
        gaussians: impl Iterator<Item = &'p Projected>,
        acc: &mut [f32],
        band: &mut [T],
    ) {
        let x0 = self.region[0] + col * TILE_W;
        let y0 = self.region[1] + row * TILE_H;
        let x1 = (x0 + TILE_W - 1).min(self.region[2]);
        let y1 = (y0 + TILE_H - 1).min(self.region[3]);
        let tw = (x1 - x0 + 1) as usize;
        // Each plane has LANES floats of slack after its last row for the padded spans.
        let plane = (TILE_W * TILE_H) as usize + LANES;
        acc.fill(0.0);
        let mut weights = [0f32; TILE_W as usize + LANES];
        for p in gaussians {
            for y in p.bbox[1].max(y0)..=p.bbox[3].min(y1) {
                let (lo, hi) = row_span(p, y);
                let (lo, hi) = (lo.max(x0), hi.min(x1));
                if lo > hi {
                    continue;
                }
                // Whole lanes: the weights past the span are zeroed, and adding +0.0 to a sum
                // of non-negative terms leaves it unchanged, so the padding is exact.
                let n = (hi - lo + 1) as usize;
                let padded = n.div_ceil(LANES) * LANES;
                let w = &mut weights[..padded];
                span_weights(p, lo, y, w);
                w[n..].fill(0.0);
                let base = (y - y0) as usize * TILE_W as usize + (lo - x0) as usize;
                for c in 0..C {
                    let color = p.color[c];
                    for (a, &wi) in acc[c * plane + base..][..padded].iter_mut().zip(w.iter()) {
                        *a += wi * color;
                    }
                }
                for (a, &wi) in acc[C * plane + base..][..padded].iter_mut().zip(w.iter()) {
                    *a += wi;
                }
            }
        }
        let width = (self.region[2] - self.region[0] + 1) as usize;
        for y in 0..=(y1 - y0) as usize {
            let dst0 = (y * width + (x0 - self.region[0]) as usize) * C;
            let dst = &mut band[dst0..dst0 + tw * C];
            let r = y * TILE_W as usize;
            let den = &acc[C * plane + r..][..tw];
            for c in 0..C {
                let num = &acc[c * plane + r..][..tw];
                for ((d, &n), &w) in dst.iter_mut().skip(c).step_by(C).zip(num).zip(den) {
                    *d = T::from_value(n / w.max(MIN_WEIGHT_SUM));
                }
            }
        }
    }
}

/// The weights (§3.4) of one Gaussian at pixels `lo, lo + 1, ...` of row `y`, 0 outside the
/// 3σ ellipse, for whole groups of [`LANES`] pixels (`out.len()` is a multiple of it). The same
/// arithmetic as [`super::project::weight`], in a loop that vectorizes.
#[inline(always)]
fn span_weights(p: &Projected, lo: i64, y: i64, out: &mut [f32]) {
    let [a, b, c] = p.conic;
    let dy = (y as f32 + 0.5) - p.my;
    let bdy = 2.0 * b * dy;
    let cdy = c * dy * dy;
    // Pixel centres lo + 0.5, lo + 1.5, ...: exact in binary32 below 2^23.
    const OFFSETS: [f32; LANES] = [0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0];
    let x0 = lo as f32 + 0.5;
    for (k, lane) in out.chunks_exact_mut(LANES).enumerate() {
        let base = x0 + (k * LANES) as f32;
        for l in 0..LANES {
            let dx = (base + OFFSETS[l]) - p.mx;
            let q = a * dx * dx + bdy * dx + cdy;
            let e = p.amp * exp_neg_half(q);
            lane[l] = if q <= CUTOFF_Q { e } else { 0.0 };
        }
    }
}
