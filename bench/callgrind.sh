#!/usr/bin/env bash
# callgrind.sh - instructions (and system calls) per echo message, server side.
#
# Runs examples/echo/echo_server under `valgrind --tool=callgrind
# --collect-atstart=yes`, drives it with bench/echocount.c (an exact number
# of messages), lets it see the connection close, then has callgrind dump
# its counts (callgrind_control -d) and reads the total Ir. Each shape is
# run twice, with N and 2N messages; (Ir(2N) - Ir(N)) / N is the cost of one
# message with start-up, connection set-up and teardown cancelled out.
# (A dump rather than an exit: valgrind keeps signals blocked while a
# thread is in io_uring_enter, which it does not know can block, so a
# uring server under it may never see SIGTERM.)
# System calls per message are counted the same way on a native run with
# `perf stat -e raw_syscalls:sys_enter` (skipped when perf cannot count).
#
# Shapes (all 64-byte messages over 127.0.0.1):
#   pingpong   1 connection, one message in flight          (N = PINGPONG_N)
#   burst16    1 connection, 16 messages per send, wait for all 16 (N = PIPE_N)
#   pipelined  50 connections, 16 in flight each, refilled as echoes come
#              back (echoload's echo_pipelined); batching depends on timing,
#              so expect a few per cent of noise               (N = PIPE_N)
#
# Usage: bench/callgrind.sh BUILD_DIR [BACKEND...]   (default: epoll uring)
# Environment: PINGPONG_N (20000), PIPE_N (200000), SHAPES ("pingpong burst16
#   pipelined"), SYSCALLS (1: also count system calls), OUT (BUILD_DIR/callgrind).
# BUILD_DIR should be a Release build (as make bench uses). The server is
# pinned to CPU 0 and the load to CPU 1. Prints a markdown table.
set -u
[ $# -ge 1 ] || { echo "usage: $0 BUILD_DIR [BACKEND...]" >&2; exit 2; }
build=$(cd "$1" && pwd) || exit 2
shift
backends=${*:-epoll uring}
top=$(cd "$(dirname "$0")/.." && pwd)
out=${OUT:-$build/callgrind}
PINGPONG_N=${PINGPONG_N:-20000}
PIPE_N=${PIPE_N:-200000}
SHAPES=${SHAPES:-pingpong burst16 pipelined}
SYSCALLS=${SYSCALLS:-1}
server=$build/example_echo_server
load=$out/echocount
mkdir -p "$out"
[ -x "$server" ] || { echo "no $server: build the examples first" >&2; exit 1; }
command -v valgrind >/dev/null || { echo "valgrind is needed" >&2; exit 1; }
gcc -O2 -Wall -Wextra -o "$load" "$top/bench/echocount.c" || exit 1
if [ "$SYSCALLS" = 1 ] && ! perf stat -e raw_syscalls:sys_enter -x, true >/dev/null 2>&1; then
    echo "perf cannot count system calls here: leaving them out" >&2
    SYSCALLS=0
fi

shape_args() { # shape -> echocount arguments (without -n)
    case $1 in
    pingpong) echo "-m window -c 1 -P 1 -s 64" ;;
    burst16) echo "-m burst -c 1 -P 16 -s 64" ;;
    pipelined) echo "-m window -c 50 -P 16 -s 64" ;;
    *) echo "unknown shape $1" >&2; return 1 ;;
    esac
}
shape_n() { [ "$1" = pingpong ] && echo "$PINGPONG_N" || echo "$PIPE_N"; }

SRV_PID=
stop_server() {
    [ -n "$SRV_PID" ] || return 0
    kill -TERM "$SRV_PID" 2>/dev/null
    local i
    for i in $(seq 1 20); do
        kill -0 "$SRV_PID" 2>/dev/null || break
        sleep 0.1
    done
    kill -0 "$SRV_PID" 2>/dev/null && kill -KILL "$SRV_PID"
    wait "$SRV_PID" 2>/dev/null
    SRV_PID=
}
trap stop_server EXIT

