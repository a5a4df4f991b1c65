#!/bin/sh
# fwx fuzzing: replays every seed and every saved crash through every target, built with
# ASan + UBSan but without libFuzzer (fuzz/replay_main.c gives them a plain main). Exit 0 when
# every input runs clean. Suitable for `meson test` (no fuzzing, deterministic, a few seconds).
#   fuzz/replay.sh [build-dir]
# Environment: CC (default clang, else cc). Files in fuzz/crashes/<target>/ are the reproducers
# of open findings: while a finding is not fixed, its reproducer fails here, by design.
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$HERE")
OUT=${1:-${FUZZ_OUT:-$HERE/build}}
if [ -z "${CC:-}" ]; then
    if command -v clang >/dev/null 2>&1; then CC=clang; else CC=cc; fi
fi
mkdir -p "$OUT"
FLAGS="-g -O1 -std=c11 -D_GNU_SOURCE -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer"
. "$HERE/targets.sh"
fuzz_header
for t in $FUZZ_ALL_TARGETS; do
    fuzz_build "$t" "$OUT/${t}_replay" "$HERE/replay_main.c" || exit 2
done

fail=0
total=0
for t in $FUZZ_ALL_TARGETS; do
    for d in "$HERE/seeds/$t" "$HERE/crashes/$t"; do
        [ -d "$d" ] || continue
        for f in "$d"/*; do
            case "$f" in *.c|*.md|*.txt) continue ;; esac
            [ -f "$f" ] || continue
            total=$((total + 1))
            if ! ASAN_OPTIONS=detect_leaks=1 "$OUT/${t}_replay" "$f" >"$OUT/replay.log" 2>&1; then
                fail=$((fail + 1))
                echo "FAIL $t ${f#$ROOT/}"
                grep -E 'ERROR|SUMMARY|runtime error' "$OUT/replay.log" | head -3 | sed 's/^/    /'
            fi
        done
    done
done
echo "replay: $total inputs, $fail failed"
[ "$fail" -eq 0 ]
