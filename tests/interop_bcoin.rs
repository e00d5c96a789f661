//! Interop with bcoin, an independent implementation of the Bitcoin P2P protocol.
//!
//! These tests drive a real bcoin node on loopback through the harness in `support/bcoin.rs`
//! (Node.js and npm required; the npm packages install on first run). Every test starts its own
//! bcoin process: bcoin bans a misbehaving IP for a day, loopback included, so one test's
//! mistake must not leak into the next.
//!
//! - `raw_*`: speak to bcoin through a hand-driven socket framed by `peerpool-wire` alone (the
//!   test kit's `RawPeer`), which proves the harness and the framing against bytes peerpool
//!   did not write.
//! - `peerpool_dials_bcoin*`, `bcoin_dials_peerpool*`: peerpool's [`Peer`] against bcoin, in
//!   each direction: the handshake, keepalive pings both ways and a clean close from either end,
//!   each checked on both sides (peerpool's listeners and stats, bcoin's events and peer list).
//! - `bcoin_chatter_*`: what bcoin sends after the handshake, and its answers to requests,
//!   decode in peerpool and cost nobody any ban score.
//!
//! peerpool's side of each connection runs on its own 127.0.0.x address, so every test's
//! connections are told apart by IP as well as by port.

mod support;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bitcoin::blockdata::constants::genesis_block;
use bitcoin::hashes::Hash;
use bitcoin::p2p::address::{AddrV2, AddrV2Message, Address};
use bitcoin::p2p::message_blockdata::Inventory;
use bitcoin::p2p::message_network::VersionMessage;
use bitcoin::{BlockHash, Txid};
use peerpool::core::peer::PeerConfig;
use peerpool::net::{
    accept_loop, dial_from, AcceptLimits, Config, DisconnectReason, Listeners, Peer,
};
use peerpool_testkit::loopback::ip;
use peerpool_testkit::raw::{magic, unix_now, RawPeer};
use peerpool_testkit::within;
use peerpool_wire::chain::PROTOCOL_VERSION;
use peerpool_wire::{Network, NetworkMessage, ServiceFlags};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use support::bcoin::{BcoinNode, Direction, Event, PeerState};
use support::recorder::{recording, Recorder, Seen};

/// Longest any single step may take.
const STEP: Duration = Duration::from_secs(20);

/// The user agent these tests announce.
const AGENT: &str = "/peerpool-interop-test:0.1.0/";

/// Nonce of our `version` messages (bcoin skips its self-connection check on regtest anyway).
const VERSION_NONCE: u64 = 0x5eed_0fc0_ffee;

fn our_version(to: SocketAddr, from: SocketAddr, services: ServiceFlags) -> NetworkMessage {
    let mut msg = VersionMessage::new(
        services,
        unix_now(),
        Address::new(&to, ServiceFlags::NONE),
        Address::new(&from, services),
        VERSION_NONCE,
        AGENT.to_owned(),
        0,
    );
    msg.version = PROTOCOL_VERSION;
    msg.relay = true;
    NetworkMessage::Version(msg)
}

/// We dial bcoin: version handshake both ways, bcoin's keepalive ping answered with our pong,
/// and bcoin hanging up on command.
#[tokio::test]
async fn raw_inbound_handshake_and_ping() {
    let mut bcoin = BcoinNode::builder()
        .ping_interval(Duration::from_millis(300))
        .start()
        .await;
    assert_eq!(bcoin.magic(), magic(), "bcoin's regtest magic");

    let stream = TcpStream::connect(bcoin.addr()).await.expect("dial bcoin");
    let us = stream.local_addr().expect("local address");
    let mut conn = RawPeer::new(stream);
    bcoin
        .wait_for("our TCP connection", |e| e.is("connect") && e.is_about(us))
        .await;

    conn.send(&our_version(bcoin.addr(), us, ServiceFlags::NONE))
        .await;

    // bcoin speaks first on an inbound connection, without waiting for our version.
    let NetworkMessage::Version(theirs) = conn.recv().await.expect("bcoin's version") else {
        panic!("bcoin's first message is not version");
    };
    assert_eq!(theirs.user_agent, bcoin.user_agent());
    assert_eq!(theirs.version, bcoin.protocol_version());
    assert!(theirs
        .services
        .has(ServiceFlags::NETWORK | ServiceFlags::WITNESS));
    assert!(matches!(conn.recv().await, Some(NetworkMessage::Verack)));
    conn.send(&NetworkMessage::Verack).await;

    let open = bcoin
        .wait_for("bcoin to finish the handshake", |e| {
            e.is("open") && e.is_about(us)
        })
        .await;
    assert_eq!(open.str("agent"), Some(AGENT));
    assert_eq!(open.u64("version"), Some(u64::from(PROTOCOL_VERSION)));
    assert_eq!(open.str("direction"), Some("inbound"));
    let peer = open.peer().expect("open names the peer");

    // The first ping comes one interval after the handshake; sendcmpct and getaddr come first.
    let (_, ping) = conn
        .until("bcoin's first ping", |m| {
            matches!(m, NetworkMessage::Ping(_))
        })
        .await;
    let NetworkMessage::Ping(nonce) = ping else {
        unreachable!("a ping was asked for")
    };
    let sent = bcoin
        .wait_for("bcoin's ping", |e| {
            e.is_sent("ping") && e.peer() == Some(peer)
        })
        .await;
    assert_eq!(sent.nonce(), Some(nonce));
    conn.send(&NetworkMessage::Pong(nonce)).await;
    bcoin
        .wait_for("our pong", |e| {
            e.is_received("pong") && e.peer() == Some(peer) && e.nonce() == Some(nonce)
        })
        .await;

    let peers = bcoin.peers().await;
    let info = peers.iter().find(|p| p.addr == us).expect("bcoin lists us");
    assert_eq!(info.state, PeerState::Open);
    assert_eq!(info.direction, Direction::Inbound);
    assert_eq!(info.agent.as_deref(), Some(AGENT));
    assert!(
        info.last_pong.is_some(),
        "bcoin recorded our pong: {info:?}"
    );

    assert_eq!(bcoin.disconnect_all().await, 1);
    let close = bcoin
        .wait_for("bcoin to drop us", |e| e.is("close") && e.is_about(us))
        .await;
    assert_eq!(close.str("reason"), Some("disconnect_all command"));
    conn.read_to_close().await;

    assert!(bcoin.stop().await.success());
}

