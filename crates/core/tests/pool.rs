//! Scenarios of the pool machine's connection policy, with literal times: dial pacing,
//! test-before-evict of tried-table collisions, duplicate connections by IP, periodic
//! self-advertisement, reseeding a dry book, and useful peers protected from eviction.

use std::time::Duration;

use bitcoin::p2p::ServiceFlags;
use peerpool_core::addr::NetAddr;
use peerpool_core::pool::addrman::{self, AddrMan, GoodOutcome, Placement};
use peerpool_core::pool::connman::{ConnKind, ReqId, OUTBOUND_DIAL_INTERVAL};
use peerpool_core::pool::machine::{
    Config, Timer, Useful, COLLISION_CHECK_INTERVAL, LOCAL_ADDR_INTERVAL, RESEED_DELAY,
    RESEED_INTERVAL,
};
use peerpool_core::pool::{Output, PoolMachine};
use peerpool_core::{DisconnectReason, PeerCommand, PeerEvent, PeerId, Time};

mod support;

use support::pool::{PoolHarness as Harness, SECRET, START as T0};

const SEC: Duration = Duration::from_secs(1);
const MIN: Duration = Duration::from_secs(60);
const HOUR: Duration = Duration::from_secs(3600);

fn a(s: &str) -> NetAddr {
    s.parse().unwrap()
}

fn rng() -> fastrand::Rng {
    fastrand::Rng::with_seed(1)
}

fn quiet() -> Config {
    let mut c = Config::default();
    c.connman.feeler_interval = None;
    c
}

// ----- dial pacing ---------------------------------------------------------------------------

#[test]
fn outbound_slots_fill_one_dial_per_half_second_and_failures_wait_for_the_pace() {
    let mut h = Harness::new(quiet());
    let addrs: Vec<_> = (0..30)
        .map(|i| {
            (
                a(&format!("{}.7.0.1:8333", 20 + i)),
                ServiceFlags::NETWORK,
                T0,
            )
        })
        .collect();
    h.pool.add_addresses(T0, &addrs, a("1.1.1.1:8333"));
    h.elapse(10 * SEC);
    let dials: Vec<(Time, ReqId)> = h
        .take()
        .into_iter()
        .filter_map(|(t, o)| match o {
            Output::Dial { req, .. } => Some((t, req)),
            _ => None,
        })
        .collect();
    let at: Vec<u128> = dials.iter().map(|(t, _)| t.since(T0).as_millis()).collect();
    assert_eq!(at, vec![0, 500, 1000, 1500, 2000, 2500, 3000, 3500]);
    // Every dial is refused at once: replacements still go out one per 500 ms.
    for (_, req) in &dials {
        h.dial_fails(*req);
    }
    let start = h.now;
    let mut times = Vec::new();
    for _ in 0..6 {
        let (req, _) = h
            .next_dial(ConnKind::Outbound, 5 * SEC)
            .expect("a replacement");
        times.push(h.now.since(start).as_millis());
        h.dial_fails(req);
    }
    assert_eq!(times, vec![0, 500, 1000, 1500, 2000, 2500]);
    assert_eq!(
        h.pool
            .connman()
            .timer(peerpool_core::pool::connman::Timer::OpenConnection),
        Some(h.now + OUTBOUND_DIAL_INTERVAL)
    );
}

// ----- test-before-evict -------------------------------------------------------------------

/// A book where `new` succeeded but waits for the tried slot `old` holds: `old` last
/// succeeded five hours before T0, `new` at T0.
fn collided_book() -> (AddrMan, NetAddr, NetAddr) {
    let src = a("8.8.8.8:8333");
    let mut probe = AddrMan::new(addrman::Config::default(), SECRET, rng());
    for i in 0..=u16::MAX {
        let x = a(&format!("20.30.{}.{}:8333", i >> 8, i & 0xff));
        probe.add(&[(x, ServiceFlags::NETWORK, T0)], src, Duration::ZERO, T0);
        if probe.good(&x, T0) == GoodOutcome::Collision {
            // The only waiting newcomer is `x`: the book names its incumbent.
            let (old, _) = probe
                .select_tried_collision(&mut rng())
                .expect("the incumbent");
            let mut b = AddrMan::new(addrman::Config::default(), SECRET, rng());
            let seen = T0 - 6 * HOUR;
            b.add(
                &[(old, ServiceFlags::NETWORK, seen)],
                src,
                Duration::ZERO,
                seen,
            );
            b.add(&[(x, ServiceFlags::NETWORK, T0)], src, Duration::ZERO, T0);
            assert_eq!(b.good(&old, T0 - 5 * HOUR), GoodOutcome::MovedToTried);
            assert_eq!(b.good(&x, T0), GoodOutcome::Collision);
            return (b, old, x);
        }
    }
    unreachable!("a /16 has 512 tried slots")
}

