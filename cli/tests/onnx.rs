//! The network encoder through ONNX Runtime, with the tiny dummy models of
//! `tests/fixtures/onnx/` (CPU provider).
//!
//! ONNX Runtime is found or fetched (pip, once per user) as gsimg does it for users. When it
//! cannot be had (no network, no pip) these tests print why and pass, unless the environment
//! variable `GSIMG_REQUIRE_ORT` is set (as `.ci/run` does), in which case they fail.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};

use crate::cli::write_png;
use crate::cli_edges::gsimg_env;
use crate::common::{Rng, max_abs_diff, psnr, synthetic_pixels};
use gsimg::encode::Device;
use gsimg::encode::network::{
    MessageSink, ModelKind, NetworkEncoder, NetworkOptions, Provider, plan_tiles,
};
use gsimg::encode::optim::symmetry::Symmetry;
use gsimg::encode::runtime::ort_lib::{LibrarySearch, LibrarySource};
use gsimg::{ChannelLayout, Frame, Limits, SplatImage, Viewport, format, render};

fn fixture(name: &str) -> PathBuf {
    crate::repo_root().join("tests/fixtures/onnx").join(name)
}

fn quiet() -> Option<MessageSink> {
    None
}

/// The ONNX Runtime library this process uses, or `None` (after printing why) when it cannot
/// be had and `GSIMG_REQUIRE_ORT` is unset.
fn ort_library() -> Option<PathBuf> {
    crate::common::ort_library(&fixture("dummy_upscale.onnx"))
}

/// A CPU encoder of the fixture `model`, its options changed by `f`.
fn encoder(model: &str, f: impl FnOnce(&mut NetworkOptions)) -> NetworkEncoder {
    let mut o = NetworkOptions {
        installed: true,
        model: Some(fixture(model)),
        device: Device::Cpu,
        messages: quiet(),
        ..NetworkOptions::default()
    };
    f(&mut o);
    o.build().unwrap()
}

fn render_f32(image: &SplatImage, w: u32, h: u32) -> Frame<f32> {
    render::render_cpu(image, &Viewport::full(w, h), &Limits::default()).unwrap()
}

/// A 512×512 photo-like texture: smooth shading, hard edges, fine noise, stripes at several
/// frequencies and orientations.
fn textured(w: u32, h: u32, layout: ChannelLayout) -> Frame<f32> {
    let mut rng = Rng::new(7);
    let nc = layout.channels();
    let mut data = Vec::with_capacity((w * h) as usize * nc);
    for y in 0..h {
        for x in 0..w {
            let (fx, fy) = (x as f32 / w as f32, y as f32 / h as f32);
            let n = rng.range(-0.06, 0.06) as f32;
            let stripes = (0.5 + 0.5 * ((x as f32 * 0.9 + y as f32 * 0.4).sin())) * 0.3;
            let rings = (((fx - 0.3).hypot(fy - 0.6) * 60.0).sin() * 0.5 + 0.5) * 0.25;
            let block = if (x / 37 + y / 53) % 2 == 0 { 0.2 } else { 0.0 };
            let r = (0.2 + 0.5 * fx + stripes + n).clamp(0.0, 1.0);
            let g = (0.1 + 0.4 * fy + rings + block + n).clamp(0.0, 1.0);
            let b = (0.6 - 0.3 * fx * fy + block - n).clamp(0.0, 1.0);
            let a = (0.3 + 0.7 * fx).min(if fy > 0.5 { 1.0 } else { 0.6 });
            crate::common::push_pixel(&mut data, layout, [r, g, b, a]);
        }
    }
    Frame {
        width: w,
        height: h,
        layout,
        data,
    }
}

fn channel(data: &[f32], nc: usize, c: usize) -> Vec<f32> {
    data.iter().skip(c).step_by(nc).copied().collect()
}

#[test]
fn dummy_upscale_field_renders_the_picture() {
    if ort_library().is_none() {
        return;
    }
    let e = encoder("dummy_upscale.onnx", |_| ());
    assert_eq!(e.provider(), Provider::Cpu);
    assert_eq!(e.info().kind, ModelKind::Upscale);
    assert_eq!(
        (e.info().cell, e.info().per_cell, e.info().receptive_field),
        (1, 4, 2)
    );
    let px = synthetic_pixels(61, 37, ChannelLayout::Rgb);
    let out = e.gaussians(&px).unwrap();
    assert_eq!(out.image.gaussian_count(), 4 * 61 * 37);
    assert_eq!((out.tiles, out.provider), (1, Provider::Cpu));
    // Anchors: pixel centre ± 0.25 px; σ = 2^-1.3; θ = 0.4.
    let g = out.image.gaussians()[0];
    assert!(
        (g.x - 0.25).abs() < 1e-5 && (g.y - 0.25).abs() < 1e-5,
        "{g:?}"
    );
    assert!((g.scale[0] - (-1.3f32).exp2()).abs() < 1e-5 && (g.rotation - 0.4).abs() < 1e-6);
    let f = render_f32(&out.image, 61, 37);
    let p = psnr(&f.data, &px.data);
    assert!(
        p > 28.0,
        "render of the dummy field vs the input: {p:.2} dB"
    );
}

