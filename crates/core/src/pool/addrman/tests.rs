//! Unit tests of the address book: literal times, seeded generators.

use std::collections::{BTreeSet, HashMap};
use std::net::Ipv4Addr;

use proptest::prelude::*;

use super::bucket::Bucketer;
use super::codec::reseal;
use super::*;
use crate::asmap::NetGroups;
use crate::gossip::MAX_ADDR_TO_SEND;
use crate::pool::relay::MAX_PCT_ADDR_TO_SEND;
use fastrand::Rng;

const KEY: [u8; 16] = [7; 16];
const NOW: Time = Time::from_secs(1_700_000_000);
const MIN: Duration = Duration::from_secs(60);
const HOUR: Duration = Duration::from_secs(3600);

fn book() -> AddrMan {
    AddrMan::new(Config::default(), KEY, Rng::with_seed(1))
}

fn book_with(config: Config) -> AddrMan {
    AddrMan::new(config, KEY, Rng::with_seed(1))
}

fn v4(a: u8, b: u8, c: u8, d: u8) -> NetAddr {
    NetAddr {
        host: Host::Ipv4(Ipv4Addr::new(a, b, c, d)),
        port: 8333,
    }
}

fn a(s: &str) -> NetAddr {
    s.parse().unwrap()
}

fn rec(addr: NetAddr, seen: Time) -> AddrRecord {
    (addr, ServiceFlags::NETWORK, seen)
}

/// Adds one address as seen an hour ago, announced by `source`.
fn add(b: &mut AddrMan, addr: NetAddr, source: NetAddr) -> usize {
    b.add(&[rec(addr, NOW - HOUR)], source, Duration::ZERO, NOW)
}

/// Two addresses of one /16 that want the same tried slot.
fn tried_twins(b: &AddrMan) -> (NetAddr, NetAddr) {
    let mut seen = HashMap::new();
    for i in 0..=u16::MAX {
        let x = v4(20, 30, (i >> 8) as u8, i as u8);
        if let Some(&y) = seen.get(&b.bucketer.tried_slot(&x)) {
            return (y, x);
        }
        seen.insert(b.bucketer.tried_slot(&x), x);
    }
    unreachable!("512 slots per /16 collide long before 65536 addresses")
}

#[test]
fn bucketing_is_deterministic_per_key_and_differs_across_keys() {
    let (k1, k1_again, k2) = (
        Bucketer::new(KEY, NetGroups::by_prefix()),
        Bucketer::new(KEY, NetGroups::by_prefix()),
        Bucketer::new([8; 16], NetGroups::by_prefix()),
    );
    let src = v4(1, 1, 1, 1);
    let mut differ = 0;
    for i in 0..200u8 {
        let x = v4(60, i, 3, 4);
        assert_eq!(k1.new_slot_from(&x, &src), k1_again.new_slot_from(&x, &src));
        assert_eq!(k1.tried_slot(&x), k1_again.tried_slot(&x));
        if k1.new_slot_from(&x, &src) != k2.new_slot_from(&x, &src) {
            differ += 1;
        }
    }
    assert!(differ > 190, "only {differ} of 200 moved with a new key");
    // The port is part of the address: same host, other port, other slot (almost surely).
    let moved = (0..50u16)
        .filter(|&p| {
            let x = NetAddr {
                port: 1000 + p,
                ..v4(60, 1, 3, 4)
            };
            k1.tried_slot(&x) != k1.tried_slot(&v4(60, 1, 3, 4))
        })
        .count();
    assert!(moved > 40);
}

#[test]
fn one_source_group_reaches_at_most_its_share_of_new_buckets() {
    let mut b = book();
    // An attacker in 66.66.0.0/16 announces 20000 addresses from 20000 different /16s,
    // rotating through hosts of its own /16.
    for i in 0..20_000u32 {
        let x = v4(100 + (i % 100) as u8, (i / 100) as u8, 1, 1);
        let src = v4(66, 66, (i % 256) as u8, 9);
        add(&mut b, x, src);
    }
    let buckets: BTreeSet<usize> = b.slots(Table::New).map(|(bkt, _, _)| bkt).collect();
    assert!(
        buckets.len() <= NEW_BUCKETS_PER_SOURCE_GROUP as usize,
        "{}",
        buckets.len()
    );
    // ... so it holds at most 64 * 64 slots however much it sends.
    assert!(b.size() <= 64 * BUCKET_SIZE);
    // Honest addresses from other sources still find room elsewhere.
    let honest: Vec<NetAddr> = (0..50).map(|i| v4(200, i, 1, 1)).collect();
    for (i, x) in honest.iter().enumerate() {
        add(&mut b, *x, v4(150, i as u8, 0, 1));
    }
    let kept = honest.iter().filter(|x| b.info(x).is_some()).count();
    assert!(kept >= 45, "only {kept} of 50 honest addresses kept");
    b.check().unwrap();
}