/// Feelers on, no automatic outbound slots (so the feeler timer always runs).
fn feeler_config() -> Config {
    let mut c = Config::default();
    c.connman.target_outbound = 0;
    c
}

fn placement(h: &Harness, addr: &NetAddr) -> Placement {
    h.pool.addrman().info(addr).unwrap().placement
}

#[test]
fn a_feeler_tests_the_incumbent_first_and_an_answer_keeps_it() {
    let (book, old, new) = collided_book();
    let mut h = Harness::with_book(feeler_config(), book);
    let (req, addr) = h
        .next_dial(ConnKind::Feeler, 30 * MIN)
        .expect("a feeler within half an hour");
    assert_eq!(
        addr, old,
        "the collision's incumbent is tested before anything new"
    );
    let feeler = h.dial_succeeds(req);
    h.handshake(feeler);
    h.expect_disconnect(feeler, DisconnectReason::Requested);
    // It answered: it keeps its slot, the newcomer stays in new and stops waiting.
    assert_eq!(h.pool.addrman().tried_collisions().count(), 0);
    assert_eq!(placement(&h, &old), Placement::Tried);
    assert!(matches!(placement(&h, &new), Placement::New { .. }));
    assert_eq!(h.pool.timer(Timer::ResolveCollisions), None);
}

#[test]
fn a_failed_feeler_to_the_incumbent_lets_the_newcomer_in_after_the_grace_minute() {
    let (book, old, new) = collided_book();
    let mut h = Harness::with_book(feeler_config(), book);
    let (req, addr) = h.next_dial(ConnKind::Feeler, 30 * MIN).expect("a feeler");
    assert_eq!(addr, old);
    h.dial_fails(req);
    // Within the minute the book gives an attempt, nothing changes.
    h.elapse(59 * SEC);
    assert_eq!(
        h.pool.addrman().tried_collisions().collect::<Vec<_>>(),
        vec![new]
    );
    assert_eq!(placement(&h, &old), Placement::Tried);
    // The collision timer settles it within one more check interval.
    h.elapse(COLLISION_CHECK_INTERVAL + SEC);
    assert_eq!(placement(&h, &new), Placement::Tried);
    assert!(matches!(placement(&h, &old), Placement::New { .. }));
    assert_eq!(h.pool.addrman().tried_collisions().count(), 0);
    assert_eq!(h.pool.timer(Timer::ResolveCollisions), None);
}

#[test]
fn an_untested_collision_lets_the_newcomer_in_after_the_test_window() {
    let (book, old, new) = collided_book();
    // No feelers: nobody tests the incumbent (and no outbound slots to keep the loop busy).
    let mut config = quiet();
    config.connman.target_outbound = 0;
    let mut h = Harness::with_book(config, book);
    h.elapse(SEC);
    assert!(
        h.pool.timer(Timer::ResolveCollisions).is_some(),
        "armed while one waits"
    );
    h.elapse(39 * MIN);
    assert_eq!(
        placement(&h, &old),
        Placement::Tried,
        "still inside the 40-minute window"
    );
    h.elapse(MIN + COLLISION_CHECK_INTERVAL);
    assert_eq!(placement(&h, &new), Placement::Tried);
    assert_eq!(h.pool.addrman().tried_collisions().count(), 0);
}

#[test]
fn a_connected_incumbent_is_marked_good_instead_of_dialed_again() {
    let (book, old, new) = collided_book();
    let mut h = Harness::with_book(feeler_config(), book);
    // We are connected to the incumbent's IP (a manual peer on another port).
    let other_port = format!("{}:18555", old.host);
    h.join_manual(&other_port);
    h.take();
    if let Some((_, addr)) = h.next_dial(ConnKind::Feeler, 30 * MIN) {
        assert_ne!(addr.host, old.host, "no second connection to the incumbent");
    }
    // Settled at the next pass of the connection-opening path.
    h.elapse(COLLISION_CHECK_INTERVAL + SEC);
    assert_eq!(h.pool.addrman().tried_collisions().count(), 0);
    assert_eq!(placement(&h, &old), Placement::Tried);
    assert!(matches!(placement(&h, &new), Placement::New { .. }));
}

