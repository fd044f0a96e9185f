//! Attacks on the engine's own history walk (`engine/walk.rs`, used when a
//! ref update hides nothing: a branch creation, `verify <tip>`): it claims
//! to give exactly libgit2's revwalk (GIT_SORT_NONE) — the same commits in
//! the same order — and to give up to libgit2's walk on anything libgit2
//! would read otherwise.

use std::path::Path;

use crate::common::MAIN;
use crate::util::*;

const EMPTY_TREE: &str = "4b825dc642cb6eb9a060e54bf8d69288fbee4904";

/// A raw unsigned commit with the given parents and committer time.
pub(crate) fn raw_commit(parents: &[&str], time: u64, msg: &str) -> String {
    let mut s = format!("tree {EMPTY_TREE}\n");
    for p in parents {
        s.push_str(&format!("parent {p}\n"));
    }
    s.push_str(&format!(
        "author A <a@x> {time} +0000\ncommitter C <c@x> {time} +0000\n\n{msg}\n"
    ));
    s
}

fn write(sb: &Sandbox, parents: &[&str], time: u64, msg: &str) -> String {
    sb.write_commit(&raw_commit(parents, time, msg))
}

/// libgit2's walk of `tip` in `repo`, as the engine's old path walked it.
fn libgit2_order(repo: &Path, tip: &str) -> Vec<String> {
    let r = git2::Repository::open(repo).unwrap();
    let mut w = r.revwalk().unwrap();
    w.set_sorting(git2::Sort::NONE).unwrap();
    w.push(git2::Oid::from_str(tip).unwrap()).unwrap();
    w.map(|x| x.unwrap().to_string()).collect()
}

/// The commits of `verify <tip> --no-cache --format json` findings
/// (every commit here is unsigned), in the order reported.
fn verify_order(sb: &Sandbox, tip: &str, all: &[String]) -> (String, Vec<String>) {
    let policy = sb.policy.to_str().unwrap().to_string();
    let work = sb.work.clone();
    let out = sb.countersign(
        &work,
        [
            "verify",
            tip,
            "--ref",
            MAIN,
            "--policy",
            policy.as_str(),
            "--no-cache",
            "--format",
            "json",
        ],
    );
    // Each finding names its commit; keep the first mention of each id.
    let text = out.stdout.clone();
    let mut found: Vec<(usize, String)> = all
        .iter()
        .filter_map(|id| text.find(id.as_str()).map(|at| (at, id.clone())))
        .collect();
    found.sort();
    (out.all(), found.into_iter().map(|(_, id)| id).collect())
}

/// A merge history where the order matters: equal times, clock skew, an
/// octopus, a duplicated parent line, a parent also reached another way.
fn tricky_history(sb: &Sandbox, big: u64) -> (String, Vec<String>) {
    sb.git_ok(["mktree"]); // the empty tree, written
    let mut all = Vec::new();
    let root = write(sb, &[], 1000, "root");
    all.push(root.clone());
    let a = write(sb, &[&root], big + 10, "a (far future)");
    let b = write(sb, &[&root], 1050, "b");
    let c = write(sb, &[&root], 1050, "c (same time as b)");
    let d = write(sb, &[&b, &b], 1040, "d (duplicate parent)");
    let e = write(sb, &[&c, &root], 1050, "e (root also via c)");
    let m = write(sb, &[&a, &d, &e, &b], 2000, "octopus");
    let tip = write(sb, &[&m, &c], 2000, "tip (same time as octopus)");
    all.extend([a, b, c, d, e, m, tip.clone()]);
    (tip, all)
}

/// Holds: without a commit-graph, `verify <tip>` (the engine's own walk)
/// reports in libgit2's order on equal times, skew, duplicate parents and
/// an octopus.
#[test]
fn own_walk_reports_in_libgit2_order() {
    let sb = Sandbox::new();
    sb.write_policy(&standard_policy(&[]));
    let (tip, all) = tricky_history(&sb, 3000);
    let want = libgit2_order(&sb.work, &tip);
    assert_eq!(want.len(), all.len());
    let (out, got) = verify_order(&sb, &tip, &all);
    assert_eq!(got, want, "findings not in libgit2's walk order\n{out}");
}

