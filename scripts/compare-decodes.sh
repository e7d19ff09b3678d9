#!/usr/bin/env bash
# Decodes every .gsi file under the given folders (default: fuzz/seeds and
# tests/fuzz_regressions) with two gsimg binaries and compares the results byte for byte:
# the PNG written at native size, at --scale 1.7 and for a region, the exit status and the
# error line. Use it to check that a change of code structure changes no output.
#
#   scripts/compare-decodes.sh OLD_BINARY NEW_BINARY [FOLDER...]
#
# Prints one line per difference and a summary; exits 1 if anything differs.
set -uo pipefail
if [ $# -lt 2 ]; then
    echo "usage: $0 OLD_BINARY NEW_BINARY [FOLDER...]" >&2
    exit 2
fi
old=$1 new=$2
shift 2
cd "$(dirname "$0")/.."
folders=("$@")
[ ${#folders[@]} -eq 0 ] && folders=(fuzz/seeds tests/fuzz_regressions)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

run() { # binary, tag, file, args...
    local bin=$1 tag=$2 file=$3
    shift 3
    local out="$work/$tag.png"
    rm -f "$out"
    "$bin" -q decode --device cpu "$@" "$file" "$out" 2>"$work/$tag.err"
    echo "exit $?" >>"$work/$tag.err"
    [ -f "$out" ] && cat "$out" >>"$work/$tag.err"
    sha256sum <"$work/$tag.err" | cut -d' ' -f1
}

files=0 cases=0 diffs=0 decoded=0
while IFS= read -r -d '' seed; do
    files=$((files + 1))
    # The parse_and_render and region targets read 2 and 8 bytes of settings before the file.
    f=$seed
    case $seed in
    *parse_and_render/*) f="$work/input.gsi" && tail -c +3 "$seed" >"$f" ;;
    *region/*) f="$work/input.gsi" && tail -c +9 "$seed" >"$f" ;;
    esac
    for args in "" "--scale 1.7" "--scale 2 --region 1,1,9,7"; do
        cases=$((cases + 1))
        # shellcheck disable=SC2086
        a=$(run "$old" old "$f" $args)
        # shellcheck disable=SC2086
        b=$(run "$new" new "$f" $args)
        grep -q '^exit 0$' "$work/new.err" && decoded=$((decoded + 1))
        if [ "$a" != "$b" ]; then
            diffs=$((diffs + 1))
            echo "DIFFERENT: $seed $args"
        fi
    done
done < <(find "${folders[@]}" -type f \( -name '*.gsi' -o -path '*parse*' -o -path '*region*' \) ! -name '*.md' -print0 | sort -z)
echo "$files files, $cases decodes ($decoded succeeded), $diffs different"
[ "$diffs" -eq 0 ]
