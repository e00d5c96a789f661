use std::collections::BTreeSet;

use bitcoin::p2p::address::{AddrV2Message, Address};
use bitcoin::p2p::message::NetworkMessage;
use bitcoin::p2p::message_network::VersionMessage;
use bitcoin::p2p::ServiceFlags;
use peerpool_wire::MessageKind;

use super::*;
use crate::ban::BanScore;
use crate::gossip::Announced;
use crate::misbehaviour::Misbehaviour;
use crate::peer::PeerEvent;

const T0: Time = Time::from_secs(1_700_000_000);

fn a(s: &str) -> NetAddr {
    s.parse().unwrap()
}

fn local_config() -> Config {
    let mut c = Config::default();
    c.addrman.allow_local = true;
    c.banman.ban_local = true;
    c.connman.feeler_interval = None;
    c
}

fn pool(config: Config) -> PoolMachine {
    PoolMachine::new(config, [7; 16], 42, T0)
}

fn drain(p: &mut PoolMachine) -> Vec<Output> {
    std::iter::from_fn(|| p.poll_output()).collect()
}

/// Runs every deadline due up to `until` (as the runtime would) and returns all outputs.
fn run_until(p: &mut PoolMachine, until: Time) -> Vec<Output> {
    let mut out = drain(p);
    let mut rounds = 0;
    while let Some(t) = p.poll_timeout().filter(|t| *t <= until) {
        p.handle_timeout(t);
        out.extend(drain(p));
        rounds += 1;
        assert!(
            rounds < 100_000,
            "a deadline at {t:?} stays due after handling it"
        );
    }
    out
}

fn v2(addr: NetAddr, seen: Time) -> AddrV2Message {
    AddrV2Message {
        time: seen.as_secs() as u32,
        services: ServiceFlags::NETWORK,
        addr: addr.to_addrv2(),
        port: addr.port,
    }
}

/// A peer's `version`, as its machine reports it with the handshake.
fn version(services: ServiceFlags) -> Box<VersionMessage> {
    let nowhere = Address::new(&"0.0.0.0:0".parse().unwrap(), ServiceFlags::NONE);
    let when = T0.as_secs() as i64;
    let ua = "/test:1.0/".to_string();
    Box::new(VersionMessage::new(
        services,
        when,
        nowhere.clone(),
        nowhere,
        1,
        ua,
        0,
    ))
}

/// The peer's machine reports a completed handshake.
fn handshake(p: &mut PoolMachine, now: Time, peer: PeerId) {
    let event = PeerEvent::HandshakeCompleted {
        version: version(ServiceFlags::NETWORK),
        negotiated_version: 70016,
    };
    p.handle_peer_event(now, peer, &event);
}

/// The peer's machine reports an `addrv2` message.
fn send_addrs(p: &mut PoolMachine, now: Time, peer: PeerId, addrs: &[AddrV2Message]) {
    let event = PeerEvent::MessageReceived {
        kind: MessageKind::AddrV2,
        message: Some(NetworkMessage::AddrV2(addrs.to_vec())),
    };
    p.handle_peer_event(now, peer, &event);
}

/// The peer's machine reports a `getaddr`.
fn getaddr(p: &mut PoolMachine, now: Time, peer: PeerId) {
    let event = PeerEvent::MessageReceived {
        kind: MessageKind::GetAddr,
        message: Some(NetworkMessage::GetAddr),
    };
    p.handle_peer_event(now, peer, &event);
}

/// The peer's machine scores a misbehaviour (on `score`, the peer's one score) and reports it.
fn misbehave(
    p: &mut PoolMachine,
    now: Time,
    peer: PeerId,
    what: Misbehaviour,
    score: &mut BanScore,
) {
    let score = score.increase(now, 0, what.score());
    p.handle_peer_event(now, peer, &PeerEvent::Misbehaved { what, score });
}

/// The addresses of a `SendAddrs` command, in the pool's form.
fn announced(addrs: &[AddrV2Message]) -> Vec<Announced> {
    addrs.iter().filter_map(Announced::from_v2).collect()
}

