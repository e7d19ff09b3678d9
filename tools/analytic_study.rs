//! The analytic encoder's refinement: PSNR, size and time for several iteration counts.
//!
//! `cargo run --release --example analytic_study -- IMAGE DENSITY ITERS[,ITERS...]`
//! (use training photos, not the evaluation sets, when choosing defaults).

use std::time::Instant;

use anyhow::Result;
use gsimg::encode::analytic::{self, AnalyticOptions};
use gsimg::encode::optim::refine::RefineOptions;
use gsimg::{Frame, Limits, Viewport, format, render};

fn main() -> Result<()> {
    let a: Vec<String> = std::env::args().skip(1).collect();
    anyhow::ensure!(
        a.len() == 3,
        "usage: analytic_study IMAGE DENSITY ITERS[,ITERS...]"
    );
    let px = gsimg::encode::load_image(&std::fs::read(&a[0])?, &Limits::default())?.pixels;
    let density: f64 = a[1].parse()?;
    let truth = px.to_u8().data;
    println!("{} ({}x{}), density {density}", a[0], px.width, px.height);
    println!("{:>6} {:>9} {:>8} {:>8}", "iters", "bpp", "PSNR", "secs");
    for it in a[2].split(',') {
        let iterations: usize = it.parse()?;
        let t = Instant::now();
        let opts = AnalyticOptions {
            density,
            refine: RefineOptions {
                iterations,
                ..Default::default()
            },
            ..Default::default()
        };
        let enc = analytic::encode(&px, &opts)?;
        let secs = t.elapsed().as_secs_f64();
        let file = format::read(&enc.bytes, &Limits::default())?;
        let f: Frame<u8> = render::render_cpu(
            &file.image,
            &Viewport::full(px.width, px.height),
            &Limits::default(),
        )?;
        let mse = f
            .data
            .iter()
            .zip(&truth)
            .map(|(&x, &y)| (x as f64 - y as f64).powi(2))
            .sum::<f64>()
            / truth.len() as f64;
        let bpp = enc.bytes.len() as f64 * 8.0 / (px.width * px.height) as f64;
        println!(
            "{iterations:>6} {bpp:>9.4} {:>8.2} {secs:>8.2}",
            10.0 * (255.0f64.powi(2) / mse).log10()
        );
    }
    Ok(())
}
