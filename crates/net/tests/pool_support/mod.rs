//! Shared pieces of the pool tests: pools on distinct loopback addresses with short timers,
//! and waits on bus events that fail the test instead of hanging.
#![allow(dead_code)]

use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use peerpool_core::addr::NetAddr;
use peerpool_core::peer::{PeerConfig, UserAgent};
use peerpool_net::bus::{PoolEvent, Subscription};
use peerpool_net::pool::{self, Pool};
use peerpool_wire::Network;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Longest any single wait may take before the test fails.
pub const WAIT: Duration = Duration::from_secs(20);

/// Awaits `f`, failing the test if it takes longer than [`WAIT`].
pub async fn within<F: Future>(what: &str, f: F) -> F::Output {
    match tokio::time::timeout(WAIT, f).await {
        Ok(v) => v,
        Err(_) => panic!("timed out after {WAIT:?} waiting for {what}"),
    }
}

/// Installs a log subscriber when `RUST_LOG` is set, for debugging a failing test.
pub fn init_logs() {
    if std::env::var_os("RUST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
    }
}

/// 127.0.`net`.`host`.
pub fn ip(net: u8, host: u8) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, net, host)
}

/// Regtest peers named `name` in their user agent, with keepalive timers out of the way.
pub fn peer_config(name: &str) -> peerpool_net::Config {
    let mut c = PeerConfig::new(Network::Regtest.params());
    c.user_agent = UserAgent::new("peerpool", "test", &[name]).unwrap();
    c.ping_interval = Duration::from_secs(600);
    c.timeout_interval = Duration::from_secs(600);
    c.handshake_timeout = Duration::from_secs(30);
    peerpool_net::Config::from_peer_config(c)
}

/// A pool for a loopback test network: local addresses allowed, no DNS, no feelers, a small
/// outbound target.
pub fn pool_config(target_outbound: usize) -> pool::Config {
    let mut c = pool::Config::default().allow_local_addresses();
    c.dns_seed = false;
    c.machine.connman.target_outbound = target_outbound;
    c.machine.connman.feeler_interval = None;
    c
}

/// A pool listening on `addr` (port 0: one from the OS).
pub async fn start(addr: SocketAddr, config: pool::Config, name: &str) -> Pool {
    let listener = TcpListener::bind(addr).await.expect("bind pool listener");
    Pool::start(
        config,
        peer_config(name),
        vec![listener],
        CancellationToken::new(),
    )
    .await
}

/// Where `pool` listens, as an address-book entry.
pub fn net_addr(pool: &Pool) -> NetAddr {
    NetAddr::from_socket(pool.listening()[0])
}

/// The next event matching `pred`, skipping others.
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

/// A PeerJoined from `addr`'s host.
pub fn joined_from(ip: Ipv4Addr) -> impl FnMut(&PoolEvent) -> bool {
    move |e| matches!(e, PoolEvent::PeerJoined(p) if p.addr.ip() == ip)
}

/// A fresh directory under the target directory.
pub fn tempdir(name: &str) -> PathBuf {
    let base = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let dir = base.join(format!("pool-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Waits until `pool` has at least `n` automatic outbound peers that completed the handshake.
pub async fn outbound_reached(pool: &Pool, events: &mut Subscription, n: usize) {
    let handle = pool.handle();
    within("the outbound target", async {
        loop {
            let details = handle.peer_details().await.unwrap();
            let have = details
                .iter()
                .filter(|d| d.joined && d.kind == pool::ConnKind::Outbound)
                .count();
            if have >= n {
                return;
            }
            match events.recv().await {
                Ok(Some(_)) | Err(_) => {}
                Ok(None) => panic!("bus closed"),
            }
        }
    })
    .await
}
