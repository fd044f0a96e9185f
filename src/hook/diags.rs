//! Every finding the hook itself writes (input, repository, policy,
//! quarantine, audit log), in one place so the wording of each code can be
//! read and reviewed together. The engine's findings are in
//! `engine::diags`.

use crate::audit::AuditError;
use crate::engine;
use crate::finding::{Code, Finding};
use crate::hook::quarantine::ScanError;
use crate::hook::{LocateError, POLICY_CONFIG_KEY};
use crate::policy::limits::Limits;
use crate::policy::PolicyError;

/// Input that is not what git sends a pre-receive hook.
pub(crate) fn bad_input(message: String) -> Finding {
    Finding::new(
        Code::BadInput,
        message,
        "this input must come from git's pre-receive hook; run `countersign hook pre-receive` only as a hook",
    )
}

/// The repository could not be opened from git's environment.
pub(crate) fn repo_unopenable(e: &git2::Error) -> Finding {
    if e.message().contains("objectformat") {
        Finding::new(
            Code::UnsupportedObjectFormat,
            format!("cannot open the repository: {}", e.message()),
            "countersign verifies SHA-1 and SHA-256 repositories; this one's object format could not be read, so the push was rejected rather than left unchecked",
        )
    } else {
        engine::internal(&format!("cannot open the repository: {}", e.message()))
    }
}

impl From<&PolicyError> for Finding {
    fn from(e: &PolicyError) -> Finding {
        match e {
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
        }
    }
}

impl From<&LocateError> for Finding {
    fn from(e: &LocateError) -> Finding {
        Finding::new(Code::PolicyInvalid, e.to_string(), e.help())
    }
}

/// What the quarantine scan found, as a finding.
pub(crate) fn quarantine(e: &ScanError, limits: &Limits) -> Finding {
    match e {
        ScanError::TooBig { id, .. } => {
            let f = Finding::new(
                Code::LimitObjectBytes,
                e.to_string(),
                Limits::raise_help("object-bytes"),
            );
            match id {
                Some(id) => f.at_object(id, None),
                None => f,
            }
        }
        ScanError::TooMuch { .. } => Finding::new(
            Code::LimitCommitBytes,
            e.to_string(),
            Limits::raise_help("commit-bytes"),
        ),
        ScanError::TimedOut(_) => Finding::new(
            Code::LimitTime,
            format!("{e} of {} s; nothing was accepted", limits.seconds),
            Limits::raise_help("seconds"),
        ),
        ScanError::Malformed(..) => Finding::new(
            Code::MalformedObject,
            e.to_string(),
            "push with a git client; the pack was refused rather than left unchecked",
        ),
        ScanError::Io(_) => engine::internal(e),
    }
}

impl From<&AuditError> for Finding {
    fn from(e: &AuditError) -> Finding {
        Finding::new(
            Code::AuditUnwritable,
            format!("the decision could not be recorded: {e}"),
            "the admin must make the audit log writable by the user the hook runs as (and repair it if `countersign audit verify` reports damage)",
        )
    }
}
