//! End-to-end tests: real `git push` into a bare repository that has
//! countersign installed (by install.sh) as its pre-receive hook.
//!
//! Each rejection test asserts the specific `error[<code>]` and that the
//! server's refs did not move; each acceptance test asserts that the push
//! succeeded, that countersign said `countersign: accepted`, and that the
//! server's ref moved to the pushed value.

mod util;

use std::fs;
use util::*;

const MAIN: &str = "refs/heads/main";
const TAG: &str = "refs/tags/v1.0";

/// Commit signed by `dev` and push it to create `main` on the server.
/// Returns the commit id.
#[track_caller]
fn create_main(sb: &mut Sandbox, dev: &Key) -> String {
    let id = sb.commit_as(Some(dev), "initial");
    let out = sb.push(&["main"]);
    assert_accepted(&out);
    sb.assert_server_ref(MAIN, Some(&id));
    id
}

/// A sandbox with the standard policy and one SSH developer `dev`, plus
/// the extra people given, installed; `main` created by `dev`.
/// Returns (sandbox, dev, id of main).
fn with_dev(extra: impl FnOnce(&mut Sandbox) -> Vec<String>) -> (Sandbox, Key, String) {
    let mut sb = Sandbox::new();
    let dev = sb.ssh_key("dev");
    let mut people = vec![simple_person("dev", &["developer"], &dev)];
    people.extend(extra(&mut sb));
    sb.install(&standard_policy(&people));
    let base = create_main(&mut sb, &dev);
    (sb, dev, base)
}

/// Is there `<file>:<line>:<digit>` in `text`?
fn has_location(text: &str, file: &str, line: usize) -> bool {
    let needle = format!("{file}:{line}:");
    text.match_indices(&needle).any(|(i, _)| {
        text[i + needle.len()..]
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_digit())
    })
}

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
// 14, 15: the policy file
// ---------------------------------------------------------------------------

#[test]
fn missing_policy_rejects_push() {
    let (mut sb, dev, base) = with_dev(|_| vec![]);
    fs::remove_file(&sb.policy).unwrap();
    sb.commit_as(Some(&dev), "signed, but no policy");
    let out = sb.push(&["main"]);
    assert_rejected_with(&out, "policy-missing");
    sb.assert_server_ref(MAIN, Some(&base));
}

/// Replace the installed policy with the text `make` returns (given the
/// standard policy for `dev`): pushes are rejected with `policy-invalid`,
/// and `policy check` exits 1 naming the line `make` returns.
fn broken_policy_is_rejected(make: impl FnOnce(String) -> (String, usize)) {
    let (mut sb, dev, base) = with_dev(|_| vec![]);
    let (text, line) = make(standard_policy(&[simple_person(
        "dev",
        &["developer"],
        &dev,
    )]));
    sb.write_policy(&text);
    sb.commit_as(Some(&dev), "signed, but the policy is broken");
    let out = sb.push(&["main"]);
    assert_rejected_with(&out, "policy-invalid");
    sb.assert_server_ref(MAIN, Some(&base));

    let check = sb.policy_check(&sb.policy);
    assert_eq!(
        check.code,
        Some(1),
        "policy check should exit 1 on:\n{text}\n{check}"
    );
    assert!(
        has_location(&check.all(), "countersign.toml", line),
        "policy check should point at countersign.toml:{line}:<col>\n{check}"
    );
}

/// The 1-based line of the first line of `text` containing `needle`.
fn line_of(text: &str, needle: &str) -> usize {
    text.lines()
        .position(|l| l.contains(needle))
        .expect("needle not in text")
        + 1
}

#[test]
fn policy_with_bad_toml_is_rejected() {
    broken_policy_is_rejected(|_| {
        (
            "[repository]\nid = \"test/e2e\"\n[roles\ndeveloper = \"x\"\n".into(),
            3,
        )
    });
}

#[test]
fn policy_with_unknown_field_is_rejected() {
    broken_policy_is_rejected(|good| {
        let text = good.replacen(
            "force-push = false\n",
            "force-push = false\nforce-psuh = true\n",
            1,
        );
        let line = line_of(&text, "force-psuh");
        (text, line)
    });
}

#[test]
fn policy_with_undeclared_role_is_rejected() {
    broken_policy_is_rejected(|good| {
        let text = good.replacen(
            "commit-signers = [\"developer\"]",
            "commit-signers = [\"developper\"]",
            1,
        );
        let line = line_of(&text, "developper");
        (text, line)
    });
}

#[test]
fn example_policy_passes_policy_check() {
    let sb = Sandbox::new();
    let example = source_dir().join("config.example.toml");
    let out = sb.policy_check(&example);
    assert_eq!(
        out.code,
        Some(0),
        "config.example.toml should be a valid policy\n{out}"
    );
}

// ---------------------------------------------------------------------------
// 16: protected tags
// ---------------------------------------------------------------------------

/// The standard sandbox plus a release manager `rm`.
fn with_release_manager() -> (Sandbox, Key, Key) {
    let mut rm = None;
    let (sb, dev, _base) = with_dev(|sb| {
        let k = sb.ssh_key("rm");
        let p = simple_person("rm", &["release-manager"], &k);
        rm = Some(k);
        vec![p]
    });
    (sb, dev, rm.unwrap())
}

#[test]
fn lightweight_release_tag_is_rejected() {
    let (sb, _dev, _rm) = with_release_manager();
    sb.git_ok(["tag", "v1.0"]);
    let out = sb.push(&[TAG]);
    assert_rejected_with(&out, "tag-not-annotated");
    sb.assert_server_ref(TAG, None);
}

#[test]
fn unsigned_annotated_release_tag_is_rejected() {
    let (mut sb, _dev, _rm) = with_release_manager();
    sb.tag_as(None, "v1.0", "release 1.0", false);
    let out = sb.push(&[TAG]);
    assert_rejected_with(&out, "unsigned-tag");
    sb.assert_server_ref(TAG, None);
}

#[test]
fn release_tag_signed_by_developer_is_rejected() {
    let (mut sb, dev, _rm) = with_release_manager();
    sb.tag_as(Some(&dev), "v1.0", "release 1.0", false);
    let out = sb.push(&[TAG]);
    assert_rejected_with(&out, "signer-lacks-role");
    sb.assert_server_ref(TAG, None);
}

/// A release tag message bound to the sandbox's repository id.
const BOUND_RELEASE: &str = "release 1.0\n\nCountersign-Repository: test/e2e";

/// A tag signed by the release manager for another repository (or for no
/// repository at all) is refused: it would bring that repository's history
/// in, and, since protected tags never move, the real tag could never be
/// created.
#[test]
fn signed_tag_for_another_repository_is_refused() {
    let (mut sb, _dev, rm) = with_release_manager();
    sb.tag_as(Some(&rm), "v1.0", "release 1.0", false);
    let out = sb.push(&[TAG]);
    assert_rejected_with(&out, "tag-not-bound");
    assert!(
        out.stderr.contains("Countersign-Repository: test/e2e"),
        "{out}"
    );
    sb.assert_server_ref(TAG, None);

    sb.tag_as(
        Some(&rm),
        "v1.0",
        "SDK 1.0\n\nCountersign-Repository: acme/public-sdk",
        true,
    );
    let out = sb.push(&[TAG]);
    assert_rejected_with(&out, "tag-wrong-repository");
    sb.assert_server_ref(TAG, None);

    // The trailer must be in the signed message's last paragraph, once.
    sb.tag_as(
        Some(&rm),
        "v1.0",
        "release\n\nCountersign-Repository: test/e2e\nCountersign-Repository: acme/public-sdk",
        true,
    );
    assert_rejected_with(&sb.push(&[TAG]), "tag-wrong-repository");

    let t = sb.tag_as(Some(&rm), "v1.0", BOUND_RELEASE, true);
    assert_accepted(&sb.push(&[TAG]));
    sb.assert_server_ref(TAG, Some(&t));
}

