//! CPU renderer throughput: `cargo bench --bench render`.
//!
//! (a) a compact picture of about 10,000 Gaussians at Kodak size (768×512), made by the
//!     analytic encoder from a Kodak image, rendered at 1×, 4× and 1920×1080;
//! (b) a dense picture of 4 Gaussians per native pixel (a 2×2 sub-grid, σ 0.35–0.7 px, colours
//!     from the same image), rendered at 4×.
//! Prints the median of repeated renders (after a warm-up) and output Mpix/s.
//! `GSIMG_BENCH_IMAGE` (required) names the input picture, a Kodak PNG (kodim23 in the tables).

mod kodak;

use std::time::Instant;

use gsimg::encode::analytic::{self, AnalyticOptions};
use gsimg::render::render_cpu;
use gsimg::{ChannelLayout, Frame, Gaussian, Limits, SplatImage, Viewport};

fn median_ms(mut f: impl FnMut(), reps: usize) -> f64 {
    f();
    let mut t: Vec<f64> = (0..reps)
        .map(|_| {
            let s = Instant::now();
            f();
            s.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    t.sort_by(f64::total_cmp);
    t[reps / 2]
}

fn main() {
    let path = kodak::required_env("GSIMG_BENCH_IMAGE", "a Kodak PNG (e.g. kodim23.png)");
    let bytes =
        std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e} (set GSIMG_BENCH_IMAGE)"));
    let px = gsimg::encode::load_image(&bytes, &Limits::default())
        .unwrap()
        .pixels;
    let (w, h) = (px.width, px.height);
    let compact = analytic::encode(
        &px,
        &AnalyticOptions {
            density: 10_000.0 / (w * h) as f64,
            ..Default::default()
        },
    )
    .unwrap()
    .image;
    // Dense: 4 per pixel on a 2×2 sub-grid.
    let mut dense = Vec::with_capacity((w * h * 4) as usize);
    let mut seed = 1u32;
    let mut rnd = || {
        seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        (seed >> 8) as f32 / (1 << 24) as f32
    };
    for y in 0..h {
        for x in 0..w {
            let i = ((y * w + x) * 3) as usize;
            for (dx, dy) in [(0.25, 0.25), (0.75, 0.25), (0.25, 0.75), (0.75, 0.75)] {
                dense.push(Gaussian {
                    x: x as f32 + dx,
                    y: y as f32 + dy,
                    scale: [0.35 + 0.35 * rnd(), 0.35 + 0.35 * rnd()],
                    rotation: 3.2 * rnd(),
                    color: [px.data[i], px.data[i + 1], px.data[i + 2], 0.0],
                });
            }
        }
    }
    let dense = SplatImage::new(w, h, ChannelLayout::Rgb, dense).unwrap();
    let threads = rayon::current_num_threads();
    println!("CPU renderer, {threads} threads, input {path} ({w}x{h})");
    println!(
        "{:<34} {:>10} {:>12} {:>10} {:>10}",
        "case", "Gaussians", "output", "ms", "Mpix/s"
    );
    let limits = Limits::default();
    let cases: [(&str, &SplatImage, u32, u32, usize); 4] = [
        ("compact 1x", &compact, w, h, 30),
        ("compact 4x", &compact, 4 * w, 4 * h, 7),
        ("compact to 1920x1080", &compact, 1920, 1080, 15),
        ("dense (4/px) 4x", &dense, 4 * w, 4 * h, 3),
    ];
    for (name, img, ow, oh, reps) in cases {
        let view = Viewport::full(ow, oh);
        let ms = median_ms(
            || {
                let f: Frame<u8> = render_cpu(img, &view, &limits).unwrap();
                std::hint::black_box(f);
            },
            reps,
        );
        let mpix = (ow as f64 * oh as f64) / 1e6;
        println!(
            "{name:<34} {:>10} {:>12} {ms:>10.2} {:>10.1}",
            img.gaussian_count(),
            format!("{ow}x{oh}"),
            mpix / (ms / 1e3)
        );
    }
}
