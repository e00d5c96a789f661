//! The pool machine: the connection manager, the address book and the ban list together.
//!
//! [`PoolMachine`] sees peers only through what their machines report (see [`super::link`],
//! the one place where the two cores meet) and what the runtime tells it about sockets (dials
//! made or failed, connections accepted or closed). It answers with instructions: dial this,
//! send that peer's machine a command, tell subscribers about this event. It adds to the parts
//! it composes:
//!
//! - **address relay** ([`super::relay`]): addresses from peers go into the book, rate limited
//!   per peer as Bitcoin Core does, and small fresh announcements travel on; `getaddr` is
//!   asked of every outbound peer after its handshake and answered once per inbound peer; our
//!   own listening addresses are announced to each peer after its handshake and then on a
//!   per-peer timer;
//! - **reseeding**: when outbound slots are empty and no round of the connection manager has
//!   found a usable address for [`RESEED_DELAY`], the machine emits [`Output::Reseed`]: the
//!   runtime adds its configured seed addresses again and queries the DNS seeds (Core's 11 s
//!   DNS-seed rule, applied whenever the book runs dry, not only at start). It does so at most
//!   once per [`RESEED_INTERVAL`], to spare the seeds;
//! - **test-before-evict**: an address that would take an occupied slot of the book's tried
//!   table waits in the collision set while the feeler timer tests the occupant first (a
//!   feeler to it, before any new-table address); an occupant that answers keeps its slot,
//!   one that fails (or is not tested within the book's test window) gives way. The set is
//!   settled ([`AddrMan::resolve_collisions`]) on every pass of the connection-opening path
//!   and at least every [`COLLISION_CHECK_INTERVAL`] while it is not empty;
//! - **bans**: a banned address is neither dialed nor accepted; misbehaviour reported by a
//!   peer's machine gets the ban manager's [`verdict`](super::banman::verdict); a change to
//!   the ban list is saved at once ([`Output::SaveBans`], at most every [`BAN_SAVE_INTERVAL`]),
//!   as Bitcoin Core writes its ban list when it changes;
//! - **whitelist**: peers from whitelisted subnets get the permissions listed (`noban`: never
//!   banned, never evicted, exempt from the per-group inbound limit).
//!
//! Its deadlines are named ([`Timer`]) and kept in one [`TimerTable`]: `handle_timeout` does
//! what is due and nothing else.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

use crate::addr::{Host, NetAddr, Network};
use crate::asmap::NetGroups;
use crate::peer::{Direction, DisconnectReason, PeerCommand, PeerId};
use crate::pool::addrman::{self, AddrMan, AddrRecord};
use crate::pool::banman::{self, BanList, BanMan, BanReason, Subnet};
use crate::pool::connman::{self, ConnKind, ConnMan, InboundVerdict, Pick, RefuseReason, ReqId};
use crate::pool::relay::{AddrIntake, Relayed};
use crate::pool::timers::TimerTable;
use crate::seed::{self, Stream};
use crate::time::Time;

pub use crate::gossip::MAX_ADDR_TO_SEND;
pub use crate::pool::relay::{
    ADDR_RATE_PER_SECOND, ADDR_TIME_PENALTY, ADDR_TOKEN_BUCKET, ADDR_TOKEN_START,
    LOCAL_ADDR_INTERVAL, MAX_PCT_ADDR_TO_SEND, MAX_RECENTLY_RELAYED, MAX_RELAYED_ANNOUNCEMENT,
    RELAY_FANOUT, RELAY_FRESHNESS,
};

/// How long outbound slots stay empty with nothing usable in the book before we ask the
/// runtime to seed again. Bitcoin Core: the 11 s `ThreadDNSAddressSeed` waits before it
/// queries the DNS seeds when the book is not empty.
pub const RESEED_DELAY: Duration = Duration::from_secs(11);
/// Least time between two reseeds. Core seeds once per start; peerpool repeats while the book
/// stays dry, at this pace so that a node cut off from the network does not hammer the seeds.
pub const RESEED_INTERVAL: Duration = Duration::from_secs(10 * 60);
/// While tried-table collisions wait, they are settled at least this often. Core settles them
/// every 500 ms loop; a minute matches the book's `FEELER_GRACE`, the finest step its verdicts
/// take.
pub const COLLISION_CHECK_INTERVAL: Duration = Duration::from_secs(60);
/// Least time between two saves of a changing ban list, so a burst of bans (a flood of
/// misbehaving peers, a script of `setban` calls) costs one write a second at most.
pub const BAN_SAVE_INTERVAL: Duration = Duration::from_secs(1);

