//! Opening a repository. Every part of countersign opens one here, so that
//! each answers questions about history from the commits themselves.
//!
//! libgit2 takes a commit's parents and time from the commit-graph file of
//! the repository's object directory (`objects/info/commit-graph`, which
//! `git gc` writes by default) without reading the commit: in its revwalk,
//! its merge bases and `graph_descendant_of`. Nothing checks that file
//! against the objects. Whoever can write the repository's files (an
//! operator: README, "Who can write the server's files"; on a clone, any
//! tool that wrote a graph) could make an unsigned commit vanish from `verify
//! --baseline` or `report`, or a rewritten ref-state log look as if it
//! followed the last entry the server wrote. So every repository opened
//! here drops its commit graph: libgit2 then reads each commit, whose id
//! it checks against the bytes.
//!
//! Dropping it is one call into libgit2 that safe Rust cannot make, and
//! this library forbids `unsafe`: the `countersign` binary does it,
//! through [`set_graph_dropper`], before anything is opened. Without a
//! dropper, a repository whose object directory has a commit graph is
//! refused (fail closed), so an embedder that forgets is told, not
//! misled. (The git children countersign runs get `-c
//! core.commitGraph=false` for the same reason: see `engine::merge`.)

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use git2::Repository;

/// Makes an opened repository's object database forget its commit graph.
pub type GraphDropper = fn(&Repository) -> Result<(), git2::Error>;

static DROPPER: OnceLock<GraphDropper> = OnceLock::new();

/// Install the function that drops a repository's commit graph (the
/// binary's, an FFI call). The first one installed stays.
pub fn set_graph_dropper(dropper: GraphDropper) {
    let _ = DROPPER.set(dropper);
}

/// [`Repository::open_from_env`], without the commit graph.
///
/// # Errors
///
/// libgit2's error when there is no repository or it cannot be opened;
/// one saying so when the commit graph cannot be dropped.
pub fn open_from_env() -> Result<Repository, git2::Error> {
    without_graph(Repository::open_from_env()?)
}

/// [`Repository::open`], without the commit graph.
///
/// # Errors
///
/// As [`open_from_env`].
pub fn open(path: &Path) -> Result<Repository, git2::Error> {
    without_graph(Repository::open(path)?)
}

fn without_graph(repo: Repository) -> Result<Repository, git2::Error> {
    if let Some(drop_graph) = DROPPER.get() {
        drop_graph(&repo)?;
        return Ok(repo);
    }
    if let Some(file) = graph_file(&repo) {
        return Err(git2::Error::from_str(&format!(
            "{} is a commit-graph file, which libgit2 would take parents from without reading the commits, and this program cannot tell libgit2 to ignore it; run the `countersign` binary",
            file.display()
        )));
    }
    Ok(repo)
}

/// A commit-graph file libgit2 could read for `repo`, if there is one.
/// libgit2 attaches the graph of the first object directory it adds: in a
/// push's quarantine that is the first of `GIT_ALTERNATE_OBJECT_DIRECTORIES`
/// (the repository's own objects), else `GIT_OBJECT_DIRECTORY` or the
/// repository's `objects`. All of them are looked at.
fn graph_file(repo: &Repository) -> Option<PathBuf> {
    graph_file_in(
        repo.path(),
        std::env::var_os("GIT_OBJECT_DIRECTORY").as_deref(),
        std::env::var_os("GIT_ALTERNATE_OBJECT_DIRECTORIES").as_deref(),
    )
}

fn graph_file_in(
    git_dir: &Path,
    objects: Option<&std::ffi::OsStr>,
    alternates: Option<&std::ffi::OsStr>,
) -> Option<PathBuf> {
    let mut dirs = vec![git_dir.join("objects")];
    dirs.extend(objects.map(PathBuf::from));
    if let Some(list) = alternates {
        // Split as git does (`:`); a quoted entry stays whole and is
        // looked at both ways.
        dirs.extend(std::env::split_paths(list));
        dirs.push(PathBuf::from(list));
    }
    dirs.into_iter()
        .map(|d| d.join("info").join("commit-graph"))
        .find(|f| f.symlink_metadata().is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Without a dropper (the library alone, as in unit tests), a
    /// repository with a commit graph is refused, one without opens.
    #[test]
    fn without_a_dropper_a_commit_graph_is_refused() {
        let dir = std::env::temp_dir().join(format!(
            "countersign-graph-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        let repo = Repository::init_bare(&dir).unwrap();
        drop(repo);
        assert!(open(&dir).is_ok());
        let info = dir.join("objects").join("info");
        std::fs::create_dir_all(&info).unwrap();
        std::fs::write(info.join("commit-graph"), b"CGPH").unwrap();
        let e = open(&dir).err().unwrap();
        assert!(e.message().contains("commit-graph"), "{}", e.message());
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// In a push's quarantine libgit2 takes the graph of the first
    /// alternate (the repository's own objects), not of
    /// `GIT_OBJECT_DIRECTORY`: a graph there is found too.
    #[test]
    fn a_graph_in_an_alternate_object_directory_is_found() {
        let dir = std::env::temp_dir().join(format!(
            "countersign-graph-alt-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        let git_dir = dir.join("repo.git");
        let quarantine = dir.join("incoming");
        let main = dir.join("main-objects");
        for d in [&git_dir, &quarantine, &main] {
            std::fs::create_dir_all(d.join("objects").join("info")).unwrap();
            std::fs::create_dir_all(d.join("info")).unwrap();
        }
        let alternates = std::env::join_paths([dir.join("other"), main.clone()]).unwrap();
        let find = || graph_file_in(&git_dir, Some(quarantine.as_os_str()), Some(&alternates));
        assert_eq!(find(), None);
        std::fs::write(main.join("info").join("commit-graph"), b"CGPH").unwrap();
        assert_eq!(find(), Some(main.join("info").join("commit-graph")));
        std::fs::remove_file(main.join("info").join("commit-graph")).unwrap();
        std::fs::write(quarantine.join("info").join("commit-graph"), b"CGPH").unwrap();
        assert_eq!(find(), Some(quarantine.join("info").join("commit-graph")));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
