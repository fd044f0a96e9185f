//! Pushes to protected branches: signatures, signers, key dates,
//! ref movements, unprotected refs, symbolic refs, case, SHA-256,
//! hostile text, key types, baselines, several rules, key retirement.

use std::fs;

use crate::common::*;
use crate::util::*;

// ---------------------------------------------------------------------------
// 1, 2: accepted signed pushes
// ---------------------------------------------------------------------------

#[test]
fn ssh_signed_push_to_main_is_accepted() {
    let (mut sb, dev, _base) = with_dev(|_| vec![]);
    // A second push, updating (not creating) main.
    let c1 = sb.commit_as(Some(&dev), "second");
    let out = sb.push(&["main"]);
    assert_accepted(&out);
    sb.assert_server_ref(MAIN, Some(&c1));
}

#[test]
fn openpgp_signed_push_to_main_is_accepted() {
    let mut sb = Sandbox::new();
    let dev = sb.gpg_key("pgdev");
    sb.install(&standard_policy(&[simple_person(
        "pgdev",
        &["developer"],
        &dev,
    )]));
    create_main(&mut sb, &dev);
    let c1 = sb.commit_as(Some(&dev), "second");
    let out = sb.push(&["main"]);
    assert_accepted(&out);
    sb.assert_server_ref(MAIN, Some(&c1));
}

// ---------------------------------------------------------------------------
// 3: unsigned commits
// ---------------------------------------------------------------------------

#[test]
fn unsigned_commit_to_main_is_rejected() {
    let (mut sb, _dev, base) = with_dev(|_| vec![]);
    sb.commit_as(None, "unsigned");
    let out = sb.push(&["main"]);
    assert_rejected_with(&out, "unsigned-commit");
    sb.assert_server_ref(MAIN, Some(&base));
}

#[test]
fn creating_main_checks_all_reachable_history() {
    // An unsigned root under a signed tip: creating the protected ref must
    // check everything reachable from it, not just the tip.
    let mut sb = Sandbox::new();
    let dev = sb.ssh_key("dev");
    sb.install(&standard_policy(&[simple_person(
        "dev",
        &["developer"],
        &dev,
    )]));
    sb.commit_as(None, "unsigned root");
    sb.commit_as(Some(&dev), "signed tip");
    let out = sb.push(&["main"]);
    assert_rejected_with(&out, "unsigned-commit");
    sb.assert_server_ref(MAIN, None);
}

// ---------------------------------------------------------------------------
// 4, 5: who signed
// ---------------------------------------------------------------------------

#[test]
fn commit_signed_by_unknown_key_is_rejected() {
    let (mut sb, _dev, base) = with_dev(|_| vec![]);
    let stranger = sb.ssh_key("stranger");
    sb.commit_as(Some(&stranger), "from a stranger");
    let out = sb.push(&["main"]);
    assert_rejected_with(&out, "unknown-signer");
    sb.assert_server_ref(MAIN, Some(&base));
}

#[test]
fn commit_signed_by_person_without_role_is_rejected() {
    let mut rev = None;
    let (mut sb, _dev, base) = with_dev(|sb| {
        let k = sb.ssh_key("rev");
        let p = simple_person("rev", &["reviewer"], &k);
        rev = Some(k);
        vec![p]
    });
    sb.commit_as(rev.as_ref(), "by a reviewer");
    let out = sb.push(&["main"]);
    assert_rejected_with(&out, "signer-lacks-role");
    sb.assert_server_ref(MAIN, Some(&base));
}

// ---------------------------------------------------------------------------
// 6, 7: key dates and revocation
// ---------------------------------------------------------------------------

