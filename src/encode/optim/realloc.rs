//! Moving, adding and removing Gaussians where the error says, before (or between rounds of)
//! refinement.
//!
//! Gradient refinement moves each Gaussian only a little, so it keeps the allocation it starts
//! from: a start with Gaussians spread evenly (as the compact network's, about one per 8×8 cell
//! whatever the content) refines much less well than the quadtree's (BENCHMARKS.md). One pass
//! of [`adapt`] removes some Gaussians and adds some:
//!
//! 1. **Removal cost.** With the blend `C_p = N_p / D_p`, removing Gaussian `k` turns a pixel it
//!    reaches into `C'_p = (N_p − w_pk c_k) / (D_p − w_pk)`. Its exact cost on its own is
//!    `ΔE_k = Σ_p ‖C'_p − I_p‖² − ‖C_p − I_p‖²`, computed over its footprint (a pixel it alone
//!    covers becomes 0, as §3.4 renders it). Every Gaussian costs about the same bits, so this
//!    is also the order of rate–distortion value: the cheapest is worth least per bit.
//! 2. **Removal.** The cheapest go, in order of cost, skipping one whose centre lies within
//!    reach of one already removed (two cheap neighbours are often cheap only because each
//!    covers for the other). A pass removes at most what that rule allows; [`prune`] repeats
//!    passes (costs measured again each time) down to a count.
//! 3. **Addition.** On the error map of what is left, new Gaussians go to the pixels of largest
//!    error (a greedy pick, at least 2 px apart), small and round, with the colour that
//!    would make their pixel exact if the blend were theirs alone: the least-squares colour fit
//!    and refinement that follow settle them.
//!
//! [`densify`] only adds, in rounds with the colours fitted between them, for an encode
//! without refinement (smaller Gaussians then, as nothing adapts their size). [`reallocate`]
//! removes and adds the same number (a move); the refinement's rounds
//! ([`refine_to_with_progress`](super::refine::refine_to_with_progress)) add or remove more
//! to bring the count to a budget: densification where the error is, pruning of what does
//! not pay.
//!
//! Everything runs at 1× with the spec's weights (`core::geometry`), in a fixed order, so the
//! result does not depend on the thread count.
//!
//! A refinement on the GPU measures the removal costs and the error maps there
//! (`GpuRefiner::removal_costs` and the forward blend of `kernels/refine.cu`): the same
//! quantities summed in another fixed order, so its moves differ from the CPU's only where two
//! costs or errors are within round-off. The order, the neighbour test and the picks run on the
//! host either way.

use rayon::prelude::*;

use crate::core::frame::Frame;
use crate::core::geometry::{MIN_WEIGHT_SUM, Projected, project, row_span, weight};
use crate::core::splat::Gaussian;
use crate::cuda::GpuRefiner;
use crate::encode::optim::fit::{FitOptions, fit_colors};

/// Where and how large Gaussians are added: at least `spacing` native pixels apart, round with
/// σ = `sigma` native pixels.
#[derive(Debug, Clone, Copy)]
struct Added {
    spacing: f32,
    sigma: f32,
}

/// Gaussians added before refinement (which adapts their size): 2 px apart, σ 1 px.
const REFINED_ADDED: Added = Added {
    spacing: 2.0,
    sigma: 1.0,
};

/// Gaussians added without refinement ([`densify`]): at the error's peaks and of about their
/// size, σ half a pixel (on held-out pictures at 2.5 times the network's count, σ 1 px gave
/// 32.05 dB, 0.7 px 33.07, 0.5 px 33.31, 0.35 px 32.89 at equal rate within 3 %).
const UNREFINED_ADDED: Added = Added {
    spacing: 2.0,
    sigma: 0.5,
};

/// Per-pixel numerator (4 channels) and denominator of the blend at 1×.
struct Blend {
    num: Vec<[f32; 4]>,
    den: Vec<f32>,
}

