//! Networks of 50 nodes on loopback, each on its own 127.0.x.y address and each given the
//! address of only one other node: they must find the rest through address relay (every node
//! advertises its listening address, as Bitcoin Core's AdvertiseLocal does) and reach their
//! outbound target. The nodes trust each other's gossip (Bitcoin Core's `addr` whitelist
//! permission on 127.0.0.0/8): the per-peer address rate limit, which lets a new connection
//! send one address and then one every ten seconds, is for strangers, and would stretch the
//! forming of a network that grows in seconds to many minutes. Then one node restarts from its data directory and finds its way back from
//! the address book alone. Once with 50 pools in this process, once with 50 `peerpool run`
//! daemons.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use peerpool::core::addr::NetAddr;
use peerpool::net::bus::Subscription;
use peerpool::net::pool::{self, Pool};
use peerpool_testkit::daemon::{Binary, Daemon, RunArgs};
use peerpool_testkit::pool::{outbound_joined, pool_config, start};
use peerpool_testkit::tempdir;

const PEERPOOL: Binary = Binary::new(env!("CARGO_BIN_EXE_peerpool"));

/// Nodes in the network.
const NODES: usize = 50;
/// Automatic outbound connections each node must reach.
const TARGET: usize = 4;
/// Bound on the whole discovery.
const DISCOVERY: Duration = Duration::from_secs(60);

fn ip(net: u8, i: usize) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, net + (i / 200) as u8, 1 + (i % 200) as u8)
}

fn node_config(seed: Option<NetAddr>, dir: PathBuf) -> pool::Config {
    let mut c = pool_config(TARGET);
    c.seeds = seed.into_iter().collect();
    c.machine.whitelist.push(pool::WhitelistEntry {
        subnet: "127.0.0.0/8".parse().unwrap(),
        permissions: vec![pool::Permission::Addr],
    });
    c.data_dir = Some(dir);
    c
}

/// Node `i`, on its own address (port 0: one from the OS).
async fn start_node(i: usize, port: u16, seed: Option<NetAddr>, dir: PathBuf) -> Pool {
    let addr = SocketAddr::from((ip(100, i), port));
    start(addr, node_config(seed, dir), &format!("node{i}")).await
}

/// Waits, on bus events, until `pool` has `TARGET` outbound peers or `deadline` passes.
async fn reach_target(pool: &Pool, events: &mut Subscription, deadline: Instant) {
    while outbound_joined(pool).await < TARGET {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, events.recv()).await {
            Ok(Ok(Some(_))) | Ok(Err(_)) => {}
            Ok(Ok(None)) => panic!("bus closed"),
            Err(_) => return,
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn fifty_nodes_find_each_other_from_one_seed_each() {
    let base = tempdir!("network-fifty");
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
        let p = start_node(i, 0, seed, dir).await;
        events.push(p.bus().subscribe());
        pools.push(p);
    }
    let deadline = started + DISCOVERY;
    let mut short = Vec::new();
    for (i, p) in pools.iter().enumerate() {
        reach_target(p, &mut events[i], deadline).await;
        let n = outbound_joined(p).await;
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
    let again = start_node(i, addr.port(), None, base.join(format!("node{i}"))).await;
    let after = again.handle().addrman_info().await.unwrap().total.total();
    assert!(after >= before, "a book of {before} came back as {after}");
    let mut ev = again.bus().subscribe();
    reach_target(&again, &mut ev, Instant::now() + Duration::from_secs(30)).await;
    assert_eq!(
        outbound_joined(&again).await,
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
    let base = tempdir!("network-daemons");
    let started = Instant::now();
    let args = |i: usize, listen: String, seed: Option<SocketAddr>| -> RunArgs {
        let args = RunArgs::regtest(&base.join(format!("d{i}")))
            .no_dnsseed()
            .args(["--target-outbound".to_owned(), TARGET.to_string()])
            .listen(listen)
            .args(["--user-agent-comment".to_owned(), format!("d{i}")])
            .args(["--whitelist", "addr@127.0.0.0/8"]);
        match seed {
            Some(seed) => args.args(["--seednode".to_owned(), seed.to_string()]),
            None => args,
        }
    };
    let start = |args: RunArgs| PEERPOOL.start(args);
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
