//! `accept_loop` over loopback: many concurrent inbound peers, the inbound limit, shutdown.

use std::collections::HashSet;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use peerpool_net::{accept_loop, dial, dial_from, AcceptLimits, DisconnectReason, Listeners, Peer};
use peerpool_testkit::peer::{config, emit, peer_config};
use peerpool_testkit::raw::{version, RawPeer, MODERN};
use peerpool_testkit::{init_logs, within, WAIT};
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// A running accept loop: its address, the peers it started, the remote address of every
/// completed handshake, and what stops it.
struct Server {
    addr: SocketAddr,
    peers: mpsc::UnboundedReceiver<Peer>,
    handshakes: mpsc::UnboundedReceiver<SocketAddr>,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

async fn start(max_inbound: usize) -> Server {
    let (hs_tx, handshakes) = mpsc::unbounded_channel();
    let cfg = config(
        peer_config(),
        Listeners::new().on_handshake(move |p, _| {
            emit(&hs_tx, p.addr().expect("inbound peer knows its address"));
        }),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, peers) = mpsc::unbounded_channel();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(accept_loop(
        listener,
        cfg,
        AcceptLimits { max_inbound },
        shutdown.clone(),
        move |p| emit(&tx, p),
    ));
    Server {
        addr,
        peers,
        handshakes,
        shutdown,
        task,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_concurrent_inbound_peers_from_distinct_addresses() {
    init_logs();
    const N: usize = 200;
    let mut server = start(1_000).await;
    let (tx, mut client_ready) = mpsc::unbounded_channel();
    let client_cfg = config(
        peer_config(),
        Listeners::new().on_handshake(move |p, _| emit(&tx, p.id())),
    );
    // All dials at once, each from its own source address 127.0.0.2 ... 127.0.0.201.
    let dials: Vec<_> = (0..N)
        .map(|i| {
            let cfg = Arc::clone(&client_cfg);
            let local = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2 + i as u8)), 0);
            let addr = server.addr;
            tokio::spawn(async move { dial_from(cfg, addr, Some(local), WAIT).await })
        })
        .collect();
    let mut clients = Vec::new();
    for d in dials {
        clients.push(within("dial", d).await.unwrap().expect("dial"));
    }
    let mut sources = HashSet::new();
    for _ in 0..N {
        let remote = within("server handshake", server.handshakes.recv())
            .await
            .unwrap();
        sources.insert(remote.ip());
    }
    assert_eq!(sources.len(), N, "every source address seen once");
    for _ in 0..N {
        within("client handshake", client_ready.recv())
            .await
            .unwrap();
    }
    let mut server_peers = Vec::new();
    for _ in 0..N {
        server_peers.push(within("on_peer", server.peers.recv()).await.unwrap());
    }
    assert!(server_peers.iter().all(|p| p.inbound() && p.is_ready()));
    for c in &clients {
        c.disconnect();
    }
    for p in server_peers {
        assert_eq!(
            within("server side end", p.wait_for_disconnect()).await,
            DisconnectReason::RemoteClosed
        );
    }
    server.shutdown.cancel();
    within("accept loop exit", server.task).await.unwrap();
}

/// Connects a raw socket; whether the server keeps it is told by whether a version comes back.
async fn try_handshake(addr: SocketAddr) -> Option<RawPeer> {
    let mut raw = RawPeer::connect(addr).await;
    raw.send(&bitcoin::p2p::message::NetworkMessage::Version(version(
        MODERN,
        fastrand::u64(1..),
    )))
    .await;
    raw.recv().await.map(|_| raw)
}

#[tokio::test]
async fn inbound_limit_refuses_promptly_and_frees_a_slot_when_a_peer_leaves() {
    init_logs();
    let mut server = start(3).await;
    let client_cfg = config(peer_config(), Listeners::new());
    let mut clients = Vec::new();
    for _ in 0..3 {
        let c = within("dial", dial(Arc::clone(&client_cfg), server.addr, WAIT))
            .await
            .unwrap();
        within("handshake", server.handshakes.recv()).await.unwrap();
        clients.push(c);
    }
    let mut accepted: Vec<Peer> = Vec::new();
    for _ in 0..3 {
        accepted.push(within("on_peer", server.peers.recv()).await.unwrap());
    }

    // The fourth is accepted by the kernel, then closed at once: the client reads EOF
    // (nothing was sent, so a plain close, not a reset) instead of hanging.
    let mut extra = within("connect", TcpStream::connect(server.addr))
        .await
        .unwrap();
    let mut byte = [0u8; 1];
    let n = within("refusal", extra.read(&mut byte)).await;
    assert!(
        matches!(n, Ok(0)) || matches!(&n, Err(e) if e.kind() == io::ErrorKind::ConnectionReset),
        "{n:?}"
    );
    // Refused connections never become peers.
    assert!(server.peers.try_recv().is_err());

    // One leaves; its slot opens. The loop learns of the departure on its own task, so the
    // first attempts may still be refused: retry, bounded by the overall wait.
    clients[0].disconnect();
    assert_eq!(
        within("server side end", accepted[0].wait_for_disconnect()).await,
        DisconnectReason::RemoteClosed
    );
    let raw = within("a free slot", async {
        let mut refused = 0;
        loop {
            if let Some(raw) = try_handshake(server.addr).await {
                return (raw, refused);
            }
            refused += 1;
            tokio::task::yield_now().await;
        }
    })
    .await;
    let (_raw, refused) = raw;
    assert!(refused < 1_000, "{refused} refusals before the slot freed");
    let newcomer = within("on_peer", server.peers.recv()).await.unwrap();
    assert!(newcomer.connected());
    // And the limit holds again.
    assert!(try_handshake(server.addr).await.is_none());
}

#[tokio::test]
async fn shutdown_stops_accepting() {
    init_logs();
    let mut server = start(10).await;
    let c = within(
        "dial",
        dial(config(peer_config(), Listeners::new()), server.addr, WAIT),
    )
    .await
    .unwrap();
    within("handshake", server.handshakes.recv()).await.unwrap();
    server.shutdown.cancel();
    within("accept loop exit", server.task).await.unwrap();
    // The listener went with the loop: nothing is listening on the port any more.
    let e = within("connect", TcpStream::connect(server.addr))
        .await
        .expect_err("connected after shutdown");
    assert_eq!(e.kind(), io::ErrorKind::ConnectionRefused);
    c.disconnect();
}
