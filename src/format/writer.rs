//! Writing `.gsi` files (§2–§8).

use rayon::prelude::*;

use super::consts::*;
use super::context::{self, DISTS, Model};
use super::header::{AttrQuant, ColorModel, Header, Packing, Predictor};
use super::metadata::Metadata;
use super::quant::{Quantized, dequantize, quantize, reach, rgb_to_ycbcr};
use super::rans::{Dist, TOKENS};
use super::reader::MAX_GAUSSIANS_PER_BYTE;
use super::section;
use super::tile::{self, TileCells};
use crate::core::splat::SplatImage;
use crate::{Error, Result};

/// How the Gaussians of each tile are coded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Coding {
    /// Version 1.1 (§7.4–7.6): context-modelled rANS coding with the file's distributions.
    #[default]
    Context,
    /// Version 1.0 (§7.1–7.3): attribute streams compressed with zstd.
    Zstd,
}

/// How to quantize and lay out a file. `Default` is the compact setting of the analytic encoder.
#[derive(Debug, Clone, PartialEq)]
pub struct WriteOptions {
    /// Side of a position cell in native pixels (§5.1), 1 to 65535.
    pub cell_size: u16,
    /// Side of a tile in cells (§6); `None` picks about 4096 Gaussians per tile.
    pub tile_cells: Option<u16>,
    /// Bits of each position offset inside its cell (0 to 16).
    pub position_bits: u8,
    /// Bits of each log2 standard deviation (0 to 16).
    pub scale_bits: u8,
    /// Range of log2 standard deviations; `None` takes the data's.
    pub scale_range: Option<(f32, f32)>,
    /// Bits of the rotation (0 to 16).
    pub rotation_bits: u8,
    /// Bits of the gray or Y channel, and of each of R, G, B when stored as RGB (0 to 16).
    pub luma_bits: u8,
    /// Bits of Cb and Cr under the YCbCr colour model (0 to 16).
    pub chroma_bits: u8,
    /// Bits of the alpha channel (0 to 16).
    pub alpha_bits: u8,
    /// Range of each stored channel; `None` takes the data's.
    pub channel_ranges: Option<[(f32, f32); 4]>,
    /// Store colour as YCbCr (colour layouts only).
    pub color_model: ColorModel,
    /// Predict scales and channels from the previous Gaussian (§4.3).
    pub predict_values: bool,
    /// Symbol layout of every stream; `None` writes the file both ways (up to
    /// `AUTO_PACKING_MAX` Gaussians; above it, bytes) and keeps the smaller.
    pub packing: Option<Packing>,
    /// How tiles are coded (version 1.1 context coding by default).
    pub coding: Coding,
    /// zstd level (1 to 22), for [`Coding::Zstd`].
    pub zstd_level: i32,
    /// Metadata to store.
    pub metadata: Metadata,
}

impl Default for WriteOptions {
    fn default() -> Self {
        WriteOptions {
            cell_size: 8,
            tile_cells: None,
            position_bits: 5,
            scale_bits: 6,
            scale_range: None,
            rotation_bits: 6,
            luma_bits: 8,
            chroma_bits: 6,
            alpha_bits: 8,
            channel_ranges: None,
            color_model: ColorModel::YCbCr,
            predict_values: true,
            packing: None,
            coding: Coding::Context,
            zstd_level: 19,
            metadata: Metadata::default(),
        }
    }
}

impl WriteOptions {
    /// The options that write Gaussians decoded under `h` again with the same quantizers and
    /// tiling (so with the same stored codes), coded with `coding`.
    pub fn matching(h: &Header, coding: Coding) -> WriteOptions {
        let nc = h.channels.len();
        let mut ranges = [(0.0, 0.0); 4];
        for (r, q) in ranges.iter_mut().zip(&h.channels) {
            *r = (q.min, q.max);
        }
        let bits = |i: usize| h.channels.get(i).map_or(8, |q| q.bits);
        let alpha = h.layout.has_alpha().then(|| bits(nc - 1));
        WriteOptions {
            cell_size: h.cell_size,
            tile_cells: Some(h.tile_cells),
            position_bits: h.position.bits,
            scale_bits: h.scale.bits,
            scale_range: Some((h.scale.min, h.scale.max)),
            rotation_bits: h.rotation.bits,
            luma_bits: bits(0),
            chroma_bits: if h.color_model == ColorModel::YCbCr {
                bits(1)
            } else {
                bits(0)
            },
            alpha_bits: alpha.unwrap_or(8),
            channel_ranges: Some(ranges),
            color_model: h.color_model,
            predict_values: true,
            packing: None,
            coding,
            ..WriteOptions::default()
        }
    }
}

