#!/bin/sh
# Run the libFuzzer harnesses built in build/fuzz (see tests/fuzz/README.md).
#   run.sh smoke T...   each target briefly (FUZZ_SMOKE_SECONDS, default 4, at most
#                       FUZZ_SMOKE_RUNS mutations, default 20000), after every file of
#                       corpus/T and regressions/T; nothing is kept
#   run.sh long T...    each target for FUZZ_SECONDS (default 120), growing build/fuzz/corpus/T
#                       (seeded from corpus/T and regressions/T); crashes in build/fuzz/crashes/T
# Prints per target the executions, the corpus size and the crashes; exits 1 on any crash.
# Every run is appended to build/fuzz/stats.tsv (UTC time, mode, target, seconds, executions,
# corpus files, crashes).
set -u
mode=$1
shift
here=$(dirname "$0")
build=build/fuzz
mkdir -p "$build"
stats=$build/stats.tsv
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT INT TERM
failed=0
total=0
printf '%-12s %12s %8s %8s  %s\n' target executions corpus crashes seconds
for t in "$@"; do
    bin=$build/fuzz_$t
    seeds=$here/corpus/$t
    regr=$here/regressions/$t
    mkdir -p "$tmp/$t"
    dirs=""
    [ -d "$seeds" ] && dirs="$dirs $seeds"
    [ -d "$regr" ] && dirs="$dirs $regr"
    if [ "$mode" = smoke ]; then
        secs=${FUZZ_SMOKE_SECONDS:-4}
        work=$tmp/$t/corpus
        crashes=$tmp/$t/crashes
        opts="-runs=${FUZZ_SMOKE_RUNS:-20000} -max_total_time=$secs"
    else
        secs=${FUZZ_SECONDS:-120}
        work=$build/corpus/$t
        crashes=$build/crashes/$t
        opts="-max_total_time=$secs"
    fi
    mkdir -p "$work" "$crashes"
    # Words the fuzzer cannot learn by itself (e.g. JSON keys: jansson is not instrumented).
    [ -f "$here/$t.dict" ] && opts="$opts -dict=$here/$t.dict"
    log=$tmp/$t.log
    count_crashes() {
        find "$crashes" -type f \( -name 'crash-*' -o -name 'leak-*' -o -name 'timeout-*' \
            -o -name 'oom-*' \) | wc -l
    }
    before=$(count_crashes) # inputs of earlier runs (fixed or not) are not counted again
    start=$(date +%s)
    # shellcheck disable=SC2086 # $opts and $dirs are word lists
    "$bin" $opts -timeout=10 -print_final_stats=1 -artifact_prefix="$crashes/" "$work" $dirs \
        >"$log" 2>&1
    rc=$?
    end=$(date +%s)
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
    [ -n "$execs" ] || execs=$(sed -n 's/^Done \([0-9]*\) runs.*/\1/p' "$log" | tail -n 1)
    [ -n "$execs" ] || execs=0
    found=$(($(count_crashes) - before))
    if [ "$rc" != 0 ] && [ "$found" = 0 ]; then found=1; fi
    ncorpus=$(find "$work" $dirs -type f | wc -l)
    printf '%-12s %12s %8s %8s  %s\n' "$t" "$execs" "$ncorpus" "$found" "$((end - start))"
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$(date -u +%FT%TZ)" "$mode" "$t" "$((end - start))" \
        "$execs" "$ncorpus" "$found" >>"$stats"
    total=$((total + execs))
    if [ "$found" != 0 ]; then
        failed=1
        echo "== fuzz_$t failed (exit $rc); the end of its output:" >&2
        grep -v '^#[0-9]\|^\s*NEW_FUNC\|^INFO:' "$log" | tail -n 40 >&2
        [ "$mode" = smoke ] && cp "$crashes"/* "$build/" 2>/dev/null &&
            echo "== inputs copied to $build/" >&2
    fi
done
printf '%-12s %12s\n' total "$total"
exit $failed
