//! The command line's `--device` choice for rendering, with or without a GPU.

use crate::common::{Rng, random_image};
use gsimg::ChannelLayout;

/// `gsimg decode --device`: cuda renders or fails with a CUDA message; auto always renders.
#[test]
fn cli_device_choice() {
    use std::process::Command;
    let dir = std::env::temp_dir().join(format!("gsimg-cuda-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut rng = Rng::new(9);
    let img = random_image(&mut rng, 20, 16, ChannelLayout::Rgb, 50, 0.5, 3.0);
    let gsi = dir.join("a.gsi");
    std::fs::write(
        &gsi,
        gsimg::format::write(&img, &Default::default())
            .unwrap()
            .bytes,
    )
    .unwrap();
    let run = |device: &str, out: &str| {
        Command::new(env!("CARGO_BIN_EXE_gsimg"))
            .args([
                "decode",
                gsi.to_str().unwrap(),
                dir.join(out).to_str().unwrap(),
            ])
            .args(["--scale", "2", "--device", device])
            .output()
            .unwrap()
    };
    let cpu = run("cpu", "cpu.png");
    assert!(cpu.status.success());
    let auto = run("auto", "auto.png");
    assert!(
        auto.status.success(),
        "{}",
        String::from_utf8_lossy(&auto.stderr)
    );
    let cuda = run("cuda", "cuda.png");
    let err = String::from_utf8_lossy(&cuda.stderr);
    if gsimg::cuda::CudaRenderer::new().is_ok() {
        assert!(cuda.status.success(), "{err}");
        let a = image::open(dir.join("cuda.png")).unwrap().to_rgb8();
        let b = image::open(dir.join("cpu.png")).unwrap().to_rgb8();
        assert!(
            a.as_raw()
                .iter()
                .zip(b.as_raw())
                .all(|(x, y)| x.abs_diff(*y) <= 2)
        );
    } else {
        assert_eq!(cuda.status.code(), Some(1), "{err}");
        assert!(
            err.starts_with("gsimg: error: ") && err.contains("CUDA"),
            "{err}"
        );
        assert!(!dir.join("cuda.png").exists());
        // The CPU is the normal case without a GPU: a note with -v only.
        let quiet = String::from_utf8_lossy(&auto.stderr);
        assert!(!quiet.contains("rendering on the CPU"), "{quiet}");
        let verbose = Command::new(env!("CARGO_BIN_EXE_gsimg"))
            .args(["-v", "decode", gsi.to_str().unwrap()])
            .arg(dir.join("auto-v.png"))
            .args(["--scale", "2", "--device", "auto"])
            .output()
            .unwrap();
        let note = String::from_utf8_lossy(&verbose.stderr);
        assert!(note.contains("rendering on the CPU"), "{note}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
