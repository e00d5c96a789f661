//! A bcoin regtest node on loopback: an independent implementation of the Bitcoin P2P protocol
//! to test peerpool against.
//!
//! [`BcoinNode`] runs `tests/interop/bcoin-node.js` under Node.js: a bcoin 1.0.2 node that keeps
//! everything in memory, listens on a loopback address and dials only the peers a test names
//! (no DNS seeds, no address discovery, no UPnP). The script reports what happens as JSON
//! events (one per line on its stdout) and takes JSON commands on its stdin; this module turns
//! both into an async API for `#[tokio::test]`s.
//!
//! ```ignore
//! mod support;
//! use std::time::Duration;
//! use support::bcoin::BcoinNode;
//!
//! #[tokio::test]
//! async fn peerpool_dials_bcoin() {
//!     let mut bcoin = BcoinNode::builder()
//!         .ping_interval(Duration::from_millis(500))
//!         .start()
//!         .await;
//!     // ... have peerpool dial bcoin.addr() ...
//!     let open = bcoin.wait_for("our handshake", |e| e.is("open")).await;
//!     assert_eq!(open.str("agent"), Some("/peerpool:0.1.0/"));
//!     bcoin.wait_for("a pong from us", |e| e.is_received("pong")).await;
//! }
//! ```
//!
//! # Events
//! Every event has `event` (its kind) and `time` (ms since the UNIX epoch). Peer events also
//! carry `peer` (bcoin's id for the connection), `addr` (the remote `ip:port`) and `direction`
//! (`inbound`/`outbound`, from bcoin's side).
//!
//! | kind | when | other fields |
//! |---|---|---|
//! | `ready` | listening; consumed by [`BcoinBuilder::start`] | `port`, `agent`, `version`, `services`, `magic`, `ping_interval_ms` |
//! | `dial` | bcoin starts an outbound connection | |
//! | `connect` | TCP connection up | `local` |
//! | `message` | a frame read or written | `dir` (`in`/`out`), `command`, `nonce` (ping/pong) |
//! | `open` | version handshake done | `version`, `agent`, `services`, `height`, `relay` |
//! | `peer_error` | bcoin's complaint about a peer | `message` |
//! | `close` | connection gone | `reason`, `was_connected`, `handshake` |
//! | `ban` | bcoin banned the peer's IP (for 24 h) | |
//! | `error` | anything else went wrong | `message`, `fatal` |
//! | `reply` | answer to a command | `id`, `ok`, `error` or the answer |
//!
//! # Waiting
//! Events are queued as they arrive. [`BcoinNode::wait_for`] takes out the *first queued event
//! that matches*, waiting for more as needed; events that do not match stay queued for later
//! waits, so the order of waits need not follow the order of events. A wait that times out, or
//! finds the process gone, panics with the recent events in the message.
//!
//! # Facts about bcoin worth knowing
//! - bcoin disconnects a peer that has not finished the handshake within 10 s, and needs a
//!   protocol version of at least 70001.
//! - Dialing out, bcoin requires `NODE_NETWORK` and `NODE_WITNESS` in the peer's `version`.
//! - After the handshake bcoin sends `sendcmpct` and `getaddr`; it pings every 30 s (see
//!   [`BcoinBuilder::ping_interval`]) and sends no new ping while one is unanswered.
//! - bcoin bans a misbehaving peer's IP, 127.0.0.1 included, for 24 h: use one node per test.
//!
//! Node.js (>= 18) and npm must be installed; the npm packages are installed on first use.

use std::collections::VecDeque;
use std::fmt;
use std::fs::{self, OpenOptions};
use std::io::{ErrorKind, Write as _};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

use peerpool_wire::Magic;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::mpsc;
use tokio::time::Instant;

/// How long a wait may take unless the builder says otherwise. Generous, because CI machines
/// have two cores and run several test binaries at once.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(20);

/// How long bcoin may take from spawn to `ready` (loading bcoin's modules dominates).
const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);

/// How long to wait for another test binary's `npm ci` before giving up.
const INSTALL_LOCK_TIMEOUT: Duration = Duration::from_secs(600);