/// The self-ensemble's maps are exact: the dummy upscale model is symmetric under flips and
/// transposition (round Gaussians on a symmetric 2×2 sub-grid, symmetric kernels), so its 8
/// passes, each mapped back, render what one pass renders. A wrong map moves Gaussians by
/// pixels, far beyond the bound.
#[test]
fn upscale_self_ensemble_of_a_symmetric_model_is_its_single_pass() {
    if ort_library().is_none() {
        return;
    }
    let e = encoder("dummy_upscale.onnx", |_| ());
    let px = synthetic_pixels(37, 23, ChannelLayout::Rgb);
    let (w, h) = (93, 58);
    let single = render_f32(&e.gaussians(&px).unwrap().image, w, h);
    let mut mean =
        gsimg::frame::FrameMean::new(w, h, ChannelLayout::Rgb, &Limits::default()).unwrap();
    for sym in Symmetry::ALL {
        let out = e.gaussians_under(&px, sym).unwrap();
        assert_eq!((out.image.width(), out.image.height()), (37, 23), "{sym:?}");
        let f = render_f32(&out.image, w, h);
        let worst = max_abs_diff(&f.data, &single.data);
        assert!(worst < 1e-3, "{sym:?}: {worst}");
        mean.add(&f).unwrap();
    }
    assert_eq!(mean.count(), 8);
    let m: Frame<f32> = mean.mean();
    let worst = max_abs_diff(&m.data, &single.data);
    assert!(worst < 1e-3, "mean of 8: {worst}");
    // a render of another size is refused, not averaged
    let other = render_f32(&e.gaussians(&px).unwrap().image, w + 1, h);
    assert!(mean.add(&other).is_err());
    // and the averaging memory counts against the limits
    let tight = Limits {
        max_memory_bytes: 1000,
        ..Limits::default()
    };
    assert!(gsimg::frame::FrameMean::new(w, h, ChannelLayout::Rgb, &tight).is_err());
}

/// `gsimg::view::upscale` (the CLI's upscale) is the network's Gaussians rendered at the size,
/// and with `ensemble` the 8-bit mean of the 8 orientations' float renders.
#[test]
fn library_upscale_renders_the_network_fields() {
    use gsimg::view::{Backend, Device, Renderer, UpscaleOptions, upscale};
    if ort_library().is_none() {
        return;
    }
    let e = encoder("dummy_upscale.onnx", |_| ());
    let px = synthetic_pixels(37, 23, ChannelLayout::Rgb);
    let view = Viewport::full(93, 58);
    let cpu = Renderer::new(Backend::Cpu).unwrap();
    let passes = Mutex::new(Vec::new());
    let on_pass = |k: usize, n: usize| passes.lock().unwrap().push((k, n));
    let opts = UpscaleOptions {
        on_pass: Some(&on_pass),
        ..Default::default()
    };
    let single = upscale(&e, &px, &view, &cpu, &Limits::default(), &opts).unwrap();
    let field = e.gaussians(&px).unwrap().image;
    let want: Frame<u8> = render::render_cpu(&field, &view, &Limits::default()).unwrap();
    assert_eq!(single.frame, want);
    assert_eq!(
        (single.device, single.fallback.is_none()),
        (Device::Cpu, true)
    );
    assert_eq!(single.gaussians, field.gaussian_count() as u64);
    assert_eq!(passes.lock().unwrap().as_slice(), [(0, 1)]);

    let ensemble = UpscaleOptions {
        ensemble: true,
        ..Default::default()
    };
    let got = upscale(&e, &px, &view, &cpu, &Limits::default(), &ensemble).unwrap();
    let mut mean =
        gsimg::frame::FrameMean::new(93, 58, ChannelLayout::Rgb, &Limits::default()).unwrap();
    for sym in Symmetry::ALL {
        let out = e.gaussians_under(&px, sym).unwrap();
        mean.add(&render_f32(&out.image, 93, 58)).unwrap();
    }
    assert_eq!(got.frame, mean.mean::<u8>());
    // A cancel before the first pass stops it.
    let stop = std::sync::atomic::AtomicBool::new(true);
    let cancelled = UpscaleOptions {
        cancel: Some(&stop),
        ..Default::default()
    };
    let r = upscale(&e, &px, &view, &cpu, &Limits::default(), &cancelled);
    assert!(matches!(r, Err(gsimg::Error::Cancelled)), "{r:?}");
}

