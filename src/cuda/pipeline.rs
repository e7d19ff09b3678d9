//! One render on the device: the plan (sizes and launch shapes, plain arithmetic tested without
//! a GPU), the workspace of buffers reused from one render to the next, and the launch sequence
//! of `kernels/README.md`.
//!
//! The number of tile-list entries is known only on the device, after the prefix sum. Rather
//! than wait for it mid-render, the lists get a capacity guessed ahead; kernels after the sum
//! check the total against it and do nothing when it does not fit, and the host, which reads the
//! render's counters back at the end anyway, grows the lists and renders again. The capacity
//! only grows, so a viewer pays for this at most once per new zoom level.
//!
//! A render given a cancel flag rasterizes in batches of [`CANCEL_BATCH_TILES`] tiles, with at
//! most two batches queued on the device: before queueing the next one the host waits for the
//! one before it, checking the flag meanwhile. The stages before rasterization are queued the
//! same way, one ahead: projection, prefix sum and pairs, then each pass of the radix sort,
//! the host waiting for the stage before the one it has just queued. A cancel then returns
//! after at most the two stages or batches in flight, not after the whole picture. A host
//! render's download, which for a large frame takes longer than its rasterization, is copied in
//! pieces with the flag checked between them.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use cudarc::driver::{CudaEvent, CudaSlice, CudaStream, DeviceRepr, PinnedHostSlice};

use super::launch::{self, GaussianIn, ProjectParams, RasterParams, Splat};
use super::runtime::{Runtime, driver_err};
use super::{RenderInfo, SampleKind};
use crate::{Error, Limits, Result, Viewport};

/// Tile-list entries per radix block the block count aims at (16 rounds of 256).
const RADIX_ENTRIES_PER_BLOCK: u64 = 4096;
/// At most this many radix blocks (the histogram then has 131,072 entries).
const MAX_RADIX_BLOCKS: u64 = 512;
/// Tiles per rasterization launch of a cancellable render: 4,096 tiles of 16 × 16 pixels, a
/// megapixel (on an H100 a launch of this size takes tens to hundreds of microseconds at
/// typical densities, and at most the render-work limit's share of it).
pub(crate) const CANCEL_BATCH_TILES: u64 = 4096;
/// Most tile-list entries (indices and the grid-stride loops stay in 32 bits).
const MAX_CAPACITY: u64 = 1 << 31;
/// Largest output region the kernels address (region-relative coordinates and the per-Gaussian
/// work fit 32 bits).
const MAX_REGION_PIXELS: u64 = (1 << 32) - 1;

/// Sizes and launch shapes of one render.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Plan {
    pub n: u32,
    pub project: ProjectParams,
    pub tiles_x: u32,
    pub tiles_y: u32,
    /// Item counts of the prefix-sum levels: n, then block totals, until one block (empty when
    /// there are no Gaussians).
    pub scan_levels: Vec<u32>,
    /// Shift of each radix pass (8 bits each, enough for every tile index).
    pub radix_shifts: Vec<u32>,
}

impl Plan {
    /// Plans a render of `n` Gaussians of a `native_w × native_h` image into `view`.
    pub(crate) fn new(
        n: usize,
        native: (u32, u32),
        view: &Viewport,
        limits: &Limits,
    ) -> Result<Plan> {
        view.validate(limits)?;
        limits.check("Gaussian count", n as u64, limits.max_gaussians)?;
        if n as u64 >= 1 << 31 {
            return Err(Error::LimitsExceeded {
                what: "Gaussians of one GPU render",
                value: n as u64,
                limit: (1 << 31) - 1,
            });
        }
        let r = view.region;
        limits.check("GPU output region pixels", r.pixels(), MAX_REGION_PIXELS)?;
        let tiles_x = r.width.div_ceil(launch::TILE);
        let tiles_y = r.height.div_ceil(launch::TILE);
        let tiles = tiles_x as u64 * tiles_y as u64;
        let mut scan_levels = Vec::new();
        if n > 0 {
            let mut len = n as u64;
            loop {
                scan_levels.push(len as u32);
                if len <= launch::SCAN_BLOCK_ITEMS as u64 {
                    break;
                }
                len = len.div_ceil(launch::SCAN_BLOCK_ITEMS as u64);
            }
        }
        // Tile keys are below `tiles` (< 2^24): one pass per 8 bits of the largest key.
        let key_bits = 64 - (tiles - 1).leading_zeros();
        let radix_shifts = (0..key_bits.div_ceil(launch::RADIX_BITS))
            .map(|p| p * launch::RADIX_BITS)
            .collect();
        let (sx, sy) = (
            view.width as f64 / native.0 as f64,
            view.height as f64 / native.1 as f64,
        );
        Ok(Plan {
            n: n as u32,
            project: ProjectParams {
                sx,
                sy,
                region_x: r.x as i64,
                region_y: r.y as i64,
                region_w: r.width as i32,
                region_h: r.height as i32,
                tiles_x: tiles_x as i32,
                tiles_y: tiles_y as i32,
                n: n as u32,
                pad: 0,
            },
            tiles_x,
            tiles_y,
            scan_levels,
            radix_shifts,
        })
    }

