//! Reading `.gsi` files (§2–§8): whole files, or only the tiles a region needs.

#[cfg(feature = "unstable")]
use std::io::{Read, Seek, SeekFrom};
use std::sync::atomic::{AtomicBool, Ordering};

use byteorder::{ByteOrder, LittleEndian as LE};
use rayon::prelude::*;

use super::consts::*;
use super::context::{self, Model};
use super::error::{FormatError, FormatErrorKind, Location, tag_str};
use super::header::Header;
use super::metadata::Metadata;
use super::quant::{Dequantizer, Quantized, reach, reach_bound};
use super::rans;
use super::section;
use super::tile::{self, TileCells};
use crate::core::geometry::PREFILTER_VARIANCE;
use crate::core::geometry::Viewport;
use crate::core::splat::{Gaussian, SplatImage};
use crate::{Error, Limits, Result};

/// §6: a tile's decompressed size may be at most this many times its compressed size (the
/// largest expansion a zstd frame can encode is below it).
pub const MAX_EXPANSION: u64 = 32_768;

/// §6: a tile holds at most this many Gaussians per byte of its compressed data (every Gaussian
/// costs at least one bit of the file), so a file's size bounds the Gaussians it can declare.
pub const MAX_GAUSSIANS_PER_BYTE: u64 = 8;

/// §6: a context-coded tile with Gaussians has at most this many cells per byte of its coded
/// data, so a file's size bounds the cells its reader walks.
pub const MAX_CELLS_PER_BYTE: u64 = 256;

/// Most Gaussians decoded in one batch of tiles by [`Decoder::decode_tiles`] (a batch's
/// payloads and per-tile buffers are the decode's only memory beside its result).
const BATCH_GAUSSIANS: u64 = 1 << 20;
/// Most compressed payload bytes read in one batch.
const BATCH_BYTES: u64 = 1 << 26;

/// Random-access bytes: a slice in memory, a file, or any `Read + Seek`.
///
/// Reads take `&self`, so a [`Decoder`] over a `Sync` source can be shared by threads that
/// decode different regions at once.
pub trait Source {
    /// Total length in bytes, as measured when the source was opened.
    fn len(&self) -> u64;
    /// Fills `buf` from `offset`; the caller guarantees `offset + buf.len() <= len()`. A source
    /// that shrank since it was opened returns an error (`UnexpectedEof`).
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<()>;

    /// Whether the source holds no bytes.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Source for &[u8] {
    fn len(&self) -> u64 {
        <[u8]>::len(self) as u64
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
        let src = usize::try_from(offset)
            .ok()
            .and_then(|o| self.get(o..o.checked_add(buf.len())?))
            .ok_or(std::io::ErrorKind::UnexpectedEof)?;
        buf.copy_from_slice(src);
        Ok(())
    }
}

/// A file read with positional reads (`pread`): no shared cursor, no lock.
///
/// If the file is replaced (renamed over) while open, reads go on from the file that was
/// opened; if it is overwritten or truncated in place, the CRCs and lengths catch it and
/// decoding fails with an error, never a panic.
#[derive(Debug)]
pub struct FileSource {
    file: std::fs::File,
    len: u64,
}

impl FileSource {
    /// Opens `path` for reading.
    pub fn open(path: impl AsRef<std::path::Path>) -> std::io::Result<Self> {
        Self::new(std::fs::File::open(path)?)
    }

    /// Wraps an open file, measuring its length.
    pub fn new(file: std::fs::File) -> std::io::Result<Self> {
        let len = file.metadata()?.len();
        Ok(FileSource { file, len })
    }
}

impl Source for FileSource {
    fn len(&self) -> u64 {
        self.len
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
        #[cfg(unix)]
        {
            std::os::unix::fs::FileExt::read_exact_at(&self.file, buf, offset)
        }
        #[cfg(windows)]
        {
            let mut done = 0;
            while done < buf.len() {
                let n = std::os::windows::fs::FileExt::seek_read(
                    &self.file,
                    &mut buf[done..],
                    offset + done as u64,
                )?;
                if n == 0 {
                    return Err(std::io::ErrorKind::UnexpectedEof.into());
                }
                done += n;
            }
            Ok(())
        }
    }
}

