//! The PyTorch training renderer (models/train/gsrender.py) against the CPU renderer, on the
//! fixtures it wrote (`tests/fixtures/torch_render/*.bin`, layout in models/train/make_fixture.py):
//! max absolute difference ≤ 1e-4 (spec §3.6).

use crate::common::max_abs_diff;
use gsimg::render::render_cpu;
use gsimg::{ChannelLayout, Frame, Gaussian, Limits, SplatImage, Viewport};

struct Fixture {
    image: SplatImage,
    out: (u32, u32),
    expected: Vec<f32>,
}

fn parse(bytes: &[u8]) -> Fixture {
    assert_eq!(&bytes[..4], b"GSRF");
    let u = |i: usize| u32::from_le_bytes(bytes[4 + 4 * i..8 + 4 * i].try_into().unwrap());
    assert_eq!(u(0), 1, "fixture version");
    let (w, h, wo, ho, c, n) = (u(1), u(2), u(3), u(4), u(5) as usize, u(6) as usize);
    let mut floats = bytes[32..]
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()));
    let gaussians = (0..n)
        .map(|_| {
            let mut v: Vec<f32> = floats.by_ref().take(5 + c).collect();
            v.resize(9, 0.0);
            Gaussian {
                x: v[0],
                y: v[1],
                scale: [v[2], v[3]],
                rotation: v[4],
                color: [v[5], v[6], v[7], v[8]],
            }
        })
        .collect();
    let expected: Vec<f32> = floats.collect();
    assert_eq!(expected.len(), (wo * ho) as usize * c);
    let layout = ChannelLayout::from_channels(c).unwrap();
    Fixture {
        image: SplatImage::new(w, h, layout, gaussians).unwrap(),
        out: (wo, ho),
        expected,
    }
}

#[test]
fn pytorch_training_renderer_matches_the_cpu_renderer() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/torch_render");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        eprintln!(
            "no {} yet: the training renderer has not written fixtures",
            dir.display()
        );
        return;
    };
    let mut cases = 0;
    for e in entries {
        let path = e.unwrap().path();
        if path.extension().is_none_or(|x| x != "bin") {
            continue;
        }
        let f = parse(&std::fs::read(&path).unwrap());
        let frame: Frame<f32> = render_cpu(
            &f.image,
            &Viewport::full(f.out.0, f.out.1),
            &Limits::default(),
        )
        .unwrap();
        let worst = max_abs_diff(&frame.data, &f.expected);
        assert!(
            worst <= 1e-4,
            "{}: max abs difference {worst}",
            path.display()
        );
        cases += 1;
    }
    assert!(cases > 0, "{} holds no .bin fixtures", dir.display());
}
