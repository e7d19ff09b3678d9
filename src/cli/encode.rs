//! `gsimg encode`: a picture to a `.gsi` file, with the encoder network (by default, when a
//! model is found) or the analytic encoder. Also the options and progress display shared with
//! `gsimg upscale`.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};

use super::io::{read_input, write_output};
use gsimg::Limits;
use gsimg::encode::analytic::{self, AnalyticOptions};
use gsimg::encode::network::{self, Device, ModelKind, NetworkOptions};
use gsimg::encode::refine::{Effort, RefineDevice, RefineOptions};

/// Encode a picture (PNG, JPEG, WebP, TIFF, BMP, GIF) into a .gsi file.
#[derive(Args)]
pub struct EncodeArgs {
    /// Input picture, or - for stdin.
    input: PathBuf,
    /// Output .gsi file, or - for stdout.
    output: PathBuf,
    /// Encoder to use (default: network when a compact model is found, else analytic).
    #[arg(long, value_enum)]
    method: Option<Method>,
    /// Quality from 1 (smallest file) to 100. Analytic encoder: the Gaussian density. Compact
    /// network model: above 50 it keeps Gaussians the model rated less likely (presence
    /// threshold 1 - Q/100 where that is below the model's own, at least 0.05, so 95 to 100
    /// give the same file: somewhat larger files, slightly higher PSNR); 50 and below give the
    /// model's one trained rate.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u8).range(1..=100))]
    quality: u8,
    /// Gaussians per native pixel (analytic encoder; overrides --quality), e.g. 0.025.
    #[arg(long)]
    density: Option<f64>,
    /// Gradient-refinement steps on the picture before writing, in place of --effort's (0:
    /// none; more: slower, better). Steps run in four rounds, each after moving a tenth of the
    /// Gaussians to where the error is. On the GPU unless --device cpu.
    #[arg(long)]
    refine: Option<usize>,
    /// How much work to spend: fast (the encoder's start, no refinement), default (on a GPU:
    /// refinement of a fraction of a second; on the CPU: as fast, except the analytic encoder's
    /// 40 steps), max (refinement to convergence: about a second on a GPU, minutes on the CPU).
    /// --refine N sets the number of steps.
    #[arg(long, value_enum, default_value_t = EffortArg::Default)]
    effort: EffortArg,
    /// Network encoder: write the network's colours as they are, without the least-squares
    /// colour fit that follows it by default (faster, about 0.4 dB lower on Kodak).
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
    /// Encoder network (ONNX model) run by ONNX Runtime.
    Network,
    /// Classical encoder: quadtree placement, structure-tensor shapes, least-squares colours.
    Analytic,
}

/// Options of the encoder network, shared by `encode` and `upscale`.
#[derive(Args, Clone)]
pub struct NetworkArgs {
    /// The ONNX model (default: models/<compact|upscale>.onnx next to the executable, else in
    /// the source tree gsimg was built from).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Where the network runs: auto (CUDA if ONNX Runtime has it and it works, else CPU), cpu,
    /// or cuda (an error if unavailable).
    #[arg(long, value_enum, default_value_t = DeviceArg::Auto)]
    pub device: DeviceArg,
    /// The ONNX Runtime library (libonnxruntime.so.1.x) to use, before ORT_DYLIB_PATH and the
    /// automatic search.
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
    pub fn options(&self, kind: ModelKind, progress: &TermProgress) -> NetworkOptions {
        let mut o = NetworkOptions::default()
            .with_kind(kind)
            .with_device(match self.device {
                DeviceArg::Auto => Device::Auto,
                DeviceArg::Cpu => Device::Cpu,
                DeviceArg::Cuda => Device::Cuda,
            })
            .with_ort_library(self.ort_lib.clone())
            .with_threads(rayon::current_num_threads())
            .with_progress(Some(progress.sink()));
        if let Some(m) = &self.model {
            o = o.with_model(m);
        }
        o
    }
}

/// A one-line progress display on stderr (percentage of tiles and seconds elapsed), shown once
/// the work has taken a second, and only when stderr is a terminal.
#[derive(Clone)]
pub struct TermProgress {
    state: Arc<Mutex<ProgressState>>,
}

struct ProgressState {
    start: Instant,
    done: usize,
    total: usize,
    shown: bool,
    finished: bool,
}

impl TermProgress {
    pub fn new(label: &'static str) -> TermProgress {
        TermProgress::counting(label, "tile")
    }

    /// The same, counting `unit`s (singular; an "s" is added) in place of tiles.
    pub fn counting(label: &'static str, unit: &'static str) -> TermProgress {
        let state = Arc::new(Mutex::new(ProgressState {
            start: Instant::now(),
            done: 0,
            total: 0,
            shown: false,
            finished: false,
        }));
        if std::io::stderr().is_terminal() {
            let s = state.clone();
            // A ticker, so that one long tile still shows time passing.
            std::thread::spawn(move || {
                loop {
                    std::thread::sleep(std::time::Duration::from_millis(250));
                    let mut st = s.lock().unwrap_or_else(|p| p.into_inner());
                    if st.finished {
                        break;
                    }
                    let t = st.start.elapsed().as_secs_f64();
                    if t >= 1.0 {
                        let pct = match (st.done * 100).checked_div(st.total) {
                            Some(p) => format!(
                                "{p:>3}% of {} {unit}{}, ",
                                st.total,
                                if st.total == 1 { "" } else { "s" }
                            ),
                            None => String::new(),
                        };
                        eprint!("\rgsimg: {label}: {pct}{t:.0} s ");
                        st.shown = true;
                    }
                }
            });
        }
        TermProgress { state }
    }

