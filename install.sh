#!/usr/bin/env bash
# Install countersign into a bare repository: builds the binary (unless
# --binary is given), then runs `countersign install`, which does the work.
# Usage and options: the usage() text below (install.sh --help).
set -euo pipefail

usage() {
    cat <<'EOF'
Usage: install.sh <bare-repo> [--policy FILE] [--binary PATH] [--chain] [OPTIONS]

Install countersign as the pre-receive and post-receive hooks of a bare
repository: builds the release binary from this source tree (unless
--binary is given), then runs `countersign install --repo <bare-repo>`
with the other options, which checks and installs (see
`countersign install --help` for all of them: --root, --layout,
--hook-user, --uninstall, ...).

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

The checks (core.hooksPath, the policy readable, the audit log writable) and
`countersign log init` (the server's log key and the signed ref-state log
refs/countersign/log) run as the user the hook runs as: the repository's
owner, or --hook-user USER. The public key is printed at the end.
EOF
}

die() { printf 'install.sh: error: %s\n' "$1" >&2; [ $# -gt 1 ] && printf '  help: %s\n' "$2" >&2; exit 1; }

src_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo="" binary=""
pass=()
while [ $# -gt 0 ]; do
    case "$1" in
        --binary) [ $# -ge 2 ] || die "--binary needs a path"; binary=$2; shift 2 ;;
        --policy|--layout|--hook-user|--default-policy|--max-depth)
            [ $# -ge 2 ] || die "$1 needs a value"; pass+=("$1" "$2"); shift 2 ;;
        -h|--help) usage; exit 0 ;;
        -*) pass+=("$1"); shift ;;
        *) [ -z "$repo" ] || die "more than one repository given: \`$repo\` and \`$1\`"; repo=$1; shift ;;
    esac
done
[ -n "$repo" ] || die "no repository given" "usage: install.sh <bare-repo> [--policy FILE] [--binary PATH] [--chain]"

if [ -z "$binary" ]; then
    echo "install.sh: building countersign (cargo build --release --locked)" >&2
    (cd "$src_dir" && cargo build --release --locked --quiet)
    binary="$src_dir/target/release/countersign"
fi
[ -x "$binary" ] || die "\`$binary\` is not an executable file"

exec "$binary" install --repo "$repo" --binary "$binary" "${pass[@]}"
