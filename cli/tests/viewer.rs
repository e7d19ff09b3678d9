//! The viewer API (`gsimg::view`) and the `image` hooks against what `gsimg decode` writes.

use std::io::Cursor;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::cli::{TempDir, gsimg};
use crate::common::{Rng, random_image};
use gsimg::view::{self, Backend, Decoder, PixelFormat};
use gsimg::{ChannelLayout, Error, Limits, Region, Viewport};

const LAYOUTS: [ChannelLayout; 4] = [
    ChannelLayout::Gray,
    ChannelLayout::GrayAlpha,
    ChannelLayout::Rgb,
    ChannelLayout::Rgba,
];

/// A random .gsi file of `layout` with an EXIF orientation.
fn gsi(seed: u64, w: u32, h: u32, layout: ChannelLayout, orientation: Option<u8>) -> Vec<u8> {
    let mut rng = Rng::new(seed);
    let img = random_image(&mut rng, w, h, layout, 300, 0.6, 6.0);
    let mut opts = gsimg::format::WriteOptions::default();
    opts.metadata.orientation = orientation;
    gsimg::format::write(&img, &opts).unwrap().bytes
}

/// `gsimg decode` of `file` with `args`, as 8-bit samples in the file's channels (the PNG's).
fn cli_decode(dir: &TempDir, file: &str, args: &[&str]) -> (u32, u32, Vec<u8>) {
    let out = dir.path("out.png");
    let mut all = vec!["decode", file, &out, "--device", "cpu", "--force"];
    all.extend_from_slice(args);
    let o = gsimg(&all);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let img = image::open(&out).unwrap();
    let (w, h) = (img.width(), img.height());
    (w, h, img.into_bytes())
}

/// The pixel-format rule of `gsimg::view::PixelFormat`, written out again independently.
fn expected(native: &[u8], channels: usize, fmt: PixelFormat) -> Vec<u8> {
    let mut v = Vec::new();
    for p in native.chunks_exact(channels) {
        let (r, g, b, a) = match *p {
            [l] => (l, l, l, 255),
            [l, a] => (l, l, l, a),
            [r, g, b] => (r, g, b, 255),
            [r, g, b, a] => (r, g, b, a),
            _ => unreachable!(),
        };
        let pm = |c: u8| ((c as f64 * a as f64 / 255.0).round()) as u8;
        match fmt {
            PixelFormat::Rgba8 => v.extend([r, g, b, a]),
            PixelFormat::Rgb8 => v.extend([r, g, b]),
            PixelFormat::Bgra8Premultiplied => v.extend([pm(b), pm(g), pm(r), a]),
            _ => unreachable!(),
        }
    }
    v
}

/// Renders through the API with a padded stride and returns the rows without the padding
/// (checking the padding was not written).
fn api_render(dec: &mut Decoder, view: &Viewport, fmt: PixelFormat) -> Vec<u8> {
    let (w, h) = (view.region.width, view.region.height);
    let row = fmt.min_stride(w).unwrap();
    let stride = row + 13;
    let mut buf = vec![0xA5u8; stride * h as usize];
    dec.render_into(view, fmt, &mut buf, stride).unwrap();
    let mut out = Vec::new();
    for r in buf.chunks(stride) {
        out.extend_from_slice(&r[..row]);
        assert!(r[row..].iter().all(|&b| b == 0xA5), "padding written");
    }
    out
}

#[test]
fn renders_equal_gsimg_decode_in_every_format() {
    let dir = TempDir::new("viewer-formats");
    let region = Region {
        x: 7,
        y: 5,
        width: 40,
        height: 23,
    };
    for (i, layout) in LAYOUTS.into_iter().enumerate() {
        let bytes = gsi(i as u64, 61, 43, layout, Some(3));
        let file = dir.path("p.gsi");
        std::fs::write(&file, &bytes).unwrap();
        let mut dec = Decoder::open(&file, Limits::default()).unwrap();
        dec.set_backend(Backend::Cpu);
        let info = dec.info();
        assert_eq!((info.width, info.height), (61, 43));
        assert_eq!(info.channels as usize, layout.channels());
        assert_eq!(info.has_alpha, layout.channels() % 2 == 0);
        assert_eq!(info.orientation, 3);
        // --width only: the viewer's fit gives the CLI's size.
        let (w, h) = view::fit_size(61, 43, 150, 0).unwrap();
        let cases: [(Viewport, Vec<String>); 3] = [
            (Viewport::full(61, 43), vec![]),
            (Viewport::full(w, h), vec!["--width".into(), "150".into()]),
            (
                Viewport::full(130, 77).with_region(region),
                ["--width", "130", "--height", "77", "--region", "7,5,40,23"]
                    .map(String::from)
                    .to_vec(),
            ),
        ];
        for (view, args) in cases {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let (cw, ch, native) = cli_decode(&dir, &file, &args);
            // The CLI applies the orientation (3: 180°), which keeps the size.
            let native = view::orient_frame(
                gsimg::Frame {
                    width: cw,
                    height: ch,
                    layout,
                    data: native,
                },
                3,
            )
            .data;
            assert_eq!((cw, ch), (view.region.width, view.region.height));
            for fmt in [
                PixelFormat::Rgba8,
                PixelFormat::Rgb8,
                PixelFormat::Bgra8Premultiplied,
            ] {
                let got = api_render(&mut dec, &view, fmt);
                assert!(
                    got == expected(&native, layout.channels(), fmt),
                    "{layout:?} {fmt:?} {args:?}"
                );
            }
            // Floats round to the 8-bit render: floor(v * 255 + 0.5).
            let f = api_render(&mut dec, &view, PixelFormat::RgbaF32);
            let rounded: Vec<u8> = f
                .chunks_exact(4)
                .map(|b| {
                    let v = f32::from_ne_bytes(b.try_into().unwrap());
                    assert!((0.0..=1.0).contains(&v));
                    (v * 255.0 + 0.5) as u8
                })
                .collect();
            assert!(
                rounded == expected(&native, layout.channels(), PixelFormat::Rgba8),
                "{layout:?} f32 {args:?}"
            );
        }
    }
}

