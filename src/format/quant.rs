//! Quantization and dequantization of Gaussians (§5), and the colour model (§4.1).

use super::header::{AttrQuant, ColorModel, Header};
use crate::core::splat::Gaussian;

/// A Gaussian as stored: its cell and one code per stream (§7.2 order: x, y, σ₁, σ₂, θ, then
/// up to four channels).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Quantized {
    /// Cell row (first, so that sorting gives raster order).
    pub cell_y: u32,
    /// Cell column.
    pub cell_x: u32,
    /// Codes in the order y, x, σ₁, σ₂, θ, c₀..c₃ (y first so sorting is raster order).
    pub codes: [u16; 9],
}

/// Index of each attribute in [`Quantized::codes`].
pub(crate) const CODE_Y: usize = 0;
pub(crate) const CODE_X: usize = 1;
pub(crate) const CODE_S1: usize = 2;
pub(crate) const CODE_S2: usize = 3;
pub(crate) const CODE_ROT: usize = 4;
pub(crate) const CODE_CH: usize = 5;

/// The stream order of §7.2 as indices into [`Quantized::codes`].
pub(crate) fn stream_code_index(stream: usize) -> usize {
    match stream {
        0 => CODE_X,
        1 => CODE_Y,
        s => s,
    }
}

fn unit(q: &AttrQuant, code: u16) -> f64 {
    if q.bits == 0 {
        0.0
    } else {
        code as f64 / q.max_code() as f64
    }
}

fn ranged(q: &AttrQuant, code: u16) -> f64 {
    q.min as f64 + (q.max as f64 - q.min as f64) * unit(q, code)
}

fn code_for(q: &AttrQuant, v: f64) -> u16 {
    let span = q.max as f64 - q.min as f64;
    if q.bits == 0 || span <= 0.0 || v.is_nan() {
        return 0;
    }
    ((v - q.min as f64) / span * q.max_code() as f64)
        .round()
        .clamp(0.0, q.max_code() as f64) as u16
}

/// §4.1: full-range BT.601 RGB → (Y, Cb, Cr), Cb and Cr centred on 0.
pub fn rgb_to_ycbcr(c: [f64; 3]) -> [f64; 3] {
    let [r, g, b] = c;
    [
        0.299 * r + 0.587 * g + 0.114 * b,
        -0.168_736 * r - 0.331_264 * g + 0.5 * b,
        0.5 * r - 0.418_688 * g - 0.081_312 * b,
    ]
}

/// §4.1: the inverse of [`rgb_to_ycbcr`], as a decoder computes it.
pub fn ycbcr_to_rgb(c: [f64; 3]) -> [f64; 3] {
    let [y, cb, cr] = c;
    [
        y + 1.402 * cr,
        y - 0.344_136 * cb - 0.714_136 * cr,
        y + 1.772 * cb,
    ]
}

/// [`dequantize`] for many records of one header: the same values, with each attribute's
/// code-to-value mapping tabulated once (for attributes of at most [`TABLE_BITS`] bits).
#[derive(Debug, Clone)]
pub struct Dequantizer {
    header: Header,
    /// `2^min…max` per scale code.
    scales: Option<Vec<f32>>,
    /// `θ` per rotation code.
    rotations: Option<Vec<f32>>,
    /// The stored channel value (before the colour model) per code, per channel.
    channels: [Option<Vec<f64>>; 4],
}

/// Attributes of at most this many bits get tables in a [`Dequantizer`].
pub const TABLE_BITS: u8 = 12;

impl Dequantizer {
    /// Prepares for records of `header`.
    pub fn new(header: &Header) -> Dequantizer {
        let table = |bits: u8, f: &dyn Fn(u16) -> f64| {
            (bits <= TABLE_BITS).then(|| (0..1u32 << bits).map(|c| f(c as u16)).collect())
        };
        let scales = table(header.scale.bits, &|c| ranged(&header.scale, c).exp2())
            .map(|t: Vec<f64>| t.into_iter().map(|v| v as f32).collect());
        let rotations = table(header.rotation.bits, &|c| rotation(header, c))
            .map(|t: Vec<f64>| t.into_iter().map(|v| v as f32).collect());
        let channels = std::array::from_fn(|i| {
            header
                .channels
                .get(i)
                .and_then(|q| table(q.bits, &|c| ranged(q, c)))
        });
        Dequantizer {
            header: header.clone(),
            scales,
            rotations,
            channels,
        }
    }

