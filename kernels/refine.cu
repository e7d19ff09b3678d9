// Per-image refinement on the device: the forward render, the loss, the exact gradient of the
// squared error of the native-size render (format-spec.md §3 at scale 1) with respect to every
// Gaussian parameter, and the Adam step — the algorithm of src/encode/refine.rs, with every
// step's state kept on the device (no host round trip per step).
//
// One step, all on one stream (src/cuda/refine.rs enqueues it):
//   memset stats; project_gaussians (scale 1, full picture); the tile binning of bin.cu (scan,
//   emit_pairs, radix sort, tile_ranges) — the renderer's own kernels, unchanged;
//   refine_forward_c{1..4}  one block per 16 x 16 tile: the pixel's normalized blend C_p (§3.4,
//                           blend.cuh, as the rasterizer), its error against the picture, and
//                           g_p = 2 (C_p - I_p) / D_p; the tile's squared error (double)
//   refine_loss             one block: the tiles' errors summed in a fixed order; keeps the best
//                           step seen (the CPU refinement returns the best parameters seen)
//   refine_backward_c{1..4} one block per tile: each (tile, Gaussian) entry's gradient with
//                           respect to (mx, my, A, B, C, amp, channels), summed over the tile's
//                           pixels in a fixed order, written to the entry's own slot
//   refine_update           one thread per Gaussian: its entries summed in tile order (double),
//                           the chain rule to (x, y, log2 s1, log2 s2, theta, channels) in double
//                           as refine.rs param_gradient, then Adam.
//
// Nothing is accumulated with atomics: every sum has a fixed order, so a refinement gives the
// same result every time on a given GPU.
//
// Slots: emit_pairs writes Gaussian i's entries at offsets[i] + j, j = (ty - ty0) * span_w +
// (tx - tx0) over the tiles of its box; the sort moves the entries, and the backward kernel
// computes the same j from the tile it is working on, so each entry's gradient lands at its
// Gaussian's own run of slots.
#include "blend.cuh"

// Gradient entries per (tile, Gaussian): mx, my, A, B, C (q = A dx^2 + 2 B dx dy + C dy^2), amp,
// channels 0..3.
#define GRAD_N 10
// Gaussians per backward batch: 8 warps x 32 Gaussians x GRAD_N floats of partial sums (10 KB).
#define BWD_BATCH 32
#define LOSS_THREADS 256
#define UPDATE_THREADS 256
// Parameters of one Gaussian: x, y, log2 s1, log2 s2, theta, channels 0..3.
#define PARAM_N 9

// Device-side state of one descent (mirrored in src/cuda/refine.rs). 40 bytes, zeroed at start.
struct RefineState {
    double best;                 // lowest mean squared error evaluated (valid once has_best)
    double last;                 // mean squared error of the latest evaluated step
    unsigned int has_best;
    unsigned int improved;       // the latest evaluated step is the best so far
    unsigned int overflow;       // sticky: a step's tile lists did not fit; it and later steps did nothing
    unsigned int overflow_step;  // the first step that did not fit
    unsigned int max_pairs;      // most tile-list entries any step needed
    unsigned int pad;
};

// Constants of one descent. 32 bytes.
struct RefineParams {
    int width, height;      // the picture (= the region: scale 1, full picture)
    int tiles_x, tiles_y;   // 16 x 16 tiles
    unsigned int n;         // Gaussians
    unsigned int capacity;  // tile-list entries allocated (and gradient slots)
    int channels;           // 1..4
    unsigned int pad;
};

// The file's geometry quantizers (format-spec.md §5.1-5.3), for quantization-aware steps: the
// Gaussians rendered are the latent parameters snapped to what the file can store. 32 bytes.
struct QuantGrid {
    int on;                // 0: render the latent parameters as they are
    float pos_step;        // cell size / 2^position bits, native px
    float extent_x;        // cells_x * cell size: positions are clamped to [0, extent]
    float extent_y;
    float log2_min;        // log2 sigma quantizer range
    float log2_max;
    unsigned int scale_levels;  // 2^scale bits - 1 (0: every sigma is 2^log2_min)
    unsigned int rot_steps;     // 2^rotation bits
};

// Per-step settings of the update. 96 bytes.
struct UpdateParams {
    float lr[PARAM_N];      // step size per parameter
    float log2_lo, log2_hi; // bounds of log2 sigma
    float c1, c2;           // Adam bias corrections 1 - beta^t of this step
    float values;           // width * height * channels: the loss is a mean
    int update;             // 0: only keep the best (the last evaluation)
    unsigned int step;      // index of the evaluation (for the history and overflow)
    QuantGrid grid;
};

// The file's value of a latent Gaussian's geometry (format::quantize then dequantize, in double
// as there; colours are left as they are: the encoder fits them to the stored geometry).
__device__ __forceinline__ GaussianIn snap(GaussianIn g, const QuantGrid& q) {
    const double s = q.pos_step;
    const double cx = fmin(fmax((double)g.x, 0.0), (double)q.extent_x);
    const double cy = fmin(fmax((double)g.y, 0.0), (double)q.extent_y);
    const double kx_max = floor((double)q.extent_x / s) - 1.0;
    const double ky_max = floor((double)q.extent_y / s) - 1.0;
    g.x = (float)((fmin(floor(cx / s), kx_max) + 0.5) * s);
    g.y = (float)((fmin(floor(cy / s), ky_max) + 0.5) * s);
    const double span = (double)q.log2_max - (double)q.log2_min;
    const double lv = q.scale_levels;
    float sc[2] = {g.scale1, g.scale2};
    for (int k = 0; k < 2; ++k) {
        double code = 0.0;
        if (q.scale_levels > 0 && span > 0.0)
            code = fmin(fmax(round((log2((double)sc[k]) - q.log2_min) / span * lv), 0.0), lv);
        const double l = q.scale_levels > 0 ? q.log2_min + span * code / lv : q.log2_min;
        sc[k] = (float)exp2(l);
    }
    g.scale1 = sc[0];
    g.scale2 = sc[1];
    const double pi = 3.14159265358979323846;
    const double rs = q.rot_steps;
    double r = fmod((double)g.rotation, pi);
    if (r < 0.0) r += pi;
    const double qr = fmod(round(r / pi * rs), rs);
    g.rotation = (float)(pi * qr / rs);
    return g;
}

