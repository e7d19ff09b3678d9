//! `gsimg encode`: a picture to a `.gsi` file, or many pictures into a folder in one process,
//! with the encoder network (by default, when a model is found) or the analytic encoder. Also
//! the options and progress display shared with `gsimg upscale`.
//!
//! Many pictures share one encoder: the model's ONNX Runtime session, the GPU and the
//! refinement's buffers are set up once, and the next picture is read and decoded on a thread
//! of its own while one encodes.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::{Context, Result};
use clap::{Args, ValueEnum};

use super::io::read_input;
use super::output::{Output, Writes};
use super::report::{self, Progress};
use super::{Context as RunContext, parse, usage};
use gsimg::encode::{Effort, EncoderKind, RateResult, RateTarget, RefineDevice, RefineOptions};
use gsimg::network::{Device as NetworkDevice, LibrarySearch, ModelKind};
use gsimg::{AnalyticOptions, NetworkOptions};

/// Encode pictures (PNG, JPEG, WebP, TIFF, BMP, GIF) into .gsi files.
///
/// One picture: gsimg encode IN OUT.gsi. Several (or one into a folder): gsimg encode IN...
/// --out-dir DIR writes each picture to DIR as its file name with .gsi for its extension
/// (photos/a.png: DIR/a.gsi), loading the model and the GPU once for all of them and reading
/// the next picture while one encodes. A picture that fails is reported on one line and the
/// others are encoded; the exit status is then 1. Two pictures of the same name are refused.
///
/// By default the compact network model encodes (models/compact.onnx, run by ONNX Runtime,
/// which gsimg fetches on first use). Without the model or ONNX Runtime, the analytic encoder
/// encodes instead, with a warning.
#[derive(Args)]
#[command(override_usage = "gsimg encode [OPTIONS] <INPUT> <OUTPUT>\n       \
                            gsimg encode [OPTIONS] --out-dir <DIR> <INPUT>...")]
pub struct EncodeArgs {
    /// The input picture and the output .gsi file (- for stdin, stdout); with --out-dir, the
    /// input pictures.
    #[arg(value_name = "FILES", required = true, num_args = 1..)]
    files: Vec<PathBuf>,
    /// Encode every input picture into this folder (which must exist), each as its file name
    /// with .gsi for its extension.
    ///
    /// An existing output is replaced when it is a .gsi file (or empty), as with one picture;
    /// anything else only with --force.
    #[arg(short = 'o', long, value_name = "DIR")]
    out_dir: Option<PathBuf>,
    /// Encoder: network (default when available) or analytic (needs no model, any rate).
    #[arg(long, value_enum)]
    method: Option<Method>,
    /// Quality from 1 (smallest file) to 100.
    ///
    /// Analytic encoder: sets how many Gaussians are placed. Network: below 50 it keeps the
    /// most valuable share of the model's Gaussians (5 % at 1) with fewer bits each; above 50
    /// it adds Gaussians where the picture is least exact (2 % more each step, 3 times the
    /// model's number at 100) and keeps Gaussians the model rated less likely; on Kodak
    /// pictures about 0.12 bpp at 1, 0.63 at 50, 2.2 at 100. Network with
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

    /// Network options for a model of `kind` (used when --model is not given), reporting
    /// progress to `progress`.
    pub fn options(&self, kind: ModelKind, progress: gsimg::ProgressSink) -> NetworkOptions {
        // The command line looks for the model and ONNX Runtime where gsimg installs them, and
        // fetches ONNX Runtime into the per-user cache when it is nowhere.
        let search = LibrarySearch {
            explicit_label: "--ort-lib".into(),
            ..LibrarySearch::from_env()
        };
        NetworkOptions {
            model: self.model.clone(),
            kind,
            installed: true,
            library_search: Some(search),
            device: match self.device {
                DeviceArg::Auto => NetworkDevice::Auto,
                DeviceArg::Cpu => NetworkDevice::Cpu,
                DeviceArg::Cuda => NetworkDevice::Cuda,
            },
            ort_library: self.ort_lib.clone(),
            threads: rayon::current_num_threads(),
            progress: Some(progress),
            messages: Some(Arc::new(|m: &str| report::info(m))),
            ..NetworkOptions::default()
        }
    }
}

