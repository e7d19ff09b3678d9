#!/usr/bin/env bash
# Builds target/cuda-emu/libcuda.so, a fake CUDA driver that runs kernels/*.cu on the CPU.
#   scripts/cuda-emu/build.sh [--asan]
# then e.g.  LD_LIBRARY_PATH=$PWD/target/cuda-emu cargo test --test main cuda
# (--asan: also LD_PRELOAD=$(gcc -print-file-name=libasan.so) ASAN_OPTIONS=detect_leaks=0)
set -euo pipefail
cd "$(dirname "$0")/../.."
mkdir -p target/cuda-emu
extra=()
if [[ "${1:-}" == "--asan" ]]; then extra=(-fsanitize=address -fno-omit-frame-pointer); fi
g++ -std=c++20 -O2 -g -fPIC -shared -ffp-contract=off -Wall -Wno-unknown-pragmas \
    -Wno-unused-function "${extra[@]}" -o target/cuda-emu/libcuda.so \
    scripts/cuda-emu/fake_libcuda.cpp -lpthread
echo "built target/cuda-emu/libcuda.so"
