//! Network encoder speed: `cargo bench --bench encode`.
//!
//! For each model (compact: `encode` to a `.gsi` file; upscale: the Gaussian field `upscale`
//! renders from) and each picture (a Kodak image at 768×512, and 1920×1080 made by resizing it),
//! prints the median and minimum of `GSIMG_BENCH_REPS` (default 10) encodes after 2 warm-up runs,
//! the execution provider that ran, the tiles, the time in the network alone, in the network and
//! the decoding of its output into Gaussians (the coverage step included), and in the
//! least-squares colour fit alone (compact models); the rest of an encode is quantizing and
//! writing the file. Then, for the
//! upscale model, the cost of writing its field to a file with the fine quantizers (PSNR of ×2,
//! ×3, ×4 renders against the original, direct field vs file).
//!
//! Environment: `GSIMG_BENCH_MODELS` (comma-separated .onnx paths; default `models/compact.onnx`
//! and `models/upscale.onnx`, else the dummy test models, labelled so), `GSIMG_BENCH_DEVICE`
//! (auto | cpu | cuda, default auto), `GSIMG_BENCH_IMAGE` (required: a Kodak PNG, e.g. kodim01),
//! `ORT_DYLIB_PATH` (e.g. the GPU build of ONNX Runtime), `GSIMG_BENCH_NO_FIT=1` (compact models
//! also without the least-squares colour fit, as `gsimg encode --no-fit`), `GSIMG_BENCH_FITS`
//! (compact models: comma-separated colour fits to time, each `default`, `none` or
//! `ITERATIONSxSWEEPS`, e.g. `default,15x1,none`; overrides `GSIMG_BENCH_NO_FIT`).

mod kodak;

use std::path::{Path, PathBuf};
use std::time::Instant;

use gsimg::encode::Device;
use gsimg::encode::network::{ModelKind, NetworkEncoder, NetworkOptions};
use gsimg::encode::optim::fit::{FitOptions, fit_colors};
use gsimg::{ChannelLayout, Frame, Limits, Viewport, render};

/// This process's user + system CPU seconds (Linux `/proc/self/stat`, 100 ticks a second),
/// a figure other jobs on a shared machine inflate far less than wall time.
fn cpu_seconds() -> f64 {
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            let rest = &s[s.rfind(')')? + 2..];
            let f: Vec<&str> = rest.split_whitespace().collect();
            let (u, k): (f64, f64) = (f.get(11)?.parse().ok()?, f.get(12)?.parse().ok()?);
            Some((u + k) / 100.0)
        })
        .unwrap_or(f64::NAN)
}

fn stats(mut t: Vec<f64>) -> (f64, f64) {
    t.sort_by(f64::total_cmp);
    (t[t.len() / 2], t[0])
}

fn resize(p: &Frame<f32>, w: u32, h: u32, filter: image::imageops::FilterType) -> Frame<f32> {
    assert_eq!(p.layout, ChannelLayout::Rgb);
    let img = image::Rgb32FImage::from_raw(p.width, p.height, p.data.clone()).unwrap();
    let r = image::imageops::resize(&img, w, h, filter);
    Frame {
        width: w,
        height: h,
        layout: ChannelLayout::Rgb,
        data: r.into_raw(),
    }
}

