//! The `countersign` binary: parse arguments, run, exit with a typed code.
//! Everything else lives in the library and in `cli`.

mod cli;

fn main() {
    let code = cli::run();
    std::process::exit(code.into());
}
