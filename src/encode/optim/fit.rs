//! Least-squares fit of Gaussian colours to a picture under the rendering rule (§3 at 1×).
//!
//! With the geometry fixed, a rendered pixel is linear in the colours:
//! `value_p = Σ_k (w_pk / D_p) c_k`, with `D_p = Σ_k w_pk`. The colours minimizing the squared
//! error to the picture are found by conjugate gradients on the normal equations, one spatial
//! chunk of Gaussians at a time (block Jacobi sweeps), so memory stays bounded for any picture
//! size: the per-pixel weights exist only for the one chunk being formed, and what a chunk keeps
//! for the sweeps is its normal equations, a few entries per Gaussian.
//!
//! Every loop over pixels or Gaussians runs in parallel; sums that cross them are taken over
//! fixed blocks, in order, so the result is the same whatever the number of threads.

use rayon::prelude::*;

use crate::core::frame::Frame;
use crate::core::geometry::{Projected, project, row_span, weight};
use crate::core::splat::Gaussian;

/// Side of a fitting chunk in native pixels.
const CHUNK: f64 = 384.0;

/// Chunks whose systems are formed at the same time: bounds the memory of the pixel tables (a
/// few tens of MB per chunk at the densest) while giving many threads enough work.
const CHUNKS_AT_ONCE: usize = 4;

/// Options of the fit.
#[derive(Debug, Clone, Copy)]
pub struct FitOptions {
    /// Conjugate-gradient iterations per chunk and sweep.
    pub iterations: usize,
    /// Jacobi sweeps over the chunks (1 is exact when the picture is a single chunk).
    pub sweeps: usize,
    /// Fitted values are clamped into this range.
    pub clamp: (f32, f32),
    /// Damping toward the current colours: each Gaussian's deviation from its colour before
    /// the fit costs `damping` times its own diagonal entry of the normal matrix (its
    /// `Σ_p A[p][k]²`), so a Gaussian the picture pins down little (small, or under large
    /// neighbours) keeps its colour instead of taking an extreme one; 0: plain least squares.
    pub damping: f64,
}

impl Default for FitOptions {
    fn default() -> Self {
        FitOptions {
            iterations: 40,
            sweeps: 3,
            clamp: (-0.25, 1.25),
            damping: 0.0,
        }
    }
}

/// Rows of a pixel band: the unit of the parallel pixel-major work (the pixel-major copy of the
/// weights, the denominators).
const BAND_ROWS: usize = 8;

/// Gaussians per block of the parallel Gaussian-major work (the weights, the rows of `N` and
/// `M`, `b_t`, products with `N` and `M`), and of the sums across them.
const GAUSSIAN_BLOCK: usize = 64;

/// The weights of some Gaussians over a pixel rectangle, Gaussian-major: for each Gaussian, its
/// pixels in raster order. Built in parallel over blocks of Gaussians (each one's entries are its
/// own).
struct Weights {
    /// `[x0, y0, x1, y1)` pixel rectangle.
    rect: [i64; 4],
    /// For each Gaussian, `start..end` into `pix` / `w`.
    ranges: Vec<(usize, usize)>,
    /// Pixel index in the rectangle, `(y - y0) · width + (x - x0)`.
    pix: Vec<u32>,
    /// The weight `w_pk` (for the active Gaussians, replaced by `A[p][k] = w_pk / D_p`).
    w: Vec<f32>,
}

