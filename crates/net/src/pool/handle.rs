//! [`PoolHandle`]: commands and requests to a running pool.

use std::io;
use std::time::Duration;

use peerpool_core::addr::{NetAddr, Network};
use peerpool_core::pool::addrman::TableCounts;
use peerpool_core::pool::banman::{BanEntry, Subnet};
use peerpool_core::pool::connman::{ConnError, ConnKind, ManualPeer};
use peerpool_core::pool::machine::Permission;
use peerpool_wire::MessageKind;
use tokio::sync::{mpsc, oneshot};

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
}

/// The address book in numbers (for `getaddrmaninfo`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AddrManInfo {
    /// Per network, entries in the new and tried tables (every network, in order).
    pub networks: Vec<(Network, TableCounts)>,
    /// All networks together.
    pub total: TableCounts,
}

type Reply<T> = oneshot::Sender<T>;

/// What a handle asks the driver.
pub(crate) enum Command {
    Connect(NetAddr, Reply<()>),
    AddNode(NetAddr, Reply<Result<(), ConnError>>),
    RemoveNode(NetAddr, Reply<Result<(), ConnError>>),
    DisconnectPeer(PeerId, Reply<Result<(), ConnError>>),
    DisconnectAddr(NetAddr, Reply<Result<(), ConnError>>),
    Ban(Subnet, Duration, Reply<bool>),
    Unban(Subnet, Reply<bool>),
    ListBans(Reply<Vec<BanEntry>>),
    ClearBans(Reply<()>),
    PeerCount(Reply<usize>),
    ConnectedPeers(Reply<Vec<PeerInfo>>),
    PeerDetails(Reply<Vec<PeerDetails>>),
    AddedNodes(Reply<Vec<ManualPeer>>),
    AddrManInfo(Reply<AddrManInfo>),
    AddAddresses(Vec<NetAddr>, Reply<usize>),
    Save(Reply<io::Result<()>>),
}

/// Commands and requests to a pool. Cheap to clone; every method waits for the driver's
/// answer, and fails with [`PoolError::Stopped`] once the pool is gone.
#[derive(Clone, Debug)]
pub struct PoolHandle {
    commands: mpsc::Sender<Command>,
    bus: EventBus,
}

impl PoolHandle {
    pub(crate) fn new(commands: mpsc::Sender<Command>, bus: EventBus) -> PoolHandle {
        PoolHandle { commands, bus }
    }

    async fn ask<T>(&self, make: impl FnOnce(Reply<T>) -> Command) -> Result<T, PoolError> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(make(tx))
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

    /// Stops keeping `addr` connected and disconnects it (`addnode remove`).
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
        self.ask(Command::ListBans).await
    }

    /// Lifts every ban (`clearbanned`).
    pub async fn clear_bans(&self) -> Result<(), PoolError> {
        self.ask(Command::ClearBans).await
    }

    /// Peers that completed the handshake (the bus request PeerCount).
    pub async fn peer_count(&self) -> Result<usize, PoolError> {
        self.ask(Command::PeerCount).await
    }

    /// Every peer that completed the handshake, by id (the bus request GetConnectedPeers).
    pub async fn connected_peers(&self) -> Result<Vec<PeerInfo>, PoolError> {
        self.ask(Command::ConnectedPeers).await
    }

    /// Every connection, handshake done or not, with statistics (`getpeerinfo`).
    pub async fn peer_details(&self) -> Result<Vec<PeerDetails>, PoolError> {
        self.ask(Command::PeerDetails).await
    }

    /// The manual peers and their state (`getaddednodeinfo`).
    pub async fn added_nodes(&self) -> Result<Vec<ManualPeer>, PoolError> {
        self.ask(Command::AddedNodes).await
    }

    /// The address book's counts (`getaddrmaninfo`).
    pub async fn addrman_info(&self) -> Result<AddrManInfo, PoolError> {
        self.ask(Command::AddrManInfo).await
    }

    /// Adds addresses to the book as if announced by themselves (`addpeeraddress`); how many
    /// took a new place.
    pub async fn add_addresses(&self, addrs: Vec<NetAddr>) -> Result<usize, PoolError> {
        self.ask(|r| Command::AddAddresses(addrs, r)).await
    }

    /// Saves the address book and ban list now, waiting for the files to be written (they are
    /// also saved periodically and at shutdown). Does nothing for a pool without a data
    /// directory.
    pub async fn save(&self) -> Result<(), PoolError> {
        self.ask(Command::Save).await?.map_err(PoolError::Save)
    }
}
