//! Refinement on the device: the Adam descent of `src/encode/optim/refine.rs` with the renderer's
//! projection and tile binning, the forward blend, loss, backward pass and update of
//! `kernels/refine.cu`, and every step's state (parameters, moments, best parameters, the best
//! loss) on the device. The host enqueues the steps and waits once at the end. The same refiner
//! fits colours by least squares ([`GpuRefiner::fit_colors`]) and measures the moves between
//! rounds ([`GpuRefiner::removal_costs`], `GpuRefiner::error_map`).
//!
//! Tile lists are sized from the start's entry count with room to grow; a step whose lists do
//! not fit does nothing and makes every later step do nothing (a sticky flag on the device), so
//! the host, reading the state back at the end, grows the lists and enqueues again from that
//! step: the result is exactly that of lists that always fit.

use std::sync::Arc;

use cudarc::driver::{CudaSlice, CudaStream};

use super::AdamSettings;
use super::launch::{
    self, GRAD_N, GaussianIn, PARAM_N, RefineParams, RefineState, TILE, UpdateParams,
};
use super::pipeline::{Plan, Workspace};
use super::runtime::{Runtime, driver_err};
use crate::core::splat::Gaussian;
use crate::format::QuantGrid;
use crate::{Error, Limits, Result, Viewport};

/// Steps enqueued between two looks at the device's state: a long descent whose lists
/// overflow early repeats at most this many steps' worth of launches.
const STEPS_PER_CHECK: usize = 256;

/// One picture uploaded for refinement; descents of any Gaussians against it reuse the
/// buffers.
pub struct GpuRefiner {
    rt: Arc<Runtime>,
    stream: Arc<CudaStream>,
    ws: Workspace,
    width: u32,
    height: u32,
    channels: usize,
    target: CudaSlice<f32>,
    pix_color: CudaSlice<[f32; 4]>,
    pix_grad: CudaSlice<[f32; 4]>,
    tile_err: CudaSlice<f64>,
    state: CudaSlice<RefineState>,
    bufs: Option<GaussianBufs>,
    /// A zero picture, for the colour fit's products (allocated on first use).
    zero: Option<CudaSlice<f32>>,
    /// The removal costs' per-(tile, Gaussian) slots and per-Gaussian sums (first use).
    cost_slots: Option<CudaSlice<f64>>,
    costs: Option<CudaSlice<f64>>,
}

/// Checks a refinement picture's shape; returns its pixels and 16 × 16 tiles.
fn check_picture(
    width: u32,
    height: u32,
    channels: usize,
    target: &[f32],
) -> Result<(usize, usize)> {
    let pixels = width as usize * height as usize;
    if width == 0 || height == 0 || !(1..=4).contains(&channels) {
        return Err(Error::invalid(
            "refinement picture",
            format!("{width}×{height} with {channels} channels"),
        ));
    }
    if target.len() != pixels * channels {
        return Err(Error::invalid(
            "refinement picture",
            format!("{} values for {width}×{height}×{channels}", target.len()),
        ));
    }
    let tiles = width.div_ceil(TILE) as usize * height.div_ceil(TILE) as usize;
    Ok((pixels, tiles))
}

/// Per-Gaussian buffers, reallocated when a descent has more Gaussians or list entries.
struct GaussianBufs {
    n: usize,
    latent: CudaSlice<GaussianIn>,
    params: CudaSlice<GaussianIn>,
    best: CudaSlice<GaussianIn>,
    m: CudaSlice<f32>,
    v: CudaSlice<f32>,
    param_grad: CudaSlice<f32>,
    history: CudaSlice<f64>,
    grad_slots: CudaSlice<f32>,
}

impl std::fmt::Debug for GpuRefiner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GpuRefiner")
            .field("device", &self.rt.name)
            .field("width", &self.width)
            .field("height", &self.height)
            .field("channels", &self.channels)
            .finish()
    }
}

