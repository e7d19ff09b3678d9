//! `gsimg encode`: a picture to a `.gsi` file, with the encoder network (by default, when a
//! model is found) or the analytic encoder. Also the options and progress display shared with
//! `gsimg upscale`.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::{Args, ValueEnum};

use super::io::read_input;
use super::output::{Output, Writes};
use super::report::{self, Progress};
use super::{Context as RunContext, parse, usage};
use gsimg::encode::{Effort, EncoderKind, RateResult, RateTarget, RefineDevice, RefineOptions};
use gsimg::network::{Device as NetworkDevice, LibrarySearch, ModelKind};
use gsimg::{AnalyticOptions, NetworkOptions};

/// Encode a picture (PNG, JPEG, WebP, TIFF, BMP, GIF) into a .gsi file.
///
/// By default the compact network model encodes (models/compact.onnx, run by ONNX Runtime,
/// which gsimg fetches on first use). Without the model or ONNX Runtime, the analytic encoder
/// encodes instead, with a warning.
#[derive(Args)]
pub struct EncodeArgs {
    /// Input picture, or - for stdin.
    input: PathBuf,
    /// Output .gsi file, or - for stdout.
    output: PathBuf,
    /// Encoder: network (default when available) or analytic (needs no model, any rate).
    #[arg(long, value_enum)]
    method: Option<Method>,
    /// Quality from 1 (smallest file) to 100.
    ///
    /// Analytic encoder: sets how many Gaussians are placed. Network: below 50 it keeps the
    /// most valuable share of the model's Gaussians (5 % at 1) with fewer bits each; above 50
    /// it keeps Gaussians the model rated less likely, and above 75 adds Gaussians where the
    /// picture is least exact (up to 3 times the model's number at 100). Network with
    /// refinement (--effort default on a GPU, max): the refinement prunes or densifies to
    /// 0.12 to 5 times the model's number of Gaussians, coarser below 30.
    #[arg(long, default_value_t = 50, allow_negative_numbers = true,
          value_parser = parse::quality)]
    quality: u8,
    /// Gaussians per pixel, e.g. 0.025 (analytic encoder; instead of --quality).
    #[arg(long, allow_negative_numbers = true, value_parser = parse::positive)]
    density: Option<f64>,
    /// Aim for this many bits per native pixel (within 3 %), in place of --quality: the
    /// analytic encoder searches its density, the network encoder its number of Gaussians.
    #[arg(long, value_name = "BPP", conflicts_with_all = ["target_size", "density"])]
    target_bpp: Option<f64>,
    /// A file of at most this many bytes (and within 3 % of it when the encoder can reach
    /// it), in place of --quality.
    #[arg(long, value_name = "BYTES", conflicts_with = "density")]
    target_size: Option<u64>,
    /// How much work to spend: fast, default or max.
    ///
    /// fast: the encoder's start, no refinement. default: on a GPU, refinement of a fraction of
    /// a second; on the CPU as fast (the analytic encoder: 40 steps). max: refinement to
    /// convergence, about a second on a GPU, minutes on the CPU.
    #[arg(long, value_enum, default_value_t = EffortArg::Default)]
    effort: EffortArg,
    /// Refinement steps on the picture before writing, instead of --effort's (0: none).
    ///
    /// Steps run in four rounds, each after moving a tenth of the Gaussians to where the error
    /// is; on the GPU unless --device cpu.
    #[arg(long, value_name = "STEPS", allow_negative_numbers = true, value_parser = parse::count)]
    refine: Option<usize>,
    /// Network: write its colours as they are, without the colour fit (faster, about 0.4 dB
    /// lower).
    #[arg(long)]
    no_fit: bool,
    #[command(flatten)]
    net: NetworkArgs,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum EffortArg {
    /// No refinement.
    Fast,
    /// Bounded time.
    Default,
    /// To convergence.
    Max,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Method {
    /// The compact network model, run by ONNX Runtime.
    Network,
    /// The classical encoder: no model needed.
    Analytic,
}

/// Options of the encoder network, shared by `encode` and `upscale`.
#[derive(Args, Clone)]
pub struct NetworkArgs {
    /// The network model file.
    ///
    /// Default: models/compact.onnx (encode) or models/upscale.onnx (upscale), next to gsimg
    /// or in the source tree it was built from.
    #[arg(long, value_name = "FILE")]
    pub model: Option<PathBuf>,
    /// Where the network (and for upscale the renderer) runs: auto (the GPU when usable, else
    /// the CPU), cpu, or cuda.
    #[arg(long, value_enum, default_value_t = DeviceArg::Auto)]
    pub device: DeviceArg,
    /// The ONNX Runtime library to use (libonnxruntime.so.1.x).
    ///
    /// Default: ORT_DYLIB_PATH, else one found next to gsimg, in its cache or on the system,
    /// else fetched from PyPI into the cache (README.md, "ONNX Runtime").
    #[arg(long, value_name = "PATH")]
    pub ort_lib: Option<PathBuf>,
}

/// `--device` values.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DeviceArg {
    /// CUDA if available, else CPU.
    Auto,
    /// The CPU.
    Cpu,
    /// CUDA, or an error.
    Cuda,
}

