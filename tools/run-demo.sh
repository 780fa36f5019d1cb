#!/bin/sh
# Starts the main demo from a build directory: `twirl web` serving docs/ when
# the command has it, otherwise the smallest example program.
# Usage: tools/run-demo.sh BUILD_DIR ADDR PORT
set -eu
build=$1 addr=$2 port=$3
top=$(cd "$(dirname "$0")/.." && pwd)
if [ -x "$build/twirl" ] && "$build/twirl" web --help >/dev/null 2>&1; then
    echo "twirl web: serving $top/docs at http://$addr:$port/ (Ctrl-C stops it)"
    exec "$build/twirl" web --listen "tcp:$port:interface=$addr" --path "$top/docs"
fi
echo "starting examples/hello (a ticking reactor; Ctrl-C stops it)"
exec "$build/example_hello"