impl GpuRefiner {
    pub(crate) fn new(
        rt: Arc<Runtime>,
        width: u32,
        height: u32,
        channels: usize,
        target: &[f32],
    ) -> Result<GpuRefiner> {
        let (pixels, tiles) = check_picture(width, height, channels, target)?;
        let stream = rt.new_stream()?;
        let alloc_err = driver_err("GPU memory allocation");
        let target_dev = stream
            .clone_htod(target)
            .map_err(driver_err("uploading the picture"))?;
        let pix_color = stream.alloc_zeros::<[f32; 4]>(pixels).map_err(alloc_err)?;
        let pix_grad = stream
            .alloc_zeros::<[f32; 4]>(pixels)
            .map_err(driver_err("GPU memory allocation"))?;
        let tile_err = stream
            .alloc_zeros::<f64>(tiles)
            .map_err(driver_err("GPU memory allocation"))?;
        let state = stream
            .alloc_zeros::<RefineState>(1)
            .map_err(driver_err("GPU memory allocation"))?;
        let ws = Workspace::new(&rt, stream.clone())?;
        Ok(GpuRefiner {
            rt,
            stream,
            ws,
            width,
            height,
            channels,
            target: target_dev,
            pix_color,
            pix_grad,
            tile_err,
            state,
            bufs: None,
            zero: None,
            cost_slots: None,
            costs: None,
        })
    }

    unstable_pub! {
        /// Makes `target` the picture that later descents and colour fits work against, as
        /// [`new`](Self::new) would, keeping the stream, the tile lists and the per-Gaussian
        /// buffers, and the picture's buffers where they are large enough (and not more than four
        /// times so): one refiner serves every stage of an encode and the pictures after it.
        fn set_target(
            &mut self,
            width: u32,
            height: u32,
            channels: usize,
            target: &[f32],
        ) -> Result<()> {
            let (pixels, tiles) = check_picture(width, height, channels, target)?;
            let fits = |have: usize, need: usize| have >= need && have / 4 <= need;
            let s = self.stream.clone();
            let alloc = || driver_err("GPU memory allocation");
            if fits(self.target.len(), target.len()) {
                s.memcpy_htod(target, &mut self.target.slice_mut(..target.len()))
                    .map_err(driver_err("uploading the picture"))?;
            } else {
                self.target = s
                    .clone_htod(target)
                    .map_err(driver_err("uploading the picture"))?;
            }
            if !fits(self.pix_color.len(), pixels) {
                self.pix_color = s.alloc_zeros(pixels).map_err(alloc())?;
                self.pix_grad = s.alloc_zeros(pixels).map_err(alloc())?;
            }
            if !fits(self.tile_err.len(), tiles) {
                self.tile_err = s.alloc_zeros(tiles).map_err(alloc())?;
            }
            if self
                .zero
                .as_ref()
                .is_some_and(|z| !fits(z.len(), target.len()))
            {
                self.zero = None;
            }
            (self.width, self.height, self.channels) = (width, height, channels);
            Ok(())
        }
    }

    /// Width of the picture.
    #[cfg(feature = "unstable")]
    pub fn width(&self) -> u32 {
        self.width
    }

    /// Height of the picture.
    #[cfg(feature = "unstable")]
    pub fn height(&self) -> u32 {
        self.height
    }

    fn plan(&self, n: usize) -> Result<Plan> {
        Plan::new(
            n,
            (self.width, self.height),
            &Viewport::full(self.width, self.height),
            &Limits::unlimited(),
        )
    }

    fn params(&self, plan: &Plan) -> RefineParams {
        RefineParams {
            width: self.width as i32,
            height: self.height as i32,
            tiles_x: plan.tiles_x as i32,
            tiles_y: plan.tiles_y as i32,
            n: plan.n,
            capacity: self.ws.capacity() as u32,
            channels: self.channels as i32,
            pad: 0,
        }
    }

