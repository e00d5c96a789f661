//! Pools on loopback, and waits on what they do.
//!
//! A test's pools listen on addresses of their own ([`ip`](crate::loopback::ip)) with ports
//! from the OS, use no DNS seeds and no feelers, and keep keepalive timers out of the way.
//! Waits watch the pool's event bus ([`next_event`], [`outbound_reached`]) or poll its handle
//! ([`joined`]), always bounded by [`WAIT`](crate::WAIT).

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use peerpool_core::addr::NetAddr;
use peerpool_core::peer::{PeerConfig, UserAgent};
use peerpool_net::bus::{PoolEvent, Subscription};
use peerpool_net::pool::{self, ConnKind, Pool};
use peerpool_wire::Network;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::within;

/// How often [`joined`] asks the pool again.
const POLL_EVERY: Duration = Duration::from_millis(5);

/// Regtest peers named `name` in their user agent (`/peerpool:test(name)/`), with keepalive
/// timers out of the way.
pub fn pool_peer_config(name: &str) -> peerpool_net::Config {
    let mut c = PeerConfig::new(Network::Regtest.params());
    c.user_agent = UserAgent::new("peerpool", "test", &[name]).expect("test user agent");
    c.ping_interval = Duration::from_secs(600);
    c.timeout_interval = Duration::from_secs(600);
    c.handshake_timeout = Duration::from_secs(30);
    peerpool_net::Config::from_peer_config(c)
}

/// A pool for a loopback test network: local addresses allowed, no DNS, no feelers, a small
/// outbound target (0: the pool dials only when told to).
pub fn pool_config(target_outbound: usize) -> pool::Config {
    let mut c = pool::Config::default().allow_local_addresses();
    c.dns_seed = false;
    c.machine.connman.target_outbound = target_outbound;
    c.machine.connman.feeler_interval = None;
    c
}

/// A pool of `config` listening on `addr` (port 0: one from the OS), its peers named `name`.
pub async fn start(addr: SocketAddr, config: pool::Config, name: &str) -> Pool {
    start_with(addr, config, pool_peer_config(name)).await
}

/// A pool of `config` listening on `addr` (port 0: one from the OS) with peers of `peers`.
pub async fn start_with(
    addr: SocketAddr,
    config: pool::Config,
    peers: peerpool_net::Config,
) -> Pool {
    let listener = TcpListener::bind(addr)
        .await
        .unwrap_or_else(|e| panic!("binding a pool listener on {addr}: {e}"));
    Pool::start(config, peers, vec![listener], CancellationToken::new()).await
}

/// A pool on `ip` (port from the OS) named `name` that dials nobody on its own, with an event
/// bus of `bus_capacity` events.
pub async fn start_idle(ip: Ipv4Addr, name: &str, bus_capacity: usize) -> Pool {
    let mut config = pool_config(0);
    config.bus_capacity = bus_capacity;
    start(SocketAddr::from((ip, 0)), config, name).await
}

/// Where `pool` takes peers, as an address-book entry.
pub fn net_addr(pool: &Pool) -> NetAddr {
    NetAddr::from_socket(pool.listening()[0])
}

/// The next event matching `pred`, skipping others; `what` names it in a failure.
pub async fn next_event(
    events: &mut Subscription,
    what: &str,
    mut pred: impl FnMut(&PoolEvent) -> bool,
) -> PoolEvent {
    within(what, async {
        loop {
            match events.recv().await {
                Ok(Some(e)) if pred(&e) => return e,
                Ok(Some(_)) => {}
                Ok(None) => panic!("bus closed while waiting for {what}"),
                Err(lagged) => panic!("test subscriber lagged ({lagged}) waiting for {what}"),
            }
        }
    })
    .await
}

/// Matches a [`PoolEvent::PeerJoined`] from `ip`.
pub fn joined_from(ip: Ipv4Addr) -> impl FnMut(&PoolEvent) -> bool {
    move |e| matches!(e, PoolEvent::PeerJoined(p) if p.addr.ip() == ip)
}

/// How many automatic outbound peers of `pool` completed the handshake.
pub async fn outbound_joined(pool: &Pool) -> usize {
    pool.handle()
        .peer_details()
        .await
        .expect("peer details of a running pool")
        .iter()
        .filter(|d| d.joined && d.kind == ConnKind::Outbound)
        .count()
}

/// Waits until `pool` has at least `n` automatic outbound peers that completed the handshake,
/// looking again at every event on `events`.
pub async fn outbound_reached(pool: &Pool, events: &mut Subscription, n: usize) {
    within("the outbound target", async {
        while outbound_joined(pool).await < n {
            match events.recv().await {
                Ok(Some(_)) | Err(_) => {}
                Ok(None) => panic!("bus closed"),
            }
        }
    })
    .await
}

/// Waits until `pool` has exactly `n` peers that completed the handshake.
pub async fn joined(pool: &Pool, n: usize) {
    let h = pool.handle();
    within("peers joining", async {
        while h.peer_count().await.expect("peer count of a running pool") != n {
            tokio::time::sleep(POLL_EVERY).await;
        }
    })
    .await
}
