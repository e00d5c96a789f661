//! The pool runtime on loopback: real sockets, pools on distinct 127.0.x.y addresses (one
//! third octet per test, so bans and groups of one test never touch another).

use std::net::SocketAddr;
use std::time::Duration;

use bitcoin::hashes::Hash;
use bitcoin::p2p::message_blockdata::Inventory;
use bitcoin::Txid;
use peerpool_core::addr::NetAddr;
use peerpool_net::bus::{Lagged, PoolEvent};
use peerpool_net::pool::{ConnKind, Subnet};
use peerpool_net::{DisconnectReason, Listeners, Pool};
use peerpool_testkit::loopback::ip;
use peerpool_testkit::pool::*;
use peerpool_testkit::raw::{magic, unix_now, RawPeer, MODERN};
use peerpool_testkit::{init_logs, within};
use peerpool_wire::MessageKind;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread")]
async fn every_pool_fills_its_outbound_slots_from_its_address_book() {
    init_logs();
    // Discovery itself is the business of tests/network.rs (50 nodes, one seed each); here
    // every pool starts knowing the others, and must dial, handshake and keep its target.
    let n = 6u8;
    let mut listeners = Vec::new();
    for i in 0..n {
        listeners.push(
            TcpListener::bind(SocketAddr::from((ip(1, 1 + i), 0)))
                .await
                .unwrap(),
        );
    }
    let addrs: Vec<NetAddr> = listeners
        .iter()
        .map(|l| NetAddr::from_socket(l.local_addr().unwrap()))
        .collect();
    let mut pools = Vec::new();
    for (i, l) in listeners.into_iter().enumerate() {
        let mut config = pool_config(3);
        config.seeds = addrs.iter().copied().filter(|a| *a != addrs[i]).collect();
        let peer = pool_peer_config(&format!("n{i}"));
        pools.push(Pool::start(config, peer, vec![l], CancellationToken::new()).await);
    }
    for p in &pools {
        let mut events = p.bus().subscribe();
        outbound_reached(p, &mut events, 3).await;
    }
    // PeerCount and GetConnectedPeers answer (inbound peers may still be arriving between the
    // two requests), and describe the peers from their handshake.
    for p in &pools {
        let h = p.handle();
        let count = h.peer_count().await.unwrap();
        let peers = h.connected_peers().await.unwrap();
        assert!(count >= 3 && peers.len() >= 3, "{count} {peers:?}");
        for info in &peers {
            assert!(info.user_agent.contains("(n"), "{info:?}");
            assert_eq!(info.version, 70016);
            assert!(
                matches!(info.addr.ip(), std::net::IpAddr::V4(v4) if v4.octets()[2] == 1),
                "{info:?}"
            );
        }
        let details = h.peer_details().await.unwrap();
        assert!(details.iter().all(|d| d.stats.is_some()));
        let outbound = details
            .iter()
            .filter(|d| d.kind == ConnKind::Outbound)
            .count();
        assert!(outbound <= 3, "never above the target: {outbound}");
        // Nobody dials itself, however often its own address comes back through gossip.
        let own = p.listening()[0];
        assert!(details
            .iter()
            .all(|d| d.kind == ConnKind::Inbound || d.addr.to_socket() != Some(own)));
    }
    for p in pools {
        p.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_manual_peer_is_redialed_after_the_other_side_restarts() {
    init_logs();
    let b_addr = SocketAddr::from((ip(2, 2), 0));
    let b = start(b_addr, pool_config(0), "b").await;
    let b_addr = b.listening()[0];
    let a = start(SocketAddr::from((ip(2, 1), 0)), pool_config(0), "a").await;
    let mut events = a.bus().subscribe();
    a.handle().add_node(net_addr(&b)).await.unwrap();
    assert!(
        a.handle().add_node(net_addr(&b)).await.is_err(),
        "added twice"
    );
    next_event(&mut events, "B joining", joined_from(ip(2, 2))).await;
    let manual = a.handle().added_nodes().await.unwrap();
    assert_eq!(manual.len(), 1);
    assert_eq!(manual[0].addr, net_addr(&b));

    b.stop().await;
    let left = next_event(&mut events, "B leaving", |e| {
        matches!(e, PoolEvent::PeerLeft { .. })
    })
    .await;
    assert!(matches!(left, PoolEvent::PeerLeft { addr, .. } if addr == b_addr));

    // B comes back on the same address; A redials after its backoff (btcd's 5 s step).
    let b = start(b_addr, pool_config(0), "b").await;
    next_event(&mut events, "B joining again", joined_from(ip(2, 2))).await;
    let details = a.handle().peer_details().await.unwrap();
    assert!(details
        .iter()
        .any(|d| d.kind == ConnKind::Manual && d.joined));

    // Removing the manual peer keeps the connection (as Bitcoin Core) but ends the redials:
    // once B goes away, A does not dial it again.
    a.handle().remove_node(net_addr(&b)).await.unwrap();
    assert!(a.handle().added_nodes().await.unwrap().is_empty());
    assert_eq!(a.handle().peer_count().await.unwrap(), 1);
    b.stop().await;
    next_event(&mut events, "B leaving again", |e| {
        matches!(e, PoolEvent::PeerLeft { .. })
    })
    .await;
    let b = start(b_addr, pool_config(0), "b").await;
    // Past the first redial step (5 s) with margin: nothing.
    tokio::time::sleep(Duration::from_secs(7)).await;
    assert_eq!(
        a.handle().peer_count().await.unwrap(),
        0,
        "redialed after removal"
    );
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_ban_through_the_handle_disconnects_and_refuses_the_peer() {
    init_logs();
    let a = start(SocketAddr::from((ip(3, 1), 0)), pool_config(0), "a").await;
    let b = start(SocketAddr::from((ip(3, 2), 0)), pool_config(0), "b").await;
    let mut events = a.bus().subscribe();
    b.handle().connect(net_addr(&a)).await.unwrap();
    next_event(&mut events, "B joining", joined_from(ip(3, 2))).await;

    let subnet: Subnet = "127.0.3.2/32".parse().unwrap();
    assert!(a
        .handle()
        .ban(subnet, Duration::from_secs(3600))
        .await
        .unwrap());
    let banned = next_event(&mut events, "the ban", |e| {
        matches!(e, PoolEvent::Banned { .. })
    })
    .await;
    assert!(
        matches!(&banned, PoolEvent::Banned { subnet, .. } if subnet.to_string() == "127.0.3.2/32")
    );
    next_event(&mut events, "B leaving", |e| {
        matches!(
            e,
            PoolEvent::PeerLeft {
                reason: DisconnectReason::Banned,
                ..
            }
        )
    })
    .await;
    let bans = a.handle().list_bans().await.unwrap();
    assert_eq!(bans.len(), 1);
    assert_eq!(bans[0].subnet, subnet);

    // From the banned address, a connection is closed before a byte is exchanged.
    let mut raw = RawPeer::connect_from(ip(3, 2), a.listening()[0]).await;
    raw.expect_close().await;
    assert_eq!(a.handle().peer_count().await.unwrap(), 0);

    // Lifted, B gets in again.
    assert!(a.handle().unban(subnet).await.unwrap());
    assert!(a.handle().list_bans().await.unwrap().is_empty());
    b.handle().connect(net_addr(&a)).await.unwrap();
    next_event(&mut events, "B back", joined_from(ip(3, 2))).await;
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn misbehaviour_past_the_threshold_bans_the_address() {
    init_logs();
    let mut config = pool_config(0);
    config.machine.banman.threshold = 30;
    let a = start(SocketAddr::from((ip(4, 1), 0)), config, "a").await;
    let mut events = a.bus().subscribe();
    let mut raw = RawPeer::connect_from(ip(4, 9), a.listening()[0]).await;
    raw.handshake_as_dialer(MODERN).await;
    next_event(&mut events, "the raw peer joining", joined_from(ip(4, 9))).await;
    // Four undecodable `inv`s at 10 points each pass the threshold of 30, even if a second
    // ticks over between them and the score decays a little.
    for _ in 0..4 {
        raw.send_frame("inv", &[0xfd, 0xff]).await;
    }
    next_event(&mut events, "the ban", |e| {
        matches!(e, PoolEvent::Banned { subnet, reason, .. }
            if subnet.to_string() == "127.0.4.9/32" && reason.to_string() == "node misbehaving")
    })
    .await;
    raw.read_to_close().await;
    let mut again = RawPeer::connect_from(ip(4, 9), a.listening()[0]).await;
    again.expect_close().await;
    a.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_peer_whose_reports_wait_for_the_pool_is_still_scored_and_banned() {
    init_logs();
    let mut config = pool_config(0);
    config.machine.banman.threshold = 30;
    // One report in flight per peer: every burst fills the peer's budget at once, and its
    // connection has to wait for the driver again and again.
    config.report_capacity = 1;
    let a = start(SocketAddr::from((ip(4, 1), 0)), config, "a").await;
    let mut events = a.bus().subscribe();
    let mut raw = RawPeer::connect_from(ip(4, 19), a.listening()[0]).await;
    raw.handshake_as_dialer(MODERN).await;
    next_event(&mut events, "the raw peer joining", joined_from(ip(4, 19))).await;
    // Hundreds of reports for the pool in one burst (each `addr` is one), the misbehaviour
    // last: nothing may be dropped on the way, least of all the misbehaviour.
    let mut burst = Vec::new();
    for i in 0..300u32 {
        let at = SocketAddr::from((ip(90, (i % 250) as u8 + 1), 18444));
        let entry = bitcoin::p2p::address::Address::new(&at, bitcoin::p2p::ServiceFlags::NONE);
        let msg = bitcoin::p2p::message::NetworkMessage::Addr(vec![(unix_now() as u32, entry)]);
        peerpool_wire::message::encode_message(magic(), &msg, &mut burst);
    }
    raw.send_raw(&burst).await;
    for _ in 0..4 {
        raw.send_frame("inv", &[0xfd, 0xff]).await;
    }
    next_event(
        &mut events,
        "the ban",
        |e| matches!(e, PoolEvent::Banned { subnet, .. } if subnet.to_string() == "127.0.4.19/32"),
    )
    .await;
    raw.read_to_close().await;
    a.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_slow_subscriber_lags_and_never_stalls_the_pool() {
    init_logs();
    let mut config = pool_config(0);
    config.bus_capacity = 2;
    let hub = start(SocketAddr::from((ip(5, 1), 0)), config, "hub").await;
    // Subscribed, never read until the end.
    let mut slow = hub.bus().subscribe();
    let mut slow_messages = hub
        .handle()
        .subscribe_messages(&[MessageKind::Ping, MessageKind::Pong]);
    let mut spokes = Vec::new();
    for i in 0..5u8 {
        let s = start(
            SocketAddr::from((ip(5, 10 + i), 0)),
            pool_config(0),
            "spoke",
        )
        .await;
        s.handle().connect(net_addr(&hub)).await.unwrap();
        spokes.push(s);
    }
    // The pool keeps going: every spoke joins, whatever the slow subscriber does.
    let h = hub.handle();
    within("all spokes joined", async {
        loop {
            if h.peer_count().await.unwrap() == 5 {
                break;
            }
            tokio::task::yield_now().await;
        }
    })
    .await;
    // Each side pings right after the handshake, so pings and pongs follow the joining; wait
    // for the hub to have had both from every spoke: ten messages for a bound of two.
    within("the handshake pings and pongs", async {
        loop {
            let details = h.peer_details().await.unwrap();
            let got = |d: &peerpool_net::pool::PeerDetails, kind| {
                d.stats
                    .as_ref()
                    .is_some_and(|s| s.bytes_recv_per_msg.iter().any(|(k, _)| *k == kind))
            };
            if details.len() == 5
                && details
                    .iter()
                    .all(|d| got(d, MessageKind::Ping) && got(d, MessageKind::Pong))
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    match slow.recv().await {
        Err(Lagged(n)) => assert!(n >= 3, "lagged by {n}"),
        other => panic!("expected a lag notice, got {other:?}"),
    }
    assert!(
        matches!(slow.recv().await, Ok(Some(_))),
        "then the newest events"
    );
    assert!(matches!(slow_messages.recv().await, Err(Lagged(_))));
    for s in spokes {
        s.stop().await;
    }
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn messages_reach_the_subscribers_of_their_kind() {
    init_logs();
    let a = start(SocketAddr::from((ip(6, 1), 0)), pool_config(0), "a").await;
    let mut invs = a.handle().subscribe_messages(&[MessageKind::Inv]);
    assert!(a.bus().wants(MessageKind::Inv));
    assert!(!a.bus().wants(MessageKind::Tx), "nobody follows tx");
    // B announces a transaction to every peer it meets.
    let txid = Txid::from_byte_array([7; 32]);
    let mut peer = peerpool_core::peer::PeerConfig::new(peerpool_wire::Network::Regtest.params());
    peer.trickle_interval_outbound = Duration::from_millis(10);
    let listeners =
        Listeners::new().on_handshake(move |p, _| p.queue_inventory(Inventory::Transaction(txid)));
    let b_config = peerpool_net::Config::from_peer_config(peer).with_listeners(listeners);
    let listener = TcpListener::bind(SocketAddr::from((ip(6, 2), 0)))
        .await
        .unwrap();
    let b = Pool::start(
        pool_config(0),
        b_config,
        vec![listener],
        CancellationToken::new(),
    )
    .await;
    b.handle().connect(net_addr(&a)).await.unwrap();
    let m = within("the inv", invs.recv()).await.unwrap().unwrap();
    assert_eq!(m.kind, MessageKind::Inv);
    assert_eq!(m.addr.ip(), ip(6, 2));
    match &*m.message {
        bitcoin::p2p::message::NetworkMessage::Inv(list) => {
            assert_eq!(list, &vec![Inventory::Transaction(txid)])
        }
        other => panic!("{other:?}"),
    }
    drop(invs);
    assert!(
        !a.bus().wants(MessageKind::Inv),
        "unsubscribed: nothing to pay for"
    );
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn inbound_connections_beyond_the_cap_are_closed() {
    init_logs();
    let mut config = pool_config(0);
    config.max_inbound = Some(2);
    let a = start(SocketAddr::from((ip(7, 1), 0)), config, "a").await;
    let mut events = a.bus().subscribe();
    let mut held = Vec::new();
    for i in 0..2u8 {
        let mut raw = RawPeer::connect_from(ip(7, 10 + i), a.listening()[0]).await;
        raw.handshake_as_dialer(MODERN).await;
        next_event(
            &mut events,
            "a raw peer joining",
            joined_from(ip(7, 10 + i)),
        )
        .await;
        held.push(raw);
    }
    let mut third = RawPeer::connect_from(ip(7, 12), a.listening()[0]).await;
    third.expect_close().await;
    drop(held);
    a.stop().await;
}
