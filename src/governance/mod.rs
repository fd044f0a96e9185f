//! The policy under quorum. In *ref mode* the policy (its
//! `countersign.toml` and the certificate files it names) lives in the
//! repository on [`POLICY_REF`], and the host operator pins its first
//! commit as the trust root (git config [`ROOT_CONFIG_KEY`]).
//!
//! Every commit reaching the policy ref is judged by its **parent's**
//! policy, never by the policy it introduces: the parent's
//! `[policy-changes]` says which roles sign a change and which approvals
//! (of the exact result: parent and tree, bound to the repository id and
//! the policy ref) it needs from people other than its signer. The ref only
//! fast-forwards, one parent per commit, and is never deleted, so an older
//! policy cannot be replayed: going back is a new, approved commit. A change
//! whose policy does not validate, or that leaves too few people to approve
//! the next change, is refused.
//!
//! The policy in force for a push is the ref's value *before* the push, its
//! chain from the trust root verified (once per tip: verified tips are kept
//! in `$GIT_DIR/countersign/policy-trust`). A push that changes the policy
//! and uses the new grant in the same push is judged by the old policy.

mod diags;
pub mod landed;
pub mod log;
pub mod store;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Instant;

use git2::{ObjectType, Oid, Repository};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::engine::{self, Decision, RefUpdate, UpdateOutcome, Verifier};
use crate::finding::{Code, Finding};
use crate::policy::keys::{KeyError, KeySource};
use crate::policy::limits::Limits;
use crate::policy::{self, KeyFiles, Policy, PolicyError};
use crate::signing::approval;
use crate::time::Timestamp;

/// The ref the policy lives on in ref mode.
pub const POLICY_REF: &str = "refs/meta/countersign";
/// Git config key holding the pinned trust root (a commit id).
pub const ROOT_CONFIG_KEY: &str = "countersign.policyRoot";
/// Refs of countersign's own; pushes to them are refused, except proposals.
pub const RESERVED_PREFIX: &str = "refs/countersign/";
/// Where policy change proposals are shared; pushes here are not checked
/// (a proposal takes effect only when it lands on [`POLICY_REF`]).
pub const PROPOSALS_PREFIX: &str = "refs/countersign/proposals/";
/// The policy file in the tree of a policy commit.
pub const POLICY_FILE: &str = "countersign.toml";
/// Largest tree or file read from a policy commit (a pushed one is the
/// pusher's bytes).
pub const MAX_FILE_BYTES: usize = 1 << 20;
/// Most bytes of a policy and the files it names, in all: the hook loads
/// them on every push (a MiB of certificate costs about half a second).
pub const MAX_POLICY_BYTES: usize = 2 << 20;
/// Deepest path of a key file in a policy tree.
pub const MAX_PATH_DEPTH: usize = 8;
/// Most policy commits between the trust root and the tip.
pub const MAX_CHAIN: usize = 10_000;
/// Most policy commits one push may bring (each is judged by its own
/// parent's policy, which is loaded for it); also capped by `commits`.
pub const MAX_STEPS_PER_PUSH: usize = 100;
/// Most entries (files and directories) a policy tree may hold.
pub const MAX_TREE_ENTRIES: usize = 4096;
/// Verified tips kept in the trust file.
const MAX_TRUSTED: usize = 64;
/// The trust file, relative to `$GIT_DIR`.
pub const TRUST_FILE: &str = "countersign/policy-trust";
const TRUST_HEADER: &str = "countersign policy trust v1";

/// Which policy a decision was made under; written into every audit record.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(untagged)]
pub enum PolicyId {
    /// File mode: the file and the SHA-256 of its bytes.
    File {
        /// The policy file.
        file: String,
        /// SHA-256 of its bytes, hex.
        sha256: String,
    },
    /// Ref mode: the policy commit and the trust root it was verified from.
    Ref {
        /// The policy commit in force.
        commit: String,
        /// The pinned trust root.
        root: String,
    },
}

impl PolicyId {
    /// One line for people: `refs/meta/countersign@<id>` or `file <path> sha256 <hex>`.
    pub fn describe(&self) -> String {
        match self {
            PolicyId::File { file, sha256 } => format!("file {file} (sha256 {sha256})"),
            PolicyId::Ref { commit, .. } => format!("{POLICY_REF}@{commit}"),
        }
    }
}

/// The policy a push is judged by, and where it came from.
pub struct InForce {
    /// The policy.
    pub policy: Policy,
    /// Its identity, for the audit record.
    pub id: PolicyId,
    /// Ref mode: the trust root and the verified tip.
    pub chain: Option<(Oid, Oid)>,
}

