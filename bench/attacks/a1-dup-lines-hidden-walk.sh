#!/bin/sh
# A1: one push < 1 MB: a 7,000-commit chain dated in 2100 plus an unsigned
# commit X (dated 2023) on top, and 1,000 identical update lines
# "<chain tip> <X> refs/heads/main" (a bogus old value: git only checks it
# after the hook). Each line makes libgit2 walk the whole hidden chain
# (revwalk hide + graph_descendant_of), uncounted by `commits`; the
# identical findings are de-duplicated so `findings` never fills.
. "$(dirname "$0")/common.sh"
N=${N:-7000}; LINES=${LINES:-1000}
cd "$WORK"
python3 "$HERE/gen_chain.py" refs/heads/a1-chain "$N" | git fast-import --quiet --force
J=$(git rev-parse a1-chain)
X=$(GIT_COMMITTER_DATE="1700000000 +0000" GIT_AUTHOR_DATE="1700000000 +0000" git commit-tree -p "$J" -m evil "$J^{tree}")
echo "$X" | git pack-objects --revs --stdout --window=250 > "$SANDBOX/a1.pack"
yes "$J $X refs/heads/main" | head -n "$LINES" > "$SANDBOX/a1.cmds"
rawpush "$SANDBOX/a1.cmds" "$SANDBOX/a1.pack" 2>"$SANDBOX/a1.err" | tail -1
report A1 "$SANDBOX/a1.cmds" "$SANDBOX/a1.pack"
head -c 400 "$SANDBOX/a1.err"; echo
