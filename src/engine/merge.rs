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
        let result = self
            .merge_tree
            .clean_merge(self.repo, base, topic, timeout)
            .map_err(|e| internal(&e))?;
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
    /// The repository's `info/attributes` could change what git's merge
    /// is (a `merge` attribute: `merge=union` makes conflicts "clean").
    #[error("the repository's info/attributes {0}, which would change what git's clean merge is (`merge=union` turns a conflict into a clean merge); remove the merge attributes from it: countersign checks merges against git's default merge")]
    Attributes(&'static str),
}

/// Bytes of `git merge-tree` output kept: of the one-shot child's output
/// (the tree id is on the first line), of each field of a server's answer,
/// and of a server's standard error (its last bytes: a dying git's last
/// words).
const MERGE_TREE_OUTPUT: usize = 4096;

/// The oldest git whose `merge-tree --stdin` takes the merge base on each
/// input line (2.40) and reads `core.useReplaceRefs` as a repository
/// setting, so that it holds in `--stdin` mode as it does for one merge
/// (2.42). An older git gets one process per merge.
const STDIN_GIT: (u32, u32) = (2, 42);

/// The oldest git whose `merge-tree --stdin` flushes each answer (2.49,
/// "merge-tree --stdin: flush stdout to avoid deadlock"). An older one
/// keeps its answers in its stdio buffer while it waits for the next line,
/// so it runs under `stdbuf -o0` (coreutils), which unbuffers its stdout.
const FLUSHING_GIT: (u32, u32) = (2, 49);

/// How long a new `--stdin` child may take to answer a trivial merge
/// before it is deemed unable to serve (one process per merge from then).
const PROBE_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// Set once a `--stdin` child of the `git` on `PATH` failed its probe: the
/// servers started later in this process do not try again.
static STDIN_UNUSABLE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// What the merge bases of two commits leave to compute.
enum Bases {
    /// Exactly one: git merges from it.
    One(Oid),
    /// The answer, without asking git.
    Answer(CleanMerge),
}

/// Exactly one merge base (libgit2), or the answer when there is not.
fn single_base(repo: &git2::Repository, ours: Oid, theirs: Oid) -> Result<Bases, MergeTreeError> {
    match repo.merge_bases(ours, theirs) {
        Ok(bases) if bases.len() > 1 => Ok(Bases::Answer(CleanMerge::MultipleBases(bases.len()))),
        Ok(bases) => Ok(match bases.first() {
            Some(base) => Bases::One(*base),
            None => Bases::Answer(CleanMerge::Unrelated),
        }),
        Err(e) if e.code() == git2::ErrorCode::NotFound => Ok(Bases::Answer(CleanMerge::Unrelated)),
        Err(e) => Err(MergeTreeError::Bases(e.message().to_string())),
    }
}

/// The clean merge of `theirs` into `ours`, computed by the `git` binary on
/// this machine (`git merge-tree --write-tree`, merge-ort, git >= 2.38), so
/// the answer is the one `git merge` gives. Histories with more than one
/// merge base are not merged at all: merge-ort would merge the bases into
/// virtual ones recursively, which costs exponential time on a crafted
/// criss-cross history. The child is killed when `timeout` runs out. The
/// result tree is written to the object database (the quarantine, in a
/// hook), where nothing references it. One process per call: for many
/// merges, [`MergeTreeServer`] gives the same answers from one process.
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
    if let Bases::Answer(answer) = single_base(repo, ours, theirs)? {
        return Ok(answer);
    }
    if timeout.is_some_and(|t| t.is_zero()) {
        return Ok(CleanMerge::TimedOut);
    }
    attributes_check(repo)?;
    one_shot(std::ffi::OsStr::new("git"), repo, ours, theirs, timeout)
}

/// Before git's subcommand: read every commit, never a commit-graph file
/// (git also reads the graphs of alternates, so the server's own one in
/// the hook's quarantine), which nothing checks against the objects. And
/// git's default merge, whatever the server's config and attribute files
/// say: renames found as by default, no renormalizing, no attributes from
/// the hook user's `core.attributesFile` (`GIT_ATTR_NOSYSTEM` and
/// `GIT_ATTR_SOURCE` in [`git_env`] do the system file and `attr.tree`;
/// `info/attributes` cannot be turned off, see [`attributes_check`]).
const GIT_PINS: [&str; 14] = [
    "-c",
    "core.commitGraph=false",
    "-c",
    "core.attributesFile=/dev/null",
    "-c",
    "merge.renames=true",
    "-c",
    "merge.directoryRenames=conflict",
    "-c",
    "merge.renameLimit=7000",
    "-c",
    "merge.renormalize=false",
    "-c",
    "diff.renames=true",
];

/// The environment of git's merge: no replace refs (libgit2 ignores them
/// too), no system attributes file, and attributes read from the empty
/// tree rather than from `attr.tree` (a pushed ref could name a tree with
/// `* merge=union`).
fn git_env(command: &mut std::process::Command, repo: &git2::Repository) {
    let empty_tree = if repo.object_format() == git2::ObjectFormat::Sha256 {
        "6ef19b41225c5369f1c104d45d8d85efa9b057b53b14b4b9b939dd74decc5321"
    } else {
        "4b825dc642cb6eb9a060e54bf8d69288fbee4904"
    };
    command
        .env("GIT_NO_REPLACE_OBJECTS", "1")
        .env("GIT_ATTR_NOSYSTEM", "1")
        .env("GIT_ATTR_SOURCE", empty_tree);
}

/// Bytes of `info/attributes` read to look for merge attributes.
const ATTRIBUTES_BYTES: u64 = 1 << 20;

/// git always reads the repository's `info/attributes`, and a `merge`
/// attribute there changes what its merge is: refuse to ask git while one
/// could be there (the word `merge` anywhere, or a file too large to read).
///
/// # Errors
///
/// [`MergeTreeError::Attributes`] saying what was found.
pub fn attributes_check(repo: &git2::Repository) -> Result<(), MergeTreeError> {
    use std::io::Read;
    let path = repo.path().join("info").join("attributes");
    let file = match std::fs::File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(_) => return Err(MergeTreeError::Attributes("cannot be read")),
    };
    let mut text = Vec::new();
    if file
        .take(ATTRIBUTES_BYTES + 1)
        .read_to_end(&mut text)
        .is_err()
    {
        return Err(MergeTreeError::Attributes("cannot be read"));
    }
    if text.len() as u64 > ATTRIBUTES_BYTES {
        return Err(MergeTreeError::Attributes("is larger than 1 MiB"));
    }
    if text.windows(5).any(|w| w == b"merge") {
        return Err(MergeTreeError::Attributes("names the `merge` attribute"));
    }
    Ok(())
}

