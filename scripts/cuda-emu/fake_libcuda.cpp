// A fake libcuda.so that runs gsimg's kernels on the CPU: the subset of the CUDA driver API that
// cudarc calls for src/cuda/, with "device memory" in host memory, every stream operation done
// at once, and cuLaunchKernel running the kernels of kernels/*.cu compiled as C++ (emu.h).
// A development tool for machines without a GPU: see scripts/cuda-emu/README.md.
#include "emu.h"

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <semaphore>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "../../kernels/bin.cu"
#include "../../kernels/project.cu"
#include "../../kernels/rasterize.cu"
#include "../../kernels/refine.cu"

thread_local emu::ThreadCtx emu::tl;

namespace {

// ---- Thread pool: worker i runs CUDA thread i of the current block. -----------------------------
constexpr int MAX_THREADS = 1024;
struct Pool {
    std::vector<std::thread> workers;
    std::unique_ptr<std::binary_semaphore> start[MAX_THREADS];
    std::binary_semaphore done{0};
    std::atomic<int> remaining{0};
    std::function<void(int)> job;
    Pool() {
        for (int i = 0; i < MAX_THREADS; ++i) start[i] = std::make_unique<std::binary_semaphore>(0);
        for (int i = 0; i < MAX_THREADS; ++i)
            workers.emplace_back([this, i] {
                for (;;) {
                    start[i]->acquire();
                    job(i);
                    if (remaining.fetch_sub(1) == 1) done.release();
                }
            });
        for (auto& w : workers) w.detach();
    }
    void run(int n, std::function<void(int)> f) {
        job = std::move(f);
        remaining = n;
        for (int i = 0; i < n; ++i) start[i]->release();
        done.acquire();
    }
};
Pool& pool() {
    static Pool* p = new Pool();
    return *p;
}

template <class F>
void run_grid(dim3 grid, dim3 block, F body) {
    const int nthreads = (int)(block.x * block.y * block.z);
    if (nthreads > MAX_THREADS || nthreads % 32 != 0 || block.y != 1 || block.z != 1 ||
        grid.y != 1 || grid.z != 1) {
        std::fprintf(stderr, "fake libcuda: unsupported launch shape\n");
        std::abort();
    }
    for (unsigned int b = 0; b < grid.x; ++b) {
        std::barrier<> block_bar(nthreads);
        std::vector<std::unique_ptr<emu::Warp>> warps;
        for (int w = 0; w < nthreads / 32; ++w) warps.push_back(std::make_unique<emu::Warp>(32));
        pool().run(nthreads, [&](int t) {
            emu::tl.thread = {(unsigned)t, 0, 0};
            emu::tl.block = {b, 0, 0};
            emu::tl.block_dim = block;
            emu::tl.grid_dim = grid;
            emu::tl.block_bar = &block_bar;
            emu::tl.warp = warps[t / 32].get();
            emu::tl.lane = t % 32;
            body();
            // Exited threads no longer take part in barriers.
            emu::tl.warp->bar.arrive_and_drop();
            block_bar.arrive_and_drop();
        });
    }
}

// ---- Kernel registry. ---------------------------------------------------------------------------
using Launcher = std::function<void(void**, dim3, dim3)>;

template <class... A, std::size_t... I>
std::tuple<std::decay_t<A>...> unpack(void** p, std::index_sequence<I...>) {
    return std::tuple<std::decay_t<A>...>(*static_cast<std::decay_t<A>*>(p[I])...);
}
template <class... A>
Launcher adapt(void (*k)(A...)) {
    return [k](void** params, dim3 g, dim3 b) {
        auto args = unpack<A...>(params, std::index_sequence_for<A...>{});
        run_grid(g, b, [&] { std::apply(k, args); });
    };
}
struct Function {
    std::string name;
    Launcher launch;
};
std::map<std::string, Function>& registry() {
    static auto* r = new std::map<std::string, Function>{
#define K(name) {#name, Function{#name, adapt(&name)}}
        K(project_gaussians), K(scan_blocks), K(scan_add), K(emit_pairs), K(radix_histogram),
        K(radix_scan), K(radix_scatter), K(tile_ranges), K(rasterize_u8_c1), K(rasterize_u8_c2),
        K(rasterize_u8_c3), K(rasterize_u8_c4), K(rasterize_f32_c1), K(rasterize_f32_c2),
        K(rasterize_f32_c3), K(rasterize_f32_c4), K(refine_forward_c1), K(refine_forward_c2),
        K(refine_forward_c3), K(refine_forward_c4), K(refine_loss), K(refine_backward_c1),
        K(refine_backward_c2), K(refine_backward_c3), K(refine_backward_c4), K(refine_update),
        K(fit_start), K(fit_product), K(fit_reduce), K(fit_step), K(fit_direction), K(fit_finish),
        K(moves_blend_c1), K(moves_blend_c2), K(moves_blend_c3), K(moves_blend_c4),
        K(moves_cost_c1), K(moves_cost_c2), K(moves_cost_c3), K(moves_cost_c4), K(moves_gather),
#undef K
    };
    return *r;
}

using Clock = std::chrono::steady_clock;
struct Event {
    Clock::time_point t;
};
thread_local void* current_ctx = nullptr;
int context_token;
int module_token;
int stream_token;

// Poison fresh allocations so reads of memory nothing wrote show up as wrong pixels.
void* poisoned_malloc(size_t n) {
    void* p = std::malloc(n ? n : 1);
    std::memset(p, 0xA5, n);
    return p;
}

}  // namespace

