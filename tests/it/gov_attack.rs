//! Attacks on the policy under quorum, from a security review: each test
//! is an attack that worked before its fix (named in the test's comment)
//! and asserts that it is refused now; the cost tests print what an
//! attack costs.

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::common::*;
use crate::gov_attack2::{approved_step, sign_commit};
use crate::governance::{grant, Gov, PREF};
use crate::util::*;

fn squash_landing(g: &Gov, n: &str, proposal: &str, parent: &str, trailers: &[String]) -> String {
    g.fetch(n);
    let mut msg = format!("policy change (squash)\n\nCountersign-Squash: {proposal}\n");
    for t in trailers {
        msg.push_str(t);
        msg.push('\n');
    }
    sign_commit(g, n, &format!("{proposal}^{{tree}}"), parent, &msg)
}

/// Was: the policy ref accepted squash landings (`Countersign-Squash:`),
/// where topic approvals count; they bind the topic, not the parent, so
/// they could be replayed after a revert. Now topic approvals of the
/// policy ref cannot be made, and a squash is refused by the hook.
#[test]
fn gov_attack_squash_landings_are_refused() {
    let g = Gov::new();
    let p = g.propose("alice", "erin-dev", grant("developer", "erin"));
    g.fetch("bob");
    let p_ref = "refs/countersign/proposals/erin-dev";
    let out = g.cs("bob", &["approve", p_ref, "--ref", PREF, "--no-note"]);
    assert_eq!(
        out.code,
        Some(2),
        "topic approvals of the policy ref are refused\n{out}"
    );
    assert!(out.stderr.contains("--result"), "{out}");
    let bob = g.approve("bob", "erin-dev", &[]);
    let carol = g.approve("carol", "erin-dev", &[]);
    let l = squash_landing(&g, "alice", &p, PREF, &[bob, carol]);
    let before = g.sb.server_ref(PREF);
    let out = g.push_policy("alice", &l);
    assert_rejected_with(&out, "policy-change-not-direct");
    assert_eq!(g.sb.server_ref(PREF), before);
}

