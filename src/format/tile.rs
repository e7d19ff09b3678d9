//! The contents of one `TILE` section (§7): cell counts and attribute streams.

use bitvec::prelude::*;

use super::consts::TAG_TILE;
use super::error::{FormatError, FormatErrorKind, Location};
use super::header::{AttrQuant, Header, Packing, Predictor};
use super::quant::{Quantized, stream_code_index};
use crate::Result;

/// The cells of one tile (§6): columns `cx0 .. cx0 + cw`, rows `cy0 .. cy0 + ch`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TileCells {
    /// First cell column.
    pub cx0: u32,
    /// First cell row.
    pub cy0: u32,
    /// Cells across.
    pub cw: u32,
    /// Cells down.
    pub ch: u32,
}

impl TileCells {
    /// The cells of tile number `t` (raster order).
    pub fn of(h: &Header, t: u64) -> TileCells {
        let (cells_x, cells_y) = h.cells();
        let (tiles_x, _) = h.tiles();
        let tc = h.tile_cells as u64;
        let (tx, ty) = (t % tiles_x, t / tiles_x);
        let (cx0, cy0) = (tx * tc, ty * tc);
        TileCells {
            cx0: cx0 as u32,
            cy0: cy0 as u32,
            cw: tc.min(cells_x - cx0) as u32,
            ch: tc.min(cells_y - cy0) as u32,
        }
    }

    /// Number of cells.
    pub fn count(&self) -> u64 {
        self.cw as u64 * self.ch as u64
    }
}

/// The most bytes a tile's decompressed data can take for `n` Gaussians (§7.1).
pub fn max_raw_len(h: &Header, cells: &TileCells, n: u64) -> u64 {
    let counts = cells.count() * 5;
    counts + h.streams().iter().map(|q| q.stream_len(n)).sum::<u64>()
}

fn zigzag(d: i32) -> u32 {
    ((d << 1) ^ (d >> 31)) as u32
}

fn unzigzag(z: u32) -> i32 {
    ((z >> 1) as i32) ^ -((z & 1) as i32)
}

/// §4.3: the symbol stored for `code` after `prev`.
fn predict(q: &AttrQuant, prev: u16, code: u16) -> u32 {
    match q.predictor {
        Predictor::None => code as u32,
        Predictor::Previous => {
            let m = 1i32 << q.bits;
            // Modulo a power of two: a mask (two's complement).
            let mut d = (code as i32 - prev as i32) & (m - 1);
            if d >= m / 2 {
                d -= m;
            }
            zigzag(d) & q.max_code()
        }
    }
}

/// §4.3: the code a symbol decodes to after `prev`.
fn unpredict(q: &AttrQuant, prev: u16, sym: u32) -> u16 {
    match q.predictor {
        Predictor::None => sym as u16,
        Predictor::Previous => {
            let m = 1i32 << q.bits;
            // With m = 2^bits, zigzag maps [-m/2, m/2) onto [0, m): symbol m-1 is -m/2.
            ((prev as i32 + unzigzag(sym)) & (m - 1)) as u16
        }
    }
}

fn write_varint(out: &mut Vec<u8>, mut v: u32) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Encodes Gaussians (sorted by cell, all inside `cells`) into a tile's raw bytes (§7.1–7.2).
pub fn encode(h: &Header, cells: &TileCells, gs: &[Quantized]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut k = 0;
    for cy in cells.cy0..cells.cy0 + cells.ch {
        for cx in cells.cx0..cells.cx0 + cells.cw {
            let start = k;
            while k < gs.len() && gs[k].cell_y == cy && gs[k].cell_x == cx {
                k += 1;
            }
            write_varint(&mut out, (k - start) as u32);
        }
    }
    debug_assert_eq!(
        k,
        gs.len(),
        "Gaussians outside the tile or not in cell order"
    );
    for (s, q) in h.streams().iter().enumerate() {
        let ci = stream_code_index(s);
        let mut prev = 0u16;
        let syms = gs.iter().map(|g| {
            let sym = predict(q, prev, g.codes[ci]);
            prev = g.codes[ci];
            sym
        });
        match q.packing {
            Packing::Bits => {
                let b = q.bits as usize;
                let mut bits: BitVec<u8, Msb0> = bitvec![u8, Msb0; 0; gs.len() * b];
                if b > 0 {
                    for (i, sym) in syms.enumerate() {
                        bits[i * b..(i + 1) * b].store_be(sym);
                    }
                }
                out.extend_from_slice(bits.as_raw_slice());
            }
            Packing::Bytes => {
                let nb = (q.bits as usize).div_ceil(8);
                for sym in syms {
                    out.extend_from_slice(&sym.to_be_bytes()[4 - nb..]);
                }
            }
        }
    }
    out
}

