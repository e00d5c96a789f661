//! Address book scenarios: eclipse attempts, feeler-tested evictions, persistence, a loopback
//! test network. Literal times, seeded generators.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::time::Duration;

use bitcoin::p2p::ServiceFlags;
use fastrand::Rng;
use peerpool_core::addr::{Host, NetAddr, Network};
use peerpool_core::pool::addrman::{
    AddrMan, AddrManError, AddrRecord, Config, GoodOutcome, Placement, Table,
    NEW_BUCKETS_PER_SOURCE_GROUP, TRIED_BUCKETS_PER_GROUP,
};
use peerpool_core::Time;

const START: Time = Time::from_secs(1_700_000_000);
const KEY: [u8; 16] = *b"scenario-key-16b";

/// A node's address book and its clock.
struct Node {
    book: AddrMan,
    now: Time,
    rng: Rng,
}

fn ip(a: u8, b: u8, c: u8, d: u8) -> NetAddr {
    NetAddr {
        host: Host::Ipv4(Ipv4Addr::new(a, b, c, d)),
        port: 8333,
    }
}

impl Node {
    fn new(config: Config) -> Node {
        Node {
            book: AddrMan::new(config, KEY, Rng::with_seed(42)),
            now: START,
            rng: Rng::with_seed(7),
        }
    }

    /// `from` sends us an `addr` message with `addrs`, seen ten minutes ago.
    fn hears(&mut self, from: NetAddr, addrs: &[NetAddr]) -> usize {
        let seen = self.now - Duration::from_secs(600);
        let recs: Vec<AddrRecord> = addrs
            .iter()
            .map(|&a| (a, ServiceFlags::NETWORK | ServiceFlags::WITNESS, seen))
            .collect();
        recs.chunks(1000)
            .map(|c| {
                self.book
                    .add(c, from, Duration::from_secs(2 * 60 * 60), self.now)
            })
            .sum()
    }

    fn connects_to(&mut self, addr: NetAddr) -> GoodOutcome {
        self.book.attempt(&addr, false, self.now);
        self.book.good(&addr, self.now)
    }

    fn fails_to_reach(&mut self, addr: NetAddr) {
        self.book.attempt(&addr, true, self.now);
    }

    fn elapse(&mut self, d: Duration) {
        self.now = self.now + d;
    }

    fn picks(&mut self, new_only: bool) -> NetAddr {
        self.book
            .select(new_only, &[], &mut self.rng, self.now)
            .expect("the book is not empty")
            .0
    }

    fn table_of(&self, addr: NetAddr) -> Option<Table> {
        self.book.info(&addr).map(|i| match i.placement {
            Placement::New { .. } => Table::New,
            Placement::Tried => Table::Tried,
        })
    }
}

#[test]
fn a_flood_from_one_netgroup_cannot_crowd_out_honest_gossip() {
    let mut node = Node::new(Config::default());
    // 1000 honest addresses, each told by one of 100 honest peers all over the Internet.
    let honest: Vec<NetAddr> = (0..1000u32)
        .map(|i| ip(11 + (i % 200) as u8, (i / 200) as u8, 7, 7))
        .collect();
    for (i, chunk) in honest.chunks(10).enumerate() {
        node.hears(ip(150 + (i % 50) as u8, i as u8, 1, 1), chunk);
    }
    let before = node.book.size();

    // The attacker owns 203.0.0.0/16 and sends 50 000 addresses from 5000 /16s, from many of
    // its hosts, over an hour.
    let attacker_src = |i: u32| ip(203, 0, (i % 256) as u8, (i / 256) as u8);
    for i in 0..50u32 {
        let fake: Vec<NetAddr> = (0..1000u32)
            .map(|j| ip(100 + (j % 50) as u8, (i * 20 + j / 50) as u8, 9, 9))
            .collect();
        node.hears(attacker_src(i), &fake);
        node.elapse(Duration::from_secs(72));
    }

    // Attacker addresses are the ones ending in .9.9.
    let from_attacker = |a: &NetAddr| matches!(a.host, Host::Ipv4(v) if v.octets()[2..] == [9, 9]);
    let attacker_buckets: BTreeSet<usize> = node
        .book
        .slots(Table::New)
        .filter(|(_, _, info)| from_attacker(&info.addr))
        .map(|(bucket, _, _)| bucket)
        .collect();
    assert!(attacker_buckets.len() <= NEW_BUCKETS_PER_SOURCE_GROUP as usize);
    let honest_kept = honest
        .iter()
        .filter(|a| node.book.info(a).is_some())
        .count();
    assert!(
        honest_kept * 10 >= before * 9,
        "only {honest_kept} of {before} honest addresses survived"
    );

    // Most of what the node dials is still honest.
    let honest_picks = (0..1000)
        .filter(|_| !from_attacker(&node.picks(true)))
        .count();
    assert!(honest_picks > 700, "{honest_picks} of 1000 picks honest");
}

