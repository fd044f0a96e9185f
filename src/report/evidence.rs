//! Compliance evidence: what reached a protected ref, who did what, and
//! whether every change followed the rules.
//!
//! An auditor asks "show me that every change to `main` since the last audit
//! was written, approved and merged by different, authorized people". This
//! module answers from the repository itself: for every change on the ref's
//! first-parent chain (from the tip back to `--since`, or to the root) it
//! **re-verifies** the change with the same engine the hook runs
//! ([`Verifier::for_history`], `old` = the first parent, `new` = the
//! change), under the current policy. Nothing is taken from the audit log,
//! from commit names or e-mails, or from any earlier verdict: a report
//! cannot be better than what the signatures in the history prove.
//!
//! Each change is judged as of `now` (the time passed to [`build`]), as
//! `countersign verify` does: a key that has since expired or been revoked
//! shows as an exception; a retired key's earlier signatures still count.
//! Changes at or below a rule's `baseline` are listed as *grandfathered*
//! and are not counted in the compliance share.
//!
//! [`build`] returns an [`Evidence`] value, rendered by [`markdown`] or
//! [`html`] (one self-contained file, no scripts, no external resources), or
//! serialized as JSON with serde. Every string that comes from the history
//! (subjects, approval `by=` claims, finding messages quoting them) is
//! escaped by the renderers: control and bidi characters as `\u{..}`
//! ([`crate::sanitize::escape`]), then for the target format.
//!
//! # JSON fields (stable)
//!
//! Top level ([`Evidence`]):
//! - `format`: always `"countersign-evidence/1"`.
//! - `generated_at` (Unix seconds), `generated_at_utc` (text): the `now`
//!   the changes were judged at.
//! - `repository`: the policy's `repository.id`; `policy`: the policy path.
//! - `ref`: the protected ref whose rules apply; `resolved_from`: the local
//!   ref that was read (`refs/heads/…` or `refs/remotes/origin/…`); `tip`.
//! - `since`: `null`, or `{ "kind": "revision", "value", "commit" }` (that
//!   commit and its history excluded), or `{ "kind": "date", "value",
//!   "time" }` (changes with a committer time at or after `time`).
//! - `rules`: labels of the rules that apply to the ref (empty:
//!   unprotected).
//! - `changes`: [`Change`]s, newest first.
//! - `summary`: [`Summary`].
//!
//! A change ([`Change`]): `commit`, `subject`, `committed_at`,
//! `committed_at_utc`, `kind` (`"merge"` or `"direct"`), `parents`,
//! `status` (`"compliant"`, `"exceptions"`, `"grandfathered"` or
//! `"unprotected"`), `signed_by` (the landing commit's signer: `{ person,
//! roles }` or `null`), `merger` (merges only: person id or `null`),
//! `clean_merge` (`true`/`false` when a merge rule judged the tree, else
//! `null`), `topic_commits` (`[{ commit, subject, signer, roles, codes }]`:
//! the commits the change brought besides itself), `approvals` (`[{ index,
//! claimed_by, person, counted_as, issued_at, issued_at_utc, eligible,
//! status }]`), `rules` (`[{ rule, status, findings }]`, `status` being
//! `"compliant"`, `"exceptions"` or `"grandfathered"`), and `findings`
//! (`[{ code, commit, subject, rule, message }]`, all of the change's).
//!
//! The summary ([`Summary`]): `changes`, `grandfathered`, `unprotected`,
//! `assessed` (= changes − grandfathered − unprotected), `compliant`,
//! `with_exceptions`, `share` (`"1 of 2"`), `percent_compliant` (`null`
//! when nothing was assessed), `people` (`{ authors, approvers, mergers }`,
//! each `[{ person, roles, changes }]`), and `exceptions` (`[{ code, count,
//! commits }]`: per finding code, how many findings and which commits).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use git2::{ObjectType, Oid, Repository, Sort};
use serde::Serialize;

use crate::engine::{RefUpdate, Signer, Verifier};
use crate::finding::Finding;
use crate::policy::Policy;
use crate::sanitize::escape;
use crate::time::{self, Timestamp};

/// The format tag written into every report.
pub const FORMAT: &str = "countersign-evidence/1";

/// Why a report could not be built. Every case is a usage or repository
/// problem; a report that lists exceptions is not an error.
#[derive(Debug, thiserror::Error)]
pub enum EvidenceError {
    /// The ref exists neither locally nor as `refs/remotes/origin/…`.
    #[error("cannot resolve the ref `{0}`: neither {1} exists in this repository")]
    RefNotFound(String, String),
    /// The ref does not point at (or peel to) a commit.
    #[error("`{0}` does not point at a commit")]
    NotACommit(String),
    /// `--since` is neither a date nor a revision.
    #[error("cannot read `--since {0}`: it is neither a date (2026-11-29, 2026-11-29T10:00:00Z) nor a revision in this repository")]
    BadSince(String),
    /// `--since` names a revision that is not in the ref's history.
    #[error("`--since {0}` ({1}) is not in the history of {2}")]
    SinceNotAncestor(String, String, String),
    /// The repository could not be read.
    #[error("cannot read the repository: {0}")]
    Git(String),
}

impl EvidenceError {
    /// What to do about it.
    pub fn help(&self) -> &'static str {
        match self {
            EvidenceError::RefNotFound(..) => {
                "name a branch this clone holds (`--ref main`), or `git fetch origin` first"
            }
            EvidenceError::NotACommit(_) => "name a branch, not a tag of a tree or blob",
            EvidenceError::BadSince(_) => {
                "give a date, a date-time, or a commit of the ref's history (exclusive)"
            }
            EvidenceError::SinceNotAncestor(..) => {
                "name a commit that the ref's history contains, e.g. the tip at the last audit"
            }
            EvidenceError::Git(_) => "check that this is a complete (not shallow) clone",
        }
    }
}

fn git_err(e: git2::Error) -> EvidenceError {
    EvidenceError::Git(e.message().to_string())
}

/// Where the report starts.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Since {
    /// Changes after this revision (it and its history excluded).
    Revision {
        /// As given.
        value: String,
        /// The commit it names.
        commit: String,
    },
    /// Changes whose committer time is at or after `time`.
    Date {
        /// As given.
        value: String,
        /// Unix seconds.
        time: Timestamp,
    },
}

/// The whole report.
#[derive(Debug, Clone, Serialize)]
pub struct Evidence {
    /// Always [`FORMAT`].
    pub format: &'static str,
    /// When the changes were judged (Unix seconds).
    pub generated_at: Timestamp,
    /// The same, readable.
    pub generated_at_utc: String,
    /// The policy's repository id.
    pub repository: String,
    /// The policy file.
    pub policy: String,
    /// The ref whose rules apply.
    #[serde(rename = "ref")]
    pub refname: String,
    /// The local ref that was read.
    pub resolved_from: String,
    /// The tip that was read.
    pub tip: String,
    /// Where the report starts; `None`: at the root.
    pub since: Option<Since>,
    /// Labels of the rules that apply to the ref.
    pub rules: Vec<String>,
    /// Which policy judged the changes: the current one, or for each
    /// change the one in force when it landed (and where that came from).
    pub judged_by: String,
    /// Every change, newest first.
    pub changes: Vec<Change>,
    /// Counts, people, exceptions.
    pub summary: Summary,
    /// Policy ref mode: every access change since the trust root (who
    /// granted what to whom, approved by whom, when); empty in file mode.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub access_changes: Vec<crate::governance::log::Change>,
    /// The signed ref-state log the report was computed against (its last
    /// entry, whether it verified, and whether the ref's tip is the value
    /// it recorded), when the clone has `refs/countersign/log`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ref_log: Option<String>,
}

/// A person and the roles that let them sign.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct SignedBy {
    /// Person id from the policy.
    pub person: String,
    /// The roles the rules accepted them in.
    pub roles: Vec<String>,
}

