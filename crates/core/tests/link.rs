//! Where the two cores meet: every kind of [`PeerEvent`] a peer machine reports, handed to the
//! pool through `handle_peer_event` alone, and what the pool answers with, as commands for the
//! peers' machines and events for subscribers. Literal times throughout.

mod support;

use std::time::Duration;

use bitcoin::p2p::address::{AddrV2Message, Address};
use bitcoin::p2p::message::NetworkMessage;
use bitcoin::p2p::ServiceFlags;
use peerpool_core::gossip::Announced;
use peerpool_core::misbehaviour::Misbehaviour;
use peerpool_core::pool::connman::ConnKind;
use peerpool_core::pool::machine::{Config, Timer, BAN_SAVE_INTERVAL};
use peerpool_core::pool::{Output, PoolEvent, PoolMachine};
use peerpool_core::{DisconnectReason, PeerCommand, PeerConfig, PeerEvent, Time};
use peerpool_wire::{MessageKind, Network};
use support::pool::{addr, PoolHarness, START};

/// A test network's pool: loopback addresses kept and banned, no feelers to interleave.
fn config() -> Config {
    let mut c = Config::default();
    c.addrman.allow_local = true;
    c.banman.ban_local = true;
    c.connman.feeler_interval = None;
    c
}

fn v2(a: &str, seen: Time) -> AddrV2Message {
    let na = addr(a);
    AddrV2Message {
        time: seen.as_secs() as u32,
        services: ServiceFlags::NETWORK,
        addr: na.to_addrv2(),
        port: na.port,
    }
}

/// An outbound peer, dialed by the pool from its book.
fn dial_outbound(h: &mut PoolHarness, to: &str) -> peerpool_core::PeerId {
    h.pool.add_addresses(
        h.now,
        &[(addr(to), ServiceFlags::NETWORK, h.now)],
        addr("127.0.0.1:1"),
    );
    let (req, dialed) = h
        .next_dial(ConnKind::Outbound, Duration::from_secs(5))
        .expect("a dial");
    assert_eq!(dialed, addr(to));
    h.dial_succeeds(req)
}

#[test]
fn the_pool_asks_for_the_kinds_it_handles_and_turns_off_the_peers_own_bans() {
    let wanted: Vec<&str> = MessageKind::ALL
        .iter()
        .filter(|k| PoolMachine::wants_decoded(**k))
        .map(|k| k.as_str())
        .collect();
    assert_eq!(wanted, ["addr", "addrv2", "getaddr"]);
    let mut peer = PeerConfig::new(Network::Regtest.params());
    assert!(peer.ban_threshold.is_some());
    PoolMachine::adapt_peer_config(&mut peer);
    assert_eq!(peer.ban_threshold, None, "the pool judges misbehaviour");
}

#[test]
fn version_sent_and_received_catch_a_connection_to_ourselves_at_both_ends() {
    let mut h = PoolHarness::new(config());
    let out = dial_outbound(&mut h, "127.0.5.1:18444");
    h.report(out, PeerEvent::VersionSent { nonce: 77 });
    // Our own version arrives on an inbound connection: it is us.
    let inb = h.connect_inbound("127.0.5.1:50000");
    h.report(inb, PeerEvent::VersionReceived { nonce: 77 });
    h.expect_disconnect(inb, DisconnectReason::SelfConnection);
    h.expect_disconnect(out, DisconnectReason::SelfConnection);
    // The outbound end may still complete its handshake before the command lands: it never
    // joins.
    h.handshake(out);
    assert!(h.events().is_empty(), "{:?}", h.events());

    // Another peer with another nonce is nobody's business.
    let other = h.connect_inbound("127.0.6.1:50000");
    h.report(other, PeerEvent::VersionReceived { nonce: 78 });
    h.expect_connected(other);
}

#[test]
fn a_nonce_is_forgotten_once_its_handshake_completes() {
    let mut h = PoolHarness::new(config());
    let out = dial_outbound(&mut h, "127.0.5.1:18444");
    h.report(out, PeerEvent::VersionSent { nonce: 91 });
    h.handshake(out);
    let inb = h.connect_inbound("127.0.7.1:50000");
    h.report(inb, PeerEvent::VersionReceived { nonce: 91 });
    h.expect_connected(inb);
}

