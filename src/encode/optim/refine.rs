//! Per-image refinement: gradient descent (Adam) on every Gaussian parameter to reduce the
//! squared error of the native-size render (format-spec.md §3 at 1×) against the picture.
//!
//! The gradient is derived by hand for the normalized blend `C_p = N_p / D_p`:
//!
//! ```text
//! L      = Σ_p ‖C_p − I_p‖²,           g_p = 2 (C_p − I_p)
//! ∂L/∂c_k = Σ_p g_p · w_pk / D_p
//! ∂L/∂w_pk = g_p · (c_k − C_p) / D_p
//! w = a · exp(−q/2),  q = A dx² + 2B dx dy + C dy²,  (A, B, C) = Σ'⁻¹,  Σ' = Σ + λI
//! ```
//!
//! then through the conic and the amplitude `a = sqrt(det Σ / det Σ')` to position, log-scales
//! and rotation. The picture is cut into tiles; each tile blends its Gaussians, computes `g_p`,
//! and accumulates per-Gaussian gradients, in parallel; the partial sums are added in a fixed
//! order, so the result does not depend on the thread count.

use std::time::Instant;

use rayon::prelude::*;

use crate::core::frame::Frame;
use crate::core::geometry::{CUTOFF_Q, MIN_WEIGHT_SUM, PREFILTER_VARIANCE};
use crate::core::progress::Part;
use crate::core::splat::Gaussian;
pub use crate::cuda::lr_factor;
pub use crate::format::QuantGrid;
use crate::render::exp_neg_half;

const TILE: i64 = 32;

/// Settings of the refinement.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RefineOptions {
    /// Adam steps.
    pub iterations: usize,
    /// Step size of positions, in native pixels.
    pub lr_position: f32,
    /// Step size of log2-scales.
    pub lr_scale: f32,
    /// Step size of rotations, radians.
    pub lr_rotation: f32,
    /// Step size of channel values.
    pub lr_color: f32,
    /// The step sizes at the end of a descent as a fraction of the above: they fall
    /// exponentially from 1× at the first step to this at the last (1: constant).
    pub lr_final: f32,
    /// Smallest and largest σ allowed, native pixels.
    pub scale_bounds: (f32, f32),
    /// Fraction of the Gaussians moved to where the error is before each round
    /// (`reallocate`); 0: none.
    pub reallocate: f32,
    /// Rounds of (move, colour fit, descent) the iterations are split into, when `reallocate`
    /// is above 0.
    pub rounds: usize,
    /// Whether each round fits the colours by least squares after its count change and moves
    /// (on `device`). Off, the descent alone settles the new and moved Gaussians' colours from
    /// their first guess.
    pub refit_colors: bool,
    /// Quantization-aware steps the encoders run after the rounds, once the file's quantizers
    /// are known (`refine_quantized`); 0: none.
    pub quantized_steps: usize,
    /// Step sizes of the quantization-aware steps as a fraction of the descent's (their
    /// schedule is the descent's `lr_final`).
    pub quantized_lr: f32,
    /// Where the descent runs.
    pub device: RefineDevice,
}

impl RefineOptions {
    unstable_pub! {
        /// The step sizes and bounds, for a descent on the GPU (`crate::cuda::GpuRefiner`).
        fn adam(&self) -> crate::cuda::AdamSettings {
            crate::cuda::AdamSettings {
                lr_position: self.lr_position,
                lr_scale: self.lr_scale,
                lr_rotation: self.lr_rotation,
                lr_color: self.lr_color,
                lr_final: self.lr_final,
                scale_bounds: self.scale_bounds,
            }
        }
    }
}

/// How much work an encoder spends on a picture.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Effort {
    /// The encoder's start as it is (the network's Gaussians, or the analytic placement with
    /// its colour fit): no refinement.
    Fast,
    /// Bounded time: on a GPU, 160 refinement steps in four rounds plus 50 quantization-aware
    /// steps (a fraction of a second); on the CPU the same as `Fast`, to stay within about a
    /// second per Kodak-size picture on two cores.
    #[default]
    Default,
    /// To convergence: 1,000 steps in ten rounds with a decaying step size, then 500
    /// quantization-aware steps, on the GPU or (minutes) on the CPU.
    Max,
}

impl RefineOptions {
    /// The refinement of `effort` with the descent on `device`; `gpu` says whether a GPU can
    /// be used (it decides what `Default` does).
    ///
    /// `Default` takes larger steps than [`RefineOptions::default`] for colours (0.04) and
    /// log2-scales (0.06), and its quantization-aware steps take half the descent's step
    /// sizes. Its four rounds of 40 steps each start from a move and a colour fit, so every
    /// step must go far: doubling the colour step, and the scale step by half, is worth
    /// 0.2 to 0.5 dB at equal rate from 0.3 to 1 bpp (more after pruning at low rates, where
    /// the remaining Gaussians must grow and re-colour), measured with the network's start on
    /// held-out photographs and then on Kodak crops; a decaying step size loses there, since
    /// each round is short. The quantization-aware steps start from the converged float
    /// solution and only have to settle it on the file's grid, which smaller steps do better
    /// (0.02 to 0.1 dB at equal rate on both sets). `Max` keeps the plain step sizes with a
    /// decaying schedule over its much longer rounds.
    pub fn for_effort(effort: Effort, device: RefineDevice, gpu: bool) -> RefineOptions {
        let base = RefineOptions {
            reallocate: 0.1,
            rounds: 4,
            device,
            ..RefineOptions::default()
        };
        match effort {
            Effort::Fast => RefineOptions {
                iterations: 0,
                ..base
            },
            Effort::Default if gpu && device != RefineDevice::Cpu => RefineOptions {
                iterations: 160,
                lr_color: 0.04,
                lr_scale: 0.06,
                quantized_steps: 50,
                quantized_lr: 0.5,
                ..base
            },
            Effort::Default => RefineOptions {
                iterations: 0,
                ..base
            },
            Effort::Max => RefineOptions {
                iterations: 1000,
                lr_final: 0.05,
                rounds: 10,
                reallocate: 0.05,
                quantized_steps: 500,
                ..base
            },
        }
    }
}

/// Where a refinement's gradient descent and colour fits run. The GPU runs the same algorithm
/// as the CPU (`kernels/refine.cu`); the moves between rounds run on the CPU either way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RefineDevice {
    /// The CPU (the reference).
    #[default]
    Cpu,
    /// The first CUDA GPU when one can be used, else the CPU. A GPU fault during the descent
    /// (e.g. out of memory) continues on the CPU, and the outcome says why.
    Auto,
    /// The first CUDA GPU: an error when none can be used; a fault during the descent continues
    /// on the CPU, and the outcome says why.
    Cuda,
}

