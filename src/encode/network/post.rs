//! Post-processing of the network's output: decoding cells into Gaussians, ranking them by
//! value, the write options, and the alpha fit.

use super::*;

/// The order in which Gaussians are worth keeping, most valuable first: a Gaussian's area (up
/// to a cell's) times the squared distance of its colour from the mean colour of the
/// Gaussians in the 3 × 3 cells around it (`cell` pixels a side). One whose colour its
/// neighbours already give is the first to go: their normalized blend (format-spec.md §3.4)
/// fills its place, and the colour fit that follows adjusts them.
pub fn rank_by_value(pixels: &Frame<f32>, gs: &[Gaussian], cell: u32) -> Vec<usize> {
    let c = cell.max(1) as f32;
    let (cw, chh) = (
        pixels.width.div_ceil(cell.max(1)) as usize,
        pixels.height.div_ceil(cell.max(1)) as usize,
    );
    let cell_of = |g: &Gaussian| {
        let i = ((g.x / c) as usize).min(cw - 1);
        let j = ((g.y / c) as usize).min(chh - 1);
        (i, j)
    };
    let mut sum = vec![([0f64; 4], 0u32); cw * chh];
    for g in gs {
        let (i, j) = cell_of(g);
        let s = &mut sum[j * cw + i];
        for (a, v) in s.0.iter_mut().zip(&g.color) {
            *a += *v as f64;
        }
        s.1 += 1;
    }
    let value: Vec<f64> = gs
        .par_iter()
        .map(|g| {
            let (i, j) = cell_of(g);
            let (mut acc, mut n) = ([0f64; 4], 0u32);
            for jj in j.saturating_sub(1)..(j + 2).min(chh) {
                for ii in i.saturating_sub(1)..(i + 2).min(cw) {
                    let s = &sum[jj * cw + ii];
                    for (a, v) in acc.iter_mut().zip(&s.0) {
                        *a += v;
                    }
                    n += s.1;
                }
            }
            // Without itself.
            let others = (n - 1).max(1) as f64;
            let contrast: f64 = (0..pixels.channels())
                .map(|k| {
                    let mean = (acc[k] - g.color[k] as f64) / others;
                    (g.color[k] as f64 - mean).powi(2)
                })
                .sum();
            let area = (g.scale[0] as f64 * g.scale[1] as f64).min((c * c) as f64);
            if n <= 1 {
                f64::INFINITY
            } else {
                area * (contrast + 1e-4)
            }
        })
        .collect();
    let mut order: Vec<usize> = (0..gs.len()).collect();
    order.sort_by(|&a, &b| value[b].total_cmp(&value[a]).then(a.cmp(&b)));
    order
}

/// The most valuable `share` (0 to 1) of `gs` by `ranked`, in their original order, with
/// dropped Gaussians turned back on where a cell would be left uncovered.
pub(super) fn keep_share(
    pixels: &Frame<f32>,
    gs: &[Gaussian],
    ranked: &[usize],
    share: f64,
    cell: u32,
) -> Vec<Gaussian> {
    let n = ((gs.len() as f64 * share).round() as usize).clamp(1.min(gs.len()), gs.len());
    let mut kept_idx: Vec<usize> = ranked[..n].to_vec();
    kept_idx.sort_unstable();
    let mut kept: Vec<Gaussian> = kept_idx.iter().map(|&i| gs[i]).collect();
    let cells_x = pixels.width.div_ceil(cell.max(1)) as usize;
    let mut per_cell = std::collections::HashMap::<usize, usize>::new();
    let mut spares = Vec::new();
    for &i in &ranked[n..] {
        let g = gs[i];
        let cx = ((g.x / cell as f32) as usize).min(cells_x - 1);
        let cy = (g.y / cell as f32) as usize;
        let c = cy * cells_x + cx;
        let rank = per_cell.entry(c).or_insert(0);
        if *rank < SPARES_PER_CELL {
            spares.push(Spare {
                cell: c,
                rank: *rank,
                gaussian: g,
            });
            *rank += 1;
        }
    }
    ensure_coverage(pixels.width, pixels.height, cell, &mut kept, &spares);
    kept
}