fn blend(width: usize, height: usize, projected: &[Projected], nc: usize) -> Blend {
    // Rows in parallel: each band of rows sums its Gaussians in index order (deterministic).
    const BAND: usize = 16;
    let mut num = vec![[0f32; 4]; width * height];
    let mut den = vec![0f32; width * height];
    num.par_chunks_mut(BAND * width)
        .zip(den.par_chunks_mut(BAND * width))
        .enumerate()
        .for_each(|(band, (num, den))| {
            let (y0, y1) = ((band * BAND) as i64, ((band + 1) * BAND).min(height) as i64);
            for p in projected {
                if p.bbox[3] < y0 || p.bbox[1] >= y1 {
                    continue;
                }
                for y in p.bbox[1].max(y0)..=p.bbox[3].min(y1 - 1) {
                    let (lo, hi) = row_span(p, y);
                    for x in lo.max(0)..=hi.min(width as i64 - 1) {
                        let w = weight(p, x, y);
                        if w > 0.0 {
                            let i = (y - y0) as usize * width + x as usize;
                            den[i] += w;
                            for (n, &c) in num[i].iter_mut().zip(&p.color).take(nc) {
                                *n += w * c;
                            }
                        }
                    }
                }
            }
        });
    Blend { num, den }
}

fn value(num: f32, den: f32) -> f32 {
    num / den.max(MIN_WEIGHT_SUM)
}

/// Moves `round(fraction · n)` of `gaussians` from where they matter least to where the render
/// of `gaussians` is furthest from `target` (see the module documentation). The count does not
/// change. Returns how many were moved.
#[cfg(any(test, feature = "unstable"))]
pub fn reallocate(target: &Frame<f32>, gaussians: &mut Vec<Gaussian>, fraction: f32) -> usize {
    on_cpu(reallocate_on(target, gaussians, fraction, None))
}

/// [`reallocate`] with the removal costs and the error map measured on `gpu` when given.
pub(crate) fn reallocate_on(
    target: &Frame<f32>,
    gaussians: &mut Vec<Gaussian>,
    fraction: f32,
    gpu: Option<&mut GpuRefiner>,
) -> crate::Result<usize> {
    let n = gaussians.len();
    let m = ((fraction.clamp(0.0, 0.5) as f64 * n as f64).round() as usize).min(n);
    Ok(adapt_on(target, gaussians, m, m, gpu)?.0)
}

/// What the CPU path returns (it has no error to return).
fn on_cpu<T>(r: crate::Result<T>) -> T {
    r.unwrap_or_else(|e| unreachable!("the moves on the CPU do not fail ({e})"))
}

/// Removes up to `remove` of `gaussians`, those whose removal costs least (at most one of any
/// two neighbours, and never the last one), then adds up to `add` at the largest errors of what
/// is left (see the module documentation). New Gaussians take the removed ones' slots in order
/// (the cheapest removal's first), further ones are appended; when fewer could be added than
/// were removed and `add ≥ remove` (a move), the costliest removals are undone, so a move
/// never lowers the count. Returns (removed, added).
#[cfg(any(test, feature = "unstable"))]
pub fn adapt(
    target: &Frame<f32>,
    gaussians: &mut Vec<Gaussian>,
    remove: usize,
    add: usize,
) -> (usize, usize) {
    on_cpu(adapt_on(target, gaussians, remove, add, None))
}

/// [`adapt`] with the removal costs and the error map measured on `gpu` when given (the same
/// quantities, summed in another order: the choices can differ where two costs or errors are
/// within round-off). A GPU error is returned before `gaussians` changes.
pub(crate) fn adapt_on(
    target: &Frame<f32>,
    gaussians: &mut Vec<Gaussian>,
    remove: usize,
    add: usize,
    gpu: Option<&mut GpuRefiner>,
) -> crate::Result<(usize, usize)> {
    adapt_with(
        target,
        gaussians,
        remove,
        add,
        MOVE_REACH,
        REFINED_ADDED,
        gpu,
    )
}

/// How far (in its largest σ) a removed Gaussian keeps others from being removed in the same
/// pass, for a move: a few removals among many, a neighbour's cost measured with it present
/// is nearly right.
const MOVE_REACH: f32 = 1.5;

