//! Super-resolution on Set5 and Set14, the standard protocol: `cargo bench --bench sr`.
//!
//! For each HR image and scale s: crop the HR image to a multiple of s; make the LR input by
//! antialiased bicubic downscaling (the `image` crate's Catmull-Rom filter, Keys a = −0.5, its
//! support widened by s when downscaling, as MATLAB's `imresize`), rounded to 8 bits; upscale
//! it with `gsimg`'s upscale model (ONNX Runtime, CPU provider) and the CPU renderer, and with
//! the same bicubic filter for the baseline; PSNR on the Y channel (BT.601, 16–235) with `s`
//! pixels shaved at each border, averaged over the set.
//!
//! Environment: `GSIMG_BENCH_ROOT` (folder holding set5/ and set14/; required),
//! `GSIMG_SR_SCALES` (default 2,3,4,6,8), `GSIMG_SR_MODEL` (default: models/upscale.onnx),
//! `GSIMG_SR_ENSEMBLE=1` (also the geometric self-ensemble of `gsimg upscale --ensemble`: 8
//! passes averaged; an extra column).

mod kodak;

use gsimg::encode::network::{Device, ModelKind, NetworkOptions};
use gsimg::encode::optim::symmetry::Symmetry;
use gsimg::frame::FrameMean;
use gsimg::render_cpu;
use gsimg::{Frame, Limits, Viewport};
use image::RgbImage;
use image::imageops::{FilterType, resize};

fn y_psnr(a: &RgbImage, b: &RgbImage, shave: u32) -> f64 {
    let (w, h) = a.dimensions();
    let y = |p: &image::Rgb<u8>| {
        16.0 + (65.481 * p[0] as f64 + 128.553 * p[1] as f64 + 24.966 * p[2] as f64) / 255.0
    };
    let mut se = 0.0;
    let mut n = 0.0;
    for yy in shave..h - shave {
        for xx in shave..w - shave {
            let d = y(a.get_pixel(xx, yy)) - y(b.get_pixel(xx, yy));
            se += d * d;
            n += 1.0;
        }
    }
    10.0 * (255.0f64 * 255.0 / (se / n).max(1e-12)).log10()
}

fn main() {
    let root = kodak::required_env("GSIMG_BENCH_ROOT", "the folder holding set5/ and set14/");
    let scales: Vec<u32> = std::env::var("GSIMG_SR_SCALES")
        .unwrap_or_else(|_| "2,3,4,6,8".into())
        .split(',')
        .map(|s| s.trim().parse().expect("GSIMG_SR_SCALES: whole numbers"))
        .collect();
    let opts = NetworkOptions {
        installed: true,
        kind: ModelKind::Upscale,
        device: Device::Cpu,
        model: std::env::var_os("GSIMG_SR_MODEL").map(Into::into),
        ..NetworkOptions::default()
    };
    let enc = opts
        .build()
        .unwrap_or_else(|e| panic!("upscale model: {e}"));
    let limits = Limits::default();
    println!(
        "gsimg upscale model {} ({}), CPU renderer; Y-PSNR, shave = scale",
        enc.model_path().display(),
        enc.provider()
    );
    let ensemble = std::env::var("GSIMG_SR_ENSEMBLE").is_ok_and(|v| v == "1");
    println!(
        "{:<6} {:>5} {:>10} {:>10} {:>8}{}",
        "set",
        "scale",
        "gsimg",
        "bicubic",
        "gain",
        if ensemble { "   ensemble" } else { "" }
    );
    for set in ["set5", "set14"] {
        let dir = format!("{root}/{set}");
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{dir}: {e}"))
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "png"))
            .collect();
        files.sort();
        for &s in &scales {
            let (mut ours, mut bic, mut ens) = (0.0, 0.0, 0.0);
            for f in &files {
                let hr = image::open(f).unwrap().to_rgb8();
                let (w, h) = ((hr.width() / s) * s, (hr.height() / s) * s);
                let hr = image::imageops::crop_imm(&hr, 0, 0, w, h).to_image();
                let lr = resize(&hr, w / s, h / s, FilterType::CatmullRom);
                let px = Frame::from_u8(
                    lr.width(),
                    lr.height(),
                    gsimg::ChannelLayout::Rgb,
                    lr.as_raw(),
                )
                .unwrap();
                let field = enc.gaussians(&px).unwrap().image;
                let frame: Frame<u8> = render_cpu(&field, &Viewport::full(w, h), &limits).unwrap();
                let up = RgbImage::from_raw(w, h, frame.data).unwrap();
                if ensemble {
                    let mut mean =
                        FrameMean::new(w, h, gsimg::ChannelLayout::Rgb, &limits).unwrap();
                    for sym in Symmetry::ALL {
                        let field = enc.gaussians_under(&px, sym).unwrap().image;
                        let f: Frame<f32> =
                            render_cpu(&field, &Viewport::full(w, h), &limits).unwrap();
                        mean.add(&f).unwrap();
                    }
                    let up8 = RgbImage::from_raw(w, h, mean.mean::<u8>().data).unwrap();
                    ens += y_psnr(&hr, &up8, s);
                }
                let base = resize(&lr, w, h, FilterType::CatmullRom);
                ours += y_psnr(&hr, &up, s);
                bic += y_psnr(&hr, &base, s);
            }
            let n = files.len() as f64;
            let ens = if ensemble {
                format!(" {:>10.2}", ens / n)
            } else {
                String::new()
            };
            println!(
                "{set:<6} {:>5} {:>10.2} {:>10.2} {:>+8.2}{ens}",
                format!("x{s}"),
                ours / n,
                bic / n,
                (ours - bic) / n
            );
        }
    }
}