    pub(crate) fn tiles(&self) -> u32 {
        self.tiles_x * self.tiles_y
    }

    /// A first guess at the tile-list entries: a few tiles per Gaussian.
    pub(crate) fn initial_capacity(&self) -> u64 {
        (4 * self.n as u64)
            .max(self.tiles() as u64)
            .clamp(4096, MAX_CAPACITY)
    }

    /// Radix blocks for a list capacity: about RADIX_ENTRIES_PER_BLOCK entries each.
    pub(crate) fn radix_blocks(capacity: u64) -> u32 {
        capacity
            .div_ceil(RADIX_ENTRIES_PER_BLOCK)
            .clamp(1, MAX_RADIX_BLOCKS) as u32
    }

    /// Device bytes of the render's buffers for a list capacity, the Gaussians and `out_bytes`
    /// of output included.
    pub(crate) fn memory_bytes(&self, capacity: u64, out_bytes: u64) -> u64 {
        let n = self.n as u64;
        let per_gaussian = (std::mem::size_of::<GaussianIn>() + std::mem::size_of::<Splat>() + 8)
            as u64
            // scan levels above the first: at most 2 words per 2048 items, twice
            + 1;
        let lists = capacity * 16; // keys and values, double-buffered
        let hist = launch::RADIX_BUCKETS as u64 * Self::radix_blocks(capacity) as u64 * 4;
        let ranges = self.tiles() as u64 * 8;
        n * per_gaussian + lists + hist + ranges + out_bytes + 64
    }

    /// Checks the memory of a render against the limits.
    pub(crate) fn check_memory(
        &self,
        limits: &Limits,
        capacity: u64,
        out_bytes: u64,
    ) -> Result<()> {
        limits.check(
            "GPU render memory (bytes)",
            self.memory_bytes(capacity, out_bytes),
            limits.max_memory_bytes,
        )
    }
}

/// Buffers kept between renders of one image or decoder, all on one stream.
pub(crate) struct Workspace {
    pub(crate) stream: Arc<CudaStream>,
    splats: Option<CudaSlice<Splat>>,
    counts: Option<CudaSlice<u32>>,
    offsets: Option<CudaSlice<u32>>,
    /// Block totals (index l ≥ 1: the items of scan level l) and their scans.
    scan_sums: Vec<Option<CudaSlice<u32>>>,
    scan_scanned: Vec<Option<CudaSlice<u32>>>,
    keys: [Option<CudaSlice<u32>>; 2],
    vals: [Option<CudaSlice<u32>>; 2],
    hist: Option<CudaSlice<u32>>,
    ranges: Option<CudaSlice<[u32; 2]>>,
    stats: CudaSlice<u32>,
    stats_host: PinnedHostSlice<u32>,
    /// Tile-list capacity of the next render (only grows).
    capacity: u64,
    /// Events at the start, after projection, after binning and after rasterization.
    timing: Option<[CudaEvent; 4]>,
    /// Tiles per rasterization launch of a cancellable render ([`CANCEL_BATCH_TILES`]).
    pub(crate) cancel_batch_tiles: u64,
}