#define ADAM_B1 0.9f
#define ADAM_B2 0.999f
#define ADAM_EPS 1e-8f

// Pixel of thread `tid` in tile `tile`: the rasterizer's mapping (warp w covers the 8 x 4 pixels
// at column 8 (w mod 2), row 4 floor(w / 2)).
struct TilePixel {
    int px, py;              // region-relative pixel
    int wx0, wy0, wx1, wy1;  // the warp's pixel block
    int tile_x, tile_y;      // tile column and row
};

__device__ __forceinline__ TilePixel tile_pixel(int tile, int tiles_x) {
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    TilePixel t;
    t.tile_x = tile % tiles_x;
    t.tile_y = tile / tiles_x;
    t.wx0 = t.tile_x * TILE_W + (warp & 1) * WARP_PX_W;
    t.wy0 = t.tile_y * TILE_H + (warp >> 1) * WARP_PX_H;
    t.wx1 = t.wx0 + WARP_PX_W - 1;
    t.wy1 = t.wy0 + WARP_PX_H - 1;
    t.px = t.wx0 + (lane % WARP_PX_W);
    t.py = t.wy0 + (lane / WARP_PX_W);
    return t;
}

// q of splat (g, g2) at pixel centre (fx, fy), as rasterize.cu computes it; dx, dy returned for
// the gradient. The splat reaches the pixel when q <= CUTOFF_Q.
__device__ __forceinline__ float splat_q(float4 g, float2 g2, float fx, float fy, float& dx,
                                         float& dy) {
    dx = __fsub_rn(fx, g.x);
    dy = __fsub_rn(fy, g.y);
    const float bdy2 = __fmul_rn(g.w, dy);
    const float cdy2 = __fmul_rn(__fmul_rn(g2.x, dy), dy);
    return __fadd_rn(__fadd_rn(__fmul_rn(__fmul_rn(g.z, dx), dx), __fmul_rn(bdy2, dx)), cdy2);
}

// w = amp exp(-q / 2), as rasterize.cu.
__device__ __forceinline__ float splat_weight(float2 g2, float q) {
    return __fmul_rn(g2.y, expf(__fmul_rn(-0.5f, q)));
}

// Whether this step's lists fit; the first block to see an overflow records it.
__device__ __forceinline__ bool lists_fit(const RenderStats* stats, const RefineParams& p,
                                          RefineState* state, unsigned int step) {
    if (state->overflow) return false;
    if (stats->pairs > p.capacity) {
        if (blockIdx.x == 0 && threadIdx.x == 0) {
            state->overflow = 1;
            state->overflow_step = step;
            state->max_pairs = max(state->max_pairs, stats->pairs);
        }
        return false;
    }
    if (blockIdx.x == 0 && threadIdx.x == 0) state->max_pairs = max(state->max_pairs, stats->pairs);
    return true;
}

// ---------------------------------------------------------------------------------------------
// Forward: per pixel C_p and g_p = 2 (C_p - I_p) / D_p (float4 each, channels past C are 0);
// per tile the squared error, in double.
// Launch: grid = tiles, RASTER_THREADS threads. Shared: a RASTER_BATCH batch (as rasterize.cu).
// ---------------------------------------------------------------------------------------------
template <int C>
__device__ __forceinline__ void forward_tile(const Splat* __restrict__ splats,
                                             const unsigned int* __restrict__ tile_vals,
                                             const uint2* __restrict__ ranges,
                                             const RenderStats* __restrict__ stats,
                                             const RefineParams& p, const float* __restrict__ target,
                                             float4* __restrict__ pix_color,
                                             float4* __restrict__ pix_grad,
                                             double* __restrict__ tile_err, RefineState* state,
                                             unsigned int step) {
    __shared__ double s_err[RASTER_THREADS / 32];
    if (!lists_fit(stats, p, state, step)) return;

    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int tile = blockIdx.x;
    const TilePixel t = tile_pixel(tile, p.tiles_x);
    const float fx = __fadd_rn((float)t.px, 0.5f);
    const float fy = __fadd_rn((float)t.py, 0.5f);
    float acc[C];
    float den;
    blend_pixel<C>(splats, tile_vals, ranges[tile], t.px, t.py, t.wx0, t.wy0, t.wx1, t.wy1, fx,
                   fy, acc, den);
    double err = 0.0;
    if (t.px < p.width && t.py < p.height) {
        const float d = fmaxf(den, MIN_WEIGHT_SUM);
        const unsigned long long i = (unsigned long long)t.py * p.width + t.px;
        float col[4] = {0.0f, 0.0f, 0.0f, 0.0f}, g[4] = {0.0f, 0.0f, 0.0f, 0.0f};
#pragma unroll
        for (int k = 0; k < C; ++k) {
            col[k] = __fdiv_rn(acc[k], d);
            const float e = __fsub_rn(col[k], target[i * C + k]);
            err += (double)__fmul_rn(e, e);
            g[k] = __fdiv_rn(__fmul_rn(2.0f, e), d);
        }
        pix_color[i] = make_float4(col[0], col[1], col[2], col[3]);
        pix_grad[i] = make_float4(g[0], g[1], g[2], g[3]);
    }
    // Block sum in a fixed order.
#pragma unroll
    for (int d = 16; d > 0; d >>= 1) err += __shfl_down_sync(FULL_MASK, err, d);
    if (lane == 0) s_err[warp] = err;
    __syncthreads();
    if (tid == 0) {
        double total = 0.0;
        for (int w = 0; w < RASTER_THREADS / 32; ++w) total += s_err[w];
        tile_err[tile] = total;
    }
}

