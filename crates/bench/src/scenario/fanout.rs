//! Fan-out: one server relaying a stream of distinct `inv`s to many connected peers.
//!
//! The peers are loopback clients of the load generator, connected and handshaken before
//! anything is measured. The server's relay ([`crate::fanout_server`]) announces each entry to
//! every peer; each announcement is a 61-byte `inv` frame with one block entry. A message
//! counts once a client has read it (a reader task per client frames what it reads and adds
//! the `inv`s to a shared counter). The figure is messages delivered per second: peers times
//! entries, divided by the time from the relay command to the last client having read the last
//! message.
//!
//! Three servers run in turn, each in a fresh process: peerpool (its accept loop's peers, the
//! relay calling `Peer::queue_inventories`), the minimal fan-out server that coalesces each
//! peer's queue into one write, and the same with one write per message. A warm-up round of
//! entries, not measured, runs first on every server.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::task::JoinSet;

use crate::child::{Impl, ServerProcess};
use crate::client::{self, command, Framer, Wire};
use crate::fanout_server::WINDOW;
use crate::report::{list, median, Row, Section, Target};
use crate::scenario::{spawn_load, spec, MIB, SETUP_PARALLEL, SETUP_TIMEOUT};
use crate::{sys, BenchOptions, Scenario};

/// Longest a relay round may take.
const ROUND_TIMEOUT: Duration = Duration::from_secs(120);

/// How often the load generator looks at the delivered-message counter.
const POLL: Duration = Duration::from_millis(1);

/// Target from the issue: peerpool against the coalescing fan-out server.
const TARGET_VS_COALESCING: f64 = 0.25;

/// Target from the issue: peerpool against the one-write-per-message server.
const TARGET_VS_PER_MESSAGE: f64 = 5.0;

/// The servers, in the order each repetition runs them.
const SERVERS: [Impl; 3] = [
    Impl::Peerpool,
    Impl::FanoutCoalescing,
    Impl::FanoutPerMessage,
];

const INV: [u8; 12] = command("inv");

/// Payload of an `inv` with one entry: a count byte and a 36-byte entry.
const ONE_ENTRY: usize = 37;

struct Once {
    msgs_per_sec: f64,
    relay: Duration,
    rss_connected: u64,
    rss_peak: u64,
    cpu: Duration,
}

pub(crate) async fn run(opts: &BenchOptions) -> anyhow::Result<Section> {
    let peers = opts.fanout_peers.max(1);
    let entries = opts.fanout_entries.max(1);
    let batch = opts.fanout_batch.max(1);
    let warmup = batch * WINDOW as u64;
    sys::raise_nofile(peers as u64 + 1_000)?;
    let mut results: [Vec<Once>; 3] = [Vec::new(), Vec::new(), Vec::new()];
    for _ in 0..opts.reps.max(1) {
        for (i, imp) in SERVERS.into_iter().enumerate() {
            let r = once(imp, peers, entries, opts).await?;
            tracing::info!(
                "fanout {imp}: {:.0} msgs/s, peak RSS {:.1} MiB",
                r.msgs_per_sec,
                r.rss_peak as f64 / MIB
            );
            results[i].push(r);
        }
    }
    let rate = |i: usize| -> Vec<f64> { results[i].iter().map(|r| r.msgs_per_sec).collect() };
    let med = |i: usize, f: &dyn Fn(&Once) -> f64| -> f64 {
        median(&results[i].iter().map(f).collect::<Vec<_>>())
    };
    let mut s = Section::new(
        Scenario::Fanout,
        format!(
            "{peers} handshaken loopback peers; {entries} distinct block invs relayed to each \
             (61-byte frames, after {warmup} not measured) in batches of {batch}; {} reps; {}",
            opts.reps.max(1),
            match opts.fanout_cpus {
                Some((srv, cl)) => format!("server pinned to CPU {srv}, clients to CPU {cl}"),
                None => "unpinned".into(),
            }
        ),
    );
    s.rows.push(
        Row::new(
            "msgs delivered/s vs coalescing fan-out server, median",
            "1/s",
            median(&rate(0)),
        )
        .vs(median(&rate(1)))
        .target(Target::RatioAtLeast(TARGET_VS_COALESCING)),
    );
    s.rows.push(
        Row::new(
            "msgs delivered/s vs one-write-per-message server",
            "1/s",
            median(&rate(0)),
        )
        .vs(median(&rate(2)))
        .target(Target::RatioAtLeast(TARGET_VS_PER_MESSAGE)),
    );
    s.rows.push(
        Row::new(
            format!("server RSS with {peers} peers, before the relay"),
            "MiB",
            med(0, &|r| r.rss_connected as f64 / MIB),
        )
        .vs(med(1, &|r| r.rss_connected as f64 / MIB)),
    );
    s.rows.push(
        Row::new(
            "server peak RSS (relay included)",
            "MiB",
            med(0, &|r| r.rss_peak as f64 / MIB),
        )
        .vs(med(1, &|r| r.rss_peak as f64 / MIB)),
    );
    let total = (peers as u64 * entries) as f64;
    s.rows.push(
        Row::new(
            "server CPU per million messages",
            "ms",
            med(0, &|r| r.cpu.as_secs_f64() * 1e9 / total),
        )
        .vs(med(1, &|r| r.cpu.as_secs_f64() * 1e9 / total)),
    );
    s.notes.push(format!(
        "msgs/s per rep: peerpool {}; coalescing {}; one write per message {}",
        list(&rate(0)),
        list(&rate(1)),
        list(&rate(2))
    ));
    s.notes.push(format!(
        "one-write-per-message server: RSS {:.1} MiB before, peak {:.1} MiB; CPU {:.0} ms per \
         million messages",
        med(2, &|r| r.rss_connected as f64 / MIB),
        med(2, &|r| r.rss_peak as f64 / MIB),
        med(2, &|r| r.cpu.as_secs_f64() * 1e9 / total)
    ));
    s.notes.push(format!(
        "time for the server to queue the round (relay done, last {} entries may be unwritten): \
         peerpool {:.0} ms, coalescing {:.0} ms, per message {:.0} ms",
        warmup,
        med(0, &|r| r.relay.as_secs_f64() * 1e3),
        med(1, &|r| r.relay.as_secs_f64() * 1e3),
        med(2, &|r| r.relay.as_secs_f64() * 1e3)
    ));
    s.notes.push(format!(
        "peerpool relays through Peer::queue_inventories (known-inventory filter; block \
         entries skip the trickle), at most {WINDOW} batches of {batch} entries unwritten per peer; the \
         references hold at most {warmup} frames per peer queue"
    ));
    Ok(s)
}