/// A permission granted by the whitelist (Bitcoin Core's `-whitelist` permission names).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Permission {
    /// Never banned, never evicted, exempt from per-group limits.
    NoBan,
    /// Transactions relayed even without relay.
    Relay,
    /// Allowed to request the mempool.
    Mempool,
    /// Allowed to download blocks when we limit uploads.
    Download,
    /// Addresses from it are not rate limited.
    Addr,
    /// Allowed to use bloom filters.
    BloomFilter,
    /// Relayed transactions even if rejected.
    ForceRelay,
}

impl Permission {
    /// Bitcoin Core's name for it.
    pub fn as_str(self) -> &'static str {
        match self {
            Permission::NoBan => "noban",
            Permission::Relay => "relay",
            Permission::Mempool => "mempool",
            Permission::Download => "download",
            Permission::Addr => "addr",
            Permission::BloomFilter => "bloomfilter",
            Permission::ForceRelay => "forcerelay",
        }
    }

    /// Parses one of Core's names.
    pub fn parse(s: &str) -> Option<Permission> {
        Some(match s {
            "noban" => Permission::NoBan,
            "relay" => Permission::Relay,
            "mempool" => Permission::Mempool,
            "download" => Permission::Download,
            "addr" => Permission::Addr,
            "bloomfilter" => Permission::BloomFilter,
            "forcerelay" => Permission::ForceRelay,
            _ => return None,
        })
    }

    /// What a whitelist entry without explicit permissions grants (Bitcoin Core's implicit set).
    pub const DEFAULT: &'static [Permission] = &[
        Permission::NoBan,
        Permission::Relay,
        Permission::Mempool,
        Permission::Download,
    ];
}

/// A set of [`Permission`]s, one bit each: what a peer holds costs it one byte.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct PermissionSet(u8);

impl PermissionSet {
    /// Every permission, in Core's order of names.
    const ALL: [Permission; 7] = [
        Permission::NoBan,
        Permission::Relay,
        Permission::Mempool,
        Permission::Download,
        Permission::Addr,
        Permission::BloomFilter,
        Permission::ForceRelay,
    ];

    fn bit(p: Permission) -> u8 {
        1 << (p as u8)
    }

    /// Whether `p` is in the set.
    pub fn contains(self, p: Permission) -> bool {
        self.0 & PermissionSet::bit(p) != 0
    }

    /// Adds `p`.
    pub fn insert(&mut self, p: Permission) {
        self.0 |= PermissionSet::bit(p);
    }

    /// Whether the set is empty.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The permissions in the set, in order.
    pub fn iter(self) -> impl Iterator<Item = Permission> {
        PermissionSet::ALL
            .into_iter()
            .filter(move |p| self.contains(*p))
    }

    /// The permissions in the set, in order.
    pub fn to_vec(self) -> Vec<Permission> {
        self.iter().collect()
    }
}

impl FromIterator<Permission> for PermissionSet {
    fn from_iter<I: IntoIterator<Item = Permission>>(iter: I) -> PermissionSet {
        let mut set = PermissionSet::default();
        for p in iter {
            set.insert(p);
        }
        set
    }
}

/// A whitelisted subnet and its permissions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WhitelistEntry {
    /// The subnet.
    pub subnet: Subnet,
    /// What its peers may do.
    pub permissions: Vec<Permission>,
}

/// Settings of the pool.
#[derive(Clone, Debug)]
pub struct Config {
    /// Connection slots.
    pub connman: connman::Config,
    /// The address book.
    pub addrman: addrman::Config,
    /// Ban scores and durations.
    pub banman: banman::Config,
    /// Our listening addresses, announced to peers.
    pub advertise: Vec<NetAddr>,
    /// Whitelisted subnets.
    pub whitelist: Vec<WhitelistEntry>,
    /// Networks we can reach (dial); empty means IPv4 and IPv6.
    pub reachable: Vec<Network>,
    /// Mean gap between two announcements of [`Config::advertise`] to one peer (exponentially
    /// distributed, per peer). Default [`LOCAL_ADDR_INTERVAL`] (Core's 24 h); tests and
    /// simulations of small networks shorten it.
    pub local_addr_interval: Duration,
}