pub fn run(args: EncodeArgs, ctx: &RunContext) -> Result<()> {
    let limits = ctx.limits;
    let run_clock = Instant::now();
    // One picture to a named file is claimed and read before anything else: a wrong output
    // path fails at once, and a file that is no picture fails with one line before any note
    // about models. Pictures into a folder are claimed and read in turn, one ahead of the
    // encoder.
    let (items, first, folder) = match &args.out_dir {
        None => {
            let (input, path) = single_paths(&args.files)?;
            if std::fs::metadata(path).is_ok_and(|m| m.is_dir()) {
                anyhow::bail!(
                    "cannot write {}: it is a folder (to encode into a folder, name it with \
                     --out-dir)",
                    path.display()
                );
            }
            let output = Output::claim(path, &[input], Writes::Gsi, ctx.force)?;
            let clock = Instant::now();
            let bytes = read_input(input)?;
            let size =
                gsimg::encode::picture_size(&bytes).with_context(|| input.display().to_string())?;
            let read_ms = ms(clock);
            let item = Item {
                input: input.clone(),
                output: path.clone(),
            };
            (vec![item], Some((output, bytes, size, read_ms)), None)
        }
        Some(dir) => (folder_items(&args.files, dir)?, None, Some(dir.clone())),
    };
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
    let memory = MemoryCheck {
        method,
        kind: match method {
            Method::Analytic => EncoderKind::Analytic {
                density: match args.density {
                    Some(d) => d,
                    None => AnalyticOptions::with_quality(args.quality)?.density,
                },
            },
            Method::Network => EncoderKind::Network,
        },
        analytic_density: AnalyticOptions::with_quality(args.quality)?.density,
        limits,
    };
    // The first picture's size is known: one too large for the encoder's memory is refused
    // before it is decoded and before the model loads.
    let first = match first {
        Some((output, bytes, (w, h), read_ms)) => {
            memory.check(&items[0].input, w, h)?;
            Some(Claimed {
                output,
                bytes,
                read_ms,
            })
        }
        None => None,
    };
    // The GPU (its context and kernels) opens on a thread of its own, and the pictures are
    // decoded on another, while the network loads: none of them waits for another. The
    // reader keeps one picture ready while the encoder works on the one before.
    let gpu_probe = gpu_probe(&args);
    let ahead = ReadAhead::start(items, first, memory, ctx.force);
    let relay = Relay::default();
    let first_progress = Progress::percent(&match folder {
        Some(_) => format!("encoding 1/{}", ahead.len),
        None => "encoding".to_string(),
    });
    relay.set(Some(first_progress.clone()));
    let clock = Instant::now();
    let network = match method {
        Method::Analytic => None,
        Method::Network => match network_encoder(&args, relay.sink(), &limits) {
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
    let encoder_ms = ms(clock);
    let probed = gpu_probe.0.is_some();
    let (gpu, gpu_ms) = gpu_probe.result();
    let refine = refine_options(&args, method, gpu);
    let mut network = network;
    if let Some(encoder) = network.as_mut() {
        encoder.set_refine_options(refine);
        note_network(encoder);
    }
    let encoder = Encoder {
        method,
        network,
        refine,
        // (A fallback from the network gets the analytic encoder's refinement.)
        analytic_refine: refine_options(&args, Method::Analytic, gpu),
        quality: args.quality,
        density: args.density,
        target: match (args.target_bpp, args.target_size) {
            (Some(b), _) => Some(RateTarget::Bpp(b)),
            (None, Some(n)) => Some(RateTarget::Bytes(n)),
            (None, None) => None,
        },
    };
    let ready = Instant::now();
    let gpu_note = match (probed, gpu) {
        (false, _) => String::new(),
        (true, true) => format!(", GPU ready in {gpu_ms:.1} ms (at the same time)"),
        (true, false) => format!(", no usable GPU (probed in {gpu_ms:.1} ms)"),
    };
    let Some(dir) = folder else {
        // One picture: its errors are the command's.
        let (_, picture) = ahead.next().context("internal error: no picture read")?;
        let picture = picture?;
        report::note(&format!(
            "start: picture decoded in {:.1} ms, encoder ready in {encoder_ms:.1} ms{gpu_note}",
            picture.decode_ms
        ));
        let done = encoder.encode(picture, &first_progress, &relay, "")?;
        report::info(&format!("{} ({})", done.summary, done.how));
        return Ok(());
    };
    report::note(&format!(
        "start: encoder ready in {encoder_ms:.1} ms{gpu_note}"
    ));
    let total = ahead.len;
    let (mut failed, mut times, mut how) = (0usize, Vec::new(), None);
    let mut since = ready;
    let mut progress = Some(first_progress);
    for k in 0..total {
        let clock = Instant::now();
        let Some((input, next)) = ahead.next() else {
            break;
        };
        let wait_ms = ms(clock);
        let progress = progress
            .take()
            .unwrap_or_else(|| Progress::percent(&format!("encoding {}/{total}", k + 1)));
        let prefix = format!("{}: ", input.display());
        let result = next.and_then(|picture| {
            let timing = format!(
                "read in {:.1} ms, decoded in {:.1} ms (waited {wait_ms:.1} ms for it)",
                picture.read_ms, picture.decode_ms
            );
            encoder
                .encode(picture, &progress, &relay, &prefix)
                .map(|done| (timing, done))
        });
        progress.finish();
        match result {
            Ok((timing, done)) => {
                report::note(&format!(
                    "{}: {timing}, encoded in {:.1} ms, written in {:.1} ms",
                    input.display(),
                    done.encode_ms,
                    done.write_ms
                ));
                report::info(&format!(
                    "{} -> {} ({})",
                    input.display(),
                    done.output.display(),
                    done.summary
                ));
                how.get_or_insert(done.how);
                // A picture's time: from the end of the one before (or the encoder being
                // ready) to its file written, what it adds to the run; its reading and
                // decoding overlapped the picture before.
                times.push(since.elapsed().as_secs_f64());
            }
            Err(e) => {
                failed += 1;
                // Every line names its picture.
                let line = crate::error_line(&e);
                let name = input.display().to_string();
                report::error(&if line.contains(&name) {
                    line
                } else {
                    format!("{name}: {line}")
                });
            }
        }
        since = Instant::now();
    }
    drop(ahead);
    let median = median(&mut times);
    report::info(&format!(
        "{total} picture{} into {}: {} encoded, {failed} failed; {:.2} s in all (start {:.2} s), \
         median {:.0} ms per picture{}",
        if total == 1 { "" } else { "s" },
        dir.display(),
        total - failed,
        run_clock.elapsed().as_secs_f64(),
        (ready - run_clock).as_secs_f64(),
        median * 1e3,
        how.map(|h| format!(" ({h})")).unwrap_or_default()
    ));
    if failed > 0 {
        anyhow::bail!(
            "{failed} of {total} picture{} could not be encoded",
            if total == 1 { "" } else { "s" }
        );
    }
    Ok(())
}

/// Milliseconds since `clock`.
fn ms(clock: Instant) -> f64 {
    clock.elapsed().as_secs_f64() * 1e3
}

/// The median of `v` (0 when empty).
fn median(v: &mut [f64]) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    }
}

