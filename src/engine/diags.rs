//! Every finding the engine writes about refs, objects, tags and signers,
//! in one place, so the wording of each code — what failed and what to do —
//! can be read and reviewed together. Landing merges and approvals have
//! theirs in `merge`; the hook's own are in `hook::diags`.

use git2::Oid;

use crate::engine::{short, GIT_NAMESPACE, MAX_TAG_CHAIN};
use crate::finding::{Code, Finding};
use crate::policy::limits::Limits;
use crate::policy::Person;
use crate::signing::approval::REPOSITORY_TRAILER;
use crate::signing::signature::SigError;
use crate::time::{self, Timestamp};

pub(crate) fn too_many_updates(updates: usize, limit: usize) -> Finding {
    Finding::new(
        Code::LimitUpdates,
        format!("this push updates {updates} refs; the limit is {limit} (limit `updates`)"),
        Limits::raise_help("updates"),
    )
}

pub(crate) fn replace_ref() -> Finding {
    Finding::new(
        Code::ReplaceRef,
        "replace refs are refused: git would show the replacement object instead of the verified one",
        "do not push refs/replace/*; change history with signed commits instead",
    )
}

pub(crate) fn ref_deletion(was: Oid) -> Finding {
    Finding::new(
        Code::RefDeletion,
        format!(
            "deleting this ref is not allowed (it was at {})",
            short(was)
        ),
        "protected refs are never deleted; an admin may set `delete = true` on the rule",
    )
}

pub(crate) fn baseline_missing(hex: &str) -> Finding {
    Finding::new(
        Code::BaselineMissing,
        format!("the rule's baseline {hex} is not a commit in this repository"),
        "fix `baseline` in the policy: it must name a commit this repository holds",
    )
}

pub(crate) fn tag_moved(was: Oid) -> Finding {
    Finding::new(
        Code::TagMoved,
        format!(
            "this tag already exists (at {}); protected tags never move",
            short(was)
        ),
        "create a new tag name instead of moving this one",
    )
}

pub(crate) fn not_a_commit(id: Oid, kind: &str) -> Finding {
    Finding::new(
        Code::NotACommit,
        format!("{} is a {kind}, not a commit", short(id)),
        "point the ref at a commit",
    )
}

pub(crate) fn tag_chain_too_deep(id: Oid) -> Finding {
    Finding::new(
        Code::NotACommit,
        format!("{} is a chain of more than {MAX_TAG_CHAIN} tags", short(id)),
        "point the ref at a commit, or at a tag of a commit",
    )
}

pub(crate) fn branch_not_a_commit(id: Oid, kind: &str) -> Finding {
    Finding::new(
        Code::NotACommit,
        format!("a branch must point at a commit; {} is a {kind}", short(id)),
        "push a commit to the branch",
    )
}

pub(crate) fn force_push(new: Oid, old: Oid) -> Finding {
    Finding::new(
        Code::ForcePush,
        format!("{} does not descend from {}: this rewrites the history of a protected ref", short(new), short(old)),
        "fetch, merge or rebase onto the current ref, and push a fast-forward; the rule does not allow force-push",
    )
}

pub(crate) fn object_too_big(kind: &str, id: Oid, size: usize, limit: usize) -> Finding {
    Finding::new(
        Code::LimitObjectBytes,
        format!(
            "{kind} {} is {size} bytes; the limit is {limit} (limit `object-bytes`)",
            short(id)
        ),
        Limits::raise_help("object-bytes"),
    )
}

pub(crate) fn lightweight_tag(kind: &str, roles: &[String]) -> Finding {
    Finding::new(
        Code::TagNotAnnotated,
        format!("the tag points directly at a {kind} (a lightweight tag)"),
        format!("create an annotated, signed tag: `git tag -s <name> -m <message>` with a key of one of: {}", roles.join(", ")),
    )
}