#[test]
fn buffers_and_sizes_are_checked() {
    let bytes = gsi(9, 30, 20, ChannelLayout::Rgb, None);
    let mut dec = Decoder::from_reader(Cursor::new(bytes), Limits::default()).unwrap();
    dec.set_backend(Backend::Cpu);
    let mut buf = vec![0u8; 30 * 20 * 4];
    let e = dec.render(30, 20, PixelFormat::Rgba8, &mut buf[1..], 120);
    assert!(matches!(e, Err(Error::InvalidParameter { .. })), "{e:?}");
    let e = dec.render(30, 20, PixelFormat::Rgba8, &mut buf, 119);
    assert!(matches!(e, Err(Error::InvalidParameter { .. })), "{e:?}");
    let e = dec.render(0, 20, PixelFormat::Rgba8, &mut buf, 120);
    assert!(matches!(e, Err(Error::InvalidParameter { .. })), "{e:?}");
    let e = dec.render_region(
        30,
        20,
        Region {
            x: 25,
            y: 0,
            width: 10,
            height: 2,
        },
        PixelFormat::Rgba8,
        &mut buf,
        120,
    );
    assert!(matches!(e, Err(Error::InvalidParameter { .. })), "{e:?}");
    let mut small = *dec.limits();
    small.max_output_pixels = 100;
    dec.set_limits(small);
    let e = dec.render(30, 20, PixelFormat::Rgba8, &mut buf, 120);
    assert!(matches!(e, Err(Error::LimitsExceeded { .. })), "{e:?}");
    // Not a .gsi file: a format error at open.
    assert!(matches!(
        Decoder::from_bytes(b"\x89PNG\r\n\x1a\n....".to_vec(), Limits::default()),
        Err(Error::Format(_))
    ));
}

#[test]
fn a_render_can_be_cancelled_from_another_thread() {
    // Large Gaussians at a large size: seconds of work unless cancelled.
    let mut rng = Rng::new(5);
    let img = random_image(&mut rng, 256, 256, ChannelLayout::Rgb, 4000, 10.0, 40.0);
    let bytes = gsimg::format::write(&img, &Default::default())
        .unwrap()
        .bytes;
    let mut dec = Decoder::from_bytes(bytes, Limits::unlimited()).unwrap();
    dec.set_backend(Backend::Cpu);
    let cancel = dec.cancel_handle();
    let done = Arc::new(AtomicBool::new(false));
    let canceller = {
        let done = done.clone();
        std::thread::spawn(move || {
            // Repeated, because a render clears a cancel that came before it started.
            while !done.load(Ordering::Relaxed) {
                cancel.cancel();
                std::thread::sleep(std::time::Duration::from_millis(2));
            }
        })
    };
    let (w, h) = (4096, 4096);
    let mut buf = vec![0u8; w * h * 3];
    let start = std::time::Instant::now();
    let r = dec.render(w as u32, h as u32, PixelFormat::Rgb8, &mut buf, w * 3);
    done.store(true, Ordering::Relaxed);
    canceller.join().unwrap();
    assert!(matches!(r, Err(Error::Cancelled)), "{r:?}");
    assert!(start.elapsed().as_secs_f64() < 5.0, "{:?}", start.elapsed());
    // The next render is not affected.
    let mut small = vec![0u8; 32 * 32 * 3];
    dec.render(32, 32, PixelFormat::Rgb8, &mut small, 96)
        .unwrap();
}

#[test]
fn auto_reports_where_it_rendered() {
    let bytes = gsi(3, 20, 20, ChannelLayout::Rgb, None);
    let mut dec = Decoder::from_bytes(bytes, Limits::default()).unwrap();
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let s = seen.clone();
    dec.on_fallback(move |f| s.lock().unwrap().push(f.clone()));
    let mut buf = vec![0u8; 20 * 20 * 4];
    let first = dec
        .render(20, 20, PixelFormat::Rgba8, &mut buf, 80)
        .unwrap();
    let second = dec
        .render(20, 20, PixelFormat::Rgba8, &mut buf, 80)
        .unwrap();
    match first.device {
        // Without a GPU: said once, at set-up, in the callback and the first render's report.
        view::Device::Cpu => {
            let f = first.fallback.expect("the CPU fallback is reported");
            assert_eq!(seen.lock().unwrap().as_slice(), [f]);
            assert!(second.fallback.is_none());
        }
        view::Device::Cuda => assert!(first.fallback.is_none() && seen.lock().unwrap().is_empty()),
    }
}