/// An install lock older than this was left by a process that died.
const INSTALL_LOCK_STALE: Duration = Duration::from_secs(900);

/// Oldest Node.js major version the script is tested with.
const MIN_NODE_MAJOR: u32 = 18;

/// How many past events a failure message shows.
const EVENTS_IN_FAILURE: usize = 40;

/// One line of the script's output.
#[derive(Clone, Debug, PartialEq)]
pub struct Event(Value);

impl Event {
    /// The event's kind (`open`, `message`, ...).
    pub fn kind(&self) -> &str {
        self.str("event").unwrap_or("")
    }

    /// Whether this is an event of the given kind.
    pub fn is(&self, kind: &str) -> bool {
        self.kind() == kind
    }

    /// bcoin's id for the connection the event is about.
    pub fn peer(&self) -> Option<u64> {
        self.u64("peer")
    }

    /// The remote address of the connection the event is about, as bcoin sees it. For a
    /// connection a test made to bcoin, this is the test socket's local address.
    pub fn addr(&self) -> Option<SocketAddr> {
        self.str("addr")?.parse().ok()
    }

    /// Whether this event concerns the connection whose remote end is `addr`.
    pub fn is_about(&self, addr: SocketAddr) -> bool {
        self.addr() == Some(addr)
    }

    /// The command of a `message` event.
    pub fn command(&self) -> Option<&str> {
        self.str("command")
    }

    /// Whether bcoin read a frame with this command.
    pub fn is_received(&self, command: &str) -> bool {
        self.is("message") && self.str("dir") == Some("in") && self.command() == Some(command)
    }

    /// Whether bcoin wrote a frame with this command.
    pub fn is_sent(&self, command: &str) -> bool {
        self.is("message") && self.str("dir") == Some("out") && self.command() == Some(command)
    }

    /// The nonce of a `ping` or `pong` message event.
    pub fn nonce(&self) -> Option<u64> {
        parse_nonce(self.str("nonce")?)
    }

    /// A string field.
    pub fn str(&self, key: &str) -> Option<&str> {
        self.0.get(key)?.as_str()
    }

    /// An unsigned integer field.
    pub fn u64(&self, key: &str) -> Option<u64> {
        self.0.get(key)?.as_u64()
    }

    /// A boolean field.
    pub fn bool(&self, key: &str) -> Option<bool> {
        self.0.get(key)?.as_bool()
    }

    /// The whole event.
    pub fn json(&self) -> &Value {
        &self.0
    }
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Which side opened a connection, from bcoin's point of view.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// The peer connected to bcoin.
    Inbound,
    /// bcoin connected to the peer.
    Outbound,
}

/// Where a connection is in bcoin's handshake.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PeerState {
    /// Outbound TCP connect under way.
    Connecting,
    /// Connected; neither `version` nor `verack` received.
    Handshaking,
    /// The peer's `verack` arrived, its `version` not yet.
    GotVerack,
    /// The peer's `version` arrived, its `verack` not yet.
    GotVersion,
    /// Handshake done.
    Open,
    /// Torn down.
    Closed,
}

/// A ping or pong the script saw on the wire.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct Stamped {
    /// When, in ms since the UNIX epoch.
    pub time: u64,
    /// The nonce's payload bytes, hex.
    pub nonce: Option<String>,
}

/// One connection as bcoin reports it (the `peers` command).
#[derive(Clone, Debug, Deserialize)]
pub struct PeerInfo {
    /// bcoin's id for the connection.
    pub peer: u64,
    /// The remote address.
    pub addr: SocketAddr,
    /// Who opened the connection.
    pub direction: Direction,
    /// Handshake progress.
    pub state: PeerState,
    /// The peer's protocol version, once its `version` arrived.
    pub version: Option<u32>,
    /// The peer's user agent, once its `version` arrived.
    pub agent: Option<String>,
    /// The peer's service bits, once its `version` arrived.
    pub services: Option<u64>,
    /// The peer's announced start height.
    pub height: Option<i64>,
    /// bcoin's ban score for the peer (bans at 100).
    pub ban_score: u32,
    /// Nonce (hex) of bcoin's unanswered ping, if any.
    pub ping_outstanding: Option<String>,
    /// When bcoin last sent a ping with a nonce (ms since the epoch).
    pub last_ping: Option<u64>,
    /// When bcoin last got the matching pong (ms since the epoch).
    pub last_pong: Option<u64>,
    /// Fastest ping round trip bcoin measured, in ms.
    pub min_ping_ms: Option<u64>,
    /// Last ping bcoin wrote.
    pub last_ping_sent: Option<Stamped>,
    /// Last ping bcoin read.
    pub last_ping_received: Option<Stamped>,
    /// Last pong bcoin wrote.
    pub last_pong_sent: Option<Stamped>,
    /// Last pong bcoin read.
    pub last_pong_received: Option<Stamped>,
}

