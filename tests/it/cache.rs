//! The verification cache (`$GIT_DIR/countersign/cache/`): a second run
//! takes signature answers from it and decides exactly as a fresh run
//! does; anything verification depends on (the keys) starts a new cache,
//! and everything that depends on time or roles is judged again.

use crate::common::MAIN;
use crate::util::*;

/// Enough commits for a run to read the cache (it skips it for a few).
const COMMITS: usize = 70;

fn history(sb: &mut Sandbox, dev: &Key) {
    for i in 0..COMMITS {
        sb.commit_as(Some(dev), &format!("change {i}"));
    }
}

/// `verify` of all of main in the work clone with `extra` arguments:
/// (exit code, stdout, the cache's stats line).
fn verify(sb: &Sandbox, extra: &[&str]) -> (Option<i32>, String, String) {
    verify_in(sb, &sb.work, extra)
}

/// `verify --format json` of main in `dir`: (exit code, stdout, stats).
fn verify_in(sb: &Sandbox, dir: &std::path::Path, extra: &[&str]) -> (Option<i32>, String, String) {
    let policy = sb.policy.to_str().unwrap_or_default().to_string();
    let mut c = sb.cmd(BIN);
    c.current_dir(dir)
        .args(["verify", "main", "--ref", MAIN, "--policy", &policy])
        .args(["--format", "json"])
        .args(extra)
        .env("COUNTERSIGN_CACHE_STATS", "1");
    let out = run(c, None);
    let stats = out
        .stderr
        .lines()
        .find(|l| l.starts_with("verification cache:"))
        .unwrap_or_default()
        .to_string();
    (out.code, out.stdout, stats)
}

fn cache_files(dir: &std::path::Path) -> Vec<String> {
    std::fs::read_dir(dir.join("countersign/cache"))
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with("v1-"))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn cache_second_verify_takes_answers_from_it_and_decides_the_same() {
    let mut sb = Sandbox::new();
    let dev = sb.ssh_key("dev");
    let eve = sb.ssh_key("eve");
    sb.write_policy(&standard_policy(&[
        simple_person("dev", &["developer"], &dev),
        simple_person("eve", &["reviewer"], &eve),
    ]));
    history(&mut sb, &dev);
    // Findings of each kind the cache must not change: unsigned, a
    // signer without the role, a signature over other bytes.
    sb.commit_as(None, "unsigned");
    sb.commit_as(Some(&eve), "by a reviewer");
    let good = sb.commit_as(Some(&dev), "to be altered");
    let raw = sb.cat_commit(&good).replace("to be altered", "altered");
    let bad = sb.write_commit(&raw);
    sb.reset_hard(&bad);
    history(&mut sb, &dev);

    let (code, cold, stats) = verify(&sb, &[]);
    assert_eq!(code, Some(1), "{cold}");
    assert!(
        stats.starts_with("verification cache: 0 from the cache"),
        "{stats}"
    );
    assert_eq!(cache_files(&sb.work.join(".git")).len(), 1);

    let (code, warm, stats) = verify(&sb, &[]);
    assert_eq!(code, Some(1), "{warm}");
    assert_eq!(warm, cold, "a warm run must decide exactly as a cold one");
    // Every good signature (eve's too: it verifies, her role is what
    // fails) came from the cache; the bad one was verified again
    // (failures are never kept), and the unsigned one has none.
    let good_sigs = 2 * COMMITS + 1;
    assert!(
        stats.starts_with(&format!(
            "verification cache: {good_sigs} from the cache, 1 verified"
        )),
        "{stats}"
    );
    let (_, _, stats) = verify(&sb, &["--no-cache"]);
    assert!(
        stats.starts_with(&format!(
            "verification cache: 0 from the cache, {} verified",
            good_sigs + 1
        )),
        "--no-cache reads nothing: {stats}"
    );
    for code in ["unsigned-commit", "signer-lacks-role", "bad-signature"] {
        assert!(warm.contains(code), "{code} missing from\n{warm}");
    }
}

#[test]
fn cache_is_not_used_under_other_keys_and_dates_are_judged_again() {
    let mut sb = Sandbox::new();
    let dev = sb.ssh_key("dev");
    let other = sb.ssh_key("other");
    sb.write_policy(&standard_policy(&[simple_person(
        "dev",
        &["developer"],
        &dev,
    )]));
    history(&mut sb, &dev);
    let (code, out, _) = verify(&sb, &[]);
    assert_eq!(code, Some(0), "{out}");

    // The same person, another key at the same place in the keyring: a
    // cache keyed by index alone would still say "dev signed".
    sb.write_policy(&standard_policy(&[simple_person(
        "dev",
        &["developer"],
        &other,
    )]));
    let (code, out, stats) = verify(&sb, &[]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("unknown-signer"), "{out}");
    assert!(
        stats.starts_with("verification cache: 0 from the cache"),
        "{stats}"
    );

    // Back to the key: the first context's answers are used again, and a
    // date set since (not part of the cache's key) still rejects.
    sb.write_policy(&standard_policy(&[simple_person(
        "dev",
        &["developer"],
        &dev,
    )]));
    let (code, out, stats) = verify(&sb, &[]);
    assert_eq!(code, Some(0), "{out}");
    assert!(
        stats.starts_with(&format!("verification cache: {COMMITS} from the cache")),
        "{stats}"
    );
    sb.write_policy(&standard_policy(&[person(
        "dev",
        &["developer"],
        &dev,
        &dev.entry(),
        "revoked = 2020-01-01T00:00:00Z\n",
    )]));
    let (code, out, _) = verify(&sb, &[]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("key-revoked"), "{out}");
}

