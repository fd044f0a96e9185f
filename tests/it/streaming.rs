//! Judging as answers come (`prefetch_iter` with judging): each commit is
//! judged as soon as its signature's answer, and those of every commit
//! before it in walk order, are known. Commits without a signature are
//! answered at once on the reading thread while signed ones wait for the
//! verifying pool, so a judge that took answers as they came would report
//! out of order; and a walk that gives up half way must neither judge
//! twice nor verify twice what it judged before libgit2 walks on.

use std::path::Path;

use crate::common::MAIN;
use crate::util::*;
use crate::walk_attack::raw_commit;

/// A commit on `parents`, signed by `key` (or not), written to the work
/// repository.
fn commit(sb: &Sandbox, key: Option<&Key>, parents: &[&str], time: u64, msg: &str) -> String {
    let p = raw_commit(parents, time, msg);
    let raw = match key {
        Some(k) => insert_gpgsig(&p, &sb.ssh_sign(k, "git", p.as_bytes())),
        None => p,
    };
    sb.write_commit(&raw)
}

/// A line of `n` commits from a root, each signed by `key`, the one at
/// `odd` (from the root) dated 2^34, which the engine's walk leaves to
/// libgit2's. Returns the tip.
fn line_with_odd_date(sb: &Sandbox, key: &Key, n: u64, odd: u64) -> String {
    sb.git_ok(["mktree"]); // the empty tree, written
    let mut parent: Option<String> = None;
    for i in 0..n {
        let time = if i == odd { 1 << 34 } else { 1000 + i };
        let parents: Vec<&str> = parent.iter().map(String::as_str).collect();
        parent = Some(commit(sb, Some(key), &parents, time, &format!("c{i}")));
    }
    parent.unwrap()
}

/// `verify <tip> --no-cache --format json` in the work clone, with the
/// cache statistics on stderr.
fn verify_json(sb: &Sandbox, tip: &str) -> Out {
    let policy = sb.policy.to_str().unwrap().to_string();
    let mut c = sb.cmd(BIN);
    c.current_dir(&sb.work)
        .env("COUNTERSIGN_CACHE_STATS", "1")
        .args(["verify", tip, "--ref", MAIN, "--policy", policy.as_str()])
        .args(["--no-cache", "--format", "json"]);
    run(c, None)
}

/// `verify`'s JSON accepted `n` commits, each checked and signed once.
#[track_caller]
fn accepted_once(out: &Out, n: usize) {
    assert!(out.success, "{out}");
    let checked = format!("\"commits_checked\": {n}");
    assert!(out.stdout.contains(&checked), "{}", out.all());
    assert_eq!(
        out.stdout.matches("\"object\": ").count(),
        n,
        "{}",
        out.all()
    );
}

/// libgit2's walk from `tip`, hiding `hide`.
fn libgit2_order(repo: &Path, tip: &str, hide: Option<&str>) -> Vec<String> {
    let r = git2::Repository::open(repo).unwrap();
    let mut w = r.revwalk().unwrap();
    w.push(git2::Oid::from_str(tip).unwrap()).unwrap();
    if let Some(h) = hide {
        w.hide(git2::Oid::from_str(h).unwrap()).unwrap();
    }
    w.map(|x| x.unwrap().to_string()).collect()
}

/// The ids of `all` in the order `text` first names them.
fn named_order(text: &str, all: &[String]) -> Vec<String> {
    let mut found: Vec<(usize, String)> = all
        .iter()
        .filter_map(|id| text.find(id.as_str()).map(|at| (at, id.clone())))
        .collect();
    found.sort();
    found.into_iter().map(|(_, id)| id).collect()
}

/// A line of `n` commits on `base` (or a root), every third unsigned,
/// the others signed by `stranger` (a key the policy does not list),
/// each a finding; some commits share a time, one is older than its
/// parent. Returns the ids, oldest first.
fn mixed_line(sb: &Sandbox, stranger: &Key, base: Option<&str>, n: u64) -> Vec<String> {
    sb.git_ok(["mktree"]); // the empty tree, written
    let mut ids: Vec<String> = Vec::new();
    let mut parent = base.map(str::to_string);
    for i in 0..n {
        let time = match i {
            7 => 900, // older than its parent
            _ => 1000 + i / 3,
        };
        let key = (i % 3 != 0).then_some(stranger);
        let parents: Vec<&str> = parent.iter().map(String::as_str).collect();
        let id = commit(sb, key, &parents, time, &format!("c{i}"));
        parent = Some(id.clone());
        ids.push(id);
    }
    ids
}

