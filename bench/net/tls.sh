#!/usr/bin/env bash
# tls.sh — TLS servers side by side: twirl (bench_tls server), nginx (one
# worker) and openssl s_server, with the same certificates and the same
# client (bench_tls hsload / bulkload: bare OpenSSL, TLS 1.3, x25519,
# TLS_AES_128_GCM_SHA256, no certificate check, no resumption).
#
#   handshakes/s: connections per second, each a full handshake plus one
#                 tiny request ("GET /small", 2-byte answer), THREADS client
#                 threads for SECONDS; ECDSA P-256 and RSA-2048 certificates.
#   bulk MB/s:    one connection downloading BULK_MB MiB.
# For each run the server's own CPU time is read from /proc, so "per core"
# (handshakes per second of server CPU, MB per second of server CPU) does
# not depend on whether the single client core kept the server busy.
# Server pinned to CPU 0, load to CPU 1. Prints a markdown table.
#
# Usage: bench/net/tls.sh BUILD_DIR
# Knobs: SECONDS_HS (5), THREADS (16), BULK_MB (1024), REPS (3).
# Every process started here is stopped here by PID.
set -u
build=$(cd "${1:?usage: tls.sh BUILD_DIR}" && pwd)
bin=$build/bench_tls
[ -x "$bin" ] || { echo "tls.sh: $bin is not built" >&2; exit 1; }
SECONDS_HS=${SECONDS_HS:-5}
THREADS=${THREADS:-16}
BULK_MB=${BULK_MB:-1024}
REPS=${REPS:-3}
SRV_CPU=0
CLI_CPU=1
tmp=$(mktemp -d /tmp/twirl-tls-bench-XXXXXX)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
    wait 2>/dev/null
    rm -rf "$tmp"
}
trap cleanup EXIT

"$bin" gencerts "$tmp" || exit 1
head -c $((BULK_MB * 1024 * 1024)) /dev/zero >"$tmp/bulk.bin"
echo ok >"$tmp/small"

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

wait_listen() { # port
    for _ in $(seq 1 200); do
        if grep -q "0100007F:$(printf %04X "$1") 00000000:0000 0A" /proc/net/tcp; then return 0; fi
        sleep 0.02
    done
    echo "tls.sh: nothing listens on $1" >&2
    return 1
}

cpu_ticks() { # pid: utime+stime in clock ticks
    awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0
}

HZ=$(getconf CLK_TCK)

# start_server KIND CERTNAME PORT: sets SRV_PID (the process doing the work)
start_server() {
    local kind=$1 cert=$tmp/$2.pem key=$tmp/$2-key.pem port=$3
    case "$kind" in
    twirl)
        taskset -c $SRV_CPU "$bin" server "$port" "$cert" "$key" >/dev/null 2>&1 &
        SRV_PID=$!
        pids+=("$SRV_PID")
        ;;
    nginx)
        mkdir -p "$tmp/nginx"
        cat >"$tmp/nginx/nginx.conf" <<EOF
worker_processes 1;
user root;
worker_cpu_affinity 1;
daemon off;
pid $tmp/nginx/nginx.pid;
error_log $tmp/nginx/error.log crit;
events { worker_connections 4096; use epoll; }
http {
    access_log off;
    client_body_temp_path $tmp/nginx/body;
    proxy_temp_path $tmp/nginx/proxy;
    fastcgi_temp_path $tmp/nginx/fastcgi;
    uwsgi_temp_path $tmp/nginx/uwsgi;
    scgi_temp_path $tmp/nginx/scgi;
    server {
        listen 127.0.0.1:$port ssl backlog=4096;
        ssl_certificate $cert;
        ssl_certificate_key $key;
        ssl_protocols TLSv1.2 TLSv1.3;
        location = /small { return 200 "ok"; }
        location = /bulk { alias $tmp/bulk.bin; }
    }
}
EOF
        taskset -c $SRV_CPU nginx -c "$tmp/nginx/nginx.conf" -e "$tmp/nginx/error.log" \
            >/dev/null 2>&1 &
        local master=$!
        pids+=("$master")
        wait_listen "$port" || return 1
        SRV_PID=$(pgrep -P "$master" | head -1)
        ;;
    s_server)
        (cd "$tmp" && exec taskset -c $SRV_CPU openssl s_server -quiet -accept "127.0.0.1:$port" \
            -cert "$cert" -key "$key" -WWW) >/dev/null 2>&1 </dev/null &
        SRV_PID=$!
        pids+=("$SRV_PID")
        ;;
    esac
    wait_listen "$port"
}

stop_server() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
    wait 2>/dev/null
    pids=()
}

median() { sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }

# hs KIND CERT -> "hs_per_s hs_per_server_cpu_s" (medians over REPS)
hs_run() {
    local kind=$1 cert=$2 rates=() percore=()
    for _ in $(seq 1 "$REPS"); do
        local port; port=$(free_port)
        start_server "$kind" "$cert" "$port" || { stop_server; echo "0 0"; return; }
        taskset -c $CLI_CPU "$bin" hsload "$port" 1 4 >/dev/null 2>&1 # warm-up
        local c0; c0=$(cpu_ticks "$SRV_PID")
        local out; out=$(taskset -c $CLI_CPU "$bin" hsload "$port" "$SECONDS_HS" "$THREADS")
        local c1; c1=$(cpu_ticks "$SRV_PID")
        stop_server
        local n s; n=$(echo "$out" | awk '{print $1}'); s=$(echo "$out" | awk '{print $4}')
        local cpu; cpu=$(awk -v a="$c0" -v b="$c1" -v hz="$HZ" 'BEGIN {print (b-a)/hz}')
        rates+=("$(awk -v n="$n" -v s="$s" 'BEGIN {printf "%.0f", n/s}')")
        percore+=("$(awk -v n="$n" -v c="$cpu" 'BEGIN {printf "%.0f", (c > 0 ? n/c : 0)}')")
    done
    echo "$(printf '%s\n' "${rates[@]}" | median) $(printf '%s\n' "${percore[@]}" | median)"
}

bulk_run() {
    local kind=$1 rates=() percore=() path
    for _ in $(seq 1 "$REPS"); do
        local port; port=$(free_port)
        start_server "$kind" ecdsa "$port" || { stop_server; echo "0 0"; return; }
        case "$kind" in
        twirl) path=/bulk/$((BULK_MB * 1024 * 1024)) ;;
        nginx) path=/bulk ;;
        s_server) path=/bulk.bin ;;
        esac
        local c0; c0=$(cpu_ticks "$SRV_PID")
        local out; out=$(taskset -c $CLI_CPU "$bin" bulkload "$port" "$path")
        local c1; c1=$(cpu_ticks "$SRV_PID")
        stop_server
        local b s; b=$(echo "$out" | awk '{print $1}'); s=$(echo "$out" | awk '{print $4}')
        local cpu; cpu=$(awk -v a="$c0" -v b="$c1" -v hz="$HZ" 'BEGIN {print (b-a)/hz}')
        rates+=("$(awk -v b="$b" -v s="$s" 'BEGIN {printf "%.0f", b/s/1048576}')")
        percore+=("$(awk -v b="$b" -v c="$cpu" 'BEGIN {printf "%.0f", (c > 0 ? b/c/1048576 : 0)}')")
    done
    echo "$(printf '%s\n' "${rates[@]}" | median) $(printf '%s\n' "${percore[@]}" | median)"
}

servers="twirl s_server"
command -v nginx >/dev/null && servers="twirl nginx s_server"

declare -A R
for cert in ecdsa rsa; do
    for s in $servers; do
        R[hs_${cert}_$s]=$(hs_run "$s" "$cert")
        echo "handshakes $cert $s: ${R[hs_${cert}_$s]}" >&2
    done
done
for s in $servers; do
    R[bulk_$s]=$(bulk_run "$s")
    echo "bulk $s: ${R[bulk_$s]}" >&2
done

ref=nginx
command -v nginx >/dev/null || ref=s_server
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {if (b > 0) printf "%.2f", a / b; else printf "-"}'; }

echo "TLS: twirl beside $(echo "$servers" | sed 's/twirl //; s/ / and /'), same certificates,"
echo "same client (TLS 1.3, x25519, AES-128-GCM). Server on CPU $SRV_CPU, load on CPU $CLI_CPU,"
echo "medians of $REPS runs. \"per core\" divides by the server's own CPU seconds."
echo
echo "| measurement | server | per second | per server-CPU second | twirl / $ref (per core) |"
echo "| --- | --- | ---: | ---: | ---: |"
for cert in ecdsa rsa; do
    label="handshakes/s, $( [ $cert = ecdsa ] && echo 'ECDSA P-256' || echo 'RSA-2048')"
    read -r tr tc <<<"${R[hs_${cert}_twirl]}"
    read -r rr rc <<<"${R[hs_${cert}_$ref]}"
    for s in $servers; do
        read -r a c <<<"${R[hs_${cert}_$s]}"
        r=""
        [ "$s" = twirl ] && r=$(ratio "$tc" "$rc")
        echo "| $label | $s | $a | $c | $r |"
    done
done
read -r tr tc <<<"${R[bulk_twirl]}"
read -r rr rc <<<"${R[bulk_$ref]}"
for s in $servers; do
    read -r a c <<<"${R[bulk_$s]}"
    r=""
    [ "$s" = twirl ] && r=$(ratio "$tc" "$rc")
    echo "| bulk MB/s, one connection, ${BULK_MB} MiB | $s | $a | $c | $r |"
done
