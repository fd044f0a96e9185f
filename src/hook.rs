//! The pre-receive protocol: read `<old> <new> <ref>` lines, find the
//! policy, open the repository from git's environment (which includes the
//! quarantine object directory), and decide.
//!
//! Everything that can go wrong here becomes a finding in the decision, so
//! a missing policy or an unreadable repository rejects the push with a
//! reason instead of slipping through.

use std::path::{Path, PathBuf};

use git2::{Oid, Repository};

use crate::audit;
use crate::finding::{Code, Finding};
use crate::policy::{self, Policy, PolicyError};
use crate::time::Timestamp;
use crate::verify::{self, Decision, RefUpdate, Verifier};

/// At most this many findings are written into one audit record.
pub const AUDIT_FINDINGS_LIMIT: usize = 200;

/// Git config key naming the policy file.
pub const POLICY_CONFIG_KEY: &str = "countersign.policy";
/// Policy file name inside `$GIT_DIR` when the config key is not set.
pub const DEFAULT_POLICY_FILE: &str = "countersign.toml";

/// Parse pre-receive input. Every line must be `<old> <new> <ref>` with
/// full hex ids; anything else is refused.
pub fn parse_updates(input: &[u8]) -> Result<Vec<RefUpdate>, Finding> {
    let text = std::str::from_utf8(input)
        .map_err(|_| bad_input("the ref update list is not valid UTF-8".into()))?;
    let mut updates = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.is_empty() {
            continue;
        }
        let parts: Vec<&str> = line.split(' ').collect();
        let [old, new, refname] = parts[..] else {
            return Err(bad_input(format!(
                "line {} is not `<old> <new> <ref>`",
                n + 1
            )));
        };
        if old.len() == 64 || new.len() == 64 {
            return Err(Finding::new(
                Code::UnsupportedObjectFormat,
                "this repository uses SHA-256 object ids, which countersign cannot verify yet",
                "use countersign on SHA-1 repositories only; the push was rejected rather than left unchecked",
            ));
        }
        let parse = |s: &str| {
            if s.len() == 40 && s.bytes().all(|b| b.is_ascii_hexdigit()) {
                Oid::from_str(s).ok()
            } else {
                None
            }
        };
        let (Some(old), Some(new)) = (parse(old), parse(new)) else {
            return Err(bad_input(format!(
                "line {} does not hold two 40-hex-digit object ids",
                n + 1
            )));
        };
        if !refname.starts_with("refs/") && refname != "HEAD" {
            return Err(bad_input(format!(
                "line {} names `{}`, which is not a full ref",
                n + 1,
                crate::sanitize::escape(refname)
            )));
        }
        updates.push(RefUpdate {
            old,
            new,
            refname: refname.to_string(),
        });
    }
    Ok(updates)
}

fn bad_input(message: String) -> Finding {
    Finding::new(Code::BadInput, message, "this input must come from git's pre-receive hook; run `countersign hook pre-receive` only as a hook")
}

/// The policy path for `repo`: `countersign.policy` from its config
/// (relative paths are taken from `$GIT_DIR`), else
/// `$GIT_DIR/countersign.toml`.
pub fn policy_path(repo: &Repository) -> Result<PathBuf, git2::Error> {
    let git_dir = repo.path().to_path_buf();
    let configured = match repo.config()?.get_path(POLICY_CONFIG_KEY) {
        Ok(p) => Some(p),
        Err(e) if e.code() == git2::ErrorCode::NotFound => None,
        Err(e) => return Err(e),
    };
    Ok(match configured {
        Some(p) if p.is_absolute() => p,
        Some(p) => git_dir.join(p),
        None => git_dir.join(DEFAULT_POLICY_FILE),
    })
}

/// Load the policy, turning every failure into a rejecting finding.
pub fn load_policy(path: &Path) -> Result<Policy, Finding> {
    policy::load(path).map_err(|e| match &e {
        PolicyError::Missing(p) => Finding::new(
            Code::PolicyMissing,
            format!("no policy file at `{}`: every push is rejected until one exists", p.display()),
            format!(
                "the admin must create it (see config.example.toml) or set `git config {POLICY_CONFIG_KEY} <path>` in the server repository"
            ),
        ),
        PolicyError::Unreadable(..) => Finding::new(
            Code::PolicyInvalid,
            e.to_string(),
            "the admin must make the policy readable by the user the hook runs as",
        ),
        PolicyError::Invalid { .. } => Finding::new(
            Code::PolicyInvalid,
            format!("{e}:\n{}", e.details().trim_end()),
            "the admin must fix the policy; check it with `countersign policy check`",
        ),
    })
}

