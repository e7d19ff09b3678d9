//! The neural encoder: a picture to Gaussians with an encoder network run by ONNX Runtime.
//!
//! This file holds everything but the runtime (`onnx.rs` is the only file that
//! touches `ort`): the model contract and its checks, pre-processing (channels, padding, tiles),
//! post-processing (the network's field to [`Gaussian`]s), alpha, and the file quantizers.
//!
//! # The model contract
//!
//! - input `image`, float32 `[1, 3, H, W]`: RGB in [0, 1], sRGB values as stored (not
//!   linearized); H and W are multiples of `gsimg.multiple` (the picture is padded to one by
//!   repeating its last row and column);
//! - output `gaussians`, float32 `[1, K, 9, H/c, W/c]`: for Gaussian k of cell (i, j) (cell
//!   (i, j) covers x in [i·c, (i+1)·c), y in [j·c, (j+1)·c)): 0 dx, 1 dy = offset of the centre
//!   from the cell's centre in input pixels; 2 log2σ₁, 3 log2σ₂ in input pixels; 4 θ radians;
//!   5, 6, 7 R, G, B; 8 presence in [0, 1] (below the threshold, 0.5 by default, the Gaussian is
//!   dropped);
//! - metadata `gsimg.kind` (`upscale` | `compact`), `gsimg.cell` (c), `gsimg.per_cell` (K),
//!   `gsimg.multiple`, `gsimg.receptive_field` (context pixels each side a cell depends on),
//!   `gsimg.version`; for `compact` the file quantizers it was trained with: `gsimg.pos_bits`,
//!   `gsimg.scale_bits`, `gsimg.scale_min`, `gsimg.scale_max` (log2 σ), `gsimg.rot_bits`,
//!   `gsimg.color_bits` (`Y,Cb,Cr`), `gsimg.color_min`, `gsimg.color_max` (comma-separated
//!   YCbCr ranges). An `upscale` model may give its log2 σ range (`gsimg.scale_min` and
//!   `gsimg.scale_max`, or `gsimg.log2_sigma_range` = `lo,hi`): its file quantizer then uses it.
//!
//! # Tiles
//!
//! Pictures larger than [`NetworkOptions::max_tile_pixels`] run in tiles: each tile's core is a
//! rectangle of whole cells (a multiple of `gsimg.multiple` pixels), its window the core plus a
//! margin of at least `gsimg.receptive_field` pixels on each side (clipped to the padded
//! picture), and each Gaussian is taken from the tile whose core holds its anchor cell. Every
//! kept cell then sees exactly the context it sees untiled, so tiling changes the result only by
//! floating-point summation order (no seams), and memory is bounded by the window size.
//!
//! # Channels
//!
//! Gray pictures go in as RGB (the gray value in each channel) and come out as the luma of the
//! network's colours. Alpha is not seen by the network: each Gaussian's alpha is fitted by least
//! squares to the picture's alpha under the rendering rule ([`fit`](crate::encode::fit)), on the
//! geometry the file stores.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use rayon::prelude::*;

use crate::core::splat::{ChannelLayout, Gaussian, SplatImage};
use crate::encode::input::Pixels;
use crate::encode::optim::coverage::{SPARES_PER_CELL, Spare, ensure_coverage};
use crate::encode::optim::fit::{FitOptions, fit_colors};
use crate::encode::optim::refine::{QuantGrid, RefineOptions, refine, refine_quantized};
use crate::encode::optim::symmetry::Symmetry;
use crate::encode::rate::{self, RateResult, RateTarget};
use crate::encode::runtime::onnx::{ModelDecl, OnnxModel, TensorDecl};
use crate::encode::runtime::ort_lib::{FoundLibrary, LibrarySearch};
use crate::format::consts::{MAX_CHANNEL_VALUE, MAX_LOG2_SCALE};
use crate::format::{self, ColorModel, Encoded, WriteOptions};
use crate::{Error, Result};

/// Which device runs the network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Device {
    /// CUDA when the ONNX Runtime library has it and it works, else the CPU.
    #[default]
    Auto,
    /// The CPU execution provider.
    Cpu,
    /// The CUDA execution provider, or an error.
    Cuda,
}

/// The execution provider that actually ran the network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    /// `CPUExecutionProvider`.
    Cpu,
    /// `CUDAExecutionProvider`.
    Cuda,
}

impl std::fmt::Display for Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Provider::Cpu => "CPUExecutionProvider",
            Provider::Cuda => "CUDAExecutionProvider",
        })
    }
}

/// The two operating points of the encoder network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelKind {
    /// Dense field for super-resolution (`models/upscale.onnx`).
    Upscale,
    /// Few Gaussians, trained through the file's quantizers (`models/compact.onnx`).
    Compact,
}

impl ModelKind {
    /// The model's file name in a `models/` folder.
    pub fn file_name(self) -> &'static str {
        match self {
            ModelKind::Upscale => "upscale.onnx",
            ModelKind::Compact => "compact.onnx",
        }
    }

    fn name(self) -> &'static str {
        match self {
            ModelKind::Upscale => "upscale",
            ModelKind::Compact => "compact",
        }
    }
}

/// The file quantizers a compact model was trained with (§5 of the format).
#[derive(Debug, Clone, PartialEq)]
pub struct Quantizers {
    /// Bits of each position offset inside its cell.
    pub position_bits: u8,
    /// Bits of each log2 σ.
    pub scale_bits: u8,
    /// Range of log2 σ (input pixels).
    pub scale_range: (f32, f32),
    /// Bits of the rotation.
    pub rotation_bits: u8,
    /// Bits of Y, Cb, Cr.
    pub color_bits: [u8; 3],
    /// Lower ends of the Y, Cb, Cr ranges.
    pub color_min: [f32; 3],
    /// Upper ends of the Y, Cb, Cr ranges.
    pub color_max: [f32; 3],
}

/// What a model file says about itself (its `gsimg.*` metadata), checked.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelInfo {
    /// Operating point.
    pub kind: ModelKind,
    /// Side c of a cell in input pixels.
    pub cell: u32,
    /// Gaussians per cell, K.
    pub per_cell: u32,
    /// Input sides must be multiples of this.
    pub multiple: u32,
    /// Context pixels on each side one cell's output depends on.
    pub receptive_field: u32,
    /// The model's version string.
    pub version: String,
    /// The file quantizers (compact models).
    pub quantizers: Option<Quantizers>,
    /// The range of log2 σ the model produces, when it says.
    pub scale_range: Option<(f32, f32)>,
    /// The presence threshold of the model's operating point (`gsimg.presence_threshold`,
    /// default 0.5): a Gaussian is kept when its presence is at least this.
    pub presence_threshold: f32,
}

fn meta_err(key: &str, why: impl std::fmt::Display) -> Error {
    Error::Model(format!("metadata `{key}` {why}"))
}

