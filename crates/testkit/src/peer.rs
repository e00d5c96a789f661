//! Single peerpool [`Peer`]s with no pool around them: protocol settings with short timers,
//! and a tiny server that hands each accepted connection to an inbound peer.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use peerpool_core::peer::PeerConfig;
use peerpool_net::{Config, Listeners, Peer};
use peerpool_wire::Network;
use tokio::net::TcpListener;
use tokio::sync::mpsc;

/// Regtest protocol settings with keepalive and handshake timers that never fire during a
/// test unless the test shortens them itself, and trickles fast enough to wait for.
pub fn peer_config() -> PeerConfig {
    let mut c = PeerConfig::new(Network::Regtest.params());
    c.handshake_timeout = Duration::from_secs(30);
    c.ping_interval = Duration::from_secs(600);
    c.timeout_interval = Duration::from_secs(600);
    c.trickle_interval_inbound = Duration::from_millis(20);
    c.trickle_interval_outbound = Duration::from_millis(20);
    c
}

/// A peer configuration of `peer` settings and `listeners`.
pub fn config(peer: PeerConfig, listeners: Listeners) -> Arc<Config> {
    Arc::new(Config::from_peer_config(peer).with_listeners(listeners))
}

/// A listener on `bind` whose connections each become an inbound [`Peer`] of `config`; the
/// peers come out of the returned channel in accept order. It runs until the receiver is
/// dropped and the next connection comes, or until the test's runtime ends.
pub async fn serve(bind: &str, config: Arc<Config>) -> (SocketAddr, mpsc::UnboundedReceiver<Peer>) {
    let listener = TcpListener::bind(bind).await.expect("bind test listener");
    let addr = listener.local_addr().expect("listener address");
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let peer = Peer::new_inbound(Arc::clone(&config));
            peer.associate_connection(stream);
            if tx.send(peer).is_err() {
                return;
            }
        }
    });
    (addr, rx)
}

/// Sends from inside a listener callback; a test that stopped listening is no error.
pub fn emit<T>(tx: &mpsc::UnboundedSender<T>, value: T) {
    let _ = tx.send(value);
}