/// A [`Source`] over any `Read + Seek`, behind a mutex.
#[cfg(feature = "unstable")]
#[derive(Debug)]
pub struct SeekSource<R> {
    inner: std::sync::Mutex<R>,
    len: u64,
}

#[cfg(feature = "unstable")]
impl<R: Read + Seek> SeekSource<R> {
    /// Wraps `inner`, measuring its length.
    pub fn new(mut inner: R) -> std::io::Result<Self> {
        let len = inner.seek(SeekFrom::End(0))?;
        Ok(SeekSource {
            inner: std::sync::Mutex::new(inner),
            len,
        })
    }
}

#[cfg(feature = "unstable")]
impl<R: Read + Seek> Source for SeekSource<R> {
    fn len(&self) -> u64 {
        self.len
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
        // A panic while holding the lock leaves the reader as good as any: keep using it.
        let mut r = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        r.seek(SeekFrom::Start(offset))?;
        r.read_exact(buf)
    }
}

/// One entry of the tile index (§6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TileEntry {
    /// Gaussians in the tile.
    pub count: u32,
    /// Payload length of the tile's `TILE` section.
    pub payload_len: u32,
    /// Decompressed length of its data.
    pub raw_len: u32,
    /// How far its Gaussians reach outside it, native pixels ([`REACH_UNBOUNDED`]: anywhere).
    pub reach: u16,
    /// File offset of its `TILE` section.
    pub offset: u64,
}

/// A section as seen while reading: tag, offset, payload length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SectionInfo {
    /// The tag.
    pub tag: [u8; 4],
    /// File offset of the section's first byte.
    pub offset: u64,
    /// Payload bytes (the section takes 12 more).
    pub payload_len: u64,
}

/// A `.gsi` file opened for reading: the header, metadata and tile index are parsed and
/// checked; tiles are read on demand.
#[derive(Debug)]
pub struct Decoder<S> {
    src: S,
    limits: Limits,
    header: Header,
    dequantizer: Dequantizer,
    metadata: Metadata,
    dropped: Vec<String>,
    model: Option<Model>,
    index: Vec<TileEntry>,
    sections: Vec<SectionInfo>,
    end_offset: u64,
}

fn err(kind: FormatErrorKind, location: Location) -> Error {
    FormatError::new(kind, location).into()
}

impl<S: Source> Decoder<S> {
    /// Opens `src`: reads the signature, `HEAD`, any metadata and the tile index (§2.4).
    pub fn new(src: S, limits: Limits) -> Result<Self> {
        let len = src.len();
        let mut sig = [0u8; 8];
        let n = len.min(8) as usize;
        src.read_at(0, &mut sig[..n])?;
        if sig[..n] != SIGNATURE[..n] {
            return Err(err(FormatErrorKind::BadSignature, Location::Signature));
        }
        if n < 8 {
            return Err(err(
                FormatErrorKind::Truncated {
                    needed: 8,
                    available: n as u64,
                },
                Location::Signature,
            ));
        }
        let mut sections = Vec::new();
        let mut pos = 8u64;
        let (info, head) = read_section(&src, pos, &limits, None)?;
        if info.tag != TAG_HEAD {
            return Err(unexpected(info.tag, None, "HEAD"));
        }
        let header = Header::parse(&head, &limits)?;
        sections.push(info);
        pos += section::total_len(info.payload_len);
        let mut metadata = Metadata::default();
        let mut dropped = Vec::new();
        let mut model: Option<Model> = None;
        let index_payload = loop {
            let (info, payload) = read_section(&src, pos, &limits, None)?;
            sections.push(info);
            pos += section::total_len(info.payload_len);
            match info.tag {
                TAG_TIDX => break payload,
                TAG_META => (metadata, dropped) = Metadata::parse_with_drops(&payload, &limits)?,
                TAG_CMOD if model.is_none() => {
                    let m = Model::parse(&payload).map_err(|reason| {
                        err(
                            FormatErrorKind::InvalidField {
                                field: "coding model",
                                reason,
                            },
                            Location::Section {
                                tag: TAG_CMOD,
                                tile: None,
                            },
                        )
                    })?;
                    model = Some(m);
                }
                TAG_CMOD => return Err(unexpected(TAG_CMOD, None, "one CMOD at most")),
                t if is_critical(t) => {
                    return Err(if [TAG_HEAD, TAG_TILE, TAG_GEND].contains(&t) {
                        unexpected(t, None, "TIDX or an ancillary section")
                    } else {
                        err(
                            FormatErrorKind::UnknownCriticalSection,
                            Location::Section { tag: t, tile: None },
                        )
                    });
                }
                _ => {} // §2.3: unknown ancillary sections are skipped.
            }
        };
        let index = parse_index(&header, &index_payload, pos, &limits, model.is_some())?;
        let end_offset = index
            .last()
            .map_or(pos, |e| e.offset + section::total_len(e.payload_len as u64));
        Ok(Decoder {
            src,
            limits,
            dequantizer: Dequantizer::new(&header),
            header,
            metadata,
            dropped,
            model,
            index,
            sections,
            end_offset,
        })
    }