/// Allocates `buf` anew when it is shorter than `len` (with `slack` extra when it does).
fn ensure<'a, T: DeviceRepr>(
    stream: &Arc<CudaStream>,
    buf: &'a mut Option<CudaSlice<T>>,
    len: u64,
    slack: bool,
) -> Result<&'a mut CudaSlice<T>> {
    let len = len.max(1) as usize;
    if buf.as_ref().is_none_or(|b| b.len() < len) {
        *buf = None; // free the old one first
        let len = if slack { len + len / 4 } else { len };
        // SAFETY: every buffer of the workspace is written by a kernel or a memset of the same
        // render before anything reads it (pipeline order in `Workspace::enqueue`); the kernels
        // read tile lists only below the entry count the emitting kernel wrote.
        let b = unsafe { stream.alloc::<T>(len) }.map_err(driver_err("GPU memory allocation"))?;
        *buf = Some(b);
    }
    Ok(buf.as_mut().expect("allocated above"))
}

/// The per-render buffers after [`Workspace::enqueue_bins`].
pub(crate) struct Bins<'a> {
    /// Projected Gaussians.
    pub splats: &'a CudaSlice<Splat>,
    /// Tiles each Gaussian touches.
    pub counts: &'a CudaSlice<u32>,
    /// Exclusive prefix sum of `counts`: each Gaussian's first tile-list entry before the sort.
    pub offsets: &'a CudaSlice<u32>,
    /// The Gaussian of each tile-list entry, sorted by tile.
    pub vals: &'a CudaSlice<u32>,
    /// `[start, end)` of each tile's entries.
    pub ranges: &'a CudaSlice<[u32; 2]>,
    /// The render's counters (`RenderStats`).
    pub stats: &'a CudaSlice<u32>,
}

/// What the render's counters say.
enum Outcome {
    Done(RenderInfo),
    /// The tile lists needed this many entries: grow and render again.
    Grow(u64),
}

/// Where the pixels go: `rows` rows of `pitch` bytes in `buf`, one sample type, native channels
/// or RGBA.
pub(crate) struct Target<'a> {
    pub buf: &'a mut CudaSlice<u8>,
    pub pitch: u64,
    pub kind: SampleKind,
    pub expand_rgba: bool,
}

impl Workspace {
    pub(crate) fn new(rt: &Runtime, stream: Arc<CudaStream>) -> Result<Workspace> {
        let stats = stream
            .alloc_zeros::<u32>(launch::STATS_WORDS)
            .map_err(driver_err("GPU memory allocation"))?;
        // SAFETY: page-locked host memory, only read after a device-to-host copy into it has
        // completed (the stream is synchronized first). Flags 0: cached, fast for CPU reads.
        let stats_host = unsafe {
            rt.ctx
                .alloc_pinned_with_flags::<u32>(launch::STATS_WORDS, 0)
        }
        .map_err(driver_err("pinned host allocation"))?;
        Ok(Workspace {
            stream,
            splats: None,
            counts: None,
            offsets: None,
            scan_sums: Vec::new(),
            scan_scanned: Vec::new(),
            keys: [None, None],
            vals: [None, None],
            hist: None,
            ranges: None,
            stats,
            stats_host,
            capacity: 0,
            timing: None,
            cancel_batch_tiles: CANCEL_BATCH_TILES,
        })
    }

    /// Turns per-render device timing (two events) on or off (`GpuImage::set_timing`, for the
    /// tools).
    #[cfg(feature = "unstable")]
    pub(crate) fn set_timing(&mut self, rt: &Runtime, on: bool) -> Result<()> {
        self.timing = if on {
            let ev = || {
                rt.ctx
                    .new_event(Some(cudarc::driver::sys::CUevent_flags::CU_EVENT_DEFAULT))
                    .map_err(driver_err("cannot create an event"))
            };
            Some([ev()?, ev()?, ev()?, ev()?])
        } else {
            None
        };
        Ok(())
    }