/// A disconnect command.
fn disconnect(peer: PeerId, reason: DisconnectReason) -> Output {
    Output::disconnect(peer, reason)
}

/// Whether the outputs hold a disconnect of any peer.
fn any_disconnect(out: &[Output]) -> bool {
    out.iter().any(|o| {
        matches!(
            o,
            Output::Peer {
                command: PeerCommand::Disconnect(_),
                ..
            }
        )
    })
}

/// Connects an outbound peer through the pool's own dial and completes its handshake.
fn join_outbound(p: &mut PoolMachine, now: Time, peer: u64) -> (PeerId, NetAddr) {
    p.handle_timeout(now);
    let out = drain(p);
    let (req, addr) = out
        .iter()
        .find_map(|o| match o {
            Output::Dial { req, addr, .. } => Some((*req, *addr)),
            _ => None,
        })
        .expect("a dial");
    for o in &out {
        if let Output::Dial { req: r, .. } = o {
            if *r != req {
                p.handle_dial_failed(now, *r);
            }
        }
    }
    p.handle_dial_succeeded(now, req, PeerId(peer));
    handshake(p, now, PeerId(peer));
    (PeerId(peer), addr)
}

#[test]
fn dials_addresses_from_the_book_and_never_banned_ones() {
    let mut p = pool(local_config());
    let addrs: Vec<AddrRecord> = (1..=20)
        .map(|i| (a(&format!("127.0.{i}.1:18444")), ServiceFlags::NETWORK, T0))
        .collect();
    assert_eq!(p.add_addresses(T0, &addrs, a("127.0.0.1:1")), 20);
    let banned = a("127.0.3.1:18444");
    p.ban(
        T0,
        Subnet::from(banned.host),
        T0 + Duration::from_secs(3600),
    );
    drain(&mut p);
    // Automatic dials are paced, one per 500 ms: eight slots take 3.5 s.
    let dialed: Vec<NetAddr> = run_until(&mut p, T0 + Duration::from_secs(4))
        .into_iter()
        .filter_map(|o| match o {
            Output::Dial {
                addr,
                kind: ConnKind::Outbound,
                ..
            } => Some(addr),
            _ => None,
        })
        .collect();
    assert_eq!(dialed.len(), 8, "{dialed:?}");
    assert!(!dialed.contains(&banned));
}

#[test]
fn handshake_asks_for_addresses_and_advertises_ours() {
    let mut config = local_config();
    let me = a("127.0.9.9:18444");
    config.advertise = vec![me];
    let mut p = pool(config);
    p.add_addresses(
        T0,
        &[(a("127.0.1.1:18444"), ServiceFlags::NETWORK, T0)],
        a("127.0.0.1:1"),
    );
    let (peer, addr) = join_outbound(&mut p, T0, 1);
    let out = drain(&mut p);
    assert!(out.contains(&Output::Event(PoolEvent::PeerJoined {
        peer,
        addr,
        direction: Direction::Outbound,
        kind: ConnKind::Outbound
    })));
    assert!(out.contains(&Output::Peer {
        peer,
        command: PeerCommand::Send(NetworkMessage::GetAddr)
    }));
    assert!(out.iter().any(|o| matches!(o,
        Output::Peer { peer: to, command: PeerCommand::SendAddrs(addrs) } if *to == peer && addrs[0].addr == me)));
    assert_eq!(
        p.addrman().info(&addr).map(|i| i.last_success.is_some()),
        Some(true)
    );
}

