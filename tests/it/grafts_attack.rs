//! Was a finding (this round's own attack review): libgit2 (the engine's
//! walks) and git (the merge-tree child) both honour `info/grafts` and a
//! `shallow` file in the server repository, which give commits other
//! parents than they name. A group member who can write repository files
//! (an operator: README, "Who can write the server's files") could plant one so that a push's walk passes
//! over an unsigned commit: a signed commit on top of an unsigned one was
//! accepted with "1 commit(s) verified". Now a repository with grafts, or
//! a shallow server judging a push, refuses every update that walks
//! history (`parents-rewritten`), saying what to remove.

use crate::common::*;
use crate::util::*;

/// A server with `main` at a signed base, and in the work clone an
/// unsigned commit with a signed one on top. Returns (sandbox, base, top).
fn unsigned_under_signed() -> (Sandbox, String, String) {
    let (mut sb, dev, base) = with_dev(|_| Vec::new());
    sb.commit_as(None, "unsigned");
    let top = sb.commit_as(Some(&dev), "top");
    (sb, base, top)
}

/// Refused: a graft on the server making the signed top's parent the base
/// (skipping the unsigned commit). Without the graft the same push is
/// judged as ever (the unsigned commit is found).
#[test]
fn a_graft_on_the_server_is_refused() {
    let (sb, base, top) = unsigned_under_signed();
    let grafts = sb.server.join("info").join("grafts");
    std::fs::create_dir_all(grafts.parent().unwrap()).unwrap();
    std::fs::write(&grafts, format!("{top} {base}\n")).unwrap();
    let out = sb.push(&["HEAD:refs/heads/main"]);
    assert_rejected_with(&out, "parents-rewritten");
    assert!(out.stderr.contains("info/grafts"), "{out}");
    sb.assert_server_ref("refs/heads/main", Some(&base));
    std::fs::remove_file(&grafts).unwrap();
    let out = sb.push(&["HEAD:refs/heads/main"]);
    assert_rejected_with(&out, "unsigned-commit");
}

/// Refused: a `shallow` file on the server naming the signed top (so it
/// has no parents for git and libgit2).
#[test]
fn a_shallow_file_on_the_server_is_refused() {
    let (sb, base, top) = unsigned_under_signed();
    std::fs::write(sb.server.join("shallow"), format!("{top}\n")).unwrap();
    let out = sb.push(&["HEAD:refs/heads/main"]);
    assert_rejected_with(&out, "parents-rewritten");
    assert!(out.stderr.contains("shallow"), "{out}");
    sb.assert_server_ref("refs/heads/main", Some(&base));
}

/// `verify` in a repository with grafts refuses too (an audit must not
/// follow parents the commits do not name).
#[test]
fn verify_refuses_a_repository_with_grafts() {
    let (sb, base, top) = unsigned_under_signed();
    let grafts = sb.work.join(".git").join("info").join("grafts");
    std::fs::create_dir_all(grafts.parent().unwrap()).unwrap();
    std::fs::write(&grafts, format!("{top} {base}\n")).unwrap();
    let policy = sb.policy.to_str().unwrap().to_string();
    let work = sb.work.clone();
    let out = sb.countersign(
        &work,
        [
            "verify",
            top.as_str(),
            "--ref",
            "refs/heads/main",
            "--policy",
            policy.as_str(),
        ],
    );
    assert!(!out.success, "{out}");
    assert!(out.all().contains("parents-rewritten"), "{out}");
}
