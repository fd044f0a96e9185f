//! The signed ref-state log (`refs/countersign/log`): one signed entry per
//! accepted push written by the post-receive hook, refs moved around the
//! hook caught by the next push, and every clone a witness
//! (`countersign audit verify --remote origin`).

use std::fs;
use std::path::Path;

use crate::common::*;
use crate::util::*;

pub(crate) const LOG: &str = "refs/countersign/log";

/// `entry.json` of the log entry `rev` on the server, as JSON.
pub(crate) fn entry(sb: &Sandbox, rev: &str) -> serde_json::Value {
    let text = sb.server_git_ok(["show", &format!("{rev}:entry.json")]);
    serde_json::from_str(&text).unwrap()
}

pub(crate) fn state(sb: &Sandbox, rev: &str) -> serde_json::Value {
    let text = sb.server_git_ok(["show", &format!("{rev}:state.json")]);
    serde_json::from_str(&text).unwrap()
}

/// Entry kinds from the first to the last.
pub(crate) fn kinds(sb: &Sandbox) -> Vec<String> {
    let list = sb.server_git_ok(["rev-list", "--reverse", LOG]);
    list.lines()
        .map(|id| entry(sb, id)["kind"].as_str().unwrap().to_string())
        .collect()
}

fn server_key_line(sb: &Sandbox) -> String {
    fs::read_to_string(sb.server.join("countersign/server-key.pub"))
        .unwrap()
        .trim()
        .to_string()
}

/// `countersign audit verify --remote origin` in `dir`.
fn witness(sb: &Sandbox, dir: &Path, extra: &[&str]) -> Out {
    let mut args = vec!["audit", "verify", "--remote", "origin"];
    args.extend_from_slice(extra);
    sb.countersign(dir, args)
}

/// A commit on main signed by `dev`, pushed; returns its id.
fn push_main(sb: &mut Sandbox, dev: &Key, msg: &str) -> String {
    let id = sb.commit_as(Some(dev), msg);
    let out = sb.push(&["main"]);
    assert_accepted(&out);
    id
}

/// Every accepted push is one entry, signed by the server key so that
/// git itself verifies it, naming the ref update, the pusher, the policy
/// and the JSON audit record (a checkpoint).
#[test]
fn ledger_accepted_pushes_are_signed_entries_git_verifies() {
    let (mut sb, dev, base) = with_dev(|_| Vec::new());
    let next = push_main(&mut sb, &dev, "second");
    assert_eq!(kinds(&sb), ["start", "push", "push"]);
    let e = entry(&sb, LOG);
    assert_eq!(e["recorded_by"], "post-receive", "{e}");
    assert_eq!(e["updates"][0]["ref"], MAIN);
    assert_eq!(e["updates"][0]["old"], base.as_str());
    assert_eq!(e["updates"][0]["new"], next.as_str());
    assert_eq!(e["updates"][0]["tracked"], true);
    assert!(e["policy"]["sha256"].is_string(), "{e}");
    let audit = fs::read_to_string(sb.server.join("countersign/audit.log")).unwrap();
    let seq = e["audit"]["seq"].as_u64().unwrap() as usize;
    let line = audit.lines().nth(seq - 1).unwrap();
    assert!(
        line.contains(&next),
        "the checkpoint names the push's record"
    );
    assert_eq!(state(&sb, LOG)["refs"][MAIN], next.as_str());
    // git verifies every entry with the published key.
    let allowed = sb.root().join("allowed");
    fs::write(&allowed, format!("countersign {}\n", server_key_line(&sb))).unwrap();
    for id in sb.server_git_ok(["rev-list", LOG]).lines() {
        let out = run(
            sb.git_in(
                &sb.server,
                [
                    "-c",
                    &format!("gpg.ssh.allowedSignersFile={}", allowed.display()),
                    "verify-commit",
                    id,
                ],
            ),
            None,
        );
        assert!(out.success, "git verify-commit {id}\n{out}");
    }
    // A rejected push leaves no entry.
    sb.commit_as(None, "unsigned");
    let out = sb.push(&["main"]);
    assert_rejected_with(&out, "unsigned-commit");
    assert_eq!(kinds(&sb).len(), 3);
    // The server verifies its own log.
    let out = sb.countersign(&sb.server.clone(), ["log", "verify"]);
    assert!(out.success, "{out}");
    let out = sb.countersign(&sb.server.clone(), ["log", "show"]);
    assert!(out.success && out.stdout.contains("push by"), "{out}");
}

