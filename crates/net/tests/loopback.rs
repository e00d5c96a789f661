//! Two peers over real loopback TCP.

use std::sync::Arc;
use std::time::Duration;

use peerpool_net::{dial, Config, DisconnectReason, Listeners, Peer};
use peerpool_wire::Network;
use tokio::net::TcpListener;
use tokio::sync::mpsc;

fn config(listeners: Listeners) -> Arc<Config> {
    Arc::new(Config::new(Network::Regtest.params()).with_listeners(listeners))
}

#[tokio::test]
async fn handshake_ping_and_clean_disconnect() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let tx2 = tx.clone();
    let server_cfg = config(
        Listeners::new()
            .on_handshake(move |p, v| {
                let _ = tx.send(("server-handshake", p.id().0, v.user_agent.clone()));
            })
            .on_ping_rtt(move |p, rtt| {
                let _ = tx2.send(("server-rtt", p.id().0, rtt.to_string()));
            }),
    );
    let accept = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let p = Peer::new_inbound(server_cfg);
        p.associate_connection(stream);
        p
    });
    let client = dial(config(Listeners::new()), addr, Duration::from_secs(5))
        .await
        .unwrap();
    let server = accept.await.unwrap();

    let timeout = Duration::from_secs(10);
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
