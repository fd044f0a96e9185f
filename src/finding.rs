//! Findings: the reasons a push is rejected, each with a stable code.
//!
//! A code is a contract: the same kebab-case string appears on stderr, in
//! JSON output and (later) in the audit log and reports. Never rename one;
//! add a new code instead.

use serde::Serialize;

/// Writes every code once: the enum, [`Code::ALL`], the kebab-case string
/// and a one-line description (the doc comment) all come from one list.
macro_rules! codes {
    ($( #[doc = $doc:literal] $variant:ident => $name:literal, )*) => {
        /// Every reason countersign can reject a ref update.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Code {
            $( #[doc = $doc] $variant, )*
        }

        impl Code {
            /// All codes, for documentation and the uniqueness test.
            pub const ALL: &'static [Code] = &[$(Code::$variant,)*];

            /// The stable kebab-case name.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Code::$variant => $name,)*
                }
            }

            /// One line saying what the code means (its doc comment).
            pub fn description(self) -> &'static str {
                match self {
                    $(Code::$variant => $doc.trim(),)*
                }
            }
        }
    };
}

codes! {
    /// No policy file where one was expected.
    PolicyMissing => "policy-missing",
    /// The policy file could not be read or did not validate.
    PolicyInvalid => "policy-invalid",
    /// A commit on a protected ref carries no signature.
    UnsignedCommit => "unsigned-commit",
    /// A signature does not verify over the signed object.
    BadSignature => "bad-signature",
    /// A signature could not be parsed, or has an unsupported shape.
    MalformedSignature => "malformed-signature",
    /// A signature verifies with a key no person in the policy holds.
    UnknownSigner => "unknown-signer",
    /// The signer's person holds none of the roles the rule asks for.
    SignerLacksRole => "signer-lacks-role",
    /// The signer's key or person has expired.
    KeyExpired => "key-expired",
    /// The signer's key, certificate or person has been revoked.
    KeyRevoked => "key-revoked",
    /// The signer's key was retired: it may not sign new pushes.
    KeyRetired => "key-retired",
    /// An SSH signature was made for another namespace than `git`.
    SshNamespace => "ssh-namespace",
    /// A protected ref moved to a value that does not descend from the old one.
    ForcePush => "force-push",
    /// A protected ref was deleted.
    RefDeletion => "ref-deletion",
    /// A protected tag ref points at something that is not an annotated tag.
    TagNotAnnotated => "tag-not-annotated",
    /// A protected annotated tag carries no signature.
    UnsignedTag => "unsigned-tag",
    /// An existing protected tag was moved.
    TagMoved => "tag-moved",
    /// A signed tag pushed under a name other than its own.
    TagNameMismatch => "tag-name-mismatch",
    /// A push to refs/replace/*.
    ReplaceRef => "replace-ref",
    /// The repository gives commits other parents than they name (grafts, a shallow server).
    ParentsRewritten => "parents-rewritten",
    /// A ref that must hold a commit points at another kind of object.
    NotACommit => "not-a-commit",
    /// An object named by the push or its history cannot be read.
    ObjectMissing => "object-missing",
    /// An object could not be parsed.
    MalformedObject => "malformed-object",
    /// The rule's baseline commit is not in the repository.
    BaselineMissing => "baseline-missing",
    /// The repository uses an object format countersign cannot verify.
    UnsupportedObjectFormat => "unsupported-object-format",
    /// The hook's input was not what git sends.
    BadInput => "bad-input",
    /// Something failed inside countersign; the push is rejected.
    InternalError => "internal-error",
    /// The decision could not be recorded in the audit log.
    AuditUnwritable => "audit-log-unwritable",
    /// A commit landed on a ref that only accepts approved merges.
    MergeRequired => "merge-required",
    /// A merge with more than two parents (not supported; rejected).
    OctopusMerge => "octopus-merge",
    /// A merge whose tree is not the clean merge of its parents, without approvals of that exact result.
    EvilMerge => "evil-merge",
    /// An approval of an older tip of the merged topic.
    StaleApproval => "stale-approval",
    /// An approval for another repository id.
    ApprovalWrongRepository => "approval-wrong-repository",
    /// An approval for another target ref.
    ApprovalWrongRef => "approval-wrong-ref",
    /// An approval of a commit or result that is not what this merge brings.
    ApprovalWrongCommit => "approval-wrong-commit",
    /// An approval trailer that cannot be parsed.
    MalformedApproval => "malformed-approval",
    /// The approvals do not meet the rule's role counts with distinct people.
    InsufficientApprovals => "insufficient-approvals",
    /// An approver signed a commit in the merged range.
    ApproverIsAuthor => "approver-is-author",
    /// The merger also approved.
    ApproverIsMerger => "approver-is-merger",
    /// The merger signed a commit in the merged range.
    MergerIsAuthor => "merger-is-author",
    /// A commit in the merged range has no verified signer, so distinct-people rules cannot be checked.
    UnverifiableAuthor => "unverifiable-author",
    /// A push updates more refs than the policy's `limits.updates` allows.
    LimitUpdates => "limit-updates",
    /// A push makes the hook examine more commits than `limits.commits` allows.
    LimitCommits => "limit-commits",
    /// A push lands more changes on protected refs than `limits.merges` allows.
    LimitMerges => "limit-merges",
    /// A commit or tag object is larger than `limits.object-bytes`.
    LimitObjectBytes => "limit-object-bytes",
    /// A push brings more bytes of commits and tags than `limits.commit-bytes`.
    LimitCommitBytes => "limit-commit-bytes",
    /// A signature is larger than `limits.signature-bytes`.
    LimitSignatureBytes => "limit-signature-bytes",
    /// A commit carries more approval trailers than `limits.trailers`.
    LimitTrailers => "limit-trailers",
    /// The hook ran out of its wall-clock budget, `limits.seconds`.
    LimitTime => "limit-time",
    /// The parents of a landing merge have more than one merge base (criss-cross history); only approvals of the exact result count.
    MultipleMergeBases => "multiple-merge-bases",
    /// A `Countersign-Squash:` trailer that is malformed, repeated or names something that is not a commit.
    MalformedSquash => "malformed-squash",
    /// A signed tag whose message does not name this repository (`Countersign-Repository:`).
    TagNotBound => "tag-not-bound",
    /// A signed tag made for another repository.
    TagWrongRepository => "tag-wrong-repository",
    /// The policy ref does not lead back to the pinned trust root through authorized changes.
    PolicyRefBroken => "policy-ref-broken",
    /// A change of the policy ref introduces a policy that does not validate.
    PolicyChangeInvalid => "policy-change-invalid",
    /// A change of the policy ref leaves too few people to approve the next change.
    PolicyQuorumLost => "policy-quorum-lost",
    /// A policy commit with other than one parent.
    PolicyRefNotLinear => "policy-ref-not-linear",
    /// A push to refs/countersign/* (other than proposals), or to a name aliasing the policy ref.
    ReservedRef => "reserved-ref",
    /// A policy commit that is not a direct commit approved as an exact result (e.g. a squash).
    PolicyChangeNotDirect => "policy-change-not-direct",
    /// A protected ref was moved outside the hook (seen against the ref-state log) and no admin has acknowledged it yet.
    RefMovedOutOfBand => "ref-moved-out-of-band",
    /// The ref-state log (refs/countersign/log) or the server's log key is missing, damaged, rewritten or cannot be written.
    RefLogBroken => "ref-log-broken",
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
    /// Server-side detail for the admin (file paths, OS errors): kept in
    /// the audit record and shown by the commands an admin runs, never
    /// sent to the pusher (`report::Mode::Push` leaves it out).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
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
            detail: None,
        }
    }

    /// The message with the server-side detail, for the commands an admin
    /// runs (never for the pusher).
    pub fn admin_message(&self) -> String {
        match &self.detail {
            Some(d) => format!("{}\n  detail: {d}", self.message),
            None => self.message.clone(),
        }
    }

    /// Attach server-side detail that only the admin sees.
    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
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

    /// The README's code table lists exactly the codes that exist, in order.
    #[test]
    fn readme_lists_every_code() {
        let readme = include_str!("../README.md");
        let start = readme
            .find("| code | meaning |")
            .expect("README has a code table");
        let listed: Vec<&str> = readme[start..]
            .lines()
            .skip(2)
            .take_while(|l| l.starts_with("| `"))
            .filter_map(|l| l.split('`').nth(1))
            .collect();
        let codes: Vec<&str> = Code::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(listed, codes);
        for c in Code::ALL {
            assert!(!c.description().is_empty(), "{c}");
        }
    }
}