/// What the `ready` event told about the node.
#[derive(Clone, Debug)]
struct Ready {
    addr: Option<SocketAddr>,
    agent: String,
    version: u32,
    services: u64,
    magic: Magic,
    pid: u32,
}

/// Options for a [`BcoinNode`]. Start from [`BcoinNode::builder`].
#[derive(Clone, Debug)]
pub struct BcoinBuilder {
    listen: Option<SocketAddr>,
    peers: Vec<SocketAddr>,
    outbound_from: Option<IpAddr>,
    ping_interval: Option<Duration>,
    max_inbound: Option<u32>,
    log_level: String,
    timeout: Duration,
}

impl Default for BcoinBuilder {
    fn default() -> Self {
        BcoinBuilder {
            listen: Some(SocketAddr::new(Ipv4Addr::LOCALHOST.into(), 0)),
            peers: Vec::new(),
            outbound_from: None,
            ping_interval: None,
            max_inbound: None,
            log_level: std::env::var("BCOIN_LOG_LEVEL").unwrap_or_else(|_| "debug".to_owned()),
            timeout: DEFAULT_TIMEOUT,
        }
    }
}

impl BcoinBuilder {
    /// Listen on this loopback address (default `127.0.0.1:0`, a port picked by the OS). A fixed
    /// port should be below 32768, out of the range the OS hands to outgoing sockets.
    pub fn listen_on(mut self, addr: SocketAddr) -> Self {
        assert_loopback(addr.ip());
        self.listen = Some(addr);
        self
    }

    /// Accept no connections at all.
    pub fn no_listen(mut self) -> Self {
        self.listen = None;
        self
    }

    /// Dial this loopback peer once at start (no retries). Repeatable.
    pub fn peer(mut self, addr: SocketAddr) -> Self {
        assert_loopback(addr.ip());
        self.peers.push(addr);
        self
    }

    /// Bind bcoin's outgoing sockets to this loopback address (e.g. `127.0.0.2`), so the node
    /// under test sees bcoin come from an address of its own.
    pub fn outbound_from(mut self, ip: IpAddr) -> Self {
        assert_loopback(ip);
        self.outbound_from = Some(ip);
        self
    }

    /// bcoin's keepalive ping interval (bcoin: 30 s). The first ping goes out one interval after
    /// the handshake.
    pub fn ping_interval(mut self, interval: Duration) -> Self {
        self.ping_interval = Some(interval);
        self
    }

    /// bcoin's inbound connection limit (bcoin: 8).
    pub fn max_inbound(mut self, n: u32) -> Self {
        self.max_inbound = Some(n);
        self
    }

    /// bcoin's log level on stderr: `none`, `error`, `warning`, `info`, `debug` (the default,
    /// or `$BCOIN_LOG_LEVEL`) or `spam`. The lines appear in a failing test's output.
    pub fn log_level(mut self, level: &str) -> Self {
        self.log_level = level.to_owned();
        self
    }

