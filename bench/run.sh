#!/bin/sh
# make bench: runs every benchmark in one go and writes bench/out/latest.md.
# Micro-benchmarks (BUILD_DIR/bench_*) run pinned to CPU 0. Network
# benchmarks, where present (bench/net/*.sh), pin the server to CPU 0 and the
# load to CPU 1 and run twirl beside the reference servers.
# Usage: bench/run.sh BUILD_DIR
set -eu
build=$(cd "$1" && pwd)
top=$(cd "$(dirname "$0")/.." && pwd)
out="$top/bench/out"
mkdir -p "$out"
report="$out/latest.md"
{
    echo "# twirl benchmarks — $(date -u +%Y-%m-%dT%H:%MZ)"
    echo
    echo "Machine: $(nproc) CPUs, $(uname -r); build: $build (Release)."
    echo
} >"$report"
for bin in "$build"/bench_*; do
    [ -x "$bin" ] || continue
    name=$(basename "$bin")
    echo "== $name"
    {
        echo "## $name"
        echo
        echo "Command: \`taskset -c 0 $name\`"
        echo
        taskset -c 0 "$bin"
        echo
    } >>"$report" 2>&1 || echo "$name failed (see $report)"
done
# Protocol benchmarks with their own scripts (bench/net/*.sh print a
# markdown section each, pin their processes, and stop what they start).
for suite in "$top"/bench/net/*.sh; do
    [ -f "$suite" ] || continue
    echo "== $(basename "$suite")"
    bash "$suite" "$build" >>"$report" 2>"$out/$(basename "$suite" .sh).log" ||
        echo "$(basename "$suite") failed (see $out/$(basename "$suite" .sh).log)" | tee -a "$report"
done
# Network benchmarks: twirl beside the reference servers, server on CPU 0
# and load on CPU 1, REPS runs each (medians). BENCH_ONLY picks phases.
echo "== network comparison (about 10 minutes)"
{
    echo "## Network: twirl beside raw epoll, libuv, libevent, Twisted, nginx, h2o"
    echo
    echo "Command: \`TWIRL_BUILD=$build ONLY=\"${BENCH_ONLY:-echo http static mem}\" bench/anchors/compare.sh\`"
    echo
} >>"$report"
if TWIRL_BUILD="$build" ONLY="${BENCH_ONLY:-echo http static mem}" bash "$top/bench/anchors/compare.sh" \
    >"$out/compare.log" 2>&1; then
    cat "$build/anchors-results/summary.md" >>"$report"
else
    echo "network comparison failed: see $out/compare.log" | tee -a "$report"
fi
cat "$report"
