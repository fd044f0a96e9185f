//! The `countersign` binary: parse arguments, run, exit with a typed code.
//! Everything else lives in the library and in `cli`.

mod admin_cli;
mod cli;
mod demo;
mod report_cli;

fn main() {
    let code = cli::run();
    std::process::exit(code.into());
}
