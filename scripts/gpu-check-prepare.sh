#!/usr/bin/env bash
# Prepares the GPU check on the build machine (no GPU needed): release binaries, stripped into
# target/gpu-check/ (git-ignored), and the test files in data/gpu-check/ (git-ignored), made from
# kodim01, kodim05 and kodim23 of the Kodak set.
#
#   scripts/gpu-check-prepare.sh KODAK_DIR      # KODAK_DIR: the folder of the Kodak PNGs
#
# Then run scripts/gpu-check.sh on the GPU machine with both folders (see its header).
set -euo pipefail
cd "$(dirname "$0")/.."
KODAK=${1:?usage: scripts/gpu-check-prepare.sh KODAK_DIR}
cargo build --release -p gsimg-cli
cargo build --release --example gpu_check --example refine_check
mkdir -p target/gpu-check
strip -o target/gpu-check/gpu_check target/release/examples/gpu_check
strip -o target/gpu-check/refine_check target/release/examples/refine_check
strip -o target/gpu-check/gsimg target/release/gsimg
# the fault-injection test build of the CLI (its own target folder: features never leak into the
# release binary)
cargo build --release -p gsimg-cli --features fault-injection --target-dir target/fault-injection
strip -o target/gpu-check/gsimg-fi target/fault-injection/release/gsimg
mkdir -p data/gpu-check
cp "$KODAK/kodim01.png" "$KODAK/kodim05.png" "$KODAK/kodim23.png" data/gpu-check/
if [[ ! -f data/gpu-check/kodim23.dense4.gsi ]]; then
    target/gpu-check/gpu_check make-data data/gpu-check "$KODAK/kodim23.png" "$KODAK/kodim05.png"
fi
du -sh target/gpu-check data/gpu-check
