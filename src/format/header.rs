//! The `HEAD` section (§4): image size, channels, position grid, tiling and quantizers.

use byteorder::{ByteOrder, LittleEndian as LE};

use super::consts::*;
use super::error::{FormatError, FormatErrorKind, Location};
use crate::core::splat::ChannelLayout;
use crate::{Error, Limits, Result};

/// §4.1: how stored channel values map to the rendered channels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ColorModel {
    /// Channels are stored as they render (gray, RGB, alpha).
    Identity,
    /// The first three channels are Y, Cb, Cr (BT.601, full range), converted to RGB on reading.
    YCbCr,
}

/// §4.3: how each symbol of a stream is predicted from the one before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Predictor {
    /// Symbols are the quantized values.
    None,
    /// Symbols are zig-zag mapped differences from the previous value in the tile, modulo 2^bits.
    Previous,
}

/// §4.3: how the symbols of a stream are laid out in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Packing {
    /// `bits` bits per symbol, most significant bit first, the stream padded to a whole byte.
    Bits,
    /// `ceil(bits / 8)` bytes per symbol, big-endian.
    Bytes,
}

/// §4.2: the quantizer of one attribute.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AttrQuant {
    /// Bits per value, 0 to 16.
    pub bits: u8,
    /// Prediction before packing.
    pub predictor: Predictor,
    /// Symbol layout.
    pub packing: Packing,
    /// Value of the smallest code (meaning depends on the attribute, §5).
    pub min: f32,
    /// Value of the largest code.
    pub max: f32,
}

impl AttrQuant {
    unstable_pub! {
    /// A quantizer with no range (positions and rotations, whose ranges are fixed by §5).
    fn fixed(bits: u8) -> Self {
        AttrQuant {
            bits,
            predictor: Predictor::None,
            packing: Packing::Bits,
            min: 0.0,
            max: 0.0,
        }
    }
    }

    unstable_pub! {
    /// Largest code, `2^bits - 1`.
    fn max_code(&self) -> u32 {
        (1u32 << self.bits) - 1
    }
    }

    /// Bytes a stream of `n` symbols takes (§7.2).
    pub(crate) fn stream_len(&self, n: u64) -> u64 {
        match self.packing {
            Packing::Bits => (n * self.bits as u64).div_ceil(8),
            Packing::Bytes => n * (self.bits as u64).div_ceil(8),
        }
    }
}

/// The decoded `HEAD` section.
#[derive(Debug, Clone, PartialEq)]
pub struct Header {
    /// Minor version of the file (§2.2).
    pub version_minor: u8,
    /// Native width in pixels.
    pub width: u32,
    /// Native height in pixels.
    pub height: u32,
    /// Rendered channels.
    pub layout: ChannelLayout,
    /// Stored colour model.
    pub color_model: ColorModel,
    /// Side of a position cell in native pixels (§5.1).
    pub cell_size: u16,
    /// Side of a tile in cells (§6).
    pub tile_cells: u16,
    /// Total number of Gaussians.
    pub gaussian_count: u64,
    /// Position offsets inside a cell (`min`, `max` unused, 0).
    pub position: AttrQuant,
    /// log2 of the standard deviations.
    pub scale: AttrQuant,
    /// Rotation over [0, π) (`min`, `max` unused, 0).
    pub rotation: AttrQuant,
    /// One quantizer per stored channel (the layout's channel count).
    pub channels: Vec<AttrQuant>,
}

impl Header {
    unstable_pub! {
    /// Position cells across and down.
    fn cells(&self) -> (u64, u64) {
        let g = self.cell_size as u64;
        (
            (self.width as u64).div_ceil(g),
            (self.height as u64).div_ceil(g),
        )
    }
    }

    /// Tiles across and down.
    pub fn tiles(&self) -> (u64, u64) {
        let (cx, cy) = self.cells();
        let t = self.tile_cells as u64;
        (cx.div_ceil(t), cy.div_ceil(t))
    }