impl ModelInfo {
    /// Reads and checks the `gsimg.*` metadata.
    pub fn from_metadata(meta: &BTreeMap<String, String>) -> Result<ModelInfo> {
        let get = |key: &str| -> Result<&str> {
            meta.get(key).map(|s| s.trim()).ok_or_else(|| {
                let have: Vec<&str> = meta.keys().map(|k| k.as_str()).collect();
                meta_err(
                    key,
                    format!(
                        "is missing (the model has {}): not a gsimg encoder model, or exported \
                         without its metadata",
                        if have.is_empty() {
                            "no metadata".to_string()
                        } else {
                            format!("only {}", have.join(", "))
                        }
                    ),
                )
            })
        };
        fn num<T: std::str::FromStr>(key: &str, v: &str) -> Result<T> {
            v.parse()
                .map_err(|_| meta_err(key, format!("is `{v}`, not a number of the right kind")))
        }
        fn list<T: std::str::FromStr + Copy>(key: &str, v: &str) -> Result<[T; 3]> {
            let items: Vec<T> = v
                .split(',')
                .map(|p| num(key, p.trim()))
                .collect::<Result<_>>()?;
            <[T; 3]>::try_from(items).map_err(|_| {
                meta_err(
                    key,
                    format!("is `{v}`: expected three comma-separated values"),
                )
            })
        }
        let positive = |key: &str, lo: u32, hi: u32| -> Result<u32> {
            let v: u32 = num(key, get(key)?)?;
            if !(lo..=hi).contains(&v) {
                return Err(meta_err(key, format!("is {v}, outside {lo}..={hi}")));
            }
            Ok(v)
        };
        let kind = match get("gsimg.kind")? {
            "upscale" => ModelKind::Upscale,
            "compact" => ModelKind::Compact,
            other => {
                return Err(meta_err(
                    "gsimg.kind",
                    format!("is `{other}` (expected upscale or compact)"),
                ));
            }
        };
        let cell = positive("gsimg.cell", 1, 256)?;
        let per_cell = positive("gsimg.per_cell", 1, 4096)?;
        let multiple = positive("gsimg.multiple", 1, 4096)?;
        if multiple % cell != 0 {
            return Err(meta_err(
                "gsimg.multiple",
                format!("is {multiple}, not a multiple of gsimg.cell = {cell}"),
            ));
        }
        let receptive_field = positive("gsimg.receptive_field", 0, 4096)?;
        let version = get("gsimg.version")?.to_string();
        let range = |lo_key: &str, hi_key: &str| -> Result<Option<(f32, f32)>> {
            match (meta.get(lo_key), meta.get(hi_key)) {
                (Some(lo), Some(hi)) => {
                    let (lo, hi): (f32, f32) = (num(lo_key, lo.trim())?, num(hi_key, hi.trim())?);
                    if !(lo.is_finite() && hi.is_finite() && lo <= hi)
                        || lo.abs().max(hi.abs()) > MAX_LOG2_SCALE
                    {
                        return Err(meta_err(
                            lo_key,
                            format!("/ {hi_key}: bad range {lo}..{hi}"),
                        ));
                    }
                    Ok(Some((lo, hi)))
                }
                _ => Ok(None),
            }
        };
        // An upscale model may say `gsimg.log2_sigma_range` = "lo,hi" instead.
        let scale_range = match range("gsimg.scale_min", "gsimg.scale_max")? {
            Some(r) => Some(r),
            None => match meta.get("gsimg.log2_sigma_range") {
                Some(v) => {
                    let key = "gsimg.log2_sigma_range";
                    let parts: Vec<f32> = v
                        .split(',')
                        .map(|p| num(key, p.trim()))
                        .collect::<Result<_>>()?;
                    match parts[..] {
                        [lo, hi]
                            if lo.is_finite()
                                && hi.is_finite()
                                && lo <= hi
                                && lo.abs().max(hi.abs()) <= MAX_LOG2_SCALE =>
                        {
                            Some((lo, hi))
                        }
                        _ => return Err(meta_err(key, format!("is `{v}`: expected lo,hi"))),
                    }
                }
                None => None,
            },
        };
        let bits = |key: &str| -> Result<u8> {
            let v: u8 = num(key, get(key)?)?;
            if v > format::consts::MAX_BITS {
                return Err(meta_err(key, format!("is {v}, over 16 bits")));
            }
            Ok(v)
        };
        let quantizers = match kind {
            ModelKind::Upscale => None,
            ModelKind::Compact => {
                let color_bits: [u8; 3] = list("gsimg.color_bits", get("gsimg.color_bits")?)?;
                if color_bits[1] != color_bits[2] || color_bits.iter().any(|&b| b > 16) {
                    return Err(meta_err(
                        "gsimg.color_bits",
                        format!(
                            "is {color_bits:?}: Cb and Cr need the same number of bits (at most 16)"
                        ),
                    ));
                }
                let color_min: [f32; 3] = list("gsimg.color_min", get("gsimg.color_min")?)?;
                let color_max: [f32; 3] = list("gsimg.color_max", get("gsimg.color_max")?)?;
                if (0..3).any(|i| {
                    !(color_min[i].is_finite() && color_max[i].is_finite())
                        || color_min[i] > color_max[i]
                        || color_min[i].abs().max(color_max[i].abs()) > MAX_CHANNEL_VALUE
                }) {
                    return Err(meta_err(
                        "gsimg.color_min",
                        format!("/ gsimg.color_max: bad ranges {color_min:?}..{color_max:?}"),
                    ));
                }
                Some(Quantizers {
                    position_bits: bits("gsimg.pos_bits")?,
                    scale_bits: bits("gsimg.scale_bits")?,
                    scale_range: scale_range.ok_or_else(|| {
                        meta_err(
                            "gsimg.scale_min",
                            "and gsimg.scale_max are required for compact",
                        )
                    })?,
                    rotation_bits: bits("gsimg.rot_bits")?,
                    color_bits,
                    color_min,
                    color_max,
                })
            }
        };
        // A model whose presence logits gather at the decision boundary (the equilibrium of a
        // hard gate trained straight-through) names a threshold just below it, so that
        // rounding differences between training and inference do not flip those Gaussians.
        let presence_threshold = match meta.get("gsimg.presence_threshold") {
            None => 0.5,
            Some(v) => {
                let key = "gsimg.presence_threshold";
                let t: f32 = num(key, v.trim())?;
                if !(t > 0.0 && t < 1.0) {
                    return Err(meta_err(
                        key,
                        format!("is {t}: expected above 0 and below 1"),
                    ));
                }
                t
            }
        };
        Ok(ModelInfo {
            kind,
            cell,
            per_cell,
            multiple,
            receptive_field,
            version,
            quantizers,
            scale_range,
            presence_threshold,
        })
    }

    /// The margin of a tile's window around its core: the receptive field, rounded up to a
    /// whole `multiple` so windows stay aligned with the cell grid.
    pub fn tile_margin(&self) -> u32 {
        self.receptive_field.div_ceil(self.multiple) * self.multiple
    }
}

/// Checks the declared inputs and outputs against the contract.
fn check_io(decl: &ModelDecl, info: &ModelInfo) -> Result<()> {
    let describe = |t: &[TensorDecl]| {
        t.iter()
            .map(|d| format!("{} {:?}", d.name, d.shape))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let [input] = &decl.inputs[..] else {
        return Err(Error::Model(format!(
            "expected one input `image` [1, 3, H, W], the model has {}",
            describe(&decl.inputs)
        )));
    };
    let dim_ok = |d: i64, want: i64| d == want || d < 0;
    if input.name != "image"
        || input.is_f32 != Some(true)
        || input.shape.len() != 4
        || !dim_ok(input.shape[0], 1)
        || !dim_ok(input.shape[1], 3)
    {
        return Err(Error::Model(format!(
            "expected one float32 input `image` [1, 3, H, W], the model has {}",
            describe(&decl.inputs)
        )));
    }
    let Some(out) = decl.outputs.iter().find(|o| o.name == "gaussians") else {
        return Err(Error::Model(format!(
            "expected an output `gaussians` [1, K, 9, H/c, W/c], the model has {}",
            describe(&decl.outputs)
        )));
    };
    if out.is_f32 != Some(true)
        || out.shape.len() != 5
        || !dim_ok(out.shape[0], 1)
        || !dim_ok(out.shape[1], info.per_cell as i64)
        || !dim_ok(out.shape[2], 9)
    {
        return Err(Error::Model(format!(
            "expected a float32 output `gaussians` [1, K = {}, 9, H/c, W/c], the model declares {:?}",
            info.per_cell, out.shape
        )));
    }
    Ok(())
}

/// Where the default model of `kind` is looked for: `models/` next to the executable, then the
/// source tree's `models/` (known at build time).
pub fn model_candidates(kind: ModelKind) -> Vec<PathBuf> {
    let mut v = Vec::new();
    if let Some(dir) = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(Path::to_path_buf))
    {
        v.push(dir.join("models").join(kind.file_name()));
    }
    v.push(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("models")
            .join(kind.file_name()),
    );
    v
}

/// The default model of `kind`, or an error naming every path tried.
pub fn locate_model(kind: ModelKind) -> Result<PathBuf> {
    let c = model_candidates(kind);
    c.iter().find(|p| p.is_file()).cloned().ok_or_else(|| {
        Error::Model(format!(
            "no {} model found (tried {}); pass one with --model PATH{}",
            kind.name(),
            c.iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
            if kind == ModelKind::Compact {
                ", or use --method analytic"
            } else {
                ""
            }
        ))
    })
}

