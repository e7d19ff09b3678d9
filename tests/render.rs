//! The CPU renderer against the spec (§3): a binary64 brute-force evaluation, region crops,
//! thread counts, and agreement between sizes.

use crate::common::{Rng, random_image};
use gsimg::render::render_cpu;
use gsimg::{ChannelLayout, Frame, Limits, Region, SplatImage, Viewport};

/// §3 evaluated directly in binary64 at one output pixel of the full output.
fn reference_pixel(img: &SplatImage, wo: u32, ho: u32, u: u32, v: u32) -> [f64; 4] {
    let (sx, sy) = (
        wo as f64 / img.width() as f64,
        ho as f64 / img.height() as f64,
    );
    let lambda = 1.0 / 12.0;
    let (px, py) = (u as f64 + 0.5, v as f64 + 0.5);
    let mut num = [0f64; 4];
    let mut den = 0f64;
    for g in img.gaussians() {
        let (s1, s2, th) = (g.scale[0] as f64, g.scale[1] as f64, g.rotation as f64);
        let (sin, cos) = th.sin_cos();
        let sxx = s1 * s1 * cos * cos + s2 * s2 * sin * sin;
        let syy = s1 * s1 * sin * sin + s2 * s2 * cos * cos;
        let sxy = (s1 * s1 - s2 * s2) * sin * cos;
        let (oxx, oyy, oxy) = (
            sx * sx * sxx + lambda,
            sy * sy * syy + lambda,
            sx * sy * sxy,
        );
        let det = oxx * oyy - oxy * oxy;
        let a = sx * sy * s1 * s2 / det.sqrt();
        let (dx, dy) = (px - sx * g.x as f64, py - sy * g.y as f64);
        let q = (oyy * dx * dx - 2.0 * oxy * dx * dy + oxx * dy * dy) / det;
        if q <= 9.0 {
            let w = a * (-0.5 * q).exp();
            den += w;
            for (n, &c) in num.iter_mut().zip(&g.color) {
                *n += w * c as f64;
            }
        }
    }
    num.map(|n| n / den.max(2f64.powi(-40)))
}

fn render(img: &SplatImage, view: &Viewport) -> Frame<f32> {
    render_cpu(img, view, &Limits::default()).unwrap()
}

#[test]
fn matches_binary64_evaluation_of_the_spec() {
    let mut rng = Rng::new(1);
    for (layout, w, h, wo, ho) in [
        (ChannelLayout::Rgb, 40, 30, 40, 30),
        (ChannelLayout::Rgba, 40, 30, 100, 75),
        (ChannelLayout::Gray, 37, 23, 111, 46),
        (ChannelLayout::GrayAlpha, 64, 48, 20, 15),
        (ChannelLayout::Rgb, 50, 50, 173, 61),
    ] {
        let img = random_image(&mut rng, w, h, layout, 120, 0.3, 6.0);
        let frame = render(&img, &Viewport::full(wo, ho));
        let nc = layout.channels();
        let mut worst = 0f64;
        for _ in 0..400 {
            let (u, v) = (rng.below(wo as u64) as u32, rng.below(ho as u64) as u32);
            let r = reference_pixel(&img, wo, ho, u, v);
            let px = &frame.data[((v * wo + u) as usize) * nc..][..nc];
            for (&got, &want) in px.iter().zip(&r) {
                worst = worst.max((got as f64 - want).abs());
            }
        }
        assert!(
            worst <= 1e-4,
            "{layout:?} {w}x{h} -> {wo}x{ho}: max abs error {worst}"
        );
    }
}

#[test]
fn region_is_the_crop_of_the_full_render_bit_for_bit() {
    let mut rng = Rng::new(2);
    let img = random_image(&mut rng, 90, 70, ChannelLayout::Rgb, 400, 0.2, 9.0);
    let view = Viewport::full(237, 181);
    let full = render(&img, &view);
    for _ in 0..12 {
        let x = rng.below(200) as u32;
        let y = rng.below(150) as u32;
        let w = 1 + rng.below((237 - x) as u64) as u32;
        let h = 1 + rng.below((181 - y) as u64) as u32;
        let part = render(
            &img,
            &view.with_region(Region {
                x,
                y,
                width: w,
                height: h,
            }),
        );
        for row in 0..h {
            let a = &full.data[((y + row) * 237 + x) as usize * 3..][..w as usize * 3];
            let b = &part.data[(row * w) as usize * 3..][..w as usize * 3];
            assert!(
                a.iter().zip(b).all(|(p, q)| p.to_bits() == q.to_bits()),
                "region {x},{y} {w}x{h} row {row}"
            );
        }
    }
}

