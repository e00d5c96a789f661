//! A misbehaving peer, played by injecting crafted frames into a connected machine: the bloom
//! rule of BIP111, oversized lists, malformed payloads, bad frames, and the ban threshold.

mod support;

use std::time::Duration;

use bitcoin::p2p::message::NetworkMessage;
use bitcoin::p2p::message_bloom::{BloomFlags, FilterAdd, FilterLoad};
use bitcoin::p2p::ServiceFlags;
use peerpool_core::misbehaviour::Misbehaviour;
use peerpool_core::peer::HANDSHAKE_TIMEOUT;
use peerpool_core::{DisconnectReason, PeerEvent};
use peerpool_wire::frame::MAX_PAYLOAD_LEN;
use peerpool_wire::{FrameError, MessageKind};
use support::*;

use Side::{A, B};

fn bloom_messages() -> [(NetworkMessage, &'static str); 4] {
    [
        (
            NetworkMessage::FilterLoad(FilterLoad {
                filter: vec![0xff; 16],
                hash_funcs: 5,
                tweak: 7,
                flags: BloomFlags::None,
            }),
            "filterload",
        ),
        (
            NetworkMessage::FilterAdd(FilterAdd { data: vec![1; 20] }),
            "filteradd",
        ),
        (NetworkMessage::FilterClear, "filterclear"),
        (NetworkMessage::MemPool, "mempool"),
    ]
}

// ----- BIP111 ------------------------------------------------------------------------------

#[test]
fn bloom_messages_without_node_bloom_disconnect_a_modern_peer() {
    for (msg, command) in bloom_messages() {
        let mut h = Harness::new();
        h.connect();
        h.inject_message(B, &msg);
        let what = Misbehaviour::BloomNotOffered { command };
        assert_eq!(h.misbehaviours(B), [(what, 0)], "{command}");
        h.expect_disconnect(B, DisconnectReason::Misbehaviour(what));
        assert!(
            h.received_kinds(B).is_empty(),
            "{command} must not reach the owner"
        );
        // The Misbehaved event comes out before the Disconnect, so the owner can score it.
        assert!(matches!(
            h.events(B).last(),
            Some(PeerEvent::Misbehaved { .. })
        ));
        assert!(h.disconnected(B).unwrap().is_misbehaviour());
    }
}

#[test]
fn bloom_messages_are_delivered_when_we_offer_node_bloom() {
    for (msg, command) in bloom_messages() {
        let mut h = Setup::default()
            .b(|c| c.services = ServiceFlags::BLOOM)
            .start();
        h.connect();
        h.inject_message(B, &msg);
        assert!(h.misbehaviours(B).is_empty(), "{command}");
        h.expect_ready(B);
        let (kind, decoded) = h.received(B).last().expect("delivered");
        assert_eq!(kind.as_str(), command);
        assert_eq!(decoded, Some(&msg));
    }
}

#[test]
fn bloom_messages_from_a_peer_before_bip111_are_ignored() {
    for (msg, command) in bloom_messages() {
        let mut h = Setup::default()
            .a(|c| c.chain.protocol_version = 70_010)
            .start();
        h.connect();
        h.inject_message(B, &msg);
        assert!(h.events(B).is_empty(), "{command}: {:?}", h.events(B));
        h.expect_ready(B);
    }
    // 70011 is where the rule starts.
    let mut h = Setup::default()
        .a(|c| c.chain.protocol_version = 70_011)
        .start();
    h.connect();
    h.inject_message(B, &NetworkMessage::MemPool);
    h.expect_disconnect(
        B,
        DisconnectReason::Misbehaviour(Misbehaviour::BloomNotOffered { command: "mempool" }),
    );
}

// ----- oversized lists -------------------------------------------------------------------------

/// The three list limits, each crafted as just the entry-count prefix one above the limit:
/// the size check reads the count and stops, so the entries need not exist.
fn oversized() -> [(&'static str, Vec<u8>, Misbehaviour); 3] {
    [
        (
            "inv",
            count_prefix(50_001),
            Misbehaviour::OversizedInventory {
                command: "inv",
                count: 50_001,
            },
        ),
        (
            "addr",
            count_prefix(1_001),
            Misbehaviour::OversizedAddr { count: 1_001 },
        ),
        (
            "headers",
            count_prefix(2_001),
            Misbehaviour::OversizedHeaders { count: 2_001 },
        ),
    ]
}

#[test]
fn an_oversized_list_costs_twenty_and_is_dropped() {
    for (command, payload, what) in oversized() {
        let mut h = Harness::new();
        h.connect();
        h.inject(B, command, &payload);
        assert_eq!(h.misbehaviours(B), [(what, 20)], "{command}");
        assert!(h.received_kinds(B).is_empty(), "{command} dropped");
        h.expect_ready(B);
        assert_eq!(h.m(B).ban_score(h.now()), 20);
    }
}

#[test]
fn lists_at_the_limit_are_not_oversized() {
    // Exactly at the limit the count passes; the (absent) entries then fail to decode, which
    // is a different, smaller offence. That shows which check caught it.
    for (command, count) in [("inv", 50_000), ("addr", 1_000), ("headers", 2_000)] {
        let mut h = Harness::new();
        h.connect();
        h.inject(B, command, &count_prefix(count));
        let scores: Vec<_> = h
            .misbehaviours(B)
            .into_iter()
            .map(|(w, s)| (w.score(), s))
            .collect();
        assert_eq!(scores, [(10, 10)], "{command}: {:?}", h.misbehaviours(B));
    }
}

#[test]
fn five_oversized_lists_in_a_burst_reach_the_threshold() {
    for (command, payload, what) in oversized() {
        let mut h = Harness::new();
        h.connect();
        for _ in 0..4 {
            h.inject(B, command, &payload);
        }
        h.expect_ready(B);
        h.inject(B, command, &payload);
        let scores: Vec<u32> = h.misbehaviours(B).into_iter().map(|(_, s)| s).collect();
        assert_eq!(scores, [20, 40, 60, 80, 100], "{command}");
        h.expect_disconnect(B, DisconnectReason::Misbehaviour(what));
    }
}

#[test]
fn the_same_offences_spread_out_stay_below_the_threshold() {
    // The score decays (half-life 60 s): five offences a second apart stay just below 100.
    let mut h = Harness::new();
    h.connect();
    for _ in 0..5 {
        h.inject(B, "inv", &count_prefix(50_001));
        h.elapse(Duration::from_secs(1));
    }
    h.expect_ready(B);
    let last = h.misbehaviours(B).last().unwrap().1;
    assert!((90..100).contains(&last), "{last}");
}

#[test]
fn without_a_threshold_the_owner_decides() {
    let mut h = Setup::default().b(|c| c.ban_threshold = None).start();
    h.connect();
    for _ in 0..10 {
        h.inject(B, "headers", &count_prefix(2_001));
    }
    h.expect_ready(B);
    let scores: Vec<u32> = h.misbehaviours(B).into_iter().map(|(_, s)| s).collect();
    assert_eq!(scores, (1..=10).map(|i| 20 * i).collect::<Vec<_>>());
    // Rules that Core enforces by disconnecting still disconnect.
    h.inject_message(B, &NetworkMessage::WtxidRelay);
    h.expect_disconnect(
        B,
        DisconnectReason::Misbehaviour(Misbehaviour::FeatureAfterVerack {
            command: "wtxidrelay",
        }),
    );
}

#[test]
fn a_lower_threshold_disconnects_sooner() {
    let mut h = Setup::default().b(|c| c.ban_threshold = Some(30)).start();
    h.connect();
    h.inject(B, "addr", &count_prefix(1_001));
    h.expect_ready(B);
    h.inject(B, "addr", &count_prefix(1_001));
    h.expect_disconnect(
        B,
        DisconnectReason::Misbehaviour(Misbehaviour::OversizedAddr { count: 1_001 }),
    );
}

// ----- malformed payloads and bad frames ------------------------------------------------------

#[test]
fn a_ping_without_nonce_is_ignored_like_a_pre_bip31_ping() {
    let mut h = Harness::new();
    h.connect();
    let sent_before = h.sent_commands(B).len();
    h.inject(B, "ping", &[1, 2, 3]);
    assert!(h.misbehaviours(B).is_empty());
    assert_eq!(h.sent_commands(B).len(), sent_before, "nothing to answer");
    h.expect_ready(B);
}

#[test]
fn a_malformed_payload_costs_ten() {
    for (command, payload) in [
        ("ping", vec![7; 9]),          // a nonce and a stray byte
        ("inv", vec![1, 1, 0, 0, 0]),  // one entry announced, four bytes of it
        ("feefilter", vec![0; 9]),     // trailing byte
        ("addr", vec![1, 0x29, 0x2a]), // one address, cut inside its time
    ] {
        let mut h = Harness::new();
        h.connect();
        h.inject(B, command, &payload);
        let kind = MessageKind::from_command(command);
        assert_eq!(
            h.misbehaviours(B),
            [(
                Misbehaviour::MalformedMessage {
                    command: kind.as_str()
                },
                10
            )],
            "{command}"
        );
        assert!(h.received_kinds(B).is_empty(), "{command}");
        assert!(h.sent(B).is_empty(), "{command}: no pong to a broken ping");
        h.expect_ready(B);
    }
}

#[test]
fn messages_not_needed_are_checked_only_when_decoded() {
    // With decoding off, a broken `tx` is not parsed (the machine does not need it) and, as
    // nobody asked for it, produces no event either.
    let mut h = Setup::default().decode(false).start();
    h.connect();
    h.inject(B, "tx", &[1, 2, 3]);
    assert!(h.misbehaviours(B).is_empty());
    assert!(!h.received(B).any(|(k, _)| k == MessageKind::Tx));
    h.expect_ready(B);

    let mut h = Harness::new();
    h.connect();
    h.inject(B, "tx", &[1, 2, 3]);
    assert_eq!(
        h.misbehaviours(B),
        [(Misbehaviour::MalformedMessage { command: "tx" }, 10)]
    );
}

#[test]
fn a_bad_checksum_costs_one_and_only_that_message_is_lost() {
    let mut h = Harness::new();
    h.connect();
    let mut bad = frame("ping", &7u64.to_le_bytes());
    *bad.last_mut().unwrap() ^= 0x55;
    let mut wire = bad;
    wire.extend_from_slice(&frame("ping", &8u64.to_le_bytes()));
    h.inject_wire(B, &wire);
    assert_eq!(h.misbehaviours(B), [(Misbehaviour::BadChecksum, 1)]);
    // The stream stayed in sync: the next ping was answered.
    assert_eq!(h.sent_commands(B), ["pong"]);
    assert!(matches!(h.sent(B)[0].message, NetworkMessage::Pong(8)));
    h.expect_ready(B);
}

#[test]
fn a_malformed_command_costs_one() {
    let mut h = Harness::new();
    h.connect();
    let mut wire = frame("ping", &7u64.to_le_bytes());
    wire[4] = 0x01; // a control character in the command
    h.inject_wire(B, &wire);
    assert_eq!(h.misbehaviours(B), [(Misbehaviour::BadCommand, 1)]);
    h.expect_ready(B);
}

#[test]
fn a_frame_that_breaks_the_stream_disconnects() {
    let mut h = Harness::new();
    h.connect();
    let mut wire = frame("ping", &7u64.to_le_bytes());
    wire[0] ^= 0xff;
    h.inject_wire(B, &wire);
    let Some(DisconnectReason::BadFrame(e @ FrameError::BadMagic { .. })) = h.disconnected(B)
    else {
        panic!("{:?}", h.disconnected(B))
    };
    assert!(e.is_fatal());
    assert!(
        h.misbehaviours(B).is_empty(),
        "no score: the connection is simply unusable"
    );
    assert_eq!(h.m(B).poll_timeout(), None);

    let mut h = Harness::new();
    h.connect();
    let mut header = frame("block", &[]);
    header[16..20].copy_from_slice(&(MAX_PAYLOAD_LEN + 1).to_le_bytes());
    h.inject_wire(B, &header);
    let Some(DisconnectReason::BadFrame(FrameError::Oversized { length, .. })) = h.disconnected(B)
    else {
        panic!("{:?}", h.disconnected(B))
    };
    assert_eq!(*length, MAX_PAYLOAD_LEN + 1);
}

#[test]
fn a_version_with_an_overlong_user_agent_is_dropped_and_the_handshake_never_completes() {
    // Core refuses to parse such a version (its LIMITED_STRING throws) and so never answers;
    // the dialer then runs into the handshake timeout.
    let mut h = Harness::new();
    let mut v = version_message(70016, 99, T0);
    v.user_agent = "u".repeat(257);
    h.inject_message(B, &NetworkMessage::Version(v));
    assert_eq!(h.misbehaviours(B), [(Misbehaviour::UserAgentTooLong, 10)]);
    assert!(h.sent(B).is_empty(), "no reply to a refused version");
    assert!(!h
        .events(B)
        .iter()
        .any(|e| matches!(e, PeerEvent::VersionReceived { .. })));
    assert!(h.m(B).remote_version().is_none());
    h.advance_to(T0 + HANDSHAKE_TIMEOUT);
    h.expect_disconnect(B, DisconnectReason::HandshakeTimeout);

    // 256 bytes is still fine.
    let mut h = Harness::new();
    let mut v = version_message(70016, 99, T0);
    v.user_agent = "u".repeat(256);
    h.inject_message(B, &NetworkMessage::Version(v));
    assert!(h.misbehaviours(B).is_empty());
    assert_eq!(h.m(B).stats(h.now()).user_agent.len(), 256);
    assert_eq!(
        h.sent_commands(B),
        ["version", "wtxidrelay", "sendaddrv2", "verack"]
    );
}

#[test]
fn misbehaviour_before_the_handshake_is_not_judged() {
    // Out of place messages are ignored whole, before their size is looked at.
    let mut h = Harness::new();
    h.inject(B, "inv", &count_prefix(50_001));
    h.inject_message(B, &NetworkMessage::MemPool);
    assert!(h.events(B).is_empty());
    h.handshake();
    assert!(h.misbehaviours(A).is_empty() && h.misbehaviours(B).is_empty());
}

#[test]
fn the_outbound_side_judges_the_same_way() {
    let mut h = Harness::new();
    h.connect();
    h.inject(A, "inv", &count_prefix(50_001));
    h.inject_message(A, &NetworkMessage::FilterClear);
    assert_eq!(
        h.misbehaviours(A),
        [
            (
                Misbehaviour::OversizedInventory {
                    command: "inv",
                    count: 50_001
                },
                20
            ),
            (
                Misbehaviour::BloomNotOffered {
                    command: "filterclear"
                },
                20
            )
        ]
    );
    h.expect_disconnect(
        A,
        DisconnectReason::Misbehaviour(Misbehaviour::BloomNotOffered {
            command: "filterclear",
        }),
    );
    // B's runtime sees the socket close.
    h.deliver_all();
    h.expect_disconnect(B, DisconnectReason::RemoteClosed);
}