/// Checks a model file against the SHA-256 recorded beside it, in `<model file>.sha256` (the
/// format of `sha256sum`), when there is one: a damaged model (a truncated copy, flipped bits)
/// is refused before it runs. Returns whether there was a checksum to check; the models gsimg
/// ships all have one.
pub fn verify_model(path: &Path) -> Result<bool> {
    let Some(name) = path.file_name() else {
        return Ok(false);
    };
    let mut side = name.to_os_string();
    side.push(".sha256");
    let side = path.with_file_name(side);
    let text = match std::fs::read_to_string(&side) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(Error::Model(format!("cannot read {}: {e}", side.display()))),
    };
    let want = crate::encode::digest::parse_sha256(&text).ok_or_else(|| {
        Error::Model(format!(
            "{}: not a SHA-256 checksum (expected 64 hex digits, as sha256sum writes)",
            side.display()
        ))
    })?;
    let (_, got) = crate::encode::digest::file_sha256(path)
        .map_err(|e| Error::Model(format!("model {}: {e}", path.display())))?;
    if got != want {
        return Err(Error::Model(format!(
            "model {} is damaged: its SHA-256 is {got}, {} records {want}",
            path.display(),
            side.display()
        )));
    }
    Ok(true)
}

/// A sink for one-line status messages (fetching ONNX Runtime, the provider that ran).
pub type MessageSink = Arc<dyn Fn(&str) + Send + Sync>;

/// A progress callback: (tiles done, tiles in all).
pub type ProgressSink = Arc<dyn Fn(usize, usize) + Send + Sync>;

/// Before a compact model's Gaussians are refined per picture, both their σ are multiplied by
/// this (after orienting them by the picture's structure tensor). On seven validation pictures
/// of the training set, v3 at quality 50 with 40 steps: 34.96 dB at 0.821 bpp as they come,
/// 35.32 at 0.832 with ×1.2, **35.35 at 0.835 with ×1.3**, 35.30 / 35.17 / 34.88 with ×1.4 /
/// 1.5 / 1.6 (BENCHMARKS.md). A floor on σ (1 or 1.5 px, with ×1.2) gave nothing more.
pub const REFINE_SIGMA_GROWTH: f32 = 1.3;

/// The lowest presence threshold `--quality` reaches (at 95 and above). Below it are the slots
/// the model rated absent, whose parameters training never rendered: with v6 on the seven
/// validation pictures, thresholds 0.05 / 0.02 / 0.01 / 0 give 32.31 / 32.45 / 31.77 / 24.46 dB
/// at 0.93 / 1.83 / 3.14 / 4.01 bpp (BENCHMARKS.md).
pub const QUALITY_THRESHOLD_FLOOR: f32 = 0.05;

/// Settings of the network encoder. `Default` + `with_*`, checked by [`NetworkOptions::build`].
#[derive(Clone)]
pub struct NetworkOptions {
    /// The model file; `None` looks for the default model of [`NetworkOptions::kind`].
    pub model: Option<PathBuf>,
    /// Which default model to look for when no file is given.
    pub kind: ModelKind,
    /// Where the network runs.
    pub device: Device,
    /// An explicit ONNX Runtime library, tried before anything else.
    pub ort_library: Option<PathBuf>,
    /// Where else ONNX Runtime is looked for (`None`: from the environment).
    pub library_search: Option<LibrarySearch>,
    /// Gaussians whose presence is below this are dropped; `None`: the model's operating
    /// threshold ([`ModelInfo::presence_threshold`]), lowered by `quality` above 50
    /// ([`NetworkOptions::presence_threshold_for`]).
    pub presence_threshold: Option<f32>,
    /// Quality 1 to 100 of a compact model ([`NetworkOptions::with_quality`]).
    pub quality: u8,
    /// Largest network input (padded pixels) run in one piece; larger pictures go in tiles.
    pub max_tile_pixels: u64,
    /// Force tiles with cores of this side (pixels, rounded up to the model's multiple).
    pub tile_size: Option<u32>,
    /// ONNX Runtime's intra-op threads on the CPU (0: its default, all cores).
    pub threads: usize,
    /// Status messages (fetching ONNX Runtime, a CUDA fallback); `None`, the default: silent.
    /// The library prints nothing itself.
    pub messages: Option<MessageSink>,
    /// Progress over tiles (`None`: none).
    pub progress: Option<ProgressSink>,
    /// The least-squares fit of alpha.
    pub alpha_fit: FitOptions,
    /// Compact models: colours refitted by least squares to the picture, on the geometry as the
    /// file stores it, before writing (`None`: the network's colours are written as they are).
    /// The analytic encoder ends with the same fit.
    pub color_fit: Option<FitOptions>,
    /// Per-image refinement of the network's Gaussians before writing (compact files; 0
    /// iterations, the default: none). See [`refine`](crate::encode::refine).
    pub refine: RefineOptions,
}

impl std::fmt::Debug for NetworkOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NetworkOptions")
            .field("model", &self.model)
            .field("kind", &self.kind)
            .field("device", &self.device)
            .field("ort_library", &self.ort_library)
            .field("presence_threshold", &self.presence_threshold)
            .field("quality", &self.quality)
            .field("max_tile_pixels", &self.max_tile_pixels)
            .field("tile_size", &self.tile_size)
            .field("threads", &self.threads)
            .finish_non_exhaustive()
    }
}

impl Default for NetworkOptions {
    fn default() -> Self {
        NetworkOptions {
            model: None,
            kind: ModelKind::Compact,
            device: Device::Auto,
            ort_library: None,
            library_search: None,
            presence_threshold: None,
            quality: 50,
            max_tile_pixels: 1 << 21,
            tile_size: None,
            threads: 0,
            messages: None,
            progress: None,
            alpha_fit: FitOptions {
                iterations: 15,
                clamp: (0.0, 1.0),
                ..FitOptions::default()
            },
            // 15 conjugate-gradient steps, one sweep over the chunks: v3 gains +0.42 dB on
            // Kodak over the network's own colours (26.62 against 26.20 dB); a second sweep
            // added nothing there or on seven validation pictures (30.59 against 30.58 dB) and
            // cost ~2 ms of the H100 encode (BENCHMARKS.md)
            color_fit: Some(FitOptions {
                iterations: 15,
                sweeps: 1,
                ..FitOptions::default()
            }),
            // When refining (`with_refine`): four rounds, each after moving a tenth of the
            // Gaussians to where the error is. On seven validation pictures of the training
            // set (not Kodak) with v3 and 40 steps: 32.63 dB without moves, 33.44 with the
            // analytic encoder's 0.2 × 2, 33.82 with 0.1 × 4 (BENCHMARKS.md).
            refine: RefineOptions {
                iterations: 0,
                reallocate: 0.1,
                rounds: 4,
                ..RefineOptions::default()
            },
        }
    }
}

impl NetworkOptions {
    /// Uses this model file.
    pub fn with_model(mut self, path: impl Into<PathBuf>) -> Self {
        self.model = Some(path.into());
        self
    }
    /// Looks for the default model of this kind when no file is given.
    pub fn with_kind(mut self, kind: ModelKind) -> Self {
        self.kind = kind;
        self
    }
    /// Runs on this device.
    pub fn with_device(mut self, device: Device) -> Self {
        self.device = device;
        self
    }
    /// Tries this ONNX Runtime library first.
    pub fn with_ort_library(mut self, path: Option<PathBuf>) -> Self {
        self.ort_library = path;
        self
    }
    /// Searches for ONNX Runtime this way instead of from the environment.
    pub fn with_library_search(mut self, search: LibrarySearch) -> Self {
        self.library_search = Some(search);
        self
    }
    /// The whole refinement setting (steps, rounds, quantization-aware steps, device), e.g.
    /// [`RefineOptions::for_effort`](crate::encode::refine::RefineOptions::for_effort).
    pub fn with_refine_options(mut self, refine: RefineOptions) -> Self {
        self.refine = refine;
        self
    }

    /// Where the refinement ([`NetworkOptions::with_refine`]) runs (default: the CPU).
    pub fn with_refine_device(mut self, device: crate::encode::refine::RefineDevice) -> Self {
        self.refine.device = device;
        self
    }

