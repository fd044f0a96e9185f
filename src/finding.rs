//! Findings: the reasons a push is rejected, each with a stable code.
//!
//! A code is a contract: the same kebab-case string appears on stderr, in
//! JSON output and (later) in the audit log and reports. Never rename one;
//! add a new code instead.

use serde::Serialize;

/// Every reason countersign can reject a ref update.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Code {
    /// No policy file where one was expected.
    PolicyMissing,
    /// The policy file could not be read or did not validate.
    PolicyInvalid,
    /// A commit on a protected ref carries no signature.
    UnsignedCommit,
    /// A signature does not verify over the signed object.
    BadSignature,
    /// A signature could not be parsed, or has an unsupported shape.
    MalformedSignature,
    /// A signature verifies with a key no person in the policy holds.
    UnknownSigner,
    /// The signer's person holds none of the roles the rule asks for.
    SignerLacksRole,
    /// The signer's key or person has expired.
    KeyExpired,
    /// The signer's key, certificate or person has been revoked.
    KeyRevoked,
    /// The signer's key was retired: it may not sign new pushes.
    KeyRetired,
    /// An SSH signature was made for another namespace than `git`.
    SshNamespace,
    /// A protected ref moved to a value that does not descend from the old one.
    ForcePush,
    /// A protected ref was deleted.
    RefDeletion,
    /// A protected tag ref points at something that is not an annotated tag.
    TagNotAnnotated,
    /// A protected annotated tag carries no signature.
    UnsignedTag,
    /// An existing protected tag was moved.
    TagMoved,
    /// A signed tag pushed under a name other than its own.
    TagNameMismatch,
    /// A push to refs/replace/*.
    ReplaceRef,
    /// A ref that must hold a commit points at another kind of object.
    NotACommit,
    /// An object named by the push or its history cannot be read.
    ObjectMissing,
    /// An object could not be parsed.
    MalformedObject,
    /// The rule's baseline commit is not in the repository.
    BaselineMissing,
    /// The repository uses an object format countersign cannot verify.
    UnsupportedObjectFormat,
    /// The hook's input was not what git sends.
    BadInput,
    /// Something failed inside countersign; the push is rejected.
    InternalError,
    /// The decision could not be recorded in the audit log.
    AuditUnwritable,
    /// A commit landed on a ref that only accepts approved merges.
    MergeRequired,
    /// A merge with more than two parents (not supported; rejected).
    OctopusMerge,
    /// A merge whose tree is not the clean merge of its parents, without approvals of that exact result.
    EvilMerge,
    /// An approval of an older tip of the merged topic.
    StaleApproval,
    /// An approval for another repository id.
    ApprovalWrongRepository,
    /// An approval for another target ref.
    ApprovalWrongRef,
    /// An approval of a commit or result that is not what this merge brings.
    ApprovalWrongCommit,
    /// An approval trailer that cannot be parsed.
    MalformedApproval,
    /// The approvals do not meet the rule's role counts with distinct people.
    InsufficientApprovals,
    /// An approver signed a commit in the merged range.
    ApproverIsAuthor,
    /// The merger also approved.
    ApproverIsMerger,
    /// The merger signed a commit in the merged range.
    MergerIsAuthor,
    /// A commit in the merged range has no verified signer, so distinct-people rules cannot be checked.
    UnverifiableAuthor,
}

