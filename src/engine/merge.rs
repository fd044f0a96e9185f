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

use crate::engine::{diags, internal, missing, short, RefUpdate, UpdateOutcome, Verifier};
use crate::finding::{Code, Finding};
use crate::policy::{ApprovalRequirement, MergeRule, Policy};
use crate::signing::approval::{self, Approval, Binding};
use crate::signing::signature;

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
    /// Whether the tree is the clean merge of the parents (or, for a
    /// squash, of the squashed topic onto the parent), as computed.
    pub clean: bool,
    /// For a squash: the topic tip it names.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub squash_of: Option<String>,
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

/// How a commit lands on a merge-rule ref.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Landing {
    /// A two-parent merge of the topic `parents[1]`.
    Merge(Oid),
    /// A single-parent commit naming the topic it squashes.
    Squash(Oid),
    /// A single-parent commit of its own: its signer is its author.
    Direct,
}

impl Landing {
    fn topic(self) -> Option<Oid> {
        match self {
            Landing::Merge(t) | Landing::Squash(t) => Some(t),
            Landing::Direct => None,
        }
    }
}

/// What approvals of one landing change are judged against.
struct Judged<'c> {
    /// The names the update moves (the ref and the refs it points through).
    names: &'c [String],
    parents: &'c [Oid],
    landing: Landing,
    tree: Oid,
    authors: &'c BTreeSet<String>,
    merger: Option<&'c str>,
}

