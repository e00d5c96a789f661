//! Connection statistics, checked against what actually crossed the wire.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use bitcoin::p2p::message::NetworkMessage;
use bitcoin::p2p::ServiceFlags;
use peerpool_core::peer::{HandshakeState, PING_INTERVAL};
use peerpool_core::{Direction, DisconnectReason, PeerId};
use peerpool_wire::MessageKind;
use support::*;

use Side::{A, B};

/// Bytes per message kind, from a side's own record of what it wrote.
fn per_kind(sent: &[Sent]) -> Vec<(MessageKind, u64)> {
    let mut m: BTreeMap<&'static str, (MessageKind, u64)> = BTreeMap::new();
    for s in sent {
        let kind = MessageKind::of(&s.message);
        m.entry(kind.as_str()).or_insert((kind, 0)).1 += s.wire_len as u64;
    }
    m.into_values().collect()
}

#[test]
fn byte_and_message_counts_match_the_wire() {
    let mut h = Harness::new();
    h.handshake();
    h.queue(A, NetworkMessage::GetAddr, false);
    h.queue(B, NetworkMessage::FeeFilter(2_000), false);
    h.deliver_all();
    h.run_for(Duration::from_secs(7 * 60));
    h.deliver_all();
    h.expect_ready(A);
    h.expect_ready(B);

    let now = h.now();
    let (a, b) = (h.m(A).stats(now), h.m(B).stats(now));
    let a_bytes: u64 = h.sent(A).iter().map(|s| s.wire_len as u64).sum();
    let b_bytes: u64 = h.sent(B).iter().map(|s| s.wire_len as u64).sum();
    // Every message is at least its 24-byte header; version is the biggest of the lot.
    assert!(a_bytes > 24 * h.sent(A).len() as u64);

    assert_eq!(a.bytes_sent, a_bytes);
    assert_eq!(b.bytes_recv, a_bytes, "B read exactly what A wrote");
    assert_eq!(b.bytes_sent, b_bytes);
    assert_eq!(a.bytes_recv, b_bytes);
    assert_eq!(a.msgs_sent, h.sent(A).len() as u64);
    assert_eq!(b.msgs_recv, h.sent(A).len() as u64);
    assert_eq!(b.msgs_sent, h.sent(B).len() as u64);
    assert_eq!(a.msgs_recv, h.sent(B).len() as u64);

    assert_eq!(a.bytes_sent_per_msg, per_kind(h.sent(A)));
    assert_eq!(b.bytes_recv_per_msg, per_kind(h.sent(A)));
    assert_eq!(b.bytes_sent_per_msg, per_kind(h.sent(B)));
    assert_eq!(a.bytes_recv_per_msg, per_kind(h.sent(B)));
    let names: Vec<&str> = a
        .bytes_sent_per_msg
        .iter()
        .map(|(k, _)| k.as_str())
        .collect();
    assert_eq!(
        names,
        [
            "getaddr",
            "ping",
            "pong",
            "sendaddrv2",
            "sendheaders",
            "verack",
            "version",
            "wtxidrelay"
        ]
    );
    // A version is 24 + 4 + 8 + 8 + 26 + 26 + 8 + (1 + user agent) + 4 + 1 bytes.
    let ua = h.m(A).config().user_agent.as_str().len() as u64;
    assert!(a
        .bytes_sent_per_msg
        .contains(&(MessageKind::Version, 24 + 85 + 1 + ua)));
    assert!(a.bytes_sent_per_msg.contains(&(MessageKind::Verack, 24)));
    assert!(a.bytes_sent_per_msg.contains(&(MessageKind::GetAddr, 24)));
    assert!(b.bytes_sent_per_msg.contains(&(MessageKind::FeeFilter, 32)));

    // Both ends pinged at once and then every two minutes up to T0 + 7 min: 1 + 3 pings.
    let pings = h.sent(A).iter().filter(|s| s.command() == "ping").count();
    assert_eq!(pings, 4);
    assert_eq!(a.last_send, Some(T0 + PING_INTERVAL * 3));
    assert_eq!(a.last_recv, Some(T0 + PING_INTERVAL * 3));
}

#[test]
fn unknown_commands_are_counted_as_other() {
    let mut h = Harness::new();
    h.connect();
    h.inject(B, "xyzzy", &[1, 2, 3]);
    h.inject(B, "plugh", &[]);
    let s = h.m(B).stats(h.now());
    assert!(s
        .bytes_recv_per_msg
        .contains(&(MessageKind::Unknown, 27 + 24)));
    assert_eq!(MessageKind::Unknown.as_str(), "*other*");
    // The owner still gets them, raw.
    assert_eq!(
        h.received_kinds(B),
        [MessageKind::Unknown, MessageKind::Unknown]
    );
}