impl NetworkArgs {
    /// Where a refinement runs: the GPU unless `--device cpu`.
    pub fn refine_device(&self) -> RefineDevice {
        match self.device {
            DeviceArg::Auto => RefineDevice::Auto,
            DeviceArg::Cpu => RefineDevice::Cpu,
            DeviceArg::Cuda => RefineDevice::Cuda,
        }
    }

    /// Network options for a model of `kind` (used when --model is not given).
    pub fn options(&self, kind: ModelKind, progress: &Progress) -> NetworkOptions {
        // The command line looks for the model and ONNX Runtime where gsimg installs them, and
        // fetches ONNX Runtime into the per-user cache when it is nowhere.
        let search = LibrarySearch {
            explicit_label: "--ort-lib".into(),
            ..LibrarySearch::from_env()
        };
        let mut o = NetworkOptions::default()
            .with_kind(kind)
            .with_installed()
            .with_library_search(search)
            .with_device(match self.device {
                DeviceArg::Auto => NetworkDevice::Auto,
                DeviceArg::Cpu => NetworkDevice::Cpu,
                DeviceArg::Cuda => NetworkDevice::Cuda,
            })
            .with_ort_library(self.ort_lib.clone())
            .with_threads(rayon::current_num_threads())
            .with_progress(Some(progress.sink()))
            .with_messages(Some(Arc::new(|m: &str| report::info(m))));
        if let Some(m) = &self.model {
            o = o.with_model(m);
        }
        o
    }
}