/// One commit a change brought besides the landing commit.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct TopicCommit {
    /// Commit id.
    pub commit: String,
    /// First line of its message.
    pub subject: String,
    /// Verified signer's person id, if a rule verified one.
    pub signer: Option<String>,
    /// The roles the signer was accepted in.
    pub roles: Vec<String>,
    /// Codes of findings about this commit.
    pub codes: Vec<String>,
}

/// One approval trailer of a merge, as the engine judged it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ApprovalEvidence {
    /// Position among the trailers (1-based).
    pub index: usize,
    /// The unverified `by=` claim.
    pub claimed_by: String,
    /// The person whose key signed it, if it verified.
    pub person: Option<String>,
    /// The role slot it filled, if it counted.
    pub counted_as: Option<String>,
    /// When the approver signed it (Unix seconds), as the approval states.
    pub issued_at: Option<Timestamp>,
    /// The same, readable.
    pub issued_at_utc: Option<String>,
    /// It verified and binds this change.
    pub eligible: bool,
    /// Why it counts or does not.
    pub status: String,
}

/// What one rule concluded about one change.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Every check ran and passed.
    Compliant,
    /// At least one finding.
    Exceptions,
    /// At or below the rule's baseline: not checked.
    Grandfathered,
    /// No rule applies to the ref.
    Unprotected,
}

impl Status {
    /// The JSON name.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Compliant => "compliant",
            Status::Exceptions => "exceptions",
            Status::Grandfathered => "grandfathered",
            Status::Unprotected => "unprotected",
        }
    }
}

/// A finding, as the report shows it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct FindingEvidence {
    /// Stable finding code.
    pub code: String,
    /// The object concerned, if any.
    pub commit: Option<String>,
    /// Its subject.
    pub subject: Option<String>,
    /// The rule's label.
    pub rule: Option<String>,
    /// What was found.
    pub message: String,
}

impl From<&Finding> for FindingEvidence {
    fn from(f: &Finding) -> Self {
        FindingEvidence {
            code: f.code.as_str().to_string(),
            commit: f.commit.clone(),
            subject: f.subject.clone(),
            rule: f.rule.clone(),
            message: f.message.clone(),
        }
    }
}

/// One rule's outcome for one change.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct RuleOutcome {
    /// The rule's label.
    pub rule: String,
    /// Compliant, exceptions or grandfathered.
    pub status: Status,
    /// Its findings.
    pub findings: Vec<FindingEvidence>,
}

/// How the change reached the ref.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// A commit with two or more parents.
    Merge,
    /// A single-parent (or root) commit.
    Direct,
}

/// One change that reached the ref.
#[derive(Debug, Clone, Serialize)]
pub struct Change {
    /// The commit on the first-parent chain.
    pub commit: String,
    /// First line of its message.
    pub subject: String,
    /// Committer time (Unix seconds).
    pub committed_at: Timestamp,
    /// The same, readable.
    pub committed_at_utc: String,
    /// Merge or direct commit.
    pub kind: Kind,
    /// Parent ids.
    pub parents: Vec<String>,
    /// The policy this change was judged by, when not the current one (the
    /// policy in force when it landed, per the audit log).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub judged_by: Option<String>,
    /// Overall: exceptions if any rule found one; else compliant if any
    /// rule checked it; else grandfathered (or unprotected).
    pub status: Status,
    /// Who signed the landing commit, if a rule verified it.
    pub signed_by: Option<SignedBy>,
    /// For merges: the merger the merge rule verified (or the signer).
    pub merger: Option<String>,
    /// For merges judged by a merge rule: whether the tree is the clean
    /// merge of the parents.
    pub clean_merge: Option<bool>,
    /// The commits the change brought besides itself.
    pub topic_commits: Vec<TopicCommit>,
    /// The approval trailers and what became of them.
    pub approvals: Vec<ApprovalEvidence>,
    /// Each rule's outcome.
    pub rules: Vec<RuleOutcome>,
    /// Every finding about the change.
    pub findings: Vec<FindingEvidence>,
}

/// A person in the summary, with the roles they acted in.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct PersonEvidence {
    /// Person id.
    pub person: String,
    /// The roles they acted in.
    pub roles: Vec<String>,
    /// In how many changes.
    pub changes: usize,
}

/// People by the part they played.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct People {
    /// Verified signers of topic commits and of direct commits.
    pub authors: Vec<PersonEvidence>,
    /// People whose approvals counted.
    pub approvers: Vec<PersonEvidence>,
    /// Verified signers of merges.
    pub mergers: Vec<PersonEvidence>,
}

/// One finding code across the report.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ExceptionCount {
    /// Finding code.
    pub code: String,
    /// How many findings.
    pub count: usize,
    /// The commits concerned (the finding's object, else the change).
    pub commits: Vec<String>,
}

/// The summary.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Summary {
    /// Changes listed.
    pub changes: usize,
    /// Of those, grandfathered by a baseline.
    pub grandfathered: usize,
    /// Of those, on a ref no rule protects.
    pub unprotected: usize,
    /// Changes judged: `changes - grandfathered - unprotected`.
    pub assessed: usize,
    /// Judged changes with no finding.
    pub compliant: usize,
    /// Judged changes with findings.
    pub with_exceptions: usize,
    /// `"<compliant> of <assessed>"`.
    pub share: String,
    /// Percentage compliant, one decimal; `None` when nothing was assessed.
    pub percent_compliant: Option<f64>,
    /// Who took part.
    pub people: People,
    /// Per finding code.
    pub exceptions: Vec<ExceptionCount>,
}

/// Resolve `refname` (`main` or `refs/heads/main`): the local branch, else
/// `refs/remotes/origin/<name>`. Returns (ref whose rules apply, ref read,
/// commit).
///
/// # Errors
///
/// [`EvidenceError`] when the ref does not exist or does not name a commit.
pub fn resolve_ref(
    repo: &Repository,
    refname: &str,
) -> Result<(String, String, Oid), EvidenceError> {
    let full = if refname.starts_with("refs/") {
        refname.to_string()
    } else {
        format!("refs/heads/{refname}")
    };
    let mut candidates = vec![full.clone()];
    if let Some(short) = full.strip_prefix("refs/heads/") {
        candidates.push(format!("refs/remotes/origin/{short}"));
    }
    for c in &candidates {
        let Ok(r) = repo.find_reference(c) else {
            continue;
        };
        let id = r
            .peel_to_commit()
            .map_err(|_| EvidenceError::NotACommit(c.clone()))?
            .id();
        return Ok((full, c.clone(), id));
    }
    Err(EvidenceError::RefNotFound(
        refname.to_string(),
        candidates.join(" nor "),
    ))
}

/// Read `--since`: a TOML date or date-time, else a revision.
///
/// # Errors
///
/// [`EvidenceError`] when `s` is neither a date nor a revision of the repository.
pub fn parse_since(repo: &Repository, s: &str) -> Result<Since, EvidenceError> {
    if let Ok(t) = s
        .trim()
        .parse::<toml_edit::Datetime>()
        .map_err(|_| ())
        .and_then(|d| time::from_toml(&d).map_err(|_| ()))
    {
        return Ok(Since::Date {
            value: s.to_string(),
            time: t,
        });
    }
    let commit = repo
        .revparse_single(s)
        .and_then(|o| o.peel_to_commit())
        .map_err(|_| EvidenceError::BadSince(s.to_string()))?;
    Ok(Since::Revision {
        value: s.to_string(),
        commit: commit.id().to_string(),
    })
}

/// The policies in force when changes landed (from the audit log): a
/// change in `by_commit` is judged by `policies[i]`, every other change by
/// the current policy.
#[derive(Default)]
pub struct LandedUnder {
    /// Each policy and how to name it.
    pub policies: Vec<(Policy, String)>,
    /// Change -> index into `policies`.
    pub by_commit: HashMap<Oid, usize>,
    /// Where the mapping came from, for the report's header.
    pub source: String,
}

