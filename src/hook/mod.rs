//! The pre-receive protocol: read `<old> <new> <ref>` lines, find the
//! policy, open the repository from git's environment (which includes the
//! quarantine object directory), and decide.
//!
//! Everything that can go wrong here becomes a finding in the decision, so
//! a missing policy or an unreadable repository rejects the push with a
//! reason instead of slipping through.

mod diags;
pub mod quarantine;

use std::path::{Path, PathBuf};
use std::time::Instant;

use git2::Repository;

use crate::audit;
use crate::engine::{self, Decision, RefUpdate};
use crate::finding::Finding;
use crate::governance::{self, InForce};
use crate::policy::limits::Limits;
use crate::policy::{self, Policy};
use crate::time::Timestamp;
use serde_json::Value;

/// The hook reads at most this many bytes of input (git sends one line of
/// at most ~4.2 KB per ref update); more is refused as `bad-input`.
pub const MAX_INPUT_BYTES: usize = 32 << 20;
/// Longest ref name accepted in the input.
pub const MAX_REF_BYTES: usize = 4096;

/// Git config key naming the policy file.
pub const POLICY_CONFIG_KEY: &str = "countersign.policy";
/// Policy file name inside `$GIT_DIR` when the config key is not set.
pub const DEFAULT_POLICY_FILE: &str = "countersign.toml";

/// Parse pre-receive input of a SHA-1 repository. Every line must be
/// `<old> <new> <ref>` with full hex ids; anything else is refused.
///
/// # Errors
///
/// A `bad-input` finding for any line that is not `<old> <new> <ref>` with 40-hex ids, a repeated ref, or a ref name git would not accept.
pub fn parse_updates(input: &[u8]) -> Result<Vec<RefUpdate>, Finding> {
    parse_updates_in(input, git2::ObjectFormat::Sha1)
}

/// Parse pre-receive input of a repository in `format` (40 or 64 hex).
///
/// # Errors
///
/// A `bad-input` finding as for [`parse_updates`], with ids of the repository's format.
pub fn parse_updates_in(
    input: &[u8],
    format: git2::ObjectFormat,
) -> Result<Vec<RefUpdate>, Finding> {
    if input.len() > MAX_INPUT_BYTES {
        return Err(diags::bad_input(format!(
            "the ref update list is larger than {MAX_INPUT_BYTES} bytes"
        )));
    }
    let text = std::str::from_utf8(input)
        .map_err(|_| diags::bad_input("the ref update list is not valid UTF-8".into()))?;
    let mut updates = Vec::new();
    let mut names = std::collections::HashSet::new();
    for (n, line) in text.lines().enumerate() {
        if line.is_empty() {
            continue;
        }
        let parts: Vec<&str> = line.split(' ').collect();
        let [old, new, refname] = parts[..] else {
            return Err(diags::bad_input(format!(
                "line {} is not `<old> <new> <ref>`",
                n + 1
            )));
        };
        let digits = match format {
            git2::ObjectFormat::Sha1 => 40,
            git2::ObjectFormat::Sha256 => 64,
        };
        let parse = |s: &str| engine::parse_oid(s, format);
        let (Some(old), Some(new)) = (parse(old), parse(new)) else {
            return Err(diags::bad_input(format!(
                "line {} does not hold two {digits}-hex-digit object ids (this repository's object format is {format})",
                n + 1
            )));
        };
        if refname.is_empty()
            || refname.ends_with('/')
            || refname.bytes().any(|b| b < 0x20 || b == 0x7f || b == b' ')
        {
            return Err(diags::bad_input(format!(
                "line {} names `{}`, which is not a ref name git would accept (control characters, spaces or a trailing `/`)",
                n + 1,
                crate::sanitize::escape(&crate::policy::limits::truncate(refname, 200))
            )));
        }
        if refname.len() > MAX_REF_BYTES {
            return Err(diags::bad_input(format!(
                "line {} names a ref longer than {MAX_REF_BYTES} bytes",
                n + 1
            )));
        }
        if !refname.starts_with("refs/") && refname != "HEAD" {
            return Err(diags::bad_input(format!(
                "line {} names `{}`, which is not a full ref",
                n + 1,
                crate::sanitize::escape(refname)
            )));
        }
        if !names.insert(refname) {
            return Err(diags::bad_input(format!(
                "line {} updates `{}` a second time; git sends each ref once",
                n + 1,
                crate::sanitize::escape(&crate::policy::limits::truncate(refname, 200))
            )));
        }
        updates.push(RefUpdate {
            old,
            new,
            refname: refname.to_string(),
        });
    }
    Ok(updates)
}

