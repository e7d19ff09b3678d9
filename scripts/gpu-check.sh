#!/usr/bin/env bash
# GPU correctness check, compute-sanitizer runs and benchmarks of the CUDA renderer and the GPU
# refinement. It runs on a machine with an NVIDIA GPU, against binaries built elsewhere, so that
# machine needs no Rust toolchain.
#
# 1. On the build machine: scripts/gpu-check-prepare.sh KODAK_DIR
#    (release binaries stripped into target/gpu-check/, test files from three Kodak pictures in
#    data/gpu-check/).
# 2. Copy target/gpu-check/ and data/gpu-check/ into the same place of a checkout on the GPU
#    machine, then run there:  scripts/gpu-check.sh RESULTS_DIR
#    It writes into RESULTS_DIR (default /tmp/gpu-check): nvidia-smi.txt, check.txt, cli.txt,
#    sanitizer.txt, faults.txt, bench.md, bench.txt, upscale.txt, refine.txt, cancel.txt and
#    summary.txt, and prints the summary last.
#
# Steps: (1) GPU against CPU on every file and view (8-bit within 1 level on >= 99.9% of samples
# and within 2 everywhere, f32 within 1e-4), RGBA8 output and the end-to-end decoder;
# (2) `gsimg decode --device cuda` against `--device cpu` (the CLI); (3) compute-sanitizer
# memcheck, racecheck, initcheck and synccheck on a small case; (4) faults: an injected kernel
# failure and a real out-of-memory, each with --device auto (CPU fallback, warning) and --device
# cuda (exit 1, no output); (5) benchmarks (bench.md); (6) `gsimg upscale --ensemble` with
# `--device auto` (8 renders through one CUDA renderer) against `--device cpu`, the network on
# the ONNX Runtime found (ORT_DYLIB_PATH, else the Python onnxruntime package's library) with
# models/upscale.onnx (GPU_CHECK_UPSCALE_MODEL to change it); (7) the refinement on the GPU:
# its gradients against the CPU refinement's on random scenes (1e-4 of the largest), its colour
# fit against the CPU's (random scenes: the same colours to 1e-3 and error to 1e-4; two Kodak
# pictures: an error no more than 1e-3 above the CPU's), the moves' removal costs and error map
# against the CPU's on three Kodak pictures (1e-4, the same 100 cheapest; with their times),
# the compute-sanitizer tools on a
# small descent and fit, encodes (analytic, and the network's `--effort default`) whose
# refinement meets a GPU out of memory (falls back to the CPU with one warning line and writes
# the file), and its speed on three Kodak pictures (refine.txt); (8) a 16384 x 16384 render
# cancelled from another thread after a fifth of its time returns within three quarters of it,
# and the same render in batches equals the one in a single launch (cancel.txt).
# GPU_CHECK_STEPS="1 2 6" runs only those steps (default: all).
# Exit status 1 when any step fails.
set -uo pipefail
cd "$(dirname "$0")/.."
RESULTS=${1:-/tmp/gpu-check}
mkdir -p "$RESULTS"
BIN=${GPU_CHECK_BIN:-target/gpu-check/gpu_check}
RBIN=${GPU_CHECK_REFINE_BIN:-target/gpu-check/refine_check}
CLI=${GPU_CHECK_CLI:-target/gpu-check/gsimg}
DATA=${GPU_CHECK_DATA:-data/gpu-check}
SAN=${GPU_CHECK_SANITIZER:-$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)}
results=()
status=0
record() { # name rc
    if [[ $2 == 0 ]]; then results+=("PASS  $1"); else results+=("FAIL  $1 (exit $2)"); status=1; fi
}
want() { [[ " ${GPU_CHECK_STEPS:-1 2 3 4 5 6 7 8} " == *" $1 "* ]]; }
logged() { # file name command: runs the command with its output in $RESULTS/file, shows it, records it
    "$3" > "$RESULTS/$1" 2>&1
    local rc=$?
    cat "$RESULTS/$1"
    record "$2" $rc
}

nvidia-smi > "$RESULTS/nvidia-smi.txt" 2>&1
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv \
    >> "$RESULTS/nvidia-smi.txt" 2>&1
echo "== $(date -u +%FT%TZ) $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader)"