/// Build the report for `refname` from the history, under `policy`, judged
/// at `now`. `since`: see [`parse_since`]; `None` goes back to the root.
/// `cache`: use (and fill) the repository's verification cache.
///
/// # Errors
///
/// [`EvidenceError`] when the history cannot be read.
pub fn build(
    repo: &Repository,
    policy: &Policy,
    refname: &str,
    since: Option<&str>,
    now: Timestamp,
    landed: Option<&LandedUnder>,
    cache: bool,
) -> Result<Evidence, EvidenceError> {
    let verifier_for = |p| {
        let v = Verifier::new(repo, p, now).for_history();
        if cache {
            v.with_cache()
        } else {
            v
        }
    };
    let (target, resolved_from, tip) = resolve_ref(repo, refname)?;
    let since = since.map(|s| parse_since(repo, s)).transpose()?;

    // The first-parent chain, newest first.
    let mut walk = repo.revwalk().map_err(git_err)?;
    walk.set_sorting(Sort::TOPOLOGICAL).map_err(git_err)?;
    walk.simplify_first_parent().map_err(git_err)?;
    walk.push(tip).map_err(git_err)?;
    if let Some(Since::Revision { value, commit }) = &since {
        let id = Oid::from_str(commit).map_err(git_err)?;
        if id != tip && !repo.graph_descendant_of(tip, id).map_err(git_err)? {
            return Err(EvidenceError::SinceNotAncestor(
                value.clone(),
                short(commit).to_string(),
                resolved_from,
            ));
        }
        walk.hide(id).map_err(git_err)?;
    }
    let chain: Vec<Oid> = walk.collect::<Result<_, _>>().map_err(git_err)?;

    let mut verifier = verifier_for(policy);
    let mut earlier: Vec<Option<Verifier<'_>>> = landed
        .map(|l| l.policies.iter().map(|_| None).collect())
        .unwrap_or_default();
    let rules = verifier.rules_for(&target);
    let rule_labels: Vec<String> = rules.iter().map(|r| r.label()).collect();
    let baselines: Vec<Option<Oid>> = rules
        .iter()
        .map(|r| r.baseline.as_deref().and_then(|b| Oid::from_str(b).ok()))
        .collect();

    // The commits at or below each baseline, walked once on first use.
    let mut below: HashMap<Oid, Below> = HashMap::new();
    // The signatures of the chain's commits are verified ahead, a chunk
    // at a time, on every core; each change is then judged as before,
    // from the verifier's cache. Not for a date window (most of the chain
    // may be skipped), nor for commits no rule would check (below the
    // baseline of every rule that checks commits).
    let signing_baselines: Option<Vec<Option<Oid>>> =
        rules.iter().any(|r| r.commit_signers.is_some()).then(|| {
            rules
                .iter()
                .zip(&baselines)
                .filter(|(r, _)| r.commit_signers.is_some())
                .map(|(_, b)| *b)
                .collect()
        });
    let ahead_of_time = !matches!(since, Some(Since::Date { .. }));
    let mut changes = Vec::new();
    for (i, &id) in chain.iter().enumerate() {
        if let (Some(bases), true, 0) = (&signing_baselines, ahead_of_time, i % PREFETCH) {
            let mut ahead = Vec::new();
            for &c in chain.iter().skip(i).take(PREFETCH) {
                // A change judged by an earlier policy has its own verifier.
                if landed.is_some_and(|l| l.by_commit.contains_key(&c)) {
                    continue;
                }
                let checked_by_some = bases.iter().any(|b| match b {
                    None => true,
                    Some(b) => !below
                        .entry(*b)
                        .or_insert_with(|| Below::walk(repo, *b))
                        .contains(repo, c),
                });
                if checked_by_some {
                    ahead.push(c);
                }
            }
            verifier.prefetch(&ahead, ObjectType::Commit);
        }
        let commit = repo.find_commit(id).map_err(git_err)?;
        let committed_at = commit.committer().when().seconds();
        if let Some(Since::Date { time, .. }) = &since {
            if committed_at < *time {
                continue;
            }
        }
        let parents: Vec<Oid> = commit.parent_ids().collect();
        let subject =
            String::from_utf8_lossy(commit.summary_bytes().unwrap_or_default()).into_owned();
        drop(commit);
        let old = parents.first().copied().unwrap_or(Oid::ZERO_SHA1);
        let update = [RefUpdate {
            old,
            new: id,
            refname: target.clone(),
        }];
        let under = landed.and_then(|l| {
            let i = *l.by_commit.get(&id)?;
            Some((i, l.policies.get(i)?))
        });
        let (decision, judged_by) = match under {
            Some((i, (p, name))) => {
                let v = earlier[i].get_or_insert_with(|| verifier_for(p));
                (v.decide(&update), Some(name.clone()))
            }
            None => (verifier.decide(&update), None),
        };
        let (signers, merges) = match decision.updates.into_iter().next() {
            Some(u) => (u.signers, u.merges),
            None => (Vec::new(), Vec::new()),
        };
        let findings: Vec<FindingEvidence> = decision.findings.iter().map(Into::into).collect();

        // Each rule's outcome.
        let mut outcomes = Vec::new();
        for (label, baseline) in rule_labels.iter().zip(&baselines) {
            let mine: Vec<FindingEvidence> = findings
                .iter()
                .filter(|f| f.rule.as_deref() == Some(label.as_str()))
                .cloned()
                .collect();
            let status = if !mine.is_empty() {
                Status::Exceptions
            } else if baseline.is_some_and(|b| {
                below
                    .entry(b)
                    .or_insert_with(|| Below::walk(repo, b))
                    .contains(repo, id)
            }) {
                Status::Grandfathered
            } else {
                Status::Compliant
            };
            outcomes.push(RuleOutcome {
                rule: label.clone(),
                status,
                findings: mine,
            });
        }
        // Findings no rule claims would otherwise go unseen.
        let orphans: Vec<FindingEvidence> = findings
            .iter()
            .filter(|f| !f.rule.as_ref().is_some_and(|r| rule_labels.contains(r)))
            .cloned()
            .collect();
        if !orphans.is_empty() {
            outcomes.push(RuleOutcome {
                rule: "(verification)".into(),
                status: Status::Exceptions,
                findings: orphans,
            });
        }
        let status = overall(&outcomes);

        // Who signed what.
        let signed_by = signed_by(&signers, &id.to_string());
        let topic_commits = topic_commits(repo, id, &parents, &signers, &findings)?;
        let record = merges.into_iter().find(|m| m.commit == id.to_string());
        let kind = if parents.len() > 1 {
            Kind::Merge
        } else {
            Kind::Direct
        };
        let merger = match (&kind, &record) {
            (Kind::Merge, Some(r)) => r.merger.clone(),
            (Kind::Merge, None) => signed_by.as_ref().map(|s| s.person.clone()),
            (Kind::Direct, _) => None,
        };
        let approvals = record
            .as_ref()
            .map(|r| {
                r.approvals
                    .iter()
                    .map(|a| ApprovalEvidence {
                        index: a.index,
                        claimed_by: a.claimed_by.clone(),
                        person: a.person.clone(),
                        counted_as: a.counted_as.clone(),
                        issued_at: a.issued_at,
                        issued_at_utc: a.issued_at.map(time::format),
                        eligible: a.eligible,
                        status: a.status.clone(),
                    })
                    .collect()
            })
            .unwrap_or_default();
        changes.push(Change {
            commit: id.to_string(),
            subject,
            committed_at,
            committed_at_utc: time::format(committed_at),
            kind,
            parents: parents.iter().map(Oid::to_string).collect(),
            status,
            signed_by,
            merger,
            clean_merge: record
                .as_ref()
                .filter(|_| kind == Kind::Merge)
                .map(|r| r.clean),
            topic_commits,
            approvals,
            rules: outcomes,
            findings,
            judged_by,
        });
    }
    // The cache only saves later runs time: a failure to write it changes
    // nothing in this report.
    let _ = verifier.persist_cache();
    for v in earlier.iter_mut().flatten() {
        let _ = v.persist_cache();
    }
    let summary = summarize(&changes);
    Ok(Evidence {
        format: FORMAT,
        generated_at: now,
        generated_at_utc: time::format(now),
        repository: policy.repository_id.clone(),
        policy: policy.path.display().to_string(),
        refname: target,
        resolved_from,
        tip: tip.to_string(),
        since,
        rules: rule_labels,
        judged_by: match landed {
            Some(l) => format!(
                "each change by the policy in force when it landed, per {} ({} change(s) mapped); others by the current policy",
                l.source,
                l.by_commit.len()
            ),
            None => "the current policy (no audit log: the policy in force when each change landed is not known)".into(),
        },
        changes,
        summary,
        access_changes: Vec::new(),
        ref_log: None,
    })
}

