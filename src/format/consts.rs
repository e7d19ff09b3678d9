//! Constants of `.gsi` version 1 (`format-spec.md` §2, §4).

/// §2.1: the first 8 bytes of every `.gsi` file.
pub const SIGNATURE: [u8; 8] = [0x89, b'G', b'S', b'I', 0x0D, 0x0A, 0x1A, 0x0A];

/// §2.2: the major version this reader implements; other majors are refused.
pub const VERSION_MAJOR: u8 = 1;
/// §2.2: the newest minor version this reader knows and the writer produces (with
/// context-coded tiles); readers accept any minor of major 1.
pub const VERSION_MINOR: u8 = 1;
/// §2.2: the minor version of files with zstd-compressed tiles.
pub const VERSION_MINOR_ZSTD: u8 = 0;

/// §2.3: bytes of a section's framing: tag (4) + length (4) + CRC-32 (4).
pub const SECTION_OVERHEAD: usize = 12;

/// §4: the header section.
pub const TAG_HEAD: [u8; 4] = *b"HEAD";
/// §6: the tile index.
pub const TAG_TIDX: [u8; 4] = *b"TIDX";
/// §7: one tile of Gaussians.
pub const TAG_TILE: [u8; 4] = *b"TILE";
/// §2.4: the end marker.
pub const TAG_GEND: [u8; 4] = *b"GEND";
/// §7.6: the coding model of context-coded tiles (critical).
pub const TAG_CMOD: [u8; 4] = *b"CMOD";
/// §8: optional metadata (ancillary).
pub const TAG_META: [u8; 4] = *b"meta";

/// §4: size of the header payload before the attribute quantizers.
pub const HEAD_FIXED_LEN: usize = 28;
/// §4.2: size of one attribute quantizer record.
pub const QUANT_LEN: usize = 12;
/// §6: size of one tile-index entry.
pub const TIDX_ENTRY_LEN: usize = 16;

/// §4.2: the largest bit width of any attribute.
pub const MAX_BITS: u8 = 16;
/// §4.2: log2-scale bounds must lie within ±this.
pub const MAX_LOG2_SCALE: f32 = 24.0;
/// §4.2: channel value bounds must lie within ±this.
pub const MAX_CHANNEL_VALUE: f32 = 64.0;
/// §6: a reach of this value means "anywhere".
pub const REACH_UNBOUNDED: u16 = u16::MAX;

/// §8: metadata key of a zstd-compressed ICC profile.
pub const META_ICC: u8 = 1;
/// §8: metadata key of the EXIF orientation (1 byte, 1..=8).
pub const META_ORIENTATION: u8 = 2;

/// Whether a section tag is critical (§2.3): its first byte is an upper-case ASCII letter.
pub fn is_critical(tag: [u8; 4]) -> bool {
    tag[0].is_ascii_uppercase()
}
