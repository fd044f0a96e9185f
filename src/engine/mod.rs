//! The engine: given ref updates, a policy and a repository, decide.
//!
//! For every update of a protected ref it checks deletion, force-push, tag
//! rules and the signature of every commit *newly reachable from that ref*
//! (`new` minus `old` minus the rule's baseline), whatever else the
//! repository already holds: commits pushed earlier to unprotected branches
//! get no free pass. It collects every finding and never stops at the first,
//! never prints, never exits. A check that cannot run is a finding, so the
//! verdict can only be "accepted" when every check ran and passed.

mod diags;
pub mod merge;
mod oidmap;
mod sigcache;
mod walk;

pub use sigcache::DIR as CACHE_DIR;

use std::collections::HashMap;
use std::time::Instant;

use git2::{ObjectType, Oid, Repository};
use serde::Serialize;

use crate::finding::{Code, Finding};
use crate::policy::keys::PolicyKey;
use crate::policy::limits::{self, Limits};
use crate::policy::{Person, Policy, Rule};
use crate::signing::object::{self, ObjectError, Signed};
use crate::signing::signature;
use crate::time::{self, Timestamp};

/// Deepest chain of tags of tags that is followed to a commit.
pub const MAX_TAG_CHAIN: usize = 16;

/// Refs under this prefix make git substitute objects; always refused.
pub const REPLACE_PREFIX: &str = "refs/replace/";

/// SSH signature namespace git uses for commits and tags.
pub const GIT_NAMESPACE: &str = "git";

/// One line of pre-receive input: `<old> <new> <ref>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefUpdate {
    /// Previous value; zero when the ref is created.
    pub old: Oid,
    /// New value; zero when the ref is deleted.
    pub new: Oid,
    /// Full ref name.
    pub refname: String,
}

/// An object id that serializes as its hex (kept as the id: a million
/// signers' hex strings were 80 MB and a formatting each).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ObjectId(pub Oid);

impl ObjectId {
    /// Whether this is the object of full hex id `hex`.
    pub fn is(&self, hex: &str) -> bool {
        let b = self.0.as_bytes();
        hex.len() == 2 * b.len() && hex.as_bytes().chunks(2).zip(b).all(|(pair, &byte)| {
            let d = |c: u8| (c as char).to_digit(16);
            matches!((d(pair[0]), d(pair[1])), (Some(h), Some(l)) if h * 16 + l == u32::from(byte))
        })
    }
}

impl std::fmt::Display for ObjectId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&hex_of(self.0))
    }
}

impl Serialize for ObjectId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex_of(self.0))
    }
}

/// Who signed one object, and which role let them. Serialized flat:
/// `object`, `person`, `key`, `roles`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Signer {
    /// Commit or tag id.
    pub object: ObjectId,
    /// The signer, shared by every object they signed under one rule: a
    /// million commits make a million signers, 48 bytes each.
    pub who: std::sync::Arc<Who>,
}

/// A person with a key and the roles a rule accepts of theirs.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct Who {
    /// Person id.
    pub person: String,
    /// Key description.
    pub key: String,
    /// The roles of the person that the rule accepts.
    pub roles: Vec<String>,
}

impl Serialize for Signer {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut st = s.serialize_struct("Signer", 4)?;
        st.serialize_field("object", &self.object)?;
        st.serialize_field("person", &self.who.person)?;
        st.serialize_field("key", &self.who.key)?;
        st.serialize_field("roles", &self.who.roles)?;
        st.end()
    }
}

/// A signer compared whole but hashed by its object alone (which nearly
/// always tells signers apart): hashing every field of a million signers
/// was a tenth of a second of a run over a million commits.
struct ByObject<'s>(&'s Signer);

impl PartialEq for ByObject<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.0 == other.0
    }
}

impl Eq for ByObject<'_> {}

impl std::hash::Hash for ByObject<'_> {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.object.hash(state);
    }
}

/// Person, key description and matching roles, shared by many signers.
type SignerParts = std::sync::Arc<Who>;

/// What happened to one ref update.
#[derive(Debug, Clone, Serialize)]
pub struct UpdateOutcome {
    /// Ref name.
    #[serde(rename = "ref")]
    pub refname: String,
    /// Old id (hex).
    pub old: String,
    /// New id (hex).
    pub new: String,
    /// Labels of the rules that apply; empty means unprotected.
    pub rules: Vec<String>,
    /// Commits whose signatures were checked for this ref.
    pub commits_checked: usize,
    /// Every accepted signer.
    pub signers: Vec<Signer>,
    /// Every change that landed through a merge rule.
    pub merges: Vec<crate::engine::merge::MergeRecord>,
}

/// The verdict and its reasons.
#[derive(Debug, Clone, Serialize)]
pub struct Decision {
    /// Each ref update.
    pub updates: Vec<UpdateOutcome>,
    /// Every reason for rejection kept (at most `limits.findings`); empty
    /// means accepted.
    pub findings: Vec<Finding>,
    /// Findings found beyond the `findings` limit and left out.
    #[serde(skip_serializing_if = "is_zero")]
    pub omitted: usize,
    /// Why checking stopped before every object was examined, if it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stopped: Option<String>,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

impl Decision {
    /// Accepted only if nothing was found.
    pub fn accepted(&self) -> bool {
        self.findings.is_empty()
    }

    /// A decision that rejects everything for one reason (e.g. no policy).
    pub fn reject_all(updates: &[RefUpdate], finding: Finding) -> Self {
        Decision {
            updates: updates.iter().map(|u| outcome_for(u, Vec::new())).collect(),
            findings: vec![finding],
            omitted: 0,
            stopped: None,
        }
    }
}

fn outcome_for(u: &RefUpdate, rules: Vec<String>) -> UpdateOutcome {
    UpdateOutcome {
        refname: u.refname.clone(),
        old: u.old.to_string(),
        new: u.new.to_string(),
        rules,
        commits_checked: 0,
        signers: Vec::new(),
        merges: Vec::new(),
    }
}

/// A signature check result that does not depend on the rule.
#[derive(Clone)]
pub(crate) struct Checked {
    /// First line of the message; `None` when it was not read (an answer
    /// from the verification cache): read when a finding needs it.
    pub(crate) subject: Option<String>,
    /// The keyring index of the signer, or (code, message, help), boxed:
    /// a run keeps one answer per commit, nearly all good.
    pub(crate) result: Result<usize, Box<(Code, String, String)>>,
    /// When it was signed: the OpenPGP signature time, else the committer
    /// or tagger time (only used to honour key retirement in history).
    pub(crate) signed_at: Option<Timestamp>,
    /// A commit's count of parents, where it was read.
    pub(crate) parents: Option<u8>,
}

/// What one run may still spend; see [`crate::policy::limits`].
pub(crate) struct Budget {
    pub(crate) limits: Limits,
    started: Instant,
    /// Counting limits (`commits`, `merges`, `seconds`) apply; off for
    /// history mode, which an admin or auditor runs on purpose.
    counted: bool,
    commits: usize,
    merges: usize,
    /// Findings already moved into the decision.
    pub(crate) kept: usize,
    /// The first limit exceeded; it rejects and stops checking.
    pub(crate) exceeded: Option<Finding>,
}

impl Budget {
    fn new(limits: Limits) -> Self {
        Budget {
            limits,
            started: Instant::now(),
            counted: true,
            commits: 0,
            merges: 0,
            kept: 0,
            exceeded: None,
        }
    }

    fn exceed(&mut self, code: Code, key: &str, message: String) {
        if self.exceeded.is_none() {
            self.exceeded = Some(Finding::new(code, message, Limits::raise_help(key)));
        }
    }

    /// Time left before the `seconds` budget runs out (`None`: no limit).
    pub(crate) fn remaining(&mut self) -> Option<std::time::Duration> {
        if !self.counted {
            return None;
        }
        let total = std::time::Duration::from_secs(self.limits.seconds);
        let left = total.saturating_sub(self.started.elapsed());
        if left.is_zero() {
            self.timed_out();
        }
        Some(left)
    }

    pub(crate) fn timed_out(&mut self) {
        let secs = self.limits.seconds;
        self.exceed(
            Code::LimitTime,
            "seconds",
            format!("checking this push took longer than the hook's budget of {secs} s (limit `seconds`); nothing was accepted"),
        );
    }

    /// Count one commit examined; false when checking must stop.
    pub(crate) fn commit(&mut self) -> bool {
        if self.exceeded.is_some() {
            return false;
        }
        if !self.counted {
            return true;
        }
        self.commits += 1;
        if self.commits > self.limits.commits {
            let n = self.limits.commits;
            self.exceed(
                Code::LimitCommits,
                "commits",
                format!("this push makes the hook examine more than {n} commits (limit `commits`)"),
            );
            return false;
        }
        if self.commits.is_multiple_of(64) {
            self.remaining();
        }
        self.exceeded.is_none()
    }

    /// Count one landing change judged; false when checking must stop.
    pub(crate) fn merge(&mut self) -> bool {
        if self.exceeded.is_some() {
            return false;
        }
        if !self.counted {
            return true;
        }
        self.merges += 1;
        if self.merges > self.limits.merges {
            let n = self.limits.merges;
            self.exceed(
                Code::LimitMerges,
                "merges",
                format!(
                    "this push lands more than {n} changes on merge-rule refs (limit `merges`)"
                ),
            );
            return false;
        }
        self.remaining();
        self.exceeded.is_none()
    }

    /// Should checking stop, given `pending` findings not yet kept?
    pub(crate) fn full(&self, pending: usize) -> bool {
        self.exceeded.is_some() || self.kept + pending >= self.limits.findings
    }
}

/// Runs the checks; caches per-object signature results across updates.
pub struct Verifier<'a> {
    pub(crate) repo: &'a Repository,
    pub(crate) policy: &'a Policy,
    pub(crate) now: Timestamp,
    ignore_case: bool,
    history: bool,
    cache: oidmap::OidMap<Checked>,
    /// The verification cache kept between runs, when enabled.
    store: Option<sigcache::SigCache>,
    /// Objects asked for so far (the cache is read once there are many).
    asked: usize,
    /// Remember whole walks in the cache (see [`Self::with_walk_memo`]).
    walk_memo: bool,
    /// Answers are judged once and dropped when nothing else in the
    /// decision can ask for them (see [`Self::judging_once`]).
    judge_once: bool,
    /// Keep answers in memory once judged (set per decision).
    keep_answers: bool,
    /// Signer parts by (keyring index, rule's roles), made once.
    signer_parts_memo: std::cell::RefCell<HashMap<(usize, usize, usize), Option<SignerParts>>>,
    /// Objects prepared for verification so far: the order they were read
    /// in, which the verification cache writes them in.
    read_seq: std::cell::Cell<u64>,
    /// Answers taken from the verification cache, signatures verified.
    pub(crate) stats: std::cell::Cell<(usize, usize)>,
    pub(crate) budget: Budget,
    /// One `git merge-tree --stdin` child for the run's clean merges.
    pub(crate) merge_tree: merge::MergeTreeServer,
}