    unstable_pub! {
    /// Number of tiles.
    fn tile_count(&self) -> u64 {
        let (tx, ty) = self.tiles();
        tx * ty
    }
    }

    /// Side of a tile in native pixels.
    pub fn tile_size(&self) -> u64 {
        self.cell_size as u64 * self.tile_cells as u64
    }

    /// The attribute quantizers in stream order (§7.2): x, y, σ₁, σ₂, θ, channels.
    pub fn streams(&self) -> Vec<AttrQuant> {
        let mut v = vec![
            self.position,
            self.position,
            self.scale,
            self.scale,
            self.rotation,
        ];
        v.extend_from_slice(&self.channels);
        v
    }

    /// Raw (uncompressed) bits of one Gaussian's attributes.
    pub fn bits_per_gaussian(&self) -> u32 {
        self.streams().iter().map(|q| q.bits as u32).sum()
    }

    /// Payload length of a version 1.0 header.
    pub(crate) fn encoded_len(&self) -> usize {
        HEAD_FIXED_LEN + QUANT_LEN * (3 + self.channels.len())
    }

    unstable_pub! {
    /// Serializes the payload (§4).
    fn to_bytes(&self) -> Vec<u8> {
        let mut b = vec![0u8; self.encoded_len()];
        b[0] = VERSION_MAJOR;
        b[1] = self.version_minor;
        LE::write_u32(&mut b[4..], self.width);
        LE::write_u32(&mut b[8..], self.height);
        b[12] = self.layout.channels() as u8;
        b[13] = match self.color_model {
            ColorModel::Identity => 0,
            ColorModel::YCbCr => 1,
        };
        LE::write_u16(&mut b[14..], self.cell_size);
        LE::write_u16(&mut b[16..], self.tile_cells);
        LE::write_u64(&mut b[20..], self.gaussian_count);
        let quants = [self.position, self.scale, self.rotation]
            .into_iter()
            .chain(self.channels.iter().copied());
        for (i, q) in quants.enumerate() {
            let r = &mut b[HEAD_FIXED_LEN + i * QUANT_LEN..][..QUANT_LEN];
            r[0] = q.bits;
            r[1] = match q.predictor {
                Predictor::None => 0,
                Predictor::Previous => 1,
            };
            r[2] = match q.packing {
                Packing::Bits => 0,
                Packing::Bytes => 1,
            };
            LE::write_f32(&mut r[4..], q.min);
            LE::write_f32(&mut r[8..], q.max);
        }
        b
    }
    }