// ---------------------------------------------------------------------------------------------
// Loss: the tiles' squared errors summed in a fixed order; the mean squared error per channel
// value; whether it is the best seen. One block of LOSS_THREADS threads.
// ---------------------------------------------------------------------------------------------
extern "C" __global__ void __launch_bounds__(LOSS_THREADS)
refine_loss(const double* __restrict__ tile_err,  // [tiles]
            const RefineParams p, const float values, const unsigned int step,
            RefineState* state, double* __restrict__ history) {  // [steps + 1] mse per step
    __shared__ double s_sum[LOSS_THREADS];
    if (state->overflow) return;
    const int tid = threadIdx.x;
    const int tiles = p.tiles_x * p.tiles_y;
    double sum = 0.0;
    for (int t = tid; t < tiles; t += LOSS_THREADS) sum += tile_err[t];
    s_sum[tid] = sum;
    __syncthreads();
    for (int stride = LOSS_THREADS / 2; stride > 0; stride >>= 1) {
        if (tid < stride) s_sum[tid] += s_sum[tid + stride];
        __syncthreads();
    }
    if (tid == 0) {
        const double mse = s_sum[0] / (double)values;
        history[step] = mse;
        state->last = mse;
        const bool better = !state->has_best || mse < state->best;
        if (better) {
            state->best = mse;
            state->has_best = 1;
        }
        state->improved = better ? 1 : 0;
    }
}

