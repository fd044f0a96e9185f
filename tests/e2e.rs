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

#[test]
fn release_tag_signed_by_release_manager_is_accepted_then_frozen() {
    let (mut sb, dev, rm) = with_release_manager();
    let t1 = sb.tag_as(Some(&rm), "v1.0", "release 1.0", false);
    let out = sb.push(&[TAG]);
    assert_accepted(&out);
    sb.assert_server_ref(TAG, Some(&t1));

    // Moving it, even with a valid release-manager signature, is refused.
    let c = sb.commit_as(Some(&dev), "after the release");
    assert_accepted(&sb.push(&["main"]));
    sb.assert_server_ref(MAIN, Some(&c));
    let t2 = sb.tag_as(Some(&rm), "v1.0", "release 1.0, moved", true);
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
fn sha256_repository_is_refused() {
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
    let out = sb.push(&["main"]);
    assert_rejected_with(&out, "unsupported-object-format");
    sb.assert_server_ref(MAIN, None);
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