if want 1; then
    echo "== 1. GPU against CPU"
    t0=$SECONDS
    timeout 300 "$BIN" check "$DATA" 2>&1 | tee "$RESULTS/check.txt"
    record "GPU = CPU on every file and view ($((SECONDS - t0)) s)" "${PIPESTATUS[0]}"
fi

if want 2; then
    echo "== 2. gsimg decode --device cuda vs --device cpu"
    decode_cuda_vs_cpu() (
        set -x
        "$CLI" decode "$DATA/kodim23.q50.gsi" /tmp/gpu-check-cuda.png --scale 2.5 --device cuda &&
            "$CLI" decode "$DATA/kodim23.q50.gsi" /tmp/gpu-check-cpu.png --scale 2.5 --device cpu &&
            "$BIN" compare-png /tmp/gpu-check-cuda.png /tmp/gpu-check-cpu.png
        rc=$?
        "$CLI" decode "$DATA/kodim05.q50.gsi" /tmp/gpu-check-region.png --scale 4 \
            --region 1000,700,640,480 --device auto
        set +x
        exit $rc
    )
    logged cli.txt "gsimg decode --device cuda matches --device cpu" decode_cuda_vs_cpu
fi

if want 3; then
    echo "== 3. compute-sanitizer"
    : > "$RESULTS/sanitizer.txt"
    for tool in memcheck racecheck initcheck synccheck; do
        case=full
        [[ $tool == racecheck ]] && case=small
        echo "---- $tool ($case case)" | tee -a "$RESULTS/sanitizer.txt"
        timeout 240 "$SAN" --tool $tool --error-exitcode 7 "$BIN" sanitize "$DATA" $case \
            2>&1 | tail -n 40 | tee -a "$RESULTS/sanitizer.txt"
        record "compute-sanitizer $tool" "${PIPESTATUS[0]}"
    done
fi

if want 4; then
    echo "== 4. faults: the CPU fallback on a real GPU"
    # (a) a kernel failure, injected at the rasterize launch by a test build (target/gpu-check/gsimg-fi,
    #     built with --features fault-injection): `auto` warns and renders on the CPU (the same bytes
    #     as --device cpu), `cuda` exits 1 and writes nothing;
    # (b) GPU out of memory, for real: another process holds all but 64 MiB of the card's memory.
    FI=${GPU_CHECK_FI:-target/gpu-check/gsimg-fi}
    faults_fall_back() (
        f=$DATA/kodim23.q50.gsi
        d=$DATA/kodim23.dense4.gsi
        ok=0
        rm -f /tmp/f-*.png
        "$CLI" decode "$f" /tmp/f-cpu.png --scale 2 --device cpu || ok=1
        echo "-- (a) GSIMG_INJECT_CUDA_FAULT=rasterize, --device auto"
        GSIMG_INJECT_CUDA_FAULT=rasterize "$FI" decode "$f" /tmp/f-auto.png --scale 2 --device auto 2>/tmp/f.err
        rc=$?; cat /tmp/f.err; echo "exit $rc"
        [[ $rc == 0 ]] && grep -q "warning: the GPU render failed" /tmp/f.err && cmp /tmp/f-auto.png /tmp/f-cpu.png || ok=1
        echo "-- (a) GSIMG_INJECT_CUDA_FAULT=rasterize, --device cuda"
        GSIMG_INJECT_CUDA_FAULT=rasterize "$FI" decode "$f" /tmp/f-cuda.png --scale 2 --device cuda
        rc=$?; echo "exit $rc"
        [[ $rc == 1 && ! -e /tmp/f-cuda.png ]] || ok=1
        echo "-- (b) out of memory: a process holds all but 64 MiB"
        rm -f /tmp/hog.ready
        # one line: an indented multi-line program would not parse (the 2026-11-27 run failed so)
        python3 -c "import time, torch; free, total = torch.cuda.mem_get_info(); \
x = torch.empty(free - 64 * 2**20, dtype=torch.uint8, device='cuda'); \
print(f'hog: holding {x.numel() / 2**30:.2f} GiB of {total / 2**30:.2f} GiB', flush=True); \
open('/tmp/hog.ready', 'w').close(); time.sleep(90)" & hog=$!
        for _ in $(seq 120); do [[ -e /tmp/hog.ready ]] && break; kill -0 $hog 2>/dev/null || break; sleep 0.5; done
        if [[ ! -e /tmp/hog.ready ]]; then echo "the memory-holding process did not start"; kill $hog 2>/dev/null; exit 1; fi
        nvidia-smi --query-gpu=memory.used,memory.total --format=csv,noheader
        "$CLI" decode "$d" /tmp/f-dense-cpu.png --scale 2 --device cpu || ok=1
        "$CLI" decode "$d" /tmp/f-oom-auto.png --scale 2 --device auto 2>/tmp/f.err
        rc=$?; cat /tmp/f.err; echo "exit $rc (auto)"
        [[ $rc == 0 ]] && grep -Eq "warning|note" /tmp/f.err && cmp /tmp/f-oom-auto.png /tmp/f-dense-cpu.png || ok=1
        "$CLI" decode "$d" /tmp/f-oom-cuda.png --scale 2 --device cuda
        rc=$?; echo "exit $rc (cuda)"
        [[ $rc == 1 && ! -e /tmp/f-oom-cuda.png ]] || ok=1
        kill $hog 2>/dev/null; wait $hog 2>/dev/null
        exit $ok
    )
    logged faults.txt "faults: injected kernel failure and real out-of-memory fall back to the CPU (auto) or fail cleanly (cuda)" faults_fall_back
