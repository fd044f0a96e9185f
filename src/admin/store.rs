//! The policy store: every edit of a policy file as one transaction —
//! lock the file, check the audit log can take the record, validate the
//! edit, write it atomically, record it, and undo the write if the record
//! cannot be made. An admin command only parses its arguments, calls
//! [`apply`] with the edit, and prints the typed result.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use crate::admin::{AdminError, Change};
use crate::{audit, time};

/// Why an edit did not happen (what the edit closure returns).
#[derive(Debug)]
pub enum Fail {
    /// Refused by the policy logic (exit 1).
    Refused(AdminError),
    /// Could not be done (exit 2): message, help.
    Error(String, String),
}

impl From<AdminError> for Fail {
    fn from(e: AdminError) -> Fail {
        Fail::Refused(e)
    }
}

/// What an applied edit did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    /// One line for humans and the audit log.
    pub summary: String,
    /// Further lines to show (import mappings, notes).
    pub report: Vec<String>,
    /// The audit record's sequence number; `None` when the edit changed
    /// nothing (and nothing was written or recorded).
    pub recorded: Option<u64>,
}

/// Why an edit was not made (or, for [`StoreError::Unrecorded`], was made
/// and could not be undone).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// There is no policy file at the path.
    #[error("no policy file at `{}`", .0.display())]
    NoPolicy(PathBuf),
    /// The policy could not be opened, locked, read or written.
    #[error("cannot {} the policy `{}`: {}; nothing was changed", .0, .1.display(), .2)]
    Io(&'static str, PathBuf, std::io::Error),
    /// The policy is not UTF-8.
    #[error("the policy `{}` is not valid UTF-8", .0.display())]
    NotUtf8(PathBuf),
    /// The audit log is damaged: the record could not be added.
    #[error("the audit log `{}` is damaged at line {}: {}; nothing was changed", .log.display(), .line, .message)]
    LogDamaged {
        /// The log.
        log: PathBuf,
        /// 1-based line of the first break.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// The audit log could not be read.
    #[error("cannot read the audit log `{}`: {}; nothing was changed", .0.display(), .1)]
    LogUnreadable(PathBuf, std::io::Error),
    /// The edit itself was refused or failed.
    #[error("{}", match .0 { Fail::Refused(e) => e.to_string(), Fail::Error(m, _) => m.clone() })]
    Edit(Fail),
    /// The record could not be made; the write was undone (`undo` is
    /// `None`) or undoing it failed too (`Some(error)`).
    #[error("{}", match .undo {
        None => format!("the change could not be recorded, so it was undone: {}", .error),
        Some(u) => format!("the change could not be recorded ({}) and undoing it failed ({u}): the policy `{}` holds the UNRECORDED change", .error, .policy.display()),
    })]
    Unrecorded {
        /// The policy.
        policy: PathBuf,
        /// Why the record failed.
        error: String,
        /// Why the undo failed, if it did.
        undo: Option<String>,
    },
}

impl StoreError {
    /// What to do about it.
    pub fn help(&self) -> &'static str {
        match self {
            StoreError::NoPolicy(_) => "create one first: `countersign policy init --id OWNER/REPO > FILE`",
            StoreError::Io(..) => "check the path and its permissions",
            StoreError::NotUtf8(_) => "check it with `countersign policy check`",
            StoreError::LogDamaged { .. } => "repair the log first (`countersign audit verify`); changes are not made while they cannot be recorded",
            StoreError::LogUnreadable(..) => "make the audit log readable and writable, or pass `--audit-log FILE`",
            StoreError::Edit(_) => "see the message above",
            StoreError::Unrecorded { undo: None, .. } => "make the audit log writable (and repair it if `countersign audit verify` reports damage), then try again",
            StoreError::Unrecorded { undo: Some(_), .. } => "restore the policy by hand, then fix the audit log",
        }
    }
}