/// `IN OUT` without --out-dir.
fn single_paths(files: &[PathBuf]) -> Result<(&PathBuf, &PathBuf)> {
    match files {
        [input, output] => Ok((input, output)),
        [_] => usage!(
            "encode needs an output: gsimg encode IN OUT.gsi, or gsimg encode IN... --out-dir DIR"
        ),
        _ => usage!(
            "{} files given: to encode several pictures, name the folder they go into with \
             --out-dir DIR (-o DIR); without it encode takes one picture and its output",
            files.len()
        ),
    }
}

/// The pictures of `--out-dir DIR` and their outputs: each picture's file name with `.gsi` for
/// its extension, in `dir`. Two pictures that would write the same output are refused before
/// any work (neither would survive the other).
fn folder_items(inputs: &[PathBuf], dir: &Path) -> Result<Vec<Item>> {
    if inputs.iter().any(|i| i.as_os_str() == "-") {
        usage!(
            "- (standard input) has no name to name its output by in --out-dir; encode it \
             alone: gsimg encode - OUT.gsi"
        );
    }
    match std::fs::metadata(dir) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => anyhow::bail!("--out-dir {}: not a folder", dir.display()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => anyhow::bail!(
            "--out-dir {}: no such folder (create it first)",
            dir.display()
        ),
        Err(e) => return Err(e).with_context(|| format!("--out-dir {}", dir.display())),
    }
    let mut items: Vec<Item> = Vec::with_capacity(inputs.len());
    for input in inputs {
        let Some(stem) = input.file_stem() else {
            usage!("{}: no file name to name its output by", input.display());
        };
        let mut name = stem.to_os_string();
        name.push(".gsi");
        let output = dir.join(name);
        if let Some(other) = items.iter().find(|i| i.output == output) {
            if other.input == *input {
                usage!("{} is given twice", input.display());
            }
            usage!(
                "{} and {} would both be written to {}; encode them into different folders",
                other.input.display(),
                input.display(),
                output.display()
            );
        }
        items.push(Item {
            input: input.clone(),
            output,
        });
    }
    Ok(items)
}

