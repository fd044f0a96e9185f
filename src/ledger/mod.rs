//! The ref-state log: a signed record, in the repository itself, of what
//! the protected refs really became.
//!
//! The JSON audit log (see [`crate::audit`]) records decisions; this log
//! records ref states, so that a ref moved around the hook (a direct
//! `git update-ref` on the server, a restored backup, a forge's admin UI)
//! is seen, and so that every clone that fetches it can check that the
//! server did not quietly rewrite its own history.
//!
//! # Shape
//!
//! `refs/countersign/log` is a linear chain of commits, one per entry.
//! Each commit's tree holds `entry.json` (what happened: an accepted push
//! and its ref updates, an out-of-band move, an acknowledgement) and
//! `state.json` (the value of every tracked ref after it, the
//! acknowledgements still owed, and how far the JSON audit log has been
//! accounted for). Every commit is SSH-signed (namespace `git`, as
//! `git commit -S` does) by the server's own ed25519 key,
//! `$GIT_DIR/countersign/server-key`, created by `countersign log init`
//! and readable only by the user the hook runs as. Its public half is
//! published in the policy (`[log] server-key`), so a clone that trusts the
//! policy knows which key the log must carry. Every entry also names a
//! record of the JSON audit log by sequence number and hash: a signed
//! checkpoint, so a cut or edited JSON log is seen by anyone holding both.
//!
//! # Tracked refs
//!
//! The refs some rule of the policy in force protects (names matched
//! ignoring case, so more is tracked rather than less), and the policy ref.
//! Refs a forge creates by itself (`refs/pull/*`, `refs/keep-around/*`)
//! are not tracked unless a rule protects them.
//!
//! # Sync
//!
//! [`sync`] runs under `$GIT_DIR/countersign/log.lock` from the
//! post-receive hook (after git updated the refs) and from the pre-receive
//! hook (before a push is decided). It reads the tracked refs, *then* the
//! tail of the JSON audit log (the hook writes a decision's record before
//! git moves any ref, so every move made by an accepted push is explained
//! by a record that is already there), and for every tracked ref whose
//! value differs from the log's last state it looks for the chain of
//! accepted, not yet logged updates that leads from the recorded value to
//! the current one. Explained changes become one `push` entry per
//! accepted push (so a post-receive that was killed is filled in by the
//! next run, without an alarm); anything else becomes an
//! `observed-out-of-band` entry, and every push is refused
//! (`ref-moved-out-of-band`) until an admin acknowledges it with
//! `countersign log ack`. A ref that becomes tracked because the policy
//! changed is adopted at its current value (a `tracking` entry).
//!
//! # What it cannot see
//!
//! Whoever can read the server key (root on the server) can write entries
//! that look like the hook's. The log makes rewriting *visible to clones*
//! that saw it before (see [`witness`]), and makes a move around the hook
//! visible to the hook; it does not make the server's root honest.

pub mod witness;

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use git2::{ObjectType, Oid, Repository};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use ssh_key::{HashAlg, LineEnding, PrivateKey, PublicKey, SshSig};

use crate::audit;
use crate::finding::{Code, Finding};
use crate::governance;
use crate::policy::Policy;
use crate::time::{self, Timestamp};

/// The ref holding the log.
pub const LOG_REF: &str = "refs/countersign/log";
/// The server's private key, under `$GIT_DIR/countersign/`.
pub const KEY_FILE: &str = "server-key";
/// The last entry this server wrote, under `$GIT_DIR/countersign/`: a ref
/// moved back or rewritten on the server is seen against it.
pub const HEAD_FILE: &str = "log-head";
/// Serializes writers, under `$GIT_DIR/countersign/`.
pub const LOCK_FILE: &str = "log.lock";
/// The SSH namespace entry commits are signed in (git's own).
pub const SIG_NAMESPACE: &str = "git";
/// The SSH namespace of an acknowledgement statement.
pub const ACK_NAMESPACE: &str = "countersign-ack";
/// The largest entry commit read.
pub const MAX_COMMIT_BYTES: usize = 64 << 10;
/// The largest `entry.json` or `state.json` read or written.
pub const MAX_BLOB_BYTES: usize = 16 << 20;
/// The most refs tracked; beyond it every push is refused (`ref-log-broken`).
pub const MAX_TRACKED_REFS: usize = 100_000;
/// The most bytes of the JSON audit log's tail read per sync.
pub const AUDIT_TAIL_BYTES: u64 = 16 << 20;
/// An accepted push whose refs have not moved after this many seconds is
/// taken as never applied (refused later by git or another hook).
pub const STALE_SECS: i64 = 300;
/// Version of the entry format.
pub const VERSION: u32 = 1;

/// What one entry records.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// The first entry: the tracked refs when the log was started.
    Start,
    /// An accepted push and the tracked refs it moved.
    Push,
    /// Tracked refs that moved without an accepted push.
    ObservedOutOfBand,
    /// An admin's acknowledgement of an out-of-band move.
    Acknowledged,
    /// Refs that became (or stopped being) tracked because the policy changed.
    Tracking,
}

impl Kind {
    /// The kebab-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Start => "start",
            Kind::Push => "push",
            Kind::ObservedOutOfBand => "observed-out-of-band",
            Kind::Acknowledged => "acknowledged",
            Kind::Tracking => "tracking",
        }
    }
}

/// One ref change.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Change {
    /// Ref name.
    #[serde(rename = "ref")]
    pub refname: String,
    /// Value before (zeros: absent).
    pub old: String,
    /// Value after (zeros: absent).
    pub new: String,
    /// Whether the ref is tracked (its move was seen, not only claimed).
    #[serde(default)]
    pub tracked: bool,
}

/// A record of the JSON audit log, by sequence number and line hash.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct AuditMark {
    /// `seq` of the record.
    pub seq: u64,
    /// SHA-256 of its line (without the newline), hex.
    pub hash: String,
}

/// `entry.json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    /// Format version.
    pub version: u32,
    /// 1, 2, ...
    pub seq: u64,
    /// What it records.
    pub kind: Kind,
    /// Unix seconds when it was written.
    pub time: i64,
    /// The same, readable.
    pub time_utc: String,
    /// Which step wrote it (post-receive, pre-receive, log init, log ack).
    pub recorded_by: String,
    /// Ref changes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub updates: Vec<Change>,
    /// Who pushed (as the audit record says).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pusher: Option<Value>,
    /// The policy in force.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<Value>,
    /// The JSON audit record it stands for (a push), or the last one known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audit: Option<AuditMark>,
    /// For an acknowledgement: the entry acknowledged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acknowledges: Option<u64>,
    /// For an acknowledgement: why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// For an acknowledgement: who signed it (person, key).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub signed_by: Vec<Value>,
    /// For a signed push: the push certificate's blob, kept in the entry's
    /// tree as `push-cert` so it stays reachable (gc would prune it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub push_cert: Option<String>,
}

/// An out-of-band move not yet acknowledged.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Observation {
    /// The `observed-out-of-band` entry.
    pub entry: u64,
    /// Ref name.
    #[serde(rename = "ref")]
    pub refname: String,
    /// Value the log had recorded (zeros: absent).
    pub recorded: String,
    /// Value found (zeros: absent).
    pub observed: String,
}

/// `state.json`: everything after an entry.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct State {
    /// Every tracked ref that exists, and its value.
    pub refs: BTreeMap<String, String>,
    /// The policy the tracked set was computed with.
    #[serde(default)]
    pub policy: Option<Value>,
    /// The first entry of this log (absent in the first entry itself).
    #[serde(default)]
    pub root: Option<String>,
    /// Every accepted push recorded in the JSON audit log up to this
    /// sequence number is accounted for.
    pub audit_upto: u64,
    /// Accounted-for records above `audit_upto`.
    #[serde(default)]
    pub audit_done: BTreeSet<u64>,
    /// Out-of-band moves not yet acknowledged: while any is here, every
    /// push is refused.
    #[serde(default)]
    pub unacknowledged: Vec<Observation>,
}

