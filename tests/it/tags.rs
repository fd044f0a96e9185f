//! Protected tags, replace refs and tag names.

use crate::common::*;
use crate::util::*;

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