#[test]
fn one_group_reaches_at_most_8_tried_buckets() {
    let mut b = book_with(Config {
        test_before_evict: false,
        ..Config::default()
    });
    for i in 0..3000u32 {
        let x = v4(9, 9, (i / 256) as u8, i as u8);
        add(&mut b, x, v4(1 + (i % 200) as u8, 1, 1, 1));
        b.good(&x, NOW);
    }
    let buckets: BTreeSet<usize> = b.slots(Table::Tried).map(|(bkt, _, _)| bkt).collect();
    assert!(
        buckets.len() <= TRIED_BUCKETS_PER_GROUP as usize,
        "{}",
        buckets.len()
    );
    assert!(b.counts().tried <= 8 * BUCKET_SIZE);
    b.check().unwrap();
}

#[test]
fn unroutable_addresses_need_allow_local() {
    let mut b = book();
    let locals = [a("127.0.0.1:18444"), a("10.0.0.1:8333"), a("[::1]:8333")];
    for l in locals {
        assert_eq!(add(&mut b, l, l), 0, "{l}");
    }
    assert!(b.is_empty());
    let mut b = book_with(Config {
        allow_local: true,
        ..Config::default()
    });
    for l in locals {
        assert_eq!(add(&mut b, l, l), 1, "{l}");
    }
    for never in [a("0.0.0.0:1"), a("224.0.0.1:1"), a("255.255.255.255:1")] {
        assert_eq!(add(&mut b, never, never), 0, "{never}");
    }
    // Loopback addresses are groups of their own, so a test network spreads over buckets.
    for i in 1..=200u8 {
        add(&mut b, v4(127, 0, 0, i), v4(127, 0, 1, i));
    }
    assert!(b.size() > 150);
}

#[test]
fn implausible_times_become_five_days_old_and_penalty_backdates() {
    let mut b = book();
    let src = v4(5, 5, 5, 5);
    let (future, ancient, fine) = (v4(1, 0, 0, 1), v4(1, 0, 0, 2), v4(1, 0, 0, 3));
    let pen = 2 * HOUR;
    b.add(
        &[
            rec(future, NOW + 11 * MIN),
            rec(ancient, Time::from_secs(100_000_000)),
            rec(fine, NOW - HOUR),
        ],
        src,
        pen,
        NOW,
    );
    let five_days = NOW - IMPLAUSIBLE_TIME_AGE;
    assert_eq!(b.info(&future).unwrap().last_seen, five_days - pen);
    assert_eq!(b.info(&ancient).unwrap().last_seen, five_days - pen);
    assert_eq!(b.info(&fine).unwrap().last_seen, NOW - HOUR - pen);
    // No penalty for a peer announcing itself.
    let me = v4(2, 0, 0, 1);
    b.add(&[rec(me, NOW)], me, pen, NOW);
    assert_eq!(b.info(&me).unwrap().last_seen, NOW);
    assert_eq!(b.info(&me).unwrap().source, me);
}

#[test]
fn known_addresses_gain_services_and_fresher_times() {
    let mut b = book();
    let x = v4(3, 3, 3, 3);
    let src = v4(4, 4, 4, 4);
    b.add(&[rec(x, NOW - 3 * HOUR)], src, Duration::ZERO, NOW);
    // Newer by less than the online interval: last-seen stays, services merge.
    b.add(
        &[(x, ServiceFlags::WITNESS, NOW - 3 * HOUR + 30 * MIN)],
        src,
        Duration::ZERO,
        NOW,
    );
    let info = b.info(&x).unwrap();
    assert_eq!(info.last_seen, NOW - 3 * HOUR);
    assert_eq!(info.services, ServiceFlags::NETWORK | ServiceFlags::WITNESS);
    // Newer by more than an hour: it follows.
    b.add(&[rec(x, NOW - MIN)], src, Duration::ZERO, NOW);
    assert_eq!(b.info(&x).unwrap().last_seen, NOW - MIN);
    assert_eq!(b.size(), 1);
    b.set_services(&x, ServiceFlags::NONE);
    assert_eq!(b.info(&x).unwrap().services, ServiceFlags::NONE);
}

#[test]
fn references_grow_rarely_and_stop_at_eight() {
    let mut b = book();
    let x = v4(3, 3, 3, 3);
    let mut max_refs = 0;
    for i in 0..4000u32 {
        // Each announcement a little fresher than the last, from ever other source groups.
        let seen = NOW - Duration::from_secs(100_000) + Duration::from_secs(u64::from(i) * 10);
        b.add(
            &[rec(x, seen)],
            v4((i % 200) as u8 + 1, (i / 200) as u8, 0, 1),
            Duration::from_secs(60),
            NOW,
        );
        if let Some(Placement::New { references }) = b.info(&x).map(|i| i.placement) {
            max_refs = max_refs.max(references);
        }
    }
    assert!(max_refs > 2, "{max_refs}");
    assert!(max_refs <= NEW_BUCKETS_PER_ADDRESS);
    b.check().unwrap();
}

