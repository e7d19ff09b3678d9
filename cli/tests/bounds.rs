//! Resource bounds for *valid* files (format-spec.md §6, §8, §9; ROBUSTNESS.md): Gaussian-count
//! bombs, render-work bombs and metadata bombs are refused before the work, and what is
//! accepted decodes within Limits. Peak memory of the command line is measured from the
//! kernel's high-water mark of each child process.

use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use gsimg::format::{self, AttrQuant, ColorModel, Header};
use gsimg::{ChannelLayout, Limits};

/// A picture whose every attribute quantizer has 0 bits: Gaussians take no bytes in the
/// attribute streams, only their cell counts do (§4.2). σ = 2^`log2_scale`.
fn zero_bit_header(w: u32, h: u32, cell: u16, tile_cells: u16, log2_scale: f32) -> Header {
    let channel = AttrQuant {
        min: 0.25,
        max: 0.25,
        ..AttrQuant::fixed(0)
    };
    Header {
        version_minor: 0,
        width: w,
        height: h,
        layout: ChannelLayout::Rgb,
        color_model: ColorModel::Identity,
        cell_size: cell,
        tile_cells,
        gaussian_count: 0,
        position: AttrQuant::fixed(0),
        scale: AttrQuant {
            min: log2_scale,
            max: log2_scale,
            ..AttrQuant::fixed(0)
        },
        rotation: AttrQuant::fixed(0),
        channels: vec![channel; 3],
    }
}

fn push_section(out: &mut Vec<u8>, tag: &[u8; 4], payload: &[u8]) {
    let start = out.len();
    out.extend_from_slice(tag);
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(payload);
    let crc = crc32fast::hash(&out[start..]);
    out.extend_from_slice(&crc.to_le_bytes());
}

fn varint(out: &mut Vec<u8>, mut v: u32) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// A file of `header` whose tile `t` holds `count(t)` Gaussians, all in its first cell. With
/// `pad`, each tile's payload is padded with a skippable frame up to the one bit per Gaussian
/// that §6 requires (what gsimg's writer does); without, the file is as small as zstd makes it.
fn zero_bit_file(
    mut header: Header,
    count: impl Fn(u64) -> u32,
    pad: bool,
    meta: &[u8],
) -> Vec<u8> {
    let (cx, cy) = header.cells();
    let t = header.tile_cells as u64;
    let (tx, ty) = (cx.div_ceil(t), cy.div_ceil(t));
    let mut index = Vec::new();
    let mut tiles = Vec::new();
    for k in 0..tx * ty {
        let (x, y) = (k % tx, k / tx);
        let cells = (t.min(cx - x * t)) * (t.min(cy - y * t));
        let n = count(k);
        let mut raw = Vec::new();
        varint(&mut raw, n);
        raw.resize(raw.len() + cells as usize - 1, 0);
        let mut payload = (k as u32).to_le_bytes().to_vec();
        payload.extend(zstd::bulk::compress(&raw, 19).unwrap());
        let need = (n as usize).div_ceil(8);
        if pad && payload.len() - 4 < need {
            let size = (need - (payload.len() - 4)).saturating_sub(8);
            payload.extend_from_slice(&0x184D_2A50u32.to_le_bytes());
            payload.extend_from_slice(&(size as u32).to_le_bytes());
            payload.resize(payload.len() + size, 0);
        }
        let reach = (3.0 * header.scale.max.exp2() as f64).ceil().min(65535.0) as u16;
        index.extend_from_slice(&n.to_le_bytes());
        index.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        index.extend_from_slice(&(raw.len() as u32).to_le_bytes());
        index.extend_from_slice(&reach.to_le_bytes());
        index.extend_from_slice(&[0, 0]);
        header.gaussian_count += n as u64;
        tiles.push(payload);
    }
    let mut out = vec![0x89, b'G', b'S', b'I', 0x0D, 0x0A, 0x1A, 0x0A];
    push_section(&mut out, b"HEAD", &header.to_bytes());
    if !meta.is_empty() {
        push_section(&mut out, b"meta", meta);
    }
    push_section(&mut out, b"TIDX", &index);
    for p in &tiles {
        push_section(&mut out, b"TILE", p);
    }
    push_section(&mut out, b"GEND", &[]);
    out
}