pub fn run(args: EncodeArgs, ctx: &RunContext) -> Result<()> {
    let limits = &ctx.limits;
    let output = Output::claim(&args.output, &[&args.input], Writes::Gsi, ctx.force)?;
    // Read the input first. The picture's size from its header: a file that is no picture
    // fails here, with one line, before any note about models; a picture too large for the
    // encoder's memory is refused before it is decoded.
    let bytes = read_input(&args.input)?;
    let (w, h) =
        gsimg::encode::picture_size(&bytes).with_context(|| args.input.display().to_string())?;
    let method = match args.method {
        Some(m) => m,
        None if args.net.model.is_some() => Method::Network,
        None if args.density.is_some() => Method::Analytic,
        None => match gsimg::network::locate_model(ModelKind::Compact) {
            Ok(_) => Method::Network,
            Err(e) => {
                report::warn(&format!(
                    "{}; using the analytic encoder",
                    crate::describe(&e)
                ));
                Method::Analytic
            }
        },
    };
    if method == Method::Network && args.density.is_some() {
        usage!("--density applies to the analytic encoder only (use --quality with the network)");
    }
    if method == Method::Analytic && args.no_fit {
        usage!("--no-fit applies to the network encoder only (the analytic encoder always fits)");
    }
    let kind = match method {
        Method::Analytic => EncoderKind::Analytic {
            density: match args.density {
                Some(d) => d,
                None => AnalyticOptions::with_quality(args.quality)?.density,
            },
        },
        Method::Network => EncoderKind::Network,
    };
    if let Err(e) = gsimg::encode::check_memory(kind, w, h, limits) {
        let analytic = EncoderKind::Analytic {
            density: AnalyticOptions::with_quality(args.quality)?.density,
        };
        let need = gsimg::encode::estimate_memory(analytic, w, h, limits);
        if method == Method::Network && need <= limits.max_memory_bytes {
            anyhow::bail!(
                "{}: {e}; the analytic encoder (--method analytic) would need about {:.1} GiB",
                args.input.display(),
                need as f64 / (1u64 << 30) as f64
            );
        }
        return Err(anyhow::Error::from(e).context(args.input.display().to_string()));
    }
    let loaded =
        gsimg::load_image(&bytes, limits).with_context(|| args.input.display().to_string())?;
    if let Some(why) = &loaded.icc_dropped {
        report::warn(&format!(
            "{}: {why}; encoding without it",
            args.input.display()
        ));
    }
    let px = loaded.pixels.width as f64 * loaded.pixels.height as f64;
    let refine = refine_options(&args, method);
    let progress = Progress::percent("encoding");
    let network = match method {
        Method::Analytic => None,
        Method::Network => match network_encoder(&args, &progress, refine, limits) {
            Ok(e) => Some(e),
            // Nothing asked for the network: without ONNX Runtime, the analytic encoder.
            Err(e @ (gsimg::Error::RuntimeUnavailable(_) | gsimg::Error::NotBuiltWith { .. }))
                if args.method.is_none() && args.net.ort_lib.is_none() =>
            {
                report::warn(
                    "ONNX Runtime is unavailable (not found, and not fetched); using the \
                     analytic encoder (-v says where it was looked for)",
                );
                report::note(&crate::describe(&e));
                None
            }
            Err(e) => return Err(e.into()),
        },
    };
    let target = match (args.target_bpp, args.target_size) {
        (Some(b), _) => Some(RateTarget::Bpp(b)),
        (None, Some(n)) => Some(RateTarget::Bytes(n)),
        (None, None) => None,
    };
    let off_target = |r: RateResult| {
        if !r.on_target {
            report::warn(&format!(
                "the target was not reached; the nearest file has {:.3} bpp",
                r.encoded.bytes.len() as f64 * 8.0 / px
            ));
        }
        r.encoded
    };
    let (encoded, how) = match network {
        None => {
            let mut opts = AnalyticOptions::with_quality(args.quality)?;
            if let Some(d) = args.density {
                opts.density = d;
            }
            // (A fallback from the network gets the analytic encoder's refinement.)
            opts.refine = if method == Method::Analytic {
                refine
            } else {
                refine_options(&args, Method::Analytic)
            };
            opts.write.metadata.icc_profile = loaded.icc_profile;
            opts.progress = Some(progress.sink());
            let encoded = match target {
                Some(t) => {
                    gsimg::encode::encode_analytic_to_rate(&loaded.pixels, &opts, t).map(off_target)
                }
                None => gsimg::encode_analytic(&loaded.pixels, &opts),
            };
            progress.finish();
            (encoded?, "analytic".to_string())
        }
        Some(encoder) => {
            note_network(&encoder);
            let mut wo = encoder.write_options(loaded.pixels.layout);
            wo.metadata.icc_profile = loaded.icc_profile;
            let encoded = match target {
                Some(t) => encoder
                    .encode_to_rate(&loaded.pixels, &wo, t)
                    .map(off_target),
                None => encoder.encode_with(&loaded.pixels, &wo),
            };
            progress.finish();
            let how = format!(
                "network {} ({}), {}",
                encoder.model_path().display(),
                encoder.info().version,
                encoder.provider()
            );
            (encoded?, how)
        }
    };
    // A picture is never nothing: an empty result is a fault (a damaged model), not a file.
    if encoded.image.gaussian_count() == 0 {
        anyhow::bail!(
            "the encoder produced no Gaussians for a {}x{} picture; nothing written ({how})",
            loaded.pixels.width,
            loaded.pixels.height
        );
    }
    for note in &encoded.notes {
        report::note(note);
    }
    for warning in &encoded.warnings {
        report::warn(warning);
    }
    output.write(&encoded.bytes)?;
    report::info(&format!(
        "{}x{} -> {} Gaussians, {} bytes, {:.3} bpp ({how})",
        loaded.pixels.width,
        loaded.pixels.height,
        encoded.image.gaussian_count(),
        encoded.bytes.len(),
        encoded.bytes.len() as f64 * 8.0 / px
    ));
    Ok(())
}