/// A developer `old` whose policy entry is shaped by `entry`/`extra`; push
/// a commit signed by `old` and expect `code`.
fn dated_developer_is_rejected(key_extra: Option<&str>, person_extra: &str, code: &str) {
    let mut old = None;
    let (mut sb, _dev, base) = with_dev(|sb| {
        let k = sb.ssh_key("old");
        let entry = match key_extra {
            Some(e) => k.entry_with(e),
            None => k.entry(),
        };
        let p = person("old", &["developer"], &k, &entry, person_extra);
        old = Some(k);
        vec![p]
    });
    sb.commit_as(old.as_ref(), "by old");
    let out = sb.push(&["main"]);
    assert_rejected_with(&out, code);
    sb.assert_server_ref(MAIN, Some(&base));
}

#[test]
fn expired_key_entry_is_rejected() {
    dated_developer_is_rejected(Some("expires = 2020-01-01"), "", "key-expired");
}

#[test]
fn expired_person_is_rejected() {
    dated_developer_is_rejected(None, "expires = 2020-01-01", "key-expired");
}

#[test]
fn revoked_key_entry_is_rejected() {
    dated_developer_is_rejected(Some("revoked = 2020-01-01"), "", "key-revoked");
}

#[test]
fn revoked_person_is_rejected() {
    dated_developer_is_rejected(None, "revoked = 2020-01-01", "key-revoked");
}

#[test]
fn openpgp_cert_revoked_in_certificate_is_rejected() {
    let mut pg = None;
    let (mut sb, _dev, base) = with_dev(|sb| {
        let k = sb.gpg_key("pg");
        let p = simple_person("pg", &["developer"], &k);
        pg = Some(k);
        vec![p]
    });
    let pg = pg.unwrap();
    // Signed while the key was good, then the key is revoked in its cert
    // (gpg's revocation certificate: a hard revocation) and the policy's
    // copy of the cert is replaced with the revoked one.
    sb.commit_as(Some(&pg), "signed before revocation");
    sb.revoke_cert(&pg);
    let out = sb.push(&["main"]);
    assert_rejected_with(&out, "key-revoked");
    sb.assert_server_ref(MAIN, Some(&base));
}

// ---------------------------------------------------------------------------
// 8: transplanted signature
// ---------------------------------------------------------------------------

/// Build commit B from signed commit A by changing the message but keeping
/// A's gpgsig header; push B.
fn transplanted_signature_is_rejected(sb: &mut Sandbox, signer: &Key, base: &str) {
    let a = sb.commit_as(Some(signer), "the signed message");
    let raw = sb.cat_commit(&a);
    let (payload, sig) = split_gpgsig(&raw);
    let sig = sig.expect("A is signed");
    let (headers, _msg) = payload.split_once("\n\n").unwrap();
    let forged = insert_gpgsig(
        &format!("{headers}\n\nan entirely different message\n"),
        &sig,
    );
    let b = sb.write_commit(&forged);
    assert_ne!(a, b);
    // Sanity check of the surgery: the same operation without changing
    // anything gives back A exactly.
    assert_eq!(
        insert_gpgsig(&payload, &sig),
        raw,
        "gpgsig surgery does not round-trip"
    );
    sb.reset_hard(&b);
    let out = sb.push(&["main"]);
    assert_rejected_with(&out, "bad-signature");
    sb.assert_server_ref(MAIN, Some(base));
}

#[test]
fn transplanted_ssh_signature_is_rejected() {
    let (mut sb, dev, base) = with_dev(|_| vec![]);
    transplanted_signature_is_rejected(&mut sb, &dev, &base);
}

#[test]
fn transplanted_openpgp_signature_is_rejected() {
    let mut pg = None;
    let (mut sb, _dev, base) = with_dev(|sb| {
        let k = sb.gpg_key("pg");
        let p = simple_person("pg", &["developer"], &k);
        pg = Some(k);
        vec![p]
    });
    transplanted_signature_is_rejected(&mut sb, &pg.unwrap(), &base);
}

// ---------------------------------------------------------------------------
// 9: SSH signature namespace
// ---------------------------------------------------------------------------

