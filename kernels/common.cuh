// gsimg CUDA kernels: constants, parameter structs and small helpers shared by every stage.
//
// The pipeline (one .cu file per stage, launched in this order by src/cuda/launch.rs):
//
//   project.cu    project_gaussians   one thread per Gaussian: format-spec.md §3.2-3.3 in double,
//                                     stored as float; bounding box clipped to the region; tiles hit
//   bin.cu        scan_blocks/scan_add           exclusive prefix sum of the tiles per Gaussian
//                 emit_pairs                     (tile, Gaussian) pairs in file order
//                 radix_histogram/radix_scan/radix_scatter   stable LSD radix sort by tile
//                 tile_ranges                    [start, end) of each tile's list
//   rasterize.cu  rasterize_{u8,f32}_c{1..4}      one block per tile, §3.4-3.5, file order per pixel
//
// Every struct here is mirrored field for field by a #[repr(C)] struct in src/cuda/launch.rs; a
// CPU test (tests/cuda.rs) checks that the constants below equal src/render/project.rs.
#pragma once

// ---------------------------------------------------------------------------------------------
// The rendering rule (format-spec.md §3), identical to src/render/project.rs.
// ---------------------------------------------------------------------------------------------

// Variance of the anti-aliasing prefilter, output px^2 (§3.3): a one-pixel box has variance 1/12.
#define PREFILTER_VARIANCE (1.0 / 12.0)
// A Gaussian reaches a pixel only where q <= CUTOFF_Q (q = squared Mahalanobis distance): 3 sigma.
#define CUTOFF_Q 9.0f
// Smallest denominator of the normalized sum (§3.4): 2^-40, exact in binary32.
#define MIN_WEIGHT_SUM 0x1p-40f
// Bounding boxes are clamped to +-2^40 px before clipping (as clamp_i64 in project.rs): output
// coordinates stay below 2^32, so anything further out is equally "off the image".
#define COORD_LIMIT 1099511627776.0

// ---------------------------------------------------------------------------------------------
// Tiling and launch shapes.
// ---------------------------------------------------------------------------------------------

// Raster tile: 16 x 16 output pixels, one thread per pixel (256 threads = 8 warps of 8 x 4 px).
#define TILE_W 16
#define TILE_H 16
#define RASTER_THREADS (TILE_W * TILE_H)
// Gaussians staged in shared memory per batch: one per thread, so one load round per batch.
#define RASTER_BATCH RASTER_THREADS
// A warp covers WARP_PX_W x WARP_PX_H pixels of its tile: 2 warps across, 4 down.
#define WARP_PX_W 8
#define WARP_PX_H 4

#define PROJECT_THREADS 256
#define EMIT_THREADS 256
// Gaussians touching more tiles than this are written by their whole warp, 32 entries per step,
// so one huge Gaussian does not serialize on one thread.
#define EMIT_WARP_THRESHOLD 32

// Block scan: 256 threads x 8 consecutive items = 2048 items per block.
#define SCAN_THREADS 256
#define SCAN_PER_THREAD 8
#define SCAN_BLOCK_ITEMS (SCAN_THREADS * SCAN_PER_THREAD)

// Radix sort of tile keys: 8-bit digits (256 buckets), 256 threads per block (8 warps), and a
// single 1024-thread block that scans the digit-major histogram in chunks of 1024 x 8 entries.
#define RADIX_BITS 8
#define RADIX_BUCKETS (1 << RADIX_BITS)
#define RADIX_THREADS 256
#define RADIX_WARPS (RADIX_THREADS / 32)
#define RADIX_SCAN_THREADS 1024
#define RADIX_SCAN_PER_THREAD 8

#define RANGES_THREADS 256

#define FULL_MASK 0xffffffffu

// ---------------------------------------------------------------------------------------------
// Structs shared with the host (mirrored in src/cuda/launch.rs; sizes checked there).
// ---------------------------------------------------------------------------------------------

// One Gaussian as uploaded, file order. 36 bytes. Native pixels; rotation in radians.
struct GaussianIn {
    float x, y;            // centre
    float scale1, scale2;  // sigma_1, sigma_2 > 0
    float rotation;        // theta
    float color[4];        // channel values; entries past the layout's count are 0
};

