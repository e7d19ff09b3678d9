//! GPU correctness check and benchmarks of the CUDA renderer (run by `scripts/gpu-check.sh` on
//! the GPU machine; built here with `cargo build --release --examples`).
//!
//! ```text
//! gpu_check make-data DIR PNG...   compact (analytic, quality 50), quality-100 and dense (4 per
//!                                  pixel, synthetic) .gsi files, plus small random ones
//! gpu_check check DIR              GPU against CPU on every file and view: PASS/FAIL table
//! gpu_check sanitize DIR           a small case for compute-sanitizer
//! gpu_check bench DIR [--out F]    GPU render and end-to-end decode benchmarks, CPU baseline
//! gpu_check compare-png A B        8-bit difference of two pictures (CLI smoke test)
//! gpu_check parse-time FILE        median time of format::read (CPU only)
//! gpu_check cancel [SIDE]          a SIDE² render (default 16384) cancelled from another thread
//! ```
//! Exit status 1 when a check fails.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use gsimg::cuda::{CudaRenderer, GpuImage};
use gsimg::{ChannelLayout, Frame, Gaussian, Limits, Region, SplatImage, Viewport, format};
use gsimg::{Sample, render_cpu};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let r = match args.first().map(String::as_str) {
        Some("make-data") if args.len() >= 3 => make_data(Path::new(&args[1]), &args[2..]),
        Some("check") if args.len() == 2 => check(Path::new(&args[1])),
        Some("sanitize") if args.len() >= 2 => sanitize(
            Path::new(&args[1]),
            args.get(2).is_some_and(|a| a == "small"),
        ),
        Some("bench") if args.len() >= 2 => {
            let out = args
                .iter()
                .position(|a| a == "--out")
                .map(|i| PathBuf::from(&args[i + 1]));
            bench(
                Path::new(&args[1]),
                out,
                args.iter().any(|a| a == "--quick"),
            )
        }
        Some("compare-png") if args.len() == 3 => compare_png(&args[1], &args[2]),
        Some("parse-time") if args.len() == 2 => parse_time(Path::new(&args[1])),
        Some("cancel") if args.len() <= 2 => match args.get(1).map(|a| a.parse::<u32>()) {
            None => cancel(16384),
            Some(Ok(side)) if side >= 64 => cancel(side),
            Some(_) => {
                eprintln!("gpu_check cancel: SIDE is a number of pixels, at least 64");
                std::process::exit(2)
            }
        },
        _ => {
            eprintln!("usage: see the header of tools/gpu_check.rs");
            std::process::exit(2)
        }
    };
    if let Err(e) = r {
        eprintln!("gpu_check: FAIL: {e:#}");
        std::process::exit(1);
    }
}

// ---- Data ---------------------------------------------------------------------------------------

/// SplitMix64.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    }
    fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.next()
    }
}

fn write_gsi(path: &Path, img: &SplatImage) -> Result<()> {
    let enc = format::write(img, &Default::default())?;
    std::fs::write(path, &enc.bytes)?;
    println!(
        "{}: {}x{}, {} Gaussians, {} bytes",
        path.display(),
        img.width(),
        img.height(),
        img.gaussian_count(),
        enc.bytes.len()
    );
    Ok(())
}

