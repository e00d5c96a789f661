//! The pool runtime: one driver task that owns a [`PoolMachine`] and does what it says.
//!
//! The policy of a node with many connections (how many outbound peers to keep, which address
//! to dial next, whom to accept, evict or ban, which addresses to relay) lives in
//! [`peerpool_core::pool`] as a sans-IO machine. This module is the thin tokio layer around it:
//!
//! - **one driver task** owns the machine (by `&mut`, no lock) and `select!`s over peer
//!   notifications, finished dials, inbound connections, commands from [`PoolHandle`]s, the
//!   machine's next deadline, the save timer and shutdown;
//! - **peers** are ordinary [`Peer`](crate::Peer)s owned by the pool: whatever their machines
//!   report reaches the driver on a channel of the pool's own (see "Reports and
//!   back-pressure" below), apart from the user's [`Listeners`](crate::Listeners), which
//!   stay the user's alone; the driver hands
//!   each report to the machine as it is, and the machine's commands for a peer to that peer
//!   (the seam itself is [`peerpool_core::pool::link`]);
//! - **dials** each run in a task of their own, directly (bound to
//!   [`Config::outbound_bind`] if set) or through the SOCKS5 proxy of [`Config::proxy`]
//!   (`.onion` addresses only that way), and report back the connected socket; the driver
//!   makes the peer, so the machine always knows a connection before the connection can
//!   report anything;
//! - **inbound** connections come from one accept task per listener; the driver asks the
//!   machine ([`PoolMachine::handle_inbound`]) and closes the refused ones at once;
//! - **events** go out on an [`EventBus`]: peers joining and leaving, bans, evictions, and
//!   the messages of every kind that has a subscriber at the moment it arrives (published by
//!   the peers' own tasks; other kinds are not even decoded for the bus);
//! - **requests** from [`PoolHandle`]s are commands that change the pool, or queries: closures
//!   run on a read-only [`PoolView`];
//! - **persistence**: the address book (`peers.dat`) and ban list (`banlist.dat`) are loaded
//!   from [`Config::data_dir`] at start, saved every [`Config::save_interval`] (Bitcoin Core:
//!   15 minutes) and at shutdown, atomically and with a checksum ([`crate::persist`]); the ban
//!   list also whenever it changes (at most once a second), as Bitcoin Core writes it, so a
//!   ban survives a crash right after it is made. A damaged file is reported, set aside and
//!   replaced by empty state: it never stops a start.
//!
//! ## The drain contract
//! After every input the driver drains [`PoolMachine::poll_output`] until it returns `None`,
//! carrying out each output in order, and only then waits again, at most until
//! [`PoolMachine::poll_timeout`]; when that deadline passes it calls
//! [`PoolMachine::handle_timeout`]. Nothing else ever touches the machine.
//!
//! ## Reports and back-pressure
//! A peer's reports are never dropped. Each peer may have [`Config::report_capacity`] of them
//! waiting for the driver; beyond that its connection pauses (reads nothing, sends nothing
//! new) until the driver catches up, so a flood from one peer slows that peer, costs bounded
//! memory, and still has every misbehaviour judged. The end of a connection is reported
//! outside that budget, once. The bus never waits for a subscriber: a slow one is told it
//! lagged.
//!
//! ## Example
//! ```no_run
//! # async fn example() -> std::io::Result<()> {
//! use peerpool_net::pool::{self, Pool};
//! use tokio_util::sync::CancellationToken;
//!
//! let chain = peerpool_wire::Network::Regtest.params();
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let pool = Pool::start(
//!     pool::Config::default().allow_local_addresses(),
//!     peerpool_net::Config::new(chain),
//!     vec![listener],
//!     CancellationToken::new(),
//! )
//! .await;
//! let mut events = pool.bus().subscribe();
//! pool.handle().connect("127.0.0.1:18444".parse().unwrap()).await.ok();
//! if let Ok(Some(event)) = events.recv().await {
//!     println!("{event:?}");
//! }
//! pool.stop().await;
//! # Ok(())
//! # }
//! ```

mod driver;
mod handle;
mod io;
pub(crate) mod link;
mod store;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use peerpool_core::addr::{NetAddr, Network};
use peerpool_core::asmap::{Asmap, NetGroups};
use peerpool_core::pool::machine;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use driver::{ConnectionCounts, PoolView};
pub use handle::{
    AddTried, AddrManInfo, KnownAddress, NetTotals, PeerDetails, PoolError, PoolHandle, SessionInfo,
};
pub use link::DEFAULT_REPORT_CAPACITY;
pub use peerpool_core::pool::banman::{BanEntry, BanReason, Subnet};
pub use peerpool_core::pool::connman::{ConnError, ConnKind, ManualPeer};
pub use peerpool_core::pool::machine::{Permission, Useful, WhitelistEntry};
pub use peerpool_core::pool::PoolMachine;
pub use store::{BANS_FILE, PEERS_FILE};

use crate::bus::{EventBus, PeerInfo};
use crate::discovery::SeedResolver;

/// Time allowed for a TCP connection (or the whole SOCKS5 exchange) to be made.
/// Bitcoin Core: `DEFAULT_CONNECT_TIMEOUT` (5 s).
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Interval between saves of the address book and ban list.
/// Bitcoin Core: `DUMP_PEERS_INTERVAL` (15 minutes).
pub const DEFAULT_SAVE_INTERVAL: Duration = Duration::from_secs(15 * 60);

/// Longest save interval honoured (30 days); a longer one is taken as this. The daemon
/// refuses longer ones at parse time.
pub const MAX_SAVE_INTERVAL: Duration = Duration::from_secs(30 * 24 * 3600);

/// Requests from handles that may wait for the driver; senders wait beyond that.
const REQUEST_CAPACITY: usize = 256;

/// Inbound connections accepted but not yet judged by the driver; accept tasks wait beyond
/// that, leaving further connections in the kernel's backlog.
const INBOUND_CAPACITY: usize = 64;

/// How long shutdown waits for peers to close before saving anyway.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Settings of the pool runtime. [`Default`] follows Bitcoin Core where it has a value.
#[derive(Clone, Debug)]
pub struct Config {
    /// The policy: connection slots, address book, ban scores, whitelist, our advertised
    /// addresses, reachable networks (see [`machine::Config`]).
    pub machine: machine::Config,
    /// Peers kept connected from the start (`-addnode`).
    pub add_nodes: Vec<NetAddr>,
    /// Addresses put in the address book at start when it is empty, to be dialed like any
    /// other (a node's first contacts when it has no DNS seed: Core's fixed seeds).
    pub seeds: Vec<NetAddr>,
    /// Query the chain's DNS seeds at start when the address book is empty (Core: `-dnsseed`,
    /// default on). Never in connect-only mode.
    pub dns_seed: bool,
    /// Resolves the DNS seeds; `None` uses the system's resolver, or the proxy (Tor's
    /// `RESOLVE`) when [`Config::proxy`] is set.
    pub seed_resolver: Option<SeedResolver>,
    /// SOCKS5 proxy for every outbound connection (Core: `-proxy`). `.onion` addresses are
    /// reachable only through it.
    pub proxy: Option<SocketAddr>,
    /// Fresh random proxy credentials per connection, for Tor stream isolation (Core:
    /// `-proxyrandomize`, default on).
    pub proxy_randomize: bool,
    /// Local address direct outbound connections leave from; `None` lets the OS choose,
    /// unless the pool listens on exactly one specific IP, which is then used so that peers
    /// see the address we advertise (a loopback address only towards loopback targets, the
    /// only ones it can reach). On a loopback test network this also keeps each node in a
    /// network group of its own on the receiving side.
    pub outbound_bind: Option<IpAddr>,
    /// Advertise the addresses of the listeners handed to [`Pool::start`] that are bound to
    /// a specific IP (not `0.0.0.0` or `::`), routable or allowed by
    /// [`addrman`](peerpool_core::pool::addrman::Config::allow_local) (Core's AdvertiseLocal
    /// for `-bind`). Default on.
    pub advertise_listeners: bool,
    /// See [`DEFAULT_CONNECT_TIMEOUT`].
    pub connect_timeout: Duration,
    /// Directory of `peers.dat` and `banlist.dat`; `None` keeps nothing across restarts.
    pub data_dir: Option<PathBuf>,
    /// See [`DEFAULT_SAVE_INTERVAL`]; at most [`MAX_SAVE_INTERVAL`].
    pub save_interval: Duration,
    /// Extra cap on inbound connections, below what the machine's slots allow; reaching it
    /// works as full slots do (a newcomer evicts an unprotected peer, or is refused). Sets
    /// the machine's `connman.inbound_cap`.
    pub max_inbound: Option<usize>,
    /// Reports one peer may have waiting for the driver before its connection pauses; see
    /// [`DEFAULT_REPORT_CAPACITY`] and the module docs.
    pub report_capacity: u32,
    /// Events each bus channel holds before a slow subscriber lags.
    pub bus_capacity: usize,
    /// An asmap (Core's `-asmap`): peers are grouped by autonomous system where it maps them,
    /// for address-book buckets, outbound diversity, the per-group inbound limit and eviction,
    /// and `mapped_as` is known. On a network of local addresses
    /// ([`Config::allow_local_addresses`]) it maps those too.
    pub asmap: Option<Arc<Asmap>>,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            machine: machine::Config::default(),
            add_nodes: Vec::new(),
            seeds: Vec::new(),
            dns_seed: true,
            seed_resolver: None,
            proxy: None,
            proxy_randomize: true,
            outbound_bind: None,
            advertise_listeners: true,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            data_dir: None,
            save_interval: DEFAULT_SAVE_INTERVAL,
            max_inbound: None,
            report_capacity: DEFAULT_REPORT_CAPACITY,
            bus_capacity: crate::bus::DEFAULT_CAPACITY,
            asmap: None,
        }
    }
}

