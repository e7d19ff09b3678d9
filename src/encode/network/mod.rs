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
//! squares to the picture's alpha under the rendering rule ([`fit`](crate::encode::optim::fit)), on the
//! geometry the file stores.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rayon::prelude::*;

mod model;
mod options;
mod post;
mod tiling;

pub use crate::encode::runtime::{Device, Provider};
pub use model::*;
pub use options::*;
pub use post::*;
pub use tiling::*;

use crate::core::frame::Frame;
use crate::core::progress::{Meter, Part};
use crate::core::splat::{ChannelLayout, Gaussian, SplatImage};
use crate::encode::optim::coverage::{SPARES_PER_CELL, Spare, ensure_coverage};
use crate::encode::optim::fit::{FitOptions, fit_colors};
use crate::encode::optim::realloc::densify;
use crate::encode::optim::refine::{
    GpuWorkspace, QuantGrid, ROUND_START_UNITS, RefineDevice, RefineOptions, fit_colors_in,
    refine_quantized_in, refine_to_in, refine_units,
};
use crate::encode::optim::symmetry::Symmetry;
use crate::encode::rate::{self, RateResult, RateTarget};
use crate::encode::runtime::onnx::{ModelDecl, OnnxModel, TensorDecl};
use crate::encode::runtime::ort_lib::{FoundLibrary, LibrarySearch};
use crate::format::consts::{MAX_CHANNEL_VALUE, MAX_LOG2_SCALE};
use crate::format::{self, ColorModel, Encoded, WriteOptions};
use crate::{Error, Result};

/// A loaded encoder network, ready to encode pictures.
pub struct NetworkEncoder {
    opts: NetworkOptions,
    model: OnnxModel,
    info: ModelInfo,
    path: PathBuf,
    /// Seconds per input pixel of the last network run (`f64` bits; 0: none yet): how long a
    /// run is expected to take, for progress within it.
    seconds_per_pixel: AtomicU64,
    /// The GPU refinement's stream and buffers, kept from one refinement (and picture) to the
    /// next.
    gpu: GpuWorkspace,
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

impl NetworkEncoder {
    /// The model's metadata.
    pub fn info(&self) -> &ModelInfo {
        &self.info
    }

    /// Replaces the refinement setting the encoder was built with (e.g. once it is known
    /// whether a GPU can run it, which can be found out while the model loads).
    pub fn set_refine_options(&mut self, refine: RefineOptions) {
        self.opts.refine = refine;
    }

    /// The model file.
    pub fn model_path(&self) -> &Path {
        &self.path
    }

    /// The execution provider the network runs on.
    pub fn provider(&self) -> Provider {
        self.model.provider
    }

    /// The ONNX Runtime library in use.
    pub fn library(&self) -> &FoundLibrary {
        &self.model.library
    }

    unstable_pub! {
        /// The tiles a `width × height` picture is run in.
        fn tiles_for(&self, width: u32, height: u32) -> Vec<Tile> {
            let m = self.info.multiple;
            plan_tiles(
                width.div_ceil(m) * m,
                height.div_ceil(m) * m,
                m,
                self.info.tile_margin(),
                self.max_window(width, height),
                self.opts.tile_size,
            )
        }
    }

    unstable_pub! {
    /// The largest tile window for a `width × height` picture: what
    /// [`NetworkOptions::memory_limit`] allows a compact model, else
    /// [`NetworkOptions::max_tile_pixels`].
    fn max_window(&self, width: u32, height: u32) -> u64 {
        match self.opts.memory_limit {
            Some(bytes) if self.info.kind == ModelKind::Compact => {
                crate::encode::memory::network_window(width, height, bytes)
            }
            _ => self.opts.max_tile_pixels,
        }
    }
    }

    /// Runs the network over `pixels` and returns its Gaussians (not quantized), alpha fitted.
    ///
    /// Progress ([`NetworkOptions::progress`]) counts units of the network's work (each tile
    /// in proportion to its window's pixels), also while one tile's network run goes on: the
    /// share of the run expected done by then (`NetworkEncoder::watched_run`).
    pub fn gaussians(&self, pixels: &Frame<f32>) -> Result<NetworkOutput> {
        self.gaussians_with(pixels, None)
    }

