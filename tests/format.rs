//! `.gsi` round trips (§5–§7): what is written is what is read.

use crate::common::{Rng, random_image};
use gsimg::format::{self, ColorModel, Decoder, Metadata, Packing, WriteOptions};
use gsimg::render::render_cpu;
use gsimg::{ChannelLayout, Frame, Limits, Region, Viewport};

fn options_variants() -> Vec<WriteOptions> {
    let base = WriteOptions::default();
    vec![
        base.clone(),
        WriteOptions {
            packing: Some(Packing::Bytes),
            predict_values: false,
            ..base.clone()
        },
        WriteOptions {
            cell_size: 1,
            tile_cells: Some(16),
            position_bits: 8,
            ..base.clone()
        },
        WriteOptions {
            cell_size: 5,
            tile_cells: Some(7),
            position_bits: 0,
            scale_bits: 0,
            rotation_bits: 16,
            luma_bits: 16,
            chroma_bits: 1,
            alpha_bits: 3,
            color_model: ColorModel::Identity,
            ..base.clone()
        },
        WriteOptions {
            cell_size: 64,
            tile_cells: Some(1),
            channel_ranges: Some([(0.0, 1.0); 4]),
            scale_range: Some((-2.0, 3.0)),
            ..base
        },
    ]
}

#[test]
fn write_then_read_gives_the_quantized_gaussians() {
    let mut rng = Rng::new(10);
    for layout in [
        ChannelLayout::Gray,
        ChannelLayout::GrayAlpha,
        ChannelLayout::Rgb,
        ChannelLayout::Rgba,
    ] {
        for opts in options_variants() {
            let img = random_image(&mut rng, 97, 61, layout, 700, 0.3, 12.0);
            let enc = format::write(&img, &opts).unwrap();
            let file = format::read(&enc.bytes, &Limits::default()).unwrap();
            assert_eq!(file.image, enc.image, "{layout:?} {opts:?}");
            assert_eq!(file.header, enc.header);
            // Writing what was read gives the same bytes: quantization is idempotent.
            let again = format::write(
                &file.image,
                &WriteOptions {
                    scale_range: Some((enc.header.scale.min, enc.header.scale.max)),
                    channel_ranges: Some(ranges(&enc.header)),
                    ..opts.clone()
                },
            )
            .unwrap();
            assert_eq!(again.bytes, enc.bytes, "{layout:?} {opts:?}");
        }
    }
}

fn ranges(h: &format::Header) -> [(f32, f32); 4] {
    let mut r = [(0.0, 0.0); 4];
    for (i, q) in h.channels.iter().enumerate() {
        r[i] = (q.min, q.max);
    }
    r
}

#[test]
fn quantization_error_is_within_half_a_step() {
    let mut rng = Rng::new(11);
    let img = random_image(&mut rng, 200, 150, ChannelLayout::Rgb, 2000, 0.5, 8.0);
    let opts = WriteOptions {
        color_model: ColorModel::Identity,
        ..Default::default()
    };
    let enc = format::write(&img, &opts).unwrap();
    let h = &enc.header;
    // Match each original to its stored record by re-quantizing (the file is in tile order).
    let mut stored = enc.image.gaussians().to_vec();
    let key = |g: &gsimg::Gaussian| format::quantize(h, g);
    stored.sort_by_key(key);
    let mut orig = img.gaussians().to_vec();
    orig.sort_by_key(key);
    let pos_step = h.cell_size as f32 / (1 << h.position.bits) as f32;
    for (a, b) in orig.iter().zip(&stored) {
        if a.x >= 0.0 && a.x < 200.0 && a.y >= 0.0 && a.y < 150.0 {
            assert!((a.x - b.x).abs() <= pos_step / 2.0 + 1e-4, "{a:?} {b:?}");
            assert!((a.y - b.y).abs() <= pos_step / 2.0 + 1e-4);
        }
        // Stored records are canonical (§5.2): the larger σ first.
        let step = (h.scale.max - h.scale.min) / h.scale.max_code() as f32;
        let sorted = |s: [f32; 2]| [s[0].max(s[1]), s[0].min(s[1])];
        let (sa, sb) = (sorted(a.scale), sorted(b.scale));
        for k in 0..2 {
            assert!((sa[k].log2() - sb[k].log2()).abs() <= step / 2.0 + 1e-4);
        }
        for c in 0..3 {
            let q = &h.channels[c];
            let step = (q.max - q.min) / q.max_code() as f32;
            assert!((a.color[c] - b.color[c]).abs() <= step / 2.0 + 1e-5);
        }
    }
}