    /// Uploads `gaussians` as the parameters, zeroes the moments and the state, and makes sure
    /// the per-Gaussian buffers and `steps + 1` history entries exist.
    fn start(
        &mut self,
        gaussians: &[Gaussian],
        steps: usize,
        grid: Option<&QuantGrid>,
    ) -> Result<()> {
        let n = gaussians.len();
        let s = self.stream.clone();
        let alloc = driver_err("GPU memory allocation");
        let latent: Vec<GaussianIn> = gaussians.iter().map(GaussianIn::from).collect();
        let host: Vec<GaussianIn> = match grid {
            Some(q) => gaussians
                .iter()
                .map(|g| GaussianIn::from(&q.snap(g)))
                .collect(),
            None => latent.clone(),
        };
        let too_small = self
            .bufs
            .as_ref()
            .is_none_or(|b| b.n < n || b.history.len() < steps + 1);
        if too_small {
            self.bufs = None;
            let n1 = n.max(1);
            self.bufs = Some(GaussianBufs {
                n: n1,
                latent: s.alloc_zeros(n1).map_err(alloc)?,
                params: s
                    .alloc_zeros(n1)
                    .map_err(driver_err("GPU memory allocation"))?,
                best: s
                    .alloc_zeros(n1)
                    .map_err(driver_err("GPU memory allocation"))?,
                m: s.alloc_zeros(n1 * PARAM_N)
                    .map_err(driver_err("GPU memory allocation"))?,
                v: s.alloc_zeros(n1 * PARAM_N)
                    .map_err(driver_err("GPU memory allocation"))?,
                param_grad: s
                    .alloc_zeros(n1 * PARAM_N)
                    .map_err(driver_err("GPU memory allocation"))?,
                history: s
                    .alloc_zeros(steps + 1)
                    .map_err(driver_err("GPU memory allocation"))?,
                grad_slots: s
                    .alloc_zeros(GRAD_N)
                    .map_err(driver_err("GPU memory allocation"))?,
            });
        }
        let b = self.bufs.as_mut().expect("allocated above");
        let up = driver_err("uploading the Gaussians");
        if n > 0 {
            s.memcpy_htod(&latent, &mut b.latent.slice_mut(..n))
                .map_err(up)?;
            s.memcpy_htod(&host, &mut b.params.slice_mut(..n))
                .map_err(driver_err("uploading the Gaussians"))?;
            s.memcpy_htod(&host, &mut b.best.slice_mut(..n))
                .map_err(driver_err("uploading the Gaussians"))?;
        }
        let z = driver_err("memset");
        s.memset_zeros(&mut b.m).map_err(z)?;
        s.memset_zeros(&mut b.v).map_err(driver_err("memset"))?;
        s.memset_zeros(&mut self.state)
            .map_err(driver_err("memset"))?;
        Ok(())
    }

    /// Sizes the tile lists (and gradient slots) for `entries` list entries, with room to grow.
    fn reserve(&mut self, plan: &Plan, entries: u64) -> Result<()> {
        let cap = (entries + entries / 2)
            .max(plan.initial_capacity())
            .min(u32::MAX as u64);
        if cap > self.ws.capacity() {
            self.ws.set_capacity(cap);
        }
        let b = self.bufs.as_mut().expect("started");
        let slots = self.ws.capacity() as usize * GRAD_N;
        if b.grad_slots.len() < slots {
            b.grad_slots = self
                .stream
                .alloc_zeros(slots)
                .map_err(driver_err("GPU memory allocation"))?;
        }
        Ok(())
    }

