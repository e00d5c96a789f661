//! Session priorities under a flood: ping round trips of a well-behaved session, alone and
//! while another session floods the same pool, in one run.
//!
//! `cargo bench -p peerpool-net --bench priority`
//!
//! A pool listens on 127.0.50.1. The quiet client (127.0.50.2) pings back to back, one ping in
//! flight; the flooder (127.0.50.3, a network group of its own) sends 1 MB messages as fast as
//! the pool reads them. Three phases, each measuring the quiet client's round trips:
//! 1. **baseline**: the quiet client alone;
//! 2. **flood, default limits** (ElectrumX's: soft 1,000, hard 10,000, a unit per 5,000
//!    bytes): until the pool cuts the flooder off, which it must;
//! 3. **flood, no limits** ([`Limits::unlimited`]): the same flood, as long as phase 2 lasted,
//!    for comparison: what the quiet session suffers without the cost model.
//!
//! Set `PRIORITY_PINGS` to change the baseline's sample size (default 2,000).

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use peerpool_core::cost::Limits;
use peerpool_core::peer::{PeerConfig, UserAgent};
use peerpool_net::bus::PoolEvent;
use peerpool_net::pool::Pool;
use peerpool_net::DisconnectReason;
use peerpool_testkit::loopback;
use peerpool_testkit::pool::{pool_config, start_with};
use peerpool_testkit::raw::{frame_bytes, RawPeer, MODERN};
use peerpool_wire::Network;

const FLOOD_MESSAGE: usize = 1_000_000;

fn ip(host: u8) -> Ipv4Addr {
    loopback::ip(50, host)
}

async fn start_pool(limits: Limits) -> Pool {
    let mut peer = PeerConfig::new(Network::Regtest.params());
    peer.user_agent = UserAgent::new("peerpool", "bench", &[]).expect("user agent");
    peer.ping_interval = Duration::from_secs(600);
    peer.timeout_interval = Duration::from_secs(600);
    let peer = peerpool_net::Config::from_peer_config(peer).with_cost_limits(limits);
    start_with(SocketAddr::from((ip(1), 0)), pool_config(0), peer).await
}

/// Round trips of one ping at a time until `stop` is set or `count` are measured.
async fn pings(quiet: &mut RawPeer, count: usize, stop: &AtomicBool) -> Vec<Duration> {
    let mut rtts = Vec::with_capacity(count.min(100_000));
    let mut nonce = fastrand::u64(1..u64::MAX / 2);
    while rtts.len() < count && !stop.load(Ordering::Relaxed) {
        let start = Instant::now();
        quiet.ping_pong(nonce).await;
        rtts.push(start.elapsed());
        nonce += 1;
    }
    rtts
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i]
}

/// CPU time other processes used during a phase, from `/proc`: machine busy time minus ours.
struct Disturbance {
    start: Option<(u64, u64)>,
    at: Instant,
}

impl Disturbance {
    fn start() -> Disturbance {
        Disturbance {
            start: cpu_ticks(),
            at: Instant::now(),
        }
    }

    /// Percent of one core used by others since `start`.
    fn others(&self) -> Option<f64> {
        let (busy0, own0) = self.start?;
        let (busy1, own1) = cpu_ticks()?;
        let others = busy1
            .saturating_sub(busy0)
            .saturating_sub(own1.saturating_sub(own0));
        // USER_HZ is 100 on Linux.
        Some(others as f64 / (self.at.elapsed().as_secs_f64() * 100.0).max(1e-9) * 100.0)
    }
}

/// (machine busy ticks, this process's ticks), or `None` without `/proc`.
fn cpu_ticks() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let cpu: Vec<u64> = stat
        .lines()
        .next()?
        .split_whitespace()
        .skip(1)
        .take(8)
        .filter_map(|v| v.parse().ok())
        .collect();
    let idle = cpu.get(3)? + cpu.get(4).copied().unwrap_or(0);
    let busy = cpu.iter().sum::<u64>().saturating_sub(idle);
    let own = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name: state is field 3, utime 14 and stime 15.
    let fields: Vec<&str> = own.rsplit(')').next()?.split_whitespace().collect();
    let own = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some((busy, own))
}

struct Figures {
    /// Percent of a core other processes used meanwhile.
    others: Option<f64>,
    n: usize,
    p50: Duration,
    p99: Duration,
    max: Duration,
}

fn figures(mut rtts: Vec<Duration>, since: &Disturbance) -> Figures {
    rtts.sort();
    Figures {
        others: since.others(),
        n: rtts.len(),
        p50: percentile(&rtts, 0.5),
        p99: percentile(&rtts, 0.99),
        max: rtts.last().copied().unwrap_or_default(),
    }
}

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1e3)
}

struct Flood {
    quiet: Figures,
    /// When the flooder was disconnected, and why; `None` if it never was.
    cut: Option<(Duration, DisconnectReason)>,
    bytes: u64,
    worst_priority: u32,
    soft_crossed: Option<Duration>,
}

