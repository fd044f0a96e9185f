//! Second attack review of the policy under quorum: each test is an
//! attack that worked before its fix and asserts that it is refused now
//! (one documents a known, accepted weakness: proposals are
//! unauthenticated, but approvals bind their exact tree).

use std::time::Duration;

use crate::governance::{grant, Gov, PREF};
use crate::util::*;

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

/// `n` signs a commit of `tree` on `parent` with the committer (and
/// author) date set to `date` (a git date string): the date is the
/// signer's choice.
fn sign_commit_at(g: &Gov, n: &str, tree: &str, parent: &str, msg: &str, date: &str) -> String {
    let mut args = g.keys[n].sign_args();
    args.extend(["commit-tree", tree, "-p", parent, "-S", "-m", msg].map(String::from));
    let mut c = g.sb.git_in(g.dir(n), &args);
    c.env("GIT_COMMITTER_DATE", date)
        .env("GIT_AUTHOR_DATE", date);
    if let Some(home) = g.keys[n].gnupghome() {
        c.env("GNUPGHOME", home);
    }
    let out = run(c, None);
    assert!(out.success, "commit-tree failed\n{out}");
    out.stdout.trim().to_string()
}

/// HOLE (medium): retirement (and expiry) of a policy signer's key is
/// judged at the commit's *committer time* whenever a policy commit is
/// verified after the fact (`When::History`): by the hook when the ref
/// moved around it, and by every clone (`policy log`, `approve`, ...).
/// The committer time is the signer's free choice, so a retired key signs
/// a backdated change: the hook refuses it when pushed, but once it
/// reaches the ref by any other way (a host-side write, a malicious or
/// compromised remote serving clones) it is verified as authorized and
/// rules every push. The same goes for approvers' expired keys (approvals
/// are judged at the same `at`), so a set of rotated-out admin keys
/// forges a fully "approved" policy.
#[test]
fn gov_attack2_backdated_commit_by_retired_key_is_refused_by_the_hook() {
    let retire_at = unix_now() + 90;
    let g = Gov::new_with(&format!("retired = {}", utc(retire_at)));
    // alice proposes; bob and carol approve the result (parent + tree).
    let p = g.propose("alice", "erin-dev", grant("developer", "erin"));
    let b = g.approve("bob", "erin-dev", &[]);
    let c = g.approve("carol", "erin-dev", &[]);
    let wait = retire_at.saturating_sub(unix_now()) + 2;
    std::thread::sleep(Duration::from_secs(wait));

    // alice's key is retired now; she lands with a backdated commit.
    g.fetch("alice");
    let msg = format!("policy change\n\n{b}\n{c}\n");
    let backdated = format!("@{} +0000", retire_at - 3600);
    let l = sign_commit_at(
        &g,
        "alice",
        &format!("{p}^{{tree}}"),
        &format!("{p}^"),
        &msg,
        &backdated,
    );
    let before = g.sb.server_ref(PREF);
    let out = g.push_policy("alice", &l);
    eprintln!("push of the backdated landing:\n{out}");
    assert!(!out.success, "the hook (When::Push) refuses it\n{out}");
    assert!(out.stderr.contains("retired"), "{out}");
    assert_eq!(g.sb.server_ref(PREF), before);

    // The same commit reaching the ref around the hook (its objects get to
    // the server as an unchecked proposal): the hook has no record of
    // accepting it, so it judges it as if pushed now, and refuses.
    let out = g.git(
        "alice",
        &[
            "push",
            "origin",
            &format!("{l}:refs/countersign/proposals/x"),
        ],
    );
    assert!(out.success, "{out}");
    g.sb.server_git_ok(["update-ref", PREF, &l]);
    let erin = g.dir("erin").to_path_buf();
    g.sb.git_ok_in(&erin, ["checkout", "-q", "-B", "main", "origin/main"]);
    g.sb.commit_in(&erin, Some(&g.keys["erin"]), "e.txt", "by erin");
    let out = g.git("erin", &["push", "origin", "main"]);
    assert_rejected_with(&out, "policy-ref-broken");
    assert!(out.stderr.contains("retired"), "{out}");
}

