//! No push can wedge the server: bounded time, memory, output; squashes,
//! tags bound to the repository, criss-cross merges.

use std::fs;

use crate::common::*;
use crate::util::*;

// ---------------------------------------------------------------------------
// Hardening: no push can wedge the server (bounded time, memory, output)
// ---------------------------------------------------------------------------

/// Push main from mia's clone: rejected with `code`, the server's main unmoved.
#[track_caller]
fn rejected_at(t: &Team, code: &str) -> Out {
    let before = t.sb.server_ref(MAIN);
    let out = t.push_from("mia", &["main"]);
    assert_rejected_with(&out, code);
    assert_eq!(t.sb.server_ref(MAIN), before, "main moved");
    out
}

/// Run `cmd` with a watchdog: a hook that runs away fails the test after
/// `secs` instead of hanging CI. (A guard, not a performance target: the
/// targets live in bench/.)
#[track_caller]
fn run_within(mut cmd: std::process::Command, secs: u64, scratch: &std::path::Path) -> Out {
    cmd.stdin(std::process::Stdio::null());
    run_within_stdin(cmd, secs, scratch)
}

/// `git commit-tree` in `dir` with a tree holding one file `f` = `content`.
fn commit_tree(
    sb: &Sandbox,
    dir: &std::path::Path,
    content: &str,
    parents: &[String],
    msg: &str,
) -> String {
    let blob = {
        let mut c = sb.git_in(dir, ["hash-object", "-w", "--stdin"]);
        c.stdin(std::process::Stdio::piped());
        run(c, Some(content.as_bytes())).stdout.trim().to_string()
    };
    let tree = {
        let c = sb.git_in(dir, ["mktree"]);
        run(c, Some(format!("100644 blob {blob}\tf\n").as_bytes()))
            .stdout
            .trim()
            .to_string()
    };
    let mut args = vec!["commit-tree".to_string(), tree];
    for p in parents {
        args.push("-p".into());
        args.push(p.clone());
    }
    args.extend(["-m".to_string(), msg.to_string()]);
    sb.git_ok_in(dir, args)
}

/// The attack of issue 7, item 1: levels of 4 commits, each with every
/// commit of the level below as parents, topped by a two-parent merge.
/// libgit2's recursive merge took minutes on 14 levels (a 12 KB pack);
/// now the merge bases are counted first and never merged recursively,
/// and a merge whose own signature failed is not merged at all.
#[test]
fn crafted_criss_cross_history_is_decided_quickly() {
    let t = Team::usual(Kind::Ssh, Kind::Ssh, Kind::Ssh, Kind::Ssh);
    let dir = t.on_main("mia");
    let mut prev = vec![t.base.clone()];
    for level in 0..14 {
        prev = (0..4)
            .map(|i| {
                commit_tree(
                    &t.sb,
                    &dir,
                    &format!("{level}-{i}\n"),
                    &prev,
                    &format!("level {level} #{i}"),
                )
            })
            .collect();
    }
    let top = commit_tree(&t.sb, &dir, "top\n", &prev[..2], "merge");
    // Unsigned top merge: rejected without computing any merge.
    let dst = format!("{top}:refs/heads/main");
    let mut cmd = t.sb.git_in(&dir, ["push", "origin", dst.as_str()]);
    cmd.env("GIT_TERMINAL_PROMPT", "0");
    let out = run_within(cmd, 120, t.sb.root());
    assert_rejected_with(&out, "octopus-merge");
    assert!(!out.stderr.contains("limit-time"), "{out}");
    t.sb.assert_server_ref(MAIN, Some(&t.base));

    // Signed by the maintainer and with approvals claimed: the merge bases
    // are counted (4), and the answer is immediate.
    let mut args = t.key("mia").sign_config();
    args.extend(
        [
            "commit-tree",
            "-S",
            "-p",
            prev[0].as_str(),
            "-p",
            prev[1].as_str(),
            "-m",
            "merge",
        ]
        .map(String::from),
    );
    args.push(format!("{top}^{{tree}}"));
    let signed = t.sb.git_out_in(&dir, Some(t.key("mia")), &args);
    assert!(signed.success, "{signed}");
    let signed = signed.stdout.trim().to_string();
    let out = run_within(
        t.sb.git_in(
            &dir,
            ["push", "origin", &format!("{signed}:refs/heads/main")],
        ),
        120,
        t.sb.root(),
    );
    assert!(!out.success, "{out}");
    assert!(!out.stderr.contains("limit-time"), "{out}");
    t.sb.assert_server_ref(MAIN, Some(&t.base));
}