/// The `b`-bit symbol (b ≤ 16) at bit `pos` of an MSB-first stream (§4.3); bits past the end
/// read as 0. The inverse of the `bitvec` packing in [`encode`], three bytes at a time.
#[inline]
fn read_bits(data: &[u8], pos: usize, b: usize) -> u32 {
    if b == 0 {
        return 0;
    }
    let byte = pos / 8;
    let window = (0..3).fold(0u32, |v, k| {
        (v << 8) | *data.get(byte + k).unwrap_or(&0) as u32
    });
    (window >> (24 - pos % 8 - b)) & ((1 << b) - 1)
}

/// Decodes a tile's raw bytes into `n` stored Gaussians (§7.1–7.2), checking every count and
/// length.
pub fn decode(
    h: &Header,
    tile: u32,
    cells: &TileCells,
    raw: &[u8],
    n: u64,
) -> Result<Vec<Quantized>> {
    let loc = Location::Section {
        tag: TAG_TILE,
        tile: Some(tile),
    };
    let bad = |reason: String| {
        FormatError::new(
            FormatErrorKind::InvalidField {
                field: "tile data",
                reason,
            },
            loc,
        )
    };
    let mut pos = 0usize;
    let mut out: Vec<Quantized> = Vec::with_capacity(n as usize);
    for cy in cells.cy0..cells.cy0 + cells.ch {
        for cx in cells.cx0..cells.cx0 + cells.cw {
            let mut v: u64 = 0;
            let mut shift = 0;
            loop {
                let byte = *raw
                    .get(pos)
                    .ok_or_else(|| bad("cell counts end early".into()))?;
                pos += 1;
                v |= ((byte & 0x7f) as u64) << shift;
                if byte & 0x80 == 0 {
                    break;
                }
                shift += 7;
                if shift > 28 {
                    return Err(bad("a cell count varint is longer than 5 bytes".into()).into());
                }
            }
            if out.len() as u64 + v > n {
                return Err(bad(format!(
                    "cell counts add up to more than the index's {n} Gaussians"
                ))
                .into());
            }
            for _ in 0..v {
                out.push(Quantized {
                    cell_y: cy,
                    cell_x: cx,
                    codes: [0; 9],
                });
            }
        }
    }
    if out.len() as u64 != n {
        return Err(bad(format!(
            "cell counts add up to {}, the index says {n}",
            out.len()
        ))
        .into());
    }
    let mut syms: Vec<u32> = Vec::with_capacity(out.len());
    for (s, q) in h.streams().iter().enumerate() {
        let ci = stream_code_index(s);
        let len = q.stream_len(n) as usize;
        let data = raw
            .get(pos..pos + len)
            .ok_or_else(|| bad(format!("attribute stream {s} ends early")))?;
        pos += len;
        // Symbols first, in a tight loop per packing; then prediction, in one per predictor.
        syms.clear();
        match q.packing {
            Packing::Bits => {
                let b = q.bits as usize;
                syms.extend((0..out.len()).map(|i| read_bits(data, i * b, b)));
            }
            Packing::Bytes => {
                let nb = (q.bits as usize).div_ceil(8);
                syms.extend(
                    data.chunks_exact(nb.max(1))
                        .take(if nb == 0 { 0 } else { out.len() })
                        .map(|c| c.iter().fold(0u32, |a, &b| (a << 8) | b as u32)),
                );
                syms.resize(out.len(), 0);
            }
        }
        let max = q.max_code();
        if let Some(&sym) = syms.iter().find(|&&v| v > max) {
            return Err(bad(format!("symbol {sym} over {} bits in stream {s}", q.bits)).into());
        }
        match q.predictor {
            Predictor::None => {
                for (g, &sym) in out.iter_mut().zip(&syms) {
                    g.codes[ci] = sym as u16;
                }
            }
            Predictor::Previous => {
                let mut prev = 0u16;
                for (g, &sym) in out.iter_mut().zip(&syms) {
                    prev = unpredict(q, prev, sym);
                    g.codes[ci] = prev;
                }
            }
        }
    }
    if pos != raw.len() {
        return Err(bad(format!("{} bytes after the last stream", raw.len() - pos)).into());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zigzag_prediction_round_trips_at_every_width() {
        for bits in 1..=10u8 {
            for predictor in [Predictor::None, Predictor::Previous] {
                let q = AttrQuant {
                    bits,
                    predictor,
                    packing: Packing::Bits,
                    min: 0.0,
                    max: 0.0,
                };
                let m = 1u32 << bits;
                for prev in (0..m).step_by(((m / 16).max(1)) as usize) {
                    for code in 0..m {
                        let sym = predict(&q, prev as u16, code as u16);
                        assert!(sym < m, "bits {bits} sym {sym}");
                        assert_eq!(unpredict(&q, prev as u16, sym), code as u16);
                    }
                }
            }
        }
    }
}