/// The same for pruning, which removes up to a quarter in a pass: the whole footprint (3σ),
/// so no two removed in one pass overlap much and no pass opens holes the costs did not see.
/// (1.5σ gave a better picture at very low counts, 24.9 against 20.9 dB at 0.2 times the
/// network's count refined on one held-out picture, but a quality curve that was not
/// monotone: a refined quality 40 above 50 in PSNR on a small crop.)
const PRUNE_REACH: f32 = 3.0;

/// Each Gaussian's removal cost on its own (the module documentation's ΔE_k) against the
/// blend `b` of all of `projected`.
fn costs_of(target: &Frame<f32>, projected: &[Projected], b: &Blend) -> Vec<f64> {
    let nc = target.channels();
    let (width, height) = (target.width as usize, target.height as usize);
    let pixel = |x: i64, y: i64| {
        let s = (y as usize * width + x as usize) * nc;
        &target.data[s..s + nc]
    };
    projected
        .par_iter()
        .map(|p| {
            let mut delta = 0f64;
            for y in p.bbox[1].max(0)..=p.bbox[3].min(height as i64 - 1) {
                let (lo, hi) = row_span(p, y);
                for x in lo.max(0)..=hi.min(width as i64 - 1) {
                    let w = weight(p, x, y);
                    if w <= 0.0 {
                        continue;
                    }
                    let i = y as usize * width + x as usize;
                    let (num, den) = (b.num[i], b.den[i]);
                    let rest = den - w;
                    let t = pixel(x, y);
                    for c in 0..nc {
                        let now = value(num[c], den) - t[c];
                        let after = if rest > 1e-6 * den {
                            (num[c] - w * p.color[c]) / rest
                        } else {
                            0.0
                        } - t[c];
                        delta += (after * after - now * now) as f64;
                    }
                }
            }
            delta
        })
        .collect()
}

/// The squared error per pixel (summed over the channels) of the blend `b` against `target`.
fn error_of(target: &Frame<f32>, b: &Blend) -> Vec<f32> {
    let nc = target.channels();
    let width = target.width as usize;
    (0..width * target.height as usize)
        .into_par_iter()
        .map(|i| {
            let s = i * nc;
            let t = &target.data[s..s + nc];
            (0..nc)
                .map(|c| (value(b.num[i][c], b.den[i]) - t[c]).powi(2))
                .sum()
        })
        .collect()
}

/// The cost of removing each of `gaussians` on its own (ΔE_k of the module documentation, in
/// squared channel values), as [`adapt`] measures it on the CPU.
#[cfg(any(test, feature = "unstable"))]
pub fn removal_costs(target: &Frame<f32>, gaussians: &[Gaussian]) -> Vec<f64> {
    let projected: Vec<Projected> = gaussians.par_iter().map(|g| project(g, 1.0, 1.0)).collect();
    let b = blend(
        target.width as usize,
        target.height as usize,
        &projected,
        target.channels(),
    );
    costs_of(target, &projected, &b)
}

/// The squared error per pixel (summed over the channels, row-major) of the render at 1× of
/// `gaussians` — of those whose `keep` entry is true when `keep` is given — against `target`,
/// as [`adapt`] computes it on the CPU to place new Gaussians.
#[cfg(any(test, feature = "unstable"))]
pub fn error_map(target: &Frame<f32>, gaussians: &[Gaussian], keep: Option<&[bool]>) -> Vec<f32> {
    let projected: Vec<Projected> = gaussians
        .iter()
        .enumerate()
        .filter(|(k, _)| keep.is_none_or(|keep| keep.get(*k).copied().unwrap_or(false)))
        .map(|(_, g)| project(g, 1.0, 1.0))
        .collect();
    let b = blend(
        target.width as usize,
        target.height as usize,
        &projected,
        target.channels(),
    );
    error_of(target, &b)
}

