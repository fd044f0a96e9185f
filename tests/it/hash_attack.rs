//! Found by review: with `strict_hash_verification(false)` (briefly in
//! src/main.rs, now gone) libgit2 no longer checked that an object's
//! content hashes to the id it is read under.
//! Someone who can write the object store (a group member of a shared
//! repository: the adversary the cache's MAC and the ref-state log are
//! built against) stores another commit's bytes under an id: the engine
//! verifies the signature of those bytes and accepts the id; the cache
//! remembers the id as verified, so it stays accepted once the true
//! content is back.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use crate::common::MAIN;
use crate::util::*;

fn loose(git_dir: &Path, id: &str) -> PathBuf {
    git_dir.join("objects").join(&id[..2]).join(&id[2..])
}

/// Store `content` as the commit object `id` (whatever it hashes to).
fn forge(git_dir: &Path, id: &str, content: &[u8]) {
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    z.write_all(format!("commit {}\0", content.len()).as_bytes())
        .unwrap();
    z.write_all(content).unwrap();
    let bytes = z.finish().unwrap();
    let path = loose(git_dir, id);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let _ = std::fs::remove_file(&path);
    std::fs::write(&path, bytes).unwrap();
}

fn raw(repo: &Path, id: &str) -> Vec<u8> {
    let r = git2::Repository::open(repo).unwrap();
    let odb = r.odb().unwrap();
    let o = odb.read(git2::Oid::from_str(id).unwrap()).unwrap();
    o.data().to_vec()
}

#[test]
fn a_commit_stored_under_another_id_is_not_accepted_nor_cached() {
    let mut sb = Sandbox::new();
    let dev = sb.ssh_key("dev");
    sb.write_policy(&standard_policy(&[simple_person(
        "dev",
        &["developer"],
        &dev,
    )]));
    let signed = sb.commit_as(Some(&dev), "signed");
    let tree = sb.rev("HEAD^{tree}");
    let evil_raw = format!(
        "tree {tree}\nauthor E <e@x> 1700000000 +0000\ncommitter E <e@x> 1700000000 +0000\n\nunsigned\n"
    );
    let evil = sb.write_commit(&evil_raw);
    let policy = sb.policy.to_str().unwrap().to_string();
    let work = sb.work.clone();
    let verify = |sb: &Sandbox, cache: bool| {
        let mut args = vec![
            "verify",
            evil.as_str(),
            "--ref",
            MAIN,
            "--policy",
            policy.as_str(),
        ];
        if !cache {
            args.push("--no-cache");
        }
        sb.countersign(&work, args)
    };
    let before = verify(&sb, false);
    assert_eq!(
        before.code,
        Some(1),
        "the unsigned commit is refused\n{before}"
    );
    // The object `evil` now holds the signed commit's bytes.
    let git_dir = sb.work.join(".git");
    forge(&git_dir, &evil, &raw(&sb.work, &signed));
    let forged = verify(&sb, true);
    // The true content back.
    forge(&git_dir, &evil, evil_raw.as_bytes());
    assert_eq!(raw(&sb.work, &evil), evil_raw.as_bytes());
    let after = verify(&sb, true);
    assert!(
        forged.code != Some(0) && after.code != Some(0),
        "an id was accepted for another object's signature\nforged:\n{forged}\nafter the true content is back (cache):\n{after}"
    );
}

/// The same through the hook: an unsigned commit on an unprotected
/// branch (allowed there), a developer's signed commit on top of it pushed
/// to `main` (refused: the commit below is unsigned). While that push runs,
/// the stored unsigned commit holds the bytes of a signed one (one loose
/// file rewritten): the push is accepted, `main` holds the unsigned commit
/// once the file is put back. git's own hash check when writing a ref only
/// covers the tip, which is genuine.
#[test]
fn a_push_over_a_commit_stored_under_another_id_is_refused() {
    let mut sb = Sandbox::new();
    let dev = sb.ssh_key("dev");
    sb.install(&standard_policy(&[simple_person(
        "dev",
        &["developer"],
        &dev,
    )]));
    let base = sb.commit_as(Some(&dev), "base");
    assert_accepted(&sb.push(&["main"]));
    let tree = sb.rev("HEAD^{tree}");
    let commit = |parent: &str, who: &str, msg: &str, sign: bool| -> String {
        let payload = format!(
            "tree {tree}\nparent {parent}\nauthor {who} 1700000000 +0000\ncommitter {who} 1700000000 +0000\n\n{msg}\n"
        );
        if sign {
            let sig = sb.ssh_sign(&dev, "git", payload.as_bytes());
            sb.write_commit(&insert_gpgsig(&payload, &sig))
        } else {
            sb.write_commit(&payload)
        }
    };
    let dev_id = "Test User <test@example.com>";
    let evil = commit(&base, "E <e@x>", "unsigned", false);
    let topic = sb.push(&[&format!("{evil}:refs/heads/topic")]);
    assert!(topic.success, "{topic}");
    let cover = commit(&base, dev_id, "a signed commit, never pushed", true);
    let tip = commit(&evil, dev_id, "signed, on top of the unsigned one", true);
    let control = sb.push(&[&format!("{tip}:refs/heads/main")]);
    assert!(!control.success, "{control}");
    sb.assert_server_ref(MAIN, Some(&base));
    let server = sb.server.clone();
    assert!(
        loose(&server, &evil).exists(),
        "not a loose object on the server"
    );
    forge(&server, &evil, &raw(&sb.work, &cover));
    let out = sb.push(&[&format!("{tip}:refs/heads/main")]);
    forge(&server, &evil, &raw(&sb.work, &evil));
    let main = sb.server_ref(MAIN);
    let fsck = run(sb.git_in(&server, ["fsck", "--no-dangling"]), None);
    assert!(
        !out.success && main.as_deref() == Some(base.as_str()),
        "main moved over an unsigned commit\n{out}\nserver fsck after the file is back:\n{fsck}"
    );
}
