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

/// Many commits with the same problem: text output shows at most
/// `--max-findings` of each code (default 10), then the count of every
/// code; `--max-findings 0` and JSON show them all.
#[test]
fn verify_output_is_capped_per_code_with_a_summary() {
    let mut sb = Sandbox::new();
    let dev = sb.ssh_key("dev");
    sb.write_policy(&standard_policy(&[simple_person(
        "dev",
        &["developer"],
        &dev,
    )]));
    let script =
        "for i in $(seq 25); do git -c commit.gpgsign=false commit -q --allow-empty -m u$i; done";
    let mut sh = sb.cmd("sh");
    sh.current_dir(&sb.work).args(["-c", script]);
    assert!(run(sh, None).success);
    let policy = sb.policy.to_str().unwrap().to_string();
    let work = sb.work.clone();
    let verify = |extra: &[&str]| {
        let mut args = vec!["verify", "main", "--ref", MAIN, "--policy", policy.as_str()];
        args.extend_from_slice(extra);
        sb.countersign(&work, args)
    };
    let out = verify(&[]);
    assert_eq!(out.code, Some(1), "{out}");
    assert_eq!(
        out.stderr.matches("error[unsigned-commit]").count(),
        10,
        "{out}"
    );
    assert!(
        out.stderr.contains("verification failed: 25 problem(s)"),
        "{out}"
    );
    assert!(out.stderr.contains("15 more problem(s) not shown"), "{out}");
    assert!(out.stderr.contains("  unsigned-commit: 25\n"), "{out}");
    let out = verify(&["--max-findings", "3"]);
    assert_eq!(
        out.stderr.matches("error[unsigned-commit]").count(),
        3,
        "{out}"
    );
    let out = verify(&["--max-findings", "0"]);
    assert_eq!(
        out.stderr.matches("error[unsigned-commit]").count(),
        25,
        "{out}"
    );
    let out = verify(&["--format", "json"]);
    assert_eq!(
        out.stdout.matches("\"unsigned-commit\"").count(),
        25,
        "{out}"
    );
}