// ----- duplicate connections -----------------------------------------------------------------

#[test]
fn no_automatic_dial_to_an_ip_already_connected_on_another_port() {
    let mut h = Harness::new(quiet());
    h.join_manual("30.2.0.1:18444");
    h.pool.add_addresses(
        T0,
        &[(a("30.2.0.1:8333"), ServiceFlags::NETWORK, T0)],
        a("1.1.1.1:8333"),
    );
    h.elapse(5 * SEC);
    assert!(
        !h.take()
            .iter()
            .any(|(_, o)| matches!(o, Output::Dial { .. })),
        "dialed an IP we are connected to"
    );
    // An inbound peer's IP does not count (its port is ephemeral): its listening address is
    // dialed.
    h.join_inbound("40.2.0.1:50123");
    h.pool.add_addresses(
        h.now,
        &[(a("40.2.0.1:8333"), ServiceFlags::NETWORK, h.now)],
        a("1.1.1.1:8333"),
    );
    assert_eq!(
        h.next_dial(ConnKind::Outbound, 5 * SEC).map(|d| d.1),
        Some(a("40.2.0.1:8333"))
    );
    // Manual peers compare by port: two ports of one host are both kept.
    h.pool.add_node(h.now, a("127.0.0.1:18444")).unwrap();
    h.pool.add_node(h.now, a("127.0.0.1:18445")).unwrap();
    h.elapse(SEC);
    let manual = h
        .take()
        .into_iter()
        .filter(|(_, o)| {
            matches!(
                o,
                Output::Dial {
                    kind: ConnKind::Manual,
                    ..
                }
            )
        })
        .count();
    assert_eq!(manual, 2);
}

// ----- self-advertisement and reseeding --------------------------------------------------------

fn our_announcements(outputs: &[(Time, Output)], peer: PeerId, me: NetAddr) -> Vec<Time> {
    outputs
        .iter()
        .filter_map(|(t, o)| match o {
            Output::Peer {
                peer: to,
                command: PeerCommand::SendAddrs(addrs),
            } if *to == peer && addrs.iter().any(|m| m.addr == me) => Some(*t),
            _ => None,
        })
        .collect()
}

#[test]
fn our_address_is_announced_again_on_a_per_peer_timer() {
    assert_eq!(Config::default().local_addr_interval, LOCAL_ADDR_INTERVAL);
    assert_eq!(LOCAL_ADDR_INTERVAL, 24 * HOUR);
    let me = a("50.1.2.3:8333");
    let mut config = quiet();
    config.advertise = vec![me];
    config.local_addr_interval = MIN;
    let mut h = Harness::new(config);
    let peer = h.join_inbound("60.1.1.1:40000");
    h.elapse(30 * MIN);
    let times = our_announcements(&h.take(), peer, me);
    assert_eq!(times[0], T0, "right after the handshake");
    // Mean one a minute over 30 minutes: around 30.
    assert!(
        (12..=60).contains(&times.len()),
        "{} announcements",
        times.len()
    );
    assert!(times.windows(2).all(|w| w[1] > w[0]));
    // Gone peers are not announced to.
    h.disconnected(peer, DisconnectReason::RemoteClosed);
    assert_eq!(h.pool.timer(Timer::LocalAddr(peer)), None);
    h.elapse(30 * MIN);
    assert!(our_announcements(&h.take(), peer, me).is_empty());
}

#[test]
fn the_default_interval_announces_about_once_a_day() {
    let me = a("50.1.2.3:8333");
    let mut config = quiet();
    config.advertise = vec![me];
    let mut h = Harness::new(config);
    let peer = h.join_inbound("60.1.1.1:40000");
    let next = h.pool.timer(Timer::LocalAddr(peer)).unwrap();
    // An exponential draw of mean 24 h: at least a second, at most ten means away.
    assert!(next >= T0 + SEC && next <= T0 + 240 * HOUR, "{next:?}");
}

fn reseeds(outputs: &[(Time, Output)]) -> Vec<Time> {
    outputs
        .iter()
        .filter(|(_, o)| *o == Output::Reseed)
        .map(|(t, _)| *t)
        .collect()
}

