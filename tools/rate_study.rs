//! Where the network encoder's bits pay best: rate and PSNR of the refined (or feed-forward)
//! network encoder at chosen Gaussian counts and precisions, means over pictures.
//!
//! ```text
//! rate_study PNG... --model M [--refine N] [--rounds R] [--qat Q] [--quality Q]
//!            [--threshold T] --points F:P,F:P,...
//! ```
//! F: the Gaussian count as a multiple of the network's (`NetworkEncoder::encode_at`); P: bits
//! added to (or, negative, removed from) every attribute's precision of the encoder's write
//! options at the quality (`--quality`, default 50, which also sets the presence threshold
//! unless `--threshold` does). Prints, per point, the mean bpp, the mean 8-bit RGB PSNR of
//! the native render and the mean seconds of the encode (the network's run included), then
//! each picture's numbers. Measure on held-out or training pictures, never on the evaluation
//! sets.

use std::time::Instant;

use anyhow::{Context, Result, bail};
use gsimg::Limits;
use gsimg::encode::NetworkOptions;
use gsimg::encode::optim::refine::RefineOptions;

#[path = "psnr8.rs"]
mod psnr8;
use psnr8::psnr8;

fn main() {
    if let Err(e) = run() {
        eprintln!("rate_study: {e:#}");
        std::process::exit(2);
    }
}

fn run() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let value = |name: &str| -> Option<&String> {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
    };
    let number = |name: &str, default: usize| -> Result<usize> {
        value(name).map_or(Ok(default), |v| v.parse().with_context(|| name.to_string()))
    };
    let pngs: Vec<&String> = args.iter().take_while(|a| !a.starts_with("--")).collect();
    let model = value("--model").context("--model M is required")?;
    let points: Vec<(f64, i8)> = value("--points")
        .context("--points F:P,... is required")?
        .split(',')
        .map(|p| {
            let (f, b) = p.split_once(':').context("a point is F:P")?;
            Ok((f.parse()?, b.parse()?))
        })
        .collect::<Result<_>>()?;
    if pngs.is_empty() || points.is_empty() {
        bail!("usage: rate_study PNG... --model M [--refine N] --points F:P,...");
    }
    let refine = RefineOptions {
        iterations: number("--refine", 0)?,
        rounds: number("--rounds", 4)?,
        reallocate: 0.1,
        quantized_steps: number("--qat", 0)?,
        ..RefineOptions::default()
    };
    let mut options = NetworkOptions {
        model: Some(model.into()),
        installed: true,
        refine,
        quality: number("--quality", 50)?.min(255) as u8,
        ..NetworkOptions::default()
    };
    if let Some(t) = value("--threshold") {
        options.presence_threshold = Some(t.parse().context("--threshold")?);
    }
    let encoder = options.build()?;
    let mut table = vec![Vec::new(); points.len()];
    for path in &pngs {
        let bytes = std::fs::read(path).with_context(|| path.to_string())?;
        let px = gsimg::encode::load_image(&bytes, &Limits::default())?.pixels;
        for (row, &(factor, delta)) in table.iter_mut().zip(&points) {
            let mut wo = encoder.write_options(px.layout);
            for b in [
                &mut wo.position_bits,
                &mut wo.scale_bits,
                &mut wo.rotation_bits,
                &mut wo.luma_bits,
                &mut wo.chroma_bits,
            ] {
                *b = (*b as i16 + delta as i16).clamp(1, 16) as u8;
            }
            let t = Instant::now();
            let e = encoder.encode_at(&px, &wo, factor)?;
            let s = t.elapsed().as_secs_f64();
            let bpp = e.bytes.len() as f64 * 8.0 / (px.width as f64 * px.height as f64);
            row.push((bpp, psnr8(&px, &e.image)?, s, e.image.gaussian_count()));
        }
    }
    println!("factor:bits | mean bpp | mean PSNR | mean s | per picture (bpp/PSNR/Gaussians)");
    for (row, (f, d)) in table.iter().zip(&points) {
        let n = row.len() as f64;
        let mean = |k: fn(&(f64, f64, f64, usize)) -> f64| row.iter().map(k).sum::<f64>() / n;
        let each: Vec<String> = row
            .iter()
            .map(|r| format!("{:.3}/{:.2}/{}", r.0, r.1, r.3))
            .collect();
        println!(
            "{f}:{d:+} | {:.4} | {:.3} | {:.2} | {}",
            mean(|r| r.0),
            mean(|r| r.1),
            mean(|r| r.2),
            each.join(" ")
        );
    }
    Ok(())
}
