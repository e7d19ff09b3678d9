//! One typed wrapper per kernel, with the argument order of its `extern "C"` signature in
//! `kernels/*.cu`, and the `#[repr(C)]` mirrors of `kernels/common.cuh`'s structs.
//!
//! Each wrapper checks the buffer lengths and launch dimensions the kernel relies on before
//! launching; the `// SAFETY:` comment on each launch states the rest.

use cudarc::driver::{
    CudaSlice, CudaStream, CudaViewMut, DeviceRepr, LaunchConfig, PushKernelArg, ValidAsZeroBits,
};

use super::kernels::Kernel;
use super::runtime::Runtime;
use super::runtime::driver_err;
use crate::{Error, Result};

// ---- Mirrors of kernels/common.cuh ------------------------------------------------------------

/// `TILE_W`, `TILE_H`: raster tile size in output pixels.
pub(crate) const TILE: u32 = 16;
pub(crate) const PROJECT_THREADS: u32 = 256;
pub(crate) const EMIT_THREADS: u32 = 256;
pub(crate) const SCAN_THREADS: u32 = 256;
/// `SCAN_BLOCK_ITEMS`.
pub(crate) const SCAN_BLOCK_ITEMS: u32 = 2048;
pub(crate) const RADIX_BITS: u32 = 8;
pub(crate) const RADIX_BUCKETS: u32 = 1 << RADIX_BITS;
pub(crate) const RADIX_THREADS: u32 = 256;
pub(crate) const RADIX_SCAN_THREADS: u32 = 1024;
pub(crate) const RANGES_THREADS: u32 = 256;
pub(crate) const RASTER_THREADS: u32 = TILE * TILE;
/// Largest grid x dimension.
const MAX_GRID_X: u64 = (1 << 31) - 1;

/// `struct GaussianIn`: one Gaussian as uploaded.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct GaussianIn {
    pub x: f32,
    pub y: f32,
    pub scale1: f32,
    pub scale2: f32,
    pub rotation: f32,
    pub color: [f32; 4],
}
// SAFETY: plain old data of f32 fields, laid out as the C struct.
unsafe impl DeviceRepr for GaussianIn {}
// SAFETY: all-zero bytes are nine 0.0 floats.
unsafe impl ValidAsZeroBits for GaussianIn {}

impl From<&crate::Gaussian> for GaussianIn {
    fn from(g: &crate::Gaussian) -> Self {
        GaussianIn {
            x: g.x,
            y: g.y,
            scale1: g.scale[0],
            scale2: g.scale[1],
            rotation: g.rotation,
            color: g.color,
        }
    }
}

/// `struct Splat`: 64 bytes the host only allocates.
#[repr(C, align(16))]
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Splat([u32; 16]);
// SAFETY: plain old data.
unsafe impl DeviceRepr for Splat {}

/// `struct ProjectParams`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct ProjectParams {
    pub sx: f64,
    pub sy: f64,
    pub region_x: i64,
    pub region_y: i64,
    pub region_w: i32,
    pub region_h: i32,
    pub tiles_x: i32,
    pub tiles_y: i32,
    pub n: u32,
    pub pad: u32,
}
// SAFETY: fixed-width fields in C order without implicit padding (56 bytes, asserted below).
unsafe impl DeviceRepr for ProjectParams {}

/// `struct RasterParams`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct RasterParams {
    pub region_x: i64,
    pub region_y: i64,
    pub region_w: i32,
    pub region_h: i32,
    pub tiles_x: i32,
    pub tiles_y: i32,
    pub out_pitch: u64,
    pub max_work: u64,
    pub capacity: u32,
    pub expand_rgba: i32,
}
// SAFETY: fixed-width fields in C order without implicit padding (56 bytes, asserted below).
unsafe impl DeviceRepr for RasterParams {}

/// `struct RenderStats` is 4 words on the device: work (u64, words 0–1), pairs (word 2), pad.
pub(crate) const STATS_WORDS: usize = 4;
pub(crate) const STATS_PAIRS_WORD: usize = 2;

const _: () = {
    assert!(std::mem::size_of::<GaussianIn>() == 36);
    assert!(std::mem::size_of::<Splat>() == 64);
    assert!(std::mem::size_of::<ProjectParams>() == 56);
    assert!(std::mem::size_of::<RasterParams>() == 56);
};

// ---- Checks -------------------------------------------------------------------------------------

fn need(what: &'static str, have: usize, want: u64) -> Result<()> {
    if (have as u64) < want {
        return Err(Error::Cuda(
            format!("internal error: {what} holds {have} elements, the launch needs {want}").into(),
        ));
    }
    Ok(())
}

fn grid(blocks: u64, threads: u32) -> Result<LaunchConfig> {
    if blocks == 0 || blocks > MAX_GRID_X {
        return Err(Error::Cuda(
            format!("internal error: grid of {blocks} blocks").into(),
        ));
    }
    Ok(LaunchConfig {
        grid_dim: (blocks as u32, 1, 1),
        block_dim: (threads, 1, 1),
        shared_mem_bytes: 0,
    })
}

fn blocks_for(items: u64, per_block: u32) -> u64 {
    items.div_ceil(per_block as u64)
}

// ---- Wrappers, in pipeline order ----------------------------------------------------------------

/// `project_gaussians`: one thread per Gaussian.
pub(crate) fn project_gaussians(
    rt: &Runtime,
    stream: &CudaStream,
    gaussians: &CudaSlice<GaussianIn>,
    p: &ProjectParams,
    splats: &mut CudaSlice<Splat>,
    tile_counts: &mut CudaSlice<u32>,
    stats: &mut CudaSlice<u32>,
) -> Result<()> {
    let n = p.n as u64;
    need("gaussians", gaussians.len(), n)?;
    need("splats", splats.len(), n)?;
    need("tile_counts", tile_counts.len(), n)?;
    need("stats", stats.len(), STATS_WORDS as u64)?;
    if p.region_w <= 0 || p.region_h <= 0 || p.tiles_x <= 0 || p.tiles_y <= 0 {
        return Err(Error::Cuda(format!("internal error: {p:?}").into()));
    }
    let cfg = grid(blocks_for(n, PROJECT_THREADS), PROJECT_THREADS)?;
    let f = rt.function(Kernel::ProjectGaussians)?;
    let mut b = stream.launch_builder(f);
    b.arg(gaussians)
        .arg(p)
        .arg(splats)
        .arg(tile_counts)
        .arg(stats);
    // SAFETY: the argument list matches project_gaussians(const GaussianIn*, ProjectParams,
    // Splat*, unsigned*, RenderStats*); every array holds at least p.n elements (checked above)
    // and the kernel touches indices below p.n only; stats holds the 16-byte RenderStats.
    unsafe { b.launch(cfg) }.map_err(driver_err("project_gaussians launch"))?;
    Ok(())
}