/// Finding (low): proposals are unauthenticated and unchecked, so anyone
/// who may push at all -- mallory holds no role -- overwrites or deletes
/// an admin's proposal under its name; approvers who fetch
/// `refs/countersign/proposals/<name>` review (and approve) mallory's tree,
/// and `policy apply <name>` signs whatever the ref holds.
#[test]
fn gov_attack2_known_weakness_anyone_overwrites_or_deletes_a_proposal() {
    let g = Gov::new();
    let p = g.propose("alice", "erin-dev", grant("developer", "erin"));
    // mallory's own tree on the same parent, under alice's proposal name.
    let text = g.policy_now().replace(
        "roles = [\"developer\"]",
        "roles = [\"developer\", \"admin\"]",
    );
    let m = g.hand_proposal("mallory", "scratch", text.as_bytes());
    assert_ne!(m, p);
    let out = g.git(
        "mallory",
        &[
            "push",
            "origin",
            &format!("+{m}:refs/countersign/proposals/erin-dev"),
        ],
    );
    assert!(out.success, "a forced overwrite is accepted\n{out}");
    assert_eq!(
        g.sb.server_ref("refs/countersign/proposals/erin-dev")
            .as_deref(),
        Some(m.as_str()),
        "mallory replaced alice's proposal"
    );
    let out = g.git(
        "mallory",
        &["push", "origin", ":refs/countersign/proposals/erin-dev"],
    );
    assert!(out.success, "and may delete it\n{out}");
    assert_eq!(g.sb.server_ref("refs/countersign/proposals/erin-dev"), None);
}

fn raw_oid(hex: &str) -> Vec<u8> {
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect()
}

/// A raw tree object of `(mode, name, blob)` entries, in the order given
/// (duplicates kept: `git mktree` would refuse them, the server does not
/// unless `receive.fsckObjects` is set).
fn raw_tree(g: &Gov, n: &str, entries: &[(&str, &str, &str)]) -> String {
    let mut bytes = Vec::new();
    for (mode, name, blob) in entries {
        bytes.extend_from_slice(format!("{mode} {name}\0").as_bytes());
        bytes.extend(raw_oid(blob));
    }
    g.sb.git_stdin_in(
        g.dir(n),
        &["hash-object", "-t", "tree", "--literally", "-w", "--stdin"],
        &bytes,
    )
}

/// HOLE (high): a policy tree with TWO `countersign.toml` entries. git
/// (`git show`, `git diff`, what reviewers read) takes the first; the
/// hook (libgit2's `get_name`, a binary search that then looks forward)
/// takes the second. `only_named_files` counts both as named. One admin
/// proposes a tree whose visible policy only adds a comment; two admins
/// approve the exact tree they reviewed; the policy in force is another
/// one (here: erin becomes a developer). The only trace is a second
/// "new file" of the same name in `git diff`; the server does not run
/// fsck (`duplicateEntries`) on pushed objects and the hook does not check
/// trees for it.
#[test]
fn gov_attack2_duplicate_policy_entries_are_refused() {
    let g = Gov::new();
    g.fetch("alice");
    let base = format!("{}\n", g.policy_now());
    let benign = format!("{base}# cosmetic: reformatted\n");
    let evil = grant("developer", "erin")(base.clone());
    let alice = g.dir("alice").to_path_buf();
    let hash = |t: &str| {
        g.sb.git_stdin_in(&alice, &["hash-object", "-w", "--stdin"], t.as_bytes())
    };
    let (b1, b2) = (hash(&benign), hash(&evil));
    let tree = raw_tree(
        &g,
        "alice",
        &[
            ("100644", "countersign.toml", &b1),
            ("100644", "countersign.toml", &b2),
        ],
    );
    let out = g.git(
        "alice",
        &["commit-tree", &tree, "-p", PREF, "-m", "policy: cosmetic"],
    );
    assert!(out.success, "{out}");
    let p = out.stdout.trim().to_string();
    let out = g.git(
        "alice",
        &[
            "push",
            "origin",
            &format!("{p}:refs/countersign/proposals/dup"),
        ],
    );
    assert!(out.success, "the proposal is accepted (unchecked)\n{out}");

    // What the reviewers see.
    g.fetch("bob");
    let bob = g.dir("bob").to_path_buf();
    let shown = g.sb.git_ok_in(
        &bob,
        ["show", "refs/countersign/proposals/dup:countersign.toml"],
    );
    assert!(shown.contains("# cosmetic"), "{shown}");
    let diff =
        g.sb.git_ok_in(&bob, ["diff", PREF, "refs/countersign/proposals/dup"]);
    eprintln!("the diff the approvers review:\n{diff}");
    // git diff lists the second entry as a "new file" of the same name:
    // the only trace; `git show`, `git checkout` and `cat-file -p` of the
    // path show the benign text.
    assert!(diff.contains("new file mode"), "{diff}");

    let b = g.approve("bob", "dup", &[]);
    let c = g.approve("carol", "dup", &[]);
    let before = g.sb.server_ref(PREF);
    let l = g.landing("alice", &p, &[b, c]);
    let out = g.push_policy("alice", &l);
    assert_rejected_with(&out, "policy-change-invalid");
    assert!(out.stderr.contains("out of order or repeated"), "{out}");
    assert_eq!(g.sb.server_ref(PREF), before);
}