/// One `git merge-tree --write-tree --no-messages <ours> <theirs>` child,
/// once the merge bases are known to be one.
fn one_shot(
    program: &std::ffi::OsStr,
    repo: &git2::Repository,
    ours: Oid,
    theirs: Oid,
    timeout: Option<std::time::Duration>,
) -> Result<CleanMerge, MergeTreeError> {
    use std::io::Read;
    use std::process::{Command, Stdio};
    // libgit2 (the engine's walks) ignores replace refs; git must too, or
    // a planted `refs/replace/*` would change what "the clean merge" is.
    // Nor may git take parents and trees from a commit-graph file (see
    // `crate::repository`): one with a forged root tree for main's tip
    // made an evil merge git's clean merge (tests/it/graph_attack.rs).
    let mut command = Command::new(program);
    git_env(&mut command, repo);
    let mut child = command
        .args(GIT_PINS)
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

/// Clean merges for a whole run from one long-lived
/// `git merge-tree --write-tree --stdin` child, rather than a process per
/// merge (process start-up is most of the cost of a small merge). The
/// answers are those of [`clean_merge`]: the merge bases are decided with
/// libgit2 first, and git is handed the one base on each input line
/// (`<base> -- <ours> <theirs>`), so it never merges bases recursively.
/// The child is started on the first merge that needs git, with
/// `--git-dir` and the environment of this process (in a hook, the
/// quarantine), and must first answer a trivial merge within
/// [`PROBE_WAIT`]. A merge whose answer does not come within its time
/// budget kills the child, and a later merge starts another; a child that
/// dies is an error for the merge it was answering, and is replaced. With
/// a git older than 2.42, or a child that fails its probe (a git that
/// keeps its answers buffered, one that lacks `--stdin`, no `stdbuf` where
/// it is needed), every merge is one process, as with [`clean_merge`].
/// Dropping the server kills and reaps its child.
pub struct MergeTreeServer {
    /// The git binary: `git` from `PATH` (a stand-in in tests).
    program: std::ffi::OsString,
    mode: Mode,
    /// Whether `mode` was decided here from `git version` (a probe that
    /// fails then tells the servers started later).
    auto: bool,
    probe_wait: std::time::Duration,
    child: Option<Served>,
    spawns: usize,
}

/// How a [`MergeTreeServer`] asks git.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Not yet known: `git version` is asked on the first merge.
    Unknown,
    /// One long-lived `--stdin` child, under `stdbuf -o0` if `unbuffer`.
    Stdin { unbuffer: bool },
    /// One process per merge.
    OneShot,
}

/// A running `git merge-tree --stdin` child and the threads reading it.
struct Served {
    /// The repository it was started for.
    git_dir: std::path::PathBuf,
    child: std::process::Child,
    stdin: std::process::ChildStdin,
    /// Answers as the stdout thread parses them; disconnected once the
    /// child's stdout closes.
    answers: std::sync::mpsc::Receiver<Answer>,
    /// The last [`MERGE_TREE_OUTPUT`] bytes of its standard error.
    stderr: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
    stderr_thread: std::thread::JoinHandle<()>,
}

impl Served {
    /// Hand `line` to the child and wait for its answer until `wait` has
    /// passed (`None`: for as long as it takes).
    fn exchange(
        &mut self,
        line: &str,
        wait: Option<std::time::Duration>,
    ) -> Result<Answer, std::sync::mpsc::RecvTimeoutError> {
        use std::io::Write;
        use std::sync::mpsc::RecvTimeoutError;
        if self
            .stdin
            .write_all(line.as_bytes())
            .and_then(|()| self.stdin.flush())
            .is_err()
        {
            return Err(RecvTimeoutError::Disconnected);
        }
        match wait {
            Some(w) => self.answers.recv_timeout(w),
            None => self
                .answers
                .recv()
                .map_err(|_| RecvTimeoutError::Disconnected),
        }
    }
}

/// How starting a `--stdin` child went.
enum Start {
    /// It answered its probe.
    Ready,
    /// The merge's time budget ran out first.
    TimedOut,
    /// It cannot serve: one process per merge instead.
    Unusable,
}

impl Default for MergeTreeServer {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for MergeTreeServer {
    fn drop(&mut self) {
        self.stop();
    }
}

impl MergeTreeServer {
    /// A server that starts nothing until a merge needs git.
    pub fn new() -> Self {
        MergeTreeServer {
            program: "git".into(),
            mode: Mode::Unknown,
            auto: false,
            probe_wait: PROBE_WAIT,
            child: None,
            spawns: 0,
        }
    }

    /// How many git processes computed merges so far (a `--stdin` child
    /// counts once however many merges it answered).
    pub fn spawns(&self) -> usize {
        self.spawns
    }

    /// The clean merge of `theirs` into `ours`, as [`clean_merge`]
    /// computes it, within `timeout` (counted from this call).
    ///
    /// # Errors
    ///
    /// [`MergeTreeError`] when git cannot be run or fails in a way other
    /// than a conflict.
    pub fn clean_merge(
        &mut self,
        repo: &git2::Repository,
        ours: Oid,
        theirs: Oid,
        timeout: Option<std::time::Duration>,
    ) -> Result<CleanMerge, MergeTreeError> {
        let started = std::time::Instant::now();
        let base = match single_base(repo, ours, theirs)? {
            Bases::One(base) => base,
            Bases::Answer(answer) => return Ok(answer),
        };
        if timeout.is_some_and(|t| t.is_zero()) {
            return Ok(CleanMerge::TimedOut);
        }
        attributes_check(repo)?;
        let deadline = timeout.and_then(|t| started.checked_add(t));
        if self.mode == Mode::Unknown {
            self.mode = if STDIN_UNUSABLE.load(std::sync::atomic::Ordering::Relaxed) {
                Mode::OneShot
            } else {
                mode_for(git_version(&self.program))
            };
            self.auto = true;
        }
        match self.mode {
            Mode::Stdin { unbuffer } => self.ask(repo, base, ours, theirs, unbuffer, deadline),
            Mode::Unknown | Mode::OneShot => self.one_shot(repo, ours, theirs, deadline),
        }
    }