#[test]
fn region_decode_reads_fewer_tiles_and_renders_the_same_pixels() {
    let mut rng = Rng::new(12);
    let img = random_image(&mut rng, 600, 400, ChannelLayout::Rgb, 6000, 0.5, 6.0);
    let opts = WriteOptions {
        tile_cells: Some(8),
        ..Default::default()
    };
    let enc = format::write(&img, &opts).unwrap();
    let limits = Limits::default();
    let dec = Decoder::new(&enc.bytes[..], limits).unwrap();
    let full_view = Viewport::full(900, 600);
    let full: Frame<u8> = render_cpu(&enc.image, &full_view, &limits).unwrap();
    for region in [
        Region {
            x: 0,
            y: 0,
            width: 100,
            height: 80,
        },
        Region {
            x: 455,
            y: 301,
            width: 200,
            height: 33,
        },
        Region {
            x: 899,
            y: 599,
            width: 1,
            height: 1,
        },
    ] {
        let view = full_view.with_region(region);
        let tiles = dec.tiles_for(&view);
        assert!(
            tiles.len() < dec.index().len(),
            "{region:?} needs {} of {} tiles",
            tiles.len(),
            dec.index().len()
        );
        let part = dec.decode_region(&view).unwrap();
        assert!(part.gaussian_count() < enc.image.gaussian_count());
        let got: Frame<u8> = render_cpu(&part, &view, &limits).unwrap();
        for row in 0..region.height {
            let a = &full.data[((region.y + row) * 900 + region.x) as usize * 3..]
                [..region.width as usize * 3];
            assert_eq!(
                a,
                &got.data[(row * region.width) as usize * 3..][..region.width as usize * 3],
                "{region:?}"
            );
        }
    }
}

#[test]
fn region_decode_from_a_file_reads_only_what_it_needs() {
    let enc = crate::common::tiled_file(13, 512, 512, 8000, 3.0);
    let path = std::env::temp_dir().join(format!("gsimg-region-{}.gsi", std::process::id()));
    std::fs::write(&path, &enc.bytes).unwrap();
    struct Counting<R> {
        inner: R,
        read: std::rc::Rc<std::cell::Cell<u64>>,
    }
    impl<R: std::io::Read> std::io::Read for Counting<R> {
        fn read(&mut self, b: &mut [u8]) -> std::io::Result<usize> {
            let n = self.inner.read(b)?;
            self.read.set(self.read.get() + n as u64);
            Ok(n)
        }
    }
    impl<R: std::io::Seek> std::io::Seek for Counting<R> {
        fn seek(&mut self, p: std::io::SeekFrom) -> std::io::Result<u64> {
            self.inner.seek(p)
        }
    }
    let read = std::rc::Rc::new(std::cell::Cell::new(0));
    let src = format::SeekSource::new(Counting {
        inner: std::fs::File::open(&path).unwrap(),
        read: read.clone(),
    })
    .unwrap();
    let dec = Decoder::new(src, Limits::default()).unwrap();
    let view = Viewport::full(512, 512).with_region(Region {
        x: 10,
        y: 10,
        width: 50,
        height: 50,
    });
    let part = dec.decode_region(&view).unwrap();
    std::fs::remove_file(&path).ok();
    assert!(part.gaussian_count() > 0);
    assert!(
        read.get() * 4 < enc.bytes.len() as u64,
        "read {} of {} bytes",
        read.get(),
        enc.bytes.len()
    );
}

#[test]
fn metadata_round_trips_and_unknown_ancillary_sections_are_skipped() {
    let mut rng = Rng::new(14);
    let img = random_image(&mut rng, 50, 40, ChannelLayout::Rgb, 50, 1.0, 3.0);
    let mut icc: Vec<u8> = (0..3000u32).map(|i| (i * 7 % 251) as u8).collect();
    // What makes it look like an ICC profile (§8): its size in the header, and `acsp`.
    icc[..4].copy_from_slice(&3000u32.to_be_bytes());
    icc[36..40].copy_from_slice(b"acsp");
    let metadata = Metadata {
        icc_profile: Some(icc.clone()),
        orientation: Some(6),
    };
    let enc = format::write(
        &img,
        &WriteOptions {
            metadata: metadata.clone(),
            ..Default::default()
        },
    )
    .unwrap();
    let file = format::read(&enc.bytes, &Limits::default()).unwrap();
    assert_eq!(file.metadata, metadata);

    // Insert an unknown ancillary section before TIDX: still readable, same picture.
    let head_len = 8 + 12 + u32::from_le_bytes(enc.bytes[12..16].try_into().unwrap()) as usize;
    let mut with_extra = enc.bytes[..head_len].to_vec();
    let payload = b"hello";
    let mut sec = b"xTRA".to_vec();
    sec.extend((payload.len() as u32).to_le_bytes());
    sec.extend(payload);
    let crc = crc32fast::hash(&sec);
    sec.extend(crc.to_le_bytes());
    with_extra.extend(&sec);
    with_extra.extend(&enc.bytes[head_len..]);
    assert_eq!(
        format::read(&with_extra, &Limits::default()).unwrap().image,
        enc.image
    );

    // The same section with a critical tag is refused by name.
    let mut critical = with_extra.clone();
    critical[head_len] = b'X';
    let fixed = crc32fast::hash(&critical[head_len..head_len + 4 + 4 + payload.len()]);
    critical[head_len + 13..head_len + 17].copy_from_slice(&fixed.to_le_bytes());
    let e = format::read(&critical, &Limits::default()).unwrap_err();
    assert!(
        e.to_string().contains("unknown critical section XTRA"),
        "{e}"
    );
}

