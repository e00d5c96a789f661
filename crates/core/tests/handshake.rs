//! The version handshake between an outbound and an inbound machine, over real frames:
//! who speaks first, the exact order of what each side sends, version negotiation, what is
//! held back or ignored before the handshake completes, and self-connection detection.

mod support;

use std::time::Duration;

use bitcoin::hashes::Hash;
use bitcoin::p2p::message::NetworkMessage;
use bitcoin::p2p::message_blockdata::GetHeadersMessage;
use bitcoin::p2p::message_network::VersionMessage;
use bitcoin::p2p::ServiceFlags;
use bitcoin::BlockHash;
use peerpool_core::misbehaviour::Misbehaviour;
use peerpool_core::peer::{HandshakeState, Nonces, QueueError, MAX_PENDING_BEFORE_HANDSHAKE};
use peerpool_core::{DisconnectReason, PeerEvent, PeerOutput};
use peerpool_wire::MessageKind;
use support::*;

use Side::{A, B};

/// The peer's version as carried by a side's `HandshakeCompleted` event.
fn completed(h: &Harness, side: Side) -> (VersionMessage, u32) {
    let mut found = h.events(side).iter().filter_map(|e| match e {
        PeerEvent::HandshakeCompleted {
            version,
            negotiated_version,
        } => Some(((**version).clone(), *negotiated_version)),
        _ => None,
    });
    let first = found
        .next()
        .unwrap_or_else(|| panic!("{side:?} did not complete the handshake"));
    assert!(found.next().is_none(), "{side:?} completed twice");
    first
}

#[test]
fn outbound_speaks_first_and_inbound_answers_only_after_its_version() {
    let mut h = Harness::new();
    assert_eq!(h.sent_commands(A), ["version"]);
    assert!(h.sent(B).is_empty());

    // However long the listener waits (short of the handshake timeout), it says nothing first:
    // answering a silent dialer would tell a scanner what we are.
    h.elapse(Duration::from_secs(30));
    assert!(h.sent(B).is_empty());
    assert_eq!(
        h.m(B).state(),
        &HandshakeState::AwaitingVersion { since: T0 }
    );

    h.deliver(A);
    assert_eq!(
        h.sent_commands(B),
        ["version", "wtxidrelay", "sendaddrv2", "verack"]
    );

    h.deliver(B);
    assert_eq!(
        h.sent_commands(A),
        [
            "version",
            "wtxidrelay",
            "sendaddrv2",
            "verack",
            "sendheaders",
            "ping"
        ]
    );

    h.deliver(A);
    // B's own sendheaders and ping come with its verack; the pong answers A's ping.
    assert_eq!(
        h.sent_commands(B),
        [
            "version",
            "wtxidrelay",
            "sendaddrv2",
            "verack",
            "sendheaders",
            "ping",
            "pong"
        ]
    );
    h.deliver(B);
    assert_eq!(h.sent_commands(A).last(), Some(&"pong"));
    h.deliver_all();
    h.expect_ready(A);
    h.expect_ready(B);
}

#[test]
fn our_version_message_says_who_we_are() {
    let h = Setup::default().a(|c| c.relay = false).start();
    let NetworkMessage::Version(v) = &h.sent(A)[0].message else {
        panic!("version first")
    };
    assert_eq!(v.version, 70016);
    assert_eq!(v.nonce, h.m(A).nonce());
    assert_ne!(v.nonce, 0);
    assert_eq!(v.timestamp, T0.as_secs() as i64);
    assert_eq!(v.start_height, 800_000);
    assert_eq!(v.user_agent, h.m(A).config().user_agent.as_str());
    assert!(!v.relay);
    assert_eq!(v.receiver.socket_addr().unwrap(), B_ADDR.parse().unwrap());
    // Like Core, our own address is not revealed.
    assert_eq!(v.sender.address, [0; 8]);
    assert_eq!(v.sender.port, 0);
}

