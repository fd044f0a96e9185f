#!/usr/bin/env bash
# Regenerate the seed corpus in fuzz/seeds/ and the public keys in fuzz/keys/.
#
# Uses throwaway keys made on the spot (an ssh-keygen ed25519 key and, if gpg
# is installed, an OpenPGP ed25519 certificate that never expires); their
# secret halves live in a temporary directory that is deleted at the end.
# Only the public keys are kept (fuzz/keys/), so the `signature` target's
# keyring knows the signers of the seed signatures and the fuzzer can reach
# the code after a successful check.
#
# The seeds are committed; running this again replaces them (and the keys).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
seeds="$here/seeds"
keys="$here/keys"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

# The exact bytes the `signature` target verifies against (keep in sync with
# fuzz_targets/signature.rs, which include_bytes!s these files).
payload="$keys/payload.txt"
statement="$keys/statement.txt"
mkdir -p "$keys"
printf 'tree 4b825dc642cb6eb9a060e54bf8d69288fbee4904\nauthor Fuzz <fuzz@example.com> 1764400000 +0000\ncommitter Fuzz <fuzz@example.com> 1764400000 +0000\n\nfuzz payload\n' >"$payload"
printf 'countersign approval v1\nrepository acme/payments\nref refs/heads/main\nkind topic\ncommit aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\ntree bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb\nissued-at 1764400000\n' >"$statement"

rm -rf "$seeds"
mkdir -p "$seeds"/{object_split,signature,approval,policy,hook_input,refpattern}

# --- keys -----------------------------------------------------------------
ssh-keygen -q -t ed25519 -N '' -C fuzz@example.com -f "$tmp/id_ed25519"
cp "$tmp/id_ed25519.pub" "$keys/ssh.pub"
have_gpg=0
if command -v gpg >/dev/null; then
    export GNUPGHOME="$tmp/gnupg"
    mkdir -m 700 "$GNUPGHOME"
    gpg --batch --quiet --pinentry-mode loopback --passphrase '' \
        --quick-gen-key 'Fuzz <fuzz-pgp@example.com>' ed25519 sign never 2>/dev/null
    fpr="$(gpg --batch --with-colons --list-keys | awk -F: '/^fpr/{print $10; exit}')"
    gpg --batch --armor --export "$fpr" >"$keys/openpgp.asc"
    have_gpg=1
fi

# --- objects: real signed commits and tags ---------------------------------
repo="$tmp/repo"
git init -q -b main "$repo"
g() { git -C "$repo" -c user.name=Fuzz -c user.email=fuzz@example.com \
        -c gpg.format=ssh -c user.signingkey="$tmp/id_ed25519" "$@"; }
export GIT_AUTHOR_DATE='1764400000 +0000' GIT_COMMITTER_DATE='1764400000 +0000'
echo one >"$repo/a"; g add a
g commit -q -S -m 'ssh-signed commit' -m 'Body text.'
g cat-file commit HEAD >"$seeds/object_split/commit-ssh"
echo two >"$repo/a"; g add a
g commit -q -m 'unsigned commit'
g cat-file commit HEAD >"$seeds/object_split/commit-unsigned"
g tag -s -m 'release v1' v1
g cat-file tag v1 >"$seeds/object_split/tag-ssh"
g tag -a -m 'unsigned tag' v1u
g cat-file tag v1u >"$seeds/object_split/tag-unsigned"
# A merge commit that carries an approval trailer in its last paragraph.
g checkout -q -b topic HEAD~1
echo three >"$repo/b"; g add b; g commit -q -S -m 'topic work'
g checkout -q main
g merge -q --no-ff -S topic -m 'Merge topic' -m "Countersign-Approval: by=bob@example.com repo=acme/payments ref=refs/heads/main kind=topic commit=$(g rev-parse topic) tree=$(g rev-parse 'topic^{tree}') at=1764400000 sig=U1NIU0lHAAAAAQ=="
g cat-file commit HEAD >"$seeds/object_split/merge-ssh"
if [ "$have_gpg" = 1 ]; then
    gp() { git -C "$repo" -c user.name=Fuzz -c user.email=fuzz-pgp@example.com \
            -c gpg.format=openpgp -c user.signingkey="$fpr" "$@"; }
    echo four >"$repo/a"; gp add a
    gp commit -q -S -m 'gpg-signed commit'
    gp cat-file commit HEAD >"$seeds/object_split/commit-gpg"
    gp tag -s -m 'release v2' v2
    gp cat-file tag v2 >"$seeds/object_split/tag-gpg"
fi
# Hand-made edge cases git also writes or reads.
printf 'tree 4b825dc642cb6eb9a060e54bf8d69288fbee4904\nmergetag object 4b825dc642cb6eb9a060e54bf8d69288fbee4904\n type commit\n tag v0\n\n m\nauthor A <a@x> 1 +0000\ncommitter A <a@x> 1 +0000\ngpgsig -----BEGIN SSH SIGNATURE-----\n AAAA\n -----END SSH SIGNATURE-----\nencoding ISO-8859-1\n\nsubject\n' >"$seeds/object_split/commit-mergetag"
printf 'tree 4b825dc642cb6eb9a060e54bf8d69288fbee4904\ngpgsig-sha256 -----BEGIN SSH SIGNATURE-----\n x\n -----END SSH SIGNATURE-----\n\nm\n' >"$seeds/object_split/commit-sha256sig"