/// [`adapt`] with removals at least `reach` times the larger σ apart, additions as `new` says;
/// the removal costs and the error map measured on `gpu` when given (the removal order, the
/// neighbour test and the picks on the host either way). A GPU error is returned before
/// `gaussians` changes.
fn adapt_with(
    target: &Frame<f32>,
    gaussians: &mut Vec<Gaussian>,
    remove: usize,
    add: usize,
    reach: f32,
    new: Added,
    mut gpu: Option<&mut GpuRefiner>,
) -> crate::Result<(usize, usize)> {
    let n = gaussians.len();
    let m = remove.min(n.saturating_sub(1));
    if n == 0 || (m == 0 && add == 0) {
        return Ok((0, 0));
    }
    let nc = target.channels();
    let (width, height) = (target.width as usize, target.height as usize);
    // On the CPU: the projections and the blend of all (reused for the error map when nothing
    // is removed).
    let cpu = match gpu {
        Some(_) => None,
        None => {
            let projected: Vec<Projected> =
                gaussians.par_iter().map(|g| project(g, 1.0, 1.0)).collect();
            let b = blend(width, height, &projected, nc);
            Some((projected, b))
        }
    };
    let pixel = |x: i64, y: i64| {
        let s = (y as usize * width + x as usize) * nc;
        &target.data[s..s + nc]
    };

    // 1. Removal cost of each Gaussian alone.
    let cost: Vec<f64> = if m == 0 {
        Vec::new()
    } else {
        match (&mut gpu, &cpu) {
            (Some(g), _) => g.removal_costs(gaussians)?,
            (None, Some((projected, b))) => costs_of(target, projected, b),
            (None, None) => unreachable!("the CPU blend is made without a GPU"),
        }
    };

    // 2. Removal, cheapest first, not next to one already removed.
    let mut order: Vec<usize> = if m == 0 { Vec::new() } else { (0..n).collect() };
    order.sort_by(|&a, &b| cost[a].total_cmp(&cost[b]).then(a.cmp(&b)));
    let reach = |g: &Gaussian| reach * g.scale[0].max(g.scale[1]);
    let mut removed = vec![false; n];
    let mut taken: Vec<usize> = Vec::with_capacity(m);
    // Removed centres, bucketed on a coarse grid for the neighbour test.
    const CELL: f32 = 16.0;
    let gw = width.div_ceil(CELL as usize).max(1);
    let gh = height.div_ceil(CELL as usize).max(1);
    let mut grid: Vec<Vec<usize>> = vec![Vec::new(); gw * gh];
    let bucket = |x: f32, y: f32| {
        let i = ((x / CELL).floor().max(0.0) as usize).min(gw - 1);
        let j = ((y / CELL).floor().max(0.0) as usize).min(gh - 1);
        (i, j)
    };
    for &k in &order {
        if taken.len() == m {
            break;
        }
        let g = &gaussians[k];
        let r = reach(g);
        let (bi, bj) = bucket(g.x, g.y);
        let span = (r / CELL).ceil() as usize + 1;
        let mut near = false;
        'scan: for j in bj.saturating_sub(span)..=(bj + span).min(gh - 1) {
            for i in bi.saturating_sub(span)..=(bi + span).min(gw - 1) {
                for &o in &grid[j * gw + i] {
                    let h = &gaussians[o];
                    let d2 = (h.x - g.x).powi(2) + (h.y - g.y).powi(2);
                    if d2 < r.max(reach(h)).powi(2) {
                        near = true;
                        break 'scan;
                    }
                }
            }
        }
        if near {
            continue;
        }
        removed[k] = true;
        taken.push(k);
        grid[bj * gw + bi].push(k);
    }
    let want_added = if add >= remove {
        // A move never shrinks: add at least what was removed, plus the asked-for surplus.
        taken.len() + (add - remove)
    } else {
        add
    };
    if want_added == 0 && taken.is_empty() {
        return Ok((0, 0));
    }

    if want_added == 0 {
        // Removals only (a pruning pass): no error map is needed.
        return Ok(finish(gaussians, &taken, Vec::new(), n, remove, add));
    }

    // 3. Error map of what is left (the blend already made when nothing was removed), then
    // additions at its largest values.
    let (left, err) = match (gpu, cpu) {
        (Some(g), _) => {
            let keep: Vec<bool> = removed.iter().map(|r| !r).collect();
            let keep = (!taken.is_empty()).then_some(&keep[..]);
            let (num, den_err) = g.blend_maps(gaussians, keep)?;
            let err = den_err.iter().map(|d| d[1]).collect();
            let den = den_err.iter().map(|d| d[0]).collect();
            (Blend { num, den }, err)
        }
        (None, Some((projected, b))) => {
            let left = if taken.is_empty() {
                b
            } else {
                let kept: Vec<Projected> = projected
                    .iter()
                    .zip(&removed)
                    .filter(|(_, r)| !**r)
                    .map(|(p, _)| *p)
                    .collect();
                blend(width, height, &kept, nc)
            };
            let err = error_of(target, &left);
            (left, err)
        }
        (None, None) => unreachable!("the CPU blend is made without a GPU"),
    };
    let probe = Gaussian {
        x: 0.5,
        y: 0.5,
        scale: [new.sigma, new.sigma],
        rotation: 0.0,
        color: [0.0; 4],
    };
    let peak_weight = project(&probe, 1.0, 1.0).amp;
    let spacing = new.spacing.ceil() as i64;
    let added: Vec<Gaussian> = peaks(&err, width, height, spacing, want_added)
        .into_iter()
        .map(|i| {
            let (x, y) = ((i % width) as i64, (i / width) as i64);
            // The colour that makes this pixel exact: (N + w c) / (D + w) = I.
            let t = pixel(x, y);
            let mut color = [0f32; 4];
            for c in 0..nc {
                let v = (t[c] * (left.den[i] + peak_weight) - left.num[i][c]) / peak_weight;
                color[c] = v.clamp(-0.25, 1.25);
            }
            Gaussian {
                x: x as f32 + 0.5,
                y: y as f32 + 0.5,
                scale: [new.sigma, new.sigma],
                rotation: 0.0,
                color,
            }
        })
        .collect();
    Ok(finish(gaussians, &taken, added, n, remove, add))
}

