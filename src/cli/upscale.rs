//! `gsimg upscale`: a picture to a larger (or any other size) picture through the dense
//! upscale network: encode to Gaussians, render at the new size (`--device` chooses where both
//! the network and the renderer run; the renderer is `decode`'s, CUDA or CPU).

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Args;

use super::decode::{FrameRenderer, RenderDevice, SizeArgs, write_frame};
use super::encode::{DeviceArg, NetworkArgs};
use super::io::{OutFormat, read_input};
use super::output::{Output, Writes};
use super::report::{self, Progress};
use super::{Context as RunContext, usage};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use gsimg::Limits;
use gsimg::encode::NetworkEncoder;
use gsimg::encode::network::{ModelKind, ProgressSink};
use gsimg::encode::symmetry::Symmetry;
use gsimg::render::{Frame, FrameMean, Viewport};

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
    let loaded = gsimg::encode::load_image(&bytes, limits)
        .with_context(|| args.input.display().to_string())?;
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
    let progress = if args.ensemble {
        // 8 passes of the tiles: count the network runs
        Progress::counting("upscaling", "network run")
    } else {
        Progress::new("upscaling")
    };
    let symmetries: &[Symmetry] = if args.ensemble {
        &Symmetry::ALL
    } else {
        &[Symmetry::IDENTITY]
    };
    // The progress of all passes as one: pass k of n reports its tiles as (k·t + d) / (n·t).
    let pass = Arc::new(AtomicUsize::new(0));
    let sink: ProgressSink = {
        let (progress, pass, n) = (progress.clone(), pass.clone(), symmetries.len());
        Arc::new(move |d, t| progress.update(pass.load(Ordering::Relaxed) * t + d, n * t))
    };
    let encoder = args
        .net
        .options(ModelKind::Upscale, &progress)
        .with_progress(Some(sink))
        .build()?;
    super::encode::note_network(&encoder);
    let renderer = FrameRenderer::new(render_device)?;
    let result = upscale_passes(
        &encoder,
        &loaded.pixels,
        symmetries,
        &view,
        limits,
        &renderer,
        &pass,
    );
    progress.finish();
    let (frame, last) = result?;
    let encoded = write_frame(fmt, frame, None, loaded.icc_profile.as_deref())?;
    output.write(&encoded)?;
    let ensemble = if args.ensemble {
        format!(", {}-way ensemble", symmetries.len())
    } else {
        String::new()
    };
    report::info(&format!(
        "{w}x{h} -> {}x{} ({} Gaussians, network on {} in {:.2} s, rendered on {}, {} \
         tile{}{ensemble})",
        view.width,
        view.height,
        last.gaussians,
        last.provider,
        last.network_seconds,
        renderer.ran_on(),
        last.tiles,
        if last.tiles == 1 { "" } else { "s" }
    ));
    Ok(())
}

/// What the summary line reports: the Gaussians and tiles of the first pass (every pass has
/// the same), the network time of all.
struct PassSummary {
    gaussians: u64,
    provider: gsimg::encode::Provider,
    tiles: usize,
    network_seconds: f64,
}

/// Runs the network under each symmetry and renders each field at `view`; one pass renders
/// directly, several are averaged in floats. `pass` counts the passes done (for the progress).
fn upscale_passes(
    encoder: &NetworkEncoder,
    pixels: &gsimg::encode::Pixels,
    symmetries: &[Symmetry],
    view: &Viewport,
    limits: &Limits,
    renderer: &FrameRenderer,
    pass: &AtomicUsize,
) -> Result<(Frame<u8>, PassSummary)> {
    let mut mean = None;
    if symmetries.len() > 1 {
        let r = view.region;
        mean = Some(FrameMean::new(
            r.width,
            r.height,
            pixels.layout.channels(),
            limits,
        )?);
    }
    let mut summary = None::<PassSummary>;
    for (k, &sym) in symmetries.iter().enumerate() {
        pass.store(k, Ordering::Relaxed);
        let out = encoder.gaussians_under(pixels, sym)?;
        let s = summary.get_or_insert(PassSummary {
            gaussians: out.image.gaussian_count() as u64,
            provider: out.provider,
            tiles: out.tiles,
            network_seconds: 0.0,
        });
        s.network_seconds += out.network_seconds;
        match mean.as_mut() {
            None => {
                return Ok((renderer.render(&out.image, view, limits)?, summary.unwrap()));
            }
            Some(m) => m.add(&renderer.render(&out.image, view, limits)?)?,
        }
    }
    match (mean, summary) {
        (Some(mean), Some(summary)) => Ok((mean.mean(), summary)),
        _ => bail!("no symmetry to upscale under"),
    }
}
