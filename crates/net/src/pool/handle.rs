//! [`PoolHandle`]: commands and requests to a running pool.

use std::io;
use std::time::Duration;

use bitcoin::p2p::message::NetworkMessage;
use bitcoin::p2p::ServiceFlags;
use peerpool_core::addr::{NetAddr, Network};
use peerpool_core::pool::addrman::{AddrInfo, TableCounts};
use peerpool_core::pool::banman::{BanEntry, Subnet};
use peerpool_core::pool::connman::{ConnError, ConnKind, ManualPeer};
use peerpool_core::pool::machine::{Permission, Useful};
use peerpool_core::Time;
use peerpool_wire::MessageKind;
use tokio::sync::{mpsc, oneshot};

use super::driver::PoolView;
use crate::bus::{EventBus, MessageSubscription, PeerInfo, Subscription};
use crate::{Direction, PeerId, StatsSnapshot};

/// Why a command or request failed.
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    /// The pool has stopped.
    #[error("the pool has stopped")]
    Stopped,
    /// The connection manager refused the command.
    #[error(transparent)]
    Conn(#[from] ConnError),
    /// Saving the address book or ban list failed.
    #[error("saving pool state: {0}")]
    Save(#[source] io::Error),
}

/// A connected peer in detail (for `getpeerinfo`).
#[derive(Clone, Debug)]
pub struct PeerDetails {
    /// The peer's id.
    pub id: PeerId,
    /// Its address as the pool knows it (an `.onion` name for peers reached by name).
    pub addr: NetAddr,
    /// Inbound or outbound.
    pub direction: Direction,
    /// What the connection is for.
    pub kind: ConnKind,
    /// Whitelist permissions it holds.
    pub permissions: Vec<Permission>,
    /// Whether it completed the handshake.
    pub joined: bool,
    /// Its statistics, if the connection got as far as starting.
    pub stats: Option<StatsSnapshot>,
    /// Addresses from it taken past the rate limit (Bitcoin Core's `addr_processed`).
    pub addr_processed: u32,
    /// Addresses from it dropped by the rate limit (`addr_rate_limited`).
    pub addr_rate_limited: u32,
    /// The autonomous system its address maps to, when an asmap is loaded (Bitcoin Core's
    /// `mapped_as`).
    pub mapped_as: Option<u32>,
}

/// The address book in numbers (for `getaddrmaninfo`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AddrManInfo {
    /// Per network, entries in the new and tried tables (every network, in order).
    pub networks: Vec<(Network, TableCounts)>,
    /// All networks together.
    pub total: TableCounts,
}

/// Traffic over every connection since the pool started, closed ones included (for
/// `getnettotals`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NetTotals {
    /// Bytes sent, message headers included.
    pub bytes_sent: u64,
    /// Bytes received, message headers included.
    pub bytes_recv: u64,
}

/// A connection as the admin interface shows it (`sessions`).
#[derive(Clone, Debug)]
pub struct SessionInfo {
    /// Id, address, direction, kind, permissions, handshake and statistics (user agent,
    /// messages and bytes each way, connection time).
    pub details: PeerDetails,
    /// The peer's network group as operators read it (IPv4 /16, IPv6 /32, ...; see
    /// [`peerpool_core::cost::group_label`]).
    pub netgroup: String,
    /// The session's own cost, decayed to now (see [`peerpool_core::cost`]).
    pub cost: f64,
    /// The part of its group's cost charged to it.
    pub group_cost: f64,
    /// Its priority from its cost: 1 is the best a peer gets.
    pub priority: u32,
    /// Every message in and out is being logged.
    pub logged: bool,
    /// A disconnect was asked and the socket is not closed yet.
    pub closing: bool,
    /// Misbehaviour reports against this session.
    pub errors: u32,
}

/// What [`PoolHandle::add_tried_address`] did, in the terms of Bitcoin Core's
/// `addpeeraddress`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AddTried {
    /// The book did not take it as a new address (already known, or unusable):
    /// `failed-adding-to-new`.
    NotAdded,
    /// Added, but its tried slot is taken by another address, which a feeler tests first:
    /// `failed-adding-to-tried`.
    NotTried,
    /// Added and now in the tried table.
    Tried,
}

