//! Runs every scenario at toy sizes, end to end: server processes, load generators, report.
//! Figures at these sizes mean nothing and targets are not checked; this only proves that the
//! suite runs. It has its own `main` because the server processes re-execute this binary.

use std::time::Duration;

use peerpool_bench::{BenchOptions, Scenario};

fn main() {
    peerpool_bench::run_child_if_requested();
    let opts = BenchOptions {
        reps: 1,
        churn_duration: Duration::from_millis(300),
        churn_warmup: Duration::from_millis(100),
        churn_parallel: 4,
        idle_peers: 100,
        pings: 100,
        capacity_peers: 150,
        capacity_nofile: 250,
        overlimit_rate: 50,
        overlimit_duration: Duration::from_millis(300),
        small_messages: 5_000,
        large_messages: 2,
        large_size: 100_000,
        fanout_peers: 20,
        fanout_entries: 300,
        network_nodes: 10,
        network_target: 2,
        ..BenchOptions::default()
    };
    let report = match peerpool_bench::run_blocking(Scenario::All, opts) {
        Ok(r) => r,
        Err(e) => {
            println!("smoke: {e:#}");
            println!("0 passed, 1 failed");
            std::process::exit(1);
        }
    };
    let ran: Vec<Scenario> = report.sections.iter().map(|s| s.scenario).collect();
    println!("{report}");
    if ran == Scenario::EACH {
        println!("1 passed, 0 failed");
    } else {
        println!("smoke: ran {ran:?}");
        println!("0 passed, 1 failed");
        std::process::exit(1);
    }
}
