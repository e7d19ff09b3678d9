//! Renders a `.gsi` file repeatedly without writing anything: a profiling and timing helper.
//!
//! `cargo run --release --example render_file -- FILE.gsi WIDTH HEIGHT [REPEATS]`

use std::time::Instant;

use anyhow::{Context, Result};
use gsimg::{Frame, Limits, Viewport, format, render};

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    anyhow::ensure!(
        args.len() >= 4,
        "usage: render_file FILE.gsi WIDTH HEIGHT [REPEATS]"
    );
    let bytes = std::fs::read(&args[1]).with_context(|| args[1].clone())?;
    let file = format::read(&bytes, &Limits::default())?;
    let (w, h): (u32, u32) = (args[2].parse()?, args[3].parse()?);
    let reps: usize = args.get(4).map_or(Ok(1), |s| s.parse())?;
    let view = Viewport::full(w, h);
    let mut times = Vec::new();
    for _ in 0..reps {
        let t = Instant::now();
        let f: Frame<u8> = render::render_cpu(&file.image, &view, &Limits::default())?;
        times.push(t.elapsed().as_secs_f64() * 1e3);
        std::hint::black_box(f);
    }
    times.sort_by(f64::total_cmp);
    println!(
        "{} Gaussians -> {w}x{h}: median {:.2} ms of {reps}",
        file.image.gaussian_count(),
        times[reps / 2]
    );
    Ok(())
}
