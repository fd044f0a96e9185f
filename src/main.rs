//! The `countersign` binary: parse arguments, run, exit with a typed code.
//! Everything else lives in the library and in `cli`.

mod cli;

fn main() {
    quiet_library_backtraces();
    bound_libgit2_memory();
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