/// Was a finding: libgit2's revwalk takes a commit's time (and parents) from the
/// commit-graph (`objects/info/commit-graph`) when it can read one, where
/// the time has 34 bits; the engine's walk reads the object. libgit2 1.9
/// reads graphs without a generation-data chunk: those git before 2.31
/// writes (`git gc` writes one by default since 2.24), or later git with
/// `commitGraph.generationVersion=1`. A committer time of 2^34 or more
/// (the walk's parse takes up to 18 digits) then sorted differently:
/// `verify <tip>` reported in another order than libgit2's walk (the old
/// path, and `verify` with a baseline). The engine's walk leaves a commit
/// dated 2^34 or later to libgit2's walk; and since commit graphs are
/// dropped from every repository countersign opens (`graph_attack.rs`),
/// libgit2's walk there reads the objects too: the findings come in the
/// order libgit2 walks without the graph, which the graph would change.
#[test]
fn with_a_commit_graph_the_order_is_still_libgit2s() {
    let sb = Sandbox::new();
    sb.write_policy(&standard_policy(&[]));
    let (tip, all) = tricky_history(&sb, 1 << 34);
    sb.git_ok(["update-ref", "refs/heads/graph", &tip]);
    let want = libgit2_order(&sb.work, &tip);
    assert_eq!(want.len(), all.len());
    // As git before 2.31 writes it (and later git with this setting):
    // without the generation-data chunk, which libgit2 1.9 does not know
    // (it ignores a graph that has one).
    sb.git_ok([
        "-c",
        "commitGraph.generationVersion=1",
        "commit-graph",
        "write",
        "--reachable",
    ]);
    assert!(sb.work.join(".git/objects/info/commit-graph").exists());
    assert_ne!(
        libgit2_order(&sb.work, &tip),
        want,
        "the graph does not change libgit2's order here"
    );
    let (out, got) = verify_order(&sb, &tip, &all);
    assert_eq!(
        got, want,
        "findings not in libgit2's walk order without the graph\n{out}"
    );
}

/// Was a finding: libgit2 refuses to walk a commit of more than 65,535 parents
/// ("commit has more than 2^16 parents"); the engine's walk does not
/// check, so a branch creation through it is judged on a history libgit2
/// (the old path, and every later push that hides this tip) cannot walk.
/// With `object-bytes` raised to 4 MiB (allowed up to 64 MiB), a signed
/// commit with 65,536 `parent` lines (all the same commit) creates a
/// protected branch: accepted, where the old path rejected the push
/// (`object-missing`: "commit has more than 2^16 parents"); every later
/// fast-forward of that branch, walked by libgit2 hiding the old tip, is
/// then refused with that error (printed by the test). Now the engine's
/// walk leaves such a commit to libgit2's, and the creation is refused.
#[test]
fn commit_with_more_parents_than_libgit2_walks_is_refused() {
    let mut sb = Sandbox::new();
    let dev = sb.ssh_key("dev");
    let policy = standard_policy(&[simple_person("dev", &["developer"], &dev)]);
    sb.install(&format!("{policy}\n[limits]\nobject-bytes = 4194304\n"));
    let base = sb.commit_as(Some(&dev), "initial");
    assert_accepted(&sb.push(&["main"]));
    let tree = sb.rev("HEAD^{tree}");
    let mut payload = format!("tree {tree}\n");
    for _ in 0..65_536 {
        payload.push_str(&format!("parent {base}\n"));
    }
    payload.push_str(
        "author Test User <test@example.com> 1700000000 +0000\n\
         committer Test User <test@example.com> 1700000000 +0000\n\nwide\n",
    );
    let sig = sb.ssh_sign(&dev, "git", payload.as_bytes());
    let wide = sb.write_commit(&insert_gpgsig(&payload, &sig));
    // libgit2 itself cannot walk it.
    let r = git2::Repository::open(&sb.work).unwrap();
    let mut w = r.revwalk().unwrap();
    w.push(git2::Oid::from_str(&wide).unwrap()).unwrap();
    assert!(w.any(|x| x.is_err()), "libgit2 walked it");
    let out = sb.push(&[&format!("{wide}:refs/heads/release/wide")]);
    let created = sb.server_ref("refs/heads/release/wide");
    // What libgit2's walk (the engine before its own walk) answered.
    if out.success {
        // Accepted: the branch now holds a tip that every later update
        // (walked by libgit2, hiding it) cannot get past.
        let next = format!(
            "tree {tree}\nparent {wide}\n\
             author Test User <test@example.com> 1700000001 +0000\n\
             committer Test User <test@example.com> 1700000001 +0000\n\nnext\n"
        );
        let sig = sb.ssh_sign(&dev, "git", next.as_bytes());
        let next = sb.write_commit(&insert_gpgsig(&next, &sig));
        let later = sb.push(&[&format!("{next}:refs/heads/release/wide")]);
        eprintln!("a later fast-forward push to the branch:\n{later}");
    }
    assert!(
        !out.success && created.is_none(),
        "the engine's walk accepted a history libgit2 cannot walk\n{out}"
    );
}
