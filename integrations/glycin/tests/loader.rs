//! The loader through its own entry point (`LoaderImplementation`, what the D-Bus service
//! calls): frames at the requested scales and clips, equal to `gsimg decode` byte for byte.

mod common;

use glycin_gsimg::{GsiLoader, MIME_TYPE};
use glycin_utils::{
    Frame, FrameRequest, ImageDetails, InitializationDetails, LoaderImplementation, LocalMemory,
    MemoryFormat, MemoryFormatInfo, ProcessError,
};

fn open(file: &str) -> Result<(GsiLoader, ImageDetails<LocalMemory>), ProcessError> {
    let f = std::fs::File::open(common::dir().join(file)).unwrap();
    GsiLoader::load(f, MIME_TYPE.to_string(), InitializationDetails::default())
}

fn frame(
    loader: &mut GsiLoader,
    scale: Option<(u32, u32)>,
    clip: Option<(u32, u32, u32, u32)>,
) -> Frame<LocalMemory> {
    let mut req = FrameRequest::default();
    req.scale = scale;
    req.clip = clip;
    loader.specific_frame(req).expect("frame")
}

fn assert_same(f: &Frame<LocalMemory>, reference: (u32, u32, usize, Vec<u8>), what: &str) {
    let (w, h, c, px) = reference;
    assert_eq!((f.width, f.height), (w, h), "{what}: size");
    assert_eq!(
        f.memory_format.n_bytes().u32() as usize,
        c,
        "{what}: channels"
    );
    assert_eq!(f.stride as usize, w as usize * c, "{what}: stride");
    assert!(
        f.texture[..] == px[..],
        "{what}: pixels differ from gsimg decode"
    );
}

#[test]
fn renders_at_every_requested_scale() {
    let (mut loader, details) = open("rgb.gsi").unwrap();
    let (nw, nh) = (details.width, details.height);
    let native = frame(&mut loader, None, None);
    assert_eq!(native.memory_format, MemoryFormat::R8g8b8);
    assert_same(&native, common::decode("rgb.gsi", &[]), "native size");
    // The zoom steps of a viewer: each frame is rendered at its size, not scaled from another.
    for zoom in [0.25, 1.5, 4.0, 6.25] {
        let w = (nw as f64 * zoom).round() as u32;
        let h = (nh as f64 * zoom).round() as u32;
        let f = frame(&mut loader, Some((w, h)), None);
        let (ws, hs) = (w.to_string(), h.to_string());
        assert_same(
            &f,
            common::decode("rgb.gsi", &["--width", &ws, "--height", &hs]),
            &format!("zoom {zoom}"),
        );
    }
}

#[test]
fn renders_a_clip_of_a_zoomed_view() {
    let (mut loader, details) = open("rgb.gsi").unwrap();
    let (w, h) = (details.width * 8, details.height * 8);
    let f = frame(&mut loader, Some((w, h)), Some((1000, 700, 300, 200)));
    let (ws, hs) = (w.to_string(), h.to_string());
    assert_same(
        &f,
        common::decode(
            "rgb.gsi",
            &[
                "--width",
                &ws,
                "--height",
                &hs,
                "--region",
                "1000,700,300,200",
            ],
        ),
        "clip of the 8x view",
    );
    // A clip outside the frame is an error, not a panic or a clamp.
    let mut req = FrameRequest::default();
    req.scale = Some((w, h));
    req.clip = Some((w - 10, 0, 20, 20));
    assert!(loader.specific_frame::<LocalMemory>(req).is_err());
}

#[test]
fn alpha_and_gray_keep_their_channels() {
    let (mut loader, _) = open("alpha.gsi").unwrap();
    let f = frame(&mut loader, Some((640, 482)), None);
    assert_eq!(f.memory_format, MemoryFormat::R8g8b8a8);
    assert_same(
        &f,
        common::decode("alpha.gsi", &["--width", "640", "--height", "482"]),
        "alpha",
    );
    let (mut loader, _) = open("gray.gsi").unwrap();
    let f = frame(&mut loader, Some((500, 377)), None);
    assert_eq!(f.memory_format, MemoryFormat::G8);
    assert_same(
        &f,
        common::decode("gray.gsi", &["--width", "500", "--height", "377"]),
        "gray",
    );
}

#[test]
fn reports_orientation() {
    let (_, details) = open("orient6.gsi").unwrap();
    let o = details.transformation_orientation.expect("orientation");
    assert_eq!(u16::from(o), 6);
    let (_, details) = open("rgb.gsi").unwrap();
    assert!(details.transformation_orientation.is_none());
}

#[test]
fn refuses_bad_input() {
    let good = std::fs::read(common::dir().join("rgb.gsi")).unwrap();
    let mut flipped = good.clone();
    let mid = flipped.len() / 2;
    flipped[mid] ^= 0x20;
    for (what, bytes) in [
        ("flipped bit", flipped),
        ("truncated", good[..good.len() / 2].to_vec()),
        ("empty", Vec::new()),
        ("not gsi", b"\x89PNG\r\n\x1a\n0000000000000".to_vec()),
    ] {
        let r = GsiLoader::load::<LocalMemory, _>(
            std::io::Cursor::new(bytes),
            MIME_TYPE.to_string(),
            InitializationDetails::default(),
        );
        assert!(r.is_err(), "{what}: accepted");
    }
    let f = std::fs::File::open(common::dir().join("rgb.gsi")).unwrap();
    let r =
        GsiLoader::load::<LocalMemory, _>(f, "image/png".into(), InitializationDetails::default());
    assert!(matches!(r, Err(ProcessError::UnsupportedImageFormat(_))));
}