/// One entry as read from the repository (signature verified).
#[derive(Debug, Clone)]
pub struct Loaded {
    /// Commit id.
    pub id: Oid,
    /// Previous entry, if any.
    pub parent: Option<Oid>,
    /// The entry.
    pub entry: Entry,
    /// The state after it.
    pub state: State,
}

/// `$GIT_DIR/countersign`.
pub fn dir(git_dir: &Path) -> PathBuf {
    git_dir.join("countersign")
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The all-zero id in the repository's format (an absent ref).
pub fn zero(repo: &Repository) -> String {
    match repo.object_format() {
        git2::ObjectFormat::Sha256 => "0".repeat(64),
        _ => "0".repeat(40),
    }
}

fn broken(message: impl Into<String>, help: impl Into<String>) -> Finding {
    Finding::new(Code::RefLogBroken, message, help)
}

/// Whether the log is in use: a server key or the log ref exists.
pub fn enabled(repo: &Repository) -> bool {
    dir(repo.path()).join(KEY_FILE).exists() || repo.refname_to_id(LOG_REF).is_ok()
}

/// `core.sharedRepository` of the repository at `git_dir` (its own config file).
fn sharing(git_dir: &Path) -> audit::Sharing {
    git2::Config::open(&git_dir.join("config"))
        .map_or(audit::Sharing::Umask, |c| audit::Sharing::from_config(&c))
}

/// The server's private key, if one was made; refused when others can
/// read it (anyone who can read it can write entries), and when the group
/// can unless the repository is shared with its group
/// (`core.sharedRepository`: every pusher runs the hook as themselves).
///
/// # Errors
///
/// A message when the file exists but cannot be read, is readable by
/// others, or is not an unencrypted OpenSSH ed25519 key.
pub fn load_key(git_dir: &Path) -> Result<Option<PrivateKey>, String> {
    let path = dir(git_dir).join(KEY_FILE);
    let meta = match fs::metadata(&path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot read the server key: {e}")),
    };
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let allowed = if sharing(git_dir) == audit::Sharing::Umask {
            0o077
        } else {
            0o037
        };
        if meta.permissions().mode() & allowed != 0 {
            return Err(format!(
                "the server key can be read by others than its owner (mode {:o}); run `chmod 600` on it",
                meta.permissions().mode() & 0o777
            ));
        }
    }
    if meta.len() > 16 << 10 {
        return Err("the server key file is larger than a key".into());
    }
    let text = fs::read_to_string(&path).map_err(|e| format!("cannot read the server key: {e}"))?;
    let key = PrivateKey::from_openssh(text.trim())
        .map_err(|e| format!("the server key is not an OpenSSH private key: {e}"))?;
    if key.is_encrypted() || !matches!(key.key_data(), ssh_key::private::KeypairData::Ed25519(_)) {
        return Err("the server key must be an unencrypted ed25519 key".into());
    }
    Ok(Some(key))
}

/// What [`init`] did.
#[derive(Debug)]
pub struct Init {
    /// The public key line, to publish in the policy as `[log] server-key`.
    pub public_key: String,
    /// A key was made now (else it existed).
    pub key_created: bool,
    /// The first entry was written now (else the log existed).
    pub started: Option<Oid>,
    /// Where the key is.
    pub key_path: PathBuf,
}

/// Make the server key (if none) and start the log (if none) with the
/// tracked refs as they are. Run on the server, as the user the hook runs as.
///
/// # Errors
///
/// A message when the key cannot be made or read, or the log cannot be written.
pub fn init(
    repo: &Repository,
    policy: &Policy,
    policy_id: Option<&Value>,
    now: Timestamp,
) -> Result<Init, String> {
    let git_dir = repo.path().to_path_buf();
    let d = dir(&git_dir);
    audit::create_dirs(&d, sharing(&git_dir))
        .map_err(|e| format!("cannot create {}: {e}", d.display()))?;
    let key_path = d.join(KEY_FILE);
    let (key, key_created) = match load_key(&git_dir)? {
        Some(k) => (k, false),
        None => (make_key(&key_path)?, true),
    };
    let public_key = key
        .public_key()
        .to_openssh()
        .map_err(|e| format!("cannot write the public key: {e}"))?;
    let pub_path = d.join(format!("{KEY_FILE}.pub"));
    fs::write(&pub_path, format!("{public_key}\n"))
        .map_err(|e| format!("cannot write {}: {e}", pub_path.display()))?;
    audit::adopt_parent_owner(&pub_path);
    let w = crate::repository::open(&git_dir).map_err(|e| e.message().to_string())?;
    let _lock = lock(&git_dir)?;
    let started = if w.refname_to_id(LOG_REF).is_ok() {
        None
    } else {
        let refs = tracked_refs(&w, policy).map_err(|f| f.message)?;
        let last = audit_tail(&audit::path_for(repo), u64::MAX)
            .ok()
            .and_then(|t| t.last);
        let audit_upto = last.as_ref().map_or(0, |m| m.seq);
        let state = State {
            refs: refs
                .iter()
                .map(|(k, v)| (k.clone(), v.to_string()))
                .collect(),
            policy: policy_id.cloned(),
            root: None,
            audit_upto,
            ..State::default()
        };
        let entry = Entry {
            version: VERSION,
            seq: 1,
            kind: Kind::Start,
            time: now,
            time_utc: time::format(now),
            recorded_by: "log init".into(),
            updates: Vec::new(),
            pusher: Some(audit::pusher()),
            policy: policy_id.cloned(),
            audit: last,
            acknowledges: None,
            reason: None,
            signed_by: Vec::new(),
            push_cert: None,
        };
        Some(write_entry(&w, &key, None, &entry, &state)?)
    };
    Ok(Init {
        public_key,
        key_created,
        started,
        key_path,
    })
}

/// A new ed25519 key from the system's random source, written 0600.
fn make_key(path: &Path) -> Result<PrivateKey, String> {
    let mut seed = [0u8; 32];
    File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut seed))
        .map_err(|e| format!("cannot read /dev/urandom for a new key: {e}"))?;
    let pair = ssh_key::private::Ed25519Keypair::from_seed(&seed);
    let mut key = PrivateKey::from(pair);
    let host = fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty() && h.chars().all(|c| c.is_ascii_graphic()))
        .unwrap_or_else(|| "server".into());
    key.set_comment(format!("countersign-log@{host}"));
    let text = key
        .to_openssh(LineEnding::LF)
        .map_err(|e| format!("cannot encode the new key: {e}"))?;
    let mut opts = OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts
        .open(path)
        .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
    f.write_all(text.as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    audit::adopt_parent_owner(path);
    Ok(key)
}

/// The writers' lock, held until dropped.
pub struct Lock(File);

impl Drop for Lock {
    fn drop(&mut self) {
        let _ = self.0.unlock();
    }
}

/// Take the writers' lock.
///
/// # Errors
///
/// A message when the lock file cannot be opened or locked.
pub fn lock(git_dir: &Path) -> Result<Lock, String> {
    let d = dir(git_dir);
    let shared = sharing(git_dir);
    audit::create_dirs(&d, shared).map_err(|e| format!("cannot create {}: {e}", d.display()))?;
    let path = d.join(LOCK_FILE);
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    audit::share(&f, shared, false)
        .map_err(|e| format!("cannot set the mode of {}: {e}", path.display()))?;
    audit::adopt_parent_owner(&path);
    f.lock()
        .map_err(|e| format!("cannot lock {}: {e}", path.display()))?;
    Ok(Lock(f))
}

/// Loose objects root wrote (an admin's `log init` or `log ack` as root)
/// go to the repository's owner with the fan-out directories root made:
/// a directory of root's would refuse the hook user's next push of any
/// object whose id falls in it ("unable to migrate objects to permanent
/// storage").
fn adopt_objects(w: &Repository, ids: &[Oid]) {
    let objects = w.path().join("objects");
    for id in ids {
        let hex = id.to_string();
        let (Some(fan), Some(rest)) = (hex.get(..2), hex.get(2..)) else {
            continue;
        };
        let dir = objects.join(fan);
        audit::adopt_parent_owner(&dir);
        audit::adopt_parent_owner(&dir.join(rest));
    }
}

