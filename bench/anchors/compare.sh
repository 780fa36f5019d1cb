#!/usr/bin/env bash
# compare.sh - build the reference servers and run every measurement with
# twirl's servers beside them (the twirl_* rows), in one run.
# TWIRL_BUILD must name a Release build directory of twirl.
#
# Server pinned to CPU 0, load generator pinned to CPU 1 (taskset).
# Each measurement is run REPS times (default 3); the servers are visited
# round-robin inside each repetition so that slow periods of the host
# (host steal, other jobs) hit every server rather than all runs
# of one server.
# Per-run rows go to $RESULTS_DIR/raw.tsv (default results/latest), medians
# to $RESULTS_DIR/summary.md, everything the tools printed to
# $RESULTS_DIR/log.txt, package versions to $RESULTS_DIR/versions.txt.
# Pool several runs with:  ./summarize.py results/run*/raw.tsv
#
# Only 127.0.0.1 is used.  Every load is bounded in time.  Servers started
# here are stopped here by PID.
#
# Environment knobs: REPS (3), ECHO_DUR (8), WARM (1), HTTP_DUR (8),
#   IPERF_DUR (5), MEM_CONNS (10000), RESULTS_DIR (results/latest),
#   QUIET_WAIT (10), RETRIES (1), FOREIGN_MAX (0.15), BUDGET_S (540),
#   ONLY (space-separated phases: echo http static iperf mem; default all).
# Needs (Debian 12): python3-twisted libuv1-dev libevent-dev nginx h2o wrk
#   iperf3 curl gcc; run as root (nginx/h2o configs say `user root`).
# Takes about 12 minutes on an idle machine with the defaults.  Waiting for
# quiet windows and retries stop after BUDGET_S (9 min) of elapsed time, so
# the worst case stays under about 20 minutes.
set -u
TB=$(cd "${TWIRL_BUILD:?set TWIRL_BUILD to a twirl build directory}" && pwd) || exit 2
cd "$(dirname "$0")" || exit 1
D=$PWD
B=$TB/anchors
R=$TB/anchors-run
W=$TB/anchors-www
O=${RESULTS_DIR:-$TB/anchors-results}
REPS=${REPS:-3}
ECHO_DUR=${ECHO_DUR:-8}
WARM=${WARM:-1}
HTTP_DUR=${HTTP_DUR:-8}
IPERF_DUR=${IPERF_DUR:-5}
MEM_CONNS=${MEM_CONNS:-10000}
# Shared machine: before each load run wait (up to QUIET_WAIT s) for a 1-s
# window in which the machine is idle; rerun a load run once (RETRIES) if
# other processes used more than FOREIGN_MAX cores during it.  Waiting and
# retrying stop once the script has run for BUDGET_S seconds.
QUIET_WAIT=${QUIET_WAIT:-10}
RETRIES=${RETRIES:-1}
FOREIGN_MAX=${FOREIGN_MAX:-0.15}
BUDGET_S=${BUDGET_S:-540}
T_START=$(date +%s)
ONLY=${ONLY:-"echo http static iperf mem"}
SRV_CPU=0
CLI_CPU=1
PY=/usr/bin/python3 # Debian's python3, which has python3-twisted

mkdir -p "$B" "$R/nginx_tmp" "$W" "$O"
LOG=$O/log.txt
TSV=$O/raw.tsv
: >"$LOG"
printf 'test\tserver\trep\tprimary\tsecondary\tsrv_util\tcli_util\tsteal_pct\terrors\tp50_us\tp99_us\tforeign_cores\n' >"$O/raw_disturbed.tsv"
printf 'test\tserver\trep\tprimary\tsecondary\tsrv_util\tcli_util\tsteal_pct\terrors\tp50_us\tp99_us\tforeign_cores\n' >"$TSV"

log() { echo "[$(date +%T)] $*" | tee -a "$LOG"; }
# snapshot of what else is using CPU on this (shared, 2-vCPU) machine
busy_snapshot() {
    { echo "--- busiest processes at $(date +%T) (loadavg $(cat /proc/loadavg))"
      ps -eo pid,pcpu,etime,comm --sort=-pcpu | head -6; } >>"$LOG"
}