impl InForce {
    /// A policy loaded from a file (file mode).
    pub fn file(policy: Policy, bytes: &[u8]) -> Self {
        let id = PolicyId::File {
            file: policy.path.display().to_string(),
            sha256: hex(&Sha256::digest(bytes)),
        };
        InForce {
            policy,
            id,
            chain: None,
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The trust root pinned in the repository's git config, if any: its
/// presence is what puts a repository in ref mode.
///
/// # Errors
///
/// A `policy-invalid` finding when the config cannot be read or the value
/// is not a full commit id.
pub fn pinned_root(repo: &Repository) -> Result<Option<Oid>, Finding> {
    let config = repo.config().map_err(|e| engine::internal(&e.message()))?;
    match config.get_string(ROOT_CONFIG_KEY) {
        Ok(s) => engine::parse_oid(s.trim(), repo.object_format())
            .map(Some)
            .ok_or_else(|| diags::bad_root(&s)),
        Err(e) if e.code() == git2::ErrorCode::NotFound => Ok(None),
        Err(e) => Err(diags::bad_root(e.message())),
    }
}

/// Key files read from the tree of a policy commit: paths as written in
/// the policy, relative to the tree's root, without `.`/`..`; every tree
/// and file at most [`MAX_FILE_BYTES`].
pub struct TreeFiles<'r> {
    repo: &'r Repository,
    tree: Oid,
    commit: Oid,
    /// Bytes read so far; at most [`MAX_POLICY_BYTES`] in all.
    read: std::cell::Cell<usize>,
}

impl<'r> TreeFiles<'r> {
    /// The files of `commit`'s tree.
    ///
    /// # Errors
    ///
    /// An `object-missing` finding when the commit cannot be read.
    pub fn of(repo: &'r Repository, commit: Oid) -> Result<Self, Finding> {
        let c = repo
            .find_commit(commit)
            .map_err(|e| diags::unreadable(commit, e.message()))?;
        Ok(TreeFiles {
            repo,
            tree: c.tree_id(),
            commit,
            read: std::cell::Cell::new(0),
        })
    }

    fn bounded(&self, id: Oid, want: ObjectType) -> Result<(), String> {
        let odb = self.repo.odb().map_err(|e| e.message().to_string())?;
        let (size, kind) = odb.read_header(id).map_err(|e| e.message().to_string())?;
        if kind != want {
            return Err(format!("is a {kind}, not a {want}"));
        }
        if size > MAX_FILE_BYTES {
            return Err(format!(
                "is {size} bytes; a policy {want} may be at most {MAX_FILE_BYTES}"
            ));
        }
        Ok(())
    }

    /// The bytes of the file at `rel`.
    pub(crate) fn file(&self, rel: &str) -> Result<Vec<u8>, String> {
        let parts: Vec<&str> = rel.split('/').collect();
        if rel.is_empty()
            || parts.len() > MAX_PATH_DEPTH
            || parts
                .iter()
                .any(|p| p.is_empty() || *p == "." || *p == ".." || p.contains(['\\', ':']))
        {
            return Err(format!(
                "`{}` is not a plain relative path inside the policy tree (`/` separated; no `.`, `..`, `\\` or `:`)",
                crate::sanitize::escape(rel)
            ));
        }
        let mut tree = self.tree;
        for (i, part) in parts.iter().enumerate() {
            self.bounded(tree, ObjectType::Tree)?;
            let t = self
                .repo
                .find_tree(tree)
                .map_err(|e| e.message().to_string())?;
            let entry = t.get_name(part).ok_or_else(|| {
                format!("no `{}` in the policy tree", crate::sanitize::escape(rel))
            })?;
            let last = i + 1 == parts.len();
            let mode = entry.filemode();
            if last {
                if mode != 0o100644 && mode != 0o100755 {
                    return Err(format!(
                        "`{}` is not a regular file in the policy tree",
                        crate::sanitize::escape(rel)
                    ));
                }
                self.bounded(entry.id(), ObjectType::Blob)?;
                let blob = self
                    .repo
                    .find_blob(entry.id())
                    .map_err(|e| e.message().to_string())?;
                let total = self.read.get() + blob.content().len();
                if total > MAX_POLICY_BYTES {
                    return Err(format!(
                        "the policy and the files it names exceed {MAX_POLICY_BYTES} bytes in all (every push loads them); keep certificates minimal (`gpg --export-options export-minimal`)"
                    ));
                }
                self.read.set(total);
                return Ok(blob.content().to_vec());
            }
            if mode != 0o040000 {
                return Err(format!(
                    "`{}` is not a directory in the policy tree",
                    crate::sanitize::escape(part)
                ));
            }
            tree = entry.id();
        }
        Err("empty path".into())
    }
}

impl KeyFiles for TreeFiles<'_> {
    fn read(&self, rel: &str) -> Result<Vec<u8>, KeyError> {
        self.file(rel).map_err(KeyError::Unreadable)
    }
    fn describe(&self, rel: &str) -> String {
        format!("{}:{rel}", engine::short(self.commit))
    }
}

/// How a policy commit is named in messages.
pub fn label(commit: Oid) -> String {
    format!("{POLICY_REF}@{}:{POLICY_FILE}", engine::short(commit))
}

/// The bytes of `countersign.toml` in `commit`'s tree.
///
/// # Errors
///
/// A `policy-invalid` finding when there is none or it cannot be read.
pub fn policy_text(repo: &Repository, commit: Oid) -> Result<Vec<u8>, Finding> {
    TreeFiles::of(repo, commit)?
        .file(POLICY_FILE)
        .map_err(|e| diags::no_policy_file(commit, &e))
}

/// Load and validate the policy in `commit`'s tree.
///
/// # Errors
///
/// A `policy-invalid` finding with every problem, positions included.
pub fn load_at(repo: &Repository, commit: Oid) -> Result<Policy, Finding> {
    let files = TreeFiles::of(repo, commit)?;
    let bytes = files
        .file(POLICY_FILE)
        .map_err(|e| diags::no_policy_file(commit, &e))?;
    let path = PathBuf::from(label(commit));
    let text = match String::from_utf8(bytes) {
        Ok(t) => t,
        Err(_) => return Err(diags::not_utf8(commit)),
    };
    policy::parse_with(&text, &files)
        .map(|mut p| {
            p.path = path.clone();
            p
        })
        .map_err(|problems| diags::invalid(&PolicyError::Invalid { path, problems }))
}

/// Why no person could be approved to sign the next policy change under
/// `policy` at `now`, if so: every `[policy-changes]` approval must be
/// fillable by distinct people with a usable key, other than some person
/// who may sign the change.
pub fn quorum_problem(policy: &Policy, now: Timestamp) -> Option<String> {
    let Some(changes) = &policy.policy_changes else {
        return Some(
            "it has no `[policy-changes]` table, so it could never be changed again".into(),
        );
    };
    let active = |t: Option<Timestamp>| t.is_none_or(|t| t > now);
    let usable: Vec<String> = policy
        .people
        .values()
        .filter(|p| active(p.dates.expires) && active(p.dates.revoked))
        .filter(|p| {
            policy.keyring.keys().iter().any(|k| {
                k.person == p.id
                    && active(k.dates.expires)
                    && active(k.dates.revoked)
                    && active(k.dates.retired)
            })
        })
        .map(|p| p.id.clone())
        .collect();
    let needed: usize = changes.approvals.iter().map(|r| r.count).sum();
    let signers: Vec<&String> = usable
        .iter()
        .filter(|id| {
            policy
                .people
                .get(*id)
                .is_some_and(|p| changes.signers.iter().any(|r| p.roles.contains(r)))
        })
        .collect();
    for s in &signers {
        let others: Vec<String> = usable.iter().filter(|o| o != s).cloned().collect();
        if engine::merge::assign(policy, &others, &changes.approvals).len() == needed {
            return None;
        }
    }
    let wants: Vec<String> = changes.approvals.iter().map(ToString::to_string).collect();
    Some(format!(
        "it leaves no quorum for the next change: [policy-changes] needs a signer holding {} and approvals of {} from other people, but only {} of its people have a usable key ({} of them may sign)",
        changes.signers.join(" or "),
        wants.join(" + "),
        usable.len(),
        signers.len()
    ))
}

/// The commits from `tip` back to the first commit `stop` accepts, oldest
/// first, and that commit; each must have exactly one parent.
pub(crate) fn chain(
    repo: &Repository,
    tip: Oid,
    stop: &dyn Fn(Oid) -> bool,
    max: usize,
) -> Result<(Oid, Vec<Oid>), ChainError> {
    let mut steps = Vec::new();
    let mut current = tip;
    while !stop(current) {
        if steps.len() >= max {
            return Err(ChainError::TooLong(max));
        }
        let odb = repo
            .odb()
            .map_err(|e| ChainError::Read(current, e.message().into()))?;
        let (_, kind) = odb
            .read_header(current)
            .map_err(|e| ChainError::Read(current, e.message().into()))?;
        if kind != ObjectType::Commit {
            return Err(ChainError::NotACommit(current, kind));
        }
        let c = repo
            .find_commit(current)
            .map_err(|e| ChainError::Read(current, e.message().into()))?;
        match c.parent_count() {
            1 => {}
            0 => return Err(ChainError::Unrelated(current)),
            n => return Err(ChainError::NotLinear(current, n)),
        }
        steps.push(current);
        current = c
            .parent_id(0)
            .map_err(|e| ChainError::Read(current, e.message().into()))?;
    }
    steps.reverse();
    Ok((current, steps))
}

/// Why a policy history is not a plain chain back to where it must lead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ChainError {
    /// More than this many commits.
    TooLong(usize),
    /// An object could not be read.
    Read(Oid, String),
    /// Not a commit.
    NotACommit(Oid, ObjectType),
    /// A root commit reached before the expected ancestor.
    Unrelated(Oid),
    /// A commit with this many parents.
    NotLinear(Oid, usize),
}