// ---------------------------------------------------------------------------------------------
// Backward: for every (tile, Gaussian) entry, the gradient of the loss with respect to
// (mx, my, A, B, C, amp, channels) summed over the tile's pixels (refine.rs tile_gradient):
//   dL/dc_k = g_p w,   dL/dw = sum_c g_p,c (c_k,c - C_p,c),   w = amp exp(-q/2).
// Each warp sums its 32 pixels with shuffles; the 8 warps' sums are added in warp order and
// written to the entry's slot.
// Launch: grid = tiles, RASTER_THREADS threads. Shared: BWD_BATCH Gaussians + partial sums.
// ---------------------------------------------------------------------------------------------
template <int C>
__device__ __forceinline__ void backward_tile(const Splat* __restrict__ splats,
                                              const unsigned int* __restrict__ tile_vals,
                                              const uint2* __restrict__ ranges,
                                              const unsigned int* __restrict__ offsets,
                                              const RefineParams& p,
                                              const float4* __restrict__ pix_color,
                                              const float4* __restrict__ pix_grad,
                                              float* __restrict__ grad_slots,
                                              const RefineState* state) {
    constexpr int NV = 6 + C;
    __shared__ float4 s_geo[BWD_BATCH];
    __shared__ float2 s_geo2[BWD_BATCH];
    __shared__ int4 s_box[BWD_BATCH];
    __shared__ float4 s_col[BWD_BATCH];
    __shared__ unsigned int s_slot[BWD_BATCH];
    __shared__ float s_part[RASTER_THREADS / 32][BWD_BATCH][NV];
    if (state->overflow) return;

    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int tile = blockIdx.x;
    const TilePixel t = tile_pixel(tile, p.tiles_x);
    const float fx = __fadd_rn((float)t.px, 0.5f);
    const float fy = __fadd_rn((float)t.py, 0.5f);
    const bool inside = t.px < p.width && t.py < p.height;
    float cp[4] = {0.0f, 0.0f, 0.0f, 0.0f}, gp[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    if (inside) {
        const unsigned long long i = (unsigned long long)t.py * p.width + t.px;
        const float4 c4 = pix_color[i], g4 = pix_grad[i];
        cp[0] = c4.x; cp[1] = c4.y; cp[2] = c4.z; cp[3] = c4.w;
        gp[0] = g4.x; gp[1] = g4.y; gp[2] = g4.z; gp[3] = g4.w;
    }
    const uint2 range = ranges[tile];
    for (unsigned int b = range.x; b < range.y; b += BWD_BATCH) {
        const unsigned int count = min(range.y - b, (unsigned int)BWD_BATCH);
        if ((unsigned int)tid < count) {
            const unsigned int gi = tile_vals[b + tid];
            const Splat s = splats[gi];
            s_geo[tid] = s.geo;
            s_geo2[tid] = make_float2(s.geo2.x, s.geo2.y);
            s_box[tid] = s.box;
            s_col[tid] = s.color;
            // The entry's slot: emit_pairs' order over the tiles of the box.
            const int tx0 = s.box.x / TILE_W, ty0 = s.box.y / TILE_H;
            const int span_w = s.box.z / TILE_W - tx0 + 1;
            s_slot[tid] = offsets[gi] + (unsigned int)((t.tile_y - ty0) * span_w + (t.tile_x - tx0));
        }
        __syncthreads();
        for (unsigned int j = 0; j < count; ++j) {
            const int4 box = s_box[j];
            float v[NV];
#pragma unroll
            for (int k = 0; k < NV; ++k) v[k] = 0.0f;
            // Warp-uniform: a warp whose pixels all miss the box contributes zeros.
            const bool warp_hits =
                !(box.x > t.wx1 || box.z < t.wx0 || box.y > t.wy1 || box.w < t.wy0);
            if (warp_hits) {
                bool hit = false;
                if (inside && t.px >= box.x && t.px <= box.z && t.py >= box.y && t.py <= box.w) {
                    const float4 g = s_geo[j];
                    const float2 g2 = s_geo2[j];
                    float dx, dy;
                    const float q = splat_q(g, g2, fx, fy, dx, dy);
                    if (q <= CUTOFF_Q) {
                        hit = true;
                        const float w = splat_weight(g2, q);
                        const float4 col = s_col[j];
                        const float cv[4] = {col.x, col.y, col.z, col.w};
                        float dw = 0.0f;
#pragma unroll
                        for (int k = 0; k < C; ++k) {
                            dw += gp[k] * (cv[k] - cp[k]);
                            v[6 + k] = gp[k] * w;
                        }
                        // q = A dx^2 + 2B dx dy + C dy^2 with (A, 2B, C) = (g.z, g.w, g2.x).
                        const float dq = -0.5f * w * dw;
                        const float a = g.z, b2 = g.w, c = g2.x;
                        v[0] = dq * -(2.0f * a * dx + b2 * dy);
                        v[1] = dq * -(b2 * dx + 2.0f * c * dy);
                        v[2] = dq * dx * dx;
                        v[3] = dq * 2.0f * dx * dy;
                        v[4] = dq * dy * dy;
                        v[5] = dw * w / g2.y;
                    }
                }
                if (__any_sync(FULL_MASK, hit)) {
#pragma unroll
                    for (int k = 0; k < NV; ++k) {
#pragma unroll
                        for (int d = 16; d > 0; d >>= 1)
                            v[k] += __shfl_down_sync(FULL_MASK, v[k], d);
                    }
                }
            }
            if (lane == 0) {
#pragma unroll
                for (int k = 0; k < NV; ++k) s_part[warp][j][k] = v[k];
            }
        }
        __syncthreads();
        for (unsigned int idx = tid; idx < count * NV; idx += RASTER_THREADS) {
            const unsigned int j = idx / NV, k = idx % NV;
            float sum = 0.0f;
            for (int w = 0; w < RASTER_THREADS / 32; ++w) sum += s_part[w][j][k];
            grad_slots[(unsigned long long)s_slot[j] * GRAD_N + k] = sum;
        }
        __syncthreads();
    }
}

// ---------------------------------------------------------------------------------------------
// Update: per Gaussian, its entries' gradients summed in tile order, the chain rule to the
// parameters (refine.rs param_gradient, in double), then Adam as refine.rs descend on the
// latent parameters; the rendered ones are the latent ones, or their snap to the file's
// quantizers in quantization-aware steps. Before the update, the rendered parameters are kept
// as the best when this step's evaluation was the best so far.
// Launch: grid = ceil(n / UPDATE_THREADS), UPDATE_THREADS threads.
// ---------------------------------------------------------------------------------------------
extern "C" __global__ void __launch_bounds__(UPDATE_THREADS)
refine_update(GaussianIn* __restrict__ latent,       // [n] in/out: what Adam moves
              GaussianIn* __restrict__ params,       // [n] in/out: what is rendered
              GaussianIn* __restrict__ best,         // [n] out when improved
              float* __restrict__ adam_m,            // [n * PARAM_N]
              float* __restrict__ adam_v,            // [n * PARAM_N]
              const unsigned int* __restrict__ counts,   // [n] tiles of each Gaussian
              const unsigned int* __restrict__ offsets,  // [n] first slot of each Gaussian
              const float* __restrict__ grad_slots,      // [capacity * GRAD_N]
              float* __restrict__ param_grad,            // [n * PARAM_N] out: dL/dparam (sum)
              const RefineParams p, const UpdateParams u, const RefineState* state) {
    const unsigned int i = blockIdx.x * UPDATE_THREADS + threadIdx.x;
    if (i >= p.n || state->overflow) return;
    GaussianIn g = params[i];
    if (state->improved) best[i] = g;
    if (!u.update) return;
    const int nc = p.channels;
    double gr[GRAD_N];
#pragma unroll
    for (int k = 0; k < GRAD_N; ++k) gr[k] = 0.0;
    const unsigned int n_slots = counts[i], first = offsets[i];
    for (unsigned int s = 0; s < n_slots; ++s) {
        const float* e = grad_slots + (unsigned long long)(first + s) * GRAD_N;
        for (int k = 0; k < 6 + nc; ++k) gr[k] += (double)e[k];
    }
    // Chain rule (refine.rs param_gradient).
    const double s1 = g.scale1, s2 = g.scale2, th = g.rotation;
    double sn, cs;
    sincos(th, &sn, &cs);
    const double v1 = s1 * s1, v2 = s2 * s2;
    const double xx = v1 * cs * cs + v2 * sn * sn + PREFILTER_VARIANCE;
    const double yy = v1 * sn * sn + v2 * cs * cs + PREFILTER_VARIANCE;
    const double xy = (v1 - v2) * sn * cs;
    const double det = xx * yy - xy * xy;
    const double ga = gr[2], gb = gr[3] * 0.5, gc = gr[4];
    const double qa = yy / det, qb = -xy / det, qc = xx / det;
    const double t00 = qa * ga + qb * gb, t01 = qa * gb + qb * gc;
    const double t10 = qb * ga + qc * gb, t11 = qb * gb + qc * gc;
    const double m00 = t00 * qa + t01 * qb, m01 = t00 * qb + t01 * qc, m11 = t10 * qb + t11 * qc;
    double dxx = -m00, dxy = -2.0 * m01, dyy = -m11;
    const double amp = s1 * s2 / sqrt(det);
    const double gamp = gr[5] * amp;
    dxx += -0.5 * gamp * yy / det;
    dyy += -0.5 * gamp * xx / det;
    dxy += -0.5 * gamp * (-2.0 * xy) / det;
    const double dv1 = dxx * cs * cs + dyy * sn * sn + dxy * sn * cs;
    const double dv2 = dxx * sn * sn + dyy * cs * cs - dxy * sn * cs;
    const double dth = dxx * (v2 - v1) * 2.0 * sn * cs + dyy * (v1 - v2) * 2.0 * sn * cs +
                       dxy * (v1 - v2) * (cs * cs - sn * sn);
    const double ln2 = 0.69314718055994530942;
    double pg[PARAM_N] = {gr[0], gr[1], dv1 * 2.0 * ln2 * v1 + gamp * ln2,
                          dv2 * 2.0 * ln2 * v2 + gamp * ln2, dth, 0.0, 0.0, 0.0, 0.0};
    for (int k = 0; k < nc; ++k) pg[5 + k] = gr[6 + k];
    // Adam on the latent (x, y, log2 s1, log2 s2, theta, channels), with the gradient taken at
    // the rendered parameters (straight through the quantizers when they are on).
    g = latent[i];
    float prm[PARAM_N] = {g.x, g.y, log2f(g.scale1), log2f(g.scale2), g.rotation,
                          g.color[0], g.color[1], g.color[2], g.color[3]};
    float* m = adam_m + (unsigned long long)i * PARAM_N;
    float* v = adam_v + (unsigned long long)i * PARAM_N;
    for (int k = 0; k < 5 + nc; ++k) {
        param_grad[(unsigned long long)i * PARAM_N + k] = (float)pg[k];
        const float gi = (float)pg[k] / u.values;
        const float mk = ADAM_B1 * m[k] + (1.0f - ADAM_B1) * gi;
        const float vk = ADAM_B2 * v[k] + (1.0f - ADAM_B2) * gi * gi;
        m[k] = mk;
        v[k] = vk;
        prm[k] -= u.lr[k] * (mk / u.c1) / (sqrtf(vk / u.c2) + ADAM_EPS);
    }
    g.x = prm[0];
    g.y = prm[1];
    g.scale1 = exp2f(fminf(fmaxf(prm[2], u.log2_lo), u.log2_hi));
    g.scale2 = exp2f(fminf(fmaxf(prm[3], u.log2_lo), u.log2_hi));
    g.rotation = prm[4];
    for (int k = 0; k < nc; ++k) g.color[k] = fminf(fmaxf(prm[5 + k], -0.5f), 1.5f);
    latent[i] = g;
    params[i] = u.grid.on ? snap(g, u.grid) : g;
}

#define DEFINE_REFINE(C)                                                                       \
    extern "C" __global__ void __launch_bounds__(RASTER_THREADS) refine_forward_c##C(         \
        const Splat* __restrict__ splats, const unsigned int* __restrict__ tile_vals,          \
        const uint2* __restrict__ ranges, const RenderStats* __restrict__ stats,               \
        const RefineParams p, const float* __restrict__ target, float4* __restrict__ pix_color, \
        float4* __restrict__ pix_grad, double* __restrict__ tile_err, RefineState* state,      \
        const unsigned int step) {                                                             \
        forward_tile<C>(splats, tile_vals, ranges, stats, p, target, pix_color, pix_grad,      \
                        tile_err, state, step);                                                \
    }                                                                                          \
    extern "C" __global__ void __launch_bounds__(RASTER_THREADS) refine_backward_c##C(        \
        const Splat* __restrict__ splats, const unsigned int* __restrict__ tile_vals,          \
        const uint2* __restrict__ ranges, const unsigned int* __restrict__ offsets,            \
        const RefineParams p, const float4* __restrict__ pix_color,                            \
        const float4* __restrict__ pix_grad, float* __restrict__ grad_slots,                   \
        const RefineState* state) {                                                            \
        backward_tile<C>(splats, tile_vals, ranges, offsets, p, pix_color, pix_grad,           \
                         grad_slots, state);                                                   \
    }