fn make_data(dir: &Path, pngs: &[String]) -> Result<()> {
    use gsimg::encode::analytic::{self, AnalyticOptions};
    std::fs::create_dir_all(dir)?;
    let limits = Limits::default();
    for (i, png) in pngs.iter().enumerate() {
        let stem = Path::new(png)
            .file_stem()
            .unwrap()
            .to_string_lossy()
            .to_string();
        let loaded = gsimg::encode::load_image(&std::fs::read(png)?, &limits)?;
        let px = &loaded.pixels;
        let qualities: &[u8] = if i == 0 { &[50, 100] } else { &[50] };
        for &q in qualities {
            let enc = analytic::encode(px, &AnalyticOptions::with_quality(q)?)?;
            let path = dir.join(format!("{stem}.q{q}.gsi"));
            std::fs::write(&path, &enc.bytes)?;
            println!(
                "{}: {} Gaussians, {} bytes",
                path.display(),
                enc.image.gaussian_count(),
                enc.bytes.len()
            );
        }
        if i == 0 {
            // Dense: 4 Gaussians per native pixel, at the quarter-pixel offsets, coloured by
            // the pixel, small random shapes.
            let nc = px.layout.channels();
            let mut rng = Rng(42);
            let mut gs = Vec::with_capacity(px.width as usize * px.height as usize * 4);
            for y in 0..px.height {
                for x in 0..px.width {
                    let p = &px.data[(y as usize * px.width as usize + x as usize) * nc..][..nc];
                    for (ox, oy) in [(0.25, 0.25), (0.75, 0.25), (0.25, 0.75), (0.75, 0.75)] {
                        let mut color = [0f32; 4];
                        for c in 0..nc {
                            color[c] =
                                (p[c] as f64 + rng.range(-0.02, 0.02)).clamp(0.0, 1.0) as f32;
                        }
                        gs.push(Gaussian {
                            x: x as f32 + ox,
                            y: y as f32 + oy,
                            scale: [rng.range(0.3, 0.8) as f32, rng.range(0.3, 0.8) as f32],
                            rotation: rng.range(-std::f64::consts::PI, std::f64::consts::PI) as f32,
                            color,
                        });
                    }
                }
            }
            let img = SplatImage::new(px.width, px.height, px.layout, gs)?;
            write_gsi(&dir.join(format!("{stem}.dense4.gsi")), &img)?;
        }
    }
    // Small random files for the other channel layouts.
    let mut rng = Rng(7);
    for (name, layout, w, h, n) in [
        ("rand_gray", ChannelLayout::Gray, 61, 47, 900),
        ("rand_grayalpha", ChannelLayout::GrayAlpha, 50, 50, 3000),
        ("rand_rgba", ChannelLayout::Rgba, 97, 31, 1500),
    ] {
        let gs = (0..n)
            .map(|_| {
                let mut color = [0f32; 4];
                for c in color.iter_mut().take(layout.channels()) {
                    *c = rng.next() as f32;
                }
                Gaussian {
                    x: rng.range(-2.0, w as f64 + 2.0) as f32,
                    y: rng.range(-2.0, h as f64 + 2.0) as f32,
                    scale: [rng.range(0.2, 6.0) as f32, rng.range(0.2, 6.0) as f32],
                    rotation: rng.range(-4.0, 4.0) as f32,
                    color,
                }
            })
            .collect();
        write_gsi(
            &dir.join(format!("{name}.gsi")),
            &SplatImage::new(w, h, layout, gs)?,
        )?;
    }
    Ok(())
}

fn gsi_files(dir: &Path) -> Result<Vec<(String, PathBuf)>> {
    let mut v: Vec<(String, PathBuf)> = std::fs::read_dir(dir)
        .with_context(|| dir.display().to_string())?
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "gsi"))
        .map(|p| (p.file_stem().unwrap().to_string_lossy().to_string(), p))
        .collect();
    v.sort();
    if v.is_empty() {
        bail!("no .gsi files in {}", dir.display());
    }
    Ok(v)
}

fn load(path: &Path) -> Result<SplatImage> {
    Ok(format::read(&std::fs::read(path)?, &Limits::default())?.image)
}

// ---- Comparison ---------------------------------------------------------------------------------

#[derive(Default)]
struct Diff {
    samples: usize,
    equal: usize,
    within1: usize,
    max_u8: u8,
    max_f32: f32,
}

impl Diff {
    fn pass(&self) -> bool {
        self.max_u8 <= 2
            && self.within1 as f64 >= 0.999 * self.samples as f64
            && self.max_f32 <= 1e-4
    }
}

