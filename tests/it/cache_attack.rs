//! Attacks on the verification cache (`$GIT_DIR/countersign/cache/`) by
//! someone who can write files in the git directory (a member of the
//! group of a shared repository) but cannot read the hook user's 0600
//! files: the cache must never change a decision, and the hook or an
//! admin's `verify` must never be made to write through a planted link.

use std::path::{Path, PathBuf};

use crate::common::MAIN;
use crate::util::*;

/// Enough commits for a run to read the cache and remember its walk.
const COMMITS: usize = 70;

fn history(sb: &mut Sandbox, dev: &Key) {
    for i in 0..COMMITS {
        sb.commit_as(Some(dev), &format!("change {i}"));
    }
}

/// `verify <range> --format json` in `dir`: (exit code, stdout).
fn verify_range(sb: &Sandbox, dir: &Path, range: &str) -> (Option<i32>, String) {
    let policy = sb.policy.to_str().unwrap_or_default().to_string();
    let mut c = sb.cmd(BIN);
    c.current_dir(dir)
        .args(["verify", range, "--ref", MAIN, "--policy", &policy])
        .args(["--format", "json"]);
    let out = run(c, None);
    (out.code, out.stdout)
}

fn cache_dir(git_dir: &Path) -> PathBuf {
    git_dir.join("countersign/cache")
}

fn files_starting(dir: &Path, prefix: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with(prefix))
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len() / 2)
        .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap_or(0))
        .collect()
}

fn hmac(key: &[u8; 32], parts: &[&[u8]]) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    let mut ipad = [0x36u8; 64];
    let mut opad = [0x5cu8; 64];
    for (i, k) in key.iter().enumerate() {
        ipad[i] ^= k;
        opad[i] ^= k;
    }
    let mut inner = Sha256::new();
    inner.update(ipad);
    for p in parts {
        inner.update(p);
    }
    let inner = inner.finalize();
    let mut outer = Sha256::new();
    outer.update(opad);
    outer.update(inner);
    outer.finalize().into()
}

fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    let probe = std::env::temp_dir().join(format!("countersign-uid-{}", std::process::id()));
    let uid = std::fs::File::create(&probe)
        .and_then(|f| f.metadata())
        .map(|m| m.uid());
    let _ = std::fs::remove_file(&probe);
    uid.is_ok_and(|u| u == 0)
}

/// The walk of `verify A..main` (hiding A) is a genuine, authenticated
/// file; copied over the walk of `verify main` (hiding nothing), it must
/// not be believed: it would skip every commit below A.
#[test]
fn cache_attack_walk_of_a_range_is_not_taken_for_the_whole_history() {
    let mut sb = Sandbox::new();
    let dev = sb.ssh_key("dev");
    sb.write_policy(&standard_policy(&[simple_person(
        "dev",
        &["developer"],
        &dev,
    )]));
    sb.commit_as(None, "an old unsigned commit");
    history(&mut sb, &dev);
    let work = sb.work.clone();
    let cache = cache_dir(&work.join(".git"));

    let (code, cold) = verify_range(&sb, &work, "main");
    assert_eq!(code, Some(1), "{cold}");
    assert!(cold.contains("unsigned-commit"), "{cold}");
    let whole = files_starting(&cache, "walk-");
    assert_eq!(whole.len(), 1, "the walk of main is remembered");

    let (code, out) = verify_range(&sb, &work, "main~66..main");
    assert_eq!(code, Some(0), "the last 66 are signed\n{out}");
    let after = files_starting(&cache, "walk-");
    let range: Vec<&PathBuf> = after.iter().filter(|p| !whole.contains(p)).collect();
    assert_eq!(range.len(), 1, "the walk of the range is remembered");

    // The group member copies it over the walk of the whole history.
    let bytes = std::fs::read(range[0]).unwrap_or_default();
    std::fs::write(&whole[0], bytes).unwrap_or_default();
    let (code, warm) = verify_range(&sb, &work, "main");
    assert_eq!(
        code,
        Some(1),
        "a transplanted walk skipped the unsigned commit\n{warm}"
    );
    assert_eq!(warm, cold, "a warm run must decide exactly as a cold one");
}