#[test]
fn good_moves_to_tried_and_a_collision_waits_for_a_feeler() {
    let mut b = book();
    let (old, new) = tried_twins(&b);
    let src = v4(8, 8, 8, 8);
    add(&mut b, old, src);
    add(&mut b, new, src);
    assert_eq!(b.good(&old, NOW - 5 * HOUR), GoodOutcome::MovedToTried);
    assert_eq!(b.good(&old, NOW - 5 * HOUR), GoodOutcome::AlreadyTried);
    assert_eq!(b.good(&v4(1, 2, 3, 4), NOW), GoodOutcome::Unknown);
    assert_eq!(b.good(&new, NOW), GoodOutcome::Collision);
    assert_eq!(
        b.info(&new).unwrap().placement,
        Placement::New { references: 1 }
    );
    assert_eq!(b.tried_collisions().collect::<Vec<_>>(), vec![new]);
    let mut rng = Rng::with_seed(3);
    assert_eq!(
        b.select_tried_collision(&mut rng),
        Some((old, Some(NOW - 5 * HOUR)))
    );

    // The feeler to the incumbent succeeds: it keeps its slot.
    let mut kept = b.clone();
    kept.good(&old, NOW + MIN);
    kept.resolve_collisions(NOW + 2 * MIN);
    assert_eq!(kept.tried_collisions().count(), 0);
    assert_eq!(kept.info(&old).unwrap().placement, Placement::Tried);
    assert!(matches!(
        kept.info(&new).unwrap().placement,
        Placement::New { .. }
    ));

    // The feeler fails: after the grace minute, the newcomer takes over and the incumbent
    // goes back to new.
    let mut replaced = b.clone();
    replaced.attempt(&old, true, NOW + MIN);
    replaced.resolve_collisions(NOW + MIN + Duration::from_secs(30));
    assert_eq!(
        replaced.tried_collisions().count(),
        1,
        "still within the grace"
    );
    replaced.resolve_collisions(NOW + 3 * MIN);
    assert_eq!(replaced.tried_collisions().count(), 0);
    assert_eq!(replaced.info(&new).unwrap().placement, Placement::Tried);
    assert_eq!(
        replaced.info(&old).unwrap().placement,
        Placement::New { references: 1 }
    );
    replaced.check().unwrap();

    // Nobody tests: after the test window the newcomer wins anyway.
    let mut waited = b.clone();
    waited.resolve_collisions(NOW + 10 * MIN);
    assert_eq!(waited.tried_collisions().count(), 1);
    waited.resolve_collisions(NOW + TEST_WINDOW + MIN);
    assert_eq!(waited.info(&new).unwrap().placement, Placement::Tried);
    waited.check().unwrap();
}

#[test]
fn without_test_before_evict_the_incumbent_goes_back_to_new() {
    let mut b = book_with(Config {
        test_before_evict: false,
        ..Config::default()
    });
    let (old, new) = tried_twins(&b);
    let src = v4(8, 8, 8, 8);
    add(&mut b, old, src);
    add(&mut b, new, src);
    b.good(&old, NOW);
    assert_eq!(b.good(&new, NOW), GoodOutcome::MovedToTried);
    assert_eq!(
        b.info(&old).unwrap().placement,
        Placement::New { references: 1 }
    );
    assert_eq!(b.counts(), TableCounts { new: 1, tried: 1 });
    b.check().unwrap();
}

#[test]
fn collision_set_is_bounded() {
    let mut b = book();
    let mut waiting = 0;
    // Many addresses of one /16 compete for its 512 tried slots.
    for i in 0..4000u32 {
        let x = v4(20, 31, (i / 256) as u8, i as u8);
        add(&mut b, x, v4(1 + (i % 250) as u8, 2, 2, 2));
        if b.good(&x, NOW) == GoodOutcome::Collision {
            waiting += 1;
        }
    }
    assert!(waiting > MAX_TRIED_COLLISIONS);
    assert_eq!(b.tried_collisions().count(), MAX_TRIED_COLLISIONS);
    b.check().unwrap();
}

#[test]
fn failures_count_once_per_success_anywhere() {
    let mut b = book();
    let (x, y) = (v4(1, 1, 1, 1), v4(2, 2, 2, 2));
    add(&mut b, x, x);
    add(&mut b, y, y);
    b.attempt(&x, true, NOW);
    b.attempt(&x, true, NOW + MIN);
    assert_eq!(b.info(&x).unwrap().attempts, 1, "offline: one failure only");
    assert_eq!(b.info(&x).unwrap().last_try, Some(NOW + MIN));
    b.good(&y, NOW + 2 * MIN);
    b.attempt(&x, true, NOW + 3 * MIN);
    b.attempt(&x, false, NOW + 4 * MIN);
    let info = b.info(&x).unwrap();
    assert_eq!(info.attempts, 2);
    assert_eq!(info.last_try, Some(NOW + 4 * MIN));
    b.good(&x, NOW + 5 * MIN);
    assert_eq!(b.info(&x).unwrap().attempts, 0);
}

#[test]
fn connected_refreshes_last_seen_every_twenty_minutes_at_most() {
    let mut b = book();
    let x = v4(1, 1, 1, 1);
    b.add(&[rec(x, NOW)], x, Duration::ZERO, NOW);
    b.connected(&x, NOW + 19 * MIN);
    assert_eq!(b.info(&x).unwrap().last_seen, NOW);
    b.connected(&x, NOW + 21 * MIN);
    assert_eq!(b.info(&x).unwrap().last_seen, NOW + 21 * MIN);
}

