//! Third attack review of the policy under quorum: the report's use of
//! the audit log, cost, and a new admin's walkthrough of the README. Each
//! test is a finding that held before its fix and asserts the fix.

use std::fs;
use std::path::PathBuf;

use crate::governance::{grant, Gov, PREF};
use crate::util::*;

const ZERO: &str = "0000000000000000000000000000000000000000";

/// `n` approves proposal `name` the README way (`--push origin`: the
/// approval goes into the shared notes).
fn approve_push(g: &Gov, n: &str, name: &str) {
    g.fetch(n);
    let p = format!("refs/countersign/proposals/{name}");
    let out = g.cs(
        n,
        &["approve", &p, "--ref", PREF, "--result", "--push", "origin"],
    );
    assert!(out.success, "approve failed\n{out}");
}

fn git_dir(g: &Gov, n: &str) -> PathBuf {
    g.dir(n).join(".git")
}

/// Was: `report` judged a change by any commit an (unsigned) audit log
/// named as its policy, e.g. an unapproved proposal.
#[test]
fn gov_attack3_report_trusts_only_policy_commits_on_the_verified_chain() {
    let g = Gov::new();
    let d = g.dir("dave").to_path_buf();
    g.sb.git_ok_in(&d, ["checkout", "-q", "-B", "main", "origin/main"]);
    // A change that never passed the hook (unsigned).
    let bad =
        g.sb.commit_in(&d, None, "x.txt", "unsigned, around the hook");
    let out = g.cs("dave", &["report", "--ref", "main"]);
    assert!(out.success, "{out}");
    assert!(out.stdout.contains("unsigned-commit"), "{out}");

    // mallory (no role, not in the policy) shares a "proposal" whose policy
    // protects nothing; proposals are pushed unchecked.
    let lax = g.policy_now().replace(
        "refs = [\"refs/heads/main\"]",
        "refs = [\"refs/heads/nothing\"]",
    );
    let p = g.hand_proposal("mallory", "lax", lax.as_bytes());
    g.fetch("dave");

    // A one-record log that verifies, naming the proposal and a made-up root.
    let rec = format!(
        "{{\"seq\":1,\"prev\":\"{zeros}\",\"time\":1,\"kind\":\"push\",\"verdict\":\"accepted\",\"policy\":{{\"commit\":\"{p}\",\"root\":\"{ff}\"}},\"updates\":[{{\"ref\":\"refs/heads/main\",\"old\":\"{ZERO}\",\"new\":\"{bad}\"}}]}}\n",
        zeros = "0".repeat(64),
        ff = "f".repeat(40),
    );
    let log = g.sb.root().join("forged-audit.log");
    fs::write(&log, rec).unwrap();
    let out = g.cs(
        "dave",
        &[
            "report",
            "--ref",
            "main",
            "--audit-log",
            log.to_str().unwrap(),
        ],
    );
    assert!(out.success, "{out}");
    assert!(
        out.stdout.contains("unsigned-commit"),
        "the bypassing change stays an exception\n{out}"
    );
    assert!(
        !out.stdout.contains(&format!("{PREF}@{p}")),
        "never judged by a commit that was never in force\n{out}"
    );
}

/// Was: `policy apply --push` moved the local policy ref before pushing;
/// when another change landed first, the clone was left diverged.
#[test]
fn gov_attack3_failed_apply_push_leaves_the_clone_as_it_was() {
    let g = Gov::new();
    let base = g.root.clone();
    g.propose("alice", "a1", grant("developer", "erin"));
    g.propose("bob", "b1", grant("maintainer", "erin"));
    for (n, p) in [
        ("bob", "a1"),
        ("carol", "a1"),
        ("alice", "b1"),
        ("carol", "b1"),
    ] {
        approve_push(&g, n, p);
    }
    let out = g.cs("alice", &["policy", "apply", "a1", "--push", "origin"]);
    assert!(out.success, "{out}");
    let tip = g.sb.server_ref(PREF).unwrap();
    // bob has not fetched the policy ref since: apply checks locally, the
    // push is refused, and bob's ref stays where it was.
    let out = g.cs("bob", &["policy", "apply", "b1", "--push", "origin"]);
    assert!(!out.success, "{out}");
    assert!(out.all().contains("landed first"), "{out}");
    let bobs = g.sb.git_ok_in(g.dir("bob"), ["rev-parse", PREF]);
    assert_eq!(bobs.trim(), base, "bob's policy ref did not move");
    let out = g.git("bob", &["fetch", "origin", &format!("{PREF}:{PREF}")]);
    assert!(out.success, "a plain fetch still fast-forwards\n{out}");
    assert_eq!(
        g.sb.git_ok_in(g.dir("bob"), ["rev-parse", PREF]).trim(),
        tip
    );
    let out = g.cs("bob", &["roles", "list"]);
    assert!(out.success, "{out}");
}

