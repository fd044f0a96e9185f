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

// ---------------------------------------------------------------------------
// the checkpoint: what every append verifies
// ---------------------------------------------------------------------------

fn checkpoint(sb: &Sandbox) -> std::path::PathBuf {
    sb.server.join("countersign").join("audit.log.checkpoint")
}

/// `seq` of the checkpoint the hook last wrote.
fn checkpoint_seq(sb: &Sandbox) -> u64 {
    let text = fs::read_to_string(checkpoint(sb)).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v["seq"].as_u64().unwrap()
}

/// Main plus three more accepted pushes: four records.
fn four_records() -> (Sandbox, Key) {
    let (mut sb, dev, _base) = with_dev(|_| vec![]);
    for i in 0..3 {
        sb.commit_as(Some(&dev), &format!("more {i}"));
        assert_accepted(&sb.push(&["main"]));
    }
    assert_eq!(audit_records(&sb).len(), 4);
    (sb, dev)
}

#[test]
fn untouched_log_keeps_accepting_and_its_checkpoint_follows() {
    let (mut sb, dev) = four_records();
    assert_eq!(checkpoint_seq(&sb), 4);
    sb.commit_as(Some(&dev), "fifth");
    assert_accepted(&sb.push(&["main"]));
    assert_eq!(checkpoint_seq(&sb), 5);
    let v = sb.countersign(&sb.server, ["audit", "verify"]);
    assert!(v.success && v.stdout.contains("5 record(s)"), "{v}");
}

#[test]
fn middle_record_edited_on_the_server_stops_the_next_push() {
    let (mut sb, dev) = four_records();
    let records = audit_records(&sb);
    // Record 2 says `rejected` instead of `accepted` (same length, so no
    // offset moves), and the last line is left as it was.
    let edited = records[1].replacen("\"accepted\"", "\"rejected\"", 1);
    assert_ne!(edited, records[1]);
    let text: String = [&records[0], &edited, &records[2], &records[3]]
        .iter()
        .map(|l| format!("{l}\n"))
        .collect();
    fs::write(audit_log(&sb), text).unwrap();
    let main = sb.server_ref(MAIN);
    sb.commit_as(Some(&dev), "after the edit");
    let out = sb.push(&["main"]);
    assert_rejected_with(&out, "audit-log-unwritable");
    assert!(
        out.stderr.contains("the audit log: the log is damaged")
            && out.stderr.contains("line 3: record 3 does not follow")
            && !out
                .stderr
                .lines()
                .filter(|l| l.starts_with("remote:"))
                .any(|l| l.contains(&sb.server.display().to_string())),
        "{out}"
    );
    sb.assert_server_ref(MAIN, main.as_deref());
    assert_eq!(audit_records(&sb).len(), 4, "the damaged log was extended");
}

/// The last record edited: the chain alone cannot tell, the checkpoint can.
#[test]
fn last_record_edited_on_the_server_stops_the_next_push() {
    let (mut sb, dev) = four_records();
    let mut records = audit_records(&sb);
    records[3] = records[3].replacen("\"accepted\"", "\"rejected\"", 1);
    let text: String = records.iter().map(|l| format!("{l}\n")).collect();
    fs::write(audit_log(&sb), text).unwrap();
    sb.commit_as(Some(&dev), "after the edit");
    let out = sb.push(&["main"]);
    assert_rejected_with(&out, "audit-log-unwritable");
    assert!(
        out.stderr
            .contains("line 4: record 4, the last one an earlier append verified"),
        "{out}"
    );
    let v = sb.countersign(&sb.server, ["audit", "verify"]);
    assert_eq!(v.code, Some(1), "{v}");
    assert!(v.stderr.contains("no longer what was verified"), "{v}");
}

#[test]
fn records_cut_off_the_log_stop_the_next_push() {
    let (mut sb, dev) = four_records();
    let records = audit_records(&sb);
    // Whole records cut off the end: the rest still verifies as a chain.
    let text: String = records[..2].iter().map(|l| format!("{l}\n")).collect();
    fs::write(audit_log(&sb), text).unwrap();
    let main = sb.server_ref(MAIN);
    sb.commit_as(Some(&dev), "after the cut");
    let out = sb.push(&["main"]);
    assert_rejected_with(&out, "audit-log-unwritable");
    assert!(
        out.stderr.contains("audit.log") && out.stderr.contains("cut off"),
        "{out}"
    );
    sb.assert_server_ref(MAIN, main.as_deref());
    // `audit verify` on the server says so too.
    let v = sb.countersign(&sb.server, ["audit", "verify"]);
    assert_eq!(v.code, Some(1), "{v}");
    assert!(v.stderr.contains("cut off"), "{v}");
    // An admin who restored the log on purpose records its head, and
    // pushes go on from there.
    let v = sb.countersign(&sb.server, ["audit", "verify", "--checkpoint"]);
    assert!(v.success, "{v}");
    assert_accepted(&sb.push(&["main"]));
    assert_eq!(checkpoint_seq(&sb), 3);
}

#[test]
fn old_log_without_checkpoint_is_verified_once_and_gets_one() {
    let (mut sb, dev) = four_records();
    fs::remove_file(checkpoint(&sb)).unwrap();
    sb.commit_as(Some(&dev), "after the upgrade");
    assert_accepted(&sb.push(&["main"]));
    assert_eq!(checkpoint_seq(&sb), 5);
    // Without a checkpoint, the whole log is verified: an edited old log
    // is not a way around it.
    fs::remove_file(checkpoint(&sb)).unwrap();
    let records = audit_records(&sb);
    let mut lines: Vec<String> = records.clone();
    lines[1] = lines[1].replacen("\"accepted\"", "\"rejected\"", 1);
    let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
    fs::write(audit_log(&sb), text).unwrap();
    sb.commit_as(Some(&dev), "after the edit");
    let out = sb.push(&["main"]);
    assert_rejected_with(&out, "audit-log-unwritable");
    assert!(out.stderr.contains("line 3:"), "{out}");
}

