//! The `.gsi` file format, version 1: bytes in, [`SplatImage`] out, and back.
//!
//! This module knows nothing of pixels or accelerators; `format-spec.md` is the normative
//! description, and the items here cite its sections.
#![forbid(unsafe_code)]

pub mod consts;
mod context;
mod grid;
use crate::core::format_error as error;
mod header;
mod metadata;
mod quant;
mod rans;
mod reader;
mod section;
mod tile;
mod writer;

pub use grid::QuantGrid;
pub use header::{AttrQuant, ColorModel, Header, Packing, Predictor};
pub use metadata::{Metadata, icc_profile_problem};
pub use quant::{dequantize, quantize};
pub use reader::{Decoder, FileSource, Source, tag_name};
pub use writer::{Coding, Encoded, WriteOptions, plan_header, write};
// For the tools, tests and fuzz targets only.
#[cfg(feature = "unstable")]
pub use error::{FormatError, FormatErrorKind, Location};
#[cfg(feature = "unstable")]
pub use metadata::MAX_ICC_BYTES;
#[cfg(feature = "unstable")]
pub use quant::{Quantized, rgb_to_ycbcr, ycbcr_to_rgb};
#[cfg(feature = "unstable")]
pub use reader::{
    MAX_CELLS_PER_BYTE, MAX_EXPANSION, MAX_GAUSSIANS_PER_BYTE, SectionInfo, SeekSource, TileEntry,
};
#[cfg(feature = "unstable")]
pub use writer::AUTO_PACKING_MAX;

use crate::core::splat::SplatImage;
use crate::{Limits, Result};

/// A whole decoded file.
#[derive(Debug, Clone)]
pub struct GsiFile {
    /// The header.
    pub header: Header,
    /// The metadata.
    pub metadata: Metadata,
    /// The picture.
    pub image: SplatImage,
}

/// Reads and fully checks a `.gsi` file held in memory.
pub fn read(bytes: &[u8], limits: &Limits) -> Result<GsiFile> {
    let d = Decoder::new(bytes, *limits)?;
    let image = d.decode_all()?;
    Ok(GsiFile {
        header: d.header().clone(),
        metadata: d.metadata().clone(),
        image,
    })
}

/// What a file holds, from its header, metadata and tile index alone: no tile is decoded, so
/// this is quick for any file size ([`inspect`]).
#[derive(Debug, Clone)]
pub struct Inspection {
    /// The header.
    pub header: Header,
    /// The metadata the reader kept.
    pub metadata: Metadata,
    /// Why each metadata entry the reader dropped was dropped (an invalid ICC profile, …).
    pub dropped_metadata: Vec<String>,
    /// How the tiles are coded (version 1.1: [`Coding::Context`]; 1.0: [`Coding::Zstd`]).
    pub coding: Coding,
    /// The bytes of the sections by kind: (tag, number of sections, bytes including framing),
    /// in file order.
    pub sections: Vec<(String, u64, u64)>,
}

/// Reads and checks a file's header, metadata and tile index (the checks of [`read`] that need
/// no tile), for a description of the file.
pub fn inspect(bytes: &[u8], limits: &Limits) -> Result<Inspection> {
    let d = Decoder::new(bytes, *limits)?;
    Ok(Inspection {
        header: d.header().clone(),
        metadata: d.metadata().clone(),
        dropped_metadata: d.dropped_metadata().to_vec(),
        coding: if d.is_context_coded() {
            Coding::Context
        } else {
            Coding::Zstd
        },
        sections: section_bytes(&d),
    })
}

/// Where the bytes of a file go: per section kind, and per attribute stream. For a
/// context-coded file (version 1.1) a stream's bits are the exact cost of its coded values;
/// for a zstd-coded one each stream of every tile is compressed on its own at `zstd_level`, an
/// estimate of its share of the file.
#[derive(Debug, Clone, PartialEq)]
pub struct Analysis {
    /// Total file bytes.
    pub file_bytes: u64,
    /// (section tag, number of sections, bytes including framing).
    pub sections: Vec<(String, u64, u64)>,
    /// (stream name, raw bits per Gaussian, compressed bits per Gaussian when compressed alone).
    pub streams: Vec<(String, f64, f64)>,
}

