#!/bin/sh
# B4: in a SHA-256 repository every push that git keeps as a pack (>= 100
# objects, transfer.unpackLimit) is rejected as `malformed-object` ("short
# index"), even to unprotected refs: quarantine.rs guesses the index's hash
# size from its length, trying 20 before 32, and 20 always fits a SHA-256
# index. Usage: b4-sha256-pack-rejected.sh [dir]
set -eu
BIN=${BIN:-/work/wt-attack2/target/debug/countersign}
D=${1:-/tmp/attack2-s256}; rm -rf "$D"; mkdir -p "$D"; cd "$D"
git init -q --bare --object-format=sha256 server.git
printf '#!/bin/sh\nexec %s hook pre-receive\n' "$BIN" > server.git/hooks/pre-receive
chmod +x server.git/hooks/pre-receive
cat > policy.toml <<'P'
[repository]
id = "demo/sha256"
[roles]
developer = "dev"
[[rule]]
refs = ["refs/heads/main"]
commit-signers = ["developer"]
P
git -C server.git config countersign.policy "$D/policy.toml"
git init -q --object-format=sha256 work; cd work
git config user.name A; git config user.email a@x
for i in $(seq 1 150); do echo $i > f$i; done
git add .; git commit -qm "150 files"
git push ../server.git HEAD:refs/heads/scratch 2>&1 | grep -E 'remote: (countersign|error)|->'
