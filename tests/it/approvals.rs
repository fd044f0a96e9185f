//! Approvals and merges: separation of duties on a `[rule.merge]` ref.

use std::fs;

use crate::common::*;
use crate::util::*;

/// The happy path with the given key kinds for the approvers and merger.
fn approved_merge_is_accepted(bob: Kind, carol: Kind, sam: Kind, mia: Kind) {
    let t = Team::usual(bob, carol, sam, mia);
    let topic = t.commit_on("alice", "topic", "feature.txt");
    for (n, kind) in [("bob", bob), ("carol", carol), ("sam", sam)] {
        let trailer = t.approve(n, &topic, &[]);
        assert!(
            trailer.contains(&format!("by={n}@example.com"))
                && trailer.contains("repo=test/e2e")
                && trailer.contains("ref=refs/heads/main")
                && trailer.contains("kind=topic")
                && trailer.contains(&format!("commit={topic}")),
            "{trailer}"
        );
        // The signature is of the key's kind.
        let sig = trailer_field(&trailer, "sig");
        assert_eq!(
            sig.starts_with("U1NIU0lH"), // base64 of "SSHSIG"
            kind == Kind::Ssh,
            "{n} ({kind:?}) signed {sig}"
        );
    }
    let dir = t.on_main("mia");
    let status = t.cs("mia", &["status", "origin/topic", "--ref", "main"]);
    assert_eq!(status.code, Some(0), "status should say ready\n{status}");
    assert_eq!(
        status.stdout.matches("counts as reviewer").count(),
        2,
        "{status}"
    );
    assert_eq!(
        status.stdout.matches("counts as security").count(),
        1,
        "{status}"
    );
    let merged = t.cs("mia", &["merge", "origin/topic"]);
    assert_eq!(merged.code, Some(0), "countersign merge failed\n{merged}");
    let head = t.sb.git_ok_in(&dir, ["rev-parse", "HEAD"]);
    assert_eq!(t.parents("mia", &head), vec![t.base.clone(), topic.clone()]);
    let msg = t.sb.git_ok_in(&dir, ["log", "-1", "--format=%B", "HEAD"]);
    assert_eq!(msg.matches("Countersign-Approval: ").count(), 3, "{msg}");
    let out = t.push_from("mia", &["main"]);
    assert_accepted(&out);
    t.sb.assert_server_ref(MAIN, Some(&head));
}

#[test]
fn approvals_ssh_approved_merge_is_accepted() {
    approved_merge_is_accepted(Kind::Ssh, Kind::Ssh, Kind::Ssh, Kind::Ssh);
}

#[test]
fn approvals_openpgp_approved_merge_is_accepted() {
    approved_merge_is_accepted(Kind::Pgp, Kind::Pgp, Kind::Pgp, Kind::Pgp);
}

#[test]
fn approvals_mixed_ssh_and_openpgp_merge_is_accepted() {
    approved_merge_is_accepted(Kind::Ssh, Kind::Pgp, Kind::Ssh, Kind::Pgp);
}

#[test]
fn approvals_too_few_are_refused_by_merge_and_hook() {
    let t = Team::usual(Kind::Ssh, Kind::Ssh, Kind::Ssh, Kind::Ssh);
    let topic = t.commit_on("alice", "topic", "feature.txt");
    let bob = t.approve("bob", &topic, &[]);
    t.merge_refused("mia", "origin/topic", "insufficient-approvals");
    t.hand_merge("mia", &["origin/topic"], &[bob]);
    let out = t.push_main_rejected("mia", "insufficient-approvals");
    assert!(out.stderr.contains("2 x reviewer: 1 of 2 (bob)"), "{out}");
    assert!(out.stderr.contains("1 x security: 0 of 1"), "{out}");
}

#[test]
fn approvals_wrong_role_fills_no_slot() {
    let t = Team::usual(Kind::Ssh, Kind::Ssh, Kind::Ssh, Kind::Ssh);
    let topic = t.commit_on("alice", "topic", "feature.txt");
    let trailers = vec![
        t.approve("bob", &topic, &[]),
        t.approve("dave", &topic, &[]),
        t.approve("sam", &topic, &[]),
    ];
    t.on_main("mia");
    let status = t.cs("mia", &["status", "origin/topic", "--ref", "main"]);
    assert_eq!(status.code, Some(1), "{status}");
    assert!(
        status
            .stdout
            .contains("key=dave: verified, but fills no required role"),
        "{status}"
    );
    t.hand_merge("mia", &["origin/topic"], &trailers);
    let out = t.push_main_rejected("mia", "insufficient-approvals");
    assert!(
        out.stderr
            .contains("(dave's key): verified, but fills no required role"),
        "{out}"
    );
}

