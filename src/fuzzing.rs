//! Bodies of the fuzz targets in `fuzz/`, here so the regression tests in
//! `tests/fuzz_regressions.rs` replay crashes through exactly the same code.
//!
//! Each function takes arbitrary bytes and must never panic, hang or allocate beyond
//! `limits()`; where the input is valid, each checks an invariant and panics if it breaks.
#![doc(hidden)]
#![forbid(unsafe_code)]

use std::collections::BTreeMap;

use crate::encode::analytic::{self, AnalyticOptions};
use crate::encode::network::ModelInfo;
use crate::encode::network::{Tile, decode_cells, plan_tiles, write_options_for};
use crate::format::{self, Decoder, WriteOptions};
use crate::render::render_cpu;
use crate::{ChannelLayout, Frame, Gaussian, Limits, Region, SplatImage, Viewport};

/// Limits tight enough that every accepted input runs in milliseconds.
pub fn limits() -> Limits {
    Limits {
        max_dimension: 4096,
        max_native_pixels: 1 << 22,
        max_gaussians: 1 << 16,
        max_section_bytes: 1 << 20,
        max_output_pixels: 1 << 14,
        max_output_dimension: 1 << 12,
        max_render_work: 1 << 22,
        max_render_work_per_pixel: 64,
        max_memory_bytes: 1 << 26,
    }
}

/// The resource harness of `parse`, `parse_and_render` and `region`: the library's default
/// limits, under which libFuzzer's `-rss_limit_mb=2048 -timeout=10` (fuzz/run-all.sh) must
/// never trip for an input of up to 64 KiB (format-spec.md §6, §8, §9 bound what a file of
/// that size can cost). Only the render work is smaller, so that the renders of these targets
/// stay fast under AddressSanitizer.
pub fn resource_limits() -> Limits {
    Limits {
        max_render_work: 1 << 24,
        ..Limits::default()
    }
}

/// Parses a whole file.
pub fn parse(data: &[u8]) {
    let _ = format::read(data, &resource_limits());
}

/// Parses a file and renders it at a small size chosen by the first two bytes.
pub fn parse_and_render(data: &[u8]) {
    if data.len() < 2 {
        return;
    }
    let limits = resource_limits();
    let Ok(file) = format::read(&data[2..], &limits) else {
        return;
    };
    let (w, h) = (1 + data[0] as u32 % 96, 1 + data[1] as u32 % 96);
    if let Ok(frame) = render_cpu::<f32>(&file.image, &Viewport::full(w, h), &limits) {
        assert!(
            frame.data.iter().all(|v| v.is_finite()),
            "a rendered value is not finite"
        );
    }
}

/// Decodes the tiles of a region (chosen by the first 8 bytes) and checks that rendering them
/// gives the crop of the full render (format-spec.md §6).
pub fn region(data: &[u8]) {
    if data.len() < 8 {
        return;
    }
    let limits = resource_limits();
    let Ok(dec) = Decoder::new(&data[8..], limits) else {
        return;
    };
    let (w, h) = (1 + data[0] as u32 % 120, 1 + data[1] as u32 % 120);
    let (x, y) = (data[2] as u32 % w, data[3] as u32 % h);
    let r = Region {
        x,
        y,
        width: 1 + data[4] as u32 % (w - x),
        height: 1 + data[5] as u32 % (h - y),
    };
    let full_view = Viewport::full(w, h);
    let view = full_view.with_region(r);
    let Ok(part) = dec.decode_region(&view) else {
        return;
    };
    let Ok(full) = Decoder::new(&data[8..], limits).and_then(|d| d.decode_all()) else {
        return;
    };
    let (Ok(a), Ok(b)) = (
        render_cpu::<f32>(&part, &view, &limits),
        render_cpu::<f32>(&full, &full_view, &limits),
    ) else {
        return;
    };
    let nc = a.channels();
    for row in 0..r.height {
        for col in 0..r.width {
            for c in 0..nc {
                let got = a.data[((row * r.width + col) as usize) * nc + c];
                let want = b.data[(((r.y + row) * w + r.x + col) as usize) * nc + c];
                assert_eq!(
                    got.to_bits(),
                    want.to_bits(),
                    "region {r:?} differs from the full render at {col},{row}"
                );
            }
        }
    }
}