    /// Reports `done` of `total` tiles.
    pub fn update(&self, done: usize, total: usize) {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        s.done = done;
        s.total = total;
    }

    /// A callback for the library.
    pub fn sink(&self) -> network::ProgressSink {
        let me = self.clone();
        Arc::new(move |d, t| me.update(d, t))
    }

    /// Stops the display and clears its line.
    pub fn finish(&self) {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        s.finished = true;
        if s.shown {
            eprint!("\r\x1b[K");
            s.shown = false;
        }
    }
}

pub fn run(args: EncodeArgs, limits: &Limits) -> Result<()> {
    // Read the input first: a bad input fails with one line, before any note about models.
    let bytes = read_input(&args.input)?;
    // The picture's size from its header: a file that is no picture fails here, with one
    // line, before any note about models; a picture too large for the encoder's memory is
    // refused before it is decoded.
    let (w, h) = gsimg::encode::memory::picture_size(&bytes)
        .with_context(|| args.input.display().to_string())?;
    let method = match args.method {
        Some(m) => m,
        None if args.net.model.is_some() => Method::Network,
        None if args.density.is_some() => Method::Analytic,
        None => match network::locate_model(ModelKind::Compact) {
            Ok(_) => Method::Network,
            Err(e) => {
                eprintln!("gsimg: {e}; using the analytic encoder");
                Method::Analytic
            }
        },
    };
    if method == Method::Network && args.density.is_some() {
        bail!("--density applies to the analytic encoder only (use --quality with the network)");
    }
    if method == Method::Analytic && args.no_fit {
        bail!("--no-fit applies to the network encoder only (the analytic encoder always fits)");
    }
    let kind = match method {
        Method::Analytic => gsimg::encode::memory::EncoderKind::Analytic {
            density: match args.density {
                Some(d) => d,
                None => AnalyticOptions::with_quality(args.quality)?.density,
            },
        },
        Method::Network => gsimg::encode::memory::EncoderKind::Network,
    };
    if let Err(e) = gsimg::encode::memory::check(kind, w, h, limits) {
        let analytic = gsimg::encode::memory::EncoderKind::Analytic {
            density: AnalyticOptions::with_quality(args.quality)?.density,
        };
        let need = gsimg::encode::memory::estimate(analytic, w, h);
        if method == Method::Network && need <= limits.max_memory_bytes {
            bail!(
                "{}: {e}; the analytic encoder (--method analytic) would need about {:.1} GiB",
                args.input.display(),
                need as f64 / (1u64 << 30) as f64
            );
        }
        return Err(anyhow::Error::from(e).context(args.input.display().to_string()));
    }
    let loaded = gsimg::encode::load_image(&bytes, limits)
        .with_context(|| args.input.display().to_string())?;
    if let Some(why) = &loaded.icc_dropped {
        eprintln!(
            "gsimg: warning: {}: {why}; encoding without it",
            args.input.display()
        );
    }
    let px = loaded.pixels.width as f64 * loaded.pixels.height as f64;
    let refine_device = args.net.refine_device();
    let effort = match args.effort {
        EffortArg::Fast => Effort::Fast,
        EffortArg::Default => Effort::Default,
        EffortArg::Max => Effort::Max,
    };
    // Refinement on the GPU when one can be used (a probe: the refinement opens it again).
    let gpu = refine_device != RefineDevice::Cpu
        && effort != Effort::Fast
        && gsimg::cuda::CudaRenderer::new().is_ok();
    let mut refine = RefineOptions::for_effort(effort, refine_device, gpu);
    if method == Method::Analytic && effort == Effort::Default && !gpu {
        // Without refinement the analytic encoder's picture is poor: 40 steps on the CPU.
        refine.iterations = AnalyticOptions::default().refine.iterations;
    }
    if let Some(n) = args.refine {
        refine.iterations = n;
    }
    let (encoded, how) = match method {
        Method::Analytic => {
            let mut opts = AnalyticOptions::with_quality(args.quality)?;
            if let Some(d) = args.density {
                opts.density = d;
            }
            opts.refine = refine;
            opts.write.metadata.icc_profile = loaded.icc_profile;
            (
                analytic::encode(&loaded.pixels, &opts)?,
                "analytic".to_string(),
            )
        }
        Method::Network => {
            let progress = TermProgress::new("encoding");
            let encoder = args
                .net
                .options(ModelKind::Compact, &progress)
                .with_quality(args.quality)?
                .with_refine_options(refine);
            let encoder = if args.no_fit {
                encoder.with_color_fit(None)
            } else {
                encoder
            }
            .build()?;
            if encoder.info().kind == ModelKind::Upscale && args.quality != 50 {
                eprintln!("gsimg: --quality has no effect with an upscale model (a dense field)");
            } else if args.quality < 50 {
                eprintln!(
                    "gsimg: note: the compact model has one trained rate; --quality below 50 \
                     gives the same file as 50 (use --method analytic for smaller files)"
                );
            }
            let mut wo = encoder.write_options(loaded.pixels.layout);
            wo.metadata.icc_profile = loaded.icc_profile;
            let encoded = encoder.encode_with(&loaded.pixels, &wo);
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
    for note in &encoded.notes {
        eprintln!("gsimg: note: {note}");
    }
    write_output(&args.output, &encoded.bytes)?;
    eprintln!(
        "gsimg: {}x{} -> {} Gaussians, {} bytes, {:.3} bpp ({how})",
        loaded.pixels.width,
        loaded.pixels.height,
        encoded.image.gaussian_count(),
        encoded.bytes.len(),
        encoded.bytes.len() as f64 * 8.0 / px
    );
    Ok(())
}