#[test]
fn small_fresh_announcements_are_relayed_to_two_peers_answers_are_not() {
    let mut p = pool(local_config());
    for i in 0..4 {
        p.handle_inbound(T0, PeerId(i), a(&format!("127.0.{i}.5:5000")))
            .unwrap();
        handshake(&mut p, T0, PeerId(i));
    }
    drain(&mut p);
    let fresh = v2(a("127.0.50.1:18444"), T0);
    send_addrs(&mut p, T0, PeerId(0), std::slice::from_ref(&fresh));
    let relays: Vec<PeerId> = drain(&mut p)
        .into_iter()
        .filter_map(|o| match o {
            Output::Peer {
                peer,
                command: PeerCommand::SendAddrs(addrs),
            } if addrs == announced(std::slice::from_ref(&fresh)) => Some(peer),
            _ => None,
        })
        .collect();
    assert_eq!(relays.len(), RELAY_FANOUT);
    assert!(!relays.contains(&PeerId(0)), "never back to the sender");
    assert!(p.addrman().info(&a("127.0.50.1:18444")).is_some());

    // Old news is stored but not relayed.
    let stale = v2(a("127.0.51.1:18444"), T0 - Duration::from_secs(3600));
    send_addrs(&mut p, T0, PeerId(1), &[stale]);
    assert!(drain(&mut p).is_empty());
}

#[test]
fn an_address_is_relayed_once_per_freshness_window() {
    let mut p = pool(local_config());
    for i in 0..4 {
        p.handle_inbound(T0, PeerId(i), a(&format!("127.0.{i}.5:5000")))
            .unwrap();
        handshake(&mut p, T0, PeerId(i));
    }
    drain(&mut p);
    let relays = |p: &mut PoolMachine| {
        drain(p)
            .into_iter()
            .filter(|o| {
                matches!(
                    o,
                    Output::Peer {
                        command: PeerCommand::SendAddrs(_),
                        ..
                    }
                )
            })
            .count()
    };
    let fresh = v2(a("127.0.50.1:18444"), T0);
    send_addrs(&mut p, T0, PeerId(0), std::slice::from_ref(&fresh));
    assert_eq!(relays(&mut p), RELAY_FANOUT);
    // The same news coming back from another peer goes no further: no endless echo.
    send_addrs(&mut p, T0, PeerId(1), std::slice::from_ref(&fresh));
    assert_eq!(relays(&mut p), 0);
    // A fresh announcement after the window is news again.
    let later = T0 + RELAY_FRESHNESS + Duration::from_secs(1);
    send_addrs(
        &mut p,
        later,
        PeerId(2),
        &[v2(a("127.0.50.1:18444"), later)],
    );
    assert_eq!(relays(&mut p), RELAY_FANOUT);
}

#[test]
fn our_own_advertised_address_is_never_dialed() {
    let mut config = local_config();
    let me = a("127.0.9.9:18444");
    config.advertise = vec![me];
    let mut p = pool(config);
    p.add_addresses(T0, &[(me, ServiceFlags::NETWORK, T0)], a("127.0.0.1:1"));
    p.handle_timeout(T0);
    assert!(
        !drain(&mut p)
            .iter()
            .any(|o| matches!(o, Output::Dial { .. })),
        "dialing ourselves"
    );
}

#[test]
fn addresses_are_rate_limited_per_peer() {
    let mut p = pool(local_config());
    p.handle_inbound(T0, PeerId(1), a("127.0.0.5:5000"))
        .unwrap();
    handshake(&mut p, T0, PeerId(1));
    let batch = |base: u32| -> Vec<AddrV2Message> {
        (0..1000)
            .map(|i| {
                v2(
                    a(&format!("127.{}.{}.{}:1", base, i / 200, i % 200 + 1)),
                    T0,
                )
            })
            .collect()
    };
    // A new inbound peer has one token: its self-announcement.
    send_addrs(&mut p, T0, PeerId(1), &batch(1));
    assert_eq!(p.addrman().size(), 1);
    // 100 s later ten tokens have come back: ten more addresses of a thousand.
    send_addrs(&mut p, T0 + Duration::from_secs(100), PeerId(1), &batch(2));
    assert_eq!(p.addrman().size(), 11);
    // After 10,000 s the bucket is full (1,000, not more): a few collide in the book's
    // buckets, nearly all the rest are in...
    send_addrs(
        &mut p,
        T0 + Duration::from_secs(20_000),
        PeerId(1),
        &batch(3),
    );
    let full = p.addrman().size();
    assert!(full > 800 && full <= 1011, "{full}");
    // ...and the bucket is empty again.
    send_addrs(
        &mut p,
        T0 + Duration::from_secs(20_000),
        PeerId(1),
        &batch(4),
    );
    assert_eq!(p.addrman().size(), full);
}

