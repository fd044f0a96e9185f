#!/bin/sh
# Measure the hook alone on a pack already stored by an accepted push to an
# unprotected ref: usage direct-hook.sh SANDBOX K MSG_BYTES
# (stores the chain under refs/heads/junk-K, then runs `countersign hook
# pre-receive` by hand with "<main> <tip> refs/heads/main", under GNU time)
set -eu
S=$1; K=$2; MSG=$3
BIN=${BIN:-/work/wt-attack2/target/debug/countersign}
A2=$(cd "$(dirname "$0")" && pwd)
G=$S/server.git
git -C $G config countersign.policy $S/policy.toml
cp "$A2/../bench/attacks/timed-shim.sh" /dev/null
MAIN=$(git -C $G rev-parse refs/heads/main); TREE=$(git -C $G rev-parse "main^{tree}")
TIP=$(python3 "$A2/commit_chain_pack.py" "$K" "$MAIN" "$TREE" "$S/c$K.pack" "$MSG")
printf '%s %s refs/heads/junk-%s\n' 0000000000000000000000000000000000000000 "$TIP" "$K" > "$S/c$K.cmds"
rm -f $G/hooks/pre-receive
python3 "$A2/../bench/attacks/rawpush.py" $G "$S/c$K.cmds" "$S/c$K.pack" >/dev/null
echo "$MAIN $TIP refs/heads/main" > "$S/main$K.cmds"
cd $G && GIT_DIR=$G /usr/bin/time -f "hook wall=%e s maxrss=%M KB exit=%x" "$BIN" hook pre-receive < "$S/main$K.cmds" 2>&1 | grep -E "hook wall|push rejected|accepted"
