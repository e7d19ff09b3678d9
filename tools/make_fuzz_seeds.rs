//! Writes the fuzz seed corpora (`fuzz/seeds/<target>/`) from real files made by the encoders.
//!
//! `cargo run --release --example make_fuzz_seeds`

use anyhow::Result;
use gsimg::Frame;
use gsimg::encode::analytic::{self, AnalyticOptions};
use gsimg::format::{self, Metadata, Packing, WriteOptions};
use gsimg::{ChannelLayout, SplatImage};

fn picture(w: u32, h: u32, layout: ChannelLayout, seed: u32) -> Frame<f32> {
    let nc = layout.channels();
    let mut s = seed;
    let data = (0..w * h)
        .flat_map(|i| {
            let (x, y) = ((i % w) as f32 / w as f32, (i / w) as f32 / h as f32);
            s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            let noise = (s >> 24) as f32 / 2550.0;
            let v = [
                0.5 + 0.4 * (x * 9.0).sin() * y + noise,
                x,
                if (x - 0.5).abs() < 0.2 { 0.9 } else { 0.1 },
                0.3 + 0.7 * y,
            ];
            v.into_iter().take(nc).collect::<Vec<_>>()
        })
        .collect();
    Frame {
        width: w,
        height: h,
        layout,
        data,
    }
}

fn main() -> Result<()> {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/fuzz/seeds");
    let mut files: Vec<(String, Vec<u8>)> = Vec::new();
    let layouts = [
        ChannelLayout::Gray,
        ChannelLayout::GrayAlpha,
        ChannelLayout::Rgb,
        ChannelLayout::Rgba,
    ];
    for (i, layout) in layouts.into_iter().enumerate() {
        for (j, density) in [0.02, 0.3].into_iter().enumerate() {
            let mut opts = AnalyticOptions {
                density,
                ..Default::default()
            };
            opts.write.tile_cells = Some(2 + j as u16);
            if i == 2 {
                // Shaped like an ICC profile (format-spec.md §8): size field and `acsp`.
                let mut icc = vec![7u8; 160];
                icc[..4].copy_from_slice(&160u32.to_be_bytes());
                icc[36..40].copy_from_slice(b"acsp");
                opts.write.metadata = Metadata {
                    icc_profile: Some(icc),
                    orientation: Some(6),
                };
            }
            opts.write.packing = Some(if j == 1 {
                Packing::Bytes
            } else {
                Packing::Bits
            });
            let enc = analytic::encode(&picture(24 + 8 * i as u32, 20, layout, i as u32), &opts)?;
            files.push((format!("analytic_{i}_{j}.gsi"), enc.bytes));
        }
    }
    // A dense file: one Gaussian per pixel of a small picture, cell size 1.
    let dense = analytic::encode(
        &picture(16, 12, ChannelLayout::Rgb, 9),
        &AnalyticOptions {
            density: 1.0,
            ..Default::default()
        },
    )?;
    let img = SplatImage::new(16, 12, ChannelLayout::Rgb, dense.image.gaussians().to_vec())?;
    let enc = format::write(
        &img,
        &WriteOptions {
            cell_size: 1,
            tile_cells: Some(16),
            position_bits: 6,
            ..Default::default()
        },
    )?;
    files.push(("dense.gsi".into(), enc.bytes));
    for target in ["parse", "parse_and_render", "region"] {
        let dir = format!("{root}/{target}");
        std::fs::create_dir_all(&dir)?;
        for (name, bytes) in &files {
            // parse_and_render and region take 2 and 8 leading bytes of render parameters.
            let prefix: &[u8] = match target {
                "parse" => &[],
                "parse_and_render" => &[40, 30],
                _ => &[60, 50, 10, 7, 20, 30, 0, 0],
            };
            std::fs::write(format!("{dir}/{name}"), [prefix, bytes].concat())?;
        }
    }
    let dir = format!("{root}/roundtrip");
    std::fs::create_dir_all(&dir)?;
    let mut rt = vec![2, 40, 0, 30, 8, 3, 5, 6, 6, 8, 6, 8];
    for k in 0..40u8 {
        rt.extend((0..18).map(|i| k.wrapping_mul(37).wrapping_add(i * 11)));
    }
    std::fs::write(format!("{dir}/rgb.bin"), rt)?;
    let dir = format!("{root}/encode_pixels");
    std::fs::create_dir_all(&dir)?;
    let px: Vec<u8> = (0..24 * 24 * 4).map(|i| ((i * 7) % 256) as u8).collect();
    std::fs::write(
        format!("{dir}/rgba.bin"),
        [&[3u8, 20, 17, 60][..], &px].concat(),
    )?;
    let dir = format!("{root}/model_metadata");
    std::fs::create_dir_all(&dir)?;
    std::fs::write(
        format!("{dir}/compact.txt"),
        "gsimg.kind=compact\ngsimg.cell=8\ngsimg.per_cell=4\ngsimg.multiple=8\ngsimg.receptive_field=40\ngsimg.version=1\n\
         gsimg.pos_bits=5\ngsimg.scale_bits=6\ngsimg.scale_min=-2\ngsimg.scale_max=4\ngsimg.rot_bits=6\n\
         gsimg.color_bits=8,6,6\ngsimg.color_min=0,-0.5,-0.5\ngsimg.color_max=1,0.5,0.5\n",
    )?;
    std::fs::write(
        format!("{dir}/upscale.txt"),
        "gsimg.kind=upscale\ngsimg.cell=1\ngsimg.per_cell=4\ngsimg.multiple=1\ngsimg.receptive_field=40\ngsimg.version=1\n",
    )?;
    // Network output: a compact-like model (cell 8, K = 4, 5-bit quantizers) and an
    // upscale-like one (cell 1, K = 4), each with plausible floats (offsets, log2 σ, angles,
    // colours, presence) and one with a NaN among them.
    let dir = format!("{root}/network_output");
    std::fs::create_dir_all(&dir)?;
    let floats = |n: usize, nan: bool| -> Vec<u8> {
        (0..n)
            .flat_map(|i| {
                let v = if nan && i == 7 {
                    f32::NAN
                } else {
                    ((i * 37 % 101) as f32 / 50.0) - 1.0
                };
                v.to_le_bytes()
            })
            .collect()
    };
    let compact = [0u8, 3, 3, 6, 4, 8, 85, 4, 4, 4, 2, 159];
    let upscale = [1u8, 0, 3, 2, 5, 3, 0, 0, 0, 0, 2, 91];
    std::fs::write(
        format!("{dir}/compact.bin"),
        [&compact[..], &floats(200, false)].concat(),
    )?;
    std::fs::write(
        format!("{dir}/upscale.bin"),
        [&upscale[..], &floats(300, false)].concat(),
    )?;
    std::fs::write(
        format!("{dir}/nan.bin"),
        [&compact[..], &floats(64, true)].concat(),
    )?;
    println!("wrote seeds under {root}");
    Ok(())
}