#[test]
fn a_dry_book_asks_for_seeds_after_eleven_seconds_then_every_ten_minutes() {
    let mut h = Harness::new(quiet());
    h.elapse(25 * MIN);
    let at: Vec<Duration> = reseeds(&h.take()).iter().map(|t| t.since(T0)).collect();
    assert_eq!(
        at,
        vec![
            RESEED_DELAY,
            RESEED_DELAY + RESEED_INTERVAL,
            RESEED_DELAY + 2 * RESEED_INTERVAL
        ]
    );
}

#[test]
fn a_book_with_usable_addresses_or_connect_only_never_reseeds() {
    let mut h = Harness::new(quiet());
    let addrs: Vec<_> = (0..30)
        .map(|i| {
            (
                a(&format!("{}.7.0.1:8333", 20 + i)),
                ServiceFlags::NETWORK,
                T0,
            )
        })
        .collect();
    h.pool.add_addresses(T0, &addrs, a("1.1.1.1:8333"));
    h.elapse(MIN);
    assert!(reseeds(&h.take()).is_empty());

    let mut config = quiet();
    config.connman.connect_only = true;
    let mut h = Harness::new(config);
    h.elapse(HOUR);
    assert!(reseeds(&h.take()).is_empty());
}

#[test]
fn addresses_arriving_restart_the_reseed_delay() {
    let mut h = Harness::new(quiet());
    h.elapse(5 * SEC);
    assert_eq!(h.pool.timer(Timer::Reseed), Some(T0 + RESEED_DELAY));
    h.pool.add_addresses(
        h.now,
        &[(a("20.7.0.1:8333"), ServiceFlags::NETWORK, h.now)],
        a("1.1.1.1:8333"),
    );
    h.elapse(SEC);
    // The address is dialed at once; the rounds after it find the book dry again, so the
    // delay starts over from there.
    assert!(h
        .pool
        .timer(Timer::Reseed)
        .is_some_and(|t| t >= h.now - SEC + RESEED_DELAY));
    h.elapse(5 * MIN);
    let out = h.take();
    assert!(out.iter().any(|(_, o)| matches!(o, Output::Dial { .. })));
    // Once, 11 s after the book ran dry again; the next is ten minutes later.
    let r = reseeds(&out);
    assert_eq!(r.len(), 1, "{r:?}");
}

// ----- useful peers ------------------------------------------------------------------------------

/// 40 inbound peers from distinct groups fill every slot; a 41st arrives. Returns who is
/// evicted, after `mark` had its say.
fn victim(mark: impl FnOnce(&mut PoolMachine, Time)) -> PeerId {
    let mut config = quiet();
    config.connman.max_connections = 40 + config.connman.target_outbound + 1;
    config.connman.target_outbound = 8;
    let mut p = PoolMachine::new(config, SECRET, 3, T0);
    for i in 0..40u64 {
        let t = T0 + Duration::from_secs(i);
        let addr = a(&format!("{}.{}.0.1:40000", 11 + i, i));
        p.handle_inbound(t, PeerId(i), addr).unwrap();
        let joined = PeerEvent::HandshakeCompleted {
            version: support::pool::version_of(ServiceFlags::NETWORK),
            negotiated_version: 70016,
        };
        p.handle_peer_event(t, PeerId(i), &joined);
    }
    let now = T0 + MIN;
    mark(&mut p, now);
    while p.poll_output().is_some() {}
    p.handle_inbound(now, PeerId(100), a("200.1.0.1:40000"))
        .unwrap();
    let evicted = std::iter::from_fn(|| p.poll_output()).find_map(|o| match o {
        Output::Peer {
            peer,
            command: PeerCommand::Disconnect(DisconnectReason::Evicted),
        } => Some(peer),
        _ => None,
    });
    evicted.expect("somebody is evicted")
}

#[test]
fn peers_that_sent_useful_blocks_or_transactions_are_protected_from_eviction() {
    let first = victim(|_, _| {});
    let spared = victim(|p, now| p.handle_useful(now, first, Useful::Block));
    assert_ne!(spared, first, "a peer that sent a new block is protected");
    let spared_tx = victim(|p, now| p.handle_useful(now, first, Useful::Tx));
    assert_ne!(
        spared_tx, first,
        "a peer that sent a new transaction is protected"
    );
    // Unknown peers are ignored.
    let same = victim(|p, now| p.handle_useful(now, PeerId(999), Useful::Block));
    assert_eq!(same, first);
}