#[test]
fn both_sides_report_the_completed_handshake_with_the_peers_version() {
    let mut h = Harness::new();
    h.deliver_all();

    let (a_saw, a_negotiated) = completed(&h, A);
    let (b_saw, b_negotiated) = completed(&h, B);
    assert_eq!((a_negotiated, b_negotiated), (70016, 70016));
    assert_eq!(a_saw.nonce, h.m(B).nonce());
    assert_eq!(b_saw.nonce, h.m(A).nonce());
    assert_eq!(a_saw.start_height, 810_000);
    assert_eq!(b_saw.start_height, 800_000);

    // Each side announced its own nonce before its version went out (A first thing, B once
    // A's version was in), and learned the other's as soon as its version arrived, before
    // anything else.
    let (a_nonce, b_nonce) = (h.m(A).nonce(), h.m(B).nonce());
    assert!(matches!(
        h.events(A)[..2],
        [
            PeerEvent::VersionSent { nonce: sent },
            PeerEvent::VersionReceived { nonce: got },
        ] if sent == a_nonce && got == b_nonce
    ));
    assert!(matches!(
        h.events(B)[..2],
        [
            PeerEvent::VersionReceived { nonce: got },
            PeerEvent::VersionSent { nonce: sent },
        ] if sent == b_nonce && got == a_nonce
    ));
    // The feature messages of each side were seen by the other.
    let stats = h.m(A).stats(h.now());
    assert!(stats.wtxid_relay && stats.addrv2 && stats.wants_headers);
    let stats = h.m(B).stats(h.now());
    assert!(stats.wtxid_relay && stats.addrv2 && stats.wants_headers);
}

#[test]
fn handshake_states_record_when_they_were_entered() {
    let mut h = Harness::new();
    assert_eq!(
        h.m(A).state(),
        &HandshakeState::AwaitingVersion { since: T0 }
    );
    h.elapse(Duration::from_millis(40));
    h.deliver(A);
    let t1 = T0 + Duration::from_millis(40);
    assert_eq!(
        h.m(B).state(),
        &HandshakeState::AwaitingVerack { since: t1 }
    );
    h.elapse(Duration::from_millis(40));
    h.deliver(B);
    let t2 = t1 + Duration::from_millis(40);
    // A gets B's version and verack in one read: through AwaitingVerack straight to Ready.
    assert_eq!(h.m(A).state(), &HandshakeState::Ready { since: t2 });
    assert_eq!(
        h.m(B).state(),
        &HandshakeState::AwaitingVerack { since: t1 }
    );
    h.elapse(Duration::from_millis(40));
    h.deliver(A);
    assert_eq!(
        h.m(B).state(),
        &HandshakeState::Ready {
            since: t2 + Duration::from_millis(40)
        }
    );
}

#[test]
fn negotiated_version_is_the_lower_one_and_features_follow_it() {
    let mut h = Setup::default()
        .b(|c| c.chain.protocol_version = 70012)
        .start();
    h.deliver_all();
    h.expect_ready(A);
    h.expect_ready(B);
    assert_eq!(completed(&h, A).1, 70012);
    assert_eq!(completed(&h, B).1, 70012);
    assert_eq!(h.m(A).negotiated_version(), Some(70012));
    assert_eq!(h.m(B).negotiated_version(), Some(70012));
    // B announced 70012; A announced 70016 but settles on B's.
    assert_eq!(h.m(A).stats(h.now()).their_version, 70012);
    assert_eq!(h.m(B).stats(h.now()).their_version, 70016);

    // BIP339 and BIP155 need 70016 on both sides: neither sends them. sendheaders needs 70012.
    assert_eq!(
        h.sent_commands(A)[..4],
        ["version", "verack", "sendheaders", "ping"]
    );
    assert_eq!(
        h.sent_commands(B)[..4],
        ["version", "verack", "sendheaders", "ping"]
    );
    assert!(!h.m(A).stats(h.now()).wtxid_relay);
    assert!(!h.m(A).stats(h.now()).addrv2);
}

#[test]
fn no_sendheaders_below_70012() {
    let mut h = Setup::default()
        .b(|c| c.chain.protocol_version = 70011)
        .start();
    h.deliver_all();
    h.expect_ready(A);
    h.expect_ready(B);
    assert_eq!(h.sent_commands(A)[..3], ["version", "verack", "ping"]);
    assert_eq!(h.sent_commands(B)[..3], ["version", "verack", "ping"]);
    assert!(!h.m(A).wants_headers());
    assert!(!h.m(B).wants_headers());
}

#[test]
fn a_peer_below_the_minimum_version_is_disconnected() {
    let mut h = Setup::default()
        .a(|c| c.chain.protocol_version = 31_799)
        .start();
    h.deliver(A);
    h.expect_disconnect(
        B,
        DisconnectReason::ProtocolVersionTooLow {
            theirs: 31_799,
            minimum: 31_800,
        },
    );
    // B never answered: not even its own version.
    assert!(h.sent(B).is_empty());
    assert!(h.events(B).is_empty());
    // A's runtime sees the socket close.
    h.deliver_all();
    h.expect_disconnect(A, DisconnectReason::RemoteClosed);
}

