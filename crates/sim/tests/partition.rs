//! A network split in two for 25 minutes: each side keeps to itself while the cut lasts,
//! and the two halves join up again once it heals.

use std::time::Duration;

use peerpool_sim::report::summary;
use peerpool_sim::seed::seed_for;
use peerpool_sim::{Churn, Partition, Sim, SimConfig};

const MINUTE: Duration = Duration::from_secs(60);

#[test]
fn a_partitioned_network_keeps_to_each_side_and_heals() {
    let seed = seed_for("a_partitioned_network_keeps_to_each_side_and_heals");
    let nodes = 150;
    let mut config = SimConfig::new(nodes);
    config.seeds = 8;
    config.churn = Some(Churn {
        mean_up: 20 * MINUTE,
        mean_down: 2 * MINUTE,
        crash_share: 0.5,
    });
    // Two fifths of the nodes, bootstrap nodes included (they are the first indices), on one
    // side; the rest, with the other bootstrap nodes, on the other. The cut outlasts the peer
    // machines' 2-minute ping interval plus their 20-minute ping timeout, so the connections
    // across it die of silence before it ends.
    let mut side: Vec<usize> = (0..4).collect();
    side.extend((8..nodes).filter(|i| i % 5 < 2));
    let (from, until) = (5 * MINUTE, 30 * MINUTE);
    config.partitions.push(Partition {
        side: side.clone(),
        from,
        until,
    });
    let target = config.target_outbound();
    let mut sim = Sim::new(config, seed);
    let on_side = |n: usize| side.binary_search(&n).is_ok();

    // Pieces of the network: components with at least one link (a node that came up moments
    // ago and has no peer yet is not a piece of its own).
    let pieces = |sim: &Sim| sim.components().iter().filter(|c| c.len() > 1).count();

    // Just before the cut the network is one piece.
    sim.run_until(from);
    let crossing = |sim: &Sim| {
        sim.links()
            .iter()
            .filter(|l| on_side(l.dialer) != on_side(l.listener))
            .count()
    };
    assert_eq!(pieces(&sim), 1, "seed {seed}");
    assert!(crossing(&sim) > 0);

    // Near its end, no connection crosses the cut, each side is connected within itself, and
    // the nodes that have been up a while are at their target with peers of their own side.
    sim.run_until(until - MINUTE);
    println!("before healing:\n{}", summary(&sim, 3 * MINUTE));
    assert_eq!(
        crossing(&sim),
        0,
        "connections across the partition (seed {seed})"
    );
    let comps = sim.components();
    for c in &comps {
        assert!(
            c.iter().all(|&n| on_side(n) == on_side(c[0])),
            "a component spans the partition (seed {seed})"
        );
    }
    // Under churn a node loses an outbound peer every few minutes and needs a few seconds
    // (more when its first picks lie across the cut and time out) to replace it, so at any
    // instant a few nodes are one or two short: what must hold is that their pools use every
    // slot (dialing the missing ones) and that nearly all are full.
    // Nodes that never reached the target before are left out: one that went down moments
    // after its first start may know no address but its bootstrap node, and if that one is
    // across the cut it has nobody to dial until the cut heals.
    let settled: Vec<usize> = (0..nodes)
        .filter(|&n| !sim.is_bootstrap(n) && sim.is_online(n))
        .filter(|&n| {
            let sessions = sim.sessions(n);
            sessions
                .last()
                .is_some_and(|s| sim.now().since(s.start) >= 3 * MINUTE)
                && sessions.iter().any(|s| s.reached_target.is_some())
        })
        .collect();
    for &n in &settled {
        let pool = sim.pool(n).expect("online");
        assert_eq!(
            pool.connman().outbound_count(),
            target,
            "node {n} leaves outbound slots unused during the partition (seed {seed})"
        );
        assert!(
            sim.ready_outbound(n) + 2 >= target,
            "node {n} has only {} outbound peers during the partition (seed {seed})",
            sim.ready_outbound(n)
        );
    }
    let full = settled
        .iter()
        .filter(|&&n| sim.ready_outbound(n) >= target)
        .count();
    assert!(
        full * 10 >= settled.len() * 8,
        "only {full} of {} settled nodes at their target during the partition (seed {seed})",
        settled.len()
    );
    // Each side is one piece (a node that came up moments ago may not be linked yet).
    for s in [true, false] {
        let holding: Vec<usize> = comps
            .iter()
            .enumerate()
            .filter(|(_, c)| c.iter().any(|&n| on_side(n) == s && settled.contains(&n)))
            .map(|(i, _)| i)
            .collect();
        assert_eq!(
            holding.len(),
            1,
            "the settled nodes of one side are split during the partition (seed {seed})"
        );
    }

    // After healing, connections cross the old boundary again and the graph is one piece.
    sim.run_until(until);
    let mut healed_at = None;
    for _ in 0..120 {
        sim.run_for(MINUTE / 6);
        if crossing(&sim) > 0 && pieces(&sim) == 1 {
            healed_at = Some(sim.now().since(peerpool_sim::EPOCH + until));
            break;
        }
    }
    println!("after healing:\n{}", summary(&sim, 3 * MINUTE));
    let healed_at = healed_at.unwrap_or_else(|| {
        panic!(
            "not healed 20 minutes after the partition ended: {} crossing links, {} pieces (seed {seed})",
            crossing(&sim),
            pieces(&sim)
        )
    });
    println!("healed within {healed_at:?} of the partition's end");
    assert!(
        sim.violations().is_empty(),
        "{} invariant violations (seed {seed}):\n{}",
        sim.violation_count(),
        sim.violations().join("\n")
    );
}