/// A criss-cross history between a topic and main has two merge bases:
/// countersign does not compute a clean merge for it (the answer would
/// depend on how the bases are merged), so approvals of the topic do not
/// cover the result; approvals of the exact result do.
#[test]
fn criss_cross_merge_needs_approvals_of_the_exact_result() {
    let t = Team::usual(Kind::Ssh, Kind::Ssh, Kind::Ssh, Kind::Ssh);
    let a = t.commit_on("alice", "topic-a", "a.txt");
    let b1 = t.commit_on("dave", "topic-b", "b.txt");
    t.usual_approvals(&a);
    t.on_main("mia");
    assert_eq!(t.cs("mia", &["merge", "origin/topic-a"]).code, Some(0));
    assert_accepted(&t.push_from("mia", &["main"]));
    // dave merges main into his topic...
    let ddir = t.clone_of("dave");
    t.sb.git_ok_in(&ddir, ["checkout", "-q", "topic-b"]);
    let b2 = t.sb.merge_in(
        &ddir,
        t.key("dave"),
        &["origin/main"],
        "Merge main into topic-b\n",
    );
    assert_accepted(&t.push_from("dave", &["topic-b"]));
    // ...while main merges the older tip of the topic.
    t.usual_approvals(&b1);
    t.on_main("mia");
    assert_eq!(t.cs("mia", &["merge", &b1]).code, Some(0));
    assert_accepted(&t.push_from("mia", &["main"]));

    let trailers = t.usual_approvals(&b2);
    let m = t.hand_merge("mia", &["origin/topic-b"], &trailers);
    let out = rejected_at(&t, "multiple-merge-bases");
    assert!(out.stderr.contains("2 merge bases"), "{out}");

    assert_accepted(&t.push_from("mia", &[&format!("{m}:refs/heads/mia/result")]));
    let results: Vec<String> = ["bob", "carol", "sam"]
        .iter()
        .map(|n| t.approve(n, &m, &["--result", "--no-note"]))
        .collect();
    let dir = t.sb.root().join("c-mia");
    let amended = t.sb.commit_staged_in(
        &dir,
        t.key("mia"),
        &merge_message("Merge topic-b into main", &results),
        &["--amend"],
    );
    assert_accepted(&t.push_from("mia", &["main"]));
    t.sb.assert_server_ref(MAIN, Some(&amended));
}

