//! Runs every scenario at toy sizes, end to end: server processes, load generators, report.
//! Figures at these sizes mean nothing and targets are not checked; this only proves that the
//! suite runs. It has its own `main` because the server processes re-execute this binary.
//!
//! daemon-idle starts the daemon binary, `target/debug/peerpool`, which `cargo test
//! --workspace` builds and `cargo test -p peerpool-bench` does not: without it that scenario
//! is left out and the test says so.

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
    let daemon = peerpool_bench::daemon::locate(None);
    let (scenarios, expected): (Vec<Scenario>, Vec<Scenario>) = match &daemon {
        Ok(_) => (vec![Scenario::All], Scenario::EACH.to_vec()),
        Err(e) => {
            println!("smoke: daemon-idle left out: {e:#}");
            let rest: Vec<Scenario> = Scenario::EACH
                .into_iter()
                .filter(|s| *s != Scenario::DaemonIdle)
                .collect();
            (rest.clone(), rest)
        }
    };
    let mut ran = Vec::new();
    for scenario in scenarios {
        let report = match peerpool_bench::run_blocking(scenario, opts.clone()) {
            Ok(r) => r,
            Err(e) => {
                println!("smoke: {e:#}");
                println!("0 passed, 1 failed");
                std::process::exit(1);
            }
        };
        ran.extend(report.sections.iter().map(|s| s.scenario));
        println!("{report}");
    }
    if ran == expected {
        println!("1 passed, 0 failed");
    } else {
        println!("smoke: ran {ran:?}");
        println!("0 passed, 1 failed");
        std::process::exit(1);
    }
}