DEFINE_REFINE(1)
DEFINE_REFINE(2)
DEFINE_REFINE(3)
DEFINE_REFINE(4)

// ---------------------------------------------------------------------------------------------
// The least-squares colour fit (src/encode/optim/fit.rs) on the device: with the geometry fixed
// a pixel is linear in the colours, C = A c with A[p][k] = w_pk / D_p, and the colours that
// minimize ||A c - t||^2 solve the normal equations A^T A c = A^T t, by conjugate gradients
// started from the current colours, each channel on its own (as fit.rs), on the whole picture
// at once. The products with A^T A are the colour gradients of the kernels above: the backward
// pass of a render of colours p against a zero picture gives 2 A^T A p per (tile, Gaussian)
// slot, and against the picture itself (at the start) 2 A^T (A c - t). Vectors are double; the
// dot products are summed per block, then over the blocks in order (no atomics): the result is
// the same every time.
#define FIT_THREADS 256

// Four channels of a vector entry (32 bytes; mirrored as [f64; 4] in src/cuda/launch.rs).
struct Dbl4 {
    double x, y, z, w;
};

__device__ __forceinline__ Dbl4 dbl4(double x, double y, double z, double w) {
    Dbl4 v;
    v.x = x;
    v.y = y;
    v.z = z;
    v.w = w;
    return v;
}

// Per-block partial sums of a channel-wise dot product, reduced by one thread of each block.
__device__ __forceinline__ void fit_block_sum(Dbl4 v, Dbl4* __restrict__ partial) {
    __shared__ Dbl4 s[FIT_THREADS];
    const int tid = threadIdx.x;
    s[tid] = v;
    __syncthreads();
    for (int stride = FIT_THREADS / 2; stride > 0; stride >>= 1) {
        if (tid < stride) {
            s[tid].x += s[tid + stride].x;
            s[tid].y += s[tid + stride].y;
            s[tid].z += s[tid + stride].z;
            s[tid].w += s[tid + stride].w;
        }
        __syncthreads();
    }
    if (tid == 0) partial[blockIdx.x] = s[0];
}

// Gaussian i's colour gradient, halved: its slots' channel entries summed in tile order.
// Nothing when the tile lists overflowed (the slots are then not all written; the host sees the
// overflow and does not use the result).
__device__ __forceinline__ Dbl4 fit_gather(unsigned int i, const unsigned int* __restrict__ counts,
                                           const unsigned int* __restrict__ offsets,
                                           const float* __restrict__ grad_slots, int nc,
                                           const RefineState* state) {
    double g[4] = {0.0, 0.0, 0.0, 0.0};
    if (state->overflow) return dbl4(0.0, 0.0, 0.0, 0.0);
    const unsigned int n_slots = counts[i], first = offsets[i];
    for (unsigned int s = 0; s < n_slots; ++s) {
        const float* e = grad_slots + (unsigned long long)(first + s) * GRAD_N + 6;
        for (int k = 0; k < nc; ++k) g[k] += (double)e[k];
    }
    return dbl4(0.5 * g[0], 0.5 * g[1], 0.5 * g[2], 0.5 * g[3]);
}

__device__ __forceinline__ Dbl4 fit_mul(Dbl4 a, Dbl4 b) {
    return dbl4(a.x * b.x, a.y * b.y, a.z * b.z, a.w * b.w);
}