/// Was: the proposal ref stayed on the server after it was applied.
#[test]
fn gov_attack3_applied_proposal_is_removed() {
    let g = Gov::new();
    g.propose("alice", "erin-dev", grant("developer", "erin"));
    approve_push(&g, "bob", "erin-dev");
    approve_push(&g, "carol", "erin-dev");
    let out = g.cs(
        "alice",
        &["policy", "apply", "erin-dev", "--push", "origin"],
    );
    assert!(out.success, "{out}");
    assert_eq!(
        g.sb.server_ref("refs/countersign/proposals/erin-dev"),
        None,
        "a landed proposal is removed"
    );
}

/// Was: the default edit directory stayed behind and blocked the next
/// `policy edit`.
#[test]
fn gov_attack3_default_edit_dir_does_not_block_the_next_edit() {
    let g = Gov::new();
    let out = g.cs("alice", &["policy", "edit"]);
    assert!(out.success, "{out}");
    let dir = git_dir(&g, "alice").join("countersign/policy-edit");
    let file = dir.join("countersign.toml");
    let text = fs::read_to_string(&file).unwrap();
    fs::write(&file, grant("developer", "erin")(text)).unwrap();
    let out = g.cs("alice", &["policy", "propose", "one", "-m", "one"]);
    assert!(out.success, "{out}");
    assert!(!dir.exists(), "removed once proposed");
    let out = g.cs("alice", &["policy", "edit"]);
    assert!(out.success, "the second edit works\n{out}");
}

/// Was: `--propose` recorded the edit even when the proposal was then
/// refused, and `report` in a clone cited its clone-local log.
#[test]
fn gov_attack3_refused_proposal_is_not_recorded_and_clone_log_not_cited() {
    let g = Gov::new();
    let log = git_dir(&g, "alice").join("countersign/audit.log");
    // `policy pin` in the clone already started a clone-local log.
    let before = fs::read_to_string(&log).expect("pin wrote a clone-local log");
    assert!(before.contains("trust-root-pinned"), "{before}");
    assert!(!before.contains("\"push\""), "{before}");
    let out = g.cs(
        "alice",
        &[
            "roles",
            "grant",
            "erin",
            "developer",
            "--propose",
            "bad name!",
        ],
    );
    assert!(!out.success, "{out}");
    assert!(out.all().contains("not a proposal name"), "{out}");
    let text = fs::read_to_string(&log).unwrap();
    assert_eq!(text, before, "nothing is recorded for a refused proposal");
    assert!(g
        .sb
        .server_ref("refs/countersign/proposals/bad name!")
        .is_none());
    // A clone's own log holds no push record: the report does not cite it.
    let out = g.cs("alice", &["report", "--ref", "main"]);
    assert!(out.success, "{out}");
    assert!(!out.stdout.contains("change(s) mapped"), "{out}");
    assert!(out.stdout.contains("the current policy"), "{out}");
}

/// Was: `report --help` said the audit log is not consulted.
#[test]
fn gov_attack3_report_help_says_how_the_audit_log_is_used() {
    let sb = Sandbox::new();
    let out = sb.countersign(sb.root(), ["report", "--help"]);
    assert!(out.success, "{out}");
    assert!(
        !out.stdout.contains("the audit log is not consulted"),
        "{out}"
    );
    assert!(out.stdout.contains("never supplies a verdict"), "{out}");
    assert!(out.stdout.contains("--audit-log"), "{out}");
}