/// An address-book entry as the admin interface shows it (`peers`).
#[derive(Clone, Debug)]
pub struct KnownAddress {
    /// The address.
    pub addr: NetAddr,
    /// Who told us about it.
    pub source: NetAddr,
    /// In the tried table (connected successfully once).
    pub tried: bool,
    /// Failed attempts since the last success.
    pub attempts: u32,
    /// Our last connection attempt.
    pub last_try: Option<Time>,
    /// Our last successful connection.
    pub last_success: Option<Time>,
    /// Services it was last announced or seen with.
    pub services: ServiceFlags,
    /// A connection to (or from) it is open.
    pub connected: bool,
    /// It is in a banned subnet.
    pub banned: bool,
}

type Reply<T> = oneshot::Sender<T>;

/// A query: run by the driver on a view of the pool, its answer sent back by the closure.
pub(crate) type Query = Box<dyn for<'a> FnOnce(&PoolView<'a>) + Send>;

/// What a handle asks the driver.
pub(crate) enum Request {
    /// Change the pool.
    Command(Command),
    /// Read it.
    Query(Query),
}

/// The requests that change the pool: each is one call into the pool machine or the runtime.
pub(crate) enum Command {
    Connect(NetAddr, Reply<()>),
    AddNode(NetAddr, Reply<Result<(), ConnError>>),
    RemoveNode(NetAddr, Reply<Result<(), ConnError>>),
    DisconnectPeer(PeerId, Reply<Result<(), ConnError>>),
    DisconnectAddr(NetAddr, Reply<Result<(), ConnError>>),
    Ban(Subnet, Duration, Reply<bool>),
    Unban(Subnet, Reply<bool>),
    ClearBans(Reply<()>),
    MarkUseful(PeerId, Useful, Reply<()>),
    AddAddresses(Vec<NetAddr>, Reply<usize>),
    AddTried(NetAddr, Reply<AddTried>),
    Save(Reply<io::Result<()>>),
    SetNetworkActive(bool, Reply<()>),
    PingAll(Reply<usize>),
    ToggleLog(PeerId, Reply<Option<bool>>),
    LogNew(Option<bool>, Reply<bool>),
    SendMessage(PeerId, Box<NetworkMessage>, Reply<Result<(), ConnError>>),
}

/// Commands and requests to a pool. Cheap to clone; every method waits for the driver's
/// answer, and fails with [`PoolError::Stopped`] once the pool is gone.
#[derive(Clone, Debug)]
pub struct PoolHandle {
    requests: mpsc::Sender<Request>,
    bus: EventBus,
}

impl PoolHandle {
    pub(crate) fn new(requests: mpsc::Sender<Request>, bus: EventBus) -> PoolHandle {
        PoolHandle { requests, bus }
    }

    async fn ask<T>(&self, make: impl FnOnce(Reply<T>) -> Command) -> Result<T, PoolError> {
        let (tx, rx) = oneshot::channel();
        self.requests
            .send(Request::Command(make(tx)))
            .await
            .map_err(|_| PoolError::Stopped)?;
        rx.await.map_err(|_| PoolError::Stopped)
    }