/// An encoded file and the picture a reader will decode from it.
#[derive(Debug, Clone)]
pub struct Encoded {
    /// The `.gsi` bytes.
    pub bytes: Vec<u8>,
    /// Exactly what [`read`](super::read) returns for these bytes.
    pub image: SplatImage,
    /// The header written.
    pub header: Header,
    /// Details of how the file was made, for a user who asks (e.g. the GPU the refinement ran
    /// on). The library never prints.
    pub notes: Vec<String>,
    /// What went differently from what was asked and the user should see (e.g. the refinement
    /// fell back from the GPU to the CPU, and why).
    pub warnings: Vec<String>,
}

fn range_of(values: impl Iterator<Item = f64>, bound: f32) -> (f32, f32) {
    let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    });
    if lo > hi {
        return (0.0, 0.0);
    }
    // Round outwards to f32 so every value stays inside the stored range.
    let lo = (lo as f32).max(-bound);
    let hi = (hi as f32).min(bound);
    (lo, hi.max(lo))
}

/// Largest Gaussian count for which `packing: None` tries both layouts.
pub const AUTO_PACKING_MAX: usize = 1 << 18;

/// Builds the header `write` would use for `image`.
pub fn plan_header(image: &SplatImage, opts: &WriteOptions) -> Result<Header> {
    let packing = opts.packing.unwrap_or(Packing::Bytes);
    plan_header_with(image, opts, packing)
}

fn plan_header_with(image: &SplatImage, opts: &WriteOptions, packing: Packing) -> Result<Header> {
    let layout = image.layout();
    let nc = layout.channels();
    if opts.cell_size == 0 {
        return Err(Error::invalid("cell size", "0 (allowed: 1 to 65535)"));
    }
    let bits = [
        opts.position_bits,
        opts.scale_bits,
        opts.rotation_bits,
        opts.luma_bits,
        opts.chroma_bits,
        opts.alpha_bits,
    ]
    .into_iter();
    if bits.clone().any(|b| b > MAX_BITS) {
        return Err(Error::invalid(
            "bits",
            format!("{:?}: each at most {MAX_BITS}", bits.collect::<Vec<_>>()),
        ));
    }
    if !(1..=22).contains(&opts.zstd_level) {
        return Err(Error::invalid(
            "zstd level",
            format!("{} (allowed: 1 to 22)", opts.zstd_level),
        ));
    }
    let color_model = if layout.is_color() {
        opts.color_model
    } else {
        ColorModel::Identity
    };
    let gs = image.gaussians();
    let scale_range = opts.scale_range.unwrap_or_else(|| {
        range_of(
            gs.iter().flat_map(|g| g.scale).map(|s| (s as f64).log2()),
            MAX_LOG2_SCALE,
        )
    });
    let stored = |g: &crate::Gaussian| -> [f64; 4] {
        let mut c = g.color.map(|v| v as f64);
        if color_model == ColorModel::YCbCr {
            let y = rgb_to_ycbcr([c[0], c[1], c[2]]);
            c[..3].copy_from_slice(&y);
        }
        c
    };
    let context = opts.coding == Coding::Context;
    // Under context coding (§7.4) the predictor and packing fields are unused and written as 0.
    let packing = if context { Packing::Bits } else { packing };
    let value_predictor = if opts.predict_values && !context {
        Predictor::Previous
    } else {
        Predictor::None
    };
    let channels = (0..nc)
        .map(|i| {
            let (min, max) = match opts.channel_ranges {
                Some(r) => r[i],
                None => range_of(gs.iter().map(|g| stored(g)[i]), MAX_CHANNEL_VALUE),
            };
            let bits = if layout.has_alpha() && i == nc - 1 {
                opts.alpha_bits
            } else if color_model == ColorModel::YCbCr && i > 0 {
                opts.chroma_bits
            } else {
                opts.luma_bits
            };
            AttrQuant {
                bits,
                predictor: value_predictor,
                packing,
                min,
                max,
            }
        })
        .collect();
    let g = opts.cell_size as u64;
    let tile_cells = match opts.tile_cells {
        Some(t) => t,
        None => {
            // About 4096 Gaussians per tile, tiles of 64 to 1024 pixels.
            let area = image.width() as f64 * image.height() as f64;
            let side = (area * 4096.0 / gs.len().max(1) as f64)
                .sqrt()
                .clamp(64.0, 1024.0);
            ((side / g as f64).round() as u64).clamp(1, u16::MAX as u64) as u16
        }
    };
    let tile_cells = tile_cells.max((16u64.div_ceil(g)) as u16);
    Ok(Header {
        version_minor: if context {
            VERSION_MINOR
        } else {
            VERSION_MINOR_ZSTD
        },
        width: image.width(),
        height: image.height(),
        layout,
        color_model,
        cell_size: opts.cell_size,
        tile_cells,
        gaussian_count: gs.len() as u64,
        position: AttrQuant {
            packing,
            ..AttrQuant::fixed(opts.position_bits)
        },
        scale: AttrQuant {
            bits: opts.scale_bits,
            predictor: value_predictor,
            packing,
            min: scale_range.0,
            max: scale_range.1,
        },
        rotation: AttrQuant {
            packing,
            ..AttrQuant::fixed(opts.rotation_bits)
        },
        channels,
    })
}