    unstable_pub! {
    /// Parses and validates a `HEAD` payload (§4) against the spec and `limits`.
    fn parse(p: &[u8], limits: &Limits) -> Result<Header> {
        let loc = Location::Section {
            tag: TAG_HEAD,
            tile: None,
        };
        let bad = |field: &'static str, reason: String| -> Error {
            FormatError::new(FormatErrorKind::InvalidField { field, reason }, loc).into()
        };
        if p.len() < 2 {
            return Err(bad(
                "length",
                format!("{} bytes, a header has at least {HEAD_FIXED_LEN}", p.len()),
            ));
        }
        let (major, minor) = (p[0], p[1]);
        if major != VERSION_MAJOR {
            return Err(FormatError::new(
                FormatErrorKind::UnsupportedVersion { major, minor },
                loc,
            )
            .into());
        }
        if p.len() < HEAD_FIXED_LEN {
            return Err(bad(
                "length",
                format!("{} bytes, a header has at least {HEAD_FIXED_LEN}", p.len()),
            ));
        }
        let width = LE::read_u32(&p[4..]);
        let height = LE::read_u32(&p[8..]);
        let layout = ChannelLayout::from_channels(p[12] as usize)
            .ok_or_else(|| bad("channel layout", format!("{} (allowed: 1 to 4)", p[12])))?;
        let color_model = match p[13] {
            0 => ColorModel::Identity,
            1 if layout.is_color() => ColorModel::YCbCr,
            1 => return Err(bad("colour model", "YCbCr needs 3 or 4 channels".into())),
            v => return Err(bad("colour model", format!("{v} (allowed: 0, 1)"))),
        };
        let cell_size = LE::read_u16(&p[14..]);
        let tile_cells = LE::read_u16(&p[16..]);
        let gaussian_count = LE::read_u64(&p[20..]);
        let nc = layout.channels();
        let expected = HEAD_FIXED_LEN + QUANT_LEN * (3 + nc);
        let known_minor = minor <= VERSION_MINOR;
        if p.len() < expected || (known_minor && p.len() != expected) {
            return Err(bad(
                "length",
                format!("{} bytes, expected {expected} for {nc} channels", p.len()),
            ));
        }
        if width == 0 || height == 0 {
            return Err(bad(
                "size",
                format!("{width}x{height}: both must be at least 1"),
            ));
        }
        limits.check("image width", width as u64, limits.max_dimension as u64)?;
        limits.check("image height", height as u64, limits.max_dimension as u64)?;
        limits.check(
            "native pixel count",
            width as u64 * height as u64,
            limits.max_native_pixels,
        )?;
        limits.check("Gaussian count", gaussian_count, limits.max_gaussians)?;
        if cell_size == 0 || tile_cells == 0 || (cell_size as u64 * tile_cells as u64) < 16 {
            return Err(bad(
                "tiling",
                format!(
                    "cell size {cell_size}, tile {tile_cells} cells: both >= 1 and a tile >= 16 pixels"
                ),
            ));
        }
        let mut quants = Vec::with_capacity(3 + nc);
        for i in 0..3 + nc {
            let r = &p[HEAD_FIXED_LEN + i * QUANT_LEN..][..QUANT_LEN];
            let name: &'static str = match i {
                0 => "position quantizer",
                1 => "scale quantizer",
                2 => "rotation quantizer",
                _ => "channel quantizer",
            };
            let q = AttrQuant {
                bits: r[0],
                predictor: match r[1] {
                    0 => Predictor::None,
                    1 => Predictor::Previous,
                    v => return Err(bad(name, format!("predictor {v} (allowed: 0, 1)"))),
                },
                packing: match r[2] {
                    0 => Packing::Bits,
                    1 => Packing::Bytes,
                    v => return Err(bad(name, format!("packing {v} (allowed: 0, 1)"))),
                },
                min: LE::read_f32(&r[4..]),
                max: LE::read_f32(&r[8..]),
            };
            if q.bits > MAX_BITS {
                return Err(bad(
                    name,
                    format!("{} bits (allowed: 0 to {MAX_BITS})", q.bits),
                ));
            }
            let bound = match i {
                0 | 2 => 0.0,
                1 => MAX_LOG2_SCALE,
                _ => MAX_CHANNEL_VALUE,
            };
            // Written as a negated comparison so NaN fails it.
            let in_range = |v: f32| v.abs() <= bound;
            if !(in_range(q.min) && in_range(q.max) && q.min <= q.max) {
                return Err(bad(
                    name,
                    format!(
                        "range [{}, {}]: needs min <= max within ±{bound}",
                        q.min, q.max
                    ),
                ));
            }
            quants.push(q);
        }
        let header = Header {
            version_minor: minor,
            width,
            height,
            layout,
            color_model,
            cell_size,
            tile_cells,
            gaussian_count,
            position: quants[0],
            scale: quants[1],
            rotation: quants[2],
            channels: quants[3..].to_vec(),
        };
        limits.check(
            "tile index size (bytes)",
            header.tile_count() * TIDX_ENTRY_LEN as u64,
            limits.max_section_bytes,
        )?;
        limits.check(
            "Gaussian memory (bytes)",
            gaussian_count * std::mem::size_of::<crate::Gaussian>() as u64,
            limits.max_memory_bytes,
        )?;
        Ok(header)
    }
    }
}
