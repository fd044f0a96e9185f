//! Running countersign where admins host Git (issue 12): man pages and
//! shell completions, JSON listings, install.sh's help and starter
//! policy, what the pusher sees of the server, safe.directory, `doctor`.

use std::ffi::OsStr;
use std::fs;

use crate::common::*;
use crate::util::*;

// ---------------------------------------------------------------------------
// Man pages and shell completions
// ---------------------------------------------------------------------------

#[test]
fn bash_completion_names_the_subcommands() {
    let sb = Sandbox::new();
    let out = sb.countersign(sb.root(), ["completions", "bash"]);
    assert!(out.success, "completions bash failed\n{out}");
    assert!(
        out.stdout.contains("complete ") && out.stdout.contains("countersign"),
        "not a bash completion script\n{out}"
    );
    for sub in [
        "verify", "approve", "policy", "audit", "people", "keys", "roles",
    ] {
        assert!(
            out.stdout.contains(sub),
            "the bash completion does not mention `{sub}`\n{out}"
        );
    }
    // The nested subcommands too.
    assert!(out.stdout.contains("migrate"), "no `policy migrate`\n{out}");
    for shell in ["zsh", "fish", "elvish", "powershell"] {
        let out = sb.countersign(sb.root(), ["completions", shell]);
        assert!(
            out.success && out.stdout.contains("verify"),
            "completions {shell} failed\n{out}"
        );
    }
    let out = sb.countersign(sb.root(), ["completions", "tcsh"]);
    assert_eq!(
        out.code,
        Some(2),
        "an unknown shell is a usage error\n{out}"
    );
}

#[test]
fn man_pages_are_written_per_subcommand() {
    let sb = Sandbox::new();
    let dir = sb.root().join("man/man1");
    let out = sb.countersign(
        sb.root(),
        [OsStr::new("man"), OsStr::new("--out"), dir.as_os_str()],
    );
    assert!(out.success, "countersign man failed\n{out}");
    for page in [
        "countersign.1",
        "countersign-verify.1",
        "countersign-policy.1",
        "countersign-policy-check.1",
        "countersign-audit-verify.1",
        "countersign-keys-list.1",
    ] {
        let path = dir.join(page);
        let text = fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("no man page {}: {e}\n{out}", path.display()));
        let th = text
            .lines()
            .find(|l| l.starts_with(".TH "))
            .unwrap_or_else(|| panic!("{page} has no .TH line:\n{text}"));
        assert!(
            th.starts_with(&format!(".TH {} 1", page.trim_end_matches(".1"))),
            "{page}: unexpected title line `{th}`"
        );
        assert!(text.contains(".SH NAME"), "{page} has no NAME section");
    }
    // Rendered by man(1) itself where it is installed.
    let mut c = sb.cmd("man");
    c.arg("-l")
        .arg(dir.join("countersign-policy-check.1"))
        .env("MANPAGER", "cat")
        .env("PAGER", "cat");
    match c.output() {
        Ok(o) => {
            let text = String::from_utf8_lossy(&o.stdout);
            assert!(
                o.status.success() && text.contains("NAME") && text.contains("--policy"),
                "man -l cannot render the page:\n{text}\n{}",
                String::from_utf8_lossy(&o.stderr)
            );
        }
        Err(e) => eprintln!("man(1) not available ({e}); only the files were checked"),
    }
}

// ---------------------------------------------------------------------------
// --format json on policy check, status and every listing
// ---------------------------------------------------------------------------

fn parse_json(out: &Out) -> serde_json::Value {
    serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("stdout is not one JSON document: {e}\n{out}"))
}