impl<'a> Verifier<'a> {
    /// A verifier at time `now` (push time).
    pub fn new(repo: &'a Repository, policy: &'a Policy, now: Timestamp) -> Self {
        // Where the file system ignores case, `refs/heads/MAIN` is the
        // same loose ref file as `refs/heads/main`; match rules likewise.
        // An unreadable setting counts as "ignore case": the stricter way.
        let ignore_case = repo
            .config()
            .and_then(|c| c.get_bool("core.ignorecase"))
            .or_else(|e| {
                if e.code() == git2::ErrorCode::NotFound {
                    Ok(false)
                } else {
                    Err(e)
                }
            })
            .unwrap_or(true);
        Verifier {
            repo,
            policy,
            now,
            ignore_case,
            history: false,
            cache: oidmap::map(),
            store: None,
            asked: 0,
            walk_memo: false,
            judge_once: false,
            keep_answers: true,
            signer_parts_memo: std::cell::RefCell::new(HashMap::new()),
            read_seq: std::cell::Cell::new(0),
            stats: std::cell::Cell::new((0, 0)),
            budget: Budget::new(policy.limits),
            merge_tree: merge::MergeTreeServer::new(),
        }
    }

    /// Use (and fill) the verification cache in the repository's
    /// `countersign/cache/` (see [`sigcache`]): signatures verified by an
    /// earlier run under the same keys and limits are not verified again;
    /// everything that depends on time, roles or the rule still is. Where
    /// the cache cannot be used (a read-only repository, say) it is not.
    ///
    /// History mode (verify, report) reads the cache at once; the hook
    /// only once a push has many objects to check, so the usual small
    /// push never pays for reading a large cache (it only appends).
    pub fn with_cache(mut self) -> Self {
        self.store =
            sigcache::SigCache::open(self.repo.path(), self.policy, self.repo.object_format());
        if self.history {
            if let Some(s) = self.store.as_mut() {
                s.load();
            }
        }
        self
    }

    /// Also remember, in the cache, the list of commits a walk of the
    /// history gave (history mode): re-verifying the same tip, or a tip
    /// that adds a line of commits to one verified before, does not walk
    /// the whole history again. For `verify`, which walks whole histories;
    /// not for `report`, whose walks are one change each.
    pub fn with_walk_memo(mut self) -> Self {
        self.walk_memo = true;
        self
    }

    /// For a run that decides once (`verify`): when the decision has one
    /// update under one rule that only names commit signers, nothing asks
    /// for a commit's answer after it is judged, so answers are not kept
    /// (at a million commits, a table of 200 MB). Otherwise, and for any
    /// later decision of this verifier, they are.
    pub fn judging_once(mut self) -> Self {
        self.judge_once = true;
        self
    }

    /// Write what this run verified to the cache (a no-op without one).
    /// Nothing depends on it but the time later runs take.
    ///
    /// # Errors
    ///
    /// Why the cache could not be written.
    pub fn persist_cache(&mut self) -> Result<(), String> {
        match self.store.as_mut() {
            Some(s) => s.persist(),
            None => Ok(()),
        }
    }

    /// Verifications the cache holds (0 without one).
    pub fn cached_verifications(&self) -> usize {
        self.store.as_ref().map_or(0, sigcache::SigCache::len)
    }

    /// Signature answers this run took from the verification cache, and
    /// signatures it verified.
    pub fn cache_stats(&self) -> (usize, usize) {
        self.stats.get()
    }

    /// Lift the counting budgets (`commits`, `merges`, `seconds`,
    /// `findings`): for verification an admin or auditor runs on purpose,
    /// not for the hook. Per-object limits (sizes, trailers) stay.
    pub fn unbounded(mut self) -> Self {
        self.budget.counted = false;
        self.budget.limits.findings = usize::MAX;
        self
    }

    /// Count the `seconds` budget from `started` (the hook's start)
    /// rather than from the creation of the verifier.
    pub fn started_at(mut self, started: Instant) -> Self {
        self.budget.started = started;
        self
    }

    /// Judge existing history rather than a push: a retired key's
    /// signatures made before its retirement stay valid.
    pub fn for_history(mut self) -> Self {
        self.history = true;
        self.unbounded()
    }

    /// The names an update of `refname` really moves: the ref itself and,
    /// if it is a symbolic ref on the server, every ref it points through
    /// (git updates the target of a symref). Rules matching any of them
    /// apply, so an alias cannot be used to move a protected ref.
    pub(crate) fn names_for(&self, refname: &str) -> Vec<String> {
        let mut names = vec![refname.to_string()];
        let mut current = refname.to_string();
        for _ in 0..10 {
            let Ok(r) = self.repo.find_reference(&current) else {
                break;
            };
            if r.kind() != Some(git2::ReferenceType::Symbolic) {
                break;
            }
            match r.symbolic_target_bytes() {
                Some(t) => {
                    let t = String::from_utf8_lossy(t).into_owned();
                    if names.contains(&t) {
                        break;
                    }
                    names.push(t.clone());
                    current = t;
                }
                None => break,
            }
        }
        names
    }

    /// Every existing ref by its ASCII-lowercased name (direct refs only).
    fn refs_by_folded_name(&self) -> HashMap<String, Oid> {
        let mut map = HashMap::new();
        if let Ok(refs) = self.repo.references() {
            for r in refs.flatten() {
                if let (Ok(name), Some(target)) = (r.name(), r.target()) {
                    map.insert(name.to_ascii_lowercase(), target);
                }
            }
        }
        map
    }