/// A picture to encode and the file it is written to.
struct Item {
    input: PathBuf,
    output: PathBuf,
}

/// A picture's output claimed and its file read, before its size is checked.
struct Claimed {
    output: Output,
    bytes: Vec<u8>,
    read_ms: f64,
}

/// A picture ready to encode.
struct Picture {
    input: PathBuf,
    output: Output,
    output_path: PathBuf,
    loaded: gsimg::encode::LoadedImage,
    read_ms: f64,
    decode_ms: f64,
}

/// Whether a picture of a size fits the encoder's memory limit (checked before decoding it).
#[derive(Clone, Copy)]
struct MemoryCheck {
    method: Method,
    kind: EncoderKind,
    /// The analytic encoder's density at the quality asked for: a network encode that does not
    /// fit says whether that one would.
    analytic_density: f64,
    limits: gsimg::Limits,
}

impl MemoryCheck {
    fn check(&self, input: &Path, w: u32, h: u32) -> Result<()> {
        let limits = &self.limits;
        if let Err(e) = gsimg::encode::check_memory(self.kind, w, h, limits) {
            let analytic = EncoderKind::Analytic {
                density: self.analytic_density,
            };
            let need = gsimg::encode::estimate_memory(analytic, w, h, limits);
            if self.method == Method::Network && need <= limits.max_memory_bytes {
                anyhow::bail!(
                    "{}: {e}; the analytic encoder (--method analytic) would need about {:.1} GiB",
                    input.display(),
                    need as f64 / (1u64 << 30) as f64
                );
            }
            return Err(anyhow::Error::from(e).context(input.display().to_string()));
        }
        Ok(())
    }
}