/// Sign and write one entry after `parent`, move the log ref to it (only
/// if it is still at `parent`) and remember it in the head file.
fn write_entry(
    w: &Repository,
    key: &PrivateKey,
    parent: Option<Oid>,
    entry: &Entry,
    state: &State,
) -> Result<Oid, String> {
    let e = |x: git2::Error| x.message().to_string();
    let eb = serde_json::to_vec_pretty(entry).map_err(|x| x.to_string())?;
    let sb = serde_json::to_vec_pretty(state).map_err(|x| x.to_string())?;
    if eb.len() > MAX_BLOB_BYTES || sb.len() > MAX_BLOB_BYTES {
        return Err(format!(
            "the entry would be larger than {MAX_BLOB_BYTES} bytes"
        ));
    }
    let eblob = w.blob(&eb).map_err(e)?;
    let sblob = w.blob(&sb).map_err(e)?;
    let mut tb = w.treebuilder(None).map_err(e)?;
    tb.insert("entry.json", eblob, 0o100_644).map_err(e)?;
    tb.insert("state.json", sblob, 0o100_644).map_err(e)?;
    if let Some(cert) = entry
        .push_cert
        .as_deref()
        .and_then(|c| Oid::from_str(c).ok())
    {
        tb.insert("push-cert", cert, 0o100_644).map_err(e)?;
    }
    let tree = w.find_tree(tb.write().map_err(e)?).map_err(e)?;
    let who = git2::Signature::new(
        "countersign",
        "countersign@server",
        &git2::Time::new(entry.time, 0),
    )
    .map_err(e)?;
    let message = format!("countersign log {}: {}\n", entry.seq, summary(entry));
    let parents = match parent {
        Some(p) => vec![w.find_commit(p).map_err(e)?],
        None => Vec::new(),
    };
    let refs: Vec<&git2::Commit> = parents.iter().collect();
    let buf = w
        .commit_create_buffer(&who, &who, &message, &tree, &refs)
        .map_err(e)?;
    let text = std::str::from_utf8(&buf).map_err(|x| x.to_string())?;
    let sig = key
        .sign(SIG_NAMESPACE, HashAlg::Sha512, text.as_bytes())
        .map_err(|x| format!("cannot sign the entry: {x}"))?;
    let pem = sig
        .to_pem(LineEnding::LF)
        .map_err(|x| format!("cannot encode the signature: {x}"))?;
    let field = match w.object_format() {
        git2::ObjectFormat::Sha256 => "gpgsig-sha256",
        _ => "gpgsig",
    };
    let id = w
        .commit_signed(text, pem.trim_end(), Some(field))
        .map_err(e)?;
    adopt_objects(w, &[eblob, sblob, tree.id(), id]);
    let log_msg = format!("countersign log entry {}", entry.seq);
    match parent {
        Some(p) => w.reference_matching(LOG_REF, id, true, p, &log_msg),
        None => w.reference(LOG_REF, id, false, &log_msg),
    }
    .map_err(|x| format!("cannot move {LOG_REF}: {}", x.message()))?;
    let head = dir(w.path()).join(HEAD_FILE);
    let tmp = head.with_extension("tmp");
    fs::write(&tmp, format!("{id}\n"))
        .and_then(|()| audit::share(&File::open(&tmp)?, sharing(w.path()), false))
        .map(|()| audit::adopt_parent_owner(&tmp))
        .and_then(|()| fs::rename(&tmp, &head))
        .map_err(|x| format!("cannot write {}: {x}", head.display()))?;
    Ok(id)
}

/// The most refs a summary names; the rest are counted.
const SUMMARY_REFS: usize = 10;
/// The most characters of a summary (an entry commit must stay far below
/// [`MAX_COMMIT_BYTES`], however many refs, or how long, a push brings).
const SUMMARY_CHARS: usize = 2000;

/// One line about an entry, for commit messages and listings: at most
/// [`SUMMARY_REFS`] refs, each cut to 200 characters, and at most
/// [`SUMMARY_CHARS`] characters in all.
pub fn summary(entry: &Entry) -> String {
    crate::policy::limits::truncate(&summary_in_full(entry), SUMMARY_CHARS)
}

fn summary_in_full(entry: &Entry) -> String {
    let refs = |tracked_only: bool| {
        let list: Vec<&Change> = entry
            .updates
            .iter()
            .filter(|c| c.tracked || !tracked_only)
            .collect();
        let mut text = list
            .iter()
            .take(SUMMARY_REFS)
            .map(|c| crate::sanitize::escape(&crate::policy::limits::truncate(&c.refname, 200)))
            .collect::<Vec<_>>()
            .join(", ");
        if list.len() > SUMMARY_REFS {
            text.push_str(&format!(" and {} more", list.len() - SUMMARY_REFS));
        }
        text
    };
    match entry.kind {
        Kind::Start => "start".into(),
        Kind::Push => {
            let who = entry
                .pusher
                .as_ref()
                .and_then(|p| p.get("name"))
                .and_then(Value::as_str)
                .map(crate::sanitize::escape)
                .unwrap_or_else(|| "?".into());
            format!("push by {who}: {}", refs(false))
        }
        Kind::ObservedOutOfBand => format!("observed out of band: {}", refs(false)),
        Kind::Acknowledged => format!(
            "acknowledged entry {}",
            entry.acknowledges.unwrap_or_default()
        ),
        Kind::Tracking if entry.updates.is_empty() => match &entry.reason {
            Some(r) => crate::sanitize::escape(r),
            None => "the policy in force changed; the tracked refs did not".into(),
        },
        Kind::Tracking => format!("tracking changed: {}", refs(false)),
    }
}

/// Read and verify one entry: a signed commit of at most one parent whose
/// tree is exactly `entry.json` and `state.json`, signed by `key`.
///
/// # Errors
///
/// A message naming what is wrong.
pub fn read_entry(repo: &Repository, id: Oid, key: &PublicKey) -> Result<Loaded, String> {
    let odb = repo.odb().map_err(|e| e.message().to_string())?;
    let (size, kind) = odb
        .read_header(id)
        .map_err(|e| format!("entry {id} cannot be read: {}", e.message()))?;
    if kind != ObjectType::Commit {
        return Err(format!("{id} is not a commit"));
    }
    if size > MAX_COMMIT_BYTES {
        return Err(format!(
            "entry {id} is {size} bytes, more than an entry commit may be ({MAX_COMMIT_BYTES})"
        ));
    }
    let raw = odb
        .read(id)
        .map_err(|e| format!("entry {id} cannot be read: {}", e.message()))?;
    let format = match repo.object_format() {
        git2::ObjectFormat::Sha256 => crate::signing::object::HashFormat::Sha256,
        _ => crate::signing::object::HashFormat::Sha1,
    };
    let split = crate::signing::object::split_commit_in(raw.data(), format)
        .map_err(|e| format!("entry {id}: {e}"))?;
    let Some(sig) = split.signature else {
        return Err(format!("entry {id} is not signed"));
    };
    check_signature(key, &sig, &split.payload).map_err(|e| format!("entry {id}: {e}"))?;
    let commit = repo
        .find_commit(id)
        .map_err(|e| format!("entry {id}: {}", e.message()))?;
    if commit.parent_count() > 1 {
        return Err(format!(
            "entry {id} has more than one parent: the log is not linear"
        ));
    }
    let parent = commit.parent_ids().next();
    let tree = commit
        .tree()
        .map_err(|e| format!("entry {id}: {}", e.message()))?;
    let extra_ok = tree.len() == 3 && tree.get_name("push-cert").is_some();
    if tree.len() != 2 && !extra_ok {
        return Err(format!(
            "entry {id} holds {} files; an entry holds exactly entry.json and state.json (and push-cert for a signed push)",
            tree.len()
        ));
    }
    let blob = |name: &str| -> Result<Vec<u8>, String> {
        let t = tree
            .get_name(name)
            .ok_or_else(|| format!("entry {id} has no {name}"))?;
        let (size, kind) = odb
            .read_header(t.id())
            .map_err(|e| format!("entry {id}: {name}: {}", e.message()))?;
        if kind != ObjectType::Blob || size > MAX_BLOB_BYTES {
            return Err(format!(
                "entry {id}: {name} is not a file of at most {MAX_BLOB_BYTES} bytes"
            ));
        }
        odb.read(t.id())
            .map(|o| o.data().to_vec())
            .map_err(|e| format!("entry {id}: {name}: {}", e.message()))
    };
    let entry: Entry = serde_json::from_slice(&blob("entry.json")?)
        .map_err(|e| format!("entry {id}: entry.json: {e}"))?;
    let state: State = serde_json::from_slice(&blob("state.json")?)
        .map_err(|e| format!("entry {id}: state.json: {e}"))?;
    if entry.version != VERSION {
        return Err(format!(
            "entry {id} has format version {}, this countersign reads {VERSION}",
            entry.version
        ));
    }
    Ok(Loaded {
        id,
        parent,
        entry,
        state,
    })
}