fn temp_file(name: &str, bytes: &[u8]) -> PathBuf {
    let p = std::env::temp_dir().join(format!("gsimg-bounds-{}-{name}", std::process::id()));
    std::fs::write(&p, bytes).unwrap();
    p
}

/// What one run of the command line used.
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
    /// Peak resident memory of the process, bytes.
    peak_rss: u64,
    /// CPU time of the process (user and system, all threads), seconds: unlike the wall
    /// time, it does not grow when other work shares the machine.
    seconds: f64,
}

/// Runs `gsimg args` and measures its peak resident memory.
///
/// `wait4`'s `ru_maxrss` of a child counts the memory of the process it was spawned from (the
/// kernel keeps the high-water mark of the address space it replaced at `exec`), and this test
/// binary may be large. So a fresh copy of the binary, small, runs [`peak_rss_probe`], which
/// spawns `gsimg` and reports what `wait4` measured for it: the peak of `gsimg`, or of the
/// probe if that was larger (a few MiB: the measurement can only err upwards).
fn gsimg_measured(args: &[&str]) -> Run {
    let t = Instant::now();
    let dir = std::env::temp_dir();
    let tag = format!(
        "{}-{}",
        std::process::id(),
        PROBES.fetch_add(1, Ordering::Relaxed)
    );
    let (out_file, err_file) = (
        dir.join(format!("gsimg-probe-{tag}.out")),
        dir.join(format!("gsimg-probe-{tag}.err")),
    );
    let probe = Command::new(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            "bounds::peak_rss_probe",
            "--nocapture",
        ])
        .args(["--test-threads", "1"])
        .env("GSIMG_PROBE_ARGS", args.join("\u{1f}"))
        .env("GSIMG_PROBE_OUT", &out_file)
        .env("GSIMG_PROBE_ERR", &err_file)
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&probe.stdout).into_owned();
    let field = |name: &str| -> i64 {
        let mut words = report.split_whitespace();
        words
            .find(|w| *w == name)
            .and(words.next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {name} from the probe: {report}"))
    };
    let (code, peak_kib) = (field("probe-exit:"), field("probe-peak-kib:"));
    let cpu_ms = field("probe-cpu-ms:");
    let read = |p: &PathBuf| {
        let s = std::fs::read_to_string(p).unwrap_or_default();
        let _ = std::fs::remove_file(p);
        s
    };
    let run = Run {
        code: (code >= 0).then_some(code as i32),
        stdout: read(&out_file),
        stderr: read(&err_file),
        peak_rss: peak_kib as u64 * 1024,
        seconds: cpu_ms as f64 / 1000.0,
    };
    eprintln!(
        "gsimg {}: exit {:?}, peak RSS {:.1} MiB, CPU {:.3} s ({:.3} s wall with the probe)",
        args.join(" "),
        run.code,
        peak_kib as f64 / 1024.0,
        run.seconds,
        t.elapsed().as_secs_f64()
    );
    run
}

static PROBES: AtomicUsize = AtomicUsize::new(0);

/// Run by [`gsimg_measured`] in a fresh process: runs `gsimg` once and prints its exit code and
/// peak resident memory as `wait4` measures them.
#[test]
#[ignore = "a helper of the other tests, run by them in a process of its own"]
fn peak_rss_probe() {
    let Ok(args) = std::env::var("GSIMG_PROBE_ARGS") else {
        return;
    };
    let file = |var: &str| std::fs::File::create(std::env::var(var).unwrap()).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_gsimg"))
        .args(args.split('\u{1f}'))
        .env("GSIMG_ORT_FETCH", "0")
        .stdout(file("GSIMG_PROBE_OUT"))
        .stderr(file("GSIMG_PROBE_ERR"))
        .spawn()
        .unwrap();
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: rusage is a plain C struct, valid when zeroed; wait4 fills it for `pid`, our own
    // child, which nothing else waits for (`child` is only dropped, never waited on).
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(r, pid, "wait4: {}", std::io::Error::last_os_error());
    drop(child);
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        -1
    };
    println!("probe-exit: {code}");
    println!("probe-peak-kib: {}", usage.ru_maxrss);
    // time_t and suseconds_t are i64 on the 64-bit Linux targets gsimg is tested on.
    let ms = |t: libc::timeval| t.tv_sec * 1000 + t.tv_usec / 1000;
    println!("probe-cpu-ms: {}", ms(usage.ru_utime) + ms(usage.ru_stime));
}