/// Make an unsigned commit, sign its payload by hand with
/// `ssh-keygen -Y sign -n <namespace>`, and put the signature in as the
/// gpgsig header. HEAD is moved to the result, whose id is returned.
fn hand_signed_commit(sb: &mut Sandbox, key: &Key, namespace: &str) -> String {
    let unsigned = sb.commit_as(None, &format!("signed by hand in namespace {namespace}"));
    let payload = sb.cat_commit(&unsigned);
    let sig = sb.ssh_sign(key, namespace, payload.as_bytes());
    let id = sb.write_commit(&insert_gpgsig(&payload, &sig));
    sb.reset_hard(&id);
    id
}

/// Does git itself (ssh-keygen -Y verify, namespace git) accept the commit?
fn git_verifies(sb: &Sandbox, key: &Key, id: &str) -> bool {
    let Key::Ssh { public, .. } = key else {
        panic!("not ssh")
    };
    let allowed = sb.root().join("allowed_signers");
    fs::write(&allowed, format!("test@example.com {public}\n")).unwrap();
    let cfg = format!("gpg.ssh.allowedSignersFile={}", allowed.display());
    sb.git(["-c", cfg.as_str(), "verify-commit", id])
        .output()
        .unwrap()
        .status
        .success()
}

#[test]
fn ssh_signature_in_other_namespace_is_rejected() {
    let (mut sb, dev, base) = with_dev(|_| vec![]);
    let id = hand_signed_commit(&mut sb, &dev, "file");
    assert!(
        !git_verifies(&sb, &dev, &id),
        "git accepts a `file` namespace signature?"
    );
    let out = sb.push(&["main"]);
    assert_rejected_with(&out, "ssh-namespace");
    sb.assert_server_ref(MAIN, Some(&base));
}

#[test]
fn hand_made_ssh_signature_in_git_namespace_is_accepted() {
    // Control for the test above: the same construction with the `git`
    // namespace is a valid signature (git itself verifies it).
    let (mut sb, dev, _base) = with_dev(|_| vec![]);
    let id = hand_signed_commit(&mut sb, &dev, "git");
    assert!(
        git_verifies(&sb, &dev, &id),
        "hand-made signature does not verify with git"
    );
    let out = sb.push(&["main"]);
    assert_accepted(&out);
    sb.assert_server_ref(MAIN, Some(&id));
}

// ---------------------------------------------------------------------------
// 10-13: ref movements
// ---------------------------------------------------------------------------

#[test]
fn unsigned_commit_via_unprotected_branch_then_main_is_rejected() {
    let (mut sb, _dev, base) = with_dev(|_| vec![]);
    sb.git_ok(["checkout", "-q", "-b", "topic"]);
    let u = sb.commit_as(None, "unsigned on topic");
    let out = sb.push(&["topic"]);
    assert_accepted(&out);
    sb.assert_server_ref("refs/heads/topic", Some(&u));
    // Fast-forward main to a commit the server already has.
    let out = sb.push(&["topic:main"]);
    assert_rejected_with(&out, "unsigned-commit");
    sb.assert_server_ref(MAIN, Some(&base));
}

#[test]
fn force_push_to_main_is_rejected() {
    let (mut sb, dev, base) = with_dev(|_| vec![]);
    let c1 = sb.commit_as(Some(&dev), "to be rewritten");
    assert_accepted(&sb.push(&["main"]));
    sb.assert_server_ref(MAIN, Some(&c1));
    sb.reset_hard(&base);
    let c2 = sb.commit_as(Some(&dev), "rewritten, signed");
    assert_ne!(c1, c2);
    let out = sb.push(&["--force", "main"]);
    assert_rejected_with(&out, "force-push");
    sb.assert_server_ref(MAIN, Some(&c1));
}

#[test]
fn deleting_main_is_rejected() {
    let (sb, _dev, base) = with_dev(|_| vec![]);
    let out = sb.push(&[":main"]);
    assert_rejected_with(&out, "ref-deletion");
    sb.assert_server_ref(MAIN, Some(&base));
}

