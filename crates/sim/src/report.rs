//! Summaries of a run: how long nodes took to reach their outbound target, and the rest.

use std::fmt;
use std::time::Duration;

use crate::sim::Sim;

/// Percentiles of a set of durations.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Percentiles {
    /// Samples.
    pub count: usize,
    /// Median.
    pub p50: Duration,
    /// 90th percentile.
    pub p90: Duration,
    /// 99th percentile.
    pub p99: Duration,
    /// Largest.
    pub max: Duration,
}

impl Percentiles {
    /// Nearest-rank percentiles of `samples`; all zero when there are none.
    pub fn of(mut samples: Vec<Duration>) -> Percentiles {
        samples.sort();
        let count = samples.len();
        if count == 0 {
            return Percentiles::default();
        }
        let at = |p: f64| samples[((p * count as f64).ceil() as usize).clamp(1, count) - 1];
        Percentiles {
            count,
            p50: at(0.50),
            p90: at(0.90),
            p99: at(0.99),
            max: samples[count - 1],
        }
    }
}

impl fmt::Display for Percentiles {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = |d: Duration| d.as_secs_f64();
        write!(
            f,
            "n={} p50={:.1}s p90={:.1}s p99={:.1}s max={:.1}s",
            self.count,
            s(self.p50),
            s(self.p90),
            s(self.p99),
            s(self.max)
        )
    }
}

/// Time to reach the outbound target, per kind of start.
#[derive(Clone, Debug, Default)]
pub struct TargetTimes {
    /// First starts (book holding one bootstrap address) that reached the target.
    pub cold: Percentiles,
    /// Restarts (saved book) that reached the target.
    pub warm: Percentiles,
    /// Sessions that lasted at least `horizon` (or are still on and have) but never reached
    /// the target within it.
    pub missed: usize,
    /// Sessions that lasted at least `horizon`.
    pub eligible: usize,
}

/// Times to reach the target, from sessions of honest non-bootstrap nodes (misbehaving nodes
/// end up banned by most of the network and are not expected to reach it); a session counts
/// as a miss if it lasted `horizon` without reaching the target within `horizon`.
pub fn target_times(sim: &Sim, horizon: Duration) -> TargetTimes {
    let now = sim.now();
    let (mut cold, mut warm) = (Vec::new(), Vec::new());
    let (mut missed, mut eligible) = (0, 0);
    for n in (0..sim.node_count()).filter(|&n| !sim.is_bootstrap(n) && !sim.is_misbehaving(n)) {
        for s in sim.sessions(n) {
            let end = s.end.unwrap_or(now);
            let took = s.reached_target.map(|t| t.since(s.start));
            if let Some(d) = took {
                if s.cold {
                    cold.push(d);
                } else {
                    warm.push(d);
                }
            }
            if end.since(s.start) >= horizon {
                eligible += 1;
                if took.is_none_or_longer(horizon) {
                    missed += 1;
                }
            }
        }
    }
    TargetTimes {
        cold: Percentiles::of(cold),
        warm: Percentiles::of(warm),
        missed,
        eligible,
    }
}

trait LongerThan {
    fn is_none_or_longer(&self, d: Duration) -> bool;
}

impl LongerThan for Option<Duration> {
    fn is_none_or_longer(&self, d: Duration) -> bool {
        self.map_or(true, |x| x > d)
    }
}

/// A printable summary of a run.
pub fn summary(sim: &Sim, horizon: Duration) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let c = sim.config();
    let st = sim.stats();
    let online: Vec<usize> = (0..sim.node_count())
        .filter(|&n| sim.is_online(n))
        .collect();
    let target = c.target_outbound();
    let at_target = online
        .iter()
        .filter(|&&n| sim.ready_outbound(n) >= target)
        .count();
    let links = sim.links();
    let comps = sim.components();
    let times = target_times(sim, horizon);
    let _ = writeln!(
        out,
        "seed {} | {} nodes ({} bootstrap, {} misbehaving) over {} /16 groups | {:.0} s virtual",
        sim.seed(),
        sim.node_count(),
        c.seeds,
        c.misbehaving,
        c.groups,
        sim.elapsed().as_secs_f64()
    );
    let _ = writeln!(
        out,
        "time to reach the outbound target ({target}): cold start {}",
        times.cold
    );
    let _ = writeln!(
        out,
        "                                       restart    {}",
        times.warm
    );
    let _ = writeln!(
        out,
        "sessions of at least {:.0} s that missed the target within it: {} of {}",
        horizon.as_secs_f64(),
        times.missed,
        times.eligible
    );
    let _ = writeln!(
        out,
        "online now: {} | at target now: {} | links: {} | components: {} (largest {})",
        online.len(),
        at_target,
        links.len(),
        comps.len(),
        comps.first().map_or(0, Vec::len)
    );
    // Pairs of nodes joined by more than one link (each dialed the other, typically):
    // Bitcoin Core refuses a dial to an IP it already has a connection with.
    let mut pairs: Vec<(usize, usize)> = links
        .iter()
        .map(|l| (l.dialer.min(l.listener), l.dialer.max(l.listener)))
        .collect();
    pairs.sort_unstable();
    let total = pairs.len();
    pairs.dedup();
    let collisions: Vec<usize> = online
        .iter()
        .filter_map(|&n| sim.pool(n))
        .map(|p| p.addrman().tried_collisions().count())
        .collect();
    let _ = writeln!(
        out,
        "node pairs with more than one link: {} | addresses waiting in tried collisions: {} (most at one node {})",
        total - pairs.len(),
        collisions.iter().sum::<usize>(),
        collisions.iter().max().copied().unwrap_or(0)
    );
    let _ = writeln!(
        out,
        "dials {} (failed {}, self {}, self caught {}, by misbehaving nodes {}) | inbound refused {} (banned {}) | evictions {}",
        st.dials,
        st.dials_failed,
        st.self_dials,
        st.self_connections_caught,
        st.misbehaving_dials,
        st.inbound_refused,
        st.inbound_refused_banned,
        st.evictions
    );
    let _ = writeln!(
        out,
        "handshakes {} | messages {} ({} bytes, {} retransmitted) | misbehaviour reports {} | bans {}",
        st.handshakes, st.messages, st.bytes, st.retransmits, st.misbehaviours, st.bans
    );
    let kinds: Vec<String> = st
        .messages_by_kind
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    let _ = writeln!(out, "messages by command: {}", kinds.join(" "));
    let _ = writeln!(
        out,
        "departures {} | link failures {} | reseeds {} | events {} | invariant violations {} | trace {:016x}",
        st.departures,
        st.link_failures,
        st.reseeds,
        st.events,
        sim.violation_count(),
        sim.trace_hash()
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank() {
        let p = Percentiles::of((1..=100).map(Duration::from_secs).collect());
        assert_eq!(p.p50, Duration::from_secs(50));
        assert_eq!(p.p90, Duration::from_secs(90));
        assert_eq!(p.p99, Duration::from_secs(99));
        assert_eq!(p.max, Duration::from_secs(100));
        assert_eq!(Percentiles::of(Vec::new()).count, 0);
    }
}