#[test]
fn terrible_follows_core() {
    let fresh = AddrInfo {
        addr: v4(1, 1, 1, 1),
        services: ServiceFlags::NONE,
        last_seen: NOW - HOUR,
        source: v4(1, 1, 1, 1),
        last_try: None,
        last_success: None,
        attempts: 0,
        placement: Placement::New { references: 1 },
    };
    assert!(!fresh.is_terrible(NOW));
    let day = 24 * HOUR;
    let cases = [
        (
            AddrInfo {
                last_seen: NOW + 11 * MIN,
                ..fresh
            },
            true,
        ),
        (
            AddrInfo {
                last_seen: NOW - 31 * day,
                ..fresh
            },
            true,
        ),
        (
            AddrInfo {
                attempts: 3,
                ..fresh
            },
            true,
        ),
        (
            AddrInfo {
                attempts: 3,
                last_success: Some(NOW - day),
                ..fresh
            },
            false,
        ),
        (
            AddrInfo {
                attempts: 10,
                last_success: Some(NOW - 8 * day),
                ..fresh
            },
            true,
        ),
        // Tried in the last minute: never terrible.
        (
            AddrInfo {
                attempts: 10,
                last_try: Some(NOW - Duration::from_secs(30)),
                ..fresh
            },
            false,
        ),
    ];
    for (info, want) in cases {
        assert_eq!(info.is_terrible(NOW), want, "{info:?}");
    }
    assert_eq!(fresh.chance(NOW), 1.0);
    let recent = AddrInfo {
        last_try: Some(NOW - MIN),
        attempts: 2,
        ..fresh
    };
    assert!((recent.chance(NOW) - 0.01 * 0.66 * 0.66).abs() < 1e-12);
}

#[test]
fn select_respects_tables_and_networks() {
    let mut b = book();
    let mut rng = Rng::with_seed(9);
    assert_eq!(b.select(false, &[], &mut rng, NOW), None);
    let (x, onion) = (
        v4(1, 1, 1, 1),
        a("2gzyxa5ihm7nsggfxnu52rck2vv4rvmdlkiu3zzui5du4xyclen53wid.onion:9050"),
    );
    add(&mut b, x, x);
    add(&mut b, onion, x);
    b.good(&x, NOW);
    // Only x is tried, only the onion is new.
    assert_eq!(b.select(true, &[], &mut rng, NOW).map(|s| s.0), Some(onion));
    assert_eq!(
        b.select(false, &[Network::Ipv4], &mut rng, NOW)
            .map(|s| s.0),
        Some(x)
    );
    assert_eq!(b.select(true, &[Network::Ipv4], &mut rng, NOW), None);
    assert_eq!(b.select(false, &[Network::I2p], &mut rng, NOW), None);
    // The only match comes back even twice in a row.
    for _ in 0..3 {
        assert_eq!(
            b.select(false, &[Network::Onion], &mut rng, NOW),
            Some((onion, None))
        );
    }
    assert_eq!(
        b.network_counts(Network::Onion),
        TableCounts { new: 1, tried: 0 }
    );
    assert_eq!(
        b.counts_by_network().map(|(_, c)| c.total()).sum::<usize>(),
        2
    );
}

#[test]
fn select_never_repeats_and_prefers_healthy_entries() {
    let mut b = book();
    let mut rng = Rng::with_seed(5);
    let healthy: Vec<NetAddr> = (0..20).map(|i| v4(30, i, 1, 1)).collect();
    let failing: Vec<NetAddr> = (0..20).map(|i| v4(40, i, 1, 1)).collect();
    for x in healthy.iter().chain(&failing) {
        add(&mut b, *x, *x);
    }
    // Eight counted failures each: a success elsewhere between them lets each one count.
    let helper = v4(50, 0, 0, 1);
    add(&mut b, helper, helper);
    for round in 0..8u32 {
        let t = NOW - 2 * HOUR + Duration::from_secs(u64::from(round) * 60);
        for x in &failing {
            b.attempt(x, true, t);
        }
        b.good(&helper, t + Duration::from_secs(1));
    }
    b.remove(&helper);
    assert_eq!(b.info(&failing[0]).unwrap().attempts, 8);

    let mut last = None;
    let mut failing_picks = 0;
    for _ in 0..2000 {
        let (x, _) = b.select(false, &[], &mut rng, NOW).unwrap();
        assert_ne!(Some(x), last, "twice in a row");
        assert!(b.info(&x).is_some());
        if failing.contains(&x) {
            failing_picks += 1;
        }
        last = Some(x);
    }
    // 0.66^8 = 3.6% of the weight each; with the growing factor they stay rare.
    assert!(failing_picks < 300, "{failing_picks} of 2000 picks failing");

    // Something tried a minute ago is picked far less than something untouched.
    let mut b = book();
    let (fresh, recent) = (v4(60, 1, 1, 1), v4(61, 1, 1, 1));
    let third = v4(62, 1, 1, 1);
    for x in [fresh, recent, third] {
        add(&mut b, x, x);
    }
    b.attempt(&recent, false, NOW - MIN);
    let mut picks = HashMap::new();
    for _ in 0..3000 {
        let (x, _) = b.select(false, &[], &mut rng, NOW).unwrap();
        *picks.entry(x).or_insert(0) += 1;
    }
    assert!(
        picks.get(&recent).copied().unwrap_or(0) * 3 < picks[&fresh],
        "{picks:?}"
    );
}

