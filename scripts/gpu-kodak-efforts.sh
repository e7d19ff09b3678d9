#!/usr/bin/env bash
# Kodak end to end on a GPU machine: `gsimg encode` at each --effort (the network encoder, and the
# analytic encoder at qualities 20 / 50 / 80), `gsimg decode`, 8-bit RGB PSNR (MSE per picture,
# then the mean), bpp from the file's bytes (every Kodak picture has 393,216 pixels), and the wall
# time of the encode command (PNG read to file written). The network runs on the ONNX Runtime
# library named by ORT_DYLIB_PATH, else on the machine's Python onnxruntime package (its CPU
# provider).
#
#   scripts/gpu-check-prepare.sh KODAK_DIR             # build machine: binaries into target/gpu-check
#   scripts/gpu-kodak-efforts.sh KODAK_DIR ROWS.tsv    # GPU machine; prints the table
set -u
cd "$(dirname "$0")/.."
KODAK=${1:?usage: gpu-kodak-efforts.sh KODAK_DIR ROWS.tsv}
export LD_LIBRARY_PATH=/usr/local/nvidia/lib64:${LD_LIBRARY_PATH:-}
G=${GPU_CHECK_CLI:-target/gpu-check/gsimg}
ORTLIB=${ORT_DYLIB_PATH:-$(python3 -c 'import glob, os, onnxruntime as o; print(sorted(glob.glob(os.path.join(os.path.dirname(o.__file__), "capi", "libonnxruntime.so*")))[0])')}
export ORT_DYLIB_PATH=$ORTLIB GSIMG_ORT_FETCH=0
mkdir -p /tmp/k
ROWS_FILE=${2:-/tmp/k/rows.tsv}
: > $ROWS_FILE
run() { # tag pic args...
  local tag=$1 p=$2; shift 2
  local s=$(date +%s.%N)
  $G encode "$KODAK/$p.png" /tmp/k/$p.$tag.gsi "$@" 2>/tmp/k/err || { echo "FAIL $tag $p"; cat /tmp/k/err; return; }
  local e=$(date +%s.%N)
  $G decode /tmp/k/$p.$tag.gsi /tmp/k/$p.$tag.png --device cuda 2>/dev/null
  local b=$(stat -c %s /tmp/k/$p.$tag.gsi)
  echo -e "$tag\t$p\t$b\t$(python3 - "$KODAK/$p.png" /tmp/k/$p.$tag.png <<'PY'
import sys, numpy as np
from PIL import Image
a, b = (np.asarray(Image.open(f).convert('RGB'), dtype=np.float64) for f in sys.argv[1:3])
print(f"{10 * np.log10(255.0 ** 2 / ((a - b) ** 2).mean()):.3f}")
PY
)\t$(python3 -c "print(f'{$e-$s:.3f}')")" >> $ROWS_FILE
}
for i in $(seq -w 1 24); do
  p=kodim$i
  run net-fast $p --effort fast
  run net-default $p --effort default
  run net-max $p --effort max
  for q in 20 50 80; do
    run ana-q$q-default $p --method analytic --quality $q --effort default
    run ana-q$q-max $p --method analytic --quality $q --effort max
  done
done
python3 - $ROWS_FILE <<'PY'
import sys, collections, statistics
rows = [l.split('\t') for l in open(sys.argv[1]) if l.strip()]
by = collections.defaultdict(list)
for tag, p, b, psnr, t in rows:
    by[tag].append((int(b) * 8 / 393216, float(psnr), float(t)))
print("setting | pictures | mean bpp | mean PSNR | median s")
for tag, v in by.items():
    print(f"{tag} | {len(v)} | {statistics.mean(x[0] for x in v):.4f} | {statistics.mean(x[1] for x in v):.3f} | {statistics.median(x[2] for x in v):.3f}")
PY
grep -h note /tmp/k/err | head -3