    /// Timeout of [`BcoinNode::wait_for`] and of commands (default [`DEFAULT_TIMEOUT`]).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Installs the npm packages if needed, spawns the node and waits until it listens.
    pub async fn start(self) -> BcoinNode {
        let dir = tokio::task::spawn_blocking(ensure_installed)
            .await
            .expect("npm install task panicked")
            .unwrap_or_else(|e| panic!("{e}"));

        let mut cmd = Command::new("node");
        cmd.arg(dir.join("bcoin-node.js"))
            .current_dir(&dir)
            // bcoin's native backends are not built (--ignore-scripts).
            .env("NODE_BACKEND", "js")
            .args(["--log-level", &self.log_level]);
        // Everything comes from the arguments, nothing from a stray environment.
        for var in [
            "BCOIN_HOST",
            "BCOIN_PORT",
            "BCOIN_PEERS",
            "BCOIN_PING_INTERVAL_MS",
            "BCOIN_OUTBOUND_FROM",
            "BCOIN_LOG_LEVEL",
        ] {
            cmd.env_remove(var);
        }
        match self.listen {
            Some(addr) => {
                cmd.args(["--host", &addr.ip().to_string()]);
                cmd.args(["--port", &addr.port().to_string()]);
            }
            None => {
                cmd.arg("--no-listen");
            }
        }
        for peer in &self.peers {
            cmd.args(["--peer", &peer.to_string()]);
        }
        if let Some(ip) = self.outbound_from {
            cmd.args(["--outbound-from", &ip.to_string()]);
        }
        if let Some(interval) = self.ping_interval {
            let ms = interval.as_millis().max(1);
            cmd.args(["--ping-interval-ms", &ms.to_string()]);
        }
        if let Some(n) = self.max_inbound {
            cmd.args(["--max-inbound", &n.to_string()]);
        }
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);

        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawning `node {}`: {e}", dir.display()));
        let pid = child.id().unwrap_or(0);
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().expect("child stdout is piped");
        let stderr = child.stderr.take().expect("child stderr is piped");

        let (tx, events) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let value = serde_json::from_str(&line)
                    .unwrap_or_else(|_| json!({ "event": "unparsed", "line": line }));
                if tx.send(Event(value)).is_err() {
                    break;
                }
            }
        });
        tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                // Captured by the test harness: shown only when the test fails.
                eprintln!("bcoin[{pid}] {line}");
            }
        });

        let mut node = BcoinNode {
            child,
            stdin,
            events,
            pending: VecDeque::new(),
            history: Vec::new(),
            ready: None,
            next_id: 1,
            timeout: self.timeout,
        };
        let ready = node
            .wait_for_within("the node to start listening", STARTUP_TIMEOUT, |e| {
                e.is("ready") || (e.is("error") && e.bool("fatal") == Some(true))
            })
            .await;
        if ready.is("error") {
            node.fail(&format!(
                "bcoin failed to start: {}",
                ready.str("message").unwrap_or("")
            ));
        }
        node.ready = Some(parse_ready(&ready));
        node
    }
}

/// A running bcoin node. Killed when dropped.
pub struct BcoinNode {
    child: Child,
    stdin: Option<ChildStdin>,
    events: mpsc::UnboundedReceiver<Event>,
    /// Received and not yet taken by a wait.
    pending: VecDeque<Event>,
    /// Everything received, for failure messages.
    history: Vec<Event>,
    ready: Option<Ready>,
    next_id: u64,
    timeout: Duration,
}

impl BcoinNode {
    /// Options for a node; `.start().await` runs it.
    pub fn builder() -> BcoinBuilder {
        BcoinBuilder::default()
    }

    /// A node with default options: listening on `127.0.0.1` (port from the OS), no peers.
    pub async fn start() -> BcoinNode {
        BcoinBuilder::default().start().await
    }

    fn ready(&self) -> &Ready {
        self.ready.as_ref().expect("node is ready")
    }

    /// The P2P address bcoin listens on. Panics for a node built with
    /// [`BcoinBuilder::no_listen`].
    pub fn addr(&self) -> SocketAddr {
        self.ready().addr.expect("this bcoin node does not listen")
    }

    /// bcoin's user agent, `/bcoin:v1.0.2/`.
    pub fn user_agent(&self) -> &str {
        &self.ready().agent
    }

    /// The protocol version bcoin announces (70015).
    pub fn protocol_version(&self) -> u32 {
        self.ready().version
    }

    /// The service bits bcoin announces (`NODE_NETWORK | NODE_WITNESS`).
    pub fn services(&self) -> u64 {
        self.ready().services
    }