/// Quantizes `image` under `header` and groups its records by tile, in the canonical order of
/// §7.3 (by cell, then quadrant of the cell, then codes). Returns one sorted list per tile.
pub(crate) fn quantize_tiles(image: &SplatImage, header: &Header) -> Vec<Vec<Quantized>> {
    let (tiles_x, _) = header.tiles();
    let tc = header.tile_cells as u64;
    let pb = header.position.bits;
    let mut qs: Vec<(u64, u32, u32, usize, Quantized)> = image
        .gaussians()
        .par_iter()
        .map(|g| {
            let q = quantize(header, g);
            let t = (q.cell_y as u64 / tc) * tiles_x + q.cell_x as u64 / tc;
            (t, q.cell_y, q.cell_x, context::quadrant(&q, pb), q)
        })
        .collect();
    qs.par_sort_unstable();
    let mut tiles = vec![Vec::new(); header.tile_count() as usize];
    for (t, _, _, _, q) in qs {
        tiles[t as usize].push(q);
    }
    tiles
}

/// Encodes `image` as a `.gsi` file.
pub fn write(image: &SplatImage, opts: &WriteOptions) -> Result<Encoded> {
    if let Some(why) = opts
        .metadata
        .icc_profile
        .as_deref()
        .and_then(super::metadata::icc_profile_problem)
    {
        return Err(Error::invalid("metadata", why));
    }
    if opts.coding == Coding::Context {
        let encoded = write_context(image, opts, plan_header_with(image, opts, Packing::Bits)?)?;
        if let Some(e) = encoded {
            return Ok(e);
        }
        // A context-coded tile below one bit per Gaussian (§6): version 1.0 coding instead.
    }
    let candidates = match opts.packing {
        Some(p) => vec![p],
        None if image.gaussian_count() <= AUTO_PACKING_MAX => vec![Packing::Bytes, Packing::Bits],
        None => vec![Packing::Bytes],
    };
    // The candidates are written side by side (their tiles are compressed in parallel too);
    // the first of the smallest is kept, so the result does not depend on the thread count.
    let written: Vec<Encoded> = candidates
        .into_par_iter()
        .map(|packing| write_with(image, opts, plan_header_with(image, opts, packing)?))
        .collect::<Result<_>>()?;
    let mut best: Option<Encoded> = None;
    for e in written {
        if best.as_ref().is_none_or(|b| e.bytes.len() < b.bytes.len()) {
            best = Some(e);
        }
    }
    Ok(best.expect("at least one packing"))
}

