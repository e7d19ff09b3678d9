//! Bad input: truncations, bit flips, wrong signatures, absurd sizes and counts. Every case is a
//! typed error naming the problem, never a panic, a hang or an allocation beyond the limits.

use crate::common::{Rng, random_image};
use crate::test_vector::{VECTOR_11, vector_bytes};
use gsimg::format::{self, FormatErrorKind, WriteOptions};
use gsimg::{ChannelLayout, Error, Limits};

fn small_real_file() -> Vec<u8> {
    let mut rng = Rng::new(20);
    let img = random_image(&mut rng, 48, 40, ChannelLayout::Rgba, 40, 0.5, 4.0);
    let opts = WriteOptions {
        tile_cells: Some(2),
        metadata: gsimg::format::Metadata {
            icc_profile: None,
            orientation: Some(3),
        },
        ..Default::default()
    };
    format::write(&img, &opts).unwrap().bytes
}

fn format_kind(e: &Error) -> &FormatErrorKind {
    match e {
        Error::Format(f) => f.kind(),
        other => panic!("expected a format error, got {other}"),
    }
}

/// Offsets where sections start, and the end of the file.
fn section_boundaries(bytes: &[u8]) -> Vec<usize> {
    let mut v = vec![0, 8];
    let mut pos = 8;
    while pos + 8 <= bytes.len() {
        let len = u32::from_le_bytes(bytes[pos + 4..pos + 8].try_into().unwrap()) as usize;
        pos += 12 + len;
        v.push(pos);
    }
    v
}

#[test]
fn truncation_anywhere_is_reported_with_its_section() {
    let bytes = small_real_file();
    let boundaries = section_boundaries(&bytes);
    assert!(boundaries.len() >= 8, "{boundaries:?}");
    for cut in 0..bytes.len() {
        let e = format::read(&bytes[..cut], &Limits::default()).unwrap_err();
        let msg = e.to_string();
        assert!(
            matches!(format_kind(&e), FormatErrorKind::Truncated { .. }),
            "cut at {cut}: {msg}"
        );
        assert!(msg.contains("truncated in"), "{msg}");
        if boundaries.contains(&cut) && cut > 8 {
            // Cut exactly between sections: the next section is named or its offset given.
            assert!(
                msg.contains("byte offset") || msg.contains("section"),
                "{msg}"
            );
        }
    }
    let e = format::read(&bytes[..bytes.len() - 5], &Limits::default()).unwrap_err();
    assert!(e.to_string().contains("truncated in section GEND"), "{e}");
}

#[test]
fn every_single_bit_flip_is_detected() {
    let v11: Vec<u8> = VECTOR_11
        .split_whitespace()
        .map(|h| u8::from_str_radix(h, 16).unwrap())
        .collect();
    for bytes in [small_real_file(), vector_bytes(), v11] {
        let good = format::read(&bytes, &Limits::default()).unwrap();
        for i in 0..bytes.len() * 8 {
            let mut b = bytes.clone();
            b[i / 8] ^= 1 << (i % 8);
            match format::read(&b, &Limits::default()) {
                Err(Error::Format(_)) | Err(Error::LimitsExceeded { .. }) => {}
                Err(other) => panic!("bit {i}: unexpected error kind {other}"),
                Ok(f) => panic!(
                    "bit {i} flipped and the file still reads (same picture: {})",
                    f.image == good.image
                ),
            }
        }
    }
}

#[test]
fn wrong_signatures_and_other_files_are_refused() {
    for bad in [
        &b""[..],
        b"\x89GS",
        b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR",
        b"GIF89a...........",
        &[0u8; 64],
    ] {
        let e = format::read(bad, &Limits::default()).unwrap_err();
        assert!(
            matches!(
                format_kind(&e),
                FormatErrorKind::BadSignature | FormatErrorKind::Truncated { .. }
            ),
            "{e}"
        );
    }
    let e = format::read(b"hello world, not a gsi", &Limits::default()).unwrap_err();
    assert_eq!(
        e.to_string(),
        "invalid .gsi file: not a .gsi file (bad signature)"
    );
}

/// A file whose HEAD claims `f` of the test vector's header, with a valid CRC.
fn vector_with_head(f: impl Fn(&mut [u8])) -> Vec<u8> {
    let mut b = vector_bytes();
    f(&mut b[16..16 + 100]);
    let crc = crc32fast::hash(&b[8..16 + 100]);
    b[116..120].copy_from_slice(&crc.to_le_bytes());
    b
}