#[test]
fn dummy_compact_writes_its_quantizers_and_quality_sets_presence() {
    if ort_library().is_none() {
        return;
    }
    let px = synthetic_pixels(100, 70, ChannelLayout::Rgb);
    let cells = 100usize.div_ceil(8) * 70usize.div_ceil(8);
    let e = encoder("dummy_compact.onnx", |_| ());
    let enc = e.encode(&px).unwrap();
    let h = &enc.header;
    assert_eq!(h.cell_size, 8);
    assert_eq!((h.position.bits, h.scale.bits, h.rotation.bits), (5, 5, 5));
    assert_eq!((h.scale.min, h.scale.max), (-2.0, 2.25));
    let bits: Vec<u8> = h.channels.iter().map(|c| c.bits).collect();
    assert_eq!(bits, [8, 6, 6]);
    assert_eq!((h.channels[1].min, h.channels[1].max), (-0.5, 0.5));
    assert_eq!(h.color_model, format::ColorModel::YCbCr);
    // Presence 0.9, 0.8, 0.7, 0.6: all kept at the default threshold 0.5.
    assert_eq!(enc.image.gaussian_count(), 4 * cells);
    let file = format::read(&enc.bytes, &Limits::default()).unwrap();
    assert_eq!(file.image, enc.image);
    let p = psnr(&render_f32(&file.image, 100, 70).data, &px.data);
    assert!(p > 22.0, "compact dummy: {p:.2} dB");
    // Threshold 0.75: two of four per cell. Quality never raises the threshold above 0.5
    // (holes), and lowers it above 50.
    let e75 = encoder("dummy_compact.onnx", |o| o.presence_threshold = Some(0.75));
    assert_eq!(e75.encode(&px).unwrap().image.gaussian_count(), 2 * cells);
    // Threshold 0.95: none present. Coverage turns back on each cell's most likely Gaussian
    // (presence 0.9; one σ = 2 px Gaussian does not reach its whole 8×8 cell, so the next one
    // too where needed): no pixel is left black.
    let e95 = encoder("dummy_compact.onnx", |o| o.presence_threshold = Some(0.95));
    let enc95 = e95.encode(&px).unwrap();
    let n = enc95.image.gaussian_count();
    assert!(
        (cells..=2 * cells).contains(&n),
        "{n} Gaussians for {cells} cells"
    );
    let p95 = psnr(&render_f32(&enc95.image, 100, 70).data, &px.data);
    assert!(p95 > 15.0, "covered picture: {p95:.2} dB");
    // Every pixel is reached by a Gaussian as the file stores it (rounded geometry).
    let stored: Vec<_> = enc95
        .image
        .gaussians()
        .iter()
        .map(|g| gsimg::core::geometry::project(g, 1.0, 1.0))
        .collect();
    for y in 0..70i64 {
        for x in 0..100i64 {
            assert!(
                stored
                    .iter()
                    .any(|p| gsimg::core::geometry::weight(p, x, y) > 0.0),
                "pixel ({x}, {y}) is reached by no Gaussian"
            );
        }
    }
    let mut info = e.info().clone();
    assert_eq!(
        info.presence_threshold, 0.5,
        "no gsimg.presence_threshold: 0.5"
    );
    // Quality lowers it to 1 - q/100, but not below the floor (95 and above: 0.05).
    for (q, t) in [
        (1, 0.5),
        (25, 0.5),
        (50, 0.5),
        (70, 0.3),
        (94, 0.06),
        (95, 0.05),
        (99, 0.05),
        (100, 0.05),
    ] {
        let o = NetworkOptions {
            quality: q,
            ..NetworkOptions::default()
        };
        assert!(
            (o.presence_threshold_for(&info) - t).abs() < 1e-6,
            "quality {q}"
        );
    }
    // A model whose operating threshold is 0.45: quality never raises it, lowers it above 55.
    info.presence_threshold = 0.45;
    for (q, t) in [(50, 0.45), (52, 0.45), (60, 0.4), (90, 0.1)] {
        let o = NetworkOptions {
            quality: q,
            ..NetworkOptions::default()
        };
        assert!(
            (o.presence_threshold_for(&info) - t).abs() < 1e-6,
            "quality {q}"
        );
    }
    // An explicit threshold wins.
    let o = NetworkOptions {
        quality: 90,
        presence_threshold: Some(0.75),
        ..NetworkOptions::default()
    };
    assert_eq!(o.presence_threshold_for(&info), 0.75);
    // Every centre clamped into the picture (the file then rounds it within its cell).
    assert!(
        e.gaussians(&px)
            .unwrap()
            .image
            .gaussians()
            .iter()
            .all(|g| (0.0..=100.0).contains(&g.x) && (0.0..=70.0).contains(&g.y))
    );
}

/// Tiled and untiled runs give the same Gaussians up to float summation order.
#[test]
fn tiled_equals_untiled() {
    if ort_library().is_none() {
        return;
    }
    let px = textured(512, 512, ChannelLayout::Rgb);
    for (model, tile) in [("dummy_upscale.onnx", 96), ("dummy_compact.onnx", 120)] {
        let whole = encoder(model, |o| o.max_tile_pixels = 1 << 24);
        let tiled = encoder(model, |o| o.tile_size = Some(tile));
        assert_eq!(whole.tiles_for(512, 512).len(), 1);
        assert!(tiled.tiles_for(512, 512).len() >= 16);
        let a = whole.gaussians(&px).unwrap();
        let b = tiled.gaussians(&px).unwrap();
        assert_eq!(
            a.image.gaussian_count(),
            b.image.gaussian_count(),
            "{model}"
        );
        let key = |g: &gsimg::Gaussian| ((g.y * 64.0) as i64, (g.x * 64.0) as i64);
        let mut ga = a.image.gaussians().to_vec();
        let mut gb = b.image.gaussians().to_vec();
        ga.sort_by_key(key);
        gb.sort_by_key(key);
        let mut worst = 0f32;
        for (x, y) in ga.iter().zip(&gb) {
            let d = [
                x.x - y.x,
                x.y - y.y,
                x.scale[0] - y.scale[0],
                x.scale[1] - y.scale[1],
                x.rotation - y.rotation,
                x.color[0] - y.color[0],
                x.color[1] - y.color[1],
                x.color[2] - y.color[2],
            ];
            worst = d.iter().fold(worst, |m, v| m.max(v.abs()));
        }
        // Stated bound: 1e-5 per parameter (f32 summation order only).
        assert!(
            worst <= 1e-5,
            "{model}: tiled vs untiled max |diff| {worst}"
        );
        let fa = render_f32(&a.image, 512, 512);
        let fb = render_f32(&b.image, 512, 512);
        let max = fa
            .data
            .iter()
            .zip(&fb.data)
            .fold(0f32, |m, (x, y)| m.max((x - y).abs()));
        assert!(max <= 1e-4, "{model}: renders differ by {max}");
    }
}

#[test]
fn gray_input_gives_gray_output() {
    if ort_library().is_none() {
        return;
    }
    let px = synthetic_pixels(48, 40, ChannelLayout::Gray);
    for model in ["dummy_upscale.onnx", "dummy_compact.onnx"] {
        let e = encoder(model, |_| ());
        let enc = e.encode(&px).unwrap();
        assert_eq!(enc.image.layout(), ChannelLayout::Gray);
        let f = render_f32(&enc.image, 48, 40);
        assert_eq!(f.channels(), 1);
        let p = psnr(&f.data, &px.data);
        assert!(p > 22.0, "{model}: gray {p:.2} dB");
    }
}