/// Pictures claimed, read and decoded on a thread of their own, one ahead of the encoder: the
/// thread hands over a picture only when the encoder asks for the next one (a rendezvous), so
/// at most one decoded picture waits beside the one encoding.
struct ReadAhead {
    len: usize,
    rx: Option<std::sync::mpsc::Receiver<(PathBuf, Result<Picture>)>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ReadAhead {
    /// Starts reading `items`; `first`: the first item's output already claimed and its file
    /// read and checked.
    fn start(items: Vec<Item>, first: Option<Claimed>, memory: MemoryCheck, force: bool) -> Self {
        let len = items.len();
        let (tx, rx) = std::sync::mpsc::sync_channel(0);
        let thread = std::thread::spawn(move || {
            let mut first = first;
            for item in items {
                let input = item.input.clone();
                let picture = prepare(item, first.take(), &memory, force);
                if tx.send((input, picture)).is_err() {
                    break;
                }
            }
        });
        ReadAhead {
            len,
            rx: Some(rx),
            thread: Some(thread),
        }
    }

    /// The next picture, or why it cannot be encoded, with its name; `None` after the last.
    fn next(&self) -> Option<(PathBuf, Result<Picture>)> {
        self.rx.as_ref()?.recv().ok()
    }
}

impl Drop for ReadAhead {
    /// Stops the reader and waits for it, so that the output it may have claimed (a temporary
    /// file) is removed before the process ends.
    fn drop(&mut self) {
        drop(self.rx.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Claims a picture's output, reads the file, checks its size against the memory limit and
/// decodes it (`read`: the first two done already).
fn prepare(
    item: Item,
    read: Option<Claimed>,
    memory: &MemoryCheck,
    force: bool,
) -> Result<Picture> {
    let Item { input, output } = item;
    let read = match read {
        Some(r) => r,
        None => {
            let claimed = Output::claim(&output, &[&input], Writes::Gsi, force)?;
            let clock = Instant::now();
            let bytes = read_input(&input)?;
            let (w, h) =
                gsimg::encode::picture_size(&bytes).with_context(|| input.display().to_string())?;
            memory.check(&input, w, h)?;
            Claimed {
                output: claimed,
                bytes,
                read_ms: ms(clock),
            }
        }
    };
    let clock = Instant::now();
    let loaded = gsimg::load_image(&read.bytes, &memory.limits)
        .with_context(|| input.display().to_string())?;
    Ok(Picture {
        input,
        output: read.output,
        output_path: output,
        loaded,
        read_ms: read.read_ms,
        decode_ms: ms(clock),
    })
}

/// The progress sink the network encoder is built with, passing its reports on to the display
/// of the picture being encoded.
#[derive(Clone, Default)]
struct Relay(Arc<Mutex<Option<Progress>>>);

impl Relay {
    fn set(&self, progress: Option<Progress>) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = progress;
    }

    fn sink(&self) -> gsimg::ProgressSink {
        let current = self.0.clone();
        Arc::new(move |done, total| {
            if let Some(p) = current.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
                p.update(done, total);
            }
        })
    }
}

/// The encoder chosen once for every picture: the network (its ONNX Runtime session loaded
/// once) or the analytic encoder, with the refinement and rate the options ask for.
struct Encoder {
    method: Method,
    network: Option<gsimg::NetworkEncoder>,
    refine: RefineOptions,
    analytic_refine: RefineOptions,
    quality: u8,
    density: Option<f64>,
    target: Option<RateTarget>,
}

/// What encoding one picture did.
struct Done {
    /// "768x512 -> 9000 Gaussians, 40000 bytes, 0.814 bpp".
    summary: String,
    /// Which encoder, where.
    how: String,
    output: PathBuf,
    encode_ms: f64,
    write_ms: f64,
}

impl Encoder {
    /// Encodes `picture` and writes its output, showing progress on `progress`; `prefix` starts
    /// each of the picture's warnings and notes (its name, when there are several).
    fn encode(
        &self,
        picture: Picture,
        progress: &Progress,
        relay: &Relay,
        prefix: &str,
    ) -> Result<Done> {
        let Picture {
            input,
            output,
            output_path,
            loaded,
            ..
        } = picture;
        if let Some(why) = &loaded.icc_dropped {
            report::warn(&format!("{}: {why}; encoding without it", input.display()));
        }
        let clock = Instant::now();
        relay.set(Some(progress.clone()));
        let result = self.encode_pixels(loaded, progress, prefix);
        relay.set(None);
        progress.finish();
        let (encoded, how) = result?;
        let (w, h) = (encoded.image.width(), encoded.image.height());
        // A picture is never nothing: an empty result is a fault (a damaged model), not a file.
        if encoded.image.gaussian_count() == 0 {
            anyhow::bail!(
                "the encoder produced no Gaussians for a {w}x{h} picture; nothing written ({how})"
            );
        }
        for note in &encoded.notes {
            report::note(&format!("{prefix}{note}"));
        }
        for warning in &encoded.warnings {
            report::warn(&format!("{prefix}{warning}"));
        }
        let encode_ms = ms(clock);
        let clock = Instant::now();
        output.write(&encoded.bytes)?;
        let px = w as f64 * h as f64;
        Ok(Done {
            summary: format!(
                "{w}x{h} -> {} Gaussians, {} bytes, {:.3} bpp",
                encoded.image.gaussian_count(),
                encoded.bytes.len(),
                encoded.bytes.len() as f64 * 8.0 / px
            ),
            how,
            output: output_path,
            encode_ms,
            write_ms: ms(clock),
        })
    }

