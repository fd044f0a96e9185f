//! Separation of duties for changes landing on a protected ref.
//!
//! For a rule with `[rule.merge]`, every commit newly on the ref's
//! first-parent chain must be a two-parent merge signed by a merge signer,
//! carrying approval trailers that verify, name this repository, this ref
//! and exactly the merged topic tip, from enough *distinct people* in the
//! right roles, none of whom wrote the change or merged it (as the rule
//! says). A merge whose tree is not the clean automatic merge of its
//! parents is an evil merge unless approvals bind that exact result
//! (`kind=result`). Octopus merges are rejected: one topic per merge keeps
//! "what was approved" unambiguous.

use std::collections::{BTreeMap, BTreeSet};

use git2::{ObjectType, Oid};
use serde::Serialize;

use crate::approval::{self, Approval, Binding};
use crate::finding::{Code, Finding};
use crate::policy::{ApprovalRequirement, MergeRule};
use crate::signature::{self, SigError};
use crate::verify::{internal, missing, short, RefUpdate, UpdateOutcome, Verifier};

/// What the hook concluded about one change landing on the ref.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct MergeRecord {
    /// The landing commit (merge or approved single commit).
    pub commit: String,
    /// Person who signed it, if verified.
    pub merger: Option<String>,
    /// Persons who signed commits in the merged range.
    pub authors: Vec<String>,
    /// Every approval trailer and what became of it.
    pub approvals: Vec<ApprovalRecord>,
    /// Whether the tree is the clean merge of the parents.
    pub clean: bool,
}

/// One approval trailer, judged.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ApprovalRecord {
    /// 1-based position among the approval trailers.
    pub index: usize,
    /// The trailer's `by=` claim (not trusted).
    pub claimed_by: String,
    /// The person whose key signed it, if it verified.
    pub person: Option<String>,
    /// The role slot it filled, if it counted.
    pub counted_as: Option<String>,
    /// Why it counts or does not.
    pub status: String,
    /// It verified, binds this change, and its person may approve it.
    pub eligible: bool,
    /// When the approver says they signed (`at=`), once parsed.
    pub issued_at: Option<i64>,
}

impl<'a> Verifier<'a> {
    /// Check every commit newly on the first-parent chain of `u.new`.
    pub(crate) fn check_merges(
        &mut self,
        u: &RefUpdate,
        rule: &MergeRule,
        baseline: Option<Oid>,
        outcome: &mut UpdateOutcome,
        found: &mut Vec<Finding>,
    ) {
        let new = match self.peel_commit(u.new) {
            Ok(n) => n,
            Err(f) => return found.push(f),
        };
        let mut hide = Vec::new();
        if !u.old.is_zero() {
            match self.peel_commit(u.old) {
                Ok(o) => hide.push(o),
                Err(f) => return found.push(f),
            }
        }
        hide.extend(baseline);
        let landing = match self.first_parent_chain(new, &hide) {
            Ok(l) => l,
            Err(f) => return found.push(f),
        };
        for id in landing {
            self.check_landing(u, id, rule, outcome, found);
        }
    }

    /// Commits on the first-parent chain from `tip`, stopping at anything
    /// reachable from `hide`.
    fn first_parent_chain(&self, tip: Oid, hide: &[Oid]) -> Result<Vec<Oid>, Finding> {
        let mut walk = self.repo.revwalk().map_err(|e| internal(&e))?;
        walk.simplify_first_parent().map_err(|e| internal(&e))?;
        walk.push(tip).map_err(|e| missing(tip, &e))?;
        for h in hide {
            walk.hide(*h).map_err(|e| missing(*h, &e))?;
        }
        walk.map(|r| r.map_err(|e| missing(tip, &e))).collect()
    }

