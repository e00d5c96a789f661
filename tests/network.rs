//! Networks of 50 nodes on loopback, each on its own 127.0.x.y address and each given the
//! address of only one other node: they must find the rest through address relay (every node
//! advertises its listening address, as Bitcoin Core's AdvertiseLocal does) and reach their
//! outbound target. The nodes trust each other's gossip (Bitcoin Core's `addr` whitelist
//! permission on 127.0.0.0/8): the per-peer address rate limit, which lets a new connection
//! send one address and then one every ten seconds, is for strangers, and would stretch the
//! forming of a network that grows in seconds to many minutes. Then one node restarts from its data directory and finds its way back from
//! the address book alone. Once with 50 pools in this process, once with 50 `peerpool run`
//! daemons.

mod daemon;

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use peerpool::core::addr::NetAddr;
use peerpool::core::peer::{PeerConfig, UserAgent};
use peerpool::net::bus::Subscription;
use peerpool::net::pool::{self, ConnKind, Pool};
use peerpool::wire::Network;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Nodes in the network.
const NODES: usize = 50;
/// Automatic outbound connections each node must reach.
const TARGET: usize = 4;
/// Bound on the whole discovery.
const DISCOVERY: Duration = Duration::from_secs(60);

fn ip(net: u8, i: usize) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, net + (i / 200) as u8, 1 + (i % 200) as u8)
}

fn peer_config(i: usize) -> peerpool::net::Config {
    let mut c = PeerConfig::new(Network::Regtest.params());
    c.user_agent = UserAgent::new("peerpool", "test", &[&format!("node{i}")]).unwrap();
    c.ping_interval = Duration::from_secs(600);
    c.timeout_interval = Duration::from_secs(600);
    peerpool::net::Config::from_peer_config(c)
}

fn pool_config(seed: Option<NetAddr>, dir: PathBuf) -> pool::Config {
    let mut c = pool::Config::default().allow_local_addresses();
    c.dns_seed = false;
    c.machine.connman.target_outbound = TARGET;
    c.machine.connman.feeler_interval = None;
    c.seeds = seed.into_iter().collect();
    c.machine.whitelist.push(pool::WhitelistEntry {
        subnet: "127.0.0.0/8".parse().unwrap(),
        permissions: vec![pool::Permission::Addr],
    });
    c.data_dir = Some(dir);
    c
}

async fn start(i: usize, port: u16, seed: Option<NetAddr>, dir: PathBuf) -> Pool {
    let listener = TcpListener::bind(SocketAddr::from((ip(100, i), port)))
        .await
        .expect("bind");
    Pool::start(
        pool_config(seed, dir),
        peer_config(i),
        vec![listener],
        CancellationToken::new(),
    )
    .await
}

/// Automatic outbound peers that completed the handshake.
async fn outbound(pool: &Pool) -> usize {
    pool.handle()
        .peer_details()
        .await
        .unwrap()
        .iter()
        .filter(|d| d.joined && d.kind == ConnKind::Outbound)
        .count()
}

/// Waits, on bus events, until `pool` has `TARGET` outbound peers.
async fn reach_target(pool: &Pool, events: &mut Subscription, deadline: Instant) {
    while outbound(pool).await < TARGET {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, events.recv()).await {
            Ok(Ok(Some(_))) | Ok(Err(_)) => {}
            Ok(Ok(None)) => panic!("bus closed"),
            Err(_) => return,
        }
    }
}

