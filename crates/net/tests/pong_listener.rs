//! Typed listeners fire for the messages the peer machine handles itself.

use std::sync::Arc;
use std::time::Duration;

use peerpool_net::{dial, Config, Listeners, Peer};
use peerpool_wire::Network;
use tokio::net::TcpListener;
use tokio::sync::mpsc;

#[tokio::test]
async fn on_pong_and_on_ping_see_the_keepalive_nonces() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (pings_tx, mut pings) = mpsc::unbounded_channel();
    let server_cfg = Arc::new(Config::new(Network::Regtest.params()).with_listeners(
        Listeners::new().on_ping(move |_, nonce| {
            let _ = pings_tx.send(*nonce);
        }),
    ));
    tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let p = Peer::new_inbound(server_cfg);
        p.associate_connection(stream);
        p.wait_for_disconnect().await;
    });
    let (pongs_tx, mut pongs) = mpsc::unbounded_channel();
    let client_cfg = Arc::new(Config::new(Network::Regtest.params()).with_listeners(
        Listeners::new().on_pong(move |_, nonce| {
            let _ = pongs_tx.send(*nonce);
        }),
    ));
    let client = dial(client_cfg, addr, Duration::from_secs(5))
        .await
        .unwrap();
    let within = Duration::from_secs(30);
    let ping = tokio::time::timeout(within, pings.recv())
        .await
        .unwrap()
        .unwrap();
    let pong = tokio::time::timeout(within, pongs.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ping, pong, "the pong answers the client's own ping");
    assert_eq!(client.stats().unwrap().ping.last_nonce, Some(pong));
    client.disconnect();
}