#[test]
fn get_addr_samples_within_limits_and_skips_terrible() {
    let mut b = book();
    let mut rng = Rng::with_seed(11);
    for i in 0..1000u32 {
        let x = v4(70 + (i % 50) as u8, (i / 50) as u8, 1, 1);
        add(&mut b, x, v4(1 + (i % 200) as u8, 1, 1, 1));
    }
    let n = b.size();
    assert!(n > 900);
    let got = b.get_addr(MAX_ADDR_TO_SEND, MAX_PCT_ADDR_TO_SEND, None, &mut rng, NOW);
    assert_eq!(got.len(), n * 23 / 100);
    let distinct: BTreeSet<NetAddr> = got.iter().map(|r| r.0).collect();
    assert_eq!(distinct.len(), got.len());
    assert_eq!(b.get_addr(10, 0, None, &mut rng, NOW).len(), 10);
    assert_eq!(b.get_addr(0, 0, None, &mut rng, NOW).len(), n);

    // Make every address in 70.x terrible (three failures, never reached).
    let bad: Vec<NetAddr> = b
        .entries()
        .map(|i| i.addr)
        .filter(|x| matches!(x.host, Host::Ipv4(ip) if ip.octets()[0] == 70))
        .collect();
    assert!(!bad.is_empty());
    for x in &bad {
        for k in 0..3 {
            b.attempt(x, true, NOW - HOUR + MIN * k);
            b.last_good = Some(NOW - HOUR + MIN * k + Duration::from_secs(1));
        }
        assert!(b.info(x).unwrap().is_terrible(NOW));
    }
    let all = b.get_addr(0, 0, None, &mut rng, NOW);
    assert_eq!(all.len(), n - bad.len());
    assert!(all.iter().all(|r| !bad.contains(&r.0)));
    assert!(b
        .get_addr(0, 0, Some(Network::Ipv6), &mut rng, NOW)
        .is_empty());
    b.check().unwrap();
}

#[test]
fn remove_forgets_from_either_table() {
    let mut b = book();
    let (x, y) = (v4(1, 1, 1, 1), v4(2, 2, 2, 2));
    add(&mut b, x, x);
    add(&mut b, y, y);
    b.good(&y, NOW);
    assert!(b.remove(&x));
    assert!(b.remove(&y));
    assert!(!b.remove(&y));
    assert!(b.is_empty());
    assert_eq!(b.counts(), TableCounts::default());
    b.check().unwrap();
    // Freed ids are reused cleanly.
    add(&mut b, x, x);
    assert_eq!(b.size(), 1);
    b.check().unwrap();
}

#[test]
fn the_book_never_outgrows_its_tables() {
    let mut b = book();
    let mut rng = Rng::with_seed(77);
    for _ in 0..100_000 {
        let x = v4(rng.u8(1..224), rng.u8(..), rng.u8(..), rng.u8(..));
        if !x.is_routable() {
            continue;
        }
        let src = v4(rng.u8(1..224), rng.u8(..), 0, 1);
        add(&mut b, x, src);
    }
    let c = b.counts();
    assert!(c.new <= NEW_CAPACITY && c.tried <= TRIED_CAPACITY);
    assert!(c.new > NEW_CAPACITY * 3 / 5, "{c:?}");
    b.check().unwrap();
}

/// A book with a bit of everything: multi-reference new entries, tried entries, a waiting
/// collision, several networks.
fn busy_book() -> AddrMan {
    let mut b = book();
    for i in 0..300u32 {
        let x = v4(80 + (i % 30) as u8, (i / 30) as u8, 1, 1);
        for s in 0..4u32 {
            let seen = NOW - Duration::from_secs(u64::from(10_000 - 100 * s));
            b.add(
                &[rec(x, seen)],
                v4(1 + s as u8, i as u8, 0, 1),
                Duration::ZERO,
                NOW,
            );
        }
        if i % 5 == 0 {
            b.good(&x, NOW - MIN);
        }
        if i % 7 == 0 {
            b.attempt(&x, true, NOW - 2 * MIN);
        }
    }
    let onion = a("2gzyxa5ihm7nsggfxnu52rck2vv4rvmdlkiu3zzui5du4xyclen53wid.onion:9050");
    add(&mut b, onion, v4(1, 1, 1, 1));
    add(
        &mut b,
        NetAddr {
            host: Host::I2p([9; 32]),
            port: 0,
        },
        v4(1, 1, 1, 1),
    );
    add(&mut b, a("[2a01::1]:8333"), a("[2a02::1]:1"));
    let (old, new) = tried_twins(&b);
    add(&mut b, old, old);
    add(&mut b, new, new);
    b.good(&old, NOW);
    b.good(&new, NOW);
    assert_eq!(b.tried_collisions().count(), 1);
    assert!(b
        .entries()
        .any(|e| matches!(e.placement, Placement::New { references } if references > 1)));
    b.check().unwrap();
    b
}

#[test]
fn serialization_round_trips() {
    let b = busy_book();
    let bytes = b.serialize();
    let back = AddrMan::deserialize(&bytes).unwrap();
    assert_eq!(back, b);
    assert_eq!(back.serialize(), bytes);
    assert_eq!(back.counts(), b.counts());
    for e in b.entries() {
        assert_eq!(back.info(&e.addr), Some(e));
    }
    let empty = book();
    assert_eq!(AddrMan::deserialize(&empty.serialize()).unwrap(), empty);
    // A different key is a different book.
    let other = AddrMan::new(Config::default(), [1; 16], Rng::with_seed(1));
    assert_ne!(AddrMan::deserialize(&other.serialize()).unwrap(), empty);
}