    /// Enqueues evaluation `step` (projection, binning, forward, loss, backward) and the update
    /// after it (only keeping the best when `update` is false).
    fn enqueue_step(
        &mut self,
        plan: &Plan,
        step: usize,
        iterations: usize,
        update: bool,
        adam: &AdamSettings,
        grid: Option<&QuantGrid>,
    ) -> Result<()> {
        let rt = self.rt.clone();
        let s = self.stream.clone();
        let p = self.params(plan);
        let values = (self.width as f64 * self.height as f64 * self.channels as f64) as f32;
        let b = self.bufs.as_mut().expect("started");
        let cur = self
            .ws
            .enqueue_bins(&rt, &b.params, plan, None, &mut None)?;
        let bins = self
            .ws
            .bins(cur)
            .ok_or_else(|| Error::Cuda("internal error: no tile lists".into()))?;
        launch::refine_forward(
            &rt,
            &s,
            &bins,
            &p,
            &self.target,
            &mut self.pix_color,
            &mut self.pix_grad,
            &mut self.tile_err,
            &mut self.state,
            step as u32,
        )?;
        launch::refine_loss(
            &rt,
            &s,
            &self.tile_err,
            &p,
            values,
            step as u32,
            &mut self.state,
            &mut b.history,
        )?;
        if update {
            launch::refine_backward(
                &rt,
                &s,
                &bins,
                &p,
                &self.pix_color,
                &self.pix_grad,
                &mut b.grad_slots,
                &self.state,
            )?;
        }
        // Adam's bias corrections for step t = step + 1, as refine.rs computes them.
        let t = (step + 1) as i32;
        let (b1, b2) = (0.9f32, 0.999f32);
        let f = super::lr_factor(adam.lr_final, step, iterations);
        let u = UpdateParams {
            lr: [
                adam.lr_position * f,
                adam.lr_position * f,
                adam.lr_scale * f,
                adam.lr_scale * f,
                adam.lr_rotation * f,
                adam.lr_color * f,
                adam.lr_color * f,
                adam.lr_color * f,
                adam.lr_color * f,
            ],
            log2_lo: adam.scale_bounds.0.log2(),
            log2_hi: adam.scale_bounds.1.log2(),
            c1: 1.0 - b1.powi(t),
            c2: 1.0 - b2.powi(t),
            values,
            update: update as i32,
            step: step as u32,
            grid: match grid {
                Some(q) => launch::QuantGrid {
                    on: 1,
                    pos_step: q.pos_step,
                    extent_x: q.extent.0,
                    extent_y: q.extent.1,
                    log2_min: q.log2_range.0,
                    log2_max: q.log2_range.1,
                    scale_levels: q.scale_levels,
                    rot_steps: q.rot_steps,
                },
                None => launch::QuantGrid::default(),
            },
        };
        launch::refine_update(
            &rt,
            &s,
            &mut b.latent,
            &mut b.params,
            &mut b.best,
            (&mut b.m, &mut b.v),
            &bins,
            &b.grad_slots,
            &mut b.param_grad,
            &p,
            &u,
            &self.state,
        )
    }

    fn read_state(&self) -> Result<RefineState> {
        let v = self
            .stream
            .clone_dtoh(&self.state)
            .map_err(driver_err("GPU refinement"))?;
        Ok(v[0])
    }

    /// Runs steps `from ..= last` (evaluation `last` without an update when it is the final
    /// one), growing the lists and repeating from the first step that did not fit.
    fn run_steps(
        &mut self,
        plan: &Plan,
        from: usize,
        last: usize,
        final_eval: bool,
        adam: &AdamSettings,
        grid: Option<&QuantGrid>,
    ) -> Result<()> {
        let mut step = from;
        while step <= last {
            let chunk_end = (step + STEPS_PER_CHECK - 1).min(last);
            for k in step..=chunk_end {
                let update = !(final_eval && k == last);
                self.enqueue_step(plan, k, last, update, adam, grid)?;
            }
            let st = self.read_state()?;
            if st.overflow != 0 {
                // Steps from overflow_step on did nothing: grow and go on from there.
                let needed = st.max_pairs as u64;
                if needed as f64 * 1.5 > u32::MAX as f64 {
                    return Err(Error::LimitsExceeded {
                        what: "GPU tile-list entries",
                        value: needed,
                        limit: u32::MAX as u64,
                    });
                }
                self.reserve(plan, needed * 2)?;
                let mut cleared = st;
                cleared.overflow = 0;
                self.stream
                    .memcpy_htod(&[cleared], &mut self.state)
                    .map_err(driver_err("GPU refinement"))?;
                step = st.overflow_step as usize;
            } else {
                step = chunk_end + 1;
            }
        }
        Ok(())
    }

