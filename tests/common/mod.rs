//! Shared helpers for the integration tests: a seeded RNG and random pictures.

use gsimg::{ChannelLayout, Gaussian, SplatImage};

/// SplitMix64: small, seeded, reproducible.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [lo, hi).
    pub fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

/// `n` random Gaussians over a `w × h` picture, σ in [smin, smax] native pixels, some centres
/// slightly outside the picture.
pub fn random_image(
    rng: &mut Rng,
    w: u32,
    h: u32,
    layout: ChannelLayout,
    n: usize,
    smin: f64,
    smax: f64,
) -> SplatImage {
    let gs = (0..n)
        .map(|_| {
            let mut color = [0f32; 4];
            for c in color.iter_mut().take(layout.channels()) {
                *c = rng.range(0.0, 1.0) as f32;
            }
            Gaussian {
                x: rng.range(-2.0, w as f64 + 2.0) as f32,
                y: rng.range(-2.0, h as f64 + 2.0) as f32,
                scale: [rng.range(smin, smax) as f32, rng.range(smin, smax) as f32],
                rotation: rng.range(-4.0, 4.0) as f32,
                color,
            }
        })
        .collect();
    SplatImage::new(w, h, layout, gs).unwrap()
}

/// A smooth synthetic photo-like picture for encoder tests (gradients, edges, texture).
pub fn synthetic_pixels(w: u32, h: u32, layout: ChannelLayout) -> gsimg::Frame<f32> {
    let nc = layout.channels();
    let mut data = Vec::with_capacity((w * h) as usize * nc);
    for y in 0..h {
        for x in 0..w {
            let (fx, fy) = (x as f32 / w as f32, y as f32 / h as f32);
            let disc = ((fx - 0.6).powi(2) + (fy - 0.4).powi(2)).sqrt() < 0.25;
            let stripes = ((x as f32 * 0.35).sin() * 0.5 + 0.5) * if fy > 0.75 { 1.0 } else { 0.0 };
            let r = if disc { 0.9 } else { 0.2 + 0.6 * fx };
            let g = 0.3 + 0.4 * fy + 0.2 * stripes;
            let b = if disc {
                0.1
            } else {
                0.5 + 0.3 * (fx * 6.0).sin() * fy
            };
            let a = if fx < 0.2 { 0.5 } else { 1.0 };
            push_pixel(&mut data, layout, [r, g, b, a]);
        }
    }
    gsimg::Frame {
        width: w,
        height: h,
        layout,
        data,
    }
}

/// The largest absolute difference between two equally long sample buffers.
pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "buffers of different lengths");
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0f32, f32::max)
}

pub fn psnr(a: &[f32], b: &[f32]) -> f64 {
    let mse = a
        .iter()
        .zip(b)
        .map(|(x, y)| ((*x as f64) - (*y as f64)).powi(2))
        .sum::<f64>()
        / a.len() as f64;
    10.0 * (1.0 / mse.max(1e-20)).log10()
}

/// Appends one pixel given as RGBA in the layout's channels (gray as BT.601 luma).
pub fn push_pixel(data: &mut Vec<f32>, layout: ChannelLayout, [r, g, b, a]: [f32; 4]) {
    let luma = 0.299 * r + 0.587 * g + 0.114 * b;
    match layout {
        ChannelLayout::Gray => data.push(luma),
        ChannelLayout::GrayAlpha => data.extend([luma, a]),
        ChannelLayout::Rgb => data.extend([r, g, b]),
        ChannelLayout::Rgba => data.extend([r, g, b, a]),
    }
}

/// A random RGB picture of `n` Gaussians written with tiles of 8 cells (many tiles, for region
/// and sharing tests).
pub fn tiled_file(seed: u64, w: u32, h: u32, n: usize, smax: f64) -> gsimg::format::Encoded {
    let mut rng = Rng::new(seed);
    let img = random_image(&mut rng, w, h, ChannelLayout::Rgb, n, 0.5, smax);
    let opts = gsimg::format::WriteOptions {
        tile_cells: Some(8),
        ..Default::default()
    };
    gsimg::format::write(&img, &opts).unwrap()
}

/// The test vector of format-spec.md §10 (tests/test_vector.rs checks it byte for byte).
/// The 195 bytes printed in §10.
pub const VECTOR: &str = "
89 47 53 49 0D 0A 1A 0A 48 45 41 44 64 00 00 00
01 00 00 00 10 00 00 00 08 00 00 00 03 00 08 00
02 00 00 00 02 00 00 00 00 00 00 00 02 00 00 00
00 00 00 00 00 00 00 00 02 00 00 00 00 00 80 BF
00 00 00 40 02 00 00 00 00 00 00 00 00 00 00 00
02 00 00 00 00 00 00 00 00 00 80 3F 02 00 00 00
00 00 00 00 00 00 80 3F 02 00 00 00 00 00 00 00
00 00 80 3F 43 8D 41 B4 54 49 44 58 10 00 00 00
02 00 00 00 17 00 00 00 0A 00 00 00 09 00 00 00
EE 5E 46 F2 54 49 4C 45 17 00 00 00 00 00 00 00
28 B5 2F FD 20 0A 51 00 00 01 01 70 80 D0 20 70
C0 20 70 FB C0 C6 0C 47 45 4E 44 00 00 00 00 D6
DB 68 C8";

pub fn vector_bytes() -> Vec<u8> {
    VECTOR
        .split_whitespace()
        .map(|h| u8::from_str_radix(h, 16).unwrap())
        .collect()
}

/// One operation's progress: starts at 0, one total, rising, ends at the total; returns the
/// fractions reported.
pub fn check_progress(seen: &[(usize, usize)]) -> Vec<f64> {
    assert!(!seen.is_empty(), "no progress reported");
    let total = seen[0].1;
    assert_eq!(seen[0].0, 0, "{seen:?}");
    assert!(seen.iter().all(|&(_, t)| t == total), "{seen:?}");
    assert!(seen.windows(2).all(|w| w[0].0 < w[1].0), "{seen:?}");
    assert_eq!(seen.last().unwrap().0, total, "{seen:?}");
    seen.iter().map(|&(d, t)| d as f64 / t as f64).collect()
}

/// The ONNX Runtime library this process uses, found or fetched as gsimg does it for users,
/// by building a CPU encoder of `model`; `None` (after printing why) when it cannot be had and
/// `GSIMG_REQUIRE_ORT` is unset (with it set, as `.ci/run` does, the test fails instead).
pub fn ort_library(model: &std::path::Path) -> Option<std::path::PathBuf> {
    use gsimg::NetworkOptions;
    use gsimg::network::Device;
    use std::sync::OnceLock;
    static LIB: OnceLock<Result<std::path::PathBuf, String>> = OnceLock::new();
    let r = LIB.get_or_init(|| {
        NetworkOptions {
            installed: true,
            model: Some(model.into()),
            device: Device::Cpu,
            ..NetworkOptions::default()
        }
        .build()
        .map(|e| e.library().path.clone())
        .map_err(|e| e.to_string())
    });
    match r {
        Ok(p) => Some(p.clone()),
        Err(e) if std::env::var_os("GSIMG_REQUIRE_ORT").is_none() => {
            eprintln!("SKIPPED (ONNX Runtime unavailable; set GSIMG_REQUIRE_ORT to fail): {e}");
            None
        }
        Err(e) => panic!("ONNX Runtime is required (GSIMG_REQUIRE_ORT is set): {e}"),
    }
}