/// HOLE (medium, denial of service of `policy apply`): anyone who may push
/// `refs/notes/countersign` appends more than `trailers` (32) junk
/// `Countersign-Approval:` lines to a proposal's note. `apply` lands with
/// every line first; the engine stops at `limit-trailers` before judging
/// any approval, so no line is "eligible" and the retry with eligible lines
/// never runs: the admins cannot apply any proposal with the tool.
#[test]
fn gov_attack2_junk_note_lines_do_not_block_apply() {
    let g = Gov::new();
    let p = g.propose("alice", "erin-dev", grant("developer", "erin"));
    let p_ref = "refs/countersign/proposals/erin-dev";
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
    let junk: Vec<String> = (0..40)
        .map(|i| format!("Countersign-Approval: junk{i}"))
        .collect();
    let junk = junk.join("\n");
    g.sb.git_ok_in(
        &dave,
        [
            "notes",
            "--ref",
            "refs/notes/countersign",
            "append",
            "-m",
            junk.as_str(),
            p.as_str(),
        ],
    );
    let out = g.git("dave", &["push", "origin", "refs/notes/countersign"]);
    assert!(
        out.success,
        "dave (a developer) may push the notes ref\n{out}"
    );
    let out = g.cs(
        "alice",
        &["policy", "apply", "erin-dev", "--push", "origin"],
    );
    eprintln!("{out}");
    assert!(out.success, "junk note lines are dropped\n{out}");
    assert!(out.stdout.contains("2 approval(s)"), "{out}");
}

pub(crate) fn sign_commit(g: &Gov, n: &str, tree: &str, parent: &str, msg: &str) -> String {
    let mut args = g.keys[n].sign_args();
    args.extend(["commit-tree", tree, "-p", parent, "-S", "-m", msg].map(String::from));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = g.git(n, &args);
    assert!(out.success, "commit-tree failed\n{out}");
    out.stdout.trim().to_string()
}

/// One approved policy step on `parent` with `text` as the policy, signed
/// by alice, approved by bob and carol (shared with gov_attack.rs).
pub(crate) fn approved_step(g: &Gov, parent: &str, text: &str, i: usize) -> String {
    let alice = g.dir("alice").to_path_buf();
    let blob =
        g.sb.git_stdin_in(&alice, &["hash-object", "-w", "--stdin"], text.as_bytes());
    let tree = g.sb.git_stdin_in(
        &alice,
        &["mktree"],
        format!("100644 blob {blob}\tcountersign.toml\n").as_bytes(),
    );
    approved_tree_step(g, parent, &tree, i)
}

/// One approved policy step on `parent` with `tree`, signed by alice,
/// approved by bob and carol.
pub(crate) fn approved_tree_step(g: &Gov, parent: &str, tree: &str, i: usize) -> String {
    let alice = g.dir("alice").to_path_buf();
    let probe =
        g.sb.git_ok_in(&alice, ["commit-tree", tree, "-p", parent, "-m", "probe"]);
    let mut msg = format!("step {i}\n\n");
    let probe_ref = format!("refs/probe/{i}");
    g.sb.git_ok_in(&alice, ["update-ref", probe_ref.as_str(), probe.as_str()]);
    for n in ["bob", "carol"] {
        let spec = format!("+{probe_ref}:{probe_ref}");
        g.sb.git_ok_in(
            g.dir(n),
            ["fetch", "-q", alice.to_str().unwrap(), spec.as_str()],
        );
        let out = g.cs(
            n,
            &[
                "approve",
                probe.as_str(),
                "--ref",
                PREF,
                "--result",
                "--no-note",
            ],
        );
        assert!(out.success, "{out}");
        let t = out
            .stdout
            .lines()
            .find(|l| l.starts_with("Countersign-Approval:"))
            .unwrap()
            .to_string();
        msg.push_str(&t);
        msg.push('\n');
    }
    sign_commit(g, "alice", tree, parent, &msg)
}

