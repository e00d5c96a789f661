//! A listener that panics takes down its own connection, never a waiter.

use std::sync::Arc;
use std::time::Duration;

use peerpool_net::{dial, Config, DisconnectReason, Listeners, Peer};
use peerpool_wire::Network;
use tokio::net::TcpListener;

#[tokio::test]
async fn panicking_listener_ends_only_its_connection() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server_cfg = Arc::new(
        Config::new(Network::Regtest.params())
            .with_listeners(Listeners::new().on_verack(|_| panic!("listener bug"))),
    );
    let server = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let p = Peer::new_inbound(server_cfg);
        p.associate_connection(stream);
        p
    });
    let client = dial(
        Arc::new(Config::new(Network::Regtest.params())),
        addr,
        Duration::from_secs(5),
    )
    .await
    .unwrap();
    let server = server.await.unwrap();
    let within = Duration::from_secs(30);
    let reason = tokio::time::timeout(within, server.wait_for_disconnect())
        .await
        .unwrap();
    assert!(
        matches!(reason, DisconnectReason::Io(ref m) if m.contains("panicked")),
        "{reason:?}"
    );
    // The other end sees the socket close.
    let theirs = tokio::time::timeout(within, client.wait_for_disconnect())
        .await
        .unwrap();
    assert_eq!(theirs, DisconnectReason::RemoteClosed);
}