    /// The Gaussian `q` decodes to (identical to [`dequantize`]).
    #[inline]
    pub fn apply(&self, q: &Quantized) -> Gaussian {
        let h = &self.header;
        let scale = |code: u16| match &self.scales {
            Some(t) => t[code as usize],
            None => ranged(&h.scale, code).exp2() as f32,
        };
        let rot = match &self.rotations {
            Some(t) => t[q.codes[CODE_ROT] as usize],
            None => rotation(h, q.codes[CODE_ROT]) as f32,
        };
        let mut ch = [0f64; 4];
        for (i, cq) in h.channels.iter().enumerate() {
            let code = q.codes[CODE_CH + i];
            ch[i] = match &self.channels[i] {
                Some(t) => t[code as usize],
                None => ranged(cq, code),
            };
        }
        finish(
            h,
            q,
            [scale(q.codes[CODE_S1]), scale(q.codes[CODE_S2])],
            rot,
            ch,
        )
    }
}

impl Dequantizer {
    /// Appends the Gaussians of `qs` to `out` (the same as [`Self::apply`] on each): with
    /// every attribute tabulated, one pass of table lookups and the colour conversion.
    pub fn extend(&self, qs: &[Quantized], out: &mut Vec<Gaussian>) {
        let h = &self.header;
        let nc = h.channels.len();
        let (Some(scales), Some(rotations)) = (&self.scales, &self.rotations) else {
            return out.extend(qs.iter().map(|q| self.apply(q)));
        };
        let Some(channels) = self.channels[..nc]
            .iter()
            .map(|c| c.as_deref())
            .collect::<Option<Vec<&[f64]>>>()
        else {
            return out.extend(qs.iter().map(|q| self.apply(q)));
        };
        let ycc = h.color_model == ColorModel::YCbCr;
        // One loop per channel count and colour model, without branches inside.
        let t = Tabulated {
            header: h,
            scales,
            rotations,
            channels: &channels,
        };
        match (nc, ycc) {
            (1, _) => t.extend::<1, false>(qs, out),
            (2, _) => t.extend::<2, false>(qs, out),
            (3, false) => t.extend::<3, false>(qs, out),
            (3, true) => t.extend::<3, true>(qs, out),
            (_, false) => t.extend::<4, false>(qs, out),
            (_, true) => t.extend::<4, true>(qs, out),
        }
    }
}

/// A [`Dequantizer`]'s tables, all present.
struct Tabulated<'a> {
    header: &'a Header,
    scales: &'a [f32],
    rotations: &'a [f32],
    channels: &'a [&'a [f64]],
}

impl Tabulated<'_> {
    fn extend<const NC: usize, const YCC: bool>(&self, qs: &[Quantized], out: &mut Vec<Gaussian>) {
        let h = self.header;
        let g = h.cell_size as f64;
        let step = 1.0 / (1u32 << h.position.bits) as f64;
        let pos = |cell: u32, code: u16| ((cell as f64 + (code as f64 + 0.5) * step) * g) as f32;
        let channels: [&[f64]; NC] = std::array::from_fn(|i| self.channels[i]);
        out.extend(qs.iter().map(|q| {
            let mut ch = [0f64; 4];
            for (i, t) in channels.iter().enumerate() {
                ch[i] = t[q.codes[CODE_CH + i] as usize];
            }
            if YCC {
                let rgb = ycbcr_to_rgb([ch[0], ch[1], ch[2]]);
                ch[..3].copy_from_slice(&rgb);
            }
            Gaussian {
                x: pos(q.cell_x, q.codes[CODE_X]),
                y: pos(q.cell_y, q.codes[CODE_Y]),
                scale: [
                    self.scales[q.codes[CODE_S1] as usize],
                    self.scales[q.codes[CODE_S2] as usize],
                ],
                rotation: self.rotations[q.codes[CODE_ROT] as usize],
                color: ch.map(|v| v as f32),
            }
        }));
    }
}

/// §5.3: the rotation of a code.
fn rotation(h: &Header, code: u16) -> f64 {
    std::f64::consts::PI * code as f64 / (1u32 << h.rotation.bits) as f64
}

/// §5: a Gaussian from its record's dequantized scales, rotation and stored channel values.
#[inline(always)]
fn finish(h: &Header, q: &Quantized, scale: [f32; 2], rotation: f32, mut ch: [f64; 4]) -> Gaussian {
    let g = h.cell_size as f64;
    // (code + ½) / 2^b, as a product with the exact power of two 2^−b.
    let step = 1.0 / (1u32 << h.position.bits) as f64;
    let pos = |cell: u32, code: u16| ((cell as f64 + (code as f64 + 0.5) * step) * g) as f32;
    if h.color_model == ColorModel::YCbCr {
        let rgb = ycbcr_to_rgb([ch[0], ch[1], ch[2]]);
        ch[..3].copy_from_slice(&rgb);
    }
    Gaussian {
        x: pos(q.cell_x, q.codes[CODE_X]),
        y: pos(q.cell_y, q.codes[CODE_Y]),
        scale,
        rotation,
        color: ch.map(|v| v as f32),
    }
}