    /// Refines the network's Gaussians by `iterations` gradient steps on the picture before
    /// writing (then quantizes the geometry and fits the colours to it by least squares):
    /// slower, better files.
    pub fn with_refine(mut self, iterations: usize) -> Self {
        self.refine.iterations = iterations;
        self
    }
    /// Compact models: refit the colours by least squares before writing (the default), or
    /// write the network's colours as they are (`None`).
    pub fn with_color_fit(mut self, fit: Option<FitOptions>) -> Self {
        self.color_fit = fit;
        self
    }
    /// Sets the presence threshold (0 to 1) in place of the model's and the quality's.
    pub fn with_presence_threshold(mut self, t: f32) -> Self {
        self.presence_threshold = Some(t);
        self
    }
    /// Quality 1 to 100 for a compact model. The model has one trained rate (its operating
    /// threshold, [`ModelInfo::presence_threshold`], 0.5 unless the model says otherwise);
    /// quality above 50 lowers the presence threshold to `1 − quality/100` when that is lower,
    /// but never below [`QUALITY_THRESHOLD_FLOOR`] (so 95 to 100 give the same file), keeping
    /// Gaussians the model rated less likely (somewhat larger files, a little higher PSNR:
    /// BENCHMARKS.md). Quality 50 is the trained point; below it the encoder keeps a share of
    /// the Gaussians ([`NetworkOptions::keep_fraction`]) and writes them with up to 3 bits
    /// less precision, above it with up to 2 bits more ([`NetworkEncoder::write_options`]).
    pub fn with_quality(mut self, quality: u8) -> Result<Self> {
        if !(1..=100).contains(&quality) {
            return Err(Error::invalid(
                "quality",
                format!("{quality} (allowed: 1 to 100)"),
            ));
        }
        self.quality = quality;
        Ok(self)
    }
    /// The share of the network's Gaussians a quality keeps: all from 50 up; below, from 5 %
    /// at quality 1 geometrically up to all at 50, the least valuable dropped first
    /// ([`rank_by_value`]).
    pub fn keep_fraction(&self) -> f64 {
        if self.quality >= 50 {
            1.0
        } else {
            0.05f64.powf((50 - self.quality) as f64 / 49.0)
        }
    }

    /// The presence threshold these options give a model whose operating threshold is
    /// `info.presence_threshold`: the explicit one, else the model's, lowered to
    /// `1 − quality/100` (at least [`QUALITY_THRESHOLD_FLOOR`]) when the quality is above 50
    /// and that is lower.
    pub fn presence_threshold_for(&self, info: &ModelInfo) -> f32 {
        match self.presence_threshold {
            Some(t) => t,
            None if self.quality > 50 => info
                .presence_threshold
                .min((1.0 - self.quality as f32 / 100.0).max(QUALITY_THRESHOLD_FLOOR)),
            None => info.presence_threshold,
        }
    }
    /// Runs inputs up to this many (padded) pixels in one piece.
    pub fn with_max_tile_pixels(mut self, n: u64) -> Self {
        self.max_tile_pixels = n;
        self
    }
    /// Forces tiles with cores of this side.
    pub fn with_tile_size(mut self, side: Option<u32>) -> Self {
        self.tile_size = side;
        self
    }
    /// ONNX Runtime's CPU threads (0: all cores).
    pub fn with_threads(mut self, n: usize) -> Self {
        self.threads = n;
        self
    }
    /// Where status messages go (`None`: nowhere).
    pub fn with_messages(mut self, sink: Option<MessageSink>) -> Self {
        self.messages = sink;
        self
    }
    /// Where progress goes.
    pub fn with_progress(mut self, sink: Option<ProgressSink>) -> Self {
        self.progress = sink;
        self
    }

    /// Checks the options, finds the model and ONNX Runtime, opens the model on the device and
    /// checks it against the contract.
    pub fn build(self) -> Result<NetworkEncoder> {
        if let Some(t) = self.presence_threshold.filter(|t| !(0.0..=1.0).contains(t)) {
            return Err(Error::invalid(
                "presence threshold",
                format!("{t} (allowed: 0 to 1)"),
            ));
        }
        if !(1..=100).contains(&self.quality) {
            return Err(Error::invalid(
                "quality",
                format!("{} (allowed: 1 to 100)", self.quality),
            ));
        }
        if self.max_tile_pixels < 64 * 64 {
            return Err(Error::invalid(
                "max tile pixels",
                format!("{} (allowed: at least 4096)", self.max_tile_pixels),
            ));
        }
        if self.tile_size == Some(0) {
            return Err(Error::invalid("tile size", "0 (allowed: at least 1)"));
        }
        let path = match &self.model {
            Some(p) => p.clone(),
            None => locate_model(self.kind)?,
        };
        verify_model(&path)?;
        let search = self
            .library_search
            .clone()
            .unwrap_or_else(LibrarySearch::from_env)
            .with_explicit(self.ort_library.clone());
        let sink = self.messages.clone();
        let say = move |m: &str| {
            if let Some(s) = &sink {
                s(m)
            }
        };
        let info_cell = std::sync::OnceLock::new();
        let validate = |decl: &ModelDecl| -> Result<(usize, usize)> {
            let info = ModelInfo::from_metadata(&decl.metadata)?;
            check_io(decl, &info)?;
            let side = 64usize.div_ceil(info.multiple as usize) * info.multiple as usize;
            let _ = info_cell.set(info);
            Ok((side, side))
        };
        let model = OnnxModel::open(&path, self.device, &search, self.threads, &validate, &say)?;
        let info = info_cell
            .into_inner()
            .ok_or_else(|| Error::Model("internal error: model not validated".into()))?;
        if let Some(why) = &model.fallback_reason {
            say(&format!("CUDA not used ({why}); running on the CPU"));
        }
        Ok(NetworkEncoder {
            opts: self,
            model,
            info,
            path,
        })
    }
}

/// A loaded encoder network, ready to encode pictures.
pub struct NetworkEncoder {
    opts: NetworkOptions,
    model: OnnxModel,
    info: ModelInfo,
    path: PathBuf,
}

/// What one run of the network produced.
#[derive(Debug, Clone)]
pub struct NetworkOutput {
    /// The Gaussians (continuous, not quantized), alpha fitted if the picture has alpha.
    pub image: SplatImage,
    /// The execution provider that ran.
    pub provider: Provider,
    /// Network runs (tiles).
    pub tiles: usize,
    /// Seconds in the network runs.
    pub network_seconds: f64,
    /// Seconds in all.
    pub total_seconds: f64,
}

/// One tile: its core and window, `[x0, y0, x1, y1)` in padded-picture pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tile {
    /// The pixels whose cells this tile keeps.
    pub core: [u32; 4],
    /// The pixels the network sees.
    pub window: [u32; 4],
}

/// Cuts a padded picture of `wp × hp` pixels (multiples of `multiple`) into tiles.
pub fn plan_tiles(
    wp: u32,
    hp: u32,
    multiple: u32,
    margin: u32,
    max_pixels: u64,
    core_side: Option<u32>,
) -> Vec<Tile> {
    let m = multiple.max(1);
    let round_up = |v: u32| v.div_ceil(m) * m;
    let (tx, ty) = match core_side {
        Some(s) => (round_up(s).min(wp), round_up(s).min(hp)),
        None if wp as u64 * hp as u64 <= max_pixels => (wp, hp),
        None => {
            // The largest square window within the budget, then cores evened out.
            let side = ((max_pixels as f64).sqrt() as u32).saturating_sub(2 * margin);
            let side = (side / m * m).max(m);
            let even = |total: u32| {
                let n = total.div_ceil(side);
                round_up(total.div_ceil(n))
            };
            (even(wp), even(hp))
        }
    };
    let mut tiles = Vec::new();
    for y0 in (0..hp).step_by(ty as usize) {
        for x0 in (0..wp).step_by(tx as usize) {
            let (x1, y1) = ((x0 + tx).min(wp), (y0 + ty).min(hp));
            tiles.push(Tile {
                core: [x0, y0, x1, y1],
                window: [
                    x0.saturating_sub(margin),
                    y0.saturating_sub(margin),
                    (x1 + margin).min(wp),
                    (y1 + margin).min(hp),
                ],
            });
        }
    }
    tiles
}

impl NetworkEncoder {
    /// The model's metadata.
    pub fn info(&self) -> &ModelInfo {
        &self.info
    }

