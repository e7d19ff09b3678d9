//! Least-squares fit of Gaussian colours to a picture under the rendering rule (§3 at 1×).
//!
//! With the geometry fixed, a rendered pixel is linear in the colours:
//! `value_p = Σ_k (w_pk / D_p) c_k`, with `D_p = Σ_k w_pk`. The colours minimizing the squared
//! error to the picture are found by conjugate gradients on the normal equations (CGLS), one
//! spatial chunk of Gaussians at a time (block Jacobi sweeps), so memory stays bounded for any
//! picture size: each chunk holds only the weights of its own Gaussians.

use rayon::prelude::*;

use super::input::Pixels;
use crate::render::project::{Projected, project, row_span, weight};
use crate::splat::Gaussian;

/// Side of a fitting chunk in native pixels.
const CHUNK: f64 = 384.0;

/// Options of the fit.
#[derive(Debug, Clone, Copy)]
pub struct FitOptions {
    /// CGLS iterations per chunk and sweep.
    pub iterations: usize,
    /// Jacobi sweeps over the chunks (1 is exact when the picture is a single chunk).
    pub sweeps: usize,
    /// Fitted values are clamped into this range.
    pub clamp: (f32, f32),
}

impl Default for FitOptions {
    fn default() -> Self {
        FitOptions {
            iterations: 40,
            sweeps: 3,
            clamp: (-0.25, 1.25),
        }
    }
}

/// The weights of some Gaussians over a pixel rectangle, Gaussian-major.
struct Weights {
    /// `[x0, y0, x1, y1)` pixel rectangle.
    rect: [i64; 4],
    /// For each Gaussian, `start..end` into `pix` / `w`.
    ranges: Vec<(usize, usize)>,
    pix: Vec<u32>,
    w: Vec<f32>,
}

impl Weights {
    fn new(projected: &[&Projected], rect: [i64; 4]) -> Weights {
        let width = rect[2] - rect[0];
        let mut ranges = Vec::with_capacity(projected.len());
        let (mut pix, mut w) = (Vec::new(), Vec::new());
        for p in projected {
            let start = pix.len();
            for y in p.bbox[1].max(rect[1])..=p.bbox[3].min(rect[3] - 1) {
                let (lo, hi) = row_span(p, y);
                for x in lo.max(rect[0])..=hi.min(rect[2] - 1) {
                    let wt = weight(p, x, y);
                    if wt > 0.0 {
                        pix.push(((y - rect[1]) * width + (x - rect[0])) as u32);
                        w.push(wt);
                    }
                }
            }
            ranges.push((start, pix.len()));
        }
        Weights {
            rect,
            ranges,
            pix,
            w,
        }
    }

    fn pixels(&self) -> usize {
        ((self.rect[2] - self.rect[0]) * (self.rect[3] - self.rect[1])) as usize
    }
}

/// Fits the colours of `gaussians` (positions and shapes fixed) to `target`, in place.
pub fn fit_colors(target: &Pixels, gaussians: &mut [Gaussian], opts: &FitOptions) {
    let nc = target.channels();
    let projected: Vec<Projected> = gaussians.par_iter().map(|g| project(g, 1.0, 1.0)).collect();
    let (w, h) = (target.width as f64, target.height as f64);
    let (cx, cy) = (
        (w / CHUNK).ceil().max(1.0) as usize,
        (h / CHUNK).ceil().max(1.0) as usize,
    );
    let chunk_of = |g: &Gaussian| {
        let i = ((g.x as f64 / CHUNK).floor().max(0.0) as usize).min(cx - 1);
        let j = ((g.y as f64 / CHUNK).floor().max(0.0) as usize).min(cy - 1);
        j * cx + i
    };
    let mut members: Vec<Vec<usize>> = vec![Vec::new(); cx * cy];
    for (k, g) in gaussians.iter().enumerate() {
        members[chunk_of(g)].push(k);
    }
    let sweeps = if cx * cy == 1 { 1 } else { opts.sweeps.max(1) };
    for _ in 0..sweeps {
        let current: Vec<[f32; 4]> = gaussians.iter().map(|g| g.color).collect();
        let updates: Vec<Vec<(usize, [f32; 4])>> = members
            .par_iter()
            .map(|active| fit_chunk(target, &projected, &current, active, nc, opts))
            .collect();
        for (k, c) in updates.into_iter().flatten() {
            gaussians[k].color = c;
        }
    }
}

