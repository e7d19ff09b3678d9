//! Coverage: no pixel of a compact network's picture is left to no Gaussian.
//!
//! Under the rendering rule (format-spec.md §3.4) a pixel that no Gaussian's 3σ ellipse reaches
//! renders as 0 (black). A compact model decides per slot whether a Gaussian is present, and
//! nothing in that decision guarantees coverage: a model whose presence logits sit at the
//! threshold can leave whole regions empty on pictures unlike its training crops (a candidate
//! model lost 12 dB on Kodak this way). So after the
//! presence decision, every cell is checked pixel by pixel at native size, with a margin for
//! the file's rounding ([`REACH_Q`]), and a cell with a pixel no present Gaussian reaches gets
//! its most likely absent Gaussians back, best first, until it is covered or its
//! [`SPARES_PER_CELL`] spares run out (then the hole stays: a cell whose spares are all too
//! small to reach its pixels).

use rayon::prelude::*;

use crate::core::geometry::{Projected, project};
use crate::core::splat::Gaussian;

/// A pixel counts as reached only inside `q ≤ REACH_Q` of some Gaussian, against the rendering
/// rule's 3σ cutoff `q ≤ 9`: this check runs on the network's unrounded Gaussians, and the file
/// then rounds positions, log2 σ and rotations, which moves an ellipse's edge by a few per cent
/// of its radius (v3's quantizers: up to 1/64 of a cell, about 6 % of σ, 2.8°); the margin here
/// is 12 % of the radius. (With `--refine` the refinement moves the Gaussians afterwards; its
/// moves send Gaussians to where the error is largest, which is where a hole would be.)
const REACH_Q: f32 = 7.0;

/// Absent Gaussians kept per cell as spares, best (highest presence) first.
pub(crate) const SPARES_PER_CELL: usize = 2;

/// An absent Gaussian that may be turned back on.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Spare {
    /// Its cell: `gy · cells_x + gx` over the whole picture.
    pub cell: usize,
    /// 0 for the cell's most likely absent Gaussian, 1 for the next, ...
    pub rank: usize,
    /// The Gaussian as decoded.
    pub gaussian: Gaussian,
}

/// Cells (`cell` × `cell` pixels over `width × height`) as compressed lists of the Gaussians
/// whose 3σ bounding box overlaps them.
struct CellLists {
    start: Vec<usize>,
    items: Vec<u32>,
}

impl CellLists {
    fn new(projected: &[Projected], width: u32, height: u32, cell: u32) -> CellLists {
        let (cw, ch) = (width.div_ceil(cell) as i64, height.div_ceil(cell) as i64);
        let c = cell as i64;
        let range = |p: &Projected| {
            let [x0, y0, x1, y1] = p.bbox;
            let gx0 = (x0.max(0) / c).min(cw);
            let gy0 = (y0.max(0) / c).min(ch);
            let gx1 = if x1 < 0 { -1 } else { (x1 / c).min(cw - 1) };
            let gy1 = if y1 < 0 { -1 } else { (y1 / c).min(ch - 1) };
            (gx0, gy0, gx1, gy1)
        };
        let mut count = vec![0usize; (cw * ch) as usize + 1];
        for p in projected {
            let (gx0, gy0, gx1, gy1) = range(p);
            for gy in gy0..=gy1 {
                for gx in gx0..=gx1 {
                    count[(gy * cw + gx) as usize + 1] += 1;
                }
            }
        }
        for i in 1..count.len() {
            count[i] += count[i - 1];
        }
        let mut fill = count.clone();
        let mut items = vec![0u32; count[count.len() - 1]];
        for (k, p) in projected.iter().enumerate() {
            let (gx0, gy0, gx1, gy1) = range(p);
            for gy in gy0..=gy1 {
                for gx in gx0..=gx1 {
                    let i = (gy * cw + gx) as usize;
                    items[fill[i]] = k as u32;
                    fill[i] += 1;
                }
            }
        }
        CellLists {
            start: count,
            items,
        }
    }

    fn of(&self, cell: usize) -> &[u32] {
        &self.items[self.start[cell]..self.start[cell + 1]]
    }
}

/// Whether the centre of pixel `(x, y)` lies within `q ≤ REACH_Q` of `p`.
#[inline]
fn reaches(p: &Projected, x: i64, y: i64) -> bool {
    let [x0, y0, x1, y1] = p.bbox;
    if x < x0 || x > x1 || y < y0 || y > y1 {
        return false;
    }
    let dx = (x as f32 + 0.5) - p.mx;
    let dy = (y as f32 + 0.5) - p.my;
    let [a, b, c] = p.conic;
    a * dx * dx + (2.0 * b * dy) * dx + c * dy * dy <= REACH_Q
}

/// Whether every pixel centre of `cell` is reached by some Gaussian ([`reaches`]).
fn covered(
    lists: &CellLists,
    projected: &[Projected],
    (width, height, cell_side): (u32, u32, u32),
    cell: usize,
) -> bool {
    let cw = width.div_ceil(cell_side) as usize;
    let (gx, gy) = ((cell % cw) as u32, (cell / cw) as u32);
    let (x0, y0) = (gx * cell_side, gy * cell_side);
    let (x1, y1) = ((x0 + cell_side).min(width), (y0 + cell_side).min(height));
    let list = lists.of(cell);
    // The region q ≤ REACH_Q is convex: a Gaussian that reaches the cell's four corner pixels
    // reaches all of them (the common case, checked first).
    let (xa, ya, xb, yb) = (x0 as i64, y0 as i64, x1 as i64 - 1, y1 as i64 - 1);
    if list.iter().any(|&k| {
        let p = &projected[k as usize];
        reaches(p, xa, ya) && reaches(p, xb, ya) && reaches(p, xa, yb) && reaches(p, xb, yb)
    }) {
        return true;
    }
    (y0..y1).all(|y| {
        (x0..x1).all(|x| {
            list.iter()
                .any(|&k| reaches(&projected[k as usize], x as i64, y as i64))
        })
    })
}