// Start: x = the current colours (also kept in `start`), r = A^T (t - A x) (the gradient of the
// render against the picture), p = r; the colours rendered next are p. Partial sums of r.r.
extern "C" __global__ void __launch_bounds__(FIT_THREADS)
fit_start(GaussianIn* __restrict__ params, const unsigned int* __restrict__ counts,
          const unsigned int* __restrict__ offsets, const float* __restrict__ grad_slots,
          Dbl4* __restrict__ x, Dbl4* __restrict__ start, Dbl4* __restrict__ r,
          Dbl4* __restrict__ p, Dbl4* __restrict__ partial, const unsigned int n, const int nc,
          const RefineState* state) {
    const unsigned int i = blockIdx.x * FIT_THREADS + threadIdx.x;
    Dbl4 rr = dbl4(0.0, 0.0, 0.0, 0.0);
    if (i < n) {
        GaussianIn g = params[i];
        x[i] = dbl4(g.color[0], g.color[1], g.color[2], g.color[3]);
        start[i] = x[i];
        const Dbl4 q = fit_gather(i, counts, offsets, grad_slots, nc, state);
        const Dbl4 ri = dbl4(-q.x, -q.y, -q.z, -q.w);
        r[i] = ri;
        p[i] = ri;
        g.color[0] = (float)ri.x;
        g.color[1] = (float)ri.y;
        g.color[2] = (float)ri.z;
        g.color[3] = (float)ri.w;
        params[i] = g;
        rr = fit_mul(ri, ri);
    }
    fit_block_sum(rr, partial);
}

// q = A^T A p (the gradient of the render of p against a zero picture), kept for the update;
// partial sums of p.q.
extern "C" __global__ void __launch_bounds__(FIT_THREADS)
fit_product(const unsigned int* __restrict__ counts, const unsigned int* __restrict__ offsets,
            const float* __restrict__ grad_slots, const Dbl4* __restrict__ p,
            Dbl4* __restrict__ q, Dbl4* __restrict__ partial, const unsigned int n,
            const int nc, const RefineState* state) {
    const unsigned int i = blockIdx.x * FIT_THREADS + threadIdx.x;
    Dbl4 pq = dbl4(0.0, 0.0, 0.0, 0.0);
    if (i < n) {
        const Dbl4 qi = fit_gather(i, counts, offsets, grad_slots, nc, state);
        q[i] = qi;
        pq = fit_mul(p[i], qi);
    }
    fit_block_sum(pq, partial);
}

// One block: scalars[slot] = the sum of `blocks` partial sums, in order.
extern "C" __global__ void __launch_bounds__(FIT_THREADS)
fit_reduce(const Dbl4* __restrict__ partial, const unsigned int blocks,
           Dbl4* __restrict__ scalars, const unsigned int slot) {
    __shared__ Dbl4 s[FIT_THREADS];
    const int tid = threadIdx.x;
    Dbl4 v = dbl4(0.0, 0.0, 0.0, 0.0);
    for (unsigned int b = tid; b < blocks; b += FIT_THREADS) {
        const Dbl4 e = partial[b];
        v.x += e.x;
        v.y += e.y;
        v.z += e.z;
        v.w += e.w;
    }
    s[tid] = v;
    __syncthreads();
    for (int stride = FIT_THREADS / 2; stride > 0; stride >>= 1) {
        if (tid < stride) {
            s[tid].x += s[tid + stride].x;
            s[tid].y += s[tid + stride].y;
            s[tid].z += s[tid + stride].z;
            s[tid].w += s[tid + stride].w;
        }
        __syncthreads();
    }
    if (tid == 0) scalars[slot] = s[0];
}

// Scalar slots: r.r of the current and the next residual (alternating), p.q, r.r at the start.
#define FIT_PQ 2
#define FIT_RR0 3
// A channel stops once r.r has fallen by this factor from the start (or was zero): the products
// are float sums, whose round-off is near this level, and past it CG's step sizes are ratios of
// round-off (fit.rs stops at 1e-16 with double products).
#define FIT_STOP 1e-12

__device__ __forceinline__ bool fit_live(double rr, double rr0) {
    return rr0 > 0.0 && rr > FIT_STOP * rr0 && isfinite(rr);
}

// alpha = r.r / p.q per live channel (0 where p.q is not positive or the channel has stopped);
// x += alpha p, r -= alpha q. Partial sums of the new r.r.
extern "C" __global__ void __launch_bounds__(FIT_THREADS)
fit_step(Dbl4* __restrict__ x, Dbl4* __restrict__ r, const Dbl4* __restrict__ p,
         const Dbl4* __restrict__ q, const Dbl4* __restrict__ scalars,
         const unsigned int rr_slot, Dbl4* __restrict__ partial, const unsigned int n) {
    const unsigned int i = blockIdx.x * FIT_THREADS + threadIdx.x;
    Dbl4 rr = dbl4(0.0, 0.0, 0.0, 0.0);
    if (i < n) {
        const Dbl4 a = scalars[rr_slot], b = scalars[FIT_PQ], z = scalars[FIT_RR0];
        const double al[4] = {fit_live(a.x, z.x) && b.x > 0.0 ? a.x / b.x : 0.0,
                              fit_live(a.y, z.y) && b.y > 0.0 ? a.y / b.y : 0.0,
                              fit_live(a.z, z.z) && b.z > 0.0 ? a.z / b.z : 0.0,
                              fit_live(a.w, z.w) && b.w > 0.0 ? a.w / b.w : 0.0};
        Dbl4 xi = x[i], ri = r[i];
        const Dbl4 pi = p[i], qi = q[i];
        xi.x += al[0] * pi.x; xi.y += al[1] * pi.y; xi.z += al[2] * pi.z; xi.w += al[3] * pi.w;
        ri.x -= al[0] * qi.x; ri.y -= al[1] * qi.y; ri.z -= al[2] * qi.z; ri.w -= al[3] * qi.w;
        x[i] = xi;
        r[i] = ri;
        rr = fit_mul(ri, ri);
    }
    fit_block_sum(rr, partial);
}

