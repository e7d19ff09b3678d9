//! Sharing and file faults (issue 5 §4): one decoder used by many threads, and a file replaced,
//! overwritten or truncated while a decoder has it open.

use std::sync::Arc;

use crate::common::{Rng, random_image};
use gsimg::format::{self, Decoder, FileSource, WriteOptions};
use gsimg::render::render_cpu;
use gsimg::{ChannelLayout, Frame, Limits, Region, Viewport};

fn temp(name: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("gsimg-rob-{name}-{}.gsi", std::process::id()))
}

#[test]
fn one_decoder_shared_by_many_threads_rendering_regions() {
    let enc = crate::common::tiled_file(30, 400, 300, 5000, 4.0);
    let path = temp("shared");
    std::fs::write(&path, &enc.bytes).unwrap();
    let dec = Arc::new(Decoder::new(FileSource::open(&path).unwrap(), Limits::default()).unwrap());
    let view = Viewport::full(800, 600);
    let full: Arc<Frame<u8>> = Arc::new(render_cpu(&enc.image, &view, &Limits::default()).unwrap());
    let handles: Vec<_> = (0..8u32)
        .map(|k| {
            let (dec, full) = (dec.clone(), full.clone());
            std::thread::spawn(move || {
                for j in 0..4u32 {
                    let r = Region {
                        x: 90 * k,
                        y: 140 * j,
                        width: 70,
                        height: 50,
                    };
                    let v = view.with_region(r);
                    let part = dec.decode_region(&v).unwrap();
                    let got: Frame<u8> = render_cpu(&part, &v, &Limits::default()).unwrap();
                    for row in 0..r.height {
                        let a = &full.data[((r.y + row) * 800 + r.x) as usize * 3..]
                            [..r.width as usize * 3];
                        assert_eq!(
                            a,
                            &got.data[(row * r.width) as usize * 3..][..r.width as usize * 3]
                        );
                    }
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    std::fs::remove_file(&path).ok();
}

#[test]
fn a_file_replaced_overwritten_or_truncated_while_open_never_panics() {
    let mut rng = Rng::new(31);
    let a = format::write(
        &random_image(&mut rng, 300, 200, ChannelLayout::Rgb, 3000, 0.5, 3.0),
        &WriteOptions {
            tile_cells: Some(8),
            ..Default::default()
        },
    )
    .unwrap();
    let b = format::write(
        &random_image(&mut rng, 300, 200, ChannelLayout::Rgb, 3000, 0.5, 3.0),
        &WriteOptions {
            tile_cells: Some(8),
            ..Default::default()
        },
    )
    .unwrap();
    let path = temp("replaced");

    // Replaced by a rename: the open decoder keeps reading the file it opened.
    std::fs::write(&path, &a.bytes).unwrap();
    let dec = Decoder::new(FileSource::open(&path).unwrap(), Limits::default()).unwrap();
    let other = temp("replacement");
    std::fs::write(&other, &b.bytes).unwrap();
    std::fs::rename(&other, &path).unwrap();
    assert_eq!(dec.decode_all().unwrap(), a.image);

    // Overwritten in place with another file of the same kind: an error, not a panic.
    std::fs::write(&path, &a.bytes).unwrap();
    let dec = Decoder::new(FileSource::open(&path).unwrap(), Limits::default()).unwrap();
    std::fs::write(&path, &b.bytes).unwrap();
    match dec.decode_all() {
        Ok(img) => assert!(
            img == a.image || img == b.image,
            "a mixture of two files decoded"
        ),
        Err(e) => assert!(
            matches!(
                e,
                gsimg::Error::Format(_) | gsimg::Error::Io(_) | gsimg::Error::LimitsExceeded { .. }
            ),
            "{e}"
        ),
    }

    // Truncated while open: reads past the new end fail cleanly.
    std::fs::write(&path, &a.bytes).unwrap();
    let dec = Decoder::new(FileSource::open(&path).unwrap(), Limits::default()).unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(a.bytes.len() as u64 / 2)
        .unwrap();
    assert!(dec.decode_all().is_err());
    std::fs::remove_file(&path).ok();
}