/// Turns spares back on until every pixel of the picture is reached by some Gaussian (or the
/// spares of a cell run out). Deterministic: each round adds, in cell order, the next spare of
/// every cell still uncovered. Returns how many Gaussians were added.
pub(crate) fn ensure_coverage(
    width: u32,
    height: u32,
    cell: u32,
    gaussians: &mut Vec<Gaussian>,
    spares: &[Spare],
) -> usize {
    // Nothing to turn on (e.g. a dense upscale field, where every slot is present): checking
    // would only cost time.
    if width == 0 || height == 0 || cell == 0 || spares.is_empty() {
        return 0;
    }
    let cells = width.div_ceil(cell) as usize * height.div_ceil(cell) as usize;
    // Spares by cell and rank.
    let mut by_cell: Vec<[Option<usize>; SPARES_PER_CELL]> = vec![[None; SPARES_PER_CELL]; cells];
    for (i, s) in spares.iter().enumerate() {
        if s.cell < cells && s.rank < SPARES_PER_CELL {
            by_cell[s.cell][s.rank] = Some(i);
        }
    }
    let mut projected: Vec<Projected> =
        gaussians.par_iter().map(|g| project(g, 1.0, 1.0)).collect();
    let mut todo: Vec<usize> = (0..cells).collect();
    let mut added = 0;
    // Round r keeps the cells still uncovered and adds their spare of rank r; the lists are
    // rebuilt only when a round added something.
    let mut lists = CellLists::new(&projected, width, height, cell);
    for rank in 0..SPARES_PER_CELL {
        todo = todo
            .into_par_iter()
            .filter(|&c| !covered(&lists, &projected, (width, height, cell), c))
            .collect();
        let before = added;
        for &c in &todo {
            if let Some(i) = by_cell[c].get(rank).copied().flatten() {
                let g = spares[i].gaussian;
                projected.push(project(&g, 1.0, 1.0));
                gaussians.push(g);
                added += 1;
            }
        }
        if added == before {
            break;
        }
        lists = CellLists::new(&projected, width, height, cell);
    }
    added
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::geometry::weight;

    fn g(x: f32, y: f32, s: f32) -> Gaussian {
        Gaussian {
            x,
            y,
            scale: [s, s],
            rotation: 0.0,
            color: [0.5, 0.5, 0.5, 1.0],
        }
    }

    fn all_covered(w: u32, h: u32, gs: &[Gaussian]) -> bool {
        let p: Vec<Projected> = gs.iter().map(|g| project(g, 1.0, 1.0)).collect();
        (0..h).all(|y| (0..w).all(|x| p.iter().any(|q| weight(q, x as i64, y as i64) > 0.0)))
    }

    #[test]
    fn a_covered_picture_gets_nothing() {
        let mut gs = vec![g(8.0, 8.0, 4.0), g(24.0, 8.0, 4.0)];
        let spares = [Spare {
            cell: 0,
            rank: 0,
            gaussian: g(4.0, 4.0, 2.0),
        }];
        assert!(all_covered(32, 16, &gs));
        assert_eq!(ensure_coverage(32, 16, 8, &mut gs, &spares), 0);
        assert_eq!(gs.len(), 2);
    }

    #[test]
    fn holes_are_filled_from_the_best_spares_first() {
        // 4 × 2 cells of 8 px; one small Gaussian in the first cell only.
        let (w, h) = (32u32, 16u32);
        let mut gs = vec![g(4.0, 4.0, 1.0)];
        let mut spares = Vec::new();
        for cy in 0..2u32 {
            for cx in 0..4u32 {
                let (x, y) = (cx as f32 * 8.0 + 4.0, cy as f32 * 8.0 + 4.0);
                // rank 0 too small to cover its cell, rank 1 large enough
                spares.push(Spare {
                    cell: (cy * 4 + cx) as usize,
                    rank: 0,
                    gaussian: g(x, y, 0.5),
                });
                spares.push(Spare {
                    cell: (cy * 4 + cx) as usize,
                    rank: 1,
                    gaussian: g(x, y, 3.0),
                });
            }
        }
        assert!(!all_covered(w, h, &gs));
        let added = ensure_coverage(w, h, 8, &mut gs, &spares);
        assert!(all_covered(w, h, &gs), "still a hole after {added} spares");
        // every cell needed both of its spares except that the large ones overlap: at most 16
        assert!(added > 0 && added <= 16 && gs.len() == 1 + added);
        // deterministic
        let mut again = vec![g(4.0, 4.0, 1.0)];
        ensure_coverage(w, h, 8, &mut again, &spares);
        assert_eq!(again, gs);
    }

    #[test]
    fn no_spares_no_change_and_no_panic_on_edges() {
        // a picture whose side is not a multiple of the cell, a Gaussian off the picture
        let mut gs = vec![g(-30.0, -30.0, 1.0)];
        assert_eq!(ensure_coverage(13, 7, 8, &mut gs, &[]), 0);
        assert_eq!(ensure_coverage(0, 7, 8, &mut gs, &[]), 0);
        let spares = [Spare {
            cell: 99,
            rank: 0,
            gaussian: g(1.0, 1.0, 3.0),
        }];
        assert_eq!(ensure_coverage(13, 7, 8, &mut gs, &spares), 0);
    }
}