impl Config {
    /// For test networks on loopback or private addresses: the address book keeps unroutable
    /// addresses (`allow_local`) and misbehaving local peers are banned like any other
    /// (`ban_local`). Never for a node on a public network, where a local address in gossip is
    /// a mistake and every Tor peer arrives from 127.0.0.1.
    pub fn allow_local_addresses(mut self) -> Config {
        self.machine.addrman.allow_local = true;
        self.machine.banman.ban_local = true;
        self
    }
}

/// A running pool; see the module docs. Dropping it does not stop it: call [`Pool::stop`]
/// (or cancel the token given to [`Pool::start`]).
#[derive(Debug)]
pub struct Pool {
    handle: PoolHandle,
    listening: Vec<SocketAddr>,
    shutdown: CancellationToken,
    driver: JoinHandle<()>,
}

impl Pool {
    /// Starts a pool: loads its saved state, starts accepting on `listeners` and runs the
    /// driver until `shutdown` is cancelled (or [`Pool::stop`]).
    ///
    /// `peer` is the configuration of every peer: chain, user agent, timers and any listeners
    /// of the caller (called for the pool's peers as for any peer; the pool hears from its
    /// peers through a channel of its own). The peers run with the settings the pool machine
    /// needs ([`PoolMachine::adapt_peer_config`]: the pool judges misbehaviour, so the peers'
    /// own ban threshold is off).
    pub async fn start(
        mut config: Config,
        peer: crate::Config,
        listeners: Vec<TcpListener>,
        shutdown: CancellationToken,
    ) -> Pool {
        let shutdown = shutdown.child_token();
        let listening: Vec<SocketAddr> = listeners
            .iter()
            .filter_map(|l| l.local_addr().ok())
            .collect();
        complete_config(&mut config, &listening);
        let bus = EventBus::new(config.bus_capacity);
        let (requests_tx, requests_rx) = mpsc::channel(REQUEST_CAPACITY);
        let (inbound_tx, inbound_rx) = mpsc::channel(INBOUND_CAPACITY);
        let tracker = TaskTracker::new();
        for listener in listeners {
            tracker.spawn(io::accept(listener, inbound_tx.clone(), shutdown.clone()));
        }
        drop(inbound_tx);
        let handle = PoolHandle::new(requests_tx, bus.clone());
        let driver = driver::Driver::new(
            config,
            peer,
            bus,
            driver::Inputs {
                requests: requests_rx,
                inbound: inbound_rx,
            },
            tracker,
            shutdown.clone(),
        )
        .await;
        let driver = tokio::spawn(driver.run());
        Pool {
            handle,
            listening,
            shutdown,
            driver,
        }
    }

