// Stage 3: per-tile rasterization (format-spec.md §3.4-3.5).
//
// Launch: one block per tile, tile t = tile_base + blockIdx.x (row-major), RASTER_THREADS = 256
// threads, one per pixel of the 16 x 16 tile. A render launches all tiles_x * tiles_y tiles at
// once, or in batches of consecutive tiles (tile_base > 0) so that it can be cancelled between
// them. Warp w covers the 8 x 4 pixels at column 8 * (w % 2),
// row 4 * (w / 2) of the tile; lane l is pixel (l % 8, l / 8) of that block, so a Gaussian whose
// box misses the warp's 8 x 4 pixels is skipped by the whole warp at once.
//
// The tile's list (bin.cu) is walked in batches of RASTER_BATCH Gaussians (blend.cuh): thread k
// copies the k-th Gaussian of the batch into shared memory, then every thread adds the batch to
// its pixel in list order, which is file order. Batches repeat until the list ends: no cap per
// tile.
//
// The arithmetic is the CPU renderer's (src/render/cpu.rs blend_span) in the same order, with
// explicit round-to-nearest intrinsics so nothing is fused: q and the sums match bit for bit, and
// only expf (2 ulp here, libm there) can differ. A pixel evaluates a Gaussian only inside its
// bounding box, as the CPU does.
#include "blend.cuh"

template <typename T>
struct SampleOut;

// §3.5: floor(clamp(v, 0, 1) * 255 + 1/2), in binary32 as the CPU's Sample for u8.
template <>
struct SampleOut<unsigned char> {
    __device__ __forceinline__ static unsigned char from(float v) {
        const float c = fminf(fmaxf(v, 0.0f), 1.0f);
        return (unsigned char)__float2uint_rz(__fadd_rn(__fmul_rn(c, 255.0f), 0.5f));
    }
};

template <>
struct SampleOut<float> {
    __device__ __forceinline__ static float from(float v) { return v; }
};

template <int C, typename T>
__device__ __forceinline__ void rasterize_tile(const Splat* __restrict__ splats,
                                               const unsigned int* __restrict__ tile_vals,
                                               const uint2* __restrict__ ranges,
                                               const RenderStats* __restrict__ stats,
                                               const RasterParams& p,
                                               unsigned char* __restrict__ out,
                                               const unsigned int tile_base) {
    // Over a limit: blend nothing, but still write every pixel (zeros), so the output the host
    // may already be copying back is initialized; the host reports the limit or renders again
    // with larger lists.
    const bool over = stats->work > p.max_work || stats->pairs > p.capacity;

    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int tile = (int)(tile_base + blockIdx.x);
    const int tile_x0 = (tile % p.tiles_x) * TILE_W, tile_y0 = (tile / p.tiles_x) * TILE_H;
    // The warp's 8 x 4 pixel block and this thread's pixel, region-relative.
    const int wx0 = tile_x0 + (warp & 1) * WARP_PX_W, wy0 = tile_y0 + (warp >> 1) * WARP_PX_H;
    const int wx1 = wx0 + WARP_PX_W - 1, wy1 = wy0 + WARP_PX_H - 1;
    const int px = wx0 + (lane % WARP_PX_W), py = wy0 + (lane / WARP_PX_W);
    // Pixel centre in full-output coordinates, as the CPU: (x as f32 + 0.5).
    const float fx = __fadd_rn((float)(p.region_x + px), 0.5f);
    const float fy = __fadd_rn((float)(p.region_y + py), 0.5f);

    float acc[C];
    float den;
    const uint2 range = over ? make_uint2(0u, 0u) : ranges[tile];
    blend_pixel<C>(splats, tile_vals, range, px, py, wx0, wy0, wx1, wy1, fx, fy, acc, den);

    if (px >= p.region_w || py >= p.region_h) return;
    const float d = fmaxf(den, MIN_WEIGHT_SUM);
    float v[4];
#pragma unroll
    for (int k = 0; k < C; ++k) v[k] = __fdiv_rn(acc[k], d);
    T* row = (T*)(out + (unsigned long long)py * p.out_pitch);
    if (p.expand_rgba) {
        // Gray -> (g, g, g), no alpha -> 1.
        const float r = v[0];
        const float gch = C >= 3 ? v[1] : v[0];
        const float bch = C >= 3 ? v[2] : v[0];
        const float a = C == 2 ? v[1] : (C == 4 ? v[3] : 1.0f);
        T* o = row + (unsigned long long)px * 4;
        o[0] = SampleOut<T>::from(r);
        o[1] = SampleOut<T>::from(gch);
        o[2] = SampleOut<T>::from(bch);
        o[3] = SampleOut<T>::from(a);
    } else {
        T* o = row + (unsigned long long)px * C;
#pragma unroll
        for (int k = 0; k < C; ++k) o[k] = SampleOut<T>::from(v[k]);
    }
}

// One kernel per (sample type, channel count), named like their Rust wrapper's table entries.
#define DEFINE_RASTERIZE(NAME, C, T)                                                           \
    extern "C" __global__ void __launch_bounds__(RASTER_THREADS)                               \
        NAME(const Splat* __restrict__ splats,           /* [n] projected */                  \
             const unsigned int* __restrict__ tile_vals, /* [pairs] Gaussian per entry */     \
             const uint2* __restrict__ ranges,           /* [tiles] (start, end) */           \
             const RenderStats* __restrict__ stats,                                           \
             const RasterParams p,                                                            \
             unsigned char* __restrict__ out,            /* region_h rows of out_pitch B */   \
             const unsigned int tile_base) {             /* tile of block 0 */                \
        rasterize_tile<C, T>(splats, tile_vals, ranges, stats, p, out, tile_base);            \
    }

DEFINE_RASTERIZE(rasterize_u8_c1, 1, unsigned char)
DEFINE_RASTERIZE(rasterize_u8_c2, 2, unsigned char)
DEFINE_RASTERIZE(rasterize_u8_c3, 3, unsigned char)
DEFINE_RASTERIZE(rasterize_u8_c4, 4, unsigned char)
DEFINE_RASTERIZE(rasterize_f32_c1, 1, float)
DEFINE_RASTERIZE(rasterize_f32_c2, 2, float)
DEFINE_RASTERIZE(rasterize_f32_c3, 3, float)
DEFINE_RASTERIZE(rasterize_f32_c4, 4, float)