/// bcoin dials us on command: the outbound half of the harness (bcoin insists on
/// NODE_NETWORK and NODE_WITNESS from the peers it dials).
#[tokio::test]
async fn raw_outbound_handshake() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let ours = listener.local_addr().expect("listener address");
    let mut bcoin = BcoinNode::builder().no_listen().start().await;

    let peer = bcoin.connect(ours).await;
    let (stream, from) = tokio::time::timeout(STEP, listener.accept())
        .await
        .expect("bcoin dials within the step")
        .expect("accept");
    let mut conn = RawPeer::new(stream);

    let NetworkMessage::Version(theirs) = conn.recv().await.expect("bcoin's version") else {
        panic!("bcoin's first message is not version");
    };
    assert_eq!(theirs.user_agent, bcoin.user_agent());
    conn.send(&our_version(
        from,
        ours,
        ServiceFlags::NETWORK | ServiceFlags::WITNESS,
    ))
    .await;
    conn.send(&NetworkMessage::Verack).await;
    assert!(matches!(conn.recv().await, Some(NetworkMessage::Verack)));

    let open = bcoin
        .wait_for("bcoin's outbound handshake", |e| {
            e.is("open") && e.peer() == Some(peer)
        })
        .await;
    assert_eq!(open.str("direction"), Some("outbound"));
    assert_eq!(open.addr(), Some(ours));
    assert_eq!(open.str("agent"), Some(AGENT));

    drop(conn);
    let close = bcoin
        .wait_for("bcoin to see us hang up", |e| {
            e.is("close") && e.peer() == Some(peer)
        })
        .await;
    assert_eq!(close.bool("handshake"), Some(true));
}

// ---------------------------------------------------------------------------------------------
// peerpool's Peer against bcoin

/// The protocol version bcoin 1.0.2 announces, one below ours: peerpool must settle on it and
/// therefore skip the BIP339/BIP155 feature messages, which need 70016.
const BCOIN_VERSION: u32 = 70015;

/// The services bcoin insists on from peers it dials (and announces itself).
fn full_node() -> ServiceFlags {
    ServiceFlags::NETWORK | ServiceFlags::WITNESS
}

/// Keepalive interval for the tests that watch pings go round, on both sides. Short, so
/// several rounds fit in well under a second; each round still waits for its answer.
const FAST_PING: Duration = Duration::from_millis(100);

/// Keepalive rounds each side must complete in those tests.
const ROUNDS: usize = 3;

/// `127.0.0.<last>`. Each test puts peerpool's side on an address of its own.
fn loopback(last: u8) -> IpAddr {
    ip(0, last).into()
}

/// A peerpool configuration for regtest with the given services and, if set, keepalive
/// interval; Bitcoin Core's defaults otherwise.
fn peerpool_config(
    listeners: Listeners,
    services: ServiceFlags,
    ping_interval: Option<Duration>,
) -> Arc<Config> {
    let mut peer = PeerConfig::new(Network::Regtest.params());
    peer.services = services;
    if let Some(interval) = ping_interval {
        peer.ping_interval = interval;
    }
    Arc::new(Config::from_peer_config(peer).with_listeners(listeners))
}