/// Commits of the chain whose signatures are verified together.
const PREFETCH: usize = 1024;

/// The baseline and its ancestors, found by one walk: asking
/// `graph_descendant_of` for every change was quadratic in the history.
struct Below {
    baseline: Oid,
    /// `None` when the walk failed (say, a missing object): then each
    /// commit is asked about on its own, as before.
    set: Option<HashSet<Oid>>,
}

impl Below {
    fn walk(repo: &Repository, baseline: Oid) -> Below {
        let set = repo.revwalk().and_then(|mut w| {
            w.push(baseline)?;
            w.collect::<Result<HashSet<Oid>, _>>()
        });
        Below {
            baseline,
            set: set.ok(),
        }
    }

    fn contains(&self, repo: &Repository, id: Oid) -> bool {
        match &self.set {
            Some(set) => set.contains(&id),
            None => is_at_or_below(repo, id, self.baseline),
        }
    }
}

/// `id` is the baseline or one of its ancestors.
fn is_at_or_below(repo: &Repository, id: Oid, baseline: Oid) -> bool {
    id == baseline || repo.graph_descendant_of(baseline, id).unwrap_or(false)
}

/// The overall status of a change from its rules' outcomes.
fn overall(outcomes: &[RuleOutcome]) -> Status {
    if outcomes.iter().any(|o| o.status == Status::Exceptions) {
        Status::Exceptions
    } else if outcomes.iter().any(|o| o.status == Status::Compliant) {
        Status::Compliant
    } else if outcomes.is_empty() {
        Status::Unprotected
    } else {
        Status::Grandfathered
    }
}

/// The signer of `object` across the rules, roles merged.
fn signed_by(signers: &[Signer], object: &str) -> Option<SignedBy> {
    let mine: Vec<&Signer> = signers.iter().filter(|s| s.object.is(object)).collect();
    let first = mine.first()?;
    let roles: BTreeSet<String> = mine
        .iter()
        .flat_map(|s| s.who.roles.iter().cloned())
        .collect();
    Some(SignedBy {
        person: first.who.person.clone(),
        roles: roles.into_iter().collect(),
    })
}

/// The commits `id` brings besides itself: reachable from it, not from its
/// first parent.
fn topic_commits(
    repo: &Repository,
    id: Oid,
    parents: &[Oid],
    signers: &[Signer],
    findings: &[FindingEvidence],
) -> Result<Vec<TopicCommit>, EvidenceError> {
    if parents.len() < 2 {
        return Ok(Vec::new());
    }
    let mut walk = repo.revwalk().map_err(git_err)?;
    walk.set_sorting(Sort::TOPOLOGICAL | Sort::REVERSE)
        .map_err(git_err)?;
    for p in &parents[1..] {
        walk.push(*p).map_err(git_err)?;
    }
    walk.hide(parents[0]).map_err(git_err)?;
    let mut out = Vec::new();
    for c in walk {
        let c = c.map_err(git_err)?;
        if c == id {
            continue;
        }
        let hex = c.to_string();
        let subject = repo
            .find_commit(c)
            .map(|k| String::from_utf8_lossy(k.summary_bytes().unwrap_or_default()).into_owned())
            .unwrap_or_default();
        let who = signed_by(signers, &hex);
        let codes: BTreeSet<String> = findings
            .iter()
            .filter(|f| f.commit.as_deref() == Some(hex.as_str()))
            .map(|f| f.code.clone())
            .collect();
        out.push(TopicCommit {
            commit: hex,
            subject,
            signer: who.as_ref().map(|w| w.person.clone()),
            roles: who.map(|w| w.roles).unwrap_or_default(),
            codes: codes.into_iter().collect(),
        });
    }
    Ok(out)
}

/// `"<n> of <d>"` and the percentage (one decimal), `None` for `d = 0`.
pub fn share(compliant: usize, assessed: usize) -> (String, Option<f64>) {
    let pct = if assessed == 0 {
        None
    } else {
        Some((compliant as f64 * 1000.0 / assessed as f64).round() / 10.0)
    };
    (format!("{compliant} of {assessed}"), pct)
}

/// Count the changes, the people and the exceptions.
pub fn summarize(changes: &[Change]) -> Summary {
    let count = |s: Status| changes.iter().filter(|c| c.status == s).count();
    let grandfathered = count(Status::Grandfathered);
    let unprotected = count(Status::Unprotected);
    let compliant = count(Status::Compliant);
    let with_exceptions = count(Status::Exceptions);
    let assessed = changes.len() - grandfathered - unprotected;
    let (share, percent_compliant) = share(compliant, assessed);

    // person -> (roles, set of changes)
    type Tally = BTreeMap<String, (BTreeSet<String>, BTreeSet<String>)>;
    let mut authors: Tally = BTreeMap::new();
    let mut approvers: Tally = BTreeMap::new();
    let mut mergers: Tally = BTreeMap::new();
    let add = |t: &mut Tally, person: &str, roles: &[String], change: &str| {
        let e = t.entry(person.to_string()).or_default();
        e.0.extend(roles.iter().cloned());
        e.1.insert(change.to_string());
    };
    let mut exceptions: BTreeMap<String, (usize, Vec<String>)> = BTreeMap::new();
    for c in changes {
        match c.kind {
            Kind::Merge => {
                if let Some(m) = &c.merger {
                    let roles = c
                        .signed_by
                        .as_ref()
                        .filter(|s| &s.person == m)
                        .map(|s| s.roles.clone())
                        .unwrap_or_default();
                    add(&mut mergers, m, &roles, &c.commit);
                }
            }
            Kind::Direct => {
                if let Some(s) = &c.signed_by {
                    add(&mut authors, &s.person, &s.roles, &c.commit);
                }
            }
        }
        for t in &c.topic_commits {
            if let Some(p) = &t.signer {
                add(&mut authors, p, &t.roles, &c.commit);
            }
        }
        for a in c.approvals.iter().filter(|a| a.eligible) {
            if let Some(p) = &a.person {
                let roles: Vec<String> = a.counted_as.iter().cloned().collect();
                add(&mut approvers, p, &roles, &c.commit);
            }
        }
        for f in &c.findings {
            let e = exceptions.entry(f.code.clone()).or_default();
            e.0 += 1;
            let at = f.commit.clone().unwrap_or_else(|| c.commit.clone());
            if !e.1.contains(&at) {
                e.1.push(at);
            }
        }
    }
    let list = |t: Tally| -> Vec<PersonEvidence> {
        t.into_iter()
            .map(|(person, (roles, ch))| PersonEvidence {
                person,
                roles: roles.into_iter().collect(),
                changes: ch.len(),
            })
            .collect()
    };
    Summary {
        changes: changes.len(),
        grandfathered,
        unprotected,
        assessed,
        compliant,
        with_exceptions,
        share,
        percent_compliant,
        people: People {
            authors: list(authors),
            approvers: list(approvers),
            mergers: list(mergers),
        },
        exceptions: exceptions
            .into_iter()
            .map(|(code, (count, commits))| ExceptionCount {
                code,
                count,
                commits,
            })
            .collect(),
    }
}

