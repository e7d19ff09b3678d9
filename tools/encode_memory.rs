//! Peak memory of one encode, for the estimates in `gsimg::encode::memory` (BENCHMARKS.md,
//! "Encoder memory"): encodes PICTURE with the network encoder on ONNX Runtime's CPU provider
//! (or the analytic encoder) **without** the up-front memory check, and prints the picture's
//! size, the Gaussians, the peak resident memory of the process (the kernel's `VmHWM`), the
//! wall time and the estimate `memory::estimate` gives for it.
//!
//! ```sh
//! cargo run --release --example encode_memory -- network PICTURE.png
//! cargo run --release --example encode_memory -- analytic PICTURE.png [QUALITY]
//! ```
//! Run one encode per process (the peak is the process's). ONNX Runtime is found as the
//! command line finds it (`ORT_DYLIB_PATH`, the cache, …). The network's tile windows are those
//! `gsimg encode` uses (as large as the default memory limit allows,
//! `NetworkOptions::memory_limit`); `TILE_PIXELS` sets their largest size instead
//! (`NetworkOptions::max_tile_pixels`, e.g. 2097152).

use std::time::Instant;

use anyhow::{Context, Result, bail};
use gsimg::encode::memory::{EncoderKind, estimate, estimate_network};
use gsimg::encode::network::NetworkOptions;
use gsimg::encode::{Device, load_image};
use gsimg::{AnalyticOptions, Limits};

/// The process's peak resident memory in bytes (`VmHWM` of /proc/self/status).
fn peak_rss() -> Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status").context("/proc/self/status")?;
    let line = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .context("no VmHWM in /proc/self/status")?;
    let kb: u64 = line
        .split_whitespace()
        .nth(1)
        .context("VmHWM line")?
        .parse()?;
    Ok(kb << 10)
}

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: encode_memory network|analytic PICTURE [QUALITY]";
    let method = args.next().context(usage)?;
    let picture = args.next().context(usage)?;
    let quality: u8 = args.next().map_or(Ok(50), |q| q.parse())?;
    // No memory limit: this measures what the limit is checked against.
    let limits = Limits {
        max_memory_bytes: u64::MAX,
        ..Limits::default()
    };
    let bytes = std::fs::read(&picture).with_context(|| picture.clone())?;
    let start = Instant::now();
    let pixels = load_image(&bytes, &limits)?.pixels;
    drop(bytes);
    let (w, h) = (pixels.width, pixels.height);
    let (kind, encoded, network_estimate) = match method.as_str() {
        "network" => {
            let mut opts = NetworkOptions {
                installed: true,
                device: Device::Cpu,
                quality,
                ..NetworkOptions::default()
            };
            // Windows as `gsimg encode` sizes them (the default memory limit), or TILE_PIXELS.
            match std::env::var("TILE_PIXELS")
                .ok()
                .and_then(|v| v.parse().ok())
            {
                Some(t) => opts.max_tile_pixels = t,
                None => opts.memory_limit = Some(Limits::default().max_memory_bytes),
            }
            let encoder = opts.build()?;
            let tiles = encoder.tiles_for(w, h);
            let work: u64 = tiles
                .iter()
                .map(|t| (t.window[2] - t.window[0]) as u64 * (t.window[3] - t.window[1]) as u64)
                .sum();
            let window = encoder.max_window(w, h);
            eprintln!(
                "{} network tiles, windows of at most {window} pixels, {work} window pixels in all",
                tiles.len()
            );
            (
                EncoderKind::Network,
                encoder.encode(&pixels)?,
                Some(estimate_network(w, h, window)),
            )
        }
        "analytic" => {
            let opts = AnalyticOptions::with_quality(quality)?;
            let kind = EncoderKind::Analytic {
                density: opts.density,
            };
            (kind, gsimg::encode_analytic(&pixels, &opts)?, None)
        }
        _ => bail!("{usage}"),
    };
    let wall = start.elapsed().as_secs_f64();
    let peak = peak_rss()?;
    let file = gsimg::read(&encoded.bytes, &limits)?;
    let mib = |b: u64| b as f64 / (1u64 << 20) as f64;
    println!(
        "{method} {w}x{h} ({:.1} MP): {} Gaussians, {} bytes, peak {:.0} MiB ({:.0} B/px), \
         estimate {:.0} MiB, {wall:.1} s",
        w as f64 * h as f64 / 1e6,
        file.image.gaussians().len(),
        encoded.bytes.len(),
        mib(peak),
        peak as f64 / (w as f64 * h as f64),
        mib(network_estimate.unwrap_or_else(|| estimate(kind, w, h, &Limits::default()))),
    );
    Ok(())
}
