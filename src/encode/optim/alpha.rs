//! The least-squares fit of one channel (alpha) of fixed Gaussians to a plane, without forming
//! the normal matrix: conjugate gradients on the normal equations (CGLS), with the rendering
//! matrix `A[p][k] = w_pk / D_p` applied on the fly, twice per iteration.
//!
//! [`fit_colors`](super::fit::fit_colors) forms `AᵀA` per chunk, one entry per pair of
//! overlapping Gaussians: about 100 per Gaussian for the upscale model's dense field (4
//! Gaussians a pixel), which made a gray + alpha upscale take 3.6 times the memory of an RGB one
//! (whose colours the network gives directly) and 4.5 times the time. Here memory is one value
//! per pixel and a few per Gaussian, whatever the density, and the work per iteration is two
//! passes over the footprints.
//!
//! Deterministic: every per-pixel sum adds its Gaussians in index order, every per-Gaussian sum
//! its pixels in raster order, and dot products are summed in a fixed order.

use rayon::prelude::*;

use crate::core::geometry::{Projected, project, row_span, weight};
use crate::core::splat::Gaussian;

/// Rows of a band: the unit of the parallel per-pixel sums.
const BAND: usize = 16;

/// Fitted geometry: the projected Gaussians, which of them reach each band of rows, and the
/// per-pixel denominators `D_p = Σ_k w_pk`.
struct Field {
    width: usize,
    height: usize,
    projected: Vec<Projected>,
    bands: Vec<Vec<u32>>,
    den: Vec<f64>,
}

impl Field {
    fn new(width: u32, height: u32, gaussians: &[Gaussian]) -> Field {
        let (width, height) = (width as usize, height as usize);
        let projected: Vec<Projected> =
            gaussians.par_iter().map(|g| project(g, 1.0, 1.0)).collect();
        let nb = height.div_ceil(BAND).max(1);
        let mut bands = vec![Vec::new(); nb];
        for (k, p) in projected.iter().enumerate() {
            if p.bbox[2] < 0
                || p.bbox[0] >= width as i64
                || p.bbox[3] < 0
                || p.bbox[1] >= height as i64
            {
                continue;
            }
            let top = p.bbox[1].max(0) as usize / BAND;
            let bottom = p.bbox[3].min(height as i64 - 1) as usize / BAND;
            for band in &mut bands[top..=bottom] {
                band.push(k as u32);
            }
        }
        let mut f = Field {
            width,
            height,
            projected,
            bands,
            den: Vec::new(),
        };
        f.den = f.scatter(&vec![1.0; gaussians.len()]);
        f
    }

    /// `Σ_k w_pk v_k` for every pixel `p`.
    fn scatter(&self, v: &[f64]) -> Vec<f64> {
        let w = self.width;
        let mut out = vec![0f64; w * self.height];
        out.par_chunks_mut(BAND * w)
            .zip(&self.bands)
            .enumerate()
            .for_each(|(b, (rows, members))| {
                let y0 = (b * BAND) as i64;
                let y1 = y0 + (rows.len() / w) as i64;
                for &k in members {
                    let (p, vk) = (&self.projected[k as usize], v[k as usize]);
                    if vk == 0.0 {
                        continue;
                    }
                    for y in p.bbox[1].max(y0)..=p.bbox[3].min(y1 - 1) {
                        let (lo, hi) = row_span(p, y);
                        let row = &mut rows[(y - y0) as usize * w..][..w];
                        for x in lo.max(0)..=hi.min(w as i64 - 1) {
                            row[x as usize] += weight(p, x, y) as f64 * vk;
                        }
                    }
                }
            });
        out
    }

    /// `Σ_p w_pk r_p` for every Gaussian `k`.
    fn gather(&self, r: &[f64]) -> Vec<f64> {
        let (w, h) = (self.width as i64, self.height as i64);
        self.projected
            .par_iter()
            .map(|p| {
                let mut s = 0f64;
                for y in p.bbox[1].max(0)..=p.bbox[3].min(h - 1) {
                    let (lo, hi) = row_span(p, y);
                    for x in lo.max(0)..=hi.min(w - 1) {
                        s += weight(p, x, y) as f64 * r[(y * w + x) as usize];
                    }
                }
                s
            })
            .collect()
    }

    /// `A x`: the rendered plane of values `x` (0 where no Gaussian reaches).
    fn apply(&self, x: &[f64]) -> Vec<f64> {
        let mut out = self.scatter(x);
        for (o, d) in out.iter_mut().zip(&self.den) {
            *o = if *d > 1e-12 { *o / d } else { 0.0 };
        }
        out
    }