fn compare(gpu8: &Frame<u8>, gpuf: &Frame<f32>, cpuf: &Frame<f32>) -> Result<Diff> {
    if gpu8.data.len() != cpuf.data.len() || gpuf.data.len() != cpuf.data.len() {
        bail!("frame sizes differ");
    }
    let mut d = Diff {
        samples: cpuf.data.len(),
        ..Default::default()
    };
    for ((g8, gf), cf) in gpu8.data.iter().zip(&gpuf.data).zip(&cpuf.data) {
        let c8 = u8::from_value(*cf);
        let e = g8.abs_diff(c8);
        d.equal += (e == 0) as usize;
        d.within1 += (e <= 1) as usize;
        d.max_u8 = d.max_u8.max(e);
        let ef = (gf - cf).abs();
        d.max_f32 = if ef.is_nan() {
            f32::INFINITY
        } else {
            d.max_f32.max(ef)
        };
    }
    Ok(d)
}

fn views(w: u32, h: u32) -> Result<Vec<(String, Viewport)>> {
    let mut v = Vec::new();
    for s in [1.0, 2.5, 4.0, 8.0, 0.37] {
        v.push((format!("x{s}"), Viewport::scaled(w, h, s)?));
    }
    let ns = Viewport::scaled_xy(w, h, 1.7, 0.6)?;
    v.push((format!("{}x{} (x1.7, x0.6)", ns.width, ns.height), ns));
    let big = Viewport::scaled(w, h, 4.0)?;
    let (rx, ry) = (big.width / 3, big.height * 4 / 5);
    let region = Region {
        x: rx,
        y: ry,
        width: 517.min(big.width - rx),
        height: 301.min(big.height - ry),
    };
    v.push((
        format!(
            "x4 region {},{} {}x{}",
            region.x, region.y, region.width, region.height
        ),
        big.with_region(region),
    ));
    Ok(v)
}

fn check(dir: &Path) -> Result<()> {
    let limits = Limits::default();
    let gpu = CudaRenderer::new()?;
    println!(
        "device: {} ({} SMs)",
        gpu.device_name(),
        gpu.multiprocessors()
    );
    let t = Instant::now();
    gpu.preload()?;
    println!(
        "kernels loaded (PTX JIT) in {:.0} ms",
        t.elapsed().as_secs_f64() * 1e3
    );
    println!(
        "{:<22} {:<28} {:>10} {:>9} {:>9} {:>6} {:>9} {:>8} {:>8}  result",
        "file", "view", "Gaussians", "u8 eq%", "u8 <=1%", "u8 max", "f32 max", "GPU ms", "CPU ms"
    );
    let mut failures = 0;
    let mut rows = 0;
    for (name, path) in gsi_files(dir)? {
        let img = load(&path)?;
        let mut dev = gpu.upload(&img)?;
        for (vname, view) in views(img.width(), img.height())? {
            let t = Instant::now();
            let cpuf: Frame<f32> = render_cpu(&img, &view, &limits)?;
            let cpu_ms = t.elapsed().as_secs_f64() * 1e3;
            let t = Instant::now();
            let gpu8: Frame<u8> = dev.render(&view, &limits)?;
            let gpu_ms = t.elapsed().as_secs_f64() * 1e3;
            let gpuf: Frame<f32> = dev.render(&view, &limits)?;
            let d = compare(&gpu8, &gpuf, &cpuf)?;
            rows += 1;
            if !d.pass() {
                failures += 1;
            }
            println!(
                "{:<22} {:<28} {:>10} {:>9.4} {:>9.4} {:>6} {:>9.2e} {:>8.1} {:>8.1}  {}",
                name,
                vname,
                img.gaussian_count(),
                100.0 * d.equal as f64 / d.samples as f64,
                100.0 * d.within1 as f64 / d.samples as f64,
                d.max_u8,
                d.max_f32,
                gpu_ms,
                cpu_ms,
                if d.pass() { "PASS" } else { "FAIL" }
            );
        }
        // RGBA output and the end-to-end decoder, at the native size.
        let view = Viewport::full(img.width(), img.height());
        let cpu: Frame<u8> = render_cpu(&img, &view, &limits)?;
        let rgba: Frame<u8> = dev.render_rgba(&view, &limits)?;
        let bytes = std::fs::read(&path)?;
        let mut dec = gpu.decoder(limits)?;
        let decoded = dec.decode_rgba8(&bytes, None)?.data.to_vec();
        let nc = cpu.channels();
        let mut worst = 0u8;
        for ((c, r), d) in cpu
            .data
            .chunks_exact(nc)
            .zip(rgba.data.chunks_exact(4))
            .zip(decoded.chunks_exact(4))
        {
            let want: [u8; 4] = match nc {
                1 => [c[0], c[0], c[0], 255],
                2 => [c[0], c[0], c[0], c[1]],
                3 => [c[0], c[1], c[2], 255],
                _ => [c[0], c[1], c[2], c[3]],
            };
            for k in 0..4 {
                worst = worst
                    .max(want[k].abs_diff(r[k]))
                    .max(want[k].abs_diff(d[k]));
            }
        }
        rows += 1;
        let ok = worst <= 2 && decoded.len() == rgba.data.len();
        if !ok {
            failures += 1;
        }
        println!(
            "{:<22} {:<28} {:>10} {:>9} {:>9} {:>6} {:>9} {:>8} {:>8}  {}",
            name,
            "RGBA8 + CudaDecoder x1",
            img.gaussian_count(),
            "",
            "",
            worst,
            "",
            "",
            "",
            if ok { "PASS" } else { "FAIL" }
        );
    }
    println!("check: {rows} cases, {failures} failed");
    if failures > 0 {
        bail!("{failures} of {rows} GPU/CPU comparisons failed");
    }
    println!("check: PASS");
    Ok(())
}