/// Position bits for refined Gaussians in cells of `cell` pixels: a step of at most a quarter
/// pixel (5 bits in 8-pixel cells, as the analytic encoder writes), at most 16 bits.
pub(super) fn refined_position_bits(cell: u32) -> u8 {
    let steps = u64::from(cell.max(1)) * 4;
    (64 - (steps - 1).leading_zeros()).clamp(1, 16) as u8
}

/// The file layout and quantizers for Gaussians from a model described by `info` (see
/// [`NetworkEncoder::write_options`]).
pub(crate) fn write_options_for(info: &ModelInfo, layout: ChannelLayout) -> WriteOptions {
    let mut wo = WriteOptions {
        alpha_bits: 8,
        color_model: ColorModel::YCbCr,
        ..WriteOptions::default()
    };
    match &info.quantizers {
        Some(q) => {
            wo.cell_size = info.cell as u16;
            wo.position_bits = q.position_bits;
            wo.scale_bits = q.scale_bits;
            wo.scale_range = Some(q.scale_range);
            wo.rotation_bits = q.rotation_bits;
            wo.luma_bits = q.color_bits[0];
            wo.chroma_bits = q.color_bits[1];
            let mut ranges = [(0.0, 1.0); 4];
            if layout.is_color() {
                for (i, r) in ranges.iter_mut().take(3).enumerate() {
                    *r = (q.color_min[i], q.color_max[i]);
                }
            } else {
                ranges[0] = (q.color_min[0], q.color_max[0]);
            }
            if layout.has_alpha() {
                ranges[layout.channels() - 1] = (0.0, 1.0);
            }
            wo.channel_ranges = Some(ranges);
        }
        None => {
            wo.cell_size = info.cell.clamp(1, u16::MAX as u32) as u16;
            wo.position_bits = 6;
            wo.scale_bits = 8;
            wo.scale_range = info.scale_range;
            wo.rotation_bits = 8;
            wo.luma_bits = 10;
            wo.chroma_bits = 8;
            wo.channel_ranges = None;
        }
    }
    wo
}

