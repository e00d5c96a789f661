//! Session cost and priority: the anti-DoS measure that keeps one greedy connection from
//! slowing down everybody else.
//!
//! Every connection (a *session*) accrues **cost**: one unit per [`BYTES_PER_UNIT`] bytes it
//! sends us (as ElectrumX charges bandwidth), plus [`UNITS_PER_BAN_POINT`] units per point of
//! ban score its misbehaviour earns. Cost decays exponentially with a half-life of
//! [`HALF_LIFE`], so a burst is forgiven and only a sustained excess accumulates.
//!
//! Sessions of one network group ([`NetAddr::group`]: an IPv4 /16, an IPv6 /32, ...) are
//! likely one operator, so each member is also charged [`GROUP_SHARE`] of what the other
//! members cost ([`group_shares`]): a flood split over many connections from one /16 slows all
//! of them down.
//!
//! What the cost does, with the effective cost being the session's own plus its group share:
//! - **priority** ([`Limits::priority`]): 1 for a session that costs nothing, one more per tenth
//!   of the soft limit; shown to operators;
//! - **delay** ([`Limits::delay`]): past the soft limit (ElectrumX: 1,000) each received
//!   message waits before it is handled, longer the costlier the session and the larger the
//!   message. The connection task of a delayed session stops reading meanwhile, so its backlog
//!   stays in its own socket and cheaper sessions' messages are handled first;
//! - **disconnection** ([`Limits::exceeded`]): at the hard limit (ElectrumX: 10,000) of its
//!   *own* cost, the session is closed. The group share only delays: a well-behaved host behind
//!   the same NAT as a flooder is slowed, never cut off.
//!
//! The delay grows to [`DELAY_BASE`] plus [`DELAY_PER_UNIT`] per unit of the message at the
//! hard limit, holding a session there to at most 500 units (2.5 MB) per second and 20
//! messages per second. Decay forgives
//! `cost * ln 2 / HALF_LIFE` per second, about 116 units per second at the hard limit, so a
//! session that keeps sending faster than that is disconnected within seconds, whatever its
//! message sizes, while one that slows down below it settles under the limit.
//!
//! Everything here is a plain value type driven with literal [`Time`]s.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::addr::{Host, NetAddr, NetGroup};
use crate::time::Time;

/// Bytes that cost one unit. ElectrumX: `bw_cost_per_byte` (1 / 5,000).
pub const BYTES_PER_UNIT: f64 = 5_000.0;

/// Cost past which a session's messages are delayed. ElectrumX: `cost_soft_limit` (1,000).
pub const SOFT_LIMIT: f64 = 1_000.0;

/// Cost at which a session is disconnected. ElectrumX: `cost_hard_limit` (10,000).
pub const HARD_LIMIT: f64 = 10_000.0;

/// Time for a cost to fall to half. btcd: the half-life of the decaying part of its dynamic
/// ban score (`connmgr.Halflife`, 60 s), the same idea applied to misbehaviour.
pub const HALF_LIFE: Duration = Duration::from_secs(60);

/// Cost per point of ban score. Ten, so that Bitcoin Core's discouragement threshold of 100
/// points (`DISCOURAGEMENT_THRESHOLD`) is exactly the soft limit: a peer that misbehaves that
/// much is slowed down until the pool's ban manager decides about it.
pub const UNITS_PER_BAN_POINT: f64 = 10.0;

/// Fraction of the other members' cost charged to each member of a network group. Half: enough
/// that splitting a flood over many connections of one group does not escape the limits,
/// little enough that one member's flood leaves its neighbours well below its own cost.
pub const GROUP_SHARE: f64 = 0.5;

/// Delay per unit of a message's size at the hard limit; scaled down linearly to zero at the
/// soft limit. 2 ms per 5,000 bytes holds a session at the hard limit to 2.5 MB/s, above what
/// decay forgives there (so a sustained flood is cut off) and far above what a well-behaved
/// peer sends (block and transaction relay average kilobytes per second).
pub const DELAY_PER_UNIT: Duration = Duration::from_millis(2);

/// Delay of any message at the hard limit, whatever its size: a session that costly gets at
/// most 20 messages a second handled, so a flood of tiny messages (costly in handling, not in
/// bandwidth) is throttled as well, and even a `ping` of a costly session waits visibly.
pub const DELAY_BASE: Duration = Duration::from_millis(50);

