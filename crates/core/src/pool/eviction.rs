//! Choosing an inbound peer to evict when a new one arrives and every inbound slot is taken.
//!
//! The rules follow Bitcoin Core's `SelectNodeToEvict`. An attacker who can open many
//! connections should not be able to push out the peers that are hard to imitate, so several
//! groups are protected in turn, each chosen by a property the attacker cannot cheaply fake:
//!
//! 1. peers with the noban permission and outbound peers are never candidates;
//! 2. the [`PROTECT_BY_NETGROUP`] peers whose network groups sort first under a keyed hash
//!    (an attacker cannot choose where its groups land without the node's secret);
//! 3. the [`PROTECT_BY_PING`] peers with the lowest minimum ping (close, well connected);
//! 4. the [`PROTECT_BY_TX`] peers that most recently sent us a new transaction, and the
//!    [`PROTECT_BY_BLOCK`] that most recently sent a new block (they do useful work);
//! 5. half of the rest by longest uptime, a quarter of them reserved for peers on networks that
//!    are slower to connect from (onion, I2P, CJDNS, loopback), as Core does since 22.0;
//!
//! then, among what remains, the network group with the most connections is found (ties go to
//! the group whose newest member connected most recently) and its youngest peer is evicted.
//! With nothing left after the protections, nobody is evicted and the new peer is refused.

use std::cmp::Reverse;
use std::collections::BTreeMap;

use crate::addr::{NetAddr, NetGroup, Network};
use crate::peer::PeerId;
use crate::time::Time;

/// Peers protected by keyed network-group order. Bitcoin Core: 4.
pub const PROTECT_BY_NETGROUP: usize = 4;
/// Peers protected by lowest minimum ping. Bitcoin Core: 8.
pub const PROTECT_BY_PING: usize = 8;
/// Peers protected by most recent novel transaction. Bitcoin Core: 4.
pub const PROTECT_BY_TX: usize = 4;
/// Peers protected by most recent novel block. Bitcoin Core: 4.
pub const PROTECT_BY_BLOCK: usize = 4;

/// What eviction needs to know about one inbound peer.
#[derive(Clone, Debug)]
pub struct Candidate {
    /// The peer.
    pub id: PeerId,
    /// Its address.
    pub addr: NetAddr,
    /// Its network group (by prefix, or by AS with an asmap).
    pub group: NetGroup,
    /// When it connected.
    pub connected: Time,
    /// Lowest ping round trip seen, in microseconds (`None`: never measured, sorts last).
    pub min_ping_micros: Option<u64>,
    /// Last time it sent us a transaction we did not have.
    pub last_tx: Option<Time>,
    /// Last time it sent us a block we did not have.
    pub last_block: Option<Time>,
    /// Keyed hash of its network group (computed by the owner with the node's secret).
    pub keyed_group: u64,
    /// Whether it has the noban permission (never evicted).
    pub noban: bool,
}

impl Candidate {
    fn disadvantaged(&self) -> bool {
        self.addr.is_loopback()
            || matches!(
                self.addr.network(),
                Network::Onion | Network::I2p | Network::Cjdns
            )
    }
}

/// Removes up to `n` candidates from `list`, those that sort first by `key`.
fn protect<K: Ord>(list: &mut Vec<Candidate>, n: usize, key: impl Fn(&Candidate) -> K) {
    list.sort_by_key(|c| key(c));
    let n = n.min(list.len());
    list.drain(..n);
}