/// A `lock` in the cache directory that is a link to a file of the hook
/// user: the hook must not truncate that file (nor create the target of a
/// dangling link).
#[test]
fn cache_attack_planted_lock_link_is_not_followed_by_the_hook() {
    let mut sb = Sandbox::new();
    let dev = sb.ssh_key("dev");
    sb.install(&standard_policy(&[simple_person(
        "dev",
        &["developer"],
        &dev,
    )]));
    sb.commit_as(Some(&dev), "first");
    let out = sb.push(&["main"]);
    assert_accepted(&out);
    let cache = cache_dir(&sb.server);
    assert!(
        cache.join("key").is_file(),
        "the hook made its cache\n{out}"
    );

    let victim = sb.root().join("precious.txt");
    std::fs::write(&victim, "the hook user's file\n").unwrap_or_default();
    let lock = cache.join("lock");
    let _ = std::fs::remove_file(&lock);
    std::os::unix::fs::symlink(&victim, &lock).unwrap_or_default();

    sb.commit_as(Some(&dev), "second");
    let out = sb.push(&["main"]);
    assert_accepted(&out);
    assert_eq!(
        std::fs::read_to_string(&victim).unwrap_or_default(),
        "the hook user's file\n",
        "the hook truncated a file through the planted `lock` link"
    );

    // A dangling link: its target must not be created.
    let target = sb.root().join("made-by-the-hook");
    let _ = std::fs::remove_file(&lock);
    std::os::unix::fs::symlink(&target, &lock).unwrap_or_default();
    sb.commit_as(Some(&dev), "third");
    let out = sb.push(&["main"]);
    assert_accepted(&out);
    assert!(
        target.symlink_metadata().is_err(),
        "the hook created the target of a dangling `lock` link"
    );
}

/// Run as root (an admin's `verify`), the cache's key is taken whoever
/// owns it: a group member who replaces `key` by one of their own (0600,
/// theirs) can then forge entries. Only a key of root or of the
/// repository's owner may count.
#[test]
fn cache_attack_root_does_not_take_a_key_planted_by_another_user() {
    if !is_root() {
        eprintln!("not root: nothing to check");
        return;
    }
    let mut sb = Sandbox::new();
    let dev = sb.ssh_key("dev");
    sb.write_policy(&standard_policy(&[simple_person(
        "dev",
        &["developer"],
        &dev,
    )]));
    let unsigned = sb.commit_as(None, "an old unsigned commit");
    history(&mut sb, &dev);
    let work = sb.work.clone();
    let cache = cache_dir(&work.join(".git"));
    let (code, cold) = verify_range(&sb, &work, "main");
    assert_eq!(code, Some(1), "{cold}");

    // The group member's own key, owned by them (uid 65534), 0600.
    let mine = [0x42u8; 32];
    let key = cache.join("key");
    let _ = std::fs::remove_file(&key);
    std::fs::write(&key, mine).unwrap_or_default();
    std::os::unix::fs::chown(&key, Some(65534), Some(65534)).unwrap_or_default();
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600));
    }
    // The cache file anew: its header (the context, readable by all) and
    // one chunk under that key saying the unsigned commit verified with
    // the first key of the keyring (committer time 0).
    let v1 = files_starting(&cache, "v1-");
    assert_eq!(v1.len(), 1);
    let old = std::fs::read(&v1[0]).unwrap_or_default();
    let magic = b"countersign verification cache 1\n";
    let header = &old[..magic.len() + 33];
    let context = &header[magic.len()..magic.len() + 32];
    let mut rec = unhex(&unsigned);
    rec.push(8);
    rec.extend(0u32.to_le_bytes());
    rec.extend(0i64.to_le_bytes());
    let mut chunk = 1u32.to_le_bytes().to_vec();
    chunk.extend((rec.len() as u32).to_le_bytes());
    chunk.extend(&rec);
    let mac = hmac(&mine, &[context, &chunk]);
    chunk.extend(mac);
    let mut forged = header.to_vec();
    forged.extend(chunk);
    std::fs::write(&v1[0], forged).unwrap_or_default();

    let (code, warm) = verify_range(&sb, &work, "main");
    assert_eq!(
        code,
        Some(1),
        "root believed an entry under a key another user planted\n{warm}"
    );
    assert!(warm.contains("unsigned-commit"), "{warm}");
}