/// Where a policy path came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicySource {
    /// `--policy FILE` on the command line (relative to the current directory).
    Given,
    /// `countersign.policy` in the repository's git config.
    Configured,
    /// Nothing said: `$GIT_DIR/countersign.toml`.
    Default,
}

/// A policy path and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located {
    /// The file.
    pub path: PathBuf,
    /// Why this file.
    pub source: PolicySource,
}

/// Why no policy path could be found.
#[derive(Debug, thiserror::Error)]
pub enum LocateError {
    /// No `--policy` and no repository to read the config of.
    #[error("no policy given and no repository found")]
    NoRepository,
    /// The repository's config could not be read.
    #[error("cannot read `{POLICY_CONFIG_KEY}` from the repository config: {0}")]
    Config(String),
}

impl LocateError {
    /// What to do about it.
    pub fn help(&self) -> &'static str {
        match self {
            LocateError::NoRepository => {
                "pass `--policy FILE`, or run inside the repository (or set GIT_DIR)"
            }
            LocateError::Config(_) => "fix the repository's git config, or pass `--policy FILE`",
        }
    }
}

/// The one policy locator, used by the hook and by every command: a path
/// given on the command line (taken as typed, relative to the current
/// directory), else `countersign.policy` from the repository's config
/// (relative paths are taken from `$GIT_DIR`, in a clone as on the
/// server), else `$GIT_DIR/countersign.toml`.
///
/// # Errors
///
/// [`LocateError`] when there is neither a given path nor a repository, or
/// the repository's config cannot be read.
pub fn locate_policy(
    given: Option<&Path>,
    repo: Option<&Repository>,
) -> Result<Located, LocateError> {
    if let Some(p) = given {
        return Ok(Located {
            path: p.to_path_buf(),
            source: PolicySource::Given,
        });
    }
    let repo = repo.ok_or(LocateError::NoRepository)?;
    let git_dir = repo.path().to_path_buf();
    let config = repo
        .config()
        .map_err(|e| LocateError::Config(e.message().to_string()))?;
    match config.get_path(POLICY_CONFIG_KEY) {
        Ok(p) => Ok(Located {
            path: if p.is_absolute() { p } else { git_dir.join(p) },
            source: PolicySource::Configured,
        }),
        Err(e) if e.code() == git2::ErrorCode::NotFound => Ok(Located {
            path: git_dir.join(DEFAULT_POLICY_FILE),
            source: PolicySource::Default,
        }),
        Err(e) => Err(LocateError::Config(e.message().to_string())),
    }
}

/// Load the policy, turning every failure into a rejecting finding.
///
/// # Errors
///
/// A `policy-missing` or `policy-invalid` finding that rejects the push.
pub fn load_policy(path: &Path) -> Result<Policy, Finding> {
    policy::load(path).map_err(|e| Finding::from(&e))
}

/// Open the repository from git's environment (`GIT_DIR`, quarantine).
///
/// # Errors
///
/// An `unsupported-object-format` or `internal-error` finding when git's environment names no repository countersign can open.
pub fn open_repo() -> Result<Repository, Finding> {
    crate::repository::open_from_env().map_err(|e| diags::repo_unopenable(&e))
}

/// The repository here, if there is one (for commands that also work
/// without one).
///
/// # Errors
///
/// The finding when there is a repository that cannot be opened, e.g. one
/// git's safe.directory check refuses: hiding it would report "no
/// repository" and send the admin looking in the wrong place.
pub fn find_repo() -> Result<Option<Repository>, Finding> {
    match crate::repository::open_from_env() {
        Ok(r) => Ok(Some(r)),
        Err(e) if e.code() == git2::ErrorCode::NotFound => Ok(None),
        Err(e) => Err(diags::repo_unopenable(&e)),
    }
}

/// What the hook decided, and the limits to render it with.
#[derive(Debug)]
pub struct Outcome {
    /// The decision (already recorded in the audit log).
    pub decision: Decision,
    /// The limits in force (defaults when no policy could be loaded).
    pub limits: Limits,
}

