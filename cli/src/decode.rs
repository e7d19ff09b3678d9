//! `gsimg decode`: a `.gsi` file to a picture at any size or region.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, ValueEnum};

use super::io::{OutFormat, encode_image, read_input};
use super::output::{Output, Writes};
use super::report::{self, Progress};
use super::{Context as RunContext, parse, usage};
use gsimg::view::{self, Backend, Decoder, Device, Fallback, FallbackKind};
use gsimg::{Frame, Region, Viewport};

/// Render a .gsi file to a picture at any size or region (default: its native size).
#[derive(Args)]
pub struct DecodeArgs {
    /// Input .gsi file, or - for stdin.
    input: PathBuf,
    /// Output picture (.png, .jpg, .webp, .tif, .bmp), or - for stdout (PNG unless --format).
    output: PathBuf,
    #[command(flatten)]
    size: SizeArgs,
    /// Render only this rectangle of the output: X,Y,W,H in output pixels.
    #[arg(long, value_name = "X,Y,W,H", allow_hyphen_values = true, value_parser = parse_region)]
    region: Option<Region>,
    /// Output format (default: from the output's extension).
    #[arg(long, value_enum)]
    format: Option<OutFormat>,
    /// Where to render: auto (the GPU when usable, else the CPU), cpu, or cuda.
    #[arg(long, value_enum, default_value_t = RenderDevice::Auto)]
    device: RenderDevice,
}

/// Where a picture is rendered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum RenderDevice {
    /// The CUDA renderer when a GPU and driver are usable, else the CPU (with a note); a GPU
    /// failure during the render falls back to the CPU with a warning.
    Auto,
    /// The CPU reference renderer.
    Cpu,
    /// The CUDA renderer; an error when it is unavailable.
    Cuda,
}

impl From<RenderDevice> for Backend {
    fn from(d: RenderDevice) -> Backend {
        match d {
            RenderDevice::Auto => Backend::Auto,
            RenderDevice::Cpu => Backend::Cpu,
            RenderDevice::Cuda => Backend::Cuda,
        }
    }
}

/// Tells the user of a fallback to the CPU: a note when there is no GPU, a warning when one
/// failed.
pub fn report_fallback(f: &Fallback) {
    match f.kind {
        FallbackKind::NoGpu => report::note(&f.to_string()),
        _ => report::warn(&f.to_string()),
    }
}

/// Adds what `--device cuda` asked for to a render error.
pub fn on_device<T>(device: RenderDevice, r: gsimg::Result<T>) -> Result<T> {
    match device {
        RenderDevice::Cuda => r.context("rendering with --device cuda"),
        _ => Ok(r?),
    }
}

/// The output size: a scale, or a width and/or height (aspect ratio kept when one is missing).
#[derive(Args, Clone, Copy)]
pub struct SizeArgs {
    /// Scale factor of the output (any positive real, e.g. 2.5).
    #[arg(long, conflicts_with_all = ["width", "height"], allow_negative_numbers = true,
          value_parser = parse::positive)]
    pub scale: Option<f64>,
    /// Output width in pixels (height follows the aspect ratio unless given).
    #[arg(long, value_name = "PIXELS", allow_negative_numbers = true,
          value_parser = parse::at_least_one)]
    pub width: Option<u32>,
    /// Output height in pixels (width follows the aspect ratio unless given).
    #[arg(long, value_name = "PIXELS", allow_negative_numbers = true,
          value_parser = parse::at_least_one)]
    pub height: Option<u32>,
}

impl SizeArgs {
    /// The full output for a picture of `w × h` native pixels.
    pub fn viewport(&self, w: u32, h: u32) -> Result<Viewport> {
        Ok(match (self.scale, self.width, self.height) {
            (Some(s), _, _) => {
                // A size that rounds to nothing is refused, not drawn as one pixel.
                if (w as f64 * s).round() < 1.0 || (h as f64 * s).round() < 1.0 {
                    usage!(
                        "--scale {s} makes the {w}x{h} picture less than a pixel {}; the \
                         smallest scale for it is {}",
                        if (w as f64 * s).round() < 1.0 {
                            "wide"
                        } else {
                            "high"
                        },
                        smallest_scale(w.min(h))
                    );
                }
                Viewport::scaled(w, h, s)?
            }
            (None, Some(ow), Some(oh)) => Viewport::full(ow, oh),
            (None, Some(ow), None) => view::fit_within(w, h, ow, 0)?,
            (None, None, Some(oh)) => view::fit_within(w, h, 0, oh)?,
            (None, None, None) => Viewport::full(w, h),
        })
    }
}