#[test]
fn newer_minor_versions_are_read_and_other_majors_refused() {
    let mut rng = Rng::new(15);
    let img = random_image(&mut rng, 30, 30, ChannelLayout::Gray, 20, 1.0, 3.0);
    let enc = format::write(&img, &WriteOptions::default()).unwrap();
    let rewrite_head = |f: &dyn Fn(&mut Vec<u8>)| {
        let len = u32::from_le_bytes(enc.bytes[12..16].try_into().unwrap()) as usize;
        let mut payload = enc.bytes[16..16 + len].to_vec();
        f(&mut payload);
        let mut out = enc.bytes[..8].to_vec();
        let mut sec = b"HEAD".to_vec();
        sec.extend((payload.len() as u32).to_le_bytes());
        sec.extend(&payload);
        let crc = crc32fast::hash(&sec);
        sec.extend(crc.to_le_bytes());
        out.extend(sec);
        out.extend(&enc.bytes[8 + 12 + len..]);
        out
    };
    // 1.3 with four extra header bytes: accepted, extra bytes ignored.
    let newer = rewrite_head(&|p| {
        p[1] = 3;
        p.extend([1, 2, 3, 4]);
    });
    let file = format::read(&newer, &Limits::default()).unwrap();
    assert_eq!(file.image, enc.image);
    assert_eq!(file.header.version_minor, 3);
    // This reader's own minor (the writer's) with extra bytes: refused.
    let e = format::read(&rewrite_head(&|p| p.extend([0; 4])), &Limits::default()).unwrap_err();
    assert!(
        e.to_string().contains("invalid length in section HEAD"),
        "{e}"
    );
    // 2.x: refused.
    let e = format::read(&rewrite_head(&|p| p[0] = 2), &Limits::default()).unwrap_err();
    assert!(e.to_string().contains("unsupported version 2."), "{e}");
}

/// Version 1.1's context coding (§7.4–7.6) stores exactly what version 1.0's zstd streams
/// store, for every layout and colour model, bit widths from 0 to 16, several tiles, empty
/// cells and tiles; and writing a decoded 1.1 file again gives the same bytes.
#[test]
fn context_coding_stores_what_zstd_coding_stores() {
    use gsimg::format::Coding;
    let mut rng = Rng::new(19);
    let layouts = [
        ChannelLayout::Gray,
        ChannelLayout::GrayAlpha,
        ChannelLayout::Rgb,
        ChannelLayout::Rgba,
    ];
    for (case, bits) in [(5u8, 6u8), (0, 0), (1, 1), (16, 16), (3, 9)]
        .into_iter()
        .enumerate()
    {
        let layout = layouts[case % 4];
        // Gaussians on the left half only: the right tiles are empty.
        let mut img = random_image(&mut rng, 97, 61, layout, 300 + 200 * case, 0.3, 6.0);
        let gs: Vec<gsimg::Gaussian> = img
            .gaussians()
            .iter()
            .map(|g| gsimg::Gaussian { x: g.x * 0.5, ..*g })
            .collect();
        img = gsimg::SplatImage::new(97, 61, layout, gs).unwrap();
        for color_model in [ColorModel::Identity, ColorModel::YCbCr] {
            let opts = |coding| WriteOptions {
                cell_size: 4 + case as u16,
                tile_cells: Some(5),
                position_bits: bits.0,
                scale_bits: bits.1,
                // The last case without rotations: non-canonical scale pairs (§7.4.2).
                rotation_bits: if case == 4 { 0 } else { bits.1 },
                luma_bits: bits.1.max(bits.0),
                chroma_bits: bits.0,
                alpha_bits: bits.1,
                color_model,
                coding,
                ..Default::default()
            };
            let z = format::write(&img, &opts(Coding::Zstd)).unwrap();
            let c = format::write(&img, &opts(Coding::Context)).unwrap();
            assert_eq!((z.header.version_minor, c.header.version_minor), (0, 1));
            let rz = format::read(&z.bytes, &Limits::default()).unwrap();
            let rc = format::read(&c.bytes, &Limits::default()).unwrap();
            assert_eq!(rz.image, z.image, "case {case}");
            assert_eq!(rc.image, c.image, "case {case}");
            assert_eq!(rc.image, rz.image, "case {case} {layout:?} {color_model:?}");
            let again = format::write(
                &rc.image,
                &WriteOptions::matching(&rc.header, Coding::Context),
            )
            .unwrap();
            assert_eq!(
                again.bytes, c.bytes,
                "case {case}: rewriting changed the bytes"
            );
        }
    }
}
