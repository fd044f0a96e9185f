#!/bin/sh
# B2: `merger-distinct-from-authors = true` says a maintainer may never land
# code they wrote; README: a single-parent commit without the squash
# trailer is a direct commit whose signer is its author, and "with
# merger-distinct-from-authors = true it cannot land at all".
# Adding `Countersign-Squash: <its own parent>` turns the same commit into a
# "squash" of a topic with no commits: authors = {} and the merger is no
# longer an author. Reviewers approve the exact result (as they would for a
# direct commit), and the push is accepted.
# Usage: SANDBOX=<copy of a demo sandbox> b2-squash-self-parent.sh
set -eu
: "${SANDBOX:?}"
BIN=${BIN:-/work/wt-attack2/target/debug/countersign}
S=$SANDBOX; W=$S/work; G=$S/server.git
git -C $G config countersign.policy $S/policy.toml
git -C $W remote set-url origin "file://$G"
cp "$(dirname "$0")/../hooks/pre-receive" /dev/null 2>/dev/null || true
rm -f $G/hooks/pre-receive.timed
# The admin turns on the strictest rule for production.
grep -q '^merger-distinct-from-authors' $S/policy.toml ||
  sed -i 's/^merger-distinct-from-approvers = true/&\nmerger-distinct-from-authors = true/' $S/policy.toml
"$BIN" policy check --policy $S/policy.toml
cd $W
git fetch -q origin
git checkout -q -B prod-b2 origin/production
P=$(git rev-parse HEAD)
echo "bob's own change, written by bob" >> rounding.txt
git commit -q -S -am "Bob's direct change"
C0=$(git rev-parse HEAD)
approve() { # person
  git config user.signingkey $S/keys/$1
  "$BIN" approve --result --ref production --no-note --policy $S/policy.toml "$C0" 2>/dev/null | grep '^Countersign-Approval:'
  git config user.signingkey $S/keys/bob
}
A1=$(approve carol); A2=$(approve erin)
for mode in direct squash; do
  git reset -q --hard "$C0"
  if [ $mode = direct ]; then
    git commit -q -S --amend -m "Bob's direct change" -m "$A1
$A2"
  else
    git commit -q -S --amend -m "Bob's direct change" -m "Countersign-Squash: $P
$A1
$A2"
  fi
  echo "== $mode: $(git rev-parse --short HEAD) tree $(git rev-parse --short HEAD^{tree}) parent $(git rev-parse --short HEAD^)"
  git push origin HEAD:refs/heads/production 2>&1 | grep -E 'remote: (countersign|error)|->|rejected' || true
done
