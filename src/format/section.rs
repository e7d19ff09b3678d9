//! Section framing (§2.3): tag, length, payload, CRC-32.

use byteorder::{ByteOrder, LittleEndian as LE};

use super::consts::SECTION_OVERHEAD;

/// Appends one section to `out`.
pub fn push(out: &mut Vec<u8>, tag: [u8; 4], payload: &[u8]) {
    let start = out.len();
    out.extend_from_slice(&tag);
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(payload);
    let crc = crc32fast::hash(&out[start..]);
    out.extend_from_slice(&crc.to_le_bytes());
}

/// The CRC-32 of a section's tag, length and payload (§2.3).
pub fn crc(tag: [u8; 4], payload: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&tag);
    h.update(&(payload.len() as u32).to_le_bytes());
    h.update(payload);
    h.finalize()
}

/// Bytes a section with `payload_len` payload bytes takes.
pub fn total_len(payload_len: u64) -> u64 {
    payload_len + SECTION_OVERHEAD as u64
}

/// Reads the tag and length from the first 8 bytes of a section.
pub fn read_tag_len(b: &[u8; 8]) -> ([u8; 4], u32) {
    ([b[0], b[1], b[2], b[3]], LE::read_u32(&b[4..]))
}