/// `scan_blocks`: exclusive scan of `n` items per 2048-item block; block totals to `sums`.
pub(crate) fn scan_blocks(
    rt: &Runtime,
    stream: &CudaStream,
    input: &CudaSlice<u32>,
    output: &mut CudaSlice<u32>,
    n: u32,
    sums: &mut CudaViewMut<'_, u32>,
) -> Result<()> {
    let blocks = blocks_for(n as u64, SCAN_BLOCK_ITEMS);
    need("scan input", input.len(), n as u64)?;
    need("scan output", output.len(), n as u64)?;
    need("scan block sums", sums.len(), blocks)?;
    let cfg = grid(blocks, SCAN_THREADS)?;
    let f = rt.function(Kernel::ScanBlocks)?;
    let mut b = stream.launch_builder(f);
    b.arg(input).arg(output).arg(&n).arg(sums);
    // SAFETY: matches scan_blocks(const unsigned*, unsigned*, unsigned, unsigned*); input and
    // output hold n items and sums one per block (checked); the kernel guards j < n.
    unsafe { b.launch(cfg) }.map_err(driver_err("scan_blocks launch"))?;
    Ok(())
}

/// `scan_add`: adds the scanned block totals back to each 2048-item block.
pub(crate) fn scan_add(
    rt: &Runtime,
    stream: &CudaStream,
    data: &mut CudaSlice<u32>,
    n: u32,
    block_offsets: &CudaSlice<u32>,
) -> Result<()> {
    let blocks = blocks_for(n as u64, SCAN_BLOCK_ITEMS);
    need("scan data", data.len(), n as u64)?;
    need("scan block offsets", block_offsets.len(), blocks)?;
    let cfg = grid(blocks, SCAN_THREADS)?;
    let f = rt.function(Kernel::ScanAdd)?;
    let mut b = stream.launch_builder(f);
    b.arg(data).arg(&n).arg(block_offsets);
    // SAFETY: matches scan_add(unsigned*, unsigned, const unsigned*); sizes checked above.
    unsafe { b.launch(cfg) }.map_err(driver_err("scan_add launch"))?;
    Ok(())
}

/// `emit_pairs`: (tile, Gaussian) pairs at each Gaussian's offset.
#[allow(clippy::too_many_arguments)]
pub(crate) fn emit_pairs(
    rt: &Runtime,
    stream: &CudaStream,
    splats: &CudaSlice<Splat>,
    tile_counts: &CudaSlice<u32>,
    offsets: &CudaSlice<u32>,
    stats: &CudaSlice<u32>,
    n: u32,
    tiles_x: i32,
    keys: &mut CudaSlice<u32>,
    vals: &mut CudaSlice<u32>,
) -> Result<()> {
    need("splats", splats.len(), n as u64)?;
    need("tile_counts", tile_counts.len(), n as u64)?;
    need("offsets", offsets.len(), n as u64)?;
    need("stats", stats.len(), STATS_WORDS as u64)?;
    let capacity = keys.len().min(vals.len()).min(u32::MAX as usize) as u32;
    let cfg = grid(blocks_for(n as u64, EMIT_THREADS), EMIT_THREADS)?;
    let f = rt.function(Kernel::EmitPairs)?;
    let mut b = stream.launch_builder(f);
    b.arg(splats)
        .arg(tile_counts)
        .arg(offsets)
        .arg(stats)
        .arg(&n)
        .arg(&capacity)
        .arg(&tiles_x)
        .arg(keys)
        .arg(vals);
    // SAFETY: matches emit_pairs(const Splat*, const unsigned*, const unsigned*, const
    // RenderStats*, unsigned, unsigned, int, unsigned*, unsigned*). The kernel writes nothing
    // unless stats->pairs <= capacity, and then only below offsets[i] + tile_counts[i] <=
    // stats->pairs <= capacity = the length of keys and vals.
    unsafe { b.launch(cfg) }.map_err(driver_err("emit_pairs launch"))?;
    Ok(())
}

/// `radix_histogram`: per-block digit counts, digit-major, over `blocks` blocks.
pub(crate) fn radix_histogram(
    rt: &Runtime,
    stream: &CudaStream,
    keys: &CudaSlice<u32>,
    stats: &CudaSlice<u32>,
    shift: u32,
    blocks: u32,
    hist: &mut CudaSlice<u32>,
) -> Result<()> {
    need("stats", stats.len(), STATS_WORDS as u64)?;
    need(
        "radix histogram",
        hist.len(),
        RADIX_BUCKETS as u64 * blocks as u64,
    )?;
    let capacity = keys.len().min(u32::MAX as usize) as u32;
    let cfg = grid(blocks as u64, RADIX_THREADS)?;
    let f = rt.function(Kernel::RadixHistogram)?;
    let mut b = stream.launch_builder(f);
    b.arg(keys).arg(stats).arg(&capacity).arg(&shift).arg(hist);
    // SAFETY: matches radix_histogram(const unsigned*, const RenderStats*, unsigned, unsigned,
    // unsigned*); keys are read below min(stats->pairs, capacity) only (0 entries when over
    // capacity), hist holds RADIX_BUCKETS per block (checked).
    unsafe { b.launch(cfg) }.map_err(driver_err("radix_histogram launch"))?;
    Ok(())
}

