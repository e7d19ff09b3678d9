//! examples/c/render_sizes.c, compiled with the system's C compiler against the shared library
//! and run: its pixels (three sizes and a region) equal the Rust API's byte for byte.
//!
//! By default it links the `libgsimg_capi` that cargo built beside this test. With
//! `GSIMG_CAPI_PKG_CONFIG=1` it takes the flags from `pkg-config --cflags --libs gsimg` instead
//! (the library and header `cargo cinstall` installed; `.ci/run` does this).

use std::path::{Path, PathBuf};
use std::process::Command;

use gsimg::view::{Decoder, PixelFormat};
use gsimg::{ChannelLayout, Gaussian, Limits, Region, SplatImage, Viewport};

/// A deterministic RGBA picture of `n` Gaussians with an orientation and an ICC-less META.
fn test_file(w: u32, h: u32, n: usize) -> Vec<u8> {
    let mut s = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        (s >> 11) as f32 / (1u64 << 53) as f32
    };
    let gs = (0..n)
        .map(|_| Gaussian {
            x: next() * w as f32,
            y: next() * h as f32,
            scale: [0.8 + 6.0 * next(), 0.8 + 6.0 * next()],
            rotation: 3.0 * next(),
            color: [next(), next(), next(), next()],
        })
        .collect();
    let img = SplatImage::new(w, h, ChannelLayout::Rgba, gs).unwrap();
    let mut opts = gsimg::WriteOptions::default();
    opts.metadata.orientation = Some(6);
    gsimg::write(&img, &opts).unwrap().bytes
}

/// The pixels of a PAM file (header up to ENDHDR) with its width and height.
fn read_pam(path: &Path) -> (u32, u32, Vec<u8>) {
    let bytes = std::fs::read(path).unwrap();
    let end = bytes.windows(7).position(|w| w == b"ENDHDR\n").unwrap() + 7;
    let head = std::str::from_utf8(&bytes[..end]).unwrap();
    let field = |k: &str| -> u32 {
        head.lines()
            .find_map(|l| l.strip_prefix(k)?.trim().parse().ok())
            .unwrap()
    };
    (field("WIDTH "), field("HEIGHT "), bytes[end..].to_vec())
}

/// Compiler flags to build against the library, and the directory it loads from.
fn link_flags() -> (Vec<String>, Option<PathBuf>) {
    if std::env::var_os("GSIMG_CAPI_PKG_CONFIG").is_some() {
        let out = Command::new("pkg-config")
            .args(["--cflags", "--libs", "gsimg"])
            .output()
            .expect("pkg-config runs");
        assert!(out.status.success(), "pkg-config: {out:?}");
        let flags: Vec<String> = String::from_utf8(out.stdout)
            .unwrap()
            .split_whitespace()
            .map(String::from)
            .collect();
        let libdir = flags
            .iter()
            .find_map(|f| f.strip_prefix("-L"))
            .map(PathBuf::from);
        return (flags, libdir);
    }
    // The test runs from target/<profile>/deps; cargo puts the library in target/<profile>.
    let exe = std::env::current_exe().unwrap();
    let deps = exe.parent().unwrap();
    let dir = [deps.parent().unwrap(), deps]
        .into_iter()
        .find(|d| d.join("libgsimg_capi.so").exists())
        .unwrap_or_else(|| {
            panic!(
                "libgsimg_capi.so is not beside {} (build it with cargo build -p gsimg-capi)",
                exe.display()
            )
        })
        .to_path_buf();
    let include = Path::new(env!("CARGO_MANIFEST_DIR")).join("include");
    (
        vec![
            format!("-I{}", include.display()),
            format!("-L{}", dir.display()),
            "-lgsimg_capi".into(),
        ],
        Some(dir),
    )
}

#[cfg(target_os = "linux")]
#[test]
fn c_example_renders_what_the_rust_api_renders() {
    let tmp = std::env::temp_dir().join(format!("gsimg-capi-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).unwrap();
    let gsi = tmp.join("picture.gsi");
    let bytes = test_file(97, 61, 400);
    std::fs::write(&gsi, &bytes).unwrap();

    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/c/render_sizes.c");
    let exe = tmp.join("render_sizes");
    let (flags, libdir) = link_flags();
    let mut cc = Command::new(std::env::var("CC").unwrap_or_else(|_| "cc".into()));
    cc.args(["-std=c99", "-Wall", "-Wextra", "-Werror", "-o"])
        .arg(&exe)
        .arg(&source)
        .args(&flags);
    if let Some(dir) = &libdir {
        cc.arg(format!("-Wl,-rpath,{}", dir.display()));
    }
    let out = cc.output().expect("a C compiler (cc) runs");
    assert!(
        out.status.success(),
        "cc failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let run = Command::new(&exe).arg(&gsi).arg(&tmp).output().unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(
        stdout.contains("97x61, 4 channels, alpha 1, orientation 6"),
        "{stdout}"
    );
    assert!(stdout.contains("fit 160x101, double 194x122"), "{stdout}");

    let mut dec = Decoder::from_bytes(bytes, Limits::default()).unwrap();
    dec.set_backend(gsimg::view::Backend::Cpu);
    let region = Region {
        x: 10,
        y: 20,
        width: 50,
        height: 40,
    };
    let cases = [
        (
            "fit-160x120.pam",
            Viewport::full(160, 101),
            PixelFormat::Rgba8,
        ),
        ("native.pam", Viewport::full(97, 61), PixelFormat::Rgba8),
        ("double.pam", Viewport::full(194, 122), PixelFormat::Rgba8),
        (
            "region.pam",
            Viewport::full(194, 122).with_region(region),
            PixelFormat::Bgra8Premultiplied,
        ),
    ];
    for (name, view, fmt) in cases {
        let (w, h, pixels) = read_pam(&tmp.join(name));
        assert_eq!((w, h), (view.region.width, view.region.height), "{name}");
        let stride = fmt.min_stride(w).unwrap();
        let mut want = vec![0u8; stride * h as usize];
        dec.render_into(&view, fmt, &mut want, stride).unwrap();
        assert!(
            pixels == want,
            "{name}: the C example's pixels differ from the Rust API's"
        );
    }
    let _ = std::fs::remove_dir_all(&tmp);
}