/// `bytes` (a version 2 book under prefix groups) as version 1 wrote it: no grouping field.
fn as_version_1(bytes: &[u8]) -> Vec<u8> {
    assert_eq!(bytes[5..37], [0; 32], "written under prefix groups");
    let mut v1 = bytes[..4].to_vec();
    v1.push(1);
    v1.extend_from_slice(&bytes[37..]);
    reseal(&mut v1);
    v1
}

#[test]
fn version_1_books_still_load() {
    let mut b = book();
    for i in 0..50 {
        add(&mut b, v4(30, i, 1, 1), v4(40, i % 5, 1, 1));
    }
    b.good(&v4(30, 3, 1, 1), NOW);
    let v1 = as_version_1(&b.serialize());
    assert_eq!(AddrMan::deserialize(&v1).unwrap(), b);
}

/// Settings that group by the AS of a small map: 30.0.0.0/8 is one AS, 40.0.0.0/8 another.
fn asmap_config() -> Config {
    use std::net::IpAddr;
    let bytes = crate::asmap::encode(&[
        (IpAddr::from([30, 0, 0, 0]), 8, 64_500),
        (IpAddr::from([40, 0, 0, 0]), 8, 64_501),
    ])
    .unwrap();
    let map = crate::asmap::Asmap::from_bytes(&bytes).unwrap();
    Config {
        groups: NetGroups::with_asmap(std::sync::Arc::new(map), false),
        ..Config::default()
    }
}

#[test]
fn a_new_grouping_rebuckets_the_book_on_load() {
    let mut b = book();
    for i in 0..200u8 {
        add(&mut b, v4(30, i, 1, 1), v4(40, i % 7, 1, 1));
    }
    for i in 0..20u8 {
        b.good(&v4(30, i, 1, 1), NOW);
    }
    let before = b.counts();
    let prefix_bytes = b.serialize();

    // Under the map every entry is in one AS, announced by one AS: one source group reaches
    // 64 new buckets and one group 8 tried buckets, so the book shrinks and never breaks.
    let under_map =
        AddrMan::deserialize_with(&prefix_bytes, asmap_config(), Rng::with_seed(1)).unwrap();
    under_map.check().unwrap();
    assert!(under_map.size() > 0 && under_map.size() <= b.size());
    assert!(under_map.counts().tried <= before.tried);
    assert!(under_map.counts().new <= before.new);
    let new_buckets: BTreeSet<usize> = under_map
        .slots(Table::New)
        .map(|(bucket, _, _)| bucket)
        .collect();
    assert!(new_buckets.len() <= NEW_BUCKETS_PER_SOURCE_GROUP as usize);
    let tried_buckets: BTreeSet<usize> = under_map
        .slots(Table::Tried)
        .map(|(bucket, _, _)| bucket)
        .collect();
    assert!(tried_buckets.len() <= TRIED_BUCKETS_PER_GROUP as usize);

    // Saved under the map and loaded under it again: nothing moves.
    let map_bytes = under_map.serialize();
    assert_eq!(map_bytes[5..37], asmap_config().groups.version());
    let again = AddrMan::deserialize_with(&map_bytes, asmap_config(), Rng::with_seed(1)).unwrap();
    assert_eq!(again, under_map);
    // And back to prefix groups: re-bucketed again, still sound.
    let back = AddrMan::deserialize_with(&map_bytes, Config::default(), Rng::with_seed(1)).unwrap();
    back.check().unwrap();
    assert!(back.size() > 0);
}

#[test]
fn loading_drops_what_the_config_refuses() {
    let mut b = book_with(Config {
        allow_local: true,
        ..Config::default()
    });
    add(&mut b, a("127.0.0.1:18444"), a("127.0.0.2:1"));
    add(&mut b, v4(1, 1, 1, 1), a("127.0.0.2:1"));
    let bytes = b.serialize();
    let strict = AddrMan::deserialize(&bytes).unwrap();
    assert_eq!(strict.size(), 1);
    let lax = AddrMan::deserialize_with(&bytes, b.config().clone(), Rng::with_seed(1)).unwrap();
    assert_eq!(lax, b);
}

/// Offset of the first entry in a serialized book without `last_good`.
const FIRST_ENTRY: usize = 4 + 1 + 32 + 16 + 1 + 4;