/// One policy commit judged by its parent's policy.
pub(crate) struct Step {
    pub(crate) outcome: Option<UpdateOutcome>,
    pub(crate) findings: Vec<Finding>,
    pub(crate) next: Option<Policy>,
}

/// When a policy commit is judged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum When {
    /// Pushed now: every date at `now` (retired keys may not sign).
    Push(Timestamp),
    /// Already in the history (a chain verified after the fact, `policy
    /// log`): every date and the quorum at the commit's own time, its
    /// committer time held between its parent's and `now` (a step accepted
    /// once must not break the chain later because a key expired or was
    /// revoked since; the hook remembers what it accepted, so this applies
    /// only where that record is missing).
    History(Timestamp),
}

/// Judge the policy commit `commit` (whose parent is `parent`) by
/// `parent_policy`, then validate the policy it introduces. The policy
/// ref is judged with the built-in [`Limits`] defaults, never the parent's
/// `[limits]` (an approved change could otherwise set limits no later
/// change can meet).
pub(crate) fn judge_step(
    repo: &Repository,
    parent_policy: Policy,
    parent: Oid,
    commit: Oid,
    when: When,
    started: Instant,
) -> Step {
    let fail = |outcome, findings| Step {
        outcome,
        findings,
        next: None,
    };
    let Some(changes) = parent_policy.policy_changes.clone() else {
        return fail(
            None,
            vec![diags::no_changes_table(parent).at_ref(POLICY_REF)],
        );
    };
    let at = match when {
        When::Push(now) => now,
        // The commit's claimed time, never before its parent's (a step is
        // judged no earlier than the policy it changes) nor after now.
        When::History(now) => {
            let time = |id: Oid| repo.find_commit(id).map(|c| c.committer().when().seconds());
            let t = time(commit).unwrap_or(now);
            let floor = time(parent).unwrap_or(t);
            t.max(floor).min(now)
        }
    };
    if let Ok(c) = repo.find_commit(commit) {
        if !approval::trailer_values(c.message_bytes(), approval::SQUASH_TRAILER).is_empty() {
            return fail(None, vec![diags::not_direct(commit)]);
        }
    }
    let judged = Policy {
        rules: vec![changes.rule(POLICY_REF)],
        limits: Limits::default(),
        ..parent_policy
    };
    let update = [RefUpdate {
        old: parent,
        new: commit,
        refname: POLICY_REF.into(),
    }];
    let mut decision = Verifier::new(repo, &judged, at)
        .started_at(started)
        .decide(&update);
    let outcome = decision.updates.pop();
    if !decision.findings.is_empty() {
        return fail(
            outcome,
            decision.findings.into_iter().map(policy_wording).collect(),
        );
    }
    let next = match load_at(repo, commit) {
        Ok(p) => p,
        Err(f) => return fail(outcome, vec![diags::change_invalid(commit, f)]),
    };
    if let Err(why) = only_named_files(repo, commit, &next) {
        return fail(outcome, vec![diags::stray_files(commit, &why)]);
    }
    if let Some(why) = quorum_problem(&next, at) {
        return fail(outcome, vec![diags::quorum_lost(commit, &why)]);
    }
    Step {
        outcome,
        findings: Vec::new(),
        next: Some(next),
    }
}

