#!/bin/sh
# A3: a < 1 MB push carrying one 900 MB blob of zeros (zlib ~1000:1), and
# LINES update lines "<main> <blob> refs/heads/main". check_fast_forward
# peels the new value with find_object(), which inflates (and hashes) the
# whole blob in memory; per line, and no `seconds` check on this path.
. "$(dirname "$0")/common.sh"
LINES=${LINES:-1}; SIZE=${SIZE:-900000000}
cd "$WORK"
B=$(head -c "$SIZE" /dev/zero | git hash-object -w --stdin)
echo "$B" | git pack-objects --stdout > "$SANDBOX/a3.pack"
yes "$MAIN $B refs/heads/main" | head -n "$LINES" > "$SANDBOX/a3.cmds"
rawpush "$SANDBOX/a3.cmds" "$SANDBOX/a3.pack" 2>"$SANDBOX/a3.err" | tail -1
report A3 "$SANDBOX/a3.cmds" "$SANDBOX/a3.pack"
head -c 300 "$SANDBOX/a3.err"; echo
