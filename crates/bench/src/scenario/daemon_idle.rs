//! Idle peers on the full daemon: the memory `peerpool run` spends per handshaken connection
//! that does nothing, with what an operator runs switched on (the pool with its connection
//! manager, address book and bans, the node RPC and the admin listener).
//!
//! The `idle` scenario measures the bare library server (`accept_loop` + `Peer`); the daemon
//! adds what the pool and its listeners keep per connection, and its figure is the one an
//! operator sees. The daemon is the real binary
//! in a child process ([`crate::daemon`]); the library server is measured in the same run as
//! the baseline, with the same warm-up, load generator and peer count.
//!
//! The daemon only tells how many peers it holds through its RPC, so the scenario waits until
//! `getconnectioncount` answers the number of peers held, then gives the daemon a moment
//! before reading its memory, so that what follows a handshake has happened. Each RPC call
//! snapshots every connection, so the memory is also read once before the first call with
//! the peers connected, and the growth from a few more calls is reported: what a daemon that
//! is asked now and then holds besides.

use std::time::{Duration, Instant};

use crate::child::Impl;
use crate::client::{self, Wire};
use crate::daemon::{self, DaemonProcess};
use crate::report::{Row, Section, Target};
use crate::scenario::idle::{self, Once, WARMUP_CONNECTIONS};
use crate::scenario::{SETUP_PARALLEL, SETUP_TIMEOUT};
use crate::{sys, BenchOptions, Scenario};

/// Target from the issue: user-space memory per idle peer in the full daemon.
const TARGET_BYTES_PER_PEER: f64 = 3072.0;

/// Connections the daemon may hold beyond the measured peers: Bitcoin Core's default total
/// (125), so the inbound slots (what the outbound target, here 0, and one feeler slot leave)
/// never fill and no peer is evicted.
const HEADROOM: usize = 125;

/// Time given to the daemon after it counted the peers (and after the warm-up) before its
/// memory is read.
const SETTLE: Duration = Duration::from_secs(2);

/// `getconnectioncount` calls made after the figure, one per [`daemon::POLL_INTERVAL`], to
/// show whether answering the RPC leaves memory behind (it did while each call took a
/// snapshot of every connection; the count is now taken in place).
const MORE_CALLS: usize = 5;

/// Longest wait for the daemon to count the peers once the load generator holds them all.
const COUNT_TIMEOUT: Duration = Duration::from_secs(120);

/// The daemon's figures.
struct DaemonOnce {
    memory: Once,
    /// The same peers, their RSS read before the RPC was called with them connected.
    unasked: Once,
    /// `getconnectioncount` calls made while waiting for the peers.
    polls: u32,
    /// CPU the daemon used while the peers sat idle, over [`SETTLE`].
    idle_cpu: Duration,
    /// How much [`MORE_CALLS`] more `getconnectioncount`s with every peer connected moved
    /// the RSS (bytes).
    rpc_call_growth: i64,
    /// From the RPC `stop` to the daemon's exit.
    stop: Duration,
}