/// The files a policy names: `countersign.toml` and its certificate files.
pub fn named_files(policy: &Policy) -> BTreeSet<String> {
    let mut names: BTreeSet<String> = policy
        .keyring
        .keys()
        .iter()
        .filter_map(|k| match &k.source {
            KeySource::File(rel) => Some(rel.clone()),
            KeySource::Inline => None,
        })
        .collect();
    names.insert(POLICY_FILE.to_string());
    names
}

/// A policy tree holds exactly the files its policy names (regular files,
/// no links, no submodules, nothing else), each tree in git's canonical
/// form: UTF-8 names, sorted, no name twice and no two names that differ
/// only in case. It is written out to admins' disks by `policy edit` and
/// read by git and libgit2 alike, so both must see the same files.
fn only_named_files(repo: &Repository, commit: Oid, policy: &Policy) -> Result<(), String> {
    let named = named_files(policy);
    let root = repo
        .find_commit(commit)
        .map_err(|e| e.message().to_string())?
        .tree_id();
    let odb = repo.odb().map_err(|e| e.message().to_string())?;
    let mut stray = Vec::new();
    let mut count = 0usize;
    let mut stack = vec![(String::new(), root, 0usize)];
    while let Some((prefix, id, depth)) = stack.pop() {
        let (size, _) = odb.read_header(id).map_err(|e| e.message().to_string())?;
        if size > MAX_FILE_BYTES {
            return Err(format!(
                "a tree of {size} bytes is larger than a policy tree may be"
            ));
        }
        let t = repo.find_tree(id).map_err(|e| e.message().to_string())?;
        let mut previous: Option<Vec<u8>> = None;
        let mut folded = BTreeSet::new();
        for entry in t.iter() {
            count += 1;
            if count > MAX_TREE_ENTRIES {
                return Err("it holds far more entries than the policy names".into());
            }
            let Ok(name) = std::str::from_utf8(entry.name_bytes()) else {
                return Err(format!(
                    "a name in `{}` is not UTF-8",
                    crate::sanitize::escape(&prefix)
                ));
            };
            let is_tree = entry.filemode() == 0o040000;
            // git orders entries by name, a tree's name as if it ended in `/`.
            let mut key = name.as_bytes().to_vec();
            if is_tree {
                key.push(b'/');
            }
            if previous.as_ref().is_some_and(|p| *p >= key) {
                return Err(format!(
                    "`{}` is out of order or repeated in its tree: git and libgit2 could read different files",
                    crate::sanitize::escape(&format!("{prefix}{name}"))
                ));
            }
            previous = Some(key);
            if !folded.insert(name.to_lowercase()) {
                return Err(format!(
                    "`{}` differs from another name only in case",
                    crate::sanitize::escape(&format!("{prefix}{name}"))
                ));
            }
            let path = format!("{prefix}{name}");
            match entry.filemode() {
                0o040000 if depth < MAX_PATH_DEPTH => {
                    stack.push((format!("{path}/"), entry.id(), depth + 1));
                }
                0o100644 | 0o100755 if named.contains(&path) => {}
                _ => stray.push(path),
            }
        }
    }
    if stray.is_empty() {
        Ok(())
    } else {
        stray.sort();
        stray.truncate(5);
        Err(format!(
            "its tree holds {}, which the policy does not name",
            stray
                .iter()
                .map(|p| format!("`{}`", crate::sanitize::escape(p)))
                .collect::<Vec<_>>()
                .join(", ")
        ))
    }
}

