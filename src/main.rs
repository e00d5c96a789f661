//! The `peerpool` command: the daemon (`run`), a live demonstration network (`demo`) and the
//! clients of a running daemon (`rpc`, `admin`, `events`). The benchmarks have their own
//! binary, `peerpool-bench` (crates/bench), so the daemon does not carry them.
#![forbid(unsafe_code)]

mod admin;
mod cli;
mod config;
mod demo;
mod guard;
mod logging;
mod node;
mod rpc;

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = cli::Cli::parse();
    match cli::execute(cli) {
        Ok(code) => std::process::ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
