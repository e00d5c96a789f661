//! Ping round-trip time with many idle peers connected.
//!
//! One probe connection sends `ping` and waits for the matching `pong`, one at a time, from a
//! plain blocking socket on a thread of its own (no runtime between the probe and the kernel),
//! while the idle peers stay connected. The first 1,000 round trips are not measured.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use anyhow::Context;
use bitcoin::p2p::Magic;
use peerpool_wire::NetworkMessage;

use crate::child::{Impl, ServerProcess};
use crate::client::{self, Framer, Wire, PING, PONG};
use crate::report::{median, percentile, Row, Section, Target};
use crate::scenario::{slot, spec, SETUP_PARALLEL, SETUP_TIMEOUT};
use crate::{sys, BenchOptions, Scenario};

/// Round trips before measuring.
const WARMUP_PINGS: usize = 1_000;

/// A pong later than this ends the run with an error.
const PONG_TIMEOUT: Duration = Duration::from_secs(5);

/// Percentiles of one run, in microseconds.
#[derive(Clone, Copy)]
struct Percentiles {
    p50: f64,
    p90: f64,
    p99: f64,
}

pub(crate) async fn run(opts: &BenchOptions) -> anyhow::Result<Section> {
    let n = opts.idle_peers;
    sys::raise_nofile(n as u64 + 1_000)?;
    let mut runs: [Vec<Percentiles>; 2] = [Vec::new(), Vec::new()];
    for _ in 0..opts.reps.max(1) {
        for imp in Impl::BOTH {
            let p = once(imp, opts).await?;
            tracing::info!("ping {imp}: p50 {:.1} us, p99 {:.1} us", p.p50, p.p99);
            runs[slot(imp)].push(p);
        }
    }
    let pick =
        |i: usize, f: fn(&Percentiles) -> f64| median(&runs[i].iter().map(f).collect::<Vec<_>>());
    let mut s = Section::new(
        Scenario::Ping,
        format!(
            "ping/pong round trips on one connection with {n} idle peers connected, {} pings per \
             rep, {} reps (median of the reps' percentiles), {}",
            opts.pings,
            opts.reps.max(1),
            match opts.ping_cpu {
                Some(c) => format!("probe and server pinned to CPU {c}"),
                None => "unpinned".into(),
            }
        ),
    );
    s.rows.push(
        Row::new("round trip p50", "us", pick(0, |p| p.p50))
            .vs(pick(1, |p| p.p50))
            .target(Target::RatioAtMost(1.5)),
    );
    s.rows
        .push(Row::new("round trip p90", "us", pick(0, |p| p.p90)).vs(pick(1, |p| p.p90)));
    s.rows
        .push(Row::new("round trip p99", "us", pick(0, |p| p.p99)).vs(pick(1, |p| p.p99)));
    let fmt = |v: &[Percentiles]| {
        v.iter()
            .map(|p| format!("{:.1}/{:.1}/{:.1}", p.p50, p.p90, p.p99))
            .collect::<Vec<_>>()
            .join(", ")
    };
    s.notes.push(format!(
        "p50/p90/p99 per rep (us): peerpool {}; reference {}",
        fmt(&runs[0]),
        fmt(&runs[1])
    ));
    Ok(s)
}

async fn once(imp: Impl, opts: &BenchOptions) -> anyhow::Result<Percentiles> {
    let mut sp = spec(imp, opts);
    sp.cpu = opts.ping_cpu;
    let mut server = ServerProcess::spawn(&sp).await?;
    let wire = Wire::new(server.addr());
    let idle = client::hold(&wire, opts.idle_peers, SETUP_PARALLEL, SETUP_TIMEOUT).await?;
    server
        .wait_for("handshakes", opts.idle_peers as u64, SETUP_TIMEOUT)
        .await?;
    let probe = client::connect_and_handshake(&wire, SETUP_TIMEOUT)
        .await?
        .into_std()?;
    probe.set_nonblocking(false)?;
    let magic = wire.magic;
    let pings = opts.pings.max(1);
    let cpu = opts.ping_cpu;
    // A thread of its own rather than the blocking pool: pinning it must not leak to other
    // work.
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("ping-probe".into())
        .spawn(move || {
            let r = match cpu {
                Some(c) => sys::pin_current_thread(c),
                None => Ok(()),
            }
            .and_then(|()| Ok(round_trips(probe, magic, WARMUP_PINGS, pings)?));
            let _ = tx.send(r);
        })?;
    let mut samples = rx.await.context("the probe thread panicked")??;
    drop(idle);
    server.stop().await?;
    samples.sort_by(f64::total_cmp);
    Ok(Percentiles {
        p50: percentile(&samples, 50.0),
        p90: percentile(&samples, 90.0),
        p99: percentile(&samples, 99.0),
    })
}

/// Sends pings one at a time and returns the round trips after the warm-up, in microseconds.
/// Pings from the server are answered (outside the timed part).
fn round_trips(
    mut s: TcpStream,
    magic: Magic,
    warmup: usize,
    n: usize,
) -> std::io::Result<Vec<f64>> {
    s.set_read_timeout(Some(PONG_TIMEOUT))?;
    let mut framer = Framer::new();
    let mut out = Vec::with_capacity(n);
    for i in 0..warmup + n {
        let nonce = i as u64 + 1;
        let ping = client::frame(magic, &NetworkMessage::Ping(nonce));
        let mut owed = Vec::new();
        let t0 = Instant::now();
        s.write_all(&ping)?;
        'pong: loop {
            while let Some((cmd, payload)) = framer.next(magic)? {
                if cmd == PONG && payload == nonce.to_le_bytes() {
                    break 'pong;
                }
                if cmd == PING && payload.len() == 8 {
                    owed.push(payload.to_vec());
                }
            }
            let k = s.read(framer.spare())?;
            if k == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            framer.filled(k);
        }
        let rtt = t0.elapsed();
        for p in owed {
            let mut b = [0u8; 8];
            b.copy_from_slice(&p);
            s.write_all(&client::frame(
                magic,
                &NetworkMessage::Pong(u64::from_le_bytes(b)),
            ))?;
        }
        if i >= warmup {
            out.push(rtt.as_secs_f64() * 1e6);
        }
    }
    Ok(out)
}