/// The engine words a single commit without enough approvals for a merge
/// rule (`merge-required`: "push it to a topic branch"); on the policy ref
/// every change is such a commit, so say what is missing instead.
fn policy_wording(mut f: Finding) -> Finding {
    if f.code == Code::MergeRequired {
        let details = f
            .message
            .split_once('\n')
            .map(|(_, rest)| format!("\n{rest}"))
            .unwrap_or_default();
        f.code = Code::InsufficientApprovals;
        f.message = format!(
            "this policy change lacks the approvals its parent's [policy-changes] requires{details}"
        );
        f.help = format!(
            "other admins approve the proposal (`countersign approve <proposal> --ref {POLICY_REF} --result --push origin`), then `countersign policy apply <name>`"
        );
    }
    f
}

/// The trust file of `root`: the last tip seen as the ref's value and
/// verified (the high-water mark: the ref must never go back behind it),
/// and the tips verified or accepted by the hook. Empty when the file is
/// missing, unreadable or for another root.
#[derive(Debug, Default)]
struct Trust {
    seen: Option<Oid>,
    tips: Vec<Oid>,
}

fn trusted(repo: &Repository, root: Oid) -> Trust {
    let path = repo.path().join(TRUST_FILE);
    let Ok(text) = std::fs::read_to_string(path) else {
        return Trust::default();
    };
    let mut lines = text.lines();
    if lines.next() != Some(TRUST_HEADER) || lines.next() != Some(&format!("root {root}")) {
        return Trust::default();
    }
    let mut trust = Trust::default();
    for l in lines {
        match l.strip_prefix("seen ") {
            Some(hex) => trust.seen = engine::parse_oid(hex.trim(), repo.object_format()),
            None => trust
                .tips
                .extend(engine::parse_oid(l.trim(), repo.object_format())),
        }
    }
    trust
}

/// Record `tip` as verified from `root` (best effort: without the file the
/// chain is verified again on the next push); with `seen`, also as the
/// ref's value observed (the new high-water mark).
pub fn remember(repo: &Repository, root: Oid, tips: &[Oid]) {
    record_trust(repo, root, tips, false);
}

fn record_trust(repo: &Repository, root: Oid, tips: &[Oid], seen: bool) {
    // One writer at a time (concurrent hooks): read, change and replace the
    // file under a lock on a companion file; without the lock, write anyway
    // (losing an update costs a re-verification, never trust).
    let lock_path = repo.path().join(format!("{TRUST_FILE}.lock"));
    // The directory is the audit log's too: made as git's
    // core.sharedRepository asks, so other pushers can write the log.
    let sharing = crate::audit::Sharing::of(repo);
    let _lock = lock_path
        .parent()
        .and_then(|d| crate::audit::create_dirs(d, sharing).ok())
        .and_then(|()| {
            std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&lock_path)
                .ok()
        })
        .inspect(|_| crate::audit::adopt_parent_owner(&lock_path))
        .filter(|f| f.lock().is_ok());
    let mut trust = trusted(repo, root);
    if seen {
        trust.seen = tips.last().copied();
    }
    for tip in tips {
        if !trust.tips.contains(tip) {
            trust.tips.push(*tip);
        }
    }
    let skip = trust.tips.len().saturating_sub(MAX_TRUSTED);
    let mut out = format!("{TRUST_HEADER}\nroot {root}\n");
    if let Some(s) = trust.seen {
        out.push_str(&format!("seen {s}\n"));
    }
    for t in &trust.tips[skip..] {
        out.push_str(&format!("{t}\n"));
    }
    let path = repo.path().join(TRUST_FILE);
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let write = || -> std::io::Result<()> {
        if let Some(dir) = path.parent() {
            crate::audit::create_dirs(dir, sharing)?;
        }
        std::fs::write(&tmp, out.as_bytes())?;
        crate::audit::adopt_parent_owner(&tmp);
        std::fs::rename(&tmp, &path)
    };
    if write().is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
}

/// The policy in force in ref mode: the policy ref's current value, its
/// chain from `root` verified step by step (each commit by its parent's
/// policy) back to the root or to a tip verified before.
///
/// # Errors
///
/// A `policy-missing` finding when the ref does not exist, a
/// `policy-ref-broken` finding when the chain does not hold, and
/// `policy-invalid` when the root's policy does not validate.
pub fn in_force(
    repo: &Repository,
    root: Oid,
    now: Timestamp,
    started: Instant,
) -> Result<InForce, Finding> {
    in_force_with(repo, root, started, When::History(now))
}

/// [`in_force`] for the hook: a policy commit the hook has no record of
/// accepting (the ref was moved around it, or its trust file was lost) is
/// judged as if pushed now, never by its claimed time. After a restore the
/// operator reviews the history (`policy log`) and re-verifies it with
/// `countersign policy pin <root>`, which judges it as history and records
/// the result.
///
/// # Errors
///
/// As for [`in_force`].
pub fn in_force_for_hook(
    repo: &Repository,
    root: Oid,
    now: Timestamp,
    started: Instant,
) -> Result<InForce, Finding> {
    in_force_with(repo, root, started, When::Push(now))
}