fn psnr(a: &[f32], b: &[f32]) -> f64 {
    let mse = a
        .iter()
        .zip(b)
        .map(|(x, y)| (x.clamp(0.0, 1.0) as f64 - y.clamp(0.0, 1.0) as f64).powi(2))
        .sum::<f64>()
        / a.len() as f64;
    10.0 * (1.0 / mse.max(1e-20)).log10()
}

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let reps: usize = std::env::var("GSIMG_BENCH_REPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10)
        .max(1);
    let warmup: usize = std::env::var("GSIMG_BENCH_WARMUP")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2);
    // Which pictures: "kodak", "1920" (comma-separated), default both.
    let pictures: Vec<String> = std::env::var("GSIMG_BENCH_PICTURES")
        .unwrap_or_else(|_| "kodak,1920".into())
        .split(',')
        .map(|p| p.trim().to_lowercase())
        .collect();
    let device = match std::env::var("GSIMG_BENCH_DEVICE").as_deref() {
        Ok("cpu") => Device::Cpu,
        Ok("cuda") => Device::Cuda,
        _ => Device::Auto,
    };
    let models: Vec<(PathBuf, bool)> = match std::env::var("GSIMG_BENCH_MODELS") {
        Ok(list) => list.split(',').map(|p| (PathBuf::from(p), false)).collect(),
        Err(_) => [ModelKind::Compact, ModelKind::Upscale]
            .into_iter()
            .map(|k| {
                let real = root.join("models").join(k.file_name());
                if real.is_file() {
                    (real, false)
                } else {
                    let dummy = format!("tests/fixtures/onnx/dummy_{}", k.file_name());
                    (root.join(dummy), true)
                }
            })
            .collect(),
    };
    let image_path = PathBuf::from(kodak::required_env(
        "GSIMG_BENCH_IMAGE",
        "a Kodak PNG (e.g. kodim01.png)",
    ));
    let bytes = std::fs::read(&image_path)
        .unwrap_or_else(|e| panic!("{}: {e} (set GSIMG_BENCH_IMAGE)", image_path.display()));
    let kodak = gsimg::encode::load_image(&bytes, &Limits::default())
        .unwrap()
        .pixels
        .to_layout(ChannelLayout::Rgb);
    let hd = resize(&kodak, 1920, 1080, image::imageops::FilterType::CatmullRom);
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    println!(
        "encoder speed: {} threads of {cpu}; median (min) of {reps} after {warmup} warm-up runs",
        rayon::current_num_threads()
    );
    println!(
        "| model | picture | provider | tiles | Gaussians | encode median (min) | network alone | Gaussians (network + decoding) | colour fit alone | CPU time per encode |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    // The colour fits a compact model runs with: its default, and without the fit
    // (`gsimg encode --no-fit`) when GSIMG_BENCH_NO_FIT=1, or the list in GSIMG_BENCH_FITS.
    let fits: Vec<String> = match std::env::var("GSIMG_BENCH_FITS") {
        Ok(list) => list.split(',').map(|f| f.trim().to_lowercase()).collect(),
        Err(_) if std::env::var("GSIMG_BENCH_NO_FIT").is_ok_and(|v| v == "1") => {
            vec!["default".into(), "none".into()]
        }
        Err(_) => vec!["default".into()],
    };
    let runs_of: Vec<(&PathBuf, bool, &str)> = models
        .iter()
        .flat_map(|(p, d)| fits.iter().map(move |f| (p, *d, f.as_str())))
        .collect();
    for (path, dummy, fit) in runs_of {
        let mut opts = NetworkOptions {
            installed: true,
            model: Some(path.clone()),
            device,
            threads: rayon::current_num_threads(),
            ..NetworkOptions::default()
        };
        let default_fit = opts.color_fit;
        let (fit_label, color_fit) = match fit {
            "default" => ("colour fit".to_string(), default_fit),
            "none" => ("--no-fit".to_string(), None),
            v => {
                let (i, s) = v
                    .split_once('x')
                    .expect("GSIMG_BENCH_FITS: default, none or ITERATIONSxSWEEPS");
                let f = FitOptions {
                    iterations: i.parse().expect("GSIMG_BENCH_FITS: iterations"),
                    sweeps: s.parse().expect("GSIMG_BENCH_FITS: sweeps"),
                    ..default_fit.unwrap_or_default()
                };
                (format!("colour fit {i} × {s} sweeps"), Some(f))
            }
        };
        opts.color_fit = color_fit;
        let enc: NetworkEncoder = opts
            .build()
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let kind = enc.info().kind;
        if fit != fits[0].as_str() && kind != ModelKind::Compact {
            continue; // the colour fit is a compact-model step: an upscale model runs once
        }
        let label = format!(
            "{}{}{}",
            path.file_name().unwrap().to_string_lossy(),
            if dummy { " (DUMMY test model)" } else { "" },
            match kind {
                ModelKind::Compact => format!(", {fit_label}"),
                _ => String::new(),
            }
        );
        for (name, px) in [("Kodak 768×512", &kodak), ("1920×1080", &hd)] {
            if !pictures
                .iter()
                .any(|p| name.to_lowercase().contains(p.as_str()))
            {
                continue;
            }
            let once = || -> (f64, f64, usize, usize) {
                let s = Instant::now();
                let (net, tiles, n) = match kind {
                    ModelKind::Compact => {
                        // The whole `gsimg encode` work: network, Gaussians, file.
                        let e = enc.encode(px).unwrap();
                        (
                            f64::NAN,
                            enc.tiles_for(px.width, px.height).len(),
                            e.image.gaussian_count(),
                        )
                    }
                    ModelKind::Upscale => {
                        let o = enc.gaussians(px).unwrap();
                        (o.network_seconds, o.tiles, o.image.gaussian_count())
                    }
                };
                (s.elapsed().as_secs_f64(), net, tiles, n)
            };
            // (network alone, network + decoding its output into Gaussians)
            let net_only = || -> (f64, f64) {
                let s = Instant::now();
                let n = enc.gaussians(px).unwrap().network_seconds;
                (n, s.elapsed().as_secs_f64())
            };
            for _ in 0..warmup {
                once();
            }
            let cpu0 = cpu_seconds();
            let runs: Vec<(f64, f64, usize, usize)> = (0..reps).map(|_| once()).collect();
            let cpu = (cpu_seconds() - cpu0) / reps as f64;
            let nets: Vec<(f64, f64)> = match kind {
                ModelKind::Compact => (0..reps.min(5)).map(|_| net_only()).collect(),
                ModelKind::Upscale => runs.iter().map(|r| (r.1, r.0)).collect(),
            };
            // The colour fit alone (compact models), on the network's Gaussians as they come.
            let fit_alone = match color_fit {
                Some(f) if kind == ModelKind::Compact => {
                    let gs = enc.gaussians(px).unwrap().image.into_gaussians();
                    let t: Vec<f64> = (0..reps.min(5))
                        .map(|_| {
                            let mut g = gs.clone();
                            let s = Instant::now();
                            fit_colors(px, &mut g, &f);
                            s.elapsed().as_secs_f64()
                        })
                        .collect();
                    format!("{:.0} ms", stats(t).0 * 1e3)
                }
                _ => "—".into(),
            };
            let (med, min) = stats(runs.iter().map(|r| r.0).collect());
            let (net_med, _) = stats(nets.iter().map(|n| n.0).collect());
            let (field_med, _) = stats(nets.iter().map(|n| n.1).collect());
            println!(
                "| {label} | {name} | {} | {} | {} | {:.0} ms ({:.0} ms) | {:.0} ms | {:.0} ms | {fit_alone} | {:.2} s |",
                enc.provider(),
                runs[0].2,
                runs[0].3,
                med * 1e3,
                min * 1e3,
                net_med * 1e3,
                field_med * 1e3,
                cpu
            );
        }
        if kind == ModelKind::Upscale {
            quantization_cost(&enc, &kodak, &label);
        }
    }
}