/// A small case that still covers every kernel path: a multi-level scan (over 2048 Gaussians),
/// two radix passes (over 256 tiles), list growth, a region, f32, RGBA and the decoder.
/// `small`: a 100 x 100 output instead of 300 x 300 (49 tiles, one radix pass), for racecheck,
/// which instruments every shared-memory access.
fn sanitize(dir: &Path, small: bool) -> Result<()> {
    let limits = Limits::default();
    let gpu = CudaRenderer::new()?;
    let img = load(&dir.join("rand_grayalpha.gsi"))?;
    let mut dev = gpu.upload(&img)?;
    let scale = if small { 2.0 } else { 6.0 };
    let view = Viewport::scaled(img.width(), img.height(), scale)?;
    let (_, info) = dev.render_with_info::<u8>(&view, &limits, false)?;
    let f: Frame<f32> = dev.render(
        &view.with_region(Region {
            x: 33,
            y: 17,
            width: 150.min(view.width - 33),
            height: 99.min(view.height - 17),
        }),
        &limits,
    )?;
    let _: Frame<u8> = dev.render_rgba(&Viewport::scaled(50, 50, 0.37)?, &limits)?;
    let mut frame = gpu.alloc_frame::<f32>(view.width, view.height, 4)?;
    dev.render_into(&view, &limits, &mut frame)?;
    let compact = std::fs::read(dir.join("kodim23.q50.gsi"))?;
    let mut dec = gpu.decoder(limits)?;
    let quarter = Viewport::scaled(768, 512, 0.25)?;
    let n = dec.decode_rgba8(&compact, Some(quarter))?.data.len();
    println!(
        "sanitize case: {} Gaussians, {} tiles, {} list entries, {} attempts; f32 region {}x{}; decoder {} bytes",
        img.gaussian_count(),
        info.tiles,
        info.tile_entries,
        info.attempts,
        f.width,
        f.height,
        n
    );
    Ok(())
}

