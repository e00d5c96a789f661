//! ElectrumX-style admin RPC: one JSON-RPC 2.0 object per line over TCP.
//!
//! The operator's view of the pool, spoken the way ElectrumX's RPC interface speaks it, so
//! that ElectrumX's own client works unchanged (`electrumx_rpc --port 8339 sessions`):
//!
//! - `getinfo`: a summary (sessions by direction and state, groups, errors, requests in
//!   flight, address book, bans, uptime, pid, version, chain);
//! - `sessions`: one row per connection (a session is one peer connection; its id is the
//!   node id of `getpeerinfo`); `groups`: sessions by netgroup; `peers`: the address book;
//! - `disconnect ID...` and `log ID...` (ids, netgroup names, `all`; `log` also `none`,
//!   and `new` for sessions that connect later), answered per id in ElectrumX's words;
//! - `subscribe`, `peer_count`, `connected_peers`, `connect`: the event stream and the bus's
//!   requests (see [`crate::events`]).
//!
//! Row shapes are documented in [`commands`]. Requests are answered in order, one at a time
//! per connection; connections are served concurrently.
//!
//! **Robustness.** A line longer than [`Config::max_line_length`] is answered with an error
//! and skipped; invalid JSON, non-request values and unknown methods get JSON-RPC errors; a
//! client that stops reading is dropped once a write has waited [`Config::write_timeout`],
//! and an event subscriber that falls behind the bus is dropped with a `lagged` notice. None
//! of this ever waits on, or blocks, the pool.
//!
//! The listener has no authentication: it binds loopback addresses by default
//! ([`DEFAULT_PORT`] on `127.0.0.1` and `[::1]`).

pub mod client;
pub mod commands;
mod conn;
pub mod jsonrpc;
pub mod lines;
pub mod table;

/// The JSON library of the answers, for clients.
pub use serde_json;

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::debug;

use crate::{Daemon, RpcError};

/// The admin listener's default port: not ElectrumX's 8000 (so both run on one host), nor
/// any built-in chain's P2P or RPC port.
pub const DEFAULT_PORT: u16 = 8339;

/// Longest request line, in bytes: the anti-DoS limit of ElectrumX's line framer
/// (aiorpcX `NewlineFramer`: 250 bytes × 4000 requests).
pub const MAX_LINE_LENGTH: usize = 1_000_000;

/// How long one answer or notification may wait for the client to take it before the client
/// is dropped.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// Admin connections served at once; more are told so and closed on arrival.
pub const MAX_CONNECTIONS: usize = 64;

/// Settings of the admin listener.
#[derive(Clone, Debug)]
pub struct Config {
    /// Longest request line accepted, in bytes.
    pub max_line_length: usize,
    /// How long a write may wait for the client.
    pub write_timeout: Duration,
    /// Connections served at once.
    pub max_connections: usize,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            max_line_length: MAX_LINE_LENGTH,
            write_timeout: WRITE_TIMEOUT,
            max_connections: MAX_CONNECTIONS,
        }
    }
}

/// A running admin listener. Dropping it leaves it running until the daemon's shutdown
/// token is cancelled; [`AdminServer::stop`] stops it at once.
#[derive(Debug)]
pub struct AdminServer {
    addrs: Vec<SocketAddr>,
    stop: CancellationToken,
    tasks: TaskTracker,
}

impl AdminServer {
    /// Binds every address of `addrs` (port 0: one from the OS) and serves `daemon` on them.
    pub async fn bind(
        addrs: &[SocketAddr],
        daemon: Daemon,
        config: Config,
    ) -> io::Result<AdminServer> {
        let mut listeners = Vec::new();
        for addr in addrs {
            let l = TcpListener::bind(addr).await.map_err(|e| {
                io::Error::new(e.kind(), format!("binding admin listener on {addr}: {e}"))
            })?;
            listeners.push(l);
        }
        AdminServer::start(listeners, daemon, config)
    }

    /// Serves `daemon` on `listeners`, until [`AdminServer::stop`] or the daemon's shutdown.
    pub fn start(
        listeners: Vec<TcpListener>,
        daemon: Daemon,
        config: Config,
    ) -> io::Result<AdminServer> {
        let stop = daemon.shutdown.child_token();
        let tasks = TaskTracker::new();
        let ctx = commands::Context { daemon };
        let open = Arc::new(AtomicUsize::new(0));
        let mut addrs = Vec::new();
        for listener in listeners {
            addrs.push(listener.local_addr()?);
            tasks.spawn(accept_loop(
                listener,
                ctx.clone(),
                config.clone(),
                stop.clone(),
                tasks.clone(),
                open.clone(),
            ));
        }
        tasks.close();
        Ok(AdminServer { addrs, stop, tasks })
    }

    /// The addresses served.
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    /// Closes the listeners and every connection, and waits for them.
    pub async fn stop(self) {
        self.stop.cancel();
        self.tasks.wait().await;
    }
}

async fn accept_loop(
    listener: TcpListener,
    ctx: commands::Context,
    config: Config,
    stop: CancellationToken,
    tasks: TaskTracker,
    open: Arc<AtomicUsize>,
) {
    while let Some((stream, from)) = peerpool_net::next_connection(&listener, &stop).await {
        if open.fetch_add(1, Ordering::AcqRel) >= config.max_connections {
            open.fetch_sub(1, Ordering::AcqRel);
            debug!(%from, "admin listener full: closing a new connection");
            // Said without waiting: a client that cannot take one line now learns it by the
            // connection's end alone.
            let error = jsonrpc::error_response(
                serde_json::Value::Null,
                &RpcError::internal(format!(
                    "too many admin connections (at most {})",
                    config.max_connections
                )),
            );
            let _ = stream.try_write(format!("{error}\n").as_bytes());
            continue;
        }
        let (ctx, config, stop, open) = (ctx.clone(), config.clone(), stop.clone(), open.clone());
        tasks.spawn(async move {
            conn::serve(stream, ctx, config, stop).await;
            open.fetch_sub(1, Ordering::AcqRel);
        });
    }
}