    /// The rules that apply to an update of `refname`.
    pub fn rules_for(&self, refname: &str) -> Vec<&'a Rule> {
        let names = self.names_for(refname);
        self.policy
            .rules
            .iter()
            .filter(|r| names.iter().any(|n| r.matches_with(n, self.ignore_case)))
            .collect()
    }

    /// Check every update; the decision holds every finding.
    pub fn decide(&mut self, updates: &[RefUpdate]) -> Decision {
        let mut decision = Decision {
            updates: Vec::new(),
            findings: Vec::new(),
            omitted: 0,
            stopped: None,
        };
        if self.budget.counted && updates.len() > self.budget.limits.updates {
            let n = self.budget.limits.updates;
            decision
                .findings
                .push(diags::too_many_updates(updates.len(), n));
            decision.updates = updates
                .iter()
                .take(n)
                .map(|u| outcome_for(u, Vec::new()))
                .collect();
            return decision;
        }
        self.keep_answers = !(self.judge_once && updates.len() == 1 && {
            let rules = updates.first().map(|u| self.rules_for(&u.refname));
            matches!(rules.as_deref(), Some([r]) if r.merge.is_none() && r.tag_signers.is_none())
        });
        // Once only.
        self.judge_once = false;
        let mut seen = std::collections::HashSet::new();
        let mut folded: Option<HashMap<String, Oid>> = None;
        for u in updates {
            let rules = self.rules_for(&u.refname);
            let mut outcome = outcome_for(u, rules.iter().map(|r| r.label()).collect());
            // Where case is ignored, `refs/heads/MAIN` arriving as a
            // creation may really move `main` (packed-refs are matched
            // case-sensitively by git, loose ref files are not): judge it
            // against the value of any existing ref that differs only in
            // case, so the force-push and tag rules still apply.
            let effective;
            let u = if self.ignore_case && u.old.is_zero() && !u.new.is_zero() && !rules.is_empty()
            {
                let map = folded.get_or_insert_with(|| self.refs_by_folded_name());
                match map.get(&u.refname.to_ascii_lowercase()) {
                    Some(existing) => {
                        effective = RefUpdate {
                            old: *existing,
                            new: u.new,
                            refname: u.refname.clone(),
                        };
                        &effective
                    }
                    None => u,
                }
            } else {
                u
            };
            let is_replace = if self.ignore_case {
                u.refname
                    .get(..REPLACE_PREFIX.len())
                    .is_some_and(|p| p.eq_ignore_ascii_case(REPLACE_PREFIX))
            } else {
                u.refname.starts_with(REPLACE_PREFIX)
            };
            if is_replace {
                // git (but not libgit2) shows replacement objects in place
                // of the originals: a replace ref would let unsigned
                // content stand in for signed history on the server.
                let f = diags::replace_ref().at_ref(&u.refname);
                decision.findings.push(f);
                self.budget.kept += 1;
                outcome
                    .rules
                    .push("built-in: refs/replace/* is refused".into());
            }
            for rule in rules {
                if self.budget.full(0) {
                    break;
                }
                let mut found = Vec::new();
                self.check_rule(u, rule, &mut outcome, &mut found);
                for f in found {
                    let f = f.at_ref(&u.refname).under_rule(rule.label());
                    let key = (
                        f.code,
                        f.commit.clone(),
                        f.rule.clone(),
                        f.refname.clone(),
                        f.message.clone(),
                    );
                    if seen.insert(key) {
                        if decision.findings.len() < self.budget.limits.findings {
                            decision.findings.push(f);
                            self.budget.kept += 1;
                        } else {
                            decision.omitted += 1;
                        }
                    }
                }
            }
            // First occurrences kept, in order; the set borrows the
            // signers rather than cloning each one (twice the memory of
            // the list at 100k commits).
            let first: Vec<bool> = {
                let mut seen = std::collections::HashSet::with_capacity_and_hasher(
                    outcome.signers.len(),
                    oidmap::keyed(),
                );
                outcome
                    .signers
                    .iter()
                    .map(|s| seen.insert(ByObject(s)))
                    .collect()
            };
            let mut first = first.into_iter();
            outcome.signers.retain(|_| first.next().unwrap_or(true));
            decision.updates.push(outcome);
        }
        if let Some(f) = self.budget.exceeded.take() {
            // The limit is the reason to show first: it explains why other
            // objects may not have been examined.
            decision.findings.insert(0, f);
            decision.stopped = Some("a limit was exceeded".into());
        } else if self.budget.full(0) && self.budget.limits.findings != usize::MAX {
            decision.stopped = Some(format!(
                "checking stopped after {} findings (limit `findings`); fix these and push again",
                self.budget.limits.findings
            ));
        }
        decision
    }

    fn check_rule(
        &mut self,
        u: &RefUpdate,
        rule: &Rule,
        outcome: &mut UpdateOutcome,
        found: &mut Vec<Finding>,
    ) {
        if u.new.is_zero() {
            if !rule.delete {
                found.push(diags::ref_deletion(u.old));
            }
            return;
        }
        let baseline = match &rule.baseline {
            None => None,
            Some(hex) => match self
                .parse_oid(hex)
                .filter(|o| self.repo.find_commit(*o).is_ok())
            {
                Some(o) => Some(o),
                None => {
                    found.push(diags::baseline_missing(hex));
                    return;
                }
            },
        };
        // Grafts (git and libgit2 both honour `info/grafts`) or a shallow
        // server would let a walk follow parents the commits do not name,
        // past commits never checked: nothing that walks history is judged
        // there. A shallow clone may still be verified (`verify` judges
        // the history it has).
        if rule.commit_signers.is_some() || rule.merge.is_some() {
            if let Some(f) = self.rewritten_parents() {
                found.push(f);
                return;
            }
        }
        if rule.tag_signers.is_some() && !u.old.is_zero() {
            found.push(diags::tag_moved(u.old));
        }
        if !u.old.is_zero() && !rule.force_push && rule.tag_signers.is_none() {
            self.check_fast_forward(u, found);
        }
        if let Some(roles) = &rule.tag_signers {
            self.check_tag(u, roles, outcome, found);
        }
        if let Some(roles) = &rule.commit_signers {
            self.check_commits(u, roles, baseline, outcome, found);
        }
        if let Some(merge) = &rule.merge {
            self.check_merges(u, merge, baseline, outcome, found);
        }
    }

    /// The commit `id` names, through annotated tags. Only object headers
    /// are read until the kind is known: a blob or tree is refused without
    /// being inflated (a pack of a few KB can hold a blob of a gigabyte),
    /// commits and tags must fit `object-bytes`, and a tag chain may be at
    /// most [`MAX_TAG_CHAIN`] deep.
    pub(crate) fn peel_commit(&self, id: Oid) -> Result<Oid, Finding> {
        let odb = self.repo.odb().map_err(|e| internal(&e))?;
        let mut current = id;
        for _ in 0..MAX_TAG_CHAIN {
            let (_, kind) = odb.read_header(current).map_err(|e| missing(current, &e))?;
            match kind {
                ObjectType::Commit => {
                    self.size_check(current)?;
                    return Ok(current);
                }
                ObjectType::Tag => {
                    self.size_check(current)?;
                    let tag = self
                        .repo
                        .find_tag(current)
                        .map_err(|e| missing(current, &e))?;
                    current = tag.target_id();
                }
                other => {
                    return Err(diags::not_a_commit(current, kind_name(other)).at_object(id, None))
                }
            }
        }
        Err(diags::tag_chain_too_deep(id).at_object(id, None))
    }

    fn check_fast_forward(&self, u: &RefUpdate, found: &mut Vec<Finding>) {
        let (old, new) = match (self.peel_commit(u.old), self.peel_commit(u.new)) {
            (Ok(o), Ok(n)) => (o, n),
            (Err(f), _) | (_, Err(f)) => {
                found.push(f);
                return;
            }
        };
        if old == new {
            // A no-op update (libgit2 says a commit does not descend from
            // itself).
            return;
        }
        match self.repo.graph_descendant_of(new, old) {
            Ok(true) => {}
            Ok(false) => {
                found.push(diags::force_push(new, old).at_object(new, self.subject_of(new)))
            }
            Err(e) => found.push(missing(old, &e)),
        }
    }

    pub(crate) fn subject_of(&self, id: Oid) -> Option<String> {
        let odb = self.repo.odb().ok()?;
        let (size, _) = odb.read_header(id).ok()?;
        if size > self.budget.limits.object_bytes {
            return None;
        }
        let obj = odb.read(id).ok()?;
        let signed = match obj.kind() {
            ObjectType::Commit => object::split_commit_in(obj.data(), self.format()),
            ObjectType::Tag => object::split_tag(obj.data()),
            _ => return None,
        };
        signed.ok().map(|s| self.clip(&s.subject))
    }

    /// The repository's object format.
    pub(crate) fn format(&self) -> object::HashFormat {
        match self.repo.object_format() {
            git2::ObjectFormat::Sha1 => object::HashFormat::Sha1,
            git2::ObjectFormat::Sha256 => object::HashFormat::Sha256,
        }
    }

    /// Parse a full hex object id in this repository's format.
    pub(crate) fn parse_oid(&self, hex: &str) -> Option<Oid> {
        parse_oid(hex, self.repo.object_format())
    }

    /// Text the pusher wrote, cut to `limits.subject-chars`.
    pub(crate) fn clip(&self, text: &str) -> String {
        limits::truncate(text, self.budget.limits.subject_chars)
    }

    /// Refuse an object larger than `limits.object-bytes` before reading it.
    pub(crate) fn size_check(&self, id: Oid) -> Result<(), Finding> {
        let odb = self.repo.odb().map_err(|e| internal(&e))?;
        let (size, kind) = odb.read_header(id).map_err(|e| missing(id, &e))?;
        let max = self.budget.limits.object_bytes;
        if size > max {
            return Err(diags::object_too_big(kind_name(kind), id, size, max).at_object(id, None));
        }
        Ok(())
    }

    fn check_tag(
        &mut self,
        u: &RefUpdate,
        roles: &[String],
        outcome: &mut UpdateOutcome,
        found: &mut Vec<Finding>,
    ) {
        let kind = match self.repo.odb().and_then(|odb| odb.read_header(u.new)) {
            Ok((_, kind)) => kind,
            Err(e) => {
                found.push(missing(u.new, &e));
                return;
            }
        };
        if kind != ObjectType::Tag {
            found.push(
                diags::lightweight_tag(kind_name(kind), roles)
                    .at_object(u.new, self.subject_of(u.new)),
            );
            return;
        }
        // The tag object names itself: it must be the ref it is pushed to,
        // or a signed tag could be replayed under another (newer) name.
        let expected = u.refname.strip_prefix("refs/tags/").unwrap_or(&u.refname);
        if let Err(f) = self.size_check(u.new) {
            found.push(f);
            return;
        }
        match self.repo.find_tag(u.new) {
            Ok(tag) => {
                let inside = String::from_utf8_lossy(tag.name_bytes()).into_owned();
                if inside != expected {
                    // Both names come from the pusher: cut before quoting.
                    let (inside, expected) = (self.clip(&inside), self.clip(expected));
                    // The subject from the object already read, not a
                    // second read of a possibly large tag.
                    let subject = tag
                        .message_bytes()
                        .map(|m| self.clip(&object::subject_of(m)));
                    found.push(
                        diags::tag_name_mismatch(&inside, &expected).at_object(u.new, subject),
                    );
                    return;
                }
            }
            Err(e) => {
                found.push(missing(u.new, &e));
                return;
            }
        }
        if let Err(f) = self.tag_binding(u.new, expected) {
            found.push(f.at_object(u.new, self.subject_of(u.new)));
        }
        let checked = self.check_object(u.new, ObjectType::Tag);
        self.authorize(u.new, &checked, roles, "tag", outcome, found);
    }

    /// A protected tag must name this repository in a
    /// `Countersign-Repository:` trailer of its (signed) message, so a tag
    /// signed for another repository — a public SDK's `v2.0`, say — cannot
    /// be replayed here, bringing that repository's history with it.
    fn tag_binding(&self, id: Oid, name: &str) -> Result<(), Finding> {
        self.size_check(id)?;
        let odb = self.repo.odb().map_err(|e| internal(&e))?;
        let raw = odb.read(id).map_err(|e| missing(id, &e))?;
        let payload = object::split_tag(raw.data())
            .map_err(|e| diags::malformed_tag(&e))?
            .payload;
        let message = payload
            .windows(2)
            .position(|w| w == b"\n\n")
            .map_or(&payload[..0], |i| &payload[i + 2..]);
        let values = crate::signing::approval::trailer_values(
            message,
            crate::signing::approval::REPOSITORY_TRAILER,
        );
        let want = &self.policy.repository_id;
        let help = format!(
            "create the tag with the trailer as the last paragraph of its message: `git tag -s {name} -m \"<message>\" -m \"{}: {want}\"`",
            crate::signing::approval::REPOSITORY_TRAILER
        );
        match values.as_slice() {
            [v] if v == want => Ok(()),
            [] => Err(diags::tag_not_bound(want, help)),
            vals => Err(diags::tag_wrong_repository(
                &vals.iter().map(|v| self.clip(v)).collect::<Vec<_>>(),
                want,
                help,
            )),
        }
    }

    fn check_commits(
        &mut self,
        u: &RefUpdate,
        roles: &[String],
        baseline: Option<Oid>,
        outcome: &mut UpdateOutcome,
        found: &mut Vec<Finding>,
    ) {
        if u.refname.starts_with("refs/heads/") {
            // A branch must point at a commit, not at a tag that peels to one.
            match self.repo.odb().and_then(|odb| odb.read_header(u.new)) {
                Ok((_, ObjectType::Commit)) => {}
                Ok((_, kind)) => {
                    found.push(
                        diags::branch_not_a_commit(u.new, kind_name(kind))
                            .at_object(u.new, self.subject_of(u.new)),
                    );
                    return;
                }
                Err(e) => {
                    found.push(missing(u.new, &e));
                    return;
                }
            }
        }
        let new = match self.peel_commit(u.new) {
            Ok(n) => n,
            Err(f) => {
                found.push(f);
                return;
            }
        };
        let mut hide = Vec::new();
        if !u.old.is_zero() {
            match self.peel_commit(u.old) {
                Ok(o) => hide.push(o),
                Err(f) => {
                    found.push(f);
                    return;
                }
            }
        }
        hide.extend(baseline);
        // A walk remembered for this tip, or one this tip extends by a
        // line of commits, is not walked again (`verify` with the cache).
        if let Some(ids) = self.remembered_walk(new, &hide) {
            // One look into the cache per commit; what it lacks is
            // verified on every core, then all is judged in walk order.
            let answers: Vec<Option<Checked>> = ids
                .iter()
                .map(|id| self.stored_answer(*id, ObjectType::Commit))
                .collect();
            let unknown: Vec<Oid> = ids
                .iter()
                .zip(&answers)
                .filter(|(_, a)| a.is_none())
                .map(|(id, _)| *id)
                .collect();
            self.prefetch(&unknown, ObjectType::Commit);
            let mut judging = Judging::new(roles, outcome, found, true);
            for (id, answer) in ids.into_iter().zip(answers) {
                let checked = match answer {
                    Some(c) => c,
                    None => self.check_object(id, ObjectType::Commit),
                };
                self.judge_commit(id, &checked, &mut judging);
                if judging.stopped {
                    return;
                }
            }
            return;
        }
        // The walk is read while a pool verifies the signatures of what it
        // yields, on every core; each commit is judged in walk order as
        // soon as its answer and those before it are known, so the
        // findings are those of judging one commit after the other. In the
        // hook the walk stops one past the `commits` budget, where judging
        // stops too.
        let cap = if self.budget.counted {
            self.budget
                .limits
                .commits
                .saturating_sub(self.budget.commits)
                .saturating_add(1)
        } else {
            usize::MAX
        };
        let keep = self.keep_answers;
        let mut judging = Judging::new(roles, outcome, found, keep);
        // Nothing hidden: the walk that reads each commit once, when it
        // can answer; else libgit2's, after what that walk judged.
        let mut judged = None;
        // Not in a shallow repository (`verify` of a shallow clone), whose
        // cut only libgit2's walk knows; grafts never get here (refused by
        // `check_rule`).
        if hide.is_empty() && !self.repo.is_shallow() {
            match self.walk_once(new, cap, &mut judging) {
                Ok(ids) => {
                    if !judging.stopped {
                        let linear = judging.linear();
                        self.remember_walk(new, &hide, ids, linear);
                    }
                    return;
                }
                // Judging stopped where it would have stopped anyway.
                Err(_) if judging.stopped => return,
                Err(j) => judged = Some(j),
            }
        }
        self.judge_libgit2_walk(new, &hide, cap, &mut judging, judged);
    }

    /// Judge the commits libgit2's walk gives from `new`, hiding `hide`,
    /// up to `cap`, after those `judged` by the engine's walk before it
    /// gave up (when libgit2's walk gives those first; else from the
    /// start, what was judged taken back).
    fn judge_libgit2_walk(
        &mut self,
        new: Oid,
        hide: &[Oid],
        cap: usize,
        judging: &mut Judging<'_>,
        judged: Option<Judged>,
    ) {
        let mut walk = match self.repo.revwalk() {
            Ok(w) => w,
            Err(e) => {
                judging.found.push(internal(&e));
                return;
            }
        };
        if let Err(e) = walk.push(new) {
            judging.found.push(missing(new, &e));
            return;
        }
        for &h in hide {
            if let Err(e) = walk.hide(h) {
                judging.found.push(missing(h, &e));
                return;
            }
        }
        let mut walk = walk.fuse();
        // Every commit the walk gives, in order; the first `skip` were
        // judged by the engine's walk before it gave up, when libgit2's
        // walk gives exactly those first (it does: the same order up to
        // the commit the engine's walk could not read; checked here
        // rather than trusted). Otherwise what was judged is taken back
        // and everything is judged from the start.
        let mut ids: Vec<Oid> = Vec::new();
        let mut walk_error = None;
        let mut skip = 0;
        if let Some(j) = judged {
            let mut digest = sha2::Sha256::default();
            for r in walk.by_ref().take(j.count) {
                match r {
                    Ok(id) => {
                        sha2::Digest::update(&mut digest, id.as_bytes());
                        ids.push(id);
                    }
                    Err(e) => {
                        walk_error = Some(e);
                        break;
                    }
                }
            }
            let same: [u8; 32] = sha2::Digest::finalize(digest).into();
            if walk_error.is_none() && ids.len() == j.count && same == j.digest {
                skip = ids.len();
            } else {
                j.before.restore(self, judging);
            }
        }
        let cap_rest = cap.saturating_sub(skip);
        let mut head: Vec<Oid> = ids.split_off(skip);
        while walk_error.is_none() && head.len() < PARALLEL_MIN.min(cap_rest) {
            match walk.next() {
                Some(Ok(id)) => head.push(id),
                Some(Err(e)) => walk_error = Some(e),
                None => break,
            }
        }
        ids.extend_from_slice(&head);
        if walk_error.is_some() || head.len() < PARALLEL_MIN.min(cap_rest) || head.len() >= cap_rest
        {
            self.asking(head.len());
            let all = head.iter().map(|id| (*id, None));
            self.prefetch_iter(
                all,
                head.len(),
                ObjectType::Commit,
                false,
                Some(&mut *judging),
            );
        } else {
            let rest = std::iter::from_fn(|| {
                if ids.len() >= cap || walk_error.is_some() {
                    return None;
                }
                match walk.next()? {
                    Ok(id) => {
                        ids.push(id);
                        Some(id)
                    }
                    Err(e) => {
                        walk_error = Some(e);
                        None
                    }
                }
            });
            let all = head.into_iter().chain(rest).map(|id| (id, None));
            self.prefetch_iter(all, cap, ObjectType::Commit, true, Some(&mut *judging));
        }
        if judging.stopped {
            return;
        }
        match walk_error {
            Some(e) => judging.found.push(missing(new, &e)),
            None => {
                let linear = judging.linear();
                self.remember_walk(new, hide, ids, linear);
            }
        }
    }

    /// Why history cannot be walked here, if it cannot: `info/grafts`
    /// (always), or a shallow repository when judging a push.
    fn rewritten_parents(&self) -> Option<Finding> {
        let grafts = self.repo.path().join("info").join("grafts");
        if std::fs::symlink_metadata(&grafts).is_ok() {
            return Some(diags::parents_rewritten("info/grafts", &grafts));
        }
        if !self.history && self.repo.is_shallow() {
            let shallow = self.repo.path().join("shallow");
            return Some(diags::parents_rewritten("a `shallow` file", &shallow));
        }
        None
    }

    /// Every commit from `new` (nothing hidden) in libgit2's walk order,
    /// up to `cap` of them, their signatures verified and judged on the
    /// way (see [`walk`]): each commit is read once, its bytes going from
    /// the walk to the check. The commits are listed only when the walk
    /// may be remembered. When that walk gives up, what it judged stays
    /// judged and the commits it gave are described ([`Judged`]), for
    /// libgit2's walk to go on from there.
    fn walk_once(
        &mut self,
        new: Oid,
        cap: usize,
        judging: &mut Judging<'_>,
    ) -> Result<Vec<Oid>, Judged> {
        let mut w = walk::Walk::new(self.repo, self.budget.limits.object_bytes, new);
        let listing = self.walk_memo && !self.budget.counted;
        let ids = std::cell::RefCell::new(Vec::new());
        let pulled = std::cell::Cell::new(0usize);
        let digest = std::cell::RefCell::new(sha2::Sha256::default());
        let gave_up = std::cell::Cell::new(false);
        let next = || {
            if pulled.get() >= cap || gave_up.get() {
                return None;
            }
            match w.step() {
                walk::Step::Commit(id, read) => {
                    pulled.set(pulled.get() + 1);
                    sha2::Digest::update(&mut *digest.borrow_mut(), id.as_bytes());
                    if listing {
                        ids.borrow_mut().push(id);
                    }
                    Some((id, read))
                }
                walk::Step::End => None,
                walk::Step::GiveUp => {
                    gave_up.set(true);
                    None
                }
            }
        };
        let before = Rollback::of(self, judging);
        let mut items = std::iter::from_fn(next);
        // A few first: a short walk is not worth the pool.
        let few = PARALLEL_MIN.min(cap);
        let head: Vec<_> = items.by_ref().take(few).collect();
        let hint = if head.len() < few { head.len() } else { cap };
        self.prefetch_iter(
            head.into_iter().chain(items),
            hint,
            ObjectType::Commit,
            true,
            Some(&mut *judging),
        );
        if gave_up.get() {
            return Err(Judged {
                count: pulled.get(),
                digest: sha2::Digest::finalize(digest.into_inner()).into(),
                before,
            });
        }
        Ok(ids.into_inner())
    }

    /// The commits a walk from `new` hiding `hides` gives, in its order,
    /// as remembered by an earlier `verify` (only with
    /// [`Self::with_walk_memo`]): the same walk, or one whose tip `new`
    /// extends by a line of commits each with one parent, when the walk
    /// remembered was such a line too (then the order is forced: child
    /// before parent, so the walk from `new` is the new line followed by
    /// the remembered one). `None`: walk.
    fn remembered_walk(&self, new: Oid, hides: &[Oid]) -> Option<Vec<Oid>> {
        if !self.walk_memo || self.budget.counted {
            return None;
        }
        let store = self.store.as_ref().filter(|s| s.is_loaded())?;
        let memo = store.walk(self.repo.path(), hides)?;
        if memo.tip == new {
            return Some(memo.ids);
        }
        if !memo.linear {
            return None;
        }
        let mut walk = self.repo.revwalk().ok()?;
        walk.push(new).ok()?;
        for &h in hides.iter().chain([&memo.tip]) {
            walk.hide(h).ok()?;
        }
        // Longer than this, walking afresh costs about the same.
        let most = memo.ids.len() / 2 + 1000;
        let mut line = Vec::new();
        let mut expected = new;
        for r in walk {
            let id = r.ok()?;
            if id != expected || line.len() >= most {
                return None;
            }
            let c = self.repo.find_commit(id).ok()?;
            if c.parent_count() != 1 {
                return None;
            }
            expected = c.parent_id(0).ok()?;
            line.push(id);
        }
        if expected != memo.tip {
            return None;
        }
        line.extend(memo.ids);
        Some(line)
    }

    /// Remember the walk from `new` hiding `hides` (see
    /// [`Self::remembered_walk`]): whether every commit in it has at most
    /// one parent is known from the cache or read.
    /// `linear`: whether every commit has at most one parent, when judging
    /// knew.
    fn remember_walk(&self, new: Oid, hides: &[Oid], ids: Vec<Oid>, linear: Option<bool>) {
        if !self.walk_memo || self.budget.counted || ids.len() < STORE_AFTER {
            return;
        }
        let Some(store) = self.store.as_ref().filter(|s| s.is_loaded()) else {
            return;
        };
        // As judging saw, else from this run's answers, else the cache's,
        // else read.
        let linear = linear.unwrap_or_else(|| {
            ids.iter().all(|id| {
                let known = self
                    .cache
                    .get(&oidmap::Key::of(id))
                    .and_then(|c| c.parents)
                    .or_else(|| store.get(id).and_then(|e| e.parents));
                match known {
                    Some(p) => p <= 1,
                    None => self
                        .repo
                        .find_commit(*id)
                        .is_ok_and(|c| c.parent_count() <= 1),
                }
            })
        });
        store.remember_walk(
            self.repo.path(),
            hides,
            &sigcache::Walk {
                tip: new,
                linear,
                ids,
            },
        );
    }

    /// Count `n` more objects to check; read the verification cache once
    /// there are enough for it to pay (a small push never reads it).
    fn asking(&mut self, n: usize) {
        self.asked = self.asked.saturating_add(n);
        if self.asked >= STORE_AFTER {
            if let Some(s) = self.store.as_mut().filter(|s| !s.is_loaded()) {
                s.load_up_to(sigcache::HOOK_MAX_LOAD);
            }
        }
    }

    /// Verify the signature of one object (cached).
    pub(crate) fn check_object(&mut self, id: Oid, kind: ObjectType) -> Checked {
        if let Some(c) = self.cache.get(&oidmap::Key::of(&id)) {
            return c.clone();
        }
        self.asking(1);
        // An answer of the cache kept between runs is not kept in memory
        // too: it is as cheap to ask again.
        if let Some(c) = self.stored_answer(id, kind) {
            return c;
        }
        let checked = self.check_object_uncached(id, kind, None);
        self.cache.insert(oidmap::Key::of(&id), checked.clone());
        checked
    }

    /// [`Self::check_object`] of an object whose bytes were read already,
    /// without handing back the answer.
    fn check_object_read(&mut self, id: Oid, kind: ObjectType, read: Option<walk::Read>) {
        if self.cache.contains_key(&oidmap::Key::of(&id)) {
            return;
        }
        self.asking(1);
        if self.in_store(&id, kind) {
            return;
        }
        let checked = self.check_object_uncached(id, kind, read);
        self.cache.insert(oidmap::Key::of(&id), checked);
    }

    /// The answer the verification cache gives for `id`: the signature
    /// verified with this keyring entry in an earlier run; what depends on
    /// the time of the check is judged again here, exactly as
    /// [`signature::verify`] would now. `None`: verify it.
    fn stored_answer(&self, id: Oid, kind: ObjectType) -> Option<Checked> {
        let e = self.store.as_ref().filter(|s| s.is_loaded())?.get(&id)?;
        if !e.is(kind) {
            return None;
        }
        let key = e.key as usize;
        let result = match &self.policy.keyring.get(key)?.material {
            crate::policy::keys::Material::Ssh(_) => Ok(key),
            crate::policy::keys::Material::OpenPgp(_) => {
                // A signature must not be from the future, nor expired,
                // at the time of this check: otherwise verify afresh, so
                // the answer is the verifier's own.
                let created = e.created?;
                if created > self.now || e.expires.is_some_and(|x| x <= self.now) {
                    return None;
                }
                let fpr = e.signing_key.as_deref()?;
                signature::recheck_openpgp(&self.policy.keyring, key, fpr, self.now)
                    .map(|()| key)
                    .map_err(|err| {
                        Box::new(diags::signature_failure(
                            err,
                            kind_name(kind),
                            &self.policy.path,
                        ))
                    })
            }
        };
        let signed_at = match (e.created, self.history) {
            (Some(c), _) => Some(c),
            (None, false) => None,
            (None, true) => Some(e.object_time?),
        };
        let (hits, verified) = self.stats.get();
        self.stats.set((hits + 1, verified));
        Some(Checked {
            subject: None,
            result,
            signed_at,
            parents: e.parents,
        })
    }

    /// Whether the verification cache holds `id` (as a `kind`).
    fn in_store(&self, id: &Oid, kind: ObjectType) -> bool {
        self.store
            .as_ref()
            .and_then(|s| s.get(id))
            .is_some_and(|e| e.is(kind))
    }

    fn check_object_uncached(
        &mut self,
        id: Oid,
        kind: ObjectType,
        read: Option<walk::Read>,
    ) -> Checked {
        match self.prepare(id, kind, read) {
            Prepared::Done(c) => c,
            Prepared::Verify(job) => {
                let result = signature::verify(
                    &self.policy.keyring,
                    &job.signature,
                    &job.payload,
                    GIT_NAMESPACE,
                    self.now,
                );
                self.finish(id, job.into_meta(), result)
            }
        }
    }

    /// Verify the signatures of `ids` (objects of `kind`) not yet cached,
    /// on every core, and cache the results: what [`Self::check_object`]
    /// would compute for each. This thread reads and splits the objects
    /// (libgit2's repository is not shared between threads) and hands
    /// each signature to a pool of verifying threads as soon as it is
    /// read, then verifies what is left itself.
    pub(crate) fn prefetch(&mut self, ids: &[Oid], kind: ObjectType) {
        self.asking(ids.len());
        self.prefetch_iter(
            ids.iter().map(|id| (*id, None)),
            ids.len(),
            kind,
            false,
            None,
        );
    }

    /// [`Self::prefetch`] of the objects `ids` yields as it is pulled
    /// (a revision walk: the walk goes on while the pool verifies), about
    /// `hint` of them (few: this thread only). Jobs waiting for the pool
    /// are bounded ([`QUEUE`]): when the pool is behind, this thread
    /// verifies too. Answers are taken back as they come, so memory holds
    /// answers, not the objects read. In the hook, the `seconds` budget is
    /// looked at as it goes; past it, nothing more is pulled.
    /// `count`: count each object pulled as asked for (the cache is read
    /// once there are enough, see [`Self::asking`]).
    ///
    /// With `judging`, each object is also judged as soon as its answer
    /// and those of every object pulled before it are known: in the order
    /// pulled, exactly as judging them one after the other once all were
    /// verified (the findings do not change), but while the walk and the
    /// pool go on; a budget that stops judging stops the pulling. Answers
    /// wait for their turn behind the oldest signature still being
    /// verified: usually the pool's queue and the pulls between two looks
    /// at the answers (256); at most every object pulled (what was kept
    /// before judging streamed) if a verifying thread is held up.
    fn prefetch_iter(
        &mut self,
        ids: impl Iterator<Item = (Oid, Option<walk::Read>)>,
        hint: usize,
        kind: ObjectType,
        count: bool,
        mut judging: Option<&mut Judging<'_>>,
    ) {
        // Few objects (a change of a report, a small push) are not worth a
        // thread; the count of CPUs is only asked for when it matters.
        let threads = if hint < PARALLEL_MIN {
            1
        } else {
            verify_threads()
        };
        let mut turn = Turn::default();
        if threads < 2 {
            for (id, read) in ids {
                if judging.as_ref().is_some_and(|j| j.stopped) {
                    break;
                }
                self.check_object_read(id, kind, read);
                if let Some(j) = judging.as_deref_mut() {
                    turn.window.push_back(Slot::Known(id));
                    self.judge_ready(&mut turn, kind, j);
                }
            }
            // As below: the time spent verifying counts.
            self.budget.remaining();
            return;
        }
        let policy: &'a Policy = self.policy;
        let now = self.now;
        let verify = |job: &Job| {
            signature::verify(
                &policy.keyring,
                &job.signature,
                &job.payload,
                GIT_NAMESPACE,
                now,
            )
        };
        let (to_pool, jobs) = std::sync::mpsc::sync_channel::<(u64, Oid, Job)>(QUEUE);
        let (to_main, answers) = std::sync::mpsc::channel::<Answer>();
        let jobs = std::sync::Mutex::new(jobs);
        let next = || match jobs.lock() {
            Ok(rx) => rx.recv().ok(),
            Err(p) => p.into_inner().recv().ok(),
        };
        let work = |to_main: std::sync::mpsc::Sender<Answer>| {
            while let Some((pos, id, job)) = next() {
                let r = verify(&job);
                if to_main.send((pos, id, job.into_meta(), r)).is_err() {
                    break;
                }
            }
        };
        let judge = judging.is_some();
        std::thread::scope(|scope| {
            let pool: Vec<_> = (1..threads)
                .map(|_| {
                    let tx = to_main.clone();
                    scope.spawn(move || work(tx))
                })
                .collect();
            let mut pulled = 0u64;
            for (id, read) in ids {
                if judging.as_ref().is_some_and(|j| j.stopped) {
                    break;
                }
                let pos = pulled;
                pulled += 1;
                if count {
                    self.asking(1);
                }
                if pulled.is_multiple_of(256) {
                    if self.budget.remaining().is_some_and(|d| d.is_zero()) {
                        break;
                    }
                    while let Ok(answer) = answers.try_recv() {
                        self.take_answer(answer, &mut turn, judge);
                    }
                }
                if self.in_store(&id, kind) || self.cache.contains_key(&oidmap::Key::of(&id)) {
                    if judge {
                        turn.window.push_back(Slot::Known(id));
                    }
                } else {
                    match self.prepare(id, kind, read) {
                        Prepared::Done(c) => turn.answered(self, id, c, judge),
                        Prepared::Verify(job) => {
                            // The pool only stops once `to_pool` is dropped;
                            // a full queue means this thread verifies this one.
                            match to_pool.try_send((pos, id, job)) {
                                Ok(()) => {
                                    if judge {
                                        turn.window.push_back(Slot::Waiting(id));
                                    }
                                }
                                Err(
                                    std::sync::mpsc::TrySendError::Full((_, id, job))
                                    | std::sync::mpsc::TrySendError::Disconnected((_, id, job)),
                                ) => {
                                    let r = verify(&job);
                                    let c = self.finish(id, job.into_meta(), r);
                                    turn.answered(self, id, c, judge);
                                }
                            }
                        }
                    }
                }
                if let Some(j) = judging.as_deref_mut() {
                    self.judge_ready(&mut turn, kind, j);
                }
            }
            drop(to_pool);
            if judging.as_ref().is_some_and(|j| j.stopped) {
                // Nothing more will be judged: what waits is not verified.
                while next().is_some() {}
            } else {
                work(to_main.clone());
            }
            drop(to_main);
            for h in pool {
                if let Err(panic) = h.join() {
                    // A panic in a worker is a panic here, as it would
                    // have been without threads.
                    std::panic::resume_unwind(panic);
                }
            }
        });
        for answer in answers.try_iter() {
            self.take_answer(answer, &mut turn, judge);
        }
        // Time spent verifying since judging last looked counts, as it did
        // when all was verified before judging began.
        self.budget.remaining();
        if let Some(j) = judging {
            self.judge_ready(&mut turn, kind, j);
            // An answer that never came (none should: every job sent is
            // answered) is asked for here rather than skipped.
            while let Some(slot) = turn.window.front_mut() {
                if let Slot::Waiting(id) = *slot {
                    *slot = Slot::Known(id);
                }
                self.judge_ready(&mut turn, kind, j);
                if j.stopped {
                    break;
                }
            }
        }
    }

    /// An answer of the pool: to its place in the turn when judging,
    /// else to the answers kept.
    fn take_answer(&mut self, (pos, id, meta, r): Answer, turn: &mut Turn, judge: bool) {
        let c = self.finish(id, meta, r);
        let slot = pos
            .checked_sub(turn.judged)
            .and_then(|i| usize::try_from(i).ok())
            .and_then(|i| turn.window.get_mut(i));
        match slot {
            Some(s) if judge && matches!(&*s, Slot::Waiting(w) if *w == id) => {
                *s = Slot::Ready(id, c);
            }
            _ => {
                self.cache.insert(oidmap::Key::of(&id), c);
            }
        }
    }

    /// Judge the objects at the front of the turn whose answers are known,
    /// in order, until one is still being verified or a budget stops it.
    fn judge_ready(&mut self, turn: &mut Turn, kind: ObjectType, j: &mut Judging<'_>) {
        while !j.stopped {
            if matches!(turn.window.front(), None | Some(Slot::Waiting(_))) {
                return;
            }
            let Some(slot) = turn.window.pop_front() else {
                return;
            };
            turn.judged += 1;
            let (id, checked, fresh) = match slot {
                Slot::Ready(id, c) => (id, c, true),
                Slot::Known(id) => {
                    let c = match self.cache.get(&oidmap::Key::of(&id)) {
                        Some(c) => c.clone(),
                        None => self.check_object(id, kind),
                    };
                    (id, c, false)
                }
                Slot::Waiting(_) => return,
            };
            self.judge_commit(id, &checked, j);
            if fresh && j.keep {
                self.cache.insert(oidmap::Key::of(&id), checked);
            }
        }
    }

    /// Judge one commit against the rule's commit signers, unless a budget
    /// stops judging here.
    fn judge_commit(&mut self, id: Oid, checked: &Checked, j: &mut Judging<'_>) {
        if !self.budget.commit() || self.budget.full(j.found.len()) {
            j.stopped = true;
            return;
        }
        j.outcome.commits_checked += 1;
        match checked.parents {
            Some(p) => j.plural |= p > 1,
            None => j.unsure = true,
        }
        self.authorize(id, checked, j.roles, "commit", j.outcome, j.found);
    }

    /// Read and split one object: either its final answer (unreadable,
    /// malformed, unsigned, too big) or the signature check to run.
    /// `read`: its bytes and committer time, read already (by the walk,
    /// which checked their size and parsed the time).
    fn prepare(&self, id: Oid, kind: ObjectType, read: Option<walk::Read>) -> Prepared {
        if read.is_none() {
            if let Err(f) = self.size_check(id) {
                return Prepared::Done(Checked {
                    subject: Some(String::new()),
                    result: Err(Box::new((f.code, f.message, f.help))),
                    signed_at: None,
                    parents: None,
                });
            }
        }
        let what = kind_name(kind);
        let fail = |subject: String, code: Code, msg: String, help: &str| {
            Prepared::Done(Checked {
                signed_at: None,
                parents: None,
                subject: Some(subject),
                result: Err(Box::new((code, msg, help.to_string()))),
            })
        };
        // Bytes the walk read, or read here.
        let (odb, obj);
        let raw: &[u8] = match &read {
            Some(r) => &r.raw,
            None => {
                odb = match self.repo.odb() {
                    Ok(odb) => odb,
                    Err(e) => {
                        return fail(
                            String::new(),
                            Code::InternalError,
                            format!("cannot open the object database: {}", e.message()),
                            "tell the repository admin",
                        )
                    }
                };
                obj = match odb.read(id) {
                    Ok(o) if o.kind() == kind => o,
                    Ok(o) => {
                        return fail(
                            String::new(),
                            Code::MalformedObject,
                            format!("expected a {what}, found a {}", kind_name(o.kind())),
                            "push well-formed objects",
                        )
                    }
                    Err(e) => {
                        return fail(
                            String::new(),
                            Code::ObjectMissing,
                            format!("cannot read {what} {}: {}", short(id), e.message()),
                            "push the complete history (a shallow or partial clone cannot push to protected refs)",
                        )
                    }
                };
                obj.data()
            }
        };
        let split: Result<Signed, ObjectError> = match kind {
            ObjectType::Tag => object::split_tag(raw),
            _ => object::split_commit_in(raw, self.format()),
        };
        let signed = match split {
            Ok(s) => s,
            Err(e @ (ObjectError::Sha256Signature | ObjectError::Sha1Signature)) => {
                return fail(
                    String::new(),
                    Code::UnsupportedObjectFormat,
                    e.to_string(),
                    "sign with git in this repository (plain `git commit -S`), which writes the signature header of the repository's object format",
                )
            }
            Err(e) => {
                return fail(
                    String::new(),
                    Code::MalformedObject,
                    e.to_string(),
                    "re-create the object with git",
                )
            }
        };
        let subject = self.clip(&signed.subject);
        let Some(sig) = signed.signature else {
            let (code, help) = if kind == ObjectType::Tag {
                (
                    Code::UnsignedTag,
                    "create the tag signed: `git tag -s <name> -m <message>`",
                )
            } else {
                (Code::UnsignedCommit, "sign it: `git commit --amend -S --no-edit` (several commits: `git rebase --exec 'git commit --amend -S --no-edit' <base>`), then push again")
            };
            return fail(subject, code, format!("the {what} is not signed"), help);
        };
        let max = self.budget.limits.signature_bytes;
        if sig.len() > max {
            return fail(
                subject,
                Code::LimitSignatureBytes,
                format!(
                    "the {what}'s signature is {} bytes; the limit is {max} (limit `signature-bytes`)",
                    sig.len()
                ),
                &Limits::raise_help("signature-bytes"),
            );
        }
        // Only history mode judges retirement by signing time (the
        // OpenPGP signature's, else this one); the hook's hot path does
        // not look for it beyond the bytes already read (kept for the
        // verification cache, which history mode shares).
        // The walk parsed a commit's time already.
        let walked = read.as_ref().map(|r| r.time);
        let object_time = match kind {
            ObjectType::Commit if walked.is_some() => walked,
            ObjectType::Commit if !self.history => committer_time(raw, self.format()),
            _ if !self.history => None,
            ObjectType::Tag => self
                .repo
                .find_tag(id)
                .ok()
                .and_then(|t| t.tagger().map(|s| s.when().seconds())),
            _ => committer_time(raw, self.format()).or_else(|| {
                self.repo
                    .find_commit(id)
                    .ok()
                    .map(|c| c.committer().when().seconds())
            }),
        };
        Prepared::Verify(Job {
            what,
            subject,
            signature: sig,
            payload: signed.payload,
            object_time,
            parents: (kind == ObjectType::Commit).then(|| parent_count(raw)),
            seq: {
                let n = self.read_seq.get();
                self.read_seq.set(n + 1);
                n
            },
        })
    }

    /// The answer for a prepared object from its signature check; a
    /// signature that verified is remembered in the verification cache.
    fn finish(
        &mut self,
        id: Oid,
        job: JobMeta,
        result: Result<signature::Verified, signature::SigError>,
    ) -> Checked {
        let (hits, verified) = self.stats.get();
        self.stats.set((hits, verified + 1));
        let mut created = None;
        let result = result
            .map(|v| {
                created = v.created;
                if let (Some(store), Ok(key)) = (self.store.as_mut(), u32::try_from(v.key)) {
                    store.put(
                        job.seq,
                        id,
                        sigcache::Entry {
                            tag: job.what == "tag",
                            key,
                            created: v.created,
                            expires: v.expires,
                            object_time: job.object_time,
                            signing_key: v.signing_key.map(String::into_boxed_str),
                            parents: job.parents,
                        },
                    );
                }
                v.key
            })
            .map_err(|e| Box::new(diags::signature_failure(e, job.what, &self.policy.path)));
        // Push mode never judges by signing time: as before, only the
        // OpenPGP signature's own.
        let object_time = if self.history { job.object_time } else { None };
        // A good signature's subject is read again only if a finding
        // needs it (a role or a date): a million subjects are not kept.
        let subject = result.is_err().then_some(job.subject);
        Checked {
            subject,
            result,
            signed_at: created.or(object_time),
            parents: job.parents,
        }
    }

    /// Check dates and roles of the key that signed `id`.
    /// The key and person behind a keyring index.
    pub(crate) fn signer_of(&self, key_idx: usize) -> Result<(&'a PolicyKey, &'a Person), Finding> {
        let key = self
            .policy
            .keyring
            .get(key_idx)
            .ok_or_else(|| internal(&"key index out of range"))?;
        let person = self
            .policy
            .people
            .get(&key.person)
            .ok_or_else(|| internal(&"key without person"))?;
        Ok((key, person))
    }

    /// An expiry or revocation of the key or its person at push time.
    pub(crate) fn date_problem(
        &self,
        key: &PolicyKey,
        person: &Person,
        what: &str,
        signed_at: Option<Timestamp>,
    ) -> Option<Finding> {
        if let Some(r) = key.dates.retired {
            let retired_for_this = if self.history {
                signed_at.is_none_or(|t| t >= r)
            } else {
                r <= self.now
            };
            if retired_for_this {
                return Some(diags::key_retired(what, &person.id, &key.describe(), r));
            }
        }
        let who = || format!("{} ({}) with {}", person.id, person.name, key.describe());
        let date_checks = [
            (
                key.dates.revoked,
                Code::KeyRevoked,
                "was revoked on",
                "this key may no longer sign; re-sign with a current key",
            ),
            (
                person.dates.revoked,
                Code::KeyRevoked,
                "was revoked (person) on",
                "this person may no longer sign; have a current person sign",
            ),
            (
                key.dates.expires,
                Code::KeyExpired,
                "expired on",
                "sign with a current key; an admin may extend `expires` in the policy",
            ),
            (
                person.dates.expires,
                Code::KeyExpired,
                "expired (person) on",
                "an admin may extend the person's `expires` in the policy",
            ),
        ];
        date_checks
            .into_iter()
            .find_map(|(date, code, verb, help)| {
                let t = date.filter(|t| *t <= self.now)?;
                Some(Finding::new(
                    code,
                    format!(
                        "{what} signed by {}, which {verb} {}",
                        who(),
                        time::format(t)
                    ),
                    help,
                ))
            })
    }

    /// Check dates and roles of the key that signed `id`; on success the
    /// signer is recorded in `outcome` and the person's id returned.
    pub(crate) fn authorize(
        &self,
        id: Oid,
        checked: &Checked,
        roles: &[String],
        what: &str,
        outcome: &mut UpdateOutcome,
        found: &mut Vec<Finding>,
    ) -> Option<&'a str> {
        // Read only when a finding needs it (a cached answer has none).
        let subject = || match &checked.subject {
            Some(s) => Some(s.clone()),
            None => self.subject_of(id),
        };
        let key_idx = match &checked.result {
            Ok(k) => *k,
            Err(failure) => {
                let (code, msg, help) = &**failure;
                found.push(Finding::new(*code, msg.clone(), help.clone()).at_object(id, subject()));
                return None;
            }
        };
        let (key, person) = match self.signer_of(key_idx) {
            Ok(x) => x,
            Err(f) => {
                found.push(f.at_object(id, subject()));
                return None;
            }
        };
        if let Some(f) = self.date_problem(key, person, what, checked.signed_at) {
            found.push(f.at_object(id, subject()));
            return None;
        }
        let Some(who) = self.signer_parts(key_idx, key, person, roles) else {
            found.push(
                diags::signer_lacks_role(what, person, &key.describe(), roles)
                    .at_object(id, subject()),
            );
            return None;
        };
        // The parts shared by every commit of one signer under one rule
        // are shared, not copied: a million commits make a million signers.
        let signer = Signer {
            object: ObjectId(id),
            who,
        };
        // Duplicates (one object under several rules) are removed once per
        // update in `decide`: a `contains` here was quadratic in commits.
        outcome.signers.push(signer);
        Some(&person.id)
    }

    /// The person, key description and matching roles of a signer by
    /// keyring entry `idx` under a rule naming `roles`, made once per run
    /// (`None`: the person has none of the roles).
    fn signer_parts(
        &self,
        idx: usize,
        key: &PolicyKey,
        person: &Person,
        roles: &[String],
    ) -> Option<SignerParts> {
        let memo_key = (idx, roles.as_ptr() as usize, roles.len());
        let mut memo = self.signer_parts_memo.borrow_mut();
        memo.entry(memo_key)
            .or_insert_with(|| {
                let matching: Vec<String> = roles
                    .iter()
                    .filter(|r| person.roles.contains(*r))
                    .cloned()
                    .collect();
                (!matching.is_empty()).then(|| {
                    std::sync::Arc::new(Who {
                        person: person.id.clone(),
                        key: key.describe(),
                        roles: matching,
                    })
                })
            })
            .clone()
    }
}