/// Apply `edit` to the policy at `path` as one transaction recorded in the
/// audit log `log` as a `policy-change` by `actor` running `command`
/// (files the log creates get the modes `sharing` asks for).
/// `edit` gets the policy text and its directory and may create files
/// (certificates), listing them so they are removed if the change does
/// not happen.
///
/// # Errors
///
/// [`StoreError`]: nothing was changed, except for
/// [`StoreError::Unrecorded`] with a failed undo.
pub fn apply(
    path: &Path,
    log: &Path,
    sharing: audit::Sharing,
    actor: &str,
    command: &str,
    edit: impl FnOnce(&str, &Path, &mut Vec<PathBuf>) -> Result<Change, Fail>,
) -> Result<Applied, StoreError> {
    // Write through symlinks to the real file.
    let real = match fs::canonicalize(path) {
        Ok(p) => p,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(StoreError::NoPolicy(path.to_path_buf()))
        }
        Err(e) => return Err(StoreError::Io("open", path.to_path_buf(), e)),
    };
    let mut lock = lock_policy(&real).map_err(|e| StoreError::Io("lock", path.to_path_buf(), e))?;
    let mut before = Vec::new();
    lock.read_to_end(&mut before)
        .map_err(|e| StoreError::Io("read", path.to_path_buf(), e))?;
    let perms = lock.metadata().ok().map(|m| m.permissions());
    let text =
        String::from_utf8(before.clone()).map_err(|_| StoreError::NotUtf8(path.to_path_buf()))?;
    // A damaged log would refuse the record after the policy changed.
    match fs::read(log) {
        Ok(bytes) => {
            if let Some(b) = audit::verify(&bytes).first_break {
                return Err(StoreError::LogDamaged {
                    log: log.to_path_buf(),
                    line: b.line,
                    message: b.message,
                });
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(StoreError::LogUnreadable(log.to_path_buf(), e)),
    }
    let dir = policy_dir(&real);
    let mut created = Vec::new();
    let cleanup = |created: &[PathBuf]| {
        for f in created {
            let _ = fs::remove_file(f);
        }
    };
    let change = match edit(&text, &dir, &mut created) {
        Ok(c) => c,
        Err(f) => {
            cleanup(&created);
            return Err(StoreError::Edit(f));
        }
    };
    if change.text == text {
        cleanup(&created);
        return Ok(Applied {
            summary: change.summary,
            report: change.report,
            recorded: None,
        });
    }
    let after = change.text.as_bytes();
    if let Err(e) = write_atomic(&real, after, perms.clone()) {
        cleanup(&created);
        return Err(StoreError::Io("write", path.to_path_buf(), e));
    }
    let fields = serde_json::json!({
        "actor": actor,
        "command": command,
        "change": change.summary,
        "policy": real.display().to_string(),
        "before": audit::digest(&before),
        "after": audit::digest(after),
    });
    match audit::append_shared(log, "policy-change", fields, time::now(), sharing) {
        Ok(appended) => {
            drop(lock);
            let seq = appended.seq;
            Ok(Applied {
                summary: change.summary,
                report: change.report,
                recorded: Some(seq),
            })
        }
        Err(e) => {
            let undone = write_atomic(&real, &before, perms);
            cleanup(&created);
            drop(lock);
            Err(StoreError::Unrecorded {
                policy: path.to_path_buf(),
                error: e.to_string(),
                undo: undone.err().map(|u| u.to_string()),
            })
        }
    }
}

pub fn policy_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Open and exclusively lock the policy file; retry if it was replaced
/// (renamed over) while we waited for the lock.
///
/// # Errors
///
/// The I/O error, or one saying the file keeps being replaced.
pub fn lock_policy(path: &Path) -> std::io::Result<File> {
    for _ in 0..20 {
        let file = File::open(path)?;
        file.lock()?;
        if same_file(&file, path)? {
            return Ok(file);
        }
    }
    Err(std::io::Error::other(
        "the policy file keeps being replaced; try again",
    ))
}

#[cfg(unix)]
fn same_file(file: &File, path: &Path) -> std::io::Result<bool> {
    use std::os::unix::fs::MetadataExt;
    let a = file.metadata()?;
    let b = fs::metadata(path)?;
    Ok(a.dev() == b.dev() && a.ino() == b.ino())
}

#[cfg(not(unix))]
fn same_file(_file: &File, _path: &Path) -> std::io::Result<bool> {
    Ok(true)
}

/// Write `bytes` to `path` atomically: a temp file in the same directory,
/// fsync, rename over `path`, fsync the directory.
///
/// # Errors
///
/// The I/O error; the original file is then untouched.
pub fn write_atomic(
    path: &Path,
    bytes: &[u8],
    perms: Option<fs::Permissions>,
) -> std::io::Result<()> {
    let dir = policy_dir(path);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "policy".into());
    let mut attempt = 0;
    let (tmp, mut file) = loop {
        let tmp = dir.join(format!(".{name}.tmp-{}-{attempt}", std::process::id()));
        match OpenOptions::new().write(true).create_new(true).open(&tmp) {
            Ok(f) => break (tmp, f),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && attempt < 100 => {
                attempt += 1
            }
            Err(e) => return Err(e),
        }
    };
    let result = (|| {
        file.write_all(bytes)?;
        if let Some(p) = perms {
            fs::set_permissions(&tmp, p)?;
        }
        file.sync_all()?;
        drop(file);
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
        return result;
    }
    if let Ok(d) = File::open(&dir) {
        let _ = d.sync_all();
    }
    Ok(())
}