#[test]
fn addresses_of_one_netgroup_fill_at_most_eight_tried_buckets_and_evict_no_fresh_peer() {
    let mut node = Node::new(Config::default());
    let honest: Vec<NetAddr> = (0..400u32)
        .map(|i| ip(11 + (i % 200) as u8, (i / 200) as u8, 1, 2))
        .collect();
    for &a in &honest {
        node.hears(a, &[a]);
        node.connects_to(a);
    }
    let honest_tried = honest
        .iter()
        .filter(|&&a| node.table_of(a) == Some(Table::Tried))
        .count();

    // Later the node reaches 3000 attacker hosts, all in 203.7.0.0/16.
    node.elapse(Duration::from_secs(60));
    let evil: Vec<NetAddr> = (0..3000u32)
        .map(|i| ip(203, 7, (i / 250) as u8, (i % 250) as u8 + 1))
        .collect();
    for &a in &evil {
        node.hears(a, &[a]);
        node.connects_to(a);
    }
    node.elapse(Duration::from_secs(120));
    node.book.resolve_collisions(node.now);

    let evil_buckets: BTreeSet<usize> = node
        .book
        .slots(Table::Tried)
        .filter(|(_, _, i)| evil.contains(&i.addr))
        .map(|(b, _, _)| b)
        .collect();
    assert!(evil_buckets.len() <= TRIED_BUCKETS_PER_GROUP as usize);
    // Honest tried entries that succeeded minutes ago keep their slots against newcomers.
    let still = honest
        .iter()
        .filter(|&&a| node.table_of(a) == Some(Table::Tried))
        .count();
    assert_eq!(still, honest_tried);
    node.book.check().unwrap();
}

#[test]
fn a_feeler_decides_a_tried_collision() {
    let mut node = Node::new(Config::default());
    // Fill tried with one /16 until a newcomer collides.
    let mut incumbent_for = None;
    for i in 0..2000u32 {
        let a = ip(77, 1, (i / 250) as u8, (i % 250) as u8 + 1);
        node.hears(a, &[a]);
        if node.connects_to(a) == GoodOutcome::Collision {
            incumbent_for = Some(a);
            break;
        }
    }
    let newcomer = incumbent_for.expect("512 slots fill up");
    let (incumbent, _) = node
        .book
        .select_tried_collision(&mut Rng::with_seed(1))
        .expect("one collision waits");
    assert_eq!(node.table_of(incumbent), Some(Table::Tried));

    // Five hours later the feeler to the incumbent fails; a minute and a half after that the
    // newcomer takes the slot and the incumbent goes back to new.
    node.elapse(Duration::from_secs(5 * 3600));
    node.fails_to_reach(incumbent);
    node.elapse(Duration::from_secs(90));
    node.book.resolve_collisions(node.now);
    assert_eq!(node.table_of(newcomer), Some(Table::Tried));
    assert_eq!(node.table_of(incumbent), Some(Table::New));
    assert_eq!(node.book.tried_collisions().count(), 0);
    node.book.check().unwrap();
}

#[test]
fn a_loopback_test_network_needs_allow_local() {
    let daemons: Vec<NetAddr> = (1..=50u8)
        .map(|i| NetAddr {
            host: Host::Ipv4(Ipv4Addr::new(127, 0, 0, i)),
            port: 18444,
        })
        .collect();
    let mut strict = Node::new(Config::default());
    assert_eq!(strict.hears(daemons[0], &daemons), 0);

    let mut lab = Node::new(Config {
        allow_local: true,
        ..Config::default()
    });
    for &d in &daemons {
        lab.hears(d, &daemons);
    }
    assert_eq!(lab.book.size(), daemons.len());
    assert!(daemons.contains(&lab.picks(false)));
    assert_eq!(lab.book.network_counts(Network::Ipv4).new, 50);
    lab.connects_to(daemons[3]);
    assert_eq!(lab.book.network_counts(Network::Ipv4).tried, 1);
}

#[test]
fn the_book_survives_a_restart_and_refuses_damage() {
    let mut node = Node::new(Config::default());
    for i in 0..2000u32 {
        let a = ip(11 + (i % 200) as u8, (i / 200) as u8, 3, 3);
        node.hears(ip(150 + (i % 60) as u8, 1, 1, 1), &[a]);
        if i % 3 == 0 {
            node.connects_to(a);
        } else if i % 3 == 1 {
            node.fails_to_reach(a);
        }
    }
    let bytes = node.book.serialize();
    let loaded = AddrMan::deserialize(&bytes).expect("own output loads");
    assert_eq!(loaded, node.book);
    assert_eq!(loaded.counts(), node.book.counts());

    let mut damaged = bytes.clone();
    damaged[100] ^= 0x40;
    assert_eq!(
        AddrMan::deserialize(&damaged),
        Err(AddrManError::BadChecksum)
    );
    assert!(AddrMan::deserialize(&bytes[..bytes.len() / 2]).is_err());
    assert!(AddrMan::deserialize(b"not an address book").is_err());
}