fn in_force_with(
    repo: &Repository,
    root: Oid,
    started: Instant,
    unknown: When,
) -> Result<InForce, Finding> {
    let tip = match repo.refname_to_id(POLICY_REF) {
        Ok(t) => t,
        Err(e) if e.code() == git2::ErrorCode::NotFound => return Err(diags::ref_missing(root)),
        Err(e) => return Err(engine::internal(&e.message())),
    };
    let trust = trusted(repo, root);
    // Walk back to the high-water mark (or the root): the ref may only
    // have moved forward from the policy last seen in force.
    let floor = trust.seen.unwrap_or(root);
    let (start, steps) = chain(repo, tip, &|c| c == floor || c == root, MAX_CHAIN)
        .map_err(|e| diags::chain_broken(root, tip, &chain_message(&e, "the trust root")))?;
    if start != floor {
        return Err(diags::chain_broken(
            root,
            tip,
            &format!(
                "it no longer descends from {}, the policy last seen in force here: the ref was moved back",
                engine::short(floor)
            ),
        ));
    }
    let mut policy = load_at(repo, start)?;
    let mut parent = start;
    for c in &steps {
        let step = if trust.tips.contains(c) {
            // Verified or accepted by the hook before: only load it.
            match load_at(repo, *c) {
                Ok(p) => Step {
                    outcome: None,
                    findings: Vec::new(),
                    next: Some(p),
                },
                Err(f) => Step {
                    outcome: None,
                    findings: vec![f],
                    next: None,
                },
            }
        } else {
            judge_step(repo, policy, parent, *c, unknown, started)
        };
        match step.next {
            Some(next) if step.findings.is_empty() => policy = next,
            _ => {
                let why: Vec<String> = step
                    .findings
                    .iter()
                    .map(|f| format!("{}: {}", f.code.as_str(), f.message))
                    .collect();
                return Err(diags::chain_broken(
                    root,
                    tip,
                    &format!(
                        "policy commit {} is not authorized by its parent's policy ({})",
                        engine::short(*c),
                        why.join("; ")
                    ),
                ));
            }
        }
        parent = *c;
    }
    if trust.seen != Some(tip) {
        record_trust(repo, root, &[tip], true);
    }
    Ok(InForce {
        policy,
        id: PolicyId::Ref {
            commit: tip.to_string(),
            root: root.to_string(),
        },
        chain: Some((root, tip)),
    })
}

fn chain_message(e: &ChainError, target: &str) -> String {
    match e {
        ChainError::TooLong(n) => format!("more than {n} policy commits lead back to {target}"),
        ChainError::Read(id, m) => format!("{} cannot be read: {m}", engine::short(*id)),
        ChainError::NotACommit(id, k) => format!("{} is a {k}, not a commit", engine::short(*id)),
        ChainError::Unrelated(id) => format!(
            "{} has no parent and is not {target}: this history does not lead back to it",
            engine::short(*id)
        ),
        ChainError::NotLinear(id, n) => format!(
            "{} has {n} parents; policy commits have exactly one",
            engine::short(*id)
        ),
    }
}

/// What an update of `refname` is to the policy-ref machinery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// An ordinary ref: the policy's rules judge it.
    Ordinary,
    /// The policy ref (ref mode): judged by `[policy-changes]`.
    PolicyRef,
    /// A proposal: not checked.
    Proposal,
    /// countersign's own, or a name that could alias the policy ref.
    Reserved(&'static str),
}

fn kind_of(v: &Verifier<'_>, refname: &str, ref_mode: bool) -> Kind {
    let lower = refname.to_ascii_lowercase();
    if refname == POLICY_REF {
        return if ref_mode {
            Kind::PolicyRef
        } else {
            Kind::Reserved("is refused: it is where the policy lives once `countersign policy migrate` moves it there, and only that command creates it")
        };
    }
    if refname.starts_with(PROPOSALS_PREFIX) {
        return if ref_mode {
            Kind::Proposal
        } else {
            Kind::Reserved(
                "is refused: proposals exist only where the policy lives on refs/meta/countersign",
            )
        };
    }
    if lower.starts_with(RESERVED_PREFIX) {
        return Kind::Reserved("is refused: refs/countersign/* belongs to countersign; only refs/countersign/proposals/* may be pushed");
    }
    if lower == POLICY_REF {
        return Kind::Reserved("is refused: it differs from the policy ref only in case");
    }
    if ref_mode && v.names_for(refname).iter().any(|n| n == POLICY_REF) {
        return Kind::Reserved("is refused: it is a symbolic ref to the policy ref");
    }
    Kind::Ordinary
}

/// Decide a push: ordinary refs by the policy's rules, the policy ref (in
/// ref mode) by `[policy-changes]` step by step, proposals unchecked, and
/// the rest of `refs/countersign/*` refused.
pub fn decide(
    repo: &Repository,
    in_force: &InForce,
    updates: &[RefUpdate],
    now: Timestamp,
    started: Instant,
) -> Decision {
    let policy = &in_force.policy;
    let ref_mode = in_force.chain.is_some();
    // The hook's verification cache: signatures verified by an earlier
    // push or `verify` are not verified again (see the engine).
    let mut verifier = Verifier::new(repo, policy, now)
        .started_at(started)
        .with_cache();
    if updates.len() > policy.limits.updates {
        // The engine counts only the refs it judges; proposals and
        // reserved refs count too.
        return verifier.decide(updates);
    }
    let kinds: Vec<Kind> = updates
        .iter()
        .map(|u| kind_of(&verifier, &u.refname, ref_mode))
        .collect();
    let ordinary: Vec<RefUpdate> = updates
        .iter()
        .zip(&kinds)
        .filter(|(_, k)| **k == Kind::Ordinary)
        .map(|(u, _)| u.clone())
        .collect();
    let mut decision = verifier.decide(&ordinary);
    // Only later pushes' time depends on it.
    let _ = verifier.persist_cache();
    for (u, kind) in updates.iter().zip(kinds) {
        match kind {
            Kind::Ordinary => {}
            // Unprotected: checked when (if) it lands on the policy ref.
            Kind::Proposal => decision.updates.push(bare_outcome(u, "")),
            Kind::Reserved(why) => {
                decision
                    .updates
                    .push(bare_outcome(u, "built-in: refs reserved for countersign"));
                decision.findings.push(diags::reserved(&u.refname, why));
            }
            Kind::PolicyRef => {
                let (outcome, findings) = match in_force.chain {
                    Some((_, tip)) => judge_update(repo, tip, u, now, started, policy),
                    None => (bare_outcome(u, ""), Vec::new()),
                };
                decision.updates.push(outcome);
                decision.findings.extend(findings);
            }
        }
    }
    decision
}