// One projected Gaussian (device only). 64 bytes, 16-byte aligned for vector loads.
struct __align__(16) Splat {
    float4 geo;    // mx, my (full-output px), conic a, 2b (2b is exact: a power-of-two scaling)
    float4 geo2;   // conic c, amplitude, unused, unused
    int4 box;      // inclusive bounding box x0, y0, x1, y1, region-relative px; empty: x0 > x1
    float4 color;  // channel values
};

// Per-render parameters of project_gaussians. 56 bytes.
struct ProjectParams {
    double sx, sy;                  // output / native scale factors
    long long region_x, region_y;   // region origin in the full output, px
    int region_w, region_h;         // region size, px; region_w * region_h < 2^32
    int tiles_x, tiles_y;           // tiles covering the region
    unsigned int n;                 // Gaussians
    unsigned int pad;
};

// Per-render parameters of the rasterizer. 56 bytes.
struct RasterParams {
    long long region_x, region_y;   // region origin in the full output, px
    int region_w, region_h;         // region size, px
    int tiles_x, tiles_y;           // tiles covering the region
    unsigned long long out_pitch;   // bytes from one output row to the next
    unsigned long long max_work;    // Limits::max_render_work; above it nothing is drawn
    unsigned int capacity;          // tile-list entries allocated; above it nothing is drawn
    int expand_rgba;                // 1: write 4 channels (gray -> grey RGB, missing alpha -> 1)
};

// Counters written on the device and read back after the render. 16 bytes, zeroed per render.
struct RenderStats {
    unsigned long long work;  // sum of clipped bounding-box areas ("render work", as the CPU)
    unsigned int pairs;       // tile-list entries needed (saturating at 2^32 - 1)
    unsigned int pad;
};

// ---------------------------------------------------------------------------------------------
// Helpers.
// ---------------------------------------------------------------------------------------------

// Saturating add: associative on unsigned values, so a saturating scan stays a scan, and a total
// that overflowed 32 bits reads as 0xffffffff (always over capacity).
__device__ __forceinline__ unsigned int sat_add(unsigned int a, unsigned int b) {
    unsigned int s = a + b;
    return s < a ? 0xffffffffu : s;
}

// Shared-memory index with one padding word per 32, so that both a warp reading 32 consecutive
// items and a warp reading one item every 8 (each thread's run of SCAN_PER_THREAD) hit 32
// different banks.
__device__ __forceinline__ unsigned int padded(unsigned int i) { return i + (i >> 5); }

// Inclusive saturating scan across a warp.
__device__ __forceinline__ unsigned int warp_inclusive_scan(unsigned int v, unsigned int lane) {
#pragma unroll
    for (unsigned int d = 1; d < 32; d <<= 1) {
        unsigned int o = __shfl_up_sync(FULL_MASK, v, d);
        if (lane >= d) v = sat_add(v, o);
    }
    return v;
}

// Exclusive saturating scan of THREADS * PER items held in shared memory at padded() indices,
// each thread owning PER consecutive items. `carry` is added to every result; returns carry +
// the block total. `s_warp` holds THREADS / 32 words. Must be called by every thread of the
// block; starts and ends with a barrier.
template <int THREADS, int PER>
__device__ __forceinline__ unsigned int block_exclusive_scan(unsigned int* s_items,
                                                             unsigned int* s_warp,
                                                             unsigned int carry) {
    const unsigned int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    constexpr unsigned int WARPS = THREADS / 32;
    __syncthreads();
    unsigned int local[PER];
    unsigned int sum = 0;
#pragma unroll
    for (int k = 0; k < PER; ++k) {
        local[k] = s_items[padded(tid * PER + k)];
        sum = sat_add(sum, local[k]);
    }
    unsigned int incl = warp_inclusive_scan(sum, lane);
    unsigned int excl = __shfl_up_sync(FULL_MASK, incl, 1);
    if (lane == 0) excl = 0;
    if (lane == 31) s_warp[warp] = incl;
    __syncthreads();
    if (warp == 0) {
        unsigned int v = lane < WARPS ? s_warp[lane] : 0;
        unsigned int w = warp_inclusive_scan(v, lane);
        if (lane < WARPS) s_warp[lane] = w;
    }
    __syncthreads();
    unsigned int run = sat_add(carry, sat_add(warp > 0 ? s_warp[warp - 1] : 0, excl));
    const unsigned int total = sat_add(carry, s_warp[WARPS - 1]);
#pragma unroll
    for (int k = 0; k < PER; ++k) {
        s_items[padded(tid * PER + k)] = run;
        run = sat_add(run, local[k]);
    }
    __syncthreads();
    return total;
}