#[test]
fn push_of_two_refs_with_one_bad_moves_neither() {
    let (mut sb, dev, base) = with_dev(|_| vec![]);
    let good = sb.commit_as(Some(&dev), "good, signed");
    sb.git_ok(["checkout", "-q", "-b", "release/1"]);
    sb.commit_as(None, "bad, unsigned");
    sb.git_ok(["checkout", "-q", "main"]);
    assert_eq!(sb.rev("main"), good);
    let out = sb.push(&["main", "release/1"]);
    assert_rejected_with(&out, "unsigned-commit");
    sb.assert_server_ref(MAIN, Some(&base));
    sb.assert_server_ref("refs/heads/release/1", None);
}

// ---------------------------------------------------------------------------
// 17: unprotected refs
// ---------------------------------------------------------------------------

#[test]
fn unprotected_refs_are_not_checked() {
    let (mut sb, _dev, _base) = with_dev(|_| vec![]);
    sb.git_ok(["checkout", "-q", "-b", "feature"]);
    let u = sb.commit_as(None, "unsigned feature work");
    let out = sb.push(&["feature"]);
    assert_accepted(&out);
    sb.assert_server_ref("refs/heads/feature", Some(&u));

    // A lightweight tag outside refs/tags/v* is fine too.
    sb.git_ok(["tag", "nightly"]);
    let out = sb.push(&["refs/tags/nightly"]);
    assert_accepted(&out);
    sb.assert_server_ref("refs/tags/nightly", Some(&u));
}

// ---------------------------------------------------------------------------
// 20: symbolic refs on the server
// ---------------------------------------------------------------------------

/// The standard sandbox with `refs/heads/alias` a symref to main on the
/// server (git moves main when alias is updated).
fn with_alias() -> (Sandbox, Key, String) {
    let (sb, dev, base) = with_dev(|_| vec![]);
    sb.server_git_ok(["symbolic-ref", "refs/heads/alias", MAIN]);
    assert_eq!(
        sb.server_git_ok(["symbolic-ref", "refs/heads/alias"]),
        MAIN,
        "the alias was not made"
    );
    (sb, dev, base)
}

#[test]
fn unsigned_push_through_symref_alias_is_rejected() {
    let (mut sb, _dev, base) = with_alias();
    sb.commit_as(None, "unsigned, via the alias");
    let out = sb.push(&["main:refs/heads/alias"]);
    assert_rejected_with(&out, "unsigned-commit");
    sb.assert_server_ref(MAIN, Some(&base));
    sb.assert_server_ref("refs/heads/alias", Some(&base));
    assert_eq!(
        sb.server_git_ok(["symbolic-ref", "refs/heads/alias"]),
        MAIN,
        "the alias is no longer a symref to main"
    );
}

#[test]
fn signed_push_through_symref_alias_is_accepted() {
    let (mut sb, dev, _base) = with_alias();
    sb.commit_as(Some(&dev), "signed, via the alias");
    let out = sb.push(&["main:refs/heads/alias"]);
    assert_accepted(&out);
}

// ---------------------------------------------------------------------------
// 21: core.ignorecase
// ---------------------------------------------------------------------------

#[test]
fn unsigned_push_to_other_case_is_rejected_when_server_ignores_case() {
    let (mut sb, _dev, base) = with_dev(|_| vec![]);
    sb.server_git_ok(["config", "core.ignorecase", "true"]);
    sb.commit_as(None, "unsigned, to MAIN");
    let out = sb.push(&["main:refs/heads/MAIN"]);
    assert_rejected_with(&out, "unsigned-commit");
    sb.assert_server_ref(MAIN, Some(&base));
    sb.assert_server_ref("refs/heads/MAIN", None);
}