/// Puts `added` into the slots of the removed Gaussians `taken` (the cheapest removals first)
/// and appends further ones. Removed slots left over are deleted, except in a move
/// (`add ≥ remove`), where fewer peaks than removals (a tiny picture) undo the costliest
/// removals. Returns (removed, added).
fn finish(
    gaussians: &mut Vec<Gaussian>,
    taken: &[usize],
    added: Vec<Gaussian>,
    n: usize,
    remove: usize,
    add: usize,
) -> (usize, usize) {
    let added_n = added.len();
    let mut added = added.into_iter();
    for (&k, g) in taken.iter().zip(added.by_ref()) {
        gaussians[k] = g;
    }
    let removed_n = if add >= remove {
        added_n.min(taken.len())
    } else {
        let mut gone = vec![false; n];
        for &k in &taken[added_n.min(taken.len())..] {
            gone[k] = true;
        }
        let mut i = 0;
        gaussians.retain(|_| {
            i += 1;
            !gone[i - 1]
        });
        taken.len()
    };
    gaussians.extend(added);
    (removed_n, added_n)
}

/// Up to `want` pixels of a `width × height` error map, greedily by decreasing error (ties by
/// index), each at least `spacing` pixels (Chebyshev) from those picked before it.
///
/// A pick blocks at most (2·spacing − 1)² pixels, itself included, so the first
/// (2·spacing − 1)² · `want` pixels of the order hold every pixel the greedy pick reaches
/// before it has `want`: only those are sorted (a partial selection first), which gives the
/// same picks as sorting the whole map at a fraction of the cost.
fn peaks(err: &[f32], width: usize, height: usize, spacing: i64, want: usize) -> Vec<usize> {
    let by_error = |&a: &u32, &b: &u32| err[b as usize].total_cmp(&err[a as usize]).then(a.cmp(&b));
    let mut order: Vec<u32> = (0..(width * height) as u32).collect();
    let candidates = ((2 * spacing - 1).pow(2) as usize).saturating_mul(want);
    if candidates < order.len() {
        order.select_nth_unstable_by(candidates, by_error);
        order.truncate(candidates);
    }
    order.par_sort_unstable_by(by_error);
    let mut blocked = vec![false; width * height];
    let mut picked = Vec::with_capacity(want);
    for &i in &order {
        if picked.len() == want {
            break;
        }
        let i = i as usize;
        if blocked[i] {
            continue;
        }
        let (x, y) = ((i % width) as i64, (i / width) as i64);
        for yy in (y - spacing + 1).max(0)..=(y + spacing - 1).min(height as i64 - 1) {
            for xx in (x - spacing + 1).max(0)..=(x + spacing - 1).min(width as i64 - 1) {
                blocked[yy as usize * width + xx as usize] = true;
            }
        }
        picked.push(i);
    }
    picked
}