/// An SSH signature in namespace `git` by exactly `key` over `payload`.
fn check_signature(key: &PublicKey, armored: &[u8], payload: &[u8]) -> Result<(), String> {
    let text = std::str::from_utf8(armored).map_err(|_| "the signature is not ASCII armor")?;
    let sig = SshSig::from_pem(text.trim())
        .map_err(|e| format!("the signature cannot be parsed: {e}"))?;
    if sig.namespace() != SIG_NAMESPACE {
        return Err(format!(
            "the signature is for namespace `{}`, not `{SIG_NAMESPACE}`",
            crate::sanitize::escape(sig.namespace())
        ));
    }
    if sig.public_key() != key.key_data() {
        return Err(format!(
            "signed by another key ({}), not the server key ({})",
            crate::policy::keys::ssh_fingerprint(sig.public_key()),
            crate::policy::keys::ssh_fingerprint(key.key_data())
        ));
    }
    key.verify(SIG_NAMESPACE, payload, &sig)
        .map_err(|_| "the signature does not verify (the entry was altered)".to_string())
}

/// Every tracked ref that exists: direct refs a rule of `policy` protects
/// (names compared ignoring case) and the policy ref.
fn tracked_refs(repo: &Repository, policy: &Policy) -> Result<BTreeMap<String, Oid>, Finding> {
    let mut out = BTreeMap::new();
    let refs = repo.references().map_err(|e| {
        broken(
            format!("cannot list the refs: {}", e.message()),
            "check the repository",
        )
    })?;
    for r in refs {
        let Ok(r) = r else { continue };
        let Some(target) = r.target() else {
            continue;
        };
        let name = String::from_utf8_lossy(r.name_bytes()).into_owned();
        if is_tracked(policy, &name) {
            if out.len() >= MAX_TRACKED_REFS {
                return Err(broken(
                    format!("more than {MAX_TRACKED_REFS} refs are protected; the ref-state log tracks at most that many"),
                    "protect fewer refs (e.g. narrower tag patterns), or archive old ones",
                ));
            }
            out.insert(name, target);
        }
    }
    Ok(out)
}

/// Whether `name` is tracked under `policy`.
pub fn is_tracked(policy: &Policy, name: &str) -> bool {
    if name.starts_with(governance::RESERVED_PREFIX) {
        return false;
    }
    name == governance::POLICY_REF || policy.rules.iter().any(|r| r.matches_with(name, true))
}

/// An accepted push recorded in the JSON audit log.
#[derive(Debug, Clone)]
struct Pending {
    mark: AuditMark,
    time: i64,
    updates: Vec<(String, String, String)>,
    pusher: Option<Value>,
    policy: Option<Value>,
}

/// The end of the JSON audit log.
#[derive(Debug, Default)]
struct Tail {
    /// Accepted pushes with `seq` above the floor, in order.
    accepted: Vec<Pending>,
    /// The last record.
    last: Option<AuditMark>,
    /// Whether everything above the floor was read.
    complete: bool,
}

/// Read the log backwards in chunks until a record at or below `floor`
/// is reached (or [`AUDIT_TAIL_BYTES`]): the cost is what was written
/// since the last entry, not the size of the log.
fn audit_tail(path: &Path, floor: u64) -> Result<Tail, String> {
    const CHUNK: u64 = 64 << 10;
    let mut f = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(Tail {
                complete: true,
                ..Tail::default()
            })
        }
        Err(e) => return Err(format!("cannot read the audit log: {e}")),
    };
    let len = f
        .metadata()
        .map_err(|e| format!("cannot read the audit log: {e}"))?
        .len();
    let mut start = len;
    let mut buf: Vec<u8> = Vec::new();
    loop {
        let from = start
            .saturating_sub(CHUNK)
            .max(len.saturating_sub(AUDIT_TAIL_BYTES));
        if from == start {
            break;
        }
        let mut chunk = vec![0u8; (start - from) as usize];
        f.seek(SeekFrom::Start(from))
            .and_then(|_| f.read_exact(&mut chunk))
            .map_err(|e| format!("cannot read the audit log: {e}"))?;
        chunk.extend_from_slice(&buf);
        buf = chunk;
        start = from;
        // The first complete line's seq: stop once it is at or below the floor.
        let first = if start == 0 {
            Some(&buf[..])
        } else {
            buf.iter().position(|&b| b == b'\n').map(|i| &buf[i + 1..])
        };
        let reached = start == 0
            || first
                .and_then(|rest| rest.split(|&b| b == b'\n').next())
                .and_then(|l| serde_json::from_slice::<Value>(l).ok())
                .and_then(|v| v.get("seq").and_then(Value::as_u64))
                .is_some_and(|s| s <= floor.saturating_add(1));
        if reached {
            break;
        }
    }
    let body: &[u8] = if start == 0 {
        &buf
    } else {
        match buf.iter().position(|&b| b == b'\n') {
            Some(i) => &buf[i + 1..],
            None => &[],
        }
    };
    let mut tail = Tail {
        complete: start == 0,
        ..Tail::default()
    };
    for line in body.split(|&b| b == b'\n') {
        if line.is_empty() {
            continue;
        }
        let Ok(v) = serde_json::from_slice::<Value>(line) else {
            continue;
        };
        let Some(seq) = v.get("seq").and_then(Value::as_u64) else {
            continue;
        };
        if seq <= floor.saturating_add(1) {
            tail.complete = true;
        }
        let mark = AuditMark {
            seq,
            hash: hex(&Sha256::digest(line)),
        };
        tail.last = Some(mark.clone());
        if seq <= floor
            || v.get("kind").and_then(Value::as_str) != Some("push")
            || v.get("verdict").and_then(Value::as_str) != Some("accepted")
        {
            continue;
        }
        let updates = v
            .get("updates")
            .and_then(Value::as_array)
            .map(|list| {
                list.iter()
                    .filter_map(|u| {
                        Some((
                            u.get("ref")?.as_str()?.to_string(),
                            u.get("old")?.as_str()?.to_string(),
                            u.get("new")?.as_str()?.to_string(),
                        ))
                    })
                    .collect()
            })
            .unwrap_or_default();
        tail.accepted.push(Pending {
            mark,
            time: v.get("time").and_then(Value::as_i64).unwrap_or(0),
            updates,
            pusher: v.get("pusher").cloned(),
            policy: v.get("policy").cloned(),
        });
    }
    Ok(tail)
}

/// What [`sync`] found.
#[derive(Debug, Default)]
pub struct Synced {
    /// Out-of-band moves still waiting for acknowledgement.
    pub unacknowledged: Vec<Observation>,
    /// Entries written now (seq, kind).
    pub written: Vec<(u64, Kind)>,
}

/// The tip entry, checked against the head file and the server key.
struct Tip {
    read: Loaded,
    key: PrivateKey,
}