// ---- The driver API subset (CUresult 0 = CUDA_SUCCESS). -------------------------------------------
typedef unsigned long long CUdeviceptr;
extern "C" {
int cuInit(unsigned) { return 0; }
int cuDriverGetVersion(int* v) { *v = 13000; return 0; }
int cuDeviceGetCount(int* n) { *n = 1; return 0; }
int cuDeviceGet(int* d, int ordinal) {
    if (ordinal != 0) return 101;  // CUDA_ERROR_INVALID_DEVICE
    *d = 0;
    return 0;
}
int cuDeviceGetName(char* name, int len, int) {
    std::snprintf(name, len, "gsimg CPU emulator (fake libcuda)");
    return 0;
}
int cuDeviceGetAttribute(int* v, int attr, int) {
    switch (attr) {
        case 75: *v = 9; break;    // compute capability major
        case 76: *v = 0; break;    // minor
        case 16: *v = 4; break;    // multiprocessors
        case 115: *v = 1; break;   // memory pools supported
        default: *v = 0;
    }
    return 0;
}
int cuDeviceTotalMem_v2(size_t* b, int) { *b = size_t(1) << 34; return 0; }
int cuDevicePrimaryCtxRetain(void** ctx, int) { *ctx = &context_token; return 0; }
int cuDevicePrimaryCtxRelease_v2(int) { return 0; }
int cuCtxGetCurrent(void** ctx) { *ctx = current_ctx; return 0; }
int cuCtxSetCurrent(void* ctx) { current_ctx = ctx; return 0; }
int cuCtxSynchronize() { return 0; }
int cuGetErrorString(int e, const char** s) {
    static thread_local char buf[64];
    std::snprintf(buf, sizeof buf, "fake libcuda error %d", e);
    *s = buf;
    return 0;
}
int cuGetErrorName(int e, const char** s) { return cuGetErrorString(e, s); }

int cuStreamCreate(void** s, unsigned) { *s = &stream_token; return 0; }
int cuStreamDestroy_v2(void*) { return 0; }
int cuStreamSynchronize(void*) { return 0; }
int cuStreamWaitEvent(void*, void*, unsigned) { return 0; }

int cuEventCreate(void** e, unsigned) { *e = new Event{Clock::now()}; return 0; }
int cuEventDestroy_v2(void* e) { delete static_cast<Event*>(e); return 0; }
int cuEventRecord(void* e, void*) { static_cast<Event*>(e)->t = Clock::now(); return 0; }
int cuEventSynchronize(void*) { return 0; }
int cuEventQuery(void*) { return 0; }
int cuEventElapsedTime_v2(float* ms, void* a, void* b) {
    *ms = std::chrono::duration<float, std::milli>(static_cast<Event*>(b)->t -
                                                   static_cast<Event*>(a)->t).count();
    return 0;
}
int cuEventElapsedTime(float* ms, void* a, void* b) { return cuEventElapsedTime_v2(ms, a, b); }

int cuMemAlloc_v2(CUdeviceptr* p, size_t n) { *p = (CUdeviceptr)poisoned_malloc(n); return 0; }
int cuMemAllocAsync(CUdeviceptr* p, size_t n, void*) { return cuMemAlloc_v2(p, n); }
int cuMemFree_v2(CUdeviceptr p) { std::free((void*)p); return 0; }
int cuMemFreeAsync(CUdeviceptr p, void*) { return cuMemFree_v2(p); }
int cuMemHostAlloc(void** p, size_t n, unsigned) { *p = poisoned_malloc(n); return 0; }
int cuMemFreeHost(void* p) { std::free(p); return 0; }
int cuMemsetD8Async(CUdeviceptr p, unsigned char v, size_t n, void*) {
    std::memset((void*)p, v, n);
    return 0;
}
int cuMemsetD8_v2(CUdeviceptr p, unsigned char v, size_t n) { return cuMemsetD8Async(p, v, n, 0); }
int cuMemcpyHtoDAsync_v2(CUdeviceptr d, const void* s, size_t n, void*) {
    std::memcpy((void*)d, s, n);
    return 0;
}
int cuMemcpyDtoHAsync_v2(void* d, CUdeviceptr s, size_t n, void*) {
    std::memcpy(d, (const void*)s, n);
    return 0;
}
int cuMemcpyDtoDAsync_v2(CUdeviceptr d, CUdeviceptr s, size_t n, void*) {
    std::memcpy((void*)d, (const void*)s, n);
    return 0;
}
int cuMemcpyHtoD_v2(CUdeviceptr d, const void* s, size_t n) { return cuMemcpyHtoDAsync_v2(d, s, n, 0); }
int cuMemcpyDtoH_v2(void* d, CUdeviceptr s, size_t n) { return cuMemcpyDtoHAsync_v2(d, s, n, 0); }

int cuModuleLoadData(void** m, const void* image) {
    // The PTX is not run; check that it is a PTX module at least.
    if (!std::strstr(static_cast<const char*>(image), ".entry")) return 218;  // INVALID_PTX
    *m = &module_token;
    return 0;
}
int cuModuleUnload(void*) { return 0; }
int cuModuleGetFunction(void** f, void*, const char* name) {
    auto it = registry().find(name);
    if (it == registry().end()) return 500;  // CUDA_ERROR_NOT_FOUND
    *f = &it->second;
    return 0;
}
int cuLaunchKernel(void* f, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by,
                   unsigned bz, unsigned shared, void* stream, void** params, void** extra) {
    (void)shared;
    (void)stream;
    if (extra) return 1;  // CUDA_ERROR_INVALID_VALUE
    if (gx == 0 || bx == 0) return 1;
    auto* fn = static_cast<Function*>(f);
    // One launch at a time: the blocks share one thread pool and the kernels' __shared__
    // variables are statics, so launches from several host threads (tests running in
    // parallel) must not overlap.
    static std::mutex launching;
    std::lock_guard<std::mutex> lock(launching);
    if (std::getenv("FAKE_CUDA_TRACE"))
        std::fprintf(stderr, "fake libcuda: %s <<<%u, %u>>>\n", fn->name.c_str(), gx, bx);
    fn->launch(params, dim3{gx, gy, gz}, dim3{bx, by, bz});
    return 0;
}
}