    unstable_pub! {
        /// The Gaussians of `pixels` as the network sees them under `symmetry` (as the upscaler's
        /// ensemble runs it), stopped when `cancel` is set: between tiles, and within a network run
        /// through ONNX Runtime's terminate flag (between the graph's nodes). Returns
        /// [`Error::Cancelled`] then.
        fn gaussians_cancellable(
            &self,
            pixels: &Frame<f32>,
            symmetry: Symmetry,
            cancel: &AtomicBool,
        ) -> Result<NetworkOutput> {
            if symmetry == Symmetry::IDENTITY {
                return self.gaussians_with(pixels, Some(cancel));
            }
            pixels.validate()?;
            let mut out = self.gaussians_with(&symmetry.apply_pixels(pixels), Some(cancel))?;
            let mut gs = out.image.into_gaussians();
            symmetry.unapply_gaussians(&mut gs, pixels.width, pixels.height);
            out.image = SplatImage::new(pixels.width, pixels.height, pixels.layout, gs)?;
            Ok(out)
        }
    }

    fn gaussians_with(
        &self,
        pixels: &Frame<f32>,
        cancel: Option<&AtomicBool>,
    ) -> Result<NetworkOutput> {
        // In thousandths of the tiles' units, so that progress within a run shows finely.
        let units = self.field_units(pixels.width, pixels.height) * 1000;
        let meter = Meter::new(self.opts.progress.as_ref(), units);
        let mut out = self.field(pixels, &meter.part(units), cancel)?;
        if pixels.layout.has_alpha() {
            let mut gs = out.image.into_gaussians();
            fit_alpha(pixels, &mut gs, &self.opts.alpha_fit);
            out.image = SplatImage::new(pixels.width, pixels.height, pixels.layout, gs)?;
        }
        if cancel.is_some_and(|c| c.load(Ordering::Relaxed)) {
            return Err(Error::Cancelled);
        }
        Ok(out)
    }