impl Config {
    /// Groups addresses by `groups` everywhere groups count: address-book buckets, outbound
    /// diversity, the per-group inbound limit and eviction.
    pub fn set_groups(&mut self, groups: NetGroups) {
        self.connman.groups = groups.clone();
        self.addrman.groups = groups;
    }
}

impl Default for Config {
    /// Bitcoin Core's settings for every part; nothing advertised, nobody whitelisted.
    fn default() -> Config {
        Config {
            connman: connman::Config::default(),
            addrman: addrman::Config::default(),
            banman: banman::Config::default(),
            advertise: Vec::new(),
            whitelist: Vec::new(),
            reachable: Vec::new(),
            local_addr_interval: LOCAL_ADDR_INTERVAL,
        }
    }
}

/// What a peer gave us that we did not have (for eviction protection: Bitcoin Core keeps the
/// inbound peers that most recently sent novel blocks and transactions).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Useful {
    /// A block we did not have.
    Block,
    /// A transaction we did not have.
    Tx,
}

/// The pool machine's named deadlines; see [`PoolMachine::timer`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Timer {
    /// A ban expires: sweep the list.
    BanExpiry,
    /// Settle the book's tried-table collisions.
    ResolveCollisions,
    /// The connection manager has work: a paced dial, a feeler, a manual redial.
    Connections,
    /// Announce our addresses to this peer again.
    LocalAddr(PeerId),
    /// Outbound slots are starving: ask the runtime for seeds.
    Reseed,
    /// The ban list changed: write it.
    SaveBans,
}

/// What the pool reports to the outside.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PoolEvent {
    /// A peer completed its handshake.
    PeerJoined {
        /// The peer.
        peer: PeerId,
        /// Its address.
        addr: NetAddr,
        /// Who dialed.
        direction: Direction,
        /// What the connection is for.
        kind: ConnKind,
    },
    /// A peer that had joined left.
    PeerLeft {
        /// The peer.
        peer: PeerId,
        /// Its address.
        addr: NetAddr,
        /// Why.
        reason: DisconnectReason,
    },
    /// A subnet was banned (misbehaviour or command).
    Banned {
        /// The subnet.
        subnet: Subnet,
        /// Until when.
        until: Time,
        /// Why.
        reason: BanReason,
    },
    /// An inbound peer was evicted to make room.
    Evicted {
        /// The peer.
        peer: PeerId,
        /// Its address.
        addr: NetAddr,
    },
}

/// What the runtime must do next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    /// Dial an address; report with `handle_dial_succeeded` / `handle_dial_failed`.
    Dial {
        /// The request.
        req: ReqId,
        /// Where.
        addr: NetAddr,
        /// What for.
        kind: ConnKind,
    },
    /// Hand a command to a peer's machine ([`PeerMachine::handle_command`]): send a message,
    /// announce addresses, disconnect.
    ///
    /// [`PeerMachine::handle_command`]: crate::PeerMachine::handle_command
    Peer {
        /// The peer.
        peer: PeerId,
        /// What to do.
        command: PeerCommand,
    },
    /// Tell subscribers.
    Event(PoolEvent),
    /// The book has nothing usable to fill the outbound slots: add the configured seed
    /// addresses again and query the DNS seeds (see the module docs).
    Reseed,
    /// The ban list changed: write [`BanMan::bans`] to storage now.
    SaveBans,
}

impl Output {
    /// The command that disconnects `peer` for `reason`.
    pub fn disconnect(peer: PeerId, reason: DisconnectReason) -> Output {
        Output::Peer {
            peer,
            command: PeerCommand::Disconnect(reason),
        }
    }
}

/// Why an inbound connection was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused {
    /// Its address is banned.
    Banned,
    /// No room (see the connection manager).
    Full(RefuseReason),
    /// Network activity is off ([`PoolMachine::set_network_active`]).
    NetworkInactive,
}

/// A connection as the pool knows it; see [`PoolMachine::peer`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolPeer {
    /// Its address (for an outbound peer, the one dialed).
    pub addr: NetAddr,
    /// Who dialed.
    pub direction: Direction,
    /// What the connection is for.
    pub kind: ConnKind,
    /// It completed its handshake and joined the pool.
    pub ready: bool,
    /// The pool told its machine to close.
    pub closing: bool,
    /// Addresses from the peer taken past the rate limit (Bitcoin Core's `addr_processed`).
    pub addr_processed: u32,
    /// Addresses from the peer dropped by the rate limit (`addr_rate_limited`).
    pub addr_rate_limited: u32,
}