    /// The header.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// The metadata.
    pub fn metadata(&self) -> &Metadata {
        &self.metadata
    }

    /// Metadata the file carries but the reader dropped, with the reason of each: an ICC
    /// profile too large or not a profile (format-spec.md §8). The picture decodes without it;
    /// the caller tells the user.
    pub fn dropped_metadata(&self) -> &[String] {
        &self.dropped
    }

    /// Whether the tiles are context-coded (version 1.1, §7.4) rather than zstd-compressed.
    pub fn is_context_coded(&self) -> bool {
        self.model.is_some()
    }

    /// The tile index.
    pub fn index(&self) -> &[TileEntry] {
        &self.index
    }

    /// The sections read so far (header, metadata, index).
    pub fn sections(&self) -> &[SectionInfo] {
        &self.sections
    }

    /// Reads, checks and decodes tile `t` (§7).
    #[cfg(feature = "unstable")]
    pub fn decode_tile(&self, t: u32) -> Result<Vec<Gaussian>> {
        let payload = self.read_tile_payload(t)?;
        let gs = self.decode_tile_codes(t, &payload)?;
        check_reach(&self.index[t as usize], t, &gs)?;
        Ok(gs)
    }

    /// The stored records of tile `t` (§7), in file order.
    pub(crate) fn tile_records(&self, t: u32) -> Result<Vec<Quantized>> {
        let payload = self.read_tile_payload(t)?;
        tile_records(&self.header, self.model.as_ref(), &self.index, t, &payload)
    }

    #[cfg(feature = "unstable")]
    fn decode_tile_codes(&self, t: u32, payload: &[u8]) -> Result<Vec<Gaussian>> {
        let qs = tile_records(&self.header, self.model.as_ref(), &self.index, t, payload)?;
        Ok(qs.iter().map(|q| self.dequantizer.apply(q)).collect())
    }

    /// The coding model of a context-coded file.
    pub(crate) fn model(&self) -> Option<&Model> {
        self.model.as_ref()
    }

    fn read_tile_payload(&self, t: u32) -> Result<Vec<u8>> {
        let e = *self
            .index
            .get(t as usize)
            .ok_or_else(|| Error::invalid("tile", format!("{t} of {}", self.index.len())))?;
        let (info, payload) = read_section(&self.src, e.offset, &self.limits, Some(t))?;
        if info.tag != TAG_TILE {
            return Err(unexpected(info.tag, Some(t), "TILE"));
        }
        if info.payload_len != e.payload_len as u64 {
            return Err(err(
                FormatErrorKind::InvalidField {
                    field: "section length",
                    reason: format!(
                        "{} bytes, the tile index says {}",
                        info.payload_len, e.payload_len
                    ),
                },
                Location::Section {
                    tag: TAG_TILE,
                    tile: Some(t),
                },
            ));
        }
        Ok(payload)
    }

    /// Decodes every tile and checks the end of the file (§2.4): the whole picture.
    pub fn decode_all(&self) -> Result<SplatImage> {
        self.decode_all_with(None)
    }