#[test]
fn approvals_one_person_with_two_keys_counts_once() {
    let mut members = usual_members(Kind::Ssh, Kind::Ssh, Kind::Ssh, Kind::Ssh);
    members[1].keys = vec![Kind::Ssh, Kind::Ssh]; // bob: keys `bob`, `bob2`
    let t = Team::new(&members, APPROVALS_2R_1S);
    let topic = t.commit_on("alice", "topic", "feature.txt");
    let trailers = vec![
        t.approve("bob", &topic, &[]),
        t.approve("bob2", &topic, &[]),
        t.approve("sam", &topic, &[]),
    ];
    assert_ne!(trailers[0], trailers[1]);
    t.merge_refused("mia", "origin/topic", "insufficient-approvals");
    t.hand_merge("mia", &["origin/topic"], &trailers);
    let out = t.push_main_rejected("mia", "insufficient-approvals");
    assert!(out.stderr.contains("bob already approved"), "{out}");
    assert!(out.stderr.contains("2 x reviewer: 1 of 2 (bob)"), "{out}");
}

#[test]
fn approvals_approver_who_signed_inside_the_range_is_author() {
    let t = Team::usual(Kind::Ssh, Kind::Ssh, Kind::Ssh, Kind::Ssh);
    // carol writes the first commit of the topic, alice the tip.
    t.commit_on("carol", "topic", "first.txt");
    let topic = t.commit_on("alice", "topic", "second.txt");
    let trailers = vec![
        t.approve("bob", &topic, &[]),
        t.approve("carol", &topic, &[]),
        t.approve("sam", &topic, &[]),
    ];
    // countersign merge leaves carol's approval out, and then has too few.
    let out = t.merge_refused("mia", "origin/topic", "insufficient-approvals");
    assert!(out.stderr.contains("leaving out approval #2"), "{out}");
    t.hand_merge("mia", &["origin/topic"], &trailers);
    let out = t.push_main_rejected("mia", "approver-is-author");
    assert!(
        out.stderr
            .contains("carol approved a change that includes their own commits"),
        "{out}"
    );
}

#[test]
fn approvals_merger_who_approved_is_refused() {
    let mut members = usual_members(Kind::Ssh, Kind::Ssh, Kind::Ssh, Kind::Ssh);
    members[4].roles = &["reviewer", "maintainer"]; // mia
    let t = Team::new(&members, APPROVALS_2R_1S);
    let topic = t.commit_on("alice", "topic", "feature.txt");
    let trailers = vec![
        t.approve("bob", &topic, &[]),
        t.approve("mia", &topic, &[]),
        t.approve("sam", &topic, &[]),
    ];
    t.merge_refused("mia", "origin/topic", "approver-is-merger");
    t.hand_merge("mia", &["origin/topic"], &trailers);
    let out = t.push_main_rejected("mia", "approver-is-merger");
    assert!(out.stderr.contains("mia both approved and merged"), "{out}");
}

#[test]
fn approvals_of_an_older_tip_are_stale() {
    let t = Team::usual(Kind::Ssh, Kind::Ssh, Kind::Ssh, Kind::Ssh);
    let old = t.commit_on("alice", "topic", "feature.txt");
    let trailers = t.usual_approvals(&old);
    let new = t.commit_on("alice", "topic", "feature.txt");
    // countersign merge finds no approvals of the new tip (the notes are
    // on the old one).
    t.merge_refused("mia", "origin/topic", "insufficient-approvals");
    // A hand-made merge of the new tip carrying them.
    let m = t.hand_merge("mia", &["origin/topic"], &trailers);
    assert_eq!(t.parents("mia", &m)[1], new);
    let out = t.push_main_rejected("mia", "stale-approval");
    assert!(out.stderr.contains(&old[..12]), "names the old tip\n{out}");
}

#[test]
fn approvals_of_an_amended_tip_do_not_count() {
    // An amended (not extended) topic: the approved commit is not an
    // ancestor of the new tip.
    let t = Team::usual(Kind::Ssh, Kind::Ssh, Kind::Ssh, Kind::Ssh);
    let old = t.commit_on("alice", "topic", "feature.txt");
    let trailers = t.usual_approvals(&old);
    let dir = t.clone_of("alice");
    let mut args = t.key("alice").sign_args();
    args.extend(["commit", "-q", "-S", "--amend", "-m", "amended"].map(String::from));
    let amended = t.sb.git_out_in(&dir, None, &args);
    assert!(amended.success, "{amended}");
    let out =
        t.sb.git_out_in(&dir, None, ["push", "-f", "origin", "topic"]);
    assert_accepted(&out);
    t.hand_merge("mia", &["origin/topic"], &trailers);
    let out = t.push_main_rejected("mia", "approval-wrong-commit");
    assert!(out.stderr.contains(&old[..12]), "{out}");
}

#[test]
fn approvals_for_another_topic_are_refused() {
    let t = Team::usual(Kind::Ssh, Kind::Ssh, Kind::Ssh, Kind::Ssh);
    let a = t.commit_on("alice", "topic-a", "a.txt");
    t.commit_on("alice", "topic-b", "b.txt");
    let trailers = t.usual_approvals(&a);
    t.hand_merge("mia", &["origin/topic-b"], &trailers);
    t.push_main_rejected("mia", "approval-wrong-commit");
}