    /// The model file.
    pub fn model_path(&self) -> &Path {
        &self.path
    }

    /// The execution provider the network runs on.
    pub fn provider(&self) -> Provider {
        self.model.provider
    }

    /// Why CUDA was allowed but not used, if it was not.
    pub fn cuda_fallback_reason(&self) -> Option<&str> {
        self.model.fallback_reason.as_deref()
    }

    /// The ONNX Runtime library in use.
    pub fn library(&self) -> &FoundLibrary {
        &self.model.library
    }

    /// The tiles a `width × height` picture is run in.
    pub fn tiles_for(&self, width: u32, height: u32) -> Vec<Tile> {
        let m = self.info.multiple;
        plan_tiles(
            width.div_ceil(m) * m,
            height.div_ceil(m) * m,
            m,
            self.info.tile_margin(),
            self.opts.max_tile_pixels,
            self.opts.tile_size,
        )
    }

    /// Runs the network over `pixels` and returns its Gaussians (not quantized), alpha fitted.
    pub fn gaussians(&self, pixels: &Pixels) -> Result<NetworkOutput> {
        let mut out = self.field(pixels)?;
        if pixels.layout.has_alpha() {
            let mut gs = out.image.into_gaussians();
            fit_alpha(pixels, &mut gs, &self.opts.alpha_fit);
            out.image = SplatImage::new(pixels.width, pixels.height, pixels.layout, gs)?;
        }
        Ok(out)
    }

    /// The Gaussians of `pixels` as the network sees them under `symmetry`: it runs on the
    /// transformed picture and the Gaussians are mapped back to `pixels`' frame
    /// ([`Symmetry::unapply_gaussians`], exact). Averaging the renders of all 8 is the upscale
    /// model's geometric self-ensemble (`gsimg upscale --ensemble`; BENCHMARKS.md):
    ///
    /// ```no_run
    /// use gsimg::encode::symmetry::Symmetry;
    /// use gsimg::encode::{NetworkOptions, ModelKind, Pixels};
    /// use gsimg::render::{FrameMean, render_cpu};
    /// use gsimg::{Frame, Limits, Viewport};
    ///
    /// # fn main() -> gsimg::Result<()> {
    /// # let pixels: Pixels = todo!();
    /// let encoder = NetworkOptions::default().with_kind(ModelKind::Upscale).build()?;
    /// let (view, limits) = (Viewport::full(pixels.width * 3, pixels.height * 3), Limits::default());
    /// let r = view.region;
    /// let mut mean = FrameMean::new(r.width, r.height, pixels.channels(), &limits)?;
    /// for s in Symmetry::ALL {
    ///     let field = encoder.gaussians_under(&pixels, s)?.image;
    ///     mean.add(&render_cpu::<f32>(&field, &view, &limits)?)?;
    /// }
    /// let upscaled: Frame<u8> = mean.mean();
    /// # Ok(())
    /// # }
    /// ```
    pub fn gaussians_under(&self, pixels: &Pixels, symmetry: Symmetry) -> Result<NetworkOutput> {
        if symmetry == Symmetry::IDENTITY {
            return self.gaussians(pixels);
        }
        pixels.validate()?;
        let mut out = self.gaussians(&symmetry.apply_pixels(pixels))?;
        let mut gs = out.image.into_gaussians();
        symmetry.unapply_gaussians(&mut gs, pixels.width, pixels.height);
        out.image = SplatImage::new(pixels.width, pixels.height, pixels.layout, gs)?;
        Ok(out)
    }

    /// The network's Gaussians, alpha not yet fitted (the alpha channel holds the nearest
    /// pixel's alpha).
    fn field(&self, pixels: &Pixels) -> Result<NetworkOutput> {
        pixels.validate()?;
        let start = Instant::now();
        let (w, h) = (pixels.width, pixels.height);
        let info = &self.info;
        let (c, k) = (info.cell, info.per_cell as usize);
        let tiles = self.tiles_for(w, h);
        let mut gaussians = Vec::new();
        let mut spares = Vec::new();
        let threshold = self.opts.presence_threshold_for(info);
        let mut network_seconds = 0.0;
        if let Some(p) = &self.opts.progress {
            p(0, tiles.len());
        }
        for (t, tile) in tiles.iter().enumerate() {
            let [wx0, wy0, wx1, wy1] = tile.window;
            let (ww, wh) = ((wx1 - wx0) as usize, (wy1 - wy0) as usize);
            let input = tile_input(pixels, tile.window);
            let (hc, wc) = (wh / c as usize, ww / c as usize);
            let run_start = Instant::now();
            self.model.run(&input, wh, ww, &mut |shape, data| {
                let want = [1, k as i64, 9, hc as i64, wc as i64];
                if shape != want || data.len() != k * 9 * hc * wc {
                    return Err(Error::Model(format!(
                        "model {}: output `gaussians` has shape {shape:?} for a {ww}x{wh} input; \
                         the contract (gsimg.cell = {c}, gsimg.per_cell = {k}) needs {want:?}",
                        self.path.display()
                    )));
                }
                network_seconds += run_start.elapsed().as_secs_f64();
                // A sound model never produces NaN or infinity; damaged weights do (and would
                // otherwise drop every Gaussian, or draw garbage).
                let bad = data.iter().filter(|v| !v.is_finite()).count();
                if bad > 0 {
                    return Err(Error::Model(format!(
                        "model {}: the network produced {bad} non-finite values (NaN or \
                         infinity) of {}; the model file is probably damaged",
                        self.path.display(),
                        data.len()
                    )));
                }
                decode_cells(
                    pixels,
                    data,
                    (hc, wc),
                    tile,
                    info,
                    threshold,
                    &mut gaussians,
                    &mut spares,
                )
            })?;
            if let Some(p) = &self.opts.progress {
                p(t + 1, tiles.len());
            }
        }
        // No pixel left to no Gaussian (it would render black): see `coverage`.
        ensure_coverage(w, h, c, &mut gaussians, &spares);
        if gaussians.is_empty() {
            return Err(Error::Model(format!(
                "model {}: the network produced no Gaussians for a {w}x{h} picture",
                self.path.display()
            )));
        }
        let image = SplatImage::new(w, h, pixels.layout, gaussians)?;
        Ok(NetworkOutput {
            image,
            provider: self.model.provider,
            tiles: tiles.len(),
            network_seconds,
            total_seconds: start.elapsed().as_secs_f64(),
        })
    }

    /// The file layout and quantizers this model's Gaussians are written with: a compact model's
    /// own (cell size c, its bits and ranges, YCbCr); for an upscale model a fine setting (cell
    /// 1 px, positions 6 bits, log2 σ 8 bits, rotation 8 bits, Y/Cb/Cr 10/8/8 bits, ranges from
    /// the data), which costs well under 0.05 dB on an upscale (BENCHMARKS.md). A compact model
    /// whose Gaussians are refined per picture ([`NetworkOptions::with_refine`]) writes with the
    /// analytic encoder's quantizers instead ([`WriteOptions::default`]: ranges from the data,
    /// 6-bit scales and rotations): refined Gaussians are off the grid the model was trained
    /// on, and the finer steps paid (seven validation pictures, v3, 40 steps: +0.67 dB for 11 %
    /// more bits, BENCHMARKS.md). Positions then keep the analytic encoder's step of a quarter
    /// pixel or finer whatever the model's cell size (6 bits in a 16-pixel cell). Without
    /// refinement a compact model's bits follow the quality: up to 3 fewer per attribute at 1,
    /// the model's own at 50, 2 more at 100 (positions from 76 and 96, scales 80 and 97,
    /// rotations 84 and 98, luma 88 and 99, chroma 92 and 100).
    pub fn write_options(&self, layout: ChannelLayout) -> WriteOptions {
        if self.opts.refine.iterations > 0 && self.info.quantizers.is_some() {
            return WriteOptions {
                cell_size: self.info.cell as u16,
                position_bits: refined_position_bits(self.info.cell),
                ..WriteOptions::default()
            };
        }
        let mut wo = write_options_for(&self.info, layout);
        if self.info.kind == ModelKind::Compact && self.opts.quality < 50 {
            // Below 50 the precision falls with the share kept: up to 3 bits fewer for
            // positions, scales, rotations and colours at quality 1.
            let drop = ((50 - self.opts.quality) as f64 / 49.0 * 3.0).round() as u8;
            for b in [
                &mut wo.position_bits,
                &mut wo.scale_bits,
                &mut wo.rotation_bits,
                &mut wo.luma_bits,
                &mut wo.chroma_bits,
            ] {
                *b = b.saturating_sub(drop).max((*b).min(3));
            }
        } else if self.info.kind == ModelKind::Compact && self.opts.quality > 50 {
            // Above 50 the precision rises too, one attribute at a time, so that every quality
            // from 95 (where the presence threshold stops falling) to 100 still adds a bit.
            let q = self.opts.quality;
            for (b, steps) in [
                (&mut wo.position_bits, [76, 96]),
                (&mut wo.scale_bits, [80, 97]),
                (&mut wo.rotation_bits, [84, 98]),
                (&mut wo.luma_bits, [88, 99]),
                (&mut wo.chroma_bits, [92, 100]),
            ] {
                let add = steps.iter().filter(|&&t| q >= t).count() as u8;
                *b = (*b + add).min(16);
            }
        }
        wo
    }

