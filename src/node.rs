//! One node of the demo: listeners, kept-up outbound connections to fixed peers, and the set
//! of live peers, without a pool's policy (the demo draws its own topology). The daemon runs
//! a [`peerpool::net::Pool`] instead.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use peerpool::core::peer::PeerConfig;
use peerpool::core::retry::backoff;
use peerpool::net::{
    accept_loop, dial_from, AcceptLimits, Config, Listeners, Peer, PeerId, StatsSnapshot,
};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{warn, Instrument};

/// Time allowed for a TCP connect. Bitcoin Core: `DEFAULT_CONNECT_TIMEOUT` (5 s).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Live peers of a node, by id.
pub type Registry = Arc<Mutex<BTreeMap<PeerId, Peer>>>;

/// A node of the demo.
pub struct Node {
    pub name: String,
    pub config: Arc<Config>,
    pub peers: Registry,
    pub shutdown: CancellationToken,
    tasks: TaskTracker,
    pub listening: Vec<SocketAddr>,
    pub max_inbound: usize,
    /// Local address outbound connections leave from (port 0: any); `None` lets the OS pick.
    pub dial_from: Option<SocketAddr>,
}

impl Node {
    /// A node with the given protocol settings; `listeners` are kept and joined by the node's
    /// own bookkeeping (registry, debug logs: the demo draws a table instead).
    pub fn new(name: &str, peer: PeerConfig, listeners: Listeners) -> Node {
        let peers: Registry = Arc::default();
        let left = Arc::clone(&peers);
        let listeners = listeners
            .on_handshake(move |p, v| {
                tracing::debug!(peer = %p.id(), user_agent = %v.user_agent, "peer joined")
            })
            .on_disconnect(move |p, reason| {
                left.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&p.id());
                tracing::debug!(peer = %p.id(), %reason, "peer left");
            })
            .on_ping_rtt(move |p, rtt| tracing::debug!(peer = %p.id(), rtt, "ping"));
        let config = Arc::new(Config::from_peer_config(peer).with_listeners(listeners));
        Node {
            name: name.to_owned(),
            config,
            peers,
            shutdown: CancellationToken::new(),
            tasks: TaskTracker::new(),
            listening: Vec::new(),
            max_inbound: AcceptLimits::default().max_inbound,
            dial_from: None,
        }
    }

    /// Binds `addr` and accepts inbound peers on it; returns the bound address.
    pub async fn listen(&mut self, addr: SocketAddr) -> anyhow::Result<SocketAddr> {
        let listener = TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding P2P listener on {addr}"))?;
        let bound = listener.local_addr().context("reading bound address")?;
        let registry = Arc::clone(&self.peers);
        let limits = AcceptLimits {
            max_inbound: self.max_inbound,
        };
        let span = tracing::info_span!("listener", node = %self.name, %bound);
        self.tasks.spawn(
            accept_loop(
                listener,
                Arc::clone(&self.config),
                limits,
                self.shutdown.clone(),
                move |p| {
                    registry
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert(p.id(), p);
                },
            )
            .instrument(span),
        );
        self.listening.push(bound);
        Ok(bound)
    }

    /// Keeps a connection to `addr` up: dials, and after a failure or a disconnect dials again
    /// after a backoff that grows with consecutive failures (reset by a completed handshake).
    pub fn connect(&self, addr: SocketAddr) {
        let config = Arc::clone(&self.config);
        let registry = Arc::clone(&self.peers);
        let shutdown = self.shutdown.clone();
        let local = self.dial_from;
        let span = tracing::info_span!("connect", node = %self.name, %addr);
        self.tasks.spawn(
            async move {
                let mut failures: u32 = 0;
                loop {
                    match dial_from(Arc::clone(&config), addr, local, CONNECT_TIMEOUT).await {
                        Ok(peer) => {
                            registry
                                .lock()
                                .unwrap_or_else(|e| e.into_inner())
                                .insert(peer.id(), peer.clone());
                            let reason = tokio::select! {
                                r = peer.wait_for_disconnect() => r,
                                () = shutdown.cancelled() => return,
                            };
                            let handshaken = peer
                                .stats()
                                .is_some_and(|s| s.version != 0 && s.msgs_recv > 1);
                            failures = if handshaken { 1 } else { failures + 1 };
                            tracing::debug!(%reason, "connection ended");
                        }
                        Err(e) => {
                            failures += 1;
                            warn!("connecting: {e}");
                        }
                    }
                    let wait = backoff(failures);
                    tracing::debug!(?wait, "redialing after backoff");
                    tokio::select! {
                        () = tokio::time::sleep(wait) => {}
                        () = shutdown.cancelled() => return,
                    }
                }
            }
            .instrument(span),
        );
    }

    /// Statistics of every live peer, ordered by id.
    pub fn snapshot(&self) -> Vec<StatsSnapshot> {
        let peers: Vec<Peer> = self
            .peers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect();
        peers.iter().filter_map(Peer::stats).collect()
    }

    /// Stops accepting and dialing, disconnects every peer and waits for their tasks.
    pub async fn stop(&self) {
        self.shutdown.cancel();
        self.tasks.close();
        let peers: Vec<Peer> = self
            .peers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect();
        for p in &peers {
            p.disconnect_with(peerpool::net::DisconnectReason::Shutdown);
        }
        for p in &peers {
            let _ = tokio::time::timeout(Duration::from_secs(5), p.wait_for_disconnect()).await;
        }
        self.tasks.wait().await;
    }
}