fn open_tip(w: &Repository, policy: &Policy) -> Result<Option<Tip>, Finding> {
    let git_dir = w.path().to_path_buf();
    let fix_key = "make the key readable only by the user the hook runs as (`chmod 600`), or run `countersign log init` as that user";
    let key = load_key(&git_dir).map_err(|m| broken(format!("ref-state log: {m}"), fix_key))?;
    let tip = w.refname_to_id(LOG_REF).ok();
    let head_path = dir(&git_dir).join(HEAD_FILE);
    let head = fs::read_to_string(&head_path)
        .ok()
        .and_then(|s| Oid::from_str(s.trim()).ok());
    let (key, tip) = match (key, tip) {
        (None, None) => return Ok(None),
        (None, Some(_)) => {
            return Err(broken(
                "the ref-state log exists but the server key that signs it is missing",
                "restore $GIT_DIR/countersign/server-key from backup; a new key means clones will see a log signed by another key",
            ))
        }
        (Some(_), None) if head.is_some() => {
            return Err(broken(
                format!("{LOG_REF} was deleted on the server (this server last wrote entry {})", head.map(|h| h.to_string()).unwrap_or_default()),
                "restore the ref from a clone that fetched it (`git push` of refs/countersign/log by an admin on the server), then acknowledge what moved",
            ))
        }
        (Some(_), None) => {
            return Err(broken(
                "a server key exists but the ref-state log was never started",
                "run `countersign log init` in the repository, as the user the hook runs as",
            ))
        }
        (Some(k), Some(t)) => (k, t),
    };
    if let Some(h) = head {
        if h != tip && !w.graph_descendant_of(tip, h).unwrap_or(false) {
            return Err(broken(
                format!(
                    "{LOG_REF} is at {}, which does not follow the last entry this server wrote ({}): the log was moved back or rewritten on the server",
                    crate::engine::short(tip),
                    crate::engine::short(h)
                ),
                "find out who changed it; restore the ref to the last entry (clones that fetched it have it) and acknowledge what moved",
            ));
        }
    }
    let public = key.public_key().clone();
    if let Some(published) = &policy.log_key {
        if published.key_data() != public.key_data() {
            return Err(broken(
                format!(
                    "the policy publishes the server key {}, but this server's key is {}",
                    crate::policy::keys::ssh_fingerprint(published.key_data()),
                    crate::policy::keys::ssh_fingerprint(public.key_data())
                ),
                "put the key `countersign log init` prints into [log] server-key, or restore the server's key",
            ));
        }
    }
    let read = read_entry(w, tip, &public).map_err(|m| {
        broken(
            format!("the last ref-state log entry does not verify: {m}"),
            "restore refs/countersign/log from a clone that fetched it",
        )
    })?;
    Ok(Some(Tip { read, key }))
}

fn oid_or_zero(v: Option<&Oid>, zero: &str) -> String {
    v.map_or_else(|| zero.to_string(), Oid::to_string)
}

/// Bring the log up to date with the refs, under the lock: one `push`
/// entry per accepted push whose moves are seen, a `tracking` entry when
/// the policy changed the tracked set, an `observed-out-of-band` entry for
/// anything else. Returns `None` when the log is not in use. `by` names
/// the caller in the entries (`post-receive`, `pre-receive`).
///
/// # Errors
///
/// A `ref-log-broken` finding when the log, the key or the audit log
/// cannot be read or written.
pub fn sync(
    repo: &Repository,
    policy: &Policy,
    policy_id: Option<&Value>,
    now: Timestamp,
    by: &str,
) -> Result<Option<Synced>, Finding> {
    if !enabled(repo) {
        return Ok(None);
    }
    let git_dir = repo.path().to_path_buf();
    // The pusher sees that the log cannot be written; what and where (server
    // paths, OS errors) is the admin's detail, in the audit record.
    let io = |m: String| {
        broken(
            "the ref-state log cannot be written on the server",
            "an admin finds the reason in the audit log (or with `countersign log verify` on the server); the repository's countersign/ directory must be writable by the user the hook runs as (`countersign doctor`)",
        )
        .with_detail(format!("the ref-state log cannot be written: {m}"))
    };
    // Objects go to the real object store, never the push's quarantine.
    let w = crate::repository::open(&git_dir).map_err(|e| io(e.message().to_string()))?;
    let _lock = lock(&git_dir).map_err(io)?;
    let Some(Tip { read, key }) = open_tip(&w, policy)? else {
        return Ok(None);
    };
    let zero = zero(&w);
    // Refs first, then the audit log: a decision's record is written
    // before git moves a ref, so a move seen here has its record below.
    let actual = tracked_refs(&w, policy)?;
    let audit_path = audit::path_for(repo);
    let mut state = read.state.clone();
    let tail = audit_tail(&audit_path, state.audit_upto).map_err(io)?;
    let pending: Vec<&Pending> = tail
        .accepted
        .iter()
        .filter(|p| !state.audit_done.contains(&p.mark.seq))
        .collect();
    let policy_changed = state.policy.as_ref() != policy_id;

    // Which (record, ref) moves are seen, per ref.
    let mut names: BTreeSet<String> = state.refs.keys().cloned().collect();
    names.extend(actual.keys().cloned());
    for p in &pending {
        for (r, _, _) in &p.updates {
            if is_tracked(policy, r) {
                names.insert(r.clone());
            }
        }
    }
    let mut applied: BTreeSet<(u64, String)> = BTreeSet::new();
    let mut unexplained: Vec<(String, String, String)> = Vec::new();
    let mut adopted: Vec<Change> = Vec::new();
    for name in &names {
        let recorded = state
            .refs
            .get(name)
            .cloned()
            .unwrap_or_else(|| zero.clone());
        let now_v = oid_or_zero(actual.get(name), &zero);
        let tracked_now = is_tracked(policy, name);
        if !tracked_now && policy_changed {
            if state.refs.contains_key(name) {
                adopted.push(Change {
                    refname: name.clone(),
                    old: recorded.clone(),
                    new: zero.clone(),
                    tracked: false,
                });
            }
            continue;
        }
        match chain(&pending, name, &recorded, &now_v) {
            Some(path) => {
                for seq in path {
                    applied.insert((seq, name.clone()));
                }
            }
            None if policy_changed && !state.refs.contains_key(name) => adopted.push(Change {
                refname: name.clone(),
                old: zero.clone(),
                new: now_v,
                tracked: true,
            }),
            None => unexplained.push((name.clone(), recorded, now_v)),
        }
    }

    let mut parent = read.id;
    let mut seq = read.entry.seq;
    let root = state.root.clone().unwrap_or_else(|| {
        if read.parent.is_none() {
            read.id.to_string()
        } else {
            String::new()
        }
    });
    state.root = Some(root);
    let mut synced = Synced::default();
    let mut still_pending: Vec<u64> = Vec::new();
    let mut write = |state: &State, entry: Entry, synced: &mut Synced| -> Result<(), Finding> {
        let kind = entry.kind;
        let id = write_entry(&w, &key, Some(parent), &entry, state).map_err(io)?;
        parent = id;
        synced.written.push((entry.seq, kind));
        Ok(())
    };
    let entry_base = |seq: u64, kind: Kind| Entry {
        version: VERSION,
        seq,
        kind,
        time: now,
        time_utc: time::format(now),
        recorded_by: by.to_string(),
        updates: Vec::new(),
        pusher: None,
        policy: None,
        audit: None,
        acknowledges: None,
        reason: None,
        signed_by: Vec::new(),
        push_cert: None,
    };
    // The audit log went back (cut, restored, re-checkpointed by an
    // admin): say so in the log, and account from its new end on. The
    // signed checkpoints of the earlier entries keep what was cut visible.
    let file_last = tail.last.as_ref().map_or(0, |m| m.seq);
    if file_last < state.audit_upto {
        let mut entry = entry_base(seq + 1, Kind::Tracking);
        entry.reason = Some(format!(
            "the audit log went back: its last record is {file_last}, but records up to {} were accounted for; the earlier entries' checkpoints still name the records that were there",
            state.audit_upto
        ));
        entry.audit = tail.last.clone();
        entry.policy = policy_id.cloned();
        state.audit_upto = file_last;
        state.audit_done.clear();
        seq += 1;
        write(&state, entry, &mut synced)?;
    }
    // First pass: which accepted pushes are settled (all their tracked
    // moves seen, or too old to be still in flight).
    let mut settled: Vec<(&Pending, bool)> = Vec::new();
    for p in &pending {
        let tracked: Vec<&String> = p
            .updates
            .iter()
            .map(|(r, _, _)| r)
            .filter(|r| names.contains(*r) && is_tracked(policy, r))
            .collect();
        let seen = |r: &String| applied.contains(&(p.mark.seq, r.clone()));
        let all = tracked.iter().all(|r| seen(r));
        let any = tracked.iter().any(|r| seen(r));
        let stale = now.saturating_sub(p.time) > STALE_SECS;
        if !all && !stale {
            still_pending.push(p.mark.seq);
            continue;
        }
        // Accepted but never applied (refused later by git or another
        // hook): accounted for, no entry.
        settled.push((p, tracked.is_empty() || any));
    }
    let mut blockers: Vec<u64> = still_pending.clone();
    blockers.extend(settled.iter().filter(|(_, w)| *w).map(|(p, _)| p.mark.seq));
    for (p, _) in settled.iter().filter(|(_, w)| !*w) {
        state.audit_done.insert(p.mark.seq);
    }
    for (p, _) in settled.iter().filter(|(_, w)| *w) {
        let seen = |r: &str| applied.contains(&(p.mark.seq, r.to_string()));
        let mut entry = entry_base(seq + 1, Kind::Push);
        for (r, old, new) in &p.updates {
            let is_tr = names.contains(r) && is_tracked(policy, r);
            if is_tr && !seen(r) {
                continue;
            }
            if is_tr {
                if *new == zero {
                    state.refs.remove(r);
                } else {
                    state.refs.insert(r.clone(), new.clone());
                }
            }
            entry.updates.push(Change {
                refname: r.clone(),
                old: old.clone(),
                new: new.clone(),
                tracked: is_tr,
            });
        }
        entry.pusher = p.pusher.clone();
        entry.push_cert = push_cert_of(&w, p.pusher.as_ref());
        entry.policy = p.policy.clone();
        entry.audit = Some(p.mark.clone());
        seq += 1;
        state.audit_done.insert(p.mark.seq);
        blockers.retain(|b| *b != p.mark.seq);
        finish_audit(&mut state, &tail, &blockers);
        write(&state, entry, &mut synced)?;
    }
    finish_audit(&mut state, &tail, &still_pending);
    if policy_changed {
        state.policy = policy_id.cloned();
        for c in &adopted {
            if c.tracked {
                state.refs.insert(c.refname.clone(), c.new.clone());
            } else {
                state.refs.remove(&c.refname);
            }
        }
        let mut entry = entry_base(seq + 1, Kind::Tracking);
        entry.updates = adopted;
        entry.policy = policy_id.cloned();
        entry.audit = tail.last.clone();
        seq += 1;
        write(&state, entry, &mut synced)?;
    }
    if !unexplained.is_empty() {
        let n = seq + 1;
        let changes: Vec<Value> = unexplained
            .iter()
            .map(|(r, a, b)| serde_json::json!({"ref": r, "recorded": a, "observed": b}))
            .collect();
        let record = audit::append_shared(
            &audit_path,
            "observed-out-of-band",
            serde_json::json!({
                "repository": repo.path().display().to_string(),
                "log_entry": n,
                "changes": changes,
                "policy": policy_id,
                "recorded_by": by,
            }),
            now,
            sharing(repo.path()),
        )
        .map_err(|e| io(e.to_string()))?;
        let mark = Some(AuditMark {
            seq: record.seq,
            hash: record.hash,
        });
        let mut entry = entry_base(n, Kind::ObservedOutOfBand);
        for (r, recorded, observed) in &unexplained {
            if *observed == zero {
                state.refs.remove(r);
            } else {
                state.refs.insert(r.clone(), observed.clone());
            }
            // Every one waits, however many: an observation left out would
            // be missing from the statement the admins sign, and its move
            // never acknowledged. (The state's size is bounded by the
            // tracked refs; past MAX_BLOB_BYTES the entry cannot be
            // written and pushes are refused, `ref-log-broken`.)
            state.unacknowledged.push(Observation {
                entry: n,
                refname: r.clone(),
                recorded: recorded.clone(),
                observed: observed.clone(),
            });
            entry.updates.push(Change {
                refname: r.clone(),
                old: recorded.clone(),
                new: observed.clone(),
                tracked: true,
            });
        }
        entry.policy = policy_id.cloned();
        entry.audit = mark;
        write(&state, entry, &mut synced)?;
    }
    synced.unacknowledged = state.unacknowledged.clone();
    Ok(Some(synced))
}

