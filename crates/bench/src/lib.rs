//! # peerpool-bench
//!
//! peerpool's benchmark suite: load generators and minimal reference servers, so that every
//! figure is a ratio against a reference measured in the same run on the same machine.
//!
//! ## Running it
//! `cargo run --release -p peerpool-bench -- <scenario> [options]` runs the crate's own binary
//! (`src/bin/peerpool-bench.rs`); the daemon never links this crate. Another binary can host
//! the suite the same way:
//! ```no_run
//! use peerpool_bench::{BenchOptions, Scenario};
//!
//! fn main() -> anyhow::Result<()> {
//!     // First thing: a re-executed server process runs here and never returns.
//!     peerpool_bench::run_child_if_requested();
//!     let report = peerpool_bench::run_blocking(Scenario::Churn, BenchOptions::default())?;
//!     println!("{report}");
//!     std::process::exit(if report.passed() { 0 } else { 1 });
//! }
//! ```
//! From async code use [`run`] instead of [`run_blocking`]. [`cli::BenchArgs`] is the `clap`
//! argument set (`<scenario> [options]`) of `peerpool-bench`.
//!
//! ## How a scenario runs
//! The server under test (peerpool or the reference) runs in a child process started from the
//! benchmark's own executable ([`child`]), with its own tokio runtime; the load generator runs
//! in the calling process on a dedicated runtime. Server memory and CPU time are read from
//! `/proc/<child pid>`. Runs alternate between peerpool and the reference, and a figure is the
//! median of [`BenchOptions::reps`] repetitions where repeating is cheap. Two exceptions: the
//! network scenario's 200 pools run inside the benchmark process, on a runtime of their own,
//! and its baseline is the same network given every address up front; the daemon-idle
//! scenario starts the daemon binary itself (`peerpool run`, see [`daemon`]) and compares it
//! with the library server of the idle scenario.
//!
//! Only loopback addresses are used: servers listen on 127.0.0.1, clients bind source
//! addresses in 127.0.0.0/8 to spread over more ephemeral ports. Every loop is bounded by a
//! count or a deadline, and a child server exits when its control pipe closes.
//!
//! Start reading at [`Scenario`] and the modules under `scenario/`.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod child;
pub mod cli;
mod client;
pub mod daemon;
mod fanout_server;
mod peerpool_server;
mod reference;
pub mod report;
mod scenario;
pub mod sys;

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use anyhow::Context;

pub use child::run_child_if_requested;
pub use report::{Report, Row, Section, Target, Verdict};

/// A benchmark scenario.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Scenario {
    /// Connect, version/verack handshake, close, as fast as possible: handshakes per second.
    /// Target: peerpool >= 60% of the reference.
    Churn,
    /// Many handshaken idle peers on one server: resident memory per peer. Target <= 4 KiB.
    Idle,
    /// The same idle peers on the full daemon (`peerpool run` with its pool, node RPC and
    /// admin listener), against the library server of [`Scenario::Idle`] in the same run.
    /// Target <= 3 KiB per peer.
    DaemonIdle,
    /// 19,900 peers under an open-file limit of 20,000; connections beyond the cap refused
    /// cleanly; CPU while over-limit attempts continue (no busy loop); EMFILE back-off.
    Capacity,
    /// Ping round-trip time with many idle peers connected. Target: p50 within 1.5x.
    Ping,
    /// Inbound message throughput: 61-byte `inv`s (target >= 40%) and 4 MB payloads (target
    /// >= 70%).
    Throughput,
    /// Relaying distinct `inv`s to 1,000 peers: 61-byte messages delivered per second.
    /// Targets: peerpool >= 25% of a coalescing fan-out server and >= 5x a server that writes
    /// each message with its own system call.
    Fanout,
    /// A 200-node loopback network: time until every node holds 8 outbound peers when each
    /// is given one seed, against the same nodes given every address up front.
    Network,
    /// Every scenario above, one after another.
    All,
}

impl Scenario {
    /// Every single scenario, in the order `all` runs them.
    pub const EACH: [Scenario; 8] = [
        Scenario::Churn,
        Scenario::Idle,
        Scenario::DaemonIdle,
        Scenario::Capacity,
        Scenario::Ping,
        Scenario::Throughput,
        Scenario::Fanout,
        Scenario::Network,
    ];

    /// The scenario's name on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Scenario::Churn => "churn",
            Scenario::Idle => "idle",
            Scenario::DaemonIdle => "daemon-idle",
            Scenario::Capacity => "capacity",
            Scenario::Ping => "ping",
            Scenario::Throughput => "throughput",
            Scenario::Fanout => "fanout",
            Scenario::Network => "network",
            Scenario::All => "all",
        }
    }
}

impl fmt::Display for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Scenario {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> anyhow::Result<Scenario> {
        Ok(match s {
            "churn" => Scenario::Churn,
            "idle" => Scenario::Idle,
            "daemon-idle" => Scenario::DaemonIdle,
            "capacity" => Scenario::Capacity,
            "ping" => Scenario::Ping,
            "throughput" | "msgs" => Scenario::Throughput,
            "fanout" => Scenario::Fanout,
            "network" => Scenario::Network,
            "all" => Scenario::All,
            _ => anyhow::bail!(
                "unknown scenario {s:?}; expected churn, idle, daemon-idle, capacity, ping, \
                 throughput, fanout, network or all"
            ),
        })
    }
}

