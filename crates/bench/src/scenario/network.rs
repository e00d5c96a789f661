//! Network formation: how long a loopback network of pools takes until every node holds its
//! automatic outbound target.
//!
//! [`BenchOptions::network_nodes`] `peerpool_net::pool::Pool`s run in the load generator's
//! process, on one runtime of their own, each listening on an address of its own in
//! 127.2.0.0/16 (discovery run) or 127.3.0.0/16 (baseline run), with local addresses allowed
//! and a target of [`BenchOptions::network_target`] outbound full-relay peers. Listeners are
//! bound first; then every pool starts, and the clock starts with the first one.
//!
//! - Discovery: each node is given one seed, the node before it in a ring; it learns the rest
//!   by address relay (each node advertises its listening address, and answers `getaddr`).
//! - Baseline: each node is given every other node's address up front, so no discovery is
//!   needed; what remains is dialing and handshakes (and any pacing of automatic dials).
//!
//! A node reaches its target when it holds that many handshaken automatic outbound peers
//! (counted from `peer_details`, re-checked on every bus event of the node). The figures are
//! the time until the last node got there and the median and 90th percentile over nodes.
//! Feelers are off, as in the network test, so that only target-seeking dials run. The nodes
//! trust each other's gossip (the `addr` whitelist permission on 127.0.0.0/8, as in the
//! network test): the per-peer address rate limit is for strangers.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use anyhow::Context;
use peerpool_core::addr::NetAddr;
use peerpool_core::peer::{PeerConfig, UserAgent};
use peerpool_net::pool::{self, ConnKind, Pool};
use peerpool_wire::Network;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::report::{percentile, Row, Section, Target};
use crate::scenario::spawn_load;
use crate::{sys, BenchOptions, Scenario};

/// Longest a run may take to reach the target on every node.
const DEADLINE: Duration = Duration::from_secs(180);

/// File descriptors per node: a listener, its outbound sockets and as many inbound on
/// average, with room for failed dials in flight.
const FDS_PER_NODE: u64 = 40;

/// How the nodes learn about each other.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Addresses {
    /// One seed each.
    OneSeed,
    /// Every other node's address.
    All,
}

struct Formation {
    /// Per node: time from the start until it reached the target; `None` if it never did.
    reached: Vec<Option<Duration>>,
    /// Time to start every pool.
    startup: Duration,
    /// Per node: addresses in its book once every node had reached the target (or the
    /// deadline passed).
    books: Vec<usize>,
}

impl Formation {
    fn sorted_secs(&self) -> Vec<f64> {
        let mut v: Vec<f64> = self
            .reached
            .iter()
            .flatten()
            .map(Duration::as_secs_f64)
            .collect();
        v.sort_by(f64::total_cmp);
        v
    }

    fn done(&self) -> usize {
        self.reached.iter().flatten().count()
    }

    /// Time until the last node reached the target (the deadline if some never did).
    fn all(&self) -> f64 {
        if self.done() < self.reached.len() {
            DEADLINE.as_secs_f64()
        } else {
            self.sorted_secs().last().copied().unwrap_or(0.0)
        }
    }
}

pub(crate) async fn run(opts: &BenchOptions) -> anyhow::Result<Section> {
    let nodes = opts.network_nodes.max(2);
    let target = opts.network_target.max(1).min(nodes - 1);
    sys::raise_nofile(nodes as u64 * FDS_PER_NODE + 1_000)?;
    let mut runs = Vec::new();
    for (net, mode) in [(2u8, Addresses::OneSeed), (3u8, Addresses::All)] {
        let threads = opts.server_threads;
        let rx = spawn_load("network", None, threads, move || {
            formation(net, nodes, target, mode)
        })?;
        let f = rx.await.context("the network thread panicked")??;
        tracing::info!(
            "network {mode:?}: {}/{nodes} nodes at {target} outbound, last after {:.1} s",
            f.done(),
            f.all()
        );
        runs.push(f);
    }
    let (d, b) = (&runs[0], &runs[1]);
    let (ds, bs) = (d.sorted_secs(), b.sorted_secs());
    let mut s = Section::new(
        Scenario::Network,
        format!(
            "{nodes} in-process pools on 127.x loopback addresses, target {target} outbound; \
             peerpool column: one seed each (discovery by address relay); reference column: \
             every address given up front"
        ),
    );
    s.rows.push(
        Row::new(
            format!("nodes at {target} outbound peers within {DEADLINE:?}"),
            "nodes",
            d.done() as f64,
        )
        .vs(b.done() as f64)
        .target(Target::AtLeast(nodes as f64)),
    );
    s.rows
        .push(Row::new("time until every node is at target", "s", d.all()).vs(b.all()));
    s.rows.push(
        Row::new(
            "time until a node is at target, p50",
            "s",
            percentile(&ds, 50.0),
        )
        .vs(percentile(&bs, 50.0)),
    );
    s.rows.push(
        Row::new(
            "time until a node is at target, p90",
            "s",
            percentile(&ds, 90.0),
        )
        .vs(percentile(&bs, 90.0)),
    );
    s.notes.push(format!(
        "starting the {nodes} pools took {:.2} s (discovery run) and {:.2} s (baseline run); \
         the clock starts before the first",
        d.startup.as_secs_f64(),
        b.startup.as_secs_f64()
    ));
    let book = |f: &Formation| {
        format!(
            "min {}, median {}, max {}",
            f.books.first().copied().unwrap_or(0),
            f.books.get(f.books.len() / 2).copied().unwrap_or(0),
            f.books.last().copied().unwrap_or(0)
        )
    };
    s.notes.push(format!(
        "address book sizes at the end: discovery run {}; baseline run {}",
        book(d),
        book(b)
    ));
    s.notes.push(
        "automatic outbound dials are paced by the pool, so the baseline is bounded below by \
         target x the dial interval"
            .into(),
    );
    Ok(s)
}

