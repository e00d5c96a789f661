//! A seed replays its run exactly; another seed makes another run.

use std::time::Duration;

use peerpool_sim::seed::seed_for;
use peerpool_sim::{Churn, Partition, Sim, SimConfig, Stats};

const MINUTE: Duration = Duration::from_secs(60);

/// Everything at once, so that every source of randomness takes part.
fn config() -> SimConfig {
    let mut c = SimConfig::new(80);
    c.seeds = 4;
    c.churn = Some(Churn {
        mean_up: 8 * MINUTE,
        mean_down: MINUTE,
        crash_share: 0.5,
    });
    c.link_failure_mean = Some(10 * MINUTE);
    c.misbehaving = 5;
    c.loss = 0.05;
    c.partitions.push(Partition {
        side: (0..80).filter(|i| i % 3 == 0).collect(),
        from: 3 * MINUTE,
        until: 5 * MINUTE,
    });
    c
}

fn run(seed: u64) -> (u64, Stats) {
    let mut sim = Sim::new(config(), seed);
    sim.run_until(6 * MINUTE);
    assert!(
        sim.violations().is_empty(),
        "seed {seed}: {}",
        sim.violations().join("\n")
    );
    (sim.trace_hash(), sim.stats().clone())
}

#[test]
fn the_same_seed_replays_the_same_run() {
    let seed = seed_for("the_same_seed_replays_the_same_run");
    let other = seed.wrapping_add(1);
    // Three independent runs: on threads, so that they use the cores there are.
    let ((a, stats_a), (b, stats_b), (c, _)) = std::thread::scope(|s| {
        let first = s.spawn(|| run(seed));
        let second = s.spawn(|| run(seed));
        let third = run(other);
        let join = |h: std::thread::ScopedJoinHandle<'_, (u64, Stats)>| {
            h.join().unwrap_or_else(|e| std::panic::resume_unwind(e))
        };
        (join(first), join(second), third)
    });
    assert_eq!(a, b, "trace hashes differ for seed {seed}");
    assert_eq!(stats_a, stats_b);
    assert!(stats_a.departures > 0 && stats_a.bans > 0 && stats_a.link_failures > 0);
    assert_ne!(a, c, "seeds {seed} and {other} gave the same trace");
}
