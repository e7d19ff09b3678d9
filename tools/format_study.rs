//! Measures how `.gsi` layout choices change file size, on the pictures given (use training
//! photos, never the evaluation sets): packing (bits or bytes) × prediction (none or previous),
//! and where the bits of the default layout go, per attribute.
//!
//! `cargo run --release --example format_study -- DENSITY IMAGE...`

use anyhow::Result;
use gsimg::Limits;
use gsimg::encode::analytic::{self, AnalyticOptions};
use gsimg::format::{self, Packing, WriteOptions};

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    anyhow::ensure!(args.len() >= 2, "usage: format_study DENSITY IMAGE...");
    let density: f64 = args[0].parse()?;
    let variants = [
        ("bits, no prediction", Packing::Bits, false),
        ("bits, previous", Packing::Bits, true),
        ("bytes, no prediction", Packing::Bytes, false),
        ("bytes, previous", Packing::Bytes, true),
    ];
    let mut totals = vec![0f64; variants.len()];
    let mut gaussians = 0f64;
    let mut streams: Vec<(String, f64, f64)> = Vec::new();
    for path in &args[1..] {
        let px = gsimg::encode::load_image(&std::fs::read(path)?, &Limits::default())?.pixels;
        let enc = analytic::encode(
            &px,
            &AnalyticOptions {
                density,
                ..Default::default()
            },
        )?;
        let h = &enc.header;
        let ranges = {
            let mut r = [(0.0, 0.0); 4];
            for (i, q) in h.channels.iter().enumerate() {
                r[i] = (q.min, q.max);
            }
            r
        };
        for (k, (_, packing, predict)) in variants.iter().enumerate() {
            let opts = WriteOptions {
                packing: Some(*packing),
                predict_values: *predict,
                scale_range: Some((h.scale.min, h.scale.max)),
                channel_ranges: Some(ranges),
                ..WriteOptions::default()
            };
            totals[k] += format::write(&enc.image, &opts)?.bytes.len() as f64 * 8.0;
        }
        gaussians += enc.image.gaussian_count() as f64;
        let a = format::analyze(&enc.bytes, &Limits::default(), 19)?;
        for (i, (name, raw, packed)) in a.streams.iter().enumerate() {
            let n = enc.image.gaussian_count() as f64;
            if streams.len() <= i {
                streams.push((name.clone(), 0.0, 0.0));
            }
            streams[i].1 += raw * n;
            streams[i].2 += packed * n;
        }
    }
    println!(
        "{} pictures, density {density}, {:.0} Gaussians in all",
        args.len() - 1,
        gaussians
    );
    println!("{:<24} {:>14}", "layout", "bits/Gaussian");
    for ((name, _, _), t) in variants.iter().zip(&totals) {
        println!("{name:<24} {:>14.2}", t / gaussians);
    }
    println!("\ndefault layout, per stream (each compressed alone):");
    println!("{:<14} {:>10} {:>10}", "stream", "raw", "zstd");
    for (name, raw, packed) in &streams {
        println!(
            "{name:<14} {:>10.2} {:>10.2}",
            raw / gaussians,
            packed / gaussians
        );
    }
    Ok(())
}
