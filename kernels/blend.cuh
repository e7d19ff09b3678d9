// The normalized blend of one pixel (format-spec.md §3.4): the tile's Gaussians, walked in
// batches staged in shared memory, added in list order (file order) with explicit
// round-to-nearest operations, as src/render/cpu.rs blend_span adds them. Shared by the
// rasterizer and the refinement's forward pass, so both give the same sums.
//
// Every thread of the block must call it with the same `range` (it has barriers). A Gaussian
// whose box misses the warp's pixel block (wx0..wx1, wy0..wy1) is skipped by the whole warp;
// otherwise the pixel (px, py), centre (fx, fy), evaluates it inside the box only.
// Shared memory, per batch slot (RASTER_BATCH = 256 slots, 14 KB):
//   s_geo[k]   float4  mx, my, a, 2b
//   s_geo2[k]  float2  c, amplitude
//   s_box[k]   int4    bounding box (region-relative, inclusive)
//   s_col[k]   float4  channel values
#pragma once
#include "common.cuh"

template <int C>
__device__ __forceinline__ void blend_pixel(const Splat* __restrict__ splats,
                                            const unsigned int* __restrict__ tile_vals,
                                            const uint2 range, const int px, const int py,
                                            const int wx0, const int wy0, const int wx1,
                                            const int wy1, const float fx, const float fy,
                                            float (&acc)[C], float& den) {
    __shared__ float4 s_geo[RASTER_BATCH];
    __shared__ float2 s_geo2[RASTER_BATCH];
    __shared__ int4 s_box[RASTER_BATCH];
    __shared__ float4 s_col[RASTER_BATCH];
    const int tid = threadIdx.x;
#pragma unroll
    for (int k = 0; k < C; ++k) acc[k] = 0.0f;
    den = 0.0f;
    for (unsigned int b = range.x; b < range.y; b += RASTER_BATCH) {
        const unsigned int count = min(range.y - b, (unsigned int)RASTER_BATCH);
        if ((unsigned int)tid < count) {
            const Splat s = splats[tile_vals[b + tid]];
            s_geo[tid] = s.geo;
            s_geo2[tid] = make_float2(s.geo2.x, s.geo2.y);
            s_box[tid] = s.box;
            s_col[tid] = s.color;
        }
        __syncthreads();
        for (unsigned int j = 0; j < count; ++j) {
            const int4 box = s_box[j];
            // Whole warp outside the box: skip without evaluating (warp-uniform branch).
            if (box.x > wx1 || box.z < wx0 || box.y > wy1 || box.w < wy0) continue;
            if (px < box.x || px > box.z || py < box.y || py > box.w) continue;
            const float4 g = s_geo[j];
            const float2 g2 = s_geo2[j];
            const float dx = __fsub_rn(fx, g.x);
            const float dy = __fsub_rn(fy, g.y);
            const float bdy2 = __fmul_rn(g.w, dy);
            const float cdy2 = __fmul_rn(__fmul_rn(g2.x, dy), dy);
            const float q = __fadd_rn(__fadd_rn(__fmul_rn(__fmul_rn(g.z, dx), dx),
                                                __fmul_rn(bdy2, dx)),
                                      cdy2);
            if (q <= CUTOFF_Q) {
                const float w = __fmul_rn(g2.y, expf(__fmul_rn(-0.5f, q)));
                const float4 col = s_col[j];
                const float cv[4] = {col.x, col.y, col.z, col.w};
#pragma unroll
                for (int k = 0; k < C; ++k) acc[k] = __fadd_rn(acc[k], __fmul_rn(w, cv[k]));
                den = __fadd_rn(den, w);
            }
        }
        __syncthreads();
    }
}