impl Weights {
    fn new(projected: &[&Projected], rect: [i64; 4]) -> Weights {
        let width = rect[2] - rect[0];
        // Blocks of Gaussians in parallel, each into its own buffers (few allocations), then
        // concatenated in order.
        let per: Vec<(Vec<usize>, Vec<u32>, Vec<f32>)> = projected
            .par_chunks(GAUSSIAN_BLOCK)
            .map(|block| {
                let (mut ends, mut pix, mut w) = (Vec::with_capacity(block.len()), vec![], vec![]);
                for p in block {
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
                    ends.push(pix.len());
                }
                (ends, pix, w)
            })
            .collect();
        let total = per.iter().map(|(_, p, _)| p.len()).sum();
        let mut ranges = Vec::with_capacity(projected.len());
        let (mut pix, mut w) = (Vec::with_capacity(total), Vec::with_capacity(total));
        for (ends, p, wt) in &per {
            let base = pix.len();
            let mut s = base;
            for &e in ends {
                ranges.push((s, base + e));
                s = base + e;
            }
            pix.extend_from_slice(p);
            w.extend_from_slice(wt);
        }
        Weights {
            rect,
            ranges,
            pix,
            w,
        }
    }

    fn width(&self) -> usize {
        (self.rect[2] - self.rect[0]) as usize
    }

    fn pixels(&self) -> usize {
        self.width() * (self.rect[3] - self.rect[1]) as usize
    }

    /// The same entries pixel-major (compressed rows), cut into bands of [`BAND_ROWS`] rows.
    /// Each pixel lists its Gaussians in increasing index, the order in which a Gaussian-major
    /// scatter would have added them, so a per-pixel gather sums the very same terms in the very
    /// same order. Built in parallel over the bands: a Gaussian's entries are in raster order,
    /// so those inside a band are one contiguous run, found by binary search.
    fn bands(&self) -> Vec<Band> {
        let width = self.width();
        let band = BAND_ROWS * width;
        let np = self.pixels();
        (0..np.div_ceil(band))
            .into_par_iter()
            .map(|b| {
                let (lo, hi) = ((b * band) as u32, ((b + 1) * band).min(np) as u32);
                let n = (hi - lo) as usize;
                let runs: Vec<(u32, usize, usize)> = self
                    .ranges
                    .iter()
                    .enumerate()
                    .filter_map(|(k, &(s, e))| {
                        let pix = &self.pix[s..e];
                        if pix.is_empty() || pix[0] >= hi || pix[pix.len() - 1] < lo {
                            return None;
                        }
                        let a = s + pix.partition_point(|&p| p < lo);
                        let z = s + pix.partition_point(|&p| p < hi);
                        (a < z).then_some((k as u32, a, z))
                    })
                    .collect();
                // Counting sort by pixel, stable in the Gaussian index.
                let mut start = vec![0u32; n + 1];
                for &(_, a, z) in &runs {
                    for &p in &self.pix[a..z] {
                        start[(p - lo) as usize + 1] += 1;
                    }
                }
                for i in 0..n {
                    start[i + 1] += start[i];
                }
                let nnz = start[n] as usize;
                let mut next = start[..n].to_vec();
                let (mut col, mut w) = (vec![0u32; nnz], vec![0f32; nnz]);
                for &(k, a, z) in &runs {
                    for j in a..z {
                        let slot = &mut next[(self.pix[j] - lo) as usize];
                        col[*slot as usize] = k;
                        w[*slot as usize] = self.w[j];
                        *slot += 1;
                    }
                }
                Band { start, col, w }
            })
            .collect()
    }
}

/// A band of pixels' entries, pixel-major: pixel `i` of the band has `col[start[i]..start[i+1]]`
/// (Gaussian indices, increasing) with weights `w[..]` (for the active Gaussians, `A[p][k]`).
struct Band {
    start: Vec<u32>,
    col: Vec<u32>,
    w: Vec<f32>,
}

impl Band {
    fn entries(&self, i: usize) -> impl Iterator<Item = (usize, f32)> + '_ {
        let (s, e) = (self.start[i] as usize, self.start[i + 1] as usize);
        self.col[s..e]
            .iter()
            .zip(&self.w[s..e])
            .map(|(&k, &w)| (k as usize, w))
    }
}

/// Channel-wise sum of squares of `v`.
fn norm(v: &[[f64; 4]]) -> [f64; 4] {
    let mut n = [0f64; 4];
    for e in v {
        for c in 0..4 {
            n[c] += e[c] * e[c];
        }
    }
    n
}

