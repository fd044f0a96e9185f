#!/usr/bin/env bash
# Install countersign as the pre-receive hook of a bare repository.
# Usage and options: the usage() text below (install.sh --help).
set -euo pipefail

usage() {
    cat <<'EOF'
Usage: install.sh <bare-repo> [--policy FILE] [--binary PATH] [--chain]

Install countersign as the pre-receive and post-receive hooks of a bare
repository.

Options:
  --policy FILE   use FILE as the policy: recorded as the repository's git
                  config `countersign.policy` (absolute path). It is checked
                  first; an invalid policy stops the install.
                  Without it, a starter policy is written to
                  <bare-repo>/countersign.toml unless one is already there.
  --binary PATH   install this countersign binary instead of building one
                  with `cargo build --release` from this source tree.
  --chain         keep an existing, foreign pre-receive (post-receive) hook:
                  it is renamed to pre-receive.chained (post-receive.chained)
                  and runs after countersign. Without it, the install
                  refuses to replace such a hook.
  -h, --help      print this help and exit.

It also installs the post-receive shim and runs `countersign log init` as
the repository's owner: the server's log key and the signed ref-state log
(refs/countersign/log). The public key is printed at the end.
EOF
}

die() { printf 'install.sh: error: %s\n' "$1" >&2; [ $# -gt 1 ] && printf '  help: %s\n' "$2" >&2; exit 1; }

src_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo="" policy="" binary="" chain=0
while [ $# -gt 0 ]; do
    case "$1" in
        --policy) [ $# -ge 2 ] || die "--policy needs a file"; policy=$2; shift 2 ;;
        --binary) [ $# -ge 2 ] || die "--binary needs a path"; binary=$2; shift 2 ;;
        --chain) chain=1; shift ;;
        -h|--help) usage; exit 0 ;;
        -*) die "unknown option \`$1\`" "see install.sh --help" ;;
        *) [ -z "$repo" ] || die "more than one repository given: \`$repo\` and \`$1\`"; repo=$1; shift ;;
    esac
done
[ -n "$repo" ] || die "no repository given" "usage: install.sh <bare-repo> [--policy FILE] [--binary PATH] [--chain]"
[ -d "$repo" ] || die "\`$repo\` is not a directory"
repo=$(cd "$repo" && pwd)
[ "$(git --git-dir="$repo" rev-parse --is-bare-repository 2>/dev/null)" = true ] \
    || die "\`$repo\` is not a bare git repository" "create one with: git init --bare $repo"

if [ -z "$binary" ]; then
    echo "install.sh: building countersign (cargo build --release --locked)" >&2
    (cd "$src_dir" && cargo build --release --locked --quiet)
    binary="$src_dir/target/release/countersign"
fi
[ -x "$binary" ] || die "\`$binary\` is not an executable file"

# Everything the hook will do, it does as the repository's owner (the user
# git runs the hook as): the checks and the files written for it are made
# as that user, with that user's HOME (their global git config).
owner=$(stat -c %U "$repo")
owner_home=$(getent passwd "$owner" | cut -d: -f6 || true)
as_owner() {
    if [ "$(id -u)" = 0 ] && [ "$owner" != root ]; then
        if command -v runuser >/dev/null 2>&1; then
            runuser -u "$owner" -- env -u GIT_CONFIG_GLOBAL -u GIT_CONFIG_SYSTEM -u GIT_CONFIG_NOSYSTEM \
                HOME="${owner_home:-/}" "$@"
        else
            su -s /bin/sh "$owner" -c "unset GIT_CONFIG_GLOBAL GIT_CONFIG_SYSTEM GIT_CONFIG_NOSYSTEM; HOME='${owner_home:-/}' \"\$0\" \"\$@\"" "$@"
        fi
    else
        "$@"
    fi
}

hooks_path=$(as_owner git --git-dir="$repo" config --get core.hooksPath || true)
if [ -n "$hooks_path" ]; then
    die "core.hooksPath is set to \`$hooks_path\` for $repo: git runs hooks from there, so a hook installed in $repo/hooks would never run and every push would be accepted" \
        "install the shim into that directory yourself (see hooks/pre-receive), or unset core.hooksPath (git --git-dir=$repo config --unset core.hooksPath, and check the global and system config)"
fi
hooks="$repo/hooks"
case "$hooks" in
    *"'"*|*'|'*|*'&'*|*'\'*|*$'\n'*) die "the repository path \`$repo\` contains a quote, |, &, \\ or newline" "move the repository to a plainer path" ;;
esac
mkdir -p "$hooks"
# Check both hooks before touching either.
for kind in pre-receive post-receive; do
    t="$hooks/$kind"
    m="countersign $kind shim"
    if [ -e "$t" ] && ! grep -q "$m" "$t" 2>/dev/null; then
        if [ "$chain" = 1 ]; then
            [ -e "$t.chained" ] && die "\`$t.chained\` already exists" "remove or merge it by hand, then run install.sh again"
        else
            die "\`$t\` already exists and is not countersign's" \
                "re-run with --chain to keep it running after countersign, or move it away yourself"
        fi
    fi
done
for kind in pre-receive post-receive; do
    t="$hooks/$kind"
    m="countersign $kind shim"
    if [ -e "$t" ] && ! grep -q "$m" "$t" 2>/dev/null; then
        mv "$t" "$t.chained"
        echo "install.sh: kept the existing hook as $t.chained (runs after countersign)" >&2
    fi
done
target="$hooks/pre-receive"

if [ -n "$policy" ]; then
    [ -f "$policy" ] || die "policy \`$policy\` does not exist"
    policy=$(cd "$(dirname "$policy")" && pwd)/$(basename "$policy")
    "$binary" policy check --policy "$policy" >&2 || die "the policy \`$policy\` is not valid" "fix the problems listed above and run install.sh again"
    as_owner git --git-dir="$repo" config countersign.policy "$policy" \
        || die "cannot record the policy in $repo/config as $owner" "check that $owner can read the policy and write the repository"
elif [ -z "$(as_owner git --git-dir="$repo" config --get countersign.policy || true)" ] && [ ! -e "$repo/countersign.toml" ]; then
    "$binary" policy init --id "$(basename "$repo" .git)" > "$repo/countersign.toml"
    [ "$(id -u)" = 0 ] && chown "$owner:" "$repo/countersign.toml"
    echo "install.sh: wrote a starter policy to $repo/countersign.toml: protected refs reject every push until you add people (its comments explain each section; see also \`countersign policy init --help\`)" >&2
fi

install -m 0755 "$binary" "$hooks/countersign.new"
mv -f "$hooks/countersign.new" "$hooks/countersign"
for kind in pre-receive post-receive; do
    tmp="$hooks/$kind.new.$$"
    sed "s|@COUNTERSIGN_BIN@|$hooks/countersign|" "$src_dir/hooks/$kind" > "$tmp"
    chmod 0755 "$tmp"
    mv -f "$tmp" "$hooks/$kind"
done
echo "install.sh: installed countersign as the pre-receive and post-receive hooks of $repo" >&2

# The signed ref-state log, made by the user the hook runs as (the owner of
# the repository): its key must be readable by that user only, and objects
# it writes must belong to that user.
as_owner env GIT_DIR="$repo" "$hooks/countersign" log init >/dev/null \
    || die "countersign log init failed for $repo" "run it as $owner: GIT_DIR=$repo $hooks/countersign log init"
