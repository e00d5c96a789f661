//! Unit tests of one machine, driven by hand with literal times and fixed seeds. They look at
//! the private state (ping state, held queue, trickle) the scenario tests in `core/tests/` can
//! only infer from outputs.

use std::net::SocketAddr;

use bitcoin::consensus::encode::VarInt;
use bitcoin::hashes::Hash;
use bitcoin::p2p::message_blockdata::Inventory;
use bitcoin::Txid;
use peerpool_wire::message::encode_payload;

use super::receive::{is_bloom_kind, oversized};
use super::*;
use crate::peer::config::{HANDSHAKE_TIMEOUT, PING_INTERVAL, TIMEOUT_INTERVAL};
use crate::peer::inventory::MAX_PENDING;
use peerpool_wire::frame::{Command, Frame};

const T0: Time = Time::from_secs(1_700_000_000);

fn addrs() -> ConnectionAddrs {
    ConnectionAddrs {
        remote: "198.51.100.7:8333".parse::<SocketAddr>().unwrap(),
        local: None,
    }
}

fn machine(direction: Direction, seed: u64) -> PeerMachine {
    let config = PeerConfig::new(peerpool_wire::Network::Mainnet.params());
    PeerMachine::new(
        Arc::new(config),
        PeerId(7),
        direction,
        addrs(),
        T0,
        100,
        seed,
    )
}

fn version(v: u32, nonce: u64) -> VersionMessage {
    VersionMessage {
        version: v,
        services: ServiceFlags::NETWORK,
        timestamp: T0.as_secs() as i64,
        receiver: Address::new(&addrs().remote, ServiceFlags::NONE),
        sender: Address {
            services: ServiceFlags::NONE,
            address: [0; 8],
            port: 0,
        },
        nonce,
        user_agent: "/test:1.0/".into(),
        start_height: 5,
        relay: true,
    }
}

/// A frame of `command` carrying `payload`.
fn frame(command: &str, payload: &[u8]) -> Frame {
    Frame {
        command: Command::new(command).unwrap(),
        payload: payload.to_vec().into(),
    }
}

/// Hands `msg` to the machine as its encoded payload.
fn receive(m: &mut PeerMachine, now: Time, msg: &NetworkMessage) {
    m.handle_frame(now, &frame(msg.cmd(), &encode_payload(msg)), |_| false);
}

fn drain(m: &mut PeerMachine) -> Vec<PeerOutput> {
    std::iter::from_fn(|| m.poll_output()).collect()
}

fn sent_commands(outputs: &[PeerOutput]) -> Vec<&'static str> {
    outputs
        .iter()
        .filter_map(|o| match o {
            PeerOutput::Send { message, .. } => Some(message.cmd()),
            _ => None,
        })
        .collect()
}

/// A machine whose handshake completed at `T0` (at protocol `v`), outputs drained.
fn ready(direction: Direction, v: u32) -> PeerMachine {
    let mut m = machine(direction, 11);
    receive(&mut m, T0, &NetworkMessage::Version(version(v, 99)));
    receive(&mut m, T0, &NetworkMessage::Verack);
    drain(&mut m);
    assert!(m.is_ready());
    m
}

fn tx(n: u8) -> Inventory {
    Inventory::Transaction(Txid::from_byte_array([n; 32]))
}

// ----- private helpers -------------------------------------------------------------------------

#[test]
fn oversized_judges_the_count_alone() {
    let count = |n: u64| bitcoin::consensus::encode::serialize(&VarInt(n));
    for (kind, limit) in [
        (MessageKind::Inv, 50_000),
        (MessageKind::GetData, 50_000),
        (MessageKind::NotFound, 50_000),
        (MessageKind::Addr, 1_000),
        (MessageKind::AddrV2, 1_000),
        (MessageKind::Headers, 2_000),
    ] {
        assert_eq!(oversized(kind, &count(limit)), None, "{kind} at the limit");
        let m = oversized(kind, &count(limit + 1)).unwrap_or_else(|| panic!("{kind}"));
        assert_eq!(m.score(), 20);
        assert!(!m.disconnects());
        // A count of u64::MAX must not overflow anything.
        assert!(oversized(kind, &count(u64::MAX)).is_some());
    }
    assert_eq!(
        oversized(MessageKind::GetData, &count(60_000)),
        Some(Misbehaviour::OversizedInventory {
            command: "getdata",
            count: 60_000
        })
    );
    // Not a list, or no readable count: not this check's business.
    assert_eq!(oversized(MessageKind::Tx, &count(1 << 40)), None);
    assert_eq!(oversized(MessageKind::Inv, &[]), None);
    assert_eq!(oversized(MessageKind::Inv, &[0xfe, 0x01]), None);
}