/// A sparse matrix over the active Gaussians' rows in compressed rows, f64: the normal matrix
/// `N = AᵀA` (`N[k][l] = Σ_p A[p][k] A[p][l]`, over the pixels both reach) or the coupling to
/// the passive Gaussians `M` (`M[k][l] = Σ_p A[p][k] w_pl / D_p`).
struct Sparse {
    start: Vec<usize>,
    col: Vec<u32>,
    val: Vec<f64>,
}

impl Sparse {
    /// Row `k` gathers, over `k`'s pixels in raster order, the products of `A[p][k]` with the
    /// entries `v_pl` of the pixel in `bands` (each divided by `D_p` when `den` is given), in
    /// parallel over blocks of rows. `ncols` is the number of columns. For `N` (`bands` being
    /// `A` itself, no `den`), `N[k][l]` and `N[l][k]` add the same exact products (of two f32
    /// values, exact in f64) over the same pixels in the same order: the matrix is exactly
    /// symmetric. No row depends on how the rows are shared out among threads.
    fn product(
        act: &Weights,
        bands: &[Band],
        band: usize,
        den: Option<&[f64]>,
        ncols: usize,
    ) -> Sparse {
        let blocks: Vec<(Vec<usize>, Vec<u32>, Vec<f64>)> = act
            .ranges
            .par_chunks(GAUSSIAN_BLOCK)
            .map(|ranges| {
                // Where column `l` sits in the current row (u32::MAX: not yet there).
                let mut slot = vec![u32::MAX; ncols];
                let (mut ends, mut col, mut val) =
                    (Vec::with_capacity(ranges.len()), vec![], vec![]);
                for &(s, e) in ranges {
                    let row = col.len();
                    // The band of pixel `p`, followed as `p` increases (no division).
                    let (mut b, mut base) = (0, 0);
                    for j in s..e {
                        let p = act.pix[j] as usize;
                        while p >= base + band {
                            b += 1;
                            base += band;
                        }
                        let apk = act.w[j] as f64;
                        for (l, vpl) in bands[b].entries(p - base) {
                            let sl = &mut slot[l];
                            if *sl == u32::MAX {
                                *sl = (col.len() - row) as u32;
                                col.push(l as u32);
                                val.push(0.0);
                            }
                            let v = match den {
                                Some(d) => apk * vpl as f64 / d[p].max(1e-12),
                                None => apk * vpl as f64,
                            };
                            val[row + *sl as usize] += v;
                        }
                    }
                    for &l in &col[row..] {
                        slot[l as usize] = u32::MAX;
                    }
                    ends.push(col.len());
                }
                (ends, col, val)
            })
            .collect();
        let total = blocks.iter().map(|(_, c, _)| c.len()).sum();
        let mut start = Vec::with_capacity(act.ranges.len() + 1);
        start.push(0);
        let (mut col, mut val) = (Vec::with_capacity(total), Vec::with_capacity(total));
        for (ends, c, v) in &blocks {
            let base = col.len();
            start.extend(ends.iter().map(|&e| base + e));
            col.extend_from_slice(c);
            val.extend_from_slice(v);
        }
        Sparse { start, col, val }
    }

    /// `out = S·x`, in parallel over blocks of rows; returns `Σ_k y[k] out[k]` per channel
    /// (`yᵀS x`; with `y = x` and `S = N`, `||A x||²`), summed block by block in order.
    fn apply(&self, x: &[[f64; 4]], y: &[[f64; 4]], out: &mut [[f64; 4]]) -> [f64; 4] {
        let partial: Vec<[f64; 4]> = out
            .par_chunks_mut(GAUSSIAN_BLOCK)
            .enumerate()
            .map(|(bi, out)| {
                let mut n = [0f64; 4];
                for (i, o) in out.iter_mut().enumerate() {
                    let k = bi * GAUSSIAN_BLOCK + i;
                    let mut acc = [0f64; 4];
                    for j in self.start[k]..self.start[k + 1] {
                        let (v, xl) = (self.val[j], &x[self.col[j] as usize]);
                        for c in 0..4 {
                            acc[c] += v * xl[c];
                        }
                    }
                    for c in 0..4 {
                        n[c] += y[k][c] * acc[c];
                    }
                    *o = acc;
                }
                n
            })
            .collect();
        add_in_order(&partial)
    }
}