/// The thresholds of the cost model. [`Default`] follows ElectrumX.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Limits {
    /// See [`SOFT_LIMIT`].
    pub soft: f64,
    /// See [`HARD_LIMIT`]. `f64::INFINITY` never disconnects.
    pub hard: f64,
    /// See [`BYTES_PER_UNIT`].
    pub bytes_per_unit: f64,
    /// See [`HALF_LIFE`].
    pub half_life: Duration,
    /// See [`UNITS_PER_BAN_POINT`].
    pub units_per_ban_point: f64,
    /// See [`GROUP_SHARE`].
    pub group_share: f64,
    /// See [`DELAY_PER_UNIT`].
    pub delay_per_unit: Duration,
    /// See [`DELAY_BASE`].
    pub delay_base: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            soft: SOFT_LIMIT,
            hard: HARD_LIMIT,
            bytes_per_unit: BYTES_PER_UNIT,
            half_life: HALF_LIFE,
            units_per_ban_point: UNITS_PER_BAN_POINT,
            group_share: GROUP_SHARE,
            delay_per_unit: DELAY_PER_UNIT,
            delay_base: DELAY_BASE,
        }
    }
}

impl Limits {
    /// No delays, no disconnection: cost is still measured and shown.
    pub fn unlimited() -> Limits {
        Limits {
            soft: f64::INFINITY,
            hard: f64::INFINITY,
            ..Limits::default()
        }
    }

    /// The priority of a session of effective cost `cost`: 1 at no cost, one more per tenth of
    /// the soft limit (so 11 at the soft limit, 101 at the hard limit with the defaults).
    pub fn priority(&self, cost: f64) -> u32 {
        // NaN compares false, so it lands here as well.
        let costly = cost > 0.0;
        if !costly || !self.soft.is_finite() || self.soft <= 0.0 {
            return 1;
        }
        // Saturating float-to-int conversion: an absurd cost is the worst priority.
        1u32.saturating_add((cost * 10.0 / self.soft) as u32)
    }

    /// How long a message of `bytes` bytes from a session of effective cost `cost` waits
    /// before it is handled: nothing up to the soft limit, then growing linearly with the cost
    /// to `delay_base + delay_per_unit * units(bytes)` at the hard limit (and no further).
    pub fn delay(&self, cost: f64, bytes: usize) -> Duration {
        let over_soft = cost > self.soft;
        if !over_soft {
            return Duration::ZERO;
        }
        let range = self.hard - self.soft;
        let fraction = if range.is_finite() && range > 0.0 {
            ((cost - self.soft) / range).min(1.0)
        } else {
            0.0
        };
        let full = self.delay_base.as_secs_f64()
            + self.delay_per_unit.as_secs_f64() * (bytes as f64 / self.bytes_per_unit);
        Duration::from_secs_f64(full * fraction)
    }

    /// Whether a session's own cost has reached the hard limit: it must be disconnected.
    pub fn exceeded(&self, own_cost: f64) -> bool {
        own_cost >= self.hard
    }

    /// The cost of `bytes` bytes.
    pub fn units_of_bytes(&self, bytes: usize) -> f64 {
        bytes as f64 / self.bytes_per_unit
    }

    /// The cost of `points` points of ban score.
    pub fn units_of_misbehaviour(&self, points: u32) -> f64 {
        f64::from(points) * self.units_per_ban_point
    }
}

/// One session's own cost, decaying over time.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Cost {
    value: f64,
    at: Time,
}

impl Cost {
    /// A session that has cost nothing yet.
    pub fn new(now: Time) -> Cost {
        Cost {
            value: 0.0,
            at: now,
        }
    }

    /// A cost of `value` as of `at` (as published by one task and read by another).
    pub fn from_parts(value: f64, at: Time) -> Cost {
        Cost {
            value: if value.is_finite() {
                value.max(0.0)
            } else {
                0.0
            },
            at,
        }
    }

    /// The cost as last updated, and when.
    pub fn parts(&self) -> (f64, Time) {
        (self.value, self.at)
    }

    /// The cost decayed to `now` (a `now` before the last update is taken as that update).
    pub fn at(&self, now: Time, half_life: Duration) -> f64 {
        decay(self.value, now.since(self.at), half_life)
    }

    /// Adds `units` at `now`, after decaying what was there; returns the new cost.
    pub fn charge(&mut self, now: Time, units: f64, half_life: Duration) -> f64 {
        let now = now.max(self.at);
        self.value = self.at(now, half_life) + units.max(0.0);
        self.at = now;
        self.value
    }
}

/// `value` after `elapsed` of exponential decay with half-life `half_life`.
pub fn decay(value: f64, elapsed: Duration, half_life: Duration) -> f64 {
    if half_life.is_zero() {
        return 0.0;
    }
    value * (-(elapsed.as_secs_f64() / half_life.as_secs_f64()) * std::f64::consts::LN_2).exp()
}

