// Stage 1: per-Gaussian preparation (format-spec.md §3.2-3.3), mirroring
// src/render/project.rs::project line by line: every quantity in double, in the same order of
// operations (the PTX is built with -fmad=false, so nothing is fused), then rounded to float.
//
// Launch: grid = ceil(n / PROJECT_THREADS) blocks of PROJECT_THREADS threads, thread i handles
// Gaussian i. No shared memory except the PROJECT_THREADS / 32 words of the work reduction.
#include "common.cuh"

// Clamps a bounding-box coordinate to +-2^40 and converts it (project.rs clamp_i64).
__device__ __forceinline__ long long clamp_coord(double v) {
    return (long long)fmin(fmax(v, -COORD_LIMIT), COORD_LIMIT);
}

extern "C" __global__ void __launch_bounds__(PROJECT_THREADS)
project_gaussians(const GaussianIn* __restrict__ gaussians,  // [n], file order
                  const ProjectParams p,
                  Splat* __restrict__ splats,                // [n] out
                  unsigned int* __restrict__ tile_counts,    // [n] out: tiles hit (0: culled)
                  RenderStats* __restrict__ stats) {         // work += clipped box areas
    __shared__ unsigned long long s_work[PROJECT_THREADS / 32];
    const unsigned int i = blockIdx.x * PROJECT_THREADS + threadIdx.x;
    unsigned long long work = 0;
    if (i < p.n) {
        const GaussianIn g = gaussians[i];
        // §3.2: covariance in native px^2 (splat.rs Gaussian::covariance).
        const double s1 = g.scale1, s2 = g.scale2;
        const double v1 = s1 * s1, v2 = s2 * s2;
        double sn, cs;
        sincos((double)g.rotation, &sn, &cs);
        const double xx = v1 * cs * cs + v2 * sn * sn;
        const double yy = v1 * sn * sn + v2 * cs * cs;
        const double xy = (v1 - v2) * sn * cs;
        // §3.3: S Sigma S + lambda I, in output px^2.
        const double oxx = p.sx * p.sx * xx + PREFILTER_VARIANCE;
        const double oyy = p.sy * p.sy * yy + PREFILTER_VARIANCE;
        const double oxy = p.sx * p.sy * xy;
        const double det = oxx * oyy - oxy * oxy;
        const double d0 = p.sx * p.sy * s1 * s2;
        const double det0 = d0 * d0;
        const double amp = sqrt(det0 / det);
        const double mx = p.sx * (double)g.x;
        const double my = p.sy * (double)g.y;
        const double rx = 3.0 * sqrt(oxx);
        const double ry = 3.0 * sqrt(oyy);
        // Pixel u is inside when |u + 0.5 - mx| <= rx; full-output coordinates, then clipped.
        const long long rx0 = p.region_x, ry0 = p.region_y;
        const long long rx1 = rx0 + p.region_w - 1, ry1 = ry0 + p.region_h - 1;
        const long long bx0 = max(clamp_coord(ceil(mx - rx - 0.5)), rx0);
        const long long by0 = max(clamp_coord(ceil(my - ry - 0.5)), ry0);
        const long long bx1 = min(clamp_coord(floor(mx + rx - 0.5)), rx1);
        const long long by1 = min(clamp_coord(floor(my + ry - 0.5)), ry1);

        Splat s;
        const float b = (float)(-oxy / det);
        s.geo = make_float4((float)mx, (float)my, (float)(oyy / det), 2.0f * b);
        s.geo2 = make_float4((float)(oxx / det), (float)amp, 0.0f, 0.0f);
        s.color = make_float4(g.color[0], g.color[1], g.color[2], g.color[3]);
        unsigned int count = 0;
        if (bx0 <= bx1 && by0 <= by1) {
            // Region-relative box: inside [0, region_w) x [0, region_h), so it fits an int.
            s.box = make_int4((int)(bx0 - rx0), (int)(by0 - ry0), (int)(bx1 - rx0),
                              (int)(by1 - ry0));
            const unsigned int tw = (unsigned int)(s.box.z / TILE_W - s.box.x / TILE_W + 1);
            const unsigned int th = (unsigned int)(s.box.w / TILE_H - s.box.y / TILE_H + 1);
            count = tw * th;  // <= tiles_x * tiles_y < 2^24
            work = (unsigned long long)(bx1 - bx0 + 1) * (unsigned long long)(by1 - by0 + 1);
        } else {
            s.box = make_int4(1, 1, 0, 0);
        }
        splats[i] = s;
        tile_counts[i] = count;
    }
    // Block sum of the work (each term < 2^32, at most 2^26 Gaussians: no overflow), one atomic
    // per block.
#pragma unroll
    for (int d = 16; d > 0; d >>= 1) work += __shfl_down_sync(FULL_MASK, work, d);
    const unsigned int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    if (lane == 0) s_work[warp] = work;
    __syncthreads();
    if (threadIdx.x == 0) {
        unsigned long long total = 0;
        for (int w = 0; w < PROJECT_THREADS / 32; ++w) total += s_work[w];
        if (total > 0) atomicAdd(&stats->work, total);
    }
}