/// Both names as the pusher wrote them, already cut.
pub(crate) fn tag_name_mismatch(inside: &str, expected: &str) -> Finding {
    Finding::new(
        Code::TagNameMismatch,
        format!("the tag object is named `{inside}` but is pushed as `{expected}`"),
        format!("create a tag named `{expected}` (git tag -s {expected}); a signed tag cannot be reused under another name"),
    )
}

pub(crate) fn malformed_tag(e: &dyn std::fmt::Display) -> Finding {
    Finding::new(
        Code::MalformedObject,
        e.to_string(),
        "re-create the tag with git",
    )
}

pub(crate) fn tag_not_bound(want: &str, help: String) -> Finding {
    Finding::new(
        Code::TagNotBound,
        format!("the signed tag does not name the repository it is for (no `{REPOSITORY_TRAILER}: {want}` trailer)"),
        help,
    )
}

/// `named`: the repository ids the tag names, already cut.
pub(crate) fn tag_wrong_repository(named: &[String], want: &str, help: String) -> Finding {
    Finding::new(
        Code::TagWrongRepository,
        format!(
            "the tag names repository `{}`, not `{want}`: it was signed for another repository",
            named.join("`, `")
        ),
        help,
    )
}

pub(crate) fn key_retired(what: &str, person: &str, key: &str, at: Timestamp) -> Finding {
    Finding::new(
        Code::KeyRetired,
        format!(
            "{what} signed by {person} with {key}, which was retired on {}",
            time::format(at)
        ),
        "a retired key may not sign anything new; sign with the person's current key",
    )
}

pub(crate) fn signer_lacks_role(
    what: &str,
    person: &Person,
    key: &str,
    roles: &[String],
) -> Finding {
    let held: Vec<&str> = person.roles.iter().map(String::as_str).collect();
    Finding::new(
        Code::SignerLacksRole,
        format!(
            "{what} signed by {} ({}) with {key}, who holds [{}] but this rule needs one of [{}]",
            person.id,
            person.name,
            held.join(", "),
            roles.join(", ")
        ),
        format!(
            "have it signed by a person holding one of [{}], or ask an admin to grant the role",
            roles.join(", ")
        ),
    )
}

pub(crate) fn object_missing(id: Oid, e: &git2::Error) -> Finding {
    Finding::new(
        Code::ObjectMissing,
        format!("cannot read object {}: {}", short(id), e.message()),
        "push the complete history (a shallow or partial clone cannot push to protected refs)",
    )
}

pub(crate) fn internal(e: &dyn std::fmt::Display) -> Finding {
    Finding::new(
        Code::InternalError,
        format!("internal error: {e}"),
        "the push was rejected because a check could not run; tell the repository admin",
    )
}

/// Why a commit or tag signature does not count: code, message, help.
pub(crate) fn signature_failure(
    e: SigError,
    what: &str,
    policy: &std::path::Path,
) -> (Code, String, String) {
    let policy = policy.display();
    match e {
        SigError::Malformed(m) => (Code::MalformedSignature, m, format!("re-sign the {what} with an SSH or OpenPGP key listed in the policy")),
        SigError::Namespace { .. } => (
            Code::SshNamespace,
            e.to_string(),
            format!("sign with git itself (`git commit -S` with gpg.format=ssh), which uses the `{GIT_NAMESPACE}` namespace; signatures made for other purposes never count"),
        ),
        SigError::UnknownSigner(_) => (
            Code::UnknownSigner,
            e.to_string(),
            format!("sign with a key listed in the policy, or ask an admin to add this key to your entry in `{policy}`"),
        ),
        SigError::Bad { .. } => (
            Code::BadSignature,
            e.to_string(),
            format!("the signature was not made over this exact {what} (copied from another object, or the {what} was altered); re-sign it: `git commit --amend -S --no-edit`"),
        ),
        SigError::Expired(m) => (Code::KeyExpired, m, "sign with a key that is valid now; ask an admin or the key's owner to extend it".to_string()),
        SigError::Revoked(m) => (Code::KeyRevoked, m, "this key may no longer sign; re-sign with a current key".to_string()),
    }
}