    /// Persons who signed the commits reachable from `topic` but not from
    /// `base`, and the commits whose signer could not be established.
    fn authors(&mut self, base: Oid, topic: Oid) -> Result<(BTreeSet<String>, Vec<Oid>), Finding> {
        let mut walk = self.repo.revwalk().map_err(|e| internal(&e))?;
        walk.push(topic).map_err(|e| missing(topic, &e))?;
        walk.hide(base).map_err(|e| missing(base, &e))?;
        let mut persons = BTreeSet::new();
        let mut unknown = Vec::new();
        for id in walk {
            let id = id.map_err(|e| missing(topic, &e))?;
            let checked = self.check_object(id, ObjectType::Commit);
            match checked.result.ok().and_then(|k| self.signer_of(k).ok()) {
                Some((_, person)) => {
                    persons.insert(person.id.clone());
                }
                None => unknown.push(id),
            }
        }
        Ok((persons, unknown))
    }

    /// The tree of the clean automatic merge of `ours` and `theirs`, or
    /// `None` when it conflicts.
    fn clean_merge_tree(&self, ours: Oid, theirs: Oid) -> Result<Option<Oid>, Finding> {
        let a = self.repo.find_commit(ours).map_err(|e| missing(ours, &e))?;
        let b = self
            .repo
            .find_commit(theirs)
            .map_err(|e| missing(theirs, &e))?;
        let mut index = self
            .repo
            .merge_commits(&a, &b, None)
            .map_err(|e| internal(&e))?;
        if index.has_conflicts() {
            return Ok(None);
        }
        index
            .write_tree_to(self.repo)
            .map(Some)
            .map_err(|e| internal(&e))
    }

