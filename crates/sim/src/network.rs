//! The simulated Internet: where nodes live and how long a segment takes between two of them.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::time::Duration;

use peerpool_core::addr::{Host, NetAddr};

/// The port every node listens on (mainnet's).
pub const PORT: u16 = 8333;

/// Latency of a node's connection to itself (through its own loopback).
const LOOPBACK_LATENCY: Duration = Duration::from_micros(100);

/// First octets that are routable in all of their /16s: the private, shared, loopback,
/// link-local, benchmarking, documentation, multicast and reserved blocks are left out so that
/// the address book takes every address with Bitcoin Core's rules.
fn routable_first_octet(o: u8) -> bool {
    !matches!(o, 0 | 10 | 100 | 127 | 169 | 172 | 192 | 198 | 203) && (1..224).contains(&o)
}

/// Draws `n` distinct routable addresses spread over `groups` distinct /16s, every group
/// holding at least one node while there are nodes enough.
pub fn assign_addresses(rng: &mut fastrand::Rng, n: usize, groups: usize) -> Vec<NetAddr> {
    let firsts: Vec<u8> = (1..=223u8).filter(|&o| routable_first_octet(o)).collect();
    let groups = groups.clamp(1, firsts.len() * 256);
    let mut prefixes: BTreeSet<(u8, u8)> = BTreeSet::new();
    let mut order: Vec<(u8, u8)> = Vec::with_capacity(groups);
    while order.len() < groups {
        let p = (firsts[rng.usize(..firsts.len())], rng.u8(..));
        if prefixes.insert(p) {
            order.push(p);
        }
    }
    let mut taken: BTreeSet<Ipv4Addr> = BTreeSet::new();
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        // The first `groups` nodes take one group each; the rest land anywhere.
        let (a, b) = if i < groups {
            order[i]
        } else {
            order[rng.usize(..groups)]
        };
        let ip = loop {
            let ip = Ipv4Addr::new(a, b, rng.u8(..), rng.u8(1..255));
            if taken.insert(ip) {
                break ip;
            }
        };
        out.push(NetAddr {
            host: Host::Ipv4(ip),
            port: PORT,
        });
    }
    out
}

/// One-way latency between two nodes: fixed per pair, uniform in `[min, max]`, derived from a
/// salt so that it costs no memory per pair.
pub fn link_latency(salt: u64, a: usize, b: usize, min: Duration, max: Duration) -> Duration {
    if a == b {
        return LOOPBACK_LATENCY;
    }
    let (lo, hi) = (a.min(b) as u64, a.max(b) as u64);
    let h = mix(salt ^ mix(lo.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ hi));
    let span = max.saturating_sub(min).as_micros() as u64;
    min + Duration::from_micros(if span == 0 { 0 } else { h % (span + 1) })
}

/// SplitMix64's finaliser: a cheap, well-spread 64-bit mix.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_distinct_routable_and_spread() {
        let mut rng = fastrand::Rng::with_seed(1);
        let addrs = assign_addresses(&mut rng, 600, 200);
        let hosts: BTreeSet<_> = addrs.iter().map(|a| a.host).collect();
        assert_eq!(hosts.len(), 600);
        assert!(addrs.iter().all(NetAddr::is_routable));
        let groups: BTreeSet<_> = addrs.iter().map(NetAddr::group).collect();
        assert_eq!(groups.len(), 200);
    }

    #[test]
    fn latency_is_symmetric_and_bounded() {
        let (min, max) = (Duration::from_millis(10), Duration::from_millis(200));
        for a in 0..50 {
            for b in 0..50 {
                let l = link_latency(7, a, b, min, max);
                assert_eq!(l, link_latency(7, b, a, min, max));
                if a != b {
                    assert!(l >= min && l <= max);
                }
            }
        }
    }
}