/// `git update-ref` on the server moves main around the hook: the next
/// push is refused and the move is an entry of its own, until an admin
/// acknowledges it; then pushes are accepted again.
#[test]
fn ledger_ref_moved_around_the_hook_blocks_until_acknowledged() {
    let (mut sb, dev, base) = with_dev(|_| Vec::new());
    let second = push_main(&mut sb, &dev, "second");
    // Someone with shell access on the server rolls main back.
    sb.server_git_ok(["update-ref", MAIN, &base]);
    sb.reset_hard(&base);
    let third = sb.commit_as(Some(&dev), "third");
    let out = sb.push(&["main"]);
    assert_rejected_with(&out, "ref-moved-out-of-band");
    assert!(out.stderr.contains("countersign log ack"), "{out}");
    sb.assert_server_ref(MAIN, Some(&base));
    let kinds_now = kinds(&sb);
    assert_eq!(kinds_now.last().unwrap(), "observed-out-of-band");
    let e = entry(&sb, LOG);
    assert_eq!(e["updates"][0]["old"], second.as_str(), "{e}");
    assert_eq!(e["updates"][0]["new"], base.as_str(), "{e}");
    let n = e["seq"].as_u64().unwrap().to_string();
    // Still refused on the next try: the alarm is not a one-off.
    let out = sb.push(&["main"]);
    assert_rejected_with(&out, "ref-moved-out-of-band");
    assert_eq!(kinds(&sb).len(), kinds_now.len(), "observed once");
    // The audit log shows it too.
    let out = sb.countersign(&sb.server.clone(), ["audit", "show"]);
    assert!(out.stdout.contains("observed-out-of-band"), "{out}");
    // The acknowledgement needs a reason; file mode takes the operator's word.
    let out = sb.countersign(
        &sb.server.clone(),
        ["log", "ack", "--entry", &n, "--reason", " "],
    );
    assert!(!out.success, "{out}");
    let out = sb.countersign(
        &sb.server.clone(),
        [
            "log",
            "ack",
            "--entry",
            &n,
            "--reason",
            "rolled back a bad deploy, OPS-1",
        ],
    );
    assert!(out.success, "{out}");
    let e = entry(&sb, LOG);
    assert_eq!(e["kind"], "acknowledged");
    assert_eq!(e["acknowledges"].as_u64(), Some(n.parse().unwrap()));
    let out = sb.push(&["main"]);
    assert_accepted(&out);
    sb.assert_server_ref(MAIN, Some(&third));
    assert_eq!(kinds(&sb).last().unwrap(), "push");
}