/// Render as JSON (pretty); the field names are documented in the module
/// docs.
pub fn json(e: &Evidence) -> String {
    serde_json::to_string_pretty(e)
        .unwrap_or_else(|err| format!("{{\"format\":\"{FORMAT}\",\"error\":\"{err}\"}}"))
}

// ---------------------------------------------------------------------------
// Rendering helpers
// ---------------------------------------------------------------------------

fn short(id: &str) -> &str {
    &id[..id.len().min(12)]
}

/// Escape text for HTML element content and quoted attribute values, after
/// making control and bidi characters visible.
pub fn html_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in escape(text).chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Escape text for Markdown (inline, table cells included): control and
/// bidi characters made visible, inline markup characters backslash-escaped,
/// and a leading block marker (`#`, `-`, `+`, `=`) too.
pub fn md_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut leading = true;
    for c in escape(text).chars() {
        let block_marker = leading && matches!(c, '#' | '-' | '+' | '=');
        if block_marker
            || matches!(
                c,
                '\\' | '`' | '*' | '_' | '[' | ']' | '<' | '>' | '|' | '!' | '~' | '&' | '{' | '}'
            )
        {
            out.push('\\');
        }
        leading = leading && c.is_whitespace();
        out.push(c);
    }
    out
}

fn roles_text(roles: &[String]) -> String {
    if roles.is_empty() {
        String::new()
    } else {
        format!(" ({})", roles.join(", "))
    }
}

