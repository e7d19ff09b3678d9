//! Tiling: large pictures run through the network in overlapping tiles.

use super::*;

/// One tile: its core and window, `[x0, y0, x1, y1)` in padded-picture pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tile {
    /// The pixels whose cells this tile keeps.
    pub core: [u32; 4],
    /// The pixels the network sees.
    pub window: [u32; 4],
}

/// Cuts a padded picture of `wp × hp` pixels (multiples of `multiple`) into tiles whose windows
/// hold at most `max_pixels` pixels (unless a core of one `multiple` and its margins need
/// more), or into cores of `core_side` when given.
///
/// Of the grids whose largest window fits, the one with the fewest window pixels in all (the
/// network's work: the margins are computed again by every window that holds them), then the
/// fewest tiles. Windows at the picture's edges have no margin there, so the best grid is often
/// not of square windows (a 2448 × 1632 picture in windows of at most 2^21 pixels with margins
/// of 352: 4 windows of 7.4 MP in all, where square cores of the largest size need 12 windows
/// of 13.9 MP).
pub fn plan_tiles(
    wp: u32,
    hp: u32,
    multiple: u32,
    margin: u32,
    max_pixels: u64,
    core_side: Option<u32>,
) -> Vec<Tile> {
    let m = multiple.max(1);
    let round_up = |v: u32| v.div_ceil(m) * m;
    // The cores of one axis of `total` pixels cut into about `n` parts of whole multiples.
    let core_len = |total: u32, n: u32| round_up(total.div_ceil(n.max(1))).max(m).min(total.max(1));
    let (tx, ty) = match core_side {
        Some(s) => (round_up(s).min(wp), round_up(s).min(hp)),
        None if wp as u64 * hp as u64 <= max_pixels => (wp, hp),
        None => {
            // A grid that fits: square cores of the largest side the budget allows...
            let side = ((max_pixels as f64).sqrt() as u32).saturating_sub(2 * margin);
            let side = (side / m * m).max(m);
            let (nx0, ny0) = (wp.div_ceil(side), hp.div_ceil(side));
            // ...then every grid of at most as many columns and rows: each axis's window
            // lengths in all and at most, per number of parts.
            let axis = |total: u32, parts: u32| -> Vec<(u32, u64, u64)> {
                (1..=parts)
                    .map(|n| {
                        let core = core_len(total, n);
                        let (mut sum, mut max) = (0u64, 0u64);
                        for x0 in (0..total).step_by(core as usize) {
                            let x1 = (x0 + core).min(total);
                            let len = ((x1 + margin).min(total) - x0.saturating_sub(margin)) as u64;
                            sum += len;
                            max = max.max(len);
                        }
                        (core, sum, max)
                    })
                    .collect()
            };
            let (xs, ys) = (axis(wp, nx0), axis(hp, ny0));
            let mut best = (core_len(wp, nx0), core_len(hp, ny0));
            let mut best_key = (u64::MAX, u64::MAX);
            for &(cx, sx, mx) in &xs {
                for &(cy, sy, my) in &ys {
                    if mx * my > max_pixels && (cx, cy) != (core_len(wp, nx0), core_len(hp, ny0)) {
                        continue;
                    }
                    let key = (sx * sy, wp.div_ceil(cx) as u64 * hp.div_ceil(cy) as u64);
                    if key < best_key {
                        best_key = key;
                        best = (cx, cy);
                    }
                }
            }
            best
        }
    };
    let mut tiles = Vec::new();
    for y0 in (0..hp).step_by(ty as usize) {
        for x0 in (0..wp).step_by(tx as usize) {
            let (x1, y1) = ((x0 + tx).min(wp), (y0 + ty).min(hp));
            tiles.push(Tile {
                core: [x0, y0, x1, y1],
                window: [
                    x0.saturating_sub(margin),
                    y0.saturating_sub(margin),
                    (x1 + margin).min(wp),
                    (y1 + margin).min(hp),
                ],
            });
        }
    }
    tiles
}

/// The network input for a window of the padded picture: planar RGB, the picture's last row
/// and column repeated into the padding, gray replicated, alpha left out.
pub(super) fn tile_input(p: &Frame<f32>, window: [u32; 4]) -> Vec<f32> {
    let [x0, y0, x1, y1] = window;
    let (ww, wh) = ((x1 - x0) as usize, (y1 - y0) as usize);
    let nc = p.channels();
    let color = p.layout.is_color();
    let mut out = vec![0f32; 3 * ww * wh];
    let plane = ww * wh;
    for yy in 0..wh {
        let sy = (y0 as usize + yy).min(p.height as usize - 1);
        let row = &p.data[sy * p.width as usize * nc..(sy + 1) * p.width as usize * nc];
        for xx in 0..ww {
            let sx = (x0 as usize + xx).min(p.width as usize - 1);
            let px = &row[sx * nc..sx * nc + nc];
            let i = yy * ww + xx;
            if color {
                out[i] = px[0];
                out[plane + i] = px[1];
                out[2 * plane + i] = px[2];
            } else {
                out[i] = px[0];
                out[plane + i] = px[0];
                out[2 * plane + i] = px[0];
            }
        }
    }
    out
}