/// PSNR against the original of upscales rendered from the field directly and from the field
/// written with the fine quantizers and read back.
fn quantization_cost(enc: &NetworkEncoder, hr: &Frame<f32>, label: &str) {
    println!("\nquantization cost of writing the {label} field (fine quantizers), Kodak image:");
    println!("| scale | PSNR field | PSNR file | cost | file bytes |");
    println!("|---|---|---|---|---|");
    let limits = Limits::default();
    for s in [2u32, 3, 4] {
        let (w, h) = (hr.width / s * s, hr.height / s * s);
        let crop = Frame {
            width: w,
            height: h,
            layout: ChannelLayout::Rgb,
            data: (0..h)
                .flat_map(|y| {
                    let row = (y * hr.width * 3) as usize;
                    hr.data[row..row + (w * 3) as usize].to_vec()
                })
                .collect(),
        };
        let lr = resize(&crop, w / s, h / s, image::imageops::FilterType::CatmullRom);
        let field = enc.gaussians(&lr).unwrap().image;
        let file = enc.encode(&lr).unwrap();
        let back = gsimg::format::read(&file.bytes, &limits).unwrap().image;
        let view = Viewport::full(w, h);
        let a: Frame<f32> = render::render_cpu(&field, &view, &limits).unwrap();
        let b: Frame<f32> = render::render_cpu(&back, &view, &limits).unwrap();
        let (pa, pb) = (psnr(&a.data, &crop.data), psnr(&b.data, &crop.data));
        println!(
            "| ×{s} | {pa:.3} dB | {pb:.3} dB | {:.3} dB | {} |",
            pa - pb,
            file.bytes.len()
        );
    }
}