#[test]
fn rgba_alpha_survives_the_round_trip() {
    if ort_library().is_none() {
        return;
    }
    for (model, layout) in [
        ("dummy_compact.onnx", ChannelLayout::Rgba),
        ("dummy_upscale.onnx", ChannelLayout::Rgba),
        ("dummy_compact.onnx", ChannelLayout::GrayAlpha),
    ] {
        let px = textured(96, 80, layout);
        let nc = layout.channels();
        let e = encoder(model, |_| ());
        let enc = e.encode(&px).unwrap();
        let file = format::read(&enc.bytes, &Limits::default()).unwrap();
        assert_eq!(file.image.layout(), layout);
        let f = render_f32(&file.image, 96, 80);
        let (got, want) = (channel(&f.data, nc, nc - 1), channel(&px.data, nc, nc - 1));
        let p = psnr(&got, &want);
        assert!(p > 30.0, "{model} {layout:?}: alpha {p:.2} dB");
        // Flat opaque and half-transparent areas come back within 8-bit rounding.
        let at = |x: usize, y: usize| (got[y * 96 + x], want[y * 96 + x]);
        for (x, y) in [(90, 75), (40, 10)] {
            let (g, w) = at(x, y);
            assert!(
                (g - w).abs() < 0.02,
                "{model} {layout:?} alpha at ({x},{y}): {g} vs {w}"
            );
        }
        // The continuous field (upscale path) too.
        let out = e.gaussians(&px).unwrap();
        let f = render_f32(&out.image, 96, 80);
        let p = psnr(&channel(&f.data, nc, nc - 1), &want);
        assert!(p > 30.0, "{model} {layout:?}: field alpha {p:.2} dB");
    }
}

fn model_error(path: &Path) -> String {
    match (NetworkOptions {
        installed: true,
        model: Some(path.into()),
        device: Device::Cpu,
        messages: quiet(),
        ..NetworkOptions::default()
    })
    .build()
    {
        Ok(_) => panic!("{} was accepted", path.display()),
        Err(e) => e.to_string(),
    }
}

#[test]
fn bad_models_give_clear_errors() {
    if ort_library().is_none() {
        return;
    }
    let missing = fixture("does_not_exist.onnx");
    let e = model_error(&missing);
    assert!(
        e.contains("does_not_exist.onnx") && e.contains("no such file"),
        "{e}"
    );

    let dir = std::env::temp_dir().join(format!("gsimg-onnx-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let junk = dir.join("junk.onnx");
    std::fs::write(&junk, b"this is not an ONNX model, just text").unwrap();
    let e = model_error(&junk);
    assert!(
        e.contains("junk.onnx") && e.contains("cannot load it as an ONNX model"),
        "{e}"
    );
    let _ = std::fs::remove_dir_all(&dir);

    let e = model_error(&fixture("no_metadata.onnx"));
    assert!(e.contains("gsimg.kind") && e.contains("missing"), "{e}");
    let e = model_error(&fixture("wrong_shape.onnx"));
    assert!(e.contains("gaussians") && e.contains("[1, K = 4, 9"), "{e}");
    let e = model_error(&fixture("bad_values.onnx"));
    assert!(e.contains("K = 3"), "{e}");
}

#[test]
fn options_are_validated() {
    let invalid = |f: fn(&mut NetworkOptions)| {
        let mut o = NetworkOptions {
            installed: true,
            ..NetworkOptions::default()
        };
        f(&mut o);
        o.build().err().unwrap().to_string()
    };
    let e = invalid(|o| o.presence_threshold = Some(1.5));
    assert!(e.contains("presence threshold"), "{e}");
    let e = invalid(|o| o.quality = 0);
    assert!(e.contains("quality"), "{e}");
    let e = invalid(|o| o.tile_size = Some(0));
    assert!(e.contains("tile size"), "{e}");
}

#[test]
fn tiles_for_a_24_megapixel_photo_are_bounded() {
    // 6000×4000 with the compact model's geometry (multiple 8, margin 56): every window within
    // the pixel budget, so memory does not grow with the picture.
    let tiles = plan_tiles(6000, 4000, 8, 56, 1 << 21, None);
    assert!(tiles.len() >= 12);
    for t in &tiles {
        let [x0, y0, x1, y1] = t.window;
        assert!(((x1 - x0) * (y1 - y0)) as u64 <= 1 << 21, "{t:?}");
    }
}

/// The library lookup: an explicit path wins over ORT_DYLIB_PATH; a bad ORT_DYLIB_PATH is a
/// clear error (not a silent fallback).
#[test]
fn library_lookup_order() {
    let Some(lib) = ort_library() else {
        return;
    };
    let quiet = |_: &str| {};
    let probe = |p: &Path| {
        // A fake probe is enough for the order; the real library's name gives its version.
        p.file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.split('.').nth(3))
            .and_then(|v| v.parse().ok())
            .filter(|_| p.exists())
    };
    let search = LibrarySearch {
        explicit: Some(lib.clone()),
        explicit_label: "--ort-lib".into(),
        env_path: Some("/nonexistent/libonnxruntime.so.1.31.1".into()),
        exe_dir: None,
        cache_dir: None,
        system: false,
        fetch: false,
        python: "python3".into(),
    };
    let found = gsimg::encode::runtime::ort_lib::locate(&search, &probe, &quiet).unwrap();
    assert_eq!(
        (found.source, found.path),
        (LibrarySource::Explicit, lib.clone())
    );
    let bad = LibrarySearch {
        explicit: None,
        ..search
    };
    let e = gsimg::encode::runtime::ort_lib::locate(&bad, &probe, &quiet)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("ORT_DYLIB_PATH") && e.contains("/nonexistent/"),
        "{e}"
    );

    // The same through the command line, in fresh processes.
    let t = TempDir::new("lookup");
    let input = t.path("in.png");
    write_png(&input, 20, 12, ChannelLayout::Rgb);
    let model = fixture("dummy_upscale.onnx");
    let base = [
        "upscale",
        input.as_str(),
        &t.path("out.png"),
        "--scale",
        "2",
        "--model",
        model.to_str().unwrap(),
        "--device",
        "cpu",
    ];
    let o = gsimg_env(
        &base,
        &[("ORT_DYLIB_PATH", "/nonexistent/libonnxruntime.so.1.31.1")],
    );
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("ORT_DYLIB_PATH") && err.contains("/nonexistent/"),
        "{err}"
    );
    let mut args = base.to_vec();
    args.extend(["--ort-lib", lib.to_str().unwrap()]);
    let o = gsimg_env(
        &args,
        &[("ORT_DYLIB_PATH", "/nonexistent/libonnxruntime.so.1.31.1")],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // --device cpu: the summary says where the picture was rendered
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("rendered on the CPU"), "{err}");
}

struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!("gsimg-onnx-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }

    fn path(&self, f: &str) -> String {
        self.0.join(f).to_string_lossy().into_owned()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `--device cuda` with an ONNX Runtime that cannot run CUDA (PyPI's CPU build here): one line
/// that says why and which options fix it, exit status 1, no output. (With a GPU build and a
/// GPU, it runs.)
#[test]
fn cli_network_on_cuda_without_the_provider_says_how_to_fix_it() {
    let Some(lib) = ort_library() else {
        return;
    };
    let t = TempDir::new("cudaprov");
    let input = t.path("in.png");
    write_png(&input, 20, 12, ChannelLayout::Rgb);
    let out = t.path("out.png");
    let model = fixture("dummy_upscale.onnx");
    let o = gsimg_env(
        &[
            "upscale",
            &input,
            &out,
            "--scale",
            "2",
            "--model",
            model.to_str().unwrap(),
            "--ort-lib",
            lib.to_str().unwrap(),
            "--device",
            "cuda",
        ],
        &[],
    );
    let err = String::from_utf8_lossy(&o.stderr);
    if o.status.success() {
        eprintln!("the CUDA provider ran here: nothing to check");
        return;
    }
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.starts_with("gsimg: error: --device cuda: the CUDA execution provider cannot run: ")
            && err.trim_end().ends_with("; or use --device cpu")
            && err.lines().count() == 1,
        "{err}"
    );
    if err.contains("built without the CUDA execution provider") {
        assert!(
            err.contains("set ORT_DYLIB_PATH (or --ort-lib) to the GPU build's"),
            "{err}"
        );
    }
    assert!(!Path::new(&out).exists());
}

#[test]
fn cli_upscale_by_a_non_integer_factor() {
    let Some(lib) = ort_library() else {
        return;
    };
    let t = TempDir::new("upscale");
    let input = t.path("in.png");
    write_png(&input, 37, 23, ChannelLayout::Rgb);
    let model = fixture("dummy_upscale.onnx");
    let lib = lib.to_string_lossy().into_owned();
    let run = |out: &str, size: &[&str]| {
        let mut args = vec![
            "upscale",
            input.as_str(),
            out,
            "--model",
            model.to_str().unwrap(),
            "--ort-lib",
            &lib,
            "-v",
        ];
        args.extend(size);
        let o = gsimg_env(&args, &[]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let err = String::from_utf8_lossy(&o.stderr).into_owned();
        assert!(err.contains("CPUExecutionProvider"), "{err}");
        // auto: the GPU where one works, else the CPU (with -v, a note or a warning says so)
        let gpu = err.contains("rendered on the GPU");
        assert!(gpu || err.contains("rendered on the CPU"), "{err}");
        assert_eq!(gpu, !err.contains("rendering on the CPU"), "{err}");
        image::image_dimensions(out).unwrap()
    };
    // 37 × 2.5 = 92.5 → 93, 23 × 2.5 = 57.5 → 58 (rounded half away from zero).
    assert_eq!(run(&t.path("a.png"), &["--scale", "2.5"]), (93, 58));
    assert_eq!(run(&t.path("b.png"), &["--width", "100"]), (100, 62));
    assert_eq!(run(&t.path("c.png"), &["--height", "46"]), (74, 46));
    assert_eq!(
        run(&t.path("e.png"), &["--scale", "2.5", "--ensemble"]),
        (93, 58)
    );
    // the dummy model is symmetric: its ensemble is its single pass, to 8-bit rounding
    let (a, e) = (
        image::open(t.path("a.png")).unwrap().to_rgb8(),
        image::open(t.path("e.png")).unwrap().to_rgb8(),
    );
    let worst = a
        .as_raw()
        .iter()
        .zip(e.as_raw())
        .map(|(x, y)| x.abs_diff(*y))
        .max()
        .unwrap();
    assert!(worst <= 1, "ensemble vs single pass: {worst} levels");
    let o = gsimg_env(&["upscale", &input, &t.path("d.png")], &[]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("--scale"));
}

#[test]
fn cli_encode_with_a_model_and_decode() {
    let Some(lib) = ort_library() else {
        return;
    };
    let t = TempDir::new("encode");
    let (input, gsi, back) = (t.path("in.png"), t.path("in.gsi"), t.path("back.png"));
    write_png(&input, 64, 40, ChannelLayout::Rgb);
    let model = fixture("dummy_compact.onnx");
    let lib = lib.to_string_lossy().into_owned();
    let o = gsimg_env(
        &[
            "encode",
            &input,
            &gsi,
            "--model",
            model.to_str().unwrap(),
            "--ort-lib",
            &lib,
            "--device",
            "cpu",
        ],
        &[],
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(
        err.contains("network") && err.contains("CPUExecutionProvider"),
        "{err}"
    );
    // -v: how long the start took, then each stage of the encode (a few refinement steps).
    let o = gsimg_env(
        &[
            "encode",
            &input,
            &t.path("refined.gsi"),
            "--model",
            model.to_str().unwrap(),
            "--ort-lib",
            &lib,
            "--device",
            "cpu",
            "--refine",
            "4",
            "-v",
        ],
        &[],
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    let start = err
        .lines()
        .find(|l| l.contains("start: picture decoded in"));
    assert!(
        start.is_some_and(|l| l.contains("encoder ready in") && !l.contains("GPU")),
        "{err}"
    );
    let stages = err.lines().find(|l| l.contains("stages: network"));
    assert!(
        stages.is_some_and(|l| ["colour fits", "descent", "writing"]
            .iter()
            .all(|s| l.contains(s))),
        "{err}"
    );
    let o = gsimg_env(&["decode", &gsi, &back], &[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(image::image_dimensions(&back).unwrap(), (64, 40));
    // --method network with a missing model names the paths tried and suggests analytic.
    let o = gsimg_env(
        &[
            "encode",
            &input,
            &gsi,
            "--method",
            "network",
            "--model",
            "/nonexistent/compact.onnx",
        ],
        &[],
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("/nonexistent/compact.onnx"),
        "{err}"
    );
}

/// Progress reaches the hook: the network's Gaussians report tiles done of all; an encode
/// reports one rising count over the tiles and then the colour fits, every refinement step and
/// the writing, up to the whole.
#[test]
fn progress_and_messages() {
    if ort_library().is_none() {
        return;
    }
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s2 = seen.clone();
    let sink: gsimg::ProgressSink = Arc::new(move |d, t| s2.lock().unwrap().push((d, t)));
    let px = synthetic_pixels(64, 64, ChannelLayout::Rgb);
    let e = encoder("dummy_compact.onnx", |o| {
        o.tile_size = Some(32);
        o.progress = Some(sink.clone());
    });
    e.gaussians(&px).unwrap();
    // Four tiles of one unit each, in thousandths (a run that takes long enough also reports
    // within itself).
    let tiles = std::mem::take(&mut *seen.lock().unwrap());
    crate::common::check_progress(&tiles);
    for k in 0..=4 {
        assert!(tiles.contains(&(k * 1000, 4000)), "{tiles:?}");
    }
    e.encode(&px).unwrap();
    let plain = crate::common::check_progress(&std::mem::take(&mut *seen.lock().unwrap()));
    // The four tiles, then the colour fit and the writing.
    assert!(plain.len() >= 6, "{plain:?}");
    let refined = encoder("dummy_compact.onnx", |o| {
        o.tile_size = Some(32);
        o.progress = Some(sink.clone());
        o.refine.iterations = 12;
        o.refine.quantized_steps = 4;
    });
    refined.encode(&px).unwrap();
    let fractions = crate::common::check_progress(&seen.lock().unwrap());
    assert!(fractions.len() > 4 + 12 + 4, "{fractions:?}");
}

/// Within one network run (a whole upscale of a picture up to 2 MP is one run): progress moves
/// while the run goes on (estimated from a run on a corner of the window first), and a cancel
/// stops the run itself through ONNX Runtime's terminate flag, long before it would end. The
/// shipped upscale model on a 288×288 picture (a run of seconds on a CPU).
#[test]
fn progress_and_cancel_within_one_network_run() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::{Duration, Instant};
    if ort_library().is_none() {
        return;
    }
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s2 = seen.clone();
    let start = Instant::now();
    let sink: gsimg::ProgressSink =
        Arc::new(move |d, t| s2.lock().unwrap().push((start.elapsed(), d, t)));
    let e = NetworkOptions {
        kind: ModelKind::Upscale,
        installed: true,
        device: Device::Cpu,
        messages: quiet(),
        progress: Some(sink),
        ..NetworkOptions::default()
    }
    .build()
    .unwrap();
    let px = textured(288, 288, ChannelLayout::Rgb);
    assert_eq!(e.tiles_for(288, 288).len(), 1);
    let t = Instant::now();
    e.gaussians(&px).unwrap();
    let t_whole = t.elapsed();
    let reports = std::mem::take(&mut *seen.lock().unwrap());
    let counts: Vec<(usize, usize)> = reports.iter().map(|&(_, d, t)| (d, t)).collect();
    crate::common::check_progress(&counts);
    let total = counts[0].1;
    let within: Vec<_> = reports
        .iter()
        .filter(|&&(_, d, _)| d > 0 && d < total)
        .collect();
    eprintln!(
        "one run of 288x288: {:.2} s, {} reports within it: {within:?}",
        t_whole.as_secs_f64(),
        within.len()
    );
    if t_whole >= Duration::from_millis(500) {
        assert!(
            !within.is_empty(),
            "no progress within the run: {reports:?}"
        );
    }
    // Cancelled after a fifth of the run's time: the run stops (a second run needs no probe).
    let flag = AtomicBool::new(false);
    let (result, took) = std::thread::scope(|s| {
        s.spawn(|| {
            std::thread::sleep(t_whole / 5);
            flag.store(true, Ordering::Relaxed);
        });
        let t = Instant::now();
        let r = e.gaussians_cancellable(&px, Symmetry::IDENTITY, &flag);
        (r, t.elapsed())
    });
    eprintln!("cancelled after {:?}: returned after {took:?}", t_whole / 5);
    if t_whole >= Duration::from_millis(500) {
        assert!(
            matches!(result, Err(gsimg::Error::Cancelled)),
            "not cancelled: {:?}",
            result.map(|_| ())
        );
        assert!(
            took < t_whole * 3 / 4,
            "cancel took {took:?} of {t_whole:?}"
        );
    }
    // The encoder runs whole again after a cancel.
    flag.store(false, Ordering::Relaxed);
    let again = e
        .gaussians_cancellable(&px, Symmetry::IDENTITY, &flag)
        .unwrap();
    assert!(again.image.gaussian_count() > 0);
}

/// Tiled vs untiled on a real photo with a real model (slow; not run by default):
/// `GSIMG_TILE_PHOTO=photo.jpg [GSIMG_TILE_MODEL=models/compact.onnx] cargo test --release
/// --test main onnx::tiled_vs_untiled_real_photo -- --ignored --nocapture`. Uses the centre
/// 1024×1024 crop, tiles of 256 px against one run; prints the largest difference of any
/// Gaussian parameter and of the 1× renders, and fails above 1e-4.
#[test]
#[ignore]
fn tiled_vs_untiled_real_photo() {
    let Ok(photo) = std::env::var("GSIMG_TILE_PHOTO") else {
        eprintln!("set GSIMG_TILE_PHOTO to a photo");
        return;
    };
    if ort_library().is_none() {
        return;
    }
    let model = std::env::var("GSIMG_TILE_MODEL")
        .map(PathBuf::from)
        .unwrap_or_else(|_| crate::repo_root().join("models/compact.onnx"));
    let bytes = std::fs::read(&photo).unwrap();
    let full = gsimg::encode::load_image(&bytes, &Limits::default())
        .unwrap()
        .pixels
        .to_layout(ChannelLayout::Rgb);
    let side = 1024.min(full.width).min(full.height);
    let (x0, y0) = ((full.width - side) / 2, (full.height - side) / 2);
    let mut data = Vec::with_capacity((side * side * 3) as usize);
    for y in y0..y0 + side {
        let row = ((y * full.width + x0) * 3) as usize;
        data.extend_from_slice(&full.data[row..row + (side * 3) as usize]);
    }
    let px = Frame {
        width: side,
        height: side,
        layout: ChannelLayout::Rgb,
        data,
    };
    let build = |tile: Option<u32>| {
        NetworkOptions {
            installed: true,
            model: Some(model.clone()),
            device: Device::Cpu,
            messages: quiet(),
            max_tile_pixels: 1 << 26,
            tile_size: tile,
            ..NetworkOptions::default()
        }
        .build()
        .unwrap()
    };
    let (whole, tiled) = (build(None), build(Some(256)));
    let a = whole.gaussians(&px).unwrap().image;
    let b = tiled.gaussians(&px).unwrap().image;
    let key = |g: &gsimg::Gaussian| ((g.y * 64.0) as i64, (g.x * 64.0) as i64);
    let (mut ga, mut gb) = (a.gaussians().to_vec(), b.gaussians().to_vec());
    ga.sort_by_key(key);
    gb.sort_by_key(key);
    let mut worst = 0f32;
    for (x, y) in ga.iter().zip(&gb) {
        for (p, q) in [
            (x.x, y.x),
            (x.y, y.y),
            (x.scale[0], y.scale[0]),
            (x.scale[1], y.scale[1]),
            (x.rotation, y.rotation),
            (x.color[0], y.color[0]),
            (x.color[1], y.color[1]),
            (x.color[2], y.color[2]),
        ] {
            worst = worst.max((p - q).abs());
        }
    }
    let fa = render_f32(&a, side, side);
    let fb = render_f32(&b, side, side);
    let max = fa
        .data
        .iter()
        .zip(&fb.data)
        .fold(0f32, |m, (x, y)| m.max((x - y).abs()));
    println!(
        "{} on {photo} ({side}x{side} crop, {} tiles): Gaussians {} vs {}, max parameter diff \
         {worst:.2e}, max render diff {max:.2e}",
        model.display(),
        tiled.tiles_for(side, side).len(),
        ga.len(),
        gb.len()
    );
    assert_eq!(ga.len(), gb.len());
    assert!(worst <= 1e-4 && max <= 1e-4);
}

/// `path` with its bytes for each of `values` (f32, little-endian) replaced by NaN: damaged
/// weights that still load.
fn with_nan_weights(from: &Path, to: &Path, values: &[f32]) {
    let mut b = std::fs::read(from).unwrap();
    for v in values {
        let pat = v.to_le_bytes();
        let mut i = 0;
        let mut hits = 0;
        while i + 4 <= b.len() {
            if b[i..i + 4] == pat {
                b[i..i + 4].copy_from_slice(&f32::NAN.to_le_bytes());
                hits += 1;
                i += 4;
            } else {
                i += 1;
            }
        }
        assert!(hits > 0, "{v} not found in {}", from.display());
    }
    std::fs::write(to, b).unwrap();
}

/// The models gsimg ships carry their SHA-256 beside them, and it matches.
#[test]
fn shipped_models_match_their_checksums() {
    for m in ["compact.onnx", "upscale.onnx"] {
        let p = crate::repo_root().join("models").join(m);
        assert_eq!(
            gsimg::encode::network::verify_model(&p).map_err(|e| e.to_string()),
            Ok(true),
            "{m}"
        );
    }
}

/// A model whose bytes changed under its checksum is refused; NaN weights (which once encoded
/// every picture to 0 Gaussians, exit 0) are an error; an upscale model is no encode model.
#[test]
fn damaged_and_wrong_models_are_refused() {
    let Some(lib) = ort_library() else {
        return;
    };
    let t = TempDir::new("damaged");
    let original = fixture("dummy_compact.onnx");
    // A checksum beside it: verified, then one byte changed is refused before loading.
    let copy = t.path("m.onnx");
    std::fs::copy(&original, &copy).unwrap();
    let sum = Command::new("sha256sum").arg(&copy).output().unwrap();
    std::fs::write(t.path("m.onnx.sha256"), &sum.stdout).unwrap();
    assert!(
        gsimg::encode::network::verify_model(Path::new(&copy)).unwrap(),
        "checked"
    );
    // -v says which model and library ran, and that the model was checked.
    let (input, out) = (t.path("in.png"), t.path("out.gsi"));
    write_png(&input, 48, 32, ChannelLayout::Rgb);
    let lib = lib.to_string_lossy().into_owned();
    let o = gsimg_env(
        &[
            "-v",
            "encode",
            &input,
            &out,
            "--model",
            &copy,
            "--ort-lib",
            &lib,
        ],
        &[],
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(
        err.contains("checked against the SHA-256") && err.contains("ONNX Runtime 1."),
        "{err}"
    );
    std::fs::remove_file(&out).unwrap();
    let mut bytes = std::fs::read(&copy).unwrap();
    let n = bytes.len();
    bytes[n / 2] ^= 0x40;
    std::fs::write(&copy, &bytes).unwrap();
    let e = model_error(Path::new(&copy));
    assert!(e.contains("damaged") && e.contains("SHA-256"), "{e}");

    // NaN in the presence biases and the blur (no checksum to catch it).
    let nan = t.path("nan.onnx");
    with_nan_weights(&original, Path::new(&nan), &[0.9, 0.8, 0.7, 0.6]);
    let e = NetworkOptions {
        installed: true,
        model: Some(nan.clone().into()),
        device: Device::Cpu,
        messages: quiet(),
        ..NetworkOptions::default()
    }
    .build()
    .unwrap();
    let err = e
        .encode(&synthetic_pixels(48, 32, ChannelLayout::Rgb))
        .unwrap_err()
        .to_string();
    assert!(err.contains("non-finite"), "{err}");
    let o = gsimg_env(
        &["encode", &input, &out, "--model", &nan, "--ort-lib", &lib],
        &[],
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("non-finite"), "{err}");
    assert!(!Path::new(&out).exists());

    // An upscale model given to encode: refused, nothing written.
    let up = fixture("dummy_upscale.onnx");
    let o = gsimg_env(
        &[
            "encode",
            &input,
            &out,
            "--model",
            up.to_str().unwrap(),
            "--ort-lib",
            &lib,
        ],
        &[],
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("upscale model") && err.contains("compact"),
        "{err}"
    );
    assert!(!Path::new(&out).exists());
}

/// Peak resident memory of a finished child, from polling its `/proc/PID/status` (`VmHWM`, a
/// high-water mark) until it exits; `None` where `/proc` has no such line.
fn peak_rss_kb(mut child: std::process::Child) -> (std::process::ExitStatus, Option<u64>) {
    let status_path = format!("/proc/{}/status", child.id());
    let mut peak = None;
    loop {
        if let Ok(s) = std::fs::read_to_string(&status_path)
            && let Some(kb) = s
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        {
            peak = Some(peak.unwrap_or(0).max(kb));
        }
        if let Some(st) = child.try_wait().unwrap() {
            return (st, peak);
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
}

/// A gray + alpha upscale costs about what an RGB one does: alpha's least-squares fit once
/// formed a normal matrix of ~100 entries per Gaussian of the dense field (733 MB against 97
/// MB for this 256x256 picture with the dummy model).
#[test]
fn gray_alpha_upscale_takes_about_the_memory_of_rgb() {
    let Some(lib) = ort_library() else {
        return;
    };
    let t = TempDir::new("gamem");
    let lib = lib.to_string_lossy().into_owned();
    let model = fixture("dummy_upscale.onnx");
    let mut peaks = Vec::new();
    for layout in [ChannelLayout::Rgb, ChannelLayout::GrayAlpha] {
        let input = t.path("in.png");
        let px = synthetic_pixels(256, 256, layout);
        let color = match layout {
            ChannelLayout::Rgb => image::ExtendedColorType::Rgb8,
            _ => image::ExtendedColorType::La8,
        };
        image::save_buffer(&input, &px.to_u8().data, 256, 256, color).unwrap();
        // GSIMG_MEASURE_BIN: another gsimg binary to measure the same way (BENCHMARKS.md).
        let bin = std::env::var("GSIMG_MEASURE_BIN")
            .unwrap_or_else(|_| env!("CARGO_BIN_EXE_gsimg").to_string());
        let child = Command::new(bin)
            .args(["upscale", &input, &t.path("out.png"), "--scale", "2"])
            .args(["--device", "cpu", "--ort-lib", &lib, "--model"])
            .arg(&model)
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let (status, peak) = peak_rss_kb(child);
        assert!(status.success(), "{layout:?}");
        let Some(peak) = peak else {
            eprintln!("SKIPPED: no /proc/PID/status VmHWM here");
            return;
        };
        peaks.push(peak);
    }
    eprintln!(
        "peak resident memory: RGB {} kB, gray+alpha {} kB",
        peaks[0], peaks[1]
    );
    assert!(
        peaks[1] < peaks[0] * 2,
        "gray+alpha {} kB against RGB {} kB",
        peaks[1],
        peaks[0]
    );
}
