//! Five hundred nodes, each starting from one bootstrap address, on a lossy network with churn,
//! broken links and misbehaving nodes: every node reaches its outbound target quickly, and
//! the pool's invariants hold at every step.

use std::time::Duration;

use peerpool_sim::report::{summary, target_times};
use peerpool_sim::seed::seed_for;
use peerpool_sim::{Churn, Sim, SimConfig};

/// A session of an honest node that lasts this long must have reached the target within it.
const BOUND: Duration = Duration::from_secs(150);

#[test]
fn five_hundred_nodes_reach_their_outbound_target() {
    let seed = seed_for("five_hundred_nodes_reach_their_outbound_target");
    let mut config = SimConfig::new(500);
    // Eight bootstrap nodes, each node told of one of them: about 62 newcomers per bootstrap
    // node, within its 116 inbound slots (with 4 the slots overflow and every newcomer evicts
    // the previous one, which slows the start down without changing the outcome).
    config.seeds = 8;
    config.churn = Some(Churn {
        mean_up: Duration::from_secs(30 * 60),
        mean_down: Duration::from_secs(120),
        crash_share: 0.5,
    });
    config.link_failure_mean = Some(Duration::from_secs(2 * 3600));
    config.misbehaving = 10;
    let target = config.target_outbound();
    let mut sim = Sim::new(config, seed);
    sim.run_until(Duration::from_secs(5 * 60));
    println!("{}", summary(&sim, BOUND));

    assert!(
        sim.violations().is_empty(),
        "{} invariant violations (seed {seed}):\n{}",
        sim.violation_count(),
        sim.violations().join("\n")
    );

    // Every honest session long enough reached the target within the bound.
    let mut late = Vec::new();
    for n in (0..sim.node_count()).filter(|&n| !sim.is_bootstrap(n) && !sim.is_misbehaving(n)) {
        for s in sim.sessions(n) {
            let lasted = s.end.unwrap_or(sim.now()).since(s.start);
            let took = s.reached_target.map(|t| t.since(s.start));
            if lasted >= BOUND && took.map_or(true, |d| d > BOUND) {
                late.push((n, s.clone()));
            }
        }
    }
    assert!(
        late.is_empty(),
        "sessions that missed the outbound target of {target} within {BOUND:?} (seed {seed}): {late:?}"
    );
    let times = target_times(&sim, BOUND);
    assert!(
        times.eligible > 400,
        "too few long sessions: {}",
        times.eligible
    );

    // The scenario did what it claims: churn, lost segments, broken links, misbehaviour.
    let st = sim.stats();
    assert!(st.departures > 20 && times.warm.count > 10, "churn: {st:?}");
    assert!(st.retransmits > 0 && st.dials_failed > 0 && st.link_failures > 0);
    assert!(st.bans > 0 && st.misbehaviours > 0);

    // No honest node is still linked to a node it banned, and every dial was answered.
    for l in sim.links() {
        for (a, b) in [(l.dialer, l.listener), (l.listener, l.dialer)] {
            let banned = sim
                .bans(a)
                .iter()
                .any(|(s, until)| sim.now() < *until && s.contains(&sim.addr(b).host));
            assert!(
                !banned,
                "node {a} still linked to {b}, which it banned (seed {seed})"
            );
        }
    }
}