/// The sum of per-block partial sums, in block order.
fn add_in_order(partial: &[[f64; 4]]) -> [f64; 4] {
    let mut n = [0f64; 4];
    for e in partial {
        for c in 0..4 {
            n[c] += e[c];
        }
    }
    n
}

/// Fits the colours of `gaussians` (positions and shapes fixed) to `target`, in place.
pub fn fit_colors(target: &Frame<f32>, gaussians: &mut [Gaussian], opts: &FitOptions) {
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
    // Each chunk's system depends on the geometry only: formed once, then solved in every
    // sweep against the current colours. Up to [`CHUNKS_AT_ONCE`] chunks are formed side by side
    // (each also in parallel within: small chunks alone leave many threads idle), so the pixel
    // tables of at most that many chunks exist at any time.
    let systems: Vec<System> = members
        .chunks(CHUNKS_AT_ONCE)
        .flat_map(|group| {
            group
                .par_iter()
                .filter_map(|active| System::new(target, &projected, active))
                .collect::<Vec<_>>()
        })
        .collect();
    let sweeps = if cx * cy == 1 { 1 } else { opts.sweeps.max(1) };
    for _ in 0..sweeps {
        let current: Vec<[f32; 4]> = gaussians.iter().map(|g| g.color).collect();
        let updates: Vec<Vec<(usize, [f32; 4])>> = systems
            .par_iter()
            .map(|sys| sys.solve(&current, nc, opts))
            .collect();
        for (k, c) in updates.into_iter().flatten() {
            gaussians[k].color = c;
        }
    }
}

/// One chunk's least-squares problem in the colours of its active Gaussians, the others'
/// (passive) colours held fixed: minimize `||A x - y||` where `A[p][k] = w_pk / D_p` and
/// `y_p = t_p - Σ_l w_pl c_l / D_p` (`t` the picture, `l` over the passive Gaussians), through
/// its normal equations `N x = b`, `N = AᵀA`, `b = Aᵀy = b_t - M c`, with `b_t = Aᵀt` and
/// `M[k][l] = Σ_p A[p][k] w_pl / D_p`. `N`, `M` and `b_t` hold one entry per pair of
/// overlapping Gaussians (~15 a Gaussian) where `A` has one per pixel each covers (~200): the
/// pixel tables live only while the system is formed, and every sweep reuses it.
struct System {
    active: Vec<usize>,
    passive: Vec<usize>,
    normal: Sparse,
    coupling: Sparse,
    /// `b_t = Aᵀt`.
    bt: Vec<[f64; 4]>,
}