/// A post-receive that did not run (killed, crashed) is filled in by the
/// next push, one entry per push, in order, with no alarm.
#[test]
fn ledger_missing_post_receive_is_filled_in_without_alarm() {
    let (mut sb, dev, _) = with_dev(|_| Vec::new());
    let hook = sb.server.join("hooks/post-receive");
    let saved = fs::read(&hook).unwrap();
    fs::write(&hook, "#!/bin/sh\nkill -9 $$\n").unwrap();
    let a = push_main(&mut sb, &dev, "a");
    let b = push_main(&mut sb, &dev, "b");
    // b's pre-receive filled in a's entry; b's own is missing.
    assert_eq!(kinds(&sb), ["start", "push", "push"]);
    assert_eq!(entry(&sb, LOG)["updates"][0]["new"], a.as_str());
    assert_eq!(entry(&sb, LOG)["recorded_by"], "pre-receive");
    fs::write(&hook, saved).unwrap();
    let c = push_main(&mut sb, &dev, "c");
    assert_eq!(kinds(&sb), ["start", "push", "push", "push", "push"]);
    let list = sb.server_git_ok(["rev-list", "--reverse", LOG]);
    let ids: Vec<&str> = list.lines().collect();
    let news: Vec<String> = ids[2..]
        .iter()
        .map(|id| {
            entry(&sb, id)["updates"][0]["new"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(news, [a, b, c]);
    assert_eq!(entry(&sb, ids[3])["recorded_by"], "pre-receive");
    assert_eq!(entry(&sb, ids[4])["recorded_by"], "post-receive");
}

/// 20 pushes at once to 20 protected branches: one entry per accepted
/// push, linear, every one signed, every branch where the log says.
#[test]
fn ledger_parallel_pushes_make_one_linear_entry_each() {
    let mut sb = Sandbox::new();
    let dev = sb.ssh_key("dev");
    let policy = standard_policy(&[simple_person("dev", &["developer"], &dev)]).replace(
        r#"refs = ["refs/heads/main", "refs/heads/release/*"]"#,
        r#"refs = ["refs/heads/*"]"#,
    );
    sb.install(&policy);
    let base = create_main(&mut sb, &dev);
    let mut ids = Vec::new();
    for i in 0..20 {
        sb.reset_hard(&base);
        ids.push(sb.commit_as(Some(&dev), &format!("branch {i}")));
    }
    let handles: Vec<_> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| {
            let c = sb.git([
                "push",
                "--quiet",
                "origin",
                &format!("{id}:refs/heads/b{i}"),
            ]);
            std::thread::spawn(move || run(c, None))
        })
        .collect();
    for h in handles {
        let out = h.join().unwrap();
        assert!(out.success, "{out}");
    }
    let k = kinds(&sb);
    assert_eq!(k.len(), 22, "{k:?}");
    assert!(k[2..].iter().all(|x| x == "push"), "{k:?}");
    let st = state(&sb, LOG);
    for (i, id) in ids.iter().enumerate() {
        assert_eq!(st["refs"][format!("refs/heads/b{i}")], id.as_str());
    }
    let seqs: Vec<u64> = sb
        .server_git_ok(["rev-list", "--reverse", LOG])
        .lines()
        .map(|id| entry(&sb, id)["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, (1..=22).collect::<Vec<u64>>());
    assert_eq!(
        sb.server_git_ok(["rev-list", "--merges", "--count", LOG]),
        "0"
    );
    let out = sb.countersign(&sb.server.clone(), ["log", "verify"]);
    assert!(out.success, "{out}");
}

/// A clone that fetched the log detects what the server did behind its
/// back: a ref moved with update-ref, a log cut back, a rewritten entry,
/// a log re-signed with another key, a server restored from an older
/// backup.
#[test]
fn ledger_every_clone_is_a_witness() {
    let (mut sb, dev, base) = with_dev(|_| Vec::new());
    let work = sb.work.clone();
    // First look: trust on first use, said so.
    let out = witness(&sb, &work, &[]);
    assert!(out.success, "{out}");
    assert!(out.stdout.contains("trusted on first use"), "{out}");
    let backup = sb.root().join("backup.git");
    copy_dir(&sb.server, &backup);
    let second = push_main(&mut sb, &dev, "second");
    let out = witness(&sb, &work, &[]);
    assert!(out.success, "{out}");
    assert!(
        out.stdout.contains("the key this clone saw before"),
        "{out}"
    );

    // A ref moved on the server with update-ref.
    sb.server_git_ok(["update-ref", MAIN, &base]);
    let out = witness(&sb, &work, &[]);
    assert_eq!(out.code, Some(1), "{out}");
    assert!(out.stderr.contains("moved around the hook"), "{out}");
    sb.server_git_ok(["update-ref", MAIN, &second]);
    let out = witness(&sb, &work, &[]);
    assert!(out.success, "{out}");

    // The log cut back by one entry.
    let tip = sb.server_ref(LOG).unwrap();
    sb.server_git_ok(["update-ref", LOG, &format!("{tip}~1")]);
    let out = witness(&sb, &work, &[]);
    assert_eq!(out.code, Some(1), "{out}");
    assert!(out.stderr.contains("the log went back"), "{out}");
    sb.server_git_ok(["update-ref", LOG, &tip]);

    // The last entry rewritten and re-signed with the server's own key.
    let raw = sb.server_git_ok(["cat-file", "commit", &tip]);
    let (payload, _) = split_gpgsig(&format!("{raw}\n"));
    let forged_payload = payload.replace("countersign log", "countersign  log");
    let key = sb.server.join("countersign/server-key");
    let sig = ssh_sign_with(&sb, &key, "git", forged_payload.as_bytes());
    let forged = write_server_commit(&sb, &insert_gpgsig(&forged_payload, &sig));
    sb.server_git_ok(["update-ref", LOG, &forged]);
    let out = witness(&sb, &work, &[]);
    assert_eq!(out.code, Some(1), "{out}");
    assert!(out.stderr.contains("was rewritten"), "{out}");

    // An entry altered without the key: its signature fails.
    let altered = write_server_commit(
        &sb,
        &insert_gpgsig(
            &forged_payload,
            &split_gpgsig(&format!("{raw}\n")).1.unwrap(),
        ),
    );
    sb.server_git_ok(["update-ref", LOG, &altered]);
    let out = witness(&sb, &work, &[]);
    assert_eq!(out.code, Some(1), "{out}");
    assert!(out.stderr.contains("does not verify"), "{out}");

    // The same entry re-signed with another key.
    let other = sb.ssh_key("intruder");
    let sig = sb.ssh_sign(&other, "git", payload.as_bytes());
    let resigned = write_server_commit(&sb, &insert_gpgsig(&payload, &sig));
    sb.server_git_ok(["update-ref", LOG, &resigned]);
    let out = witness(&sb, &work, &[]);
    assert_eq!(out.code, Some(1), "{out}");
    assert!(out.stderr.contains("signed by another key"), "{out}");
    sb.server_git_ok(["update-ref", LOG, &tip]);
    let out = witness(&sb, &work, &[]);
    assert!(out.success, "{out}");

    // The server restored from the older backup: log and refs go back.
    fs::remove_dir_all(&sb.server).unwrap();
    copy_dir(&backup, &sb.server);
    let out = witness(&sb, &work, &[]);
    assert_eq!(out.code, Some(1), "{out}");
    assert!(out.stderr.contains("the log went back"), "{out}");
}

/// The JSON audit log is checkpointed in the signed log: a copy cut at
/// the end or edited is caught from a clone.
#[test]
fn ledger_checkpoints_catch_a_cut_or_edited_audit_log() {
    let (mut sb, dev, _) = with_dev(|_| Vec::new());
    push_main(&mut sb, &dev, "second");
    let work = sb.work.clone();
    let log = fs::read_to_string(sb.server.join("countersign/audit.log")).unwrap();
    let copy = sb.root().join("audit-copy.log");
    fs::write(&copy, &log).unwrap();
    let copy_s = copy.to_str().unwrap().to_string();
    let out = witness(&sb, &work, &["--log", &copy_s]);
    assert!(out.success, "{out}");
    // Cut the last record off.
    let lines: Vec<&str> = log.lines().collect();
    fs::write(&copy, format!("{}\n", lines[..lines.len() - 1].join("\n"))).unwrap();
    let out = witness(&sb, &work, &["--log", &copy_s]);
    assert_eq!(out.code, Some(1), "{out}");
    assert!(out.stderr.contains("cut off the end"), "{out}");
    // Edit the last record (the chain alone would still verify).
    let edited = log.replacen("\"accepted\"", "\"accepted \"", 1);
    assert_ne!(edited, log);
    fs::write(&copy, &edited).unwrap();
    let out = witness(&sb, &work, &["--log", &copy_s]);
    assert_eq!(out.code, Some(1), "{out}");
    assert!(out.stderr.contains("edited"), "{out}");
}

/// On the server: the log ref deleted or moved back, or a policy that
/// publishes another key, stop every push (`ref-log-broken`).
#[test]
fn ledger_server_refuses_pushes_when_its_log_is_tampered_with() {
    let (mut sb, dev, _) = with_dev(|_| Vec::new());
    push_main(&mut sb, &dev, "second");
    let tip = sb.server_ref(LOG).unwrap();
    sb.commit_as(Some(&dev), "third");
    sb.server_git_ok(["update-ref", LOG, &format!("{tip}~1")]);
    let out = sb.push(&["main"]);
    assert_rejected_with(&out, "ref-log-broken");
    sb.server_git_ok(["update-ref", "-d", LOG]);
    let out = sb.push(&["main"]);
    assert_rejected_with(&out, "ref-log-broken");
    sb.server_git_ok(["update-ref", LOG, &tip]);
    let out = sb.push(&["main"]);
    assert_accepted(&out);
    // A policy naming another server key.
    let other = sb.ssh_key("other");
    let text = fs::read_to_string(&sb.policy).unwrap();
    let Key::Ssh {
        public: pub_line, ..
    } = &other
    else {
        panic!("ssh key")
    };
    fs::write(
        &sb.policy,
        format!("{text}\n[log]\nserver-key = \"{}\"\n", pub_line.trim()),
    )
    .unwrap();
    sb.commit_as(Some(&dev), "fourth");
    let out = sb.push(&["main"]);
    assert_rejected_with(&out, "ref-log-broken");
    // The right key is accepted.
    fs::write(
        &sb.policy,
        format!("{text}\n[log]\nserver-key = \"{}\"\n", server_key_line(&sb)),
    )
    .unwrap();
    let out = sb.push(&["main"]);
    assert_accepted(&out);
    // A server key others can read is refused.
    let key = sb.server.join("countersign/server-key");
    set_mode(&key, 0o644);
    sb.commit_as(Some(&dev), "fifth");
    let out = sb.push(&["main"]);
    assert_rejected_with(&out, "ref-log-broken");
    set_mode(&key, 0o600);
    let out = sb.push(&["main"]);
    assert_accepted(&out);
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

fn copy_dir(from: &Path, to: &Path) {
    let st = std::process::Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .unwrap();
    assert!(st.success());
}

fn ssh_sign_with(sb: &Sandbox, private: &Path, namespace: &str, payload: &[u8]) -> String {
    let mut c = sb.cmd("ssh-keygen");
    c.args(["-q", "-Y", "sign", "-n", namespace, "-f"])
        .arg(private);
    let out = run(c, Some(payload));
    assert!(
        out.success && out.stdout.contains("BEGIN SSH SIGNATURE"),
        "{out}"
    );
    out.stdout
}

fn write_server_commit(sb: &Sandbox, raw: &str) -> String {
    run_ok(
        sb.git_in(&sb.server, ["hash-object", "-t", "commit", "-w", "--stdin"]),
        Some(raw.as_bytes()),
    )
    .stdout
    .trim()
    .to_string()
}

/// The last waiting `observed-out-of-band` entry's number, from the server.
fn waiting_entry(sb: &Sandbox) -> String {
    let st = state(sb, LOG);
    st["unacknowledged"][0]["entry"]
        .as_u64()
        .expect("something waits")
        .to_string()
}

/// Acknowledge the waiting out-of-band move on a `Gov` server with the
/// signatures of `who` (each signs `log statement`); asserts it succeeds.
pub(crate) fn ack_with_quorum(g: &crate::governance::Gov, who: &[&str]) {
    let out = try_ack(g, who);
    assert!(out.success, "{out}");
}

fn try_ack(g: &crate::governance::Gov, who: &[&str]) -> Out {
    let server = g.sb.server.clone();
    let n = waiting_entry(&g.sb);
    let out =
        g.sb.countersign(&server, ["log", "statement", "--entry", &n]);
    assert!(out.success, "{out}");
    let mut args: Vec<String> = vec!["log".into(), "ack".into(), "--entry".into(), n.clone()];
    for w in who {
        let sig =
            g.sb.ssh_sign(&g.keys[w], "countersign-ack", out.stdout.as_bytes());
        let path = g.sb.root().join(format!("ack-{n}-{w}.sig"));
        fs::write(&path, sig).unwrap();
        args.push("--signature".into());
        args.push(path.display().to_string());
    }
    args.push("--reason".into());
    args.push("restored from backup, reviewed".into());
    g.sb.countersign(&server, &args)
}

/// In ref mode an acknowledgement needs the `[policy-changes]` quorum: an
/// admin and two other admins, each signing the exact statement.
#[test]
fn ledger_acknowledgement_needs_the_policy_quorum() {
    let mut g = crate::governance::Gov::new();
    let dave = g.dir("dave").to_path_buf();
    g.sb.git_ok_in(&dave, ["checkout", "-q", "-B", "main", "origin/main"]);
    let one = g.sb.commit_in(&dave, Some(&g.keys["dave"]), "d.txt", "one");
    let out = g.git("dave", &["push", "origin", "main"]);
    assert!(out.success, "{out}");
    // main moved back on the server behind the hook.
    g.sb.server_git_ok(["update-ref", MAIN, &format!("{one}~1")]);
    g.sb.git_ok_in(&dave, ["reset", "-q", "--hard", &format!("{one}~1")]);
    g.sb.commit_in(&dave, Some(&g.keys["dave"]), "d.txt", "two");
    let out = g.git("dave", &["push", "origin", "main"]);
    assert_rejected_with(&out, "ref-moved-out-of-band");
    // One admin is not a quorum; nor are two; an unknown key counts for nothing.
    for who in [
        &["alice"][..],
        &["alice", "bob"],
        &["alice", "bob", "mallory"],
    ] {
        let out = try_ack(&g, who);
        assert_eq!(out.code, Some(1), "{who:?}\n{out}");
    }
    let out = try_ack(&g, &["alice", "erin", "dave"]);
    assert_eq!(out.code, Some(1), "non-admins do not count\n{out}");
    // A signature over another statement (another entry) does not verify.
    let n = waiting_entry(&g.sb);
    let fake = format!("countersign acknowledgement v1\nrepository test/gov\nentry {n}\n");
    let sig =
        g.sb.ssh_sign(&g.keys["alice"], "countersign-ack", fake.as_bytes());
    let path = g.sb.root().join("fake.sig");
    fs::write(&path, sig).unwrap();
    let server = g.sb.server.clone();
    let out = g.sb.countersign(
        &server,
        [
            "log",
            "ack",
            "--entry",
            &n,
            "--signature",
            path.to_str().unwrap(),
            "--reason",
            "x",
        ],
    );
    assert_eq!(out.code, Some(1), "{out}");
    let out = g.git("dave", &["push", "origin", "main"]);
    assert_rejected_with(&out, "ref-moved-out-of-band");
    ack_with_quorum(&g, &["alice", "bob", "carol"]);
    let out = g.git("dave", &["push", "origin", "main"]);
    assert!(
        out.success && out.stderr.contains("countersign: accepted"),
        "{out}"
    );
    let e = entry(&g.sb, LOG);
    assert_eq!(e["kind"], "push", "{e}");
    g.root = g.sb.server_ref("refs/meta/countersign").unwrap();
}

/// `report` says which ref-state log it was computed against, and whether
/// the ref it reads is where the log says.
#[test]
fn ledger_report_names_the_log_it_was_computed_against() {
    let (mut sb, dev, _) = with_dev(|_| Vec::new());
    push_main(&mut sb, &dev, "second");
    let work = sb.work.clone();
    let policy = sb.policy.display().to_string();
    let report = |sb: &Sandbox| {
        let out = sb.countersign(&work, ["report", "--ref", "main", "--policy", &policy]);
        assert!(out.success, "{out}");
        out.stdout
    };
    assert!(
        report(&sb).contains("Ref-state log: not checked"),
        "no log fetched yet"
    );
    let out = witness(&sb, &work, &[]);
    assert!(out.success, "{out}");
    sb.git_ok([
        "fetch",
        "-q",
        "origin",
        "+refs/countersign/log:refs/countersign/log",
    ]);
    sb.git_ok(["fetch", "-q", "origin"]);
    sb.git_ok(["reset", "-q", "--hard", "origin/main"]);
    let text = report(&sb);
    assert!(
        text.contains("signed by the server key")
            && text.contains("the ref's tip is the value it recorded"),
        "{text}"
    );
    // A clone whose main is not what the log recorded says so.
    sb.commit_as(Some(&dev), "local only");
    assert!(report(&sb).contains("is NOT the value it recorded"));
}

/// A signed push (`git push --signed`): the certificate is verified with
/// the policy's keys and names the pusher; its blob is kept in the
/// ref-state log's entry (gc would prune it otherwise). A certificate by a
/// key nobody in the policy holds, or without git's nonce check, does not
/// count, and the record says why.
#[test]
fn ledger_signed_push_certificate_names_the_pusher_and_is_kept() {
    let (mut sb, dev, _) = with_dev(|_| Vec::new());
    sb.server_git_ok(["config", "receive.certNonceSeed", "test-seed"]);
    let signed_push = |sb: &Sandbox, key: &Key| {
        let mut args: Vec<String> = key.sign_config();
        args.extend(["push", "--signed", "origin", "main"].map(String::from));
        run(sb.git(&args), None)
    };
    sb.commit_as(Some(&dev), "signed push");
    let out = signed_push(&sb, &dev);
    assert_accepted(&out);
    let log = fs::read_to_string(sb.server.join("countersign/audit.log")).unwrap();
    let rec: serde_json::Value = serde_json::from_str(
        log.lines()
            .rev()
            .find(|l| l.contains("\"kind\":\"push\""))
            .unwrap(),
    )
    .unwrap();
    assert_eq!(rec["pusher"]["source"], "push certificate", "{rec}");
    assert_eq!(rec["pusher"]["name"], "dev", "{rec}");
    let cert = rec["pusher"]["cert"].as_str().unwrap().to_string();
    let e = entry(&sb, LOG);
    assert_eq!(e["push_cert"], cert.as_str(), "{e}");
    let text = sb.server_git_ok(["show", &format!("{LOG}:push-cert")]);
    assert!(text.starts_with("certificate version 0.1"), "{text}");
    assert!(text.contains("refs/heads/main"), "{text}");
    // The log still verifies with its extra file.
    let out = sb.countersign(&sb.server.clone(), ["log", "verify"]);
    assert!(out.success, "{out}");

    // A key the policy does not know signs the certificate: not counted.
    let stranger = sb.ssh_key("stranger");
    sb.commit_as(Some(&dev), "stranger's push");
    let out = signed_push(&sb, &stranger);
    assert_accepted(&out);
    let log = fs::read_to_string(sb.server.join("countersign/audit.log")).unwrap();
    let rec: serde_json::Value = serde_json::from_str(
        log.lines()
            .rev()
            .find(|l| l.contains("\"kind\":\"push\""))
            .unwrap(),
    )
    .unwrap();
    assert_ne!(rec["pusher"]["source"], "push certificate", "{rec}");
    assert!(
        rec.to_string().contains("push certificate (not verified"),
        "{rec}"
    );
}
