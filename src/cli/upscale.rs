//! `gsimg upscale`: a picture to a larger (or any other size) picture through the dense
//! upscale network: encode to Gaussians, render at the new size (`--device` chooses where both
//! the network and the renderer run; the renderer is `decode`'s, CUDA or CPU).

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Args;

use super::decode::{RenderDevice, SizeArgs, render_frame, write_frame};
use super::encode::{DeviceArg, NetworkArgs, TermProgress};
use super::io::{OutFormat, read_input, write_output};
use gsimg::Limits;
use gsimg::encode::network::ModelKind;

/// Upscale a picture by any factor (e.g. 2.5) with the encoder network.
#[derive(Args)]
pub struct UpscaleArgs {
    /// Input picture, or - for stdin.
    input: PathBuf,
    /// Output picture (.png, .jpg, .webp), or - for stdout (with --format).
    output: PathBuf,
    #[command(flatten)]
    size: SizeArgs,
    /// Output format (default: from the output file's extension; PNG for stdout).
    #[arg(long, value_enum)]
    format: Option<OutFormat>,
    #[command(flatten)]
    net: NetworkArgs,
}

pub fn run(args: UpscaleArgs, limits: &Limits) -> Result<()> {
    if args.size.scale.is_none() && args.size.width.is_none() && args.size.height.is_none() {
        bail!("give the output size: --scale S, --width W or --height H");
    }
    let fmt = match args.format {
        Some(f) => f,
        None if args.output.as_os_str() == "-" => OutFormat::Png,
        None => OutFormat::from_path(&args.output)?,
    };
    let bytes = read_input(&args.input)?;
    let loaded = gsimg::encode::load_image(&bytes, limits)
        .with_context(|| args.input.display().to_string())?;
    let (w, h) = (loaded.pixels.width, loaded.pixels.height);
    let view = args.size.viewport(w, h)?;
    view.validate(limits)?;
    let progress = TermProgress::new("upscaling");
    let encoder = args.net.options(ModelKind::Upscale, &progress).build()?;
    let out = encoder.gaussians(&loaded.pixels);
    progress.finish();
    let out = out?;
    // `--device` picks where both the network and the renderer run.
    let render_device = match args.net.device {
        DeviceArg::Auto => RenderDevice::Auto,
        DeviceArg::Cpu => RenderDevice::Cpu,
        DeviceArg::Cuda => RenderDevice::Cuda,
    };
    let frame = render_frame(&out.image, &view, limits, render_device)?;
    let encoded = write_frame(fmt, frame, None, loaded.icc_profile.as_deref())?;
    write_output(&args.output, &encoded)?;
    eprintln!(
        "gsimg: {w}x{h} -> {}x{} ({} Gaussians, network on {} in {:.2} s, {} tile{})",
        view.width,
        view.height,
        out.image.gaussian_count(),
        out.provider,
        out.network_seconds,
        out.tiles,
        if out.tiles == 1 { "" } else { "s" }
    );
    Ok(())
}