#[test]
fn bloom_kinds_are_the_bip111_four() {
    let bloom: Vec<_> = MessageKind::ALL
        .iter()
        .copied()
        .filter(|k| is_bloom_kind(*k))
        .collect();
    assert_eq!(
        bloom,
        [
            MessageKind::MemPool,
            MessageKind::FilterLoad,
            MessageKind::FilterAdd,
            MessageKind::FilterClear
        ]
    );
}

#[test]
fn exponential_delays_are_capped_and_seeded() {
    let mean = Duration::from_secs(5);
    let mut rng = fastrand::Rng::with_seed(3);
    let draws: Vec<Duration> = (0..10_000).map(|_| exponential(&mut rng, mean)).collect();
    assert!(draws.iter().all(|d| *d <= mean * 10));
    let avg = draws.iter().sum::<Duration>().as_secs_f64() / draws.len() as f64;
    assert!((avg - 5.0).abs() < 0.25, "{avg}");
    let mut again = fastrand::Rng::with_seed(3);
    assert_eq!(exponential(&mut again, mean), draws[0]);
    assert_eq!(
        exponential(&mut fastrand::Rng::with_seed(9), Duration::ZERO),
        Duration::ZERO
    );
}

// ----- handshake ---------------------------------------------------------------------------------

#[test]
fn outbound_queues_its_version_at_birth_inbound_does_not() {
    let mut out = machine(Direction::Outbound, 1);
    assert_eq!(sent_commands(&drain(&mut out)), ["version"]);
    let mut inb = machine(Direction::Inbound, 1);
    assert!(drain(&mut inb).is_empty());
    // Same seed, same nonce; never zero (zero means "no nonce" to Core).
    assert_eq!(out.nonce(), inb.nonce());
    assert_ne!(out.nonce(), 0);
    assert_ne!(machine(Direction::Outbound, 2).nonce(), out.nonce());
}

#[test]
fn the_handshake_event_comes_before_anything_sent_after_verack() {
    let mut m = machine(Direction::Outbound, 1);
    m.queue_message(NetworkMessage::GetAddr, true).unwrap();
    drain(&mut m);
    receive(&mut m, T0, &NetworkMessage::Version(version(70016, 5)));
    receive(&mut m, T0, &NetworkMessage::Verack);
    let out = drain(&mut m);
    let event = out
        .iter()
        .position(|o| matches!(o, PeerOutput::Event(PeerEvent::HandshakeCompleted { .. })))
        .expect("completed");
    let first_post = out
        .iter()
        .position(|o| {
            matches!(
                o,
                PeerOutput::Send {
                    message: NetworkMessage::SendHeaders,
                    ..
                }
            )
        })
        .expect("sendheaders");
    assert!(event < first_post, "{out:?}");
    assert_eq!(
        sent_commands(&out),
        [
            "wtxidrelay",
            "sendaddrv2",
            "verack",
            "sendheaders",
            "getaddr",
            "ping"
        ]
    );
    assert!(matches!(
        out.iter().find(|o| matches!(
            o,
            PeerOutput::Send {
                message: NetworkMessage::GetAddr,
                ..
            }
        )),
        Some(PeerOutput::Send {
            token: Some(SendToken(1)),
            ..
        })
    ));
}

#[test]
fn verack_before_version_is_ignored() {
    let mut m = machine(Direction::Inbound, 1);
    receive(&mut m, T0, &NetworkMessage::Verack);
    assert!(drain(&mut m).is_empty());
    assert_eq!(m.state(), &HandshakeState::AwaitingVersion { since: T0 });
}

#[test]
fn feature_messages_are_recorded_only_at_their_version() {
    // wtxidrelay from a peer that negotiated below 70016 does not turn wtxid relay on.
    let mut m = machine(Direction::Inbound, 1);
    receive(&mut m, T0, &NetworkMessage::Version(version(70015, 5)));
    receive(&mut m, T0, &NetworkMessage::WtxidRelay);
    assert!(!m.stats(T0).wtxid_relay);
    let mut m = machine(Direction::Inbound, 1);
    receive(&mut m, T0, &NetworkMessage::Version(version(70016, 5)));
    receive(&mut m, T0, &NetworkMessage::WtxidRelay);
    assert!(m.stats(T0).wtxid_relay);
}