    fn check_landing(
        &mut self,
        u: &RefUpdate,
        id: Oid,
        rule: &MergeRule,
        outcome: &mut UpdateOutcome,
        found: &mut Vec<Finding>,
    ) {
        let commit = match self.repo.find_commit(id) {
            Ok(c) => c,
            Err(e) => return found.push(missing(id, &e)),
        };
        let subject = self.subject_of(id);
        let at = |f: Finding| f.at_object(id, subject.clone());
        let parents: Vec<Oid> = commit.parent_ids().collect();
        let tree = commit.tree_id();
        let message = commit.message_raw_bytes().to_vec();
        drop(commit);
        if parents.len() > 2 {
            return found.push(at(Finding::new(
                Code::OctopusMerge,
                format!(
                    "merge with {} parents: countersign accepts one topic per merge",
                    parents.len()
                ),
                "merge each topic on its own, with its own approvals",
            )));
        }
        if parents.len() == 1 && !rule.required {
            // Direct commits are allowed; `commit-signers` still applies.
            return;
        }
        if parents.is_empty() {
            return found.push(at(Finding::new(
                Code::MergeRequired,
                "a root commit cannot land on a ref that only accepts approved merges",
                "set `baseline` on the rule to grandfather existing history",
            )));
        }

        // The merger.
        let checked = self.check_object(id, ObjectType::Commit);
        let merger = self
            .authorize(
                id,
                &checked,
                &rule.signers,
                if parents.len() == 2 {
                    "merge commit"
                } else {
                    "commit landing on the ref"
                },
                outcome,
                found,
            )
            .map(|s| s.person);

        // What the change brings and who wrote it.
        let (clean_tree, authors, unverified) = if parents.len() == 2 {
            let clean = match self.clean_merge_tree(parents[0], parents[1]) {
                Ok(c) => c,
                Err(f) => return found.push(at(f)),
            };
            let (authors, unknown) = match self.authors(parents[0], parents[1]) {
                Ok(x) => x,
                Err(f) => return found.push(at(f)),
            };
            (clean, authors, unknown)
        } else {
            // A single commit (e.g. a squash merge): its signer is its author.
            (None, merger.iter().cloned().collect(), Vec::new())
        };
        let clean = clean_tree == Some(tree);
        if (rule.approvers_distinct_from_authors || rule.merger_distinct_from_authors)
            && !unverified.is_empty()
        {
            let list: Vec<String> = unverified.iter().map(|o| short(*o)).collect();
            found.push(at(Finding::new(
                Code::UnverifiableAuthor,
                format!("commits in the merged range have no verified signer, so the distinct-people rules cannot be checked: {}", list.join(", ")),
                "sign every commit of the topic with a key listed in the policy",
            )));
        }

        // Judge every approval trailer.
        let names = self.names_for(&u.refname);
        let mut records = Vec::new();
        let mut eligible: BTreeMap<String, usize> = BTreeMap::new(); // person -> record index
        for (i, value) in approval::trailers(&message).into_iter().enumerate() {
            let index = i + 1;
            let mut rec = ApprovalRecord {
                index,
                claimed_by: String::new(),
                person: None,
                counted_as: None,
                status: String::new(),
                eligible: false,
                issued_at: None,
            };
            let result = self.judge_approval(&value, &names, &parents, tree, clean, &mut rec);
            match result {
                Err(f) => {
                    rec.status = f.message.clone();
                    found.push(at(f));
                }
                Ok(None) => {}
                Ok(Some(person)) => {
                    if rule.approvers_distinct_from_authors && authors.contains(&person) {
                        rec.status = format!(
                            "{person} signed commits in the merged range and may not approve it"
                        );
                        found.push(at(Finding::new(
                            Code::ApproverIsAuthor,
                            format!("approval #{index}: {person} approved a change that includes their own commits"),
                            "have the change approved by people who did not write it",
                        )));
                    } else if rule.merger_distinct_from_approvers
                        && merger.as_deref() == Some(person.as_str())
                    {
                        rec.status =
                            format!("{person} signed the merge and may not also approve it");
                        found.push(at(Finding::new(
                            Code::ApproverIsMerger,
                            format!(
                                "approval #{index}: {person} both approved and merged this change"
                            ),
                            "have someone else merge it, or someone else approve it",
                        )));
                    } else if let Some(first) = eligible.get(&person) {
                        rec.status = format!("{person} already approved (approval #{}); a person counts once, however many keys they hold", first + 1);
                    } else {
                        rec.status = "verified".into();
                        rec.eligible = true;
                        eligible.insert(person.clone(), records.len());
                    }
                    rec.person = Some(person);
                }
            }
            records.push(rec);
        }

        if rule.merger_distinct_from_authors {
            if let Some(m) = merger.as_ref().filter(|m| authors.contains(*m)) {
                found.push(at(Finding::new(
                    Code::MergerIsAuthor,
                    format!("{m} merged a change that includes their own commits"),
                    "have someone who did not write the change merge it",
                )));
            }
        }

        // Fill the role slots with distinct people (maximum matching).
        let people: Vec<String> = eligible.keys().cloned().collect();
        let assignment = self.assign(&people, &rule.approvals);
        for (person, role) in &assignment {
            if let Some(&ri) = eligible.get(person) {
                records[ri].counted_as = Some(role.clone());
                records[ri].status = format!("counts as {role}");
            }
        }
        for &ri in eligible.values() {
            if records[ri].counted_as.is_none() {
                records[ri].status =
                    "verified, but fills no required role that is still open".into();
            }
        }
        let needed: usize = rule.approvals.iter().map(|r| r.count).sum();
        // A result that is not the clean merge needs at least one approval
        // of that exact result, even where the rule counts none.
        let enough = assignment.len() >= needed && (clean || !eligible.is_empty());
        if !enough {
            let listing = listing(&rule.approvals, &assignment, &records);
            let (code, what, help) = if parents.len() == 1 {
                (
                    Code::MergeRequired,
                    "this commit landed directly on the ref, which only accepts approved merges".to_string(),
                    "push it to a topic branch, have it approved, and merge it with `countersign merge` (or have approvers sign this exact result with `countersign approve --result`)",
                )
            } else if !clean {
                let what = match clean_tree {
                    Some(t) => format!("the merge's tree {} is not the clean merge of its parents ({}): it carries changes no approval of the topic covers", short(tree), short(t)),
                    None => format!("its parents do not merge cleanly, and the tree {} was resolved by hand: no approval of the topic covers it", short(tree)),
                };
                (
                    Code::EvilMerge,
                    what,
                    "approvers must sign this exact result: `countersign approve --result <merge> --ref <ref>`, then add the trailers to the merge",
                )
            } else {
                (
                    Code::InsufficientApprovals,
                    "the approvals do not meet the rule".to_string(),
                    "collect approvals from other people holding the missing roles (`countersign approve <topic> --ref <ref>`), then `countersign merge`",
                )
            };
            found.push(at(Finding::new(code, format!("{what}\n{listing}"), help)));
        }
        outcome.merges.push(MergeRecord {
            commit: id.to_string(),
            merger,
            authors: authors.into_iter().collect(),
            approvals: records,
            clean,
        });
    }