    /// [`Self::decode_all`], giving up with [`Error::Cancelled`] soon after `cancel` is set.
    pub fn decode_all_with(&self, cancel: Option<&AtomicBool>) -> Result<SplatImage> {
        let tiles: Vec<u32> = (0..self.index.len() as u32).collect();
        let image = self.decode_tiles_with(&tiles, cancel)?;
        let (info, _) = read_section(&self.src, self.end_offset, &self.limits, None)?;
        if info.tag != TAG_GEND || info.payload_len != 0 {
            return Err(unexpected(info.tag, None, "an empty GEND"));
        }
        let end = self.end_offset + section::total_len(0);
        if self.src.len() > end {
            return Err(err(
                FormatErrorKind::TrailingData {
                    bytes: self.src.len() - end,
                },
                Location::Offset(end),
            ));
        }
        Ok(image)
    }

    /// Decodes the tiles `tiles` (in the order given) into one picture.
    #[cfg(feature = "unstable")]
    pub fn decode_tiles(&self, tiles: &[u32]) -> Result<SplatImage> {
        self.decode_tiles_with(tiles, None)
    }

    /// [`Self::decode_tiles`], giving up with [`Error::Cancelled`] soon after `cancel` is set
    /// (checked between batches of tiles): a viewer's way to drop a decode it no longer needs.
    ///
    /// Memory: the result (36 bytes a Gaussian) plus one batch of tiles in flight (at most
    /// 2^20 Gaussians or 64 MiB of payload, or one larger tile).
    pub fn decode_tiles_with(
        &self,
        tiles: &[u32],
        cancel: Option<&AtomicBool>,
    ) -> Result<SplatImage> {
        let count = |t: u32| self.index.get(t as usize).map_or(0, |e| e.count as u64);
        let total: u64 = tiles.iter().map(|&t| count(t)).sum();
        // Every tile listed twice could double the header's count: check what is allocated.
        self.limits
            .check("decoded Gaussians", total, self.limits.max_gaussians)?;
        self.limits.check(
            "Gaussian memory (bytes)",
            total * std::mem::size_of::<Gaussian>() as u64,
            self.limits.max_memory_bytes,
        )?;
        // Reserved only when every tile's section lies within the source: the counts of a
        // truncated or forged file are not to be trusted with memory before its tiles are read.
        let len = self.src.len();
        let present = tiles.iter().all(|&t| {
            self.index
                .get(t as usize)
                .is_some_and(|e| e.offset + section::total_len(e.payload_len as u64) <= len)
        });
        let mut gaussians = Vec::with_capacity(if present { total as usize } else { 0 });
        let (h, model, index, dq) = (
            &self.header,
            self.model.as_ref(),
            &self.index,
            &self.dequantizer,
        );
        let decode = |(t, p): &(u32, Vec<u8>)| {
            let qs = tile_records(h, model, index, *t, p)?;
            let mut gs = Vec::new();
            dq.extend(&qs, &mut gs);
            check_reach(&index[*t as usize], *t, &gs)?;
            Ok::<_, Error>(gs)
        };
        let mut rest = tiles;
        while !rest.is_empty() {
            if cancel.is_some_and(|c| c.load(Ordering::Relaxed)) {
                return Err(Error::Cancelled);
            }
            // At least one tile per batch, then more while the batch stays small.
            let (mut n, mut g, mut b) = (0usize, 0u64, 0u64);
            while n < rest.len() {
                let t = rest[n];
                let (tg, tb) = self
                    .index
                    .get(t as usize)
                    .map_or((0, 0), |e| (e.count as u64, e.payload_len as u64));
                if n > 0 && (g + tg > BATCH_GAUSSIANS || b + tb > BATCH_BYTES) {
                    break;
                }
                (g, b) = (g + tg, b + tb);
                n += 1;
            }
            let (batch, later) = rest.split_at(n);
            rest = later;
            let payloads = batch
                .iter()
                .map(|&t| Ok((t, self.read_tile_payload(t)?)))
                .collect::<Result<Vec<_>>>()?;
            // Tiles are decoded in parallel when there are several (small files: one thread).
            if payloads.len() > 1 && h.gaussian_count > 1 << 15 {
                let decoded = payloads
                    .par_iter()
                    .map(decode)
                    .collect::<Result<Vec<_>>>()?;
                for d in decoded {
                    gaussians.extend_from_slice(&d);
                }
            } else {
                // One thread: each tile's Gaussians go straight into the result.
                for (t, p) in &payloads {
                    let qs = tile_records(h, model, index, *t, p)?;
                    let start = gaussians.len();
                    dq.extend(&qs, &mut gaussians);
                    check_reach(&index[*t as usize], *t, &gaussians[start..])?;
                }
            }
        }
        let h = &self.header;
        // Dequantized Gaussians are finite with positive scales (§5).
        Ok(SplatImage::from_valid(
            h.width, h.height, h.layout, gaussians,
        ))
    }