fn utc(ts: u64) -> String {
    let out = std::process::Command::new("date")
        .args(["-u", "-d", &format!("@{ts}"), "+%Y-%m-%dT%H:%M:%SZ"])
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Was: historical policy commits were re-judged with today's clock:
/// alice's key expires at T; before T she signs an approved change that
/// extends it; after T, any re-verification of the chain (a lost trust
/// file, a fresh clone) failed and every push was rejected. Now history is
/// judged at each commit's own time (revocation still at today's).
#[test]
fn gov_attack_expired_key_in_history_stays_valid() {
    let expires_at = unix_now() + 90;
    let g = Gov::new_with(&format!("expires = {}", utc(expires_at)));
    let expiry = utc(expires_at);
    let p = g.propose("alice", "rotate", move |t| {
        grant("developer", "erin")(t)
            .replace(&format!("expires = {expiry}"), "expires = 2099-01-01")
    });
    let b = g.approve("bob", "rotate", &[]);
    let c = g.approve("carol", "rotate", &[]);
    let l = g.landing("alice", &p, &[b, c]);
    let out = g.push_policy("alice", &l);
    assert!(out.success, "the rotation was refused\n{out}");
    assert!(g.policy_now().contains("expires = 2099-01-01"));

    let wait = expires_at.saturating_sub(unix_now()) + 2;
    std::thread::sleep(Duration::from_secs(wait));

    // A clone without a trust file verifies the chain and may pin the root.
    g.fetch("bob");
    fs::remove_file(g.dir("bob").join(".git/countersign/policy-trust")).ok();
    let out = g.cs("bob", &["policy", "log"]);
    assert!(out.success, "{out}");
    let out = g.cs("bob", &["policy", "pin", &g.root]);
    assert!(out.success, "{out}");

    // The server after losing its trust file: the hook has no record of
    // the change and refuses to judge it by its claimed time; the operator
    // reviews and re-verifies the history with `policy pin`.
    fs::remove_file(g.sb.server.join("countersign/policy-trust")).unwrap();
    let dave = g.dir("dave").to_path_buf();
    g.sb.git_ok_in(&dave, ["checkout", "-q", "-B", "main", "origin/main"]);
    g.sb.commit_in(&dave, Some(&g.keys["dave"]), "d2.txt", "dave 2");
    let out = g.git("dave", &["push", "origin", "main"]);
    assert_rejected_with(&out, "policy-ref-broken");
    assert!(out.stderr.contains("policy pin"), "{out}");
    let server = g.sb.server.clone();
    let out =
        g.sb.countersign(&server, ["policy", "pin", g.root.as_str()]);
    assert!(out.success, "{out}");
    let out = g.git("dave", &["push", "origin", "main"]);
    assert!(
        out.success && out.stderr.contains("countersign: accepted"),
        "{out}"
    );
}

/// Was: `refs/countersign/proposals/*` was unchecked in file mode too
/// (a namespace a catch-all rule used to cover), and anyone could create
/// `refs/meta/countersign` before the migration. Both are reserved now.
#[test]
fn gov_attack_proposals_unchecked_in_file_mode() {
    let mut sb = Sandbox::new();
    let dev = sb.ssh_key("dev");
    let policy = format!(
        r#"[repository]
id = "test/filemode"

[roles]
developer = "writes code"

{}
[[rule]]
name = "everything"
refs = ["refs/**"]
commit-signers = ["developer"]
force-push = false
delete = false
"#,
        simple_person("dev", &["developer"], &dev)
    );
    sb.install(&policy);
    create_main(&mut sb, &dev);
    // An unsigned commit on an ordinary ref is refused by the catch-all.
    let unsigned = sb.commit_as(None, "unsigned");
    let out = sb.push(&[&format!("{unsigned}:refs/heads/anything")]);
    assert!(!out.success, "{out}");
    // ...and so are proposals, which exist only in policy ref mode.
    let out = sb.push(&[&format!("{unsigned}:refs/countersign/proposals/x")]);
    assert_rejected_with(&out, "reserved-ref");

    // Pre-empting the migration: where no rule covers refs/meta/*, anyone
    // may create refs/meta/countersign in file mode; `policy migrate` then
    // refuses and its help tells the operator to pin the first commit of
    // that (attacker-made) history.
    let mut sb2 = Sandbox::new();
    let dev2 = sb2.ssh_key("dev");
    sb2.install(&standard_policy(&[simple_person(
        "dev",
        &["developer"],
        &dev2,
    )]));
    create_main(&mut sb2, &dev2);
    let planted = sb2.commit_as(None, "attacker's policy root");
    let out = sb2.push(&[&format!("{planted}:refs/meta/countersign")]);
    assert_rejected_with(&out, "reserved-ref");
    sb2.assert_server_ref("refs/meta/countersign", None);
}

/// Was: `policy edit` wrote the policy ref's tree out unverified, dot
/// entries included: a tree carrying `.git/{HEAD,config,...}` turned the
/// edit directory into a repository whose `core.fsmonitor` ran on the next
/// `git status` there. Now `edit` verifies the chain, writes only the
/// files the policy names, and the hook refuses trees holding anything
/// else.
#[test]
fn gov_attack_policy_edit_never_writes_dot_git() {
    let g = Gov::new();
    let alice = g.dir("alice").to_path_buf();
    let marker = g.sb.root().join("PWNED");
    // A scratch repo gives a real index to plant.
    let scratch = g.sb.root().join("scratch");
    g.sb.git_ok_in(g.sb.root(), ["init", "-q", scratch.to_str().unwrap()]);
    fs::write(scratch.join("countersign.toml"), "x").unwrap();
    g.sb.git_ok_in(&scratch, ["add", "countersign.toml"]);
    let index = fs::read(scratch.join(".git/index")).unwrap();

    let hash = |bytes: &[u8]| {
        g.sb.git_stdin_in(&alice, &["hash-object", "-w", "--stdin"], bytes)
    };
    let mktree = |entries: &str| g.sb.git_stdin_in(&alice, &["mktree"], entries.as_bytes());
    let config = format!(
        "[core]\n\trepositoryformatversion = 0\n\tbare = false\n\tfsmonitor = \"touch {}; false\"\n",
        marker.display()
    );
    let refs = mktree(&format!("100644 blob {}\t.keep\n", hash(b"")));
    let objects = mktree(&format!("100644 blob {}\t.keep\n", hash(b"")));
    let dotgit = mktree(&format!(
        "100644 blob {}\tHEAD\n100644 blob {}\tconfig\n100644 blob {}\tindex\n040000 tree {objects}\tobjects\n040000 tree {refs}\trefs\n",
        hash(b"ref: refs/heads/main\n"),
        hash(config.as_bytes()),
        hash(&index),
    ));
    let policy_blob =
        g.sb.git_ok_in(&alice, ["rev-parse", &format!("{PREF}:countersign.toml")]);
    let tree = mktree(&format!(
        "040000 tree {dotgit}\t.git\n100644 blob {policy_blob}\tcountersign.toml\n"
    ));
    // The clone's policy ref as a malicious remote (or an approved policy
    // change nobody read closely) would leave it; NOT authorized.
    let evil =
        g.sb.git_ok_in(&alice, ["commit-tree", &tree, "-p", PREF, "-m", "evil"]);
    g.sb.git_ok_in(&alice, ["update-ref", PREF, &evil]);

    let dir = alice.join("edit-here");
    let out = g.cs("alice", &["policy", "edit", "--dir", dir.to_str().unwrap()]);
    assert!(!out.success, "an unverified tip is refused\n{out}");
    assert!(
        out.stderr.contains("policy-ref") || out.stderr.contains("does not lead back"),
        "{out}"
    );
    assert!(!dir.join(".git").exists());

    // The same tree, approved, is refused by the hook: it holds files the
    // policy does not name.
    g.sb.git_ok_in(&alice, ["update-ref", PREF, &g.root]);
    g.sb.git_ok_in(
        &alice,
        ["update-ref", "refs/countersign/proposals/evil", &evil],
    );
    let out = g.git(
        "alice",
        &[
            "push",
            "-q",
            "origin",
            "+refs/countersign/proposals/evil:refs/countersign/proposals/evil",
        ],
    );
    assert!(out.success, "{out}");
    let b = g.approve("bob", "evil", &[]);
    let c = g.approve("carol", "evil", &[]);
    let l = g.landing("alice", &evil, &[b, c]);
    let out = g.push_policy("alice", &l);
    assert_rejected_with(&out, "policy-change-invalid");
    assert!(out.stderr.contains("`.git/"), "{out}");
    assert!(!marker.exists());
}

/// Negative checks: these attacks are refused (no holes), and the
/// messages are clear.
#[test]
fn gov_attack_refused_ref_tricks() {
    let g = Gov::new();
    let before = g.sb.server_ref(PREF);
    let p = g.propose("alice", "t", grant("developer", "erin"));
    let b = g.approve("bob", "t", &[]);
    let c = g.approve("carol", "t", &[]);
    let l = g.landing("alice", &p, &[b, c]);
    for name in [
        "refs/meta/COUNTERSIGN",
        "refs/META/countersign",
        "refs/Countersign/proposals/x",
        "refs/countersign/PROPOSALS/x",
        "refs/countersign/log",
    ] {
        // Forced: refs/countersign/log exists, and git itself would refuse
        // a non-fast-forward before the hook sees it.
        let out = g.git("alice", &["push", "origin", &format!("+{l}:{name}")]);
        eprintln!("{name}:\n{}", out.stderr);
        assert_rejected_with(&out, "reserved-ref");
    }
    // A tag object as the new value of the policy ref.
    g.git("alice", &["tag", "-a", "-m", "t", "poltag", &l]);
    let out = g.git(
        "alice",
        &["push", "origin", &format!("refs/tags/poltag:{PREF}")],
    );
    eprintln!("tag as policy value:\n{out}");
    assert!(!out.success, "{out}");
    assert_eq!(g.sb.server_ref(PREF), before);
    // The policy ref together with an approved change AND a bogus ref in a
    // non-atomic push: policy accepted, bogus refused; ordering is fine.
    let out = g.git(
        "alice",
        &[
            "push",
            "origin",
            &format!("{l}:{PREF}"),
            &format!("{l}:refs/countersign/x"),
        ],
    );
    eprintln!("mixed push:\n{out}");
    assert!(!out.success);
    assert_eq!(
        g.sb.server_ref(PREF),
        before,
        "a rejected push moved the policy ref"
    );
}

/// Cost: judging a policy push that brings `limits.commits` commits.
#[test]
fn gov_attack_long_unapproved_chain_cost() {
    let g = Gov::new();
    let alice = g.dir("alice").to_path_buf();
    let tree =
        g.sb.git_ok_in(&alice, ["rev-parse", &format!("{PREF}^{{tree}}")]);
    // 5000 unsigned single-parent commits via fast-import.
    let mut fi = String::new();
    let tip = g.sb.git_ok_in(&alice, ["rev-parse", PREF]);
    for i in 0..5000 {
        fi.push_str(&format!(
            "commit refs/heads/chain\ncommitter x <x@x> {} +0000\ndata 2\nc{}\n{}M 040000 {tree} \n\n",
            1_700_000_000 + i,
            i % 10,
            if i == 0 { format!("from {tip}\n") } else { String::new() }
        ));
    }
    let _ =
        g.sb.git_stdin_in(&alice, &["fast-import", "--quiet"], fi.as_bytes());
    let chain_tip = g.sb.git_ok_in(&alice, ["rev-parse", "refs/heads/chain"]);
    let t = Instant::now();
    let out = g.push_policy("alice", &chain_tip);
    eprintln!("5000-commit policy push took {:?}\n{out}", t.elapsed());
    assert!(!out.success);
    let _ = Path::new("");
}

/// Was: an approved change setting `trailers = 1` (while [policy-changes]
/// needs 2 approvals) locked every later change out. The policy ref is
/// judged with the built-in limits now.
#[test]
fn gov_attack_limits_cannot_lock_out_the_quorum() {
    let g = Gov::new();
    let base = format!("{}\n", g.policy_now());
    let tip = g.sb.server_ref(PREF).unwrap();
    g.fetch("alice");
    let l1 = approved_step(&g, &tip, &format!("{base}\n[limits]\ntrailers = 1\n"), 1);
    let out = g.push_policy("alice", &l1);
    eprintln!("the lock-out change:\n{out}");
    assert!(out.success, "refused (no hole)\n{out}");
    // A proper next change, approved by bob and carol.
    let l2 = approved_step(&g, &l1, &format!("{base}\n[limits]\ntrailers = 8\n"), 2);
    let out = g.push_policy("alice", &l2);
    assert!(
        out.success && out.stderr.contains("countersign: accepted"),
        "{out}"
    );
}

/// Cost of verifying the chain: N approved steps pushed at once, then
/// every push after the trust file is lost re-verifies all of them.
#[test]
fn gov_attack_chain_verification_cost() {
    let g = Gov::new();
    let base = format!("{}\n", g.policy_now());
    let mut tip = g.sb.server_ref(PREF).unwrap();
    g.fetch("alice");
    let n = 40;
    let t = Instant::now();
    for i in 0..n {
        tip = approved_step(&g, &tip, &format!("{base}# step {i}\n"), i);
    }
    eprintln!("built {n} approved steps in {:?}", t.elapsed());
    let t = Instant::now();
    let out = g.push_policy("alice", &tip);
    eprintln!("push of {n} approved steps at once: {:?}", t.elapsed());
    assert!(out.success, "{out}");

    let dave = g.dir("dave").to_path_buf();
    g.sb.git_ok_in(&dave, ["checkout", "-q", "-B", "main", "origin/main"]);
    g.sb.commit_in(&dave, Some(&g.keys["dave"]), "d.txt", "dave 1");
    let t = Instant::now();
    let out = g.git("dave", &["push", "origin", "main"]);
    eprintln!("ordinary push, trust cache warm: {:?}", t.elapsed());
    assert!(out.success, "{out}");
    fs::remove_file(g.sb.server.join("countersign/policy-trust")).unwrap();
    g.sb.commit_in(&dave, Some(&g.keys["dave"]), "d2.txt", "dave 2");
    let t = Instant::now();
    let out = g.git("dave", &["push", "origin", "main"]);
    eprintln!(
        "ordinary push, trust cache lost ({n} steps re-verified): {:?}",
        t.elapsed()
    );
    assert!(out.success, "{out}");
}

/// Same with `object-bytes` at its minimum (1 KiB): an approved policy
/// commit (signature + two approval trailers) did not fit any more.
#[test]
fn gov_attack_limits_object_bytes_cannot_lock_out_the_quorum() {
    let g = Gov::new();
    let base = format!("{}\n", g.policy_now());
    let tip = g.sb.server_ref(PREF).unwrap();
    g.fetch("alice");
    let l1 = approved_step(
        &g,
        &tip,
        &format!("{base}\n[limits]\nobject-bytes = 1024\n"),
        1,
    );
    let size =
        g.sb.git_ok_in(g.dir("alice"), ["cat-file", "-s", l1.as_str()]);
    eprintln!("a policy commit is {size} bytes");
    let out = g.push_policy("alice", &l1);
    assert!(out.success, "{out}");
    let l2 = approved_step(&g, &l1, &format!("{base}\n# repair\n"), 2);
    let out = g.push_policy("alice", &l2);
    assert!(
        out.success && out.stderr.contains("countersign: accepted"),
        "{out}"
    );
}

/// Cost: one push naming many refs. Proposals and reserved refs do not
/// count against `limits.updates` (only ordinary updates do), and the
/// input parser's duplicate check is quadratic. Runs the hook binary
/// directly on the server with crafted input (what receive-pack would send
/// for a push of N proposal refs).
#[test]
fn gov_attack_many_proposal_refs_cost() {
    let g = Gov::new();
    let z = "0".repeat(40);
    for (n, prefix) in [
        (5_000, "refs/countersign/proposals/p"),
        (20_000, "refs/countersign/proposals/p"),
        (20_000, "refs/heads/x"),
    ] {
        let mut input = String::new();
        for i in 0..n {
            input.push_str(&format!("{z} {} {prefix}{i}\n", g.root));
        }
        let t = Instant::now();
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_countersign"))
            .args(["hook", "pre-receive"])
            .env("GIT_DIR", &g.sb.server)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && err.contains("limit-updates"),
            "{n} x {prefix}: {err}"
        );
        eprintln!(
            "{n} x {prefix}*: exit {:?} in {:?}; {}",
            out.status.code(),
            t.elapsed(),
            err.lines()
                .find(|l| l.contains("accepted") || l.contains("rejected"))
                .unwrap_or("")
        );
    }
}

