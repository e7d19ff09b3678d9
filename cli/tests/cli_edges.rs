//! The `gsimg` command line at its edges: outputs that must not be lost, signals, wrong command
//! lines, output formats, what is said on stderr.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::cli::{TempDir, dims, gsimg, stderr, write_png};
use gsimg::ChannelLayout;

pub(crate) fn gsimg_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_gsimg"));
    c.args(args);
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().unwrap()
}

/// A small picture and its analytic `.gsi` in a fresh folder.
fn setup(name: &str) -> (TempDir, String, String) {
    let t = TempDir::new(name);
    let (png, gsi) = (t.path("a.png"), t.path("a.gsi"));
    write_png(&png, 64, 48, ChannelLayout::Rgb);
    let o = gsimg(&[
        "encode", &png, &gsi, "--method", "analytic", "--refine", "0",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    (t, png, gsi)
}

pub(crate) fn fails_with(o: &Output, code: i32, msg: &str) {
    let e = stderr(o);
    assert_eq!(o.status.code(), Some(code), "{e}");
    assert!(e.contains(msg), "expected {msg:?} in: {e}");
}

#[test]
fn inputs_and_foreign_files_are_not_overwritten_without_force() {
    let (t, png, gsi) = setup("overwrite");
    let b = t.path("b.png");
    write_png(&b, 32, 32, ChannelLayout::Rgb);
    let before = std::fs::read(&b).unwrap();
    // `gsimg encode *.png` with two pictures: the second is not replaced by .gsi bytes.
    fails_with(&gsimg(&["encode", &png, &b]), 1, "name it *.gsi");
    // The input as its own output.
    fails_with(&gsimg(&["encode", &png, &png]), 1, ".gsi");
    let same = t.path("same.gsi");
    std::fs::copy(&gsi, &same).unwrap();
    fails_with(
        &gsimg(&["decode", &same, &same, "--format", "png"]),
        1,
        "is the input",
    );
    // A .gsi name holding a picture, a picture name holding a .gsi file.
    let fake_gsi = t.path("fake.gsi");
    std::fs::copy(&b, &fake_gsi).unwrap();
    fails_with(&gsimg(&["encode", &png, &fake_gsi]), 1, "PNG picture");
    let fake_png = t.path("fake.png");
    std::fs::copy(&gsi, &fake_png).unwrap();
    fails_with(&gsimg(&["decode", &gsi, &fake_png]), 1, "a .gsi file");
    assert_eq!(std::fs::read(&b).unwrap(), before);
    assert_eq!(
        std::fs::read(&png).unwrap().len(),
        std::fs::metadata(&png).unwrap().len() as usize
    );
    assert!(image::open(&png).is_ok(), "the input is still a picture");
    assert_eq!(
        std::fs::read(&fake_png).unwrap(),
        std::fs::read(&gsi).unwrap()
    );
    // What the command writes anyway replaces its own kind, and an empty file.
    assert!(
        gsimg(&["encode", &png, &gsi, "--method", "analytic"])
            .status
            .success()
    );
    assert!(gsimg(&["decode", &gsi, &b]).status.success());
    assert_eq!(dims(&b), (64, 48));
    let empty = t.path("empty.gsi");
    std::fs::write(&empty, b"").unwrap();
    assert!(
        gsimg(&["encode", &png, &empty, "--method", "analytic"])
            .status
            .success()
    );
    // --force / -y replaces, and lets encode write another name.
    let o = gsimg(&["encode", &png, &fake_gsi, "--method", "analytic", "--force"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let dat = t.path("out.dat");
    fails_with(
        &gsimg(&["encode", &png, &dat, "--method", "analytic"]),
        1,
        ".gsi",
    );
    assert!(
        gsimg(&["encode", &png, &dat, "--method", "analytic", "-y"])
            .status
            .success()
    );
    assert!(gsimg(&["info", &dat]).status.success());
    // Nothing left behind by the refusals.
    assert!(
        t.files().iter().all(|f| !f.ends_with(".tmp")),
        "{:?}",
        t.files()
    );
}

#[test]
fn links_are_followed_and_devices_written_through() {
    use std::os::unix::fs::FileTypeExt;
    let (t, _png, gsi) = setup("links");
    // A link to a picture: the picture is replaced, the link stays a link.
    let real = t.path("real.png");
    write_png(&real, 10, 10, ChannelLayout::Rgb);
    let link = t.path("link.png");
    std::os::unix::fs::symlink("real.png", &link).unwrap();
    let o = gsimg(&["decode", &gsi, &link, "--scale", "2"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert_eq!(dims(&real), (128, 96));
    // A dangling link: its target is created.
    let dangling = t.path("dangling.png");
    std::os::unix::fs::symlink("made.png", &dangling).unwrap();
    assert!(gsimg(&["decode", &gsi, &dangling]).status.success());
    assert!(
        std::fs::symlink_metadata(&dangling)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert_eq!(dims(&t.path("made.png")), (64, 48));
    // A device node: written through, never replaced (the test may run as root).
    let o = gsimg(&["decode", &gsi, "/dev/null", "--format", "png"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = gsimg(&[
        "encode",
        &t.path("a.png"),
        "/dev/null",
        "-y",
        "--method",
        "analytic",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        std::fs::metadata("/dev/null")
            .unwrap()
            .file_type()
            .is_char_device()
    );
    // A FIFO: its reader gets the whole picture.
    let fifo = t.path("pipe.png");
    if Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .is_ok_and(|s| s.success())
    {
        let reader = {
            let fifo = fifo.clone();
            std::thread::spawn(move || std::fs::read(fifo).unwrap())
        };
        let o = gsimg(&["decode", &gsi, &fifo]);
        assert!(o.status.success(), "{}", stderr(&o));
        let bytes = reader.join().unwrap();
        let img = image::load_from_memory(&bytes).unwrap();
        assert_eq!((img.width(), img.height()), (64, 48));
        assert!(std::fs::metadata(&fifo).unwrap().file_type().is_fifo());
    }
    // A block device (a disk) is refused unless --force (needs root to make one: a node for an
    // absent loop device, never opened).
    let blk = t.path("disk");
    if Command::new("mknod")
        .args([&blk, "b", "7", "250"])
        .status()
        .is_ok_and(|s| s.success())
    {
        fails_with(
            &gsimg(&["decode", &gsi, &blk, "--format", "png"]),
            1,
            "block device",
        );
        assert!(
            std::fs::metadata(&blk)
                .unwrap()
                .file_type()
                .is_block_device()
        );
    }
    // A folder is an error.
    std::fs::create_dir(t.path("dir.png")).unwrap();
    fails_with(&gsimg(&["decode", &gsi, &t.path("dir.png")]), 1, "folder");
}

/// Waits for a temporary output file of `gsimg` in `dir` to appear.
fn wait_for_temporary(t: &TempDir) -> bool {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(20) {
        if t.files().iter().any(|f| f.ends_with(".tmp")) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    false
}

#[test]
fn sigint_and_sigterm_leave_no_temporary_file_and_stale_ones_are_removed() {
    let (t, _png, gsi) = setup("signals");
    let out = t.path("big.png");
    for (signal, code) in [("TERM", 143), ("INT", 130)] {
        // A 6400x4800 render (about a second on 2 cores).
        let child = Command::new(env!("CARGO_BIN_EXE_gsimg"))
            .args(["decode", &gsi, &out, "--scale", "100", "--device", "cpu"])
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        assert!(wait_for_temporary(&t), "no temporary file seen");
        std::thread::sleep(Duration::from_millis(100));
        let sent = Command::new("kill")
            .args([&format!("-{signal}"), &child.id().to_string()])
            .status()
            .unwrap();
        assert!(sent.success());
        let o = child.wait_with_output().unwrap();
        // Finished before the signal arrived (a very fast machine): then the file is whole.
        if o.status.success() {
            assert_eq!(dims(&out), (6400, 4800));
            std::fs::remove_file(&out).unwrap();
        } else {
            assert_eq!(o.status.code(), Some(code), "SIG{signal}: {}", stderr(&o));
            // The signal may land after the rename: then the output is whole.
            if Path::new(&out).exists() {
                assert_eq!(dims(&out), (6400, 4800));
                std::fs::remove_file(&out).unwrap();
            }
        }
        assert!(
            t.files().iter().all(|f| !f.ends_with(".tmp")),
            "SIG{signal}: {:?}",
            t.files()
        );
    }
    // SIGKILL leaves a temporary file nobody can remove at once: the next run into the same
    // folder removes those of processes that are gone, and keeps a live process's.
    let mut dead = Command::new("true").spawn().unwrap();
    let dead_pid = dead.id();
    dead.wait().unwrap();
    let stale = t.path(&format!(".big.png.gsimg-{dead_pid}.tmp"));
    let live = t.path(&format!(".other.png.gsimg-{}.tmp", std::process::id()));
    std::fs::write(&stale, vec![0u8; 4096]).unwrap();
    std::fs::write(&live, b"in use").unwrap();
    assert!(
        gsimg(&["decode", &gsi, &t.path("small.png")])
            .status
            .success()
    );
    assert!(!Path::new(&stale).exists(), "{:?}", t.files());
    assert!(Path::new(&live).exists());
}

#[test]
fn the_output_location_is_checked_before_the_work() {
    let t = TempDir::new("outdir");
    // The input is not even read: the missing folder is the error.
    let missing = t.path("no/such/folder/out.gsi");
    fails_with(
        &gsimg(&["encode", &t.path("missing.png"), &missing]),
        1,
        "does not exist",
    );
    let o = gsimg(&["decode", &t.path("missing.gsi"), &t.path("nope/out.png")]);
    fails_with(&o, 1, "folder");
    assert_eq!(stderr(&o).lines().count(), 1);
}

#[test]
fn wrong_command_lines_exit_2_with_the_real_reason() {
    let (t, png, gsi) = setup("usage");
    let out = t.path("out.png");
    for (args, msg) in [
        (vec!["decode", &gsi, &out, "--scale", "0"], "positive"),
        (vec!["decode", &gsi, &out, "--scale", "-1"], "positive"),
        (vec!["decode", &gsi, &out, "--scale", "nan"], "positive"),
        (
            vec!["decode", &gsi, &out, "--scale", "1e-9"],
            "less than a pixel",
        ),
        (vec!["decode", &gsi, &out, "--width", "0"], "at least 1"),
        (vec!["decode", &gsi, &out, "--height", "-5"], "at least 1"),
        (
            vec!["decode", &gsi, &t.path("x.jpg"), "--format", "png"],
            "does not match",
        ),
        (
            vec!["encode", &png, &t.path("x.gsi"), "--density", "0"],
            "positive",
        ),
        (
            vec!["encode", &png, &t.path("x.gsi"), "--quality", "0"],
            "1 to 100",
        ),
        (
            vec!["encode", &png, &t.path("x.gsi"), "--refine", "-3"],
            "0 or more",
        ),
        (
            vec![
                "encode",
                &png,
                &t.path("x.gsi"),
                "--method",
                "network",
                "--density",
                "0.1",
            ],
            "--density",
        ),
        (vec!["upscale", &png, &out], "--scale"),
        (vec!["--threads", "0", "info", &gsi], "at least 1"),
        (vec!["--threads", "-4", "info", &gsi], "at least 1"),
        (
            vec!["decode", &gsi, &out, "--region", "-1,0,5,5"],
            "X,Y,W,H",
        ),
    ] {
        let o = gsimg(&args);
        let e = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {e}");
        assert!(e.contains(msg), "{args:?}: {e}");
        assert!(!e.contains("tip:"), "{args:?}: {e}");
    }
    assert!(
        t.files().iter().all(|f| f == "a.png" || f == "a.gsi"),
        "{:?}",
        t.files()
    );
    // --format against the name with --force: a warning, and the format asked for.
    let jpg = t.path("x.jpg");
    let o = gsimg(&["decode", &gsi, &jpg, "--format", "png", "--force"]);
    assert!(
        o.status.success() && stderr(&o).contains("warning"),
        "{}",
        stderr(&o)
    );
    assert_eq!(
        image::ImageReader::open(&jpg)
            .unwrap()
            .with_guessed_format()
            .unwrap()
            .format(),
        Some(image::ImageFormat::Png)
    );
    // Thousands of threads are capped at the core count (-v says so).
    let start = Instant::now();
    let o = gsimg(&["--threads", "5000", "-v", "decode", &gsi, &out]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("capped"), "{}", stderr(&o));
    assert!(start.elapsed() < Duration::from_secs(10));
}

#[test]
fn tiff_and_bmp_outputs_keep_size_and_channels() {
    let t = TempDir::new("formats");
    for (layout, want) in [
        (ChannelLayout::Rgb, image::ColorType::Rgb8),
        (ChannelLayout::Rgba, image::ColorType::Rgba8),
        (ChannelLayout::GrayAlpha, image::ColorType::Rgba8),
    ] {
        let (png, gsi) = (t.path("in.png"), t.path("in.gsi"));
        write_png(&png, 40, 30, layout);
        assert!(
            gsimg(&["encode", &png, &gsi, "--method", "analytic"])
                .status
                .success()
        );
        for ext in ["tif", "tiff", "bmp"] {
            let out = t.path(&format!("out.{ext}"));
            let o = gsimg(&["decode", &gsi, &out, "--scale", "2"]);
            assert!(o.status.success(), "{layout:?} {ext}: {}", stderr(&o));
            let img = image::open(&out).unwrap();
            assert_eq!((img.width(), img.height()), (80, 60), "{layout:?} {ext}");
            assert_eq!(img.color(), want, "{layout:?} {ext}");
            if layout.has_alpha() {
                // The synthetic picture's left fifth is half transparent.
                let a = img.to_rgba8().get_pixel(2, 30)[3];
                assert!((100..=160).contains(&a), "{layout:?} {ext}: alpha {a}");
            }
        }
        let o = gsimg(&["decode", &gsi, "-", "--format", "bmp"]);
        assert!(o.status.success());
        assert_eq!(
            image::guess_format(&o.stdout).unwrap(),
            image::ImageFormat::Bmp
        );
    }
}

#[test]
fn quiet_verbose_and_progress_lines() {
    let (t, png, gsi) = setup("say");
    let out = t.path("out.png");
    // -q: nothing at all on success.
    let o = gsimg(&[
        "-q",
        "encode",
        &png,
        &t.path("q.gsi"),
        "--method",
        "analytic",
    ]);
    assert!(o.status.success() && o.stderr.is_empty(), "{}", stderr(&o));
    // The CPU renderer is the normal case: a note with -v only.
    let o = gsimg(&["decode", &gsi, &out]);
    assert!(
        o.status.success() && !stderr(&o).contains("rendering on the CPU"),
        "{}",
        stderr(&o)
    );
    let o = gsimg(&["decode", &gsi, &out, "-v"]);
    let gpu = !stderr(&o).contains("rendering on the CPU");
    if !gpu {
        assert!(stderr(&o).contains("note:"), "{}", stderr(&o));
    }
    // stderr is not a terminal here: a progress line every GSIMG_PROGRESS_SECONDS.
    let big = ["decode", &gsi, &out, "--scale", "60", "--device", "cpu"];
    let o = gsimg_env(&big, &[("GSIMG_PROGRESS_SECONDS", "0.1")]);
    assert!(o.status.success(), "{}", stderr(&o));
    let e = stderr(&o);
    assert!(
        e.lines()
            .any(|l| l.starts_with("gsimg: decoding: ") && l.ends_with(" s")),
        "{e}"
    );
    let mut quiet = big.to_vec();
    quiet.push("-q");
    let o = gsimg_env(&quiet, &[("GSIMG_PROGRESS_SECONDS", "0.1")]);
    assert!(o.status.success() && o.stderr.is_empty(), "{}", stderr(&o));
}

/// An encode's progress lines (stderr not a terminal) give a percentage that rises through
/// the refinement, not only the time spent.
#[test]
fn encode_progress_lines_rise_through_the_refinement() {
    let t = TempDir::new("encprogress");
    let (png, gsi) = (t.path("a.png"), t.path("a.gsi"));
    write_png(&png, 320, 240, ChannelLayout::Rgb);
    let o = gsimg_env(
        &[
            "encode", &png, &gsi, "--method", "analytic", "--refine", "80", "--device", "cpu",
        ],
        &[("GSIMG_PROGRESS_SECONDS", "0.02")],
    );
    let e = stderr(&o);
    assert!(o.status.success(), "{e}");
    let percents: Vec<u32> = e
        .lines()
        .filter_map(|l| l.strip_prefix("gsimg: encoding: "))
        .filter_map(|l| l.split('%').next()?.parse().ok())
        .collect();
    assert!(percents.windows(2).all(|w| w[0] <= w[1]), "{e}");
    assert!(
        percents.iter().any(|&p| p > 0 && p < 100),
        "no percentage within the work: {e}"
    );
}

/// Without ONNX Runtime (none found, fetching forbidden), the default encode uses the analytic
/// encoder with one warning line; asking for the network is still an error.
#[test]
fn without_onnx_runtime_the_default_encode_falls_back_with_one_warning() {
    let t = TempDir::new("noort");
    let (png, gsi) = (t.path("a.png"), t.path("a.gsi"));
    write_png(&png, 48, 32, ChannelLayout::Rgb);
    let cache = t.path("empty-cache");
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_gsimg"))
            .args(args)
            .env_remove("ORT_DYLIB_PATH")
            .env("GSIMG_CACHE_DIR", &cache)
            .env("GSIMG_ORT_FETCH", "0")
            .output()
            .unwrap()
    };
    let o = run(&["encode", &png, &gsi]);
    let e = stderr(&o);
    assert!(o.status.success(), "{e}");
    if e.contains("(network") {
        // A system-wide ONNX Runtime exists on this machine: nothing to fall back from.
        return;
    }
    let warnings: Vec<&str> = e.lines().filter(|l| l.contains("warning")).collect();
    assert_eq!(warnings.len(), 1, "{e}");
    assert!(
        warnings[0].contains("ONNX Runtime") && warnings[0].contains("analytic"),
        "{e}"
    );
    assert!(e.contains("(analytic)"), "{e}");
    assert!(gsimg(&["info", &gsi]).status.success());
    let o = run(&["encode", &png, &gsi, "--method", "network"]);
    fails_with(&o, 1, "ONNX Runtime");
}

/// The help texts speak to users: upscale says it needs a size (no default scale of 1), and
/// encode's short help is a line per option without the encoder's internals.
#[test]
fn help_texts_tell_what_users_need() {
    let o = gsimg(&["upscale", "--help"]);
    let h = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success());
    assert!(h.contains("--scale, --width or --height"), "{h}");
    assert!(!h.contains("default 1") && !h.contains("default: 1"), "{h}");
    let o = gsimg(&["encode", "-h"]);
    let h = String::from_utf8_lossy(&o.stdout);
    for internal in ["σ", "quadtree", "presence", "structure-tensor", "threshold"] {
        assert!(!h.contains(internal), "{internal}: {h}");
    }
    assert!(h.lines().count() < 30, "{h}");
    for sub in ["encode", "decode", "info", "upscale"] {
        let o = gsimg(&[sub, "--help"]);
        let h = String::from_utf8_lossy(&o.stdout);
        assert!(h.contains("--quiet") && h.contains("--force"), "{sub}: {h}");
    }
}

/// A large decode on the CPU renders in strips (to report progress): the picture is the same,
/// pixel for pixel, as one render of the whole.
#[test]
fn a_decode_in_strips_is_the_whole_render() {
    let (t, _png, gsi) = setup("strips");
    let out = t.path("big.png");
    // 2560x1920: 4.9 megapixels, two strips.
    let o = gsimg_env(
        &["decode", &gsi, &out, "--scale", "40", "--device", "cpu"],
        &[("GSIMG_PROGRESS_SECONDS", "0.05")],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let bytes = std::fs::read(&gsi).unwrap();
    let limits = gsimg::Limits::default();
    let image = gsimg::format::Decoder::new(&bytes[..], limits)
        .unwrap()
        .decode_all()
        .unwrap();
    let view = gsimg::Viewport::scaled(64, 48, 40.0).unwrap();
    let whole: gsimg::Frame<u8> = gsimg::render::render_cpu(&image, &view, &limits).unwrap();
    let got = image::open(&out).unwrap().to_rgb8();
    assert_eq!((got.width(), got.height()), (2560, 1920));
    assert!(
        got.as_raw() == &whole.data,
        "the strips differ from the whole render"
    );
}