fn kind_name(kind: ObjectType) -> &'static str {
    match kind {
        ObjectType::Commit => "commit",
        ObjectType::Tag => "tag",
        ObjectType::Tree => "tree",
        ObjectType::Blob => "blob",
        ObjectType::Any => "object",
    }
}

/// Parse a full hex object id of `format` (40 or 64 hex digits).
pub fn parse_oid(hex: &str, format: git2::ObjectFormat) -> Option<Oid> {
    let len = match format {
        git2::ObjectFormat::Sha1 => 40,
        git2::ObjectFormat::Sha256 => 64,
    };
    if hex.len() != len || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    Oid::from_str_ext(hex, format).ok()
}

/// Short id for messages.
/// The full hex of `id` (as its `Display`, without the formatting
/// machinery: once per commit of a history).
fn hex_of(id: Oid) -> String {
    hex(id.as_bytes())
}

/// Lower-case hex of `bytes`.
pub(crate) fn hex(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(HEX[usize::from(b >> 4)]));
        s.push(char::from(HEX[usize::from(b & 15)]));
    }
    s
}

pub fn short(id: Oid) -> String {
    let s = id.to_string();
    s[..s.len().min(12)].to_string()
}

/// The first 12 characters of a hex id (`(absent)` for all zeros).
pub fn short_hex(hex: &str) -> String {
    if hex.bytes().all(|b| b == b'0') {
        "(absent)".into()
    } else {
        hex.chars().take(12).collect()
    }
}

