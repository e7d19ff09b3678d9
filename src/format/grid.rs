//! The grid a file's geometry quantizers put Gaussians on, for optimizers that step on what a
//! file can store.

use super::header::Header;
use crate::core::splat::Gaussian;

/// The geometry quantizers of a file (format-spec.md §5.1–5.3), for quantization-aware
/// steps: the Gaussians rendered (and whose gradient is taken) are the parameters snapped to
/// what the file can store, while the steps move the unsnapped ones (a straight-through
/// estimate). Colours are not snapped: the encoders fit them to the stored geometry afterwards.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct QuantGrid {
    /// Position step: cell size / 2^position bits, native pixels.
    pub pos_step: f32,
    /// Positions are clamped to `[0, extent]` (the cells' cover of the picture).
    pub extent: (f32, f32),
    /// Range of the log2 σ quantizer.
    pub log2_range: (f32, f32),
    /// 2^scale bits − 1 (0: every σ is 2^min).
    pub scale_levels: u32,
    /// 2^rotation bits.
    pub rot_steps: u32,
}

impl QuantGrid {
    /// The grid of a file header.
    pub fn of(h: &Header) -> QuantGrid {
        let (cx, cy) = h.cells();
        let g = h.cell_size as f64;
        QuantGrid {
            pos_step: (g / (1u64 << h.position.bits) as f64) as f32,
            extent: ((cx as f64 * g) as f32, (cy as f64 * g) as f32),
            log2_range: (h.scale.min, h.scale.max),
            scale_levels: ((1u32 << h.scale.bits) - 1),
            rot_steps: 1u32 << h.rotation.bits,
        }
    }

    /// `g` with its geometry as the file stores it (format::quantize then dequantize, as the
    /// GPU's `snap` computes it).
    pub fn snap(&self, g: &Gaussian) -> Gaussian {
        let s = self.pos_step as f64;
        let axis = |v: f32, extent: f32| {
            let c = (v as f64).clamp(0.0, extent as f64);
            let k_max = (extent as f64 / s).floor() - 1.0;
            (((c / s).floor().min(k_max) + 0.5) * s) as f32
        };
        let (lo, hi) = (self.log2_range.0 as f64, self.log2_range.1 as f64);
        let span = hi - lo;
        let lv = self.scale_levels as f64;
        let scale = |v: f32| {
            let l = if self.scale_levels > 0 && span > 0.0 {
                let code = (((v as f64).log2() - lo) / span * lv)
                    .round()
                    .clamp(0.0, lv);
                lo + span * code / lv
            } else {
                lo
            };
            l.exp2() as f32
        };
        let pi = std::f64::consts::PI;
        let rs = self.rot_steps as f64;
        let r = (g.rotation as f64) % pi;
        let r = if r < 0.0 { r + pi } else { r };
        let qr = (r / pi * rs).round() % rs;
        Gaussian {
            x: axis(g.x, self.extent.0),
            y: axis(g.y, self.extent.1),
            scale: [scale(g.scale[0]), scale(g.scale[1])],
            rotation: (pi * qr / rs) as f32,
            color: g.color,
        }
    }
}