/// Picks the inbound peer to evict, or `None` when every candidate is protected.
pub fn select_to_evict(candidates: &[Candidate]) -> Option<PeerId> {
    let mut list: Vec<Candidate> = candidates.iter().filter(|c| !c.noban).cloned().collect();
    // Tie-breaks use the peer id, so the choice never depends on input order.
    protect(&mut list, PROTECT_BY_NETGROUP, |c| (c.keyed_group, c.id));
    protect(&mut list, PROTECT_BY_PING, |c| {
        (c.min_ping_micros.unwrap_or(u64::MAX), c.id)
    });
    protect(&mut list, PROTECT_BY_TX, |c| (Reverse(c.last_tx), c.id));
    protect(&mut list, PROTECT_BY_BLOCK, |c| {
        (Reverse(c.last_block), c.id)
    });

    // Half of the rest by uptime; up to a quarter of the rest go to disadvantaged networks
    // first, so that they are not crowded out by faster-connecting clearnet peers.
    let half = list.len() / 2;
    let reserved = list.len() / 4;
    let mut disadvantaged: Vec<Candidate> =
        list.iter().filter(|c| c.disadvantaged()).cloned().collect();
    disadvantaged.sort_by_key(|c| (c.connected, c.id));
    let protected_first: Vec<PeerId> = disadvantaged.iter().take(reserved).map(|c| c.id).collect();
    list.retain(|c| !protected_first.contains(&c.id));
    protect(&mut list, half.saturating_sub(protected_first.len()), |c| {
        (c.connected, c.id)
    });

    if list.is_empty() {
        return None;
    }
    // The group with the most peers; ties go to the group with the youngest member.
    let mut groups: BTreeMap<NetGroup, (usize, Time)> = BTreeMap::new();
    for c in &list {
        let e = groups.entry(c.group).or_insert((0, c.connected));
        e.0 += 1;
        e.1 = e.1.max(c.connected);
    }
    let (group, _) = groups
        .iter()
        .max_by_key(|(g, (count, youngest))| (*count, *youngest, **g))?;
    list.iter()
        .filter(|c| c.group == *group)
        .max_by_key(|c| (c.connected, c.id))
        .map(|c| c.id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cand(id: u64, addr: &str, connected: u64) -> Candidate {
        let addr: NetAddr = addr.parse().unwrap();
        Candidate {
            id: PeerId(id),
            addr,
            group: addr.group(),
            connected: Time::from_secs(connected),
            min_ping_micros: Some(100_000 + id),
            last_tx: None,
            last_block: None,
            // Spread over ids; tests that care set it explicitly.
            keyed_group: id.wrapping_mul(0x9e37_79b9_7f4a_7c15),
            noban: false,
        }
    }

    #[test]
    fn evicts_youngest_of_the_largest_group() {
        // 30 peers from distinct /16s, and 10 from one /16 (an attacker's range).
        let mut c: Vec<Candidate> = (0..30)
            .map(|i| cand(i, &format!("{}.1.1.1:8333", 10 + i), 1000 + i))
            .collect();
        for i in 30..40 {
            c.push(cand(i, &format!("66.77.{}.1:8333", i), 2000 + i));
        }
        let chosen = select_to_evict(&c).unwrap();
        let chosen = c.iter().find(|x| x.id == chosen).unwrap();
        assert!(
            chosen.addr.to_string().starts_with("66.77."),
            "{:?}",
            chosen.addr
        );
        // Youngest of the group that is still unprotected.
        assert_eq!(chosen.id, PeerId(39));
    }

    #[test]
    fn the_largest_group_is_counted_by_the_groups_given() {
        // Forty peers from forty /16s: by prefix no group stands out.
        let mut c: Vec<Candidate> = (0..40)
            .map(|i| cand(i, &format!("{}.1.1.1:8333", 20 + i), 1000 + i))
            .collect();
        let by_prefix = select_to_evict(&c).unwrap();
        // An asmap puts ten of them in one AS (not the youngest: it would go anyway).
        for x in c.iter_mut().skip(25).take(10) {
            x.group = NetGroup::of_as(64_500);
        }
        let chosen = select_to_evict(&c).unwrap();
        assert_eq!(by_prefix, PeerId(39));
        assert!(
            (25..35).contains(&chosen.0),
            "evicted {chosen:?}, outside the big AS"
        );
    }

    #[test]
    fn protected_peers_are_never_evicted() {
        let mut c: Vec<Candidate> = (0..40)
            .map(|i| cand(i, &format!("66.77.{i}.1:8333"), 1000 + i))
            .collect();
        // The fastest pinger, the latest tx and block relayers, a noban peer.
        c[39].min_ping_micros = Some(1);
        c[38].last_tx = Some(Time::from_secs(5000));
        c[37].last_block = Some(Time::from_secs(5000));
        c[36].noban = true;
        let chosen = select_to_evict(&c).unwrap();
        assert!(
            ![PeerId(39), PeerId(38), PeerId(37), PeerId(36)].contains(&chosen),
            "{chosen:?}"
        );
        // All in one group: the youngest remaining is taken.
        assert_eq!(chosen, PeerId(35));
    }

    #[test]
    fn too_few_candidates_means_no_eviction() {
        let c: Vec<Candidate> = (0..4)
            .map(|i| cand(i, &format!("{}.1.1.1:8333", 10 + i), 1000))
            .collect();
        assert_eq!(select_to_evict(&c), None);
        assert_eq!(select_to_evict(&[]), None);
    }

    #[test]
    fn result_does_not_depend_on_input_order() {
        let c: Vec<Candidate> = (0..50)
            .map(|i| {
                cand(
                    i,
                    &format!("{}.{}.1.1:8333", 10 + i % 7, i % 3),
                    1000 + (i * 37) % 50,
                )
            })
            .collect();
        let first = select_to_evict(&c);
        let mut rev = c.clone();
        rev.reverse();
        assert_eq!(select_to_evict(&rev), first);
        assert!(first.is_some());
    }

    #[test]
    fn disadvantaged_networks_keep_a_share_of_uptime_protection() {
        // 40 clearnet peers, all older than 4 loopback peers. The first 24 go to the other
        // protections (ties broken by id); uptime then decides among the rest.
        let mut c: Vec<Candidate> = (0..40)
            .map(|i| cand(i, &format!("{}.1.1.1:8333", 10 + i), 100 + i))
            .collect();
        for i in 40..44 {
            c.push(cand(i, &format!("127.0.0.{i}:8333"), 5000 + i));
        }
        // Strip the other protections so only uptime decides.
        for x in &mut c {
            x.min_ping_micros = None;
            x.keyed_group = 0;
        }
        let chosen = select_to_evict(&c).unwrap();
        assert!(
            chosen.0 < 40,
            "a loopback peer was evicted despite the reserved share"
        );
        // Without the reserved share the youngest, a loopback peer, would have gone.
        assert_eq!(c.iter().max_by_key(|x| x.connected).unwrap().id, PeerId(43));
    }
}
