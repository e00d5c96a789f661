//! The `peerpool` command: the daemon (`run`), a live demonstration network (`demo`) and the
//! benchmarks (`bench`).
#![forbid(unsafe_code)]

mod cli;
mod config;
mod demo;
mod logging;
mod node;

use clap::Parser;

fn main() -> std::process::ExitCode {
    // `peerpool bench` re-executes this binary as the server under test; that child runs
    // here and exits before anything else starts.
    peerpool_bench::run_child_if_requested();
    let cli = cli::Cli::parse();
    match cli::execute(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