fn bare_outcome(u: &RefUpdate, rule: &str) -> UpdateOutcome {
    UpdateOutcome {
        refname: u.refname.clone(),
        old: u.old.to_string(),
        new: u.new.to_string(),
        rules: if rule.is_empty() {
            Vec::new()
        } else {
            vec![rule.to_string()]
        },
        commits_checked: 0,
        signers: Vec::new(),
        merges: Vec::new(),
    }
}

/// Judge an update of the policy ref from the verified `tip`: a
/// fast-forward of single-parent commits, each authorized by its parent's
/// policy.
fn judge_update(
    repo: &Repository,
    tip: Oid,
    u: &RefUpdate,
    now: Timestamp,
    started: Instant,
    in_force: &Policy,
) -> (UpdateOutcome, Vec<Finding>) {
    let mut outcome = bare_outcome(u, "built-in: the policy ref, judged by [policy-changes]");
    if u.new.is_zero() {
        return (outcome, vec![diags::deletion(u.old)]);
    }
    if u.old != tip {
        return (
            outcome,
            vec![
                engine::internal(&"the policy ref moved while the push was decided")
                    .at_ref(POLICY_REF),
            ],
        );
    }
    let max = in_force.limits.commits.min(MAX_STEPS_PER_PUSH);
    let (_, steps) = match chain(repo, u.new, &|c| c == tip, max) {
        Ok(c) => c,
        Err(e) => {
            let f = match e {
                ChainError::TooLong(_) => diags::too_many(u.new, max),
                ChainError::Unrelated(_) => diags::not_fast_forward(u.new, tip),
                other => diags::not_linear(u.new, &chain_message(&other, "the current policy")),
            };
            return (outcome, vec![f]);
        }
    };
    let mut policy = match load_at(repo, tip) {
        Ok(p) => p,
        Err(f) => return (outcome, vec![f.at_ref(POLICY_REF)]),
    };
    let mut parent = tip;
    for c in steps {
        let step = judge_step(repo, policy, parent, c, When::Push(now), started);
        if let Some(o) = step.outcome {
            outcome.commits_checked += o.commits_checked;
            outcome.signers.extend(o.signers);
            outcome.merges.extend(o.merges);
        }
        match step.next {
            Some(next) if step.findings.is_empty() => policy = next,
            _ => {
                let findings = step
                    .findings
                    .into_iter()
                    .map(|f| f.at_ref(POLICY_REF))
                    .collect();
                return (outcome, findings);
            }
        }
        parent = c;
    }
    (outcome, Vec::new())
}

/// The policy commits an update from `old` to `new` brings, oldest first
/// (empty when it is not a plain chain): remembered as verified once the
/// hook accepts the push, so none is judged again later.
pub fn brought(repo: &Repository, old: Oid, new: Oid) -> Vec<Oid> {
    chain(repo, new, &|c| c == old, MAX_STEPS_PER_PUSH)
        .map(|(_, steps)| steps)
        .unwrap_or_default()
}

