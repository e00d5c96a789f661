//! Idle peers: memory a server spends per handshaken connection that does nothing.
//!
//! The server process is warmed up first (a few connections opened and closed, so every worker
//! thread has its buffers), its resident memory read, then the idle peers connected and
//! handshaken, and the memory read again once the server has counted every handshake. The
//! difference divided by the number of peers is user-space memory per peer: socket buffers
//! live in the kernel and are not part of a process's RSS.

use std::time::{Duration, Instant};

use crate::child::{Impl, ServerProcess};
use crate::client::{self, Wire};
use crate::report::{Row, Section, Target};
use crate::scenario::{slot, spec, MIB, SETUP_PARALLEL, SETUP_TIMEOUT};
use crate::{sys, BenchOptions, Scenario};

/// Connections opened and closed before the baseline is read.
pub(crate) const WARMUP_CONNECTIONS: usize = 16;

/// Time given to the server after the last handshake before memory is read.
const SETTLE: Duration = Duration::from_millis(500);

/// Target from the issue: user-space memory per idle peer.
const TARGET_BYTES_PER_PEER: f64 = 4096.0;

/// One server's figures.
pub(crate) struct Once {
    /// RSS after the warm-up, before the peers (bytes).
    pub(crate) base: u64,
    /// RSS with every peer connected and handshaken (bytes).
    pub(crate) full: u64,
    /// Time to connect and handshake every peer.
    pub(crate) setup: Duration,
}

impl Once {
    /// Resident memory per peer: the growth divided by `peers` (bytes).
    pub(crate) fn per_peer(&self, peers: usize) -> f64 {
        (self.full as f64 - self.base as f64) / peers.max(1) as f64
    }

    /// The rows behind the per-peer figure: RSS before and with the `peers`, and the time to
    /// connect them, against `other`.
    pub(crate) fn context_rows(&self, peers: usize, other: &Once) -> [Row; 3] {
        [
            Row::new("server RSS before the peers", "MiB", self.base as f64 / MIB)
                .vs(other.base as f64 / MIB),
            Row::new(
                format!("server RSS with {peers} peers"),
                "MiB",
                self.full as f64 / MIB,
            )
            .vs(other.full as f64 / MIB),
            Row::new(
                "time to connect and handshake all",
                "s",
                self.setup.as_secs_f64(),
            )
            .vs(other.setup.as_secs_f64()),
        ]
    }
}

pub(crate) async fn run(opts: &BenchOptions) -> anyhow::Result<Section> {
    let n = opts.idle_peers.max(1);
    sys::raise_nofile(n as u64 + 1_000)?;
    let mut r: [Option<Once>; 2] = [None, None];
    for imp in Impl::BOTH {
        let o = once(imp, n, opts).await?;
        tracing::info!("idle {imp}: {:.0} B per peer", o.per_peer(n));
        r[slot(imp)] = Some(o);
    }
    let [Some(p), Some(q)] = r else {
        anyhow::bail!("a run produced no result");
    };
    let mut s = Section::new(
        Scenario::Idle,
        format!("{n} handshaken idle peers on one server process; RSS of the server process"),
    );
    s.rows.push(
        Row::new("RSS per idle peer", "bytes", p.per_peer(n))
            .vs(q.per_peer(n))
            .target(Target::AtMost(TARGET_BYTES_PER_PEER)),
    );
    s.rows.extend(p.context_rows(n, &q));
    s.notes.push(
        "user-space memory only: each idle socket also costs the kernel about 4 KB per end, \
         outside the process RSS"
            .into(),
    );
    Ok(s)
}

/// Measures `n` idle peers on a fresh `imp` server process.
pub(crate) async fn once(imp: Impl, n: usize, opts: &BenchOptions) -> anyhow::Result<Once> {
    let mut server = ServerProcess::spawn(&spec(imp, opts)).await?;
    let wire = Wire::new(server.addr());
    let warm = client::hold(&wire, WARMUP_CONNECTIONS, WARMUP_CONNECTIONS, SETUP_TIMEOUT).await?;
    drop(warm);
    server
        .wait_for("disconnected", WARMUP_CONNECTIONS as u64, SETUP_TIMEOUT)
        .await?;
    tokio::time::sleep(SETTLE).await;
    let base = server.rss()?;
    let t = Instant::now();
    let held = client::hold(&wire, n, SETUP_PARALLEL, SETUP_TIMEOUT).await?;
    server
        .wait_for("handshakes", (WARMUP_CONNECTIONS + n) as u64, SETUP_TIMEOUT)
        .await?;
    let setup = t.elapsed();
    tokio::time::sleep(SETTLE).await;
    let full = server.rss()?;
    let live = server.stats().await?.live();
    if live != n as u64 {
        anyhow::bail!("{imp}: expected {n} live peers, server holds {live}");
    }
    drop(held);
    server.stop().await?;
    Ok(Once { base, full, setup })
}