fn ip(net: u8, i: usize) -> Ipv4Addr {
    Ipv4Addr::new(127, net, (i / 200) as u8, 1 + (i % 200) as u8)
}

async fn formation(
    net: u8,
    nodes: usize,
    target: usize,
    mode: Addresses,
) -> anyhow::Result<Formation> {
    let mut listeners = Vec::with_capacity(nodes);
    let mut addrs = Vec::with_capacity(nodes);
    for i in 0..nodes {
        let l = TcpListener::bind(SocketAddr::from((ip(net, i), 0)))
            .await
            .with_context(|| format!("binding node {i} on {}", ip(net, i)))?;
        addrs.push(NetAddr::from_socket(l.local_addr()?));
        listeners.push(l);
    }
    let shutdown = CancellationToken::new();
    let started = Instant::now();
    let mut pools = Vec::with_capacity(nodes);
    for (i, l) in listeners.into_iter().enumerate() {
        let seeds = match mode {
            Addresses::OneSeed => vec![addrs[(i + nodes - 1) % nodes]],
            Addresses::All => addrs
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != i)
                .map(|(_, a)| *a)
                .collect(),
        };
        let mut c = pool::Config::default().allow_local_addresses();
        c.dns_seed = false;
        c.machine.connman.target_outbound = target;
        c.machine.connman.feeler_interval = None;
        c.seeds = seeds;
        c.machine.whitelist.push(pool::WhitelistEntry {
            subnet: "127.0.0.0/8".parse().context("subnet")?,
            permissions: vec![pool::Permission::Addr],
        });
        let mut pc = PeerConfig::new(Network::Regtest.params());
        pc.user_agent =
            UserAgent::new("peerpool", "bench", &[&format!("node{i}")]).context("user agent")?;
        let peer = peerpool_net::Config::from_peer_config(pc);
        pools.push(Pool::start(c, peer, vec![l], shutdown.clone()).await);
    }
    let startup = started.elapsed();
    let deadline = started + DEADLINE;
    let mut waits = JoinSet::new();
    for (i, p) in pools.iter().enumerate() {
        let handle = p.handle();
        let mut events = p.bus().subscribe();
        waits.spawn(async move {
            loop {
                let outbound = handle
                    .peer_details()
                    .await
                    .map(|d| {
                        d.iter()
                            .filter(|p| p.joined && p.kind == ConnKind::Outbound)
                            .count()
                    })
                    .unwrap_or(0);
                if outbound >= target {
                    return (i, Some(started.elapsed()));
                }
                let left = deadline.saturating_duration_since(Instant::now());
                match tokio::time::timeout(left, events.recv()).await {
                    Ok(Ok(Some(_))) | Ok(Err(_)) => {}
                    Ok(Ok(None)) | Err(_) => return (i, None),
                }
            }
        });
    }
    let mut reached = vec![None; nodes];
    while let Some(r) = waits.join_next().await {
        let (i, t) = r.context("a watcher task panicked")?;
        reached[i] = t;
    }
    let mut books = Vec::with_capacity(nodes);
    for p in &pools {
        let info = p.handle().addrman_info().await;
        books.push(info.map_or(0, |i| i.total.total()));
    }
    books.sort_unstable();
    shutdown.cancel();
    let mut stops = JoinSet::new();
    for p in pools {
        stops.spawn(p.stop());
    }
    while stops.join_next().await.is_some() {}
    Ok(Formation {
        reached,
        startup,
        books,
    })
}