/// Holds: `verify` (the engine's own walk, the pool verifying) names the
/// findings of 48 commits in walk order, though the unsigned ones are
/// answered before the signed ones before them.
#[test]
fn verify_judges_in_walk_order_while_the_pool_verifies() {
    let mut sb = Sandbox::new();
    let dev = sb.ssh_key("dev");
    let stranger = sb.ssh_key("stranger");
    sb.write_policy(&standard_policy(&[simple_person(
        "dev",
        &["developer"],
        &dev,
    )]));
    let ids = mixed_line(&sb, &stranger, None, 48);
    let tip = ids.last().unwrap().clone();
    let want = libgit2_order(&sb.work, &tip, None);
    assert_eq!(want.len(), 48);
    let out = verify_json(&sb, &tip);
    assert!(!out.success, "{out}");
    assert_eq!(named_order(&out.stdout, &ids), want, "{}", out.all());
    assert!(
        out.stdout.contains("\"commits_checked\": 48"),
        "{}",
        out.all()
    );
    assert_eq!(
        out.stdout.matches("\"code\": \"unsigned-commit\"").count(),
        16
    );
}

/// Holds: the hook judging a push onto a branch (libgit2's walk, the old
/// tip hidden) reports the findings of 48 new commits in walk order.
#[test]
fn hook_judges_a_pushed_line_in_walk_order() {
    let mut sb = Sandbox::new();
    let dev = sb.ssh_key("dev");
    let stranger = sb.ssh_key("stranger");
    let policy = standard_policy(&[simple_person("dev", &["developer"], &dev)])
        + "\n[limits]\nfindings = 1000\n";
    sb.install(&policy);
    sb.git_ok(["mktree"]);
    let base = commit(&sb, Some(&dev), &[], 999, "base");
    let out = sb.push(&[&format!("{base}:refs/heads/main")]);
    assert_accepted(&out);
    let ids = mixed_line(&sb, &stranger, Some(&base), 48);
    let tip = ids.last().unwrap().clone();
    let want = libgit2_order(&sb.work, &tip, Some(&base));
    assert_eq!(want.len(), 48);
    let out = sb.push(&[&format!("{tip}:refs/heads/main")]);
    assert!(!out.success, "{out}");
    // The hook names commits by short id and subject: compare subjects.
    let subject = |id: &String| format!("\"c{}\"", ids.iter().position(|x| x == id).unwrap());
    let subjects: Vec<String> = ids.iter().map(subject).collect();
    let want: Vec<String> = want.iter().map(subject).collect();
    assert_eq!(named_order(&out.stderr, &subjects), want, "{out}");
}

/// Holds: a branch creation whose walk gives up half way (a commit dated
/// 2^34 or later is left to libgit2's walk) is judged once: the commits
/// the engine's walk judged before it gave up are not counted twice
/// against the `commits` limit (40 commits under a limit of 45 are
/// accepted), nor in `commits_checked`.
#[test]
fn a_walk_that_gives_up_is_judged_once() {
    let mut sb = Sandbox::new();
    let dev = sb.ssh_key("dev");
    let policy = standard_policy(&[simple_person("dev", &["developer"], &dev)])
        + "\n[limits]\ncommits = 45\n";
    sb.install(&policy);
    // The 11th from the tip: the walk has judged ten when it reads it.
    let tip = line_with_odd_date(&sb, &dev, 40, 29);
    let out = verify_json(&sb, &tip);
    accepted_once(&out, 40);
    let out = sb.push(&[&format!("{tip}:refs/heads/main")]);
    assert_accepted(&out);
}

/// Was a finding (review of the streaming judge): `verify`, which keeps
/// no answer once judged, verified every signature judged before its walk
/// gave up a second time in libgit2's walk (twice the CPU; the cache got
/// each record twice). Now libgit2's walk goes on after the commits
/// already judged (checked to be the same, in the same order): each
/// signature is verified once.
#[test]
fn a_walk_that_gives_up_verifies_each_signature_once() {
    let mut sb = Sandbox::new();
    let dev = sb.ssh_key("dev");
    sb.write_policy(&standard_policy(&[simple_person(
        "dev",
        &["developer"],
        &dev,
    )]));
    // The root is dated 2^34: the engine's walk gives up when it reads it,
    // having judged the 38 commits above c1.
    let tip = line_with_odd_date(&sb, &dev, 40, 0);
    let out = verify_json(&sb, &tip);
    accepted_once(&out, 40);
    assert!(
        out.stderr.contains("0 from the cache, 40 verified"),
        "each signature verified once: {}",
        out.stderr
    );
}
