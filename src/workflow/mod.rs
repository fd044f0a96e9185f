//! The developer-side commands behind `approve`, `merge` and `status`.
//!
//! Signing shells out to the signer git itself would use (honouring
//! `gpg.format`, `user.signingkey`, `gpg.program`, `gpg.ssh.program`), so
//! ssh-agent, gpg-agent and hardware keys work. Approvals are shared as git
//! notes under `refs/notes/countersign` on the approved commit; notes are
//! only a way to carry trailers to the merger: the hook reads nothing but
//! the trailers of the merge commit, and verifies every one of them.
//! Evaluation reuses the hook's engine on a trial merge commit, so the
//! reasons given here are the reasons the hook would give.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use git2::{Oid, Repository};

use crate::engine::merge::MergeRecord;
use crate::engine::{Decision, RefUpdate, Verifier};
use crate::finding::Code;
use crate::policy::Policy;
use crate::signing::approval::{self, Approval, Binding, Statement};
use crate::time::Timestamp;

/// Notes ref where approvals are shared.
pub const NOTES_REF: &str = "refs/notes/countersign";

/// Why a workflow command failed before any decision.
#[derive(Debug, thiserror::Error)]
pub enum WorkflowError {
    /// A git operation failed.
    #[error("{0}")]
    Git(String),
    /// The signer failed or is not configured.
    #[error("{0}")]
    Sign(String),
    /// Something the user must supply is missing.
    #[error("{0}")]
    Usage(String),
}

fn git_err(what: &str, e: git2::Error) -> WorkflowError {
    WorkflowError::Git(format!("{what}: {}", e.message()))
}

/// `main` → `refs/heads/main`; full names stay as they are.
pub fn full_ref(name: &str) -> String {
    if name.starts_with("refs/") {
        name.to_string()
    } else {
        format!("refs/heads/{name}")
    }
}

/// Resolve a revision to a commit id.
///
/// # Errors
///
/// [`WorkflowError::Usage`] when `rev` does not name a commit here.
pub fn resolve_commit(repo: &Repository, rev: &str) -> Result<Oid, WorkflowError> {
    let obj = repo
        .revparse_single(rev)
        .map_err(|e| git_err(&format!("cannot resolve `{rev}`"), e))?;
    obj.peel_to_commit()
        .map(|c| c.id())
        .map_err(|e| git_err(&format!("`{rev}` is not a commit"), e))
}

/// Build the statement approving `commit` (its tree) or, with `result`,
/// the exact result (its parents and tree).
///
/// # Errors
///
/// [`WorkflowError`] when the commit, its tree or (with `result`) its parents cannot be read.
pub fn statement_for(
    repo: &Repository,
    repository_id: &str,
    refname: &str,
    commit: Oid,
    result: bool,
    now: Timestamp,
) -> Result<Statement, WorkflowError> {
    let c = repo
        .find_commit(commit)
        .map_err(|e| git_err("cannot read the commit", e))?;
    let binding = if result {
        Binding::Result {
            parents: c.parent_ids().collect(),
            tree: c.tree_id(),
        }
    } else {
        Binding::Topic {
            commit,
            tree: c.tree_id(),
        }
    };
    if let Binding::Result { parents, .. } = &binding {
        if parents.is_empty() || parents.len() > 2 {
            return Err(WorkflowError::Usage(
                "`--result` approves a commit with one or two parents".into(),
            ));
        }
    }
    Ok(Statement {
        repository: repository_id.to_string(),
        refname: refname.to_string(),
        binding,
        issued_at: now,
    })
}