#[test]
fn the_minimum_version_itself_is_accepted() {
    let mut h = Setup::default()
        .a(|c| c.chain.protocol_version = 31_800)
        .start();
    h.deliver_all();
    h.expect_ready(A);
    h.expect_ready(B);
    assert_eq!(h.m(B).negotiated_version(), Some(31_800));
}

#[test]
fn a_raised_minimum_applies_to_the_dialer_too() {
    let mut h = Setup::default()
        .a(|c| c.chain.min_protocol_version = 70_015)
        .b(|c| c.chain.protocol_version = 70_012)
        .start();
    h.deliver_all();
    h.expect_disconnect(
        A,
        DisconnectReason::ProtocolVersionTooLow {
            theirs: 70_012,
            minimum: 70_015,
        },
    );
    assert_eq!(h.sent_commands(A), ["version"]);
    h.expect_disconnect(B, DisconnectReason::RemoteClosed);
}

#[test]
fn time_offset_comes_from_the_version_timestamp() {
    // A's version says T0; B reads it three seconds later by its own clock.
    let mut h = Harness::new();
    h.elapse(Duration::from_secs(3));
    h.deliver(A);
    assert_eq!(h.m(B).stats(h.now()).time_offset, -3);

    // A peer whose clock runs an hour ahead.
    let mut h = Harness::new();
    let v = version_message(70016, 42, T0 + Duration::from_secs(3600));
    h.inject_message(B, &NetworkMessage::Version(v));
    assert_eq!(h.m(B).stats(h.now()).time_offset, 3600);
}

#[test]
fn relay_flag_user_agent_and_start_height_reach_the_stats() {
    let mut h = Setup::default().a(|c| c.relay = false).start();
    h.deliver_all();
    let a_as_seen_by_b = h.m(B).stats(h.now());
    assert!(!a_as_seen_by_b.relay);
    assert_eq!(
        a_as_seen_by_b.user_agent,
        h.m(A).config().user_agent.as_str()
    );
    assert!(a_as_seen_by_b.user_agent.starts_with("/peerpool:"));
    assert_eq!(a_as_seen_by_b.starting_height, 800_000);
    let b_as_seen_by_a = h.m(A).stats(h.now());
    assert!(b_as_seen_by_a.relay);
    assert_eq!(b_as_seen_by_a.starting_height, 810_000);

    // A foreign client's version, field by field.
    let mut h = Harness::new();
    let mut v = version_message(70015, 7, T0);
    v.relay = false;
    v.services = ServiceFlags::NETWORK_LIMITED | ServiceFlags::WITNESS;
    h.inject_message(B, &NetworkMessage::Version(v));
    let s = h.m(B).stats(h.now());
    assert_eq!(s.user_agent, "/Satoshi:27.0.0/");
    assert_eq!(s.starting_height, 840_000);
    assert!(!s.relay);
    assert_eq!(
        s.services,
        ServiceFlags::NETWORK_LIMITED | ServiceFlags::WITNESS
    );
    assert!(h.m(B).is_witness_enabled());
    assert_eq!(s.their_version, 70015);
    assert_eq!(s.version, 70015);
}

#[test]
fn a_user_agent_keeps_only_the_characters_bitcoin_core_keeps() {
    let mut h = Harness::new();
    let mut v = version_message(70016, 7, T0);
    v.user_agent = "/Evil:1.0(x; y)/\n\u{1b}[31mred\r\u{7f}\u{e9}<b>\"'%\t@?".to_owned();
    h.inject_message(B, &NetworkMessage::Version(v));
    assert_eq!(
        h.m(B).stats(h.now()).user_agent,
        "/Evil:1.0(x; y)/31mredb@?"
    );
}

// ----- nothing before the handshake -----------------------------------------------------------

