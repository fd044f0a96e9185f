//! Attacks on the signed ref-state log (`refs/countersign/log`): what a
//! pusher, someone with shell access on the server, or a server facing a
//! witness can make of it. `ledger_attack_*` tests pin holes that were
//! fixed; `ledger_attack_known_*` tests document limits that stay.

use std::fs;

use crate::common::*;
use crate::util::*;

use crate::ledger::{kinds, state, LOG};

/// A pusher makes git refuse a push the hook accepted (an atomic push
/// whose second ref cannot be created: `refs/heads/x/y` while
/// `refs/heads/x` exists), then pushes main to another commit. The log
/// used to follow the first accepted record for main (A -> B, never
/// applied) and call the real move (A -> C) out of band: every push was
/// then refused until the admins acknowledged a false alarm.
#[test]
fn ledger_attack_unapplied_push_does_not_turn_the_next_into_an_alarm() {
    let (mut sb, dev, base) = with_dev(|_| Vec::new());
    let out = sb.push(&[&format!("{base}:refs/heads/x")]);
    assert_accepted(&out);
    let b = sb.commit_as(Some(&dev), "never lands");
    let out = sb.push(&[
        "--atomic",
        &format!("{b}:refs/heads/main"),
        &format!("{b}:refs/heads/x/y"),
    ]);
    assert!(!out.success, "git refuses the atomic push\n{out}");
    assert!(
        out.stderr.contains("countersign: accepted"),
        "the hook accepted it\n{out}"
    );
    sb.assert_server_ref(MAIN, Some(&base));
    sb.reset_hard(&base);
    let c = sb.commit_as(Some(&dev), "lands");
    let out = sb.push(&["main"]);
    assert_accepted(&out);
    sb.assert_server_ref(MAIN, Some(&c));
    let k = kinds(&sb);
    assert!(
        !k.iter().any(|x| x == "observed-out-of-band"),
        "a false alarm: {k:?}"
    );
    assert_eq!(state(&sb, LOG)["refs"][MAIN], c.as_str());
    let d = sb.commit_as(Some(&dev), "and the next one");
    let out = sb.push(&["main"]);
    assert_accepted(&out);
    sb.assert_server_ref(MAIN, Some(&d));
}

/// A pusher pushes main together with a few hundred unprotected refs with
/// long names: the audit record outgrows `audit-record-bytes`, and its
/// last-resort form used to drop the ref updates, so the log could not
/// explain main's move and raised an out-of-band alarm that refused every
/// push until acknowledged.
#[test]
fn ledger_attack_oversized_push_record_still_explains_the_move() {
    let (mut sb, dev, _) = with_dev(|_| Vec::new());
    let next = sb.commit_as(Some(&dev), "second");
    // libgit2 reads ref names of up to 1024 bytes.
    let long = format!("{}/", "a".repeat(200)).repeat(4);
    let mut args = vec!["main".to_string()];
    for i in 0..400 {
        args.push(format!("{next}:refs/heads/junk/{long}{i}"));
    }
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = sb.push(&refs);
    assert_accepted(&out);
    sb.assert_server_ref(MAIN, Some(&next));
    let k = kinds(&sb);
    assert_eq!(k.last().map(String::as_str), Some("push"), "{k:?}");
    assert!(!k.iter().any(|x| x == "observed-out-of-band"), "{k:?}");
    let third = sb.commit_as(Some(&dev), "third");
    let out = sb.push(&["main"]);
    assert_accepted(&out);
    sb.assert_server_ref(MAIN, Some(&third));
}

/// A pusher pushes main with a hundred unprotected refs of long names
/// (the audit record fits): the entry's commit message used to name every
/// ref, so the entry commit outgrew what `read_entry` reads (64 KiB), the
/// server could no longer verify its own last entry, and every push was
/// refused (`ref-log-broken`) until an admin repaired the log by hand.
#[test]
fn ledger_attack_push_of_many_long_refs_does_not_break_the_log() {
    let (mut sb, dev, _) = with_dev(|_| Vec::new());
    let next = sb.commit_as(Some(&dev), "second");
    let long = format!("{}/", "b".repeat(200)).repeat(4);
    let mut args = vec!["main".to_string()];
    for i in 0..100 {
        args.push(format!("{next}:refs/heads/many/{long}{i}"));
    }
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    assert_accepted(&sb.push(&refs));
    let tip = sb.server_ref(LOG).unwrap();
    let size: usize = sb.server_git_ok(["cat-file", "-s", &tip]).parse().unwrap();
    assert!(size < 16 << 10, "entry commit of {size} bytes");
    let out = sb.countersign(&sb.server.clone(), ["log", "verify"]);
    assert!(out.success, "{out}");
    let third = sb.commit_as(Some(&dev), "third");
    assert_accepted(&sb.push(&["main"]));
    sb.assert_server_ref(MAIN, Some(&third));
}

