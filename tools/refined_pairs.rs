//! Per picture, the compact network with 40 refinement steps against the analytic encoder with
//! the same number of Gaussians (its density set to the network's count for that picture), both
//! with their default refinement: PSNR (of the float render, clamped to [0, 1]) and bpp of each,
//! to see where the refined network falls behind.
//! `cargo run --release --example refined_pairs FOLDER [MODEL.onnx]` (FOLDER: PNGs, e.g. the
//! Kodak pictures; MODEL default `models/compact.onnx`).

use anyhow::{Context, Result};
use gsimg::encode::analytic::{self, AnalyticOptions};
use gsimg::encode::network::NetworkOptions;
use gsimg::encode::{Device, load_image};
use gsimg::{ChannelLayout, Frame, Limits, SplatImage, Viewport, render};

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let dir = args
        .next()
        .context("usage: refined_pairs FOLDER [MODEL.onnx] (FOLDER: PNGs, e.g. Kodak)")?;
    let model = args.next().unwrap_or_else(|| "models/compact.onnx".into());
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .with_context(|| dir.clone())?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "png"))
        .collect();
    files.sort();
    let mut network = NetworkOptions {
        installed: true,
        model: Some(model.clone().into()),
        device: Device::Cpu,
        ..NetworkOptions::default()
    };
    network.refine.iterations = 40;
    let network = network.build()?;
    let limits = Limits::default();
    println!("| picture | Gaussians | network dB | bpp | analytic dB | bpp | network − analytic |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    let mut sums = [0f64; 4];
    for f in &files {
        let px = load_image(&std::fs::read(f)?, &limits)?
            .pixels
            .to_layout(ChannelLayout::Rgb);
        let pixels = px.width as f64 * px.height as f64;
        let psnr = |img: &SplatImage| -> Result<f64> {
            let fr: Frame<f32> =
                render::render_cpu(img, &Viewport::full(px.width, px.height), &limits)?;
            let se: f64 = fr
                .data
                .iter()
                .zip(&px.data)
                .map(|(a, b)| (a.clamp(0.0, 1.0) as f64 - *b as f64).powi(2))
                .sum();
            Ok(10.0 * (fr.data.len() as f64 / se.max(1e-20)).log10())
        };
        let net = network.encode(&px)?;
        let count = net.image.gaussian_count();
        let ana = analytic::encode(
            &px,
            &AnalyticOptions {
                density: count as f64 / pixels,
                ..Default::default()
            },
        )?;
        let row = [
            psnr(&net.image)?,
            net.bytes.len() as f64 * 8.0 / pixels,
            psnr(&ana.image)?,
            ana.bytes.len() as f64 * 8.0 / pixels,
        ];
        println!(
            "| {} | {count} | {:.2} | {:.4} | {:.2} | {:.4} | {:+.2} |",
            f.file_name().unwrap_or_default().to_string_lossy(),
            row[0],
            row[1],
            row[2],
            row[3],
            row[0] - row[2]
        );
        for (s, v) in sums.iter_mut().zip(row) {
            *s += v;
        }
    }
    let n = files.len().max(1) as f64;
    println!(
        "| mean of {} | | {:.3} | {:.4} | {:.3} | {:.4} | {:+.3} |",
        files.len(),
        sums[0] / n,
        sums[1] / n,
        sums[2] / n,
        sums[3] / n,
        (sums[0] - sums[2]) / n
    );
    Ok(())
}