    /// The network magic bcoin uses (regtest's).
    pub fn magic(&self) -> Magic {
        self.ready().magic
    }

    /// The Node.js process id.
    pub fn pid(&self) -> u32 {
        self.ready().pid
    }

    /// Every event received so far, in order, including those taken by waits.
    pub fn history(&self) -> &[Event] {
        &self.history
    }

    /// Sends a raw command (`{"cmd": ...}`) and returns its `reply` event's JSON, or the error
    /// bcoin gave. An `id` is added to match the reply.
    pub async fn command(&mut self, mut cmd: Value) -> Result<Value, String> {
        let id = self.next_id;
        self.next_id += 1;
        cmd["id"] = id.into();
        let mut line = cmd.to_string();
        line.push('\n');
        let written = match self.stdin.as_mut() {
            Some(stdin) => match stdin.write_all(line.as_bytes()).await {
                Ok(()) => stdin.flush().await,
                Err(e) => Err(e),
            },
            None => Err(ErrorKind::BrokenPipe.into()),
        };
        if let Err(e) = written {
            self.fail(&format!("writing command {cmd} to bcoin: {e}"));
        }
        let what = format!("the reply to {cmd}");
        let reply = self
            .wait_for(&what, |e| e.is("reply") && e.u64("id") == Some(id))
            .await;
        if reply.bool("ok") == Some(true) {
            Ok(reply.0)
        } else {
            Err(reply.str("error").unwrap_or("no reason given").to_owned())
        }
    }

    async fn command_ok(&mut self, cmd: Value) -> Value {
        let shown = cmd.to_string();
        match self.command(cmd).await {
            Ok(reply) => reply,
            Err(e) => self.fail(&format!("bcoin refused {shown}: {e}")),
        }
    }

    /// Has bcoin dial `addr` once (it must be loopback); returns bcoin's id for the connection.
    /// The outcome arrives as `connect`/`open` or `close` events.
    pub async fn connect(&mut self, addr: SocketAddr) -> u64 {
        assert_loopback(addr.ip());
        let reply = self
            .command_ok(json!({ "cmd": "connect", "addr": addr.to_string() }))
            .await;
        reply["peer"]
            .as_u64()
            .expect("connect reply carries the peer id")
    }

    /// Drops one connection by bcoin's id. Its `close` event has reason `disconnect command`.
    pub async fn disconnect(&mut self, peer: u64) {
        self.command_ok(json!({ "cmd": "disconnect", "peer": peer }))
            .await;
    }

    /// Drops every connection; returns how many there were.
    pub async fn disconnect_all(&mut self) -> usize {
        let reply = self.command_ok(json!({ "cmd": "disconnect_all" })).await;
        reply["count"].as_u64().unwrap_or(0) as usize
    }

    /// bcoin's current connections.
    pub async fn peers(&mut self) -> Vec<PeerInfo> {
        let reply = self.command_ok(json!({ "cmd": "peers" })).await;
        serde_json::from_value(reply["peers"].clone())
            .unwrap_or_else(|e| panic!("bad peers reply {}: {e}", reply["peers"]))
    }

    /// Has bcoin ping every connection that finished the handshake and has no ping outstanding
    /// now, without waiting for the interval; returns the nonces sent, by peer id.
    pub async fn ping_all(&mut self) -> Vec<(u64, u64)> {
        let reply = self.command_ok(json!({ "cmd": "ping" })).await;
        let sent = reply["sent"].as_array().cloned().unwrap_or_default();
        sent.iter()
            .filter_map(|s| Some((s["peer"].as_u64()?, parse_nonce(s["nonce"].as_str()?)?)))
            .collect()
    }

    /// Takes the first event matching `pred`, waiting up to the node's timeout for it; panics
    /// with the recent events if none comes. `what` names the awaited event in that message.
    pub async fn wait_for(&mut self, what: &str, pred: impl FnMut(&Event) -> bool) -> Event {
        self.wait_for_within(what, self.timeout, pred).await
    }