#[test]
fn policy_check_json_of_a_valid_and_an_invalid_policy() {
    let (sb, _dev, _base) = with_dev(|_| vec![]);
    let mut c = sb.cmd(BIN);
    c.args(["policy", "check", "--format", "json", "--policy"])
        .arg(&sb.policy);
    let out = run(c, None);
    assert_eq!(out.code, Some(0), "{out}");
    let v = parse_json(&out);
    assert_eq!(v["valid"], true, "{v}");
    assert_eq!(v["repository"], "test/e2e", "{v}");
    assert_eq!(v["people"], serde_json::json!(["dev"]), "{v}");
    assert_eq!(v["keys"], 1, "{v}");
    let rule = &v["rules"][0];
    assert!(
        rule["refs"]
            .as_array()
            .is_some_and(|r| r.iter().any(|x| x == "refs/heads/main")),
        "{v}"
    );
    assert_eq!(rule["force_push"], false, "{v}");

    // Invalid: exit 1, every problem with its position, nothing on stderr
    // that a JSON reader would have to parse.
    sb.write_policy("[repository]\nid = \"x\"\n[[rule]]\nrefs = [\"refs/heads/main\"]\ncomit-signers = [\"developer\"]\n");
    let mut c = sb.cmd(BIN);
    c.args(["policy", "check", "--format", "json", "--policy"])
        .arg(&sb.policy);
    let out = run(c, None);
    assert_eq!(out.code, Some(1), "{out}");
    let v = parse_json(&out);
    assert_eq!(v["valid"], false, "{v}");
    let problems = v["problems"].as_array().expect("problems");
    assert!(
        problems.iter().any(|p| p["line"] == 5
            && p["message"]
                .as_str()
                .is_some_and(|m| m.contains("comit-signers"))),
        "{v}"
    );

    // Missing file: still JSON, still exit 1.
    let mut c = sb.cmd(BIN);
    c.args(["policy", "check", "--format", "json", "--policy"])
        .arg(sb.root().join("nope.toml"));
    let out = run(c, None);
    assert_eq!(out.code, Some(1), "{out}");
    assert_eq!(parse_json(&out)["valid"], false, "{out}");
}

#[test]
fn every_listing_has_json() {
    let (sb, _dev, _base) = with_dev(|_| vec![]);
    let policy = sb.policy.to_string_lossy().into_owned();
    for args in [
        &["people", "list", "--format", "json", "--policy", &policy][..],
        &["keys", "list", "--format", "json", "--policy", &policy][..],
        &["roles", "list", "--format", "json", "--policy", &policy][..],
        &["policy", "check", "--format", "json", "--policy", &policy][..],
        &["audit", "show", "--format", "json"][..],
    ] {
        let out = sb.countersign(&sb.server, args);
        assert_eq!(out.code, Some(0), "{args:?}\n{out}");
        parse_json(&out);
    }
}

#[test]
fn status_json_lists_the_approvals() {
    let t = Team::usual(Kind::Ssh, Kind::Ssh, Kind::Ssh, Kind::Ssh);
    let topic = t.commit_on("alice", "topic", "feature.txt");
    t.approve("bob", &topic, &[]);
    t.on_main("mia");
    let out = t.cs(
        "mia",
        &[
            "status",
            "origin/topic",
            "--ref",
            "main",
            "--format",
            "json",
        ],
    );
    assert_eq!(out.code, Some(1), "one approval is not enough\n{out}");
    let v = parse_json(&out);
    assert_eq!(v["ready"], false, "{v}");
    assert_eq!(v["topic_commit"], topic.as_str(), "{v}");
    assert_eq!(v["ref"], "refs/heads/main", "{v}");
    let approvals = v["merge"]["approvals"].as_array().expect("approvals");
    assert_eq!(approvals.len(), 1, "{v}");
    assert_eq!(approvals[0]["person"], "bob", "{v}");
    assert_eq!(v["merge"]["authors"], serde_json::json!(["alice"]), "{v}");
    assert_eq!(v["decision"]["verdict"], "rejected", "{v}");
    assert_eq!(
        v["rules"][0]["merge"]["approvals"],
        serde_json::json!([{ "role": "reviewer", "count": 2 }, { "role": "security", "count": 1 }]),
        "{v}"
    );
}