/// What a refinement did.
#[derive(Debug, Clone, PartialEq)]
pub struct RefineOutcome {
    /// Mean squared error per channel value before the first step (after the first move when
    /// refining in rounds).
    pub first: f64,
    /// Mean squared error of what the refinement leaves.
    pub last: f64,
    /// The GPU the descent ran on, `None` for the CPU.
    pub gpu: Option<String>,
    /// Why the descent left the GPU for the CPU, when it did.
    pub fallback: Option<String>,
    /// Where the time went.
    pub seconds: RefineSeconds,
}

/// Wall-clock seconds of a refinement's stages.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct RefineSeconds {
    /// Count changes and moves of Gaussians to where the error is
    /// ([`prune`](super::realloc::prune), [`adapt`](super::realloc::adapt),
    /// [`reallocate`](super::realloc::reallocate)).
    pub moves: f64,
    /// Colour fits after the count changes and moves, before each round's descent.
    pub colour_fits: f64,
    /// The gradient descent (on the GPU: the upload, the steps and the download).
    pub descent: f64,
}

impl RefineOutcome {
    /// Where the refinement ran, for a user who asks (`-v`).
    pub fn note(&self) -> Option<String> {
        self.gpu
            .as_ref()
            .map(|name| format!("refined on the GPU ({name})"))
    }

    /// The error before and after, as RGB-mean PSNR of the float render, for a user who asks
    /// (`-v`): what the descent gained, and (`quantized`: the quantization-aware steps, whose
    /// renders use the file's geometry grid) what quantizing costs against the float result.
    pub fn psnr_note(&self, quantized: bool) -> Option<String> {
        let db = |mse: f64| -10.0 * mse.max(1e-12).log10();
        if !(self.first.is_finite() && self.last.is_finite()) {
            return None;
        }
        let what = if quantized {
            "quantization-aware steps (geometry on the file's grid)"
        } else {
            "refinement (floats)"
        };
        Some(format!(
            "{what}: {:.2} dB to {:.2} dB",
            db(self.first),
            db(self.last)
        ))
    }

    /// The warning a user should see: the GPU failed and the CPU took over.
    pub fn warning(&self) -> Option<String> {
        self.fallback.clone()
    }
}

impl Default for RefineOptions {
    fn default() -> Self {
        RefineOptions {
            iterations: 40,
            // With the moves in rounds, these step sizes (twice smaller ones) gave, on seven
            // validation pictures of the training set, +0.44 to +0.48 dB for the
            // analytic encoder and +0.27 dB for the network's; three times was worse for both
            // (BENCHMARKS.md).
            lr_position: 0.2,
            lr_scale: 0.04,
            lr_rotation: 0.04,
            lr_color: 0.02,
            lr_final: 1.0,
            scale_bounds: (0.2, 256.0),
            reallocate: 0.0,
            rounds: 1,
            refit_colors: true,
            quantized_steps: 0,
            quantized_lr: 1.0,
            device: RefineDevice::Cpu,
        }
    }
}

/// A GPU refinement kept from one refinement to the next, of the same picture or of the next
/// one: its stream, tile lists and buffers are reused rather than allocated again (an encoder
/// that refines many pictures owns one). Holds device memory until dropped.
#[derive(Default)]
pub(crate) struct GpuWorkspace(std::sync::Mutex<Option<(Box<crate::cuda::GpuRefiner>, String)>>);

impl GpuWorkspace {
    fn slot(&self) -> std::sync::MutexGuard<'_, Option<(Box<crate::cuda::GpuRefiner>, String)>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The descent's engine: the CPU, or a picture uploaded to the GPU.
enum Engine {
    Cpu,
    /// The uploaded picture and the GPU's name.
    Gpu(Box<crate::cuda::GpuRefiner>, String),
}

impl Engine {
    /// The engine for `steps` steps on `gaussians` (the CPU when there is nothing to do).
    /// (`keep`: where a GPU refinement kept from before is taken from.)
    fn for_work(
        target: &Frame<f32>,
        gaussians: &[Gaussian],
        steps: usize,
        device: RefineDevice,
        keep: Option<&GpuWorkspace>,
    ) -> crate::Result<(Engine, Option<String>)> {
        if steps == 0 || gaussians.is_empty() {
            Ok((Engine::Cpu, None))
        } else {
            Engine::new(target, device, keep)
        }
    }

    /// What a refinement through this engine did; the GPU refinement goes back to `keep`.
    fn outcome(
        self,
        first: f64,
        last: f64,
        fallback: Option<String>,
        seconds: RefineSeconds,
        keep: Option<&GpuWorkspace>,
    ) -> RefineOutcome {
        RefineOutcome {
            first,
            last,
            seconds,
            gpu: self.keep(keep),
            fallback,
        }
    }

    /// Puts a GPU refinement back into `keep` (dropping it without one); returns the GPU's
    /// name.
    fn keep(self, keep: Option<&GpuWorkspace>) -> Option<String> {
        match self {
            Engine::Gpu(g, name) => {
                if let Some(k) = keep {
                    *k.slot() = Some((g, name.clone()));
                }
                Some(name)
            }
            Engine::Cpu => None,
        }
    }

    fn new(
        target: &Frame<f32>,
        device: RefineDevice,
        keep: Option<&GpuWorkspace>,
    ) -> crate::Result<(Engine, Option<String>)> {
        if device == RefineDevice::Cpu {
            return Ok((Engine::Cpu, None));
        }
        let kept = keep.and_then(|k| k.slot().take());
        if let Some((mut g, name)) = kept {
            let (w, h, c) = (target.width, target.height, target.channels());
            return Ok(match g.set_target(w, h, c, &target.data) {
                Ok(()) => (Engine::Gpu(g, name), None),
                Err(e) => (
                    Engine::Cpu,
                    Some(format!("refining on the CPU after a GPU error: {e}")),
                ),
            });
        }
        let gpu = crate::cuda::CudaRenderer::new().and_then(|r| {
            let name = r.device_name().to_string();
            r.refiner(target.width, target.height, target.channels(), &target.data)
                .map(|g| (g, name))
        });
        match gpu {
            Ok((g, name)) => Ok((Engine::Gpu(Box::new(g), name), None)),
            Err(crate::Error::NoGpu(_)) if device == RefineDevice::Auto => Ok((Engine::Cpu, None)),
            Err(e @ crate::Error::NoGpu(_)) => Err(e),
            Err(e) => Ok((
                Engine::Cpu,
                Some(format!("refining on the CPU after a GPU error: {e}")),
            )),
        }
    }

    /// The least-squares colour fit ([`fit_colors`](super::fit::fit_colors)'s problem): on
    /// the GPU when the engine is there (the whole picture at once), on the CPU otherwise or
    /// after a GPU error (which, as in the descent, leaves the engine on the CPU).
    fn fit_colors(
        &mut self,
        target: &Frame<f32>,
        gaussians: &mut [Gaussian],
        fit: &super::fit::FitOptions,
        fallback: &mut Option<String>,
    ) {
        // The GPU's fit is undamped least squares: a damped fit runs on the CPU.
        if let (Engine::Gpu(g, _), 0.0) = (&mut *self, fit.damping) {
            let colors: Vec<[f32; 4]> = gaussians.iter().map(|g| g.color).collect();
            match g.fit_colors(gaussians, fit.iterations, fit.clamp) {
                Ok(()) => return,
                Err(e) => {
                    *fallback = Some(format!("refining on the CPU after a GPU error: {e}"));
                    for (g, c) in gaussians.iter_mut().zip(colors) {
                        g.color = c;
                    }
                    *self = Engine::Cpu;
                }
            }
        }
        super::fit::fit_colors(target, gaussians, fit);
    }