#[test]
fn approvals_for_another_ref_are_refused() {
    let t = Team::usual(Kind::Ssh, Kind::Ssh, Kind::Ssh, Kind::Ssh);
    let topic = t.commit_on("alice", "topic", "feature.txt");
    let mut trailers = vec![t.approve("bob", &topic, &[])];
    // carol's approval was made for release, not main.
    let out = t.cs(
        "carol",
        &["approve", &topic, "--ref", "release", "--no-note"],
    );
    assert_eq!(out.code, Some(0), "{out}");
    let carol = trailer_of(&out);
    assert!(carol.contains("ref=refs/heads/release"), "{carol}");
    trailers.push(carol);
    trailers.push(t.approve("sam", &topic, &[]));
    t.hand_merge("mia", &["origin/topic"], &trailers);
    t.push_main_rejected("mia", "approval-wrong-ref");
}

#[test]
fn approvals_for_another_repository_are_refused() {
    let t = Team::usual(Kind::Ssh, Kind::Ssh, Kind::Ssh, Kind::Ssh);
    let topic = t.commit_on("alice", "topic", "feature.txt");
    let mut trailers = vec![t.approve("bob", &topic, &[])];
    let out = t.cs(
        "carol",
        &[
            "approve",
            &topic,
            "--ref",
            "main",
            "--repository",
            "other/repo",
            "--no-note",
        ],
    );
    assert_eq!(out.code, Some(0), "{out}");
    let carol = trailer_of(&out);
    assert!(carol.contains("repo=other/repo"), "{carol}");
    trailers.push(carol);
    trailers.push(t.approve("sam", &topic, &[]));
    t.hand_merge("mia", &["origin/topic"], &trailers);
    t.push_main_rejected("mia", "approval-wrong-repository");
}

#[test]
fn approvals_with_one_changed_signature_character_are_refused() {
    let t = Team::usual(Kind::Ssh, Kind::Ssh, Kind::Ssh, Kind::Ssh);
    let topic = t.commit_on("alice", "topic", "feature.txt");
    let mut trailers = t.usual_approvals(&topic);
    // Change one base64 character inside the signature bytes (R of the
    // ed25519 signature, ~60 characters from the end), keeping valid base64.
    let sig = trailer_field(&trailers[1], "sig");
    let i = sig.len() - 60;
    let c = sig.as_bytes()[i];
    let flipped = if c == b'A' { 'B' } else { 'A' };
    let forged = format!("{}{}{}", &sig[..i], flipped, &sig[i + 1..]);
    assert_ne!(forged, sig);
    trailers[1] = with_trailer_field(&trailers[1], "sig", &forged);
    t.hand_merge("mia", &["origin/topic"], &trailers);
    t.push_main_rejected("mia", "bad-signature");
}

#[test]
fn approvals_signed_by_a_key_outside_the_policy_are_refused() {
    let mut t = Team::usual(Kind::Ssh, Kind::Ssh, Kind::Ssh, Kind::Ssh);
    let topic = t.commit_on("alice", "topic", "feature.txt");
    // The attacker's own clone, claiming to be bob.
    let attacker = t.sb.ssh_key("attacker");
    t.keys.insert("attacker".into(), ("bob".into(), attacker)); // e-mail bob@example.com
    let out = t.cs(
        "attacker",
        &["approve", &topic, "--ref", "main", "--no-note"],
    );
    assert_eq!(out.code, Some(0), "{out}");
    assert!(
        out.stderr.contains("will not count"),
        "approve should warn that the key is not in the policy\n{out}"
    );
    let forged = trailer_of(&out);
    assert!(forged.contains("by=bob@example.com"), "{forged}");
    let trailers = vec![
        forged,
        t.approve("carol", &topic, &[]),
        t.approve("sam", &topic, &[]),
    ];
    t.hand_merge("mia", &["origin/topic"], &trailers);
    t.push_main_rejected("mia", "unknown-signer");
}

#[test]
fn approvals_claiming_another_person_count_as_the_signer() {
    let mut members = usual_members(Kind::Ssh, Kind::Ssh, Kind::Ssh, Kind::Ssh);
    members.push(member("mallory", &["developer"], Kind::Ssh));
    let t = Team::new(&members, APPROVALS_2R_1S);
    let topic = t.commit_on("alice", "topic", "feature.txt");
    // mallory's clone claims to be bob.
    let dir = t.clone_of("mallory");
    t.sb.git_ok_in(&dir, ["config", "user.email", "bob"]);
    let out = t.cs(
        "mallory",
        &["approve", &topic, "--ref", "main", "--no-note"],
    );
    assert_eq!(out.code, Some(0), "{out}");
    let forged = trailer_of(&out);
    assert!(forged.contains("by=bob "), "{forged}");
    let trailers = vec![
        forged,
        t.approve("carol", &topic, &[]),
        t.approve("sam", &topic, &[]),
    ];
    t.hand_merge("mia", &["origin/topic"], &trailers);
    let out = t.push_main_rejected("mia", "insufficient-approvals");
    assert!(
        out.stderr
            .contains("#1 by=bob (mallory's key): verified, but fills no required role"),
        "the listing should show whose key signed\n{out}"
    );
}

