//! The optional `meta` section (§8): ICC profile and EXIF orientation.

use byteorder::{ByteOrder, LittleEndian as LE};

use super::consts::{META_ICC, META_ORIENTATION, TAG_META};
use super::error::{FormatError, FormatErrorKind, Location};
use crate::{Limits, Result};

/// Metadata carried alongside the picture.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Metadata {
    /// An ICC colour profile for the rendered channels.
    pub icc_profile: Option<Vec<u8>>,
    /// EXIF orientation (1 to 8) a viewer should apply when displaying.
    pub orientation: Option<u8>,
}

impl Metadata {
    /// Whether there is nothing to store.
    pub fn is_empty(&self) -> bool {
        self.icc_profile.is_none() && self.orientation.is_none()
    }

    /// Serializes the `meta` payload (§8).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let mut entry = |key: u8, value: &[u8]| {
            out.push(key);
            out.extend_from_slice(&(value.len() as u32).to_le_bytes());
            out.extend_from_slice(value);
        };
        if let Some(icc) = &self.icc_profile {
            let mut v = (icc.len() as u32).to_le_bytes().to_vec();
            v.extend_from_slice(
                &zstd::bulk::compress(icc, 19).expect("compressing to memory cannot fail"),
            );
            entry(META_ICC, &v);
        }
        if let Some(o) = self.orientation {
            entry(META_ORIENTATION, &[o]);
        }
        out
    }

    /// Parses a `meta` payload; unknown keys are skipped (§8).
    pub fn parse(p: &[u8], limits: &Limits) -> Result<Metadata> {
        let bad = |reason: String| -> crate::Error {
            FormatError::new(
                FormatErrorKind::InvalidField {
                    field: "metadata",
                    reason,
                },
                Location::Section {
                    tag: TAG_META,
                    tile: None,
                },
            )
            .into()
        };
        let mut m = Metadata::default();
        let mut pos = 0usize;
        while pos < p.len() {
            if p.len() - pos < 5 {
                return Err(bad("an entry header is cut short".into()));
            }
            let key = p[pos];
            let len = LE::read_u32(&p[pos + 1..]) as usize;
            pos += 5;
            let value = p
                .get(pos..pos + len)
                .ok_or_else(|| bad(format!("entry {key} of {len} bytes is cut short")))?;
            pos += len;
            match key {
                META_ICC => {
                    if value.len() < 4 {
                        return Err(bad("ICC entry shorter than 4 bytes".into()));
                    }
                    let n = LE::read_u32(value) as u64;
                    limits.check("ICC profile size (bytes)", n, limits.max_section_bytes)?;
                    let icc = zstd::bulk::decompress(&value[4..], n as usize)
                        .map_err(|e| bad(format!("ICC profile does not decompress: {e}")))?;
                    if icc.len() as u64 != n {
                        return Err(bad(format!(
                            "ICC profile is {} bytes, the entry says {n}",
                            icc.len()
                        )));
                    }
                    m.icc_profile = Some(icc);
                }
                META_ORIENTATION => match value {
                    [o @ 1..=8] => m.orientation = Some(*o),
                    _ => {
                        return Err(bad(format!(
                            "orientation {value:?} (allowed: one byte, 1 to 8)"
                        )));
                    }
                },
                _ => {}
            }
        }
        Ok(m)
    }
}
