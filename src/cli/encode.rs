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
use gsimg::encode::{RateResult, RateTarget};

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
    /// network model: below 50 it keeps the most valuable share of the model's Gaussians (5 %
    /// at 1, all at 50); above 50 it keeps Gaussians the model rated less likely (presence
    /// threshold 1 - Q/100 where that is below the model's own, at least 0.05) and stores
    /// them with up to 2 more bits per attribute (below 50, up to 3 fewer).
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u8).range(1..=100))]
    quality: u8,
    /// Gaussians per native pixel (analytic encoder; overrides --quality), e.g. 0.025.
    #[arg(long)]
    density: Option<f64>,
    /// Aim for this many bits per native pixel (within 3 %), in place of --quality: the
    /// analytic encoder searches its density, the network encoder the share of its Gaussians
    /// it keeps (it cannot go above the rate of all of them).
    #[arg(long, value_name = "BPP", conflicts_with_all = ["target_size", "density"])]
    target_bpp: Option<f64>,
    /// A file of at most this many bytes (and within 3 % of it when the encoder can reach
    /// it), in place of --quality.
    #[arg(long, value_name = "BYTES", conflicts_with = "density")]
    target_size: Option<u64>,
    /// Gradient-refinement iterations on the picture before writing (0: none; more: slower,
    /// better). Default: 40 for the analytic encoder, 0 for the network. Both refine in four
    /// rounds, each after moving a tenth of the Gaussians to where the error is (the analytic
    /// encoder from 0.015 Gaussians per pixel up). The Gaussians refinement starts from are
    /// resized: the analytic encoder's are smaller (σ 0.45 of their quadtree block instead of
    /// 0.55), the network's larger (oriented along the picture's edges, then σ × 1.3).
    #[arg(long)]
    refine: Option<usize>,
    /// Network encoder: write the network's colours as they are, without the least-squares
    /// colour fit that follows it by default (faster, about 0.4 dB lower on Kodak).
    #[arg(long)]
    no_fit: bool,
    #[command(flatten)]
    net: NetworkArgs,
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
    let loaded = gsimg::encode::load_image(&bytes, limits)
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
    let px = loaded.pixels.width as f64 * loaded.pixels.height as f64;
    let target = match (args.target_bpp, args.target_size) {
        (Some(b), _) => Some(RateTarget::Bpp(b)),
        (None, Some(n)) => Some(RateTarget::Bytes(n)),
        (None, None) => None,
    };
    let report = |r: RateResult| {
        if !r.on_target {
            eprintln!(
                "gsimg: note: the target was not reached; the nearest file has {:.3} bpp",
                r.encoded.bytes.len() as f64 * 8.0 / px
            );
        }
        r.encoded
    };
    let (encoded, how) = match method {
        Method::Analytic => {
            let mut opts = AnalyticOptions::with_quality(args.quality)?;
            if let Some(d) = args.density {
                opts.density = d;
            }
            if let Some(n) = args.refine {
                opts.refine.iterations = n;
            }
            opts.write.metadata.icc_profile = loaded.icc_profile;
            let encoded = match target {
                Some(t) => report(analytic::encode_to_rate(&loaded.pixels, &opts, t)?),
                None => analytic::encode(&loaded.pixels, &opts)?,
            };
            (encoded, "analytic".to_string())
        }
        Method::Network => {
            let progress = TermProgress::new("encoding");
            let encoder = args
                .net
                .options(ModelKind::Compact, &progress)
                .with_quality(args.quality)?
                .with_refine(args.refine.unwrap_or(0));
            let encoder = if args.no_fit {
                encoder.with_color_fit(None)
            } else {
                encoder
            }
            .build()?;
            if encoder.info().kind == ModelKind::Upscale && args.quality != 50 {
                eprintln!("gsimg: --quality has no effect with an upscale model (a dense field)");
            }
            let mut wo = encoder.write_options(loaded.pixels.layout);
            wo.metadata.icc_profile = loaded.icc_profile;
            let encoded = match target {
                Some(t) => encoder.encode_to_rate(&loaded.pixels, &wo, t).map(report),
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