    /// One process for this merge, within what is left until `deadline`.
    fn one_shot(
        &mut self,
        repo: &git2::Repository,
        ours: Oid,
        theirs: Oid,
        deadline: Option<std::time::Instant>,
    ) -> Result<CleanMerge, MergeTreeError> {
        let left = deadline.map(|d| d.saturating_duration_since(std::time::Instant::now()));
        if left.is_some_and(|t| t.is_zero()) {
            return Ok(CleanMerge::TimedOut);
        }
        self.spawns += 1;
        one_shot(&self.program, repo, ours, theirs, left)
    }

    /// Hand one merge to the child (started if need be) and wait for its
    /// answer until `deadline`.
    fn ask(
        &mut self,
        repo: &git2::Repository,
        base: Oid,
        ours: Oid,
        theirs: Oid,
        unbuffer: bool,
        deadline: Option<std::time::Instant>,
    ) -> Result<CleanMerge, MergeTreeError> {
        use std::sync::mpsc::RecvTimeoutError;
        let line = format!("{base} -- {ours} {theirs}\n");
        for _ in 0..2 {
            let fresh = self.child.as_ref().is_none_or(|s| s.git_dir != repo.path());
            if fresh {
                self.stop();
                match self.start(repo, ours, unbuffer, deadline) {
                    Start::Ready => {}
                    Start::TimedOut => return Ok(CleanMerge::TimedOut),
                    Start::Unusable => {
                        self.mode = Mode::OneShot;
                        if self.auto {
                            STDIN_UNUSABLE.store(true, std::sync::atomic::Ordering::Relaxed);
                        }
                        return self.one_shot(repo, ours, theirs, deadline);
                    }
                }
            }
            let Some(s) = self.child.as_mut() else {
                break;
            };
            let wait = deadline.map(|d| d.saturating_duration_since(std::time::Instant::now()));
            match s.exchange(&line, wait) {
                Ok(answer) => return self.judge(repo, &answer),
                Err(RecvTimeoutError::Timeout) => {
                    self.stop();
                    return Ok(CleanMerge::TimedOut);
                }
                // A child started for an earlier merge has died since:
                // start a fresh one, once.
                Err(RecvTimeoutError::Disconnected) if !fresh => self.stop(),
                Err(RecvTimeoutError::Disconnected) => return self.failure(deadline),
            }
        }
        Err(MergeTreeError::Spawn(std::io::Error::other(
            "the `git merge-tree --stdin` child could not be kept running",
        )))
    }

    /// Start a child and check that it answers a trivial merge (`probe`
    /// with itself) in time: a git that keeps its answers buffered never
    /// would.
    fn start(
        &mut self,
        repo: &git2::Repository,
        probe: Oid,
        unbuffer: bool,
        deadline: Option<std::time::Instant>,
    ) -> Start {
        if self.spawn(repo, unbuffer).is_err() {
            return Start::Unusable;
        }
        let Some(s) = self.child.as_mut() else {
            return Start::Unusable;
        };
        let wait = match deadline {
            Some(d) => d
                .saturating_duration_since(std::time::Instant::now())
                .min(self.probe_wait),
            None => self.probe_wait,
        };
        let reply = s.exchange(&format!("{probe} -- {probe} {probe}\n"), Some(wait));
        match reply {
            Ok(answer) if answer.status == b"1" => Start::Ready,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout)
                if deadline.is_some_and(|d| std::time::Instant::now() >= d) =>
            {
                self.stop();
                Start::TimedOut
            }
            _ => {
                self.stop();
                Start::Unusable
            }
        }
    }

    /// What one answer of the child says.
    fn judge(
        &mut self,
        repo: &git2::Repository,
        answer: &Answer,
    ) -> Result<CleanMerge, MergeTreeError> {
        let tree = String::from_utf8_lossy(&answer.tree);
        match answer.status.as_slice() {
            b"1" => match crate::engine::parse_oid(&tree, repo.object_format()) {
                Some(t) => Ok(CleanMerge::Tree(t)),
                None => {
                    self.stop();
                    Err(MergeTreeError::NoTree(crate::sanitize::escape(&tree)))
                }
            },
            b"0" => Ok(CleanMerge::Conflicts),
            // Not an answer git gives: out of step; start afresh next time.
            status => {
                self.stop();
                Err(MergeTreeError::NoTree(crate::sanitize::escape(&format!(
                    "merge status `{}`, then `{tree}`",
                    String::from_utf8_lossy(status)
                ))))
            }
        }
    }

