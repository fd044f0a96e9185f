#!/bin/sh
# B1: K unsigned commits on top of main, each an OFS_DELTA on its parent
# (oldest = base). The push to main is rejected (unsigned), but first
# check_fast_forward -> graph_descendant_of walks all K commits, each read
# through its whole delta chain: K^2/2 delta applications, no budget check.
. "$(dirname "$0")/common2.sh"
K=${K:-2000}; MSG=${MSG:-2}
TREE=$(git -C "$WORK" rev-parse "$MAIN^{tree}")
TIP=$(python3 "$A2/commit_chain_pack.py" "$K" "$MAIN" "$TREE" "$SANDBOX/b1.pack" "$MSG")
echo "$MAIN $TIP refs/heads/main" > "$SANDBOX/b1.cmds"
rawpush "$SANDBOX/b1.cmds" "$SANDBOX/b1.pack" 2>"$SANDBOX/b1.err" | tail -2
report B1 "$SANDBOX/b1.cmds" "$SANDBOX/b1.pack"
head -c 400 "$SANDBOX/b1.err"; echo