/// Someone with shell access moves main and, in the same breath, creates
/// 1001 refs the policy tracks whose names sort before it
/// (`refs/heads/RELEASE/...` matches `refs/heads/release/*` ignoring
/// case). Only the first 1000 observations used to wait for an
/// acknowledgement: the admins signed a statement that did not name main,
/// and main's move was never acknowledged by anyone.
#[test]
fn ledger_attack_many_out_of_band_moves_cannot_hide_one() {
    let (mut sb, dev, base) = with_dev(|_| Vec::new());
    let second = sb.commit_as(Some(&dev), "second");
    assert_accepted(&sb.push(&["main"]));
    let mut script = String::new();
    for i in 0..1001 {
        script.push_str(&format!("create refs/heads/RELEASE/j{i:04} {base}\n"));
    }
    script.push_str(&format!("update {MAIN} {base} {second}\n"));
    run_ok(
        sb.git_in(&sb.server, ["update-ref", "--stdin"]),
        Some(script.as_bytes()),
    );
    sb.reset_hard(&base);
    sb.commit_as(Some(&dev), "third");
    let out = sb.push(&["main"]);
    assert_rejected_with(&out, "ref-moved-out-of-band");
    let st = state(&sb, LOG);
    let waiting = st["unacknowledged"].as_array().unwrap();
    assert!(
        waiting.iter().any(|o| o["ref"] == MAIN),
        "main's move must wait for an acknowledgement ({} waiting)",
        waiting.len()
    );
    let n = waiting[0]["entry"].as_u64().unwrap().to_string();
    let out = sb.countersign(&sb.server.clone(), ["log", "statement", "--entry", &n]);
    assert!(out.success, "{out}");
    assert!(
        out.stdout
            .contains(&format!("ref {MAIN} {second} {base}\n")),
        "the statement the admins sign names main's move"
    );
}

/// When the ref-state log cannot be written, the pusher is told so by
/// its code and a generic message; the server's paths are the admin's
/// detail (the audit record, `countersign doctor`), as for every other
/// finding a pusher sees.
#[test]
fn ledger_attack_broken_log_does_not_show_server_paths_to_the_pusher() {
    let (mut sb, dev, _) = with_dev(|_| Vec::new());
    let lock = sb.server.join("countersign/log.lock");
    let _ = fs::remove_file(&lock);
    fs::create_dir(&lock).unwrap();
    sb.commit_as(Some(&dev), "second");
    let out = sb.push(&["main"]);
    assert_rejected_with(&out, "ref-log-broken");
    let server = sb.server.display().to_string();
    let remote: String = out
        .stderr
        .lines()
        .filter(|l| l.starts_with("remote:"))
        .collect();
    assert!(
        !remote.contains(&server),
        "the pusher sees the server's path {server}\n{out}"
    );
    let audit = fs::read_to_string(sb.server.join("countersign/audit.log")).unwrap();
    assert!(
        audit.contains("log.lock"),
        "the admin finds the detail in the audit log"
    );
    fs::remove_dir(&lock).unwrap();
    let out = sb.push(&["main"]);
    assert_accepted(&out);
}

/// Known limit: a witness compares only the refs the log's last state
/// names with what the server advertises. A protected ref *created*
/// around the hook (a release tag planted with `git update-ref`) is not in
/// that state, so `audit verify --remote` does not see it; the server's
/// hook does, on the next push.
#[test]
fn ledger_attack_known_witness_does_not_see_a_new_protected_ref() {
    let (mut sb, dev, base) = with_dev(|_| Vec::new());
    let work = sb.work.clone();
    let out = sb.countersign(&work, ["audit", "verify", "--remote", "origin"]);
    assert!(out.success, "{out}");
    sb.server_git_ok(["update-ref", "refs/tags/v6.6.6", &base]);
    let out = sb.countersign(&work, ["audit", "verify", "--remote", "origin"]);
    assert!(out.success, "current behaviour: not seen by a clone\n{out}");
    sb.commit_as(Some(&dev), "second");
    let out = sb.push(&["main"]);
    assert_rejected_with(&out, "ref-moved-out-of-band");
}
