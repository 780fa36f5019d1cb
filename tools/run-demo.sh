#!/bin/sh
# Starts the main demo from a build directory: `twirl web` serving docs/.
# Usage: tools/run-demo.sh BUILD_DIR ADDR PORT
set -eu
build=$1 addr=$2 port=$3
top=$(cd "$(dirname "$0")/.." && pwd)
echo "twirl web: serving $top/docs at http://$addr:$port/ (Ctrl-C stops it)"
exec "$build/twirl" web --listen "tcp:$port:interface=$addr" --path "$top/docs"