// beta = (new r.r) / (old r.r) per live channel; p = r + beta p; the colours rendered next are
// p. (A stopped channel's r no longer changes: its steps are 0 from then on.)
extern "C" __global__ void __launch_bounds__(FIT_THREADS)
fit_direction(GaussianIn* __restrict__ params, const Dbl4* __restrict__ r,
              Dbl4* __restrict__ p, const Dbl4* __restrict__ scalars,
              const unsigned int new_slot, const unsigned int old_slot, const unsigned int n) {
    const unsigned int i = blockIdx.x * FIT_THREADS + threadIdx.x;
    if (i >= n) return;
    const Dbl4 a = scalars[new_slot], b = scalars[old_slot];
    const double be[4] = {b.x > 0.0 && isfinite(a.x) ? a.x / b.x : 0.0,
                          b.y > 0.0 && isfinite(a.y) ? a.y / b.y : 0.0,
                          b.z > 0.0 && isfinite(a.z) ? a.z / b.z : 0.0,
                          b.w > 0.0 && isfinite(a.w) ? a.w / b.w : 0.0};
    const Dbl4 ri = r[i];
    Dbl4 pi = p[i];
    pi.x = ri.x + be[0] * pi.x;
    pi.y = ri.y + be[1] * pi.y;
    pi.z = ri.z + be[2] * pi.z;
    pi.w = ri.w + be[3] * pi.w;
    p[i] = pi;
    GaussianIn g = params[i];
    g.color[0] = (float)pi.x;
    g.color[1] = (float)pi.y;
    g.color[2] = (float)pi.z;
    g.color[3] = (float)pi.w;
    params[i] = g;
}

// The fitted colours, clamped into [lo, hi], into params (channels past nc are 0; a
// non-finite result, which the stopping rule should prevent, keeps the colour it started from).
extern "C" __global__ void __launch_bounds__(FIT_THREADS)
fit_finish(GaussianIn* __restrict__ params, const Dbl4* __restrict__ x,
           const Dbl4* __restrict__ start, const unsigned int n, const int nc, const float lo,
           const float hi) {
    const unsigned int i = blockIdx.x * FIT_THREADS + threadIdx.x;
    if (i >= n) return;
    const Dbl4 xi = x[i], si = start[i];
    const double v[4] = {xi.x, xi.y, xi.z, xi.w};
    const double s0[4] = {si.x, si.y, si.z, si.w};
    GaussianIn g = params[i];
    for (int k = 0; k < 4; ++k) {
        const float c = isfinite(v[k]) ? (float)v[k] : (float)s0[k];
        g.color[k] = k < nc ? fminf(fmaxf(c, lo), hi) : 0.0f;
    }
    params[i] = g;
}

// ---------------------------------------------------------------------------------------------
// The moves between refinement rounds (src/encode/optim/realloc.rs adapt_with) on the device:
// the blend's numerator and weight sum per pixel, each Gaussian's removal cost over its
// footprint, and the error map of a render.
//
//   moves_blend_c{1..4}  one block per tile: per pixel the raw numerator N_p (float4, channels
//                        past C are 0) and (D_p, the squared error of N_p / D_p against the
//                        picture summed over the channels, 0, 0), with the blend of blend.cuh
//   moves_cost_c{1..4}   one block per tile: for every (tile, Gaussian) entry, the sum over the
//                        tile's pixels of ||C'_p - I_p||^2 - ||C_p - I_p||^2, with
//                        C'_p = (N_p - w c_k) / (D_p - w) (0 where D_p - w <= 1e-6 D_p), each
//                        pixel's term rounded to float per channel as realloc.rs does, summed
//                        in double (warp shuffles, then the 8 warps in order), into the
//                        entry's slot (the slot numbering of the backward pass)
//   moves_gather         one thread per Gaussian: its slots summed in tile order (double)
//
// The host keeps the removal order, the neighbour test and the picks (realloc.rs).
// ---------------------------------------------------------------------------------------------
#define GATHER_THREADS 256