fn write_with(image: &SplatImage, opts: &WriteOptions, header: Header) -> Result<Encoded> {
    let tiles = quantize_tiles(image, &header);
    let done: Vec<Done> = tiles
        .par_iter()
        .enumerate()
        .map(|(t, qs)| {
            let cells = TileCells::of(&header, t as u64);
            let raw = tile::encode(&header, &cells, qs);
            let mut payload = (t as u32).to_le_bytes().to_vec();
            payload.extend(zstd::bulk::compress(&raw, opts.zstd_level).map_err(Error::Io)?);
            pad_tile_payload(&mut payload, qs.len() as u64);
            Ok(Done::new(&header, qs, payload, raw.len() as u32))
        })
        .collect::<Result<_>>()?;
    assemble(image, opts, header, None, done)
}

/// One written tile.
struct Done {
    count: u32,
    payload: Vec<u8>,
    raw_len: u32,
    reach: u16,
    gaussians: Vec<crate::Gaussian>,
}

impl Done {
    fn new(header: &Header, qs: &[Quantized], payload: Vec<u8>, raw_len: u32) -> Done {
        let gaussians: Vec<_> = qs.iter().map(|q| dequantize(header, q)).collect();
        let max_reach = gaussians.iter().map(reach).fold(0.0f64, f64::max).ceil();
        let reach = if max_reach < REACH_UNBOUNDED as f64 {
            max_reach as u16
        } else {
            REACH_UNBOUNDED
        };
        Done {
            count: qs.len() as u32,
            payload,
            raw_len,
            reach,
            gaussians,
        }
    }
}

/// Per tile, the values it codes (§7.4) as (lane, distribution, value), in coding order.
pub(crate) type Recorded = Vec<Vec<(u8, u8, u32)>>;

/// The values each tile codes (§7.4), in coding order.
pub(crate) fn record_tiles(header: &Header, tiles: &[Vec<Quantized>]) -> Recorded {
    tiles
        .par_iter()
        .enumerate()
        .map(|(t, qs)| {
            let cells = TileCells::of(header, t as u64);
            let mut gs = qs.clone();
            let (rec, r) = context::walk(header, &cells, &mut gs, context::Recorder::default());
            r.expect("recording cannot fail");
            debug_assert_eq!(&gs, qs, "the walk changes no record it codes");
            rec.syms
        })
        .collect()
}

/// The distributions that code `recorded` best (§7.6): each context's token frequencies, with
/// contexts whose own distribution does not pay for its storage stored as copies of an earlier
/// one they are merged with (greedily, in order). Returns the model and its estimated size in
/// bits (storage and coded values).
pub(crate) fn fit_model(recorded: &[Vec<(u8, u8, u32)>]) -> (Model, f64) {
    let mut counts = vec![[0u64; TOKENS]; DISTS];
    let mut raw_bits = 0f64;
    for syms in recorded {
        context::count_tokens(syms, &mut counts);
        raw_bits += syms
            .iter()
            .map(|&(_, _, v)| super::rans::tokenize(v).2 as f64)
            .sum::<f64>();
    }
    let cost = |c: &[u64; TOKENS]| {
        let d = Dist::from_counts(c);
        d.coded_bits(c) + d.stored_bits() as f64
    };
    // Roots: (distribution index, merged counts, cost).
    let mut roots: Vec<(usize, [u64; TOKENS], f64)> = Vec::new();
    let mut copy_of = vec![None; DISTS];
    for i in 0..DISTS {
        if counts[i].iter().all(|&c| c == 0) {
            continue;
        }
        let alone = cost(&counts[i]);
        let mut best: Option<(usize, f64, f64)> = None; // (root slot, gain, merged cost)
        for (r, (_, rc, rcost)) in roots.iter().enumerate() {
            let mut m = *rc;
            for (a, b) in m.iter_mut().zip(&counts[i]) {
                *a += b;
            }
            let merged = cost(&m);
            // A copy is stored in 15 bits.
            let gain = rcost + alone - merged - 15.0;
            if gain > 0.0 && best.is_none_or(|b| gain > b.1) {
                best = Some((r, gain, merged));
            }
        }
        match best {
            Some((r, _, merged)) => {
                let root = &mut roots[r];
                for (a, b) in root.1.iter_mut().zip(&counts[i]) {
                    *a += b;
                }
                root.2 = merged;
                copy_of[i] = Some(root.0);
            }
            None => roots.push((i, counts[i], alone)),
        }
    }
    let mut dists = vec![Dist::default(); DISTS];
    let mut total = raw_bits + 16.0 + DISTS as f64;
    for (i, c, cost) in &roots {
        dists[*i] = Dist::from_counts(c);
        total += cost;
    }
    for i in 0..DISTS {
        if let Some(j) = copy_of[i] {
            dists[i] = dists[j].clone();
            total += 15.0;
        }
    }
    (Model::new(dists, copy_of), total)
}

