//! # peerpool-net
//!
//! The tokio layer of peerpool: it owns sockets, timers and tasks, and does exactly what the
//! sans-IO machines of [`peerpool_core`] decide.
//!
//! Start at [`Peer`]: one connection, driven by its own task. As with btcd's `peer` package the
//! caller makes the TCP connection (directly, through a proxy, however it likes) and hands it
//! over with [`Peer::associate_connection`]; [`dial`] and [`accept_loop`] cover the common cases.
//!
//! For many connections under one policy (outbound targets, address book, bans, eviction) start
//! at [`pool`]: a [`Pool`] is one driver task around the sans-IO
//! [`PoolMachine`](peerpool_core::pool::PoolMachine), commanded through a [`PoolHandle`] and
//! observed through its [`bus::EventBus`].
//!
//! ```no_run
//! # async fn example() -> std::io::Result<()> {
//! use std::sync::Arc;
//! use peerpool_net::{Config, Listeners, Peer};
//! use peerpool_wire::Network;
//!
//! let listeners = Listeners::new().on_verack(|peer| println!("{peer}: handshake done"));
//! let config = Arc::new(Config::new(Network::Regtest.params()).with_listeners(listeners));
//! let addr = "127.0.0.1:18444".parse().unwrap();
//! let peer = Peer::new_outbound(config, addr);
//! peer.associate_connection(tokio::net::TcpStream::connect(addr).await?);
//! peer.disconnect();
//! peer.wait_for_disconnect().await;
//! # Ok(())
//! # }
//! ```
//!
//! ## What each connection task does
//! Bytes are read into a per-thread scratch buffer and framed; a connection keeps no read buffer
//! while idle (only a partial frame is copied out), so tens of thousands of idle peers cost little
//! memory. Each frame goes through the peer machine; its outputs are encoded into one write
//! buffer, so everything produced by one input leaves in one write. A peer whose unwritten bytes
//! exceed [`Config::max_send_buffer`] is disconnected: memory per peer is bounded.
//!
//! ## Session cost and priority
//! Each connection charges itself for what it receives (one unit per 5,000 bytes, and ten per
//! point of ban score its misbehaviour earns; see [`peerpool_core::cost`]), decaying with a
//! half-life of a minute. Only received bytes count: what we send a peer is mostly our own
//! choice (relay), and a peer must not be cut off for what we decided to announce. Past the
//! soft limit of [`Config::cost`] a received message waits before it is handled, and the task
//! reads nothing more meanwhile, so a costly peer's backlog stays in its own socket while the
//! other connections' tasks run at full speed; at the hard limit the peer is disconnected
//! ([`DisconnectReason::ExcessiveCost`]). A pool adds to each connection a share of its network
//! group's cost, recomputed every second. The per-message work is a few atomic loads and
//! stores, no lock. [`Peer::set_message_logging`] logs every message of one connection.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod accept;
pub mod bus;
pub mod clock;
mod config;
mod conn;
pub mod discovery;
mod listeners;
mod peer;
pub mod persist;
pub mod pool;
pub mod ratelog;

/// For [`log_limited!`]: the `tracing` its expansion calls.
#[doc(hidden)]
pub use tracing as __tracing;

pub use accept::{accept_loop, dial, dial_from, next_connection, AcceptLimits};
pub use config::{Config, NewestBlock};
pub use listeners::Listeners;
pub use peer::Peer;
pub use peerpool_core::peer::{
    Direction, DisconnectReason, HandshakeState, PeerId, StatsSnapshot, UserAgent,
};
pub use pool::{Pool, PoolHandle};
