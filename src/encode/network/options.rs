//! The encoder's settings.

use super::*;
use std::sync::atomic::AtomicU64;

/// A sink for one-line status messages (fetching ONNX Runtime, the provider that ran).
pub type MessageSink = Arc<dyn Fn(&str) + Send + Sync>;

pub use crate::core::progress::ProgressSink;

/// Before a compact model's Gaussians are refined per picture, both their σ are multiplied by
/// this (after orienting them by the picture's structure tensor): the network's Gaussians are
/// smaller than the ones refinement converges to, and 1.3 was the best growth on validation
/// pictures of the training set (about +0.4 dB over none; larger factors lose again).
pub const REFINE_SIGMA_GROWTH: f32 = 1.3;

/// Settings of the network encoder: a plain struct whose fields are set directly, starting
/// from [`Default`], and checked by [`NetworkOptions::build`], which opens the model.
///
/// ```no_run
/// # fn main() -> gsimg::Result<()> {
/// let encoder = gsimg::NetworkOptions {
///     model: Some("models/compact.onnx".into()),
///     quality: 70,
///     ..Default::default()
/// }
/// .build()?;
/// # let _ = encoder;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct NetworkOptions {
    /// The model file. Without one, [`NetworkOptions::build`] fails with
    /// [`Error::ModelNotFound`] unless [`NetworkOptions::installed`] asks it to look for the
    /// installed model of [`NetworkOptions::kind`].
    pub model: Option<PathBuf>,
    /// Which installed model to look for when no file is given.
    pub kind: ModelKind,
    /// Look for what is not given where gsimg installs it: the model of
    /// [`NetworkOptions::kind`] (`model_candidates`) and ONNX Runtime as the command line does
    /// ([`LibrarySearch::from_env`], which may fetch it from PyPI with pip). Off by default: the
    /// library then uses only the paths it is given.
    pub installed: bool,
    /// Where the network runs.
    pub device: Device,
    /// An explicit ONNX Runtime library, tried before anything else.
    pub ort_library: Option<PathBuf>,
    /// Where else ONNX Runtime is looked for (`None`: [`LibrarySearch::from_env`] with
    /// [`NetworkOptions::installed`], else [`LibrarySearch::default`], the system loader only).
    pub library_search: Option<LibrarySearch>,
    /// Gaussians whose presence is below this are dropped; `None`: the model's operating
    /// threshold ([`ModelInfo::presence_threshold`]), lowered by `quality` above 50 without
    /// refinement (see [`NetworkOptions::quality`]). An explicit threshold is 0 to 1.
    pub presence_threshold: Option<f32>,
    /// Quality 1 to 100 of a compact model (default 50). The model has one trained rate (its
    /// operating threshold, [`ModelInfo::presence_threshold`], 0.5 unless the model says
    /// otherwise), quality 50. Without refinement, below 50 the encoder keeps a share of the
    /// Gaussians (from 5 % at quality 1 geometrically up to all at 50, the least valuable
    /// dropped first) and writes them with up to 3 bits less precision; above 50 it lowers the
    /// presence threshold to `1 − quality/100` when that is lower, but never below
    /// `QUALITY_THRESHOLD_FLOOR`, keeping Gaussians the model rated less likely; above 75 it
    /// also adds Gaussians where the error is, up to 3 times the model's count at 100, with one
    /// more bit of chroma from 80 ([`NetworkEncoder::write_options`]). With refinement the
    /// quality sets the Gaussian count the refinement prunes or densifies to and the precision.
    pub quality: u8,
    /// Largest network input (padded pixels) run in one piece; larger pictures go in tiles
    /// (unless [`NetworkOptions::memory_limit`] sets the windows).
    pub max_tile_pixels: u64,
    /// Compact models: tile windows as large as this peak memory (bytes) allows beside the
    /// picture (`encode::memory::network_window`: 416 bytes per window pixel), in place of
    /// [`NetworkOptions::max_tile_pixels`]. Every window repeats its margins (the model's
    /// receptive field) around its core, so fewer, larger windows encode large pictures
    /// several times faster (BENCHMARKS.md, "Encoder memory"). `None`, the default: windows of
    /// `max_tile_pixels`. `gsimg encode` sets `Limits::max_memory_bytes`.
    pub memory_limit: Option<u64>,
    /// Force tiles with cores of this side (pixels, rounded up to the model's multiple).
    pub tile_size: Option<u32>,
    /// ONNX Runtime's intra-op threads on the CPU (0: its default, all cores).
    pub threads: usize,
    /// Status messages (fetching ONNX Runtime, a CUDA fallback); `None`, the default: silent.
    /// The library prints nothing itself.
    pub messages: Option<MessageSink>,
    /// Progress (`None`: none): [`NetworkEncoder::gaussians`] reports units of the network's
    /// work (its tiles weighted by their windows' pixels, also within a tile's run); an encode
    /// reports units of its whole work (the network's, then the colour fits, refinement steps
    /// and writing; `crate::core::progress`).
    pub progress: Option<ProgressSink>,
    /// The least-squares fit of alpha.
    pub alpha_fit: FitOptions,
    /// Compact models: colours refitted by least squares to the picture, on the geometry as the
    /// file stores it, before writing (`None`: the network's colours are written as they are).
    /// The analytic encoder ends with the same fit. Without refinement the default fit is
    /// damped toward the colours it starts from ([`FitOptions::damping`]); with refinement the
    /// fits are plain least squares (their damping is not used).
    pub color_fit: Option<FitOptions>,
    /// Per-image refinement of the network's Gaussians before writing (compact files; 0
    /// iterations, the default: none): `iterations` gradient steps on the picture, then the
    /// geometry quantized and the colours fitted to it by least squares; slower, better files.
    /// [`RefineOptions::for_effort`] gives the presets; setting only `refine.iterations` keeps
    /// the default's four rounds, each after moving a tenth of the Gaussians.
    pub refine: RefineOptions,
}

