#!/bin/bash
# One training chunk of both models on the GPU machine (see models/README.md, "Resuming").
#   bash models/train/run_gpu.sh MINUTES [extra train.py args, e.g. --anneal]
# With two GPUs the models train side by side (upscale on GPU 0, compact on GPU 1) for MINUTES
# each; with one GPU they run one after the other for MINUTES/2 each. Resumes from
# models/ckpt/<model>.pt when present; writes $OUT/<model>/{<model>.pt,<model>_opt.pt,<model>.log}.
set -u
export PYTHONUNBUFFERED=1 NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
OUT=${OUT:-/tmp/gsimg-out}
MIN=${1:-9}
shift || true
nvidia-smi -L
NGPU=$(nvidia-smi -L | grep -c GPU)
train() {  # model gpu minutes extra...
  local m=$1 g=$2 t=$3
  shift 3
  CUDA_VISIBLE_DEVICES=$g python3 models/train/train.py --model "$m" --data "${DATA:-data/pack}" \
    --resume "models/ckpt/$m.pt" --out "$OUT/$m" --minutes "$t" "$@" 2>&1 | grep -v '"config"' | sed "s/^/[$m] /"
}
if [ "$NGPU" -ge 2 ]; then
  train upscale 0 "$MIN" "$@" &
  train compact 1 "$MIN" "$@" &
  wait
else
  HALF=$(python3 -c "print($MIN/2)")
  train upscale 0 "$HALF" "$@"
  train compact 0 "$HALF" "$@"
fi
ls -la "$OUT"/*
