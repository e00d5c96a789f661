//! `peerpool demo`: a small network of nodes on loopback, drawn live.

use std::fmt::Write as _;
use std::io::{IsTerminal, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use bitcoin::hashes::Hash;
use bitcoin::p2p::message_blockdata::Inventory;
use bitcoin::Txid;
use clap::Args;
use peerpool::core::peer::PeerConfig;
use peerpool::net::{clock, HandshakeState, Listeners, StatsSnapshot};

use crate::cli::{user_agent, wait_for_signal, ChainArgs};
use crate::node::Node;

#[derive(Args, Debug)]
pub struct DemoArgs {
    /// Number of nodes, each on its own loopback address (127.0.0.10, .11, ...).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u16).range(2..=200))]
    nodes: u16,
    /// Stop after this many seconds (0: run until Ctrl-C).
    #[arg(long, default_value_t = 30)]
    seconds: u64,
    /// Keepalive ping interval in seconds, short so that pings show.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..))]
    ping_interval: u64,
    #[command(flatten)]
    chain: ChainArgs,
    /// Log level or filter; logs go to stderr under the table.
    #[arg(long, default_value = "warn", value_name = "LEVEL")]
    log_level: String,
}

struct DemoNode {
    node: Node,
    invs_received: Arc<AtomicU64>,
}

pub async fn demo(args: DemoArgs) -> anyhow::Result<()> {
    crate::logging::init(&args.log_level, None)?;
    let chain = if args.chain.chain.is_none() && args.chain.network.is_none() {
        // The demo's network is local; regtest unless a chain was asked for explicitly.
        peerpool::wire::Network::Regtest.params()
    } else {
        args.chain.params()?
    };
    let n = usize::from(args.nodes);
    let mut nodes = Vec::with_capacity(n);
    for i in 0..n {
        let mut cfg = PeerConfig::new(chain.clone());
        cfg.user_agent = user_agent(&[format!("demo-{i}")])?;
        cfg.ping_interval = Duration::from_secs(args.ping_interval);
        cfg.trickle_interval_inbound = Duration::from_millis(1_000);
        cfg.trickle_interval_outbound = Duration::from_millis(400);
        let invs = Arc::new(AtomicU64::new(0));
        let counter = Arc::clone(&invs);
        let listeners = Listeners::new().on_inv(move |_, list| {
            counter.fetch_add(list.len() as u64, Ordering::Relaxed);
        });
        let mut node = Node::new(&format!("node{i}"), cfg, listeners);
        let ip = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 10 + (i % 240) as u8));
        node.dial_from = Some(SocketAddr::new(ip, 0));
        node.listen(SocketAddr::new(ip, 0))
            .await
            .with_context(|| format!("starting demo node {i} on {ip}"))?;
        nodes.push(DemoNode {
            node,
            invs_received: invs,
        });
    }
    // Each node dials the next one and, in networks of four or more, the one after: a ring
    // with chords, so every node has inbound and outbound peers.
    let mut links = 0;
    for i in 0..n {
        let mut targets = vec![(i + 1) % n];
        if n >= 4 {
            targets.push((i + 2) % n);
        }
        if n == 2 && i == 1 {
            targets.clear();
        }
        for t in targets {
            nodes[i].node.connect(nodes[t].node.listening[0]);
            links += 1;
        }
    }

    let started = Instant::now();
    let deadline = (args.seconds > 0).then(|| started + Duration::from_secs(args.seconds));
    let live = std::io::stdout().is_terminal();
    let signal = wait_for_signal();
    tokio::pin!(signal);
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    let mut round: u64 = 0;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = &mut signal => break,
        }
        round += 1;
        announce_transactions(&nodes, round);
        if live {
            let table = render(&nodes, started.elapsed(), links);
            print!("\x1b[2J\x1b[H{table}");
            let _ = std::io::stdout().flush();
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            break;
        }
    }
    let table = render(&nodes, started.elapsed(), links);
    if live {
        print!("\x1b[2J\x1b[H");
    }
    println!("{table}");
    println!("{}", summary(&nodes, links));
    for d in &nodes {
        d.node.stop().await;
    }
    println!("all {n} nodes stopped cleanly");
    Ok(())
}

