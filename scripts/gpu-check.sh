#!/usr/bin/env bash
# GPU correctness check, compute-sanitizer runs and benchmarks of the CUDA renderer. Runs ON the
# GPU machine (which has no Rust toolchain) against binaries built on the build machine.
#
# 1. Here:   scripts/gpu-check-prepare.sh
#            (cargo build --release --bin gsimg --example gpu_check, stripped into
#            target/gpu-check/; test files from two Kodak photos in data/gpu-check/)
# 2. There:  the device tool's `run` with
#              carry   = ["target/gpu-check", "data/gpu-check"]
#              command = "scripts/gpu-check.sh \"$OUT\""
#            It writes under OUT: nvidia-smi.txt, check.txt, cli.txt, sanitizer.txt, faults.txt, bench.md,
#            bench.txt, summary.txt, and prints the summary last.
#
# Steps: (1) GPU against CPU on every file and view (8-bit within 1 level on >= 99.9% of samples
# and within 2 everywhere, f32 within 1e-4), RGBA8 output and the end-to-end decoder;
# (2) `gsimg decode --device cuda` against `--device cpu` (the CLI); (3) compute-sanitizer
# memcheck, racecheck, initcheck and synccheck on a small case; (4) faults: an injected kernel
# failure and a real out-of-memory, each with --device auto (CPU fallback, warning) and --device
# cuda (exit 1, no output); (5) benchmarks (bench.md).
# Exit status 1 when any step fails.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-${OUT:-/tmp/gpu-check}}
mkdir -p "$OUT"
BIN=${GPU_CHECK_BIN:-target/gpu-check/gpu_check}
CLI=${GPU_CHECK_CLI:-target/gpu-check/gsimg}
DATA=${GPU_CHECK_DATA:-data/gpu-check}
SAN=${GPU_CHECK_SANITIZER:-$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)}
results=()
status=0
record() { # name rc
    if [[ $2 == 0 ]]; then results+=("PASS  $1"); else results+=("FAIL  $1 (exit $2)"); status=1; fi
}

nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv \
    >> "$OUT/nvidia-smi.txt" 2>&1
echo "== $(date -u +%FT%TZ) $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader)"

echo "== 1. GPU against CPU"
t0=$SECONDS
timeout 300 "$BIN" check "$DATA" 2>&1 | tee "$OUT/check.txt"
record "GPU = CPU on every file and view ($((SECONDS - t0)) s)" "${PIPESTATUS[0]}"

echo "== 2. gsimg decode --device cuda vs --device cpu"
(
    set -x
    "$CLI" decode "$DATA/kodim23.q50.gsi" /tmp/gpu-check-cuda.png --scale 2.5 --device cuda &&
        "$CLI" decode "$DATA/kodim23.q50.gsi" /tmp/gpu-check-cpu.png --scale 2.5 --device cpu &&
        "$BIN" compare-png /tmp/gpu-check-cuda.png /tmp/gpu-check-cpu.png
    rc=$?
    "$CLI" decode "$DATA/kodim05.q50.gsi" /tmp/gpu-check-region.png --scale 4 \
        --region 1000,700,640,480 --device auto
    set +x
    exit $rc
) > "$OUT/cli.txt" 2>&1
rc=$?
cat "$OUT/cli.txt"
record "gsimg decode --device cuda matches --device cpu" $rc

echo "== 3. compute-sanitizer"
: > "$OUT/sanitizer.txt"
for tool in memcheck racecheck initcheck synccheck; do
    case=full
    [[ $tool == racecheck ]] && case=small
    echo "---- $tool ($case case)" | tee -a "$OUT/sanitizer.txt"
    timeout 240 "$SAN" --tool $tool --error-exitcode 7 "$BIN" sanitize "$DATA" $case \
        2>&1 | tail -n 40 | tee -a "$OUT/sanitizer.txt"
    record "compute-sanitizer $tool" "${PIPESTATUS[0]}"
done

echo "== 4. faults: the CPU fallback on a real GPU"
# (a) a kernel failure, injected at the rasterize launch by a test build (target/gpu-check/gsimg-fi,
#     built with --features fault-injection): `auto` warns and renders on the CPU (the same bytes
#     as --device cpu), `cuda` exits 1 and writes nothing;
# (b) GPU out of memory, for real: another process holds all but 64 MiB of the card's memory.
FI=${GPU_CHECK_FI:-target/gpu-check/gsimg-fi}
(
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
    python3 -c "
import sys, time, torch
free, total = torch.cuda.mem_get_info()
x = torch.empty(free - 64 * 2**20, dtype=torch.uint8, device='cuda')
print(f'hog: holding {x.numel() / 2**30:.2f} GiB of {total / 2**30:.2f} GiB', flush=True)
open('/tmp/hog.ready', 'w').close()
time.sleep(90)
" & hog=$!
    for _ in $(seq 120); do [[ -e /tmp/hog.ready ]] && break; sleep 0.5; done
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
) > "$OUT/faults.txt" 2>&1
rc=$?
cat "$OUT/faults.txt"
record "faults: injected kernel failure and real out-of-memory fall back to the CPU (auto) or fail cleanly (cuda)" $rc

echo "== 5. benchmarks"
timeout 400 "$BIN" bench "$DATA" --out "$OUT/bench.md" 2>&1 | tee "$OUT/bench.txt"
record "benchmarks ran" "${PIPESTATUS[0]}"

{
    echo "gpu-check summary ($(nvidia-smi --query-gpu=name --format=csv,noheader), $(date -u +%FT%TZ))"
    printf '%s\n' "${results[@]}"
    grep -E "^\| (compact|dense)" "$OUT/bench.md" 2>/dev/null | cut -d'|' -f2-7
    grep -E "full decode" "$OUT/bench.md" 2>/dev/null | cut -d'|' -f2-4
    if [[ $status == 0 ]]; then echo "OVERALL: PASS"; else echo "OVERALL: FAIL"; fi
} > "$OUT/summary.txt"
echo
cat "$OUT/summary.txt"
exit $status
