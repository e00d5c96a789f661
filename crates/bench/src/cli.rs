//! Command-line arguments of `peerpool-bench`, as a `clap` argument set (flattened into the
//! binary's parser, see `src/bin/peerpool-bench.rs`).

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use crate::{BenchOptions, Scenario};

/// `<scenario> [options]`; every option defaults to [`BenchOptions::default`].
#[derive(Args, Debug, Clone)]
pub struct BenchArgs {
    /// churn, idle, daemon-idle, capacity, ping, throughput, fanout, network, or all.
    #[arg(value_parser = parse_scenario)]
    pub scenario: Scenario,
    /// Repetitions of churn, ping and throughput (the median is reported).
    #[arg(long, value_name = "N")]
    pub reps: Option<usize>,
    /// Tokio worker threads of each server process (default: number of CPUs).
    #[arg(long, value_name = "N")]
    pub server_threads: Option<usize>,
    /// Tokio worker threads of the load generator (default: number of CPUs).
    #[arg(long, value_name = "N")]
    pub client_threads: Option<usize>,
    /// Churn: seconds measured per repetition.
    #[arg(long, value_name = "SECS")]
    pub duration: Option<f64>,
    /// Churn: concurrent client connections.
    #[arg(long, value_name = "N")]
    pub parallel: Option<usize>,
    /// Idle, daemon-idle and ping: idle peers connected.
    #[arg(long, value_name = "N")]
    pub peers: Option<usize>,
    /// Ping: measured round trips per repetition.
    #[arg(long, value_name = "N")]
    pub pings: Option<usize>,
    /// Churn, throughput and fanout: do not pin the server to CPU 0 and the load generator to CPU 1.
    #[arg(long)]
    pub no_split_pin: bool,
    /// Ping: CPU to pin the probe and the server to (default 0).
    #[arg(long, value_name = "CPU", conflicts_with = "no_pin")]
    pub pin_cpu: Option<usize>,
    /// Ping: do not pin the probe and the server to one CPU.
    #[arg(long)]
    pub no_pin: bool,
    /// Capacity: peers held at the inbound cap.
    #[arg(long, value_name = "N")]
    pub capacity: Option<usize>,
    /// Capacity: the server's open-file limit.
    #[arg(long, value_name = "N")]
    pub nofile: Option<u64>,
    /// Capacity: over-limit connection attempts per second.
    #[arg(long, value_name = "N")]
    pub overlimit_rate: Option<u32>,
    /// Capacity: skip the out-of-descriptors (EMFILE) phase.
    #[arg(long)]
    pub no_emfile: bool,
    /// Throughput: 61-byte inv messages per repetition.
    #[arg(long, value_name = "N")]
    pub small_messages: Option<u64>,
    /// Throughput: 4 MB messages per repetition.
    #[arg(long, value_name = "N")]
    pub large_messages: Option<u64>,
    /// Throughput: read buffer of the reference receiver in bytes (0: unbuffered).
    #[arg(long, value_name = "BYTES")]
    pub reference_buffer: Option<usize>,
    /// Fan-out: connected peers the server relays to.
    #[arg(long, value_name = "N")]
    pub fanout_peers: Option<usize>,
    /// Fan-out: distinct invs relayed to every peer per repetition.
    #[arg(long, value_name = "N")]
    pub fanout_entries: Option<u64>,
    /// Fan-out: entries the relay hands each peer per turn.
    #[arg(long, value_name = "N")]
    pub fanout_batch: Option<u64>,
    /// Network: pools in the loopback network.
    #[arg(long, value_name = "N")]
    pub network_nodes: Option<usize>,
    /// Network: automatic outbound target of each pool.
    #[arg(long, value_name = "N")]
    pub network_target: Option<usize>,
    /// Daemon-idle: the daemon binary to start (default: `peerpool` beside this executable,
    /// e.g. target/release/peerpool, built by `cargo build --release`).
    #[arg(long, value_name = "PATH")]
    pub daemon: Option<PathBuf>,
}

fn parse_scenario(s: &str) -> Result<Scenario, String> {
    s.parse().map_err(|e: anyhow::Error| e.to_string())
}

impl BenchArgs {
    /// The options these arguments select.
    pub fn options(&self) -> BenchOptions {
        let mut o = BenchOptions::default();
        macro_rules! set {
            ($($arg:ident => $field:ident),* $(,)?) => {
                $(if let Some(v) = self.$arg { o.$field = v; })*
            };
        }
        set!(
            reps => reps,
            server_threads => server_threads,
            client_threads => client_threads,
            parallel => churn_parallel,
            peers => idle_peers,
            pings => pings,
            capacity => capacity_peers,
            nofile => capacity_nofile,
            overlimit_rate => overlimit_rate,
            small_messages => small_messages,
            large_messages => large_messages,
            reference_buffer => reference_read_buffer,
            fanout_peers => fanout_peers,
            fanout_entries => fanout_entries,
            fanout_batch => fanout_batch,
            network_nodes => network_nodes,
            network_target => network_target,
        );
        if let Some(secs) = self.duration {
            o.churn_duration = Duration::from_secs_f64(secs.max(0.1));
        }
        if let Some(cpu) = self.pin_cpu {
            o.ping_cpu = Some(cpu);
        }
        if self.no_split_pin {
            o.churn_cpus = None;
            o.throughput_cpus = None;
            o.fanout_cpus = None;
        }
        if self.no_pin {
            o.ping_cpu = None;
        }
        if self.no_emfile {
            o.emfile = false;
        }
        o.daemon.clone_from(&self.daemon);
        o
    }
}