pub(crate) fn missing(id: Oid, e: &git2::Error) -> Finding {
    diags::object_missing(id, e).at_object(id, None)
}

/// An internal failure, as a finding that rejects.
pub fn internal(e: &dyn std::fmt::Display) -> Finding {
    diags::internal(e)
}

/// One object read and split, its signature still to check.
pub(crate) struct Job {
    what: &'static str,
    subject: String,
    signature: Vec<u8>,
    payload: Vec<u8>,
    /// Committer or tagger time (history mode only).
    object_time: Option<Timestamp>,
    /// A commit's count of parents.
    parents: Option<u8>,
    /// The order in which it was read (see [`Verifier::read_seq`]).
    seq: u64,
}

/// What is kept of a [`Job`] once its signature is checked.
pub(crate) struct JobMeta {
    what: &'static str,
    subject: String,
    object_time: Option<Timestamp>,
    parents: Option<u8>,
    seq: u64,
}

impl Job {
    /// What is kept once the signature is checked (the signed bytes are
    /// dropped where they were checked).
    fn into_meta(self) -> JobMeta {
        JobMeta {
            what: self.what,
            subject: self.subject,
            object_time: self.object_time,
            parents: self.parents,
            seq: self.seq,
        }
    }
}

/// An answer of the verifying pool: the place of its object among those
/// pulled, the object, and its signature check.
type Answer = (
    u64,
    Oid,
    JobMeta,
    Result<signature::Verified, signature::SigError>,
);

