#!/bin/sh
# A2: a 10 KB push: one annotated tag object whose name is 1,000,000 ESC
# bytes (compresses to ~1 KB), pushed as refs/tags/v1 .. v100. Every update
# gives a tag-name-mismatch finding quoting the whole name (verify.rs
# check_tag, `inside` not clipped); the findings are cloned into the dedup
# set, escaped (x6) for stderr and serialised (x6) for the audit record,
# several times while the record is cut down to size.
. "$(dirname "$0")/common.sh"
K=${K:-100}; NAMELEN=${NAMELEN:-1000000}
cd "$WORK"
python3 - "$MAIN" "$NAMELEN" > "$SANDBOX/a2.tag" <<'PY'
import sys
c, n = sys.argv[1], int(sys.argv[2])
sys.stdout.buffer.write(b"object %s\ntype commit\ntag %s\ntagger m <m> 1700000000 +0000\n\nhi\n" % (c.encode(), b"\x1b" * n))
PY
T=$(git hash-object -t tag -w --literally --stdin < "$SANDBOX/a2.tag")
printf '%s\n^%s\n' "$T" "$MAIN" | git pack-objects --revs --stdout > "$SANDBOX/a2.pack"
i=1; : > "$SANDBOX/a2.cmds"
while [ $i -le "$K" ]; do echo "$Z $T refs/tags/v$i" >> "$SANDBOX/a2.cmds"; i=$((i+1)); done
rawpush "$SANDBOX/a2.cmds" "$SANDBOX/a2.pack" 2>"$SANDBOX/a2.err" | tail -1
report A2 "$SANDBOX/a2.cmds" "$SANDBOX/a2.pack"
head -c 300 "$SANDBOX/a2.err"; echo