#[test]
fn a_completed_handshake_joins_asks_outbound_peers_for_addresses_and_ends_feelers() {
    let mut h = PoolHarness::new(config());
    let inb = h.join_inbound("127.0.8.1:50000");
    let out = dial_outbound(&mut h, "127.0.9.1:18444");
    h.handshake(out);
    let joined: Vec<_> = h
        .events()
        .into_iter()
        .filter_map(|e| match e {
            PoolEvent::PeerJoined { peer, kind, .. } => Some((peer, kind)),
            _ => None,
        })
        .collect();
    assert_eq!(
        joined,
        [(inb, ConnKind::Inbound), (out, ConnKind::Outbound)]
    );
    assert!(h
        .commands_to(out)
        .contains(&PeerCommand::Send(NetworkMessage::GetAddr)));
    assert!(!h
        .commands_to(inb)
        .contains(&PeerCommand::Send(NetworkMessage::GetAddr)));
    assert!(h.pool.addrman().info(&addr("127.0.9.1:18444")).is_some());
}

#[test]
fn addr_and_addrv2_both_reach_the_book_and_small_fresh_ones_travel_on() {
    let mut h = PoolHarness::new(config());
    let from = h.join_inbound("127.0.10.1:50000");
    let others = [
        h.join_inbound("127.0.11.1:50000"),
        h.join_inbound("127.0.12.1:50000"),
    ];
    h.take();
    // A legacy addr message, IPv4-mapped as some peers send it: one token, one address.
    let mapped: std::net::SocketAddr = "[::ffff:127.0.20.1]:18444".parse().unwrap();
    let legacy = vec![(
        START.as_secs() as u32,
        Address::new(&mapped, ServiceFlags::NETWORK),
    )];
    h.receive(from, NetworkMessage::Addr(legacy));
    assert!(h.pool.addrman().info(&addr("127.0.20.1:18444")).is_some());
    let relayed = Announced::from_v2(&v2("127.0.20.1:18444", START)).unwrap();
    for peer in others {
        assert_eq!(
            h.commands_to(peer),
            [PeerCommand::SendAddrs(vec![relayed])],
            "relayed in the pool's form, to both others"
        );
    }
    assert!(h.commands_to(from).is_empty(), "never back to the sender");
    // addrv2, after the bucket refilled a token.
    h.elapse_secs(10);
    h.receive_addrs(from, &[v2("127.0.21.1:18444", h.now)]);
    assert!(h.pool.addrman().info(&addr("127.0.21.1:18444")).is_some());
}

#[test]
fn getaddr_is_answered_from_the_book_and_other_kinds_are_ignored() {
    let mut h = PoolHarness::new(config());
    for i in 1..=20 {
        let a = addr(&format!("127.0.{i}.9:18444"));
        h.pool
            .add_addresses(h.now, &[(a, ServiceFlags::NETWORK, h.now)], a);
    }
    let p = h.join_inbound("127.0.30.1:50000");
    h.take();
    // A kind the pool never asked for changes nothing.
    h.receive(p, NetworkMessage::Ping(5));
    assert!(h.take().is_empty());
    h.receive(p, NetworkMessage::GetAddr);
    let commands = h.commands_to(p);
    assert!(
        matches!(&commands[..], [PeerCommand::SendAddrs(list)] if !list.is_empty()),
        "{commands:?}"
    );
}

/// 40 inbound peers from distinct groups, a second apart, fill every inbound slot; those in
/// `fast` answered a ping in 1 ms, the others in a second; then a newcomer arrives. Returns
/// the index of the peer evicted to make room.
fn eviction_with_pings(fast: &[usize]) -> usize {
    let mut c = config();
    c.connman.target_outbound = 8;
    c.connman.max_connections = 40 + 8 + 1;
    let mut h = PoolHarness::new(c);
    let peers: Vec<_> = (0..40u64)
        .map(|i| {
            h.elapse_secs(1);
            h.join_inbound(&format!("{}.{i}.0.1:40000", 11 + i))
        })
        .collect();
    for (i, p) in peers.iter().enumerate() {
        let rtt_micros = if fast.contains(&i) { 1_000 } else { 1_000_000 };
        h.report(*p, PeerEvent::PingCompleted { rtt_micros });
    }
    h.elapse_secs(60);
    h.take();
    h.connect_inbound("200.1.0.1:40000");
    let evicted: Vec<usize> = h
        .outputs()
        .filter_map(|o| match o {
            Output::Peer {
                peer,
                command: PeerCommand::Disconnect(DisconnectReason::Evicted),
            } => peers.iter().position(|p| p == peer),
            _ => None,
        })
        .collect();
    assert_eq!(evicted.len(), 1, "{evicted:?}");
    evicted[0]
}

