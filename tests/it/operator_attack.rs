//! Known holes for an *operator*: someone who can write the server
//! repository's files (README, "Who can write the server's files"), found
//! by an attack review on 2026-12-01 and not closed. Such a person can
//! also switch the hook off; these show what they can do while it runs,
//! and what a clone's `verify` still catches. Each test asserts the safe
//! behaviour, so each fails (with "HOLE:") until its hole is closed: they
//! are ignored, run them with `cargo test --test it operator_attack --
//! --ignored`, and drop the `ignore` of the one you close.
//!
//! 1. git (the `git merge-tree` child that decides "the clean merge") does
//!    not check that an object's content hashes to its id, and the hook
//!    never reads the blobs git merges: one loose blob of an approved topic
//!    rewritten for the length of one push makes git's clean merge carry
//!    content nobody approved.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use crate::common::*;
use crate::util::*;

fn loose(git_dir: &Path, id: &str) -> PathBuf {
    git_dir.join("objects").join(&id[..2]).join(&id[2..])
}

/// Store `content` under the blob id `id` (whatever it hashes to).
fn forge_blob(git_dir: &Path, id: &str, content: &[u8]) {
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    z.write_all(format!("blob {}\0", content.len()).as_bytes())
        .unwrap();
    z.write_all(content).unwrap();
    let path = loose(git_dir, id);
    let _ = std::fs::remove_file(&path); // 0444 file in a writable directory
    std::fs::write(&path, z.finish().unwrap()).unwrap();
}

/// In `name`'s clone: branch `branch` from `from`, write `f.txt`, commit signed, push.
fn commit_file(t: &Team, name: &str, branch: &str, from: &str, text: &str) -> String {
    let dir = t.clone_of(name);
    t.sb.git_ok_in(&dir, ["checkout", "-q", "-B", branch, from]);
    std::fs::write(dir.join("f.txt"), text).unwrap();
    t.sb.git_ok_in(&dir, ["add", "f.txt"]);
    let id =
        t.sb.commit_staged_in(&dir, t.key(name), &format!("{branch}\n"), &[]);
    assert_accepted(
        &t.sb
            .git_out_in(&dir, None, ["push", "-q", "origin", branch]),
    );
    id
}

const V1: &str = "l1\nl2\nl3\nl4\nl5\nl6\nl7\nl8\n";
const V_MAIN: &str = "L1 main\nl2\nl3\nl4\nl5\nl6\nl7\nl8\n";
const V_TOPIC: &str = "l1\nl2\nl3\nl4\nl5\nl6\nl7\nL8 topic\n";
const V_FORGED: &str = "l1\nl2\nl3\nEVIL never approved\nl5\nl6\nl7\nL8 topic\n";
const V_EVIL_MERGE: &str = "L1 main\nl2\nl3\nEVIL never approved\nl5\nl6\nl7\nL8 topic\n";

/// An unsigned commit of `tree` on `parent`, made on the server.
fn unsigned_commit(sb: &Sandbox, tree: &str, parent: &str, message: &str) -> String {
    sb.server_git_ok([
        "-c",
        "user.name=E",
        "-c",
        "user.email=e@x",
        "commit-tree",
        tree,
        "-p",
        parent,
        "-m",
        message,
    ])
}

/// Append to the server's audit log a copy of its last accepted push,
/// next in the chain (`prev` is the SHA-256 of the line before, which
/// anyone can compute), claiming the move of `refname` from `old` to `new`.
fn forge_accepted_record(server: &Path, refname: &str, old: &str, new: &str) {
    use sha2::Digest as _;
    let path = server.join("countersign/audit.log");
    let text = std::fs::read_to_string(&path).unwrap();
    let last = text.lines().last().unwrap();
    let last_v: serde_json::Value = serde_json::from_str(last).unwrap();
    let mut rec = text
        .lines()
        .rev()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|v| v["kind"] == "push" && v["verdict"] == "accepted")
        .unwrap();
    rec["seq"] = (last_v["seq"].as_u64().unwrap() + 1).into();
    rec["prev"] = sha2::Sha256::digest(last.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<String>()
        .into();
    rec["updates"] = serde_json::json!([{ "ref": refname, "old": old, "new": new }]);
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap();
    writeln!(f, "{rec}").unwrap();
}