/// Sign `statement` the way git would sign a commit in this repository,
/// and return the approval (with `by` from `user.email`).
///
/// # Errors
///
/// [`WorkflowError::Sign`] when git has no signing key configured or the signer fails.
pub fn sign(repo: &Repository, statement: Statement) -> Result<Approval, WorkflowError> {
    let config = repo
        .config()
        .map_err(|e| git_err("cannot read git config", e))?;
    let get = |k: &str| config.get_string(k).ok().filter(|s| !s.is_empty());
    let format = get("gpg.format").unwrap_or_else(|| "openpgp".into());
    let key = get("user.signingkey");
    let payload = statement.canonical();
    let armored = match format.as_str() {
        "ssh" => {
            let program = get("gpg.ssh.program").unwrap_or_else(|| "ssh-keygen".into());
            let key = key.ok_or_else(|| {
                WorkflowError::Sign(
                    "`user.signingkey` is not set; git needs it to sign with SSH too".into(),
                )
            })?;
            sign_ssh(&program, &key, &payload)?
        }
        "openpgp" => {
            let program = get("gpg.openpgp.program")
                .or_else(|| get("gpg.program"))
                .unwrap_or_else(|| "gpg".into());
            sign_openpgp(&program, key.as_deref(), &payload)?
        }
        other => {
            return Err(WorkflowError::Sign(format!(
                "gpg.format `{other}` cannot sign approvals; use ssh or openpgp"
            )))
        }
    };
    let signature = approval::dearmor(&armored).map_err(WorkflowError::Sign)?;
    let by = get("user.email")
        .or_else(|| get("user.name"))
        .unwrap_or_else(|| "unknown".into())
        .split_whitespace()
        .collect::<Vec<_>>()
        .join("_");
    Ok(Approval {
        by,
        statement,
        signature,
    })
}

struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Result<Self, WorkflowError> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let p = std::env::temp_dir().join(format!("countersign-{}-{nanos}", std::process::id()));
        std::fs::create_dir(&p).map_err(|e| {
            WorkflowError::Sign(format!("cannot create a temporary directory: {e}"))
        })?;
        Ok(TempDir(p))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn expand_home(p: &str) -> PathBuf {
    match (p.strip_prefix("~/"), std::env::var_os("HOME")) {
        (Some(rest), Some(home)) => Path::new(&home).join(rest),
        _ => PathBuf::from(p),
    }
}