#[test]
fn cache_is_filled_by_the_hook_and_a_forged_entry_is_not_believed() {
    let mut sb = Sandbox::new();
    let dev = sb.ssh_key("dev");
    sb.install(&standard_policy(&[simple_person(
        "dev",
        &["developer"],
        &dev,
    )]));
    history(&mut sb, &dev);
    let unsigned = sb.commit_as(None, "unsigned in the middle");
    history(&mut sb, &dev);
    let out = sb.push(&["main"]);
    assert_rejected_with(&out, "unsigned-commit");
    let files = cache_files(&sb.server);
    assert_eq!(files.len(), 1, "the hook fills the server's cache\n{out}");
    let file = sb.server.join("countersign/cache").join(&files[0]);
    let key = sb.server.join("countersign/cache/key");
    let mode = std::fs::metadata(&key).map(|m| {
        use std::os::unix::fs::PermissionsExt;
        m.permissions().mode() & 0o777
    });
    assert_eq!(
        mode.ok(),
        Some(0o600),
        "the cache's key is the owner's only"
    );

    // Someone who can write the cache but not read its key appends a
    // well-formed entry saying the unsigned commit verified with the
    // first key of the keyring: its MAC cannot be right, so it is not
    // believed and the push is still refused.
    let mut rec: Vec<u8> = (0..unsigned.len() / 2)
        .map(|i| u8::from_str_radix(&unsigned[2 * i..2 * i + 2], 16).unwrap_or(0))
        .collect();
    rec.push(8);
    rec.extend(0u32.to_le_bytes());
    rec.extend(0i64.to_le_bytes());
    let mut chunk = 1u32.to_le_bytes().to_vec();
    chunk.extend((rec.len() as u32).to_le_bytes());
    chunk.extend(&rec);
    chunk.extend([0u8; 32]);
    let mut bytes = std::fs::read(&file).unwrap_or_default();
    bytes.extend(chunk);
    std::fs::write(&file, bytes).unwrap_or_default();
    let out = sb.push(&["main"]);
    assert_rejected_with(&out, "unsigned-commit");
}

#[test]
fn cache_walk_is_extended_by_a_line_and_walked_anew_after_a_merge() {
    let mut sb = Sandbox::new();
    let dev = sb.ssh_key("dev");
    sb.write_policy(&standard_policy(&[simple_person(
        "dev",
        &["developer"],
        &dev,
    )]));
    history(&mut sb, &dev);
    let work = sb.work.clone();
    let (code, _, _) = verify_in(&sb, &work, &[]);
    assert_eq!(code, Some(0));

    // Five more commits on top: only those are verified, and the answer
    // is the one a fresh run gives.
    for i in 0..5 {
        sb.commit_as(Some(&dev), &format!("on top {i}"));
    }
    let (code, warm, stats) = verify_in(&sb, &work, &[]);
    assert_eq!(code, Some(0), "{warm}");
    assert!(
        stats.starts_with(&format!(
            "verification cache: {COMMITS} from the cache, 5 verified"
        )),
        "{stats}"
    );
    let (_, cold, _) = verify_in(&sb, &work, &["--no-cache"]);
    assert_eq!(warm, cold);

    // A merge of a side branch holding an unsigned commit: not a line, so
    // the history is walked again and the unsigned commit is found.
    sb.git_ok(["checkout", "-q", "-b", "side", "main~3"]);
    sb.commit_in(&work, None, "side.txt", "unsigned on the side");
    sb.commit_in(&work, Some(&dev), "side.txt", "signed on the side");
    sb.git_ok(["checkout", "-q", "main"]);
    let mut args = dev.sign_config();
    args.extend(
        ["merge", "-q", "--no-ff", "-S", "--no-edit", "side"]
            .iter()
            .map(|s| s.to_string()),
    );
    let out = sb.git_out_in(&work, Some(&dev), &args);
    assert!(out.success, "{out}");
    sb.commit_as(Some(&dev), "after the merge");
    let (code, warm, _) = verify_in(&sb, &work, &[]);
    assert_eq!(code, Some(1), "the unsigned side commit is found\n{warm}");
    assert!(warm.contains("unsigned-commit"), "{warm}");
    let (_, cold, _) = verify_in(&sb, &work, &["--no-cache"]);
    assert_eq!(warm, cold);
    // And the walk with the merge, remembered, gives the same again.
    let (_, again, stats) = verify_in(&sb, &work, &[]);
    assert_eq!(again, cold, "{stats}");
}

#[test]
fn cache_walk_of_a_shallow_clone_is_not_used_once_it_is_deepened() {
    let mut sb = Sandbox::new();
    let dev = sb.ssh_key("dev");
    sb.write_policy(&standard_policy(&[simple_person(
        "dev",
        &["developer"],
        &dev,
    )]));
    sb.commit_as(None, "an old unsigned commit");
    history(&mut sb, &dev);
    let shallow = sb.root().join("shallow");
    let url = format!("file://{}", sb.work.display());
    let depth = COMMITS.to_string();
    let shallow_s = shallow.to_str().unwrap_or_default();
    sb.git_ok(["clone", "-q", "--depth", &depth, &url, shallow_s]);
    let (code, out, _) = verify_in(&sb, &shallow, &[]);
    assert_eq!(code, Some(0), "the shallow part is all signed\n{out}");
    sb.git_ok_in(&shallow, ["fetch", "-q", "--unshallow"]);
    let (code, out, _) = verify_in(&sb, &shallow, &[]);
    assert_eq!(
        code,
        Some(1),
        "deepened, the old unsigned commit must be found\n{out}"
    );
    assert!(out.contains("unsigned-commit"), "{out}");
}