fn fit_chunk(
    target: &Pixels,
    projected: &[Projected],
    current: &[[f32; 4]],
    active: &[usize],
    nc: usize,
    opts: &FitOptions,
) -> Vec<(usize, [f32; 4])> {
    if active.is_empty() {
        return Vec::new();
    }
    // The pixels the active Gaussians reach.
    let mut rect = [i64::MAX, i64::MAX, i64::MIN, i64::MIN];
    for &k in active {
        let b = projected[k].bbox;
        rect = [
            rect[0].min(b[0]),
            rect[1].min(b[1]),
            rect[2].max(b[2] + 1),
            rect[3].max(b[3] + 1),
        ];
    }
    rect = [
        rect[0].max(0),
        rect[1].max(0),
        rect[2].min(target.width as i64),
        rect[3].min(target.height as i64),
    ];
    if rect[0] >= rect[2] || rect[1] >= rect[3] {
        return Vec::new();
    }
    let in_rect = |p: &Projected| {
        p.bbox[0] < rect[2] && p.bbox[2] >= rect[0] && p.bbox[1] < rect[3] && p.bbox[3] >= rect[1]
    };
    let mut is_active = vec![false; projected.len()];
    for &k in active {
        is_active[k] = true;
    }
    let passive: Vec<usize> = (0..projected.len())
        .filter(|&k| !is_active[k] && in_rect(&projected[k]))
        .collect();
    let act = Weights::new(
        &active.iter().map(|&k| &projected[k]).collect::<Vec<_>>(),
        rect,
    );
    let pas = Weights::new(
        &passive.iter().map(|&k| &projected[k]).collect::<Vec<_>>(),
        rect,
    );
    let np = act.pixels();
    // Denominators and the passive Gaussians' fixed part of each pixel.
    let mut den = vec![0f64; np];
    let mut fixed = vec![0f64; np * nc];
    for (wts, ids, is_fixed) in [(&act, active, false), (&pas, &passive[..], true)] {
        for (i, &(s, e)) in wts.ranges.iter().enumerate() {
            let col = &current[ids[i]];
            for j in s..e {
                let p = wts.pix[j] as usize;
                let w = wts.w[j] as f64;
                den[p] += w;
                if is_fixed {
                    for c in 0..nc {
                        fixed[p * nc + c] += w * col[c] as f64;
                    }
                }
            }
        }
    }
    let width = (rect[2] - rect[0]) as usize;
    let mut y = vec![0f64; np * nc];
    for p in 0..np {
        let (px, py) = (rect[0] as usize + p % width, rect[1] as usize + p / width);
        let src = (py * target.width as usize + px) * nc;
        let d = den[p].max(1e-12);
        for c in 0..nc {
            y[p * nc + c] = target.data[src + c] as f64 - fixed[p * nc + c] / d;
        }
    }
    // A is np × na with A[p][k] = w_pk / D_p (computed once); solve min ||A x - y|| for every
    // channel at once by CGLS, channels as 4-lane vectors.
    let na = active.len();
    let a: Vec<f32> = act
        .pix
        .iter()
        .zip(&act.w)
        .map(|(&p, &w)| (w as f64 / den[p as usize].max(1e-12)) as f32)
        .collect();
    let y4: Vec<[f64; 4]> = (0..np)
        .map(|p| {
            let mut v = [0f64; 4];
            v[..nc].copy_from_slice(&y[p * nc..p * nc + nc]);
            v
        })
        .collect();
    let apply = |x: &[[f64; 4]], out: &mut [[f64; 4]]| {
        out.fill([0.0; 4]);
        for (k, &(s, e)) in act.ranges.iter().enumerate() {
            let xk = x[k];
            for j in s..e {
                let o = &mut out[act.pix[j] as usize];
                let aj = a[j] as f64;
                for c in 0..4 {
                    o[c] += aj * xk[c];
                }
            }
        }
    };
    let apply_t = |r: &[[f64; 4]], out: &mut [[f64; 4]]| {
        for (k, &(s, e)) in act.ranges.iter().enumerate() {
            let mut acc = [0f64; 4];
            for j in s..e {
                let rp = r[act.pix[j] as usize];
                let aj = a[j] as f64;
                for c in 0..4 {
                    acc[c] += aj * rp[c];
                }
            }
            out[k] = acc;
        }
    };
    let norm = |v: &[[f64; 4]]| {
        let mut n = [0f64; 4];
        for e in v {
            for c in 0..4 {
                n[c] += e[c] * e[c];
            }
        }
        n
    };
    let mut x: Vec<[f64; 4]> = active
        .iter()
        .map(|&k| {
            let mut v = [0f64; 4];
            for c in 0..nc {
                v[c] = current[k][c] as f64;
            }
            v
        })
        .collect();
    let mut r = vec![[0f64; 4]; np];
    apply(&x, &mut r);
    for (ri, yi) in r.iter_mut().zip(&y4) {
        for c in 0..4 {
            ri[c] = yi[c] - ri[c];
        }
    }
    let mut s = vec![[0f64; 4]; na];
    apply_t(&r, &mut s);
    let mut p = s.clone();
    let mut q = vec![[0f64; 4]; np];
    let mut gamma = norm(&s);
    // A channel stops once its normal-equation residual has fallen by 1e-8 (or was zero): past
    // that, CG's step sizes are ratios of round-off and can overflow.
    let stop: [f64; 4] = std::array::from_fn(|c| gamma[c] * 1e-16);
    let mut live: [bool; 4] = std::array::from_fn(|c| c < nc && gamma[c] > 0.0);
    for _ in 0..opts.iterations {
        if !live.iter().any(|&l| l) {
            break;
        }
        apply(&p, &mut q);
        let qq = norm(&q);
        let alpha: [f64; 4] = std::array::from_fn(|c| {
            if live[c] && qq[c] > 0.0 {
                gamma[c] / qq[c]
            } else {
                0.0
            }
        });
        for (xi, pi) in x.iter_mut().zip(&p) {
            for c in 0..4 {
                xi[c] += alpha[c] * pi[c];
            }
        }
        for (ri, qi) in r.iter_mut().zip(&q) {
            for c in 0..4 {
                ri[c] -= alpha[c] * qi[c];
            }
        }
        apply_t(&r, &mut s);
        let g2 = norm(&s);
        let beta: [f64; 4] = std::array::from_fn(|c| {
            if live[c] && gamma[c] > 0.0 {
                g2[c] / gamma[c]
            } else {
                0.0
            }
        });
        for (pi, si) in p.iter_mut().zip(&s) {
            for c in 0..4 {
                pi[c] = si[c] + beta[c] * pi[c];
            }
        }
        for c in 0..4 {
            live[c] = live[c] && g2[c] > stop[c] && g2[c].is_finite();
        }
        gamma = g2;
    }
    active
        .iter()
        .enumerate()
        .map(|(i, &k)| {
            let mut c = current[k];
            for ch in 0..nc {
                // A non-finite result (which the stopping rule should prevent) keeps the colour.
                let v = x[i][ch] as f32;
                if v.is_finite() {
                    c[ch] = v.clamp(opts.clamp.0, opts.clamp.1);
                }
            }
            (k, c)
        })
        .collect()
}
