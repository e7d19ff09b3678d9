//! The loader through glycin itself: the `glycin` client finds it by its conf.d file (in
//! XDG_DATA_HOME, set up by integrations/tests/run.sh), starts it, in bubblewrap's sandbox when
//! this machine can run it (glycin's own choice, `SandboxSelector::Auto`), and asks for frames
//! over D-Bus, as Loupe does.

mod common;

use glycin::{FrameRequest, Loader, MemoryFormat};
use glycin_utils::MemoryFormatInfo;

fn pixels(frame: &glycin::Frame) -> Vec<u8> {
    let n = frame.memory_format().n_bytes().u32() as usize;
    let row = frame.width() as usize * n;
    let stride = frame.stride() as usize;
    let buf = frame.buf_slice();
    (0..frame.height() as usize)
        .flat_map(|y| buf[y * stride..y * stride + row].iter().copied())
        .collect()
}

#[test]
fn glycin_loads_gsi_at_the_requested_scale() {
    futures_lite::future::block_on(async {
        let file = gio::File::for_path(common::dir().join("rgb.gsi"));
        let mut image = Loader::new(file)
            .load()
            .await
            .expect("glycin loads the .gsi file");
        eprintln!("sandbox: {:?}", image.active_sandbox_mechanism());
        assert_eq!(image.mime_type().as_str(), "image/x-gsi");
        let (w, h) = (image.details().width(), image.details().height());
        for zoom in [1u32, 3, 7] {
            let frame = image
                .specific_frame(FrameRequest::new().scale(w * zoom, h * zoom))
                .await
                .expect("frame");
            assert_eq!(frame.memory_format(), MemoryFormat::R8g8b8);
            let (ws, hs) = ((w * zoom).to_string(), (h * zoom).to_string());
            let (rw, rh, _, px) = common::decode("rgb.gsi", &["--width", &ws, "--height", &hs]);
            assert_eq!((frame.width(), frame.height()), (rw, rh));
            assert!(
                pixels(&frame) == px,
                "zoom {zoom}: pixels differ from gsimg decode"
            );
        }
        let frame = image
            .specific_frame(
                FrameRequest::new()
                    .scale(w * 5, h * 5)
                    .clip(400, 300, 256, 128),
            )
            .await
            .expect("clipped frame");
        let (ws, hs) = ((w * 5).to_string(), (h * 5).to_string());
        let (_, _, _, px) = common::decode(
            "rgb.gsi",
            &[
                "--width",
                &ws,
                "--height",
                &hs,
                "--region",
                "400,300,256,128",
            ],
        );
        assert_eq!((frame.width(), frame.height()), (256, 128));
        assert!(
            pixels(&frame) == px,
            "clip: pixels differ from gsimg decode"
        );
    });
}

#[test]
fn glycin_reports_a_corrupt_file() {
    futures_lite::future::block_on(async {
        let good = std::fs::read(common::dir().join("rgb.gsi")).unwrap();
        let bad = common::dir().join("glycin-truncated.gsi");
        std::fs::write(&bad, &good[..good.len() / 2]).unwrap();
        let r = Loader::new(gio::File::for_path(&bad)).load().await;
        assert!(r.is_err(), "a truncated file was accepted");
        eprintln!("error: {}", r.err().unwrap());
    });
}