#[test]
fn image_crate_opens_gsi_files() {
    assert!(gsimg::image_hooks::register());
    assert!(
        gsimg::image_hooks::register(),
        "registering twice is harmless"
    );
    let dir = TempDir::new("viewer-image");
    for (i, layout) in LAYOUTS.into_iter().enumerate() {
        let bytes = gsi(20 + i as u64, 45, 31, layout, None);
        let file = dir.path("p.gsi");
        std::fs::write(&file, &bytes).unwrap();
        let (_, _, native) = cli_decode(&dir, &file, &[]);
        // By extension, and by signature from memory.
        let by_path = image::open(&file).unwrap();
        assert_eq!((by_path.width(), by_path.height()), (45, 31));
        assert_eq!(by_path.color().channel_count() as usize, layout.channels());
        assert!(by_path.as_bytes() == native, "{layout:?} image::open");
        let by_bytes = image::ImageReader::new(Cursor::new(&bytes))
            .with_guessed_format()
            .unwrap()
            .decode()
            .unwrap();
        assert!(by_bytes.as_bytes() == native, "{layout:?} ImageReader");
    }
    // At a size of the caller's choice, and a rectangle of it.
    let bytes = gsi(30, 45, 31, ChannelLayout::Rgba, Some(6));
    let file = dir.path("big.gsi");
    std::fs::write(&file, &bytes).unwrap();
    use gsimg::image_hooks::GsiDecoder;
    use image::{ImageDecoder, ImageDecoderRect};
    let mut d = GsiDecoder::new(Cursor::new(&bytes))
        .unwrap()
        .fit_within(200, 0)
        .unwrap();
    assert_eq!(d.dimensions(), (200, 138));
    assert_eq!(
        d.orientation().unwrap(),
        image::metadata::Orientation::Rotate90
    );
    let mut rect = vec![0u8; 30 * 20 * 4];
    d.read_rect(100, 50, 30, 20, &mut rect, 120).unwrap();
    let big = image::DynamicImage::from_decoder(d).unwrap();
    // The CLI applies orientation 6; undo it by applying 8.
    let undo = |w, h, data| {
        view::orient_frame(
            gsimg::Frame {
                width: w,
                height: h,
                layout: gsimg::ChannelLayout::Rgba,
                data,
            },
            8,
        )
        .data
    };
    let (w, h, cli) = cli_decode(&dir, &file, &["--width", "200"]);
    assert!(big.as_bytes() == undo(w, h, cli), "with a target size");
    let (w, h, cli) = cli_decode(
        &dir,
        &file,
        &[
            "--width",
            "200",
            "--height",
            "138",
            "--region",
            "100,50,30,20",
        ],
    );
    assert!(rect == undo(w, h, cli), "read_rect");
}

/// On a GPU: `Backend::Cuda` renders every view (the upload kept between them) as
/// `gsimg decode --device cuda` does. Skipped without a CUDA device.
#[test]
fn cuda_renders_equal_gsimg_decode_on_the_gpu() {
    if let Err(e) = gsimg::cuda::CudaRenderer::new() {
        eprintln!("note: no CUDA device, viewer GPU check skipped ({e})");
        return;
    }
    let dir = TempDir::new("viewer-cuda");
    let bytes = gsi(41, 70, 50, ChannelLayout::GrayAlpha, None);
    let file = dir.path("p.gsi");
    std::fs::write(&file, &bytes).unwrap();
    let mut dec = Decoder::from_bytes(bytes, Limits::default()).unwrap();
    dec.set_backend(Backend::Cuda);
    for (w, h, region) in [
        (70, 50, None),
        (333, 100, None),
        (700, 500, Some((123, 45, 200, 150))),
    ] {
        let mut args = vec![
            "--width".to_string(),
            w.to_string(),
            "--height".into(),
            h.to_string(),
        ];
        let mut view = Viewport::full(w, h);
        if let Some((x, y, rw, rh)) = region {
            args.extend(["--region".into(), format!("{x},{y},{rw},{rh}")]);
            view = view.with_region(Region {
                x,
                y,
                width: rw,
                height: rh,
            });
        }
        let out = dir.path("gpu.png");
        let mut all: Vec<&str> = vec!["decode", &file, &out, "--device", "cuda", "--force"];
        all.extend(args.iter().map(String::as_str));
        let o = gsimg(&all);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let cli = image::open(&out).unwrap().into_bytes();
        let (frame, rendered) = dec.render_frame::<u8>(&view).unwrap();
        assert_eq!(rendered.device, view::Device::Cuda);
        assert!(frame.data == cli, "{w}x{h} {region:?}");
    }
}