/// Was: `policy apply` put every approval line of the proposal's note into
/// the landing commit, so one stray line (an approval for another ref, or
/// junk anyone may push to refs/notes/countersign) blocked it. It keeps
/// only the lines that count now.
#[test]
fn gov_attack_apply_ignores_stray_note_lines() {
    let g = Gov::new();
    g.propose("alice", "erin-dev", grant("developer", "erin"));
    let p_ref = "refs/countersign/proposals/erin-dev";
    // bob first approves for the wrong ref, then properly; carol properly.
    for (n, r) in [("bob", "refs/heads/main"), ("bob", PREF), ("carol", PREF)] {
        g.fetch(n);
        let args = ["approve", p_ref, "--ref", r, "--result", "--push", "origin"];
        let out = g.cs(n, &args);
        assert!(out.success, "{out}");
    }
    let out = g.cs(
        "alice",
        &["policy", "apply", "erin-dev", "--push", "origin"],
    );
    assert!(out.success, "{out}");
    assert!(out.stdout.contains("2 approval(s)"), "{out}");

    // Junk from anyone who may push refs/notes/countersign.
    let g = Gov::new();
    let p = g.propose("alice", "erin-dev", grant("developer", "erin"));
    for n in ["bob", "carol"] {
        g.fetch(n);
        let out = g.cs(
            n,
            &[
                "approve", p_ref, "--ref", PREF, "--result", "--push", "origin",
            ],
        );
        assert!(out.success, "{out}");
    }
    let dave = g.dir("dave").to_path_buf();
    g.sb.git_ok_in(
        &dave,
        [
            "fetch",
            "-q",
            "origin",
            "+refs/notes/countersign:refs/notes/countersign",
        ],
    );
    g.sb.git_ok_in(
        &dave,
        [
            "notes",
            "--ref",
            "refs/notes/countersign",
            "append",
            "-m",
            "Countersign-Approval: junk",
            p.as_str(),
        ],
    );
    let out = g.git("dave", &["push", "origin", "refs/notes/countersign"]);
    assert!(out.success, "{out}");
    let out = g.cs(
        "alice",
        &["policy", "apply", "erin-dev", "--push", "origin"],
    );
    assert!(out.success, "{out}");
}

