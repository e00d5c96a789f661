//! The `peerpool` command: the daemon (`run`), a live demonstration network (`demo`) and the
//! benchmarks (`bench`).
#![forbid(unsafe_code)]

mod admin;
mod cli;
mod config;
mod demo;
mod logging;
mod node;
mod rpc;

use clap::Parser;

fn main() -> std::process::ExitCode {
    // `peerpool bench` re-executes this binary as the server under test; that child runs
    // here and exits before anything else starts.
    peerpool_bench::run_child_if_requested();
    let cli = cli::Cli::parse();
    match cli::execute(cli) {
        Ok(code) => std::process::ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