/// peerpool's own user agent, as it announces it.
fn our_agent() -> String {
    PeerConfig::new(Network::Regtest.params())
        .user_agent
        .to_string()
}

/// peerpool dials bcoin from `from` (port chosen by the OS).
async fn dial_bcoin(bcoin: &BcoinNode, config: Arc<Config>, from: IpAddr) -> Peer {
    let peer = dial_from(config, bcoin.addr(), Some(SocketAddr::new(from, 0)), STEP)
        .await
        .unwrap_or_else(|e| panic!("dialing bcoin at {} from {from}: {e}", bcoin.addr()));
    assert_eq!(peer.addr(), Some(bcoin.addr()));
    assert!(!peer.inbound());
    peer
}

/// Where peerpool's end of `peer`'s connection is.
fn local_addr(peer: &Peer) -> SocketAddr {
    peer.stats()
        .and_then(|s| s.local_addr)
        .expect("a connected peer knows its local address")
}

/// Waits for both ends of `peer`'s connection to finish the handshake and checks what each
/// learnt about the other; returns bcoin's id for the connection. `bcoin_end` picks bcoin's
/// `open` event for it; `services` are the ones peerpool announced.
async fn expect_handshake(
    bcoin: &mut BcoinNode,
    rec: &mut Recorder,
    peer: &Peer,
    services: ServiceFlags,
    bcoin_end: impl FnMut(&Event) -> bool,
) -> u64 {
    let id = peer.id();
    let seen = rec
        .wait_for(
            "handshake",
            |s| matches!(s, Seen::Handshake { peer, .. } if *peer == id),
        )
        .await;
    let Seen::Handshake { version, ready, .. } = seen else {
        unreachable!("matched a handshake")
    };
    if !ready {
        rec.catch_up();
        rec.fail("is_ready() was false inside on_handshake");
    }
    assert_eq!(version.user_agent, bcoin.user_agent());
    assert_eq!(version.version, BCOIN_VERSION);
    assert_eq!(bcoin.protocol_version(), BCOIN_VERSION);
    assert_eq!(version.services.to_u64(), bcoin.services());
    assert!(peer.is_ready(), "{peer} is still up");
    assert_eq!(peer.protocol_version(), BCOIN_VERSION);
    assert_eq!(peer.user_agent().as_deref(), Some(bcoin.user_agent()));
    assert!(peer.is_witness_enabled(), "bcoin announces NODE_WITNESS");

    let stats = peer.stats().expect("a connected peer has stats");
    assert!(stats.is_ready());
    assert_eq!(stats.version, BCOIN_VERSION, "negotiated version");
    assert_eq!(stats.their_version, BCOIN_VERSION);
    assert!(
        !stats.wtxid_relay && !stats.addrv2,
        "bcoin offers neither wtxidrelay nor addrv2: {stats:?}"
    );
    assert!(stats.relay, "bcoin asks for transaction announcements");
    assert_eq!(
        stats.starting_height, 0,
        "bcoin's chain is regtest's genesis alone"
    );
    // Both clocks are this machine's: any real offset means a misread timestamp.
    assert!(
        stats.time_offset.abs() <= 2,
        "clock offset {}",
        stats.time_offset
    );

    let open = bcoin
        .wait_for("bcoin's side of the handshake", bcoin_end)
        .await;
    let agent = open.str("agent").unwrap_or_default();
    assert!(agent.starts_with("/peerpool:"), "bcoin saw agent {agent:?}");
    assert_eq!(agent, our_agent());
    assert_eq!(open.u64("version"), Some(u64::from(PROTOCOL_VERSION)));
    assert_eq!(open.u64("services"), Some(services.to_u64()));
    assert_eq!(
        open.u64("height"),
        Some(0),
        "peerpool announces height 0 with no chain"
    );
    assert_eq!(open.bool("relay"), Some(true));
    open.peer().expect("open names bcoin's connection id")
}

/// Commands bcoin has read from connection `id`, as far as its events have been taken in.
fn bcoin_received(bcoin: &BcoinNode, id: u64) -> Vec<String> {
    bcoin
        .history()
        .iter()
        .filter(|e| e.is("message") && e.str("dir") == Some("in") && e.peer() == Some(id))
        .filter_map(|e| e.command().map(str::to_owned))
        .collect()
}

/// peerpool's handshake as bcoin read it: `version` then `verack`, no feature negotiation
/// (bcoin speaks 70015), and `sendheaders` (BIP130, 70012) once the handshake is done. Call
/// once bcoin has read a later message (the first ping), so the list is complete.
fn expect_handshake_messages(bcoin: &BcoinNode, id: u64) {
    let got = bcoin_received(bcoin, id);
    assert_eq!(
        got.get(..2),
        Some(&["version".to_owned(), "verack".to_owned()][..])
    );
    for feature in ["wtxidrelay", "sendaddrv2"] {
        assert!(
            !got.iter().any(|c| c == feature),
            "peerpool sent {feature} to a 70015 peer: {got:?}"
        );
    }
    assert!(got.iter().any(|c| c == "sendheaders"), "{got:?}");
}

