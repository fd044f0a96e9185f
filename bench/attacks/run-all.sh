#!/bin/sh
# Make a fresh demo sandbox and run every attack in turn (one heavy job at a
# time). Usage: attack/run-all.sh [sandbox-dir]
set -eu
HERE=$(cd "$(dirname "$0")" && pwd)
BIN=${BIN:-$(cd "$HERE/../.." && pwd)/target/debug/countersign}
if [ $# -ge 1 ]; then S=$1; else
  S=$("$BIN" demo 2>&1 | sed -n 's/.*The sandbox is kept for you to explore: //p')
fi
echo "sandbox: $S"
export SANDBOX=$S BIN
"$HERE/a1-dup-lines-hidden-walk.sh"
"$HERE/a2-tag-name-findings.sh"
LINES=3 "$HERE/a3-blob-peel.sh"
N=30000 "$HERE/a4-deep-delta-scan.sh"