#[test]
#[ignore = "known hole for an operator (README: Who can write the server's files)"]
fn a_forged_loose_blob_makes_an_evil_merge_the_clean_merge() {
    let t = Team::usual(Kind::Ssh, Kind::Ssh, Kind::Ssh, Kind::Ssh);
    // main gets f.txt (v1), then a change to line 1, each through an approved merge.
    let a = commit_file(&t, "alice", "topic-a", "origin/main", V1);
    t.hand_merge("mia", &["origin/topic-a"], &t.usual_approvals(&a));
    assert_accepted(&t.push_from("mia", &["main"]));
    let b = commit_file(&t, "alice", "topic-b", "origin/main", V_MAIN);
    t.hand_merge("mia", &["origin/topic-b"], &t.usual_approvals(&b));
    assert_accepted(&t.push_from("mia", &["main"]));
    let main_before = t.sb.server_ref(MAIN).unwrap();
    // topic-c, from before topic-b: changes line 8 only. Approved as such.
    let c = commit_file(&t, "alice", "topic-c", &format!("{main_before}^"), V_TOPIC);
    let trailers = t.usual_approvals(&c);

    // mia's merge of topic-c whose tree also has a line nobody approved.
    let dir = t.on_main("mia");
    let out = t.sb.git_out_in(
        &dir,
        None,
        ["merge", "-q", "--no-ff", "--no-commit", "origin/topic-c"],
    );
    assert!(out.success, "{out}");
    std::fs::write(dir.join("f.txt"), V_EVIL_MERGE).unwrap();
    t.sb.git_ok_in(&dir, ["add", "f.txt"]);
    let m = t.sb.commit_staged_in(
        &dir,
        t.key("mia"),
        &merge_message("Merge topic-c into main", &trailers),
        &[],
    );

    // Control: refused as an evil merge.
    let control = t.push_from("mia", &["main"]);
    assert_rejected_with(&control, "evil-merge");

    // On the server: topic-c's blob of f.txt (a loose object: small pushes
    // are unpacked) holds other bytes while the push runs.
    let server = t.sb.server.clone();
    let blob = t.sb.server_git_ok(["rev-parse", &format!("{c}:f.txt")]);
    assert!(loose(&server, &blob).exists(), "not loose on the server");
    let genuine = std::fs::read(loose(&server, &blob)).unwrap();
    forge_blob(&server, &blob, V_FORGED.as_bytes());
    let out = t.push_from("mia", &["main"]);
    // Put the genuine file back: nothing is left to see.
    let _ = std::fs::remove_file(loose(&server, &blob));
    std::fs::write(loose(&server, &blob), genuine).unwrap();
    let fsck = run(t.sb.git_in(&server, ["fsck", "--no-dangling"]), None);
    let landed = t.sb.server_ref(MAIN);
    let content = t.sb.server_git_ok(["show", &format!("{m}:f.txt")]);
    // A clone's verify (genuine objects) calls it what it is.
    let verify = t.cs(
        "mia",
        &[
            "verify",
            &format!("{main_before}..{m}"),
            "--ref",
            "refs/heads/main",
            "--no-cache",
        ],
    );
    assert!(
        !out.success && landed.as_deref() == Some(main_before.as_str()),
        "HOLE: main moved to an evil merge\npush:\n{out}\nmain = {landed:?} (merge {m})\nf.txt on main:\n{content}\nfsck after restore:\n{fsck}\nverify in a clone:\n{verify}"
    );
}