    /// Runs `f`, one of the moves between rounds ([`super::realloc`]), with the GPU
    /// refinement measuring the removal costs and error maps when the engine is there; on the
    /// CPU otherwise or after a GPU error (which, as in the descent, leaves the engine on the
    /// CPU; the moves return their GPU errors before changing the Gaussians).
    fn moves<T>(
        &mut self,
        fallback: &mut Option<String>,
        mut f: impl FnMut(Option<&mut crate::cuda::GpuRefiner>) -> crate::Result<T>,
    ) -> T {
        if let Engine::Gpu(g, _) = self {
            match f(Some(g)) {
                Ok(r) => return r,
                Err(e) => {
                    *fallback = Some(format!("refining on the CPU after a GPU error: {e}"));
                    *self = Engine::Cpu;
                }
            }
        }
        f(None).unwrap_or_else(|e| unreachable!("the moves on the CPU do not fail ({e})"))
    }

    #[allow(clippy::too_many_arguments)]
    fn descend(
        &mut self,
        target: &Frame<f32>,
        gaussians: &mut [Gaussian],
        opts: &RefineOptions,
        iterations: usize,
        grid: Option<&QuantGrid>,
        fallback: &mut Option<String>,
        progress: &Part,
    ) -> (f64, f64) {
        if let Engine::Gpu(g, _) = self {
            let adam = opts.adam();
            let start = gaussians.to_vec();
            match g.descend(gaussians, &adam, iterations, grid) {
                Ok(r) => {
                    progress.finish();
                    return r;
                }
                Err(e) => {
                    *fallback = Some(format!("refining on the CPU after a GPU error: {e}"));
                    gaussians.copy_from_slice(&start);
                    *self = Engine::Cpu;
                }
            }
        }
        descend(target, gaussians, opts, iterations, grid, progress)
    }
}

/// What one Gaussian contributes to the math of an iteration (scale 1, with the prefilter).
#[derive(Clone, Copy)]
struct Prep {
    mx: f32,
    my: f32,
    conic: [f32; 3],
    amp: f32,
    bbox: [i64; 4],
    /// Cutoff on q: 9 (3σ) as in the spec; the gradient test moves it far out.
    qmax: f32,
}

fn prep(g: &Gaussian) -> Prep {
    prep_with_cutoff(g, CUTOFF_Q)
}

fn prep_with_cutoff(g: &Gaussian, qmax: f32) -> Prep {
    let (xx, xy, yy) = g.covariance();
    let (oxx, oyy) = (xx + PREFILTER_VARIANCE, yy + PREFILTER_VARIANCE);
    let det = oxx * oyy - xy * xy;
    let s12 = g.scale[0] as f64 * g.scale[1] as f64;
    let r = (qmax as f64).sqrt();
    let (rx, ry) = (r * oxx.sqrt(), r * oyy.sqrt());
    let (mx, my) = (g.x as f64, g.y as f64);
    Prep {
        mx: g.x,
        my: g.y,
        conic: [(oyy / det) as f32, (-xy / det) as f32, (oxx / det) as f32],
        amp: (s12 / det.sqrt()) as f32,
        bbox: [
            (mx - rx - 0.5).ceil() as i64,
            (my - ry - 0.5).ceil() as i64,
            (mx + rx - 0.5).floor() as i64,
            (my + ry - 0.5).floor() as i64,
        ],
        qmax,
    }
}

/// Per-Gaussian gradient with respect to: mx, my, A, B, C (conic), amp, channels.
type Grad = [f64; 10];

#[cfg(any(test, feature = "unstable"))] // tools and tests: the encoders pass progress
/// Refines `gaussians` in place against `target`, leaving the best parameters of all steps (the
/// lowest error seen), on the device `opts.device` asks for; the count is kept
/// ([`refine_to`] with the current count as the budget).
///
/// Fails only when `opts.device` is [`RefineDevice::Cuda`] and no GPU can be used.
pub fn refine(
    target: &Frame<f32>,
    gaussians: &mut Vec<Gaussian>,
    opts: &RefineOptions,
) -> crate::Result<RefineOutcome> {
    let budget = gaussians.len();
    refine_to(target, gaussians, opts, budget)
}

#[cfg(any(test, feature = "unstable"))] // tools and tests: the encoders pass progress
/// Refines `gaussians` against `target` as [`refine`] does, bringing their count to `budget`
/// on the way ([`refine_to_with_progress`] without progress).
pub fn refine_to(
    target: &Frame<f32>,
    gaussians: &mut Vec<Gaussian>,
    opts: &RefineOptions,
    budget: usize,
) -> crate::Result<RefineOutcome> {
    let units = refine_units(opts);
    let meter = crate::core::progress::Meter::new(None, units);
    refine_to_with_progress(target, gaussians, opts, budget, &meter.part(units))
}

/// Progress units (`gsimg::ProgressSink`) of a move and the colour fit after it, in a
/// refinement's rounds: about the time of this many descent steps.
pub const ROUND_START_UNITS: usize = 6;

/// The progress units [`refine_with_progress`] and [`refine_to_with_progress`] report for
/// `opts`: one per step, plus [`ROUND_START_UNITS`] per round of moves.
pub fn refine_units(opts: &RefineOptions) -> usize {
    if opts.reallocate <= 0.0 || opts.rounds == 0 || opts.iterations == 0 {
        opts.iterations
    } else {
        opts.iterations + opts.rounds.min(opts.iterations) * ROUND_START_UNITS
    }
}

/// Refines `gaussians` as [`refine_to_with_progress`] does, keeping their count.
pub fn refine_with_progress(
    target: &Frame<f32>,
    gaussians: &mut Vec<Gaussian>,
    opts: &RefineOptions,
    progress: &Part,
) -> crate::Result<RefineOutcome> {
    let budget = gaussians.len();
    refine_to_with_progress(target, gaussians, opts, budget, progress)
}

/// Refines `gaussians` in place against `target`, leaving the best parameters of all steps (the
/// lowest error seen), on the device `opts.device` asks for, bringing their count to `budget`
/// (at least one) on the way: adaptive counts toward a rate. The steps are reported to
/// `progress` ([`refine_units`] of them, spread over the part); the outcome says where the time
/// went ([`RefineSeconds`]).
///
/// With `opts.reallocate` above 0 the iterations are split into `opts.rounds` rounds, each
/// starting with a pass of [`adapt`](super::realloc::adapt) and (with `opts.refit_colors`) a
/// colour fit on the refinement's device, then a descent that leaves the best parameters of its
/// own steps:
///
/// - **pruning** (a budget below the count): the first round removes what does not pay, the
///   Gaussians whose removal costs least ([`prune`](super::realloc::prune)), so the descents
///   that follow repair what the removals cost;
/// - **densification** (a budget above the count): each round adds an equal share of the
///   missing Gaussians at the largest errors of the current render, so the later ones go where
///   the earlier rounds left error;
/// - every round also moves `opts.reallocate` of the Gaussians (removes that many, adds as many).
///
/// Without rounds (or without iterations) the count changes once, before the descent (or
/// alone), followed by a colour fit when `opts.refit_colors` asks. The count decisions run on
/// the host between descents, so the CPU and the GPU run the same algorithm. The first error
/// returned is the one after the first round's changes. A GPU error sends the rest of the
/// refinement to the CPU; the outcome's [`warning`](RefineOutcome::warning) then says why.
///
/// Fails only when `opts.device` is [`RefineDevice::Cuda`] and no GPU can be used.
pub fn refine_to_with_progress(
    target: &Frame<f32>,
    gaussians: &mut Vec<Gaussian>,
    opts: &RefineOptions,
    budget: usize,
    progress: &Part,
) -> crate::Result<RefineOutcome> {
    refine_to_in(target, gaussians, opts, budget, progress, None)
}

/// [`refine_to_with_progress`] with the GPU refinement taken from `keep` and put back there.
pub(crate) fn refine_to_in(
    target: &Frame<f32>,
    gaussians: &mut Vec<Gaussian>,
    opts: &RefineOptions,
    budget: usize,
    progress: &Part,
    keep: Option<&GpuWorkspace>,
) -> crate::Result<RefineOutcome> {
    use super::realloc::{adapt_on, prune_on, reallocate_on};
    let budget = budget.max(1);
    let mut seconds = RefineSeconds::default();
    let clock = Instant::now();
    let (mut engine, mut fallback) =
        Engine::for_work(target, gaussians, opts.iterations, opts.device, keep)?;
    seconds.descent += clock.elapsed().as_secs_f64();
    let fit = super::fit::FitOptions::default();
    let (first, last) = if opts.reallocate <= 0.0 || opts.rounds == 0 || opts.iterations == 0 {
        // The count changes in one step: pruning, or additions at the error.
        let clock = Instant::now();
        let n = gaussians.len();
        if budget < n {
            engine.moves(&mut fallback, |g| prune_on(target, gaussians, budget, g));
        } else if budget > n {
            engine.moves(&mut fallback, |g| {
                adapt_on(target, gaussians, 0, budget - n, g)
            });
        }
        seconds.moves += clock.elapsed().as_secs_f64();
        if n != gaussians.len() && opts.refit_colors {
            let clock = Instant::now();
            engine.fit_colors(target, gaussians, &fit, &mut fallback);
            seconds.colour_fits += clock.elapsed().as_secs_f64();
        }
        let clock = Instant::now();
        let r = engine.descend(
            target,
            gaussians,
            opts,
            opts.iterations,
            None,
            &mut fallback,
            progress,
        );
        seconds.descent += clock.elapsed().as_secs_f64();
        r
    } else {
        // Rounds: prune (first round) or add a share of the missing Gaussians, move some,
        // refit the colours (the new ones start from a guess), then descend with fresh Adam
        // moments.
        let rounds = opts.rounds.min(opts.iterations);
        let mut first = f64::NAN;
        let mut last = f64::NAN;
        let mut at = 0;
        for r in 0..rounds {
            let iterations = opts.iterations / rounds + usize::from(r < opts.iterations % rounds);
            let clock = Instant::now();
            let n = gaussians.len();
            if budget < n {
                engine.moves(&mut fallback, |g| prune_on(target, gaussians, budget, g));
                engine.moves(&mut fallback, |g| {
                    reallocate_on(target, gaussians, opts.reallocate, g)
                });
            } else {
                let moves =
                    ((opts.reallocate.clamp(0.0, 0.5) as f64 * n as f64).round() as usize).min(n);
                let grow = (budget - n).div_ceil(rounds - r);
                engine.moves(&mut fallback, |g| {
                    adapt_on(target, gaussians, moves, moves + grow, g)
                });
            }
            seconds.moves += clock.elapsed().as_secs_f64();
            if opts.refit_colors {
                let clock = Instant::now();
                engine.fit_colors(target, gaussians, &fit, &mut fallback);
                seconds.colour_fits += clock.elapsed().as_secs_f64();
            }
            let units = refine_units(opts);
            progress.within(at, ROUND_START_UNITS, units).finish();
            let steps = progress.within(at + ROUND_START_UNITS, iterations, units);
            at += ROUND_START_UNITS + iterations;
            let clock = Instant::now();
            let (f, l) = engine.descend(
                target,
                gaussians,
                opts,
                iterations,
                None,
                &mut fallback,
                &steps,
            );
            seconds.descent += clock.elapsed().as_secs_f64();
            if r == 0 {
                first = f;
            }
            last = l;
        }
        (first, last)
    };
    Ok(engine.outcome(first, last, fallback, seconds, keep))
}

/// Fits the colours of `gaussians` (the geometry fixed) to `target` by least squares, on the
/// device `device` asks for: the problem of [`fit_colors`](super::fit::fit_colors), which is
/// also what runs on the CPU. On a GPU it is solved on the whole picture at once (the CPU
/// solves it in spatial chunks, in sweeps). Returns the warning to show when a GPU error sent
/// the fit to the CPU; fails only when `device` is [`RefineDevice::Cuda`] and no GPU can be
/// used. A GPU refinement is taken from `keep` and put back there.
pub(crate) fn fit_colors_in(
    target: &Frame<f32>,
    gaussians: &mut [Gaussian],
    fit: &super::fit::FitOptions,
    device: RefineDevice,
    keep: Option<&GpuWorkspace>,
) -> crate::Result<Option<String>> {
    let (mut engine, mut fallback) = Engine::for_work(target, gaussians, 1, device, keep)?;
    engine.fit_colors(target, gaussians, fit, &mut fallback);
    engine.keep(keep);
    Ok(fallback)
}

#[cfg(any(test, feature = "unstable"))] // tools and tests: the encoders pass progress
/// Quantization-aware steps: `steps` Adam steps (at `opts`' step sizes and schedule, on
/// `opts.device`) whose renders use the Gaussians snapped to `grid`, leaving in `gaussians` the
/// snapped parameters of the best step. Run after [`refine`], with the grid of the header the
/// file will be written with.
pub fn refine_quantized(
    target: &Frame<f32>,
    gaussians: &mut [Gaussian],
    opts: &RefineOptions,
    grid: &QuantGrid,
    steps: usize,
) -> crate::Result<RefineOutcome> {
    let meter = crate::core::progress::Meter::new(None, steps);
    refine_quantized_with_progress(target, gaussians, opts, grid, steps, &meter.part(steps))
}

/// [`refine_quantized`], reporting its steps to `progress` (a part of `steps` units).
pub fn refine_quantized_with_progress(
    target: &Frame<f32>,
    gaussians: &mut [Gaussian],
    opts: &RefineOptions,
    grid: &QuantGrid,
    steps: usize,
    progress: &Part,
) -> crate::Result<RefineOutcome> {
    refine_quantized_in(target, gaussians, opts, grid, steps, progress, None)
}

/// [`refine_quantized_with_progress`] with the GPU refinement taken from `keep` and put back
/// there.
pub(crate) fn refine_quantized_in(
    target: &Frame<f32>,
    gaussians: &mut [Gaussian],
    opts: &RefineOptions,
    grid: &QuantGrid,
    steps: usize,
    progress: &Part,
    keep: Option<&GpuWorkspace>,
) -> crate::Result<RefineOutcome> {
    let clock = Instant::now();
    let (mut engine, mut fallback) = Engine::for_work(target, gaussians, steps, opts.device, keep)?;
    let f = opts.quantized_lr;
    let opts = RefineOptions {
        lr_position: opts.lr_position * f,
        lr_scale: opts.lr_scale * f,
        lr_rotation: opts.lr_rotation * f,
        lr_color: opts.lr_color * f,
        ..*opts
    };
    let (first, last) = engine.descend(
        target,
        gaussians,
        &opts,
        steps,
        Some(grid),
        &mut fallback,
        progress,
    );
    for g in gaussians.iter_mut() {
        *g = grid.snap(g);
    }
    let seconds = RefineSeconds {
        descent: clock.elapsed().as_secs_f64(),
        ..RefineSeconds::default()
    };
    Ok(engine.outcome(first, last, fallback, seconds, keep))
}

/// The loss of `gaussians` against `target` (mean squared error per channel value of the
/// native-size render) and the gradient of the summed squared error with respect to each
/// Gaussian's (x, y, log2 σ1, log2 σ2, θ, channels 0..3): what one step of the CPU descent
/// computes (the reference the GPU's gradients are checked against).
#[cfg(feature = "unstable")]
pub fn gradients(target: &Frame<f32>, gaussians: &[Gaussian]) -> (f64, Vec<[f64; 9]>) {
    let nc = target.channels();
    let (w, h) = (target.width as i64, target.height as i64);
    let preps: Vec<Prep> = gaussians.par_iter().map(prep).collect();
    let (loss, grads) = loss_and_grads(target, gaussians, &preps, w, h, nc);
    let pg = gaussians
        .iter()
        .zip(&grads)
        .map(|(g, gr)| param_gradient(g, gr, nc))
        .collect();
    (loss / (w * h) as f64 / nc as f64, pg)
}

/// Summed squared error and per-Gaussian gradients w.r.t. (mx, my, conic, amp, channels) of the
/// whole picture: tiles in parallel, partial sums added in a fixed order.
fn loss_and_grads(
    target: &Frame<f32>,
    gaussians: &[Gaussian],
    preps: &[Prep],
    w: i64,
    h: i64,
    nc: usize,
) -> (f64, Vec<Grad>) {
    let (tx, ty) = ((w + TILE - 1) / TILE, (h + TILE - 1) / TILE);
    // Tile lists, in Gaussian order.
    let mut lists: Vec<Vec<u32>> = vec![Vec::new(); (tx * ty) as usize];
    for (k, p) in preps.iter().enumerate() {
        let b = p.bbox;
        let (x0, y0) = (b[0].max(0) / TILE, b[1].max(0) / TILE);
        let (x1, y1) = (b[2].min(w - 1), b[3].min(h - 1));
        if x1 < 0 || y1 < 0 || b[0] >= w || b[1] >= h {
            continue;
        }
        for t_y in y0..=y1 / TILE {
            for t_x in x0..=x1 / TILE {
                lists[(t_y * tx + t_x) as usize].push(k as u32);
            }
        }
    }
    let partial: Vec<(f64, Vec<(u32, Grad)>)> = lists
        .par_iter()
        .enumerate()
        .map(|(t, list)| {
            tile_gradient(
                target,
                gaussians,
                preps,
                list,
                t as i64 % tx,
                t as i64 / tx,
                nc,
            )
        })
        .collect();
    let mut grads = vec![[0f64; 10]; gaussians.len()];
    let mut loss = 0.0;
    for (l, part) in &partial {
        loss += l;
        for (k, g) in part {
            for (a, b) in grads[*k as usize].iter_mut().zip(g) {
                *a += b;
            }
        }
    }
    (loss, grads)
}

/// `iterations` Adam steps from the current parameters; see [`refine`].
fn descend(
    target: &Frame<f32>,
    gaussians: &mut [Gaussian],
    opts: &RefineOptions,
    iterations: usize,
    grid: Option<&QuantGrid>,
    progress: &Part,
) -> (f64, f64) {
    // The latent parameters Adam moves; `gaussians` holds what is rendered (the latent ones,
    // or their snap to the grid).
    let mut latent = gaussians.to_vec();
    if let Some(q) = grid {
        for g in gaussians.iter_mut() {
            *g = q.snap(g);
        }
    }
    let nc = target.channels();
    let n = gaussians.len();
    let (w, h) = (target.width as i64, target.height as i64);
    // Parameters: x, y, log2 σ1, log2 σ2, θ, c0..c3.
    let mut m = vec![[0f32; 9]; n];
    let mut v = vec![[0f32; 9]; n];
    let (b1, b2, eps) = (0.9f32, 0.999f32, 1e-8f32);
    let lr = |i: usize, step: usize| {
        let base = match i {
            0 | 1 => opts.lr_position,
            2 | 3 => opts.lr_scale,
            4 => opts.lr_rotation,
            _ => opts.lr_color,
        };
        base * lr_factor(opts.lr_final, step, iterations)
    };
    let values = (w * h) as f64 * nc as f64;
    let (mut first, mut last) = (f64::NAN, f64::NAN);
    let mut best: Vec<Gaussian> = Vec::with_capacity(n);
    for step in 0..=iterations {
        let preps: Vec<Prep> = gaussians.par_iter().map(prep).collect();
        let (loss, grads) = loss_and_grads(target, gaussians, &preps, w, h, nc);
        let mse = loss / values;
        if step == 0 {
            first = mse;
        }
        // Adam at a fixed step size need not descend monotonically (on crowded, overlapping
        // Gaussians it can wander off): the best parameters seen are what is returned.
        if mse < last || last.is_nan() {
            last = mse;
            best.clear();
            best.extend_from_slice(gaussians);
        }
        progress.report(step, iterations);
        if step == iterations {
            break;
        }
        // Chain rule to the parameters, then Adam.
        let t = (step + 1) as i32;
        let (c1, c2) = (1.0 - b1.powi(t), 1.0 - b2.powi(t));
        gaussians
            .par_iter_mut()
            .zip(latent.par_iter_mut())
            .zip(grads.par_iter())
            .zip(m.par_iter_mut().zip(v.par_iter_mut()))
            .for_each(|(((shown, g), gr), (mk, vk))| {
                // The gradient at what is rendered, applied to the latent parameters.
                let pg = param_gradient(shown, gr, nc);
                let mut p = [
                    g.x,
                    g.y,
                    g.scale[0].log2(),
                    g.scale[1].log2(),
                    g.rotation,
                    g.color[0],
                    g.color[1],
                    g.color[2],
                    g.color[3],
                ];
                for i in 0..5 + nc {
                    let gi = pg[i] as f32 / values as f32;
                    mk[i] = b1 * mk[i] + (1.0 - b1) * gi;
                    vk[i] = b2 * vk[i] + (1.0 - b2) * gi * gi;
                    p[i] -= lr(i, step) * (mk[i] / c1) / ((vk[i] / c2).sqrt() + eps);
                }
                let (lo, hi) = (opts.scale_bounds.0.log2(), opts.scale_bounds.1.log2());
                g.x = p[0];
                g.y = p[1];
                g.scale = [p[2].clamp(lo, hi).exp2(), p[3].clamp(lo, hi).exp2()];
                g.rotation = p[4];
                for c in 0..nc {
                    g.color[c] = p[5 + c].clamp(-0.5, 1.5);
                }
                *shown = match grid {
                    Some(q) => q.snap(g),
                    None => *g,
                };
            });
    }
    gaussians.copy_from_slice(&best);
    (first, last)
}

/// Loss and per-Gaussian gradients (w.r.t. mx, my, conic, amp, channels) of one tile.
fn tile_gradient(
    target: &Frame<f32>,
    gs: &[Gaussian],
    preps: &[Prep],
    list: &[u32],
    tx: i64,
    ty: i64,
    nc: usize,
) -> (f64, Vec<(u32, Grad)>) {
    let (w, h) = (target.width as i64, target.height as i64);
    let (x0, y0) = (tx * TILE, ty * TILE);
    let (x1, y1) = ((x0 + TILE).min(w), (y0 + TILE).min(h));
    let tw = (x1 - x0) as usize;
    let npx = tw * (y1 - y0) as usize;
    let mut num = vec![0f32; npx * 4];
    let mut den = vec![0f32; npx];
    // Forward: each Gaussian's (pixel, weight, dx, dy) over the exact rows of its ellipse, kept
    // for the backward pass so no exponential is computed twice.
    struct Hit {
        pix: u32,
        w: f32,
        dx: f32,
        dy: f32,
    }
    let mut hits: Vec<Hit> = Vec::new();
    let mut ranges = Vec::with_capacity(list.len());
    for &k in list {
        let p = &preps[k as usize];
        let start = hits.len();
        let [a, b, c] = p.conic;
        for y in p.bbox[1].max(y0)..=p.bbox[3].min(y1 - 1) {
            let dy = (y as f32 + 0.5) - p.my;
            // Columns where q ≤ qmax on this row (± 1 against rounding).
            let (ad, bd, cd) = (a as f64, (b * dy) as f64, (c * dy * dy) as f64);
            let disc = bd * bd - ad * (cd - p.qmax as f64);
            if disc < 0.0 {
                continue;
            }
            let root = disc.sqrt();
            let lo = ((p.mx as f64 + (-bd - root) / ad - 0.5).ceil() as i64 - 1)
                .max(p.bbox[0])
                .max(x0);
            let hi = ((p.mx as f64 + (-bd + root) / ad - 0.5).floor() as i64 + 1)
                .min(p.bbox[2])
                .min(x1 - 1);
            let row = (y - y0) as usize * tw;
            for x in lo..=hi {
                let dx = (x as f32 + 0.5) - p.mx;
                let q = a * dx * dx + 2.0 * b * dx * dy + c * dy * dy;
                if q <= p.qmax {
                    // The fast exponential covers the spec's cutoff; the test's far cutoff uses std.
                    let e = if p.qmax <= CUTOFF_Q {
                        exp_neg_half(q)
                    } else {
                        (-0.5 * q).exp()
                    };
                    let wt = p.amp * e;
                    let i = row + (x - x0) as usize;
                    den[i] += wt;
                    for ch in 0..nc {
                        num[i * 4 + ch] += wt * gs[k as usize].color[ch];
                    }
                    hits.push(Hit {
                        pix: i as u32,
                        w: wt,
                        dx,
                        dy,
                    });
                }
            }
        }
        ranges.push((start, hits.len()));
    }
    // Colours, loss, and dL/dC_p / D_p.
    let mut gp = vec![0f32; npx * 4];
    let mut loss = 0f64;
    for i in 0..npx {
        let (x, y) = (x0 + (i % tw) as i64, y0 + (i / tw) as i64);
        let d = den[i].max(MIN_WEIGHT_SUM);
        for c in 0..nc {
            let col = num[i * 4 + c] / d;
            num[i * 4 + c] = col;
            let e = col - target.data[((y * w + x) as usize) * nc + c];
            loss += (e * e) as f64;
            gp[i * 4 + c] = 2.0 * e / d;
        }
    }
    let mut out = Vec::with_capacity(list.len());
    for (&k, &(s0, s1)) in list.iter().zip(&ranges) {
        let p = &preps[k as usize];
        let g = &gs[k as usize];
        let [a, b, c] = p.conic;
        let mut acc = [0f64; 10];
        for hit in &hits[s0..s1] {
            let (i, wt, dx, dy) = (hit.pix as usize, hit.w, hit.dx, hit.dy);
            // dL/dw = Σ_c g_c (c_k − C_p) / D_p, with gp already divided by D_p.
            let mut dw = 0f32;
            for ch in 0..nc {
                dw += gp[i * 4 + ch] * (g.color[ch] - num[i * 4 + ch]);
                acc[6 + ch] += (gp[i * 4 + ch] * wt) as f64;
            }
            // w = amp·exp(−q/2): dw/dq = −w/2, dw/damp = w/amp.
            let dq = -0.5 * wt * dw;
            acc[0] += (dq * -(2.0 * a * dx + 2.0 * b * dy)) as f64;
            acc[1] += (dq * -(2.0 * b * dx + 2.0 * c * dy)) as f64;
            acc[2] += (dq * dx * dx) as f64;
            acc[3] += (dq * 2.0 * dx * dy) as f64;
            acc[4] += (dq * dy * dy) as f64;
            acc[5] += (dw * wt / p.amp) as f64;
        }
        out.push((k, acc));
    }
    (loss, out)
}

/// From gradients w.r.t. (mx, my, conic A B C, amp, channels) to the parameters
/// (x, y, log2 σ1, log2 σ2, θ, channels).
fn param_gradient(g: &Gaussian, gr: &Grad, nc: usize) -> [f64; 9] {
    let (s1, s2, th) = (g.scale[0] as f64, g.scale[1] as f64, g.rotation as f64);
    let (sin, cos) = th.sin_cos();
    let (v1, v2) = (s1 * s1, s2 * s2);
    let xx = v1 * cos * cos + v2 * sin * sin + PREFILTER_VARIANCE;
    let yy = v1 * sin * sin + v2 * cos * cos + PREFILTER_VARIANCE;
    let xy = (v1 - v2) * sin * cos;
    let det = xx * yy - xy * xy;
    // Conic Q = Σ'⁻¹ = [[yy, −xy], [−xy, xx]] / det. dL/dΣ' = −Q · G · Q with G the symmetric
    // gradient w.r.t. Q, where q uses 2B, so G = [[gA, gB/2], [gB/2, gC]].
    let (ga, gb, gc) = (gr[2], gr[3] * 0.5, gr[4]);
    let (qa, qb, qc) = (yy / det, -xy / det, xx / det);
    // M = Q G Q (symmetric).
    let t00 = qa * ga + qb * gb;
    let t01 = qa * gb + qb * gc;
    let t10 = qb * ga + qc * gb;
    let t11 = qb * gb + qc * gc;
    let m00 = t00 * qa + t01 * qb;
    let m01 = t00 * qb + t01 * qc;
    let m11 = t10 * qb + t11 * qc;
    let (mut dxx, mut dxy, mut dyy) = (-m00, -2.0 * m01, -m11);
    // amp = s1·s2 / sqrt(det Σ'): d amp = amp·(ds1/s1 + ds2/s2 − ½ d ln det Σ'),
    // d ln det Σ' = (yy dxx + xx dyy − 2 xy dxy) / det.
    let amp = s1 * s2 / det.sqrt();
    let gamp = gr[5] * amp;
    dxx += -0.5 * gamp * yy / det;
    dyy += -0.5 * gamp * xx / det;
    dxy += -0.5 * gamp * (-2.0 * xy) / det;
    // Σ entries from (v1, v2, θ).
    let dv1 = dxx * cos * cos + dyy * sin * sin + dxy * sin * cos;
    let dv2 = dxx * sin * sin + dyy * cos * cos - dxy * sin * cos;
    let dth = dxx * (v2 - v1) * 2.0 * sin * cos
        + dyy * (v1 - v2) * 2.0 * sin * cos
        + dxy * (v1 - v2) * (cos * cos - sin * sin);
    // v = σ², σ = 2^l: dv/dl = 2 ln2 · v; plus amp's direct dependence on σ: d amp/dl = amp ln2.
    let ln2 = std::f64::consts::LN_2;
    let dl1 = dv1 * 2.0 * ln2 * v1 + gamp * ln2;
    let dl2 = dv2 * 2.0 * ln2 * v2 + gamp * ln2;
    let mut out = [gr[0], gr[1], dl1, dl2, dth, 0.0, 0.0, 0.0, 0.0];
    out[5..5 + nc].copy_from_slice(&gr[6..6 + nc]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ChannelLayout;

    /// The loss with the cutoff at 100σ: smooth, so finite differences measure the gradient.
    /// (At 3σ a pixel reached by one Gaussian's tail alone jumps as the support moves.)
    const FAR: f32 = 1e4;

    fn loss_of(target: &Frame<f32>, gs: &[Gaussian]) -> f64 {
        let preps: Vec<Prep> = gs.iter().map(|g| prep_with_cutoff(g, FAR)).collect();
        let list: Vec<u32> = (0..gs.len() as u32).collect();
        tile_gradient(target, gs, &preps, &list, 0, 0, target.channels()).0
    }

    #[test]
    fn refinement_never_leaves_a_worse_picture() {
        // The picture is exactly what the starting Gaussians render: every step away from them
        // is worse, and step sizes far too large make Adam step away. What is returned is still
        // the best parameter set seen (the start), and its error is what is reported.
        let (w, h) = (32u32, 24u32);
        let start: Vec<Gaussian> = (0..12)
            .map(|k| Gaussian {
                x: 4.0 + (k % 4) as f32 * 8.0,
                y: 4.0 + (k / 4) as f32 * 8.0,
                scale: [4.0, 3.0],
                rotation: 0.3 * k as f32,
                color: [(k % 4) as f32 / 4.0, 0.1 * (k % 3) as f32, 0.2, 0.0],
            })
            .collect();
        let image = crate::SplatImage::new(w, h, ChannelLayout::Rgb, start.clone()).unwrap();
        let frame: crate::Frame<f32> = crate::render::render_cpu(
            &image,
            &crate::Viewport::full(w, h),
            &crate::Limits::default(),
        )
        .unwrap();
        let target = Frame {
            width: w,
            height: h,
            layout: ChannelLayout::Rgb,
            data: frame.data,
        };
        let wild = RefineOptions {
            iterations: 20,
            lr_position: 3.0,
            lr_scale: 0.5,
            lr_rotation: 1.0,
            lr_color: 0.3,
            ..Default::default()
        };
        let mut gs = start.clone();
        let out = refine(&target, &mut gs, &wild).unwrap();
        let (first, last) = (out.first, out.last);
        assert!(first < 1e-9, "the start renders the picture: {first}");
        assert!(last <= first, "{last} > {first}");
        assert_eq!(gs, start, "the best parameters seen are the start");
    }

    #[test]
    fn rounds_fit_colours_only_when_asked() {
        // A smooth picture, Gaussians with wrong colours: rounds of moves and steps reduce the
        // error with or without the least-squares fit in each round, and only a refinement
        // that asks for the fit spends time in it.
        let target = gradient(48, 32);
        let start = grey_grid(6, 4, [4.0, 4.0], 0.0);
        for refit in [true, false] {
            let opts = RefineOptions {
                iterations: 30,
                rounds: 3,
                reallocate: 0.2,
                refit_colors: refit,
                ..Default::default()
            };
            let mut gs = start.clone();
            let out = refine(&target, &mut gs, &opts).unwrap();
            assert!(
                out.last <= out.first,
                "{refit}: {} > {}",
                out.last,
                out.first
            );
            assert_eq!(out.seconds.colour_fits > 0.0, refit, "{:?}", out.seconds);
            assert!(out.seconds.moves > 0.0 && out.seconds.descent > 0.0);
            // A count change (fewer or more Gaussians), in rounds or in one step before the
            // descent: the fit after it follows the same setting.
            for (budget, reallocate) in [(16, 0.2), (36, 0.2), (16, 0.0), (36, 0.0)] {
                let opts = RefineOptions { reallocate, ..opts };
                let mut gs = start.clone();
                let out = refine_to(&target, &mut gs, &opts, budget).unwrap();
                assert_ne!(gs.len(), start.len(), "{refit} {budget} {reallocate}");
                assert!(out.last <= out.first, "{refit} {budget} {reallocate}");
                assert_eq!(
                    out.seconds.colour_fits > 0.0,
                    refit,
                    "{refit} {budget} {reallocate}: {:?}",
                    out.seconds
                );
                assert!(out.seconds.moves > 0.0 && out.seconds.descent > 0.0);
            }
        }
    }

    #[test]
    fn gradients_match_finite_differences() {
        let (w, h) = (24u32, 20u32);
        let data: Vec<f32> = (0..w * h * 3)
            .map(|i| (i * 37 % 101) as f32 / 100.0)
            .collect();
        let target = Frame {
            width: w,
            height: h,
            layout: ChannelLayout::Rgb,
            data,
        };
        let gs = vec![
            Gaussian {
                x: 8.3,
                y: 9.1,
                scale: [3.0, 1.7],
                rotation: 0.6,
                color: [0.9, 0.2, 0.4, 0.0],
            },
            Gaussian {
                x: 14.2,
                y: 10.4,
                scale: [2.2, 4.1],
                rotation: -0.3,
                color: [0.1, 0.7, 0.5, 0.0],
            },
            Gaussian {
                x: 11.0,
                y: 6.0,
                scale: [5.0, 2.5],
                rotation: 1.9,
                color: [0.4, 0.4, 0.9, 0.0],
            },
        ];
        let preps: Vec<Prep> = gs.iter().map(|g| prep_with_cutoff(g, FAR)).collect();
        let list: Vec<u32> = (0..gs.len() as u32).collect();
        let (_, part) = tile_gradient(&target, &gs, &preps, &list, 0, 0, 3);
        for k in 0..gs.len() {
            let analytic = param_gradient(&gs[k], &part[k].1, 3);
            for (i, &an) in analytic.iter().enumerate().take(8) {
                let h = 4e-3f32;
                let bump = |d: f32| {
                    let mut g = gs.clone();
                    let p = &mut g[k];
                    match i {
                        0 => p.x += d,
                        1 => p.y += d,
                        2 => p.scale[0] = (p.scale[0].log2() + d).exp2(),
                        3 => p.scale[1] = (p.scale[1].log2() + d).exp2(),
                        4 => p.rotation += d,
                        c => p.color[c - 5] += d,
                    }
                    loss_of(&target, &g)
                };
                let numeric = (bump(h) - bump(-h)) / (2.0 * h as f64);
                let tol = 1e-2 * numeric.abs().max(an.abs()) + 1e-3;
                assert!(
                    (numeric - an).abs() <= tol,
                    "Gaussian {k} parameter {i}: analytic {} numeric {numeric}",
                    an
                );
            }
        }
    }
}

/// An RGB gradient picture: red across, green down, blue their mean.
#[cfg(test)]
fn gradient(w: u32, h: u32) -> Frame<f32> {
    let data: Vec<f32> = (0..w * h)
        .flat_map(|i| {
            let (x, y) = ((i % w) as f32 / w as f32, (i / w) as f32 / h as f32);
            [x, y, 0.5 * (x + y)]
        })
        .collect();
    Frame {
        width: w,
        height: h,
        layout: crate::ChannelLayout::Rgb,
        data,
    }
}

/// Grey Gaussians on a grid of `cols` × `rows` cells of 8 pixels, one at each cell's centre.
#[cfg(test)]
fn grey_grid(cols: usize, rows: usize, scale: [f32; 2], rotation: f32) -> Vec<Gaussian> {
    (0..cols * rows)
        .map(|k| Gaussian {
            x: 4.0 + (k % cols) as f32 * 8.0,
            y: 4.0 + (k / cols) as f32 * 8.0,
            scale,
            rotation,
            color: [0.5, 0.5, 0.5, 0.0],
        })
        .collect()
}

#[cfg(test)]
mod grid_tests {
    use super::*;
    use crate::format::{WriteOptions, dequantize, plan_header, quantize};
    use crate::{ChannelLayout, SplatImage};

    #[test]
    fn quantized_steps_scale_by_quantized_lr() {
        // Grey Gaussians on a gradient: quantization-aware steps at a zero step-size factor
        // leave the start on the grid; at a positive one they lower the error, by less in the
        // first steps when the factor is smaller.
        let (w, h) = (40u32, 24u32);
        let target = gradient(w, h);
        let start = grey_grid(5, 3, [4.0, 3.5], 0.2);
        let image = SplatImage::new(w, h, ChannelLayout::Rgb, start.clone()).unwrap();
        let grid = QuantGrid::of(&plan_header(&image, &WriteOptions::default()).unwrap());
        let run = |factor: f32| {
            let opts = RefineOptions {
                quantized_lr: factor,
                ..Default::default()
            };
            let mut gs = start.clone();
            let out = refine_quantized(&target, &mut gs, &opts, &grid, 3).unwrap();
            (gs, out)
        };
        let (still, out) = run(0.0);
        assert_eq!(out.last, out.first, "no step moves");
        let snapped: Vec<Gaussian> = start.iter().map(|g| grid.snap(g)).collect();
        assert_eq!(still, snapped);
        let (_, small) = run(0.25);
        let (_, full) = run(1.0);
        assert!(small.last < small.first, "{small:?}");
        assert!(full.last < small.last, "{full:?} {small:?}");
        let note = full.psnr_note(true).unwrap();
        assert!(note.contains(" dB to "), "{note}");
    }

    #[test]
    fn snap_is_what_the_file_stores() {
        // The grid's snap gives the geometry format::quantize → dequantize gives, for Gaussians
        // anywhere (outside the picture too) at any rotation.
        let mut s = 12345u64;
        let mut r = || {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1);
            (s >> 11) as f64 / (1u64 << 53) as f64
        };
        let gs: Vec<Gaussian> = (0..500)
            .map(|_| Gaussian {
                x: (r() * 110.0 - 5.0) as f32,
                y: (r() * 70.0 - 5.0) as f32,
                scale: [(0.3 + r() * 20.0) as f32, (0.3 + r() * 5.0) as f32],
                rotation: (r() * 20.0 - 10.0) as f32,
                color: [0.5, 0.5, 0.5, 0.0],
            })
            .collect();
        let image = SplatImage::new(100, 61, ChannelLayout::Rgb, gs.clone()).unwrap();
        let header = plan_header(&image, &WriteOptions::default()).unwrap();
        let grid = QuantGrid::of(&header);
        for g in &gs {
            let a = grid.snap(g);
            let b = dequantize(&header, &quantize(&header, g));
            // The file may store the pair (σ₂, σ₁) at θ + π/2 instead: the same Gaussian.
            assert_eq!((a.x, a.y), (b.x, b.y), "{g:?}");
            let (ca, cb) = (a.covariance(), b.covariance());
            for (u, v) in [(ca.0, cb.0), (ca.1, cb.1), (ca.2, cb.2)] {
                assert!(
                    (u - v).abs() <= 1e-5 * (ca.0 + ca.2),
                    "{g:?}: {ca:?} {cb:?}"
                );
            }
            assert_eq!(grid.snap(&a), a, "snapping is idempotent");
        }
    }
}