#[test]
fn an_outbound_peer_answering_our_getaddr_may_send_a_thousand_at_once() {
    let mut p = pool(local_config());
    p.add_addresses(
        T0,
        &[(a("127.0.1.1:18444"), ServiceFlags::NETWORK, T0)],
        a("127.0.0.1:1"),
    );
    let (peer, _) = join_outbound(&mut p, T0, 1);
    assert!(drain(&mut p).contains(&Output::Peer {
        peer,
        command: PeerCommand::Send(NetworkMessage::GetAddr)
    }));
    let answer: Vec<AddrV2Message> = (0..1000)
        .map(|i| v2(a(&format!("127.9.{}.{}:1", i / 200, i % 200 + 1)), T0))
        .collect();
    send_addrs(&mut p, T0, peer, &answer);
    assert!(p.addrman().size() > 800, "{}", p.addrman().size());
}

#[test]
fn banned_and_unusable_addresses_are_neither_kept_nor_relayed_nor_handed_out() {
    let mut config = local_config();
    config.addrman.allow_local = false;
    let mut p = pool(config);
    for (id, ip) in [
        (1, "8.8.1.1:8333"),
        (2, "8.9.1.1:8333"),
        (3, "8.10.1.1:8333"),
    ] {
        p.handle_inbound(T0, PeerId(id), a(ip)).unwrap();
        handshake(&mut p, T0, PeerId(id));
    }
    p.ban(
        T0,
        Subnet::from(a("9.9.0.0:1").host),
        T0 + Duration::from_secs(3600),
    );
    drain(&mut p);
    // Tokens for a small announcement.
    let later = T0 + Duration::from_secs(100);
    let announced = [
        v2(a("9.9.0.0:8333"), later),
        v2(a("192.168.1.7:8333"), later),
        v2(a("7.7.7.7:8333"), later),
    ];
    send_addrs(&mut p, later, PeerId(1), &announced);
    assert!(
        p.addrman().info(&a("9.9.0.0:8333")).is_none(),
        "banned kept"
    );
    assert!(p.addrman().info(&a("192.168.1.7:8333")).is_none());
    assert!(p.addrman().info(&a("7.7.7.7:8333")).is_some());
    let relayed: Vec<NetAddr> = drain(&mut p)
        .into_iter()
        .filter_map(|o| match o {
            Output::Peer {
                command: PeerCommand::SendAddrs(addrs),
                ..
            } => Some(addrs),
            _ => None,
        })
        .flatten()
        .map(|m| m.addr)
        .collect();
    assert!(!relayed.is_empty());
    assert!(
        relayed.iter().all(|r| *r == a("7.7.7.7:8333")),
        "{relayed:?}"
    );
    // A ban made after an address is in the book keeps it out of getaddr answers.
    p.ban(
        later,
        Subnet::from(a("7.7.7.7:1").host),
        later + Duration::from_secs(3600),
    );
    getaddr(&mut p, later, PeerId(2));
    let answered: Vec<_> = drain(&mut p)
        .into_iter()
        .filter(|o| {
            matches!(
                o,
                Output::Peer {
                    command: PeerCommand::SendAddrs(_),
                    ..
                }
            )
        })
        .collect();
    assert!(answered.is_empty(), "{answered:?}");
}

