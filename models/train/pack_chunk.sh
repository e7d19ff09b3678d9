#!/bin/bash
# Trains on the full-size bundle when it comes in parts (`models/data/pack.py --parts N`) and runs
# must be cut into time-boxed pieces on one GPU machine: `stage` collects the parts (and any
# checkpoints) on that machine, `train` resumes each named run from there for a fixed time.
#
#   bash models/train/pack_chunk.sh stage FILE...   bundle parts to /tmp/pack, *.pt to /tmp/ck
#   RUNS="a b" KIND_a=upscale ARGS_a="..." ... bash models/train/pack_chunk.sh train MINUTES
#
# `train` runs every named run side by side on GPU 0 (the models are small: one run leaves most
# of an H100 idle). Run NAME resumes from /tmp/state/NAME/ (the previous piece on this machine),
# else from a staged /tmp/ck/NAME.pt (with /tmp/ck/NAME_opt.pt, if staged, for the Adam moments),
# else starts fresh (ARGS_NAME then gives --config etc.). Each piece copies into the folder OUT
# (default /tmp/gsimg-out): NAME.pt and NAME.log of every run, NAME_opt.pt for the runs listed in
# OPT, and NAME_best.pt (best validation so far) for those in BEST. Runs listed in EMA_ONLY are
# copied without their raw weights, which keeps OUT small; a resume from such a file goes on from
# the EMA weights.
set -u
export PYTHONUNBUFFERED=1
export OUT=${OUT:-/tmp/gsimg-out}
mode=$1
shift
case $mode in
stage)
  mkdir -p /tmp/pack /tmp/ck
  for f in "$@"; do
    case $f in
    *.tar) cp "$f" /tmp/pack/ ;;
    *.pt) cp "$f" /tmp/ck/ ;;
    *) echo "stage: unknown file $f" >&2; exit 2 ;;
    esac
  done
  ls -la /tmp/pack /tmp/ck
  exit 0
  ;;
train) ;;
*) echo "usage: pack_chunk.sh stage FILE... | train MINUTES" >&2; exit 2 ;;
esac

MIN=${1:?minutes}
nvidia-smi -L
run() {  # name kind
  local n=$1 k=$2 res=() a
  if [ -f "/tmp/state/$n/$k.pt" ]; then
    res=(--resume "/tmp/state/$n/$k.pt")
  elif [ -f "/tmp/ck/$n.pt" ]; then
    res=(--resume "/tmp/ck/$n.pt")
  fi
  a=ARGS_$n
  # shellcheck disable=SC2086
  python3 models/train/train.py --model "$k" --data /tmp/pack "${res[@]}" --out "/tmp/state/$n" \
    --minutes "$MIN" ${!a:-} 2>&1 | grep -v UserWarning | sed "s/^/[$n] /"
}
for n in ${RUNS:?RUNS: names of the runs}; do
  k=KIND_$n
  run "$n" "${!k:-upscale}" &
done
wait
for n in $RUNS; do
  k=KIND_$n
  k=${!k:-upscale}
  d=/tmp/state/$n
  [ -f "$d/$k.pt" ] || { echo "run $n left no checkpoint"; continue; }
  case " ${EMA_ONLY:-} " in
  *" $n "*)  # the EMA weights alone (fp32: 4 bytes per parameter, against 6 with the raw weights)
    python3 -c "import sys, torch; ck = torch.load(sys.argv[1], map_location='cpu', weights_only=False)
ck.pop('model_delta', None); torch.save(ck, sys.argv[2])" "$d/$k.pt" "$OUT/$n.pt" ;;
  *) cp "$d/$k.pt" "$OUT/$n.pt" ;;
  esac
  cp "$d/$k.log" "$OUT/$n.log"
  case " ${OPT:-} " in *" $n "*) cp "$d/${k}_opt.pt" "$OUT/${n}_opt.pt" ;; esac
  case " ${BEST:-} " in *" $n "*) [ -f "$d/best/$k.pt" ] && cp "$d/best/$k.pt" "$OUT/${n}_best.pt" ;; esac
done
# files come back only up to 16 MiB each: larger ones in numbered pieces (cat NAME.pt.* > NAME.pt)
for f in "$OUT"/*; do
  if [ "$(stat -c %s "$f")" -gt 16000000 ]; then split -b 15000000 -d "$f" "$f." && rm "$f"; fi
done
ls -la "$OUT"
