#!/usr/bin/env bash
# Regenerates kernels/ptx/*.ptx and kernels/ptx/MANIFEST from kernels/*.cu and kernels/*.cuh.
#
# Uses nvcc 13.0.88 from PyPI in a git-ignored virtual environment (.cuda-venv), so any x86-64
# Linux machine with Python 3 can run it; no GPU and no CUDA toolkit are needed:
#
#   scripts/build-ptx.sh          # creates .cuda-venv on first use, then writes kernels/ptx/
#   scripts/build-ptx.sh --check  # exits 1 if the committed PTX differs from a fresh build
#
# The PTX targets compute capability 7.5 (the driver JIT-compiles it for the GPU it runs on,
# sm_90 included) and has PTX ISA 9.0, which needs an NVIDIA driver of release 580 or newer.
# Flags: -fmad=false keeps every multiply and add separately rounded, as the CPU renderer
# computes them (the kernels mirror src/render/project.rs and src/render/cpu.rs).
set -euo pipefail
cd "$(dirname "$0")/.."

NVCC_VERSION=13.0.88
VENV=.cuda-venv
if ! ls $VENV/lib/python3*/site-packages/nvidia/cu13/bin/nvcc >/dev/null 2>&1; then
    python3 -m venv $VENV
    $VENV/bin/pip install -q "nvidia-cuda-nvcc==$NVCC_VERSION" "nvidia-nvvm==$NVCC_VERSION" \
        "nvidia-cuda-runtime==13.0.96" "nvidia-cuda-crt==$NVCC_VERSION"
fi
NV=$(echo $VENV/lib/python3*/site-packages/nvidia/cu13)
NVCC=$NV/bin/nvcc
FLAGS=(-ptx -arch=compute_75 -O3 -std=c++17 -fmad=false -lineinfo)

out=kernels/ptx
if [[ "${1:-}" == "--check" ]]; then
    out=$(mktemp -d)
    trap 'rm -rf "$out"' EXIT
fi
mkdir -p "$out"
for cu in kernels/*.cu; do
    name=$(basename "$cu" .cu)
    PATH="$NV/bin:$PATH" "$NVCC" "${FLAGS[@]}" -o "$out/$name.ptx" "$cu"
    # -lineinfo records source paths (for compute-sanitizer reports): keep them relative, so
    # the PTX does not depend on where the checkout is.
    sed -i -e "s#\"$PWD/#\"#" -e "s#\"[^\"]*/nvidia/cu13/bin/\.\./*include/#\"cuda/include/#" \
        "$out/$name.ptx"
done
{
    echo "# sha256 of the kernel sources and of the PTX built from them by scripts/build-ptx.sh"
    echo "# nvcc $("$NVCC" --version | sed -n 's/.*release \([0-9.]*\), V\([0-9.]*\).*/\2/p') ${FLAGS[*]}"
    (cd kernels && sha256sum *.cuh *.cu)
    (cd "$out" && sha256sum *.ptx | sed 's#  #  ptx/#')
} > "$out/MANIFEST"

if [[ "${1:-}" == "--check" ]]; then
    if diff -r -q kernels/ptx "$out"; then
        echo "kernels/ptx is up to date"
    else
        echo "kernels/ptx is stale: run scripts/build-ptx.sh" >&2
        exit 1
    fi
else
    echo "wrote $(ls $out/*.ptx | tr '\n' ' ')and $out/MANIFEST"
fi
