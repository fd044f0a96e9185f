//! `policy::parse(text, base)` on arbitrary UTF-8.
//!
//! `base` is a temporary directory holding one file, `bob.asc` (the fuzz
//! OpenPGP certificate from `fuzz/keys/`), so both a readable certificate
//! path and missing ones are exercised. Inputs that name special files
//! under `/dev`, `/proc` or `/sys` are skipped: a key path may be absolute,
//! and reading `/dev/zero` or `/dev/stdin` would hang the fuzzer rather
//! than find a parser bug (the policy is written by the admin).
//!
//! Never panics, and:
//! - every problem renders (`Problem::render`, `Display`) with line and
//!   column inside the text (or 0:0 when unknown), and its excerpt has no
//!   raw control characters;
//! - a policy that loads has a non-empty repository id without whitespace
//!   or commas, every person's roles and every rule's signer roles are
//!   declared, every rule has at least one ref pattern, and every keyring
//!   key belongs to a declared person;
//! - `Rule::matches`/`label` run on the loaded rules.
#![no_main]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use countersign::policy::parse;
use libfuzzer_sys::fuzz_target;

const PGP_CERT: &[u8] = include_bytes!("../keys/openpgp.asc");

fn base() -> &'static Path {
    static BASE: OnceLock<PathBuf> = OnceLock::new();
    BASE.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("countersign-fuzz-policy-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("bob.asc"), PGP_CERT).unwrap();
        dir
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if ["/dev", "/proc", "/sys"].iter().any(|s| text.contains(s)) {
        return;
    }
    let lines = text.split('\n').count();
    match parse(text, base()) {
        Err(problems) => {
            assert!(!problems.is_empty(), "Err without a problem");
            for p in &problems {
                let _ = p.render(Path::new("countersign.toml"));
                let _ = p.to_string();
                assert!(p.line <= lines, "line {} past the end ({lines} lines)", p.line);
                if p.line == 0 {
                    assert_eq!(p.col, 0);
                } else {
                    assert!(p.col >= 1);
                }
                if let Some((src, marks)) = &p.excerpt {
                    assert!(!src.chars().any(|c| c.is_control()), "raw control char in excerpt {src:?}");
                    assert!(marks.contains('^'));
                }
            }
        }
        Ok(policy) => {
            let id = &policy.repository_id;
            assert!(!id.trim().is_empty());
            assert!(!id.chars().any(|c| c.is_whitespace() || c == ','));
            for person in policy.people.values() {
                for r in &person.roles {
                    assert!(policy.roles.contains_key(r), "undeclared role {r}");
                }
            }
            for rule in &policy.rules {
                assert!(!rule.refs.is_empty(), "rule without refs loaded");
                for r in rule
                    .commit_signers
                    .iter()
                    .chain(rule.tag_signers.iter())
                    .flatten()
                    .chain(rule.merge.iter().flat_map(|m| m.signers.iter()))
                {
                    assert!(policy.roles.contains_key(r), "undeclared signer role {r}");
                }
                if let Some(m) = &rule.merge {
                    for a in &m.approvals {
                        assert!((1..=100).contains(&a.count));
                        assert!(policy.roles.contains_key(&a.role));
                    }
                }
                let _ = rule.label();
                for name in ["refs/heads/main", "HEAD", "refs/tags/v1.0", "refs/heads/a/b/c"] {
                    let _ = rule.matches(name);
                    let _ = rule.matches_with(name, true);
                }
            }
            for k in policy.keyring.keys() {
                assert!(policy.people.contains_key(&k.person), "key of unknown person {}", k.person);
                let _ = k.describe();
            }
        }
    }
});