/// Every node announces a fresh transaction to its peers now and then, so inventory trickling
/// and the known-inventory filter show in the counters.
fn announce_transactions(nodes: &[DemoNode], round: u64) {
    for (i, d) in nodes.iter().enumerate() {
        if (round + i as u64) % 3 != 0 {
            continue;
        }
        let mut bytes = [0u8; 32];
        bytes[..8].copy_from_slice(&round.to_le_bytes());
        bytes[8..16].copy_from_slice(&(i as u64).to_le_bytes());
        let inv = Inventory::Transaction(Txid::from_byte_array(bytes));
        for p in d
            .node
            .peers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
        {
            p.queue_inventory(inv);
        }
    }
}

fn state_name(s: &StatsSnapshot) -> &'static str {
    match s.handshake {
        HandshakeState::AwaitingVersion { .. } => "version?",
        HandshakeState::AwaitingVerack { .. } => "verack?",
        HandshakeState::Ready { .. } => "ready",
        HandshakeState::Disconnected { .. } => "closed",
    }
}

fn ms(us: Option<u64>) -> String {
    us.map_or_else(|| "-".into(), |u| format!("{:.3}", u as f64 / 1000.0))
}

fn render(nodes: &[DemoNode], elapsed: Duration, links: usize) -> String {
    let now = clock::now();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "peerpool demo: {} nodes, {} links, {:.1}s (Ctrl-C to stop)\n",
        nodes.len(),
        links,
        elapsed.as_secs_f64()
    );
    let _ = writeln!(
        out,
        "{:<7} {:>4} {:<17} {:<4} {:<8} {:>6} {:<26} {:>8} {:>8} {:>7} {:>7} {:>8} {:>8} {:>5}",
        "NODE",
        "ID",
        "PEER",
        "DIR",
        "STATE",
        "VER",
        "USER AGENT",
        "PING ms",
        "MIN ms",
        "SENT",
        "RECV",
        "SENT B",
        "RECV B",
        "UP s"
    );
    for d in nodes {
        for s in d.node.snapshot() {
            let _ = writeln!(
                out,
                "{:<7} {:>4} {:<17} {:<4} {:<8} {:>6} {:<26} {:>8} {:>8} {:>7} {:>7} {:>8} {:>8} {:>5}",
                d.node.name,
                s.id.0,
                s.addr.to_string(),
                if s.direction.is_inbound() { "in" } else { "out" },
                state_name(&s),
                s.version,
                truncate(&s.user_agent, 26),
                ms(s.ping.last_rtt_micros),
                ms(s.ping.min_rtt_micros),
                s.msgs_sent,
                s.msgs_recv,
                s.bytes_sent,
                s.bytes_recv,
                s.connected_for(now).as_secs()
            );
        }
    }
    let _ = writeln!(out);
    for d in nodes {
        let _ = write!(
            out,
            "{}: {} inv entries received   ",
            d.node.name,
            d.invs_received.load(Ordering::Relaxed)
        );
    }
    let _ = writeln!(out);
    out
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_owned()
    } else {
        s.chars()
            .take(max - 1)
            .chain(std::iter::once('~'))
            .collect()
    }
}

/// The closing line: one key=value summary that scripts (and the tests) can read.
fn summary(nodes: &[DemoNode], links: usize) -> String {
    let all: Vec<StatsSnapshot> = nodes.iter().flat_map(|d| d.node.snapshot()).collect();
    let ready = all.iter().filter(|s| s.is_ready()).count();
    let pinged = all
        .iter()
        .filter(|s| s.ping.last_rtt_micros.is_some())
        .count();
    let invs: u64 = nodes
        .iter()
        .map(|d| d.invs_received.load(Ordering::Relaxed))
        .sum();
    let mut rtts: Vec<u64> = all.iter().filter_map(|s| s.ping.min_rtt_micros).collect();
    rtts.sort_unstable();
    let median = rtts.get(rtts.len() / 2).copied();
    format!(
        "summary: nodes={} links={} peers={} ready={}/{} pinged={}/{} median_min_ping_ms={} inv_entries_received={}",
        nodes.len(),
        links,
        all.len(),
        ready,
        all.len(),
        pinged,
        all.len(),
        ms(median),
        invs
    )
}