/// Judge moving the policy ref from its verified value `tip` to `new`, as
/// the hook would (used by `policy apply` before pushing).
pub fn check_change(repo: &Repository, in_force: &InForce, new: Oid, now: Timestamp) -> Decision {
    let u = RefUpdate {
        old: in_force.chain.map_or(Oid::ZERO_SHA1, |(_, t)| t),
        new,
        refname: POLICY_REF.into(),
    };
    decide(repo, in_force, &[u], now, Instant::now())
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEYS: [&str; 3] = [
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEQ852q4rlM2rEcMfJvovNeGIEimapIzcaae9y4MOcXp",
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAINkhBU2ytSInu/W7preUqvKA2+nbbeId6sFDI7dZgMCc",
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIF3pxH9H54wyKHaXkv64xydQpJvvK90tie3KUKBLsw2A",
    ];

    /// Three admins `a`, `b`, `c`; `extra` is appended to `c`'s table.
    fn three_admins(extra: &str, approvals: usize) -> Policy {
        let text = format!(
            r#"[repository]
id = "t/x"
[roles]
admin = "a"
[people.a]
roles = ["admin"]
ssh = ["{}"]
[people.b]
roles = ["admin"]
ssh = ["{}"]
[people.c]
roles = ["admin"]
ssh = [{}]
[policy-changes]
signers = ["admin"]
approvals = [{{ role = "admin", count = {approvals} }}]
"#,
            KEYS[0], KEYS[1], extra
        );
        policy::parse(&text, std::path::Path::new(".")).unwrap()
    }

    #[test]
    fn quorum_needs_a_signer_and_other_approvers_with_usable_keys() {
        let now = 2_000_000_000;
        let plain = format!("\"{}\"", KEYS[2]);
        assert_eq!(quorum_problem(&three_admins(&plain, 2), now), None);
        // The signer never approves: three admins cannot meet 3 approvals.
        assert!(quorum_problem(&three_admins(&plain, 3), now).is_some());
        // An expired, revoked or retired key does not count.
        for dates in [
            "expires = 2020-01-01",
            "revoked = 2020-01-01",
            "retired = 2020-01-01",
        ] {
            let entry = format!("{{ key = \"{}\", {dates} }}", KEYS[2]);
            assert!(
                quorum_problem(&three_admins(&entry, 2), now).is_some(),
                "{dates}"
            );
            let later = format!(
                "{{ key = \"{}\", {} }}",
                KEYS[2],
                dates.replace("2020", "2099")
            );
            assert_eq!(
                quorum_problem(&three_admins(&later, 2), now),
                None,
                "{dates}"
            );
        }
    }

    #[test]
    fn policy_changes_table_is_required_and_never_empty() {
        let p = three_admins(&format!("\"{}\"", KEYS[2]), 2);
        assert!(p.policy_changes.is_some());
        let text = "[repository]\nid = \"t/x\"\n[roles]\nadmin = \"a\"\n[policy-changes]\nsigners = [\"admin\"]\napprovals = []\n";
        assert!(policy::parse(text, std::path::Path::new(".")).is_err());
        let text = "[repository]\nid = \"t/x\"\n[roles]\nadmin = \"a\"\n[policy-changes]\nsigners = [\"admin\"]\n";
        assert!(policy::parse(text, std::path::Path::new(".")).is_err());
        let text = "[repository]\nid = \"t/x\"\n[roles]\nadmin = \"a\"\n";
        let p = policy::parse(text, std::path::Path::new(".")).unwrap();
        assert!(
            quorum_problem(&p, 0).is_some(),
            "no table, no way to change it"
        );
    }

    fn temp_repo(tag: &str) -> (PathBuf, Repository) {
        let dir = std::env::temp_dir().join(format!("cs-gov-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let repo = Repository::init_bare(&dir).unwrap();
        (dir, repo)
    }

    fn commit_with(repo: &Repository, files: &[(&str, &[u8], i32)]) -> Oid {
        let mut b = repo.treebuilder(None).unwrap();
        for (name, bytes, mode) in files {
            let id = repo.blob(bytes).unwrap();
            b.insert(name, id, *mode).unwrap();
        }
        let tree = repo.find_tree(b.write().unwrap()).unwrap();
        let sig = git2::Signature::now("t", "t@t").unwrap();
        repo.commit(None, &sig, &sig, "m", &tree, &[]).unwrap()
    }

    #[test]
    fn key_files_are_plain_paths_to_regular_files_in_the_tree() {
        let (dir, repo) = temp_repo("tree");
        let c = commit_with(
            &repo,
            &[
                ("countersign.toml", b"x", 0o100644),
                ("link", b"countersign.toml", 0o120000),
            ],
        );
        let files = TreeFiles::of(&repo, c).unwrap();
        assert_eq!(files.file("countersign.toml").unwrap(), b"x");
        for bad in [
            "",
            "/countersign.toml",
            "./countersign.toml",
            "../x",
            "a//b",
            "link",
            "nope",
        ] {
            assert!(files.file(bad).is_err(), "{bad:?}");
        }
        let deep = ["d"; MAX_PATH_DEPTH + 1].join("/");
        assert!(files
            .file(&deep)
            .unwrap_err()
            .contains("plain relative path"));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_policy_reads_at_most_max_policy_bytes_in_all() {
        let (dir, repo) = temp_repo("total");
        let big = vec![b'x'; 900 * 1024];
        let c = commit_with(
            &repo,
            &[
                ("a", &big, 0o100644),
                ("b", &big, 0o100644),
                ("c", &big, 0o100644),
            ],
        );
        let files = TreeFiles::of(&repo, c).unwrap();
        assert!(files.file("a").is_ok());
        assert!(files.file("b").is_ok());
        assert!(files.file("c").unwrap_err().contains("in all"));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn trust_file_is_bound_to_its_root_and_bounded() {
        let (dir, repo) = temp_repo("trust");
        let root = commit_with(&repo, &[("countersign.toml", b"a", 0o100644)]);
        let other = commit_with(&repo, &[("countersign.toml", b"b", 0o100644)]);
        assert!(trusted(&repo, root).tips.is_empty());
        remember(&repo, root, &[other]);
        assert!(trusted(&repo, root).tips.contains(&other));
        assert_eq!(trusted(&repo, root).seen, None);
        record_trust(&repo, root, &[other], true);
        assert_eq!(trusted(&repo, root).seen, Some(other));
        // Another root does not inherit it.
        assert!(trusted(&repo, other).tips.is_empty());
        for i in 0..(MAX_TRUSTED + 10) {
            let c = commit_with(
                &repo,
                &[("countersign.toml", format!("{i}").as_bytes(), 0o100644)],
            );
            remember(&repo, root, &[c]);
        }
        assert_eq!(trusted(&repo, root).tips.len(), MAX_TRUSTED);
        assert_eq!(trusted(&repo, root).seen, Some(other), "the mark survives");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn policy_id_serializes_flat() {
        let id = PolicyId::Ref {
            commit: "c".into(),
            root: "r".into(),
        };
        assert_eq!(
            serde_json::to_string(&id).unwrap(),
            r#"{"commit":"c","root":"r"}"#
        );
    }
}
