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

/// Cuts a padded picture of `wp × hp` pixels (multiples of `multiple`) into tiles.
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
    let (tx, ty) = match core_side {
        Some(s) => (round_up(s).min(wp), round_up(s).min(hp)),
        None if wp as u64 * hp as u64 <= max_pixels => (wp, hp),
        None => {
            // The largest square window within the budget, then cores evened out.
            let side = ((max_pixels as f64).sqrt() as u32).saturating_sub(2 * margin);
            let side = (side / m * m).max(m);
            let even = |total: u32| {
                let n = total.div_ceil(side);
                round_up(total.div_ceil(n))
            };
            (even(wp), even(hp))
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