#[test]
fn corrupt_input_is_refused() {
    let mut b = book();
    add(&mut b, v4(1, 1, 1, 1), v4(2, 2, 2, 2));
    let good = b.serialize();
    assert!(AddrMan::deserialize(&good).is_ok());

    assert_eq!(
        AddrMan::deserialize(&[]),
        Err(AddrManError::Truncated("magic"))
    );
    let mut bad = good.clone();
    bad[0] = b'X';
    assert_eq!(AddrMan::deserialize(&bad), Err(AddrManError::BadMagic));
    let mut bad = good.clone();
    bad[4] = 3;
    assert_eq!(
        AddrMan::deserialize(&bad),
        Err(AddrManError::UnsupportedVersion(3))
    );
    for cut in 0..good.len() {
        assert!(AddrMan::deserialize(&good[..cut]).is_err(), "cut at {cut}");
    }
    let mut bad = good.clone();
    bad[FIRST_ENTRY + 2] ^= 1;
    assert_eq!(AddrMan::deserialize(&bad), Err(AddrManError::BadChecksum));

    // Edits with a valid checksum: the structure itself is checked.
    let edit = |f: &dyn Fn(&mut Vec<u8>)| {
        let mut d = good.clone();
        f(&mut d);
        reseal(&mut d);
        AddrMan::deserialize(&d)
    };
    // Unknown network id.
    assert!(matches!(
        edit(&|d| d[FIRST_ENTRY] = 3),
        Err(AddrManError::InvalidAddress(_))
    ));
    // BookEntry count too large for the tables.
    assert_eq!(
        edit(&|d| d[FIRST_ENTRY - 4..FIRST_ENTRY].copy_from_slice(&u32::MAX.to_le_bytes())),
        Err(AddrManError::TooManyEntries(u64::from(u32::MAX)))
    );
    // BookEntry count larger than the data.
    assert_eq!(
        edit(&|d| d[FIRST_ENTRY - 4..FIRST_ENTRY].copy_from_slice(&2u32.to_le_bytes())),
        Err(AddrManError::Truncated("entries"))
    );
    // The entry layout: 7 + 7 + 8 + 8 + 1 + 1 + 1 + 4 bytes, then table, count, bucket.
    let table = FIRST_ENTRY + 37;
    assert_eq!(
        edit(&|d| d[table] = 2),
        Err(AddrManError::InvalidField("table"))
    );
    assert_eq!(
        edit(&|d| d[table + 1] = 9),
        Err(AddrManError::InvalidField("reference count"))
    );
    assert_eq!(
        edit(&|d| d[table + 2..table + 4].copy_from_slice(&1024u16.to_le_bytes())),
        Err(AddrManError::InvalidBuckets(v4(1, 1, 1, 1)))
    );
    // Tried without ever connecting.
    assert_eq!(
        edit(&|d| {
            d[table] = 1;
            d.drain(table + 1..table + 4);
        }),
        Err(AddrManError::TriedWithoutSuccess(v4(1, 1, 1, 1)))
    );
    // The entry twice.
    assert_eq!(
        edit(&|d| {
            let entry = d[FIRST_ENTRY..table + 4].to_vec();
            d.splice(table + 4..table + 4, entry);
            d[FIRST_ENTRY - 4] = 2;
        }),
        Err(AddrManError::DuplicateAddress(v4(1, 1, 1, 1)))
    );
    // A bogus collision index; trailing bytes.
    assert_eq!(
        edit(&|d| {
            let n = d.len() - 8;
            d[n - 1] = 1;
            d.extend_from_slice(&[5, 0, 0, 0]);
        }),
        Err(AddrManError::InvalidField("collision index"))
    );
    assert_eq!(edit(&|d| d.push(0)), Err(AddrManError::TrailingBytes(1)));
}

#[test]
fn a_bucket_that_does_not_fit_the_key_is_refused() {
    // Two entries claiming the same new bucket and landing on the same slot.
    let b = book();
    let bucket = 5;
    let mut by_slot = HashMap::new();
    let (x, y) = (0..=u16::MAX)
        .map(|i| v4(90, 1, (i >> 8) as u8, i as u8))
        .find_map(|x| {
            by_slot
                .insert(b.bucketer.new_slot(bucket, &x), x)
                .map(|y| (y, x))
        })
        .unwrap();
    let mut data = Vec::new();
    data.extend_from_slice(b"PPAM\x01");
    data.extend_from_slice(&KEY);
    data.push(0);
    data.extend_from_slice(&2u32.to_le_bytes());
    for addr in [x, y] {
        let (bytes, len) = super::bucket::addr_bytes(&addr);
        data.extend_from_slice(&bytes[..len]);
        data.extend_from_slice(&bytes[..len]);
        data.extend_from_slice(&[0; 16]);
        data.extend_from_slice(&[0, 0, 0]);
        data.extend_from_slice(&[0; 4]);
        data.extend_from_slice(&[0, 1]);
        data.extend_from_slice(&(bucket as u16).to_le_bytes());
    }
    data.push(0);
    data.extend_from_slice(&[0; 8]);
    reseal(&mut data);
    assert_eq!(
        AddrMan::deserialize(&data),
        Err(AddrManError::SlotConflict(y))
    );
}

#[test]
fn heap_size_counts_the_tables() {
    let b = book();
    // Two tables of 4-byte slots and their fill counters, nothing else yet.
    assert_eq!(
        b.heap_size(),
        (NEW_CAPACITY + TRIED_CAPACITY) * 4 + NEW_BUCKET_COUNT + TRIED_BUCKET_COUNT
    );
}

#[derive(Clone, Debug)]
enum Op {
    Add(Vec<u16>, u8),
    Good(u16),
    Attempt(u16, bool),
    Connected(u16),
    Remove(u16),
    Select(bool, bool),
    GetAddr,
    Resolve,
    Collision,
    Elapse(u32),
}