pub(crate) async fn run(opts: &BenchOptions) -> anyhow::Result<Section> {
    let n = opts.idle_peers.max(1);
    let binary = daemon::locate(opts.daemon.as_deref())?;
    let want = n as u64 + 1_000;
    let nofile = sys::raise_nofile(want)?;
    if nofile < want {
        anyhow::bail!(
            "open-file limit {nofile}: the load generator needs {want} for {n} peers \
             (use fewer --peers)"
        );
    }
    let lib = idle::once(Impl::Peerpool, n, opts).await?;
    tracing::info!(
        "daemon-idle: library server {:.0} B per peer",
        lib.per_peer(n)
    );
    let d = daemon_once(&binary, n).await?;
    tracing::info!("daemon-idle: daemon {:.0} B per peer", d.memory.per_peer(n));

    let mut s = Section::new(
        Scenario::DaemonIdle,
        format!(
            "{n} handshaken idle peers on the daemon (`peerpool run`: pool, node RPC, admin \
             listener) against the bare library server of `idle`; RSS of each process"
        ),
    );
    let m = &d.memory;
    s.rows.push(
        Row::new("RSS per idle peer", "bytes", m.per_peer(n))
            .vs(lib.per_peer(n))
            .target(Target::AtMost(TARGET_BYTES_PER_PEER)),
    );
    s.rows.push(
        Row::new(
            "RSS per idle peer before any RPC call",
            "bytes",
            d.unasked.per_peer(n),
        )
        .vs(lib.per_peer(n)),
    );
    s.rows.extend(m.context_rows(n, &lib));
    s.rows.push(Row::new(
        "daemon CPU with the peers idle",
        "% of 1 core",
        d.idle_cpu.as_secs_f64() * 100.0 / SETTLE.as_secs_f64(),
    ));
    s.rows.push(Row::new(
        format!("RSS growth from {MORE_CALLS} more getconnectioncount calls"),
        "KiB",
        d.rpc_call_growth as f64 / 1024.0,
    ));
    s.rows.push(Row::new(
        "daemon stop with the peers connected",
        "s",
        d.stop.as_secs_f64(),
    ));
    s.notes.push(
        "peerpool column: the daemon binary on regtest, --target-outbound 0, --whitelist \
         noban@127.0.0.0/8 (no per-group limit, no eviction), --max-connections peers + 125; \
         reference column: the library server of the idle scenario (accept_loop + Peer), in \
         this run"
            .into(),
    );
    s.notes.push(format!(
        "the daemon's RSS with the peers is read {secs} s after getconnectioncount answered \
         {n} ({} call(s), one per {} ms), which was {secs} s after every client had its \
         handshake; \"before any RPC call\" reads it just before that first call",
        d.polls,
        daemon::POLL_INTERVAL.as_millis(),
        secs = SETTLE.as_secs()
    ));
    s.notes.push(match daemon::age(&binary) {
        Some(age) => format!(
            "daemon binary {}, written {} before this run (build it with the benchmark: \
             `cargo build --release`)",
            binary.display(),
            minutes(age)
        ),
        None => format!("daemon binary {}", binary.display()),
    });
    s.notes.push(
        "user-space memory only: each idle socket also costs the kernel about 4 KB per end, \
         outside the process RSS"
            .into(),
    );
    Ok(s)
}

async fn daemon_once(binary: &std::path::Path, n: usize) -> anyhow::Result<DaemonOnce> {
    let mut d = DaemonProcess::start(binary, n + HEADROOM).await?;
    let wire = Wire::new(d.p2p_addr());
    // As in `idle`: every worker thread has met a peer, and the RPC has answered with peers
    // connected, before the baseline is read.
    let warm = client::hold(&wire, WARMUP_CONNECTIONS, WARMUP_CONNECTIONS, SETUP_TIMEOUT).await?;
    d.wait_for_count(WARMUP_CONNECTIONS as u64, SETUP_TIMEOUT)
        .await?;
    drop(warm);
    d.wait_for_count(0, SETUP_TIMEOUT).await?;
    tokio::time::sleep(SETTLE).await;
    let base = d.rss()?;

    let t = Instant::now();
    let held = client::hold(&wire, n, SETUP_PARALLEL, SETUP_TIMEOUT).await?;
    let setup = t.elapsed();
    // Read once before the RPC is asked anything with the peers connected, and again after:
    // whatever a call allocates and the allocator keeps shows in the RSS.
    tokio::time::sleep(SETTLE).await;
    let unasked = Once {
        base,
        full: d.rss()?,
        setup,
    };
    let polls = d.wait_for_count(n as u64, COUNT_TIMEOUT).await?;
    let cpu = d.cpu()?;
    tokio::time::sleep(SETTLE).await;
    let full = d.rss()?;
    let idle_cpu = d.cpu()?.saturating_sub(cpu);
    let still = d.connection_count().await?;
    if still != n as u64 {
        anyhow::bail!("the daemon held {n} peers, then {still} after {SETTLE:?}");
    }
    // `still` was the first of them.
    for _ in 1..MORE_CALLS {
        tokio::time::sleep(daemon::POLL_INTERVAL).await;
        d.connection_count().await?;
    }
    let rpc_call_growth = d.rss()? as i64 - full as i64;
    // 10,000 connections cannot cost nothing: a process whose RSS did not grow is not the
    // daemon (a `--daemon` wrapper that forks instead of exec-ing it), and a zero would pass
    // any memory target.
    if full <= base || unasked.full <= base {
        anyhow::bail!(
            "the RSS of process {} did not grow with {n} peers ({base} then {full} bytes): \
             is it the daemon itself?",
            d.pid()
        );
    }
    let stop = d.stop().await?;
    drop(held);
    Ok(DaemonOnce {
        memory: Once { base, full, setup },
        unasked,
        polls,
        idle_cpu,
        rpc_call_growth,
        stop,
    })
}

/// A duration as minutes, or hours and minutes.
fn minutes(d: Duration) -> String {
    let m = d.as_secs() / 60;
    if m < 60 {
        format!("{m} min")
    } else {
        format!("{} h {} min", m / 60, m % 60)
    }
}