#[test]
fn same_bytes_for_any_thread_count() {
    let mut rng = Rng::new(3);
    let img = random_image(&mut rng, 120, 80, ChannelLayout::Rgba, 3000, 0.3, 4.0);
    let view = Viewport::full(530, 349);
    let runs: Vec<Frame<f32>> = [1, 2, 3, 8]
        .iter()
        .map(|&n| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(n)
                .build()
                .unwrap()
                .install(|| render(&img, &view))
        })
        .collect();
    for r in &runs[1..] {
        assert!(
            r.data
                .iter()
                .zip(&runs[0].data)
                .all(|(a, b)| a.to_bits() == b.to_bits())
        );
    }
}

#[test]
fn rendering_at_2x_then_averaging_2x2_matches_1x() {
    let mut rng = Rng::new(4);
    // Gaussians a few pixels wide: the rule's filters agree to second order for smooth content.
    let img = random_image(&mut rng, 64, 48, ChannelLayout::Rgb, 150, 1.5, 5.0);
    let one = render(&img, &Viewport::full(64, 48));
    let two = render(&img, &Viewport::full(128, 96));
    let mut err = 0f64;
    let mut n = 0;
    for y in 2..46 {
        for x in 2..62 {
            for c in 0..3 {
                let at = |xx: usize, yy: usize| two.data[(yy * 128 + xx) * 3 + c] as f64;
                let avg = (at(2 * x, 2 * y)
                    + at(2 * x + 1, 2 * y)
                    + at(2 * x, 2 * y + 1)
                    + at(2 * x + 1, 2 * y + 1))
                    / 4.0;
                err += (avg - one.data[(y * 64 + x) * 3 + c] as f64).powi(2);
                n += 1;
            }
        }
    }
    let rmse = (err / n as f64).sqrt();
    assert!(rmse < 0.01, "RMSE between 2x-then-box and 1x: {rmse}");
}

#[test]
fn anisotropic_scales_and_downscaling_stay_in_range() {
    let mut rng = Rng::new(5);
    let img = random_image(&mut rng, 200, 100, ChannelLayout::Rgb, 2000, 0.2, 3.0);
    for (wo, ho) in [(20, 10), (13, 97), (400, 30), (1, 1)] {
        let f = render(&img, &Viewport::full(wo, ho));
        assert_eq!(f.data.len(), (wo * ho * 3) as usize);
        assert!(
            f.data.iter().all(|v| (0.0..=1.0).contains(v)),
            "{wo}x{ho}: values outside the Gaussians' colour range"
        );
    }
}

#[test]
fn uncovered_pixels_are_zero_and_empty_images_render() {
    let img = SplatImage::new(10, 10, ChannelLayout::Rgb, vec![]).unwrap();
    let f = render(&img, &Viewport::full(30, 30));
    assert!(f.data.iter().all(|&v| v == 0.0));
}

#[test]
fn absurd_requests_are_refused_quickly() {
    let mut rng = Rng::new(6);
    let img = random_image(&mut rng, 100, 100, ChannelLayout::Rgb, 10, 1.0, 2.0);
    let t = std::time::Instant::now();
    let e =
        render_cpu::<u8>(&img, &Viewport::full(200_000, 200_000), &Limits::default()).unwrap_err();
    assert!(matches!(e, gsimg::Error::LimitsExceeded { .. }), "{e}");
    assert!(e.to_string().contains("output pixel count"), "{e}");
    let bad_region = Viewport::full(100, 100).with_region(Region {
        x: 90,
        y: 0,
        width: 20,
        height: 10,
    });
    assert!(matches!(
        render_cpu::<u8>(&img, &bad_region, &Limits::default()),
        Err(gsimg::Error::InvalidParameter { .. })
    ));
    // Huge Gaussians at a large size: refused by the work limit, not rendered for minutes.
    let big = random_image(&mut rng, 100, 100, ChannelLayout::Rgb, 5000, 500.0, 900.0);
    let e = render_cpu::<u8>(&big, &Viewport::full(16000, 16000), &Limits::default()).unwrap_err();
    assert!(e.to_string().contains("render work"), "{e}");
    assert!(t.elapsed().as_secs_f64() < 2.0);
}