#[test]
fn absurd_dimensions_and_counts_are_refused_at_once() {
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "image width",
            vector_with_head(|h| h[4..8].copy_from_slice(&u32::MAX.to_le_bytes())),
        ),
        (
            "native pixel count",
            vector_with_head(|h| {
                h[4..8].copy_from_slice(&60000u32.to_le_bytes());
                h[8..12].copy_from_slice(&60000u32.to_le_bytes());
            }),
        ),
        (
            "Gaussian count",
            vector_with_head(|h| h[20..28].copy_from_slice(&(1u64 << 40).to_le_bytes())),
        ),
        (
            "size",
            vector_with_head(|h| h[4..8].copy_from_slice(&0u32.to_le_bytes())),
        ),
        (
            "tiling",
            vector_with_head(|h| h[14..16].copy_from_slice(&0u16.to_le_bytes())),
        ),
        ("channel layout", vector_with_head(|h| h[12] = 9)),
        ("colour model", vector_with_head(|h| h[13] = 7)),
        ("scale quantizer", vector_with_head(|h| h[28 + 12] = 40)),
        (
            "scale quantizer",
            vector_with_head(|h| {
                h[28 + 12 + 4..28 + 12 + 8].copy_from_slice(&f32::NAN.to_le_bytes())
            }),
        ),
    ];
    for (what, bytes) in cases {
        let t = std::time::Instant::now();
        let e = format::read(&bytes, &Limits::default()).unwrap_err();
        assert!(e.to_string().contains(what), "{what}: {e}");
        assert!(t.elapsed().as_millis() < 100);
    }
}

#[test]
fn a_tile_index_claiming_more_data_than_the_file_can_hold_is_refused() {
    // The one index entry (count 2, payload 23, raw length 10, reach 9) is bytes 128..144.
    let patch = |f: &dyn Fn(&mut [u8])| {
        let mut b = vector_bytes();
        f(&mut b[128..144]);
        let crc = crc32fast::hash(&b[120..144]);
        b[144..148].copy_from_slice(&crc.to_le_bytes());
        b
    };
    let e = format::read(
        &patch(&|e| e[8..12].copy_from_slice(&(1u32 << 30).to_le_bytes())),
        &Limits::default(),
    )
    .unwrap_err();
    assert!(e.to_string().contains("raw length"), "{e}");
    let e = format::read(
        &patch(&|e| e[0..4].copy_from_slice(&7u32.to_le_bytes())),
        &Limits::default(),
    )
    .unwrap_err();
    assert!(
        e.to_string().contains("Gaussian counts") || e.to_string().contains("raw length"),
        "{e}"
    );
    let e = format::read(
        &patch(&|e| e[12..14].copy_from_slice(&1u16.to_le_bytes())),
        &Limits::default(),
    )
    .unwrap_err();
    assert!(e.to_string().contains("reach"), "{e}");
}

#[test]
fn tight_limits_are_enforced_before_allocating() {
    let bytes = small_real_file();
    let tight = Limits {
        max_gaussians: 10,
        ..Limits::default()
    };
    assert!(matches!(
        format::read(&bytes, &tight),
        Err(Error::LimitsExceeded {
            what: "Gaussian count",
            ..
        })
    ));
    let tight = Limits {
        max_section_bytes: 16,
        ..Limits::default()
    };
    assert!(matches!(
        format::read(&bytes, &tight),
        Err(Error::LimitsExceeded { .. })
    ));
    let tight = Limits {
        max_dimension: 47,
        ..Limits::default()
    };
    assert!(matches!(
        format::read(&bytes, &tight),
        Err(Error::LimitsExceeded {
            what: "image width",
            ..
        })
    ));
}

#[test]
fn reading_any_tile_of_a_truncated_file_is_an_error_not_a_panic() {
    // A region read jumps to a tile's offset directly, which may lie past the end of a truncated
    // file (found by the `region` fuzz target: tests/fuzz_regressions/region/).
    let bytes = small_real_file();
    for cut in 0..bytes.len() {
        let Ok(dec) = format::Decoder::new(&bytes[..cut], Limits::default()) else {
            continue;
        };
        for t in 0..dec.index().len() as u32 {
            if let Err(e) = dec.decode_tile(t) {
                assert!(
                    matches!(format_kind(&e), FormatErrorKind::Truncated { .. }),
                    "cut {cut}, tile {t}: {e}"
                );
            }
        }
    }
}

#[test]
fn a_context_coded_tile_of_more_cells_than_its_bytes_allow_is_refused() {
    // §6, §7.4: at most 256 cells per byte of a context-coded tile with Gaussians. The 1.1
    // vector's one tile (40 bytes of coded data) made 65535 × 16 native pixels of 8-pixel
    // cells in one tile: 16,384 cells.
    let mut b: Vec<u8> = VECTOR_11
        .split_whitespace()
        .map(|h| u8::from_str_radix(h, 16).unwrap())
        .collect();
    b[20..24].copy_from_slice(&65535u32.to_le_bytes());
    b[24..28].copy_from_slice(&16u32.to_le_bytes());
    b[32..34].copy_from_slice(&65535u16.to_le_bytes());
    let crc = crc32fast::hash(&b[8..116]);
    b[116..120].copy_from_slice(&crc.to_le_bytes());
    let t = std::time::Instant::now();
    let e = format::read(&b, &Limits::default()).unwrap_err();
    assert!(e.to_string().contains("cells a byte"), "{e}");
    assert!(t.elapsed().as_millis() < 100);
}
