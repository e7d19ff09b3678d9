// Stage 2: tile binning. Builds, for every 16 x 16 tile of the region, the list of Gaussians whose
// clipped bounding box touches it, in file order, with no cap on the list length:
//
//   1. scan_blocks / scan_add: exclusive prefix sum of tile_counts -> each Gaussian's first entry,
//      and the total number of entries (stats->pairs), computed with saturating adds.
//   2. emit_pairs: Gaussian i writes (tile, i) for every tile it touches at its offset, so the
//      pair array is ordered by Gaussian index.
//   3. radix sort by tile, 8 bits per pass, least significant digit first. Every pass is stable,
//      so within a tile the Gaussians stay in file order (no sort key needs the Gaussian index).
//   4. tile_ranges: [start, end) of each tile's run in the sorted array.
//
// CUB is host C++ and cannot be called through cudarc's PTX loading, hence these kernels.
// The number of pairs is known only on the device: kernels after the scan read stats->pairs and
// do nothing when it exceeds the allocated capacity; the host reads the stats back at the end of
// the render, grows the buffers and renders again (a viewer's later renders reuse them).
#include "common.cuh"

// ---------------------------------------------------------------------------------------------
// Exclusive prefix sum (saturating), in levels: scan_blocks scans SCAN_BLOCK_ITEMS items per block
// and writes each block's total; the host scans those totals with another scan_blocks launch
// (recursively), then scan_add adds the scanned totals back. The top level has one block, whose
// total goes to `block_sums` = &stats->pairs.
//
// Launch: grid = ceil(n / SCAN_BLOCK_ITEMS), block = SCAN_THREADS.
// Shared: padded(SCAN_BLOCK_ITEMS) words of items (8.3 KB) + SCAN_THREADS / 32 warp totals.
// ---------------------------------------------------------------------------------------------
extern "C" __global__ void __launch_bounds__(SCAN_THREADS)
scan_blocks(const unsigned int* __restrict__ in,    // [n]
            unsigned int* __restrict__ out,         // [n] exclusive prefix sums within the block
            const unsigned int n,
            unsigned int* __restrict__ block_sums) {  // [gridDim.x] block totals
    __shared__ unsigned int s_items[SCAN_BLOCK_ITEMS + SCAN_BLOCK_ITEMS / 32];
    __shared__ unsigned int s_warp[SCAN_THREADS / 32];
    const unsigned int base = blockIdx.x * SCAN_BLOCK_ITEMS;
#pragma unroll
    for (int k = 0; k < SCAN_PER_THREAD; ++k) {
        const unsigned int j = k * SCAN_THREADS + threadIdx.x;
        s_items[padded(j)] = base + j < n ? in[base + j] : 0;
    }
    const unsigned int total =
        block_exclusive_scan<SCAN_THREADS, SCAN_PER_THREAD>(s_items, s_warp, 0);
#pragma unroll
    for (int k = 0; k < SCAN_PER_THREAD; ++k) {
        const unsigned int j = k * SCAN_THREADS + threadIdx.x;
        if (base + j < n) out[base + j] = s_items[padded(j)];
    }
    if (threadIdx.x == 0) block_sums[blockIdx.x] = total;
}

// Adds block b's scanned offset to its SCAN_BLOCK_ITEMS items.
// Launch: grid = ceil(n / SCAN_BLOCK_ITEMS), block = SCAN_THREADS.
extern "C" __global__ void __launch_bounds__(SCAN_THREADS)
scan_add(unsigned int* __restrict__ data,                // [n]
         const unsigned int n,
         const unsigned int* __restrict__ block_offsets) {  // [gridDim.x]
    const unsigned int add = block_offsets[blockIdx.x];
    const unsigned int base = blockIdx.x * SCAN_BLOCK_ITEMS;
#pragma unroll
    for (int k = 0; k < SCAN_PER_THREAD; ++k) {
        const unsigned int j = base + k * SCAN_THREADS + threadIdx.x;
        if (j < n) data[j] = sat_add(data[j], add);
    }
}