    /// [`BcoinNode::wait_for`] with its own timeout.
    pub async fn wait_for_within(
        &mut self,
        what: &str,
        timeout: Duration,
        pred: impl FnMut(&Event) -> bool,
    ) -> Event {
        match self.try_wait_for(timeout, pred).await {
            Some(event) => event,
            None => self.fail(&format!("no event for {what} within {timeout:?}")),
        }
    }

    /// Takes the first event matching `pred`, waiting up to `timeout`; `None` if none came or
    /// the process is gone.
    pub async fn try_wait_for(
        &mut self,
        timeout: Duration,
        mut pred: impl FnMut(&Event) -> bool,
    ) -> Option<Event> {
        if let Some(i) = self.pending.iter().position(&mut pred) {
            return self.pending.remove(i);
        }
        let deadline = Instant::now() + timeout;
        loop {
            match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Err(_elapsed) => return None,
                Ok(None) => return None,
                Ok(Some(event)) => {
                    self.history.push(event.clone());
                    if pred(&event) {
                        return Some(event);
                    }
                    self.pending.push_back(event);
                }
            }
        }
    }

    /// Stops bcoin cleanly (it closes every connection first) and returns its exit status.
    pub async fn stop(mut self) -> ExitStatus {
        // Closing stdin is the stop signal; EOF works even if the script is busy.
        drop(self.stdin.take());
        match tokio::time::timeout(self.timeout, self.child.wait()).await {
            Ok(Ok(status)) => status,
            Ok(Err(e)) => panic!("waiting for bcoin to exit: {e}"),
            Err(_) => self.fail("bcoin did not exit after its stdin closed"),
        }
    }

    /// Panics with `msg`, the process status and the recent events.
    fn fail(&mut self, msg: &str) -> ! {
        let status = match self.child.try_wait() {
            Ok(Some(status)) => format!("exited with {status}"),
            Ok(None) => "still running".to_owned(),
            Err(e) => format!("status unknown: {e}"),
        };
        let skip = self.history.len().saturating_sub(EVENTS_IN_FAILURE);
        let mut recent = String::new();
        for event in &self.history[skip..] {
            recent.push_str("\n  ");
            recent.push_str(&event.to_string());
        }
        panic!(
            "{msg}\nbcoin (pid {}) {status}; last {} of {} events (bcoin's log is above):{recent}",
            self.child.id().unwrap_or(0),
            self.history.len() - skip,
            self.history.len(),
        );
    }
}

impl Drop for BcoinNode {
    fn drop(&mut self) {
        // Nothing to save: the node keeps everything in memory.
        let _ = self.child.start_kill();
    }
}

fn parse_ready(event: &Event) -> Ready {
    let port = event.u64("port");
    let host = event.str("host");
    let addr = match (host, port) {
        (Some(host), Some(port)) => Some(SocketAddr::new(
            host.parse().expect("ready carries an IP"),
            u16::try_from(port).expect("port fits u16"),
        )),
        _ => None,
    };
    let magic_hex = event.str("magic").expect("ready carries the magic");
    let mut magic = [0u8; 4];
    for (i, byte) in magic.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&magic_hex[2 * i..2 * i + 2], 16).expect("magic is hex");
    }
    Ready {
        addr,
        agent: event.str("agent").unwrap_or_default().to_owned(),
        version: event.u64("version").unwrap_or(0) as u32,
        services: event.u64("services").unwrap_or(0),
        magic: Magic::from_bytes(magic),
        pid: event.u64("pid").unwrap_or(0) as u32,
    }
}

/// A ping/pong nonce as the script prints it: the 8 payload bytes in hex, little-endian as on
/// the wire.
fn parse_nonce(hex: &str) -> Option<u64> {
    let mut bytes = [0u8; 8];
    for (i, byte) in bytes.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(u64::from_le_bytes(bytes))
}

fn assert_loopback(ip: IpAddr) {
    assert!(
        ip.is_loopback(),
        "{ip} is not a loopback address: the bcoin harness only talks to 127.0.0.0/8 and ::1"
    );
}

// ---------------------------------------------------------------------------------------------
// npm packages

/// `tests/interop`, where the script and its npm packages live.
pub fn interop_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("interop")
}

