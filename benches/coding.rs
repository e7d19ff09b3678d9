//! The entropy coders compared on the same stored Gaussians, and the parse speed of each:
//! `cargo bench --bench coding -- NAME=DIR...` (each DIR a folder of `.gsi` files; a bare
//! path is a file of its own set).
//!
//! Each file is decoded and written again with its own quantizers and tiling twice: with
//! version 1.0's zstd-compressed attribute streams (both packings tried, the smaller kept) and
//! with version 1.1's context-modelled rANS coding. Both must decode to exactly the same
//! Gaussians. Printed per file: bits per Gaussian of each, the saving, the median time of
//! `format::read` of each (on the calling thread: files below 2^15 Gaussians are decoded on
//! one thread) and of `format::write` with the 1.1 coding. Per set: the bits per Gaussian per
//! attribute of each coding (1.1: the exact cost of the coded values; 1.0: each stream of
//! every tile compressed alone, an estimate of its share) and the medians over the files.
//!
//! Times are processor time (`CLOCK_THREAD_CPUTIME_ID` for a read, `CLOCK_PROCESS_CPUTIME_ID`
//! for a write, whose tiles may run on several threads: all of them are counted), so that
//! other work on a shared machine inflates them less than it would wall-clock times
//! (elsewhere than Unix: wall-clock time). Run it pinned to one core (`taskset -c 0`).
//! `GSIMG_READ_REPS` (default 200) and `GSIMG_WRITE_REPS` (default 5) set the repetitions;
//! `GSIMG_PROFILE_READ=context` (or `zstd`) only reads the files given, for a profiler.

use gsimg::Limits;
use gsimg::format::{self, Coding, WriteOptions};

#[cfg(unix)]
type Clock = libc::clockid_t;
#[cfg(unix)]
const READ_CLOCK: Clock = libc::CLOCK_THREAD_CPUTIME_ID;
#[cfg(unix)]
const WRITE_CLOCK: Clock = libc::CLOCK_PROCESS_CPUTIME_ID;
#[cfg(not(unix))]
type Clock = u8;
#[cfg(not(unix))]
const READ_CLOCK: Clock = 0;
#[cfg(not(unix))]
const WRITE_CLOCK: Clock = 1;

/// Processor time of `clock` in seconds.
#[cfg(unix)]
fn seconds(clock: Clock) -> f64 {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `t` is a valid, writable timespec.
    let rc = unsafe { libc::clock_gettime(clock, &mut t) };
    assert_eq!(rc, 0, "clock_gettime");
    t.tv_sec as f64 + t.tv_nsec as f64 * 1e-9
}

/// Wall-clock seconds since the first call (no processor-time clock here).
#[cfg(not(unix))]
fn seconds(_: Clock) -> f64 {
    static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    START
        .get_or_init(std::time::Instant::now)
        .elapsed()
        .as_secs_f64()
}

/// Median over `reps` runs of `f`'s time on `clock`, in µs.
fn median_us(reps: usize, clock: Clock, mut f: impl FnMut()) -> f64 {
    let mut t: Vec<f64> = (0..reps.max(1))
        .map(|_| {
            let s = seconds(clock);
            f();
            (seconds(clock) - s) * 1e6
        })
        .collect();
    median(&mut t)
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// The processor's name, as the system gives it.
fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown processor".into())
}

