#!/usr/bin/env bash
# Throughput of `countersign verify` against a `git verify-commit` loop over
# the same history of N SSH-signed commits, measured in the same run.
#
#   bench/verify-throughput.sh [N] [path/to/countersign]
#
# Defaults: N=1000, the release binary (built if missing). Prints commits/s
# for both. Needs git, ssh-keygen and python3 (for timing).
set -euo pipefail
n=${1:-1000}
src=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bin=${2:-$src/target/release/countersign}
case "$bin" in /*) ;; *) bin=$PWD/$bin ;; esac
if [ ! -x "$bin" ]; then
    (cd "$src" && cargo build --release --locked --quiet)
fi
work=$(mktemp -d /tmp/cs-bench.XXXXXX)
trap 'rm -rf "$work"' EXIT
export HOME=$work GIT_CONFIG_NOSYSTEM=1
cd "$work"
ssh-keygen -q -t ed25519 -N '' -C bench -f key
cat > policy.toml <<EOT
[repository]
id = "bench/repo"
[roles]
developer = "writes code"
[people.bench]
name = "Bench"
roles = ["developer"]
ssh = ["$(cat key.pub)"]
[[rule]]
refs = ["refs/heads/main"]
commit-signers = ["developer"]
EOT
printf 'bench %s\n' "$(cat key.pub)" > allowed_signers
git init -q -b main repo
cd repo
git config user.name Bench
git config user.email bench@example.com
git config gpg.format ssh
git config user.signingkey "$work/key"
git config gpg.ssh.allowedSignersFile "$work/allowed_signers"
echo "making $n SSH-signed commits..." >&2
tree=$(git write-tree)
parent=""
for i in $(seq 1 "$n"); do
    blob=$(printf 'change %s\n' "$i" | git hash-object -w --stdin)
    tree=$(printf '100644 blob %s\tfile\n' "$blob" | git mktree)
    if [ -z "$parent" ]; then
        parent=$(git commit-tree -S -m "commit $i" "$tree")
    else
        parent=$(git commit-tree -S -p "$parent" -m "commit $i" "$tree")
    fi
done
git update-ref refs/heads/main "$parent"
now() { python3 -c 'import time; print(time.monotonic())'; }

t0=$(now)
"$bin" verify main --ref refs/heads/main --policy "$work/policy.toml" >/dev/null
t1=$(now)
git rev-list main | while read -r c; do git verify-commit "$c" 2>/dev/null || { echo "verify-commit failed on $c" >&2; exit 1; }; done
t2=$(now)
python3 - "$n" "$t0" "$t1" "$t2" <<'EOT'
import sys
n, t0, t1, t2 = int(sys.argv[1]), *map(float, sys.argv[2:])
cs, gv = t1 - t0, t2 - t1
print(f"commits: {n}")
print(f"countersign verify:     {cs:8.3f} s  {n / cs:10.0f} commits/s")
print(f"git verify-commit loop: {gv:8.3f} s  {n / gv:10.0f} commits/s")
print(f"ratio: {gv / cs:.1f}x")
EOT