/// Removes the Gaussians whose removal costs least until `budget` are left (at least one),
/// in passes of at most a quarter of the count each, their costs measured again before each
/// pass, and no two removed in one pass within 3σ of each other. Returns how many were removed (fewer when no pass finds one to remove).
#[cfg(any(test, feature = "unstable"))]
pub fn prune(target: &Frame<f32>, gaussians: &mut Vec<Gaussian>, budget: usize) -> usize {
    on_cpu(prune_on(target, gaussians, budget, None))
}

/// [`prune`] with the removal costs measured on `gpu` when given. After a GPU error the passes
/// already made stay made.
pub(crate) fn prune_on(
    target: &Frame<f32>,
    gaussians: &mut Vec<Gaussian>,
    budget: usize,
    mut gpu: Option<&mut GpuRefiner>,
) -> crate::Result<usize> {
    let budget = budget.max(1);
    let mut removed = 0;
    while gaussians.len() > budget {
        let excess = gaussians.len() - budget;
        let pass = excess.min(gaussians.len().div_ceil(4));
        let g = gpu.as_deref_mut();
        let (r, _) = adapt_with(target, gaussians, pass, 0, PRUNE_REACH, REFINED_ADDED, g)?;
        if r == 0 {
            break;
        }
        removed += r;
    }
    Ok(removed)
}