template <int C>
__device__ __forceinline__ void moves_blend_tile(const Splat* __restrict__ splats,
                                                 const unsigned int* __restrict__ tile_vals,
                                                 const uint2* __restrict__ ranges,
                                                 const RenderStats* __restrict__ stats,
                                                 const RefineParams& p,
                                                 const float* __restrict__ target,
                                                 float4* __restrict__ pix_num,
                                                 float4* __restrict__ pix_den_err,
                                                 RefineState* state) {
    if (!lists_fit(stats, p, state, 0)) return;
    const TilePixel t = tile_pixel(blockIdx.x, p.tiles_x);
    const float fx = __fadd_rn((float)t.px, 0.5f);
    const float fy = __fadd_rn((float)t.py, 0.5f);
    float acc[C];
    float den;
    blend_pixel<C>(splats, tile_vals, ranges[blockIdx.x], t.px, t.py, t.wx0, t.wy0, t.wx1, t.wy1,
                   fx, fy, acc, den);
    if (t.px >= p.width || t.py >= p.height) return;
    const unsigned long long i = (unsigned long long)t.py * p.width + t.px;
    const float d = fmaxf(den, MIN_WEIGHT_SUM);
    float num[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    float err = 0.0f;
#pragma unroll
    for (int k = 0; k < C; ++k) {
        num[k] = acc[k];
        const float e = __fsub_rn(__fdiv_rn(acc[k], d), target[i * C + k]);
        err = __fadd_rn(err, __fmul_rn(e, e));
    }
    pix_num[i] = make_float4(num[0], num[1], num[2], num[3]);
    pix_den_err[i] = make_float4(den, err, 0.0f, 0.0f);
}

template <int C>
__device__ __forceinline__ void moves_cost_tile(const Splat* __restrict__ splats,
                                                const unsigned int* __restrict__ tile_vals,
                                                const uint2* __restrict__ ranges,
                                                const unsigned int* __restrict__ offsets,
                                                const RefineParams& p,
                                                const float* __restrict__ target,
                                                const float4* __restrict__ pix_num,
                                                const float4* __restrict__ pix_den_err,
                                                double* __restrict__ cost_slots,
                                                const RefineState* state) {
    __shared__ float4 s_geo[BWD_BATCH];
    __shared__ float2 s_geo2[BWD_BATCH];
    __shared__ int4 s_box[BWD_BATCH];
    __shared__ float4 s_col[BWD_BATCH];
    __shared__ unsigned int s_slot[BWD_BATCH];
    __shared__ double s_part[RASTER_THREADS / 32][BWD_BATCH];
    if (state->overflow) return;

    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int tile = blockIdx.x;
    const TilePixel t = tile_pixel(tile, p.tiles_x);
    const float fx = __fadd_rn((float)t.px, 0.5f);
    const float fy = __fadd_rn((float)t.py, 0.5f);
    const bool inside = t.px < p.width && t.py < p.height;
    float num[4] = {0.0f, 0.0f, 0.0f, 0.0f}, tv[4] = {0.0f, 0.0f, 0.0f, 0.0f}, den = 0.0f;
    float now2[4] = {0.0f, 0.0f, 0.0f, 0.0f};  // ||C_p - I_p||^2 per channel
    if (inside) {
        const unsigned long long i = (unsigned long long)t.py * p.width + t.px;
        const float4 n4 = pix_num[i];
        num[0] = n4.x; num[1] = n4.y; num[2] = n4.z; num[3] = n4.w;
        den = pix_den_err[i].x;
        const float d = fmaxf(den, MIN_WEIGHT_SUM);
#pragma unroll
        for (int k = 0; k < C; ++k) {
            tv[k] = target[i * C + k];
            const float e = __fsub_rn(__fdiv_rn(num[k], d), tv[k]);
            now2[k] = __fmul_rn(e, e);
        }
    }
    const uint2 range = ranges[tile];
    for (unsigned int b = range.x; b < range.y; b += BWD_BATCH) {
        const unsigned int count = min(range.y - b, (unsigned int)BWD_BATCH);
        if ((unsigned int)tid < count) {
            const unsigned int gi = tile_vals[b + tid];
            const Splat s = splats[gi];
            s_geo[tid] = s.geo;
            s_geo2[tid] = make_float2(s.geo2.x, s.geo2.y);
            s_box[tid] = s.box;
            s_col[tid] = s.color;
            const int tx0 = s.box.x / TILE_W, ty0 = s.box.y / TILE_H;
            const int span_w = s.box.z / TILE_W - tx0 + 1;
            s_slot[tid] = offsets[gi] + (unsigned int)((t.tile_y - ty0) * span_w + (t.tile_x - tx0));
        }
        __syncthreads();
        for (unsigned int j = 0; j < count; ++j) {
            const int4 box = s_box[j];
            double v = 0.0;
            const bool warp_hits =
                !(box.x > t.wx1 || box.z < t.wx0 || box.y > t.wy1 || box.w < t.wy0);
            if (warp_hits) {
                bool hit = false;
                if (inside && t.px >= box.x && t.px <= box.z && t.py >= box.y && t.py <= box.w) {
                    const float4 g = s_geo[j];
                    const float2 g2 = s_geo2[j];
                    float dx, dy;
                    const float q = splat_q(g, g2, fx, fy, dx, dy);
                    if (q <= CUTOFF_Q) {
                        const float w = splat_weight(g2, q);
                        if (w > 0.0f) {
                            hit = true;
                            const float4 col = s_col[j];
                            const float cv[4] = {col.x, col.y, col.z, col.w};
                            const float rest = __fsub_rn(den, w);
                            const bool left = rest > __fmul_rn(1e-6f, den);
#pragma unroll
                            for (int k = 0; k < C; ++k) {
                                const float after =
                                    __fsub_rn(left ? __fdiv_rn(__fsub_rn(num[k], __fmul_rn(w, cv[k])),
                                                               rest)
                                                   : 0.0f,
                                              tv[k]);
                                v += (double)__fsub_rn(__fmul_rn(after, after), now2[k]);
                            }
                        }
                    }
                }
                if (__any_sync(FULL_MASK, hit)) {
#pragma unroll
                    for (int d = 16; d > 0; d >>= 1) v += __shfl_down_sync(FULL_MASK, v, d);
                }
            }
            if (lane == 0) s_part[warp][j] = v;
        }
        __syncthreads();
        if ((unsigned int)tid < count) {
            double sum = 0.0;
            for (int w = 0; w < RASTER_THREADS / 32; ++w) sum += s_part[w][tid];
            cost_slots[s_slot[tid]] = sum;
        }
        __syncthreads();
    }
}

#define DEFINE_MOVES(C)                                                                        \
    extern "C" __global__ void __launch_bounds__(RASTER_THREADS) moves_blend_c##C(            \
        const Splat* __restrict__ splats, const unsigned int* __restrict__ tile_vals,          \
        const uint2* __restrict__ ranges, const RenderStats* __restrict__ stats,               \
        const RefineParams p, const float* __restrict__ target, float4* __restrict__ pix_num,  \
        float4* __restrict__ pix_den_err, RefineState* state) {                                \
        moves_blend_tile<C>(splats, tile_vals, ranges, stats, p, target, pix_num, pix_den_err, \
                            state);                                                            \
    }                                                                                          \
    extern "C" __global__ void __launch_bounds__(RASTER_THREADS) moves_cost_c##C(             \
        const Splat* __restrict__ splats, const unsigned int* __restrict__ tile_vals,          \
        const uint2* __restrict__ ranges, const unsigned int* __restrict__ offsets,            \
        const RefineParams p, const float* __restrict__ target,                                \
        const float4* __restrict__ pix_num, const float4* __restrict__ pix_den_err,            \
        double* __restrict__ cost_slots, const RefineState* state) {                           \
        moves_cost_tile<C>(splats, tile_vals, ranges, offsets, p, target, pix_num,             \
                           pix_den_err, cost_slots, state);                                    \
    }

DEFINE_MOVES(1)
DEFINE_MOVES(2)
DEFINE_MOVES(3)
DEFINE_MOVES(4)

// Gaussian i's removal cost: its slots summed in tile order. Nothing after an overflow (the
// host sees it and does not use the result).
extern "C" __global__ void __launch_bounds__(GATHER_THREADS)
moves_gather(const unsigned int* __restrict__ counts, const unsigned int* __restrict__ offsets,
             const double* __restrict__ cost_slots, double* __restrict__ cost,
             const unsigned int n, const RefineState* state) {
    const unsigned int i = blockIdx.x * GATHER_THREADS + threadIdx.x;
    if (i >= n || state->overflow) return;
    const unsigned int n_slots = counts[i], first = offsets[i];
    double sum = 0.0;
    for (unsigned int s = 0; s < n_slots; ++s) sum += cost_slots[first + s];
    cost[i] = sum;
}
