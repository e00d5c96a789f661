//! Shared pieces of the admin listener and event stream tests: pools on loopback with their
//! admin listener on a port from the OS, and waits that fail the test instead of hanging.
#![allow(dead_code)]

use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, SystemTime};

use peerpool_core::addr::NetAddr;
use peerpool_core::peer::{PeerConfig, UserAgent};
use peerpool_net::pool::{self, Pool};
use peerpool_rpc::admin::client::Client;
use peerpool_rpc::admin::{AdminServer, Config};
use peerpool_rpc::Daemon;
use peerpool_wire::Network;
use serde_json::Value;
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

/// 127.0.`net`.`host`: one `net` per test, so that tests never share netgroups or bans.
pub fn ip(net: u8, host: u8) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, net, host)
}

/// A regtest pool on `ip` (port from the OS) named `name` in its user agent, with no DNS, no
/// automatic dials and keepalive timers out of the way.
pub async fn pool(ip: Ipv4Addr, name: &str, bus_capacity: usize) -> Pool {
    let mut c = PeerConfig::new(Network::Regtest.params());
    c.user_agent = UserAgent::new("peerpool", "test", &[name]).unwrap();
    c.ping_interval = Duration::from_secs(600);
    c.timeout_interval = Duration::from_secs(600);
    let mut config = pool::Config::default().allow_local_addresses();
    config.dns_seed = false;
    config.machine.connman.target_outbound = 0;
    config.machine.connman.feeler_interval = None;
    config.bus_capacity = bus_capacity;
    let listener = TcpListener::bind(SocketAddr::from((ip, 0))).await.unwrap();
    Pool::start(
        config,
        peerpool_net::Config::from_peer_config(c),
        vec![listener],
        CancellationToken::new(),
    )
    .await
}

/// What the admin listener serves for `pool`.
pub fn daemon(pool: &Pool) -> Daemon {
    Daemon {
        pool: pool.handle(),
        chain: Network::Regtest.params(),
        data_dir: None,
        started: SystemTime::now(),
        user_agent: "/peerpool:test/".into(),
        listening: pool.listening().to_vec(),
        shutdown: CancellationToken::new(),
    }
}

/// An admin listener for `pool` on 127.0.0.1, port from the OS.
pub async fn admin(pool: &Pool, config: Config) -> (AdminServer, SocketAddr) {
    let server = AdminServer::bind(&["127.0.0.1:0".parse().unwrap()], daemon(pool), config)
        .await
        .unwrap();
    let addr = server.local_addrs()[0];
    (server, addr)
}

/// Where `pool` takes peers.
pub fn net_addr(pool: &Pool) -> NetAddr {
    NetAddr::from_socket(pool.listening()[0])
}

/// Waits until `pool` has `n` peers that completed the handshake.
pub async fn joined(pool: &Pool, n: usize) {
    let h = pool.handle();
    within("peers joining", async {
        while h.peer_count().await.unwrap() != n {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
}

/// Calls `method` and expects a result.
pub async fn call(client: &mut Client, method: &str, params: Value) -> Value {
    within(method, client.call(method, params))
        .await
        .unwrap_or_else(|e| panic!("{method}: {e}"))
        .unwrap_or_else(|e| panic!("{method}: error answer {e}"))
}