# --- signatures over payload.txt / statement.txt ---------------------------
ssh-keygen -q -Y sign -n git -f "$tmp/id_ed25519" "$payload" 2>/dev/null
mv "$payload.sig" "$seeds/signature/ssh-git.sig"
ssh-keygen -q -Y sign -n countersign-approval -f "$tmp/id_ed25519" "$statement" 2>/dev/null
mv "$statement.sig" "$seeds/signature/ssh-approval.sig"
# The binary (dearmored) form, as carried in a trailer.
sed '1d;$d' "$seeds/signature/ssh-approval.sig" | base64 -d >"$seeds/signature/ssh-approval.bin"
ssh-keygen -q -Y sign -n other -f "$tmp/id_ed25519" "$payload" 2>/dev/null
mv "$payload.sig" "$seeds/signature/ssh-wrong-namespace.sig"
if [ "$have_gpg" = 1 ]; then
    gpg --batch --quiet --armor --detach-sign -u "$fpr" -o "$seeds/signature/pgp-git.asc" "$payload"
    gpg --batch --quiet --detach-sign -u "$fpr" -o "$seeds/signature/pgp-approval.bin" "$statement"
    gpg --batch --quiet --armor --clearsign -u "$fpr" -o "$seeds/signature/pgp-cleartext.asc" "$payload"
    gpg --batch --quiet --armor --detach-sign --textmode -u "$fpr" -o "$seeds/signature/pgp-text.asc" "$payload"
fi

# --- approval trailers ------------------------------------------------------
sigb64="$(base64 -w0 "$seeds/signature/ssh-approval.bin")"
A40=aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa
B40=bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb
printf 'by=bob@example.com repo=acme/payments ref=refs/heads/main kind=topic commit=%s tree=%s at=1764400000 sig=%s\n' \
    "$A40" "$B40" "$sigb64" >"$seeds/approval/value-topic"
printf 'by=carol repo=acme/payments ref=refs/heads/release/1.x kind=result parents=cccccccccccccccccccccccccccccccccccccccc,dddddddddddddddddddddddddddddddddddddddd tree=eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee at=1764400000 sig=U1NIU0lHAAAAAQ==\n' \
    >"$seeds/approval/value-result"
printf 'Merge topic\n\nBody.\n\nSigned-off-by: A <a@x>\nCountersign-Approval: by=bob repo=r ref=refs/heads/main kind=topic commit=%s tree=%s at=1 sig=\ncountersign-approval : two\n' \
    "$A40" "$B40" >"$seeds/approval/message-trailers"
cp "$seeds/signature/ssh-approval.sig" "$seeds/approval/armored-ssh"
[ "$have_gpg" = 1 ] && cp "$seeds/signature/pgp-git.asc" "$seeds/approval/armored-pgp"

# --- policies ---------------------------------------------------------------
cp "$here/../config.example.toml" "$seeds/policy/config-example.toml"
sshpub="$(cat "$keys/ssh.pub")"
cat >"$seeds/policy/merge-rules.toml" <<TOML
[repository]
id = "acme/x"
[roles]
developer = "d"
reviewer = "r"
maintainer = "m"
[people.alice]
name = "A"
roles = ["developer", "reviewer"]
ssh = [{ key = "$sshpub", expires = 2030-01-01, retired = 2029-01-01T00:00:00Z }]
[people.bob]
roles = ["maintainer"]
openpgp = ["bob.asc", { cert = "missing.asc", revoked = 2027-06-30 }]
revoked = 2031-01-01
[[rule]]
name = "main"
refs = ["refs/heads/main", "refs/heads/release/*", "refs/heads/**"]
commit-signers = ["developer"]
tag-signers = ["maintainer"]
force-push = false
delete = false
baseline = "0123456789abcdef0123456789abcdef01234567"
[rule.merge]
required = true
signers = ["maintainer"]
approvals = [{ role = "reviewer", count = 2 }]
approvers-distinct-from-authors = true
merger-distinct-from-approvers = true
merger-distinct-from-authors = false
TOML
cat >"$seeds/policy/inline-rules.toml" <<'TOML'
rule = [{ refs = ["refs/tags/v*"], tag-signers = ["x"] }, 3]
[repository]
id = "a b"
[roles]
"Bad Role" = 1
TOML

# --- pre-receive input --------------------------------------------------------
Z=0000000000000000000000000000000000000000
printf '%s %s refs/heads/main\n' "$Z" "$A40" >"$seeds/hook_input/create"
printf '%s %s refs/heads/main\n%s %s refs/tags/v1\n%s %s HEAD\r\n' "$A40" "$B40" "$B40" "$Z" "$Z" "$A40" >"$seeds/hook_input/multi"
printf '%s%s %s%s refs/heads/main\n' "$Z" "${Z:0:24}" "$A40" "${A40:0:24}" >"$seeds/hook_input/sha256"

# --- ref patterns: pattern, NUL, ref name -------------------------------------
printf 'refs/heads/release/*\0refs/heads/release/1.0' >"$seeds/refpattern/star"
printf 'refs/**/main\0refs/heads/a/b/main' >"$seeds/refpattern/doublestar"
printf 'refs/heads/*-*\0refs/heads/2.0-stable-x' >"$seeds/refpattern/two-stars"

echo "seeds written to $seeds"
find "$seeds" -type f -size +8k -print | sed 's/^/WARNING: seed over 8 KB: /'