/// peerpool pings as soon as the handshake is done: bcoin answers with the same nonce and
/// peerpool records the round trip.
async fn expect_first_ping(bcoin: &mut BcoinNode, rec: &mut Recorder, peer: &Peer, id: u64) {
    let pid = peer.id();
    let seen = rec
        .wait_for(
            "the first ping's round trip",
            |s| matches!(s, Seen::PingRtt { peer, .. } if *peer == pid),
        )
        .await;
    let Seen::PingRtt { micros, .. } = seen else {
        unreachable!("matched a round trip")
    };
    let stats = peer.stats().expect("stats");
    assert_eq!(stats.ping.last_rtt_micros, Some(micros));
    assert_eq!(stats.ping.min_rtt_micros, Some(micros));
    assert_eq!(
        stats.ping.wait_micros, None,
        "no ping outstanding after the pong"
    );
    let nonce = stats.ping.last_nonce.expect("a ping went out");
    bcoin
        .wait_for("peerpool's ping", |e| {
            e.is_received("ping") && e.peer() == Some(id) && e.nonce() == Some(nonce)
        })
        .await;
    bcoin
        .wait_for("bcoin's pong", |e| {
            e.is_sent("pong") && e.peer() == Some(id) && e.nonce() == Some(nonce)
        })
        .await;
}

/// bcoin pings on command; peerpool answers at once with the same nonce.
async fn expect_pong_to_bcoin(bcoin: &mut BcoinNode, rec: &mut Recorder, peer: &Peer, id: u64) {
    let sent = bcoin.ping_all().await;
    let nonce = sent
        .iter()
        .find(|(p, _)| *p == id)
        .map(|(_, n)| *n)
        .unwrap_or_else(|| panic!("bcoin pinged {sent:?}, not connection {id}"));
    let pid = peer.id();
    rec.wait_for("bcoin's ping", |s| {
        s.peer() == pid && matches!(s.message(), Some(NetworkMessage::Ping(n)) if *n == nonce)
    })
    .await;
    bcoin
        .wait_for("peerpool's pong", |e| {
            e.is_received("pong") && e.peer() == Some(id) && e.nonce() == Some(nonce)
        })
        .await;
    let peers = bcoin.peers().await;
    let info = peers.iter().find(|p| p.peer == id).expect("bcoin lists us");
    assert_eq!(info.ping_outstanding, None, "bcoin took our pong: {info:?}");
    assert!(
        info.last_pong.is_some(),
        "bcoin recorded our pong: {info:?}"
    );
    let pong = info.last_pong_received.as_ref().expect("a pong was read");
    assert_eq!(
        pong.nonce.as_deref(),
        Some(&format!("{:016x}", nonce.swap_bytes())[..])
    );
}

/// Several keepalive rounds each way at [`FAST_PING`]: every ping either side sends is
/// answered with its own nonce, and peerpool measures each round trip.
async fn expect_keepalive_rounds(bcoin: &mut BcoinNode, rec: &mut Recorder, peer: &Peer, id: u64) {
    let pid = peer.id();
    for round in 0..ROUNDS {
        // bcoin's ping, peerpool's pong.
        let ping = bcoin
            .wait_for(&format!("bcoin's keepalive ping {round}"), |e| {
                e.is_sent("ping") && e.peer() == Some(id)
            })
            .await;
        let nonce = ping.nonce().expect("ping nonce");
        rec.wait_for(&format!("bcoin's ping {round}"), |s| {
            s.peer() == pid && matches!(s.message(), Some(NetworkMessage::Ping(n)) if *n == nonce)
        })
        .await;
        bcoin
            .wait_for(&format!("peerpool's pong {round}"), |e| {
                e.is_received("pong") && e.peer() == Some(id) && e.nonce() == Some(nonce)
            })
            .await;

        // peerpool's ping, bcoin's pong.
        let ping = bcoin
            .wait_for(&format!("peerpool's keepalive ping {round}"), |e| {
                e.is_received("ping") && e.peer() == Some(id)
            })
            .await;
        let nonce = ping.nonce().expect("ping nonce");
        bcoin
            .wait_for(&format!("bcoin's pong {round}"), |e| {
                e.is_sent("pong") && e.peer() == Some(id) && e.nonce() == Some(nonce)
            })
            .await;
        rec.wait_for(
            &format!("round trip {round}"),
            |s| matches!(s, Seen::PingRtt { peer, .. } if *peer == pid),
        )
        .await;
    }
    let stats = peer.stats().expect("stats");
    assert!(stats.ping.last_rtt_micros.is_some() && stats.ping.min_rtt_micros.is_some());
}