/// After break glass (`migrate --repin`) a clone pinned to the old root
/// refuses the new history until its admin pins the new root (README).
#[test]
fn gov_attack3_clones_pin_the_new_root_after_break_glass() {
    let g = Gov::new();
    let fixed = g.sb.root().join("fixed.toml");
    fs::copy(&g.sb.policy, &fixed).unwrap();
    let out = g.sb.countersign(
        &g.sb.server.clone(),
        [
            "policy",
            "migrate",
            "--repin",
            "--policy",
            fixed.to_str().unwrap(),
        ],
    );
    assert!(out.success, "{out}");
    let new_root = g.sb.server_ref(PREF).unwrap();
    g.fetch("bob");
    let out = g.cs("bob", &["roles", "list"]);
    assert!(!out.success, "{out}");
    assert!(
        out.all().contains("policy-ref-broken") || out.all().contains("does not lead back"),
        "{out}"
    );
    let out = g.cs("bob", &["policy", "pin", &new_root]);
    assert!(out.success, "{out}");
    let out = g.cs("bob", &["roles", "list"]);
    assert!(out.success, "{out}");
}

/// Was: after a policy ref moved back (a restore), the help suggested a
/// `pin` that failed the same way.
#[test]
fn gov_attack3_pin_recovers_a_reviewed_moved_back_ref() {
    let g = Gov::new();
    g.propose("alice", "erin-dev", grant("developer", "erin"));
    approve_push(&g, "bob", "erin-dev");
    approve_push(&g, "carol", "erin-dev");
    let out = g.cs(
        "alice",
        &["policy", "apply", "erin-dev", "--push", "origin"],
    );
    assert!(out.success, "{out}");
    let d = g.dir("dave").to_path_buf();
    g.sb.git_ok_in(&d, ["checkout", "-q", "-B", "main", "origin/main"]);
    g.sb.commit_in(&d, Some(&g.keys["dave"]), "d.txt", "one");
    let out = g.git("dave", &["push", "origin", "main"]);
    assert!(out.success, "{out}");
    // "Restore" the policy ref to the root (a genuine, older policy).
    g.sb.server_git_ok(["update-ref", PREF, &g.root]);
    g.sb.commit_in(&d, Some(&g.keys["dave"]), "d.txt", "two");
    let out = g.git("dave", &["push", "origin", "main"]);
    assert_rejected_with(&out, "policy-ref-broken");
    assert!(out.stderr.contains("moved back"), "{out}");
    let server = g.sb.server.clone();
    assert!(out.stderr.contains("policy pin"), "{out}");
    // The operator reviews the restored history and re-verifies it.
    let out = g.sb.countersign(&server, ["policy", "pin", &g.root]);
    assert!(out.success, "pin re-verifies from the root\n{out}");
    // The restore moved the policy ref around the hook: the ref-state log
    // saw it, and pushes wait for the admins' acknowledgement.
    let out = g.git("dave", &["push", "origin", "main"]);
    assert_rejected_with(&out, "ref-moved-out-of-band");
    crate::ledger::ack_with_quorum(&g, &["alice", "bob", "carol"]);
    let out = g.git("dave", &["push", "origin", "main"]);
    assert!(out.success, "{out}");
}

/// Was: nothing capped the certificate bytes a policy names, and every
/// push loads them (~0.5 s and ~30 MB per MiB measured); an approved
/// policy of 4 x 1 MiB certificates made every push take seconds.
#[test]
fn gov_attack3_policy_bytes_are_capped() {
    let g = Gov::new();
    g.fetch("alice");
    let dir = g.dir("alice").join("edit-big");
    let out = g.cs("alice", &["policy", "edit", "--dir", dir.to_str().unwrap()]);
    assert!(out.success, "{out}");
    let mut names = Vec::new();
    for i in 0..3 {
        let f = format!("c{i}.pgp");
        fs::write(dir.join(&f), vec![b'x'; 900 * 1024]).unwrap();
        names.push(format!("\"{f}\""));
    }
    let file = dir.join("countersign.toml");
    let text = fs::read_to_string(&file).unwrap().replace(
        "[policy-changes]",
        &format!(
            "[people.filler]\nroles = []\nopenpgp = [{}]\n\n[policy-changes]",
            names.join(", ")
        ),
    );
    fs::write(&file, text).unwrap();
    let d = dir.to_str().unwrap();
    let out = g.cs(
        "alice",
        &["policy", "propose", "big", "--dir", d, "-m", "big"],
    );
    assert!(!out.success, "{out}");
    assert!(out.all().contains("bytes in all"), "{out}");
}