/// Adds Gaussians where the error is until `budget` are there, for an encode without
/// refinement: in `rounds` rounds of equal shares, each at the largest errors of the render as
/// it stands (the first with the colours given, each later one after a least-squares fit of all
/// colours, `fit`), σ half a pixel. The caller fits the colours after. Returns how many were
/// added (fewer when the picture has fewer error peaks than asked).
pub fn densify(
    target: &Frame<f32>,
    gaussians: &mut Vec<Gaussian>,
    budget: usize,
    rounds: usize,
    fit: &FitOptions,
) -> usize {
    let want = budget.saturating_sub(gaussians.len());
    if want == 0 {
        return 0;
    }
    let rounds = rounds.max(1);
    let mut added = 0;
    for r in 0..rounds {
        let share = want * (r + 1) / rounds - want * r / rounds;
        if r > 0 {
            fit_colors(target, gaussians, fit);
        }
        let (_, a) = on_cpu(adapt_with(
            target,
            gaussians,
            0,
            share,
            MOVE_REACH,
            UNREFINED_ADDED,
            None,
        ));
        added += a;
        if a < share {
            break;
        }
    }
    added
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ChannelLayout;

    fn mse(target: &Frame<f32>, gs: &[Gaussian]) -> f64 {
        let projected: Vec<Projected> = gs.iter().map(|g| project(g, 1.0, 1.0)).collect();
        let b = blend(target.width as usize, target.height as usize, &projected, 3);
        let mut e = 0f64;
        for (i, t) in target.data.chunks(3).enumerate() {
            for (&n, &t) in b.num[i].iter().zip(t) {
                e += ((value(n, b.den[i]) - t) as f64).powi(2);
            }
        }
        e / target.data.len() as f64
    }

    /// A flat picture with a sharp bright square: Gaussians spread evenly waste most of their
    /// number on the flat part; moving some to the square's edges must lower the error of the
    /// least-squares colours.
    #[test]
    fn moving_gaussians_to_the_error_lowers_it() {
        let (w, h) = (64u32, 48u32);
        let mut data = vec![0.2f32; (w * h * 3) as usize];
        for y in 16..32 {
            for x in 24..40 {
                for c in 0..3 {
                    data[((y * w + x) * 3 + c) as usize] = 0.9;
                }
            }
        }
        let target = Frame {
            width: w,
            height: h,
            layout: ChannelLayout::Rgb,
            data,
        };
        let mut gs = Vec::new();
        for j in 0..6 {
            for i in 0..8 {
                let (x, y) = (i as f32 * 8.0 + 4.0, j as f32 * 8.0 + 4.0);
                let t = &target.data[((y as u32 * w + x as u32) * 3) as usize..][..3];
                gs.push(Gaussian {
                    x,
                    y,
                    scale: [4.0, 4.0],
                    rotation: 0.0,
                    color: [t[0], t[1], t[2], 0.0],
                });
            }
        }
        let start = gs.clone();
        let fit = crate::encode::optim::fit::FitOptions::default();
        let mut fitted = gs.clone();
        crate::encode::optim::fit::fit_colors(&target, &mut fitted, &fit);
        let before = mse(&target, &fitted);
        let n = gs.len();
        let moved = reallocate(&target, &mut gs, 0.25);
        let moved_only = gs.clone();
        crate::encode::optim::fit::fit_colors(&target, &mut gs, &fit);
        assert_eq!(gs.len(), n, "the count is kept");
        assert!(moved > 0);
        let after = mse(&target, &gs);
        assert!(
            after < before * 0.97,
            "error before {before:.5}, after {after:.5}"
        );
        // Deterministic.
        let mut again = start;
        reallocate(&target, &mut again, 0.25);
        assert_eq!(moved_only, again);
    }

    /// The partial selection picks what a greedy pass over the whole sorted map picks, ties
    /// and maps with fewer free peaks than asked for included.
    #[test]
    fn peaks_match_a_full_sort() {
        let (w, h) = (37usize, 23usize);
        let mut s = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (s >> 40) as u32
        };
        for round in 0..6 {
            // Some maps with many equal values (ties broken by index).
            let levels = if round % 2 == 0 { 1 << 20 } else { 5 };
            let err: Vec<f32> = (0..w * h).map(|_| (next() % levels) as f32).collect();
            for spacing in [1i64, 2, 3] {
                for want in [0, 1, 7, 40, 150, w * h] {
                    let mut order: Vec<usize> = (0..w * h).collect();
                    order.sort_by(|&a, &b| err[b].total_cmp(&err[a]).then(a.cmp(&b)));
                    let mut blocked = vec![false; w * h];
                    let mut full = Vec::new();
                    for i in order {
                        if full.len() == want {
                            break;
                        }
                        if blocked[i] {
                            continue;
                        }
                        let (x, y) = ((i % w) as i64, (i / w) as i64);
                        for yy in y - spacing + 1..y + spacing {
                            for xx in x - spacing + 1..x + spacing {
                                if (0..w as i64).contains(&xx) && (0..h as i64).contains(&yy) {
                                    blocked[yy as usize * w + xx as usize] = true;
                                }
                            }
                        }
                        full.push(i);
                    }
                    assert_eq!(
                        peaks(&err, w, h, spacing, want),
                        full,
                        "round {round}, spacing {spacing}, want {want}"
                    );
                }
            }
        }
    }

    /// A picture with detail on one side and flat on the other, Gaussians on a grid.
    fn half_detailed() -> (Frame<f32>, Vec<Gaussian>) {
        let (w, h) = (64u32, 48u32);
        let mut data = Vec::with_capacity((w * h * 3) as usize);
        for y in 0..h {
            for x in 0..w {
                let v = if x < 32 {
                    0.4
                } else {
                    0.5 + 0.4 * ((x as f32 * 0.5).sin() * (y as f32 * 0.4).cos())
                };
                data.extend([v, v * 0.9, 1.0 - v]);
            }
        }
        let target = Frame {
            width: w,
            height: h,
            layout: ChannelLayout::Rgb,
            data,
        };
        let mut gs = Vec::new();
        for j in 0..12 {
            for i in 0..16 {
                gs.push(Gaussian {
                    x: i as f32 * 4.0 + 2.0,
                    y: j as f32 * 4.0 + 2.0,
                    scale: [2.0, 2.0],
                    rotation: 0.0,
                    color: [0.5; 4],
                });
            }
        }
        crate::encode::optim::fit::fit_colors(&target, &mut gs, &Default::default());
        (target, gs)
    }

    /// Pruning reaches its budget taking the flat side first; additions go to the detailed
    /// side and lower the error; both are deterministic.
    #[test]
    fn pruning_and_densifying_reach_the_count_where_it_pays() {
        let fit = crate::encode::optim::fit::FitOptions::default();
        let (target, start) = half_detailed();
        let n = start.len();
        let mut pruned = start.clone();
        let removed = prune(&target, &mut pruned, n / 3);
        assert_eq!((removed, pruned.len()), (n - n / 3, n / 3));
        let flat_left = pruned.iter().filter(|g| g.x < 32.0).count();
        assert!(
            flat_left * 2 < pruned.len(),
            "{flat_left} of {} kept on the flat side",
            pruned.len()
        );
        crate::encode::optim::fit::fit_colors(&target, &mut pruned, &fit);
        let mut again = start.clone();
        prune(&target, &mut again, n / 3);
        crate::encode::optim::fit::fit_colors(&target, &mut again, &fit);
        assert_eq!(again, pruned);

        let mut grown = start.clone();
        let (r, a) = adapt(&target, &mut grown, 0, 40);
        assert_eq!((r, a, grown.len()), (0, 40, n + 40));
        assert_eq!(&grown[..n], &start[..], "additions are appended");
        // (the edge between the halves is detail too)
        assert!(
            grown[n..].iter().all(|g| g.x >= 28.0),
            "additions where the detail is"
        );
        crate::encode::optim::fit::fit_colors(&target, &mut grown, &fit);
        assert!(mse(&target, &grown) < mse(&target, &start));
        // A move keeps the count; prune and adapt never leave none.
        let mut moved = start.clone();
        reallocate(&target, &mut moved, 0.2);
        assert_eq!(moved.len(), n);
        let mut one = start.clone();
        prune(&target, &mut one, 0);
        assert_eq!(one.len(), 1);
    }

    /// Densifying reaches its count, puts the new Gaussians on the detailed side and, with
    /// the colours fitted, lowers the error.
    #[test]
    fn densifying_adds_where_the_error_is() {
        let fit = crate::encode::optim::fit::FitOptions::default();
        let (target, start) = half_detailed();
        let n = start.len();
        let mut grown = start.clone();
        assert_eq!(densify(&target, &mut grown, 2 * n, 2, &fit), n);
        assert_eq!(grown.len(), 2 * n);
        let flat = grown[n..].iter().filter(|g| g.x < 28.0).count();
        assert!(flat * 10 < n, "{flat} of {n} added on the flat side");
        crate::encode::optim::fit::fit_colors(&target, &mut grown, &fit);
        assert!(mse(&target, &grown) < 0.8 * mse(&target, &start));
        let mut same = start.clone();
        assert_eq!(densify(&target, &mut same, n, 2, &fit), 0);
        assert_eq!(same, start);
    }

    #[test]
    fn nothing_to_move_is_a_no_op() {
        let target = Frame {
            width: 4,
            height: 4,
            layout: ChannelLayout::Rgb,
            data: vec![0.5; 48],
        };
        let mut gs: Vec<Gaussian> = Vec::new();
        assert_eq!(reallocate(&target, &mut gs, 0.3), 0);
        let mut one = vec![Gaussian {
            x: 2.0,
            y: 2.0,
            scale: [1.0, 1.0],
            rotation: 0.0,
            color: [0.5; 4],
        }];
        assert_eq!(reallocate(&target, &mut one, 0.0), 0);
        assert_eq!(one.len(), 1);
    }
}
