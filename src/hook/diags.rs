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

/// The repository could not be opened from git's environment. libgit2's
/// message names server paths: it is the admin's detail.
pub(crate) fn repo_unopenable(e: &git2::Error) -> Finding {
    let detail = e.message().to_string();
    if e.code() == git2::ErrorCode::Owner {
        // git's (and libgit2's) safe.directory check: the repository is
        // owned by another user than the one running countersign.
        Finding::new(
            Code::InternalError,
            "cannot open the repository: it is owned by another user than the one running countersign, so git's safe.directory check refuses it (run as the repository's owner, or trust it: `git config --global --add safe.directory <repository path>`)",
            "run countersign as the repository's owner (e.g. `sudo -u <owner> countersign ...`), or trust the repository for this user: `git config --global --add safe.directory <repository path>` (the path is in the detail)",
        )
        .with_detail(detail)
    } else if e.message().contains("objectformat") {
        Finding::new(
            Code::UnsupportedObjectFormat,
            "cannot open the repository: its object format cannot be read",
            "countersign verifies SHA-1 and SHA-256 repositories; this one's object format could not be read, so the push was rejected rather than left unchecked",
        )
        .with_detail(detail)
    } else {
        engine::internal(&"cannot open the repository").with_detail(detail)
    }
}

/// Where the admin finds what the pusher is not shown.
const ADMIN_LOOKS: &str =
    "`countersign doctor` in the server repository names the file and the problem";

/// The file name alone: what a pusher may see of a server path.
fn file_name(p: &std::path::Path) -> String {
    p.file_name().map_or_else(
        || "the policy file".into(),
        |n| n.to_string_lossy().into_owned(),
    )
}

impl From<&PolicyError> for Finding {
    /// The pusher is told what is wrong and who fixes it; the server path
    /// (and the OS error) is the admin's detail, in the audit record.
    fn from(e: &PolicyError) -> Finding {
        match e {
            PolicyError::Missing(p) => Finding::new(
                Code::PolicyMissing,
                format!("no policy file `{}` where countersign looks: every push is rejected until one exists", file_name(p)),
                format!(
                    "the admin must create it (`countersign policy init --help`) or set `git config {POLICY_CONFIG_KEY} <path>` in the server repository; {ADMIN_LOOKS}"
                ),
            )
            .with_detail(format!("no policy file at `{}`", p.display())),
            PolicyError::Unreadable(p, io) => Finding::new(
                Code::PolicyInvalid,
                format!("the hook cannot read the policy file `{}`: {io}", file_name(p)),
                format!("the admin must make the policy readable by the user the hook runs as; {ADMIN_LOOKS}"),
            )
            .with_detail(e.to_string()),
            PolicyError::Invalid { path, problems } => {
                let name = file_name(path);
                let shown: String = problems
                    .iter()
                    .map(|p| p.render(std::path::Path::new(&name)))
                    .collect();
                Finding::new(
                    Code::PolicyInvalid,
                    format!(
                        "the policy file `{name}` has {} problem(s):\n{}",
                        problems.len(),
                        shown.trim_end()
                    ),
                    "the admin must fix the policy; check it with `countersign policy check`",
                )
                .with_detail(format!("policy file `{}`", path.display()))
            }
        }
    }
}

impl From<&LocateError> for Finding {
    fn from(e: &LocateError) -> Finding {
        match e {
            // git's message may name the config file.
            LocateError::Config(_) => Finding::new(
                Code::PolicyInvalid,
                format!("cannot read `{POLICY_CONFIG_KEY}` from the repository config"),
                format!("the admin must fix the server repository's git config; {ADMIN_LOOKS}"),
            )
            .with_detail(e.to_string()),
            LocateError::NoRepository => Finding::new(Code::PolicyInvalid, e.to_string(), e.help()),
        }
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
    /// The log's path is the admin's detail (it cannot be recorded in the
    /// log it is about: `countersign doctor` shows it).
    fn from(e: &AuditError) -> Finding {
        let why = match e {
            // An OS error's text names no path (the path is the detail).
            AuditError::Io(_, io) => io.to_string(),
            AuditError::Damaged(_, m) => format!("the log is damaged: {m}"),
            other => other.to_string(),
        };
        Finding::new(
            Code::AuditUnwritable,
            format!("the decision could not be recorded in the audit log: {why}"),
            format!("the admin must make the audit log writable by the user the hook runs as, and repair it if `countersign audit verify` reports damage; {ADMIN_LOOKS}"),
        )
        .with_detail(e.to_string())
    }
}
