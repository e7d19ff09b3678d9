//! `gsimg decode`: a `.gsi` file to a picture at any size or region.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};

use super::io::{OutFormat, encode_image, read_input};
use super::output::{Output, Writes};
use super::report::{self, Progress};
use super::{Context as RunContext, parse, usage};
use gsimg::{Frame, Limits, Region, Viewport, format, render};

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

/// A renderer on a [`RenderDevice`], set up once for any number of renders (the upscaler's
/// self-ensemble renders 8 fields): the GPU is opened once, and without one `auto` says so
/// once and renders on the CPU.
pub struct FrameRenderer {
    device: RenderDevice,
    gpu: Option<gsimg::cuda::CudaRenderer>,
    /// Set when a GPU render failed and `auto` rendered on the CPU instead.
    fell_back: std::cell::Cell<bool>,
}

impl FrameRenderer {
    pub fn new(device: RenderDevice) -> Result<FrameRenderer> {
        use gsimg::cuda::CudaRenderer;
        let gpu = match device {
            RenderDevice::Cpu => None,
            RenderDevice::Cuda => {
                Some(CudaRenderer::new().context("rendering with --device cuda")?)
            }
            RenderDevice::Auto => match CudaRenderer::new() {
                Ok(gpu) => Some(gpu),
                Err(e @ gsimg::Error::NoGpu(_)) => {
                    report::note(&format!("rendering on the CPU ({e})"));
                    None
                }
                Err(e) => {
                    report::warn(&format!(
                        "the GPU could not be set up ({e}); rendering on the CPU"
                    ));
                    None
                }
            },
        };
        Ok(FrameRenderer {
            device,
            gpu,
            fell_back: std::cell::Cell::new(false),
        })
    }

    /// Whether renders go to the GPU (unless a failure falls back).
    pub fn on_gpu(&self) -> bool {
        self.gpu.is_some()
    }

    /// Where the renders so far ran: "the GPU", or "the CPU" (no GPU, or a GPU failure that
    /// `auto` fell back from).
    pub fn ran_on(&self) -> &'static str {
        if self.gpu.is_some() && !self.fell_back.get() {
            "the GPU"
        } else {
            "the CPU"
        }
    }

    /// Renders `view` of `image`; with `auto`, a GPU failure falls back to the CPU (warning).
    pub fn render<T: gsimg::cuda::GpuSample>(
        &self,
        image: &gsimg::SplatImage,
        view: &Viewport,
        limits: &Limits,
    ) -> Result<Frame<T>> {
        let Some(gpu) = &self.gpu else {
            return Ok(render::render_cpu(image, view, limits)?);
        };
        let on_gpu = || -> gsimg::Result<Frame<T>> { gpu.upload(image)?.render(view, limits) };
        match (self.device, on_gpu()) {
            (_, Ok(frame)) => Ok(frame),
            (RenderDevice::Auto, Err(e)) => match e {
                // Requests the CPU would refuse too: report them as they are.
                gsimg::Error::InvalidParameter { .. } => Err(e.into()),
                gsimg::Error::LimitsExceeded { what, .. } if !what.contains("GPU") => Err(e.into()),
                e => {
                    report::warn(&format!(
                        "the GPU render failed ({e}); rendering on the CPU"
                    ));
                    self.fell_back.set(true);
                    Ok(render::render_cpu(image, view, limits)?)
                }
            },
            (_, Err(e)) => Err(anyhow::Error::from(e).context("rendering with --device cuda")),
        }
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
            (None, Some(ow), None) => Viewport::full(ow, aspect(h, ow, w)?),
            (None, None, Some(oh)) => Viewport::full(aspect(w, oh, h)?, oh),
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

/// `other × new / old`, rounded, at least 1.
fn aspect(other: u32, new: u32, old: u32) -> Result<u32> {
    let v = (other as f64 * new as f64 / old as f64).round().max(1.0);
    if v > u32::MAX as f64 {
        bail!("the output size {new} gives an aspect-preserving size over 2^32");
    }
    Ok(v as u32)
}

pub fn run(args: DecodeArgs, ctx: &RunContext) -> Result<()> {
    let limits = &ctx.limits;
    let fmt = OutFormat::choose(args.format, &args.output, ctx.force)?;
    let output = Output::claim(&args.output, &[&args.input], Writes::Picture, ctx.force)?;
    let bytes = read_input(&args.input)?;
    let name = || args.input.display().to_string();
    let decoder = format::Decoder::new(&bytes[..], *limits).with_context(name)?;
    for why in decoder.dropped_metadata() {
        report::warn(&format!("{}: {why}; decoding without it", name()));
    }
    let h = decoder.header().clone();
    let mut view = args.size.viewport(h.width, h.height)?;
    if let Some(r) = args.region {
        view = view.with_region(r);
    }
    view.validate(limits)?;
    let image = if args.region.is_some() {
        decoder.decode_region(&view)
    } else {
        decoder.decode_all()
    }
    .with_context(name)?;
    let progress = Progress::counting("decoding", "strip");
    let meta = decoder.metadata();
    let encoded = FrameRenderer::new(args.device)
        .and_then(|r| render_in_strips(&r, &image, &view, limits, &progress))
        .and_then(|frame| write_frame(fmt, frame, meta.orientation, meta.icc_profile.as_deref()));
    progress.finish();
    output.write(&encoded?)
}

/// Output pixels above which the CPU renders a picture in strips of rows, reporting each.
const STRIP_PIXELS: u64 = 1 << 22;

/// Renders `view` of `image`; on the CPU, an output of more than [`STRIP_PIXELS`] is rendered
/// as strips of whole rows (each a region of the same view: the renderer draws a region exactly
/// as the same pixels of the whole), so that `progress` can count them.
fn render_in_strips(
    renderer: &FrameRenderer,
    image: &gsimg::SplatImage,
    view: &Viewport,
    limits: &Limits,
    progress: &Progress,
) -> Result<Frame<u8>> {
    let r = view.region;
    let strips = (r.width as u64 * r.height as u64).div_ceil(STRIP_PIXELS);
    if renderer.on_gpu() || strips <= 1 {
        return renderer.render(image, view, limits);
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
        let part = renderer.render::<u8>(image, &view.with_region(strip), limits)?;
        match frame.as_mut() {
            None => {
                let mut data =
                    Vec::with_capacity(r.width as usize * r.height as usize * part.channels);
                data.extend_from_slice(&part.data);
                frame = Some(Frame {
                    width: r.width,
                    height: part.height,
                    channels: part.channels,
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
    orientation: Option<u8>,
    icc: Option<&[u8]>,
) -> Result<Vec<u8>> {
    use image::metadata::Orientation;
    let Some(o) = orientation
        .and_then(Orientation::from_exif)
        .filter(|o| *o != Orientation::NoTransforms)
    else {
        return encode_image(
            fmt,
            frame.width,
            frame.height,
            frame.channels,
            &frame.data,
            icc,
        );
    };
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
