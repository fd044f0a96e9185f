//! Every finding the engine writes — about refs, objects, tags and
//! signers, then about landing changes and approvals — in one place, so the
//! wording of each code (what failed, and what to do) can be read and
//! reviewed together. The hook's own are in `hook::diags`.

use git2::Oid;

use crate::engine::{short, GIT_NAMESPACE, MAX_TAG_CHAIN};
use crate::finding::{Code, Finding};
use crate::policy::limits::Limits;
use crate::policy::Person;
use crate::signing::approval::{REPOSITORY_TRAILER, SQUASH_TRAILER, TRAILER};
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

pub(crate) fn parents_rewritten(what: &str, path: &std::path::Path) -> Finding {
    Finding::new(
        Code::ParentsRewritten,
        format!(
            "this repository has {what} ({}): git and libgit2 give some commits other parents than the commits name, so a history walk could pass over commits that were never checked",
            path.display()
        ),
        "ask the repository admin to remove it (a protected repository must hold the whole history: `git fetch --unshallow` into a shallow one); nothing is accepted on protected refs until then",
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
    // The file name only: the pusher sees this help, and the server's
    // paths are not theirs to see.
    let policy = policy
        .file_name()
        .map_or_else(|| "the policy".into(), |n| n.to_string_lossy().into_owned());
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

// ---------------------------------------------------------------------------
// Landing changes (merges, squashes, direct commits) and approvals
// ---------------------------------------------------------------------------

const SQUASH_HELP: &str = "write exactly one trailer `Countersign-Squash: <full id of the squashed topic's tip>` (`countersign merge --squash` does)";

pub(crate) fn squash_topic_missing(id: Oid) -> Finding {
    Finding::new(
        Code::ObjectMissing,
        format!("the squashed topic {} is not in the repository", short(id)),
        "push the topic branch too (in the same push or before), so its commits and signers can be checked",
    )
}

pub(crate) fn squash_not_a_commit(id: Oid, e: &git2::Error) -> Finding {
    Finding::new(
        Code::MalformedSquash,
        format!(
            "`{SQUASH_TRAILER}` names {}, which is not a commit: {}",
            short(id),
            e.message()
        ),
        SQUASH_HELP,
    )
}

/// `value` as the pusher wrote it, already cut.
pub(crate) fn squash_bad_id(value: &str) -> Finding {
    Finding::new(
        Code::MalformedSquash,
        format!("`{SQUASH_TRAILER}: {value}` is not a full object id of this repository"),
        SQUASH_HELP,
    )
}

pub(crate) fn squash_many(n: usize) -> Finding {
    Finding::new(
        Code::MalformedSquash,
        format!("the commit names {n} squashed topics; a squash lands exactly one"),
        SQUASH_HELP,
    )
}

pub(crate) fn squash_on_merge() -> Finding {
    Finding::new(
        Code::MalformedSquash,
        format!("a merge commit cannot carry `{SQUASH_TRAILER}`: it already names its topic as its second parent"),
        "remove the trailer from the merge message",
    )
}

pub(crate) fn octopus(parents: usize) -> Finding {
    Finding::new(
        Code::OctopusMerge,
        format!("merge with {parents} parents: countersign accepts one topic per merge"),
        "merge each topic on its own, with its own approvals",
    )
}

pub(crate) fn root_commit_landing() -> Finding {
    Finding::new(
        Code::MergeRequired,
        "a root commit cannot land on a ref that only accepts approved merges",
        "set `baseline` on the rule to grandfather existing history",
    )
}

pub(crate) fn too_many_trailers(n: usize, limit: usize) -> Finding {
    Finding::new(
        Code::LimitTrailers,
        format!(
            "the commit carries {n} `{TRAILER}:` trailers; the limit is {limit} (limit `trailers`)"
        ),
        Limits::raise_help("trailers"),
    )
}

pub(crate) fn unverifiable_authors(commits: &[Oid]) -> Finding {
    let list: Vec<String> = commits.iter().take(20).map(|o| short(*o)).collect();
    let more = commits.len().saturating_sub(list.len());
    Finding::new(
        Code::UnverifiableAuthor,
        format!(
            "commits in the merged range have no verified signer, so the distinct-people rules cannot be checked: {}{}",
            list.join(", "),
            if more > 0 { format!(" and {more} more") } else { String::new() }
        ),
        "sign every commit of the topic with a key listed in the policy",
    )
}

pub(crate) fn direct_commit_by_merger(person: &str) -> Finding {
    Finding::new(
        Code::MergerIsAuthor,
        format!("{person} signed a commit that lands directly on the ref, so they are its author and may not also land it"),
        "land it as a merge of a topic branch (`countersign merge`), or as a squash that names its topic (`countersign merge --squash`)",
    )
}

pub(crate) fn merger_is_author(person: &str) -> Finding {
    Finding::new(
        Code::MergerIsAuthor,
        format!("{person} merged a change that includes their own commits"),
        "have someone who did not write the change merge it",
    )
}

pub(crate) fn approver_is_author(index: usize, person: &str) -> Finding {
    Finding::new(
        Code::ApproverIsAuthor,
        format!("approval #{index}: {person} approved a change that includes their own commits"),
        "have the change approved by people who did not write it",
    )
}

pub(crate) fn approver_is_merger(index: usize, person: &str) -> Finding {
    Finding::new(
        Code::ApproverIsMerger,
        format!("approval #{index}: {person} both approved and merged this change"),
        "have someone else merge it, or someone else approve it",
    )
}

/// `why` is already cut.
pub(crate) fn malformed_approval(index: usize, why: &str) -> Finding {
    Finding::new(
        Code::MalformedApproval,
        format!("approval #{index} cannot be parsed: {why}"),
        "copy the trailer exactly as `countersign approve` printed it",
    )
}

pub(crate) fn approval_signature_too_big(index: usize, size: usize, limit: usize) -> Finding {
    Finding::new(
        Code::LimitSignatureBytes,
        format!("approval #{index}'s signature is {size} bytes; the limit is {limit} (limit `signature-bytes`)"),
        Limits::raise_help("signature-bytes"),
    )
}

/// `named` is already cut.
pub(crate) fn approval_wrong_repository(
    index: usize,
    person: &str,
    named: &str,
    ours: &str,
) -> Finding {
    Finding::new(
        Code::ApprovalWrongRepository,
        format!("approval #{index} by {person} is for repository `{named}`, not `{ours}`"),
        "approvals are bound to one repository; approve this change here",
    )
}

/// `named` is already cut.
pub(crate) fn approval_wrong_ref(
    index: usize,
    person: &str,
    named: &str,
    names: &[String],
) -> Finding {
    Finding::new(
        Code::ApprovalWrongRef,
        format!(
            "approval #{index} by {person} is for `{named}`, not `{}`",
            names.join("` / `")
        ),
        "approvals are bound to one target ref; approve the change for this ref",
    )
}

pub(crate) fn topic_approval_without_topic(index: usize, person: &str) -> Finding {
    Finding::new(
        Code::ApprovalWrongCommit,
        format!("approval #{index} by {person} approves a topic, but this commit is neither a merge nor a squash naming its topic"),
        "land changes as merges (or squashes with `countersign merge --squash`), or approve the exact result with `countersign approve --result`",
    )
}

pub(crate) fn stale_approval(index: usize, person: &str, approved: Oid, topic: Oid) -> Finding {
    Finding::new(
        Code::StaleApproval,
        format!("approval #{index} by {person} is stale: it approved {}, an older tip of the topic; the change brings {}", short(approved), short(topic)),
        "the topic changed after it was approved; ask for a new approval of the current tip",
    )
}

pub(crate) fn approval_of_another_topic(
    index: usize,
    person: &str,
    approved: Oid,
    topic: Oid,
) -> Finding {
    Finding::new(
        Code::ApprovalWrongCommit,
        format!(
            "approval #{index} by {person} approved {}, which is not the landed topic {}",
            short(approved),
            short(topic)
        ),
        "an approval counts only for the exact topic tip it names",
    )
}

pub(crate) fn approval_wrong_tree(index: usize, person: &str, approved: Oid, real: Oid) -> Finding {
    Finding::new(
        Code::ApprovalWrongCommit,
        format!(
            "approval #{index} by {person} names tree {}, but the topic's tree is {}",
            short(approved),
            short(real)
        ),
        "re-create the approval with `countersign approve`",
    )
}

pub(crate) fn approval_wrong_result(
    index: usize,
    person: &str,
    approved_parents: &[Oid],
    approved_tree: Oid,
    parents: &[Oid],
    tree: Oid,
) -> Finding {
    let list = |ids: &[Oid]| ids.iter().map(|o| short(*o)).collect::<Vec<_>>().join(", ");
    Finding::new(
        Code::ApprovalWrongCommit,
        format!(
            "approval #{index} by {person} approved the result tree {} with parents {}, which is not this commit's (tree {}, parents {})",
            short(approved_tree),
            list(approved_parents),
            short(tree),
            list(parents)
        ),
        "a result approval counts only for the exact parents and tree it names",
    )
}

/// Why an approval's signature does not count; `by` is the trailer's
/// (untrusted, already cut) claim.
pub(crate) fn approval_signature(index: usize, by: &str, e: SigError) -> Finding {
    let by = crate::sanitize::escape(by);
    let (code, help) = match &e {
        SigError::Malformed(_) => (Code::MalformedApproval, "copy the trailer exactly as `countersign approve` printed it"),
        SigError::Namespace { .. } => (Code::SshNamespace, "approvals must be made with `countersign approve` (SSH namespace `countersign-approval`)"),
        SigError::UnknownSigner(_) => (Code::UnknownSigner, "only keys listed in the policy can approve"),
        SigError::Bad { .. } => (Code::BadSignature, "the approval's signature does not cover what the trailer says; re-create it with `countersign approve`"),
        SigError::Expired(_) => (Code::KeyExpired, "approve with a key that is valid now"),
        SigError::Revoked(_) => (Code::KeyRevoked, "approve with a key that is not revoked"),
    };
    Finding::new(
        code,
        format!("approval #{index} (claims to be by {by}): {e}"),
        help,
    )
}

pub(crate) fn squash_of_landed_topic(id: Oid) -> Finding {
    Finding::new(
        Code::MalformedSquash,
        format!("the squash names {}, which is already in the target's history: a squash must bring a topic that has not landed", short(id)),
        "name the tip of the topic being squashed (`countersign merge --squash <topic>` does)",
    )
}

pub(crate) fn merger_wrote_the_result(person: &str) -> Finding {
    Finding::new(
        Code::MergerIsAuthor,
        format!("the tree {person} signed is not the clean merge of the topic, so {person} wrote the difference and may not also land it"),
        "land the clean merge: resolve conflicts or make further changes on the topic branch, as commits the approvals cover",
    )
}
