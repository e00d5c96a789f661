//! [`PoolView`]: the pool as queries see it.
//!
//! A query is a closure a [`PoolHandle`](crate::pool::PoolHandle) sends to the driver
//! ([`PoolHandle::query`](crate::pool::PoolHandle::query)); the driver runs it between two
//! inputs, on a view that can read the machine and the connections but change nothing. The
//! snapshots the RPC listeners need (peers in detail, sessions, the address book) are built
//! here, once; a new read-only RPC method is a closure over this view, with no new command.

use std::collections::{BTreeMap, BTreeSet};

use peerpool_core::addr::{NetAddr, Network};
use peerpool_core::cost::{group_label, Limits};
use peerpool_core::pool::addrman::{AddrInfo, Placement};
use peerpool_core::pool::banman::BanEntry;
use peerpool_core::pool::connman::ManualPeer;
use peerpool_core::pool::PoolMachine;
use peerpool_core::Time;

use crate::bus::PeerInfo;
use crate::pool::handle::{AddrManInfo, KnownAddress, NetTotals, PeerDetails, SessionInfo};
use crate::pool::io::Dialer;
use crate::pool::peer_info;
use crate::{Direction, Peer, PeerId};

/// Connections by direction; see [`PoolView::connection_counts`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ConnectionCounts {
    /// They connected to us.
    pub inbound: usize,
    /// We connected to them.
    pub outbound: usize,
}

impl ConnectionCounts {
    /// Both directions.
    pub fn total(&self) -> usize {
        self.inbound + self.outbound
    }
}

/// A read-only view of a running pool: its machine and its connections, at one moment.
pub struct PoolView<'a> {
    pub(super) machine: &'a PoolMachine,
    pub(super) members: &'a BTreeMap<PeerId, Peer>,
    pub(super) now: Time,
    pub(super) cost: &'a Limits,
    pub(super) log_new: bool,
    pub(super) closed_traffic: NetTotals,
    pub(super) dialer: &'a Dialer,
}

