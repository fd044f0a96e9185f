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

/// Who signed one object, and which role let them.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, Hash)]
pub struct Signer {
    /// Commit or tag id.
    pub object: String,
    /// Person id.
    pub person: String,
    /// Key description.
    pub key: String,
    /// The roles of the person that the rule accepts.
    pub roles: Vec<String>,
}

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
    /// First line of the message.
    pub(crate) subject: String,
    /// The keyring index of the signer, or (code, message, help).
    pub(crate) result: Result<usize, (Code, String, String)>,
    /// When it was signed: the OpenPGP signature time, else the committer
    /// or tagger time (only used to honour key retirement in history).
    pub(crate) signed_at: Option<Timestamp>,
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
    cache: HashMap<Oid, Checked>,
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
            cache: HashMap::new(),
            budget: Budget::new(policy.limits),
            merge_tree: merge::MergeTreeServer::new(),
        }
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
                let mut seen = std::collections::HashSet::new();
                outcome.signers.iter().map(|s| seen.insert(s)).collect()
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
        let mut walk = match self.repo.revwalk() {
            Ok(w) => w,
            Err(e) => {
                found.push(internal(&e));
                return;
            }
        };
        if let Err(e) = walk.push(new) {
            found.push(missing(new, &e));
            return;
        }
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
        for h in hide {
            if let Err(e) = walk.hide(h) {
                found.push(missing(h, &e));
                return;
            }
        }
        // The walk is read ahead in batches whose signatures are checked
        // on every core; each commit is then judged in walk order exactly
        // as before (the checks are cached), so the findings are the same.
        let mut walk = walk.fuse();
        let mut ahead = std::collections::VecDeque::new();
        let mut batch = FIRST_BATCH;
        loop {
            if ahead.is_empty() {
                for r in walk.by_ref().take(batch) {
                    let stop = r.is_err();
                    ahead.push_back(r);
                    if stop {
                        break;
                    }
                }
                let ids: Vec<Oid> = ahead
                    .iter()
                    .filter_map(|r| r.as_ref().ok().copied())
                    .collect();
                self.prefetch(&ids, ObjectType::Commit);
                batch = (batch * 2).min(MAX_BATCH);
            }
            let Some(id) = ahead.pop_front() else {
                return;
            };
            if !self.budget.commit() || self.budget.full(found.len()) {
                return;
            }
            let id = match id {
                Ok(id) => id,
                Err(e) => {
                    found.push(missing(new, &e));
                    return;
                }
            };
            outcome.commits_checked += 1;
            let checked = self.check_object(id, ObjectType::Commit);
            self.authorize(id, &checked, roles, "commit", outcome, found);
        }
    }

    /// Verify the signature of one object (cached).
    pub(crate) fn check_object(&mut self, id: Oid, kind: ObjectType) -> Checked {
        if let Some(c) = self.cache.get(&id) {
            return c.clone();
        }
        let checked = self.check_object_uncached(id, kind);
        self.cache.insert(id, checked.clone());
        checked
    }

    fn check_object_uncached(&self, id: Oid, kind: ObjectType) -> Checked {
        match self.prepare(id, kind) {
            Prepared::Done(c) => c,
            Prepared::Verify(job) => {
                let result = signature::verify(
                    &self.policy.keyring,
                    &job.signature,
                    &job.payload,
                    GIT_NAMESPACE,
                    self.now,
                );
                self.finish(job, result)
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
        // Few objects (a change of a report, a small push) are not worth a
        // thread; the count of CPUs is only asked for when it matters.
        let threads = if ids.len() < PARALLEL_MIN {
            1
        } else {
            verify_threads()
        };
        if threads < 2 {
            for &id in ids {
                self.check_object(id, kind);
            }
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
        type Done = (Oid, Job, Result<signature::Verified, signature::SigError>);
        let (to_pool, jobs) = std::sync::mpsc::channel::<(Oid, Job)>();
        let jobs = std::sync::Mutex::new(jobs);
        let next = || match jobs.lock() {
            Ok(rx) => rx.recv().ok(),
            Err(p) => p.into_inner().recv().ok(),
        };
        let work = || {
            let mut out = Vec::new();
            while let Some((id, job)) = next() {
                let r = verify(&job);
                out.push((id, job, r));
            }
            out
        };
        let done: Vec<Done> = std::thread::scope(|scope| {
            let pool: Vec<_> = (1..threads).map(|_| scope.spawn(work)).collect();
            for &id in ids {
                if self.cache.contains_key(&id) {
                    continue;
                }
                match self.prepare(id, kind) {
                    Prepared::Done(c) => {
                        self.cache.insert(id, c);
                    }
                    Prepared::Verify(job) => {
                        // The pool only stops once `to_pool` is dropped.
                        if let Err(std::sync::mpsc::SendError((id, job))) = to_pool.send((id, job))
                        {
                            let r = verify(&job);
                            self.cache.insert(id, self.finish(job, r));
                        }
                    }
                }
            }
            drop(to_pool);
            let mut done = work();
            for h in pool {
                match h.join() {
                    Ok(part) => done.extend(part),
                    // A panic in a worker is a panic here, as it would
                    // have been without threads.
                    Err(panic) => std::panic::resume_unwind(panic),
                }
            }
            done
        });
        for (id, job, r) in done {
            let checked = self.finish(job, r);
            self.cache.insert(id, checked);
        }
    }

    /// Read and split one object: either its final answer (unreadable,
    /// malformed, unsigned, too big) or the signature check to run.
    fn prepare(&self, id: Oid, kind: ObjectType) -> Prepared {
        if let Err(f) = self.size_check(id) {
            return Prepared::Done(Checked {
                subject: String::new(),
                result: Err((f.code, f.message, f.help)),
                signed_at: None,
            });
        }
        let what = kind_name(kind);
        let fail = |subject: String, code: Code, msg: String, help: &str| {
            Prepared::Done(Checked {
                signed_at: None,
                subject,
                result: Err((code, msg, help.to_string())),
            })
        };
        let odb = match self.repo.odb() {
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
        let obj = match odb.read(id) {
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
        let raw = obj.data();
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
        // not look for it. A commit's time comes from the bytes already
        // read.
        let object_time = match kind {
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
        })
    }

    /// The answer for a prepared object from its signature check.
    fn finish(
        &self,
        job: Job,
        result: Result<signature::Verified, signature::SigError>,
    ) -> Checked {
        let mut created = None;
        let result = result
            .map(|v| {
                created = v.created;
                v.key
            })
            .map_err(|e| diags::signature_failure(e, job.what, &self.policy.path));
        Checked {
            subject: job.subject,
            result,
            signed_at: created.or(job.object_time),
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
        let who = format!("{} ({}) with {}", person.id, person.name, key.describe());
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
                    format!("{what} signed by {who}, which {verb} {}", time::format(t)),
                    help,
                ))
            })
    }

    /// Check dates and roles of the key that signed `id`; on success the
    /// signer is recorded in `outcome` and returned.
    pub(crate) fn authorize(
        &self,
        id: Oid,
        checked: &Checked,
        roles: &[String],
        what: &str,
        outcome: &mut UpdateOutcome,
        found: &mut Vec<Finding>,
    ) -> Option<Signer> {
        let subject = Some(checked.subject.clone());
        let key_idx = match &checked.result {
            Ok(k) => *k,
            Err((code, msg, help)) => {
                found.push(Finding::new(*code, msg.clone(), help.clone()).at_object(id, subject));
                return None;
            }
        };
        let (key, person) = match self.signer_of(key_idx) {
            Ok(x) => x,
            Err(f) => {
                found.push(f.at_object(id, subject));
                return None;
            }
        };
        if let Some(f) = self.date_problem(key, person, what, checked.signed_at) {
            found.push(f.at_object(id, subject));
            return None;
        }
        let matching: Vec<String> = roles
            .iter()
            .filter(|r| person.roles.contains(*r))
            .cloned()
            .collect();
        if matching.is_empty() {
            found.push(
                diags::signer_lacks_role(what, person, &key.describe(), roles)
                    .at_object(id, subject),
            );
            return None;
        }
        let signer = Signer {
            object: id.to_string(),
            person: person.id.clone(),
            key: key.describe(),
            roles: matching,
        };
        // Duplicates (one object under several rules) are removed once per
        // update in `decide`: a `contains` here was quadratic in commits.
        outcome.signers.push(signer.clone());
        Some(signer)
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
}

/// What reading one object gave.
pub(crate) enum Prepared {
    /// Its final answer; no signature to check.
    Done(Checked),
    /// A signature to check.
    Verify(Job),
}

/// Commits read ahead by the first batch of a walk; each next batch
/// doubles, up to [`MAX_BATCH`] (a push of a few commits stays cheap).
const FIRST_BATCH: usize = 32;
/// Most commits read ahead of the one being judged.
const MAX_BATCH: usize = 1024;

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