    /// Uploads `gaussians` and runs evaluations `0 ..= last` (the last without an update when
    /// `final_eval`); returns the device's state after them.
    fn run(
        &mut self,
        gaussians: &[Gaussian],
        last: usize,
        final_eval: bool,
        adam: &AdamSettings,
        grid: Option<&QuantGrid>,
    ) -> Result<RefineState> {
        let plan = self.plan(gaussians.len())?;
        self.start(gaussians, last.max(1), grid)?;
        self.size_lists(&plan)?;
        self.run_steps(&plan, 0, last, final_eval, adam, grid)?;
        self.read_state()
    }

    /// Sizes the lists from a first binning of the start.
    fn size_lists(&mut self, plan: &Plan) -> Result<()> {
        self.reserve(plan, 0)?;
        let rt = self.rt.clone();
        let b = self.bufs.as_ref().expect("started");
        self.ws
            .enqueue_bins(&rt, &b.params, plan, None, &mut None)?;
        let stats = self
            .stream
            .clone_dtoh(self.ws.bins(0).map(|b| b.stats).expect("binned"))
            .map_err(driver_err("GPU refinement"))?;
        let pairs = stats[launch::STATS_PAIRS_WORD] as u64;
        self.reserve(plan, pairs)
    }

    /// `iterations` Adam steps from `gaussians`, leaving in it the best parameters of all the
    /// evaluations (the start included); returns the mean squared error per channel value of
    /// the start and of what it leaves — as `refine.rs` `descend` does on the CPU. With a
    /// `grid`, the steps are quantization-aware ([`refine_quantized`]) and what is left is
    /// snapped to it.
    ///
    /// [`refine_quantized`]: crate::encode::optim::refine::refine_quantized
    pub fn descend(
        &mut self,
        gaussians: &mut [Gaussian],
        adam: &AdamSettings,
        iterations: usize,
        grid: Option<&QuantGrid>,
    ) -> Result<(f64, f64)> {
        if gaussians.is_empty() {
            return Ok((f64::NAN, f64::NAN));
        }
        let st = self.run(gaussians, iterations, true, adam, grid)?;
        let b = self.bufs.as_ref().expect("started");
        let history = self
            .stream
            .clone_dtoh(&b.history)
            .map_err(driver_err("GPU refinement"))?;
        let best = self
            .stream
            .clone_dtoh(&b.best)
            .map_err(driver_err("GPU refinement"))?;
        for (g, d) in gaussians.iter_mut().zip(&best) {
            g.x = d.x;
            g.y = d.y;
            g.scale = [d.scale1, d.scale2];
            g.rotation = d.rotation;
            g.color = d.color;
        }
        Ok((history[0], st.best))
    }

    /// The loss (mean squared error per channel value) of `gaussians` and the gradient of the
    /// summed squared error with respect to each Gaussian's (x, y, log2 σ1, log2 σ2, θ,
    /// channels 0..3), as `refine.rs` computes them on the CPU (for tests and checks).
    #[cfg(feature = "unstable")]
    pub fn gradients(&mut self, gaussians: &[Gaussian]) -> Result<(f64, Vec<[f64; 9]>)> {
        if gaussians.is_empty() {
            return Ok((f64::NAN, Vec::new()));
        }
        // One step with a zero step size: the update computes the gradient and moves nothing.
        let adam = AdamSettings {
            lr_position: 0.0,
            lr_scale: 0.0,
            lr_rotation: 0.0,
            lr_color: 0.0,
            lr_final: 1.0,
            scale_bounds: (f32::MIN_POSITIVE, f32::MAX),
        };
        let st = self.run(gaussians, 0, false, &adam, None)?;
        let b = self.bufs.as_ref().expect("started");
        let raw = self
            .stream
            .clone_dtoh(&b.param_grad)
            .map_err(driver_err("GPU refinement"))?;
        let grads = raw
            .chunks_exact(PARAM_N)
            .take(gaussians.len())
            .map(|c| {
                let mut g = [0f64; 9];
                for (d, s) in g.iter_mut().zip(c) {
                    *d = *s as f64;
                }
                g
            })
            .collect();
        Ok((st.last, grads))
    }