impl System {
    fn new(target: &Frame<f32>, projected: &[Projected], active: &[usize]) -> Option<System> {
        if active.is_empty() {
            return None;
        }
        let nc = target.channels();
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
            return None;
        }
        let in_rect = |p: &Projected| {
            p.bbox[0] < rect[2]
                && p.bbox[2] >= rect[0]
                && p.bbox[1] < rect[3]
                && p.bbox[3] >= rect[1]
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
        let (mut act_bands, pas_bands) = (act.bands(), pas.bands());
        drop(pas);
        let np = act.pixels();
        let width = act.width();
        let band = BAND_ROWS * width;
        // Per pixel (in parallel over the bands): the denominator `D_p` (active Gaussians' weights,
        // then the passive ones', each in index order) and the target, and the active entries
        // turned into `A[p][k] = w_pk / D_p` (f32, as A is held).
        let mut den = vec![0f64; np];
        let mut t4 = vec![[0f64; 4]; np];
        den.par_chunks_mut(band)
            .zip(t4.par_chunks_mut(band))
            .zip(act_bands.par_iter_mut().zip(&pas_bands))
            .enumerate()
            .for_each(|(b, ((den, t4), (ab, pb)))| {
                for i in 0..den.len() {
                    let mut d = 0f64;
                    for (_, w) in ab.entries(i) {
                        d += w as f64;
                    }
                    for (_, w) in pb.entries(i) {
                        d += w as f64;
                    }
                    den[i] = d;
                    let d = d.max(1e-12);
                    let p = b * band + i;
                    let (px, py) = (rect[0] as usize + p % width, rect[1] as usize + p / width);
                    let src = (py * target.width as usize + px) * nc;
                    for (t, &v) in t4[i].iter_mut().zip(&target.data[src..src + nc]) {
                        *t = v as f64;
                    }
                    let (s, e) = (ab.start[i] as usize, ab.start[i + 1] as usize);
                    for w in &mut ab.w[s..e] {
                        *w = (*w as f64 / d) as f32;
                    }
                }
            });
        let mut act = act;
        {
            let Weights { pix, w, .. } = &mut act;
            w.par_iter_mut()
                .zip(pix.par_iter())
                .for_each(|(w, &p)| *w = (*w as f64 / den[p as usize].max(1e-12)) as f32);
        }
        let normal = Sparse::product(&act, &act_bands, band, None, active.len());
        let coupling = Sparse::product(&act, &pas_bands, band, Some(&den), passive.len());
        let mut bt = vec![[0f64; 4]; active.len()];
        bt.par_chunks_mut(GAUSSIAN_BLOCK)
            .zip(act.ranges.par_chunks(GAUSSIAN_BLOCK))
            .for_each(|(out, ranges)| {
                for (o, &(s, e)) in out.iter_mut().zip(ranges) {
                    let mut acc = [0f64; 4];
                    for j in s..e {
                        let tp = &t4[act.pix[j] as usize];
                        let aj = act.w[j] as f64;
                        for c in 0..4 {
                            acc[c] += aj * tp[c];
                        }
                    }
                    *o = acc;
                }
            });
        Some(System {
            active: active.to_vec(),
            passive,
            normal,
            coupling,
            bt,
        })
    }