const MIB: u64 = 1 << 20;

/// The memory of the command line doing next to nothing (`info` of the spec's test vector),
/// against which the runs below are measured.
fn baseline_rss() -> u64 {
    let p = temp_file("baseline.gsi", &crate::common::vector_bytes());
    let r = gsimg_measured(&["info", p.to_str().unwrap()]);
    std::fs::remove_file(&p).unwrap();
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    r.peak_rss
}

#[test]
fn gaussian_count_bombs_are_refused_before_any_work() {
    // One tile of 2^26 Gaussians that take no bits: a 150-byte file.
    let one = zero_bit_file(zero_bit_header(16, 16, 16, 1, 0.0), |_| 1 << 26, false, &[]);
    assert!(one.len() < 200, "{}", one.len());
    // 4096 tiles of 2^14 each: the same count in a 150 KB file.
    let many = zero_bit_file(
        zero_bit_header(1024, 1024, 16, 1, 0.0),
        |_| 1 << 14,
        false,
        &[],
    );
    assert!(many.len() < 200_000, "{}", many.len());
    for bytes in [&one, &many] {
        let t = Instant::now();
        let e = format::Decoder::new(&bytes[..], Limits::default()).unwrap_err();
        assert!(e.to_string().contains("Gaussian count"), "{e}");
        assert!(
            t.elapsed() < Duration::from_millis(100),
            "{:?}",
            t.elapsed()
        );
    }
    let base = baseline_rss();
    let p = temp_file("count-bomb.gsi", &many);
    let out = std::env::temp_dir().join(format!("gsimg-bounds-{}-cb.png", std::process::id()));
    let (f, o) = (p.to_str().unwrap(), out.to_str().unwrap());
    for args in [vec!["info", f], vec!["decode", f, o, "--width", "64"]] {
        let r = gsimg_measured(&args);
        assert_eq!(r.code, Some(1), "{args:?}: {}", r.stderr);
        assert!(r.stderr.contains("Gaussian count"), "{}", r.stderr);
        assert!(r.seconds < 1.0, "{args:?}: {} s", r.seconds);
        assert!(
            r.peak_rss < base + 16 * MIB,
            "{args:?}: {} MiB (baseline {} MiB)",
            r.peak_rss / MIB,
            base / MIB
        );
    }
    assert!(!out.exists());
    std::fs::remove_file(&p).unwrap();
}

