//! Rate control on Kodak: `cargo bench --bench rate`.
//!
//! For every picture and encoder: the `--quality` sweep (bits per pixel from the file size, RGB
//! PSNR of the native render against the original, 8-bit), whether both rise with the quality,
//! and how close `--target-bpp` targets land.
//!
//! Environment: `GSIMG_KODAK` (folder of the Kodak PNGs, required);
//! `GSIMG_RATE_METHODS` (`network,analytic` by default); `GSIMG_RATE_QUALITIES` (default
//! `1,10,25,40,50,70,95,100`); `GSIMG_RATE_TARGETS` (bpp, default `0.2,0.35,0.5`);
//! `GSIMG_RATE_REFINE` (the analytic encoder's refinement iterations, default 40);
//! `GSIMG_RATE_SAVE` (a folder: the quality-50 files are written there).

#[path = "kodak.rs"]
mod kodak;

use gsimg::encode::RateTarget;
use gsimg::encode::analytic::{self, AnalyticOptions};
use gsimg::encode::network::{Device, ModelKind, NetworkOptions};
use gsimg::render::render_cpu;
use gsimg::{Frame, Limits, Viewport, format};

fn psnr(px: &Frame<f32>, enc: &format::Encoded) -> f64 {
    let img = &enc.image;
    let f: Frame<u8> = render_cpu(
        img,
        &Viewport::full(img.width(), img.height()),
        &Limits::default(),
    )
    .unwrap();
    let orig: Vec<u8> = px
        .data
        .iter()
        .map(|v| (v.clamp(0.0, 1.0) * 255.0 + 0.5) as u8)
        .collect();
    let mse = f
        .data
        .iter()
        .zip(&orig)
        .map(|(&a, &b)| (a as f64 - b as f64).powi(2))
        .sum::<f64>()
        / orig.len() as f64;
    10.0 * (255.0f64 * 255.0 / mse.max(1e-12)).log10()
}

fn list(var: &str, default: &str) -> Vec<String> {
    std::env::var(var)
        .unwrap_or_else(|_| default.into())
        .split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|s| s.trim().to_string())
        .collect()
}

fn main() {
    let files = kodak::kodak_files();
    let qualities: Vec<u8> = list("GSIMG_RATE_QUALITIES", "1,10,25,40,50,70,95,100")
        .iter()
        .map(|q| q.parse().unwrap())
        .collect();
    let targets: Vec<f64> = list("GSIMG_RATE_TARGETS", "0.2,0.35,0.5")
        .iter()
        .map(|q| q.parse().unwrap())
        .collect();
    let refine: usize = std::env::var("GSIMG_RATE_REFINE").map_or(40, |v| v.parse().unwrap());
    let save = std::env::var("GSIMG_RATE_SAVE").ok();
    for method in list("GSIMG_RATE_METHODS", "network,analytic") {
        let net = (method == "network").then(|| NetworkOptions {
            installed: true,
            kind: ModelKind::Compact,
            device: Device::Cpu,
            ..NetworkOptions::default()
        });
        println!("\n{method}: quality sweep (bpp / PSNR dB), then targets (bpp reached)");
        let mut sum = vec![(0f64, 0f64); qualities.len()];
        let mut monotone = 0;
        let mut worst_target = 0f64;
        for path in &files {
            let px = gsimg::encode::load_image(&std::fs::read(path).unwrap(), &Limits::default())
                .unwrap()
                .pixels;
            let n = px.width as f64 * px.height as f64;
            let name = path.file_stem().unwrap().to_string_lossy().to_string();
            let mut row = Vec::new();
            for &q in &qualities {
                let enc = match &net {
                    Some(o) => {
                        let o = NetworkOptions {
                            quality: q,
                            ..o.clone()
                        };
                        let e = o.build().unwrap();
                        e.encode(&px).unwrap()
                    }
                    None => {
                        let mut o = AnalyticOptions::with_quality(q).unwrap();
                        o.refine.iterations = refine;
                        analytic::encode(&px, &o).unwrap()
                    }
                };
                if q == 50
                    && let Some(d) = &save
                {
                    std::fs::write(format!("{d}/{name}-{method}.gsi"), &enc.bytes).unwrap();
                }
                row.push((enc.bytes.len() as f64 * 8.0 / n, psnr(&px, &enc)));
            }
            let mono = row.windows(2).all(|w| w[1].0 > w[0].0 && w[1].1 > w[0].1);
            monotone += mono as usize;
            let mut line = format!("{name:<8}");
            for (k, (b, p)) in row.iter().enumerate() {
                sum[k].0 += b;
                sum[k].1 += p;
                line += &format!(" {b:.3}/{p:.2}");
            }
            line += if mono { "  monotone" } else { "  NOT monotone" };
            line += " |";
            for &t in &targets {
                let r = match &net {
                    Some(o) => {
                        let e = o.clone().build().unwrap();
                        e.encode_to_rate(&px, &e.write_options(px.layout), RateTarget::Bpp(t))
                            .unwrap()
                    }
                    None => {
                        let mut o = AnalyticOptions::with_quality(50).unwrap();
                        o.refine.iterations = refine;
                        analytic::encode_to_rate(&px, &o, RateTarget::Bpp(t)).unwrap()
                    }
                };
                let got = r.encoded.bytes.len() as f64 * 8.0 / n;
                if r.on_target {
                    worst_target = worst_target.max((got / t - 1.0).abs());
                }
                line += &format!(" {got:.3}{}", if r.on_target { "" } else { "*" });
            }
            println!("{line}");
        }
        let m = files.len() as f64;
        let mut line = format!("{:<8}", "mean");
        for (b, p) in &sum {
            line += &format!(" {:.3}/{:.2}", b / m, p / m);
        }
        println!("{line}");
        println!(
            "qualities {qualities:?}; monotone on {monotone} of {} pictures; targets met within \
             {:.1} % (* = out of the encoder's reach)",
            files.len(),
            worst_target * 100.0
        );
    }
}
