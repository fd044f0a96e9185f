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
    pub fn matches(&self, refname: &str) -> bool {
        let pat: Vec<&str> = self.text.split('/').collect();
        let name: Vec<&str> = refname.split('/').collect();
        match_components(&pat, &name)
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

fn match_components(pat: &[&str], name: &[&str]) -> bool {
    match pat.split_first() {
        None => name.is_empty(),
        Some((&"**", rest)) => {
            // `**` matches one or more components.
            (1..=name.len()).any(|n| match_components(rest, &name[n..]))
        }
        Some((p, rest)) => match name.split_first() {
            Some((n, nrest)) => {
                match_component(p.as_bytes(), n.as_bytes()) && match_components(rest, nrest)
            }
            None => false,
        },
    }
}

/// `*` matches any run of bytes (within one component).
fn match_component(p: &[u8], n: &[u8]) -> bool {
    match p.split_first() {
        None => n.is_empty(),
        Some((b'*', prest)) => (0..=n.len()).any(|k| match_component(prest, &n[k..])),
        Some((c, prest)) => n.first() == Some(c) && match_component(prest, &n[1..]),
    }
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
