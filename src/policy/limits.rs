//! Budgets: every loop, allocation, record and message the pusher drives has
//! a limit, so no push, however crafted, can make the hook run unbounded
//! time or memory.
//!
//! Each limit has a default that fits ordinary work, can be set in the
//! policy's `[limits]` table, and — where exceeding it rejects the push —
//! its own finding code naming the limit and how to raise it. Limits that
//! only shorten what is shown or stored (subjects, findings kept, audit
//! record and stderr sizes) never reject by themselves.

use crate::finding::Code;

/// One budget, as documented and as parsed from `[limits]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimitSpec {
    /// Key in the policy's `[limits]` table.
    pub key: &'static str,
    /// Default value.
    pub default: u64,
    /// Smallest value the policy may set.
    pub min: u64,
    /// Largest value the policy may set (a policy cannot switch a limit off).
    pub max: u64,
    /// The finding code when exceeding it rejects; `None` when it only
    /// truncates.
    pub code: Option<Code>,
    /// What it bounds.
    pub what: &'static str,
}

/// Every limit, in the order the README's table lists them.
pub const SPECS: &[LimitSpec] = &[
    LimitSpec {
        key: "updates",
        default: 1_000,
        min: 1,
        max: 100_000,
        code: Some(Code::LimitUpdates),
        what: "ref updates in one push",
    },
    LimitSpec {
        key: "commits",
        default: 20_000,
        min: 1,
        max: 10_000_000,
        code: Some(Code::LimitCommits),
        what: "commits examined per push, summed over every ref and walk (signatures, authors, landing chains)",
    },
    LimitSpec {
        key: "merges",
        default: 1_000,
        min: 1,
        max: 1_000_000,
        code: Some(Code::LimitMerges),
        what: "changes (merges, squashes, direct commits) judged on merge-rule refs per push",
    },
    LimitSpec {
        key: "object-bytes",
        default: 1 << 20,
        min: 1 << 10,
        max: 64 << 20,
        code: Some(Code::LimitObjectBytes),
        what: "bytes of one commit or tag object",
    },
    LimitSpec {
        key: "commit-bytes",
        default: 32 << 20,
        min: 1 << 20,
        max: 4 << 30,
        code: Some(Code::LimitCommitBytes),
        what: "bytes of all commits and tags one push brings, inflated (libgit2 rebuilds each from its delta chain to walk it)",
    },
    LimitSpec {
        key: "signature-bytes",
        default: 16 << 10,
        min: 1 << 10,
        max: 64 << 10,
        code: Some(Code::LimitSignatureBytes),
        what: "bytes of one signature (commit, tag or approval)",
    },
    LimitSpec {
        key: "trailers",
        default: 32,
        min: 1,
        max: 1_000,
        code: Some(Code::LimitTrailers),
        what: "`Countersign-Approval:` trailers in one commit",
    },
    LimitSpec {
        key: "seconds",
        default: 60,
        min: 1,
        max: 3_600,
        code: Some(Code::LimitTime),
        what: "wall-clock seconds for the whole hook (checked between objects; a `git merge-tree` child is killed)",
    },
    LimitSpec {
        key: "subject-chars",
        default: 200,
        min: 20,
        max: 10_000,
        code: None,
        what: "characters of a commit subject or quoted claim kept in a finding (longer ones end in `…`)",
    },
    LimitSpec {
        key: "findings",
        default: 100,
        min: 1,
        max: 100_000,
        code: None,
        what: "findings kept per push; checking stops there (the push is rejected anyway) and the rest are counted",
    },
    LimitSpec {
        key: "audit-record-bytes",
        default: 256 << 10,
        min: 4 << 10,
        max: 1 << 20,
        code: None,
        what: "bytes of one audit record (lists are cut, with counts, to fit)",
    },
    LimitSpec {
        key: "stderr-bytes",
        default: 64 << 10,
        min: 1 << 10,
        max: 16 << 20,
        code: None,
        what: "bytes of the text sent back to the pusher",
    },
];

/// The budgets in force for one run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// `updates`.
    pub updates: usize,
    /// `commits`.
    pub commits: usize,
    /// `merges`.
    pub merges: usize,
    /// `object-bytes`.
    pub object_bytes: usize,
    /// `commit-bytes`.
    pub commit_bytes: usize,
    /// `signature-bytes`.
    pub signature_bytes: usize,
    /// `trailers`.
    pub trailers: usize,
    /// `seconds`.
    pub seconds: u64,
    /// `subject-chars`.
    pub subject_chars: usize,
    /// `findings`.
    pub findings: usize,
    /// `audit-record-bytes`.
    pub audit_record_bytes: usize,
    /// `stderr-bytes`.
    pub stderr_bytes: usize,
}