    /// A handle for commands and requests; clone it freely.
    pub fn handle(&self) -> PoolHandle {
        self.handle.clone()
    }

    /// The pool's event bus.
    pub fn bus(&self) -> &EventBus {
        self.handle.bus()
    }

    /// Where the pool accepts connections.
    pub fn listening(&self) -> &[SocketAddr] {
        &self.listening
    }

    /// Stops the pool: no more accepting or dialing, every peer disconnected, the address book
    /// and bans saved. Returns once all of that is done.
    pub async fn stop(self) {
        self.shutdown.cancel();
        self.wait().await;
    }

    /// Waits until the pool has stopped (its token was cancelled and shutdown completed).
    pub async fn wait(self) {
        if let Err(e) = self.driver.await {
            tracing::error!("pool driver task failed: {e}");
        }
    }
}

/// Fills in what follows from other settings: the onion network when a proxy is set, the
/// advertised listening addresses, the local address of outbound connections.
fn complete_config(config: &mut Config, listening: &[SocketAddr]) {
    if let Some(map) = &config.asmap {
        let local = config.machine.addrman.allow_local;
        config
            .machine
            .set_groups(NetGroups::with_asmap(Arc::clone(map), local));
    }
    if config.proxy.is_some() && config.machine.reachable.is_empty() {
        config.machine.reachable = vec![Network::Ipv4, Network::Ipv6, Network::Onion];
    }
    let specific: Vec<SocketAddr> = listening
        .iter()
        .copied()
        .filter(|a| !a.ip().is_unspecified())
        .collect();
    if config.advertise_listeners {
        let allow_local = config.machine.addrman.allow_local;
        for a in &specific {
            let addr = NetAddr::from_socket(*a);
            if (addr.is_routable() || allow_local) && !config.machine.advertise.contains(&addr) {
                config.machine.advertise.push(addr);
            }
        }
    }
    if config.outbound_bind.is_none() && config.proxy.is_none() {
        if let Some(first) = specific.first() {
            if specific.iter().all(|a| a.ip() == first.ip()) {
                config.outbound_bind = Some(first.ip());
            }
        }
    }
    let manual = config.add_nodes.len();
    if manual > config.machine.connman.max_manual {
        config.machine.connman.max_manual = manual;
    }
}

/// A joined peer as the bus describes it, from its statistics.
fn peer_info(stats: &crate::StatsSnapshot) -> PeerInfo {
    PeerInfo {
        id: stats.id,
        addr: stats.addr,
        direction: stats.direction,
        user_agent: stats.user_agent.clone(),
        version: stats.version,
        services: stats.services,
    }
}