/// HOLE (medium, denial of service): the hook remembers only the NEW TIP
/// of an accepted policy push, so the intermediate commits of a
/// multi-commit policy push are judged again, in `When::History` mode, by
/// the next push's `in_force` -- with revocation at *now*. Here alice's
/// key carries a scheduled revocation (`revoked` = soon); before it she
/// pushes two approved changes at once (both accepted). Once the date
/// passes, the next push of anybody re-judges the first change, finds it
/// signed by a revoked key and rejects EVERY push (policy-ref-broken),
/// including any policy change that could repair it; only the operator
/// (re-pin, or hand-editing the trust file) gets out. Pushed one at a
/// time, the same two changes would have been remembered and never
/// re-judged. (Any fresh verification -- a new clone's `pin`, a lost
/// trust file -- hits the same wall, for single pushes too.)
#[test]
fn gov_attack2_multi_commit_policy_push_is_not_rejudged() {
    let revoke_at = unix_now() + 120;
    let g = Gov::new_with(&format!("revoked = {}", utc(revoke_at)));
    g.fetch("alice");
    let base = format!("{}\n", g.policy_now());
    let tip = g.sb.server_ref(PREF).unwrap();
    let l1 = approved_step(&g, &tip, &format!("{base}# step 1\n"), 1);
    let l2 = approved_step(&g, &l1, &format!("{base}# step 2\n"), 2);
    let out = g.push_policy("alice", &l2);
    assert!(
        out.success && out.stderr.contains("countersign: accepted"),
        "both steps accepted\n{out}"
    );
    assert!(unix_now() < revoke_at, "the setup was too slow");
    let trust = std::fs::read_to_string(g.sb.server.join("countersign/policy-trust")).unwrap();
    eprintln!("trust file after the push:\n{trust}");
    assert!(
        trust.contains(&l1),
        "every commit of the push is remembered"
    );

    let wait = revoke_at.saturating_sub(unix_now()) + 2;
    std::thread::sleep(Duration::from_secs(wait));
    let dave = g.dir("dave").to_path_buf();
    g.sb.git_ok_in(&dave, ["checkout", "-q", "-B", "main", "origin/main"]);
    g.sb.commit_in(&dave, Some(&g.keys["dave"]), "d.txt", "dave");
    let out = g.git("dave", &["push", "origin", "main"]);
    assert!(
        out.success && out.stderr.contains("countersign: accepted"),
        "an accepted policy push is never judged again\n{out}"
    );
}

/// Finding (low): `only_named_files` compares tree entry names after
/// `String::from_utf8_lossy`, so an entry whose name is NOT UTF-8
/// (`k\xff.asc`) passes as the named certificate file `k\u{FFFD}.asc`: a
/// stray file rides along in an approved policy tree (it reaches the disk
/// of anyone who checks the policy ref out with git; `policy edit` writes
/// only the named files).
#[test]
fn gov_attack2_non_utf8_names_are_refused() {
    let mut g = Gov::new();
    let frank = g.sb.gpg_key("frank");
    let Key::OpenPgp {
        home, fingerprint, ..
    } = &frank
    else {
        unreachable!()
    };
    let mut c = std::process::Command::new("gpg");
    c.env("GNUPGHOME", home)
        .args(["--batch", "--armor", "--export", fingerprint.as_str()]);
    let cert = c.output().unwrap().stdout;
    assert!(!cert.is_empty());
    g.fetch("alice");
    let base = format!("{}\n", g.policy_now());
    let text = format!(
        "{base}\n[people.frank]\nname = \"frank\"\nroles = []\nopenpgp = [\"k\u{FFFD}.asc\"]\n"
    );
    let alice = g.dir("alice").to_path_buf();
    let hash = |b: &[u8]| {
        g.sb.git_stdin_in(&alice, &["hash-object", "-w", "--stdin"], b)
    };
    let (t, k, stray) = (
        hash(text.as_bytes()),
        hash(&cert),
        hash(b"#!/bin/sh\necho smuggled\n"),
    );
    let mut raw = Vec::new();
    for (name, blob) in [
        (b"countersign.toml".to_vec(), &t),
        ("k\u{FFFD}.asc".as_bytes().to_vec(), &k),
        (b"k\xff.asc".to_vec(), &stray),
    ] {
        raw.extend_from_slice(b"100644 ");
        raw.extend(name);
        raw.push(0);
        raw.extend(raw_oid(blob));
    }
    let tree = g.sb.git_stdin_in(
        &alice,
        &["hash-object", "-t", "tree", "-w", "--stdin"],
        &raw,
    );
    let tip = g.sb.server_ref(PREF).unwrap();
    let l = approved_tree_step(&g, &tip, &tree, 1);
    let out = g.push_policy("alice", &l);
    assert_rejected_with(&out, "policy-change-invalid");
    assert!(out.stderr.contains("not UTF-8"), "{out}");
    assert_eq!(g.sb.server_ref(PREF).as_deref(), Some(tip.as_str()));
}
