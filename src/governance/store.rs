//! Writing policy commits: a tree from a directory or from a policy file
//! and the certificates it names, and a policy tree written out to a
//! directory for editing.

use std::path::Path;

use git2::{FileMode, Oid, Repository};

use crate::governance::{MAX_FILE_BYTES, POLICY_FILE};
use crate::policy::keys::KeySource;
use crate::policy::Policy;

/// Why a policy tree could not be written or read out.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A file or directory could not be read or written.
    #[error("{0}: {1}")]
    Io(String, std::io::Error),
    /// git refused an operation.
    #[error("{0}: {1}")]
    Git(&'static str, String),
    /// Something in the directory cannot go into a policy tree.
    #[error("{0}")]
    Refused(String),
}

fn git(what: &'static str) -> impl Fn(git2::Error) -> StoreError {
    move |e| StoreError::Git(what, e.message().to_string())
}

/// A tree holding every regular file below `dir` (symbolic links and other
/// special files are refused; names starting with `.` are skipped), which
/// must contain `countersign.toml`.
///
/// # Errors
///
/// [`StoreError`] when a file cannot be read, is too large or is not a
/// regular file, or git cannot write an object.
pub fn tree_from_dir(repo: &Repository, dir: &Path) -> Result<Oid, StoreError> {
    if !dir.join(POLICY_FILE).is_file() {
        return Err(StoreError::Refused(format!(
            "`{}` holds no {POLICY_FILE}",
            dir.display()
        )));
    }
    write_dir(repo, dir, 0)
}

fn write_dir(repo: &Repository, dir: &Path, depth: usize) -> Result<Oid, StoreError> {
    if depth > super::MAX_PATH_DEPTH {
        return Err(StoreError::Refused(format!(
            "`{}` is nested too deeply",
            dir.display()
        )));
    }
    let io = |e| StoreError::Io(dir.display().to_string(), e);
    let mut builder = repo.treebuilder(None).map_err(git("cannot build a tree"))?;
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .map_err(io)?
        .collect::<Result<_, _>>()
        .map_err(io)?;
    entries.sort_by_key(std::fs::DirEntry::file_name);
    for entry in entries {
        let name = entry.file_name();
        let Some(name) = name.to_str() else {
            return Err(StoreError::Refused(format!(
                "`{}` is not a UTF-8 name",
                entry.path().display()
            )));
        };
        if name.starts_with('.') {
            continue;
        }
        let path = entry.path();
        let meta = std::fs::symlink_metadata(&path)
            .map_err(|e| StoreError::Io(path.display().to_string(), e))?;
        if meta.is_dir() {
            let id = write_dir(repo, &path, depth + 1)?;
            builder
                .insert(name, id, FileMode::Tree.into())
                .map_err(git("cannot build a tree"))?;
        } else if meta.is_file() {
            if meta.len() > MAX_FILE_BYTES as u64 {
                return Err(StoreError::Refused(format!(
                    "`{}` is larger than {MAX_FILE_BYTES} bytes",
                    path.display()
                )));
            }
            let bytes =
                std::fs::read(&path).map_err(|e| StoreError::Io(path.display().to_string(), e))?;
            let id = repo.blob(&bytes).map_err(git("cannot write a blob"))?;
            builder
                .insert(name, id, FileMode::Blob.into())
                .map_err(git("cannot build a tree"))?;
        } else {
            return Err(StoreError::Refused(format!(
                "`{}` is not a regular file or directory",
                path.display()
            )));
        }
    }
    builder.write().map_err(git("cannot write a tree"))
}

/// A tree for a policy file: the file as `countersign.toml` and every
/// certificate file it names, at the same relative path.
///
/// # Errors
///
/// [`StoreError`] when a named file is outside the policy's directory or
/// cannot be read.
pub fn tree_from_file(repo: &Repository, policy: &Policy, file: &Path) -> Result<Oid, StoreError> {
    let base = file.parent().unwrap_or(Path::new("."));
    let mut files: Vec<(String, Vec<u8>)> = Vec::new();
    let text = std::fs::read(file).map_err(|e| StoreError::Io(file.display().to_string(), e))?;
    files.push((POLICY_FILE.to_string(), text));
    for key in policy.keyring.keys() {
        if let KeySource::File(rel) = &key.source {
            if files.iter().any(|(p, _)| p == rel) {
                continue;
            }
            let parts: Vec<&str> = rel.split('/').collect();
            if parts
                .iter()
                .any(|p| p.is_empty() || *p == "." || *p == "..")
            {
                return Err(StoreError::Refused(format!(
                    "the certificate path `{rel}` must be a plain path below the policy's directory (no `..`, not absolute) to be moved into the policy ref"
                )));
            }
            let bytes = std::fs::read(base.join(rel))
                .map_err(|e| StoreError::Io(base.join(rel).display().to_string(), e))?;
            files.push((rel.clone(), bytes));
        }
    }
    write_files(repo, &files)
}

/// A tree of `(path, bytes)` files.
fn write_files(repo: &Repository, files: &[(String, Vec<u8>)]) -> Result<Oid, StoreError> {
    let mut builder = repo.treebuilder(None).map_err(git("cannot build a tree"))?;
    let mut dirs: std::collections::BTreeMap<String, Vec<(String, Vec<u8>)>> =
        std::collections::BTreeMap::new();
    for (path, bytes) in files {
        match path.split_once('/') {
            Some((dir, rest)) => dirs
                .entry(dir.to_string())
                .or_default()
                .push((rest.to_string(), bytes.clone())),
            None => {
                let id = repo.blob(bytes).map_err(git("cannot write a blob"))?;
                builder
                    .insert(path, id, FileMode::Blob.into())
                    .map_err(git("cannot build a tree"))?;
            }
        }
    }
    for (dir, inner) in dirs {
        let id = write_files(repo, &inner)?;
        builder
            .insert(&dir, id, FileMode::Tree.into())
            .map_err(git("cannot build a tree"))?;
    }
    builder.write().map_err(git("cannot write a tree"))
}

/// Write the policy of `commit` out to `dir` (created; it must not exist
/// or be empty): `countersign.toml` and the certificate files it names,
/// nothing else, each at its plain relative path (the policy must load).
///
/// # Errors
///
/// [`StoreError`] when `dir` is not empty, the policy does not load, or a
/// file cannot be written.
pub fn materialize(repo: &Repository, commit: Oid, dir: &Path) -> Result<(), StoreError> {
    if dir.exists()
        && std::fs::read_dir(dir)
            .map_err(|e| StoreError::Io(dir.display().to_string(), e))?
            .next()
            .is_some()
    {
        return Err(StoreError::Refused(format!(
            "`{}` is not empty; remove it or name another directory",
            dir.display()
        )));
    }
    let policy = super::load_at(repo, commit).map_err(|f| StoreError::Refused(f.message))?;
    let files = super::TreeFiles::of(repo, commit).map_err(|f| StoreError::Refused(f.message))?;
    for rel in super::named_files(&policy) {
        // Names were checked by the loader (plain relative paths).
        let bytes = files.file(&rel).map_err(StoreError::Refused)?;
        let path = dir.join(&rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| StoreError::Io(parent.display().to_string(), e))?;
        }
        std::fs::write(&path, bytes).map_err(|e| StoreError::Io(path.display().to_string(), e))?;
    }
    Ok(())
}
