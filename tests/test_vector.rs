//! The test vector of format-spec.md §10, byte for byte.

use gsimg::format::{self, ColorModel, Packing, Predictor};
use gsimg::{ChannelLayout, Limits};

pub use crate::common::vector_bytes;

#[test]
fn the_spec_test_vector_decodes_as_the_spec_says() {
    let bytes = vector_bytes();
    assert_eq!(bytes.len(), 195);
    let file = format::read(&bytes, &Limits::default()).unwrap();
    let h = &file.header;
    assert_eq!(
        (h.width, h.height, h.layout, h.color_model),
        (16, 8, ChannelLayout::Rgb, ColorModel::Identity)
    );
    assert_eq!(
        (h.cell_size, h.tile_cells, h.gaussian_count, h.tile_count()),
        (8, 2, 2, 1)
    );
    for q in h.streams() {
        assert_eq!(
            (q.bits, q.predictor, q.packing),
            (2, Predictor::None, Packing::Bits)
        );
    }
    assert_eq!((h.scale.min, h.scale.max), (-1.0, 2.0));
    let g = file.image.gaussians();
    assert_eq!(g.len(), 2);
    // §10: first Gaussian, cell (0, 0), codes x 1, y 2, σ 3 0, θ 1, colour 3 0 1.
    assert_eq!((g[0].x, g[0].y), (3.0, 5.0));
    assert_eq!(g[0].scale, [4.0, 0.5]);
    assert_eq!(g[0].rotation, std::f32::consts::FRAC_PI_4);
    assert_eq!(&g[0].color[..3], &[1.0, 0.0, (1.0f64 / 3.0) as f32]);
    // Second Gaussian, cell (1, 0), codes x 3, y 0, σ 1 2, θ 3, colour 0 2 3.
    assert_eq!((g[1].x, g[1].y), (15.0, 1.0));
    assert_eq!(g[1].scale, [1.0, 2.0]);
    assert_eq!(g[1].rotation, (3.0 * std::f64::consts::PI / 4.0) as f32);
    assert_eq!(&g[1].color[..3], &[0.0, (2.0f64 / 3.0) as f32, 1.0]);
}

/// The version 1.1 test vector of format-spec.md §10.2: the same two Gaussians, context-coded.
pub const VECTOR_11: &str = "
89 47 53 49 0D 0A 1A 0A 48 45 41 44 64 00 00 00
01 01 00 00 10 00 00 00 08 00 00 00 03 00 08 00
02 00 00 00 02 00 00 00 00 00 00 00 02 00 00 00
00 00 00 00 00 00 00 00 02 00 00 00 00 00 80 BF
00 00 00 40 02 00 00 00 00 00 00 00 00 00 00 00
02 00 00 00 00 00 00 00 00 00 80 3F 02 00 00 00
00 00 00 00 00 00 80 3F 02 00 00 00 00 00 00 00
00 00 80 3F 81 8C 24 41 43 4D 4F 44 2A 00 00 00
00 00 81 10 30 40 60 84 08 FF 0B 03 02 20 40 FF
0A 00 00 42 03 8B 16 28 3F D7 00 FF 0A 0F F5 C0
00 00 3F D7 00 00 00 FF 5C 00 4E 05 FC BD 54 49
44 58 10 00 00 00 02 00 00 00 2C 00 00 00 00 00
00 00 09 00 00 00 2C D0 3D 06 54 49 4C 45 2C 00
00 00 00 00 00 00 00 00 00 00 10 A4 09 00 00 00
01 00 20 5B 01 00 30 9F 0C 00 F0 9B 0C 00 20 5B
01 00 20 9B 0C 00 B0 40 18 00 E0 9C 0C 00 85 08
9E B0 47 45 4E 44 00 00 00 00 D6 DB 68 C8";

fn hex_bytes(s: &str) -> Vec<u8> {
    s.split_whitespace()
        .map(|h| u8::from_str_radix(h, 16).unwrap())
        .collect()
}

fn hex_dump(b: &[u8]) -> String {
    b.chunks(16)
        .map(|r| {
            r.iter()
                .map(|x| format!("{x:02X}"))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn the_version_1_1_vector_is_what_the_writer_writes_and_decodes_as_the_spec_says() {
    use gsimg::format::{Coding, WriteOptions};
    let v10 = format::read(&vector_bytes(), &Limits::default()).unwrap();
    let written = format::write(
        &v10.image,
        &WriteOptions::matching(&v10.header, Coding::Context),
    )
    .unwrap();
    let expected = hex_bytes(VECTOR_11);
    assert_eq!(expected.len(), 270);
    assert_eq!(
        written.bytes,
        expected,
        "the writer now writes\n{}",
        hex_dump(&written.bytes)
    );
    let file = format::read(&expected, &Limits::default()).unwrap();
    assert_eq!(file.header.version_minor, 1);
    let g = file.image.gaussians();
    // §10.2: the first Gaussian as in 1.0; the second canonical (σ₁ ≥ σ₂, turned a quarter).
    assert_eq!(
        (g[0].x, g[0].y, g[0].scale, g[0].rotation),
        (3.0, 5.0, [4.0, 0.5], std::f32::consts::FRAC_PI_4)
    );
    assert_eq!(
        (g[1].x, g[1].y, g[1].scale, g[1].rotation),
        (15.0, 1.0, [2.0, 1.0], std::f32::consts::FRAC_PI_4)
    );
    assert_eq!(&g[1].color[..3], &[0.0, (2.0f64 / 3.0) as f32, 1.0]);
    // The same covariances as the 1.0 vector's Gaussians.
    for (a, b) in g.iter().zip(v10.image.gaussians()) {
        let (ca, cb) = (a.covariance(), b.covariance());
        assert!(
            (ca.0 - cb.0).abs() < 1e-5 && (ca.1 - cb.1).abs() < 1e-5 && (ca.2 - cb.2).abs() < 1e-5
        );
    }
}