/// The accepted pushes (by audit `seq`, in order) whose updates of `name`
/// lead from `recorded` to `now`, or `None` when none do. Not the first
/// update that fits: a push the hook accepted but git never applied (an
/// atomic push git refused, a lost race, a chained hook's refusal) must
/// not hide the push that did land from the same old value. Of the chains
/// that lead there, the longest (every push that moved the ref and back);
/// each value is reached at most once per length, so the cost is linear
/// in the updates read.
fn chain(pending: &[&Pending], name: &str, recorded: &str, now: &str) -> Option<Vec<u64>> {
    // Each step: (seq, index of the step it extends).
    let mut steps: Vec<(u64, Option<usize>)> = Vec::new();
    // The longest chain found so far ending at each value: (length, last step).
    let mut best: BTreeMap<&str, (usize, Option<usize>)> = BTreeMap::new();
    best.insert(recorded, (0, None));
    for p in pending {
        for (r, old, new) in &p.updates {
            if r != name {
                continue;
            }
            let Some(&(len, last)) = best.get(old.as_str()) else {
                continue;
            };
            if best.get(new.as_str()).is_some_and(|(l, _)| *l > len) {
                continue;
            }
            steps.push((p.mark.seq, last));
            best.insert(new.as_str(), (len + 1, Some(steps.len() - 1)));
        }
    }
    let &(_, mut at) = best.get(now)?;
    let mut path = Vec::new();
    while let Some(i) = at {
        path.push(steps[i].0);
        at = steps[i].1;
    }
    path.reverse();
    Some(path)
}

/// The push certificate a push record names (`cert` of a pusher
/// candidate), when the blob is in the repository and of a sane size.
fn push_cert_of(repo: &Repository, pusher: Option<&Value>) -> Option<String> {
    let cert = pusher?
        .get("candidates")?
        .as_array()?
        .iter()
        .find_map(|c| c.get("cert").and_then(Value::as_str))?;
    let oid = Oid::from_str(cert).ok()?;
    let (size, kind) = repo.odb().ok()?.read_header(oid).ok()?;
    (kind == ObjectType::Blob && size <= 64 << 10).then(|| oid.to_string())
}

/// Move `audit_upto` up to just below the oldest push still in flight
/// (or to the last record read), keeping `audit_done` to what lies above.
fn finish_audit(state: &mut State, tail: &Tail, still_pending: &[u64]) {
    let upto = match still_pending.iter().min() {
        Some(&oldest) => oldest.saturating_sub(1),
        None => tail.last.as_ref().map_or(state.audit_upto, |m| m.seq),
    };
    if tail.complete || still_pending.is_empty() {
        state.audit_upto = state.audit_upto.max(upto);
    }
    let floor = state.audit_upto;
    state.audit_done.retain(|s| *s > floor);
}

/// The finding that refuses pushes while out-of-band moves wait for an
/// acknowledgement.
pub fn unacknowledged_finding(obs: &[Observation]) -> Option<Finding> {
    let first = obs.first()?;
    let list: Vec<String> = obs
        .iter()
        .take(5)
        .map(|o| {
            format!(
                "`{}` {} -> {} (log entry {})",
                crate::sanitize::escape(&o.refname),
                crate::engine::short_hex(&o.recorded),
                crate::engine::short_hex(&o.observed),
                o.entry
            )
        })
        .collect();
    let more = obs.len().saturating_sub(5);
    Some(
        Finding::new(
            Code::RefMovedOutOfBand,
            format!(
                "protected refs were moved outside the hook and no admin has acknowledged it: {}{}; every push is refused until then",
                list.join(", "),
                if more > 0 { format!(" and {more} more") } else { String::new() }
            ),
            format!(
                "an admin finds out what happened, then acknowledges it on the server: `countersign log statement --entry {0}` gives the text the admins sign, `countersign log ack --entry {0} --signature FILE...` records it",
                first.entry
            ),
        )
        .at_ref(&first.refname),
    )
}

