#!/bin/sh
# Runs every libFuzzer target in BUILD_DIR for SECONDS each, starting from a
# scratch copy of its seed corpus (new inputs stay out of the tree).
# Usage: tools/run-fuzz.sh BUILD_DIR SECONDS
set -eu
build=$1 seconds=$2
top=$(cd "$(dirname "$0")/.." && pwd)
status=0
for bin in "$build"/fuzz/fuzz_*; do
    case "$bin" in *_replay) continue ;; esac
    [ -x "$bin" ] || continue
    name=$(basename "$bin" | sed 's/^fuzz_//')
    work="$build/fuzz-corpus/$name"
    mkdir -p "$work"
    [ -d "$top/fuzz/corpus/$name" ] && cp -n "$top/fuzz/corpus/$name"/* "$work"/ 2>/dev/null || true
    echo "== fuzz $name for ${seconds}s"
    if ! "$bin" -max_total_time="$seconds" -print_final_stats=1 "$work" >"$build/fuzz-$name.log" 2>&1; then
        echo "fuzz $name FAILED: see $build/fuzz-$name.log"
        tail -n 30 "$build/fuzz-$name.log"
        status=1
    fi
done
exit $status