/// One object pulled and not yet judged.
enum Slot {
    /// Its signature is being verified by the pool.
    Waiting(Oid),
    /// Its answer, from this run.
    Ready(Oid, Checked),
    /// Its answer is in memory or in the verification cache.
    Known(Oid),
}

/// The objects pulled and not yet judged, in the order pulled, and how
/// many were judged before them.
#[derive(Default)]
struct Turn {
    window: std::collections::VecDeque<Slot>,
    judged: u64,
}

impl Turn {
    /// The answer for `id` is known now: it waits for its turn when
    /// judging, else it is kept.
    fn answered(&mut self, v: &mut Verifier<'_>, id: Oid, c: Checked, judge: bool) {
        if judge {
            self.window.push_back(Slot::Ready(id, c));
        } else {
            v.cache.insert(oidmap::Key::of(&id), c);
        }
    }
}

/// What judging had done before a walk, to take it back.
struct Rollback {
    found: usize,
    signers: usize,
    checked: usize,
    commits: usize,
    exceeded: bool,
}

impl Rollback {
    fn of(v: &Verifier<'_>, j: &Judging<'_>) -> Self {
        Rollback {
            found: j.found.len(),
            signers: j.outcome.signers.len(),
            checked: j.outcome.commits_checked,
            commits: v.budget.commits,
            exceeded: v.budget.exceeded.is_some(),
        }
    }