/// What bcoin sends once the handshake is done, `sendcmpct` (announcements off; version 2 to a
/// peer with `NODE_WITNESS`, 1 otherwise) and `getaddr`, reaches peerpool decoded.
async fn expect_bcoin_greeting(rec: &mut Recorder, peer: &Peer, services: ServiceFlags) {
    let pid = peer.id();
    let seen = rec
        .wait_for("bcoin's sendcmpct", |s| {
            s.peer() == pid && s.is_received("sendcmpct")
        })
        .await;
    let Some(NetworkMessage::SendCmpct(cmpct)) = seen.message() else {
        panic!("sendcmpct decoded as {}", seen)
    };
    assert!(
        !cmpct.send_compact,
        "bcoin asks for no compact announcements"
    );
    let expected = if services.has(ServiceFlags::WITNESS) {
        2
    } else {
        1
    };
    assert_eq!(cmpct.version, expected);
    rec.wait_for("bcoin's getaddr", |s| {
        s.peer() == pid && s.is_received("getaddr")
    })
    .await;
}

/// Neither side holds anything against the other, and the connection is still up: peerpool
/// reported no misbehaviour and scores bcoin 0; bcoin banned nobody, rejected nothing,
/// complained about nothing and scores us 0.
async fn expect_no_grudges(bcoin: &mut BcoinNode, rec: &mut Recorder, peer: &Peer, id: u64) {
    // The peers reply comes after every event bcoin emitted before it, so the history checked
    // below covers everything up to now.
    let peers = bcoin.peers().await;
    rec.catch_up();
    let pid = peer.id();
    if let Some(bad) = rec.history().iter().find(|s| {
        s.peer() == pid && matches!(s, Seen::Misbehaved { .. } | Seen::Disconnected { .. })
    }) {
        rec.fail(&format!("peerpool holds a grudge: {bad}"));
    }
    assert!(peer.connected() && peer.is_ready(), "{peer} is still up");
    assert_eq!(peer.stats().expect("stats").ban_score, 0);

    let info = peers
        .iter()
        .find(|p| p.peer == id)
        .unwrap_or_else(|| panic!("bcoin no longer lists connection {id}: {peers:?}"));
    assert_eq!(info.state, PeerState::Open);
    assert_eq!(info.ban_score, 0, "bcoin's ban score for us: {info:?}");
    for e in bcoin.history() {
        let about_us = e.peer() == Some(id);
        let grudge = e.is("ban")
            || e.is("refused")
            || e.is("error")
            || (about_us && (e.is("peer_error") || e.is_sent("reject") || e.is("close")));
        assert!(!grudge, "bcoin: {e}");
    }
}

/// peerpool closes the connection: its peer ends with `Requested` (reported once to the
/// listeners too), and bcoin sees the handshaken connection go.
async fn expect_peerpool_hangs_up(bcoin: &mut BcoinNode, rec: &mut Recorder, peer: &Peer, id: u64) {
    peer.disconnect();
    let reason = within("peerpool's disconnect", peer.wait_for_disconnect()).await;
    assert_eq!(reason, DisconnectReason::Requested);
    assert!(!peer.connected() && !peer.is_ready());
    let pid = peer.id();
    rec.wait_for("the disconnect report", |s| {
        matches!(s, Seen::Disconnected { peer, reason } if *peer == pid
            && *reason == DisconnectReason::Requested)
    })
    .await;
    let close = bcoin
        .wait_for("bcoin to see us go", |e| {
            e.is("close") && e.peer() == Some(id)
        })
        .await;
    assert_eq!(close.bool("handshake"), Some(true));
    assert_eq!(close.bool("was_connected"), Some(true));
}

/// bcoin closes the connection: peerpool's peer ends with `RemoteClosed`.
async fn expect_bcoin_hangs_up(bcoin: &mut BcoinNode, rec: &mut Recorder, peer: &Peer, id: u64) {
    assert_eq!(bcoin.disconnect_all().await, 1);
    let close = bcoin
        .wait_for("bcoin to drop us", |e| {
            e.is("close") && e.peer() == Some(id)
        })
        .await;
    assert_eq!(close.str("reason"), Some("disconnect_all command"));
    let reason = within("peerpool to notice", peer.wait_for_disconnect()).await;
    assert_eq!(reason, DisconnectReason::RemoteClosed);
    let pid = peer.id();
    rec.wait_for("the disconnect report", |s| {
        matches!(s, Seen::Disconnected { peer, reason } if *peer == pid
            && *reason == DisconnectReason::RemoteClosed)
    })
    .await;
    // The last statistics outlive the connection.
    let stats = peer.stats().expect("stats kept after the end");
    assert_eq!(stats.ban_score, 0);
    assert!(stats.bytes_recv > 0 && stats.bytes_sent > 0);
}