    /// Runs `f` on a read-only [`PoolView`] of the pool, between two of the driver's inputs,
    /// and returns its answer. Keep it short: the pool waits for it.
    ///
    /// ```no_run
    /// # async fn f(handle: peerpool_net::PoolHandle) -> Result<(), peerpool_net::pool::PoolError> {
    /// let outbound = handle
    ///     .query(|pool| pool.machine().connman().outbound_count())
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub async fn query<T: Send + 'static>(
        &self,
        f: impl for<'a> FnOnce(&PoolView<'a>) -> T + Send + 'static,
    ) -> Result<T, PoolError> {
        let (tx, rx) = oneshot::channel();
        let query: Query = Box::new(move |view| {
            let _ = tx.send(f(view));
        });
        self.requests
            .send(Request::Query(query))
            .await
            .map_err(|_| PoolError::Stopped)?;
        rx.await.map_err(|_| PoolError::Stopped)
    }

    /// The pool's event bus.
    pub fn bus(&self) -> &EventBus {
        &self.bus
    }

    /// Follows peers joining and leaving, bans and evictions (see [`EventBus::subscribe`]).
    pub fn subscribe(&self) -> Subscription {
        self.bus.subscribe()
    }

    /// Follows received messages of the given kinds (see [`EventBus::subscribe_messages`]).
    pub fn subscribe_messages(&self, kinds: &[MessageKind]) -> MessageSubscription {
        self.bus.subscribe_messages(kinds)
    }

    /// Dials `addr` once, outside the automatic slots (`addnode onetry`; the bus command
    /// ConnectToNode). Returns once the dial is under way; the peer joining shows on the bus.
    pub async fn connect(&self, addr: NetAddr) -> Result<(), PoolError> {
        self.ask(|r| Command::Connect(addr, r)).await
    }

    /// Keeps a connection to `addr`, redialed with backoff (`addnode add`).
    pub async fn add_node(&self, addr: NetAddr) -> Result<(), PoolError> {
        Ok(self.ask(|r| Command::AddNode(addr, r)).await??)
    }

    /// Stops keeping `addr` connected (`addnode remove`); a live connection stays, as in
    /// Bitcoin Core, and is not redialed once it ends.
    pub async fn remove_node(&self, addr: NetAddr) -> Result<(), PoolError> {
        Ok(self.ask(|r| Command::RemoveNode(addr, r)).await??)
    }

    /// Disconnects a peer by id (`disconnectnode`; the bus command DisconnectPeer).
    pub async fn disconnect_peer(&self, peer: PeerId) -> Result<(), PoolError> {
        Ok(self.ask(|r| Command::DisconnectPeer(peer, r)).await??)
    }

    /// Disconnects every peer at `addr`.
    pub async fn disconnect_addr(&self, addr: NetAddr) -> Result<(), PoolError> {
        Ok(self.ask(|r| Command::DisconnectAddr(addr, r)).await??)
    }

    /// Bans `subnet` for `duration` and disconnects its peers (`setban add`). Returns whether
    /// the ban list changed (a longer ban already in force is kept).
    pub async fn ban(&self, subnet: Subnet, duration: Duration) -> Result<bool, PoolError> {
        self.ask(|r| Command::Ban(subnet, duration, r)).await
    }

    /// Lifts the ban of exactly `subnet` (`setban remove`); whether there was one.
    pub async fn unban(&self, subnet: Subnet) -> Result<bool, PoolError> {
        self.ask(|r| Command::Unban(subnet, r)).await
    }

    /// The bans in force (`listbanned`).
    pub async fn list_bans(&self) -> Result<Vec<BanEntry>, PoolError> {
        self.query(|v| v.bans()).await
    }

    /// Lifts every ban (`clearbanned`).
    pub async fn clear_bans(&self) -> Result<(), PoolError> {
        self.ask(Command::ClearBans).await
    }

    /// Peers that completed the handshake (the bus request PeerCount).
    pub async fn peer_count(&self) -> Result<usize, PoolError> {
        self.query(|v| v.peer_count()).await
    }

    /// Every peer that completed the handshake, by id (the bus request GetConnectedPeers).
    pub async fn connected_peers(&self) -> Result<Vec<PeerInfo>, PoolError> {
        self.query(|v| v.connected_peers()).await
    }

    /// Every connection, handshake done or not, with statistics (`getpeerinfo`).
    pub async fn peer_details(&self) -> Result<Vec<PeerDetails>, PoolError> {
        self.query(|v| v.peer_details()).await
    }

    /// Tells the pool that `peer` just gave the node's owner a block or transaction it did not
    /// have. Recent useful inbound peers are protected from eviction, as in Bitcoin Core; the
    /// pool cannot judge novelty itself (it keeps no chain or mempool), so an application that
    /// does calls this.
    pub async fn mark_useful(&self, peer: PeerId, what: Useful) -> Result<(), PoolError> {
        self.ask(|r| Command::MarkUseful(peer, what, r)).await
    }

    /// The manual peers and their state (`getaddednodeinfo`).
    pub async fn added_nodes(&self) -> Result<Vec<ManualPeer>, PoolError> {
        self.query(|v| v.added_nodes()).await
    }

    /// The address book's counts (`getaddrmaninfo`).
    pub async fn addrman_info(&self) -> Result<AddrManInfo, PoolError> {
        self.query(|v| v.addrman_info()).await
    }

    /// Adds addresses to the book as if announced by themselves (`addpeeraddress`); how many
    /// took a new place.
    pub async fn add_addresses(&self, addrs: Vec<NetAddr>) -> Result<usize, PoolError> {
        self.ask(|r| Command::AddAddresses(addrs, r)).await
    }

    /// Adds `addr` to the book and marks it as connected once, so that it lands in the tried
    /// table (`addpeeraddress ... true`); see [`AddTried`] for the outcomes.
    pub async fn add_tried_address(&self, addr: NetAddr) -> Result<AddTried, PoolError> {
        self.ask(|r| Command::AddTried(addr, r)).await
    }

    /// A random sample of at most `count` addresses from the address book (0: all of them),
    /// optionally of one network, leaving out entries not worth relaying (`getnodeaddresses`).
    pub async fn node_addresses(
        &self,
        count: usize,
        network: Option<Network>,
    ) -> Result<Vec<AddrInfo>, PoolError> {
        self.query(move |v| v.node_addresses(count, network)).await
    }

    /// Bytes sent and received since the pool started, over open and closed connections
    /// (`getnettotals`).
    pub async fn net_totals(&self) -> Result<NetTotals, PoolError> {
        self.query(|v| v.net_totals()).await
    }

    /// Turns all P2P activity off or back on (`setnetworkactive`). Off: every peer is
    /// disconnected, inbound connections are refused and no dial is made; the dials that
    /// wait (automatic, feelers, `addnode` peers) are made once it is back on, and pausing
    /// counts no failed attempt in the address book.
    pub async fn set_network_active(&self, active: bool) -> Result<(), PoolError> {
        self.ask(|r| Command::SetNetworkActive(active, r)).await
    }

    /// Whether P2P activity is on (`getnetworkinfo`'s `networkactive`).
    pub async fn network_active(&self) -> Result<bool, PoolError> {
        self.query(|v| v.machine().network_active()).await
    }

    /// Pings every peer that completed the handshake and has no ping outstanding (`ping`);
    /// their round trips show in the peers' statistics once the pongs arrive. How many were
    /// sent.
    pub async fn ping_all(&self) -> Result<usize, PoolError> {
        self.ask(Command::PingAll).await
    }

    /// Every connection with its cost, priority and flags (the admin `sessions` command).
    pub async fn sessions(&self) -> Result<Vec<SessionInfo>, PoolError> {
        self.query(|v| v.sessions()).await
    }

    /// Toggles message logging of a session; `None` if there is no such session, else whether
    /// it is now logged.
    pub async fn toggle_log(&self, peer: PeerId) -> Result<Option<bool>, PoolError> {
        self.ask(|r| Command::ToggleLog(peer, r)).await
    }

    /// Whether sessions that connect from now on start with message logging on (the admin
    /// `log new`): `Some(on)` sets it, `None` toggles it; returns the new setting. Sessions
    /// already connected are left as they are (see [`toggle_log`](Self::toggle_log)).
    pub async fn log_new_sessions(&self, on: Option<bool>) -> Result<bool, PoolError> {
        self.ask(|r| Command::LogNew(on, r)).await
    }

    /// Every address in the address book with its state (the admin `peers` command): tried
    /// first, most recent success first.
    pub async fn known_addresses(&self) -> Result<Vec<KnownAddress>, PoolError> {
        self.query(|v| v.known_addresses()).await
    }

    /// Sends a message to a connected peer (the bus's messages towards the pool). Returns once
    /// it is queued; a message queued before the handshake completes goes out after it. Fails
    /// with [`ConnError::NotConnected`] if there is no such peer.
    pub async fn send_message(&self, peer: PeerId, msg: NetworkMessage) -> Result<(), PoolError> {
        Ok(self
            .ask(|r| Command::SendMessage(peer, Box::new(msg), r))
            .await??)
    }

    /// Saves the address book and ban list now, waiting for the files to be written (they are
    /// also saved periodically and at shutdown). Does nothing for a pool without a data
    /// directory.
    pub async fn save(&self) -> Result<(), PoolError> {
        self.ask(Command::Save).await?.map_err(PoolError::Save)
    }
}