    fn restore(self, v: &mut Verifier<'_>, j: &mut Judging<'_>) {
        j.found.truncate(self.found);
        j.outcome.signers.truncate(self.signers);
        j.outcome.commits_checked = self.checked;
        v.budget.commits = self.commits;
        // A limit judging exceeded is taken back with the judging, except
        // time: what was spent stays spent.
        if !self.exceeded
            && v.budget
                .exceeded
                .as_ref()
                .is_some_and(|f| f.code != Code::LimitTime)
        {
            v.budget.exceeded = None;
        }
        j.stopped = false;
        j.plural = false;
        j.unsure = false;
    }
}

/// The commits the engine's walk gave and judged before it gave up: how
/// many, and the SHA-256 of their ids in order.
struct Judged {
    count: usize,
    digest: [u8; 32],
    before: Rollback,
}

/// Commits judged against a rule's commit signers as their answers come
/// (see [`Verifier::prefetch_iter`]).
pub(crate) struct Judging<'j> {
    roles: &'j [String],
    outcome: &'j mut UpdateOutcome,
    found: &'j mut Vec<Finding>,
    /// Keep each answer in memory once judged: something later in the
    /// run may ask for it again (another rule or update, a merge rule).
    keep: bool,
    /// A budget stopped judging.
    stopped: bool,
    /// Some commit judged has more than one parent.
    plural: bool,
    /// Some commit judged has a count of parents not known.
    unsure: bool,
}

impl<'j> Judging<'j> {
    fn new(
        roles: &'j [String],
        outcome: &'j mut UpdateOutcome,
        found: &'j mut Vec<Finding>,
        keep: bool,
    ) -> Self {
        Judging {
            roles,
            outcome,
            found,
            keep,
            stopped: false,
            plural: false,
            unsure: false,
        }
    }

    /// Whether every commit judged has at most one parent, when known.
    fn linear(&self) -> Option<bool> {
        if self.plural {
            Some(false)
        } else if self.unsure {
            None
        } else {
            Some(true)
        }
    }
}

/// Objects read ahead and waiting for a verifying thread, at most.
const QUEUE: usize = 1024;

