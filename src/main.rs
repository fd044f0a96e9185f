//! The `countersign` binary: parse arguments, run, exit with a typed code.
//! Everything else lives in the library and in `cli`.

mod cli;

fn main() {
    quiet_library_backtraces();
    bound_libgit2_memory();
    countersign::repository::set_graph_dropper(drop_commit_graph);
    // libgit2's check that every object read hashes to its id stays on
    // (15% of a hook deciding known commits): without it, someone who can
    // write the object store but not move a protected ref unseen (a group
    // member; see the ref-state log) could store a signed commit's bytes
    // under an unsigned commit's id for the length of a push, and the
    // push and the verification cache would take the id as signed
    // (tests/it/hash_attack.rs).
    let code = cli::run();
    std::process::exit(code.into());
}

/// Turn off backtrace capture for errors made inside libraries. sequoia
/// makes `anyhow` errors on the normal path of checking a signature, and
/// each one captures a backtrace when `RUST_BACKTRACE` (common on servers
/// and CI) asks for it: OpenPGP verification was 1.9 times slower. Those
/// backtraces are never shown. Panics still print theirs.
///
/// std reads `RUST_LIB_BACKTRACE` once and keeps the answer, so it is set
/// here, before any thread exists, read, and removed again: the programs
/// countersign runs (git, a chained hook) get the environment it was
/// given. An explicit `RUST_LIB_BACKTRACE` is respected.
fn quiet_library_backtraces() {
    if std::env::var_os("RUST_LIB_BACKTRACE").is_none() {
        std::env::set_var("RUST_LIB_BACKTRACE", "0");
        let _ = std::backtrace::Backtrace::capture();
        std::env::remove_var("RUST_LIB_BACKTRACE");
    }
}

/// How much of a pack libgit2 maps at once, and in what pieces. Its
/// defaults (windows of 1 GiB, up to 8 GiB mapped) made a walk of a
/// million commits hold the whole pack (387 MB) in memory; with these,
/// older windows are unmapped as the walk goes on (1.9 GB → 0.96 GB at a
/// million commits, with the signer changes of the same work); at most
/// 64 MiB mapped rather than 128 took another 20-30 MB off a million
/// commits at no measured cost (the walk reads the pack front to back).
/// libgit2's object cache keeps its default: at 32 MiB its evictions cost
/// 60% more CPU over a million commits.
const MWINDOW_SIZE: usize = 32 << 20;
const MWINDOW_MAPPED_LIMIT: usize = 64 << 20;

// Declared in libgit2's `git2/odb.h` (1.9), which libgit2-sys builds and
// links but does not bind: `int git_odb_set_commit_graph(git_odb *odb,
// git_commit_graph *cgraph)`. It frees the odb's commit graph and puts
// `cgraph` in its place; with NULL, libgit2's revwalk, merge bases and
// `graph_descendant_of` read every commit instead (`commit_list.c`).
extern "C" {
    fn git_odb_set_commit_graph(
        odb: *mut std::ffi::c_void,
        cgraph: *mut std::ffi::c_void,
    ) -> std::ffi::c_int;
}

/// Make `repo` ignore its commit-graph file, which libgit2 trusts for
/// parents and times without reading the commits (see
/// `countersign::repository`). Installed before any repository is opened.
fn drop_commit_graph(repo: &git2::Repository) -> Result<(), git2::Error> {
    use git2::Binding;
    // Loads the odb with every alternate: the graph is attached then, and
    // only then (libgit2 attaches one while adding an object directory).
    let odb = repo.odb()?;
    // SAFETY: `odb.raw()` is a live `git_odb` (held by `odb` for the
    // call); the function takes the odb's own lock, frees the old graph
    // (nothing else holds it: nothing has walked this repository yet, and
    // libgit2 looks the graph up again under the lock on every use) and
    // accepts NULL.
    #[allow(unsafe_code)]
    let rc = unsafe { git_odb_set_commit_graph(odb.raw().cast(), std::ptr::null_mut()) };
    if rc < 0 {
        return Err(git2::Error::from_str(
            "libgit2 could not drop the repository's commit graph",
        ));
    }
    Ok(())
}

fn bound_libgit2_memory() {
    // SAFETY: libgit2's global options are written once, here, before any
    // repository is opened and before any thread exists, so nothing reads
    // them at the same time (the reason these setters are `unsafe`).
    #[allow(unsafe_code)]
    unsafe {
        let _ = git2::opts::set_mwindow_size(MWINDOW_SIZE);
        let _ = git2::opts::set_mwindow_mapped_limit(MWINDOW_MAPPED_LIMIT);
    }
}