/// What each session is charged for its group: `share` of the sum of the other members' own
/// costs. `sessions` is `(key, group, own cost)`; the result has one entry per key.
pub fn group_shares<K: Ord + Copy>(
    sessions: &[(K, NetGroup, f64)],
    share: f64,
) -> BTreeMap<K, f64> {
    let mut totals: BTreeMap<NetGroup, f64> = BTreeMap::new();
    for (_, group, cost) in sessions {
        *totals.entry(*group).or_default() += cost;
    }
    sessions
        .iter()
        .map(|(key, group, cost)| {
            let others = (totals[group] - cost).max(0.0);
            (*key, others * share)
        })
        .collect()
}

/// The network group of `addr` as operators read it: `a.b.0.0/16` for IPv4, `x:y::/32` for
/// IPv6, the whole address for loopback ones (each a group of its own), `unroutable` for the
/// other local addresses, and the network with the first hex digit of the key for Tor, I2P and
/// CJDNS (`onion:3`). Two addresses have the same label exactly when they have the same
/// [`NetAddr::group`].
pub fn group_label(addr: &NetAddr) -> String {
    match addr.host {
        Host::Ipv4(ip) if ip.is_loopback() => ip.to_string(),
        Host::Ipv6(ip) if ip.is_loopback() => ip.to_string(),
        _ if !addr.is_routable() => "unroutable".to_string(),
        Host::Ipv4(ip) => {
            let o = ip.octets();
            format!("{}.{}.0.0/16", o[0], o[1])
        }
        Host::Ipv6(ip) => {
            let s = ip.segments();
            format!("{:x}:{:x}::/32", s[0], s[1])
        }
        Host::TorV3(k) => format!("onion:{:x}", k[0] >> 4),
        Host::I2p(k) => format!("i2p:{:x}", k[0] >> 4),
        Host::Cjdns(ip) => format!("cjdns:{:x}", ip.octets()[1] >> 4),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: Time = Time::from_secs(1_700_000_000);

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    fn addr(s: &str) -> NetAddr {
        s.parse().unwrap()
    }

    #[test]
    fn bytes_cost_one_unit_per_5000() {
        let l = Limits::default();
        let mut c = Cost::new(T0);
        assert_eq!(c.charge(T0, l.units_of_bytes(5_000), l.half_life), 1.0);
        assert_eq!(
            c.charge(T0, l.units_of_bytes(4_000_000), l.half_life),
            801.0
        );
        assert_eq!(l.units_of_misbehaviour(100), 1_000.0);
    }

    #[test]
    fn cost_halves_every_half_life() {
        let l = Limits::default();
        let mut c = Cost::new(T0);
        c.charge(T0, 1_000.0, l.half_life);
        assert!((c.at(T0 + secs(60), l.half_life) - 500.0).abs() < 1e-9);
        assert!((c.at(T0 + secs(120), l.half_life) - 250.0).abs() < 1e-9);
        // Charging later decays the old cost first.
        let after = c.charge(T0 + secs(60), 100.0, l.half_life);
        assert!((after - 600.0).abs() < 1e-9);
        // A clock step backwards neither decays nor grows the cost.
        assert!((c.at(T0, l.half_life) - 600.0).abs() < 1e-9);
        assert_eq!(decay(10.0, secs(1), Duration::ZERO), 0.0);
    }

    #[test]
    fn from_parts_rejects_garbage() {
        assert_eq!(Cost::from_parts(f64::NAN, T0).parts(), (0.0, T0));
        assert_eq!(Cost::from_parts(-5.0, T0).parts(), (0.0, T0));
        assert_eq!(Cost::from_parts(f64::INFINITY, T0).parts(), (0.0, T0));
        assert_eq!(Cost::from_parts(7.5, T0).parts(), (7.5, T0));
    }

    #[test]
    fn priority_rises_by_one_per_tenth_of_the_soft_limit() {
        let l = Limits::default();
        assert_eq!(l.priority(0.0), 1);
        assert_eq!(l.priority(99.9), 1);
        assert_eq!(l.priority(100.0), 2);
        assert_eq!(l.priority(1_000.0), 11);
        assert_eq!(l.priority(10_000.0), 101);
        assert_eq!(l.priority(f64::NAN), 1);
        assert_eq!(l.priority(f64::INFINITY), u32::MAX);
        assert_eq!(Limits::unlimited().priority(1e9), 1);
    }

    #[test]
    fn delay_starts_at_the_soft_limit_and_grows_with_cost_and_size() {
        let l = Limits::default();
        assert_eq!(l.delay(1_000.0, 4_000_000), Duration::ZERO);
        assert_eq!(l.delay(500.0, 4_000_000), Duration::ZERO);
        // Halfway between the limits: half of (50 ms + 2 ms per 5,000 bytes).
        let half = l.delay(5_500.0, 50_000);
        assert_eq!(half.as_micros(), 35_000);
        let full = l.delay(10_000.0, 50_000);
        assert_eq!(full.as_micros(), 70_000);
        // Capped at the hard limit's delay.
        assert_eq!(l.delay(50_000.0, 50_000), full);
        assert!(l.delay(9_000.0, 24) > l.delay(2_000.0, 24));
        assert!(l.delay(2_000.0, 24) > Duration::ZERO);
        assert_eq!(Limits::unlimited().delay(1e12, 1_000), Duration::ZERO);
    }

    #[test]
    fn hard_limit_is_on_own_cost() {
        let l = Limits::default();
        assert!(!l.exceeded(9_999.9));
        assert!(l.exceeded(10_000.0));
        assert!(!Limits::unlimited().exceeded(1e300));
    }

    #[test]
    fn a_sustained_flood_reaches_the_hard_limit_a_trickle_does_not() {
        // Drive the model as the connection task does: charge a message, wait its delay.
        fn run(l: &Limits, bytes: usize, gap: Duration, for_secs: u64) -> Option<Duration> {
            let mut now = T0;
            let mut c = Cost::new(now);
            while now.since(T0) < secs(for_secs) {
                let cost = c.charge(now, l.units_of_bytes(bytes), l.half_life);
                if l.exceeded(cost) {
                    return Some(now.since(T0));
                }
                now = now + l.delay(cost, bytes) + gap;
            }
            None
        }
        let l = Limits::default();
        // A 1 MB message back to back: cut off within seconds, delayed on the way.
        let cut = run(&l, 1_000_000, Duration::ZERO, 120).expect("flood cut off");
        assert!(
            cut > Duration::from_millis(500) && cut < secs(30),
            "{cut:?}"
        );
        // Small messages back to back are held to a few a second instead: throttled, not
        // cut off, and well past the soft limit.
        assert_eq!(run(&l, 1_000, Duration::from_micros(1), 600), None);
        let mut c = Cost::new(T0);
        let mut now = T0;
        let mut handled = 0u32;
        while now.since(T0) < secs(600) {
            let cost = c.charge(now, l.units_of_bytes(1_000), l.half_life);
            now = now + l.delay(cost, 1_000) + Duration::from_micros(1);
            handled += 1;
        }
        let last_minute = c.at(now, l.half_life);
        assert!(
            last_minute > l.soft && last_minute < l.hard,
            "{last_minute}"
        );
        assert!(handled < 600 * 1_000, "{handled}");
        // A 4 MB block every 10 s (far above real relay): never near the limit.
        assert_eq!(run(&l, 4_000_000, secs(10), 600), None);
        // 100 kB/s of transactions: never.
        assert_eq!(run(&l, 1_000, Duration::from_millis(10), 600), None);
    }

    #[test]
    fn group_members_share_each_others_cost() {
        let g1 = addr("1.2.3.4:8333").group();
        let g2 = addr("9.9.9.9:8333").group();
        let shares = group_shares(&[(1, g1, 100.0), (2, g1, 300.0), (3, g2, 1_000.0)], 0.5);
        assert_eq!(shares[&1], 150.0);
        assert_eq!(shares[&2], 50.0);
        assert_eq!(shares[&3], 0.0);
        assert!(group_shares::<u32>(&[], 0.5).is_empty());
    }

    #[test]
    fn labels_match_groups() {
        let addrs = [
            "1.2.3.4:8333",
            "1.2.200.1:8333",
            "1.3.3.4:8333",
            "127.0.0.1:1",
            "127.0.0.2:1",
            "10.0.0.1:1",
            "192.168.1.1:1",
            "[2001:4860::1]:8333",
            "[2001:4860:1::1]:8333",
            "[2001:4861::1]:8333",
            "[::1]:8333",
        ];
        for a in addrs {
            for b in addrs {
                let (a, b) = (addr(a), addr(b));
                assert_eq!(
                    group_label(&a) == group_label(&b),
                    a.group() == b.group(),
                    "{a} {b}"
                );
            }
        }
        assert_eq!(group_label(&addr("1.2.3.4:8333")), "1.2.0.0/16");
        assert_eq!(group_label(&addr("[2001:4860::1]:1")), "2001:4860::/32");
        assert_eq!(group_label(&addr("127.0.0.2:1")), "127.0.0.2");
        assert_eq!(group_label(&addr("10.0.0.1:1")), "unroutable");
    }
}
