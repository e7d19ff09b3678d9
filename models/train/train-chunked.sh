#!/usr/bin/env bash
# One time-boxed piece of a training run, for machines that allow only short commands:
#
#   models/train/train-chunked.sh --max-minutes 9 CONFIG OUT [gsimg-train train options...]
#
# runs `gsimg-train train CONFIG --out OUT ...` and sends it SIGTERM after the given minutes;
# the trainer then writes its checkpoint and exits. Run the same line again to continue.
# Exit status: 0 when the run is complete, 75 when this piece ended on time and more remain,
# anything else is an error (the trainer's own status).
set -euo pipefail
if [ "${1:-}" != "--max-minutes" ] || [ $# -lt 4 ]; then
  echo "usage: train-chunked.sh --max-minutes M CONFIG OUT [gsimg-train train options...]" >&2
  exit 2
fi
minutes=$2 config=$3 out=$4
shift 4
trainer=(gsimg-train)
command -v gsimg-train >/dev/null || trainer=(python3 -m gsimg_train)
# --kill-after: a trainer that has not saved and exited within 2 minutes of the signal is killed
set +e
timeout --signal=TERM --kill-after=120 "${minutes}m" "${trainer[@]}" train "$config" --out "$out" "$@"
status=$?
set -e
case $status in
0) echo "train-chunked: $out is complete"; exit 0 ;;
124 | 143) echo "train-chunked: time is up; checkpoint saved in $out/checkpoint.pt: run again to continue"; exit 75 ;;
*) exit "$status" ;;
esac
