//! The optional `meta` section (§8): ICC profile and EXIF orientation.

use byteorder::{ByteOrder, LittleEndian as LE};

use super::consts::{META_ICC, META_ORIENTATION, TAG_META};
use super::error::{FormatError, FormatErrorKind, Location};
use crate::{Limits, Result};

/// §8: the largest ICC profile a file may carry, in bytes (real profiles are at most a few
/// hundred KB; a reader drops larger ones without decompressing them).
pub const MAX_ICC_BYTES: u64 = 1 << 22;

/// §8: why `profile` is not an ICC profile gsimg keeps, or `None` when it looks like one: at
/// most [`MAX_ICC_BYTES`], a whole 128-byte header, the header's size field (bytes 0–3,
/// big-endian) equal to the length, and the signature `acsp` at bytes 36–39.
pub fn icc_profile_problem(profile: &[u8]) -> Option<String> {
    let n = profile.len();
    if n as u64 > MAX_ICC_BYTES {
        Some(format!(
            "the ICC profile has {n} bytes, over the {MAX_ICC_BYTES} a profile may have"
        ))
    } else if n < 128 {
        Some(format!(
            "the ICC profile has {n} bytes, less than an ICC header (128)"
        ))
    } else if u32::from_be_bytes([profile[0], profile[1], profile[2], profile[3]]) as usize != n {
        Some(format!(
            "the ICC profile's header gives its size as {} bytes, it has {n}",
            u32::from_be_bytes([profile[0], profile[1], profile[2], profile[3]])
        ))
    } else if &profile[36..40] != b"acsp" {
        Some("the ICC profile lacks the signature 'acsp' at byte 36".into())
    } else {
        None
    }
}

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

    unstable_pub! {
    /// Serializes the `meta` payload (§8).
    fn to_bytes(&self) -> Vec<u8> {
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
    }

    /// Parses a `meta` payload; unknown keys are skipped (§8).
    #[cfg(feature = "unstable")]
    #[doc(hidden)]
    pub fn parse(p: &[u8], limits: &Limits) -> Result<Metadata> {
        Self::parse_with_drops(p, limits).map(|(m, _)| m)
    }

    /// [`Self::parse`], also returning what was dropped and why (an ICC profile that is too
    /// large or not a profile, §8), for the caller to report.
    pub(crate) fn parse_with_drops(p: &[u8], limits: &Limits) -> Result<(Metadata, Vec<String>)> {
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
        let mut dropped = Vec::new();
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
                    if n > MAX_ICC_BYTES {
                        // Not decompressed: at most MAX_ICC_BYTES are ever allocated for it.
                        dropped.push(format!(
                            "the ICC profile has {n} bytes, over the {MAX_ICC_BYTES} a profile \
                             may have"
                        ));
                        continue;
                    }
                    limits.check("ICC profile size (bytes)", n, limits.max_section_bytes)?;
                    let icc = zstd::bulk::decompress(&value[4..], n as usize)
                        .map_err(|e| bad(format!("ICC profile does not decompress: {e}")))?;
                    if icc.len() as u64 != n {
                        return Err(bad(format!(
                            "ICC profile is {} bytes, the entry says {n}",
                            icc.len()
                        )));
                    }
                    match icc_profile_problem(&icc) {
                        None => m.icc_profile = Some(icc),
                        Some(why) => dropped.push(why),
                    }
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
        Ok((m, dropped))
    }
}