/// `radix_scan`: exclusive scan of the first `len` histogram entries, one block.
pub(crate) fn radix_scan(
    rt: &Runtime,
    stream: &CudaStream,
    hist: &mut CudaSlice<u32>,
    len: u32,
) -> Result<()> {
    need("radix histogram", hist.len(), len as u64)?;
    let cfg = grid(1, RADIX_SCAN_THREADS)?;
    let f = rt.function(Kernel::RadixScan)?;
    let mut b = stream.launch_builder(f);
    b.arg(hist).arg(&len);
    // SAFETY: matches radix_scan(unsigned*, unsigned); the kernel guards every index by len.
    unsafe { b.launch(cfg) }.map_err(driver_err("radix_scan launch"))?;
    Ok(())
}

/// `radix_scatter`: stable scatter of keys and values by digit.
#[allow(clippy::too_many_arguments)]
pub(crate) fn radix_scatter(
    rt: &Runtime,
    stream: &CudaStream,
    keys_in: &CudaSlice<u32>,
    vals_in: &CudaSlice<u32>,
    keys_out: &mut CudaSlice<u32>,
    vals_out: &mut CudaSlice<u32>,
    stats: &CudaSlice<u32>,
    shift: u32,
    blocks: u32,
    offsets: &CudaSlice<u32>,
) -> Result<()> {
    need("stats", stats.len(), STATS_WORDS as u64)?;
    need(
        "radix offsets",
        offsets.len(),
        RADIX_BUCKETS as u64 * blocks as u64,
    )?;
    let capacity = keys_in
        .len()
        .min(vals_in.len())
        .min(keys_out.len())
        .min(vals_out.len())
        .min(u32::MAX as usize) as u32;
    let cfg = grid(blocks as u64, RADIX_THREADS)?;
    let f = rt.function(Kernel::RadixScatter)?;
    let mut b = stream.launch_builder(f);
    b.arg(keys_in)
        .arg(vals_in)
        .arg(keys_out)
        .arg(vals_out)
        .arg(stats)
        .arg(&capacity)
        .arg(&shift)
        .arg(offsets);
    // SAFETY: matches radix_scatter(const unsigned* x2, unsigned* x2, const RenderStats*,
    // unsigned, unsigned, const unsigned*). Entries below min(stats->pairs, capacity) are read,
    // and each is written to a distinct position below the same bound (the offsets are an
    // exclusive scan of this pass's histogram of those entries).
    unsafe { b.launch(cfg) }.map_err(driver_err("radix_scatter launch"))?;
    Ok(())
}

/// `tile_ranges`: each tile's [start, end) in the sorted keys (`ranges` cleared beforehand).
pub(crate) fn tile_ranges(
    rt: &Runtime,
    stream: &CudaStream,
    keys: &CudaSlice<u32>,
    stats: &CudaSlice<u32>,
    tiles: u32,
    ranges: &mut CudaSlice<[u32; 2]>,
) -> Result<()> {
    need("stats", stats.len(), STATS_WORDS as u64)?;
    need("tile ranges", ranges.len(), tiles as u64)?;
    let capacity = keys.len().min(u32::MAX as usize) as u32;
    let blocks = blocks_for(capacity as u64, RANGES_THREADS).clamp(1, 4096);
    let cfg = grid(blocks, RANGES_THREADS)?;
    let f = rt.function(Kernel::TileRanges)?;
    let mut b = stream.launch_builder(f);
    b.arg(keys).arg(stats).arg(&capacity).arg(ranges);
    // SAFETY: matches tile_ranges(const unsigned*, const RenderStats*, unsigned, uint2*); keys
    // are read below min(stats->pairs, capacity); every key is a tile index < tiles (emit_pairs
    // writes ty * tiles_x + tx for tiles inside the region), and ranges holds `tiles` entries.
    unsafe { b.launch(cfg) }.map_err(driver_err("tile_ranges launch"))?;
    Ok(())
}

/// `rasterize_{u8,f32}_c{1..4}`: one block per tile, into `out` (`p.region_h` rows of
/// `p.out_pitch` bytes).
#[allow(clippy::too_many_arguments)]
pub(crate) fn rasterize(
    rt: &Runtime,
    stream: &CudaStream,
    kind: super::SampleKind,
    channels: usize,
    splats: &CudaSlice<Splat>,
    tile_vals: &CudaSlice<u32>,
    ranges: &CudaSlice<[u32; 2]>,
    stats: &CudaSlice<u32>,
    p: &RasterParams,
    out: &mut CudaViewMut<'_, u8>,
    batch: std::ops::Range<u64>,
) -> Result<()> {
    if !(1..=4).contains(&channels) {
        return Err(Error::Cuda(
            format!("internal error: {channels} channels").into(),
        ));
    }
    let tiles = p.tiles_x as u64 * p.tiles_y as u64;
    need("tile ranges", ranges.len(), tiles)?;
    if batch.start >= batch.end || batch.end > tiles || batch.end > u32::MAX as u64 {
        return Err(Error::Cuda(
            format!("internal error: tiles {batch:?} of {tiles}").into(),
        ));
    }
    need("stats", stats.len(), STATS_WORDS as u64)?;
    if p.region_w <= 0
        || p.region_h <= 0
        || p.tiles_x as u64 != (p.region_w as u64).div_ceil(TILE as u64)
        || p.tiles_y as u64 != (p.region_h as u64).div_ceil(TILE as u64)
        || p.capacity as usize > tile_vals.len()
    {
        return Err(Error::Cuda(format!("internal error: {p:?}").into()));
    }
    let out_channels = if p.expand_rgba != 0 { 4 } else { channels } as u64;
    let row_bytes = p.region_w as u64 * out_channels * kind.size() as u64;
    if p.out_pitch < row_bytes || !p.out_pitch.is_multiple_of(kind.size() as u64) {
        return Err(Error::Cuda(
            format!(
                "internal error: pitch {} for rows of {row_bytes} bytes",
                p.out_pitch
            )
            .into(),
        ));
    }
    need(
        "output",
        out.len(),
        p.out_pitch * (p.region_h as u64 - 1) + row_bytes,
    )?;
    let index = match kind {
        super::SampleKind::U8 => 0,
        super::SampleKind::F32 => 4,
    } + channels as u8
        - 1;
    let cfg = grid(batch.end - batch.start, RASTER_THREADS)?;
    let tile_base = batch.start as u32;
    let f = rt.function(Kernel::Rasterize(index))?;
    #[cfg(feature = "fault-injection")]
    if std::env::var_os("GSIMG_INJECT_CUDA_FAULT").is_some_and(|v| v == "rasterize") {
        return Err(Error::Cuda(
            "rasterize launch: fault injected by GSIMG_INJECT_CUDA_FAULT=rasterize".into(),
        ));
    }
    let mut b = stream.launch_builder(f);
    b.arg(splats)
        .arg(tile_vals)
        .arg(ranges)
        .arg(stats)
        .arg(p)
        .arg(out)
        .arg(&tile_base);
    // SAFETY: matches rasterize_*(const Splat*, const unsigned*, const uint2*, const
    // RenderStats*, RasterParams, unsigned char*, unsigned). The grid has one block per tile of
    // `batch`, which lies within the region's tiles and below 2^32 (checked above). The kernel draws nothing when stats->pairs > p.capacity; otherwise
    // the ranges lie below stats->pairs <= p.capacity <= tile_vals.len(), and every value is a
    // Gaussian index < n, the length of splats. Pixels are written only inside the region, row
    // y at y * out_pitch, within the length checked above; f32 rows are 4-byte aligned since
    // device allocations are 256-byte aligned and the pitch is a multiple of 4.
    unsafe { b.launch(cfg) }.map_err(driver_err("rasterize launch"))?;
    Ok(())
}