#[test]
fn unsigned_push_to_other_case_is_accepted_when_case_matters() {
    // Control for the test above: on a case-sensitive server, MAIN is a
    // distinct ref that no rule matches.
    let (mut sb, _dev, base) = with_dev(|_| vec![]);
    let ic = sb
        .git_in(&sb.server, ["config", "--get", "core.ignorecase"])
        .output()
        .unwrap();
    assert!(
        !ic.status.success() || String::from_utf8_lossy(&ic.stdout).trim() == "false",
        "the server repository has core.ignorecase set: {}",
        String::from_utf8_lossy(&ic.stdout)
    );
    let u = sb.commit_as(None, "unsigned, to MAIN");
    let out = sb.push(&["main:refs/heads/MAIN"]);
    assert_accepted(&out);
    sb.assert_server_ref("refs/heads/MAIN", Some(&u));
    sb.assert_server_ref(MAIN, Some(&base));
}

// ---------------------------------------------------------------------------
// 22: SHA-256 repositories
// ---------------------------------------------------------------------------

#[test]
fn sha256_repository_is_verified_end_to_end() {
    let mut sb = Sandbox::new_with_init(&["--object-format=sha256"]);
    assert_eq!(
        sb.server_git_ok(["rev-parse", "--show-object-format"]),
        "sha256"
    );
    assert_eq!(
        sb.git_ok(["rev-parse", "--show-object-format"]),
        "sha256",
        "the work clone did not take the server's object format"
    );
    let dev = sb.ssh_key("dev");
    sb.install(&standard_policy(&[simple_person(
        "dev",
        &["developer"],
        &dev,
    )]));
    // Every push kept as a pack: the quarantine scan reads SHA-256 indexes.
    sb.server_git_ok(["config", "receive.unpackLimit", "1"]);
    let id = sb.commit_as(Some(&dev), "signed, in a SHA-256 repository");
    assert_eq!(id.len(), 64, "not a SHA-256 id: {id}");
    assert!(
        sb.cat_commit(&id).contains("\ngpgsig-sha256 "),
        "git wrote no gpgsig-sha256 header"
    );
    let out = sb.push(&["main"]);
    assert_accepted(&out);
    sb.assert_server_ref(MAIN, Some(&id));

    // Unsigned, and signed by a stranger: refused with the usual codes.
    let bad = sb.commit_as(None, "unsigned, in a SHA-256 repository");
    assert_rejected_with(&sb.push(&["main"]), "unsigned-commit");
    let stranger = sb.ssh_key("stranger");
    sb.reset_hard(&id);
    sb.commit_as(Some(&stranger), "signed by a stranger");
    assert_rejected_with(&sb.push(&["main"]), "unknown-signer");
    sb.assert_server_ref(MAIN, Some(&id));
    assert_ne!(bad, id);

    // A signature moved into the SHA-1 header does not count here.
    sb.reset_hard(&id);
    let good = sb.commit_as(Some(&dev), "signed again");
    let raw = sb
        .cat_commit(&good)
        .replace("\ngpgsig-sha256 ", "\ngpgsig ");
    let moved = sb.write_commit(&raw);
    sb.reset_hard(&moved);
    assert_rejected_with(&sb.push(&["main"]), "unsupported-object-format");
    sb.assert_server_ref(MAIN, Some(&id));
}

// ---------------------------------------------------------------------------
// 23: non-UTF-8 and hostile text
// ---------------------------------------------------------------------------

#[test]
fn signed_commit_with_latin1_message_is_accepted() {
    let (mut sb, dev, _base) = with_dev(|_| vec![]);
    let id = sb.commit_message_bytes(
        Some(&dev),
        b"caf\xe9 cr\xe8me\n\nd\xe9j\xe0 vu \xa9\n",
        &["i18n.commitEncoding=latin1"],
    );
    let raw = sb.git_ok(["cat-file", "-p", &id]);
    assert!(
        raw.contains("\nencoding latin1\n"),
        "no encoding header:\n{raw}"
    );
    let out = sb.push(&["main"]);
    assert_accepted(&out);
    sb.assert_server_ref(MAIN, Some(&id));
}