/// Run the pre-receive check: open the repository, parse `input`, load the
/// policy, decide, record. Never panics on input; every failure rejects,
/// and every rejection is recorded (best effort when the repository cannot
/// be opened: see [`reject_unread`]).
/// `started` is when the hook started: the `seconds` budget counts from it.
pub fn pre_receive(input: &[u8], now: Timestamp, started: Instant) -> Outcome {
    let limits = Limits::default();
    let repo = match open_repo() {
        Ok(r) => r,
        Err(f) => return rejected_without_repository(Decision::reject_all(&[], f), now),
    };
    let updates = match parse_updates_in(input, repo.object_format()) {
        Ok(u) => u,
        Err(f) => return rejected_unparsed(&repo, Decision::reject_all(&[], f), now),
    };
    let in_force = match policy_in_force(&repo, now, started) {
        Ok(p) => p,
        Err(f) => {
            let policy = policy_unknown(&repo, &f.message);
            return Outcome {
                decision: record(
                    &repo,
                    Decision::reject_all(&updates, f),
                    now,
                    &limits,
                    &policy,
                ),
                limits,
            };
        }
    };
    let limits = in_force.policy.limits;
    let reject = |f: Finding, policy: &Value| Outcome {
        decision: record(
            &repo,
            Decision::reject_all(&updates, f),
            now,
            &limits,
            policy,
        ),
        limits,
    };
    let _ = FOUND_PUSHERS.set(
        ssh_pusher(&in_force.policy)
            .into_iter()
            .chain(push_cert_pusher(&repo, &in_force.policy, now))
            .collect(),
    );
    // The refs as the ref-state log last recorded them: a protected ref
    // moved around the hook stops every push until it is acknowledged.
    let policy = serde_json::to_value(&in_force.id).unwrap_or(Value::Null);
    match crate::ledger::sync(&repo, &in_force.policy, Some(&policy), now, "pre-receive") {
        Err(f) => return reject(f, &policy),
        Ok(Some(synced)) => {
            if let Some(f) = crate::ledger::unacknowledged_finding(&synced.unacknowledged) {
                return reject(f, &policy);
            }
        }
        Ok(None) => {}
    }
    // A push to the policy ref is scanned with at least the default
    // limits: an approved `[limits]` must not lock out the next change.
    let scan_limits = if in_force.chain.is_some()
        && updates.iter().any(|u| u.refname == governance::POLICY_REF)
    {
        limits.at_least_defaults()
    } else {
        limits
    };
    let decision = match check_old_values(&repo, &updates)
        .and_then(|()| scan_quarantine(&repo, &scan_limits, started))
    {
        Err(f) => Decision::reject_all(&updates, f),
        Ok(()) => governance::decide(&repo, &in_force, &updates, now, started),
    };
    let decision = record(&repo, decision, now, &limits, &policy);
    if decision.accepted() {
        if let Some((root, _)) = in_force.chain {
            for u in &updates {
                if u.refname == governance::POLICY_REF && !u.new.is_zero() {
                    let steps = governance::brought(&repo, u.old, u.new);
                    governance::remember(&repo, root, &steps);
                }
            }
        }
    }
    Outcome { decision, limits }
}

/// The post-receive step: after git moved the refs, bring the ref-state
/// log up to date (see [`crate::ledger::sync`]). It cannot refuse
/// anything (the refs have moved); a failure is reported to the pusher
/// and the next hook run fills the entries in.
///
/// # Errors
///
/// The finding that says why the log could not be brought up to date.
pub fn post_receive(now: Timestamp) -> Result<Option<crate::ledger::Synced>, Finding> {
    let started = Instant::now();
    let repo = open_repo()?;
    let in_force = policy_in_force(&repo, now, started)?;
    let policy_value = serde_json::to_value(&in_force.id).ok();
    crate::ledger::sync(
        &repo,
        &in_force.policy,
        policy_value.as_ref(),
        now,
        "post-receive",
    )
}

/// The hook's input could not be read (or was refused before parsing):
/// reject the push with `finding`, and record the rejection.
pub fn reject_unread(finding: Finding, now: Timestamp) -> Outcome {
    let decision = Decision::reject_all(&[], finding);
    match open_repo() {
        Ok(repo) => rejected_unparsed(&repo, decision, now),
        Err(f) => {
            let mut decision = decision;
            decision.findings.push(f);
            rejected_without_repository(decision, now)
        }
    }
}

/// Reject a push whose input was not parsed, recording it with what is
/// known of the policy (it was not loaded).
fn rejected_unparsed(repo: &Repository, decision: Decision, now: Timestamp) -> Outcome {
    let limits = Limits::default();
    let policy = policy_unknown(
        repo,
        "not loaded: the push was rejected before its policy was read",
    );
    Outcome {
        decision: record(repo, decision, now, &limits, &policy),
        limits,
    }
}