#[test]
fn getaddr_is_answered_once_and_only_for_inbound_peers() {
    let mut p = pool(local_config());
    let addrs: Vec<AddrRecord> = (1..=50)
        .map(|i| (a(&format!("127.0.{i}.1:18444")), ServiceFlags::NETWORK, T0))
        .collect();
    p.add_addresses(T0, &addrs, a("127.0.0.1:1"));
    p.handle_inbound(T0, PeerId(1), a("127.0.200.5:5000"))
        .unwrap();
    handshake(&mut p, T0, PeerId(1));
    drain(&mut p);
    getaddr(&mut p, T0, PeerId(1));
    let answer = drain(&mut p);
    let Some(Output::Peer {
        command: PeerCommand::SendAddrs(addrs),
        ..
    }) = answer.first()
    else {
        panic!("{answer:?}")
    };
    assert!(!addrs.is_empty() && addrs.len() <= 50 * MAX_PCT_ADDR_TO_SEND / 100 + 1);
    getaddr(&mut p, T0, PeerId(1));
    assert!(drain(&mut p).is_empty(), "second getaddr ignored");

    let (out_peer, _) = join_outbound(&mut p, T0, 2);
    drain(&mut p);
    getaddr(&mut p, T0, out_peer);
    assert!(drain(&mut p).is_empty(), "outbound peers are not answered");
}

#[test]
fn misbehaviour_leads_to_a_ban_and_banned_addresses_are_refused() {
    let mut p = pool(local_config());
    let addr = a("127.0.0.66:5000");
    p.handle_inbound(T0, PeerId(1), addr).unwrap();
    handshake(&mut p, T0, PeerId(1));
    drain(&mut p);
    let mut score = BanScore::default();
    for _ in 0..5 {
        let what = Misbehaviour::OversizedAddr { count: 1001 };
        misbehave(&mut p, T0, PeerId(1), what, &mut score);
    }
    let out = drain(&mut p);
    assert!(
        out.iter()
            .any(|o| matches!(o, Output::Event(PoolEvent::Banned { .. }))),
        "{out:?}"
    );
    assert!(out.contains(&disconnect(PeerId(1), DisconnectReason::Banned)));
    p.handle_disconnected(T0, PeerId(1), DisconnectReason::Banned);
    // Reconnecting from the same address is refused, from another one is not.
    let mut other_port = addr;
    other_port.port = 6000;
    assert_eq!(
        p.handle_inbound(T0, PeerId(2), other_port),
        Err(Refused::Banned)
    );
    assert!(p
        .handle_inbound(T0, PeerId(3), a("127.0.0.67:5000"))
        .is_ok());
    // After 24 hours the ban is gone.
    let later = T0 + Duration::from_secs(86_400);
    p.handle_timeout(later);
    assert!(p.handle_inbound(later, PeerId(4), addr).is_ok());
}

#[test]
fn whitelisted_noban_peers_are_never_banned() {
    let mut config = local_config();
    config.whitelist = vec![WhitelistEntry {
        subnet: "127.0.0.0/24".parse().unwrap(),
        permissions: Permission::DEFAULT.to_vec(),
    }];
    let mut p = pool(config);
    let addr = a("127.0.0.66:5000");
    p.handle_inbound(T0, PeerId(1), addr).unwrap();
    handshake(&mut p, T0, PeerId(1));
    drain(&mut p);
    let mut score = BanScore::default();
    for _ in 0..10 {
        let what = Misbehaviour::OversizedAddr { count: 1001 };
        misbehave(&mut p, T0, PeerId(1), what, &mut score);
    }
    let out = drain(&mut p);
    assert!(
        !out.iter()
            .any(|o| matches!(o, Output::Event(PoolEvent::Banned { .. }))),
        "{out:?}"
    );
    assert!(p.permissions(PeerId(1)).contains(Permission::NoBan));
}

#[test]
fn a_joined_peer_leaving_is_reported_with_its_reason() {
    let mut p = pool(local_config());
    p.handle_inbound(T0, PeerId(1), a("127.0.0.5:5000"))
        .unwrap();
    // Leaving before the handshake is not news.
    p.handle_inbound(T0, PeerId(2), a("127.0.0.6:5000"))
        .unwrap();
    handshake(&mut p, T0, PeerId(1));
    drain(&mut p);
    p.handle_disconnected(T0, PeerId(2), DisconnectReason::HandshakeTimeout);
    assert!(drain(&mut p).is_empty());
    p.handle_disconnected(T0, PeerId(1), DisconnectReason::RemoteClosed);
    assert_eq!(
        drain(&mut p),
        vec![Output::Event(PoolEvent::PeerLeft {
            peer: PeerId(1),
            addr: a("127.0.0.5:5000"),
            reason: DisconnectReason::RemoteClosed
        })]
    );
}

