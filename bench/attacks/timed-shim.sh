#!/bin/sh
# Measuring shim: replaces hooks/pre-receive in a sandbox copy; records
# wall time and peak RSS of the countersign hook process in $GIT_DIR/../hooktime.log
BIN=countersign  # common.sh writes the binary under test here
LOG="$(cd "$(dirname "$0")/../.." && pwd)/hooktime.log"
exec /usr/bin/time -f "hook wall=%e s maxrss=%M KB exit=%x" -a -o "$LOG" "$BIN" hook pre-receive