#[test]
fn hostile_subject_is_escaped_in_rejection() {
    let (mut sb, _dev, base) = with_dev(|_| vec![]);
    sb.commit_as(None, "innocent \x1b[31mred\x1b[0m \u{202E}txt.exe");
    let out = sb.push(&["main"]);
    assert_rejected_with(&out, "unsigned-commit");
    sb.assert_server_ref(MAIN, Some(&base));
    assert!(
        out.stderr.contains("\\u{1b}"),
        "ESC is not shown escaped as \\u{{1b}}\n{out}"
    );
    assert!(
        out.stderr.to_lowercase().contains("\\u{202e}"),
        "U+202E is not shown escaped as \\u{{202e}}\n{out}"
    );
    assert!(
        !out.stderr.contains('\x1b'),
        "a raw ESC byte reached the pusher's terminal\n{out:?}"
    );
    assert!(
        !out.stderr.contains('\u{202E}'),
        "a raw U+202E reached the pusher's terminal\n{out:?}"
    );
}

// ---------------------------------------------------------------------------
// 24: other SSH key types
// ---------------------------------------------------------------------------

/// A developer with a key of `type_args` signs; the push is accepted.
fn key_type_is_accepted(type_args: &[&str]) {
    let mut k = None;
    let (mut sb, _dev, _base) = with_dev(|sb| {
        let key = sb.ssh_key_typed("other", type_args);
        let p = simple_person("other", &["developer"], &key);
        k = Some(key);
        vec![p]
    });
    let k = k.unwrap();
    let c = sb.commit_as(Some(&k), "signed with another key type");
    let out = sb.push(&["main"]);
    assert_accepted(&out);
    sb.assert_server_ref(MAIN, Some(&c));
}

#[test]
fn ecdsa_p256_signed_push_is_accepted() {
    key_type_is_accepted(&["-t", "ecdsa", "-b", "256"]);
}

#[test]
fn rsa_3072_signed_push_is_accepted() {
    key_type_is_accepted(&["-t", "rsa", "-b", "3072"]);
}

#[test]
fn rsa_1024_key_in_policy_is_invalid() {
    let (mut sb, dev, base) = with_dev(|_| vec![]);
    let weak = sb.ssh_key_typed("weak", &["-t", "rsa", "-b", "1024"]);
    let text = standard_policy(&[
        simple_person("dev", &["developer"], &dev),
        simple_person("weak", &["developer"], &weak),
    ]);
    sb.write_policy(&text);
    let check = sb.policy_check(&sb.policy);
    assert_eq!(
        check.code,
        Some(1),
        "policy check should refuse a 1024-bit RSA key\n{check}"
    );
    assert!(
        has_location(&check.all(), "countersign.toml", line_of(&text, "ssh-rsa")),
        "policy check should point at the weak key's line\n{check}"
    );
    // Any push is refused while the policy is invalid, even a good one.
    sb.commit_as(Some(&dev), "signed by dev, but the policy holds a weak key");
    let out = sb.push(&["main"]);
    assert_rejected_with(&out, "policy-invalid");
    sb.assert_server_ref(MAIN, Some(&base));
}

// ---------------------------------------------------------------------------
// 26: an annotated tag object pushed to a branch
// ---------------------------------------------------------------------------

#[test]
fn tag_object_pushed_to_branch_is_rejected() {
    let (mut sb, dev, base) = with_dev(|_| vec![]);
    // The commit under the tag is signed and a fast-forward: the only thing
    // wrong is that the branch would hold a tag object.
    sb.commit_as(Some(&dev), "signed, under a tag");
    let t = sb.tag_as(None, "t1", "x", false);
    assert_eq!(sb.git_ok(["cat-file", "-t", &t]), "tag");
    let out = sb.push(&[&format!("{t}:{MAIN}")]);
    assert!(
        out.stderr.contains("countersign"),
        "git refused the push client-side, the hook never ran\n{out}"
    );
    assert_rejected_with(&out, "not-a-commit");
    sb.assert_server_ref(MAIN, Some(&base));
    assert_eq!(
        sb.server_git_ok(["cat-file", "-t", MAIN]),
        "commit",
        "main holds something other than a commit"
    );
}