/// The text the admins sign to acknowledge the out-of-band moves of
/// `entry` (SSH namespace [`ACK_NAMESPACE`]).
pub fn statement(repository_id: &str, root: &str, entry: u64, obs: &[&Observation]) -> String {
    let mut s = format!(
        "countersign acknowledgement v1\nrepository {repository_id}\nlog-root {root}\nentry {entry}\n"
    );
    for o in obs {
        s.push_str(&format!(
            "ref {} {} {}\n",
            o.refname, o.recorded, o.observed
        ));
    }
    s
}

/// The observations of `entry` waiting for acknowledgement, and the statement to sign.
///
/// # Errors
///
/// A message when the log cannot be read or nothing of `entry` waits.
pub fn statement_for(
    repo: &Repository,
    policy: &Policy,
    entry: u64,
) -> Result<(String, Vec<Observation>), String> {
    let w = crate::repository::open(repo.path()).map_err(|e| e.message().to_string())?;
    let tip = open_tip(&w, policy)
        .map_err(|f| f.message)?
        .ok_or("this repository has no ref-state log (`countersign log init`)")?;
    let obs: Vec<&Observation> = tip
        .read
        .state
        .unacknowledged
        .iter()
        .filter(|o| o.entry == entry)
        .collect();
    if obs.is_empty() {
        return Err(format!(
            "entry {entry} has nothing waiting for acknowledgement (waiting: {})",
            list_waiting(&tip.read.state)
        ));
    }
    let root = tip.read.state.root.clone().unwrap_or_default();
    Ok((
        statement(&policy.repository_id, &root, entry, &obs),
        obs.into_iter().cloned().collect(),
    ))
}