/// A view of the `RenderStats::pairs` word, where the top scan level writes the total.
pub(crate) fn pairs_word(stats: &mut CudaSlice<u32>) -> CudaViewMut<'_, u32> {
    stats.slice_mut(STATS_PAIRS_WORD..STATS_PAIRS_WORD + 1)
}

// ---- Refinement (kernels/refine.cu) -------------------------------------------------------------

/// `GRAD_N`: gradient entries per (tile, Gaussian) slot.
pub(crate) const GRAD_N: usize = 10;
/// `PARAM_N`: parameters per Gaussian (x, y, log2 σ1, log2 σ2, θ, channels 0..3).
pub(crate) const PARAM_N: usize = 9;
pub(crate) const LOSS_THREADS: u32 = 256;
pub(crate) const UPDATE_THREADS: u32 = 256;

/// `struct RefineState`, zeroed at the start of a descent.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct RefineState {
    pub best: f64,
    pub last: f64,
    pub has_best: u32,
    pub improved: u32,
    pub overflow: u32,
    pub overflow_step: u32,
    pub max_pairs: u32,
    pub pad: u32,
}
// SAFETY: fixed-width fields in C order without implicit padding (40 bytes, asserted below).
unsafe impl DeviceRepr for RefineState {}
// SAFETY: all-zero bytes are valid for every field.
unsafe impl ValidAsZeroBits for RefineState {}

/// `struct RefineParams`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct RefineParams {
    pub width: i32,
    pub height: i32,
    pub tiles_x: i32,
    pub tiles_y: i32,
    pub n: u32,
    pub capacity: u32,
    pub channels: i32,
    pub pad: u32,
}
// SAFETY: fixed-width fields in C order without implicit padding (32 bytes, asserted below).
unsafe impl DeviceRepr for RefineParams {}

/// `struct QuantGrid`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub(crate) struct QuantGrid {
    pub on: i32,
    pub pos_step: f32,
    pub extent_x: f32,
    pub extent_y: f32,
    pub log2_min: f32,
    pub log2_max: f32,
    pub scale_levels: u32,
    pub rot_steps: u32,
}

/// `struct UpdateParams`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct UpdateParams {
    pub lr: [f32; PARAM_N],
    pub log2_lo: f32,
    pub log2_hi: f32,
    pub c1: f32,
    pub c2: f32,
    pub values: f32,
    pub update: i32,
    pub step: u32,
    pub grid: QuantGrid,
}
// SAFETY: fixed-width fields in C order without implicit padding (96 bytes, asserted below).
unsafe impl DeviceRepr for UpdateParams {}

const _: () = {
    assert!(std::mem::size_of::<RefineState>() == 40);
    assert!(std::mem::size_of::<RefineParams>() == 32);
    assert!(std::mem::size_of::<QuantGrid>() == 32);
    assert!(std::mem::size_of::<UpdateParams>() == 96);
};

/// The checks every per-tile refinement pass makes of its common inputs: the parameters, the
/// tile ranges, the target picture and the tile lists. Returns (tiles, pixels).
fn check_tile_pass(
    bins: &super::pipeline::Bins<'_>,
    p: &RefineParams,
    target: &CudaSlice<f32>,
) -> Result<(u64, u64)> {
    let tiles = check_refine_params(p)?;
    let pixels = p.width as u64 * p.height as u64;
    need("tile ranges", bins.ranges.len(), tiles)?;
    need("target", target.len(), pixels * p.channels as u64)?;
    need("tile lists", bins.vals.len(), p.capacity as u64)?;
    Ok((tiles, pixels))
}

fn check_refine_params(p: &RefineParams) -> Result<u64> {
    if p.width <= 0
        || p.height <= 0
        || p.tiles_x as i64 != (p.width as u64).div_ceil(TILE as u64) as i64
        || p.tiles_y as i64 != (p.height as u64).div_ceil(TILE as u64) as i64
        || !(1..=4).contains(&p.channels)
    {
        return Err(Error::Cuda(format!("internal error: {p:?}").into()));
    }
    Ok(p.tiles_x as u64 * p.tiles_y as u64)
}