/// Reject a push when the repository cannot be opened, and try to record
/// it in `$GIT_DIR/countersign/audit.log` (or the `countersign.auditLog`
/// of `$GIT_DIR/config`, read on its own).
///
/// Best effort, and only best effort: without the repository, the log's
/// path comes from git's environment (`GIT_DIR`, which git sets for every
/// hook) and a config file read without the repository's other config
/// levels, so a log configured elsewhere (global or system config) is
/// missed, and a `GIT_DIR` that is not a repository's directory (with a
/// `HEAD` file) leaves nowhere to write. The push is rejected whatever happens here; a record that
/// cannot be written adds its finding to the rejection.
fn rejected_without_repository(mut decision: Decision, now: Timestamp) -> Outcome {
    let limits = Limits::default();
    // Only a directory that looks like a repository (it has `HEAD`): a
    // stray `GIT_DIR` must not get a log created in it.
    let git_dir = std::env::var_os("GIT_DIR")
        .map(PathBuf::from)
        .filter(|d| d.is_dir() && d.join("HEAD").is_file());
    if let Some(git_dir) = git_dir {
        let git_dir = std::fs::canonicalize(&git_dir).unwrap_or(git_dir);
        let config = git2::Config::open(&git_dir.join("config")).ok();
        let path = audit::path_in(&git_dir, config.as_ref());
        let sharing = config
            .as_ref()
            .map_or(audit::Sharing::Umask, audit::Sharing::from_config);
        let policy = serde_json::json!({
            "file": Value::Null,
            "error": "not loaded: the repository could not be opened",
        });
        let fields = fields_for(
            &git_dir.display().to_string(),
            &decision,
            limits.audit_record_bytes,
            &policy,
        );
        if let Err(e) = audit::append_shared(&path, "push", fields, now, sharing) {
            decision.findings.push(Finding::from(&e));
        }
    }
    Outcome { decision, limits }
}

/// The audit record's `policy` when no policy was loaded: what is known of
/// where it would come from (`file` in file mode, `root` where a trust root
/// is pinned) and why it is unknown (`error`). It has neither `sha256` nor
/// `commit`, so it is never read as the identity of a policy in force.
fn policy_unknown(repo: &Repository, why: &str) -> Value {
    let error = crate::policy::limits::truncate(why, 1000);
    match governance::pinned_root(repo) {
        Ok(Some(root)) => serde_json::json!({ "root": root.to_string(), "error": error }),
        Ok(None) => {
            let file = locate_policy(None, Some(repo))
                .ok()
                .map(|l| l.path.display().to_string());
            serde_json::json!({ "file": file, "error": error })
        }
        Err(_) => serde_json::json!({ "file": Value::Null, "error": error }),
    }
}

/// The policy a push is judged by: in ref mode (a trust root pinned in
/// git config) the policy ref's verified tip, else the policy file.
///
/// # Errors
///
/// The finding that rejects the push when no valid policy can be found.
pub fn policy_in_force(
    repo: &Repository,
    now: Timestamp,
    started: Instant,
) -> Result<InForce, Finding> {
    if let Some(root) = governance::pinned_root(repo)? {
        return governance::in_force_for_hook(repo, root, now, started);
    }
    let path = locate_policy(None, Some(repo))
        .map_err(|e| Finding::from(&e))?
        .path;
    let (policy, bytes) = policy::load_with_bytes(&path).map_err(|e| Finding::from(&e))?;
    Ok(InForce::file(policy, &bytes))
}

/// The policy for a command run by a person (verify, report, approve,
/// merge, status): `--policy FILE` when given; else, where a trust root is
/// pinned (`git config countersign.policyRoot`, on the server or a clone
/// that fetched `refs/meta/countersign`), the policy ref's verified tip;
/// else the located policy file.
///
/// # Errors
///
/// The finding that explains why no valid policy was found.
pub fn command_policy(repo: &Repository, given: Option<&Path>) -> Result<Policy, Finding> {
    command_policy_from(repo, given, None)
}

/// [`command_policy`], with `trust_root` (`--trust-root`) used instead of a
/// pinned root: the policy ref's chain is verified from it.
///
/// # Errors
///
/// As for [`command_policy`].
pub fn command_policy_from(
    repo: &Repository,
    given: Option<&Path>,
    trust_root: Option<git2::Oid>,
) -> Result<Policy, Finding> {
    if let Some(root) = trust_root {
        return governance::in_force(repo, root, crate::time::now(), Instant::now())
            .map(|f| f.policy);
    }
    if given.is_none() {
        if let Some(root) = governance::pinned_root(repo)? {
            return governance::in_force(repo, root, crate::time::now(), Instant::now())
                .map(|f| f.policy);
        }
    }
    let path = locate_policy(given, Some(repo))
        .map_err(|e| Finding::from(&e))?
        .path;
    load_policy(&path)
}