#[test]
fn a_ban_made_while_dialing_closes_the_connection_once_it_opens() {
    let mut p = pool(local_config());
    let target = a("127.0.9.1:18444");
    p.add_addresses(T0, &[(target, ServiceFlags::NETWORK, T0)], a("127.0.0.1:1"));
    p.handle_timeout(T0);
    let req = drain(&mut p)
        .iter()
        .find_map(|o| match o {
            Output::Dial { req, addr, .. } if *addr == target => Some(*req),
            _ => None,
        })
        .expect("a dial to the only address");
    // Banned while the dial is under way (found by the simulator: peerpool-sim's replay
    // scenario, seed 125).
    p.ban(
        T0,
        Subnet::from(target.host),
        T0 + Duration::from_secs(3600),
    );
    drain(&mut p);
    p.handle_dial_succeeded(T0, req, PeerId(1));
    assert_eq!(
        drain(&mut p),
        vec![disconnect(PeerId(1), DisconnectReason::Banned)]
    );
}

#[test]
fn network_activity_off_disconnects_everyone_and_pauses_dials_until_back_on() {
    let mut p = pool(local_config());
    let addrs: Vec<AddrRecord> = (1..=20)
        .map(|i| (a(&format!("127.0.{i}.1:18444")), ServiceFlags::NETWORK, T0))
        .collect();
    p.add_addresses(T0, &addrs, a("127.0.0.1:1"));
    let manual = a("127.0.77.1:18444");
    p.add_node(T0, manual).unwrap();
    let (out_peer, _) = join_outbound(&mut p, T0, 1);
    p.handle_inbound(T0, PeerId(2), a("127.0.50.1:40000"))
        .unwrap();
    drain(&mut p);

    p.set_network_active(T0, false);
    assert!(!p.network_active());
    let out = drain(&mut p);
    for peer in [out_peer, PeerId(2)] {
        assert!(
            out.contains(&disconnect(peer, DisconnectReason::Requested)),
            "{out:?}"
        );
    }
    p.handle_disconnected(T0, out_peer, DisconnectReason::Requested);
    p.handle_disconnected(T0, PeerId(2), DisconnectReason::Requested);
    drain(&mut p);
    assert_eq!(
        p.handle_inbound(T0, PeerId(3), a("127.0.51.1:40000")),
        Err(Refused::NetworkInactive)
    );
    // Ten minutes paused: no dial of any kind, no reseed, and no deadline already past (a
    // runtime would otherwise spin).
    let later = T0 + Duration::from_secs(600);
    let out = run_until(&mut p, later);
    assert!(
        !out.iter()
            .any(|o| matches!(o, Output::Dial { .. } | Output::Reseed)),
        "{out:?}"
    );
    assert!(
        p.poll_timeout().map_or(true, |t| t > later),
        "{:?}",
        p.poll_timeout()
    );
    let tries_before: u32 = (1..=20)
        .filter_map(|i| p.addrman().info(&a(&format!("127.0.{i}.1:18444"))))
        .map(|i| i.attempts)
        .sum();

    p.set_network_active(later, true);
    assert!(p.poll_timeout().is_some_and(|t| t <= later));
    let out = run_until(&mut p, later + Duration::from_secs(4));
    let dials: Vec<(NetAddr, ConnKind)> = out
        .iter()
        .filter_map(|o| match o {
            Output::Dial { addr, kind, .. } => Some((*addr, *kind)),
            _ => None,
        })
        .collect();
    assert!(dials.contains(&(manual, ConnKind::Manual)), "{dials:?}");
    assert_eq!(
        dials
            .iter()
            .filter(|(_, k)| *k == ConnKind::Outbound)
            .count(),
        8,
        "{dials:?}"
    );
    let tries_after: u32 = (1..=20)
        .filter_map(|i| p.addrman().info(&a(&format!("127.0.{i}.1:18444"))))
        .map(|i| i.attempts)
        .sum();
    assert_eq!(
        tries_before, tries_after,
        "pausing counted no failed attempt"
    );
}