    /// Renders `plan` of `gaussians` into `target`, then runs `after` on the stream (to enqueue
    /// downloads of the target) before waiting for the device. Renders again with larger lists
    /// when they overflowed. With `cancel`, rasterizes in batches and returns
    /// [`Error::Cancelled`] soon after the flag is set (module documentation).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn render(
        &mut self,
        rt: &Runtime,
        gaussians: &CudaSlice<GaussianIn>,
        plan: &Plan,
        channels: usize,
        limits: &Limits,
        mut target: Target<'_>,
        cancel: Option<&AtomicBool>,
        mut after: impl FnMut(&Arc<CudaStream>, &CudaSlice<u8>) -> Result<()>,
    ) -> Result<RenderInfo> {
        let out_bytes = target.pitch * plan.project.region_h as u64;
        self.capacity = self.capacity.max(plan.initial_capacity());
        plan.check_memory(limits, self.capacity, out_bytes)?;
        let mut attempts = 0;
        loop {
            attempts += 1;
            if cancel.is_some_and(|c| c.load(Ordering::Relaxed)) {
                return Err(Error::Cancelled);
            }
            self.enqueue(rt, gaussians, plan, channels, limits, &mut target, cancel)?;
            after(&self.stream, target.buf)?;
            match self.finish(rt, plan, limits)? {
                Outcome::Done(mut info) => {
                    info.attempts = attempts;
                    return Ok(info);
                }
                Outcome::Grow(needed) if attempts == 1 => {
                    let cap = needed + needed / 4;
                    if needed > MAX_CAPACITY || cap > MAX_CAPACITY {
                        return Err(Error::LimitsExceeded {
                            what: "GPU tile-list entries",
                            value: needed,
                            limit: MAX_CAPACITY,
                        });
                    }
                    plan.check_memory(limits, cap, out_bytes)?;
                    self.capacity = cap;
                }
                Outcome::Grow(needed) => {
                    return Err(Error::Cuda(
                        format!("internal error: tile lists of {needed} entries overflowed twice")
                            .into(),
                    ));
                }
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn enqueue(
        &mut self,
        rt: &Runtime,
        gaussians: &CudaSlice<GaussianIn>,
        plan: &Plan,
        channels: usize,
        limits: &Limits,
        target: &mut Target<'_>,
        cancel: Option<&AtomicBool>,
    ) -> Result<()> {
        let stream = self.stream.clone();
        let s = &*stream;
        let n = plan.n;
        let cap = self.capacity;
        self.mark(0)?;
        // The event after the stage or batch before the last one queued (cancellable renders).
        let mut queued: Option<CudaEvent> = None;
        let cur = self.enqueue_bins(rt, gaussians, plan, cancel, &mut queued)?;
        self.mark(2)?;
        let vals = self.vals[cur].as_ref().expect("allocated by enqueue_bins");
        let splats = ensure(&stream, &mut self.splats, n as u64, false)?;
        let params = RasterParams {
            region_x: plan.project.region_x,
            region_y: plan.project.region_y,
            region_w: plan.project.region_w,
            region_h: plan.project.region_h,
            tiles_x: plan.project.tiles_x,
            tiles_y: plan.project.tiles_y,
            out_pitch: target.pitch,
            max_work: limits
                .render_work_limit(plan.project.region_w as u64 * plan.project.region_h as u64),
            capacity: cap as u32,
            expand_rgba: target.expand_rgba as i32,
        };
        let out_len = (target.pitch * plan.project.region_h as u64) as usize;
        if target.buf.len() < out_len {
            return Err(Error::Cuda(
                format!(
                    "internal error: output buffer of {} bytes, {out_len} needed",
                    target.buf.len()
                )
                .into(),
            ));
        }
        let mut out = target.buf.slice_mut(..out_len);
        let tiles = plan.tiles() as u64;
        let batch = if cancel.is_some() {
            self.cancel_batch_tiles
        } else {
            tiles
        };
        let mut start = 0;
        while start < tiles {
            let end = (start + batch).min(tiles);
            launch::rasterize(
                rt,
                s,
                target.kind,
                channels,
                splats,
                vals,
                self.ranges.as_ref().expect("allocated by enqueue_bins"),
                &self.stats,
                &params,
                &mut out,
                start..end,
            )?;
            start = end;
            if start < tiles {
                checkpoint(&stream, cancel, &mut queued)?;
            }
        }
        self.mark(3)?;
        stream
            .memcpy_dtoh(&self.stats, &mut self.stats_host)
            .map_err(driver_err("device-to-host copy"))?;
        Ok(())
    }

    /// Enqueues the stages before rasterization: zeroed counters, projection, prefix sum,
    /// pairs, radix sort and tile ranges, with the lists at the current capacity. Returns which
    /// of the two list buffers holds the sorted lists ([`Bins`]). Timing event 1 is recorded
    /// after the projection. With `cancel`, a [`checkpoint`] follows the projection,
    /// the pairs and each radix pass (`queued`: the event it waits for next).
    pub(crate) fn enqueue_bins(
        &mut self,
        rt: &Runtime,
        gaussians: &CudaSlice<GaussianIn>,
        plan: &Plan,
        cancel: Option<&AtomicBool>,
        queued: &mut Option<CudaEvent>,
    ) -> Result<usize> {
        let stream = self.stream.clone();
        let s = &*stream;
        let n = plan.n;
        let cap = self.capacity;
        let tiles = plan.tiles();
        let radix_blocks = Plan::radix_blocks(cap);
        stream
            .memset_zeros(&mut self.stats)
            .map_err(driver_err("memset"))?;
        // Lists: keys[0]/vals[0] receive the pairs; each radix pass moves them to the other.
        for k in 0..2 {
            ensure(&stream, &mut self.keys[k], cap, false)?;
            ensure(&stream, &mut self.vals[k], cap, false)?;
        }
        let mut cur = 0;
        if n > 0 {
            let splats = ensure(&stream, &mut self.splats, n as u64, false)?;
            let counts = ensure(&stream, &mut self.counts, n as u64, false)?;
            launch::project_gaussians(
                rt,
                s,
                gaussians,
                &plan.project,
                splats,
                counts,
                &mut self.stats,
            )?;
            self.mark(1)?;
            checkpoint(&stream, cancel, queued)?;
            self.scan(rt, plan)?;
            let (k0, _) = self.keys.split_at_mut(1);
            let (v0, _) = self.vals.split_at_mut(1);
            launch::emit_pairs(
                rt,
                s,
                self.splats.as_ref().expect("allocated above"),
                self.counts.as_ref().expect("allocated above"),
                self.offsets.as_ref().expect("allocated by scan"),
                &self.stats,
                n,
                plan.tiles_x as i32,
                k0[0].as_mut().expect("allocated above"),
                v0[0].as_mut().expect("allocated above"),
            )?;
            checkpoint(&stream, cancel, queued)?;
            let hist_len = launch::RADIX_BUCKETS as u64 * radix_blocks as u64;
            ensure(&stream, &mut self.hist, hist_len, false)?;
            for &shift in &plan.radix_shifts {
                let (ka, kb) = self.keys.split_at_mut(1);
                let (va, vb) = self.vals.split_at_mut(1);
                let (k_in, k_out, v_in, v_out) = if cur == 0 {
                    (&ka[0], &mut kb[0], &va[0], &mut vb[0])
                } else {
                    (&kb[0], &mut ka[0], &vb[0], &mut va[0])
                };
                let (k_in, k_out) = (
                    k_in.as_ref().expect("lists"),
                    k_out.as_mut().expect("lists"),
                );
                let (v_in, v_out) = (
                    v_in.as_ref().expect("lists"),
                    v_out.as_mut().expect("lists"),
                );
                let hist = self.hist.as_mut().expect("allocated above");
                launch::radix_histogram(rt, s, k_in, &self.stats, shift, radix_blocks, hist)?;
                launch::radix_scan(rt, s, hist, hist_len as u32)?;
                launch::radix_scatter(
                    rt,
                    s,
                    k_in,
                    v_in,
                    k_out,
                    v_out,
                    &self.stats,
                    shift,
                    radix_blocks,
                    hist,
                )?;
                cur ^= 1;
                checkpoint(&stream, cancel, queued)?;
            }
        }
        let ranges = ensure(&stream, &mut self.ranges, tiles as u64, true)?;
        stream
            .memset_zeros(&mut ranges.slice_mut(..tiles as usize))
            .map_err(driver_err("memset"))?;
        let keys = self.keys[cur].as_ref().expect("allocated above");
        if n > 0 {
            launch::tile_ranges(rt, s, keys, &self.stats, tiles, ranges)?;
        } else {
            self.mark(1)?;
        }
        Ok(cur)
    }

    /// The buffers [`Workspace::enqueue_bins`] filled, for kernels that walk the tile lists
    /// (the refinement's); `cur` is what it returned.
    pub(crate) fn bins(&self, cur: usize) -> Option<Bins<'_>> {
        Some(Bins {
            splats: self.splats.as_ref()?,
            counts: self.counts.as_ref()?,
            offsets: self.offsets.as_ref()?,
            vals: self.vals[cur].as_ref()?,
            ranges: self.ranges.as_ref()?,
            stats: &self.stats,
        })
    }

    /// Tile-list capacity of the next render.
    pub(crate) fn capacity(&self) -> u64 {
        self.capacity
    }

    /// Sets the tile-list capacity of the next render (the refinement sizes the lists itself
    /// and checks the memory first).
    pub(crate) fn set_capacity(&mut self, capacity: u64) {
        self.capacity = capacity.min(MAX_CAPACITY);
    }

    /// Records timing event `i` on the stream, when timing is on.
    fn mark(&self, i: usize) -> Result<()> {
        if let Some(ev) = &self.timing {
            ev[i]
                .record(&self.stream)
                .map_err(driver_err("event record"))?;
        }
        Ok(())
    }

    /// Prefix sum of the tile counts into `offsets`, total into stats.pairs.
    fn scan(&mut self, rt: &Runtime, plan: &Plan) -> Result<()> {
        let stream = self.stream.clone();
        let s = &*stream;
        let levels = &plan.scan_levels;
        let top = levels.len() - 1;
        while self.scan_sums.len() < levels.len() {
            self.scan_sums.push(None);
            self.scan_scanned.push(None);
        }
        ensure(&stream, &mut self.offsets, levels[0] as u64, false)?;
        for (l, &len) in levels.iter().enumerate().skip(1) {
            ensure(&stream, &mut self.scan_sums[l], len as u64, false)?;
            ensure(&stream, &mut self.scan_scanned[l], len as u64, false)?;
        }
        // Down: scan each level, writing its block totals into the next level's input.
        for l in 0..levels.len() {
            let (lower, upper) = self.scan_sums.split_at_mut(l + 1);
            let input = if l == 0 {
                self.counts.as_ref().expect("allocated by enqueue")
            } else {
                lower[l].as_ref().expect("allocated above")
            };
            let output = if l == 0 {
                self.offsets.as_mut().expect("allocated above")
            } else {
                self.scan_scanned[l].as_mut().expect("allocated above")
            };
            if l == top {
                let mut total = launch::pairs_word(&mut self.stats);
                launch::scan_blocks(rt, s, input, output, levels[l], &mut total)?;
            } else {
                let mut sums = upper[0].as_mut().expect("allocated above").slice_mut(..);
                launch::scan_blocks(rt, s, input, output, levels[l], &mut sums)?;
            }
        }
        // Up: add each level's scanned block totals to the level below.
        for l in (0..top).rev() {
            let (lower, upper) = self.scan_scanned.split_at_mut(l + 1);
            let offsets = upper[0].as_ref().expect("allocated above");
            let data = if l == 0 {
                self.offsets.as_mut().expect("allocated above")
            } else {
                lower[l].as_mut().expect("allocated above")
            };
            launch::scan_add(rt, s, data, levels[l], offsets)?;
        }
        Ok(())
    }

    /// Waits for the device and reads the render's counters.
    fn finish(&mut self, rt: &Runtime, plan: &Plan, limits: &Limits) -> Result<Outcome> {
        self.stream
            .synchronize()
            .map_err(driver_err("GPU render"))?;
        rt.ctx.check_err().map_err(driver_err("GPU render"))?;
        let s = self
            .stats_host
            .as_slice()
            .map_err(driver_err("GPU render"))?;
        let work = s[0] as u64 | (s[1] as u64) << 32;
        let pairs = s[launch::STATS_PAIRS_WORD] as u64;
        limits.check(
            "render work (Gaussian-pixel evaluations)",
            work,
            limits.render_work_limit(plan.project.region_w as u64 * plan.project.region_h as u64),
        )?;
        if pairs > self.capacity {
            return Ok(Outcome::Grow(pairs));
        }
        let (gpu_ms, stage_ms) = match &self.timing {
            Some(ev) => {
                let ms = |a: usize, b: usize| {
                    ev[a].elapsed_ms(&ev[b]).map_err(driver_err("event timing"))
                };
                (Some(ms(0, 3)?), Some([ms(0, 1)?, ms(1, 2)?, ms(2, 3)?]))
            }
            None => (None, None),
        };
        Ok(Outcome::Done(RenderInfo {
            work,
            tile_entries: pairs,
            tiles: plan.tiles() as u64,
            attempts: 1,
            gpu_ms,
            stage_ms,
        }))
    }
}

/// In a cancellable render (`cancel` given), records an event on `stream` after the work queued
/// so far and waits for the one recorded at the checkpoint before (`queued`), polling the flag:
/// the device keeps one stage queued ahead while the host can still stop the render
/// ([`Error::Cancelled`], once the queued work is done).
fn checkpoint(
    stream: &CudaStream,
    cancel: Option<&AtomicBool>,
    queued: &mut Option<CudaEvent>,
) -> Result<()> {
    let Some(flag) = cancel else { return Ok(()) };
    let done = stream
        .record_event(None)
        .map_err(driver_err("event record"))?;
    wait_unless_cancelled(stream, queued.replace(done).as_ref(), flag)
}

/// Waits until the device has passed `event` (if any), polling `cancel`: when it is set, waits
/// for the work already queued on `stream` (so nothing still writes into buffers the caller may
/// drop or reuse) and returns [`Error::Cancelled`].
fn wait_unless_cancelled(
    stream: &CudaStream,
    event: Option<&CudaEvent>,
    cancel: &AtomicBool,
) -> Result<()> {
    loop {
        if cancel.load(Ordering::Relaxed) {
            stream.synchronize().map_err(driver_err("GPU render"))?;
            return Err(Error::Cancelled);
        }
        if event
            .map_or(Ok(true), |e| e.try_is_complete())
            .map_err(driver_err("GPU render"))?
        {
            return Ok(());
        }
        std::thread::sleep(std::time::Duration::from_micros(50));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Region;

    fn plan(n: usize, w: u32, h: u32) -> Plan {
        Plan::new(n, (100, 50), &Viewport::full(w, h), &Limits::default()).unwrap()
    }

    #[test]
    fn scan_levels_end_in_one_block() {
        assert_eq!(plan(0, 10, 10).scan_levels, Vec::<u32>::new());
        assert_eq!(plan(1, 10, 10).scan_levels, vec![1]);
        assert_eq!(plan(2048, 10, 10).scan_levels, vec![2048]);
        assert_eq!(plan(2049, 10, 10).scan_levels, vec![2049, 2]);
        assert_eq!(
            plan(5_000_000, 10, 10).scan_levels,
            vec![5_000_000, 2442, 2]
        );
    }

    #[test]
    fn radix_passes_cover_every_tile_index() {
        // 1 tile: nothing to sort.
        assert_eq!(plan(5, 16, 16).radix_shifts, Vec::<u32>::new());
        // 2 tiles: keys 0..1, one pass.
        assert_eq!(plan(5, 17, 16).radix_shifts, vec![0]);
        // 256 tiles: keys up to 255, one pass; 257 tiles: two.
        assert_eq!(plan(5, 256, 256).radix_shifts, vec![0]);
        assert_eq!(plan(5, 257, 256).radix_shifts, vec![0, 8]);
        // 7680 x 4320: 480 x 270 = 129,600 tiles, 17 bits.
        let p = plan(5, 7680, 4320);
        assert_eq!((p.tiles_x, p.tiles_y), (480, 270));
        assert_eq!(p.radix_shifts, vec![0, 8, 16]);
    }

    #[test]
    fn regions_plan_their_own_tiles() {
        let view = Viewport::full(1000, 800).with_region(Region {
            x: 30,
            y: 700,
            width: 33,
            height: 100,
        });
        let p = Plan::new(10, (100, 80), &view, &Limits::default()).unwrap();
        assert_eq!((p.tiles_x, p.tiles_y), (3, 7));
        assert_eq!((p.project.region_x, p.project.region_y), (30, 700));
        assert_eq!((p.project.sx, p.project.sy), (10.0, 10.0));
        assert!(
            Plan::new(
                10,
                (100, 80),
                &view.with_region(Region {
                    x: 990,
                    ..view.region
                }),
                &Limits::default()
            )
            .is_err()
        );
    }

    #[test]
    fn radix_blocks_and_memory() {
        assert_eq!(Plan::radix_blocks(1), 1);
        assert_eq!(Plan::radix_blocks(4096), 1);
        assert_eq!(Plan::radix_blocks(4097), 2);
        assert_eq!(Plan::radix_blocks(1 << 30), 512);
        let p = plan(1000, 768, 512);
        let small = p.memory_bytes(4096, 0);
        assert!(p.memory_bytes(1 << 20, 0) > small);
        let tight = Limits {
            max_memory_bytes: small - 1,
            ..Limits::default()
        };
        assert!(p.check_memory(&tight, 4096, 0).is_err());
    }
}
