#!/bin/sh
# Checks the Debian packages a make target needs and installs the missing
# ones: with apt-get when running as root, otherwise by printing the exact
# command and failing. Usage: tools/deps.sh [build|bench|fuzz|all]...
set -eu

build_pkgs="cmake ninja-build gcc clang pkg-config make libssl-dev libc-ares-dev zlib1g-dev
 liburing-dev libcmocka-dev valgrind libclang-rt-14-dev openssl"
test_pkgs="curl python3-twisted python3-openssl python3-service-identity netcat-openbsd
 libhttp-parser-dev dnsmasq-base apache2-utils wrk"
bench_pkgs="libuv1-dev libevent-dev nginx-light h2o wrk python3-twisted iperf3 procps util-linux"

want=""
for set in "${@:-build}"; do
    case "$set" in
    build) want="$want $build_pkgs $test_pkgs" ;;
    bench) want="$want $build_pkgs $test_pkgs $bench_pkgs" ;;
    fuzz) want="$want $build_pkgs" ;;
    all) want="$want $build_pkgs $test_pkgs $bench_pkgs" ;;
    *) echo "deps.sh: unknown set '$set' (build, bench, fuzz, all)" >&2; exit 2 ;;
    esac
done

missing=""
for p in $want; do
    case " $missing " in *" $p "*) continue ;; esac
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing="$missing $p"
    fi
done
[ -z "$missing" ] && exit 0

cmd="apt-get -o DPkg::Lock::Timeout=600 install -y --no-install-recommends$missing"
if [ "$(id -u)" -ne 0 ]; then
    echo "twirl needs these Debian packages:$missing" >&2
    echo "run:  sudo $cmd" >&2
    exit 1
fi
echo "installing:$missing"
export DEBIAN_FRONTEND=noninteractive
# A fresh machine may have no package lists yet; update once and retry.
if ! $cmd </dev/null; then
    apt-get -o DPkg::Lock::Timeout=600 update </dev/null
    $cmd </dev/null
fi