/// `refine_forward_c{1..4}`: one block per tile.
#[allow(clippy::too_many_arguments)]
pub(crate) fn refine_forward(
    rt: &Runtime,
    stream: &CudaStream,
    bins: &super::pipeline::Bins<'_>,
    p: &RefineParams,
    target: &CudaSlice<f32>,
    pix_color: &mut CudaSlice<[f32; 4]>,
    pix_grad: &mut CudaSlice<[f32; 4]>,
    tile_err: &mut CudaSlice<f64>,
    state: &mut CudaSlice<RefineState>,
    step: u32,
) -> Result<()> {
    let (tiles, pixels) = check_tile_pass(bins, p, target)?;
    need("stats", bins.stats.len(), STATS_WORDS as u64)?;
    need("pixel colours", pix_color.len(), pixels)?;
    need("pixel gradients", pix_grad.len(), pixels)?;
    need("tile errors", tile_err.len(), tiles)?;
    need("state", state.len(), 1)?;
    let cfg = grid(tiles, RASTER_THREADS)?;
    let f = rt.function(Kernel::RefineForward(p.channels as u8 - 1))?;
    let mut b = stream.launch_builder(f);
    b.arg(bins.splats)
        .arg(bins.vals)
        .arg(bins.ranges)
        .arg(bins.stats)
        .arg(p)
        .arg(target)
        .arg(pix_color)
        .arg(pix_grad)
        .arg(tile_err)
        .arg(state)
        .arg(&step);
    // SAFETY: matches refine_forward_c*(const Splat*, const unsigned*, const uint2*, const
    // RenderStats*, RefineParams, const float*, float4*, float4*, double*, RefineState*,
    // unsigned). One block per tile (checked against the picture). The kernel returns when
    // stats->pairs > p.capacity; otherwise ranges lie below pairs <= capacity <= vals.len() and
    // every value is a Gaussian index < n = splats.len(). Pixels inside the picture only are
    // read and written, at y * width + x < width * height (checked lengths); [f32; 4] has the
    // size of float4 and device allocations are 256-byte aligned.
    unsafe { b.launch(cfg) }.map_err(driver_err("refine_forward launch"))?;
    Ok(())
}

/// `refine_loss`: one block.
#[allow(clippy::too_many_arguments)]
pub(crate) fn refine_loss(
    rt: &Runtime,
    stream: &CudaStream,
    tile_err: &CudaSlice<f64>,
    p: &RefineParams,
    values: f32,
    step: u32,
    state: &mut CudaSlice<RefineState>,
    history: &mut CudaSlice<f64>,
) -> Result<()> {
    let tiles = check_refine_params(p)?;
    need("tile errors", tile_err.len(), tiles)?;
    need("state", state.len(), 1)?;
    need("history", history.len(), step as u64 + 1)?;
    let cfg = grid(1, LOSS_THREADS)?;
    let f = rt.function(Kernel::RefineLoss)?;
    let mut b = stream.launch_builder(f);
    b.arg(tile_err)
        .arg(p)
        .arg(&values)
        .arg(&step)
        .arg(state)
        .arg(history);
    // SAFETY: matches refine_loss(const double*, RefineParams, float, unsigned, RefineState*,
    // double*); tile_err holds one value per tile and history at least step + 1 (checked).
    unsafe { b.launch(cfg) }.map_err(driver_err("refine_loss launch"))?;
    Ok(())
}

/// `refine_backward_c{1..4}`: one block per tile, gradients into the entries' slots.
#[allow(clippy::too_many_arguments)]
pub(crate) fn refine_backward(
    rt: &Runtime,
    stream: &CudaStream,
    bins: &super::pipeline::Bins<'_>,
    p: &RefineParams,
    pix_color: &CudaSlice<[f32; 4]>,
    pix_grad: &CudaSlice<[f32; 4]>,
    grad_slots: &mut CudaSlice<f32>,
    state: &CudaSlice<RefineState>,
) -> Result<()> {
    let tiles = check_refine_params(p)?;
    let pixels = p.width as u64 * p.height as u64;
    need("tile ranges", bins.ranges.len(), tiles)?;
    need("offsets", bins.offsets.len(), p.n as u64)?;
    need("splats", bins.splats.len(), p.n as u64)?;
    need("pixel colours", pix_color.len(), pixels)?;
    need("pixel gradients", pix_grad.len(), pixels)?;
    need(
        "gradient slots",
        grad_slots.len(),
        p.capacity as u64 * GRAD_N as u64,
    )?;
    need("tile lists", bins.vals.len(), p.capacity as u64)?;
    need("state", state.len(), 1)?;
    let cfg = grid(tiles, RASTER_THREADS)?;
    let f = rt.function(Kernel::RefineBackward(p.channels as u8 - 1))?;
    let mut b = stream.launch_builder(f);
    b.arg(bins.splats)
        .arg(bins.vals)
        .arg(bins.ranges)
        .arg(bins.offsets)
        .arg(p)
        .arg(pix_color)
        .arg(pix_grad)
        .arg(grad_slots)
        .arg(state);
    // SAFETY: matches refine_backward_c*(const Splat*, const unsigned*, const uint2*, const
    // unsigned*, RefineParams, const float4*, const float4*, float*, const RefineState*). The
    // kernel returns after an overflow (the forward kernel of the same step records it before
    // this launch). Otherwise every entry's slot is offsets[g] + j with j below the Gaussian's
    // tile count, so below the entry total <= capacity, and grad_slots holds capacity * GRAD_N.
    unsafe { b.launch(cfg) }.map_err(driver_err("refine_backward launch"))?;
    Ok(())
}

