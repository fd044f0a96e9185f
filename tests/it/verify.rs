//! Offline verification of existing history.

use crate::common::*;
use crate::util::*;

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