    /// A render of the current parameters and its backward pass against the picture, or
    /// against a zero picture (`zero`): each (tile, Gaussian) slot then holds its part of
    /// 2 Aᵀ(A c − t), or of 2 AᵀA c (the colour fit's products). Returns which tile lists hold
    /// the result ([`Workspace::bins`]).
    fn enqueue_colour_gradient(&mut self, plan: &Plan, zero: bool) -> Result<usize> {
        let rt = self.rt.clone();
        let s = self.stream.clone();
        let p = self.params(plan);
        if zero && self.zero.is_none() {
            self.zero = Some(
                s.alloc_zeros::<f32>(self.target.len())
                    .map_err(driver_err("GPU memory allocation"))?,
            );
        }
        let target = match (zero, &self.zero) {
            (true, Some(z)) => z,
            _ => &self.target,
        };
        let b = self.bufs.as_mut().expect("started");
        let cur = self
            .ws
            .enqueue_bins(&rt, &b.params, plan, None, &mut None)?;
        let bins = self
            .ws
            .bins(cur)
            .ok_or_else(|| Error::Cuda("internal error: no tile lists".into()))?;
        launch::refine_forward(
            &rt,
            &s,
            &bins,
            &p,
            target,
            &mut self.pix_color,
            &mut self.pix_grad,
            &mut self.tile_err,
            &mut self.state,
            0,
        )?;
        launch::refine_backward(
            &rt,
            &s,
            &bins,
            &p,
            &self.pix_color,
            &self.pix_grad,
            &mut b.grad_slots,
            &self.state,
        )?;
        Ok(cur)
    }

    /// Fits the colours of `gaussians` (the geometry fixed) to the picture by least squares:
    /// `iterations` conjugate-gradient steps on the normal equations of the whole picture,
    /// started from their colours, each channel on its own until its residual has fallen by
    /// 1e-6, the result clamped into `clamp` —
    /// the problem [`fit_colors`](crate::encode::optim::fit::fit_colors) solves on the CPU in
    /// spatial chunks. Everything stays on the device until the colours are read back.
    pub fn fit_colors(
        &mut self,
        gaussians: &mut [Gaussian],
        iterations: usize,
        clamp: (f32, f32),
    ) -> Result<()> {
        if gaussians.is_empty() {
            return Ok(());
        }
        let n = gaussians.len();
        let plan = self.plan(n)?;
        self.start(gaussians, 1, None)?;
        self.size_lists(&plan)?;
        let s = self.stream.clone();
        let rt = self.rt.clone();
        let alloc = |len: usize| {
            s.alloc_zeros::<[f64; 4]>(len)
                .map_err(driver_err("GPU memory allocation"))
        };
        let (mut x, mut x0, mut r) = (alloc(n)?, alloc(n)?, alloc(n)?);
        let (mut pv, mut q) = (alloc(n)?, alloc(n)?);
        let mut partial = alloc(launch::fit_blocks(n as u64) as usize)?;
        let mut scalars = alloc(launch::FIT_SCALARS)?;
        let mut v = launch::FitVectors {
            x: &mut x,
            start: &mut x0,
            r: &mut r,
            p: &mut pv,
            q: &mut q,
            partial: &mut partial,
            scalars: &mut scalars,
        };
        let prm = self.params(&plan);
        let n32 = n as u32;
        let cur = self.enqueue_colour_gradient(&plan, false)?;
        {
            let b = self.bufs.as_mut().expect("started");
            let bins = self
                .ws
                .bins(cur)
                .ok_or_else(|| Error::Cuda("internal error: no tile lists".into()))?;
            launch::fit_start(
                &rt,
                &s,
                &mut b.params,
                &bins,
                &b.grad_slots,
                &mut v,
                &prm,
                &self.state,
            )?;
        }
        launch::fit_reduce(&rt, &s, &mut v, n32, 0)?;
        launch::fit_reduce(&rt, &s, &mut v, n32, launch::FIT_RR0)?;
        // r·r of the current residual is in slot `rr`, of the next in `1 - rr`.
        let mut rr = 0u32;
        for _ in 0..iterations {
            let cur = self.enqueue_colour_gradient(&plan, true)?;
            {
                let b = self.bufs.as_ref().expect("started");
                let bins = self
                    .ws
                    .bins(cur)
                    .ok_or_else(|| Error::Cuda("internal error: no tile lists".into()))?;
                launch::fit_product(&rt, &s, &bins, &b.grad_slots, &mut v, &prm, &self.state)?;
            }
            launch::fit_reduce(&rt, &s, &mut v, n32, launch::FIT_PQ)?;
            launch::fit_step(&rt, &s, &mut v, n32, rr)?;
            launch::fit_reduce(&rt, &s, &mut v, n32, 1 - rr)?;
            let b = self.bufs.as_mut().expect("started");
            launch::fit_direction(&rt, &s, &mut b.params, &mut v, n32, 1 - rr, rr)?;
            rr = 1 - rr;
        }
        let b = self.bufs.as_mut().expect("started");
        launch::fit_finish(
            &rt,
            &s,
            &mut b.params,
            &x,
            &x0,
            n32,
            self.channels as i32,
            clamp,
        )?;
        let st = self.read_state()?;
        if st.overflow != 0 {
            return Err(Error::Cuda(
                "internal error: the colour fit's tile lists overflowed".into(),
            ));
        }
        let b = self.bufs.as_ref().expect("started");
        let fitted = self
            .stream
            .clone_dtoh(&b.params)
            .map_err(driver_err("GPU colour fit"))?;
        for (g, d) in gaussians.iter_mut().zip(&fitted) {
            g.color[..self.channels].copy_from_slice(&d.color[..self.channels]);
        }
        Ok(())
    }