    /// The child closed its output without answering: wait for it to exit
    /// (within `deadline`) and report its exit status and standard error.
    fn failure(
        &mut self,
        deadline: Option<std::time::Instant>,
    ) -> Result<CleanMerge, MergeTreeError> {
        use std::time::{Duration, Instant};
        let Some(mut s) = self.child.take() else {
            return Err(MergeTreeError::Spawn(std::io::Error::other(
                "no `git merge-tree --stdin` child",
            )));
        };
        drop(s.stdin);
        let mut pause = Duration::from_millis(1);
        let status = loop {
            match s.child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) => {}
                Err(e) => {
                    let _ = s.child.kill();
                    let _ = s.child.wait();
                    return Err(MergeTreeError::Spawn(e));
                }
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                let _ = s.child.kill();
                let _ = s.child.wait();
                return Ok(CleanMerge::TimedOut);
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(20));
        };
        // Its last words, once drained; only briefly, as something the
        // child started may still hold the pipe open.
        let grace = Instant::now() + Duration::from_millis(200);
        while !s.stderr_thread.is_finished() && Instant::now() < grace {
            std::thread::sleep(Duration::from_millis(1));
        }
        let err = match s.stderr.lock() {
            Ok(kept) => kept.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        };
        Err(MergeTreeError::Failed(
            status,
            crate::sanitize::escape(String::from_utf8_lossy(&err).trim()),
        ))
    }

    /// Start a `--stdin` child for `repo`, with a thread parsing its
    /// answers and one draining its standard error.
    fn spawn(&mut self, repo: &git2::Repository, unbuffer: bool) -> Result<(), MergeTreeError> {
        use std::process::{Command, Stdio};
        let mut command = if unbuffer {
            let mut c = Command::new("stdbuf");
            c.arg("-o0").arg(&self.program);
            c
        } else {
            Command::new(&self.program)
        };
        // As in the one-shot path: no replace refs, as libgit2 sees it,
        // and no commit graph.
        git_env(&mut command, repo);
        let mut child = command
            .args(GIT_PINS)
            .arg("--git-dir")
            .arg(repo.path())
            .args([
                "merge-tree",
                "--write-tree",
                "--stdin",
                "-z",
                "--no-messages",
                "--name-only",
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(MergeTreeError::Spawn)?;
        self.spawns += 1;
        let (Some(stdin), Some(stdout), Some(stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            return Err(abandon(
                child,
                std::io::Error::other("no pipe to the child"),
            ));
        };
        let (tx, answers) = std::sync::mpsc::channel();
        let reader = std::thread::Builder::new()
            .name("merge-tree-out".into())
            .spawn(move || read_answers(stdout, &tx));
        if let Err(e) = reader {
            return Err(abandon(child, e));
        }
        let kept = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let drain = std::thread::Builder::new()
            .name("merge-tree-err".into())
            .spawn({
                let kept = std::sync::Arc::clone(&kept);
                move || drain_tail(stderr, &kept)
            });
        let stderr_thread = match drain {
            Ok(h) => h,
            Err(e) => return Err(abandon(child, e)),
        };
        self.child = Some(Served {
            git_dir: repo.path().to_path_buf(),
            child,
            stdin,
            answers,
            stderr: kept,
            stderr_thread,
        });
        Ok(())
    }

    /// Kill and reap the child, if any. Its threads end as its pipes close.
    fn stop(&mut self) {
        if let Some(Served {
            mut child, stdin, ..
        }) = self.child.take()
        {
            drop(stdin);
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Kill and reap a child that cannot be used; `e` says why.
fn abandon(mut child: std::process::Child, e: std::io::Error) -> MergeTreeError {
    let _ = child.kill();
    let _ = child.wait();
    MergeTreeError::Spawn(e)
}

/// The version of the git `program` (major, minor), if it says.
fn git_version(program: &std::ffi::OsStr) -> Option<(u32, u32)> {
    let out = std::process::Command::new(program)
        .arg("version")
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .output()
        .ok()
        .filter(|o| o.status.success())?;
    parse_version(&String::from_utf8_lossy(&out.stdout))
}

/// (major, minor) from `git version` output.
fn parse_version(version: &str) -> Option<(u32, u32)> {
    let v = version.trim().strip_prefix("git version ")?;
    let mut parts = v.split(|c: char| !c.is_ascii_digit());
    let major = parts.next()?.parse::<u32>().ok()?;
    let minor = parts.next()?.parse::<u32>().ok()?;
    Some((major, minor))
}

/// How to ask a git of `version` for merges.
fn mode_for(version: Option<(u32, u32)>) -> Mode {
    match version {
        Some(v) if v >= FLUSHING_GIT => Mode::Stdin { unbuffer: false },
        Some(v) if v >= STDIN_GIT => Mode::Stdin { unbuffer: true },
        _ => Mode::OneShot,
    }
}

/// One answer of a `--stdin` child: the merge status (`1` clean, `0`
/// conflicts) and the tree id, each cut to [`MERGE_TREE_OUTPUT`] bytes.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Answer {
    status: Vec<u8>,
    tree: Vec<u8>,
}

/// Splits the output of `git merge-tree --write-tree --stdin -z
/// --no-messages --name-only` into answers. Each is `<status> NUL <tree>
/// NUL`, then one `<path> NUL` per conflicted path (never empty), then
/// `NUL`: the first empty field after the tree ends the answer. Only
/// bounded prefixes of the status and the tree are kept, whatever the
/// child prints.
#[derive(Debug, Default)]
struct AnswerParser {
    /// Which field of the answer is being read (2: a conflicted path).
    field: usize,
    /// Whether that field has a byte yet.
    filled: bool,
    answer: Answer,
}

impl AnswerParser {
    fn feed(&mut self, bytes: &[u8], done: &mut dyn FnMut(Answer)) {
        for &b in bytes {
            if b == 0 {
                if self.field >= 2 && !self.filled {
                    done(std::mem::take(&mut self.answer));
                    self.field = 0;
                } else {
                    self.field = (self.field + 1).min(2);
                }
                self.filled = false;
                continue;
            }
            self.filled = true;
            let kept = match self.field {
                0 => &mut self.answer.status,
                1 => &mut self.answer.tree,
                _ => continue,
            };
            if kept.len() < MERGE_TREE_OUTPUT {
                kept.push(b);
            }
        }
    }
}

/// Parse a `--stdin` child's output into answers until it closes (or no
/// one listens any more).
fn read_answers(mut out: impl std::io::Read, tx: &std::sync::mpsc::Sender<Answer>) {
    let mut parser = AnswerParser::default();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match out.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => return,
        };
        let mut gone = false;
        parser.feed(buf.get(..n).unwrap_or_default(), &mut |a| {
            gone |= tx.send(a).is_err();
        });
        if gone {
            return;
        }
    }
}

/// Read `pipe` to its end, keeping its last [`MERGE_TREE_OUTPUT`] bytes.
fn drain_tail(mut pipe: impl std::io::Read, kept: &std::sync::Mutex<Vec<u8>>) {
    let mut buf = [0u8; 8192];
    loop {
        let n = match pipe.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => return,
        };
        let mut k = kept
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        k.extend_from_slice(buf.get(..n).unwrap_or_default());
        if k.len() > MERGE_TREE_OUTPUT {
            let cut = k.len() - MERGE_TREE_OUTPUT;
            k.drain(..cut);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::{Path, PathBuf};
    use std::time::{Duration, Instant};

    const LONG: Option<Duration> = Some(Duration::from_secs(120));

    /// A bare repository under the temp dir, removed when dropped.
    struct Repo {
        dir: PathBuf,
        repo: git2::Repository,
    }

    impl Drop for Repo {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    fn temp_repo(tag: &str) -> Repo {
        let dir = std::env::temp_dir().join(format!("cs-merge-tree-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let repo = git2::Repository::init_bare(&dir).unwrap();
        Repo { dir, repo }
    }

    fn commit(repo: &git2::Repository, parents: &[Oid], files: &[(&str, &str)]) -> Oid {
        let mut b = repo.treebuilder(None).unwrap();
        for (name, text) in files {
            let id = repo.blob(text.as_bytes()).unwrap();
            b.insert(name, id, 0o100644).unwrap();
        }
        let tree = repo.find_tree(b.write().unwrap()).unwrap();
        let sig = git2::Signature::new("t", "t@t", &git2::Time::new(1_700_000_000, 0)).unwrap();
        let parents: Vec<git2::Commit> = parents
            .iter()
            .map(|p| repo.find_commit(*p).unwrap())
            .collect();
        let parents: Vec<&git2::Commit> = parents.iter().collect();
        repo.commit(None, &sig, &sig, "m", &tree, &parents).unwrap()
    }

    /// Pairs to merge, with what each must give (`None`: the tree
    /// `git merge-tree --write-tree` prints when run by hand).
    fn cases(repo: &git2::Repository) -> Vec<(Oid, Oid, Option<CleanMerge>)> {
        let lines = |first: &str, last: &str| format!("{first}\n2\n3\n4\n5\n6\n7\n{last}\n");
        let root = commit(repo, &[], &[("f", &lines("1", "8"))]);
        let a = commit(repo, &[root], &[("f", &lines("one", "8"))]);
        let b = commit(repo, &[root], &[("f", &lines("1", "eight")), ("g", "g\n")]);
        let c = commit(repo, &[root], &[("f", &lines("uno", "8"))]);
        let d = commit(repo, &[a], &[("f", &lines("one", "8")), ("h", "h\n")]);
        let lone = commit(repo, &[], &[("x", "x\n")]);
        let both = [("f", lines("one", "eight")), ("g", "g\n".to_string())];
        let both: Vec<(&str, &str)> = both.iter().map(|(n, t)| (*n, t.as_str())).collect();
        let m1 = commit(repo, &[a, b], &both);
        let m2 = commit(repo, &[b, a], &both);
        vec![
            (a, b, None),
            (a, c, Some(CleanMerge::Conflicts)),
            (d, b, None),
            (a, lone, Some(CleanMerge::Unrelated)),
            (m1, m2, Some(CleanMerge::MultipleBases(2))),
            (b, a, None),
            (c, a, Some(CleanMerge::Conflicts)),
            (d, b, None),
        ]
    }

    /// `git merge-tree --write-tree` run by hand: the tree it prints, which
    /// must be a clean merge (exit 0).
    fn by_hand(dir: &Path, ours: Oid, theirs: Oid) -> CleanMerge {
        let out = git_merge_tree(dir, &[], ours, theirs);
        assert!(out.status.success(), "{out:?}");
        let text = String::from_utf8(out.stdout).unwrap();
        CleanMerge::Tree(Oid::from_str(text.lines().next().unwrap()).unwrap())
    }

    /// `git -c <config>... merge-tree --write-tree ours theirs`, run by hand.
    fn git_merge_tree(dir: &Path, config: &[&str], ours: Oid, theirs: Oid) -> std::process::Output {
        let mut c = std::process::Command::new("git");
        for kv in config {
            c.args(["-c", kv]);
        }
        c.arg("--git-dir")
            .arg(dir)
            .args(["merge-tree", "--write-tree"])
            .arg(ours.to_string())
            .arg(theirs.to_string())
            .output()
            .unwrap()
    }

    /// git, run as countersign runs it, does not take a commit's tree from
    /// a commit-graph file. Here the graph gives the merge base (which git
    /// finds itself in the one-process-per-merge path, reading what it
    /// does not name from the graph) the tree of the change main merged:
    /// git then merges as if the topic took that change back.
    #[test]
    fn a_forged_tree_in_a_commit_graph_is_not_read() {
        use sha2::Digest as _;
        let r = temp_repo("graph");
        let lines = |first: &str| format!("{first}\n2\n3\n4\n5\n6\n7\n8\n");
        let base = commit(&r.repo, &[], &[("f", &lines("vulnerable"))]);
        let fix = commit(&r.repo, &[base], &[("f", &lines("fixed"))]);
        let main = commit(&r.repo, &[base, fix], &[("f", &lines("fixed"))]);
        let topic = commit(
            &r.repo,
            &[base],
            &[("f", &lines("vulnerable")), ("g", "g\n")],
        );
        let want = commit(&r.repo, &[], &[("f", &lines("fixed")), ("g", "g\n")]);
        let want = r.repo.find_commit(want).unwrap().tree_id();
        let mut write = std::process::Command::new("git")
            .arg("--git-dir")
            .arg(&r.dir)
            .args(["-c", "commitGraph.generationVersion=1"])
            .args(["commit-graph", "write", "--stdin-commits", "--no-progress"])
            .stdin(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let ids = format!("{main}\n{topic}\n");
        std::io::Write::write_all(&mut write.stdin.take().unwrap(), ids.as_bytes()).unwrap();
        assert!(write.wait().unwrap().success());
        // The base's root tree in the graph becomes the fix's.
        let path = r.dir.join("objects/info/commit-graph");
        let mut graph = std::fs::read(&path).unwrap();
        let chunk = |name: &[u8]| {
            (0..usize::from(graph[6]))
                .map(|i| 8 + 12 * i)
                .find(|at| &graph[*at..*at + 4] == name)
                .map(|at| u64::from_be_bytes(graph[at + 4..at + 12].try_into().unwrap()) as usize)
                .unwrap()
        };
        let (oidl, cdat) = (chunk(b"OIDL"), chunk(b"CDAT"));
        let index = (0..(cdat - oidl) / 20)
            .find(|i| graph[oidl + 20 * i..oidl + 20 * i + 20] == *base.as_bytes())
            .unwrap();
        let fix_tree = r.repo.find_commit(fix).unwrap().tree_id();
        let at = cdat + index * 36;
        graph[at..at + 20].copy_from_slice(fix_tree.as_bytes());
        let end = graph.len() - 20;
        let sum = sha1collisiondetection::Sha1CD::digest(&graph[..end]);
        graph[end..].copy_from_slice(&sum);
        std::fs::write(&path, &graph).unwrap();
        // git by hand believes it.
        assert_eq!(
            by_hand(&r.dir, main, topic),
            CleanMerge::Tree(r.repo.find_commit(topic).unwrap().tree_id())
        );
        assert_eq!(
            clean_merge(&r.repo, main, topic, LONG).unwrap(),
            CleanMerge::Tree(want)
        );
        let mut server = MergeTreeServer::new();
        assert_eq!(
            server.clean_merge(&r.repo, main, topic, LONG).unwrap(),
            CleanMerge::Tree(want)
        );
    }

    /// Every case with the answer it must give.
    /// Whether git, run by hand with `config`, merges cleanly.
    fn by_hand_with(dir: &Path, config: &[&str], ours: Oid, theirs: Oid) -> bool {
        git_merge_tree(dir, config, ours, theirs).status.success()
    }

    /// The clean merge is git's default merge, whatever the repository's
    /// config and attribute files say: `merge=union` from
    /// `core.attributesFile` or from `attr.tree` (a tree a pusher could
    /// name) would make a conflict "clean"; in `info/attributes`, which git
    /// always reads, it is refused.
    #[test]
    fn attribute_files_do_not_change_the_clean_merge() {
        let r = temp_repo("attrs");
        let union = "* merge=union\n";
        let base = commit(&r.repo, &[], &[("f", "a\nb\nc\n")]);
        let ours = commit(
            &r.repo,
            &[base],
            &[("f", "a\nY\nc\n"), (".gitattributes", union)],
        );
        let theirs = commit(&r.repo, &[base], &[("f", "a\nX\nc\n")]);
        let mut server = MergeTreeServer::new();
        let both = |server: &mut MergeTreeServer| {
            (
                clean_merge(&r.repo, ours, theirs, LONG).map_err(|e| e.to_string()),
                server
                    .clean_merge(&r.repo, ours, theirs, LONG)
                    .map_err(|e| e.to_string()),
            )
        };
        let conflicts = (Ok(CleanMerge::Conflicts), Ok(CleanMerge::Conflicts));
        assert_eq!(both(&mut server), conflicts);
        // The hook user's attributes file, named in the repository's config.
        let file = r.dir.join("union-attributes");
        std::fs::write(&file, union).unwrap();
        let set = format!("core.attributesFile={}", file.display());
        assert!(
            by_hand_with(&r.dir, &[&set], ours, theirs),
            "git by hand unions"
        );
        let mut config = r.repo.config().unwrap();
        config
            .set_str("core.attributesFile", &file.display().to_string())
            .unwrap();
        let mut fresh = MergeTreeServer::new();
        assert_eq!(both(&mut fresh), conflicts);
        config.remove("core.attributesFile").unwrap();
        // attr.tree naming a commit whose tree has `.gitattributes`.
        r.repo
            .reference("refs/heads/attrs", ours, true, "t")
            .unwrap();
        assert!(by_hand_with(
            &r.dir,
            &["attr.tree=refs/heads/attrs"],
            ours,
            theirs
        ));
        config.set_str("attr.tree", "refs/heads/attrs").unwrap();
        let mut fresh = MergeTreeServer::new();
        assert_eq!(both(&mut fresh), conflicts);
        config.remove("attr.tree").unwrap();
        // info/attributes cannot be turned off: refused.
        std::fs::create_dir_all(r.dir.join("info")).unwrap();
        std::fs::write(r.dir.join("info/attributes"), union).unwrap();
        assert!(by_hand_with(&r.dir, &[], ours, theirs));
        let (one, served) = both(&mut server);
        for answer in [one, served] {
            let e = answer.unwrap_err();
            assert!(e.contains("info/attributes") && e.contains("merge"), "{e}");
        }
        std::fs::write(r.dir.join("info/attributes"), "*.png binary\n").unwrap();
        assert_eq!(both(&mut server), conflicts);
    }

    fn by_hand_all(r: &Repo) -> Vec<(Oid, Oid, CleanMerge)> {
        cases(&r.repo)
            .into_iter()
            .map(|(o, t, want)| (o, t, want.unwrap_or_else(|| by_hand(&r.dir, o, t))))
            .collect()
    }

    /// Whether the git here can serve merges over `--stdin` (it must be
    /// 2.42 or later, and older than 2.49 needs `stdbuf`).
    fn stdin_git() -> bool {
        let yes = match mode_for(git_version(std::ffi::OsStr::new("git"))) {
            Mode::Stdin { unbuffer: false } => true,
            Mode::Stdin { unbuffer: true } => std::process::Command::new("stdbuf")
                .args(["-o0", "true"])
                .status()
                .is_ok_and(|s| s.success()),
            _ => false,
        };
        if !yes {
            eprintln!("no git 2.42 or later (with stdbuf before 2.49) here: the --stdin server is not tested");
        }
        yes
    }

    fn alive(pid: u32) -> bool {
        // A zombie keeps its /proc entry: gone means killed and reaped.
        Path::new(&format!("/proc/{pid}")).exists()
    }

    fn pid(server: &MergeTreeServer) -> u32 {
        server.child.as_ref().map(|s| s.child.id()).unwrap()
    }

    /// A stand-in's answer to the probe, the first line it reads.
    const PROBED: &str =
        "read -r line; printf '1\\0%s\\0\\0' 0123456789abcdef0123456789abcdef01234567\n";

    /// A stand-in for git: a shell script.
    fn fake_git(tag: &str, script: &str) -> (PathBuf, MergeTreeServer) {
        use std::os::unix::fs::PermissionsExt;
        let path = std::env::temp_dir().join(format!("cs-fake-git-{tag}-{}", std::process::id()));
        std::fs::write(&path, format!("#!/bin/sh\n{script}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        let mut server = MergeTreeServer::new();
        server.program = path.clone().into();
        server.mode = Mode::Stdin { unbuffer: false };
        (path, server)
    }

    #[test]
    fn one_child_answers_every_merge_as_git_does_by_hand() {
        if !stdin_git() {
            return;
        }
        let r = temp_repo("one-child");
        let mut server = MergeTreeServer::new();
        for (ours, theirs, want) in cases(&r.repo) {
            let want = want.unwrap_or_else(|| by_hand(&r.dir, ours, theirs));
            let got = server.clean_merge(&r.repo, ours, theirs, LONG).unwrap();
            assert_eq!(got, want, "{ours} {theirs}");
            assert_eq!(clean_merge(&r.repo, ours, theirs, LONG).unwrap(), want);
            if let CleanMerge::Tree(t) = got {
                assert!(r.repo.find_tree(t).is_ok(), "the tree was written");
            }
        }
        assert!(matches!(server.mode, Mode::Stdin { .. }));
        assert_eq!(server.spawns(), 1, "one child for every merge");
        let child = pid(&server);
        assert!(alive(child));
        drop(server);
        assert!(
            !alive(child),
            "dropping the server kills and reaps its child"
        );
    }

    #[test]
    fn without_stdin_every_merge_is_its_own_process_with_the_same_answers() {
        let r = temp_repo("one-shot");
        let mut server = MergeTreeServer::new();
        server.mode = Mode::OneShot;
        let mut asked = 0;
        for (ours, theirs, want) in cases(&r.repo) {
            if !matches!(
                want,
                Some(CleanMerge::Unrelated | CleanMerge::MultipleBases(_))
            ) {
                asked += 1;
            }
            let want = want.unwrap_or_else(|| by_hand(&r.dir, ours, theirs));
            assert_eq!(
                server.clean_merge(&r.repo, ours, theirs, LONG).unwrap(),
                want
            );
        }
        assert_eq!(server.spawns(), asked);
        assert!(server.child.is_none());
    }

    #[test]
    fn a_late_answer_kills_the_child_and_a_later_merge_starts_another() {
        if !stdin_git() {
            return;
        }
        let r = temp_repo("timeout");
        let (ours, theirs, _) = cases(&r.repo)[0];
        let want = by_hand(&r.dir, ours, theirs);
        let mut server = MergeTreeServer::new();
        assert_eq!(
            server.clean_merge(&r.repo, ours, theirs, LONG).unwrap(),
            want
        );
        let first = pid(&server);
        let tiny = Some(Duration::from_nanos(1));
        assert_eq!(
            server.clean_merge(&r.repo, ours, theirs, tiny).unwrap(),
            CleanMerge::TimedOut
        );
        assert!(server.child.is_none());
        assert!(!alive(first), "the child was killed and reaped");
        assert_eq!(
            server.clean_merge(&r.repo, ours, theirs, LONG).unwrap(),
            want
        );
        assert_eq!(server.spawns(), 2);
        // A zero budget asks nobody.
        let zero = Some(Duration::ZERO);
        assert_eq!(
            server.clean_merge(&r.repo, ours, theirs, zero).unwrap(),
            CleanMerge::TimedOut
        );
        assert_eq!(server.spawns(), 2);
    }

    #[test]
    fn a_child_that_died_between_merges_is_replaced() {
        if !stdin_git() {
            return;
        }
        let r = temp_repo("died");
        let (ours, theirs, _) = cases(&r.repo)[0];
        let want = by_hand(&r.dir, ours, theirs);
        let mut server = MergeTreeServer::new();
        assert_eq!(
            server.clean_merge(&r.repo, ours, theirs, LONG).unwrap(),
            want
        );
        let s = server.child.as_mut().unwrap();
        s.child.kill().unwrap();
        s.child.wait().unwrap();
        assert_eq!(
            server.clean_merge(&r.repo, ours, theirs, LONG).unwrap(),
            want
        );
        assert_eq!(server.spawns(), 2);
    }

    #[test]
    fn a_failing_git_is_an_error_with_its_exit_status_and_last_words() {
        let r = temp_repo("fails");
        let (ours, theirs, _) = cases(&r.repo)[0];
        let (path, mut server) = fake_git(
            "fails",
            &format!("{PROBED}read -r line; echo chatter >&2; echo 'fatal: boom' >&2; exit 128"),
        );
        for n in 1..=2 {
            match server.clean_merge(&r.repo, ours, theirs, LONG) {
                Err(MergeTreeError::Failed(status, err)) => {
                    assert_eq!(status.code(), Some(128));
                    assert!(err.ends_with("fatal: boom"), "{err}");
                }
                other => panic!("{other:?}"),
            }
            assert!(server.child.is_none());
            assert_eq!(server.spawns(), n);
        }
        let _ = std::fs::remove_file(path);
    }

    #[test]
    fn the_childs_stderr_is_drained_while_it_answers() {
        let r = temp_repo("stderr");
        let (ours, theirs, _) = cases(&r.repo)[0];
        let tree = "0123456789abcdef0123456789abcdef01234567";
        // 1 MiB on stderr first: far more than a pipe holds.
        let (path, mut server) = fake_git(
            "stderr",
            &format!(
                "head -c 1048576 /dev/zero | tr '\\0' e >&2\n\
                 while read -r line; do printf '1\\0%s\\0\\0' {tree}; done"
            ),
        );
        for _ in 0..3 {
            let got = server.clean_merge(&r.repo, ours, theirs, LONG).unwrap();
            assert_eq!(got, CleanMerge::Tree(Oid::from_str(tree).unwrap()));
        }
        assert_eq!(server.spawns(), 1);
        let kept = server.child.as_ref().unwrap().stderr.lock().unwrap().len();
        assert!(kept <= MERGE_TREE_OUTPUT, "{kept}");
        drop(server);
        let _ = std::fs::remove_file(path);
    }

    #[test]
    fn the_child_inherits_this_processs_environment() {
        // In a hook, the environment carries the quarantine.
        let path = std::env::var("PATH").unwrap();
        if path.contains('\'') {
            return;
        }
        let r = temp_repo("environment");
        let (ours, theirs, _) = cases(&r.repo)[0];
        let (script, mut server) = fake_git(
            "environment",
            &format!(
                "{PROBED}read -r line\n\
                 if [ \"$PATH\" = '{path}' ]; then s=1; else s=0; fi\n\
                 printf '%s\\0%s\\0\\0' $s 0123456789abcdef0123456789abcdef01234567"
            ),
        );
        let got = server.clean_merge(&r.repo, ours, theirs, LONG).unwrap();
        assert!(matches!(got, CleanMerge::Tree(_)), "{got:?}");
        let _ = std::fs::remove_file(script);
    }

    #[test]
    fn a_child_that_prints_endlessly_times_out() {
        let r = temp_repo("endless");
        let (ours, theirs, _) = cases(&r.repo)[0];
        let (path, mut server) = fake_git("endless", &format!("{PROBED}exec yes"));
        let started = Instant::now();
        let budget = Some(Duration::from_millis(300));
        assert_eq!(
            server.clean_merge(&r.repo, ours, theirs, budget).unwrap(),
            CleanMerge::TimedOut
        );
        assert!(started.elapsed() < Duration::from_secs(20));
        assert!(server.child.is_none());
        // A status git never gives is an error, not an answer.
        let (path2, mut server) = fake_git(
            "garbled",
            &format!("{PROBED}while read -r line; do printf '2\\0%s\\0\\0' abc; done"),
        );
        assert!(matches!(
            server.clean_merge(&r.repo, ours, theirs, LONG),
            Err(MergeTreeError::NoTree(_))
        ));
        assert!(server.child.is_none());
        assert_eq!(server.mode, Mode::Stdin { unbuffer: false });
        assert_eq!(server.spawns(), 1);
        let _ = std::fs::remove_file(path);
        let _ = std::fs::remove_file(path2);
    }

    #[test]
    fn answers_are_split_wherever_reads_end_and_kept_bounded() {
        let tree = "0123456789abcdef0123456789abcdef01234567";
        let stream = format!("1\0{tree}\0\00\0{tree}\0a\0b c\0\00\0{tree}\0\01\0{tree}\0\0");
        let want = |status: &str| Answer {
            status: status.as_bytes().to_vec(),
            tree: tree.as_bytes().to_vec(),
        };
        let want = vec![want("1"), want("0"), want("0"), want("1")];
        for cut in 0..=stream.len() {
            let (head, tail) = stream.as_bytes().split_at(cut);
            let mut got = Vec::new();
            let mut parser = AnswerParser::default();
            parser.feed(head, &mut |a| got.push(a));
            parser.feed(tail, &mut |a| got.push(a));
            assert_eq!(got, want, "cut at {cut}");
        }
        // Endless fields keep a bounded prefix and answer nothing.
        let mut parser = AnswerParser::default();
        let mut got = Vec::new();
        for field in 0..3 {
            for _ in 0..1000 {
                parser.feed(&[b'y'; 1024], &mut |a| got.push(a));
            }
            if field < 2 {
                parser.feed(b"\0", &mut |a| got.push(a));
            }
        }
        assert!(got.is_empty());
        assert_eq!(parser.answer.status.len(), MERGE_TREE_OUTPUT);
        assert_eq!(parser.answer.tree.len(), MERGE_TREE_OUTPUT);
    }

    #[test]
    fn a_child_that_cannot_serve_falls_back_to_one_process_per_merge() {
        let r = temp_repo("unusable");
        let real = by_hand_all(&r);
        for (tag, script) in [
            // Keeps its answers to itself (as git before 2.49 does).
            ("mute", "case \"$*\" in *--stdin*) exec cat >/dev/null;; esac\nexec git \"$@\""),
            // Knows no `--stdin` (git before 2.39).
            ("old", "case \"$*\" in *--stdin*) echo \"error: unknown option \\`stdin'\" >&2; exit 129;; esac\nexec git \"$@\""),
        ] {
            let (path, mut server) = fake_git(tag, script);
            server.probe_wait = Duration::from_millis(300);
            let mut asked = 1;
            for (ours, theirs, want) in &real {
                if !matches!(want, CleanMerge::Unrelated | CleanMerge::MultipleBases(_)) {
                    asked += 1;
                }
                let got = server.clean_merge(&r.repo, *ours, *theirs, LONG).unwrap();
                assert_eq!(&got, want, "{tag}");
            }
            assert_eq!(server.mode, Mode::OneShot, "{tag}");
            assert_eq!(server.spawns(), asked, "{tag}: one --stdin child, then one per merge");
            assert!(server.child.is_none());
            let _ = std::fs::remove_file(path);
        }
        // The git here, unbuffered or not: before 2.49 only `stdbuf` makes
        // it answer while it waits for the next merge.
        let version = git_version(std::ffi::OsStr::new("git"));
        if mode_for(version) != Mode::OneShot {
            let mut server = MergeTreeServer::new();
            server.mode = Mode::Stdin { unbuffer: false };
            server.probe_wait = Duration::from_millis(500);
            for (ours, theirs, want) in &real {
                assert_eq!(
                    &server.clean_merge(&r.repo, *ours, *theirs, LONG).unwrap(),
                    want
                );
            }
            let flushes = version.is_some_and(|v| v >= FLUSHING_GIT);
            assert_eq!(server.mode == Mode::OneShot, !flushes, "{version:?}");
        }
    }

    #[test]
    fn git_2_42_serves_merges_over_stdin_and_before_2_49_unbuffered() {
        for (version, mode) in [
            ("git version 2.47.3\n", Mode::Stdin { unbuffer: true }),
            ("git version 2.42.0", Mode::Stdin { unbuffer: true }),
            (
                "git version 2.48.1.windows.1",
                Mode::Stdin { unbuffer: true },
            ),
            ("git version 2.49.0", Mode::Stdin { unbuffer: false }),
            ("git version 2.51.0.rc1", Mode::Stdin { unbuffer: false }),
            ("git version 3.0.0", Mode::Stdin { unbuffer: false }),
            ("git version 2.41.2", Mode::OneShot),
            ("git version 2.40.0", Mode::OneShot),
            ("git version 2.39.5 (Apple Git-154)", Mode::OneShot),
            ("git version 2", Mode::OneShot),
            ("git version x.y", Mode::OneShot),
            ("", Mode::OneShot),
            ("hub version 2.49.0", Mode::OneShot),
        ] {
            assert_eq!(mode_for(parse_version(version)), mode, "{version}");
        }
    }
}
