//! The `gsimg` command line, as a user runs it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use crate::common::synthetic_pixels;
use gsimg::ChannelLayout;

pub(crate) fn gsimg(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_gsimg"))
        .args(args)
        .output()
        .unwrap()
}

pub(crate) struct TempDir(pub(crate) PathBuf);

impl TempDir {
    pub(crate) fn new(name: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!("gsimg-cli-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }

    pub(crate) fn path(&self, f: &str) -> String {
        self.0.join(f).to_string_lossy().into_owned()
    }

    pub(crate) fn files(&self) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(&self.0)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub(crate) fn write_png(path: &str, w: u32, h: u32, layout: ChannelLayout) {
    let px = synthetic_pixels(w, h, layout);
    let bytes = px.to_u8().data;
    let color = match layout {
        ChannelLayout::Gray => image::ExtendedColorType::L8,
        ChannelLayout::GrayAlpha => image::ExtendedColorType::La8,
        ChannelLayout::Rgb => image::ExtendedColorType::Rgb8,
        ChannelLayout::Rgba => image::ExtendedColorType::Rgba8,
    };
    image::save_buffer(path, &bytes, w, h, color).unwrap();
}

pub(crate) fn dims(path: &str) -> (u32, u32) {
    image::image_dimensions(Path::new(path)).unwrap()
}

pub(crate) fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn encode_info_and_decode_at_sizes_and_regions() {
    let t = TempDir::new("sizes");
    let (input, gsi) = (t.path("in.png"), t.path("in.gsi"));
    write_png(&input, 120, 80, ChannelLayout::Rgb);
    let o = gsimg(&[
        "encode",
        &input,
        &gsi,
        "--method",
        "analytic",
        "--quality",
        "60",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = gsimg(&["info", &gsi]);
    let info = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success() && info.contains("120 x 80") && info.contains("bits per Gaussian"),
        "{info}"
    );
    for (args, want) in [
        (vec![], (120, 80)),
        (vec!["--scale", "2.5"], (300, 200)),
        (vec!["--scale", "0.5"], (60, 40)),
        (vec!["--width", "1000"], (1000, 667)),
        (vec!["--height", "33"], (50, 33)),
        (vec!["--width", "77", "--height", "300"], (77, 300)),
        (vec!["--scale", "4", "--region", "100,50,64,32"], (64, 32)),
    ] {
        for ext in ["png", "jpg", "webp"] {
            let out = t.path(&format!("out.{ext}"));
            let mut a = vec!["decode", &gsi, &out];
            a.extend(&args);
            let o = gsimg(&a);
            assert!(o.status.success(), "{args:?} {ext}: {}", stderr(&o));
            assert_eq!(dims(&out), want, "{args:?} {ext}");
        }
    }
}

#[test]
fn stdin_and_stdout_work_and_gray_and_alpha_pictures_keep_their_channels() {
    let t = TempDir::new("pipes");
    for (layout, want) in [
        (ChannelLayout::Gray, image::ColorType::L8),
        (ChannelLayout::Rgba, image::ColorType::Rgba8),
    ] {
        let input = t.path("in.png");
        write_png(&input, 64, 48, layout);
        let enc = Command::new(env!("CARGO_BIN_EXE_gsimg"))
            .args(["encode", "-", "-"])
            .stdin(std::fs::File::open(&input).unwrap())
            .stdout(Stdio::piped())
            .output()
            .unwrap();
        assert!(enc.status.success(), "{}", stderr(&enc));
        let gsi = t.path("piped.gsi");
        std::fs::write(&gsi, &enc.stdout).unwrap();
        let dec = gsimg(&["decode", &gsi, "-", "--scale", "2"]);
        assert!(dec.status.success(), "{}", stderr(&dec));
        let img = image::load_from_memory(&dec.stdout).unwrap();
        assert_eq!((img.width(), img.height(), img.color()), (128, 96, want));
    }
}

#[test]
fn errors_are_one_line_with_conventional_exit_codes_and_leave_no_output() {
    let t = TempDir::new("errors");
    let not_gsi = t.path("bad.gsi");
    std::fs::write(&not_gsi, b"this is not a gsi file").unwrap();
    let out = t.path("out.png");
    let cases: Vec<(Vec<String>, i32, &str)> = vec![
        (
            vec!["decode".into(), not_gsi.clone(), out.clone()],
            1,
            "not a .gsi file",
        ),
        (
            vec!["decode".into(), t.path("missing.gsi"), out.clone()],
            1,
            "cannot read",
        ),
        (
            vec!["encode".into(), not_gsi.clone(), t.path("x.gsi")],
            1,
            "unrecognized image format",
        ),
        (
            vec!["decode".into(), not_gsi.clone(), t.path("out.bmpx")],
            1,
            "unsupported output format",
        ),
        (
            vec![
                "decode".into(),
                not_gsi.clone(),
                out.clone(),
                "--region".into(),
                "1,2,3".into(),
            ],
            2,
            "X,Y,W,H",
        ),
        (
            vec![
                "decode".into(),
                not_gsi.clone(),
                out.clone(),
                "--scale".into(),
                "2".into(),
                "--width".into(),
                "5".into(),
            ],
            2,
            "cannot be used with",
        ),
        (vec!["frobnicate".into()], 2, "unrecognized subcommand"),
    ];
    for (args, code, msg) in cases {
        let o = gsimg(&args.iter().map(String::as_str).collect::<Vec<_>>());
        let e = stderr(&o);
        assert_eq!(o.status.code(), Some(code), "{args:?}: {e}");
        assert!(e.contains(msg), "{args:?}: {e}");
        if code == 1 {
            assert_eq!(e.trim_end().lines().count(), 1, "{args:?}: {e}");
            assert!(e.starts_with("gsimg: error: "), "{e}");
        }
    }
    // Nothing written but the input: no output, no temporary files.
    assert_eq!(t.files(), vec!["bad.gsi".to_string()]);

    // A region outside the output, or an absurd size: refused with a reason.
    let input = t.path("in.png");
    write_png(&input, 40, 30, ChannelLayout::Rgb);
    let gsi = t.path("in.gsi");
    assert!(gsimg(&["encode", &input, &gsi]).status.success());
    let o = gsimg(&["decode", &gsi, &out, "--region", "30,0,20,10"]);
    assert!(stderr(&o).contains("reaches outside"), "{}", stderr(&o));
    let o = gsimg(&[
        "decode", &gsi, &out, "--width", "200000", "--height", "200000",
    ]);
    assert!(stderr(&o).contains("output pixel count"), "{}", stderr(&o));
    assert!(!Path::new(&out).exists());
}

#[test]
fn outputs_appear_whole_or_not_at_all_even_when_killed() {
    let t = TempDir::new("kill");
    let (input, gsi) = (t.path("in.png"), t.path("in.gsi"));
    write_png(&input, 160, 120, ChannelLayout::Rgb);
    assert!(
        gsimg(&[
            "encode", &input, &gsi, "--method", "analytic", "--refine", "0"
        ])
        .status
        .success()
    );
    let out = t.path("big.png");
    // Watch the output path while a large render (4800x3600) is written: a writer that wrote in
    // place would show the file growing; an atomic one shows nothing, then the whole file.
    let watch = |kill_after: Option<u64>| -> (Vec<u64>, bool) {
        let _ = std::fs::remove_file(&out);
        let mut child = Command::new(env!("CARGO_BIN_EXE_gsimg"))
            .args(["decode", &gsi, &out, "--scale", "30", "--device", "cpu"])
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let start = std::time::Instant::now();
        let mut seen = Vec::new();
        loop {
            if let Ok(m) = std::fs::metadata(&out) {
                seen.push(m.len());
            }
            if child.try_wait().unwrap().is_some() {
                break;
            }
            if kill_after.is_some_and(|ms| start.elapsed().as_millis() as u64 >= ms) {
                let _ = child.kill();
                let _ = child.wait();
                break;
            }
            std::thread::sleep(std::time::Duration::from_micros(100));
        }
        (seen, Path::new(&out).exists())
    };
    let (seen, exists) = watch(None);
    assert!(exists);
    let full = std::fs::metadata(&out).unwrap().len();
    assert!(
        seen.iter().all(|&n| n == full),
        "the output was seen partly written: {:?} of {full}",
        seen
    );
    let img = image::open(&out).unwrap();
    assert_eq!((img.width(), img.height()), (4800, 3600));
    for ms in [5u64, 60, 200] {
        let (seen, exists) = watch(Some(ms));
        assert!(
            seen.iter().all(|&n| n == full),
            "killed after {ms} ms: partial output seen {:?}",
            seen
        );
        if exists {
            assert_eq!(std::fs::metadata(&out).unwrap().len(), full);
        }
    }
}

#[test]
fn a_reader_that_goes_away_is_not_a_crash() {
    // `gsimg decode x.gsi - | head -c 10`, `gsimg info x.gsi | head -1`: stdout closes early.
    let t = TempDir::new("pipe");
    let (input, gsi) = (t.path("in.png"), t.path("in.gsi"));
    write_png(&input, 64, 48, ChannelLayout::Rgb);
    let enc = gsimg(&[
        "encode", &input, &gsi, "--method", "analytic", "--refine", "0",
    ]);
    assert!(enc.status.success(), "{}", stderr(&enc));
    // A 3200x2400 PNG is far larger than a pipe's buffer: the write fails whatever the timing.
    for args in [
        vec!["decode", &gsi, "-", "--scale", "50", "--device", "cpu"],
        vec!["info", &gsi],
    ] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_gsimg"))
            .args(&args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take()); // the reader is gone before gsimg writes
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert!(out.status.success(), "{args:?}: {:?} {err}", out.status);
    }
}

#[test]
fn effort_max_refines_further_than_fast() {
    // The analytic encoder at --effort fast (no refinement) and max (to convergence, on the CPU
    // here): max gives a better picture; both decode.
    let t = TempDir::new("effort");
    let input = t.path("in.png");
    write_png(&input, 64, 48, ChannelLayout::Rgb);
    let original = image::open(&input).unwrap().to_rgb8();
    let mut psnr = Vec::new();
    for effort in ["fast", "max"] {
        let (gsi, png) = (
            t.path(&format!("{effort}.gsi")),
            t.path(&format!("{effort}.png")),
        );
        let out = gsimg(&[
            "encode", &input, &gsi, "--method", "analytic", "--effort", effort, "--device", "cpu",
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(gsimg(&["decode", &gsi, &png]).status.success());
        let decoded = image::open(&png).unwrap().to_rgb8();
        let se: f64 = original
            .as_raw()
            .iter()
            .zip(decoded.as_raw())
            .map(|(a, b)| (*a as f64 - *b as f64).powi(2))
            .sum();
        psnr.push(10.0 * (255.0f64.powi(2) / (se / original.as_raw().len() as f64)).log10());
    }
    assert!(
        psnr[1] > psnr[0] + 1.0,
        "fast {:.2} dB, max {:.2} dB",
        psnr[0],
        psnr[1]
    );
}

/// `--target-size` never writes more than asked; `--target-bpp` lands within 3 %; both with
/// `--density` are a command-line error.
#[test]
fn rate_targets_from_the_command_line() {
    let t = TempDir::new("rate");
    let (input, gsi) = (t.path("in.png"), t.path("in.gsi"));
    write_png(&input, 160, 120, ChannelLayout::Rgb);
    let base = [
        "encode", &input, &gsi, "--method", "analytic", "--refine", "0",
    ];
    let o = gsimg(&[&base[..], &["--target-size", "2500"]].concat());
    assert!(o.status.success(), "{}", stderr(&o));
    let n = std::fs::metadata(&gsi).unwrap().len();
    assert!((2425..=2500).contains(&n), "{n} bytes for a cap of 2500");
    let o = gsimg(&[&base[..], &["--target-bpp", "1.5"]].concat());
    assert!(o.status.success(), "{}", stderr(&o));
    let bpp = std::fs::metadata(&gsi).unwrap().len() as f64 * 8.0 / (160.0 * 120.0);
    assert!((bpp / 1.5 - 1.0).abs() <= 0.03, "{bpp} bpp for 1.5");
    let o = gsimg(&[&base[..], &["--target-bpp", "1", "--density", "0.1"]].concat());
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let o = gsimg(&["info", &gsi, "--streams"]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("coded bits/G"));
}