/// Builds a picture from bytes, writes it with options from the bytes, reads it back, and
/// checks the round trip (format-spec.md §5–§7).
pub fn roundtrip(data: &[u8]) {
    if data.len() < 12 {
        return;
    }
    let layout = ChannelLayout::from_channels(1 + data[0] as usize % 4).expect("1 to 4");
    let (w, h) = (
        1 + u16::from_le_bytes([data[1], data[2]]) as u32 % 300,
        1 + data[3] as u32,
    );
    let opts = WriteOptions {
        cell_size: 1 + data[4] as u16 % 20,
        tile_cells: Some(1 + data[5] as u16 % 9),
        position_bits: data[6] % 17,
        scale_bits: data[7] % 17,
        rotation_bits: data[8] % 17,
        luma_bits: data[9] % 17,
        chroma_bits: data[10] % 17,
        alpha_bits: data[11] % 17,
        predict_values: data[6] & 0x80 != 0,
        packing: Some(if data[7] & 0x80 != 0 {
            format::Packing::Bytes
        } else {
            format::Packing::Bits
        }),
        zstd_level: 1,
        ..WriteOptions::default()
    };
    let f = |b: &[u8]| u16::from_le_bytes([b[0], b[1]]) as f32 / 65535.0;
    let gaussians: Vec<Gaussian> = data[12..]
        .chunks_exact(18)
        .map(|b| Gaussian {
            x: f(&b[0..]) * (w as f32 + 4.0) - 2.0,
            y: f(&b[2..]) * (h as f32 + 4.0) - 2.0,
            scale: [0.01 + 30.0 * f(&b[4..]), 0.01 + 30.0 * f(&b[6..])],
            rotation: f(&b[8..]) * 20.0 - 10.0,
            color: [f(&b[10..]), f(&b[12..]), f(&b[14..]), f(&b[16..])],
        })
        .collect();
    let Ok(img) = SplatImage::new(w, h, layout, gaussians) else {
        return;
    };
    let enc = format::write(&img, &opts).expect("writing a valid picture cannot fail");
    let file = format::read(&enc.bytes, &Limits::default()).expect("a written file must read back");
    assert_eq!(
        file.image, enc.image,
        "the file does not read back as written"
    );
}

/// Encodes a tiny picture made from the bytes with the analytic encoder (our input handling on
/// the encode side: pixel buffers of every layout, odd sizes, flat and noisy content).
pub fn encode_pixels(data: &[u8]) {
    if data.len() < 4 {
        return;
    }
    let layout = ChannelLayout::from_channels(1 + data[0] as usize % 4).expect("1 to 4");
    let (w, h) = (1 + data[1] as u32 % 24, 1 + data[2] as u32 % 24);
    let density = 0.01 + (data[3] as f64 / 255.0) * 0.5;
    let n = (w * h) as usize * layout.channels();
    let samples: Vec<u8> = (0..n)
        .map(|i| data.get(4 + i).copied().unwrap_or(0))
        .collect();
    let pixels = Frame::from_u8(w, h, layout, &samples).expect("sizes match");
    // Three refinement steps and a short colour fit exercise the same code as the defaults,
    // at fuzzing speed.
    let mut opts = AnalyticOptions {
        density,
        ..Default::default()
    };
    opts.refine.iterations = 3;
    opts.fit.iterations = 6;
    opts.fit.sweeps = 1;
    opts.write.zstd_level = 1;
    let enc = analytic::encode(&pixels, &opts).expect("encoding a valid picture cannot fail");
    let file =
        format::read(&enc.bytes, &Limits::default()).expect("an encoded file must read back");
    assert_eq!(file.image, enc.image);
    let frame: Frame<u8> =
        render_cpu(&file.image, &Viewport::full(w, h), &Limits::default()).expect("render");
    assert_eq!(frame.data.len(), n);
}

/// Parses model metadata given as `key=value` lines (the ONNX model's `gsimg.*` properties).
pub fn model_metadata(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let meta: BTreeMap<String, String> = text
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let _ = ModelInfo::from_metadata(&meta);
}