fn sign_ssh(program: &str, key: &str, payload: &[u8]) -> Result<Vec<u8>, WorkflowError> {
    let dir = TempDir::new()?;
    let io = |e: std::io::Error| WorkflowError::Sign(format!("cannot write a temporary file: {e}"));
    let mut args: Vec<String> = vec![
        "-Y".into(),
        "sign".into(),
        "-n".into(),
        approval::NAMESPACE.into(),
    ];
    let literal = key
        .strip_prefix("key::")
        .or_else(|| key.starts_with("ssh-").then_some(key))
        .or_else(|| key.starts_with("ecdsa-").then_some(key))
        .or_else(|| key.starts_with("sk-").then_some(key));
    if let Some(public) = literal {
        // As git does: a literal public key signs through ssh-agent.
        let path = dir.0.join("key.pub");
        std::fs::write(&path, format!("{public}\n")).map_err(io)?;
        args.extend(["-f".into(), path.display().to_string(), "-U".into()]);
    } else {
        args.extend(["-f".into(), expand_home(key).display().to_string()]);
    }
    let file = dir.0.join("statement");
    std::fs::write(&file, payload).map_err(io)?;
    args.push(file.display().to_string());
    let out = Command::new(program)
        .args(&args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| WorkflowError::Sign(format!("cannot run `{program}`: {e}")))?;
    if !out.status.success() {
        return Err(WorkflowError::Sign(format!(
            "`{program} -Y sign` failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    std::fs::read(dir.0.join("statement.sig"))
        .map_err(|e| WorkflowError::Sign(format!("`{program}` wrote no signature: {e}")))
}

fn sign_openpgp(
    program: &str,
    key: Option<&str>,
    payload: &[u8],
) -> Result<Vec<u8>, WorkflowError> {
    let mut cmd = Command::new(program);
    cmd.arg("--status-fd=2").arg("-bsa");
    if let Some(k) = key {
        cmd.arg("-u").arg(k);
    }
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| WorkflowError::Sign(format!("cannot run `{program}`: {e}")))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(payload)
            .map_err(|e| WorkflowError::Sign(format!("cannot write to `{program}`: {e}")))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| WorkflowError::Sign(format!("`{program}` failed: {e}")))?;
    let status = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() || !status.contains("[GNUPG:] SIG_CREATED ") {
        return Err(WorkflowError::Sign(format!(
            "`{program}` failed to sign: {}",
            status.trim()
        )));
    }
    Ok(out.stdout)
}

/// Run git in the repository's work tree (or git dir).
///
/// # Errors
///
/// [`WorkflowError::Git`] when git cannot be run (a git that runs and fails is returned as its output).
pub fn git(repo: &Repository, args: &[&str]) -> Result<std::process::Output, WorkflowError> {
    let mut cmd = Command::new("git");
    match repo.workdir() {
        Some(w) => cmd.current_dir(w),
        None => cmd.current_dir(repo.path()),
    };
    cmd.args(args)
        .output()
        .map_err(|e| WorkflowError::Git(format!("cannot run git: {e}")))
}

/// Run git; its standard output when it succeeds.
///
/// # Errors
///
/// [`WorkflowError::Git`] with git's message when it fails.
pub fn git_ok(repo: &Repository, args: &[&str]) -> Result<String, WorkflowError> {
    let out = git(repo, args)?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(WorkflowError::Git(format!(
            "`git {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

/// Fetch `remote`'s approval notes and merge them into ours (union of
/// lines); a remote without notes is not an error.
///
/// # Errors
///
/// [`WorkflowError::Git`] when merging the fetched notes fails.
pub fn fetch_notes(repo: &Repository, remote: &str) -> Result<(), WorkflowError> {
    let incoming = "refs/notes/countersign-incoming";
    if git(
        repo,
        &[
            "fetch",
            "--quiet",
            remote,
            &format!("+{NOTES_REF}:{incoming}"),
        ],
    )?
    .status
    .success()
    {
        git_ok(
            repo,
            &[
                "notes",
                "--ref",
                NOTES_REF,
                "merge",
                "--quiet",
                "-s",
                "cat_sort_uniq",
                incoming,
            ],
        )?;
    }
    Ok(())
}

/// Append the trailer to the notes of `commit`, and with `remote`, share
/// them: fetch the remote's notes, merge (union of lines), push.
///
/// # Errors
///
/// [`WorkflowError::Git`] when fetching, merging or pushing the notes fails.
pub fn share(
    repo: &Repository,
    commit: Oid,
    trailer: &str,
    remote: Option<&str>,
) -> Result<(), WorkflowError> {
    let c = commit.to_string();
    if let Some(r) = remote {
        fetch_notes(repo, r)?;
    }
    if !notes_for(repo, commit)?.iter().any(|l| l == trailer) {
        git_ok(
            repo,
            &["notes", "--ref", NOTES_REF, "append", "-m", trailer, &c],
        )?;
    }
    if let Some(r) = remote {
        git_ok(repo, &["push", "--quiet", r, NOTES_REF])?;
    }
    Ok(())
}

/// The approval trailer lines in the notes of every commit reachable from
/// `topic` and not from `base`, tip first, without duplicates: approvals of
/// earlier tips are collected too, so they can be shown as stale.
///
/// # Errors
///
/// [`WorkflowError::Git`] when the range cannot be walked or a note read.
pub fn notes_in_range(
    repo: &Repository,
    base: Oid,
    topic: Oid,
) -> Result<Vec<String>, WorkflowError> {
    let mut walk = repo
        .revwalk()
        .map_err(|e| git_err("cannot walk the topic", e))?;
    walk.push(topic)
        .map_err(|e| git_err("cannot walk the topic", e))?;
    walk.hide(base)
        .map_err(|e| git_err("cannot walk the topic", e))?;
    let mut out: Vec<String> = Vec::new();
    for id in walk {
        let id = id.map_err(|e| git_err("cannot walk the topic", e))?;
        for line in notes_for(repo, id)? {
            if !out.contains(&line) {
                out.push(line);
            }
        }
    }
    Ok(out)
}

/// The outcome of planning a merge: every approval judged, the ones that
/// would be kept, and the hook's decision on a merge carrying those.
pub struct Plan {
    /// Every collected approval, judged (from a trial carrying all).
    pub judged: Option<MergeRecord>,
    /// The trailers that verify and count toward this merge.
    pub keep: Vec<String>,
    /// The hook's decision on a trial merge carrying only `keep`.
    pub decision: Decision,
}

/// Judge `trailers` for merging `topic` into `target_ref` at `base`, keep
/// the eligible ones, and decide on a merge carrying only those.
///
/// # Errors
///
/// [`WorkflowError`] as for [`trial`].
#[allow(clippy::too_many_arguments)]
pub fn plan(
    repo: &Repository,
    policy: &Policy,
    target_ref: &str,
    base: Oid,
    topic: Oid,
    shape: Shape,
    trailers: &[String],
    now: Timestamp,
) -> Result<Plan, WorkflowError> {
    let (_, judged) = trial(repo, policy, target_ref, base, topic, shape, trailers, now)?;
    let keep: Vec<String> = judged
        .iter()
        .flat_map(|r| r.approvals.iter())
        .filter(|a| a.eligible)
        .filter_map(|a| trailers.get(a.index - 1).cloned())
        .collect();
    let (decision, _) = trial(repo, policy, target_ref, base, topic, shape, &keep, now)?;
    Ok(Plan {
        judged,
        keep,
        decision,
    })
}

/// The approval trailer lines in the notes of `commit`.
///
/// # Errors
///
/// [`WorkflowError::Git`] when the notes cannot be read.
pub fn notes_for(repo: &Repository, commit: Oid) -> Result<Vec<String>, WorkflowError> {
    let note = match repo.find_note(Some(NOTES_REF), commit) {
        Ok(n) => n,
        Err(e) if e.code() == git2::ErrorCode::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(git_err("cannot read approval notes", e)),
    };
    let text = String::from_utf8_lossy(note.message_bytes()).into_owned();
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|l| {
            l.split_once(':')
                .is_some_and(|(k, _)| k.trim().eq_ignore_ascii_case(approval::TRAILER))
        })
        .map(str::to_string)
        .collect())
}

/// How a topic lands: a two-parent merge, or one commit that squashes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// `git merge --no-ff`: parents are the target and the topic.
    Merge,
    /// `git merge --squash` + commit: one parent, and a
    /// `Countersign-Squash: <topic>` trailer so the topic's authors stay
    /// its authors.
    Squash,
}

/// The trailer line naming the squashed topic.
pub fn squash_trailer(topic: Oid) -> String {
    format!("{}: {topic}", approval::SQUASH_TRAILER)
}

/// The merge message: subject, blank line, one trailer per approval.
pub fn merge_message(subject: &str, trailers: &[String]) -> String {
    let mut m = format!("{subject}\n");
    if !trailers.is_empty() {
        m.push('\n');
        for t in trailers {
            m.push_str(t);
            m.push('\n');
        }
    }
    m
}

/// Evaluate merging `topic` into `target_ref` (currently at `base`) with
/// these trailers, exactly as the hook would, on a trial merge commit
/// (written to the object database, referenced by nothing). Findings about
/// the trial commit's own (missing) signature are left out: the real merge
/// is signed when it is made.
///
/// # Errors
///
/// [`WorkflowError`] when the commits cannot be read, the topic does not merge cleanly or has several merge bases, or the trial commit cannot be written.
#[allow(clippy::too_many_arguments)]
pub fn trial(
    repo: &Repository,
    policy: &Policy,
    target_ref: &str,
    base: Oid,
    topic: Oid,
    shape: Shape,
    trailers: &[String],
    now: Timestamp,
) -> Result<(Decision, Option<MergeRecord>), WorkflowError> {
    let ours = repo
        .find_commit(base)
        .map_err(|e| git_err("cannot read the target", e))?;
    let theirs = repo
        .find_commit(topic)
        .map_err(|e| git_err("cannot read the topic", e))?;
    let tree_id = match crate::engine::merge::clean_merge(repo, base, topic, None)
        .map_err(|e| WorkflowError::Git(e.to_string()))?
    {
        crate::engine::merge::CleanMerge::Tree(t) => t,
        crate::engine::merge::CleanMerge::MultipleBases(n) => {
            return Err(WorkflowError::Usage(format!(
                "the topic and the target have {n} merge bases (criss-cross history); merge the target into the topic first, or merge by hand and have the exact result approved with `countersign approve --result HEAD`"
            )))
        }
        _ => {
            return Err(WorkflowError::Usage(
                "the topic does not merge cleanly; merge by hand, have the result approved with `countersign approve --result HEAD`, and add the trailers (see README)".into(),
            ))
        }
    };
    let tree = repo
        .find_tree(tree_id)
        .map_err(|e| git_err("cannot read the merge tree", e))?;
    let sig = git2::Signature::now("countersign trial", "trial@countersign.invalid")
        .map_err(|e| git_err("signature", e))?;
    let (msg, parents) = match shape {
        Shape::Merge => (
            merge_message("countersign trial merge", trailers),
            vec![&ours, &theirs],
        ),
        Shape::Squash => {
            let mut all = vec![squash_trailer(topic)];
            all.extend(trailers.iter().cloned());
            (merge_message("countersign trial squash", &all), vec![&ours])
        }
    };
    let trial = repo
        .commit(None, &sig, &sig, &msg, &tree, &parents)
        .map_err(|e| git_err("cannot write the trial merge", e))?;
    let mut decision = Verifier::new(repo, policy, now).decide(&[RefUpdate {
        old: base,
        new: trial,
        refname: target_ref.to_string(),
    }]);
    let trial_hex = trial.to_string();
    decision.findings.retain(|f| {
        !(f.commit.as_deref() == Some(trial_hex.as_str())
            && f.code == Code::UnsignedCommit
            && f.message.contains("not signed"))
    });
    let record = decision
        .updates
        .first()
        .and_then(|u| u.merges.iter().find(|m| m.commit == trial_hex).cloned());
    Ok((decision, record))
}

/// What `countersign merge` was asked to do.
#[derive(Debug, Clone)]
pub struct LandRequest {
    /// The topic as typed (branch or commit), for messages.
    pub topic: String,
    /// The branch to land on; it must be the current branch.
    pub into: Option<String>,
    /// Extra approval trailers (with or without the `Countersign-Approval:` key).
    pub extra: Vec<String>,
    /// Subject of the new commit.
    pub message: Option<String>,
    /// Merge or squash.
    pub shape: Shape,
}

/// What became of a [`LandRequest`].
#[derive(Debug)]
pub enum Landed {
    /// The commit was made and the hook's engine accepts it.
    Made {
        /// The new commit.
        commit: Oid,
        /// The branch it was made on.
        into: String,
        /// Approvals carried.
        approvals: usize,
        /// Approvals found and left out, with why.
        left_out: Vec<crate::engine::merge::ApprovalRecord>,
    },
    /// Nothing was made: the hook would reject the change.
    Refused {
        /// The trial decision.
        decision: Decision,
        /// Approvals found and left out, with why.
        left_out: Vec<crate::engine::merge::ApprovalRecord>,
    },
    /// The commit was made, then undone: the hook would reject it.
    Undone {
        /// The decision on the real commit.
        decision: Decision,
        /// Approvals found and left out, with why.
        left_out: Vec<crate::engine::merge::ApprovalRecord>,
    },
}

/// A trailer line for `value`, adding the `Countersign-Approval:` key if
/// it is missing.
pub fn trailer_line(value: &str) -> String {
    let t = value.trim();
    match t.split_once(':') {
        Some((k, _)) if k.trim().eq_ignore_ascii_case(approval::TRAILER) => t.to_string(),
        _ => format!("{}: {t}", approval::TRAILER),
    }
}

/// Land a topic on the current branch as the hook would accept it: gather
/// approvals from the notes and `extra`, judge them on a trial commit,
/// keep the eligible ones, make the signed merge (or squash) with git, and
/// undo it if the hook's engine rejects the real commit.
///
/// # Errors
///
/// [`WorkflowError`] when git fails, the branch is wrong, or the topic
/// does not merge cleanly.
pub fn land(
    repo: &Repository,
    policy: &Policy,
    req: &LandRequest,
    now: Timestamp,
) -> Result<Landed, WorkflowError> {
    let current = repo
        .head()
        .ok()
        .and_then(|h| h.shorthand().ok().map(str::to_string));
    let into = match (&req.into, current) {
        (Some(i), Some(c)) if *i != c => {
            return Err(WorkflowError::Usage(format!(
                "the current branch is `{c}`, not `{i}`\n  help: `git switch {i}` first"
            )))
        }
        (_, None) => {
            return Err(WorkflowError::Usage(
                "not on a branch\n  help: `git switch <branch>` first".into(),
            ))
        }
        (_, Some(c)) => c,
    };
    let target = full_ref(&into);
    let base = resolve_commit(repo, "HEAD")?;
    let topic_id = resolve_commit(repo, &req.topic)?;
    let mut trailers = notes_in_range(repo, base, topic_id)?;
    for t in &req.extra {
        let line = trailer_line(t);
        if !trailers.contains(&line) {
            trailers.push(line);
        }
    }
    let plan = plan(
        repo, policy, &target, base, topic_id, req.shape, &trailers, now,
    )?;
    let left_out: Vec<_> = plan
        .judged
        .iter()
        .flat_map(|r| r.approvals.iter())
        .filter(|a| !a.eligible)
        .cloned()
        .collect();
    if !plan.decision.accepted() {
        return Ok(Landed::Refused {
            decision: plan.decision,
            left_out,
        });
    }
    let squash = req.shape == Shape::Squash;
    let topic = &req.topic;
    let subject = req.message.clone().unwrap_or_else(|| {
        if squash {
            format!("Squash {topic} into {into}")
        } else {
            format!("Merge {topic} into {into}")
        }
    });
    let msg = if squash {
        let mut all = vec![squash_trailer(topic_id)];
        all.extend(plan.keep.iter().cloned());
        merge_message(&subject, &all)
    } else {
        merge_message(&subject, &plan.keep)
    };
    let msg_path = repo.path().join("COUNTERSIGN_MERGE_MSG");
    std::fs::write(&msg_path, &msg)
        .map_err(|e| WorkflowError::Git(format!("cannot write the merge message: {e}")))?;
    let path = msg_path.display().to_string();
    let topic_hex = topic_id.to_string();
    let out = if squash {
        let out = git(repo, &["merge", "--squash", &topic_hex])?;
        if out.status.success() {
            git(repo, &["commit", "-S", "-F", &path])?
        } else {
            out
        }
    } else {
        git(repo, &["merge", "--no-ff", "-S", "-F", &path, &topic_hex])?
    };
    let _ = std::fs::remove_file(&msg_path);
    if !out.status.success() {
        let _ = git(repo, &["merge", "--abort"]);
        return Err(WorkflowError::Git(format!(
            "`git merge` failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    let merged = resolve_commit(repo, "HEAD")?;
    // Judge the real commit at the time it exists: its signature was made
    // after `now` (an OpenPGP signature is not valid before it is made).
    let after = now.max(crate::time::now());
    let decision = Verifier::new(repo, policy, after).decide(&[RefUpdate {
        old: base,
        new: merged,
        refname: target,
    }]);
    if !decision.accepted() {
        let _ = git(repo, &["reset", "--keep", &base.to_string()]);
        return Ok(Landed::Undone { decision, left_out });
    }
    Ok(Landed::Made {
        commit: merged,
        into,
        approvals: plan.keep.len(),
        left_out,
    })
}
