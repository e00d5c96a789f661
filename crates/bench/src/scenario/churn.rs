//! Handshake churn: many clients connect, complete version/verack, and close, in a loop.
//!
//! The rate is counted by the server (handshakes whose `verack` it has read) over a window that
//! starts after a warm-up, so connection setup of the load generator and the server's start do
//! not count. The server's CPU time over the same window gives its cost per handshake.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::task::JoinSet;

use crate::child::{Impl, ServerProcess};
use crate::client::{connect_and_handshake, Wire};
use crate::report::{list, median, Row, Section, Target};
use crate::scenario::{slot, spawn_load, spec};
use crate::{BenchOptions, Scenario};

/// A client connection that takes longer than this is counted as an error.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// Pause of a client loop after an error, so a failing server is not hammered.
const ERROR_PAUSE: Duration = Duration::from_millis(10);

struct Once {
    rate: f64,
    cpu_per_handshake_us: f64,
    cpu_share: f64,
    errors: u64,
}

pub(crate) async fn run(opts: &BenchOptions) -> anyhow::Result<Section> {
    let mut rate = [Vec::new(), Vec::new()];
    let mut cpu = [Vec::new(), Vec::new()];
    let mut share = [Vec::new(), Vec::new()];
    let mut errors = [0u64; 2];
    for _ in 0..opts.reps.max(1) {
        for imp in Impl::BOTH {
            let r = once(imp, opts).await?;
            tracing::info!("churn {imp}: {:.0} handshakes/s", r.rate);
            let i = slot(imp);
            rate[i].push(r.rate);
            cpu[i].push(r.cpu_per_handshake_us);
            share[i].push(r.cpu_share);
            errors[i] += r.errors;
        }
    }
    let mut s = Section::new(
        Scenario::Churn,
        format!(
            "connect + version/verack + close, {} parallel clients, {} reps of {:?} after {:?} \
             warm-up, {}",
            opts.churn_parallel,
            opts.reps.max(1),
            opts.churn_duration,
            opts.churn_warmup,
            match opts.churn_cpus {
                Some((srv, cli)) =>
                    format!("server pinned to CPU {srv}, load generator to CPU {cli}"),
                None => "unpinned".into(),
            }
        ),
    );
    s.rows.push(
        Row::new("handshakes per second, median", "1/s", median(&rate[0]))
            .vs(median(&rate[1]))
            .target(Target::RatioAtLeast(0.6)),
    );
    s.rows.push(
        Row::new("server CPU per handshake, median", "us", median(&cpu[0])).vs(median(&cpu[1])),
    );
    let per_core = |us: f64| if us > 0.0 { 1e6 / us } else { 0.0 };
    s.rows.push(
        Row::new(
            "handshakes per CPU-second of the server",
            "1/s",
            per_core(median(&cpu[0])),
        )
        .vs(per_core(median(&cpu[1]))),
    );
    s.rows.push(
        Row::new("server CPU use, median", "% of 1 core", median(&share[0])).vs(median(&share[1])),
    );
    s.notes.push(format!(
        "handshakes/s per rep: peerpool {}; reference {}",
        list(&rate[0]),
        list(&rate[1])
    ));
    s.notes.push(
        "the rate is what one load-generator core can drive through one server core; when the \
         server's CPU use stays below 100% the load generator is the bottleneck, and the CPU \
         cost per handshake (kernel included) compares the servers better"
            .into(),
    );
    s.notes.push(format!(
        "client errors (timeouts, resets) over all reps: peerpool {}, reference {}",
        errors[0], errors[1]
    ));
    Ok(s)
}

async fn once(imp: Impl, opts: &BenchOptions) -> anyhow::Result<Once> {
    let mut sp = spec(imp, opts);
    sp.cpu = opts.churn_cpus.map(|(server, _)| server);
    let mut server = ServerProcess::spawn(&sp).await?;
    let wire = Arc::new(Wire::new(server.addr()));
    // Load goes on a little past the window so the window sees steady state at both ends.
    let end = Instant::now() + opts.churn_warmup + opts.churn_duration + Duration::from_millis(300);
    let errors = Arc::new(AtomicU64::new(0));
    let load = {
        let errors = Arc::clone(&errors);
        let parallel = opts.churn_parallel.max(1);
        let cpu = opts.churn_cpus.map(|(_, client)| client);
        spawn_load("churn-load", cpu, opts.client_threads, move || {
            generate(wire, parallel, end, errors)
        })?
    };
    tokio::time::sleep(opts.churn_warmup).await;
    let s0 = server.stats().await?;
    let c0 = server.cpu()?;
    let t0 = Instant::now();
    tokio::time::sleep(opts.churn_duration).await;
    let s1 = server.stats().await?;
    let c1 = server.cpu()?;
    let elapsed = t0.elapsed().as_secs_f64();
    load.await.context("the load thread panicked")??;
    server.stop().await?;
    let done = s1.handshakes.saturating_sub(s0.handshakes);
    let cpu = c1.saturating_sub(c0).as_secs_f64();
    Ok(Once {
        rate: done as f64 / elapsed,
        cpu_per_handshake_us: if done > 0 {
            cpu * 1e6 / done as f64
        } else {
            0.0
        },
        cpu_share: cpu * 100.0 / elapsed,
        errors: errors.load(Ordering::Relaxed),
    })
}

/// `parallel` client loops of connect, handshake, close until `end`.
async fn generate(
    wire: Arc<Wire>,
    parallel: usize,
    end: Instant,
    errors: Arc<AtomicU64>,
) -> anyhow::Result<()> {
    let mut tasks = JoinSet::new();
    for _ in 0..parallel {
        let wire = Arc::clone(&wire);
        let errors = Arc::clone(&errors);
        tasks.spawn(async move {
            while Instant::now() < end {
                match connect_and_handshake(&wire, HANDSHAKE_TIMEOUT).await {
                    Ok(stream) => drop(stream),
                    Err(_) => {
                        errors.fetch_add(1, Ordering::Relaxed);
                        tokio::time::sleep(ERROR_PAUSE).await;
                    }
                }
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    Ok(())
}