/// Turns arbitrary network output into a file (`encode::network`'s post-processing of what the
/// ONNX model returns): a model description and a tiny picture from the first bytes, then the
/// output floats of every tile from the rest (NaN, infinities, huge and tiny values included).
/// Non-finite values must be refused with an error; everything else must give a valid file that
/// reads back as written and renders.
pub fn network_output(data: &[u8]) {
    if data.len() < 12 {
        return;
    }
    let byte = |i: usize| data[i];
    let compact = byte(0) & 1 == 0;
    let cell = [1u32, 2, 4, 8, 16][byte(1) as usize % 5];
    let per_cell = 1 + byte(2) as u32 % 8;
    let bits = |b: u8| 1 + b % 10;
    let (lo, span) = (-8.0 + (byte(3) % 16) as f32, (byte(4) % 12) as f32);
    let mut meta: BTreeMap<String, String> = [
        (
            "gsimg.kind",
            if compact { "compact" } else { "upscale" }.to_string(),
        ),
        ("gsimg.cell", cell.to_string()),
        ("gsimg.per_cell", per_cell.to_string()),
        ("gsimg.multiple", cell.to_string()),
        ("gsimg.receptive_field", (byte(5) % 9).to_string()),
        ("gsimg.version", "1".to_string()),
        ("gsimg.scale_min", lo.to_string()),
        ("gsimg.scale_max", (lo + span).to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    if compact {
        let cb = bits(byte(6));
        for (k, v) in [
            ("gsimg.pos_bits", bits(byte(7)).to_string()),
            ("gsimg.scale_bits", bits(byte(8)).to_string()),
            ("gsimg.rot_bits", bits(byte(9)).to_string()),
            (
                "gsimg.color_bits",
                format!("{},{cb},{cb}", bits(byte(6) / 16)),
            ),
            ("gsimg.color_min", "0.0,-0.5,-0.5".to_string()),
            ("gsimg.color_max", "1.0,0.5,0.5".to_string()),
        ] {
            meta.insert(k.to_string(), v);
        }
    }
    let Ok(info) = ModelInfo::from_metadata(&meta) else {
        return;
    };
    let layout = ChannelLayout::from_channels(1 + byte(10) as usize % 4).expect("1 to 4");
    let (w, h) = (1 + byte(11) as u32 % 40, 1 + (byte(11) / 8) as u32 % 40);
    let pixels = Frame::from_u8(
        w,
        h,
        layout,
        &vec![128; (w * h) as usize * layout.channels()],
    )
    .expect("sizes match");
    let threshold = (data.len() % 7) as f32 / 6.0;
    // Tiles as the encoder plans them, with a small core so pictures get several (and small
    // windows: the model output of a whole window is made for each tile).
    let (wp, hp) = (w.div_ceil(cell) * cell, h.div_ceil(cell) * cell);
    let core = (2 * cell).max(16);
    let tiles: Vec<Tile> = plan_tiles(wp, hp, cell, info.tile_margin(), u64::MAX, Some(core));
    // The model's output: the remaining bytes as little-endian f32, repeated as needed.
    let values: Vec<f32> = data[12..]
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    let values = if values.is_empty() { vec![0.5] } else { values };
    let mut stream = values.iter().copied().cycle();
    let mut gaussians = Vec::new();
    let mut spares = Vec::new();
    for tile in &tiles {
        let [x0, y0, x1, y1] = tile.window;
        let (hc, wc) = (((y1 - y0) / cell) as usize, ((x1 - x0) / cell) as usize);
        let out: Vec<f32> = stream
            .by_ref()
            .take(per_cell as usize * 9 * hc * wc)
            .collect();
        if let Err(e) = decode_cells(
            &pixels,
            &out,
            (hc, wc),
            tile,
            &info,
            threshold,
            &mut gaussians,
            &mut spares,
        ) {
            assert!(
                out.iter().any(|v| !v.is_finite()),
                "finite network output refused: {e}"
            );
            return;
        }
    }
    let before = gaussians.len();
    let added =
        crate::encode::optim::coverage::ensure_coverage(w, h, cell, &mut gaussians, &spares);
    assert!(added <= spares.len() && gaussians.len() == before + added);
    let image = SplatImage::new(w, h, layout, gaussians).expect("decoded Gaussians are valid");
    let mut opts = write_options_for(&info, layout);
    opts.zstd_level = 1;
    let enc = format::write(&image, &opts).expect("valid Gaussians must write");
    let file = format::read(&enc.bytes, &Limits::default()).expect("a written file must read back");
    assert_eq!(file.image, enc.image);
    let frame: Frame<u8> = render_cpu(
        &file.image,
        &Viewport::full(w.min(16), h.min(16)),
        &limits(),
    )
    .expect("render");
    assert_eq!(
        frame.data.len(),
        (w.min(16) * h.min(16)) as usize * layout.channels()
    );
}