impl std::fmt::Debug for NetworkOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NetworkOptions")
            .field("model", &self.model)
            .field("kind", &self.kind)
            .field("installed", &self.installed)
            .field("device", &self.device)
            .field("ort_library", &self.ort_library)
            .field("presence_threshold", &self.presence_threshold)
            .field("quality", &self.quality)
            .field("max_tile_pixels", &self.max_tile_pixels)
            .field("memory_limit", &self.memory_limit)
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
            installed: false,
            device: Device::Auto,
            ort_library: None,
            library_search: None,
            presence_threshold: None,
            quality: 50,
            max_tile_pixels: crate::encode::memory::NETWORK_MIN_WINDOW,
            memory_limit: None,
            tile_size: None,
            threads: 0,
            messages: None,
            progress: None,
            alpha_fit: FitOptions {
                iterations: 15,
                clamp: (0.0, 1.0),
                ..FitOptions::default()
            },
            // 15 conjugate-gradient steps, one sweep over the chunks: the fit beats the
            // network's own colours by about 0.4 dB; a second sweep adds nothing. Damped
            // (0.1): the undamped least-squares colours of overlapping Gaussians grow extreme
            // and are clipped by the file's ranges (run to 100 steps, one held-out picture lost
            // 3.9 dB), and the added small Gaussians above quality 50 made that worse (2 % more
            // Gaussians cost 0.55 dB there); damped, every added share gains, 14 held-out
            // pictures +0.05 dB at 1.5 times the count, the same PSNR at 0.8 % fewer bytes at 1.
            color_fit: Some(FitOptions {
                iterations: 15,
                sweeps: 1,
                damping: 0.1,
                ..FitOptions::default()
            }),
            // When refining (`refine.iterations` above 0): four rounds, each after moving a tenth of the
            // Gaussians to where the error is (more, smaller moves beat fewer, larger ones).
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
    unstable_pub! {
    /// The presence threshold these options give a model whose operating threshold is
    /// `info.presence_threshold`: the explicit one, else the model's, lowered to
    /// `1 − quality/100` (at least `QUALITY_THRESHOLD_FLOOR`) when the quality is above 50,
    /// that is lower, and the Gaussians are not refined (a refined quality adds Gaussians
    /// where the error is instead: slots the model rated absent cost bits for little).
    fn presence_threshold_for(&self, info: &ModelInfo) -> f32 {
        match self.presence_threshold {
            Some(t) => t,
            None if self.refine.iterations > 0 => info.presence_threshold,
            None => rate::Quality::new(self.quality)
                .unwrap_or_default()
                .network_presence_threshold(info.presence_threshold),
        }
    }
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
        rate::Quality::new(self.quality)?;
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
            None if self.installed => locate_model(self.kind)?,
            None => {
                return Err(Error::ModelNotFound {
                    kind: self.kind.name(),
                    tried: Vec::new(),
                });
            }
        };
        verify_model(&path)?;
        let search = self
            .library_search
            .clone()
            .unwrap_or_else(|| {
                if self.installed {
                    LibrarySearch::from_env()
                } else {
                    LibrarySearch::default()
                }
            })
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
            seconds_per_pixel: AtomicU64::new(0),
            gpu: Default::default(),
        })
    }
}
