//! The RPC listeners of a peerpool daemon, each a thin layer over a running pool's
//! [`PoolHandle`]:
//!
//! - [`node`]: Bitcoin Core-compatible JSON-RPC over HTTP (`getpeerinfo`, `addnode`, ...),
//!   with cookie and `rpcauth` credentials and Prometheus metrics on `GET /metrics`;
//! - [`admin`]: an ElectrumX-style operator interface, one JSON-RPC 2.0 object per line over
//!   TCP (`getinfo`, `sessions`, `groups`, `disconnect`, `log`, `peers`);
//! - [`events`]: the pool's event bus as a stream of JSON-RPC notifications, served on the
//!   admin listener after `subscribe`.
//!
//! Every listener gets a [`Daemon`]: what it needs to know about the process it serves, and
//! answers failures with one [`RpcError`] type and one table of codes ([`error`]).

#![forbid(unsafe_code)]

pub mod admin;
pub mod error;
pub mod events;
pub mod node;
mod slots;

pub use error::RpcError;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::SystemTime;

use peerpool_net::pool::PoolHandle;
use peerpool_wire::ChainParams;
use tokio_util::sync::CancellationToken;

/// The process an RPC listener serves.
#[derive(Clone, Debug)]
pub struct Daemon {
    /// The running pool.
    pub pool: PoolHandle,
    /// The chain it speaks.
    pub chain: ChainParams,
    /// The daemon's data directory (cookie file, logs), if it has one.
    pub data_dir: Option<PathBuf>,
    /// When the daemon started (`uptime`, `getinfo`).
    pub started: SystemTime,
    /// The user agent the pool announces (`getnetworkinfo`'s `subversion`).
    pub user_agent: String,
    /// Addresses the pool accepts peers on.
    pub listening: Vec<SocketAddr>,
    /// Cancelled to stop the whole daemon (`stop`).
    pub shutdown: CancellationToken,
}