// ---------------------------------------------------------------------------
// pushes rejected before parsing are recorded
// ---------------------------------------------------------------------------

/// Run the installed hook as git would, with `stdin` as its input.
fn run_hook(sb: &Sandbox, git_dir: &std::path::Path, stdin: &[u8]) -> Out {
    let mut c = sb.cmd(sb.server.join("hooks").join("pre-receive"));
    c.current_dir(git_dir).env("GIT_DIR", ".");
    run(c, Some(stdin))
}

#[test]
fn malformed_input_is_rejected_and_recorded() {
    let (sb, _dev, _base) = with_dev(|_| vec![]);
    let out = run_hook(&sb, &sb.server, b"not a ref update\n");
    assert!(!out.success, "{out}");
    assert!(out.stderr.contains("error[bad-input]"), "{out}");
    let v = sb.countersign(&sb.server, ["audit", "verify"]);
    assert!(v.success && v.stdout.contains("2 record(s)"), "{v}");
    let show = sb.countersign(&sb.server, ["audit", "show", "--format", "json"]);
    assert!(show.success, "{show}");
    let records: serde_json::Value = serde_json::from_str(&show.stdout).unwrap();
    let last = &records[1];
    assert_eq!(last["verdict"], "rejected", "{last}");
    assert_eq!(last["findings"][0]["code"], "bad-input", "{last}");
    // What is known of the policy: its file, and why it was not loaded.
    let policy = &last["policy"];
    assert_eq!(policy["file"], sb.policy.display().to_string(), "{last}");
    assert!(
        policy["error"]
            .as_str()
            .is_some_and(|e| e.contains("not loaded")),
        "{last}"
    );
    // The accepted push's record names the policy by digest.
    assert_eq!(
        records[0]["policy"]["sha256"].as_str().map(str::len),
        Some(64)
    );
    let text = sb.countersign(&sb.server, ["audit", "show"]);
    assert!(
        text.stdout.contains("rejected by") && text.stdout.contains("[bad-input]"),
        "{text}"
    );
}

#[test]
fn push_to_an_unopenable_repository_is_recorded_in_git_dir() {
    let (sb, _dev, _base) = with_dev(|_| vec![]);
    // A repository countersign cannot open: an extension libgit2 does
    // not know.
    let broken = sb.root().join("broken.git");
    for (dir, args) in [
        (
            sb.root().to_path_buf(),
            vec!["init", "-q", "--bare", "broken.git"],
        ),
        (
            broken.clone(),
            vec!["config", "core.repositoryFormatVersion", "1"],
        ),
        (
            broken.clone(),
            vec!["config", "extensions.countersignTestUnknown", "true"],
        ),
    ] {
        let out = run(sb.git_in(&dir, args), None);
        assert!(out.success, "{out}");
    }
    let out = run_hook(&sb, &broken, b"");
    assert!(!out.success, "{out}");
    let log = broken.join("countersign").join("audit.log");
    let v = sb.countersign(
        sb.root(),
        ["audit", "verify", "--log", log.to_str().unwrap()],
    );
    assert!(v.success && v.stdout.contains("1 record(s)"), "{v}");
    let text = fs::read_to_string(&log).unwrap();
    let rec: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
    assert_eq!(rec["verdict"], "rejected", "{rec}");
    assert!(
        rec["policy"]["error"]
            .as_str()
            .is_some_and(|e| e.contains("could not be opened")),
        "{rec}"
    );
    assert!(
        rec["findings"][0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("cannot open the repository")),
        "{rec}"
    );
}

// ---------------------------------------------------------------------------
// core.sharedRepository
// ---------------------------------------------------------------------------

#[cfg(unix)]
#[test]
fn shared_repository_makes_the_log_group_writable() {
    use std::os::unix::fs::PermissionsExt;
    let mut sb = Sandbox::new();
    let dev = sb.ssh_key("dev");
    sb.server_git_ok(["config", "core.sharedRepository", "group"]);
    sb.install(&standard_policy(&[simple_person(
        "dev",
        &["developer"],
        &dev,
    )]));
    create_main(&mut sb, &dev);
    let mode = |p: &std::path::Path| fs::metadata(p).unwrap().permissions().mode() & 0o7777;
    let log = audit_log(&sb);
    assert_eq!(mode(&log) & 0o060, 0o060, "log mode {:o}", mode(&log));
    let cp = checkpoint(&sb);
    assert_eq!(mode(&cp) & 0o060, 0o060, "checkpoint mode {:o}", mode(&cp));
    let dir = log.parent().unwrap();
    assert_eq!(mode(dir) & 0o2070, 0o2070, "directory mode {:o}", mode(dir));
    // A mode given in octal is taken as it is.
    let mut sb = Sandbox::new();
    let dev = sb.ssh_key("dev");
    sb.server_git_ok(["config", "core.sharedRepository", "0640"]);
    sb.install(&standard_policy(&[simple_person(
        "dev",
        &["developer"],
        &dev,
    )]));
    create_main(&mut sb, &dev);
    assert_eq!(mode(&audit_log(&sb)), 0o640);
    assert_eq!(mode(audit_log(&sb).parent().unwrap()), 0o2750);
}