/// What an approval that verified and binds this change binds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// The topic tip: counts only when the result is the clean merge.
    Topic,
    /// The exact parents and tree: counts whatever the merge computes.
    Result,
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
            if !self.budget.merge() || self.budget.full(found.len()) {
                return;
            }
            self.check_landing(u, id, rule, outcome, found);
        }
    }

    /// Commits on the first-parent chain from `tip`, stopping at anything
    /// reachable from `hide` (each one counted against `limits.commits`).
    fn first_parent_chain(&mut self, tip: Oid, hide: &[Oid]) -> Result<Vec<Oid>, Finding> {
        let mut walk = self.repo.revwalk().map_err(|e| internal(&e))?;
        walk.simplify_first_parent().map_err(|e| internal(&e))?;
        walk.push(tip).map_err(|e| missing(tip, &e))?;
        for h in hide {
            walk.hide(*h).map_err(|e| missing(*h, &e))?;
        }
        let mut chain = Vec::new();
        for r in walk {
            if !self.budget.commit() {
                break;
            }
            chain.push(r.map_err(|e| missing(tip, &e))?);
        }
        Ok(chain)
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
            if !self.budget.commit() {
                break;
            }
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

    /// The clean merge of `topic` into `base`, as the git on the server
    /// computes it, within what is left of the time budget.
    fn clean_merge_of(&mut self, base: Oid, topic: Oid) -> Result<CleanMerge, Finding> {
        let timeout = self.budget.remaining();
        let result = clean_merge(self.repo, base, topic, timeout).map_err(|e| internal(&e))?;
        if result == CleanMerge::TimedOut {
            self.budget.timed_out();
        }
        Ok(result)
    }

    /// The single `Countersign-Squash:` trailer of a one-parent commit.
    fn squash_topic(&self, message: &[u8], parent: Oid) -> Result<Option<Oid>, Finding> {
        let values = approval::trailer_values(message, approval::SQUASH_TRAILER);
        match values.as_slice() {
            [] => Ok(None),
            [one] => match self.parse_oid(one) {
                Some(id) => {
                    self.size_check(id)?;
                    match self.repo.find_commit(id) {
                        // A topic already in the target's history brings
                        // nothing and has no authors: naming it would make
                        // the squasher's own change look authorless.
                        Ok(_)
                            if id == parent
                                || self.repo.graph_descendant_of(parent, id).unwrap_or(true) =>
                        {
                            Err(diags::squash_of_landed_topic(id))
                        }
                        Ok(_) => Ok(Some(id)),
                        Err(e) if e.code() == git2::ErrorCode::NotFound => {
                            Err(diags::squash_topic_missing(id))
                        }
                        Err(e) => Err(diags::squash_not_a_commit(id, &e)),
                    }
                }
                None => Err(diags::squash_bad_id(&self.clip(one))),
            },
            more => Err(diags::squash_many(more.len())),
        }
    }

    /// What kind of landing `id` is: its parents, tree, message and
    /// [`Landing`]; `None` when the rule lets a direct commit through.
    #[allow(clippy::type_complexity)]
    fn classify(
        &self,
        id: Oid,
        rule: &MergeRule,
    ) -> Result<Option<(Vec<Oid>, Oid, Vec<u8>, Landing)>, Finding> {
        let commit = self.repo.find_commit(id).map_err(|e| missing(id, &e))?;
        let parents: Vec<Oid> = commit.parent_ids().collect();
        let tree = commit.tree_id();
        let message = commit.message_raw_bytes().to_vec();
        drop(commit);
        if parents.len() > 2 {
            return Err(diags::octopus(parents.len()));
        }
        if parents.len() == 1 && !rule.required {
            // Direct commits are allowed; `commit-signers` still applies.
            return Ok(None);
        }
        if parents.is_empty() {
            return Err(diags::root_commit_landing());
        }
        let landing = if parents.len() == 2 {
            if !approval::trailer_values(&message, approval::SQUASH_TRAILER).is_empty() {
                return Err(diags::squash_on_merge());
            }
            Landing::Merge(parents[1])
        } else {
            match self.squash_topic(&message, parents[0])? {
                Some(topic) => Landing::Squash(topic),
                None => Landing::Direct,
            }
        };
        Ok(Some((parents, tree, message, landing)))
    }

    fn check_landing(
        &mut self,
        u: &RefUpdate,
        id: Oid,
        rule: &MergeRule,
        outcome: &mut UpdateOutcome,
        found: &mut Vec<Finding>,
    ) {
        if let Err(f) = self.size_check(id) {
            return found.push(f);
        }
        let subject = self.subject_of(id);
        let at = |f: Finding| f.at_object(id, subject.clone());
        let (parents, tree, message, landing) = match self.classify(id, rule) {
            Ok(Some(x)) => x,
            Ok(None) => return,
            Err(f) => return found.push(at(f)),
        };
        let before = found.len();

        // The merger.
        let checked = self.check_object(id, ObjectType::Commit);
        let merger = self
            .authorize(
                id,
                &checked,
                &rule.signers,
                match landing {
                    Landing::Merge(_) => "merge commit",
                    Landing::Squash(_) => "squash commit",
                    Landing::Direct => "commit landing on the ref",
                },
                outcome,
                found,
            )
            .map(str::to_string);

        let values = approval::trailers(&message);
        let max = self.budget.limits.trailers;
        if values.len() > max {
            return found.push(at(diags::too_many_trailers(values.len(), max)));
        }

        // Who wrote the change.
        let (authors, unverified) = match landing.topic() {
            Some(topic) => match self.authors(parents[0], topic) {
                Ok(x) => x,
                Err(f) => return found.push(at(f)),
            },
            // A single commit of its own: its signer is its author.
            None => (merger.iter().cloned().collect(), Vec::new()),
        };
        if (rule.approvers_distinct_from_authors || rule.merger_distinct_from_authors)
            && !unverified.is_empty()
        {
            found.push(at(diags::unverifiable_authors(&unverified)));
        }

        // Judge every approval trailer (no merge computed yet: cheap first).
        let names = self.names_for(&u.refname);
        let judged = Judged {
            names: &names,
            parents: &parents,
            landing,
            tree,
            authors: &authors,
            merger: merger.as_deref(),
        };
        let (mut records, mut eligible) =
            self.judge_all(&values, &judged, rule, &mut |f| found.push(at(f)));

        if rule.merger_distinct_from_authors {
            if let Some(m) = merger.as_ref().filter(|m| authors.contains(*m)) {
                found.push(at(if landing == Landing::Direct {
                    diags::direct_commit_by_merger(m)
                } else {
                    diags::merger_is_author(m)
                }));
            }
        }

        // The clean merge, only when everything cheaper passed: a merge
        // whose signature or approvals already failed is rejected anyway.
        // Not enough approvals even if every topic approval counted: the
        // change is rejected whatever the merge computes.
        let needed: usize = rule.approvals.iter().map(|r| r.count).sum();
        let everyone: Vec<String> = eligible.keys().cloned().collect();
        let short_anyway = self.assign(&everyone, &rule.approvals).len() < needed;
        let failed_cheap = found.len() > before || merger.is_none() || short_anyway;
        let computed = match landing.topic() {
            Some(topic) if !failed_cheap => match self.clean_merge_of(parents[0], topic) {
                Ok(c) => Some(c),
                Err(f) => return found.push(at(f)),
            },
            _ => None,
        };
        let clean = computed == Some(CleanMerge::Tree(tree));
        // A result that is not the clean merge was written by whoever
        // signed it: under merger-distinct-from-authors they may not land it.
        if rule.merger_distinct_from_authors && computed.is_some() && !clean {
            if let Some(m) = &merger {
                found.push(at(diags::merger_wrote_the_result(m)));
            }
        }
        // Topic approvals count when the result is the clean merge, or
        // provisionally when it was not computed (the change is rejected
        // for other reasons, and the listing should still be useful).
        let topic_counts = clean || (computed.is_none() && landing != Landing::Direct);
        if !topic_counts {
            for (ri, has_result) in eligible.values() {
                if !has_result {
                    records[*ri].eligible = false;
                    records[*ri].status = "approves the topic, but this change's result differs from the clean merge; only approvals of the exact result count".into();
                }
            }
            eligible.retain(|_, (_, has_result)| *has_result);
        }

        // Fill the role slots with distinct people (maximum matching).
        let people: Vec<String> = eligible.keys().cloned().collect();
        let assignment = self.assign(&people, &rule.approvals);
        for (person, role) in &assignment {
            if let Some(&(ri, _)) = eligible.get(person) {
                records[ri].counted_as = Some(role.clone());
                records[ri].status = format!("counts as {role}");
            }
        }
        for &(ri, _) in eligible.values() {
            if records[ri].counted_as.is_none() {
                records[ri].status =
                    "verified, but fills no required role that is still open".into();
            }
        }
        // A result that is not the clean merge needs at least one approval
        // of that exact result, even where the rule counts none.
        let enough = assignment.len() >= needed && (topic_counts || !eligible.is_empty());
        if !enough && computed != Some(CleanMerge::TimedOut) {
            let listing = listing(&rule.approvals, &assignment, &records);
            let (code, what, help) = self.shortfall(landing, computed.as_ref(), tree, parents[0]);
            found.push(at(Finding::new(code, format!("{what}\n{listing}"), help)));
        }
        outcome.merges.push(MergeRecord {
            commit: id.to_string(),
            merger,
            authors: authors.into_iter().collect(),
            approvals: records,
            clean,
            squash_of: match landing {
                Landing::Squash(t) => Some(t.to_string()),
                _ => None,
            },
        });
    }

    /// Judge every approval trailer of one landing change: the records,
    /// and the eligible people (person -> (record index, has an approval
    /// of the exact result)). Findings go to `report`.
    fn judge_all(
        &self,
        values: &[String],
        c: &Judged<'_>,
        rule: &MergeRule,
        report: &mut dyn FnMut(Finding),
    ) -> (Vec<ApprovalRecord>, BTreeMap<String, (usize, bool)>) {
        let mut records = Vec::new();
        let mut eligible: BTreeMap<String, (usize, bool)> = BTreeMap::new();
        for (i, value) in values.iter().enumerate() {
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
            match self.judge_approval(
                value,
                c.names,
                c.parents,
                c.landing.topic(),
                c.tree,
                &mut rec,
            ) {
                Err(f) => {
                    rec.status = f.message.clone();
                    report(f);
                }
                Ok((person, kind)) => {
                    if rule.approvers_distinct_from_authors && c.authors.contains(&person) {
                        rec.status = format!(
                            "{person} signed commits in the merged range and may not approve it"
                        );
                        report(diags::approver_is_author(index, &person));
                    } else if rule.merger_distinct_from_approvers
                        && c.merger == Some(person.as_str())
                    {
                        rec.status =
                            format!("{person} signed the merge and may not also approve it");
                        report(diags::approver_is_merger(index, &person));
                    } else if let Some((first, has_result)) = eligible.get_mut(&person) {
                        *has_result |= kind == Kind::Result;
                        rec.status = format!("{person} already approved (approval #{}); a person counts once, however many keys they hold", records.get(*first).map_or(0, |r: &ApprovalRecord| r.index));
                    } else {
                        rec.status = "verified".into();
                        rec.eligible = true;
                        eligible.insert(person.clone(), (records.len(), kind == Kind::Result));
                    }
                    rec.person = Some(person);
                }
            }
            records.push(rec);
        }
        (records, eligible)
    }

    /// Why a change's approvals fall short: code, message and help.
    fn shortfall(
        &self,
        landing: Landing,
        computed: Option<&CleanMerge>,
        tree: Oid,
        base: Oid,
    ) -> (Code, String, &'static str) {
        const RESULT_HELP: &str = "approvers must sign this exact result: `countersign approve --result <commit> --ref <ref>`, then add the trailers to the commit";
        let what = match landing {
            Landing::Merge(_) => "merge",
            Landing::Squash(_) => "squash",
            Landing::Direct => {
                return (
                    Code::MergeRequired,
                    "this commit landed directly on the ref, which only accepts approved merges".to_string(),
                    "push it to a topic branch, have it approved, and merge it with `countersign merge` (or squash it with `countersign merge --squash`, or have approvers sign this exact result with `countersign approve --result`)",
                )
            }
        };
        let topic = landing.topic().map(short).unwrap_or_default();
        match computed {
            Some(CleanMerge::Tree(t)) if *t != tree => (
                Code::EvilMerge,
                format!("the {what}'s tree {} is not the clean merge of {topic} into {} ({}): it carries changes no approval of the topic covers", short(tree), short(base), short(*t)),
                RESULT_HELP,
            ),
            Some(CleanMerge::Conflicts) => (
                Code::EvilMerge,
                format!("{topic} does not merge cleanly into {}, and the tree {} was resolved by hand: no approval of the topic covers it", short(base), short(tree)),
                RESULT_HELP,
            ),
            Some(CleanMerge::Unrelated) => (
                Code::EvilMerge,
                format!("{topic} shares no history with {}, so there is no clean merge to compare the tree {} with", short(base), short(tree)),
                RESULT_HELP,
            ),
            Some(CleanMerge::MultipleBases(n)) => (
                Code::MultipleMergeBases,
                format!("{topic} and {} have {n} merge bases (a criss-cross history), so countersign does not compute a clean merge and approvals of the topic do not cover the result", short(base)),
                "approvers must sign this exact result (`countersign approve --result <commit> --ref <ref>`), or merge the target into the topic first so that one merge base remains, and have that approved",
            ),
            _ => (
                Code::InsufficientApprovals,
                "the approvals do not meet the rule".to_string(),
                "collect approvals from other people holding the missing roles (`countersign approve <topic> --ref <ref>`), then `countersign merge`",
            ),
        }
    }

    /// Verify one trailer and check what it binds. `Ok((person, kind))`: it
    /// verifies and binds this change (a topic approval counts only if the
    /// result turns out to be the clean merge); `Err`: rejected.
    fn judge_approval(
        &self,
        value: &str,
        names: &[String],
        parents: &[Oid],
        topic: Option<Oid>,
        tree: Oid,
        rec: &mut ApprovalRecord,
    ) -> Result<(String, Kind), Finding> {
        let index = rec.index;
        let a = Approval::parse(value)
            .map_err(|e| diags::malformed_approval(index, &self.clip(&e.to_string())))?;
        rec.claimed_by = self.clip(&a.by);
        rec.issued_at = Some(a.statement.issued_at);
        let max = self.budget.limits.signature_bytes;
        if a.signature.len() > max {
            return Err(diags::approval_signature_too_big(
                index,
                a.signature.len(),
                max,
            ));
        }
        let st = &a.statement;
        let verified = signature::verify_approval(
            &self.policy.keyring,
            &a.signature,
            &st.canonical(),
            self.now,
        )
        .map_err(|e| diags::approval_signature(index, &rec.claimed_by, e))?;
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
            return Err(diags::approval_wrong_repository(
                index,
                &person.id,
                &self.clip(&st.repository),
                &self.policy.repository_id,
            ));
        }
        if !names.contains(&st.refname) {
            return Err(diags::approval_wrong_ref(
                index,
                &person.id,
                &self.clip(&st.refname),
                names,
            ));
        }
        match &st.binding {
            Binding::Topic {
                commit,
                tree: approved_tree,
            } => {
                let Some(topic) = topic else {
                    return Err(diags::topic_approval_without_topic(index, &person.id));
                };
                if *commit != topic {
                    let stale = self
                        .repo
                        .graph_descendant_of(topic, *commit)
                        .unwrap_or(false);
                    return Err(if stale {
                        diags::stale_approval(index, &person.id, *commit, topic)
                    } else {
                        diags::approval_of_another_topic(index, &person.id, *commit, topic)
                    });
                }
                let real_tree = self
                    .repo
                    .find_commit(topic)
                    .map(|c| c.tree_id())
                    .map_err(|e| missing(topic, &e))?;
                if *approved_tree != real_tree {
                    return Err(diags::approval_wrong_tree(
                        index,
                        &person.id,
                        *approved_tree,
                        real_tree,
                    ));
                }
                Ok((person.id.clone(), Kind::Topic))
            }
            Binding::Result {
                parents: approved,
                tree: approved_tree,
            } => {
                if approved.as_slice() != parents || *approved_tree != tree {
                    return Err(diags::approval_wrong_result(
                        index,
                        &person.id,
                        approved,
                        *approved_tree,
                        parents,
                        tree,
                    ));
                }
                Ok((person.id.clone(), Kind::Result))
            }
        }
    }

    /// Assign people to role slots; see [`assign`].
    fn assign(&self, people: &[String], reqs: &[ApprovalRequirement]) -> Vec<(String, String)> {
        assign(self.policy, people, reqs)
    }
}

