//! The scenarios. Each runs peerpool and the reference in turn, each in a fresh server
//! process, and returns one [`Section`] of the report.

pub(crate) mod capacity;
pub(crate) mod churn;
pub(crate) mod daemon_idle;
pub(crate) mod fanout;
pub(crate) mod idle;
pub(crate) mod network;
pub(crate) mod ping;
pub(crate) mod throughput;

use std::time::Duration;

use anyhow::Context;
use tracing::info;

use crate::child::{Impl, ServerSpec};
use crate::report::Section;
use crate::{BenchOptions, Scenario};

/// Longest a single connect + handshake may take while setting up idle peers.
pub(crate) const SETUP_TIMEOUT: Duration = Duration::from_secs(10);

/// Connections opened at once while setting up idle peers.
pub(crate) const SETUP_PARALLEL: usize = 256;

pub(crate) async fn run(scenario: Scenario, opts: &BenchOptions) -> anyhow::Result<Vec<Section>> {
    let list: Vec<Scenario> = match scenario {
        Scenario::All => Scenario::EACH.to_vec(),
        one => vec![one],
    };
    if list.contains(&Scenario::DaemonIdle) {
        // Before anything runs: `all` should not fail on a missing daemon minutes in.
        crate::daemon::locate(opts.daemon.as_deref())?;
    }
    let mut sections = Vec::new();
    for s in list {
        info!("scenario {s}: starting");
        let before = Disturbance::start();
        let mut section = match s {
            Scenario::Churn => churn::run(opts).await,
            Scenario::Idle => idle::run(opts).await,
            Scenario::DaemonIdle => daemon_idle::run(opts).await,
            Scenario::Capacity => capacity::run(opts).await,
            Scenario::Ping => ping::run(opts).await,
            Scenario::Throughput => throughput::run(opts).await,
            Scenario::Fanout => fanout::run(opts).await,
            Scenario::Network => network::run(opts).await,
            Scenario::All => anyhow::bail!("`all` is expanded above"),
        }
        .with_context(|| format!("scenario {s}"))?;
        if let Some(note) = before.and_then(|b| b.finish()) {
            section.notes.push(note);
        }
        if let Some(wrapper) = std::env::var(crate::child::WRAPPER_ENV)
            .ok()
            .filter(|w| !w.trim().is_empty())
        {
            // A profiler's own process is what /proc shows then: a wrapped run can print a
            // PASS that says nothing about peerpool.
            section.notes.push(format!(
                "WRAPPED: servers ran under {}={wrapper:?}; their RSS and CPU figures describe \
                 the wrapper, not the server",
                crate::child::WRAPPER_ENV
            ));
        }
        info!("scenario {s}: done");
        sections.push(section);
    }
    Ok(sections)
}

/// CPU used on the machine by processes other than this benchmark and its servers: other
/// work sharing the cores disturbs every figure, so each section says how much there was.
struct Disturbance {
    at: std::time::Instant,
    busy: Duration,
    own: Duration,
}

/// Other load, in percent of one core, above which a section is flagged as disturbed.
const DISTURBED_PERCENT: f64 = 10.0;

impl Disturbance {
    fn start() -> Option<Disturbance> {
        Some(Disturbance {
            at: std::time::Instant::now(),
            busy: crate::sys::machine_busy().ok()?,
            own: crate::sys::own_cpu_with_children().ok()?,
        })
    }

    fn finish(self) -> Option<String> {
        let busy = crate::sys::machine_busy().ok()?.saturating_sub(self.busy);
        let own = crate::sys::own_cpu_with_children()
            .ok()?
            .saturating_sub(self.own);
        let other = busy.saturating_sub(own).as_secs_f64() * 100.0
            / self.at.elapsed().as_secs_f64().max(1e-3);
        Some(if other > DISTURBED_PERCENT {
            format!(
                "DISTURBED: other processes used {other:.0}% of a core during this scenario; \
                 re-run on a quiet machine"
            )
        } else {
            format!("other processes used {other:.0}% of a core during this scenario")
        })
    }
}

pub(crate) fn spec(imp: Impl, opts: &BenchOptions) -> ServerSpec {
    ServerSpec::new(imp, opts.server_threads)
}

/// Index of an implementation in per-implementation arrays.
pub(crate) fn slot(imp: Impl) -> usize {
    match imp {
        Impl::Peerpool => 0,
        Impl::Reference | Impl::FanoutCoalescing | Impl::FanoutPerMessage => 1,
    }
}

/// Runs the future `make` builds on a runtime of its own, on a new thread pinned to `cpu` (a
/// current-thread runtime then: one CPU needs one thread), or unpinned with `threads`
/// workers. The receiver yields its result.
pub(crate) fn spawn_load<T, F, Fut>(
    name: &str,
    cpu: Option<usize>,
    threads: usize,
    make: F,
) -> anyhow::Result<tokio::sync::oneshot::Receiver<anyhow::Result<T>>>
where
    T: Send + 'static,
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = anyhow::Result<T>>,
{
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            let run = || -> anyhow::Result<T> {
                let rt = match cpu {
                    Some(c) => {
                        crate::sys::pin_current_thread(c)?;
                        tokio::runtime::Builder::new_current_thread()
                            .enable_all()
                            .build()?
                    }
                    None => tokio::runtime::Builder::new_multi_thread()
                        .worker_threads(threads.max(1))
                        .enable_all()
                        .build()?,
                };
                rt.block_on(make())
            };
            let _ = tx.send(run());
        })
        .context("starting a load thread")?;
    Ok(rx)
}

pub(crate) const MIB: f64 = (1u64 << 20) as f64;