#[test]
fn bip434_features_are_noted_between_version_and_verack_only() {
    use peerpool_wire::feature::Feature;
    let feature = |id: &[u8]| frame("feature", &Feature::new(id, [1, 2, 3]).to_payload());
    let mut m = machine(Direction::Inbound, 1);
    // Before the version: ignored like any other message.
    m.handle_frame(T0, &feature(b"BIP0000"), |_| false);
    receive(&mut m, T0, &NetworkMessage::Version(version(70017, 5)));
    drain(&mut m);
    for id in [&b"BIP434"[..], b"BIP434", b"https://example.invalid/x\x01"] {
        m.handle_frame(T0, &feature(id), |_| false);
    }
    // Out of the BIP's bounds: ignored, no ban score, the handshake goes on.
    m.handle_frame(T0, &frame("feature", b"\x03BIP\x00"), |_| false);
    m.handle_frame(T0, &frame("feature", b"\x04BIP1\x00zz"), |_| false);
    for n in 0..2 * MAX_FEATURES_KEPT {
        m.handle_frame(T0, &feature(format!("many{n}").as_bytes()), |_| false);
    }
    receive(&mut m, T0, &NetworkMessage::Verack);
    assert!(m.is_ready());
    // After verack: ignored (BIP434 allows it).
    m.handle_frame(T0, &feature(b"LATE"), |_| false);
    let stats = m.stats(T0);
    assert!(!m.is_disconnected());
    assert_eq!(stats.ban_score, 0);
    assert_eq!(stats.features.len(), MAX_FEATURES_KEPT);
    assert_eq!(stats.features[0], "BIP434");
    assert_eq!(stats.features[1], "https://example.invalid/x\\x01");
    assert_eq!(stats.features[2], "many0");
    assert!(!stats.features.iter().any(|f| f == "LATE" || f == "BIP0000"));
    // The bytes are counted under the message's own name, as Core's per-message table does.
    assert!(stats
        .bytes_recv_per_msg
        .iter()
        .any(|&(k, n)| k == MessageKind::Feature && n > 0));
}

// ----- keepalive ---------------------------------------------------------------------------------

#[test]
fn ping_state_follows_the_pongs() {
    let mut m = ready(Direction::Outbound, 70016);
    let Ping::Waiting { nonce, since } = m.ping else {
        panic!("{:?}", m.ping)
    };
    assert_eq!(since, T0);
    assert_eq!(m.poll_timeout(), Some(T0 + TIMEOUT_INTERVAL));

    let t = T0 + Duration::from_millis(5);
    m.handle_frame(t, &frame("pong", &(nonce + 1).to_le_bytes()), |_| false);
    assert!(
        matches!(m.ping, Ping::Waiting { .. }),
        "wrong nonce: still waiting"
    );
    // Extra bytes after the nonce are tolerated, as Core reads only the nonce.
    let mut long = nonce.to_le_bytes().to_vec();
    long.push(0xaa);
    m.handle_frame(t, &frame("pong", &long), |_| false);
    assert!(matches!(m.ping, Ping::Idle { next } if next == T0 + PING_INTERVAL));
    assert_eq!(m.ping_stats.last_rtt_micros, Some(5_000));

    m.handle_timeout(T0 + PING_INTERVAL);
    let Ping::Waiting {
        nonce: second,
        since,
    } = m.ping
    else {
        panic!("{:?}", m.ping)
    };
    assert_eq!(since, T0 + PING_INTERVAL);
    assert_ne!(second, nonce, "a fresh nonce each time");
    assert_eq!(m.ping_stats.last_nonce, Some(second));
}

#[test]
fn pings_to_a_pre_bip31_peer_expect_no_pong() {
    let mut m = ready(Direction::Outbound, 60_000);
    assert!(matches!(m.ping, Ping::Idle { next } if next == T0 + PING_INTERVAL));
    assert_eq!(m.stats(T0).ping.wait_micros, None);
    // Its pings are not answered either: it would not understand a pong.
    receive(&mut m, T0, &NetworkMessage::Ping(3));
    assert!(sent_commands(&drain(&mut m)).is_empty());

    let m = ready(Direction::Outbound, 60_001);
    assert!(matches!(m.ping, Ping::Waiting { .. }));
}

