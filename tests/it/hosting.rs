//! Running countersign where admins host Git (issue 12): man pages and
//! shell completions, JSON listings, install.sh's help and starter
//! policy, what the pusher sees of the server, safe.directory, `doctor`.

use std::ffi::OsStr;
use std::fs;

use crate::util::*;

// ---------------------------------------------------------------------------
// Man pages and shell completions
// ---------------------------------------------------------------------------

#[test]
fn bash_completion_names_the_subcommands() {
    let sb = Sandbox::new();
    let out = sb.countersign(sb.root(), ["completions", "bash"]);
    assert!(out.success, "completions bash failed\n{out}");
    assert!(
        out.stdout.contains("complete ") && out.stdout.contains("countersign"),
        "not a bash completion script\n{out}"
    );
    for sub in [
        "verify", "approve", "policy", "audit", "people", "keys", "roles",
    ] {
        assert!(
            out.stdout.contains(sub),
            "the bash completion does not mention `{sub}`\n{out}"
        );
    }
    // The nested subcommands too.
    assert!(out.stdout.contains("migrate"), "no `policy migrate`\n{out}");
    for shell in ["zsh", "fish", "elvish", "powershell"] {
        let out = sb.countersign(sb.root(), ["completions", shell]);
        assert!(
            out.success && out.stdout.contains("verify"),
            "completions {shell} failed\n{out}"
        );
    }
    let out = sb.countersign(sb.root(), ["completions", "tcsh"]);
    assert_eq!(
        out.code,
        Some(2),
        "an unknown shell is a usage error\n{out}"
    );
}

#[test]
fn man_pages_are_written_per_subcommand() {
    let sb = Sandbox::new();
    let dir = sb.root().join("man/man1");
    let out = sb.countersign(
        sb.root(),
        [OsStr::new("man"), OsStr::new("--out"), dir.as_os_str()],
    );
    assert!(out.success, "countersign man failed\n{out}");
    for page in [
        "countersign.1",
        "countersign-verify.1",
        "countersign-policy.1",
        "countersign-policy-check.1",
        "countersign-audit-verify.1",
        "countersign-keys-list.1",
    ] {
        let path = dir.join(page);
        let text = fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("no man page {}: {e}\n{out}", path.display()));
        let th = text
            .lines()
            .find(|l| l.starts_with(".TH "))
            .unwrap_or_else(|| panic!("{page} has no .TH line:\n{text}"));
        assert!(
            th.starts_with(&format!(".TH {} 1", page.trim_end_matches(".1"))),
            "{page}: unexpected title line `{th}`"
        );
        assert!(text.contains(".SH NAME"), "{page} has no NAME section");
    }
    // Rendered by man(1) itself where it is installed.
    let mut c = sb.cmd("man");
    c.arg("-l")
        .arg(dir.join("countersign-policy-check.1"))
        .env("MANPAGER", "cat")
        .env("PAGER", "cat");
    match c.output() {
        Ok(o) => {
            let text = String::from_utf8_lossy(&o.stdout);
            assert!(
                o.status.success() && text.contains("NAME") && text.contains("--policy"),
                "man -l cannot render the page:\n{text}\n{}",
                String::from_utf8_lossy(&o.stderr)
            );
        }
        Err(e) => eprintln!("man(1) not available ({e}); only the files were checked"),
    }
}