// ---------------------------------------------------------------------------
// install.sh --help, and a starter policy that explains itself
// ---------------------------------------------------------------------------

#[test]
fn install_help_is_usage_text_not_source() {
    let sb = Sandbox::new();
    for flag in ["--help", "-h"] {
        let mut c = sb.cmd("bash");
        c.arg(source_dir().join("install.sh")).arg(flag);
        let out = run(c, None);
        assert_eq!(out.code, Some(0), "{out}");
        assert!(
            out.stdout.starts_with("Usage: install.sh <bare-repo>"),
            "install.sh {flag} should start with its usage line\n{out}"
        );
        for opt in ["--policy FILE", "--binary PATH", "--chain", "--help"] {
            assert!(out.stdout.contains(opt), "{flag}: no `{opt}`\n{out}");
        }
        for source in ["set -euo", "#!", "die()", "src_dir", "\n#"] {
            assert!(
                !out.stdout.contains(source),
                "install.sh {flag} prints its own source (`{source}`)\n{out}"
            );
        }
    }
}

#[test]
fn starter_policy_names_no_file_the_server_lacks() {
    let sb = Sandbox::new();
    let out = sb.run_install_with(false, &[]);
    assert!(out.success, "{out}");
    let starter = fs::read_to_string(sb.server.join("countersign.toml")).unwrap();
    for (what, text) in [("install.sh", &out.stderr), ("the starter", &starter)] {
        assert!(
            !text.contains("config.example"),
            "{what} points at config.example.toml, which only the source tree has\n{text}"
        );
        assert!(
            text.contains("countersign policy init --help"),
            "{what} should point at `countersign policy init --help`\n{text}"
        );
    }
    // Every section is explained where it stands.
    for section in [
        "[repository]",
        "[roles]",
        "[people.",
        "[[rule]]",
        "[rule.merge]",
        "[policy-changes]",
        "[limits]",
    ] {
        assert!(
            starter.contains(section),
            "the starter does not mention {section}\n{starter}"
        );
    }
    let help = sb.countersign(sb.root(), ["policy", "init", "--help"]);
    assert!(help.success, "{help}");
    for section in [
        "[repository]",
        "[roles]",
        "[people.ID]",
        "[[rule]]",
        "[rule.merge]",
        "[policy-changes]",
    ] {
        assert!(
            help.stdout.contains(section),
            "`policy init --help` does not explain {section}\n{help}"
        );
    }
    // And it is still a valid policy.
    let check = sb.policy_check(&sb.server.join("countersign.toml"));
    assert_eq!(check.code, Some(0), "{check}");
}

// ---------------------------------------------------------------------------
// No server paths in what the pusher sees
// ---------------------------------------------------------------------------