#[test]
fn ping_round_trips_protect_the_fastest_inbound_peers_from_eviction() {
    let unprotected = eviction_with_pings(&[]);
    // The same pool, where the peer that went first answered its pings fastest: kept.
    let spared = eviction_with_pings(&[unprotected]);
    assert_ne!(spared, unprotected);
}

#[test]
fn misbehaviour_is_judged_on_the_score_the_peer_reports() {
    let mut h = PoolHarness::new(config());
    let p = h.join_inbound("127.0.40.1:50000");
    h.take();
    let malformed = Misbehaviour::MalformedMessage { command: "tx" };
    // Nine reports: scored, warned past half, still connected.
    for _ in 0..9 {
        h.misbehave(p, malformed);
    }
    h.expect_connected(p);
    // The tenth reaches 100: banned, disconnected, and the event says why.
    h.misbehave(p, malformed);
    h.expect_disconnect(p, DisconnectReason::Banned);
    assert!(matches!(
        h.events()[..],
        [PoolEvent::Banned {
            reason: peerpool_core::pool::banman::BanReason::Misbehaviour,
            ..
        }]
    ));
    // Reports that were on their way change nothing more.
    let before = h.take().len();
    h.misbehave(p, malformed);
    assert_eq!(before, 1 + 1);
    assert!(h.events().is_empty());
}

#[test]
fn a_protocol_breach_disconnects_without_a_ban_and_later_reports_still_count() {
    let mut h = PoolHarness::new(config());
    let p = h.join_inbound("127.0.41.1:50000");
    let bloom = Misbehaviour::BloomNotOffered {
        command: "filterload",
    };
    h.misbehave(p, bloom);
    h.expect_disconnect(p, DisconnectReason::Misbehaviour(bloom));
    assert!(h
        .events()
        .iter()
        .all(|e| !matches!(e, PoolEvent::Banned { .. })));
    // The peer's last frames were still in flight: they cross the threshold, it is banned.
    for _ in 0..5 {
        h.misbehave(p, Misbehaviour::OversizedAddr { count: 1_001 });
    }
    assert!(h.pool.banman().is_banned(&addr("127.0.41.1:1"), h.now));
}

#[test]
fn peers_the_operator_chose_are_never_banned() {
    let mut h = PoolHarness::new(config());
    let p = h.join_manual("127.0.42.1:18444");
    for _ in 0..20 {
        h.misbehave(p, Misbehaviour::OversizedHeaders { count: 9_999 });
    }
    h.expect_connected(p);
    assert!(h.pool.banman().bans().is_empty());
}

#[test]
fn a_changed_ban_list_is_saved_at_once_then_at_most_once_a_second() {
    let mut h = PoolHarness::new(config());
    let saves = |h: &mut PoolHarness| -> Vec<Duration> {
        h.take()
            .into_iter()
            .filter(|(_, o)| *o == Output::SaveBans)
            .map(|(t, _)| t.since(START))
            .collect()
    };
    assert_eq!(h.pool.timer(Timer::SaveBans), None, "nothing to save");
    h.pool.ban(
        h.now,
        "10.0.0.0/8".parse().unwrap(),
        h.now + Duration::from_secs(60),
    );
    h.drain();
    h.elapse(Duration::ZERO);
    assert_eq!(
        saves(&mut h),
        [Duration::ZERO],
        "the first change is written at once"
    );
    // A burst of changes within the next second: one more write, a second after the first.
    for i in 1..=5u64 {
        h.elapse(Duration::from_millis(100));
        let subnet = format!("10.{i}.0.0/16").parse().unwrap();
        h.pool.unban(h.now, &"10.0.0.0/8".parse().unwrap());
        h.pool.ban(h.now, subnet, h.now + Duration::from_secs(60));
        h.drain();
    }
    h.elapse_secs(5);
    assert_eq!(saves(&mut h), [BAN_SAVE_INTERVAL]);
    // The expiries of the bans change the list too: written, never twice within a second.
    h.elapse_secs(60);
    let expiries = saves(&mut h);
    assert!(!expiries.is_empty());
    assert!(
        expiries
            .windows(2)
            .all(|w| w[1] >= w[0] + BAN_SAVE_INTERVAL),
        "{expiries:?}"
    );
    // A list that did not change is not written again.
    h.elapse_secs(600);
    assert!(saves(&mut h).is_empty());
}