    /// Bins `gaussians` and enqueues their blend (`moves_blend`): the pixel buffers then hold
    /// each pixel's numerator (`pix_color`) and (weight sum, squared error, 0, 0)
    /// (`pix_grad`). Returns the plan and which tile lists hold the binning.
    fn enqueue_moves_blend(&mut self, gaussians: &[Gaussian]) -> Result<(Plan, usize)> {
        let plan = self.plan(gaussians.len())?;
        self.start(gaussians, 1, None)?;
        self.size_lists(&plan)?;
        let rt = self.rt.clone();
        let s = self.stream.clone();
        let p = self.params(&plan);
        let b = self.bufs.as_ref().expect("started");
        let cur = self
            .ws
            .enqueue_bins(&rt, &b.params, &plan, None, &mut None)?;
        let bins = self
            .ws
            .bins(cur)
            .ok_or_else(|| Error::Cuda("internal error: no tile lists".into()))?;
        launch::moves_blend(
            &rt,
            &s,
            &bins,
            &p,
            &self.target,
            &mut self.pix_color,
            &mut self.pix_grad,
            &mut self.state,
        )?;
        Ok((plan, cur))
    }

    /// Fails when the lists of the latest pass overflowed (they are sized from a binning of the
    /// same Gaussians, so they should not).
    fn check_lists(&self, what: &str) -> Result<()> {
        if self.read_state()?.overflow != 0 {
            return Err(Error::Cuda(
                format!("internal error: the {what}'s tile lists overflowed").into(),
            ));
        }
        Ok(())
    }