/// Every update's `old` must be the ref's current value (zero: the ref
/// does not exist). git sends what the client claims and checks it only
/// when it updates the ref, after this hook; a made-up `old` would make
/// the checks walk (and hide) history the ref never had.
fn check_old_values(repo: &Repository, updates: &[RefUpdate]) -> Result<(), Finding> {
    for u in updates {
        let current = match repo.refname_to_id(&u.refname) {
            Ok(id) => Some(id),
            Err(e) if e.code() == git2::ErrorCode::NotFound => None,
            Err(e) if e.code() == git2::ErrorCode::InvalidSpec => None,
            Err(e) => {
                return Err(engine::internal(&format!(
                    "cannot read `{}`: {}",
                    crate::sanitize::escape(&u.refname),
                    e.message()
                )))
            }
        };
        let claimed = (!u.old.is_zero()).then_some(u.old);
        if current != claimed {
            return Err(diags::bad_input(format!(
                "the update of `{}` claims it is at {}, but it is at {}; git would refuse it",
                crate::sanitize::escape(&crate::policy::limits::truncate(&u.refname, 200)),
                claimed.map_or("nothing (a new ref)".into(), engine::short),
                current.map_or("nothing (it does not exist)".into(), engine::short),
            )));
        }
    }
    Ok(())
}

/// Before any history walk: every commit and tag the push brings (git's
/// quarantine directory) must fit `limits.object-bytes`; see
/// [`quarantine`].
fn scan_quarantine(repo: &Repository, limits: &Limits, started: Instant) -> Result<(), Finding> {
    let Some(dir) = std::env::var_os("GIT_QUARANTINE_PATH") else {
        return Ok(());
    };
    let budget = std::time::Duration::from_secs(limits.seconds);
    let sizes = quarantine::Sizes {
        object: limits.object_bytes as u64,
        total: limits.commit_bytes as u64,
    };
    quarantine::scan(Path::new(&dir), repo, sizes, started, budget)
        .map_err(|e| diags::quarantine(&e, limits))
}

/// Append the decision to the repository's audit log. If it cannot be
/// written the push is rejected: a decision that leaves no record would
/// defeat the log's purpose (an unwritable log blocks pushes until an
/// admin fixes it; that is the trade-off, chosen on purpose).
fn record(
    repo: &Repository,
    mut decision: Decision,
    now: Timestamp,
    limits: &Limits,
    policy: &Value,
) -> Decision {
    let path = audit::path_for(repo);
    let fields = record_fields(repo, &decision, limits.audit_record_bytes, policy);
    if let Err(e) = audit::append_shared(&path, "push", fields, now, audit::Sharing::of(repo)) {
        decision.findings.push(Finding::from(&e));
    }
    decision
}

/// The person sshd's authenticated key maps to, found once the policy is
/// loaded (see [`audit::pusher`] for the precedence).
static FOUND_PUSHERS: std::sync::OnceLock<Vec<Value>> = std::sync::OnceLock::new();

/// The largest push certificate read.
pub const MAX_PUSH_CERT_BYTES: usize = 64 << 10;

/// The push certificate of a signed push (`git push --signed`; git passes
/// its blob as `GIT_PUSH_CERT`), verified with the policy's keys (SSH
/// namespace `git`, or OpenPGP): the candidate `{name: person, source:
/// "push certificate", cert: <blob id>}`, counted only when git also
/// verified its nonce (`receive.certNonceSeed`; over HTTP also
/// `receive.certNonceSlop`). Otherwise a candidate that says why it does
/// not count. The blob id is kept in the audit record, and the ref-state
/// log keeps the blob itself reachable.
pub fn push_cert_pusher(repo: &Repository, policy: &Policy, now: Timestamp) -> Option<Value> {
    let id = std::env::var("GIT_PUSH_CERT")
        .ok()
        .filter(|v| !v.is_empty())?;
    let not_counted = |why: String| {
        Some(serde_json::json!({
            "name": "push certificate",
            "source": format!("push certificate (not verified: {why})"),
            "cert": id,
        }))
    };
    let Some(oid) = engine::parse_oid(&id, repo.object_format()) else {
        return not_counted("GIT_PUSH_CERT is not an object id".into());
    };
    let Ok(odb) = repo.odb() else {
        return not_counted("the object database cannot be read".into());
    };
    match odb.read_header(oid) {
        Ok((size, git2::ObjectType::Blob)) if size <= MAX_PUSH_CERT_BYTES => {}
        Ok(_) => {
            return not_counted(format!(
                "the certificate is not a blob of at most {MAX_PUSH_CERT_BYTES} bytes"
            ))
        }
        Err(e) => return not_counted(format!("the certificate cannot be read: {}", e.message())),
    }
    let Ok(blob) = odb.read(oid) else {
        return not_counted("the certificate cannot be read".into());
    };
    let bytes = blob.data();
    // The signature is the armor at the start of the last line that opens one.
    let start = bytes
        .windows(11)
        .enumerate()
        .filter(|(i, w)| *w == b"-----BEGIN " && (*i == 0 || bytes[i - 1] == b'\n'))
        .map(|(i, _)| i)
        .next_back();
    let Some(start) = start else {
        return not_counted("the certificate carries no signature".into());
    };
    let (payload, sig) = bytes.split_at(start);
    let verified =
        match crate::signing::signature::verify(&policy.keyring, sig, payload, "git", now) {
            Ok(v) => v,
            Err(e) => return not_counted(e.to_string()),
        };
    let Some(key) = policy.keyring.get(verified.key) else {
        return not_counted("internal: key index out of range".into());
    };
    let nonce = std::env::var("GIT_PUSH_CERT_NONCE_STATUS").unwrap_or_default();
    if nonce != "OK" {
        return Some(serde_json::json!({
            "name": key.person,
            "source": format!("push certificate (not verified: git reports the nonce as `{}`; set receive.certNonceSeed, and receive.certNonceSlop over HTTP)", crate::sanitize::escape(&nonce)),
            "cert": id,
        }));
    }
    Some(serde_json::json!({
        "name": key.person,
        "source": "push certificate",
        "cert": id,
        "key": key.describe(),
    }))
}