ulimit -n 20000 || { log "cannot raise ulimit -n to 20000"; exit 1; }

# ---------------------------------------------------------------- build
log "building C programs (gcc -O2)"
CFLAGS="-O2 -Wall -Wextra"
gcc $CFLAGS -o "$B/echoload" echoload.c &&
    gcc $CFLAGS -o "$B/holdconns" holdconns.c &&
    gcc $CFLAGS -o "$B/raw_epoll_echo" raw_epoll_echo.c &&
    gcc $CFLAGS -o "$B/raw_epoll_http" raw_epoll_http.c &&
    gcc $CFLAGS -o "$B/uv_echo" uv_echo.c -luv &&
    gcc $CFLAGS -o "$B/ev_echo" ev_echo.c -levent &&
    gcc $CFLAGS -o "$B/evhttp_hello" evhttp_hello.c -levent || { log "build failed"; exit 1; }

# ---------------------------------------------------------------- fixtures
printf 'Hello, World!' >"$W/hello.txt"
if [ "$(stat -c %s "$W/1m.bin" 2>/dev/null)" != 1048576 ]; then
    head -c 1048576 /dev/urandom >"$W/1m.bin"
fi
for f in nginx h2o; do
    sed -e "s#@RUN@#$R#g" -e "s#@WWW@#$W#g" "conf/$f.conf.in" >"$R/$f.conf"
done

# ---------------------------------------------------------------- environment record
{
    echo "# date: $(date -u +%FT%TZ)"
    echo "# uname: $(uname -srvm)"
    echo "# cpu: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cpus"
    echo "# loadavg before: $(cat /proc/loadavg)"
    dpkg -l python3-twisted python3 python3.11 libuv1 libuv1-dev libevent-2.1-7 libevent-dev \
        nginx nginx-core nginx-common h2o wrk nghttp2-client apache2-utils iperf3 libiperf0 gcc-12 libc6 2>/dev/null | grep '^ii'
} >"$O/versions.txt"