/// The bytes of a file's sections by kind, from its header and tile index alone (no tile is
/// read): (tag, number of sections, bytes including framing), in file order.
fn section_bytes<S: Source>(d: &Decoder<S>) -> Vec<(String, u64, u64)> {
    let mut sections: Vec<(String, u64, u64)> = Vec::new();
    let mut add = |tag: [u8; 4], bytes: u64| {
        let name = tag_name(tag);
        match sections.iter_mut().find(|s| s.0 == name) {
            Some(s) => {
                s.1 += 1;
                s.2 += bytes;
            }
            None => sections.push((name, 1, bytes)),
        }
    };
    for s in d.sections() {
        add(s.tag, s.payload_len + consts::SECTION_OVERHEAD as u64);
    }
    for e in d.index() {
        add(
            consts::TAG_TILE,
            e.payload_len as u64 + consts::SECTION_OVERHEAD as u64,
        );
    }
    add(consts::TAG_GEND, consts::SECTION_OVERHEAD as u64);
    sections
}

/// Analyses a file's byte budget: decodes every tile and measures each attribute stream.
pub fn analyze(bytes: &[u8], limits: &Limits, zstd_level: i32) -> Result<Analysis> {
    let d = Decoder::new(bytes, *limits)?;
    let file = d.decode_all()?;
    let h = d.header().clone();
    let sections = section_bytes(&d);
    let n = file.gaussian_count().max(1) as f64;
    let mut names: Vec<String> = [
        "cell counts",
        "position x",
        "position y",
        "scale 1",
        "scale 2",
        "rotation",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let ch_names: &[&str] = match (h.layout.channels(), h.color_model) {
        (1, _) => &["gray"],
        (2, _) => &["gray", "alpha"],
        (3, ColorModel::YCbCr) => &["Y", "Cb", "Cr"],
        (4, ColorModel::YCbCr) => &["Y", "Cb", "Cr", "alpha"],
        (3, _) => &["red", "green", "blue"],
        _ => &["red", "green", "blue", "alpha"],
    };
    names.extend(ch_names.iter().map(|s| s.to_string()));
    let mut raw_bits = vec![0f64; names.len()];
    let mut packed_bits = vec![0f64; names.len()];
    if let Some(model) = d.model() {
        // Context-coded (§7.4): the exact cost of each coded value under the file's model.
        let tiles = (0..d.index().len() as u32)
            .map(|t| d.tile_records(t))
            .collect::<Result<Vec<_>>>()?;
        let recorded = writer::record_tiles(&h, &tiles);
        let mut cost = [0f64; 10];
        for syms in &recorded {
            context::cost_syms(syms, model, &mut cost);
        }
        let nc = h.channels.len();
        for (i, c) in cost.iter().enumerate() {
            let at = if i == 9 { 6 + nc - 1 } else { i };
            if at < packed_bits.len() {
                packed_bits[at] += c;
            }
        }
        let qs = h.streams();
        for (i, r) in raw_bits.iter_mut().enumerate().skip(1) {
            *r = qs[i - 1].bits as f64 * n;
        }
        let streams = names
            .into_iter()
            .zip(raw_bits.iter().zip(&packed_bits))
            .map(|(name, (r, p))| (name, r / n, p / n))
            .collect();
        return Ok(Analysis {
            file_bytes: bytes.len() as u64,
            sections,
            streams,
        });
    }
    let tiles = writer::quantize_tiles(&file, &h);
    for (t, qs) in tiles.iter().enumerate() {
        let cells = tile::TileCells::of(&h, t as u64);
        let raw = tile::encode(&h, &cells, qs);
        // Split the raw tile back into its streams: counts first, then each attribute.
        let streams = h.streams();
        let attr_len: u64 = streams.iter().map(|q| q.stream_len(qs.len() as u64)).sum();
        let mut parts = vec![&raw[..raw.len() - attr_len as usize]];
        let mut pos = raw.len() - attr_len as usize;
        for q in &streams {
            let l = q.stream_len(qs.len() as u64) as usize;
            parts.push(&raw[pos..pos + l]);
            pos += l;
        }
        for (i, p) in parts.iter().enumerate() {
            raw_bits[i] += p.len() as f64 * 8.0;
            if !p.is_empty() {
                let c = zstd::bulk::compress(p, zstd_level).map_err(crate::Error::Io)?;
                packed_bits[i] += c.len() as f64 * 8.0;
            }
        }
    }
    let streams = names
        .into_iter()
        .zip(raw_bits.iter().zip(&packed_bits))
        .map(|(name, (r, p))| (name, r / n, p / n))
        .collect();
    Ok(Analysis {
        file_bytes: bytes.len() as u64,
        sections,
        streams,
    })
}

impl SplatImage {
    /// Number of Gaussians.
    pub fn gaussian_count(&self) -> usize {
        self.gaussians().len()
    }
}