/// The most bytes of sshd's `SSH_USER_AUTH` file read.
const MAX_SSH_AUTH_BYTES: u64 = 64 << 10;

/// The key sshd authenticated this session with (`ExposeAuthInfo yes`
/// makes sshd write `publickey <type> <base64>` lines to the file named by
/// `SSH_USER_AUTH`), mapped to the person holding it in `policy`: the
/// candidate `{name, source: "SSH_USER_AUTH", key}`, or, for a key nobody
/// in the policy holds, a candidate that is never chosen.
pub fn ssh_pusher(policy: &Policy) -> Option<Value> {
    use std::io::Read as _;
    let path = std::env::var_os("SSH_USER_AUTH")?;
    let mut text = String::new();
    std::fs::File::open(path)
        .ok()?
        .take(MAX_SSH_AUTH_BYTES)
        .read_to_string(&mut text)
        .ok()?;
    let keys: Vec<ssh_key::PublicKey> = text
        .lines()
        .filter_map(|l| l.strip_prefix("publickey "))
        .filter_map(|k| ssh_key::PublicKey::from_openssh(k.trim()).ok())
        .collect();
    // The last key is the one the session was finally authenticated with.
    let key = keys.last()?;
    let fingerprint = crate::policy::keys::ssh_fingerprint(key.key_data());
    Some(match policy.keyring.find_ssh(key.key_data()) {
        Some((_, k)) => serde_json::json!({
            "name": k.person,
            "source": "SSH_USER_AUTH",
            "key": fingerprint,
        }),
        None => serde_json::json!({
            "name": format!("ssh key {fingerprint}"),
            "source": "SSH_USER_AUTH (not verified: no person in the policy holds this key)",
        }),
    })
}

/// The audit record of a decision, cut to fit `max` bytes: lists (findings,
/// and each update's signers and merges) are shortened, each with its
/// total, until the record fits; as a last resort only the verdict and
/// counts remain. A push can never make the log grow without bound.
/// `policy` is the [`governance::PolicyId`] in force, or what is known of it when none
/// was loaded.
pub fn record_fields(repo: &Repository, decision: &Decision, max: usize, policy: &Value) -> Value {
    fields_for(&repo.path().display().to_string(), decision, max, policy)
}