/// §5: the Gaussian a stored record decodes to.
pub fn dequantize(h: &Header, q: &Quantized) -> Gaussian {
    dequantize_with(h, q, |code| ranged(&h.scale, code).exp2() as f32)
}

fn dequantize_with(h: &Header, q: &Quantized, scale: impl Fn(u16) -> f32) -> Gaussian {
    let mut ch = [0f64; 4];
    for (i, cq) in h.channels.iter().enumerate() {
        ch[i] = ranged(cq, q.codes[CODE_CH + i]);
    }
    let rot = rotation(h, q.codes[CODE_ROT]) as f32;
    finish(
        h,
        q,
        [scale(q.codes[CODE_S1]), scale(q.codes[CODE_S2])],
        rot,
        ch,
    )
}

/// §5: the nearest stored record for a Gaussian (positions clamped into the cell grid, values
/// clamped into the quantizer ranges).
pub fn quantize(h: &Header, gs: &Gaussian) -> Quantized {
    let (cells_x, cells_y) = h.cells();
    let g = h.cell_size as f64;
    let steps = (1u32 << h.position.bits) as f64;
    let pos = |v: f32, cells: u64| -> (u32, u16) {
        let u = (v as f64 / g).clamp(0.0, cells as f64);
        let cell = (u.floor() as u64).min(cells - 1);
        let frac = (u - cell as f64).clamp(0.0, 1.0);
        let code = ((frac * steps).floor()).clamp(0.0, steps - 1.0) as u16;
        (cell as u32, code)
    };
    let (cell_x, qx) = pos(gs.x, cells_x);
    let (cell_y, qy) = pos(gs.y, cells_y);
    let log_scale = |s: f32| code_for(&h.scale, (s as f64).log2());
    let pi = std::f64::consts::PI;
    let rsteps = (1u32 << h.rotation.bits) as f64;
    let rot = (gs.rotation as f64).rem_euclid(pi);
    let qrot = ((rot / pi * rsteps).round() as u64 % (rsteps as u64)) as u16;
    let mut ch = gs.color.map(|v| v as f64);
    if h.color_model == ColorModel::YCbCr {
        let ycc = rgb_to_ycbcr([ch[0], ch[1], ch[2]]);
        ch[..3].copy_from_slice(&ycc);
    }
    let mut codes = [0u16; 9];
    codes[CODE_X] = qx;
    codes[CODE_Y] = qy;
    codes[CODE_S1] = log_scale(gs.scale[0]);
    codes[CODE_S2] = log_scale(gs.scale[1]);
    codes[CODE_ROT] = qrot;
    for (i, cq) in h.channels.iter().enumerate() {
        codes[CODE_CH + i] = code_for(cq, ch[i]);
    }
    let mut q = Quantized {
        cell_y,
        cell_x,
        codes,
    };
    canonical(h, &mut q);
    q
}

/// §5.2: the canonical record with `σ₁ ≥ σ₂` (swapping them turns the Gaussian by a quarter turn, which
/// the rotation takes back) and rotation 0 for a round Gaussian: the same covariance.
pub(crate) fn canonical(h: &Header, q: &mut Quantized) {
    let rb = h.rotation.bits;
    if rb == 0 {
        return;
    }
    if q.codes[CODE_S2] > q.codes[CODE_S1] {
        q.codes.swap(CODE_S1, CODE_S2);
        let m = 1u32 << rb;
        q.codes[CODE_ROT] = ((q.codes[CODE_ROT] as u32 + m / 2) & (m - 1)) as u16;
    }
    if q.codes[CODE_S1] == q.codes[CODE_S2] {
        q.codes[CODE_ROT] = 0;
    }
}

/// A cheap upper bound of [`reach`]: `3·max(σ₁, σ₂)` (up to rounding in the last place).
pub fn reach_bound(g: &Gaussian) -> f64 {
    3.0 * g.scale[0].max(g.scale[1]) as f64
}

/// §6: how far (native pixels) a Gaussian's 3σ bounding box reaches from its centre.
pub fn reach(g: &Gaussian) -> f64 {
    let (xx, _, yy) = g.covariance();
    3.0 * xx.max(yy).sqrt()
}