// ---------------------------------------------------------------------------------------------
// emit_pairs: (tile key, Gaussian index) pairs at each Gaussian's scanned offset. Keys are
// row-major tile indices (< 2^24). A Gaussian with at most EMIT_WARP_THRESHOLD tiles is written
// by its own thread; larger ones are written by the whole warp, one after another, 32 entries
// per step.
//
// Launch: grid = ceil(n / EMIT_THREADS), block = EMIT_THREADS; no shared memory. Every lane
// reaches the ballot (lanes past n carry count 0).
// ---------------------------------------------------------------------------------------------
extern "C" __global__ void __launch_bounds__(EMIT_THREADS)
emit_pairs(const Splat* __restrict__ splats,              // [n]
           const unsigned int* __restrict__ tile_counts,  // [n]
           const unsigned int* __restrict__ offsets,      // [n] exclusive scan of tile_counts
           const RenderStats* __restrict__ stats,
           const unsigned int n,
           const unsigned int capacity,                   // entries in keys / vals
           const int tiles_x,
           unsigned int* __restrict__ keys,               // [capacity] out: tile index
           unsigned int* __restrict__ vals) {             // [capacity] out: Gaussian index
    if (stats->pairs > capacity) return;  // the whole grid returns; the host grows and retries
    const unsigned int i = blockIdx.x * EMIT_THREADS + threadIdx.x;
    const unsigned int lane = threadIdx.x & 31;
    unsigned int count = 0, off = 0;
    int tx0 = 0, ty0 = 0, span_w = 1;
    if (i < n) {
        count = tile_counts[i];
        if (count > 0) {
            off = offsets[i];
            const int4 box = splats[i].box;
            tx0 = box.x / TILE_W;
            ty0 = box.y / TILE_H;
            span_w = box.z / TILE_W - tx0 + 1;
        }
    }
    if (count <= EMIT_WARP_THRESHOLD) {
        for (unsigned int j = 0; j < count; ++j) {
            const int ty = ty0 + (int)(j / span_w), tx = tx0 + (int)(j % span_w);
            keys[off + j] = (unsigned int)(ty * tiles_x + tx);
            vals[off + j] = i;
        }
    }
    unsigned int big = __ballot_sync(FULL_MASK, count > EMIT_WARP_THRESHOLD);
    while (big) {
        const int src = __ffs(big) - 1;
        big &= big - 1;
        const unsigned int b_count = __shfl_sync(FULL_MASK, count, src);
        const unsigned int b_off = __shfl_sync(FULL_MASK, off, src);
        const unsigned int b_i = __shfl_sync(FULL_MASK, i, src);
        const int b_tx0 = __shfl_sync(FULL_MASK, tx0, src);
        const int b_ty0 = __shfl_sync(FULL_MASK, ty0, src);
        const unsigned int b_w = (unsigned int)__shfl_sync(FULL_MASK, span_w, src);
        for (unsigned int j = lane; j < b_count; j += 32) {
            const int ty = b_ty0 + (int)(j / b_w), tx = b_tx0 + (int)(j % b_w);
            keys[b_off + j] = (unsigned int)(ty * tiles_x + tx);
            vals[b_off + j] = b_i;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Radix sort, one 8-bit digit per pass (keys >> shift & 255), stable.
//
// A fixed grid of G blocks (chosen by the host from the capacity, at most a few hundred) splits
// the `pairs` entries into G contiguous segments of whole rounds of RADIX_THREADS entries.
// radix_histogram counts each segment's digits into hist[digit * G + block] (digit-major), the
// single-block radix_scan turns that into exclusive offsets, and radix_scatter moves every entry
// to offset[digit, block] + its rank among the segment's earlier entries of the same digit.
// ---------------------------------------------------------------------------------------------

// The [begin, end) entries of block `b` of `g` when `total` entries are split in whole rounds.
__device__ __forceinline__ void radix_segment(unsigned int total, unsigned int b, unsigned int g,
                                              unsigned int* begin, unsigned int* end) {
    const unsigned long long rounds = (total + RADIX_THREADS - 1ull) / RADIX_THREADS;
    const unsigned long long per = (rounds + g - 1) / g * RADIX_THREADS;
    const unsigned long long b0 = per * b, b1 = b0 + per;
    *begin = (unsigned int)(b0 < total ? b0 : total);
    *end = (unsigned int)(b1 < total ? b1 : total);
}

// Entries to sort: stats->pairs, or none when they did not fit.
__device__ __forceinline__ unsigned int pairs_to_sort(const RenderStats* stats,
                                                      unsigned int capacity) {
    const unsigned int total = stats->pairs;
    return total <= capacity ? total : 0;
}

// Launch: grid = G, block = RADIX_THREADS. Shared: RADIX_BUCKETS counters.
extern "C" __global__ void __launch_bounds__(RADIX_THREADS)
radix_histogram(const unsigned int* __restrict__ keys,  // [pairs]
                const RenderStats* __restrict__ stats,
                const unsigned int capacity,
                const unsigned int shift,
                unsigned int* __restrict__ hist) {       // [RADIX_BUCKETS * G] out, digit-major
    __shared__ unsigned int s_hist[RADIX_BUCKETS];
    s_hist[threadIdx.x] = 0;  // RADIX_THREADS == RADIX_BUCKETS
    __syncthreads();
    unsigned int begin, end;
    radix_segment(pairs_to_sort(stats, capacity), blockIdx.x, gridDim.x, &begin, &end);
    for (unsigned int i = begin + threadIdx.x; i < end; i += RADIX_THREADS)
        atomicAdd(&s_hist[(keys[i] >> shift) & (RADIX_BUCKETS - 1)], 1u);
    __syncthreads();
    hist[threadIdx.x * gridDim.x + blockIdx.x] = s_hist[threadIdx.x];
}

// Exclusive scan of the whole histogram in place, by one block walking it in chunks of
// RADIX_SCAN_THREADS * RADIX_SCAN_PER_THREAD entries (coalesced loads into padded shared memory,
// block_exclusive_scan, coalesced stores), carrying the running total.
// Launch: grid = 1, block = RADIX_SCAN_THREADS. Shared: 8448 + 32 words (33.9 KB).
extern "C" __global__ void __launch_bounds__(RADIX_SCAN_THREADS)
radix_scan(unsigned int* __restrict__ hist,  // [len] in: counts, out: exclusive offsets
           const unsigned int len) {
    constexpr unsigned int CHUNK = RADIX_SCAN_THREADS * RADIX_SCAN_PER_THREAD;
    __shared__ unsigned int s_items[CHUNK + CHUNK / 32];
    __shared__ unsigned int s_warp[RADIX_SCAN_THREADS / 32];
    unsigned int carry = 0;
    for (unsigned int base = 0; base < len; base += CHUNK) {
#pragma unroll
        for (int k = 0; k < RADIX_SCAN_PER_THREAD; ++k) {
            const unsigned int j = k * RADIX_SCAN_THREADS + threadIdx.x;
            s_items[padded(j)] = base + j < len ? hist[base + j] : 0;
        }
        carry = block_exclusive_scan<RADIX_SCAN_THREADS, RADIX_SCAN_PER_THREAD>(s_items, s_warp,
                                                                                carry);
#pragma unroll
        for (int k = 0; k < RADIX_SCAN_PER_THREAD; ++k) {
            const unsigned int j = k * RADIX_SCAN_THREADS + threadIdx.x;
            if (base + j < len) hist[base + j] = s_items[padded(j)];
        }
        // No barrier needed before the next chunk's loads: thread t loads and stores the same
        // slots padded(k * RADIX_SCAN_THREADS + t), and block_exclusive_scan begins with one.
    }
}

// Each round of RADIX_THREADS consecutive entries: a warp ranks its lanes among equal digits with
// __match_any_sync, the warps' per-digit counts go to shared memory, and an entry's position is
// base[digit] + (same digit in earlier warps) + (same digit in earlier lanes). Thread d then
// advances base[d] by the round's count of digit d and clears its column.
// Launch: grid = G (as radix_histogram), block = RADIX_THREADS.
// Shared: base[RADIX_BUCKETS] + counts[RADIX_WARPS][RADIX_BUCKETS] (9 KB).
extern "C" __global__ void __launch_bounds__(RADIX_THREADS)
radix_scatter(const unsigned int* __restrict__ keys_in,   // [pairs]
              const unsigned int* __restrict__ vals_in,   // [pairs]
              unsigned int* __restrict__ keys_out,        // [pairs]
              unsigned int* __restrict__ vals_out,        // [pairs]
              const RenderStats* __restrict__ stats,
              const unsigned int capacity,
              const unsigned int shift,
              const unsigned int* __restrict__ offsets) { // [RADIX_BUCKETS * G] scanned hist
    __shared__ unsigned int s_base[RADIX_BUCKETS];
    __shared__ unsigned int s_counts[RADIX_WARPS][RADIX_BUCKETS];
    const unsigned int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    s_base[tid] = offsets[tid * gridDim.x + blockIdx.x];
#pragma unroll
    for (int w = 0; w < RADIX_WARPS; ++w) s_counts[w][tid] = 0;
    __syncthreads();
    unsigned int begin, end;
    radix_segment(pairs_to_sort(stats, capacity), blockIdx.x, gridDim.x, &begin, &end);
    const unsigned int lanes_below = (1u << lane) - 1u;
    for (unsigned int round = begin; round < end; round += RADIX_THREADS) {
        const unsigned int i = round + tid;
        const bool valid = i < end;
        const unsigned int key = valid ? keys_in[i] : 0;
        const unsigned int val = valid ? vals_in[i] : 0;
        // Invalid lanes get digit RADIX_BUCKETS, a group of their own that is never written.
        const unsigned int digit = valid ? (key >> shift) & (RADIX_BUCKETS - 1) : RADIX_BUCKETS;
        const unsigned int peers = __match_any_sync(FULL_MASK, digit);
        const unsigned int rank = __popc(peers & lanes_below);
        if (valid && rank == 0) s_counts[warp][digit] = __popc(peers);
        __syncthreads();
        if (valid) {
            unsigned int pos = s_base[digit] + rank;
            for (unsigned int w = 0; w < warp; ++w) pos += s_counts[w][digit];
            keys_out[pos] = key;
            vals_out[pos] = val;
        }
        __syncthreads();
        unsigned int sum = 0;
#pragma unroll
        for (int w = 0; w < RADIX_WARPS; ++w) {
            sum += s_counts[w][tid];
            s_counts[w][tid] = 0;
        }
        s_base[tid] += sum;
        __syncthreads();
    }
}

// ---------------------------------------------------------------------------------------------
// tile_ranges: ranges[t] = [start, end) of tile t's run in the sorted keys; tiles without
// entries keep the zeros the host cleared them to.
// Launch: grid-stride, block = RANGES_THREADS, any grid size.
// ---------------------------------------------------------------------------------------------
extern "C" __global__ void __launch_bounds__(RANGES_THREADS)
tile_ranges(const unsigned int* __restrict__ keys,  // [pairs] sorted
            const RenderStats* __restrict__ stats,
            const unsigned int capacity,
            uint2* __restrict__ ranges) {           // [tiles] out: (start, end)
    const unsigned int total = pairs_to_sort(stats, capacity);
    for (unsigned int i = blockIdx.x * RANGES_THREADS + threadIdx.x; i < total;
         i += gridDim.x * RANGES_THREADS) {
        const unsigned int k = keys[i];
        if (i == 0 || keys[i - 1] != k) ranges[k].x = i;
        if (i + 1 == total || keys[i + 1] != k) ranges[k].y = i + 1;
    }
}