    /// Encodes `pixels` into a `.gsi` file with [`NetworkEncoder::write_options`].
    pub fn encode(&self, pixels: &Pixels) -> Result<Encoded> {
        self.encode_with(pixels, &self.write_options(pixels.layout))
    }

    /// Encodes `pixels` into a `.gsi` file with the given options (e.g. with metadata added).
    /// Alpha is fitted on the geometry as the file stores it.
    pub fn encode_with(&self, pixels: &Pixels, opts: &WriteOptions) -> Result<Encoded> {
        let gs = self.field(pixels)?.image.into_gaussians();
        let keep = match self.info.kind {
            ModelKind::Compact => self.opts.keep_fraction(),
            ModelKind::Upscale => 1.0,
        };
        if keep < 1.0 {
            let ranked = rank_by_value(pixels, &gs, self.info.cell);
            return self.finish(
                pixels,
                keep_share(pixels, &gs, &ranked, keep, self.info.cell),
                opts,
            );
        }
        self.finish(pixels, gs, opts)
    }

    /// Encodes `pixels` into a file of the size `target` asks for, by keeping the most
    /// valuable share of the network's Gaussians ([`rank_by_value`]; the dropped ones serve as
    /// spares where a cell would be left uncovered). The network runs once; each round of the
    /// search fits the colours and writes again. The quality setting is not used.
    pub fn encode_to_rate(
        &self,
        pixels: &Pixels,
        opts: &WriteOptions,
        target: RateTarget,
    ) -> Result<RateResult> {
        target.validate()?;
        let gs = self.field(pixels)?.image.into_gaussians();
        let ranked = rank_by_value(pixels, &gs, self.info.cell);
        let n = gs.len().max(1) as f64;
        let px = pixels.width as f64 * pixels.height as f64;
        rate::search(target, px, (1.0 / n, 1.0), 1.0, |f| {
            self.finish(
                pixels,
                keep_share(pixels, &gs, &ranked, f, self.info.cell),
                opts,
            )
        })
    }

    /// Fits, quantizes and writes the network's (kept) Gaussians.
    fn finish(
        &self,
        pixels: &Pixels,
        mut gs: Vec<Gaussian>,
        opts: &WriteOptions,
    ) -> Result<Encoded> {
        let refining = self.opts.refine.iterations > 0 && !gs.is_empty();
        let (mut notes, mut warnings) = (Vec::new(), Vec::new());
        let mut record = |o: crate::encode::refine::RefineOutcome| {
            notes.extend(o.note());
            warnings.extend(o.warning());
        };
        let color_fit = match self.opts.color_fit {
            Some(f) if self.info.quantizers.is_some() && !gs.is_empty() => Some(f),
            _ if refining => Some(FitOptions::default()),
            _ => None,
        };
        if let Some(fit) = color_fit {
            // Refine (when asked) within the file's scale range, quantize the geometry as the
            // file will, and fit every channel (alpha included) to what is stored.
            if refining {
                // Edge-aligned shapes refine much further than the network's round ones
                // (v2: +0.4 dB after 40 steps on six Kodak pictures; v3: +0.3 dB on seven
                // validation pictures).
                crate::encode::analytic::orient_by_structure(pixels, &mut gs);
                // The network's Gaussians are smaller than the quadtree's and refine further
                // when enlarged (`REFINE_SIGMA_GROWTH`).
                for g in gs.iter_mut() {
                    g.scale = g.scale.map(|s| s * REFINE_SIGMA_GROWTH);
                }
                // The network's colours assume its quantizers' clamping: start the refinement
                // from the least-squares colours of its geometry instead.
                fit_colors(pixels, &mut gs, &fit);
                let mut ropts = self.opts.refine;
                if let Some((lo, hi)) = opts.scale_range {
                    ropts.scale_bounds = (lo.exp2(), hi.exp2());
                }
                record(refine(pixels, &mut gs, &ropts)?);
            }
            let draft = SplatImage::new(pixels.width, pixels.height, pixels.layout, gs.clone())?;
            let header = format::plan_header(&draft, opts)?;
            let q_steps = self.opts.refine.quantized_steps;
            if refining && q_steps > 0 {
                let grid = QuantGrid::of(&header);
                let ropts = &self.opts.refine;
                record(refine_quantized(pixels, &mut gs, ropts, &grid, q_steps)?);
            }
            for g in gs.iter_mut() {
                let color = g.color;
                *g = format::dequantize(&header, &format::quantize(&header, g));
                g.color = color;
            }
            fit_colors(pixels, &mut gs, &fit);
        } else if pixels.layout.has_alpha() {
            let draft = SplatImage::new(pixels.width, pixels.height, pixels.layout, gs.clone())?;
            let header = format::plan_header(&draft, opts)?;
            let mut stored: Vec<Gaussian> = gs
                .iter()
                .map(|g| format::dequantize(&header, &format::quantize(&header, g)))
                .collect();
            // Fit alpha to the stored geometry, keep the network's (unquantized) colours.
            fit_alpha(pixels, &mut stored, &self.opts.alpha_fit);
            let a = pixels.channels() - 1;
            for (g, s) in gs.iter_mut().zip(&stored) {
                *g = Gaussian {
                    color: g.color,
                    ..*s
                };
                g.color[a] = s.color[a];
            }
        }
        let image = SplatImage::new(pixels.width, pixels.height, pixels.layout, gs)?;
        let mut encoded = format::write(&image, opts)?;
        encoded.notes = notes;
        encoded.warnings = warnings;
        Ok(encoded)
    }
}

/// The order in which Gaussians are worth keeping, most valuable first: a Gaussian's area (up
/// to a cell's) times the squared distance of its colour from the mean colour of the
/// Gaussians in the 3 × 3 cells around it (`cell` pixels a side). One whose colour its
/// neighbours already give is the first to go: their normalized blend (format-spec.md §3.4)
/// fills its place, and the colour fit that follows adjusts them.
pub fn rank_by_value(pixels: &Pixels, gs: &[Gaussian], cell: u32) -> Vec<usize> {
    let c = cell.max(1) as f32;
    let (cw, chh) = (
        pixels.width.div_ceil(cell.max(1)) as usize,
        pixels.height.div_ceil(cell.max(1)) as usize,
    );
    let cell_of = |g: &Gaussian| {
        let i = ((g.x / c) as usize).min(cw - 1);
        let j = ((g.y / c) as usize).min(chh - 1);
        (i, j)
    };
    let mut sum = vec![([0f64; 4], 0u32); cw * chh];
    for g in gs {
        let (i, j) = cell_of(g);
        let s = &mut sum[j * cw + i];
        for (a, v) in s.0.iter_mut().zip(&g.color) {
            *a += *v as f64;
        }
        s.1 += 1;
    }
    let value: Vec<f64> = gs
        .par_iter()
        .map(|g| {
            let (i, j) = cell_of(g);
            let (mut acc, mut n) = ([0f64; 4], 0u32);
            for jj in j.saturating_sub(1)..(j + 2).min(chh) {
                for ii in i.saturating_sub(1)..(i + 2).min(cw) {
                    let s = &sum[jj * cw + ii];
                    for (a, v) in acc.iter_mut().zip(&s.0) {
                        *a += v;
                    }
                    n += s.1;
                }
            }
            // Without itself.
            let others = (n - 1).max(1) as f64;
            let contrast: f64 = (0..pixels.channels())
                .map(|k| {
                    let mean = (acc[k] - g.color[k] as f64) / others;
                    (g.color[k] as f64 - mean).powi(2)
                })
                .sum();
            let area = (g.scale[0] as f64 * g.scale[1] as f64).min((c * c) as f64);
            if n <= 1 {
                f64::INFINITY
            } else {
                area * (contrast + 1e-4)
            }
        })
        .collect();
    let mut order: Vec<usize> = (0..gs.len()).collect();
    order.sort_by(|&a, &b| value[b].total_cmp(&value[a]).then(a.cmp(&b)));
    order
}