    /// The tiles whose Gaussians can reach `viewport`'s region (§6), in file order.
    pub fn tiles_for(&self, viewport: &Viewport) -> Vec<u32> {
        let h = &self.header;
        let (sx, sy) = (
            viewport.width as f64 / h.width as f64,
            viewport.height as f64 / h.height as f64,
        );
        let r = viewport.region;
        // Output-space margin added to a native reach: the prefilter's 3σ plus one pixel.
        let pad = 3.0 * PREFILTER_VARIANCE.sqrt() + 1.0;
        let g = h.cell_size as f64;
        (0..self.index.len() as u32)
            .filter(|&t| {
                let e = &self.index[t as usize];
                if e.count == 0 {
                    return false;
                }
                if e.reach == REACH_UNBOUNDED {
                    return true;
                }
                let c = TileCells::of(h, t as u64);
                let reach = e.reach as f64;
                let x0 = (c.cx0 as f64 * g - reach) * sx - pad;
                let x1 = ((c.cx0 + c.cw) as f64 * g + reach) * sx + pad;
                let y0 = (c.cy0 as f64 * g - reach) * sy - pad;
                let y1 = ((c.cy0 + c.ch) as f64 * g + reach) * sy + pad;
                x1 >= r.x as f64
                    && x0 <= (r.x + r.width) as f64
                    && y1 >= r.y as f64
                    && y0 <= (r.y + r.height) as f64
            })
            .collect()
    }

    /// Decodes only the tiles `viewport` needs: rendering the result at `viewport` gives the
    /// same pixels as rendering the whole picture.
    #[cfg(feature = "unstable")]
    pub fn decode_region(&self, viewport: &Viewport) -> Result<SplatImage> {
        let tiles = self.tiles_for(viewport);
        self.decode_tiles(&tiles)
    }
}

fn unexpected(tag: [u8; 4], tile: Option<u32>, expected: &'static str) -> Error {
    err(
        FormatErrorKind::UnexpectedSection { expected },
        Location::Section { tag, tile },
    )
}

/// Reads the section at `pos`, checking its length against the file and the limits and its
/// CRC-32 (§2.3).
fn read_section<S: Source>(
    src: &S,
    pos: u64,
    limits: &Limits,
    tile: Option<u32>,
) -> Result<(SectionInfo, Vec<u8>)> {
    let len = src.len();
    let avail = len.saturating_sub(pos);
    if avail < 8 {
        let mut tag = [0u8; 4];
        // A section may be looked for past the end (a region read of a truncated file jumps to
        // a tile's offset directly): read only what is there.
        let n = avail.min(4) as usize;
        if n > 0 {
            src.read_at(pos, &mut tag[..n])?;
        }
        let location = if n == 4 {
            Location::Section { tag, tile }
        } else {
            Location::Offset(pos)
        };
        return Err(err(
            FormatErrorKind::Truncated {
                needed: 12,
                available: avail,
            },
            location,
        ));
    }
    let mut head = [0u8; 8];
    src.read_at(pos, &mut head)?;
    let (tag, plen) = section::read_tag_len(&head);
    let loc = Location::Section { tag, tile };
    limits.check(
        "section size (bytes)",
        plen as u64,
        limits.max_section_bytes,
    )?;
    let total = section::total_len(plen as u64);
    if avail < total {
        return Err(err(
            FormatErrorKind::Truncated {
                needed: total,
                available: avail,
            },
            loc,
        ));
    }
    let mut payload = vec![0u8; plen as usize];
    src.read_at(pos + 8, &mut payload)?;
    let mut crc = [0u8; 4];
    src.read_at(pos + 8 + plen as u64, &mut crc)?;
    let stored = u32::from_le_bytes(crc);
    let computed = section::crc(tag, &payload);
    if stored != computed {
        return Err(err(
            FormatErrorKind::ChecksumMismatch { stored, computed },
            loc,
        ));
    }
    Ok((
        SectionInfo {
            tag,
            offset: pos,
            payload_len: plen as u64,
        },
        payload,
    ))
}

