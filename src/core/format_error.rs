//! Errors for malformed `.gsi` files, each naming the section and the spec rule broken.

use std::fmt;

/// Where in a file a problem was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Location {
    /// The 8-byte signature (§2.1).
    Signature,
    /// A section, by tag, and for tiles by tile number.
    Section {
        /// The section's tag.
        tag: [u8; 4],
        /// The tile number, for `TILE` sections and index entries.
        tile: Option<u32>,
    },
    /// Between sections, at this byte offset.
    Offset(u64),
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Signature => write!(f, "the signature"),
            Location::Section { tag, tile: Some(t) } => {
                write!(f, "section {} (tile {t})", tag_str(*tag))
            }
            Location::Section { tag, tile: None } => write!(f, "section {}", tag_str(*tag)),
            Location::Offset(o) => write!(f, "byte offset {o}"),
        }
    }
}

pub(crate) fn tag_str(tag: [u8; 4]) -> String {
    tag.iter()
        .map(|&b| {
            if b.is_ascii_graphic() {
                (b as char).to_string()
            } else {
                format!("\\x{b:02x}")
            }
        })
        .collect()
}

/// What is wrong with a file.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum FormatErrorKind {
    /// §2.1: the file does not start with the `.gsi` signature.
    BadSignature,
    /// The file ends inside a section or before `GEND`.
    Truncated {
        /// Bytes the section needed from its start.
        needed: u64,
        /// Bytes that were there.
        available: u64,
    },
    /// §2.3: a section's CRC-32 does not match its bytes.
    ChecksumMismatch {
        /// CRC stored in the file.
        stored: u32,
        /// CRC computed over the bytes.
        computed: u32,
    },
    /// §2.2: a major version other than 1.
    UnsupportedVersion {
        /// Major version in the file.
        major: u8,
        /// Minor version in the file.
        minor: u8,
    },
    /// §2.3: a critical section this reader does not know.
    UnknownCriticalSection,
    /// §2.4: a section where the order of sections does not allow it.
    UnexpectedSection {
        /// What the reader expected at this point.
        expected: &'static str,
    },
    /// A field holds a value the spec does not allow.
    InvalidField {
        /// The field's name in the spec.
        field: &'static str,
        /// Why it is invalid, with the allowed range.
        reason: String,
    },
    /// §7: a tile's compressed data does not decompress, or decompresses to the wrong size.
    Decompression(String),
    /// §2.4: bytes after the `GEND` section.
    TrailingData {
        /// Number of extra bytes.
        bytes: u64,
    },
}

/// A malformed, truncated or corrupted `.gsi` file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FormatError {
    kind: FormatErrorKind,
    location: Location,
}

impl FormatError {
    pub(crate) fn new(kind: FormatErrorKind, location: Location) -> Self {
        FormatError { kind, location }
    }

    /// What is wrong.
    pub fn kind(&self) -> &FormatErrorKind {
        &self.kind
    }

    /// Where it was found.
    pub fn location(&self) -> Location {
        self.location
    }
}

impl fmt::Display for FormatError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let loc = self.location;
        match &self.kind {
            FormatErrorKind::BadSignature => write!(f, "not a .gsi file (bad signature)"),
            FormatErrorKind::Truncated { needed, available } => {
                write!(
                    f,
                    "truncated in {loc}: it needs {needed} bytes, {available} remain"
                )
            }
            FormatErrorKind::ChecksumMismatch { stored, computed } => {
                write!(
                    f,
                    "corrupted {loc}: CRC-32 is {computed:08x}, the file says {stored:08x}"
                )
            }
            FormatErrorKind::UnsupportedVersion { major, minor } => {
                write!(
                    f,
                    "unsupported version {major}.{minor} (this reader reads 1.x)"
                )
            }
            FormatErrorKind::UnknownCriticalSection => write!(f, "unknown critical {loc}"),
            FormatErrorKind::UnexpectedSection { expected } => {
                write!(f, "unexpected {loc}: expected {expected}")
            }
            FormatErrorKind::InvalidField { field, reason } => {
                write!(f, "invalid {field} in {loc}: {reason}")
            }
            FormatErrorKind::Decompression(msg) => write!(f, "cannot decompress {loc}: {msg}"),
            FormatErrorKind::TrailingData { bytes } => {
                write!(f, "{bytes} bytes of trailing data after GEND")
            }
        }
    }
}

impl std::error::Error for FormatError {}