/// The most valuable `share` (0 to 1) of `gs` by `ranked`, in their original order, with
/// dropped Gaussians turned back on where a cell would be left uncovered.
fn keep_share(
    pixels: &Pixels,
    gs: &[Gaussian],
    ranked: &[usize],
    share: f64,
    cell: u32,
) -> Vec<Gaussian> {
    let n = ((gs.len() as f64 * share).round() as usize).clamp(1.min(gs.len()), gs.len());
    let mut kept_idx: Vec<usize> = ranked[..n].to_vec();
    kept_idx.sort_unstable();
    let mut kept: Vec<Gaussian> = kept_idx.iter().map(|&i| gs[i]).collect();
    let cells_x = pixels.width.div_ceil(cell.max(1)) as usize;
    let mut per_cell = std::collections::HashMap::<usize, usize>::new();
    let mut spares = Vec::new();
    for &i in &ranked[n..] {
        let g = gs[i];
        let cx = ((g.x / cell as f32) as usize).min(cells_x - 1);
        let cy = (g.y / cell as f32) as usize;
        let c = cy * cells_x + cx;
        let rank = per_cell.entry(c).or_insert(0);
        if *rank < SPARES_PER_CELL {
            spares.push(Spare {
                cell: c,
                rank: *rank,
                gaussian: g,
            });
            *rank += 1;
        }
    }
    ensure_coverage(pixels.width, pixels.height, cell, &mut kept, &spares);
    kept
}

/// Position bits for refined Gaussians in cells of `cell` pixels: a step of at most a quarter
/// pixel (5 bits in 8-pixel cells, as the analytic encoder writes), at most 16 bits.
fn refined_position_bits(cell: u32) -> u8 {
    let steps = u64::from(cell.max(1)) * 4;
    (64 - (steps - 1).leading_zeros()).clamp(1, 16) as u8
}

/// The file layout and quantizers for Gaussians from a model described by `info` (see
/// [`NetworkEncoder::write_options`]).
pub(crate) fn write_options_for(info: &ModelInfo, layout: ChannelLayout) -> WriteOptions {
    let mut wo = WriteOptions {
        alpha_bits: 8,
        color_model: ColorModel::YCbCr,
        ..WriteOptions::default()
    };
    match &info.quantizers {
        Some(q) => {
            wo.cell_size = info.cell as u16;
            wo.position_bits = q.position_bits;
            wo.scale_bits = q.scale_bits;
            wo.scale_range = Some(q.scale_range);
            wo.rotation_bits = q.rotation_bits;
            wo.luma_bits = q.color_bits[0];
            wo.chroma_bits = q.color_bits[1];
            let mut ranges = [(0.0, 1.0); 4];
            if layout.is_color() {
                for (i, r) in ranges.iter_mut().take(3).enumerate() {
                    *r = (q.color_min[i], q.color_max[i]);
                }
            } else {
                ranges[0] = (q.color_min[0], q.color_max[0]);
            }
            if layout.has_alpha() {
                ranges[layout.channels() - 1] = (0.0, 1.0);
            }
            wo.channel_ranges = Some(ranges);
        }
        None => {
            wo.cell_size = info.cell.clamp(1, u16::MAX as u32) as u16;
            wo.position_bits = 6;
            wo.scale_bits = 8;
            wo.scale_range = info.scale_range;
            wo.rotation_bits = 8;
            wo.luma_bits = 10;
            wo.chroma_bits = 8;
            wo.channel_ranges = None;
        }
    }
    wo
}

/// The network input for a window of the padded picture: planar RGB, the picture's last row
/// and column repeated into the padding, gray replicated, alpha left out.
fn tile_input(p: &Pixels, window: [u32; 4]) -> Vec<f32> {
    let [x0, y0, x1, y1] = window;
    let (ww, wh) = ((x1 - x0) as usize, (y1 - y0) as usize);
    let nc = p.channels();
    let color = p.layout.is_color();
    let mut out = vec![0f32; 3 * ww * wh];
    let plane = ww * wh;
    for yy in 0..wh {
        let sy = (y0 as usize + yy).min(p.height as usize - 1);
        let row = &p.data[sy * p.width as usize * nc..(sy + 1) * p.width as usize * nc];
        for xx in 0..ww {
            let sx = (x0 as usize + xx).min(p.width as usize - 1);
            let px = &row[sx * nc..sx * nc + nc];
            let i = yy * ww + xx;
            if color {
                out[i] = px[0];
                out[plane + i] = px[1];
                out[2 * plane + i] = px[2];
            } else {
                out[i] = px[0];
                out[plane + i] = px[0];
                out[2 * plane + i] = px[0];
            }
        }
    }
    out
}

/// Turns the network output of one tile's window into Gaussians: only cells inside the tile's
/// core and the picture, present ones, centres clamped into the picture. The most likely
/// absent Gaussians of each cell go to `spares` (for [`ensure_coverage`]).
#[allow(clippy::too_many_arguments)]
pub(crate) fn decode_cells(
    p: &Pixels,
    data: &[f32],
    (hc, wc): (usize, usize),
    tile: &Tile,
    info: &ModelInfo,
    threshold: f32,
    out: &mut Vec<Gaussian>,
    spares: &mut Vec<Spare>,
) -> Result<()> {
    let c = info.cell;
    let k = info.per_cell as usize;
    let (w, h) = (p.width, p.height);
    let [cx0, cy0, cx1, cy1] = tile.core.map(|v| v / c);
    let (wx0, wy0) = (tile.window[0] / c, tile.window[1] / c);
    let all_x = w.div_ceil(c);
    let cells_x = cx1.min(all_x);
    let cells_y = cy1.min(h.div_ceil(c));
    let nc = p.channels();
    let plane = hc * wc;
    let at = |kk: usize, q: usize, i: usize| data[(kk * 9 + q) * plane + i];
    // The Gaussian of slot kk in cell (gx, gy) at output position i; None if non-finite.
    let gaussian = |kk: usize, i: usize, gx: u32, gy: u32| -> Option<Gaussian> {
        let v: [f32; 8] = std::array::from_fn(|q| at(kk, q, i));
        if v.iter().any(|x| !x.is_finite()) {
            return None;
        }
        let x = ((gx as f32 + 0.5) * c as f32 + v[0]).clamp(0.0, w as f32);
        let y = ((gy as f32 + 0.5) * c as f32 + v[1]).clamp(0.0, h as f32);
        let s = |l: f32| l.clamp(-MAX_LOG2_SCALE, MAX_LOG2_SCALE).exp2();
        let ch = |v: f32| v.clamp(-MAX_CHANNEL_VALUE, MAX_CHANNEL_VALUE);
        let mut color = [0f32; 4];
        if p.layout.is_color() {
            color[..3].copy_from_slice(&[ch(v[5]), ch(v[6]), ch(v[7])]);
        } else {
            color[0] = ch(0.299 * v[5] + 0.587 * v[6] + 0.114 * v[7]);
        }
        if p.layout.has_alpha() {
            // A first guess (the nearest pixel's alpha), refined by the fit.
            let px = (x as u32).min(w - 1) as usize;
            let py = (y as u32).min(h - 1) as usize;
            color[nc - 1] = p.data[(py * w as usize + px) * nc + nc - 1];
        }
        Some(Gaussian {
            x,
            y,
            scale: [s(v[2]), s(v[3])],
            rotation: v[4],
            color,
        })
    };
    type Row = (Vec<Gaussian>, Vec<Spare>);
    let row = |gy: u32| -> Result<Row> {
        let mut present = Vec::with_capacity((cells_x.saturating_sub(cx0)) as usize * k);
        let mut spare = Vec::new();
        for gx in cx0..cells_x {
            let i = (gy - wy0) as usize * wc + (gx - wx0) as usize;
            // The cell's most likely absent slots, best first (the lower slot among equals).
            let mut absent: [Option<(f32, usize)>; SPARES_PER_CELL] = [None; SPARES_PER_CELL];
            for kk in 0..k {
                let presence = at(kk, 8, i);
                // NaN presence drops the Gaussian (and makes it no spare).
                if presence.is_nan() {
                    continue;
                }
                if presence < threshold {
                    let at_rank = absent
                        .iter()
                        .position(|a| a.is_none_or(|(best, _)| presence > best));
                    if let Some(r) = at_rank {
                        absent.copy_within(r..SPARES_PER_CELL - 1, r + 1);
                        absent[r] = Some((presence, kk));
                    }
                    continue;
                }
                let g = gaussian(kk, i, gx, gy).ok_or_else(|| {
                    let v: [f32; 8] = std::array::from_fn(|q| at(kk, q, i));
                    Error::Model(format!(
                        "the network produced a non-finite value for Gaussian {kk} of cell \
                         ({gx}, {gy}): {v:?}"
                    ))
                })?;
                present.push(g);
            }
            let cell = gy as usize * all_x as usize + gx as usize;
            for (rank, &(_, kk)) in absent.iter().flatten().enumerate() {
                if let Some(g) = gaussian(kk, i, gx, gy) {
                    spare.push(Spare {
                        cell,
                        rank,
                        gaussian: g,
                    });
                }
            }
        }
        Ok((present, spare))
    };
    let rows: Vec<Row> = (cy0..cells_y.max(cy0))
        .into_par_iter()
        .map(row)
        .collect::<Result<_>>()?;
    out.reserve(rows.iter().map(|r| r.0.len()).sum());
    for (present, spare) in rows {
        out.extend(present);
        spares.extend(spare);
    }
    Ok(())
}