/// `refine_update`: one thread per Gaussian.
#[allow(clippy::too_many_arguments)]
pub(crate) fn refine_update(
    rt: &Runtime,
    stream: &CudaStream,
    latent: &mut CudaSlice<GaussianIn>,
    params: &mut CudaSlice<GaussianIn>,
    best: &mut CudaSlice<GaussianIn>,
    adam: (&mut CudaSlice<f32>, &mut CudaSlice<f32>),
    bins: &super::pipeline::Bins<'_>,
    grad_slots: &CudaSlice<f32>,
    param_grad: &mut CudaSlice<f32>,
    p: &RefineParams,
    u: &UpdateParams,
    state: &CudaSlice<RefineState>,
) -> Result<()> {
    let n = p.n as u64;
    need("latent parameters", latent.len(), n)?;
    need("parameters", params.len(), n)?;
    need("best parameters", best.len(), n)?;
    need("Adam m", adam.0.len(), n * PARAM_N as u64)?;
    need("Adam v", adam.1.len(), n * PARAM_N as u64)?;
    need("counts", bins.counts.len(), n)?;
    need("offsets", bins.offsets.len(), n)?;
    need(
        "gradient slots",
        grad_slots.len(),
        p.capacity as u64 * GRAD_N as u64,
    )?;
    need("parameter gradients", param_grad.len(), n * PARAM_N as u64)?;
    need("state", state.len(), 1)?;
    let cfg = grid(blocks_for(n, UPDATE_THREADS), UPDATE_THREADS)?;
    let f = rt.function(Kernel::RefineUpdate)?;
    let mut b = stream.launch_builder(f);
    b.arg(latent)
        .arg(params)
        .arg(best)
        .arg(adam.0)
        .arg(adam.1)
        .arg(bins.counts)
        .arg(bins.offsets)
        .arg(grad_slots)
        .arg(param_grad)
        .arg(p)
        .arg(u)
        .arg(state);
    // SAFETY: matches refine_update(GaussianIn*, GaussianIn*, GaussianIn*, float*, float*,
    // const unsigned*, const unsigned*, const float*, float*, RefineParams, UpdateParams, const
    // RefineState*).
    // Thread i < n touches index i of the per-Gaussian arrays (lengths checked) and the slots
    // offsets[i] .. offsets[i] + counts[i], below the entry total <= capacity unless the step
    // overflowed, in which case the kernel returns first.
    unsafe { b.launch(cfg) }.map_err(driver_err("refine_update launch"))?;
    Ok(())
}

// ---- Colour fit (kernels/refine.cu, `fit_*`) ------------------------------------------------------

pub(crate) const FIT_THREADS: u32 = 256;

/// Blocks of the per-Gaussian fit kernels for `n` Gaussians (also the number of partial sums).
pub(crate) fn fit_blocks(n: u64) -> u64 {
    blocks_for(n.max(1), FIT_THREADS)
}

/// The fit's vectors: colours `x` (and where they started), residual `r`, direction `p`,
/// product `q` (n entries each), the per-block partial sums and the scalars (dot products by
/// slot: `r·r` of the current and the next residual, alternating, `p·q`, `r·r` at the start).
pub(crate) struct FitVectors<'a> {
    pub x: &'a mut CudaSlice<[f64; 4]>,
    pub start: &'a mut CudaSlice<[f64; 4]>,
    pub r: &'a mut CudaSlice<[f64; 4]>,
    pub p: &'a mut CudaSlice<[f64; 4]>,
    pub q: &'a mut CudaSlice<[f64; 4]>,
    pub partial: &'a mut CudaSlice<[f64; 4]>,
    pub scalars: &'a mut CudaSlice<[f64; 4]>,
}

/// Slots of `FitVectors::scalars`.
pub(crate) const FIT_SCALARS: usize = 4;
/// The slot of `p·q` (`FIT_PQ` in refine.cu).
pub(crate) const FIT_PQ: u32 = 2;
/// The slot of the start's `r·r` (`FIT_RR0` in refine.cu).
pub(crate) const FIT_RR0: u32 = 3;

