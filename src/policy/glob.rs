//! Ref patterns: `*` matches within one path component, `**` across them.
//!
//! Deliberately small: no character classes or braces, so a pattern means
//! exactly what it looks like. Invalid patterns are refused when the policy
//! loads, never silently treated as "matches nothing".

/// A validated ref pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefPattern {
    text: String,
}

/// Why a pattern was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatternError {
    /// Patterns must name full refs.
    #[error("pattern must start with `refs/`")]
    NotUnderRefs,
    /// A character git forbids in ref names, or one this syntax reserves.
    #[error("pattern contains `{0}`, which is not allowed (only `*` and `**` are wildcards)")]
    BadChar(char),
    /// `***` or `**` glued to other text, which has no clear meaning.
    #[error("`**` must stand alone between slashes, as in `refs/heads/**`")]
    BadDoubleStar,
    /// Empty component such as `refs//x` or trailing slash.
    #[error("pattern has an empty path component")]
    EmptyComponent,
}

impl RefPattern {
    /// Parse and validate a pattern.
    ///
    /// # Errors
    ///
    /// [`PatternError`] for a pattern outside `refs/` or with a misplaced `**`.
    pub fn new(text: &str) -> Result<Self, PatternError> {
        if !text.starts_with("refs/") {
            return Err(PatternError::NotUnderRefs);
        }
        for c in text.chars() {
            if c.is_control() || matches!(c, ' ' | '~' | '^' | ':' | '?' | '[' | '\\' | '{' | '}') {
                return Err(PatternError::BadChar(c));
            }
        }
        for comp in text.split('/') {
            if comp.is_empty() {
                return Err(PatternError::EmptyComponent);
            }
            if comp.contains("**") && comp != "**" {
                return Err(PatternError::BadDoubleStar);
            }
        }
        Ok(RefPattern {
            text: text.to_string(),
        })
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Does `refname` match?
    ///
    /// Costs O(len(pattern) × len(refname)) at worst, whatever the
    /// wildcards: ref names come from pushers, so matching must not
    /// backtrack exponentially.
    pub fn matches(&self, refname: &str) -> bool {
        match_counted(&self.text, refname, &mut 0)
    }

    /// Does `refname` match, ignoring ASCII case when the repository's
    /// file system does (`core.ignorecase`), where `refs/heads/MAIN` and
    /// `refs/heads/main` name the same file?
    pub fn matches_with(&self, refname: &str, ignore_case: bool) -> bool {
        if ignore_case {
            RefPattern {
                text: self.text.to_ascii_lowercase(),
            }
            .matches(&refname.to_ascii_lowercase())
        } else {
            self.matches(refname)
        }
    }
}

/// Match `refname` against the pattern `pat`, adding to `steps` one per
/// inner-loop iteration (so tests can bound the work without timing it).
///
/// A dynamic program over path components: `reach[j]` says whether the
/// pattern components seen so far can match exactly the first `j` name
/// components. A plain component advances one name component when it
/// matches it; `**` advances by one or more. Each (pattern component, name
/// component) pair is compared at most once, and a comparison costs at
/// most the product of their lengths, so the total is bounded by
/// O(len(pat) × len(refname)).
fn match_counted(pat: &str, refname: &str, steps: &mut u64) -> bool {
    let name: Vec<&[u8]> = refname.split('/').map(str::as_bytes).collect();
    // Before any pattern component: only the empty prefix is matched.
    let mut reach = vec![false; name.len() + 1];
    let mut next = vec![false; name.len() + 1];
    if let Some(first) = reach.first_mut() {
        *first = true;
    }
    for p in pat.split('/') {
        next.iter_mut().for_each(|x| *x = false);
        if p == "**" {
            // One or more components: next[j] holds when some k < j is
            // reachable.
            let mut seen = false;
            for (nx, &r) in next.iter_mut().zip(reach.iter()) {
                *steps += 1;
                *nx = seen;
                seen |= r;
            }
        } else {
            // next[j + 1] from reach[j] and name component j.
            for ((nx, &r), comp) in next.iter_mut().skip(1).zip(reach.iter()).zip(&name) {
                *steps += 1;
                *nx = r && match_component(p.as_bytes(), comp, steps);
            }
        }
        std::mem::swap(&mut reach, &mut next);
        if !reach.contains(&true) {
            return false;
        }
    }
    reach.last().copied().unwrap_or(false)
}

/// `*` matches any run of bytes (within one component).
///
/// The classic greedy algorithm: on a mismatch, only the most recent `*`
/// needs to absorb one more byte (an earlier `*` could not do better,
/// since `*` has no other constraint), so the work is at most
/// O(len(p) × len(n)).
fn match_component(p: &[u8], n: &[u8], steps: &mut u64) -> bool {
    let (mut pi, mut ni) = (0usize, 0usize);
    // After the last `*` seen: where the pattern resumes, and which name
    // byte that `*` would absorb next.
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        *steps += 1;
        match p.get(pi) {
            Some(b'*') => {
                pi += 1;
                star = Some((pi, ni));
            }
            Some(&c) if n.get(ni) == Some(&c) => {
                pi += 1;
                ni += 1;
            }
            _ => match star {
                Some((sp, sn)) => {
                    pi = sp;
                    ni = sn + 1;
                    star = Some((sp, sn + 1));
                }
                None => return false,
            },
        }
    }
    p.get(pi..)
        .is_some_and(|rest| rest.iter().all(|&c| c == b'*'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(p: &str, n: &str) -> bool {
        RefPattern::new(p).unwrap().matches(n)
    }

    #[test]
    fn matching() {
        assert!(m("refs/heads/main", "refs/heads/main"));
        assert!(!m("refs/heads/main", "refs/heads/main2"));
        assert!(!m("refs/heads/main", "refs/heads/mai"));
        assert!(m("refs/heads/release/*", "refs/heads/release/1.0"));
        assert!(!m("refs/heads/release/*", "refs/heads/release/1/x"));
        assert!(!m("refs/heads/release/*", "refs/heads/release"));
        assert!(m("refs/tags/v*", "refs/tags/v1.2"));
        assert!(m("refs/tags/v*", "refs/tags/v"));
        assert!(!m("refs/tags/v*", "refs/tags/x1"));
        assert!(m("refs/heads/**", "refs/heads/a/b/c"));
        assert!(!m("refs/heads/**", "refs/heads"));
        assert!(m("refs/**/main", "refs/heads/main"));
        assert!(m("refs/heads/*-stable", "refs/heads/2.0-stable"));
        let p = RefPattern::new("refs/heads/Main").unwrap();
        assert!(!p.matches_with("refs/heads/MAIN", false));
        assert!(p.matches_with("refs/heads/MAIN", true));
    }

    /// The matcher this module used before: plain recursive backtracking,
    /// exponential on several wildcards but obviously right. Kept as the
    /// reference the new matcher must agree with.
    fn reference(pat: &str, name: &str) -> bool {
        fn components(pat: &[&str], name: &[&str]) -> bool {
            match pat.split_first() {
                None => name.is_empty(),
                Some((&"**", rest)) => (1..=name.len()).any(|n| components(rest, &name[n..])),
                Some((p, rest)) => match name.split_first() {
                    Some((n, nrest)) => {
                        component(p.as_bytes(), n.as_bytes()) && components(rest, nrest)
                    }
                    None => false,
                },
            }
        }
        fn component(p: &[u8], n: &[u8]) -> bool {
            match p.split_first() {
                None => n.is_empty(),
                Some((b'*', prest)) => (0..=n.len()).any(|k| component(prest, &n[k..])),
                Some((c, prest)) => n.first() == Some(c) && component(prest, &n[1..]),
            }
        }
        let p: Vec<&str> = pat.split('/').collect();
        let n: Vec<&str> = name.split('/').collect();
        components(&p, &n)
    }

    /// Every string over `alphabet` of length at most `max`.
    fn all_strings(alphabet: &[&str], max: usize) -> Vec<String> {
        let mut out = vec![String::new()];
        let mut layer = vec![String::new()];
        for _ in 0..max {
            layer = layer
                .iter()
                .flat_map(|s| alphabet.iter().map(move |a| format!("{s}{a}")))
                .collect();
            out.extend(layer.iter().cloned());
        }
        out
    }

    /// The new matcher agrees with the old one on every pattern of up to
    /// three components drawn from a set of tricky ones, against every
    /// name over `a`, `b`, `/` of up to five bytes after `refs/` (empty
    /// components, trailing slashes and all), and a few that are not
    /// under `refs/` at all.
    #[test]
    fn same_answers_as_the_backtracking_matcher() {
        let comps = [
            "a", "b", "ab", "*", "**", "a*", "*a", "*a*", "a*b", "*b*a", "**a", "a**b",
        ];
        let mut patterns = Vec::new();
        for k in 1..=3 {
            let mut acc = vec![String::from("refs")];
            for _ in 0..k {
                acc = acc
                    .iter()
                    .flat_map(|p| comps.iter().map(move |c| format!("{p}/{c}")))
                    .collect();
            }
            patterns.extend(acc);
        }
        let mut names: Vec<String> = all_strings(&["a", "b", "/"], 5)
            .into_iter()
            .map(|s| format!("refs/{s}"))
            .collect();
        names.extend(["", "refs", "/refs/a", "heads/a", "x/a/b"].map(String::from));
        let mut checked = 0usize;
        let mut matched = 0usize;
        for text in &patterns {
            // `a**b` and `**a` are refused at load: nothing to compare.
            let Ok(p) = RefPattern::new(text) else {
                continue;
            };
            for n in &names {
                let want = reference(text, n);
                assert_eq!(p.matches(n), want, "pattern {text:?} name {n:?}");
                checked += 1;
                matched += usize::from(want);
            }
        }
        // The generated set really exercises both answers.
        assert!(checked > 400_000, "{checked}");
        assert!(matched > 5_000 && matched < checked / 2, "{matched}");
    }

    /// Pseudo-random longer pairs, where several `*` in one component have
    /// to be tried against many split points.
    #[test]
    fn same_answers_on_generated_long_pairs() {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move |k: u64| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state % k
        };
        for _ in 0..3_000 {
            let mut pat = String::from("refs");
            for _ in 0..1 + next(3) {
                pat.push('/');
                if next(5) == 0 {
                    pat.push_str("**");
                    continue;
                }
                for _ in 0..1 + next(6) {
                    pat.push(['a', 'b', '*'][next(3) as usize]);
                }
            }
            let mut name = String::from("refs/");
            for _ in 0..next(16) {
                name.push(['a', 'a', 'b', '/'][next(4) as usize]);
            }
            let Ok(p) = RefPattern::new(&pat) else {
                continue;
            };
            assert_eq!(p.matches(&name), reference(&pat, &name), "{pat:?} {name:?}");
            assert_eq!(
                p.matches_with(&name.to_ascii_uppercase().replacen("REFS", "refs", 1), true),
                reference(&pat, &name),
                "{pat:?} {name:?} ignoring case"
            );
        }
    }

    /// Many stars against a long pushed ref name: the work is counted, and
    /// stays within len(pattern) × len(name) (backtracking needed on the
    /// order of C(4000, 7) steps here).
    #[test]
    fn many_stars_against_a_long_name_is_polynomial() {
        let pat = "refs/*a*a*a*a*a*a*a*b";
        let bound = |name: &str| 2 * (pat.len() as u64 + 1) * (name.len() as u64 + 1);
        for name in [
            format!("refs/{}", "a".repeat(4000)),
            format!("refs/{}c", "a".repeat(4000)),
            format!("refs/{}/b", "a".repeat(4000)),
        ] {
            let mut steps = 0;
            assert!(!match_counted(pat, &name, &mut steps));
            assert!(steps <= bound(&name), "{steps} steps");
        }
        let name = format!("refs/{}b", "a".repeat(4000));
        let mut steps = 0;
        assert!(match_counted(pat, &name, &mut steps));
        assert!(steps <= bound(&name), "{steps} steps");

        // `**` between many components: quadratic in components, no worse.
        let pat = "refs/**/a/**/a/**/a/**/a/**/b";
        let name = format!("refs/{}c", "a/".repeat(2000));
        let mut steps = 0;
        assert!(!match_counted(pat, &name, &mut steps));
        assert!(steps <= bound(&name), "{steps} steps");
        let name = format!("refs/{}b", "a/".repeat(2000));
        let mut steps = 0;
        assert!(match_counted(pat, &name, &mut steps));
        assert!(steps <= bound(&name), "{steps} steps");
    }

    #[test]
    fn edge_cases_keep_their_meaning() {
        // `*` matches an empty component, `**` one or more, empty included.
        assert!(m("refs/heads/*", "refs/heads/"));
        assert!(m("refs/heads/**", "refs/heads/"));
        assert!(m("refs/heads/**", "refs/heads//"));
        assert!(!m("refs/heads/x/**", "refs/heads/x"));
        assert!(m("refs/**/**", "refs/a/b"));
        assert!(!m("refs/**/**", "refs/a"));
        assert!(m("refs/*/**/*", "refs/a/b/c/d"));
        assert!(!m("refs/*/**/*", "refs/a/b"));
        assert!(m("refs/**", "refs/a"));
        assert!(!m("refs/**", "refs"));
        assert!(!m("refs/**", "refs2/a"));
        assert!(!m("refs/heads/main", ""));
        assert!(m("refs/a*b*c", "refs/abc"));
        assert!(m("refs/a*b*c", "refs/axxbyybc"));
        assert!(!m("refs/a*b*c", "refs/axxbyybcd"));
        assert!(m("refs/*ab", "refs/aab"));
        assert!(m("refs/*", "refs/\u{e9}t\u{e9}"));
        assert!(m("refs/\u{e9}*", "refs/\u{e9}t\u{e9}"));
        assert!(!m("refs/*", "refs/a/b"));
    }

    #[test]
    fn invalid_patterns() {
        assert_eq!(
            RefPattern::new("heads/main"),
            Err(PatternError::NotUnderRefs)
        );
        assert_eq!(
            RefPattern::new("refs/heads/[ab]"),
            Err(PatternError::BadChar('['))
        );
        assert_eq!(
            RefPattern::new("refs/heads/a**"),
            Err(PatternError::BadDoubleStar)
        );
        assert_eq!(
            RefPattern::new("refs//x"),
            Err(PatternError::EmptyComponent)
        );
        assert_eq!(
            RefPattern::new("refs/heads/"),
            Err(PatternError::EmptyComponent)
        );
        assert_eq!(
            RefPattern::new("refs/heads/x?"),
            Err(PatternError::BadChar('?'))
        );
    }
}