/// Issue 7, item 9: a squash names the topic it squashes, so the topic's
/// authors stay its authors: bob may not approve the squash of his own
/// code, and the maintainer who squashed is not blamed as its author.
#[test]
fn squash_keeps_the_authors_of_the_squashed_topic() {
    let t = Team::new(
        &usual_members(Kind::Ssh, Kind::Ssh, Kind::Ssh, Kind::Ssh),
        &format!("{APPROVALS_2R_1S}\nmerger-distinct-from-authors = true"),
    );
    // bob writes the topic, mia squashes it, bob approves the squash.
    let topic = t.commit_on("bob", "topic-x", "x.txt");
    let dir = t.on_main("mia");
    t.sb.git_ok_in(&dir, ["merge", "-q", "--squash", "origin/topic-x"]);
    let squash = format!("Countersign-Squash: {topic}");
    let sq = t.sb.commit_staged_in(
        &dir,
        t.key("mia"),
        &merge_message("Squash topic-x", std::slice::from_ref(&squash)),
        &[],
    );
    assert_accepted(&t.push_from("mia", &[&format!("{sq}:refs/heads/mia/squash")]));
    let mut trailers = vec![squash.clone()];
    trailers.extend(
        ["bob", "carol", "sam"]
            .iter()
            .map(|n| t.approve(n, &sq, &["--result", "--no-note"])),
    );
    t.sb.commit_staged_in(
        &dir,
        t.key("mia"),
        &merge_message("Squash topic-x", &trailers),
        &["--amend"],
    );
    let out = t.push_main_rejected("mia", "approver-is-author");
    assert!(
        !out.stderr.contains("merger-is-author"),
        "the squasher is not the author\n{out}"
    );

    // alice's topic, approved as a topic by others, squashed by mia: accepted.
    let topic = t.commit_on("alice", "topic-y", "y.txt");
    let approvals = t.usual_approvals(&topic);
    let dir = t.on_main("mia");
    t.sb.git_ok_in(&dir, ["merge", "-q", "--squash", "origin/topic-y"]);
    let mut trailers = vec![format!("Countersign-Squash: {topic}")];
    trailers.extend(approvals.iter().cloned());
    // First with a change nobody reviewed: an evil squash.
    fs::write(dir.join("evil.txt"), "not reviewed\n").unwrap();
    t.sb.git_ok_in(&dir, ["add", "evil.txt"]);
    t.sb.commit_staged_in(
        &dir,
        t.key("mia"),
        &merge_message("Squash topic-y", &trailers),
        &[],
    );
    t.push_main_rejected("mia", "evil-merge");
    t.sb.git_ok_in(&dir, ["rm", "-q", "evil.txt"]);
    let good = t.sb.commit_staged_in(
        &dir,
        t.key("mia"),
        &merge_message("Squash topic-y", &trailers),
        &["--amend"],
    );
    assert_accepted(&t.push_from("mia", &["main"]));
    t.sb.assert_server_ref(MAIN, Some(&good));

    // A direct commit by the maintainer is authored by her: with
    // merger-distinct-from-authors it cannot land, whoever approves it.
    let c =
        t.sb.commit_in(&dir, Some(t.key("mia")), "direct.txt", "Direct change");
    assert_accepted(&t.push_from("mia", &[&format!("{c}:refs/heads/mia/direct")]));
    let trailers: Vec<String> = ["bob", "carol", "sam"]
        .iter()
        .map(|n| t.approve(n, &c, &["--result", "--no-note"]))
        .collect();
    t.sb.commit_staged_in(
        &dir,
        t.key("mia"),
        &merge_message("Direct change", &trailers),
        &["--amend"],
    );
    rejected_at(&t, "merger-is-author");

    // A malformed or repeated squash trailer is refused with its own code.
    t.sb.git_ok_in(&dir, ["reset", "-q", "--hard", "origin/main"]);
    t.sb.commit_in(
        &dir,
        Some(t.key("mia")),
        "z.txt",
        "Squash\n\nCountersign-Squash: not-an-id",
    );
    rejected_at(&t, "malformed-squash");
}

/// Issue 7, item 2: a 900 KB subject and a thousand malformed approval
/// trailers took 1.6 GB. Now the trailers are counted before any is
/// parsed, subjects are cut in findings, and stderr and the audit record
/// stay within their limits.
#[test]
fn huge_subject_and_trailer_flood_are_bounded() {
    let t = Team::usual(Kind::Ssh, Kind::Ssh, Kind::Ssh, Kind::Ssh);
    let topic = t.commit_on("alice", "topic", "feature.txt");
    let subject = "S".repeat(900_000);
    let trailers: Vec<String> = (0..1000)
        .map(|i| format!("Countersign-Approval: by=x{i} {}", "junk=".repeat(20)))
        .collect();
    let dir = t.on_main("mia");
    let file = t.sb.write_message(&merge_message(&subject, &trailers));
    let mut args = t.key("mia").sign_config();
    args.extend(["merge", "-q", "--no-ff", "-S", "-F"].map(String::from));
    args.push(file.display().to_string());
    args.push(topic.clone());
    assert!(t.sb.git_out_in(&dir, Some(t.key("mia")), &args).success);
    let out = t.push_main_rejected("mia", "limit-trailers");
    assert!(
        out.stderr.len() < 64 << 10,
        "stderr is {} bytes",
        out.stderr.len()
    );
    assert!(
        out.stderr.contains("SSSS…"),
        "the subject is cut\n{}",
        &out.stderr[..out.stderr.len().min(2000)]
    );
    assert!(!out.stderr.contains(&"S".repeat(1000)));
    let log = fs::read_to_string(t.sb.server.join("countersign").join("audit.log")).unwrap();
    let last = log.lines().last().unwrap();
    assert!(
        last.len() <= 256 << 10,
        "audit record of {} bytes",
        last.len()
    );
    assert!(last.contains("limit-trailers"));
}