#[test]
fn approvals_carrying_a_commit_signature_are_refused() {
    let t = Team::usual(Kind::Ssh, Kind::Ssh, Kind::Ssh, Kind::Ssh);
    // bob signs a commit (namespace git) on some branch.
    let bobs = t.commit_on("bob", "bob-work", "bob.txt");
    let dir = t.clone_of("bob");
    let raw = t.sb.git_ok_in(&dir, ["cat-file", "commit", bobs.as_str()]);
    let (_, sig) = split_gpgsig(&format!("{raw}\n"));
    let commit_sig = armor_body(&sig.expect("bob's commit is signed"));
    let topic = t.commit_on("alice", "topic", "feature.txt");
    let mut trailers = t.usual_approvals(&topic);
    trailers[0] = with_trailer_field(&trailers[0], "sig", &commit_sig);
    t.hand_merge("mia", &["origin/topic"], &trailers);
    t.push_main_rejected("mia", "ssh-namespace");
}

#[test]
fn approvals_commit_carrying_an_approval_signature_is_refused() {
    let t = Team::usual(Kind::Ssh, Kind::Ssh, Kind::Ssh, Kind::Ssh);
    let topic = t.commit_on("alice", "topic", "feature.txt");
    let approval = t.approve("bob", &topic, &[]);
    let sig = ssh_armor(&trailer_field(&approval, "sig"));
    // bob's unsigned commit on a topic, given bob's approval signature as
    // its gpgsig.
    let dir = t.clone_of("bob");
    t.sb.git_ok_in(&dir, ["checkout", "-q", "-B", "topic2", "origin/main"]);
    let unsigned = t.sb.commit_in(&dir, None, "bob.txt", "bob's change");
    let payload = format!(
        "{}\n",
        t.sb.git_ok_in(&dir, ["cat-file", "commit", unsigned.as_str()])
    );
    let forged = run_stdin_ok(
        &t.sb,
        &dir,
        &["hash-object", "-t", "commit", "-w", "--stdin"],
        &insert_gpgsig(&payload, &sig),
    );
    t.sb.git_ok_in(&dir, ["reset", "-q", "--hard", forged.as_str()]);
    let out = t.sb.git_out_in(&dir, None, ["push", "origin", "topic2"]);
    assert_accepted(&out);
    let trailers = t.usual_approvals(&forged);
    t.hand_merge("mia", &["origin/topic2"], &trailers);
    t.push_main_rejected("mia", "ssh-namespace");
}