    /// Verify one trailer and check what it binds. `Ok(Some(person))`: it
    /// verifies and binds this change; `Ok(None)`: it verifies but binds a
    /// form (topic) that does not apply to this merge; `Err`: rejected.
    #[allow(clippy::too_many_arguments)]
    fn judge_approval(
        &self,
        value: &str,
        names: &[String],
        parents: &[Oid],
        tree: Oid,
        clean: bool,
        rec: &mut ApprovalRecord,
    ) -> Result<Option<String>, Finding> {
        let index = rec.index;
        let a = Approval::parse(value).map_err(|e| {
            Finding::new(
                Code::MalformedApproval,
                format!("approval #{index} cannot be parsed: {e}"),
                "copy the trailer exactly as `countersign approve` printed it",
            )
        })?;
        rec.claimed_by = a.by.clone();
        rec.issued_at = Some(a.statement.issued_at);
        let st = &a.statement;
        let verified = signature::verify_approval(
            &self.policy.keyring,
            &a.signature,
            &st.canonical(),
            self.now,
        )
        .map_err(|e| approval_sig_finding(index, &a.by, e))?;
        let (key, person) = self.signer_of(verified.key)?;
        rec.person = Some(person.id.clone());
        if let Some(f) = self.date_problem(
            key,
            person,
            &format!("approval #{index}"),
            Some(st.issued_at),
        ) {
            return Err(f);
        }
        if st.repository != self.policy.repository_id {
            return Err(Finding::new(
                Code::ApprovalWrongRepository,
                format!(
                    "approval #{index} by {} is for repository `{}`, not `{}`",
                    person.id, st.repository, self.policy.repository_id
                ),
                "approvals are bound to one repository; approve this change here",
            ));
        }
        if !names.contains(&st.refname) {
            return Err(Finding::new(
                Code::ApprovalWrongRef,
                format!(
                    "approval #{index} by {} is for `{}`, not `{}`",
                    person.id,
                    st.refname,
                    names.join("` / `")
                ),
                "approvals are bound to one target ref; approve the change for this ref",
            ));
        }
        match &st.binding {
            Binding::Topic {
                commit,
                tree: approved_tree,
            } => {
                if parents.len() != 2 {
                    return Err(Finding::new(
                        Code::ApprovalWrongCommit,
                        format!("approval #{index} by {} approves a topic, but this is not a merge", person.id),
                        "land changes as merges, or approve the exact result with `countersign approve --result`",
                    ));
                }
                let topic = parents[1];
                if *commit != topic {
                    let stale = self
                        .repo
                        .graph_descendant_of(topic, *commit)
                        .unwrap_or(false);
                    return Err(if stale {
                        Finding::new(
                            Code::StaleApproval,
                            format!("approval #{index} by {} is stale: it approved {}, an older tip of the topic; the merge brings {}", person.id, short(*commit), short(topic)),
                            "the topic changed after it was approved; ask for a new approval of the current tip",
                        )
                    } else {
                        Finding::new(
                            Code::ApprovalWrongCommit,
                            format!("approval #{index} by {} approved {}, which is not the merged topic {}", person.id, short(*commit), short(topic)),
                            "an approval counts only for the exact topic tip it names",
                        )
                    });
                }
                let real_tree = self
                    .repo
                    .find_commit(topic)
                    .map(|c| c.tree_id())
                    .map_err(|e| missing(topic, &e))?;
                if *approved_tree != real_tree {
                    return Err(Finding::new(
                        Code::ApprovalWrongCommit,
                        format!(
                            "approval #{index} by {} names tree {}, but the topic's tree is {}",
                            person.id,
                            short(*approved_tree),
                            short(real_tree)
                        ),
                        "re-create the approval with `countersign approve`",
                    ));
                }
                if !clean {
                    rec.status = "approves the topic, but this merge's result differs from the clean merge; only result approvals count".into();
                    return Ok(None);
                }
            }
            Binding::Result {
                parents: approved,
                tree: approved_tree,
            } => {
                if approved.as_slice() != parents || *approved_tree != tree {
                    let p: Vec<String> = approved.iter().map(|o| short(*o)).collect();
                    return Err(Finding::new(
                        Code::ApprovalWrongCommit,
                        format!(
                            "approval #{index} by {} approved the result tree {} with parents {}, which is not this commit's (tree {}, parents {})",
                            person.id,
                            short(*approved_tree),
                            p.join(", "),
                            short(tree),
                            parents.iter().map(|o| short(*o)).collect::<Vec<_>>().join(", ")
                        ),
                        "a result approval counts only for the exact parents and tree it names",
                    ));
                }
            }
        }
        Ok(Some(person.id.clone()))
    }

