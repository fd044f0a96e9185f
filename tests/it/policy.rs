//! The policy file as the hook and `policy check` see it.

use std::fs;

use crate::common::*;
use crate::util::*;

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