/// the pre-receive's ledger step explains a tracked ref's move by
/// any "accepted" push record in the JSON audit log's tail, and that tail is
/// neither keyed nor (there) chain-checked. The audit log must be writable
/// by every pusher (group-writable in a shared repository: `doctor` asks for
/// it), so a group member moves main around the hook onto an unsigned
/// commit and appends one record (its `prev` the SHA-256 of the line before,
/// which anyone can compute): the next push, by anyone, is accepted and the
/// server signs a `push` entry for the move instead of refusing every push
/// (`ref-moved-out-of-band`).
#[test]
#[ignore = "known hole for an operator (README: Who can write the server's files)"]
fn a_forged_accepted_record_launders_a_move_around_the_hook() {
    let (mut sb, dev, _base) = with_dev(|_| Vec::new());
    let second = sb.commit_as(Some(&dev), "second");
    assert_accepted(&sb.push(&["main"]));
    // The group member, on the server.
    let tree = sb.server_git_ok(["rev-parse", &format!("{second}^{{tree}}")]);
    let evil = unsigned_commit(&sb, &tree, &second, "unsigned, never checked");
    sb.server_git_ok(["update-ref", MAIN, &evil]);
    forge_accepted_record(&sb.server, MAIN, &second, &evil);
    let chain = sb.countersign(&sb.server.clone(), ["audit", "verify"]);

    // Anyone's next push (here an unprotected branch).
    let out = sb.push(&["HEAD:refs/heads/topic"]);
    let kinds = crate::ledger::kinds(&sb);
    let e = crate::ledger::entry(&sb, crate::ledger::LOG);
    assert!(
        !out.success && kinds.iter().any(|k| k == "observed-out-of-band"),
        "HOLE: the move around the hook was explained by a forged record\naudit verify after the append:\n{chain}\npush:\n{out}\nentry kinds: {kinds:?}\nlast entry: {e}\nmain on the server: {:?} (unsigned {evil})",
        sb.server_ref(MAIN)
    );
}

/// `countersign/policy-trust` (plain text, in the group-writable
/// countersign/ directory) is believed: its `seen` line sets where the
/// chain check of `refs/meta/countersign` starts, so a tip named there is
/// loaded without being judged. A group member writes an unsigned policy
/// commit granting erin `developer`, moves the policy ref to it, names it
/// `seen`, and explains the ref move to the ledger with a forged audit
/// record (as above): erin's commit, refused before, is accepted on main.
#[test]
#[ignore = "known hole for an operator (README: Who can write the server's files)"]
fn a_forged_trust_file_puts_an_unsigned_policy_in_force() {
    let g = crate::governance::Gov::new();
    let pref = "refs/meta/countersign";
    // Control: erin holds no role.
    let erin = g.dir("erin").to_path_buf();
    g.sb.git_ok_in(&erin, ["checkout", "-q", "-B", "main", "origin/main"]);
    g.sb.commit_in(&erin, Some(&g.keys["erin"]), "e.txt", "erin");
    let out = g.git("erin", &["push", "origin", "main"]);
    assert!(!out.success, "{out}");

    // The group member, on the server.
    let server = g.sb.server.clone();
    let old = g.sb.server_ref(pref).unwrap();
    let text = crate::governance::grant("developer", "erin")(g.policy_now());
    let blob =
        g.sb.git_stdin_in(&server, &["hash-object", "-w", "--stdin"], text.as_bytes());
    let tree = g.sb.git_stdin_in(
        &server,
        &["mktree"],
        format!("100644 blob {blob}\tcountersign.toml\n").as_bytes(),
    );
    let forged = unsigned_commit(&g.sb, &tree, &old, "unsigned policy");
    g.sb.server_git_ok(["update-ref", pref, &forged]);
    let trust_path = server.join("countersign/policy-trust");
    let trust = std::fs::read_to_string(&trust_path).unwrap();
    let mut lines: Vec<String> = trust
        .lines()
        .filter(|l| !l.starts_with("seen "))
        .map(String::from)
        .collect();
    lines.insert(2, format!("seen {forged}"));
    std::fs::write(&trust_path, lines.join("\n") + "\n").unwrap();
    forge_accepted_record(&server, pref, &old, &forged);

    let out = g.git("erin", &["push", "origin", "main"]);
    let kinds = crate::ledger::kinds(&g.sb);
    assert!(
        !out.success,
        "HOLE: an unsigned policy commit is in force\ntrust file:\n{}\npush:\n{out}\nentry kinds: {kinds:?}\npolicy ref: {:?} (forged {forged})",
        std::fs::read_to_string(&trust_path).unwrap(),
        g.sb.server_ref(pref)
    );
}