/// What reading one object gave.
pub(crate) enum Prepared {
    /// Its final answer; no signature to check.
    Done(Checked),
    /// A signature to check.
    Verify(Job),
}

/// Objects a run checks before it reads the verification cache.
const STORE_AFTER: usize = 64;

/// Fewer signatures than this are checked in the calling thread.
const PARALLEL_MIN: usize = 16;

/// Most threads used to verify signatures.
const MAX_THREADS: usize = 16;

/// Threads to verify signatures on: the CPUs this process may use, at
/// most [`MAX_THREADS`]. Asked once per process: std reads the cgroup
/// files each time (a third of `report`'s time when asked per change).
fn verify_threads() -> usize {
    static THREADS: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *THREADS.get_or_init(|| {
        std::thread::available_parallelism()
            .map(std::num::NonZeroUsize::get)
            .unwrap_or(1)
            .min(MAX_THREADS)
    })
}

/// The committer time of a raw commit, when its headers have exactly the
/// shape libgit2 parses (a `tree` line, `parent` lines, then `author` and
/// `committer` with `<email> <seconds> <zone>`): the value libgit2 would
/// give, without reading the commit again. `None` for anything else: the
/// caller then asks libgit2.
/// The `parent` header lines of a raw commit (at most 255 counted).
fn parent_count(raw: &[u8]) -> u8 {
    let mut n = 0u8;
    for line in raw.split(|&b| b == b'\n') {
        if line.is_empty() {
            break;
        }
        if line.starts_with(b"parent ") {
            n = n.saturating_add(1);
        }
    }
    n
}

fn committer_time(raw: &[u8], format: object::HashFormat) -> Option<Timestamp> {
    let hex_len = match format {
        object::HashFormat::Sha1 => 40,
        object::HashFormat::Sha256 => 64,
    };
    let is_id =
        |v: &[u8]| v.len() == hex_len && v.iter().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    let ident = |v: &[u8]| -> Option<Timestamp> {
        let gt = v.iter().rposition(|&b| b == b'>')?;
        let lt = v.iter().rposition(|&b| b == b'<')?;
        if lt >= gt {
            return None;
        }
        let tail = v.get(gt + 1..)?;
        let tail = tail.strip_prefix(b" ")?;
        let space = tail.iter().position(|&b| b == b' ')?;
        let (secs, zone) = (&tail[..space], &tail[space + 1..]);
        if secs.is_empty()
            || secs.len() > 18
            || !secs.iter().all(u8::is_ascii_digit)
            || zone.len() != 5
            || !matches!(zone[0], b'+' | b'-')
            || !zone[1..].iter().all(u8::is_ascii_digit)
        {
            return None;
        }
        std::str::from_utf8(secs).ok()?.parse().ok()
    };
    let mut lines = raw.split(|&b| b == b'\n');
    if !is_id(lines.next()?.strip_prefix(b"tree ")?) {
        return None;
    }
    let mut line = lines.next()?;
    while let Some(p) = line.strip_prefix(b"parent ") {
        if !is_id(p) {
            return None;
        }
        line = lines.next()?;
    }
    ident(line.strip_prefix(b"author ")?)?;
    ident(lines.next()?.strip_prefix(b"committer ")?)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A signer's object id compares with and serializes as its hex.
    #[test]
    fn object_ids_compare_and_serialize_as_hex() {
        let hex = "0123456789abcdef0123456789abcdef01234567";
        let id = ObjectId(Oid::from_str(hex).unwrap());
        assert!(id.is(hex));
        assert!(!id.is("0123456789abcdef0123456789abcdef01234568"));
        assert!(!id.is(&hex[..39]));
        assert!(!id.is("zz23456789abcdef0123456789abcdef01234567"));
        assert_eq!(serde_json::to_string(&id).unwrap(), format!("\"{hex}\""));
        assert_eq!(id.to_string(), hex);
    }

    /// libgit2's walk goes on after what the engine's walk judged only
    /// when it gives exactly those commits first: a description that does
    /// not match (here one commit short) takes the judging back and judges
    /// everything again, each commit once.
    #[test]
    fn libgit2_walk_goes_on_only_after_the_same_commits() {
        let dir = std::env::temp_dir().join(format!("cs-engine-goon-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let repo = Repository::init_bare(&dir).unwrap();
        let odb = repo.odb().unwrap();
        let tree = odb.write(ObjectType::Tree, b"").unwrap();
        let mut parent: Option<Oid> = None;
        for i in 0..40 {
            // The root is dated 2^34: the engine's walk leaves it to
            // libgit2's after handing on the 38 commits above its child.
            let time: i64 = if i == 0 { 1 << 34 } else { 1000 + i };
            let parent_line = parent.map(|p| format!("parent {p}\n")).unwrap_or_default();
            let raw = format!("tree {tree}\n{parent_line}author A <a@x> {time} +0000\ncommitter C <c@x> {time} +0000\n\nc{i}\n");
            parent = Some(odb.write(ObjectType::Commit, raw.as_bytes()).unwrap());
        }
        let tip = parent.unwrap();
        let text = "[repository]\nid = \"t\"\n\n[roles]\ndeveloper = \"d\"\n\n[[rule]]\nname = \"b\"\nrefs = [\"refs/heads/main\"]\ncommit-signers = [\"developer\"]\n";
        let policy = crate::policy::parse(text, &dir).unwrap();
        let roles = vec!["developer".to_string()];
        for tamper in [false, true] {
            let mut v = Verifier::new(&repo, &policy, 2_000_000_000).for_history();
            let update = RefUpdate {
                old: Oid::ZERO_SHA1,
                new: tip,
                refname: "refs/heads/main".into(),
            };
            let mut outcome = outcome_for(&update, Vec::new());
            let mut found = Vec::new();
            let mut j = Judging::new(&roles, &mut outcome, &mut found, false);
            let Err(mut judged) = v.walk_once(tip, usize::MAX, &mut j) else {
                panic!("the engine's walk did not give up")
            };
            assert_eq!(judged.count, 38);
            if tamper {
                judged.count -= 1;
            }
            v.judge_libgit2_walk(tip, &[], usize::MAX, &mut j, Some(judged));
            assert_eq!(outcome.commits_checked, 40, "tampered: {tamper}");
            let mut commits: Vec<_> = found.iter().map(|f| f.commit.clone()).collect();
            assert_eq!(commits.len(), 40, "tampered: {tamper}");
            commits.sort();
            commits.dedup();
            assert_eq!(commits.len(), 40, "tampered: {tamper}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Taking judging back takes back a limit it exceeded, but not time.
    #[test]
    fn a_rollback_keeps_a_time_overrun() {
        let dir = std::env::temp_dir().join(format!("cs-engine-rollback-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let repo = Repository::init_bare(&dir).unwrap();
        let text = "[repository]\nid = \"t\"\n\n[roles]\ndeveloper = \"d\"\n";
        let policy = crate::policy::parse(text, &dir).unwrap();
        let roles = vec!["developer".to_string()];
        let update = RefUpdate {
            old: Oid::ZERO_SHA1,
            new: Oid::ZERO_SHA1,
            refname: "refs/heads/main".into(),
        };
        for (code, kept) in [(Code::LimitCommits, false), (Code::LimitTime, true)] {
            let mut v = Verifier::new(&repo, &policy, 0);
            let mut outcome = outcome_for(&update, Vec::new());
            let mut found = Vec::new();
            let mut j = Judging::new(&roles, &mut outcome, &mut found, true);
            let before = Rollback::of(&v, &j);
            v.budget.exceeded = Some(Finding::new(code, "m", "h"));
            j.stopped = true;
            before.restore(&mut v, &mut j);
            assert_eq!(v.budget.exceeded.is_some(), kept, "{code:?}");
            assert!(!j.stopped);
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// `committer_time` gives libgit2's committer time, or `None` (then
    /// libgit2 is asked): never a different answer.
    #[test]
    fn committer_time_agrees_with_libgit2() {
        let dir = std::env::temp_dir().join(format!("cs-engine-unit-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let repo = Repository::init_bare(&dir).unwrap();
        let odb = repo.odb().unwrap();
        let tree = odb.write(ObjectType::Tree, b"").unwrap();
        let parent = format!("parent {tree}\n");
        let cases: Vec<(String, Option<i64>)> = vec![
            (format!("tree {tree}\nauthor A <a@x> 1 +0000\ncommitter C <c@x> 1700000000 +0100\n\nm\n"), Some(1_700_000_000)),
            (format!("tree {tree}\n{parent}{parent}author A <a@x> 5 -0700\ncommitter C <c@x> 42 -0700\ngpgsig x\n y\n\nm\n"), Some(42)),
            (format!("tree {tree}\nauthor A <a@x> 1 +0000\ncommitter C <c@x>  7 +0000\n\nm\n"), None),
            (format!("tree {tree}\nauthor A <a@x> 1 +0000\ncommitter C <c@x> -7 +0000\n\nm\n"), None),
            (format!("tree {tree}\nauthor A <a@x> 1 +0000\ncommitter C <c@x> 7\n\nm\n"), None),
            (format!("tree {tree}\nauthor A <a@x> 1 +0000\ncommitter C c@x> 7 +0000\n\nm\n"), None),
            (format!("tree {tree}\nauthor A <a@x> 1 +0000\nauthor B <b@x> 1 +0000\ncommitter C <c@x> 7 +0000\n\nm\n"), None),
            (format!("tree {}\nauthor A <a@x> 1 +0000\ncommitter C <c@x> 7 +0000\n\nm\n", tree.to_string().to_uppercase()), None),
            (format!("tree {tree}\nauthor A <a@x> 1 +0000\ncommitter C <c@x> 99999999999999999999 +0000\n\nm\n"), None),
            (format!("tree {tree}\nauthor A a@x 1 +0000\ncommitter C <c@x> 7 +0000\n\nm\n"), None),
        ];
        for (raw, want) in cases {
            let got = committer_time(raw.as_bytes(), object::HashFormat::Sha1);
            assert_eq!(got, want, "{raw}");
            if let Some(t) = got {
                let id = odb.write(ObjectType::Commit, raw.as_bytes()).unwrap();
                let c = repo.find_commit(id).unwrap();
                assert_eq!(c.committer().when().seconds(), t, "{raw}");
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
