//! The entropy coders compared on the same stored Gaussians, and the parse speed of each:
//! `cargo bench --bench coding -- FILE.gsi...`
//!
//! Each file is decoded and written again with its own quantizers and tiling twice: with
//! version 1.0's zstd-compressed attribute streams (both packings tried, the smaller kept) and
//! with version 1.1's context-modelled rANS coding. Both must decode to exactly the same
//! Gaussians. Printed per file and in all: bits per Gaussian of each, the saving, the 1.1
//! coding's bits per attribute, and the median time of `format::read` (one thread) of each.

use std::time::Instant;

use gsimg::Limits;
use gsimg::format::{self, Coding, WriteOptions};

fn median_read_us(bytes: &[u8], reps: usize) -> f64 {
    let mut t: Vec<f64> = (0..reps)
        .map(|_| {
            let s = Instant::now();
            let f = format::read(bytes, &Limits::default()).unwrap();
            std::hint::black_box(&f);
            s.elapsed().as_secs_f64() * 1e6
        })
        .collect();
    t.sort_by(f64::total_cmp);
    t[t.len() / 2]
}

fn main() {
    let files: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    assert!(
        !files.is_empty(),
        "usage: cargo bench --bench coding -- FILE.gsi..."
    );
    let reps: usize = std::env::var("GSIMG_READ_REPS").map_or(200, |v| v.parse().unwrap());
    let limits = Limits::default();
    if std::env::var("GSIMG_PROFILE_READ").is_ok() {
        // Only reads, for a profiler: each file, written with the coding named, `reps` times.
        let coding = match std::env::var("GSIMG_PROFILE_READ").unwrap().as_str() {
            "zstd" => Coding::Zstd,
            _ => Coding::Context,
        };
        for path in &files {
            let file = format::read(&std::fs::read(path).unwrap(), &limits).unwrap();
            let opts = WriteOptions::matching(&file.header, coding);
            let bytes = format::write(&file.image, &opts).unwrap().bytes;
            println!("{path}: {:.1} µs", median_read_us(&bytes, reps));
        }
        return;
    }
    let (mut n_all, mut z_all, mut c_all) = (0f64, 0f64, 0f64);
    let mut attr_all: Vec<(String, f64)> = Vec::new();
    println!(
        "{:<28} {:>9} {:>10} {:>10} {:>8} {:>9} {:>9}",
        "file", "Gaussians", "1.0 b/G", "1.1 b/G", "saving", "1.0 µs", "1.1 µs"
    );
    for path in &files {
        let bytes = std::fs::read(path).unwrap();
        let file = format::read(&bytes, &limits).unwrap();
        let z = format::write(
            &file.image,
            &WriteOptions::matching(&file.header, Coding::Zstd),
        )
        .unwrap();
        let c = format::write(
            &file.image,
            &WriteOptions::matching(&file.header, Coding::Context),
        )
        .unwrap();
        if let Ok(dir) = std::env::var("GSIMG_CODING_SAVE_V10") {
            // Keep the version 1.0 files (for later runs after a format change).
            let name = std::path::Path::new(path).file_name().unwrap();
            std::fs::write(std::path::Path::new(&dir).join(name), &z.bytes).unwrap();
        }
        let rz = format::read(&z.bytes, &limits).unwrap();
        let rc = format::read(&c.bytes, &limits).unwrap();
        assert!(
            rz.image == rc.image,
            "{path}: the two codings decode differently"
        );
        assert!(
            rc.image == c.image,
            "{path}: 1.1 decodes other than written"
        );
        let n = file.image.gaussian_count() as f64;
        let (zb, cb) = (
            z.bytes.len() as f64 * 8.0 / n,
            c.bytes.len() as f64 * 8.0 / n,
        );
        let tz = median_read_us(&z.bytes, reps);
        let tc = median_read_us(&c.bytes, reps);
        let name = std::path::Path::new(path)
            .file_name()
            .unwrap()
            .to_string_lossy();
        println!(
            "{name:<28} {n:>9} {zb:>10.2} {cb:>10.2} {:>7.1}% {tz:>9.1} {tc:>9.1}",
            100.0 * (1.0 - cb / zb)
        );
        n_all += n;
        z_all += zb * n;
        c_all += cb * n;
        let a = format::analyze(&c.bytes, &limits, 19).unwrap();
        for (i, (name, _, bits)) in a.streams.iter().enumerate() {
            if attr_all.len() <= i {
                attr_all.push((name.clone(), 0.0));
            }
            attr_all[i].1 += bits * n;
        }
    }
    println!(
        "{:<28} {n_all:>9} {:>10.2} {:>10.2} {:>7.1}%",
        "all",
        z_all / n_all,
        c_all / n_all,
        100.0 * (1.0 - c_all / z_all)
    );
    println!("\n1.1 coding, bits per Gaussian per attribute (all files):");
    for (name, bits) in &attr_all {
        println!("  {name:<14} {:>6.2}", bits / n_all);
    }
}