impl PoolView<'_> {
    /// The pool machine: its connection manager, address book, bans and peers.
    pub fn machine(&self) -> &PoolMachine {
        self.machine
    }

    /// When the view was taken.
    pub fn now(&self) -> Time {
        self.now
    }

    /// Every connection the pool accounts for, handshake done or not, by id.
    pub fn peers(&self) -> impl Iterator<Item = (PeerId, &Peer)> + '_ {
        self.members.iter().map(|(id, p)| (*id, p))
    }

    /// A connection by id.
    pub fn peer(&self, id: PeerId) -> Option<&Peer> {
        self.members.get(&id)
    }

    /// Connections with statistics (the ones `getpeerinfo` lists), by direction: counted
    /// without taking any snapshot.
    pub fn connection_counts(&self) -> ConnectionCounts {
        let mut counts = ConnectionCounts::default();
        for (id, peer) in self.peers() {
            let Some(known) = self.machine.peer(id) else {
                continue;
            };
            if peer.started() {
                match known.direction {
                    Direction::Inbound => counts.inbound += 1,
                    Direction::Outbound => counts.outbound += 1,
                }
            }
        }
        counts
    }

    /// How many peers completed the handshake (the bus request PeerCount).
    pub fn peer_count(&self) -> usize {
        self.machine.ready_peers().count()
    }

    /// Every peer that completed the handshake (the bus request GetConnectedPeers).
    pub fn connected_peers(&self) -> Vec<PeerInfo> {
        self.machine
            .ready_peers()
            .filter_map(|(id, _)| self.members.get(&id)?.stats())
            .map(|s| peer_info(&s))
            .collect()
    }

    /// Every connection in detail (`getpeerinfo`).
    pub fn peer_details(&self) -> Vec<PeerDetails> {
        self.members
            .iter()
            .filter_map(|(id, p)| self.details_of(*id, p))
            .collect()
    }

    fn details_of(&self, id: PeerId, peer: &Peer) -> Option<PeerDetails> {
        let known = self.machine.peer(id)?;
        Some(PeerDetails {
            id,
            addr: known.addr,
            direction: known.direction,
            kind: known.kind,
            permissions: self.machine.permissions(id).to_vec(),
            joined: known.ready,
            stats: peer.stats(),
            addr_processed: known.addr_processed,
            addr_rate_limited: known.addr_rate_limited,
            mapped_as: self.machine.groups().mapped_as(&known.addr),
        })
    }

    /// Every connection with its cost, priority and flags (the admin `sessions`).
    pub fn sessions(&self) -> Vec<SessionInfo> {
        self.members
            .iter()
            .filter_map(|(id, p)| {
                let details = self.details_of(*id, p)?;
                let cost = p.cost();
                let group_cost = p.group_cost();
                Some(SessionInfo {
                    netgroup: group_label(&details.addr),
                    details,
                    cost,
                    group_cost,
                    priority: self.cost.priority(cost + group_cost),
                    logged: p.message_logging(),
                    closing: p.is_closing(),
                    errors: p.misbehaviour_reports(),
                })
            })
            .collect()
    }

    /// Whether sessions that connect from now on start logged (the admin `log new`).
    pub fn logging_new_sessions(&self) -> bool {
        self.log_new
    }

    /// Every address in the book with its state (the admin `peers`).
    pub fn known_addresses(&self) -> Vec<KnownAddress> {
        let connected: BTreeSet<NetAddr> = self.machine.peers().map(|(_, p)| p.addr).collect();
        let banman = self.machine.banman();
        self.machine
            .addrman()
            .listing()
            .into_iter()
            .map(|i| KnownAddress {
                addr: i.addr,
                source: i.source,
                tried: matches!(i.placement, Placement::Tried),
                attempts: i.attempts,
                last_try: i.last_try,
                last_success: i.last_success,
                services: i.services,
                connected: connected.contains(&i.addr),
                banned: banman.is_banned(&i.addr, self.now),
            })
            .collect()
    }

    /// A random sample of at most `count` addresses (0: all), optionally of one network,
    /// leaving out entries not worth relaying and banned ones (`getnodeaddresses`).
    pub fn node_addresses(&self, count: usize, network: Option<Network>) -> Vec<AddrInfo> {
        let banman = self.machine.banman();
        let mut all: Vec<AddrInfo> = self
            .machine
            .addrman()
            .entries()
            .filter(|e| network.map_or(true, |n| e.addr.network() == n))
            .filter(|e| !e.is_terrible(self.now))
            // Addresses we banned are not handed out (Bitcoin Core filters the same).
            .filter(|e| !banman.is_banned(&e.addr, self.now))
            .collect();
        fastrand::shuffle(&mut all);
        if count != 0 {
            all.truncate(count);
        }
        all
    }

    /// The address book's counts (`getaddrmaninfo`).
    pub fn addrman_info(&self) -> AddrManInfo {
        let book = self.machine.addrman();
        AddrManInfo {
            networks: book.counts_by_network().collect(),
            total: book.counts(),
        }
    }

    /// The bans in force (`listbanned`).
    pub fn bans(&self) -> Vec<BanEntry> {
        self.machine
            .banman()
            .bans()
            .iter()
            .filter(|b| b.is_active(self.now))
            .copied()
            .collect()
    }

    /// The manual peers and their state (`getaddednodeinfo`).
    pub fn added_nodes(&self) -> Vec<ManualPeer> {
        self.machine.connman().manual_peers().to_vec()
    }

    /// Bytes sent and received since the pool started, over open and closed connections.
    pub fn net_totals(&self) -> NetTotals {
        let mut totals = self.closed_traffic;
        for s in self.members.values().filter_map(Peer::stats) {
            totals.bytes_sent += s.bytes_sent;
            totals.bytes_recv += s.bytes_recv;
        }
        totals
    }

    /// The socket address a peer at `addr` is known by (an `.onion` peer: the proxy's).
    pub fn socket_of(&self, addr: &NetAddr) -> std::net::SocketAddr {
        self.dialer.socket_of(addr)
    }
}
