//! Times the least-squares colour fit alone (`encode::optim::fit::fit_colors`, the network encoder's
//! default options) on the compact network's Gaussians for a Kodak picture and for it resized to
//! 1920×1080: `cargo run --release --example fit_time MODEL.onnx PICTURE.png`.
//! `RAYON_NUM_THREADS` sets the threads; `REPS` the timed runs (default 10, after one warm-up).

use std::time::Instant;

use anyhow::{Context, Result};
use gsimg::Frame;
use gsimg::encode::network::NetworkOptions;
use gsimg::encode::optim::fit::fit_colors;
use gsimg::encode::{Device, load_image};
use gsimg::{ChannelLayout, Limits};

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let model = args.next().unwrap_or_else(|| "models/compact.onnx".into());
    let picture = args
        .next()
        .context("usage: fit_time MODEL.onnx PICTURE.png (a Kodak picture, e.g. kodim01.png)")?;
    let reps: usize = std::env::var("REPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    let bytes = std::fs::read(&picture).with_context(|| picture.clone())?;
    let kodak = load_image(&bytes, &Limits::default())?
        .pixels
        .to_layout(ChannelLayout::Rgb);
    let img = image::Rgb32FImage::from_raw(kodak.width, kodak.height, kodak.data.clone())
        .context("picture buffer")?;
    let hd = image::imageops::resize(&img, 1920, 1080, image::imageops::FilterType::CatmullRom);
    let hd = Frame {
        width: 1920,
        height: 1080,
        layout: ChannelLayout::Rgb,
        data: hd.into_raw(),
    };
    let opts = NetworkOptions {
        installed: true,
        model: Some(model.clone().into()),
        device: Device::Cpu,
        ..NetworkOptions::default()
    };
    let fit = opts
        .color_fit
        .context("the network encoder has no default colour fit")?;
    let enc = opts.build()?;
    println!(
        "fit_colors alone, {} × {} iterations, {} threads, median (min) of {reps} after 1 warm-up",
        fit.sweeps,
        fit.iterations,
        rayon::current_num_threads()
    );
    for (name, px) in [("Kodak", &kodak), ("1920×1080", &hd)] {
        let gs = enc.gaussians(px)?.image.into_gaussians();
        let mut times: Vec<f64> = (0..=reps)
            .map(|_| {
                let mut g = gs.clone();
                let t = Instant::now();
                fit_colors(px, &mut g, &fit);
                t.elapsed().as_secs_f64() * 1e3
            })
            .skip(1)
            .collect();
        times.sort_by(f64::total_cmp);
        println!(
            "{name}: {} Gaussians, {:.1} ms ({:.1} ms)",
            gs.len(),
            times[times.len() / 2],
            times[0]
        );
    }
    Ok(())
}