/// peerpool dials bcoin: handshake (bcoin's 70015 wins, so no wtxidrelay/sendaddrv2), pings
/// both ways, bcoin's greeting taken in stride, and peerpool hangs up.
#[tokio::test]
async fn peerpool_dials_bcoin() {
    let mut bcoin = BcoinNode::start().await;
    let (listeners, mut rec) = recording();
    // Default services (none): bcoin asks nothing of peers that dial it.
    let services = ServiceFlags::NONE;
    let config = peerpool_config(listeners, services, None);
    let peer = dial_bcoin(&bcoin, config, loopback(3)).await;
    let local = local_addr(&peer);
    assert_eq!(local.ip(), loopback(3));

    let id = expect_handshake(&mut bcoin, &mut rec, &peer, services, |e| {
        e.is("open") && e.is_about(local)
    })
    .await;
    expect_first_ping(&mut bcoin, &mut rec, &peer, id).await;
    expect_handshake_messages(&bcoin, id);
    expect_pong_to_bcoin(&mut bcoin, &mut rec, &peer, id).await;
    expect_bcoin_greeting(&mut rec, &peer, services).await;

    let peers = bcoin.peers().await;
    let info = peers.iter().find(|p| p.peer == id).expect("bcoin lists us");
    assert_eq!(info.direction, Direction::Inbound);
    assert_eq!(info.addr, local);
    assert_eq!(info.version, Some(PROTOCOL_VERSION));
    assert_eq!(info.agent.as_deref(), Some(&our_agent()[..]));

    expect_no_grudges(&mut bcoin, &mut rec, &peer, id).await;
    expect_peerpool_hangs_up(&mut bcoin, &mut rec, &peer, id).await;
    assert!(bcoin.stop().await.success());
}

/// peerpool dials bcoin, both keep pinging at a short interval, then bcoin hangs up.
#[tokio::test]
async fn peerpool_dials_bcoin_keepalive_then_bcoin_hangs_up() {
    let mut bcoin = BcoinNode::builder().ping_interval(FAST_PING).start().await;
    let (listeners, mut rec) = recording();
    let config = peerpool_config(listeners, full_node(), Some(FAST_PING));
    let peer = dial_bcoin(&bcoin, config, loopback(6)).await;
    let local = local_addr(&peer);

    let id = expect_handshake(&mut bcoin, &mut rec, &peer, full_node(), |e| {
        e.is("open") && e.is_about(local)
    })
    .await;
    expect_keepalive_rounds(&mut bcoin, &mut rec, &peer, id).await;
    expect_handshake_messages(&bcoin, id);
    expect_bcoin_greeting(&mut rec, &peer, full_node()).await;
    expect_no_grudges(&mut bcoin, &mut rec, &peer, id).await;
    expect_bcoin_hangs_up(&mut bcoin, &mut rec, &peer, id).await;
    assert!(bcoin.stop().await.success());
}

/// bcoin dials peerpool, which accepts by hand (`TcpListener` + `Peer::new_inbound`): the same
/// handshake, pings both ways, and peerpool hangs up.
#[tokio::test]
async fn bcoin_dials_peerpool() {
    let listener = TcpListener::bind(SocketAddr::new(loopback(4), 0))
        .await
        .expect("bind peerpool's listener");
    let ours = listener.local_addr().expect("listener address");
    let mut bcoin = BcoinNode::builder()
        .no_listen()
        .outbound_from(loopback(5))
        .start()
        .await;
    let (listeners, mut rec) = recording();
    let config = peerpool_config(listeners, full_node(), None);

    let id = bcoin.connect(ours).await;
    let (stream, from) = within("bcoin's connection", listener.accept())
        .await
        .expect("accept");
    assert_eq!(from.ip(), loopback(5));
    let peer = Peer::new_inbound(config);
    peer.associate_connection(stream);
    assert!(peer.inbound());
    assert_eq!(peer.addr(), Some(from));

    let id_seen = expect_handshake(&mut bcoin, &mut rec, &peer, full_node(), |e| {
        e.is("open") && e.peer() == Some(id)
    })
    .await;
    assert_eq!(id_seen, id);
    expect_first_ping(&mut bcoin, &mut rec, &peer, id).await;
    expect_handshake_messages(&bcoin, id);
    expect_pong_to_bcoin(&mut bcoin, &mut rec, &peer, id).await;
    expect_bcoin_greeting(&mut rec, &peer, full_node()).await;

    let peers = bcoin.peers().await;
    let info = peers.iter().find(|p| p.peer == id).expect("bcoin lists us");
    assert_eq!(info.direction, Direction::Outbound);
    assert_eq!(info.addr, ours);
    assert_eq!(info.services, Some(full_node().to_u64()));

    expect_no_grudges(&mut bcoin, &mut rec, &peer, id).await;
    expect_peerpool_hangs_up(&mut bcoin, &mut rec, &peer, id).await;
    assert!(bcoin.stop().await.success());
}

