//! The audit log as pushes write it.

use std::fs;

use crate::common::*;
use crate::util::*;

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
