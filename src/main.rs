//! The `gsimg` command-line tool.
//!
//! Exit status: 0 on success, 1 when the work failed (bad input file, limits, I/O), 2 when the
//! command line is wrong. Errors are one line on stderr: `gsimg: error: ...`.

mod cli {
    pub mod io;
}

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand, ValueEnum};

use cli::io::{OutFormat, encode_image, read_input, write_output};
use gsimg::encode::analytic::{self, AnalyticOptions};
use gsimg::{Frame, Limits, Region, Viewport, format, render};

#[derive(Parser)]
#[command(
    name = "gsimg",
    version,
    about = "Gaussian-splatting image codec: encode pictures to .gsi, render them at any size"
)]
struct Cli {
    /// Worker threads (default: all cores).
    #[arg(long, global = true)]
    threads: Option<usize>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Encode a picture (PNG, JPEG, WebP, TIFF, BMP, GIF) into a .gsi file.
    Encode {
        /// Input picture, or - for stdin.
        input: PathBuf,
        /// Output .gsi file, or - for stdout.
        output: PathBuf,
        /// Encoder to use.
        #[arg(long, value_enum, default_value_t = Method::Analytic)]
        method: Method,
        /// Quality from 1 (smallest file) to 100.
        #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u8).range(1..=100))]
        quality: u8,
        /// Gaussians per native pixel (overrides --quality), e.g. 0.025.
        #[arg(long)]
        density: Option<f64>,
    },
    /// Render a .gsi file to a picture at any size or region.
    Decode {
        /// Input .gsi file, or - for stdin.
        input: PathBuf,
        /// Output picture (.png, .jpg, .webp), or - for stdout (with --format).
        output: PathBuf,
        /// Scale factor of the output (e.g. 2.5); default 1.
        #[arg(long, conflicts_with_all = ["width", "height"])]
        scale: Option<f64>,
        /// Output width in pixels (height follows the aspect ratio unless given).
        #[arg(long)]
        width: Option<u32>,
        /// Output height in pixels (width follows the aspect ratio unless given).
        #[arg(long)]
        height: Option<u32>,
        /// Render only this rectangle of the output: X,Y,W,H in output pixels.
        #[arg(long, value_parser = parse_region)]
        region: Option<Region>,
        /// Output format (default: from the output file's extension; PNG for stdout).
        #[arg(long, value_enum)]
        format: Option<OutFormat>,
    },
    /// Describe a .gsi file: size, channels, Gaussians, bytes per section and per attribute.
    Info {
        /// Input .gsi file, or - for stdin.
        input: PathBuf,
    },
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Method {
    /// Classical encoder: quadtree placement, structure-tensor shapes, least-squares colours.
    Analytic,
}

fn parse_region(s: &str) -> Result<Region, String> {
    let v: Vec<u32> = s
        .split(',')
        .map(|p| p.trim().parse::<u32>())
        .collect::<Result<_, _>>()
        .map_err(|_| format!("'{s}': expected X,Y,W,H as four whole numbers"))?;
    match v[..] {
        [x, y, width, height] if width > 0 && height > 0 => Ok(Region {
            x,
            y,
            width,
            height,
        }),
        [_, _, _, _] => Err(format!("'{s}': width and height must be at least 1")),
        _ => Err(format!("'{s}': expected X,Y,W,H as four whole numbers")),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(n) = cli.threads {
        if let Err(e) = rayon::ThreadPoolBuilder::new()
            .num_threads(n.max(1))
            .build_global()
        {
            eprintln!("gsimg: error: cannot start {n} threads: {e}");
            return ExitCode::from(1);
        }
    }
    match run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let msg: Vec<String> = e.chain().map(|c| c.to_string()).collect();
            eprintln!("gsimg: error: {}", msg.join(": "));
            ExitCode::from(1)
        }
    }
}

fn run(command: Command) -> Result<()> {
    let limits = Limits::default();
    match command {
        Command::Encode {
            input,
            output,
            method,
            quality,
            density,
        } => {
            let bytes = read_input(&input)?;
            let loaded = gsimg::encode::load_image(&bytes, &limits)
                .with_context(|| input.display().to_string())?;
            let mut opts = match method {
                Method::Analytic => AnalyticOptions::with_quality(quality)?,
            };
            if let Some(d) = density {
                opts.density = d;
            }
            opts.write.metadata.icc_profile = loaded.icc_profile;
            let encoded = analytic::encode(&loaded.pixels, &opts)?;
            write_output(&output, &encoded.bytes)?;
            let px = loaded.pixels.width as f64 * loaded.pixels.height as f64;
            eprintln!(
                "gsimg: {}x{} -> {} Gaussians, {} bytes, {:.3} bpp",
                loaded.pixels.width,
                loaded.pixels.height,
                encoded.image.gaussian_count(),
                encoded.bytes.len(),
                encoded.bytes.len() as f64 * 8.0 / px
            );
        }
        Command::Decode {
            input,
            output,
            scale,
            width,
            height,
            region,
            format: fmt,
        } => {
            let fmt = match fmt {
                Some(f) => f,
                None if output.as_os_str() == "-" => OutFormat::Png,
                None => OutFormat::from_path(&output)?,
            };
            let bytes = read_input(&input)?;
            let mut decoder = format::Decoder::new(&bytes[..], limits)
                .with_context(|| input.display().to_string())?;
            let h = decoder.header().clone();
            let mut view = match (scale, width, height) {
                (Some(s), _, _) => Viewport::scaled(h.width, h.height, s)?,
                (None, Some(w), Some(hh)) => Viewport::full(w, hh),
                (None, Some(w), None) => Viewport::full(w, aspect(h.height, w, h.width)?),
                (None, None, Some(hh)) => Viewport::full(aspect(h.width, hh, h.height)?, hh),
                (None, None, None) => Viewport::full(h.width, h.height),
            };
            if let Some(r) = region {
                view = view.with_region(r);
            }
            view.validate(&limits)?;
            let image = if region.is_some() {
                decoder.decode_region(&view)
            } else {
                decoder.decode_all()
            }
            .with_context(|| input.display().to_string())?;
            let frame: Frame<u8> = render::render_cpu(&image, &view, &limits)?;
            let icc = decoder.metadata().icc_profile.clone();
            let encoded =
                orient_and_encode(fmt, frame, decoder.metadata().orientation, icc.as_deref())?;
            write_output(&output, &encoded)?;
        }
        Command::Info { input } => info(&input, &limits)?,
    }
    Ok(())
}