fn check_fit(
    n: u64,
    v: &FitVectors<'_>,
    bins: Option<(&super::pipeline::Bins<'_>, &CudaSlice<f32>, u32)>,
) -> Result<()> {
    need("fit x", v.x.len(), n)?;
    need("fit start", v.start.len(), n)?;
    need("fit r", v.r.len(), n)?;
    need("fit p", v.p.len(), n)?;
    need("fit q", v.q.len(), n)?;
    need("fit partial sums", v.partial.len(), fit_blocks(n))?;
    need("fit scalars", v.scalars.len(), FIT_SCALARS as u64)?;
    if let Some((bins, slots, capacity)) = bins {
        need("counts", bins.counts.len(), n)?;
        need("offsets", bins.offsets.len(), n)?;
        need(
            "gradient slots",
            slots.len(),
            capacity as u64 * GRAD_N as u64,
        )?;
    }
    Ok(())
}

/// `fit_start`: one thread per Gaussian.
#[allow(clippy::too_many_arguments)]
pub(crate) fn fit_start(
    rt: &Runtime,
    stream: &CudaStream,
    params: &mut CudaSlice<GaussianIn>,
    bins: &super::pipeline::Bins<'_>,
    grad_slots: &CudaSlice<f32>,
    v: &mut FitVectors<'_>,
    p: &RefineParams,
    state: &CudaSlice<RefineState>,
) -> Result<()> {
    let n = p.n as u64;
    need("parameters", params.len(), n)?;
    need("state", state.len(), 1)?;
    check_fit(n, v, Some((bins, grad_slots, p.capacity)))?;
    let cfg = grid(fit_blocks(n), FIT_THREADS)?;
    let f = rt.function(Kernel::FitStart)?;
    let mut b = stream.launch_builder(f);
    b.arg(params)
        .arg(bins.counts)
        .arg(bins.offsets)
        .arg(grad_slots)
        .arg(&mut *v.x)
        .arg(&mut *v.start)
        .arg(&mut *v.r)
        .arg(&mut *v.p)
        .arg(&mut *v.partial)
        .arg(&p.n)
        .arg(&p.channels)
        .arg(state);
    // SAFETY: matches fit_start(GaussianIn*, const unsigned*, const unsigned*, const float*,
    // Dbl4*, Dbl4*, Dbl4*, Dbl4*, Dbl4*, unsigned, int, const RefineState*). Thread i < n touches index
    // i of the per-Gaussian arrays (lengths checked; [f64; 4] has Dbl4's layout) and, unless the
    // lists overflowed (then it reads none), the slots offsets[i] .. offsets[i] + counts[i],
    // below the entry total <= capacity; block b writes partial[b], b < fit_blocks(n).
    unsafe { b.launch(cfg) }.map_err(driver_err("fit_start launch"))?;
    Ok(())
}

/// `fit_product`: one thread per Gaussian.
pub(crate) fn fit_product(
    rt: &Runtime,
    stream: &CudaStream,
    bins: &super::pipeline::Bins<'_>,
    grad_slots: &CudaSlice<f32>,
    v: &mut FitVectors<'_>,
    p: &RefineParams,
    state: &CudaSlice<RefineState>,
) -> Result<()> {
    let n = p.n as u64;
    need("state", state.len(), 1)?;
    check_fit(n, v, Some((bins, grad_slots, p.capacity)))?;
    let cfg = grid(fit_blocks(n), FIT_THREADS)?;
    let f = rt.function(Kernel::FitProduct)?;
    let mut b = stream.launch_builder(f);
    b.arg(bins.counts)
        .arg(bins.offsets)
        .arg(grad_slots)
        .arg(&*v.p)
        .arg(&mut *v.q)
        .arg(&mut *v.partial)
        .arg(&p.n)
        .arg(&p.channels)
        .arg(state);
    // SAFETY: matches fit_product(const unsigned*, const unsigned*, const float*, const Dbl4*,
    // Dbl4*, Dbl4*, unsigned, int, const RefineState*); bounds as fit_start.
    unsafe { b.launch(cfg) }.map_err(driver_err("fit_product launch"))?;
    Ok(())
}

/// `fit_reduce`: one block; the partial sums of `n` Gaussians' blocks into `scalars[slot]`.
pub(crate) fn fit_reduce(
    rt: &Runtime,
    stream: &CudaStream,
    v: &mut FitVectors<'_>,
    n: u32,
    slot: u32,
) -> Result<()> {
    check_fit(n as u64, v, None)?;
    if slot as usize >= FIT_SCALARS {
        return Err(Error::Cuda("internal error: no such fit scalar".into()));
    }
    let blocks = fit_blocks(n as u64) as u32;
    let f = rt.function(Kernel::FitReduce)?;
    let mut b = stream.launch_builder(f);
    b.arg(&*v.partial)
        .arg(&blocks)
        .arg(&mut *v.scalars)
        .arg(&slot);
    // SAFETY: matches fit_reduce(const Dbl4*, unsigned, Dbl4*, unsigned): reads partial[0 ..
    // blocks) (length checked) and writes scalars[slot], slot < FIT_SCALARS (checked).
    unsafe { b.launch(grid(1, FIT_THREADS)?) }.map_err(driver_err("fit_reduce launch"))?;
    Ok(())
}

/// `fit_step`: one thread per Gaussian.
pub(crate) fn fit_step(
    rt: &Runtime,
    stream: &CudaStream,
    v: &mut FitVectors<'_>,
    n: u32,
    rr_slot: u32,
) -> Result<()> {
    check_fit(n as u64, v, None)?;
    if rr_slot as usize >= FIT_SCALARS {
        return Err(Error::Cuda("internal error: no such fit scalar".into()));
    }
    let cfg = grid(fit_blocks(n as u64), FIT_THREADS)?;
    let f = rt.function(Kernel::FitStep)?;
    let mut b = stream.launch_builder(f);
    b.arg(&mut *v.x)
        .arg(&mut *v.r)
        .arg(&*v.p)
        .arg(&*v.q)
        .arg(&*v.scalars)
        .arg(&rr_slot)
        .arg(&mut *v.partial)
        .arg(&n);
    // SAFETY: matches fit_step(Dbl4*, Dbl4*, const Dbl4*, const Dbl4*, const Dbl4*, unsigned,
    // Dbl4*, unsigned): thread i < n touches index i of x, r, p, q; scalars at slots below
    // FIT_SCALARS (checked); block b writes partial[b] (lengths checked).
    unsafe { b.launch(cfg) }.map_err(driver_err("fit_step launch"))?;
    Ok(())
}

/// `fit_direction`: one thread per Gaussian.
pub(crate) fn fit_direction(
    rt: &Runtime,
    stream: &CudaStream,
    params: &mut CudaSlice<GaussianIn>,
    v: &mut FitVectors<'_>,
    n: u32,
    new_slot: u32,
    old_slot: u32,
) -> Result<()> {
    need("parameters", params.len(), n as u64)?;
    check_fit(n as u64, v, None)?;
    if new_slot.max(old_slot) as usize >= FIT_SCALARS {
        return Err(Error::Cuda("internal error: no such fit scalar".into()));
    }
    let cfg = grid(fit_blocks(n as u64), FIT_THREADS)?;
    let f = rt.function(Kernel::FitDirection)?;
    let mut b = stream.launch_builder(f);
    b.arg(params)
        .arg(&*v.r)
        .arg(&mut *v.p)
        .arg(&*v.scalars)
        .arg(&new_slot)
        .arg(&old_slot)
        .arg(&n);
    // SAFETY: matches fit_direction(GaussianIn*, const Dbl4*, Dbl4*, const Dbl4*, unsigned,
    // unsigned, unsigned): thread i < n touches index i of params, r and p (lengths checked);
    // scalars at two checked slots.
    unsafe { b.launch(cfg) }.map_err(driver_err("fit_direction launch"))?;
    Ok(())
}

/// `fit_finish`: one thread per Gaussian.
#[allow(clippy::too_many_arguments)]
pub(crate) fn fit_finish(
    rt: &Runtime,
    stream: &CudaStream,
    params: &mut CudaSlice<GaussianIn>,
    x: &CudaSlice<[f64; 4]>,
    start: &CudaSlice<[f64; 4]>,
    n: u32,
    channels: i32,
    clamp: (f32, f32),
) -> Result<()> {
    need("parameters", params.len(), n as u64)?;
    need("fit x", x.len(), n as u64)?;
    need("fit start", start.len(), n as u64)?;
    let cfg = grid(fit_blocks(n as u64), FIT_THREADS)?;
    let f = rt.function(Kernel::FitFinish)?;
    let mut b = stream.launch_builder(f);
    b.arg(params)
        .arg(x)
        .arg(start)
        .arg(&n)
        .arg(&channels)
        .arg(&clamp.0)
        .arg(&clamp.1);
    // SAFETY: matches fit_finish(GaussianIn*, const Dbl4*, const Dbl4*, unsigned, int, float,
    // float): thread i < n touches index i of params, x and start (lengths checked).
    unsafe { b.launch(cfg) }.map_err(driver_err("fit_finish launch"))?;
    Ok(())
}

/// Threads per block of `moves_gather` (`GATHER_THREADS` in refine.cu).
pub(crate) const GATHER_THREADS: u32 = 256;

/// `moves_blend_c{1..4}`: one block per tile; per pixel the blend's numerator and (weight sum,
/// squared error, 0, 0).
#[allow(clippy::too_many_arguments)]
pub(crate) fn moves_blend(
    rt: &Runtime,
    stream: &CudaStream,
    bins: &super::pipeline::Bins<'_>,
    p: &RefineParams,
    target: &CudaSlice<f32>,
    pix_num: &mut CudaSlice<[f32; 4]>,
    pix_den_err: &mut CudaSlice<[f32; 4]>,
    state: &mut CudaSlice<RefineState>,
) -> Result<()> {
    let (tiles, pixels) = check_tile_pass(bins, p, target)?;
    need("stats", bins.stats.len(), STATS_WORDS as u64)?;
    need("pixel numerators", pix_num.len(), pixels)?;
    need("pixel weight sums", pix_den_err.len(), pixels)?;
    need("state", state.len(), 1)?;
    let cfg = grid(tiles, RASTER_THREADS)?;
    let f = rt.function(Kernel::MovesBlend(p.channels as u8 - 1))?;
    let mut b = stream.launch_builder(f);
    b.arg(bins.splats)
        .arg(bins.vals)
        .arg(bins.ranges)
        .arg(bins.stats)
        .arg(p)
        .arg(target)
        .arg(pix_num)
        .arg(pix_den_err)
        .arg(state);
    // SAFETY: matches moves_blend_c*(const Splat*, const unsigned*, const uint2*, const
    // RenderStats*, RefineParams, const float*, float4*, float4*, RefineState*). One block per
    // tile; the kernel returns when stats->pairs > p.capacity, otherwise ranges lie below
    // pairs <= capacity <= vals.len() and every value is a Gaussian index < n. Pixels inside
    // the picture only are read and written (checked lengths).
    unsafe { b.launch(cfg) }.map_err(driver_err("moves_blend launch"))?;
    Ok(())
}

/// `moves_cost_c{1..4}`: one block per tile, each entry's removal cost into its slot.
#[allow(clippy::too_many_arguments)]
pub(crate) fn moves_cost(
    rt: &Runtime,
    stream: &CudaStream,
    bins: &super::pipeline::Bins<'_>,
    p: &RefineParams,
    target: &CudaSlice<f32>,
    pix_num: &CudaSlice<[f32; 4]>,
    pix_den_err: &CudaSlice<[f32; 4]>,
    cost_slots: &mut CudaSlice<f64>,
    state: &CudaSlice<RefineState>,
) -> Result<()> {
    let (tiles, pixels) = check_tile_pass(bins, p, target)?;
    need("offsets", bins.offsets.len(), p.n as u64)?;
    need("splats", bins.splats.len(), p.n as u64)?;
    need("pixel numerators", pix_num.len(), pixels)?;
    need("pixel weight sums", pix_den_err.len(), pixels)?;
    need("cost slots", cost_slots.len(), p.capacity as u64)?;
    need("state", state.len(), 1)?;
    let cfg = grid(tiles, RASTER_THREADS)?;
    let f = rt.function(Kernel::MovesCost(p.channels as u8 - 1))?;
    let mut b = stream.launch_builder(f);
    b.arg(bins.splats)
        .arg(bins.vals)
        .arg(bins.ranges)
        .arg(bins.offsets)
        .arg(p)
        .arg(target)
        .arg(pix_num)
        .arg(pix_den_err)
        .arg(cost_slots)
        .arg(state);
    // SAFETY: matches moves_cost_c*(const Splat*, const unsigned*, const uint2*, const
    // unsigned*, RefineParams, const float*, const float4*, const float4*, double*, const
    // RefineState*). The kernel returns after an overflow (moves_blend of the same lists
    // records it first). Otherwise every entry's slot is offsets[g] + j with j below the
    // Gaussian's tile count, so below the entry total <= capacity <= cost_slots.len().
    unsafe { b.launch(cfg) }.map_err(driver_err("moves_cost launch"))?;
    Ok(())
}

/// `moves_gather`: one thread per Gaussian, its slots' costs summed in tile order.
pub(crate) fn moves_gather(
    rt: &Runtime,
    stream: &CudaStream,
    bins: &super::pipeline::Bins<'_>,
    p: &RefineParams,
    cost_slots: &CudaSlice<f64>,
    cost: &mut CudaSlice<f64>,
    state: &CudaSlice<RefineState>,
) -> Result<()> {
    let n = p.n as u64;
    need("counts", bins.counts.len(), n)?;
    need("offsets", bins.offsets.len(), n)?;
    need("cost slots", cost_slots.len(), p.capacity as u64)?;
    need("costs", cost.len(), n)?;
    need("state", state.len(), 1)?;
    let cfg = grid(blocks_for(n, GATHER_THREADS), GATHER_THREADS)?;
    let f = rt.function(Kernel::MovesGather)?;
    let mut b = stream.launch_builder(f);
    b.arg(bins.counts)
        .arg(bins.offsets)
        .arg(cost_slots)
        .arg(cost)
        .arg(&p.n)
        .arg(state);
    // SAFETY: matches moves_gather(const unsigned*, const unsigned*, const double*, double*,
    // unsigned, const RefineState*): thread i < n reads counts[i], offsets[i] and, unless the
    // lists overflowed (then it reads none), the slots offsets[i] .. offsets[i] + counts[i],
    // below the entry total <= capacity; it writes cost[i] (lengths checked).
    unsafe { b.launch(cfg) }.map_err(driver_err("moves_gather launch"))?;
    Ok(())
}