/// bcoin dials peerpool's `accept_loop`; both keep pinging at a short interval, then bcoin
/// hangs up.
#[tokio::test]
async fn bcoin_dials_peerpool_keepalive_then_bcoin_hangs_up() {
    let listener = TcpListener::bind(SocketAddr::new(loopback(7), 0))
        .await
        .expect("bind peerpool's listener");
    let ours = listener.local_addr().expect("listener address");
    let (listeners, mut rec) = recording();
    let config = peerpool_config(listeners, full_node(), Some(FAST_PING));
    let shutdown = CancellationToken::new();
    let (accepted_tx, mut accepted) = mpsc::unbounded_channel();
    let acceptor = tokio::spawn(accept_loop(
        listener,
        config,
        AcceptLimits::default(),
        shutdown.clone(),
        move |peer| {
            let _ = accepted_tx.send(peer);
        },
    ));

    let mut bcoin = BcoinNode::builder()
        .no_listen()
        .outbound_from(loopback(8))
        .ping_interval(FAST_PING)
        .start()
        .await;
    let id = bcoin.connect(ours).await;
    let peer = within("accept_loop's peer", accepted.recv())
        .await
        .expect("accept_loop hands over the peer");
    assert!(peer.inbound());
    assert_eq!(peer.addr().map(|a| a.ip()), Some(loopback(8)));

    expect_handshake(&mut bcoin, &mut rec, &peer, full_node(), |e| {
        e.is("open") && e.peer() == Some(id)
    })
    .await;
    expect_keepalive_rounds(&mut bcoin, &mut rec, &peer, id).await;
    expect_handshake_messages(&bcoin, id);
    expect_bcoin_greeting(&mut rec, &peer, full_node()).await;
    expect_no_grudges(&mut bcoin, &mut rec, &peer, id).await;
    expect_bcoin_hangs_up(&mut bcoin, &mut rec, &peer, id).await;

    shutdown.cancel();
    within("accept_loop to stop", acceptor)
        .await
        .expect("accept_loop ran to completion");
    assert!(bcoin.stop().await.success());
}

/// Without `NODE_NETWORK | NODE_WITNESS` (peerpool's default is no services) bcoin refuses to
/// keep a connection it dialed: it hangs up during the handshake, bans nothing, and peerpool
/// sees the remote close before any handshake completed.
#[tokio::test]
async fn bcoin_dials_peerpool_without_services_is_refused() {
    let listener = TcpListener::bind(SocketAddr::new(loopback(9), 0))
        .await
        .expect("bind peerpool's listener");
    let ours = listener.local_addr().expect("listener address");
    let mut bcoin = BcoinNode::builder().no_listen().start().await;
    let (listeners, mut rec) = recording();
    let config = peerpool_config(listeners, ServiceFlags::NONE, None);

    let id = bcoin.connect(ours).await;
    let (stream, _) = within("bcoin's connection", listener.accept())
        .await
        .expect("accept");
    let peer = Peer::new_inbound(config);
    peer.associate_connection(stream);

    let complaint = bcoin
        .wait_for("bcoin's objection", |e| {
            e.is("peer_error") && e.peer() == Some(id)
        })
        .await;
    let message = complaint.str("message").unwrap_or_default();
    assert!(
        message.starts_with("Peer does not support network services."),
        "{message}"
    );
    let close = bcoin
        .wait_for("bcoin to hang up", |e| {
            e.is("close") && e.peer() == Some(id)
        })
        .await;
    assert_eq!(close.bool("handshake"), Some(false));
    let reason = within("peerpool to notice", peer.wait_for_disconnect()).await;
    assert_eq!(reason, DisconnectReason::RemoteClosed);

    rec.catch_up();
    assert!(
        !rec.history()
            .iter()
            .any(|s| matches!(s, Seen::Handshake { .. } | Seen::Misbehaved { .. })),
        "{}",
        rec.recent()
    );
    // bcoin read peerpool's version before objecting to it.
    assert!(bcoin_received(&bcoin, id).iter().any(|c| c == "version"));
    let stopped = bcoin.stop().await;
    assert!(stopped.success());
}