/// Commits examined per push and findings kept are limited: many unsigned
/// commits pushed to several protected refs stop at the limit, with their
/// own code, and only the first findings are kept (the rest counted).
#[test]
fn commit_and_finding_limits_stop_a_flood() {
    let mut sb = Sandbox::new();
    let dev = sb.ssh_key("dev");
    let policy = standard_policy(&[simple_person("dev", &["developer"], &dev)])
        + "\n[limits]\ncommits = 120\nfindings = 1000\n";
    sb.install(&policy);
    create_main(&mut sb, &dev);
    let base = sb.rev("HEAD");
    let mut tip = base.clone();
    let work = sb.work.clone();
    for i in 0..100 {
        tip = commit_tree(
            &sb,
            &work,
            &format!("{i}\n"),
            &[tip],
            &format!("unsigned {i}"),
        );
    }
    let refs: Vec<String> = (0..3)
        .map(|i| format!("{tip}:refs/heads/release/{i}"))
        .collect();
    let mut args: Vec<&str> = refs.iter().map(String::as_str).collect();
    args.insert(0, "--atomic");
    let out = sb.push(&args);
    assert_rejected_with(&out, "limit-commits");
    assert!(out.stderr.contains("raise `commits`"), "{out}");
    assert!(
        out.stderr.contains("not every object was examined"),
        "{out}"
    );

    // Findings: the first 5 are kept, the rest counted, checking stops.
    sb.write_policy(
        &(standard_policy(&[simple_person("dev", &["developer"], &dev)])
            + "\n[limits]\ncommits = 1000\nfindings = 5\n"),
    );
    let out = sb.push(&args);
    assert_rejected_with(&out, "unsigned-commit");
    assert!(!out.stderr.contains("limit-commits"), "{out}");
    assert_eq!(
        out.stderr.matches("error[unsigned-commit]").count(),
        5,
        "{out}"
    );
    assert!(
        out.stderr.contains("checking stopped after 5 findings"),
        "{out}"
    );
}

/// A commit object larger than `object-bytes` (a few KB of pack can hold
/// megabytes of zeros) is refused before any history walk inflates it.
#[test]
fn oversized_commit_object_is_refused() {
    let (mut sb, dev, _base) = with_dev(|_| vec![]);
    let mut msg = b"big\n\n".to_vec();
    msg.extend(std::iter::repeat_n(b'0', 2 << 20));
    sb.commit_message_bytes(Some(&dev), &msg, &[]);
    let out = sb.push(&["main"]);
    assert_rejected_with(&out, "limit-object-bytes");
    assert!(out.stderr.contains("raise `object-bytes`"), "{out}");
}

/// Issue 7, item 6: a `gpgsig` of OpenPGP Marker packets is refused from
/// its framing (never handed to the OpenPGP parser), and one larger than
/// `signature-bytes` by its size.
#[test]
fn marker_packet_signatures_are_refused_cheaply() {
    let (mut sb, dev, base) = with_dev(|_| vec![]);
    let signed = sb.commit_as(Some(&dev), "to be re-signed");
    let raw = sb.cat_commit(&signed);
    let (payload, _) = split_gpgsig(&raw);
    let armor = |n: usize| {
        use std::fmt::Write as _;
        let bytes: Vec<u8> = std::iter::repeat_n([0xa8u8, 0x03, b'P', b'G', b'P'], n)
            .flatten()
            .collect();
        let b64 = base64_encode(&bytes);
        let mut s = String::from("-----BEGIN PGP SIGNATURE-----\n\n");
        for chunk in b64.as_bytes().chunks(64) {
            let _ = writeln!(s, "{}", std::str::from_utf8(chunk).unwrap());
        }
        s.push_str("-----END PGP SIGNATURE-----\n");
        s
    };
    let small = sb.write_commit(&insert_gpgsig(&payload, &armor(2000)));
    sb.reset_hard(&small);
    assert_rejected_with(&sb.push(&["main"]), "malformed-signature");
    let big = sb.write_commit(&insert_gpgsig(&payload, &armor(20_000)));
    sb.reset_hard(&big);
    assert_rejected_with(&sb.push(&["main"]), "limit-signature-bytes");
    sb.assert_server_ref(MAIN, Some(&base));
}