/// Parses and checks the `TIDX` payload (§6); `first_tile` is the offset of the first `TILE`.
fn parse_index(
    h: &Header,
    p: &[u8],
    first_tile: u64,
    limits: &Limits,
    context_coded: bool,
) -> Result<Vec<TileEntry>> {
    let tiles = h.tile_count();
    let bad = |tile: Option<u32>, field: &'static str, reason: String| {
        err(
            FormatErrorKind::InvalidField { field, reason },
            Location::Section {
                tag: TAG_TIDX,
                tile,
            },
        )
    };
    if p.len() as u64 != tiles * TIDX_ENTRY_LEN as u64 {
        return Err(bad(
            None,
            "length",
            format!(
                "{} bytes, {tiles} tiles need {}",
                p.len(),
                tiles * TIDX_ENTRY_LEN as u64
            ),
        ));
    }
    let mut index = Vec::with_capacity(tiles as usize);
    let mut offset = first_tile;
    let mut total = 0u64;
    for (t, e) in p.chunks_exact(TIDX_ENTRY_LEN).enumerate() {
        let t32 = t as u32;
        let entry = TileEntry {
            count: LE::read_u32(e),
            payload_len: LE::read_u32(&e[4..]),
            raw_len: LE::read_u32(&e[8..]),
            reach: LE::read_u16(&e[12..]),
            offset,
        };
        if entry.payload_len < 4 {
            return Err(bad(
                Some(t32),
                "payload length",
                format!(
                    "{} (a tile payload has at least 4 bytes)",
                    entry.payload_len
                ),
            ));
        }
        // §6: every Gaussian costs at least one bit of the tile's compressed data. Checked here,
        // before anything is allocated for the tile's Gaussians.
        if entry.count as u64 > MAX_GAUSSIANS_PER_BYTE * (entry.payload_len as u64 - 4) {
            return Err(bad(
                Some(t32),
                "Gaussian count",
                format!(
                    "{} Gaussians in {} bytes of compressed data (at most {MAX_GAUSSIANS_PER_BYTE} \
                     a byte)",
                    entry.count,
                    entry.payload_len - 4
                ),
            ));
        }
        let cells = TileCells::of(h, t as u64);
        if context_coded {
            // §7.4: no decompressed data; an empty tile has only its number.
            if entry.raw_len != 0 {
                return Err(bad(
                    Some(t32),
                    "raw length",
                    format!("{} (context-coded tiles have 0)", entry.raw_len),
                ));
            }
            // §6: at most MAX_CELLS_PER_BYTE cells a byte of a tile with Gaussians, so that
            // the walk over its cells' quadrants is bounded by the file's size.
            if entry.count > 0
                && cells.count() > MAX_CELLS_PER_BYTE * (entry.payload_len as u64 - 4)
            {
                return Err(bad(
                    Some(t32),
                    "payload length",
                    format!(
                        "{} bytes for {} cells (at most {MAX_CELLS_PER_BYTE} cells a byte)",
                        entry.payload_len - 4,
                        cells.count()
                    ),
                ));
            }
            if (entry.count == 0) != (entry.payload_len == 4) {
                return Err(bad(
                    Some(t32),
                    "payload length",
                    format!(
                        "{} bytes for {} Gaussians (4 exactly when there are none)",
                        entry.payload_len, entry.count
                    ),
                ));
            }
            total += entry.count as u64;
            offset += section::total_len(entry.payload_len as u64);
            index.push(entry);
            continue;
        }
        let max_raw = tile::max_raw_len(h, &cells, entry.count as u64)
            .min(MAX_EXPANSION * (entry.payload_len as u64 - 4));
        if entry.raw_len as u64 > max_raw || (entry.raw_len as u64) < cells.count() {
            return Err(bad(
                Some(t32),
                "raw length",
                format!(
                    "{} bytes for {} Gaussians in {} cells (allowed: {} to {max_raw})",
                    entry.raw_len,
                    entry.count,
                    cells.count(),
                    cells.count()
                ),
            ));
        }
        limits.check(
            "tile data size (bytes)",
            entry.raw_len as u64,
            limits.max_section_bytes,
        )?;
        total += entry.count as u64;
        offset += section::total_len(entry.payload_len as u64);
        index.push(entry);
    }
    if total != h.gaussian_count {
        return Err(bad(
            None,
            "Gaussian counts",
            format!("tiles hold {total}, the header says {}", h.gaussian_count),
        ));
    }
    Ok(index)
}