/// Floods one pool for at most `limit` while the quiet client pings.
async fn flood(pool: &Pool, quiet: &mut RawPeer, limit: Duration) -> Flood {
    let handle = pool.handle();
    let mut events = handle.subscribe();
    let mut flooder = RawPeer::connect_from(ip(3), pool.listening()[0]).await;
    flooder.handshake_as_dialer(MODERN).await;
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let disturbance = Disturbance::start();

    let flooding = {
        let stop = Arc::clone(&stop);
        tokio::spawn(async move {
            let payload = vec![0x5a; FLOOD_MESSAGE];
            let frame = frame_bytes("flood", &payload);
            let mut bytes = 0u64;
            use tokio::io::AsyncWriteExt;
            while !stop.load(Ordering::Relaxed) {
                // A write that fails means the pool closed the connection.
                if flooder.stream.write_all(&frame).await.is_err() {
                    break;
                }
                bytes += frame.len() as u64;
            }
            bytes
        })
    };

    let watching = {
        let handle = handle.clone();
        let stop = Arc::clone(&stop);
        tokio::spawn(async move {
            let mut worst = 1;
            let mut soft_crossed = None;
            let mut cut = None;
            let deadline = start + limit;
            while Instant::now() < deadline && cut.is_none() {
                if let Ok(sessions) = handle.sessions().await {
                    for s in sessions.iter().filter(|s| {
                        s.details.addr.to_socket().map(|a| a.ip()) == Some(ip(3).into())
                    }) {
                        worst = worst.max(s.priority);
                        if soft_crossed.is_none() && s.cost + s.group_cost > Limits::default().soft
                        {
                            soft_crossed = Some(start.elapsed());
                        }
                    }
                }
                let wait = tokio::time::sleep(Duration::from_millis(50));
                tokio::select! {
                    () = wait => {}
                    e = events.recv() => {
                        if let Ok(Some(PoolEvent::PeerLeft { addr, reason, .. })) = e {
                            if addr.ip() == ip(3) {
                                cut = Some((start.elapsed(), reason));
                            }
                        }
                    }
                }
            }
            stop.store(true, Ordering::Relaxed);
            (worst, soft_crossed, cut)
        })
    };

    let rtts = pings(quiet, usize::MAX, &stop).await;
    let (worst_priority, soft_crossed, cut) = watching.await.expect("watcher");
    let bytes = flooding.await.expect("flooder");
    Flood {
        quiet: figures(rtts, &disturbance),
        cut,
        bytes,
        worst_priority,
        soft_crossed,
    }
}

async fn run() {
    let baseline_n: usize = std::env::var("PRIORITY_PINGS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000);
    let never = AtomicBool::new(false);

    // Default limits: baseline, then the flood until the flooder is cut off.
    let pool = start_pool(Limits::default()).await;
    let mut quiet = RawPeer::connect_from(ip(2), pool.listening()[0]).await;
    quiet.handshake_as_dialer(MODERN).await;
    // Warm up: the first round trips pay for connection setup.
    pings(&mut quiet, 100, &never).await;
    let d = Disturbance::start();
    let baseline = figures(pings(&mut quiet, baseline_n, &never).await, &d);
    let limited = flood(&pool, &mut quiet, Duration::from_secs(120)).await;
    // Still connected and answering after the flood.
    let d = Disturbance::start();
    let after = figures(pings(&mut quiet, baseline_n / 4, &never).await, &d);
    pool.stop().await;

    // No limits: the same flood for as long, for comparison.
    let lasted = limited
        .cut
        .as_ref()
        .map_or(Duration::from_secs(30), |(t, _)| *t);
    let pool = start_pool(Limits::unlimited()).await;
    let mut quiet2 = RawPeer::connect_from(ip(2), pool.listening()[0]).await;
    quiet2.handshake_as_dialer(MODERN).await;
    pings(&mut quiet2, 100, &never).await;
    let unlimited = flood(&pool, &mut quiet2, lasted).await;
    pool.stop().await;

    println!("priority: quiet session ping round trips (one in flight), flooder sends {FLOOD_MESSAGE}-byte messages");
    println!(
        "{:<34} {:>7} {:>12} {:>12} {:>12} {:>14}",
        "phase", "pings", "p50", "p99", "max", "others' CPU"
    );
    let row = |name: &str, f: &Figures| {
        println!(
            "{:<34} {:>7} {:>12} {:>12} {:>12} {:>14}",
            name,
            f.n,
            ms(f.p50),
            ms(f.p99),
            ms(f.max),
            f.others
                .map_or("-".to_string(), |p| format!("{p:.0}% of a core"))
        );
    };
    row("baseline (alone)", &baseline);
    row("during flood, default limits", &limited.quiet);
    row("after the flooder was cut off", &after);
    row("during flood, no limits", &unlimited.quiet);
    let ratio = |a: Duration, b: Duration| a.as_secs_f64() / b.as_secs_f64().max(1e-9);
    println!(
        "ratio flood/baseline, default limits: p50 {:.2}x, p99 {:.2}x",
        ratio(limited.quiet.p50, baseline.p50),
        ratio(limited.quiet.p99, baseline.p99)
    );
    println!(
        "ratio flood/baseline, no limits:      p50 {:.2}x, p99 {:.2}x",
        ratio(unlimited.quiet.p50, baseline.p50),
        ratio(unlimited.quiet.p99, baseline.p99)
    );
    match &limited.cut {
        Some((t, reason)) => println!(
            "flooder (default limits): soft limit crossed at {}, worst priority {}, cut off after {:.2} s and {:.1} MB ({reason})",
            limited.soft_crossed.map_or("-".to_string(), |t| format!("{:.2} s", t.as_secs_f64())),
            limited.worst_priority,
            t.as_secs_f64(),
            limited.bytes as f64 / 1e6
        ),
        None => println!("flooder (default limits): NOT cut off within 120 s"),
    }
    println!(
        "flooder (no limits): {:.1} MB in {:.2} s, worst priority {}, cut off: {}",
        unlimited.bytes as f64 / 1e6,
        lasted.as_secs_f64(),
        unlimited.worst_priority,
        unlimited.cut.is_some()
    );
    if limited.cut.is_none() {
        eprintln!("the flooder was never disconnected");
        std::process::exit(1);
    }
}

fn main() {
    // `cargo bench` passes `--bench`; nothing to parse.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(run());
}