#[test]
fn last_send_and_last_recv_follow_the_traffic() {
    let mut h = Harness::new();
    let s = h.m(B).stats(h.now());
    assert_eq!((s.last_send, s.last_recv), (None, None));
    assert_eq!(h.m(A).stats(h.now()).last_send, Some(T0), "A's version");

    h.elapse(Duration::from_millis(300));
    h.deliver(A);
    let t1 = T0 + Duration::from_millis(300);
    let s = h.m(B).stats(h.now());
    assert_eq!((s.last_send, s.last_recv), (Some(t1), Some(t1)));
    assert_eq!(h.m(A).stats(h.now()).last_recv, None);

    h.elapse(Duration::from_millis(300));
    h.deliver(B);
    let t2 = t1 + Duration::from_millis(300);
    let s = h.m(A).stats(h.now());
    assert_eq!((s.last_send, s.last_recv), (Some(t2), Some(t2)));
    assert_eq!(h.m(B).stats(h.now()).last_send, Some(t1));
}

#[test]
fn ping_wait_is_reported_while_a_ping_is_outstanding() {
    let mut h = Harness::new();
    h.deliver(A);
    h.deliver(B); // A pings at T0
    let nonce = match h.sent(A).last().unwrap().message {
        NetworkMessage::Ping(n) => n,
        ref m => panic!("{m:?}"),
    };
    h.elapse(Duration::from_millis(250));
    let p = h.m(A).stats(h.now()).ping;
    assert_eq!(p.wait_micros, Some(250_000));
    assert_eq!(p.last_nonce, Some(nonce));
    assert_eq!(p.last_sent, Some(T0));
    assert_eq!((p.last_rtt_micros, p.min_rtt_micros), (None, None));
    // The snapshot is taken at a moment: later means a longer wait.
    assert_eq!(
        h.m(A)
            .stats(h.now() + Duration::from_secs(1))
            .ping
            .wait_micros,
        Some(1_250_000)
    );

    h.deliver(A);
    h.elapse(Duration::from_millis(250));
    h.deliver(B);
    let p = h.m(A).stats(h.now()).ping;
    assert_eq!(p.wait_micros, None);
    assert_eq!(p.last_rtt_micros, Some(500_000));
    assert_eq!(p.min_rtt_micros, Some(500_000));
}

#[test]
fn the_snapshot_describes_the_connection() {
    let mut h = Harness::new();
    let s = h.m(B).stats(T0);
    assert_eq!(s.handshake, HandshakeState::AwaitingVersion { since: T0 });
    assert!(!s.is_ready());
    assert_eq!((s.version, s.their_version, s.starting_height), (0, 0, 0));
    assert_eq!(s.services, ServiceFlags::NONE);
    assert_eq!(s.user_agent, "");
    assert_eq!(s.handshake_completed, None);

    h.elapse(Duration::from_secs(1));
    h.handshake();
    let now = h.now();
    let b = h.m(B).stats(now);
    assert_eq!(b.id, PeerId(2));
    assert_eq!(b.direction, Direction::Inbound);
    assert_eq!(b.addr, A_ADDR.parse().unwrap());
    assert_eq!(b.local_addr, Some(B_ADDR.parse().unwrap()));
    // A's version names the address it dialed: B's, as A sees it.
    assert_eq!(b.addr_local_reported, Some(B_ADDR.parse().unwrap()));
    assert_eq!(b.conn_time, T0);
    assert_eq!(
        b.connected_for(now + Duration::from_secs(9)),
        Duration::from_secs(10)
    );
    assert_eq!(
        b.handshake,
        HandshakeState::Ready {
            since: T0 + Duration::from_secs(1)
        }
    );
    assert!(b.is_ready());
    assert_eq!(b.handshake_completed, Some(T0 + Duration::from_secs(1)));
    assert_eq!((b.version, b.their_version), (70016, 70016));
    assert_eq!(
        b.services,
        ServiceFlags::NONE,
        "A offers no services by default"
    );
    assert!(b.wants_headers && b.wtxid_relay && b.addrv2);
    assert_eq!(b.fee_filter, None);
    assert_eq!(b.ban_score, 0);

    let a = h.m(A).stats(now);
    assert_eq!((a.id, a.direction), (PeerId(1), Direction::Outbound));
    assert_eq!(a.addr, B_ADDR.parse().unwrap());
    assert_eq!(a.starting_height, 810_000);
    assert_eq!(
        a.last_block, 810_000,
        "the start height until the owner knows better"
    );
    h.command(A, |m, _| m.update_last_block(810_007));
    h.command(A, |m, _| m.update_last_block(810_003)); // never backwards
    assert_eq!(h.m(A).stats(now).last_block, 810_007);

    h.inject_message(B, &NetworkMessage::FeeFilter(1_234));
    assert_eq!(h.m(B).stats(now).fee_filter, Some(1_234));
    h.inject(B, "headers", &count_prefix(2_001));
    assert_eq!(h.m(B).stats(now).ban_score, 20);

    h.command(B, |m, now| m.disconnect(now, DisconnectReason::Requested));
    assert_eq!(
        h.m(B).stats(now).handshake,
        HandshakeState::Disconnected {
            since: now,
            reason: DisconnectReason::Requested
        }
    );
    // When the handshake completed is kept after the connection ends.
    assert_eq!(
        h.m(B).stats(now).handshake_completed,
        Some(T0 + Duration::from_secs(1))
    );
}
