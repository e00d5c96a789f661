//! Misbehaving nodes are banned by the peers they misbehave towards, the bans hold (no dial
//! to, and no connection from, a banned address), and nobody honest is ever banned.

use std::time::Duration;

use peerpool_sim::report::summary;
use peerpool_sim::seed::seed_for;
use peerpool_sim::{Sim, SimConfig};

const MINUTE: Duration = Duration::from_secs(60);

#[test]
fn misbehaving_nodes_are_banned_and_stay_banned() {
    let seed = seed_for("misbehaving_nodes_are_banned_and_stay_banned");
    let mut config = SimConfig::new(150);
    config.seeds = 4;
    config.misbehaving = 15;
    let mut sim = Sim::new(config, seed);
    sim.run_until(6 * MINUTE);
    println!("{}", summary(&sim, 3 * MINUTE));
    // The invariants cover dials to banned addresses, inbound connections accepted from them
    // and bans of honest nodes.
    assert!(
        sim.violations().is_empty(),
        "{} invariant violations (seed {seed}):\n{}",
        sim.violation_count(),
        sim.violations().join("\n")
    );
    let now = sim.now();
    let banned_by = |bad: usize| {
        (0..sim.node_count())
            .filter(|&n| {
                sim.bans(n)
                    .iter()
                    .any(|(s, until)| now < *until && s.contains(&sim.addr(bad).host))
            })
            .count()
    };
    for bad in (0..sim.node_count()).filter(|&n| sim.is_misbehaving(n)) {
        let by = banned_by(bad);
        assert!(
            by >= 3,
            "misbehaving node {bad} banned by only {by} nodes (seed {seed})"
        );
    }
    // A banned node comes back knocking (it keeps dialing its book) and is turned away.
    assert!(sim.stats().inbound_refused > 0, "seed {seed}");
    // Whoever banned a node has no connection to it any more.
    for l in sim.links() {
        for (a, b) in [(l.dialer, l.listener), (l.listener, l.dialer)] {
            let banned = sim
                .bans(a)
                .iter()
                .any(|(s, until)| now < *until && s.contains(&sim.addr(b).host));
            assert!(
                !banned,
                "node {a} still linked to {b}, which it banned (seed {seed})"
            );
        }
    }
    // Honest nodes still reach their target.
    let target = sim.config().target_outbound();
    let short: Vec<usize> = (0..sim.node_count())
        .filter(|&n| !sim.is_misbehaving(n) && !sim.is_bootstrap(n))
        .filter(|&n| sim.ready_outbound(n) < target)
        .collect();
    assert!(
        short.is_empty(),
        "honest nodes below target (seed {seed}): {short:?}"
    );
}
