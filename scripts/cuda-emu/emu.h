// A CPU stand-in for the CUDA device built-ins the kernels in kernels/ use, so the same .cu
// sources compile with g++ and run inside fake_libcuda.cpp (a development tool: see README.md).
//
// Model: a block's threads are OS threads; __syncthreads() is a std::barrier over the block, and
// warp intrinsics exchange values through a per-warp barrier. Blocks run one after another, so
// __shared__ variables are function-local statics. Threads that return early drop out of both
// barriers, as exited threads do on the GPU.
#pragma once
#include <atomic>
#include <barrier>
#include <cmath>
#include <cstdint>
#include <cstring>

// CUDA's device math functions in the global namespace.
using std::isfinite;

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __shared__ static
#define __align__(n) alignas(n)

struct uint3 { unsigned int x, y, z; };
struct dim3 { unsigned int x = 1, y = 1, z = 1; };
struct float2 { float x, y; };
struct alignas(16) float4 { float x, y, z, w; };
struct alignas(16) int4 { int x, y, z, w; };
struct alignas(8) uint2 { unsigned int x, y; };
inline uint2 make_uint2(unsigned int x, unsigned int y) { return {x, y}; }
inline float2 make_float2(float x, float y) { return {x, y}; }
inline float4 make_float4(float x, float y, float z, float w) { return {x, y, z, w}; }
inline int4 make_int4(int x, int y, int z, int w) { return {x, y, z, w}; }

namespace emu {
struct Warp {
    explicit Warp(int n) : bar(n) {}
    std::barrier<> bar;
    uint64_t slot[32];
};
struct ThreadCtx {
    uint3 thread, block;
    dim3 block_dim, grid_dim;
    std::barrier<>* block_bar;
    Warp* warp;
    int lane;
};
extern thread_local ThreadCtx tl;

template <class T>
inline uint64_t to_bits(T v) {
    uint64_t b = 0;
    std::memcpy(&b, &v, sizeof(T));
    return b;
}
template <class T>
inline T from_bits(uint64_t b) {
    T v;
    std::memcpy(&v, &b, sizeof(T));
    return v;
}
// Every lane publishes `v`; returns lane `src`'s value (own value when src is out of range).
template <class T>
inline T exchange(T v, int src) {
    tl.warp->slot[tl.lane] = to_bits(v);
    tl.warp->bar.arrive_and_wait();
    T r = (src >= 0 && src < 32) ? from_bits<T>(tl.warp->slot[src]) : v;
    tl.warp->bar.arrive_and_wait();
    return r;
}
}  // namespace emu

#define threadIdx (emu::tl.thread)
#define blockIdx (emu::tl.block)
#define blockDim (emu::tl.block_dim)
#define gridDim (emu::tl.grid_dim)

inline void __syncthreads() { emu::tl.block_bar->arrive_and_wait(); }

template <class T>
inline T __shfl_sync(unsigned, T v, int src) { return emu::exchange(v, src); }
template <class T>
inline T __shfl_up_sync(unsigned, T v, unsigned d) {
    return emu::exchange(v, emu::tl.lane - (int)d);
}
template <class T>
inline T __shfl_down_sync(unsigned, T v, unsigned d) {
    return emu::exchange(v, emu::tl.lane + (int)d);
}
inline unsigned int __ballot_sync(unsigned, int pred) {
    auto* w = emu::tl.warp;
    w->slot[emu::tl.lane] = pred ? 1 : 0;
    w->bar.arrive_and_wait();
    unsigned int m = 0;
    for (int l = 0; l < 32; ++l) m |= (w->slot[l] ? 1u : 0u) << l;
    w->bar.arrive_and_wait();
    return m;
}
inline int __any_sync(unsigned mask, int pred) { return __ballot_sync(mask, pred) != 0; }
inline unsigned int __match_any_sync(unsigned, unsigned int v) {
    auto* w = emu::tl.warp;
    w->slot[emu::tl.lane] = v;
    w->bar.arrive_and_wait();
    unsigned int m = 0;
    for (int l = 0; l < 32; ++l) m |= (w->slot[l] == v ? 1u : 0u) << l;
    w->bar.arrive_and_wait();
    return m;
}
inline int __popc(unsigned int v) { return __builtin_popcount(v); }
inline int __ffs(unsigned int v) { return __builtin_ffs((int)v); }

inline unsigned int atomicAdd(unsigned int* p, unsigned int v) {
    return std::atomic_ref<unsigned int>(*p).fetch_add(v);
}
inline unsigned long long atomicAdd(unsigned long long* p, unsigned long long v) {
    return std::atomic_ref<unsigned long long>(*p).fetch_add(v);
}

// Built with -ffp-contract=off: each operation is rounded on its own, as the intrinsics say.
inline float __fmul_rn(float a, float b) { return a * b; }
inline float __fadd_rn(float a, float b) { return a + b; }
inline float __fsub_rn(float a, float b) { return a - b; }
inline float __fdiv_rn(float a, float b) { return a / b; }
inline unsigned int __float2uint_rz(float v) { return (unsigned int)v; }

inline long long max(long long a, long long b) { return a > b ? a : b; }
inline long long min(long long a, long long b) { return a < b ? a : b; }
inline unsigned int min(unsigned int a, unsigned int b) { return a < b ? a : b; }
inline int min(int a, int b) { return a < b ? a : b; }
inline int max(int a, int b) { return a > b ? a : b; }
inline unsigned int max(unsigned int a, unsigned int b) { return a > b ? a : b; }