    /// The cost of removing each of `gaussians` on its own: the sum over its footprint of
    /// ‖C′_p − I_p‖² − ‖C_p − I_p‖², where C_p is the blend of all of them and C′_p the blend
    /// without it (0 where nothing else is left), in squared channel values — what
    /// [`adapt`](crate::encode::optim::realloc::adapt) computes on the CPU to choose which
    /// Gaussians to remove. Each pixel's term is summed per tile and the tiles in order, in
    /// double: the result is the same every time.
    pub fn removal_costs(&mut self, gaussians: &[Gaussian]) -> Result<Vec<f64>> {
        let n = gaussians.len();
        if n == 0 {
            return Ok(Vec::new());
        }
        let (plan, cur) = self.enqueue_moves_blend(gaussians)?;
        let rt = self.rt.clone();
        let s = self.stream.clone();
        let p = self.params(&plan);
        let alloc = driver_err("GPU memory allocation");
        let cap = self.ws.capacity() as usize;
        if self.cost_slots.as_ref().is_none_or(|c| c.len() < cap) {
            self.cost_slots = None;
            self.cost_slots = Some(s.alloc_zeros(cap).map_err(alloc)?);
        }
        if self.costs.as_ref().is_none_or(|c| c.len() < n) {
            self.costs = None;
            self.costs = Some(
                s.alloc_zeros(n)
                    .map_err(driver_err("GPU memory allocation"))?,
            );
        }
        let (slots, costs) = match (&mut self.cost_slots, &mut self.costs) {
            (Some(a), Some(b)) => (a, b),
            _ => unreachable!("allocated above"),
        };
        let bins = self
            .ws
            .bins(cur)
            .ok_or_else(|| Error::Cuda("internal error: no tile lists".into()))?;
        launch::moves_cost(
            &rt,
            &s,
            &bins,
            &p,
            &self.target,
            &self.pix_color,
            &self.pix_grad,
            slots,
            &self.state,
        )?;
        launch::moves_gather(&rt, &s, &bins, &p, slots, costs, &self.state)?;
        let out = s
            .clone_dtoh(&costs.slice(..n))
            .map_err(driver_err("GPU removal costs"))?;
        self.check_lists("removal costs")?;
        Ok(out)
    }

    /// The render of `gaussians` (those whose `keep` entry is true, in their order; all
    /// without `keep`) at 1× against the picture: per pixel the blend's numerator (4 channels,
    /// those past the picture's 0) and (weight sum, squared error summed over the channels).
    pub(crate) fn blend_maps(
        &mut self,
        gaussians: &[Gaussian],
        keep: Option<&[bool]>,
    ) -> Result<super::BlendMaps> {
        let kept: Vec<Gaussian>;
        let gs = match keep {
            Some(k) => {
                if k.len() != gaussians.len() {
                    return Err(Error::invalid(
                        "error map",
                        format!("{} keep flags for {} Gaussians", k.len(), gaussians.len()),
                    ));
                }
                kept = gaussians
                    .iter()
                    .zip(k)
                    .filter(|(_, k)| **k)
                    .map(|(g, _)| *g)
                    .collect();
                &kept[..]
            }
            None => gaussians,
        };
        let pixels = self.width as usize * self.height as usize;
        if gs.is_empty() {
            let mut den_err = vec![[0f32; 4]; pixels];
            let nc = self.channels;
            let t = self
                .stream
                .clone_dtoh(&self.target.slice(..pixels * nc))
                .map_err(driver_err("GPU error map"))?;
            for (d, px) in den_err.iter_mut().zip(t.chunks_exact(nc)) {
                d[1] = px.iter().fold(0f32, |a, &v| a + v * v);
            }
            return Ok((vec![[0f32; 4]; pixels], den_err));
        }
        self.enqueue_moves_blend(gs)?;
        self.check_lists("error map")?;
        let dl = driver_err("GPU error map");
        let num = self
            .stream
            .clone_dtoh(&self.pix_color.slice(..pixels))
            .map_err(dl)?;
        let den_err = self
            .stream
            .clone_dtoh(&self.pix_grad.slice(..pixels))
            .map_err(driver_err("GPU error map"))?;
        Ok((num, den_err))
    }

    /// The squared error per pixel (summed over the channels, row-major) of the render at 1×
    /// of `gaussians` against the picture — of those whose `keep` entry is true when `keep` is
    /// given (in their order) — as [`adapt`](crate::encode::optim::realloc::adapt) computes it
    /// on the CPU to place new Gaussians.
    #[cfg(feature = "unstable")]
    pub fn error_map(&mut self, gaussians: &[Gaussian], keep: Option<&[bool]>) -> Result<Vec<f32>> {
        let (_, den_err) = self.blend_maps(gaussians, keep)?;
        Ok(den_err.into_iter().map(|d| d[1]).collect())
    }
}
