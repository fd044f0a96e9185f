#!/bin/sh
# A4: a push of N+1 unreachable 8-byte blobs in one OFS_DELTA chain N deep
# (hand-written pack; ~17 bytes per object), creating an UNPROTECTED ref.
# hook.rs scan_quarantine() calls odb.read_header() on every quarantined
# object; libgit2 resolves a delta's type by walking its whole base chain,
# so the scan is O(N^2) -- before decide(), outside every budget, and the
# push is accepted in the end (the pack is then kept in the repository).
. "$(dirname "$0")/common.sh"
N=${N:-30000}
python3 "$HERE/deep_delta_pack.py" "$N" "$SANDBOX/a4.pack"
echo "$Z $MAIN refs/heads/a4-$N-$$" > "$SANDBOX/a4.cmds"
rawpush "$SANDBOX/a4.cmds" "$SANDBOX/a4.pack" 2>"$SANDBOX/a4.err" | tail -1
report A4 "$SANDBOX/a4.cmds" "$SANDBOX/a4.pack"
head -c 300 "$SANDBOX/a4.err"; echo