#[test]
fn poll_timeout_is_the_earliest_deadline() {
    let mut m = machine(Direction::Inbound, 5);
    assert_eq!(m.poll_timeout(), Some(T0 + HANDSHAKE_TIMEOUT));
    // A trickle before the handshake deadline comes first.
    m.queue_inventory(T0, tx(1));
    let trickle = m.next_trickle.expect("armed");
    assert_eq!(m.poll_timeout(), Some(trickle.min(T0 + HANDSHAKE_TIMEOUT)));
    // At the trickle, nothing is sent before the handshake; the entry stays queued.
    m.handle_timeout(trickle);
    assert!(drain(&mut m).is_empty());
    assert_eq!(m.next_trickle, None);
    assert_eq!(m.inventory.as_ref().unwrap().pending, [tx(1)]);
    assert_eq!(m.poll_timeout(), Some(T0 + HANDSHAKE_TIMEOUT));

    // Ready: the earlier of the next ping and the silence deadline.
    let mut m = ready(Direction::Inbound, 70016);
    let Ping::Waiting { nonce, .. } = m.ping else {
        unreachable!()
    };
    m.handle_frame(T0, &frame("pong", &nonce.to_le_bytes()), |_| false);
    assert_eq!(m.poll_timeout(), Some(T0 + PING_INTERVAL));
    let later = T0 + PING_INTERVAL;
    m.handle_timeout(later);
    // Ping out at T0 + 2 min; the peer last spoke at T0, so silence ends it first.
    assert_eq!(m.poll_timeout(), Some(T0 + TIMEOUT_INTERVAL));
}

// ----- commands and disconnection ----------------------------------------------------------------

#[test]
fn disconnect_drops_what_was_not_handed_out_and_happens_once() {
    let mut m = machine(Direction::Outbound, 1);
    m.queue_message(NetworkMessage::GetAddr, false).unwrap();
    m.disconnect(T0, DisconnectReason::Shutdown);
    m.disconnect(T0, DisconnectReason::Requested);
    // Events already reported stay (the owner may care); sends are dropped.
    let out: Vec<PeerOutput> = drain(&mut m)
        .into_iter()
        .filter(|o| !matches!(o, PeerOutput::Event(_)))
        .collect();
    assert!(
        matches!(
            out[..],
            [PeerOutput::Disconnect(DisconnectReason::Shutdown)]
        ),
        "{out:?}"
    );
    assert!(m.held.is_empty());
    assert_eq!(
        m.queue_message(NetworkMessage::GetAddr, true),
        Err(QueueError::Disconnected)
    );
    m.queue_inventory(T0, tx(1));
    m.handle_timeout(T0 + HANDSHAKE_TIMEOUT);
    receive(&mut m, T0, &NetworkMessage::Version(version(70016, 5)));
    assert!(drain(&mut m).is_empty());
    assert_eq!(m.disconnect_reason(), Some(&DisconnectReason::Shutdown));
}

#[test]
fn the_trickle_queue_is_bounded() {
    let mut m = ready(Direction::Outbound, 70016);
    for i in 0..=MAX_PENDING as u32 {
        let mut h = [0u8; 32];
        h[..4].copy_from_slice(&i.to_le_bytes());
        m.queue_inventory(T0, Inventory::Transaction(Txid::from_byte_array(h)));
    }
    assert_eq!(m.inventory.as_ref().unwrap().pending.len(), MAX_PENDING);
    let at = m.next_trickle.unwrap();
    m.handle_timeout(at);
    let out = drain(&mut m);
    assert_eq!(sent_commands(&out).len(), MAX_PENDING / MAX_INV_PER_MESSAGE);
    assert!(m.inventory.as_ref().unwrap().pending.is_empty());
}

#[test]
fn handle_sent_accounts_whatever_the_state() {
    let mut m = machine(Direction::Outbound, 1);
    m.handle_sent(T0, MessageKind::Version, 126);
    m.handle_sent(T0 + Duration::from_secs(1), MessageKind::Verack, 24);
    let s = m.stats(T0);
    assert_eq!((s.bytes_sent, s.msgs_sent), (150, 2));
    assert_eq!(s.last_send, Some(T0 + Duration::from_secs(1)));
    assert_eq!(
        s.bytes_sent_per_msg,
        [(MessageKind::Verack, 24), (MessageKind::Version, 126)]
    );
}