/// Median time of `format::read` (parse, entropy decoding, dequantization) of one file.
/// A `side × side` render of 24 large Gaussians (every pixel does work, within the render-work
/// limit) through `GpuImage::render_cancellable`: not cancelled, it must equal the render in one
/// launch; cancelled from another thread after a fifth of the whole render's time, it must
/// return `Error::Cancelled` within three quarters of that time; the next render must be whole.
fn cancel(side: u32) -> Result<()> {
    use std::sync::atomic::{AtomicBool, Ordering};
    let gpu = CudaRenderer::new()?;
    let mut rng = Rng(5);
    let gs = (0..24)
        .map(|_| Gaussian {
            x: rng.range(0.0, 64.0) as f32,
            y: rng.range(0.0, 64.0) as f32,
            scale: [rng.range(3.0, 12.0) as f32, rng.range(3.0, 12.0) as f32],
            rotation: rng.range(0.0, 6.0) as f32,
            color: [rng.next() as f32, rng.next() as f32, rng.next() as f32, 1.0],
        })
        .collect();
    let img = SplatImage::new(64, 64, ChannelLayout::Rgb, gs)?;
    let limits = Limits::default();
    let mut dev = gpu.upload(&img)?;
    let view = Viewport::scaled(64, 64, side as f64 / 64.0)?;
    let flag = AtomicBool::new(false);
    // Warm-up (first launches, allocations), then the whole render timed.
    dev.render::<u8>(&view, &limits)?;
    let t = Instant::now();
    let whole = dev.render::<u8>(&view, &limits)?;
    let t_whole = t.elapsed();
    let t = Instant::now();
    let batched = dev.render_cancellable::<u8>(&view, &limits, &flag)?;
    let t_batched = t.elapsed();
    if batched.data != whole.data {
        bail!("the batched render differs from the render in one launch");
    }
    let (result, took) = std::thread::scope(|s| {
        s.spawn(|| {
            std::thread::sleep(t_whole / 5);
            flag.store(true, Ordering::Relaxed);
        });
        let t = Instant::now();
        let r = dev.render_cancellable::<u8>(&view, &limits, &flag);
        (r, t.elapsed())
    });
    let ms = |d: std::time::Duration| d.as_secs_f64() * 1e3;
    println!(
        "{side}x{side} render (with the download): whole {:.1} ms, in batches {:.1} ms; \
         cancelled after {:.1} ms: returned after {:.1} ms ({})",
        ms(t_whole),
        ms(t_batched),
        ms(t_whole) / 5.0,
        ms(took),
        match &result {
            Err(gsimg::Error::Cancelled) => "cancelled".to_string(),
            Ok(_) => "finished".to_string(),
            Err(e) => e.to_string(),
        }
    );
    match result {
        Err(gsimg::Error::Cancelled) if took < t_whole * 3 / 4 => {}
        Err(gsimg::Error::Cancelled) => bail!("the cancel took {took:?} of {t_whole:?}"),
        Ok(_) => bail!("the render was not cancelled"),
        Err(e) => return Err(e.into()),
    }
    flag.store(false, Ordering::Relaxed);
    if dev.render_cancellable::<u8>(&view, &limits, &flag)?.data != whole.data {
        bail!("the render after a cancel differs");
    }
    println!("PASS");
    Ok(())
}

fn parse_time(path: &Path) -> Result<()> {
    let bytes = std::fs::read(path)?;
    let limits = Limits::default();
    let mut v = Vec::new();
    for _ in 0..200 {
        let t = Instant::now();
        let f = format::read(&bytes, &limits)?;
        v.push(t.elapsed().as_secs_f64() * 1e6);
        std::hint::black_box(f);
    }
    println!(
        "format::read of {}: median {:.0} us",
        path.display(),
        median(&mut v)
    );
    Ok(())
}

fn compare_png(a: &str, b: &str) -> Result<()> {
    let a = image::open(a)?.to_rgba8();
    let b = image::open(b)?.to_rgba8();
    if a.dimensions() != b.dimensions() {
        bail!("sizes differ: {:?} vs {:?}", a.dimensions(), b.dimensions());
    }
    let (mut worst, mut over1, mut equal) = (0u8, 0usize, 0usize);
    for (x, y) in a.as_raw().iter().zip(b.as_raw()) {
        let d = x.abs_diff(*y);
        worst = worst.max(d);
        over1 += (d > 1) as usize;
        equal += (d == 0) as usize;
    }
    let n = a.as_raw().len();
    println!(
        "compare-png: {}x{}, {:.4}% equal, {over1} samples off by more than 1, max {worst}",
        a.width(),
        a.height(),
        100.0 * equal as f64 / n as f64
    );
    if worst > 2 || over1 * 1000 > n {
        bail!("pictures differ beyond the tolerance");
    }
    Ok(())
}