// ---------------------------------------------------------------------------
// 27: baseline
// ---------------------------------------------------------------------------

/// Three unsigned commits, then the policy (with `baseline` in the branch
/// rule when given; `None` means the id of the third unsigned commit),
/// then a signed commit on top, pushed to create main.
fn push_over_unsigned_history(baseline: Option<Option<&str>>) -> (Sandbox, Out, String) {
    let mut sb = Sandbox::new();
    let dev = sb.ssh_key("dev");
    sb.commit_as(None, "old 1");
    sb.commit_as(None, "old 2");
    let u3 = sb.commit_as(None, "old 3");
    let mut text = standard_policy(&[simple_person("dev", &["developer"], &dev)]);
    if let Some(b) = baseline {
        let b = b.unwrap_or(&u3);
        text = text.replacen(
            "delete = false\n",
            &format!("delete = false\nbaseline = \"{b}\"\n"),
            1,
        );
        assert!(text.contains("baseline ="), "{text}");
    }
    sb.install(&text);
    let tip = sb.commit_as(Some(&dev), "first signed commit");
    let out = sb.push(&["main"]);
    (sb, out, tip)
}

#[test]
fn baseline_grandfathers_unsigned_history() {
    let (sb, out, tip) = push_over_unsigned_history(Some(None));
    assert_accepted(&out);
    sb.assert_server_ref(MAIN, Some(&tip));
}

#[test]
fn without_baseline_unsigned_history_is_rejected() {
    let (sb, out, _tip) = push_over_unsigned_history(None);
    assert_rejected_with(&out, "unsigned-commit");
    sb.assert_server_ref(MAIN, None);
}

#[test]
fn baseline_not_in_repository_is_rejected() {
    let (sb, out, _tip) =
        push_over_unsigned_history(Some(Some("0123456789abcdef0123456789abcdef01234567")));
    assert_rejected_with(&out, "baseline-missing");
    sb.assert_server_ref(MAIN, None);
}

// ---------------------------------------------------------------------------
// 28: a ref several rules match
// ---------------------------------------------------------------------------

#[test]
fn ref_matching_two_rules_must_satisfy_both() {
    let mut sb = Sandbox::new();
    let dev = sb.ssh_key("dev");
    let both = sb.ssh_key("both");
    sb.install(&format!(
        r#"[repository]
id = "test/e2e"

[roles]
developer = "writes code"
maintainer = "merges and ships"

{}
{}
[[rule]]
name = "all branches"
refs = ["refs/heads/**"]
commit-signers = ["maintainer"]

[[rule]]
name = "main"
refs = ["refs/heads/main"]
commit-signers = ["developer"]
"#,
        simple_person("dev", &["developer"], &dev),
        simple_person("both", &["developer", "maintainer"], &both),
    ));
    let c = sb.commit_as(Some(&both), "signed by a developer and maintainer");
    let out = sb.push(&["main"]);
    assert_accepted(&out);
    sb.assert_server_ref(MAIN, Some(&c));

    sb.commit_as(Some(&dev), "signed by a developer only");
    let out = sb.push(&["main"]);
    assert_rejected_with(&out, "signer-lacks-role");
    assert!(
        out.stderr.contains("all branches"),
        "the finding should name the rule that failed\n{out}"
    );
    sb.assert_server_ref(MAIN, Some(&c));
}

// ---------------------------------------------------------------------------
// 29: two gpgsig headers
// ---------------------------------------------------------------------------