/// A small address space, so that slots and tried positions collide often.
fn pool_addr(i: u16) -> NetAddr {
    match i % 10 {
        0 => NetAddr {
            host: Host::TorV3([(i >> 4) as u8; 32]),
            port: 9050,
        },
        _ => v4(100 + (i % 3) as u8, (i % 5) as u8, (i >> 8) as u8, i as u8),
    }
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (prop::collection::vec(0..600u16, 1..20), any::<u8>()).prop_map(|(v, s)| Op::Add(v, s)),
        2 => (0..600u16).prop_map(Op::Good),
        2 => (0..600u16, any::<bool>()).prop_map(|(i, f)| Op::Attempt(i, f)),
        1 => (0..600u16).prop_map(Op::Connected),
        1 => (0..600u16).prop_map(Op::Remove),
        2 => (any::<bool>(), any::<bool>()).prop_map(|(n, f)| Op::Select(n, f)),
        1 => Just(Op::GetAddr),
        1 => Just(Op::Resolve),
        1 => Just(Op::Collision),
        1 => (0..100_000u32).prop_map(Op::Elapse),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 40, ..ProptestConfig::default() })]

    #[test]
    fn invariants_hold_under_any_operations(ops in prop::collection::vec(op(), 1..60), seed in any::<u64>()) {
        let mut b = AddrMan::new(Config::default(), KEY, Rng::with_seed(seed));
        let mut rng = Rng::with_seed(seed ^ 1);
        let mut now = NOW;
        let mut step = 0u32;
        for op in ops {
            match op {
                Op::Add(v, s) => {
                    let recs: Vec<AddrRecord> = v.iter().map(|&i| rec(pool_addr(i), now - HOUR)).collect();
                    b.add(&recs, v4(1 + s % 4, s, 0, 1), Duration::from_secs(7200), now);
                }
                Op::Good(i) => { b.good(&pool_addr(i), now); }
                Op::Attempt(i, f) => b.attempt(&pool_addr(i), f, now),
                Op::Connected(i) => b.connected(&pool_addr(i), now),
                Op::Remove(i) => { b.remove(&pool_addr(i)); }
                Op::Select(new_only, onion) => {
                    let nets: &[Network] = if onion { &[Network::Onion] } else { &[] };
                    if let Some((x, last_try)) = b.select(new_only, nets, &mut rng, now) {
                        let info = b.info(&x);
                        prop_assert!(info.is_some(), "selected {x} is not in the book");
                        prop_assert_eq!(info.unwrap().last_try, last_try);
                        if new_only {
                            let is_new = matches!(info.unwrap().placement, Placement::New { .. });
                            prop_assert!(is_new);
                        }
                    } else {
                        let c = b.counts();
                        let empty = if new_only { c.new == 0 } else { c.total() == 0 };
                        prop_assert!(empty || onion);
                    }
                }
                Op::GetAddr => {
                    let got = b.get_addr(MAX_ADDR_TO_SEND, MAX_PCT_ADDR_TO_SEND, None, &mut rng, now);
                    prop_assert!(got.len() <= b.size() * 23 / 100);
                    for r in got {
                        prop_assert!(b.info(&r.0).is_some_and(|i| !i.is_terrible(now)));
                    }
                }
                Op::Resolve => b.resolve_collisions(now),
                Op::Collision => {
                    if let Some((x, _)) = b.select_tried_collision(&mut rng) {
                        prop_assert_eq!(b.info(&x).map(|i| i.placement), Some(Placement::Tried));
                    }
                }
                Op::Elapse(s) => now = now + Duration::from_secs(u64::from(s)),
            }
            step += 1;
            if step % 4 == 0 {
                prop_assert!(b.check().is_ok(), "{:?}", b.check());
            }
            let c = b.counts();
            prop_assert!(c.new <= NEW_CAPACITY && c.tried <= TRIED_CAPACITY);
            prop_assert_eq!(c.total(), b.size());
        }
        prop_assert!(b.check().is_ok(), "{:?}", b.check());
        let back = AddrMan::deserialize(&b.serialize());
        prop_assert!(back.as_ref().is_ok_and(|back| *back == b), "{:?}", back.err());
    }

    #[test]
    fn deserialize_never_panics_on_random_bytes(data in prop::collection::vec(any::<u8>(), 0..600)) {
        prop_assert!(AddrMan::deserialize(&data).is_err());
        // Also past the magic, version and checksum checks.
        let mut d = b"PPAM\x01".to_vec();
        d.extend_from_slice(&data);
        reseal(&mut d);
        let _ = AddrMan::deserialize(&d);
    }

    #[test]
    fn deserialize_never_panics_on_damaged_books(
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        cut in any::<prop::sample::Index>(),
        truncate in any::<bool>(),
    ) {
        let mut d = small_book_bytes();
        for (i, v) in edits {
            let i = i.index(d.len());
            d[i] = v;
        }
        if truncate {
            d.truncate(cut.index(d.len()));
        }
        reseal(&mut d);
        if let Ok(b) = AddrMan::deserialize(&d) {
            prop_assert!(b.check().is_ok());
        }
    }
}

fn small_book_bytes() -> Vec<u8> {
    let mut b = book();
    for i in 0..6u8 {
        add(&mut b, v4(1 + i, 1, 1, 1), v4(2, 2, 2, i));
    }
    b.good(&v4(1, 1, 1, 1), NOW);
    b.attempt(&v4(2, 1, 1, 1), true, NOW);
    b.serialize()
}