impl Code {
    /// All codes, for documentation and the uniqueness test.
    pub const ALL: &'static [Code] = &[
        Code::PolicyMissing,
        Code::PolicyInvalid,
        Code::UnsignedCommit,
        Code::BadSignature,
        Code::MalformedSignature,
        Code::UnknownSigner,
        Code::SignerLacksRole,
        Code::KeyExpired,
        Code::KeyRevoked,
        Code::KeyRetired,
        Code::SshNamespace,
        Code::ForcePush,
        Code::RefDeletion,
        Code::TagNotAnnotated,
        Code::UnsignedTag,
        Code::TagMoved,
        Code::TagNameMismatch,
        Code::ReplaceRef,
        Code::NotACommit,
        Code::ObjectMissing,
        Code::MalformedObject,
        Code::BaselineMissing,
        Code::UnsupportedObjectFormat,
        Code::BadInput,
        Code::InternalError,
        Code::AuditUnwritable,
        Code::MergeRequired,
        Code::OctopusMerge,
        Code::EvilMerge,
        Code::StaleApproval,
        Code::ApprovalWrongRepository,
        Code::ApprovalWrongRef,
        Code::ApprovalWrongCommit,
        Code::MalformedApproval,
        Code::InsufficientApprovals,
        Code::ApproverIsAuthor,
        Code::ApproverIsMerger,
        Code::MergerIsAuthor,
        Code::UnverifiableAuthor,
    ];

    /// The stable kebab-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Code::PolicyMissing => "policy-missing",
            Code::PolicyInvalid => "policy-invalid",
            Code::UnsignedCommit => "unsigned-commit",
            Code::BadSignature => "bad-signature",
            Code::MalformedSignature => "malformed-signature",
            Code::UnknownSigner => "unknown-signer",
            Code::SignerLacksRole => "signer-lacks-role",
            Code::KeyExpired => "key-expired",
            Code::KeyRevoked => "key-revoked",
            Code::KeyRetired => "key-retired",
            Code::SshNamespace => "ssh-namespace",
            Code::ForcePush => "force-push",
            Code::RefDeletion => "ref-deletion",
            Code::TagNotAnnotated => "tag-not-annotated",
            Code::UnsignedTag => "unsigned-tag",
            Code::TagMoved => "tag-moved",
            Code::TagNameMismatch => "tag-name-mismatch",
            Code::ReplaceRef => "replace-ref",
            Code::NotACommit => "not-a-commit",
            Code::ObjectMissing => "object-missing",
            Code::MalformedObject => "malformed-object",
            Code::BaselineMissing => "baseline-missing",
            Code::UnsupportedObjectFormat => "unsupported-object-format",
            Code::BadInput => "bad-input",
            Code::InternalError => "internal-error",
            Code::AuditUnwritable => "audit-log-unwritable",
            Code::MergeRequired => "merge-required",
            Code::OctopusMerge => "octopus-merge",
            Code::EvilMerge => "evil-merge",
            Code::StaleApproval => "stale-approval",
            Code::ApprovalWrongRepository => "approval-wrong-repository",
            Code::ApprovalWrongRef => "approval-wrong-ref",
            Code::ApprovalWrongCommit => "approval-wrong-commit",
            Code::MalformedApproval => "malformed-approval",
            Code::InsufficientApprovals => "insufficient-approvals",
            Code::ApproverIsAuthor => "approver-is-author",
            Code::ApproverIsMerger => "approver-is-merger",
            Code::MergerIsAuthor => "merger-is-author",
            Code::UnverifiableAuthor => "unverifiable-author",
        }
    }
}

impl std::fmt::Display for Code {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Code {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// One reason for rejection, with everything the pusher needs to act.
///
/// Text fields may hold attacker-controlled bytes (subjects, ref names);
/// renderers must pass them through [`crate::sanitize`].
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Finding {
    /// Stable code.
    pub code: Code,
    /// The ref being updated, if the finding concerns one.
    #[serde(rename = "ref", skip_serializing_if = "Option::is_none")]
    pub refname: Option<String>,
    /// The object (commit or tag) concerned, full hex id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    /// First line of the commit or tag message.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// The rule that was broken, as shown to people.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    /// What was found.
    pub message: String,
    /// What would fix it.
    pub help: String,
}

impl Finding {
    /// A finding with a code, a message and a remedy; the rest is set by the
    /// builder methods.
    pub fn new(code: Code, message: impl Into<String>, help: impl Into<String>) -> Self {
        Finding {
            code,
            refname: None,
            commit: None,
            subject: None,
            rule: None,
            message: message.into(),
            help: help.into(),
        }
    }

    /// Attach the ref.
    pub fn at_ref(mut self, refname: &str) -> Self {
        self.refname = Some(refname.to_string());
        self
    }

    /// Attach the object and its subject.
    pub fn at_object(mut self, id: impl ToString, subject: Option<String>) -> Self {
        self.commit = Some(id.to_string());
        self.subject = subject;
        self
    }

    /// Attach the rule.
    pub fn under_rule(mut self, rule: impl Into<String>) -> Self {
        self.rule = Some(rule.into());
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn codes_are_unique_and_kebab_case() {
        let mut seen = HashSet::new();
        for code in Code::ALL {
            let s = code.as_str();
            assert!(seen.insert(s), "duplicate code {s}");
            assert!(s.chars().all(|c| c.is_ascii_lowercase() || c == '-'));
        }
        assert_eq!(seen.len(), Code::ALL.len());
    }
}