#[test]
fn release_tag_signed_by_release_manager_is_accepted_then_frozen() {
    let (mut sb, dev, rm) = with_release_manager();
    let t1 = sb.tag_as(Some(&rm), "v1.0", BOUND_RELEASE, false);
    let out = sb.push(&[TAG]);
    assert_accepted(&out);
    sb.assert_server_ref(TAG, Some(&t1));

    // Moving it, even with a valid release-manager signature, is refused.
    let c = sb.commit_as(Some(&dev), "after the release");
    assert_accepted(&sb.push(&["main"]));
    sb.assert_server_ref(MAIN, Some(&c));
    let t2 = sb.tag_as(
        Some(&rm),
        "v1.0",
        "release 1.0, moved\n\nCountersign-Repository: test/e2e",
        true,
    );
    assert_ne!(t1, t2);
    let out = sb.push(&["--force", TAG]);
    assert_rejected_with(&out, "tag-moved");
    sb.assert_server_ref(TAG, Some(&t1));

    // Deleting it is refused too.
    let out = sb.push(&[":refs/tags/v1.0"]);
    assert_rejected_with(&out, "ref-deletion");
    sb.assert_server_ref(TAG, Some(&t1));
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
// 18: offline verification
// ---------------------------------------------------------------------------

#[test]
fn offline_verify_of_a_range() {
    let mut sb = Sandbox::new();
    let dev = sb.ssh_key("dev");
    sb.write_policy(&standard_policy(&[simple_person(
        "dev",
        &["developer"],
        &dev,
    )]));
    sb.commit_as(Some(&dev), "one");
    sb.commit_as(Some(&dev), "two");
    let policy = sb.policy.to_str().unwrap().to_string();
    let work = sb.work.clone();
    let verify = |sb: &Sandbox, json: bool| {
        let mut args = vec![
            "verify",
            "main~1..main",
            "--ref",
            MAIN,
            "--policy",
            policy.as_str(),
        ];
        if json {
            args.extend(["--format", "json"]);
        }
        sb.countersign(&work, args)
    };

    let out = verify(&sb, false);
    assert_eq!(out.code, Some(0), "signed history should verify\n{out}");
    let out = verify(&sb, true);
    assert_eq!(out.code, Some(0), "signed history should verify\n{out}");
    assert!(
        squash(&out.stdout).contains(r#""verdict":"accepted""#),
        "{out}"
    );

    sb.commit_as(None, "three, unsigned");
    let out = verify(&sb, false);
    assert_eq!(
        out.code,
        Some(1),
        "unsigned commit should be rejected\n{out}"
    );
    let out = verify(&sb, true);
    assert_eq!(
        out.code,
        Some(1),
        "unsigned commit should be rejected\n{out}"
    );
    let json = squash(&out.stdout);
    assert!(json.contains(r#""verdict":"rejected""#), "{out}");
    assert!(json.contains(r#""findings":["#), "{out}");
    assert!(json.contains(r#""code":"unsigned-commit""#), "{out}");
}

// ---------------------------------------------------------------------------
// 19: starter policy
// ---------------------------------------------------------------------------

#[test]
fn starter_policy_is_valid_and_rejects_pushes_to_main() {
    let mut sb = Sandbox::new();
    sb.install_starter();
    let starter = sb.server.join("countersign.toml");
    assert!(
        starter.is_file(),
        "install.sh without --policy should write {}",
        starter.display()
    );
    let check = sb.policy_check(&starter);
    assert_eq!(
        check.code,
        Some(0),
        "the starter policy should be valid\n{check}"
    );

    let someone = sb.ssh_key("someone");
    sb.commit_as(Some(&someone), "signed by someone the policy does not know");
    let out = sb.push(&["main"]);
    assert_rejected_with(&out, "unknown-signer");
    sb.assert_server_ref(MAIN, None);
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
// 25: install.sh and a foreign pre-receive hook
// ---------------------------------------------------------------------------

/// Where the foreign hook leaves its traces.
struct Foreign {
    hook_text: String,
    ran: std::path::PathBuf,
    stdin: std::path::PathBuf,
}

/// Write a foreign pre-receive hook into the server that records that it
/// ran and what it read, then exits `code`.
fn foreign_hook(sb: &Sandbox, code: i32) -> Foreign {
    use std::os::unix::fs::PermissionsExt;
    let ran = sb.root().join("foreign-ran");
    let stdin = sb.root().join("foreign-stdin");
    let hook_text = format!(
        "#!/bin/sh\n# a foreign hook\ncat > '{}'\necho ran > '{}'\nexit {code}\n",
        stdin.display(),
        ran.display()
    );
    let hooks = sb.server.join("hooks");
    fs::create_dir_all(&hooks).unwrap();
    let path = hooks.join("pre-receive");
    fs::write(&path, &hook_text).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
    Foreign {
        hook_text,
        ran,
        stdin,
    }
}

#[test]
fn install_refuses_to_replace_a_foreign_hook() {
    let mut sb = Sandbox::new();
    let dev = sb.ssh_key("dev");
    let foreign = foreign_hook(&sb, 0);
    sb.write_policy(&standard_policy(&[simple_person(
        "dev",
        &["developer"],
        &dev,
    )]));
    let out = sb.run_install_with(true, &[]);
    assert!(!out.success, "install.sh replaced a foreign hook?\n{out}");
    assert!(
        out.stderr.contains("--chain"),
        "the refusal should mention --chain\n{out}"
    );
    let hooks = sb.server.join("hooks");
    assert_eq!(
        fs::read_to_string(hooks.join("pre-receive")).unwrap(),
        foreign.hook_text,
        "the foreign hook was changed"
    );
    assert!(
        !hooks.join("pre-receive.chained").exists(),
        "pre-receive.chained was made without --chain"
    );
}

/// Sandbox with a foreign hook exiting `code`, installed with --chain.
fn chained(code: i32) -> (Sandbox, Key, Foreign) {
    let mut sb = Sandbox::new();
    let dev = sb.ssh_key("dev");
    let foreign = foreign_hook(&sb, code);
    sb.write_policy(&standard_policy(&[simple_person(
        "dev",
        &["developer"],
        &dev,
    )]));
    let out = sb.run_install_with(true, &["--chain"]);
    assert!(out.success, "install.sh --chain failed\n{out}");
    let hooks = sb.server.join("hooks");
    assert_eq!(
        fs::read_to_string(hooks.join("pre-receive.chained")).unwrap(),
        foreign.hook_text,
        "the foreign hook was not kept as pre-receive.chained"
    );
    assert!(
        fs::read_to_string(hooks.join("pre-receive"))
            .unwrap()
            .contains("countersign pre-receive shim"),
        "pre-receive is not countersign's shim"
    );
    (sb, dev, foreign)
}

#[test]
fn chained_hook_runs_after_accepted_push_only() {
    let (mut sb, dev, foreign) = chained(0);
    let c = sb.commit_as(Some(&dev), "signed");
    let out = sb.push(&["main"]);
    assert_accepted(&out);
    sb.assert_server_ref(MAIN, Some(&c));
    assert!(
        foreign.ran.exists(),
        "the chained hook did not run on an accepted push"
    );
    let input = fs::read_to_string(&foreign.stdin).unwrap();
    let expected = format!("{} {c} {MAIN}", "0".repeat(40));
    assert!(
        input.lines().any(|l| l == expected),
        "the chained hook did not get `{expected}` on stdin; it got:\n{input}"
    );

    fs::remove_file(&foreign.ran).unwrap();
    fs::remove_file(&foreign.stdin).unwrap();
    sb.commit_as(None, "unsigned");
    let out = sb.push(&["main"]);
    assert_rejected_with(&out, "unsigned-commit");
    sb.assert_server_ref(MAIN, Some(&c));
    assert!(
        !foreign.ran.exists() && !foreign.stdin.exists(),
        "the chained hook ran on a rejected push"
    );
}

#[test]
fn failing_chained_hook_rejects_accepted_push() {
    let (mut sb, dev, foreign) = chained(1);
    sb.commit_as(Some(&dev), "signed, but the chained hook says no");
    let out = sb.push(&["main"]);
    assert!(
        !out.success,
        "the push succeeded although the chained hook exited 1\n{out}"
    );
    assert!(
        out.stderr.contains("countersign: accepted"),
        "countersign should have accepted before the chained hook ran\n{out}"
    );
    assert!(foreign.ran.exists(), "the chained hook did not run");
    sb.assert_server_ref(MAIN, None);
}

#[test]
fn reinstall_over_countersign_is_idempotent() {
    let mut sb = Sandbox::new();
    let dev = sb.ssh_key("dev");
    sb.install(&standard_policy(&[simple_person(
        "dev",
        &["developer"],
        &dev,
    )]));
    let hooks = sb.server.join("hooks");
    let shim = fs::read_to_string(hooks.join("pre-receive")).unwrap();
    for extra in [&[][..], &["--chain"][..]] {
        let out = sb.run_install_with(true, extra);
        assert!(out.success, "re-running install.sh {extra:?} failed\n{out}");
        assert_eq!(
            fs::read_to_string(hooks.join("pre-receive")).unwrap(),
            shim,
            "re-running install.sh {extra:?} changed the shim"
        );
        assert!(
            !hooks.join("pre-receive.chained").exists(),
            "re-running install.sh {extra:?} chained countersign's own shim"
        );
    }
    create_main(&mut sb, &dev);
    sb.commit_as(None, "unsigned");
    assert_rejected_with(&sb.push(&["main"]), "unsigned-commit");
}

#[test]
fn reinstall_with_chain_keeps_the_chained_hook() {
    let (mut sb, dev, foreign) = chained(0);
    let out = sb.run_install_with(true, &["--chain"]);
    assert!(out.success, "re-running install.sh --chain failed\n{out}");
    assert_eq!(
        fs::read_to_string(sb.server.join("hooks/pre-receive.chained")).unwrap(),
        foreign.hook_text,
        "re-running install.sh changed the chained hook"
    );
    create_main(&mut sb, &dev);
    assert!(foreign.ran.exists(), "the chained hook no longer runs");
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

// ---- approvals and merges ----
//
// `[rule.merge]` on main: every change lands as a two-parent merge signed
// by a maintainer, carrying `Countersign-Approval:` trailers from distinct
// people in the required roles. Each person works in their own clone of
// the server, with their signing key in that clone's `.git/config` (as
// countersign reads it through libgit2). Approvals travel as git notes
// (`countersign approve --push origin`), or are copied by hand into
// hand-made merges to probe the hook directly.

const APPROVALS_2R_1S: &str =
    r#"approvals = [ { role = "reviewer", count = 2 }, { role = "security", count = 1 } ]"#;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Ssh,
    Pgp,
}

/// One person of a team: id, roles, and their keys (the first key's name
/// is the id, a second one `<id>2`, ...).
struct Member {
    id: &'static str,
    roles: &'static [&'static str],
    keys: Vec<Kind>,
    /// Appended to the person's table, e.g. `revoked = 2020-01-01`.
    extra: &'static str,
}

fn member(id: &'static str, roles: &'static [&'static str], kind: Kind) -> Member {
    Member {
        id,
        roles,
        keys: vec![kind],
        extra: "",
    }
}

/// The usual team: alice writes code, bob and carol review (and may write
/// code), sam is the security reviewer, mia merges, dave only writes code.
fn usual_members(bob: Kind, carol: Kind, sam: Kind, mia: Kind) -> Vec<Member> {
    vec![
        member("alice", &["developer"], Kind::Ssh),
        member("bob", &["developer", "reviewer"], bob),
        member("carol", &["developer", "reviewer"], carol),
        member("sam", &["security"], sam),
        member("mia", &["maintainer"], mia),
        member("dave", &["developer"], Kind::Ssh),
    ]
}

/// A sandbox whose main is protected by a rule with `[rule.merge]`, a team
/// of people with keys, and one clone per key.
struct Team {
    sb: Sandbox,
    /// key name -> (person id, key)
    keys: std::collections::BTreeMap<String, (String, Key)>,
    /// The grandfathered first commit of main.
    base: String,
}

impl Team {
    /// Make the keys, write the policy (`merge` is the body of
    /// `[rule.merge]` after `signers`), make the first commit, set it as
    /// the rule's baseline, install, and push main (creation).
    fn new(members: &[Member], merge: &str) -> Team {
        Team::new_in(members, merge, &[])
    }

    /// As [`Team::new`], with extra `git init` arguments for the server
    /// (e.g. `--object-format=sha256`).
    fn new_in(members: &[Member], merge: &str, init_args: &[&str]) -> Team {
        let mut sb = if init_args.is_empty() {
            Sandbox::new()
        } else {
            Sandbox::new_with_init(init_args)
        };
        let mut keys = std::collections::BTreeMap::new();
        let mut people = Vec::new();
        for m in members {
            let mut mine = Vec::new();
            for (i, kind) in m.keys.iter().enumerate() {
                let name = if i == 0 {
                    m.id.to_string()
                } else {
                    format!("{}{}", m.id, i + 1)
                };
                let key = match kind {
                    Kind::Ssh => sb.ssh_key(&name),
                    Kind::Pgp => sb.gpg_key(&name),
                };
                keys.insert(name, (m.id.to_string(), key.clone()));
                mine.push(key);
            }
            // All of a person's keys are of one field kind in these tests,
            // or split across `ssh` and `openpgp`.
            let ssh: Vec<String> = mine
                .iter()
                .filter(|k| matches!(k, Key::Ssh { .. }))
                .map(Key::entry)
                .collect();
            let pgp: Vec<String> = mine
                .iter()
                .filter(|k| matches!(k, Key::OpenPgp { .. }))
                .map(Key::entry)
                .collect();
            let roles: Vec<String> = m.roles.iter().map(|r| format!("\"{r}\"")).collect();
            people.push(format!(
                "[people.{id}]\nname = \"{id} Example\"\nroles = [{roles}]\nssh = [{ssh}]\nopenpgp = [{pgp}]\n{extra}\n",
                id = m.id,
                extra = m.extra,
                roles = roles.join(", "),
                ssh = ssh.join(", "),
                pgp = pgp.join(", "),
            ));
        }
        let first = keys.values().next().unwrap().1.clone();
        let base = sb.commit_as(Some(&first), "initial");
        sb.install(&merge_rule_policy(
            "test/e2e",
            &people.join("\n"),
            &base,
            merge,
        ));
        let out = sb.push(&["main"]);
        assert_accepted(&out);
        sb.assert_server_ref(MAIN, Some(&base));
        Team { sb, keys, base }
    }

    /// The usual team and rule: 2 reviewers and 1 security approval.
    fn usual(bob: Kind, carol: Kind, sam: Kind, mia: Kind) -> Team {
        Team::new(&usual_members(bob, carol, sam, mia), APPROVALS_2R_1S)
    }

    fn key(&self, name: &str) -> &Key {
        &self.keys[name].1
    }

    /// The clone of the key `name` (made on first use), fetched.
    fn clone_of(&self, name: &str) -> std::path::PathBuf {
        let dir = self.sb.root().join(format!("c-{name}"));
        if !dir.exists() {
            let (person, key) = &self.keys[name];
            self.sb
                .clone_for(name, &format!("{person}@example.com"), key);
        }
        self.sb.git_ok_in(&dir, ["fetch", "-q", "origin"]);
        dir
    }

    /// In `name`'s clone: check out `branch` (from the server's branch, or
    /// from main if it does not exist), commit a change to `file` signed by
    /// `name`, push the branch. Returns the new tip.
    fn commit_on(&self, name: &str, branch: &str, file: &str) -> String {
        let dir = self.clone_of(name);
        let remote = format!("origin/{branch}");
        let from = if self
            .sb
            .git_out_in(&dir, None, ["rev-parse", "--verify", "-q", remote.as_str()])
            .success
        {
            remote
        } else {
            "origin/main".to_string()
        };
        self.sb
            .git_ok_in(&dir, ["checkout", "-q", "-B", branch, from.as_str()]);
        let id = self.sb.commit_in(
            &dir,
            Some(self.key(name)),
            file,
            &format!("{name} changes {file} on {branch}"),
        );
        let out = self.sb.git_out_in(&dir, None, ["push", "origin", branch]);
        assert_accepted(&out);
        self.sb
            .assert_server_ref(&format!("refs/heads/{branch}"), Some(&id));
        id
    }

    /// `countersign <args>` in `name`'s clone, signing as `name`.
    fn cs(&self, name: &str, args: &[&str]) -> Out {
        let dir = self.clone_of(name);
        self.sb.countersign_as(&dir, self.key(name), args)
    }

    /// `countersign approve <rev> --ref main --push origin <extra>` as
    /// `name`; asserts success and returns the trailer.
    #[track_caller]
    fn approve(&self, name: &str, rev: &str, extra: &[&str]) -> String {
        let mut args = vec!["approve", rev, "--ref", "main"];
        args.extend_from_slice(extra);
        if !extra.contains(&"--no-note") {
            args.extend_from_slice(&["--push", "origin"]);
        }
        let out = self.cs(name, &args);
        assert_eq!(out.code, Some(0), "approve as {name} failed\n{out}");
        trailer_of(&out)
    }

    /// `name`'s clone on main, at the server's main, with the server's
    /// approval notes.
    fn on_main(&self, name: &str) -> std::path::PathBuf {
        let dir = self.clone_of(name);
        // No notes on the server yet is fine.
        self.sb.git_out_in(
            &dir,
            None,
            [
                "fetch",
                "-q",
                "origin",
                "+refs/notes/countersign:refs/notes/countersign",
            ],
        );
        self.sb
            .git_ok_in(&dir, ["checkout", "-q", "-B", "main", "origin/main"]);
        dir
    }

    /// A hand-made merge of `revs` into main in `name`'s clone, signed by
    /// `name`, with `trailers` as the last paragraph. Returns its id.
    fn hand_merge(&self, name: &str, revs: &[&str], trailers: &[String]) -> String {
        let dir = self.on_main(name);
        self.sb.merge_in(
            &dir,
            self.key(name),
            revs,
            &merge_message("Merge topic into main", trailers),
        )
    }

    /// `git push origin <args>` from `name`'s clone.
    fn push_from(&self, name: &str, args: &[&str]) -> Out {
        let dir = self.sb.root().join(format!("c-{name}"));
        let mut all = vec!["push", "origin"];
        all.extend_from_slice(args);
        self.sb.git_out_in(&dir, None, all)
    }

    /// The first-parent and second-parent of `id` in `name`'s clone.
    fn parents(&self, name: &str, id: &str) -> Vec<String> {
        let dir = self.sb.root().join(format!("c-{name}"));
        let line = self
            .sb
            .git_ok_in(&dir, ["rev-list", "--parents", "-n", "1", id]);
        line.split_whitespace().skip(1).map(String::from).collect()
    }

    /// Push main from `name`'s clone and assert it is rejected with `code`
    /// and the server's main did not move. Returns the push output.
    #[track_caller]
    fn push_main_rejected(&self, name: &str, code: &str) -> Out {
        let out = self.push_from(name, &["main"]);
        assert_rejected_with(&out, code);
        self.sb.assert_server_ref(MAIN, Some(&self.base));
        out
    }

    /// `countersign merge <topic>` as `name` on main: asserts exit 1 with
    /// `error[<code>]`, and that the clone's main and work tree are back
    /// where they were. Returns the output.
    #[track_caller]
    fn merge_refused(&self, name: &str, topic: &str, code: &str) -> Out {
        let dir = self.on_main(name);
        let before = self.sb.git_ok_in(&dir, ["rev-parse", "HEAD"]);
        let out = self.cs(name, &["merge", topic]);
        assert_refused_with(&out, 1, code);
        assert_eq!(
            self.sb.git_ok_in(&dir, ["rev-parse", "HEAD"]),
            before,
            "a refused merge moved main\n{out}"
        );
        assert_eq!(
            self.sb.git_ok_in(&dir, ["status", "--porcelain"]),
            "",
            "a refused merge left the work tree dirty\n{out}"
        );
        out
    }

    /// The three approvals the usual rule needs (bob, carol, sam) of `rev`.
    fn usual_approvals(&self, rev: &str) -> Vec<String> {
        ["bob", "carol", "sam"]
            .iter()
            .map(|n| self.approve(n, rev, &[]))
            .collect()
    }
}

/// The happy path with the given key kinds for the approvers and merger.
fn approved_merge_is_accepted(bob: Kind, carol: Kind, sam: Kind, mia: Kind) {
    let t = Team::usual(bob, carol, sam, mia);
    let topic = t.commit_on("alice", "topic", "feature.txt");
    for (n, kind) in [("bob", bob), ("carol", carol), ("sam", sam)] {
        let trailer = t.approve(n, &topic, &[]);
        assert!(
            trailer.contains(&format!("by={n}@example.com"))
                && trailer.contains("repo=test/e2e")
                && trailer.contains("ref=refs/heads/main")
                && trailer.contains("kind=topic")
                && trailer.contains(&format!("commit={topic}")),
            "{trailer}"
        );
        // The signature is of the key's kind.
        let sig = trailer_field(&trailer, "sig");
        assert_eq!(
            sig.starts_with("U1NIU0lH"), // base64 of "SSHSIG"
            kind == Kind::Ssh,
            "{n} ({kind:?}) signed {sig}"
        );
    }
    let dir = t.on_main("mia");
    let status = t.cs("mia", &["status", "origin/topic", "--ref", "main"]);
    assert_eq!(status.code, Some(0), "status should say ready\n{status}");
    assert_eq!(
        status.stdout.matches("counts as reviewer").count(),
        2,
        "{status}"
    );
    assert_eq!(
        status.stdout.matches("counts as security").count(),
        1,
        "{status}"
    );
    let merged = t.cs("mia", &["merge", "origin/topic"]);
    assert_eq!(merged.code, Some(0), "countersign merge failed\n{merged}");
    let head = t.sb.git_ok_in(&dir, ["rev-parse", "HEAD"]);
    assert_eq!(t.parents("mia", &head), vec![t.base.clone(), topic.clone()]);
    let msg = t.sb.git_ok_in(&dir, ["log", "-1", "--format=%B", "HEAD"]);
    assert_eq!(msg.matches("Countersign-Approval: ").count(), 3, "{msg}");
    let out = t.push_from("mia", &["main"]);
    assert_accepted(&out);
    t.sb.assert_server_ref(MAIN, Some(&head));
}

#[test]
fn approvals_ssh_approved_merge_is_accepted() {
    approved_merge_is_accepted(Kind::Ssh, Kind::Ssh, Kind::Ssh, Kind::Ssh);
}

#[test]
fn approvals_openpgp_approved_merge_is_accepted() {
    approved_merge_is_accepted(Kind::Pgp, Kind::Pgp, Kind::Pgp, Kind::Pgp);
}

#[test]
fn approvals_mixed_ssh_and_openpgp_merge_is_accepted() {
    approved_merge_is_accepted(Kind::Ssh, Kind::Pgp, Kind::Ssh, Kind::Pgp);
}

#[test]
fn approvals_too_few_are_refused_by_merge_and_hook() {
    let t = Team::usual(Kind::Ssh, Kind::Ssh, Kind::Ssh, Kind::Ssh);
    let topic = t.commit_on("alice", "topic", "feature.txt");
    let bob = t.approve("bob", &topic, &[]);
    t.merge_refused("mia", "origin/topic", "insufficient-approvals");
    t.hand_merge("mia", &["origin/topic"], &[bob]);
    let out = t.push_main_rejected("mia", "insufficient-approvals");
    assert!(out.stderr.contains("2 x reviewer: 1 of 2 (bob)"), "{out}");
    assert!(out.stderr.contains("1 x security: 0 of 1"), "{out}");
}

#[test]
fn approvals_wrong_role_fills_no_slot() {
    let t = Team::usual(Kind::Ssh, Kind::Ssh, Kind::Ssh, Kind::Ssh);
    let topic = t.commit_on("alice", "topic", "feature.txt");
    let trailers = vec![
        t.approve("bob", &topic, &[]),
        t.approve("dave", &topic, &[]),
        t.approve("sam", &topic, &[]),
    ];
    t.on_main("mia");
    let status = t.cs("mia", &["status", "origin/topic", "--ref", "main"]);
    assert_eq!(status.code, Some(1), "{status}");
    assert!(
        status
            .stdout
            .contains("key=dave: verified, but fills no required role"),
        "{status}"
    );
    t.hand_merge("mia", &["origin/topic"], &trailers);
    let out = t.push_main_rejected("mia", "insufficient-approvals");
    assert!(
        out.stderr
            .contains("(dave's key): verified, but fills no required role"),
        "{out}"
    );
}

#[test]
fn approvals_one_person_with_two_keys_counts_once() {
    let mut members = usual_members(Kind::Ssh, Kind::Ssh, Kind::Ssh, Kind::Ssh);
    members[1].keys = vec![Kind::Ssh, Kind::Ssh]; // bob: keys `bob`, `bob2`
    let t = Team::new(&members, APPROVALS_2R_1S);
    let topic = t.commit_on("alice", "topic", "feature.txt");
    let trailers = vec![
        t.approve("bob", &topic, &[]),
        t.approve("bob2", &topic, &[]),
        t.approve("sam", &topic, &[]),
    ];
    assert_ne!(trailers[0], trailers[1]);
    t.merge_refused("mia", "origin/topic", "insufficient-approvals");
    t.hand_merge("mia", &["origin/topic"], &trailers);
    let out = t.push_main_rejected("mia", "insufficient-approvals");
    assert!(out.stderr.contains("bob already approved"), "{out}");
    assert!(out.stderr.contains("2 x reviewer: 1 of 2 (bob)"), "{out}");
}

#[test]
fn approvals_approver_who_signed_inside_the_range_is_author() {
    let t = Team::usual(Kind::Ssh, Kind::Ssh, Kind::Ssh, Kind::Ssh);
    // carol writes the first commit of the topic, alice the tip.
    t.commit_on("carol", "topic", "first.txt");
    let topic = t.commit_on("alice", "topic", "second.txt");
    let trailers = vec![
        t.approve("bob", &topic, &[]),
        t.approve("carol", &topic, &[]),
        t.approve("sam", &topic, &[]),
    ];
    // countersign merge leaves carol's approval out, and then has too few.
    let out = t.merge_refused("mia", "origin/topic", "insufficient-approvals");
    assert!(out.stderr.contains("leaving out approval #2"), "{out}");
    t.hand_merge("mia", &["origin/topic"], &trailers);
    let out = t.push_main_rejected("mia", "approver-is-author");
    assert!(
        out.stderr
            .contains("carol approved a change that includes their own commits"),
        "{out}"
    );
}

#[test]
fn approvals_merger_who_approved_is_refused() {
    let mut members = usual_members(Kind::Ssh, Kind::Ssh, Kind::Ssh, Kind::Ssh);
    members[4].roles = &["reviewer", "maintainer"]; // mia
    let t = Team::new(&members, APPROVALS_2R_1S);
    let topic = t.commit_on("alice", "topic", "feature.txt");
    let trailers = vec![
        t.approve("bob", &topic, &[]),
        t.approve("mia", &topic, &[]),
        t.approve("sam", &topic, &[]),
    ];
    t.merge_refused("mia", "origin/topic", "approver-is-merger");
    t.hand_merge("mia", &["origin/topic"], &trailers);
    let out = t.push_main_rejected("mia", "approver-is-merger");
    assert!(out.stderr.contains("mia both approved and merged"), "{out}");
}

#[test]
fn approvals_of_an_older_tip_are_stale() {
    let t = Team::usual(Kind::Ssh, Kind::Ssh, Kind::Ssh, Kind::Ssh);
    let old = t.commit_on("alice", "topic", "feature.txt");
    let trailers = t.usual_approvals(&old);
    let new = t.commit_on("alice", "topic", "feature.txt");
    // countersign merge finds no approvals of the new tip (the notes are
    // on the old one).
    t.merge_refused("mia", "origin/topic", "insufficient-approvals");
    // A hand-made merge of the new tip carrying them.
    let m = t.hand_merge("mia", &["origin/topic"], &trailers);
    assert_eq!(t.parents("mia", &m)[1], new);
    let out = t.push_main_rejected("mia", "stale-approval");
    assert!(out.stderr.contains(&old[..12]), "names the old tip\n{out}");
}

#[test]
fn approvals_of_an_amended_tip_do_not_count() {
    // An amended (not extended) topic: the approved commit is not an
    // ancestor of the new tip.
    let t = Team::usual(Kind::Ssh, Kind::Ssh, Kind::Ssh, Kind::Ssh);
    let old = t.commit_on("alice", "topic", "feature.txt");
    let trailers = t.usual_approvals(&old);
    let dir = t.clone_of("alice");
    let mut args = t.key("alice").sign_args();
    args.extend(["commit", "-q", "-S", "--amend", "-m", "amended"].map(String::from));
    let amended = t.sb.git_out_in(&dir, None, &args);
    assert!(amended.success, "{amended}");
    let out =
        t.sb.git_out_in(&dir, None, ["push", "-f", "origin", "topic"]);
    assert_accepted(&out);
    t.hand_merge("mia", &["origin/topic"], &trailers);
    let out = t.push_main_rejected("mia", "approval-wrong-commit");
    assert!(out.stderr.contains(&old[..12]), "{out}");
}

#[test]
fn approvals_for_another_topic_are_refused() {
    let t = Team::usual(Kind::Ssh, Kind::Ssh, Kind::Ssh, Kind::Ssh);
    let a = t.commit_on("alice", "topic-a", "a.txt");
    t.commit_on("alice", "topic-b", "b.txt");
    let trailers = t.usual_approvals(&a);
    t.hand_merge("mia", &["origin/topic-b"], &trailers);
    t.push_main_rejected("mia", "approval-wrong-commit");
}

#[test]
fn approvals_for_another_ref_are_refused() {
    let t = Team::usual(Kind::Ssh, Kind::Ssh, Kind::Ssh, Kind::Ssh);
    let topic = t.commit_on("alice", "topic", "feature.txt");
    let mut trailers = vec![t.approve("bob", &topic, &[])];
    // carol's approval was made for release, not main.
    let out = t.cs(
        "carol",
        &["approve", &topic, "--ref", "release", "--no-note"],
    );
    assert_eq!(out.code, Some(0), "{out}");
    let carol = trailer_of(&out);
    assert!(carol.contains("ref=refs/heads/release"), "{carol}");
    trailers.push(carol);
    trailers.push(t.approve("sam", &topic, &[]));
    t.hand_merge("mia", &["origin/topic"], &trailers);
    t.push_main_rejected("mia", "approval-wrong-ref");
}

#[test]
fn approvals_for_another_repository_are_refused() {
    let t = Team::usual(Kind::Ssh, Kind::Ssh, Kind::Ssh, Kind::Ssh);
    let topic = t.commit_on("alice", "topic", "feature.txt");
    let mut trailers = vec![t.approve("bob", &topic, &[])];
    let out = t.cs(
        "carol",
        &[
            "approve",
            &topic,
            "--ref",
            "main",
            "--repository",
            "other/repo",
            "--no-note",
        ],
    );
    assert_eq!(out.code, Some(0), "{out}");
    let carol = trailer_of(&out);
    assert!(carol.contains("repo=other/repo"), "{carol}");
    trailers.push(carol);
    trailers.push(t.approve("sam", &topic, &[]));
    t.hand_merge("mia", &["origin/topic"], &trailers);
    t.push_main_rejected("mia", "approval-wrong-repository");
}

#[test]
fn approvals_with_one_changed_signature_character_are_refused() {
    let t = Team::usual(Kind::Ssh, Kind::Ssh, Kind::Ssh, Kind::Ssh);
    let topic = t.commit_on("alice", "topic", "feature.txt");
    let mut trailers = t.usual_approvals(&topic);
    // Change one base64 character inside the signature bytes (R of the
    // ed25519 signature, ~60 characters from the end), keeping valid base64.
    let sig = trailer_field(&trailers[1], "sig");
    let i = sig.len() - 60;
    let c = sig.as_bytes()[i];
    let flipped = if c == b'A' { 'B' } else { 'A' };
    let forged = format!("{}{}{}", &sig[..i], flipped, &sig[i + 1..]);
    assert_ne!(forged, sig);
    trailers[1] = with_trailer_field(&trailers[1], "sig", &forged);
    t.hand_merge("mia", &["origin/topic"], &trailers);
    t.push_main_rejected("mia", "bad-signature");
}

#[test]
fn approvals_signed_by_a_key_outside_the_policy_are_refused() {
    let mut t = Team::usual(Kind::Ssh, Kind::Ssh, Kind::Ssh, Kind::Ssh);
    let topic = t.commit_on("alice", "topic", "feature.txt");
    // The attacker's own clone, claiming to be bob.
    let attacker = t.sb.ssh_key("attacker");
    t.keys.insert("attacker".into(), ("bob".into(), attacker)); // e-mail bob@example.com
    let out = t.cs(
        "attacker",
        &["approve", &topic, "--ref", "main", "--no-note"],
    );
    assert_eq!(out.code, Some(0), "{out}");
    assert!(
        out.stderr.contains("will not count"),
        "approve should warn that the key is not in the policy\n{out}"
    );
    let forged = trailer_of(&out);
    assert!(forged.contains("by=bob@example.com"), "{forged}");
    let trailers = vec![
        forged,
        t.approve("carol", &topic, &[]),
        t.approve("sam", &topic, &[]),
    ];
    t.hand_merge("mia", &["origin/topic"], &trailers);
    t.push_main_rejected("mia", "unknown-signer");
}

#[test]
fn approvals_claiming_another_person_count_as_the_signer() {
    let mut members = usual_members(Kind::Ssh, Kind::Ssh, Kind::Ssh, Kind::Ssh);
    members.push(member("mallory", &["developer"], Kind::Ssh));
    let t = Team::new(&members, APPROVALS_2R_1S);
    let topic = t.commit_on("alice", "topic", "feature.txt");
    // mallory's clone claims to be bob.
    let dir = t.clone_of("mallory");
    t.sb.git_ok_in(&dir, ["config", "user.email", "bob"]);
    let out = t.cs(
        "mallory",
        &["approve", &topic, "--ref", "main", "--no-note"],
    );
    assert_eq!(out.code, Some(0), "{out}");
    let forged = trailer_of(&out);
    assert!(forged.contains("by=bob "), "{forged}");
    let trailers = vec![
        forged,
        t.approve("carol", &topic, &[]),
        t.approve("sam", &topic, &[]),
    ];
    t.hand_merge("mia", &["origin/topic"], &trailers);
    let out = t.push_main_rejected("mia", "insufficient-approvals");
    assert!(
        out.stderr
            .contains("#1 by=bob (mallory's key): verified, but fills no required role"),
        "the listing should show whose key signed\n{out}"
    );
}

#[test]
fn approvals_carrying_a_commit_signature_are_refused() {
    let t = Team::usual(Kind::Ssh, Kind::Ssh, Kind::Ssh, Kind::Ssh);
    // bob signs a commit (namespace git) on some branch.
    let bobs = t.commit_on("bob", "bob-work", "bob.txt");
    let dir = t.clone_of("bob");
    let raw = t.sb.git_ok_in(&dir, ["cat-file", "commit", bobs.as_str()]);
    let (_, sig) = split_gpgsig(&format!("{raw}\n"));
    let commit_sig = armor_body(&sig.expect("bob's commit is signed"));
    let topic = t.commit_on("alice", "topic", "feature.txt");
    let mut trailers = t.usual_approvals(&topic);
    trailers[0] = with_trailer_field(&trailers[0], "sig", &commit_sig);
    t.hand_merge("mia", &["origin/topic"], &trailers);
    t.push_main_rejected("mia", "ssh-namespace");
}

#[test]
fn approvals_commit_carrying_an_approval_signature_is_refused() {
    let t = Team::usual(Kind::Ssh, Kind::Ssh, Kind::Ssh, Kind::Ssh);
    let topic = t.commit_on("alice", "topic", "feature.txt");
    let approval = t.approve("bob", &topic, &[]);
    let sig = ssh_armor(&trailer_field(&approval, "sig"));
    // bob's unsigned commit on a topic, given bob's approval signature as
    // its gpgsig.
    let dir = t.clone_of("bob");
    t.sb.git_ok_in(&dir, ["checkout", "-q", "-B", "topic2", "origin/main"]);
    let unsigned = t.sb.commit_in(&dir, None, "bob.txt", "bob's change");
    let payload = format!(
        "{}\n",
        t.sb.git_ok_in(&dir, ["cat-file", "commit", unsigned.as_str()])
    );
    let forged = run_stdin_ok(
        &t.sb,
        &dir,
        &["hash-object", "-t", "commit", "-w", "--stdin"],
        &insert_gpgsig(&payload, &sig),
    );
    t.sb.git_ok_in(&dir, ["reset", "-q", "--hard", forged.as_str()]);
    let out = t.sb.git_out_in(&dir, None, ["push", "origin", "topic2"]);
    assert_accepted(&out);
    let trailers = t.usual_approvals(&forged);
    t.hand_merge("mia", &["origin/topic2"], &trailers);
    t.push_main_rejected("mia", "ssh-namespace");
}

/// `git <args>` in `dir` with `input` on stdin; stdout trimmed.
#[track_caller]
fn run_stdin_ok(sb: &Sandbox, dir: &std::path::Path, args: &[&str], input: &str) -> String {
    use std::io::Write as _;
    let mut c = sb.git_in(dir, args);
    c.stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = c.spawn().unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn approvals_evil_merge_with_extra_change_is_refused() {
    let t = Team::usual(Kind::Ssh, Kind::Ssh, Kind::Ssh, Kind::Ssh);
    let topic = t.commit_on("alice", "topic", "feature.txt");
    let trailers = t.usual_approvals(&topic);
    let dir = t.on_main("mia");
    let out = t.sb.git_out_in(
        &dir,
        None,
        ["merge", "-q", "--no-ff", "--no-commit", "origin/topic"],
    );
    assert!(out.success, "{out}");
    fs::write(dir.join("evil.txt"), "not reviewed\n").unwrap();
    t.sb.git_ok_in(&dir, ["add", "evil.txt"]);
    let m = t.sb.commit_staged_in(
        &dir,
        t.key("mia"),
        &merge_message("Merge topic into main", &trailers),
        &[],
    );
    assert_eq!(t.parents("mia", &m), vec![t.base.clone(), topic]);
    t.push_main_rejected("mia", "evil-merge");
}

#[test]
fn approvals_merge_with_swapped_parents_is_refused() {
    let t = Team::usual(Kind::Ssh, Kind::Ssh, Kind::Ssh, Kind::Ssh);
    let topic = t.commit_on("alice", "topic", "feature.txt");
    let trailers = t.usual_approvals(&topic);
    let dir = t.on_main("mia");
    // First parent: the topic; second: main. (`git merge main` on the topic
    // would be "already up to date": main is the topic's fork point; the
    // clean merge's tree is the topic's.) Signed by mia, with the trailers.
    let msg =
        t.sb.write_message(&merge_message("Merge main into topic", &trailers));
    let mut args = t.key("mia").sign_args();
    args.extend(
        [
            "commit-tree",
            "-S",
            "-p",
            topic.as_str(),
            "-p",
            t.base.as_str(),
            "-F",
        ]
        .map(String::from),
    );
    args.push(msg.display().to_string());
    args.push(format!("{topic}^{{tree}}"));
    let out = t.sb.git_out_in(&dir, None, &args);
    assert!(out.success, "{out}");
    let m = out.stdout.trim().to_string();
    t.sb.git_ok_in(&dir, ["checkout", "-q", "-B", "swap", m.as_str()]);
    assert_eq!(t.parents("mia", &m), vec![topic, t.base.clone()]);
    let out = t.push_from("mia", &["swap:main"]);
    assert!(!out.success, "{out}");
    let codes = error_codes(&out.stderr);
    eprintln!("swapped parents: codes {codes:?}");
    assert_rejected_with(&out, "approval-wrong-commit");
    assert_rejected_with(&out, "merge-required");
    t.sb.assert_server_ref(MAIN, Some(&t.base));
}

#[test]
fn approvals_octopus_merge_is_refused() {
    let t = Team::usual(Kind::Ssh, Kind::Ssh, Kind::Ssh, Kind::Ssh);
    let a = t.commit_on("alice", "topic-a", "a.txt");
    let b = t.commit_on("alice", "topic-b", "b.txt");
    let mut trailers = t.usual_approvals(&a);
    trailers.extend(t.usual_approvals(&b));
    let m = t.hand_merge("mia", &["origin/topic-a", "origin/topic-b"], &trailers);
    assert_eq!(t.parents("mia", &m).len(), 3);
    t.push_main_rejected("mia", "octopus-merge");
}

/// Two topics change the same line; topic-1 is merged (approved), so
/// topic-2 conflicts with main. mia merges it by hand, resolving the
/// conflict, signs the merge without trailers and pushes it to
/// `mia/merge` for review. Returns (team, main after topic-1, topic-2 tip,
/// the merge id).
fn conflicted_merge() -> (Team, String, String, String) {
    let t = Team::usual(Kind::Ssh, Kind::Ssh, Kind::Ssh, Kind::Ssh);
    let one = t.commit_on("alice", "topic-1", "shared.txt");
    let two = t.commit_on("dave", "topic-2", "shared.txt");
    t.usual_approvals(&one);
    let dir = t.on_main("mia");
    let out = t.cs("mia", &["merge", "origin/topic-1"]);
    assert_eq!(out.code, Some(0), "{out}");
    assert_accepted(&t.push_from("mia", &["main"]));
    let main = t.sb.git_ok_in(&dir, ["rev-parse", "HEAD"]);
    // countersign merge refuses a conflicting topic, with a usage error.
    let out = t.cs("mia", &["merge", "origin/topic-2"]);
    assert_eq!(out.code, Some(2), "{out}");
    assert!(out.stderr.contains("does not merge cleanly"), "{out}");
    let out = t.sb.git_out_in(
        &dir,
        None,
        ["merge", "-q", "--no-ff", "--no-commit", "origin/topic-2"],
    );
    assert!(!out.success, "expected a conflict\n{out}");
    fs::write(dir.join("shared.txt"), "resolved by mia\n").unwrap();
    t.sb.git_ok_in(&dir, ["add", "shared.txt"]);
    let m =
        t.sb.commit_staged_in(&dir, t.key("mia"), "Merge topic-2 into main\n", &[]);
    assert_eq!(t.parents("mia", &m), vec![main.clone(), two.clone()]);
    let out = t.push_from("mia", &["HEAD:refs/heads/mia/merge"]);
    assert_accepted(&out);
    (t, main, two, m)
}

/// mia amends the merge's message to carry `trailers`; parents and tree
/// stay. Returns the new id.
fn amend_merge_with(t: &Team, merge: &str, trailers: &[String]) -> String {
    let dir = t.sb.root().join("c-mia");
    let tree =
        t.sb.git_ok_in(&dir, ["rev-parse", &format!("{merge}^{{tree}}")]);
    let amended = t.sb.commit_staged_in(
        &dir,
        t.key("mia"),
        &merge_message("Merge topic-2 into main", trailers),
        &["--amend"],
    );
    assert_eq!(t.parents("mia", &amended), t.parents("mia", merge));
    assert_eq!(
        t.sb.git_ok_in(&dir, ["rev-parse", &format!("{amended}^{{tree}}")]),
        tree
    );
    amended
}

#[test]
fn approvals_of_a_resolved_conflict_result_are_accepted() {
    let (t, main, _two, m) = conflicted_merge();
    let trailers: Vec<String> = ["bob", "carol", "sam"]
        .iter()
        .map(|n| t.approve(n, &m, &["--result", "--no-note"]))
        .collect();
    for tr in &trailers {
        assert!(tr.contains("kind=result"), "{tr}");
    }
    let amended = amend_merge_with(&t, &m, &trailers);
    let out = t.push_from("mia", &["main"]);
    assert_accepted(&out);
    t.sb.assert_server_ref(MAIN, Some(&amended));
    assert_ne!(amended, main);
}

#[test]
fn approvals_of_the_topic_do_not_cover_a_resolved_conflict() {
    let (t, main, two, m) = conflicted_merge();
    let trailers = t.usual_approvals(&two);
    amend_merge_with(&t, &m, &trailers);
    let out = t.push_from("mia", &["main"]);
    assert_rejected_with(&out, "evil-merge");
    t.sb.assert_server_ref(MAIN, Some(&main));
}

#[test]
fn approvals_direct_commit_to_main_needs_a_merge() {
    let t = Team::usual(Kind::Ssh, Kind::Ssh, Kind::Ssh, Kind::Ssh);
    let dir = t.on_main("mia");
    t.sb.commit_in(&dir, Some(t.key("mia")), "direct.txt", "direct change");
    t.push_main_rejected("mia", "merge-required");
}

#[test]
fn approvals_merge_signed_by_non_maintainer_is_refused() {
    let t = Team::usual(Kind::Ssh, Kind::Ssh, Kind::Ssh, Kind::Ssh);
    let topic = t.commit_on("alice", "topic", "feature.txt");
    let trailers = t.usual_approvals(&topic);
    t.hand_merge("alice", &["origin/topic"], &trailers);
    t.push_main_rejected("alice", "signer-lacks-role");
}

#[test]
fn approvals_merger_who_wrote_a_commit_is_refused_when_the_rule_says_so() {
    let t = Team::new(
        &usual_members(Kind::Ssh, Kind::Ssh, Kind::Ssh, Kind::Ssh),
        &format!("{APPROVALS_2R_1S}\nmerger-distinct-from-authors = true"),
    );
    t.commit_on("mia", "topic", "first.txt");
    let topic = t.commit_on("alice", "topic", "second.txt");
    let trailers = t.usual_approvals(&topic);
    t.merge_refused("mia", "origin/topic", "merger-is-author");
    t.hand_merge("mia", &["origin/topic"], &trailers);
    t.push_main_rejected("mia", "merger-is-author");
}

#[test]
fn approvals_by_an_author_count_when_the_rule_allows_it() {
    let t = Team::new(
        &usual_members(Kind::Ssh, Kind::Ssh, Kind::Ssh, Kind::Ssh),
        &format!("{APPROVALS_2R_1S}\napprovers-distinct-from-authors = false"),
    );
    t.commit_on("carol", "topic", "first.txt");
    let topic = t.commit_on("alice", "topic", "second.txt");
    t.usual_approvals(&topic);
    let dir = t.on_main("mia");
    let out = t.cs("mia", &["merge", "origin/topic"]);
    assert_eq!(out.code, Some(0), "{out}");
    let head = t.sb.git_ok_in(&dir, ["rev-parse", "HEAD"]);
    assert_accepted(&t.push_from("mia", &["main"]));
    t.sb.assert_server_ref(MAIN, Some(&head));
}

#[test]
fn approvals_direct_commit_is_allowed_when_merges_are_not_required() {
    let t = Team::new(
        &usual_members(Kind::Ssh, Kind::Ssh, Kind::Ssh, Kind::Ssh),
        &format!("{APPROVALS_2R_1S}\nrequired = false"),
    );
    let dir = t.on_main("alice");
    let c =
        t.sb.commit_in(&dir, Some(t.key("alice")), "direct.txt", "direct change");
    assert_accepted(&t.push_from("alice", &["main"]));
    t.sb.assert_server_ref(MAIN, Some(&c));
    // A merge still needs its approvals.
    let topic = t.commit_on("alice", "topic", "feature.txt");
    let bob = t.approve("bob", &topic, &[]);
    t.hand_merge("mia", &["origin/topic"], &[bob]);
    let out = t.push_from("mia", &["main"]);
    assert_rejected_with(&out, "insufficient-approvals");
    t.sb.assert_server_ref(MAIN, Some(&c));
}

#[test]
fn approvals_topic_with_unsigned_commit_has_unverifiable_author() {
    let t = Team::usual(Kind::Ssh, Kind::Ssh, Kind::Ssh, Kind::Ssh);
    let dir = t.clone_of("alice");
    t.sb.git_ok_in(&dir, ["checkout", "-q", "-B", "topic", "origin/main"]);
    t.sb.commit_in(&dir, None, "first.txt", "unsigned");
    assert_accepted(&t.sb.git_out_in(&dir, None, ["push", "origin", "topic"]));
    let topic = t.commit_on("alice", "topic", "second.txt");
    let trailers = t.usual_approvals(&topic);
    t.hand_merge("mia", &["origin/topic"], &trailers);
    let out = t.push_main_rejected("mia", "unverifiable-author");
    assert_rejected_with(&out, "unsigned-commit");
}

#[test]
fn approvals_by_expired_or_revoked_approvers_are_refused() {
    let mut members = usual_members(Kind::Ssh, Kind::Ssh, Kind::Ssh, Kind::Pgp);
    members.push(Member {
        extra: "expires = 2020-01-01",
        ..member("rita", &["reviewer"], Kind::Ssh)
    });
    members.push(Member {
        extra: "revoked = 2020-01-01",
        ..member("rex", &["security"], Kind::Ssh)
    });
    let t = Team::new(&members, APPROVALS_2R_1S);
    let topic = t.commit_on("alice", "topic", "feature.txt");
    let rita = t.approve("rita", &topic, &[]);
    let rex = t.approve("rex", &topic, &[]);
    let trailers = vec![t.approve("bob", &topic, &[]), rita, rex];
    t.hand_merge("mia", &["origin/topic"], &trailers);
    let out = t.push_main_rejected("mia", "key-expired");
    assert_rejected_with(&out, "key-revoked");
}

#[test]
fn approvals_relabelled_to_another_commit_are_bad_signatures() {
    // A valid approval of the old tip with `commit=` and `tree=` rewritten
    // to the new tip: the signature no longer covers the statement.
    let t = Team::usual(Kind::Ssh, Kind::Ssh, Kind::Pgp, Kind::Ssh);
    let old = t.commit_on("alice", "topic", "feature.txt");
    let trailers = t.usual_approvals(&old);
    let new = t.commit_on("alice", "topic", "feature.txt");
    let dir = t.clone_of("alice");
    let tree =
        t.sb.git_ok_in(&dir, ["rev-parse", &format!("{new}^{{tree}}")]);
    let relabel =
        |tr: &String| with_trailer_field(&with_trailer_field(tr, "commit", &new), "tree", &tree);
    // bob's SSH approval and sam's OpenPGP approval, relabelled.
    let forged = vec![
        relabel(&trailers[0]),
        trailers[1].clone(),
        relabel(&trailers[2]),
    ];
    t.hand_merge("mia", &["origin/topic"], &forged);
    let out = t.push_main_rejected("mia", "bad-signature");
    assert_eq!(
        error_codes(&out.stderr)
            .iter()
            .filter(|c| *c == "bad-signature")
            .count(),
        2,
        "{out}"
    );
}

#[test]
fn approvals_of_a_single_commit_result_are_accepted() {
    // A squash: mia's single signed commit on main, approved as an exact
    // result (`--result`: parent and tree), then given the trailers.
    let t = Team::usual(Kind::Ssh, Kind::Ssh, Kind::Ssh, Kind::Ssh);
    let dir = t.on_main("mia");
    let c =
        t.sb.commit_in(&dir, Some(t.key("mia")), "squashed.txt", "Squashed topic");
    assert_accepted(&t.push_from("mia", &["HEAD:refs/heads/mia/squash"]));
    let trailers: Vec<String> = ["bob", "carol", "sam"]
        .iter()
        .map(|n| t.approve(n, &c, &["--result", "--no-note"]))
        .collect();
    assert!(
        trailers[0].contains(&format!("parents={} ", t.base)),
        "{}",
        trailers[0]
    );
    let amended = t.sb.commit_staged_in(
        &dir,
        t.key("mia"),
        &merge_message("Squashed topic", &trailers),
        &["--amend"],
    );
    assert_accepted(&t.push_from("mia", &["main"]));
    t.sb.assert_server_ref(MAIN, Some(&amended));
}

#[test]
fn approvals_two_approved_merges_in_one_push_are_accepted() {
    let t = Team::usual(Kind::Ssh, Kind::Ssh, Kind::Ssh, Kind::Ssh);
    let a = t.commit_on("alice", "topic-a", "a.txt");
    let b = t.commit_on("dave", "topic-b", "b.txt");
    t.usual_approvals(&a);
    t.usual_approvals(&b);
    let dir = t.on_main("mia");
    for topic in ["origin/topic-a", "origin/topic-b"] {
        let out = t.cs("mia", &["merge", topic]);
        assert_eq!(out.code, Some(0), "{topic}\n{out}");
    }
    let head = t.sb.git_ok_in(&dir, ["rev-parse", "HEAD"]);
    assert_accepted(&t.push_from("mia", &["main"]));
    t.sb.assert_server_ref(MAIN, Some(&head));
}

#[test]
fn approvals_roles_are_assigned_to_fill_every_slot() {
    // bob holds reviewer and security, carol only reviewer: bob must take
    // the security slot so that carol can take the reviewer slot.
    let members = vec![
        member("alice", &["developer"], Kind::Ssh),
        member("bob", &["reviewer", "security"], Kind::Ssh),
        member("carol", &["reviewer"], Kind::Ssh),
        member("mia", &["maintainer"], Kind::Ssh),
    ];
    let t = Team::new(
        &members,
        r#"approvals = [ { role = "reviewer", count = 1 }, { role = "security", count = 1 } ]"#,
    );
    let topic = t.commit_on("alice", "topic", "feature.txt");
    t.approve("bob", &topic, &[]);
    t.approve("carol", &topic, &[]);
    let dir = t.on_main("mia");
    let status = t.cs("mia", &["status", "origin/topic", "--ref", "main"]);
    assert_eq!(status.code, Some(0), "{status}");
    assert!(
        status.stdout.contains("key=bob: counts as security"),
        "{status}"
    );
    assert!(
        status.stdout.contains("key=carol: counts as reviewer"),
        "{status}"
    );
    let out = t.cs("mia", &["merge", "origin/topic"]);
    assert_eq!(out.code, Some(0), "{out}");
    let head = t.sb.git_ok_in(&dir, ["rev-parse", "HEAD"]);
    assert_accepted(&t.push_from("mia", &["main"]));
    t.sb.assert_server_ref(MAIN, Some(&head));
}

#[test]
fn approvals_status_shows_stale_approvals() {
    // `countersign status --help`: "which approvals are there: whose, which
    // role each fills, stale or not". After the topic moves on, the
    // approvals of the old tip are stale; status should say so (and name
    // the old tip) rather than report that there are none.
    let t = Team::usual(Kind::Ssh, Kind::Ssh, Kind::Ssh, Kind::Ssh);
    let old = t.commit_on("alice", "topic", "feature.txt");
    t.usual_approvals(&old);
    t.commit_on("alice", "topic", "feature.txt");
    t.on_main("mia");
    let status = t.cs("mia", &["status", "origin/topic", "--ref", "main"]);
    assert_eq!(status.code, Some(1), "{status}");
    assert!(
        status.all().contains("stale") && status.all().contains(&old[..12]),
        "status does not show the stale approvals of {}\n{status}",
        &old[..12]
    );
}

#[test]
fn approvals_given_with_approval_flag_are_merged() {
    // Approvals shared out of band (--no-note), handed to
    // `countersign merge --approval`.
    let t = Team::usual(Kind::Ssh, Kind::Ssh, Kind::Ssh, Kind::Ssh);
    let topic = t.commit_on("alice", "topic", "feature.txt");
    let trailers: Vec<String> = ["bob", "carol", "sam"]
        .iter()
        .map(|n| t.approve(n, &topic, &["--no-note"]))
        .collect();
    let dir = t.on_main("mia");
    let mut args = vec!["merge", "origin/topic", "-m", "Merge the feature"];
    for tr in &trailers {
        args.extend(["--approval", tr.as_str()]);
    }
    let out = t.cs("mia", &args);
    assert_eq!(out.code, Some(0), "{out}");
    let msg = t.sb.git_ok_in(&dir, ["log", "-1", "--format=%B", "HEAD"]);
    assert!(msg.starts_with("Merge the feature\n\n"), "{msg}");
    for tr in &trailers {
        assert!(msg.contains(tr.as_str()), "{msg}");
    }
    let head = t.sb.git_ok_in(&dir, ["rev-parse", "HEAD"]);
    assert_accepted(&t.push_from("mia", &["main"]));
    t.sb.assert_server_ref(MAIN, Some(&head));
}

#[test]
fn approvals_for_main_count_through_a_symref_alias() {
    let t = Team::usual(Kind::Ssh, Kind::Ssh, Kind::Ssh, Kind::Ssh);
    t.sb.server_git_ok(["symbolic-ref", "refs/heads/alias", MAIN]);
    let topic = t.commit_on("alice", "topic", "feature.txt");
    let trailers = t.usual_approvals(&topic);
    let m = t.hand_merge("mia", &["origin/topic"], &trailers);
    // Unapproved through the alias: still refused.
    let dir = t.clone_of("mia");
    let direct =
        t.sb.commit_in(&dir, Some(t.key("mia")), "direct.txt", "direct");
    let out = t.push_from("mia", &["HEAD:refs/heads/alias"]);
    assert_rejected_with(&out, "merge-required");
    t.sb.assert_server_ref(MAIN, Some(&t.base));
    // The approved merge through the alias.
    t.sb.git_ok_in(&dir, ["reset", "-q", "--hard", m.as_str()]);
    assert_ne!(direct, m);
    let out = t.push_from("mia", &["HEAD:refs/heads/alias"]);
    assert_accepted(&out);
    t.sb.assert_server_ref(MAIN, Some(&m));
}

// ---------------------------------------------------------------------------
// audit log
// ---------------------------------------------------------------------------

fn audit_log(sb: &Sandbox) -> std::path::PathBuf {
    sb.server.join("countersign").join("audit.log")
}

fn audit_records(sb: &Sandbox) -> Vec<String> {
    fs::read_to_string(audit_log(sb))
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn twenty_parallel_pushes_leave_a_valid_chain() {
    let (mut sb, _dev, base) = with_dev(|_| vec![]);
    // Ten unprotected branches (accepted) and ten release branches with an
    // unsigned commit (rejected): every decision must be in the log.
    let mut ids = Vec::new();
    for i in 0..20 {
        sb.reset_hard(&base);
        ids.push(sb.commit_as(None, &format!("parallel {i}")));
    }
    let outs: Vec<Out> = std::thread::scope(|s| {
        let handles: Vec<_> = ids
            .iter()
            .enumerate()
            .map(|(i, id)| {
                let sb = &sb;
                s.spawn(move || {
                    let dst = if i % 2 == 0 {
                        format!("{id}:refs/heads/feature/{i}")
                    } else {
                        format!("{id}:refs/heads/release/{i}")
                    };
                    sb.push(&[dst.as_str()])
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (i, out) in outs.iter().enumerate() {
        assert_eq!(out.success, i % 2 == 0, "push {i}: {out}");
    }
    let v = sb.countersign(&sb.server, ["audit", "verify"]);
    assert!(v.success, "{v}");
    assert!(v.stdout.contains("verifies: 21 record(s)"), "{v}");
    let records = audit_records(&sb);
    assert_eq!(records.len(), 21);
    for i in 0..20 {
        let kind = if i % 2 == 0 { "feature" } else { "release" };
        let verdict = if i % 2 == 0 { "accepted" } else { "rejected" };
        let r = format!("\"ref\":\"refs/heads/{kind}/{i}\"");
        let matching: Vec<&String> = records.iter().filter(|l| l.contains(&r)).collect();
        assert_eq!(
            matching.len(),
            1,
            "decision for push {i} missing or doubled"
        );
        assert!(
            matching[0].contains(&format!("\"verdict\":\"{verdict}\"")),
            "{}",
            matching[0]
        );
    }
}

#[test]
fn audit_records_pusher_signers_and_findings() {
    let (mut sb, _dev, _base) = with_dev(|_| vec![]);
    sb.commit_as(None, "unsigned");
    let mut cmd = sb.git(["push", "origin", "main"]);
    cmd.env("GL_USERNAME", "gl-mallory");
    let out = run(cmd, None);
    assert!(!out.success);
    let records = audit_records(&sb);
    let first = &records[0];
    assert!(first.contains("\"verdict\":\"accepted\""), "{first}");
    assert!(first.contains("\"person\":\"dev\""), "{first}");
    assert!(first.contains("\"roles\":[\"developer\"]"), "{first}");
    let last = records.last().unwrap();
    assert!(
        last.contains("\"name\":\"gl-mallory\",\"source\":\"GL_USERNAME\""),
        "{last}"
    );
    assert!(last.contains("\"code\":\"unsigned-commit\""), "{last}");
    let show = sb.countersign(&sb.server, ["audit", "show", "--ref", "main"]);
    assert!(show.success, "{show}");
    assert!(show.stdout.contains("rejected by gl-mallory"), "{show}");
    assert!(show.stdout.contains("[unsigned-commit]"), "{show}");
}

#[test]
fn audit_verify_catches_edits_deletions_reordering_and_truncation() {
    let (mut sb, dev, _base) = with_dev(|_| vec![]);
    for i in 0..3 {
        sb.commit_as(Some(&dev), &format!("more {i}"));
        assert_accepted(&sb.push(&["main"]));
    }
    let records = audit_records(&sb);
    assert_eq!(records.len(), 4);
    let good = sb.countersign(&sb.server, ["audit", "verify"]);
    assert!(good.success, "{good}");
    let head = good
        .stdout
        .split("head ")
        .nth(1)
        .unwrap()
        .trim()
        .to_string();
    let check = |name: &str, text: String, line: usize| {
        let path = sb.root().join(name);
        fs::write(&path, text).unwrap();
        let out = sb.countersign(
            &sb.server,
            ["audit", "verify", "--log", path.to_str().unwrap()],
        );
        assert_eq!(out.code, Some(1), "{name}: {out}");
        assert!(
            out.stderr.contains(&format!("broken at line {line}")),
            "{name}: {out}"
        );
    };
    let join = |lines: &[&String]| lines.iter().map(|l| format!("{l}\n")).collect::<String>();
    let r = &records;
    check(
        "edited",
        join(&[
            &r[0],
            &r[1].replacen("accepted", "rejected", 1),
            &r[2],
            &r[3],
        ]),
        3,
    );
    check("deleted", join(&[&r[0], &r[2], &r[3]]), 2);
    check("reordered", join(&[&r[0], &r[2], &r[1], &r[3]]), 2);
    let full = join(&[&r[0], &r[1], &r[2], &r[3]]);
    check("torn", full[..full.len() - 10].to_string(), 4);
    // Cutting whole records off the end is caught against a kept head.
    let cut = sb.root().join("cut");
    fs::write(&cut, join(&[&r[0], &r[1], &r[2]])).unwrap();
    let out = sb.countersign(
        &sb.server,
        [
            "audit",
            "verify",
            "--log",
            cut.to_str().unwrap(),
            "--expect-head",
            head.as_str(),
        ],
    );
    assert_eq!(out.code, Some(1), "{out}");
    let out = sb.countersign(
        &sb.server,
        ["audit", "verify", "--expect-head", head.as_str()],
    );
    assert!(out.success, "{out}");
    // A damaged log blocks pushes (fail closed) until it is repaired.
    fs::write(audit_log(&sb), &full[..full.len() - 10]).unwrap();
    sb.commit_as(Some(&dev), "after damage");
    let out = sb.push(&["main"]);
    assert_rejected_with(&out, "audit-log-unwritable");
}

// ---------------------------------------------------------------------------
// replace refs and tag names
// ---------------------------------------------------------------------------

#[test]
fn replace_refs_are_refused() {
    let (mut sb, _dev, base) = with_dev(|_| vec![]);
    // An unsigned commit that git would show in place of the signed main.
    let evil = sb.commit_as(None, "evil replacement");
    let dst = format!("{evil}:refs/replace/{base}");
    let out = sb.push(&[dst.as_str()]);
    assert_rejected_with(&out, "replace-ref");
    assert_eq!(sb.server_ref(&format!("refs/replace/{base}")), None);
}

#[test]
fn signed_tag_pushed_under_another_name_is_refused() {
    let mut sb = Sandbox::new();
    let dev = sb.ssh_key("dev");
    let rm = sb.ssh_key("rm");
    sb.install(&standard_policy(&[
        simple_person("dev", &["developer"], &dev),
        simple_person("rm", &["release-manager"], &rm),
    ]));
    create_main(&mut sb, &dev);
    let tag = sb.tag_as(Some(&rm), "v1.0", BOUND_RELEASE, false);
    assert_accepted(&sb.push(&["refs/tags/v1.0"]));
    // Replay the same signed tag object as a newer version.
    let dst = format!("{tag}:refs/tags/v9.9");
    let out = sb.push(&[dst.as_str()]);
    assert_rejected_with(&out, "tag-name-mismatch");
    sb.assert_server_ref("refs/tags/v9.9", None);
}

#[test]
fn install_refuses_when_hooks_path_is_set() {
    let sb = Sandbox::new();
    sb.server_git_ok(["config", "core.hooksPath", "/somewhere/else"]);
    sb.write_policy(&standard_policy(&[]));
    let out = sb.run_install_with(true, &[]);
    assert!(!out.success, "{out}");
    assert!(out.stderr.contains("core.hooksPath"), "{out}");
    assert!(!sb.server.join("hooks").join("countersign").exists());
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

// ---------------------------------------------------------------------------
// Hardening: no push can wedge the server (bounded time, memory, output)
// ---------------------------------------------------------------------------

/// Push main from mia's clone: rejected with `code`, the server's main unmoved.
#[track_caller]
fn rejected_at(t: &Team, code: &str) -> Out {
    let before = t.sb.server_ref(MAIN);
    let out = t.push_from("mia", &["main"]);
    assert_rejected_with(&out, code);
    assert_eq!(t.sb.server_ref(MAIN), before, "main moved");
    out
}

/// Run `cmd` with a watchdog: a hook that runs away fails the test after
/// `secs` instead of hanging CI. (A guard, not a performance target: the
/// targets live in bench/.)
#[track_caller]
fn run_within(mut cmd: std::process::Command, secs: u64, scratch: &std::path::Path) -> Out {
    let out_path = scratch.join("watchdog.out");
    let err_path = scratch.join("watchdog.err");
    cmd.stdin(std::process::Stdio::null())
        .stdout(fs::File::create(&out_path).unwrap())
        .stderr(fs::File::create(&err_path).unwrap());
    let mut child = cmd.spawn().unwrap();
    let start = std::time::Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if start.elapsed().as_secs() >= secs {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the push did not finish within {secs} s: the hook ran away");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    Out {
        success: status.success(),
        code: status.code(),
        stdout: fs::read_to_string(&out_path).unwrap_or_default(),
        stderr: String::from_utf8_lossy(&fs::read(&err_path).unwrap()).into_owned(),
    }
}

/// `git commit-tree` in `dir` with a tree holding one file `f` = `content`.
fn commit_tree(
    sb: &Sandbox,
    dir: &std::path::Path,
    content: &str,
    parents: &[String],
    msg: &str,
) -> String {
    let blob = {
        let mut c = sb.git_in(dir, ["hash-object", "-w", "--stdin"]);
        c.stdin(std::process::Stdio::piped());
        run(c, Some(content.as_bytes())).stdout.trim().to_string()
    };
    let tree = {
        let c = sb.git_in(dir, ["mktree"]);
        run(c, Some(format!("100644 blob {blob}\tf\n").as_bytes()))
            .stdout
            .trim()
            .to_string()
    };
    let mut args = vec!["commit-tree".to_string(), tree];
    for p in parents {
        args.push("-p".into());
        args.push(p.clone());
    }
    args.extend(["-m".to_string(), msg.to_string()]);
    sb.git_ok_in(dir, args)
}

/// The attack of issue 7, item 1: levels of 4 commits, each with every
/// commit of the level below as parents, topped by a two-parent merge.
/// libgit2's recursive merge took minutes on 14 levels (a 12 KB pack);
/// now the merge bases are counted first and never merged recursively,
/// and a merge whose own signature failed is not merged at all.
#[test]
fn crafted_criss_cross_history_is_decided_quickly() {
    let t = Team::usual(Kind::Ssh, Kind::Ssh, Kind::Ssh, Kind::Ssh);
    let dir = t.on_main("mia");
    let mut prev = vec![t.base.clone()];
    for level in 0..14 {
        prev = (0..4)
            .map(|i| {
                commit_tree(
                    &t.sb,
                    &dir,
                    &format!("{level}-{i}\n"),
                    &prev,
                    &format!("level {level} #{i}"),
                )
            })
            .collect();
    }
    let top = commit_tree(&t.sb, &dir, "top\n", &prev[..2], "merge");
    // Unsigned top merge: rejected without computing any merge.
    let dst = format!("{top}:refs/heads/main");
    let mut cmd = t.sb.git_in(&dir, ["push", "origin", dst.as_str()]);
    cmd.env("GIT_TERMINAL_PROMPT", "0");
    let out = run_within(cmd, 120, t.sb.root());
    assert_rejected_with(&out, "octopus-merge");
    assert!(!out.stderr.contains("limit-time"), "{out}");
    t.sb.assert_server_ref(MAIN, Some(&t.base));

    // Signed by the maintainer and with approvals claimed: the merge bases
    // are counted (4), and the answer is immediate.
    let mut args = t.key("mia").sign_config();
    args.extend(
        [
            "commit-tree",
            "-S",
            "-p",
            prev[0].as_str(),
            "-p",
            prev[1].as_str(),
            "-m",
            "merge",
        ]
        .map(String::from),
    );
    args.push(format!("{top}^{{tree}}"));
    let signed = t.sb.git_out_in(&dir, Some(t.key("mia")), &args);
    assert!(signed.success, "{signed}");
    let signed = signed.stdout.trim().to_string();
    let out = run_within(
        t.sb.git_in(
            &dir,
            ["push", "origin", &format!("{signed}:refs/heads/main")],
        ),
        120,
        t.sb.root(),
    );
    assert!(!out.success, "{out}");
    assert!(!out.stderr.contains("limit-time"), "{out}");
    t.sb.assert_server_ref(MAIN, Some(&t.base));
}

/// A criss-cross history between a topic and main has two merge bases:
/// countersign does not compute a clean merge for it (the answer would
/// depend on how the bases are merged), so approvals of the topic do not
/// cover the result; approvals of the exact result do.
#[test]
fn criss_cross_merge_needs_approvals_of_the_exact_result() {
    let t = Team::usual(Kind::Ssh, Kind::Ssh, Kind::Ssh, Kind::Ssh);
    let a = t.commit_on("alice", "topic-a", "a.txt");
    let b1 = t.commit_on("dave", "topic-b", "b.txt");
    t.usual_approvals(&a);
    t.on_main("mia");
    assert_eq!(t.cs("mia", &["merge", "origin/topic-a"]).code, Some(0));
    assert_accepted(&t.push_from("mia", &["main"]));
    // dave merges main into his topic...
    let ddir = t.clone_of("dave");
    t.sb.git_ok_in(&ddir, ["checkout", "-q", "topic-b"]);
    let b2 = t.sb.merge_in(
        &ddir,
        t.key("dave"),
        &["origin/main"],
        "Merge main into topic-b\n",
    );
    assert_accepted(&t.push_from("dave", &["topic-b"]));
    // ...while main merges the older tip of the topic.
    t.usual_approvals(&b1);
    t.on_main("mia");
    assert_eq!(t.cs("mia", &["merge", &b1]).code, Some(0));
    assert_accepted(&t.push_from("mia", &["main"]));

    let trailers = t.usual_approvals(&b2);
    let m = t.hand_merge("mia", &["origin/topic-b"], &trailers);
    let out = rejected_at(&t, "multiple-merge-bases");
    assert!(out.stderr.contains("2 merge bases"), "{out}");

    assert_accepted(&t.push_from("mia", &[&format!("{m}:refs/heads/mia/result")]));
    let results: Vec<String> = ["bob", "carol", "sam"]
        .iter()
        .map(|n| t.approve(n, &m, &["--result", "--no-note"]))
        .collect();
    let dir = t.sb.root().join("c-mia");
    let amended = t.sb.commit_staged_in(
        &dir,
        t.key("mia"),
        &merge_message("Merge topic-b into main", &results),
        &["--amend"],
    );
    assert_accepted(&t.push_from("mia", &["main"]));
    t.sb.assert_server_ref(MAIN, Some(&amended));
}

/// Issue 7, item 9: a squash names the topic it squashes, so the topic's
/// authors stay its authors: bob may not approve the squash of his own
/// code, and the maintainer who squashed is not blamed as its author.
#[test]
fn squash_keeps_the_authors_of_the_squashed_topic() {
    let t = Team::new(
        &usual_members(Kind::Ssh, Kind::Ssh, Kind::Ssh, Kind::Ssh),
        &format!("{APPROVALS_2R_1S}\nmerger-distinct-from-authors = true"),
    );
    // bob writes the topic, mia squashes it, bob approves the squash.
    let topic = t.commit_on("bob", "topic-x", "x.txt");
    let dir = t.on_main("mia");
    t.sb.git_ok_in(&dir, ["merge", "-q", "--squash", "origin/topic-x"]);
    let squash = format!("Countersign-Squash: {topic}");
    let sq = t.sb.commit_staged_in(
        &dir,
        t.key("mia"),
        &merge_message("Squash topic-x", std::slice::from_ref(&squash)),
        &[],
    );
    assert_accepted(&t.push_from("mia", &[&format!("{sq}:refs/heads/mia/squash")]));
    let mut trailers = vec![squash.clone()];
    trailers.extend(
        ["bob", "carol", "sam"]
            .iter()
            .map(|n| t.approve(n, &sq, &["--result", "--no-note"])),
    );
    t.sb.commit_staged_in(
        &dir,
        t.key("mia"),
        &merge_message("Squash topic-x", &trailers),
        &["--amend"],
    );
    let out = t.push_main_rejected("mia", "approver-is-author");
    assert!(
        !out.stderr.contains("merger-is-author"),
        "the squasher is not the author\n{out}"
    );

    // alice's topic, approved as a topic by others, squashed by mia: accepted.
    let topic = t.commit_on("alice", "topic-y", "y.txt");
    let approvals = t.usual_approvals(&topic);
    let dir = t.on_main("mia");
    t.sb.git_ok_in(&dir, ["merge", "-q", "--squash", "origin/topic-y"]);
    let mut trailers = vec![format!("Countersign-Squash: {topic}")];
    trailers.extend(approvals.iter().cloned());
    // First with a change nobody reviewed: an evil squash.
    fs::write(dir.join("evil.txt"), "not reviewed\n").unwrap();
    t.sb.git_ok_in(&dir, ["add", "evil.txt"]);
    t.sb.commit_staged_in(
        &dir,
        t.key("mia"),
        &merge_message("Squash topic-y", &trailers),
        &[],
    );
    t.push_main_rejected("mia", "evil-merge");
    t.sb.git_ok_in(&dir, ["rm", "-q", "evil.txt"]);
    let good = t.sb.commit_staged_in(
        &dir,
        t.key("mia"),
        &merge_message("Squash topic-y", &trailers),
        &["--amend"],
    );
    assert_accepted(&t.push_from("mia", &["main"]));
    t.sb.assert_server_ref(MAIN, Some(&good));

    // A direct commit by the maintainer is authored by her: with
    // merger-distinct-from-authors it cannot land, whoever approves it.
    let c =
        t.sb.commit_in(&dir, Some(t.key("mia")), "direct.txt", "Direct change");
    assert_accepted(&t.push_from("mia", &[&format!("{c}:refs/heads/mia/direct")]));
    let trailers: Vec<String> = ["bob", "carol", "sam"]
        .iter()
        .map(|n| t.approve(n, &c, &["--result", "--no-note"]))
        .collect();
    t.sb.commit_staged_in(
        &dir,
        t.key("mia"),
        &merge_message("Direct change", &trailers),
        &["--amend"],
    );
    rejected_at(&t, "merger-is-author");

    // A malformed or repeated squash trailer is refused with its own code.
    t.sb.git_ok_in(&dir, ["reset", "-q", "--hard", "origin/main"]);
    t.sb.commit_in(
        &dir,
        Some(t.key("mia")),
        "z.txt",
        "Squash\n\nCountersign-Squash: not-an-id",
    );
    rejected_at(&t, "malformed-squash");
}

/// Issue 7, item 2: a 900 KB subject and a thousand malformed approval
/// trailers took 1.6 GB. Now the trailers are counted before any is
/// parsed, subjects are cut in findings, and stderr and the audit record
/// stay within their limits.
#[test]
fn huge_subject_and_trailer_flood_are_bounded() {
    let t = Team::usual(Kind::Ssh, Kind::Ssh, Kind::Ssh, Kind::Ssh);
    let topic = t.commit_on("alice", "topic", "feature.txt");
    let subject = "S".repeat(900_000);
    let trailers: Vec<String> = (0..1000)
        .map(|i| format!("Countersign-Approval: by=x{i} {}", "junk=".repeat(20)))
        .collect();
    let dir = t.on_main("mia");
    let file = t.sb.write_message(&merge_message(&subject, &trailers));
    let mut args = t.key("mia").sign_config();
    args.extend(["merge", "-q", "--no-ff", "-S", "-F"].map(String::from));
    args.push(file.display().to_string());
    args.push(topic.clone());
    assert!(t.sb.git_out_in(&dir, Some(t.key("mia")), &args).success);
    let out = t.push_main_rejected("mia", "limit-trailers");
    assert!(
        out.stderr.len() < 64 << 10,
        "stderr is {} bytes",
        out.stderr.len()
    );
    assert!(
        out.stderr.contains("SSSS…"),
        "the subject is cut\n{}",
        &out.stderr[..out.stderr.len().min(2000)]
    );
    assert!(!out.stderr.contains(&"S".repeat(1000)));
    let log = fs::read_to_string(t.sb.server.join("countersign").join("audit.log")).unwrap();
    let last = log.lines().last().unwrap();
    assert!(
        last.len() <= 256 << 10,
        "audit record of {} bytes",
        last.len()
    );
    assert!(last.contains("limit-trailers"));
}

/// Commits examined per push and findings kept are limited: many unsigned
/// commits pushed to several protected refs stop at the limit, with their
/// own code, and only the first findings are kept (the rest counted).
#[test]
fn commit_and_finding_limits_stop_a_flood() {
    let mut sb = Sandbox::new();
    let dev = sb.ssh_key("dev");
    let policy = standard_policy(&[simple_person("dev", &["developer"], &dev)])
        + "\n[limits]\ncommits = 120\nfindings = 1000\n";
    sb.install(&policy);
    create_main(&mut sb, &dev);
    let base = sb.rev("HEAD");
    let mut tip = base.clone();
    let work = sb.work.clone();
    for i in 0..100 {
        tip = commit_tree(
            &sb,
            &work,
            &format!("{i}\n"),
            &[tip],
            &format!("unsigned {i}"),
        );
    }
    let refs: Vec<String> = (0..3)
        .map(|i| format!("{tip}:refs/heads/release/{i}"))
        .collect();
    let mut args: Vec<&str> = refs.iter().map(String::as_str).collect();
    args.insert(0, "--atomic");
    let out = sb.push(&args);
    assert_rejected_with(&out, "limit-commits");
    assert!(out.stderr.contains("raise `commits`"), "{out}");
    assert!(
        out.stderr.contains("not every object was examined"),
        "{out}"
    );

    // Findings: the first 5 are kept, the rest counted, checking stops.
    sb.write_policy(
        &(standard_policy(&[simple_person("dev", &["developer"], &dev)])
            + "\n[limits]\ncommits = 1000\nfindings = 5\n"),
    );
    let out = sb.push(&args);
    assert_rejected_with(&out, "unsigned-commit");
    assert!(!out.stderr.contains("limit-commits"), "{out}");
    assert_eq!(
        out.stderr.matches("error[unsigned-commit]").count(),
        5,
        "{out}"
    );
    assert!(
        out.stderr.contains("checking stopped after 5 findings"),
        "{out}"
    );
}

/// A commit object larger than `object-bytes` (a few KB of pack can hold
/// megabytes of zeros) is refused before any history walk inflates it.
#[test]
fn oversized_commit_object_is_refused() {
    let (mut sb, dev, _base) = with_dev(|_| vec![]);
    let mut msg = b"big\n\n".to_vec();
    msg.extend(std::iter::repeat_n(b'0', 2 << 20));
    sb.commit_message_bytes(Some(&dev), &msg, &[]);
    let out = sb.push(&["main"]);
    assert_rejected_with(&out, "limit-object-bytes");
    assert!(out.stderr.contains("raise `object-bytes`"), "{out}");
}

/// Issue 7, item 6: a `gpgsig` of OpenPGP Marker packets is refused from
/// its framing (never handed to the OpenPGP parser), and one larger than
/// `signature-bytes` by its size.
#[test]
fn marker_packet_signatures_are_refused_cheaply() {
    let (mut sb, dev, base) = with_dev(|_| vec![]);
    let signed = sb.commit_as(Some(&dev), "to be re-signed");
    let raw = sb.cat_commit(&signed);
    let (payload, _) = split_gpgsig(&raw);
    let armor = |n: usize| {
        use std::fmt::Write as _;
        let bytes: Vec<u8> = std::iter::repeat_n([0xa8u8, 0x03, b'P', b'G', b'P'], n)
            .flatten()
            .collect();
        let b64 = base64_encode(&bytes);
        let mut s = String::from("-----BEGIN PGP SIGNATURE-----\n\n");
        for chunk in b64.as_bytes().chunks(64) {
            let _ = writeln!(s, "{}", std::str::from_utf8(chunk).unwrap());
        }
        s.push_str("-----END PGP SIGNATURE-----\n");
        s
    };
    let small = sb.write_commit(&insert_gpgsig(&payload, &armor(2000)));
    sb.reset_hard(&small);
    assert_rejected_with(&sb.push(&["main"]), "malformed-signature");
    let big = sb.write_commit(&insert_gpgsig(&payload, &armor(20_000)));
    sb.reset_hard(&big);
    assert_rejected_with(&sb.push(&["main"]), "limit-signature-bytes");
    sb.assert_server_ref(MAIN, Some(&base));
}

fn base64_encode(bytes: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for c in bytes.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= c.len() {
                out.push(T[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Issue 7, item 7: on a `core.ignorecase` server, `refs/heads/MAIN`
/// arriving as a creation while `main` is packed is judged against
/// `main` (force-push applies), and `refs/REPLACE/` is a replace ref.
#[test]
fn ignorecase_server_judges_case_variants_against_the_existing_ref() {
    let (mut sb, dev, base) = with_dev(|_| vec![]);
    sb.server_git_ok(["config", "core.ignorecase", "true"]);
    sb.server_git_ok(["pack-refs", "--all"]);
    // A signed commit that does not descend from main.
    sb.git_ok(["checkout", "-q", "--orphan", "other"]);
    let other = sb.commit_as(Some(&dev), "unrelated history");
    let out = sb.push(&[&format!("{other}:refs/heads/MAIN")]);
    assert_rejected_with(&out, "force-push");
    sb.assert_server_ref(MAIN, Some(&base));
    let out = sb.push(&[&format!("{other}:refs/REPLACE/{base}")]);
    assert_rejected_with(&out, "replace-ref");
}

/// `countersign merge --squash` lands an approved topic as one commit that
/// names the topic, with the topic's approvals; the hook accepts it.
#[test]
fn merge_squash_command_lands_an_approved_topic() {
    let t = Team::new(
        &usual_members(Kind::Ssh, Kind::Ssh, Kind::Ssh, Kind::Ssh),
        &format!("{APPROVALS_2R_1S}\nmerger-distinct-from-authors = true"),
    );
    let topic = t.commit_on("alice", "topic", "feature.txt");
    t.usual_approvals(&topic);
    let dir = t.on_main("mia");
    let out = t.cs("mia", &["merge", "--squash", "origin/topic"]);
    assert_eq!(out.code, Some(0), "{out}");
    let head = t.sb.git_ok_in(&dir, ["rev-parse", "HEAD"]);
    assert_eq!(t.parents("mia", &head), vec![t.base.clone()]);
    let msg = t.sb.git_ok_in(&dir, ["log", "-1", "--format=%B"]);
    assert!(
        msg.contains(&format!("Countersign-Squash: {topic}")),
        "{msg}"
    );
    assert_eq!(msg.matches("Countersign-Approval:").count(), 3, "{msg}");
    assert_accepted(&t.push_from("mia", &["main"]));
    t.sb.assert_server_ref(MAIN, Some(&head));
}

/// Approvals, merges and squashes in a SHA-256 repository: 64-hex ids in
/// the approval statements, `gpgsig-sha256` on every commit, the clean merge
/// by git in SHA-256; and a stale approval is still refused.
#[test]
fn sha256_repository_approved_merge_is_accepted() {
    let t = Team::new_in(
        &usual_members(Kind::Ssh, Kind::Pgp, Kind::Ssh, Kind::Ssh),
        APPROVALS_2R_1S,
        &["--object-format=sha256"],
    );
    assert_eq!(t.base.len(), 64);
    let old = t.commit_on("alice", "topic", "feature.txt");
    let stale = t.approve("bob", &old, &["--no-note"]);
    assert!(stale.contains(&format!("commit={old}")), "{stale}");
    let topic = t.commit_on("alice", "topic", "feature2.txt");
    let trailers = t.usual_approvals(&topic);
    let mut with_stale = trailers.clone();
    with_stale.push(stale);
    t.hand_merge("mia", &["origin/topic"], &with_stale);
    t.push_main_rejected("mia", "stale-approval");
    t.on_main("mia");
    let out = t.cs("mia", &["merge", "origin/topic"]);
    assert_eq!(out.code, Some(0), "{out}");
    let dir = t.sb.root().join("c-mia");
    let head = t.sb.git_ok_in(&dir, ["rev-parse", "HEAD"]);
    assert_eq!(head.len(), 64);
    assert_accepted(&t.push_from("mia", &["main"]));
    t.sb.assert_server_ref(MAIN, Some(&head));
}

/// One policy locator: a relative `countersign.policy` in a clone is taken
/// from `$GIT_DIR`, as the hook takes it on the server, whatever directory
/// `status` or `approve` is run from.
#[test]
fn relative_policy_config_means_the_same_file_to_every_command() {
    let t = Team::usual(Kind::Ssh, Kind::Ssh, Kind::Ssh, Kind::Ssh);
    let topic = t.commit_on("alice", "topic", "feature.txt");
    let dir = t.clone_of("bob");
    fs::copy(&t.sb.policy, dir.join(".git").join("team-policy.toml")).unwrap();
    t.sb.git_ok_in(&dir, ["config", "countersign.policy", "team-policy.toml"]);
    let sub = dir.join("sub");
    fs::create_dir_all(&sub).unwrap();
    let out = t.sb.countersign_as(
        &sub,
        t.key("bob"),
        ["status", "origin/topic", "--ref", "main"],
    );
    assert!(
        out.stdout
            .contains("needs: approvals [2 x reviewer, 1 x security]"),
        "{out}"
    );
    let out = t.sb.countersign_as(
        &sub,
        t.key("bob"),
        ["approve", &topic, "--ref", "main", "--no-note"],
    );
    assert_eq!(out.code, Some(0), "{out}");
    assert!(!out.stderr.contains("will not count"), "{out}");
}
