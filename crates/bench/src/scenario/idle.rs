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
const WARMUP_CONNECTIONS: usize = 16;

/// Time given to the server after the last handshake before memory is read.
const SETTLE: Duration = Duration::from_millis(500);

/// Target from the issue: user-space memory per idle peer.
const TARGET_BYTES_PER_PEER: f64 = 4096.0;

struct Once {
    base: u64,
    full: u64,
    setup: Duration,
}

pub(crate) async fn run(opts: &BenchOptions) -> anyhow::Result<Section> {
    let n = opts.idle_peers.max(1);
    sys::raise_nofile(n as u64 + 1_000)?;
    let mut r: [Option<Once>; 2] = [None, None];
    for imp in Impl::BOTH {
        let o = once(imp, n, opts).await?;
        tracing::info!(
            "idle {imp}: {:.0} B per peer",
            (o.full as f64 - o.base as f64) / n as f64
        );
        r[slot(imp)] = Some(o);
    }
    let [Some(p), Some(q)] = r else {
        anyhow::bail!("a run produced no result");
    };
    let per = |o: &Once| (o.full as f64 - o.base as f64) / n as f64;
    let mut s = Section::new(
        Scenario::Idle,
        format!("{n} handshaken idle peers on one server process; RSS of the server process"),
    );
    s.rows.push(
        Row::new("RSS per idle peer", "bytes", per(&p))
            .vs(per(&q))
            .target(Target::AtMost(TARGET_BYTES_PER_PEER)),
    );
    s.rows.push(
        Row::new("server RSS before the peers", "MiB", p.base as f64 / MIB).vs(q.base as f64 / MIB),
    );
    s.rows.push(
        Row::new(
            format!("server RSS with {n} peers"),
            "MiB",
            p.full as f64 / MIB,
        )
        .vs(q.full as f64 / MIB),
    );
    s.rows.push(
        Row::new(
            "time to connect and handshake all",
            "s",
            p.setup.as_secs_f64(),
        )
        .vs(q.setup.as_secs_f64()),
    );
    s.notes.push(
        "user-space memory only: each idle socket also costs the kernel about 4 KB per end, \
         outside the process RSS"
            .into(),
    );
    Ok(s)
}

async fn once(imp: Impl, n: usize, opts: &BenchOptions) -> anyhow::Result<Once> {
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
