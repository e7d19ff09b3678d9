#!/usr/bin/env bash
# Runs every fuzz target for a fixed time each and prints executions and crashes per target.
#
#   fuzz/run-all.sh [SECONDS_PER_TARGET] [JOBS] [TARGET...]
#
# Needs the nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz --version 0.13.2 --locked`).
# Corpora grow in fuzz/corpus/<target> (git-ignored), seeded from fuzz/seeds/<target>; crashes
# land in fuzz/artifacts/<target>: minimize them (`cargo +nightly fuzz tmin <target> <file>`) and
# add them to tests/fuzz_regressions/<target>/ (see fuzz/README.md).
# -rss_limit_mb=2048 -timeout=10 are the resource harness: parse, parse_and_render and region
# decode under the library's default limits (gsimg::fuzzing::resource_limits), so an input that
# makes a decode take more than 2 GiB or 10 s is a finding (fuzz/README.md).
# The whole script is one block that bash reads before running it, so editing this file while
# a long run is under way cannot derail that run.
{
set -uo pipefail
cd "$(dirname "$0")"
secs=${1:-60}
jobs=${2:-1}
targets=(parse parse_and_render region roundtrip encode_pixels model_metadata network_output)
if [ $# -gt 2 ]; then targets=("${@:3}"); fi
# One rayon thread per fuzzing process: libFuzzer's jobs give the parallelism. With one job
# libFuzzer runs in this process and logs to $log (no fuzz-N.log files), so several copies of
# this script with JOBS = 1 can run side by side.
parallel=()
if [ "$jobs" -gt 1 ]; then parallel=(-jobs="$jobs" -workers="$jobs"); fi
export RAYON_NUM_THREADS=1
cargo +nightly fuzz build --release >/dev/null 2>&1 || cargo +nightly fuzz build --release || exit 1
printf '%-18s %14s %10s %8s\n' target executions exec/s crashes
status=0
for t in "${targets[@]}"; do
    mkdir -p "corpus/$t" "artifacts/$t"
    log=$(mktemp)
    cargo +nightly fuzz run --release "$t" "corpus/$t" "seeds/$t" -- \
        -max_total_time="$secs" -rss_limit_mb=2048 -max_len=65536 -timeout=10 \
        "${parallel[@]}" -print_final_stats=1 >"$log" 2>&1
    rc=$?
    execs=$(grep -h 'stat::number_of_executed_units' "$log" fuzz-*.log 2>/dev/null | awk '{s+=$2} END {print s+0}')
    rate=$(awk -v e="$execs" -v s="$secs" 'BEGIN {printf "%.0f", e/s}')
    crashes=$(find "artifacts/$t" -type f | wc -l)
    printf '%-18s %14s %10s %8s\n' "$t" "$execs" "$rate" "$crashes"
    if [ $rc -ne 0 ] || [ "$crashes" -ne 0 ]; then
        status=1
        tail -30 "$log"
    fi
    rm -f "$log" fuzz-*.log
done
exit $status
}