/// `git <args>` in `dir` with `input` on stdin; stdout trimmed.
#[track_caller]
fn run_stdin_ok(sb: &Sandbox, dir: &std::path::Path, args: &[&str], input: &str) -> String {
    use std::io::Write as _;
    let mut c = sb.git_in(dir, args);
    c.stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = c.spawn().unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn approvals_evil_merge_with_extra_change_is_refused() {
    let t = Team::usual(Kind::Ssh, Kind::Ssh, Kind::Ssh, Kind::Ssh);
    let topic = t.commit_on("alice", "topic", "feature.txt");
    let trailers = t.usual_approvals(&topic);
    let dir = t.on_main("mia");
    let out = t.sb.git_out_in(
        &dir,
        None,
        ["merge", "-q", "--no-ff", "--no-commit", "origin/topic"],
    );
    assert!(out.success, "{out}");
    fs::write(dir.join("evil.txt"), "not reviewed\n").unwrap();
    t.sb.git_ok_in(&dir, ["add", "evil.txt"]);
    let m = t.sb.commit_staged_in(
        &dir,
        t.key("mia"),
        &merge_message("Merge topic into main", &trailers),
        &[],
    );
    assert_eq!(t.parents("mia", &m), vec![t.base.clone(), topic]);
    t.push_main_rejected("mia", "evil-merge");
}

#[test]
fn approvals_merge_with_swapped_parents_is_refused() {
    let t = Team::usual(Kind::Ssh, Kind::Ssh, Kind::Ssh, Kind::Ssh);
    let topic = t.commit_on("alice", "topic", "feature.txt");
    let trailers = t.usual_approvals(&topic);
    let dir = t.on_main("mia");
    // First parent: the topic; second: main. (`git merge main` on the topic
    // would be "already up to date": main is the topic's fork point; the
    // clean merge's tree is the topic's.) Signed by mia, with the trailers.
    let msg =
        t.sb.write_message(&merge_message("Merge main into topic", &trailers));
    let mut args = t.key("mia").sign_args();
    args.extend(
        [
            "commit-tree",
            "-S",
            "-p",
            topic.as_str(),
            "-p",
            t.base.as_str(),
            "-F",
        ]
        .map(String::from),
    );
    args.push(msg.display().to_string());
    args.push(format!("{topic}^{{tree}}"));
    let out = t.sb.git_out_in(&dir, None, &args);
    assert!(out.success, "{out}");
    let m = out.stdout.trim().to_string();
    t.sb.git_ok_in(&dir, ["checkout", "-q", "-B", "swap", m.as_str()]);
    assert_eq!(t.parents("mia", &m), vec![topic, t.base.clone()]);
    let out = t.push_from("mia", &["swap:main"]);
    assert!(!out.success, "{out}");
    let codes = error_codes(&out.stderr);
    eprintln!("swapped parents: codes {codes:?}");
    assert_rejected_with(&out, "approval-wrong-commit");
    assert_rejected_with(&out, "merge-required");
    t.sb.assert_server_ref(MAIN, Some(&t.base));
}

#[test]
fn approvals_octopus_merge_is_refused() {
    let t = Team::usual(Kind::Ssh, Kind::Ssh, Kind::Ssh, Kind::Ssh);
    let a = t.commit_on("alice", "topic-a", "a.txt");
    let b = t.commit_on("alice", "topic-b", "b.txt");
    let mut trailers = t.usual_approvals(&a);
    trailers.extend(t.usual_approvals(&b));
    let m = t.hand_merge("mia", &["origin/topic-a", "origin/topic-b"], &trailers);
    assert_eq!(t.parents("mia", &m).len(), 3);
    t.push_main_rejected("mia", "octopus-merge");
}

/// Two topics change the same line; topic-1 is merged (approved), so
/// topic-2 conflicts with main. mia merges it by hand, resolving the
/// conflict, signs the merge without trailers and pushes it to
/// `mia/merge` for review. Returns (team, main after topic-1, topic-2 tip,
/// the merge id).
fn conflicted_merge() -> (Team, String, String, String) {
    let t = Team::usual(Kind::Ssh, Kind::Ssh, Kind::Ssh, Kind::Ssh);
    let one = t.commit_on("alice", "topic-1", "shared.txt");
    let two = t.commit_on("dave", "topic-2", "shared.txt");
    t.usual_approvals(&one);
    let dir = t.on_main("mia");
    let out = t.cs("mia", &["merge", "origin/topic-1"]);
    assert_eq!(out.code, Some(0), "{out}");
    assert_accepted(&t.push_from("mia", &["main"]));
    let main = t.sb.git_ok_in(&dir, ["rev-parse", "HEAD"]);
    // countersign merge refuses a conflicting topic, with a usage error.
    let out = t.cs("mia", &["merge", "origin/topic-2"]);
    assert_eq!(out.code, Some(2), "{out}");
    assert!(out.stderr.contains("does not merge cleanly"), "{out}");
    let out = t.sb.git_out_in(
        &dir,
        None,
        ["merge", "-q", "--no-ff", "--no-commit", "origin/topic-2"],
    );
    assert!(!out.success, "expected a conflict\n{out}");
    fs::write(dir.join("shared.txt"), "resolved by mia\n").unwrap();
    t.sb.git_ok_in(&dir, ["add", "shared.txt"]);
    let m =
        t.sb.commit_staged_in(&dir, t.key("mia"), "Merge topic-2 into main\n", &[]);
    assert_eq!(t.parents("mia", &m), vec![main.clone(), two.clone()]);
    let out = t.push_from("mia", &["HEAD:refs/heads/mia/merge"]);
    assert_accepted(&out);
    (t, main, two, m)
}

/// git's merge reads the server's `info/attributes`, and `merge=union`
/// there makes a conflict git's "clean" merge: a merger could land both
/// sides' lines together, a result no one reviewed, on the topic's
/// approvals alone. The hook refuses to ask git while that file names a
/// merge attribute (fails without `attributes_check`).
#[test]
fn approvals_a_union_attribute_on_the_server_does_not_make_a_conflict_clean() {
    let t = Team::usual(Kind::Ssh, Kind::Ssh, Kind::Ssh, Kind::Ssh);
    let one = t.commit_on("alice", "topic-1", "shared.txt");
    let two = t.commit_on("dave", "topic-2", "shared.txt");
    t.usual_approvals(&one);
    t.on_main("mia");
    let out = t.cs("mia", &["merge", "origin/topic-1"]);
    assert_eq!(out.code, Some(0), "{out}");
    assert_accepted(&t.push_from("mia", &["main"]));
    let union = "shared.txt merge=union\n";
    let server_attributes = t.sb.server.join("info/attributes");
    fs::create_dir_all(t.sb.server.join("info")).unwrap();
    fs::write(&server_attributes, union).unwrap();
    // mia merges topic-2 with the same attribute: git unions the lines.
    let trailers = t.usual_approvals(&two);
    let dir = t.on_main("mia");
    fs::write(dir.join(".git/info/attributes"), union).unwrap();
    let main = t.sb.git_ok_in(&dir, ["rev-parse", "HEAD"]);
    t.hand_merge("mia", &["origin/topic-2"], &trailers);
    let out = t.push_from("mia", &["main"]);
    assert_rejected_with(&out, "internal-error");
    assert!(
        out.stderr.contains("info/attributes") && out.stderr.contains("merge=union"),
        "{out}"
    );
    t.sb.assert_server_ref(MAIN, Some(&main));
    // doctor names it.
    let mut c = t.sb.cmd(BIN);
    c.args(["doctor", "--repo"]).arg(&t.sb.server);
    let doctor = run(c, None);
    assert_eq!(doctor.code, Some(1), "{doctor}");
    assert!(
        doctor.stdout.contains("merge attributes") && doctor.stdout.contains("info/attributes"),
        "{doctor}"
    );
    // Without the file, the union is not git's clean merge: a resolution
    // the topic's approvals do not cover.
    fs::remove_file(&server_attributes).unwrap();
    assert_rejected_with(&t.push_from("mia", &["main"]), "evil-merge");
    t.sb.assert_server_ref(MAIN, Some(&main));
}

/// mia amends the merge's message to carry `trailers`; parents and tree
/// stay. Returns the new id.
fn amend_merge_with(t: &Team, merge: &str, trailers: &[String]) -> String {
    let dir = t.sb.root().join("c-mia");
    let tree =
        t.sb.git_ok_in(&dir, ["rev-parse", &format!("{merge}^{{tree}}")]);
    let amended = t.sb.commit_staged_in(
        &dir,
        t.key("mia"),
        &merge_message("Merge topic-2 into main", trailers),
        &["--amend"],
    );
    assert_eq!(t.parents("mia", &amended), t.parents("mia", merge));
    assert_eq!(
        t.sb.git_ok_in(&dir, ["rev-parse", &format!("{amended}^{{tree}}")]),
        tree
    );
    amended
}

#[test]
fn approvals_of_a_resolved_conflict_result_are_accepted() {
    let (t, main, _two, m) = conflicted_merge();
    let trailers: Vec<String> = ["bob", "carol", "sam"]
        .iter()
        .map(|n| t.approve(n, &m, &["--result", "--no-note"]))
        .collect();
    for tr in &trailers {
        assert!(tr.contains("kind=result"), "{tr}");
    }
    let amended = amend_merge_with(&t, &m, &trailers);
    let out = t.push_from("mia", &["main"]);
    assert_accepted(&out);
    t.sb.assert_server_ref(MAIN, Some(&amended));
    assert_ne!(amended, main);
}

#[test]
fn approvals_of_the_topic_do_not_cover_a_resolved_conflict() {
    let (t, main, two, m) = conflicted_merge();
    let trailers = t.usual_approvals(&two);
    amend_merge_with(&t, &m, &trailers);
    let out = t.push_from("mia", &["main"]);
    assert_rejected_with(&out, "evil-merge");
    t.sb.assert_server_ref(MAIN, Some(&main));
}

#[test]
fn approvals_direct_commit_to_main_needs_a_merge() {
    let t = Team::usual(Kind::Ssh, Kind::Ssh, Kind::Ssh, Kind::Ssh);
    let dir = t.on_main("mia");
    t.sb.commit_in(&dir, Some(t.key("mia")), "direct.txt", "direct change");
    t.push_main_rejected("mia", "merge-required");
}

#[test]
fn approvals_merge_signed_by_non_maintainer_is_refused() {
    let t = Team::usual(Kind::Ssh, Kind::Ssh, Kind::Ssh, Kind::Ssh);
    let topic = t.commit_on("alice", "topic", "feature.txt");
    let trailers = t.usual_approvals(&topic);
    t.hand_merge("alice", &["origin/topic"], &trailers);
    t.push_main_rejected("alice", "signer-lacks-role");
}

#[test]
fn approvals_merger_who_wrote_a_commit_is_refused_when_the_rule_says_so() {
    let t = Team::new(
        &usual_members(Kind::Ssh, Kind::Ssh, Kind::Ssh, Kind::Ssh),
        &format!("{APPROVALS_2R_1S}\nmerger-distinct-from-authors = true"),
    );
    t.commit_on("mia", "topic", "first.txt");
    let topic = t.commit_on("alice", "topic", "second.txt");
    let trailers = t.usual_approvals(&topic);
    t.merge_refused("mia", "origin/topic", "merger-is-author");
    t.hand_merge("mia", &["origin/topic"], &trailers);
    t.push_main_rejected("mia", "merger-is-author");
}

#[test]
fn approvals_by_an_author_count_when_the_rule_allows_it() {
    let t = Team::new(
        &usual_members(Kind::Ssh, Kind::Ssh, Kind::Ssh, Kind::Ssh),
        &format!("{APPROVALS_2R_1S}\napprovers-distinct-from-authors = false"),
    );
    t.commit_on("carol", "topic", "first.txt");
    let topic = t.commit_on("alice", "topic", "second.txt");
    t.usual_approvals(&topic);
    let dir = t.on_main("mia");
    let out = t.cs("mia", &["merge", "origin/topic"]);
    assert_eq!(out.code, Some(0), "{out}");
    let head = t.sb.git_ok_in(&dir, ["rev-parse", "HEAD"]);
    assert_accepted(&t.push_from("mia", &["main"]));
    t.sb.assert_server_ref(MAIN, Some(&head));
}

#[test]
fn approvals_direct_commit_is_allowed_when_merges_are_not_required() {
    let t = Team::new(
        &usual_members(Kind::Ssh, Kind::Ssh, Kind::Ssh, Kind::Ssh),
        &format!("{APPROVALS_2R_1S}\nrequired = false"),
    );
    let dir = t.on_main("alice");
    let c =
        t.sb.commit_in(&dir, Some(t.key("alice")), "direct.txt", "direct change");
    assert_accepted(&t.push_from("alice", &["main"]));
    t.sb.assert_server_ref(MAIN, Some(&c));
    // A merge still needs its approvals.
    let topic = t.commit_on("alice", "topic", "feature.txt");
    let bob = t.approve("bob", &topic, &[]);
    t.hand_merge("mia", &["origin/topic"], &[bob]);
    let out = t.push_from("mia", &["main"]);
    assert_rejected_with(&out, "insufficient-approvals");
    t.sb.assert_server_ref(MAIN, Some(&c));
}

#[test]
fn approvals_topic_with_unsigned_commit_has_unverifiable_author() {
    let t = Team::usual(Kind::Ssh, Kind::Ssh, Kind::Ssh, Kind::Ssh);
    let dir = t.clone_of("alice");
    t.sb.git_ok_in(&dir, ["checkout", "-q", "-B", "topic", "origin/main"]);
    t.sb.commit_in(&dir, None, "first.txt", "unsigned");
    assert_accepted(&t.sb.git_out_in(&dir, None, ["push", "origin", "topic"]));
    let topic = t.commit_on("alice", "topic", "second.txt");
    let trailers = t.usual_approvals(&topic);
    t.hand_merge("mia", &["origin/topic"], &trailers);
    let out = t.push_main_rejected("mia", "unverifiable-author");
    assert_rejected_with(&out, "unsigned-commit");
}

#[test]
fn approvals_by_expired_or_revoked_approvers_are_refused() {
    let mut members = usual_members(Kind::Ssh, Kind::Ssh, Kind::Ssh, Kind::Pgp);
    members.push(Member {
        extra: "expires = 2020-01-01",
        ..member("rita", &["reviewer"], Kind::Ssh)
    });
    members.push(Member {
        extra: "revoked = 2020-01-01",
        ..member("rex", &["security"], Kind::Ssh)
    });
    let t = Team::new(&members, APPROVALS_2R_1S);
    let topic = t.commit_on("alice", "topic", "feature.txt");
    let rita = t.approve("rita", &topic, &[]);
    let rex = t.approve("rex", &topic, &[]);
    let trailers = vec![t.approve("bob", &topic, &[]), rita, rex];
    t.hand_merge("mia", &["origin/topic"], &trailers);
    let out = t.push_main_rejected("mia", "key-expired");
    assert_rejected_with(&out, "key-revoked");
}

#[test]
fn approvals_relabelled_to_another_commit_are_bad_signatures() {
    // A valid approval of the old tip with `commit=` and `tree=` rewritten
    // to the new tip: the signature no longer covers the statement.
    let t = Team::usual(Kind::Ssh, Kind::Ssh, Kind::Pgp, Kind::Ssh);
    let old = t.commit_on("alice", "topic", "feature.txt");
    let trailers = t.usual_approvals(&old);
    let new = t.commit_on("alice", "topic", "feature.txt");
    let dir = t.clone_of("alice");
    let tree =
        t.sb.git_ok_in(&dir, ["rev-parse", &format!("{new}^{{tree}}")]);
    let relabel =
        |tr: &String| with_trailer_field(&with_trailer_field(tr, "commit", &new), "tree", &tree);
    // bob's SSH approval and sam's OpenPGP approval, relabelled.
    let forged = vec![
        relabel(&trailers[0]),
        trailers[1].clone(),
        relabel(&trailers[2]),
    ];
    t.hand_merge("mia", &["origin/topic"], &forged);
    let out = t.push_main_rejected("mia", "bad-signature");
    assert_eq!(
        error_codes(&out.stderr)
            .iter()
            .filter(|c| *c == "bad-signature")
            .count(),
        2,
        "{out}"
    );
}

#[test]
fn approvals_of_a_single_commit_result_are_accepted() {
    // A squash: mia's single signed commit on main, approved as an exact
    // result (`--result`: parent and tree), then given the trailers.
    let t = Team::usual(Kind::Ssh, Kind::Ssh, Kind::Ssh, Kind::Ssh);
    let dir = t.on_main("mia");
    let c =
        t.sb.commit_in(&dir, Some(t.key("mia")), "squashed.txt", "Squashed topic");
    assert_accepted(&t.push_from("mia", &["HEAD:refs/heads/mia/squash"]));
    let trailers: Vec<String> = ["bob", "carol", "sam"]
        .iter()
        .map(|n| t.approve(n, &c, &["--result", "--no-note"]))
        .collect();
    assert!(
        trailers[0].contains(&format!("parents={} ", t.base)),
        "{}",
        trailers[0]
    );
    let amended = t.sb.commit_staged_in(
        &dir,
        t.key("mia"),
        &merge_message("Squashed topic", &trailers),
        &["--amend"],
    );
    assert_accepted(&t.push_from("mia", &["main"]));
    t.sb.assert_server_ref(MAIN, Some(&amended));
}

#[test]
fn approvals_two_approved_merges_in_one_push_are_accepted() {
    let t = Team::usual(Kind::Ssh, Kind::Ssh, Kind::Ssh, Kind::Ssh);
    let a = t.commit_on("alice", "topic-a", "a.txt");
    let b = t.commit_on("dave", "topic-b", "b.txt");
    t.usual_approvals(&a);
    t.usual_approvals(&b);
    let dir = t.on_main("mia");
    for topic in ["origin/topic-a", "origin/topic-b"] {
        let out = t.cs("mia", &["merge", topic]);
        assert_eq!(out.code, Some(0), "{topic}\n{out}");
    }
    let head = t.sb.git_ok_in(&dir, ["rev-parse", "HEAD"]);
    assert_accepted(&t.push_from("mia", &["main"]));
    t.sb.assert_server_ref(MAIN, Some(&head));
}

#[test]
fn approvals_roles_are_assigned_to_fill_every_slot() {
    // bob holds reviewer and security, carol only reviewer: bob must take
    // the security slot so that carol can take the reviewer slot.
    let members = vec![
        member("alice", &["developer"], Kind::Ssh),
        member("bob", &["reviewer", "security"], Kind::Ssh),
        member("carol", &["reviewer"], Kind::Ssh),
        member("mia", &["maintainer"], Kind::Ssh),
    ];
    let t = Team::new(
        &members,
        r#"approvals = [ { role = "reviewer", count = 1 }, { role = "security", count = 1 } ]"#,
    );
    let topic = t.commit_on("alice", "topic", "feature.txt");
    t.approve("bob", &topic, &[]);
    t.approve("carol", &topic, &[]);
    let dir = t.on_main("mia");
    let status = t.cs("mia", &["status", "origin/topic", "--ref", "main"]);
    assert_eq!(status.code, Some(0), "{status}");
    assert!(
        status.stdout.contains("key=bob: counts as security"),
        "{status}"
    );
    assert!(
        status.stdout.contains("key=carol: counts as reviewer"),
        "{status}"
    );
    let out = t.cs("mia", &["merge", "origin/topic"]);
    assert_eq!(out.code, Some(0), "{out}");
    let head = t.sb.git_ok_in(&dir, ["rev-parse", "HEAD"]);
    assert_accepted(&t.push_from("mia", &["main"]));
    t.sb.assert_server_ref(MAIN, Some(&head));
}

#[test]
fn approvals_status_shows_stale_approvals() {
    // `countersign status --help`: "which approvals are there: whose, which
    // role each fills, stale or not". After the topic moves on, the
    // approvals of the old tip are stale; status should say so (and name
    // the old tip) rather than report that there are none.
    let t = Team::usual(Kind::Ssh, Kind::Ssh, Kind::Ssh, Kind::Ssh);
    let old = t.commit_on("alice", "topic", "feature.txt");
    t.usual_approvals(&old);
    t.commit_on("alice", "topic", "feature.txt");
    t.on_main("mia");
    let status = t.cs("mia", &["status", "origin/topic", "--ref", "main"]);
    assert_eq!(status.code, Some(1), "{status}");
    assert!(
        status.all().contains("stale") && status.all().contains(&old[..12]),
        "status does not show the stale approvals of {}\n{status}",
        &old[..12]
    );
}

#[test]
fn approvals_given_with_approval_flag_are_merged() {
    // Approvals shared out of band (--no-note), handed to
    // `countersign merge --approval`.
    let t = Team::usual(Kind::Ssh, Kind::Ssh, Kind::Ssh, Kind::Ssh);
    let topic = t.commit_on("alice", "topic", "feature.txt");
    let trailers: Vec<String> = ["bob", "carol", "sam"]
        .iter()
        .map(|n| t.approve(n, &topic, &["--no-note"]))
        .collect();
    let dir = t.on_main("mia");
    let mut args = vec!["merge", "origin/topic", "-m", "Merge the feature"];
    for tr in &trailers {
        args.extend(["--approval", tr.as_str()]);
    }
    let out = t.cs("mia", &args);
    assert_eq!(out.code, Some(0), "{out}");
    let msg = t.sb.git_ok_in(&dir, ["log", "-1", "--format=%B", "HEAD"]);
    assert!(msg.starts_with("Merge the feature\n\n"), "{msg}");
    for tr in &trailers {
        assert!(msg.contains(tr.as_str()), "{msg}");
    }
    let head = t.sb.git_ok_in(&dir, ["rev-parse", "HEAD"]);
    assert_accepted(&t.push_from("mia", &["main"]));
    t.sb.assert_server_ref(MAIN, Some(&head));
}

#[test]
fn approvals_for_main_count_through_a_symref_alias() {
    let t = Team::usual(Kind::Ssh, Kind::Ssh, Kind::Ssh, Kind::Ssh);
    t.sb.server_git_ok(["symbolic-ref", "refs/heads/alias", MAIN]);
    let topic = t.commit_on("alice", "topic", "feature.txt");
    let trailers = t.usual_approvals(&topic);
    let m = t.hand_merge("mia", &["origin/topic"], &trailers);
    // Unapproved through the alias: still refused.
    let dir = t.clone_of("mia");
    let direct =
        t.sb.commit_in(&dir, Some(t.key("mia")), "direct.txt", "direct");
    let out = t.push_from("mia", &["HEAD:refs/heads/alias"]);
    assert_rejected_with(&out, "merge-required");
    t.sb.assert_server_ref(MAIN, Some(&t.base));
    // The approved merge through the alias.
    t.sb.git_ok_in(&dir, ["reset", "-q", "--hard", m.as_str()]);
    assert_ne!(direct, m);
    let out = t.push_from("mia", &["HEAD:refs/heads/alias"]);
    assert_accepted(&out);
    t.sb.assert_server_ref(MAIN, Some(&m));
}