/// Dials what the machine asks for at `now` and returns the requests of `kind`.
fn dials_of(out: &[Output], kind: ConnKind) -> Vec<(ReqId, NetAddr)> {
    out.iter()
        .filter_map(|o| match o {
            Output::Dial { req, addr, kind: k } if *k == kind => Some((*req, *addr)),
            _ => None,
        })
        .collect()
}

#[test]
fn manual_peers_are_not_punished_and_their_failed_dials_are_not_counted() {
    let mut p = pool(local_config());
    let manual = a("127.0.44.1:18444");
    // The address is in the book too, so its attempt counter can be read.
    p.add_addresses(T0, &[(manual, ServiceFlags::NETWORK, T0)], a("127.0.0.1:1"));
    p.add_node(T0, manual).unwrap();
    let out = run_until(&mut p, T0 + Duration::from_millis(1));
    let [(req, addr)] = dials_of(&out, ConnKind::Manual)[..] else {
        panic!("{out:?}")
    };
    assert_eq!(addr, manual);
    p.handle_dial_failed(T0, req);
    let info = p.addrman().info(&manual).unwrap();
    assert_eq!(
        info.attempts, 0,
        "a manual dial's failure is not the book's business"
    );
    assert!(info.last_try.is_some());

    // Redialed after its backoff; this time it connects, then misbehaves badly.
    let later = T0 + Duration::from_secs(10);
    let out = run_until(&mut p, later);
    let [(req, _)] = dials_of(&out, ConnKind::Manual)[..] else {
        panic!("{out:?}")
    };
    p.handle_dial_succeeded(later, req, PeerId(7));
    handshake(&mut p, later, PeerId(7));
    drain(&mut p);
    let mut score = BanScore::default();
    for _ in 0..10 {
        let what = Misbehaviour::OversizedAddr { count: 1001 };
        misbehave(&mut p, later, PeerId(7), what, &mut score);
    }
    let out = drain(&mut p);
    assert!(
        !any_disconnect(&out)
            && !out
                .iter()
                .any(|o| matches!(o, Output::Event(PoolEvent::Banned { .. }))),
        "{out:?}"
    );
    assert!(!p.banman().is_banned(&manual, later));
}

#[test]
fn an_automatic_dial_failure_is_counted() {
    let mut p = pool(local_config());
    let addr = a("127.0.45.1:18444");
    p.add_addresses(T0, &[(addr, ServiceFlags::NETWORK, T0)], a("127.0.0.1:1"));
    let out = run_until(&mut p, T0 + Duration::from_secs(1));
    let [(req, dialed)] = dials_of(&out, ConnKind::Outbound)[..] else {
        panic!("{out:?}")
    };
    assert_eq!(dialed, addr);
    p.handle_dial_failed(T0, req);
    assert_eq!(p.addrman().info(&addr).unwrap().attempts, 1);
}

#[test]
fn which_addresses_the_rate_limit_lets_in_is_not_the_senders_choice() {
    let batch: Vec<AddrV2Message> = (1..=10)
        .map(|i| v2(a(&format!("127.0.{i}.9:18444")), T0))
        .collect();
    let mut kept = BTreeSet::new();
    for seed in 0..20 {
        let mut p = PoolMachine::new(local_config(), [7; 16], seed, T0);
        p.handle_inbound(T0, PeerId(1), a("127.0.200.5:5000"))
            .unwrap();
        handshake(&mut p, T0, PeerId(1));
        // One token: one address of the ten gets in.
        send_addrs(&mut p, T0, PeerId(1), &batch);
        let listed: Vec<NetAddr> = p.addrman().listing().into_iter().map(|i| i.addr).collect();
        assert_eq!(listed.len(), 1, "{listed:?}");
        kept.insert(listed[0]);
    }
    assert!(kept.len() > 3, "always the same few: {kept:?}");
}