/// Assign people to role slots so that as many slots as possible are
/// filled, each person at most once (maximum bipartite matching by
/// augmenting paths). Returns (person, role) pairs.
pub(crate) fn assign(
    policy: &Policy,
    people: &[String],
    reqs: &[ApprovalRequirement],
) -> Vec<(String, String)> {
    let slots: Vec<&str> = reqs
        .iter()
        .flat_map(|r| std::iter::repeat_n(r.role.as_str(), r.count))
        .collect();
    let holds = |p: usize, s: usize| {
        policy
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

/// What `git merge-tree --write-tree` made of two commits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CleanMerge {
    /// It merges cleanly into this tree.
    Tree(Oid),
    /// It conflicts.
    Conflicts,
    /// The two commits share no history.
    Unrelated,
    /// More than one merge base: not computed (see README, clean merges).
    MultipleBases(usize),
    /// The time budget ran out; the child was killed.
    TimedOut,
}

/// Why `git merge-tree` could not answer.
#[derive(Debug, thiserror::Error)]
pub enum MergeTreeError {
    /// libgit2 could not compute the merge bases.
    #[error("cannot compute merge bases: {0}")]
    Bases(String),
    /// The git binary could not be run or waited for.
    #[error("cannot run `git merge-tree`: {0}")]
    Spawn(std::io::Error),
    /// git printed no tree id.
    #[error("`git merge-tree` printed no tree id (got `{0}`)")]
    NoTree(String),
    /// git failed in a way other than a conflict.
    #[error("`git merge-tree --write-tree` failed ({0}): {1} (countersign needs git 2.38 or later on the server)")]
    Failed(std::process::ExitStatus, String),
}

/// Bytes of `git merge-tree` output kept (the tree id is on the first line).
const MERGE_TREE_OUTPUT: usize = 4096;

/// The clean merge of `theirs` into `ours`, computed by the `git` binary on
/// this machine (`git merge-tree --write-tree`, merge-ort, git >= 2.38), so
/// the answer is the one `git merge` gives. Histories with more than one
/// merge base are not merged at all: merge-ort would merge the bases into
/// virtual ones recursively, which costs exponential time on a crafted
/// criss-cross history. The child is killed when `timeout` runs out. The
/// result tree is written to the object database (the quarantine, in a
/// hook), where nothing references it.
///
/// # Errors
///
/// [`MergeTreeError`] when git cannot be run or fails in a way other than
/// a conflict.
pub fn clean_merge(
    repo: &git2::Repository,
    ours: Oid,
    theirs: Oid,
    timeout: Option<std::time::Duration>,
) -> Result<CleanMerge, MergeTreeError> {
    use std::io::Read;
    use std::process::{Command, Stdio};
    match repo.merge_bases(ours, theirs) {
        Ok(bases) if bases.len() == 1 => {}
        Ok(bases) if bases.len() > 1 => return Ok(CleanMerge::MultipleBases(bases.len())),
        Ok(_) => return Ok(CleanMerge::Unrelated),
        Err(e) if e.code() == git2::ErrorCode::NotFound => return Ok(CleanMerge::Unrelated),
        Err(e) => return Err(MergeTreeError::Bases(e.message().to_string())),
    }
    if timeout.is_some_and(|t| t.is_zero()) {
        return Ok(CleanMerge::TimedOut);
    }
    let mut child = Command::new("git")
        .arg("--git-dir")
        .arg(repo.path())
        .args(["merge-tree", "--write-tree", "--no-messages"])
        .arg(ours.to_string())
        .arg(theirs.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(MergeTreeError::Spawn)?;
    // Drain both pipes in threads (keeping a bounded prefix), so a child
    // with much to say can neither block nor grow our memory.
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut kept = Vec::new();
            if let Some(mut p) = pipe {
                let mut buf = [0u8; 8192];
                while let Ok(n) = p.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    let room = MERGE_TREE_OUTPUT.saturating_sub(kept.len());
                    kept.extend_from_slice(&buf[..n.min(room)]);
                }
            }
            kept
        })
    };
    let out = drain(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let err = drain(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let started = std::time::Instant::now();
    let mut pause = std::time::Duration::from_millis(1);
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) => {}
            Err(e) => return Err(MergeTreeError::Spawn(e)),
        }
        if timeout.is_some_and(|t| started.elapsed() >= t) {
            let _ = child.kill();
            let _ = child.wait();
            return Ok(CleanMerge::TimedOut);
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(std::time::Duration::from_millis(20));
    };
    let out = out.join().unwrap_or_default();
    let err = err.join().unwrap_or_default();
    let first = String::from_utf8_lossy(&out);
    let first = first.lines().next().unwrap_or("").trim();
    match status.code() {
        Some(0) => crate::engine::parse_oid(first, repo.object_format())
            .map(CleanMerge::Tree)
            .ok_or_else(|| MergeTreeError::NoTree(crate::sanitize::escape(first))),
        Some(1) => Ok(CleanMerge::Conflicts),
        _ => Err(MergeTreeError::Failed(
            status,
            crate::sanitize::escape(String::from_utf8_lossy(&err).trim()),
        )),
    }
}