/// The smallest scale at which `n` pixels round to one, rounded up to 3 significant digits.
fn smallest_scale(n: u32) -> f64 {
    let v = 0.5 / n.max(1) as f64;
    let p = 10f64.powi(2 - v.log10().floor() as i32);
    (v * p).ceil() / p
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

pub fn run(args: DecodeArgs, ctx: &RunContext) -> Result<()> {
    let limits = &ctx.limits;
    let fmt = OutFormat::choose(args.format, &args.output, ctx.force)?;
    let output = Output::claim(&args.output, &[&args.input], Writes::Picture, ctx.force)?;
    let bytes = read_input(&args.input)?;
    let name = || args.input.display().to_string();
    let mut decoder = Decoder::from_bytes(bytes, *limits).with_context(name)?;
    for why in decoder.dropped_metadata() {
        report::warn(&format!("{}: {why}; decoding without it", name()));
    }
    let info = decoder.info();
    let mut view = args.size.viewport(info.width, info.height)?;
    if let Some(r) = args.region {
        view = view.with_region(r);
    }
    view.validate(limits)?;
    // A region needs only the tiles that reach it.
    decoder
        .prepare(args.region.is_some().then_some(&view))
        .with_context(name)?;
    decoder.set_backend(args.device.into());
    decoder.on_fallback(report_fallback);
    let progress = Progress::counting("decoding", "strip");
    let encoded = on_device(args.device, decoder.device())
        .and_then(|device| render_in_strips(&mut decoder, device, args.device, &view, &progress))
        .and_then(|frame| write_frame(fmt, frame, info.orientation, decoder.icc_profile()));
    progress.finish();
    output.write(&encoded?)
}

/// Output pixels above which the CPU renders a picture in strips of rows, reporting each.
const STRIP_PIXELS: u64 = 1 << 22;

/// Renders `view`; on the CPU, an output of more than [`STRIP_PIXELS`] is rendered as strips of
/// whole rows (each a region of the same view: the renderer draws a region exactly as the same
/// pixels of the whole), so that `progress` can count them.
fn render_in_strips(
    decoder: &mut Decoder,
    device: Device,
    asked: RenderDevice,
    view: &Viewport,
    progress: &Progress,
) -> Result<Frame<u8>> {
    let r = view.region;
    let strips = (r.width as u64 * r.height as u64).div_ceil(STRIP_PIXELS);
    if device == Device::Cuda || strips <= 1 {
        return on_device(asked, decoder.render_frame(view)).map(|(f, _)| f);
    }
    let rows = r.height.div_ceil(strips as u32);
    let n = r.height.div_ceil(rows) as usize;
    progress.update(0, n);
    let mut frame: Option<Frame<u8>> = None;
    for (i, y) in (0..r.height).step_by(rows as usize).enumerate() {
        let strip = Region {
            x: r.x,
            y: r.y + y,
            width: r.width,
            height: rows.min(r.height - y),
        };
        let (part, _) = on_device(asked, decoder.render_frame::<u8>(&view.with_region(strip)))?;
        match frame.as_mut() {
            None => {
                let mut data =
                    Vec::with_capacity(r.width as usize * r.height as usize * part.channels());
                data.extend_from_slice(&part.data);
                frame = Some(Frame {
                    width: r.width,
                    height: part.height,
                    layout: part.layout,
                    data,
                });
            }
            Some(f) => {
                f.data.extend_from_slice(&part.data);
                f.height += part.height;
            }
        }
        progress.update(i + 1, n);
    }
    frame.context("internal error: no strip rendered")
}

/// Encodes a rendered frame, applying an EXIF orientation (1 to 8) first.
pub fn write_frame(
    fmt: OutFormat,
    frame: Frame<u8>,
    orientation: u8,
    icc: Option<&[u8]>,
) -> Result<Vec<u8>> {
    let f = view::orient_frame(frame, orientation);
    encode_image(fmt, f.width, f.height, f.channels(), &f.data, icc)
}
