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
//! **Work and memory per request.** A batch holds at most [`Config::max_batch`] requests, and
//! an answer line at most [`Config::max_reply`] bytes: once a batch's answers reach it, its
//! remaining requests are not run and are answered with an error, and a single answer past it
//! is replaced by one. A connection has one answer in flight at a time, so a client that never
//! reads holds at most one line of memory, for at most [`Config::write_timeout`].
//!
//! **Other protocols, web pages.** A connection whose first line is not a JSON-RPC request
//! (an HTTP request line from a browser's POST, a header) is closed at that line, so a web
//! page cannot drive the listener through the body of its request.
//!
//! **Authentication.** With [`Config::auth`], the first request must be `auth` with the node
//! RPC's credentials (`{"user": .., "password": ..}` or `[user, password]`); anything else, or
//! wrong credentials (after waiting their turn in the shared [`FailedAuth`] budget), closes the
//! connection. Without it, `auth` is accepted and answered `true`, so clients may always send
//! it. The listener binds loopback addresses by default ([`DEFAULT_PORT`] on `127.0.0.1` and
//! `[::1]`).
//!
//! **Slots.** At most [`Config::max_connections`] connections are served; when all are taken
//! a newcomer takes the place of the connection that has sent nothing for the longest, so idle
//! connections never lock the operator out. A connection that sends no request for
//! [`Config::idle_timeout`] (and is not subscribed to events) is closed.

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
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::debug;

use crate::node::{Credentials, FailedAuth};
use crate::slots::Slots;
use crate::Daemon;

/// The admin listener's default port: not ElectrumX's 8000 (so both run on one host), nor
/// any built-in chain's P2P or RPC port.
pub const DEFAULT_PORT: u16 = 8339;

/// Longest request line, in bytes: the anti-DoS limit of ElectrumX's line framer
/// (aiorpcX `NewlineFramer`: 250 bytes × 4000 requests).
pub const MAX_LINE_LENGTH: usize = 1_000_000;

/// How long one answer or notification may wait for the client to take it before the client
/// is dropped.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// Admin connections served at once; a newcomer past them takes the place of the idlest.
pub const MAX_CONNECTIONS: usize = 64;

/// How long a connection may send no request before it is closed (subscribers excepted).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// Most requests in one batch: peerpool's own bound (ElectrumX's client sends one request a
/// line), far above what an operator's script batches.
pub const MAX_BATCH: usize = 1_000;

/// Longest answer line, in bytes: room for `peers` over a full address book, whose answer
/// runs to about 400 bytes an entry.
pub const MAX_REPLY: usize = 32 << 20;

/// Settings of the admin listener.
#[derive(Clone, Debug)]
pub struct Config {
    /// Longest request line accepted, in bytes.
    pub max_line_length: usize,
    /// How long a write may wait for the client.
    pub write_timeout: Duration,
    /// Connections served at once.
    pub max_connections: usize,
    /// See [`IDLE_TIMEOUT`].
    pub idle_timeout: Duration,
    /// See [`MAX_BATCH`].
    pub max_batch: usize,
    /// See [`MAX_REPLY`].
    pub max_reply: usize,
    /// Credentials the first request (`auth`) must carry; `None`: no authentication.
    pub auth: Option<AdminAuth>,
}

/// What `auth` checks, and what its failures pay.
#[derive(Clone, Debug)]
pub struct AdminAuth {
    /// The node RPC's credentials (cookie, user and password, rpcauth entries).
    pub credentials: Credentials,
    /// The daemon's shared budget of failed attempts.
    pub failed: Arc<FailedAuth>,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            max_line_length: MAX_LINE_LENGTH,
            write_timeout: WRITE_TIMEOUT,
            max_connections: MAX_CONNECTIONS,
            idle_timeout: IDLE_TIMEOUT,
            max_batch: MAX_BATCH,
            max_reply: MAX_REPLY,
            auth: None,
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
        let open = Slots::default();
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
    open: Slots,
) {
    while let Some((stream, from)) = peerpool_net::next_connection(&listener, &stop).await {
        let (slot, evicted) = open.take(config.max_connections, &stop);
        if evicted {
            debug!(%from, "admin listener full: closed the idlest connection for a new one");
        }
        let (ctx, config, open) = (ctx.clone(), config.clone(), open.clone());
        tasks.spawn(async move {
            conn::serve(stream, ctx, config, &slot).await;
            open.release(&slot);
        });
    }
}
