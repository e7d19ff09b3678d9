//! `gsimg upscale`: a picture to a larger (or any other size) picture through the dense
//! upscale network: encode to Gaussians, render at the new size (`--device` chooses where both
//! the network and the renderer run; the renderer is `decode`'s, CUDA or CPU).

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;

use super::decode::{RenderDevice, SizeArgs, on_device, report_fallback, write_frame};
use super::encode::{DeviceArg, NetworkArgs};
use super::io::{OutFormat, read_input};
use super::output::{Output, Writes};
use super::report::{self, Progress};
use super::{Context as RunContext, usage};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use gsimg::ProgressSink;
use gsimg::network::ModelKind;
use gsimg::view::{self, Renderer, UpscaleOptions};

/// Upscale a picture by any factor (e.g. 2.5) with the upscale network.
///
/// Give the output size with --scale, --width or --height.
#[derive(Args)]
#[command(group(clap::ArgGroup::new("size").args(["scale", "width", "height"]).required(true).multiple(true)))]
pub struct UpscaleArgs {
    /// Input picture, or - for stdin.
    input: PathBuf,
    /// Output picture (.png, .jpg, .webp, .tif, .bmp), or - for stdout (PNG unless --format).
    output: PathBuf,
    #[command(flatten)]
    size: SizeArgs,
    /// Output format (default: from the output's extension).
    #[arg(long, value_enum)]
    format: Option<OutFormat>,
    #[command(flatten)]
    net: NetworkArgs,
    /// Run the network on all 8 orientations of the picture and average them: a little sharper
    /// (+0.1 to +0.2 dB), 8 times the work.
    #[arg(long)]
    ensemble: bool,
}

pub fn run(args: UpscaleArgs, ctx: &RunContext) -> Result<()> {
    let limits = &ctx.limits;
    if args.size.scale.is_none() && args.size.width.is_none() && args.size.height.is_none() {
        usage!("upscale needs the output size: --scale S, --width W or --height H");
    }
    let fmt = OutFormat::choose(args.format, &args.output, ctx.force)?;
    let output = Output::claim(&args.output, &[&args.input], Writes::Picture, ctx.force)?;
    let bytes = read_input(&args.input)?;
    let loaded =
        gsimg::load_image(&bytes, limits).with_context(|| args.input.display().to_string())?;
    if let Some(why) = &loaded.icc_dropped {
        super::report::warn(&format!("{}: {why}; ignoring it", args.input.display()));
    }
    let (w, h) = (loaded.pixels.width, loaded.pixels.height);
    let view = args.size.viewport(w, h)?;
    view.validate(limits)?;
    // `--device` picks where both the network and the renderer run.
    let render_device = match args.net.device {
        DeviceArg::Auto => RenderDevice::Auto,
        DeviceArg::Cpu => RenderDevice::Cpu,
        DeviceArg::Cuda => RenderDevice::Cuda,
    };
    // A percentage: the network reports its work in units (tiles weighted by their size),
    // also within one tile's run.
    let progress = Progress::percent("upscaling");
    let passes = if args.ensemble {
        view::ENSEMBLE_PASSES
    } else {
        1
    };
    // The progress of all passes as one: pass k of n reports its units as (k·t + d) / (n·t).
    let pass = Arc::new(AtomicUsize::new(0));
    let sink: ProgressSink = {
        let (progress, pass, n) = (progress.clone(), pass.clone(), passes);
        Arc::new(move |d, t| progress.update(pass.load(Ordering::Relaxed) * t + d, n * t))
    };
    let encoder = args.net.options(ModelKind::Upscale, sink).build()?;
    super::encode::note_network(&encoder);
    let renderer = on_device(render_device, Renderer::new(render_device.into()))?;
    if let Some(f) = renderer.setup_fallback() {
        report_fallback(f);
    }
    let on_pass = |k: usize, _: usize| pass.store(k, Ordering::Relaxed);
    let options = UpscaleOptions {
        ensemble: args.ensemble,
        on_pass: Some(&on_pass),
        on_fallback: Some(&report_fallback),
        cancel: None,
    };
    let result = view::upscale(&encoder, &loaded.pixels, &view, &renderer, limits, &options);
    progress.finish();
    // The renderer's GPU faults under --device cuda say so, as decode's do.
    let up = match result {
        Err(e @ (gsimg::Error::Cuda(_) | gsimg::Error::NoGpu(_))) => {
            on_device(render_device, Err(e))?
        }
        r => r?,
    };
    let encoded = write_frame(fmt, up.frame, 1, loaded.icc_profile.as_deref())?;
    output.write(&encoded)?;
    let ensemble = if args.ensemble {
        format!(", {passes}-way ensemble")
    } else {
        String::new()
    };
    report::info(&format!(
        "{w}x{h} -> {}x{} ({} Gaussians, network on {} in {:.2} s, rendered on {}, {} \
         tile{}{ensemble})",
        view.width,
        view.height,
        up.gaussians,
        up.provider,
        up.network_seconds,
        up.device,
        up.tiles,
        if up.tiles == 1 { "" } else { "s" }
    ));
    Ok(())
}