fn list_waiting(state: &State) -> String {
    let set: BTreeSet<u64> = state.unacknowledged.iter().map(|o| o.entry).collect();
    if set.is_empty() {
        "none".into()
    } else {
        set.iter()
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Record an acknowledgement of `entry`'s out-of-band moves. When the
/// policy has `[policy-changes]`, the signatures (over
/// [`statement_for`]'s text, SSH namespace [`ACK_NAMESPACE`] or OpenPGP)
/// must come from the same quorum a policy change needs: one person with
/// a signer role and the approvals, from distinct others. Without
/// `[policy-changes]` (a policy file the operator edits) the operator's
/// word is recorded, with any signatures given.
///
/// # Errors
///
/// A message when the signatures do not make the quorum or the log cannot be written.
pub fn acknowledge(
    repo: &Repository,
    policy: &Policy,
    policy_id: Option<&Value>,
    entry: u64,
    signatures: &[Vec<u8>],
    reason: &str,
    now: Timestamp,
) -> Result<u64, String> {
    let (text, _) = statement_for(repo, policy, entry)?;
    let mut signers: Vec<(String, String)> = Vec::new();
    for (i, sig) in signatures.iter().enumerate() {
        let v = crate::signing::signature::verify(
            &policy.keyring,
            sig,
            text.as_bytes(),
            ACK_NAMESPACE,
            now,
        )
        .map_err(|e| format!("signature {}: {e}", i + 1))?;
        let key = policy
            .keyring
            .get(v.key)
            .ok_or("internal: key index out of range")?;
        let person = policy
            .people
            .get(&key.person)
            .ok_or("internal: key without person")?;
        let dates = [
            (key.dates.revoked, "revoked"),
            (key.dates.expires, "expired"),
            (key.dates.retired, "retired"),
            (person.dates.revoked, "revoked (person)"),
            (person.dates.expires, "expired (person)"),
        ];
        if let Some((_, what)) = dates.iter().find(|(d, _)| d.is_some_and(|t| t <= now)) {
            return Err(format!(
                "signature {} is by {} with {}, which is {what}",
                i + 1,
                person.id,
                key.describe()
            ));
        }
        if signers.iter().any(|(p, _)| *p == person.id) {
            return Err(format!(
                "signature {} is a second signature by {}: each person counts once",
                i + 1,
                person.id
            ));
        }
        signers.push((person.id.clone(), key.describe()));
    }
    if let Some(pc) = &policy.policy_changes {
        quorum(policy, pc, &signers)?;
    }
    let operator = audit::os_user();
    write_ack(
        repo,
        policy,
        policy_id,
        entry,
        &signers,
        signatures,
        Some(&text),
        reason,
        &format!("log ack (operator {operator})"),
        now,
    )
}

/// Break glass: acknowledge every waiting out-of-band move on the
/// operator's word (the trust root was re-pinned, itself recorded), after
/// bringing the log up to date. Returns the entries acknowledged.
///
/// # Errors
///
/// A message when the log cannot be read or written.
pub fn acknowledge_break_glass(
    repo: &Repository,
    policy: &Policy,
    policy_id: Option<&Value>,
    reason: &str,
    now: Timestamp,
) -> Result<Vec<u64>, String> {
    let Some(synced) =
        sync(repo, policy, policy_id, now, "policy migrate --repin").map_err(|f| f.message)?
    else {
        return Ok(Vec::new());
    };
    let entries: BTreeSet<u64> = synced.unacknowledged.iter().map(|o| o.entry).collect();
    let by = format!("break glass (operator {})", audit::os_user());
    for e in &entries {
        write_ack(
            repo,
            policy,
            policy_id,
            *e,
            &[],
            &[],
            None,
            reason,
            &by,
            now,
        )?;
    }
    Ok(entries.into_iter().collect())
}

#[allow(clippy::too_many_arguments)]
fn write_ack(
    repo: &Repository,
    policy: &Policy,
    policy_id: Option<&Value>,
    entry: u64,
    signers: &[(String, String)],
    signatures: &[Vec<u8>],
    text: Option<&str>,
    reason: &str,
    recorded_by: &str,
    now: Timestamp,
) -> Result<u64, String> {
    let git_dir = repo.path().to_path_buf();
    let w = crate::repository::open(&git_dir).map_err(|e| e.message().to_string())?;
    let _lock = lock(&git_dir)?;
    let tip = open_tip(&w, policy)
        .map_err(|f| f.message)?
        .ok_or("this repository has no ref-state log")?;
    let mut state = tip.read.state.clone();
    let before = state.unacknowledged.len();
    state.unacknowledged.retain(|o| o.entry != entry);
    if state.unacknowledged.len() == before {
        return Err(format!("entry {entry} was acknowledged meanwhile"));
    }
    let operator = audit::os_user();
    let signed_by: Vec<Value> = signers
        .iter()
        .map(|(p, k)| serde_json::json!({"person": p, "key": k}))
        .collect();
    let record = audit::append_shared(
        &audit::path_for(repo),
        "acknowledged",
        serde_json::json!({
            "repository": repo.path().display().to_string(),
            "log_entry": tip.read.entry.seq + 1,
            "acknowledges": entry,
            "reason": reason,
            "signed_by": signed_by,
            "operator": operator,
            "statement": text,
            "signatures": signatures.iter().map(|s| String::from_utf8_lossy(s).into_owned()).collect::<Vec<_>>(),
        }),
        now,
        sharing(repo.path()),
    )
    .map_err(|e| e.to_string())?;
    let mark = Some(AuditMark {
        seq: record.seq,
        hash: record.hash,
    });
    let seq = tip.read.entry.seq + 1;
    if state.root.is_none() {
        state.root = Some(if tip.read.parent.is_none() {
            tip.read.id.to_string()
        } else {
            String::new()
        });
    }
    let entry_v = Entry {
        version: VERSION,
        seq,
        kind: Kind::Acknowledged,
        time: now,
        time_utc: time::format(now),
        recorded_by: recorded_by.to_string(),
        updates: Vec::new(),
        pusher: None,
        policy: policy_id.cloned(),
        audit: mark,
        acknowledges: Some(entry),
        reason: Some(reason.to_string()),
        signed_by,
        push_cert: None,
    };
    write_entry(&w, &tip.key, Some(tip.read.id), &entry_v, &state)?;
    Ok(seq)
}

/// One person with a signer role, and each approval requirement met by
/// distinct others (each person counted once across requirements).
fn quorum(
    policy: &Policy,
    pc: &crate::policy::PolicyChanges,
    signers: &[(String, String)],
) -> Result<(), String> {
    let has = |p: &str, role: &str| policy.people.get(p).is_some_and(|x| x.roles.contains(role));
    let need = pc
        .approvals
        .iter()
        .map(|a| format!("{} {}", a.count, a.role))
        .collect::<Vec<_>>()
        .join(" and ");
    let fail = || {
        format!(
            "the signatures ({}) do not make the quorum [policy-changes] asks for: one person with a role in [{}] and {need} from other people",
            if signers.is_empty() {
                "none".to_string()
            } else {
                signers.iter().map(|(p, _)| p.clone()).collect::<Vec<_>>().join(", ")
            },
            pc.signers.join(", ")
        )
    };
    for (lead, _) in signers {
        if !pc.signers.iter().any(|r| has(lead, r)) {
            continue;
        }
        let mut used: BTreeSet<&str> = BTreeSet::new();
        used.insert(lead);
        let mut ok = true;
        for req in &pc.approvals {
            let mut got = 0;
            for (p, _) in signers {
                if got >= req.count {
                    break;
                }
                if !used.contains(p.as_str()) && has(p, &req.role) {
                    used.insert(p);
                    got += 1;
                }
            }
            if got < req.count {
                ok = false;
                break;
            }
        }
        if ok {
            return Ok(());
        }
    }
    Err(fail())
}

/// Entries from the tip back, newest first, at most `max`, verified with
/// the server key.
///
/// # Errors
///
/// A message when an entry does not verify or the log is missing.
pub fn entries(repo: &Repository, key: &PublicKey, max: usize) -> Result<Vec<Loaded>, String> {
    let mut out = Vec::new();
    let mut next = repo.refname_to_id(LOG_REF).ok();
    while let Some(id) = next {
        if out.len() >= max {
            break;
        }
        let r = read_entry(repo, id, key)?;
        next = r.parent;
        out.push(r);
    }
    Ok(out)
}

/// The server's public key, from its private key file.
///
/// # Errors
///
/// As for [`load_key`], and when there is none.
pub fn server_public_key(git_dir: &Path) -> Result<PublicKey, String> {
    load_key(git_dir)?
        .map(|k| k.public_key().clone())
        .ok_or_else(|| "this repository has no server key (`countersign log init`)".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key_line(n: u8) -> String {
        let pair = ssh_key::private::Ed25519Keypair::from_seed(&[n; 32]);
        PrivateKey::from(pair).public_key().to_openssh().unwrap()
    }

    fn admins_policy() -> Policy {
        let mut text =
            String::from("[repository]\nid = \"t/q\"\n[roles]\nadmin = \"a\"\ndev = \"d\"\n");
        for (i, (p, role)) in [("a", "admin"), ("b", "admin"), ("c", "admin"), ("d", "dev")]
            .iter()
            .enumerate()
        {
            text.push_str(&format!(
                "[people.{p}]\nname = \"{p}\"\nroles = [\"{role}\"]\nssh = [\"{}\"]\n",
                key_line(i as u8 + 1)
            ));
        }
        text.push_str("[policy-changes]\nsigners = [\"admin\"]\napprovals = [{ role = \"admin\", count = 2 }]\n[[rule]]\nrefs = [\"refs/heads/main\"]\ncommit-signers = [\"dev\"]\n");
        crate::policy::parse(&text, Path::new(".")).unwrap()
    }

    #[test]
    fn quorum_needs_a_signer_and_distinct_approvers() {
        let policy = admins_policy();
        let pc = policy.policy_changes.clone().unwrap();
        let who = |list: &[&str]| -> Vec<(String, String)> {
            list.iter()
                .map(|p| (p.to_string(), "k".to_string()))
                .collect()
        };
        assert!(quorum(&policy, &pc, &who(&["a", "b", "c"])).is_ok());
        assert!(quorum(&policy, &pc, &who(&["c", "d", "a", "b"])).is_ok());
        for short in [
            &["a"][..],
            &["a", "b"],
            &["a", "b", "d"],
            &[],
            &["a", "a", "a"],
        ] {
            assert!(quorum(&policy, &pc, &who(short)).is_err(), "{short:?}");
        }
    }

    #[test]
    fn audit_floor_stops_below_the_oldest_push_in_flight() {
        let tail = Tail {
            accepted: Vec::new(),
            last: Some(AuditMark {
                seq: 20,
                hash: String::new(),
            }),
            complete: true,
        };
        let mut st = State {
            audit_upto: 10,
            audit_done: [12, 13, 15].into_iter().collect(),
            ..State::default()
        };
        finish_audit(&mut st, &tail, &[14, 17]);
        assert_eq!(st.audit_upto, 13);
        assert_eq!(st.audit_done, [15].into_iter().collect());
        finish_audit(&mut st, &tail, &[]);
        assert_eq!(st.audit_upto, 20);
        assert!(st.audit_done.is_empty());
    }

    #[test]
    fn statement_binds_everything() {
        let o = Observation {
            entry: 7,
            refname: "refs/heads/main".into(),
            recorded: "a".repeat(40),
            observed: "b".repeat(40),
        };
        let s = statement("acme/app", "c0ffee", 7, &[&o]);
        assert!(s.contains("repository acme/app\n"));
        assert!(s.contains("log-root c0ffee\n"));
        assert!(s.contains("entry 7\n"));
        assert!(s.contains(&format!(
            "ref refs/heads/main {} {}\n",
            "a".repeat(40),
            "b".repeat(40)
        )));
    }

    fn pending(seq: u64, updates: &[(&str, &str, &str)]) -> Pending {
        Pending {
            mark: AuditMark {
                seq,
                hash: String::new(),
            },
            time: 0,
            updates: updates
                .iter()
                .map(|(r, o, n)| (r.to_string(), o.to_string(), n.to_string()))
                .collect(),
            pusher: None,
            policy: None,
        }
    }

    /// A push accepted but never applied (A -> B) must not hide the one
    /// that landed from the same value (A -> C); a ref moved and moved
    /// back is explained by both pushes; nothing fits: `None`.
    #[test]
    fn ledger_attack_chain_skips_unapplied_pushes() {
        const M: &str = "refs/heads/main";
        let p = [
            pending(1, &[(M, "a", "b")]),
            pending(2, &[(M, "a", "c")]),
            pending(3, &[("refs/heads/x", "c", "d")]),
            pending(4, &[(M, "c", "d")]),
        ];
        let refs: Vec<&Pending> = p.iter().collect();
        assert_eq!(chain(&refs, M, "a", "c"), Some(vec![2]));
        assert_eq!(chain(&refs, M, "a", "d"), Some(vec![2, 4]));
        assert_eq!(chain(&refs, M, "a", "b"), Some(vec![1]));
        assert_eq!(chain(&refs, M, "a", "a"), Some(vec![]));
        assert_eq!(chain(&refs, M, "a", "e"), None);
        let back = [pending(1, &[(M, "a", "b")]), pending(2, &[(M, "b", "a")])];
        let refs: Vec<&Pending> = back.iter().collect();
        assert_eq!(chain(&refs, M, "a", "a"), Some(vec![1, 2]));
    }

    #[test]
    fn audit_tail_reads_back_to_the_floor_only() {
        let dir = std::env::temp_dir().join(format!("cs-ledger-tail-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("audit.log");
        for i in 0..3000 {
            let verdict = if i % 2 == 0 { "accepted" } else { "rejected" };
            audit::append(
                &path,
                "push",
                serde_json::json!({"verdict": verdict, "updates": [{"ref": "refs/heads/main", "old": "0", "new": format!("{i}"), "pad": "x".repeat(100)}]}),
                i,
            )
            .unwrap();
        }
        let t = audit_tail(&path, 2990).unwrap();
        assert!(t.complete);
        assert_eq!(t.last.as_ref().map(|m| m.seq), Some(3000));
        let seqs: Vec<u64> = t.accepted.iter().map(|p| p.mark.seq).collect();
        assert_eq!(seqs, vec![2991, 2993, 2995, 2997, 2999]);
        let all = audit_tail(&path, 0).unwrap();
        assert!(all.complete);
        assert_eq!(all.accepted.len(), 1500);
        let _ = fs::remove_dir_all(&dir);
    }
}