async fn once(imp: Impl, peers: usize, entries: u64, opts: &BenchOptions) -> anyhow::Result<Once> {
    let mut sp = spec(imp, opts);
    sp.fanout_batch = opts.fanout_batch.max(1);
    sp.cpu = opts.fanout_cpus.map(|(server, _)| server);
    let mut server = ServerProcess::spawn(&sp).await?;
    let wire = Wire::new(server.addr());
    let held = client::hold(&wire, peers, SETUP_PARALLEL, SETUP_TIMEOUT).await?;
    server
        .wait_for("handshakes", peers as u64, SETUP_TIMEOUT)
        .await?;
    let rss_connected = server.rss()?;

    let delivered = Arc::new(AtomicU64::new(0));
    let warmup = sp.fanout_batch * WINDOW as u64;
    let each = warmup + entries;
    let counter = Arc::clone(&delivered);
    let magic = wire.magic;
    let readers = spawn_load(
        "fanout-readers",
        opts.fanout_cpus.map(|(_, clients)| clients),
        opts.client_threads,
        move || async move {
            let mut set = JoinSet::new();
            for s in held {
                let counter = Arc::clone(&counter);
                set.spawn(async move { read_invs(s, magic, each, &counter).await });
            }
            while let Some(r) = set.join_next().await {
                r.context("a reader task panicked")??;
            }
            Ok(())
        },
    )?;

    server.fanout(0, warmup, ROUND_TIMEOUT).await?;
    wait_count(&delivered, peers as u64 * warmup, imp).await?;

    let cpu0 = server.cpu()?;
    let t0 = Instant::now();
    let relay = server.fanout(warmup, entries, ROUND_TIMEOUT).await?;
    wait_count(&delivered, peers as u64 * each, imp).await?;
    let elapsed = t0.elapsed();
    let cpu = server.cpu()?.saturating_sub(cpu0);
    let rss_peak = server.peak_rss()?;
    readers.await.context("the reader thread panicked")??;
    server.stop().await?;
    Ok(Once {
        msgs_per_sec: (peers as u64 * entries) as f64 / elapsed.as_secs_f64(),
        relay,
        rss_connected,
        rss_peak,
        cpu,
    })
}

/// Waits until `counter` reaches `want`, at most [`ROUND_TIMEOUT`].
async fn wait_count(counter: &AtomicU64, want: u64, imp: Impl) -> anyhow::Result<()> {
    let deadline = Instant::now() + ROUND_TIMEOUT;
    loop {
        let got = counter.load(Ordering::Relaxed);
        if got >= want {
            return Ok(());
        }
        if Instant::now() >= deadline {
            anyhow::bail!("{imp}: clients read only {got} of {want} messages in {ROUND_TIMEOUT:?}");
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Reads one client's connection until it has seen `want` one-entry `inv`s, adding each read's
/// count to `counter`.
async fn read_invs(
    stream: std::net::TcpStream,
    magic: bitcoin::p2p::Magic,
    want: u64,
    counter: &AtomicU64,
) -> anyhow::Result<()> {
    let mut s = TcpStream::from_std(stream)?;
    let mut framer = Framer::new();
    let mut got = 0u64;
    while got < want {
        let n = s.read(framer.spare()).await?;
        if n == 0 {
            anyhow::bail!("the server closed a connection after {got} of {want} messages");
        }
        framer.filled(n);
        let mut here = 0;
        while let Some((cmd, payload)) = framer.next(magic)? {
            if cmd == INV && payload.len() == ONE_ENTRY {
                here += 1;
            }
        }
        got += here;
        counter.fetch_add(here, Ordering::Relaxed);
    }
    Ok(())
}
