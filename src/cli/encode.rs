//! `gsimg encode`: a picture to a `.gsi` file.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, ValueEnum};

use super::io::{read_input, write_output};
use gsimg::Limits;
use gsimg::encode::analytic::{self, AnalyticOptions};

/// Encode a picture (PNG, JPEG, WebP, TIFF, BMP, GIF) into a .gsi file.
#[derive(Args)]
pub struct EncodeArgs {
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
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Method {
    /// Classical encoder: quadtree placement, structure-tensor shapes, least-squares colours.
    Analytic,
}

pub fn run(args: EncodeArgs, limits: &Limits) -> Result<()> {
    let bytes = read_input(&args.input)?;
    let loaded = gsimg::encode::load_image(&bytes, limits)
        .with_context(|| args.input.display().to_string())?;
    let mut opts = match args.method {
        Method::Analytic => AnalyticOptions::with_quality(args.quality)?,
    };
    if let Some(d) = args.density {
        opts.density = d;
    }
    opts.write.metadata.icc_profile = loaded.icc_profile;
    let encoded = analytic::encode(&loaded.pixels, &opts)?;
    write_output(&args.output, &encoded.bytes)?;
    let px = loaded.pixels.width as f64 * loaded.pixels.height as f64;
    eprintln!(
        "gsimg: {}x{} -> {} Gaussians, {} bytes, {:.3} bpp",
        loaded.pixels.width,
        loaded.pixels.height,
        encoded.image.gaussian_count(),
        encoded.bytes.len(),
        encoded.bytes.len() as f64 * 8.0 / px
    );
    Ok(())
}
