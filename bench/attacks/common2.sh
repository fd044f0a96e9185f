# Shared setup for the attack scripts. Usage: . common.sh
# Needs: SANDBOX (a directory made by `countersign demo`, or a copy of one).
# Installs the measuring shim (timed-shim.sh) as the server's pre-receive hook
# and points the work clone at the server. Results: $SANDBOX/hooktime.log.
set -eu
HERE=$(cd "$(dirname "$0")" && pwd); A2=$HERE
: "${SANDBOX:?set SANDBOX to a countersign demo sandbox}"
SERVER=$SANDBOX/server.git
WORK=$SANDBOX/work
BIN=${BIN:-$(cd "$HERE/../.." && pwd)/target/debug/countersign}
git -C "$SERVER" config countersign.policy "$SANDBOX/policy.toml"
sed "s#^BIN=.*#BIN=$BIN#" "$HERE/timed-shim.sh" > "$SERVER/hooks/pre-receive"
chmod +x "$SERVER/hooks/pre-receive"
git -C "$WORK" remote set-url origin "file://$SERVER"
git -C "$WORK" fetch -q origin
Z=0000000000000000000000000000000000000000
MAIN=$(git -C "$WORK" rev-parse origin/main)
rawpush() { python3 "$HERE/rawpush.py" "$SERVER" "$@"; }
report() { echo "--- $1: push of $(cat "$2" "${3:-/dev/null}" | wc -c) bytes (commands + pack)"; tail -1 "$SANDBOX/hooktime.log"; }