    /// `Aᵀ r`.
    fn apply_t(&self, r: &[f64]) -> Vec<f64> {
        let scaled: Vec<f64> = r
            .iter()
            .zip(&self.den)
            .map(|(v, d)| if *d > 1e-12 { v / d } else { 0.0 })
            .collect();
        self.gather(&scaled)
    }
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Fits `values` (one per Gaussian, the starting point) so that the Gaussians render `plane`
/// (`width × height`, row-major) in the least-squares sense, in `iterations` CGLS steps; the
/// result is clamped into `clamp`.
pub(crate) fn fit_plane(
    width: u32,
    height: u32,
    plane: &[f32],
    gaussians: &[Gaussian],
    values: &mut [f32],
    iterations: usize,
    clamp: (f32, f32),
) {
    if gaussians.is_empty() || plane.is_empty() {
        return;
    }
    let field = Field::new(width, height, gaussians);
    let mut x: Vec<f64> = values.iter().map(|&v| v as f64).collect();
    let rendered = field.apply(&x);
    // Residuals only where some Gaussian reaches (elsewhere nothing can change).
    let mut r: Vec<f64> = plane
        .iter()
        .zip(&rendered)
        .zip(&field.den)
        .map(|((&t, &v), &d)| if d > 1e-12 { t as f64 - v } else { 0.0 })
        .collect();
    let mut s = field.apply_t(&r);
    let mut p = s.clone();
    let mut gamma = dot(&s, &s);
    let tiny = 1e-20 * gamma.max(1e-300);
    for _ in 0..iterations {
        if gamma <= tiny {
            break;
        }
        let q = field.apply(&p);
        let qq = dot(&q, &q);
        if qq <= 0.0 {
            break;
        }
        let alpha = gamma / qq;
        x.par_iter_mut()
            .zip(&p)
            .for_each(|(xi, pi)| *xi += alpha * pi);
        r.par_iter_mut()
            .zip(&q)
            .for_each(|(ri, qi)| *ri -= alpha * qi);
        s = field.apply_t(&r);
        let next = dot(&s, &s);
        let beta = next / gamma;
        gamma = next;
        p.par_iter_mut()
            .zip(&s)
            .for_each(|(pi, si)| *pi = si + beta * *pi);
    }
    for (v, xi) in values.iter_mut().zip(&x) {
        *v = (*xi as f32).clamp(clamp.0, clamp.1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// On a picture of one fitting chunk the matrix-free solve is the same least-squares
    /// solve as [`fit_colors`](crate::encode::optim::fit::fit_colors) (which forms `AᵀA`): the same
    /// values to float rounding, and a lower error than the nearest-pixel values it starts from.
    #[test]
    fn matches_the_normal_matrix_fit_and_is_deterministic() {
        let (w, h) = (24u32, 16u32);
        // A soft edge and a ramp.
        let plane: Vec<f32> = (0..w * h)
            .map(|i| {
                let (x, y) = ((i % w) as f32, (i / w) as f32);
                (0.5 + 0.5 * ((x - 11.0) / 2.0).tanh()) * (0.6 + 0.4 * y / h as f32)
            })
            .collect();
        let mut gs = Vec::new();
        for y in 0..h * 2 {
            for x in 0..w * 2 {
                gs.push(Gaussian {
                    x: (x as f32 + 0.5) / 2.0,
                    y: (y as f32 + 0.5) / 2.0,
                    scale: [0.6, 0.5],
                    rotation: 0.3,
                    color: [0.0; 4],
                });
            }
        }
        let start: Vec<f32> = gs
            .iter()
            .map(|g| plane[(g.y as usize) * w as usize + g.x as usize])
            .collect();
        let field = Field::new(w, h, &gs);
        let err = |v: &[f32]| {
            let x: Vec<f64> = v.iter().map(|&a| a as f64).collect();
            let r = field.apply(&x);
            r.iter()
                .zip(&plane)
                .map(|(a, &b)| (a - b as f64).powi(2))
                .sum::<f64>()
        };
        let mut values = start.clone();
        fit_plane(w, h, &plane, &gs, &mut values, 15, (0.0, 1.0));
        assert!(
            err(&values) < 0.5 * err(&start),
            "{} -> {}",
            err(&start),
            err(&values)
        );
        let mut old: Vec<Gaussian> = gs
            .iter()
            .zip(&start)
            .map(|(g, &a)| Gaussian {
                color: [a, 0.0, 0.0, 0.0],
                ..*g
            })
            .collect();
        let px = crate::core::frame::Frame {
            width: w,
            height: h,
            layout: crate::ChannelLayout::Gray,
            data: plane.clone(),
        };
        let opts = crate::encode::optim::fit::FitOptions {
            iterations: 15,
            clamp: (0.0, 1.0),
            ..Default::default()
        };
        crate::encode::optim::fit::fit_colors(&px, &mut old, &opts);
        let worst = old
            .iter()
            .zip(&values)
            .map(|(g, v)| (g.color[0] - v).abs())
            .fold(0f32, f32::max);
        assert!(
            worst < 1e-3,
            "differs from the normal-matrix fit by {worst}"
        );
        // Deterministic whatever the threads.
        let mut again = start.clone();
        rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .unwrap()
            .install(|| fit_plane(w, h, &plane, &gs, &mut again, 15, (0.0, 1.0)));
        assert_eq!(values, again);
    }
}