fn base64_encode(bytes: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for c in bytes.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= c.len() {
                out.push(T[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Issue 7, item 7: on a `core.ignorecase` server, `refs/heads/MAIN`
/// arriving as a creation while `main` is packed is judged against
/// `main` (force-push applies), and `refs/REPLACE/` is a replace ref.
#[test]
fn ignorecase_server_judges_case_variants_against_the_existing_ref() {
    let (mut sb, dev, base) = with_dev(|_| vec![]);
    sb.server_git_ok(["config", "core.ignorecase", "true"]);
    sb.server_git_ok(["pack-refs", "--all"]);
    // A signed commit that does not descend from main.
    sb.git_ok(["checkout", "-q", "--orphan", "other"]);
    let other = sb.commit_as(Some(&dev), "unrelated history");
    let out = sb.push(&[&format!("{other}:refs/heads/MAIN")]);
    assert_rejected_with(&out, "force-push");
    sb.assert_server_ref(MAIN, Some(&base));
    let out = sb.push(&[&format!("{other}:refs/REPLACE/{base}")]);
    assert_rejected_with(&out, "replace-ref");
}

/// `countersign merge --squash` lands an approved topic as one commit that
/// names the topic, with the topic's approvals; the hook accepts it.
#[test]
fn merge_squash_command_lands_an_approved_topic() {
    let t = Team::new(
        &usual_members(Kind::Ssh, Kind::Ssh, Kind::Ssh, Kind::Ssh),
        &format!("{APPROVALS_2R_1S}\nmerger-distinct-from-authors = true"),
    );
    let topic = t.commit_on("alice", "topic", "feature.txt");
    t.usual_approvals(&topic);
    let dir = t.on_main("mia");
    let out = t.cs("mia", &["merge", "--squash", "origin/topic"]);
    assert_eq!(out.code, Some(0), "{out}");
    let head = t.sb.git_ok_in(&dir, ["rev-parse", "HEAD"]);
    assert_eq!(t.parents("mia", &head), vec![t.base.clone()]);
    let msg = t.sb.git_ok_in(&dir, ["log", "-1", "--format=%B"]);
    assert!(
        msg.contains(&format!("Countersign-Squash: {topic}")),
        "{msg}"
    );
    assert_eq!(msg.matches("Countersign-Approval:").count(), 3, "{msg}");
    assert_accepted(&t.push_from("mia", &["main"]));
    t.sb.assert_server_ref(MAIN, Some(&head));
}

/// Approvals, merges and squashes in a SHA-256 repository: 64-hex ids in
/// the approval statements, `gpgsig-sha256` on every commit, the clean merge
/// by git in SHA-256; and a stale approval is still refused.
#[test]
fn sha256_repository_approved_merge_is_accepted() {
    let t = Team::new_in(
        &usual_members(Kind::Ssh, Kind::Pgp, Kind::Ssh, Kind::Ssh),
        APPROVALS_2R_1S,
        &["--object-format=sha256"],
    );
    assert_eq!(t.base.len(), 64);
    let old = t.commit_on("alice", "topic", "feature.txt");
    let stale = t.approve("bob", &old, &["--no-note"]);
    assert!(stale.contains(&format!("commit={old}")), "{stale}");
    let topic = t.commit_on("alice", "topic", "feature2.txt");
    let trailers = t.usual_approvals(&topic);
    let mut with_stale = trailers.clone();
    with_stale.push(stale);
    t.hand_merge("mia", &["origin/topic"], &with_stale);
    t.push_main_rejected("mia", "stale-approval");
    t.on_main("mia");
    let out = t.cs("mia", &["merge", "origin/topic"]);
    assert_eq!(out.code, Some(0), "{out}");
    let dir = t.sb.root().join("c-mia");
    let head = t.sb.git_ok_in(&dir, ["rev-parse", "HEAD"]);
    assert_eq!(head.len(), 64);
    assert_accepted(&t.push_from("mia", &["main"]));
    t.sb.assert_server_ref(MAIN, Some(&head));
}

/// One policy locator: a relative `countersign.policy` in a clone is taken
/// from `$GIT_DIR`, as the hook takes it on the server, whatever directory
/// `status` or `approve` is run from.
#[test]
fn relative_policy_config_means_the_same_file_to_every_command() {
    let t = Team::usual(Kind::Ssh, Kind::Ssh, Kind::Ssh, Kind::Ssh);
    let topic = t.commit_on("alice", "topic", "feature.txt");
    let dir = t.clone_of("bob");
    fs::copy(&t.sb.policy, dir.join(".git").join("team-policy.toml")).unwrap();
    t.sb.git_ok_in(&dir, ["config", "countersign.policy", "team-policy.toml"]);
    let sub = dir.join("sub");
    fs::create_dir_all(&sub).unwrap();
    let out = t.sb.countersign_as(
        &sub,
        t.key("bob"),
        ["status", "origin/topic", "--ref", "main"],
    );
    assert!(
        out.stdout
            .contains("needs: approvals [2 x reviewer, 1 x security]"),
        "{out}"
    );
    let out = t.sb.countersign_as(
        &sub,
        t.key("bob"),
        ["approve", &topic, "--ref", "main", "--no-note"],
    );
    assert_eq!(out.code, Some(0), "{out}");
    assert!(!out.stderr.contains("will not count"), "{out}");
}

/// The hook input is what git sends: each ref once, with its real current
/// value as `old`. A raw client can claim any `old` (git checks it only
/// after the hook) and repeat a line; both made the checks walk history
/// the ref never had, once per line. Run the hook as git would.
#[test]
fn forged_old_values_and_repeated_lines_are_refused() {
    let (sb, _dev, base) = with_dev(|_| vec![]);
    let zero = "0".repeat(40);
    let run_hook = |input: String| {
        let mut c = sb.cmd(BIN);
        c.args(["hook", "pre-receive"]).env("GIT_DIR", &sb.server);
        run(c, Some(input.as_bytes()))
    };
    // The real old value: judged as usual (a no-op update is fine).
    let out = run_hook(format!("{base} {base} {MAIN}\n"));
    assert!(out.success, "{out}");
    // A forged old value, and a creation of an existing ref.
    let out = run_hook(format!("{zero} {base} {MAIN}\n"));
    assert!(!out.success, "{out}");
    assert!(
        out.stderr.contains("error[bad-input]") && out.stderr.contains("git would refuse it"),
        "{out}"
    );
    let other = "1".repeat(40);
    let out = run_hook(format!("{other} {base} {MAIN}\n"));
    assert!(out.stderr.contains("error[bad-input]"), "{out}");
    // The same ref twice.
    let out = run_hook(format!("{base} {base} {MAIN}\n{base} {base} {MAIN}\n"));
    assert!(
        out.stderr.contains("error[bad-input]") && out.stderr.contains("a second time"),
        "{out}"
    );
}

/// A tag object whose own name is huge is quoted cut to `subject-chars`.
#[test]
fn huge_tag_name_is_cut_in_findings() {
    let (sb, _dev, _base) = with_dev(|_| vec![]);
    let head = sb.rev("HEAD");
    let name = "n".repeat(100_000);
    let raw = format!("object {head}\ntype commit\ntag {name}\ntagger T <t@x> 1 +0000\n\nhuge\n");
    let id = sb.git_stdin(
        ["hash-object", "-t", "tag", "-w", "--literally", "--stdin"],
        raw.as_bytes(),
    );
    let out = sb.push(&[&format!("{id}:refs/tags/v1")]);
    assert_rejected_with(&out, "tag-name-mismatch");
    assert!(
        out.stderr.contains("nnn…"),
        "{}",
        &out.stderr[..out.stderr.len().min(3000)]
    );
    assert!(!out.stderr.contains(&"n".repeat(1000)));
}

/// A ref pointed at a big blob is refused from the object header: the blob
/// is never inflated.
#[test]
fn branch_pointing_at_a_big_blob_is_refused_from_its_header() {
    let (sb, _dev, base) = with_dev(|_| vec![]);
    let blob = sb.git_stdin(["hash-object", "-w", "--stdin"], &vec![0u8; 32 << 20]);
    let out = sb.push(&[&format!("{blob}:refs/heads/release/x")]);
    assert_rejected_with(&out, "not-a-commit");
    sb.assert_server_ref(MAIN, Some(&base));
}

/// A pack of `n + 1` distinct 8-byte blobs, each an OFS_DELTA on the one
/// before: one delta chain `n` deep (git's pack-objects never writes such
/// chains; index-pack accepts them).
fn deep_delta_pack(n: u32) -> Vec<u8> {
    use std::io::Write as _;
    fn zip(data: &[u8]) -> Vec<u8> {
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
        z.write_all(data).unwrap();
        z.finish().unwrap()
    }
    fn header(kind: u8, mut size: usize) -> Vec<u8> {
        let mut b = (kind << 4) | (size & 0x0f) as u8;
        size >>= 4;
        let mut out = Vec::new();
        while size > 0 {
            out.push(b | 0x80);
            b = (size & 0x7f) as u8;
            size >>= 7;
        }
        out.push(b);
        out
    }
    fn ofs(mut off: usize) -> Vec<u8> {
        let mut out = vec![(off & 0x7f) as u8];
        off >>= 7;
        while off > 0 {
            off -= 1;
            out.insert(0, 0x80 | (off & 0x7f) as u8);
            off >>= 7;
        }
        out
    }
    let mut body = b"PACK".to_vec();
    body.extend(2u32.to_be_bytes());
    body.extend((n + 1).to_be_bytes());
    let mut prev = body.len();
    body.extend(header(3, 8));
    body.extend(zip(&0u64.to_be_bytes()));
    for i in 1..=u64::from(n) {
        let at = body.len();
        let mut delta = vec![8u8, 8, 8];
        delta.extend(i.to_be_bytes());
        body.extend(header(6, delta.len()));
        body.extend(ofs(at - prev));
        body.extend(zip(&delta));
        prev = at;
    }
    // The pack trailer is the SHA-1 of everything before it.
    body.extend(sha1(&body));
    body
}

/// SHA-1 of `data` (a small implementation, for the test pack's trailer).
fn sha1(data: &[u8]) -> [u8; 20] {
    let mut h: [u32; 5] = [0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0];
    let mut msg = data.to_vec();
    let bits = (data.len() as u64) * 8;
    msg.push(0x80);
    while msg.len() % 64 != 56 {
        msg.push(0);
    }
    msg.extend(bits.to_be_bytes());
    for chunk in msg.chunks(64) {
        let mut w = [0u32; 80];
        for i in 0..16 {
            w[i] = u32::from_be_bytes([
                chunk[4 * i],
                chunk[4 * i + 1],
                chunk[4 * i + 2],
                chunk[4 * i + 3],
            ]);
        }
        for i in 16..80 {
            w[i] = (w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16]).rotate_left(1);
        }
        let (mut a, mut b, mut c, mut d, mut e) = (h[0], h[1], h[2], h[3], h[4]);
        for (i, wi) in w.iter().enumerate() {
            let (f, k) = match i {
                0..=19 => ((b & c) | (!b & d), 0x5A827999),
                20..=39 => (b ^ c ^ d, 0x6ED9EBA1),
                40..=59 => ((b & c) | (b & d) | (c & d), 0x8F1BBCDC),
                _ => (b ^ c ^ d, 0xCA62C1D6),
            };
            let t = a
                .rotate_left(5)
                .wrapping_add(f)
                .wrapping_add(e)
                .wrapping_add(k)
                .wrapping_add(*wi);
            e = d;
            d = c;
            c = b.rotate_left(30);
            b = a;
            a = t;
        }
        h[0] = h[0].wrapping_add(a);
        h[1] = h[1].wrapping_add(b);
        h[2] = h[2].wrapping_add(c);
        h[3] = h[3].wrapping_add(d);
        h[4] = h[4].wrapping_add(e);
    }
    let mut out = [0u8; 20];
    for (i, v) in h.iter().enumerate() {
        out[4 * i..4 * i + 4].copy_from_slice(&v.to_be_bytes());
    }
    out
}

/// Issue 7 attack A4: one delta chain 40,000 deep (680 KB) made libgit2's
/// header reads quadratic (58,000 objects took 254 s); the pack scan reads
/// the index and entry headers itself, linear. Pushed raw to
/// `git receive-pack`, as an attacker would.
#[test]
fn deep_delta_chain_is_scanned_in_linear_time() {
    let (sb, _dev, base) = with_dev(|_| vec![]);
    let pack = deep_delta_pack(40_000);
    let zero = "0".repeat(40);
    let cmd = format!("{zero} {base} refs/heads/x\0report-status\n");
    let mut input = format!("{:04x}{cmd}0000", cmd.len() + 4).into_bytes();
    input.extend(pack);
    let input_path = sb.root().join("raw-push");
    fs::write(&input_path, &input).unwrap();
    let mut c = std::process::Command::new("git");
    c.arg("receive-pack")
        .arg(&sb.server)
        .stdin(fs::File::open(&input_path).unwrap());
    let out = run_within_stdin(c, 60, sb.root());
    assert!(out.stdout.contains("unpack ok"), "{out}");
    assert!(out.stdout.contains("ok refs/heads/x"), "{out}");
}

/// The pack scanner sizes commits too: with every push kept as a pack, a
/// commit over `object-bytes` is refused from the pack's headers.
#[test]
fn oversized_commit_in_a_kept_pack_is_refused() {
    let (mut sb, dev, _base) = with_dev(|_| vec![]);
    sb.server_git_ok(["config", "receive.unpackLimit", "1"]);
    let mut msg = b"big\n\n".to_vec();
    msg.extend(std::iter::repeat_n(b'0', 2 << 20));
    sb.commit_message_bytes(Some(&dev), &msg, &[]);
    let out = sb.push(&["main"]);
    assert_rejected_with(&out, "limit-object-bytes");
    assert!(out.stderr.contains("brings a commit of"), "{out}");
}

/// [`run_within`] for a command whose stdin is already set.
#[track_caller]
fn run_within_stdin(mut cmd: std::process::Command, secs: u64, scratch: &std::path::Path) -> Out {
    let out_path = scratch.join("watchdog-raw.out");
    let err_path = scratch.join("watchdog-raw.err");
    cmd.stdout(fs::File::create(&out_path).unwrap())
        .stderr(fs::File::create(&err_path).unwrap());
    let mut child = cmd.spawn().unwrap();
    let start = std::time::Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if start.elapsed().as_secs() >= secs {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the push did not finish within {secs} s: the hook ran away");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    Out {
        success: status.success(),
        code: status.code(),
        stdout: String::from_utf8_lossy(&fs::read(&out_path).unwrap()).into_owned(),
        stderr: String::from_utf8_lossy(&fs::read(&err_path).unwrap()).into_owned(),
    }
}

/// Commits of about a megabyte stored as tiny deltas cost libgit2 tens of
/// milliseconds each to rebuild (a 40 KB push kept the hook busy for 21 s):
/// all commits and tags a push brings are limited together.
#[test]
fn total_commit_bytes_are_limited() {
    let mut sb = Sandbox::new();
    let dev = sb.ssh_key("dev");
    sb.install(
        &(standard_policy(&[simple_person("dev", &["developer"], &dev)])
            + "\n[limits]\ncommit-bytes = 1048576\n"),
    );
    create_main(&mut sb, &dev);
    for i in 0..3 {
        let mut msg = format!("big {i}\n\n").into_bytes();
        msg.extend(std::iter::repeat_n(b'a' + i, 600_000));
        sb.commit_message_bytes(Some(&dev), &msg, &[]);
    }
    let out = sb.push(&["main"]);
    assert_rejected_with(&out, "limit-commit-bytes");
    assert!(out.stderr.contains("raise `commit-bytes`"), "{out}");
}

/// A second attack round: under `merger-distinct-from-authors`, naming the
/// parent (or any landed commit) as the squashed topic made the merger's
/// own commit look authorless; and a merge whose tree is not the clean
/// merge is written by its merger. Both are refused.
#[test]
fn merger_cannot_launder_their_own_change() {
    let t = Team::new(
        &usual_members(Kind::Ssh, Kind::Ssh, Kind::Ssh, Kind::Ssh),
        &format!("{APPROVALS_2R_1S}\nmerger-distinct-from-authors = true"),
    );
    let dir = t.on_main("mia");
    let own =
        t.sb.commit_in(&dir, Some(t.key("mia")), "own.txt", "Mia's own change");
    assert_accepted(&t.push_from("mia", &[&format!("{own}:refs/heads/mia/own")]));
    let mut trailers = vec![format!("Countersign-Squash: {}", t.base)];
    trailers.extend(
        ["bob", "carol", "sam"]
            .iter()
            .map(|n| t.approve(n, &own, &["--result", "--no-note"])),
    );
    t.sb.commit_staged_in(
        &dir,
        t.key("mia"),
        &merge_message("Mia's own change", &trailers),
        &["--amend"],
    );
    rejected_at(&t, "malformed-squash");

    // A merge of a real topic with an extra change, approved as a result.
    let topic = t.commit_on("alice", "topic", "feature.txt");
    let dir = t.on_main("mia");
    let out = t.sb.git_out_in(
        &dir,
        None,
        ["merge", "-q", "--no-ff", "--no-commit", "origin/topic"],
    );
    assert!(out.success, "{out}");
    fs::write(dir.join("extra.txt"), "mia's\n").unwrap();
    t.sb.git_ok_in(&dir, ["add", "extra.txt"]);
    let m =
        t.sb.commit_staged_in(&dir, t.key("mia"), &merge_message("Merge topic", &[]), &[]);
    assert_eq!(t.parents("mia", &m), vec![t.base.clone(), topic]);
    assert_accepted(&t.push_from("mia", &[&format!("{m}:refs/heads/mia/result")]));
    let results: Vec<String> = ["bob", "carol", "sam"]
        .iter()
        .map(|n| t.approve(n, &m, &["--result", "--no-note"]))
        .collect();
    t.sb.commit_staged_in(
        &dir,
        t.key("mia"),
        &merge_message("Merge topic", &results),
        &["--amend"],
    );
    let out = rejected_at(&t, "merger-is-author");
    assert!(out.stderr.contains("wrote the difference"), "{out}");
}