/// What the pool knows of one connection.
#[derive(Debug)]
pub(crate) struct PeerState {
    pub(crate) addr: NetAddr,
    pub(crate) kind: ConnKind,
    /// The handshake completed (and the peer was not closing then).
    pub(crate) ready: bool,
    /// The pool told its machine to close: see [`super::link`].
    pub(crate) closing: bool,
    /// Its address was banned for its misbehaviour; later reports are not judged again.
    pub(crate) banned: bool,
    pub(crate) permissions: PermissionSet,
    pub(crate) intake: AddrIntake,
}

impl PeerState {
    fn summary(&self) -> PoolPeer {
        PoolPeer {
            addr: self.addr,
            direction: self.kind.direction(),
            kind: self.kind,
            ready: self.ready,
            closing: self.closing,
            addr_processed: self.intake.processed,
            addr_rate_limited: self.intake.rate_limited,
        }
    }

    fn new(addr: NetAddr, kind: ConnKind, permissions: PermissionSet, now: Time) -> PeerState {
        PeerState {
            addr,
            kind,
            ready: false,
            closing: false,
            banned: false,
            permissions,
            intake: AddrIntake::new(now),
        }
    }
}

/// The pool machine; see the module docs.
#[derive(Debug)]
pub struct PoolMachine {
    pub(crate) config: Config,
    pub(crate) rng: fastrand::Rng,
    pub(crate) connman: ConnMan,
    pub(crate) addrman: AddrMan,
    pub(crate) banman: BanMan,
    pub(crate) peers: BTreeMap<PeerId, PeerState>,
    /// Outbound requests waiting for their dial, with the address.
    dialing: BTreeMap<ReqId, NetAddr>,
    /// Nonces of our outbound peers' `version`s until their handshakes end, for catching
    /// connections to ourselves (see [`super::link`]).
    pub(crate) nonces: BTreeMap<u64, PeerId>,
    pub(crate) relayed: Relayed,
    pub(crate) timers: TimerTable<Timer>,
    last_reseed: Option<Time>,
    last_ban_save: Option<Time>,
    /// Keys the network groups that inbound eviction protects: fixed for the machine's life,
    /// as Bitcoin Core's per-process netgroup randomizer, so that reconnecting cannot reshuffle
    /// which groups are protected.
    netgroup_key: u64,
    /// P2P activity is on (`setnetworkactive`): while off nothing is dialed, no inbound
    /// connection is taken and the connection manager's timers wait.
    network_active: bool,
    pub(crate) outputs: VecDeque<Output>,
}

impl PoolMachine {
    /// A pool with an empty book and no bans. `secret` keys the book's buckets; `seed` every
    /// random choice (see [`crate::seed`]).
    pub fn new(config: Config, secret: [u8; 16], seed: u64, now: Time) -> PoolMachine {
        let book = AddrMan::new(
            config.addrman.clone(),
            secret,
            seed::rng(seed, Stream::AddrMan),
        );
        PoolMachine::with_state(config, book, BanList::new(), seed, now)
    }

    /// A pool resuming from a saved book and ban list. The book brings its own generator;
    /// a runtime that loads one seeds it from [`Stream::AddrMan`] of the same `seed`.
    pub fn with_state(
        config: Config,
        addrman: AddrMan,
        bans: BanList,
        seed: u64,
        now: Time,
    ) -> PoolMachine {
        let mut machine = PoolMachine {
            connman: ConnMan::new(
                config.connman.clone(),
                seed::derive(seed, Stream::ConnMan),
                now,
            ),
            banman: BanMan::with_bans(config.banman.clone(), bans),
            addrman,
            rng: seed::rng(seed, Stream::Pool),
            config,
            peers: BTreeMap::new(),
            dialing: BTreeMap::new(),
            nonces: BTreeMap::new(),
            relayed: Relayed::default(),
            timers: TimerTable::new(),
            last_reseed: None,
            last_ban_save: None,
            netgroup_key: seed::derive(seed, Stream::NetgroupKey) | 1,
            network_active: true,
            outputs: VecDeque::new(),
        };
        // A list loaded from storage is what storage holds.
        machine.banman.bans_mut().mark_clean();
        machine.sync_timers(now);
        machine
    }

    // ----- queries -------------------------------------------------------------------------

