//! Test inputs: the .gsi files and the `gsimg` CLI that integrations/tests/run.sh prepares.

use std::path::PathBuf;
use std::process::Command;

/// The directory holding rgb.gsi, alpha.gsi, gray.gsi and orient6.gsi (from
/// integrations/tests/run.sh).
pub fn dir() -> PathBuf {
    PathBuf::from(std::env::var_os("GSIMG_TEST_DIR").expect(
        "GSIMG_TEST_DIR is not set: run these tests through integrations/tests/run.sh, which \
         makes the test pictures",
    ))
}

/// `gsimg decode FILE --device cpu ARGS…` read back: (width, height, channels, pixels).
pub fn decode(file: &str, args: &[&str]) -> (u32, u32, usize, Vec<u8>) {
    let gsimg = std::env::var_os("GSIMG").expect("GSIMG (the gsimg CLI) is not set");
    let out = dir().join(format!("glycin-ref-{file}-{}.png", args.join("_")));
    let status = Command::new(gsimg)
        .args(["-q", "--force", "decode", "--device", "cpu"])
        .arg(dir().join(file))
        .arg(&out)
        .args(args)
        .status()
        .expect("running gsimg");
    assert!(status.success(), "gsimg decode {file} {args:?} failed");
    let img = image::open(&out).expect("reading gsimg's PNG");
    let c = img.color().channel_count() as usize;
    (img.width(), img.height(), c, img.into_bytes())
}