/// Sizes and durations of the scenarios. [`Default`] keeps each scenario to well under a
/// minute on a 2-core machine.
#[derive(Clone, Debug)]
pub struct BenchOptions {
    /// Repetitions of the cheap measurements (churn, ping, throughput); the median is reported.
    pub reps: usize,
    /// Tokio worker threads of each server process.
    pub server_threads: usize,
    /// Tokio worker threads of the load generator.
    pub client_threads: usize,
    /// Churn: length of each measurement window.
    pub churn_duration: Duration,
    /// Churn: load before each window starts, not measured.
    pub churn_warmup: Duration,
    /// Churn: concurrent client connections.
    pub churn_parallel: usize,
    /// Churn: CPUs of the server process and of the load generator. Pinned, each side has
    /// one core to itself, so the rate shows which side is the bottleneck (the server's CPU
    /// use reaching 100% means the server); unpinned, both sides share both cores and the
    /// rate mostly measures the load generator.
    pub churn_cpus: Option<(usize, usize)>,
    /// Idle, daemon-idle and ping: idle peers held on the server.
    pub idle_peers: usize,
    /// Ping: measured round trips per repetition (after 1,000 not measured).
    pub pings: usize,
    /// Ping: CPU to pin both the probe thread and the server process to. Without pinning the
    /// round trip depends on whether the scheduler happens to put both ends on one core (about
    /// 17 us on the reference machine) or on two (about 57 us: a cross-CPU wake-up of an idle
    /// virtual CPU), which makes repetitions bimodal.
    pub ping_cpu: Option<usize>,
    /// Capacity: peers held (the server's inbound cap).
    pub capacity_peers: usize,
    /// Capacity: the server's open-file limit.
    pub capacity_nofile: u64,
    /// Capacity: over-limit connection attempts per second.
    pub overlimit_rate: u32,
    /// Capacity: how long over-limit attempts go on.
    pub overlimit_duration: Duration,
    /// Capacity: also run the out-of-descriptors (EMFILE) phase.
    pub emfile: bool,
    /// Throughput: 61-byte `inv` messages sent per repetition.
    pub small_messages: u64,
    /// Throughput: large messages sent per repetition.
    pub large_messages: u64,
    /// Throughput: payload size of a large message in bytes (at most 4,000,000).
    pub large_size: usize,
    /// Throughput: CPUs of the server process and of the sender (see
    /// [`BenchOptions::churn_cpus`]).
    pub throughput_cpus: Option<(usize, usize)>,
    /// Throughput: read buffer of the reference receiver (0: unbuffered `read_exact`).
    pub reference_read_buffer: usize,
    /// Fan-out: connected peers the server relays to.
    pub fanout_peers: usize,
    /// Fan-out: distinct entries relayed to every peer per repetition (after a warm-up).
    pub fanout_entries: u64,
    /// Fan-out: entries the relay hands each peer per turn; two batches may be unwritten per
    /// peer (peerpool) or queued per peer (references).
    pub fanout_batch: u64,
    /// Fan-out: CPUs of the server process and of the clients (see
    /// [`BenchOptions::churn_cpus`]).
    pub fanout_cpus: Option<(usize, usize)>,
    /// Network: pools in the loopback network.
    pub network_nodes: usize,
    /// Network: automatic outbound target of each pool.
    pub network_target: usize,
    /// Daemon-idle: the daemon binary; `None` looks for `peerpool` beside this executable
    /// (see [`daemon::locate`]).
    pub daemon: Option<PathBuf>,
}

impl Default for BenchOptions {
    fn default() -> BenchOptions {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        BenchOptions {
            reps: 3,
            server_threads: cpus,
            client_threads: cpus,
            churn_duration: Duration::from_secs(5),
            churn_warmup: Duration::from_secs(1),
            churn_parallel: 64,
            churn_cpus: (cpus >= 2).then_some((0, 1)),
            idle_peers: 10_000,
            pings: 10_000,
            ping_cpu: Some(0),
            capacity_peers: 19_900,
            capacity_nofile: 20_000,
            overlimit_rate: 1_000,
            overlimit_duration: Duration::from_secs(5),
            emfile: true,
            small_messages: 2_000_000,
            large_messages: 250,
            large_size: 4_000_000,
            reference_read_buffer: 64 * 1024,
            throughput_cpus: (cpus >= 2).then_some((0, 1)),
            fanout_peers: 1_000,
            fanout_entries: 2_000,
            fanout_batch: 256,
            fanout_cpus: (cpus >= 2).then_some((0, 1)),
            network_nodes: 200,
            network_target: 8,
            daemon: None,
        }
    }
}

/// Runs a scenario (or all of them) and returns the report.
///
/// The load generator runs on a runtime of its own, on a thread of its own, so this can be
/// awaited from any runtime; the caller's runtime only waits.
pub async fn run(scenario: Scenario, opts: BenchOptions) -> anyhow::Result<Report> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("bench".into())
        .spawn(move || {
            let _ = tx.send(run_blocking(scenario, opts));
        })
        .context("starting the benchmark thread")?;
    rx.await.context("the benchmark thread panicked")?
}

/// Runs a scenario on the current thread. Must not be called from inside a tokio runtime (use
/// [`run`] there).
pub fn run_blocking(scenario: Scenario, opts: BenchOptions) -> anyhow::Result<Report> {
    // Servers set their own limits; the load generator needs room for its connections.
    let machine = sys::Machine::detect();
    sys::raise_nofile_to_hard()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(opts.client_threads.max(1))
        .enable_all()
        .build()
        .context("building the load generator's runtime")?;
    let sections = rt.block_on(scenario::run(scenario, &opts))?;
    Ok(Report { machine, sections })
}