/// peerpool asks bcoin for what it has and takes in every answer: `addr`, `headers`, `block`
/// and `notfound` all decode to what was asked for, and nobody's ban score moves.
///
/// Two connections: bcoin never hands addresses back to the peer that told it about them, so
/// one connection (`teller`) gives bcoin addresses and the other (`asker`) asks for them.
#[tokio::test]
async fn bcoin_chatter_decodes_and_costs_nothing() {
    let mut bcoin = BcoinNode::start().await;
    let (listeners, mut rec) = recording();
    let config = peerpool_config(listeners, full_node(), None);
    let teller = dial_bcoin(&bcoin, Arc::clone(&config), loopback(10)).await;
    let asker = dial_bcoin(&bcoin, config, loopback(11)).await;
    let (teller_local, asker_local) = (local_addr(&teller), local_addr(&asker));
    let teller_id = expect_handshake(&mut bcoin, &mut rec, &teller, full_node(), |e| {
        e.is("open") && e.is_about(teller_local)
    })
    .await;
    let asker_id = expect_handshake(&mut bcoin, &mut rec, &asker, full_node(), |e| {
        e.is("open") && e.is_about(asker_local)
    })
    .await;
    expect_bcoin_greeting(&mut rec, &teller, full_node()).await;
    expect_bcoin_greeting(&mut rec, &asker, full_node()).await;

    // Addresses bcoin will keep: public, fresh, offering what bcoin requires. They are data
    // only; the harness lets bcoin dial nothing but loopback.
    let now = unix_now() as u32;
    let told: Vec<AddrV2Message> = [[1, 2, 3, 4], [5, 6, 7, 8], [9, 10, 11, 12]]
        .into_iter()
        .map(|ip| AddrV2Message {
            time: now,
            services: full_node(),
            addr: AddrV2::Ipv4(ip.into()),
            port: 8333,
        })
        .collect();
    assert_eq!(teller.push_addr(&told).len(), told.len());
    bcoin
        .wait_for("our addr", |e| {
            e.is_received("addr") && e.peer() == Some(teller_id)
        })
        .await;
    expect_handshake_messages(&bcoin, teller_id);

    asker.queue_message(NetworkMessage::GetAddr, None);
    let asker_pid = asker.id();
    let seen = rec
        .wait_for("bcoin's addr", |s| {
            s.peer() == asker_pid && s.is_received("addr")
        })
        .await;
    let Some(NetworkMessage::Addr(list)) = seen.message() else {
        panic!("addr decoded as {seen}")
    };
    let mut heard: Vec<SocketAddr> = list
        .iter()
        .map(|(_, a)| a.socket_addr().expect("an IP address"))
        .collect();
    let mut expected: Vec<SocketAddr> = told
        .iter()
        .map(|a| a.socket_addr().expect("an IP address"))
        .collect();
    heard.sort();
    expected.sort();
    assert_eq!(heard, expected, "bcoin passes on what it was told");
    assert!(list.iter().all(|(_, a)| a
        .services
        .has(ServiceFlags::NETWORK | ServiceFlags::WITNESS)));

    // An empty locator asks for the header of the stop block alone.
    let genesis = genesis_block(bitcoin::Network::Regtest);
    assert!(asker.push_getheaders(Vec::new(), genesis.block_hash()));
    let seen = rec
        .wait_for("bcoin's headers", |s| {
            s.peer() == asker_pid && s.is_received("headers")
        })
        .await;
    let Some(NetworkMessage::Headers(headers)) = seen.message() else {
        panic!("headers decoded as {seen}")
    };
    assert_eq!(headers, &vec![genesis.header]);

    // Nothing follows genesis, so bcoin stays silent; it must still take the request.
    assert!(asker.push_getblocks(vec![genesis.block_hash()], BlockHash::all_zeros()));
    bcoin
        .wait_for("our getblocks", |e| {
            e.is_received("getblocks") && e.peer() == Some(asker_id)
        })
        .await;
    expect_handshake_messages(&bcoin, asker_id);

    // One block bcoin has, two transactions it does not: `block`, then one `notfound`
    // naming both with the inventory types they were asked for.
    let missing = [
        Inventory::Transaction(Txid::from_byte_array([0x42; 32])),
        Inventory::WitnessTransaction(Txid::from_byte_array([0x43; 32])),
    ];
    let mut wanted = vec![Inventory::WitnessBlock(genesis.block_hash())];
    wanted.extend(missing);
    asker.queue_message(NetworkMessage::GetData(wanted), None);
    let seen = rec
        .wait_for("bcoin's block", |s| {
            s.peer() == asker_pid && s.is_received("block")
        })
        .await;
    let Some(NetworkMessage::Block(block)) = seen.message() else {
        panic!("block decoded as {seen}")
    };
    assert_eq!(block, &genesis);
    let seen = rec
        .wait_for("bcoin's notfound", |s| {
            s.peer() == asker_pid && s.is_received("notfound")
        })
        .await;
    assert_eq!(
        seen.message(),
        Some(&NetworkMessage::NotFound(missing.to_vec()))
    );

    expect_no_grudges(&mut bcoin, &mut rec, &teller, teller_id).await;
    expect_no_grudges(&mut bcoin, &mut rec, &asker, asker_id).await;
    expect_peerpool_hangs_up(&mut bcoin, &mut rec, &teller, teller_id).await;
    expect_peerpool_hangs_up(&mut bcoin, &mut rec, &asker, asker_id).await;
    assert!(bcoin.stop().await.success());
}