/// Says (with `-v`) which model and ONNX Runtime library a network encoder uses.
pub fn note_network(encoder: &gsimg::NetworkEncoder) {
    let model = encoder.model_path();
    let mut sidecar = model.as_os_str().to_os_string();
    sidecar.push(".sha256");
    report::note(&format!(
        "model {} ({})",
        model.display(),
        if std::path::Path::new(&sidecar).is_file() {
            "checked against the SHA-256 beside it"
        } else {
            "no .sha256 beside it: not checked"
        }
    ));
    let lib = encoder.library();
    report::note(&format!(
        "ONNX Runtime 1.{} from {} ({}), running on {}",
        lib.minor,
        lib.path.display(),
        lib.source,
        encoder.provider()
    ));
}

/// The refinement `--effort`, `--refine` and `--device` ask for.
fn refine_options(args: &EncodeArgs, method: Method) -> RefineOptions {
    let device = args.net.refine_device();
    let effort = match args.effort {
        EffortArg::Fast => Effort::Fast,
        EffortArg::Default => Effort::Default,
        EffortArg::Max => Effort::Max,
    };
    // Refinement on the GPU when one can be used (a probe: the refinement opens it again).
    let gpu = device != RefineDevice::Cpu
        && effort != Effort::Fast
        && gsimg::gpu::CudaRenderer::new().is_ok();
    let mut refine = RefineOptions::for_effort(effort, device, gpu);
    if method == Method::Analytic && effort == Effort::Default && !gpu {
        // Without refinement the analytic encoder's picture is poor: 40 steps on the CPU.
        refine.iterations = AnalyticOptions::default().refine.iterations;
    }
    if let Some(n) = args.refine {
        refine.iterations = n;
    }
    refine
}

/// The compact network encoder the options ask for; an upscale model is refused.
fn network_encoder(
    args: &EncodeArgs,
    progress: &Progress,
    refine: RefineOptions,
    limits: &gsimg::Limits,
) -> gsimg::Result<gsimg::NetworkEncoder> {
    // Tile windows as large as the memory limit allows (checked above with the same estimate).
    let options = args
        .net
        .options(ModelKind::Compact, progress)
        .with_quality(args.quality)?
        .with_refine_options(refine)
        .with_memory_limit(Some(limits.max_memory_bytes));
    let options = if args.no_fit {
        options.with_color_fit(None)
    } else {
        options
    };
    let encoder = options.build()?;
    if encoder.info().kind != ModelKind::Compact {
        return Err(gsimg::Error::Model(
            format!(
                "{} is an upscale model (a dense field for `gsimg upscale`, about 130 bits per \
                 pixel as a file); encode needs a compact model, or --method analytic",
                encoder.model_path().display()
            )
            .into(),
        ));
    }
    Ok(encoder)
}