# ---------------------------------------------------------------- helpers
steal_ticks() { awk '/^cpu /{print $9}' /proc/stat; }
# busy ticks of the whole guest (user nice system irq softirq), USER_HZ=100
busy_ticks() { awk '/^cpu /{print $2+$3+$4+$7+$8}' /proc/stat; }
KSOFT_PIDS=$(pgrep '^ksoftirqd/')
ksoft_ns() {
    local s=0 p a
    for p in $KSOFT_PIDS; do read -r a _ </proc/"$p"/schedstat 2>/dev/null && s=$((s + a)); done
    echo $s
}
# CPU used by anything other than the server under test, the load generator
# and ksoftirqd (loopback softirq work), in cores, over a wall window.
# Other jobs may share this 2-vCPU machine; >0.1 means the run was
# disturbed.  args: busy_ticks_delta server_ns client_ns ksoftirqd_ns wall_ns
foreign_cores() {
    awk -v b="$1" -v s="$2" -v c="$3" -v k="$4" -v w="$5" \
        'BEGIN{ f=(b*1e7 - s - c - k)/w; if (f<0) f=0; printf "%.2f", f }'
}
now_ns() { date +%s%N; }
# CPU time (ns, excludes steal: PARAVIRT_TIME_ACCOUNTING) of a process, all
# its threads, and its direct children (nginx workers).
cpu_ns() {
    local s=0 p t a
    for p in "$1" $(pgrep -P "$1"); do
        for t in /proc/"$p"/task/*/schedstat; do
            read -r a _ <"$t" 2>/dev/null && s=$((s + a))
        done
    done
    echo $s
}
wait_listen() { # port
    local i
    for i in $(seq 1 150); do
        ss -Hltn "sport = :$1" 2>/dev/null | grep -q . && return 0
        sleep 0.1
    done
    return 1
}
kv() { echo "$2" | grep -o "$1=[^ ]*" | head -1 | cut -d= -f2; }
fdiv() { awk -v a="$1" -v b="$2" 'BEGIN{ if (b==0) print "nan"; else printf "%.6g\n", a/b }'; }

declare -A PID PORT
start_srv() { # name port cmd...
    local name=$1 port=$2
    shift 2
    if ss -Hltn "sport = :$port" | grep -q .; then
        log "ERROR: port $port already in use; not starting $name"
        return 1
    fi
    taskset -c $SRV_CPU "$@" >>"$R/$name.out" 2>&1 &
    PID[$name]=$!
    PORT[$name]=$port
    if ! wait_listen "$port"; then
        log "ERROR: $name did not start listening on $port (see run/$name.out)"
        return 1
    fi
    log "started $name pid ${PID[$name]} port $port: $*"
}
stop_srv() { # name
    local p=${PID[$1]:-}
    [ -n "$p" ] || return 0
    kill -TERM "$p" 2>/dev/null
    wait "$p" 2>/dev/null
    unset "PID[$1]"
}
row() { printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$@" >>"$TSV"; }

over_budget() { [ $(($(date +%s) - T_START)) -ge "$BUDGET_S" ]; }
wait_quiet() {
    over_budget && return 0
    local i b0 b1
    for i in $(seq 1 "$QUIET_WAIT"); do
        b0=$(busy_ticks); sleep 1; b1=$(busy_ticks)
        [ $((b1 - b0)) -le 10 ] && return 0 # <= 0.1 core busy over 1 s
    done
    log "machine still busy after ${QUIET_WAIT}s (other processes); measuring anyway"
    busy_snapshot
}
disturbed() { awk -v f="$1" -v m="$FOREIGN_MAX" 'BEGIN{ exit !(f != "NA" && f+0 > m+0) }'; }
# measure TEST SERVER REP ARGS...: runs run_echo/run_wrk with quiet-wait and
# retry; a disturbed attempt that is retried is kept in raw_disturbed.tsv.
measure() {
    local fn=$1 attempt last
    shift
    for attempt in $(seq 0 "$RETRIES"); do
        wait_quiet
        $fn "$@"
        last=$(tail -1 "$TSV" | awk -F'\t' '{print $12}')
        if disturbed "$last" && [ "$attempt" -lt "$RETRIES" ] && ! over_budget; then
            log "  disturbed (foreign cores $last > $FOREIGN_MAX): retrying"
            tail -1 "$TSV" >>"$O/raw_disturbed.tsv"
            sed -i '$ d' "$TSV"
            continue
        fi
        break
    done
}

# ---------------------------------------------------------------- echo
run_echo() { # test server rep echoload-args...
    local t=$1 s=$2 rep=$3
    shift 3
    local pid=${PID[$s]} port=${PORT[$s]}
    local cmd="taskset -c $CLI_CPU $B/echoload -p $port $* -d $ECHO_DUR -w $WARM"
    local st0 c0 w0 out rc w1 c1 st1
    local bt0 bt1 k0 k1
    st0=$(steal_ticks); bt0=$(busy_ticks); k0=$(ksoft_ns); c0=$(cpu_ns "$pid"); w0=$(now_ns)
    out=$(timeout "$(awk -v a="$ECHO_DUR" -v b="$WARM" 'BEGIN{print int(a+b+30)}')" /usr/bin/time -f 'TIME %e %U %S' $cmd 2>&1); rc=$?
    w1=$(now_ns); c1=$(cpu_ns "$pid"); k1=$(ksoft_ns); bt1=$(busy_ticks); st1=$(steal_ticks)
    echo "[$t $s rep$rep] rc=$rc $cmd" >>"$LOG"
    echo "$out" >>"$LOG"
    local wall_s util steal err prim sec
    wall_s=$(fdiv $((w1 - w0)) 1e9)
    util=$(fdiv $((c1 - c0)) $((w1 - w0)))
    steal=$(awk -v d=$((st1 - st0)) -v w="$wall_s" 'BEGIN{printf "%.1f", d/(2*w*100)*100}')
    err=$(kv errors "$out"); [ $rc -ne 0 ] && err=$(( ${err:-0} + 1000 ))
    if [ "$t" = echo_stream ]; then
        prim=$(kv MBps "$out"); sec=NA
    else
        prim=$(kv msgs_per_s "$out"); sec=$(kv MBps "$out")
    fi
    local tl cli_s cli foreign
    tl=$(echo "$out" | grep '^TIME' | tail -1)
    cli_s=$(echo "$tl" | awk '{ printf "%.2f", $3+$4 }')
    cli=$(awk -v c="$cli_s" -v w="$wall_s" 'BEGIN{ printf "%.2f", c/w }')
    foreign=$(foreign_cores $((bt1 - bt0)) $((c1 - c0)) "$(awk -v c="$cli_s" 'BEGIN{printf "%.0f", c*1e9}')" $((k1 - k0)) $((w1 - w0)))
    row "$t" "$s" "$rep" "${prim:-NA}" "${sec:-NA}" "$util" "$cli" "$steal" "${err:-NA}" "$(kv p50_us "$out")" "$(kv p99_us "$out")" "$foreign"
    log "$t $s rep$rep: ${prim:-FAILED} (server util $util, client util $cli, foreign cores $foreign, steal $steal%, errors ${err:-?})"
}

if [[ " $ONLY " == *" echo "* ]]; then
    log "=== echo servers"
    busy_snapshot
    start_srv raw_epoll 19004 "$B/raw_epoll_echo" 19004
    start_srv libuv 19002 "$B/uv_echo" 19002
    start_srv libevent 19003 "$B/ev_echo" 19003
    start_srv twisted 19001 $PY "$D/twisted_echo.py" 19001
    start_srv twirl_epoll 19005 env TWIRL_REACTOR=epoll "$TB/example_echo_server" 19005
    start_srv twirl_poll 19006 env TWIRL_REACTOR=poll "$TB/example_echo_server" 19006
    start_srv twirl_uring 19007 env TWIRL_REACTOR=uring "$TB/example_echo_server" 19007
    sleep 1
    for rep in $(seq 1 "$REPS"); do
        for t in echo_pingpong echo_pipelined echo_stream; do
            case $t in
            echo_pingpong) args="-m pingpong -c 50 -s 64 -P 1" ;;
            echo_pipelined) args="-m pingpong -c 50 -s 64 -P 16" ;;
            echo_stream) args="-m stream -c 1 -s 65536" ;;
            esac
            for s in raw_epoll libuv libevent twisted twirl_epoll twirl_poll twirl_uring; do
                [ -n "${PID[$s]:-}" ] && measure run_echo $t $s "$rep" $args
            done
        done
    done
    for s in raw_epoll libuv libevent twisted twirl_epoll twirl_poll twirl_uring; do stop_srv $s; done
fi

# ---------------------------------------------------------------- http
run_wrk() { # test server rep url
    local t=$1 s=$2 rep=$3 url=$4
    local pid=${PID[$s]}
    local cmd="taskset -c $CLI_CPU wrk -t1 -c50 -d${HTTP_DUR}s --latency -s $D/conf/wrk_report.lua $url"
    local st0 c0 w0 out rc w1 c1 st1
    local bt0 bt1 k0 k1
    st0=$(steal_ticks); bt0=$(busy_ticks); k0=$(ksoft_ns); c0=$(cpu_ns "$pid"); w0=$(now_ns)
    out=$(timeout "$(awk -v a="$HTTP_DUR" 'BEGIN{print int(a+30)}')" /usr/bin/time -f 'TIME %e %U %S' $cmd 2>&1); rc=$?
    w1=$(now_ns); c1=$(cpu_ns "$pid"); k1=$(ksoft_ns); bt1=$(busy_ticks); st1=$(steal_ticks)
    echo "[$t $s rep$rep] rc=$rc $cmd" >>"$LOG"
    echo "$out" >>"$LOG"
    local wall_s util steal req dur bytes err rps mbps cli tl
    wall_s=$(fdiv $((w1 - w0)) 1e9)
    util=$(fdiv $((c1 - c0)) $((w1 - w0)))
    steal=$(awk -v d=$((st1 - st0)) -v w="$wall_s" 'BEGIN{printf "%.1f", d/(2*w*100)*100}')
    req=$(kv requests "$out"); dur=$(kv duration_us "$out"); bytes=$(kv bytes "$out")
    err=0
    local k v
    for k in err_connect err_read err_write err_status err_timeout; do
        v=$(kv $k "$out"); err=$((err + ${v:-0}))
    done
    [ $rc -ne 0 ] && err=$((err + 1000))
    rps=NA; mbps=NA
    if [ -n "$req" ] && [ -n "$dur" ]; then
        rps=$(awk -v r="$req" -v d="$dur" 'BEGIN{printf "%.1f", r/(d/1e6)}')
        mbps=$(awk -v b="$bytes" -v d="$dur" 'BEGIN{printf "%.1f", b/1e6/(d/1e6)}')
    fi
    tl=$(echo "$out" | grep '^TIME' | tail -1)
    local cli_s foreign
    cli_s=$(echo "$tl" | awk '{ printf "%.2f", $3+$4 }')
    cli=$(awk -v c="$cli_s" -v w="$wall_s" 'BEGIN{ printf "%.2f", c/w }')
    foreign=$(foreign_cores $((bt1 - bt0)) $((c1 - c0)) "$(awk -v c="$cli_s" 'BEGIN{printf "%.0f", c*1e9}')" $((k1 - k0)) $((w1 - w0)))
    row "$t" "$s" "$rep" "$rps" "$mbps" "$util" "${cli:-NA}" "$steal" "$err" "$(kv p50_us "$out")" "$(kv p99_us "$out")" "$foreign"
    log "$t $s rep$rep: $rps req/s, $mbps MB/s (server util $util, client util $cli, foreign cores $foreign, steal $steal%, errors $err)"
}

start_http() {
    start_srv twisted_web 19101 $PY "$D/twisted_http.py" 19101 "$W"
    start_srv twisted_web_log 19107 $PY "$D/twisted_http.py" 19107 "$W" --access-log
    start_srv nginx 19102 nginx -c "$R/nginx.conf" -p "$R"
    start_srv h2o 19103 h2o -c "$R/h2o.conf"
    wait_listen 19106 || log "ERROR: h2o mruby port 19106 not listening"
    PID[h2o_mruby]=${PID[h2o]:-}; PORT[h2o_mruby]=19106
    start_srv evhttp 19104 "$B/evhttp_hello" 19104
    # the floor: canned answers, no parsing (what the kernel alone costs)
    start_srv raw_http 19111 "$B/raw_epoll_http" 19111
    # twirl: "Hello, World!" from memory at / and $W under /static/ (the
    # twin of twisted_http.py), and `twirl web` serving $W itself, whose
    # hello is the 13-byte hello.txt through the static file resource.
    start_srv twirl 19108 "$TB/example_web_hello" 19108 "$W"
    start_srv twirl_uring 19110 env TWIRL_REACTOR=uring "$TB/example_web_hello" 19110 "$W"
    start_srv twirl_file 19109 "$TB/twirl" web --log-level warn --max-connections 0 \
        --listen tcp:19109:interface=127.0.0.1 --path "$W"
    sleep 1
    # sanity: body and content type of every hello server
    local s
    for s in $HTTP_SERVERS; do
        [ -n "${PORT[$s]:-}" ] || continue
        echo "--- GET $(hello_path $s) on $s (port ${PORT[$s]})" >>"$LOG"
        curl -sS -i --max-time 5 "http://127.0.0.1:${PORT[$s]}$(hello_path $s)" >>"$LOG" 2>&1
        echo >>"$LOG"
    done
}
stop_http() {
    unset "PID[h2o_mruby]"
    for s in twisted_web twisted_web_log nginx h2o evhttp raw_http twirl twirl_uring twirl_file; do stop_srv $s; done
}
HTTP_SERVERS="twisted_web twisted_web_log nginx h2o h2o_mruby evhttp raw_http twirl twirl_uring twirl_file"
STATIC_SERVERS="nginx h2o twisted_web twirl twirl_uring twirl_file"
# twirl_file serves $W at its root: hello.txt (the static resource, as h2o's
# file.file) and 1m.bin; everyone else answers / and /static/1m.bin.
hello_path() { [ "$1" = twirl_file ] && echo /hello.txt || echo /; }
static_path() { [ "$1" = twirl_file ] && echo /1m.bin || echo /static/1m.bin; }

if [[ " $ONLY " == *" http "* ]] || [[ " $ONLY " == *" static "* ]]; then
    log "=== http servers"
    busy_snapshot
    start_http
    if [[ " $ONLY " == *" http "* ]]; then
        for rep in $(seq 1 "$REPS"); do
            for s in $HTTP_SERVERS; do
                [ -n "${PID[$s]:-}" ] && measure run_wrk http_hello $s "$rep" "http://127.0.0.1:${PORT[$s]}$(hello_path $s)"
            done
        done
    fi
    if [[ " $ONLY " == *" static "* ]]; then
        for rep in $(seq 1 "$REPS"); do
            for s in $STATIC_SERVERS; do
                [ -n "${PID[$s]:-}" ] && measure run_wrk http_static $s "$rep" "http://127.0.0.1:${PORT[$s]}$(static_path $s)"
            done
        done
    fi
    stop_http
fi

# ---------------------------------------------------------------- iperf3
if [[ " $ONLY " == *" iperf "* ]]; then
    log "=== iperf3"
    busy_snapshot
    for rep in $(seq 1 "$REPS"); do
        wait_quiet
        taskset -c $SRV_CPU iperf3 -s -1 -B 127.0.0.1 -p 19201 >>"$R/iperf3_server.out" 2>&1 &
        ip=$!
        wait_listen 19201 || log "ERROR: iperf3 server not listening"
        st0=$(steal_ticks); bt0=$(busy_ticks); k0=$(ksoft_ns); w0=$(now_ns)
        cmd="taskset -c $CLI_CPU iperf3 -c 127.0.0.1 -p 19201 -t $IPERF_DUR -J"
        out=$(timeout "$(awk -v a="$IPERF_DUR" 'BEGIN{print int(a+20)}')" $cmd 2>&1); rc=$?
        w1=$(now_ns); k1=$(ksoft_ns); bt1=$(busy_ticks); st1=$(steal_ticks)
        wait $ip 2>/dev/null
        echo "[iperf3 rep$rep] rc=$rc $cmd" >>"$LOG"
        echo "$out" >"$R/iperf3_rep$rep.json"
        # server/client CPU from iperf3's own accounting (the one-off server exits
        # as soon as the test ends, so it cannot be sampled from /proc here)
        read -r mbps gbps cli util < <(echo "$out" | $PY -c '
import json,sys
try:
    j=json.load(sys.stdin); bps=j["end"]["sum_received"]["bits_per_second"]
    cpu=j["end"]["cpu_utilization_percent"]
    print("%.1f %.2f %.2f %.2f" % (bps/8e6, bps/1e9, cpu["host_total"]/100, cpu["remote_total"]/100))
except Exception as e:
    print("NA NA NA NA")')
        wall_s=$(fdiv $((w1 - w0)) 1e9)
        steal=$(awk -v d=$((st1 - st0)) -v w="$wall_s" 'BEGIN{printf "%.1f", d/(2*w*100)*100}')
        err=0; [ $rc -ne 0 ] && err=1000
        # iperf3's CPU percentages cover its IPERF_DUR test interval
        foreign=$(awk -v u="$util" -v c="$cli" -v d="$IPERF_DUR" 'BEGIN{ if (u=="NA"||c=="NA") print "NA"; else printf "%.0f %.0f", u*d*1e9, c*d*1e9 }')
        if [ "$foreign" != NA ]; then
            foreign=$(foreign_cores $((bt1 - bt0)) ${foreign% *} ${foreign#* } $((k1 - k0)) $((w1 - w0)))
        fi
        row iperf3 iperf3 "$rep" "$mbps" "$gbps" "$util" "$cli" "$steal" "$err" NA NA "$foreign"
        log "iperf3 rep$rep: $mbps MB/s ($gbps Gbit/s), steal $steal%"
    done
fi

# ---------------------------------------------------------------- memory per idle connection
rss_kb() { awk '/^VmRSS/{print $2}' /proc/"$1"/status; }
nfds() { ls /proc/"$1"/fd | wc -l; }
slab_kb() { awk '/^Slab:/{print $2}' /proc/meminfo; }
if [[ " $ONLY " == *" mem "* ]]; then
    log "=== memory per idle connection ($MEM_CONNS connections)"
    busy_snapshot
    for rep in $(seq 1 "$REPS"); do
        for s in raw_epoll libuv libevent twisted twirl_epoll twirl_poll twirl_uring; do
            case $s in
            twirl_epoll) start_srv $s 19005 env TWIRL_REACTOR=epoll "$TB/example_echo_server" 19005 ;;
            twirl_poll) start_srv $s 19006 env TWIRL_REACTOR=poll "$TB/example_echo_server" 19006 ;;
            twirl_uring) start_srv $s 19007 env TWIRL_REACTOR=uring "$TB/example_echo_server" 19007 ;;
            raw_epoll) start_srv $s 19004 "$B/raw_epoll_echo" 19004 ;;
            libuv) start_srv $s 19002 "$B/uv_echo" 19002 ;;
            libevent) start_srv $s 19003 "$B/ev_echo" 19003 ;;
            twisted) start_srv $s 19001 $PY "$D/twisted_echo.py" 19001 ;;
            esac
            pid=${PID[$s]:-}
            [ -n "$pid" ] || continue
            sleep 1
            r0=$(rss_kb "$pid"); f0=$(nfds "$pid"); sl0=$(slab_kb)
            taskset -c $CLI_CPU "$B/holdconns" -p "${PORT[$s]}" -n "$MEM_CONNS" -t 60 >"$R/holdconns.out" 2>&1 &
            hp=$!
            ok=0
            for i in $(seq 1 600); do # up to 60 s for the server to accept all
                [ "$(nfds "$pid")" -ge $((f0 + MEM_CONNS)) ] && { ok=1; break; }
                sleep 0.1
            done
            sleep 1
            r1=$(rss_kb "$pid"); f1=$(nfds "$pid"); sl1=$(slab_kb)
            kill -TERM $hp 2>/dev/null; wait $hp 2>/dev/null
            stop_srv $s
            per=$(awk -v a="$r0" -v b="$r1" -v n="$MEM_CONNS" 'BEGIN{printf "%.0f", (b-a)*1024/n}')
            kper=$(awk -v a="$sl0" -v b="$sl1" -v n="$MEM_CONNS" 'BEGIN{printf "%.0f", (b-a)*1024/n}')
            err=0; [ $ok -eq 1 ] || err=1
            echo "[mem $s rep$rep] rss ${r0}k -> ${r1}k, fds +$((f1 - f0)), slab ${sl0}k -> ${sl1}k, holdconns: $(cat "$R/holdconns.out")" >>"$LOG"
            row mem_idle "$s" "$rep" "$per" "$kper" NA NA NA "$err" NA NA NA
            log "mem $s rep$rep: $per bytes/conn (RSS ${r0}k -> ${r1}k, fds +$((f1 - f0))), kernel slab $kper B/conn-pair"
            sleep 1
        done
    done
fi

echo "# loadavg after: $(cat /proc/loadavg)" >>"$O/versions.txt"
$PY "$D/summarize.py" "$TSV" >"$O/summary.md"
log "done; medians in $O/summary.md"
cat "$O/summary.md"
