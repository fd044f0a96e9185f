//! `glob::RefPattern::new` and `RefPattern::matches` (policy ref patterns
//! against ref names that come from the pusher).
//!
//! Input: `<pattern> NUL <ref name>`. Never panics; a pattern that is
//! accepted starts with `refs/`; matching agrees with a small reference
//! matcher written here (dynamic programming, so it is linear-ish in the
//! sizes instead of backtracking), including `matches_with(.., true)` being
//! `matches` on ASCII-lowercased pattern and name. Run with libFuzzer's
//! `-timeout` to catch slow (backtracking) pattern/name pairs.
//!
//! `RefPattern::matches` backtracks: its time grows as (name length) to the
//! power of the number of `*`/`**` in the pattern (see
//! fuzz/regressions/refpattern/). Until src/glob.rs is fixed, inputs with
//! more than two `*` in the pattern or a ref name over 4096 bytes are
//! skipped, so the fuzzer keeps looking for other bugs; set
//! `COUNTERSIGN_FUZZ_STRICT=1` to run them (and the regressions) anyway.
#![no_main]

use std::sync::OnceLock;

use countersign::policy::glob::RefPattern;
use libfuzzer_sys::fuzz_target;

fn strict() -> bool {
    static STRICT: OnceLock<bool> = OnceLock::new();
    *STRICT.get_or_init(|| std::env::var_os("COUNTERSIGN_FUZZ_STRICT").is_none_or(|v| v != "0"))
}

/// `*` matches any run of bytes within one component.
fn component(p: &[u8], n: &[u8]) -> bool {
    // dp[j]: p[..i] matches n[..j]
    let mut dp = vec![false; n.len() + 1];
    dp[0] = true;
    for &c in p {
        let mut next = vec![false; n.len() + 1];
        if c == b'*' {
            let mut any = false;
            for j in 0..=n.len() {
                any |= dp[j];
                next[j] = any;
            }
        } else {
            for j in 1..=n.len() {
                next[j] = dp[j - 1] && n[j - 1] == c;
            }
        }
        dp = next;
    }
    dp[n.len()]
}

/// `**` (a whole component) matches one or more components.
fn reference(pat: &str, name: &str) -> bool {
    let p: Vec<&str> = pat.split('/').collect();
    let n: Vec<&str> = name.split('/').collect();
    let mut dp = vec![false; n.len() + 1];
    dp[0] = true;
    for comp in &p {
        let mut next = vec![false; n.len() + 1];
        if *comp == "**" {
            let mut any = false;
            for j in 1..=n.len() {
                any |= dp[j - 1];
                next[j] = any;
            }
        } else {
            for j in 1..=n.len() {
                next[j] = dp[j - 1] && component(comp.as_bytes(), n[j - 1].as_bytes());
            }
        }
        dp = next;
    }
    dp[n.len()]
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let (pat, name) = text.split_once('\0').unwrap_or((text, "refs/heads/main"));
    if !strict() && (pat.matches('*').count() > 2 || name.len() > 4096) {
        return;
    }
    let Ok(p) = RefPattern::new(pat) else { return };
    assert!(p.as_str().starts_with("refs/"));
    assert_eq!(p.as_str(), pat);
    let got = p.matches(name);
    assert_eq!(got, reference(pat, name), "pattern {pat:?} name {name:?}");
    let folded = reference(&pat.to_ascii_lowercase(), &name.to_ascii_lowercase());
    assert_eq!(p.matches_with(name, true), folded, "ignore-case {pat:?} {name:?}");
    assert_eq!(p.matches_with(name, false), got);
});