impl Limits {
    /// These limits, each rejecting one raised to at least its default:
    /// for pushes to the policy ref, which an approved change must never
    /// be able to lock out with a tiny `[limits]`.
    pub fn at_least_defaults(self) -> Limits {
        let d = Limits::default();
        Limits {
            updates: self.updates.max(d.updates),
            commits: self.commits.max(d.commits),
            merges: self.merges.max(d.merges),
            object_bytes: self.object_bytes.max(d.object_bytes),
            commit_bytes: self.commit_bytes.max(d.commit_bytes),
            signature_bytes: self.signature_bytes.max(d.signature_bytes),
            trailers: self.trailers.max(d.trailers),
            seconds: self.seconds.max(d.seconds),
            ..self
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        let mut l = Limits {
            updates: 0,
            commits: 0,
            merges: 0,
            object_bytes: 0,
            commit_bytes: 0,
            signature_bytes: 0,
            trailers: 0,
            seconds: 0,
            subject_chars: 0,
            findings: 0,
            audit_record_bytes: 0,
            stderr_bytes: 0,
        };
        for s in SPECS {
            l.set(s.key, s.default);
        }
        l
    }
}

impl Limits {
    /// Set one limit by its policy key; false when the key is unknown.
    pub fn set(&mut self, key: &str, value: u64) -> bool {
        let v = usize::try_from(value).unwrap_or(usize::MAX);
        match key {
            "updates" => self.updates = v,
            "commits" => self.commits = v,
            "merges" => self.merges = v,
            "object-bytes" => self.object_bytes = v,
            "commit-bytes" => self.commit_bytes = v,
            "signature-bytes" => self.signature_bytes = v,
            "trailers" => self.trailers = v,
            "seconds" => self.seconds = value,
            "subject-chars" => self.subject_chars = v,
            "findings" => self.findings = v,
            "audit-record-bytes" => self.audit_record_bytes = v,
            "stderr-bytes" => self.stderr_bytes = v,
            _ => return false,
        }
        true
    }

    /// The value of one limit by its policy key.
    pub fn get(&self, key: &str) -> Option<u64> {
        let v = match key {
            "updates" => self.updates,
            "commits" => self.commits,
            "merges" => self.merges,
            "object-bytes" => self.object_bytes,
            "commit-bytes" => self.commit_bytes,
            "signature-bytes" => self.signature_bytes,
            "trailers" => self.trailers,
            "seconds" => return Some(self.seconds),
            "subject-chars" => self.subject_chars,
            "findings" => self.findings,
            "audit-record-bytes" => self.audit_record_bytes,
            "stderr-bytes" => self.stderr_bytes,
            _ => return None,
        };
        Some(v as u64)
    }

    /// The help line of a limit finding: how an admin raises it.
    pub fn raise_help(key: &str) -> String {
        format!("split the push into smaller ones, or ask the admin to raise `{key}` in the policy's `[limits]` table (see README, Limits)")
    }
}

/// Cut `s` to at most `max` characters, ending in `…` when cut.
pub fn truncate(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        None => s.to_string(),
        Some((at, _)) => {
            let mut t = s[..at].to_string();
            t.push('…');
            t
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_spec_round_trips_and_defaults_are_in_range() {
        let l = Limits::default();
        for s in SPECS {
            assert!(s.min <= s.default && s.default <= s.max, "{}", s.key);
            assert_eq!(l.get(s.key), Some(s.default), "{}", s.key);
            let mut m = l;
            assert!(m.set(s.key, s.min));
            assert_eq!(m.get(s.key), Some(s.min));
        }
        assert!(!Limits::default().set("nope", 1));
    }

    #[test]
    fn rejecting_limits_have_distinct_codes() {
        let mut codes: Vec<Code> = SPECS.iter().filter_map(|s| s.code).collect();
        let n = codes.len();
        codes.sort();
        codes.dedup();
        assert_eq!(codes.len(), n);
    }

    /// The README's Limits table lists every limit with its default and code.
    #[test]
    fn readme_lists_every_limit() {
        let readme = include_str!("../../README.md");
        let start = readme
            .find("| limit | default |")
            .expect("README has a Limits table");
        let rows: Vec<&str> = readme[start..]
            .lines()
            .skip(2)
            .take_while(|l| l.starts_with("| `"))
            .collect();
        assert_eq!(rows.len(), SPECS.len());
        for (row, spec) in rows.iter().zip(SPECS) {
            assert!(row.starts_with(&format!("| `{}` |", spec.key)), "{row}");
            if let Some(code) = spec.code {
                assert!(row.contains(&format!("`{code}`")), "{row}");
            }
        }
    }

    #[test]
    fn truncates_on_char_boundaries() {
        assert_eq!(truncate("abc", 3), "abc");
        assert_eq!(truncate("abcd", 3), "abc…");
        assert_eq!(truncate("ééé", 2), "éé…");
        assert_eq!(truncate("", 0), "");
    }
}
