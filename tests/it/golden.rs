//! Golden outputs: the wording admins and pushers rely on, pinned in files
//! under `tests/golden/`. Set `COUNTERSIGN_BLESS=1` to rewrite them after
//! a deliberate change, and review the diff.

use std::fs;
use std::path::PathBuf;
use std::process::Command;

use crate::common::*;
use crate::util::*;

/// Compare `actual` with `tests/golden/<name>`; rewrite it when
/// `COUNTERSIGN_BLESS` is set.
#[track_caller]
fn golden(name: &str, actual: &str) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("golden")
        .join(name);
    if std::env::var_os("COUNTERSIGN_BLESS").is_some() {
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, actual).unwrap();
        return;
    }
    let expected = fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "cannot read {}: {e}\nrun with COUNTERSIGN_BLESS=1 to create it",
            path.display()
        )
    });
    assert!(
        expected == actual,
        "{} differs (COUNTERSIGN_BLESS=1 rewrites it; review the diff):\n--- expected\n{expected}\n--- actual\n{actual}",
        path.display()
    );
}

/// Object ids (12 to 64 hex digits) as `<id>`, trailing blanks removed.
fn normalize(text: &str) -> String {
    let mut out = String::new();
    for line in text.lines() {
        let mut l = String::new();
        let mut run = String::new();
        for c in line.chars().chain(std::iter::once('\n')) {
            if c.is_ascii_hexdigit() {
                run.push(c);
                continue;
            }
            if run.len() >= 12 && run.chars().any(|c| c.is_ascii_digit()) {
                l.push_str("<id>");
            } else {
                l.push_str(&run);
            }
            run.clear();
            if c != '\n' {
                l.push(c);
            }
        }
        out.push_str(l.trim_end());
        out.push('\n');
    }
    out
}

fn help(args: &[&str]) -> String {
    let out = Command::new(BIN).args(args).output().unwrap();
    assert!(out.status.success(), "{args:?}");
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn help_of_the_main_commands() {
    golden("help.txt", &help(&["--help"]));
    golden("help-hook.txt", &help(&["hook", "--help"]));
    golden("help-approve.txt", &help(&["approve", "--help"]));
    golden("help-merge.txt", &help(&["merge", "--help"]));
    golden("help-verify.txt", &help(&["verify", "--help"]));
}

/// `policy check` on a policy with several problems: every one, each with
/// `file:line:col` and the offending text underlined.
#[test]
fn policy_check_diagnostics() {
    let tmp = TempDir::new();
    fs::write(
        tmp.path().join("countersign.toml"),
        r#"[repository]
id = "acme/payments"

[roles]
developer = "writes code"

[people.alice]
name = "Alice"
roles = ["developer", "admin"]
ssh = ["ssh-ed25519 not-a-key alice"]

[[rule]]
refs = ["refs/heads/main"]
commit-signers = ["developer"]
force-psuh = true

[limits]
commits = 0
"#,
    )
    .unwrap();
    let out = Command::new(BIN)
        .args(["policy", "check", "--policy", "countersign.toml"])
        .current_dir(tmp.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    golden("policy-check.txt", &text);
}

/// One rejection as the pusher sees it (ids replaced by `<id>`).
#[test]
fn rejection_as_the_pusher_sees_it() {
    let (mut sb, _dev, _base) = with_dev(|_| vec![]);
    sb.commit_as(None, "Add retry to payment client");
    let out = sb.push(&["main"]);
    assert_rejected_with(&out, "unsigned-commit");
    let remote: String = out
        .stderr
        .lines()
        .filter(|l| l.starts_with("remote:"))
        .map(|l| format!("{l}\n"))
        .collect();
    golden("push-rejected.txt", &normalize(&remote));
}
