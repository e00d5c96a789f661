//! Two peers over real loopback TCP.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bitcoin::absolute::LockTime;
use bitcoin::hashes::Hash;
use bitcoin::p2p::message::NetworkMessage;
use bitcoin::p2p::message_blockdata::Inventory;
use bitcoin::p2p::ServiceFlags;
use bitcoin::transaction::Version;
use bitcoin::{Amount, BlockHash, ScriptBuf, Transaction, TxIn, TxOut, Txid};
use peerpool_core::peer::PeerConfig;
use peerpool_net::{
    clock, dial, Config, Direction, DisconnectReason, HandshakeState, Listeners, Peer, UserAgent,
};
use peerpool_testkit::peer::{config, emit, peer_config, serve};
use peerpool_testkit::raw::{message_bytes, unknown};
use peerpool_testkit::{init_logs, within, WAIT};
use peerpool_wire::{MessageKind, Network};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};

#[tokio::test]
async fn handshake_ping_and_clean_disconnect() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let tx2 = tx.clone();
    let server_cfg = Arc::new(
        Config::new(Network::Regtest.params()).with_listeners(
            Listeners::new()
                .on_handshake(move |p, v| {
                    let _ = tx.send(("server-handshake", p.id().0, v.user_agent.clone()));
                })
                .on_ping_rtt(move |p, rtt| {
                    let _ = tx2.send(("server-rtt", p.id().0, rtt.to_string()));
                }),
        ),
    );
    let accept = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let p = Peer::new_inbound(server_cfg);
        p.associate_connection(stream);
        p
    });
    let client_cfg = Arc::new(Config::new(Network::Regtest.params()));
    let client = dial(client_cfg, addr, Duration::from_secs(5))
        .await
        .unwrap();
    let server = accept.await.unwrap();

    let timeout = Duration::from_secs(30);
    let (what, _, ua) = tokio::time::timeout(timeout, rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(what, "server-handshake");
    assert!(ua.starts_with("/peerpool:"), "{ua}");
    let (what, _, _) = tokio::time::timeout(timeout, rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(what, "server-rtt");

    let s = client.stats().unwrap();
    assert!(s.is_ready());
    assert_eq!(s.version, 70016);
    assert!(s.ping.last_rtt_micros.is_some() || s.ping.wait_micros.is_some());

    client.disconnect();
    assert_eq!(
        client.wait_for_disconnect().await,
        DisconnectReason::Requested
    );
    let r = tokio::time::timeout(timeout, server.wait_for_disconnect())
        .await
        .unwrap();
    assert_eq!(r, DisconnectReason::RemoteClosed);
    let last = server.stats().unwrap();
    assert!(last.bytes_recv > 0 && last.bytes_sent > 0);
}

/// What the listeners of one side saw, in order.
#[derive(Debug)]
enum Ev {
    Version(u32),
    Verack,
    Handshake(String),
    Inv(Vec<Inventory>),
    Tx(Transaction),
    Custom(String, Vec<u8>),
    Rtt(u64),
    Disconnect(DisconnectReason),
}

/// Listeners that report everything of interest into a channel.
fn recording() -> (Listeners, Events) {
    let (tx, rx) = mpsc::unbounded_channel();
    let t = [(); 8].map(|()| tx.clone());
    let [a, b, c, d, e, f, g, h] = t;
    let l = Listeners::new()
        .on_version(move |_, v| emit(&a, Ev::Version(v.version)))
        .on_verack(move |_| emit(&b, Ev::Verack))
        .on_handshake(move |_, v| emit(&c, Ev::Handshake(v.user_agent.clone())))
        .on_inv(move |_, inv| emit(&d, Ev::Inv(inv.clone())))
        .on_tx(move |_, t| emit(&e, Ev::Tx(t.clone())))
        .on(MessageKind::Unknown, move |_, m| {
            if let NetworkMessage::Unknown { command, payload } = m {
                let _ = f.send(Ev::Custom(command.to_string(), payload.clone()));
            }
        })
        .on_ping_rtt(move |_, rtt| emit(&g, Ev::Rtt(rtt)))
        .on_disconnect(move |_, r| emit(&h, Ev::Disconnect(r.clone())));
    (
        l,
        Events {
            rx,
            parked: Vec::new(),
        },
    )
}

/// The events of one side; waits pick out the event they want and keep the rest for later.
struct Events {
    rx: mpsc::UnboundedReceiver<Ev>,
    parked: Vec<Ev>,
}

impl Events {
    async fn wait(&mut self, what: &str, pred: impl Fn(&Ev) -> bool) -> Ev {
        if let Some(i) = self.parked.iter().position(&pred) {
            return self.parked.remove(i);
        }
        loop {
            let ev = within(what, self.rx.recv())
                .await
                .unwrap_or_else(|| panic!("listeners gone while waiting for {what}"));
            if pred(&ev) {
                return ev;
            }
            self.parked.push(ev);
        }
    }
}

fn tx_with(value: u64) -> Transaction {
    Transaction {
        version: Version::TWO,
        lock_time: LockTime::ZERO,
        input: vec![TxIn::default()],
        output: vec![TxOut {
            value: Amount::from_sat(value),
            script_pubkey: ScriptBuf::new(),
        }],
    }
}

fn wire_len(msg: &NetworkMessage) -> u64 {
    message_bytes(msg).len() as u64
}

fn bytes_of(map: &[(MessageKind, u64)], kind: MessageKind) -> u64 {
    map.iter().find(|(k, _)| *k == kind).map_or(0, |(_, b)| *b)
}

/// Sends a block inv, a tx and a custom message from `from`; waits until each is written and
/// until `to_events` has seen each. Returns the bytes of the custom message on the wire.
async fn exchange(from: &Peer, to_events: &mut Events, tag: u8) -> u64 {
    let block = Inventory::Block(BlockHash::from_byte_array([tag; 32]));
    let tx = tx_with(u64::from(tag));
    let custom = unknown("xcustom", vec![tag; 1000 + usize::from(tag)]);
    let custom_len = wire_len(&custom);
    let mut done = Vec::new();
    for msg in [
        NetworkMessage::Inv(vec![block]),
        NetworkMessage::Tx(tx.clone()),
        custom,
    ] {
        let (d, r) = oneshot::channel();
        from.queue_message(msg, Some(d));
        done.push(r);
    }
    for r in done {
        within("message written", r)
            .await
            .expect("done must resolve, not be dropped, on a live connection");
    }
    let Ev::Inv(got) = to_events
        .wait("inv", |e| matches!(e, Ev::Inv(v) if v.contains(&block)))
        .await
    else {
        unreachable!()
    };
    assert_eq!(got, vec![block]);
    let Ev::Tx(got) = to_events.wait("tx", |e| matches!(e, Ev::Tx(_))).await else {
        unreachable!()
    };
    assert_eq!(got, tx);
    let Ev::Custom(command, payload) = to_events
        .wait(
            "custom",
            |e| matches!(e, Ev::Custom(c, _) if c == "xcustom"),
        )
        .await
    else {
        unreachable!()
    };
    assert_eq!(command, "xcustom");
    assert_eq!(payload, vec![tag; 1000 + usize::from(tag)]);
    custom_len
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_peers_talk_both_ways_and_agree_on_stats() {
    init_logs();
    let (server_listeners, mut sev) = recording();
    let (client_listeners, mut cev) = recording();

    let mut spc = peer_config();
    spc.user_agent = UserAgent::new("serverside", "9.9", &["test"]).unwrap();
    spc.services = ServiceFlags::NETWORK | ServiceFlags::WITNESS;
    let server_cfg = Arc::new(
        Config::from_peer_config(spc)
            .with_listeners(server_listeners)
            .with_newest_block(|| (BlockHash::from_byte_array([1; 32]), 1234)),
    );
    let mut cpc = peer_config();
    cpc.services = ServiceFlags::WITNESS;
    let client_cfg = Arc::new(
        Config::from_peer_config(cpc)
            .with_listeners(client_listeners)
            .with_newest_block(|| (BlockHash::from_byte_array([2; 32]), 77)),
    );

    let t0 = clock::now();
    let (addr, mut accepted) = serve("127.0.0.1:0", server_cfg).await;
    let client = within("dial", dial(client_cfg, addr, WAIT))
        .await
        .expect("dial");
    // Queued at once: whether or not the handshake is done yet, it must arrive and `done`
    // must resolve.
    let (early_done, early_written) = oneshot::channel();
    client.queue_message(unknown("early", vec![1, 2, 3]), Some(early_done));
    let server = within("accept", accepted.recv()).await.expect("accepted");

    for (side, ev, their_ua) in [
        ("server", &mut sev, "/peerpool:"),
        ("client", &mut cev, "/serverside:9.9(test)/"),
    ] {
        let Ev::Version(v) = ev.wait(side, |e| matches!(e, Ev::Version(_))).await else {
            unreachable!()
        };
        assert_eq!(v, 70016, "{side} saw version");
        ev.wait(side, |e| matches!(e, Ev::Verack)).await;
        let Ev::Handshake(ua) = ev.wait(side, |e| matches!(e, Ev::Handshake(_))).await else {
            unreachable!()
        };
        assert!(ua.starts_with(their_ua), "{side} saw {ua}");
    }
    within("early message written", early_written)
        .await
        .expect("early message must be written once the handshake completes");
    let Ev::Custom(c, p) = sev
        .wait("early message", |e| matches!(e, Ev::Custom(..)))
        .await
    else {
        unreachable!()
    };
    assert_eq!((c.as_str(), p), ("early", vec![1, 2, 3]));

    // Each side pings right after the handshake and measures the round trip.
    let Ev::Rtt(server_rtt) = sev.wait("server rtt", |e| matches!(e, Ev::Rtt(_))).await else {
        unreachable!()
    };
    let Ev::Rtt(client_rtt) = cev.wait("client rtt", |e| matches!(e, Ev::Rtt(_))).await else {
        unreachable!()
    };
    let t1 = clock::now();
    for rtt in [server_rtt, client_rtt] {
        assert!(rtt > 0 && rtt < 5_000_000, "rtt {rtt} us");
    }

    let c2s_custom = exchange(&client, &mut sev, 3).await;
    let s2c_custom = exchange(&server, &mut cev, 4).await;

    // Trickled transaction announcements, one each way.
    let txid = |b| Inventory::Transaction(Txid::from_byte_array([b; 32]));
    client.queue_inventory(txid(5));
    server.queue_inventory(txid(6));
    let trickled = |want: Inventory| move |e: &Ev| matches!(e, Ev::Inv(v) if v == &vec![want]);
    sev.wait("trickled inv", trickled(txid(5))).await;
    cev.wait("trickled inv", trickled(txid(6))).await;

    // Everything sent has been received and nothing more is due (pings are minutes apart),
    // so both ends must count exactly the same bytes.
    let cs = client.stats().unwrap();
    let ss = server.stats().unwrap();
    assert_eq!(cs.bytes_sent, ss.bytes_recv);
    assert_eq!(cs.bytes_recv, ss.bytes_sent);
    assert_eq!(cs.msgs_sent, ss.msgs_recv);
    assert_eq!(cs.msgs_recv, ss.msgs_sent);
    assert_eq!(cs.bytes_sent_per_msg, ss.bytes_recv_per_msg);
    assert_eq!(cs.bytes_recv_per_msg, ss.bytes_sent_per_msg);
    assert_eq!(
        cs.bytes_sent_per_msg.iter().map(|(_, b)| b).sum::<u64>(),
        cs.bytes_sent
    );
    assert_eq!(
        bytes_of(&cs.bytes_sent_per_msg, MessageKind::Unknown),
        24 + 3 + c2s_custom
    );
    assert_eq!(
        bytes_of(&ss.bytes_sent_per_msg, MessageKind::Unknown),
        s2c_custom
    );
    assert_eq!(
        bytes_of(&cs.bytes_sent_per_msg, MessageKind::Tx),
        wire_len(&NetworkMessage::Tx(tx_with(3)))
    );
    for kind in [
        MessageKind::Version,
        MessageKind::Verack,
        MessageKind::WtxidRelay,
        MessageKind::SendAddrV2,
        MessageKind::SendHeaders,
        MessageKind::Ping,
        MessageKind::Pong,
        MessageKind::Inv,
        MessageKind::Tx,
    ] {
        assert!(bytes_of(&cs.bytes_sent_per_msg, kind) > 0, "{kind} sent");
        assert!(bytes_of(&ss.bytes_sent_per_msg, kind) > 0, "{kind} sent");
    }
    assert_eq!(bytes_of(&cs.bytes_sent_per_msg, MessageKind::Verack), 24);

    // What each side learned about the other.
    assert_eq!(cs.direction, Direction::Outbound);
    assert_eq!(ss.direction, Direction::Inbound);
    assert_eq!(cs.addr, addr);
    assert_eq!(Some(ss.addr), cs.local_addr);
    assert_eq!(server.addr(), Some(ss.addr));
    assert_eq!(cs.user_agent, "/serverside:9.9(test)/");
    assert!(ss.user_agent.starts_with("/peerpool:"), "{}", ss.user_agent);
    assert_eq!(client.user_agent().as_deref(), Some(cs.user_agent.as_str()));
    assert_eq!((cs.version, cs.their_version), (70016, 70016));
    assert_eq!((ss.version, ss.their_version), (70016, 70016));
    assert_eq!(client.protocol_version(), 70016);
    assert_eq!(cs.services, ServiceFlags::NETWORK | ServiceFlags::WITNESS);
    assert_eq!(ss.services, ServiceFlags::WITNESS);
    assert_eq!(server.services(), ServiceFlags::WITNESS);
    assert!(client.is_witness_enabled() && server.is_witness_enabled());
    assert_eq!(cs.starting_height, 1234);
    assert_eq!(ss.starting_height, 77);
    assert!(cs.time_offset.abs() <= 2, "offset {}", cs.time_offset);
    assert!(ss.time_offset.abs() <= 2, "offset {}", ss.time_offset);
    for s in [&cs, &ss] {
        assert!(
            t0 <= s.conn_time && s.conn_time <= t1,
            "conn time {:?} outside [{t0:?}, {t1:?}]",
            s.conn_time
        );
        assert!(s.is_ready());
        assert!(matches!(s.handshake, HandshakeState::Ready { .. }));
        assert!(s.wants_headers && s.wtxid_relay && s.addrv2 && s.relay);
        assert!(s.last_send.is_some() && s.last_recv.is_some());
        assert_eq!(s.ban_score, 0);
    }
    assert!(client.wants_headers() && server.wants_headers());
    assert_eq!(cs.ping.last_rtt_micros, Some(client_rtt));
    assert_eq!(ss.ping.last_rtt_micros, Some(server_rtt));
    assert_eq!(cs.ping.min_rtt_micros, Some(client_rtt));
    assert_eq!(cs.ping.wait_micros, None);

    // The listening side hangs up; every clone of both handles learns why.
    let waits = |p: &Peer| {
        (0..3)
            .map(|_| {
                let p = p.clone();
                tokio::spawn(async move { p.wait_for_disconnect().await })
            })
            .collect::<Vec<_>>()
    };
    let server_waits = waits(&server);
    let client_waits = waits(&client);
    server.disconnect();
    server.disconnect(); // a second call is harmless
    for w in server_waits {
        let r = within("server clone", w).await.unwrap();
        assert_eq!(r, DisconnectReason::Requested);
    }
    for w in client_waits {
        let r = within("client clone", w).await.unwrap();
        assert_eq!(r, DisconnectReason::RemoteClosed);
    }
    let Ev::Disconnect(r) = sev
        .wait("on_disconnect", |e| matches!(e, Ev::Disconnect(_)))
        .await
    else {
        unreachable!()
    };
    assert_eq!(r, DisconnectReason::Requested);
    let Ev::Disconnect(r) = cev
        .wait("on_disconnect", |e| matches!(e, Ev::Disconnect(_)))
        .await
    else {
        unreachable!()
    };
    assert_eq!(r, DisconnectReason::RemoteClosed);
    assert!(!server.connected() && !client.connected());
    assert_eq!(
        server.disconnect_reason(),
        Some(DisconnectReason::Requested)
    );
    // A late waiter returns at once.
    assert_eq!(
        within("late wait", client.wait_for_disconnect()).await,
        DisconnectReason::RemoteClosed
    );
    // The last statistics survive the connection.
    let last = server.stats().expect("stats kept after disconnect");
    assert_eq!(last.bytes_recv, ss.bytes_recv);
    assert!(matches!(
        last.handshake,
        HandshakeState::Disconnected { .. }
    ));

    // A message queued on a finished peer never goes out: its notice is dropped.
    let (d, r) = oneshot::channel();
    client.queue_message(NetworkMessage::Ping(1), Some(d));
    assert!(within("dropped notice", r).await.is_err());
}

/// Dials `bind`'s listener with fresh peers on both ends and waits for both handshakes.
async fn handshaken_pair(bind: &str) -> (Peer, Peer) {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let tx2 = tx.clone();
    let server_cfg = config(
        peer_config(),
        Listeners::new().on_handshake(move |p, _| emit(&tx, p.direction())),
    );
    let client_cfg = config(
        peer_config(),
        Listeners::new().on_handshake(move |p, _| emit(&tx2, p.direction())),
    );
    let (addr, mut accepted) = serve(bind, server_cfg).await;
    let client = within("dial", dial(client_cfg, addr, WAIT))
        .await
        .expect("dial");
    let server = within("accept", accepted.recv()).await.unwrap();
    let mut seen = vec![
        within("handshake", rx.recv()).await.unwrap(),
        within("handshake", rx.recv()).await.unwrap(),
    ];
    seen.sort_by_key(|d| d.is_inbound());
    assert_eq!(seen, vec![Direction::Outbound, Direction::Inbound]);
    assert!(client.is_ready() && server.is_ready());
    (client, server)
}

#[tokio::test]
async fn dialer_hangs_up_and_every_clone_wakes() {
    init_logs();
    let (client, server) = handshaken_pair("127.0.0.1:0").await;
    let clones: Vec<Peer> = (0..4).map(|_| server.clone()).collect();
    let waits: Vec<_> = clones
        .into_iter()
        .map(|p| tokio::spawn(async move { p.wait_for_disconnect().await }))
        .collect();
    client.disconnect();
    assert_eq!(
        within("client", client.wait_for_disconnect()).await,
        DisconnectReason::Requested
    );
    for w in waits {
        assert_eq!(
            within("server clone", w).await.unwrap(),
            DisconnectReason::RemoteClosed
        );
    }
}

#[tokio::test]
async fn ipv6_loopback_handshake() {
    init_logs();
    if std::net::TcpListener::bind("[::1]:0").is_err() {
        eprintln!("no IPv6 loopback on this machine; skipping");
        return;
    }
    let (client, server) = handshaken_pair("[::1]:0").await;
    let cs = client.stats().unwrap();
    let ss = server.stats().unwrap();
    assert!(cs.addr.is_ipv6() && ss.addr.is_ipv6());
    assert_eq!(ss.addr.ip(), "::1".parse::<std::net::IpAddr>().unwrap());
    assert_eq!(cs.version, 70016);
    server.disconnect();
    assert_eq!(
        within("client", client.wait_for_disconnect()).await,
        DisconnectReason::RemoteClosed
    );
}

#[tokio::test]
async fn dialing_our_own_listener_is_detected() {
    init_logs();
    // One config for both ends, as in a node whose listener is dialed by its own pool: they
    // share the nonce set, so the inbound side recognises the outbound side's nonce.
    let (tx, mut rx) = mpsc::unbounded_channel();
    let cfg = config(
        peer_config(),
        Listeners::new().on_disconnect(move |p, r| emit(&tx, (p.direction(), r.clone()))),
    );
    let (addr, mut accepted) = serve("127.0.0.1:0", Arc::clone(&cfg)).await;
    let outbound = within("dial", dial(Arc::clone(&cfg), addr, WAIT))
        .await
        .expect("dial");
    let inbound = within("accept", accepted.recv()).await.unwrap();
    assert_eq!(
        within("inbound end", inbound.wait_for_disconnect()).await,
        DisconnectReason::SelfConnection
    );
    assert_eq!(
        within("outbound end", outbound.wait_for_disconnect()).await,
        DisconnectReason::RemoteClosed
    );
    let mut seen = vec![
        within("event", rx.recv()).await.unwrap(),
        within("event", rx.recv()).await.unwrap(),
    ];
    seen.sort_by_key(|(d, _)| d.is_inbound());
    assert_eq!(
        seen,
        vec![
            (Direction::Outbound, DisconnectReason::RemoteClosed),
            (Direction::Inbound, DisconnectReason::SelfConnection)
        ]
    );
    // Neither side got as far as a handshake.
    assert!(!inbound.stats().unwrap().is_ready());
    assert!(!outbound.stats().unwrap().is_ready());
}

#[tokio::test]
async fn unconnected_and_finished_peers_drop_completion_notices() {
    let cfg = config(PeerConfig::new(Network::Regtest.params()), Listeners::new());
    let addr: SocketAddr = "127.0.0.1:9".parse().unwrap();
    let p = Peer::new_outbound(cfg, addr);
    assert!(!p.connected() && p.stats().is_none());
    let (d, r) = oneshot::channel();
    p.queue_message(NetworkMessage::Verack, Some(d));
    assert!(
        r.await.is_err(),
        "no connection: the notice must be dropped"
    );
    p.disconnect();
    assert_eq!(
        within("finish", p.wait_for_disconnect()).await,
        DisconnectReason::Requested
    );
    // A connection handed over after the end is ignored.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let stream = tokio::net::TcpStream::connect(listener.local_addr().unwrap())
        .await
        .unwrap();
    p.associate_connection(stream);
    assert!(!p.connected());
}

/// The send bound limits what waits, not the size of one message: a message larger than
/// `max_send_buffer` still reaches a peer that reads.
#[tokio::test]
async fn a_single_message_larger_than_the_send_bound_goes_out() {
    init_logs();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let server_cfg = config(
        peer_config(),
        Listeners::new().on(MessageKind::Unknown, move |_, m| {
            if let NetworkMessage::Unknown { payload, .. } = m {
                emit(&tx, payload.len());
            }
        }),
    );
    let mut small = Config::from_peer_config(peer_config());
    small.max_send_buffer = 64 * 1024;
    let (addr, mut accepted) = serve("127.0.0.1:0", server_cfg).await;
    let client = within("dial", dial(Arc::new(small), addr, WAIT))
        .await
        .unwrap();
    let _server = within("accept", accepted.recv()).await.unwrap();
    let (d, written) = oneshot::channel();
    client.queue_message(unknown("large", vec![7; 300 * 1024]), Some(d));
    within("written", written).await.expect("written");
    assert_eq!(within("received", rx.recv()).await, Some(300 * 1024));
    assert!(client.connected());
}