// ---- Benchmarks ---------------------------------------------------------------------------------

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

/// FP32 operations per Gaussian-pixel evaluation inside the cutoff, RGB: dx, dy (2), 2b·dy (1),
/// c·dy·dy (2), q (5), −q/2 (1), expf (4: scale, range reduction, ex2, fix-up), a·e (1),
/// 3 × (w·c + acc) (6), D + w (1).
const FLOP_PER_EVAL_RGB: f64 = 23.0;
/// H100 SXM5 FP32 peak (FMA = 2 FLOP): 132 SMs × 128 lanes × 2 × 1.98 GHz.
const H100_FP32_TFLOPS: f64 = 66.9;

struct RenderRow {
    name: String,
    w: u32,
    h: u32,
    n: usize,
    gpu_ms: f64,
    stages: [f64; 3],
    wall_ms: f64,
    cpu_ms: Option<f64>,
    work: u64,
    entries: u64,
}

fn bench_render(
    gpu: &CudaRenderer,
    name: &str,
    img: &SplatImage,
    w: u32,
    h: u32,
    cpu_reps: usize,
    quick: bool,
) -> Result<RenderRow> {
    let limits = Limits::default();
    let view = Viewport::full(w, h);
    let mut dev: GpuImage = gpu.upload(img)?;
    dev.set_timing(true)?;
    let mut frame = gpu.alloc_frame::<u8>(w, h, 4)?;
    for _ in 0..5 {
        dev.render_into(&view, &limits, &mut frame)?;
    }
    let (mut gms, mut wms, mut st) = (Vec::new(), Vec::new(), [Vec::new(), Vec::new(), Vec::new()]);
    let mut info = None;
    let t0 = Instant::now();
    let (min_reps, max_reps) = if quick { (2, 2) } else { (20, 300) };
    while gms.len() < min_reps || (gms.len() < max_reps && t0.elapsed().as_secs_f64() < 1.5) {
        let t = Instant::now();
        let i = dev.render_into(&view, &limits, &mut frame)?;
        wms.push(t.elapsed().as_secs_f64() * 1e3);
        gms.push(i.gpu_ms.unwrap_or(f32::NAN) as f64);
        let s = i.stage_ms.unwrap_or([f32::NAN; 3]);
        for k in 0..3 {
            st[k].push(s[k] as f64);
        }
        info = Some(i);
    }
    let info = info.unwrap();
    let cpu_ms = if cpu_reps > 0 {
        let mut v = Vec::new();
        for _ in 0..cpu_reps {
            let t = Instant::now();
            let f: Frame<u8> = render_cpu(img, &view, &limits)?;
            v.push(t.elapsed().as_secs_f64() * 1e3);
            drop(f);
        }
        Some(median(&mut v))
    } else {
        None
    };
    Ok(RenderRow {
        name: name.into(),
        w,
        h,
        n: img.gaussian_count(),
        gpu_ms: median(&mut gms),
        stages: [median(&mut st[0]), median(&mut st[1]), median(&mut st[2])],
        wall_ms: median(&mut wms),
        cpu_ms,
        work: info.work,
        entries: info.tile_entries,
    })
}