fi

if want 5; then
    echo "== 5. benchmarks"
    timeout 400 "$BIN" bench "$DATA" --out "$RESULTS/bench.md" 2>&1 | tee "$RESULTS/bench.txt"
    record "benchmarks ran" "${PIPESTATUS[0]}"
fi

if want 6; then
    echo "== 6. gsimg upscale --ensemble: 8 renders through one GPU set-up vs the CPU"
    # The network runs on whatever ONNX Runtime is there (ORT_DYLIB_PATH, else the Python
    # onnxruntime package's library: the CPU provider), the same in both runs, so only the
    # renderer differs: the CUDA renderer (set up once for the 8 passes) against the CPU one.
    MODEL=${GPU_CHECK_UPSCALE_MODEL:-models/upscale.onnx}
    ORTLIB=${ORT_DYLIB_PATH:-$(python3 -c 'import glob, os, onnxruntime as o
print(sorted(glob.glob(os.path.join(os.path.dirname(o.__file__), "capi", "libonnxruntime.so*")))[-1])' 2>/dev/null)}
    if [[ -z $ORTLIB || ! -f $MODEL ]]; then
        echo "no ONNX Runtime library or no $MODEL" | tee "$RESULTS/upscale.txt"
        record "gsimg upscale --ensemble (no ONNX Runtime library or model: not run)" 1
    else
        upscale_gpu_vs_cpu() (
            set -x
            rm -f /tmp/u-gpu.png /tmp/u-cpu.png
            "$CLI" upscale examples/images/example.png /tmp/u-gpu.png --scale 2.5 --ensemble \
                --model "$MODEL" --ort-lib "$ORTLIB" --device auto -v 2> /tmp/u-gpu.err
            rc=$?
            cat /tmp/u-gpu.err
            "$CLI" upscale examples/images/example.png /tmp/u-cpu.png --scale 2.5 --ensemble \
                --model "$MODEL" --ort-lib "$ORTLIB" --device cpu || rc=1
            "$BIN" compare-png /tmp/u-gpu.png /tmp/u-cpu.png || rc=1
            # the renders ran on the GPU: no CPU note or warning from `auto`, and the summary says so
            ! grep -Eq "rendering on the CPU" /tmp/u-gpu.err || rc=1
            grep -q "rendered on the GPU" /tmp/u-gpu.err || rc=1
            set +x
            exit $rc
        )
        logged upscale.txt "gsimg upscale --ensemble renders on the GPU and matches --device cpu" upscale_gpu_vs_cpu
    fi
fi

if want 7; then
    echo "== 7. refinement on the GPU"
    refine_checks() (
        ok=0
        "$RBIN" grad || ok=1
        "$RBIN" fit "$DATA"/kodim01.png "$DATA"/kodim23.png || ok=1
        for tool in memcheck racecheck initcheck synccheck; do
            echo "---- compute-sanitizer $tool"
            timeout 240 "$SAN" --tool $tool --error-exitcode 7 "$RBIN" sanitize 2>&1 | tail -n 20
            [[ ${PIPESTATUS[0]} == 0 ]] || ok=1
        done
        echo "-- out of memory during the refinement: a process holds all but 64 MiB"
        rm -f /tmp/hog.ready /tmp/r-oom.gsi
        python3 -c "import time, torch; free, total = torch.cuda.mem_get_info(); \
x = torch.empty(free - 64 * 2**20, dtype=torch.uint8, device='cuda'); \
open('/tmp/hog.ready', 'w').close(); time.sleep(60)" & hog=$!
        for _ in $(seq 120); do [[ -e /tmp/hog.ready ]] && break; kill -0 $hog 2>/dev/null || break; sleep 0.5; done
        "$CLI" encode "$DATA/kodim23.png" /tmp/r-oom.gsi --method analytic --refine 40 \
            --device auto 2>/tmp/r.err
        rc=$?; cat /tmp/r.err; echo "exit $rc"
        # (the GPU may already fail when encode opens it, before the refinement: another line)
        [[ $rc == 0 && -s /tmp/r-oom.gsi && $(grep -c "warning" /tmp/r.err) == 1 ]] &&
            grep -Eq "refining on the CPU after a GPU error|the GPU cannot be used" /tmp/r.err || ok=1
        # the network encoder's refinement (colour fits, descent, quantization-aware steps):
        # the file is written, with one warning line
        MODEL=${GPU_CHECK_COMPACT_MODEL:-models/compact.onnx}
        ORTLIB=${ORT_DYLIB_PATH:-$(python3 -c 'import glob, os, onnxruntime as o
print(sorted(glob.glob(os.path.join(os.path.dirname(o.__file__), "capi", "libonnxruntime.so*")))[-1])' 2>/dev/null)}
        if [[ -n $ORTLIB && -f $MODEL ]]; then
            rm -f /tmp/r-oom-net.gsi
            "$CLI" encode "$DATA/kodim23.png" /tmp/r-oom-net.gsi --effort default --model "$MODEL" \
                --ort-lib "$ORTLIB" --device auto 2>/tmp/r.err
            rc=$?; cat /tmp/r.err; echo "exit $rc (network)"
            [[ $rc == 0 && -s /tmp/r-oom-net.gsi && $(grep -c "warning" /tmp/r.err) == 1 ]] || ok=1
        else
            echo "no ONNX Runtime library or no $MODEL: the network encoder's case not run"; ok=1
        fi
        kill $hog 2>/dev/null; wait $hog 2>/dev/null
        echo "-- the moves between rounds (removal costs, error map) against the CPU's"
        "$RBIN" moves "$DATA"/kodim01.png "$DATA"/kodim05.png "$DATA"/kodim23.png || ok=1
        echo "-- speed"
        "$RBIN" speed "$DATA"/kodim01.png "$DATA"/kodim05.png "$DATA"/kodim23.png --steps 1000 --cpu-steps 10 || ok=1
        exit $ok
    )
    logged refine.txt "refinement: GPU gradients = CPU (1e-4), colour fit = CPU where it converges and as good elsewhere, moves = CPU (1e-4), sanitizers clean, out-of-memory falls back to the CPU" refine_checks
fi

if want 8; then
    echo "== 8. a GPU render cancelled from another thread"
    cancel_check() { timeout 120 "$BIN" cancel 16384; }
    logged cancel.txt "a 16384^2 GPU render cancels within 3/4 of its time; batches = one launch" cancel_check
fi

{
    echo "gpu-check summary ($(nvidia-smi --query-gpu=name --format=csv,noheader), $(date -u +%FT%TZ))"
    printf '%s\n' "${results[@]}"
    grep -E "^\| (compact|dense)" "$RESULTS/bench.md" 2>/dev/null | cut -d'|' -f2-7
    grep -E "full decode" "$RESULTS/bench.md" 2>/dev/null | cut -d'|' -f2-4
    if [[ $status == 0 ]]; then echo "OVERALL: PASS"; else echo "OVERALL: FAIL"; fi
} > "$RESULTS/summary.txt"
echo
cat "$RESULTS/summary.txt"
exit $status