#[test]
fn the_most_gaussians_a_file_size_allows_decode_in_bounded_memory_and_time() {
    // 512 tiles of 1024 free Gaussians, each tile padded to the one bit per Gaussian that §6
    // asks: 2^19 Gaussians, the most a file of this size (78 KB) may hold.
    let header = zero_bit_header(512, 256, 16, 1, 0.0);
    let bytes = zero_bit_file(header, |_| 1024, true, &[]);
    let n = 1u64 << 19;
    assert!(
        bytes.len() as u64 * format::MAX_GAUSSIANS_PER_BYTE >= n && (bytes.len() as u64) < n / 4,
        "{}",
        bytes.len()
    );
    let file = format::read(&bytes, &Limits::default()).unwrap();
    assert_eq!(file.image.gaussian_count() as u64, n);
    // One byte less in any tile is refused.
    let short = zero_bit_file(zero_bit_header(512, 256, 16, 1, 0.0), |_| 1024, false, &[]);
    let e = format::Decoder::new(&short[..], Limits::default()).unwrap_err();
    assert!(e.to_string().contains("Gaussian count"), "{e}");

    let base = baseline_rss();
    let p = temp_file("most.gsi", &bytes);
    let out = std::env::temp_dir().join(format!("gsimg-bounds-{}-most.png", std::process::id()));
    let (f, o) = (p.to_str().unwrap(), out.to_str().unwrap());
    // `info` reads the header and the tile index only: no memory per Gaussian.
    let r = gsimg_measured(&["info", f]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert!(r.stdout.contains("524288"), "{}", r.stdout);
    assert!(r.seconds < 1.0, "info: {} s", r.seconds);
    assert!(
        r.peak_rss < base + 8 * MIB,
        "info: {} MiB (baseline {} MiB)",
        r.peak_rss / MIB,
        base / MIB
    );
    // A decode holds the Gaussians (36 bytes each) and their projections (72): 54 MiB for 2^19
    // Gaussians, far under Limits' 4 GiB.
    let r = gsimg_measured(&["decode", f, o, "--width", "64", "--device", "cpu"]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert!(r.seconds < 1.0, "decode: {} s", r.seconds);
    assert!(
        r.peak_rss < base + 80 * MIB,
        "decode: {} MiB (baseline {} MiB)",
        r.peak_rss / MIB,
        base / MIB
    );
    std::fs::remove_file(&p).unwrap();
    std::fs::remove_file(&out).unwrap();
}

#[test]
fn the_writer_pads_tiles_that_compress_below_one_bit_per_gaussian() {
    // 20,000 identical Gaussians in one cell compress to a few bytes; the written file must
    // still be valid (§6), so the writer pads the tile.
    let g = gsimg::Gaussian {
        x: 4.0,
        y: 4.0,
        scale: [1.0, 1.0],
        rotation: 0.0,
        color: [0.5, 0.5, 0.5, 0.0],
    };
    let img = gsimg::SplatImage::new(64, 64, ChannelLayout::Rgb, vec![g; 20_000]).unwrap();
    let enc = format::write(&img, &format::WriteOptions::default()).unwrap();
    assert!(enc.bytes.len() * 8 >= 20_000, "{}", enc.bytes.len());
    let back = format::read(&enc.bytes, &Limits::default()).unwrap();
    assert_eq!(back.image.gaussians(), enc.image.gaussians());
}

/// The file of the render-work bomb class: `n` Gaussians of σ = 2^24 (each covers any output
/// whole) on a 4096 × 4096 picture, a few hundred bytes.
fn huge_gaussians_file(n: u32) -> Vec<u8> {
    zero_bit_file(zero_bit_header(4096, 4096, 4096, 1, 24.0), |_| n, true, &[])
}

#[test]
fn render_work_bombs_are_refused_after_projection_not_rendered_for_minutes() {
    // 1000 Gaussians that each cover the whole 4096² output: 1.7e10 evaluations, minutes of
    // CPU; the limit at this size is 2^30 + 64 × 2^24 = 2^31.
    let bytes = huge_gaussians_file(1000);
    assert!(bytes.len() < 400, "{}", bytes.len());
    let file = format::read(&bytes, &Limits::default()).unwrap();
    let t = Instant::now();
    let e = gsimg::render::render_cpu::<u8>(
        &file.image,
        &gsimg::Viewport::full(4096, 4096),
        &Limits::default(),
    )
    .unwrap_err();
    assert!(e.to_string().contains("render work"), "{e}");
    assert!(
        t.elapsed() < Duration::from_millis(200),
        "{:?}",
        t.elapsed()
    );
    // A small region of the same output is cheap and renders.
    let view = gsimg::Viewport::full(4096, 4096).with_region(gsimg::Region {
        x: 1000,
        y: 1000,
        width: 64,
        height: 64,
    });
    let f = gsimg::render::render_cpu::<u8>(&file.image, &view, &Limits::default()).unwrap();
    assert!(f.data.iter().all(|&v| v == 64), "{:?}", &f.data[..3]);

    let p = temp_file("work-bomb.gsi", &bytes);
    let out = std::env::temp_dir().join(format!("gsimg-bounds-{}-wb.png", std::process::id()));
    let (f, o) = (p.to_str().unwrap(), out.to_str().unwrap());
    for args in [
        vec!["info", f],
        vec!["decode", f, o, "--device", "cpu"],
        vec!["decode", f, o, "--width", "16384", "--device", "cpu"],
    ] {
        let r = gsimg_measured(&args);
        assert!(r.seconds < 1.0, "{args:?}: {} s", r.seconds);
        assert!(r.peak_rss < 64 * MIB, "{args:?}: {} MiB", r.peak_rss / MIB);
        if args[0] == "decode" {
            assert_eq!(r.code, Some(1), "{args:?}: {}", r.stderr);
            assert!(r.stderr.contains("render work"), "{}", r.stderr);
        } else {
            assert_eq!(r.code, Some(0), "{}", r.stderr);
        }
    }
    assert!(!out.exists());
    std::fs::remove_file(&p).unwrap();
}

#[test]
fn render_work_counts_rows_and_tiles_not_only_areas() {
    // 1-pixel-wide Gaussians: every row costs a whole group of 8 pixels and a span search,
    // which the count includes: 2^16 of them over 4096 rows cost 4096 × 16 each.
    let g = gsimg::Gaussian {
        x: 100.5,
        y: 2048.0,
        scale: [0.01, 600.0],
        rotation: 0.0,
        color: [1.0, 0.0, 0.0, 0.0],
    };
    let img = gsimg::SplatImage::new(4096, 4096, ChannelLayout::Rgb, vec![g; 1 << 16]).unwrap();
    let limits = Limits {
        max_render_work: 4096 * 12 * (1 << 16),
        max_render_work_per_pixel: 0,
        ..Limits::default()
    };
    // The boxes' area alone (3600 rows × 1 column) is within this limit; rows × 16 is not.
    let e = gsimg::render::render_cpu::<u8>(&img, &gsimg::Viewport::full(4096, 4096), &limits)
        .unwrap_err();
    assert!(e.to_string().contains("render work"), "{e}");
}

#[test]
fn a_render_can_be_cancelled_from_another_thread() {
    use std::sync::atomic::AtomicBool;
    let bytes = huge_gaussians_file(1000);
    let file = format::read(&bytes, &Limits::default()).unwrap();
    let cancel = AtomicBool::new(false);
    let t = Instant::now();
    let result = std::thread::scope(|s| {
        let render = s.spawn(|| {
            gsimg::render::render_cpu_with::<u8>(
                &file.image,
                &gsimg::Viewport::full(2048, 2048),
                &Limits::unlimited(),
                &gsimg::render::RenderOptions {
                    cancel: Some(&cancel),
                },
            )
        });
        std::thread::sleep(Duration::from_millis(50));
        cancel.store(true, Ordering::Relaxed);
        render.join().unwrap()
    });
    // Uncancelled, this render takes tens of seconds.
    assert!(matches!(result, Err(gsimg::Error::Cancelled)), "{result:?}");
    assert!(
        t.elapsed() < Duration::from_millis(500),
        "{:?}",
        t.elapsed()
    );
}

/// The slowest render the default limits accept at 4096 × 4096: as many whole-picture
/// Gaussians as the work limit allows. `cargo test --release -- --ignored slowest_accepted`
/// prints its time (ROBUSTNESS.md).
#[test]
#[ignore = "a measurement: seconds of CPU"]
fn slowest_accepted_render_at_4096() {
    let limits = Limits::default();
    // Each Gaussian: 4096 rows of 4096 pixels and 64 tiles' span searches of 8.
    let per = 4096 * (4096 + 8 * 64);
    let n = (limits.render_work_limit(4096 * 4096) / per) as u32;
    let file = format::read(&huge_gaussians_file(n), &limits).unwrap();
    let t = Instant::now();
    gsimg::render::render_cpu::<u8>(&file.image, &gsimg::Viewport::full(4096, 4096), &limits)
        .unwrap();
    let s = t.elapsed().as_secs_f64();
    eprintln!("{n} Gaussians covering 4096 x 4096: {s:.2} s");
    assert!(s < 10.0);
    let e = format::read(&huge_gaussians_file(n + 1), &limits)
        .map(|f| {
            gsimg::render::render_cpu::<u8>(&f.image, &gsimg::Viewport::full(4096, 4096), &limits)
        })
        .unwrap();
    assert!(e.is_err());
}

/// A `meta` payload (§8) holding one ICC entry: `stated` bytes, compressed in `frame`.
fn icc_meta(stated: u32, frame: &[u8]) -> Vec<u8> {
    let mut m = vec![1u8];
    m.extend_from_slice(&(4 + frame.len() as u32).to_le_bytes());
    m.extend_from_slice(&stated.to_le_bytes());
    m.extend_from_slice(frame);
    m
}

/// Something shaped like an ICC profile of `n` bytes (size field and signature, §8).
fn icc_like(n: usize) -> Vec<u8> {
    let mut p = vec![0u8; n];
    p[..4].copy_from_slice(&(n as u32).to_be_bytes());
    p[36..40].copy_from_slice(b"acsp");
    p
}

#[test]
fn icc_bombs_and_profiles_that_are_not_profiles_are_dropped_with_a_warning() {
    // 64 MiB of zeros compressed into a few KB, stated as such: never decompressed.
    let zeros = {
        let mut e = zstd::stream::Encoder::new(Vec::new(), 1).unwrap();
        let chunk = vec![0u8; 1 << 20];
        for _ in 0..64 {
            std::io::Write::write_all(&mut e, &chunk).unwrap();
        }
        e.finish().unwrap()
    };
    assert!(zeros.len() < 8000, "{}", zeros.len());
    let header = || zero_bit_header(64, 64, 16, 1, 1.0);
    let bomb = zero_bit_file(header(), |_| 1, true, &icc_meta(64 << 20, &zeros));
    // 5000 bytes that decompress as stated but are not a profile.
    let junk = vec![7u8; 5000];
    let not_icc = zero_bit_file(
        header(),
        |_| 1,
        true,
        &icc_meta(5000, &zstd::bulk::compress(&junk, 3).unwrap()),
    );
    let real = icc_like(3000);
    let good = zero_bit_file(
        header(),
        |_| 1,
        true,
        &icc_meta(3000, &zstd::bulk::compress(&real, 3).unwrap()),
    );
    for (bytes, why) in [(&bomb, "over the 4194304"), (&not_icc, "size as 117901063")] {
        let t = Instant::now();
        let d = format::Decoder::new(&bytes[..], Limits::default()).unwrap();
        assert!(
            t.elapsed() < Duration::from_millis(100),
            "{:?}",
            t.elapsed()
        );
        assert_eq!(d.metadata().icc_profile, None);
        assert_eq!(d.dropped_metadata().len(), 1);
        assert!(
            d.dropped_metadata()[0].contains(why),
            "{:?}",
            d.dropped_metadata()
        );
        d.decode_all().unwrap();
    }
    let d = format::Decoder::new(&good[..], Limits::default()).unwrap();
    assert_eq!(d.metadata().icc_profile.as_deref(), Some(&real[..]));
    assert!(d.dropped_metadata().is_empty());

    // The command line warns (the library does not print) and writes a PNG without it.
    let p = temp_file("icc-bomb.gsi", &bomb);
    let out = std::env::temp_dir().join(format!("gsimg-bounds-{}-icc.png", std::process::id()));
    let r = gsimg_measured(&["decode", p.to_str().unwrap(), out.to_str().unwrap()]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert!(
        r.stderr.contains("warning") && r.stderr.contains("ICC profile has 67108864 bytes"),
        "{}",
        r.stderr
    );
    assert!(r.peak_rss < 64 * MIB, "{} MiB", r.peak_rss / MIB);
    let png = std::fs::read(&out).unwrap();
    assert!(!png.windows(4).any(|w| w == b"iCCP"));
    let r = gsimg_measured(&["info", p.to_str().unwrap()]);
    assert!(r.stdout.contains("dropped:"), "{}", r.stdout);
    std::fs::remove_file(&p).unwrap();
    std::fs::remove_file(&out).unwrap();
}

#[test]
fn invalid_icc_profiles_are_neither_written_nor_taken_from_input_pictures() {
    let img = gsimg::SplatImage::new(8, 8, ChannelLayout::Rgb, vec![]).unwrap();
    for (icc, ok) in [
        (icc_like(200), true),
        (vec![3u8; 200], false),
        (icc_like(100), false),
        (icc_like(5 << 20), false),
    ] {
        let mut opts = format::WriteOptions::default();
        opts.metadata.icc_profile = Some(icc);
        assert_eq!(format::write(&img, &opts).is_ok(), ok);
    }
    // A PNG whose iCCP chunk holds no profile: the pixels load, the profile is dropped.
    let mut png = Vec::new();
    let mut enc = image::codecs::png::PngEncoder::new(&mut png);
    image::ImageEncoder::set_icc_profile(&mut enc, vec![1u8; 300]).unwrap();
    image::ImageEncoder::write_image(enc, &[0u8; 12], 2, 2, image::ExtendedColorType::Rgb8)
        .unwrap();
    let loaded = gsimg::encode::load_image(&png, &Limits::default()).unwrap();
    assert_eq!(loaded.icc_profile, None);
    assert!(loaded.icc_dropped.unwrap().contains("size as 16843009"));
}

/// The start of a PNG of `w × h` RGB pixels: a valid header, then a first data chunk that is
/// not (a picture's size is read from its header alone).
fn png_header_only(w: u32, h: u32) -> Vec<u8> {
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut chunk = |tag: &[u8; 4], data: &[u8]| {
        png.extend_from_slice(&(data.len() as u32).to_be_bytes());
        let start = png.len();
        png.extend_from_slice(tag);
        png.extend_from_slice(data);
        let crc = crc32fast::hash(&png[start..]);
        png.extend_from_slice(&crc.to_be_bytes());
    };
    let mut ihdr = w.to_be_bytes().to_vec();
    ihdr.extend_from_slice(&h.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    chunk(b"IHDR", &ihdr);
    chunk(b"IDAT", &[0x78, 0x9c, 0, 0, 0, 0]);
    chunk(b"IEND", &[]);
    png
}

#[test]
fn pictures_too_large_for_the_encoders_memory_are_refused_before_decoding() {
    // 16000 x 16000 is inside the input limits (2^28 pixels) but would take about 21 GiB
    // (analytic) or 12 GiB (network): refused from the header, in milliseconds.
    let p = temp_file("16000.png", &png_header_only(16000, 16000));
    let out = std::env::temp_dir().join(format!("gsimg-bounds-{}-16000.gsi", std::process::id()));
    for method in ["analytic", "network"] {
        let r = gsimg_measured(&[
            "encode",
            p.to_str().unwrap(),
            out.to_str().unwrap(),
            "--method",
            method,
        ]);
        assert_eq!(r.code, Some(1), "{}", r.stderr);
        assert!(
            r.stderr.contains("16000x16000")
                && r.stderr
                    .contains(&format!("the {method} encoder would need"))
                && r.stderr.contains("max_memory_bytes"),
            "{}",
            r.stderr
        );
        assert!(
            r.seconds < 1.0 && r.peak_rss < 64 * MIB,
            "{} MiB",
            r.peak_rss / MIB
        );
        assert!(!out.exists());
    }
    std::fs::remove_file(&p).unwrap();
    // A 24 MP picture is within both encoders' memory: not refused for its size (this header
    // has no pixel data, so the decode fails after the check).
    let p = temp_file("24mp.png", &png_header_only(6000, 4000));
    for method in ["analytic", "network"] {
        let r = gsimg_measured(&[
            "encode",
            p.to_str().unwrap(),
            out.to_str().unwrap(),
            "--method",
            method,
        ]);
        assert_eq!(r.code, Some(1), "{}", r.stderr);
        assert!(!r.stderr.contains("would need"), "{}", r.stderr);
        assert!(!out.exists());
    }
    std::fs::remove_file(&p).unwrap();
}

/// Writes this file's bombs as inputs of the fuzz targets' resource harness
/// (`tests/fuzz_regressions/`, replayed by `fuzz_regressions::fuzz_findings_no_longer_crash`):
/// `cargo test --release -- --ignored write_fuzz_regression_inputs`.
#[test]
#[ignore = "writes files into the source tree"]
fn write_fuzz_regression_inputs() {
    let dir = crate::repo_root().join("tests/fuzz_regressions");
    let count = zero_bit_file(zero_bit_header(16, 16, 16, 1, 0.0), |_| 1 << 26, false, &[]);
    let mut zeros = zstd::stream::Encoder::new(Vec::new(), 19).unwrap();
    for _ in 0..64 {
        std::io::Write::write_all(&mut zeros, &[0u8; 1 << 20]).unwrap();
    }
    let icc = icc_meta(64 << 20, &zeros.finish().unwrap());
    let icc = zero_bit_file(zero_bit_header(64, 64, 16, 1, 1.0), |_| 1, true, &icc);
    let mut work = vec![95u8, 95];
    work.extend(huge_gaussians_file(1000));
    for (target, name, bytes) in [
        ("parse", "count-bomb-2p26-free-gaussians.gsi", &count),
        ("parse", "icc-bomb-64mib-of-zeros.gsi", &icc),
        (
            "parse_and_render",
            "work-bomb-1000-whole-picture.bin",
            &work,
        ),
    ] {
        std::fs::create_dir_all(dir.join(target)).unwrap();
        std::fs::write(dir.join(target).join(name), bytes).unwrap();
    }
}