#[test]
fn commit_with_two_gpgsig_headers_is_rejected() {
    let (mut sb, dev, base) = with_dev(|_| vec![]);
    let a = sb.commit_as(Some(&dev), "signed, then its signature doubled");
    let doubled = duplicate_gpgsig(&sb.cat_commit(&a));
    assert_eq!(doubled.matches("\ngpgsig ").count(), 2, "{doubled}");
    let b = sb.write_commit(&doubled);
    assert_ne!(a, b);
    sb.reset_hard(&b);
    let out = sb.push(&["main"]);
    assert_rejected_with(&out, "malformed-object");
    sb.assert_server_ref(MAIN, Some(&base));
}

// ---------------------------------------------------------------------------
// 30: offline verify of a range that does not resolve
// ---------------------------------------------------------------------------

#[test]
fn offline_verify_of_unresolvable_range_is_object_missing() {
    let mut sb = Sandbox::new();
    let dev = sb.ssh_key("dev");
    sb.write_policy(&standard_policy(&[simple_person(
        "dev",
        &["developer"],
        &dev,
    )]));
    sb.commit_as(Some(&dev), "one");
    let policy = sb.policy.to_str().unwrap().to_string();
    let work = sb.work.clone();
    for range in ["no-such-rev..main", "main..no-such-rev", "no-such-rev"] {
        let out = sb.countersign(
            &work,
            [
                "verify",
                range,
                "--ref",
                MAIN,
                "--policy",
                policy.as_str(),
                "--format",
                "json",
            ],
        );
        assert_eq!(out.code, Some(1), "verify {range} should exit 1\n{out}");
        let json = squash(&out.stdout);
        assert!(json.contains(r#""verdict":"rejected""#), "{range}\n{out}");
        assert!(
            json.contains(r#""code":"object-missing""#),
            "{range}\n{out}"
        );
    }
}

// ---------------------------------------------------------------------------
// key retirement
// ---------------------------------------------------------------------------

/// A commit signed by `key` with the given committer date.
fn commit_dated(sb: &Sandbox, key: &Key, msg: &str, date: &str) -> String {
    let file = sb.work.join(format!("{msg}.txt"));
    fs::write(&file, msg).unwrap();
    sb.git_ok(["add", "."]);
    let mut args = key.sign_config();
    args.extend(["commit", "-q", "-S", "-m", msg].map(String::from));
    let mut c = sb.git(&args);
    c.env("GIT_COMMITTER_DATE", date)
        .env("GIT_AUTHOR_DATE", date);
    let out = run(c, None);
    assert!(out.success, "{out}");
    sb.rev("HEAD")
}

#[test]
fn retired_key_cannot_push_but_its_history_stays_valid() {
    let mut sb = Sandbox::new();
    let old = sb.ssh_key("old");
    let entry = old.entry_with("retired = 2021-01-01");
    sb.install(&standard_policy(&[person(
        "old",
        &["developer"],
        &old,
        &entry,
        "",
    )]));
    let policy = sb.policy.to_str().unwrap().to_string();
    // Signed before the retirement: offline verification accepts it...
    let early = commit_dated(&sb, &old, "early", "2020-06-01T12:00:00Z");
    let out = sb.countersign(
        &sb.work,
        [
            "verify",
            early.as_str(),
            "--ref",
            MAIN,
            "--policy",
            policy.as_str(),
        ],
    );
    assert!(out.success, "{out}");
    // ...but the key may no longer push anything, old or new.
    let out = sb.push(&["main"]);
    assert_rejected_with(&out, "key-retired");
    sb.assert_server_ref(MAIN, None);
    // Signed after the retirement: rejected offline too.
    let late = commit_dated(&sb, &old, "late", "2022-06-01T12:00:00Z");
    let range = format!("{early}..{late}");
    let out = sb.countersign(
        &sb.work,
        [
            "verify",
            range.as_str(),
            "--ref",
            MAIN,
            "--policy",
            policy.as_str(),
        ],
    );
    assert_eq!(out.code, Some(1), "{out}");
    assert!(out.all().contains("error[key-retired]"), "{out}");
}
