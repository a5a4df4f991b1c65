#!/bin/sh
# fwx fuzzing: builds every libFuzzer target with ASan + UBSan and runs each for SECONDS
# (default 60) from fuzz/seeds/<target>/, two at a time when there is more than one CPU.
# Crashes are kept in fuzz/crashes/<target>/; the growing corpus in fuzz/corpus/<target>/
# (scratch, not committed). Not part of `meson test`: see fuzz/replay.sh for that.
#   fuzz/run.sh [seconds]            e.g. fuzz/run.sh 10 (smoke), fuzz/run.sh 300
# Environment: CC (default clang), FUZZ_OUT (build dir, default fuzz/build), FUZZ_TARGETS (the
# targets to run, default all: fuzz/targets.sh lists them and their sources).
set -eu
SECS=${1:-60}
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$HERE")
OUT=${FUZZ_OUT:-$HERE/build}
CC=${CC:-clang}
mkdir -p "$OUT"

# libFuzzer's runtime: clang's compiler-rt (Debian: libclang-rt-14-dev).
if ! echo 'int LLVMFuzzerTestOneInput(const char *d, long n){(void)d;(void)n;return 0;}' |
    $CC -x c -fsanitize=fuzzer - -o "$OUT/.probe" 2>/dev/null; then
    echo "run.sh: $CC cannot link -fsanitize=fuzzer; installing libclang-rt-14-dev" >&2
    apt-get install -y libclang-rt-14-dev >/dev/null || { echo "run.sh: install it by hand" >&2; exit 2; }
fi
rm -f "$OUT/.probe" "$OUT"/*.rc

[ -d "$HERE/seeds/ftp_parse" ] || python3 "$HERE/make-seeds.py"

FLAGS="-g -O1 -std=c11 -D_GNU_SOURCE -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all"
. "$HERE/targets.sh"
fuzz_header
TARGETS=${FUZZ_TARGETS:-$FUZZ_ALL_TARGETS}
for t in $TARGETS; do
    fuzz_build "$t" "$OUT/${t}_fuzz"
done

run() { # target max_len
    t=$1
    mkdir -p "$HERE/corpus/$t" "$HERE/crashes/$t"
    rc=0
    ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1 \
        "$OUT/${t}_fuzz" -max_total_time="$SECS" -max_len="$2" -len_control=20 -timeout=10 -rss_limit_mb=2048 \
        -print_final_stats=1 -artifact_prefix="$HERE/crashes/$t/" \
        "$HERE/corpus/$t" "$HERE/seeds/$t" >"$OUT/$t.log" 2>&1 || rc=$?
    echo $rc >"$OUT/$t.rc"
}
PAR=1
[ "$(nproc)" -ge 2 ] && PAR=2
running=0
for t in $TARGETS; do
    case $t in ftp_parse|rtsp_parse) max=16384 ;; *) max=2048 ;; esac
    run "$t" "$max" &
    running=$((running + 1))
    if [ "$running" -ge "$PAR" ]; then
        wait
        running=0
    fi
done
wait

status=0
echo "== fuzz summary (${SECS}s per target)"
for t in $TARGETS; do
    rc=$(cat "$OUT/$t.rc" 2>/dev/null || echo "?")
    last=$(grep -E '^#[0-9]+' "$OUT/$t.log" | tail -1)
    execs=$(grep -E 'stat::number_of_executed_units' "$OUT/$t.log" | awk '{print $2}')
    new=$(grep -lE 'ERROR|deadly signal|runtime error' "$OUT/$t.log" >/dev/null && echo yes || echo no)
    printf '%-11s rc=%s execs=%s crash=%s\n    %s\n' "$t" "$rc" "${execs:-?}" "$new" "$last"
    if [ "$rc" != 0 ]; then
        status=1
        grep -E 'Test unit written|SUMMARY' "$OUT/$t.log" | sed 's/^/    /'
    fi
done
echo "logs: $OUT/<target>.log; crashes: $HERE/crashes/<target>/"
exit $status