/// Bits per Gaussian per attribute (name, bits) of a file, from `format::analyze`.
fn attributes(bytes: &[u8]) -> Vec<(String, f64)> {
    let a = format::analyze(bytes, &Limits::default(), 19).unwrap();
    a.streams.into_iter().map(|(n, _, b)| (n, b)).collect()
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    if args.is_empty() {
        eprintln!("usage: cargo bench --bench coding -- NAME=DIR... (folders of .gsi files)");
        std::process::exit(2);
    }
    let reps: usize = std::env::var("GSIMG_READ_REPS").map_or(200, |v| v.parse().unwrap());
    let write_reps: usize = std::env::var("GSIMG_WRITE_REPS").map_or(5, |v| v.parse().unwrap());
    let limits = Limits::default();
    if let Ok(coding) = std::env::var("GSIMG_PROFILE_READ") {
        // Only reads, for a profiler: each file written with the coding named (`zstd` or
        // `context`), then read `reps` times.
        let coding = if coding == "zstd" {
            Coding::Zstd
        } else {
            Coding::Context
        };
        for path in &args {
            let file = format::read(&std::fs::read(path).unwrap(), &limits).unwrap();
            let opts = WriteOptions::matching(&file.header, coding);
            let bytes = format::write(&file.image, &opts).unwrap().bytes;
            let t = median_us(reps, READ_CLOCK, || {
                std::hint::black_box(format::read(&bytes, &limits).unwrap());
            });
            println!("{path}: {t:.1} µs");
        }
        return;
    }
    println!("processor: {}", cpu_model());
    let mut summary = Vec::new();
    for arg in &args {
        let (name, path) = arg.split_once('=').unwrap_or((arg.as_str(), arg.as_str()));
        let mut files: Vec<std::path::PathBuf> = match std::fs::read_dir(path) {
            Ok(dir) => dir
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "gsi"))
                .collect(),
            Err(_) => vec![path.into()],
        };
        files.sort();
        println!(
            "\n{name}: {} files\n{:<28} {:>9} {:>8} {:>8} {:>7} {:>9} {:>9} {:>9}",
            files.len(),
            "file",
            "Gaussians",
            "1.0 b/G",
            "1.1 b/G",
            "saving",
            "read 1.0",
            "read 1.1",
            "write 1.1"
        );
        println!(
            "{:<28} {:>9} {:>8} {:>8} {:>7} {:>9} {:>9} {:>9}",
            "", "", "", "", "", "µs", "µs", "ms"
        );
        let (mut n_all, mut z_all, mut c_all) = (0f64, 0f64, 0f64);
        let mut attr_z: Vec<(String, f64)> = Vec::new();
        let mut attr_c: Vec<(String, f64)> = Vec::new();
        let (mut reads_z, mut reads_c, mut writes_c) = (Vec::new(), Vec::new(), Vec::new());
        for path in &files {
            let bytes = std::fs::read(path).unwrap();
            let file = format::read(&bytes, &limits).unwrap();
            let opts_z = WriteOptions::matching(&file.header, Coding::Zstd);
            let opts_c = WriteOptions::matching(&file.header, Coding::Context);
            let z = format::write(&file.image, &opts_z).unwrap();
            let c = format::write(&file.image, &opts_c).unwrap();
            let rz = format::read(&z.bytes, &limits).unwrap();
            let rc = format::read(&c.bytes, &limits).unwrap();
            let name = path.file_name().unwrap().to_string_lossy();
            assert!(
                rz.image == rc.image,
                "{name}: the codings decode differently"
            );
            assert!(
                rc.image == c.image,
                "{name}: 1.1 decodes other than written"
            );
            assert!(
                rc.header.version_minor == 1,
                "{name}: the writer fell back to 1.0"
            );
            let n = file.image.gaussian_count() as f64;
            let (zb, cb) = (
                z.bytes.len() as f64 * 8.0 / n,
                c.bytes.len() as f64 * 8.0 / n,
            );
            let tz = median_us(reps, READ_CLOCK, || {
                std::hint::black_box(format::read(&z.bytes, &limits).unwrap());
            });
            let tc = median_us(reps, READ_CLOCK, || {
                std::hint::black_box(format::read(&c.bytes, &limits).unwrap());
            });
            let wc = median_us(write_reps, WRITE_CLOCK, || {
                std::hint::black_box(format::write(&file.image, &opts_c).unwrap());
            }) / 1e3;
            println!(
                "{name:<28} {n:>9} {zb:>8.2} {cb:>8.2} {:>6.1}% {tz:>9.1} {tc:>9.1} {wc:>9.2}",
                100.0 * (1.0 - cb / zb)
            );
            reads_z.push(tz);
            reads_c.push(tc);
            writes_c.push(wc);
            n_all += n;
            z_all += zb * n;
            c_all += cb * n;
            for (all, b) in [(&mut attr_z, &z.bytes), (&mut attr_c, &c.bytes)] {
                for (i, (a, bits)) in attributes(b).into_iter().enumerate() {
                    if all.len() <= i {
                        all.push((a, 0.0));
                    }
                    all[i].1 += bits * n;
                }
            }
        }
        if files.is_empty() {
            continue;
        }
        let (mz, mc, mw) = (
            median(&mut reads_z),
            median(&mut reads_c),
            median(&mut writes_c),
        );
        println!(
            "{:<28} {n_all:>9} {:>8.2} {:>8.2} {:>6.1}% {mz:>9.1} {mc:>9.1} {mw:>9.2}",
            "all (times: medians)",
            z_all / n_all,
            c_all / n_all,
            100.0 * (1.0 - c_all / z_all)
        );
        println!("\n{name}: bits per Gaussian per attribute   1.0 (alone)    1.1");
        for ((a, bz), (_, bc)) in attr_z.iter().zip(&attr_c) {
            println!("  {a:<36} {:>9.2} {:>9.2}", bz / n_all, bc / n_all);
        }
        summary.push((
            name.to_string(),
            n_all,
            z_all / n_all,
            c_all / n_all,
            mz,
            mc,
            mw,
        ));
    }
    println!(
        "\n{:<12} {:>9} {:>8} {:>8} {:>7} {:>9} {:>9} {:>9}",
        "set", "Gaussians", "1.0 b/G", "1.1 b/G", "saving", "read 1.0", "read 1.1", "write 1.1"
    );
    for (name, n, z, c, mz, mc, mw) in summary {
        println!(
            "{name:<12} {n:>9} {z:>8.2} {c:>8.2} {:>6.1}% {mz:>7.1}µs {mc:>7.1}µs {mw:>7.2}ms",
            100.0 * (1.0 - c / z)
        );
    }
}