    /// The connection manager (slots, manual peers, requests).
    pub fn connman(&self) -> &ConnMan {
        &self.connman
    }

    /// The address book.
    pub fn addrman(&self) -> &AddrMan {
        &self.addrman
    }

    /// How addresses are grouped (by prefix, or by AS with an asmap).
    pub fn groups(&self) -> &NetGroups {
        &self.config.addrman.groups
    }

    /// The ban manager.
    pub fn banman(&self) -> &BanMan {
        &self.banman
    }

    /// Permissions of a connected peer.
    pub fn permissions(&self, peer: PeerId) -> PermissionSet {
        self.peers
            .get(&peer)
            .map_or_else(PermissionSet::default, |p| p.permissions)
    }

    /// A connection, handshake done or not, from the moment the pool accounted for it until
    /// its end was reported.
    pub fn peer(&self, peer: PeerId) -> Option<PoolPeer> {
        self.peers.get(&peer).map(PeerState::summary)
    }

    /// Every connection, in id order; see [`peer`](Self::peer).
    pub fn peers(&self) -> impl Iterator<Item = (PeerId, PoolPeer)> + '_ {
        self.peers.iter().map(|(id, p)| (*id, p.summary()))
    }

    /// Connected peers that completed their handshake.
    pub fn ready_peers(&self) -> impl Iterator<Item = (PeerId, NetAddr)> + '_ {
        self.peers
            .iter()
            .filter(|(_, p)| p.ready)
            .map(|(id, p)| (*id, p.addr))
    }

    /// Whether P2P activity is on (see [`set_network_active`](Self::set_network_active)).
    pub fn network_active(&self) -> bool {
        self.network_active
    }

    /// The deadline of one of the machine's named timers, if armed.
    pub fn timer(&self, timer: Timer) -> Option<Time> {
        self.timers.get(timer)
    }

    // ----- outputs -------------------------------------------------------------------------

    /// The next instruction, if any.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.pull();
        self.outputs.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) next has work. While network activity
    /// is off the connection manager's deadlines (dials, feelers, manual redials) do not
    /// count: they are carried out once it is back on.
    pub fn poll_timeout(&self) -> Option<Time> {
        self.timers.next()
    }

    // ----- inputs --------------------------------------------------------------------------

    /// Does what is due, and only that: settling tried collisions, one paced dial to fill
    /// slots, manual redials, feelers (a collision's incumbent first), ban expiry,
    /// announcements of our addresses, [`Output::Reseed`] when the book has run dry,
    /// [`Output::SaveBans`] after a change to the ban list.
    pub fn handle_timeout(&mut self, now: Time) {
        for timer in self.timers.take_due(now) {
            match timer {
                Timer::BanExpiry => {
                    for entry in self.banman.handle_timeout(now) {
                        tracing::debug!("ban on {} expired", entry.subnet);
                    }
                }
                Timer::ResolveCollisions => {
                    self.addrman.resolve_collisions(now);
                    self.arm_collisions(now);
                }
                Timer::Connections => self.open_connections(now),
                Timer::LocalAddr(peer) => self.local_addr_due(now, peer),
                Timer::Reseed => self.check_starving(now),
                Timer::SaveBans => {
                    self.banman.bans_mut().mark_clean();
                    self.last_ban_save = Some(now);
                    self.outputs.push_back(Output::SaveBans);
                }
            }
        }
        self.sync_timers(now);
    }

    /// A dial succeeded.
    pub fn handle_dial_succeeded(&mut self, now: Time, req: ReqId, peer: PeerId) {
        let Some(addr) = self.dialing.remove(&req) else {
            return;
        };
        self.connman.handle_dial_succeeded(now, req, peer);
        let kind = self
            .connman
            .connection(peer)
            .map_or(ConnKind::Outbound, |c| c.kind);
        self.addrman.attempt(&addr, false, now);
        let permissions = self.whitelisted(&addr);
        // Automatic dials never go to a banned address, but a ban made while this one was
        // under way found no connection to close (`disconnect_banned` sees live peers only).
        let banned = matches!(kind, ConnKind::Outbound | ConnKind::Feeler)
            && !permissions.contains(Permission::NoBan)
            && self.banman.is_banned(&addr, now);
        self.peers
            .insert(peer, PeerState::new(addr, kind, permissions, now));
        if banned {
            self.disconnect(peer, DisconnectReason::Banned);
        } else if !self.network_active {
            // Dialed before activity was turned off: it goes the way of the others.
            self.disconnect(peer, DisconnectReason::Requested);
        }
        self.sync_timers(now);
    }

    /// A dial failed. Only automatic dials (outbound, feelers) count as a failed attempt in
    /// the book, as Bitcoin Core's `fCountFailure`: an address the operator asked for says
    /// nothing about the book's view of it.
    pub fn handle_dial_failed(&mut self, now: Time, req: ReqId) {
        if let Some(addr) = self.dialing.remove(&req) {
            let automatic = self
                .connman
                .requests()
                .any(|r| r.id == req && matches!(r.kind, ConnKind::Outbound | ConnKind::Feeler));
            self.addrman.attempt(&addr, automatic, now);
        }
        self.connman.handle_dial_failed(now, req);
        self.arm_collisions(now);
        self.sync_timers(now);
    }

    /// A new inbound connection; `Err` means close it at once.
    pub fn handle_inbound(
        &mut self,
        now: Time,
        peer: PeerId,
        addr: NetAddr,
    ) -> Result<(), Refused> {
        if !self.network_active {
            return Err(Refused::NetworkInactive);
        }
        let permissions = self.whitelisted(&addr);
        let noban = permissions.contains(Permission::NoBan);
        if !noban && self.banman.is_banned(&addr, now) {
            return Err(Refused::Banned);
        }
        let secret = self.netgroup_key;
        let key = move |g: crate::addr::NetGroup| {
            g.to_bytes().iter().fold(secret, |h, b| {
                (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3)
            })
        };
        match self.connman.handle_inbound(now, peer, addr, noban, &key) {
            InboundVerdict::Refuse(r) => return Err(Refused::Full(r)),
            InboundVerdict::AcceptEvicting(victim) => {
                if let Some(v) = self.peers.get_mut(&victim) {
                    v.closing = true;
                    let event = PoolEvent::Evicted {
                        peer: victim,
                        addr: v.addr,
                    };
                    self.outputs.push_back(Output::Event(event));
                }
            }
            InboundVerdict::Accept => {}
        }
        self.peers.insert(
            peer,
            PeerState::new(addr, ConnKind::Inbound, permissions, now),
        );
        self.sync_timers(now);
        Ok(())
    }

    /// The peer sent us a block or transaction we did not have. Feeds eviction: an inbound
    /// peer that recently did is protected (Bitcoin Core's `m_last_block_time` and
    /// `m_last_tx_time`). The runtime calls it when the peer's block or transaction turned
    /// out to be new to the node's owner.
    pub fn handle_useful(&mut self, now: Time, peer: PeerId, what: Useful) {
        self.connman.record_useful(now, peer, what == Useful::Block);
    }

    /// A connection ended.
    pub fn handle_disconnected(&mut self, now: Time, peer: PeerId, reason: DisconnectReason) {
        self.forget_nonce(peer);
        let Some(p) = self.peers.remove(&peer) else {
            self.connman.handle_disconnected(now, peer, false);
            self.sync_timers(now);
            return;
        };
        self.connman.handle_disconnected(now, peer, p.ready);
        self.timers.cancel(Timer::LocalAddr(peer));
        if p.ready {
            if p.kind.direction() == Direction::Outbound {
                self.addrman.connected(&p.addr, now);
            }
            if p.kind != ConnKind::Feeler {
                let event = PoolEvent::PeerLeft {
                    peer,
                    addr: p.addr,
                    reason,
                };
                self.outputs.push_back(Output::Event(event));
            }
        }
        self.sync_timers(now);
    }

    // ----- commands ------------------------------------------------------------------------

    /// Adds addresses from outside (DNS seeds, `addpeeraddress`) with `source` as their origin.
    pub fn add_addresses(&mut self, now: Time, addrs: &[AddrRecord], source: NetAddr) -> usize {
        self.addrman.add(addrs, source, Duration::ZERO, now)
    }

    /// Marks a known address as successfully connected, moving it to the tried table
    /// (`addpeeraddress ... tried`, as Bitcoin Core's `AddrMan::Good`).
    pub fn mark_tried(&mut self, now: Time, addr: &NetAddr) -> addrman::GoodOutcome {
        let outcome = self.addrman.good(addr, now);
        self.sync_timers(now);
        outcome
    }

    /// `addnode add`.
    pub fn add_node(&mut self, now: Time, addr: NetAddr) -> Result<(), connman::ConnError> {
        let result = self.connman.add_manual(now, addr);
        self.sync_timers(now);
        result
    }

    /// `addnode remove`.
    pub fn remove_node(&mut self, now: Time, addr: NetAddr) -> Result<(), connman::ConnError> {
        let result = self.connman.remove_manual(addr);
        self.sync_timers(now);
        result
    }

    /// Turns P2P activity off or on, as Bitcoin Core's `setnetworkactive`. Off: every peer
    /// is disconnected ([`DisconnectReason::Requested`]), inbound connections are refused
    /// ([`Refused::NetworkInactive`]), and automatic dials, feelers, manual redials and
    /// reseeds wait without counting as failed attempts. On: what waited is due at once.
    pub fn set_network_active(&mut self, now: Time, active: bool) {
        if self.network_active == active {
            return;
        }
        self.network_active = active;
        if !active {
            self.timers.cancel(Timer::Reseed);
            let peers: Vec<PeerId> = self.peers.keys().copied().collect();
            for peer in peers {
                self.disconnect(peer, DisconnectReason::Requested);
            }
        }
        // On again: the connection manager's deadlines passed while paused are due at once.
        self.sync_timers(now);
    }

    /// `addnode onetry`: `None` when a connection to `addr` is already open or under way
    /// (see [`ConnMan::one_try`]).
    pub fn one_try(&mut self, now: Time, addr: NetAddr) -> Option<ReqId> {
        let req = self.connman.one_try(now, addr);
        self.pull();
        self.sync_timers(now);
        req
    }

    /// Disconnects a peer by id.
    pub fn disconnect_peer(&mut self, peer: PeerId) -> Result<(), connman::ConnError> {
        self.connman.disconnect_peer(peer)
    }

    /// Disconnects every peer at an address.
    pub fn disconnect_addr(&mut self, addr: NetAddr) -> Result<(), connman::ConnError> {
        self.connman.disconnect_addr(addr)
    }

    /// Bans a subnet until `until`, disconnecting the peers in it. Returns whether the ban
    /// list changed (a longer ban already in force is kept).
    pub fn ban(&mut self, now: Time, subnet: Subnet, until: Time) -> bool {
        let added = self
            .banman
            .bans_mut()
            .ban(subnet, until, BanReason::Manual, now);
        if added {
            let event = PoolEvent::Banned {
                subnet,
                until,
                reason: BanReason::Manual,
            };
            self.outputs.push_back(Output::Event(event));
            self.disconnect_banned(now);
        }
        self.sync_timers(now);
        added
    }

    /// Lifts a ban; whether there was one.
    pub fn unban(&mut self, now: Time, subnet: &Subnet) -> bool {
        let lifted = self.banman.bans_mut().unban(subnet);
        self.sync_timers(now);
        lifted
    }

    /// Lifts every ban.
    pub fn clear_bans(&mut self, now: Time) {
        self.banman.bans_mut().clear();
        self.sync_timers(now);
    }

    // ----- internals -----------------------------------------------------------------------

    /// [`Timer::Connections`]: the connection-opening path. Settles waiting tried collisions
    /// first (Core's `ResolveCollisions` at the top of each `ThreadOpenConnections` loop),
    /// then lets the connection manager dial what is due.
    fn open_connections(&mut self, now: Time) {
        self.addrman.resolve_collisions(now);
        if !self.network_active {
            self.arm_collisions(now);
            return;
        }
        let reachable = self.reachable();
        // Hosts we dialed (connected or pending): a collision's incumbent among them is known
        // to work and needs no feeler.
        let connected: BTreeSet<Host> = self
            .peers
            .values()
            .filter(|p| p.kind.direction() == Direction::Outbound)
            .map(|p| p.addr.host)
            .chain(self.dialing.values().map(|a| a.host))
            .collect();
        let (addrman, banman, rng) = (&mut self.addrman, &self.banman, &mut self.rng);
        let ours = &self.config.advertise;
        let mut pick = |what: Pick| {
            // Our own address comes back through gossip; dialing it only finds ourselves.
            let usable = |addr: &NetAddr| !banman.is_banned(addr, now) && !ours.contains(addr);
            if what == Pick::Feeler {
                // Test-before-evict: a feeler tests a collision's incumbent before anything new.
                if let Some((old, last_try)) = addrman.select_tried_collision(rng) {
                    if connected.contains(&old.host) {
                        // Connected, so working (Core marks it good rather than dial it twice).
                        addrman.good(&old, now);
                    } else if usable(&old) {
                        return Some((old, last_try));
                    }
                }
            }
            for _ in 0..4 {
                let (addr, last_try) =
                    addrman.select(what == Pick::Feeler, &reachable, rng, now)?;
                if usable(&addr) {
                    return Some((addr, last_try));
                }
            }
            None
        };
        self.connman.handle_timeout(now, &mut pick);
        self.pull();
        self.check_starving(now);
        self.arm_collisions(now);
    }

    /// Brings the deadlines that mirror other parts' state up to date: the connection
    /// manager's (only while network activity is on), the ban list's next expiry, and a
    /// pending save of a changed ban list. Every input ends with it.
    pub(crate) fn sync_timers(&mut self, now: Time) {
        let connections = self.connman.poll_timeout().filter(|_| self.network_active);
        self.timers.set_or_cancel(Timer::Connections, connections);
        self.timers
            .set_or_cancel(Timer::BanExpiry, self.banman.poll_timeout());
        if self.banman.bans().is_dirty() {
            if self.timers.get(Timer::SaveBans).is_none() {
                let at = self
                    .last_ban_save
                    .map_or(now, |last| (last + BAN_SAVE_INTERVAL).max(now));
                self.timers.set(Timer::SaveBans, at);
            }
        } else {
            self.timers.cancel(Timer::SaveBans);
        }
    }

    pub(crate) fn reachable(&self) -> Vec<Network> {
        if self.config.reachable.is_empty() {
            vec![Network::Ipv4, Network::Ipv6]
        } else {
            self.config.reachable.clone()
        }
    }

    fn whitelisted(&self, addr: &NetAddr) -> PermissionSet {
        self.config
            .whitelist
            .iter()
            .filter(|w| w.subnet.contains(&addr.host))
            .flat_map(|w| w.permissions.iter().copied())
            .collect()
    }

    /// Emits [`Output::Reseed`] when outbound slots have starved for [`RESEED_DELAY`] (at most
    /// once per [`RESEED_INTERVAL`]), or arms [`Timer::Reseed`] for when they will have.
    fn check_starving(&mut self, now: Time) {
        let Some(since) = self.connman.starved_since() else {
            self.timers.cancel(Timer::Reseed);
            return;
        };
        let mut due = since + RESEED_DELAY;
        if let Some(last) = self.last_reseed {
            due = due.max(last + RESEED_INTERVAL);
        }
        if due <= now {
            tracing::info!("no usable address to fill the outbound slots: reseeding");
            self.outputs.push_back(Output::Reseed);
            self.last_reseed = Some(now);
            self.timers.cancel(Timer::Reseed);
        } else {
            self.timers.set(Timer::Reseed, due);
        }
    }

    /// Keeps [`Timer::ResolveCollisions`] armed exactly while collisions wait.
    pub(crate) fn arm_collisions(&mut self, now: Time) {
        if self.addrman.tried_collisions().next().is_none() {
            self.timers.cancel(Timer::ResolveCollisions);
        } else if self
            .timers
            .get(Timer::ResolveCollisions)
            .map_or(true, |t| t <= now)
        {
            self.timers
                .set(Timer::ResolveCollisions, now + COLLISION_CHECK_INTERVAL);
        }
    }

    /// Disconnects every live peer (but noban ones) that a ban in force covers.
    pub(crate) fn disconnect_banned(&mut self, now: Time) {
        let banned: Vec<PeerId> = self
            .peers
            .iter()
            .filter(|(_, p)| !p.permissions.contains(Permission::NoBan))
            .filter(|(_, p)| self.banman.is_banned(&p.addr, now))
            .map(|(id, _)| *id)
            .collect();
        for peer in banned {
            self.disconnect(peer, DisconnectReason::Banned);
        }
    }

    /// Moves the connection manager's instructions into ours.
    fn pull(&mut self) {
        while let Some(o) = self.connman.poll_output() {
            match o {
                connman::Output::Dial { req, addr, kind } => {
                    self.dialing.insert(req, addr);
                    self.outputs.push_back(Output::Dial { req, addr, kind });
                }
                connman::Output::Disconnect { peer, reason } => self.disconnect(peer, reason),
            }
        }
    }
}

#[cfg(test)]
mod tests;
