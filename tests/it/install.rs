//! install.sh: the shim, a foreign pre-receive hook, unsafe setups.

use std::fs;

use crate::common::*;
use crate::util::*;

// ---------------------------------------------------------------------------
// 25: install.sh and a foreign pre-receive hook
// ---------------------------------------------------------------------------

/// Where the foreign hook leaves its traces.
struct Foreign {
    hook_text: String,
    ran: std::path::PathBuf,
    stdin: std::path::PathBuf,
}

/// Write a foreign pre-receive hook into the server that records that it
/// ran and what it read, then exits `code`.
fn foreign_hook(sb: &Sandbox, code: i32) -> Foreign {
    use std::os::unix::fs::PermissionsExt;
    let ran = sb.root().join("foreign-ran");
    let stdin = sb.root().join("foreign-stdin");
    let hook_text = format!(
        "#!/bin/sh\n# a foreign hook\ncat > '{}'\necho ran > '{}'\nexit {code}\n",
        stdin.display(),
        ran.display()
    );
    let hooks = sb.server.join("hooks");
    fs::create_dir_all(&hooks).unwrap();
    let path = hooks.join("pre-receive");
    fs::write(&path, &hook_text).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
    Foreign {
        hook_text,
        ran,
        stdin,
    }
}

#[test]
fn install_refuses_to_replace_a_foreign_hook() {
    let mut sb = Sandbox::new();
    let dev = sb.ssh_key("dev");
    let foreign = foreign_hook(&sb, 0);
    sb.write_policy(&standard_policy(&[simple_person(
        "dev",
        &["developer"],
        &dev,
    )]));
    let out = sb.run_install_with(true, &[]);
    assert!(!out.success, "install.sh replaced a foreign hook?\n{out}");
    assert!(
        out.stderr.contains("--chain"),
        "the refusal should mention --chain\n{out}"
    );
    let hooks = sb.server.join("hooks");
    assert_eq!(
        fs::read_to_string(hooks.join("pre-receive")).unwrap(),
        foreign.hook_text,
        "the foreign hook was changed"
    );
    assert!(
        !hooks.join("pre-receive.chained").exists(),
        "pre-receive.chained was made without --chain"
    );
}

/// Sandbox with a foreign hook exiting `code`, installed with --chain.
fn chained(code: i32) -> (Sandbox, Key, Foreign) {
    let mut sb = Sandbox::new();
    let dev = sb.ssh_key("dev");
    let foreign = foreign_hook(&sb, code);
    sb.write_policy(&standard_policy(&[simple_person(
        "dev",
        &["developer"],
        &dev,
    )]));
    let out = sb.run_install_with(true, &["--chain"]);
    assert!(out.success, "install.sh --chain failed\n{out}");
    let hooks = sb.server.join("hooks");
    assert_eq!(
        fs::read_to_string(hooks.join("pre-receive.chained")).unwrap(),
        foreign.hook_text,
        "the foreign hook was not kept as pre-receive.chained"
    );
    assert!(
        fs::read_to_string(hooks.join("pre-receive"))
            .unwrap()
            .contains("countersign pre-receive shim"),
        "pre-receive is not countersign's shim"
    );
    (sb, dev, foreign)
}

#[test]
fn chained_hook_runs_after_accepted_push_only() {
    let (mut sb, dev, foreign) = chained(0);
    let c = sb.commit_as(Some(&dev), "signed");
    let out = sb.push(&["main"]);
    assert_accepted(&out);
    sb.assert_server_ref(MAIN, Some(&c));
    assert!(
        foreign.ran.exists(),
        "the chained hook did not run on an accepted push"
    );
    let input = fs::read_to_string(&foreign.stdin).unwrap();
    let expected = format!("{} {c} {MAIN}", "0".repeat(40));
    assert!(
        input.lines().any(|l| l == expected),
        "the chained hook did not get `{expected}` on stdin; it got:\n{input}"
    );

    fs::remove_file(&foreign.ran).unwrap();
    fs::remove_file(&foreign.stdin).unwrap();
    sb.commit_as(None, "unsigned");
    let out = sb.push(&["main"]);
    assert_rejected_with(&out, "unsigned-commit");
    sb.assert_server_ref(MAIN, Some(&c));
    assert!(
        !foreign.ran.exists() && !foreign.stdin.exists(),
        "the chained hook ran on a rejected push"
    );
}

#[test]
fn failing_chained_hook_rejects_accepted_push() {
    let (mut sb, dev, foreign) = chained(1);
    sb.commit_as(Some(&dev), "signed, but the chained hook says no");
    let out = sb.push(&["main"]);
    assert!(
        !out.success,
        "the push succeeded although the chained hook exited 1\n{out}"
    );
    assert!(
        out.stderr.contains("countersign: accepted"),
        "countersign should have accepted before the chained hook ran\n{out}"
    );
    assert!(foreign.ran.exists(), "the chained hook did not run");
    sb.assert_server_ref(MAIN, None);
}

#[test]
fn reinstall_over_countersign_is_idempotent() {
    let mut sb = Sandbox::new();
    let dev = sb.ssh_key("dev");
    sb.install(&standard_policy(&[simple_person(
        "dev",
        &["developer"],
        &dev,
    )]));
    let hooks = sb.server.join("hooks");
    let shim = fs::read_to_string(hooks.join("pre-receive")).unwrap();
    for extra in [&[][..], &["--chain"][..]] {
        let out = sb.run_install_with(true, extra);
        assert!(out.success, "re-running install.sh {extra:?} failed\n{out}");
        assert_eq!(
            fs::read_to_string(hooks.join("pre-receive")).unwrap(),
            shim,
            "re-running install.sh {extra:?} changed the shim"
        );
        assert!(
            !hooks.join("pre-receive.chained").exists(),
            "re-running install.sh {extra:?} chained countersign's own shim"
        );
    }
    create_main(&mut sb, &dev);
    sb.commit_as(None, "unsigned");
    assert_rejected_with(&sb.push(&["main"]), "unsigned-commit");
}

#[test]
fn reinstall_with_chain_keeps_the_chained_hook() {
    let (mut sb, dev, foreign) = chained(0);
    let out = sb.run_install_with(true, &["--chain"]);
    assert!(out.success, "re-running install.sh --chain failed\n{out}");
    assert_eq!(
        fs::read_to_string(sb.server.join("hooks/pre-receive.chained")).unwrap(),
        foreign.hook_text,
        "re-running install.sh changed the chained hook"
    );
    create_main(&mut sb, &dev);
    assert!(foreign.ran.exists(), "the chained hook no longer runs");
}