/// Was: a policy ref moved around the hook back to an older verified tip
/// was silently accepted as the policy in force. The trust file keeps the
/// last tip seen in force, and the ref may only move forward from it.
#[test]
fn gov_attack_rollback_to_older_trusted_tip_is_caught() {
    let g = Gov::new();
    // The admins take dave's developer role away.
    let p = g.propose("alice", "drop-dave", |t| {
        t.replace(
            "[people.dave]\nname = \"dave Example\"\nroles = [\"developer\"]",
            "[people.dave]\nname = \"dave Example\"\nroles = []",
        )
    });
    let b = g.approve("bob", "drop-dave", &[]);
    let c = g.approve("carol", "drop-dave", &[]);
    let l = g.landing("alice", &p, &[b, c]);
    let out = g.push_policy("alice", &l);
    assert!(out.success, "{out}");
    let dave = g.dir("dave").to_path_buf();
    g.sb.git_ok_in(&dave, ["checkout", "-q", "-B", "main", "origin/main"]);
    let d = g.sb.commit_in(
        &dave,
        Some(&g.keys["dave"]),
        "d.txt",
        "dave after revocation",
    );
    let out = g.git("dave", &["push", "origin", "main"]);
    assert_rejected_with(&out, "signer-lacks-role");

    // The ref goes back to the root around the hook.
    g.sb.server_git_ok(["update-ref", PREF, &g.root]);
    let out = g.git("dave", &["push", "origin", "main"]);
    assert_rejected_with(&out, "policy-ref-broken");
    assert!(out.stderr.contains("moved back"), "{out}");
    g.sb.assert_server_ref(MAIN, g.sb.server_ref(MAIN).as_deref());
    assert_ne!(g.sb.server_ref(MAIN).as_deref(), Some(d.as_str()));
}