/// `quick`: tiny sizes and counts, to try the code path (e.g. under scripts/cuda-emu).
fn bench(dir: &Path, out: Option<PathBuf>, quick: bool) -> Result<()> {
    let q = |n: u32| if quick { (n / 16).max(8) } else { n };
    let qn = |n: usize| if quick { (n / 100).max(2) } else { n };
    let mut report = String::new();
    macro_rules! out {
        ($($t:tt)*) => {{ let s = format!($($t)*); println!("{s}"); report.push_str(&s); report.push('\n'); }};
    }
    let gpu = CudaRenderer::new()?;
    let t = Instant::now();
    gpu.preload()?;
    let jit_ms = t.elapsed().as_secs_f64() * 1e3;
    let bw = gpu.measure_copy_bandwidth(if quick { 1 << 20 } else { 1 << 30 }, 20)?;
    let threads = rayon::current_num_threads();
    out!(
        "device: {}, {} SMs; kernels loaded in {jit_ms:.0} ms; device-to-device copy {bw:.0} GB/s (read + write); CPU renderer on {threads} threads",
        gpu.device_name(),
        gpu.multiprocessors()
    );
    let compact_path = dir.join("kodim23.q50.gsi");
    let compact_bytes = std::fs::read(&compact_path)?;
    let compact = load(&compact_path)?;
    let dense = load(&dir.join(if quick {
        "rand_grayalpha.gsi"
    } else {
        "kodim23.dense4.gsi"
    }))?;

    out!("");
    out!(
        "### Rendering (RGBA8 into a device buffer; GPU time from CUDA events, median of >= 20 after 5 warm-ups)"
    );
    out!("");
    out!(
        "| file | output | Gaussians | GPU ms (project / bin / raster) | wall ms | Mpix/s | evals/s (bbox) | tile-evals/s | FP32 % | write BW % | CPU ms |"
    );
    out!("| --- | --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    let rows = [
        bench_render(
            &gpu,
            "compact (kodim23 q50)",
            &compact,
            q(768),
            q(512),
            qn(20),
            quick,
        )?,
        bench_render(
            &gpu,
            "compact (kodim23 q50)",
            &compact,
            q(3840),
            q(2160),
            qn(5),
            quick,
        )?,
        bench_render(
            &gpu,
            "compact (kodim23 q50)",
            &compact,
            q(7680),
            q(4320),
            qn(2),
            quick,
        )?,
        bench_render(
            &gpu,
            "dense (4 per pixel)",
            &dense,
            q(3072),
            q(2048),
            qn(2),
            quick,
        )?,
    ];
    for r in &rows {
        let px = r.w as f64 * r.h as f64;
        let s = r.gpu_ms * 1e-3;
        let raster_s = r.stages[2] * 1e-3;
        let flops = r.work as f64 * FLOP_PER_EVAL_RGB / raster_s;
        let write_bw = px * 4.0 / raster_s / 1e9;
        out!(
            "| {} | {}x{} | {} | {:.3} ({:.3} / {:.3} / {:.3}) | {:.3} | {:.0} | {:.2e} | {:.2e} | {:.1} | {:.2} | {} |",
            r.name,
            r.w,
            r.h,
            r.n,
            r.gpu_ms,
            r.stages[0],
            r.stages[1],
            r.stages[2],
            r.wall_ms,
            px / s / 1e6,
            r.work as f64 / s,
            r.entries as f64 * 256.0 / s,
            100.0 * flops / (H100_FP32_TFLOPS * 1e12),
            100.0 * write_bw / bw,
            r.cpu_ms.map_or("-".into(), |c| format!("{c:.1}"))
        );
    }
    out!("");
    out!(
        "evals (bbox) = Gaussian-pixel pairs inside the Gaussians' clipped 3-sigma boxes; tile-evals = tile-list entries x 256 pixels (what the raster kernel iterates over). FP32 % = evals x {FLOP_PER_EVAL_RGB} FLOP over the raster stage's time against {H100_FP32_TFLOPS} TFLOP/s; write BW % = RGBA8 bytes written over the raster stage's time against the measured copy bandwidth."
    );

    // ---- End to end.
    let limits = Limits::default();
    out!("");
    out!(
        "### End to end: .gsi bytes in host memory -> RGBA8 in host memory, compact kodim23 q50 ({} bytes, {} Gaussians), 768x512",
        compact_bytes.len(),
        compact.gaussian_count()
    );
    out!("");
    let mut parse = Vec::new();
    for _ in 0..qn(300) {
        let t = Instant::now();
        let f = format::read(&compact_bytes, &limits)?;
        parse.push(t.elapsed().as_secs_f64() * 1e6);
        drop(f);
    }
    let parse_us = median(&mut parse);
    // The native size (a smaller one in quick mode).
    let e2e = if quick {
        Some(Viewport::full(48, 32))
    } else {
        None
    };
    let mut dec = gpu.decoder(limits)?;
    for _ in 0..qn(30) {
        dec.decode_rgba8(&compact_bytes, e2e)?;
    }
    let mut lat = Vec::new();
    let t = Instant::now();
    let reps = qn(1000);
    for _ in 0..reps {
        let t1 = Instant::now();
        let f = dec.decode_rgba8(&compact_bytes, e2e)?;
        std::hint::black_box(f.data[f.data.len() / 2]);
        lat.push(t1.elapsed().as_secs_f64() * 1e6);
    }
    let single = reps as f64 / t.elapsed().as_secs_f64();
    let lat_us = median(&mut lat);
    // GPU part alone (already decoded image): upload, render, download.
    let view = e2e.unwrap_or(Viewport::full(768, 512));
    for _ in 0..qn(30) {
        dec.render_rgba8(&compact, &view)?;
    }
    let mut gl = Vec::new();
    for _ in 0..qn(500) {
        let t1 = Instant::now();
        let f = dec.render_rgba8(&compact, &view)?;
        std::hint::black_box(f.data[0]);
        gl.push(t1.elapsed().as_secs_f64() * 1e6);
    }
    let gpu_part_us = median(&mut gl);
    out!("| path | threads | decodes/s | median latency us |");
    out!("| --- | ---: | ---: | ---: |");
    out!(
        "| parse + entropy decode only (CPU, format::read) | 1 | {:.0} | {parse_us:.0} |",
        1e6 / parse_us
    );
    out!(
        "| upload + render + download only (already parsed) | 1 | {:.0} | {gpu_part_us:.0} |",
        1e6 / gpu_part_us
    );
    out!("| full decode (CudaDecoder::decode_rgba8) | 1 | {single:.0} | {lat_us:.0} |");
    let cores = std::thread::available_parallelism().map_or(8, |n| n.get());
    for t in [2, 4, 8, 16, 32] {
        if t > 2 * cores {
            continue;
        }
        if quick && t > 2 {
            continue;
        }
        let per = qn(4000) / t;
        let mut decs: Vec<_> = (0..t)
            .map(|_| gpu.decoder(limits))
            .collect::<gsimg::Result<_>>()?;
        for d in &mut decs {
            for _ in 0..qn(10) {
                d.decode_rgba8(&compact_bytes, e2e)?;
            }
        }
        let start = Instant::now();
        std::thread::scope(|s| -> Result<()> {
            let hs: Vec<_> = decs
                .iter_mut()
                .map(|d| {
                    let b = &compact_bytes;
                    s.spawn(move || -> gsimg::Result<()> {
                        for _ in 0..per {
                            let f = d.decode_rgba8(b, e2e)?;
                            std::hint::black_box(f.data[0]);
                        }
                        Ok(())
                    })
                })
                .collect();
            for h in hs {
                h.join().unwrap()?;
            }
            Ok(())
        })?;
        let rate = (per * t) as f64 / start.elapsed().as_secs_f64();
        out!("| full decode, one CudaDecoder per thread | {t} | {rate:.0} | - |");
    }
    // CPU baseline end to end.
    let mut cl = Vec::new();
    for _ in 0..qn(30) {
        let t1 = Instant::now();
        let f = format::read(&compact_bytes, &limits)?;
        let fr: Frame<u8> = render_cpu(&f.image, &view, &limits)?;
        std::hint::black_box(fr.data[0]);
        cl.push(t1.elapsed().as_secs_f64() * 1e6);
    }
    let cpu_us = median(&mut cl);
    out!(
        "| CPU baseline: format::read + render_cpu (RGB8) | {threads} (rayon) | {:.0} | {cpu_us:.0} |",
        1e6 / cpu_us
    );
    out!("");
    out!("(CPU: {cores} hardware threads on the GPU machine.)");

    if let Some(p) = out {
        std::fs::write(&p, report)?;
    }
    Ok(())
}