/// Writes version 1.1 (context-coded tiles), or `None` when a tile would take less than one bit
/// per Gaussian (§6), which only the zstd coding's padding can meet.
fn write_context(
    image: &SplatImage,
    opts: &WriteOptions,
    header: Header,
) -> Result<Option<Encoded>> {
    let tiles = quantize_tiles(image, &header);
    let recorded = record_tiles(&header, &tiles);
    let (model, _) = fit_model(&recorded);
    let lanes = context::lanes(header.channels.len());
    let done: Vec<Done> = tiles
        .par_iter()
        .zip(&recorded)
        .enumerate()
        .map(|(t, (qs, syms))| {
            let mut payload = (t as u32).to_le_bytes().to_vec();
            if !qs.is_empty() {
                payload.extend(context::encode_syms(syms, &model, lanes));
            }
            Done::new(&header, qs, payload, 0)
        })
        .collect();
    let below_a_bit = done
        .iter()
        .any(|d| d.count as u64 > MAX_GAUSSIANS_PER_BYTE * (d.payload.len() as u64 - 4));
    if below_a_bit {
        return Ok(None);
    }
    assemble(image, opts, header, Some(&model), done).map(Some)
}

fn assemble(
    image: &SplatImage,
    opts: &WriteOptions,
    header: Header,
    model: Option<&Model>,
    done: Vec<Done>,
) -> Result<Encoded> {
    let mut out = SIGNATURE.to_vec();
    section::push(&mut out, TAG_HEAD, &header.to_bytes());
    if !opts.metadata.is_empty() {
        section::push(&mut out, TAG_META, &opts.metadata.to_bytes());
    }
    if let Some(m) = model {
        section::push(&mut out, TAG_CMOD, &m.to_bytes());
    }
    let mut index = Vec::with_capacity(done.len() * TIDX_ENTRY_LEN);
    for d in &done {
        index.extend_from_slice(&d.count.to_le_bytes());
        index.extend_from_slice(&(d.payload.len() as u32).to_le_bytes());
        index.extend_from_slice(&d.raw_len.to_le_bytes());
        index.extend_from_slice(&d.reach.to_le_bytes());
        index.extend_from_slice(&[0, 0]);
    }
    section::push(&mut out, TAG_TIDX, &index);
    for d in &done {
        section::push(&mut out, TAG_TILE, &d.payload);
    }
    section::push(&mut out, TAG_GEND, &[]);
    let gaussians = done.into_iter().flat_map(|d| d.gaussians).collect();
    let image = SplatImage::new(image.width(), image.height(), image.layout(), gaussians)?;
    Ok(Encoded {
        bytes: out,
        image,
        header,
        notes: Vec::new(),
        warnings: Vec::new(),
    })
}

/// §6, §7: pads a tile's payload (tile number and zstd frame) with a skippable frame when its
/// compressed data is shorter than one bit per Gaussian (a tile of identical Gaussians can
/// compress further), so that the file stays valid.
fn pad_tile_payload(payload: &mut Vec<u8>, count: u64) {
    let need = count.div_ceil(MAX_GAUSSIANS_PER_BYTE);
    let have = payload.len() as u64 - 4;
    if have >= need {
        return;
    }
    // RFC 8878 §3.1.2: magic 0x184D2A50 (little-endian), user data size, user data.
    let size = (need - have).saturating_sub(8);
    payload.extend_from_slice(&SKIPPABLE_MAGIC.to_le_bytes());
    payload.extend_from_slice(&(size as u32).to_le_bytes());
    payload.resize(payload.len() + size as usize, 0);
}

/// RFC 8878 §3.1.2: the first of the 16 magic numbers of a skippable frame.
const SKIPPABLE_MAGIC: u32 = 0x184D_2A50;
