#!/usr/bin/env bash
# kernel_share.sh - how much of an echo server's CPU goes to the kernel's TCP
# send and receive, the work every design pays per message.
#
# Runs each server pinned to CPU 0 under echoload's ping-pong (50
# connections, 64-byte messages, load on CPU 1) while `perf record -e
# cpu-clock -C 0 -g` samples CPU 0 (a software clock: this machine has no
# hardware counters), then reports the share of the server's samples spent
# inside tcp_sendmsg and tcp_recvmsg (callees included). If that share is S
# for the raw epoll floor, no server can cost less than about S times the
# floor's CPU per message, however few system calls it makes.
# Sampling slows the servers (about 3x here), so read shares, not rates.
#
# Usage: bench/kernel_share.sh BUILD_DIR [SECONDS]
# BUILD_DIR is a Release build with the anchors built (make bench builds
# them into BUILD_DIR/anchors). Needs perf and root (or perf_event_paranoid
# <= 0). Prints a markdown table.
set -u
[ $# -ge 1 ] || { echo "usage: $0 BUILD_DIR [SECONDS]" >&2; exit 2; }
build=$(cd "$1" && pwd) || exit 2
secs=${2:-3}
load=$build/anchors/echoload
command -v perf >/dev/null || { echo "perf not found" >&2; exit 1; }
[ -x "$load" ] && [ -x "$build/anchors/raw_epoll_echo" ] ||
    { echo "anchors not built in $build/anchors (run make bench first)" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# share NAME PORT CMD...: prints one table row
share() {
    local name=$1 port=$2
    shift 2
    taskset -c 0 "$@" "$port" >/dev/null 2>&1 &
    local pid=$!
    sleep 0.5
    perf record -q -e cpu-clock -F 10000 -C 0 -g -o "$tmp/$name.data" -- sleep "$secs" \
        >/dev/null 2>&1 &
    local rec=$!
    taskset -c 1 "$load" -p "$port" -m pingpong -c 50 -s 64 -P 1 -d "$secs" -w 0 >/dev/null
    wait $rec
    kill $pid
    wait $pid 2>/dev/null
    perf report -i "$tmp/$name.data" --pid "$pid" --children --percentage relative --sort sym --stdio -g none \
        2>/dev/null >"$tmp/$name.txt"
    awk -v n="$name" '
        / tcp_sendmsg$/ { send = $1 + 0 }
        / tcp_recvmsg$/ { recv = $1 + 0 }
        END { printf "| %s | %.0f%% | %.0f%% | %.0f%% |\n", n, send, recv, send + recv }' \
        "$tmp/$name.txt"
}

echo "| server | in tcp_sendmsg | in tcp_recvmsg | both |"
echo "|---|---:|---:|---:|"
share "raw epoll (floor)" 19201 "$build/anchors/raw_epoll_echo"
TWIRL_REACTOR=epoll share "twirl epoll" 19202 "$build/example_echo_server"
TWIRL_REACTOR=uring share "twirl uring" 19203 "$build/example_echo_server"