/// Fits each Gaussian's alpha (the last channel) by least squares to the picture's alpha.
fn fit_alpha(p: &Pixels, gs: &mut [Gaussian], opts: &FitOptions) {
    let nc = p.channels();
    let alpha: Vec<f32> = p.data.chunks_exact(nc).map(|px| px[nc - 1]).collect();
    let (lo, hi) = alpha
        .iter()
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &v| {
            (a.min(v), b.max(v))
        });
    if lo == hi {
        // Uniform alpha: exact without a fit.
        for g in gs.iter_mut() {
            g.color[nc - 1] = lo;
        }
        return;
    }
    // Matrix-free: the normal matrix of a dense field (the upscale model's 4 Gaussians a
    // pixel) holds ~100 entries a Gaussian (see `alpha`).
    let mut values: Vec<f32> = gs.iter().map(|g| g.color[nc - 1]).collect();
    crate::encode::optim::alpha::fit_plane(
        p.width,
        p.height,
        &alpha,
        gs,
        &mut values,
        opts.iterations,
        opts.clamp,
    );
    for (g, v) in gs.iter_mut().zip(values) {
        g.color[nc - 1] = v.clamp(0.0, 1.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn refined_positions_keep_a_quarter_pixel_step() {
        for (cell, bits) in [(1, 2), (4, 4), (8, 5), (12, 6), (16, 6), (32, 7)] {
            let b = refined_position_bits(cell);
            assert_eq!(b, bits, "cell {cell}");
            assert!(cell as f64 / f64::from(1u32 << b) <= 0.25, "cell {cell}");
        }
        assert_eq!(refined_position_bits(1 << 20), 16);
    }

    const COMPACT: &[(&str, &str)] = &[
        ("gsimg.kind", "compact"),
        ("gsimg.cell", "8"),
        ("gsimg.per_cell", "4"),
        ("gsimg.multiple", "8"),
        ("gsimg.receptive_field", "50"),
        ("gsimg.version", "1"),
        ("gsimg.pos_bits", "5"),
        ("gsimg.scale_bits", "5"),
        ("gsimg.scale_min", "-2.0"),
        ("gsimg.scale_max", "2.25"),
        ("gsimg.rot_bits", "5"),
        ("gsimg.color_bits", "8,6,6"),
        ("gsimg.color_min", "0.0,-0.5,-0.5"),
        ("gsimg.color_max", "1.0,0.5,0.5"),
    ];

    #[test]
    fn metadata_parses_and_rejects() {
        let info = ModelInfo::from_metadata(&meta(COMPACT)).unwrap();
        assert_eq!(info.kind, ModelKind::Compact);
        assert_eq!(info.tile_margin(), 56);
        let q = info.quantizers.unwrap();
        assert_eq!(q.color_bits, [8, 6, 6]);
        assert_eq!(q.scale_range, (-2.0, 2.25));
        assert_eq!(info.presence_threshold, 0.5);
        let mut m = meta(COMPACT);
        m.insert("gsimg.presence_threshold".into(), "0.45".into());
        assert_eq!(
            ModelInfo::from_metadata(&m).unwrap().presence_threshold,
            0.45
        );
        for (key, value, needle) in [
            ("gsimg.presence_threshold", "1", "below 1"),
            ("gsimg.presence_threshold", "nan", "below 1"),
            (
                "gsimg.presence_threshold",
                "half",
                "gsimg.presence_threshold",
            ),
            ("gsimg.cell", "zero", "gsimg.cell"),
            ("gsimg.kind", "superres", "upscale or compact"),
            ("gsimg.multiple", "12", "not a multiple"),
            ("gsimg.color_bits", "8,6", "three"),
            ("gsimg.color_bits", "8,6,5", "same number"),
        ] {
            let mut m = meta(COMPACT);
            m.insert(key.into(), value.into());
            let e = ModelInfo::from_metadata(&m).unwrap_err().to_string();
            assert!(e.contains(needle), "{key}={value}: {e}");
        }
        let up = meta(&[
            ("gsimg.kind", "upscale"),
            ("gsimg.cell", "1"),
            ("gsimg.per_cell", "4"),
            ("gsimg.multiple", "1"),
            ("gsimg.receptive_field", "35"),
            ("gsimg.version", "1"),
            ("gsimg.log2_sigma_range", "-6.0,-1.0"),
        ]);
        let info = ModelInfo::from_metadata(&up).unwrap();
        assert_eq!(
            (info.scale_range, info.tile_margin()),
            (Some((-6.0, -1.0)), 35)
        );
        let mut m = meta(COMPACT);
        m.remove("gsimg.rot_bits");
        let e = ModelInfo::from_metadata(&m).unwrap_err().to_string();
        assert!(e.contains("gsimg.rot_bits") && e.contains("missing"), "{e}");
    }

    #[test]
    fn tiles_cover_once_and_align() {
        for (wp, hp, m, margin, max, side) in [
            (768, 512, 8, 56, 1 << 21, None),
            (6000, 4000, 8, 56, 1 << 20, None),
            (1000, 333, 1, 35, 1 << 16, None),
            (64, 40, 8, 8, 1 << 20, Some(16)),
        ] {
            let tiles = plan_tiles(wp, hp, m, margin, max, side);
            let mut covered = vec![0u8; (wp * hp) as usize];
            for t in &tiles {
                let [x0, y0, x1, y1] = t.core;
                assert!(x0 % m == 0 && y0 % m == 0 && t.window[0] % m == 0 && t.window[1] % m == 0);
                assert!(t.window[2] % m == 0 && t.window[3] % m == 0);
                assert!(
                    (t.window[2] - t.window[0]) as u64 * (t.window[3] - t.window[1]) as u64
                        <= max.max(((wp * hp) as u64).min(max))
                        || side.is_some()
                );
                for y in y0..y1 {
                    for x in x0..x1 {
                        covered[(y * wp + x) as usize] += 1;
                    }
                }
                assert!(
                    x0 - t.window[0] >= margin.min(x0) && t.window[2] - x1 >= margin.min(wp - x1)
                );
            }
            assert!(covered.iter().all(|&c| c == 1), "{wp}x{hp}");
        }
        assert_eq!(plan_tiles(768, 512, 8, 56, 1 << 21, None).len(), 1);
    }
}