    /// The colours of the active Gaussians given the passive ones' in `current`, by conjugate
    /// gradients on `N x = b` from the current colours, every channel at once (channels as
    /// 4-lane vectors, f64). These are CGLS's iterates (CGLS is this iteration with `N·p`
    /// evaluated as `Aᵀ(A p)`), at a cost per step of `N`'s entries instead of twice `A`'s.
    fn solve(&self, current: &[[f32; 4]], nc: usize, opts: &FitOptions) -> Vec<(usize, [f32; 4])> {
        let (active, na) = (&self.active, self.active.len());
        let colors = |ids: &[usize]| -> Vec<[f64; 4]> {
            ids.iter()
                .map(|&k| {
                    let mut v = [0f64; 4];
                    for c in 0..nc {
                        v[c] = current[k][c] as f64;
                    }
                    v
                })
                .collect()
        };
        let mut x = colors(active);
        let fixed = colors(&self.passive);
        // s = b - N x0 = b_t - M c - N x0: the normal-equation residual, Aᵀ(y - A x0).
        let mut s = vec![[0f64; 4]; na];
        let mut t = vec![[0f64; 4]; na];
        self.coupling.apply(&fixed, &x, &mut s);
        self.normal.apply(&x, &x, &mut t);
        for ((si, ti), bi) in s.iter_mut().zip(&t).zip(&self.bt) {
            for c in 0..4 {
                si[c] = bi[c] - si[c] - ti[c];
            }
        }
        // Damping: the system is (N + D) x = b + D x0 with D = damping · diag(N); its residual
        // at x0 is the undamped one.
        let damp: Vec<f64> = if opts.damping > 0.0 {
            (0..na)
                .map(|k| {
                    let row = self.normal.start[k]..self.normal.start[k + 1];
                    let d = row
                        .map(|j| {
                            (self.normal.col[j] as usize == k) as u8 as f64 * self.normal.val[j]
                        })
                        .sum::<f64>();
                    opts.damping * d
                })
                .collect()
        } else {
            Vec::new()
        };
        let mut gamma = norm(&s);
        let mut p = s.clone();
        // A channel stops once its normal-equation residual has fallen by 1e-8 (or was zero): past
        // that, CG's step sizes are ratios of round-off and can overflow.
        let stop: [f64; 4] = std::array::from_fn(|c| gamma[c] * 1e-16);
        let mut live: [bool; 4] = std::array::from_fn(|c| c < nc && gamma[c] > 0.0);
        for _ in 0..opts.iterations {
            if !live.iter().any(|&l| l) {
                break;
            }
            // pᵀNp = ||A p||² (plus pᵀDp, and D p added to N p, when damped).
            let mut qq = self.normal.apply(&p, &p, &mut t);
            for ((ti, pi), &d) in t.iter_mut().zip(&p).zip(&damp) {
                for c in 0..4 {
                    ti[c] += d * pi[c];
                    qq[c] += d * pi[c] * pi[c];
                }
            }
            let alpha: [f64; 4] = std::array::from_fn(|c| {
                if live[c] && qq[c] > 0.0 {
                    gamma[c] / qq[c]
                } else {
                    0.0
                }
            });
            for ((xi, si), (pi, ti)) in x.iter_mut().zip(&mut s).zip(p.iter().zip(&t)) {
                for c in 0..4 {
                    xi[c] += alpha[c] * pi[c];
                    si[c] -= alpha[c] * ti[c];
                }
            }
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ChannelLayout;

    /// `n` pseudo-random Gaussians over `w × h` (a fixed LCG: the same every run).
    fn gaussians(w: u32, h: u32, n: usize) -> Vec<Gaussian> {
        let mut s = 0x2545_f491_4f6c_dd1du64;
        let mut u = move || {
            s = s
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (s >> 40) as f32 / (1u64 << 24) as f32
        };
        (0..n)
            .map(|_| Gaussian {
                x: u() * w as f32,
                y: u() * h as f32,
                scale: [1.0 + 7.0 * u(), 1.0 + 4.0 * u()],
                rotation: 3.0 * u(),
                color: [u(), u(), u(), 0.0],
            })
            .collect()
    }

    /// `gs` rendered by the rule the fit inverts, `Σ_k w_pk c_k / D_p` (0 where no Gaussian
    /// reaches), plus a smooth pattern when `pattern` (not representable, so residuals remain).
    fn picture(w: u32, h: u32, gs: &[Gaussian], pattern: bool) -> Frame<f32> {
        let mut num = vec![[0f64; 3]; (w * h) as usize];
        let mut den = vec![0f64; (w * h) as usize];
        for g in gs {
            let p = project(g, 1.0, 1.0);
            for y in p.bbox[1].max(0)..=p.bbox[3].min(h as i64 - 1) {
                for x in p.bbox[0].max(0)..=p.bbox[2].min(w as i64 - 1) {
                    let wt = weight(&p, x, y) as f64;
                    let i = (y * w as i64 + x) as usize;
                    den[i] += wt;
                    for (n, &c) in num[i].iter_mut().zip(&g.color) {
                        *n += wt * c as f64;
                    }
                }
            }
        }
        let mut data = Vec::with_capacity((w * h * 3) as usize);
        for (i, (n, d)) in num.iter().zip(&den).enumerate() {
            let (x, y) = ((i as u32 % w) as f64, (i as u32 / w) as f64);
            for (c, v) in n.iter().enumerate() {
                let extra = if pattern {
                    0.2 * ((x * 0.05 + c as f64).sin() * (y * 0.07).cos())
                } else {
                    0.0
                };
                data.push((if *d > 0.0 { v / d } else { 0.0 } + extra) as f32);
            }
        }
        Frame {
            width: w,
            height: h,
            layout: ChannelLayout::Rgb,
            data,
        }
    }

    #[test]
    fn same_colours_for_any_thread_count() {
        // 3 × 2 chunks (formed in two groups, 4 then 2, side by side): the sweeps, the couplings
        // between chunks and every parallel loop.
        let (w, h) = (900, 500);
        let gs = gaussians(w, h, 3000);
        let target = picture(w, h, &gaussians(w, h, 700), true);
        let opts = FitOptions {
            iterations: 15,
            sweeps: 2,
            ..FitOptions::default()
        };
        let fit = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            let mut g = gs.clone();
            pool.install(|| fit_colors(&target, &mut g, &opts));
            g.iter()
                .map(|g| g.color.map(f32::to_bits))
                .collect::<Vec<_>>()
        };
        let one = fit(1);
        assert_ne!(
            one,
            gs.iter()
                .map(|g| g.color.map(f32::to_bits))
                .collect::<Vec<_>>()
        );
        assert_eq!(one, fit(2));
        assert_eq!(one, fit(3));
    }

    #[test]
    fn recovers_representable_colours() {
        // A picture the Gaussians render exactly: the least-squares colours are theirs.
        let (w, h) = (120, 90);
        let truth = gaussians(w, h, 30);
        let target = picture(w, h, &truth, false);
        let mut gs = truth.clone();
        for g in &mut gs {
            g.color = [0.5, 0.5, 0.5, 0.0];
        }
        let opts = FitOptions {
            iterations: 400,
            ..FitOptions::default()
        };
        fit_colors(&target, &mut gs, &opts);
        let fitted = picture(w, h, &gs, false);
        let mse = target
            .data
            .iter()
            .zip(&fitted.data)
            .map(|(a, b)| ((a - b) as f64).powi(2))
            .sum::<f64>()
            / target.data.len() as f64;
        assert!(mse < 1e-9, "mse {mse}");
    }

    /// A damped fit solves `(N + μ·diag N) x = b + μ·diag N · x0` (x0 the colours before the
    /// fit), and pulls the colours the picture pins down little less far than plain least
    /// squares does.
    #[test]
    fn damped_fit_solves_the_damped_normal_equations() {
        let (w, h) = (120, 90);
        let mut gs = gaussians(w, h, 40);
        // Small Gaussians under the large ones: the picture pins their colours down little.
        for (i, g) in gaussians(w, h, 12).into_iter().enumerate() {
            gs.push(Gaussian {
                scale: [0.5, 0.5],
                color: [0.2 + 0.05 * i as f32, 0.5, 0.4, 0.0],
                ..g
            });
        }
        let target = picture(w, h, &gaussians(w, h, 25), true);
        let start: Vec<[f32; 4]> = gs.iter().map(|g| g.color).collect();
        let opts = |damping| FitOptions {
            iterations: 2000,
            clamp: (-1e3, 1e3),
            damping,
            ..FitOptions::default()
        };
        let mu = 0.1;
        let (mut damped, mut plain) = (gs.clone(), gs.clone());
        fit_colors(&target, &mut damped, &opts(mu));
        fit_colors(&target, &mut plain, &opts(0.0));
        let projected: Vec<Projected> = gs.iter().map(|g| project(g, 1.0, 1.0)).collect();
        let active: Vec<usize> = (0..gs.len()).collect();
        let sys = System::new(&target, &projected, &active).unwrap();
        let n = &sys.normal;
        let diag = |k: usize| {
            (n.start[k]..n.start[k + 1])
                .find(|&j| n.col[j] as usize == k)
                .map_or(0.0, |j| n.val[j])
        };
        for c in 0..3 {
            let mut worst: f64 = 0.0;
            let scale = sys.bt.iter().map(|b| b[c].abs()).fold(0.0, f64::max);
            for k in 0..gs.len() {
                let mut r =
                    -sys.bt[k][c] + mu * diag(k) * (damped[k].color[c] as f64 - start[k][c] as f64);
                for j in n.start[k]..n.start[k + 1] {
                    r += n.val[j] * damped[n.col[j] as usize].color[c] as f64;
                }
                worst = worst.max(r.abs());
            }
            assert!(
                worst < 1e-4 * scale,
                "channel {c}: residual {worst} of {scale}"
            );
        }
        // The small Gaussians move less from their start damped than undamped.
        let moved = |fitted: &[Gaussian]| -> f64 {
            (40..gs.len())
                .map(|k| {
                    (0..3)
                        .map(|c| (fitted[k].color[c] - start[k][c]).abs() as f64)
                        .sum::<f64>()
                })
                .sum()
        };
        assert!(
            moved(&damped) < 0.95 * moved(&plain),
            "damped {} undamped {}",
            moved(&damped),
            moved(&plain)
        );
    }

    #[test]
    fn system_is_the_normal_equations() {
        // N = AᵀA, M and b_t against a dense evaluation from the definitions, with passive
        // Gaussians (the picture is two chunks wide).
        let (w, h) = (500, 60);
        let gs = gaussians(w, h, 150);
        let target = picture(w, h, &gaussians(w, h, 40), true);
        let projected: Vec<Projected> = gs.iter().map(|g| project(g, 1.0, 1.0)).collect();
        let active: Vec<usize> = (0..gs.len()).filter(|&k| gs[k].x < CHUNK as f32).collect();
        let sys = System::new(&target, &projected, &active).unwrap();
        assert!(!sys.passive.is_empty());
        let np = (w * h) as usize;
        let mut wt = vec![vec![0f64; np]; gs.len()];
        let mut den = vec![0f64; np];
        for (k, p) in projected.iter().enumerate() {
            for y in p.bbox[1].max(0)..=p.bbox[3].min(h as i64 - 1) {
                let (lo, hi) = row_span(p, y);
                for x in lo.max(0)..=hi.min(w as i64 - 1) {
                    let i = (y * w as i64 + x) as usize;
                    wt[k][i] = weight(p, x, y) as f64;
                    den[i] += wt[k][i];
                }
            }
        }
        let a = |k: usize, i: usize| wt[k][i] / den[i].max(1e-12);
        let dense = |m: &Sparse, k: usize, l: usize| {
            (m.start[k]..m.start[k + 1])
                .find(|&j| m.col[j] as usize == l)
                .map_or(0.0, |j| m.val[j])
        };
        let close = |x: f64, y: f64| (x - y).abs() <= 1e-5 * (x.abs() + y.abs()) + 1e-9;
        for (i, &k) in active.iter().enumerate() {
            for (j, &l) in active.iter().enumerate() {
                let want: f64 = (0..np).map(|p| a(k, p) * a(l, p)).sum();
                let got = dense(&sys.normal, i, j);
                assert!(close(got, want), "N[{i}][{j}] {got} vs {want}");
                assert_eq!(got.to_bits(), dense(&sys.normal, j, i).to_bits());
            }
            for (j, &l) in sys.passive.iter().enumerate() {
                let want: f64 = (0..np)
                    .map(|p| a(k, p) * wt[l][p] / den[p].max(1e-12))
                    .sum();
                let got = dense(&sys.coupling, i, j);
                assert!(close(got, want), "M[{i}][{j}] {got} vs {want}");
            }
            for c in 0..3 {
                let want: f64 = (0..np)
                    .map(|p| a(k, p) * target.data[p * 3 + c] as f64)
                    .sum();
                assert!(close(sys.bt[i][c], want), "b_t[{i}][{c}]");
            }
        }
    }
}