/// Checks a `TILE` payload's tile number and decodes its stored records (§7): zstd-compressed
/// streams (§7.1–7.3) or, with a coding model, context-coded values (§7.4–7.5).
fn tile_records(
    h: &Header,
    model: Option<&Model>,
    index: &[TileEntry],
    t: u32,
    payload: &[u8],
) -> Result<Vec<Quantized>> {
    let loc = Location::Section {
        tag: TAG_TILE,
        tile: Some(t),
    };
    let e = &index[t as usize];
    let number = LE::read_u32(payload);
    if number != t {
        return Err(err(
            FormatErrorKind::InvalidField {
                field: "tile number",
                reason: format!("{number}, expected {t}"),
            },
            loc,
        ));
    }
    let cells = TileCells::of(h, t as u64);
    if let Some(model) = model {
        if e.count == 0 {
            return Ok(Vec::new());
        }
        let bad = |reason: String| {
            err(
                FormatErrorKind::InvalidField {
                    field: "coded tile data",
                    reason,
                },
                loc,
            )
        };
        let lanes = context::lanes(h.channels.len());
        let dec = rans::Decoder::new(&payload[4..], lanes).map_err(bad)?;
        let blank = Quantized {
            cell_y: 0,
            cell_x: 0,
            codes: [0; 9],
        };
        let mut qs = vec![blank; e.count as usize];
        let (r, walked) = context::walk(h, &cells, &mut qs, context::Reader::new(dec, model));
        walked.map_err(bad)?;
        r.finish(lanes).map_err(bad)?;
        return Ok(qs);
    }
    let raw = zstd::bulk::decompress(&payload[4..], e.raw_len as usize)
        .map_err(|x| err(FormatErrorKind::Decompression(x.to_string()), loc))?;
    if raw.len() != e.raw_len as usize {
        return Err(err(
            FormatErrorKind::Decompression(format!(
                "{} bytes, the tile index says {}",
                raw.len(),
                e.raw_len
            )),
            loc,
        ));
    }
    tile::decode(h, t, &cells, &raw, e.count as u64)
}

/// §6: every Gaussian of tile `t` must stay within the tile's reach.
fn check_reach(e: &TileEntry, t: u32, gs: &[Gaussian]) -> Result<()> {
    // The cheap bound settles almost every Gaussian; the exact reach only the rest.
    let limit = e.reach as f64;
    if e.reach != REACH_UNBOUNDED
        && let Some(g) = gs
            .iter()
            .find(|g| reach_bound(g) > limit && reach(g) > limit)
    {
        return Err(err(
            FormatErrorKind::InvalidField {
                field: "reach",
                reason: format!(
                    "a Gaussian reaches {:.1} pixels, the index says {}",
                    reach(g),
                    e.reach
                ),
            },
            Location::Section {
                tag: TAG_TIDX,
                tile: Some(t),
            },
        ));
    }
    Ok(())
}

/// Human-readable tag, for reports.
pub fn tag_name(tag: [u8; 4]) -> String {
    tag_str(tag)
}