#[test]
fn messages_queued_early_wait_for_the_handshake_and_keep_their_order_and_tokens() {
    let mut h = Harness::new();
    let getaddr = h.queue(A, NetworkMessage::GetAddr, true);
    let feefilter = h.queue(A, NetworkMessage::FeeFilter(1_000), false);
    let getheaders = h.queue(
        A,
        NetworkMessage::GetHeaders(GetHeadersMessage {
            version: 70016,
            locator_hashes: vec![BlockHash::all_zeros()],
            stop_hash: BlockHash::all_zeros(),
        }),
        true,
    );
    assert!(getaddr.is_some() && getheaders.is_some() && getaddr != getheaders);
    assert_eq!(feefilter, None);
    // The inbound side can queue before it has even heard from the dialer.
    let b_getaddr = h.queue(B, NetworkMessage::GetAddr, true);

    h.elapse(Duration::from_secs(5));
    assert_eq!(h.sent_commands(A), ["version"]);
    assert!(h.sent(B).is_empty());

    h.deliver(A);
    h.deliver(B); // A completes here
    assert_eq!(
        h.sent_commands(A),
        [
            "version",
            "wtxidrelay",
            "sendaddrv2",
            "verack",
            "sendheaders",
            "getaddr",
            "feefilter",
            "getheaders",
            "ping"
        ]
    );
    let tokens: Vec<_> = h.sent(A).iter().map(|s| s.token).collect();
    assert_eq!(tokens[5..8], [getaddr, None, getheaders]);
    // The held messages are written the moment the handshake completes, not later.
    assert!(h.sent(A)[5..8].iter().all(|s| s.at == h.now()));

    h.deliver(A); // B completes here
    let b_sent = h.sent_commands(B);
    let i = b_sent
        .iter()
        .position(|c| *c == "getaddr")
        .expect("B's held getaddr went out");
    assert_eq!(b_sent[i - 1], "sendheaders");
    assert_eq!(h.sent(B)[i].token, b_getaddr);

    // And B's owner got A's held messages, in order.
    let got: Vec<_> = h
        .received_kinds(B)
        .into_iter()
        .filter(|k| {
            matches!(
                k,
                MessageKind::GetAddr | MessageKind::FeeFilter | MessageKind::GetHeaders
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            MessageKind::GetAddr,
            MessageKind::FeeFilter,
            MessageKind::GetHeaders
        ]
    );
    assert_eq!(h.m(B).stats(h.now()).fee_filter, Some(1_000));
}

#[test]
fn the_queue_before_the_handshake_is_bounded() {
    let mut h = Harness::new();
    for _ in 0..MAX_PENDING_BEFORE_HANDSHAKE {
        h.queue(A, NetworkMessage::GetAddr, false);
    }
    let refused = h.command(A, |m, _| m.queue_message(NetworkMessage::GetAddr, true));
    assert_eq!(refused, Err(QueueError::HandshakePending));
    assert_eq!(h.sent_commands(A), ["version"]);
}

#[test]
fn messages_before_version_are_ignored() {
    let mut h = Harness::new();
    let early = [
        NetworkMessage::Ping(5),
        NetworkMessage::GetAddr,
        NetworkMessage::Verack,
        NetworkMessage::SendHeaders,
        NetworkMessage::WtxidRelay,
        NetworkMessage::FeeFilter(1),
    ];
    for m in &early {
        h.inject_message(B, m);
    }
    assert!(h.events(B).is_empty(), "{:?}", h.events(B));
    assert!(h.sent(B).is_empty());
    assert_eq!(
        h.m(B).state(),
        &HandshakeState::AwaitingVersion { since: T0 }
    );
    // They were read, so they count as traffic.
    assert_eq!(h.m(B).stats(h.now()).msgs_recv, early.len() as u64);

    // The early verack did not count: the real handshake still runs its full course.
    h.deliver_all();
    h.expect_ready(A);
    h.expect_ready(B);
    assert_eq!(h.received_kinds(B)[0], MessageKind::Version);
    assert!(!h.received_kinds(B).contains(&MessageKind::GetAddr));
}

#[test]
fn messages_between_version_and_verack_are_ignored() {
    let mut h = Harness::new();
    h.deliver(A);
    let before = h.events(B).len();
    let sent_before = h.sent(B).len();
    for m in [
        NetworkMessage::Ping(5),
        NetworkMessage::GetAddr,
        NetworkMessage::FeeFilter(1),
        NetworkMessage::Inv(vec![]),
    ] {
        h.inject_message(B, &m);
    }
    assert_eq!(h.events(B).len(), before, "{:?}", &h.events(B)[before..]);
    assert_eq!(h.sent(B).len(), sent_before, "no pong before verack");
    assert!(matches!(
        h.m(B).state(),
        HandshakeState::AwaitingVerack { .. }
    ));
    assert_eq!(h.m(B).stats(h.now()).fee_filter, None);
}

#[test]
fn announcement_preferences_are_taken_between_version_and_verack() {
    // Bitcoin Core handles sendheaders and sendcmpct before its verack check; some clients
    // send them right after their version.
    let mut h = Setup::default()
        .a(|c| c.chain.protocol_version = 70011)
        .start();
    h.deliver(A);
    assert!(!h.m(B).wants_headers());
    h.inject_message(B, &NetworkMessage::SendHeaders);
    assert!(h.m(B).wants_headers());
    assert_eq!(h.received_kinds(B).last(), Some(&MessageKind::SendHeaders));
    assert!(matches!(
        h.m(B).state(),
        HandshakeState::AwaitingVerack { .. }
    ));
}

#[test]
fn redundant_version_and_verack_are_ignored() {
    let mut h = Harness::new();
    // A second version while waiting for verack.
    h.deliver(A);
    h.inject_message(B, &NetworkMessage::Version(version_message(70015, 999, T0)));
    let versions = h
        .events(B)
        .iter()
        .filter(|e| matches!(e, PeerEvent::VersionReceived { .. }))
        .count();
    assert_eq!(versions, 1);
    assert_eq!(h.m(B).remote_version().unwrap().nonce, h.m(A).nonce());
    assert_eq!(h.m(B).negotiated_version(), Some(70016));

    // And both again once the handshake is done.
    h.deliver_all();
    h.clear();
    h.inject_message(B, &NetworkMessage::Version(version_message(70015, 999, T0)));
    h.inject_message(B, &NetworkMessage::Verack);
    assert!(h.events(B).is_empty(), "{:?}", h.events(B));
    assert!(h.sent(B).is_empty());
    h.expect_ready(B);
    assert_eq!(h.m(B).remote_version().unwrap().nonce, h.m(A).nonce());
}

#[test]
fn feature_negotiation_after_verack_disconnects() {
    for (msg, command) in [
        (NetworkMessage::WtxidRelay, "wtxidrelay"),
        (NetworkMessage::SendAddrV2, "sendaddrv2"),
    ] {
        let mut h = Harness::new();
        h.connect();
        h.inject_message(B, &msg);
        let what = Misbehaviour::FeatureAfterVerack { command };
        assert_eq!(h.misbehaviours(B), [(what, 0)]);
        h.expect_disconnect(B, DisconnectReason::Misbehaviour(what));
        assert!(h.received_kinds(B).is_empty());
    }
}

// ----- self-connection -------------------------------------------------------------------------

#[test]
fn the_owner_detects_a_self_connection_from_the_version_nonce() {
    // The owner of both machines remembers the nonce of every version it dials out with.
    let mut h = Harness::new();
    let mut ours = Nonces::default();
    ours.insert(h.m(A).nonce());

    // Our own dial comes back to our own listener: B reads A's version. The owner drains B's
    // outputs one by one, as the driving contract says.
    h.deliver_undrained(A);
    let now = h.now();
    let first = h.m_mut(B).poll_output();
    let Some(PeerOutput::Event(PeerEvent::VersionReceived { nonce })) = first else {
        panic!("the version nonce must come out first, before any reply: {first:?}");
    };
    assert!(ours.contains(nonce));
    h.m_mut(B).disconnect(now, DisconnectReason::SelfConnection);

    let rest: Vec<PeerOutput> = std::iter::from_fn(|| h.m_mut(B).poll_output()).collect();
    let (last, before) = rest.split_last().expect("a Disconnect");
    assert!(matches!(
        last,
        PeerOutput::Disconnect(DisconnectReason::SelfConnection)
    ));
    // B's version, wtxidrelay, sendaddrv2 and verack were queued but never handed out.
    assert!(
        before.iter().all(|o| matches!(o, PeerOutput::Event(_))),
        "{before:?}"
    );
    assert!(h.m(B).is_disconnected());
    assert_eq!(h.m(B).poll_timeout(), None);
}

#[test]
fn a_foreign_nonce_is_not_a_self_connection() {
    // The same drain with a nonce we never sent: B's replies are there, which is what the
    // self-connection case above drops.
    let mut h = Harness::new();
    let mut ours = Nonces::default();
    ours.insert(h.m(A).nonce().wrapping_add(1));
    h.deliver_undrained(A);
    let outputs: Vec<PeerOutput> = std::iter::from_fn(|| h.m_mut(B).poll_output()).collect();
    let Some(PeerOutput::Event(PeerEvent::VersionReceived { nonce })) = outputs.first() else {
        panic!("version nonce first")
    };
    assert!(!ours.contains(*nonce));
    let sends: Vec<_> = outputs
        .iter()
        .filter_map(|o| match o {
            PeerOutput::Send { message, .. } => Some(message.cmd()),
            _ => None,
        })
        .collect();
    assert_eq!(sends, ["version", "wtxidrelay", "sendaddrv2", "verack"]);
}
