#!/bin/sh
# Installs the build into a scratch prefix and builds a small program against
# it twice: with pkg-config (twirl.pc) and with CMake's find_package(twirl).
# Usage: check-install.sh SOURCE_DIR BINARY_DIR
set -eu
src=$1 bin=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cmake --install "$bin" --prefix "$tmp/prefix" >/dev/null
cat >"$tmp/app.c" <<'C'
#include <twirl/twirl.h>
static void done(void *arg) { tw_reactor_stop(arg); }
int main(void)
{
    tw_reactor *r;
    if (tw_reactor_new(NULL, &r) < 0)
        return 1;
    tw_call_later(r, 0, done, r);
    int rc = tw_reactor_run(r);
    tw_reactor_free(r);
    return rc == 0 ? 0 : 1;
}
C
libdir=$(ls -d "$tmp"/prefix/lib*/pkgconfig | head -n 1)
export PKG_CONFIG_PATH="$libdir"
cc "$tmp/app.c" -o "$tmp/app_pc" $(pkg-config --cflags --libs twirl) \
    -Wl,-rpath,"$(dirname "$libdir")"
"$tmp/app_pc"
echo "pkg-config build runs"

mkdir -p "$tmp/cm"
cat >"$tmp/cm/CMakeLists.txt" <<'C'
cmake_minimum_required(VERSION 3.20)
project(app C)
find_package(twirl REQUIRED)
add_executable(app ../app.c)
target_link_libraries(app twirl::twirl)
C
cmake -S "$tmp/cm" -B "$tmp/cm/build" -DCMAKE_PREFIX_PATH="$tmp/prefix" >/dev/null
cmake --build "$tmp/cm/build" >/dev/null
"$tmp/cm/build/app"
echo "find_package build runs"