fn people_line(list: &[PersonEvidence], esc: fn(&str) -> String) -> String {
    if list.is_empty() {
        return "none".into();
    }
    list.iter()
        .map(|p| {
            format!(
                "{}{}, {} change(s)",
                esc(&p.person),
                esc(&roles_text(&p.roles)),
                p.changes
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

fn percent_text(s: &Summary) -> String {
    match s.percent_compliant {
        Some(p) => format!(" ({p:.1}%)"),
        None => String::new(),
    }
}

fn since_text(e: &Evidence) -> String {
    match &e.since {
        None => "whole history (to the root)".into(),
        Some(Since::Revision { value, commit }) => {
            format!("after `{}` ({}), exclusive", value, short(commit))
        }
        Some(Since::Date { value, time }) => {
            format!(
                "committed at or after `{}` ({})",
                value,
                time::format(*time)
            )
        }
    }
}

/// What to say of a commit without a verified signer.
fn unsigned_text(s: Status) -> &'static str {
    match s {
        Status::Grandfathered => "not checked (grandfathered)",
        Status::Unprotected => "not checked (unprotected)",
        _ => "not verified",
    }
}

fn status_word(s: Status) -> &'static str {
    match s {
        Status::Compliant => "compliant",
        Status::Exceptions => "EXCEPTIONS",
        Status::Grandfathered => "grandfathered (at or below the rule's baseline)",
        Status::Unprotected => "unprotected (no rule applies)",
    }
}

const PREAMBLE: &str = "Every change below was re-verified from the repository's history with the hook's own engine, under the policy named above (\"Judged by\"); the audit log is used only to know which policy was in force when a change landed, never for a verdict, and names and e-mails in commits are never trusted.";

// ---------------------------------------------------------------------------
// Markdown
// ---------------------------------------------------------------------------

/// Render as readable Markdown.
pub fn markdown(e: &Evidence) -> String {
    let mut o = String::new();
    md_header(&mut o, e);
    md_summary(&mut o, &e.summary);
    md_changes(&mut o, e);
    md_access(&mut o, e);
    o
}

/// Markdown: the policy ref's access changes, when there are any.
fn md_access(o: &mut String, e: &Evidence) {
    if e.access_changes.is_empty() {
        return;
    }
    let m = md_escape;
    o.push_str("\n## Access changes\n\nEvery change of the policy (refs/meta/countersign) since the trust root, each judged by the policy before it.\n");
    for c in &e.access_changes {
        o.push_str(&format!(
            "\n### `{}` {} ({})\n\n",
            short(&c.commit),
            m(&c.subject),
            time::format(c.time)
        ));
        o.push_str(&format!(
            "- Signed by: {}\n- Approved by: {}\n- Authorized by the policy before it: {}\n",
            c.signer.as_deref().map_or("-".to_string(), m),
            if c.approvers.is_empty() {
                "-".to_string()
            } else {
                m(&c.approvers.join(", "))
            },
            if c.authorized {
                "yes".to_string()
            } else {
                format!("**no**: {}", m(&c.problems.join("; ")))
            }
        ));
        for d in &c.diff {
            o.push_str(&format!("    {}\n", crate::sanitize::escape(d)));
        }
    }
}

/// Markdown: the title, what was judged, and the preamble.
/// The header's ref-state log line when the clone has none.
const NO_REF_LOG: &str = "not checked: this clone has no refs/countersign/log (fetch it, then `countersign audit verify --remote origin`)";

fn md_header(o: &mut String, e: &Evidence) {
    let m = md_escape;
    o.push_str(&format!("# Compliance evidence: {}\n\n", m(&e.refname)));
    o.push_str(&format!(
        "- Repository: {}\n- Policy: {}\n- Judged by: {}\n- Ref-state log: {}\n- Ref: {} (read from {}, tip `{}`)\n- Range: {}\n- Judged at: {}\n- Rules: {}\n\n",
        m(&e.repository),
        m(&e.policy),
        m(&e.judged_by),
        m(e.ref_log.as_deref().unwrap_or(NO_REF_LOG)),
        m(&e.refname),
        m(&e.resolved_from),
        short(&e.tip),
        m(&since_text(e)),
        e.generated_at_utc,
        if e.rules.is_empty() {
            "none: this ref is unprotected".to_string()
        } else {
            e.rules.iter().map(|r| m(r)).collect::<Vec<_>>().join("; ")
        }
    ));
    o.push_str(PREAMBLE);
}

/// Markdown: the summary, people and exceptions.
fn md_summary(o: &mut String, s: &Summary) {
    let m = md_escape;
    o.push_str("\n\n## Summary\n\n| | |\n|---|---|\n");
    o.push_str(&format!("| Changes | {} |\n", s.changes));
    o.push_str(&format!(
        "| Fully compliant | {}{} |\n",
        s.share,
        percent_text(s)
    ));
    o.push_str(&format!("| With exceptions | {} |\n", s.with_exceptions));
    o.push_str(&format!(
        "| Grandfathered (not counted) | {} |\n",
        s.grandfathered
    ));
    if s.unprotected > 0 {
        o.push_str(&format!(
            "| Unprotected (not counted) | {} |\n",
            s.unprotected
        ));
    }
    o.push_str("\n### People\n\n");
    o.push_str(&format!(
        "- Authors: {}\n",
        people_line(&s.people.authors, m)
    ));
    o.push_str(&format!(
        "- Approvers: {}\n",
        people_line(&s.people.approvers, m)
    ));
    o.push_str(&format!(
        "- Mergers: {}\n",
        people_line(&s.people.mergers, m)
    ));
    o.push_str("\n### Exceptions\n\n");
    if s.exceptions.is_empty() {
        o.push_str("None.\n");
    } else {
        o.push_str("| Code | Count | Commits |\n|---|---|---|\n");
        for x in &s.exceptions {
            let commits: Vec<String> = x
                .commits
                .iter()
                .map(|c| format!("`{}`", short(c)))
                .collect();
            o.push_str(&format!(
                "| `{}` | {} | {} |\n",
                x.code,
                x.count,
                commits.join(", ")
            ));
        }
    }
}

/// Markdown: every change, with its commits, approvals and rules.
fn md_changes(o: &mut String, e: &Evidence) {
    let m = md_escape;
    o.push_str("\n## Changes\n");
    if e.changes.is_empty() {
        o.push_str("\nNo change in this range.\n");
    }
    for (n, c) in e.changes.iter().enumerate() {
        o.push_str(&format!(
            "\n### {}. `{}` {}\n\n",
            n + 1,
            short(&c.commit),
            m(&c.subject)
        ));
        o.push_str(&format!("- Status: **{}**\n", status_word(c.status)));
        let parents: Vec<String> = c
            .parents
            .iter()
            .map(|p| format!("`{}`", short(p)))
            .collect();
        o.push_str(&format!(
            "- Kind: {}{}; committed {}\n",
            match c.kind {
                Kind::Merge => "merge",
                Kind::Direct => "direct commit",
            },
            if parents.is_empty() {
                " (root)".to_string()
            } else {
                format!(" of {}", parents.join(", "))
            },
            c.committed_at_utc
        ));
        o.push_str(&format!("- Commit: `{}`\n", c.commit));
        if let Some(j) = &c.judged_by {
            o.push_str(&format!(
                "- Judged by: {} (in force when it landed)\n",
                m(j)
            ));
        }
        match c.kind {
            Kind::Merge => {
                o.push_str(&format!(
                    "- Merger: {}\n",
                    match (&c.merger, &c.signed_by) {
                        (Some(p), Some(s)) if &s.person == p =>
                            format!("{}{}", m(p), m(&roles_text(&s.roles))),
                        (Some(p), _) => m(p),
                        (None, _) => "not verified".into(),
                    }
                ));
                if let Some(clean) = c.clean_merge {
                    o.push_str(&format!(
                        "- Tree: {}\n",
                        if clean {
                            "the clean merge of its parents"
                        } else {
                            "NOT the clean merge of its parents"
                        }
                    ));
                }
            }
            Kind::Direct => {
                o.push_str(&format!(
                    "- Signed by: {}\n",
                    match &c.signed_by {
                        Some(s) => format!("{}{}", m(&s.person), m(&roles_text(&s.roles))),
                        None => unsigned_text(c.status).into(),
                    }
                ));
            }
        }
        if !c.topic_commits.is_empty() {
            o.push_str("- Topic commits:\n");
            for t in &c.topic_commits {
                let who = match &t.signer {
                    Some(p) => format!("signed by {}{}", m(p), m(&roles_text(&t.roles))),
                    None => "no verified signer".into(),
                };
                let codes = if t.codes.is_empty() {
                    String::new()
                } else {
                    format!(" [{}]", t.codes.join(", "))
                };
                o.push_str(&format!(
                    "  - `{}` {}: {}{}\n",
                    short(&t.commit),
                    m(&t.subject),
                    who,
                    codes
                ));
            }
        }
        if c.kind == Kind::Merge || !c.approvals.is_empty() {
            if c.approvals.is_empty() {
                o.push_str("- Approvals: none\n");
            } else {
                o.push_str("- Approvals:\n\n  | # | Approver | Counted as | Approved at | Claimed by | Status |\n  |---|---|---|---|---|---|\n");
                for a in &c.approvals {
                    o.push_str(&format!(
                        "  | {} | {} | {} | {} | {} | {} |\n",
                        a.index,
                        a.person
                            .as_deref()
                            .map(m)
                            .unwrap_or_else(|| "unverified".into()),
                        a.counted_as.as_deref().map(m).unwrap_or_else(|| "-".into()),
                        a.issued_at_utc.as_deref().unwrap_or("-"),
                        m(&a.claimed_by),
                        m(&a.status)
                    ));
                }
                o.push('\n');
            }
        }
        o.push_str("- Rules:\n");
        if c.rules.is_empty() {
            o.push_str("  - none apply\n");
        }
        for r in &c.rules {
            o.push_str(&format!("  - {}: {}\n", m(&r.rule), status_word(r.status)));
            for f in &r.findings {
                let at = f
                    .commit
                    .as_deref()
                    .map(|x| format!(" at `{}`", short(x)))
                    .unwrap_or_default();
                let mut lines = f.message.lines();
                o.push_str(&format!(
                    "    - `{}`{}: {}\n",
                    f.code,
                    at,
                    m(lines.next().unwrap_or(""))
                ));
                for l in lines {
                    o.push_str(&format!("      {}\n", m(l.trim())));
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------
// HTML
// ---------------------------------------------------------------------------

const CSS: &str = "body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:70em;padding:0 1em;color:#1b1f23}\
h1{font-size:1.6em}h2{border-bottom:1px solid #ddd;padding-bottom:.2em}\
table{border-collapse:collapse;margin:.5em 0}th,td{border:1px solid #ccc;padding:.25em .5em;text-align:left;vertical-align:top}\
th{background:#f3f4f6}code{font:12px ui-monospace,monospace;background:#f3f4f6;padding:0 .2em}\
.compliant{color:#116329;font-weight:600}.exceptions{color:#b31d28;font-weight:600}\
.grandfathered,.unprotected{color:#6a737d;font-weight:600}\
section.change{border:1px solid #ddd;border-radius:6px;padding:.5em 1em;margin:1em 0}\
section.change.exceptions{border-color:#b31d28;font-weight:normal}\
pre{white-space:pre-wrap;margin:.2em 0}";

fn status_span(s: Status) -> String {
    format!(
        "<span class=\"{}\">{}</span>",
        s.as_str(),
        html_escape(status_word(s))
    )
}

fn code_short(id: &str) -> String {
    format!(
        "<code title=\"{}\">{}</code>",
        html_escape(id),
        html_escape(short(id))
    )
}

/// Render as one self-contained HTML file: inline CSS, no scripts, no
/// external resources; every string from the history HTML-escaped.
pub fn html(e: &Evidence) -> String {
    let mut o = String::new();
    html_header(&mut o, e);
    html_summary(&mut o, &e.summary);
    html_changes(&mut o, e);
    html_access(&mut o, e);
    o.push_str("</main>\n</body>\n</html>\n");
    o
}

/// HTML: the head, the title, what was judged, and the preamble.
fn html_header(o: &mut String, e: &Evidence) {
    let h = html_escape;
    o.push_str("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
    o.push_str("<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">\n");
    o.push_str(&format!(
        "<title>Compliance evidence: {}</title>\n<style>{CSS}</style>\n</head>\n<body>\n<main>\n",
        h(&e.refname)
    ));
    o.push_str(&format!(
        "<h1>Compliance evidence: {}</h1>\n<table>\n",
        h(&e.refname)
    ));
    let rules = if e.rules.is_empty() {
        "none: this ref is unprotected".to_string()
    } else {
        e.rules.iter().map(|r| h(r)).collect::<Vec<_>>().join("; ")
    };
    for (k, v) in [
        ("Repository", h(&e.repository)),
        ("Policy", h(&e.policy)),
        ("Judged by", h(&e.judged_by)),
        (
            "Ref-state log",
            h(e.ref_log.as_deref().unwrap_or(NO_REF_LOG)),
        ),
        (
            "Ref",
            format!(
                "{} (read from {}, tip {})",
                h(&e.refname),
                h(&e.resolved_from),
                code_short(&e.tip)
            ),
        ),
        ("Range", h(&since_text(e))),
        ("Judged at", h(&e.generated_at_utc)),
        ("Rules", rules),
    ] {
        o.push_str(&format!("<tr><th>{k}</th><td>{v}</td></tr>\n"));
    }
    o.push_str("</table>\n");
    o.push_str(&format!("<p>{}</p>\n", h(PREAMBLE)));
}

/// HTML: the summary, people and exceptions.
fn html_summary(o: &mut String, s: &Summary) {
    let h = html_escape;
    o.push_str("<h2>Summary</h2>\n<table>\n");
    o.push_str(&format!(
        "<tr><th>Changes</th><td>{}</td></tr>\n",
        s.changes
    ));
    o.push_str(&format!(
        "<tr><th>Fully compliant</th><td>{}{}</td></tr>\n",
        h(&s.share),
        h(&percent_text(s))
    ));
    o.push_str(&format!(
        "<tr><th>With exceptions</th><td>{}</td></tr>\n",
        s.with_exceptions
    ));
    o.push_str(&format!(
        "<tr><th>Grandfathered (not counted)</th><td>{}</td></tr>\n",
        s.grandfathered
    ));
    if s.unprotected > 0 {
        o.push_str(&format!(
            "<tr><th>Unprotected (not counted)</th><td>{}</td></tr>\n",
            s.unprotected
        ));
    }
    o.push_str("</table>\n<h3>People</h3>\n<table>\n<tr><th>Part</th><th>People (roles, changes)</th></tr>\n");
    for (k, list) in [
        ("Authors", &s.people.authors),
        ("Approvers", &s.people.approvers),
        ("Mergers", &s.people.mergers),
    ] {
        o.push_str(&format!(
            "<tr><th>{k}</th><td>{}</td></tr>\n",
            people_line(list, html_escape)
        ));
    }
    o.push_str("</table>\n<h3>Exceptions</h3>\n");
    if s.exceptions.is_empty() {
        o.push_str("<p>None.</p>\n");
    } else {
        o.push_str("<table>\n<tr><th>Code</th><th>Count</th><th>Commits</th></tr>\n");
        for x in &s.exceptions {
            let commits: Vec<String> = x.commits.iter().map(|c| code_short(c)).collect();
            o.push_str(&format!(
                "<tr><td><code>{}</code></td><td>{}</td><td>{}</td></tr>\n",
                h(&x.code),
                x.count,
                commits.join(", ")
            ));
        }
        o.push_str("</table>\n");
    }
}

/// HTML: every change, with its commits, approvals and rules.
/// HTML: the policy ref's access changes, when there are any.
fn html_access(o: &mut String, e: &Evidence) {
    if e.access_changes.is_empty() {
        return;
    }
    let h = html_escape;
    o.push_str("<h2>Access changes</h2>\n<p>Every change of the policy (refs/meta/countersign) since the trust root, each judged by the policy before it.</p>\n");
    for c in &e.access_changes {
        o.push_str(&format!(
            "<section class=\"change\">\n<h3>{} {} ({})</h3>\n<p>Signed by: {}<br>Approved by: {}<br>Authorized by the policy before it: {}</p>\n<pre>",
            code_short(&c.commit),
            h(&c.subject),
            time::format(c.time),
            h(c.signer.as_deref().unwrap_or("-")),
            h(&if c.approvers.is_empty() { "-".to_string() } else { c.approvers.join(", ") }),
            if c.authorized { "yes".to_string() } else { format!("<strong>no</strong>: {}", h(&c.problems.join("; "))) }
        ));
        for d in &c.diff {
            o.push_str(&h(d));
            o.push('\n');
        }
        o.push_str("</pre>\n</section>\n");
    }
}

fn html_changes(o: &mut String, e: &Evidence) {
    let h = html_escape;
    o.push_str("<h2>Changes</h2>\n");
    if e.changes.is_empty() {
        o.push_str("<p>No change in this range.</p>\n");
    }
    for (n, c) in e.changes.iter().enumerate() {
        o.push_str(&format!(
            "<section class=\"change {}\">\n<h3>{}. {} {}</h3>\n<table>\n",
            c.status.as_str(),
            n + 1,
            code_short(&c.commit),
            h(&c.subject)
        ));
        let parents: Vec<String> = c.parents.iter().map(|p| code_short(p)).collect();
        let mut row =
            |k: &str, v: String| o.push_str(&format!("<tr><th>{k}</th><td>{v}</td></tr>\n"));
        row("Status", status_span(c.status));
        if let Some(j) = &c.judged_by {
            row("Judged by", format!("{} (in force when it landed)", h(j)));
        }
        row(
            "Kind",
            format!(
                "{}{}",
                match c.kind {
                    Kind::Merge => "merge",
                    Kind::Direct => "direct commit",
                },
                if parents.is_empty() {
                    " (root)".to_string()
                } else {
                    format!(" of {}", parents.join(", "))
                }
            ),
        );
        row("Commit", format!("<code>{}</code>", h(&c.commit)));
        row("Committed", h(&c.committed_at_utc));
        match c.kind {
            Kind::Merge => {
                row(
                    "Merger",
                    match (&c.merger, &c.signed_by) {
                        (Some(p), Some(sb)) if &sb.person == p => {
                            format!("{}{}", h(p), h(&roles_text(&sb.roles)))
                        }
                        (Some(p), _) => h(p),
                        (None, _) => "not verified".into(),
                    },
                );
                if let Some(clean) = c.clean_merge {
                    row(
                        "Tree",
                        if clean {
                            "the clean merge of its parents".into()
                        } else {
                            "<span class=\"exceptions\">NOT the clean merge of its parents</span>"
                                .into()
                        },
                    );
                }
            }
            Kind::Direct => row(
                "Signed by",
                match &c.signed_by {
                    Some(sb) => format!("{}{}", h(&sb.person), h(&roles_text(&sb.roles))),
                    None => unsigned_text(c.status).into(),
                },
            ),
        }
        o.push_str("</table>\n");
        if !c.topic_commits.is_empty() {
            o.push_str("<h4>Topic commits</h4>\n<table>\n<tr><th>Commit</th><th>Subject</th><th>Signed by</th><th>Findings</th></tr>\n");
            for t in &c.topic_commits {
                o.push_str(&format!(
                    "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>\n",
                    code_short(&t.commit),
                    h(&t.subject),
                    match &t.signer {
                        Some(p) => format!("{}{}", h(p), h(&roles_text(&t.roles))),
                        None => "no verified signer".into(),
                    },
                    h(&t.codes.join(", "))
                ));
            }
            o.push_str("</table>\n");
        }
        if c.kind == Kind::Merge || !c.approvals.is_empty() {
            o.push_str("<h4>Approvals</h4>\n");
            if c.approvals.is_empty() {
                o.push_str("<p>None.</p>\n");
            } else {
                o.push_str("<table>\n<tr><th>#</th><th>Approver</th><th>Counted as</th><th>Approved at</th><th>Claimed by</th><th>Status</th></tr>\n");
                for a in &c.approvals {
                    o.push_str(&format!(
                        "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>\n",
                        a.index,
                        a.person.as_deref().map(h).unwrap_or_else(|| "unverified".into()),
                        a.counted_as.as_deref().map(h).unwrap_or_else(|| "-".into()),
                        h(a.issued_at_utc.as_deref().unwrap_or("-")),
                        h(&a.claimed_by),
                        h(&a.status)
                    ));
                }
                o.push_str("</table>\n");
            }
        }
        o.push_str("<h4>Rules</h4>\n<ul>\n");
        if c.rules.is_empty() {
            o.push_str("<li>none apply</li>\n");
        }
        for r in &c.rules {
            o.push_str(&format!("<li>{}: {}", h(&r.rule), status_span(r.status)));
            if !r.findings.is_empty() {
                o.push_str("\n<ul>\n");
                for f in &r.findings {
                    let at = f
                        .commit
                        .as_deref()
                        .map(|x| format!(" at {}", code_short(x)))
                        .unwrap_or_default();
                    o.push_str(&format!(
                        "<li><code>{}</code>{}<pre>{}</pre></li>\n",
                        h(&f.code),
                        at,
                        f.message
                            .lines()
                            .map(html_escape)
                            .collect::<Vec<_>>()
                            .join("\n")
                    ));
                }
                o.push_str("</ul>\n");
            }
            o.push_str("</li>\n");
        }
        o.push_str("</ul>\n</section>\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_escape_neutralizes_markup_and_controls() {
        assert_eq!(
            html_escape("<script>alert('x')</script> & \"q\""),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;q&quot;"
        );
        assert_eq!(html_escape("a\u{202e}b\u{1b}[2J"), "a\\u{202e}b\\u{1b}[2J");
        assert_eq!(html_escape("plain text"), "plain text");
        assert!(!html_escape("<img src=x onerror=alert(1)>").contains('<'));
    }

    #[test]
    fn md_escape_neutralizes_markup() {
        assert_eq!(md_escape("a|b"), "a\\|b");
        assert_eq!(md_escape("<script>"), "\\<script\\>");
        assert_eq!(md_escape("[x](http://e)"), "\\[x\\](http://e)");
        assert_eq!(md_escape("line\nbreak"), "line\\\\nbreak");
        assert_eq!(md_escape("plain text"), "plain text");
        assert_eq!(md_escape("# heading"), "\\# heading");
        assert_eq!(md_escape("rule #1"), "rule #1");
        assert_eq!(md_escape("- item"), "\\- item");
    }

    #[test]
    fn share_arithmetic() {
        assert_eq!(share(1, 2), ("1 of 2".to_string(), Some(50.0)));
        assert_eq!(share(1, 3), ("1 of 3".to_string(), Some(33.3)));
        assert_eq!(share(2, 3), ("2 of 3".to_string(), Some(66.7)));
        assert_eq!(share(0, 0), ("0 of 0".to_string(), None));
        assert_eq!(share(5, 5).1, Some(100.0));
    }

    fn change(id: &str, kind: Kind, status: Status) -> Change {
        Change {
            judged_by: None,
            commit: id.into(),
            subject: format!("change {id}"),
            committed_at: 0,
            committed_at_utc: time::format(0),
            kind,
            parents: Vec::new(),
            status,
            signed_by: None,
            merger: None,
            clean_merge: None,
            topic_commits: Vec::new(),
            approvals: Vec::new(),
            rules: Vec::new(),
            findings: Vec::new(),
        }
    }

    fn finding(code: &str, commit: Option<&str>) -> FindingEvidence {
        FindingEvidence {
            code: code.into(),
            commit: commit.map(String::from),
            subject: None,
            rule: Some("rule #1".into()),
            message: "m".into(),
        }
    }

    #[test]
    fn summary_counts_people_and_exceptions() {
        let mut merge = change("m1", Kind::Merge, Status::Compliant);
        merge.merger = Some("mia".into());
        merge.signed_by = Some(SignedBy {
            person: "mia".into(),
            roles: vec!["maintainer".into()],
        });
        merge.topic_commits = vec![TopicCommit {
            commit: "t1".into(),
            subject: "s".into(),
            signer: Some("alice".into()),
            roles: vec!["developer".into()],
            codes: Vec::new(),
        }];
        let approval = |p: &str, role: Option<&str>, eligible: bool| ApprovalEvidence {
            index: 1,
            claimed_by: format!("{p}@example.com"),
            person: Some(p.into()),
            counted_as: role.map(String::from),
            issued_at: Some(0),
            issued_at_utc: Some(time::format(0)),
            eligible,
            status: String::new(),
        };
        merge.approvals = vec![
            approval("bob", Some("reviewer"), true),
            approval("sam", Some("security"), true),
            approval("eve", None, false),
        ];
        let mut direct = change("d1", Kind::Direct, Status::Exceptions);
        direct.findings = vec![
            finding("unsigned-commit", Some("d1")),
            finding("merge-required", Some("d1")),
        ];
        let mut direct2 = change("d2", Kind::Direct, Status::Exceptions);
        direct2.findings = vec![finding("unsigned-commit", None)];
        direct2.signed_by = None;
        let mut signed = change("d3", Kind::Direct, Status::Compliant);
        signed.signed_by = Some(SignedBy {
            person: "alice".into(),
            roles: vec!["developer".into()],
        });
        let old = change("b0", Kind::Direct, Status::Grandfathered);
        let s = summarize(&[merge, direct, direct2, signed, old]);
        assert_eq!(s.changes, 5);
        assert_eq!(s.grandfathered, 1);
        assert_eq!(s.assessed, 4);
        assert_eq!(s.compliant, 2);
        assert_eq!(s.with_exceptions, 2);
        assert_eq!(s.share, "2 of 4");
        assert_eq!(s.percent_compliant, Some(50.0));
        assert_eq!(
            s.people.authors,
            vec![PersonEvidence {
                person: "alice".into(),
                roles: vec!["developer".into()],
                changes: 2
            }]
        );
        let approvers: Vec<(&str, &[String])> = s
            .people
            .approvers
            .iter()
            .map(|p| (p.person.as_str(), p.roles.as_slice()))
            .collect();
        assert_eq!(
            approvers,
            vec![
                ("bob", &["reviewer".to_string()][..]),
                ("sam", &["security".to_string()][..])
            ]
        );
        assert_eq!(s.people.mergers[0].person, "mia");
        assert_eq!(s.people.mergers[0].roles, vec!["maintainer".to_string()]);
        let codes: Vec<(&str, usize, Vec<&str>)> = s
            .exceptions
            .iter()
            .map(|x| {
                (
                    x.code.as_str(),
                    x.count,
                    x.commits.iter().map(String::as_str).collect(),
                )
            })
            .collect();
        assert_eq!(
            codes,
            vec![
                ("merge-required", 1, vec!["d1"]),
                ("unsigned-commit", 2, vec!["d1", "d2"]),
            ]
        );
    }

    #[test]
    fn overall_status_prefers_exceptions() {
        let o = |s: Status| RuleOutcome {
            rule: "r".into(),
            status: s,
            findings: Vec::new(),
        };
        assert_eq!(overall(&[]), Status::Unprotected);
        assert_eq!(
            overall(&[o(Status::Grandfathered), o(Status::Compliant)]),
            Status::Compliant
        );
        assert_eq!(
            overall(&[o(Status::Compliant), o(Status::Exceptions)]),
            Status::Exceptions
        );
        assert_eq!(overall(&[o(Status::Grandfathered)]), Status::Grandfathered);
    }

    #[test]
    fn renderers_escape_attacker_text() {
        let mut c = change("0123456789abcdef", Kind::Direct, Status::Exceptions);
        c.subject = "<script>alert(1)</script> | x\u{202e}".into();
        c.findings = vec![finding("unsigned-commit", Some("0123456789abcdef"))];
        c.rules = vec![RuleOutcome {
            rule: "rule #1".into(),
            status: Status::Exceptions,
            findings: c.findings.clone(),
        }];
        let summary = summarize(std::slice::from_ref(&c));
        let e = Evidence {
            judged_by: "the current policy".into(),
            format: FORMAT,
            generated_at: 0,
            generated_at_utc: time::format(0),
            repository: "r".into(),
            policy: "p".into(),
            refname: "refs/heads/main".into(),
            resolved_from: "refs/heads/main".into(),
            tip: "0123456789abcdef".into(),
            since: None,
            rules: vec!["rule #1".into()],
            changes: vec![c],
            summary,
            access_changes: Vec::new(),
            ref_log: None,
        };
        let page = html(&e);
        assert!(!page.contains("<script"));
        assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt; | x\\u{202e}"));
        assert_eq!(page.matches("<html").count(), 1);
        let md = markdown(&e);
        assert!(
            md.contains("\\<script\\>alert(1)\\</script\\> \\| x\\\\u\\{202e\\}"),
            "{md}"
        );
        assert!(md.contains("| Fully compliant | 0 of 1 (0.0%) |"));
        let j = json(&e);
        assert!(j.contains("\"format\": \"countersign-evidence/1\""));
        assert!(j.contains("\"status\": \"exceptions\""));
    }
}