    /// Assign people to role slots so that as many slots as possible are
    /// filled, each person at most once (maximum bipartite matching by
    /// augmenting paths). Returns (person, role) pairs.
    fn assign(&self, people: &[String], reqs: &[ApprovalRequirement]) -> Vec<(String, String)> {
        let slots: Vec<&str> = reqs
            .iter()
            .flat_map(|r| std::iter::repeat_n(r.role.as_str(), r.count))
            .collect();
        let holds = |p: usize, s: usize| {
            self.policy
                .people
                .get(&people[p])
                .is_some_and(|person| person.roles.contains(slots[s]))
        };
        let mut slot_of: Vec<Option<usize>> = vec![None; slots.len()];
        fn augment(
            p: usize,
            seen: &mut [bool],
            slot_of: &mut [Option<usize>],
            holds: &dyn Fn(usize, usize) -> bool,
        ) -> bool {
            for s in 0..slot_of.len() {
                if holds(p, s) && !seen[s] {
                    seen[s] = true;
                    if slot_of[s].is_none_or(|q| augment(q, seen, slot_of, holds)) {
                        slot_of[s] = Some(p);
                        return true;
                    }
                }
            }
            false
        }
        for p in 0..people.len() {
            let mut seen = vec![false; slots.len()];
            augment(p, &mut seen, &mut slot_of, &holds);
        }
        slot_of
            .iter()
            .enumerate()
            .filter_map(|(s, p)| p.map(|p| (people[p].clone(), slots[s].to_string())))
            .collect()
    }
}

fn approval_sig_finding(index: usize, by: &str, e: SigError) -> Finding {
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

fn listing(
    reqs: &[ApprovalRequirement],
    assignment: &[(String, String)],
    records: &[ApprovalRecord],
) -> String {
    let mut out = String::from("required:");
    if reqs.is_empty() {
        out.push_str(" no approvals");
    }
    for r in reqs {
        let filled: Vec<&str> = assignment
            .iter()
            .filter(|(_, role)| *role == r.role)
            .map(|(p, _)| p.as_str())
            .collect();
        out.push_str(&format!(
            "\n  {} x {}: {} of {}{}",
            r.count,
            r.role,
            filled.len(),
            r.count,
            if filled.is_empty() {
                String::new()
            } else {
                format!(" ({})", filled.join(", "))
            }
        ));
    }
    out.push_str("\napprovals found:");
    if records.is_empty() {
        out.push_str(" none (no `Countersign-Approval:` trailers in the merge message)");
    }
    for r in records {
        let who = match &r.person {
            Some(p) => format!("{p}'s key"),
            None => "unverified".to_string(),
        };
        out.push_str(&format!(
            "\n  #{} by={} ({who}): {}",
            r.index, r.claimed_by, r.status
        ));
    }
    out
}