fn fields_for(repository: &str, decision: &Decision, max: usize, policy: &Value) -> Value {
    let verdict = if decision.accepted() {
        "accepted"
    } else {
        "rejected"
    };
    let pusher = audit::pusher_with(FOUND_PUSHERS.get().cloned().unwrap_or_default());
    let findings_total = decision.findings.len() + decision.omitted;
    // No record within `max` bytes can hold more signers or merges than
    // this (each takes well over 64 bytes of JSON): serializing the rest
    // of a large push's signers only to cut them was a third of the
    // hook's time. The counts are the full ones.
    // (At least the 64 the second try keeps, so every try sees what it
    // saw before.)
    let cap = (max / 64 + 1).max(64);
    let totals: Vec<[usize; 2]> = decision
        .updates
        .iter()
        .map(|u| [u.signers.len(), u.merges.len()])
        .collect();
    // When the signers and merges alone cannot fit, the first try (all of
    // them up to `cap`) is not built: it could not fit, and building and
    // cutting it was a third of the hook's time after a 10,000-commit
    // push. The second try keeps 64.
    let listed: usize = totals.iter().map(|t| t[0].min(cap) + t[1].min(cap)).sum();
    let mut keep = usize::MAX;
    if listed.saturating_mul(64) > max {
        keep = 64;
    }
    let cap = cap.min(keep);
    let trimmed: Vec<crate::engine::UpdateOutcome> = decision
        .updates
        .iter()
        .map(|u| crate::engine::UpdateOutcome {
            refname: u.refname.clone(),
            old: u.old.clone(),
            new: u.new.clone(),
            rules: u.rules.clone(),
            commits_checked: u.commits_checked,
            signers: u.signers.iter().take(cap).cloned().collect(),
            merges: u.merges.iter().take(cap).cloned().collect(),
        })
        .collect();
    let updates = serde_json::to_value(&trimmed).unwrap_or(Value::Null);
    loop {
        let mut upd = updates.clone();
        if let Value::Array(list) = &mut upd {
            for (i, u) in list.iter_mut().enumerate() {
                if let Value::Object(map) = u {
                    for (k, key) in ["signers", "merges"].into_iter().enumerate() {
                        let total = totals.get(i).map_or(0, |t| t[k]);
                        if total > keep {
                            if let Some(Value::Array(a)) = map.get_mut(key) {
                                a.truncate(keep);
                            }
                            map.insert(format!("{key}_total"), Value::from(total));
                        }
                    }
                }
            }
        }
        let findings: Vec<&Finding> = decision.findings.iter().take(keep).collect();
        let fields = serde_json::json!({
            "pusher": pusher,
            "repository": repository,
            "policy": policy,
            "verdict": verdict,
            "updates": upd,
            "findings": findings,
            "findings_total": findings_total,
            "stopped": decision.stopped,
        });
        // Room for seq, prev, time and kind, which the log adds.
        let size = serde_json::to_vec(&fields).map_or(usize::MAX, |b| b.len()) + 256;
        if size <= max {
            return fields;
        }
        if keep == 0 && decision.accepted() {
            // An accepted push keeps every ref update (name, old, new),
            // whatever its size: the ref-state log explains the refs'
            // moves by these records, and a move it cannot explain stops
            // every push (`ref-moved-out-of-band`). Bounded by
            // `limits.updates` and git's ref name length.
            let compact: Vec<Value> = decision
                .updates
                .iter()
                .map(|u| serde_json::json!({"ref": u.refname, "old": u.old, "new": u.new}))
                .collect();
            return serde_json::json!({
                "pusher": pusher,
                "repository": repository,
                "policy": policy,
                "verdict": verdict,
                "updates": compact,
                "updates_total": decision.updates.len(),
                "findings_total": findings_total,
                "cut": format!("the full record exceeded {max} bytes (limit `audit-record-bytes`); the ref updates are kept without their signers and merges"),
            });
        }
        if keep == 0 {
            return serde_json::json!({
                "pusher": pusher,
                "repository": repository,
                "policy": policy,
                "verdict": verdict,
                "updates_total": decision.updates.len(),
                "findings_total": findings_total,
                "codes": decision.findings.iter().map(|f| f.code.as_str()).collect::<std::collections::BTreeSet<_>>(),
                "cut": format!("the full record exceeded {max} bytes (limit `audit-record-bytes`)"),
            });
        }
        keep = if keep == usize::MAX { 64 } else { keep / 4 };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::finding::Code;

    const A: &str = "1111111111111111111111111111111111111111";
    const Z: &str = "0000000000000000000000000000000000000000";

    /// Relative `countersign.policy` means the same file to every command:
    /// relative to `$GIT_DIR`, never to the current directory.
    #[test]
    fn one_locator_for_relative_paths() {
        let dir = std::env::temp_dir().join(format!("cs-locate-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let repo = Repository::init(&dir).unwrap();
        let git_dir = repo.path().to_path_buf();
        let l = locate_policy(None, Some(&repo)).unwrap();
        assert_eq!(
            (l.path, l.source),
            (git_dir.join(DEFAULT_POLICY_FILE), PolicySource::Default)
        );
        repo.config()
            .unwrap()
            .set_str(POLICY_CONFIG_KEY, "sub/cs.toml")
            .unwrap();
        let l = locate_policy(None, Some(&repo)).unwrap();
        assert_eq!(
            (l.path, l.source),
            (git_dir.join("sub/cs.toml"), PolicySource::Configured)
        );
        repo.config()
            .unwrap()
            .set_str(POLICY_CONFIG_KEY, "/abs/cs.toml")
            .unwrap();
        assert_eq!(
            locate_policy(None, Some(&repo)).unwrap().path,
            PathBuf::from("/abs/cs.toml")
        );
        let given = locate_policy(Some(Path::new("rel.toml")), Some(&repo)).unwrap();
        assert_eq!(
            (given.path, given.source),
            (PathBuf::from("rel.toml"), PolicySource::Given)
        );
        assert!(matches!(
            locate_policy(None, None),
            Err(LocateError::NoRepository)
        ));
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A push with more signers than a record can hold keeps the first
    /// ones and says how many there were in all (not how many were looked
    /// at), at every size of the bound.
    #[test]
    fn a_large_push_record_counts_every_signer() {
        use std::sync::Arc;
        let signer = |i: usize| crate::engine::Signer {
            object: crate::engine::ObjectId(git2::Oid::from_str(&format!("{i:040x}")).unwrap()),
            who: Arc::new(crate::engine::Who {
                person: "dev".into(),
                key: "ssh key SHA256:abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG".into(),
                roles: vec!["developer".to_string()],
            }),
        };
        let decision = Decision {
            updates: vec![crate::engine::UpdateOutcome {
                refname: "refs/heads/main".into(),
                old: Z.into(),
                new: A.into(),
                rules: vec!["main".into()],
                commits_checked: 5000,
                signers: (0..5000).map(signer).collect(),
                merges: Vec::new(),
            }],
            findings: Vec::new(),
            omitted: 0,
            stopped: None,
        };
        for max in [2_000, 8_000, 64_000, 10_000_000] {
            let v = fields_for("r", &decision, max, &Value::Null);
            let u = &v["updates"][0];
            let kept = u["signers"].as_array().map_or(0, Vec::len);
            if max == 10_000_000 {
                assert_eq!(kept, 5000, "everything fits");
                assert!(u.get("signers_total").is_none());
            } else {
                assert!(kept <= 64, "{max}: {kept}");
                assert_eq!(u["signers_total"], 5000, "{max}: {u}");
            }
        }
    }

    #[test]
    fn parses_updates() {
        let input = format!("{Z} {A} refs/heads/main\n{A} {Z} refs/tags/v1\n");
        let u = parse_updates(input.as_bytes()).unwrap();
        assert_eq!(u.len(), 2);
        assert!(u[0].old.is_zero());
        assert!(u[1].new.is_zero());
        assert_eq!(u[1].refname, "refs/tags/v1");
    }

    #[test]
    fn mutations_never_panic() {
        let input = format!("{Z} {A} refs/heads/main\n{A} {Z} refs/tags/v1\n");
        for v in crate::mutate::mutants(input.as_bytes(), 3000) {
            let _ = parse_updates(&v);
        }
    }

    #[test]
    fn refuses_odd_input() {
        for bad in [
            format!("{Z} {A}\n"),
            format!("{Z} {A} refs/heads/main extra\n"),
            format!("{Z} xyz refs/heads/main\n"),
            format!("{Z} {A} main\n"),
            format!("{Z}  {A} refs/heads/main\n"),
        ] {
            let f = parse_updates(bad.as_bytes()).unwrap_err();
            assert_eq!(f.code, Code::BadInput, "{bad}");
        }
        assert_eq!(parse_updates(b"\xff\xfe").unwrap_err().code, Code::BadInput);
        let sha256 = format!("{Z}{} {A}{} refs/heads/main\n", &Z[..24], &A[..24]);
        assert_eq!(
            parse_updates(sha256.as_bytes()).unwrap_err().code,
            Code::BadInput
        );
        let u = parse_updates_in(sha256.as_bytes(), git2::ObjectFormat::Sha256).unwrap();
        assert_eq!(u[0].new.to_string().len(), 64);
        assert_eq!(
            parse_updates_in(
                format!("{Z} {A} refs/heads/main\n").as_bytes(),
                git2::ObjectFormat::Sha256
            )
            .unwrap_err()
            .code,
            Code::BadInput
        );
        for odd in [
            "refs/\r",
            "refs/heads/a\u{1b}b",
            "refs/heads/",
            "refs/heads/a b",
        ] {
            let line = format!("{Z} {A} {odd}");
            assert_eq!(
                parse_updates(line.as_bytes()).unwrap_err().code,
                Code::BadInput,
                "{odd:?}"
            );
        }
        let long = format!("{Z} {A} refs/heads/{}\n", "x".repeat(MAX_REF_BYTES));
        assert_eq!(
            parse_updates(long.as_bytes()).unwrap_err().code,
            Code::BadInput
        );
    }
}