/// What the hook said to the pusher: the `remote:` lines of git push
/// (git's own lines name the URL, which is the pusher's own knowledge).
fn remote_lines(out: &Out) -> String {
    out.stderr
        .lines()
        .filter(|l| l.starts_with("remote:"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The last record of the server's audit log.
fn last_record(sb: &Sandbox) -> serde_json::Value {
    let log = fs::read_to_string(sb.server.join("countersign/audit.log")).unwrap();
    serde_json::from_str(log.lines().last().unwrap()).unwrap()
}

#[track_caller]
fn assert_no_server_path(sb: &Sandbox, out: &Out) {
    let said = remote_lines(out);
    let root = sb.root().to_str().unwrap();
    assert!(
        !said.is_empty() && !said.contains(root),
        "the pusher was shown a server path (under {root}):\n{said}"
    );
}

#[test]
fn pusher_sees_no_server_paths_admin_does() {
    let (mut sb, dev, base) = with_dev(|_| vec![]);
    let policy = sb.policy.to_str().unwrap().to_string();

    // unknown-signer: its help named the policy file's full path.
    let stranger = sb.ssh_key("stranger");
    sb.commit_as(Some(&stranger), "signed by a key the policy lacks");
    let out = sb.push(&["main"]);
    assert_rejected_with(&out, "unknown-signer");
    assert_no_server_path(&sb, &out);
    sb.reset_hard(&base);

    // policy-invalid: the problems are shown at the file's name; the
    // path is in the audit record.
    let good = fs::read_to_string(&sb.policy).unwrap();
    sb.write_policy(&format!("{good}\n[bogus]\n"));
    sb.commit_as(Some(&dev), "signed, policy broken");
    let out = sb.push(&["main"]);
    assert_rejected_with(&out, "policy-invalid");
    assert_no_server_path(&sb, &out);
    assert!(
        remote_lines(&out).contains("countersign.toml:"),
        "the pusher should still see where the policy is wrong\n{out}"
    );
    let rec = last_record(&sb);
    assert!(
        rec["findings"][0]["detail"]
            .as_str()
            .is_some_and(|d| d.contains(&policy)),
        "the audit record should name the policy file for the admin: {rec}"
    );

    // policy-missing.
    fs::remove_file(&sb.policy).unwrap();
    let out = sb.push(&["main"]);
    assert_rejected_with(&out, "policy-missing");
    assert_no_server_path(&sb, &out);
    assert!(
        remote_lines(&out).contains("countersign doctor"),
        "the pusher should be told what the admin runs\n{out}"
    );
    let rec = last_record(&sb);
    assert_eq!(rec["findings"][0]["code"], "policy-missing", "{rec}");
    assert!(
        rec["findings"][0]["detail"]
            .as_str()
            .is_some_and(|d| d.contains(&policy)),
        "the audit record should name the missing file for the admin: {rec}"
    );
    fs::write(&sb.policy, &good).unwrap();

    // audit-log-unwritable: the log's directory is a file.
    let blocker = sb.root().join("not-a-dir");
    fs::write(&blocker, "").unwrap();
    let log = blocker.join("audit.log");
    sb.server_git_ok(["config", "countersign.auditLog", log.to_str().unwrap()]);
    let out = sb.push(&["main"]);
    assert_rejected_with(&out, "audit-log-unwritable");
    assert_no_server_path(&sb, &out);
    assert!(remote_lines(&out).contains("countersign doctor"), "{out}");
}

// ---------------------------------------------------------------------------
// A repository owned by another user: safe.directory, not "no repository"
// ---------------------------------------------------------------------------

#[test]
fn admin_command_on_another_users_repository_names_safe_directory() {
    use std::os::unix::fs::MetadataExt;
    let (sb, _dev, _base) = with_dev(|_| vec![]);
    let me = fs::metadata(sb.root()).unwrap().uid();
    if let Err(e) = std::os::unix::fs::chown(&sb.server, Some(65534), Some(65534)) {
        eprintln!("skipped: cannot give the repository to uid 65534 (not root?): {e}");
        return;
    }
    for args in [
        &["people", "list"][..],
        &["roles", "add", "ops", "--description", "runs things"][..],
        &["policy", "check"][..],
        &["audit", "show"][..],
        &["verify", "main", "--ref", "refs/heads/main"][..],
    ] {
        let out = sb.countersign(&sb.server, args);
        assert!(
            !out.success,
            "{args:?} worked on a repository git refuses\n{out}"
        );
        assert!(
            out.stderr.contains("safe.directory")
                && out
                    .stderr
                    .contains("git config --global --add safe.directory"),
            "{args:?} should name safe.directory and its fix\n{out}"
        );
        assert!(
            !out.stderr.contains("no repository"),
            "{args:?} blamed a missing repository\n{out}"
        );
    }
    // The fix the message gives works.
    let server = sb.server.to_str().unwrap().to_string();
    let trust = run(
        sb.git_in(
            sb.root(),
            ["config", "--global", "--add", "safe.directory", &server],
        ),
        None,
    );
    assert!(trust.success, "{trust}");
    let out = sb.countersign(&sb.server, ["people", "list"]);
    assert!(out.success, "with safe.directory set\n{out}");
    assert!(out.stdout.contains("dev"), "{out}");
    std::os::unix::fs::chown(&sb.server, Some(me), Some(me)).unwrap();
}

// ---------------------------------------------------------------------------
// countersign doctor
// ---------------------------------------------------------------------------

fn doctor(sb: &Sandbox, extra: &[&str]) -> Out {
    let mut c = sb.cmd(BIN);
    c.args(["doctor", "--repo"]).arg(&sb.server).args(extra);
    run(c, None)
}

/// The JSON checks that came out `status`, as "check: message" lines.
fn doctor_json(sb: &Sandbox, status: &str) -> (Out, Vec<String>) {
    let out = doctor(sb, &["--format", "json"]);
    let v = parse_json(&out);
    let found = v["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .filter(|c| c["status"] == status)
        .map(|c| {
            format!(
                "{}: {}",
                c["check"].as_str().unwrap_or(""),
                c["message"].as_str().unwrap_or("")
            )
        })
        .collect();
    (out, found)
}

#[test]
fn doctor_passes_a_good_install() {
    let (sb, _dev, _base) = with_dev(|_| vec![]);
    let out = doctor(&sb, &[]);
    assert_eq!(out.code, Some(0), "a good install should pass\n{out}");
    assert!(out.stdout.contains("0 problem(s)"), "{out}");
    for check in [
        "core.hooksPath",
        "shim",
        "binary",
        "policy",
        "audit log",
        "ownership",
    ] {
        assert!(
            out.stdout.contains(&format!("ok       {check}:")),
            "no ok line for {check}\n{out}"
        );
    }
    let (out, problems) = doctor_json(&sb, "problem");
    assert_eq!(out.code, Some(0), "{out}");
    assert!(problems.is_empty(), "{problems:?}");
}

#[test]
fn doctor_finds_core_hooks_path_at_any_level() {
    let (sb, _dev, _base) = with_dev(|_| vec![]);
    let elsewhere = sb.root().join("other-hooks");
    fs::create_dir(&elsewhere).unwrap();
    let dir = elsewhere.to_str().unwrap();
    // In the repository's config.
    sb.server_git_ok(["config", "core.hooksPath", dir]);
    let out = doctor(&sb, &[]);
    assert_eq!(out.code, Some(1), "core.hooksPath bypasses the shim\n{out}");
    assert!(
        out.stdout.contains("core.hooksPath is set (local") && out.stdout.contains(dir),
        "doctor should name the local core.hooksPath and where it points\n{out}"
    );
    assert!(out.stdout.contains("is never run"), "{out}");
    sb.server_git_ok(["config", "--unset", "core.hooksPath"]);
    assert_eq!(doctor(&sb, &[]).code, Some(0));
    // In the hook user's global config (what install.sh could not see).
    let set = run(
        sb.git_in(sb.root(), ["config", "--global", "core.hooksPath", dir]),
        None,
    );
    assert!(set.success, "{set}");
    let (out, problems) = doctor_json(&sb, "problem");
    assert_eq!(out.code, Some(1), "{out}");
    let (_, warnings) = doctor_json(&sb, "warning");
    assert!(
        warnings
            .iter()
            .any(|w| w.starts_with("core.hooksPath: ") && w.contains("global")),
        "{warnings:?}"
    );
    assert!(
        problems.iter().any(|p| p.starts_with("shim: ")),
        "{problems:?}"
    );
}

#[test]
fn doctor_finds_a_shim_without_its_binary() {
    let (sb, _dev, _base) = with_dev(|_| vec![]);
    let shim = sb.server.join("hooks/pre-receive");
    let text = fs::read_to_string(&shim).unwrap();
    let gone = sb.root().join("gone/countersign");
    let bin_line = text
        .lines()
        .find(|l| l.starts_with("COUNTERSIGN_BIN="))
        .expect("the shim names its binary")
        .to_string();
    fs::write(
        &shim,
        text.replace(&bin_line, &format!("COUNTERSIGN_BIN='{}'", gone.display())),
    )
    .unwrap();
    let out = doctor(&sb, &[]);
    assert_eq!(out.code, Some(1), "{out}");
    assert!(
        out.stdout.contains("problem  binary:") && out.stdout.contains(gone.to_str().unwrap()),
        "doctor should name the missing binary\n{out}"
    );

    // A foreign hook instead of the shim.
    fs::write(&shim, "#!/bin/sh\nexit 0\n").unwrap();
    let out = doctor(&sb, &[]);
    assert_eq!(out.code, Some(1), "{out}");
    assert!(out.stdout.contains("is not countersign's shim"), "{out}");

    // A chained hook that cannot run.
    let out = sb.run_install_with(true, &["--chain"]);
    assert!(out.success, "{out}");
    let chained = sb.server.join("hooks/pre-receive.chained");
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(&chained, fs::Permissions::from_mode(0o644)).unwrap();
    let out = doctor(&sb, &[]);
    assert_eq!(out.code, Some(1), "{out}");
    assert!(out.stdout.contains("problem  chained hook:"), "{out}");
}

#[test]
fn doctor_names_what_the_pusher_is_not_shown() {
    let (sb, _dev, _base) = with_dev(|_| vec![]);
    let policy = sb.policy.to_str().unwrap().to_string();
    // An invalid policy: the file, the line.
    let good = fs::read_to_string(&sb.policy).unwrap();
    sb.write_policy(&format!("{good}\n[bogus]\n"));
    let out = doctor(&sb, &[]);
    assert_eq!(out.code, Some(1), "{out}");
    assert!(
        out.stdout.contains("problem  policy: [policy-invalid]") && out.stdout.contains(&policy),
        "doctor should name the invalid policy file\n{out}"
    );
    // A missing policy.
    fs::remove_file(&sb.policy).unwrap();
    let out = doctor(&sb, &[]);
    assert_eq!(out.code, Some(1), "{out}");
    assert!(
        out.stdout.contains("[policy-missing]") && out.stdout.contains(&policy),
        "{out}"
    );
    fs::write(&sb.policy, &good).unwrap();
    // An audit log that cannot be created: its directory is a file.
    let blocker = sb.root().join("not-a-dir");
    fs::write(&blocker, "").unwrap();
    let log = blocker.join("audit.log");
    sb.server_git_ok(["config", "countersign.auditLog", log.to_str().unwrap()]);
    let out = doctor(&sb, &[]);
    assert_eq!(out.code, Some(1), "{out}");
    assert!(
        out.stdout.contains("problem  audit log:") && out.stdout.contains(log.to_str().unwrap()),
        "doctor should name the audit log\n{out}"
    );
}

// ---------------------------------------------------------------------------
// countersign doctor: the signed ref-state log
// ---------------------------------------------------------------------------

/// The JSON check named `check`: (status, message, fix).
fn doctor_check(sb: &Sandbox, check: &str) -> Vec<(String, String, String)> {
    let out = doctor(sb, &["--format", "json"]);
    let v = parse_json(&out);
    v["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .filter(|c| c["check"] == check)
        .map(|c| {
            let s = |k: &str| c[k].as_str().unwrap_or("").to_string();
            (s("status"), s("message"), s("fix"))
        })
        .collect()
}

#[track_caller]
fn assert_check(sb: &Sandbox, check: &str, status: &str) -> (String, String) {
    let found = doctor_check(sb, check);
    assert!(
        found.iter().any(|(s, _, _)| s == status),
        "expected a `{status}` {check} check, got {found:?}\n{}",
        doctor(sb, &[])
    );
    let (_, m, f) = found.into_iter().find(|(s, _, _)| s == status).unwrap();
    (m, f)
}

fn set_mode(path: &std::path::Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

#[test]
fn doctor_passes_the_ref_state_log_of_a_good_install() {
    let (sb, _dev, _base) = with_dev(|_| vec![]);
    let out = doctor(&sb, &[]);
    assert_eq!(out.code, Some(0), "{out}");
    for check in ["post-receive shim", "server key", "ref-state log"] {
        assert!(
            out.stdout.contains(&format!("ok       {check}:")),
            "no ok line for {check}\n{out}"
        );
    }
    assert!(out.stdout.contains("verifies with the server key"), "{out}");
    // The standard policy publishes no key: clones trust on first use.
    let (m, fix) = assert_check(&sb, "log key in policy", "warning");
    assert!(m.contains("first use"), "{m}");
    let key = fs::read_to_string(sb.server.join("countersign/server-key.pub")).unwrap();
    let key = key.trim();
    assert!(fix.contains(key), "the fix names the server's key: {fix}");
    // Published: ok.
    let good = fs::read_to_string(&sb.policy).unwrap();
    sb.write_policy(&format!("{good}\n[log]\nserver-key = \"{key}\"\n"));
    assert_check(&sb, "log key in policy", "ok");
    assert_eq!(doctor(&sb, &[]).code, Some(0));
    // Another key published: every push would be refused.
    let mut sb = sb;
    let other = sb.ssh_key("other");
    let Key::Ssh { public, .. } = &other else {
        unreachable!()
    };
    sb.write_policy(&format!("{good}\n[log]\nserver-key = \"{public}\"\n"));
    let (m, _) = assert_check(&sb, "log key in policy", "problem");
    assert!(m.contains("ref-log-broken"), "{m}");
    assert_eq!(doctor(&sb, &[]).code, Some(1));
}

#[test]
fn doctor_finds_a_missing_post_receive_shim() {
    let (sb, _dev, _base) = with_dev(|_| vec![]);
    let hook = sb.server.join("hooks/post-receive");
    let saved = fs::read(&hook).unwrap();
    fs::remove_file(&hook).unwrap();
    let out = doctor(&sb, &[]);
    assert_eq!(out.code, Some(1), "{out}");
    let (m, fix) = assert_check(&sb, "post-receive shim", "problem");
    assert!(m.contains("no readable post-receive hook"), "{m}");
    assert!(fix.contains("install.sh"), "{fix}");
    // A foreign post-receive hook.
    fs::write(&hook, "#!/bin/sh\nexit 0\n").unwrap();
    set_mode(&hook, 0o755);
    let (m, _) = assert_check(&sb, "post-receive shim", "problem");
    assert!(m.contains("is not countersign's"), "{m}");
    // The shim, not executable.
    fs::write(&hook, &saved).unwrap();
    set_mode(&hook, 0o644);
    let (_, fix) = assert_check(&sb, "post-receive shim", "problem");
    assert!(fix.starts_with("chmod +x"), "{fix}");
    set_mode(&hook, 0o755);
    assert_check(&sb, "post-receive shim", "ok");
}

#[test]
fn doctor_finds_a_server_key_others_can_read() {
    let (sb, _dev, _base) = with_dev(|_| vec![]);
    let key = sb.server.join("countersign/server-key");
    set_mode(&key, 0o644);
    let out = doctor(&sb, &[]);
    assert_eq!(out.code, Some(1), "{out}");
    let (m, fix) = assert_check(&sb, "server key", "problem");
    assert!(m.contains("644") && m.contains("ref-log-broken"), "{m}");
    assert!(fix.contains("chmod 600"), "{fix}");
    // A repository shared with its group may let the group read it.
    set_mode(&key, 0o640);
    assert_check(&sb, "server key", "problem");
    sb.server_git_ok(["config", "core.sharedRepository", "group"]);
    let (m, _) = assert_check(&sb, "server key", "ok");
    assert!(m.contains("group"), "{m}");
    set_mode(&key, 0o644);
    let (_, fix) = assert_check(&sb, "server key", "problem");
    assert!(fix.contains("chmod 640"), "{fix}");
}

/// Whoever can write the repository's config, hooks, objects or
/// countersign/ is an operator (they can switch the hook off): doctor says
/// who that is beyond the owner, as a problem when it is everyone.
#[test]
fn doctor_names_who_else_can_write_the_repository() {
    let (sb, _dev, _base) = with_dev(|_| vec![]);
    let tight = [
        sb.server.clone(),
        sb.server.join("config"),
        sb.server.join("objects"),
        sb.server.join("hooks"),
        sb.server.join("hooks/pre-receive"),
    ];
    for p in &tight {
        set_mode(p, if p.ends_with("config") { 0o644 } else { 0o755 });
    }
    if sb.server.join("countersign").exists() {
        set_mode(&sb.server.join("countersign"), 0o755);
    }
    let (m, _) = assert_check(&sb, "file writers", "ok");
    assert!(m.contains("only the owner"), "{m}");
    // A shared repository: git makes the directory and config group-writable.
    sb.server_git_ok(["config", "core.sharedRepository", "group"]);
    set_mode(&sb.server.join("config"), 0o664);
    set_mode(&sb.server.join("hooks"), 0o2775);
    let (m, fix) = assert_check(&sb, "file writers", "warning");
    assert!(
        m.contains("config (664)") && m.contains("hooks (2775)"),
        "{m}"
    );
    assert!(m.contains("operator"), "{m}");
    assert!(fix.contains("git-shell"), "{fix}");
    let (_, problems) = doctor_json(&sb, "problem");
    assert!(
        !problems.iter().any(|p| p.starts_with("file writers")),
        "a warning, not a problem: {problems:?}"
    );
    // Writable by everyone: anyone with a shell replaces the shim.
    set_mode(&sb.server.join("hooks/pre-receive"), 0o757);
    let (m, fix) = assert_check(&sb, "file writers", "problem");
    assert!(m.contains("pre-receive (757)"), "{m}");
    assert!(fix.contains("chmod o-w"), "{fix}");
    assert_eq!(doctor(&sb, &[]).code, Some(1));
}

#[test]
fn doctor_reports_a_move_waiting_for_acknowledgement() {
    let (mut sb, dev, base) = with_dev(|_| vec![]);
    sb.commit_as(Some(&dev), "second");
    assert_accepted(&sb.push(&["main"]));
    assert_check(&sb, "ref-state log", "ok");
    // Someone on the server moves main around the hook.
    sb.server_git_ok(["update-ref", MAIN, &base]);
    let (m, fix) = assert_check(&sb, "tracked refs", "warning");
    assert!(m.contains(MAIN) && m.contains(&base), "{m}");
    assert!(fix.contains("hook post-receive"), "{fix}");
    // The next push sees it and is refused; doctor says what waits.
    sb.reset_hard(&base);
    sb.commit_as(Some(&dev), "third");
    assert_rejected_with(&sb.push(&["main"]), "ref-moved-out-of-band");
    let out = doctor(&sb, &[]);
    assert_eq!(out.code, Some(1), "{out}");
    let (m, fix) = assert_check(&sb, "acknowledgement", "problem");
    assert!(
        m.contains("ref-moved-out-of-band") && m.contains(MAIN),
        "{m}"
    );
    assert!(fix.contains("countersign log ack"), "{fix}");
    assert!(doctor_check(&sb, "tracked refs").is_empty(), "recorded now");
    // Acknowledged (file mode: the operator's word): all clear.
    let entry = sb.server_git_ok(["show", "refs/countersign/log:entry.json"]);
    let entry: serde_json::Value = serde_json::from_str(&entry).unwrap();
    let n = entry["seq"].as_u64().unwrap().to_string();
    let out = sb.countersign(
        &sb.server.clone(),
        ["log", "ack", "--entry", &n, "--reason", "restored, OPS-2"],
    );
    assert!(out.success, "{out}");
    assert!(doctor_check(&sb, "acknowledgement").is_empty());
    assert_eq!(doctor(&sb, &[]).code, Some(0));
}
