#!/bin/sh
# B3: approvals are bound to a topic tip, not to one landing. A squash never
# makes the topic reachable from the ref, so after a squash of topic T has
# been reverted (with the reviewers' approval), the maintainer alone can
# land T again, with T's old approval trailers: the hook accepts it.
# Usage: SANDBOX=<copy of a demo sandbox> b3-squash-replay-after-revert.sh
set -eu
: "${SANDBOX:?}"
BIN=${BIN:-/work/wt-attack2/target/debug/countersign}
S=$SANDBOX; W=$S/work; G=$S/server.git
git -C $G config countersign.policy $S/policy.toml
git -C $W remote set-url origin "file://$G"
git -C $W config countersign.policy $S/policy.toml
git -C $W config user.signingkey $S/keys/bob
cd $W
as() { who=$1; shift; git -c user.signingkey=$S/keys/$who -c user.name=$who -c user.email=$who@example.com "$@"; }
approve() { # person rev [--result]
  git config user.signingkey $S/keys/$1
  "$BIN" approve ${3:-} --ref production --no-note --policy $S/policy.toml "$2" 2>/dev/null | grep '^Countersign-Approval:'
  git config user.signingkey $S/keys/bob
}
push() { git push origin "$1" 2>&1 | grep -E 'remote: (countersign|error)|->' || true; }
git fetch -q origin
# 1. alice writes topic T; carol and erin approve it; bob squashes it.
git checkout -q -B topic-b3 origin/production
echo "fee: 3%" >> rounding.txt
as alice commit -q -S -am "Raise the fee to 3%"
T=$(git rev-parse HEAD)
push topic-b3:refs/heads/topic-b3
A1=$(approve carol $T); A2=$(approve erin $T)
git checkout -q -B prod-b3 origin/production
git merge -q --squash $T >/dev/null
git commit -q -S -m "Raise the fee to 3% (squash)" -m "Countersign-Squash: $T
$A1
$A2"
echo "== 1. squash of T with carol's and erin's approvals"; push HEAD:refs/heads/production
# 2. the reviewers decide to revert it: a direct commit with result approvals.
git revert --no-edit HEAD >/dev/null
R0=$(git rev-parse HEAD)
B1=$(approve carol $R0 --result); B2=$(approve erin $R0 --result)
git commit -q -S --amend -m "Revert the fee change" -m "$B1
$B2"
echo "== 2. approved revert"; push HEAD:refs/heads/production
# 3. bob alone lands T again, with the old trailers of step 1.
git merge -q --squash $T >/dev/null
git commit -q -S -m "Raise the fee to 3% again" -m "Countersign-Squash: $T
$A1
$A2"
echo "== 3. the same squash again, old approvals (nobody approved this)"; push HEAD:refs/heads/production
git log --oneline -4 origin/production
