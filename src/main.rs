//! The `countersign` binary: parse arguments, run, exit with a typed code.
//! Everything else lives in the library and in `cli`.

mod cli;

fn main() {
    quiet_library_backtraces();
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
