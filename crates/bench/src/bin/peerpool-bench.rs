//! Stand-alone runner of the benchmark suite:
//! `peerpool-bench <scenario> [options]` (see `--help`). Exits 1 when a target is missed.

use clap::Parser;
use peerpool_bench::cli::BenchArgs;

#[derive(Parser, Debug)]
#[command(
    name = "peerpool-bench",
    about = "peerpool benchmarks against a minimal reference"
)]
struct Cli {
    #[command(flatten)]
    args: BenchArgs,
}

fn main() -> anyhow::Result<()> {
    // A re-executed server process runs here and exits.
    peerpool_bench::run_child_if_requested();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let report = peerpool_bench::run_blocking(cli.args.scenario, cli.args.options())?;
    println!("{report}");
    if !report.passed() {
        std::process::exit(1);
    }
    Ok(())
}