/// `other × new / old`, rounded, at least 1.
fn aspect(other: u32, new: u32, old: u32) -> Result<u32> {
    let v = (other as f64 * new as f64 / old as f64).round().max(1.0);
    if v > u32::MAX as f64 {
        bail!("the output size {new} gives an aspect-preserving size over 2^32");
    }
    Ok(v as u32)
}

fn orient_and_encode(
    fmt: OutFormat,
    frame: Frame<u8>,
    orientation: Option<u8>,
    icc: Option<&[u8]>,
) -> Result<Vec<u8>> {
    let o = orientation.and_then(image::metadata::Orientation::from_exif);
    match o {
        None | Some(image::metadata::Orientation::NoTransforms) => encode_image(
            fmt,
            frame.width,
            frame.height,
            frame.channels,
            &frame.data,
            icc,
        ),
        Some(o) => {
            let (w, h, c) = (frame.width, frame.height, frame.channels);
            let mut img: image::DynamicImage = match c {
                1 => image::GrayImage::from_raw(w, h, frame.data).map(Into::into),
                2 => image::GrayAlphaImage::from_raw(w, h, frame.data).map(Into::into),
                3 => image::RgbImage::from_raw(w, h, frame.data).map(Into::into),
                _ => image::RgbaImage::from_raw(w, h, frame.data).map(Into::into),
            }
            .context("internal error: frame size mismatch")?;
            img.apply_orientation(o);
            let bytes = match c {
                1 => img.to_luma8().into_raw(),
                2 => img.to_luma_alpha8().into_raw(),
                3 => img.to_rgb8().into_raw(),
                _ => img.to_rgba8().into_raw(),
            };
            encode_image(fmt, img.width(), img.height(), c, &bytes, icc)
        }
    }
}

fn info(input: &Path, limits: &Limits) -> Result<()> {
    let bytes = read_input(input)?;
    let a = format::analyze(&bytes, limits, 19).with_context(|| input.display().to_string())?;
    let d = format::Decoder::new(&bytes[..], *limits)?;
    let h = d.header();
    let n = h.gaussian_count;
    println!("file:        {}", input.display());
    println!("version:     1.{}", h.version_minor);
    println!("size:        {} x {} native pixels", h.width, h.height);
    println!(
        "channels:    {:?} ({:?} colour model)",
        h.layout, h.color_model
    );
    println!(
        "gaussians:   {n} ({:.4} per pixel)",
        n as f64 / (h.width as f64 * h.height as f64)
    );
    let (tx, ty) = h.tiles();
    println!(
        "tiling:      cell {} px, tile {} px, {} x {} tiles",
        h.cell_size,
        h.tile_size(),
        tx,
        ty
    );
    println!(
        "file size:   {} bytes, {:.4} bits per pixel, {:.2} bits per Gaussian",
        a.file_bytes,
        a.file_bytes as f64 * 8.0 / (h.width as f64 * h.height as f64),
        a.file_bytes as f64 * 8.0 / n.max(1) as f64
    );
    if let Some(o) = d.metadata().orientation {
        println!("orientation: {o}");
    }
    if let Some(icc) = &d.metadata().icc_profile {
        println!("icc profile: {} bytes", icc.len());
    }
    println!("\nsections:    tag   count      bytes");
    for (tag, count, b) in &a.sections {
        println!("             {tag:<5} {count:>5} {b:>10}");
    }
    println!("\nattribute      bits  raw bits/G  zstd bits/G (each stream alone)");
    let streams = h.streams();
    for (i, (name, raw, packed)) in a.streams.iter().enumerate() {
        let bits = if i == 0 {
            "-".to_string()
        } else {
            streams[i - 1].bits.to_string()
        };
        println!("  {name:<12} {bits:>5} {raw:>11.2} {packed:>12.2}");
    }
    let total: f64 = a.streams.iter().map(|s| s.2).sum();
    println!(
        "  {:<12} {:>5} {:>11.2} {:>12.2}",
        "total",
        h.bits_per_gaussian(),
        a.streams.iter().map(|s| s.1).sum::<f64>(),
        total
    );
    Ok(())
}