# start_server LOGFILE CMD... : starts it in the background, sets SRV_PID and
# PORT from the "listening on port N" line.
start_server() {
    local logf=$1 i
    shift
    : >"$logf"
    taskset -c 0 "$@" 0 127.0.0.1 >"$logf" 2>&1 &
    SRV_PID=$!
    PORT=
    for i in $(seq 1 300); do
        PORT=$(sed -n 's/.*listening on port \([0-9]*\).*/\1/p' "$logf" | head -1)
        [ -n "$PORT" ] && return 0
        kill -0 "$SRV_PID" 2>/dev/null || break
        sleep 0.1
    done
    echo "server did not start: see $logf" >&2
    stop_server
    return 1
}

run_load() { # shape n
    taskset -c 1 timeout 600 "$load" -p "$PORT" $(shape_args "$1") -n "$2" >>"$out/load.log" 2>&1
}

# Total Ir of one server run over n messages of a shape.
ir_of_run() { # backend shape n
    local f=$out/cg.$1.$2.$3 i
    rm -f "$f" "$f".*
    start_server "$f.log" env TWIRL_REACTOR="$1" TWIRL_LOG_LEVEL=error valgrind --tool=callgrind \
        --collect-atstart=yes --callgrind-out-file="$f" "$server" || return 1
    run_load "$2" "$3" || { echo "load failed ($1 $2 $3): see $out/load.log" >&2; stop_server; return 1; }
    sleep 1 # the server tears the connections down
    callgrind_control -d "$SRV_PID" >/dev/null 2>&1
    for i in $(seq 1 50); do
        [ -s "$f.1" ] && grep -q '^totals:' "$f.1" && break
        sleep 0.1
    done
    stop_server
    awk '/^(summary|totals):/ { print $2; exit }' "$f.1"
}

# System calls of the server over n messages of a shape (native run).
sys_of_run() { # backend shape n
    local f=$out/perf.$1.$2.$3 ppid
    start_server "$f.log" env TWIRL_REACTOR="$1" TWIRL_LOG_LEVEL=error "$server" || return 1
    perf stat -e raw_syscalls:sys_enter -x, -o "$f" -p "$SRV_PID" &
    ppid=$!
    sleep 0.5 # perf attaches
    run_load "$2" "$3" || { kill -INT "$ppid"; wait "$ppid"; stop_server; return 1; }
    kill -INT "$ppid"
    wait "$ppid" 2>/dev/null
    stop_server
    awk -F, '/raw_syscalls:sys_enter/ { print $1; exit }' "$f"
}

per_msg() { awk -v a="$1" -v b="$2" -v n="$3" 'BEGIN { if (a == "" || b == "") print "n/a"; else printf "%.0f", (b - a) / n }'; }
per_msg2() { awk -v a="$1" -v b="$2" -v n="$3" 'BEGIN { if (a == "" || b == "") print "n/a"; else printf "%.2f", (b - a) / n }'; }

: >"$out/load.log"
echo "# Server instructions per echo message ($(date -u +%Y-%m-%dT%H:%MZ))"
echo
echo "Machine: $(nproc) CPUs, $(uname -r); build: $build; $(valgrind --version)."
echo "Command: \`bench/callgrind.sh $build $backends\` (Ir(2N) - Ir(N)) / N."
echo
if [ "$SYSCALLS" = 1 ]; then
    echo "| backend | shape | N | Ir/msg | syscalls/msg |"
    echo "| --- | --- | ---: | ---: | ---: |"
else
    echo "| backend | shape | N | Ir/msg |"
    echo "| --- | --- | ---: | ---: |"
fi
for be in $backends; do
    for shape in $SHAPES; do
        n=$(shape_n "$shape")
        a=$(ir_of_run "$be" "$shape" "$n")
        b=$(ir_of_run "$be" "$shape" $((2 * n)))
        row="| $be | $shape | $n | $(per_msg "$a" "$b" "$n") |"
        if [ "$SYSCALLS" = 1 ]; then
            sa=$(sys_of_run "$be" "$shape" "$n")
            sb=$(sys_of_run "$be" "$shape" $((2 * n)))
            row="$row $(per_msg2 "$sa" "$sb" "$n") |"
        fi
        echo "$row"
    done
done