fn tempdir(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("network-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[tokio::test(flavor = "multi_thread")]
async fn fifty_nodes_find_each_other_from_one_seed_each() {
    let base = tempdir("fifty");
    let started = Instant::now();
    let mut pools: Vec<Pool> = Vec::with_capacity(NODES);
    let mut events: Vec<Subscription> = Vec::with_capacity(NODES);
    for i in 0..NODES {
        // A chain: node i knows only node i-1 (node 0 knows nobody and waits to be found).
        let seed = i
            .checked_sub(1)
            .map(|j| NetAddr::from_socket(pools[j].listening()[0]));
        let dir = base.join(format!("node{i}"));
        std::fs::create_dir_all(&dir).unwrap();
        let p = start(i, 0, seed, dir).await;
        events.push(p.bus().subscribe());
        pools.push(p);
    }
    let deadline = started + DISCOVERY;
    let mut short = Vec::new();
    for (i, p) in pools.iter().enumerate() {
        reach_target(p, &mut events[i], deadline).await;
        let n = outbound(p).await;
        if n < TARGET {
            short.push((i, n));
        }
    }
    let took = started.elapsed();
    let mut books = Vec::new();
    for p in &pools {
        books.push(p.handle().addrman_info().await.unwrap().total.total());
    }
    eprintln!(
        "{NODES} nodes reached {TARGET} outbound peers each in {took:?}; address book sizes: min {} max {}",
        books.iter().min().unwrap(),
        books.iter().max().unwrap()
    );
    assert!(
        short.is_empty(),
        "nodes short of their target after {took:?}: {short:?}"
    );

    // Node 7 restarts from its data directory with no seed: the book it saved is enough.
    let i = 7;
    let victim = pools.remove(i);
    let addr = victim.listening()[0];
    let before = victim.handle().addrman_info().await.unwrap().total.total();
    victim.stop().await;
    let again = start(i, addr.port(), None, base.join(format!("node{i}"))).await;
    let after = again.handle().addrman_info().await.unwrap().total.total();
    assert!(after >= before, "a book of {before} came back as {after}");
    let mut ev = again.bus().subscribe();
    reach_target(&again, &mut ev, Instant::now() + Duration::from_secs(30)).await;
    assert_eq!(
        outbound(&again).await,
        TARGET,
        "the restarted node did not reconnect"
    );
    again.stop().await;
    for p in pools {
        p.stop().await;
    }
}

#[test]
fn fifty_daemons_find_each_other_from_one_seed_each() {
    use daemon::Daemon;

    let base = tempdir("daemons");
    let started = Instant::now();
    let args = |i: usize, listen: String, seed: Option<SocketAddr>| -> Vec<String> {
        let mut v: Vec<String> = [
            "run",
            "--network",
            "regtest",
            "--no-dnsseed",
            "--target-outbound",
            &TARGET.to_string(),
            "--listen",
            &listen,
            "--user-agent-comment",
            &format!("d{i}"),
            "--whitelist",
            "addr@127.0.0.0/8",
            "--datadir",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        v.push(base.join(format!("d{i}")).to_string_lossy().into_owned());
        if let Some(seed) = seed {
            v.extend(["--seednode".into(), seed.to_string()]);
        }
        v
    };
    let start = |v: Vec<String>| Daemon::start(&v.iter().map(String::as_str).collect::<Vec<_>>());
    let mut daemons: Vec<Daemon> = Vec::with_capacity(NODES);
    let mut addrs: Vec<SocketAddr> = Vec::with_capacity(NODES);
    for i in 0..NODES {
        // The same chain as above: each daemon is told only of the one before it.
        let seed = i.checked_sub(1).map(|j| addrs[j]);
        let mut d = start(args(i, format!("{}:0", ip(110, i)), seed));
        addrs.push(d.listening(Duration::from_secs(20)));
        daemons.push(d);
    }
    let deadline = started + DISCOVERY;
    let outbound = ["peer joined", "outbound-full-relay"];
    let mut short = Vec::new();
    for (i, d) in daemons.iter_mut().enumerate() {
        while d.count(&outbound) < TARGET && d.expect_until(&outbound, deadline).is_some() {}
        let n = d.count(&outbound);
        if n < TARGET {
            short.push((i, n));
        }
    }
    eprintln!(
        "{NODES} daemons reached {TARGET} outbound peers each in {:?}",
        started.elapsed()
    );
    assert!(short.is_empty(), "daemons short of their target: {short:?}");

    // Daemon 11 restarts without its seed, from its data directory.
    let i = 11;
    assert!(daemons[i].terminate().success());
    let mut again = start(args(i, addrs[i].to_string(), None));
    let within = Duration::from_secs(30);
    let loaded = again.expect(&["loaded", "addresses from"], within);
    assert!(!loaded.contains("loaded 0 "), "{loaded}");
    for _ in 0..TARGET {
        again.expect(&outbound, within);
    }
    assert!(again.terminate().success());
    for (j, mut d) in daemons.into_iter().enumerate() {
        if j != i {
            assert!(d.terminate().success(), "daemon {j} did not stop cleanly");
        }
    }
}
