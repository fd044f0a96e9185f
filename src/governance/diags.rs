//! Every finding the policy-ref machinery writes, in one place.

use git2::Oid;

use crate::engine::short;
use crate::finding::{Code, Finding};
use crate::governance::{label, POLICY_REF, ROOT_CONFIG_KEY};
use crate::policy::PolicyError;

const BREAK_GLASS: &str = "the host operator must put the policy ref back to its last authorized commit; if the history is genuine (e.g. restored from a backup), review it with `countersign policy log` and re-verify it with `countersign policy pin <root>`; else re-pin a reviewed policy (`countersign policy migrate --repin`; README, Break glass)";

pub(crate) fn bad_root(value: &str) -> Finding {
    Finding::new(
        Code::PolicyInvalid,
        format!(
            "git config `{ROOT_CONFIG_KEY}` is `{}`, not a full commit id",
            crate::sanitize::escape(&crate::policy::limits::truncate(value, 100))
        ),
        "the host operator must set it to the policy ref's root commit (`countersign policy pin`)",
    )
}

pub(crate) fn unreadable(commit: Oid, why: &str) -> Finding {
    Finding::new(
        Code::ObjectMissing,
        format!("policy commit {} cannot be read: {why}", short(commit)),
        BREAK_GLASS,
    )
    .at_object(commit, None)
}

pub(crate) fn no_policy_file(commit: Oid, why: &str) -> Finding {
    Finding::new(
        Code::PolicyInvalid,
        format!("{}: {why}", label(commit)),
        "a policy commit's tree must hold `countersign.toml` (and the certificate files it names)",
    )
    .at_object(commit, None)
}

pub(crate) fn not_utf8(commit: Oid) -> Finding {
    Finding::new(
        Code::PolicyInvalid,
        format!("{} is not valid UTF-8", label(commit)),
        "write the policy as UTF-8 text",
    )
    .at_object(commit, None)
}

pub(crate) fn invalid(e: &PolicyError) -> Finding {
    Finding::new(
        Code::PolicyInvalid,
        format!("{e}:\n{}", e.details().trim_end()),
        "fix the policy; check it with `countersign policy check`",
    )
}

pub(crate) fn ref_missing(root: Oid) -> Finding {
    Finding::new(
        Code::PolicyMissing,
        format!(
            "the trust root {} is pinned but `{POLICY_REF}` does not exist: every push is rejected until it does",
            short(root)
        ),
        BREAK_GLASS,
    )
}

pub(crate) fn chain_broken(root: Oid, tip: Oid, why: &str) -> Finding {
    Finding::new(
        Code::PolicyRefBroken,
        format!(
            "`{POLICY_REF}` at {} does not lead back to the trust root {} through authorized changes: {why}; every push is rejected",
            short(tip),
            short(root)
        ),
        BREAK_GLASS,
    )
}

pub(crate) fn no_changes_table(parent: Oid) -> Finding {
    Finding::new(
        Code::PolicyInvalid,
        format!(
            "the policy in force ({}) has no `[policy-changes]` table, so nobody may change it",
            label(parent)
        ),
        BREAK_GLASS,
    )
}

pub(crate) fn change_invalid(commit: Oid, f: Finding) -> Finding {
    Finding::new(
        Code::PolicyChangeInvalid,
        format!("the policy this commit introduces does not validate: {}", f.message),
        "fix the proposal and have it approved again; check it with `countersign policy check --commit <id>`",
    )
    .at_object(commit, None)
    .at_ref(POLICY_REF)
}

pub(crate) fn quorum_lost(commit: Oid, why: &str) -> Finding {
    Finding::new(
        Code::PolicyQuorumLost,
        format!("the policy this commit introduces is refused: {why}"),
        "keep enough people with usable keys in the roles [policy-changes] names, or lower its counts in the same change",
    )
    .at_object(commit, None)
    .at_ref(POLICY_REF)
}

pub(crate) fn reserved(refname: &str, why: &str) -> Finding {
    Finding::new(
        Code::ReservedRef,
        format!(
            "`{}` {why}",
            crate::sanitize::escape(&crate::policy::limits::truncate(refname, 200))
        ),
        "push proposals to refs/countersign/proposals/<name>, and policy changes to refs/meta/countersign",
    )
    .at_ref(refname)
}

pub(crate) fn deletion(was: Oid) -> Finding {
    Finding::new(
        Code::RefDeletion,
        format!("the policy ref is never deleted (it is at {})", short(was)),
        "change the policy with an approved commit instead",
    )
    .at_ref(POLICY_REF)
}

pub(crate) fn not_fast_forward(new: Oid, tip: Oid) -> Finding {
    Finding::new(
        Code::ForcePush,
        format!(
            "{} does not descend from the policy in force ({}): the policy ref only fast-forwards, so an older policy cannot be replayed",
            short(new),
            short(tip)
        ),
        "fetch refs/meta/countersign and build the change on its tip (a revert is a new, approved commit)",
    )
    .at_ref(POLICY_REF)
}

pub(crate) fn not_linear(new: Oid, why: &str) -> Finding {
    Finding::new(
        Code::PolicyRefNotLinear,
        format!(
            "the policy history pushed at {} is not a plain chain: {why}",
            short(new)
        ),
        "build each policy change as one single-parent commit on the current tip",
    )
    .at_ref(POLICY_REF)
}

pub(crate) fn too_many(new: Oid, max: usize) -> Finding {
    Finding::new(
        Code::LimitCommits,
        format!(
            "the push brings more than {max} policy commits up to {}; each is judged by its parent's policy",
            short(new)
        ),
        "push the policy changes in smaller steps (at most 100 commits per push, and at most `commits` of [limits])",
    )
    .at_ref(POLICY_REF)
}

pub(crate) fn not_direct(commit: Oid) -> Finding {
    Finding::new(
        Code::PolicyChangeNotDirect,
        "a policy commit cannot be a squash (`Countersign-Squash:`): approvals of a topic do not bind the policy it lands on".to_string(),
        "land the change as one commit on the current policy, approved as an exact result (`countersign approve <proposal> --ref refs/meta/countersign --result`, then `countersign policy apply`)",
    )
    .at_object(commit, None)
    .at_ref(POLICY_REF)
}

pub(crate) fn stray_files(commit: Oid, why: &str) -> Finding {
    Finding::new(
        Code::PolicyChangeInvalid,
        format!("the policy tree is refused: {why}"),
        "a policy commit holds only countersign.toml and the certificate files it names (policy trees are written out to admins' disks)",
    )
    .at_object(commit, None)
    .at_ref(POLICY_REF)
}