/// Open the repository from git's environment (`GIT_DIR`, quarantine).
pub fn open_repo() -> Result<Repository, Finding> {
    Repository::open_from_env().map_err(|e| {
        if e.message().contains("objectformat") {
            Finding::new(
                Code::UnsupportedObjectFormat,
                format!("cannot open the repository: {}", e.message()),
                "countersign verifies SHA-1 repositories only; the push was rejected rather than left unchecked",
            )
        } else {
            verify::internal(&format!("cannot open the repository: {}", e.message()))
        }
    })
}

/// Run the pre-receive check: parse `input`, open the repository, load the
/// policy, decide. Never panics on input; every failure rejects.
pub fn pre_receive(input: &[u8], now: Timestamp) -> Decision {
    let updates = match parse_updates(input) {
        Ok(u) => u,
        Err(f) => return Decision::reject_all(&[], f),
    };
    let repo = match open_repo() {
        Ok(r) => r,
        Err(f) => return Decision::reject_all(&updates, f),
    };
    let path = match policy_path(&repo) {
        Ok(p) => p,
        Err(e) => {
            return Decision::reject_all(
                &updates,
                Finding::new(
                    Code::PolicyInvalid,
                    format!(
                        "cannot read `{POLICY_CONFIG_KEY}` from the repository config: {}",
                        e.message()
                    ),
                    "the admin must fix the repository's git config",
                ),
            )
        }
    };
    let decision = match load_policy(&path) {
        Ok(policy) => Verifier::new(&repo, &policy, now).decide(&updates),
        Err(f) => Decision::reject_all(&updates, f),
    };
    record(&repo, decision, now)
}

/// Append the decision to the repository's audit log. If it cannot be
/// written the push is rejected: a decision that leaves no record would
/// defeat the log's purpose (an unwritable log blocks pushes until an
/// admin fixes it; that is the trade-off, chosen on purpose).
fn record(repo: &Repository, mut decision: Decision, now: Timestamp) -> Decision {
    let path = audit::path_for(repo);
    let verdict = if decision.accepted() {
        "accepted"
    } else {
        "rejected"
    };
    // A huge rejected push must not turn into a huge record: keep the
    // first findings and count the rest.
    let findings: Vec<&Finding> = decision
        .findings
        .iter()
        .take(AUDIT_FINDINGS_LIMIT)
        .collect();
    let fields = serde_json::json!({
        "pusher": audit::pusher(),
        "repository": repo.path().display().to_string(),
        "verdict": verdict,
        "updates": &decision.updates,
        "findings": findings,
        "findings_total": decision.findings.len(),
    });
    if let Err(e) = audit::append(&path, "push", fields, now) {
        decision.findings.push(Finding::new(
            Code::AuditUnwritable,
            format!("the decision could not be recorded: {e}"),
            "the admin must make the audit log writable by the user the hook runs as (and repair it if `countersign audit verify` reports damage)",
        ));
    }
    decision
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "1111111111111111111111111111111111111111";
    const Z: &str = "0000000000000000000000000000000000000000";

    #[test]
    fn parses_updates() {
        let input = format!("{Z} {A} refs/heads/main\n{A} {Z} refs/tags/v1\n");
        let u = parse_updates(input.as_bytes()).unwrap();
        assert_eq!(u.len(), 2);
        assert!(u[0].old.is_zero());
        assert!(u[1].new.is_zero());
        assert_eq!(u[1].refname, "refs/tags/v1");
    }

    #[test]
    fn mutations_never_panic() {
        let input = format!("{Z} {A} refs/heads/main\n{A} {Z} refs/tags/v1\n");
        for v in crate::mutate::mutants(input.as_bytes(), 3000) {
            let _ = parse_updates(&v);
        }
    }

    #[test]
    fn refuses_odd_input() {
        for bad in [
            format!("{Z} {A}\n"),
            format!("{Z} {A} refs/heads/main extra\n"),
            format!("{Z} xyz refs/heads/main\n"),
            format!("{Z} {A} main\n"),
            format!("{Z}  {A} refs/heads/main\n"),
        ] {
            let f = parse_updates(bad.as_bytes()).unwrap_err();
            assert_eq!(f.code, Code::BadInput, "{bad}");
        }
        assert_eq!(parse_updates(b"\xff\xfe").unwrap_err().code, Code::BadInput);
        let sha256 = format!("{Z}{} {A}{} refs/heads/main\n", &Z[..24], &A[..24]);
        assert_eq!(
            parse_updates(sha256.as_bytes()).unwrap_err().code,
            Code::UnsupportedObjectFormat
        );
    }
}