/// Makes sure `tests/interop/node_modules` matches `package-lock.json`, running
/// `npm ci --ignore-scripts` if it does not; returns the interop directory.
///
/// Runs once per test binary; test binaries running at once take turns through a lock file in
/// Cargo's target tmp directory.
pub fn ensure_installed() -> Result<PathBuf, String> {
    static INSTALLED: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    INSTALLED.get_or_init(install).clone()
}

fn install() -> Result<PathBuf, String> {
    let dir = interop_dir();
    check_node()?;
    let lock = dir.join("package-lock.json");
    let wanted = fs::read(&lock).map_err(|e| format!("reading {}: {e}", lock.display()))?;
    // A copy of the lock file that `npm ci` last installed from.
    let marker = dir.join("node_modules").join(".peerpool-installed-from");
    let up_to_date = || fs::read(&marker).is_ok_and(|have| have == wanted);
    if up_to_date() {
        return Ok(dir);
    }

    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let _lock = FileLock::acquire(&tmp.join("bcoin-npm-install.lock"))?;
    if up_to_date() {
        return Ok(dir); // another test binary did it while we waited
    }
    let output = std::process::Command::new("npm")
        .args(["ci", "--ignore-scripts", "--no-audit", "--no-fund"])
        .current_dir(&dir)
        .output()
        .map_err(|e| tool_missing("npm", e))?;
    if !output.status.success() {
        return Err(format!(
            "`npm ci --ignore-scripts` in {} failed ({}):\n{}{}",
            dir.display(),
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr),
        ));
    }
    fs::write(&marker, &wanted).map_err(|e| format!("writing {}: {e}", marker.display()))?;
    Ok(dir)
}

fn check_node() -> Result<(), String> {
    let output = std::process::Command::new("node")
        .arg("--version")
        .output()
        .map_err(|e| tool_missing("node", e))?;
    let text = String::from_utf8_lossy(&output.stdout);
    let major = text
        .trim()
        .trim_start_matches('v')
        .split('.')
        .next()
        .and_then(|m| m.parse::<u32>().ok());
    match major {
        Some(major) if major >= MIN_NODE_MAJOR => Ok(()),
        _ => Err(format!(
            "the bcoin interop tests need Node.js >= {MIN_NODE_MAJOR}; `node --version` says {:?}",
            text.trim()
        )),
    }
}

fn tool_missing(tool: &str, e: std::io::Error) -> String {
    if e.kind() == ErrorKind::NotFound {
        format!(
            "`{tool}` was not found: the bcoin interop tests need Node.js >= {MIN_NODE_MAJOR} \
             and npm on PATH (Debian: apt-get install nodejs npm)"
        )
    } else {
        format!("running `{tool}`: {e}")
    }
}

/// A lock shared between processes: a file created with `create_new`, removed on drop.
struct FileLock(PathBuf);

impl FileLock {
    fn acquire(path: &Path) -> Result<FileLock, String> {
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent)
                .map_err(|e| format!("creating {}: {e}", parent.display()))?;
        }
        let deadline = std::time::Instant::now() + INSTALL_LOCK_TIMEOUT;
        loop {
            match OpenOptions::new().write(true).create_new(true).open(path) {
                Ok(mut file) => {
                    let _ = writeln!(file, "{}", std::process::id());
                    return Ok(FileLock(path.to_owned()));
                }
                Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                    let stale = fs::metadata(path)
                        .and_then(|m| m.modified())
                        .ok()
                        .and_then(|t| SystemTime::now().duration_since(t).ok())
                        .is_some_and(|age| age > INSTALL_LOCK_STALE);
                    if stale {
                        let _ = fs::remove_file(path);
                        continue;
                    }
                    if std::time::Instant::now() > deadline {
                        return Err(format!(
                            "waited {INSTALL_LOCK_TIMEOUT:?} for {} (another test binary \
                             installing bcoin); remove it if no test is running",
                            path.display()
                        ));
                    }
                    std::thread::sleep(Duration::from_millis(200));
                }
                Err(e) => return Err(format!("creating {}: {e}", path.display())),
            }
        }
    }
}

impl Drop for FileLock {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
    }
}