    unstable_pub! {
        /// The Gaussians of `pixels` as the network sees them under `symmetry`: it runs on the
        /// transformed picture and the Gaussians are mapped back to `pixels`' frame
        /// (`Symmetry::unapply_gaussians`, exact). Averaging the renders of all 8 is the upscale
        /// model's geometric self-ensemble
        /// ([`UpscaleOptions::ensemble`](crate::view::UpscaleOptions::ensemble)).
        fn gaussians_under(
            &self,
            pixels: &Frame<f32>,
            symmetry: Symmetry,
        ) -> Result<NetworkOutput> {
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
    }

    /// Progress units of running the network over a `width × height` picture: about one per
    /// 32,768 pixels of each tile's window (a refinement step on a picture takes about the
    /// time of the network on 32 times its pixels).
    fn field_units(&self, width: u32, height: u32) -> usize {
        self.tiles_for(width, height)
            .iter()
            .map(Self::tile_units)
            .sum()
    }

    fn tile_units(t: &Tile) -> usize {
        let [x0, y0, x1, y1] = t.window;
        (((x1 - x0) as usize * (y1 - y0) as usize) >> 15).max(1)
    }

    /// Runs the network on a tile's `input` (its window of `pixels`) and hands the output to
    /// `f`. With a progress sink or a cancel flag a thread watches the run: it reports to
    /// `part` the share of the run expected done (the time so far against the time per pixel
    /// of the last run, at most 95 %; before the first run, of a run on a corner of the window
    /// of a sixty-fourth of its pixels) and stops the run when `cancel` is set.
    fn watched_run(
        &self,
        pixels: &Frame<f32>,
        tile: &Tile,
        input: &[f32],
        part: &Part,
        cancel: Option<&AtomicBool>,
        f: crate::encode::runtime::onnx::OutputSink<'_>,
    ) -> Result<()> {
        let [x0, y0, x1, y1] = tile.window;
        let (w, h) = ((x1 - x0) as usize, (y1 - y0) as usize);
        let start = Instant::now();
        if self.opts.progress.is_none() && cancel.is_none() {
            self.model.run(input, h, w, f, None)?;
        } else {
            let expected = match self.seconds_per_pixel() {
                Some(s) => Some(s),
                None => self.probe(pixels, tile.window, cancel)?,
            }
            .map(|s| s * (w * h) as f64);
            let watch = |elapsed: Duration| {
                if let Some(t) = expected.filter(|t| *t > 0.0) {
                    let share = (elapsed.as_secs_f64() / t).min(RUN_SHARE_CAP);
                    part.report((share * 1000.0) as usize, 1000);
                }
                cancel.is_some_and(|c| c.load(Ordering::Relaxed))
            };
            self.model.run(input, h, w, f, Some(&watch))?;
        }
        let spp = start.elapsed().as_secs_f64() / (w * h).max(1) as f64;
        self.seconds_per_pixel
            .store(spp.to_bits(), Ordering::Relaxed);
        Ok(())
    }

    /// Seconds per input pixel of the last network run, if there was one.
    fn seconds_per_pixel(&self) -> Option<f64> {
        let s = f64::from_bits(self.seconds_per_pixel.load(Ordering::Relaxed));
        (s > 0.0).then_some(s)
    }

    /// Seconds per pixel of the network on the top left corner of `window`, a sixty-fourth of
    /// its pixels (at least 64 × 64; `None` for a window under 16 times that, whose run is
    /// short): how long the first run is expected to take. The output is not used.
    fn probe(
        &self,
        pixels: &Frame<f32>,
        window: [u32; 4],
        cancel: Option<&AtomicBool>,
    ) -> Result<Option<f64>> {
        let [x0, y0, x1, y1] = window;
        let px = (x1 - x0) as u64 * (y1 - y0) as u64;
        let m = self.info.multiple.max(1);
        let side = ((((px / 64) as f64).sqrt() as u32).max(64)).div_ceil(m) * m;
        if px < 16 * side as u64 * side as u64 {
            return Ok(None);
        }
        let (w, h) = (side.min(x1 - x0), side.min(y1 - y0));
        let input = tile_input(pixels, [x0, y0, x0 + w, y0 + h]);
        let watch = |_: Duration| cancel.is_some_and(|c| c.load(Ordering::Relaxed));
        let start = Instant::now();
        self.model.run(
            &input,
            h as usize,
            w as usize,
            &mut |_, _| Ok(()),
            Some(&watch),
        )?;
        Ok(Some(
            start.elapsed().as_secs_f64() / (w as u64 * h as u64) as f64,
        ))
    }

    /// Progress units of [`NetworkEncoder::finish`] (colour fits, refinement, writing).
    fn finish_units(&self) -> usize {
        let fits = if self.opts.refine.iterations > 0 {
            2 * ROUND_START_UNITS
                + refine_units(&self.opts.refine)
                + self.opts.refine.quantized_steps
        } else {
            ROUND_START_UNITS
        };
        fits + FINISH_WRITE_UNITS
    }

    /// The network's Gaussians, alpha not yet fitted (the alpha channel holds the nearest
    /// pixel's alpha); the tiles are reported to `progress` (each in proportion to its
    /// window's pixels, and within a run as [`NetworkEncoder::watched_run`] estimates), and
    /// `cancel` stops the work.
    fn field(
        &self,
        pixels: &Frame<f32>,
        progress: &Part,
        cancel: Option<&AtomicBool>,
    ) -> Result<NetworkOutput> {
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
        let units: usize = tiles.iter().map(Self::tile_units).sum();
        let mut done = 0;
        for tile in &tiles {
            if cancel.is_some_and(|c| c.load(Ordering::Relaxed)) {
                return Err(Error::Cancelled);
            }
            let [wx0, wy0, wx1, wy1] = tile.window;
            let (ww, wh) = ((wx1 - wx0) as usize, (wy1 - wy0) as usize);
            let input = tile_input(pixels, tile.window);
            let (hc, wc) = (wh / c as usize, ww / c as usize);
            let tile_part = progress.within(done, Self::tile_units(tile), units);
            let run_start = Instant::now();
            self.watched_run(
                pixels,
                tile,
                &input,
                &tile_part,
                cancel,
                &mut |shape, data| {
                    let want = [1, k as i64, 9, hc as i64, wc as i64];
                    if shape != want || data.len() != k * 9 * hc * wc {
                        return Err(Error::Model(format!(
                        "model {}: output `gaussians` has shape {shape:?} for a {ww}x{wh} input; \
                         the contract (gsimg.cell = {c}, gsimg.per_cell = {k}) needs {want:?}",
                        self.path.display()
                    ).into()));
                    }
                    network_seconds += run_start.elapsed().as_secs_f64();
                    // A sound model never produces NaN or infinity; damaged weights do (and would
                    // otherwise drop every Gaussian, or draw garbage).
                    let bad = data.iter().filter(|v| !v.is_finite()).count();
                    if bad > 0 {
                        return Err(Error::Model(
                            format!(
                                "model {}: the network produced {bad} non-finite values (NaN or \
                         infinity) of {}; the model file is probably damaged",
                                self.path.display(),
                                data.len()
                            )
                            .into(),
                        ));
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
                },
            )?;
            done += Self::tile_units(tile);
            progress.report(done, units);
        }

        // No pixel left to no Gaussian (it would render black): see `coverage`.
        ensure_coverage(w, h, c, &mut gaussians, &spares);
        if gaussians.is_empty() {
            return Err(Error::Model(
                format!(
                    "model {}: the network produced no Gaussians for a {w}x{h} picture",
                    self.path.display()
                )
                .into(),
            ));
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
    /// the data), which costs well under 0.05 dB on an upscale. A compact model
    /// whose Gaussians are refined per picture ([`NetworkOptions::refine`]) writes with the
    /// analytic encoder's quantizers instead ([`WriteOptions::default`]: ranges from the data,
    /// 6-bit scales and rotations): refined Gaussians are off the grid the model was trained
    /// on, and the finer steps pay for their bits. Positions then keep the analytic encoder's
    /// step of a quarter pixel or finer whatever the model's cell size (6 bits in a 16-pixel
    /// cell), and the quality adjusts the bits (`rate::Quality::refined_precision`). Without
    /// refinement a compact model's bits follow the quality below 50, up to 3 fewer per
    /// attribute at 1 (`rate::Quality::network_precision`), are the model's own from 50, and
    /// have one more bit of chroma from 80.
    pub fn write_options(&self, layout: ChannelLayout) -> WriteOptions {
        let quality = rate::Quality::new(self.opts.quality).unwrap_or_default();
        let (mut wo, precision) = if self.refining() && self.info.quantizers.is_some() {
            let wo = WriteOptions {
                cell_size: self.info.cell as u16,
                position_bits: refined_position_bits(self.info.cell),
                ..WriteOptions::default()
            };
            (wo, quality.refined_precision())
        } else {
            (
                write_options_for(&self.info, layout),
                quality.network_precision(),
            )
        };
        if self.info.kind == ModelKind::Compact {
            shift_bits(&mut wo, precision.map(i16::from));
        }
        wo
    }

    /// Encodes `pixels` into a `.gsi` file with [`NetworkEncoder::write_options`].
    pub fn encode(&self, pixels: &Frame<f32>) -> Result<Encoded> {
        self.encode_with(pixels, &self.write_options(pixels.layout))
    }

    /// Encodes `pixels` into a `.gsi` file with the given options (e.g. with metadata added),
    /// with the Gaussian count the quality asks for ([`NetworkOptions::quality`]).
    /// Alpha is fitted on the geometry as the file stores it.
    pub fn encode_with(&self, pixels: &Frame<f32>, opts: &WriteOptions) -> Result<Encoded> {
        self.encode_at(pixels, opts, self.count_factor())
    }

    /// The Gaussian count the quality asks for, as a multiple of the network's own count (at
    /// its presence threshold): when refining, the budget the refinement prunes or densifies
    /// to (`rate::Quality::refined_count_factor`); without refinement the share kept below 1,
    /// the count densified to above 1 (`rate::Quality::network_count_factor`). An upscale
    /// model keeps all.
    pub(crate) fn count_factor(&self) -> f64 {
        let q = rate::Quality::new(self.opts.quality).unwrap_or_default();
        match self.info.kind {
            ModelKind::Upscale => 1.0,
            ModelKind::Compact if self.refining() => q.refined_count_factor(),
            ModelKind::Compact => q.network_count_factor(),
        }
    }

    fn refining(&self) -> bool {
        self.opts.refine.iterations > 0
    }

    unstable_pub! {
    /// Encodes `pixels` with `factor` times the network's Gaussian count (see
    /// `NetworkEncoder::count_factor`; the knob of [`NetworkEncoder::encode_to_rate`]). When
    /// refining, the refinement's rounds bring the count there (pruning what pays least, or
    /// densifying where the error is); without refinement a share below 1 keeps the most
    /// valuable Gaussians (`rank_by_value`; the dropped ones serve as spares where a cell would
    /// be left uncovered), and a factor above 1 adds Gaussians at the largest errors of the
    /// render, small and round, in two rounds with their colours fitted (`realloc::densify`;
    /// only with the colour fit, [`NetworkOptions::color_fit`]: without it a factor above 1 is
    /// taken as 1).
    fn encode_at(
        &self,
        pixels: &Frame<f32>,
        opts: &WriteOptions,
        factor: f64,
    ) -> Result<Encoded> {
        // Progress: the network's tiles, then the fits, refinement and writing.
        let (field, finish) = (
            self.field_units(pixels.width, pixels.height),
            self.finish_units(),
        );
        let meter = Meter::new(self.opts.progress.as_ref(), field + finish);
        let mut stages = Stages::default();
        let clock = Instant::now();
        let gs = self
            .field(pixels, &meter.part(field), None)?
            .image
            .into_gaussians();
        stages.add("network", clock);
        let finishing = meter.part(finish);
        let ranked = (factor < 1.0 && !self.refining() && self.info.kind == ModelKind::Compact)
            .then(|| {
                let clock = Instant::now();
                let r = rank_by_value(pixels, &gs, self.info.cell);
                stages.add("ranking", clock);
                r
            });
        self.finish_at(
            pixels,
            &gs,
            ranked.as_deref(),
            opts,
            factor,
            &finishing,
            &mut stages,
        )
    }
    }

    /// Encodes `pixels` into a file of the size `target` asks for, by searching the Gaussian
    /// count (`NetworkEncoder::encode_at`). The precision is that of `opts`, adjusted to the
    /// quality whose count the target needs (fewer bits for small files, as the quality
    /// mapping does). The network runs once; each round of the search fits (and refines) and
    /// writes again.
    pub fn encode_to_rate(
        &self,
        pixels: &Frame<f32>,
        opts: &WriteOptions,
        target: RateTarget,
    ) -> Result<RateResult> {
        target.validate()?;
        // Progress: the network's tiles, then rounds of finishing; their number is not known
        // in advance, so each takes half of what is left, and the end reports all.
        let field = self.field_units(pixels.width, pixels.height);
        let finish = 4 * self.finish_units();
        let meter = Meter::new(self.opts.progress.as_ref(), field + finish);
        let mut stages = Stages::default();
        let clock = Instant::now();
        let gs = self
            .field(pixels, &meter.part(field), None)?
            .image
            .into_gaussians();
        stages.add("network", clock);
        let n = gs.len().max(1) as f64;
        let px = pixels.width as f64 * pixels.height as f64;
        let compact = self.info.kind == ModelKind::Compact;
        let ranked = (compact && !self.refining()).then(|| {
            let clock = Instant::now();
            let r = rank_by_value(pixels, &gs, self.info.cell);
            stages.add("ranking", clock);
            r
        });
        let left = std::cell::Cell::new(finish);
        let round = || {
            let part = meter.part(left.get() / 2);
            left.set(left.get() - left.get() / 2);
            part
        };
        if !compact {
            let result = rate::search(target, px, (1.0 / n, 1.0), 1.0, |f| {
                let part = round();
                self.finish_at(pixels, &gs, ranked.as_deref(), opts, f, &part, &mut stages)
            });
            meter.finish();
            return result;
        }
        // The count the target needs, from the size of the network's Gaussians written as they
        // are; the quality with that count gives the precision (coarser values for small
        // files), relative to the precision `opts` has at this encoder's quality.
        let clock = Instant::now();
        let image = SplatImage::new(pixels.width, pixels.height, pixels.layout, gs.clone())?;
        let plain = format::write(&image, opts)?.bytes.len().max(1) as f64;
        stages.add("writing", clock);
        let guess = (target.bytes(px) / plain).clamp(1.0 / n, rate::MAX_COUNT_FACTOR);
        let at = |q: rate::Quality| {
            if self.refining() {
                (q.refined_count_factor(), q.refined_precision())
            } else {
                (q.network_count_factor(), q.network_precision())
            }
        };
        let own = at(rate::Quality::new(self.opts.quality).unwrap_or_default()).1;
        let wanted = (1..=100u8)
            .filter_map(|q| rate::Quality::new(q).ok())
            .find(|&q| at(q).0 >= guess)
            .map_or(own, |q| at(q).1);
        let mut wo = opts.clone();
        shift_bits(
            &mut wo,
            std::array::from_fn(|i| wanted[i] as i16 - own[i] as i16),
        );
        let hi = if self.refining() {
            rate::MAX_COUNT_FACTOR
        } else {
            rate::MAX_NETWORK_FACTOR
        };
        let result = rate::search(target, px, (1.0 / n, hi), guess.min(hi), |f| {
            let part = round();
            self.finish_at(pixels, &gs, ranked.as_deref(), &wo, f, &part, &mut stages)
        });
        meter.finish();
        result
    }

    /// [`NetworkEncoder::finish`] at `factor` times the count of `gs` (ranked by value when
    /// not refining), reporting to `progress` and timing its stages in `stages`.
    #[allow(clippy::too_many_arguments)]
    fn finish_at(
        &self,
        pixels: &Frame<f32>,
        gs: &[Gaussian],
        ranked: Option<&[usize]>,
        opts: &WriteOptions,
        factor: f64,
        progress: &Part,
        stages: &mut Stages,
    ) -> Result<Encoded> {
        let budget = ((gs.len() as f64 * factor).round() as usize).max(1);
        match ranked {
            Some(r) if factor < 1.0 => {
                let clock = Instant::now();
                let kept = keep_share(pixels, gs, r, factor, self.info.cell);
                stages.add("ranking", clock);
                let n = kept.len();
                self.finish(pixels, kept, opts, n, progress, stages)
            }
            _ => self.finish(pixels, gs.to_vec(), opts, budget, progress, stages),
        }
    }

    /// Fits, quantizes and writes the network's (kept) Gaussians, reporting to `progress`
    /// ([`NetworkEncoder::finish_units`] spread over it) and timing its stages in `stages`;
    /// when refining, the refinement's rounds bring their count to `budget`.
    fn finish(
        &self,
        pixels: &Frame<f32>,
        mut gs: Vec<Gaussian>,
        opts: &WriteOptions,
        budget: usize,
        progress: &Part,
        stages: &mut Stages,
    ) -> Result<Encoded> {
        let units = self.finish_units();
        let mut at = 0;
        let mut stage = |n: usize| {
            let p = progress.within(at, n, units);
            at += n;
            p
        };
        let refining = self.refining() && !gs.is_empty();
        let (mut notes, mut warnings) = (Vec::new(), Vec::new());
        let mut record = |o: crate::encode::optim::refine::RefineOutcome,
                          stages: &mut Stages,
                          quantized: bool| {
            notes.extend(o.note());
            notes.extend(o.psnr_note(quantized));
            warnings.extend(o.warning());
            let s = o.seconds;
            if quantized {
                stages.add_seconds("quantization-aware steps", s.descent);
            } else {
                stages.add_seconds("moves", s.moves);
                stages.add_seconds("colour fits", s.colour_fits);
                stages.add_seconds("descent", s.descent);
            }
        };
        let color_fit = match self.opts.color_fit {
            // Refinement's fits are undamped (as on the GPU, whose fit has no damping): the
            // steps between them settle what the damping would.
            Some(f) if refining && self.info.quantizers.is_some() => {
                Some(FitOptions { damping: 0.0, ..f })
            }
            Some(f) if self.info.quantizers.is_some() && !gs.is_empty() => Some(f),
            _ if refining => Some(FitOptions::default()),
            _ => None,
        };
        // Where the refinement's fits and steps run: after a GPU error, the CPU for the rest.
        let mut device = self.opts.refine.device;
        let mut gpu_fallback = None;
        if let Some(fit) = color_fit {
            // Refine (when asked) within the file's scale range, quantize the geometry as the
            // file will, and fit every channel (alpha included) to what is stored.
            if refining {
                // Edge-aligned shapes refine much further than the network's round ones.
                let clock = Instant::now();
                crate::encode::analytic::orient_by_structure(pixels, &mut gs);
                stages.add("orientation", clock);
                // The network's Gaussians are smaller than the quadtree's and refine further
                // when enlarged (`REFINE_SIGMA_GROWTH`).
                for g in gs.iter_mut() {
                    g.scale = g.scale.map(|s| s * REFINE_SIGMA_GROWTH);
                }
                // The network's colours assume its quantizers' clamping: start the refinement
                // from the least-squares colours of its geometry instead.
                let clock = Instant::now();
                gpu_fallback = fit_colors_in(pixels, &mut gs, &fit, device, Some(&self.gpu))?;
                stages.add("colour fits", clock);
                stage(ROUND_START_UNITS).finish();
                let mut ropts = self.opts.refine;
                if let Some((lo, hi)) = opts.scale_range {
                    ropts.scale_bounds = (lo.exp2(), hi.exp2());
                }
                // After a GPU error, the CPU for the rest (one warning).
                if gpu_fallback.is_some() {
                    device = RefineDevice::Cpu;
                }
                ropts.device = device;
                let part = stage(refine_units(&ropts));
                let outcome =
                    refine_to_in(pixels, &mut gs, &ropts, budget, &part, Some(&self.gpu))?;
                if outcome.fallback.is_some() {
                    device = RefineDevice::Cpu;
                }
                record(outcome, stages, false);
            }
            if !refining && budget > gs.len() {
                // Above the model's count (high qualities): Gaussians added where the error is.
                let clock = Instant::now();
                densify(pixels, &mut gs, budget, DENSIFY_ROUNDS, &fit);
                stages.add("additions", clock);
            }
            let draft = SplatImage::new(pixels.width, pixels.height, pixels.layout, gs.clone())?;
            let header = format::plan_header(&draft, opts)?;
            let q_steps = self.opts.refine.quantized_steps;
            if refining && q_steps > 0 {
                let grid = QuantGrid::of(&header);
                let ropts = RefineOptions {
                    device,
                    ..self.opts.refine
                };
                let part = stage(q_steps);
                let outcome = refine_quantized_in(
                    pixels,
                    &mut gs,
                    &ropts,
                    &grid,
                    q_steps,
                    &part,
                    Some(&self.gpu),
                )?;
                if outcome.fallback.is_some() {
                    device = RefineDevice::Cpu;
                }
                record(outcome, stages, true);
            }
            let clock = Instant::now();
            for g in gs.iter_mut() {
                let color = g.color;
                *g = format::dequantize(&header, &format::quantize(&header, g));
                g.color = color;
            }
            if refining {
                let w = fit_colors_in(pixels, &mut gs, &fit, device, Some(&self.gpu))?;
                gpu_fallback = gpu_fallback.or(w);
            } else {
                fit_colors(pixels, &mut gs, &fit);
            }
            stages.add("colour fits", clock);
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
        stage(ROUND_START_UNITS).finish();
        let clock = Instant::now();
        let image = SplatImage::new(pixels.width, pixels.height, pixels.layout, gs)?;
        let mut encoded = format::write(&image, opts)?;
        stages.add("writing", clock);
        notes.push(stages.note());
        progress.finish();
        encoded.notes = notes;
        encoded.warnings = warnings;
        // One line for a GPU error, whichever stage met it first.
        if encoded.warnings.is_empty() {
            encoded.warnings.extend(gpu_fallback);
        }
        Ok(encoded)
    }
}

/// Shifts the bits of the position, scale, rotation, luma and chroma quantizers by `delta`
/// (a quality's precision), keeping each at least 3 (or its own count when fewer) and at most
/// 16.
fn shift_bits(wo: &mut WriteOptions, delta: [i16; 5]) {
    let bits = [
        &mut wo.position_bits,
        &mut wo.scale_bits,
        &mut wo.rotation_bits,
        &mut wo.luma_bits,
        &mut wo.chroma_bits,
    ];
    for (b, d) in bits.into_iter().zip(delta) {
        *b = (*b as i16 + d).clamp((*b).min(3) as i16, 16) as u8;
    }
}

/// Rounds in which the network encoder without refinement adds Gaussians above the model's
/// count (each placing its share at the largest errors after the colours of the last are
/// fitted).
const DENSIFY_ROUNDS: usize = 2;

/// Progress units of writing a file.
const FINISH_WRITE_UNITS: usize = 2;

/// Wall-clock seconds of an encode's stages, in the order they first ran (for `-v`).
#[derive(Default)]
struct Stages(Vec<(&'static str, f64)>);

impl Stages {
    fn add(&mut self, name: &'static str, since: Instant) {
        self.add_seconds(name, since.elapsed().as_secs_f64());
    }

    fn add_seconds(&mut self, name: &'static str, seconds: f64) {
        if seconds <= 0.0 {
            return;
        }
        match self.0.iter_mut().find(|(n, _)| *n == name) {
            Some((_, s)) => *s += seconds,
            None => self.0.push((name, seconds)),
        }
    }

    /// `stages: network 310.0 ms, colour fits 120.0 ms, …` (so far).
    fn note(&self) -> String {
        let parts: Vec<String> = self
            .0
            .iter()
            .map(|(n, s)| format!("{n} {:.1} ms", s * 1e3))
            .collect();
        format!("stages: {}", parts.join(", "))
    }
}

/// Within a network run, progress shows at most this share of the run done until it ends (the
/// time a run takes is estimated from the last one).
const RUN_SHARE_CAP: f64 = 0.95;

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// An encoder is shared by threads (one encoding, others asking for its model and
    /// library), the GPU refinement it keeps included.
    #[test]
    fn the_encoder_can_be_shared_between_threads() {
        fn shared<T: Send + Sync>() {}
        shared::<NetworkEncoder>();
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

    /// The network's work is the window pixels in all: the grid with the fewest (edge windows
    /// have no margin outside the picture), never more than square cores of the largest side.
    #[test]
    fn tiles_repeat_the_fewest_margin_pixels() {
        let work = |t: &[Tile]| -> u64 {
            t.iter()
                .map(|t| (t.window[2] - t.window[0]) as u64 * (t.window[3] - t.window[1]) as u64)
                .sum()
        };
        // The compact model: margins of 352 pixels, windows of at most 2^21 pixels.
        let t = plan_tiles(2448, 1632, 16, 352, 1 << 21, None);
        assert_eq!((t.len(), work(&t)), (4, 7_363_072));
        let t = plan_tiles(6000, 4000, 16, 352, 1 << 21, None);
        assert_eq!((t.len(), work(&t)), (45, 79_283_712));
        // Windows as large as 4 GiB allow beside a 24 MP picture (`memory::network_window`).
        let window = crate::encode::memory::network_window(6000, 4000, 1 << 32);
        let t = plan_tiles(6000, 4000, 16, 352, window, None);
        assert!(t.iter().all(|t| {
            (t.window[2] - t.window[0]) as u64 * (t.window[3] - t.window[1]) as u64 <= window
        }));
        assert_eq!((t.len(), work(&t)), (6, 34_847_232));
    }
}