    fn encode_pixels(
        &self,
        loaded: gsimg::encode::LoadedImage,
        progress: &Progress,
        prefix: &str,
    ) -> Result<(gsimg::encode::Encoded, String)> {
        let px = loaded.pixels.width as f64 * loaded.pixels.height as f64;
        let off_target = |r: RateResult| {
            if !r.on_target {
                report::warn(&format!(
                    "{prefix}the target was not reached; the nearest file has {:.3} bpp",
                    r.encoded.bytes.len() as f64 * 8.0 / px
                ));
            }
            r.encoded
        };
        match &self.network {
            None => {
                let mut opts = AnalyticOptions::with_quality(self.quality)?;
                if let Some(d) = self.density {
                    opts.density = d;
                }
                opts.refine = if self.method == Method::Analytic {
                    self.refine
                } else {
                    self.analytic_refine
                };
                opts.write.metadata.icc_profile = loaded.icc_profile;
                opts.progress = Some(progress.sink());
                let encoded = match self.target {
                    Some(t) => gsimg::encode::encode_analytic_to_rate(&loaded.pixels, &opts, t)
                        .map(off_target),
                    None => gsimg::encode_analytic(&loaded.pixels, &opts),
                };
                Ok((encoded?, "analytic".to_string()))
            }
            Some(encoder) => {
                let mut wo = encoder.write_options(loaded.pixels.layout);
                wo.metadata.icc_profile = loaded.icc_profile;
                let encoded = match self.target {
                    Some(t) => encoder
                        .encode_to_rate(&loaded.pixels, &wo, t)
                        .map(off_target),
                    None => encoder.encode_with(&loaded.pixels, &wo),
                };
                let how = format!(
                    "network {} ({}), {}",
                    encoder.model_path().display(),
                    encoder.info().version,
                    encoder.provider()
                );
                Ok((encoded?, how))
            }
        }
    }
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

fn effort(args: &EncodeArgs) -> Effort {
    match args.effort {
        EffortArg::Fast => Effort::Fast,
        EffortArg::Default => Effort::Default,
        EffortArg::Max => Effort::Max,
    }
}

/// Whether a refinement can run on the GPU, found out on a thread of its own: opening the
/// device and loading the kernels (which the refinement then shares) takes a good part of a
/// second, which the picture's decoding and the network's loading can hide.
struct GpuProbe(Option<std::thread::JoinHandle<(gsimg::Result<()>, f64)>>);

impl GpuProbe {
    /// (usable, milliseconds the probe took); false when no probe was started. A GPU that is
    /// there but fails (out of memory, a fault) is worth a warning; no GPU at all is not.
    fn result(self) -> (bool, f64) {
        let Some(h) = self.0 else {
            return (false, 0.0);
        };
        match h.join() {
            Ok((Ok(()), ms)) => (true, ms),
            Ok((Err(e @ gsimg::Error::Cuda(_)), ms)) => {
                report::warn(&format!(
                    "the GPU cannot be used ({e}); encoding as on a machine without one"
                ));
                (false, ms)
            }
            Ok((Err(_), ms)) => (false, ms),
            Err(_) => (false, 0.0),
        }
    }
}

/// Starts the GPU probe when the refinement may use a GPU.
fn gpu_probe(args: &EncodeArgs) -> GpuProbe {
    if args.net.refine_device() == RefineDevice::Cpu
        || (effort(args) == Effort::Fast && args.refine.is_none_or(|n| n == 0))
    {
        return GpuProbe(None);
    }
    GpuProbe(Some(std::thread::spawn(|| {
        let clock = std::time::Instant::now();
        let r = gsimg::gpu::CudaRenderer::new().and_then(|r| r.preload());
        (r, clock.elapsed().as_secs_f64() * 1e3)
    })))
}

/// The refinement `--effort`, `--refine` and `--device` ask for; `gpu`: whether the GPU
/// probe found a usable GPU.
fn refine_options(args: &EncodeArgs, method: Method, gpu: bool) -> RefineOptions {
    let device = args.net.refine_device();
    let effort = effort(args);
    let gpu = gpu && device != RefineDevice::Cpu && effort != Effort::Fast;
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
    progress: gsimg::ProgressSink,
    limits: &gsimg::Limits,
) -> gsimg::Result<gsimg::NetworkEncoder> {
    // Tile windows as large as the memory limit allows (checked above with the same estimate).
    // The refinement is set once the GPU probe has answered (`set_refine_options`).
    let mut options = NetworkOptions {
        quality: args.quality,
        memory_limit: Some(limits.max_memory_bytes),
        ..args.net.options(ModelKind::Compact, progress)
    };
    if args.no_fit {
        options.color_fit = None;
    }
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