/// Turns the network output of one tile's window into Gaussians: only cells inside the tile's
/// core and the picture, present ones, centres clamped into the picture. The most likely
/// absent Gaussians of each cell go to `spares` (for [`ensure_coverage`]).
#[allow(clippy::too_many_arguments)]
pub(crate) fn decode_cells(
    p: &Frame<f32>,
    data: &[f32],
    (hc, wc): (usize, usize),
    tile: &Tile,
    info: &ModelInfo,
    threshold: f32,
    out: &mut Vec<Gaussian>,
    spares: &mut Vec<Spare>,
) -> Result<()> {
    let c = info.cell;
    let k = info.per_cell as usize;
    let (w, h) = (p.width, p.height);
    let [cx0, cy0, cx1, cy1] = tile.core.map(|v| v / c);
    let (wx0, wy0) = (tile.window[0] / c, tile.window[1] / c);
    let all_x = w.div_ceil(c);
    let cells_x = cx1.min(all_x);
    let cells_y = cy1.min(h.div_ceil(c));
    let nc = p.channels();
    let plane = hc * wc;
    let at = |kk: usize, q: usize, i: usize| data[(kk * 9 + q) * plane + i];
    // The Gaussian of slot kk in cell (gx, gy) at output position i; None if non-finite.
    let gaussian = |kk: usize, i: usize, gx: u32, gy: u32| -> Option<Gaussian> {
        let v: [f32; 8] = std::array::from_fn(|q| at(kk, q, i));
        if v.iter().any(|x| !x.is_finite()) {
            return None;
        }
        let x = ((gx as f32 + 0.5) * c as f32 + v[0]).clamp(0.0, w as f32);
        let y = ((gy as f32 + 0.5) * c as f32 + v[1]).clamp(0.0, h as f32);
        let s = |l: f32| l.clamp(-MAX_LOG2_SCALE, MAX_LOG2_SCALE).exp2();
        let ch = |v: f32| v.clamp(-MAX_CHANNEL_VALUE, MAX_CHANNEL_VALUE);
        let mut color = [0f32; 4];
        if p.layout.is_color() {
            color[..3].copy_from_slice(&[ch(v[5]), ch(v[6]), ch(v[7])]);
        } else {
            color[0] = ch(0.299 * v[5] + 0.587 * v[6] + 0.114 * v[7]);
        }
        if p.layout.has_alpha() {
            // A first guess (the nearest pixel's alpha), refined by the fit.
            let px = (x as u32).min(w - 1) as usize;
            let py = (y as u32).min(h - 1) as usize;
            color[nc - 1] = p.data[(py * w as usize + px) * nc + nc - 1];
        }
        Some(Gaussian {
            x,
            y,
            scale: [s(v[2]), s(v[3])],
            rotation: v[4],
            color,
        })
    };
    type Row = (Vec<Gaussian>, Vec<Spare>);
    let row = |gy: u32| -> Result<Row> {
        let mut present = Vec::with_capacity((cells_x.saturating_sub(cx0)) as usize * k);
        let mut spare = Vec::new();
        for gx in cx0..cells_x {
            let i = (gy - wy0) as usize * wc + (gx - wx0) as usize;
            // The cell's most likely absent slots, best first (the lower slot among equals).
            let mut absent: [Option<(f32, usize)>; SPARES_PER_CELL] = [None; SPARES_PER_CELL];
            for kk in 0..k {
                let presence = at(kk, 8, i);
                // NaN presence drops the Gaussian (and makes it no spare).
                if presence.is_nan() {
                    continue;
                }
                if presence < threshold {
                    let at_rank = absent
                        .iter()
                        .position(|a| a.is_none_or(|(best, _)| presence > best));
                    if let Some(r) = at_rank {
                        absent.copy_within(r..SPARES_PER_CELL - 1, r + 1);
                        absent[r] = Some((presence, kk));
                    }
                    continue;
                }
                let g = gaussian(kk, i, gx, gy).ok_or_else(|| {
                    let v: [f32; 8] = std::array::from_fn(|q| at(kk, q, i));
                    Error::Model(format!(
                        "the network produced a non-finite value for Gaussian {kk} of cell \
                         ({gx}, {gy}): {v:?}"
                    ).into())
                })?;
                present.push(g);
            }
            let cell = gy as usize * all_x as usize + gx as usize;
            for (rank, &(_, kk)) in absent.iter().flatten().enumerate() {
                if let Some(g) = gaussian(kk, i, gx, gy) {
                    spare.push(Spare {
                        cell,
                        rank,
                        gaussian: g,
                    });
                }
            }
        }
        Ok((present, spare))
    };
    let rows: Vec<Row> = (cy0..cells_y.max(cy0))
        .into_par_iter()
        .map(row)
        .collect::<Result<_>>()?;
    out.reserve(rows.iter().map(|r| r.0.len()).sum());
    for (present, spare) in rows {
        out.extend(present);
        spares.extend(spare);
    }
    Ok(())
}

/// Fits each Gaussian's alpha (the last channel) by least squares to the picture's alpha.
pub(super) fn fit_alpha(p: &Frame<f32>, gs: &mut [Gaussian], opts: &FitOptions) {
    let nc = p.channels();
    let alpha: Vec<f32> = p.data.chunks_exact(nc).map(|px| px[nc - 1]).collect();
    let (lo, hi) = alpha
        .iter()
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &v| {
            (a.min(v), b.max(v))
        });
    if lo == hi {
        // Uniform alpha: exact without a fit.
        for g in gs.iter_mut() {
            g.color[nc - 1] = lo;
        }
        return;
    }
    // Matrix-free: the normal matrix of a dense field (the upscale model's 4 Gaussians a
    // pixel) holds ~100 entries a Gaussian (see `alpha`).
    let mut values: Vec<f32> = gs.iter().map(|g| g.color[nc - 1]).collect();
    crate::encode::optim::alpha::fit_plane(
        p.width,
        p.height,
        &alpha,
        gs,
        &mut values,
        opts.iterations,
        opts.clamp,
    );
    for (g, v) in gs.iter_mut().zip(values) {
        g.color[nc - 1] = v.clamp(0.0, 1.0);
    }
}
