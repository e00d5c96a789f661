//! # peerpool-sim
//!
//! A deterministic discrete-event simulator of many peerpool nodes, for testing the cores at
//! the scale of a network: hundreds of [`PoolMachine`](peerpool_core::pool::PoolMachine)s, each
//! connection a pair of real [`PeerMachine`](peerpool_core::PeerMachine)s exchanging encoded
//! frames, over links with latency, segment loss, unanswered dials, broken paths, nodes that
//! come and go, partitions, and nodes that misbehave.
//!
//! Start reading at [`Sim`]: build one from a [`SimConfig`] and a seed, run it for some virtual
//! time, then look at its nodes, links, counters and invariant violations. [`report`] sums up a
//! run (time to reach the outbound target, and so on); the `peerpool-sim` binary runs one from
//! the command line (`cargo run --release -p peerpool-sim -- --nodes 1000 --minutes 30`).
//!
//! ## The driving contract, as the simulator keeps it
//! Every machine is driven the way `peerpool-net` drives it: one input at a time with the
//! current virtual [`Time`](peerpool_core::Time), then `poll_output` drained until `None` with
//! each output carried out in order, then a wake-up scheduled at `poll_timeout` where
//! `handle_timeout` is called if the deadline is still due. What a connection learns reaches
//! its pool as a separate later input, as it would through the connection task's channel.
//!
//! ## Determinism
//! One [`fastrand::Rng`] seeded at construction makes every random choice of the network and
//! seeds every machine; events due at the same instant run in the order they were scheduled;
//! every map whose order matters is ordered. The same seed therefore replays the same run,
//! event for event ([`Sim::trace_hash`]). Tests take their seed from [`seed::seed_for`], which
//! prints it and honours [`seed::SEED_ENV`] (`PEERPOOL_SIM_SEED`) for replays.
//!
//! ## Invariants checked as the run goes
//! - a pool never has more live automatic outbound requests, nor more joined automatic
//!   outbound peers, than its target;
//! - a pool never dials an address it has banned, nor accepts an inbound connection from one;
//! - every dial is answered (succeeded or failed) within the connect timeout plus a round trip,
//!   and the connection manager never keeps a request pending longer;
//! - no node completes a handshake with itself;
//! - a ban for misbehaviour names only misbehaving nodes;
//! - a timer never stays due after `handle_timeout`.
//!
//! Violations are collected ([`Sim::violations`]) rather than panicking, so a test can show
//! them all along with the seed.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod config;
pub mod network;
pub mod queue;
pub mod report;
pub mod seed;
mod sim;
pub mod trace;

pub use config::{Churn, Partition, SimConfig};
pub use sim::{ConnId, Link, Session, Sim, Stats, EPOCH};
